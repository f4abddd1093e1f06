//! Probing: short bursts above the current estimate whose arrival rate measures what
//! the path can carry, so the estimate can jump instead of creeping up at 8 % a second.
//!
//! The controller decides when to probe and at what rate: at start (3x and 6x the
//! start rate), again at twice a result that came close to the rate probed (the path
//! took nearly all of it, so it may take more), and every few seconds while the
//! application wants more than the estimate. The estimator turns a cluster's send and
//! arrival times into a rate: the lower of the two, because a path cannot deliver
//! faster than we sent, and a receive rate well below the send rate is the bottleneck.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A burst the pacer should send at `bitrate_bps`: media if queued, padding otherwise,
/// each packet reported to the estimator with the cluster's `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeCluster {
    /// Identifies the cluster in `on_packet_sent`.
    pub id: u32,
    /// Rate to send the cluster at.
    pub bitrate_bps: u64,
    /// Send at least this many bytes ...
    pub min_bytes: usize,
    /// ... and at least this many packets.
    pub min_packets: u32,
}

/// A probe lasts at least this long, so the arrival spread exceeds the receiver's
/// 250 us timestamp resolution many times over.
const MIN_PROBE_DURATION: Duration = Duration::from_millis(15);
const MIN_PROBE_PACKETS: u32 = 5;
const INITIAL_PROBE_FACTORS: [f64; 2] = [3.0, 6.0];
/// A result above this fraction of the rate probed calls for a probe at twice it.
const FURTHER_PROBE_THRESHOLD: f64 = 0.7;
const FURTHER_PROBE_FACTOR: f64 = 2.0;
/// Give up waiting for a probe's result after this long.
const RESULT_TIMEOUT: Duration = Duration::from_secs(1);
/// While the application wants more than the estimate, probe this often.
const EXPLORE_INTERVAL: Duration = Duration::from_secs(3);
const EXPLORE_FACTOR: f64 = 2.0;
/// When exploration was due but the path was busy, look again this much later.
const EXPLORE_RECHECK: Duration = Duration::from_millis(500);
/// A desired rate this much above the previous one probes at once (rather than at
/// the next exploration tick), at most once per `MIN_IMMEDIATE_INTERVAL`: an
/// application whose wish jitters must not turn that into a probe train.
const DESIRED_RISE: f64 = 1.1;
const MIN_IMMEDIATE_INTERVAL: Duration = Duration::from_secs(1);
const MAX_PENDING: usize = 4;
const MAX_TRACKED_CLUSTERS: usize = 8;
/// A cluster that lost more than this share of its packets measures nothing.
const MAX_LOSS_SHARE: f64 = 0.2;
/// Receive rate this far below the send rate means the probe hit the bottleneck; the
/// result is then taken a little under the receive rate, so the estimate lands just
/// below capacity rather than on it.
const SATURATED_RATIO: f64 = 0.9;
const SATURATED_BACKOFF: f64 = 0.95;
const MAX_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Waiting {
    highest_bps: f64,
    since: Instant,
}

#[derive(Debug, Clone)]
pub(crate) struct ProbeController {
    next_id: u32,
    pending: VecDeque<ProbeCluster>,
    started: bool,
    waiting: Option<Waiting>,
    last_probe: Option<Instant>,
    /// Earliest next exploration check, so a declined one does not fire again at once.
    recheck_at: Option<Instant>,
    desired_bps: Option<f64>,
    max_bps: f64,
    enabled: bool,
}

impl ProbeController {
    pub(crate) fn new(max_bps: f64, enabled: bool) -> Self {
        Self {
            next_id: 1,
            pending: VecDeque::with_capacity(MAX_PENDING),
            started: false,
            waiting: None,
            last_probe: None,
            recheck_at: None,
            desired_bps: None,
            max_bps,
            enabled,
        }
    }

    fn plan(&mut self, now: Instant, bitrates: &[f64]) {
        let mut highest: f64 = 0.0;
        for &bps in bitrates {
            let bps = bps.min(self.max_bps);
            if self.pending.len() >= MAX_PENDING || bps <= 0.0 {
                continue;
            }
            let bitrate_bps = bps as u64;
            let min_bytes = (bps * MIN_PROBE_DURATION.as_secs_f64() / 8.0) as usize;
            self.pending.push_back(ProbeCluster {
                id: self.next_id,
                bitrate_bps,
                min_bytes,
                min_packets: MIN_PROBE_PACKETS,
            });
            self.next_id = self.next_id.wrapping_add(1).max(1);
            highest = highest.max(bps);
        }
        if highest > 0.0 {
            self.waiting = Some(Waiting {
                highest_bps: highest,
                since: now,
            });
            self.last_probe = Some(now);
        }
    }

