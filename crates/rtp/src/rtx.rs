//! Retransmission: a bounded cache of sent packets and RFC 4588 RTX encapsulation.

use crate::error::RtpError;
use crate::header::{set_payload_type, set_sequence_number, set_ssrc, RtpHeader};
use crate::seq::SeqUnwrapper;

/// Default number of packets kept per outgoing track (about 1 s of 5 Mbps video).
pub const DEFAULT_RTX_CACHE_PACKETS: usize = 1024;
/// Default byte budget per outgoing track.
pub const DEFAULT_RTX_CACHE_BYTES: usize = 1024 * 1500;
/// Largest packet the cache accepts.
pub const MAX_RTX_PACKET_BYTES: usize = 1500;

#[derive(Debug, Clone, Default)]
struct Slot {
    /// Extended sequence number held, or `None` when empty.
    ext_seq: Option<u64>,
    data: Vec<u8>,
}

/// Per outgoing track ring of packets as sent (plaintext RTP after rewrite), keyed by
/// output sequence number, answering NACKs. Bounded in packets and bytes; slot buffers
/// are reused, so steady state does not allocate.
#[derive(Debug, Clone)]
pub struct RetransmissionCache {
    slots: Vec<Slot>,
    unwrapper: SeqUnwrapper,
    max_bytes: usize,
    total_bytes: usize,
    /// Lowest extended sequence number that may still be cached (eviction cursor).
    low: u64,
}

impl Default for RetransmissionCache {
    fn default() -> Self {
        Self::new(DEFAULT_RTX_CACHE_PACKETS, DEFAULT_RTX_CACHE_BYTES)
    }
}

impl RetransmissionCache {
    /// A cache of at most `max_packets` (rounded up to a power of two, at most 32768)
    /// packets and `max_bytes` bytes.
    pub fn new(max_packets: usize, max_bytes: usize) -> Self {
        let n = max_packets.clamp(1, 1 << 15).next_power_of_two();
        Self {
            slots: vec![Slot::default(); n],
            unwrapper: SeqUnwrapper::new(),
            max_bytes,
            total_bytes: 0,
            low: 0,
        }
    }

    fn index(&self, ext: u64) -> usize {
        (ext % self.slots.len() as u64) as usize
    }

    /// Bytes currently held.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    fn evict(&mut self, idx: usize) {
        if let Some(slot) = self.slots.get_mut(idx) {
            if slot.ext_seq.take().is_some() {
                self.total_bytes = self.total_bytes.saturating_sub(slot.data.len());
                slot.data.clear();
            }
        }
    }

    /// Moves the window start to `new_low`, evicting everything that falls out of it.
    fn advance_low(&mut self, new_low: u64) {
        if new_low <= self.low {
            return;
        }
        if new_low - self.low >= self.slots.len() as u64 {
            for i in 0..self.slots.len() {
                self.evict(i);
            }
        } else {
            for s in self.low..new_low {
                let i = self.index(s);
                if self
                    .slots
                    .get(i)
                    .is_some_and(|slot| slot.ext_seq == Some(s))
                {
                    self.evict(i);
                }
            }
        }
        self.low = new_low;
    }

    /// Stores a sent packet under its output sequence number, replacing whatever held that
    /// slot. Returns false if the packet is larger than the limits or too old to keep.
    pub fn insert(&mut self, seq: u16, packet: &[u8]) -> bool {
        if packet.len() > MAX_RTX_PACKET_BYTES || packet.len() > self.max_bytes {
            return false;
        }
        let cap = self.slots.len() as u64;
        let ext = self.unwrapper.peek(seq);
        let highest = self.unwrapper.highest().unwrap_or(ext);
        if ext + cap <= highest {
            return false;
        }
        self.unwrapper.extend(seq);
        let highest = self.unwrapper.highest().unwrap_or(ext);
        self.advance_low((highest + 1).saturating_sub(cap));
        let idx = self.index(ext);
        self.evict(idx);
        // Make room in the byte budget by evicting the oldest packets.
        while self.total_bytes + packet.len() > self.max_bytes && self.low < ext {
            let i = self.index(self.low);
            if self
                .slots
                .get(i)
                .is_some_and(|s| s.ext_seq == Some(self.low))
            {
                self.evict(i);
            }
            self.low += 1;
        }
        if self.total_bytes + packet.len() > self.max_bytes {
            return false;
        }
        if let Some(slot) = self.slots.get_mut(idx) {
            slot.data.clear();
            slot.data.extend_from_slice(packet);
            slot.ext_seq = Some(ext);
            self.total_bytes += packet.len();
        }
        true
    }

    /// The packet sent with output sequence number `seq`, if still cached.
    pub fn get(&self, seq: u16) -> Option<&[u8]> {
        self.unwrapper.highest()?;
        let ext = self.unwrapper.peek(seq);
        let slot = self.slots.get(self.index(ext))?;
        (slot.ext_seq == Some(ext)).then_some(slot.data.as_slice())
    }
}

/// Builds the RTX packet (RFC 4588 section 4) for `original` into `out` (cleared first):
/// same header with the RTX SSRC, payload type and sequence number, the original sequence
/// number (OSN) prefixed to the payload, and the original padding dropped.
pub fn write_rtx(
    original: &[u8],
    rtx_ssrc: u32,
    rtx_payload_type: u8,
    rtx_seq: u16,
    out: &mut Vec<u8>,
) -> Result<(), RtpError> {
    let h = RtpHeader::parse(original)?;
    let header = original.get(..h.header_len()).ok_or(RtpError::Truncated {
        needed: h.header_len(),
        available: original.len(),
    })?;
    out.clear();
    out.extend_from_slice(header);
    out.extend_from_slice(&h.sequence_number().to_be_bytes());
    out.extend_from_slice(h.payload());
    if let Some(b0) = out.first_mut() {
        *b0 &= !0x20;
    }
    set_ssrc(out, rtx_ssrc);
    set_sequence_number(out, rtx_seq);
    set_payload_type(out, rtx_payload_type);
    Ok(())
}
