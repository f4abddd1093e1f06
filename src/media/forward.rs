//! The worker's media router: which plaintext RTP/RTCP goes to whom.
//!
//! It mirrors the `sluice-sfu` `Router` API (participants, publications,
//! subscriptions, `handle_rtp`/`handle_rtcp`, `poll_output`) so that the worker can
//! swap it for that crate's router; it does the minimum a group call needs: learn a
//! publisher's SSRCs (signalled, or from the MID header extension), forward each
//! packet to every subscriber with the SSRC announced in that subscriber's offer and
//! continuous sequence numbers (`sluice_rtp::StreamRewriter`), and turn PLI/FIR from
//! subscribers and every new video subscription into a throttled PLI to the publisher.
//! RTX, NACK answering, SR/RR generation and congestion feedback are not done here.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use sluice_rtp::{write_pli, RtcpIter, RtcpPacket, RtpHeader, StreamRewriter};
use sluice_signal::sdp::codecs::{EXT_MID_ID, H264_RTX_PT, VP8_RTX_PT, VP9_RTX_PT};
use sluice_signal::sdp::Kind;

use crate::media::command::{ParticipantId, PublicationSpec, SubscriptionSpec};

/// Fewest time between two PLIs to one publisher track.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// Most outputs queued before the oldest are dropped (the worker drains after every input).
pub const MAX_QUEUED_OUTPUTS: usize = 4096;
/// The SSRC the server uses as the sender of its own RTCP (PLI).
pub const SERVER_RTCP_SSRC: u32 = 1;
/// Most publications and subscriptions kept per participant.
const MAX_TRACKS_PER_PARTICIPANT: usize = 512;

/// RTP or RTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// An RTP packet.
    Rtp,
    /// An RTCP packet.
    Rtcp,
}

/// Plaintext to protect with `to`'s SRTP context and send to its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The receiving participant.
    pub to: ParticipantId,
    /// RTP or RTCP.
    pub kind: OutputKind,
    /// The plaintext packet.
    pub data: Vec<u8>,
}

/// Why the forwarder did not forward a packet (not network drops: routing decisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardDrop {
    /// Not parseable as RTP.
    Malformed,
    /// From a participant the forwarder does not know.
    UnknownParticipant,
    /// An SSRC that matches no publication (no signalled SSRC, no known MID).
    UnknownSsrc,
    /// A retransmission stream (not forwarded by this router).
    Retransmission,
}

#[derive(Debug)]
struct Publication {
    spec: PublicationSpec,
    last_keyframe_request: Option<Instant>,
    keyframe_wanted: bool,
}

#[derive(Debug)]
struct Subscription {
    spec: SubscriptionSpec,
    rewriter: StreamRewriter,
}

#[derive(Debug, Default)]
struct Member {
    publications: Vec<Publication>,
    subscriptions: Vec<Subscription>,
}

/// Forwarding state of one worker.
#[derive(Debug, Default)]
pub struct Forwarder {
    members: HashMap<ParticipantId, Member>,
    outputs: VecDeque<Output>,
    overflowed_outputs: u64,
}

fn clock_rate_hz(kind: Kind) -> u32 {
    match kind {
        Kind::Audio => 48_000,
        Kind::Video => 90_000,
    }
}

fn is_rtx_payload_type(pt: u8) -> bool {
    matches!(pt, VP8_RTX_PT | VP9_RTX_PT | H264_RTX_PT)
}

impl Forwarder {
    /// An empty forwarder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `id` is known.
    pub fn contains(&self, id: ParticipantId) -> bool {
        self.members.contains_key(&id)
    }

