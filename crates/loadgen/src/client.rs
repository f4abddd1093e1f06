//! The tokio shell around the sans-IO pieces: one WebSocket, one UDP socket, one task.
//!
//! ```text
//! connect(): WebSocket -> join -> joined   (returns here; the task does the rest)
//! task loop, select! over:
//!   WebSocket text  -> offer: parse, answer (same m-line order), update remote tracks;
//!                      first offer also starts ICE -> DTLS -> SRTP (Transport)
//!                      participant_joined/left, error, bye -> events and stats
//!   UDP datagram    -> Transport (STUN/DTLS/SRTP) -> MediaSession (stats, NACK, PLI)
//!   timer           -> Transport/MediaSession handle_timeout, stats snapshot, ping
//!   command         -> leave
//! after every step: drain Transport transmits and MediaSession output (protected) to UDP
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use ring::rand::{SecureRandom, SystemRandom};
use sluice_dtls::{Certificate, Role};
use sluice_ice::Credentials;
use sluice_signal::protocol::{ClientMessage, ServerMessage};
use sluice_signal::sdp::Setup;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::answer::{answer_setup, write_answer, AnswerParams, LocalTrack};
use crate::config::ClientConfig;
use crate::error::{AnswerError, ClientError};
use crate::ice::IceClientConfig;
use crate::recv::recv_batch;
use crate::remote::{RemoteOffer, RemoteTrack};
use crate::session::{MediaSession, Outgoing, SessionConfig};
use crate::stats::{ClientStats, Phase};
use crate::transport::{Received, RtpAction, Transport, TransportEvent, TransportParams};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Receive buffer asked for per client socket (capped by net.core.rmem_max).
const CLIENT_RECV_BUFFER_BYTES: usize = 1 << 20;

/// Most `recvmmsg` batches read per wake-up before the task looks at its timers and
/// the WebSocket again (the rest waits for the next turn of the loop).
const MAX_BATCHES_PER_WAKE: usize = 8;

/// Most events kept in [`Client::events`].
pub const MAX_EVENTS: usize = 4096;
/// Keep-alive interval of the signalling socket, like the demo page.
const PING_INTERVAL: Duration = Duration::from_secs(20);
/// Largest WebSocket message accepted from the server (an offer for a full room).
const MAX_SERVER_MESSAGE_BYTES: usize = 1 << 20;

/// What happened to a client, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The join succeeded.
    Joined {
        /// Our participant id.
        participant_id: String,
        /// Who was already there, as (id, name).
        participants: Vec<(String, String)>,
    },
    /// An offer arrived and was answered.
    Answered {
        /// Its revision.
        revision: u64,
        /// The remote tracks it carries.
        tracks: usize,
    },
    /// Someone joined.
    ParticipantJoined {
        /// Their id.
        id: String,
        /// Their name.
        name: String,
    },
    /// Someone left.
    ParticipantLeft {
        /// Their id.
        id: String,
    },
    /// The server paused (or resumed) someone's camera toward us.
    VideoPaused {
        /// Whose camera.
        id: String,
        /// Stopped or flowing again.
        paused: bool,
        /// `bandwidth` or `last_n`.
        reason: String,
    },
    /// The room's dominant speaker changed.
    DominantSpeaker {
        /// Who speaks now.
        id: String,
    },
    /// ICE succeeded.
    IceConnected,
    /// DTLS completed; SRTP is ready and media flows.
    MediaConnected,
    /// The server sent an error message.
    ServerError {
        /// The wire code.
        code: &'static str,
        /// The message.
        message: String,
    },
    /// The server ended the session.
    Bye {
        /// Its reason.
        reason: String,
    },
    /// The client failed.
    Failed(String),
}

enum Command {
    Leave,
    Release,
}

