//! A sans-IO pacer for one subscriber: packets leave at a multiple of the estimate,
//! highest priority first, instead of in the bursts the SFU receives them in.
//!
//! Bursts are what fill a bottleneck queue and make the delay-based estimator see
//! congestion that is only self-inflicted. The pacer keeps a byte budget that refills
//! at the pacing rate and caps it at a short burst, so at most a few milliseconds'
//! worth leaves back to back. Audio is never held (it is small and late audio is
//! useless) but its bytes still count; retransmissions go before video because the
//! receiver is already waiting for them; padding only fills an otherwise idle probe.
//! Video that waited longer than the maximum queue delay is dropped oldest first and
//! counted: a frame that late is worth less than the bandwidth it would take, and the
//! receiver's NACK/PLI machinery recovers.
//!
//! The loop: `enqueue` as packets are routed, `set_estimate` when the estimate
//! changes, `start_probe` for every cluster the estimator plans, then drain
//! `poll_send(now)` and sleep until `poll_timeout()`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::ProbeCluster;

/// Send order: lower variants first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Sent immediately; counted against the budget.
    Audio,
    /// Paced, ahead of video.
    Retransmission,
    /// Paced; dropped oldest-first when it waited too long.
    Video,
    /// Paced, only when nothing else waits.
    Padding,
}

const CLASSES: usize = 4;

impl Priority {
    fn index(self) -> usize {
        match self {
            Priority::Audio => 0,
            Priority::Retransmission => 1,
            Priority::Video => 2,
            Priority::Padding => 3,
        }
    }

    fn from_index(i: usize) -> Self {
        match i {
            0 => Priority::Audio,
            1 => Priority::Retransmission,
            2 => Priority::Video,
            _ => Priority::Padding,
        }
    }
}

/// Pacer settings. `Default` gives the documented values.
#[derive(Debug, Clone, PartialEq)]
pub struct PacerConfig {
    /// Pacing rate as a multiple of the estimate (default 2.5): a frame leaves within a
    /// fraction of its frame interval, and a brief overshoot of the app drains fast.
    pub pacing_factor: f64,
    /// Floor of the pacing rate (default 50 kbit/s), so a collapsed estimate still
    /// moves audio and retransmissions.
    pub min_pacing_bps: u64,
    /// Largest burst the budget allows, in time at the pacing rate (default 5 ms).
    pub max_burst: Duration,
    /// Video older than this is dropped (default 500 ms).
    pub max_queue_delay: Duration,
    /// Packets held at most (default 2048); over it the oldest video goes, and if
    /// there is none the new packet is refused.
    pub max_queue_packets: usize,
    /// Largest padding packet that fills a probe (default 1200 bytes); smaller probes
    /// use a fifth of their bytes per packet, at least 200.
    pub padding_packet_bytes: usize,
}

impl Default for PacerConfig {
    fn default() -> Self {
        Self {
            pacing_factor: 2.5,
            min_pacing_bps: 50_000,
            max_burst: Duration::from_millis(5),
            max_queue_delay: Duration::from_millis(500),
            max_queue_packets: 2048,
            padding_packet_bytes: 1200,
        }
    }
}

/// What the pacer wants sent now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacerOutput<P> {
    /// A queued packet.
    Packet {
        /// The packet as enqueued.
        packet: P,
        /// Its size as enqueued.
        size_bytes: usize,
        /// Its class.
        priority: Priority,
        /// The probe cluster it is part of, for the estimator.
        probe_cluster: Option<u32>,
    },
    /// Build and send a padding packet of this size (RTX padding in an SFU) as part of
    /// a probe.
    Padding {
        /// Bytes on the wire.
        size_bytes: usize,
        /// The probe cluster it is part of.
        probe_cluster: Option<u32>,
    },
}

/// Counters of one pacer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacerStats {
    /// Video dropped after waiting longer than `max_queue_delay`.
    pub dropped_late_video: u64,
    /// Packets dropped or refused because the queue was full.
    pub dropped_queue_full: u64,
    /// Packets handed out.
    pub sent_packets: u64,
    /// Padding packets requested for probes.
    pub padding_packets: u64,
    /// Packets waiting now.
    pub queued_packets: usize,
    /// Bytes waiting now.
    pub queued_bytes: usize,
}

