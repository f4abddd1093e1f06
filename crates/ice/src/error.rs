//! One error type for the crate, with a small, copyable drop reason for metrics.

use thiserror::Error;

/// Why a binding request was answered with 400 Bad Request (RFC 8489 section 9.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BadRequestReason {
    /// The request carries no USERNAME attribute.
    MissingUsername,
    /// The request carries no MESSAGE-INTEGRITY attribute.
    MissingMessageIntegrity,
    /// The request carries no FINGERPRINT attribute. ICE checks always carry one (RFC 8445
    /// section 7); RFC 8489 would allow a silent drop, Sluice answers 400 so a broken
    /// client sees why it fails.
    MissingFingerprint,
    /// The FINGERPRINT does not match the message, or is not the last attribute.
    BadFingerprint,
    /// An authenticated request carried an attribute value stun-rs could not decode.
    MalformedAttribute,
}

/// Why a binding request was answered with 401 Unauthorized (RFC 8489 section 9.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnauthorizedReason {
    /// USERNAME is not `ourufrag:theirufrag` for this session.
    UnknownUsername,
    /// MESSAGE-INTEGRITY does not verify with our password.
    BadIntegrity,
}

/// Everything that can go wrong in this crate.
///
/// `handle_stun` returns `Err` for every datagram it does not accept as a valid
/// connectivity check. Some of those errors were answered (400, 401, 420, 487): drain
/// `poll_transmit` after every call, whatever it returned.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IceError {
    /// The datagram is not a well-formed STUN message (RFC 8489 section 5); dropped silently.
    #[error("not a well-formed STUN message")]
    Malformed,
    /// The datagram is larger than any binding request we accept.
    #[error("STUN message of {size_bytes} bytes exceeds the {max_bytes}-byte limit")]
    TooLarge {
        /// Size of the offending datagram.
        size_bytes: usize,
        /// The limit it exceeded.
        max_bytes: usize,
    },
    /// A STUN response or indication: a lite agent sends no requests, so it expects none.
    #[error("unexpected STUN {class} (a lite agent only answers requests)")]
    UnexpectedClass {
        /// "indication", "success response" or "error response".
        class: &'static str,
    },
    /// A request for a method other than Binding; dropped.
    #[error("unsupported STUN method {method:#05x}")]
    UnsupportedMethod {
        /// The 12-bit STUN method number.
        method: u16,
    },
    /// Answered with 400 Bad Request.
    #[error("binding request rejected with 400: {0:?}")]
    BadRequest(BadRequestReason),
    /// Answered with 401 Unauthorized.
    #[error("binding request rejected with 401: {0:?}")]
    Unauthorized(UnauthorizedReason),
    /// Answered with 487 Role Conflict: the peer also claims the controlled role.
    #[error("binding request rejected with 487: peer also claims the controlled role")]
    RoleConflict,
    /// Answered with 420 Unknown Attribute: comprehension-required attributes we do not know.
    #[error(
        "binding request rejected with 420: {count} unknown comprehension-required attributes"
    )]
    UnknownAttributes {
        /// How many unknown comprehension-required attributes the request carried.
        count: usize,
    },
    /// Credentials given to the agent violate RFC 8839 (length or ice-char set).
    #[error("invalid ICE credentials: {0}")]
    InvalidCredentials(&'static str),
    /// The configuration cannot be used (zero candidate pairs, over-long SOFTWARE).
    #[error("invalid ICE configuration: {0}")]
    InvalidConfig(&'static str),
    /// The system random number generator failed.
    #[error("random number generator failed")]
    RandomFailure,
}

/// A small, copyable key for drop/reject counters: one per [`IceError`] class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StunDrop {
    /// Not STUN, or too large.
    Malformed,
    /// A response or indication.
    UnexpectedClass,
    /// Not a Binding request.
    UnsupportedMethod,
    /// Answered 400.
    BadRequest,
    /// Answered 401.
    Unauthorized,
    /// Answered 487.
    RoleConflict,
    /// Answered 420.
    UnknownAttributes,
    /// Local misuse (credentials, configuration, RNG), never caused by network input.
    Local,
}

impl StunDrop {
    /// A stable, lower-case label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            StunDrop::Malformed => "malformed",
            StunDrop::UnexpectedClass => "unexpected_class",
            StunDrop::UnsupportedMethod => "unsupported_method",
            StunDrop::BadRequest => "bad_request",
            StunDrop::Unauthorized => "unauthorized",
            StunDrop::RoleConflict => "role_conflict",
            StunDrop::UnknownAttributes => "unknown_attributes",
            StunDrop::Local => "local",
        }
    }
}

impl IceError {
    /// The counter this error belongs to.
    pub fn drop_reason(&self) -> StunDrop {
        match self {
            IceError::Malformed | IceError::TooLarge { .. } => StunDrop::Malformed,
            IceError::UnexpectedClass { .. } => StunDrop::UnexpectedClass,
            IceError::UnsupportedMethod { .. } => StunDrop::UnsupportedMethod,
            IceError::BadRequest(_) => StunDrop::BadRequest,
            IceError::Unauthorized(_) => StunDrop::Unauthorized,
            IceError::RoleConflict => StunDrop::RoleConflict,
            IceError::UnknownAttributes { .. } => StunDrop::UnknownAttributes,
            IceError::InvalidCredentials(_)
            | IceError::InvalidConfig(_)
            | IceError::RandomFailure => StunDrop::Local,
        }
    }

    /// The STUN error code sent back for this error, if any was sent.
    pub fn stun_error_code(&self) -> Option<u16> {
        match self {
            IceError::BadRequest(_) => Some(400),
            IceError::Unauthorized(_) => Some(401),
            IceError::UnknownAttributes { .. } => Some(420),
            IceError::RoleConflict => Some(487),
            _ => None,
        }
    }
}