/// One synthetic participant. Dropping it aborts its task; [`Client::leave`] leaves cleanly.
pub struct Client {
    participant_id: String,
    local_addr: SocketAddr,
    stats: watch::Receiver<ClientStats>,
    events: Arc<Mutex<Vec<ClientEvent>>>,
    commands: mpsc::Sender<Command>,
    task: Option<JoinHandle<()>>,
    audio_level: Arc<AtomicU8>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("participant_id", &self.participant_id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn random_u32(rng: &SystemRandom, taken: &[u32]) -> Result<u32, ClientError> {
    loop {
        let mut bytes = [0u8; 4];
        rng.fill(&mut bytes)
            .map_err(|_| ClientError::InvalidConfig("system random generator failed"))?;
        let value = u32::from_be_bytes(bytes);
        if value != 0 && !taken.contains(&value) {
            return Ok(value);
        }
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn error_code(code: sluice_signal::protocol::ErrorCode) -> &'static str {
    code.as_str()
}

async fn send_json(ws: &mut Ws, message: &ClientMessage) -> Result<(), ClientError> {
    let text = serde_json::to_string(message)
        .map_err(|_| ClientError::Protocol("message did not serialise"))?;
    ws.send(Message::text(text)).await?;
    Ok(())
}

/// Reads the next server message; `None` when the socket closed.
async fn next_message(ws: &mut Ws) -> Result<Option<ServerMessage>, ClientError> {
    while let Some(frame) = ws.next().await {
        match frame? {
            Message::Text(text) => {
                if text.len() > MAX_SERVER_MESSAGE_BYTES {
                    return Err(ClientError::Protocol("server message too large"));
                }
                return serde_json::from_str(text.as_str())
                    .map(Some)
                    .map_err(|_| ClientError::Protocol("undecodable server message"));
            }
            Message::Close(_) => return Ok(None),
            Message::Binary(_) => return Err(ClientError::Protocol("binary frame from server")),
            _ => {}
        }
    }
    Ok(None)
}

/// Messages waiting between the signalling task and the client's task, each way.
const SIGNALLING_QUEUE: usize = 64;

/// The client's end of its WebSocket, which a task of its own reads and writes.
///
/// Polling a tungstenite stream that has nothing to read still prepares (zeroes) its
/// read buffer: done on every wake-up of a client that receives a thousand datagrams a
/// second, that was a quarter of the load generator's CPU. The signalling task only
/// wakes when the TCP socket or the outgoing queue has something.
struct Signalling {
    outgoing: mpsc::Sender<String>,
    incoming: mpsc::Receiver<Result<Option<ServerMessage>, ClientError>>,
}

impl Signalling {
    /// Moves `ws` into its own task. Dropping the returned handle closes the socket.
    fn spawn(mut ws: Ws) -> Self {
        let (outgoing, mut outgoing_rx) = mpsc::channel::<String>(SIGNALLING_QUEUE);
        let (incoming_tx, incoming) = mpsc::channel(SIGNALLING_QUEUE);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    text = outgoing_rx.recv() => {
                        let Some(text) = text else {
                            let _ = ws.close(None).await;
                            return;
                        };
                        if let Err(e) = ws.send(Message::text(text)).await {
                            let _ = incoming_tx.send(Err(ClientError::from(e))).await;
                            return;
                        }
                    }
                    message = next_message(&mut ws) => {
                        let last = !matches!(message, Ok(Some(_)));
                        if incoming_tx.send(message).await.is_err() || last {
                            let _ = ws.close(None).await;
                            return;
                        }
                    }
                }
            }
        });
        Self { outgoing, incoming }
    }

    async fn send(&mut self, message: &ClientMessage) -> Result<(), ClientError> {
        let text = serde_json::to_string(message)
            .map_err(|_| ClientError::Protocol("message did not serialise"))?;
        self.outgoing
            .send(text)
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// The next server message; `None` when the socket closed. Cancel-safe.
    async fn next(&mut self) -> Result<Option<ServerMessage>, ClientError> {
        self.incoming.recv().await.unwrap_or(Ok(None))
    }
}

