//! Sessions on another node's workers: the commands a room's node sends a worker of
//! another node, and the session events that come back.
//!
//! A room that spans nodes keeps its signalling on the node that owns it (every
//! participant's WebSocket ends there, bridged if it reached another node); only the
//! media sessions of some participants live on another node's workers. The owner talks
//! to such a worker exactly as to its own, through a [`WorkerHandle`] whose command
//! queue feeds a control link: one WebSocket per pair of nodes to the other node's
//! `/internal/media`, authenticated like the signalling hop (node id and per-boot key,
//! checked against the node's heartbeat). Commands go as JSON ([`ControlMessage`]);
//! the worker's session events come back ([`EventMessage`]). When a control link
//! breaks, the other node removes the sessions it carried and this node tells their
//! participants they are disconnected, so that their clients rejoin.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{self, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use sluice_dtls::{Fingerprint, Role};
use sluice_ice::Credentials;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as UpstreamMessage;

use crate::app::AppState;
use crate::cluster::directory::{GlobalWorker, SharedDirectory};
use crate::cluster::{Cluster, KEY_HEADER, NODE_HEADER};
use crate::media::{
    Command, ParticipantId, PrepareSpec, PublicationSpec, RoomSpan, SessionEvent, SessionSpec,
    SubscriptionSpec, WorkerHandle,
};
use crate::metrics::HandshakeFailure;

/// Commands queued per remote worker before signalling waits.
const COMMAND_QUEUE: usize = 1024;
/// Session events queued per participant on the serving node.
const EVENT_QUEUE: usize = 64;
/// Longest wait for the other node to accept the control link.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A command for worker `worker` of the receiving node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMessage {
    /// [`Command::Prepare`].
    Prepare {
        worker: u16,
        participant: u64,
        room: String,
        ufrag: String,
        pwd: String,
    },
    /// [`Command::Upsert`].
    Upsert {
        worker: u16,
        participant: u64,
        room: String,
        local_ufrag: String,
        local_pwd: String,
        remote_ufrag: String,
        remote_pwd: String,
        fingerprint: String,
        dtls_client: bool,
        publications: Vec<WirePublication>,
        subscriptions: Vec<WireSubscription>,
    },
    /// [`Command::Remove`].
    Remove { worker: u16, participant: u64 },
    /// [`Command::SetMaxLayer`].
    SetMaxLayer {
        worker: u16,
        subscriber: u64,
        publisher: u64,
        max_layer: usize,
    },
    /// [`Command::RoomSpan`], its workers named cluster-wide.
    RoomSpan {
        worker: u16,
        room: String,
        workers: Vec<GlobalWorker>,
        version: u64,
    },
}

/// [`PublicationSpec`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WirePublication {
    source: sluice_signal::protocol::Source,
    kind: sluice_signal::sdp::Kind,
    mid: String,
    ssrc: Option<u32>,
    rtx_ssrc: Option<u32>,
    rids: Vec<String>,
}

/// [`SubscriptionSpec`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireSubscription {
    publisher: u64,
    source: sluice_signal::protocol::Source,
    kind: sluice_signal::sdp::Kind,
    ssrc: u32,
    rtx_ssrc: Option<u32>,
    mid: String,
    payload_types: Vec<u8>,
}

/// A session event of `participant`, back to the room's node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMessage {
    participant: u64,
    #[serde(flatten)]
    event: WireEvent,
}

/// [`SessionEvent`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WireEvent {
    Connected {
        handshake_ms: u64,
    },
    Failed {
        reason: String,
    },
    Disconnected,
    VideoPaused {
        publisher: u64,
        paused: bool,
        reason: String,
    },
    /// `speaker`: the message's own `participant` names whose session it is.
    DominantSpeaker {
        speaker: u64,
    },
}

impl From<&PublicationSpec> for WirePublication {
    fn from(p: &PublicationSpec) -> Self {
        Self {
            source: p.source,
            kind: p.kind,
            mid: p.mid.clone(),
            ssrc: p.ssrc,
            rtx_ssrc: p.rtx_ssrc,
            rids: p.rids.clone(),
        }
    }
}

impl From<WirePublication> for PublicationSpec {
    fn from(p: WirePublication) -> Self {
        Self {
            source: p.source,
            kind: p.kind,
            mid: p.mid,
            ssrc: p.ssrc,
            rtx_ssrc: p.rtx_ssrc,
            rids: p.rids,
        }
    }
}

