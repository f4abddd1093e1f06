//! Forward error correction for video toward subscribers whose link loses packets
//! (RFC 5109 ULPFEC inside RFC 2198 RED, as WebRTC receivers take it).
//!
//! A lost video packet costs a NACK and a retransmission, one round trip or more, and the
//! picture waits for it; past a few percent of loss some retransmissions are lost too and
//! the picture freezes until a keyframe. A parity packet after every few media packets
//! lets the receiver rebuild one lost packet of the group at once.
//!
//! How the router does it, per subscriber and video subscription whose answer accepted
//! RED and ULPFEC, while the subscriber's measured loss is above the threshold:
//!
//! - every video packet to it is wrapped in RED (one block), after the rewrite;
//! - after every `interval` of them the stream rewriter takes the next sequence number
//!   for a FEC packet ([`StreamRewriter::insert`](sluice_rtp::StreamRewriter::insert)), so
//!   the numbering stays gap-free and a NACK for that number maps to no media packet;
//!   a placeholder carrying that number (the last media packet's header, RED block
//!   [`PT_ULPFEC`], zeros for the expected size) is queued behind the media packets, so
//!   it is paced like video;
//! - the parity is computed when the packets leave (the pacer, or at once without one),
//!   over the media packets exactly as the receiver will rebuild them: as they left, with
//!   their transport-wide sequence number and send time, RED unwrapped. This module keeps
//!   those copies per stream ([`FecEncoder`]) and fills the placeholder from them.
//!
//! A placeholder whose packets never left (dropped in the pacer as late video) leaves as
//! padding, which receivers take as a number to skip, not a loss.

use std::time::{Duration, Instant};

use sluice_rtp::ulpfec::{write_fec_payload, MAX_PROTECTED_PACKETS};
use sluice_rtp::RtpHeader;

use crate::media::{PT_RED_VIDEO, PT_ULPFEC};
use crate::stats::RouterStats;

/// Fewest media packets per FEC packet (the most protection, 20 % more packets).
pub(crate) const MIN_FEC_INTERVAL: u8 = 5;
/// Most media packets per FEC packet (the least protection, 10 % more packets).
pub(crate) const MAX_FEC_INTERVAL: u8 = 10;
/// FEC is reduced or turned off only after the loss stayed lower this long, so a link
/// that loses in bursts keeps its protection between them.
const FEC_OFF_AFTER: Duration = Duration::from_secs(10);
/// Packets remembered per stream for the next FEC packet: twice the largest interval,
/// for a placeholder that was dropped in the pacer (its packets join the next group).
const MAX_GROUP_PACKETS: usize = 2 * MAX_FEC_INTERVAL as usize;
/// Streams one subscriber has FEC state for; the oldest is forgotten beyond it.
const MAX_STREAMS: usize = 16;
/// Longest packet kept for FEC (larger than any datagram a worker reads): a longer one is
/// left out of the protection rather than held, which bounds what a subscriber's FEC
/// state can hold to [`MAX_STREAMS`] x [`MAX_GROUP_PACKETS`] x this.
const MAX_RECORDED_BYTES: usize = 2048;
/// Octets a FEC packet adds to the longest packet it protects: RED block header, FEC
/// header, long level header (at most).
pub(crate) const FEC_OVERHEAD_BYTES: usize = 1 + 10 + 8;

/// Media packets per FEC packet for a subscriber whose link loses `loss` of its
/// packets: one FEC packet per about `1 / (2 x loss)` packets (a group rarely loses two),
/// within [`MIN_FEC_INTERVAL`]..=[`MAX_FEC_INTERVAL`].
fn interval_for(loss: f64) -> u8 {
    if loss <= 0.0 || !loss.is_finite() {
        return MAX_FEC_INTERVAL;
    }
    let interval = (0.5 / loss).ceil();
    interval.clamp(f64::from(MIN_FEC_INTERVAL), f64::from(MAX_FEC_INTERVAL)) as u8
}

