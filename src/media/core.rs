//! The sans-IO heart of a media worker: demultiplexing, sessions, forwarding.
//!
//! [`WorkerCore`] owns every session placed on one worker and its [`Forwarder`]. The
//! worker thread (`worker.rs`) only moves bytes and time in and out:
//! `handle_datagram` / `handle_command` / `handle_timeout` in, `poll_transmit` and
//! `poll_timeout` out. Unit tests drive it the same way, with no socket.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use sluice_ice::{demux, IceConfig, PacketClass};

use crate::media::command::{Command, ParticipantId, SessionSpec};
use crate::media::forward::{ForwardDrop, Forwarder, OutputKind};
use crate::media::session::{Context, Effect, Session};
use crate::metrics::{DropReason, Metrics};

/// Most datagrams queued for sending before new ones are dropped (counted `queue_full`).
pub const MAX_QUEUED_TRANSMITS: usize = 8192;

/// Settings of a worker core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// ICE agent settings (consent timeout).
    pub ice: IceConfig,
    /// The DTLS engine configuration shared by every session.
    pub dtls: Arc<sluice_dtls::Config>,
    /// `limits.ssrcs_per_session`.
    pub max_ssrcs_per_session: usize,
}

/// Sessions, demux and forwarding of one worker.
#[derive(Debug)]
pub struct WorkerCore {
    config: CoreConfig,
    metrics: Arc<Metrics>,
    sessions: HashMap<ParticipantId, Session>,
    by_ufrag: HashMap<String, ParticipantId>,
    by_addr: HashMap<SocketAddr, ParticipantId>,
    forwarder: Forwarder,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    effects: Vec<Effect>,
}

