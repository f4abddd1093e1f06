//! Forward error correction for video by parity (RFC 5109, "ULPFEC" as WebRTC uses it).
//!
//! A retransmission repairs a loss one round trip later; on a long or very lossy path that
//! is a frozen picture. A parity packet sent right after a group of media packets lets the
//! receiver rebuild any one packet of the group at once: it is the XOR of the group's
//! headers' variable fields, their lengths and their bytes after the fixed header. WebRTC
//! receivers take it inside RED (RFC 2198) on the media stream's own SSRC and sequence
//! numbers, which is why the SFU can add it per subscriber without any new stream.
//!
//! This module builds the FEC payload (what follows the RED block header) from packets as
//! they are sent, and rebuilds a missing packet from it, for receivers that check the
//! server's output (the load generator, tests). Only level 0 is written (the whole packet
//! protected); the reader accepts any number of levels but uses level 0 alone.

use crate::header::RTP_FIXED_HEADER_LEN;

/// Octets of the FEC header (RFC 5109 section 7.3).
pub const FEC_HEADER_LEN: usize = 10;
/// Most packets one FEC packet protects: the long mask has 48 bits.
pub const MAX_PROTECTED_PACKETS: usize = 48;
/// Packets the short (16-bit) mask can name.
const SHORT_MASK_PACKETS: usize = 16;
/// The L bit of the FEC header: the level headers carry the long mask.
const LONG_MASK_BIT: u8 = 0x40;

/// Why a FEC payload was not written or a packet not recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FecError {
    /// No packet, or more than [`MAX_PROTECTED_PACKETS`] packets to protect.
    #[error("a FEC packet protects 1 to 48 packets")]
    GroupSize,
    /// A packet shorter than an RTP header, or longer than a 16-bit length describes.
    #[error("not an RTP packet of a length FEC can describe")]
    NotRtp,
    /// Two packets with the same sequence number, or numbers 48 or more apart.
    #[error("the packets' sequence numbers do not fit one mask")]
    Span,
    /// The FEC payload is shorter than its headers say.
    #[error("truncated FEC payload")]
    Truncated,
    /// None, or more than one, of the protected packets is missing.
    #[error("not exactly one protected packet is missing")]
    NotOneMissing,
    /// A received packet is longer than the protection covers, or the recovered length
    /// exceeds it: the FEC packet does not belong to these packets.
    #[error("the FEC packet does not match the packets received")]
    Mismatch,
}

/// Appends the FEC payload protecting `packets` (whole RTP packets exactly as sent,
/// before SRTP; any order) to `out`: the FEC header, one level header and the parity of
/// the packets' bytes after the fixed header. Nothing is appended on error.
pub fn write_fec_payload(out: &mut Vec<u8>, packets: &[&[u8]]) -> Result<(), FecError> {
    let first = packets.first().ok_or(FecError::GroupSize)?;
    if packets.len() > MAX_PROTECTED_PACKETS {
        return Err(FecError::GroupSize);
    }
    let base = packets.iter().map(|p| sequence_number(p)).try_fold(
        sequence_number(first)?,
        |base, seq| {
            let seq = seq?;
            // the base is the oldest: the one the others lie ahead of by less than 2^15
            Ok(if seq.wrapping_sub(base) >= 0x8000 {
                seq
            } else {
                base
            })
        },
    )?;
    let mut mask: u64 = 0;
    let mut protection_len = 0;
    let mut recovery = [0_u8; 8];
    let mut length_recovery: u16 = 0;
    for packet in packets {
        let offset = usize::from(sequence_number(packet)?.wrapping_sub(base));
        let bit = 1_u64
            << (MAX_PROTECTED_PACKETS - 1)
                .checked_sub(offset)
                .ok_or(FecError::Span)?;
        if mask & bit != 0 {
            return Err(FecError::Span);
        }
        mask |= bit;
        let body_len = packet.len() - RTP_FIXED_HEADER_LEN;
        length_recovery ^= u16::try_from(body_len).map_err(|_| FecError::NotRtp)?;
        protection_len = protection_len.max(body_len);
        xor_into(&mut recovery[..2], packet.get(..2).unwrap_or_default());
        xor_into(&mut recovery[4..8], packet.get(4..8).unwrap_or_default());
    }
    let long = mask & ((1 << (MAX_PROTECTED_PACKETS - SHORT_MASK_PACKETS)) - 1) != 0;
    let start = out.len();
    out.push((recovery[0] & 0x3F) | if long { LONG_MASK_BIT } else { 0 });
    out.push(recovery[1]);
    out.extend_from_slice(&base.to_be_bytes());
    out.extend_from_slice(&recovery[4..8]);
    out.extend_from_slice(&length_recovery.to_be_bytes());
    // protection_len fits: every body length did
    out.extend_from_slice(&(protection_len as u16).to_be_bytes());
    let mask_bytes = mask.to_be_bytes();
    out.extend_from_slice(
        mask_bytes
            .get(2..if long { 8 } else { 4 })
            .unwrap_or_default(),
    );
    let payload_start = out.len();
    out.resize(payload_start + protection_len, 0);
    if let Some(parity) = out.get_mut(payload_start..) {
        for packet in packets {
            xor_into(
                parity,
                packet.get(RTP_FIXED_HEADER_LEN..).unwrap_or_default(),
            );
        }
    } else {
        out.truncate(start);
        return Err(FecError::Truncated);
    }
    Ok(())
}

