//! One authenticated, encrypted relay link between two nodes, sans-IO.
//!
//! The nodes run our own DTLS engine over the link, each accepting only the certificate
//! fingerprint the other published in its cluster record, and protect every frame with
//! the SRTP keys the handshake exported (RFC 5764): a frame travels as the data of an
//! RTCP APP packet (RFC 3550 section 6.7) protected as SRTCP, so it is encrypted,
//! authenticated and replay-checked, and no SSRC of the media inside has to be unique
//! across the publishers a link carries. Like every protocol core here it takes bytes and
//! `now` and never touches a socket or a clock: `handle_datagram` / `handle_timeout` in,
//! `poll_transmit` / `poll_timeout` / `poll_event` out.
//!
//! The link does not retransmit: a frame lost on the way is what a lost datagram is to a
//! session. The receiving router NACKs a gap in a mirrored stream, and the NACK crosses
//! back as feedback and is answered from the sending node's cache; `Publications` are
//! state, repeated by the sender until a newer one replaces them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use sluice_dtls::{Connection, Event, Fingerprint, PeerAuth, Role};

use crate::cluster::relay_wire::{RelayFrame, WireError};
use crate::media::srtp::SrtpSession;

/// Frames and datagrams queued in each direction before new ones are dropped.
pub const MAX_QUEUED: usize = 4096;
/// The APP packet's name (RFC 3550: four ASCII characters).
const APP_NAME: &[u8; 4] = b"SLCR";
/// SRTCP's index has 31 bits: the sending SSRC changes before it would wrap, and each
/// SSRC starts a fresh index.
const PACKETS_PER_SSRC: u64 = 1 << 30;
/// Sending SSRCs a receiver accepts over the life of a link (a fresh one every 2^30
/// frames: far more than any link lives to use).
const MAX_SENDER_SSRCS: usize = 64;

/// What happened on the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The handshake completed: frames flow from now on.
    Connected,
    /// The handshake failed or the peer closed the link; it carries nothing more.
    Failed(String),
    /// A frame arrived.
    Frame(RelayFrame),
}

/// Counters of one link (for `sluice_cluster_relay_*` metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames protected and queued.
    pub frames_sent: u64,
    /// Frames authenticated and decoded.
    pub frames_received: u64,
    /// Bytes of protected frames sent.
    pub bytes_sent: u64,
    /// Frames dropped before keys existed or because a queue was full.
    pub frames_dropped: u64,
    /// Datagrams that failed SRTCP authentication, replay checks or decoding.
    pub rejected: u64,
}

