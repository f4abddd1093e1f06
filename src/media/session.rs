//! One participant's transport on a worker: ICE-lite agent, DTLS connection, SRTP.
//!
//! The session is sans-IO like the crates it combines: the worker feeds it datagrams
//! and time and collects [`Effect`]s (datagrams to send, addresses to index).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use sluice_dtls::{Connection, ConnectionStats, Event as DtlsEvent, Fingerprint, PeerAuth, Role};
use sluice_ice::{IceConfig, IceEvent, IceLite};
use tokio::sync::mpsc;

use crate::limits::{HandshakeBudget, HandshakeSlot, TokenBucket};
use crate::media::command::{ParticipantId, PrepareSpec, SessionEvent, SessionSpec};
use crate::media::srtp::SrtpSession;
use crate::metrics::{DropReason, HandshakeFailure, Metrics};

/// What the worker must do after a session processed an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send this datagram.
    Transmit(SocketAddr, Vec<u8>),
    /// `addr` passed ICE: DTLS/SRTP from it belongs to this session.
    Permit(SocketAddr),
    /// `addr` lost consent.
    Revoke(SocketAddr),
}

/// Maps a DTLS failure onto the metrics label.
pub fn handshake_failure(error: &sluice_dtls::Error) -> HandshakeFailure {
    use sluice_dtls::Error as E;
    match error {
        E::HandshakeTimeout { .. } => HandshakeFailure::Timeout,
        E::BadCertificate { .. }
        | E::FingerprintMismatch
        | E::NoPeerCertificate
        | E::BadSignature { .. } => HandshakeFailure::BadCertificate,
        E::PeerAlert(_) => HandshakeFailure::PeerAlert,
        E::NoCommonParameters { .. }
        | E::UnsupportedVersion
        | E::MissingExtendedMasterSecret
        | E::MissingSrtp => HandshakeFailure::NoCommonParameters,
        E::MessageTooLarge { .. } => HandshakeFailure::BufferLimit,
        E::ClosedLocally => HandshakeFailure::Aborted,
        _ => HandshakeFailure::ProtocolError,
    }
}

/// One participant's transport.
#[derive(Debug)]
pub struct Session {
    /// The participant.
    pub participant: ParticipantId,
    /// Its room.
    pub room: String,
    /// The ICE-lite agent.
    pub ice: IceLite,
    dtls: Option<Connection>,
    /// Our DTLS role and the only certificate fingerprint accepted, from the answer;
    /// `None` while the session is prepared but its answer has not arrived.
    transport: Option<(Role, Fingerprint)>,
    /// DTLS that came from a validated address before the answer did (a browser that
    /// is DTLS client starts right after ICE): replayed when the answer arrives.
    early_dtls: VecDeque<(SocketAddr, Vec<u8>)>,
    /// The DTLS counters already added to the metrics (the next snapshot adds the rest).
    dtls_stats_reported: ConnectionStats,
    /// Where the last DTLS datagram came from (answers go back there before nomination).
    dtls_peer: Option<SocketAddr>,
    /// SRTP contexts, once DTLS connected.
    pub srtp: Option<SrtpSession>,
    events: mpsc::Sender<SessionEvent>,
    /// Set when DTLS failed or ICE lost every path: the session carries nothing more.
    pub dead: bool,
    /// Tracing span with the participant and room ids.
    pub span: tracing::Span,
    /// Counts this handshake against `limits.handshakes_in_flight` until it ends.
    handshake_slot: Option<HandshakeSlot>,
    /// Nomination came while the handshake budget was spent, or before the answer said
    /// which DTLS role we play: as client, start on a later input (the peer's next check,
    /// the answer) once a slot is free.
    client_start_pending: bool,
    /// Inbound media budget (`limits.bitrate_bps_per_session`).
    pub ingress: TokenBucket,
}

/// DTLS datagrams held per session while its answer is on the way: a ClientHello flight
/// and a few retransmissions of it. More are dropped (the peer retransmits).
pub const MAX_EARLY_DTLS_DATAGRAMS: usize = 8;

impl Session {
    /// Passes an event to the participant's signalling (best effort: a full channel
    /// means signalling is behind and will resynchronise).
    pub fn notify(&self, event: SessionEvent) {
        let _ = self.events.try_send(event);
    }

    /// A session that answers ICE checks with our credentials (any remote ufrag until
    /// the answer names one) and waits for [`set_transport`](Self::set_transport).
    /// Fails only on invalid ICE credentials.
    pub fn new(
        spec: &PrepareSpec,
        ice_config: IceConfig,
        bitrate_bps: u64,
    ) -> Result<Session, sluice_ice::IceError> {
        let ice = IceLite::new(ice_config, spec.local_ice.clone())?;
        let span =
            tracing::info_span!("session", participant = spec.participant.0, room = %spec.room);
        Ok(Session {
            participant: spec.participant,
            room: spec.room.clone(),
            ice,
            dtls: None,
            transport: None,
            early_dtls: VecDeque::new(),
            dtls_stats_reported: ConnectionStats::default(),
            dtls_peer: None,
            srtp: None,
            events: spec.events.clone(),
            dead: false,
            span,
            handshake_slot: None,
            client_start_pending: false,
            ingress: TokenBucket::new(bitrate_bps),
        })
    }