/// Rebuilds the one protected packet missing from `received` (any packets of the stream;
/// those the FEC packet does not protect are ignored) from `fec_payload` (the FEC packet's
/// payload after its RED block header), with `ssrc` (the FEC packet's own), into `out`
/// (cleared first). Returns the recovered packet's sequence number.
pub fn recover(
    out: &mut Vec<u8>,
    fec_payload: &[u8],
    ssrc: u32,
    received: &[&[u8]],
) -> Result<u16, FecError> {
    let header = fec_payload
        .get(..FEC_HEADER_LEN)
        .ok_or(FecError::Truncated)?;
    let long = header.first().is_some_and(|b| b & LONG_MASK_BIT != 0);
    let level_header_len = if long { 8 } else { 4 };
    let level = fec_payload
        .get(FEC_HEADER_LEN..FEC_HEADER_LEN + level_header_len)
        .ok_or(FecError::Truncated)?;
    let base = u16::from_be_bytes([byte(header, 2), byte(header, 3)]);
    let protection_len = usize::from(u16::from_be_bytes([byte(level, 0), byte(level, 1)]));
    let mut mask_bytes = [0_u8; 8];
    if let (Some(to), Some(from)) = (
        mask_bytes.get_mut(2..2 + level_header_len - 2),
        level.get(2..),
    ) {
        to.copy_from_slice(from);
    }
    let mask = u64::from_be_bytes(mask_bytes);
    let payload_start = FEC_HEADER_LEN + level_header_len;
    let parity = fec_payload
        .get(payload_start..payload_start + protection_len)
        .ok_or(FecError::Truncated)?;

    let mut missing = mask;
    let mut recovery = [0_u8; 8];
    if let (Some(to), Some(from)) = (recovery.get_mut(..2), header.get(..2)) {
        to.copy_from_slice(from);
    }
    if let (Some(to), Some(from)) = (recovery.get_mut(4..8), header.get(4..8)) {
        to.copy_from_slice(from);
    }
    let mut length = u16::from_be_bytes([byte(header, 8), byte(header, 9)]);
    out.clear();
    out.resize(RTP_FIXED_HEADER_LEN, 0);
    out.extend_from_slice(parity);
    for packet in received {
        let Ok(seq) = sequence_number(packet) else {
            continue;
        };
        let offset = usize::from(seq.wrapping_sub(base));
        let Some(shift) = (MAX_PROTECTED_PACKETS - 1).checked_sub(offset) else {
            continue;
        };
        let bit = 1_u64 << shift;
        if missing & bit == 0 {
            continue; // not protected, or a duplicate
        }
        missing &= !bit;
        let body = packet.get(RTP_FIXED_HEADER_LEN..).unwrap_or_default();
        if body.len() > protection_len {
            return Err(FecError::Mismatch);
        }
        length ^= u16::try_from(body.len()).map_err(|_| FecError::Mismatch)?;
        xor_into(&mut recovery[..2], packet.get(..2).unwrap_or_default());
        xor_into(&mut recovery[4..8], packet.get(4..8).unwrap_or_default());
        xor_into(
            out.get_mut(RTP_FIXED_HEADER_LEN..).unwrap_or_default(),
            body,
        );
    }
    if missing.count_ones() != 1 {
        return Err(FecError::NotOneMissing);
    }
    let offset = (MAX_PROTECTED_PACKETS - 1) - missing.trailing_zeros() as usize;
    let seq = base.wrapping_add(offset as u16);
    let length = usize::from(length);
    if length > protection_len {
        return Err(FecError::Mismatch);
    }
    out.truncate(RTP_FIXED_HEADER_LEN + length);
    let mut fixed = [0_u8; RTP_FIXED_HEADER_LEN];
    fixed[0] = 0x80 | (recovery[0] & 0x3F);
    fixed[1] = recovery[1];
    fixed[2..4].copy_from_slice(&seq.to_be_bytes());
    fixed[4..8].copy_from_slice(&recovery[4..8]);
    fixed[8..12].copy_from_slice(&ssrc.to_be_bytes());
    if let Some(to) = out.get_mut(..RTP_FIXED_HEADER_LEN) {
        to.copy_from_slice(&fixed);
    }
    Ok(seq)
}

fn sequence_number(packet: &[u8]) -> Result<u16, FecError> {
    if packet.len() < RTP_FIXED_HEADER_LEN
        || packet.len() - RTP_FIXED_HEADER_LEN > usize::from(u16::MAX)
    {
        return Err(FecError::NotRtp);
    }
    Ok(u16::from_be_bytes([byte(packet, 2), byte(packet, 3)]))
}

fn byte(bytes: &[u8], at: usize) -> u8 {
    bytes.get(at).copied().unwrap_or(0)
}

