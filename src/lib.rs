//! The Sluice server shell: configuration, logging, metrics, HTTP and signalling.
//! `src/main.rs` wires these together; the media workers plug into [`http::AppState`]
//! (configuration, metrics, shutdown) and are written beside them.
//!
//! This is the only part of Sluice that performs I/O; the protocol crates under
//! `crates/` are sans-IO state machines driven from here.

#![forbid(unsafe_code)]

pub mod config;
pub mod http;
pub mod limits;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod shutdown;
pub mod signaling;
