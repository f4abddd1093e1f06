//! Server configuration: the YAML schema, its documented defaults, and validation.
//!
//! The YAML keys map one to one onto these structs (`#[serde(deny_unknown_fields)]`,
//! so a misspelt key is an error rather than a silently ignored setting). Every
//! section is optional: a missing key takes the value of `Default`, which equals the
//! embedded `config/sluice.yaml` (a test pins this down).
//!
//! Loading has two stages. Parsing (serde) checks the shape and the scalar formats and
//! reports the key path of the first problem; [`Config::validate`] then checks ranges
//! and relations between keys and reports every violation, each naming its key path.
//!
//! YAML is read with `serde_norway`, a maintained fork of `serde_yaml` (which is
//! deprecated and unmaintained since 2024).

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// The default configuration file, embedded so that `sluice` runs with no file at all.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../config/sluice.yaml");

/// Smallest `dtls.max_datagram_size`: below it a handshake record header plus a
/// useful fragment no longer fit, and the certificate flight would need hundreds of
/// datagrams.
pub const MIN_DTLS_DATAGRAM_BYTES: usize = 200;
/// Largest `dtls.max_datagram_size`: the largest UDP payload over IPv4.
pub const MAX_DTLS_DATAGRAM_BYTES: usize = 65_507;
/// Smallest `dtls.max_handshake_buffer_bytes`: a certificate flight of a few KB must fit.
pub const MIN_HANDSHAKE_BUFFER_BYTES: usize = 16_384;
/// Largest `dtls.max_handshake_buffer_bytes`, so one peer cannot be granted unbounded memory.
pub const MAX_HANDSHAKE_BUFFER_BYTES: usize = 16 * 1024 * 1024;
/// Bounds of `dtls.initial_rto_ms`.
pub const MIN_INITIAL_RTO_MS: u64 = 10;
pub const MAX_INITIAL_RTO_MS: u64 = 60_000;
/// Largest `dtls.max_rto_ms`.
pub const MAX_MAX_RTO_MS: u64 = 600_000;
/// Smallest `dtls.handshake_timeout_ms`.
pub const MIN_HANDSHAKE_TIMEOUT_MS: u64 = 1_000;
/// Smallest `ice.consent_timeout_ms` (RFC 7675 recommends 30 s; less than a second
/// would expire sessions between two consent checks).
pub const MIN_CONSENT_TIMEOUT_MS: u64 = 1_000;
/// Largest `media.last_n` (more cameras than any room would hold).
const MAX_LAST_N: usize = 1024;
/// Largest `media.workers`.
pub const MAX_WORKERS: usize = 1024;
/// Largest `media.max_video_subscriptions`: an offer holds at most 256 m-lines.
const MAX_VIDEO_SUBSCRIPTIONS: usize = 254;
/// Largest number of `media.announce` entries (each becomes an SDP candidate line).
pub const MAX_ANNOUNCE_ADDRESSES: usize = 32;
/// Smallest `auth.keys[].secret` length: join tokens are HS256 JWTs, and RFC 7518
/// (section 3.2) requires an HMAC key at least as long as the hash output.
pub const MIN_AUTH_SECRET_BYTES: usize = 32;
/// Longest `auth.keys[].id`.
pub const MAX_AUTH_KEY_ID_BYTES: usize = 64;
/// Bounds of `limits.signaling_message_bytes`: an SDP answer needs about 1.4 KB per
/// m-line, two m-lines per other participant.
pub const MIN_SIGNALING_MESSAGE_BYTES: usize = 1_024;
pub const MAX_SIGNALING_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Largest `shutdown.grace_period_ms` (one hour).
pub const MAX_GRACE_PERIOD_MS: u64 = 3_600_000;

/// The whole server configuration (the YAML document's root).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub media: MediaConfig,
    pub dtls: DtlsConfig,
    pub ice: IceConfig,
    pub signaling: SignalingConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub shutdown: ShutdownConfig,
    /// `cluster`: absent, Sluice runs alone; present, it joins the cluster in Redis.
    pub cluster: Option<ClusterConfig>,
}

/// `http`: the HTTP listener that serves the demo page, health, metrics and `/ws`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the HTTP server binds.
    #[serde(deserialize_with = "deserialize_socket_addr")]
    pub listen: SocketAddr,
    /// Take the client address for per-address limits from the last entry of the
    /// `X-Forwarded-For` header (the one the reverse proxy in front of us appended)
    /// instead of the TCP peer. Only for a proxy that sets that header: a client
    /// reaching `listen` directly could otherwise claim any address.
    pub trust_forwarded_for: bool,
    /// Serve `/debug/subscribers` (every subscriber's estimate, allocation and layers).
    /// Off by default: it names rooms and participants, so turn it on only where the
    /// HTTP port is not reachable by the public, or behind a proxy that guards `/debug`.
    pub debug_endpoints: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            trust_forwarded_for: false,
            debug_endpoints: false,
        }
    }
}

/// `media`: the UDP workers that carry ICE, DTLS and SRTP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Address of worker 0's UDP socket; worker `k` binds port `PORT + k`.
    /// Port 0 lets every worker take an ephemeral port (tests).
    #[serde(deserialize_with = "deserialize_socket_addr")]
    pub listen: SocketAddr,
    /// Number of workers; 0 means one per available core.
    pub workers: usize,
    /// Addresses announced to peers as host candidates. Empty means the host's
    /// interface addresses (see [`default_announce_addresses`]).
    pub announce: Vec<AnnounceAddress>,
    /// How long after its first answer a participant may take to complete ICE and DTLS.
    pub connect_timeout_ms: u64,
    /// Ask every camera for three simulcast encodings (quarter, half and full
    /// resolution) and give each subscriber the one that fits its screen and link.
    pub simulcast: bool,
    /// Estimate each subscriber's downlink from its transport-cc feedback and fit what
    /// it receives to it (lower encodings, paused video, probing for more).
    pub bandwidth_estimation: bool,
    /// A publisher sending one encoding is asked (REMB) for what its subscribers'
    /// estimates carry, never less than this (bits per second).
    pub min_publisher_bitrate_bps: u64,
    /// Send a subscriber its audio as RED (Opus with the previous one or two frames
    /// repeated, RFC 2198) while its link loses packets, where its answer accepted RED.
    pub audio_redundancy: bool,
    /// The loss (percent of packets, from its transport-cc feedback) from which a
    /// subscriber gets RED; 0: always.
    pub audio_red_loss_percent: u32,
    /// Add ULPFEC parity packets (RFC 5109, in RED) to a subscriber's video while its
    /// link loses packets, where its answer accepted RED and ULPFEC: one lost packet per
    /// group is rebuilt at once instead of a round trip later.
    pub video_fec: bool,
    /// The loss (percent of packets, from its transport-cc feedback) from which a
    /// subscriber gets video FEC; 0: always.
    pub video_fec_loss_percent: u32,
    /// In a room with more cameras than this, each participant receives the cameras of
    /// this many most recent speakers; the others are paused for it until their owner
    /// speaks (0: every camera).
    pub last_n: usize,
    /// The same for microphones: in a room with more of them than this, each
    /// participant hears this many most recent speakers (0: everyone).
    pub audio_last_n: usize,
    /// Most cameras a participant receives at once. Cameras are subscribed by default,
    /// as they are published, up to this many; a client chooses others with
    /// `subscribe`/`unsubscribe`. It bounds each participant's offer and downlink in a
    /// large room (microphones and screen shares are not counted: all are received by
    /// default, one of each per participant at most).
    pub max_video_subscriptions: usize,
    /// Participants of one room a worker takes before the room spreads onto another
    /// worker (the least loaded): a room can then outgrow one core, each publisher's
    /// packets crossing once to every other worker of the room. Small rooms stay on one
    /// worker, where forwarding never crosses threads. 0: a room never leaves the worker
    /// it opened on.
    pub room_worker_participants: usize,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 40000)),
            workers: 0,
            announce: Vec::new(),
            connect_timeout_ms: 40_000,
            simulcast: true,
            bandwidth_estimation: true,
            min_publisher_bitrate_bps: 150_000,
            audio_redundancy: true,
            audio_red_loss_percent: 2,
            // measured: it halves a lossy subscriber's video freezes (docs/congestion.md)
            video_fec: true,
            video_fec_loss_percent: 3,
            last_n: 0,
            audio_last_n: 0,
            max_video_subscriptions: 16,
            room_worker_participants: 100,
        }
    }
}

