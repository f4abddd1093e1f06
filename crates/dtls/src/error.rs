//! Errors and alerts.
//!
//! Every failure of a connection is one [`Error`] value. Errors that the peer should learn
//! about carry the [`AlertDescription`] we send before giving up; errors caused by records
//! we silently discard never reach this type (they are counted in
//! [`crate::ConnectionStats`] instead, as RFC 6347 section 4.1.2.7 asks).

use std::fmt;

/// TLS alert descriptions (RFC 5246 section 7.2) that this engine sends or understands.
/// The variant names are the RFC's.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertDescription {
    CloseNotify,
    UnexpectedMessage,
    BadRecordMac,
    RecordOverflow,
    HandshakeFailure,
    BadCertificate,
    UnsupportedCertificate,
    CertificateExpired,
    CertificateUnknown,
    IllegalParameter,
    DecodeError,
    DecryptError,
    ProtocolVersion,
    InsufficientSecurity,
    InternalError,
    NoRenegotiation,
    UnsupportedExtension,
    /// A description we do not name; carried as its wire value.
    Other(u8),
}

impl AlertDescription {
    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::CloseNotify => 0,
            Self::UnexpectedMessage => 10,
            Self::BadRecordMac => 20,
            Self::RecordOverflow => 22,
            Self::HandshakeFailure => 40,
            Self::BadCertificate => 42,
            Self::UnsupportedCertificate => 43,
            Self::CertificateExpired => 45,
            Self::CertificateUnknown => 46,
            Self::IllegalParameter => 47,
            Self::DecodeError => 50,
            Self::DecryptError => 51,
            Self::ProtocolVersion => 70,
            Self::InsufficientSecurity => 71,
            Self::InternalError => 80,
            Self::NoRenegotiation => 100,
            Self::UnsupportedExtension => 110,
            Self::Other(v) => v,
        }
    }

    /// Parses a wire value.
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::CloseNotify,
            10 => Self::UnexpectedMessage,
            20 => Self::BadRecordMac,
            22 => Self::RecordOverflow,
            40 => Self::HandshakeFailure,
            42 => Self::BadCertificate,
            43 => Self::UnsupportedCertificate,
            45 => Self::CertificateExpired,
            46 => Self::CertificateUnknown,
            47 => Self::IllegalParameter,
            50 => Self::DecodeError,
            51 => Self::DecryptError,
            70 => Self::ProtocolVersion,
            71 => Self::InsufficientSecurity,
            80 => Self::InternalError,
            100 => Self::NoRenegotiation,
            110 => Self::UnsupportedExtension,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for AlertDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Other(v) => write!(f, "alert {v}"),
            named => write!(f, "{named:?}"),
        }
    }
}

