//! What was sent, by transport-wide sequence number, until feedback reports it.
//!
//! A ring indexed by the extended sequence number modulo its length: a feedback packet
//! can only look up sequence numbers the ring still holds, and a hostile report naming
//! arbitrary numbers finds nothing. The ring is allocated with the first packet sent and
//! starts small; it doubles, up to the configured capacity, only when a packet would push
//! out one that is still unreported and recent (sent within [`GROW_WITHIN_US`]), i.e.
//! when the packets in flight between two reports outnumber it. A subscriber receiving
//! one stream with feedback every 50-100 ms keeps the smallest ring; one that sends no
//! feedback grows it only to what it is sent in [`GROW_WITHIN_US`].

use std::time::Instant;

use sluice_rtp::SeqUnwrapper;

/// One sent packet as the estimator hands it out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SentPacket {
    pub(crate) send_time: Instant,
    pub(crate) size_bytes: u32,
    pub(crate) probe_cluster: Option<u32>,
}

/// A ring slot, 24 bytes: the ring is the largest part of an estimator, one per
/// subscriber.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Extended sequence number; `EMPTY` for a slot never written.
    ext_seq: u64,
    /// Send time in microseconds after the history's epoch.
    send_us: u64,
    /// Size in bytes (31 bits) and, in the top bit, whether feedback already reported
    /// the packet (received or lost): a repeat is ignored.
    size_and_reported: u32,
    /// Probe cluster id; 0 = none (the controller never hands out 0).
    probe_cluster: u32,
}

const EMPTY: u64 = u64::MAX;
const REPORTED: u32 = 1 << 31;
const EMPTY_SLOT: Slot = Slot {
    ext_seq: EMPTY,
    send_us: 0,
    size_and_reported: 0,
    probe_cluster: 0,
};

/// Slots allocated with the first packet sent.
const INITIAL_SLOTS: usize = 64;
/// An unreported packet younger than this is worth a larger ring: feedback about it can
/// still come (reports follow within a round trip plus 50-100 ms). An older one is given
/// up when the ring wraps, which also bounds the ring of a subscriber that never reports.
pub(crate) const GROW_WITHIN_US: u64 = 1_000_000;

#[derive(Debug, Clone)]
pub(crate) struct SendHistory {
    /// Empty until the first packet; then a power of two of slots up to `limit`.
    slots: Vec<Slot>,
    /// Most slots the ring may grow to (the configured history).
    limit: usize,
    unwrapper: SeqUnwrapper,
    epoch: Option<Instant>,
}