    /// Whether the answer's transport parameters have arrived.
    pub fn has_transport(&self) -> bool {
        self.transport.is_some()
    }

    /// Applies the answer's transport parameters (once: they cannot change on a
    /// connection), then replays any DTLS that arrived before them.
    pub fn set_transport(
        &mut self,
        now: Instant,
        spec: &SessionSpec,
        ctx: &mut Context<'_>,
    ) -> Result<(), sluice_ice::IceError> {
        if self.transport.is_some() {
            return Ok(());
        }
        self.ice.set_remote_credentials(spec.remote_ice.clone())?;
        self.transport = Some((spec.dtls_role, spec.remote_fingerprint));
        let held = std::mem::take(&mut self.early_dtls);
        for (from, datagram) in held {
            if self.dead {
                break;
            }
            self.handle_dtls(now, from, &datagram, ctx);
        }
        self.drive(now, ctx);
        Ok(())
    }

    /// Where media goes: the nominated address, else where DTLS came from.
    pub fn media_destination(&self) -> Option<SocketAddr> {
        self.ice.nominated().or(self.dtls_peer)
    }

    /// Whether SRTP keys are installed.
    pub fn is_connected(&self) -> bool {
        self.srtp.is_some()
    }

    /// The earliest moment this session needs [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ice = self.ice.poll_timeout();
        let dtls = self.dtls.as_ref().and_then(Connection::poll_timeout);
        match (ice, dtls) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Lets time pass for the agent and the connection.
    pub fn handle_timeout(&mut self, now: Instant, ctx: &mut Context<'_>) {
        if self.ice.poll_timeout().is_some_and(|t| t <= now) {
            self.ice.handle_timeout(now);
        }
        if let Some(dtls) = &mut self.dtls {
            if dtls.poll_timeout().is_some_and(|t| t <= now) {
                dtls.handle_timeout(now);
            }
        }
        self.drive(now, ctx);
    }

    /// Feeds a DTLS datagram from a permitted address.
    pub fn handle_dtls(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        ctx: &mut Context<'_>,
    ) {
        if self.transport.is_none() {
            if self.early_dtls.len() < MAX_EARLY_DTLS_DATAGRAMS {
                self.early_dtls.push_back((from, datagram.to_vec()));
            } else {
                ctx.metrics.packet_dropped(DropReason::BeforeAnswer);
            }
            return;
        }
        if self.dtls.is_none() && !self.start_dtls(now, from, ctx) {
            // Over limits.handshakes_in_flight: the peer retransmits its ClientHello.
            ctx.metrics.packet_dropped(DropReason::AdmissionLimit);
            return;
        }
        self.dtls_peer = Some(from);
        if let Some(dtls) = &mut self.dtls {
            dtls.handle_datagram(now, datagram);
        }
        self.drive(now, ctx);
    }

    /// Starts the handshake if `limits.handshakes_in_flight` allows; false if not.
    fn start_dtls(&mut self, now: Instant, peer: SocketAddr, ctx: &Context<'_>) -> bool {
        let Some((role, fingerprint)) = self.transport else {
            return false;
        };
        let span = self.span.clone();
        let _enter = span.enter();
        let Some(slot) = ctx.handshakes.try_acquire() else {
            tracing::debug!(%peer, "DTLS handshake deferred: handshakes_in_flight reached");
            return false;
        };
        self.handshake_slot = Some(slot);
        tracing::debug!(?role, %peer, "DTLS handshake starting");
        ctx.metrics.dtls_handshake_started();
        self.dtls = Some(Connection::new(
            Arc::clone(ctx.dtls_config),
            role,
            PeerAuth::Fingerprint(fingerprint),
            peer.to_string().as_bytes(),
            now,
        ));
        true
    }

