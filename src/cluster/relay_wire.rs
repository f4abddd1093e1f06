//! The relay between nodes on the wire: one [`RelayFrame`] (a worker relay message and
//! the workers it goes between) per datagram, in a compact binary form.
//!
//! A room that spans nodes shares its publishers between them exactly as a room that
//! spans workers does (`media::relay`); the frame adds which worker of the sending node
//! sent it and which worker of the receiving node it is for. Decoding is bounded and
//! total: a hostile or damaged frame is refused with a [`WireError`], never a panic, and
//! nothing it declares is allocated before it is checked against what arrived.

use sluice_signal::protocol::Source;
use sluice_signal::sdp::Kind;

use crate::media::relay::RelayMessage;
use crate::media::{ParticipantId, PublicationSpec};

/// Longest room name, mid or RID a frame carries (bytes).
pub const MAX_NAME_BYTES: usize = 255;
/// Most publications one `Publications` frame lists (one per source, with room to grow).
pub const MAX_PUBLICATIONS: usize = 8;
/// Most RIDs one publication lists (browsers send three encodings at most).
pub const MAX_RIDS: usize = 4;

/// One relay message between a worker of one node and a worker of another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayFrame {
    /// The sending node's worker.
    pub from_worker: u16,
    /// The receiving node's worker.
    pub to_worker: u16,
    /// What it says.
    pub message: RelayMessage,
}

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// It ended before what it declared.
    #[error("truncated relay frame")]
    Truncated,
    /// Unknown message type or enumeration value.
    #[error("unknown value in relay frame")]
    Unknown,
    /// A count or length beyond the limits above, or text that is not UTF-8.
    #[error("relay frame beyond limits")]
    Invalid,
}

const PUBLICATIONS: u8 = 1;
const GONE: u8 = 2;
const RTP: u8 = 3;
const SENDER_REPORTS: u8 = 4;
const FEEDBACK: u8 = 5;

impl RelayFrame {
    /// Appends the frame's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (kind, participant) = match &self.message {
            RelayMessage::Publications { participant, .. } => (PUBLICATIONS, participant),
            RelayMessage::Gone(participant) => (GONE, participant),
            RelayMessage::Rtp { participant, .. } => (RTP, participant),
            RelayMessage::SenderReports { participant, .. } => (SENDER_REPORTS, participant),
            RelayMessage::Feedback { participant, .. } => (FEEDBACK, participant),
        };
        out.push(kind);
        out.extend_from_slice(&self.from_worker.to_be_bytes());
        out.extend_from_slice(&self.to_worker.to_be_bytes());
        out.extend_from_slice(&participant.0.to_be_bytes());
        match &self.message {
            RelayMessage::Publications {
                room,
                version,
                publications,
                ..
            } => {
                out.extend_from_slice(&version.to_be_bytes());
                put_name(out, room);
                let publications = publications.get(..MAX_PUBLICATIONS).unwrap_or(publications);
                out.push(publications.len() as u8);
                for p in publications {
                    out.push(source_code(p.source));
                    out.push(match p.kind {
                        Kind::Audio => 0,
                        Kind::Video => 1,
                    });
                    put_name(out, &p.mid);
                    out.push(u8::from(p.ssrc.is_some()) | u8::from(p.rtx_ssrc.is_some()) << 1);
                    for ssrc in [p.ssrc, p.rtx_ssrc].into_iter().flatten() {
                        out.extend_from_slice(&ssrc.to_be_bytes());
                    }
                    let rids = p.rids.get(..MAX_RIDS).unwrap_or(&p.rids);
                    out.push(rids.len() as u8);
                    for rid in rids {
                        put_name(out, rid);
                    }
                }
            }
            RelayMessage::Gone(_) => {}
            RelayMessage::Rtp { data, .. }
            | RelayMessage::SenderReports { data, .. }
            | RelayMessage::Feedback { data, .. } => out.extend_from_slice(data),
        }
    }

    /// Decodes one frame (the whole of `bytes`).
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader(bytes);
        let kind = r.u8()?;
        let from_worker = r.u16()?;
        let to_worker = r.u16()?;
        let participant = ParticipantId(r.u64()?);
        let message = match kind {
            PUBLICATIONS => {
                let version = r.u64()?;
                let room = r.name()?;
                let count = usize::from(r.u8()?);
                if count > MAX_PUBLICATIONS {
                    return Err(WireError::Invalid);
                }
                let mut publications = Vec::with_capacity(count);
                for _ in 0..count {
                    let source = source_from(r.u8()?)?;
                    let kind = match r.u8()? {
                        0 => Kind::Audio,
                        1 => Kind::Video,
                        _ => return Err(WireError::Unknown),
                    };
                    let mid = r.name()?;
                    let flags = r.u8()?;
                    if flags > 3 {
                        return Err(WireError::Unknown);
                    }
                    let ssrc = if flags & 1 != 0 { Some(r.u32()?) } else { None };
                    let rtx_ssrc = if flags & 2 != 0 { Some(r.u32()?) } else { None };
                    let rid_count = usize::from(r.u8()?);
                    if rid_count > MAX_RIDS {
                        return Err(WireError::Invalid);
                    }
                    let mut rids = Vec::with_capacity(rid_count);
                    for _ in 0..rid_count {
                        rids.push(r.name()?);
                    }
                    publications.push(PublicationSpec {
                        source,
                        kind,
                        mid,
                        ssrc,
                        rtx_ssrc,
                        rids,
                    });
                }
                if !r.0.is_empty() {
                    return Err(WireError::Invalid);
                }
                RelayMessage::Publications {
                    room,
                    version,
                    participant,
                    publications,
                }
            }
            GONE if r.0.is_empty() => RelayMessage::Gone(participant),
            GONE => return Err(WireError::Invalid),
            RTP => RelayMessage::Rtp {
                participant,
                data: r.0.to_vec(),
            },
            SENDER_REPORTS => RelayMessage::SenderReports {
                participant,
                data: r.0.to_vec(),
            },
            FEEDBACK => RelayMessage::Feedback {
                participant,
                data: r.0.to_vec(),
            },
            _ => return Err(WireError::Unknown),
        };
        Ok(Self {
            from_worker,
            to_worker,
            message,
        })
    }
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    let bytes = name.as_bytes();
    // longer names are cut on a character boundary (the server never makes one)
    let mut end = bytes.len().min(MAX_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    out.push(end as u8);
    out.extend_from_slice(bytes.get(..end).unwrap_or_default());
}

