//! Admission and rate limits shared by signalling and the media workers.
//!
//! Three small tools, each bounded by construction:
//! - [`TokenBucket`]: a sans-IO byte budget refilled at a fixed bit rate
//!   (`limits.bitrate_bps_per_session`); it takes `now`, never reads a clock.
//! - [`HandshakeBudget`]: a process-wide count of DTLS handshakes in progress
//!   (`limits.handshakes_in_flight`), handed out as RAII [`HandshakeSlot`]s so that a
//!   session that ends in any way gives its slot back.
//! - [`PerIpLimit`]: sessions per source IP (`limits.sessions_per_source_ip`), also as
//!   RAII [`IpSlot`]s; its map only holds addresses that have a live session, so it is
//!   bounded by the number of sessions.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

/// Smallest burst a [`TokenBucket`] allows, so that one video keyframe at a low
/// configured bit rate is not cut in half.
pub const MIN_BURST_BYTES: u64 = 16 * 1024;
/// How much sending time the burst of a [`TokenBucket`] covers at its rate.
pub const BURST_WINDOW: Duration = Duration::from_secs(1);

/// A byte budget refilled at `rate_bps`, holding at most one [`BURST_WINDOW`] of it.
///
/// Callers check [`TokenBucket::admits`] before doing expensive work and call
/// [`TokenBucket::consume`] only once the packet proved genuine (SRTP authenticated),
/// so packets forged with a victim's source address cannot drain its budget.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_bps: u64,
    burst_bytes: u64,
    tokens_bytes: u64,
    /// Refill remainder in bit-nanoseconds, so slow rates are not rounded away.
    remainder_bit_ns: u128,
    last_refill: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket for `rate_bps` bits per second (0 is treated as 1).
    pub fn new(rate_bps: u64) -> Self {
        let rate_bps = rate_bps.max(1);
        let window_bytes = u128::from(rate_bps) * BURST_WINDOW.as_nanos() / (8 * 1_000_000_000u128);
        let burst_bytes = u64::try_from(window_bytes)
            .unwrap_or(u64::MAX)
            .max(MIN_BURST_BYTES);
        Self {
            rate_bps,
            burst_bytes,
            tokens_bytes: burst_bytes,
            remainder_bit_ns: 0,
            last_refill: None,
        }
    }

    /// The largest burst in bytes.
    pub fn burst_bytes(&self) -> u64 {
        self.burst_bytes
    }

    fn refill(&mut self, now: Instant) {
        let Some(last) = self.last_refill else {
            self.last_refill = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(last);
        self.last_refill = Some(now.max(last));
        let bit_ns = elapsed.as_nanos() * u128::from(self.rate_bps) + self.remainder_bit_ns;
        let per_byte = 8 * 1_000_000_000u128;
        let bytes = bit_ns / per_byte;
        self.remainder_bit_ns = bit_ns % per_byte;
        let tokens = u128::from(self.tokens_bytes) + bytes;
        if tokens >= u128::from(self.burst_bytes) {
            self.tokens_bytes = self.burst_bytes;
            self.remainder_bit_ns = 0;
        } else {
            self.tokens_bytes = u64::try_from(tokens).unwrap_or(self.burst_bytes);
        }
    }

    /// Whether a packet of `bytes` fits the budget at `now` (does not spend it).
    pub fn admits(&mut self, now: Instant, bytes: usize) -> bool {
        self.refill(now);
        self.tokens_bytes >= u64::try_from(bytes).unwrap_or(u64::MAX)
    }

    /// Spends `bytes` (saturating at 0).
    pub fn consume(&mut self, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        self.tokens_bytes = self.tokens_bytes.saturating_sub(bytes);
    }
}

/// Process-wide count of DTLS handshakes in progress, shared by every worker.
#[derive(Debug)]
pub struct HandshakeBudget {
    in_flight: AtomicUsize,
    max_in_flight: usize,
    /// Mirrors `in_flight` for `/metrics` (`sluice_dtls_handshakes_in_flight`).
    gauge: Option<Gauge>,
}

impl HandshakeBudget {
    /// A budget of `max_in_flight` concurrent handshakes.
    pub fn new(max_in_flight: usize) -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            max_in_flight,
            gauge: None,
        })
    }

    /// Like [`HandshakeBudget::new`], keeping `gauge` equal to the count in flight.
    pub fn with_gauge(max_in_flight: usize, gauge: Gauge) -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            max_in_flight,
            gauge: Some(gauge),
        })
    }

    /// A slot, or `None` when `max_in_flight` handshakes are already running.
    pub fn try_acquire(self: &Arc<Self>) -> Option<HandshakeSlot> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_in_flight).then_some(n + 1)
            })
            .ok()?;
        if let Some(gauge) = &self.gauge {
            gauge.inc();
        }
        Some(HandshakeSlot {
            budget: Arc::clone(self),
        })
    }

    /// Handshakes in progress now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// One handshake counted by a [`HandshakeBudget`] until dropped.
