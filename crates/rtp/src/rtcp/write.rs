//! RTCP builders. Each appends one packet to a caller-owned `Vec<u8>` that the caller
//! reuses, so steady-state feedback does not allocate.
//!
//! A compound packet (RFC 3550 section 6.1) is built by calling the writers in order into
//! the same buffer, starting with an SR or RR and usually followed by SDES CNAME. A
//! reduced-size packet (RFC 5506) is a single feedback packet written alone.

use super::packets::ReportBlock;
use super::PT_SR;
use super::{FMT_AFB, FMT_FIR, FMT_NACK, FMT_PLI, PT_BYE, PT_PSFB, PT_RR, PT_RTPFB, PT_SDES};

/// Most report blocks one SR or RR can carry (5-bit count field).
pub const MAX_REPORT_BLOCKS: usize = 31;

/// Most PID/BLP pairs written in one NACK, keeping it well inside one datagram.
const MAX_NACK_PAIRS: usize = 250;

/// Starts a packet: writes the common header with a zero length and returns its offset.
pub(crate) fn begin(out: &mut Vec<u8>, count_or_fmt: u8, packet_type: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0x80 | (count_or_fmt & 0x1F), packet_type, 0, 0]);
    start
}

/// Pads with zero bytes to a 32-bit boundary and fills in the length field.
pub(crate) fn finish(out: &mut Vec<u8>, start: usize) {
    while (out.len() - start) % 4 != 0 {
        out.push(0);
    }
    let words = ((out.len() - start) / 4).saturating_sub(1);
    let words = u16::try_from(words).unwrap_or(u16::MAX).to_be_bytes();
    if let Some(len_field) = out.get_mut(start + 2..start + 4) {
        len_field.copy_from_slice(&words);
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a PLI asking `media_ssrc` for a keyframe.
pub fn write_pli(sender_ssrc: u32, media_ssrc: u32, out: &mut Vec<u8>) {
    let start = begin(out, FMT_PLI, PT_PSFB);
    put_u32(out, sender_ssrc);
    put_u32(out, media_ssrc);
    finish(out, start);
}

/// Appends a FIR with one entry for `media_ssrc`; `seq` must increase for each new request
/// and stay the same for a retransmission of the same request (RFC 5104 section 4.3.1).
pub fn write_fir(sender_ssrc: u32, media_ssrc: u32, seq: u8, out: &mut Vec<u8>) {
    let start = begin(out, FMT_FIR, PT_PSFB);
    put_u32(out, sender_ssrc);
    put_u32(out, 0);
    put_u32(out, media_ssrc);
    out.extend_from_slice(&[seq, 0, 0, 0]);
    finish(out, start);
}

/// Appends a generic NACK for `lost`, packing runs into PID/BLP pairs (RFC 4585 6.2.1).
///
/// `lost` should be in ascending (wrap-aware) order for the tightest packing; any order
/// is still reported correctly. Returns how many entries of `lost` were consumed: at most
/// 250 pairs fit in one packet, so a caller with more calls again with the rest. Writes
/// nothing and returns 0 when `lost` is empty.
pub fn write_nack(sender_ssrc: u32, media_ssrc: u32, lost: &[u16], out: &mut Vec<u8>) -> usize {
    if lost.is_empty() {
        return 0;
    }
    let start = begin(out, FMT_NACK, PT_RTPFB);
    put_u32(out, sender_ssrc);
    put_u32(out, media_ssrc);
    let mut pairs = 0;
    let mut current: Option<(u16, u16)> = None;
    let mut consumed = 0;
    for &seq in lost {
        if let Some((pid, blp)) = current.as_mut() {
            let d = seq.wrapping_sub(*pid);
            if d == 0 {
                consumed += 1;
                continue;
            }
            if (1..=16).contains(&d) {
                *blp |= 1 << (d - 1);
                consumed += 1;
                continue;
            }
            if pairs == MAX_NACK_PAIRS {
                break;
            }
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&blp.to_be_bytes());
        }
        pairs += 1;
        current = Some((seq, 0));
        consumed += 1;
    }
    if let Some((pid, blp)) = current {
        out.extend_from_slice(&pid.to_be_bytes());
        out.extend_from_slice(&blp.to_be_bytes());
    }
    finish(out, start);
    consumed
}

/// Appends an RR with up to 31 of `blocks`; returns how many were written.
pub fn write_receiver_report(ssrc: u32, blocks: &[ReportBlock], out: &mut Vec<u8>) -> usize {
    let n = blocks.len().min(MAX_REPORT_BLOCKS);
    let start = begin(out, n as u8, PT_RR);
    put_u32(out, ssrc);
    for b in blocks.iter().take(n) {
        b.write(out);
    }
    finish(out, start);
    n
}

/// Appends an SR with up to 31 of `blocks`; returns how many were written.
///
/// `ntp` is the 64-bit NTP time (seconds since 1900 in the high half) corresponding to
/// `rtp_timestamp` in this stream's clock.
pub fn write_sender_report(
    ssrc: u32,
    ntp: u64,
    rtp_timestamp: u32,
    packet_count: u32,
    octet_count: u32,
    blocks: &[ReportBlock],
    out: &mut Vec<u8>,
) -> usize {
    let n = blocks.len().min(MAX_REPORT_BLOCKS);
    let start = begin(out, n as u8, PT_SR);
    put_u32(out, ssrc);
    out.extend_from_slice(&ntp.to_be_bytes());
    put_u32(out, rtp_timestamp);
    put_u32(out, packet_count);
    put_u32(out, octet_count);
    for b in blocks.iter().take(n) {
        b.write(out);
    }
    finish(out, start);
    n
}

/// Appends an SDES packet with one chunk carrying the CNAME (truncated to 255 bytes).
pub fn write_sdes_cname(ssrc: u32, cname: &[u8], out: &mut Vec<u8>) {
    let cname = cname.get(..cname.len().min(255)).unwrap_or(&[]);
    let start = begin(out, 1, PT_SDES);
    put_u32(out, ssrc);
    out.push(1);
    out.push(cname.len() as u8);
    out.extend_from_slice(cname);
    // the item list ends with at least one zero byte, then pads to 32 bits with zeros
    out.push(0);
    finish(out, start);
}

/// Appends a BYE for `ssrc` without a reason.
pub fn write_bye(ssrc: u32, out: &mut Vec<u8>) {
    let start = begin(out, 1, PT_BYE);
    put_u32(out, ssrc);
    finish(out, start);
}

/// Appends a REMB (PSFB FMT 15, "REMB") announcing `bitrate_bps` for up to 255 `ssrcs`.
///
/// The bitrate is encoded as an 18-bit mantissa and 6-bit exponent, rounded down.
pub fn write_remb(sender_ssrc: u32, bitrate_bps: u64, ssrcs: &[u32], out: &mut Vec<u8>) {
    let n = ssrcs.len().min(255);
    let mut exponent = 0u32;
    let mut mantissa = bitrate_bps;
    while mantissa >= 1 << 18 {
        mantissa >>= 1;
        exponent += 1;
    }
    let start = begin(out, FMT_AFB, PT_PSFB);
    put_u32(out, sender_ssrc);
    put_u32(out, 0);
    out.extend_from_slice(b"REMB");
    out.push(n as u8);
    let exp_mantissa = (exponent << 18) | mantissa as u32;
    out.extend_from_slice(&exp_mantissa.to_be_bytes()[1..]);
    for &s in ssrcs.iter().take(n) {
        put_u32(out, s);
    }
    finish(out, start);
}
