//! Zero-copy views of the RTCP packet types an SFU routes or terminates.

use crate::error::RtcpError;
use crate::reader::Reader;

use super::{FMT_AFB, FMT_FIR, FMT_NACK, FMT_PLI, FMT_TWCC, PT_APP, PT_BYE, PT_PSFB, PT_RR};
use super::{PT_RTPFB, PT_SDES, PT_SR};

/// One RTCP packet of a compound datagram.
#[derive(Debug, Clone, Copy)]
pub enum RtcpPacket<'a> {
    /// SR: sender info plus report blocks.
    SenderReport(SenderReport<'a>),
    /// RR: report blocks.
    ReceiverReport(ReceiverReport<'a>),
    /// SDES chunks.
    Sdes(Sdes<'a>),
    /// BYE with its SSRC list and optional reason.
    Bye(Bye<'a>),
    /// APP.
    App(App<'a>),
    /// RTPFB FMT 1: generic NACK.
    Nack(Nack<'a>),
    /// RTPFB FMT 15: transport-wide congestion control feedback.
    TransportCc(TransportCc<'a>),
    /// PSFB FMT 1: picture loss indication.
    Pli {
        /// SSRC of the packet sender.
        sender_ssrc: u32,
        /// SSRC of the stream that needs a keyframe.
        media_ssrc: u32,
    },
    /// PSFB FMT 4: full intra request.
    Fir(Fir<'a>),
    /// PSFB FMT 15 with the "REMB" identifier.
    Remb(Remb<'a>),
    /// Anything else, with its packet type, count/FMT field and body (padding removed).
    Other {
        /// The PT field.
        packet_type: u8,
        /// The 5-bit count or FMT field.
        count_or_fmt: u8,
        /// The bytes after the 4-byte common header.
        body: &'a [u8],
    },
}

/// Iterator over the packets of a compound (or reduced-size) RTCP datagram.
///
/// Yields `Err` once for the first malformed packet and then stops: after a bad length
/// field the rest of the datagram cannot be delimited.
#[derive(Debug, Clone)]
pub struct RtcpIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> RtcpIter<'a> {
    /// Iterates over the packets in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            failed: false,
        }
    }

    /// Like `next`, but also returns the packet's byte range in the datagram so a caller
    /// can forward it verbatim.
    pub fn next_with_range(
        &mut self,
    ) -> Option<Result<(RtcpPacket<'a>, core::ops::Range<usize>), RtcpError>> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let rest = self.buf.get(start..).unwrap_or(&[]);
        match split_packet(rest) {
            Ok((header, body, total_len)) => {
                self.pos = start + total_len;
                match parse_body(header, body) {
                    Ok(p) => Some(Ok((p, start..start + total_len))),
                    Err(e) => {
                        self.failed = true;
                        Some(Err(e))
                    }
                }
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl<'a> Iterator for RtcpIter<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with_range().map(|r| r.map(|(p, _)| p))
    }
}

/// The common header fields needed to dispatch a packet body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CommonHeader {
    pub(crate) count_or_fmt: u8,
    pub(crate) packet_type: u8,
}

/// Splits the first packet off `buf`: its header, its body without padding, and its total
/// length including header and padding.
pub(crate) fn split_packet(buf: &[u8]) -> Result<(CommonHeader, &[u8], usize), RtcpError> {
    let mut r = Reader::new(buf);
    let truncated = RtcpError::Truncated {
        needed: 4,
        available: buf.len(),
    };
    let b0 = r.u8().ok_or(truncated)?;
    let packet_type = r.u8().ok_or(truncated)?;
    let words = usize::from(r.u16().ok_or(truncated)?);
    let version = b0 >> 6;
    if version != 2 {
        return Err(RtcpError::BadVersion(version));
    }
    let total_len = (words + 1) * 4;
    let body = r.take(total_len - 4).ok_or(RtcpError::Truncated {
        needed: total_len,
        available: buf.len(),
    })?;
    let body = if b0 & 0x20 != 0 {
        let padding_len = usize::from(body.last().copied().unwrap_or(0));
        if padding_len == 0 || padding_len > body.len() {
            return Err(RtcpError::BadPadding {
                padding_len,
                body_len: body.len(),
            });
        }
        body.get(..body.len() - padding_len).unwrap_or(&[])
    } else {
        body
    };
    Ok((
        CommonHeader {
            count_or_fmt: b0 & 0x1F,
            packet_type,
        },
        body,
        total_len,
    ))
}

fn parse_body(h: CommonHeader, body: &[u8]) -> Result<RtcpPacket<'_>, RtcpError> {
    let malformed = RtcpError::Malformed {
        packet_type: h.packet_type,
        body_len: body.len(),
    };
    let count = usize::from(h.count_or_fmt);
    let mut r = Reader::new(body);
    let packet = match (h.packet_type, h.count_or_fmt) {
        (PT_SR, _) => {
            let sender_ssrc = r.u32().ok_or(malformed)?;
            let ntp_timestamp = r.u64().ok_or(malformed)?;
            let rtp_timestamp = r.u32().ok_or(malformed)?;
            let packet_count = r.u32().ok_or(malformed)?;
            let octet_count = r.u32().ok_or(malformed)?;
            let blocks = r.take(count * REPORT_BLOCK_LEN).ok_or(malformed)?;
            RtcpPacket::SenderReport(SenderReport {
                sender_ssrc,
                ntp_timestamp,
                rtp_timestamp,
                packet_count,
                octet_count,
                blocks: ReportBlocks { data: blocks },
            })
        }
        (PT_RR, _) => {
            let sender_ssrc = r.u32().ok_or(malformed)?;
            let blocks = r.take(count * REPORT_BLOCK_LEN).ok_or(malformed)?;
            RtcpPacket::ReceiverReport(ReceiverReport {
                sender_ssrc,
                blocks: ReportBlocks { data: blocks },
            })
        }
        (PT_SDES, _) => RtcpPacket::Sdes(Sdes {
            chunk_count: count,
            data: body,
        }),
        (PT_BYE, _) => {
            let ssrcs = r.take(count * 4).ok_or(malformed)?;
            let reason = match r.u8() {
                Some(len) => Some(r.take(usize::from(len)).ok_or(malformed)?),
                None => None,
            };
            RtcpPacket::Bye(Bye { ssrcs, reason })
        }
        (PT_APP, subtype) => {
            let ssrc = r.u32().ok_or(malformed)?;
            let name_bytes = r.take(4).ok_or(malformed)?;
            let name: [u8; 4] = name_bytes.try_into().map_err(|_| malformed)?;
            RtcpPacket::App(App {
                subtype,
                ssrc,
                name,
                data: r.rest(),
            })
        }
        (PT_RTPFB, FMT_NACK) => {
            let (sender_ssrc, media_ssrc) = feedback_ssrcs(&mut r).ok_or(malformed)?;
            let fci = r.rest();
            if fci.len() % 4 != 0 {
                return Err(malformed);
            }
            RtcpPacket::Nack(Nack {
                sender_ssrc,
                media_ssrc,
                fci,
            })
        }
        (PT_RTPFB, FMT_TWCC) => {
            let (sender_ssrc, media_ssrc) = feedback_ssrcs(&mut r).ok_or(malformed)?;
            let base_sequence_number = r.u16().ok_or(malformed)?;
            let packet_status_count = r.u16().ok_or(malformed)?;
            let reference_time_64ms = r.u24().ok_or(malformed)?;
            let feedback_packet_count = r.u8().ok_or(malformed)?;
            RtcpPacket::TransportCc(TransportCc {
                sender_ssrc,
                media_ssrc,
                base_sequence_number,
                packet_status_count,
                reference_time_64ms,
                feedback_packet_count,
                chunks_and_deltas: r.rest(),
            })
        }
        (PT_PSFB, FMT_PLI) => {
            let (sender_ssrc, media_ssrc) = feedback_ssrcs(&mut r).ok_or(malformed)?;
            RtcpPacket::Pli {
                sender_ssrc,
                media_ssrc,
            }
        }
        (PT_PSFB, FMT_FIR) => {
            let (sender_ssrc, media_ssrc) = feedback_ssrcs(&mut r).ok_or(malformed)?;
            let fci = r.rest();
            if fci.len() % 8 != 0 {
                return Err(malformed);
            }
            RtcpPacket::Fir(Fir {
                sender_ssrc,
                media_ssrc,
                fci,
            })
        }
        (PT_PSFB, FMT_AFB) if body.get(8..12) == Some(b"REMB") => {
            let (sender_ssrc, _) = feedback_ssrcs(&mut r).ok_or(malformed)?;
            r.skip(4).ok_or(malformed)?;
            let num_ssrc = usize::from(r.u8().ok_or(malformed)?);
            let exp_mantissa = r.u24().ok_or(malformed)?;
            let exponent = exp_mantissa >> 18;
            let mantissa = u64::from(exp_mantissa & 0x3_FFFF);
            // A 6-bit exponent can shift an 18-bit mantissa past 64 bits; saturate.
            let bitrate_bps = mantissa
                .checked_shl(exponent)
                .filter(|v| v >> exponent == mantissa);
            let ssrcs = r.take(num_ssrc * 4).ok_or(malformed)?;
            RtcpPacket::Remb(Remb {
                sender_ssrc,
                bitrate_bps: bitrate_bps.unwrap_or(u64::MAX),
                ssrcs,
            })
        }
        (packet_type, count_or_fmt) => RtcpPacket::Other {
            packet_type,
            count_or_fmt,
            body,
        },
    };
    Ok(packet)
}

fn feedback_ssrcs(r: &mut Reader<'_>) -> Option<(u32, u32)> {
    Some((r.u32()?, r.u32()?))
}

fn ssrc_list(data: &[u8]) -> impl Iterator<Item = u32> + '_ {
    data.chunks_exact(4)
        .map(|c| u32::from_be_bytes(c.try_into().unwrap_or([0; 4])))
}

/// Bytes in one SR/RR report block.
pub(crate) const REPORT_BLOCK_LEN: usize = 24;

/// One reception report block (RFC 3550 section 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256 units.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed; duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles << 16 | highest).
    pub extended_highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received (0 if none).
    pub last_sr: u32,
    /// Delay since that SR in 1/65536 s units (0 if none).
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn parse(c: &[u8]) -> Option<Self> {
        let mut r = Reader::new(c);
        let ssrc = r.u32()?;
        let fraction_lost = r.u8()?;
        let lost_raw = r.u24()?;
        // sign-extend 24 -> 32 bits
        let cumulative_lost = ((lost_raw << 8) as i32) >> 8;
        Some(Self {
            ssrc,
            fraction_lost,
            cumulative_lost,
            extended_highest_seq: r.u32()?,
            jitter: r.u32()?,
            last_sr: r.u32()?,
            delay_since_last_sr: r.u32()?,
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.push(self.fraction_lost);
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32 & 0x00FF_FFFF;
        out.extend_from_slice(&lost.to_be_bytes()[1..]);
        out.extend_from_slice(&self.extended_highest_seq.to_be_bytes());
        out.extend_from_slice(&self.jitter.to_be_bytes());
        out.extend_from_slice(&self.last_sr.to_be_bytes());
        out.extend_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }
}

/// The report blocks of an SR or RR.
#[derive(Debug, Clone, Copy)]
pub struct ReportBlocks<'a> {
    data: &'a [u8],
}

impl<'a> ReportBlocks<'a> {
    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.data.len() / REPORT_BLOCK_LEN
    }

    /// Whether there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Iterates over the blocks.
    pub fn iter(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        self.data
            .chunks_exact(REPORT_BLOCK_LEN)
            .filter_map(ReportBlock::parse)
    }
}

/// A sender report.
#[derive(Debug, Clone, Copy)]
pub struct SenderReport<'a> {
    /// SSRC of the sender.
    pub sender_ssrc: u32,
    /// 64-bit NTP wall-clock time of this report.
    pub ntp_timestamp: u64,
    /// RTP timestamp corresponding to `ntp_timestamp`.
    pub rtp_timestamp: u32,
    /// Packets sent since the stream started.
    pub packet_count: u32,
    /// Payload octets sent since the stream started.
    pub octet_count: u32,
    /// Reception report blocks.
    pub blocks: ReportBlocks<'a>,
}

impl SenderReport<'_> {
    /// The middle 32 bits of the NTP timestamp, echoed as LSR in report blocks.
    pub fn ntp_middle_32(&self) -> u32 {
        (self.ntp_timestamp >> 16) as u32
    }
}

/// A receiver report.
#[derive(Debug, Clone, Copy)]
pub struct ReceiverReport<'a> {
    /// SSRC of the reporter.
    pub sender_ssrc: u32,
    /// Reception report blocks.
    pub blocks: ReportBlocks<'a>,
}

