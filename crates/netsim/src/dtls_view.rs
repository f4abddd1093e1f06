//! A panic-free, bounds-checked walker over DTLS 1.2 records (RFC 6347 4.1) and the
//! handshake fragment headers inside epoch-0 handshake records (RFC 6347 4.2.2).
//!
//! It only frames bytes: it does not decrypt, check versions or reassemble. Tests use
//! it to recognise flights (e.g. "the datagram carrying the server's Finished"), and
//! the re-cutter uses it to split fragments.
//!
//! ```
//! use sluice_netsim::dtls_view::{records, encode_handshake_record};
//! let datagram = encode_handshake_record(0xfefd, 0, 1, 1, 10, 0, 0, b"0123456789");
//! let record = records(&datagram).next().unwrap().unwrap();
//! assert_eq!(record.content_type, 22);
//! let fragment = record.handshake_fragments().unwrap().next().unwrap().unwrap();
//! assert_eq!((fragment.msg_type, fragment.length, fragment.fragment_length), (1, 10, 10));
//! ```

use crate::NetsimError;

/// Bytes in a DTLS record header: type(1) version(2) epoch(2) seq(6) length(2).
pub const RECORD_HEADER_LEN: usize = 13;
/// Bytes in a DTLS handshake header: type(1) length(3) message_seq(2)
/// fragment_offset(3) fragment_length(3).
pub const HANDSHAKE_HEADER_LEN: usize = 12;
/// The `handshake` content type.
pub const CONTENT_TYPE_HANDSHAKE: u8 = 22;

/// Forward-only reader that never panics: every read checks what remains.
#[derive(Debug, Clone)]
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, offset: 0 }
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.offset)
    }

    fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Takes `n` bytes or reports what was being read.
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], NetsimError> {
        let end = self.offset.checked_add(n);
        match end.and_then(|end| self.bytes.get(self.offset..end)) {
            Some(slice) => {
                self.offset += n;
                Ok(slice)
            }
            None => Err(NetsimError::Truncated {
                what,
                offset: self.offset,
                needed: n,
                remaining: self.remaining(),
            }),
        }
    }
}

/// Big-endian unsigned integer from up to 8 bytes.
fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// One DTLS record, borrowed from its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// ContentType: 20 change_cipher_spec, 21 alert, 22 handshake, 23 application_data.
    pub content_type: u8,
    /// ProtocolVersion on the wire (0xfefd for DTLS 1.2, 0xfeff for 1.0).
    pub version: u16,
    /// Epoch: 0 before ChangeCipherSpec, then 1, ...
    pub epoch: u16,
    /// 48-bit record sequence number.
    pub sequence: u64,
    /// The record body (`length` bytes; ciphertext when epoch > 0).
    pub body: &'a [u8],
    /// The whole record, header included, as it appeared in the datagram.
    pub raw: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// For an epoch-0 handshake record, the fragments inside it; `None` for any other
    /// record (its body is encrypted or not a handshake).
    pub fn handshake_fragments(&self) -> Option<HandshakeFragments<'a>> {
        if self.content_type == CONTENT_TYPE_HANDSHAKE && self.epoch == 0 {
            Some(HandshakeFragments {
                reader: Reader::new(self.body),
                failed: false,
            })
        } else {
            None
        }
    }

    /// True for an epoch-0 handshake record (the only kind the re-cutter touches).
    pub fn is_plaintext_handshake(&self) -> bool {
        self.content_type == CONTENT_TYPE_HANDSHAKE && self.epoch == 0
    }
}

/// One handshake message fragment, borrowed from its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeFragmentView<'a> {
    /// HandshakeType (1 ClientHello, 2 ServerHello, 11 Certificate, 20 Finished, ...).
    pub msg_type: u8,
    /// Length of the whole message (24 bits).
    pub length: u32,
    /// Message sequence number within the handshake.
    pub message_seq: u16,
    /// Offset of this fragment inside the message (24 bits).
    pub fragment_offset: u32,
    /// Bytes in this fragment (24 bits); equals `body.len()`.
    pub fragment_length: u32,
    /// The fragment's bytes.
    pub body: &'a [u8],
}

impl HandshakeFragmentView<'_> {
    /// True when the fragment lies inside its message (`offset + length <= length`).
    /// The walker reports inconsistent fragments as they are; the re-cutter refuses
    /// to touch a datagram containing one.
    pub fn is_consistent(&self) -> bool {
        u64::from(self.fragment_offset) + u64::from(self.fragment_length) <= u64::from(self.length)
    }
}

/// Iterator over the records of a datagram. Yields `Err` once on a malformed
/// record and then stops.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    reader: Reader<'a>,
    failed: bool,
}

/// Walks the records of one datagram.
pub fn records(datagram: &[u8]) -> Records<'_> {
    Records {
        reader: Reader::new(datagram),
        failed: false,
    }
}