    /// Drains the agent and the connection after any input.
    pub fn drive(&mut self, now: Instant, ctx: &mut Context<'_>) {
        let client = matches!(self.transport, Some((Role::Client, _)));
        if client && self.client_start_pending && self.dtls.is_none() && !self.dead {
            if let Some(addr) = self.ice.nominated() {
                if self.start_dtls(now, addr, ctx) {
                    self.client_start_pending = false;
                    self.dtls_peer = Some(addr);
                }
            }
        }
        while let Some(transmit) = self.ice.poll_transmit() {
            ctx.effects
                .push(Effect::Transmit(transmit.destination, transmit.contents));
        }
        while let Some(event) = self.ice.poll_event() {
            self.on_ice_event(now, event, ctx);
        }
        let Some(dtls) = &mut self.dtls else { return };
        let destination = self.dtls_peer.or(self.ice.nominated());
        while let Some(datagram) = dtls.poll_transmit() {
            if let Some(destination) = destination {
                ctx.effects.push(Effect::Transmit(destination, datagram));
            }
        }
        let mut events = Vec::new();
        while let Some(event) = dtls.poll_event() {
            events.push(event);
        }
        let stats = dtls.stats();
        ctx.metrics
            .record_dtls_retransmissions(&self.dtls_stats_reported, &stats);
        self.dtls_stats_reported = stats;
        let span = self.span.clone();
        for event in events {
            let _enter = span.enter();
            match event {
                DtlsEvent::Connected(connected) => {
                    self.handshake_slot = None;
                    ctx.metrics
                        .dtls_handshake_completed(connected.handshake_duration);
                    ctx.metrics
                        .dtls_handshake_negotiated(connected.version, connected.group);
                    match SrtpSession::new(&connected.srtp, ctx.max_ssrcs) {
                        Ok(srtp) => {
                            tracing::info!(
                                handshake_ms = connected.handshake_duration.as_millis() as u64,
                                profile = connected.srtp.profile.name(),
                                version = connected.version.as_str(),
                                group = connected.group.as_str(),
                                cipher_suite = connected.cipher_suite.as_str(),
                                retransmissions = stats.total_retransmissions(),
                                "DTLS connected"
                            );
                            self.srtp = Some(srtp);
                            let _ = self.events.try_send(SessionEvent::Connected {
                                handshake_duration: connected.handshake_duration,
                            });
                        }
                        Err(error) => {
                            tracing::warn!(%error, "SRTP setup failed");
                            self.fail(HandshakeFailure::ProtocolError, ctx.metrics);
                        }
                    }
                }
                DtlsEvent::Failed(error) => {
                    tracing::info!(%error, reason = error.reason(), "DTLS failed");
                    // A failure after completion (e.g. a fatal alert) ends media too.
                    self.fail(handshake_failure(&error), ctx.metrics);
                }
                DtlsEvent::Closed => {
                    tracing::info!("DTLS closed by the peer");
                    self.handshake_slot = None;
                    self.dead = true;
                    let _ = self.events.try_send(SessionEvent::Disconnected);
                }
            }
        }
    }

    fn fail(&mut self, reason: HandshakeFailure, metrics: &Metrics) {
        self.handshake_slot = None;
        if self.srtp.is_none() {
            metrics.dtls_handshake_failed(reason);
        }
        self.dead = true;
        self.srtp = None;
        let _ = self.events.try_send(SessionEvent::Failed { reason });
    }

    fn on_ice_event(&mut self, now: Instant, event: IceEvent, ctx: &mut Context<'_>) {
        let span = self.span.clone();
        let _enter = span.enter();
        match event {
            IceEvent::Validated(addr) => {
                tracing::debug!(%addr, "ICE validated");
                ctx.effects.push(Effect::Permit(addr));
            }
            IceEvent::Nominated(addr) => {
                tracing::debug!(%addr, "ICE nominated");
                ctx.effects.push(Effect::Permit(addr));
                if self.dtls.is_none() && self.transport.is_none() {
                    // The role is in the answer: start (as client) once it arrives.
                    self.client_start_pending = true;
                } else if self.dtls.is_none() && matches!(self.transport, Some((Role::Client, _))) {
                    if self.start_dtls(now, addr, ctx) {
                        self.dtls_peer = Some(addr);
                    } else {
                        ctx.metrics.packet_dropped(DropReason::AdmissionLimit);
                        self.client_start_pending = true;
                    }
                }
            }
            IceEvent::ConsentExpired(addr) => {
                tracing::debug!(%addr, "ICE consent expired");
                ctx.effects.push(Effect::Revoke(addr));
                if self.dtls_peer == Some(addr) {
                    self.dtls_peer = None;
                }
            }
            IceEvent::Disconnected => {
                tracing::info!("ICE consent expired on every path: disconnected");
                ctx.metrics.ice_consent_expired();
                self.handshake_slot = None;
                self.dead = true;
                let _ = self.events.try_send(SessionEvent::Disconnected);
            }
        }
    }
}

/// What a session needs from its worker while processing an input.
pub struct Context<'a> {
    /// Counters.
    pub metrics: &'a Metrics,
    /// The shared DTLS engine configuration.
    pub dtls_config: &'a Arc<sluice_dtls::Config>,
    /// `limits.ssrcs_per_session`.
    pub max_ssrcs: usize,
    /// `limits.handshakes_in_flight`, shared by every worker.
    pub handshakes: &'a Arc<HandshakeBudget>,
    /// Collected effects, applied by the worker.
    pub effects: &'a mut Vec<Effect>,
}