#[derive(Debug)]
struct Queued<P> {
    packet: P,
    size_bytes: usize,
    enqueued: Instant,
}

#[derive(Debug, Clone, Copy)]
struct ActiveProbe {
    cluster: ProbeCluster,
    sent_bytes: usize,
    sent_packets: u32,
    next_at: Instant,
}

/// The pacer; `P` is whatever the application queues (a buffer, an index).
#[derive(Debug)]
pub struct Pacer<P> {
    config: PacerConfig,
    queues: [VecDeque<Queued<P>>; CLASSES],
    rate_bps: f64,
    budget_bytes: f64,
    last_refill: Option<Instant>,
    probe: Option<ActiveProbe>,
    pending_probes: VecDeque<ProbeCluster>,
    stats: PacerStats,
}

const MAX_PENDING_PROBES: usize = 4;
/// Longest wait the pacer computes; an absurd packet size must not overflow `Instant`.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// `secs` as a duration rounded up to the microsecond, within `0..=MAX_WAIT`.
fn secs_capped(secs: f64) -> Duration {
    let us = (secs * 1e6).ceil();
    if us.is_nan() || us <= 0.0 {
        Duration::ZERO
    } else {
        Duration::from_micros(us.min(MAX_WAIT.as_micros() as f64) as u64)
    }
}
/// Smallest padding packet a probe uses; below this, headers dominate.
const MIN_PADDING_BYTES: usize = 200;

impl<P> Pacer<P> {
    /// An empty pacer pacing at the floor rate until `set_estimate`.
    pub fn new(config: PacerConfig) -> Self {
        Self {
            rate_bps: config.min_pacing_bps.max(1) as f64,
            config,
            queues: Default::default(),
            budget_bytes: 0.0,
            last_refill: None,
            probe: None,
            pending_probes: VecDeque::new(),
            stats: PacerStats::default(),
        }
    }

    /// Counters and queue size.
    pub fn stats(&self) -> PacerStats {
        self.stats
    }

    /// The pacing rate in use.
    pub fn pacing_rate_bps(&self) -> u64 {
        self.rate_bps as u64
    }

    /// Paces at `pacing_factor` times `estimate_bps` from now on.
    pub fn set_estimate(&mut self, estimate_bps: u64) {
        let rate = estimate_bps as f64 * self.config.pacing_factor;
        self.rate_bps = rate.max(self.config.min_pacing_bps.max(1) as f64);
    }

    /// Queues a packet of `size_bytes`. Returns false if it was refused (queue full of
    /// audio and retransmissions); counted in `dropped_queue_full`.
    pub fn enqueue(
        &mut self,
        now: Instant,
        packet: P,
        size_bytes: usize,
        priority: Priority,
    ) -> bool {
        self.drop_late_video(now);
        if self.stats.queued_packets >= self.config.max_queue_packets.max(1)
            && !self.drop_oldest(Priority::Padding)
            && !self.drop_oldest(Priority::Video)
        {
            self.stats.dropped_queue_full += 1;
            return false;
        }
        if let Some(q) = self.queues.get_mut(priority.index()) {
            q.push_back(Queued {
                packet,
                size_bytes,
                enqueued: now,
            });
            self.stats.queued_packets += 1;
            self.stats.queued_bytes = self.stats.queued_bytes.saturating_add(size_bytes);
        }
        true
    }

    /// Sends `cluster` at its rate, before anything else paced. Clusters queue up
    /// (at most a few) behind the one running.
    pub fn start_probe(&mut self, now: Instant, cluster: ProbeCluster) {
        if self.probe.is_none() {
            self.probe = Some(ActiveProbe {
                cluster,
                sent_bytes: 0,
                sent_packets: 0,
                next_at: now,
            });
        } else if self.pending_probes.len() < MAX_PENDING_PROBES {
            self.pending_probes.push_back(cluster);
        }
    }

