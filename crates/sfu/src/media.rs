//! Sluice's fixed media table (payload types and header extension ids, identical for every
//! participant; see docs/signaling.md) and the in-place packet edits the router makes.

use std::time::Duration;

use sluice_rtp::{
    set_extension, set_payload_type, set_sequence_number, set_ssrc, Codec, RtpHeader,
    ONE_BYTE_EXTENSION_PROFILE,
};

/// Header extension id of `urn:ietf:params:rtp-hdrext:sdes:mid`.
pub const EXT_MID: u8 = 1;
/// Header extension id of abs-send-time.
pub const EXT_ABS_SEND_TIME: u8 = 2;
/// Header extension id of transport-wide-cc (a 16-bit transport sequence number).
pub const EXT_TRANSPORT_CC: u8 = 3;
/// Header extension id of the client-to-mixer audio level (RFC 6464).
pub const EXT_AUDIO_LEVEL: u8 = 4;
/// Header extension id of `urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id` (the RID that
/// names a simulcast encoding).
pub const EXT_RID: u8 = 5;
/// Header extension id of `urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id` (the
/// RID of the encoding an RTX stream repairs).
pub const EXT_REPAIRED_RID: u8 = 6;
/// An id no m-line negotiates: a MID that cannot be rewritten in place is renamed to it,
/// so receivers skip the element instead of demultiplexing on a foreign MID.
pub const HIDDEN_EXTENSION_ID: u8 = 14;

/// Opus payload type.
pub const PT_OPUS: u8 = 111;
/// Opus with redundancy (RFC 2198 RED) in the server's fixed payload table.
pub const PT_RED_AUDIO: u8 = 63;
/// Video in RED (RFC 2198), the container ULPFEC needs, in the server's fixed table.
pub const PT_RED_VIDEO: u8 = 116;
/// Retransmissions (RTX) of video packets sent in RED.
pub const PT_RED_VIDEO_RTX: u8 = 117;
/// ULPFEC (RFC 5109), carried inside RED.
pub const PT_ULPFEC: u8 = 118;
/// VP8 payload type (RTX 97).
pub const PT_VP8: u8 = 96;
/// VP9 payload type (RTX 99).
pub const PT_VP9: u8 = 98;
/// H264 payload type (RTX 103).
pub const PT_H264: u8 = 102;

/// The codec a (non-RTX) payload type carries.
pub fn codec_of(payload_type: u8) -> Codec {
    match payload_type {
        PT_OPUS => Codec::Opus,
        PT_VP8 => Codec::Vp8,
        PT_VP9 => Codec::Vp9,
        PT_H264 => Codec::H264,
        _ => Codec::Other,
    }
}

/// The RTX payload type paired with a video payload type (`a=fmtp:<rtx> apt=<media>`).
pub fn rtx_payload_type(media_payload_type: u8) -> Option<u8> {
    match media_payload_type {
        PT_VP8 | PT_VP9 | PT_H264 => Some(media_payload_type + 1),
        _ => None,
    }
}

/// The media payload type an RTX payload type retransmits.
pub fn media_payload_type(rtx_payload_type: u8) -> Option<u8> {
    match rtx_payload_type {
        97 | 99 | 103 => Some(rtx_payload_type - 1),
        _ => None,
    }
}

/// Rebuilds the original packet from an RFC 4588 RTX packet into `out` (cleared first):
/// the original sequence number comes back from the first two payload bytes, the SSRC and
/// payload type become the media stream's, RTX padding is dropped. Returns false (and
/// leaves `out` unspecified) for an unparseable packet, an unknown RTX payload type, or
/// padding-only probes without an OSN.
pub fn unwrap_rtx(rtx: &[u8], media_ssrc: u32, out: &mut Vec<u8>) -> bool {
    let Ok(h) = RtpHeader::parse(rtx) else {
        return false;
    };
    let Some(media_pt) = media_payload_type(h.payload_type()) else {
        return false;
    };
    let payload = h.payload();
    let (Some(osn), Some(original_payload), Some(header)) = (
        payload.get(..2),
        payload.get(2..),
        rtx.get(..h.header_len()),
    ) else {
        return false;
    };
    let osn = u16::from_be_bytes([
        osn.first().copied().unwrap_or(0),
        osn.get(1).copied().unwrap_or(0),
    ]);
    out.clear();
    out.extend_from_slice(header);
    out.extend_from_slice(original_payload);
    if let Some(b0) = out.first_mut() {
        *b0 &= !0x20;
    }
    set_ssrc(out, media_ssrc) && set_sequence_number(out, osn) && set_payload_type(out, media_pt)
}