impl MediaConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The loss share from which subscribers get RED audio; `None` when it is off.
    pub fn audio_red_loss_threshold(&self) -> Option<f64> {
        self.audio_redundancy
            .then(|| f64::from(self.audio_red_loss_percent) / 100.0)
    }

    /// The loss share from which subscribers get video FEC; `None` when it is off.
    pub fn video_fec_loss_threshold(&self) -> Option<f64> {
        self.video_fec
            .then(|| f64::from(self.video_fec_loss_percent) / 100.0)
    }

    /// The number of workers to start: `workers`, or the number of available cores when 0.
    pub fn resolved_workers(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// The UDP address of each of `worker_count` workers: `listen` with port `PORT + k`
    /// (all port 0 when `listen`'s port is 0).
    pub fn worker_listen_addrs(&self, worker_count: usize) -> Result<Vec<SocketAddr>, ConfigError> {
        let base_port = self.listen.port();
        (0..worker_count)
            .map(|k| {
                if base_port == 0 {
                    return Ok(SocketAddr::new(self.listen.ip(), 0));
                }
                u16::try_from(k)
                    .ok()
                    .and_then(|k| base_port.checked_add(k))
                    .map(|port| SocketAddr::new(self.listen.ip(), port))
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            "media.workers",
                            format!(
                                "{worker_count} workers from port {base_port} exceed port 65535"
                            ),
                        )
                    })
            })
            .collect()
    }

    /// The addresses to announce: the configured ones, or the host's interface
    /// addresses when none are configured.
    pub fn announce_addresses(&self) -> Vec<AnnounceAddress> {
        if self.announce.is_empty() {
            default_announce_addresses()
                .into_iter()
                .map(|ip| AnnounceAddress { ip, port: None })
                .collect()
        } else {
            self.announce.clone()
        }
    }
}

/// One `media.announce` entry: an IP, optionally with the port that a NAT or load
/// balancer forwards to worker 0 (worker `k` is then reached on `PORT + k`,
/// mirroring `media.listen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnnounceAddress {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl AnnounceAddress {
    /// The host candidate address of worker `worker`, whose socket is bound to
    /// `local_port`: the announced port plus `worker`, or `local_port` when no port
    /// is announced. `None` if the announced port plus `worker` passes 65535.
    pub fn candidate_addr(&self, worker: usize, local_port: u16) -> Option<SocketAddr> {
        let port = match self.port {
            None => local_port,
            Some(base_port) => base_port.checked_add(u16::try_from(worker).ok()?)?,
        };
        Some(SocketAddr::new(self.ip, port))
    }
}

impl fmt::Display for AnnounceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => SocketAddr::new(self.ip, port).fmt(f),
            None => self.ip.fmt(f),
        }
    }
}

impl std::str::FromStr for AnnounceAddress {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Self { ip, port: None });
        }
        let addr = text.parse::<SocketAddr>().map_err(|_| ())?;
        Ok(Self {
            ip: addr.ip(),
            port: Some(addr.port()),
        })
    }
}

impl<'de> Deserialize<'de> for AnnounceAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map_err(|()| de::Error::custom(format!("{text:?} is not IP or IP:PORT")))
    }
}

/// The host's interface addresses to announce when `media.announce` is empty:
/// every address of an interface that is up, except loopback and link-local ones
/// (which peers cannot reach), unless nothing else exists, in which case loopback
/// addresses are returned so that a laptop without network still works locally.
pub fn default_announce_addresses() -> Vec<IpAddr> {
    let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
    let mut usable = Vec::new();
    let mut loopback = Vec::new();
    for interface in &interfaces {
        let ip = interface.ip();
        if interface.is_loopback() {
            loopback.push(ip);
        } else if !interface.is_link_local() && !ip.is_unspecified() && !usable.contains(&ip) {
            usable.push(ip);
        }
    }
    if usable.is_empty() {
        if loopback.is_empty() {
            loopback.push(IpAddr::from([127, 0, 0, 1]));
        }
        loopback.sort();
        loopback.dedup();
        return loopback;
    }
    usable
}

/// `dtls.role`: which DTLS role Sluice takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DtlsRole {
    /// Let the SDP offer/answer decide (`a=setup`, RFC 8842).
    #[default]
    Auto,
    /// Always act as the DTLS client (`a=setup:active`).
    Client,
    /// Always act as the DTLS server (`a=setup:passive`).
    Server,
}

impl DtlsRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Client => "client",
            Self::Server => "server",
        }
    }
}

impl<'de> Deserialize<'de> for DtlsRole {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "auto" => Ok(Self::Auto),
            "client" => Ok(Self::Client),
            "server" => Ok(Self::Server),
            _ => Err(de::Error::custom(format!(
                "expected auto, client or server, got {text:?}"
            ))),
        }
    }
}

/// One entry of `dtls.versions`: `"1.3"` or `"1.2"` (quoted or not: YAML reads an
/// unquoted 1.3 as a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtlsVersionSetting {
    Dtls12,
    Dtls13,
}

impl DtlsVersionSetting {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dtls12 => "1.2",
            Self::Dtls13 => "1.3",
        }
    }
}