    /// Sets what `id` publishes and receives (adds it if new). Existing subscriptions
    /// with the same publisher, kind and SSRC keep their sequence space; a new video
    /// subscription asks its publisher for a keyframe.
    pub fn set_participant(
        &mut self,
        now: Instant,
        id: ParticipantId,
        publications: &[PublicationSpec],
        subscriptions: &[SubscriptionSpec],
    ) {
        let member = self.members.entry(id).or_default();
        // Publications: keep learnt SSRCs when the answer does not signal them.
        let mut new_publications = Vec::new();
        for spec in publications.iter().take(MAX_TRACKS_PER_PARTICIPANT) {
            let old = member
                .publications
                .iter()
                .position(|p| p.spec.mid == spec.mid && p.spec.kind == spec.kind)
                .map(|i| member.publications.swap_remove(i));
            let mut publication = old.unwrap_or(Publication {
                spec: spec.clone(),
                last_keyframe_request: None,
                keyframe_wanted: false,
            });
            publication.spec.ssrc = spec.ssrc.or(publication.spec.ssrc);
            publication.spec.rtx_ssrc = spec.rtx_ssrc.or(publication.spec.rtx_ssrc);
            new_publications.push(publication);
        }
        member.publications = new_publications;

        let mut old_subscriptions = std::mem::take(&mut member.subscriptions);
        let mut new_subscriptions = Vec::new();
        let mut wants_keyframe = Vec::new();
        for spec in subscriptions.iter().take(MAX_TRACKS_PER_PARTICIPANT) {
            match old_subscriptions.iter().position(|s| s.spec == *spec) {
                Some(i) => new_subscriptions.push(old_subscriptions.swap_remove(i)),
                None => {
                    if spec.kind == Kind::Video {
                        wants_keyframe.push(spec.publisher);
                    }
                    new_subscriptions.push(Subscription {
                        spec: *spec,
                        rewriter: StreamRewriter::new(spec.ssrc, clock_rate_hz(spec.kind)),
                    });
                }
            }
        }
        member.subscriptions = new_subscriptions;
        for publisher in wants_keyframe {
            self.request_keyframe(now, publisher, Kind::Video);
        }
    }

    /// Forgets `id`: its publications, its subscriptions and every subscription to it.
    pub fn remove_participant(&mut self, id: ParticipantId) {
        self.members.remove(&id);
        for member in self.members.values_mut() {
            member.subscriptions.retain(|s| s.spec.publisher != id);
        }
        self.outputs.retain(|o| o.to != id);
    }

    /// Routes one plaintext RTP packet from `from`.
    pub fn handle_rtp(
        &mut self,
        now: Instant,
        from: ParticipantId,
        packet: &[u8],
    ) -> Result<usize, ForwardDrop> {
        let header = RtpHeader::parse(packet).map_err(|_| ForwardDrop::Malformed)?;
        let ssrc = header.ssrc();
        let member = self
            .members
            .get_mut(&from)
            .ok_or(ForwardDrop::UnknownParticipant)?;
        if member
            .publications
            .iter()
            .any(|p| p.spec.rtx_ssrc == Some(ssrc))
        {
            return Err(ForwardDrop::Retransmission);
        }
        let index = match member
            .publications
            .iter()
            .position(|p| p.spec.ssrc == Some(ssrc))
        {
            Some(index) => index,
            None => {
                // Learn the SSRC from the MID header extension (browsers' answers
                // often carry no a=ssrc lines).
                let mid = header
                    .extension(EXT_MID_ID)
                    .and_then(|m| std::str::from_utf8(m).ok())
                    .ok_or(ForwardDrop::UnknownSsrc)?;
                let index = member
                    .publications
                    .iter()
                    .position(|p| p.spec.mid == mid)
                    .ok_or(ForwardDrop::UnknownSsrc)?;
                let publication = member
                    .publications
                    .get_mut(index)
                    .ok_or(ForwardDrop::UnknownSsrc)?;
                if is_rtx_payload_type(header.payload_type()) {
                    publication.spec.rtx_ssrc = Some(ssrc);
                    return Err(ForwardDrop::Retransmission);
                }
                tracing::debug!(
                    participant = from,
                    mid,
                    ssrc,
                    "publisher SSRC learnt by MID"
                );
                publication.spec.ssrc = Some(ssrc);
                index
            }
        };
        let (kind, keyframe_wanted) = match member.publications.get_mut(index) {
            Some(p) => (p.spec.kind, std::mem::take(&mut p.keyframe_wanted)),
            None => return Err(ForwardDrop::UnknownSsrc),
        };
        if keyframe_wanted {
            self.request_keyframe(now, from, kind);
        }

        let mut forwarded = 0;
        let mut outputs = Vec::new();
        for (&to, subscriber) in self.members.iter_mut() {
            for subscription in subscriber
                .subscriptions
                .iter_mut()
                .filter(|s| s.spec.publisher == from && s.spec.kind == kind)
            {
                if subscription.rewriter.current_source() != Some(ssrc) {
                    subscription.rewriter.switch_source(ssrc);
                }
                let mut data = packet.to_vec();
                if subscription.rewriter.rewrite(&mut data).is_some() {
                    outputs.push(Output {
                        to,
                        kind: OutputKind::Rtp,
                        data,
                    });
                    forwarded += 1;
                }
            }
        }
        for output in outputs {
            self.push(output);
        }
        Ok(forwarded)
    }

