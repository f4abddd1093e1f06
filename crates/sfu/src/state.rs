//! The router's tables: participants, published tracks and their subscriptions.
//!
//! Subscriptions live inside their track, so fan-out walks one `Vec` without lookups;
//! each participant keeps the reverse indexes (its SSRCs as publisher, the SSRCs announced
//! to it as subscriber) needed to route RTCP.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sluice_rtp::{
    Codec, NackGenerator, ReceiveStats, RetransmissionCache, SenderStats, StreamRewriter,
    TwccRecorder, Vp8Descriptor, Vp8PictureRewriter,
};

use crate::allocation::SubscriberLink;
use crate::ids::{Kind, ParticipantId, TrackId};

/// What an SSRC sent by a publisher carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamRole {
    /// The media stream itself.
    Media,
    /// Its RFC 4588 retransmission stream.
    Rtx,
}

/// A publisher SSRC bound to one of its tracks (announced, or learnt from the MID and
/// RID header extensions): which track, which simulcast encoding of it, media or RTX.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SsrcBinding {
    pub(crate) track: TrackId,
    pub(crate) layer: usize,
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
    /// As subscriber: the bandwidth estimate of the path to it and what it is given.
    pub(crate) link: SubscriberLink,
    /// As publisher: when its microphone last carried voice (RFC 6464 audio level), so
    /// the most recent speaker's video is the last to be paused.
    pub(crate) last_voice_at: Option<Instant>,
    /// As publisher: how much of the last second its microphone carried voice.
    pub(crate) speech: crate::speakers::SpeechActivity,
}

impl Participant {
    pub(crate) fn new(
        room: String,
        cname: String,
        twcc_window_packets: usize,
        bwe: &sluice_bwe::BweConfig,
    ) -> Self {
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
            link: SubscriberLink::new(bwe),
            last_voice_at: None,
            speech: Default::default(),
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
    /// PictureID / TL0PICIDX continuity across encodings (VP8 only).
    pub(crate) vp8: Vp8PictureRewriter,
    pub(crate) sender: SenderStats,
    pub(crate) rtx_seq: u16,
    /// The encoding being forwarded; `None` until the first (key)frame, so the decoder
    /// never sees frames it cannot decode.
    pub(crate) layer: Option<usize>,
    /// The encoding this subscriber should get: the switch happens on its next keyframe,
    /// until then `layer` keeps flowing.
    pub(crate) target: usize,
    /// Highest encoding the subscriber asked for (e.g. from the size of its tile).
    pub(crate) max_layer: usize,
    /// Highest encoding its bandwidth estimate allows (set by the allocation).
    pub(crate) bandwidth_layer: usize,
    /// When the last packet went to it, to keep timestamps in step with the clock
    /// across a pause.
    pub(crate) last_forwarded_at: Option<Instant>,
    /// Nothing is forwarded while paused (the allocation found no room for the track).
    pub(crate) paused: bool,
    /// When it was last paused.
    pub(crate) paused_since: Option<Instant>,
    /// Since when its lowest encoding has not fitted its subscriber's estimate.
    pub(crate) short_since: Option<Instant>,
    /// When its bandwidth cap last changed (for the pace of moving up).
    pub(crate) upgraded_at: Option<Instant>,
    /// Highest VP8 temporal layer its bandwidth allows (set by the allocation;
    /// [`ALL_TEMPORAL_LAYERS`] when not limited).
    pub(crate) temporal_cap: u8,
    /// Highest temporal layer forwarded now: follows `temporal_cap` at picture starts,
    /// down at once, up only where the decoder can follow (see [`Subscription::passes_temporal`]).
    pub(crate) temporal: u8,
    /// Its answer accepted RED on this m-line (audio).
    pub(crate) red_accepted: bool,
    /// Its answer accepted RED and ULPFEC on this m-line (video): FEC may be added.
    pub(crate) fec_accepted: bool,
    /// Its answer accepted the RTX payload type of RED: a packet sent in RED is
    /// retransmitted in RED.
    pub(crate) red_rtx_accepted: bool,
    /// Media packets sent in RED since the last FEC packet of this stream.
    pub(crate) fec_pending: u8,
    /// The longest of them (for the expected size of the FEC packet).
    pub(crate) fec_longest: usize,
    /// Not forwarded: the room has more cameras than last-N and this one's publisher is
    /// not among the most recent speakers.
    pub(crate) last_n_excluded: bool,
}

/// A temporal cap that lets every temporal layer through.
pub(crate) const ALL_TEMPORAL_LAYERS: u8 = u8::MAX;

impl Subscription {
    /// Whether a packet of encoding `layer` is forwarded to this subscriber, switching to
    /// it when it is the target and `switch_point` (a keyframe, or any packet of a track
    /// without keyframe gating) arrives. Returns false for packets to skip.
    pub(crate) fn accepts(
        &mut self,
        layer: usize,
        switch_point: bool,
        ssrc: u32,
        now: Instant,
        clock_rate_hz: u32,
    ) -> bool {
        if self.paused || self.last_n_excluded {
            return false;
        }
        if self.layer == Some(layer) {
            return true;
        }
        if self.target != layer || !switch_point {
            return false;
        }
        // A switch between encodings continues one frame on; after a pause the timestamps
        // advance by the time that passed, so the receiver's playout stays in step.
        match (self.layer, self.last_forwarded_at) {
            (None, Some(last)) => {
                let elapsed = now.saturating_duration_since(last);
                let ticks = elapsed
                    .as_micros()
                    .saturating_mul(u128::from(clock_rate_hz))
                    / 1_000_000;
                self.rewriter
                    .switch_source_with_gap(ssrc, u32::try_from(ticks).unwrap_or(u32::MAX / 2));
            }
            _ => self.rewriter.switch_source(ssrc),
        }
        self.vp8.switch_source();
        self.layer = Some(layer);
        true
    }