    /// A new maximum. When it rises while the estimate sits at the old one, the path
    /// may carry more than we ever allowed ourselves to find out: probe at once.
    pub(crate) fn set_max(&mut self, now: Instant, max_bps: f64, estimate: f64) {
        let was_capped = estimate >= self.max_bps;
        let rose = max_bps > self.max_bps;
        self.max_bps = max_bps;
        if rose && was_capped && self.enabled && self.started && self.waiting.is_none() {
            self.plan(now, &[(EXPLORE_FACTOR * estimate).min(max_bps)]);
        }
    }

    /// First call: plan the initial probes.
    pub(crate) fn start(&mut self, now: Instant, start_bps: f64) {
        if self.started || !self.enabled {
            return;
        }
        self.started = true;
        let rates: Vec<f64> = INITIAL_PROBE_FACTORS
            .iter()
            .map(|f| f * start_bps)
            .collect();
        self.plan(now, &rates);
    }

    /// `quiet`: the path shows no congestion now (see [`ProbeController::on_timer`]).
    pub(crate) fn set_desired(
        &mut self,
        now: Instant,
        desired_bps: Option<f64>,
        estimate: f64,
        quiet: bool,
    ) {
        let rose = match (self.desired_bps, desired_bps) {
            (Some(old), Some(new)) => new > old * DESIRED_RISE,
            (None, Some(_)) => true,
            _ => false,
        };
        self.desired_bps = desired_bps;
        let probed_recently = self
            .last_probe
            .is_some_and(|t| now.saturating_duration_since(t) < MIN_IMMEDIATE_INTERVAL);
        if rose && !probed_recently {
            // The application wants more than before: look now rather than at the
            // next exploration tick.
            self.explore(now, estimate, true, quiet);
        }
    }

    pub(crate) fn on_result(&mut self, now: Instant, result_bps: f64) {
        let Some(w) = self.waiting else {
            return;
        };
        if result_bps > FURTHER_PROBE_THRESHOLD * w.highest_bps && w.highest_bps < self.max_bps {
            let mut next = FURTHER_PROBE_FACTOR * result_bps;
            if let Some(d) = self.desired_bps {
                next = next.min(d.max(result_bps * 1.2));
            }
            if next > w.highest_bps {
                self.plan(now, &[next]);
                return;
            }
        }
        self.waiting = None;
    }

    /// Timer work: expire a result that never came, and explore while wanted. `quiet`
    /// says the path shows no congestion: no recent decrease and no standing queue.
    /// Probing a congested path only deepens its queue, and its result (the rate the
    /// bottleneck delivers) would lift the estimate while the queue still stands.
    pub(crate) fn on_timer(&mut self, now: Instant, estimate: f64, quiet: bool) {
        if self
            .waiting
            .is_some_and(|w| now.saturating_duration_since(w.since) >= RESULT_TIMEOUT)
        {
            self.waiting = None;
        }
        let due = self.next_timer().is_some_and(|t| t <= now);
        self.explore(now, estimate, false, quiet);
        if due && self.pending.is_empty() && self.waiting.is_none() {
            self.recheck_at = Some(now + EXPLORE_RECHECK);
        }
    }

    fn explore(&mut self, now: Instant, estimate: f64, immediate: bool, quiet: bool) {
        if !quiet
            || !self.enabled
            || !self.started
            || self.waiting.is_some()
            || !self.pending.is_empty()
        {
            return;
        }
        let Some(desired) = self.desired_bps.filter(|d| *d > estimate) else {
            return;
        };
        let due = immediate
            || self
                .last_probe
                .is_none_or(|t| now.saturating_duration_since(t) >= EXPLORE_INTERVAL);
        if due && estimate < self.max_bps {
            self.plan(now, &[(EXPLORE_FACTOR * estimate).min(desired)]);
        }
    }

    pub(crate) fn next_timer(&self) -> Option<Instant> {
        if !self.enabled || !self.started {
            return None;
        }
        match self.waiting {
            Some(w) => Some(w.since + RESULT_TIMEOUT),
            None => {
                let explore = self.desired_bps.and(self.last_probe)? + EXPLORE_INTERVAL;
                Some(self.recheck_at.map_or(explore, |r| r.max(explore)))
            }
        }
    }

    pub(crate) fn poll(&mut self) -> Option<ProbeCluster> {
        self.pending.pop_front()
    }
}

#[derive(Debug, Clone)]
struct ClusterStats {
    id: u32,
    min_packets: u32,
    sent_packets: u32,
    sent_bytes: u64,
    first_send: Option<Instant>,
    last_send: Option<Instant>,
    last_send_size: u32,
    reported: u32,
    received: u32,
    recv_bytes: u64,
    first_arrival: Option<(i64, u32)>,
    last_arrival_us: i64,
    done: bool,
}

