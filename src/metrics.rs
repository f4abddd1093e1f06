//! The metrics registry shared by the HTTP server (which exposes it at `/metrics`)
//! and the media workers (which increment it).
//!
//! Workers hold an `Arc<Metrics>` and call the recording methods from their hot
//! path. Every recording method is one or two relaxed atomic operations: labelled
//! counters are created for every label value up front (the labels are small
//! enums, never free text), so no lock or map lookup happens per packet. The only
//! methods that take a lock are [`Metrics::dtls_handshake_completed`] (histogram,
//! once per handshake) and [`Metrics::worker_busy_gauge`] (call once per worker and
//! keep the returned gauge).
//!
//! Exposition uses `prometheus-client`, the official Rust client, in the
//! OpenMetrics text format (which Prometheus scrapes natively).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the DTLS handshake duration histogram: from a LAN
/// handshake (50 ms) to the default handshake timeout (30 s).
pub const HANDSHAKE_DURATION_BUCKETS_SECONDS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0,
];

/// Upper bounds (seconds) of the forwarding delay histogram: from a packet that waited
/// for nothing (50 µs) to one that sat behind a saturated worker (50 ms). The target is a
/// p99 under 2 ms at half the maximum load, so the buckets are densest around it.
pub const FORWARD_DELAY_BUCKETS_SECONDS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.03, 0.05,
];

