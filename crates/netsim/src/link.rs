//! One direction of a simulated path, driven by virtual time.
//!
//! The loop: `send(now, datagram)` whenever the sender transmits; `poll_deliver(now)`
//! until it returns `None`; sleep (or advance virtual time) to `poll_timeout()`.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::recut::recut_datagram;
use crate::{LinkConfig, SimRng};

/// A test hook deciding, per datagram, whether to drop it on purpose.
pub type DropFilter = Box<dyn FnMut(&[u8]) -> bool + Send>;

/// A drop filter that drops the first `count` datagrams matching `predicate` and
/// lets everything else through: "lose the server's ChangeCipherSpec flight once" is
/// `drop_first(1, |d| dtls_view::carries_content_type(d, 20))`.
pub fn drop_first(
    count: u32,
    mut predicate: impl FnMut(&[u8]) -> bool + Send + 'static,
) -> DropFilter {
    let mut remaining = count;
    Box::new(move |datagram: &[u8]| {
        if remaining > 0 && predicate(datagram) {
            remaining -= 1;
            true
        } else {
            false
        }
    })
}

/// Longest delay a link applies; larger configured values are clamped so virtual
/// time arithmetic can never overflow.
const MAX_DELAY: Duration = Duration::from_secs(24 * 3600);

/// Why a datagram did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkDrop {
    /// Bernoulli loss (`LinkConfig::loss`).
    Loss,
    /// Gilbert-Elliott burst loss (`LinkConfig::burst`).
    Burst,
    /// Tail drop at the rate limiter's full queue.
    Queue,
    /// Larger than `max_datagram_size`.
    Mtu,
    /// The drop filter asked for it.
    Targeted,
    /// The link already held `max_in_flight_bytes`.
    Overflow,
}

/// Drop counters keyed by [`LinkDrop`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DropCounts {
    /// Bernoulli losses.
    pub loss: u64,
    /// Burst losses.
    pub burst: u64,
    /// Queue tail drops.
    pub queue: u64,
    /// Path-MTU drops.
    pub mtu: u64,
    /// Drop-filter drops.
    pub targeted: u64,
    /// In-flight bound drops.
    pub overflow: u64,
}

impl DropCounts {
    /// The counter for one reason.
    pub fn get(&self, reason: LinkDrop) -> u64 {
        match reason {
            LinkDrop::Loss => self.loss,
            LinkDrop::Burst => self.burst,
            LinkDrop::Queue => self.queue,
            LinkDrop::Mtu => self.mtu,
            LinkDrop::Targeted => self.targeted,
            LinkDrop::Overflow => self.overflow,
        }
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.loss + self.burst + self.queue + self.mtu + self.targeted + self.overflow
    }

    fn bump(&mut self, reason: LinkDrop) {
        let counter = match reason {
            LinkDrop::Loss => &mut self.loss,
            LinkDrop::Burst => &mut self.burst,
            LinkDrop::Queue => &mut self.queue,
            LinkDrop::Mtu => &mut self.mtu,
            LinkDrop::Targeted => &mut self.targeted,
            LinkDrop::Overflow => &mut self.overflow,
        };
        *counter += 1;
    }

    fn add(&mut self, other: &DropCounts) {
        self.loss += other.loss;
        self.burst += other.burst;
        self.queue += other.queue;
        self.mtu += other.mtu;
        self.targeted += other.targeted;
        self.overflow += other.overflow;
    }
}

/// Counters of one link. `sent` counts datagrams handed to `send`; when re-cutting
/// is on, the wire carries `recut_output_datagrams` instead of `recut_datagrams` of
/// them, and drops and deliveries count wire datagrams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    /// Datagrams handed to `send`.
    pub sent: u64,
    /// Bytes handed to `send`.
    pub sent_bytes: u64,
    /// Datagrams returned by `poll_deliver` (duplicates included).
    pub delivered: u64,
    /// Bytes returned by `poll_deliver`.
    pub delivered_bytes: u64,
    /// Drops by reason.
    pub dropped: DropCounts,
    /// Extra copies scheduled by duplication.
    pub duplicated: u64,
    /// Datagrams held back by `reorder_delay`.
    pub reordered: u64,
    /// Sent datagrams that the re-cutter re-fragmented.
    pub recut_datagrams: u64,
    /// Wire datagrams the re-cutter produced from them.
    pub recut_output_datagrams: u64,
    /// Datagrams currently inside the link.
    pub in_flight: u64,
}

