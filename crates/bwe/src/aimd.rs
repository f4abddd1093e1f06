//! Delay-based rate control: additive increase, multiplicative decrease
//! (draft-ietf-rmcat-gcc-02 section 5.5), driven by the overuse detector.

use std::time::{Duration, Instant};

use crate::delay::BandwidthUsage;

/// Multiplicative decrease: the new rate is this fraction of the acknowledged rate.
const BETA: f64 = 0.85;
/// Multiplicative increase per second while far from the link's known capacity.
const MULTIPLICATIVE_GROWTH_PER_S: f64 = 1.08;
/// Increase never takes the estimate beyond this multiple of the acknowledged rate
/// (plus a constant), so a sender that does not use its estimate cannot inflate it.
const ACKED_HEADROOM: f64 = 1.5;
const ACKED_HEADROOM_BPS: f64 = 10_000.0;
/// Queueing delay (above the path's minimum) that a decrease tries to drain, and the
/// time it gives itself to drain it.
const DRAIN_AFTER: Duration = Duration::from_millis(100);
const DRAIN_WITHIN: Duration = Duration::from_secs(1);
/// A drain decrease never goes below this fraction of the acknowledged rate.
const MIN_DRAIN_FACTOR: f64 = 0.5;
/// Time the sender needs to see the effect of a change on top of the round trip.
const RESPONSE_EXTRA: Duration = Duration::from_millis(100);
/// Additive increase assumes this packet size and 30 frames a second.
const PACKET_BITS: f64 = 1200.0 * 8.0;
const FRAMES_PER_S: f64 = 30.0;
const MIN_ADDITIVE_BPS_PER_S: f64 = 4_000.0;

/// Average of the acknowledged rate at the moments of overuse, with its spread: where
/// the link's capacity appears to be (draft section 5.5, "close to convergence").
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LinkCapacity {
    estimate_kbps: Option<f64>,
    /// Variance normalised by the estimate, in kbps.
    norm_var: f64,
}

const CAPACITY_ALPHA: f64 = 0.05;
const MIN_NORM_VAR: f64 = 0.4;
const MAX_NORM_VAR: f64 = 2.5;

impl LinkCapacity {
    fn update(&mut self, sample_bps: f64) {
        let sample = sample_bps / 1000.0;
        let est = match self.estimate_kbps {
            None => sample,
            Some(e) => (1.0 - CAPACITY_ALPHA) * e + CAPACITY_ALPHA * sample,
        };
        self.estimate_kbps = Some(est);
        let err = est - sample;
        let norm = est.max(1.0);
        let var = (1.0 - CAPACITY_ALPHA) * self.norm_var.max(MIN_NORM_VAR)
            + CAPACITY_ALPHA * err * err / norm;
        self.norm_var = var.clamp(MIN_NORM_VAR, MAX_NORM_VAR);
    }

    fn std_kbps(&self) -> f64 {
        self.estimate_kbps
            .map(|e| (self.norm_var.max(MIN_NORM_VAR) * e).sqrt())
            .unwrap_or(0.0)
    }

    fn upper_bps(&self) -> Option<f64> {
        self.estimate_kbps
            .map(|e| (e + 3.0 * self.std_kbps()) * 1000.0)
    }

    fn lower_bps(&self) -> Option<f64> {
        self.estimate_kbps
            .map(|e| (e - 3.0 * self.std_kbps()).max(0.0) * 1000.0)
    }

    pub(crate) fn estimate_bps(&self) -> Option<f64> {
        self.estimate_kbps.map(|e| e * 1000.0)
    }
}

/// Rate-control state (draft section 5.5, figure 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateControlState {
    /// Keep the rate: a queue is draining, or we just decreased.
    Hold,
    /// Grow the rate.
    Increase,
    /// Cut the rate on the next update.
    Decrease,
}

/// Inputs of one rate-control update.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateInput {
    pub(crate) usage: BandwidthUsage,
    pub(crate) acked_bps: Option<f64>,
    pub(crate) queue_delay: Option<Duration>,
    pub(crate) rtt: Duration,
}

#[derive(Debug, Clone)]
pub(crate) struct Aimd {
    bitrate_bps: f64,
    min_bps: f64,
    max_bps: f64,
    state: RateControlState,
    last_update: Option<Instant>,
    capacity: LinkCapacity,
    decreases: u64,
    last_decrease: Option<Instant>,
}