impl<'de> Deserialize<'de> for DtlsVersionSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = DtlsVersionSetting;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a DTLS version, 1.3 or 1.2")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "1.3" => Ok(DtlsVersionSetting::Dtls13),
                    "1.2" => Ok(DtlsVersionSetting::Dtls12),
                    _ => Err(E::custom(format!("expected 1.3 or 1.2, got {v:?}"))),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                self.visit_str(&format!("{v}"))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// One entry of `dtls.groups`: a key exchange of DTLS 1.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtlsGroupSetting {
    /// The post-quantum hybrid (ML-KEM-768 with X25519).
    X25519mlkem768,
    X25519,
    P256,
}

/// `dtls`: the DTLS handshake engine's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DtlsConfig {
    pub role: DtlsRole,
    /// PEM certificate; `None` generates a fresh self-signed certificate at start-up.
    pub certificate: Option<PathBuf>,
    /// PEM private key matching `certificate`.
    pub private_key: Option<PathBuf>,
    /// Largest UDP payload a flight is fragmented into.
    pub max_datagram_size: usize,
    /// First retransmission timeout, before any RTT sample.
    pub initial_rto_ms: u64,
    /// Cap of the exponential retransmission backoff.
    pub max_rto_ms: u64,
    /// A handshake not complete after this long fails.
    pub handshake_timeout_ms: u64,
    /// Answer ClientHellos with a HelloVerifyRequest cookie exchange (costs one round trip).
    pub hello_verify: bool,
    /// Bytes of handshake messages buffered per connection for reassembly.
    pub max_handshake_buffer_bytes: usize,
    /// Loss recovery: RTT-adaptive timer, immediate re-send when the peer repeats its
    /// flight, final-flight retention. `false` switches all three off (fixed 1 s
    /// timer), for comparisons.
    pub recovery: bool,
    /// Versions the engine speaks; 1.3 is preferred whenever both sides speak it.
    pub versions: Vec<DtlsVersionSetting>,
    /// DTLS 1.3 key exchanges in order of preference. The hybrid first protects
    /// recordings against a future quantum computer; it also makes hellos bigger, which
    /// costs handshakes on very lossy links with small datagrams (docs/dtls.md).
    pub groups: Vec<DtlsGroupSetting>,
}

impl Default for DtlsConfig {
    fn default() -> Self {
        Self {
            role: DtlsRole::Auto,
            certificate: None,
            private_key: None,
            max_datagram_size: 1200,
            initial_rto_ms: 400,
            max_rto_ms: 3000,
            handshake_timeout_ms: 30_000,
            hello_verify: false,
            max_handshake_buffer_bytes: 65_536,
            recovery: true,
            versions: vec![DtlsVersionSetting::Dtls13, DtlsVersionSetting::Dtls12],
            groups: vec![
                DtlsGroupSetting::X25519mlkem768,
                DtlsGroupSetting::X25519,
                DtlsGroupSetting::P256,
            ],
        }
    }
}

impl DtlsConfig {
    pub fn initial_rto(&self) -> Duration {
        Duration::from_millis(self.initial_rto_ms)
    }

    pub fn max_rto(&self) -> Duration {
        Duration::from_millis(self.max_rto_ms)
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
}

/// `ice`: the ICE-lite agent's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IceConfig {
    /// A session whose peer answers no consent check for this long is closed (RFC 7675).
    pub consent_timeout_ms: u64,
}

impl Default for IceConfig {
    fn default() -> Self {
        Self {
            consent_timeout_ms: 30_000,
        }
    }
}

impl IceConfig {
    pub fn consent_timeout(&self) -> Duration {
        Duration::from_millis(self.consent_timeout_ms)
    }
}

/// `auth`: keys that sign join tokens.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Empty means development mode: unsigned joins are accepted.
    pub keys: Vec<AuthKey>,
}

impl AuthConfig {
    /// True when no key is configured and anyone may join any room.
    pub fn is_development_mode(&self) -> bool {
        self.keys.is_empty()
    }
}

/// One join-token signing key. Several keys allow rotation: tokens name their key id.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthKey {
    pub id: String,
    pub secret: String,
}

/// Redacts the secret, so that logging a configuration never leaks it.
impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// `limits`: bounds that keep one client, source address or room from exhausting the server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub rooms: usize,
    pub participants_per_room: usize,
    pub sessions_per_source_ip: usize,
    pub handshakes_in_flight: usize,
    pub signaling_message_bytes: usize,
    pub signaling_messages_per_second: u32,
    pub ssrcs_per_session: usize,
    pub bitrate_bps_per_session: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            rooms: 1000,
            participants_per_room: 25,
            sessions_per_source_ip: 50,
            handshakes_in_flight: 2000,
            signaling_message_bytes: 262_144,
            signaling_messages_per_second: 50,
            ssrcs_per_session: 32,
            bitrate_bps_per_session: 20_000_000,
        }
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(de::Error::custom(format!(
                "expected text or json, got {text:?}"
            ))),
        }
    }
}

/// `log`: where and how much to log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `sluice=debug,warn`, ...); `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// `shutdown`: graceful stop on SIGTERM or SIGINT.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long in-flight connections may take to finish before the process exits.
    pub grace_period_ms: u64,
    /// How long after the signal the calls in progress go on undisturbed (draining: no
    /// new room opens here, their rooms still take joins) before their participants are
    /// told `bye shutting_down`, which in a cluster makes them rejoin on another node.
    /// Part of `grace_period_ms`; 0 ends every session at once.
    pub drain_period_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace_period_ms: 10_000,
            drain_period_ms: 0,
        }
    }
}

impl ShutdownConfig {
    pub fn grace_period(&self) -> Duration {
        Duration::from_millis(self.grace_period_ms)
    }

    pub fn drain_period(&self) -> Duration {
        Duration::from_millis(self.drain_period_ms)
    }
}

/// Least part of `shutdown.grace_period_ms` left after the drain period for telling the
/// remaining participants `bye` and letting their sockets close.
pub const MIN_SHUTDOWN_AFTER_DRAIN_MS: u64 = 1_000;

