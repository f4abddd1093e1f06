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
use crate::media::command::{
    Command, ParticipantId, PrepareSpec, PublicationSpec, RoomSpan, SessionSpec,
};
use crate::media::relay::{self, RelayBatch, RelayMessage, RelayOutbox};
use crate::media::router::{OutputKind, RouterAdapter, RouterSettings};
use crate::media::session::{Context, Effect, Session};
use crate::metrics::{DropReason, Metrics, RelayPath};

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
    /// Rooms of this worker that span others (and rooms it was taken out of, so that a
    /// late message about them is recognised), by name.
    spans: HashMap<String, Span>,
    /// Publishers of other workers copied into this worker's router, by id.
    mirrors: HashMap<ParticipantId, Mirror>,
    /// What each local participant publishes, as told to the other workers of its room.
    published: HashMap<ParticipantId, Vec<PublicationSpec>>,
    /// Messages for the other workers, sent at the next flush.
    relay: RelayOutbox,
    /// REMB caps other workers' subscribers put on local publishers' streams, by
    /// publisher and SSRC, with the worker and when.
    remote_caps: HashMap<(ParticipantId, u32), Vec<RemoteCap>>,
    /// What this worker's router last asked local publishers for, by publisher and SSRC
    /// (kept while other workers cap them too).
    own_rembs: HashMap<(ParticipantId, u32), (u64, Instant)>,
    /// The time of the call being handled (for what `flush_router` does with caps).
    now: Option<Instant>,
}

/// One worker's REMB cap on a stream.
#[derive(Debug, Clone, Copy)]
struct RemoteCap {
    worker: usize,
    bps: u64,
    at: Instant,
}

/// How long a cap from another worker holds without being repeated (routers send REMB
/// about once a second).
const REMOTE_CAP_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3);
/// Most streams with caps from other workers.
const MAX_CAPPED_STREAMS: usize = 4096;

/// This worker's view of a room that spans workers.
#[derive(Debug, Clone)]
struct Span {
    /// The newest [`RoomSpan`] version applied.
    version: u64,
    /// Whether this worker hosts members of the room.
    here: bool,
    /// The other workers that do (empty when `here` is false).
    others: Vec<usize>,
}

/// A publisher whose session is on another worker (its home), mirrored here.
#[derive(Debug, Clone)]
struct Mirror {
    home: usize,
    room: String,
}

/// Rooms this worker was taken out of that it still remembers (a late relay message
/// about one must not bring back a mirror); the oldest are forgotten first.
const MAX_REMEMBERED_DEPARTURES: usize = 1024;

