//! Delay-based congestion detection: packet groups, their one-way delay variation, a
//! trendline over it and an overuse detector with an adaptive threshold
//! (draft-ietf-rmcat-gcc-02 sections 5.2-5.4, with the trendline filter that replaced
//! the draft's Kalman filter in practice).
//!
//! Only differences matter here: the sender's clock and the receiver's clock never
//! need to agree, because every quantity is a difference of send times or a difference
//! of arrival times.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Packets sent within this span of a group's first packet form one group: a video
/// frame leaves the pacer as a burst, and its packets' individual delays are noise.
const GROUP_SPAN: Duration = Duration::from_millis(5);
/// Packets arriving this close after the previous one, and earlier than their send
/// spacing predicts, join the current group: a burst released by a queue upstream.
const BURST_ARRIVAL_US: i64 = 5_000;
/// A burst group never spans more than this much arrival time.
const MAX_BURST_SPAN_US: i64 = 100_000;
/// Arrival deltas beyond this mean a clock jump or a long silence: start over.
const MAX_ARRIVAL_DELTA_US: i64 = 3_000_000;

/// Samples in the trendline's regression window.
const TRENDLINE_WINDOW: usize = 20;
/// Exponential smoothing of the accumulated delay before the regression.
const SMOOTHING: f64 = 0.9;
/// Scales the slope into the detector's units.
const THRESHOLD_GAIN: f64 = 4.0;
/// The slope is multiplied by the number of deltas seen, capped here, so a young
/// estimate (few samples) needs a steeper slope to trigger.
const MAX_DELTA_WEIGHT: u32 = 60;
/// Threshold adaptation: slowly upward (k_up) while the trend exceeds it, faster
/// downward (k_down) while the trend is inside it.
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
/// Trend excursions this far beyond the threshold are outliers (a route change, a
/// burst) and do not move the threshold.
const MAX_ADAPT_OFFSET_MS: f64 = 15.0;
const MIN_THRESHOLD_MS: f64 = 6.0;
const MAX_THRESHOLD_MS: f64 = 600.0;
const INITIAL_THRESHOLD_MS: f64 = 12.5;
/// Overuse must persist this long (in send time) before it is signalled.
const OVERUSE_TIME_MS: f64 = 10.0;

/// What the detector concludes about the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BandwidthUsage {
    /// Delay is stable: the path is not the bottleneck, or is exactly at it.
    #[default]
    Normal,
    /// Delay is growing: a queue is building somewhere on the path.
    Overusing,
    /// Delay is shrinking: a queue is draining.
    Underusing,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    first_send: Instant,
    last_send: Instant,
    first_arrival_us: i64,
    last_arrival_us: i64,
}

/// One delta between two consecutive complete groups.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GroupDelta {
    pub(crate) send_delta_ms: f64,
    pub(crate) arrival_delta_ms: f64,
    /// Arrival time of the later group on the receiver clock, in ms.
    pub(crate) arrival_ms: f64,
}

/// Groups packets and emits the delay variation between consecutive groups.
#[derive(Debug, Clone, Default)]
pub(crate) struct InterArrival {
    current: Option<Group>,
    previous: Option<Group>,
}

impl InterArrival {
    /// Adds a received packet (in send order). Returns a delta when the packet starts a
    /// new group and two complete groups exist to compare.
    pub(crate) fn on_packet(&mut self, send: Instant, arrival_us: i64) -> Option<GroupDelta> {
        let Some(cur) = self.current.as_mut() else {
            self.current = Some(Group {
                first_send: send,
                last_send: send,
                first_arrival_us: arrival_us,
                last_arrival_us: arrival_us,
            });
            return None;
        };
        if send < cur.first_send {
            // Reordered in send time relative to the group: carries no clean signal.
            return None;
        }
        let in_span = send.saturating_duration_since(cur.first_send) <= GROUP_SPAN;
        let arrival_gap = arrival_us.saturating_sub(cur.last_arrival_us);
        let send_gap_us = send.saturating_duration_since(cur.last_send).as_micros() as i64;
        let burst = (0..=BURST_ARRIVAL_US).contains(&arrival_gap)
            && arrival_gap < send_gap_us
            && arrival_us - cur.first_arrival_us < MAX_BURST_SPAN_US;
        if in_span || burst {
            cur.last_send = cur.last_send.max(send);
            cur.last_arrival_us = cur.last_arrival_us.max(arrival_us);
            return None;
        }
        let finished = *cur;
        *cur = Group {
            first_send: send,
            last_send: send,
            first_arrival_us: arrival_us,
            last_arrival_us: arrival_us,
        };
        let delta = self.previous.map(|prev| GroupDelta {
            send_delta_ms: duration_ms(
                finished.last_send.saturating_duration_since(prev.last_send),
            ),
            arrival_delta_ms: (finished.last_arrival_us - prev.last_arrival_us) as f64 / 1000.0,
            arrival_ms: finished.last_arrival_us as f64 / 1000.0,
        });
        self.previous = Some(finished);
        match delta {
            Some(d) if d.arrival_delta_ms.abs() * 1000.0 > MAX_ARRIVAL_DELTA_US as f64 => {
                // A discontinuity: forget history rather than feed it to the filter.
                self.previous = None;
                None
            }
            other => other,
        }
    }
}