/// An SDES packet.
#[derive(Debug, Clone, Copy)]
pub struct Sdes<'a> {
    chunk_count: usize,
    data: &'a [u8],
}

impl<'a> Sdes<'a> {
    /// Iterates over the chunks; stops at the first malformed one.
    pub fn chunks(&self) -> SdesChunks<'a> {
        SdesChunks {
            data: self.data,
            r: Reader::new(self.data),
            left: self.chunk_count,
        }
    }
}

/// Iterator over SDES chunks.
#[derive(Debug, Clone)]
pub struct SdesChunks<'a> {
    data: &'a [u8],
    r: Reader<'a>,
    left: usize,
}

impl<'a> Iterator for SdesChunks<'a> {
    type Item = SdesChunk<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let start = self.r.position();
        let ssrc = self.r.u32()?;
        let items_start = self.r.position();
        // items run until a zero type byte, then pad to the next 32-bit boundary
        loop {
            let item_type = self.r.u8()?;
            if item_type == 0 {
                break;
            }
            let len = usize::from(self.r.u8()?);
            self.r.skip(len)?;
        }
        let items_end = self.r.position().saturating_sub(1);
        let consumed = self.r.position().saturating_sub(start);
        let pad = (4 - consumed % 4) % 4;
        self.r.skip(pad)?;
        Some(SdesChunk {
            ssrc,
            items: self.data.get(items_start..items_end)?,
        })
    }
}