    /// Whether a VP8 packet with descriptor `d` passes this subscriber's temporal cap.
    ///
    /// The cap moves only where a picture starts, so a picture is never cut in two. Down
    /// at once: the pictures of the upper layers are simply no longer referenced. Up only
    /// at a base-layer picture (everything after it references nothing older than it) or at
    /// a layer-sync picture (it references only the base layer), so every picture
    /// forwarded has its references.
    pub(crate) fn passes_temporal(&mut self, d: &Vp8Descriptor) -> bool {
        if d.starts_picture() && self.temporal != self.temporal_cap {
            if self.temporal_cap < self.temporal || d.temporal_id == 0 {
                self.temporal = self.temporal_cap;
            } else if d.layer_sync && d.temporal_id <= self.temporal_cap {
                self.temporal = self.temporal.max(d.temporal_id);
            }
        }
        d.temporal_id <= self.temporal
    }

    /// The highest encoding it may get: what its tile asked for, within its bandwidth.
    pub(crate) fn layer_cap(&self) -> usize {
        self.max_layer.min(self.bandwidth_layer)
    }
}

/// One encoding of a published track: a plain track has one, a simulcast track one per
/// RID (lowest quality first). Everything that belongs to an SSRC lives here: receive
/// statistics and NACKs toward the publisher, the SR mapping, keyframe requests and the
/// retransmission cache.
#[derive(Debug)]
pub(crate) struct Layer {
    /// The RTP stream id (`a=rid`) of the encoding; `None` for a plain track.
    pub(crate) rid: Option<String>,
    /// The media SSRC being forwarded.
    pub(crate) ssrc: Option<u32>,
    pub(crate) rtx_ssrc: Option<u32>,
    pub(crate) recv: Option<ReceiveStats>,
    pub(crate) nack: Option<NackGenerator>,
    pub(crate) sender_report: Option<SenderReportMapping>,
    pub(crate) keyframe: KeyframeRequest,
    /// Arrival of the newest packet of `ssrc`: another SSRC for this encoding may only
    /// take over once it has been silent for a while, so a flood cannot steal a live
    /// track; also tells whether the publisher still sends the encoding.
    pub(crate) last_packet_at: Option<Instant>,
    /// The publisher's packets as received (plaintext, before any rewrite), keyed by their
    /// sequence number, shared by every subscription: a NACK is answered by rewriting the
    /// cached packet again for the subscriber, so memory does not grow with the number of
    /// subscribers. `None` when the cache size is 0.
    pub(crate) cache: Option<RetransmissionCache>,
    /// Received bitrate, measured over windows of [`BITRATE_WINDOW`].
    pub(crate) bitrate: BitrateMeter,
    /// The same per VP8 temporal layer (TID 0 to 3), for an allocation that lowers the
    /// frame rate before it pauses a track.
    pub(crate) temporal_bitrate: [BitrateMeter; TEMPORAL_LAYERS],
}

/// Temporal layers a VP8 descriptor can name (TID is two bits).
pub(crate) const TEMPORAL_LAYERS: usize = 4;

/// Received bits per second, measured over fixed windows: cheap enough for every packet.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BitrateMeter {
    window_start: Option<Instant>,
    window_bytes: u64,
    bps: u64,
}