/// The FEC interval (media packets per FEC packet, 0: off) for a subscriber whose
/// feedback reports `loss`, given its `current` interval. More protection comes at once;
/// less only after [`FEC_OFF_AFTER`] of lower loss, and FEC stays on while the loss is
/// at least half the threshold (both, so that it does not flap at the edge). Returns the
/// interval and since when less protection has been wanted.
pub(crate) fn fec_decision(
    threshold: Option<f64>,
    loss: Option<f64>,
    current: u8,
    quiet_since: Option<Instant>,
    now: Instant,
) -> (u8, Option<Instant>) {
    let Some(threshold) = threshold else {
        return (0, None);
    };
    let loss = loss.unwrap_or(0.0);
    let wanted = if loss >= threshold {
        interval_for(loss)
    } else {
        0
    };
    let stronger_or_same = match (current, wanted) {
        (0, _) => true,
        (_, 0) => false,
        (c, w) => w <= c,
    };
    if stronger_or_same {
        return (wanted, None);
    }
    if wanted == 0 && loss >= threshold / 2.0 {
        // within the band: keep what it has, and the off timer does not run
        return (current, None);
    }
    crate::allocation::step_down_after(FEC_OFF_AFTER, current, wanted, quiet_since, now)
}

/// Builds the placeholder of a FEC packet from `media` (a video packet just sent in RED
/// to the subscriber): its header with sequence number `seq`, no marker and no padding,
/// RED block [`PT_ULPFEC`], and zeros up to `expected_len` so the pacer counts about the
/// size the FEC packet will have. `None` when `media` is not RTP.
pub(crate) fn placeholder(out: &mut Vec<u8>, media: &[u8], seq: u16, expected_len: usize) -> bool {
    let Ok(h) = RtpHeader::parse(media) else {
        return false;
    };
    let Some(header) = media.get(..h.header_len()) else {
        return false;
    };
    out.clear();
    out.extend_from_slice(header);
    if let Some(first) = out.first_mut() {
        *first &= !0x20; // no padding
    }
    if let Some(second) = out.get_mut(1) {
        *second = PT_RED_VIDEO & 0x7F; // no marker
    }
    sluice_rtp::set_sequence_number(out, seq);
    out.push(PT_ULPFEC);
    if out.len() < expected_len {
        out.resize(expected_len, 0);
    }
    true
}

/// An RTP packet without payload for output sequence number `seq` of `ssrc`, payload
/// type [`PT_RED_VIDEO`], with room for the transport-wide sequence number and send time
/// (stamped when it leaves): what a lost FEC packet's number is answered with, as RTX,
/// when the subscriber NACKs it. Its receiver takes an empty packet as padding and stops
/// asking for the number; the FEC packet itself is not kept and would come too late.
pub(crate) fn write_empty(out: &mut Vec<u8>, ssrc: u32, seq: u16, timestamp: u32) {
    out.clear();
    out.extend_from_slice(&[0x90, PT_RED_VIDEO & 0x7F]);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    // one-byte extensions: transport-cc (2 bytes), abs-send-time (3 bytes), 1 byte pad
    out.extend_from_slice(&[0xBE, 0xDE, 0, 2]);
    out.extend_from_slice(&[(crate::media::EXT_TRANSPORT_CC << 4) | 1, 0, 0]);
    out.extend_from_slice(&[(crate::media::EXT_ABS_SEND_TIME << 4) | 2, 0, 0, 0, 0]);
}

/// What a packet leaving toward a subscriber is, for FEC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaving {
    /// Not ours to look at (audio, plain video, RTX, padding).
    Other,
    /// Video in RED: to remember, once stamped, for the next FEC packet of its stream.
    Media,
    /// A FEC placeholder: filled now.
    Fec,
}

/// One stream's packets sent since its last FEC packet, as the receiver rebuilds them.
#[derive(Debug, Default)]
struct Group {
    ssrc: u32,
    /// The first `len` are in use; the rest are buffers kept for reuse.
    packets: Vec<Vec<u8>>,
    len: usize,
}

/// Per subscriber: the media packets of each of its FEC-protected streams since their
/// last FEC packet (bounded: [`MAX_STREAMS`] streams of [`MAX_GROUP_PACKETS`] packets).
#[derive(Debug, Default)]
pub(crate) struct FecEncoder {
    groups: Vec<Group>,
}

