//! The retransmission timer: RTT-adaptive (RFC 6298 estimator, Karn's rule applied by the
//! caller), doubling on each timeout up to a cap.

use std::time::Duration;

/// Lower bound on the adaptive timeout. Chrome clamps at 50 ms; 100 ms keeps a burst of
/// reordering from triggering spurious retransmissions of large flights.
const MIN_ADAPTIVE_RTO: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub(crate) struct RetransmitTimer {
    adaptive: bool,
    initial: Duration,
    max: Duration,
    srtt: Option<Duration>,
    rttvar: Duration,
    /// The timeout before backoff.
    base: Duration,
    /// Doublings applied since the last progress.
    backoffs: u32,
}

impl RetransmitTimer {
    pub(crate) fn new(adaptive: bool, initial: Duration, max: Duration) -> Self {
        Self {
            adaptive,
            initial,
            max,
            srtt: None,
            rttvar: Duration::ZERO,
            base: initial,
            backoffs: 0,
        }
    }

    /// Feeds one round-trip sample from a flight that was sent exactly once.
    pub(crate) fn on_rtt_sample(&mut self, rtt: Duration) {
        if !self.adaptive {
            return;
        }
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(rtt);
        let rto = srtt + (self.rttvar * 4).max(Duration::from_millis(10));
        self.base = rto.clamp(MIN_ADAPTIVE_RTO, self.max);
    }

    /// The smoothed round-trip time, once measured.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The timeout to arm now.
    pub(crate) fn current(&self) -> Duration {
        if !self.adaptive {
            return self.initial;
        }
        let mut rto = self.base;
        for _ in 0..self.backoffs {
            rto = (rto * 2).min(self.max);
        }
        rto
    }

    /// A timeout fired: double (when adaptive).
    pub(crate) fn backoff(&mut self) {
        if self.adaptive && self.backoffs < 16 {
            self.backoffs += 1;
        }
    }

    /// The peer made progress: forget the backoff.
    pub(crate) fn reset_backoff(&mut self) {
        self.backoffs = 0;
    }

    /// The shortest spacing between two re-sends triggered by the peer's repeats: half a
    /// round trip once measured, so one repeated flight (several datagrams) triggers one
    /// re-send, not one per datagram.
    pub(crate) fn repeat_spacing(&self) -> Duration {
        match self.srtt {
            Some(srtt) => (srtt / 2).max(Duration::from_millis(20)),
            None => self.initial / 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut t = RetransmitTimer::new(true, Duration::from_millis(400), Duration::from_secs(3));
        assert_eq!(t.current(), Duration::from_millis(400));
        t.backoff();
        assert_eq!(t.current(), Duration::from_millis(800));
        for _ in 0..10 {
            t.backoff();
        }
        assert_eq!(t.current(), Duration::from_secs(3));
        t.reset_backoff();
        assert_eq!(t.current(), Duration::from_millis(400));
    }

    #[test]
    fn rtt_samples_set_the_timeout() {
        let mut t = RetransmitTimer::new(true, Duration::from_millis(400), Duration::from_secs(3));
        t.on_rtt_sample(Duration::from_millis(70));
        assert_eq!(t.current(), Duration::from_millis(210));
        t.on_rtt_sample(Duration::from_millis(5));
        assert!(t.current() >= MIN_ADAPTIVE_RTO);
    }

    #[test]
    fn fixed_timer_ignores_samples_and_backoff() {
        let mut t = RetransmitTimer::new(false, Duration::from_secs(1), Duration::from_secs(3));
        t.on_rtt_sample(Duration::from_millis(70));
        t.backoff();
        assert_eq!(t.current(), Duration::from_secs(1));
    }
}
