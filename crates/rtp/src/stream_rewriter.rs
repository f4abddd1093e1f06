//! Maps incoming RTP streams onto one outgoing stream per (subscriber, track).
//!
//! A subscriber's decoder sees one SSRC with gap-free sequence numbers and monotonic
//! timestamps, even when the SFU switches what feeds it (a renegotiated publisher, a
//! different simulcast layer). Each source gets an offset so that its first packet
//! continues the output at `last_seq + 1` and `last_ts + gap`.

use crate::header::{set_sequence_number, set_ssrc, set_timestamp, RtpHeader};
use crate::seq::SeqUnwrapper;

/// Offsets that translate one incoming source into the output number space.
#[derive(Debug, Clone)]
struct Source {
    ssrc: u32,
    unwrapper: SeqUnwrapper,
    /// Extended input sequence number of the first packet forwarded from this source;
    /// anything older belongs to before the switch and is dropped.
    first_in_seq: u64,
    /// Output extended sequence = input extended sequence + `seq_offset`.
    seq_offset: i64,
    /// Output timestamp = input timestamp + `ts_offset` (mod 2^32).
    ts_offset: u32,
}

/// What the next packet of a freshly selected source should be anchored to.
#[derive(Debug, Clone, Copy)]
struct PendingSwitch {
    ssrc: u32,
    /// Explicit gap, or `None` to use the frame interval observed when the switch happens.
    ts_gap: Option<u32>,
}

/// Per (subscriber, track) output state; see the module documentation.
#[derive(Debug, Clone)]
pub struct StreamRewriter {
    out_ssrc: u32,
    out_payload_type: Option<u8>,
    default_ts_gap: u32,
    source: Option<Source>,
    pending: Option<PendingSwitch>,
    /// Highest extended output sequence number written so far.
    highest_out_seq: Option<u64>,
    /// Output timestamp of the newest packet written so far.
    newest_out_ts: Option<u32>,
    /// Last observed positive timestamp step between frames, used as the switch gap.
    frame_interval_ts: Option<u32>,
}

/// Largest timestamp step still believed to be one frame interval (about 1 s at 90 kHz).
const MAX_FRAME_INTERVAL_TS: u32 = 90_000;

impl StreamRewriter {
    /// Creates a rewriter that writes `out_ssrc` into every packet. `clock_rate_hz` only sets
    /// the fallback timestamp gap used at a switch before any frame interval was observed
    /// (20 ms worth of ticks).
    pub fn new(out_ssrc: u32, clock_rate_hz: u32) -> Self {
        Self {
            out_ssrc,
            out_payload_type: None,
            default_ts_gap: (clock_rate_hz / 50).max(1),
            source: None,
            pending: None,
            highest_out_seq: None,
            newest_out_ts: None,
            frame_interval_ts: None,
        }
    }

    /// Also rewrite the payload type (when the subscriber negotiated a different number).
    pub fn with_payload_type(mut self, payload_type: u8) -> Self {
        self.out_payload_type = Some(payload_type);
        self
    }

    /// The SSRC written into every output packet.
    pub fn out_ssrc(&self) -> u32 {
        self.out_ssrc
    }

    /// The SSRC currently forwarded (or about to be, after a switch).
    pub fn current_source(&self) -> Option<u32> {
        self.pending
            .map(|p| p.ssrc)
            .or(self.source.as_ref().map(|s| s.ssrc))
    }

    /// Starts forwarding `ssrc` from its next packet on, with a timestamp gap estimated from
    /// the last observed frame interval (or 20 ms before any was seen). Until that packet
    /// arrives the previous source keeps being forwarded, so a subscriber never starves
    /// while waiting for e.g. a keyframe on a new simulcast layer. Afterwards packets of
    /// the previous source, and packets of the new one older than its first forwarded
    /// packet, are dropped.
    pub fn switch_source(&mut self, ssrc: u32) {
        self.pending = Some(PendingSwitch { ssrc, ts_gap: None });
    }

