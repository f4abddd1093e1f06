//! What a client measured: per remote participant and kind, and for its own sending.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use sluice_signal::sdp::Kind;

/// Audio or video, ordered and serialisable (for map keys and JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

impl From<Kind> for MediaKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Audio => MediaKind::Audio,
            Kind::Video => MediaKind::Video,
        }
    }
}

/// Number of histogram buckets: 1.1^k microseconds covers 1 us .. about 190 s.
const BUCKETS: usize = 200;

/// A mergeable latency histogram with about 10 % resolution and fixed memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    count: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            count: 0,
            max_us: 0,
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us <= 1 {
        return 0;
    }
    let index = ((us as f64).ln() / 1.1f64.ln()).ceil();
    (index as usize).min(BUCKETS - 1)
}

fn bucket_upper_us(index: usize) -> u64 {
    1.1f64.powi(index as i32).round() as u64
}

impl Histogram {
    /// Records one value.
    pub fn record(&mut self, value: Duration) {
        let us = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        if let Some(slot) = self.counts.get_mut(bucket_of(us)) {
            *slot += 1;
        }
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds another histogram's values.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.count += other.count;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The `q`-quantile (0.0..=1.0) as the upper bound of its bucket, capped at the
    /// maximum seen; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_micros(
                    bucket_upper_us(index).min(self.max_us),
                ));
            }
        }
        Some(Duration::from_micros(self.max_us))
    }
}

/// What one client received from one remote participant's track.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackStats {
    /// The SSRC the server sends it with (latest).
    pub ssrc: u32,
    /// Media packets received (RTX recoveries included), decrypted or counted from
    /// their clear header.
    pub packets: u64,
    /// Of those, packets decrypted (all of them unless sampling is on).
    pub decrypted: u64,
    /// Packets received twice (by sequence number).
    pub duplicates: u64,
    /// Payload bytes of those packets.
    pub bytes: u64,
    /// Packets missing by sequence number, from every packet received (late packets
    /// fill their gap; duplicates do not hide a loss).
    pub lost: i64,
    /// Packets recovered through RTX.
    pub rtx_packets: u64,
    /// Packets whose SRTP authentication failed.
    pub decrypt_failures: u64,
    /// Interarrival jitter (RFC 3550), in milliseconds.
    pub jitter_ms: f64,
    /// Video keyframes seen (first packets of keyframes).
    pub keyframes: u64,
    /// NACKed sequence numbers.
    pub nacked: u64,
    /// PLIs sent because the video started without a keyframe.
    pub plis_sent: u64,
    /// Packets whose payload named another publisher than the SSRC's owner.
    pub misattributed: u64,
    /// Time from the client's start to the first packet.
    pub first_packet_after: Option<Duration>,
    /// One-way delay from the publisher's send stamp.
    pub delay: Histogram,
}

/// What a client sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SentStats {
    /// Audio packets.
    pub audio_packets: u64,
    /// Video packets (RTX excluded).
    pub video_packets: u64,
    /// Video frames.
    pub video_frames: u64,
    /// Video keyframes.
    pub keyframes: u64,
    /// RTP bytes before protection.
    pub bytes: u64,
    /// RTX packets sent in answer to NACKs.
    pub rtx_packets: u64,
    /// NACKed sequence numbers received for our video.
    pub nacks_received: u64,
    /// PLIs and FIRs received for our video.
    pub keyframe_requests: u64,
    /// RTCP packets sent.
    pub rtcp_packets: u64,
}

/// Where the client's connection stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Opening the WebSocket and joining.
    #[default]
    Joining,
    /// Joined; waiting for the offer or running ICE/DTLS.
    Connecting,
    /// Joined and answered, ICE and DTLS held back until
    /// [`Client::release`](crate::Client::release).
    Held,
    /// ICE, DTLS and SRTP are up; media flows.
    Connected,
    /// The session ended after `leave` or `bye`.
    Closed,
    /// Something failed (see [`ClientStats::failure`]).
    Failed,
}

/// A snapshot of everything a client measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientStats {
    /// Where the connection stands.
    pub phase: Phase,
    /// Our participant id, once joined.
    pub participant_id: Option<String>,
    /// The latest offer revision answered.
    pub offer_revision: u64,
    /// Other participants now in the room, id -> name.
    pub participants: BTreeMap<String, String>,
    /// From the first ICE check (sent when the first offer is answered, or at
    /// release) to SRTP keys (ICE + DTLS).
    pub handshake_time: Option<Duration>,
    /// When the client started to join (before opening its WebSocket), on this
    /// process's clock: the start of its time to first media.
    pub join_started_at: Option<Instant>,
    /// When ICE started (the first check), on this process's clock.
    pub transport_started_at: Option<Instant>,
    /// When DTLS completed and SRTP keys were ready.
    pub connected_at: Option<Instant>,
    /// ICE round trip of the first successful check.
    pub ice_rtt: Option<Duration>,
    /// DTLS handshake time as the engine measured it.
    pub dtls_handshake_time: Option<Duration>,
    /// DTLS flights re-sent (timer and repeat-triggered).
    pub dtls_retransmissions: u64,
    /// ICE checks sent (retransmissions included).
    pub ice_checks_sent: u64,
    /// Received media per (remote participant, kind).
    pub remote: BTreeMap<(String, MediaKind), TrackStats>,
    /// Decrypt failures of packets from SSRCs that are not in any offer.
    pub unknown_ssrc_packets: u64,
    /// SRTP authentication failures on all streams.
    pub decrypt_failures: u64,
    /// RTCP packets received.
    pub rtcp_received: u64,
    /// What we sent.
    pub sent: SentStats,
    /// Why the client failed, when it did.
    pub failure: Option<String>,
}

impl ClientStats {
    /// Media packets received from `participant_id`'s track of `kind`.
    pub fn packets_from(&self, participant_id: &str, kind: MediaKind) -> u64 {
        self.remote
            .get(&(participant_id.to_owned(), kind))
            .map_or(0, |t| t.packets)
    }

    /// From the start of the join to the first media packet from anyone (the media
    /// session starts when DTLS connects, and each remote track's first packet is timed
    /// from there). `None` until something arrived.
    pub fn time_to_first_media(&self) -> Option<Duration> {
        let connected = self.connected_at?;
        let first = self
            .remote
            .values()
            .filter_map(|t| t.first_packet_after)
            .min()?;
        Some((connected + first).saturating_duration_since(self.join_started_at?))
    }

    /// Media packets received from everyone.
    pub fn packets_received(&self) -> u64 {
        self.remote.values().map(|t| t.packets).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_ten_percent() {
        let mut h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).unwrap().as_secs_f64() * 1000.0;
        let p99 = h.quantile(0.99).unwrap().as_secs_f64() * 1000.0;
        assert!((50.0..=55.0).contains(&p50), "p50 {p50}");
        assert!((99.0..=100.0).contains(&p99), "p99 {p99}");
        assert_eq!(h.quantile(1.0), Some(Duration::from_millis(100)));
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn merged_histogram_counts_both() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record(Duration::from_millis(1));
        b.record(Duration::from_secs(10));
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert_eq!(a.quantile(1.0), Some(Duration::from_secs(10)));
        assert!(a.quantile(0.5).unwrap() <= Duration::from_micros(1100));
    }
}
