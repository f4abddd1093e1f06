//! The crate's typed errors: one enum for RTP, one for RTCP.

use thiserror::Error;

/// Why an RTP packet could not be parsed or rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpError {
    /// Fewer bytes than the fixed header, CSRC list or extension announced.
    #[error("RTP packet truncated: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the header claims.
        needed: usize,
        /// Bytes actually present.
        available: usize,
    },
    /// The version field is not 2.
    #[error("RTP version {0} is not 2")]
    BadVersion(u8),
    /// The padding count is zero or larger than the payload it pads.
    #[error(
        "RTP padding of {padding_len} bytes does not fit in {available} bytes after the header"
    )]
    BadPadding {
        /// The padding count from the last byte.
        padding_len: usize,
        /// Bytes after the header, including the padding.
        available: usize,
    },
    /// An output buffer would exceed what the format can express.
    #[error("RTP output would be {0} bytes, over the limit")]
    TooLarge(usize),
}

/// Why an RTCP packet could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtcpError {
    /// Fewer bytes than the common header or the length field announced.
    #[error("RTCP packet truncated: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the header claims.
        needed: usize,
        /// Bytes actually present.
        available: usize,
    },
    /// The version field is not 2.
    #[error("RTCP version {0} is not 2")]
    BadVersion(u8),
    /// The padding count is zero or larger than the packet body.
    #[error("RTCP padding of {padding_len} bytes does not fit in the {body_len}-byte body")]
    BadPadding {
        /// The padding count from the last byte.
        padding_len: usize,
        /// Body length including padding.
        body_len: usize,
    },
    /// The body is too short for the packet type and count it declares.
    #[error("RTCP packet type {packet_type} body of {body_len} bytes is malformed")]
    Malformed {
        /// The RTCP packet type (PT field).
        packet_type: u8,
        /// Body length in bytes.
        body_len: usize,
    },
}
