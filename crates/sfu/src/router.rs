//! The `Router` and its control plane: rooms, participants, publications, subscriptions.
//! The media path lives in `forward.rs` (RTP), `feedback.rs` (RTCP in) and `reports.rs`
//! (timers: RTCP out).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_rtp::{
    Codec, ReceiveStats, RetransmissionCache, SenderStats, StreamRewriter, Vp8PictureRewriter,
};
use tracing::debug;

use crate::config::RouterConfig;
use crate::error::RouterError;
use crate::ids::{Kind, ParticipantId, SubscriptionSpec, TrackId, TrackSpec};
use crate::output::{Outbox, Output};
use crate::state::{
    AnnouncedSsrc, Layer, Participant, SsrcBinding, StreamRole, Subscription, Track,
};
use crate::stats::RouterStats;

/// Longest CNAME kept (the SDES item length field is one byte).
const MAX_CNAME_BYTES: usize = 255;
/// Longest MID or RID accepted (RFC 8843: it must fit a one-byte header extension).
const MAX_MID_BYTES: usize = 16;
/// Most encodings of one simulcast track (what browsers send: 3).
pub(crate) const MAX_SIMULCAST_LAYERS: usize = 3;

/// The media router of one worker: every room placed on that worker.
///
/// Feed it plaintext RTP/RTCP with [`handle_rtp`](Self::handle_rtp) and
/// [`handle_rtcp`](Self::handle_rtcp), let time pass with
/// [`handle_timeout`](Self::handle_timeout), and drain [`poll_output`](Self::poll_output)
/// after each call; see the crate documentation for the loop.
#[derive(Debug)]
pub struct Router {
    pub(crate) config: RouterConfig,
    pub(crate) participants: BTreeMap<ParticipantId, Participant>,
    pub(crate) tracks: BTreeMap<TrackId, Track>,
    pub(crate) rooms: BTreeMap<String, Vec<ParticipantId>>,
    next_track_id: u64,
    pub(crate) outbox: Outbox,
    pub(crate) stats: RouterStats,
    /// The first instant the router saw; abs-send-time counts from it.
    pub(crate) epoch: Option<Instant>,
    /// The latest instant the router saw, used as "as soon as possible" for work queued
    /// by calls that take no time (e.g. a keyframe request from `subscribe`).
    pub(crate) last_now: Option<Instant>,
    pub(crate) jitter: Jitter,
    /// Reused buffers: an unwrapped RTX packet, NACKed sequence numbers, report blocks.
    pub(crate) scratch_packet: Vec<u8>,
    pub(crate) scratch_seqs: Vec<u16>,
    pub(crate) scratch_blocks: Vec<sluice_rtp::ReportBlock>,
    /// The earliest timer, or a lower bound of it; `None` when unknown. Finding it walks
    /// every participant and track, so it is computed only after a change that can move
    /// any timer (control plane, RTCP, timeouts); a forwarded RTP packet touches only its
    /// publisher, its track and that track's subscribers, and lowers the bound from them
    /// alone, so the packet path does not grow with the size of the worker. A bound that
    /// is too early costs one empty `handle_timeout`, which recomputes it.
    pub(crate) deadline: Cell<Option<Option<Instant>>>,
    /// When subscribers' encodings are chosen again and their estimates allocated; set
    /// while video flows.
    pub(crate) next_layer_selection_at: Option<Instant>,
    /// Events for signalling, bounded by [`MAX_QUEUED_EVENTS`] (oldest dropped).
    pub(crate) events: std::collections::VecDeque<crate::output::RouterEvent>,
    /// Speaking order and dominant speaker per room.
    pub(crate) speakers: BTreeMap<String, crate::speakers::RoomSpeakers>,
}

/// Events kept for signalling between two drains.
pub(crate) const MAX_QUEUED_EVENTS: usize = 1024;

impl Router {
    /// An empty router.
    pub fn new(config: RouterConfig) -> Self {
        let outbox = Outbox::new(config.max_queued_outputs, config.max_pooled_buffers);
        let jitter = Jitter::new(config.rtcp_jitter_seed);
        Self {
            config,
            participants: BTreeMap::new(),
            tracks: BTreeMap::new(),
            rooms: BTreeMap::new(),
            next_track_id: 1,
            outbox,
            stats: RouterStats::default(),
            epoch: None,
            last_now: None,
            jitter,
            scratch_packet: Vec::new(),
            scratch_seqs: Vec::new(),
            scratch_blocks: Vec::new(),
            deadline: Cell::new(None),
            next_layer_selection_at: None,
            speakers: BTreeMap::new(),
            events: std::collections::VecDeque::new(),
        }
    }