/// Measures the rate of each probe cluster from its send and arrival times.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProbeEstimator {
    clusters: VecDeque<ClusterStats>,
}

impl ProbeEstimator {
    /// A cluster handed to the application; packets naming unknown ids are ignored.
    pub(crate) fn register(&mut self, cluster: &ProbeCluster) {
        if self.clusters.len() >= MAX_TRACKED_CLUSTERS {
            self.clusters.pop_front();
        }
        self.clusters.push_back(ClusterStats {
            id: cluster.id,
            min_packets: cluster.min_packets,
            sent_packets: 0,
            sent_bytes: 0,
            first_send: None,
            last_send: None,
            last_send_size: 0,
            reported: 0,
            received: 0,
            recv_bytes: 0,
            first_arrival: None,
            last_arrival_us: 0,
            done: false,
        });
    }

    fn find(&mut self, id: u32) -> Option<&mut ClusterStats> {
        self.clusters.iter_mut().find(|c| c.id == id && !c.done)
    }

    pub(crate) fn on_sent(&mut self, id: u32, now: Instant, size_bytes: u32) {
        let Some(c) = self.find(id) else {
            return;
        };
        c.sent_packets = c.sent_packets.saturating_add(1);
        c.sent_bytes = c.sent_bytes.saturating_add(u64::from(size_bytes));
        c.first_send.get_or_insert(now);
        c.last_send = Some(now);
        c.last_send_size = size_bytes;
    }

    pub(crate) fn on_reported(&mut self, id: u32, arrival_us: Option<i64>, size_bytes: u32) {
        let Some(c) = self.find(id) else {
            return;
        };
        c.reported += 1;
        if let Some(at) = arrival_us {
            c.received += 1;
            c.recv_bytes += u64::from(size_bytes);
            match c.first_arrival {
                Some((first, _)) if first <= at => {}
                _ => c.first_arrival = Some((at, size_bytes)),
            }
            c.last_arrival_us = c.last_arrival_us.max(at);
        }
    }

    /// After a feedback packet: the highest rate measured by clusters it completed.
    pub(crate) fn take_result(&mut self) -> Option<f64> {
        let mut best: Option<f64> = None;
        for c in self.clusters.iter_mut().filter(|c| !c.done) {
            if c.sent_packets < c.min_packets || c.reported < c.sent_packets {
                continue;
            }
            c.done = true;
            if let Some(r) = cluster_rate(c) {
                best = Some(best.map_or(r, |b| b.max(r)));
            }
        }
        best
    }
}