impl LinkStats {
    /// Adds another link's counters (the relay sums its clients' links).
    pub fn add(&mut self, other: &LinkStats) {
        self.sent += other.sent;
        self.sent_bytes += other.sent_bytes;
        self.delivered += other.delivered;
        self.delivered_bytes += other.delivered_bytes;
        self.dropped.add(&other.dropped);
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.recut_datagrams += other.recut_datagrams;
        self.recut_output_datagrams += other.recut_output_datagrams;
        self.in_flight += other.in_flight;
    }
}

/// A datagram scheduled for delivery. Ordered by time, then by scheduling order, so
/// equal delivery times keep send order.
#[derive(Debug)]
struct InFlight {
    deliver_at: Instant,
    order: u64,
    datagram: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.deliver_at, self.order).cmp(&(other.deliver_at, other.order))
    }
}

/// Independent random streams, one per impairment, so that enabling one impairment
/// does not change the pattern of another at the same seed.
#[derive(Debug, Clone)]
struct Streams {
    loss: SimRng,
    jitter: SimRng,
    reorder: SimRng,
    duplicate: SimRng,
    recut: SimRng,
}

impl Streams {
    fn new(mut root: SimRng) -> Self {
        Self {
            loss: root.fork(),
            jitter: root.fork(),
            reorder: root.fork(),
            duplicate: root.fork(),
            recut: root.fork(),
        }
    }
}

/// One direction of a simulated path (see the module docs for its loop).
pub struct Link {
    config: LinkConfig,
    created: Instant,
    streams: Streams,
    burst_bad: bool,
    /// When the rate limiter finishes serialising everything accepted so far.
    serializer_free_at: Instant,
    /// Latest delivery time of an in-order datagram: jitter never lets a later
    /// datagram overtake it.
    in_order_until: Instant,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    in_flight_bytes: usize,
    next_order: u64,
    stats: LinkStats,
    drop_filter: Option<DropFilter>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("config", &self.config)
            .field("stats", &self.stats)
            .field("has_drop_filter", &self.drop_filter.is_some())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link created at `now` (the origin of `loss_window`), with its randomness
    /// fixed by `rng` (a seed or a [`SimRng`]).
    pub fn new(config: LinkConfig, rng: impl Into<SimRng>, now: Instant) -> Self {
        Self {
            config,
            created: now,
            streams: Streams::new(rng.into()),
            burst_bad: false,
            serializer_free_at: now,
            in_order_until: now,
            in_flight: BinaryHeap::new(),
            in_flight_bytes: 0,
            next_order: 0,
            stats: LinkStats::default(),
            drop_filter: None,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Replaces the impairments from now on; datagrams already in flight keep their
    /// schedule.
    pub fn set_config(&mut self, config: LinkConfig) {
        self.config = config;
    }

    /// Installs a hook called with every wire datagram (after re-cutting, after the
    /// MTU check); returning true drops it, counted as `targeted`. DTLS tests use it
    /// to lose one specific flight once.
    pub fn set_drop_filter(&mut self, filter: DropFilter) {
        self.drop_filter = Some(filter);
    }

    /// Removes the drop filter.
    pub fn clear_drop_filter(&mut self) {
        self.drop_filter = None;
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            in_flight: self.in_flight.len() as u64,
            ..self.stats
        }
    }

    /// Puts a datagram on the link at `now`.
    pub fn send(&mut self, now: Instant, datagram: Vec<u8>) {
        self.stats.sent += 1;
        self.stats.sent_bytes += datagram.len() as u64;
        if self.config.recut_dtls {
            let size = self.config.recut_datagram_size;
            if let Some(pieces) = recut_datagram(&datagram, size, &mut self.streams.recut) {
                self.stats.recut_datagrams += 1;
                self.stats.recut_output_datagrams += pieces.len() as u64;
                for piece in pieces {
                    self.transmit(now, piece);
                }
                return;
            }
        }
        self.transmit(now, datagram);
    }

    /// Next datagram whose delivery time is `<= now`, in delivery order.
    pub fn poll_deliver(&mut self, now: Instant) -> Option<Vec<u8>> {
        let due = self
            .in_flight
            .peek()
            .is_some_and(|Reverse(head)| head.deliver_at <= now);
        if !due {
            return None;
        }
        let Reverse(item) = self.in_flight.pop()?;
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(item.datagram.len());
        self.stats.delivered += 1;
        self.stats.delivered_bytes += item.datagram.len() as u64;
        Some(item.datagram)
    }

    /// When the next datagram is due; `None` when the link is empty.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse(head)| head.deliver_at)
    }