    /// Like [`switch_source`](Self::switch_source) with an explicit timestamp gap, for a
    /// caller that knows the wall-clock time since the last packet it sent
    /// (`elapsed_s * clock_rate_hz`).
    pub fn switch_source_with_gap(&mut self, ssrc: u32, ts_gap: u32) {
        self.pending = Some(PendingSwitch {
            ssrc,
            ts_gap: Some(ts_gap.max(1)),
        });
    }

    /// The output timestamp that input timestamp `in_ts` of `ssrc` maps to, if `ssrc` is
    /// the current source (used to translate a publisher's SR into the output space).
    pub fn output_timestamp(&self, ssrc: u32, in_ts: u32) -> Option<u32> {
        let s = self.source.as_ref().filter(|s| s.ssrc == ssrc)?;
        Some(in_ts.wrapping_add(s.ts_offset))
    }

    /// The output sequence number of the newest packet written, if any.
    pub fn last_sequence_number(&self) -> Option<u16> {
        self.highest_out_seq.map(|s| s as u16)
    }

    /// Rewrites SSRC, sequence number, timestamp (and payload type if configured) of `buf`
    /// in place. Returns the output `(sequence_number, timestamp)`, or `None` when the packet
    /// must not be forwarded: unparseable, from another source, or older than the switch.
    pub fn rewrite(&mut self, buf: &mut [u8]) -> Option<(u16, u32)> {
        let (ssrc, in_seq, in_ts) = {
            let h = RtpHeader::parse(buf).ok()?;
            (h.ssrc(), h.sequence_number(), h.timestamp())
        };
        if let Some(p) = self.pending.filter(|p| p.ssrc == ssrc) {
            self.start_source(p, in_seq, in_ts);
            self.pending = None;
        }
        let src = self.source.as_mut().filter(|s| s.ssrc == ssrc)?;
        let in_ext = src.unwrapper.extend(in_seq);
        if in_ext < src.first_in_seq {
            return None;
        }
        let out_ext = u64::try_from(in_ext as i64 + src.seq_offset).ok()?;
        let out_seq = out_ext as u16;
        let out_ts = in_ts.wrapping_add(src.ts_offset);

        if self.highest_out_seq.is_none_or(|h| out_ext > h) {
            self.highest_out_seq = Some(out_ext);
        }
        match self.newest_out_ts {
            Some(prev) => {
                let step = out_ts.wrapping_sub(prev);
                if step != 0 && step < 0x8000_0000 {
                    if step <= MAX_FRAME_INTERVAL_TS {
                        self.frame_interval_ts = Some(step);
                    }
                    self.newest_out_ts = Some(out_ts);
                }
            }
            None => self.newest_out_ts = Some(out_ts),
        }

        set_ssrc(buf, self.out_ssrc);
        set_sequence_number(buf, out_seq);
        set_timestamp(buf, out_ts);
        if let Some(pt) = self.out_payload_type {
            crate::header::set_payload_type(buf, pt);
        }
        Some((out_seq, out_ts))
    }

    /// The input sequence number of the current source behind output sequence number
    /// `out_seq`, so a NACK can be answered from one cache of the source's packets shared
    /// by every subscriber. `None` when `out_seq` is newer than anything written or older
    /// than the current source.
    pub fn source_sequence_number(&self, out_seq: u16) -> Option<u16> {
        let src = self.source.as_ref()?;
        let highest = i64::try_from(self.highest_out_seq?).ok()?;
        let delta = i64::from(out_seq.wrapping_sub(highest as u16) as i16);
        let out_ext = highest + delta;
        if delta > 0 {
            return None;
        }
        let in_ext = out_ext - src.seq_offset;
        if in_ext < i64::try_from(src.first_in_seq).ok()? {
            return None;
        }
        Some(in_ext as u16)
    }

