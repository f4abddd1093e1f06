//! The sans-IO heart of a media worker: demultiplexing, sessions, forwarding.
//!
//! [`WorkerCore`] owns every session placed on one worker and its [`RouterAdapter`]. The
//! worker thread (`worker.rs`) only moves bytes and time in and out:
//! `handle_datagram` / `handle_command` / `handle_timeout` in, `poll_transmit` and
//! `poll_timeout` out. Unit tests drive it the same way, with no socket.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use sluice_ice::{demux, IceConfig, PacketClass};

use crate::limits::HandshakeBudget;
use crate::media::command::{Command, ParticipantId, PrepareSpec, SessionSpec};
use crate::media::router::{OutputKind, RouterAdapter, RouterSettings};
use crate::media::session::{Context, Effect, Session};
use crate::metrics::{DropReason, Metrics};

/// Most datagrams queued for sending before new ones are dropped (counted `queue_full`).
pub const MAX_QUEUED_TRANSMITS: usize = 8192;

/// Settings of a worker core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Which worker this is (labels its metrics).
    pub worker: usize,
    /// ICE agent settings (consent timeout).
    pub ice: IceConfig,
    /// The DTLS engine configuration shared by every session.
    pub dtls: Arc<sluice_dtls::Config>,
    /// `limits.ssrcs_per_session`.
    pub max_ssrcs_per_session: usize,
    /// `limits.participants_per_room`.
    pub max_participants_per_room: usize,
    /// `limits.rooms` x `limits.participants_per_room`: what signalling can admit, so the
    /// router never refuses a participant signalling let in.
    pub max_participants: usize,
    /// `limits.bitrate_bps_per_session`: inbound RTP budget of each session.
    pub max_bitrate_bps_per_session: u64,
    /// `limits.handshakes_in_flight`, one budget shared by every worker.
    pub handshakes: Arc<HandshakeBudget>,
    /// `media.bandwidth_estimation`: fit each subscriber's media to its estimate.
    pub bandwidth_allocation: bool,
    /// `media.min_publisher_bitrate_bps`.
    pub min_publisher_bitrate_bps: u64,
    /// `media.audio_redundancy` and `media.audio_red_loss_percent`.
    pub audio_red_loss_threshold: Option<f64>,
    /// `media.video_fec` and `media.video_fec_loss_percent`.
    pub video_fec_loss_threshold: Option<f64>,
    /// `media.last_n`.
    pub last_n: usize,
    /// `media.audio_last_n`.
    pub audio_last_n: usize,
}

/// Sessions, demux and forwarding of one worker.
#[derive(Debug)]
pub struct WorkerCore {
    config: CoreConfig,
    metrics: Arc<Metrics>,
    sessions: HashMap<ParticipantId, Session>,
    /// Every session's next deadline, earliest first, so finding what is due costs a
    /// lookup instead of a scan of every session on each wake-up (thousands of sessions
    /// during a reconnect storm).
    timers: BTreeSet<(Instant, ParticipantId)>,
    /// The deadline each session has in `timers`.
    timer_of: HashMap<ParticipantId, Instant>,
    by_ufrag: HashMap<String, ParticipantId>,
    by_addr: HashMap<SocketAddr, ParticipantId>,
    router: RouterAdapter,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    effects: Vec<Effect>,
    /// The router's counters as last added to the metrics, and when to add them next.
    router_stats: sluice_sfu::RouterStats,
    router_stats_due: Option<Instant>,
}

