//! Retransmission: a bounded cache of sent packets and RFC 4588 RTX encapsulation.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::error::RtpError;
use crate::header::{set_payload_type, set_sequence_number, set_ssrc, RtpHeader};
use crate::seq::SeqUnwrapper;

/// Default number of packets kept per outgoing track (about 1 s of 5 Mbps video).
pub const DEFAULT_RTX_CACHE_PACKETS: usize = 1024;
/// Default byte budget per outgoing track.
pub const DEFAULT_RTX_CACHE_BYTES: usize = 1024 * 1500;
/// Largest packet the cache accepts.
pub const MAX_RTX_PACKET_BYTES: usize = 1500;
/// Size of the byte ring before it first needs to grow (about 0.25 s of 500 kbit/s
/// video), and the step it grows by: linear steps keep the ring within 16 KiB of what
/// the window needs, where doubling could hold almost twice that.
const RING_STEP_BYTES: usize = 16 * 1024;
/// `Stored::sent_ms` of a packet inserted without a time: never old enough to overwrite
/// instead of growing the ring.
const UNKNOWN_TIME: u32 = u32::MAX;

/// Where one cached packet lives in the byte ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stored {
    /// Extended sequence number of the packet.
    ext_seq: u64,
    /// Offset of its first byte in the ring.
    offset: u32,
    /// Its length in bytes (at most `MAX_RTX_PACKET_BYTES`).
    len: u16,
    /// When it was stored, in milliseconds since the cache's first timed insert.
    sent_ms: u32,
}

impl Stored {
    fn start(&self) -> usize {
        self.offset as usize
    }

    fn end(&self) -> usize {
        self.start() + usize::from(self.len)
    }
}