impl From<&SubscriptionSpec> for WireSubscription {
    fn from(s: &SubscriptionSpec) -> Self {
        Self {
            publisher: s.publisher.0,
            source: s.source,
            kind: s.kind,
            ssrc: s.ssrc,
            rtx_ssrc: s.rtx_ssrc,
            mid: s.mid.clone(),
            payload_types: s.payload_types.clone(),
        }
    }
}

impl From<WireSubscription> for SubscriptionSpec {
    fn from(s: WireSubscription) -> Self {
        Self {
            publisher: ParticipantId(s.publisher),
            source: s.source,
            kind: s.kind,
            ssrc: s.ssrc,
            rtx_ssrc: s.rtx_ssrc,
            mid: s.mid,
            payload_types: s.payload_types,
        }
    }
}

impl From<&SessionEvent> for WireEvent {
    fn from(event: &SessionEvent) -> Self {
        match event {
            SessionEvent::Connected { handshake_duration } => WireEvent::Connected {
                handshake_ms: handshake_duration.as_millis() as u64,
            },
            SessionEvent::Failed { reason } => WireEvent::Failed {
                reason: reason.as_str().to_owned(),
            },
            SessionEvent::Disconnected => WireEvent::Disconnected,
            SessionEvent::VideoPaused {
                publisher,
                paused,
                reason,
            } => WireEvent::VideoPaused {
                publisher: publisher.0,
                paused: *paused,
                reason: reason.as_str().to_owned(),
            },
            SessionEvent::DominantSpeaker { participant } => WireEvent::DominantSpeaker {
                speaker: participant.0,
            },
        }
    }
}

impl WireEvent {
    fn into_event(self) -> SessionEvent {
        match self {
            WireEvent::Connected { handshake_ms } => SessionEvent::Connected {
                handshake_duration: Duration::from_millis(handshake_ms),
            },
            WireEvent::Failed { reason } => SessionEvent::Failed {
                reason: HandshakeFailure::ALL
                    .into_iter()
                    .find(|r| r.as_str() == reason)
                    .unwrap_or(HandshakeFailure::ProtocolError),
            },
            WireEvent::Disconnected => SessionEvent::Disconnected,
            WireEvent::VideoPaused {
                publisher,
                paused,
                reason,
            } => SessionEvent::VideoPaused {
                publisher: ParticipantId(publisher),
                paused,
                reason: if reason == sluice_sfu::PauseReason::LastN.as_str() {
                    sluice_sfu::PauseReason::LastN
                } else {
                    sluice_sfu::PauseReason::Bandwidth
                },
            },
            WireEvent::DominantSpeaker { speaker } => SessionEvent::DominantSpeaker {
                participant: ParticipantId(speaker),
            },
        }
    }
}

/// A control link's outgoing queue and the routes of its sessions' events.
type ControlLink = (mpsc::Sender<ControlMessage>, EventRoutes);

/// Events senders of the sessions a control link carries, by participant.
type EventRoutes = Arc<Mutex<HashMap<u64, mpsc::Sender<SessionEvent>>>>;

