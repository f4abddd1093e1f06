//! sluice-signal: SDP offer/answer, the room signalling protocol and join tokens.
//!
//! Sans-IO like every Sluice protocol crate: nothing here opens a socket, reads a
//! clock or spawns. The server's WebSocket task drives it:
//!
//! ```text
//! text frame -> protocol::decode_client_message(text, max_len)
//!   Join   -> token::verify(token, keys, now_unix) -> room admission (sfu)
//!             Negotiator::new(..) + add_remote_track(..) per existing participant
//!   Answer -> Negotiator::on_answer(revision, sdp) -> Answer (ICE/DTLS/SSRC facts)
//! room change -> add_remote_track / remove_participant
//! after every input: if negotiator.needs_offer() { let (rev, sdp) = create_offer()?;
//!                     send ServerMessage::Offer { revision: rev, sdp } }
//! ```
//!
//! ```
//! use sluice_signal::negotiation::{Negotiator, NegotiatorConfig, TransportParams};
//! use sluice_signal::sdp::{parse_answer, Setup};
//!
//! let transport = TransportParams {
//!     session_id: 42,
//!     ice: ("srvufrag".into(), "0123456789abcdefghijklmn".into()),
//!     fingerprint_sha256: [0xAB; 32],
//!     setup: Setup::ActPass,
//!     candidates: vec!["192.0.2.1:3478".parse().unwrap()],
//! };
//! let mut negotiator = Negotiator::new(transport, NegotiatorConfig::default());
//! assert!(negotiator.needs_offer());
//! let (revision, sdp) = negotiator.create_offer().unwrap();
//! assert_eq!(revision, 1);
//! assert!(!negotiator.needs_offer()); // waiting for the answer now
//! assert!(sdp.contains("a=ice-lite"));
//! # let _ = parse_answer;
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod negotiation;
pub mod protocol;
pub mod sdp;
pub mod token;

/// Any error of this crate, for callers that want a single type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SDP could not be written or parsed.
    #[error(transparent)]
    Sdp(#[from] sdp::SdpError),
    /// A join token was rejected.
    #[error(transparent)]
    Token(#[from] token::TokenError),
    /// A client message was rejected.
    #[error(transparent)]
    Protocol(#[from] protocol::ProtocolError),
    /// Offer/answer sequencing was violated.
    #[error(transparent)]
    Negotiation(#[from] negotiation::NegotiationError),
}
