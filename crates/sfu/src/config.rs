//! Router configuration: every limit and interval the router uses, with documented defaults.

use std::time::Duration;

use sluice_rtp::NackConfig;

/// Loss recovery towards publishers (we NACK what they lost on the way to us).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackSettings {
    /// Send NACKs to publishers for lost video packets. Subscribers' NACKs are answered
    /// from the retransmission cache either way.
    pub enabled: bool,
    /// Timing and bounds of the per-track NACK generator.
    pub generator: NackConfig,
}

impl Default for NackSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            generator: NackConfig::default(),
        }
    }
}

/// Limits and intervals of one [`Router`](crate::Router).
///
/// Every table the router keeps is bounded by one of these, so a misbehaving peer can
/// only exhaust its own share.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterConfig {
    /// SSRCs a participant may use (explicit and learnt, media and RTX). Packets with a
    /// new SSRC beyond this are dropped; already bound SSRCs are unaffected.
    pub max_ssrcs_per_participant: usize,
    /// Minimum time between two PLIs sent to one publisher track. Requests arriving
    /// inside the window are merged into the next PLI, or dropped if a keyframe arrives
    /// first.
    pub keyframe_request_interval: Duration,
    /// PLIs sent for one request before giving up when no keyframe is recognised (e.g. an
    /// unknown codec); a new request starts over.
    pub max_keyframe_request_attempts: u32,
    /// Mean interval of RRs to publishers and SRs to subscribers; each interval is drawn
    /// from 0.5x..1.5x of this (RFC 3550 6.3.1) by a seeded generator.
    pub rtcp_report_interval: Duration,
    /// Seed of the deterministic report-interval jitter.
    pub rtcp_jitter_seed: u64,
    /// Interval between transport-wide congestion control feedbacks to a publisher.
    pub twcc_feedback_interval: Duration,
    /// Transport sequence numbers remembered per participant between two feedbacks.
    pub twcc_window_packets: usize,
    /// NACK generation towards publishers.
    pub nack: NackSettings,
    /// Packets kept per published video track to answer subscribers' NACKs (RFC 4588 or
    /// plain resend). One cache per track is shared by all its subscribers.
    pub retransmission_cache_packets: usize,
    /// Byte budget (the most memory held) of each track's retransmission cache.
    pub retransmission_cache_bytes: usize,
    /// How long a sent packet stays resendable within that budget: the cache grows only
    /// as far as the track's bitrate over this window needs, so memory follows bitrate.
    pub retransmission_window: Duration,
    /// Packets kept per published audio track (0: audio NACKs are not answered).
    pub audio_retransmission_cache_packets: usize,
    /// Most packets resent for one incoming NACK, so a NACK cannot amplify into a flood.
    pub max_retransmissions_per_nack: usize,
    /// Participants in one room.
    pub max_participants_per_room: usize,
    /// Participants on this router (all rooms).
    pub max_participants: usize,
    /// Tracks one participant may publish.
    pub max_tracks_per_participant: usize,
    /// Tracks one participant may subscribe to.
    pub max_subscriptions_per_participant: usize,
    /// Longest room name accepted, in bytes.
    pub max_room_name_bytes: usize,
    /// Outputs queued before the oldest is dropped (the worker did not drain).
    pub max_queued_outputs: usize,
    /// Buffers kept for reuse after [`Router::recycle`](crate::Router::recycle).
    pub max_pooled_buffers: usize,
    /// SSRC the router uses as sender of its own RTCP (RR, NACK, PLI, TWCC feedback).
    pub rtcp_sender_ssrc: u32,
    /// CNAME in the SDES of the router's own RTCP.
    pub cname: String,
    /// A simulcast encoding the publisher has not sent for this long counts as stopped
    /// (browsers drop their top encodings when their uplink or CPU cannot carry them);
    /// its subscribers move to the best encoding still sent.
    pub layer_silence: Duration,
    /// How often each subscriber's encodings are chosen again from what is live, what
    /// it asked for and what its bandwidth estimate allows.
    pub layer_selection_interval: Duration,
    /// The per-subscriber bandwidth estimator.
    pub bwe: sluice_bwe::BweConfig,
    /// Fit what each subscriber receives to its bandwidth estimate (encodings, pauses,
    /// probes). Off: only the tile sizes it reports choose encodings.
    pub bandwidth_allocation: bool,
    /// A publisher that sends one encoding is asked (REMB) for what its subscribers'
    /// estimates carry, never less than this: one slow subscriber should not take the
    /// picture from everyone else below a watchable floor.
    pub publisher_bitrate_floor_bps: u64,
    /// Send a subscriber its audio as RED (each packet repeating the previous one or two
    /// Opus frames) while the loss its transport-cc feedback reports is at least this
    /// share, on m-lines whose answer accepted RED. `Some(0.0)`: always where accepted;
    /// `None`: never.
    pub audio_red_loss_threshold: Option<f64>,
    /// Add ULPFEC parity packets (RFC 5109, inside RED) to a subscriber's video while the
    /// loss its transport-cc feedback reports is at least this share, on m-lines whose
    /// answer accepted RED and ULPFEC: a lost packet is rebuilt at once instead of a
    /// round trip later. `None`: never. See `fec` for the rate and the hysteresis.
    pub video_fec_loss_threshold: Option<f64>,
    /// In a room with more camera publishers than this, each subscriber receives the
    /// cameras of this many most recent speakers only (0: every camera).
    pub last_n: usize,
    /// In a room with more microphones than this, each subscriber receives the audio of
    /// this many most recent speakers only (0: every microphone). Large rooms, where
    /// hundreds of silent microphones would otherwise each cost every subscriber a
    /// stream of comfort noise.
    pub audio_last_n: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            max_ssrcs_per_participant: 32,
            keyframe_request_interval: Duration::from_millis(500),
            max_keyframe_request_attempts: 6,
            rtcp_report_interval: Duration::from_secs(1),
            rtcp_jitter_seed: 0x5EED_5EED,
            twcc_feedback_interval: Duration::from_millis(50),
            // feedback leaves every 50 ms: 512 packets there is 10,000 packets/s
            twcc_window_packets: 512,
            nack: NackSettings::default(),
            // NACKs come within a round trip or two; libwebrtc's own sender keeps
            // max(1 s, 3 x RTT). 1 s of 500 kbit/s video is about 64 KiB of the budget,
            // which holds 2 s of it or 0.2 s of 5 Mbit/s.
            // 256 packets: the byte budget below holds about 110 full-size packets
            retransmission_cache_packets: 256,
            retransmission_cache_bytes: 128 * 1024,
            retransmission_window: Duration::from_secs(1),
            audio_retransmission_cache_packets: 0,
            max_retransmissions_per_nack: 64,
            max_participants_per_room: 64,
            max_participants: 1024,
            max_tracks_per_participant: 8,
            max_subscriptions_per_participant: 512,
            max_room_name_bytes: 256,
            max_queued_outputs: 8192,
            max_pooled_buffers: 1024,
            rtcp_sender_ssrc: 1,
            cname: "sluice".to_owned(),
            layer_silence: Duration::from_millis(1500),
            layer_selection_interval: Duration::from_millis(500),
            bwe: sluice_bwe::BweConfig {
                // feedback comes every 50-100 ms: 1024 packets is a second at 1000/s
                history_packets: 1024,
                ..sluice_bwe::BweConfig::default()
            },
            bandwidth_allocation: true,
            publisher_bitrate_floor_bps: 150_000,
            audio_red_loss_threshold: Some(0.02),
            // measured: it halves a lossy subscriber's video freezes (docs/congestion.md)
            video_fec_loss_threshold: Some(0.03),
            last_n: 0,
            audio_last_n: 0,
        }
    }
}