impl SendHistory {
    /// A history that remembers at most `capacity` packets (clamped to 64..65,536);
    /// nothing is allocated before the first packet is sent.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: Vec::new(),
            limit: capacity.clamp(INITIAL_SLOTS, 1 << 16),
            unwrapper: SeqUnwrapper::new(),
            epoch: None,
        }
    }

    fn index(&self, ext: u64) -> usize {
        (ext % self.slots.len().max(1) as u64) as usize
    }

    /// Slots currently allocated.
    #[cfg(test)]
    pub(crate) fn allocated_slots(&self) -> usize {
        self.slots.len()
    }

    /// Whether writing `ext` (sent at `send_us`) would push out a packet that feedback
    /// may still report, while the ring may still grow.
    fn should_grow(&self, ext: u64, send_us: u64) -> bool {
        if self.slots.len() >= self.limit {
            return false;
        }
        self.slots.get(self.index(ext)).is_some_and(|slot| {
            slot.ext_seq != EMPTY
                && slot.ext_seq < ext
                && slot.size_and_reported & REPORTED == 0
                && send_us.saturating_sub(slot.send_us) < GROW_WITHIN_US
        })
    }

    /// Doubles the ring (at most to `limit`), moving every slot to its new index.
    fn grow(&mut self) {
        let len = if self.slots.is_empty() {
            INITIAL_SLOTS
        } else {
            self.slots.len().saturating_mul(2)
        }
        .min(self.limit);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY_SLOT; len]);
        for slot in old.into_iter().filter(|s| s.ext_seq != EMPTY) {
            let idx = self.index(slot.ext_seq);
            if let Some(new) = self.slots.get_mut(idx) {
                if new.ext_seq == EMPTY || new.ext_seq < slot.ext_seq {
                    *new = slot;
                }
            }
        }
    }

    pub(crate) fn on_sent(
        &mut self,
        transport_seq: u16,
        send_time: Instant,
        size_bytes: usize,
        probe_cluster: Option<u32>,
    ) {
        let epoch = *self.epoch.get_or_insert(send_time);
        let send_us =
            u64::try_from(send_time.saturating_duration_since(epoch).as_micros()).unwrap_or(0);
        let ext_seq = self.unwrapper.extend(transport_seq);
        if self.slots.is_empty() {
            self.grow();
        }
        while self.should_grow(ext_seq, send_us) {
            self.grow();
        }
        let idx = self.index(ext_seq);
        if let Some(slot) = self.slots.get_mut(idx) {
            *slot = Slot {
                ext_seq,
                send_us,
                size_and_reported: u32::try_from(size_bytes)
                    .unwrap_or(u32::MAX)
                    .min(REPORTED - 1),
                probe_cluster: probe_cluster.unwrap_or(0),
            };
        }
    }

    /// The unreported packet `transport_seq` names, marking it reported. `None` for a
    /// number never sent, already pushed out of the ring, or already reported.
    pub(crate) fn take_report(&mut self, transport_seq: u16) -> Option<SentPacket> {
        self.unwrapper.highest()?;
        let epoch = self.epoch?;
        if self.slots.is_empty() {
            return None;
        }
        let ext = self.unwrapper.peek(transport_seq);
        let idx = self.index(ext);
        let slot = self.slots.get_mut(idx)?;
        if slot.ext_seq != ext || slot.size_and_reported & REPORTED != 0 {
            return None;
        }
        slot.size_and_reported |= REPORTED;
        Some(SentPacket {
            send_time: epoch + std::time::Duration::from_micros(slot.send_us),
            size_bytes: slot.size_and_reported & !REPORTED,
            probe_cluster: (slot.probe_cluster != 0).then_some(slot.probe_cluster),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reports_each_sent_packet_once_across_wrap() {
        let t0 = Instant::now();
        let mut h = SendHistory::new(128);
        for i in 0..100u16 {
            h.on_sent(
                65_500u16.wrapping_add(i),
                t0 + Duration::from_millis(i.into()),
                1000,
                None,
            );
        }
        let p = h.take_report(10).unwrap();
        assert_eq!(p.send_time, t0 + Duration::from_millis(46));
        assert!(h.take_report(10).is_none(), "reported twice");
        assert!(h.take_report(200).is_none(), "never sent");
        assert!(h.take_report(65_499).is_none(), "never sent");
    }

    #[test]
    fn slots_are_compact() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
    }

    #[test]
    fn nothing_is_allocated_before_the_first_packet() {
        let mut h = SendHistory::new(1024);
        assert_eq!(h.allocated_slots(), 0);
        assert!(h.take_report(0).is_none());
        h.on_sent(0, Instant::now(), 1000, None);
        assert_eq!(h.allocated_slots(), INITIAL_SLOTS);
    }

    #[test]
    fn stays_small_while_feedback_keeps_up() {
        let t0 = Instant::now();
        let mut h = SendHistory::new(1024);
        // 30 packets per report, as one 2.5 Mbit/s stream with feedback every 100 ms
        for i in 0..3000u16 {
            h.on_sent(i, t0 + Duration::from_millis(u64::from(i) * 3), 1200, None);
            if i % 30 == 29 {
                for s in i - 29..=i {
                    assert!(h.take_report(s).is_some());
                }
            }
        }
        assert_eq!(h.allocated_slots(), INITIAL_SLOTS);
    }

    #[test]
    fn grows_to_the_packets_in_flight_and_keeps_them_reportable() {
        let t0 = Instant::now();
        let mut h = SendHistory::new(1024);
        // 500 packets within 100 ms before any report: all of them stay reportable
        for i in 0..500u16 {
            h.on_sent(
                i,
                t0 + Duration::from_micros(u64::from(i) * 200),
                1200,
                Some(3),
            );
        }
        assert_eq!(h.allocated_slots(), 512);
        for i in 0..500u16 {
            let p = h.take_report(i).expect("still held");
            assert_eq!(p.send_time, t0 + Duration::from_micros(u64::from(i) * 200));
            assert_eq!(p.probe_cluster, Some(3));
        }
        // never beyond the configured capacity
        for i in 500..5000u16 {
            h.on_sent(i, t0 + Duration::from_millis(100), 1200, None);
        }
        assert_eq!(h.allocated_slots(), 1024);
        assert!(h.take_report(4999 - 1023).is_some());
        assert!(h.take_report(4999 - 1024).is_none());
    }

    #[test]
    fn a_subscriber_without_feedback_grows_only_to_a_second_of_packets() {
        let t0 = Instant::now();
        let mut h = SendHistory::new(1024);
        // 80 packets/s for a minute, never reported
        for i in 0..4800u16 {
            h.on_sent(
                i,
                t0 + Duration::from_micros(u64::from(i) * 12_500),
                300,
                None,
            );
        }
        assert_eq!(h.allocated_slots(), 128);
    }

    #[test]
    fn forgets_packets_pushed_out_of_the_ring() {
        let t0 = Instant::now();
        let mut h = SendHistory::new(64);
        for i in 0..200u16 {
            h.on_sent(i, t0, 1000, None);
        }
        assert!(h.take_report(10).is_none());
        assert!(h.take_report(199).is_some());
    }
}