/// Makes a forwarded packet's `sdes:mid` name the subscriber's m-line: overwritten when
/// `mid` has the same length, otherwise the element is renamed to
/// [`HIDDEN_EXTENSION_ID`] (extensions are never resized in place). No-op without the
/// extension.
pub fn rewrite_mid(buf: &mut [u8], mid: &[u8]) {
    let len = match RtpHeader::parse(buf) {
        Ok(h) => h.extension(EXT_MID).map(<[u8]>::len),
        Err(_) => return,
    };
    match len {
        Some(len) if len == mid.len() && set_extension(buf, EXT_MID, mid) => {}
        Some(_) => hide_extension(buf, EXT_MID),
        None => {}
    }
}

/// Renames header extension `id` of a packet to [`HIDDEN_EXTENSION_ID`], so receivers
/// skip it: a simulcast encoding's RID means nothing on the subscriber's m-line and must
/// not steer its demultiplexing. No-op without the extension.
pub fn hide_extension(buf: &mut [u8], id: u8) {
    let (range, profile) = match RtpHeader::parse(buf) {
        Ok(h) => (h.extension_range(id), h.extension_profile()),
        Err(_) => return,
    };
    let Some((offset, _)) = range else {
        return;
    };
    if profile == Some(ONE_BYTE_EXTENSION_PROFILE) {
        // one-byte form: the element header is the byte before the data, id in its high nibble
        if let Some(b) = offset.checked_sub(1).and_then(|i| buf.get_mut(i)) {
            *b = (HIDDEN_EXTENSION_ID << 4) | (*b & 0x0F);
        }
    } else if let Some(b) = offset.checked_sub(2).and_then(|i| buf.get_mut(i)) {
        // two-byte form: id byte, then length byte, then data
        *b = HIDDEN_EXTENSION_ID;
    }
}

/// abs-send-time (6.18 fixed-point seconds, 24 bits, wrapping every 64 s) for a send time
/// `since_epoch` after an arbitrary fixed epoch; only differences matter to receivers.
pub fn abs_send_time(since_epoch: Duration) -> [u8; 3] {
    let v = (since_epoch.as_nanos() << 18) / 1_000_000_000;
    let v = (v & 0x00FF_FFFF) as u32;
    let b = v.to_be_bytes();
    [b[1], b[2], b[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ext(ext: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x90, 96, 0, 5, 0, 0, 0, 9, 0, 0, 0, 7, 0xBE, 0xDE];
        let words = ext.len().div_ceil(4);
        p.extend_from_slice(&(words as u16).to_be_bytes());
        p.extend_from_slice(ext);
        p.resize(16 + 4 * words, 0);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn mid_of_equal_length_is_overwritten() {
        let mut p = with_ext(&[0x10, b'1', 0x31, 0, 7], &[1, 2]);
        rewrite_mid(&mut p, b"3");
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.extension(EXT_MID), Some(&b"3"[..]));
        assert_eq!(h.extension(EXT_TRANSPORT_CC), Some(&[0, 7][..]));
    }

    #[test]
    fn mid_of_other_length_is_hidden_and_other_extensions_survive() {
        let mut p = with_ext(&[0x10, b'1', 0x31, 0, 7], &[1, 2]);
        rewrite_mid(&mut p, b"12");
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.extension(EXT_MID), None);
        assert_eq!(h.extension(HIDDEN_EXTENSION_ID), Some(&b"1"[..]));
        assert_eq!(h.extension(EXT_TRANSPORT_CC), Some(&[0, 7][..]));
        assert_eq!(h.payload(), &[1, 2]);
    }

    #[test]
    fn rtx_is_unwrapped_to_original_sequence_ssrc_and_payload_type() {
        let mut rtx = vec![0x80, 97, 0, 1, 0, 0, 0, 9, 0, 0, 0, 8];
        rtx.extend_from_slice(&[0x12, 0x34, 0xAA]);
        let mut out = Vec::new();
        assert!(unwrap_rtx(&rtx, 0x77, &mut out));
        let h = RtpHeader::parse(&out).unwrap();
        assert_eq!(
            (h.ssrc(), h.sequence_number(), h.payload_type(), h.payload()),
            (0x77, 0x1234, 96, &[0xAA][..])
        );
    }

    #[test]
    fn rtx_padding_probe_without_osn_is_not_unwrapped() {
        let rtx = [0xA0, 97, 0, 1, 0, 0, 0, 9, 0, 0, 0, 8, 0, 0, 0, 4];
        assert!(!unwrap_rtx(&rtx, 0x77, &mut Vec::new()));
    }

    #[test]
    fn abs_send_time_wraps_at_64_seconds() {
        assert_eq!(abs_send_time(Duration::from_secs(1)), [0x04, 0x00, 0x00]);
        assert_eq!(abs_send_time(Duration::from_secs(65)), [0x04, 0x00, 0x00]);
    }
}
