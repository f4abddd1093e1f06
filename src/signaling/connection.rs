//! One participant's signalling connection: the protocol of docs/signaling.md.
//!
//! The task owns the participant's [`Negotiator`] and everything it announced; it
//! reacts to four inputs (WebSocket frames, room changes, its media session's
//! events, shutdown) and tells the worker what to forward after every answer.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};
use ring::rand::{SecureRandom, SystemRandom};
use sluice_dtls::{Fingerprint, Role};
use sluice_ice::Credentials;
use sluice_signal::negotiation::{Negotiator, NegotiatorConfig, TransportParams};
use sluice_signal::protocol::{
    decode_client_message, encode_server_message, ClientMessage, ErrorCode, ParticipantInfo,
    PublishSlot, ServerMessage, Source, PROTOCOL_VERSION,
};
use sluice_signal::sdp::codecs::{RED_VIDEO_PT, RED_VIDEO_RTX_PT};
use sluice_signal::sdp::{Answer, Kind, ParseLimits, SendStream, Setup};
use sluice_signal::token::{self, SigningKey};
use tokio::sync::mpsc;

use crate::app::AppState;
use crate::cluster::bridge::{self, Upstream};
use crate::cluster::Placement;
use crate::config::{Config, DtlsRole};
use crate::media::{
    parse_participant_label, parse_track_label, participant_label, track_label, Command,
    ParticipantId, PrepareSpec, PublicationSpec, SessionEvent, SessionSpec, SubscriptionSpec,
    WorkerHandle,
};
use crate::metrics::{AdmissionRefusal, Direction, SessionEnd, SignalingRejection};
use crate::signaling::peers::{PeerState, PeerTable};
use crate::signaling::rooms::{Admission, Peer, Published, RoomEvent, Rooms};
use crate::signaling::Origin;

/// Session events queued from the worker (it never blocks on signalling).
const SESSION_EVENT_QUEUE: usize = 16;
/// The rate-limit window.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Longest wait for the client's Close frame after ours.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a connection ends (the `bye` reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Left,
    Fatal(ErrorCode),
    MediaFailed,
    Disconnected,
    ShuttingDown,
    SocketClosed,
    AnswerTimeout,
    ConnectTimeout,
    IdleTimeout,
    /// A write did not complete in time: the client stopped reading, so nothing more
    /// is sent to it (no `bye`, no close handshake).
    SendTimeout,
    /// The room lives on another cluster node: the socket is relayed there from now on
    /// (the session's end is counted on that node).
    Bridged,
    /// This node gave its copy of the room up for the cluster's copy on another node
    /// (the room's event stream ended): the client rejoins and is placed there.
    RoomMoved,
}

impl End {
    fn reason(self) -> &'static str {
        match self {
            End::Fatal(code) => code.as_str(),
            other => other.metric().as_str(),
        }
    }

    fn metric(self) -> SessionEnd {
        match self {
            End::Left => SessionEnd::Left,
            End::Fatal(_) => SessionEnd::Error,
            End::MediaFailed => SessionEnd::MediaFailed,
            End::Disconnected => SessionEnd::Disconnected,
            End::ShuttingDown => SessionEnd::ShuttingDown,
            End::SocketClosed => SessionEnd::Closed,
            End::AnswerTimeout => SessionEnd::AnswerTimeout,
            End::ConnectTimeout => SessionEnd::ConnectTimeout,
            End::IdleTimeout => SessionEnd::IdleTimeout,
            End::SendTimeout => SessionEnd::SendTimeout,
            End::Bridged => SessionEnd::Closed,
            End::RoomMoved => SessionEnd::RoomMoved,
        }
    }

    /// Whether the client can still be told why (it reads its socket).
    fn says_bye(self) -> bool {
        !matches!(self, End::SocketClosed | End::SendTimeout | End::Bridged)
    }
}

/// What to do with a signalling message, from the count in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateCheck {
    /// Within `limits.signaling_messages_per_second`.
    Accept,
    /// The first message over the limit in this window: dropped, and the client told
    /// once (`rate_limited`), so a burst costs one reply, not one per message.
    DropAndWarn,
    /// Over the limit again in the same window: dropped silently.
    Drop,
    /// Twice the limit in one window: the client ignores `rate_limited`; close.
    Close,
}

/// The verdict for the `count`th message of a one-second window under `limit`.
pub fn rate_verdict(count: u32, limit: u32) -> RateCheck {
    if count <= limit {
        RateCheck::Accept
    } else if count == limit.saturating_add(1) {
        RateCheck::DropAndWarn
    } else if count <= limit.saturating_mul(2) {
        RateCheck::Drop
    } else {
        RateCheck::Close
    }
}

/// The state of a participant that has joined.
struct Joined {
    id: ParticipantId,
    room: String,
    worker: WorkerHandle,
    negotiator: Negotiator,
    local_ice: Credentials,
    setup: Setup,
    room_events: mpsc::Receiver<RoomEvent>,
    /// Raised by the room when `room_events` overflowed: resynchronise from a snapshot.
    resync: Arc<AtomicBool>,
    session_events: mpsc::Receiver<SessionEvent>,
    session_events_tx: mpsc::Sender<SessionEvent>,
    /// Subscriptions in the offer awaiting its answer.
    offered: Vec<SubscriptionSpec>,
    /// Subscriptions the worker forwards.
    active: Vec<SubscriptionSpec>,
    /// The transport facts of the first answer (fixed afterwards).
    transport: Option<(Credentials, Fingerprint, Role)>,
    publications: Vec<PublicationSpec>,
    session_created: bool,
    /// Which participants' tracks the negotiator carries, with the SSRCs we chose:
    /// the published tracks among `wanted`.
    streams: HashMap<(ParticipantId, Source), SubscriptionSpec>,
    /// The tracks this participant subscribes to (by default as they are published,
    /// then as its `subscribe`/`unsubscribe` say). Only published tracks are kept, so it
    /// holds at most one entry per source of each peer.
    wanted: BTreeSet<(ParticipantId, Source)>,
    /// `media.max_video_subscriptions`: most cameras in `wanted`.
    max_cameras: usize,
    /// The m-line the server added for this participant's screen share (`publish`).
    screen_mid: Option<String>,
    /// Everyone else in the room as this connection last told its client (what they
    /// publish and their mute state; names are not kept).
    peers: PeerTable,
    /// What this participant publishes, as last told to the room.
    published: Published,
    /// When the outstanding offer was sent (the answer deadline runs from it).
    offer_sent_at: Option<Instant>,
    /// When the first answer was applied while ICE/DTLS have not completed yet (the
    /// connect deadline runs from it); `None` once connected.
    connecting_since: Option<Instant>,
    /// When the re-offer that gathers the room changes since the last one goes out.
    offer_due: Option<Instant>,
}

/// What woke the connection up.
enum Input {
    Frame(Option<Result<Message, axum::Error>>),
    Room(Option<RoomEvent>),
    Session(Option<SessionEvent>),
    Shutdown,
    Deadline(Timer),
}

/// What a connection's next deadline means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// The connection ends.
    End(End),
    /// The renegotiation window closed: send the re-offer that gathers its changes.
    Offer,
}

struct Connection {
    socket: WebSocket,
    state: AppState,
    rooms: Arc<Rooms>,
    rng: SystemRandom,
    joined: Option<Joined>,
    window_start: Instant,
    window_messages: u32,
    opened_at: Instant,
    /// A write timed out: the client no longer reads.
    stalled: bool,
    origin: Origin,
    /// The hop to the room's node and the join to send it, once placed elsewhere.
    bridge: Option<(Upstream, String)>,
}

