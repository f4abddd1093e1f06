//! The cleartext header of an SRTP packet, read without decrypting it.
//!
//! SRTP leaves the RTP header (fixed part, CSRCs, extension block) in the clear and
//! encrypts only the payload; the padding count at the end is encrypted, so it is not
//! read here. A load generator that decrypts only a sample of what it receives still
//! counts every packet and its loss from this header.

/// The fields of an SRTP packet's clear header that the load generator uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClearRtp {
    /// SSRC.
    pub ssrc: u32,
    /// Sequence number.
    pub sequence_number: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Payload type.
    pub payload_type: u8,
    /// Marker bit.
    pub marker: bool,
    /// Encrypted payload bytes: the datagram minus header and SRTP tag (padding, whose
    /// length is encrypted, is included).
    pub payload_len: usize,
}

const FIXED_HEADER_LEN: usize = 12;

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    <[u8; 4]>::try_from(b).ok().map(u32::from_be_bytes)
}

impl ClearRtp {
    /// Reads the clear header of `datagram`; `None` unless it is RTP version 2 whose
    /// header and `srtp_overhead` (authentication tag, AEAD tag) fit in it.
    pub fn parse(datagram: &[u8], srtp_overhead: usize) -> Option<Self> {
        let b0 = *datagram.first()?;
        let b1 = *datagram.get(1)?;
        if b0 >> 6 != 2 {
            return None;
        }
        let csrc_count = usize::from(b0 & 0x0F);
        let mut header_len = FIXED_HEADER_LEN + 4 * csrc_count;
        if b0 & 0x10 != 0 {
            let words = usize::from(u16_at(datagram, header_len + 2)?);
            header_len += 4 + 4 * words;
        }
        let payload_len = datagram
            .len()
            .checked_sub(header_len)?
            .checked_sub(srtp_overhead)?;
        Some(Self {
            ssrc: u32_at(datagram, 8)?,
            sequence_number: u16_at(datagram, 2)?,
            timestamp: u32_at(datagram, 4)?,
            payload_type: b1 & 0x7F,
            marker: b1 & 0x80 != 0,
            payload_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(extension_words: u16, csrcs: u8, payload: usize, tag: usize) -> Vec<u8> {
        let mut p = vec![0x80 | csrcs, 0x80 | 96, 0x12, 0x34];
        p.extend_from_slice(&0xAABB_CCDDu32.to_be_bytes());
        p.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        p.extend(std::iter::repeat_n(0, 4 * usize::from(csrcs)));
        if extension_words > 0 {
            p[0] |= 0x10;
            p.extend_from_slice(&[0xBE, 0xDE]);
            p.extend_from_slice(&extension_words.to_be_bytes());
            p.extend(std::iter::repeat_n(1, 4 * usize::from(extension_words)));
        }
        p.extend(std::iter::repeat_n(7, payload + tag));
        p
    }

    #[test]
    fn reads_header_fields_and_payload_length() {
        let p = packet(2, 1, 100, 10);
        let clear = ClearRtp::parse(&p, 10).unwrap();
        assert_eq!(clear.ssrc, 0x0102_0304);
        assert_eq!(clear.sequence_number, 0x1234);
        assert_eq!(clear.timestamp, 0xAABB_CCDD);
        assert_eq!(clear.payload_type, 96);
        assert!(clear.marker);
        assert_eq!(clear.payload_len, 100);
    }

    #[test]
    fn packet_shorter_than_header_and_tag_is_rejected() {
        let p = packet(1, 0, 0, 9);
        assert!(ClearRtp::parse(&p, 10).is_none());
        assert!(ClearRtp::parse(&p, 9).is_some());
    }

    #[test]
    fn truncated_extension_and_wrong_version_are_rejected() {
        let p = packet(3, 0, 0, 0);
        assert!(ClearRtp::parse(&p[..14], 0).is_none());
        let mut v1 = packet(0, 0, 10, 10);
        v1[0] = 0x40;
        assert!(ClearRtp::parse(&v1, 10).is_none());
        assert!(ClearRtp::parse(&[], 0).is_none());
    }
}