/// Per outgoing stream cache of packets as sent, keyed by sequence number, answering
/// NACKs. Bounded in packets and bytes: the packets live back to back in one byte ring of
/// at most `max_bytes`, written like a circular log, so the memory held never exceeds the
/// byte budget whatever the packet sizes, and steady state does not allocate.
///
/// With a retention window ([`with_window`](Self::with_window), packets stored with
/// [`insert_at`](Self::insert_at)) the ring starts small and grows only when wrapping
/// would overwrite a packet younger than the window: memory follows the stream's bitrate
/// times the window instead of the worst-case budget. A NACK for a packet older than a
/// second or a few round trips is useless (the receiver has given up on it; libwebrtc's
/// own sender keeps max(1 s, 3 x RTT)), so a quiet 500 kbit/s track holds about 64 KiB
/// where a 5 Mbit/s one holds the whole budget.
#[derive(Debug, Clone)]
pub struct RetransmissionCache {
    /// Lookup by extended sequence number modulo the slot count.
    slots: Vec<Option<Stored>>,
    /// Packets in the order they were written into the ring (the oldest is overwritten
    /// first); entries whose slot moved on are skipped when they reach the front.
    written: VecDeque<Stored>,
    ring: Vec<u8>,
    /// Where the next packet is written.
    write_at: usize,
    unwrapper: SeqUnwrapper,
    max_bytes: usize,
    /// Current lap length of the ring (grows up to `max_bytes`).
    ring_limit: usize,
    total_bytes: usize,
    /// Lowest extended sequence number that may still be cached (eviction cursor).
    low: u64,
    /// Packets younger than this are not overwritten while the ring may still grow.
    window: Option<Duration>,
    /// Time origin of `Stored::sent_ms`.
    epoch: Option<Instant>,
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
            slots: vec![None; n],
            written: VecDeque::new(),
            ring: Vec::new(),
            write_at: 0,
            unwrapper: SeqUnwrapper::new(),
            max_bytes: max_bytes.min(u32::MAX as usize),
            ring_limit: max_bytes.min(u32::MAX as usize),
            total_bytes: 0,
            low: 0,
            window: None,
            epoch: None,
        }
    }

    /// Keeps packets for at least `window` (within the byte budget), growing the ring from
    /// a small start only as far as the stream's bitrate requires. Applies to packets
    /// stored with [`insert_at`](Self::insert_at).
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = Some(window);
        self.ring_limit = RING_STEP_BYTES.min(self.max_bytes);
        self
    }

    /// Whether a packet stored at `sent_ms` is still inside the retention window at
    /// `now_ms` (packets of unknown age always are).
    fn is_young(&self, sent_ms: u32, now_ms: u32) -> bool {
        match self.window {
            None => true,
            Some(_) if sent_ms == UNKNOWN_TIME || now_ms == UNKNOWN_TIME => true,
            Some(window) => u128::from(now_ms.saturating_sub(sent_ms)) < window.as_millis(),
        }
    }

    fn index(&self, ext: u64) -> usize {
        (ext % self.slots.len() as u64) as usize
    }

    /// Bytes of the packets currently held.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Heap memory the cache holds (the byte ring and its index), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.ring.capacity()
            + self.slots.capacity() * std::mem::size_of::<Option<Stored>>()
            + self.written.capacity() * std::mem::size_of::<Stored>()
    }

    /// Forgets every packet (e.g. when the stream's SSRC changed and sequence numbers
    /// start over), keeping the allocation.
    pub fn clear(&mut self) {
        for slot in &mut self.slots {
            *slot = None;
        }
        self.written.clear();
        self.write_at = 0;
        self.total_bytes = 0;
        self.unwrapper = SeqUnwrapper::new();
        self.low = 0;
    }

    /// Forgets the packet with extended sequence number `ext`, if held.
    fn evict(&mut self, ext: u64) {
        let idx = self.index(ext);
        if let Some(slot) = self.slots.get_mut(idx) {
            if let Some(stored) = slot.filter(|s| s.ext_seq == ext) {
                *slot = None;
                self.total_bytes = self.total_bytes.saturating_sub(usize::from(stored.len));
            }
        }
    }

    /// Forgets `stored` if its slot still holds exactly that copy.
    fn evict_stored(&mut self, stored: Stored) {
        let idx = self.index(stored.ext_seq);
        if let Some(slot) = self.slots.get_mut(idx) {
            if *slot == Some(stored) {
                *slot = None;
                self.total_bytes = self.total_bytes.saturating_sub(usize::from(stored.len));
            }
        }
    }

    /// Moves the window start to `new_low`, evicting everything that falls out of it.
    fn advance_low(&mut self, new_low: u64) {
        if new_low <= self.low {
            return;
        }
        if new_low - self.low >= self.slots.len() as u64 {
            for slot in &mut self.slots {
                *slot = None;
            }
            self.written.clear();
            self.total_bytes = 0;
        } else {
            for s in self.low..new_low {
                self.evict(s);
            }
        }
        self.low = new_low;
    }

    /// Reserves `len` bytes of the ring, evicting the packets written there before.
    fn claim(&mut self, len: usize, now_ms: u32) -> usize {
        while self.write_at + len > self.ring_limit && self.ring_limit < self.max_bytes {
            let oldest_is_young = self
                .written
                .front()
                .is_some_and(|front| self.is_young(front.sent_ms, now_ms));
            if !oldest_is_young {
                break;
            }
            self.ring_limit = self
                .ring_limit
                .saturating_add(RING_STEP_BYTES)
                .min(self.max_bytes);
        }
        if self.write_at + len > self.ring_limit {
            // The tail is skipped this lap: what still lies there was written in the
            // previous lap, before anything at the start, so it goes first.
            let tail = self.write_at;
            while let Some(&front) = self.written.front() {
                if front.start() < tail {
                    break;
                }
                self.written.pop_front();
                self.evict_stored(front);
            }
            self.write_at = 0;
        }
        let start = self.write_at;
        let end = start + len;
        while let Some(&front) = self.written.front() {
            let overlaps = front.start() < end && front.end() > start;
            if !overlaps && self.written.len() < self.slots.len() {
                break;
            }
            self.written.pop_front();
            self.evict_stored(front);
        }
        if self.ring.capacity() < self.ring_limit {
            self.ring
                .reserve_exact(self.ring_limit.saturating_sub(self.ring.len()));
        }
        if self.ring.len() < end {
            self.ring.resize(end, 0);
        }
        self.write_at = end;
        start
    }

    /// Stores a sent packet under its sequence number, replacing whatever held that slot.
    /// Returns false if the packet is larger than the limits or too old to keep. Packets
    /// stored without a time never count as outside the retention window.
    pub fn insert(&mut self, seq: u16, packet: &[u8]) -> bool {
        self.store(seq, packet, UNKNOWN_TIME)
    }

    /// [`insert`](Self::insert) for a packet sent at `now`, so the retention window can
    /// tell how old it is.
    pub fn insert_at(&mut self, seq: u16, packet: &[u8], now: Instant) -> bool {
        let epoch = *self.epoch.get_or_insert(now);
        let ms = now.saturating_duration_since(epoch).as_millis();
        // Wraps after 49 days; a wrapped clock only makes packets look young (grow, never
        // evict early), so it cannot lose a packet the window should keep.
        let now_ms = u32::try_from(ms % u128::from(UNKNOWN_TIME)).unwrap_or(0);
        self.store(seq, packet, now_ms)
    }

    fn store(&mut self, seq: u16, packet: &[u8], now_ms: u32) -> bool {
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
        self.evict(ext);
        let (Ok(len), Ok(offset)) = (
            u16::try_from(packet.len()),
            u32::try_from(self.claim(packet.len(), now_ms)),
        ) else {
            return false;
        };
        let stored = Stored {
            ext_seq: ext,
            offset,
            len,
            sent_ms: now_ms,
        };
        let Some(target) = self.ring.get_mut(stored.start()..stored.end()) else {
            return false;
        };
        target.copy_from_slice(packet);
        let idx = self.index(ext);
        if let Some(slot) = self.slots.get_mut(idx) {
            *slot = Some(stored);
            self.total_bytes += packet.len();
        }
        self.written.push_back(stored);
        true
    }

    /// The packet stored under sequence number `seq`, if still cached.
    pub fn get(&self, seq: u16) -> Option<&[u8]> {
        self.unwrapper.highest()?;
        let ext = self.unwrapper.peek(seq);
        let stored = (*self.slots.get(self.index(ext))?).filter(|s| s.ext_seq == ext)?;
        self.ring.get(stored.start()..stored.end())
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
