//! Deterministic, sans-IO network impairment for Sluice's tests, plus a UDP relay
//! binary (`sluice-netsim-relay`) that applies the same model between real sockets.
//!
//! Everything here runs on caller-supplied `Instant`s and a seed: a lossy 30-second
//! DTLS handshake replays in milliseconds, identically, from its seed.
//!
//! - [`Link`]: one direction of a path: delay, jitter, Bernoulli or Gilbert-Elliott
//!   loss (optionally only inside a time window), duplication, reordering, a rate
//!   limit with a tail-drop queue, a path MTU, a drop filter hook, and DTLS
//!   handshake re-fragmentation ([`recut`]).
//! - [`sim::Pair`]: two [`sim::Endpoint`]s joined by two links on a virtual clock.
//! - [`dtls_view`]: a bounds-checked DTLS record / handshake fragment walker.
//! - [`relay`]: the relay's sans-IO core and options.
//!
//! The loop of a link:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sluice_netsim::{Link, LinkConfig};
//!
//! let t0 = Instant::now();
//! let mut link = Link::new(LinkConfig::lossy(Duration::from_millis(30), 0.1), 42, t0);
//! link.send(t0, b"hello".to_vec());
//! while let Some(due) = link.poll_timeout() {
//!     // A real driver sleeps (or advances virtual time) until `due`.
//!     while let Some(datagram) = link.poll_deliver(due) {
//!         assert_eq!(datagram, b"hello");
//!     }
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
pub mod dtls_view;
mod error;
mod link;
pub mod recut;
pub mod relay;
pub mod rng;
pub mod sim;

pub use config::{GilbertElliott, LinkConfig, DEFAULT_MAX_IN_FLIGHT_BYTES, DEFAULT_QUEUE_BYTES};
pub use error::NetsimError;
pub use link::{drop_first, DropCounts, DropFilter, Link, LinkDrop, LinkStats};
pub use rng::SimRng;
