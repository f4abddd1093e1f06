//! The worker's router: `sluice_sfu::Router` behind the interface the worker core uses.
//!
//! Signalling describes subscriptions by (publisher, source); the sfu router wants track
//! ids, which exist only once the publisher's answer arrived. This adapter keeps what
//! each participant wants and reconciles it with the router after every change, so a
//! subscription to a track that is not published yet starts as soon as it is.

use std::collections::HashMap;
use std::time::Instant;

/// What the router produces: plaintext for one participant, to protect and send.
pub use sluice_sfu::{Output, OutputKind};
use sluice_sfu::{Router, RouterConfig, TrackId, TrackSpec};
use sluice_signal::protocol::Source;
use sluice_signal::sdp::Kind;

use crate::media::command::{participant_label, ParticipantId, PublicationSpec, SubscriptionSpec};
use crate::subscribers::{SubscriberSnapshot, TrackSnapshot};

fn sfu_kind(kind: Kind) -> sluice_sfu::Kind {
    match kind {
        Kind::Audio => sluice_sfu::Kind::Audio,
        Kind::Video => sluice_sfu::Kind::Video,
    }
}

#[derive(Debug, Default)]
struct Member {
    /// The room it is in: only members of one room subscribe to each other.
    room: String,
    /// Published tracks by source, with the mid each is received on.
    tracks: HashMap<Source, (String, TrackId)>,
    /// What signalling asked this participant to receive.
    wanted: Vec<SubscriptionSpec>,
    /// What the router currently forwards to it: spec and the track it maps to.
    active: Vec<(SubscriptionSpec, TrackId)>,
    /// Highest simulcast encoding it asked for per publisher's camera; kept, because the
    /// page may report a tile's size before its answer made the subscription.
    max_layers: HashMap<ParticipantId, usize>,
}

/// Most per-publisher encoding caps remembered for one subscriber (a page reports one
/// per tile; a room holds at most a few hundred participants).
const MAX_REMEMBERED_LAYER_CAPS: usize = 1024;

/// One `sluice_sfu::Router` and the bookkeeping that maps signalling's view onto it.
#[derive(Debug)]
pub struct RouterAdapter {
    router: Router,
    members: HashMap<ParticipantId, Member>,
}

/// What the server's configuration decides about a worker's router.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterSettings {
    /// `limits.ssrcs_per_session`.
    pub max_ssrcs: usize,
    /// `limits.participants_per_room`.
    pub max_participants_per_room: usize,
    /// What signalling can admit in all.
    pub max_participants: usize,
    /// `media.bandwidth_estimation`.
    pub bandwidth_allocation: bool,
    /// `media.min_publisher_bitrate_bps`.
    pub publisher_bitrate_floor_bps: u64,
    /// `media.audio_redundancy` and `media.audio_red_loss_percent`.
    pub audio_red_loss_threshold: Option<f64>,
    /// `media.video_fec` and `media.video_fec_loss_percent`.
    pub video_fec_loss_threshold: Option<f64>,
    /// `media.last_n`.
    pub last_n: usize,
    /// `media.audio_last_n`.
    pub audio_last_n: usize,
}

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            max_ssrcs: 32,
            max_participants_per_room: 25,
            max_participants: 1000,
            bandwidth_allocation: true,
            publisher_bitrate_floor_bps: 150_000,
            audio_red_loss_threshold: Some(0.02),
            video_fec_loss_threshold: Some(0.03),
            last_n: 0,
            audio_last_n: 0,
        }
    }
}

impl RouterAdapter {
    /// A router with the limits and media policies of `settings` (signalling enforces
    /// the same limits first).
    pub fn new(settings: &RouterSettings) -> Self {
        let defaults = RouterConfig::default();
        let config = RouterConfig {
            max_ssrcs_per_participant: settings.max_ssrcs.max(1),
            max_participants_per_room: settings.max_participants_per_room.max(1),
            max_participants: settings.max_participants.max(1),
            max_subscriptions_per_participant: defaults
                .max_subscriptions_per_participant
                .max(2 * settings.max_participants_per_room),
            bandwidth_allocation: settings.bandwidth_allocation,
            publisher_bitrate_floor_bps: settings.publisher_bitrate_floor_bps,
            audio_red_loss_threshold: settings.audio_red_loss_threshold,
            video_fec_loss_threshold: settings.video_fec_loss_threshold,
            last_n: settings.last_n,
            audio_last_n: settings.audio_last_n,
            ..defaults
        };
        Self {
            router: Router::new(config),
            members: HashMap::new(),
        }
    }

