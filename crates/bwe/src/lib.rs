//! sluice-bwe: send-side bandwidth estimation and pacing for one subscriber.
//!
//! The SFU stamps every packet it sends a subscriber with a transport-wide sequence
//! number; the subscriber reports arrivals in transport-cc feedback (RTPFB FMT 15).
//! [`Bwe`] turns those reports into the rate the path carries, after
//! draft-ietf-rmcat-gcc-02 and the way libwebrtc's goog_cc grew beyond it:
//!
//! - delay-based: packets grouped in 5 ms bursts, the change of one-way delay between
//!   groups, a trendline over it, an overuse detector with an adaptive threshold, and
//!   AIMD rate control relative to the acknowledged rate ([`delay`], [`aimd`]);
//! - loss-based: a cap that bites above 10 % loss and leaves moderate random loss to
//!   the delay-based side ([`loss`]);
//! - probing: bursts above the estimate at start, after a promising result, and while
//!   the application wants more, whose arrival rate lets the estimate jump ([`probe`]).
//!
//! [`pacer::Pacer`] spreads the packets over time at a multiple of the estimate, audio
//! and retransmissions first.
//!
//! Nothing here reads a clock or touches a socket. The loop of one subscriber:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sluice_bwe::{Bwe, BweConfig, pacer::{Pacer, PacerConfig, PacerOutput, Priority}};
//!
//! let t0 = Instant::now();
//! let mut bwe = Bwe::new(BweConfig::default());
//! let mut pacer: Pacer<Vec<u8>> = Pacer::new(PacerConfig::default());
//! let mut transport_seq: u16 = 0;
//! let mut now = t0;
//!
//! pacer.enqueue(now, vec![0u8; 1000], 1000, Priority::Video);
//! for _ in 0..100 {
//!     // The application tells the estimator what it would send if it could.
//!     bwe.set_desired_bitrate(now, Some(2_000_000));
//!     while let Some(cluster) = bwe.poll_probe() {
//!         pacer.start_probe(now, cluster);
//!     }
//!     pacer.set_estimate(bwe.estimate_bps());
//!     while let Some(out) = pacer.poll_send(now) {
//!         let (size, probe) = match out {
//!             PacerOutput::Packet { size_bytes, probe_cluster, .. } => (size_bytes, probe_cluster),
//!             // A padding packet of this size is the application's to build.
//!             PacerOutput::Padding { size_bytes, probe_cluster } => (size_bytes, probe_cluster),
//!         };
//!         // ... stamp `transport_seq` into the packet, SRTP-protect and send it
//!         bwe.on_packet_sent(now, transport_seq, size, probe);
//!         transport_seq = transport_seq.wrapping_add(1);
//!     }
//!     // ... and when a transport-cc report arrives: bwe.on_feedback_bytes(now, &datagram)
//!     let wake = [pacer.poll_timeout(), bwe.poll_timeout()].into_iter().flatten().min();
//!     now = wake.unwrap_or(now + Duration::from_millis(5)).max(now + Duration::from_millis(1));
//!     bwe.handle_timeout(now);
//! }
//! assert!(bwe.estimate_bps() >= BweConfig::default().min_bitrate_bps);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod acked;
pub mod aimd;
pub mod delay;
mod history;
pub mod loss;
pub mod pacer;
pub mod probe;

use std::time::{Duration, Instant};

use sluice_rtp::{TwccFeedback, TwccFeedbackError};

use acked::AckedBitrate;
use aimd::{Aimd, RateInput};
use delay::{InterArrival, Trendline};
use history::SendHistory;
use loss::LossBased;
use probe::{ProbeController, ProbeEstimator};

pub use aimd::RateControlState;
pub use delay::BandwidthUsage;
pub use probe::ProbeCluster;

/// Estimator settings. `Default` gives the documented values.
#[derive(Debug, Clone, PartialEq)]
pub struct BweConfig {
    /// Never estimate below this (default 30 kbit/s: audio survives).
    pub min_bitrate_bps: u64,
    /// Never estimate above this (default 20 Mbit/s).
    pub max_bitrate_bps: u64,
    /// Estimate before any feedback (default 300 kbit/s).
    pub start_bitrate_bps: u64,
    /// Probe at start, on good results and when the application wants more (default
    /// on). Without probes the estimate only grows by AIMD.
    pub probing: bool,
    /// Sent packets remembered for feedback (default 4096: 4 s at 1000 packets/s, about
    /// 8 Mbit/s of video; 24 bytes each); feedback about older packets is ignored. This
    /// is the bound: the history starts at 64 packets with the first one sent and grows
    /// only while more recent packets await feedback than it holds.
    pub history_packets: usize,
}