fn source_code(source: Source) -> u8 {
    match source {
        Source::Microphone => 0,
        Source::Camera => 1,
        Source::Screen => 2,
    }
}

fn source_from(code: u8) -> Result<Source, WireError> {
    match code {
        0 => Ok(Source::Microphone),
        1 => Ok(Source::Camera),
        2 => Ok(Source::Screen),
        _ => Err(WireError::Unknown),
    }
}

/// A cursor over untrusted bytes.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(WireError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        self.take::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        self.take().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        self.take().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        self.take().map(u64::from_be_bytes)
    }

    fn name(&mut self) -> Result<String, WireError> {
        let len = usize::from(self.u8()?);
        if self.0.len() < len {
            return Err(WireError::Truncated);
        }
        let (bytes, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<RelayFrame> {
        let camera = PublicationSpec {
            source: Source::Camera,
            kind: Kind::Video,
            mid: "1".into(),
            ssrc: None,
            rtx_ssrc: Some(77),
            rids: vec!["q".into(), "h".into(), "f".into()],
        };
        let microphone = PublicationSpec {
            source: Source::Microphone,
            kind: Kind::Audio,
            mid: "0".into(),
            ssrc: Some(5),
            rtx_ssrc: None,
            rids: Vec::new(),
        };
        let participant = ParticipantId(u64::MAX - 3);
        [
            RelayMessage::Publications {
                room: "réunion".into(),
                version: 42,
                participant,
                publications: vec![microphone, camera],
            },
            RelayMessage::Publications {
                room: String::new(),
                version: 0,
                participant,
                publications: Vec::new(),
            },
            RelayMessage::Gone(participant),
            RelayMessage::Rtp {
                participant,
                data: vec![0x80, 96, 0, 1, 2, 3],
            },
            RelayMessage::SenderReports {
                participant,
                data: vec![0x80, 200],
            },
            RelayMessage::Feedback {
                participant,
                data: Vec::new(),
            },
        ]
        .into_iter()
        .enumerate()
        .map(|(n, message)| RelayFrame {
            from_worker: n as u16,
            to_worker: 65535,
            message,
        })
        .collect()
    }

    #[test]
    fn every_message_survives_the_wire() {
        for frame in frames() {
            let mut bytes = Vec::new();
            frame.encode(&mut bytes);
            assert_eq!(RelayFrame::decode(&bytes), Ok(frame));
        }
    }

    #[test]
    fn every_truncation_of_a_structured_frame_is_refused() {
        for frame in frames() {
            let mut bytes = Vec::new();
            frame.encode(&mut bytes);
            let structured = !matches!(
                frame.message,
                RelayMessage::Rtp { .. }
                    | RelayMessage::SenderReports { .. }
                    | RelayMessage::Feedback { .. }
            );
            for cut in 0..bytes.len() {
                let short = bytes.get(..cut).unwrap();
                let decoded = RelayFrame::decode(short);
                if structured || cut < 13 {
                    assert!(decoded.is_err(), "{cut} bytes of {frame:?}");
                }
            }
        }
    }

    #[test]
    fn counts_beyond_the_limits_and_unknown_values_are_refused() {
        let mut head = vec![PUBLICATIONS, 0, 0, 0, 0];
        head.extend_from_slice(&7u64.to_be_bytes());
        head.extend_from_slice(&1u64.to_be_bytes());
        head.extend_from_slice(&[1, b'r']);
        let mut many = head.clone();
        many.push(MAX_PUBLICATIONS as u8 + 1);
        assert_eq!(RelayFrame::decode(&many), Err(WireError::Invalid));
        let mut bad_source = head.clone();
        bad_source.extend_from_slice(&[1, 9]);
        assert_eq!(RelayFrame::decode(&bad_source), Err(WireError::Unknown));
        let mut not_utf8 = head;
        not_utf8.extend_from_slice(&[1, 0, 0, 1, 0xFF, 0, 0]);
        assert_eq!(RelayFrame::decode(&not_utf8), Err(WireError::Invalid));
        assert_eq!(
            RelayFrame::decode(&[99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(WireError::Unknown)
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % 7) as u8 // small values: types and counts that parse
                })
                .collect();
            let _ = RelayFrame::decode(&bytes);
        }
    }
}
