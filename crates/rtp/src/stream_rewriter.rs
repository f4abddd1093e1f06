//! Maps incoming RTP streams onto one outgoing stream per (subscriber, track).
//!
//! A subscriber's decoder sees one SSRC with gap-free sequence numbers and monotonic
//! timestamps, even when the SFU switches what feeds it (a renegotiated publisher, a
//! different simulcast layer). Each source gets an offset so that its first packet
//! continues the output at `last_seq + 1` and `last_ts + gap`.

use crate::header::{set_sequence_number, set_ssrc, set_timestamp, RtpHeader};
use crate::seq::SeqUnwrapper;
use crate::skipped::SkippedNumbers;

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
    /// Newest extended input sequence number written.
    newest_in_seq: u64,
    /// Packets of this source deliberately not forwarded (see [`StreamRewriter::skip`]);
    /// every later packet's output number is lowered by how many of them precede it.
    skipped: SkippedNumbers,
    /// Input numbers after which the output got a packet of its own (a FEC packet, see
    /// [`StreamRewriter::insert`]): every later input packet's output number is raised by
    /// how many of them precede it.
    inserted_after: SkippedNumbers,
    /// The output numbers those inserted packets took, so that a NACK for one of them is
    /// never mapped to a media packet.
    inserted_out: SkippedNumbers,
}

