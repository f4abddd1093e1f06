//! DTLS 1.3 records (RFC 9147 section 4): the plaintext header of epoch 0, and the
//! unified header of protected records with its encrypted record number.
//!
//! We always send the long form of the unified header (16-bit sequence, explicit
//! length) so that several records fit in one datagram; we read every form.

use crate::codec::{put_u16, Reader};
use crate::tls13::keys::EpochKeys;
use crate::Error;

/// Content type of an ACK record (RFC 9147 section 7).
pub(crate) const CONTENT_ACK: u8 = 26;
pub(crate) const CONTENT_ALERT: u8 = 21;
pub(crate) const CONTENT_HANDSHAKE: u8 = 22;
pub(crate) const CONTENT_APPLICATION_DATA: u8 = 23;

/// Flags of the unified header we send: 001, no connection id, 16-bit sequence, length.
const UNIFIED_SENT_FLAGS: u8 = 0b0010_1100;

/// One record as it arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Record13<'a> {
    /// An epoch-0 record with the DTLSPlaintext header.
    Plaintext {
        content_type: u8,
        epoch: u16,
        sequence: u64,
        body: &'a [u8],
    },
    /// A protected record: its header as it came (sequence bytes still masked), the two
    /// epoch bits, and the ciphertext.
    Ciphertext {
        header: &'a [u8],
        epoch_bits: u8,
        sequence_len: usize,
        body: &'a [u8],
    },
}

/// Splits one datagram into records; stops at the first that does not parse (what came
/// before it is still returned), as RFC 9147 section 4.5.2 lets a receiver discard.
pub(crate) fn parse_datagram<'a>(datagram: &'a [u8], out: &mut Vec<Record13<'a>>) -> bool {
    let mut r = Reader::new(datagram);
    while !r.is_empty() {
        let start = datagram.len() - r.remaining();
        let Some(first) = r.u8() else { return false };
        if first & 0b1110_0000 == 0b0010_0000 {
            if first & 0b0001_0000 != 0 {
                // A connection id we never negotiated.
                return false;
            }
            let sequence_len = if first & 0b1000 != 0 { 2 } else { 1 };
            if r.take(sequence_len).is_none() {
                return false;
            }
            let body = if first & 0b0100 != 0 {
                match r.vec16() {
                    Some(b) => b,
                    None => return false,
                }
            } else {
                r.take(r.remaining()).unwrap_or_default()
            };
            let header_end = datagram.len() - r.remaining() - body.len();
            let Some(header) = datagram.get(start..header_end) else {
                return false;
            };
            out.push(Record13::Ciphertext {
                header,
                epoch_bits: first & 0b11,
                sequence_len,
                body,
            });
        } else {
            let (Some(version), Some(epoch), Some(sequence), Some(body)) =
                (r.u16(), r.u16(), r.u48(), r.vec16())
            else {
                return false;
            };
            if !matches!(first, 20..=23 | CONTENT_ACK) || (version >> 8) != 0xfe {
                return false;
            }
            out.push(Record13::Plaintext {
                content_type: first,
                epoch,
                sequence,
                body,
            });
        }
    }
    true
}

/// Writes one protected record: unified header with the record number encrypted, then
/// the AEAD output of `content || content_type`.
pub(crate) fn write_ciphertext(
    out: &mut Vec<u8>,
    keys: &EpochKeys,
    epoch: u16,
    sequence: u64,
    content_type: u8,
    content: &[u8],
) -> Result<(), Error> {
    let mut inner = Vec::with_capacity(content.len() + 1 + 16);
    inner.extend_from_slice(content);
    inner.push(content_type);
    let ciphertext_len = inner.len() + keys.suite().record_overhead() - 6;
    let len = u16::try_from(ciphertext_len).map_err(|_| Error::Crypto("record too long"))?;
    let seq16 = (sequence & 0xffff) as u16;
    let mut header = [UNIFIED_SENT_FLAGS | (epoch & 0b11) as u8, 0, 0, 0, 0];
    header[1..3].copy_from_slice(&seq16.to_be_bytes());
    header[3..5].copy_from_slice(&len.to_be_bytes());
    keys.seal(sequence, &header, &mut inner)?;
    let mask = keys
        .sequence_mask(&inner)
        .ok_or(Error::Crypto("record-number mask"))?;
    header[1] ^= mask[0];
    header[2] ^= mask[1];
    out.extend_from_slice(&header);
    out.extend_from_slice(&inner);
    Ok(())
}