impl WorkerCore {
    /// An empty core.
    pub fn new(config: CoreConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            config,
            metrics,
            sessions: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            forwarder: Forwarder::new(),
            transmits: VecDeque::new(),
            effects: Vec::new(),
        }
    }

    /// How many sessions this worker holds.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Whether `id`'s session has SRTP keys.
    pub fn is_connected(&self, id: ParticipantId) -> bool {
        self.sessions.get(&id).is_some_and(Session::is_connected)
    }

    /// Applies a command from signalling.
    pub fn handle_command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Upsert(spec) => self.upsert(now, *spec),
            Command::Remove(id) => self.remove(id),
        }
    }

    fn upsert(&mut self, now: Instant, spec: SessionSpec) {
        if !self.sessions.contains_key(&spec.participant) {
            match Session::new(&spec, self.config.ice.clone()) {
                Ok(session) => {
                    tracing::debug!(participant = spec.participant, room = %spec.room, "session created");
                    self.metrics.session_opened();
                    self.by_ufrag
                        .insert(spec.local_ice.ufrag.clone(), spec.participant);
                    self.sessions.insert(spec.participant, session);
                }
                Err(error) => {
                    tracing::warn!(participant = spec.participant, %error, "session refused");
                    let _ = spec.events.try_send(crate::media::SessionEvent::Failed {
                        reason: crate::metrics::HandshakeFailure::ProtocolError,
                    });
                    return;
                }
            }
        }
        self.forwarder.set_participant(
            now,
            spec.participant,
            &spec.publications,
            &spec.subscriptions,
        );
        self.flush_forwarder();
    }

    fn remove(&mut self, id: ParticipantId) {
        if let Some(session) = self.sessions.remove(&id) {
            tracing::debug!(participant = id, room = %session.room, "session removed");
            self.metrics.session_closed();
            self.by_ufrag.retain(|_, p| *p != id);
            self.by_addr.retain(|_, p| *p != id);
        }
        self.forwarder.remove_participant(id);
    }

    /// Processes one received datagram.
    pub fn handle_datagram(&mut self, now: Instant, local: SocketAddr, from: SocketAddr, datagram: &[u8]) {
        self.metrics.packet_received(datagram.len());
        if let Err(reason) = self.route(now, local, from, datagram) {
            tracing::trace!(%from, reason = reason.as_str(), "datagram dropped");
            self.metrics.packet_dropped(reason);
        }
    }

    fn route(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), DropReason> {
        match demux::classify(datagram) {
            PacketClass::Stun => {
                let ufrag = demux::stun_local_ufrag(datagram).ok_or(DropReason::Malformed)?;
                let id = *self.by_ufrag.get(ufrag).ok_or(DropReason::UnknownSource)?;
                let session = self.sessions.get_mut(&id).ok_or(DropReason::UnknownSource)?;
                let result = session.ice.handle_stun(now, local, from, datagram);
                self.drive(now, id);
                result.map_err(|e| match e.drop_reason() {
                    sluice_ice::DropReason::Malformed => DropReason::Malformed,
                    _ => DropReason::StunAuthFailed,
                })
            }
            PacketClass::Dtls => {
                let id = self.permitted_session(now, from)?;
                self.with_session(now, id, |session, ctx| {
                    session.handle_dtls(now, from, datagram, ctx);
                });
                Ok(())
            }
            PacketClass::Rtp => {
                let id = self.permitted_session(now, from)?;
                let session = self.sessions.get_mut(&id).ok_or(DropReason::UnknownSource)?;
                let srtp = session.srtp.as_mut().ok_or(DropReason::BeforeKeys)?;
                let plain = srtp.unprotect_rtp(datagram)?;
                match self.forwarder.handle_rtp(now, id, &plain) {
                    Ok(_) => {}
                    Err(ForwardDrop::Malformed) => return Err(DropReason::Malformed),
                    Err(ForwardDrop::UnknownSsrc) => return Err(DropReason::SsrcLimit),
                    Err(ForwardDrop::UnknownParticipant | ForwardDrop::Retransmission) => {}
                }
                self.flush_forwarder();
                Ok(())
            }
            PacketClass::Rtcp => {
                let id = self.permitted_session(now, from)?;
                let session = self.sessions.get_mut(&id).ok_or(DropReason::UnknownSource)?;
                let srtp = session.srtp.as_mut().ok_or(DropReason::BeforeKeys)?;
                let plain = srtp.unprotect_rtcp(datagram)?;
                self.forwarder.handle_rtcp(now, id, &plain);
                self.flush_forwarder();
                Ok(())
            }
            PacketClass::Zrtp | PacketClass::TurnChannel | PacketClass::Unknown => {
                Err(DropReason::UnknownProtocol)
            }
        }
    }

    /// The live session that ICE has validated `from` for.
    fn permitted_session(&self, now: Instant, from: SocketAddr) -> Result<ParticipantId, DropReason> {
        let id = *self.by_addr.get(&from).ok_or(DropReason::UnknownSource)?;
        let session = self.sessions.get(&id).ok_or(DropReason::UnknownSource)?;
        if session.dead || !session.ice.is_permitted_at(now, from) {
            return Err(DropReason::NotNominated);
        }
        Ok(id)
    }

    fn with_session(
        &mut self,
        now: Instant,
        id: ParticipantId,
        f: impl FnOnce(&mut Session, &mut Context<'_>),
    ) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        let mut effects = std::mem::take(&mut self.effects);
        {
            let mut ctx = Context {
                metrics: &self.metrics,
                dtls_config: &self.config.dtls,
                max_ssrcs: self.config.max_ssrcs_per_session,
                effects: &mut effects,
            };
            f(session, &mut ctx);
        }
        let _ = now;
        self.apply(id, &mut effects);
        self.effects = effects;
    }

    fn drive(&mut self, now: Instant, id: ParticipantId) {
        self.with_session(now, id, |session, ctx| session.drive(now, ctx));
    }

    fn apply(&mut self, id: ParticipantId, effects: &mut Vec<Effect>) {
        for effect in effects.drain(..) {
            match effect {
                Effect::Transmit(destination, data) => self.queue(destination, data),
                Effect::Permit(addr) => {
                    // An address belongs to the session that validated it last.
                    self.by_addr.insert(addr, id);
                }
                Effect::Revoke(addr) => {
                    if self.by_addr.get(&addr) == Some(&id) {
                        self.by_addr.remove(&addr);
                    }
                }
            }
        }
    }

    fn queue(&mut self, destination: SocketAddr, data: Vec<u8>) {
        if self.transmits.len() >= MAX_QUEUED_TRANSMITS {
            self.metrics.packet_dropped(DropReason::QueueFull);
            return;
        }
        self.transmits.push_back((destination, data));
    }

    /// Protects and queues what the forwarder produced.
    fn flush_forwarder(&mut self) {
        while let Some(output) = self.forwarder.poll_output() {
            let Some(session) = self.sessions.get_mut(&output.to) else {
                continue;
            };
            if session.dead {
                continue;
            }
            let Some(destination) = session.media_destination() else {
                continue;
            };
            let Some(srtp) = session.srtp.as_mut() else {
                continue;
            };
            let protected = match output.kind {
                OutputKind::Rtp => srtp.protect_rtp(&output.data),
                OutputKind::Rtcp => srtp.protect_rtcp(&output.data),
            };
            if let Some(protected) = protected {
                self.queue(destination, protected);
            }
        }
    }

    /// Lets time pass for every session whose timer is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<ParticipantId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.with_session(now, id, |session, ctx| session.handle_timeout(now, ctx));
        }
    }

    /// The earliest timer of all sessions.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sessions.values().filter_map(Session::poll_timeout).min()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }
}