    /// Heap memory held by the retransmission caches of every track (one per published
    /// track, shared by its subscribers), for memory accounting.
    pub fn retransmission_cache_bytes(&self) -> usize {
        self.tracks
            .values()
            .flat_map(|t| &t.layers)
            .filter_map(|l| l.cache.as_ref())
            .map(RetransmissionCache::heap_bytes)
            .sum()
    }

    /// The configuration the router was created with.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// Places a participant in `room` (created on first use). Its CNAME, used in the SDES
    /// of SRs to its subscribers, defaults to its id in decimal; see
    /// [`set_cname`](Self::set_cname).
    pub fn add_participant(&mut self, room: &str, id: ParticipantId) -> Result<(), RouterError> {
        self.deadline.set(None);
        if self.participants.contains_key(&id) {
            return Err(RouterError::ParticipantExists(id));
        }
        if room.is_empty() || room.len() > self.config.max_room_name_bytes {
            return Err(RouterError::BadRoomName {
                len: room.len(),
                max: self.config.max_room_name_bytes,
            });
        }
        if self.participants.len() >= self.config.max_participants {
            return Err(RouterError::RouterFull {
                max: self.config.max_participants,
            });
        }
        let members = self.rooms.get(room).map_or(0, Vec::len);
        if members >= self.config.max_participants_per_room {
            return Err(RouterError::RoomFull {
                max: self.config.max_participants_per_room,
            });
        }
        self.rooms.entry(room.to_owned()).or_default().push(id);
        self.participants.insert(
            id,
            Participant::new(
                room.to_owned(),
                id.0.to_string(),
                self.config.twcc_window_packets,
                &self.config.bwe,
            ),
        );
        debug!(room, participant = id.0, "participant added");
        Ok(())
    }

    /// Sets the CNAME announced for `id`'s tracks in the subscribers' offers (signalling
    /// uses the participant's id string), truncated to 255 bytes.
    pub fn set_cname(&mut self, id: ParticipantId, cname: &str) -> Result<(), RouterError> {
        self.deadline.set(None);
        let p = self
            .participants
            .get_mut(&id)
            .ok_or(RouterError::UnknownParticipant(id))?;
        let mut end = cname.len().min(MAX_CNAME_BYTES);
        while !cname.is_char_boundary(end) {
            end -= 1;
        }
        p.cname = cname.get(..end).unwrap_or_default().to_owned();
        for t in &p.published {
            if let Some(track) = self.tracks.get_mut(t) {
                track.cname.clone_from(&p.cname);
            }
        }
        Ok(())
    }

    /// Removes a participant with its publications (and every subscription to them) and
    /// its own subscriptions; queued outputs to it are discarded. Returns the tracks it
    /// published, so signalling can withdraw them from the other participants' offers.
    pub fn remove_participant(&mut self, id: ParticipantId) -> Vec<TrackId> {
        self.deadline.set(None);
        let Some(p) = self.participants.get(&id) else {
            return Vec::new();
        };
        let published = p.published.clone();
        let subscribed = p.subscribed.clone();
        for &track in &published {
            let _ = self.unpublish(track);
        }
        for &track in &subscribed {
            let _ = self.unsubscribe(id, track);
        }
        if let Some(p) = self.participants.remove(&id) {
            if let Some(members) = self.rooms.get_mut(&p.room) {
                members.retain(|&m| m != id);
                if members.is_empty() {
                    self.rooms.remove(&p.room);
                }
            }
        }
        self.outbox.purge(id);
        debug!(
            participant = id.0,
            tracks = published.len(),
            "participant removed"
        );
        published
    }