    /// One wire datagram through the impairment pipeline.
    fn transmit(&mut self, now: Instant, datagram: Vec<u8>) {
        let len = datagram.len();
        if self.config.max_datagram_size.is_some_and(|max| len > max) {
            return self.stats.dropped.bump(LinkDrop::Mtu);
        }
        if let Some(filter) = self.drop_filter.as_mut() {
            if filter(&datagram) {
                return self.stats.dropped.bump(LinkDrop::Targeted);
            }
        }
        if self.in_flight_bytes.saturating_add(len) > self.config.max_in_flight_bytes {
            return self.stats.dropped.bump(LinkDrop::Overflow);
        }
        let Some(departure) = self.serialise(now, len) else {
            return self.stats.dropped.bump(LinkDrop::Queue);
        };
        if let Some(reason) = self.random_loss(now) {
            return self.stats.dropped.bump(reason);
        }
        if self.streams.duplicate.chance(self.config.duplicate) {
            self.stats.duplicated += 1;
            let copy = datagram.clone();
            self.schedule(departure, datagram);
            self.schedule(departure, copy);
        } else {
            self.schedule(departure, datagram);
        }
    }

    /// Rate limiter: when the datagram has left the bottleneck, or `None` when the
    /// queue is full (tail drop).
    fn serialise(&mut self, now: Instant, len: usize) -> Option<Instant> {
        let Some(rate_bps) = self.config.rate_bps.filter(|r| *r > 0) else {
            return Some(now);
        };
        let backlog = self.serializer_free_at.saturating_duration_since(now);
        let backlog_bytes = bytes_in(backlog, rate_bps);
        if backlog_bytes.saturating_add(len as u64) > self.config.queue_bytes as u64 {
            return None;
        }
        let start = self.serializer_free_at.max(now);
        let finish = add(start, serialisation_time(len, rate_bps));
        self.serializer_free_at = finish;
        Some(finish)
    }

    /// Bernoulli or burst loss, only inside the loss window.
    fn random_loss(&mut self, now: Instant) -> Option<LinkDrop> {
        if let Some((from, to)) = self.config.loss_window {
            let age = now.saturating_duration_since(self.created);
            if age < from || age >= to {
                return None;
            }
        }
        let rng = &mut self.streams.loss;
        match &self.config.burst {
            Some(ge) => {
                let flip = if self.burst_bad {
                    ge.p_bad_to_good
                } else {
                    ge.p_good_to_bad
                };
                if rng.chance(flip) {
                    self.burst_bad = !self.burst_bad;
                }
                let p = if self.burst_bad {
                    ge.loss_in_bad
                } else {
                    ge.loss_in_good
                };
                rng.chance(p).then_some(LinkDrop::Burst)
            }
            None => rng.chance(self.config.loss).then_some(LinkDrop::Loss),
        }
    }

    /// Delay, jitter and reordering for one copy leaving the bottleneck at `departure`.
    fn schedule(&mut self, departure: Instant, datagram: Vec<u8>) {
        let delay = self.config.delay.min(MAX_DELAY);
        let jitter = self.config.jitter.min(MAX_DELAY);
        let mut deliver_at = add(departure, delay);
        if !jitter.is_zero() {
            let span = jitter.as_nanos() as u64;
            let offset = self.streams.jitter.range(0..span.saturating_mul(2) + 1);
            deliver_at = if offset >= span {
                add(deliver_at, Duration::from_nanos(offset - span))
            } else {
                let earlier = Duration::from_nanos(span - offset);
                deliver_at
                    .checked_sub(earlier)
                    .unwrap_or(departure)
                    .max(departure)
            };
        }
        if self.streams.reorder.chance(self.config.reorder) {
            self.stats.reordered += 1;
            deliver_at = add(deliver_at, self.config.reorder_delay.min(MAX_DELAY));
        } else {
            deliver_at = deliver_at.max(self.in_order_until);
            self.in_order_until = deliver_at;
        }
        self.in_flight_bytes += datagram.len();
        let order = self.next_order;
        self.next_order += 1;
        self.in_flight.push(Reverse(InFlight {
            deliver_at,
            order,
            datagram,
        }));
    }
}

/// `t + d` without a panic on overflow (stays at `t` in that impossible case).
fn add(t: Instant, d: Duration) -> Instant {
    t.checked_add(d).unwrap_or(t)
}

/// Time to put `len` bytes on a `rate_bps` wire, rounded up to the nanosecond.
fn serialisation_time(len: usize, rate_bps: u64) -> Duration {
    let bits = len as u128 * 8;
    let nanos = (bits * 1_000_000_000).div_ceil(u128::from(rate_bps));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Bytes a `rate_bps` wire carries in `d`, rounded to nearest (so rounding up each
/// serialisation time never makes a queue look one byte fuller than it is).
fn bytes_in(d: Duration, rate_bps: u64) -> u64 {
    let scaled = d.as_nanos() * u128::from(rate_bps);
    let bytes = (scaled + 4_000_000_000) / 8_000_000_000;
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
