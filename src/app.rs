//! The composition root: the state every HTTP handler and signalling connection shares,
//! and the one place that starts the media workers and wires signalling to them.
//!
//! `main` (and the end-to-end tests) build an [`AppState`], call [`start_media`], and
//! serve [`crate::http::router`] with it. The other modules take what they need from
//! the state and never start each other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::cluster::directory::{SharedDirectory, WorkerDirectory};
use crate::cluster::media_control::RemoteWorkers;
use crate::cluster::node_relay::NodeRelay;
use crate::cluster::spread::Spread;
use crate::cluster::{Cluster, MediaRecord};
use crate::config::{AnnounceAddress, Config};
use crate::limits::PerIpLimit;
use crate::media::{MediaError, MediaPlane};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::signaling::rooms::Rooms;

/// State shared by every HTTP handler and signalling connection; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// True once the server listens; `/readyz` reports it (false again while draining).
    pub ready: Arc<AtomicBool>,
    /// Set on SIGTERM: `/readyz` turns 503 so that load balancers send no new clients,
    /// while the calls in progress still take joins until shutdown begins.
    pub draining: Arc<AtomicBool>,
    /// Shutdown signal and open-connection count (signalling sockets hold a guard).
    pub shutdown: Shutdown,
    /// The room registry over the media workers; `None` serves HTTP only (signalling
    /// then refuses every client with an `internal` error).
    pub rooms: Option<Arc<Rooms>>,
    /// Signalling connections (one per participant session) per client address,
    /// bounded by `limits.sessions_per_source_ip`.
    pub sessions_per_ip: Arc<PerIpLimit>,
    /// The addresses every offer announces as host candidates, resolved once at start-up:
    /// listing the host's interfaces is a system call per interface, too slow to repeat
    /// on every join of a join storm.
    pub announce: Arc<[AnnounceAddress]>,
    /// Cluster membership and placement; `None` when the node runs alone.
    pub cluster: Option<Arc<Cluster>>,
    /// How this node numbers the workers of other nodes (cluster mode).
    pub directory: Option<SharedDirectory>,
}

impl AppState {
    /// A state that is not ready yet: `main` sets `ready` once it is listening.
    pub fn new(config: Arc<Config>, metrics: Arc<Metrics>, shutdown: Shutdown) -> Self {
        let sessions_per_ip = PerIpLimit::new(config.limits.sessions_per_source_ip);
        let announce = config.media.announce_addresses().into();
        Self {
            announce,
            config,
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
            draining: Arc::new(AtomicBool::new(false)),
            shutdown,
            rooms: None,
            sessions_per_ip,
            cluster: None,
            directory: None,
        }
    }

    /// The same state with signalling wired to `rooms`.
    pub fn with_rooms(mut self, rooms: Arc<Rooms>) -> Self {
        self.rooms = Some(rooms);
        self
    }

    /// The same state as a member of `cluster`.
    pub fn with_cluster(mut self, cluster: Arc<Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    pub fn is_ready(&self) -> bool {
        self.accepts_sessions() && !self.draining.load(Ordering::Acquire)
    }

    /// Whether a WebSocket is taken: from start-up until shutdown begins, draining
    /// included (a join into a call in progress is then still served).
    pub fn accepts_sessions(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.shutdown.is_begun()
    }

    /// Starts draining (see [`AppState::draining`]).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

/// Starts the media workers and the room registry over them: the state `main` (and
/// the end-to-end tests) serve.
pub fn start_media(state: AppState) -> Result<AppState, MediaError> {
    let media = MediaPlane::start(&state.config, Arc::clone(&state.metrics))?;
    let rooms = Rooms::new(
        media,
        state.config.limits.rooms,
        state.config.limits.participants_per_room,
        state.config.media.room_worker_participants,
        state.config.signaling.room_event_queue,
        Arc::clone(&state.metrics),
    );
    Ok(state.with_rooms(Arc::new(rooms)))
}

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterStartError {
    #[error("cluster.redis_url: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cannot bind cluster.relay_listen {addr}: {source}")]
    BindRelay {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Joins the cluster when the configuration has a `cluster` section: the state gains
/// the membership; `main` runs its heartbeat. Without Redis reachable the node still
/// starts (it retries in the background). Also starts the relay between nodes (rooms
/// that span nodes); call it inside the tokio runtime.
pub fn start_cluster(state: AppState) -> Result<AppState, ClusterStartError> {
    let (Some(config), Some(rooms)) = (state.config.cluster.clone(), state.rooms.clone()) else {
        return Ok(state);
    };
    let cluster = Cluster::new(
        config.clone(),
        Arc::clone(&state.metrics),
        Arc::clone(&rooms),
    )?;
    let media = rooms.media().clone();
    let directory = SharedDirectory::new(WorkerDirectory::new(
        config.node_id.clone(),
        media.workers.len(),
    ));
    // Sessions of rooms owned here may live on other nodes' workers and theirs here:
    // participant ids must not collide across nodes (random 23-bit prefix per boot).
    let mut prefix = [0_u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut prefix);
    let prefix = u64::from(u32::from_be_bytes(prefix) >> 9);
    rooms.set_first_participant_id((prefix << 40) | 1);

    let bind = |addr| -> Result<tokio::net::UdpSocket, std::io::Error> {
        let socket = std::net::UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        tokio::net::UdpSocket::from_std(socket)
    };
    let socket = bind(config.relay_listen).map_err(|source| ClusterStartError::BindRelay {
        addr: config.relay_listen,
        source,
    })?;
    let mut relay_addr = socket.local_addr().unwrap_or(config.relay_listen);
    if let Some(announce) = config
        .relay_announce
        .as_deref()
        .and_then(|a| a.parse().ok())
    {
        relay_addr = announce;
    } else if relay_addr.ip().is_unspecified() {
        if let Some(ip) = state
            .announce
            .iter()
            .find_map(|a| a.candidate_addr(0, relay_addr.port()))
        {
            relay_addr = ip;
        }
    }
    let workers = media
        .workers
        .iter()
        .map(|w| {
            state
                .announce
                .iter()
                .filter_map(|a| a.candidate_addr(w.index, w.local_addr.port()))
                .collect()
        })
        .collect();
    cluster.set_media_record(MediaRecord {
        relay_addr: Some(relay_addr),
        fingerprint: Some(media.certificate.fingerprint().to_string()),
        workers,
    });
    let outgoing = media
        .remote_relay
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(outgoing) = outgoing {
        let relay = NodeRelay::new(
            socket,
            Arc::clone(&media.dtls),
            Arc::clone(&cluster),
            directory.clone(),
            media.relay_inboxes.clone(),
            outgoing,
            Arc::clone(&state.metrics),
        );
        tokio::spawn(relay.run());
    }
    tracing::info!(%relay_addr, "relay between nodes listening");
    rooms.set_remote_placement(Arc::new(Spread::new(
        Arc::clone(&cluster),
        RemoteWorkers::new(&cluster, directory.clone()),
    )));
    let mut state = state.with_cluster(cluster);
    state.directory = Some(directory);
    Ok(state)
}