/// `cluster`: this node's membership of a cluster coordinated through Redis
/// (docs/cluster.md). Only placement and membership go through Redis, never media.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://host:port[/db]` of the shared Redis.
    pub redis_url: String,
    /// This node's name in the cluster, unique among the nodes.
    pub node_id: String,
    /// Base URL (`http://host:port`) at which other nodes reach this node's HTTP server;
    /// bridged signalling connects to `{internal_url}/ws`.
    pub internal_url: String,
    /// How often the node refreshes its heartbeat and renews its room leases.
    pub heartbeat_interval_ms: u64,
    /// Lifetime of the heartbeat and of each room lease: a node that stops renewing
    /// (killed, cut off) is considered gone this long after its last renewal.
    pub heartbeat_ttl_ms: u64,
    /// Longest wait for one Redis request: a join during an outage is refused after
    /// about this long instead of hanging.
    pub redis_timeout_ms: u64,
    /// UDP address of the relay between nodes (rooms that span nodes). Its address is
    /// published to the other nodes with this node's certificate fingerprint; an
    /// unspecified IP publishes the first `media.announce` address instead.
    #[serde(deserialize_with = "deserialize_socket_addr")]
    pub relay_listen: SocketAddr,
    /// The address the other nodes send relay datagrams to, when it is not the bound
    /// one (a NAT or a proxy in front of the relay socket).
    pub relay_announce: Option<String>,
    /// Participants this node's workers hold before the rooms it owns spread onto
    /// another node: the next participant of such a room gets its session on the least
    /// loaded other node, and publishers' packets cross between the nodes over the
    /// relay. 0: a room never spans nodes.
    pub room_spread_participants: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            node_id: String::new(),
            internal_url: String::new(),
            heartbeat_interval_ms: 1_000,
            heartbeat_ttl_ms: 3_000,
            redis_timeout_ms: 1_000,
            relay_listen: SocketAddr::from(([0, 0, 0, 0], 7890)),
            relay_announce: None,
            room_spread_participants: 0,
        }
    }
}

impl ClusterConfig {
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    pub fn heartbeat_ttl(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ttl_ms)
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
}

/// Longest `cluster.node_id`.
pub const MAX_NODE_ID_LEN: usize = 64;

/// `signaling`: how long the server waits for a client, and how far it lets one fall behind.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalingConfig {
    /// An offer unanswered this long ends the participant (`answer_timeout`).
    pub answer_timeout_ms: u64,
    /// A socket that has not joined this long after opening is closed (`idle_timeout`).
    pub join_timeout_ms: u64,
    /// A socket write that takes longer ends the connection (`send_timeout`).
    pub send_timeout_ms: u64,
    /// Room changes queued per connection before it needs a full `room_state`.
    pub room_event_queue: usize,
    /// How long room changes are gathered into one re-offer.
    pub renegotiation_delay_ms: u64,
}

impl Default for SignalingConfig {
    fn default() -> Self {
        Self {
            answer_timeout_ms: 10_000,
            join_timeout_ms: 10_000,
            send_timeout_ms: 10_000,
            room_event_queue: 256,
            renegotiation_delay_ms: 100,
        }
    }
}

impl SignalingConfig {
    pub fn answer_timeout(&self) -> Duration {
        Duration::from_millis(self.answer_timeout_ms)
    }

    pub fn join_timeout(&self) -> Duration {
        Duration::from_millis(self.join_timeout_ms)
    }

    pub fn send_timeout(&self) -> Duration {
        Duration::from_millis(self.send_timeout_ms)
    }

    pub fn renegotiation_delay(&self) -> Duration {
        Duration::from_millis(self.renegotiation_delay_ms)
    }
}

/// Smallest `signaling.*_timeout_ms`.
pub const MIN_SIGNALING_TIMEOUT_MS: u64 = 1_000;
/// Largest `signaling.renegotiation_delay_ms`: longer would make media of a newcomer
/// noticeably late.
pub const MAX_RENEGOTIATION_DELAY_MS: u64 = 2_000;
/// Smallest `signaling.room_event_queue`.
pub const MIN_ROOM_EVENT_QUEUE: usize = 16;

/// One broken rule of [`Config::validate`]: the key path and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub reason: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed or a value has the wrong shape; the message starts with
    /// the key path and ends with the line and column.
    #[error("{message}")]
    Parse { message: String },
    /// The YAML parsed but breaks one or more rules; one violation per line.
    #[error("{}", join_lines(.0))]
    Invalid(Vec<Violation>),
}

impl ConfigError {
    fn invalid(key: &str, reason: String) -> Self {
        Self::Invalid(vec![Violation {
            key: key.to_owned(),
            reason,
        }])
    }
}