/// One SDES chunk: an SSRC and its items.
#[derive(Debug, Clone, Copy)]
pub struct SdesChunk<'a> {
    /// The source described.
    pub ssrc: u32,
    items: &'a [u8],
}

impl<'a> SdesChunk<'a> {
    /// Iterates over `(item_type, value)` pairs (1 = CNAME).
    pub fn items(&self) -> SdesItems<'a> {
        SdesItems {
            r: Reader::new(self.items),
        }
    }

    /// The CNAME item, if present.
    pub fn cname(&self) -> Option<&'a [u8]> {
        self.items().find(|(t, _)| *t == 1).map(|(_, v)| v)
    }
}

/// Iterator over SDES items.
#[derive(Debug, Clone)]
pub struct SdesItems<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for SdesItems<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let t = self.r.u8()?;
        if t == 0 {
            return None;
        }
        let len = usize::from(self.r.u8()?);
        Some((t, self.r.take(len)?))
    }
}

/// A BYE packet.
#[derive(Debug, Clone, Copy)]
pub struct Bye<'a> {
    ssrcs: &'a [u8],
    reason: Option<&'a [u8]>,
}

impl<'a> Bye<'a> {
    /// The sources leaving.
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + 'a {
        ssrc_list(self.ssrcs)
    }

    /// The optional reason text (not validated as UTF-8).
    pub fn reason(&self) -> Option<&'a [u8]> {
        self.reason
    }
}