impl Default for BweConfig {
    fn default() -> Self {
        Self {
            min_bitrate_bps: 30_000,
            max_bitrate_bps: 20_000_000,
            start_bitrate_bps: 300_000,
            probing: true,
            history_packets: 4096,
        }
    }
}

/// A snapshot of the estimator's internals for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BweStats {
    /// The estimate in use ([`Bwe::estimate_bps`]).
    pub estimate_bps: u64,
    /// The delay-based (AIMD) estimate.
    pub delay_based_bps: u64,
    /// The loss-based cap, when loss has imposed one.
    pub loss_cap_bps: Option<u64>,
    /// Rate the receiver got over the last 300 ms.
    pub acked_bps: Option<u64>,
    /// Average acknowledged rate at overuse: where the link's capacity appears to be.
    pub link_capacity_bps: Option<u64>,
    /// Last overuse detector output.
    pub usage: BandwidthUsage,
    /// Rate control state.
    pub state: RateControlState,
    /// Scaled delay trend and the detector's adaptive threshold.
    pub trend: f64,
    /// The detector's threshold, in the trend's unit.
    pub threshold: f64,
    /// Smoothed round-trip time (send to feedback).
    pub rtt: Duration,
    /// Queueing delay above the path's minimum, from the last feedback.
    pub queue_delay: Option<Duration>,
    /// Loss of the last complete loss window.
    pub loss_fraction: Option<f64>,
    /// Delay-based decreases so far.
    pub decreases: u64,
    /// Probe results applied so far.
    pub probe_results: u64,
    /// Feedback packets that failed to decode.
    pub bad_feedback: u64,
    /// Times the estimate was halved because feedback stopped.
    pub starvation_cuts: u64,
}

/// Base delay is the minimum one-way delay offset over this many buckets of
/// `BASE_BUCKET` each, so it follows a route change within ~10 s.
const BASE_BUCKETS: usize = 10;
const BASE_BUCKET: Duration = Duration::from_secs(1);
const INITIAL_RTT: Duration = Duration::from_millis(100);
/// No feedback for this long while sending halves the estimate, and again every
/// further interval: about 20 missing reports at the usual 50 ms.
const FEEDBACK_TIMEOUT: Duration = Duration::from_secs(1);
const FEEDBACK_TIMEOUT_FACTOR: f64 = 0.5;
/// Exploration waits this long after a delay-based decrease ...
const QUIET_AFTER_DECREASE: Duration = Duration::from_secs(3);
/// ... and for the queueing delay to be below this.
const QUIET_QUEUE_DELAY: Duration = Duration::from_millis(50);

/// Minimum of `arrival - send` (receiver clock minus sender clock) over a sliding
/// window: the path's delay with empty queues, plus the unknown clock offset.
#[derive(Debug, Clone, Default)]
struct BaseDelay {
    buckets: [Option<(Instant, i64)>; BASE_BUCKETS],
    current: usize,
}

impl BaseDelay {
    fn on_sample(&mut self, now: Instant, offset_us: i64) {
        let current = self.current % BASE_BUCKETS;
        let Some(slot) = self.buckets.get_mut(current) else {
            return;
        };
        match slot {
            Some((start, min)) if now.saturating_duration_since(*start) < BASE_BUCKET => {
                *min = (*min).min(offset_us);
            }
            Some(_) => {
                self.current = (current + 1) % BASE_BUCKETS;
                if let Some(next) = self.buckets.get_mut(self.current) {
                    *next = Some((now, offset_us));
                }
            }
            None => *slot = Some((now, offset_us)),
        }
    }

    fn min(&self) -> Option<i64> {
        self.buckets.iter().flatten().map(|(_, m)| *m).min()
    }
}

/// Send-side bandwidth estimator for one transport (one subscriber).
#[derive(Debug, Clone)]
pub struct Bwe {
    config: BweConfig,
    epoch: Option<Instant>,
    history: SendHistory,
    inter_arrival: InterArrival,
    trendline: Trendline,
    aimd: Aimd,
    acked: AckedBitrate,
    loss: LossBased,
    probes: ProbeController,
    probe_estimator: ProbeEstimator,
    base_delay: BaseDelay,
    queue_delay: Option<Duration>,
    rtt: Option<Duration>,
    probe_results: u64,
    bad_feedback: u64,
    /// Start of the current wait for feedback: the first send after the last report
    /// (or after the last starvation cut). `None` while nothing is outstanding.
    waiting_since: Option<Instant>,
    starvation_cuts: u64,
    scratch: TwccFeedback,
}