fn join_lines(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(Violation::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Prefixes a YAML error with the exact key path. `serde_norway` prefixes some
/// errors with an ancestor of the failing key (the enclosing mapping), so that
/// prefix is replaced rather than repeated.
fn parse_error_message(key_path: &str, yaml_message: &str) -> String {
    let without_ancestor = yaml_message
        .split_once(": ")
        .filter(|(head, _)| {
            !head.contains(' ')
                && (key_path == *head
                    || key_path.starts_with(&format!("{head}."))
                    || key_path.starts_with(&format!("{head}[")))
        })
        .map_or(yaml_message, |(_, rest)| rest);
    if key_path == "." {
        without_ancestor.to_owned()
    } else {
        format!("{key_path}: {without_ancestor}")
    }
}

fn deserialize_socket_addr<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse()
        .map_err(|_| de::Error::custom(format!("{text:?} is not IP:PORT")))
}

impl Config {
    /// Parses YAML text (without validating it). An empty document, or one holding
    /// only comments, is the default configuration.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let has_content = text.lines().any(|line| {
            let line = line.trim();
            !line.is_empty() && !line.starts_with('#') && line != "---"
        });
        if !has_content {
            return Ok(Self::default());
        }
        let deserializer = serde_norway::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer).map_err(|err| ConfigError::Parse {
            message: parse_error_message(&err.path().to_string(), &err.into_inner().to_string()),
        })
    }

    /// Parses and validates YAML text.
    pub fn load_str(text: &str) -> Result<Self, ConfigError> {
        let config = Self::from_yaml(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a file; `None` uses the embedded default.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            None => Self::load_str(DEFAULT_CONFIG_YAML),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::load_str(&text)
            }
        }
    }

    /// Checks ranges and relations between keys; reports every violation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut rules = Rules::default();
        self.validate_media(&mut rules);
        self.validate_dtls(&mut rules);
        rules.at_least(
            "ice.consent_timeout_ms",
            self.ice.consent_timeout_ms,
            MIN_CONSENT_TIMEOUT_MS,
        );
        self.validate_auth(&mut rules);
        self.validate_limits(&mut rules);
        self.validate_signaling(&mut rules);
        if let Some(cluster) = &self.cluster {
            validate_cluster(cluster, &mut rules);
        }
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            rules.fail(
                "log.level",
                format!("{:?} is not a valid log filter: {err}", self.log.level),
            );
        }
        rules.at_most(
            "shutdown.grace_period_ms",
            self.shutdown.grace_period_ms,
            MAX_GRACE_PERIOD_MS,
        );
        if self.shutdown.drain_period_ms > 0
            && self
                .shutdown
                .drain_period_ms
                .saturating_add(MIN_SHUTDOWN_AFTER_DRAIN_MS)
                > self.shutdown.grace_period_ms
        {
            rules.fail(
                "shutdown.drain_period_ms",
                format!(
                    "{} leaves less than {MIN_SHUTDOWN_AFTER_DRAIN_MS} ms of shutdown.grace_period_ms ({}) to end the sessions still open",
                    self.shutdown.drain_period_ms, self.shutdown.grace_period_ms
                ),
            );
        }
        rules.finish()
    }

    fn validate_media(&self, rules: &mut Rules) {
        let media = &self.media;
        rules.at_most("media.workers", media.workers, MAX_WORKERS);
        rules.at_most(
            "media.audio_red_loss_percent",
            media.audio_red_loss_percent,
            100,
        );
        rules.at_most(
            "media.video_fec_loss_percent",
            media.video_fec_loss_percent,
            100,
        );
        rules.at_most("media.last_n", media.last_n, MAX_LAST_N);
        rules.at_most("media.audio_last_n", media.audio_last_n, MAX_LAST_N);
        rules.at_most(
            "media.max_video_subscriptions",
            media.max_video_subscriptions,
            MAX_VIDEO_SUBSCRIPTIONS,
        );
        if media.workers > 0 {
            if let Err(ConfigError::Invalid(violations)) = media.worker_listen_addrs(media.workers)
            {
                rules.violations.extend(violations);
            }
        }
        rules.at_most(
            "media.announce",
            media.announce.len(),
            MAX_ANNOUNCE_ADDRESSES,
        );
        for (index, address) in media.announce.iter().enumerate() {
            let key = format!("media.announce[{index}]");
            if address.ip.is_unspecified() {
                rules.fail(
                    &key,
                    format!("{address} is unspecified: announce an address peers can reach"),
                );
            }
            match address.port {
                Some(0) => rules.fail(&key, format!("{address} has port 0")),
                Some(port) if media.workers > 0 => {
                    let last_worker = media.workers - 1;
                    if address.candidate_addr(last_worker, 0).is_none() {
                        rules.fail(
                            &key,
                            format!(
                                "{} workers from port {port} exceed port 65535",
                                media.workers
                            ),
                        );
                    }
                }
                _ => {}
            }
        }
    }

    fn validate_dtls(&self, rules: &mut Rules) {
        let dtls = &self.dtls;
        rules.between(
            "dtls.max_datagram_size",
            dtls.max_datagram_size,
            MIN_DTLS_DATAGRAM_BYTES,
            MAX_DTLS_DATAGRAM_BYTES,
        );
        rules.between(
            "dtls.initial_rto_ms",
            dtls.initial_rto_ms,
            MIN_INITIAL_RTO_MS,
            MAX_INITIAL_RTO_MS,
        );
        if dtls.max_rto_ms < dtls.initial_rto_ms {
            rules.fail(
                "dtls.max_rto_ms",
                format!(
                    "{} is below dtls.initial_rto_ms ({})",
                    dtls.max_rto_ms, dtls.initial_rto_ms
                ),
            );
        }
        rules.at_most("dtls.max_rto_ms", dtls.max_rto_ms, MAX_MAX_RTO_MS);
        rules.at_least(
            "dtls.handshake_timeout_ms",
            dtls.handshake_timeout_ms,
            MIN_HANDSHAKE_TIMEOUT_MS,
        );
        rules.between(
            "dtls.max_handshake_buffer_bytes",
            dtls.max_handshake_buffer_bytes,
            MIN_HANDSHAKE_BUFFER_BYTES,
            MAX_HANDSHAKE_BUFFER_BYTES,
        );
        if dtls.versions.is_empty() {
            rules.fail("dtls.versions", "must name at least one version".to_owned());
        }
        let distinct: HashSet<_> = dtls.versions.iter().collect();
        if distinct.len() != dtls.versions.len() {
            rules.fail("dtls.versions", "names a version twice".to_owned());
        }
        let classical = dtls
            .groups
            .iter()
            .any(|g| *g != DtlsGroupSetting::X25519mlkem768);
        if !classical {
            rules.fail(
                "dtls.groups",
                "must name x25519 or p256 (DTLS 1.2 and peers without ML-KEM need one)".to_owned(),
            );
        }
        let distinct: HashSet<_> = dtls.groups.iter().collect();
        if distinct.len() != dtls.groups.len() {
            rules.fail("dtls.groups", "names a group twice".to_owned());
        }
        match (&dtls.certificate, &dtls.private_key) {
            (Some(_), None) => rules.fail(
                "dtls.private_key",
                "is required when dtls.certificate is set".to_owned(),
            ),
            (None, Some(_)) => rules.fail(
                "dtls.certificate",
                "is required when dtls.private_key is set".to_owned(),
            ),
            _ => {}
        }
        for (key, path) in [
            ("dtls.certificate", &dtls.certificate),
            ("dtls.private_key", &dtls.private_key),
        ] {
            if let Some(path) = path {
                if !path.is_file() {
                    rules.fail(key, format!("{} is not a readable file", path.display()));
                }
            }
        }
    }

    fn validate_auth(&self, rules: &mut Rules) {
        let mut seen_ids = HashSet::new();
        for (index, key) in self.auth.keys.iter().enumerate() {
            let id_key = format!("auth.keys[{index}].id");
            if key.id.is_empty() {
                rules.fail(&id_key, "is empty".to_owned());
            } else if key.id.len() > MAX_AUTH_KEY_ID_BYTES {
                rules.fail(
                    &id_key,
                    format!(
                        "{} bytes is above the maximum {MAX_AUTH_KEY_ID_BYTES}",
                        key.id.len()
                    ),
                );
            } else if !seen_ids.insert(key.id.as_str()) {
                rules.fail(&id_key, format!("{:?} is used by an earlier key", key.id));
            }
            if key.secret.len() < MIN_AUTH_SECRET_BYTES {
                rules.fail(
                    &format!("auth.keys[{index}].secret"),
                    format!(
                        "{} bytes is below the minimum {MIN_AUTH_SECRET_BYTES}",
                        key.secret.len()
                    ),
                );
            }
        }
    }

    fn validate_signaling(&self, rules: &mut Rules) {
        let signaling = &self.signaling;
        for (key, value) in [
            ("signaling.answer_timeout_ms", signaling.answer_timeout_ms),
            ("signaling.join_timeout_ms", signaling.join_timeout_ms),
            ("signaling.send_timeout_ms", signaling.send_timeout_ms),
        ] {
            rules.at_least(key, value, MIN_SIGNALING_TIMEOUT_MS);
        }
        rules.at_most(
            "signaling.renegotiation_delay_ms",
            signaling.renegotiation_delay_ms,
            MAX_RENEGOTIATION_DELAY_MS,
        );
        rules.at_least(
            "signaling.room_event_queue",
            signaling.room_event_queue,
            MIN_ROOM_EVENT_QUEUE,
        );
        if self.media.connect_timeout_ms < self.dtls.handshake_timeout_ms {
            rules.fail(
                "media.connect_timeout_ms",
                format!(
                    "{} is below dtls.handshake_timeout_ms ({}): a progressing handshake would be cut",
                    self.media.connect_timeout_ms, self.dtls.handshake_timeout_ms
                ),
            );
        }
    }

    fn validate_limits(&self, rules: &mut Rules) {
        let limits = &self.limits;
        rules.at_least("limits.rooms", limits.rooms, 1);
        rules.at_least(
            "limits.participants_per_room",
            limits.participants_per_room,
            1,
        );
        rules.at_least(
            "limits.sessions_per_source_ip",
            limits.sessions_per_source_ip,
            1,
        );
        rules.at_least(
            "limits.handshakes_in_flight",
            limits.handshakes_in_flight,
            1,
        );
        rules.between(
            "limits.signaling_message_bytes",
            limits.signaling_message_bytes,
            MIN_SIGNALING_MESSAGE_BYTES,
            MAX_SIGNALING_MESSAGE_BYTES,
        );
        rules.at_least(
            "limits.signaling_messages_per_second",
            limits.signaling_messages_per_second,
            1,
        );
        rules.at_least("limits.ssrcs_per_session", limits.ssrcs_per_session, 1);
        rules.at_least(
            "limits.bitrate_bps_per_session",
            limits.bitrate_bps_per_session,
            1,
        );
    }
}

