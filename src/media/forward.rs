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
use sluice_signal::sdp::codecs::{
    EXT_MID_ID, H264_RTX_PT, VP8_RTX_PT, VP9_RTX_PT,
};
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
                tracing::debug!(participant = from, mid, ssrc, "publisher SSRC learnt by MID");
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
        let Some(publication) = member.publications.iter_mut().find(|p| p.spec.kind == kind)
        else {
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
