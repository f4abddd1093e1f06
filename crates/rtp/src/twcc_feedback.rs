//! Sender side of transport-wide congestion control: decoding the feedback a receiver
//! sends back (draft-holmer-rmcat-transport-wide-cc-extensions-01, section 3.1).
//!
//! [`crate::rtcp::TransportCc::statuses`] already walks a feedback packet lazily and
//! stops quietly at the first inconsistency, which suits routing. A bandwidth estimator
//! needs more: it must know whether the report was complete, because a truncated
//! report that silently drops its tail looks exactly like a burst of losses. This module
//! decodes a whole packet up front into a reusable buffer and rejects anything that does
//! not add up, with an error saying what.
//!
//! The decoded size is bounded by the 16-bit status count (at most 65 535 entries), and
//! [`TwccFeedback::parse_into`] reuses its buffer, so a stream of feedback does not
//! allocate once the buffer has grown to the largest report seen.

use thiserror::Error;

use crate::error::RtcpError;
use crate::reader::Reader;
use crate::rtcp::{RtcpIter, RtcpPacket, TransportCc};

/// One receive-delta tick is 250 microseconds.
const TICK_US: i64 = 250;
/// One reference-time unit is 64 ms.
const REF_TIME_US: i64 = 64_000;

/// Why a transport-cc feedback packet could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TwccFeedbackError {
    /// The RTCP framing around it is broken.
    #[error("RTCP framing: {0}")]
    Rtcp(#[from] RtcpError),
    /// The datagram holds no RTPFB FMT 15 packet.
    #[error("no transport-cc feedback packet in the datagram")]
    NotTransportCc,
    /// The packet reports no packets at all; libwebrtc never sends this.
    #[error("transport-cc feedback reports zero packets")]
    Empty,
    /// The packet chunks end before covering the announced status count.
    #[error("packet chunks cover {covered} of {reported} announced statuses")]
    ChunksTruncated {
        /// The packet status count field.
        reported: u16,
        /// Statuses the chunks present actually cover.
        covered: usize,
    },
    /// A status symbol uses the reserved value 3.
    #[error("reserved status symbol for packet {index} of the report")]
    ReservedSymbol {
        /// Position of the packet in the report (0 = base sequence number).
        index: usize,
    },
    /// The receive deltas end before every received packet has one.
    #[error("receive delta missing for packet {index} of the report")]
    DeltasTruncated {
        /// Position of the packet in the report (0 = base sequence number).
        index: usize,
    },
}

/// Arrival of one reported packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccArrival {
    /// Receive delta from the previous received packet of the report (or from the
    /// reference time for the first), in 250 us ticks, as carried on the wire.
    pub delta_ticks: i16,
    /// Arrival time in microseconds on the feedback sender's clock: the reference time
    /// plus the running sum of deltas. Only differences between arrivals are meaningful.
    pub arrival_us: i64,
}

/// One packet covered by a feedback report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccPacketStatus {
    /// Transport-wide sequence number.
    pub sequence_number: u16,
    /// `Some` if the receiver got it, `None` if it reports it missing.
    pub arrival: Option<TwccArrival>,
}

/// A fully decoded transport-cc feedback packet. Build one with [`TwccFeedback::default`]
/// and refill it with [`TwccFeedback::parse_into`] for every report, or use
/// [`TwccFeedback::parse`] for a one-off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TwccFeedback {
    /// SSRC of the feedback sender.
    pub sender_ssrc: u32,
    /// SSRC of a media source (transport-wide, so only informative).
    pub media_ssrc: u32,
    /// Sequence number of the first reported packet.
    pub base_sequence_number: u16,
    /// Feedback packet counter; a gap means a report was lost.
    pub feedback_packet_count: u8,
    /// Reference time in microseconds (the 24-bit signed 64 ms field, scaled).
    pub reference_time_us: i64,
    packets: Vec<TwccPacketStatus>,
}

impl TwccFeedback {
    /// Decodes the first transport-cc packet of an RTCP datagram (compound or not).
    pub fn parse(datagram: &[u8]) -> Result<Self, TwccFeedbackError> {
        let mut fb = Self::default();
        fb.parse_into(datagram)?;
        Ok(fb)
    }

    /// Like [`TwccFeedback::parse`], reusing `self`'s buffer. On error `self` is left
    /// empty, never half-filled.
    pub fn parse_into(&mut self, datagram: &[u8]) -> Result<(), TwccFeedbackError> {
        self.packets.clear();
        for packet in RtcpIter::new(datagram) {
            if let RtcpPacket::TransportCc(view) = packet? {
                return self.decode(&view);
            }
        }
        Err(TwccFeedbackError::NotTransportCc)
    }