impl Source {
    /// Extended output sequence number of extended input `in_ext`; `None` for a packet
    /// from before the switch, a skipped one, or one too old to translate.
    fn out_seq(&self, in_ext: u64) -> Option<u64> {
        if in_ext < self.first_in_seq {
            return None;
        }
        let skipped_before = if self.skipped.is_empty() {
            0
        } else {
            if self.skipped.contains(in_ext) {
                return None;
            }
            self.skipped.count_before(in_ext)?
        };
        let inserted_before = if self.inserted_after.is_empty() {
            0
        } else {
            self.inserted_after.count_before(in_ext)?
        };
        u64::try_from(in_ext as i64 + self.seq_offset)
            .ok()?
            .checked_sub(skipped_before)?
            .checked_add(inserted_before)
    }
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
        let out_ext = src.out_seq(in_ext)?;
        src.newest_in_seq = src.newest_in_seq.max(in_ext);
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
        let out_ext_u = u64::try_from(out_ext).ok()?;
        let inserted_before = if src.inserted_out.is_empty() {
            0
        } else {
            if src.inserted_out.contains(out_ext_u) {
                return None; // a packet of the SFU's own (FEC), not of the source
            }
            i64::try_from(src.inserted_out.count_before(out_ext_u)?).ok()?
        };
        let shifted = u64::try_from(out_ext - inserted_before - src.seq_offset).ok()?;
        let in_ext = src.skipped.unshift(shifted)?;
        if in_ext < src.first_in_seq {
            return None;
        }
        Some(in_ext as u16)
    }

    /// Leaves out a packet of the current source on purpose (a picture of a temporal
    /// layer the subscriber does not get): the packets after it are numbered on as if it
    /// never existed, so the subscriber sees no gap to ask for. Returns false, leaving a
    /// gap, for a packet that cannot be left out that way: not of the current source, or
    /// not newer than every packet already written (its number is taken into account by
    /// them already).
    pub fn skip(&mut self, buf: &[u8]) -> bool {
        let Ok(h) = RtpHeader::parse(buf) else {
            return false;
        };
        let Some(src) = self.source.as_mut().filter(|s| s.ssrc == h.ssrc()) else {
            return false;
        };
        let in_ext = src.unwrapper.extend(h.sequence_number());
        if in_ext <= src.newest_in_seq {
            return false;
        }
        src.skipped.skip(in_ext);
        true
    }

    /// Output timestamp of the newest packet written (for a packet of the SFU's own that
    /// should look current); `None` before the first.
    pub fn newest_timestamp(&self) -> Option<u32> {
        self.newest_out_ts
    }

    /// Whether output sequence number `out_seq` was taken by [`insert`](Self::insert)
    /// for the current source (a FEC packet's, not a media packet's).
    pub fn is_inserted(&self, out_seq: u16) -> bool {
        let (Some(src), Some(highest)) = (self.source.as_ref(), self.highest_out_seq) else {
            return false;
        };
        let delta = i64::from(out_seq.wrapping_sub(highest as u16) as i16);
        u64::try_from(highest as i64 + delta)
            .is_ok_and(|out_ext| src.inserted_out.contains(out_ext))
    }

    /// Takes the output sequence number right after the newest packet written for a
    /// packet of the SFU's own (a FEC packet protecting what was just sent): every later
    /// packet of the source is numbered one higher, so the subscriber sees no gap, and
    /// [`source_sequence_number`](Self::source_sequence_number) maps a NACK for the
    /// inserted number to nothing. Returns `None` (nothing taken) before any packet of the
    /// current source was written, when the newest packet written is not the source's
    /// newest (a late packet of a previous source), or when a packet was already inserted
    /// after it.
    pub fn insert(&mut self) -> Option<u16> {
        let highest = self.highest_out_seq?;
        let src = self.source.as_mut()?;
        let newest = src.newest_in_seq;
        if src.out_seq(newest)? != highest || src.inserted_after.contains(newest) {
            return None;
        }
        let out_ext = highest + 1;
        src.inserted_after.skip(newest);
        src.inserted_out.skip(out_ext);
        self.highest_out_seq = Some(out_ext);
        Some(out_ext as u16)
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
        let out_ext = src.out_seq(in_ext)?;
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
            newest_in_seq: in_ext,
            skipped: SkippedNumbers::new(),
            inserted_after: SkippedNumbers::new(),
            inserted_out: SkippedNumbers::new(),
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
    fn skipped_packets_leave_no_gap_and_nacks_map_back_past_them() {
        let mut rw = StreamRewriter::new(9, 90_000);
        rw.switch_source(1);
        let (first, _) = rw.rewrite(&mut pkt(1, 100, 0)).unwrap();
        assert!(rw.skip(&pkt(1, 101, 3000)));
        assert!(rw.skip(&pkt(1, 102, 3000)));
        let (a, _) = rw.rewrite(&mut pkt(1, 103, 6000)).unwrap();
        assert!(rw.skip(&pkt(1, 105, 9000)));
        // 104 arrives after 105 was skipped: it is still numbered in order
        let (b, _) = rw.rewrite(&mut pkt(1, 104, 6000)).unwrap();
        let (c, _) = rw.rewrite(&mut pkt(1, 106, 12000)).unwrap();
        assert_eq!(
            [a, b, c],
            [first + 1, first + 2, first + 3],
            "gap-free output"
        );
        // a skipped packet arriving again (a retransmission) is not forwarded
        assert_eq!(rw.rewrite(&mut pkt(1, 102, 3000)), None);
        assert_eq!(rw.rewrite_again(&mut pkt(1, 105, 9000)), None);
        // a subscriber's NACK for an output number finds the right source packet
        assert_eq!(rw.source_sequence_number(a), Some(103));
        assert_eq!(rw.source_sequence_number(b), Some(104));
        assert_eq!(rw.source_sequence_number(c), Some(106));
        assert_eq!(rw.rewrite_again(&mut pkt(1, 106, 12000)), Some((c, 12000)));
    }

    #[test]
    fn inserted_numbers_keep_the_output_gap_free_and_map_to_no_source_packet() {
        let mut rw = StreamRewriter::new(9, 90_000);
        assert_eq!(rw.insert(), None, "nothing written yet");
        rw.switch_source(1);
        let (a, _) = rw.rewrite(&mut pkt(1, 100, 0)).unwrap();
        let (b, _) = rw.rewrite(&mut pkt(1, 102, 3000)).unwrap();
        let fec = rw.insert().unwrap();
        assert_eq!(rw.insert(), None, "one inserted packet per position");
        assert!(rw.skip(&pkt(1, 103, 6000)));
        let (c, _) = rw.rewrite(&mut pkt(1, 104, 9000)).unwrap();
        // 101 arrives late: it keeps its place before the inserted packet
        let (late, _) = rw.rewrite(&mut pkt(1, 101, 0)).unwrap();
        assert_eq!(
            [late, b, fec, c],
            [a + 1, a + 2, a + 3, a + 4],
            "gap-free output around the inserted number"
        );
        let fec2 = rw.insert().unwrap();
        assert_eq!(fec2, c + 1);
        let (d, _) = rw.rewrite(&mut pkt(1, 105, 12000)).unwrap();
        assert_eq!(d, c + 2);
        assert_eq!(
            rw.source_sequence_number(fec),
            None,
            "a FEC number is no media packet"
        );
        assert_eq!(rw.source_sequence_number(fec2), None);
        assert!(rw.is_inserted(fec) && rw.is_inserted(fec2) && !rw.is_inserted(c));
        for (out, input) in [(a, 100), (late, 101), (b, 102), (c, 104), (d, 105)] {
            assert_eq!(rw.source_sequence_number(out), Some(input), "{out}");
        }
        // a retransmission is numbered as the first time
        assert_eq!(rw.rewrite_again(&mut pkt(1, 104, 9000)).unwrap().0, c);
        // a layer switch continues after the inserted numbers
        rw.switch_source(2);
        let (e, _) = rw.rewrite(&mut pkt(2, 7000, 50)).unwrap();
        assert_eq!(e, d + 1);
        let fec3 = rw.insert().unwrap();
        let (f, _) = rw.rewrite(&mut pkt(2, 7001, 3050)).unwrap();
        assert_eq!([fec3, f], [e + 1, e + 2]);
        assert_eq!(rw.source_sequence_number(fec3), None);
        assert_eq!(rw.source_sequence_number(f), Some(7001));
    }

    #[test]
    fn a_packet_older_than_one_written_cannot_be_skipped() {
        let mut rw = StreamRewriter::new(9, 90_000);
        rw.switch_source(1);
        let (first, _) = rw.rewrite(&mut pkt(1, 100, 0)).unwrap();
        let _ = rw.rewrite(&mut pkt(1, 102, 0)).unwrap();
        // 101 is late: the numbering around it is fixed, so it stays a gap
        assert!(!rw.skip(&pkt(1, 101, 0)));
        assert!(!rw.skip(&pkt(2, 103, 0)), "another source");
        assert_eq!(rw.rewrite(&mut pkt(1, 103, 0)).unwrap().0, first + 3);
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