    fn drop_oldest(&mut self, priority: Priority) -> bool {
        let Some(q) = self.queues.get_mut(priority.index()) else {
            return false;
        };
        match q.pop_front() {
            Some(old) => {
                self.stats.queued_packets -= 1;
                self.stats.queued_bytes = self.stats.queued_bytes.saturating_sub(old.size_bytes);
                self.stats.dropped_queue_full += 1;
                true
            }
            None => false,
        }
    }

    fn drop_late_video(&mut self, now: Instant) {
        let max = self.config.max_queue_delay;
        let Some(q) = self.queues.get_mut(Priority::Video.index()) else {
            return;
        };
        while q
            .front()
            .is_some_and(|p| now.saturating_duration_since(p.enqueued) > max)
        {
            if let Some(old) = q.pop_front() {
                self.stats.queued_packets -= 1;
                self.stats.queued_bytes = self.stats.queued_bytes.saturating_sub(old.size_bytes);
                self.stats.dropped_late_video += 1;
            }
        }
    }

    fn max_budget(&self) -> f64 {
        self.rate_bps / 8.0 * self.config.max_burst.as_secs_f64()
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last_refill {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.budget_bytes =
                (self.budget_bytes + self.rate_bps / 8.0 * dt).min(self.max_budget());
        }
        self.last_refill = Some(now);
    }

    fn pop(&mut self, class: usize) -> Option<(Queued<P>, Priority)> {
        let q = self.queues.get_mut(class)?;
        let item = q.pop_front()?;
        self.stats.queued_packets -= 1;
        self.stats.queued_bytes = self.stats.queued_bytes.saturating_sub(item.size_bytes);
        self.stats.sent_packets += 1;
        Some((item, Priority::from_index(class)))
    }

    fn first_nonempty(&self, include_padding: bool) -> Option<usize> {
        let classes = if include_padding {
            CLASSES
        } else {
            CLASSES - 1
        };
        (0..classes).find(|&i| self.queues.get(i).is_some_and(|q| !q.is_empty()))
    }

    /// The next packet to send at `now`, if any is due. Call until `None`.
    pub fn poll_send(&mut self, now: Instant) -> Option<PacerOutput<P>> {
        self.refill(now);
        self.drop_late_video(now);
        // Audio never waits.
        if let Some((item, priority)) = self.pop(Priority::Audio.index()) {
            self.budget_bytes -= item.size_bytes as f64;
            return Some(self.output(item, priority, None));
        }
        if let Some(out) = self.poll_probe(now) {
            return Some(out);
        }
        if self.budget_bytes < 0.0 {
            return None;
        }
        let class = self.first_nonempty(true)?;
        let (item, priority) = self.pop(class)?;
        self.budget_bytes -= item.size_bytes as f64;
        Some(self.output(item, priority, None))
    }

    fn poll_probe(&mut self, now: Instant) -> Option<PacerOutput<P>> {
        let probe = self.probe?;
        if probe.next_at > now {
            return None;
        }
        let (out, size) = match self.first_nonempty(false) {
            Some(class) => {
                let (item, priority) = self.pop(class)?;
                let size = item.size_bytes;
                self.budget_bytes -= size as f64;
                (self.output(item, priority, Some(probe.cluster.id)), size)
            }
            None => {
                // Spread the cluster's bytes over its packets: a probe of 5 full-size
                // packets at a low rate would itself fill the bottleneck queue.
                let share = probe.cluster.min_bytes / probe.cluster.min_packets.max(1) as usize;
                let size = share.clamp(
                    MIN_PADDING_BYTES,
                    self.config.padding_packet_bytes.max(MIN_PADDING_BYTES),
                );
                self.stats.padding_packets += 1;
                (
                    PacerOutput::Padding {
                        size_bytes: size,
                        probe_cluster: Some(probe.cluster.id),
                    },
                    size,
                )
            }
        };
        let rate = (probe.cluster.bitrate_bps.max(1)) as f64;
        let gap = secs_capped(size as f64 * 8.0 / rate);
        let next = ActiveProbe {
            sent_bytes: probe.sent_bytes.saturating_add(size),
            sent_packets: probe.sent_packets.saturating_add(1),
            next_at: probe.next_at.max(now) + gap,
            ..probe
        };
        let done = next.sent_bytes >= next.cluster.min_bytes
            && next.sent_packets >= next.cluster.min_packets;
        self.probe = if done {
            self.pending_probes.pop_front().map(|cluster| ActiveProbe {
                cluster,
                sent_bytes: 0,
                sent_packets: 0,
                next_at: next.next_at,
            })
        } else {
            Some(next)
        };
        Some(out)
    }

