//! What one direction of a simulated path does to datagrams.

use std::time::Duration;

use crate::NetsimError;

/// Two-state Gilbert-Elliott burst-loss model. The state changes once per datagram
/// (before the loss draw), so bursts have a mean length of `1 / p_bad_to_good`
/// datagrams. Real lossy links (Wi-Fi, cellular handover) lose packets in runs, and a
/// handshake that survives 10 % Bernoulli loss can still die in a 6-datagram burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Per-datagram probability of moving from the good to the bad state.
    pub p_good_to_bad: f64,
    /// Per-datagram probability of moving from the bad back to the good state.
    pub p_bad_to_good: f64,
    /// Loss probability while in the good state (usually 0).
    pub loss_in_good: f64,
    /// Loss probability while in the bad state (usually 1).
    pub loss_in_bad: f64,
}

impl GilbertElliott {
    /// The classic "Gilbert" variant: nothing lost in the good state, everything in
    /// the bad one.
    pub fn gilbert(p_good_to_bad: f64, p_bad_to_good: f64) -> Self {
        Self {
            p_good_to_bad,
            p_bad_to_good,
            loss_in_good: 0.0,
            loss_in_bad: 1.0,
        }
    }

    /// Long-run fraction of datagrams lost, useful to pick parameters and in tests.
    pub fn mean_loss(&self) -> f64 {
        let total = self.p_good_to_bad + self.p_bad_to_good;
        if total <= 0.0 {
            return self.loss_in_good;
        }
        let bad_share = self.p_good_to_bad / total;
        bad_share * self.loss_in_bad + (1.0 - bad_share) * self.loss_in_good
    }
}

/// Impairments of one direction. `Default` is a perfect link: no delay, no loss, no
/// rate limit. Fields are applied in this order to each datagram:
/// re-cut (`recut_dtls`), MTU (`max_datagram_size`), the drop filter, the rate
/// limiter's tail-drop queue, random or burst loss (inside `loss_window`), then
/// delay + jitter, reordering and duplication.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// One-way propagation delay added to every datagram.
    pub delay: Duration,
    /// Uniform jitter in `-jitter..=+jitter` around `delay` (never below zero total).
    /// Jitter alone keeps datagrams in order, like a FIFO path whose latency varies;
    /// use `reorder` to reorder.
    pub jitter: Duration,
    /// Independent (Bernoulli) loss probability per datagram.
    pub loss: f64,
    /// Burst-loss model; when set it replaces `loss`.
    pub burst: Option<GilbertElliott>,
    /// Random/burst loss applies only between these offsets from the link's creation;
    /// `None` = always. Lets a test lose packets during the handshake only.
    pub loss_window: Option<(Duration, Duration)>,
    /// Probability that a delivered datagram is delivered twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back by `reorder_delay`, letting later
    /// datagrams overtake it.
    pub reorder: f64,
    /// Extra delay of a reordered datagram.
    pub reorder_delay: Duration,
    /// Bottleneck rate; `None` = unlimited. Datagrams are serialised one after the
    /// other at this rate.
    pub rate_bps: Option<u64>,
    /// Bytes the bottleneck queue holds (including the datagram being serialised)
    /// before it tail-drops. Only used with `rate_bps`.
    pub queue_bytes: usize,
    /// Datagrams larger than this are dropped, like a path MTU; `None` = no limit.
    pub max_datagram_size: Option<usize>,
    /// Re-fragment epoch-0 DTLS handshake records at random boundaries on every
    /// crossing (see [`crate::recut`]).
    pub recut_dtls: bool,
    /// Largest datagram the re-cutter packs into; `None` = the size of the datagram
    /// being re-cut.
    pub recut_datagram_size: Option<usize>,
    /// Bound on bytes held inside the link (queued plus in flight), so a sender that
    /// outruns a long delay cannot grow memory without limit. Excess is dropped and
    /// counted as `overflow`.
    pub max_in_flight_bytes: usize,
}

/// Default bottleneck queue: 64 KiB, a typical home-router buffer.
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1024;
/// Default in-flight bound: 16 MiB.
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: usize = 16 * 1024 * 1024;

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: None,
            loss_window: None,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            rate_bps: None,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            max_datagram_size: None,
            recut_dtls: false,
            recut_datagram_size: None,
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
        }
    }
}

