//! Outgoing flights: what we keep to retransmit, and how a flight becomes datagrams.
//!
//! A flight is cut into fragments and several records are packed into each datagram, so
//! that every datagram (headers included) fits `max_datagram_size`. Each transmission
//! writes the records anew with fresh record sequence numbers: a peer's replay window must
//! never see a retransmitted record as a replay.

use std::collections::VecDeque;

use crate::crypto::RecordKeys;
use crate::messages::{FragmentHeader, HandshakeType, HANDSHAKE_HEADER_LEN};
use crate::record::{self, ContentType, RECORD_HEADER_LEN};
use crate::Error;

/// Fragments smaller than this are not started at the end of a datagram; the next
/// datagram carries them instead (avoids slivers that cost more header than data).
const MIN_FRAGMENT: usize = 32;

/// One item of a flight.
#[derive(Debug, Clone)]
pub(crate) enum FlightItem {
    Handshake {
        msg_type: HandshakeType,
        message_seq: u16,
        epoch: u16,
        body: Vec<u8>,
    },
    ChangeCipherSpec,
}

/// A flight we sent and may have to send again.
#[derive(Debug, Clone)]
pub(crate) struct Flight {
    pub(crate) items: Vec<FlightItem>,
    /// Whether our retransmission timer covers this flight. A HelloVerifyRequest and the
    /// final flight are only re-sent when the peer repeats itself.
    pub(crate) timed: bool,
}

/// Record sequence numbers per epoch and the keys for epoch 1.
#[derive(Debug, Default)]
pub(crate) struct RecordWriter {
    next_sequence: [u64; 2],
    pub(crate) keys: Option<RecordKeys>,
}

impl RecordWriter {
    /// The next record sequence number of `epoch` (0 or 1).
    pub(crate) fn next_sequence(&self, epoch: u16) -> u64 {
        self.next_sequence
            .get(usize::from(epoch))
            .copied()
            .unwrap_or(0)
    }

    fn take_sequence(&mut self, epoch: u16) -> Result<u64, Error> {
        let slot = self
            .next_sequence
            .get_mut(usize::from(epoch))
            .ok_or(Error::Crypto("epoch out of range"))?;
        let seq = *slot;
        if seq > record::MAX_SEQUENCE {
            return Err(Error::Crypto("record sequence exhausted"));
        }
        *slot += 1;
        Ok(seq)
    }

    /// Writes one record of the given epoch into `out`.
    pub(crate) fn write_record(
        &mut self,
        out: &mut Vec<u8>,
        content_type: ContentType,
        epoch: u16,
        version: u16,
        body: &[u8],
    ) -> Result<(), Error> {
        let seq = self.take_sequence(epoch)?;
        if epoch == 0 {
            record::write_plaintext(out, content_type, version, 0, seq, body);
            Ok(())
        } else {
            let keys = self.keys.as_ref().ok_or(Error::Crypto("no epoch 1 keys"))?;
            record::write_protected(out, keys, content_type, epoch, seq, body)
        }
    }

    fn overhead(&self, epoch: u16) -> usize {
        RECORD_HEADER_LEN
            + if epoch == 0 {
                0
            } else {
                self.keys
                    .as_ref()
                    .map_or(24, |k| k.suite().record_overhead())
            }
    }
}

/// Cuts `flight` into datagrams of at most `max_datagram_size` bytes, appended to `out`.
/// Returns the number of datagrams written.
pub(crate) fn packetize(
    flight: &Flight,
    writer: &mut RecordWriter,
    max_datagram_size: usize,
    out: &mut VecDeque<Vec<u8>>,
) -> Result<usize, Error> {
    let mut written = 0;
    let mut datagram = Vec::with_capacity(max_datagram_size);
    let mut flush = |datagram: &mut Vec<u8>, out: &mut VecDeque<Vec<u8>>| {
        if !datagram.is_empty() {
            out.push_back(std::mem::replace(
                datagram,
                Vec::with_capacity(max_datagram_size),
            ));
            written += 1;
        }
    };
    for item in &flight.items {
        match item {
            FlightItem::ChangeCipherSpec => {
                if datagram.len() + RECORD_HEADER_LEN + 1 > max_datagram_size {
                    flush(&mut datagram, out);
                }
                writer.write_record(
                    &mut datagram,
                    ContentType::ChangeCipherSpec,
                    0,
                    record::DTLS_1_2,
                    &[1],
                )?;
            }
            FlightItem::Handshake {
                msg_type,
                message_seq,
                epoch,
                body,
            } => {
                let overhead = writer.overhead(*epoch) + HANDSHAKE_HEADER_LEN;
                if overhead + 1 > max_datagram_size {
                    return Err(Error::Crypto("datagram size below record overhead"));
                }
                let version = if *msg_type == HandshakeType::ClientHello
                    || *msg_type == HandshakeType::HelloVerifyRequest
                {
                    record::DTLS_1_0
                } else {
                    record::DTLS_1_2
                };
                let mut offset = 0;
                loop {
                    let remaining = body.len() - offset;
                    let space = max_datagram_size.saturating_sub(datagram.len() + overhead);
                    if !datagram.is_empty()
                        && (space == 0 || (space < remaining && space < MIN_FRAGMENT))
                    {
                        flush(&mut datagram, out);
                        continue;
                    }
                    let len = remaining.min(space);
                    let mut fragment = Vec::with_capacity(HANDSHAKE_HEADER_LEN + len);
                    FragmentHeader {
                        msg_type: msg_type.to_u8(),
                        length: body.len() as u32,
                        message_seq: *message_seq,
                        fragment_offset: offset as u32,
                        fragment_length: len as u32,
                    }
                    .write(&mut fragment);
                    fragment.extend_from_slice(&body[offset..offset + len]);
                    writer.write_record(
                        &mut datagram,
                        ContentType::Handshake,
                        *epoch,
                        version,
                        &fragment,
                    )?;
                    offset += len;
                    if offset == body.len() {
                        break;
                    }
                }
            }
        }
    }
    flush(&mut datagram, out);
    Ok(written)
}
