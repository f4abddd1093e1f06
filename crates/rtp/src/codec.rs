//! Keyframe detection from RTP payloads, so the SFU can start (or switch) a subscriber's
//! video at a point its decoder can use.

use crate::reader::Reader;

/// The codecs the SFU distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Opus audio.
    Opus,
    /// VP8 video (RFC 7741).
    Vp8,
    /// VP9 video (RFC 9628, formerly draft-ietf-payload-vp9).
    Vp9,
    /// H.264 video, packetization mode 1 (RFC 6184).
    H264,
    /// Anything else.
    Other,
}

/// Whether `payload` starts a keyframe.
///
/// Audio has no keyframes: every Opus packet decodes on its own, so `Opus` is always true.
/// `Other` is always false. Malformed payloads are never keyframes.
pub fn is_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Opus => true,
        Codec::Vp8 => vp8_keyframe(payload).unwrap_or(false),
        Codec::Vp9 => vp9_keyframe(payload).unwrap_or(false),
        Codec::H264 => h264_keyframe(payload).unwrap_or(false),
        Codec::Other => false,
    }
}

/// RFC 7741 section 4.2 payload descriptor, then the VP8 frame tag (RFC 6386 9.1).
fn vp8_keyframe(payload: &[u8]) -> Option<bool> {
    let mut r = Reader::new(payload);
    let b0 = r.u8()?;
    let extended = b0 & 0x80 != 0;
    let start_of_partition = b0 & 0x10 != 0;
    let partition_index = b0 & 0x07;
    if extended {
        let x = r.u8()?;
        if x & 0x80 != 0 {
            // I: PictureID, 7 or 15 bits (M bit)
            let p = r.u8()?;
            if p & 0x80 != 0 {
                r.skip(1)?;
            }
        }
        if x & 0x40 != 0 {
            r.skip(1)?; // L: TL0PICIDX
        }
        if x & 0x30 != 0 {
            r.skip(1)?; // T or K: TID/Y/KEYIDX
        }
    }
    let tag = r.u8()?;
    // P bit (inverse key frame flag) is bit 0 of the frame tag: 0 = keyframe.
    Some(start_of_partition && partition_index == 0 && tag & 0x01 == 0)
}

/// RFC 9628 section 4.2 payload descriptor.
fn vp9_keyframe(payload: &[u8]) -> Option<bool> {
    let mut r = Reader::new(payload);
    let b0 = r.u8()?;
    let has_picture_id = b0 & 0x80 != 0;
    let inter_picture_predicted = b0 & 0x40 != 0;
    let has_layer_indices = b0 & 0x20 != 0;
    let flexible = b0 & 0x10 != 0;
    let start_of_frame = b0 & 0x08 != 0;
    if has_picture_id {
        let p = r.u8()?;
        if p & 0x80 != 0 {
            r.skip(1)?;
        }
    }
    let mut spatial_id = 0;
    if has_layer_indices {
        let l = r.u8()?;
        spatial_id = (l >> 1) & 0x07;
        if !flexible {
            r.skip(1)?; // TL0PICIDX
        }
    }
    // A keyframe starts at the base spatial layer's first packet with no inter-picture
    // prediction; there must be payload after the descriptor.
    Some(!inter_picture_predicted && start_of_frame && spatial_id == 0 && r.remaining() > 0)
}

/// NAL unit types that start a decodable point: IDR slice and SPS. Browsers send the SPS
/// (in a STAP-A with the PPS) in the packet before the IDR, so switching there keeps the
/// parameter sets.
fn h264_starts_keyframe(nal_type: u8) -> bool {
    nal_type == 5 || nal_type == 7
}

/// RFC 6184 section 5: single NAL unit, STAP-A (24) and FU-A (28) packets.
fn h264_keyframe(payload: &[u8]) -> Option<bool> {
    let mut r = Reader::new(payload);
    let nal_type = r.u8()? & 0x1F;
    match nal_type {
        24 => {
            while r.remaining() > 0 {
                let size = usize::from(r.u16()?);
                let nal = r.take(size)?;
                if nal.first().is_some_and(|b| h264_starts_keyframe(b & 0x1F)) {
                    return Some(true);
                }
            }
            Some(false)
        }
        28 => {
            let fu = r.u8()?;
            let start = fu & 0x80 != 0;
            Some(start && h264_starts_keyframe(fu & 0x1F))
        }
        1..=23 => Some(h264_starts_keyframe(nal_type)),
        _ => Some(false),
    }
}