/// Most packets one relayed NACK has answered from the cache.
const MAX_RELAYED_NACK_ANSWERS: usize = 64;

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
            spans: HashMap::new(),
            mirrors: HashMap::new(),
            published: HashMap::new(),
            relay: RelayOutbox::default(),
            remote_caps: HashMap::new(),
            own_rembs: HashMap::new(),
            now: None,
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
        self.now = Some(now);
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
            Command::RoomSpan(span) => {
                self.set_span(span);
                self.flush_router();
            }
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
        self.announce_publications(&spec.room, spec.participant, &spec.publications);
        self.flush_router();
    }

    fn remove(&mut self, id: ParticipantId) {
        if let Some(session) = self.sessions.remove(&id) {
            tracing::debug!(participant = id.0, room = %session.room, "session removed");
            self.metrics.session_closed();
            self.by_ufrag.retain(|_, p| *p != id);
            self.by_addr.retain(|_, p| *p != id);
            self.remote_caps
                .retain(|(publisher, _), _| *publisher != id);
            self.own_rembs.retain(|(publisher, _), _| *publisher != id);
            if self.published.remove(&id).is_some() {
                for worker in self.others_of(&session.room) {
                    self.relay_push(worker, RelayMessage::Gone(id), None);
                }
            }
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
        self.now = Some(now);
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
                let forwarded = self.flush_router();
                self.relay_publisher_packet(id, plain, false);
                Ok(forwarded)
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
                self.relay_publisher_packet(id, plain, true);
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

    /// Protects and queues what the router produced, returning buffers to its pool;
    /// what it addressed to a mirrored publisher goes to that publisher's worker
    /// (feedback only). Returns how many RTP packets were queued.
    fn flush_router(&mut self) -> usize {
        let mut rtp = 0;
        while let Some(output) = self.router.poll_output() {
            if self.sessions.contains_key(&output.to) {
                let capped = (output.kind == OutputKind::Rtcp && !self.remote_caps.is_empty())
                    .then(|| self.cap_remb(output.to, &output.data))
                    .flatten();
                let data = capped.as_deref().unwrap_or(&output.data);
                if self.send_to_session(output.to, output.kind, data)
                    && output.kind == OutputKind::Rtp
                {
                    rtp += 1;
                }
            } else if let Some(home) = self.mirrors.get(&output.to).map(|m| m.home) {
                if output.kind == OutputKind::Rtcp {
                    if let Some(data) = relay::feedback(&output.data) {
                        let message = RelayMessage::Feedback {
                            participant: output.to,
                            data,
                        };
                        self.relay_push(home, message, Some(RelayPath::FeedbackOut));
                    }
                }
            }
            self.router.recycle(output.data);
        }
        rtp
    }

    /// The lowest fresh cap other workers put on `publisher`'s stream `ssrc`.
    fn remote_cap(&self, publisher: ParticipantId, ssrc: u32) -> Option<u64> {
        let now = self.now?;
        self.remote_caps
            .get(&(publisher, ssrc))?
            .iter()
            .filter(|c| now.saturating_duration_since(c.at) < REMOTE_CAP_LIFETIME)
            .map(|c| c.bps)
            .min()
    }

    /// A REMB of this worker's router toward local `publisher`, lowered to what the
    /// subscribers on other workers can take, if they take less. What the router asked
    /// for is remembered, so that a cap from another worker never raises it.
    fn cap_remb(&mut self, publisher: ParticipantId, data: &[u8]) -> Option<Vec<u8>> {
        if let Some(now) = self.now {
            for item in sluice_rtp::RtcpIter::new(data) {
                let Ok(sluice_rtp::RtcpPacket::Remb(remb)) = item else {
                    continue;
                };
                for ssrc in remb.ssrcs() {
                    if self.own_rembs.len() < MAX_CAPPED_STREAMS
                        || self.own_rembs.contains_key(&(publisher, ssrc))
                    {
                        self.own_rembs
                            .insert((publisher, ssrc), (remb.bitrate_bps, now));
                    }
                }
            }
        }
        relay::capped_remb(data, |ssrc| self.remote_cap(publisher, ssrc))
    }

    /// What this worker's router last asked `publisher` for on `ssrc`, while fresh.
    fn own_remb(&self, publisher: ParticipantId, ssrc: u32) -> Option<u64> {
        let now = self.now?;
        self.own_rembs
            .get(&(publisher, ssrc))
            .filter(|(_, at)| now.saturating_duration_since(*at) < REMOTE_CAP_LIFETIME)
            .map(|(bps, _)| *bps)
    }

    /// Records another worker's REMB for local publisher `id` and passes the lowest cap
    /// to the publisher at once when it lowers what it was told.
    fn remote_remb(&mut self, from: usize, id: ParticipantId, remb: &sluice_rtp::rtcp::Remb<'_>) {
        let Some(now) = self.now else {
            return;
        };
        let mut lowest = None::<u64>;
        for ssrc in remb.ssrcs() {
            if !self.remote_caps.contains_key(&(id, ssrc))
                && self.remote_caps.len() >= MAX_CAPPED_STREAMS
            {
                continue;
            }
            let caps = self.remote_caps.entry((id, ssrc)).or_default();
            caps.retain(|c| {
                c.worker != from && now.saturating_duration_since(c.at) < REMOTE_CAP_LIFETIME
            });
            caps.push(RemoteCap {
                worker: from,
                bps: remb.bitrate_bps,
                at: now,
            });
            let cap = [self.remote_cap(id, ssrc), self.own_remb(id, ssrc)]
                .into_iter()
                .flatten()
                .min();
            lowest = [lowest, cap].into_iter().flatten().min();
        }
        if let Some(lowest) = lowest {
            let ssrcs: Vec<u32> = remb.ssrcs().collect();
            let mut out = Vec::new();
            sluice_rtp::write_remb(remb.sender_ssrc, lowest, &ssrcs, &mut out);
            self.send_to_session(id, OutputKind::Rtcp, &out);
        }
    }

    /// SRTP-protects `data` for `id`'s session and queues it; false when the session
    /// cannot send (no keys or path yet, dead) or the queue is full.
    fn send_to_session(&mut self, id: ParticipantId, kind: OutputKind, data: &[u8]) -> bool {
        let Some(session) = self.sessions.get_mut(&id) else {
            return false;
        };
        if session.dead {
            return false;
        }
        let Some(destination) = session.media_destination() else {
            return false;
        };
        let Some(srtp) = session.srtp.as_mut() else {
            return false;
        };
        let protected = match kind {
            OutputKind::Rtp => srtp.protect_rtp(data),
            OutputKind::Rtcp => srtp.protect_rtcp(data),
        };
        protected.is_some_and(|protected| self.queue(destination, protected))
    }

    /// Applies signalling's latest decision about which workers host `span.room`.
    fn set_span(&mut self, span: RoomSpan) {
        let me = self.config.worker;
        let before = match self.spans.get(&span.room) {
            Some(known) if known.version >= span.version => return,
            Some(known) => known.others.clone(),
            None => Vec::new(),
        };
        let here = span.workers.contains(&me);
        let others: Vec<usize> = if here {
            span.workers.iter().copied().filter(|w| *w != me).collect()
        } else {
            Vec::new()
        };
        let stale: Vec<ParticipantId> = self
            .mirrors
            .iter()
            .filter(|(_, m)| m.room == span.room && !others.contains(&m.home))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.drop_mirror(id);
        }
        let added: Vec<usize> = others
            .iter()
            .copied()
            .filter(|w| !before.contains(w))
            .collect();
        if !added.is_empty() {
            // a worker new to the room learns what everyone here publishes
            let publishers: Vec<(ParticipantId, Vec<PublicationSpec>)> = self
                .published
                .iter()
                .filter(|(id, p)| {
                    !p.is_empty() && self.sessions.get(id).is_some_and(|s| s.room == span.room)
                })
                .map(|(id, p)| (*id, p.clone()))
                .collect();
            for worker in added {
                for (participant, publications) in &publishers {
                    let message = RelayMessage::Publications {
                        room: span.room.clone(),
                        version: span.version,
                        participant: *participant,
                        publications: publications.clone(),
                    };
                    self.relay_push(worker, message, None);
                }
            }
        }
        tracing::debug!(room = %span.room, workers = ?span.workers, version = span.version, "room span changed");
        self.spans.insert(
            span.room,
            Span {
                version: span.version,
                here,
                others,
            },
        );
        self.forget_old_departures();
    }

    /// Keeps at most [`MAX_REMEMBERED_DEPARTURES`] rooms this worker left.
    fn forget_old_departures(&mut self) {
        let departed = self.spans.values().filter(|s| !s.here).count();
        if departed <= MAX_REMEMBERED_DEPARTURES {
            return;
        }
        let mut versions: Vec<u64> = self
            .spans
            .values()
            .filter(|s| !s.here)
            .map(|s| s.version)
            .collect();
        versions.sort_unstable();
        let cutoff = versions
            .get(departed - MAX_REMEMBERED_DEPARTURES)
            .copied()
            .unwrap_or(0);
        self.spans.retain(|_, s| s.here || s.version >= cutoff);
    }

    /// The other workers of `room` (none unless it spans workers).
    fn others_of(&self, room: &str) -> Vec<usize> {
        self.spans
            .get(room)
            .map_or_else(Vec::new, |s| s.others.clone())
    }

    /// Tells the other workers of `room` what local participant `id` publishes, when it
    /// changed.
    fn announce_publications(
        &mut self,
        room: &str,
        id: ParticipantId,
        publications: &[PublicationSpec],
    ) {
        let known = self.published.get(&id);
        if known.map(Vec::as_slice) == Some(publications)
            || (known.is_none() && publications.is_empty())
        {
            return;
        }
        self.published.insert(id, publications.to_vec());
        let version = self.spans.get(room).map_or(0, |s| s.version);
        for worker in self.others_of(room) {
            let message = RelayMessage::Publications {
                room: room.to_owned(),
                version,
                participant: id,
                publications: publications.to_vec(),
            };
            self.relay_push(worker, message, None);
        }
    }

    /// Copies a decrypted packet of local participant `id` to the other workers of its
    /// room: RTP whole, RTCP as its sender reports only.
    fn relay_publisher_packet(&mut self, id: ParticipantId, packet: Vec<u8>, rtcp: bool) {
        let Some(room) = self.sessions.get(&id).map(|s| s.room.as_str()) else {
            return;
        };
        let Some(span) = self.spans.get(room).filter(|s| !s.others.is_empty()) else {
            return;
        };
        if !self.published.contains_key(&id) {
            return; // it publishes nothing the others mirror
        }
        let data = if rtcp {
            match relay::sender_reports(&packet) {
                Some(reports) => reports,
                None => return,
            }
        } else {
            packet
        };
        let others = span.others.clone();
        let last = others.len().saturating_sub(1);
        let mut data = Some(data);
        for (n, worker) in others.into_iter().enumerate() {
            let data = if n == last {
                data.take().unwrap_or_default()
            } else {
                data.clone().unwrap_or_default()
            };
            let message = if rtcp {
                RelayMessage::SenderReports {
                    participant: id,
                    data,
                }
            } else {
                RelayMessage::Rtp {
                    participant: id,
                    data,
                }
            };
            self.relay_push(worker, message, Some(RelayPath::MediaOut));
        }
    }

    /// Queues a message for `worker`, counted on `path` when given; a full outbox drops
    /// it (counted).
    fn relay_push(&mut self, worker: usize, message: RelayMessage, path: Option<RelayPath>) {
        if self.relay.push(worker, message) {
            if let Some(path) = path {
                self.metrics.relay_packets(path, 1);
            }
        } else {
            self.metrics.relay_packets(RelayPath::DroppedQueueFull, 1);
        }
    }

    /// The next batch of messages for another worker, with its destination.
    pub fn poll_relay(&mut self) -> Option<(usize, RelayBatch)> {
        let (worker, messages) = self.relay.pop()?;
        Some((
            worker,
            RelayBatch {
                from: self.config.worker,
                messages,
            },
        ))
    }

    /// Takes in what another worker of a shared room sent. Returns how many RTP packets
    /// it made this worker queue for its subscribers.
    pub fn handle_relay(&mut self, now: Instant, batch: RelayBatch) -> usize {
        self.now = Some(now);
        let from = batch.from;
        let mut forwarded = 0;
        for message in batch.messages {
            match message {
                RelayMessage::Publications {
                    room,
                    version,
                    participant,
                    publications,
                } => self.mirror(from, room, version, participant, &publications),
                RelayMessage::Gone(participant) => {
                    if self
                        .mirrors
                        .get(&participant)
                        .is_some_and(|m| m.home == from)
                    {
                        self.drop_mirror(participant);
                    }
                }
                RelayMessage::Rtp { participant, data } => {
                    if self.is_mirror_from(participant, from) {
                        self.metrics.relay_packets(RelayPath::MediaIn, 1);
                        self.router.handle_rtp(now, participant, &data);
                        forwarded += self.flush_router();
                    } else {
                        self.metrics.relay_packets(RelayPath::DroppedUnknown, 1);
                    }
                }
                RelayMessage::SenderReports { participant, data } => {
                    if self.is_mirror_from(participant, from) {
                        self.router.handle_rtcp(now, participant, &data);
                        self.flush_router();
                    }
                }
                RelayMessage::Feedback { participant, data } => {
                    self.relayed_feedback(from, participant, &data);
                }
            }
        }
        self.flush_router();
        forwarded
    }

    fn is_mirror_from(&self, participant: ParticipantId, worker: usize) -> bool {
        self.mirrors
            .get(&participant)
            .is_some_and(|m| m.home == worker)
    }

    /// Creates or updates the mirror of `participant`, published on worker `home`.
    fn mirror(
        &mut self,
        home: usize,
        room: String,
        version: u64,
        participant: ParticipantId,
        publications: &[PublicationSpec],
    ) {
        let departed = self
            .spans
            .get(&room)
            .is_some_and(|s| !s.here && s.version > version);
        if departed || self.sessions.contains_key(&participant) || home == self.config.worker {
            self.metrics.relay_packets(RelayPath::DroppedUnknown, 1);
            return;
        }
        match self.mirrors.get(&participant) {
            Some(m) if m.home != home || m.room != room => {
                self.metrics.relay_packets(RelayPath::DroppedUnknown, 1);
                return;
            }
            Some(_) => {}
            None => {
                tracing::debug!(participant = participant.0, %room, home, "publisher mirrored");
                self.mirrors.insert(
                    participant,
                    Mirror {
                        home,
                        room: room.clone(),
                    },
                );
            }
        }
        self.router
            .set_participant(&room, participant, publications, &[]);
    }

    fn drop_mirror(&mut self, id: ParticipantId) {
        if self.mirrors.remove(&id).is_some() {
            tracing::debug!(participant = id.0, "mirror removed");
            self.router.remove_participant(id);
        }
    }

    /// Feedback from another worker's subscribers for local publisher `id`: keyframe
    /// requests go to the publisher; NACKs are answered from the cache by sending the
    /// packets across again (what the publisher's own link lost, this worker already
    /// asks it for).
    fn relayed_feedback(&mut self, from: usize, id: ParticipantId, data: &[u8]) {
        if !self.sessions.contains_key(&id) {
            self.metrics.relay_packets(RelayPath::DroppedUnknown, 1);
            return;
        }
        self.metrics.relay_packets(RelayPath::FeedbackIn, 1);
        let mut to_publisher = Vec::new();
        let mut again = Vec::new();
        let mut rembs = Vec::new();
        let mut packets = sluice_rtp::RtcpIter::new(data);
        while let Some(Ok((packet, range))) = packets.next_with_range() {
            match packet {
                sluice_rtp::RtcpPacket::Pli { .. } | sluice_rtp::RtcpPacket::Fir(_) => {
                    to_publisher.extend_from_slice(data.get(range).unwrap_or_default());
                }
                sluice_rtp::RtcpPacket::Remb(remb) => rembs.push(remb),
                sluice_rtp::RtcpPacket::Nack(nack) => {
                    for seq in nack.lost() {
                        if again.len() >= MAX_RELAYED_NACK_ANSWERS {
                            break;
                        }
                        if let Some(cached) = self.router.cached_packet(id, nack.media_ssrc, seq) {
                            again.push(cached.to_vec());
                        }
                    }
                }
                _ => {}
            }
        }
        for data in again {
            let message = RelayMessage::Rtp {
                participant: id,
                data,
            };
            self.relay_push(from, message, Some(RelayPath::MediaOut));
        }
        if !to_publisher.is_empty() {
            self.send_to_session(id, OutputKind::Rtcp, &to_publisher);
        }
        for remb in rembs {
            self.remote_remb(from, id, &remb);
        }
    }

    /// Lets time pass for every session whose timer is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = Some(now);
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
                    // everyone of the room on this worker; the other workers of a room
                    // that spans several elect from the same audio (their mirrors')
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
            let spec = self.answer_spec(role, Vec::new());
            self.core
                .handle_command(self.now, Command::Upsert(Box::new(spec)));
        }

        /// Participant 7's answer, publishing `publications`.
        fn answer_spec(&self, role: Role, publications: Vec<PublicationSpec>) -> SessionSpec {
            SessionSpec {
                participant: ParticipantId(7),
                room: "r".into(),
                local_ice: self.server_creds.clone(),
                remote_ice: self.client_creds.clone(),
                remote_fingerprint: self.client_cert.fingerprint(),
                dtls_role: role,
                publications,
                subscriptions: Vec::new(),
                events: self.events_tx.clone(),
            }
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

    fn microphone() -> PublicationSpec {
        PublicationSpec {
            source: sluice_signal::protocol::Source::Microphone,
            kind: sluice_signal::sdp::Kind::Audio,
            mid: "0".into(),
            ssrc: Some(1111),
            rtx_ssrc: None,
            rids: Vec::new(),
        }
    }

    fn span(room: &str, workers: &[usize], version: u64) -> Command {
        Command::RoomSpan(RoomSpan {
            room: room.into(),
            workers: workers.to_vec(),
            version,
        })
    }

    fn relayed(core: &mut WorkerCore) -> Vec<(usize, RelayMessage)> {
        let mut out = Vec::new();
        while let Some((worker, batch)) = core.poll_relay() {
            out.extend(batch.messages.into_iter().map(|m| (worker, m)));
        }
        out
    }

    #[test]
    fn a_publisher_is_announced_to_each_worker_its_room_spreads_to_and_withdrawn_when_it_leaves() {
        let mut h = harness(Role::Server);
        h.core.handle_command(h.now, span("r", &[0, 1], 1));
        assert!(relayed(&mut h.core).is_empty(), "nothing published yet");
        let mut spec = h.answer_spec(Role::Server, vec![microphone()]);
        h.core
            .handle_command(h.now, Command::Upsert(Box::new(spec.clone())));
        let expected = RelayMessage::Publications {
            room: "r".into(),
            version: 1,
            participant: ParticipantId(7),
            publications: vec![microphone()],
        };
        assert_eq!(relayed(&mut h.core), [(1, expected.clone())]);
        // the same answer again changes nothing
        h.core
            .handle_command(h.now, Command::Upsert(Box::new(spec.clone())));
        assert!(relayed(&mut h.core).is_empty());
        // a third worker joins the room: it alone learns what is published here
        h.core.handle_command(h.now, span("r", &[0, 1, 2], 2));
        let sent = relayed(&mut h.core);
        assert_eq!(sent.len(), 1);
        assert!(matches!(
            sent.first(),
            Some((2, RelayMessage::Publications { version: 2, .. }))
        ));
        // it stops publishing: every other worker hears the empty list
        spec.publications.clear();
        h.core
            .handle_command(h.now, Command::Upsert(Box::new(spec)));
        assert_eq!(relayed(&mut h.core).len(), 2);
        h.core
            .handle_command(h.now, Command::Remove(ParticipantId(7)));
        let gone: Vec<usize> = relayed(&mut h.core)
            .into_iter()
            .filter(|(_, m)| *m == RelayMessage::Gone(ParticipantId(7)))
            .map(|(w, _)| w)
            .collect();
        assert_eq!(gone, [1, 2]);
    }

    #[test]
    fn a_mirror_lives_while_the_room_spans_both_workers_and_a_late_message_cannot_revive_it() {
        let mut h = harness(Role::Server);
        let publications = |version| RelayMessage::Publications {
            room: "r".into(),
            version,
            participant: ParticipantId(40),
            publications: vec![microphone()],
        };
        let batch = |from, messages| RelayBatch { from, messages };
        h.core.handle_command(h.now, span("r", &[0, 3], 5));
        h.core.handle_relay(h.now, batch(3, vec![publications(5)]));
        assert!(h.core.is_mirror_from(ParticipantId(40), 3));
        // a packet for it from another worker is not taken
        let rtp = RelayMessage::Rtp {
            participant: ParticipantId(40),
            data: vec![0x80, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0x04, 0x57],
        };
        h.core.handle_relay(h.now, batch(2, vec![rtp]));
        let metrics = h.metrics.encode();
        assert_eq!(
            counter(
                &metrics,
                "sluice_relay_packets_total{path=\"dropped_unknown\"}"
            ),
            1
        );
        // the room leaves worker 3: its mirrors go
        h.core.handle_command(h.now, span("r", &[0], 6));
        assert!(!h.core.is_mirror_from(ParticipantId(40), 3));
        // this worker leaves the room; a message sent before that is ignored
        h.core.handle_command(h.now, span("r", &[3], 7));
        h.core.handle_relay(h.now, batch(3, vec![publications(6)]));
        assert!(h.core.mirrors.is_empty());
        // an older decision arriving late changes nothing
        h.core.handle_command(h.now, span("r", &[0, 3], 4));
        assert_eq!(h.core.spans.get("r").map(|s| s.version), Some(7));
        // a local participant is never mirrored
        h.core.handle_command(h.now, span("r", &[0, 3], 8));
        let local = RelayMessage::Publications {
            room: "r".into(),
            version: 8,
            participant: ParticipantId(7),
            publications: vec![microphone()],
        };
        h.core.handle_relay(h.now, batch(3, vec![local]));
        assert!(h.core.mirrors.is_empty());
        // Gone from its home removes it
        h.core.handle_relay(h.now, batch(3, vec![publications(8)]));
        assert!(h.core.is_mirror_from(ParticipantId(40), 3));
        h.core
            .handle_relay(h.now, batch(3, vec![RelayMessage::Gone(ParticipantId(40))]));
        assert!(h.core.mirrors.is_empty());
    }

    #[test]
    fn departures_are_remembered_up_to_a_bound() {
        let mut h = harness(Role::Server);
        for n in 0..(MAX_REMEMBERED_DEPARTURES as u64 + 50) {
            let room = format!("room-{n}");
            h.core
                .handle_command(h.now, span(&room, &[0, 1], 2 * n + 1));
            h.core.handle_command(h.now, span(&room, &[1], 2 * n + 2));
        }
        assert_eq!(h.core.spans.len(), MAX_REMEMBERED_DEPARTURES);
        assert!(!h.core.spans.contains_key("room-0"));
    }

    #[test]
    fn a_nack_from_another_worker_is_answered_from_the_cache_not_by_the_publisher() {
        let mut h = harness(Role::Server);
        h.core.handle_command(h.now, span("r", &[0, 1], 1));
        let camera = PublicationSpec {
            source: sluice_signal::protocol::Source::Camera,
            kind: sluice_signal::sdp::Kind::Video,
            mid: "1".into(),
            ssrc: Some(2222),
            rtx_ssrc: None,
            rids: Vec::new(),
        };
        let spec = h.answer_spec(Role::Server, vec![camera]);
        h.core
            .handle_command(h.now, Command::Upsert(Box::new(spec)));
        relayed(&mut h.core);
        let packet = |seq: u16| {
            let mut p = vec![0x80, 96];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0x08, 0xAE, 0x90, 0x80, 0x01, 0x10]);
            p
        };
        for seq in [100u16, 101, 103] {
            h.core
                .router
                .handle_rtp(h.now, ParticipantId(7), &packet(seq));
        }
        h.core.flush_router();
        let mut nack = Vec::new();
        sluice_rtp::write_nack(1, 2222, &[101, 102, 103], &mut nack);
        h.core.handle_relay(
            h.now,
            RelayBatch {
                from: 1,
                messages: vec![RelayMessage::Feedback {
                    participant: ParticipantId(7),
                    data: nack,
                }],
            },
        );
        let again: Vec<Vec<u8>> = relayed(&mut h.core)
            .into_iter()
            .filter_map(|(worker, m)| match m {
                RelayMessage::Rtp { data, .. } if worker == 1 => Some(data),
                _ => None,
            })
            .collect();
        // 102 never arrived: the publisher's worker asks the publisher for it itself
        assert_eq!(again, [packet(101), packet(103)]);
    }

    #[test]
    fn remb_of_subscribers_on_other_workers_caps_what_the_publisher_is_asked_for() {
        let mut h = harness(Role::Server);
        h.core.handle_command(h.now, span("r", &[0, 1, 2], 1));
        let remb = |bps: u64| {
            let mut out = Vec::new();
            sluice_rtp::write_remb(1, bps, &[2222], &mut out);
            out
        };
        let feedback = |from: usize, bps: u64| RelayBatch {
            from,
            messages: vec![RelayMessage::Feedback {
                participant: ParticipantId(7),
                data: remb(bps),
            }],
        };
        h.core.handle_relay(h.now, feedback(1, 300_000));
        h.core.handle_relay(h.now, feedback(2, 500_000));
        assert_eq!(h.core.remote_cap(ParticipantId(7), 2222), Some(300_000));
        // this worker's own router asks for more: lowered to the other workers' lowest
        let lowered = h.core.cap_remb(ParticipantId(7), &remb(800_000));
        assert_eq!(lowered, Some(remb(300_000)));
        // asks for less: unchanged, and remembered
        assert_eq!(h.core.cap_remb(ParticipantId(7), &remb(200_000)), None);
        assert_eq!(h.core.own_remb(ParticipantId(7), 2222), Some(200_000));
        // worker 1's subscribers recover: its newer cap replaces its older one
        h.core.handle_relay(h.now, feedback(1, 900_000));
        assert_eq!(h.core.remote_cap(ParticipantId(7), 2222), Some(500_000));
        // caps expire unless repeated
        h.now += REMOTE_CAP_LIFETIME;
        h.core.handle_timeout(h.now);
        assert_eq!(h.core.remote_cap(ParticipantId(7), 2222), None);
        assert_eq!(h.core.cap_remb(ParticipantId(7), &remb(800_000)), None);
    }
}