/// Runs one signalling connection to completion.
pub async fn run(socket: WebSocket, state: AppState, rooms: Arc<Rooms>, origin: Origin) {
    let mut connection = Connection {
        socket,
        state,
        rooms,
        rng: SystemRandom::new(),
        joined: None,
        window_start: Instant::now(),
        window_messages: 0,
        opened_at: Instant::now(),
        stalled: false,
        origin,
        bridge: None,
    };
    let end = connection.serve().await;
    if end == End::Bridged {
        if let Some((upstream, join)) = connection.bridge.take() {
            Box::pin(bridge::relay(
                connection.socket,
                upstream,
                join,
                &connection.state,
            ))
            .await;
        }
        return;
    }
    connection.state.metrics.session_ended(end.metric());
    Box::pin(connection.finish(end)).await;
}

impl Connection {
    /// Sends one message; false when the socket is gone or the write did not complete
    /// within `signaling.send_timeout_ms` (then the connection is marked stalled).
    async fn send(&mut self, message: &ServerMessage) -> bool {
        let text = encode_server_message(message);
        self.send_frame(Message::Text(text.into())).await
    }

    async fn send_frame(&mut self, frame: Message) -> bool {
        if self.stalled {
            return false;
        }
        let is_text = matches!(frame, Message::Text(_));
        let timeout = self.state.config.signaling.send_timeout();
        match tokio::time::timeout(timeout, self.socket.send(frame)).await {
            Ok(Ok(())) => {
                if is_text {
                    self.state.metrics.signaling_message(Direction::Sent);
                }
                true
            }
            Ok(Err(_)) => false,
            Err(_) => {
                tracing::info!("signalling write timed out: the client stopped reading");
                self.stalled = true;
                false
            }
        }
    }