impl Client {
    /// Opens the WebSocket, joins the room and starts the client's task, which answers
    /// every offer, runs ICE, DTLS and SRTP and then publishes and receives media.
    ///
    /// Returns once the server said `joined`; use [`Client::wait_connected`] (or
    /// [`Client::wait_for`]) to wait for media. Fails with [`ClientError::Rejected`]
    /// when the server refuses the join.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        config.validate()?;
        let join_started_at = Instant::now();
        let deadline = config.connect_timeout;
        let (mut ws, _) = tokio::time::timeout(
            deadline,
            tokio_tungstenite::connect_async(config.server_url.as_str()),
        )
        .await
        .map_err(|_| ClientError::Timeout(deadline))??;
        send_json(
            &mut ws,
            &ClientMessage::Join {
                room: config.room.clone(),
                name: config.name.clone(),
                token: config.token.clone(),
                version: Some(sluice_signal::protocol::PROTOCOL_VERSION),
            },
        )
        .await?;
        let joined = tokio::time::timeout(deadline, async {
            match next_message(&mut ws).await? {
                Some(ServerMessage::Joined {
                    participant_id,
                    participants,
                    ..
                }) => Ok((participant_id, participants)),
                Some(ServerMessage::Error { code, message }) => Err(ClientError::Rejected {
                    code: error_code(code),
                    message,
                }),
                Some(ServerMessage::Bye { reason }) => Err(ClientError::Bye { reason }),
                Some(_) => Err(ClientError::Protocol("message before joined")),
                None => Err(ClientError::Closed),
            }
        })
        .await
        .map_err(|_| ClientError::Timeout(deadline))??;
        let (participant_id, participants) = joined;

        let socket = UdpSocket::bind(SocketAddr::new(config.bind_ip, 0)).await?;
        // A load test measures the server, not this process's default 208 KiB buffer:
        // many clients share one core here, so each socket may wait a while to be read.
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(CLIENT_RECV_BUFFER_BYTES);
        let local_addr = socket.local_addr()?;

        let mut stats = ClientStats {
            phase: Phase::Connecting,
            participant_id: Some(participant_id.clone()),
            participants: participants
                .iter()
                .map(|p| (p.id.clone(), p.name.clone()))
                .collect::<BTreeMap<_, _>>(),
            join_started_at: Some(join_started_at),
            ..ClientStats::default()
        };
        stats.phase = Phase::Connecting;
        let (stats_tx, stats_rx) = watch::channel(stats.clone());
        let events = Arc::new(Mutex::new(vec![ClientEvent::Joined {
            participant_id: participant_id.clone(),
            participants: participants.into_iter().map(|p| (p.id, p.name)).collect(),
        }]));
        let (commands_tx, commands_rx) = mpsc::channel(4);