/// Collects violations with uniform wording.
fn validate_cluster(cluster: &ClusterConfig, rules: &mut Rules) {
    let scheme_ok =
        cluster.redis_url.starts_with("redis://") || cluster.redis_url.starts_with("unix://");
    if !scheme_ok {
        rules.fail(
            "cluster.redis_url",
            format!("{:?} is not a redis:// or unix:// URL", cluster.redis_url),
        );
    } else if let Err(error) =
        redis::IntoConnectionInfo::into_connection_info(cluster.redis_url.as_str())
    {
        rules.fail(
            "cluster.redis_url",
            format!("{:?} is not a valid Redis URL: {error}", cluster.redis_url),
        );
    }
    let id = &cluster.node_id;
    if id.is_empty()
        || id.len() > MAX_NODE_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        rules.fail(
            "cluster.node_id",
            format!("{id:?} must be 1 to {MAX_NODE_ID_LEN} characters of A-Za-z0-9-_."),
        );
    }
    let url = &cluster.internal_url;
    let host = url.strip_prefix("http://").unwrap_or("");
    if host.is_empty() || host.contains('/') && !host.ends_with('/') {
        rules.fail(
            "cluster.internal_url",
            format!("{url:?} is not http://host:port (the node's HTTP server, no path)"),
        );
    }
    if let Some(announce) = &cluster.relay_announce {
        if announce.parse::<SocketAddr>().is_err() {
            rules.fail(
                "cluster.relay_announce",
                format!("{announce:?} is not an IP address and port"),
            );
        }
    }
    rules.at_least(
        "cluster.heartbeat_interval_ms",
        cluster.heartbeat_interval_ms,
        100,
    );
    rules.at_least(
        "cluster.heartbeat_ttl_ms",
        cluster.heartbeat_ttl_ms,
        cluster.heartbeat_interval_ms.saturating_mul(2),
    );
    rules.between(
        "cluster.redis_timeout_ms",
        cluster.redis_timeout_ms,
        50,
        10_000,
    );
}

#[derive(Default)]
struct Rules {
    violations: Vec<Violation>,
}

impl Rules {
    fn fail(&mut self, key: &str, reason: String) {
        self.violations.push(Violation {
            key: key.to_owned(),
            reason,
        });
    }

    fn at_least<T: PartialOrd + fmt::Display>(&mut self, key: &str, value: T, min: T) {
        if value < min {
            self.fail(key, format!("{value} is below the minimum {min}"));
        }
    }

    fn at_most<T: PartialOrd + fmt::Display>(&mut self, key: &str, value: T, max: T) {
        if value > max {
            self.fail(key, format!("{value} is above the maximum {max}"));
        }
    }

    fn between<T: PartialOrd + fmt::Display + Copy>(
        &mut self,
        key: &str,
        value: T,
        min: T,
        max: T,
    ) {
        self.at_least(key, value, min);
        self.at_most(key, value, max);
    }