    /// The earliest deadline this connection is waiting for, and what it means.
    fn deadline(&self) -> Option<(Instant, Timer)> {
        let signaling = &self.state.config.signaling;
        let Some(joined) = &self.joined else {
            return Some((
                self.opened_at + signaling.join_timeout(),
                Timer::End(End::IdleTimeout),
            ));
        };
        let answer = joined.offer_sent_at.map(|at| {
            (
                at + signaling.answer_timeout(),
                Timer::End(End::AnswerTimeout),
            )
        });
        let connect = joined.connecting_since.map(|at| {
            (
                at + self.state.config.media.connect_timeout(),
                Timer::End(End::ConnectTimeout),
            )
        });
        let offer = joined.offer_due.map(|at| (at, Timer::Offer));
        [answer, connect, offer]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)
    }

    async fn send_error(&mut self, code: ErrorCode, message: &str) -> bool {
        self.send(&ServerMessage::Error {
            code,
            message: message.to_owned(),
        })
        .await
    }

    async fn serve(&mut self) -> End {
        let shutdown = self.state.shutdown.clone();
        loop {
            let deadline = self.deadline();
            let input = tokio::select! {
                frame = self.socket.recv() => Input::Frame(frame),
                input = next_event(&mut self.joined) => input,
                () = shutdown.begun() => Input::Shutdown,
                timer = expire(deadline) => Input::Deadline(timer),
            };
            // The handlers' futures are boxed: held inline, the largest of them would
            // make every idle connection's task that large for its whole life.
            let end = match input {
                Input::Frame(Some(Ok(message))) => Box::pin(self.on_frame(message)).await,
                Input::Frame(Some(Err(error))) => {
                    // axum refuses a frame over limits.signaling_message_bytes before
                    // we see it; its error is the only trace.
                    if error.to_string().to_ascii_lowercase().contains("too long") {
                        self.state
                            .metrics
                            .signaling_rejected(SignalingRejection::MessageTooLarge);
                        tracing::info!(
                            "signalling closed: message over limits.signaling_message_bytes"
                        );
                    }
                    Some(End::SocketClosed)
                }
                Input::Frame(None) => Some(End::SocketClosed),
                Input::Room(event) => Box::pin(self.on_room_event(event)).await,
                Input::Session(event) => Box::pin(self.on_session_event(event)).await,
                Input::Shutdown => Some(End::ShuttingDown),
                Input::Deadline(Timer::Offer) => None,
                Input::Deadline(Timer::End(end)) => {
                    if let Some(joined) = &self.joined {
                        tracing::info!(participant = joined.id.0, room = %joined.room, reason = end.reason(), "participant timed out");
                    }
                    Some(end)
                }
            };
            if self.stalled {
                return End::SendTimeout;
            }
            if let Some(end) = end {
                return end;
            }
            let resync = self
                .joined
                .as_ref()
                .is_some_and(|j| j.resync.load(Ordering::Acquire));
            if resync {
                if let Some(end) = Box::pin(self.resync_if_needed()).await {
                    return end;
                }
            }
            if let Err(end) = Box::pin(self.offer_if_needed()).await {
                return end;
            }
        }
    }

    async fn finish(&mut self, end: End) {
        if let Some(joined) = self.joined.take() {
            tracing::info!(participant = joined.id.0, room = %joined.room, reason = end.reason(), "participant left");
            let span = self.rooms.leave(&joined.room, joined.id);
            let _ = joined
                .worker
                .commands
                .send(Command::Remove(joined.id))
                .await;
            if let Some(change) = span {
                self.rooms.announce(change).await;
            }
        }
        if !end.says_bye() {
            return;
        }
        if let End::Fatal(code) = end {
            let _ = self.send_error(code, fatal_message(code)).await;
        } else if end == End::ShuttingDown {
            let _ = self
                .send_error(ErrorCode::ShuttingDown, "the server is shutting down")
                .await;
        }
        let _ = self
            .send(&ServerMessage::Bye {
                reason: end.reason().to_owned(),
            })
            .await;
        let close = CloseFrame {
            code: match end {
                End::Fatal(_) => close_code::POLICY,
                End::ShuttingDown => close_code::AWAY,
                _ => close_code::NORMAL,
            },
            reason: end.reason().into(),
        };
        if self.send_frame(Message::Close(Some(close))).await {
            self.await_peer_close().await;
        }
    }

    /// Reads and discards what the client still sends until its Close frame, the end of
    /// the stream or [`CLOSE_HANDSHAKE_TIMEOUT`] (RFC 6455 section 7.1.1). Dropping the
    /// socket with unread bytes in the kernel's buffer makes TCP reset the connection,
    /// and the reset throws away the `bye` and error still on their way to the client.
    async fn await_peer_close(&mut self) {
        let deadline = tokio::time::sleep(CLOSE_HANDSHAKE_TIMEOUT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                frame = self.socket.recv() => match frame {
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                    Some(Ok(_)) => {}
                },
                () = &mut deadline => return,
            }
        }
    }

    fn rate_check(&mut self) -> RateCheck {
        let now = Instant::now();
        if now.duration_since(self.window_start) >= RATE_WINDOW {
            self.window_start = now;
            self.window_messages = 0;
        }
        self.window_messages = self.window_messages.saturating_add(1);
        rate_verdict(
            self.window_messages,
            self.state.config.limits.signaling_messages_per_second,
        )
    }

    async fn on_frame(&mut self, message: Message) -> Option<End> {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                self.state.metrics.signaling_message(Direction::Received);
                self.state
                    .metrics
                    .signaling_rejected(SignalingRejection::BadRequest);
                self.send_error(ErrorCode::BadRequest, "binary frames are not supported")
                    .await;
                return None;
            }
            Message::Close(_) => return Some(End::SocketClosed),
            Message::Ping(_) | Message::Pong(_) => return None,
        };
        self.state.metrics.signaling_message(Direction::Received);
        match self.rate_check() {
            RateCheck::Accept => {}
            RateCheck::DropAndWarn => {
                self.state
                    .metrics
                    .signaling_rejected(SignalingRejection::RateLimited);
                self.send_error(ErrorCode::RateLimited, "too many messages")
                    .await;
                return None;
            }
            RateCheck::Drop => {
                self.state
                    .metrics
                    .signaling_rejected(SignalingRejection::RateLimited);
                return None;
            }
            RateCheck::Close => {
                self.state
                    .metrics
                    .signaling_rejected(SignalingRejection::RateLimitClosed);
                tracing::info!("signalling closed: far over limits.signaling_messages_per_second");
                return Some(End::Fatal(ErrorCode::RateLimited));
            }
        }
        let max_len = self.state.config.limits.signaling_message_bytes;
        let message = match decode_client_message(text.as_str(), max_len) {
            Ok(message) => message,
            Err(error) => {
                let code = error.code();
                if code == ErrorCode::MessageTooLarge {
                    self.state
                        .metrics
                        .signaling_rejected(SignalingRejection::MessageTooLarge);
                    return Some(End::Fatal(code));
                }
                if code == ErrorCode::UnsupportedVersion {
                    self.state
                        .metrics
                        .signaling_rejected(SignalingRejection::BadRequest);
                    tracing::info!(%error, "join refused: protocol version");
                    return Some(End::Fatal(code));
                }
                self.state
                    .metrics
                    .signaling_rejected(SignalingRejection::BadRequest);
                self.send_error(code, "invalid message").await;
                return None;
            }
        };
        match message {
            // (a version other than ours was refused while decoding)
            ClientMessage::Join {
                room, name, token, ..
            } => self.on_join(room, name, token).await,
            ClientMessage::Answer { revision, sdp } => self.on_answer(revision, &sdp).await,
            ClientMessage::Mute { kind, muted } => {
                match &self.joined {
                    Some(joined) => self.rooms.set_muted(&joined.room, joined.id, kind, muted),
                    None => {
                        self.send_error(ErrorCode::NotInRoom, "join first").await;
                    }
                }
                None
            }
            ClientMessage::VideoSize { id, width, height } => {
                let Some(joined) = &self.joined else {
                    self.send_error(ErrorCode::NotInRoom, "join first").await;
                    return None;
                };
                let Some(publisher) = parse_participant_label(&id) else {
                    self.send_error(ErrorCode::BadRequest, "video_size: unknown id")
                        .await;
                    return None;
                };
                let command = Command::SetMaxLayer {
                    subscriber: joined.id,
                    publisher,
                    max_layer: layer_for_size(width, height),
                };
                // best effort: a full queue only delays the next size report's effect
                let _ = joined.worker.commands.try_send(command);
                None
            }
            ClientMessage::Publish { source } => self.on_publish(source, true).await,
            ClientMessage::Unpublish { source } => self.on_publish(source, false).await,
            ClientMessage::Subscribe { track_ids } => self.on_subscribe(&track_ids, true).await,
            ClientMessage::Unsubscribe { track_ids } => self.on_subscribe(&track_ids, false).await,
            ClientMessage::Leave => Some(End::Left),
            ClientMessage::Ping => {
                self.send(&ServerMessage::Pong).await;
                None
            }
        }
    }

    async fn on_join(&mut self, room: String, name: String, token: Option<String>) -> Option<End> {
        if self.joined.is_some() {
            self.send_error(ErrorCode::BadRequest, "already joined")
                .await;
            return None;
        }
        if self.state.shutdown.is_begun() {
            self.state
                .metrics
                .admission_refused(AdmissionRefusal::ShuttingDown);
            return Some(End::ShuttingDown);
        }
        // The join as the client sent it, for the room's node if that is another one.
        let forwarded = self.state.cluster.as_ref().map(|_| {
            serde_json::json!({ "type": "join", "room": room, "name": name, "token": token })
                .to_string()
        });
        let name = match authorize(&self.state.config, &room, name, token.as_deref()) {
            Ok(name) => name,
            Err(code) => {
                self.state
                    .metrics
                    .admission_refused(AdmissionRefusal::Unauthorized);
                return Some(End::Fatal(code));
            }
        };
        if let Some(forwarded) = forwarded {
            if let Some(end) = self.place(&room, forwarded).await {
                return Some(end);
            }
        }
        let mut admission = match self.rooms.join(&room, &name) {
            Ok(admission) => admission,
            Err(code) => {
                let refusal = match code {
                    ErrorCode::RoomFull => Some(AdmissionRefusal::RoomFull),
                    ErrorCode::TooManyRooms => Some(AdmissionRefusal::TooManyRooms),
                    ErrorCode::ShuttingDown => Some(AdmissionRefusal::ShuttingDown),
                    _ => None,
                };
                if let Some(refusal) = refusal {
                    self.state.metrics.admission_refused(refusal);
                }
                tracing::info!(room = %room, code = code.as_str(), "join refused");
                return Some(End::Fatal(code));
            }
        };
        let span = admission.span.take();
        match self.start_session(room, admission) {
            Ok((joined, participants)) => {
                // The room's workers learn that it spans a new one before the
                // participant's session opens there.
                if let Some(change) = span {
                    self.rooms.announce(change).await;
                }
                tracing::info!(participant = joined.id.0, room = %joined.room, worker = joined.worker.index, "participant joined");
                let message = ServerMessage::Joined {
                    version: PROTOCOL_VERSION,
                    participant_id: participant_label(joined.id),
                    room: joined.room.clone(),
                    participants,
                };
                // Before any offer: the worker answers the checks a browser may send
                // before its answer has reached us.
                let prepare = PrepareSpec {
                    participant: joined.id,
                    room: joined.room.clone(),
                    local_ice: joined.local_ice.clone(),
                    events: joined.session_events_tx.clone(),
                };
                let prepared = joined
                    .worker
                    .commands
                    .send(Command::Prepare(Box::new(prepare)))
                    .await;
                self.joined = Some(joined);
                if prepared.is_err() {
                    return Some(End::Fatal(ErrorCode::Internal));
                }
                if !self.send(&message).await {
                    return Some(End::SocketClosed);
                }
                None
            }
            Err(code) => Some(End::Fatal(code)),
        }
    }

    /// In cluster mode, finds the room's node: `None` to serve the join here, or how
    /// this connection ends (bridged to the owner, or refused with
    /// `cluster_unavailable`). A hop from another node was placed by that node.
    async fn place(&mut self, room: &str, join: String) -> Option<End> {
        let cluster = self.state.cluster.clone()?;
        if self.origin.internal {
            return None;
        }
        let timeout = self.state.config.cluster.as_ref().map_or(
            Duration::from_secs(1),
            crate::config::ClusterConfig::redis_timeout,
        ) * 2;
        let mut dead: Option<String> = None;
        loop {
            let (node_id, internal_url) = match cluster.place_avoiding(room, dead.as_deref()).await
            {
                Ok(Placement::Local) => return None,
                Ok(Placement::Remote {
                    node_id,
                    internal_url,
                }) => (node_id, internal_url),
                Err(error) => {
                    tracing::info!(room, %error, "join refused: the room cannot be placed");
                    return Some(End::Fatal(ErrorCode::ClusterUnavailable));
                }
            };
            match bridge::connect(&cluster, &internal_url, self.origin.client_ip, timeout).await {
                Ok(upstream) => {
                    tracing::info!(room, node = %node_id, "join bridged to the room's node");
                    self.bridge = Some((upstream, join));
                    return Some(End::Bridged);
                }
                // Once: its process is gone; place the room without it.
                Err(error) if error.is_refused() && dead.is_none() => {
                    tracing::warn!(room, node = %node_id, "the room's node refuses connections: placing the room without it");
                    dead = Some(node_id);
                }
                Err(error) => {
                    tracing::warn!(room, node = %node_id, %error, "join refused: the room's node is unreachable");
                    return Some(End::Fatal(ErrorCode::ClusterUnavailable));
                }
            }
        }
    }

    /// The connection's state in its room, and the other members as the `joined`
    /// message lists them.
    fn start_session(
        &mut self,
        room: String,
        admission: Admission,
    ) -> Result<(Joined, Vec<ParticipantInfo>), ErrorCode> {
        let Admission {
            id,
            worker,
            others,
            events,
            resync,
            span: _,
        } = admission;
        let local_ice = Credentials::generate(&self.rng).map_err(|_| ErrorCode::Internal);
        let local_ice = match local_ice {
            Ok(creds) => creds,
            Err(code) => {
                self.rooms.leave(&room, id);
                return Err(code);
            }
        };
        let config = &self.state.config;
        let setup = match config.dtls.role {
            DtlsRole::Auto => Setup::ActPass,
            DtlsRole::Server => Setup::Passive,
            DtlsRole::Client => Setup::Active,
        };
        let candidates = match &worker.candidates {
            // a worker of another node: what that node announces
            Some(remote) => remote.clone(),
            None => self
                .state
                .announce
                .iter()
                .filter_map(|a| a.candidate_addr(worker.index, worker.local_addr.port()))
                .collect(),
        };
        let transport = TransportParams {
            session_id: random_u64(&self.rng),
            ice: (local_ice.ufrag.clone(), local_ice.pwd.clone()),
            fingerprint_sha256: worker
                .fingerprint
                .unwrap_or_else(|| self.rooms.media().certificate.fingerprint())
                .0,
            setup,
            candidates,
        };
        let (session_events_tx, session_events) = mpsc::channel(SESSION_EVENT_QUEUE);
        let mut joined = Joined {
            id,
            room,
            worker,
            negotiator: Negotiator::new(
                transport,
                negotiator_config(
                    self.state.config.limits.signaling_message_bytes,
                    self.state.config.media.simulcast,
                ),
            ),
            local_ice,
            setup,
            room_events: events,
            resync,
            session_events,
            session_events_tx,
            offered: Vec::new(),
            active: Vec::new(),
            transport: None,
            publications: Vec::new(),
            session_created: false,
            streams: HashMap::new(),
            wanted: BTreeSet::new(),
            max_cameras: config.media.max_video_subscriptions,
            screen_mid: None,
            peers: PeerTable::default(),
            published: Published::default(),
            offer_sent_at: None,
            connecting_since: None,
            offer_due: None,
        };
        let mut participants = Vec::with_capacity(others.len());
        for peer in others {
            auto_subscribe(&mut joined, peer.id, Published::default(), peer.published);
            sync_tracks(&mut joined, &self.rng, peer.id, peer.published);
            joined.peers.insert(peer.id, PeerState::of(&peer));
            participants.push(peer.info);
        }
        Ok((joined, participants))
    }

    async fn on_answer(&mut self, revision: u64, sdp: &str) -> Option<End> {
        let Some(joined) = self.joined.as_mut() else {
            self.send_error(ErrorCode::NotInRoom, "join first").await;
            return None;
        };
        let answer = match joined.negotiator.on_answer(revision, sdp) {
            Ok(answer) => answer,
            Err(error) => {
                tracing::warn!(participant = joined.id.0, %error, "answer refused");
                return Some(End::Fatal(ErrorCode::BadRequest));
            }
        };
        tracing::debug!(participant = joined.id.0, revision, "answer accepted");
        joined.offer_sent_at = None;
        let offered = std::mem::take(&mut joined.offered);
        // Only tracks whose publisher is still here (a leave may have raced the answer),
        // and only as far as the answer accepted them.
        joined.active = offered
            .into_iter()
            .filter(|s| {
                joined
                    .streams
                    .get(&(s.publisher, s.source))
                    .is_some_and(|stream| stream.ssrc == s.ssrc)
            })
            .filter_map(|s| accepted_subscription(s, &answer))
            .collect();
        if joined.transport.is_none() {
            joined.connecting_since = Some(Instant::now());
            let role = dtls_role(joined.setup, answer.setup);
            joined.transport = Some((
                Credentials {
                    ufrag: answer.ice_ufrag.clone(),
                    pwd: answer.ice_pwd.clone(),
                },
                Fingerprint(answer.fingerprint_sha256),
                role,
            ));
        }
        joined.publications = publications(&answer, joined.screen_mid.as_deref());
        self.announce_published();
        self.update_worker().await
    }

    /// Tells the room what this participant publishes now, if that changed.
    fn announce_published(&mut self) {
        let Some(joined) = self.joined.as_mut() else {
            return;
        };
        let has = |source| joined.publications.iter().any(|p| p.source == source);
        let published = Published {
            audio: has(Source::Microphone),
            video: has(Source::Camera),
            screen: has(Source::Screen),
        };
        if published != joined.published {
            joined.published = published;
            self.rooms.set_published(&joined.room, joined.id, published);
        }
    }

    /// `publish` (`start`) or `unpublish` a screen share: an m-line the server receives
    /// it on is added to the next offer, or withdrawn (the others lose the track at once,
    /// not after the next answer).
    async fn on_publish(&mut self, source: Source, start: bool) -> Option<End> {
        let Some(joined) = self.joined.as_mut() else {
            self.send_error(ErrorCode::NotInRoom, "join first").await;
            return None;
        };
        if source != Source::Screen {
            self.send_error(
                ErrorCode::BadRequest,
                "only a screen is published with publish: microphone and camera have mids 0 and 1",
            )
            .await;
            return None;
        }
        if start {
            if joined.screen_mid.is_some() {
                return None; // already has its m-line
            }
            match joined.negotiator.add_local_track(Kind::Video) {
                Ok(mid) => {
                    tracing::debug!(participant = joined.id.0, mid, "screen share m-line added");
                    joined.screen_mid = Some(mid);
                }
                Err(error) => {
                    tracing::info!(participant = joined.id.0, %error, "no m-line for a screen share");
                    self.send_error(
                        ErrorCode::BadRequest,
                        "the session has no room for another m-line",
                    )
                    .await;
                }
            }
            return None;
        }
        let Some(mid) = joined.screen_mid.take() else {
            return None; // nothing shared
        };
        joined.negotiator.remove_local_track(&mid);
        joined.publications.retain(|p| p.source != Source::Screen);
        tracing::debug!(participant = joined.id.0, mid, "screen share withdrawn");
        self.announce_published();
        self.update_worker_if_created().await
    }

    /// `subscribe` or `unsubscribe`: each known track is (un)subscribed and its m-line
    /// added or freed in the next offer; an unknown id, or a camera over
    /// `media.max_video_subscriptions`, is reported once per message and the rest applies.
    async fn on_subscribe(&mut self, track_ids: &[String], subscribe: bool) -> Option<End> {
        let Some(joined) = self.joined.as_mut() else {
            self.send_error(ErrorCode::NotInRoom, "join first").await;
            return None;
        };
        let mut unknown = false;
        let mut over_limit = false;
        let mut touched = BTreeSet::new();
        // (the list's length was bounded while decoding)
        for id in track_ids {
            let Some((publisher, source)) = parse_track_label(id) else {
                unknown = true;
                continue;
            };
            let published = joined
                .peers
                .get(publisher)
                .is_some_and(|peer| peer.published.has(source));
            if !published {
                unknown = true;
                continue;
            }
            let key = (publisher, source);
            if !subscribe {
                if joined.wanted.remove(&key) {
                    touched.insert(publisher);
                }
                continue;
            }
            if joined.wanted.contains(&key) {
                continue;
            }
            if source == Source::Camera && cameras_wanted(joined) >= joined.max_cameras {
                over_limit = true;
                continue;
            }
            joined.wanted.insert(key);
            touched.insert(publisher);
        }
        let mut changed = false;
        for publisher in touched {
            let published = joined
                .peers
                .get(publisher)
                .map_or_else(Published::default, |p| p.published);
            changed |= sync_tracks(joined, &self.rng, publisher, published);
        }
        if unknown {
            self.send_error(
                ErrorCode::UnknownTrack,
                "a track id names no track published in the room; the others were applied",
            )
            .await;
        }
        if over_limit {
            self.send_error(
                ErrorCode::SubscriptionLimit,
                "more cameras than media.max_video_subscriptions; unsubscribe some first",
            )
            .await;
        }
        if changed {
            return self.update_worker_if_created().await;
        }
        None
    }

    /// Sends the session's current state to its worker.
    async fn update_worker(&mut self) -> Option<End> {
        let joined = self.joined.as_mut()?;
        let (remote_ice, remote_fingerprint, dtls_role) = joined.transport.clone()?;
        let spec = SessionSpec {
            participant: joined.id,
            room: joined.room.clone(),
            local_ice: joined.local_ice.clone(),
            remote_ice,
            remote_fingerprint,
            dtls_role,
            publications: joined.publications.clone(),
            subscriptions: joined.active.clone(),
            events: joined.session_events_tx.clone(),
        };
        joined.session_created = true;
        if joined
            .worker
            .commands
            .send(Command::Upsert(Box::new(spec)))
            .await
            .is_err()
        {
            return Some(End::Fatal(ErrorCode::Internal));
        }
        None
    }

    async fn on_room_event(&mut self, event: Option<RoomEvent>) -> Option<End> {
        // The room ends a member's event stream only to move it (Rooms::move_out).
        let Some(event) = event else {
            return Some(End::RoomMoved);
        };
        let joined = self.joined.as_mut()?;
        // Every handler is idempotent: after a resync, events queued before the
        // snapshot may repeat what it already said.
        let message = match event {
            RoomEvent::Joined(peer) => {
                if joined.peers.contains(peer.id) {
                    return None;
                }
                auto_subscribe(joined, peer.id, Published::default(), peer.published);
                sync_tracks(joined, &self.rng, peer.id, peer.published);
                joined.peers.insert(peer.id, PeerState::of(&peer));
                let info = peer.info;
                ServerMessage::ParticipantJoined {
                    id: info.id,
                    name: info.name,
                    audio_muted: info.audio_muted,
                    video_muted: info.video_muted,
                    tracks: info.tracks,
                }
            }
            RoomEvent::Published { id, published } => {
                let peer = joined.peers.get_mut(id)?;
                let before = peer.published;
                peer.published = published;
                let peer = *peer;
                let announcements: Vec<ServerMessage> = Source::ALL
                    .into_iter()
                    .filter(|source| published.has(*source) != before.has(*source))
                    .map(|source| {
                        if published.has(source) {
                            ServerMessage::TrackPublished {
                                participant_id: participant_label(id),
                                track: peer.track(id, source),
                            }
                        } else {
                            ServerMessage::TrackUnpublished {
                                participant_id: participant_label(id),
                                track_id: track_label(id, source),
                            }
                        }
                    })
                    .collect();
                auto_subscribe(joined, id, before, published);
                let changed = sync_tracks(joined, &self.rng, id, published);
                for announcement in &announcements {
                    if !self.send(announcement).await {
                        return None;
                    }
                }
                if changed {
                    return self.update_worker_if_created().await;
                }
                return None;
            }
            RoomEvent::Muted { id, kind, muted } => {
                let peer = joined.peers.get_mut(id)?;
                match kind {
                    Kind::Audio => peer.audio_muted = muted,
                    Kind::Video => peer.video_muted = muted,
                }
                ServerMessage::ParticipantMuted {
                    id: participant_label(id),
                    kind,
                    muted,
                }
            }
            RoomEvent::Left(id) => {
                let peer = joined.peers.remove(id)?;
                auto_subscribe(joined, id, peer.published, Published::default());
                sync_tracks(joined, &self.rng, id, Published::default());
                if !self
                    .send(&ServerMessage::ParticipantLeft {
                        id: participant_label(id),
                    })
                    .await
                {
                    return None;
                }
                return self.update_worker_if_created().await;
            }
        };
        self.send(&message).await;
        None
    }

    /// Updates the worker after a change of forwarded tracks, once a session exists.
    async fn update_worker_if_created(&mut self) -> Option<End> {
        if self.joined.as_ref().is_some_and(|j| j.session_created) {
            return self.update_worker().await;
        }
        None
    }

    /// After the room's queue overflowed: drops what is queued, takes the room as it is
    /// now, brings the offer in line with it and sends the client one `room_state`.
    async fn resync_if_needed(&mut self) -> Option<End> {
        let joined = self.joined.as_mut()?;
        if !joined.resync.swap(false, Ordering::AcqRel) {
            return None;
        }
        while joined.room_events.try_recv().is_ok() {}
        let now: HashMap<ParticipantId, Peer> = self
            .rooms
            .snapshot(&joined.room, joined.id)
            .into_iter()
            .map(|peer| (peer.id, peer))
            .collect();
        let gone: Vec<ParticipantId> = joined
            .peers
            .ids()
            .filter(|id| !now.contains_key(id))
            .collect();
        for id in gone {
            if let Some(peer) = joined.peers.remove(id) {
                auto_subscribe(joined, id, peer.published, Published::default());
            }
            sync_tracks(joined, &self.rng, id, Published::default());
        }
        let mut participants: Vec<ParticipantInfo> = Vec::with_capacity(now.len());
        for (id, peer) in now {
            let before = joined
                .peers
                .get(id)
                .map_or_else(Published::default, |p| p.published);
            auto_subscribe(joined, id, before, peer.published);
            sync_tracks(joined, &self.rng, id, peer.published);
            joined.peers.insert(id, PeerState::of(&peer));
            participants.push(peer.info);
        }
        participants.sort_by(|a, b| a.id.cmp(&b.id));
        tracing::info!(participant = joined.id.0, room = %joined.room, peers = participants.len(), "room resynchronised");
        if !self.send(&ServerMessage::RoomState { participants }).await {
            return None;
        }
        self.update_worker_if_created().await
    }

    async fn on_session_event(&mut self, event: Option<SessionEvent>) -> Option<End> {
        let event = event?;
        match event {
            SessionEvent::Connected { handshake_duration } => {
                if let Some(joined) = self.joined.as_mut() {
                    joined.connecting_since = None;
                }
                let joined = self.joined.as_ref()?;
                tracing::info!(
                    participant = joined.id.0,
                    room = %joined.room,
                    handshake_ms = handshake_duration.as_millis() as u64,
                    "media connected"
                );
                None
            }
            SessionEvent::Failed { reason } => {
                let joined = self.joined.as_ref()?;
                tracing::info!(participant = joined.id.0, room = %joined.room, reason = reason.as_str(), "media failed");
                Some(End::MediaFailed)
            }
            SessionEvent::Disconnected => Some(End::Disconnected),
            SessionEvent::VideoPaused {
                publisher,
                paused,
                reason,
            } => {
                self.send(&ServerMessage::VideoPaused {
                    id: participant_label(publisher),
                    paused,
                    reason: reason.as_str().to_owned(),
                })
                .await;
                None
            }
            SessionEvent::DominantSpeaker { participant } => {
                self.send(&ServerMessage::DominantSpeaker {
                    id: participant_label(participant),
                })
                .await;
                None
            }
        }
    }

    async fn offer_if_needed(&mut self) -> Result<(), End> {
        let Some(joined) = self.joined.as_mut() else {
            return Ok(());
        };
        if !joined.negotiator.needs_offer() {
            return Ok(());
        }
        // The first offer goes out at once; a re-offer waits for the renegotiation
        // window, so a burst of joins, leaves and publications costs one offer.
        if joined.negotiator.revision() > 0 {
            let now = Instant::now();
            let due = *joined
                .offer_due
                .get_or_insert(now + self.state.config.signaling.renegotiation_delay());
            if now < due {
                return Ok(());
            }
        }
        joined.offer_due = None;
        let (revision, sdp) = joined
            .negotiator
            .create_offer()
            .map_err(|_| End::Fatal(ErrorCode::Internal))?;
        let negotiator = &joined.negotiator;
        joined.offer_sent_at = Some(Instant::now());
        joined.offered = joined
            .streams
            .values()
            .filter_map(|s| {
                let mid = negotiator.mid_of_track(&track_label(s.publisher, s.source))?;
                Some(SubscriptionSpec {
                    mid: mid.to_owned(),
                    ..s.clone()
                })
            })
            .collect();
        let publish = negotiator
            .local_mids()
            .filter_map(|mid| {
                let source = local_source(mid, joined.screen_mid.as_deref())?;
                Some(PublishSlot {
                    mid: mid.to_owned(),
                    source,
                })
            })
            .collect();
        tracing::debug!(participant = joined.id.0, revision, "offer sent");
        if self
            .send(&ServerMessage::Offer {
                revision,
                sdp,
                publish,
            })
            .await
        {
            Ok(())
        } else {
            Err(End::SocketClosed)
        }
    }
}

