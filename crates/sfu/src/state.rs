//! The router's tables: participants, published tracks and their subscriptions.
//!
//! Subscriptions live inside their track, so fan-out walks one `Vec` without lookups;
//! each participant keeps the reverse indexes (its SSRCs as publisher, the SSRCs announced
//! to it as subscriber) needed to route RTCP.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sluice_rtp::{
    Codec, NackGenerator, ReceiveStats, RetransmissionCache, SenderStats, StreamRewriter,
    TwccRecorder,
};

use crate::ids::{Kind, ParticipantId, TrackId};

/// What an SSRC sent by a publisher carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamRole {
    /// The media stream itself.
    Media,
    /// Its RFC 4588 retransmission stream.
    Rtx,
}

/// A publisher SSRC bound to one of its tracks (announced, or learnt from the MID).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SsrcBinding {
    pub(crate) track: TrackId,
    pub(crate) role: StreamRole,
}

/// An SSRC the router announced to a subscriber, for routing its feedback.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AnnouncedSsrc {
    pub(crate) track: TrackId,
    pub(crate) role: StreamRole,
}

#[derive(Debug)]
pub(crate) struct Participant {
    pub(crate) room: String,
    pub(crate) cname: String,
    pub(crate) published: Vec<TrackId>,
    pub(crate) subscribed: Vec<TrackId>,
    /// SSRCs this participant sends, bounded by `max_ssrcs_per_participant`.
    pub(crate) ssrcs: HashMap<u32, SsrcBinding>,
    /// SSRCs announced to this participant as subscriber (media and RTX).
    pub(crate) announced: HashMap<u32, AnnouncedSsrc>,
    /// Arrivals of its packets by transport-wide sequence number (one transport per
    /// participant: BUNDLE).
    pub(crate) twcc: TwccRecorder,
    /// Transport-wide sequence number of the next packet sent to it.
    pub(crate) next_transport_seq: u16,
    /// Next RR compound to it as publisher; set once it sent media.
    pub(crate) next_rr_at: Option<Instant>,
    /// Next SR compounds to it as subscriber; set once media was forwarded to it.
    pub(crate) next_sr_at: Option<Instant>,
    /// Next transport-cc feedback to it; set while arrivals are unreported.
    pub(crate) next_twcc_at: Option<Instant>,
    /// When the last transport-cc feedback went out, so feedback keeps a steady cadence.
    pub(crate) last_twcc_at: Option<Instant>,
}

impl Participant {
    pub(crate) fn new(room: String, cname: String, twcc_window_packets: usize) -> Self {
        Self {
            room,
            cname,
            published: Vec::new(),
            subscribed: Vec::new(),
            ssrcs: HashMap::new(),
            announced: HashMap::new(),
            twcc: TwccRecorder::new(twcc_window_packets),
            next_transport_seq: 0,
            next_rr_at: None,
            next_sr_at: None,
            next_twcc_at: None,
            last_twcc_at: None,
        }
    }
}

/// The (NTP, RTP) pair of a publisher's last SR, for lip-sync-preserving SRs downstream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SenderReportMapping {
    pub(crate) ssrc: u32,
    pub(crate) ntp: u64,
    pub(crate) rtp_timestamp: u32,
    pub(crate) arrival: Instant,
}

/// Throttled keyframe requests for one video track.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KeyframeRequest {
    /// Someone needs a keyframe that has not arrived yet.
    pub(crate) pending: bool,
    pub(crate) last_sent_at: Option<Instant>,
    /// PLIs sent for the current request.
    pub(crate) attempts: u32,
}

#[derive(Debug)]
pub(crate) struct Subscription {
    pub(crate) subscriber: ParticipantId,
    pub(crate) ssrc: u32,
    pub(crate) rtx_ssrc: Option<u32>,
    pub(crate) mid: Option<String>,
    /// Accepted media payload types (empty: all).
    pub(crate) payload_types: Vec<u8>,
    pub(crate) rewriter: StreamRewriter,
    pub(crate) sender: SenderStats,
    pub(crate) rtx_seq: u16,
    /// Video only: nothing is forwarded until a keyframe starts, so the decoder never sees
    /// frames it cannot decode.
    pub(crate) awaiting_keyframe: bool,
}

#[derive(Debug)]
pub(crate) struct Track {
    pub(crate) publisher: ParticipantId,
    /// The publisher's CNAME, for the SDES of SRs to subscribers.
    pub(crate) cname: String,
    pub(crate) mid: String,
    pub(crate) kind: Kind,
    /// The media SSRC being forwarded.
    pub(crate) ssrc: Option<u32>,
    pub(crate) rtx_ssrc: Option<u32>,
    /// Learnt from payload types; `Other` until a known one arrives.
    pub(crate) codec: Codec,
    pub(crate) recv: Option<ReceiveStats>,
    pub(crate) nack: Option<NackGenerator>,
    pub(crate) sender_report: Option<SenderReportMapping>,
    pub(crate) keyframe: KeyframeRequest,
    /// Arrival of the newest packet of `ssrc`: another SSRC with this MID may only take
    /// over once it has been silent for a while, so a flood cannot steal a live track.
    pub(crate) last_packet_at: Option<Instant>,
    pub(crate) subscriptions: Vec<Subscription>,
    /// The publisher's packets as received (plaintext, before any rewrite), keyed by their
    /// sequence number, shared by every subscription: a NACK is answered by rewriting the
    /// cached packet again for the subscriber, so memory does not grow with the number of
    /// subscribers. `None` when the cache size is 0.
    pub(crate) cache: Option<RetransmissionCache>,
}

/// How long the current media SSRC of a track must be silent before another SSRC bound
/// to the same MID takes over.
pub(crate) const SSRC_TAKEOVER_SILENCE: Duration = Duration::from_secs(1);

impl Track {
    /// Makes `ssrc` the forwarded media stream: fresh receive statistics and loss
    /// tracking, every subscriber's rewriter switched (continuing its output numbering),
    /// video subscribers wait for a keyframe, which is requested.
    pub(crate) fn set_media_ssrc(&mut self, ssrc: u32, nack: Option<sluice_rtp::NackConfig>) {
        if self.ssrc == Some(ssrc) && self.recv.is_some() {
            return;
        }
        self.ssrc = Some(ssrc);
        self.recv = Some(ReceiveStats::new(ssrc));
        self.nack = nack.map(NackGenerator::new);
        self.sender_report = None;
        self.last_packet_at = None;
        if let Some(cache) = self.cache.as_mut() {
            // sequence numbers of the new SSRC start over
            cache.clear();
        }
        for sub in &mut self.subscriptions {
            sub.rewriter.switch_source(ssrc);
            if self.kind == Kind::Video {
                sub.awaiting_keyframe = true;
            }
        }
        if self.kind == Kind::Video && !self.subscriptions.is_empty() {
            self.request_keyframe();
        }
    }

    /// Records that a keyframe is wanted; the PLI goes out within the throttle.
    pub(crate) fn request_keyframe(&mut self) {
        if self.kind == Kind::Video && !self.keyframe.pending {
            self.keyframe.pending = true;
            self.keyframe.attempts = 0;
        }
    }

    /// When a PLI for a pending request may go out (`now_if_unsent` before the first one).
    pub(crate) fn keyframe_due(
        &self,
        interval: Duration,
        now_if_unsent: Instant,
    ) -> Option<Instant> {
        if !self.keyframe.pending || self.ssrc.is_none() {
            return None;
        }
        Some(match self.keyframe.last_sent_at {
            Some(t) => t.checked_add(interval).unwrap_or(t),
            None => now_if_unsent,
        })
    }
}
