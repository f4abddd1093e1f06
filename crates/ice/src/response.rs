//! Encoding the responses a lite agent sends, through stun-rs.

use std::net::SocketAddr;

use stun_rs::attributes::stun::{
    ErrorCode, Fingerprint, MessageIntegrity, Software, UnknownAttributes, XorMappedAddress,
};
use stun_rs::methods::BINDING;
use stun_rs::{HMACKey, MessageClass, MessageEncoder, MessageEncoderBuilder, StunMessageBuilder};

use crate::error::IceError;

/// Error codes a lite agent answers with (RFC 8489 section 14.8, RFC 8445 section 7.3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StunErrorCode {
    BadRequest,
    Unauthorized,
    UnknownAttribute,
    RoleConflict,
}

impl StunErrorCode {
    fn code_and_reason(self) -> (u16, &'static str) {
        match self {
            StunErrorCode::BadRequest => (400, "Bad Request"),
            StunErrorCode::Unauthorized => (401, "Unauthorized"),
            StunErrorCode::UnknownAttribute => (420, "Unknown Attribute"),
            StunErrorCode::RoleConflict => (487, "Role Conflict"),
        }
    }
}

/// The most unknown attribute types listed in a 420 response; bounds its size.
const MAX_LISTED_UNKNOWN: usize = 8;
/// Room for the header and every attribute except SOFTWARE, with margin.
const BASE_RESPONSE_BYTES: usize = 160;

/// Builds responses keyed with our short-term password.
pub(crate) struct Responder {
    key: HMACKey,
    software: Option<Software>,
    software_bytes: usize,
    encoder: MessageEncoder,
}

impl Responder {
    pub(crate) fn new(local_pwd: &str, software: Option<&str>) -> Result<Responder, IceError> {
        let key = HMACKey::new_short_term(local_pwd)
            .map_err(|_| IceError::InvalidCredentials("pwd rejected by OpaqueString"))?;
        let software_bytes = software.map_or(0, str::len);
        if software_bytes > crate::config::MAX_SOFTWARE_BYTES {
            return Err(IceError::InvalidConfig("software longer than 128 bytes"));
        }
        let software = software
            .map(Software::new)
            .transpose()
            .map_err(|_| IceError::InvalidConfig("software is not a valid SOFTWARE value"))?;
        Ok(Responder {
            key,
            software,
            software_bytes,
            encoder: MessageEncoderBuilder::default().build(),
        })
    }

    /// A Binding success response: XOR-MAPPED-ADDRESS, SOFTWARE, MESSAGE-INTEGRITY, FINGERPRINT.
    pub(crate) fn success(&self, transaction_id: [u8; 12], mapped: SocketAddr) -> Option<Vec<u8>> {
        let mut builder = StunMessageBuilder::new(BINDING, MessageClass::SuccessResponse)
            .with_transaction_id(transaction_id.into())
            .with_attribute(XorMappedAddress::from(mapped));
        if let Some(software) = &self.software {
            builder = builder.with_attribute(software.clone());
        }
        let message = builder
            .with_attribute(MessageIntegrity::new(self.key.clone()))
            .with_attribute(Fingerprint::default())
            .build();
        self.encode(&message)
    }

    /// A Binding error response. `authenticated` adds MESSAGE-INTEGRITY, which RFC 8489
    /// section 9.1.3 forbids on 400 and 401 (the request was not authenticated) and
    /// requires otherwise.
    pub(crate) fn error(
        &self,
        transaction_id: [u8; 12],
        code: StunErrorCode,
        unknown_attributes: &[u16],
    ) -> Option<Vec<u8>> {
        let (number, reason) = code.code_and_reason();
        let error_code = stun_rs::ErrorCode::new(number, reason).ok()?;
        let mut builder = StunMessageBuilder::new(BINDING, MessageClass::ErrorResponse)
            .with_transaction_id(transaction_id.into())
            .with_attribute(ErrorCode::new(error_code));
        if !unknown_attributes.is_empty() {
            let listed = unknown_attributes
                .get(..MAX_LISTED_UNKNOWN)
                .unwrap_or(unknown_attributes);
            builder = builder.with_attribute(UnknownAttributes::from(listed));
        }
        let authenticated = !matches!(
            code,
            StunErrorCode::BadRequest | StunErrorCode::Unauthorized
        );
        if authenticated {
            builder = builder.with_attribute(MessageIntegrity::new(self.key.clone()));
        }
        let message = builder.with_attribute(Fingerprint::default()).build();
        self.encode(&message)
    }

    fn encode(&self, message: &stun_rs::StunMessage) -> Option<Vec<u8>> {
        let mut buffer = vec![0u8; BASE_RESPONSE_BYTES + self.software_bytes + 4];
        let size = self.encoder.encode(&mut buffer, message).ok()?;
        buffer.truncate(size);
        Some(buffer)
    }
}