/// Resolves at `deadline` with what it means; never when there is none.
async fn expire(deadline: Option<(Instant, Timer)>) -> Timer {
    match deadline {
        Some((at, timer)) => {
            tokio::time::sleep_until(at.into()).await;
            timer
        }
        None => std::future::pending().await,
    }
}

/// The next room change or session event of a joined participant (never, before join).
async fn next_event(joined: &mut Option<Joined>) -> Input {
    match joined {
        Some(joined) => tokio::select! {
            event = joined.room_events.recv() => Input::Room(event),
            event = joined.session_events.recv() => Input::Session(event),
        },
        None => std::future::pending().await,
    }
}

/// Checks the join token when keys are configured; returns the display name to use
/// (the token's `name` claim wins over the one in `join`).
fn authorize(
    config: &Config,
    room: &str,
    name: String,
    token: Option<&str>,
) -> Result<String, ErrorCode> {
    if config.auth.is_development_mode() {
        return Ok(name);
    }
    let token = token.ok_or(ErrorCode::Unauthorized)?;
    let keys: Vec<SigningKey> = config
        .auth
        .keys
        .iter()
        .map(|k| SigningKey {
            id: k.id.clone(),
            secret: k.secret.as_bytes().to_vec(),
        })
        .collect();
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = token::verify(token, &keys, now_unix).map_err(|error| {
        tracing::info!(%error, "join token refused");
        ErrorCode::Unauthorized
    })?;
    if claims.room != room {
        tracing::info!("join token is for another room");
        return Err(ErrorCode::Unauthorized);
    }
    Ok(claims
        .name
        .filter(|n| sluice_signal::protocol::is_valid_name(n))
        .unwrap_or(name))
}