impl LinkConfig {
    /// A perfect link (same as `Default`).
    pub fn perfect() -> Self {
        Self::default()
    }

    /// Fixed delay, no loss.
    pub fn delayed(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    /// Fixed delay with independent loss.
    pub fn lossy(delay: Duration, loss: f64) -> Self {
        Self {
            delay,
            loss,
            ..Self::default()
        }
    }

    /// Fixed delay with Gilbert burst loss.
    pub fn bursty(delay: Duration, p_good_to_bad: f64, p_bad_to_good: f64) -> Self {
        Self {
            delay,
            burst: Some(GilbertElliott::gilbert(p_good_to_bad, p_bad_to_good)),
            ..Self::default()
        }
    }

    /// A rate-limited bottleneck with a finite tail-drop queue.
    pub fn throttled(delay: Duration, rate_bps: u64, queue_bytes: usize) -> Self {
        Self {
            delay,
            rate_bps: Some(rate_bps),
            queue_bytes,
            ..Self::default()
        }
    }

    /// Builder-style: re-cut DTLS handshake fragments on every crossing.
    pub fn with_recut_dtls(mut self, recut_datagram_size: Option<usize>) -> Self {
        self.recut_dtls = true;
        self.recut_datagram_size = recut_datagram_size;
        self
    }

    /// Builder-style: drop datagrams larger than `max_datagram_size`.
    pub fn with_mtu(mut self, max_datagram_size: usize) -> Self {
        self.max_datagram_size = Some(max_datagram_size);
        self
    }

    /// Checks every probability and limit; the relay calls this on its options.
    /// A [`crate::Link`] built from an invalid config still never panics (probabilities
    /// are effectively clamped), but its behaviour is not what the caller meant.
    pub fn validate(&self) -> Result<(), NetsimError> {
        let mut probabilities = vec![
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ];
        if let Some(ge) = &self.burst {
            probabilities.extend([
                ("burst.p_good_to_bad", ge.p_good_to_bad),
                ("burst.p_bad_to_good", ge.p_bad_to_good),
                ("burst.loss_in_good", ge.loss_in_good),
                ("burst.loss_in_bad", ge.loss_in_bad),
            ]);
        }
        for (field, value) in probabilities {
            if !(0.0..=1.0).contains(&value) {
                return Err(NetsimError::InvalidProbability { field, value });
            }
        }
        if self.rate_bps == Some(0) {
            return Err(NetsimError::InvalidConfig {
                field: "rate_bps",
                reason: "must be greater than 0 (use None for unlimited)",
            });
        }
        if self.rate_bps.is_some() && self.queue_bytes == 0 {
            return Err(NetsimError::InvalidConfig {
                field: "queue_bytes",
                reason: "a rate-limited link needs a queue of at least one datagram",
            });
        }
        if let Some((from, to)) = self.loss_window {
            if to < from {
                return Err(NetsimError::InvalidConfig {
                    field: "loss_window",
                    reason: "end is before start",
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_a_perfect_link() {
        let c = LinkConfig::default();
        assert_eq!(c.delay, Duration::ZERO);
        assert_eq!(c.loss, 0.0);
        assert!(c.burst.is_none() && c.rate_bps.is_none() && c.max_datagram_size.is_none());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validate_rejects_out_of_range_probability() {
        let c = LinkConfig::lossy(Duration::ZERO, 1.5);
        assert!(matches!(
            c.validate(),
            Err(NetsimError::InvalidProbability { field: "loss", .. })
        ));
        let c = LinkConfig {
            duplicate: f64::NAN,
            ..LinkConfig::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn validate_rejects_zero_rate_and_inverted_window() {
        let c = LinkConfig::throttled(Duration::ZERO, 0, 1000);
        assert!(c.validate().is_err());
        let c = LinkConfig {
            loss_window: Some((Duration::from_secs(2), Duration::from_secs(1))),
            ..LinkConfig::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn gilbert_mean_loss_is_stationary_bad_share() {
        let ge = GilbertElliott::gilbert(0.05, 0.45);
        assert!((ge.mean_loss() - 0.1).abs() < 1e-12);
    }
}
