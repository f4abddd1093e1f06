//! The crate's one error type.

use thiserror::Error;

/// Why a client could not connect, negotiate or keep its session.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The configuration cannot work (bad room/name, zero fps, ...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// The WebSocket could not be opened or broke.
    #[error("websocket: {0}")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    /// A local socket operation failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server answered `join` (or anything later) with an error.
    #[error("server error {code}: {message}")]
    Rejected {
        /// The wire code (`unauthorized`, `room_full`, ...).
        code: &'static str,
        /// The server's human-readable message.
        message: String,
    },
    /// The server closed the signalling session.
    #[error("server said bye: {reason}")]
    Bye {
        /// The reason sent with `bye`.
        reason: String,
    },
    /// The server sent something the protocol does not allow here.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// The server's offer could not be parsed or answered.
    #[error("offer: {0}")]
    Offer(#[from] AnswerError),
    /// The DTLS handshake failed.
    #[error("dtls: {0}")]
    Dtls(String),
    /// SRTP contexts could not be built from the exported keys.
    #[error("srtp: {0}")]
    Srtp(String),
    /// ICE consent was lost: the server stopped answering checks.
    #[error("ice consent lost")]
    ConsentLost,
    /// A deadline passed before the awaited condition held.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The session failed after joining (ICE, DTLS, consent, signalling); the reason
    /// is the one in `ClientStats::failure`.
    #[error("session failed: {0}")]
    Failed(String),
    /// The client's task has ended.
    #[error("client task ended")]
    Closed,
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::WebSocket(Box::new(e))
    }
}

/// Why an offer could not be turned into an answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnswerError {
    /// The offer SDP did not parse.
    #[error("unparsable offer: {0}")]
    Sdp(#[from] sluice_signal::sdp::SdpError),
    /// An m-line offers no codec this client can use (Opus for audio, VP8 for video).
    #[error("m-line {mid} offers no usable codec")]
    NoCommonCodec {
        /// The m-line's mid.
        mid: String,
    },
    /// The offer has no usable UDP host candidate.
    #[error("offer has no UDP candidate")]
    NoCandidate,
    /// A re-offer changed the m-lines it must keep (count, order, kind).
    #[error("re-offer reordered or removed m-line {media_index}")]
    MediaChanged {
        /// The first m-line that changed.
        media_index: usize,
    },
}
