//! The relay between this node and the others: one UDP socket, one [`RelayLink`] per
//! peer node, and the plumbing between the links and this node's workers.
//!
//! Workers hand it batches for workers of other nodes (addressed by the aliases of the
//! [`WorkerDirectory`](crate::cluster::directory::WorkerDirectory)); it sends each
//! message as a frame on the link to that node, opening the link on first use. The
//! node with the smaller id plays the DTLS client; the other, when it needs a link
//! first, asks for one with a wake-up datagram. Frames from a peer go to the named
//! local worker's relay inbox, from the alias of the peer's sending worker.
//!
//! The link does not retransmit, so what is state rather than stream is repeated:
//! every `Publications` frame is sent again each [`STATE_REPEAT`] until a newer one or
//! a `Gone` replaces it, and a `Gone` three times. A mirror whose `Publications` was
//! lost appears a moment later; what media the loss cost is recovered by NACKs, which
//! the sending node answers from its cache.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_dtls::{Fingerprint, Role};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::cluster::directory::{GlobalWorker, SharedDirectory};
use crate::cluster::relay_link::{LinkEvent, RelayLink};
use crate::cluster::relay_wire::RelayFrame;
use crate::cluster::{Cluster, NodeRecord};
use crate::media::relay::{RelayBatch, RelayMessage};
use crate::media::ParticipantId;
use crate::metrics::Metrics;

/// How often state frames are repeated.
pub const STATE_REPEAT: Duration = Duration::from_secs(1);
/// Times a `Gone` is sent in all.
const GONE_REPEATS: u8 = 3;
/// Frames held per peer while its link connects.
const MAX_PENDING_FRAMES: usize = 2048;
/// Most state frames remembered per peer.
const MAX_STATE_FRAMES: usize = 4096;

/// Least time between two wake-up datagrams to one peer.
const WAKE_INTERVAL: Duration = Duration::from_millis(250);
/// Largest datagram read.
const MAX_DATAGRAM: usize = 2048;

/// A state frame and how many more times it is sent.
struct StateFrame {
    frame: RelayFrame,
    repeats_left: Option<u8>,
}

/// The link to one peer node.
struct Peer {
    /// The relay address the node published: where its datagrams go.
    addr: SocketAddr,
    fingerprint: Fingerprint,
    link: RelayLink,
    pending: Vec<RelayFrame>,
    state: HashMap<(u16, ParticipantId), StateFrame>,
    rejected_seen: u64,
    last_wake: Option<Instant>,
}

/// The relay of this node.
pub struct NodeRelay {
    socket: UdpSocket,
    dtls: Arc<sluice_dtls::Config>,
    cluster: Arc<Cluster>,
    directory: SharedDirectory,
    inboxes: Vec<mpsc::Sender<RelayBatch>>,
    outgoing: mpsc::Receiver<(usize, RelayBatch)>,
    peers: HashMap<String, Peer>,
    metrics: Arc<Metrics>,
    next_repeat: Instant,
    ssrc_counter: u32,
}