    /// Registers a track `publisher` sends on the m-line `spec.mid`. SSRCs given here are
    /// bound at once; missing ones are learnt from the MID extension of the first packets.
    pub fn publish(
        &mut self,
        publisher: ParticipantId,
        spec: TrackSpec,
    ) -> Result<TrackId, RouterError> {
        self.deadline.set(None);
        let max_tracks = self.config.max_tracks_per_participant;
        let max_ssrcs = self.config.max_ssrcs_per_participant;
        let p = self
            .participants
            .get(&publisher)
            .ok_or(RouterError::UnknownParticipant(publisher))?;
        if spec.mid.is_empty() || spec.mid.len() > MAX_MID_BYTES {
            return Err(RouterError::BadMid(spec.mid.len()));
        }
        if spec.rids.len() > MAX_SIMULCAST_LAYERS
            || spec
                .rids
                .iter()
                .any(|r| r.is_empty() || r.len() > MAX_MID_BYTES)
            || (spec.kind == Kind::Audio && !spec.rids.is_empty())
        {
            return Err(RouterError::BadRids(spec.rids.len()));
        }
        if !spec.rids.is_empty() && (spec.ssrc.is_some() || spec.rtx_ssrc.is_some()) {
            return Err(RouterError::BadRids(spec.rids.len()));
        }
        if p.published.len() >= max_tracks {
            return Err(RouterError::TooManyTracks {
                participant: publisher,
                max: max_tracks,
            });
        }
        if p.published
            .iter()
            .any(|t| self.tracks.get(t).is_some_and(|t| t.mid == spec.mid))
        {
            return Err(RouterError::DuplicateMid {
                participant: publisher,
                mid: spec.mid,
            });
        }
        let new_ssrcs: Vec<u32> = spec
            .ssrc
            .iter()
            .chain(spec.rtx_ssrc.iter())
            .copied()
            .collect();
        if spec.ssrc.is_some() && spec.ssrc == spec.rtx_ssrc {
            return Err(RouterError::SsrcInUse {
                participant: publisher,
                ssrc: spec.ssrc.unwrap_or_default(),
            });
        }
        if let Some(&ssrc) = new_ssrcs.iter().find(|s| p.ssrcs.contains_key(s)) {
            return Err(RouterError::SsrcInUse {
                participant: publisher,
                ssrc,
            });
        }
        if p.ssrcs.len() + new_ssrcs.len() > max_ssrcs {
            return Err(RouterError::TooManySsrcs {
                participant: publisher,
                max: max_ssrcs,
            });
        }

        let id = TrackId(self.next_track_id);
        self.next_track_id += 1;
        let nack = (spec.kind == Kind::Video && self.config.nack.enabled)
            .then_some(self.config.nack.generator);
        let (cache_packets, cache_bytes) = match spec.kind {
            Kind::Video => (
                self.config.retransmission_cache_packets,
                self.config.retransmission_cache_bytes,
            ),
            Kind::Audio => (
                self.config.audio_retransmission_cache_packets,
                self.config.retransmission_cache_bytes,
            ),
        };
        let rids: Vec<Option<String>> = if spec.rids.is_empty() {
            vec![None]
        } else {
            spec.rids.iter().cloned().map(Some).collect()
        };
        let layers = rids
            .into_iter()
            .map(|rid| {
                let mut layer = Layer::new(rid, nack);
                if cache_packets > 0 {
                    layer.cache = Some(
                        RetransmissionCache::new(cache_packets, cache_bytes)
                            .with_window(self.config.retransmission_window),
                    );
                }
                layer
            })
            .collect::<Vec<_>>();
        let mut track = Track {
            publisher,
            cname: p.cname.clone(),
            mid: spec.mid,
            kind: spec.kind,
            codec: Codec::Other,
            layers,
            subscriptions: Vec::new(),
            recent_frames: Default::default(),
            last_n_exempt: false,
        };
        if let Some(first) = track.layers.first_mut().filter(|_| spec.rids.is_empty()) {
            first.rtx_ssrc = spec.rtx_ssrc;
            if let Some(ssrc) = spec.ssrc {
                first.ssrc = Some(ssrc);
                first.recv = Some(ReceiveStats::new(ssrc));
            }
        }
        if let Some(p) = self.participants.get_mut(&publisher) {
            if let Some(ssrc) = spec.ssrc {
                p.ssrcs.insert(
                    ssrc,
                    SsrcBinding {
                        track: id,
                        layer: 0,
                        role: StreamRole::Media,
                    },
                );
            }
            if let Some(ssrc) = spec.rtx_ssrc {
                p.ssrcs.insert(
                    ssrc,
                    SsrcBinding {
                        track: id,
                        layer: 0,
                        role: StreamRole::Rtx,
                    },
                );
            }
            p.published.push(id);
        }
        debug!(participant = publisher.0, track = id.0, mid = %track.mid, "track published");
        self.tracks.insert(id, track);
        Ok(id)
    }

