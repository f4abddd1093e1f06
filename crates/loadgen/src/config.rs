//! What one synthetic participant does.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Largest [`ClientConfig::decrypt_every`].
pub const MAX_DECRYPT_EVERY: u32 = 4096;

/// Configuration of one [`Client`](crate::Client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The server's WebSocket endpoint, e.g. `ws://127.0.0.1:8080/ws`.
    pub server_url: String,
    /// Room to join.
    pub room: String,
    /// Display name.
    pub name: String,
    /// Join token (JWT HS256) when the server requires one.
    pub token: Option<String>,
    /// Publish Opus-like audio (50 packets/s) on mid 0.
    pub publish_audio: bool,
    /// Publish VP8-like video on mid 1.
    pub publish_video: bool,
    /// Target video bitrate in bits per second.
    pub video_bitrate_bps: u64,
    /// Video frames per second.
    pub video_fps: u32,
    /// Time between periodic keyframes (PLI/FIR also force one).
    pub keyframe_interval: Duration,
    /// Largest DTLS datagram this client sends.
    pub dtls_max_datagram_size: usize,
    /// Local address for the media UDP socket.
    pub bind_ip: IpAddr,
    /// Give up when ICE+DTLS have not completed this long after the first offer.
    pub connect_timeout: Duration,
    /// Decrypt one received media packet in this many per stream; count the others
    /// from their clear RTP header (loss, jitter, NACKs). 1 = decrypt everything.
    /// A load generator that decrypts everything runs out of CPU before the server.
    pub decrypt_every: u32,
    /// Join and answer offers but start ICE and DTLS only at
    /// [`Client::release`](crate::Client::release): a handshake storm releases many
    /// clients at once.
    pub hold_transport: bool,
    /// How often [`Client::stats`](crate::Client::stats) is refreshed while counters
    /// move. Each refresh copies the client's statistics; a load generator with
    /// hundreds of clients on one core sets this higher than a test does.
    pub stats_interval: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            server_url: "ws://127.0.0.1:8080/ws".to_owned(),
            room: "loadgen".to_owned(),
            name: "loadgen".to_owned(),
            token: None,
            publish_audio: true,
            publish_video: true,
            video_bitrate_bps: 500_000,
            video_fps: 30,
            keyframe_interval: Duration::from_secs(3),
            dtls_max_datagram_size: 1200,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            connect_timeout: Duration::from_secs(30),
            decrypt_every: 1,
            hold_transport: false,
            stats_interval: Duration::from_millis(100),
        }
    }
}

impl ClientConfig {
    /// Checks what the server would reject anyway, before any socket is opened.
    pub fn validate(&self) -> Result<(), crate::ClientError> {
        use crate::ClientError::InvalidConfig;
        if !sluice_signal::protocol::is_valid_room(&self.room) {
            return Err(InvalidConfig("room must be 1-64 bytes of A-Za-z0-9._-"));
        }
        if !sluice_signal::protocol::is_valid_name(&self.name) {
            return Err(InvalidConfig("name must be 1-64 printable characters"));
        }
        if self.publish_video && (self.video_fps == 0 || self.video_fps > 120) {
            return Err(InvalidConfig("video_fps must be 1..=120"));
        }
        if self.publish_video && self.video_bitrate_bps < 8_000 {
            return Err(InvalidConfig("video_bitrate_bps must be at least 8000"));
        }
        if self.stats_interval.is_zero() {
            return Err(InvalidConfig("stats_interval must be positive"));
        }
        if self.decrypt_every == 0 || self.decrypt_every > MAX_DECRYPT_EVERY {
            return Err(InvalidConfig("decrypt_every must be 1..=4096"));
        }
        if self.dtls_max_datagram_size < sluice_dtls::MIN_DATAGRAM_SIZE {
            return Err(InvalidConfig(
                "dtls_max_datagram_size is below the engine minimum",
            ));
        }
        Ok(())
    }
}