/// `to[i] ^= from[i]` over the shorter of the two.
fn xor_into(to: &mut [u8], from: &[u8]) {
    for (t, f) in to.iter_mut().zip(from) {
        *t ^= f;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RTP packet: `marker`, payload type 96, `seq`, timestamp, ssrc 0x1234, optionally
    /// a one-byte extension, and `len` payload bytes derived from `seq`.
    fn packet(seq: u16, ts: u32, marker: bool, extension: bool, len: usize) -> Vec<u8> {
        let mut p = vec![
            0x80 | if extension { 0x10 } else { 0 },
            96 | if marker { 0x80 } else { 0 },
        ];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1234_u32.to_be_bytes());
        if extension {
            p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x31, seq as u8, (seq >> 8) as u8, 0]);
        }
        p.extend((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seq as u8)));
        p
    }

    fn group(first: u16, n: u16) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let seq = first.wrapping_add(i);
                packet(
                    seq,
                    9000 + u32::from(i / 3) * 3000,
                    i % 3 == 2,
                    i % 2 == 0,
                    300 + usize::from(i) * 97 % 900,
                )
            })
            .collect()
    }

    fn recovers_each_one(packets: &[Vec<u8>]) {
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        let mut fec = Vec::new();
        write_fec_payload(&mut fec, &refs).unwrap();
        for (lost, expected) in packets.iter().enumerate() {
            let received: Vec<&[u8]> = refs
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != lost)
                .map(|(_, p)| *p)
                .collect();
            let mut out = Vec::new();
            let seq = recover(&mut out, &fec, 0x1234, &received).unwrap();
            assert_eq!(seq, sequence_number(expected).unwrap());
            assert_eq!(&out, expected, "packet {lost} rebuilt byte for byte");
        }
    }

    #[test]
    fn any_one_packet_of_a_short_group_is_rebuilt_byte_for_byte() {
        recovers_each_one(&group(1000, 5));
    }

    #[test]
    fn a_group_beyond_sixteen_packets_uses_the_long_mask() {
        let packets = group(2000, 30);
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        let mut fec = Vec::new();
        write_fec_payload(&mut fec, &refs).unwrap();
        assert_ne!(fec[0] & LONG_MASK_BIT, 0);
        recovers_each_one(&packets);
    }

    #[test]
    fn sequence_numbers_may_wrap_inside_a_group_given_in_any_order() {
        let mut packets = group(65533, 6);
        packets.reverse();
        recovers_each_one(&packets);
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        let mut fec = Vec::new();
        write_fec_payload(&mut fec, &refs).unwrap();
        assert_eq!(
            u16::from_be_bytes([fec[2], fec[3]]),
            65533,
            "SN base is the oldest"
        );
    }

    #[test]
    fn groups_that_no_mask_describes_are_refused() {
        let mut fec = Vec::new();
        assert_eq!(write_fec_payload(&mut fec, &[]), Err(FecError::GroupSize));
        let far = [
            packet(1, 0, false, false, 10),
            packet(49, 0, false, false, 10),
        ];
        let refs: Vec<&[u8]> = far.iter().map(Vec::as_slice).collect();
        assert_eq!(write_fec_payload(&mut fec, &refs), Err(FecError::Span));
        let twice = [
            packet(1, 0, false, false, 10),
            packet(1, 0, false, false, 10),
        ];
        let refs: Vec<&[u8]> = twice.iter().map(Vec::as_slice).collect();
        assert_eq!(write_fec_payload(&mut fec, &refs), Err(FecError::Span));
        assert_eq!(
            write_fec_payload(&mut fec, &[&[0x80; 11]]),
            Err(FecError::NotRtp)
        );
        assert!(fec.is_empty(), "nothing written on error");
    }

    #[test]
    fn nothing_is_recovered_unless_exactly_one_packet_is_missing() {
        let packets = group(7, 4);
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        let mut fec = Vec::new();
        write_fec_payload(&mut fec, &refs).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            recover(&mut out, &fec, 1, &refs),
            Err(FecError::NotOneMissing)
        );
        assert_eq!(
            recover(&mut out, &fec, 1, &refs[..2]),
            Err(FecError::NotOneMissing)
        );
        assert_eq!(
            recover(&mut out, &fec[..12], 1, &refs[..3]),
            Err(FecError::Truncated)
        );
    }

    #[test]
    fn arbitrary_fec_payloads_and_packets_never_panic() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let packets = group(100, 6);
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        let mut good = Vec::new();
        write_fec_payload(&mut good, &refs).unwrap();
        let mut out = Vec::new();
        for _ in 0..20_000 {
            let mut fec = good.clone();
            let len = (next() as usize) % (fec.len() + 8);
            fec.resize(len, 0);
            for _ in 0..(next() % 4) {
                if !fec.is_empty() {
                    let at = (next() as usize) % fec.len();
                    fec[at] = next() as u8;
                }
            }
            let skip = (next() as usize) % refs.len();
            let received: Vec<&[u8]> = refs
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, p)| *p)
                .collect();
            let _ = recover(&mut out, &fec, 5, &received);
        }
    }
}