    fn output(
        &self,
        item: Queued<P>,
        priority: Priority,
        probe_cluster: Option<u32>,
    ) -> PacerOutput<P> {
        PacerOutput::Packet {
            packet: item.packet,
            size_bytes: item.size_bytes,
            priority,
            probe_cluster,
        }
    }

    /// When `poll_send` next has something to send; `None` when idle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let last = self.last_refill;
        let audio = self
            .queues
            .get(Priority::Audio.index())
            .and_then(|q| q.front())
            .map(|p| p.enqueued);
        let probe = self.probe.map(|p| p.next_at);
        let paced = self.first_nonempty(true).and_then(|_| {
            let wait = if self.budget_bytes >= 0.0 {
                Duration::ZERO
            } else {
                // Rounded up to the next microsecond, so that at the instant returned
                // the budget is no longer negative (no wake-up that sends nothing).
                secs_capped(-self.budget_bytes * 8.0 / self.rate_bps) + Duration::from_micros(1)
            };
            match last {
                Some(t) => t.checked_add(wait),
                // Never polled yet: due as soon as anything was queued.
                None => self
                    .queues
                    .iter()
                    .filter_map(|q| q.front().map(|p| p.enqueued))
                    .min(),
            }
        });
        [audio, probe, paced].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain<P>(p: &mut Pacer<P>, now: Instant) -> Vec<PacerOutput<P>> {
        std::iter::from_fn(|| p.poll_send(now)).collect()
    }

    fn priority_of<P>(o: &PacerOutput<P>) -> Option<Priority> {
        match o {
            PacerOutput::Packet { priority, .. } => Some(*priority),
            PacerOutput::Padding { .. } => None,
        }
    }