        let audio_level = Arc::new(AtomicU8::new(crate::media::NO_AUDIO_LEVEL));
        let runner = Runner::new(
            config,
            participant_id.clone(),
            stats,
            stats_tx,
            Arc::clone(&events),
            Arc::clone(&audio_level),
        )?;
        let task = tokio::spawn(runner.run(Signalling::spawn(ws), socket, commands_rx));
        Ok(Client {
            participant_id,
            local_addr,
            stats: stats_rx,
            events,
            commands: commands_tx,
            task: Some(task),
            audio_level,
        })
    }

    /// Sets the RFC 6464 audio level our microphone's packets carry from now on: 0 is
    /// the loudest, 127 silence (the server takes below 50 for voice); `None` sends no
    /// level at all (the default).
    pub fn set_audio_level(&self, level: Option<u8>) {
        let value = level.map_or(crate::media::NO_AUDIO_LEVEL, |l| l.min(127));
        self.audio_level.store(value, Ordering::Relaxed);
    }

    /// Our participant id.
    pub fn participant_id(&self) -> &str {
        &self.participant_id
    }

    /// The local UDP address media uses.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The latest statistics snapshot (refreshed every
    /// [`stats_interval`](ClientConfig::stats_interval) while counters move, and at
    /// every event).
    pub fn stats(&self) -> ClientStats {
        self.stats.borrow().clone()
    }

    /// Where the connection stands, without copying the whole snapshot (cheap enough
    /// to poll for thousands of clients).
    pub fn phase(&self) -> Phase {
        self.stats.borrow().phase
    }

    /// Every event so far (at most [`MAX_EVENTS`]).
    pub fn events(&self) -> Vec<ClientEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Waits until `predicate` holds for a stats snapshot; returns that snapshot.
    pub async fn wait_for(
        &self,
        predicate: impl Fn(&ClientStats) -> bool,
        timeout: Duration,
    ) -> Result<ClientStats, ClientError> {
        let mut rx = self.stats.clone();
        let waited = tokio::time::timeout(timeout, async move {
            rx.wait_for(|s| predicate(s))
                .await
                .map(|s| s.clone())
                .map_err(|_| ClientError::Closed)
        })
        .await;
        match waited {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout(timeout)),
        }
    }

    /// Waits until an event matching `predicate` has happened; returns it.
    pub async fn wait_for_event(
        &self,
        predicate: impl Fn(&ClientEvent) -> bool,
        timeout: Duration,
    ) -> Result<ClientEvent, ClientError> {
        let mut rx = self.stats.clone();
        let events = Arc::clone(&self.events);
        let find = move || {
            events
                .lock()
                .ok()
                .and_then(|e| e.iter().find(|e| predicate(e)).cloned())
        };
        let waited = tokio::time::timeout(timeout, async move {
            loop {
                if let Some(event) = find() {
                    return Ok(event);
                }
                if rx.changed().await.is_err() {
                    return find().ok_or(ClientError::Closed);
                }
            }
        })
        .await;
        waited.unwrap_or(Err(ClientError::Timeout(timeout)))
    }

    /// Waits until ICE, DTLS and SRTP are up; fails early when the client failed.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<ClientStats, ClientError> {
        let stats = self
            .wait_for(
                |s| matches!(s.phase, Phase::Connected | Phase::Failed | Phase::Closed),
                timeout,
            )
            .await?;
        match stats.phase {
            Phase::Connected => Ok(stats),
            _ => Err(ClientError::Failed(
                stats
                    .failure
                    .clone()
                    .unwrap_or_else(|| "session ended".to_owned()),
            )),
        }
    }

    /// Starts ICE and DTLS of a client configured with
    /// [`hold_transport`](ClientConfig::hold_transport): at once when it is
    /// [`Phase::Held`], otherwise as soon as the first offer is answered. The handshake
    /// time in its stats is then measured from this moment.
    pub fn release(&self) -> Result<(), ClientError> {
        self.commands
            .try_send(Command::Release)
            .map_err(|_| ClientError::Closed)
    }

    /// Sends `leave`, waits (up to 5 s) for the server's `bye` and the task's end, and
    /// returns the final statistics.
    pub async fn leave(mut self) -> Result<ClientStats, ClientError> {
        let _ = self.commands.send(Command::Leave).await;
        if let Some(task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                return Err(ClientError::Timeout(Duration::from_secs(5)));
            }
        }
        Ok(self.stats.borrow().clone())
    }
}

/// The task's state.
struct Runner {
    config: ClientConfig,
    /// Our microphone's level, shared with [`Client::set_audio_level`].
    audio_level: Arc<AtomicU8>,
    participant_id: String,
    stats: ClientStats,
    stats_tx: watch::Sender<ClientStats>,
    events: Arc<Mutex<Vec<ClientEvent>>>,
    certificate: Arc<Certificate>,
    ice_local: Credentials,
    answer: AnswerParams,
    rtcp_ssrc: u32,
    remote_addr: Option<SocketAddr>,
    transport: Option<Transport>,
    session: Option<MediaSession>,
    tracks: Vec<RemoteTrack>,
    offer_layout: Vec<(String, sluice_signal::sdp::Kind)>,
    first_offer_at: Option<Instant>,
    /// Held back (hold_transport) and not released yet.
    held: bool,
    /// [`Runner::activity`] at the last published snapshot.
    published_activity: Option<(u64, u64, u64)>,
    /// The server's candidate and our DTLS role, kept while held.
    pending: Option<PendingTransport>,
    ending: bool,
}

/// What starting the transport needs from the first offer.
struct PendingTransport {
    to: SocketAddr,
    role: Role,
    remote_ufrag: String,
    remote_pwd: String,
    remote_fingerprint: [u8; 32],
}

