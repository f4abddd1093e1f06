//! One client's transport, sans-IO: ICE (controlling) -> DTLS -> SRTP over one UDP
//! 5-tuple to the server's candidate.
//!
//! The driver feeds every datagram from the server to
//! [`handle_datagram`](Transport::handle_datagram) and lets time pass with
//! [`handle_timeout`](Transport::handle_timeout) at [`poll_timeout`](Transport::poll_timeout);
//! it sends what [`poll_transmit`](Transport::poll_transmit) returns and protects media
//! with [`protect_rtp`](Transport::protect_rtp) once [`TransportEvent::Connected`] fired.
//! DTLS starts when ICE succeeds (a DTLS client sends its ClientHello then; a DTLS
//! server waits for it), exactly as a browser does.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_dtls::{Connection, Event as DtlsEvent, Fingerprint, PeerAuth, Role, SrtpProfile};
use sluice_ice::{demux, PacketClass};
use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;

use crate::clear::ClearRtp;
use crate::error::ClientError;
use crate::ice::{IceClient, IceClientConfig, IceClientEvent};

/// SRTP replay window, in packets (the library accepts replays without one).
pub const SRTP_REPLAY_WINDOW: usize = 1024;

/// What the transport needs from the negotiation.
#[derive(Debug, Clone)]
pub struct TransportParams {
    /// The server's `a=ice-ufrag`.
    pub remote_ufrag: String,
    /// The server's `a=ice-pwd`.
    pub remote_pwd: String,
    /// Our `a=ice-ufrag`.
    pub local_ufrag: String,
    /// The server certificate's SHA-256 from `a=fingerprint`.
    pub remote_fingerprint: [u8; 32],
    /// Our DTLS role, from the answered `a=setup`.
    pub role: Role,
    /// DTLS engine settings (our certificate, datagram size, timers).
    pub dtls: Arc<sluice_dtls::Config>,
    /// ICE check timing.
    pub ice: IceClientConfig,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportEvent {
    /// ICE succeeded; DTLS starts.
    IceConnected {
        /// Round trip of the successful check.
        rtt: Duration,
    },
    /// DTLS completed and the SRTP contexts are ready.
    Connected {
        /// The DTLS handshake duration measured by the engine.
        dtls_handshake: Duration,
        /// The negotiated SRTP profile.
        profile: SrtpProfile,
    },
    /// ICE consent was lost.
    ConsentLost,
    /// DTLS failed (reason from the engine) or SRTP could not be set up.
    Failed(String),
}

/// A datagram after demultiplexing and decryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Decrypted RTP.
    Rtp(Vec<u8>),
    /// Decrypted RTCP.
    Rtcp(Vec<u8>),
    /// An SRTP packet counted from its clear header and not decrypted
    /// ([`RtpAction::Count`]).
    Clear(ClearRtp),
    /// SRTP/SRTCP authentication failed for a packet claiming this SSRC (or, for
    /// RTP, its SSRC was not wanted: [`RtpAction::Drop`]).
    DecryptFailed {
        /// The SSRC in the clear header.
        ssrc: u32,
    },
    /// Consumed by ICE/DTLS, or dropped.
    Nothing,
}

/// What to do with an SRTP packet, decided from its clear header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpAction {
    /// Not a stream we expect: dropped before decryption (the SRTP library creates
    /// per-SSRC state first, so unknown SSRCs would grow it) and reported as
    /// [`Received::DecryptFailed`].
    Drop,
    /// Count it from the clear header only ([`Received::Clear`]).
    Count,
    /// Authenticate and decrypt it ([`Received::Rtp`]).
    Decrypt,
}

struct Srtp {
    local: Context,
    remote: Context,
    /// Bytes SRTP adds to an RTP packet (authentication or AEAD tag).
    rtp_overhead: usize,
}

/// The ICE + DTLS + SRTP stack of one client.
pub struct Transport {
    params: TransportParams,
    ice: IceClient,
    dtls: Option<Connection>,
    srtp: Option<Srtp>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<TransportEvent>,
    finished: bool,
    /// Datagrams that were neither STUN, DTLS nor RTP/RTCP, or arrived too early.
    pub dropped_datagrams: u64,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("ice", &self.ice)
            .field("srtp", &self.srtp.is_some())
            .finish_non_exhaustive()
    }
}

/// Maps the DTLS engine's profile onto webrtc-srtp's.
pub fn protection_profile(profile: SrtpProfile) -> ProtectionProfile {
    match profile {
        SrtpProfile::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        SrtpProfile::Aes128CmHmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        SrtpProfile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
    }
}

