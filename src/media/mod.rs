//! The media plane: `media.workers` threads, each a single-threaded loop that owns one
//! UDP socket (`media.listen` PORT + k), the sessions and rooms placed on it, and a
//! [`router::RouterAdapter`] (a `sluice_sfu::Router`). Signalling talks to workers only through [`Command`]s and
//! hears back through per-session [`SessionEvent`] channels; nothing is shared.

mod batch;
pub mod certificate;
pub mod command;
pub mod core;
mod delay;
mod error;
mod recv;
pub mod relay;
pub mod router;
pub mod session;
pub mod srtp;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;

use sluice_dtls::Certificate;
use sluice_ice::IceConfig;
use tokio::sync::mpsc;

pub use command::{
    parse_participant_label, parse_track_label, participant_label, track_label, Command,
    ParticipantId, PrepareSpec, PublicationSpec, RoomSpan, SessionEvent, SessionSpec,
    SubscriptionSpec,
};
pub use error::MediaError;

use crate::config::Config;
use crate::metrics::Metrics;

/// Commands queued per worker before signalling waits.
const COMMAND_QUEUE: usize = 1024;

/// Signalling's handle on one worker.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    /// The worker's number (0-based).
    pub index: usize,
    /// The address its UDP socket is bound to.
    pub local_addr: SocketAddr,
    /// Its command queue.
    pub commands: mpsc::Sender<Command>,
    /// For a worker of another node (a room that spans nodes): the host candidates its
    /// sessions announce, as that node published them. `None` for this node's workers,
    /// whose candidates come from `media.announce`.
    pub candidates: Option<Vec<SocketAddr>>,
    /// For a worker of another node: that node's certificate fingerprint, which its
    /// sessions' DTLS presents (this node's own for its own workers).
    pub fingerprint: Option<sluice_dtls::Fingerprint>,
}

/// The running workers and the certificate every offer carries.
#[derive(Debug, Clone)]
pub struct MediaPlane {
    /// One handle per worker.
    pub workers: Vec<WorkerHandle>,
    /// Our DTLS certificate (its fingerprint goes into every offer).
    pub certificate: Arc<Certificate>,
    /// Each worker's relay inbox: the relay between nodes delivers what other nodes'
    /// workers send here.
    pub relay_inboxes: Vec<mpsc::Sender<relay::RelayBatch>>,
    /// What the workers send to workers of other nodes (by the index the directory
    /// gives them), for the relay between nodes to take once it runs.
    pub remote_relay: Arc<std::sync::Mutex<Option<RemoteRelayQueue>>>,
    /// The DTLS engine configuration (the relay between nodes uses it too).
    pub dtls: Arc<sluice_dtls::Config>,
}

/// What the workers send to workers of other nodes: (directory index, batch).
pub type RemoteRelayQueue = mpsc::Receiver<(usize, relay::RelayBatch)>;

/// Batches for workers of other nodes queued before the workers drop them.
const REMOTE_RELAY_QUEUE: usize = 1024;

impl MediaPlane {
    /// Loads or generates the certificate, binds every worker's socket and starts the
    /// worker threads. Workers stop when every [`WorkerHandle`] is dropped.
    pub fn start(config: &Config, metrics: Arc<Metrics>) -> Result<MediaPlane, MediaError> {
        let certificate = certificate::load_or_generate(&config.dtls)?;
        let dtls = Arc::new(certificate::engine_config(
            &config.dtls,
            Arc::clone(&certificate),
        ));
        let worker_count = config.media.resolved_workers();
        let addrs = config
            .media
            .worker_listen_addrs(worker_count)
            .unwrap_or_else(|_| vec![config.media.listen; worker_count]);
        let mut workers = Vec::with_capacity(worker_count);
        let (relay_outboxes, relay_inboxes): (Vec<_>, Vec<_>) = (0..worker_count)
            .map(|_| mpsc::channel(relay::RELAY_CHANNEL_BATCHES))
            .unzip();
        let mut relay_inboxes = relay_inboxes.into_iter();
        let (remote_outbox, remote_relay) = mpsc::channel(REMOTE_RELAY_QUEUE);
        let handshakes = crate::limits::HandshakeBudget::with_gauge(
            config.limits.handshakes_in_flight,
            metrics.handshakes_in_flight_gauge(),
        );
        for (index, addr) in addrs.into_iter().enumerate() {
            let socket = std::net::UdpSocket::bind(addr).map_err(|source| MediaError::Bind {
                worker: index,
                addr,
                source,
            })?;
            socket
                .set_nonblocking(true)
                .map_err(|source| MediaError::Bind {
                    worker: index,
                    addr,
                    source,
                })?;
            let local_addr = socket.local_addr().unwrap_or(addr);
            let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
            let core = core::WorkerCore::new(
                core::CoreConfig {
                    worker: index,
                    ice: IceConfig {
                        consent_timeout: config.ice.consent_timeout(),
                        ..IceConfig::default()
                    },
                    dtls: Arc::clone(&dtls),
                    max_ssrcs_per_session: config.limits.ssrcs_per_session,
                    max_participants_per_room: config.limits.participants_per_room,
                    max_participants: config
                        .limits
                        .rooms
                        .saturating_mul(config.limits.participants_per_room),
                    max_bitrate_bps_per_session: config.limits.bitrate_bps_per_session,
                    handshakes: Arc::clone(&handshakes),
                    bandwidth_allocation: config.media.bandwidth_estimation,
                    min_publisher_bitrate_bps: config.media.min_publisher_bitrate_bps,
                    audio_red_loss_threshold: config.media.audio_red_loss_threshold(),
                    video_fec_loss_threshold: config.media.video_fec_loss_threshold(),
                    last_n: config.media.last_n,
                    audio_last_n: config.media.audio_last_n,
                },
                Arc::clone(&metrics),
            );
            let metrics = Arc::clone(&metrics);
            let relay = worker::RelayChannels {
                inbox: relay_inboxes.next().ok_or(MediaError::Spawn {
                    worker: index,
                    source: std::io::Error::other("no relay channel"),
                })?,
                outboxes: relay_outboxes.clone(),
                remote: remote_outbox.clone(),
            };
            std::thread::Builder::new()
                .name(format!("sluice-media-{index}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(error) => {
                            tracing::error!(worker = index, %error, "cannot start worker runtime");
                            return;
                        }
                    };
                    runtime.block_on(async move {
                        match tokio::net::UdpSocket::from_std(socket) {
                            Ok(socket) => {
                                worker::run(index, socket, core, receiver, relay, metrics).await
                            }
                            Err(error) => {
                                tracing::error!(worker = index, %error, "cannot register socket")
                            }
                        }
                    });
                })
                .map_err(|source| MediaError::Spawn {
                    worker: index,
                    source,
                })?;
            tracing::info!(worker = index, %local_addr, "media worker started");
            workers.push(WorkerHandle {
                index,
                local_addr,
                commands,
                candidates: None,
                fingerprint: None,
            });
        }
        Ok(MediaPlane {
            workers,
            certificate,
            relay_inboxes: relay_outboxes,
            remote_relay: Arc::new(std::sync::Mutex::new(Some(remote_relay))),
            dtls,
        })
    }
}