impl Runner {
    fn new(
        config: ClientConfig,
        participant_id: String,
        stats: ClientStats,
        stats_tx: watch::Sender<ClientStats>,
        events: Arc<Mutex<Vec<ClientEvent>>>,
        audio_level: Arc<AtomicU8>,
    ) -> Result<Self, ClientError> {
        let rng = SystemRandom::new();
        let certificate = Arc::new(
            Certificate::generate()
                .map_err(|_| ClientError::Dtls("certificate generation".into()))?,
        );
        let ice_local = Credentials::generate(&rng)
            .map_err(|_| ClientError::InvalidConfig("ICE credential generation failed"))?;
        let mut taken = Vec::new();
        for _ in 0..4 {
            let value = random_u32(&rng, &taken)?;
            taken.push(value);
        }
        let (audio_ssrc, video_ssrc, rtx_ssrc, rtcp_ssrc) =
            (taken[0], taken[1], taken[2], taken[3]);
        let mut session_id = [0u8; 8];
        let _ = rng.fill(&mut session_id);
        let stream_id = format!("lg-{participant_id}")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
            .take(64)
            .collect::<String>();
        let answer = AnswerParams {
            session_id: u64::from_be_bytes(session_id),
            version: 1,
            ice_ufrag: ice_local.ufrag.clone(),
            ice_pwd: ice_local.pwd.clone(),
            fingerprint_sha256: certificate.fingerprint().0,
            stream_id,
            cname: format!("cname{rtcp_ssrc:08x}"),
            audio: config.publish_audio.then(|| LocalTrack {
                track_id: "audio".to_owned(),
                ssrc: audio_ssrc,
                rtx_ssrc: None,
            }),
            video: config.publish_video.then(|| LocalTrack {
                track_id: "video".to_owned(),
                ssrc: video_ssrc,
                rtx_ssrc: Some(rtx_ssrc),
            }),
        };
        Ok(Self {
            audio_level,
            held: config.hold_transport,
            published_activity: None,
            pending: None,
            config,
            participant_id,
            stats,
            stats_tx,
            events,
            certificate,
            ice_local,
            answer,
            rtcp_ssrc,
            remote_addr: None,
            transport: None,
            session: None,
            tracks: Vec::new(),
            offer_layout: Vec::new(),
            first_offer_at: None,
            ending: false,
        })
    }

    fn event(&mut self, event: ClientEvent) {
        if let Ok(mut events) = self.events.lock() {
            if events.len() < MAX_EVENTS {
                events.push(event);
            }
        }
        self.publish();
    }

    fn fail(&mut self, why: String) {
        if self.stats.failure.is_none() {
            self.stats.failure = Some(why.clone());
        }
        self.stats.phase = Phase::Failed;
        self.event(ClientEvent::Failed(why));
    }

    /// A cheap summary of everything the periodic snapshot would change.
    fn activity(&self) -> (u64, u64, u64) {
        let media = self.session.as_ref().map_or(0, MediaSession::activity);
        let (retransmissions, checks) = self.transport.as_ref().map_or((0, 0), |t| {
            let d = t.dtls_stats().map_or(0, |d| d.total_retransmissions());
            (d, t.ice_checks_sent())
        });
        (media, retransmissions, checks)
    }

    /// The periodic refresh: copies the statistics only when something moved (an idle
    /// or held client costs nothing; copying thousands of snapshots ten times a second
    /// was most of a handshake storm's CPU).
    fn publish_if_changed(&mut self) {
        let activity = self.activity();
        if self.published_activity != Some(activity) {
            self.publish();
        }
    }

    fn publish(&mut self) {
        self.published_activity = Some(self.activity());
        if let Some(session) = &self.session {
            session.fill_stats(&mut self.stats);
        }
        if let Some(transport) = &self.transport {
            if let Some(d) = transport.dtls_stats() {
                self.stats.dtls_retransmissions = d.total_retransmissions();
            }
            self.stats.ice_checks_sent = transport.ice_checks_sent();
        }
        self.stats_tx.send_replace(self.stats.clone());
    }

    async fn run(
        mut self,
        mut ws: Signalling,
        socket: UdpSocket,
        mut commands: mpsc::Receiver<Command>,
    ) {
        if let Err(e) = self.run_inner(&mut ws, &socket, &mut commands).await {
            let e = match e {
                ClientError::Closed => self.last_words(&mut ws).unwrap_or(ClientError::Closed),
                e => e,
            };
            self.fail(e.to_string());
        }
        if let Some(t) = self.transport.as_mut() {
            t.close(Instant::now());
        }
        drop(ws);
        self.publish();
    }