    /// Decodes an already delimited transport-cc view into `self`.
    pub fn decode(&mut self, view: &TransportCc<'_>) -> Result<(), TwccFeedbackError> {
        self.packets.clear();
        let result = self.decode_inner(view);
        if result.is_err() {
            self.packets.clear();
        }
        result
    }

    fn decode_inner(&mut self, view: &TransportCc<'_>) -> Result<(), TwccFeedbackError> {
        self.sender_ssrc = view.sender_ssrc;
        self.media_ssrc = view.media_ssrc;
        self.base_sequence_number = view.base_sequence_number;
        self.feedback_packet_count = view.feedback_packet_count;
        // Sign-extend the 24-bit reference time.
        let reference = i64::from((view.reference_time_64ms << 8) as i32 >> 8);
        self.reference_time_us = reference * REF_TIME_US;

        let count = usize::from(view.packet_status_count);
        if count == 0 {
            return Err(TwccFeedbackError::Empty);
        }
        self.packets.reserve(count);

        // Pass 1: status symbols from the chunks. Arrival is filled in pass 2, because
        // the deltas only start after the last chunk.
        let mut r = Reader::new(view.chunks_and_deltas);
        let mut seq = view.base_sequence_number;
        while self.packets.len() < count {
            let Some(chunk) = r.u16() else {
                return Err(TwccFeedbackError::ChunksTruncated {
                    reported: view.packet_status_count,
                    covered: self.packets.len(),
                });
            };
            let (symbols, span) = chunk_shape(chunk);
            for k in 0..span {
                if self.packets.len() >= count {
                    break;
                }
                let symbol = symbols(k);
                let index = self.packets.len();
                let arrival = match symbol {
                    0 => None,
                    // Placeholder carrying the delta width; replaced in pass 2.
                    1 | 2 => Some(TwccArrival {
                        delta_ticks: symbol as i16,
                        arrival_us: 0,
                    }),
                    _ => return Err(TwccFeedbackError::ReservedSymbol { index }),
                };
                self.packets.push(TwccPacketStatus {
                    sequence_number: seq,
                    arrival,
                });
                seq = seq.wrapping_add(1);
            }
        }

        // Pass 2: receive deltas, in order, one per received packet.
        let mut time_us = self.reference_time_us;
        for (index, status) in self.packets.iter_mut().enumerate() {
            let Some(arrival) = status.arrival.as_mut() else {
                continue;
            };
            let delta_ticks = if arrival.delta_ticks == 1 {
                r.u8().map(i16::from)
            } else {
                r.u16().map(|v| v as i16)
            }
            .ok_or(TwccFeedbackError::DeltasTruncated { index })?;
            time_us += i64::from(delta_ticks) * TICK_US;
            *arrival = TwccArrival {
                delta_ticks,
                arrival_us: time_us,
            };
        }
        // Bytes left over are padding that was not flagged with the P bit, which
        // libwebrtc tolerates too.
        Ok(())
    }

    /// The reported packets in sequence order, starting at the base sequence number.
    pub fn packets(&self) -> &[TwccPacketStatus] {
        &self.packets
    }

    /// How many of the reported packets arrived.
    pub fn received_count(&self) -> usize {
        self.packets.iter().filter(|p| p.arrival.is_some()).count()
    }
}

