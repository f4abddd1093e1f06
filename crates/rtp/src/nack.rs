//! Receiver-side loss detection: which sequence numbers to NACK, and when.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::seq::SeqUnwrapper;

/// When and how often to ask for a missing packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackConfig {
    /// Wait this long after detecting a gap before the first NACK, so that mere
    /// reordering does not trigger retransmissions.
    pub reorder_delay: Duration,
    /// Time between NACKs for the same packet (about one RTT).
    pub retry_interval: Duration,
    /// NACKs sent per packet before giving up.
    pub max_retries: u32,
    /// Give up on a packet this long after its loss was detected.
    pub max_age: Duration,
    /// Most missing packets tracked; a larger gap resets tracking (a keyframe is cheaper).
    pub max_missing: usize,
}

impl Default for NackConfig {
    fn default() -> Self {
        Self {
            reorder_delay: Duration::from_millis(10),
            retry_interval: Duration::from_millis(100),
            max_retries: 10,
            max_age: Duration::from_millis(1000),
            max_missing: 512,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Missing {
    detected_at: Instant,
    last_sent: Option<Instant>,
    retries: u32,
}

/// Tracks gaps in one incoming stream and schedules NACKs with a retry and age limit.
#[derive(Debug, Clone)]
pub struct NackGenerator {
    config: NackConfig,
    unwrapper: SeqUnwrapper,
    missing: BTreeMap<u64, Missing>,
    /// Packets given up on (retry or age limit, or a reset), for metrics.
    abandoned: u64,
}

impl NackGenerator {
    /// A generator with `config`.
    pub fn new(config: NackConfig) -> Self {
        Self {
            config,
            unwrapper: SeqUnwrapper::new(),
            missing: BTreeMap::new(),
            abandoned: 0,
        }
    }

    /// Updates the retry interval, typically to the measured round-trip time.
    pub fn set_retry_interval(&mut self, retry_interval: Duration) {
        self.config.retry_interval = retry_interval;
    }

    /// Records a received packet: fills its gap if it was missing, or marks the packets
    /// between the previous highest and it as missing.
    pub fn on_packet(&mut self, seq: u16, now: Instant) {
        let prev_highest = self.unwrapper.highest();
        let ext = self.unwrapper.extend(seq);
        let Some(prev) = prev_highest else {
            return;
        };
        if ext <= prev {
            self.missing.remove(&ext);
            return;
        }
        let gap = ext - prev - 1;
        if gap as usize > self.config.max_missing {
            self.abandoned += self.missing.len() as u64 + gap;
            self.missing.clear();
            return;
        }
        for s in prev + 1..ext {
            self.missing.insert(
                s,
                Missing {
                    detected_at: now,
                    last_sent: None,
                    retries: 0,
                },
            );
        }
        while self.missing.len() > self.config.max_missing {
            self.missing.pop_first();
            self.abandoned += 1;
        }
    }

    /// Appends to `out` the sequence numbers due for a NACK at `now` (ascending) and
    /// counts them as sent; drops packets past their retry or age limit.
    pub fn poll_nacks_into(&mut self, now: Instant, out: &mut Vec<u16>) {
        let cfg = self.config;
        let before = self.missing.len();
        self.missing.retain(|_, m| {
            m.retries < cfg.max_retries
                && now.saturating_duration_since(m.detected_at) < cfg.max_age
        });
        self.abandoned += (before - self.missing.len()) as u64;
        for (&ext, m) in self.missing.iter_mut() {
            let due = match m.last_sent {
                None => now.saturating_duration_since(m.detected_at) >= cfg.reorder_delay,
                Some(t) => now.saturating_duration_since(t) >= cfg.retry_interval,
            };
            if due {
                m.last_sent = Some(now);
                m.retries += 1;
                out.push(ext as u16);
            }
        }
    }

    /// The sequence numbers due for a NACK at `now`; see [`poll_nacks_into`](Self::poll_nacks_into).
    pub fn poll_nacks(&mut self, now: Instant) -> Vec<u16> {
        let mut out = Vec::new();
        self.poll_nacks_into(now, &mut out);
        out
    }

    /// The next instant at which [`poll_nacks`](Self::poll_nacks) may have something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.missing
            .values()
            .map(|m| match m.last_sent {
                None => m.detected_at + self.config.reorder_delay,
                Some(t) => {
                    (t + self.config.retry_interval).min(m.detected_at + self.config.max_age)
                }
            })
            .min()
    }

    /// Packets currently considered missing.
    pub fn missing_count(&self) -> usize {
        self.missing.len()
    }

    /// Packets given up on so far.
    pub fn abandoned_count(&self) -> u64 {
        self.abandoned
    }
}