/// An APP packet.
#[derive(Debug, Clone, Copy)]
pub struct App<'a> {
    /// The 5-bit subtype.
    pub subtype: u8,
    /// SSRC of the sender.
    pub ssrc: u32,
    /// Four ASCII characters naming the application.
    pub name: [u8; 4],
    /// Application-dependent data.
    pub data: &'a [u8],
}

/// A generic NACK (RFC 4585 section 6.2.1).
#[derive(Debug, Clone, Copy)]
pub struct Nack<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// SSRC of the stream with losses.
    pub media_ssrc: u32,
    fci: &'a [u8],
}

impl<'a> Nack<'a> {
    /// Iterates over every lost sequence number named by the PID/BLP pairs.
    pub fn lost(&self) -> NackLost<'a> {
        NackLost {
            r: Reader::new(self.fci),
            pid: 0,
            bits: 0,
        }
    }
}

/// Iterator over the sequence numbers of a NACK.
#[derive(Debug, Clone)]
pub struct NackLost<'a> {
    r: Reader<'a>,
    pid: u16,
    /// Remaining bits to emit: bit 16 is the PID itself, bits 0..16 the BLP.
    bits: u32,
}

impl Iterator for NackLost<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        loop {
            if self.bits != 0 {
                if self.bits & 0x1_0000 != 0 {
                    self.bits &= !0x1_0000;
                    return Some(self.pid);
                }
                let i = self.bits.trailing_zeros();
                self.bits &= !(1 << i);
                return Some(self.pid.wrapping_add(i as u16 + 1));
            }
            self.pid = self.r.u16()?;
            let blp = self.r.u16()?;
            self.bits = 0x1_0000 | u32::from(blp);
        }
    }
}

/// Transport-wide congestion control feedback: the header fields needed for routing.
#[derive(Debug, Clone, Copy)]
pub struct TransportCc<'a> {
    /// SSRC of the feedback sender.
    pub sender_ssrc: u32,
    /// SSRC of a media source (transport-wide, so only informative).
    pub media_ssrc: u32,
    /// Transport sequence number of the first packet reported.
    pub base_sequence_number: u16,
    /// Number of packets reported.
    pub packet_status_count: u16,
    /// Reference time in 64 ms units (24-bit signed).
    pub reference_time_64ms: u32,
    /// Feedback packet counter.
    pub feedback_packet_count: u8,
    /// The packet chunks and receive deltas, undecoded.
    pub chunks_and_deltas: &'a [u8],
}