impl Bwe {
    /// A fresh estimator at the start bitrate.
    pub fn new(config: BweConfig) -> Self {
        let min = config.min_bitrate_bps.max(1) as f64;
        let max = (config.max_bitrate_bps as f64).max(min);
        let start = (config.start_bitrate_bps as f64).clamp(min, max);
        Self {
            history: SendHistory::new(config.history_packets),
            inter_arrival: InterArrival::default(),
            trendline: Trendline::default(),
            aimd: Aimd::new(start, min, max),
            acked: AckedBitrate::default(),
            loss: LossBased::default(),
            probes: ProbeController::new(max, config.probing),
            probe_estimator: ProbeEstimator::default(),
            base_delay: BaseDelay::default(),
            queue_delay: None,
            rtt: None,
            probe_results: 0,
            bad_feedback: 0,
            waiting_since: None,
            starvation_cuts: 0,
            scratch: TwccFeedback::default(),
            epoch: None,
            config,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &BweConfig {
        &self.config
    }

    /// The bitrate the path is estimated to carry: the delay-based estimate, capped by
    /// the loss-based one, within the configured bounds.
    pub fn estimate_bps(&self) -> u64 {
        let delay = self.aimd.bitrate_bps();
        let est = self.loss.cap_bps().map_or(delay, |c| c.min(delay));
        let min = self.config.min_bitrate_bps as f64;
        let max = (self.config.max_bitrate_bps as f64).max(min);
        est.clamp(min, max) as u64
    }

    /// A packet carrying `transport_seq` left at `now`, `size_bytes` on the wire, as
    /// part of probe cluster `probe_cluster` if any.
    pub fn on_packet_sent(
        &mut self,
        now: Instant,
        transport_seq: u16,
        size_bytes: usize,
        probe_cluster: Option<u32>,
    ) {
        self.epoch.get_or_insert(now);
        self.waiting_since.get_or_insert(now);
        self.probes.start(now, self.aimd.bitrate_bps());
        self.history
            .on_sent(transport_seq, now, size_bytes, probe_cluster);
        if let Some(id) = probe_cluster {
            let size = u32::try_from(size_bytes).unwrap_or(u32::MAX);
            self.probe_estimator.on_sent(id, now, size);
        }
    }

    /// What the application would send if the estimate allowed it (`None`: no opinion).
    /// When this is above the estimate, the estimator probes for more.
    pub fn set_desired_bitrate(&mut self, now: Instant, desired_bps: Option<u64>) {
        let est = self.estimate_bps() as f64;
        let quiet = self.quiet(now);
        self.probes
            .set_desired(now, desired_bps.map(|d| d as f64), est, quiet);
    }

    /// Changes the bounds of the estimate (a room's or subscriber's limit, a REMB from
    /// the receiver). Raising the maximum while the estimate sits at the old one probes
    /// for the room above it.
    pub fn set_bitrate_bounds(&mut self, now: Instant, min_bitrate_bps: u64, max_bitrate_bps: u64) {
        let min = min_bitrate_bps.max(1);
        let max = max_bitrate_bps.max(min);
        let estimate = self.estimate_bps() as f64;
        self.config.min_bitrate_bps = min;
        self.config.max_bitrate_bps = max;
        self.aimd.set_bounds(min as f64, max as f64);
        self.probes.set_max(now, max as f64, estimate);
    }

    /// Next probe cluster to send. Hand it to the pacer; the pacer's packets then carry
    /// its id to [`Bwe::on_packet_sent`].
    pub fn poll_probe(&mut self) -> Option<ProbeCluster> {
        let cluster = self.probes.poll()?;
        self.probe_estimator.register(&cluster);
        Some(cluster)
    }

    /// When [`Bwe::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let starvation = self.waiting_since.map(|t| t + FEEDBACK_TIMEOUT);
        [self.probes.next_timer(), starvation]
            .into_iter()
            .flatten()
            .min()
    }

    /// Timer work: feedback starvation, probe timeouts and exploration.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self
            .waiting_since
            .is_some_and(|t| now.saturating_duration_since(t) >= FEEDBACK_TIMEOUT)
        {
            // Sending into silence: the reports, or the path itself, are gone.
            self.aimd.cut(now, FEEDBACK_TIMEOUT_FACTOR);
            self.starvation_cuts += 1;
            // The next cut needs another second of sending into silence.
            self.waiting_since = None;
        }
        let est = self.estimate_bps() as f64;
        let quiet = self.quiet(now);
        self.probes.on_timer(now, est, quiet);
    }

    /// No sign of congestion: no delay-based decrease for a while and no standing
    /// queue. Exploration probes and probe results wait for this.
    fn quiet(&self, now: Instant) -> bool {
        let decreased_recently = self
            .aimd
            .last_decrease()
            .is_some_and(|t| now.saturating_duration_since(t) < QUIET_AFTER_DECREASE);
        let queue_standing = self.queue_delay.is_some_and(|q| q > QUIET_QUEUE_DELAY);
        !decreased_recently && !queue_standing
    }