    /// Withdraws a track: its SSRC bindings and every subscription to it are removed.
    pub fn unpublish(&mut self, track: TrackId) -> Result<(), RouterError> {
        self.deadline.set(None);
        let t = self
            .tracks
            .remove(&track)
            .ok_or(RouterError::UnknownTrack(track))?;
        if let Some(p) = self.participants.get_mut(&t.publisher) {
            p.published.retain(|&x| x != track);
            p.ssrcs.retain(|_, b| b.track != track);
        }
        for sub in &t.subscriptions {
            if let Some(s) = self.participants.get_mut(&sub.subscriber) {
                s.subscribed.retain(|&x| x != track);
                s.announced.retain(|_, a| a.track != track);
            }
        }
        debug!(track = track.0, "track unpublished");
        Ok(())
    }

    /// Starts forwarding `track` to `subscriber` with the SSRCs announced in its offer.
    /// Video waits for a keyframe, which is requested from the publisher (throttled).
    pub fn subscribe(
        &mut self,
        subscriber: ParticipantId,
        track: TrackId,
        spec: SubscriptionSpec,
    ) -> Result<(), RouterError> {
        self.deadline.set(None);
        let cfg = &self.config;
        let s = self
            .participants
            .get(&subscriber)
            .ok_or(RouterError::UnknownParticipant(subscriber))?;
        let t = self
            .tracks
            .get(&track)
            .ok_or(RouterError::UnknownTrack(track))?;
        if t.publisher == subscriber {
            return Err(RouterError::OwnTrack(subscriber));
        }
        let same_room = self
            .participants
            .get(&t.publisher)
            .is_some_and(|p| p.room == s.room);
        if !same_room {
            return Err(RouterError::DifferentRoom { subscriber, track });
        }
        if s.subscribed.contains(&track) {
            return Err(RouterError::AlreadySubscribed { subscriber, track });
        }
        if s.subscribed.len() >= cfg.max_subscriptions_per_participant {
            return Err(RouterError::TooManySubscriptions {
                participant: subscriber,
                max: cfg.max_subscriptions_per_participant,
            });
        }
        let clash = std::iter::once(spec.ssrc)
            .chain(spec.rtx_ssrc)
            .find(|x| s.announced.contains_key(x) || spec.rtx_ssrc == Some(spec.ssrc));
        if let Some(ssrc) = clash {
            return Err(RouterError::SsrcInUse {
                participant: subscriber,
                ssrc,
            });
        }
        if let Some(mid) = &spec.mid {
            if mid.is_empty() || mid.len() > MAX_MID_BYTES {
                return Err(RouterError::BadMid(mid.len()));
            }
        }
        let kind = t.kind;
        let top = t.layers.len().saturating_sub(1);
        let now = self.last_now;
        let target = now.map_or(top, |now| t.best_layer(top, now, self.config.layer_silence));
        let red_accepted =
            kind == Kind::Audio && spec.payload_types.contains(&crate::media::PT_RED_AUDIO);
        let fec_accepted = kind == Kind::Video
            && spec.payload_types.contains(&crate::media::PT_RED_VIDEO)
            && spec.payload_types.contains(&crate::media::PT_ULPFEC);
        let red_rtx_accepted =
            fec_accepted && spec.payload_types.contains(&crate::media::PT_RED_VIDEO_RTX);
        let sub = Subscription {
            subscriber,
            ssrc: spec.ssrc,
            rtx_ssrc: spec.rtx_ssrc,
            mid: spec.mid,
            payload_types: spec.payload_types,
            rewriter: StreamRewriter::new(spec.ssrc, kind.clock_rate_hz()),
            vp8: Vp8PictureRewriter::new(),
            sender: SenderStats::new(kind.clock_rate_hz()),
            rtx_seq: 0,
            layer: None,
            target,
            max_layer: top,
            bandwidth_layer: top,
            last_forwarded_at: None,
            paused: false,
            paused_since: None,
            short_since: None,
            upgraded_at: None,
            temporal_cap: crate::state::ALL_TEMPORAL_LAYERS,
            temporal: crate::state::ALL_TEMPORAL_LAYERS,
            red_accepted,
            fec_accepted,
            red_rtx_accepted,
            fec_pending: 0,
            fec_longest: 0,
            last_n_excluded: false,
        };
        if let Some(s) = self.participants.get_mut(&subscriber) {
            s.subscribed.push(track);
            s.announced.insert(
                spec.ssrc,
                AnnouncedSsrc {
                    track,
                    role: StreamRole::Media,
                },
            );
            if let Some(rtx) = spec.rtx_ssrc {
                s.announced.insert(
                    rtx,
                    AnnouncedSsrc {
                        track,
                        role: StreamRole::Rtx,
                    },
                );
            }
        }
        if let Some(t) = self.tracks.get_mut(&track) {
            t.subscriptions.push(sub);
            t.request_keyframe(target);
        }
        debug!(participant = subscriber.0, track = track.0, "subscribed");
        Ok(())
    }