/// Writes an epoch-0 record with the DTLSPlaintext header.
pub(crate) fn write_plaintext(
    out: &mut Vec<u8>,
    content_type: u8,
    version: u16,
    sequence: u64,
    body: &[u8],
) {
    out.push(content_type);
    put_u16(out, version);
    put_u16(out, 0);
    crate::codec::put_u48(out, sequence);
    put_u16(out, body.len() as u16);
    out.extend_from_slice(body);
}

/// The full sequence number closest to `expected` whose low `bits` bits are `low`
/// (RFC 9147 section 4.2.2).
pub(crate) fn reconstruct_sequence(expected: u64, low: u64, bits: u32) -> u64 {
    let window = 1u64 << bits;
    let mask = window - 1;
    let candidate = (expected & !mask) | (low & mask);
    let mut best = candidate;
    for c in [candidate.checked_sub(window), candidate.checked_add(window)]
        .into_iter()
        .flatten()
    {
        if c.abs_diff(expected) < best.abs_diff(expected) {
            best = c;
        }
    }
    best.min(crate::record::MAX_SEQUENCE)
}

/// A decrypted record.
pub(crate) struct Opened {
    pub(crate) sequence: u64,
    pub(crate) content_type: u8,
    pub(crate) content: Vec<u8>,
}

/// Unmasks the record number, reconstructs it near `expected`, and opens the record.
/// `None` for anything that does not authenticate.
pub(crate) fn open_ciphertext(
    keys: &EpochKeys,
    header: &[u8],
    sequence_len: usize,
    body: &[u8],
    expected: u64,
) -> Option<Opened> {
    let mask = keys.sequence_mask(body)?;
    let mut aad = header.to_vec();
    let mut low = 0u64;
    for i in 0..sequence_len {
        let b = aad.get_mut(1 + i)?;
        *b ^= mask.get(i)?;
        low = (low << 8) | u64::from(*b);
    }
    let sequence = reconstruct_sequence(expected, low, 8 * sequence_len as u32);
    let mut buf = body.to_vec();
    let plain = keys.open(sequence, &aad, &mut buf)?;
    // Strip the zero padding; the last non-zero byte is the content type.
    let end = plain.iter().rposition(|&b| b != 0)?;
    let content_type = *plain.get(end)?;
    let content = plain.get(..end)?.to_vec();
    Some(Opened {
        sequence,
        content_type,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls13::keys::Suite13;

    #[test]
    fn a_protected_record_round_trips_with_its_number_encrypted() {
        let keys = EpochKeys::derive(Suite13::Aes128GcmSha256, &[3u8; 32]).unwrap();
        let mut d = Vec::new();
        write_ciphertext(&mut d, &keys, 2, 0x1_0005, CONTENT_HANDSHAKE, b"abc").unwrap();
        write_plaintext(&mut d, CONTENT_HANDSHAKE, 0xfefd, 9, b"xyz");
        let mut records = Vec::new();
        assert!(parse_datagram(&d, &mut records));
        assert_eq!(records.len(), 2);
        let Record13::Ciphertext {
            header,
            epoch_bits,
            sequence_len,
            body,
        } = records[0]
        else {
            panic!("unified header");
        };
        assert_eq!(epoch_bits, 2);
        assert_ne!(&header[1..3], &[0, 5], "the record number is masked");
        let opened = open_ciphertext(&keys, header, sequence_len, body, 0x1_0003).unwrap();
        assert_eq!(opened.sequence, 0x1_0005);
        assert_eq!(opened.content_type, CONTENT_HANDSHAKE);
        assert_eq!(opened.content, b"abc");
        assert!(matches!(records[1], Record13::Plaintext { epoch: 0, .. }));
    }

    #[test]
    fn sequence_reconstruction_picks_the_nearest_candidate() {
        assert_eq!(reconstruct_sequence(0x1_00ff, 0x01, 8), 0x1_0101);
        assert_eq!(reconstruct_sequence(0x1_0101, 0xff, 8), 0x1_00ff);
        assert_eq!(reconstruct_sequence(3, 0xfffe, 16), 0xfffe);
        assert_eq!(reconstruct_sequence(0, 7, 16), 7);
    }

    #[test]
    fn truncated_and_cid_records_stop_the_parse() {
        let mut out = Vec::new();
        assert!(!parse_datagram(&[0x2c, 1], &mut out));
        assert!(!parse_datagram(&[0x3c, 1, 2, 0, 0], &mut out));
        assert!(!parse_datagram(&[22, 0xfe], &mut out));
        assert!(out.is_empty());
    }
}
