//! sluice-rtp: zero-copy RTP/RTCP for an SFU's per-packet path.
//!
//! Parse views borrow the datagram (`RtpHeader::parse`, `RtcpIter::new`), rewriting happens
//! in place (`set_ssrc`, `StreamRewriter::rewrite`, `rewrite_media_ssrc`), and RTCP builders
//! append to a `Vec<u8>` the caller reuses. Nothing here touches a socket or a clock: time
//! comes in as `now: Instant` arguments. Every parser is bounds-checked and panic-free on
//! hostile input, and every buffer has a limit.
//!
//! The forwarding loop for one packet from a publisher to a subscriber:
//!
//! ```
//! use sluice_rtp::{RtpHeader, StreamRewriter, RetransmissionCache, set_extension};
//!
//! // a publisher's packet: ssrc 0x1234, seq 7, ts 9000, one-byte extension id 3 (twcc seq)
//! let mut pkt = vec![0x90, 96, 0, 7, 0, 0, 0x23, 0x28, 0, 0, 0x12, 0x34,
//!                    0xBE, 0xDE, 0, 1, 0x31, 0, 0, 0, 0xAA, 0xBB];
//! let mut rewriter = StreamRewriter::new(0x5555, 90_000);
//! rewriter.switch_source(0x1234);
//! let mut cache = RetransmissionCache::default();
//!
//! let h = RtpHeader::parse(&pkt).unwrap();
//! assert_eq!(h.payload(), &[0xAA, 0xBB]);
//! if let Some((seq, _ts)) = rewriter.rewrite(&mut pkt) {
//!     set_extension(&mut pkt, 3, &42u16.to_be_bytes()); // this subscriber's transport seq
//!     cache.insert(seq, &pkt);                            // for NACKs, before SRTP
//!     // ... SRTP-protect and send
//! }
//! assert_eq!(RtpHeader::parse(&pkt).unwrap().ssrc(), 0x5555);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
mod error;
mod header;
pub mod nack;
mod reader;
pub mod red;
pub mod rtcp;
pub mod rtx;
pub mod seq;
pub mod skipped;
pub mod stats;
mod stream_rewriter;
pub mod twcc;
pub mod twcc_feedback;
pub mod ulpfec;
pub mod vp8;

pub use codec::{is_keyframe, Codec};
pub use error::{RtcpError, RtpError};
pub use header::{
    set_extension, set_marker, set_payload_type, set_sequence_number, set_ssrc, set_timestamp,
    ExtensionElement, ExtensionForm, ExtensionIter, RtpHeader, ONE_BYTE_EXTENSION_PROFILE,
    RTP_FIXED_HEADER_LEN,
};
pub use nack::{NackConfig, NackGenerator};
pub use rtcp::{
    rewrite_media_ssrc, write_bye, write_fir, write_nack, write_pli, write_receiver_report,
    write_remb, write_sdes_cname, write_sender_report, ReportBlock, RtcpIter, RtcpPacket,
};
pub use rtx::{write_rtx, RetransmissionCache};
pub use seq::SeqUnwrapper;
pub use skipped::SkippedNumbers;
pub use stats::{ntp_from_unix, ntp_middle_32, ReceiveStats, SenderInfo, SenderStats};
pub use stream_rewriter::StreamRewriter;
pub use twcc::TwccRecorder;
pub use twcc_feedback::{TwccArrival, TwccFeedback, TwccFeedbackError, TwccPacketStatus};
pub use vp8::{Vp8Descriptor, Vp8PictureRewriter};