    /// Sets what `id` (in `room`) publishes and receives.
    pub fn set_participant(
        &mut self,
        room: &str,
        id: ParticipantId,
        publications: &[PublicationSpec],
        subscriptions: &[SubscriptionSpec],
    ) {
        if !self.members.contains_key(&id) {
            if let Err(error) = self.router.add_participant(room, id) {
                tracing::warn!(participant = id.0, %error, "router refused the participant");
                return;
            }
            let _ = self.router.set_cname(id, &participant_label(id));
            self.members.insert(
                id,
                Member {
                    room: room.to_owned(),
                    ..Member::default()
                },
            );
        }
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        // A track whose publication ended (a screen share stopped) or moved to another
        // m-line (a screen shared again on a recycled one) is withdrawn: its SSRCs and
        // subscriptions go with it, and subscribers are re-attached to the new one below.
        let gone: Vec<Source> = member
            .tracks
            .iter()
            .filter(|(source, (mid, _))| {
                !publications
                    .iter()
                    .any(|p| p.source == **source && p.mid == *mid)
            })
            .map(|(source, _)| *source)
            .collect();
        for source in gone {
            if let Some((_, track)) = member.tracks.remove(&source) {
                let _ = self.router.unpublish(track);
            }
        }
        for spec in publications {
            if member.tracks.contains_key(&spec.source) {
                continue; // a publication's SSRCs are fixed while it lasts
            }
            let track = TrackSpec {
                mid: spec.mid.clone(),
                kind: sfu_kind(spec.kind),
                ssrc: spec.ssrc,
                rtx_ssrc: spec.rtx_ssrc,
                rids: spec.rids.clone(),
            };
            match self.router.publish(id, track) {
                Ok(track) => {
                    if spec.source == Source::Screen {
                        // shown to everyone whoever speaks: last-N is for cameras
                        let _ = self.router.set_last_n_exempt(track, true);
                    }
                    member.tracks.insert(spec.source, (spec.mid.clone(), track));
                }
                Err(error) => tracing::warn!(participant = id.0, %error, "publish refused"),
            }
        }
        member.wanted = subscriptions.to_vec();
        self.reconcile(room);
    }

    /// Brings the router's subscriptions in line with what every member of `room` wants.
    /// One room at a time: a join costs the size of its room, not of the whole worker.
    fn reconcile(&mut self, room: &str) {
        let tracks: HashMap<(ParticipantId, Source), TrackId> = self
            .members
            .iter()
            .filter(|(_, m)| m.room == room)
            .flat_map(|(id, m)| m.tracks.iter().map(move |(s, (_, t))| ((*id, *s), *t)))
            .collect();
        for (id, member) in self.members.iter_mut().filter(|(_, m)| m.room == room) {
            let desired: Vec<(SubscriptionSpec, TrackId)> = member
                .wanted
                .iter()
                .filter_map(|s| {
                    tracks
                        .get(&(s.publisher, s.source))
                        .map(|t| (s.clone(), *t))
                })
                .collect();
            let (keep, stale): (Vec<_>, Vec<_>) = std::mem::take(&mut member.active)
                .into_iter()
                .partition(|a| desired.contains(a));
            // (a track withdrawn above took its subscriptions with it: nothing to undo)
            for (_, track) in stale {
                let _ = self.router.unsubscribe(*id, track);
            }
            member.active = keep;
            for (spec, track) in desired {
                if member.active.iter().any(|(s, t)| *s == spec && *t == track) {
                    continue;
                }
                let subscription = sluice_sfu::SubscriptionSpec {
                    ssrc: spec.ssrc,
                    rtx_ssrc: spec.rtx_ssrc,
                    mid: (!spec.mid.is_empty()).then(|| spec.mid.clone()),
                    payload_types: spec.payload_types.clone(),
                };
                match self.router.subscribe(*id, track, subscription) {
                    Ok(()) => {
                        let camera = spec.source == Source::Camera;
                        if let Some(&max_layer) =
                            member.max_layers.get(&spec.publisher).filter(|_| camera)
                        {
                            let _ = self.router.set_max_layer(*id, track, max_layer);
                        }
                        member.active.push((spec, track));
                    }
                    Err(error) => tracing::warn!(participant = id.0, %error, "subscribe refused"),
                }
            }
        }
    }