fn cluster_rate(c: &ClusterStats) -> Option<f64> {
    let lost = c.sent_packets.saturating_sub(c.received);
    if f64::from(lost) > MAX_LOSS_SHARE * f64::from(c.sent_packets) || c.received < 2 {
        return None;
    }
    let send_interval = c.last_send?.saturating_duration_since(c.first_send?);
    let (first_at, first_size) = c.first_arrival?;
    let recv_us = c.last_arrival_us - first_at;
    if send_interval > MAX_INTERVAL || recv_us <= 0 || recv_us > MAX_INTERVAL.as_micros() as i64 {
        return None;
    }
    let recv_bps =
        (c.recv_bytes.saturating_sub(u64::from(first_size))) as f64 * 8.0 * 1e6 / recv_us as f64;
    let send_bps = if send_interval.is_zero() {
        f64::INFINITY
    } else {
        (c.sent_bytes.saturating_sub(u64::from(c.last_send_size))) as f64 * 8.0
            / send_interval.as_secs_f64()
    };
    if recv_bps < SATURATED_RATIO * send_bps {
        Some(SATURATED_BACKOFF * recv_bps)
    } else {
        Some(recv_bps.min(send_bps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(bps: u64) -> ProbeCluster {
        ProbeCluster {
            id: 7,
            bitrate_bps: bps,
            min_bytes: 0,
            min_packets: 5,
        }
    }

    #[test]
    fn a_saturated_probe_measures_the_bottleneck() {
        let t0 = Instant::now();
        let mut e = ProbeEstimator::default();
        e.register(&cluster(2_000_000));
        // 6 x 1000 bytes sent 4 ms apart (2 Mbit/s), arriving 8 ms apart (1 Mbit/s)
        for i in 0..6u32 {
            e.on_sent(7, t0 + Duration::from_millis(u64::from(i) * 4), 1000);
        }
        for i in 0..5i64 {
            e.on_reported(7, Some(10_000 + i * 8_000), 1000);
            assert!(
                e.take_result().is_none(),
                "incomplete cluster gave a result"
            );
        }
        e.on_reported(7, Some(10_000 + 5 * 8_000), 1000);
        let r = e.take_result().unwrap();
        assert!((r - 950_000.0).abs() < 1.0, "{r}");
        assert!(e.take_result().is_none(), "a cluster gives one result");
    }

    #[test]
    fn an_unsaturated_probe_measures_its_send_rate_and_lossy_ones_nothing() {
        let t0 = Instant::now();
        let mut e = ProbeEstimator::default();
        e.register(&cluster(1_000_000));
        for i in 0..5u32 {
            e.on_sent(7, t0 + Duration::from_millis(u64::from(i) * 8), 1000);
            e.on_reported(7, Some(i64::from(i) * 8_000), 1000);
        }
        assert!((e.take_result().unwrap() - 1_000_000.0).abs() < 1.0);

        let mut e = ProbeEstimator::default();
        e.register(&cluster(1_000_000));
        for i in 0..5u32 {
            e.on_sent(7, t0 + Duration::from_millis(u64::from(i) * 8), 1000);
            e.on_reported(7, (i % 2 == 0).then_some(i64::from(i) * 8_000), 1000);
        }
        assert!(e.take_result().is_none());
    }

    #[test]
    fn controller_probes_at_start_further_on_success_and_when_wanted() {
        let t0 = Instant::now();
        let mut c = ProbeController::new(10_000_000.0, true);
        c.start(t0, 300_000.0);
        let a = c.poll().unwrap();
        let b = c.poll().unwrap();
        assert_eq!((a.bitrate_bps, b.bitrate_bps), (900_000, 1_800_000));
        assert!(c.poll().is_none());
        // the path took 1.7 of 1.8 Mbit/s: try 3.4
        c.on_result(t0 + Duration::from_millis(200), 1_700_000.0);
        assert_eq!(c.poll().unwrap().bitrate_bps, 3_400_000);
        // the path took only 2: stop
        c.on_result(t0 + Duration::from_millis(400), 2_000_000.0);
        assert!(c.poll().is_none());
        // nothing wanted: no exploration
        c.on_timer(t0 + Duration::from_secs(10), 2_000_000.0, true);
        assert!(c.poll().is_none());
        c.set_desired(
            t0 + Duration::from_secs(10),
            Some(5_000_000.0),
            2_000_000.0,
            true,
        );
        assert_eq!(c.poll().unwrap().bitrate_bps, 4_000_000);
        c.on_result(t0 + Duration::from_secs(10), 1_000_000.0);
        c.on_timer(t0 + Duration::from_secs(11), 2_000_000.0, true);
        assert!(c.poll().is_none(), "explored too soon");
        c.on_timer(t0 + Duration::from_secs(13), 2_000_000.0, false);
        assert!(c.poll().is_none(), "explored a congested path");
        c.on_timer(t0 + Duration::from_secs(13), 2_000_000.0, true);
        assert_eq!(c.poll().unwrap().bitrate_bps, 4_000_000);
    }

    #[test]
    fn a_jittering_desired_rate_does_not_probe_repeatedly() {
        let t0 = Instant::now();
        let mut c = ProbeController::new(10_000_000.0, true);
        c.start(t0, 300_000.0);
        while c.poll().is_some() {}
        c.on_result(t0, 100_000.0);
        let later = t0 + Duration::from_secs(2);
        c.set_desired(later, Some(1_000_000.0), 500_000.0, true);
        assert!(c.poll().is_some());
        c.on_result(later, 100_000.0);
        let mut probes = 0;
        for i in 0..100u32 {
            let now = later + Duration::from_millis(10) * i;
            let wish = 1_000_000.0 + f64::from(i % 2) * 200_000.0;
            c.set_desired(now, Some(wish), 500_000.0, true);
            while c.poll().is_some() {
                probes += 1;
                c.on_result(now, 100_000.0);
            }
        }
        assert!(probes <= 1, "{probes} probes in one second");
    }

    #[test]
    fn a_declined_exploration_moves_the_timer_forward() {
        let t0 = Instant::now();
        let mut c = ProbeController::new(10_000_000.0, true);
        c.start(t0, 300_000.0);
        while c.poll().is_some() {}
        c.on_result(t0, 100_000.0);
        c.set_desired(t0, Some(5_000_000.0), 1_000_000.0, false);
        let mut now = t0;
        for _ in 0..100 {
            now = c.next_timer().unwrap().max(now);
            c.on_timer(now, 1_000_000.0, false); // congested: declines
            assert!(
                c.next_timer().unwrap() > now,
                "timer did not move past {now:?}"
            );
        }
        assert!(c.poll().is_none());
    }
}