impl<'a> TransportCc<'a> {
    /// Decodes the status of every reported packet, in sequence order, with its arrival
    /// time on the feedback sender's clock (what a sender-side estimator needs). Stops
    /// early, without panicking, on chunks or deltas cut short.
    pub fn statuses(&self) -> TwccStatuses<'a> {
        let count = usize::from(self.packet_status_count);
        // Walk the chunks once to find where the receive deltas start.
        let mut r = Reader::new(self.chunks_and_deltas);
        let mut covered = 0usize;
        while covered < count {
            match r.u16() {
                Some(chunk) => covered += chunk_symbol_count(chunk),
                None => break,
            }
        }
        let chunk_bytes = r.position();
        let (chunks, deltas) = (
            self.chunks_and_deltas.get(..chunk_bytes).unwrap_or(&[]),
            self.chunks_and_deltas.get(chunk_bytes..).unwrap_or(&[]),
        );
        // 24-bit signed reference time in 64 ms units
        let reference = ((self.reference_time_64ms << 8) as i32 >> 8) as i64;
        TwccStatuses {
            chunks: Reader::new(chunks),
            deltas: Reader::new(deltas),
            current_chunk: 0,
            left_in_chunk: 0,
            index_in_chunk: 0,
            left: count,
            next_seq: self.base_sequence_number,
            time_us: reference * 64_000,
        }
    }
}

fn chunk_symbol_count(chunk: u16) -> usize {
    match chunk >> 14 {
        0 | 1 => usize::from(chunk & 0x1FFF),
        2 => 14,
        _ => 7,
    }
}

/// One packet reported in transport-cc feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccStatus {
    /// Transport-wide sequence number.
    pub sequence_number: u16,
    /// Arrival time in microseconds on the feedback sender's clock (reference time plus
    /// the running sum of receive deltas), or `None` if the packet was not received.
    pub arrival_us: Option<i64>,
}

/// Iterator over the packet statuses of a transport-cc feedback packet.
#[derive(Debug, Clone)]
pub struct TwccStatuses<'a> {
    chunks: Reader<'a>,
    deltas: Reader<'a>,
    current_chunk: u16,
    left_in_chunk: usize,
    index_in_chunk: usize,
    left: usize,
    next_seq: u16,
    time_us: i64,
}

impl Iterator for TwccStatuses<'_> {
    type Item = TwccStatus;

    fn next(&mut self) -> Option<TwccStatus> {
        if self.left == 0 {
            return None;
        }
        while self.left_in_chunk == 0 {
            self.current_chunk = self.chunks.u16()?;
            self.left_in_chunk = chunk_symbol_count(self.current_chunk);
            self.index_in_chunk = 0;
        }
        let c = self.current_chunk;
        let i = self.index_in_chunk;
        let symbol = match c >> 14 {
            0 | 1 => (c >> 13) & 0x3,
            2 => (c >> (13 - i)) & 0x1,
            _ => (c >> (12 - 2 * i)) & 0x3,
        };
        self.index_in_chunk += 1;
        self.left_in_chunk -= 1;
        self.left -= 1;
        let arrival_us = match symbol {
            0 => None,
            1 => {
                self.time_us += i64::from(self.deltas.u8()?) * 250;
                Some(self.time_us)
            }
            2 => {
                self.time_us += i64::from(self.deltas.u16()? as i16) * 250;
                Some(self.time_us)
            }
            _ => return None,
        };
        let sequence_number = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        Some(TwccStatus {
            sequence_number,
            arrival_us,
        })
    }
}

/// A full intra request (RFC 5104 section 4.3.1).
#[derive(Debug, Clone, Copy)]
pub struct Fir<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// Unused by FIR (must be 0); the targets are in the entries.
    pub media_ssrc: u32,
    fci: &'a [u8],
}

/// One FIR entry: the target SSRC and the command sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirEntry {
    /// Stream that must send a keyframe.
    pub ssrc: u32,
    /// Command sequence number; a repeated number is a retransmitted request.
    pub seq: u8,
}

impl<'a> Fir<'a> {
    /// Iterates over the entries.
    pub fn entries(&self) -> impl Iterator<Item = FirEntry> + 'a {
        self.fci.chunks_exact(8).filter_map(|c| {
            let mut r = Reader::new(c);
            Some(FirEntry {
                ssrc: r.u32()?,
                seq: r.u8()?,
            })
        })
    }
}

/// Receiver estimated maximum bitrate (draft-alvestrand-rmcat-remb).
#[derive(Debug, Clone, Copy)]
pub struct Remb<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// Estimated bitrate in bits per second (saturated at `u64::MAX`).
    pub bitrate_bps: u64,
    ssrcs: &'a [u8],
}

impl<'a> Remb<'a> {
    /// The streams the estimate applies to.
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + 'a {
        ssrc_list(self.ssrcs)
    }
}