impl NodeRelay {
    /// The relay on `socket`, for this node's workers' `inboxes` and what they send
    /// other nodes (`outgoing`).
    pub fn new(
        socket: UdpSocket,
        dtls: Arc<sluice_dtls::Config>,
        cluster: Arc<Cluster>,
        directory: SharedDirectory,
        inboxes: Vec<mpsc::Sender<RelayBatch>>,
        outgoing: mpsc::Receiver<(usize, RelayBatch)>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            socket,
            dtls,
            cluster,
            directory,
            inboxes,
            outgoing,
            peers: HashMap::new(),
            metrics,
            next_repeat: Instant::now() + STATE_REPEAT,
            ssrc_counter: 0,
        }
    }

    /// Runs until the workers stop sending (the process ends).
    pub async fn run(mut self) {
        let mut buf = vec![0_u8; MAX_DATAGRAM];
        loop {
            let deadline = self
                .peers
                .values()
                .filter_map(|p| p.link.poll_timeout())
                .chain([self.next_repeat])
                .min()
                .unwrap_or(self.next_repeat);
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => {
                    if let Ok((len, from)) = received {
                        let now = Instant::now();
                        if let Some(datagram) = buf.get(..len) {
                            self.handle_datagram(now, from, datagram);
                        }
                    }
                }
                batch = self.outgoing.recv() => match batch {
                    Some((alias, batch)) => self.send_batch(alias, batch),
                    None => return,
                },
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    self.handle_timeout(Instant::now());
                }
            }
            self.flush().await;
        }
    }

    fn peer_record(&self, node: &str) -> Option<NodeRecord> {
        self.cluster.peers().into_iter().find(|p| p.id == node)
    }

    /// The link to `node`, opened if needed (and possible: the node is live and
    /// publishes a relay address and fingerprint).
    fn peer(&mut self, node: &str, now: Instant) -> Option<&mut Peer> {
        let record = self.peer_record(node);
        let stale = match (self.peers.get(node), &record) {
            (Some(peer), Some(record)) => {
                record.relay_addr != Some(peer.addr)
                    || record.fingerprint.as_deref().and_then(Fingerprint::parse)
                        != Some(peer.fingerprint)
            }
            (Some(_), None) => false, // keep it while Redis is unreachable
            (None, _) => true,
        };
        if stale {
            let record = record?;
            let addr = record.relay_addr?;
            let fingerprint = record.fingerprint.as_deref().and_then(Fingerprint::parse)?;
            let role = if self.cluster.node_id() < node {
                Role::Client
            } else {
                Role::Server
            };
            self.ssrc_counter = self.ssrc_counter.wrapping_add(1);
            let link = RelayLink::new(
                Arc::clone(&self.dtls),
                role,
                fingerprint,
                self.ssrc_counter << 8,
                now,
            );
            tracing::info!(peer = node, %addr, ?role, "relay link opened");
            self.peers.insert(
                node.to_owned(),
                Peer {
                    addr,
                    fingerprint,
                    link,
                    pending: Vec::new(),
                    state: HashMap::new(),
                    rejected_seen: 0,
                    last_wake: None,
                },
            );
        }
        self.peers.get_mut(node)
    }

    fn send_batch(&mut self, alias: usize, batch: RelayBatch) {
        let now = Instant::now();
        let Some(GlobalWorker { node, index }) = self.directory.lock().worker(alias) else {
            return;
        };
        let Ok(from_worker) = u16::try_from(batch.from) else {
            return;
        };
        let count = batch.messages.len() as u64;
        let metrics = Arc::clone(&self.metrics);
        let Some(peer) = self.peer(&node, now) else {
            metrics.cluster.relay_frames(&node, "dropped", count);
            return;
        };
        for message in batch.messages {
            let frame = RelayFrame {
                from_worker,
                to_worker: index,
                message,
            };
            remember_state(peer, &frame);
            send_frame(peer, frame, &metrics, &node);
        }
    }

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Some((node, payload)) = split_header(datagram) else {
            tracing::debug!(%from, "relay datagram without a node header");
            return;
        };
        if node == self.cluster.node_id() {
            return;
        }
        let node = node.to_owned();
        let Some(peer) = self.peer(&node, now) else {
            tracing::debug!(%from, node, "relay datagram from a node that is not a live member");
            return;
        };
        if !payload.is_empty() {
            peer.link.handle_datagram(now, payload);
        }
        self.drain_events(&node);
    }

    fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| p.link.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for node in due {
            if let Some(peer) = self.peers.get_mut(&node) {
                peer.link.handle_timeout(now);
            }
            self.drain_events(&node);
        }
        if now >= self.next_repeat {
            self.next_repeat = now + STATE_REPEAT;
            self.repeat_state();
        }
    }

    /// Sends every state frame again; a `Gone` that has been sent enough is forgotten.
    fn repeat_state(&mut self) {
        for (node, peer) in &mut self.peers {
            if !peer.link.is_connected() {
                continue;
            }
            let mut frames = Vec::new();
            peer.state.retain(|_, state| {
                frames.push(state.frame.clone());
                match state.repeats_left.as_mut() {
                    Some(0) => false,
                    Some(left) => {
                        *left -= 1;
                        *left > 0
                    }
                    None => true,
                }
            });
            for frame in frames {
                send_frame(peer, frame, &self.metrics, node);
            }
        }
    }

    fn drain_events(&mut self, node: &str) {
        let mut failed = false;
        let Some(peer) = self.peers.get_mut(node) else {
            return;
        };
        while let Some(event) = peer.link.poll_event() {
            match event {
                LinkEvent::Connected => {
                    tracing::info!(peer = node, "relay link connected");
                    self.metrics.cluster.relay_links_connected.inc();
                    for frame in std::mem::take(&mut peer.pending) {
                        peer.link.send(&frame);
                    }
                }
                LinkEvent::Failed(why) => {
                    tracing::warn!(peer = node, %why, "relay link failed");
                    failed = true;
                }
                LinkEvent::Frame(frame) => {
                    self.metrics.cluster.relay_frames(node, "received", 1);
                    deliver(&self.directory, &self.inboxes, node, frame, &self.metrics);
                }
            }
        }
        if failed {
            self.peers.remove(node);
        }
    }

    async fn flush(&mut self) {
        let me = self.cluster.node_id().to_owned();
        let now = Instant::now();
        let mut datagram = Vec::with_capacity(MAX_DATAGRAM);
        for (node, peer) in &mut self.peers {
            // a server-side link with frames waiting asks the client to start
            if !peer.link.is_connected()
                && !peer.pending.is_empty()
                && me.as_str() > node.as_str()
                && peer
                    .last_wake
                    .is_none_or(|at| now.duration_since(at) >= WAKE_INTERVAL)
            {
                peer.last_wake = Some(now);
                put_header(&mut datagram, &me);
                let _ = self.socket.send_to(&datagram, peer.addr).await;
            }
            while let Some(payload) = peer.link.poll_transmit() {
                put_header(&mut datagram, &me);
                datagram.extend_from_slice(&payload);
                let _ = self.socket.send_to(&datagram, peer.addr).await;
            }
            self.metrics
                .cluster
                .relay_frames(node, "rejected", take_rejected(peer));
        }
    }
}