/// All records of a datagram, or the first framing error.
pub fn parse_records(datagram: &[u8]) -> Result<Vec<RecordView<'_>>, NetsimError> {
    records(datagram).collect()
}

impl<'a> Records<'a> {
    fn read_record(&mut self) -> Result<RecordView<'a>, NetsimError> {
        let start = self.reader.offset;
        let header = self.reader.take(RECORD_HEADER_LEN, "record header")?;
        let field = |range: std::ops::Range<usize>| header.get(range).map(be).unwrap_or(0);
        let content_type = field(0..1) as u8;
        let version = field(1..3) as u16;
        let epoch = field(3..5) as u16;
        let sequence = field(5..11);
        let length = field(11..13) as usize;
        let body = self.reader.take(length, "record body")?;
        let raw = self
            .reader
            .bytes
            .get(start..self.reader.offset)
            .unwrap_or_default();
        Ok(RecordView {
            content_type,
            version,
            epoch,
            sequence,
            body,
            raw,
        })
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, NetsimError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_empty() {
            return None;
        }
        let result = self.read_record();
        self.failed = result.is_err();
        Some(result)
    }
}

/// Iterator over the handshake fragments of one epoch-0 handshake record. Yields
/// `Err` once on a malformed fragment and then stops.
#[derive(Debug, Clone)]
pub struct HandshakeFragments<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl<'a> HandshakeFragments<'a> {
    fn read_fragment(&mut self) -> Result<HandshakeFragmentView<'a>, NetsimError> {
        let header = self.reader.take(HANDSHAKE_HEADER_LEN, "handshake header")?;
        let field = |range: std::ops::Range<usize>| header.get(range).map(be).unwrap_or(0);
        let msg_type = field(0..1) as u8;
        let length = field(1..4) as u32;
        let message_seq = field(4..6) as u16;
        let fragment_offset = field(6..9) as u32;
        let fragment_length = field(9..12) as u32;
        let body = self
            .reader
            .take(fragment_length as usize, "handshake fragment body")?;
        Ok(HandshakeFragmentView {
            msg_type,
            length,
            message_seq,
            fragment_offset,
            fragment_length,
            body,
        })
    }
}

impl<'a> Iterator for HandshakeFragments<'a> {
    type Item = Result<HandshakeFragmentView<'a>, NetsimError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_empty() {
            return None;
        }
        let result = self.read_fragment();
        self.failed = result.is_err();
        Some(result)
    }
}

/// True when the datagram holds a record of `content_type` (e.g. 20 for
/// ChangeCipherSpec). Records after a malformed one are not seen.
pub fn carries_content_type(datagram: &[u8], content_type: u8) -> bool {
    records(datagram)
        .map_while(Result::ok)
        .any(|r| r.content_type == content_type)
}

/// True when the datagram holds a plaintext (epoch 0) fragment of a handshake
/// message of `msg_type` (e.g. 11 for Certificate). Encrypted messages such as
/// Finished are invisible here: match their epoch-1 record instead.
pub fn carries_handshake(datagram: &[u8], msg_type: u8) -> bool {
    records(datagram)
        .map_while(Result::ok)
        .filter_map(|r| r.handshake_fragments())
        .flat_map(|fragments| fragments.map_while(Result::ok))
        .any(|f| f.msg_type == msg_type)
}

/// Appends a record header for a body of `body_len` bytes. Lengths above 65535 are
/// not representable and are written modulo 2^16: callers keep bodies small.
pub fn write_record_header(
    out: &mut Vec<u8>,
    content_type: u8,
    version: u16,
    epoch: u16,
    sequence: u64,
    body_len: usize,
) {
    out.push(content_type);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(&sequence.to_be_bytes()[2..]);
    out.extend_from_slice(&(body_len as u16).to_be_bytes());
}

/// Appends a handshake fragment header (24-bit fields are truncated to 24 bits).
pub fn write_handshake_header(
    out: &mut Vec<u8>,
    msg_type: u8,
    length: u32,
    message_seq: u16,
    fragment_offset: u32,
    fragment_length: u32,
) {
    out.push(msg_type);
    out.extend_from_slice(&length.to_be_bytes()[1..]);
    out.extend_from_slice(&message_seq.to_be_bytes());
    out.extend_from_slice(&fragment_offset.to_be_bytes()[1..]);
    out.extend_from_slice(&fragment_length.to_be_bytes()[1..]);
}

/// Builds one epoch-`epoch` handshake record holding a single fragment: a test helper
/// for flights and for this crate's own tests.
#[allow(clippy::too_many_arguments)]
pub fn encode_handshake_record(
    version: u16,
    epoch: u16,
    sequence: u64,
    msg_type: u8,
    length: u32,
    message_seq: u16,
    fragment_offset: u32,
    fragment: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN + fragment.len());
    write_record_header(
        &mut out,
        CONTENT_TYPE_HANDSHAKE,
        version,
        epoch,
        sequence,
        HANDSHAKE_HEADER_LEN + fragment.len(),
    );
    write_handshake_header(
        &mut out,
        msg_type,
        length,
        message_seq,
        fragment_offset,
        fragment.len() as u32,
    );
    out.extend_from_slice(fragment);
    out
}