fn lock(
    routes: &EventRoutes,
) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<SessionEvent>>> {
    routes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Turns a command for worker `worker` of another node into its wire form, remembering
/// where the session's events go. `None` for what cannot cross (a span naming a worker
/// the directory does not know).
fn to_wire(
    command: Command,
    worker: u16,
    directory: &SharedDirectory,
    routes: &EventRoutes,
) -> Option<ControlMessage> {
    Some(match command {
        Command::Prepare(spec) => {
            lock(routes).insert(spec.participant.0, spec.events.clone());
            ControlMessage::Prepare {
                worker,
                participant: spec.participant.0,
                room: spec.room,
                ufrag: spec.local_ice.ufrag,
                pwd: spec.local_ice.pwd,
            }
        }
        Command::Upsert(spec) => {
            lock(routes).insert(spec.participant.0, spec.events.clone());
            ControlMessage::Upsert {
                worker,
                participant: spec.participant.0,
                room: spec.room,
                local_ufrag: spec.local_ice.ufrag,
                local_pwd: spec.local_ice.pwd,
                remote_ufrag: spec.remote_ice.ufrag,
                remote_pwd: spec.remote_ice.pwd,
                fingerprint: spec.remote_fingerprint.to_string(),
                dtls_client: spec.dtls_role == Role::Client,
                publications: spec.publications.iter().map(Into::into).collect(),
                subscriptions: spec.subscriptions.iter().map(Into::into).collect(),
            }
        }
        Command::Remove(id) => {
            lock(routes).remove(&id.0);
            ControlMessage::Remove {
                worker,
                participant: id.0,
            }
        }
        Command::SetMaxLayer {
            subscriber,
            publisher,
            max_layer,
        } => ControlMessage::SetMaxLayer {
            worker,
            subscriber: subscriber.0,
            publisher: publisher.0,
            max_layer,
        },
        Command::RoomSpan(span) => {
            let directory = directory.lock();
            let workers = span
                .workers
                .iter()
                .map(|w| directory.worker(*w))
                .collect::<Option<Vec<_>>>()?;
            ControlMessage::RoomSpan {
                worker,
                room: span.room,
                workers,
                version: span.version,
            }
        }
    })
}

/// The control links of this node to the others, opened on first use.
#[derive(Debug, Clone)]
pub struct RemoteWorkers {
    cluster_node: String,
    cluster_key: String,
    directory: SharedDirectory,
    /// By node id: the link's outgoing queue and the routes of its sessions' events.
    links: Arc<Mutex<HashMap<String, ControlLink>>>,
}

impl RemoteWorkers {
    /// The links of `cluster`'s node, naming workers through `directory`.
    pub fn new(cluster: &Cluster, directory: SharedDirectory) -> Self {
        Self {
            cluster_node: cluster.node_id().to_owned(),
            cluster_key: cluster.key().to_owned(),
            directory,
            links: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A handle on worker `index` of node `node` (reached at `internal_url`, its
    /// sessions announcing `candidates`), under its alias here.
    pub fn handle(
        &self,
        node: &str,
        internal_url: &str,
        index: u16,
        candidates: Vec<SocketAddr>,
        fingerprint: Fingerprint,
    ) -> Option<WorkerHandle> {
        let alias = self.directory.lock().index_of(&GlobalWorker {
            node: node.to_owned(),
            index,
        })?;
        let (link, routes) = self.link(node, internal_url);
        let (commands, mut queue) = mpsc::channel::<Command>(COMMAND_QUEUE);
        let directory = self.directory.clone();
        tokio::spawn(async move {
            while let Some(command) = queue.recv().await {
                if let Some(message) = to_wire(command, index, &directory, &routes) {
                    if link.send(message).await.is_err() {
                        break;
                    }
                }
            }
        });
        Some(WorkerHandle {
            index: alias,
            local_addr: candidates
                .first()
                .copied()
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            commands,
            candidates: Some(candidates),
            fingerprint: Some(fingerprint),
        })
    }

    fn link(&self, node: &str, internal_url: &str) -> (mpsc::Sender<ControlMessage>, EventRoutes) {
        let mut links = self
            .links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((sender, routes)) = links.get(node).filter(|(s, _)| !s.is_closed()) {
            return (sender.clone(), Arc::clone(routes));
        }
        let (sender, queue) = mpsc::channel(COMMAND_QUEUE);
        let routes: EventRoutes = Arc::new(Mutex::new(HashMap::new()));
        links.insert(node.to_owned(), (sender.clone(), Arc::clone(&routes)));
        let url = internal_url.to_owned();
        let me = (self.cluster_node.clone(), self.cluster_key.clone());
        let peer = node.to_owned();
        let task_routes = Arc::clone(&routes);
        tokio::spawn(async move {
            if let Err(error) = run_link(&url, &me, queue, &task_routes).await {
                tracing::warn!(node = %peer, %error, "media control link to node ended");
            }
            // its sessions are gone with it: their participants rejoin
            let routes: Vec<_> = lock(&task_routes).drain().collect();
            for (_, events) in routes {
                let _ = events.try_send(SessionEvent::Disconnected);
            }
        });
        (sender, routes)
    }
}

async fn run_link(
    internal_url: &str,
    (node, key): &(String, String),
    mut queue: mpsc::Receiver<ControlMessage>,
    routes: &EventRoutes,
) -> Result<(), String> {
    let base = internal_url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http URL: {internal_url}"))?;
    let url = format!("ws://{}/internal/media", base.trim_end_matches('/'));
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let headers = request.headers_mut();
    headers.insert(
        NODE_HEADER,
        HeaderValue::from_str(node).map_err(|e| e.to_string())?,
    );
    headers.insert(
        KEY_HEADER,
        HeaderValue::from_str(key).map_err(|e| e.to_string())?,
    );
    let (mut socket, _) =
        tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            message = queue.recv() => {
                let Some(message) = message else { return Ok(()) };
                let text = serde_json::to_string(&message).map_err(|e| e.to_string())?;
                socket.send(UpstreamMessage::text(text)).await.map_err(|e| e.to_string())?;
            }
            frame = socket.next() => match frame {
                Some(Ok(UpstreamMessage::Text(text))) => {
                    let Ok(event) = serde_json::from_str::<EventMessage>(text.as_str()) else {
                        tracing::debug!("unreadable event on the media control link");
                        continue;
                    };
                    let sender = lock(routes).get(&event.participant).cloned();
                    if let Some(sender) = sender {
                        let _ = sender.try_send(event.event.into_event());
                    }
                }
                Some(Ok(UpstreamMessage::Close(_))) | None => return Err("closed".into()),
                Some(Err(error)) => return Err(error.to_string()),
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Serves another node's control link: its commands go to this node's workers, their
/// sessions' events go back. Every session it created is removed when it ends.
pub async fn serve(mut socket: WebSocket, state: AppState, directory: SharedDirectory) {
    let Some(rooms) = state.rooms.clone() else {
        return;
    };
    let workers = rooms.media().workers.clone();
    let max_sessions = state
        .config
        .limits
        .rooms
        .saturating_mul(state.config.limits.participants_per_room);
    let (events_tx, mut events) = mpsc::channel::<(u64, SessionEvent)>(COMMAND_QUEUE);
    let mut sessions: HashMap<u64, (usize, mpsc::Sender<SessionEvent>)> = HashMap::new();
    loop {
        tokio::select! {
            frame = socket.recv() => match frame {
                Some(Ok(ws::Message::Text(text))) => {
                    let Ok(message) = serde_json::from_str::<ControlMessage>(text.as_str()) else {
                        tracing::info!("unreadable command on the media control link");
                        continue;
                    };
                    let Some((index, command)) =
                        from_wire(message, &directory, &mut sessions, &events_tx, max_sessions)
                    else {
                        continue;
                    };
                    match workers.get(index) {
                        Some(worker) => {
                            let _ = worker.commands.send(command).await;
                        }
                        None => tracing::info!(worker = index, "command for a worker this node does not run"),
                    }
                }
                Some(Ok(ws::Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            Some((participant, event)) = events.recv() => {
                let message = EventMessage { participant, event: WireEvent::from(&event) };
                let Ok(text) = serde_json::to_string(&message) else { continue };
                if socket.send(ws::Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            () = state.shutdown.begun() => break,
        }
    }
    for (participant, (index, _)) in sessions {
        if let Some(worker) = workers.get(index) {
            let _ = worker
                .commands
                .send(Command::Remove(ParticipantId(participant)))
                .await;
        }
    }
}

/// The local command a control message asks for, and the worker it is for.
fn from_wire(
    message: ControlMessage,
    directory: &SharedDirectory,
    sessions: &mut HashMap<u64, (usize, mpsc::Sender<SessionEvent>)>,
    events: &mpsc::Sender<(u64, SessionEvent)>,
    max_sessions: usize,
) -> Option<(usize, Command)> {
    let mut session_events = |participant: u64, worker: usize| {
        if let Some((_, sender)) = sessions.get(&participant) {
            return Some(sender.clone());
        }
        if sessions.len() >= max_sessions {
            tracing::info!("media control link refused a session: too many");
            return None;
        }
        let (sender, mut receiver) = mpsc::channel(EVENT_QUEUE);
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(event) = receiver.recv().await {
                if events.send((participant, event)).await.is_err() {
                    break;
                }
            }
        });
        sessions.insert(participant, (worker, sender.clone()));
        Some(sender)
    };
    Some(match message {
        ControlMessage::Prepare {
            worker,
            participant,
            room,
            ufrag,
            pwd,
        } => {
            let index = usize::from(worker);
            let events = session_events(participant, index)?;
            (
                index,
                Command::Prepare(Box::new(PrepareSpec {
                    participant: ParticipantId(participant),
                    room,
                    local_ice: Credentials { ufrag, pwd },
                    events,
                })),
            )
        }
        ControlMessage::Upsert {
            worker,
            participant,
            room,
            local_ufrag,
            local_pwd,
            remote_ufrag,
            remote_pwd,
            fingerprint,
            dtls_client,
            publications,
            subscriptions,
        } => {
            let index = usize::from(worker);
            let events = session_events(participant, index)?;
            (
                index,
                Command::Upsert(Box::new(SessionSpec {
                    participant: ParticipantId(participant),
                    room,
                    local_ice: Credentials {
                        ufrag: local_ufrag,
                        pwd: local_pwd,
                    },
                    remote_ice: Credentials {
                        ufrag: remote_ufrag,
                        pwd: remote_pwd,
                    },
                    remote_fingerprint: Fingerprint::parse(&fingerprint)?,
                    dtls_role: if dtls_client {
                        Role::Client
                    } else {
                        Role::Server
                    },
                    publications: publications.into_iter().map(Into::into).collect(),
                    subscriptions: subscriptions.into_iter().map(Into::into).collect(),
                    events,
                })),
            )
        }
        ControlMessage::Remove {
            worker,
            participant,
        } => {
            sessions.remove(&participant);
            (
                usize::from(worker),
                Command::Remove(ParticipantId(participant)),
            )
        }
        ControlMessage::SetMaxLayer {
            worker,
            subscriber,
            publisher,
            max_layer,
        } => (
            usize::from(worker),
            Command::SetMaxLayer {
                subscriber: ParticipantId(subscriber),
                publisher: ParticipantId(publisher),
                max_layer,
            },
        ),
        ControlMessage::RoomSpan {
            worker,
            room,
            workers,
            version,
        } => {
            let mut directory = directory.lock();
            let mut indices = workers
                .iter()
                .map(|w| directory.index_of(w))
                .collect::<Option<Vec<_>>>()?;
            indices.sort_unstable();
            (
                usize::from(worker),
                Command::RoomSpan(RoomSpan {
                    room,
                    workers: indices,
                    version,
                }),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::directory::WorkerDirectory;

    #[test]
    fn a_room_span_names_workers_cluster_wide_and_each_node_reads_it_in_its_own_terms() {
        // node a runs 2 workers and knows b's worker 0 as 2; node b runs 1 and will know
        // a's workers by its own aliases
        let a = SharedDirectory::new(WorkerDirectory::new("a", 2));
        let b = SharedDirectory::new(WorkerDirectory::new("b", 1));
        let b0 = GlobalWorker {
            node: "b".into(),
            index: 0,
        };
        assert_eq!(a.lock().index_of(&b0), Some(2));
        let routes: EventRoutes = Arc::new(Mutex::new(HashMap::new()));
        let span = Command::RoomSpan(RoomSpan {
            room: "r".into(),
            workers: vec![1, 2],
            version: 9,
        });
        let wire = to_wire(span, 0, &a, &routes).unwrap();
        let text = serde_json::to_string(&wire).unwrap();
        let read: ControlMessage = serde_json::from_str(&text).unwrap();
        let (events, _) = mpsc::channel(1);
        let mut sessions = HashMap::new();
        let (index, command) = from_wire(read, &b, &mut sessions, &events, 10).unwrap();
        assert_eq!(index, 0);
        // b: its own worker 0, a's worker 1 as its first alias (1)
        assert_eq!(
            command_span(command),
            Some(RoomSpan {
                room: "r".into(),
                workers: vec![0, 1],
                version: 9
            })
        );
    }

    fn command_span(command: Command) -> Option<RoomSpan> {
        match command {
            Command::RoomSpan(span) => Some(span),
            _ => None,
        }
    }

    #[test]
    fn events_cross_as_they_were() {
        let events = [
            SessionEvent::Connected {
                handshake_duration: Duration::from_millis(120),
            },
            SessionEvent::Failed {
                reason: HandshakeFailure::Timeout,
            },
            SessionEvent::Disconnected,
            SessionEvent::VideoPaused {
                publisher: ParticipantId(3),
                paused: true,
                reason: sluice_sfu::PauseReason::LastN,
            },
            SessionEvent::DominantSpeaker {
                participant: ParticipantId(4),
            },
        ];
        for event in events {
            let message = EventMessage {
                participant: 1,
                event: WireEvent::from(&event),
            };
            let text = serde_json::to_string(&message).unwrap();
            let read: EventMessage = serde_json::from_str(&text).unwrap();
            assert_eq!(read.event.into_event(), event);
        }
    }

    #[tokio::test]
    async fn sessions_a_link_may_open_are_bounded() {
        let directory = SharedDirectory::new(WorkerDirectory::new("b", 1));
        let (events, _) = mpsc::channel(1);
        let mut sessions = HashMap::new();
        let prepare = |participant| ControlMessage::Prepare {
            worker: 0,
            participant,
            room: "r".into(),
            ufrag: "u".into(),
            pwd: "p".into(),
        };
        assert!(from_wire(prepare(1), &directory, &mut sessions, &events, 2).is_some());
        assert!(from_wire(prepare(2), &directory, &mut sessions, &events, 2).is_some());
        assert!(from_wire(prepare(3), &directory, &mut sessions, &events, 2).is_none());
        assert!(from_wire(prepare(1), &directory, &mut sessions, &events, 2).is_some());
        let remove = ControlMessage::Remove {
            worker: 0,
            participant: 2,
        };
        assert!(from_wire(remove, &directory, &mut sessions, &events, 2).is_some());
        assert!(from_wire(prepare(3), &directory, &mut sessions, &events, 2).is_some());
    }
}