    fn finish(self) -> Result<(), ConfigError> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self.violations))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses and validates, returning the error text (panics if the config is valid).
    fn error_of(yaml: &str) -> String {
        match Config::load_str(yaml) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(err) => err.to_string(),
        }
    }

    fn assert_error(yaml: &str, expected: &str) {
        let message = error_of(yaml);
        assert!(
            message.contains(expected),
            "error {message:?} does not contain {expected:?}"
        );
    }

    #[test]
    fn embedded_default_file_equals_default_struct() {
        let parsed = Config::load_str(DEFAULT_CONFIG_YAML).expect("default file is valid");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn default_values_match_documented_ones() {
        let config = Config::default();
        assert_eq!(config.http.listen, "0.0.0.0:8080".parse().unwrap());
        assert!(!config.http.trust_forwarded_for);
        assert_eq!(config.media.listen, "0.0.0.0:40000".parse().unwrap());
        assert_eq!(config.media.workers, 0);
        assert!(config.media.announce.is_empty());
        assert_eq!(config.dtls.role, DtlsRole::Auto);
        assert_eq!(config.dtls.certificate, None);
        assert_eq!(config.dtls.max_datagram_size, 1200);
        assert_eq!(config.dtls.initial_rto(), Duration::from_millis(400));
        assert_eq!(config.dtls.max_rto(), Duration::from_secs(3));
        assert_eq!(config.dtls.handshake_timeout(), Duration::from_secs(30));
        assert!(!config.dtls.hello_verify);
        assert_eq!(config.dtls.max_handshake_buffer_bytes, 65_536);
        assert!(config.dtls.recovery);
        assert_eq!(
            config.dtls.versions,
            vec![DtlsVersionSetting::Dtls13, DtlsVersionSetting::Dtls12]
        );
        assert_eq!(config.ice.consent_timeout(), Duration::from_secs(30));
        assert!(config.auth.is_development_mode());
        assert_eq!(config.limits.rooms, 1000);
        assert_eq!(config.limits.participants_per_room, 25);
        assert_eq!(config.limits.sessions_per_source_ip, 50);
        assert_eq!(config.limits.handshakes_in_flight, 2000);
        assert_eq!(config.limits.signaling_message_bytes, 262_144);
        assert_eq!(config.limits.signaling_messages_per_second, 50);
        assert_eq!(config.limits.ssrcs_per_session, 32);
        assert_eq!(config.limits.bitrate_bps_per_session, 20_000_000);
        assert_eq!(config.log.format, LogFormat::Text);
        assert_eq!(config.log.level, "info");
        assert_eq!(config.shutdown.grace_period(), Duration::from_secs(10));
    }

    #[test]
    fn empty_or_comment_only_file_is_the_default() {
        assert_eq!(Config::load_str("").unwrap(), Config::default());
        assert_eq!(
            Config::load_str("# nothing\n\n---\n").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn missing_keys_take_their_defaults() {
        let config = Config::load_str("dtls:\n  max_datagram_size: 1400\n").unwrap();
        assert_eq!(config.dtls.max_datagram_size, 1400);
        assert_eq!(config.dtls.initial_rto_ms, 400);
        assert_eq!(config.http, HttpConfig::default());
    }

    #[test]
    fn example_production_file_is_valid() {
        let text = include_str!("../config/examples/production.yaml");
        let config = Config::load_str(text).expect("production example is valid");
        assert!(!config.auth.keys.is_empty());
        assert!(!config.media.announce.is_empty());
        assert_eq!(config.log.format, LogFormat::Json);
    }

    #[test]
    fn media_listen_that_is_not_ip_port_is_rejected() {
        assert_error(
            "media:\n  listen: \"x\"\n",
            "media.listen: \"x\" is not IP:PORT",
        );
    }

    #[test]
    fn http_listen_without_port_is_rejected() {
        assert_error(
            "http:\n  listen: \"127.0.0.1\"\n",
            "http.listen: \"127.0.0.1\" is not IP:PORT",
        );
    }

    #[test]
    fn unknown_dtls_role_is_rejected() {
        assert_error(
            "dtls:\n  role: both\n",
            "dtls.role: expected auto, client or server",
        );
    }

    #[test]
    fn known_dtls_roles_parse() {
        for (text, role) in [
            ("auto", DtlsRole::Auto),
            ("client", DtlsRole::Client),
            ("server", DtlsRole::Server),
        ] {
            let config = Config::load_str(&format!("dtls:\n  role: {text}\n")).unwrap();
            assert_eq!(config.dtls.role, role);
            assert_eq!(role.as_str(), text);
        }
    }

    #[test]
    fn datagram_size_below_minimum_is_rejected() {
        assert_error(
            "dtls:\n  max_datagram_size: 100\n",
            "dtls.max_datagram_size: 100 is below the minimum 200",
        );
    }

    #[test]
    fn datagram_size_above_udp_maximum_is_rejected() {
        assert_error(
            "dtls:\n  max_datagram_size: 70000\n",
            "dtls.max_datagram_size: 70000 is above the maximum 65507",
        );
    }

    #[test]
    fn max_rto_below_initial_rto_is_rejected() {
        assert_error(
            "dtls:\n  initial_rto_ms: 1000\n  max_rto_ms: 500\n",
            "dtls.max_rto_ms: 500 is below dtls.initial_rto_ms (1000)",
        );
    }

    #[test]
    fn zero_initial_rto_is_rejected() {
        assert_error(
            "dtls:\n  initial_rto_ms: 0\n",
            "dtls.initial_rto_ms: 0 is below the minimum 10",
        );
    }

    #[test]
    fn short_handshake_timeout_is_rejected() {
        assert_error(
            "dtls:\n  handshake_timeout_ms: 10\n",
            "dtls.handshake_timeout_ms: 10 is below the minimum 1000",
        );
    }

    #[test]
    fn tiny_handshake_buffer_is_rejected() {
        assert_error(
            "dtls:\n  max_handshake_buffer_bytes: 1000\n",
            "dtls.max_handshake_buffer_bytes: 1000 is below the minimum 16384",
        );
    }

    #[test]
    fn certificate_without_private_key_is_rejected() {
        assert_error(
            "dtls:\n  certificate: /nonexistent/cert.pem\n",
            "dtls.private_key: is required when dtls.certificate is set",
        );
    }

    #[test]
    fn missing_certificate_file_is_rejected() {
        assert_error(
            "dtls:\n  certificate: /nonexistent/cert.pem\n  private_key: /nonexistent/key.pem\n",
            "dtls.certificate: /nonexistent/cert.pem is not a readable file",
        );
    }

    #[test]
    fn short_consent_timeout_is_rejected() {
        assert_error(
            "ice:\n  consent_timeout_ms: 10\n",
            "ice.consent_timeout_ms: 10 is below the minimum 1000",
        );
    }

    #[test]
    fn unknown_key_is_rejected_with_its_path() {
        assert_error(
            "dtls:\n  max_datagram_sise: 1200\n",
            "dtls.max_datagram_sise: unknown field `max_datagram_sise`",
        );
    }

    #[test]
    fn unknown_top_level_section_is_rejected() {
        assert_error("medai:\n  workers: 2\n", "medai: unknown field `medai`");
    }

    #[test]
    fn wrong_value_type_names_its_key() {
        assert_error("limits:\n  rooms: many\n", "limits.rooms: invalid type");
    }

    #[test]
    fn dtls_groups_keep_their_order_and_need_a_classical_one() {
        let config = Config::load_str("dtls:\n  groups: [x25519, x25519mlkem768]\n").unwrap();
        assert_eq!(
            config.dtls.groups,
            vec![DtlsGroupSetting::X25519, DtlsGroupSetting::X25519mlkem768]
        );
        assert_error(
            "dtls:\n  groups: [x25519mlkem768]\n",
            "dtls.groups: must name",
        );
        assert_error("dtls:\n  groups: [p256, p256]\n", "dtls.groups: names");
        assert_error("dtls:\n  groups: [x448]\n", "dtls.groups");
    }

    #[test]
    fn dtls_versions_read_quoted_or_not_and_must_be_distinct() {
        let config = Config::load_str("dtls:\n  versions: [1.2]\n").unwrap();
        assert_eq!(config.dtls.versions, vec![DtlsVersionSetting::Dtls12]);
        let config = Config::load_str("dtls:\n  versions: [\"1.3\", \"1.2\"]\n").unwrap();
        assert_eq!(
            config.dtls.versions,
            vec![DtlsVersionSetting::Dtls13, DtlsVersionSetting::Dtls12]
        );
        assert_error("dtls:\n  versions: [1.1]\n", "dtls.versions");
        assert_error("dtls:\n  versions: []\n", "dtls.versions: must name");
        assert_error(
            "dtls:\n  versions: [1.3, \"1.3\"]\n",
            "dtls.versions: names",
        );
    }

    #[test]
    fn parse_errors_carry_the_line() {
        assert_error("\nlimits:\n  rooms: many\n", "line 3");
    }

    #[test]
    fn announce_entry_that_is_not_an_address_is_rejected_with_its_index() {
        assert_error(
            "media:\n  announce: [\"203.0.113.7\", \"example.com\"]\n",
            "media.announce[1]: \"example.com\" is not IP or IP:PORT",
        );
    }

    #[test]
    fn announce_accepts_ip_and_ip_port() {
        let config =
            Config::load_str("media:\n  announce: [\"203.0.113.7\", \"[2001:db8::1]:3478\"]\n")
                .unwrap();
        let announce = &config.media.announce;
        assert_eq!(announce.len(), 2);
        assert_eq!(announce[0].port, None);
        // No announced port: the worker's own port.
        assert_eq!(
            announce[0].candidate_addr(1, 40001),
            Some("203.0.113.7:40001".parse().unwrap())
        );
        // Announced port: worker k is reached on PORT + k.
        assert_eq!(
            announce[1].candidate_addr(0, 40000),
            Some("[2001:db8::1]:3478".parse().unwrap())
        );
        assert_eq!(
            announce[1].candidate_addr(2, 40002),
            Some("[2001:db8::1]:3480".parse().unwrap())
        );
        assert_eq!(announce[1].to_string(), "[2001:db8::1]:3478");
    }

    #[test]
    fn unspecified_announce_address_is_rejected() {
        assert_error(
            "media:\n  announce: [\"0.0.0.0\"]\n",
            "media.announce[0]: 0.0.0.0 is unspecified",
        );
    }

    #[test]
    fn announced_port_that_workers_push_past_65535_is_rejected() {
        assert_error(
            "media:\n  workers: 4\n  announce: [\"203.0.113.7:65534\"]\n",
            "media.announce[0]: 4 workers from port 65534 exceed port 65535",
        );
    }

    #[test]
    fn workers_whose_ports_pass_65535_are_rejected() {
        assert_error(
            "media:\n  listen: \"0.0.0.0:65530\"\n  workers: 10\n",
            "media.workers: 10 workers from port 65530 exceed port 65535",
        );
    }

    #[test]
    fn worker_k_listens_on_port_plus_k() {
        let media = MediaConfig::default();
        let addrs = media.worker_listen_addrs(3).unwrap();
        let ports: Vec<u16> = addrs.iter().map(SocketAddr::port).collect();
        assert_eq!(ports, vec![40000, 40001, 40002]);
    }

    #[test]
    fn zero_workers_resolve_to_at_least_one() {
        assert!(MediaConfig::default().resolved_workers() >= 1);
        let two = MediaConfig {
            workers: 2,
            ..MediaConfig::default()
        };
        assert_eq!(two.resolved_workers(), 2);
    }

    #[test]
    fn short_auth_secret_is_rejected() {
        assert_error(
            "auth:\n  keys:\n    - id: k1\n      secret: short\n",
            "auth.keys[0].secret: 5 bytes is below the minimum 32",
        );
    }

    #[test]
    fn duplicate_auth_key_ids_are_rejected() {
        let secret = "0123456789abcdef0123456789abcdef";
        assert_error(
            &format!(
                "auth:\n  keys:\n    - {{id: k1, secret: {secret}}}\n    - {{id: k1, secret: {secret}}}\n"
            ),
            "auth.keys[1].id: \"k1\" is used by an earlier key",
        );
    }

    #[test]
    fn auth_key_with_unknown_field_is_rejected() {
        assert_error(
            "auth:\n  keys:\n    - {id: k1, secret: 0123456789abcdef, algo: x}\n",
            "auth.keys[0].algo: unknown field `algo`",
        );
    }

    #[test]
    fn auth_key_debug_output_hides_the_secret() {
        let key = AuthKey {
            id: "k1".to_owned(),
            secret: "super-secret-value".to_owned(),
        };
        let debug = format!("{key:?}");
        assert!(debug.contains("k1"));
        assert!(!debug.contains("super-secret-value"));
    }

    #[test]
    fn zero_limits_are_rejected() {
        assert_error(
            "limits:\n  participants_per_room: 0\n",
            "limits.participants_per_room: 0 is below the minimum 1",
        );
        assert_error(
            "limits:\n  signaling_message_bytes: 10\n",
            "limits.signaling_message_bytes: 10 is below the minimum 1024",
        );
    }

    #[test]
    fn unknown_log_format_is_rejected() {
        assert_error("log:\n  format: xml\n", "log.format: expected text or json");
    }

    #[test]
    fn invalid_log_filter_is_rejected() {
        assert_error(
            "log:\n  level: \"=[\"\n",
            "log.level: \"=[\" is not a valid log filter",
        );
    }

    #[test]
    fn a_drain_period_must_leave_time_to_end_the_sessions() {
        assert_error(
            "shutdown:\n  grace_period_ms: 5000\n  drain_period_ms: 4500\n",
            "shutdown.drain_period_ms: 4500 leaves less than 1000 ms",
        );
        let config =
            Config::load_str("shutdown:\n  grace_period_ms: 5000\n  drain_period_ms: 4000\n")
                .expect("a drain period with a second to spare");
        assert_eq!(config.shutdown.drain_period(), Duration::from_secs(4));
    }

    #[test]
    fn every_violation_is_reported() {
        let message = error_of("dtls:\n  max_datagram_size: 100\nlimits:\n  rooms: 0\n");
        assert!(message.contains("dtls.max_datagram_size"), "{message}");
        assert!(message.contains("limits.rooms"), "{message}");
        assert_eq!(message.lines().count(), 2, "{message}");
    }

    #[test]
    fn default_announce_addresses_is_never_empty() {
        let addresses = default_announce_addresses();
        assert!(!addresses.is_empty());
        let has_non_loopback = addresses.iter().any(|ip| !ip.is_loopback());
        if has_non_loopback {
            assert!(addresses.iter().all(|ip| !ip.is_loopback()));
        }
        assert!(addresses.iter().all(|ip| !ip.is_unspecified()));
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err = Config::load(Some(Path::new("/nonexistent/sluice.yaml"))).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
    }

    #[test]
    fn without_a_cluster_section_the_node_runs_alone() {
        assert_eq!(Config::default().cluster, None);
        assert_eq!(
            Config::load_str("log:\n  level: info\n").unwrap().cluster,
            None
        );
    }

    #[test]
    fn cluster_section_takes_documented_defaults() {
        let config = Config::load_str(
            "cluster:\n  node_id: a-1\n  internal_url: \"http://10.0.0.1:8080\"\n",
        )
        .expect("valid");
        let cluster = config.cluster.expect("cluster section");
        assert_eq!(cluster.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(cluster.heartbeat_interval(), Duration::from_secs(1));
        assert_eq!(cluster.heartbeat_ttl(), Duration::from_secs(3));
        assert_eq!(cluster.redis_timeout(), Duration::from_secs(1));
    }

    #[test]
    fn cluster_values_are_checked_with_their_key_paths() {
        let message = error_of(
            "cluster:\n  redis_url: \"http://x\"\n  node_id: \"a b\"\n  internal_url: \"ws://x/ws\"\n  heartbeat_interval_ms: 1000\n  heartbeat_ttl_ms: 1500\n",
        );
        for key in [
            "cluster.redis_url",
            "cluster.node_id",
            "cluster.internal_url",
            "cluster.heartbeat_ttl_ms",
        ] {
            assert!(message.contains(key), "{key} missing from {message:?}");
        }
        assert_error("cluster:\n  nodeid: a\n", "cluster");
        assert_error(
            "cluster:\n  redis_url: \"redis://host:notaport\"\n  node_id: a\n  internal_url: \"http://a:1\"\n",
            "cluster.redis_url",
        );
    }
}