/// Builds (local: protect, remote: unprotect) contexts from exported keys.
pub fn srtp_contexts(
    keys: &sluice_dtls::SrtpKeyingMaterial,
) -> Result<(Context, Context), ClientError> {
    let profile = protection_profile(keys.profile);
    let local = Context::new(&keys.local.key, &keys.local.salt, profile, None, None)
        .map_err(|e| ClientError::Srtp(e.to_string()))?;
    let remote = Context::new(
        &keys.remote.key,
        &keys.remote.salt,
        profile,
        Some(srtp_replay_protection(SRTP_REPLAY_WINDOW)),
        Some(srtcp_replay_protection(SRTP_REPLAY_WINDOW)),
    )
    .map_err(|e| ClientError::Srtp(e.to_string()))?;
    Ok((local, remote))
}

impl Transport {
    /// Starts ICE at `now`.
    pub fn new(params: TransportParams, now: Instant) -> Result<Self, ClientError> {
        let ice = IceClient::new(
            params.ice,
            &params.remote_ufrag,
            &params.remote_pwd,
            &params.local_ufrag,
            now,
        )
        .map_err(|_| ClientError::InvalidConfig("ICE credentials rejected"))?;
        let mut transport = Self {
            params,
            ice,
            dtls: None,
            srtp: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            finished: false,
            dropped_datagrams: 0,
        };
        transport.drain(now);
        Ok(transport)
    }

    /// True once SRTP is ready.
    pub fn is_connected(&self) -> bool {
        self.srtp.is_some()
    }

    /// DTLS counters (retransmissions and more), once DTLS started.
    pub fn dtls_stats(&self) -> Option<sluice_dtls::ConnectionStats> {
        self.dtls.as_ref().map(Connection::stats)
    }

    /// ICE checks sent so far.
    pub fn ice_checks_sent(&self) -> u64 {
        self.ice.checks_sent
    }

    fn start_dtls(&mut self, now: Instant) {
        if self.dtls.is_some() {
            return;
        }
        self.dtls = Some(Connection::new(
            Arc::clone(&self.params.dtls),
            self.params.role,
            PeerAuth::Fingerprint(Fingerprint(self.params.remote_fingerprint)),
            b"sluice-server",
            now,
        ));
    }

    /// Moves transmits and events out of ICE and DTLS.
    fn drain(&mut self, now: Instant) {
        while let Some(bytes) = self.ice.poll_transmit() {
            self.transmits.push_back(bytes);
        }
        while let Some(event) = self.ice.poll_event() {
            match event {
                IceClientEvent::Connected { rtt } => {
                    self.events.push_back(TransportEvent::IceConnected { rtt });
                    self.start_dtls(now);
                }
                IceClientEvent::ConsentLost => {
                    self.finished = true;
                    self.events.push_back(TransportEvent::ConsentLost);
                }
            }
        }
        let Some(dtls) = self.dtls.as_mut() else {
            return;
        };
        while let Some(bytes) = dtls.poll_transmit() {
            self.transmits.push_back(bytes);
        }
        while let Some(event) = dtls.poll_event() {
            match event {
                DtlsEvent::Connected(connected) => match srtp_contexts(&connected.srtp) {
                    Ok((local, remote)) => {
                        let profile = protection_profile(connected.srtp.profile);
                        self.srtp = Some(Srtp {
                            local,
                            remote,
                            rtp_overhead: profile.rtp_auth_tag_len() + profile.aead_auth_tag_len(),
                        });
                        self.events.push_back(TransportEvent::Connected {
                            dtls_handshake: connected.handshake_duration,
                            profile: connected.srtp.profile,
                        });
                    }
                    Err(e) => {
                        self.finished = true;
                        self.events.push_back(TransportEvent::Failed(e.to_string()));
                    }
                },
                DtlsEvent::Failed(e) => {
                    self.finished = true;
                    self.events
                        .push_back(TransportEvent::Failed(format!("dtls: {}", e.reason())));
                }
                DtlsEvent::Closed => {
                    self.finished = true;
                    self.events
                        .push_back(TransportEvent::Failed("dtls: closed by peer".to_owned()));
                }
            }
        }
    }