/// Starts `datagram` afresh with this node's id.
fn put_header(datagram: &mut Vec<u8>, node: &str) {
    datagram.clear();
    let id = node.as_bytes();
    let id = id.get(..usize::from(u8::MAX)).unwrap_or(id);
    datagram.push(id.len() as u8);
    datagram.extend_from_slice(id);
}

/// The sending node's id and the rest of a datagram.
fn split_header(datagram: &[u8]) -> Option<(&str, &[u8])> {
    let (&len, rest) = datagram.split_first()?;
    let len = usize::from(len);
    if len == 0 || rest.len() < len {
        return None;
    }
    let (id, payload) = rest.split_at(len);
    Some((std::str::from_utf8(id).ok()?, payload))
}

/// Rejections counted on the link since the last call.
fn take_rejected(peer: &mut Peer) -> u64 {
    let total = peer.link.stats().rejected;
    let new = total.saturating_sub(peer.rejected_seen);
    peer.rejected_seen = total;
    new
}

/// Remembers a state frame for repetition (or forgets the publisher's, on `Gone`).
fn remember_state(peer: &mut Peer, frame: &RelayFrame) {
    let (participant, repeats_left) = match &frame.message {
        RelayMessage::Publications { participant, .. } => (*participant, None),
        RelayMessage::Gone(participant) => (*participant, Some(GONE_REPEATS - 1)),
        _ => return,
    };
    let key = (frame.to_worker, participant);
    if !peer.state.contains_key(&key) && peer.state.len() >= MAX_STATE_FRAMES {
        return;
    }
    peer.state.insert(
        key,
        StateFrame {
            frame: frame.clone(),
            repeats_left,
        },
    );
}

fn send_frame(peer: &mut Peer, frame: RelayFrame, metrics: &Metrics, node: &str) {
    if peer.link.is_connected() {
        peer.link.send(&frame);
        metrics.cluster.relay_frames(node, "sent", 1);
    } else if peer.pending.len() < MAX_PENDING_FRAMES {
        peer.pending.push(frame);
    } else {
        metrics.cluster.relay_frames(node, "dropped", 1);
    }
}

/// Hands a frame from `node` to the local worker it names, from the alias of the
/// worker that sent it.
fn deliver(
    directory: &SharedDirectory,
    inboxes: &[mpsc::Sender<RelayBatch>],
    node: &str,
    frame: RelayFrame,
    metrics: &Metrics,
) {
    let from = directory.lock().index_of(&GlobalWorker {
        node: node.to_owned(),
        index: frame.from_worker,
    });
    let (Some(from), Some(inbox)) = (from, inboxes.get(usize::from(frame.to_worker))) else {
        metrics.cluster.relay_frames(node, "dropped", 1);
        return;
    };
    let batch = RelayBatch {
        from,
        messages: vec![frame.message],
    };
    if inbox.try_send(batch).is_err() {
        metrics.cluster.relay_frames(node, "dropped", 1);
    }
}
