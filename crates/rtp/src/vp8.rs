//! The VP8 payload descriptor (RFC 7741 section 4.2): reading the fields an SFU needs to
//! choose what to forward (temporal layer, picture boundaries) and rewriting the picture
//! numbering so that a subscriber fed from several simulcast encodings in turn sees one
//! stream.
//!
//! Every simulcast encoding numbers its pictures (PictureID) and its base-layer pictures
//! (TL0PICIDX) on its own. A decoder that sees PictureID jump at a layer switch takes it
//! for lost pictures and asks for them, so the SFU shifts both numbers per subscriber, the
//! way [`StreamRewriter`](crate::StreamRewriter) shifts sequence numbers and timestamps.

use crate::reader::Reader;
use crate::skipped::SkippedNumbers;

/// The fields of one packet's descriptor, with the byte offsets needed to rewrite them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Descriptor {
    /// S bit: the packet starts a partition.
    pub start_of_partition: bool,
    /// PID: the partition index (0 for the first partition of a frame).
    pub partition_index: u8,
    /// PictureID and whether it is the 15-bit form (M bit).
    pub picture_id: Option<(u16, bool)>,
    /// TL0PICIDX: index of the newest base-layer (temporal layer 0) picture.
    pub tl0_pic_idx: Option<u8>,
    /// TID: the temporal layer of the picture (0 when the descriptor has none).
    pub temporal_id: u8,
    /// Y bit: the picture depends only on the base layer (a switch-up point).
    pub layer_sync: bool,
    /// Offset of the PictureID field within the payload.
    picture_id_offset: usize,
    /// Offset of the TL0PICIDX byte within the payload.
    tl0_offset: usize,
}

impl Vp8Descriptor {
    /// Parses the descriptor at the start of a VP8 RTP payload; `None` when it is cut
    /// short.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let mut r = Reader::new(payload);
        let b0 = r.u8()?;
        let mut d = Vp8Descriptor {
            start_of_partition: b0 & 0x10 != 0,
            partition_index: b0 & 0x07,
            ..Default::default()
        };
        if b0 & 0x80 == 0 {
            return Some(d);
        }
        let x = r.u8()?;
        if x & 0x80 != 0 {
            d.picture_id_offset = r.position();
            let p = r.u8()?;
            d.picture_id = Some(if p & 0x80 != 0 {
                let low = r.u8()?;
                (u16::from(p & 0x7F) << 8 | u16::from(low), true)
            } else {
                (u16::from(p), false)
            });
        }
        if x & 0x40 != 0 {
            d.tl0_offset = r.position();
            d.tl0_pic_idx = Some(r.u8()?);
        }
        if x & 0x30 != 0 {
            let t = r.u8()?;
            if x & 0x20 != 0 {
                d.temporal_id = t >> 6;
                d.layer_sync = t & 0x20 != 0;
            }
        }
        Some(d)
    }

    /// Whether this packet starts a new picture (first packet of its first partition).
    pub fn starts_picture(&self) -> bool {
        self.start_of_partition && self.partition_index == 0
    }
}

/// Per-subscriber renumbering of PictureID and TL0PICIDX across source switches and
/// dropped pictures.
///
/// Call [`switch_source`](Self::switch_source) when the packet about to be rewritten is the
/// first one of a new source (a keyframe of another simulcast encoding); the new source is
/// then numbered on from the last picture written. Call [`skip`](Self::skip) for the
/// packets of a picture left out (a temporal layer the subscriber does not get): later
/// pictures are numbered as if it never existed, as a decoder expects of a stream that was
/// encoded without it. Within one source the numbering of a picture never changes, so
/// reordered and retransmitted packets keep their numbers.
#[derive(Debug, Clone, Default)]
pub struct Vp8PictureRewriter {
    picture_id_offset: u16,
    tl0_offset: u8,
    last_out_picture_id: Option<u16>,
    last_out_tl0: Option<u8>,
    switching: bool,
    /// Highest extended PictureID of the current source seen (written or skipped).
    highest_in_picture: Option<u64>,
    /// Newest extended PictureID of the current source written.
    newest_written_picture: Option<u64>,
    /// Pictures of the current source left out, as extended PictureIDs.
    skipped: SkippedNumbers,
}

