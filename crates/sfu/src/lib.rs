//! sluice-sfu: the sans-IO media router of a Sluice worker.
//!
//! A worker owns its sessions (ICE, DTLS, SRTP) and one [`Router`] holding the rooms placed
//! on it. The worker decrypts, the router decides what plaintext goes to whom, the worker
//! encrypts and sends. The router never touches a socket, a clock or a thread: time comes
//! in as `now: Instant`, and it asks for a wake-up with [`Router::poll_timeout`].
//!
//! What it does per packet: find the published track (by SSRC, or by the MID header
//! extension for SSRCs the answer did not announce), record it for RR / transport-cc /
//! NACK, and queue one copy per subscriber rewritten to the SSRC announced to that
//! subscriber, with continuous sequence numbers and timestamps, its own transport-wide
//! sequence number, and a copy kept for its NACKs. RTCP from subscribers is terminated:
//! NACKs are answered from the cache (RTX when announced), PLI/FIR become throttled PLIs
//! to the publisher; RTCP from publishers (SR) feeds lip-sync-preserving SRs downstream.
//!
//! The only correct way to drive it: feed one input, drain `poll_output` (recycling each
//! buffer once sent), then sleep until `poll_timeout` or the next datagram.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sluice_sfu::{Kind, OutputKind, ParticipantId, Router, RouterConfig, SubscriptionSpec, TrackSpec};
//!
//! let mut router = Router::new(RouterConfig::default());
//! let (ada, bo) = (ParticipantId(1), ParticipantId(2));
//! router.add_participant("room", ada).unwrap();
//! router.add_participant("room", bo).unwrap();
//! let mic = router
//!     .publish(ada, TrackSpec { mid: "0".into(), kind: Kind::Audio, ssrc: Some(0xA), rtx_ssrc: None, rids: vec![] })
//!     .unwrap();
//! router.subscribe(bo, mic, SubscriptionSpec::new(0xB0)).unwrap();
//!
//! let start = Instant::now();
//! // Opus packet from Ada: ssrc 0xA, seq 1, timestamp 960, PT 111
//! let pkt = [0x80, 111, 0, 1, 0, 0, 3, 0xC0, 0, 0, 0, 0xA, 0xF8, 0xFF, 0xFE];
//! router.handle_rtp(start, ada, &pkt);
//! while let Some(out) = router.poll_output() {
//!     assert_eq!((out.to, out.kind), (bo, OutputKind::Rtp));
//!     assert_eq!(&out.data[8..12], &[0, 0, 0, 0xB0]); // the SSRC announced to Bo
//!     // worker: srtp_protect(out.data) and send to Bo's 5-tuple, then:
//!     router.recycle(out.data);
//! }
//! // worker: sleep until the next datagram or this deadline, then handle_timeout
//! let wake = router.poll_timeout().unwrap();
//! assert!(wake <= start + Duration::from_millis(1500));
//! router.handle_timeout(wake);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod allocation;
mod config;
mod error;
mod fec;
mod feedback;
mod forward;
mod ids;
pub mod media;
mod output;
mod pacing;
mod reports;
mod router;
mod speakers;
mod state;
mod stats;

pub use allocation::{SubscriberReport, SubscriptionReport};
pub use config::{NackSettings, RouterConfig};
pub use error::RouterError;
pub use ids::{Kind, ParticipantId, SubscriptionSpec, TrackId, TrackSpec};
pub use output::{Output, OutputKind, PauseReason, RouterEvent};
pub use router::Router;
pub use sluice_bwe::BweConfig;
pub use stats::{DropCounts, RouterDrop, RouterStats};