/// The simulcast encoding (0 = quarter, 1 = half, 2 = full resolution of a 720p camera)
/// that fills a tile of `width` x `height` device pixels: the smallest whose height
/// reaches the tile's. A hidden tile gets the lowest.
pub fn layer_for_size(width: u32, height: u32) -> usize {
    let (w, h) = (u64::from(width), u64::from(height));
    // the camera is 16:9; a tile shaped otherwise is filled along its larger side
    let needed = h.max(w * 9 / 16);
    match needed {
        0..=180 => 0,
        181..=360 => 1,
        _ => 2,
    }
}

/// Our DTLS role from our `a=setup` and the answer's (RFC 8842).
pub fn dtls_role(ours: Setup, theirs: Setup) -> Role {
    match (ours, theirs) {
        (Setup::Active, _) => Role::Client,
        (Setup::Passive, _) => Role::Server,
        (Setup::ActPass, Setup::Passive) => Role::Client,
        (Setup::ActPass, _) => Role::Server,
    }
}

/// What the server receives on the local m-line `mid`: the microphone on mid 0, the
/// camera on mid 1, the screen share on the m-line added for it.
fn local_source(mid: &str, screen_mid: Option<&str>) -> Option<Source> {
    if mid == sluice_signal::negotiation::LOCAL_AUDIO_MID {
        Some(Source::Microphone)
    } else if mid == sluice_signal::negotiation::LOCAL_VIDEO_MID {
        Some(Source::Camera)
    } else if Some(mid) == screen_mid {
        Some(Source::Screen)
    } else {
        None
    }
}