fn duration_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Trendline filter plus overuse detector.
#[derive(Debug, Clone)]
pub(crate) struct Trendline {
    window: VecDeque<(f64, f64)>,
    first_arrival_ms: Option<f64>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    deltas_seen: u32,
    trend: f64,
    previous_trend: f64,
    threshold_ms: f64,
    last_threshold_update_ms: Option<f64>,
    /// Send time spent over the threshold so far; `None` when not over it.
    overuse_ms: Option<f64>,
    overuse_count: u32,
    usage: BandwidthUsage,
}

impl Default for Trendline {
    fn default() -> Self {
        Self {
            window: VecDeque::with_capacity(TRENDLINE_WINDOW + 1),
            first_arrival_ms: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            deltas_seen: 0,
            trend: 0.0,
            previous_trend: 0.0,
            threshold_ms: INITIAL_THRESHOLD_MS,
            last_threshold_update_ms: None,
            overuse_ms: None,
            overuse_count: 0,
            usage: BandwidthUsage::Normal,
        }
    }
}

impl Trendline {
    pub(crate) fn usage(&self) -> BandwidthUsage {
        self.usage
    }

    /// The current threshold (ms, in the scaled-trend unit), for stats.
    pub(crate) fn threshold_ms(&self) -> f64 {
        self.threshold_ms
    }

    /// The last modified trend (scaled slope) compared with the threshold.
    pub(crate) fn modified_trend(&self) -> f64 {
        f64::from(self.deltas_seen.min(MAX_DELTA_WEIGHT)) * self.trend * THRESHOLD_GAIN
    }

    pub(crate) fn update(&mut self, d: GroupDelta) -> BandwidthUsage {
        let variation = d.arrival_delta_ms - d.send_delta_ms;
        if !variation.is_finite() {
            return self.usage;
        }
        self.deltas_seen = self.deltas_seen.saturating_add(1).min(1000);
        self.accumulated_ms += variation;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        let first = *self.first_arrival_ms.get_or_insert(d.arrival_ms);
        self.window
            .push_back((d.arrival_ms - first, self.smoothed_ms));
        if self.window.len() > TRENDLINE_WINDOW {
            self.window.pop_front();
        }
        if self.window.len() == TRENDLINE_WINDOW {
            if let Some(slope) = slope(&self.window) {
                self.trend = slope;
            }
        }
        self.detect(d.send_delta_ms, d.arrival_ms);
        self.usage
    }

    fn detect(&mut self, send_delta_ms: f64, now_ms: f64) {
        let modified = self.modified_trend();
        if modified > self.threshold_ms {
            let over = match self.overuse_ms {
                None => send_delta_ms / 2.0,
                Some(t) => t + send_delta_ms,
            };
            self.overuse_ms = Some(over);
            self.overuse_count += 1;
            if over > OVERUSE_TIME_MS && self.overuse_count > 1 && self.trend >= self.previous_trend
            {
                self.overuse_ms = Some(0.0);
                self.overuse_count = 0;
                self.usage = BandwidthUsage::Overusing;
            }
        } else if modified < -self.threshold_ms {
            self.overuse_ms = None;
            self.overuse_count = 0;
            self.usage = BandwidthUsage::Underusing;
        } else {
            self.overuse_ms = None;
            self.overuse_count = 0;
            self.usage = BandwidthUsage::Normal;
        }
        self.previous_trend = self.trend;
        self.adapt_threshold(modified, now_ms);
    }