type ReasonLabel = [(&'static str, &'static str); 1];
type NegotiatedLabel = [(&'static str, &'static str); 2];
type WorkerLabel = [(&'static str, usize); 1];
type RelayLinkLabel = [(&'static str, String); 2];
/// A gauge holding an `f64` (stored as its bit pattern in an `AtomicU64`).
pub type RatioGauge = Gauge<f64, AtomicU64>;

/// Why a received packet was dropped (`sluice_packets_dropped_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// First byte matches none of STUN, DTLS, RTP/RTCP (RFC 7983 demux).
    UnknownProtocol,
    /// Not a well-formed packet of the protocol its first byte announced.
    Malformed,
    /// No session for the source address and no valid STUN binding to create one.
    UnknownSource,
    /// STUN check with wrong credentials, integrity or fingerprint.
    StunAuthFailed,
    /// DTLS or media from an address that ICE has not nominated.
    NotNominated,
    /// RTP or RTCP before the DTLS handshake produced SRTP keys.
    BeforeKeys,
    /// DTLS for a session whose answer has not reached the worker yet, beyond the few
    /// datagrams held for it.
    BeforeAnswer,
    /// SRTP or SRTCP authentication failed.
    SrtpAuthFailed,
    /// Replayed SRTP packet.
    Replay,
    /// The session exceeded `limits.ssrcs_per_session`.
    SsrcLimit,
    /// The session exceeded `limits.bitrate_bps_per_session`.
    BitrateLimit,
    /// A limit on sessions or handshakes refused a new peer.
    AdmissionLimit,
    /// An outgoing queue or socket buffer was full.
    QueueFull,
}

impl DropReason {
    pub const ALL: [Self; 13] = [
        Self::UnknownProtocol,
        Self::Malformed,
        Self::UnknownSource,
        Self::StunAuthFailed,
        Self::NotNominated,
        Self::BeforeKeys,
        Self::BeforeAnswer,
        Self::SrtpAuthFailed,
        Self::Replay,
        Self::SsrcLimit,
        Self::BitrateLimit,
        Self::AdmissionLimit,
        Self::QueueFull,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownProtocol => "unknown_protocol",
            Self::Malformed => "malformed",
            Self::UnknownSource => "unknown_source",
            Self::StunAuthFailed => "stun_auth_failed",
            Self::NotNominated => "not_nominated",
            Self::BeforeKeys => "before_keys",
            Self::BeforeAnswer => "before_answer",
            Self::SrtpAuthFailed => "srtp_auth_failed",
            Self::Replay => "replay",
            Self::SsrcLimit => "ssrc_limit",
            Self::BitrateLimit => "bitrate_limit",
            Self::AdmissionLimit => "admission_limit",
            Self::QueueFull => "queue_full",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a DTLS handshake failed (`sluice_dtls_handshakes_failed_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeFailure {
    /// `dtls.handshake_timeout_ms` passed before completion.
    Timeout,
    /// The peer's certificate does not match the SDP fingerprint, or is unusable.
    BadCertificate,
    /// The peer sent a fatal alert.
    PeerAlert,
    /// A message was malformed, unexpected in the current state, or failed verification.
    ProtocolError,
    /// No common cipher suite, curve or SRTP profile.
    NoCommonParameters,
    /// The peer's messages exceeded `dtls.max_handshake_buffer_bytes`.
    BufferLimit,
    /// The session ended (ICE consent lost, peer left, shutdown) mid-handshake.
    Aborted,
}

impl HandshakeFailure {
    pub const ALL: [Self; 7] = [
        Self::Timeout,
        Self::BadCertificate,
        Self::PeerAlert,
        Self::ProtocolError,
        Self::NoCommonParameters,
        Self::BufferLimit,
        Self::Aborted,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::BadCertificate => "bad_certificate",
            Self::PeerAlert => "peer_alert",
            Self::ProtocolError => "protocol_error",
            Self::NoCommonParameters => "no_common_parameters",
            Self::BufferLimit => "buffer_limit",
            Self::Aborted => "aborted",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Direction of a signalling message (`sluice_signaling_messages_total{direction}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client to the server.
    Received,
    /// From the server to the client.
    Sent,
}

impl Direction {
    pub const ALL: [Self; 2] = [Self::Received, Self::Sent];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Sent => "sent",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a join (a new participant and its session) was refused
/// (`sluice_admissions_refused_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdmissionRefusal {
    /// `limits.rooms` rooms are open.
    TooManyRooms,
    /// The room has `limits.participants_per_room` participants.
    RoomFull,
    /// The source address has `limits.sessions_per_source_ip` sessions.
    SessionsPerSourceIp,
    /// Missing, invalid or expired join token, or one for another room.
    Unauthorized,
    /// The server is draining.
    ShuttingDown,
}

/// What happened to a message between two media workers (a room spanning workers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayPath {
    /// A publisher's packet copied to a worker with subscribers of its room.
    MediaOut,
    /// A relayed publisher's packet taken in and forwarded.
    MediaIn,
    /// Feedback (keyframe request, NACK, REMB) sent back to the publisher's worker.
    FeedbackOut,
    /// Feedback taken in and passed to the publisher.
    FeedbackIn,
    /// Dropped: the receiving worker's relay queue was full.
    DroppedQueueFull,
    /// Dropped: for a publisher the receiving worker does not know (it left, or the room
    /// no longer spans that worker).
    DroppedUnknown,
}

impl RelayPath {
    pub const ALL: [Self; 6] = [
        Self::MediaOut,
        Self::MediaIn,
        Self::FeedbackOut,
        Self::FeedbackIn,
        Self::DroppedQueueFull,
        Self::DroppedUnknown,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MediaOut => "media_out",
            Self::MediaIn => "media_in",
            Self::FeedbackOut => "feedback_out",
            Self::FeedbackIn => "feedback_in",
            Self::DroppedQueueFull => "dropped_queue_full",
            Self::DroppedUnknown => "dropped_unknown",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl AdmissionRefusal {
    pub const ALL: [Self; 5] = [
        Self::TooManyRooms,
        Self::RoomFull,
        Self::SessionsPerSourceIp,
        Self::Unauthorized,
        Self::ShuttingDown,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooManyRooms => "too_many_rooms",
            Self::RoomFull => "room_full",
            Self::SessionsPerSourceIp => "sessions_per_source_ip",
            Self::Unauthorized => "unauthorized",
            Self::ShuttingDown => "shutting_down",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a signalling message was rejected (`sluice_signaling_rejected_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignalingRejection {
    /// Over `limits.signaling_messages_per_second`; the message was dropped.
    RateLimited,
    /// So far over the rate that the connection was closed.
    RateLimitClosed,
    /// Over `limits.signaling_message_bytes`; the connection was closed.
    MessageTooLarge,
    /// Not a valid message (JSON, schema, binary frame, state).
    BadRequest,
}

impl SignalingRejection {
    pub const ALL: [Self; 4] = [
        Self::RateLimited,
        Self::RateLimitClosed,
        Self::MessageTooLarge,
        Self::BadRequest,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::RateLimitClosed => "rate_limit_closed",
            Self::MessageTooLarge => "message_too_large",
            Self::BadRequest => "bad_request",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a signalling connection ended (`sluice_signaling_sessions_ended_total{reason}`):
/// the `bye` reasons, with every error code folded into `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEnd {
    /// The client sent `leave`.
    Left,
    /// The socket closed without `leave`.
    Closed,
    /// A fatal error (bad token, full room, invalid answer, ...).
    Error,
    /// An offer went unanswered for `signaling.answer_timeout_ms`.
    AnswerTimeout,
    /// ICE and DTLS did not complete within `media.connect_timeout_ms` of the answer.
    ConnectTimeout,
    /// The socket sent no `join` within `signaling.join_timeout_ms`.
    IdleTimeout,
    /// A write to the socket did not complete within `signaling.send_timeout_ms`
    /// (the client stopped reading).
    SendTimeout,
    /// The media session failed (DTLS, ICE).
    MediaFailed,
    /// The media session lost consent (ICE) or was closed by the peer (DTLS).
    Disconnected,
    /// The server is shutting down.
    ShuttingDown,
    /// The room's copy on this node was given up for the cluster's copy elsewhere.
    RoomMoved,
}

impl SessionEnd {
    pub const ALL: [Self; 11] = [
        Self::Left,
        Self::Closed,
        Self::Error,
        Self::AnswerTimeout,
        Self::ConnectTimeout,
        Self::IdleTimeout,
        Self::SendTimeout,
        Self::MediaFailed,
        Self::Disconnected,
        Self::ShuttingDown,
        Self::RoomMoved,
    ];

    /// The label value (the `bye` reason, `error` for every error code).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::Closed => "closed",
            Self::Error => "error",
            Self::AnswerTimeout => "answer_timeout",
            Self::ConnectTimeout => "connect_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::SendTimeout => "send_timeout",
            Self::MediaFailed => "media_failed",
            Self::Disconnected => "disconnected",
            Self::ShuttingDown => "shutting_down",
            Self::RoomMoved => "room_moved",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// All of Sluice's metrics. Create one per process, wrap it in an `Arc`, and hand
/// clones to the HTTP server and every worker.
#[derive(Debug)]
pub struct Metrics {
    /// Workers whose busy ratio is reported (for [`Metrics::load`]).
    worker_count: usize,
    registry: Registry,
    sessions: Gauge,
    rooms: Gauge,
    participants: Gauge,
    handshakes_started: Counter,
    handshakes_completed: Counter,
    /// Completed handshakes by DTLS version and key exchange group, every pair at 0 from
    /// the start: `[version][group]` in `DtlsVersion` order (1.2, 1.3) and
    /// `NamedGroup::ALL` order.
    handshakes_negotiated: [[Counter; sluice_dtls::NamedGroup::ALL.len()]; 2],
    handshakes_failed: [Counter; HandshakeFailure::ALL.len()],
    handshake_duration: Histogram,
    forward_delay: Histogram,
    dtls_retransmissions: [Counter; sluice_dtls::RetransmitReason::ALL.len()],
    packets_received: Counter,
    packets_sent: Counter,
    bytes_received: Counter,
    bytes_sent: Counter,
    packets_dropped: [Counter; DropReason::ALL.len()],
    ice_consent_expired: Counter,
    worker_busy_ratio: Family<WorkerLabel, RatioGauge>,
    /// What every subscriber receives, published by the workers (gauges and the debug
    /// endpoint).
    pub subscribers: crate::subscribers::SubscriberBoard,
    signaling_messages: [Counter; Direction::ALL.len()],
    admissions_refused: [Counter; AdmissionRefusal::ALL.len()],
    signaling_rejected: [Counter; SignalingRejection::ALL.len()],
    sessions_ended: [Counter; SessionEnd::ALL.len()],
    room_events_overflowed: Counter,
    relay_packets: [Counter; RelayPath::ALL.len()],
    log_lines_dropped: Counter,
    handshakes_in_flight: Gauge,
    router_dropped: [Counter; sluice_sfu::RouterDrop::ALL.len()],
    router_forwarded_packets: Counter,
    router_keyframe_requests_sent: Counter,
    router_nacks_received: Counter,
    router_nacks_missed: Counter,
    router_probe_packets_sent: Counter,
    router_video_pauses: Counter,
    router_temporal_layer_skipped: Counter,
    router_red_packets_sent: Counter,
    router_fec_packets_sent: Counter,
    router_nacks_for_fec: Counter,
    router_paced_dropped: Counter,
    /// Cluster mode (docs/cluster.md); the series stay at 0 on a node that runs alone.
    pub cluster: ClusterMetrics,
}

/// How a join was placed in cluster mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The room was already on this node.
    Local,
    /// The room was already on another node: the join is bridged there.
    Remote,
    /// The room had no live owner and this join claimed it (for this node or another).
    Claimed,
    /// Redis or the room's node could not be reached: `cluster_unavailable`.
    Unavailable,
    /// Redis was unreachable but the room is on this node: served locally.
    LocalWithoutRedis,
}

impl Placement {
    pub const ALL: [Self; 5] = [
        Self::Local,
        Self::Remote,
        Self::Claimed,
        Self::Unavailable,
        Self::LocalWithoutRedis,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Remote => "remote",
            Self::Claimed => "claimed",
            Self::Unavailable => "unavailable",
            Self::LocalWithoutRedis => "local_without_redis",
        }
    }
}

/// The cluster's series: membership, Redis health, placements and bridged sessions.
#[derive(Debug, Clone)]
pub struct ClusterMetrics {
    /// Live nodes (this one included) seen at the last heartbeat.
    pub nodes: Gauge,
    /// 1 while the last Redis request succeeded.
    pub redis_up: Gauge,
    /// Redis requests that failed or timed out.
    pub redis_errors: Counter,
    /// Room leases found held by another node on renewal.
    pub lease_conflicts: Counter,
    /// Signalling sessions this node relays to another node now.
    pub bridged_sessions: Gauge,
    placements: [Counter; Placement::ALL.len()],
    /// Frames on the relay links to other nodes, by peer node and what happened.
    relay_frames: Family<RelayLinkLabel, Counter>,
    /// Relay links whose handshake completed.
    pub relay_links_connected: Counter,
}

impl ClusterMetrics {
    fn register(r: &mut Registry) -> Self {
        Self {
            nodes: gauge(
                r,
                "cluster_nodes",
                "Live cluster nodes seen at the last heartbeat",
            ),
            redis_up: gauge(
                r,
                "cluster_redis_up",
                "1 while the last Redis request succeeded",
            ),
            redis_errors: counter(
                r,
                "cluster_redis_errors",
                "Redis requests that failed or timed out",
            ),
            lease_conflicts: counter(
                r,
                "cluster_lease_conflicts",
                "Room leases found held by another node on renewal",
            ),
            bridged_sessions: gauge(
                r,
                "cluster_bridged_sessions",
                "Signalling sessions relayed to the room's node now",
            ),
            placements: labelled_counters(
                r,
                "cluster_placements",
                "Joins placed in cluster mode, by outcome",
                "outcome",
                Placement::ALL.map(Placement::as_str),
            ),
            relay_frames: {
                let family = Family::<RelayLinkLabel, Counter>::default();
                r.register(
                    "cluster_relay_frames",
                    "Frames on the relay links to other nodes (rooms that span nodes), by peer node and event: sent, received, dropped (no link yet, queue full), rejected (failed authentication or decoding)",
                    family.clone(),
                );
                family
            },
            relay_links_connected: counter(
                r,
                "cluster_relay_links_connected",
                "Relay links to other nodes whose DTLS handshake completed",
            ),
        }
    }

    /// Adds `n` to the relay frame counter of link `peer` for `event` (`sent`,
    /// `received`, `dropped`, `rejected`). The label set is bounded by the cluster's
    /// size.
    pub fn relay_frames(&self, peer: &str, event: &'static str, n: u64) {
        if n > 0 {
            self.relay_frames
                .get_or_create(&[("peer", peer.to_owned()), ("event", event.to_owned())])
                .inc_by(n);
        }
    }

    pub fn placed(&self, outcome: Placement) {
        if let Some(counter) = self.placements.get(outcome as usize) {
            counter.inc();
        }
    }
}

/// What a node reports of its load in its heartbeat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadSnapshot {
    pub participants: i64,
    pub rooms: i64,
    /// `sluice_router_forwarded_packets_total` (monotonic; rates are taken by the caller).
    pub forwarded_packets: u64,
    /// The busiest worker's busy ratio.
    pub busy_ratio: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers a labelled counter family and returns one counter per label value,
/// in the order of `values`.
fn labelled_counters<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    let family = Family::<ReasonLabel, Counter>::default();
    registry.register(name, help, family.clone());
    values.map(|value| family.get_or_create_owned(&[(label, value)]))
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let counter = Counter::default();
    registry.register(name, help, counter.clone());
    counter
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let gauge = Gauge::default();
    registry.register(name, help, gauge.clone());
    gauge
}

impl Metrics {
    /// Creates and registers every metric family, with every labelled series at 0
    /// (`sluice_worker_busy_ratio` has no series until a worker reports).
    pub fn new() -> Self {
        Self::with_workers(0)
    }

    /// Like [`Metrics::new`], with `sluice_worker_busy_ratio{worker}` at 0 for
    /// workers `0..worker_count`, so the family is visible before the first report.
    pub fn with_workers(worker_count: usize) -> Self {
        // Counter names are registered without `_total`: the encoder appends it.
        let mut registry = Registry::with_prefix("sluice");
        let r = &mut registry;
        let sessions = gauge(r, "sessions", "Peer sessions (ICE+DTLS+SRTP) open now");
        let rooms = gauge(r, "rooms", "Rooms open now");
        let participants = gauge(r, "participants", "Participants in all rooms now");
        let handshakes_started = counter(r, "dtls_handshakes_started", "DTLS handshakes started");
        let handshakes_completed = counter(
            r,
            "dtls_handshakes_completed",
            "DTLS handshakes completed with SRTP keys",
        );
        let negotiated = Family::<NegotiatedLabel, Counter>::default();
        r.register(
            "dtls_handshakes_negotiated",
            "DTLS handshakes completed, by protocol version and key exchange group (X25519MLKEM768 is the post-quantum hybrid)",
            negotiated.clone(),
        );
        let handshakes_negotiated = [
            sluice_dtls::DtlsVersion::Dtls12,
            sluice_dtls::DtlsVersion::Dtls13,
        ]
        .map(|version| {
            sluice_dtls::NamedGroup::ALL.map(|group| {
                negotiated.get_or_create_owned(&[
                    ("version", version.as_str()),
                    ("group", group.as_str()),
                ])
            })
        });
        let handshakes_failed = labelled_counters(
            r,
            "dtls_handshakes_failed",
            "DTLS handshakes failed, by reason",
            "reason",
            HandshakeFailure::ALL.map(HandshakeFailure::as_str),
        );
        let handshake_duration = Histogram::new(HANDSHAKE_DURATION_BUCKETS_SECONDS);
        r.register(
            "dtls_handshake_duration_seconds",
            "Time from the first to the last handshake message of completed DTLS handshakes",
            handshake_duration.clone(),
        );
        let forward_delay = Histogram::new(FORWARD_DELAY_BUCKETS_SECONDS);
        r.register(
            "forward_delay_seconds",
            "Time from the kernel receiving an RTP packet to the send system call returning for its forwarded copies (sampled)",
            forward_delay.clone(),
        );
        let dtls_retransmissions = labelled_counters(
            r,
            "dtls_retransmissions",
            "DTLS flights re-sent, by reason: timer expiry, the peer repeating its flight during the handshake, or the final flight re-sent after completion",
            "reason",
            sluice_dtls::RetransmitReason::ALL.map(sluice_dtls::RetransmitReason::as_str),
        );
        let packets_received = counter(r, "packets_received", "UDP datagrams received");
        let packets_sent = counter(r, "packets_sent", "UDP datagrams sent");
        let bytes_received = counter(r, "bytes_received", "UDP payload bytes received");
        let bytes_sent = counter(r, "bytes_sent", "UDP payload bytes sent");
        let packets_dropped = labelled_counters(
            r,
            "packets_dropped",
            "Received packets dropped, by reason",
            "reason",
            DropReason::ALL.map(DropReason::as_str),
        );
        let ice_consent_expired = counter(
            r,
            "ice_consent_expired",
            "Sessions closed because ICE consent expired",
        );
        let subscribers = crate::subscribers::SubscriberBoard::register(r);
        let worker_busy_ratio = Family::<WorkerLabel, RatioGauge>::default();
        r.register(
            "worker_busy_ratio",
            "Fraction of the last interval a media worker spent processing (0..1)",
            worker_busy_ratio.clone(),
        );
        for worker in 0..worker_count {
            worker_busy_ratio.get_or_create_owned(&[("worker", worker)]);
        }
        let signaling_messages = labelled_counters(
            r,
            "signaling_messages",
            "Signalling WebSocket messages, by direction",
            "direction",
            Direction::ALL.map(Direction::as_str),
        );
        let admissions_refused = labelled_counters(
            r,
            "admissions_refused",
            "Joins refused by a limit, authorisation or shutdown, by reason",
            "reason",
            AdmissionRefusal::ALL.map(AdmissionRefusal::as_str),
        );
        let signaling_rejected = labelled_counters(
            r,
            "signaling_rejected",
            "Signalling messages rejected, by reason",
            "reason",
            SignalingRejection::ALL.map(SignalingRejection::as_str),
        );
        let sessions_ended = labelled_counters(
            r,
            "signaling_sessions_ended",
            "Signalling connections ended, by reason (the bye reason)",
            "reason",
            SessionEnd::ALL.map(SessionEnd::as_str),
        );
        let room_events_overflowed = counter(
            r,
            "signaling_room_resyncs",
            "Room changes that did not fit a connection's queue: it was resynchronised with a full room_state",
        );
        let relay_packets = labelled_counters(
            r,
            "relay_packets",
            "Packets between the media workers of rooms that span workers, by path",
            "path",
            RelayPath::ALL.map(RelayPath::as_str),
        );
        let log_lines_dropped = counter(
            r,
            "log_lines_dropped",
            "Log lines dropped because the log writer's queue was full (the writer never blocks a worker)",
        );
        let handshakes_in_flight = gauge(
            r,
            "dtls_handshakes_in_flight",
            "DTLS handshakes in progress now (bounded by limits.handshakes_in_flight)",
        );
        let router_dropped = labelled_counters(
            r,
            "router_dropped",
            "Packets the media router did not forward, by reason",
            "reason",
            sluice_sfu::RouterDrop::ALL.map(sluice_sfu::RouterDrop::as_str),
        );
        let router_forwarded_packets = counter(
            r,
            "router_forwarded_packets",
            "RTP packets the media router queued to subscribers (one per copy)",
        );
        let router_keyframe_requests_sent = counter(
            r,
            "router_keyframe_requests_sent",
            "PLIs the media router sent to publishers",
        );
        let router_nacks_received = counter(
            r,
            "router_nacks_received",
            "NACK packets received from subscribers",
        );
        let router_nacks_missed = counter(
            r,
            "router_nacks_missed",
            "NACKed sequence numbers no longer in the retransmission cache",
        );
        let router_probe_packets_sent = counter(
            r,
            "router_probe_packets_sent",
            "padding packets sent to subscribers to probe their links for bandwidth",
        );
        let router_video_pauses = counter(
            r,
            "router_video_pauses",
            "video tracks paused for a subscriber whose bandwidth estimate could not carry them",
        );
        let router_temporal_layer_skipped = counter(
            r,
            "router_temporal_layer_skipped",
            "VP8 packets of temporal layers above a subscriber's bandwidth cap, left out",
        );
        let router_red_packets_sent = counter(
            r,
            "router_red_packets_sent",
            "audio packets sent as RED (earlier Opus frames repeated) to subscribers whose link loses packets",
        );
        let router_fec_packets_sent = counter(
            r,
            "router_fec_packets_sent",
            "ULPFEC packets (in RED) sent with the video of subscribers whose link loses packets",
        );
        let router_nacks_for_fec = counter(
            r,
            "router_nacks_for_fec",
            "sequence numbers subscribers NACKed that were FEC packets' (answered with an empty RTX packet)",
        );
        let router_paced_dropped = counter(
            r,
            "router_paced_dropped",
            "packets a subscriber's pacer dropped: video that waited too long, or a full queue",
        );
        let cluster = ClusterMetrics::register(r);
        Self {
            worker_count,
            registry,
            sessions,
            rooms,
            participants,
            handshakes_started,
            handshakes_completed,
            handshakes_negotiated,
            handshakes_failed,
            handshake_duration,
            forward_delay,
            dtls_retransmissions,
            packets_received,
            packets_sent,
            bytes_received,
            bytes_sent,
            packets_dropped,
            ice_consent_expired,
            worker_busy_ratio,
            subscribers,
            signaling_messages,
            admissions_refused,
            signaling_rejected,
            sessions_ended,
            room_events_overflowed,
            relay_packets,
            log_lines_dropped,
            handshakes_in_flight,
            router_dropped,
            router_forwarded_packets,
            router_keyframe_requests_sent,
            router_nacks_received,
            router_nacks_missed,
            router_probe_packets_sent,
            router_video_pauses,
            router_temporal_layer_skipped,
            router_red_packets_sent,
            router_fec_packets_sent,
            router_nacks_for_fec,
            router_paced_dropped,
            cluster,
        }
    }

    /// The load figures a cluster heartbeat carries.
    pub fn load(&self) -> LoadSnapshot {
        let workers = self.worker_count;
        let busy_ratio = (0..workers)
            .map(|worker| self.worker_busy_gauge(worker).get())
            .fold(0.0, f64::max);
        LoadSnapshot {
            // members of rooms here, or media sessions here (those of other nodes'
            // rooms that spread onto this one), whichever is more
            participants: self.participants.get().max(self.sessions.get()),
            rooms: self.rooms.get(),
            forwarded_packets: self.router_forwarded_packets.get(),
            busy_ratio,
        }
    }

    /// The OpenMetrics text exposition of every metric ([`OPENMETRICS_CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would leave a partial
        // exposition, which is still better than none.
        let _ = encode(&mut text, &self.registry);
        text
    }

    pub fn session_opened(&self) {
        self.sessions.inc();
    }

    pub fn session_closed(&self) {
        self.sessions.dec();
    }

    pub fn session_ended(&self, reason: SessionEnd) {
        if let Some(counter) = self.sessions_ended.get(reason.index()) {
            counter.inc();
        }
    }

    /// Counts a connection that fell behind its room's changes (it gets a resync).
    pub fn room_events_overflowed(&self) {
        self.room_events_overflowed.inc();
    }

    /// Counts `n` packets that took `path` between two workers.
    pub fn relay_packets(&self, path: RelayPath, n: u64) {
        if let Some(counter) = self.relay_packets.get(path.index()) {
            counter.inc_by(n);
        }
    }

    /// Brings the dropped-log-lines counter up to `total` (the log writer's own count).
    pub fn record_log_lines_dropped(&self, total: u64) {
        let seen = self.log_lines_dropped.get();
        if total > seen {
            self.log_lines_dropped.inc_by(total - seen);
        }
    }

    pub fn room_opened(&self) {
        self.rooms.inc();
    }

    pub fn room_closed(&self) {
        self.rooms.dec();
    }

    pub fn participant_joined(&self) {
        self.participants.inc();
    }

    pub fn participant_left(&self) {
        self.participants.dec();
    }

    pub fn dtls_handshake_started(&self) {
        self.handshakes_started.inc();
    }

    /// Counts a completed handshake and records how long it took.
    pub fn dtls_handshake_completed(&self, duration: Duration) {
        self.handshakes_completed.inc();
        self.handshake_duration.observe(duration.as_secs_f64());
    }

    /// Counts a completed handshake under its version and group, so that the share of
    /// DTLS 1.3 and of post-quantum key exchange among real peers can be read off.
    pub fn dtls_handshake_negotiated(
        &self,
        version: sluice_dtls::DtlsVersion,
        group: sluice_dtls::NamedGroup,
    ) {
        let row = match version {
            sluice_dtls::DtlsVersion::Dtls12 => 0,
            sluice_dtls::DtlsVersion::Dtls13 => 1,
        };
        let column = sluice_dtls::NamedGroup::ALL
            .iter()
            .position(|g| *g == group);
        if let Some(counter) = self
            .handshakes_negotiated
            .get(row)
            .and_then(|r| column.and_then(|c| r.get(c)))
        {
            counter.inc();
        }
    }

    /// Records one forwarding delay sample. Takes the histogram's lock: call it for a
    /// sample of the forwarded packets (see `media::delay`), not for each of them.
    pub fn forward_delay(&self, delay: Duration) {
        self.forward_delay.observe(delay.as_secs_f64());
    }

    pub fn dtls_handshake_failed(&self, reason: HandshakeFailure) {
        if let Some(counter) = self.handshakes_failed.get(reason.index()) {
            counter.inc();
        }
    }

    /// Adds the flights a DTLS connection re-sent between two of its stats snapshots
    /// (`previous` taken before `current`; the engine's counters only grow). Called after
    /// every input, so re-sends are counted as they happen, including the final-flight
    /// re-sends that follow completion.
    pub fn record_dtls_retransmissions(
        &self,
        previous: &sluice_dtls::ConnectionStats,
        current: &sluice_dtls::ConnectionStats,
    ) {
        for (counter, reason) in self
            .dtls_retransmissions
            .iter()
            .zip(sluice_dtls::RetransmitReason::ALL)
        {
            let delta = current
                .retransmissions(reason)
                .saturating_sub(previous.retransmissions(reason));
            if delta > 0 {
                counter.inc_by(delta);
            }
        }
    }

    /// Counts one received datagram of `bytes` bytes.
    pub fn packet_received(&self, bytes: usize) {
        self.packets_received(1, bytes);
    }

    /// Counts a batch of `packets` received datagrams totalling `bytes` bytes
    /// (one call per `recvmmsg` batch keeps atomics off the per-packet path).
    pub fn packets_received(&self, packets: u64, bytes: usize) {
        self.packets_received.inc_by(packets);
        self.bytes_received.inc_by(bytes as u64);
    }

    /// Counts one sent datagram of `bytes` bytes.
    pub fn packet_sent(&self, bytes: usize) {
        self.packets_sent(1, bytes);
    }

    /// Counts a batch of `packets` sent datagrams totalling `bytes` bytes.
    pub fn packets_sent(&self, packets: u64, bytes: usize) {
        self.packets_sent.inc_by(packets);
        self.bytes_sent.inc_by(bytes as u64);
    }

    pub fn packet_dropped(&self, reason: DropReason) {
        if let Some(counter) = self.packets_dropped.get(reason.index()) {
            counter.inc();
        }
    }

    pub fn ice_consent_expired(&self) {
        self.ice_consent_expired.inc();
    }

    pub fn signaling_message(&self, direction: Direction) {
        if let Some(counter) = self.signaling_messages.get(direction.index()) {
            counter.inc();
        }
    }

    /// The busy-ratio gauge of worker `worker`. Takes a lock: call it once when the
    /// worker starts and keep the gauge, then `set(ratio)` it each interval.
    pub fn worker_busy_gauge(&self, worker: usize) -> RatioGauge {
        self.worker_busy_ratio
            .get_or_create_owned(&[("worker", worker)])
    }

    /// Sets worker `worker`'s busy ratio (clamped to 0..=1). Takes a lock; prefer
    /// [`Metrics::worker_busy_gauge`] in a loop.
    pub fn set_worker_busy_ratio(&self, worker: usize, ratio: f64) {
        self.worker_busy_gauge(worker).set(ratio.clamp(0.0, 1.0));
    }

    pub fn admission_refused(&self, reason: AdmissionRefusal) {
        if let Some(counter) = self.admissions_refused.get(reason.index()) {
            counter.inc();
        }
    }

    pub fn signaling_rejected(&self, reason: SignalingRejection) {
        if let Some(counter) = self.signaling_rejected.get(reason.index()) {
            counter.inc();
        }
    }

    /// The `sluice_dtls_handshakes_in_flight` gauge, for the handshake budget to keep
    /// up to date (a clone shares the value).
    pub fn handshakes_in_flight_gauge(&self) -> Gauge {
        self.handshakes_in_flight.clone()
    }

    /// Adds what a worker's router did between two of its stats snapshots
    /// (`previous` taken before `current`; counters are monotonic).
    pub fn record_router_stats(
        &self,
        previous: &sluice_sfu::RouterStats,
        current: &sluice_sfu::RouterStats,
    ) {
        for (position, (reason, count)) in current.dropped.iter().enumerate() {
            let delta = count.saturating_sub(previous.dropped.get(reason));
            if let Some(counter) = self.router_dropped.get(position) {
                counter.inc_by(delta);
            }
        }
        let delta = |now: u64, before: u64| now.saturating_sub(before);
        self.router_forwarded_packets
            .inc_by(delta(current.forwarded_packets, previous.forwarded_packets));
        self.router_keyframe_requests_sent.inc_by(delta(
            current.keyframe_requests_sent,
            previous.keyframe_requests_sent,
        ));
        self.router_nacks_received
            .inc_by(delta(current.nacks_received, previous.nacks_received));
        self.router_nacks_missed
            .inc_by(delta(current.nacks_missed, previous.nacks_missed));
        self.router_probe_packets_sent.inc_by(delta(
            current.probe_packets_sent,
            previous.probe_packets_sent,
        ));
        self.router_video_pauses
            .inc_by(delta(current.video_pauses, previous.video_pauses));
        self.router_paced_dropped
            .inc_by(delta(current.paced_dropped, previous.paced_dropped));
        self.router_red_packets_sent
            .inc_by(delta(current.red_packets_sent, previous.red_packets_sent));
        self.router_fec_packets_sent
            .inc_by(delta(current.fec_packets_sent, previous.fec_packets_sent));
        self.router_nacks_for_fec
            .inc_by(delta(current.nacks_for_fec, previous.nacks_for_fec));
        self.router_temporal_layer_skipped.inc_by(delta(
            current.temporal_layer_skipped,
            previous.temporal_layer_skipped,
        ));
    }

    /// Current value of `sluice_sessions` (for logs and tests).
    pub fn sessions(&self) -> i64 {
        self.sessions.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line `name` (with labels, exactly as exposed).
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(' ')?;
            value.trim().parse().ok()
        })
    }

    #[test]
    fn exposition_contains_every_family() {
        let text = Metrics::with_workers(2).encode();
        for family in [
            "sluice_sessions",
            "sluice_rooms",
            "sluice_participants",
            "sluice_dtls_handshakes_started",
            "sluice_dtls_handshakes_completed",
            "sluice_dtls_handshakes_negotiated",
            "sluice_dtls_handshakes_failed",
            "sluice_dtls_handshake_duration_seconds",
            "sluice_forward_delay_seconds",
            "sluice_dtls_retransmissions",
            "sluice_packets_received",
            "sluice_packets_sent",
            "sluice_bytes_received",
            "sluice_bytes_sent",
            "sluice_packets_dropped",
            "sluice_ice_consent_expired",
            "sluice_worker_busy_ratio",
            "sluice_signaling_messages",
            "sluice_admissions_refused",
            "sluice_signaling_rejected",
            "sluice_dtls_handshakes_in_flight",
            "sluice_router_dropped",
            "sluice_router_forwarded_packets",
            "sluice_router_keyframe_requests_sent",
            "sluice_router_nacks_received",
            "sluice_router_nacks_missed",
            "sluice_router_probe_packets_sent",
            "sluice_router_video_pauses",
            "sluice_router_paced_dropped",
            "sluice_router_temporal_layer_skipped",
            "sluice_router_red_packets_sent",
            "sluice_router_fec_packets_sent",
            "sluice_router_nacks_for_fec",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "missing {family} in\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn label_enums_list_every_variant_in_declaration_order() {
        for (position, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), position);
        }
        for (position, reason) in HandshakeFailure::ALL.iter().enumerate() {
            assert_eq!(reason.index(), position);
        }
        for (position, direction) in Direction::ALL.iter().enumerate() {
            assert_eq!(direction.index(), position);
        }
        for (position, reason) in AdmissionRefusal::ALL.iter().enumerate() {
            assert_eq!(reason.index(), position);
        }
        for (position, reason) in SignalingRejection::ALL.iter().enumerate() {
            assert_eq!(reason.index(), position);
        }
    }

    #[test]
    fn worker_gauges_start_at_zero_for_each_configured_worker() {
        let text = Metrics::with_workers(2).encode();
        assert_eq!(
            sample(&text, "sluice_worker_busy_ratio{worker=\"0\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "sluice_worker_busy_ratio{worker=\"1\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "sluice_worker_busy_ratio{worker=\"2\"}"),
            None
        );
    }

    #[test]
    fn counters_are_exposed_with_total_suffix() {
        let metrics = Metrics::new();
        metrics.dtls_handshake_started();
        metrics.dtls_handshake_started();
        let text = metrics.encode();
        assert_eq!(
            sample(&text, "sluice_dtls_handshakes_started_total"),
            Some(2.0)
        );
    }

    #[test]
    fn dtls_retransmissions_add_the_difference_of_two_snapshots_by_reason() {
        let metrics = Metrics::new();
        let series = |reason: sluice_dtls::RetransmitReason| {
            format!(
                "sluice_dtls_retransmissions_total{{reason=\"{}\"}}",
                reason.as_str()
            )
        };
        let before = metrics.encode();
        for reason in sluice_dtls::RetransmitReason::ALL {
            assert_eq!(sample(&before, &series(reason)), Some(0.0));
        }
        let first = sluice_dtls::ConnectionStats {
            timer_retransmissions: 2,
            repeat_retransmissions: 1,
            ..Default::default()
        };
        let second = sluice_dtls::ConnectionStats {
            final_flight_retransmissions: 3,
            ..first
        };
        metrics.record_dtls_retransmissions(&Default::default(), &first);
        metrics.record_dtls_retransmissions(&first, &second);
        // A repeated snapshot adds nothing.
        metrics.record_dtls_retransmissions(&second, &second);
        let text = metrics.encode();
        use sluice_dtls::RetransmitReason as R;
        assert_eq!(sample(&text, &series(R::Timeout)), Some(2.0));
        assert_eq!(sample(&text, &series(R::PeerRepeat)), Some(1.0));
        assert_eq!(sample(&text, &series(R::FinalFlight)), Some(3.0));
    }

    #[test]
    fn every_drop_reason_is_exposed_at_zero_before_use() {
        let text = Metrics::new().encode();
        for reason in DropReason::ALL {
            let name = format!(
                "sluice_packets_dropped_total{{reason=\"{}\"}}",
                reason.as_str()
            );
            assert_eq!(sample(&text, &name), Some(0.0), "{name}");
        }
        for reason in HandshakeFailure::ALL {
            let name = format!(
                "sluice_dtls_handshakes_failed_total{{reason=\"{}\"}}",
                reason.as_str()
            );
            assert_eq!(sample(&text, &name), Some(0.0), "{name}");
        }
    }

    #[test]
    fn dropped_packet_increments_only_its_reason() {
        let metrics = Metrics::new();
        metrics.packet_dropped(DropReason::Replay);
        metrics.packet_dropped(DropReason::Replay);
        metrics.packet_dropped(DropReason::QueueFull);
        let text = metrics.encode();
        let value = |reason: &str| {
            sample(
                &text,
                &format!("sluice_packets_dropped_total{{reason=\"{reason}\"}}"),
            )
        };
        assert_eq!(value("replay"), Some(2.0));
        assert_eq!(value("queue_full"), Some(1.0));
        assert_eq!(value("malformed"), Some(0.0));
    }

    #[test]
    fn handshake_failure_increments_only_its_reason() {
        let metrics = Metrics::new();
        metrics.dtls_handshake_failed(HandshakeFailure::Timeout);
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                "sluice_dtls_handshakes_failed_total{reason=\"timeout\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "sluice_dtls_handshakes_failed_total{reason=\"peer_alert\"}"
            ),
            Some(0.0)
        );
    }

    #[test]
    fn completed_handshake_is_counted_and_timed() {
        let metrics = Metrics::new();
        metrics.dtls_handshake_completed(Duration::from_millis(700));
        let text = metrics.encode();
        assert_eq!(
            sample(&text, "sluice_dtls_handshakes_completed_total"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "sluice_dtls_handshake_duration_seconds_count"),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "sluice_dtls_handshake_duration_seconds_bucket{le=\"0.5\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                "sluice_dtls_handshake_duration_seconds_bucket{le=\"1.0\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn completed_handshakes_are_counted_by_version_and_group() {
        use sluice_dtls::{DtlsVersion, NamedGroup};
        let metrics = Metrics::new();
        let series = |version: &str, group: &str| {
            format!("sluice_dtls_handshakes_negotiated_total{{version=\"{version}\",group=\"{group}\"}}")
        };
        let text = metrics.encode();
        assert_eq!(sample(&text, &series("1.3", "X25519MLKEM768")), Some(0.0));
        metrics.dtls_handshake_negotiated(DtlsVersion::Dtls13, NamedGroup::X25519MlKem768);
        metrics.dtls_handshake_negotiated(DtlsVersion::Dtls13, NamedGroup::X25519MlKem768);
        metrics.dtls_handshake_negotiated(DtlsVersion::Dtls12, NamedGroup::X25519);
        let text = metrics.encode();
        assert_eq!(sample(&text, &series("1.3", "X25519MLKEM768")), Some(2.0));
        assert_eq!(sample(&text, &series("1.2", "x25519")), Some(1.0));
        assert_eq!(sample(&text, &series("1.3", "x25519")), Some(0.0));
    }

    #[test]
    fn forward_delays_land_in_sub_millisecond_buckets() {
        let metrics = Metrics::new();
        metrics.forward_delay(Duration::from_micros(80));
        metrics.forward_delay(Duration::from_micros(1500));
        let text = metrics.encode();
        assert_eq!(
            sample(&text, "sluice_forward_delay_seconds_count"),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "sluice_forward_delay_seconds_bucket{le=\"0.00005\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "sluice_forward_delay_seconds_bucket{le=\"0.0001\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "sluice_forward_delay_seconds_bucket{le=\"0.002\"}"),
            Some(2.0)
        );
    }

    #[test]
    fn packet_batches_count_packets_and_bytes() {
        let metrics = Metrics::new();
        metrics.packets_received(3, 3000);
        metrics.packet_received(100);
        metrics.packet_sent(50);
        let text = metrics.encode();
        assert_eq!(sample(&text, "sluice_packets_received_total"), Some(4.0));
        assert_eq!(sample(&text, "sluice_bytes_received_total"), Some(3100.0));
        assert_eq!(sample(&text, "sluice_packets_sent_total"), Some(1.0));
        assert_eq!(sample(&text, "sluice_bytes_sent_total"), Some(50.0));
    }

    #[test]
    fn gauges_go_up_and_down() {
        let metrics = Metrics::new();
        metrics.session_opened();
        metrics.session_opened();
        metrics.session_closed();
        metrics.room_opened();
        metrics.participant_joined();
        metrics.participant_joined();
        metrics.participant_left();
        assert_eq!(metrics.sessions(), 1);
        let text = metrics.encode();
        assert_eq!(sample(&text, "sluice_sessions"), Some(1.0));
        assert_eq!(sample(&text, "sluice_rooms"), Some(1.0));
        assert_eq!(sample(&text, "sluice_participants"), Some(1.0));
    }

    #[test]
    fn worker_busy_ratio_is_labelled_by_worker_and_clamped() {
        let metrics = Metrics::new();
        metrics.set_worker_busy_ratio(0, 0.25);
        metrics.set_worker_busy_ratio(1, 7.0);
        let text = metrics.encode();
        assert_eq!(
            sample(&text, "sluice_worker_busy_ratio{worker=\"0\"}"),
            Some(0.25)
        );
        assert_eq!(
            sample(&text, "sluice_worker_busy_ratio{worker=\"1\"}"),
            Some(1.0)
        );
    }

    #[test]
    fn signaling_messages_are_counted_by_direction() {
        let metrics = Metrics::new();
        metrics.signaling_message(Direction::Received);
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                "sluice_signaling_messages_total{direction=\"received\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "sluice_signaling_messages_total{direction=\"sent\"}"),
            Some(0.0)
        );
    }

    #[test]
    fn clones_of_shared_metrics_increment_the_same_counter() {
        let metrics = std::sync::Arc::new(Metrics::new());
        let worker_handles: Vec<_> = (0..2)
            .map(|_| {
                let metrics = std::sync::Arc::clone(&metrics);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        metrics.packet_received(10);
                    }
                })
            })
            .collect();
        for handle in worker_handles {
            handle.join().expect("worker thread");
        }
        let text = metrics.encode();
        assert_eq!(sample(&text, "sluice_packets_received_total"), Some(2000.0));
    }

    #[test]
    fn admission_and_signalling_refusals_are_counted_by_reason() {
        let metrics = Metrics::new();
        metrics.admission_refused(AdmissionRefusal::SessionsPerSourceIp);
        metrics.signaling_rejected(SignalingRejection::RateLimited);
        metrics.signaling_rejected(SignalingRejection::RateLimited);
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                "sluice_admissions_refused_total{reason=\"sessions_per_source_ip\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "sluice_admissions_refused_total{reason=\"room_full\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                "sluice_signaling_rejected_total{reason=\"rate_limited\"}"
            ),
            Some(2.0)
        );
    }

    #[test]
    fn router_stats_are_added_as_deltas_between_snapshots() {
        let metrics = Metrics::new();
        let zero = sluice_sfu::RouterStats::default();
        let first = sluice_sfu::RouterStats {
            forwarded_packets: 10,
            nacks_missed: 2,
            ..zero
        };
        let second = sluice_sfu::RouterStats {
            forwarded_packets: 25,
            nacks_missed: 2,
            ..zero
        };
        metrics.record_router_stats(&zero, &first);
        metrics.record_router_stats(&first, &second);
        let text = metrics.encode();
        assert_eq!(
            sample(&text, "sluice_router_forwarded_packets_total"),
            Some(25.0)
        );
        assert_eq!(sample(&text, "sluice_router_nacks_missed_total"), Some(2.0));
        assert_eq!(
            sample(&text, "sluice_router_dropped_total{reason=\"ssrc_limit\"}"),
            Some(0.0)
        );
    }

    #[test]
    fn dropped_log_lines_follow_the_writers_total() {
        let metrics = Metrics::new();
        metrics.record_log_lines_dropped(3);
        metrics.record_log_lines_dropped(3);
        metrics.record_log_lines_dropped(5);
        let text = metrics.encode();
        assert_eq!(sample(&text, "sluice_log_lines_dropped_total"), Some(5.0));
    }
}