    #[test]
    fn audio_then_retransmissions_then_video_then_padding() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig {
            max_burst: Duration::from_secs(1),
            ..PacerConfig::default()
        });
        p.set_estimate(10_000_000);
        p.poll_send(t0);
        let t1 = t0 + Duration::from_millis(100);
        for (i, prio) in [
            Priority::Padding,
            Priority::Video,
            Priority::Retransmission,
            Priority::Video,
            Priority::Audio,
        ]
        .into_iter()
        .enumerate()
        {
            assert!(p.enqueue(t1, i, 100, prio));
        }
        let order: Vec<_> = drain(&mut p, t1).iter().filter_map(priority_of).collect();
        assert_eq!(
            order,
            [
                Priority::Audio,
                Priority::Retransmission,
                Priority::Video,
                Priority::Video,
                Priority::Padding
            ]
        );
    }

    #[test]
    fn paces_at_factor_times_estimate_with_small_bursts() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig {
            max_queue_delay: Duration::from_secs(2),
            ..PacerConfig::default()
        });
        p.set_estimate(400_000); // paces at 1 Mbit/s
        for i in 0..100 {
            p.enqueue(t0, i, 1000, Priority::Video);
        }
        let mut now = t0;
        let mut sent = 0;
        let mut max_at_once = 0;
        while let Some(due) = p.poll_timeout() {
            now = now.max(due);
            let n = drain(&mut p, now).len();
            max_at_once = max_at_once.max(n);
            sent += n;
            if n == 0 {
                now += Duration::from_micros(100);
            }
        }
        assert_eq!(sent, 100);
        // 100 kB at 1 Mbit/s is 800 ms, minus the first packet's allowance
        let elapsed = now - t0;
        assert!(
            elapsed >= Duration::from_millis(780) && elapsed <= Duration::from_millis(800),
            "{elapsed:?}"
        );
        assert!(max_at_once <= 2, "burst of {max_at_once}");
    }

    #[test]
    fn audio_is_never_held_by_the_budget() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default());
        p.set_estimate(100_000);
        p.enqueue(t0, 0, 1200, Priority::Video);
        p.enqueue(t0, 1, 1200, Priority::Video);
        assert_eq!(
            drain(&mut p, t0).len(),
            1,
            "budget in debt after one video packet"
        );
        p.enqueue(t0, 2, 100, Priority::Audio);
        let out = drain(&mut p, t0);
        assert_eq!(
            out.iter().filter_map(priority_of).collect::<Vec<_>>(),
            [Priority::Audio]
        );
    }

    #[test]
    fn late_video_is_dropped_and_counted_audio_kept() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default());
        p.set_estimate(30_000); // paces at 75 kbit/s: 50 packets take 6 s
        for i in 0..50 {
            p.enqueue(t0, i, 1200, Priority::Video);
        }
        p.poll_send(t0);
        let later = t0 + Duration::from_millis(600);
        p.enqueue(later, 99, 100, Priority::Audio);
        let out = drain(&mut p, later);
        assert_eq!(
            out.iter().filter_map(priority_of).next(),
            Some(Priority::Audio)
        );
        let stats = p.stats();
        assert!(stats.dropped_late_video >= 48, "{stats:?}");
        assert_eq!(stats.queued_packets, 0);
    }

    #[test]
    fn queue_is_bounded() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig {
            max_queue_packets: 10,
            ..PacerConfig::default()
        });
        for i in 0..20 {
            assert!(p.enqueue(t0, i, 1000, Priority::Video));
        }
        assert_eq!(p.stats().queued_packets, 10);
        assert_eq!(p.stats().dropped_queue_full, 10);
        let mut q = Pacer::new(PacerConfig {
            max_queue_packets: 10,
            ..PacerConfig::default()
        });
        for i in 0..10 {
            assert!(q.enqueue(t0, i, 100, Priority::Audio));
        }
        assert!(!q.enqueue(t0, 10, 100, Priority::Retransmission));
        assert_eq!(q.stats().queued_packets, 10);
    }

    #[test]
    fn absurd_sizes_and_rates_do_not_panic() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig {
            pacing_factor: f64::NAN,
            ..PacerConfig::default()
        });
        p.set_estimate(u64::MAX);
        p.enqueue(t0, 0, usize::MAX, Priority::Video);
        p.enqueue(t0, 1, usize::MAX, Priority::Retransmission);
        p.set_estimate(0);
        assert!(p.poll_send(t0).is_some());
        let due = p.poll_timeout().unwrap();
        assert!(due > t0 && due <= t0 + MAX_WAIT + Duration::from_millis(1));
        p.start_probe(
            t0,
            ProbeCluster {
                id: 1,
                bitrate_bps: 0,
                min_bytes: usize::MAX,
                min_packets: u32::MAX,
            },
        );
        assert!(p.poll_send(t0).is_some());
        assert!(p.poll_timeout().is_some());
    }

    #[test]
    fn probe_sends_media_then_padding_at_its_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default());
        p.set_estimate(100_000);
        p.enqueue(t0, 0, 1200, Priority::Video);
        p.start_probe(
            t0,
            ProbeCluster {
                id: 3,
                bitrate_bps: 960_000,
                min_bytes: 6000,
                min_packets: 5,
            },
        );
        let mut now = t0;
        let mut probe_packets = Vec::new();
        while let Some(due) = p.poll_timeout() {
            now = now.max(due);
            for out in drain(&mut p, now) {
                let (size, cluster, padding) = match out {
                    PacerOutput::Packet {
                        size_bytes,
                        probe_cluster,
                        ..
                    } => (size_bytes, probe_cluster, false),
                    PacerOutput::Padding {
                        size_bytes,
                        probe_cluster,
                    } => (size_bytes, probe_cluster, true),
                };
                assert_eq!(cluster, Some(3));
                probe_packets.push((now, size, padding));
            }
        }
        assert_eq!(probe_packets.len(), 5);
        assert!(!probe_packets[0].2, "queued media goes first");
        assert!(probe_packets[1..].iter().all(|p| p.2));
        // 1200 bytes at 960 kbit/s: 10 ms apart
        let span = probe_packets[4].0 - probe_packets[0].0;
        assert_eq!(span, Duration::from_millis(40));
        assert_eq!(p.stats().padding_packets, 4);
    }
}