    /// Moves the threshold towards the trend's magnitude, so that a path with noisy
    /// delay does not signal overuse all the time, and a competing TCP flow does not
    /// starve us by keeping the queue (and our threshold) permanently high.
    fn adapt_threshold(&mut self, modified: f64, now_ms: f64) {
        let last = *self.last_threshold_update_ms.get_or_insert(now_ms);
        if modified.abs() > self.threshold_ms + MAX_ADAPT_OFFSET_MS {
            self.last_threshold_update_ms = Some(now_ms);
            return;
        }
        let k = if modified.abs() < self.threshold_ms {
            K_DOWN
        } else {
            K_UP
        };
        let dt = (now_ms - last).clamp(0.0, 100.0);
        self.threshold_ms += k * (modified.abs() - self.threshold_ms) * dt;
        self.threshold_ms = self.threshold_ms.clamp(MIN_THRESHOLD_MS, MAX_THRESHOLD_MS);
        self.last_threshold_update_ms = Some(now_ms);
    }
}

/// Least-squares slope of y over x.
fn slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    if n < 2.0 {
        return None;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in points {
        num += (x - mx) * (y - my);
        den += (x - mx) * (x - mx);
    }
    (den > 0.0).then(|| num / den)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds packets sent every `send_gap` and arriving every `arrival_gap`.
    fn run(send_gap_us: u64, arrival_gap_us: i64, packets: u64) -> BandwidthUsage {
        let t0 = Instant::now();
        let mut ia = InterArrival::default();
        let mut tl = Trendline::default();
        let mut usage = BandwidthUsage::Normal;
        let mut overused = false;
        for i in 0..packets {
            let send = t0 + Duration::from_micros(i * send_gap_us);
            if let Some(d) = ia.on_packet(send, i as i64 * arrival_gap_us) {
                usage = tl.update(d);
                overused |= usage == BandwidthUsage::Overusing;
            }
        }
        if overused {
            BandwidthUsage::Overusing
        } else {
            usage
        }
    }

    #[test]
    fn groups_packets_sent_within_five_ms() {
        let t0 = Instant::now();
        let mut ia = InterArrival::default();
        // three groups of three packets 1 ms apart, groups 20 ms apart
        let mut deltas = Vec::new();
        for g in 0..3u64 {
            for p in 0..3u64 {
                let send = t0 + Duration::from_millis(g * 20 + p);
                deltas.extend(ia.on_packet(send, (g * 20_000 + p * 1000) as i64));
            }
        }
        // the third group's first packet completes group 2, compared with group 1
        assert_eq!(deltas.len(), 1);
        assert!((deltas[0].send_delta_ms - 20.0).abs() < 1e-9);
        assert!((deltas[0].arrival_delta_ms - 20.0).abs() < 1e-9);
    }

    #[test]
    fn steady_delay_is_normal() {
        assert_eq!(run(10_000, 10_000, 400), BandwidthUsage::Normal);
    }

    #[test]
    fn growing_delay_is_overuse() {
        // sent every 10 ms, arriving every 12 ms: a queue grows 2 ms per packet
        assert_eq!(run(10_000, 12_000, 200), BandwidthUsage::Overusing);
    }

    #[test]
    fn shrinking_delay_is_underuse() {
        let t0 = Instant::now();
        let mut ia = InterArrival::default();
        let mut tl = Trendline::default();
        // a queue of 400 ms draining: arrivals 8 ms apart for packets sent 10 ms apart
        let mut usage = BandwidthUsage::Normal;
        for i in 0..60u64 {
            let send = t0 + Duration::from_millis(i * 10);
            let arrival = 400_000 + i as i64 * 8_000;
            if let Some(d) = ia.on_packet(send, arrival) {
                usage = tl.update(d);
            }
        }
        assert_eq!(usage, BandwidthUsage::Underusing);
    }

    #[test]
    fn slope_of_a_line() {
        let pts: VecDeque<_> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 1.0)).collect();
        assert!((slope(&pts).unwrap() - 3.0).abs() < 1e-9);
        let flat: VecDeque<_> = (0..10).map(|_| (1.0, 2.0)).collect();
        assert!(slope(&flat).is_none());
    }
}