/// PictureID arithmetic is modulo 2^15 (the 7-bit form keeps only the low bits).
const PICTURE_ID_MASK: u16 = 0x7FFF;

impl Vp8PictureRewriter {
    /// A rewriter that leaves numbers unchanged until the first switch.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next packet comes from a new source: its picture follows the last one written.
    pub fn switch_source(&mut self) {
        self.switching = true;
    }

    /// Rewrites the descriptor at the start of `payload` in place. A payload without a
    /// descriptor extension, or one cut short, is left as it is.
    pub fn rewrite(&mut self, payload: &mut [u8]) {
        if let Some(d) = Vp8Descriptor::parse(payload) {
            self.rewrite_parsed(payload, &d);
        }
    }

    /// [`rewrite`](Self::rewrite) with the descriptor already parsed from these bytes
    /// (a forwarder parses it once per packet, not once per subscriber's copy).
    pub fn rewrite_parsed(&mut self, payload: &mut [u8], d: &Vp8Descriptor) {
        if std::mem::take(&mut self.switching) {
            if let (Some((pid, _)), Some(last)) = (d.picture_id, self.last_out_picture_id) {
                self.picture_id_offset = last.wrapping_add(1).wrapping_sub(pid) & PICTURE_ID_MASK;
            }
            if let (Some(tl0), Some(last)) = (d.tl0_pic_idx, self.last_out_tl0) {
                self.tl0_offset = last.wrapping_add(1).wrapping_sub(tl0);
            }
            self.highest_in_picture = None;
            self.newest_written_picture = None;
            self.skipped.clear();
        }
        if let Some((pid, long)) = d.picture_id {
            let ext = self.extend_picture_id(pid, long);
            self.newest_written_picture =
                Some(self.newest_written_picture.map_or(ext, |n| n.max(ext)));
            let out = self.out_picture_id(pid, ext);
            write_picture_id(payload, d.picture_id_offset, out, long);
            if self
                .last_out_picture_id
                .is_none_or(|last| is_newer_picture_id(out, last))
            {
                self.last_out_picture_id = Some(out);
            }
        }
        if let Some(tl0) = d.tl0_pic_idx {
            let out = tl0.wrapping_add(self.tl0_offset);
            if let Some(b) = payload.get_mut(d.tl0_offset) {
                *b = out;
            }
            if self
                .last_out_tl0
                .is_none_or(|last| out.wrapping_sub(last) < 0x80)
            {
                self.last_out_tl0 = Some(out);
            }
        }
    }

    /// Leaves out the picture of this packet (call it for every packet not forwarded):
    /// later pictures are numbered on without a gap. A picture older than one already
    /// written cannot be left out that way and stays a gap. Base-layer pictures are never
    /// left out (their TL0PICIDX is not renumbered).
    pub fn skip(&mut self, payload: &[u8]) {
        if let Some(d) = Vp8Descriptor::parse(payload) {
            self.skip_parsed(&d);
        }
    }

    /// [`skip`](Self::skip) with the packet's descriptor already parsed.
    pub fn skip_parsed(&mut self, d: &Vp8Descriptor) {
        let Some((pid, long)) = d.picture_id else {
            return;
        };
        let ext = self.extend_picture_id(pid, long);
        if self.newest_written_picture.is_none_or(|n| ext > n) {
            self.skipped.skip(ext);
        }
    }