/// How often the router's counters are added to the metrics.
const ROUTER_STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl WorkerCore {
    /// An empty core.
    pub fn new(config: CoreConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            router: RouterAdapter::new(&RouterSettings {
                max_ssrcs: config.max_ssrcs_per_session,
                max_participants_per_room: config.max_participants_per_room,
                max_participants: config.max_participants,
                bandwidth_allocation: config.bandwidth_allocation,
                publisher_bitrate_floor_bps: config.min_publisher_bitrate_bps,
                audio_red_loss_threshold: config.audio_red_loss_threshold,
                video_fec_loss_threshold: config.video_fec_loss_threshold,
                last_n: config.last_n,
                audio_last_n: config.audio_last_n,
            }),
            config,
            metrics,
            sessions: HashMap::new(),
            timers: BTreeSet::new(),
            timer_of: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            transmits: VecDeque::new(),
            effects: Vec::new(),
            router_stats: sluice_sfu::RouterStats::default(),
            router_stats_due: None,
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
            Command::Prepare(spec) => {
                self.prepare(&spec);
            }
            Command::Upsert(spec) => self.upsert(now, *spec),
            Command::Remove(id) => self.remove(id),
            Command::SetMaxLayer {
                subscriber,
                publisher,
                max_layer,
            } => self.router.set_max_layer(subscriber, publisher, max_layer),
        }
    }

    /// Opens `spec`'s session unless it exists; false if its credentials are refused.
    fn prepare(&mut self, spec: &PrepareSpec) -> bool {
        if self.sessions.contains_key(&spec.participant) {
            return true;
        }
        match Session::new(
            spec,
            self.config.ice.clone(),
            self.config.max_bitrate_bps_per_session,
        ) {
            Ok(session) => {
                tracing::debug!(participant = spec.participant.0, room = %spec.room, "session created");
                self.metrics.session_opened();
                self.by_ufrag
                    .insert(spec.local_ice.ufrag.clone(), spec.participant);
                self.sessions.insert(spec.participant, session);
                self.reschedule(spec.participant);
                true
            }
            Err(error) => {
                tracing::warn!(participant = spec.participant.0, %error, "session refused");
                let _ = spec.events.try_send(crate::media::SessionEvent::Failed {
                    reason: crate::metrics::HandshakeFailure::ProtocolError,
                });
                false
            }
        }
    }

    fn upsert(&mut self, now: Instant, spec: SessionSpec) {
        let prepared = self.prepare(&PrepareSpec {
            participant: spec.participant,
            room: spec.room.clone(),
            local_ice: spec.local_ice.clone(),
            events: spec.events.clone(),
        });
        if !prepared {
            return;
        }
        let needs_transport = self
            .sessions
            .get(&spec.participant)
            .is_some_and(|s| !s.has_transport());
        if needs_transport {
            let mut refused = None;
            self.with_session(now, spec.participant, |session, ctx| {
                refused = session.set_transport(now, &spec, ctx).err();
            });
            if let Some(error) = refused {
                tracing::warn!(participant = spec.participant.0, %error, "answer's ICE credentials refused");
                let _ = spec.events.try_send(crate::media::SessionEvent::Failed {
                    reason: crate::metrics::HandshakeFailure::ProtocolError,
                });
                self.remove(spec.participant);
                return;
            }
        }
        self.router.set_participant(
            &spec.room,
            spec.participant,
            &spec.publications,
            &spec.subscriptions,
        );
        self.flush_router();
    }

    fn remove(&mut self, id: ParticipantId) {
        if let Some(session) = self.sessions.remove(&id) {
            tracing::debug!(participant = id.0, room = %session.room, "session removed");
            self.metrics.session_closed();
            self.by_ufrag.retain(|_, p| *p != id);
            self.by_addr.retain(|_, p| *p != id);
        }
        self.reschedule(id);
        self.router.remove_participant(id);
    }

    /// Processes one received datagram. Returns how many RTP packets it made the worker
    /// queue for subscribers (its forwarded copies), which the worker uses to measure
    /// forwarding delay.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        datagram: &[u8],
    ) -> usize {
        self.metrics.packet_received(datagram.len());
        match self.route(now, local, from, datagram) {
            Ok(forwarded) => forwarded,
            Err(reason) => {
                tracing::trace!(%from, reason = reason.as_str(), "datagram dropped");
                self.metrics.packet_dropped(reason);
                0
            }
        }
    }

    fn route(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<usize, DropReason> {
        match demux::classify(datagram) {
            PacketClass::Stun => {
                let ufrag = demux::stun_local_ufrag(datagram).ok_or(DropReason::Malformed)?;
                let id = *self.by_ufrag.get(ufrag).ok_or(DropReason::UnknownSource)?;
                let session = self
                    .sessions
                    .get_mut(&id)
                    .ok_or(DropReason::UnknownSource)?;
                let result = session.ice.handle_stun(now, local, from, datagram);
                self.drive(now, id);
                result.map(|_| 0).map_err(|e| match e.drop_reason() {
                    sluice_ice::StunDrop::Malformed => DropReason::Malformed,
                    _ => DropReason::StunAuthFailed,
                })
            }
            PacketClass::Dtls => {
                let id = self.permitted_session(now, from)?;
                self.with_session(now, id, |session, ctx| {
                    session.handle_dtls(now, from, datagram, ctx);
                });
                Ok(0)
            }
            PacketClass::Rtp => {
                let id = self.permitted_session(now, from)?;
                let session = self
                    .sessions
                    .get_mut(&id)
                    .ok_or(DropReason::UnknownSource)?;
                let srtp = session.srtp.as_mut().ok_or(DropReason::BeforeKeys)?;
                // Checked before decryption (cheap refusal of a flooding peer), spent
                // after it (forged packets cannot drain a session's budget).
                if !session.ingress.admits(now, datagram.len()) {
                    return Err(DropReason::BitrateLimit);
                }
                let plain = srtp.unprotect_rtp(datagram)?;
                session.ingress.consume(datagram.len());
                self.router.handle_rtp(now, id, &plain);
                Ok(self.flush_router())
            }
            PacketClass::Rtcp => {
                let id = self.permitted_session(now, from)?;
                let session = self
                    .sessions
                    .get_mut(&id)
                    .ok_or(DropReason::UnknownSource)?;
                let srtp = session.srtp.as_mut().ok_or(DropReason::BeforeKeys)?;
                let plain = srtp.unprotect_rtcp(datagram)?;
                self.router.handle_rtcp(now, id, &plain);
                self.flush_router();
                Ok(0)
            }
            PacketClass::Zrtp | PacketClass::TurnChannel | PacketClass::Unknown => {
                Err(DropReason::UnknownProtocol)
            }
        }
    }

    /// The live session that ICE has validated `from` for.
    fn permitted_session(
        &self,
        now: Instant,
        from: SocketAddr,
    ) -> Result<ParticipantId, DropReason> {
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
                handshakes: &self.config.handshakes,
                effects: &mut effects,
            };
            f(session, &mut ctx);
        }
        let _ = now;
        self.apply(id, &mut effects);
        self.effects = effects;
        self.reschedule(id);
    }

    /// Files `id`'s current deadline in the timer index (or removes it, for a session
    /// that is gone or has nothing scheduled). Called after anything touched the session.
    fn reschedule(&mut self, id: ParticipantId) {
        let next = self.sessions.get(&id).and_then(Session::poll_timeout);
        let previous = match next {
            Some(at) => self.timer_of.insert(id, at),
            None => self.timer_of.remove(&id),
        };
        if previous == next {
            return;
        }
        if let Some(at) = previous {
            self.timers.remove(&(at, id));
        }
        if let Some(at) = next {
            self.timers.insert((at, id));
        }
    }

    fn drive(&mut self, now: Instant, id: ParticipantId) {
        self.with_session(now, id, |session, ctx| session.drive(now, ctx));
    }

    fn apply(&mut self, id: ParticipantId, effects: &mut Vec<Effect>) {
        for effect in effects.drain(..) {
            match effect {
                Effect::Transmit(destination, data) => {
                    self.queue(destination, data);
                }
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

    /// Queues a datagram; false if the queue was full and it was dropped.
    fn queue(&mut self, destination: SocketAddr, data: Vec<u8>) -> bool {
        if self.transmits.len() >= MAX_QUEUED_TRANSMITS {
            self.metrics.packet_dropped(DropReason::QueueFull);
            return false;
        }
        self.transmits.push_back((destination, data));
        true
    }

    /// Protects and queues what the router produced, returning buffers to its pool.
    /// Returns how many RTP packets were queued.
    fn flush_router(&mut self) -> usize {
        let mut rtp = 0;
        while let Some(output) = self.router.poll_output() {
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
                if self.queue(destination, protected) && output.kind == OutputKind::Rtp {
                    rtp += 1;
                }
            }
            self.router.recycle(output.data);
        }
        rtp
    }

    /// Lets time pass for every session whose timer is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<ParticipantId> = self
            .timers
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            self.with_session(now, id, |session, ctx| session.handle_timeout(now, ctx));
        }
        if self.router.poll_timeout().is_some_and(|t| t <= now) {
            self.router.handle_timeout(now);
            self.flush_router();
            self.deliver_router_events();
        }
        self.publish_router_stats(now);
    }

    /// Tells each subscriber's signalling what the router decided for it.
    fn deliver_router_events(&mut self) {
        while let Some(event) = self.router.poll_event() {
            match event {
                sluice_sfu::RouterEvent::VideoPaused {
                    subscriber,
                    publisher,
                    paused,
                    reason,
                } => {
                    if let Some(session) = self.sessions.get(&subscriber) {
                        session.notify(crate::media::SessionEvent::VideoPaused {
                            publisher,
                            paused,
                            reason,
                        });
                    }
                }
                sluice_sfu::RouterEvent::DominantSpeaker { room, participant } => {
                    // everyone of the room on this worker (a room lives on one worker)
                    for session in self.sessions.values().filter(|s| s.room == room) {
                        session.notify(crate::media::SessionEvent::DominantSpeaker { participant });
                    }
                }
            }
        }
    }

    /// Adds the router's counters to the metrics, at most once per interval.
    fn publish_router_stats(&mut self, now: Instant) {
        if self.router_stats_due.is_some_and(|due| now < due) {
            return;
        }
        self.router_stats_due = Some(now + ROUTER_STATS_INTERVAL);
        let current = self.router.stats();
        self.metrics
            .record_router_stats(&self.router_stats, &current);
        self.router_stats = current;
        let snapshots = self
            .sessions
            .iter()
            .map(|(&id, session)| {
                self.router
                    .subscriber_snapshot(id, &session.room, self.config.worker)
            })
            .collect();
        self.metrics
            .subscribers
            .publish(self.config.worker, snapshots);
    }

    /// The earliest timer of all sessions and the router.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers
            .first()
            .map(|(at, _)| *at)
            .into_iter()
            .chain(self.router.poll_timeout())
            .min()
    }

    /// How many datagrams wait for [`WorkerCore::poll_transmit`]: the worker compares it
    /// before and after a datagram to learn whether that datagram was forwarded.
    pub fn queued_transmits(&self) -> usize {
        self.transmits.len()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sluice_dtls::{Certificate, Connection, Event, PeerAuth, Role};
    use sluice_ice::Credentials;
    use sluice_loadgen::ice::{IceClient, IceClientConfig};
    use tokio::sync::mpsc;

    use super::*;
    use crate::media::command::SessionEvent;

    const LOCAL: &str = "192.0.2.1:40000";
    const PEER: &str = "198.51.100.7:50000";

    struct Harness {
        core: WorkerCore,
        metrics: Arc<Metrics>,
        now: Instant,
        local: SocketAddr,
        peer: SocketAddr,
        server_creds: Credentials,
        client_creds: Credentials,
        client_cert: Arc<Certificate>,
        server_cert: Arc<Certificate>,
        events: mpsc::Receiver<SessionEvent>,
        events_tx: mpsc::Sender<SessionEvent>,
    }

    fn harness(role: Role) -> Harness {
        let mut h = prepared_harness();
        h.answer(role);
        h
    }

    /// A core whose participant 7 joined (the offer is out) but has not answered yet.
    fn prepared_harness() -> Harness {
        let rng = ring::rand::SystemRandom::new();
        let server_cert = Arc::new(Certificate::generate().unwrap());
        let client_cert = Arc::new(Certificate::generate().unwrap());
        let metrics = Arc::new(Metrics::new());
        let mut core = WorkerCore::new(
            CoreConfig {
                worker: 0,
                ice: IceConfig::default(),
                dtls: Arc::new(sluice_dtls::Config::new(Arc::clone(&server_cert))),
                max_ssrcs_per_session: 4,
                max_participants_per_room: 25,
                max_participants: 1000,
                max_bitrate_bps_per_session: 20_000_000,
                handshakes: HandshakeBudget::new(2000),
                bandwidth_allocation: true,
                min_publisher_bitrate_bps: 150_000,
                audio_red_loss_threshold: Some(0.02),
                video_fec_loss_threshold: Some(0.03),
                last_n: 0,
                audio_last_n: 0,
            },
            Arc::clone(&metrics),
        );
        let server_creds = Credentials::generate(&rng).unwrap();
        let client_creds = Credentials::generate(&rng).unwrap();
        let (events_tx, events) = mpsc::channel(16);
        let now = Instant::now();
        core.handle_command(
            now,
            Command::Prepare(Box::new(PrepareSpec {
                participant: ParticipantId(7),
                room: "r".into(),
                local_ice: server_creds.clone(),
                events: events_tx.clone(),
            })),
        );
        Harness {
            core,
            metrics,
            now,
            local: LOCAL.parse().unwrap(),
            peer: PEER.parse().unwrap(),
            server_creds,
            client_creds,
            client_cert,
            server_cert,
            events,
            events_tx,
        }
    }

    impl Harness {
        /// Participant 7's answer reaches the worker: we play `role`.
        fn answer(&mut self, role: Role) {
            self.core.handle_command(
                self.now,
                Command::Upsert(Box::new(SessionSpec {
                    participant: ParticipantId(7),
                    room: "r".into(),
                    local_ice: self.server_creds.clone(),
                    remote_ice: self.client_creds.clone(),
                    remote_fingerprint: self.client_cert.fingerprint(),
                    dtls_role: role,
                    publications: Vec::new(),
                    subscriptions: Vec::new(),
                    events: self.events_tx.clone(),
                })),
            );
        }

        fn dtls_client(&self) -> Connection {
            Connection::new(
                Arc::new(sluice_dtls::Config::new(Arc::clone(&self.client_cert))),
                Role::Client,
                PeerAuth::Fingerprint(self.server_cert.fingerprint()),
                b"server",
                self.now,
            )
        }

        fn feed(&mut self, datagram: &[u8]) {
            self.core
                .handle_datagram(self.now, self.local, self.peer, datagram);
        }

        fn sent(&mut self) -> Vec<Vec<u8>> {
            let mut out = Vec::new();
            while let Some((destination, data)) = self.core.poll_transmit() {
                assert_eq!(destination, self.peer);
                out.push(data);
            }
            out
        }

        fn dropped(&self, reason: DropReason) -> u64 {
            counter(
                &self.metrics.encode(),
                &format!(
                    "sluice_packets_dropped_total{{reason=\"{}\"}}",
                    reason.as_str()
                ),
            )
        }

        /// Runs a nominating ICE check to success; returns what else the core sent.
        fn pass_ice(&mut self) -> Vec<Vec<u8>> {
            let mut client = IceClient::new(
                IceClientConfig::default(),
                &self.server_creds.ufrag,
                &self.server_creds.pwd,
                &self.client_creds.ufrag,
                self.now,
            )
            .unwrap();
            let check = client.poll_transmit().expect("a check");
            self.feed(&check);
            let mut sent = self.sent();
            assert!(!sent.is_empty(), "a STUN response");
            let response = sent.remove(0);
            client
                .handle_stun(self.now, &response)
                .expect("a success response");
            assert!(client.is_connected());
            sent
        }
    }

    fn counter(metrics: &str, series: &str) -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn an_unknown_first_byte_is_dropped_as_unknown_protocol() {
        let mut h = harness(Role::Server);
        h.feed(&[0xFF; 20]);
        assert_eq!(h.dropped(DropReason::UnknownProtocol), 1);
        assert!(h.sent().is_empty());
    }

    #[test]
    fn stun_for_an_unknown_ufrag_is_dropped_as_unknown_source() {
        let mut h = harness(Role::Server);
        let mut client = IceClient::new(
            IceClientConfig::default(),
            "nobody",
            "0123456789abcdefghijkl",
            "me",
            h.now,
        )
        .unwrap();
        let check = client.poll_transmit().unwrap();
        h.feed(&check);
        assert_eq!(h.dropped(DropReason::UnknownSource), 1);
        assert!(h.sent().is_empty());
    }

    #[test]
    fn a_check_with_the_wrong_password_is_answered_with_an_error_and_counted() {
        let mut h = harness(Role::Server);
        let mut client = IceClient::new(
            IceClientConfig::default(),
            &h.server_creds.ufrag,
            "wrong-password-0123456789",
            &h.client_creds.ufrag,
            h.now,
        )
        .unwrap();
        let check = client.poll_transmit().unwrap();
        h.feed(&check);
        assert_eq!(h.dropped(DropReason::StunAuthFailed), 1);
        assert_eq!(h.sent().len(), 1, "a 401 error response is still sent");
    }

    #[test]
    fn dtls_and_rtp_from_an_unvalidated_address_are_dropped() {
        let mut h = harness(Role::Server);
        h.feed(&[22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        h.feed(&[0x80, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0]);
        assert_eq!(h.dropped(DropReason::UnknownSource), 2);
        assert_eq!(
            counter(&h.metrics.encode(), "sluice_dtls_handshakes_started_total"),
            0
        );
    }

    #[test]
    fn rtp_before_the_handshake_is_dropped_as_before_keys() {
        let mut h = harness(Role::Server);
        assert!(h.pass_ice().is_empty());
        h.feed(&[0x80, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0]);
        assert_eq!(h.dropped(DropReason::BeforeKeys), 1);
    }

    /// Shuttles datagrams between the core and a DTLS peer until both settle.
    fn handshake(h: &mut Harness, mut peer: Connection) -> Connection {
        for _ in 0..50 {
            for datagram in h.sent() {
                peer.handle_datagram(h.now, &datagram);
            }
            let mut any = false;
            while let Some(datagram) = peer.poll_transmit() {
                any = true;
                h.feed(&datagram);
            }
            if !any && h.core.is_connected(ParticipantId(7)) && peer.is_connected() {
                break;
            }
            h.now += Duration::from_millis(5);
        }
        peer
    }

    #[test]
    fn a_dtls_handshake_from_a_validated_address_connects_the_session() {
        let mut h = harness(Role::Server);
        assert!(h.pass_ice().is_empty());
        let client = Connection::new(
            Arc::new(sluice_dtls::Config::new(Arc::clone(&h.client_cert))),
            Role::Client,
            PeerAuth::Fingerprint(h.server_cert.fingerprint()),
            b"server",
            h.now,
        );
        let mut client = handshake(&mut h, client);
        assert!(client.is_connected());
        assert!(h.core.is_connected(ParticipantId(7)));
        assert!(matches!(client.poll_event(), Some(Event::Connected(_))));
        assert!(matches!(
            h.events.try_recv(),
            Ok(SessionEvent::Connected { .. })
        ));
        let metrics = h.metrics.encode();
        assert_eq!(counter(&metrics, "sluice_dtls_handshakes_started_total"), 1);
        assert_eq!(
            counter(&metrics, "sluice_dtls_handshakes_completed_total"),
            1
        );
    }

    #[test]
    fn a_wrong_certificate_fails_the_session_and_is_counted() {
        let mut h = harness(Role::Server);
        assert!(h.pass_ice().is_empty());
        let stranger = Arc::new(Certificate::generate().unwrap());
        let client = Connection::new(
            Arc::new(sluice_dtls::Config::new(stranger)),
            Role::Client,
            PeerAuth::Fingerprint(h.server_cert.fingerprint()),
            b"server",
            h.now,
        );
        let _ = handshake(&mut h, client);
        assert!(!h.core.is_connected(ParticipantId(7)));
        assert_eq!(
            h.events.try_recv(),
            Ok(SessionEvent::Failed {
                reason: crate::metrics::HandshakeFailure::BadCertificate
            })
        );
        assert_eq!(
            counter(
                &h.metrics.encode(),
                "sluice_dtls_handshakes_failed_total{reason=\"bad_certificate\"}"
            ),
            1
        );
    }

    #[test]
    fn as_dtls_client_the_worker_starts_at_nomination_and_retransmits_on_its_timer() {
        let mut h = harness(Role::Client);
        let hello = h.pass_ice();
        // One ClientHello: two datagrams, since its X25519MLKEM768 share is 1216 bytes.
        assert_eq!(hello.len(), 2, "one ClientHello");
        assert!(hello.iter().all(|d| d.first() == Some(&22)));
        // Nothing arrives: the timer alone must bring a retransmission.
        let deadline = h.core.poll_timeout().expect("a DTLS timer");
        assert!(deadline > h.now);
        h.now = deadline;
        h.core.handle_timeout(h.now);
        let again = h.sent();
        assert!(!again.is_empty(), "the ClientHello is retransmitted");
        let metrics = h.metrics.encode();
        assert_eq!(
            counter(
                &metrics,
                "sluice_dtls_retransmissions_total{reason=\"timeout\"}"
            ),
            1
        );
    }

    /// The server's final flight (ChangeCipherSpec + Finished) is lost once. The worker
    /// counts the handshake as completed at once; the client's timer repeats flight 5 and
    /// the worker re-sends its final flight: that re-send happens after completion and
    /// must still reach the metric, under its own reason.
    #[test]
    fn a_final_flight_resent_after_completion_is_counted_by_reason() {
        let series =
            |reason: &str| format!("sluice_dtls_retransmissions_total{{reason=\"{reason}\"}}");
        let mut h = harness(Role::Server);
        assert!(h.pass_ice().is_empty());
        // A DTLS 1.2 client: in 1.2 the server sends the final flight (in 1.3 the
        // client does, and the server ACKs it).
        let mut config = sluice_dtls::Config::new(Arc::clone(&h.client_cert));
        config.versions = vec![sluice_dtls::DtlsVersion::Dtls12];
        let mut client = Connection::new(
            Arc::new(config),
            Role::Client,
            PeerAuth::Fingerprint(h.server_cert.fingerprint()),
            b"server",
            h.now,
        );
        let mut lost_final_flight = false;
        let mut at_completion = None;
        for _ in 0..400 {
            for datagram in h.sent() {
                // The final flight is the only server datagram opening with a CCS record.
                if !lost_final_flight && datagram.first() == Some(&20) {
                    lost_final_flight = true;
                    continue;
                }
                client.handle_datagram(h.now, &datagram);
            }
            if client.poll_timeout().is_some_and(|t| t <= h.now) {
                client.handle_timeout(h.now);
            }
            while let Some(datagram) = client.poll_transmit() {
                h.feed(&datagram);
            }
            if h.core.is_connected(ParticipantId(7)) && at_completion.is_none() {
                at_completion = Some(counter(&h.metrics.encode(), &series("final_flight")));
            }
            if client.is_connected() && h.core.is_connected(ParticipantId(7)) {
                break;
            }
            h.now += Duration::from_millis(5);
            if h.core.poll_timeout().is_some_and(|t| t <= h.now) {
                h.core.handle_timeout(h.now);
            }
        }
        assert!(lost_final_flight && client.is_connected());
        assert_eq!(
            at_completion,
            Some(0),
            "nothing re-sent when the worker completed"
        );
        let metrics = h.metrics.encode();
        assert_eq!(counter(&metrics, &series("final_flight")), 1);
        assert_eq!(counter(&metrics, &series("timeout")), 0);
        assert_eq!(counter(&metrics, &series("peer_repeat")), 0);
        assert_eq!(client.stats().timer_retransmissions, 1);
    }

    #[test]
    fn checks_before_the_answer_are_answered_and_early_dtls_waits_for_it() {
        let mut h = prepared_harness();
        assert!(
            h.pass_ice().is_empty(),
            "validated and nominated, nothing else"
        );
        let mut client = h.dtls_client();
        // Both datagrams of the ClientHello (its hybrid key share does not fit one).
        while let Some(hello) = client.poll_transmit() {
            h.feed(&hello);
        }
        assert!(h.sent().is_empty(), "no role yet: the ClientHello is held");
        assert_eq!(
            counter(&h.metrics.encode(), "sluice_dtls_handshakes_started_total"),
            0
        );
        h.answer(Role::Server);
        let flight = h.sent();
        assert!(!flight.is_empty(), "the held ClientHello is answered");
        for datagram in flight {
            client.handle_datagram(h.now, &datagram);
        }
        let client = handshake(&mut h, client);
        assert!(client.is_connected() && h.core.is_connected(ParticipantId(7)));
        assert_eq!(h.dropped(DropReason::UnknownSource), 0);
    }

    #[test]
    fn nominated_before_the_answer_the_dtls_client_starts_when_it_arrives() {
        let mut h = prepared_harness();
        assert!(h.pass_ice().is_empty(), "no role yet: no ClientHello");
        h.answer(Role::Client);
        let hello = h.sent();
        assert_eq!(hello.len(), 2, "one ClientHello, in two datagrams");
        assert!(hello.iter().all(|d| d.first() == Some(&22)));
    }

    #[test]
    fn early_dtls_beyond_the_held_few_is_dropped_and_counted() {
        let mut h = prepared_harness();
        let _ = h.pass_ice();
        let mut client = h.dtls_client();
        let hello = client.poll_transmit().expect("a ClientHello");
        for _ in 0..crate::media::session::MAX_EARLY_DTLS_DATAGRAMS + 3 {
            h.feed(&hello);
        }
        assert_eq!(h.dropped(DropReason::BeforeAnswer), 3);
    }

    #[test]
    fn the_timer_index_follows_a_session_and_forgets_it_when_removed() {
        let mut h = harness(Role::Client);
        let _ = h.pass_ice();
        let session = h
            .core
            .sessions
            .get(&ParticipantId(7))
            .and_then(Session::poll_timeout);
        assert!(session.is_some(), "the ClientHello's retransmission timer");
        assert_eq!(h.core.timers.first().map(|(at, _)| *at), session);
        // a retransmission moves the deadline; the index moves with it
        h.now = session.expect("deadline");
        h.core.handle_timeout(h.now);
        let moved = h
            .core
            .sessions
            .get(&ParticipantId(7))
            .and_then(Session::poll_timeout);
        assert!(moved > session);
        assert_eq!(h.core.timers.len(), 1);
        assert_eq!(h.core.timers.first().map(|(at, _)| *at), moved);
        h.core
            .handle_command(h.now, Command::Remove(ParticipantId(7)));
        assert!(h.core.timers.is_empty() && h.core.timer_of.is_empty());
    }

    #[test]
    fn a_removed_session_no_longer_answers_checks() {
        let mut h = harness(Role::Server);
        h.core
            .handle_command(h.now, Command::Remove(ParticipantId(7)));
        assert_eq!(h.core.session_count(), 0);
        let mut client = IceClient::new(
            IceClientConfig::default(),
            &h.server_creds.ufrag,
            &h.server_creds.pwd,
            &h.client_creds.ufrag,
            h.now,
        )
        .unwrap();
        let check = client.poll_transmit().unwrap();
        h.feed(&check);
        assert!(h.sent().is_empty());
        assert_eq!(h.dropped(DropReason::UnknownSource), 1);
    }
}
