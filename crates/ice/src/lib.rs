//! sluice-ice: RFC 7983 demultiplexing and a sans-IO ICE-lite agent with consent freshness.
//!
//! An SFU shares one UDP port between many sessions. For every datagram the server calls
//! [`demux::classify`]; for STUN it finds the session with [`demux::stun_local_ufrag`] and
//! hands the datagram to that session's [`IceLite`] agent. The agent answers checks,
//! tells which remote addresses may send DTLS/SRTP ([`IceLite::is_permitted`]) and where
//! media goes ([`IceLite::nominated`]). It never touches a socket or a clock.
//!
//! # The loop
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::{Duration, Instant};
//! use sluice_ice::{demux, Credentials, IceConfig, IceEvent, IceLite, PacketClass};
//!
//! let rng = ring::rand::SystemRandom::new();
//! let local_creds = Credentials::generate(&rng).unwrap();
//! // Put local_creds.ufrag / .pwd into the SDP answer, and the peer's into:
//! let mut agent = IceLite::new(IceConfig::default(), local_creds).unwrap();
//! agent
//!     .set_remote_credentials(Credentials { ufrag: "abcd".into(), pwd: String::new() })
//!     .unwrap();
//!
//! let local: SocketAddr = "192.0.2.1:3478".parse().unwrap();
//! # let (from, datagram): (SocketAddr, Vec<u8>) = ("198.51.100.7:50000".parse().unwrap(), vec![0, 1, 0, 0]);
//! let now = Instant::now(); // the server's clock, never the crate's
//! // 1. A datagram arrived: classify it, feed STUN to the session's agent.
//! if demux::classify(&datagram) == PacketClass::Stun {
//!     if let Err(e) = agent.handle_stun(now, local, from, &datagram) {
//!         let _counter_label = e.drop_reason().as_str(); // count it
//!     }
//! }
//! // 2. Drain what it wants sent and what happened.
//! while let Some(t) = agent.poll_transmit() { /* socket.send_to(&t.contents, t.destination) */ let _ = t; }
//! while let Some(event) = agent.poll_event() {
//!     match event {
//!         IceEvent::Nominated(addr) => { /* send media to addr */ let _ = addr; }
//!         IceEvent::Disconnected => { /* tear the session down */ }
//!         _ => {}
//!     }
//! }
//! // 3. Sleep until the next datagram or agent.poll_timeout(), then:
//! if let Some(deadline) = agent.poll_timeout() { agent.handle_timeout(deadline); }
//! // DTLS and SRTP are processed only when agent.is_permitted(from).
//! # let _ = Duration::ZERO;
//! ```
//!
//! # What it does not do
//!
//! Full ICE: it gathers no candidates, sends no checks and never takes the controlling
//! role. It does not write SDP beyond [`sdp::candidate_line`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod agent;
mod config;
mod credentials;
pub mod demux;
mod error;
mod paths;
mod response;
pub mod sdp;
mod wire;

pub use agent::{IceEvent, IceLite, Transmit, MAX_STUN_MESSAGE_BYTES};
pub use config::{IceConfig, MAX_SOFTWARE_BYTES};
pub use credentials::{Credentials, GENERATED_PWD_CHARS, GENERATED_UFRAG_CHARS};
pub use demux::PacketClass;
pub use error::{BadRequestReason, IceError, StunDrop, UnauthorizedReason};