    /// Caps the simulcast encoding `subscriber` gets of `publisher`'s camera; ignored
    /// when either is unknown or the camera is not simulcast (nothing to choose).
    pub fn set_max_layer(
        &mut self,
        subscriber: ParticipantId,
        publisher: ParticipantId,
        max_layer: usize,
    ) {
        let room = self.members.get(&publisher).map(|m| m.room.clone());
        let Some(member) = self.members.get_mut(&subscriber) else {
            return;
        };
        if room.as_deref() != Some(member.room.as_str()) {
            return; // a publisher of another room, or gone
        }
        // bounded: one entry per publisher of the room
        if !member.max_layers.contains_key(&publisher)
            && member.max_layers.len() >= MAX_REMEMBERED_LAYER_CAPS
        {
            return;
        }
        member.max_layers.insert(publisher, max_layer);
        let track = self
            .members
            .get(&publisher)
            .and_then(|m| m.tracks.get(&Source::Camera).map(|(_, t)| *t));
        if let Some(track) = track {
            let _ = self.router.set_max_layer(subscriber, track, max_layer);
        }
    }

    /// Forgets `id` and every subscription to its tracks.
    pub fn remove_participant(&mut self, id: ParticipantId) {
        if let Some(gone) = self.members.remove(&id) {
            let removed = self.router.remove_participant(id);
            for member in self.members.values_mut().filter(|m| m.room == gone.room) {
                member.active.retain(|(_, t)| !removed.contains(t));
                member.max_layers.remove(&id);
            }
        }
    }

    /// The next event for signalling.
    pub fn poll_event(&mut self) -> Option<sluice_sfu::RouterEvent> {
        self.router.poll_event()
    }

    /// Routes one plaintext RTP packet (drops are counted in the router's stats).
    pub fn handle_rtp(&mut self, now: Instant, from: ParticipantId, packet: &[u8]) {
        self.router.handle_rtp(now, from, packet);
    }

    /// Handles one plaintext RTCP packet.
    pub fn handle_rtcp(&mut self, now: Instant, from: ParticipantId, packet: &[u8]) {
        self.router.handle_rtcp(now, from, packet);
    }

    /// A packet of `publisher` still in the retransmission cache (see
    /// `sluice_sfu::Router::cached_packet`).
    pub fn cached_packet(&self, publisher: ParticipantId, ssrc: u32, seq: u16) -> Option<&[u8]> {
        self.router.cached_packet(publisher, ssrc, seq)
    }

