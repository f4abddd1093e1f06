//! RTCP (RFC 3550 section 6, RFC 4585, RFC 5104): zero-copy parsing of compound and
//! reduced-size (RFC 5506) packets, in-place SSRC translation of feedback, and builders.

mod packets;
mod rewrite;
pub(crate) mod write;

pub use packets::{
    App, Bye, Fir, FirEntry, Nack, NackLost, ReceiverReport, Remb, ReportBlock, ReportBlocks,
    RtcpIter, RtcpPacket, Sdes, SdesChunk, SdesChunks, SdesItems, SenderReport, TransportCc,
    TwccStatus, TwccStatuses,
};
pub use rewrite::rewrite_media_ssrc;
pub use write::{
    write_bye, write_fir, write_nack, write_pli, write_receiver_report, write_remb,
    write_sdes_cname, write_sender_report, MAX_REPORT_BLOCKS,
};

/// RTCP packet type: sender report.
pub const PT_SR: u8 = 200;
/// RTCP packet type: receiver report.
pub const PT_RR: u8 = 201;
/// RTCP packet type: source description.
pub const PT_SDES: u8 = 202;
/// RTCP packet type: goodbye.
pub const PT_BYE: u8 = 203;
/// RTCP packet type: application-defined.
pub const PT_APP: u8 = 204;
/// RTCP packet type: transport-layer feedback (RFC 4585).
pub const PT_RTPFB: u8 = 205;
/// RTCP packet type: payload-specific feedback (RFC 4585).
pub const PT_PSFB: u8 = 206;

/// RTPFB FMT of a generic NACK.
pub const FMT_NACK: u8 = 1;
/// RTPFB FMT of transport-wide congestion control feedback.
pub const FMT_TWCC: u8 = 15;
/// PSFB FMT of a picture loss indication.
pub const FMT_PLI: u8 = 1;
/// PSFB FMT of a full intra request (RFC 5104).
pub const FMT_FIR: u8 = 4;
/// PSFB FMT of application-layer feedback (REMB lives here).
pub const FMT_AFB: u8 = 15;

/// Whether the first byte(s) of a datagram are RTCP rather than RTP when both share a
/// port (RFC 5761 section 4: payload types 64..=95 with the marker bit map onto RTCP
/// packet types 192..=223).
pub fn is_rtcp(buf: &[u8]) -> bool {
    matches!(buf.get(1), Some(pt) if (192..=223).contains(pt))
}