    /// Handles one plaintext RTCP packet from `from`: keyframe requests from a
    /// subscriber reach the publisher (throttled); everything else ends here.
    pub fn handle_rtcp(&mut self, now: Instant, from: ParticipantId, packet: &[u8]) {
        let mut targets = Vec::new();
        for item in RtcpIter::new(packet) {
            let Ok(item) = item else { break };
            match item {
                RtcpPacket::Pli { media_ssrc, .. } => targets.push(media_ssrc),
                RtcpPacket::Fir(fir) => targets.extend(fir.entries().map(|e| e.ssrc)),
                _ => {}
            }
        }
        let Some(member) = self.members.get(&from) else {
            return;
        };
        let publishers: Vec<(ParticipantId, Kind)> = targets
            .iter()
            .filter_map(|ssrc| {
                member
                    .subscriptions
                    .iter()
                    .find(|s| s.spec.ssrc == *ssrc)
                    .map(|s| (s.spec.publisher, s.spec.kind))
            })
            .collect();
        for (publisher, kind) in publishers {
            self.request_keyframe(now, publisher, kind);
        }
    }

    /// Sends a PLI to `publisher`'s track of `kind`, at most once per
    /// [`KEYFRAME_REQUEST_INTERVAL`]; deferred until its SSRC is known.
    fn request_keyframe(&mut self, now: Instant, publisher: ParticipantId, kind: Kind) {
        if kind != Kind::Video {
            return;
        }
        let Some(member) = self.members.get_mut(&publisher) else {
            return;
        };
        let Some(publication) = member.publications.iter_mut().find(|p| p.spec.kind == kind) else {
            return;
        };
        let Some(media_ssrc) = publication.spec.ssrc else {
            publication.keyframe_wanted = true;
            return;
        };
        if publication
            .last_keyframe_request
            .is_some_and(|at| now.saturating_duration_since(at) < KEYFRAME_REQUEST_INTERVAL)
        {
            return;
        }
        publication.last_keyframe_request = Some(now);
        let mut data = Vec::with_capacity(12);
        write_pli(SERVER_RTCP_SSRC, media_ssrc, &mut data);
        self.push(Output {
            to: publisher,
            kind: OutputKind::Rtcp,
            data,
        });
    }

    fn push(&mut self, output: Output) {
        if self.outputs.len() >= MAX_QUEUED_OUTPUTS {
            self.outputs.pop_front();
            self.overflowed_outputs += 1;
        }
        self.outputs.push_back(output);
    }

    /// The next packet to protect and send.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Outputs dropped because the queue was full (the worker should never let it fill).
    pub fn overflowed_outputs(&self) -> u64 {
        self.overflowed_outputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADA: ParticipantId = 1;
    const BO: ParticipantId = 2;

    fn publications() -> Vec<PublicationSpec> {
        vec![
            PublicationSpec {
                kind: Kind::Audio,
                mid: "0".into(),
                ssrc: Some(0xA0),
                rtx_ssrc: None,
            },
            PublicationSpec {
                kind: Kind::Video,
                mid: "1".into(),
                ssrc: None,
                rtx_ssrc: None,
            },
        ]
    }

    fn subscription(publisher: ParticipantId, kind: Kind, ssrc: u32) -> SubscriptionSpec {
        SubscriptionSpec {
            publisher,
            kind,
            ssrc,
            rtx_ssrc: None,
        }
    }

    /// RTP with a one-byte MID extension (id 1).
    fn rtp(pt: u8, seq: u16, ssrc: u32, mid: &[u8]) -> Vec<u8> {
        let mut p = vec![0x90, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&1000u32.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1]);
        p.push((1 << 4) | (mid.len() as u8 - 1));
        p.extend_from_slice(mid);
        p.resize(p.len() + (3 - mid.len()), 0);
        p.extend_from_slice(&[0xAA; 20]);
        p
    }

    fn ssrc_of(data: &[u8]) -> u32 {
        RtpHeader::parse(data).unwrap().ssrc()
    }

    fn drain(f: &mut Forwarder) -> Vec<Output> {
        std::iter::from_fn(|| f.poll_output()).collect()
    }

