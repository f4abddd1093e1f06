//! SDP for Sluice's one negotiation shape: the server offers, the browser answers.
//!
//! - [`OfferBuilder`] / [`write_offer`] write the server's offer (ICE-lite, BUNDLE,
//!   rtcp-mux, fixed payload types from [`codecs`], host candidates inline).
//! - [`parse_answer`] reads the browser's answer into an [`Answer`], bounded for
//!   hostile input.
//!
//! This is not a general SDP library: it writes only what Sluice offers and reads
//! only what an answer to that needs.

mod answer;
pub mod candidate;
pub mod codecs;
mod error;
pub mod fingerprint;
mod lines;
mod offer;
mod types;

pub use answer::{
    parse_answer, parse_answer_with_limits, parse_offer, parse_offer_with_limits, Answer,
    AnswerMedia, Codec, ParseLimits,
};
pub use error::SdpError;
pub use offer::{
    is_valid_rid, write_offer, MediaSection, OfferBuilder, OfferParams, SendStream, MAX_ID_LEN,
    MAX_SIMULCAST_RIDS,
};
pub use types::{Direction, Kind, Setup};

/// Largest SDP the parser accepts by default, in bytes.
pub const MAX_SDP_LEN: usize = 64 * 1024;

/// Most m-lines in one description (offer or answer).
pub const MAX_MEDIA_SECTIONS: usize = 256;

#[cfg(test)]
mod tests;