    /// Rewrites a copy of a packet of the current source that was already forwarded (a
    /// retransmission) exactly as [`rewrite`](Self::rewrite) did the first time, without
    /// changing any state. Returns `None` for a packet that was not forwarded.
    pub fn rewrite_again(&self, buf: &mut [u8]) -> Option<(u16, u32)> {
        let (ssrc, in_seq, in_ts) = {
            let h = RtpHeader::parse(buf).ok()?;
            (h.ssrc(), h.sequence_number(), h.timestamp())
        };
        let src = self.source.as_ref().filter(|s| s.ssrc == ssrc)?;
        let in_ext = src.unwrapper.peek(in_seq);
        if in_ext < src.first_in_seq {
            return None;
        }
        let out_ext = u64::try_from(in_ext as i64 + src.seq_offset).ok()?;
        if self.highest_out_seq.is_none_or(|h| out_ext > h) {
            return None;
        }
        let out_seq = out_ext as u16;
        let out_ts = in_ts.wrapping_add(src.ts_offset);
        set_ssrc(buf, self.out_ssrc);
        set_sequence_number(buf, out_seq);
        set_timestamp(buf, out_ts);
        if let Some(pt) = self.out_payload_type {
            crate::header::set_payload_type(buf, pt);
        }
        Some((out_seq, out_ts))
    }

    fn start_source(&mut self, p: PendingSwitch, in_seq: u16, in_ts: u32) {
        let mut unwrapper = SeqUnwrapper::new();
        let in_ext = unwrapper.extend(in_seq);
        let (next_out_seq, out_ts) = match (self.highest_out_seq, self.newest_out_ts) {
            (Some(seq), Some(ts)) => {
                let gap = p
                    .ts_gap
                    .or(self.frame_interval_ts)
                    .unwrap_or(self.default_ts_gap);
                (seq + 1, ts.wrapping_add(gap))
            }
            // The very first source keeps its own numbering (shifted into extended space).
            _ => ((1u64 << 16) + u64::from(in_seq), in_ts),
        };
        self.source = Some(Source {
            ssrc: p.ssrc,
            unwrapper,
            first_in_seq: in_ext,
            seq_offset: next_out_seq as i64 - in_ext as i64,
            ts_offset: out_ts.wrapping_sub(in_ts),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(ssrc: u32, seq: u16, ts: u32) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[1, 2, 3]);
        p
    }

    #[test]
    fn packets_before_any_switch_are_dropped() {
        let mut rw = StreamRewriter::new(9, 90_000);
        assert_eq!(rw.rewrite(&mut pkt(1, 10, 100)), None);
    }

    #[test]
    fn output_ssrc_and_payload_type_are_written() {
        let mut rw = StreamRewriter::new(0xABCD, 90_000).with_payload_type(100);
        rw.switch_source(1);
        let mut p = pkt(1, 10, 100);
        assert_eq!(rw.rewrite(&mut p), Some((10, 100)));
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.ssrc(), 0xABCD);
        assert_eq!(h.payload_type(), 100);
    }

    #[test]
    fn a_forwarded_packet_is_rewritten_again_identically_for_a_retransmission() {
        let mut rw = StreamRewriter::new(0xABCD, 90_000);
        rw.switch_source(1);
        let _ = rw.rewrite(&mut pkt(1, 10, 100));
        rw.switch_source(2);
        let mut first = pkt(2, 500, 7000);
        let (out_seq, _) = rw.rewrite(&mut first).unwrap();
        let _ = rw.rewrite(&mut pkt(2, 501, 7000));
        assert_eq!(rw.source_sequence_number(out_seq), Some(500));
        let mut again = pkt(2, 500, 7000);
        assert_eq!(
            rw.rewrite_again(&mut again),
            Some((
                out_seq,
                7000u32.wrapping_add(
                    RtpHeader::parse(&first)
                        .unwrap()
                        .timestamp()
                        .wrapping_sub(7000)
                )
            ))
        );
        assert_eq!(again, first);
        // output numbers of the previous source, or not written yet, map to nothing
        assert_eq!(rw.source_sequence_number(out_seq.wrapping_sub(1)), None);
        assert_eq!(rw.source_sequence_number(out_seq.wrapping_add(2)), None);
        assert_eq!(rw.rewrite_again(&mut pkt(2, 502, 7000)), None);
        assert_eq!(rw.rewrite_again(&mut pkt(1, 10, 100)), None);
    }
}