/// The participant's own tracks (mid 0 audio, mid 1 video, and its screen share on
/// `screen_mid`) from its answer; SSRCs when it lists them, otherwise the router learns
/// them by MID. Which m-line carries the screen is the server's own record of the
/// m-line it added on `publish`, never read from the answer's msids.
pub fn publications(answer: &Answer, screen_mid: Option<&str>) -> Vec<PublicationSpec> {
    answer
        .media
        .iter()
        .filter(|m| m.direction.sends() && !m.rejected)
        .filter_map(|m| Some((local_source(&m.mid, screen_mid)?, m)))
        .filter(|(source, m)| source.kind() == m.kind)
        .map(|(source, m)| {
            let (ssrc, rtx_ssrc) = match m.fid_groups.first() {
                Some(&(media, rtx)) => (Some(media), Some(rtx)),
                None => (m.ssrcs.first().copied(), None),
            };
            // simulcast: our RIDs (lowest quality first) that the answer sends; its
            // SSRCs are then learnt from the RID extension, never from a=ssrc lines
            let rids: Vec<String> = sluice_signal::negotiation::SIMULCAST_RIDS
                .iter()
                .filter(|_| source == Source::Camera)
                .filter(|r| m.simulcast_send.iter().any(|s| s == *r))
                .map(|r| (*r).to_owned())
                .collect();
            let (ssrc, rtx_ssrc) = if rids.is_empty() {
                (ssrc, rtx_ssrc)
            } else {
                (None, None)
            };
            PublicationSpec {
                source,
                kind: m.kind,
                mid: m.mid.clone(),
                ssrc,
                rtx_ssrc,
                rids,
            }
        })
        .collect()
}

/// `offered` as the answer accepted it: `None` when the subscriber rejected the m-line,
/// does not receive on it or accepted no codec; RTX only where the answer kept it.
pub fn accepted_subscription(
    offered: SubscriptionSpec,
    answer: &Answer,
) -> Option<SubscriptionSpec> {
    let media = answer.media.iter().find(|m| m.mid == offered.mid)?;
    if media.rejected || !media.direction.receives() || media.codecs.is_empty() {
        return None;
    }
    // RED and ULPFEC show up as codecs; the RTX of RED (how a retransmission of a packet
    // sent in RED goes out) is listed with them, so the router knows it may use it
    let red_rtx = media
        .rtx
        .iter()
        .filter(|(rtx, apt)| *rtx == RED_VIDEO_RTX_PT && *apt == RED_VIDEO_PT)
        .map(|(rtx, _)| *rtx);
    Some(SubscriptionSpec {
        rtx_ssrc: offered.rtx_ssrc.filter(|_| !media.rtx.is_empty()),
        payload_types: media.codecs.iter().map(|c| c.pt).chain(red_rtx).collect(),
        ..offered
    })
}

