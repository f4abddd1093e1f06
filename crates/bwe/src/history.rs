//! What was sent, by transport-wide sequence number, until feedback reports it.
//!
//! A fixed ring indexed by the extended sequence number modulo its length: the memory
//! is allocated once, a feedback packet can only look up sequence numbers the ring
//! still holds, and a hostile report naming arbitrary numbers finds nothing.

use std::time::Instant;

use sluice_rtp::SeqUnwrapper;

/// One sent packet as the estimator remembers it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SentPacket {
    pub(crate) ext_seq: u64,
    pub(crate) send_time: Instant,
    pub(crate) size_bytes: u32,
    pub(crate) probe_cluster: Option<u32>,
    /// Feedback already reported this packet (received or lost); a repeat is ignored.
    pub(crate) reported: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct SendHistory {
    slots: Vec<Option<SentPacket>>,
    unwrapper: SeqUnwrapper,
}

impl SendHistory {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: vec![None; capacity.clamp(64, 1 << 16)],
            unwrapper: SeqUnwrapper::new(),
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
    ) -> u64 {
        let ext_seq = self.unwrapper.extend(transport_seq);
        let idx = self.index(ext_seq);
        if let Some(slot) = self.slots.get_mut(idx) {
            *slot = Some(SentPacket {
                ext_seq,
                send_time,
                size_bytes: u32::try_from(size_bytes).unwrap_or(u32::MAX),
                probe_cluster,
                reported: false,
            });
        }
        ext_seq
    }

    /// The unreported packet `transport_seq` names, marking it reported. `None` for a
    /// number never sent, already pushed out of the ring, or already reported.
    pub(crate) fn take_report(&mut self, transport_seq: u16) -> Option<SentPacket> {
        self.unwrapper.highest()?;
        let ext = self.unwrapper.peek(transport_seq);
        let idx = self.index(ext);
        let slot = self.slots.get_mut(idx)?.as_mut()?;
        if slot.ext_seq != ext || slot.reported {
            return None;
        }
        slot.reported = true;
        Some(*slot)
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