impl FecEncoder {
    /// Forgets every stream (FEC was turned off for the subscriber).
    pub(crate) fn clear(&mut self) {
        self.groups.clear();
    }

    /// Classifies a packet about to leave; a FEC placeholder is filled with the parity of
    /// its stream's packets that left since the last one (or turned into padding when
    /// none did). Call before the packet is stamped, so its stamped size is its size.
    pub(crate) fn before_leaving(
        &mut self,
        packet: &mut Vec<u8>,
        stats: &mut RouterStats,
    ) -> Leaving {
        let Ok(h) = RtpHeader::parse(packet) else {
            return Leaving::Other;
        };
        if h.payload_type() != PT_RED_VIDEO {
            return Leaving::Other;
        }
        let (ssrc, seq, header_len) = (h.ssrc(), h.sequence_number(), h.header_len());
        match h.payload().first() {
            Some(&PT_ULPFEC) => {}
            Some(&block) if block & 0x80 == 0 => return Leaving::Media,
            _ => return Leaving::Other,
        }
        packet.truncate(header_len + 1);
        let group = self.groups.iter_mut().find(|g| g.ssrc == ssrc);
        let written = group.is_some_and(|g| {
            // only packets the mask can name: the 48 numbers before the FEC packet's
            let protected: Vec<&[u8]> = g
                .packets
                .iter()
                .take(g.len)
                .filter(|p| {
                    p.get(2..4)
                        .and_then(|s| <[u8; 2]>::try_from(s).ok())
                        .is_some_and(|s| {
                            let distance = seq.wrapping_sub(u16::from_be_bytes(s));
                            (1..=MAX_PROTECTED_PACKETS as u16).contains(&distance)
                        })
                })
                .map(Vec::as_slice)
                .collect();
            let ok = !protected.is_empty() && write_fec_payload(packet, &protected).is_ok();
            g.len = 0;
            ok
        });
        if written {
            stats.fec_packets_sent += 1;
        } else {
            // nothing to protect: padding, so the number is not taken for a loss
            packet.truncate(header_len);
            if let Some(first) = packet.first_mut() {
                *first |= 0x20;
            }
            packet.push(1);
            stats.fec_padding_sent += 1;
        }
        Leaving::Fec
    }