impl Aimd {
    pub(crate) fn new(start_bps: f64, min_bps: f64, max_bps: f64) -> Self {
        Self {
            bitrate_bps: start_bps.clamp(min_bps, max_bps),
            min_bps,
            max_bps,
            state: RateControlState::Hold,
            last_update: None,
            capacity: LinkCapacity::default(),
            decreases: 0,
            last_decrease: None,
        }
    }

    pub(crate) fn bitrate_bps(&self) -> f64 {
        self.bitrate_bps
    }

    pub(crate) fn state(&self) -> RateControlState {
        self.state
    }

    pub(crate) fn capacity(&self) -> &LinkCapacity {
        &self.capacity
    }

    pub(crate) fn decreases(&self) -> u64 {
        self.decreases
    }

    /// When the rate was last cut.
    pub(crate) fn last_decrease(&self) -> Option<Instant> {
        self.last_decrease
    }

    /// New bounds; the rate is clamped into them.
    pub(crate) fn set_bounds(&mut self, min_bps: f64, max_bps: f64) {
        self.min_bps = min_bps;
        self.max_bps = max_bps;
        self.bitrate_bps = self.bitrate_bps.clamp(min_bps, max_bps);
    }

    /// Cuts the rate by `factor` outright (feedback stopped), and holds.
    pub(crate) fn cut(&mut self, now: Instant, factor: f64) {
        self.bitrate_bps = (self.bitrate_bps * factor).clamp(self.min_bps, self.max_bps);
        self.state = RateControlState::Hold;
        self.last_update = Some(now);
        self.last_decrease = Some(now);
        self.decreases += 1;
    }

    /// Jumps to a measured rate (a probe result) when it is above the current one.
    pub(crate) fn raise_to(&mut self, now: Instant, bps: f64) {
        if bps > self.bitrate_bps {
            self.bitrate_bps = bps.clamp(self.min_bps, self.max_bps);
            self.last_update = Some(now);
        }
    }