    /// A transport-cc datagram (compound RTCP is fine) arrived at `now`. Malformed
    /// feedback is counted and otherwise ignored.
    pub fn on_feedback_bytes(
        &mut self,
        now: Instant,
        datagram: &[u8],
    ) -> Result<(), TwccFeedbackError> {
        let mut fb = std::mem::take(&mut self.scratch);
        let result = fb.parse_into(datagram);
        match result {
            Ok(()) => self.on_feedback(now, &fb),
            Err(_) => self.bad_feedback += 1,
        }
        self.scratch = fb;
        result
    }

    /// A decoded transport-cc report arrived at `now`.
    pub fn on_feedback(&mut self, now: Instant, feedback: &TwccFeedback) {
        let Some(epoch) = self.epoch else {
            return;
        };
        let (mut received, mut lost) = (0u64, 0u64);
        let mut newest_send: Option<Instant> = None;
        let mut min_offset: Option<i64> = None;
        for status in feedback.packets() {
            let Some(sent) = self.history.take_report(status.sequence_number) else {
                continue;
            };
            let arrival_us = status.arrival.map(|a| a.arrival_us);
            if let Some(id) = sent.probe_cluster {
                self.probe_estimator
                    .on_reported(id, arrival_us, sent.size_bytes);
            }
            let Some(arrival_us) = arrival_us else {
                lost += 1;
                continue;
            };
            received += 1;
            newest_send = Some(newest_send.map_or(sent.send_time, |t| t.max(sent.send_time)));
            let send_us = sent.send_time.saturating_duration_since(epoch).as_micros() as i64;
            let offset = arrival_us.saturating_sub(send_us);
            min_offset = Some(min_offset.map_or(offset, |m| m.min(offset)));
            self.acked.on_packet(arrival_us, sent.size_bytes);
            if let Some(delta) = self.inter_arrival.on_packet(sent.send_time, arrival_us) {
                self.trendline.update(delta);
            }
        }
        if received + lost == 0 {
            return;
        }
        // Reports arrive: wait afresh from the next send.
        self.waiting_since = None;
        if let Some(sent_at) = newest_send {
            let sample = now.saturating_duration_since(sent_at);
            self.rtt = Some(match self.rtt {
                None => sample,
                Some(r) => (r * 7 + sample) / 8,
            });
        }
        if let Some(offset) = min_offset {
            self.base_delay.on_sample(now, offset);
            self.queue_delay = self.base_delay.min().map(|base| {
                Duration::from_micros(u64::try_from(offset.saturating_sub(base)).unwrap_or(0))
            });
        }
        let rtt = self.rtt.unwrap_or(INITIAL_RTT);

        self.aimd.update(
            now,
            RateInput {
                usage: self.trendline.usage(),
                acked_bps: self.acked.bitrate_bps(),
                queue_delay: self.queue_delay,
                rtt,
            },
        );
        if let Some(result) = self.probe_estimator.take_result() {
            // A probe through a standing queue measures what the bottleneck delivers,
            // not what it could take on top: holding that rate keeps the queue.
            if self.queue_delay.is_none_or(|q| q <= QUIET_QUEUE_DELAY) {
                self.probe_results += 1;
                self.aimd.raise_to(now, result);
                self.loss.raise_to(result);
            }
            self.probes.on_result(now, result);
        }
        self.loss.on_feedback(now, received, lost);
        // Loss with a standing queue is congestion; loss on an empty queue is the link
        // itself (radio, a lossy last hop), which sending less does not cure.
        let queue_standing = self.queue_delay.is_some_and(|q| q > QUIET_QUEUE_DELAY);
        self.loss
            .update(now, rtt, self.aimd.bitrate_bps(), queue_standing);
    }

    /// Internals for logs and metrics.
    pub fn stats(&self) -> BweStats {
        BweStats {
            estimate_bps: self.estimate_bps(),
            delay_based_bps: self.aimd.bitrate_bps() as u64,
            loss_cap_bps: self.loss.cap_bps().map(|c| c as u64),
            acked_bps: self.acked.bitrate_bps().map(|a| a as u64),
            link_capacity_bps: self.aimd.capacity().estimate_bps().map(|c| c as u64),
            usage: self.trendline.usage(),
            state: self.aimd.state(),
            trend: self.trendline.modified_trend(),
            threshold: self.trendline.threshold_ms(),
            rtt: self.rtt.unwrap_or(INITIAL_RTT),
            queue_delay: self.queue_delay,
            loss_fraction: self.loss.last_fraction(),
            decreases: self.aimd.decreases(),
            probe_results: self.probe_results,
            bad_feedback: self.bad_feedback,
            starvation_cuts: self.starvation_cuts,
        }
    }
}
