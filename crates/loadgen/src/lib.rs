//! sluice-loadgen: synthetic WebRTC participants for Sluice.
//!
//! A [`Client`] does what the demo page and a browser do against the server: it joins
//! a room over the WebSocket protocol (`docs/signaling.md`), answers every offer like
//! Chrome, runs ICE as the controlling agent against the server's ICE-lite agent,
//! completes DTLS with `sluice-dtls`, protects media with webrtc-srtp, publishes
//! Opus-like audio and VP8-like video, and measures what it receives from every other
//! participant. The end-to-end tests use it as a scriptable peer; the `sluice-loadgen`
//! binary runs many of them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sluice_loadgen::ClientError> {
//! use std::time::Duration;
//! use sluice_loadgen::{Client, ClientConfig, MediaKind};
//!
//! let ada = Client::connect(ClientConfig { name: "Ada".into(), ..ClientConfig::default() }).await?;
//! let bo = Client::connect(ClientConfig { name: "Bo".into(), ..ClientConfig::default() }).await?;
//! ada.wait_connected(Duration::from_secs(10)).await?;
//! let ada_id = ada.participant_id().to_owned();
//! let stats = bo
//!     .wait_for(|s| s.packets_from(&ada_id, MediaKind::Video) > 100, Duration::from_secs(10))
//!     .await?;
//! assert_eq!(stats.decrypt_failures, 0);
//! bo.leave().await?;
//! # Ok(()) }
//! ```
//!
//! Every piece below the [`Client`] shell is sans-IO and tested alone: [`answer`]
//! (the answer writer), [`ice`] (controlling checks), [`transport`] (ICE + DTLS +
//! SRTP), [`media`] (packet generators), [`session`] (pacing, NACK/RTX, PLI,
//! receive statistics).
//!
//! Not here: real codecs, bandwidth estimation or pacing, trickle ICE, TURN, data
//! channels, simulcast.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod answer;
pub mod clear;
mod client;
mod config;
mod error;
pub mod ice;
pub mod media;
mod recv;
pub mod remote;
pub mod report;
pub mod sequence;
pub mod session;
pub mod stats;
pub mod transport;

pub use client::{Client, ClientEvent, MAX_EVENTS};
pub use config::{ClientConfig, MAX_DECRYPT_EVERY};
pub use error::{AnswerError, ClientError};
pub use stats::{ClientStats, Histogram, MediaKind, Phase, SentStats, TrackStats};