fn random_u64(rng: &SystemRandom) -> u64 {
    let mut bytes = [0u8; 8];
    let _ = rng.fill(&mut bytes);
    u64::from_be_bytes(bytes)
}

/// A random SSRC, never 0 or 1 (values some stacks treat as special).
fn random_ssrc(rng: &SystemRandom) -> u32 {
    let mut bytes = [0u8; 4];
    let _ = rng.fill(&mut bytes);
    ssrc_from(bytes)
}

/// An SSRC from four random bytes without a retry loop: 0 and 1 (which some stacks
/// treat as "unset" or reserve for RTCP) map to the top of the range. A random source
/// that failed (all zeros) still yields a valid SSRC instead of spinning for ever.
fn ssrc_from(bytes: [u8; 4]) -> u32 {
    match u32::from_be_bytes(bytes) {
        low @ (0 | 1) => u32::MAX - low,
        ssrc => ssrc,
    }
}

/// The cameras among a participant's subscriptions.
fn cameras_wanted(joined: &Joined) -> usize {
    joined
        .wanted
        .iter()
        .filter(|(_, source)| *source == Source::Camera)
        .count()
}

/// The default subscriptions as `publisher`'s tracks go from `before` to `after`: a new
/// microphone or screen share is subscribed, a new camera while fewer than
/// `media.max_video_subscriptions` are; an unpublished track is forgotten (subscribing
/// to it again, when it comes back, follows the same rule).
fn auto_subscribe(
    joined: &mut Joined,
    publisher: ParticipantId,
    before: Published,
    after: Published,
) {
    for source in Source::ALL {
        let key = (publisher, source);
        let (was, is) = (before.has(source), after.has(source));
        if was && !is {
            joined.wanted.remove(&key);
        } else if is
            && !was
            && (source != Source::Camera || cameras_wanted(joined) < joined.max_cameras)
        {
            joined.wanted.insert(key);
        }
    }
}

/// Brings the tracks of `publisher` in this participant's offer in line with what it
/// publishes and what this participant subscribes to: an m-line for each such track,
/// none for the others (a participant without a camera, or one scrolled out of view,
/// costs nobody a video m-line). Returns whether anything changed.
fn sync_tracks(
    joined: &mut Joined,
    rng: &SystemRandom,
    publisher: ParticipantId,
    published: Published,
) -> bool {
    let label = participant_label(publisher);
    let mut changed = false;
    for source in Source::ALL {
        let key = (publisher, source);
        let carried = joined.streams.contains_key(&key);
        let wanted = published.has(source) && joined.wanted.contains(&key);
        if wanted == carried {
            continue;
        }
        changed = true;
        let track_id = track_label(publisher, source);
        let kind = source.kind();
        if carried {
            joined.negotiator.remove_track(&track_id);
            joined.streams.remove(&key);
            joined
                .active
                .retain(|s| !(s.publisher == publisher && s.source == source));
            joined
                .offered
                .retain(|s| !(s.publisher == publisher && s.source == source));
            continue;
        }
        let ssrc = random_ssrc(rng);
        let rtx_ssrc = (kind == Kind::Video).then(|| random_ssrc(rng));
        // Microphone and camera share the participant's stream (a page's tile); a screen
        // is a stream of its own, so even a page that keys tiles by stream id shows it
        // beside the camera rather than in its place.
        let stream_id = match source {
            Source::Screen => track_id.clone(),
            Source::Microphone | Source::Camera => label.clone(),
        };
        let stream = SendStream {
            stream_id,
            track_id,
            ssrc,
            rtx_ssrc,
            cname: label.clone(),
        };
        match joined.negotiator.add_remote_track(&label, kind, stream) {
            Ok(_) => {
                joined.streams.insert(
                    key,
                    SubscriptionSpec {
                        publisher,
                        source,
                        kind,
                        ssrc,
                        rtx_ssrc,
                        mid: String::new(),
                        payload_types: Vec::new(),
                    },
                );
            }
            Err(error) => {
                tracing::warn!(participant = joined.id.0, %error, "cannot add a track to the offer");
            }
        }
    }
    changed
}

fn fatal_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Unauthorized => "join token missing or invalid",
        ErrorCode::RoomFull => "the room is full",
        ErrorCode::TooManyRooms => "the server has too many rooms",
        ErrorCode::MessageTooLarge => "message too large",
        ErrorCode::BadRequest => "invalid answer",
        ErrorCode::ShuttingDown => "the server is shutting down",
        ErrorCode::UnsupportedVersion => {
            "this server speaks version 1 of the signalling protocol (docs/signaling.md)"
        }
        ErrorCode::ClusterUnavailable => "the cluster cannot place the room now; retry",
        _ => "internal error",
    }
}

