//! In-place translation of the media SSRCs named in feedback packets.
//!
//! A subscriber addresses its NACK/PLI/FIR to the SSRC it receives (the SFU's output
//! SSRC); before forwarding, the SFU rewrites them into the publisher's SSRC space.

use crate::error::RtcpError;
use crate::reader::{be_u32_at, write_at};

use super::packets::split_packet;
use super::{FMT_AFB, FMT_FIR, PT_PSFB, PT_RTPFB};

/// Rewrites every media SSRC in the RTPFB/PSFB packets of a compound datagram, in place:
/// the "media source" field, FIR entry SSRCs and REMB SSRC lists. `map` returns the new
/// SSRC, or `None` to leave one unchanged. Returns how many fields were rewritten.
///
/// On a malformed packet it stops with an error; packets before it are already rewritten.
pub fn rewrite_media_ssrc(
    buf: &mut [u8],
    mut map: impl FnMut(u32) -> Option<u32>,
) -> Result<usize, RtcpError> {
    let mut pos = 0;
    let mut rewritten = 0;
    let mut rewrite_at = |buf: &mut [u8], offset: usize| {
        if let Some(new) = be_u32_at(buf, offset).and_then(&mut map) {
            if write_at(buf, offset, &new.to_be_bytes()) {
                rewritten += 1;
            }
        }
    };
    while pos < buf.len() {
        let rest = buf.get(pos..).unwrap_or(&[]);
        let (header, body, total_len) = split_packet(rest)?;
        let body_len = body.len();
        let body_start = pos + 4;
        match (header.packet_type, header.count_or_fmt) {
            (PT_PSFB, FMT_FIR) => {
                let mut entry = 8;
                while entry + 8 <= body_len {
                    rewrite_at(buf, body_start + entry);
                    entry += 8;
                }
            }
            (PT_PSFB, FMT_AFB) if body.get(8..12) == Some(b"REMB") => {
                let count = usize::from(body.get(12).copied().unwrap_or(0));
                for i in 0..count {
                    let offset = 16 + 4 * i;
                    if offset + 4 <= body_len {
                        rewrite_at(buf, body_start + offset);
                    }
                }
            }
            (PT_PSFB | PT_RTPFB, _) if body_len >= 8 => rewrite_at(buf, body_start + 4),
            _ => {}
        }
        pos += total_len;
    }
    Ok(rewritten)
}
