//! The rate the receiver actually got, measured on its own arrival times.
//!
//! Send-side rates say what we pushed; only arrival times say what the bottleneck let
//! through. A decrease is taken relative to this rate, so it must follow a capacity
//! drop quickly: the window is short (300 ms), and bounded in entries so a flood of
//! tiny packets cannot grow it.

use std::collections::VecDeque;

const WINDOW_US: i64 = 300_000;
/// Below this much history the rate is too noisy to act on.
const MIN_SPAN_US: i64 = 50_000;
const MAX_ENTRIES: usize = 4096;

#[derive(Debug, Clone, Default)]
pub(crate) struct AckedBitrate {
    arrivals: VecDeque<(i64, u32)>,
    bytes_in_window: u64,
    first_arrival_us: Option<i64>,
    /// Latest arrival seen: the window ends here, so a report whose times jump back
    /// cannot stretch the window or keep old bytes in it.
    newest_us: Option<i64>,
}

impl AckedBitrate {
    /// Adds one received packet (arrival on the receiver clock, microseconds).
    pub(crate) fn on_packet(&mut self, arrival_us: i64, size_bytes: u32) {
        self.first_arrival_us.get_or_insert(arrival_us);
        let newest = self.newest_us.map_or(arrival_us, |n| n.max(arrival_us));
        self.newest_us = Some(newest);
        if newest.saturating_sub(arrival_us) > WINDOW_US {
            return;
        }
        if self.arrivals.len() >= MAX_ENTRIES {
            if let Some((_, s)) = self.arrivals.pop_front() {
                self.bytes_in_window -= u64::from(s);
            }
        }
        self.arrivals.push_back((arrival_us, size_bytes));
        self.bytes_in_window += u64::from(size_bytes);
        while let Some(&(t, s)) = self.arrivals.front() {
            if newest.saturating_sub(t) <= WINDOW_US {
                break;
            }
            self.arrivals.pop_front();
            self.bytes_in_window -= u64::from(s);
        }
    }

    /// Bits per second over the window, once enough has arrived to say.
    pub(crate) fn bitrate_bps(&self) -> Option<f64> {
        let newest = self.newest_us?;
        let oldest = self.arrivals.iter().map(|(t, _)| *t).min()?;
        let history = newest.saturating_sub(self.first_arrival_us?);
        if history < MIN_SPAN_US {
            return None;
        }
        // Until a full window has passed, divide by the history we have.
        let span = if history >= WINDOW_US {
            WINDOW_US
        } else {
            newest.saturating_sub(oldest).clamp(MIN_SPAN_US, WINDOW_US)
        };
        Some(self.bytes_in_window as f64 * 8.0 * 1e6 / span as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_steady_rate_and_follows_a_drop() {
        let mut a = AckedBitrate::default();
        assert!(a.bitrate_bps().is_none());
        // 1000-byte packets every 8 ms = 1 Mbit/s for a second
        for i in 0..125 {
            a.on_packet(i * 8_000, 1000);
        }
        let r = a.bitrate_bps().unwrap();
        assert!((r - 1_000_000.0).abs() < 40_000.0, "{r}");
        // then every 16 ms: 500 kbit/s, fully reflected after one window
        for i in 0..40 {
            a.on_packet(1_000_000 + i * 16_000, 1000);
        }
        let r = a.bitrate_bps().unwrap();
        assert!((r - 500_000.0).abs() < 40_000.0, "{r}");
    }

    #[test]
    fn arrivals_jumping_back_do_not_inflate_the_rate() {
        let mut a = AckedBitrate::default();
        for i in 0..125 {
            a.on_packet(i * 8_000, 1000);
        }
        // a report claiming many packets arrived in the past
        for i in 0..1000 {
            a.on_packet(i, 1000);
        }
        let r = a.bitrate_bps().unwrap();
        assert!((r - 1_000_000.0).abs() < 40_000.0, "{r}");
    }

    #[test]
    fn stays_bounded() {
        let mut a = AckedBitrate::default();
        for i in 0..100_000 {
            a.on_packet(i, 1);
        }
        assert!(a.arrivals.len() <= MAX_ENTRIES);
    }
}