#[derive(Debug)]
pub struct HandshakeSlot {
    budget: Arc<HandshakeBudget>,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.budget.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Some(gauge) = &self.budget.gauge {
            gauge.dec();
        }
    }
}

/// Live sessions per source IP address.
#[derive(Debug)]
pub struct PerIpLimit {
    counts: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
}

impl PerIpLimit {
    /// At most `max_per_ip` live slots per address.
    pub fn new(max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            counts: Mutex::new(HashMap::new()),
            max_per_ip,
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // The map stays consistent even if a holder panicked (single inserts/removes).
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for `ip`, or `None` when it already holds `max_per_ip`.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut counts = self.counts();
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            limit: Arc::clone(self),
            ip,
        })
    }

    /// Live slots of `ip`.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.counts().get(&ip).copied().unwrap_or(0)
    }

    /// Addresses with at least one live slot (the map's size).
    pub fn addresses(&self) -> usize {
        self.counts().len()
    }
}

/// One session counted against its source IP until dropped.
#[derive(Debug)]
pub struct IpSlot {
    limit: Arc<PerIpLimit>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.limit.counts();
        if let Some(count) = counts.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_starts_full_and_refuses_once_its_burst_is_spent() {
        let now = Instant::now();
        // 800 kbit/s: 100 kB per second of burst.
        let mut bucket = TokenBucket::new(800_000);
        assert_eq!(bucket.burst_bytes(), 100_000);
        let mut sent = 0;
        while bucket.admits(now, 1000) {
            bucket.consume(1000);
            sent += 1000;
        }
        assert_eq!(sent, 100_000);
        assert!(!bucket.admits(now, 1));
    }

    #[test]
    fn a_bucket_refills_at_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(800_000);
        assert!(bucket.admits(start, 0));
        bucket.consume(100_000);
        assert!(!bucket.admits(start, 1000));
        // 10 ms at 100 kB/s: 1000 bytes.
        let later = start + Duration::from_millis(10);
        assert!(bucket.admits(later, 1000));
        assert!(!bucket.admits(later, 1001));
    }

    #[test]
    fn a_slow_bucket_accumulates_fractions_of_a_byte() {
        let start = Instant::now();
        // 8 bit/s: one byte per second, burst raised to the minimum.
        let mut bucket = TokenBucket::new(8);
        assert_eq!(bucket.burst_bytes(), MIN_BURST_BYTES);
        assert!(bucket.admits(start, 0));
        bucket.consume(usize::MAX);
        for step in 1..=4 {
            assert!(!bucket.admits(start + Duration::from_millis(250 * step - 1), 1));
        }
        assert!(bucket.admits(start + Duration::from_millis(1000), 1));
    }

    #[test]
    fn a_bucket_never_holds_more_than_its_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(800_000);
        assert!(bucket.admits(start, 0));
        assert!(!bucket.admits(start + Duration::from_secs(3600), 100_001));
    }

    #[test]
    fn a_time_going_backwards_refills_nothing() {
        let start = Instant::now() + Duration::from_secs(10);
        let mut bucket = TokenBucket::new(800_000);
        assert!(bucket.admits(start, 0));
        bucket.consume(100_000);
        assert!(!bucket.admits(start - Duration::from_secs(5), 1));
    }

    #[test]
    fn handshake_slots_are_bounded_and_returned_on_drop() {
        let budget = HandshakeBudget::new(2);
        let first = budget.try_acquire().expect("slot 1");
        let second = budget.try_acquire().expect("slot 2");
        assert!(budget.try_acquire().is_none());
        assert_eq!(budget.in_flight(), 2);
        drop(first);
        let third = budget.try_acquire().expect("a returned slot is reusable");
        drop((second, third));
        assert_eq!(budget.in_flight(), 0);
    }

    #[test]
    fn a_handshake_budget_keeps_its_gauge_in_step() {
        let gauge = Gauge::default();
        let budget = HandshakeBudget::with_gauge(5, gauge.clone());
        let slot = budget.try_acquire();
        assert_eq!(gauge.get(), 1);
        drop(slot);
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn ip_slots_are_bounded_per_address_and_forgotten_when_free() {
        let limit = PerIpLimit::new(1);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let slot_a = limit.try_acquire(a).expect("first from a");
        assert!(limit.try_acquire(a).is_none(), "second from a refused");
        let slot_b = limit
            .try_acquire(b)
            .expect("another address is independent");
        assert_eq!(limit.addresses(), 2);
        drop(slot_a);
        assert_eq!(limit.count(a), 0);
        assert_eq!(limit.addresses(), 1, "a freed address leaves the map");
        drop(slot_b);
        assert_eq!(limit.addresses(), 0);
    }
}