    /// The next packet to protect and send, addressed to the participant `to`.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.router.poll_output()
    }

    /// Returns a sent packet's buffer to the router's pool.
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        self.router.recycle(buffer);
    }

    /// The router's next report/feedback deadline (cached by the router).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.router.poll_timeout()
    }

    /// Lets time pass for reports, feedback and NACKs.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.router.handle_timeout(now);
    }

    /// What `id` receives, as the debug endpoint and the subscriber gauges show it.
    pub fn subscriber_snapshot(
        &self,
        id: ParticipantId,
        room: &str,
        worker: usize,
    ) -> SubscriberSnapshot {
        let report = self.router.subscriber_report(id);
        let tracks = self
            .router
            .subscription_reports(id)
            .into_iter()
            .map(|t| TrackSnapshot {
                publisher: participant_label(t.publisher),
                kind: match t.kind {
                    sluice_sfu::Kind::Audio => "audio",
                    sluice_sfu::Kind::Video => "video",
                },
                layers: t.layers,
                layer: t.layer,
                target: t.target,
                max_layer: t.max_layer,
                temporal_cap: t.temporal_cap,
                paused: t.paused,
            })
            .collect();
        SubscriberSnapshot {
            participant: participant_label(id),
            room: room.to_owned(),
            worker,
            estimate_bps: report.and_then(|r| r.estimate_bps),
            acked_bps: report.and_then(|r| r.acked_bps),
            rtt_ms: report.map_or(0, |r| u64::try_from(r.rtt.as_millis()).unwrap_or(u64::MAX)),
            loss_fraction: report.and_then(|r| r.loss_fraction),
            probe_results: report.map_or(0, |r| r.probe_results),
            allocated_bps: report.map_or(0, |r| r.allocated_bps),
            desired_bps: report.map_or(0, |r| r.desired_bps),
            paused_tracks: report.map_or(0, |r| r.paused_tracks),
            reduced_frame_rate_tracks: report.map_or(0, |r| r.reduced_frame_rate_tracks),
            audio_redundancy: report.map_or(0, |r| r.audio_redundancy),
            video_fec_interval: report.map_or(0, |r| r.video_fec_interval),
            tracks,
        }
    }

    /// The router's counters.
    pub fn stats(&self) -> sluice_sfu::RouterStats {
        self.router.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opus(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 111];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&960u32.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xF8, 0xFF, 0xFE]);
        p
    }

    /// A microphone published on `mid` (its SSRC learnt from packets when `None`).
    fn microphone(mid: &str, ssrc: Option<u32>) -> PublicationSpec {
        PublicationSpec {
            source: Source::Microphone,
            kind: Kind::Audio,
            mid: mid.into(),
            ssrc,
            rtx_ssrc: None,
            rids: Vec::new(),
        }
    }

    /// A subscription to `publisher`'s microphone, sent as `ssrc` on the subscriber's `mid`.
    fn wants_microphone(publisher: u64, ssrc: u32, mid: &str) -> SubscriptionSpec {
        SubscriptionSpec {
            publisher: ParticipantId(publisher),
            source: Source::Microphone,
            kind: Kind::Audio,
            ssrc,
            rtx_ssrc: None,
            mid: mid.into(),
            payload_types: vec![111],
        }
    }

    #[test]
    fn a_subscription_made_before_the_publisher_answered_starts_when_it_publishes() {
        let now = Instant::now();
        let mut router = RouterAdapter::new(&RouterSettings::default());
        let wants_ada = wants_microphone(1, 0xB0, "2");
        // Bo answers first: Ada's track does not exist yet.
        router.set_participant("r", ParticipantId(2), &[], &[wants_ada]);
        router.set_participant("r", ParticipantId(1), &[microphone("0", Some(0xA0))], &[]);
        router.handle_rtp(now, ParticipantId(1), &opus(1, 0xA0));
        let out: Vec<Output> = std::iter::from_fn(|| router.poll_output()).collect();
        let rtp = out
            .iter()
            .find(|o| o.kind == OutputKind::Rtp)
            .expect("Ada's packet reaches Bo");
        assert_eq!(rtp.to, ParticipantId(2));
        assert_eq!(rtp.data.get(8..12), Some(&0xB0u32.to_be_bytes()[..]));
    }

    #[test]
    fn a_withdrawn_publication_stops_and_its_successor_on_another_mid_reaches_the_same_subscriber()
    {
        let now = Instant::now();
        let mut router = RouterAdapter::new(&RouterSettings::default());
        let published = |mid: &str, ssrc| microphone(mid, Some(ssrc));
        let wants_ada = wants_microphone(1, 0xB0, "2");
        let forwarded = |router: &mut RouterAdapter, seq, ssrc| {
            router.handle_rtp(now, ParticipantId(1), &opus(seq, ssrc));
            std::iter::from_fn(|| router.poll_output())
                .filter(|o| o.kind == OutputKind::Rtp && o.to == ParticipantId(2))
                .count()
        };
        router.set_participant("r", ParticipantId(1), &[published("0", 0xA0)], &[]);
        router.set_participant("r", ParticipantId(2), &[], &[wants_ada]);
        assert_eq!(forwarded(&mut router, 1, 0xA0), 1);
        // withdrawn (a screen share stopped)
        router.set_participant("r", ParticipantId(1), &[], &[]);
        assert_eq!(forwarded(&mut router, 2, 0xA0), 0);
        // published again on a recycled m-line, with new SSRCs
        router.set_participant("r", ParticipantId(1), &[published("5", 0xA1)], &[]);
        assert_eq!(forwarded(&mut router, 3, 0xA1), 1);
        assert_eq!(
            forwarded(&mut router, 4, 0xA0),
            0,
            "the old SSRC is unbound"
        );
    }

    #[test]
    fn leaving_stops_forwarding_to_and_from_the_participant() {
        let now = Instant::now();
        let mut router = RouterAdapter::new(&RouterSettings::default());
        let publication = microphone("0", Some(0xA0));
        let wants_ada = wants_microphone(1, 0xB0, "2");
        router.set_participant("r", ParticipantId(1), &[publication], &[]);
        router.set_participant("r", ParticipantId(2), &[], &[wants_ada]);
        router.remove_participant(ParticipantId(1));
        router.handle_rtp(now, ParticipantId(1), &opus(1, 0xA0));
        assert!(std::iter::from_fn(|| router.poll_output()).all(|o| o.kind != OutputKind::Rtp));
    }

    #[test]
    fn the_cached_deadline_follows_every_change_of_the_router() {
        let now = Instant::now();
        let mut router = RouterAdapter::new(&RouterSettings::default());
        assert_eq!(router.poll_timeout(), None);
        let publication = microphone("0", Some(0xA0));
        router.set_participant("r", ParticipantId(1), &[publication], &[]);
        router.handle_rtp(now, ParticipantId(1), &opus(1, 0xA0));
        let first = router.poll_timeout().expect("a report or feedback is due");
        assert_eq!(
            router.poll_timeout(),
            Some(first),
            "asked again: same answer"
        );
        router.handle_timeout(first);
        let _ = std::iter::from_fn(|| router.poll_output()).count();
        let next = router.poll_timeout().expect("the next report");
        assert!(
            next > first,
            "not the stale deadline: {next:?} <= {first:?}"
        );
        assert_eq!(router.poll_timeout(), router.router.poll_timeout());
    }

    /// Opus with a one-byte header extension block carrying `sdes:mid` (id 1).
    fn opus_with_mid(seq: u16, ssrc: u32, mid: &[u8]) -> Vec<u8> {
        let mut p = vec![0x90, 111];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&960u32.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        let element_len = 1 + mid.len();
        let words = element_len.div_ceil(4);
        p.extend_from_slice(&[0xBE, 0xDE]);
        p.extend_from_slice(&(words as u16).to_be_bytes());
        p.push((1 << 4) | (mid.len() as u8 - 1));
        p.extend_from_slice(mid);
        p.resize(p.len() + words * 4 - element_len, 0);
        p.extend_from_slice(&[0xF8, 0xFF, 0xFE]);
        p
    }

    #[test]
    fn a_receiver_demultiplexing_by_mid_alone_finds_every_stream() {
        let now = Instant::now();
        let mut router = RouterAdapter::new(&RouterSettings::default());
        // Ada (1) and Cy (3) both publish audio on their own mid "0".
        for publisher in [ParticipantId(1), ParticipantId(3)] {
            let publication = microphone("0", None);
            router.set_participant("r", publisher, &[publication], &[]);
        }
        // Bo (2) receives them on its m-lines "1" and "2".
        router.set_participant(
            "r",
            ParticipantId(2),
            &[],
            &[
                wants_microphone(1, 0xB1, "1"),
                wants_microphone(3, 0xB3, "2"),
            ],
        );
        router.handle_rtp(now, ParticipantId(1), &opus_with_mid(1, 0xA1, b"0"));
        router.handle_rtp(now, ParticipantId(3), &opus_with_mid(1, 0xC3, b"0"));
        let mut by_mid: HashMap<Vec<u8>, usize> = HashMap::new();
        for output in std::iter::from_fn(|| router.poll_output()) {
            if output.kind != OutputKind::Rtp || output.to != ParticipantId(2) {
                continue;
            }
            let header = sluice_rtp::RtpHeader::parse(&output.data).expect("RTP");
            let mid = header.extension(1).expect("every packet names its m-line");
            *by_mid.entry(mid.to_vec()).or_default() += 1;
        }
        assert_eq!(
            by_mid.get(&b"1"[..]),
            Some(&1),
            "Ada's stream on Bo's mid 1"
        );
        assert_eq!(by_mid.get(&b"2"[..]), Some(&1), "Cy's stream on Bo's mid 2");
        assert_eq!(
            by_mid.len(),
            2,
            "nothing under the publishers' mid: {by_mid:?}"
        );
    }
}