    /// Handles one datagram from the server's address. `wanted_ssrc` says whether an
    /// SRTP packet's SSRC is one we expect (others are dropped before decryption, which
    /// keeps the SRTP library's per-SSRC state bounded).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        datagram: &[u8],
        wanted_ssrc: impl Fn(u32) -> bool,
    ) -> Received {
        self.handle_datagram_sampled(now, datagram, |clear| {
            if wanted_ssrc(clear.ssrc) {
                RtpAction::Decrypt
            } else {
                RtpAction::Drop
            }
        })
    }

    /// Like [`handle_datagram`](Self::handle_datagram), but `action` decides from each
    /// SRTP packet's clear header whether it is decrypted, only counted
    /// ([`Received::Clear`]) or dropped. SRTCP is always decrypted. Packets that are
    /// not SRTP-sized (header plus tag) are dropped without asking.
    ///
    /// Skipping packets keeps webrtc-srtp's per-SSRC state right: its rollover counter
    /// is guessed from the distance to the last decrypted sequence number (correct for
    /// gaps below 2^15) and its replay window slides over the gaps.
    pub fn handle_datagram_sampled(
        &mut self,
        now: Instant,
        datagram: &[u8],
        action: impl FnOnce(&ClearRtp) -> RtpAction,
    ) -> Received {
        let received = match demux::classify(datagram) {
            PacketClass::Stun => {
                let _ = self.ice.handle_stun(now, datagram);
                Received::Nothing
            }
            PacketClass::Dtls => {
                if self.dtls.is_none()
                    && self.params.role == Role::Server
                    && self.ice.is_connected()
                {
                    self.start_dtls(now);
                }
                match self.dtls.as_mut() {
                    Some(dtls) => dtls.handle_datagram(now, datagram),
                    None => self.dropped_datagrams += 1,
                }
                Received::Nothing
            }
            PacketClass::Rtp => self.unprotect_rtp(datagram, action),
            PacketClass::Rtcp => self.unprotect_rtcp(datagram),
            _ => {
                self.dropped_datagrams += 1;
                Received::Nothing
            }
        };
        self.drain(now);
        received
    }

    fn unprotect_rtp(
        &mut self,
        datagram: &[u8],
        action: impl FnOnce(&ClearRtp) -> RtpAction,
    ) -> Received {
        let Some(srtp) = self.srtp.as_mut() else {
            self.dropped_datagrams += 1;
            return Received::Nothing;
        };
        let Some(clear) = ClearRtp::parse(datagram, srtp.rtp_overhead) else {
            self.dropped_datagrams += 1;
            return Received::Nothing;
        };
        match action(&clear) {
            RtpAction::Drop => {
                self.dropped_datagrams += 1;
                Received::DecryptFailed { ssrc: clear.ssrc }
            }
            RtpAction::Count => Received::Clear(clear),
            RtpAction::Decrypt => srtp
                .remote
                .decrypt_rtp(datagram)
                .map(|b| Received::Rtp(b.to_vec()))
                .unwrap_or(Received::DecryptFailed { ssrc: clear.ssrc }),
        }
    }

    fn unprotect_rtcp(&mut self, datagram: &[u8]) -> Received {
        let Some(srtp) = self.srtp.as_mut() else {
            self.dropped_datagrams += 1;
            return Received::Nothing;
        };
        // The sender SSRC at bytes 4..8.
        let ssrc = datagram
            .get(4..8)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes);
        let Some(ssrc) = ssrc else {
            self.dropped_datagrams += 1;
            return Received::Nothing;
        };
        srtp.remote
            .decrypt_rtcp(datagram)
            .map(|b| Received::Rtcp(b.to_vec()))
            .unwrap_or(Received::DecryptFailed { ssrc })
    }

    /// Lets time pass.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.ice.handle_timeout(now);
        if let Some(dtls) = self.dtls.as_mut() {
            if dtls.poll_timeout().is_some_and(|t| t <= now) {
                dtls.handle_timeout(now);
            }
        }
        self.drain(now);
    }

    /// The next moment [`handle_timeout`](Self::handle_timeout) must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        let dtls = self.dtls.as_ref().and_then(Connection::poll_timeout);
        [self.ice.poll_timeout(), dtls].into_iter().flatten().min()
    }

    /// A datagram to send to the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// What happened.
    pub fn poll_event(&mut self) -> Option<TransportEvent> {
        self.events.pop_front()
    }

    /// Protects a plain RTP packet; `None` before SRTP is ready or on a library error.
    pub fn protect_rtp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        let srtp = self.srtp.as_mut()?;
        srtp.local.encrypt_rtp(packet).ok().map(|b| b.to_vec())
    }

    /// Protects a plain RTCP packet.
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        let srtp = self.srtp.as_mut()?;
        srtp.local.encrypt_rtcp(packet).ok().map(|b| b.to_vec())
    }

    /// Sends close_notify (best effort) and stops timers.
    pub fn close(&mut self, now: Instant) {
        if let Some(dtls) = self.dtls.as_mut() {
            dtls.close();
        }
        self.drain(now);
        self.finished = true;
    }
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod tests;