    /// What the server said before its socket closed, read after a send found the
    /// signalling task gone: the server's `bye` (and any error before it) may still wait
    /// in the queue behind the offer this task was answering, and is the real ending.
    fn last_words(&mut self, ws: &mut Signalling) -> Option<ClientError> {
        while let Ok(message) = ws.incoming.try_recv() {
            match message {
                Ok(Some(ServerMessage::Error { code, message })) => {
                    self.event(ClientEvent::ServerError {
                        code: error_code(code),
                        message,
                    });
                }
                Ok(Some(ServerMessage::Bye { reason })) => {
                    self.event(ClientEvent::Bye {
                        reason: reason.clone(),
                    });
                    return Some(ClientError::Bye { reason });
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
        None
    }

    async fn run_inner(
        &mut self,
        ws: &mut Signalling,
        socket: &UdpSocket,
        commands: &mut mpsc::Receiver<Command>,
    ) -> Result<(), ClientError> {
        let stats_interval = self.config.stats_interval;
        let mut next_stats = Instant::now() + stats_interval;
        let mut next_ping = Instant::now() + PING_INTERVAL;
        let mut leave_deadline: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if now >= next_stats {
                next_stats = now + stats_interval;
                self.publish_if_changed();
            }
            if now >= next_ping && !self.ending {
                next_ping = now + PING_INTERVAL;
                ws.send(&ClientMessage::Ping).await?;
            }
            if leave_deadline.is_some_and(|d| now >= d) {
                self.stats.phase = Phase::Closed;
                return Ok(());
            }
            if let (Some(start), false) =
                (self.first_offer_at, self.stats.phase == Phase::Connected)
            {
                if now.saturating_duration_since(start) > self.config.connect_timeout {
                    return Err(ClientError::Timeout(self.config.connect_timeout));
                }
            }
            self.on_timers(now);
            self.flush(socket).await;

            let mut wake = next_stats.min(next_ping);
            if let Some(t) = self.transport.as_ref().and_then(Transport::poll_timeout) {
                wake = wake.min(t);
            }
            if let Some(s) = &self.session {
                wake = wake.min(s.poll_timeout());
            }
            if let Some(d) = leave_deadline {
                wake = wake.min(d);
            }
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(wake));
            tokio::select! {
                frame = ws.next() => {
                    match frame? {
                        Some(message) => {
                            if self.on_message(ws, message).await? {
                                return Ok(());
                            }
                        }
                        None => {
                            if self.ending {
                                self.stats.phase = Phase::Closed;
                                return Ok(());
                            }
                            return Err(ClientError::Closed);
                        }
                    }
                }
                ready = socket.readable() => {
                    ready?;
                    self.drain_socket(socket)?;
                }
                command = commands.recv(), if !self.ending => {
                    match command {
                        Some(Command::Release) => {
                            self.held = false;
                            if let Some(pending) = self.pending.take() {
                                self.start_transport(pending, Instant::now())?;
                            }
                        }
                        Some(Command::Leave) | None => {
                            self.ending = true;
                            let _ = ws.send(&ClientMessage::Leave).await;
                            leave_deadline = Some(Instant::now() + Duration::from_secs(3));
                        }
                    }
                }
                _ = sleep => {}
            }
        }
    }

    fn on_timers(&mut self, now: Instant) {
        if let Some(transport) = self.transport.as_mut() {
            if transport.poll_timeout().is_some_and(|t| t <= now) {
                transport.handle_timeout(now);
            }
        }
        self.on_transport_events(now);
        if let Some(session) = self.session.as_mut() {
            if session.poll_timeout() <= now {
                session.handle_timeout(now);
            }
        }
    }

    /// Reads what is waiting on the socket in `recvmmsg` batches (one clock reading per
    /// batch) until it is empty or [`MAX_BATCHES_PER_WAKE`] batches were read.
    fn drain_socket(&mut self, socket: &UdpSocket) -> Result<(), ClientError> {
        for _ in 0..MAX_BATCHES_PER_WAKE {
            let now = Instant::now();
            let remote = self.remote_addr;
            match recv_batch(socket, |from, datagram| {
                if Some(from) == remote {
                    self.on_datagram(now, datagram);
                }
            }) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn on_datagram(&mut self, now: Instant, datagram: &[u8]) {
        let Some(transport) = self.transport.as_mut() else {
            return;
        };
        let session = self.session.as_mut();
        let received = transport.handle_datagram_sampled(now, datagram, |clear| {
            session.map_or(RtpAction::Drop, |s| s.rtp_action(clear))
        });
        if let Some(session) = self.session.as_mut() {
            match received {
                Received::Rtp(p) => session.handle_rtp(now, &p),
                Received::Clear(c) => session.handle_clear_rtp(now, &c),
                Received::Rtcp(p) => session.handle_rtcp(now, &p),
                Received::DecryptFailed { ssrc } => session.on_decrypt_failure(ssrc),
                Received::Nothing => {}
            }
        }
        self.on_transport_events(now);
    }

    fn on_transport_events(&mut self, now: Instant) {
        loop {
            let Some(event) = self.transport.as_mut().and_then(Transport::poll_event) else {
                return;
            };
            match event {
                TransportEvent::IceConnected { rtt } => {
                    self.stats.ice_rtt = Some(rtt);
                    self.event(ClientEvent::IceConnected);
                }
                TransportEvent::Connected { dtls_handshake, .. } => {
                    self.stats.dtls_handshake_time = Some(dtls_handshake);
                    self.stats.handshake_time = self
                        .first_offer_at
                        .map(|t| now.saturating_duration_since(t));
                    self.stats.connected_at = Some(now);
                    self.stats.phase = Phase::Connected;
                    let mut session = MediaSession::new(
                        SessionConfig {
                            audio_ssrc: self.answer.audio.as_ref().map(|t| t.ssrc),
                            video_ssrcs: self
                                .answer
                                .video
                                .as_ref()
                                .map(|t| (t.ssrc, t.rtx_ssrc.unwrap_or(0))),
                            rtcp_ssrc: self.rtcp_ssrc,
                            video_bitrate_bps: self.config.video_bitrate_bps,
                            video_fps: self.config.video_fps,
                            keyframe_interval: self.config.keyframe_interval,
                            rtcp_interval: Duration::from_secs(1),
                            nack_interval: Duration::from_millis(20),
                            decrypt_every: self.config.decrypt_every,
                        },
                        &self.participant_id,
                        now,
                        unix_micros(),
                    );
                    session.set_remote_tracks(&self.tracks);
                    session.set_audio_level_source(Arc::clone(&self.audio_level));
                    self.session = Some(session);
                    self.event(ClientEvent::MediaConnected);
                }
                TransportEvent::ConsentLost => self.fail(ClientError::ConsentLost.to_string()),
                TransportEvent::Failed(why) => self.fail(why),
            }
        }
    }

    async fn flush(&mut self, socket: &UdpSocket) {
        let (Some(transport), Some(to)) = (self.transport.as_mut(), self.remote_addr) else {
            return;
        };
        while let Some(datagram) = transport.poll_transmit() {
            let _ = socket.send_to(&datagram, to).await;
        }
        let Some(session) = self.session.as_mut() else {
            return;
        };
        while let Some(out) = session.poll_output() {
            let protected = match &out {
                Outgoing::Rtp(p) => transport.protect_rtp(p),
                Outgoing::Rtcp(p) => transport.protect_rtcp(p),
            };
            if let Some(bytes) = protected {
                let _ = socket.send_to(&bytes, to).await;
            }
        }
    }

    /// Returns true when the session is over.
    async fn on_message(
        &mut self,
        ws: &mut Signalling,
        message: ServerMessage,
    ) -> Result<bool, ClientError> {
        match message {
            ServerMessage::Offer { revision, sdp, .. } => {
                let sdp = self.answer_offer(revision, &sdp)?;
                ws.send(&ClientMessage::Answer { revision, sdp }).await?;
            }
            ServerMessage::ParticipantJoined { id, name, .. } => {
                self.stats.participants.insert(id.clone(), name.clone());
                self.event(ClientEvent::ParticipantJoined { id, name });
            }
            ServerMessage::RoomState { participants } => {
                // A resync: whoever we knew and is not listed has left.
                let now: std::collections::HashMap<String, String> =
                    participants.into_iter().map(|p| (p.id, p.name)).collect();
                let gone: Vec<String> = self
                    .stats
                    .participants
                    .keys()
                    .filter(|id| !now.contains_key(*id))
                    .cloned()
                    .collect();
                for id in gone {
                    self.stats.participants.remove(&id);
                    self.event(ClientEvent::ParticipantLeft { id });
                }
                for (id, name) in now {
                    if !self.stats.participants.contains_key(&id) {
                        self.stats.participants.insert(id.clone(), name.clone());
                        self.event(ClientEvent::ParticipantJoined { id, name });
                    }
                }
            }
            // every track is subscribed by default (within the server's camera cap)
            ServerMessage::ParticipantMuted { .. }
            | ServerMessage::TrackPublished { .. }
            | ServerMessage::TrackUnpublished { .. } => {}
            ServerMessage::VideoPaused { id, paused, reason } => {
                self.event(ClientEvent::VideoPaused { id, paused, reason });
            }
            ServerMessage::DominantSpeaker { id } => {
                self.event(ClientEvent::DominantSpeaker { id });
            }
            ServerMessage::ParticipantLeft { id } => {
                self.stats.participants.remove(&id);
                self.event(ClientEvent::ParticipantLeft { id });
            }
            ServerMessage::Error { code, message } => {
                self.event(ClientEvent::ServerError {
                    code: error_code(code),
                    message,
                });
            }
            ServerMessage::Bye { reason } => {
                self.event(ClientEvent::Bye {
                    reason: reason.clone(),
                });
                if self.ending {
                    self.stats.phase = Phase::Closed;
                    return Ok(true);
                }
                return Err(ClientError::Bye { reason });
            }
            ServerMessage::Pong => {}
            ServerMessage::Joined { .. } => return Err(ClientError::Protocol("second joined")),
        }
        Ok(false)
    }

    /// Starts ICE (and so DTLS) towards the server's candidate; the handshake clock
    /// starts here.
    fn start_transport(
        &mut self,
        pending: PendingTransport,
        now: Instant,
    ) -> Result<(), ClientError> {
        self.remote_addr = Some(pending.to);
        self.first_offer_at = Some(now);
        self.stats.transport_started_at = Some(now);
        self.stats.phase = Phase::Connecting;
        let mut dtls = sluice_dtls::Config::new(Arc::clone(&self.certificate));
        dtls.max_datagram_size = self.config.dtls_max_datagram_size;
        dtls.handshake_timeout = self.config.connect_timeout;
        self.transport = Some(Transport::new(
            TransportParams {
                remote_ufrag: pending.remote_ufrag,
                remote_pwd: pending.remote_pwd,
                local_ufrag: self.ice_local.ufrag.clone(),
                remote_fingerprint: pending.remote_fingerprint,
                role: pending.role,
                dtls: Arc::new(dtls),
                ice: IceClientConfig::default(),
            },
            now,
        )?);
        self.publish();
        Ok(())
    }

    fn answer_offer(&mut self, revision: u64, sdp: &str) -> Result<String, ClientError> {
        let offer = RemoteOffer::parse(sdp)?;
        let layout: Vec<_> = offer
            .sdp
            .media
            .iter()
            .map(|m| (m.mid.clone(), m.kind))
            .collect();
        if let Some(index) = self
            .offer_layout
            .iter()
            .zip(&layout)
            .position(|(old, new)| old != new)
            .or_else(|| (layout.len() < self.offer_layout.len()).then_some(layout.len()))
        {
            return Err(AnswerError::MediaChanged { media_index: index }.into());
        }
        self.offer_layout = layout;
        self.answer.version = revision;
        let answer = write_answer(&offer.sdp, &self.answer)?;
        self.tracks = offer.tracks();
        if let Some(session) = self.session.as_mut() {
            session.set_remote_tracks(&self.tracks);
        }
        if self.transport.is_none() && self.pending.is_none() {
            let to = offer
                .candidate_for(self.config.bind_ip)
                .ok_or(AnswerError::NoCandidate)?;
            let role = match answer_setup(offer.sdp.setup) {
                Setup::Passive => Role::Server,
                _ => Role::Client,
            };
            let pending = PendingTransport {
                to,
                role,
                remote_ufrag: offer.sdp.ice_ufrag.clone(),
                remote_pwd: offer.sdp.ice_pwd.clone(),
                remote_fingerprint: offer.sdp.fingerprint_sha256,
            };
            if self.held {
                self.pending = Some(pending);
                self.stats.phase = Phase::Held;
            } else {
                self.start_transport(pending, Instant::now())?;
            }
        }
        self.stats.offer_revision = revision;
        let tracks = self.tracks.len();
        self.event(ClientEvent::Answered { revision, tracks });
        Ok(answer)
    }
}
