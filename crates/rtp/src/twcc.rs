//! Receiver side of transport-wide congestion control
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01, section 3.1).
//!
//! The SFU records the arrival time of every packet carrying a transport-wide sequence
//! number and periodically (every 50-100 ms) reports them back to the sender, whose
//! bandwidth estimator (Chrome's GCC) turns arrival-time deltas into a send rate.

use std::time::Instant;

use crate::rtcp::{FMT_TWCC, PT_RTPFB};
use crate::seq::SeqUnwrapper;

/// Default number of transport sequence numbers kept between two feedback packets.
pub const DEFAULT_TWCC_WINDOW: usize = 4096;
/// Largest feedback packet written, so it fits one datagram after SRTCP overhead.
pub const MAX_TWCC_FEEDBACK_BYTES: usize = 1200;

/// Fixed part of the feedback packet: common header, two SSRCs, base/count, ref/fbcount.
const HEADER_LEN: usize = 20;
/// One receive-delta tick is 250 microseconds.
const TICK_US: u64 = 250;
/// One reference-time unit is 64 ms = 256 ticks.
const REF_TIME_US: u64 = 64_000;
const TICKS_PER_REF: i64 = 256;
/// Longest run a run-length chunk can express (13 bits).
const MAX_RUN: usize = 0x1FFF;

/// Status symbol of one reported packet.
const NOT_RECEIVED: u8 = 0;
const SMALL_DELTA: u8 = 1;
const LARGE_DELTA: u8 = 2;

#[derive(Debug, Clone, Copy)]
struct Slot {
    ext_seq: u64,
    arrival_us: u64,
}

/// Smallest ring allocated once a packet arrives.
const INITIAL_SLOTS: usize = 32;

/// Records arrivals by transport-wide sequence number and builds feedback packets.
#[derive(Debug, Clone)]
pub struct TwccRecorder {
    epoch: Option<Instant>,
    unwrapper: SeqUnwrapper,
    /// Ring indexed by extended sequence number modulo its length; a slot is valid only
    /// for the sequence number it names, so stale entries never need clearing. Empty
    /// until the first packet (a participant that only receives never records one),
    /// then as long as the unreported span needs: feedback every 50-100 ms keeps that
    /// span at a few dozen packets per publisher, far below `limit`.
    slots: Vec<Slot>,
    /// Longest the ring may grow: the configured window.
    limit: usize,
    /// First extended sequence number not yet reported.
    next_base: Option<u64>,
    highest: Option<u64>,
    feedback_count: u8,
    reported_any: bool,
    /// Scratch buffers reused by every build, so feedback does not allocate.
    symbols: Vec<u8>,
    deltas: Vec<i16>,
}

impl Default for TwccRecorder {
    fn default() -> Self {
        Self::new(DEFAULT_TWCC_WINDOW)
    }
}

impl TwccRecorder {
    /// A recorder that keeps at most `window` sequence numbers between two feedbacks;
    /// older unreported ones are dropped from reporting when newer ones push them out.
    /// Nothing is allocated until the first packet arrives; the ring then grows with
    /// the unreported span up to `window`.
    pub fn new(window: usize) -> Self {
        Self {
            epoch: None,
            unwrapper: SeqUnwrapper::new(),
            slots: Vec::new(),
            limit: window.clamp(16, 1 << 16),
            next_base: None,
            highest: None,
            feedback_count: 0,
            reported_any: false,
            symbols: Vec::new(),
            deltas: Vec::new(),
        }
    }

    fn slot_index(&self, ext: u64) -> usize {
        (ext % (self.slots.len().max(1) as u64)) as usize
    }

    fn arrival_us(&self, ext: u64) -> Option<u64> {
        self.slots
            .get(self.slot_index(ext))
            .filter(|s| s.ext_seq == ext)
            .map(|s| s.arrival_us)
    }

    /// Slots currently allocated (grows with the unreported span, at most the window).
    pub fn allocated_slots(&self) -> usize {
        self.slots.len()
    }