/// Length of one bitrate measurement window.
pub(crate) const BITRATE_WINDOW: Duration = Duration::from_millis(500);

impl BitrateMeter {
    pub(crate) fn on_packet(&mut self, now: Instant, bytes: usize) {
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= BITRATE_WINDOW {
            let bits = u128::from(self.window_bytes).saturating_mul(8_000_000);
            self.bps = u64::try_from(bits / elapsed.as_micros().max(1)).unwrap_or(u64::MAX);
            self.window_start = Some(now);
            self.window_bytes = 0;
        }
        self.window_bytes = self.window_bytes.saturating_add(bytes as u64);
    }

    /// The rate of the last complete window.
    pub(crate) fn bps(&self) -> u64 {
        self.bps
    }
}

impl Layer {
    pub(crate) fn new(rid: Option<String>, nack: Option<sluice_rtp::NackConfig>) -> Self {
        Self {
            rid,
            ssrc: None,
            rtx_ssrc: None,
            recv: None,
            nack: nack.map(NackGenerator::new),
            sender_report: None,
            keyframe: KeyframeRequest::default(),
            last_packet_at: None,
            cache: None,
            bitrate: BitrateMeter::default(),
            temporal_bitrate: [BitrateMeter::default(); TEMPORAL_LAYERS],
        }
    }