    pub(crate) fn update(&mut self, now: Instant, input: RateInput) {
        self.state = match (input.usage, self.state) {
            (BandwidthUsage::Overusing, _) => RateControlState::Decrease,
            (BandwidthUsage::Underusing, _) => RateControlState::Hold,
            (BandwidthUsage::Normal, RateControlState::Hold) => RateControlState::Increase,
            (BandwidthUsage::Normal, s) => s,
        };
        let dt = self
            .last_update
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(1));
        match self.state {
            RateControlState::Hold => {}
            RateControlState::Increase => self.increase(dt, input),
            RateControlState::Decrease => {
                if self.decrease(input) {
                    self.last_decrease = Some(now);
                }
                self.state = RateControlState::Hold;
            }
        }
        self.bitrate_bps = self.bitrate_bps.clamp(self.min_bps, self.max_bps);
        self.last_update = Some(now);
    }

    fn increase(&mut self, dt: Duration, input: RateInput) {
        if let (Some(acked), Some(upper)) = (input.acked_bps, self.capacity.upper_bps()) {
            if acked > upper {
                // The link carries more than it did at the last overuse: capacity grew.
                self.capacity = LinkCapacity::default();
            }
        }
        let grown = if self.capacity.estimate_bps().is_some() {
            self.bitrate_bps + self.additive_bps_per_s(input.rtt) * dt.as_secs_f64()
        } else {
            self.bitrate_bps * MULTIPLICATIVE_GROWTH_PER_S.powf(dt.as_secs_f64())
        };
        let ceiling = input
            .acked_bps
            .map(|a| ACKED_HEADROOM * a + ACKED_HEADROOM_BPS)
            .unwrap_or(f64::MAX);
        // Above the ceiling already (a probe put us there): hold, never cut.
        self.bitrate_bps = grown.min(ceiling.max(self.bitrate_bps));
    }

    /// About one packet per response time: the additive step of a sender whose frames
    /// span a few packets.
    fn additive_bps_per_s(&self, rtt: Duration) -> f64 {
        let bits_per_frame = self.bitrate_bps / FRAMES_PER_S;
        let packets_per_frame = (bits_per_frame / PACKET_BITS).ceil().max(1.0);
        let avg_packet_bits = bits_per_frame / packets_per_frame;
        let response_s = (rtt + RESPONSE_EXTRA).as_secs_f64();
        (avg_packet_bits / response_s).max(MIN_ADDITIVE_BPS_PER_S)
    }

    /// Returns whether the rate went down.
    fn decrease(&mut self, input: RateInput) -> bool {
        let Some(acked) = input.acked_bps else {
            self.bitrate_bps *= BETA;
            self.decreases += 1;
            return true;
        };
        if self.capacity.lower_bps().is_some_and(|low| acked < low) {
            // Far below where overuse used to happen: the capacity dropped.
            self.capacity = LinkCapacity::default();
        }
        self.capacity.update(acked);
        let mut target = BETA * acked;
        if let Some(q) = input.queue_delay.filter(|q| *q > DRAIN_AFTER) {
            // A standing queue: cutting to 85 % drains it at 15 % of the link rate,
            // seconds for a deep buffer. Cut enough to drain it within DRAIN_WITHIN.
            let factor = (1.0 - q.as_secs_f64() / DRAIN_WITHIN.as_secs_f64()).max(MIN_DRAIN_FACTOR);
            target = target.min(factor * acked);
        }
        if target < self.bitrate_bps {
            self.bitrate_bps = target;
            self.decreases += 1;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(usage: BandwidthUsage, acked: f64) -> RateInput {
        RateInput {
            usage,
            acked_bps: Some(acked),
            queue_delay: None,
            rtt: Duration::from_millis(50),
        }
    }

    #[test]
    fn overuse_cuts_to_beta_of_acked_then_holds() {
        let t0 = Instant::now();
        let mut a = Aimd::new(1_000_000.0, 30_000.0, 10_000_000.0);
        a.update(t0, input(BandwidthUsage::Overusing, 900_000.0));
        assert!((a.bitrate_bps() - 765_000.0).abs() < 1.0);
        assert_eq!(a.state(), RateControlState::Hold);
        // repeated overuse at the same acked rate does not cut again
        a.update(t0, input(BandwidthUsage::Overusing, 900_000.0));
        assert!((a.bitrate_bps() - 765_000.0).abs() < 1.0);
    }

    #[test]
    fn increase_is_multiplicative_far_from_capacity_and_additive_near() {
        let t0 = Instant::now();
        let mut a = Aimd::new(500_000.0, 30_000.0, 10_000_000.0);
        a.update(t0, input(BandwidthUsage::Normal, 500_000.0));
        a.update(
            t0 + Duration::from_secs(1),
            input(BandwidthUsage::Normal, 500_000.0),
        );
        assert!(
            (a.bitrate_bps() - 540_000.0).abs() < 1.0,
            "{}",
            a.bitrate_bps()
        );

        let mut b = Aimd::new(500_000.0, 30_000.0, 10_000_000.0);
        b.update(t0, input(BandwidthUsage::Overusing, 560_000.0)); // learns capacity
        let cut = b.bitrate_bps();
        b.update(t0, input(BandwidthUsage::Normal, 476_000.0)); // hold -> increase
        b.update(
            t0 + Duration::from_secs(1),
            input(BandwidthUsage::Normal, 476_000.0),
        );
        let step = b.bitrate_bps() - cut;
        assert!(step > 10_000.0 && step < 60_000.0, "additive step {step}");
    }

    #[test]
    fn increase_is_capped_by_acked_rate() {
        let t0 = Instant::now();
        let mut a = Aimd::new(60_000.0, 30_000.0, 10_000_000.0);
        for s in 0..30 {
            a.update(
                t0 + Duration::from_secs(s),
                input(BandwidthUsage::Normal, 50_000.0),
            );
        }
        // 1.5 x acked + 10 kbit/s
        assert!(
            (a.bitrate_bps() - 85_000.0).abs() < 1.0,
            "{}",
            a.bitrate_bps()
        );
        // a probe may put it above; increase then holds, never cuts
        a.raise_to(t0, 200_000.0);
        a.update(
            t0 + Duration::from_secs(31),
            input(BandwidthUsage::Normal, 50_000.0),
        );
        assert!((a.bitrate_bps() - 200_000.0).abs() < 1.0);
    }

    #[test]
    fn standing_queue_cuts_deeper() {
        let t0 = Instant::now();
        let mut a = Aimd::new(2_000_000.0, 30_000.0, 10_000_000.0);
        let mut i = input(BandwidthUsage::Overusing, 500_000.0);
        i.queue_delay = Some(Duration::from_millis(400));
        a.update(t0, i);
        assert!(
            (a.bitrate_bps() - 300_000.0).abs() < 1.0,
            "{}",
            a.bitrate_bps()
        );
    }
}
