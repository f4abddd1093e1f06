//! Loss-based control (draft-ietf-rmcat-gcc-02 section 6): a cap on the rate that only
//! bites when loss is high.
//!
//! The draft's controller increases below 2 % loss, holds between 2 % and 10 % and
//! decreases above. Taken literally as an estimate of its own it can never climb
//! through a link with steady random loss (wireless), and a 5 % loss rate would pin
//! the sender at its start rate. Here it is a cap: absent until loss first exceeds
//! 10 %, then cut by half the loss fraction, held while loss stays between 2 % and
//! 10 %, grown by 8 % a second below 2 %, and lifted once the delay-based estimate is
//! below it again. Loss is measured over windows of at least 100 packets (or 1 s and
//! 30 packets), because 5 % random loss seen over 20 packets exceeds 10 % too often.

use std::time::{Duration, Instant};

const LOW_LOSS: f64 = 0.02;
const HIGH_LOSS: f64 = 0.10;
const GROWTH_PER_S: f64 = 1.08;
const FULL_WINDOW_PACKETS: u64 = 100;
const TIMED_WINDOW: Duration = Duration::from_secs(1);
const TIMED_WINDOW_PACKETS: u64 = 30;
/// Decreases are at least this far apart (plus the round trip), so one loss burst,
/// seen in successive windows, is punished once.
const DECREASE_INTERVAL: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Default)]
pub(crate) struct LossBased {
    cap_bps: Option<f64>,
    window_start: Option<Instant>,
    received: u64,
    lost: u64,
    last_fraction: Option<f64>,
    last_update: Option<Instant>,
    last_decrease: Option<Instant>,
}

impl LossBased {
    pub(crate) fn cap_bps(&self) -> Option<f64> {
        self.cap_bps
    }

    /// Loss fraction of the last complete window.
    pub(crate) fn last_fraction(&self) -> Option<f64> {
        self.last_fraction
    }

    /// Counts of one feedback packet.
    pub(crate) fn on_feedback(&mut self, now: Instant, received: u64, lost: u64) {
        self.window_start.get_or_insert(now);
        self.received += received;
        self.lost += lost;
    }

    /// Re-evaluates the cap when a window is complete. `estimate_bps` is the rate in
    /// use (the minimum of the delay-based estimate and this cap).
    /// Loss above `HIGH_LOSS` lowers the cap only while `congested` (a standing queue):
    /// random loss on a link that is not full is left to retransmission.
    pub(crate) fn update(
        &mut self,
        now: Instant,
        rtt: Duration,
        delay_based_bps: f64,
        congested: bool,
    ) {
        let Some(start) = self.window_start else {
            return;
        };
        let total = self.received + self.lost;
        let timed = now.saturating_duration_since(start) >= TIMED_WINDOW;
        if !(total >= FULL_WINDOW_PACKETS || (timed && total >= TIMED_WINDOW_PACKETS)) {
            return;
        }
        let fraction = self.lost as f64 / total as f64;
        self.last_fraction = Some(fraction);
        self.window_start = Some(now);
        self.received = 0;
        self.lost = 0;
        let dt = self
            .last_update
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(1));
        self.last_update = Some(now);
        let in_use = self
            .cap_bps
            .map_or(delay_based_bps, |c| c.min(delay_based_bps));
        if fraction > HIGH_LOSS && congested {
            let spaced = self
                .last_decrease
                .is_none_or(|t| now.saturating_duration_since(t) >= DECREASE_INTERVAL + rtt);
            if spaced {
                self.cap_bps = Some(in_use * (1.0 - 0.5 * fraction));
                self.last_decrease = Some(now);
            }
        } else if fraction < LOW_LOSS {
            if let Some(cap) = self.cap_bps {
                let grown = cap * GROWTH_PER_S.powf(dt.as_secs_f64());
                // Once delay control alone keeps us below the cap, it no longer matters.
                self.cap_bps = (grown < delay_based_bps).then_some(grown);
            }
        }
    }

    /// A probe measured `bps` through the path: a cap below it is stale.
    pub(crate) fn raise_to(&mut self, bps: f64) {
        if let Some(cap) = self.cap_bps.as_mut() {
            *cap = cap.max(bps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(l: &mut LossBased, now: Instant, lost: u64) {
        l.on_feedback(now, 100 - lost, lost);
        l.update(now, Duration::from_millis(50), 1_000_000.0, true);
    }

    #[test]
    fn moderate_loss_never_caps() {
        let t0 = Instant::now();
        let mut l = LossBased::default();
        for i in 0..100 {
            window(&mut l, t0 + Duration::from_secs(i), 2 + i % 8);
        }
        assert_eq!(l.cap_bps(), None);
    }

    #[test]
    fn heavy_loss_cuts_once_per_interval_then_recovers() {
        let t0 = Instant::now();
        let mut l = LossBased::default();
        window(&mut l, t0, 20);
        assert_eq!(l.cap_bps(), Some(900_000.0));
        window(&mut l, t0 + Duration::from_millis(100), 20);
        assert_eq!(l.cap_bps(), Some(900_000.0), "cut twice for one burst");
        window(&mut l, t0 + Duration::from_millis(500), 20);
        assert_eq!(l.cap_bps(), Some(810_000.0));
        window(&mut l, t0 + Duration::from_millis(1500), 5);
        assert_eq!(l.cap_bps(), Some(810_000.0), "held");
        for i in 0..10 {
            window(&mut l, t0 + Duration::from_millis(2500 + i * 1000), 0);
        }
        assert_eq!(l.cap_bps(), None, "lifted once above the delay-based rate");
    }
}