/// Builds one record of any type with an opaque body.
pub fn encode_record(
    content_type: u8,
    version: u16,
    epoch: u16,
    sequence: u64,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + body.len());
    write_record_header(&mut out, content_type, version, epoch, sequence, body.len());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DTLS12: u16 = 0xfefd;

    #[test]
    fn walks_several_records_in_one_datagram() {
        let mut d = encode_handshake_record(DTLS12, 0, 5, 2, 4, 1, 0, b"abcd");
        d.extend(encode_record(20, DTLS12, 0, 6, &[1]));
        d.extend(encode_record(
            22,
            DTLS12,
            1,
            0x0000_0102_0304_0506,
            b"ciphertext",
        ));
        let recs = parse_records(&d).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(
            (recs[0].content_type, recs[0].epoch, recs[0].sequence),
            (22, 0, 5)
        );
        assert_eq!((recs[1].content_type, recs[1].body), (20, &[1u8][..]));
        assert_eq!(recs[2].epoch, 1);
        assert_eq!(recs[2].sequence, 0x0102_0304_0506);
        assert_eq!(recs[2].version, DTLS12);
        assert!(recs[2].handshake_fragments().is_none());
        let total: usize = recs.iter().map(|r| r.raw.len()).sum();
        assert_eq!(total, d.len());
    }

    #[test]
    fn parses_several_fragments_in_one_record() {
        let mut body = Vec::new();
        write_handshake_header(&mut body, 11, 100, 3, 0, 2);
        body.extend_from_slice(b"xy");
        write_handshake_header(&mut body, 11, 100, 3, 50, 3);
        body.extend_from_slice(b"pqr");
        let d = encode_record(22, DTLS12, 0, 0, &body);
        let rec = records(&d).next().unwrap().unwrap();
        let frags: Vec<_> = rec
            .handshake_fragments()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(frags.len(), 2);
        assert_eq!(
            (
                frags[1].length,
                frags[1].message_seq,
                frags[1].fragment_offset
            ),
            (100, 3, 50)
        );
        assert_eq!(frags[1].body, b"pqr");
        assert!(frags.iter().all(|f| f.is_consistent()));
    }

    #[test]
    fn truncated_record_is_an_error_not_a_panic() {
        let d = encode_handshake_record(DTLS12, 0, 1, 1, 10, 0, 0, b"0123456789");
        for cut in 0..d.len() {
            let result = parse_records(&d[..cut]);
            if cut == 0 {
                assert_eq!(result.unwrap().len(), 0);
            } else {
                assert!(
                    matches!(result, Err(NetsimError::Truncated { .. })),
                    "cut {cut}"
                );
            }
        }
    }

    #[test]
    fn fragment_longer_than_record_is_an_error() {
        let mut body = Vec::new();
        write_handshake_header(&mut body, 1, 10, 0, 0, 10);
        body.extend_from_slice(b"short");
        let d = encode_record(22, DTLS12, 0, 0, &body);
        let rec = records(&d).next().unwrap().unwrap();
        let mut frags = rec.handshake_fragments().unwrap();
        assert!(frags.next().unwrap().is_err());
        assert!(frags.next().is_none());
    }

    #[test]
    fn inconsistent_fragment_is_reported_as_such() {
        let d = encode_handshake_record(DTLS12, 0, 1, 1, 4, 0, 2, b"abcd");
        let rec = records(&d).next().unwrap().unwrap();
        let frag = rec.handshake_fragments().unwrap().next().unwrap().unwrap();
        assert!(!frag.is_consistent());
    }

    #[test]
    fn carries_helpers_find_types_anywhere_in_the_datagram() {
        let mut d = encode_handshake_record(DTLS12, 0, 1, 2, 4, 1, 0, b"abcd");
        d.extend(encode_handshake_record(DTLS12, 0, 2, 11, 9, 2, 0, b"cert"));
        d.extend(encode_record(20, DTLS12, 0, 3, &[1]));
        assert!(carries_handshake(&d, 11));
        assert!(carries_handshake(&d, 2));
        assert!(!carries_handshake(&d, 20));
        assert!(carries_content_type(&d, 20));
        assert!(!carries_content_type(&d, 21));
        assert!(!carries_handshake(&d[..5], 2));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = crate::SimRng::new(11);
        for _ in 0..2000 {
            let len = rng.range(0..80) as usize;
            let mut d: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if let Some(first) = d.first_mut() {
                *first = 22;
            }
            for rec in records(&d).flatten() {
                if let Some(frags) = rec.handshake_fragments() {
                    for f in frags.flatten() {
                        let _ = f.is_consistent();
                    }
                }
            }
        }
    }
}