/// The symbol at position `k` of a chunk, and how many symbols the chunk holds.
fn chunk_shape(chunk: u16) -> (impl Fn(usize) -> u16, usize) {
    let span = match chunk >> 14 {
        0 | 1 => usize::from(chunk & 0x1FFF),
        2 => 14,
        _ => 7,
    };
    let symbol = move |k: usize| -> u16 {
        // `k` is below `span`, so every shift stays within the 16-bit chunk.
        match chunk >> 14 {
            0 | 1 => (chunk >> 13) & 0x3,
            2 => (chunk >> (13 - k.min(13))) & 0x1,
            _ => (chunk >> (12 - 2 * k.min(6))) & 0x3,
        }
    };
    (symbol, span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TwccRecorder;
    use std::time::{Duration, Instant};

    fn build(rec: &mut TwccRecorder) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(rec.build_feedback(1, 2, &mut out));
        out
    }

    #[test]
    fn round_trips_recorder_feedback_with_losses_and_large_deltas() {
        let t0 = Instant::now();
        let mut rec = TwccRecorder::default();
        // 65530.. wraps through zero; every fifth packet lost; one 100 ms gap needs a
        // two-byte delta.
        let mut expected = Vec::new();
        let mut at = t0 + Duration::from_millis(3);
        for i in 0u16..40 {
            let seq = 65_530u16.wrapping_add(i);
            at += match i {
                20 => Duration::from_millis(100),
                _ => Duration::from_micros(1_250),
            };
            if i % 5 == 2 {
                expected.push((seq, None));
                continue;
            }
            rec.record(seq, at);
            expected.push((seq, Some(at)));
        }
        let fb = TwccFeedback::parse(&build(&mut rec)).unwrap();
        assert_eq!(fb.base_sequence_number, 65_530);
        assert_eq!(fb.packets().len(), 40);
        let first_us = fb.packets()[0].arrival.unwrap().arrival_us;
        let first_at = expected[0].1.unwrap();
        for (status, (seq, at)) in fb.packets().iter().zip(&expected) {
            assert_eq!(status.sequence_number, *seq);
            match (status.arrival, at) {
                (None, None) => {}
                (Some(a), Some(at)) => {
                    let want = (*at - first_at).as_micros() as i64;
                    // quantised to 250 us ticks; the recorder's epoch is the first arrival
                    assert!((a.arrival_us - first_us - want).abs() < 250, "{seq}");
                }
                other => panic!("seq {seq}: {other:?}"),
            }
        }
        assert_eq!(fb.received_count(), 32);
    }

    #[test]
    fn reuses_buffer_and_reads_counter() {
        let t0 = Instant::now();
        let mut rec = TwccRecorder::default();
        let mut fb = TwccFeedback::default();
        for round in 0u16..3 {
            for i in 0..10 {
                rec.record(
                    round * 10 + i,
                    t0 + Duration::from_millis(u64::from(round * 10 + i)),
                );
            }
            fb.parse_into(&build(&mut rec)).unwrap();
            assert_eq!(fb.feedback_packet_count, round as u8);
            assert_eq!(fb.base_sequence_number, round * 10);
            assert_eq!(fb.packets().len(), 10);
        }
    }

    #[test]
    fn truncated_reports_are_errors_not_losses() {
        let t0 = Instant::now();
        let mut rec = TwccRecorder::default();
        for i in 0..30 {
            rec.record(i, t0 + Duration::from_millis(u64::from(i) * 2));
        }
        let full = build(&mut rec);
        // Cut the packet body but fix the length field so the RTCP framing still holds.
        for cut in (20..full.len()).step_by(1) {
            let mut p = full.get(..cut).unwrap().to_vec();
            p.truncate(cut - cut % 4);
            p[0] &= !0x20; // no padding flag
            let words = (p.len() / 4 - 1) as u16;
            p[2..4].copy_from_slice(&words.to_be_bytes());
            match TwccFeedback::parse(&p) {
                Ok(fb) => assert_eq!(fb.packets().len(), 30),
                Err(e) => assert!(
                    matches!(
                        e,
                        TwccFeedbackError::ChunksTruncated { .. }
                            | TwccFeedbackError::DeltasTruncated { .. }
                    ),
                    "{cut}: {e}"
                ),
            }
        }
        // The raw prefix (length field not fixed) is an RTCP framing error.
        assert!(matches!(
            TwccFeedback::parse(&full[..full.len() - 4]),
            Err(TwccFeedbackError::Rtcp(RtcpError::Truncated { .. }))
        ));
    }

    #[test]
    fn rejects_reserved_symbols_empty_and_other_packets() {
        // header: V=2 FMT=15, PT=205, length 5 words: ssrcs, base 0, count 2, ref, fbcount
        let mut p = vec![
            0x8F, 205, 0, 5, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0,
        ];
        // run-length chunk of symbol 3, two packets
        p.extend_from_slice(&[0x60, 0x02, 0, 0]);
        assert_eq!(
            TwccFeedback::parse(&p),
            Err(TwccFeedbackError::ReservedSymbol { index: 0 })
        );
        p[15] = 0; // status count 0
        assert_eq!(TwccFeedback::parse(&p), Err(TwccFeedbackError::Empty));
        let pli = [0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        assert_eq!(
            TwccFeedback::parse(&pli),
            Err(TwccFeedbackError::NotTransportCc)
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut fb = TwccFeedback::default();
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(b) = buf.get_mut(0) {
                *b = 0x8F | (*b & 0x20);
            }
            if let Some(b) = buf.get_mut(1) {
                *b = 205;
            }
            if len >= 4 {
                let words = ((len / 4) as u16).saturating_sub(1);
                buf[2..4].copy_from_slice(&words.to_be_bytes());
            }
            if fb.parse_into(&buf).is_ok() {
                assert!(!fb.packets().is_empty());
            } else {
                assert!(fb.packets().is_empty());
            }
        }
    }
}