    /// Whether the publisher sent this encoding within `silence`: browsers stop sending
    /// their top encodings when their own uplink or CPU cannot carry them.
    pub(crate) fn is_live(&self, now: Instant, silence: Duration) -> bool {
        self.last_packet_at
            .is_some_and(|t| now.saturating_duration_since(t) < silence)
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

#[derive(Debug)]
pub(crate) struct Track {
    pub(crate) publisher: ParticipantId,
    /// The publisher's CNAME, for the SDES of SRs to subscribers.
    pub(crate) cname: String,
    pub(crate) mid: String,
    pub(crate) kind: Kind,
    /// Learnt from payload types; `Other` until a known one arrives.
    pub(crate) codec: Codec,
    /// The encodings, lowest quality first; never empty.
    pub(crate) layers: Vec<Layer>,
    pub(crate) subscriptions: Vec<Subscription>,
    /// Audio: the last Opus frames, repeated in RED packets to lossy subscribers.
    pub(crate) recent_frames: RecentFrames,
    /// Forwarded whoever speaks (a screen share): last-N leaves it alone.
    pub(crate) last_n_exempt: bool,
}

/// The last few Opus frames of an audio track, newest last, in buffers reused from
/// frame to frame.
#[derive(Debug, Default)]
pub(crate) struct RecentFrames {
    frames: [RecentFrame; MAX_RED_DISTANCE],
    /// Index of the newest frame in `frames`.
    newest: usize,
}

#[derive(Debug, Default)]
struct RecentFrame {
    /// Sequence number and timestamp; `None` while the slot is empty.
    position: Option<(u16, u32)>,
    payload: Vec<u8>,
}

/// Most earlier frames a RED packet repeats.
pub(crate) const MAX_RED_DISTANCE: usize = 2;
/// An Opus frame larger than this is not kept for repetition (a RED block holds at most
/// 1023 bytes, and a frame that large is not speech).
const MAX_RED_FRAME_BYTES: usize = 512;

impl RecentFrames {
    /// Keeps the frame just forwarded.
    pub(crate) fn push(&mut self, seq: u16, timestamp: u32, payload: &[u8]) {
        if payload.len() > MAX_RED_FRAME_BYTES {
            return;
        }
        self.newest = (self.newest + 1) % MAX_RED_DISTANCE;
        if let Some(slot) = self.frames.get_mut(self.newest) {
            slot.position = Some((seq, timestamp));
            slot.payload.clear();
            slot.payload.extend_from_slice(payload);
        }
    }

    /// The frames to repeat before the frame `seq`: up to `distance` of those just
    /// before it (by sequence number), oldest first.
    pub(crate) fn before(
        &self,
        seq: u16,
        distance: usize,
    ) -> impl Iterator<Item = sluice_rtp::red::RedundantBlock<'_>> + Clone + '_ {
        (1..=distance.min(MAX_RED_DISTANCE))
            .rev()
            .filter_map(move |back| {
                let wanted = seq.wrapping_sub(back as u16);
                self.frames
                    .iter()
                    .find(|f| f.position.is_some_and(|(s, _)| s == wanted))
                    .and_then(|f| {
                        f.position
                            .map(|(_, timestamp)| sluice_rtp::red::RedundantBlock {
                                timestamp,
                                payload: &f.payload,
                            })
                    })
            })
    }
}

/// How long the current media SSRC of a track must be silent before another SSRC bound
/// to the same MID takes over.
pub(crate) const SSRC_TAKEOVER_SILENCE: Duration = Duration::from_secs(1);

impl Track {
    /// Makes `ssrc` the forwarded media stream of encoding `layer`: fresh receive
    /// statistics and loss tracking; subscribers fed from that encoding wait for its next
    /// keyframe (requested) and are then switched, continuing their output numbering.
    pub(crate) fn set_media_ssrc(
        &mut self,
        layer: usize,
        ssrc: u32,
        nack: Option<sluice_rtp::NackConfig>,
    ) {
        let video = self.kind == Kind::Video;
        let Some(l) = self.layers.get_mut(layer) else {
            return;
        };
        if l.ssrc == Some(ssrc) && l.recv.is_some() {
            return;
        }
        l.ssrc = Some(ssrc);
        l.recv = Some(ReceiveStats::new(ssrc));
        l.nack = nack.map(NackGenerator::new);
        l.sender_report = None;
        l.last_packet_at = None;
        if let Some(cache) = l.cache.as_mut() {
            // sequence numbers of the new SSRC start over
            cache.clear();
        }
        let mut wanted = false;
        for sub in &mut self.subscriptions {
            if sub.layer == Some(layer) {
                // the same encoding under a new SSRC: keep numbering on from the old one
                sub.layer = None;
                sub.target = layer;
            }
            wanted |= sub.target == layer;
        }
        if video && wanted {
            self.request_keyframe(layer);
        }
    }

    /// Records that a keyframe of encoding `layer` is wanted; the PLI goes out within the
    /// throttle.
    pub(crate) fn request_keyframe(&mut self, layer: usize) {
        if self.kind != Kind::Video {
            return;
        }
        if let Some(l) = self.layers.get_mut(layer) {
            if !l.keyframe.pending {
                l.keyframe.pending = true;
                l.keyframe.attempts = 0;
            }
        }
    }

    /// The best encoding for a subscriber that asked for at most `max_layer`: the highest
    /// live one up to it, else the lowest live one above it (a picture beats none), else
    /// `max_layer` itself until something is sent.
    pub(crate) fn best_layer(&self, max_layer: usize, now: Instant, silence: Duration) -> usize {
        let live = |i: &usize| self.layers.get(*i).is_some_and(|l| l.is_live(now, silence));
        let top = self.layers.len().saturating_sub(1);
        let max_layer = max_layer.min(top);
        (0..=max_layer)
            .rev()
            .find(live)
            .or_else(|| (max_layer + 1..=top).find(live))
            .unwrap_or(max_layer)
    }

    /// Chooses one subscription's target encoding again from what is live and its cap;
    /// a new target gets a keyframe request, the switch itself happens when that
    /// keyframe arrives.
    pub(crate) fn retarget_subscriber(
        &mut self,
        subscriber: ParticipantId,
        now: Instant,
        silence: Duration,
    ) {
        if self.layers.len() < 2 {
            return;
        }
        let Some(index) = self
            .subscriptions
            .iter()
            .position(|s| s.subscriber == subscriber)
        else {
            return;
        };
        let Some(cap) = self.subscriptions.get(index).map(Subscription::layer_cap) else {
            return;
        };
        let best = self.best_layer(cap, now, silence);
        let Some(sub) = self.subscriptions.get_mut(index) else {
            return;
        };
        if sub.target != best {
            sub.target = best;
            if sub.layer != Some(best) {
                self.request_keyframe(best);
            }
        }
    }

    /// The encoding currently forwarded to `subscriber` (or about to be).
    pub(crate) fn layer_of(&self, subscriber: ParticipantId) -> Option<usize> {
        self.subscriptions
            .iter()
            .find(|s| s.subscriber == subscriber)
            .map(|s| s.layer.unwrap_or(s.target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription() -> Subscription {
        Subscription {
            subscriber: ParticipantId(2),
            ssrc: 1,
            rtx_ssrc: None,
            mid: None,
            payload_types: Vec::new(),
            rewriter: StreamRewriter::new(1, 90_000),
            vp8: Vp8PictureRewriter::new(),
            sender: SenderStats::new(90_000),
            rtx_seq: 0,
            layer: Some(0),
            target: 0,
            max_layer: 0,
            bandwidth_layer: 0,
            last_forwarded_at: None,
            paused: false,
            paused_since: None,
            short_since: None,
            upgraded_at: None,
            temporal_cap: ALL_TEMPORAL_LAYERS,
            temporal: ALL_TEMPORAL_LAYERS,
            red_accepted: false,
            fec_accepted: false,
            red_rtx_accepted: false,
            fec_pending: 0,
            fec_longest: 0,
            last_n_excluded: false,
        }
    }

    fn picture(tid: u8, sync: bool, start: bool) -> Vp8Descriptor {
        let b0 = 0x80 | if start { 0x10 } else { 0 };
        let t = (tid << 6) | if sync { 0x20 } else { 0 };
        Vp8Descriptor::parse(&[b0, 0x20, t, 0]).unwrap()
    }

    #[test]
    fn the_temporal_cap_moves_down_at_a_picture_start_and_up_only_where_the_decoder_can_follow() {
        let mut sub = subscription();
        assert!(sub.passes_temporal(&picture(2, false, true)));
        sub.temporal_cap = 0;
        // the rest of a picture already begun is not cut
        assert!(sub.passes_temporal(&picture(2, false, false)));
        assert!(
            !sub.passes_temporal(&picture(2, false, true)),
            "down at once"
        );
        assert!(!sub.passes_temporal(&picture(1, false, true)));
        assert!(sub.passes_temporal(&picture(0, false, true)));
        sub.temporal_cap = ALL_TEMPORAL_LAYERS;
        // a layer-2 picture without sync may reference a layer-1 picture left out
        assert!(!sub.passes_temporal(&picture(2, false, true)));
        // a layer-1 sync picture depends on the base layer only: layer 1 from here
        assert!(sub.passes_temporal(&picture(1, true, true)));
        assert!(!sub.passes_temporal(&picture(2, false, true)));
        // a base-layer picture: everything after it can be decoded
        assert!(sub.passes_temporal(&picture(0, false, true)));
        assert!(sub.passes_temporal(&picture(2, false, true)));
    }
}