    /// Rewrites a retransmitted copy exactly as the first time, without changing state.
    pub fn rewrite_again(&self, payload: &mut [u8]) {
        let Some(d) = Vp8Descriptor::parse(payload) else {
            return;
        };
        if let Some((pid, long)) = d.picture_id {
            let out = self.out_picture_id(pid, self.peek_picture_id(pid, long));
            write_picture_id(payload, d.picture_id_offset, out, long);
        }
        if let Some(tl0) = d.tl0_pic_idx {
            if let Some(b) = payload.get_mut(d.tl0_offset) {
                *b = tl0.wrapping_add(self.tl0_offset);
            }
        }
    }

    /// The PictureID written for `pid` (extended: `ext`) of the current source.
    fn out_picture_id(&self, pid: u16, ext: u64) -> u16 {
        let skipped_before = self.skipped.count_before(ext).unwrap_or(0) as u16;
        pid.wrapping_add(self.picture_id_offset)
            .wrapping_sub(skipped_before)
            & PICTURE_ID_MASK
    }

    /// Extended (wrap-free) form of a PictureID of the current source. The 7-bit form
    /// wraps at 128, the 15-bit form at 32768.
    fn peek_picture_id(&self, pid: u16, long: bool) -> u64 {
        let modulus: u64 = if long { 1 << 15 } else { 1 << 7 };
        let pid = u64::from(pid) % modulus;
        match self.highest_in_picture {
            // start high enough that a slightly older picture stays positive
            None => modulus + pid,
            Some(h) => {
                let forward = (pid + modulus - h % modulus) % modulus;
                if forward < modulus / 2 {
                    h + forward
                } else {
                    h.saturating_sub(modulus - forward)
                }
            }
        }
    }

    /// [`peek_picture_id`](Self::peek_picture_id), advancing the highest seen.
    fn extend_picture_id(&mut self, pid: u16, long: bool) -> u64 {
        let ext = self.peek_picture_id(pid, long);
        if self.highest_in_picture.is_none_or(|h| ext > h) {
            self.highest_in_picture = Some(ext);
        }
        ext
    }
}

fn write_picture_id(payload: &mut [u8], offset: usize, out: u16, long: bool) {
    if long {
        if let Some([high, low]) = payload.get_mut(offset..offset + 2) {
            *high = 0x80 | (out >> 8) as u8;
            *low = out as u8;
        }
    } else if let Some(b) = payload.get_mut(offset) {
        *b = (out & 0x7F) as u8;
    }
}