    /// Remembers a video packet in RED as it left (stamped), unwrapped as the receiver
    /// rebuilds it for FEC: the RED block header removed, its payload type in the header.
    pub(crate) fn record(&mut self, packet: &[u8]) {
        if packet.len() > MAX_RECORDED_BYTES {
            return; // not protected: the FEC packet's mask leaves it out
        }
        let Ok(h) = RtpHeader::parse(packet) else {
            return;
        };
        let header_len = h.header_len();
        let (Some(header), Some(&block), Some(rest)) = (
            packet.get(..header_len),
            packet.get(header_len),
            packet.get(header_len + 1..),
        ) else {
            return;
        };
        let ssrc = h.ssrc();
        let index = match self.groups.iter().position(|g| g.ssrc == ssrc) {
            Some(i) => i,
            None => {
                if self.groups.len() >= MAX_STREAMS {
                    self.groups.remove(0);
                }
                self.groups.push(Group {
                    ssrc,
                    ..Group::default()
                });
                self.groups.len() - 1
            }
        };
        let Some(group) = self.groups.get_mut(index) else {
            return;
        };
        if group.len >= MAX_GROUP_PACKETS {
            // the oldest goes (its FEC packet never left); its buffer is reused
            if let Some(used) = group.packets.get_mut(..group.len) {
                used.rotate_left(1);
            }
            group.len -= 1;
        }
        if group.packets.len() <= group.len {
            group.packets.push(Vec::with_capacity(packet.len()));
        }
        let Some(buf) = group.packets.get_mut(group.len) else {
            return;
        };
        buf.clear();
        buf.extend_from_slice(header);
        if let Some(pt) = buf.get_mut(1) {
            *pt = (*pt & 0x80) | (block & 0x7F);
        }
        buf.extend_from_slice(rest);
        group.len += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A video packet in RED as the router sends it: ssrc 7, `seq`, one byte of payload.
    fn red_media(seq: u16, len: usize) -> Vec<u8> {
        let mut p = vec![0x80, PT_RED_VIDEO];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 7, 96]);
        p.resize(p.len() + len, seq as u8);
        p
    }

    #[test]
    fn a_placeholder_without_packets_leaves_as_padding_and_groups_stay_bounded() {
        let mut stats = RouterStats::default();
        let mut fec = FecEncoder::default();
        let mut lone = Vec::new();
        assert!(placeholder(&mut lone, &red_media(10, 5), 11, 40));
        assert_eq!(lone.len(), 40, "sized for the pacer");
        assert_eq!(fec.before_leaving(&mut lone, &mut stats), Leaving::Fec);
        let h = RtpHeader::parse(&lone).unwrap();
        assert!(
            h.payload().is_empty() && h.sequence_number() == 11,
            "padding"
        );
        assert_eq!(stats.fec_padding_sent, 1);
        // packets whose placeholder never left: the oldest go beyond the bound
        for seq in 0..(MAX_GROUP_PACKETS as u16 + 5) {
            let mut p = red_media(100 + seq, 50);
            assert_eq!(fec.before_leaving(&mut p, &mut stats), Leaving::Media);
            fec.record(&p);
        }
        fec.record(&red_media(999, MAX_RECORDED_BYTES)); // too long to keep
        assert_eq!(fec.groups.len(), 1);
        assert_eq!(fec.groups[0].len, MAX_GROUP_PACKETS);
        let mut p = Vec::new();
        assert!(placeholder(&mut p, &red_media(124, 5), 125, 0));
        assert_eq!(fec.before_leaving(&mut p, &mut stats), Leaving::Fec);
        assert_eq!(stats.fec_packets_sent, 1);
        let h = RtpHeader::parse(&p).unwrap();
        // the FEC header's base is the oldest packet kept: 100 + 5
        assert_eq!(h.payload()[0], PT_ULPFEC);
        assert_eq!(&h.payload()[3..5], &105u16.to_be_bytes());
        assert_eq!(fec.groups[0].len, 0, "the group starts over");
    }

    #[test]
    fn the_interval_follows_the_loss_within_its_bounds() {
        assert_eq!(interval_for(0.0), MAX_FEC_INTERVAL);
        assert_eq!(interval_for(0.03), MAX_FEC_INTERVAL);
        assert_eq!(interval_for(0.07), 8);
        assert_eq!(interval_for(0.10), 5);
        assert_eq!(interval_for(0.30), MIN_FEC_INTERVAL);
    }

    #[test]
    fn fec_comes_at_once_and_goes_only_after_a_quiet_spell_below_half_the_threshold() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let on = Some(0.03);
        assert_eq!(fec_decision(None, Some(0.5), 0, None, t0), (0, None));
        assert_eq!(fec_decision(on, Some(0.02), 0, None, t0), (0, None));
        assert_eq!(fec_decision(on, Some(0.04), 0, None, t0), (10, None));
        assert_eq!(fec_decision(on, Some(0.15), 10, None, t0), (5, None));
        // loss just under the threshold but above half of it: stays, no timer
        assert_eq!(fec_decision(on, Some(0.02), 5, None, at(1)), (5, None));
        // lower loss: the stronger protection stays 10 s
        let (i, quiet) = fec_decision(on, Some(0.0), 5, None, at(2));
        assert_eq!((i, quiet), (5, Some(at(2))));
        assert_eq!(fec_decision(on, Some(0.01), 5, quiet, at(8)), (5, quiet));
        // loss back: the timer starts over
        assert_eq!(fec_decision(on, Some(0.12), 5, quiet, at(9)), (5, None));
        let (_, quiet) = fec_decision(on, Some(0.04), 5, None, at(10));
        assert_eq!(quiet, Some(at(10)));
        assert_eq!(fec_decision(on, Some(0.04), 5, quiet, at(20)), (10, None));
        let (_, quiet) = fec_decision(on, Some(0.0), 10, None, at(21));
        assert_eq!(fec_decision(on, Some(0.0), 10, quiet, at(31)), (0, None));
    }
}