    /// Stops forwarding `track` to `subscriber`.
    pub fn unsubscribe(
        &mut self,
        subscriber: ParticipantId,
        track: TrackId,
    ) -> Result<(), RouterError> {
        self.deadline.set(None);
        let t = self
            .tracks
            .get_mut(&track)
            .ok_or(RouterError::UnknownTrack(track))?;
        let before = t.subscriptions.len();
        t.subscriptions.retain(|s| s.subscriber != subscriber);
        if t.subscriptions.len() == before {
            return Err(RouterError::NotSubscribed { subscriber, track });
        }
        if let Some(s) = self.participants.get_mut(&subscriber) {
            s.subscribed.retain(|&x| x != track);
            s.announced.retain(|_, a| a.track != track);
        }
        Ok(())
    }

    /// The next datagram to encrypt and send; drain until `None` after every `handle_*`.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outbox.pop()
    }

    /// The next event for signalling (a paused or resumed video); drain after
    /// `handle_timeout`.
    pub fn poll_event(&mut self) -> Option<crate::output::RouterEvent> {
        self.events.pop_front()
    }

    /// Queues an event, dropping the oldest beyond the bound.
    pub(crate) fn push_event(&mut self, event: crate::output::RouterEvent) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Returns a sent output's buffer to the (bounded) pool.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.outbox.recycle(buf);
    }

    /// Outputs waiting in the queue.
    pub fn queued_outputs(&self) -> usize {
        self.outbox.queued()
    }

    /// Buffers waiting in the pool.
    pub fn pooled_buffers(&self) -> usize {
        self.outbox.pooled()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RouterStats {
        self.stats
    }

    /// The room a participant is in.
    pub fn room_of(&self, participant: ParticipantId) -> Option<&str> {
        self.participants.get(&participant).map(|p| p.room.as_str())
    }

    /// The participants of a room, in joining order (empty for an unknown room).
    pub fn participants(&self, room: &str) -> &[ParticipantId] {
        self.rooms.get(room).map_or(&[], Vec::as_slice)
    }

    /// The tracks a participant publishes.
    pub fn published_tracks(&self, participant: ParticipantId) -> &[TrackId] {
        self.participants
            .get(&participant)
            .map_or(&[], |p| p.published.as_slice())
    }

    /// The media SSRC a track is forwarded from, once announced or learnt (its lowest
    /// encoding for simulcast).
    pub fn track_ssrc(&self, track: TrackId) -> Option<u32> {
        self.tracks
            .get(&track)
            .and_then(|t| t.layers.iter().find_map(|l| l.ssrc))
    }

    /// The packet `publisher` sent on media SSRC `ssrc` with sequence number `seq`, as it
    /// arrived (plaintext, before any rewrite), while the retransmission cache holds it.
    /// A relay that copied the publisher's stream to another router answers that
    /// router's NACKs from here instead of asking the publisher again.
    pub fn cached_packet(&self, publisher: ParticipantId, ssrc: u32, seq: u16) -> Option<&[u8]> {
        let binding = self
            .participants
            .get(&publisher)?
            .ssrcs
            .get(&ssrc)
            .filter(|b| b.role == crate::state::StreamRole::Media)?;
        self.tracks
            .get(&binding.track)?
            .layers
            .get(binding.layer)
            .filter(|l| l.ssrc == Some(ssrc))?
            .cache
            .as_ref()?
            .get(seq)
    }
    /// Caps the encoding of a simulcast `track` that `subscriber` gets, lowest quality
    /// first (0 = the lowest). A page that shows the track in a small tile asks for a low
    /// encoding, so the subscriber's downlink is not spent on pixels nobody sees. Takes
    /// effect at the next keyframe of the encoding chosen.
    pub fn set_max_layer(
        &mut self,
        subscriber: ParticipantId,
        track: TrackId,
        max_layer: usize,
    ) -> Result<(), RouterError> {
        self.deadline.set(None);
        let now = self.last_now;
        let silence = self.config.layer_silence;
        let t = self
            .tracks
            .get_mut(&track)
            .ok_or(RouterError::UnknownTrack(track))?;
        let top = t.layers.len().saturating_sub(1);
        let sub = t
            .subscriptions
            .iter_mut()
            .find(|s| s.subscriber == subscriber)
            .ok_or(RouterError::NotSubscribed { subscriber, track })?;
        sub.max_layer = max_layer.min(top);
        if let Some(now) = now {
            t.retarget_subscriber(subscriber, now, silence);
            // and the allocation within the subscriber's estimate, soon
            self.next_layer_selection_at = Some(now);
        }
        Ok(())
    }

    /// Keeps `track` out of last-N (`RouterConfig::last_n`, `audio_last_n`): it is
    /// forwarded to every subscriber whoever speaks, and its publisher is not counted
    /// among the room's publishers of its kind for it. A screen share is what everyone
    /// came to see, however quiet the one who shares it.
    pub fn set_last_n_exempt(&mut self, track: TrackId, exempt: bool) -> Result<(), RouterError> {
        self.deadline.set(None);
        let t = self
            .tracks
            .get_mut(&track)
            .ok_or(RouterError::UnknownTrack(track))?;
        t.last_n_exempt = exempt;
        if exempt {
            let mut resumed = false;
            for sub in t.subscriptions.iter_mut().filter(|s| s.last_n_excluded) {
                sub.last_n_excluded = false;
                sub.layer = None;
                resumed = true;
            }
            if resumed && t.kind == Kind::Video {
                let targets: Vec<usize> = t.subscriptions.iter().map(|s| s.target).collect();
                for target in targets {
                    t.request_keyframe(target);
                }
            }
        }
        Ok(())
    }

    /// The bitrate at which the publisher sends encoding `layer` of `track` (0 = the
    /// lowest), measured over the last half second; `None` for an unknown one.
    pub fn layer_bitrate_bps(&self, track: TrackId, layer: usize) -> Option<u64> {
        let t = self.tracks.get(&track)?;
        t.layers.get(layer).map(|l| l.bitrate.bps())
    }

    /// The encoding `subscriber` receives of `track` (0 = the lowest); `None` before the
    /// first packet was forwarded and while the track is paused for it.
    pub fn forwarded_layer(&self, subscriber: ParticipantId, track: TrackId) -> Option<usize> {
        let t = self.tracks.get(&track)?;
        let sub = t
            .subscriptions
            .iter()
            .find(|s| s.subscriber == subscriber)?;
        sub.layer.filter(|_| !sub.paused)
    }

    /// Rooms on this router.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Records the time of a call: the first one becomes the epoch.
    pub(crate) fn touch(&mut self, now: Instant) {
        self.epoch.get_or_insert(now);
        if self.last_now.is_none_or(|t| now > t) {
            self.last_now = Some(now);
        }
    }
}

/// Deterministic RTCP interval jitter: xorshift64* seeded from the configuration, so a
/// test run (and a replayed trace) reports at the same instants every time.
#[derive(Debug, Clone)]
pub(crate) struct Jitter {
    state: u64,
}

impl Jitter {
    fn new(seed: u64) -> Self {
        Self { state: seed | 1 }
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `interval` scaled by a factor drawn uniformly from [0.5, 1.5) (RFC 3550 6.3.1).
    pub(crate) fn jittered(&mut self, interval: Duration) -> Duration {
        let permille = 500 + self.next_u64() % 1000;
        interval.saturating_mul(permille as u32) / 1000
    }
}