    #[test]
    fn audio_reaches_the_subscriber_with_the_announced_ssrc_and_continuous_seq() {
        let now = Instant::now();
        let mut f = Forwarder::new();
        f.set_participant(now, ADA, &publications(), &[]);
        f.set_participant(now, BO, &[], &[subscription(ADA, Kind::Audio, 0xB0)]);
        drain(&mut f);
        for seq in [100, 101] {
            assert_eq!(f.handle_rtp(now, ADA, &rtp(111, seq, 0xA0, b"0")), Ok(1));
        }
        let out = drain(&mut f);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|o| o.to == BO && o.kind == OutputKind::Rtp));
        let seqs: Vec<u16> = out
            .iter()
            .map(|o| RtpHeader::parse(&o.data).unwrap().sequence_number())
            .collect();
        assert_eq!(seqs[1], seqs[0].wrapping_add(1));
        assert!(out.iter().all(|o| ssrc_of(&o.data) == 0xB0));
    }

    #[test]
    fn an_unsignalled_video_ssrc_is_learnt_from_the_mid_extension() {
        let now = Instant::now();
        let mut f = Forwarder::new();
        f.set_participant(now, ADA, &publications(), &[]);
        f.set_participant(now, BO, &[], &[subscription(ADA, Kind::Video, 0xB1)]);
        // The subscription asked for a keyframe, deferred until the SSRC is known.
        assert!(drain(&mut f).is_empty());
        assert_eq!(f.handle_rtp(now, ADA, &rtp(96, 5, 0xA1, b"1")), Ok(1));
        let out = drain(&mut f);
        let pli = out
            .iter()
            .find(|o| o.kind == OutputKind::Rtcp)
            .expect("a PLI");
        assert_eq!(pli.to, ADA);
        let video = out.iter().find(|o| o.kind == OutputKind::Rtp).unwrap();
        assert_eq!(ssrc_of(&video.data), 0xB1);
        // Later packets without the extension are recognised by SSRC.
        let mut plain = rtp(96, 6, 0xA1, b"1");
        plain[0] = 0x80; // drop the extension bit: the bytes become payload
        assert_eq!(f.handle_rtp(now, ADA, &plain), Ok(1));
    }

    #[test]
    fn an_unknown_ssrc_without_a_known_mid_is_dropped() {
        let now = Instant::now();
        let mut f = Forwarder::new();
        f.set_participant(now, ADA, &publications(), &[]);
        assert_eq!(
            f.handle_rtp(now, ADA, &rtp(96, 1, 0xEE, b"7")),
            Err(ForwardDrop::UnknownSsrc)
        );
        assert_eq!(
            f.handle_rtp(now, 99, &rtp(96, 1, 0xEE, b"1")),
            Err(ForwardDrop::UnknownParticipant)
        );
    }

    #[test]
    fn pli_from_subscribers_is_throttled_towards_the_publisher() {
        let now = Instant::now();
        let mut f = Forwarder::new();
        let mut pubs = publications();
        pubs[1].ssrc = Some(0xA1);
        f.set_participant(now, ADA, &pubs, &[]);
        f.set_participant(now, BO, &[], &[subscription(ADA, Kind::Video, 0xB1)]);
        assert_eq!(drain(&mut f).len(), 1, "the new subscription's PLI");
        let mut pli = Vec::new();
        write_pli(0xB0B0, 0xB1, &mut pli);
        f.handle_rtcp(now + Duration::from_millis(100), BO, &pli);
        assert!(drain(&mut f).is_empty(), "within 500 ms of the last one");
        f.handle_rtcp(now + Duration::from_millis(600), BO, &pli);
        let out = drain(&mut f);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].to, out[0].kind), (ADA, OutputKind::Rtcp));
    }

    #[test]
    fn removing_a_publisher_stops_its_forwarding() {
        let now = Instant::now();
        let mut f = Forwarder::new();
        f.set_participant(now, ADA, &publications(), &[]);
        f.set_participant(now, BO, &[], &[subscription(ADA, Kind::Audio, 0xB0)]);
        f.remove_participant(ADA);
        assert_eq!(
            f.handle_rtp(now, ADA, &rtp(111, 1, 0xA0, b"0")),
            Err(ForwardDrop::UnknownParticipant)
        );
        f.set_participant(now, ADA, &publications(), &[]);
        assert_eq!(f.handle_rtp(now, ADA, &rtp(111, 2, 0xA0, b"0")), Ok(0));
    }
}
