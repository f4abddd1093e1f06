//! What was sent, by transport-wide sequence number, until feedback reports it.
//!
//! A fixed ring indexed by the extended sequence number modulo its length: the memory
//! is allocated once, a feedback packet can only look up sequence numbers the ring
//! still holds, and a hostile report naming arbitrary numbers finds nothing.

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

#[derive(Debug, Clone)]
pub(crate) struct SendHistory {
    slots: Vec<Slot>,
    unwrapper: SeqUnwrapper,
    epoch: Option<Instant>,
}

impl SendHistory {
    pub(crate) fn new(capacity: usize) -> Self {
        let empty = Slot {
            ext_seq: EMPTY,
            send_us: 0,
            size_and_reported: 0,
            probe_cluster: 0,
        };
        Self {
            slots: vec![empty; capacity.clamp(64, 1 << 16)],
            unwrapper: SeqUnwrapper::new(),
            epoch: None,
        }
    }

    fn index(&self, ext: u64) -> usize {
        (ext % self.slots.len() as u64) as usize
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