/// One end of a relay link.
pub struct RelayLink {
    dtls: Connection,
    srtp: Option<SrtpSession>,
    /// The first SRTCP SSRC this end sends with.
    ssrc_base: u32,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<LinkEvent>,
    stats: LinkStats,
    failed: bool,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for RelayLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayLink")
            .field("connected", &self.srtp.is_some())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl RelayLink {
    /// A link to the node whose certificate has `peer` as fingerprint. The node with the
    /// smaller id plays the DTLS client (both ends must agree without talking first).
    pub fn new(
        config: Arc<sluice_dtls::Config>,
        role: Role,
        peer: Fingerprint,
        ssrc_base: u32,
        now: Instant,
    ) -> Self {
        Self {
            dtls: Connection::new(config, role, PeerAuth::Fingerprint(peer), b"relay", now),
            srtp: None,
            ssrc_base,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: LinkStats::default(),
            failed: false,
            scratch: Vec::new(),
        }
    }

    /// Whether frames can flow.
    pub fn is_connected(&self) -> bool {
        self.srtp.is_some()
    }

    /// The link's counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Protects and queues `frame`; counted and dropped before the handshake completed
    /// or when the queue is full.
    pub fn send(&mut self, frame: &RelayFrame) {
        let Some(srtp) = self.srtp.as_mut() else {
            self.stats.frames_dropped += 1;
            return;
        };
        if self.transmits.len() >= MAX_QUEUED {
            self.stats.frames_dropped += 1;
            return;
        }
        let ssrc = self
            .ssrc_base
            .wrapping_add((self.stats.frames_sent / PACKETS_PER_SSRC) as u32);
        self.scratch.clear();
        frame.encode(&mut self.scratch);
        let packet = app_packet(ssrc, &self.scratch);
        match srtp.protect_rtcp(&packet) {
            Some(protected) => {
                self.stats.frames_sent += 1;
                self.stats.bytes_sent += protected.len() as u64;
                self.transmits.push_back(protected);
            }
            None => self.stats.frames_dropped += 1,
        }
    }

    /// Takes in a datagram from the peer node.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        match datagram.first() {
            Some(20..=63) => {
                self.dtls.handle_datagram(now, datagram);
                self.poll_dtls();
            }
            Some(128..=191) => {
                let frame = self
                    .srtp
                    .as_mut()
                    .ok_or(WireError::Invalid)
                    .and_then(|srtp| {
                        srtp.unprotect_rtcp(datagram)
                            .map_err(|_| WireError::Invalid)
                    })
                    .and_then(|plain| app_data(&plain).and_then(RelayFrame::decode));
                match frame {
                    Ok(frame) if self.events.len() < MAX_QUEUED => {
                        self.stats.frames_received += 1;
                        self.events.push_back(LinkEvent::Frame(frame));
                    }
                    Ok(_) => self.stats.frames_dropped += 1,
                    Err(_) => self.stats.rejected += 1,
                }
            }
            _ => self.stats.rejected += 1,
        }
    }

    /// Lets the handshake's timers run.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.dtls.handle_timeout(now);
        self.poll_dtls();
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.dtls.poll_timeout()
    }

    /// The next datagram for the peer node.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.dtls
            .poll_transmit()
            .or_else(|| self.transmits.pop_front())
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    fn poll_dtls(&mut self) {
        while let Some(event) = self.dtls.poll_event() {
            match event {
                Event::Connected(connected) => {
                    match SrtpSession::new(&connected.srtp, MAX_SENDER_SSRCS) {
                        Ok(srtp) => {
                            self.srtp = Some(srtp);
                            self.events.push_back(LinkEvent::Connected);
                        }
                        Err(error) => self.fail(error.to_string()),
                    }
                }
                Event::Failed(error) => self.fail(error.to_string()),
                Event::Closed => self.fail("closed by the peer".into()),
            }
        }
    }

    fn fail(&mut self, why: String) {
        if !std::mem::replace(&mut self.failed, true) {
            self.srtp = None;
            self.events.push_back(LinkEvent::Failed(why));
        }
    }
}

/// An RTCP APP packet from `ssrc` carrying `data` (its length first, then zero padding
/// to the 32-bit boundary RTCP requires).
fn app_packet(ssrc: u32, data: &[u8]) -> Vec<u8> {
    let body = 4 + data.len();
    let padded = body.div_ceil(4) * 4;
    let words = (8 + 4 + padded) / 4 - 1;
    let mut packet = Vec::with_capacity(12 + padded);
    packet.extend_from_slice(&[0x80, 204]);
    packet.extend_from_slice(&(words as u16).to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend_from_slice(APP_NAME);
    packet.extend_from_slice(&(data.len() as u32).to_be_bytes());
    packet.extend_from_slice(data);
    packet.resize(12 + padded, 0);
    packet
}

/// The data of an APP packet made by [`app_packet`].
fn app_data(packet: &[u8]) -> Result<&[u8], WireError> {
    let header = packet.get(..16).ok_or(WireError::Truncated)?;
    if header.get(..2) != Some(&[0x80, 204][..]) || header.get(8..12) != Some(&APP_NAME[..]) {
        return Err(WireError::Unknown);
    }
    let len = header
        .get(12..16)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .ok_or(WireError::Truncated)? as usize;
    packet
        .get(16..16usize.saturating_add(len))
        .ok_or(WireError::Truncated)
}

#[cfg(test)]
mod tests;
