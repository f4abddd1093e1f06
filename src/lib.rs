//! The Sluice server shell: configuration, logging, metrics, HTTP, signalling and the
//! media workers. [`app`] is the composition root: it owns the shared state and starts
//! the media workers; `src/main.rs` loads the configuration and serves it.
//!
//! This is the only part of Sluice that performs I/O; the protocol crates under
//! `crates/` are sans-IO state machines driven from here.

#![forbid(unsafe_code)]

pub mod app;
pub mod cluster;
pub mod config;
pub mod http;
pub mod limits;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod shutdown;
pub mod signaling;
pub mod subscribers;