    /// Grows the ring (never beyond `limit`) so it holds `span` consecutive sequence
    /// numbers, moving the recorded arrivals to their new slots.
    fn reserve(&mut self, span: u64) {
        let len = self.slots.len();
        if span <= len as u64 || len >= self.limit {
            return;
        }
        let wanted = usize::try_from(span)
            .unwrap_or(usize::MAX)
            .max(INITIAL_SLOTS)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX)
            .min(self.limit);
        let empty = Slot {
            ext_seq: u64::MAX,
            arrival_us: 0,
        };
        let old = std::mem::replace(&mut self.slots, vec![empty; wanted]);
        for slot in old.into_iter().filter(|s| s.ext_seq != u64::MAX) {
            let idx = self.slot_index(slot.ext_seq);
            if let Some(new) = self.slots.get_mut(idx) {
                if new.ext_seq == u64::MAX || new.ext_seq < slot.ext_seq {
                    *new = slot;
                }
            }
        }
    }

    /// Records that the packet with `transport_seq` arrived at `arrival`. Returns false if
    /// it was ignored: a duplicate, or older than what was already reported.
    pub fn record(&mut self, transport_seq: u16, arrival: Instant) -> bool {
        let epoch = *self.epoch.get_or_insert(arrival);
        let arrival_us = u64::try_from(arrival.saturating_duration_since(epoch).as_micros())
            .unwrap_or(u64::MAX / 2);
        let ext = self.unwrapper.extend(transport_seq);
        let window = self.limit as u64;
        match self.next_base {
            None => self.next_base = Some(ext),
            Some(base) if ext < base => {
                // Before the first feedback a late packet may still extend the window back.
                let fits = self.highest.is_some_and(|h| h - ext < window);
                if self.reported_any || !fits {
                    return false;
                }
                self.next_base = Some(ext);
            }
            Some(_) => {}
        }
        if self.arrival_us(ext).is_some() {
            return false;
        }
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        // Keep the unreported span within the ring.
        if let (Some(base), Some(high)) = (self.next_base, self.highest) {
            let base = if high.saturating_sub(base) >= window {
                high + 1 - window
            } else {
                base
            };
            self.next_base = Some(base);
            self.reserve((high + 1).saturating_sub(base));
        }
        let idx = self.slot_index(ext);
        if let Some(slot) = self.slots.get_mut(idx) {
            *slot = Slot {
                ext_seq: ext,
                arrival_us,
            };
        }
        true
    }

    /// Whether received packets are waiting to be reported.
    pub fn has_pending(&self) -> bool {
        matches!((self.next_base, self.highest), (Some(b), Some(h)) if b <= h)
    }

    /// Appends one transport-cc feedback packet (RTPFB FMT 15) covering the unreported
    /// packets from the oldest onwards and returns true; false (nothing written) when
    /// nothing is pending. A packet ends early when a receive delta does not fit 16 bits
    /// or the packet reaches [`MAX_TWCC_FEEDBACK_BYTES`]; call again until it returns false.
    pub fn build_feedback(&mut self, sender_ssrc: u32, media_ssrc: u32, out: &mut Vec<u8>) -> bool {
        let (Some(base), Some(highest)) = (self.next_base, self.highest) else {
            return false;
        };
        if base > highest {
            return false;
        }
        let Some(first_rx) = (base..=highest).find(|&s| self.arrival_us(s).is_some()) else {
            self.next_base = Some(highest + 1);
            return false;
        };
        let first_us = self.arrival_us(first_rx).unwrap_or(0);
        let reference_time = first_us / REF_TIME_US;
        let mut prev_ticks = reference_time as i64 * TICKS_PER_REF;

        self.symbols.clear();
        self.deltas.clear();
        let mut delta_bytes = 0usize;
        let mut seq = base;
        while seq <= highest && self.symbols.len() < usize::from(u16::MAX) {
            let n = self.symbols.len() + 1;
            let worst_chunk_bytes = 2 * n.div_ceil(7);
            match self.arrival_us(seq) {
                Some(us) => {
                    let ticks = (us / TICK_US) as i64;
                    let Ok(delta) = i16::try_from(ticks - prev_ticks) else {
                        break;
                    };
                    let (symbol, size) = if (0..=255).contains(&delta) {
                        (SMALL_DELTA, 1)
                    } else {
                        (LARGE_DELTA, 2)
                    };
                    if HEADER_LEN + worst_chunk_bytes + delta_bytes + size > MAX_TWCC_FEEDBACK_BYTES
                    {
                        break;
                    }
                    delta_bytes += size;
                    self.symbols.push(symbol);
                    self.deltas.push(delta);
                    prev_ticks = ticks;
                }
                None => {
                    if HEADER_LEN + worst_chunk_bytes + delta_bytes > MAX_TWCC_FEEDBACK_BYTES {
                        break;
                    }
                    self.symbols.push(NOT_RECEIVED);
                }
            }
            seq += 1;
        }
        if self.symbols.is_empty() {
            return false;
        }

        let start = crate::rtcp::write::begin(out, FMT_TWCC, PT_RTPFB);
        out.extend_from_slice(&sender_ssrc.to_be_bytes());
        out.extend_from_slice(&media_ssrc.to_be_bytes());
        out.extend_from_slice(&(base as u16).to_be_bytes());
        out.extend_from_slice(&(self.symbols.len() as u16).to_be_bytes());
        let ref24 = (reference_time as u32) & 0x00FF_FFFF;
        out.extend_from_slice(&ref24.to_be_bytes()[1..]);
        out.push(self.feedback_count);
        write_chunks(&self.symbols, out);
        for &d in &self.deltas {
            if (0..=255).contains(&d) {
                out.push(d as u8);
            } else {
                out.extend_from_slice(&d.to_be_bytes());
            }
        }
        finish_with_padding(out, start);

        self.feedback_count = self.feedback_count.wrapping_add(1);
        self.reported_any = true;
        self.next_base = Some(base + self.symbols.len() as u64);
        true
    }
}