/// Why a connection failed. The variants name the cause precisely so that an operator's
/// metrics (failure by reason) and logs say what went wrong without a packet capture.
/// Field names of the struct variants say what they hold.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A handshake message could not be parsed.
    #[error("malformed {what}")]
    Decode { what: &'static str },
    /// A handshake message arrived that the current state does not expect.
    #[error("unexpected {got} while waiting for {expected}")]
    UnexpectedMessage {
        got: &'static str,
        expected: &'static str,
    },
    /// A handshake message is longer than the reassembly bound allows.
    #[error("handshake message of {length} bytes exceeds the {limit}-byte reassembly bound")]
    MessageTooLarge { length: usize, limit: usize },
    /// A fragment claims bytes beyond the end of its message.
    #[error("fragment {offset}+{fragment_length} exceeds message length {length}")]
    FragmentOutOfBounds {
        offset: usize,
        fragment_length: usize,
        length: usize,
    },
    /// Fragments of one message disagree on its type or length.
    #[error("fragments of message {message_seq} disagree on type or length")]
    InconsistentFragments { message_seq: u16 },
    /// The peer offered nothing we can use.
    #[error("no common {what}")]
    NoCommonParameters { what: &'static str },
    /// A protocol version older than DTLS 1.2 was offered.
    #[error("peer does not support DTLS 1.2")]
    UnsupportedVersion,
    /// The peer did not negotiate the extended master secret (RFC 7627), which we require.
    #[error("peer did not negotiate extended_master_secret")]
    MissingExtendedMasterSecret,
    /// The peer did not negotiate use_srtp (RFC 5764).
    #[error("peer did not negotiate use_srtp")]
    MissingSrtp,
    /// Secure renegotiation data was wrong (RFC 5746).
    #[error("invalid renegotiation_info")]
    BadRenegotiationInfo,
    /// The peer's certificate could not be parsed or uses an unsupported key.
    #[error("peer certificate unusable: {reason}")]
    BadCertificate { reason: &'static str },
    /// The peer's certificate does not match the fingerprint learnt from signalling.
    #[error("peer certificate fingerprint does not match the signalled one")]
    FingerprintMismatch,
    /// The peer sent no certificate, but mutual authentication is required.
    #[error("peer sent no certificate")]
    NoPeerCertificate,
    /// A signature (ServerKeyExchange or CertificateVerify) did not verify.
    #[error("{what} signature does not verify")]
    BadSignature { what: &'static str },
    /// The peer's Finished message does not match the transcript.
    #[error("peer Finished does not verify")]
    BadFinished,
    /// The HelloVerifyRequest cookie was too long or the exchange looped.
    #[error("bad HelloVerifyRequest exchange")]
    BadCookieExchange,
    /// A key-exchange public value was invalid.
    #[error("invalid key share")]
    BadKeyShare,
    /// The peer tried to renegotiate, which we refuse.
    #[error("peer attempted renegotiation")]
    RenegotiationRefused,
    /// The peer sent a fatal alert.
    #[error("peer sent fatal alert {0}")]
    PeerAlert(AlertDescription),
    /// The handshake did not complete before the deadline.
    #[error("handshake deadline passed while waiting for {waiting_for}")]
    HandshakeTimeout { waiting_for: &'static str },
    /// A cryptographic operation failed internally (never caused by input alone).
    #[error("internal cryptographic failure: {0}")]
    Crypto(&'static str),
    /// The connection was closed by the application.
    #[error("closed locally")]
    ClosedLocally,
    /// A DTLS 1.2 ServerHello carried the downgrade sentinel of a server that speaks 1.3
    /// (RFC 8446 section 4.1.3): someone removed 1.3 from our offer.
    #[error("DTLS 1.3 was offered by both sides but 1.2 was negotiated")]
    Downgrade,
}

impl Error {
    /// The alert we send to the peer for this error, if any.
    pub fn alert(&self) -> Option<AlertDescription> {
        use AlertDescription as A;
        Some(match self {
            Self::Decode { .. } => A::DecodeError,
            Self::UnexpectedMessage { .. } => A::UnexpectedMessage,
            Self::MessageTooLarge { .. } => A::RecordOverflow,
            Self::FragmentOutOfBounds { .. } => A::DecodeError,
            Self::InconsistentFragments { .. } => A::IllegalParameter,
            Self::NoCommonParameters { .. } => A::HandshakeFailure,
            Self::UnsupportedVersion => A::ProtocolVersion,
            Self::MissingExtendedMasterSecret => A::HandshakeFailure,
            Self::MissingSrtp => A::HandshakeFailure,
            Self::BadRenegotiationInfo => A::HandshakeFailure,
            Self::BadCertificate { .. } => A::BadCertificate,
            Self::FingerprintMismatch => A::BadCertificate,
            Self::NoPeerCertificate => A::HandshakeFailure,
            Self::BadSignature { .. } => A::DecryptError,
            Self::BadFinished => A::DecryptError,
            Self::BadCookieExchange => A::IllegalParameter,
            Self::BadKeyShare => A::IllegalParameter,
            Self::RenegotiationRefused => A::NoRenegotiation,
            Self::Crypto(_) => A::InternalError,
            Self::PeerAlert(_) | Self::HandshakeTimeout { .. } => return None,
            Self::ClosedLocally => A::CloseNotify,
            Self::Downgrade => A::IllegalParameter,
        })
    }

    /// A short, stable label for metrics (`sluice_dtls_handshakes_failed_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Decode { .. } | Self::FragmentOutOfBounds { .. } => "decode_error",
            Self::UnexpectedMessage { .. } => "unexpected_message",
            Self::MessageTooLarge { .. } => "message_too_large",
            Self::InconsistentFragments { .. } => "inconsistent_fragments",
            Self::NoCommonParameters { .. }
            | Self::UnsupportedVersion
            | Self::MissingExtendedMasterSecret
            | Self::MissingSrtp
            | Self::BadRenegotiationInfo => "negotiation",
            Self::BadCertificate { .. } | Self::NoPeerCertificate => "bad_certificate",
            Self::FingerprintMismatch => "fingerprint_mismatch",
            Self::BadSignature { .. } | Self::BadFinished => "bad_signature",
            Self::BadCookieExchange | Self::BadKeyShare => "illegal_parameter",
            Self::RenegotiationRefused => "renegotiation",
            Self::PeerAlert(_) => "peer_alert",
            Self::HandshakeTimeout { .. } => "timeout",
            Self::Crypto(_) => "internal",
            Self::ClosedLocally => "closed",
            Self::Downgrade => "downgrade",
        }
    }
}
