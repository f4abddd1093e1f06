//! A sans-IO DTLS 1.3 and 1.2 engine for DTLS-SRTP that completes on the networks real users
//! have.
//!
//! It handles fragmented certificate flights cut at any boundaries, reorders and
//! duplicates, loss of any flight including the last one, and Chrome's fragmented,
//! DTLS-1.3-offering ClientHello. It owns no socket and no clock: the caller feeds
//! datagrams and time, and sends what it is given. The one correct way to drive it:
//!
//! ```no_run
//! use std::{sync::Arc, time::Instant};
//! use sluice_dtls::{Certificate, Config, Connection, Event, PeerAuth, Role};
//!
//! # fn recv_until(_: Option<Instant>) -> Option<Vec<u8>> { None }
//! # fn send(_: &[u8]) {}
//! let config = Arc::new(Config::new(Arc::new(Certificate::generate().unwrap())));
//! # let fingerprint_from_sdp = config.certificate.fingerprint();
//! let mut conn = Connection::new(
//!     config,
//!     Role::Server,
//!     PeerAuth::Fingerprint(fingerprint_from_sdp),
//!     b"198.51.100.7:5000",
//!     Instant::now(),
//! );
//! loop {
//!     // 1. Send everything the connection wants sent.
//!     while let Some(datagram) = conn.poll_transmit() {
//!         send(&datagram);
//!     }
//!     // 2. React to what happened.
//!     while let Some(event) = conn.poll_event() {
//!         match event {
//!             Event::Connected(c) => { /* hand c.srtp to the media layer */ }
//!             Event::Failed(e) => { /* count e.reason(), drop the session */ }
//!             Event::Closed => {}
//!         }
//!     }
//!     if conn.is_finished() {
//!         break;
//!     }
//!     // 3. Sleep until a datagram arrives or the connection's timer is due, whichever
//!     //    comes first. Never skip the timer: that is the deadlock this engine exists to
//!     //    avoid.
//!     let deadline = conn.poll_timeout();
//!     match recv_until(deadline) {
//!         Some(datagram) => conn.handle_datagram(Instant::now(), &datagram),
//!         None => conn.handle_timeout(Instant::now()),
//!     }
//! }
//! ```
//!
//! Scope: DTLS 1.3 (RFC 9147, preferred: TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 or
//! TLS_CHACHA20_POLY1305_SHA256, the X25519MLKEM768 post-quantum hybrid first, ACKs with
//! selective re-send) and DTLS 1.2 (ECDHE-ECDSA with AES-GCM or ChaCha20-Poly1305, extended
//! master secret required), chosen by [`Config::versions`]; X25519 or P-256; use_srtp
//! required; mutual authentication by certificate fingerprint; no resumption, no
//! renegotiation, no application data (SCTP data channels are out of scope). Cryptographic
//! primitives come from `ring`, and ML-KEM-768 from `aws-lc-rs`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cert;
mod codec;
mod config;
mod connection;
mod crypto;
mod error;
mod flight;
mod messages;
mod reassembly;
mod record;
mod srtp;
mod timer;
mod tls13;

pub use cert::{generate_pem, Certificate, CertificateError, Fingerprint};
pub use config::{Config, DtlsVersion, Recovery, MIN_DATAGRAM_SIZE};
pub use connection::{
    Connected, Connection, ConnectionStats, Event, PeerAuth, RetransmitReason, Role,
};
pub use crypto::{CipherSuite, NamedGroup};
pub use error::{AlertDescription, Error};
pub use srtp::{SrtpKeyingMaterial, SrtpMasterKey, SrtpProfile};
