//! The SDP error type shared by the offer writer and the answer parser.

use thiserror::Error;

/// Why an SDP could not be written or parsed.
///
/// Line numbers are 1-based. Variants never carry text copied from the input, so an
/// error can be logged without echoing attacker-controlled bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    /// The description is larger than the parser accepts.
    #[error("SDP is {len} bytes, more than the {max_len}-byte limit")]
    TooLarge {
        /// Size of the input in bytes.
        len: usize,
        /// The limit in bytes.
        max_len: usize,
    },
    /// The description has more lines than the parser accepts.
    #[error("SDP has more than {max} lines")]
    TooManyLines {
        /// The line limit.
        max: usize,
    },
    /// The description has more m-lines than the parser (or writer) accepts.
    #[error("SDP has more than {max} media sections")]
    TooManyMediaSections {
        /// The m-line limit.
        max: usize,
    },
    /// One media section holds more entries of one kind than allowed.
    #[error("line {line}: more than {max} {what} in one media section")]
    TooManyEntries {
        /// The line that crossed the limit.
        line: usize,
        /// What was counted (codecs, ssrcs, ...).
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// The first line is not `v=0`.
    #[error("SDP does not start with v=0")]
    MissingVersion,
    /// A line does not have the `<letter>=<value>` shape or its value is malformed.
    #[error("line {line}: malformed {what}")]
    Malformed {
        /// The offending line.
        line: usize,
        /// What was expected on it.
        what: &'static str,
    },
    /// An m-line for something other than audio or video.
    #[error("line {line}: unsupported media kind (only audio and video)")]
    UnsupportedMediaKind {
        /// The m-line.
        line: usize,
    },
    /// A required attribute is absent.
    #[error("missing {attribute} (media section {media_index:?})")]
    MissingAttribute {
        /// The attribute name.
        attribute: &'static str,
        /// The 0-based media section, or `None` for the session level.
        media_index: Option<usize>,
    },
    /// Fingerprints are present but none uses SHA-256.
    #[error("no sha-256 certificate fingerprint (other hash functions are not accepted)")]
    UnsupportedFingerprintHash,
    /// The `a=setup` value is unknown or not allowed in an answer.
    #[error("line {line}: invalid a=setup value for an answer")]
    InvalidSetup {
        /// The offending line.
        line: usize,
    },
    /// Bundled media sections disagree on a transport attribute.
    #[error("media sections disagree on {attribute}")]
    ConflictingTransport {
        /// The attribute in conflict.
        attribute: &'static str,
    },
    /// Two media sections share a mid.
    #[error("duplicate mid in media section {media_index}")]
    DuplicateMid {
        /// The 0-based media section that repeated a mid.
        media_index: usize,
    },
    /// The offer parameters cannot be written as a valid SDP.
    #[error("invalid offer parameter {field}: {reason}")]
    InvalidOffer {
        /// The parameter at fault.
        field: &'static str,
        /// Why it is invalid.
        reason: &'static str,
    },
}