/// Encodes status symbols as run-length and status-vector chunks (draft section 3.1.3-4).
fn write_chunks(symbols: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(rest) = symbols.get(i..).filter(|r| !r.is_empty()) {
        let first = rest.first().copied().unwrap_or(NOT_RECEIVED);
        let run = rest
            .iter()
            .take(MAX_RUN)
            .take_while(|&&s| s == first)
            .count();
        let one_bit_span = rest.len().min(14);
        let one_bit_ok = rest.iter().take(one_bit_span).all(|&s| s != LARGE_DELTA);
        let chunk: u16;
        let used: usize;
        if run >= 14 || (run == rest.len() && run >= 7) {
            chunk = (u16::from(first) << 13) | run as u16;
            used = run;
        } else if one_bit_ok {
            // 1 T bit, 1 S bit = 0, 14 one-bit symbols; unused trailing symbols stay 0.
            let mut c = 0x8000u16;
            for (k, &s) in rest.iter().take(14).enumerate() {
                c |= u16::from(s) << (13 - k);
            }
            chunk = c;
            used = one_bit_span;
        } else if run >= 7 {
            chunk = (u16::from(first) << 13) | run as u16;
            used = run;
        } else {
            // 1 T bit, 1 S bit = 1, 7 two-bit symbols.
            let mut c = 0xC000u16;
            for (k, &s) in rest.iter().take(7).enumerate() {
                c |= u16::from(s) << (12 - 2 * k);
            }
            chunk = c;
            used = rest.len().min(7);
        }
        out.extend_from_slice(&chunk.to_be_bytes());
        i += used;
    }
}

/// Pads to 32 bits the way libwebrtc does (P bit set, last padding byte holds the count)
/// and fills in the length field.
fn finish_with_padding(out: &mut Vec<u8>, start: usize) {
    let padding = (4 - (out.len() - start) % 4) % 4;
    if padding > 0 {
        for _ in 1..padding {
            out.push(0);
        }
        out.push(padding as u8);
        if let Some(b0) = out.get_mut(start) {
            *b0 |= 0x20;
        }
    }
    crate::rtcp::write::finish(out, start);
}