/// Negotiation limits for one connection: an answer may be as large as any signalling
/// message the WebSocket accepts (Chrome's answer grows by about 1.4 KB per m-line, so a
/// room of 50 answers with about 70 KB).
fn negotiator_config(max_message_bytes: usize, simulcast: bool) -> NegotiatorConfig {
    let defaults = NegotiatorConfig::default();
    NegotiatorConfig {
        simulcast,
        answer_limits: ParseLimits {
            max_sdp_len: max_message_bytes,
            ..defaults.answer_limits
        },
        ..defaults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use sluice_signal::sdp::{AnswerMedia, Codec, Direction};

    fn vp8() -> Codec {
        Codec {
            pt: 96,
            name: "VP8".into(),
            clock_rate: 90_000,
            channels: None,
            fmtp: None,
            rtcp_fb: vec!["nack".into()],
        }
    }

    fn answer_with(mid: &str, direction: Direction, rejected: bool, rtx: Vec<(u8, u8)>) -> Answer {
        Answer {
            ice_ufrag: "u".into(),
            ice_pwd: "p".into(),
            fingerprint_sha256: [0; 32],
            setup: Setup::Active,
            bundle_mids: vec![mid.into()],
            media: vec![AnswerMedia {
                mid: mid.into(),
                kind: Kind::Video,
                direction,
                rejected,
                codecs: vec![vp8()],
                rtx,
                ssrcs: Vec::new(),
                fid_groups: Vec::new(),
                extmaps: Vec::new(),
                msid: None,
                simulcast_send: Vec::new(),
            }],
        }
    }

    #[test]
    fn a_camera_answered_with_simulcast_publishes_our_rids_lowest_first_without_ssrcs() {
        let mut answer = answer_with("1", Direction::SendOnly, false, Vec::new());
        answer.media[0].simulcast_send = vec!["f".into(), "q".into(), "x".into()];
        answer.media[0].ssrcs = vec![7];
        let published = publications(&answer, None);
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].rids, ["q", "f"]);
        assert_eq!((published[0].ssrc, published[0].rtx_ssrc), (None, None));
        answer.media[0].simulcast_send.clear();
        assert_eq!(publications(&answer, None)[0].ssrc, Some(7));
    }

    #[test]
    fn the_screen_is_read_from_the_m_line_added_for_it_never_from_another() {
        let mut answer = answer_with("4", Direction::SendOnly, false, Vec::new());
        answer.media[0].simulcast_send = vec!["q".into()];
        answer.media[0].ssrcs = vec![9];
        assert!(publications(&answer, None).is_empty());
        assert!(publications(&answer, Some("5")).is_empty());
        let published = publications(&answer, Some("4"));
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].source, Source::Screen);
        // one encoding, whatever the answer says about simulcast
        assert!(published[0].rids.is_empty());
        assert_eq!(published[0].ssrc, Some(9));
        // a screen m-line answered as audio is not a screen
        answer.media[0].kind = Kind::Audio;
        assert!(publications(&answer, Some("4")).is_empty());
    }

    #[test]
    fn track_ids_name_their_owner_and_source_and_nothing_else_parses() {
        for source in Source::ALL {
            let label = track_label(ParticipantId(42), source);
            assert_eq!(parse_track_label(&label), Some((ParticipantId(42), source)));
        }
        assert_eq!(track_label(ParticipantId(3), Source::Camera), "p-3-video");
        for bad in [
            "",
            "p-",
            "p-3",
            "p-3-",
            "p--video",
            "p-+3-video",
            "p-3-window",
            "q-3-audio",
            "p-99999999999999999999999-audio",
        ] {
            assert_eq!(parse_track_label(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tile_sizes_map_to_the_smallest_encoding_that_fills_them() {
        assert_eq!(layer_for_size(0, 0), 0);
        assert_eq!(layer_for_size(320, 180), 0);
        assert_eq!(layer_for_size(640, 360), 1);
        assert_eq!(layer_for_size(1280, 720), 2);
        // a wide, short tile is filled along its width
        assert_eq!(layer_for_size(1280, 100), 2);
        assert_eq!(layer_for_size(u32::MAX, u32::MAX), 2);
    }

    fn offered(mid: &str) -> SubscriptionSpec {
        SubscriptionSpec {
            publisher: ParticipantId(3),
            source: Source::Camera,
            kind: Kind::Video,
            ssrc: 0xB0,
            rtx_ssrc: Some(0xB1),
            mid: mid.into(),
            payload_types: Vec::new(),
        }
    }

    #[test]
    fn an_ssrc_is_never_zero_or_one_even_from_a_failed_random_source() {
        assert_eq!(ssrc_from([0; 4]), u32::MAX);
        assert_eq!(ssrc_from([0, 0, 0, 1]), u32::MAX - 1);
        assert_eq!(ssrc_from([0, 0, 0, 2]), 2);
    }

    #[test]
    fn a_subscription_carries_what_its_answer_accepted() {
        let accepted = accepted_subscription(
            offered("4"),
            &answer_with("4", Direction::RecvOnly, false, vec![(97, 96)]),
        )
        .expect("accepted");
        assert_eq!(accepted.payload_types, vec![96]);
        assert_eq!(accepted.rtx_ssrc, Some(0xB1));
        assert_eq!(accepted.mid, "4");
    }

    #[test]
    fn red_ulpfec_and_the_rtx_of_red_are_carried_when_the_answer_accepted_them() {
        let mut answer = answer_with("4", Direction::RecvOnly, false, vec![(97, 96), (117, 116)]);
        for (pt, name) in [(116, "red"), (118, "ulpfec")] {
            answer.media[0].codecs.push(Codec {
                pt,
                name: name.into(),
                ..vp8()
            });
        }
        let accepted = accepted_subscription(offered("4"), &answer).expect("accepted");
        assert_eq!(accepted.payload_types, vec![96, 116, 118, 117]);
        // without the RTX of RED: RED and ULPFEC only
        answer.media[0].rtx = vec![(97, 96)];
        let accepted = accepted_subscription(offered("4"), &answer).expect("accepted");
        assert_eq!(accepted.payload_types, vec![96, 116, 118]);
    }

    #[test]
    fn no_rtx_is_sent_to_a_subscriber_whose_answer_dropped_it() {
        let accepted = accepted_subscription(
            offered("4"),
            &answer_with("4", Direction::RecvOnly, false, Vec::new()),
        )
        .expect("accepted");
        assert_eq!(accepted.rtx_ssrc, None);
    }

    #[test]
    fn nothing_is_forwarded_on_an_m_line_answered_inactive_or_rejected() {
        for (direction, rejected) in [
            (Direction::Inactive, false),
            (Direction::SendOnly, false),
            (Direction::RecvOnly, true),
        ] {
            assert_eq!(
                accepted_subscription(
                    offered("4"),
                    &answer_with("4", direction, rejected, Vec::new())
                ),
                None,
                "{direction:?} rejected={rejected}"
            );
        }
        // an answer without the m-line at all
        assert_eq!(
            accepted_subscription(
                offered("5"),
                &answer_with("4", Direction::RecvOnly, false, Vec::new())
            ),
            None
        );
    }

    /// Offers a room of `others + 1` to a negotiator and answers it like a client.
    fn negotiate_room(others: u32, config: NegotiatorConfig) -> (usize, bool) {
        use sluice_loadgen::answer::{write_answer, AnswerParams};
        use sluice_loadgen::remote::RemoteOffer;
        let transport = TransportParams {
            session_id: 7,
            ice: ("serverufrag".into(), "serverpasswordserverpassword".into()),
            fingerprint_sha256: [7; 32],
            setup: Setup::ActPass,
            candidates: vec!["127.0.0.1:40000".parse().expect("address")],
        };
        let mut negotiator = Negotiator::new(transport, config);
        for other in 0..others {
            for kind in [Kind::Audio, Kind::Video] {
                let id = format!("p-{other}");
                let stream = SendStream {
                    stream_id: id.clone(),
                    track_id: format!("{id}-{}", kind.as_str()),
                    ssrc: other * 4 + 1 + u32::from(kind == Kind::Video),
                    rtx_ssrc: (kind == Kind::Video).then_some(other * 4 + 3),
                    cname: id.clone(),
                };
                negotiator
                    .add_remote_track(&id, kind, stream)
                    .expect("room fits the negotiator");
            }
        }
        let (revision, offer) = negotiator.create_offer().expect("offer");
        let offer = RemoteOffer::parse(&offer).expect("client parses the offer");
        let answer = write_answer(
            &offer.sdp,
            &AnswerParams {
                session_id: 9,
                version: 1,
                ice_ufrag: "clientufrag".into(),
                ice_pwd: "clientpasswordclientpassword".into(),
                fingerprint_sha256: [9; 32],
                stream_id: "me".into(),
                cname: "me".into(),
                audio: None,
                video: None,
            },
        )
        .expect("answer");
        (
            answer.len(),
            negotiator.on_answer(revision, &answer).is_ok(),
        )
    }

    #[test]
    fn the_answer_for_a_room_of_fifty_is_accepted_with_the_default_limits() {
        let limit = crate::config::LimitsConfig::default().signaling_message_bytes;
        let (len, accepted) = negotiate_room(49, negotiator_config(limit, true));
        assert!(len > 64 * 1024, "a room of 50 answers with {len} bytes");
        assert!(accepted);
        // the negotiator's own default (64 KiB) would have refused it
        assert!(!negotiate_room(49, NegotiatorConfig::default()).1);
    }

    #[test]
    fn messages_over_the_rate_are_warned_once_then_dropped_then_closed() {
        let verdicts: Vec<RateCheck> = (1..=9).map(|count| rate_verdict(count, 4)).collect();
        assert_eq!(
            verdicts,
            [
                RateCheck::Accept,
                RateCheck::Accept,
                RateCheck::Accept,
                RateCheck::Accept,
                RateCheck::DropAndWarn,
                RateCheck::Drop,
                RateCheck::Drop,
                RateCheck::Drop,
                RateCheck::Close,
            ]
        );
        assert_eq!(rate_verdict(u32::MAX, u32::MAX), RateCheck::Accept);
    }

    #[test]
    fn the_dtls_role_follows_the_setup_attributes() {
        assert_eq!(dtls_role(Setup::ActPass, Setup::Active), Role::Server);
        assert_eq!(dtls_role(Setup::ActPass, Setup::Passive), Role::Client);
        assert_eq!(dtls_role(Setup::Active, Setup::Passive), Role::Client);
        assert_eq!(dtls_role(Setup::Passive, Setup::Active), Role::Server);
    }
}
