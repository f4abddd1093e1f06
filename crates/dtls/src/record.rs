//! The DTLS record layer: headers, epochs, sequence numbers and AEAD record protection.

use crate::codec::{put_u16, put_u48, Reader};
use crate::crypto::RecordKeys;

/// Bytes in a DTLS record header: type, version, epoch, sequence number, length.
pub(crate) const RECORD_HEADER_LEN: usize = 13;
/// The largest sequence number a record can carry (48 bits).
pub(crate) const MAX_SEQUENCE: u64 = (1 << 48) - 1;
/// DTLS 1.2 on the wire.
pub(crate) const DTLS_1_2: u16 = 0xfefd;
/// DTLS 1.0 on the wire (used in ClientHello records and HelloVerifyRequest).
pub(crate) const DTLS_1_0: u16 = 0xfeff;

/// Record content types (RFC 5246 section 6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContentType {
    ChangeCipherSpec,
    Alert,
    Handshake,
    ApplicationData,
}

impl ContentType {
    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            20 => Self::ChangeCipherSpec,
            21 => Self::Alert,
            22 => Self::Handshake,
            23 => Self::ApplicationData,
            _ => return None,
        })
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Self::ChangeCipherSpec => 20,
            Self::Alert => 21,
            Self::Handshake => 22,
            Self::ApplicationData => 23,
        }
    }
}

/// One record as it arrived, body still protected if the epoch is not 0.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawRecord<'a> {
    pub(crate) content_type: ContentType,
    pub(crate) epoch: u16,
    pub(crate) sequence: u64,
    pub(crate) body: &'a [u8],
}

/// Why a datagram (or the rest of it) was not turned into records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordParseError {
    Truncated,
    UnknownContentType,
    BadVersion,
}

/// Splits one datagram into records. Stops at the first record that does not parse;
/// records before it are still returned (RFC 6347 4.1.2.7: discard what is invalid).
pub(crate) fn parse_records<'a>(
    datagram: &'a [u8],
    out: &mut Vec<RawRecord<'a>>,
) -> Result<(), RecordParseError> {
    let mut r = Reader::new(datagram);
    while !r.is_empty() {
        let record = parse_one(&mut r)?;
        out.push(record);
    }
    Ok(())
}

fn parse_one<'a>(r: &mut Reader<'a>) -> Result<RawRecord<'a>, RecordParseError> {
    let content_type = r.u8().ok_or(RecordParseError::Truncated)?;
    let version = r.u16().ok_or(RecordParseError::Truncated)?;
    let epoch = r.u16().ok_or(RecordParseError::Truncated)?;
    let sequence = r.u48().ok_or(RecordParseError::Truncated)?;
    let body = r.vec16().ok_or(RecordParseError::Truncated)?;
    let content_type =
        ContentType::from_u8(content_type).ok_or(RecordParseError::UnknownContentType)?;
    if version != DTLS_1_2 && version != DTLS_1_0 {
        return Err(RecordParseError::BadVersion);
    }
    Ok(RawRecord {
        content_type,
        epoch,
        sequence,
        body,
    })
}

/// Writes a record header followed by `body` (plaintext, epoch 0).
pub(crate) fn write_plaintext(
    out: &mut Vec<u8>,
    content_type: ContentType,
    version: u16,
    epoch: u16,
    sequence: u64,
    body: &[u8],
) {
    out.push(content_type.to_u8());
    put_u16(out, version);
    put_u16(out, epoch);
    put_u48(out, sequence);
    put_u16(out, body.len() as u16);
    out.extend_from_slice(body);
}

/// Writes a protected record: header, then the AEAD output of `plaintext`.
pub(crate) fn write_protected(
    out: &mut Vec<u8>,
    keys: &RecordKeys,
    content_type: ContentType,
    epoch: u16,
    sequence: u64,
    plaintext: &[u8],
) -> Result<(), crate::Error> {
    let start = out.len();
    out.push(content_type.to_u8());
    put_u16(out, DTLS_1_2);
    put_u16(out, epoch);
    put_u48(out, sequence);
    put_u16(out, 0); // patched below
    let body_start = out.len();
    keys.seal(epoch, sequence, content_type.to_u8(), plaintext, out)?;
    let body_len = out.len() - body_start;
    out[start + 11..start + 13].copy_from_slice(&(body_len as u16).to_be_bytes());
    Ok(())
}

/// The 64-record sliding anti-replay window of RFC 6347 section 4.1.2.6, for one epoch.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplayWindow {
    highest: Option<u64>,
    bitmap: u64,
}

impl ReplayWindow {
    /// The highest sequence number marked so far.
    pub(crate) fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// True when `sequence` has not been seen and is not older than the window.
    pub(crate) fn check(&self, sequence: u64) -> bool {
        match self.highest {
            None => true,
            Some(h) if sequence > h => true,
            Some(h) => {
                let age = h - sequence;
                age < 64 && self.bitmap & (1u64 << age) == 0
            }
        }
    }

    /// Marks `sequence` as seen; call only after the record authenticated.
    pub(crate) fn mark(&mut self, sequence: u64) {
        match self.highest {
            None => {
                self.highest = Some(sequence);
                self.bitmap = 1;
            }
            Some(h) if sequence > h => {
                let shift = sequence - h;
                self.bitmap = if shift >= 64 { 0 } else { self.bitmap << shift };
                self.bitmap |= 1;
                self.highest = Some(sequence);
            }
            Some(h) => {
                let age = h - sequence;
                if age < 64 {
                    self.bitmap |= 1u64 << age;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_window_rejects_repeats_and_ancient_records() {
        let mut w = ReplayWindow::default();
        assert!(w.check(5));
        w.mark(5);
        assert!(!w.check(5));
        assert!(w.check(4));
        w.mark(100);
        assert!(!w.check(5), "older than the window");
        assert!(w.check(99));
        w.mark(99);
        assert!(!w.check(99));
        assert!(w.check(101));
    }

    #[test]
    fn parse_records_stops_at_a_truncated_record() {
        let mut d = Vec::new();
        write_plaintext(&mut d, ContentType::Handshake, DTLS_1_2, 0, 7, &[1, 2, 3]);
        d.extend_from_slice(&[22, 0xfe, 0xfd, 0, 0]);
        let mut out = Vec::new();
        assert_eq!(
            parse_records(&d, &mut out),
            Err(RecordParseError::Truncated)
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].sequence, 7);
        assert_eq!(out[0].body, &[1, 2, 3]);
    }
}