/// Whether PictureID `a` follows `b` (modulo 2^15, within half the range).
fn is_newer_picture_id(a: u16, b: u16) -> bool {
    let diff = a.wrapping_sub(b) & PICTURE_ID_MASK;
    diff != 0 && diff < 0x4000
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Descriptor with X, I (15-bit), L and T present, then a one-byte frame tag.
    fn payload(picture_id: u16, tl0: u8, tid: u8) -> Vec<u8> {
        vec![
            0x90,
            0xE0,
            0x80 | (picture_id >> 8) as u8,
            picture_id as u8,
            tl0,
            tid << 6,
            0x00,
        ]
    }

    #[test]
    fn parses_every_optional_field() {
        let d = Vp8Descriptor::parse(&payload(0x1234, 9, 2)).unwrap();
        assert!(d.starts_picture());
        assert_eq!(d.picture_id, Some((0x1234, true)));
        assert_eq!(d.tl0_pic_idx, Some(9));
        assert_eq!(d.temporal_id, 2);
        let short = Vp8Descriptor::parse(&[0x90, 0x80, 0x05, 0x00]).unwrap();
        assert_eq!(short.picture_id, Some((5, false)));
        assert_eq!(short.temporal_id, 0);
        let none = Vp8Descriptor::parse(&[0x10, 0x00]).unwrap();
        assert_eq!(none.picture_id, None);
    }

    #[test]
    fn truncated_descriptors_are_none_not_a_panic() {
        let full = payload(0x1234, 9, 2);
        for len in 0..6 {
            let cut = &full[..len];
            if len < 6 {
                assert!(Vp8Descriptor::parse(cut).is_none(), "len {len}");
            }
            let mut copy = cut.to_vec();
            Vp8PictureRewriter::new().rewrite(&mut copy);
            assert_eq!(copy, cut, "a cut descriptor is left alone");
        }
    }

    #[test]
    fn a_switch_continues_the_picture_and_tl0_numbering() {
        let mut rw = Vp8PictureRewriter::new();
        let mut out = Vec::new();
        for (pid, tl0) in [(100u16, 10u8), (101, 10), (102, 11)] {
            let mut p = payload(pid, tl0, 0);
            rw.rewrite(&mut p);
            out.push(Vp8Descriptor::parse(&p).unwrap());
        }
        // another encoding, numbered far away, wrapping
        rw.switch_source();
        for (pid, tl0) in [(0x7FFEu16, 250u8), (0x7FFF, 251), (0, 252)] {
            let mut p = payload(pid, tl0, 0);
            rw.rewrite(&mut p);
            out.push(Vp8Descriptor::parse(&p).unwrap());
        }
        let pids: Vec<u16> = out.iter().map(|d| d.picture_id.unwrap().0).collect();
        let tl0s: Vec<u8> = out.iter().map(|d| d.tl0_pic_idx.unwrap()).collect();
        assert_eq!(pids, [100, 101, 102, 103, 104, 105]);
        assert_eq!(tl0s, [10, 10, 11, 12, 13, 14]);
    }

    #[test]
    fn a_retransmission_keeps_its_first_numbers() {
        let mut rw = Vp8PictureRewriter::new();
        let mut first = payload(50, 5, 0);
        rw.rewrite(&mut first);
        rw.switch_source();
        let mut p = payload(900, 90, 0);
        rw.rewrite(&mut p);
        let mut again = payload(901, 90, 1);
        rw.rewrite_again(&mut again);
        assert_eq!(
            Vp8Descriptor::parse(&again).unwrap().picture_id,
            Some((52, true))
        );
    }

    #[test]
    fn skipped_pictures_leave_no_gap_in_picture_ids() {
        let mut rw = Vp8PictureRewriter::new();
        let written = |rw: &mut Vp8PictureRewriter, pid: u16, tid: u8| {
            let mut p = payload(pid, 7, tid);
            rw.rewrite(&mut p);
            Vp8Descriptor::parse(&p).unwrap().picture_id.unwrap().0
        };
        // an L1T3 pattern (TID 0 2 1 2 0 ...) with TID 2 left out
        assert_eq!(written(&mut rw, 0x7FFE, 0), 0x7FFE);
        rw.skip(&payload(0x7FFF, 7, 2));
        rw.skip(&payload(0x7FFF, 7, 2)); // a second packet of the same picture
        assert_eq!(written(&mut rw, 0, 1), 0x7FFF);
        rw.skip(&payload(1, 7, 2));
        assert_eq!(written(&mut rw, 2, 0), 0, "wraps in 15 bits, no gap");
        // a retransmission of a written picture keeps its number
        let mut again = payload(0, 7, 1);
        rw.rewrite_again(&mut again);
        assert_eq!(
            Vp8Descriptor::parse(&again).unwrap().picture_id,
            Some((0x7FFF, true))
        );
        // a late picture older than one written is not left out: it keeps its place
        rw.skip(&payload(1, 7, 2));
        assert_eq!(written(&mut rw, 3, 2), 1);
    }

    #[test]
    fn seven_bit_picture_ids_stay_seven_bits() {
        let mut rw = Vp8PictureRewriter::new();
        let mut a = vec![0x90, 0x80, 0x7F, 0x00];
        rw.rewrite(&mut a);
        rw.switch_source();
        let mut b = vec![0x90, 0x80, 0x10, 0x00];
        rw.rewrite(&mut b);
        assert_eq!(b[2], 0x00, "127 + 1 wraps to 0 in 7 bits");
    }
}
