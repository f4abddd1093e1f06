//! What signalling tells a worker, and what a worker reports back.
//!
//! Signalling (tokio, multi-threaded) and the workers (one thread each) share no state:
//! they talk only through these messages over channels, so the media path takes no lock.

use std::time::Duration;

use sluice_dtls::{Fingerprint, Role};
use sluice_ice::Credentials;
use sluice_signal::protocol::Source;
use sluice_signal::sdp::Kind;
use tokio::sync::mpsc;

use crate::metrics::HandshakeFailure;

/// A participant, unique for the life of the process: the router's identifier, used by
/// signalling and the workers alike.
pub use sluice_sfu::ParticipantId;

/// The text form of a participant id: its `participant_id` on the wire, the msid stream
/// id and RTCP CNAME of everything forwarded from it.
pub fn participant_label(id: ParticipantId) -> String {
    format!("p-{}", id.0)
}

/// The inverse of [`participant_label`].
pub fn parse_participant_label(label: &str) -> Option<ParticipantId> {
    label.strip_prefix("p-")?.parse().ok().map(ParticipantId)
}

/// The id of `participant`'s track from `source`: its `track_id` on the wire and the msid
/// track id of its m-lines. Microphone and camera keep the ids they had before tracks
/// were named in the protocol (`p-<n>-audio`, `p-<n>-video`), so older clients that
/// read msids see nothing new.
pub fn track_label(participant: ParticipantId, source: Source) -> String {
    let suffix = match source {
        Source::Microphone => "audio",
        Source::Camera => "video",
        Source::Screen => "screen",
    };
    format!("p-{}-{suffix}", participant.0)
}

/// The inverse of [`track_label`]: `None` for anything the server did not make.
pub fn parse_track_label(label: &str) -> Option<(ParticipantId, Source)> {
    let (number, suffix) = label.strip_prefix("p-")?.split_once('-')?;
    let source = match suffix {
        "audio" => Source::Microphone,
        "video" => Source::Camera,
        "screen" => Source::Screen,
        _ => return None,
    };
    // digits only: `u64::from_str` would also take a leading `+`
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((ParticipantId(number.parse().ok()?), source))
}

/// A track the participant sends us: its microphone on mid 0, camera on mid 1, and a
/// screen share on the m-line the server added for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationSpec {
    /// What it carries; a participant publishes one track per source.
    pub source: Source,
    /// Audio or video.
    pub kind: Kind,
    /// Its mid, matched against the RTP MID header extension when no SSRC is signalled.
    pub mid: String,
    /// The media SSRC from the answer's `a=ssrc` lines, when present.
    pub ssrc: Option<u32>,
    /// The RTX SSRC from the answer's `a=ssrc-group:FID`, when present.
    pub rtx_ssrc: Option<u32>,
    /// Simulcast: the RIDs the answer sends (`a=simulcast:send`), lowest quality first;
    /// empty for one encoding.
    pub rids: Vec<String>,
}

/// A track of another participant that this participant receives on a `sendonly` m-line,
/// as the participant's answer accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSpec {
    /// Whose track.
    pub publisher: ParticipantId,
    /// Which of their tracks.
    pub source: Source,
    /// Its kind (the source's).
    pub kind: Kind,
    /// The SSRC we announced on that m-line: forwarded packets carry it.
    pub ssrc: u32,
    /// The RTX SSRC we announced (video), kept only when the answer accepted RTX on the
    /// m-line; `None` means NACKs are answered with plain retransmissions.
    pub rtx_ssrc: Option<u32>,
    /// The subscriber's mid of that m-line: forwarded packets name it in `sdes:mid`, so a
    /// receiver that demultiplexes by MID alone finds every stream.
    pub mid: String,
    /// The media payload types the answer accepted on that m-line; a packet with any
    /// other payload type is not forwarded (the subscriber could not decode it). RED and
    /// ULPFEC are among them where accepted, and so is the RTX payload type of RED.
    pub payload_types: Vec<u8>,
}

/// Everything a worker needs to run one participant's session; sent after every answer.
/// The first one creates the session, later ones update its publications and
/// subscriptions (transport parameters cannot change on a connection).
#[derive(Debug, Clone)]
pub struct SessionSpec {
    /// The participant.
    pub participant: ParticipantId,
    /// The room it is in (placed on this worker).
    pub room: String,
    /// Our ICE credentials for it (in every offer).
    pub local_ice: Credentials,
    /// Its ICE credentials (from the answer).
    pub remote_ice: Credentials,
    /// The certificate fingerprint from the answer: the only one DTLS accepts.
    pub remote_fingerprint: Fingerprint,
    /// Our DTLS role, from the offer's and answer's `a=setup`.
    pub dtls_role: Role,
    /// What it sends us.
    pub publications: Vec<PublicationSpec>,
    /// What it receives.
    pub subscriptions: Vec<SubscriptionSpec>,
    /// Where the worker reports this session's events.
    pub events: mpsc::Sender<SessionEvent>,
}

/// What a worker needs to answer a participant's connectivity checks before its answer
/// arrived: our ICE credentials are in the offer, and a browser starts checking as soon
/// as it has applied that offer and its own answer, which can be before signalling has
/// carried the answer to us. Checks that found no session would be dropped, and a peer
/// that backs off far enough gives up.
#[derive(Debug, Clone)]
pub struct PrepareSpec {
    /// The participant.
    pub participant: ParticipantId,
    /// Its room.
    pub room: String,
    /// Our ICE credentials for it (in every offer).
    pub local_ice: Credentials,
    /// Where the worker reports this session's events.
    pub events: mpsc::Sender<SessionEvent>,
}

/// A request to a worker.
#[derive(Debug)]
pub enum Command {
    /// Open a session that answers ICE checks and holds early DTLS until its answer's
    /// transport parameters arrive with the first `Upsert`.
    Prepare(Box<PrepareSpec>),
    /// Create or update a session.
    Upsert(Box<SessionSpec>),
    /// Forget a session (the participant left); its media stops at once.
    Remove(ParticipantId),
    /// Cap the simulcast encoding `subscriber` gets of `publisher`'s camera (0 = the
    /// lowest), from the size at which its page shows it.
    SetMaxLayer {
        /// Who receives.
        subscriber: ParticipantId,
        /// Whose camera.
        publisher: ParticipantId,
        /// Highest encoding, lowest quality first.
        max_layer: usize,
    },
    /// The workers that host members of `room` changed. Sent to every worker of the old
    /// and the new set; a worker that is no longer in it drops its mirrors of the room.
    RoomSpan(RoomSpan),
}

/// The workers a room's members are placed on, as signalling last decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSpan {
    /// The room.
    pub room: String,
    /// Every worker hosting at least one member, ascending.
    pub workers: Vec<usize>,
    /// Increases with every decision (one counter for all rooms), so a worker that hears
    /// of two decisions out of order, or a relay message sent before the latest one,
    /// keeps the newest.
    pub version: u64,
}

/// What a worker reports about a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// DTLS completed and SRTP keys are installed.
    Connected {
        /// From the first handshake datagram to completion.
        handshake_duration: Duration,
    },
    /// DTLS failed; the session carries no media.
    Failed {
        /// Why, as the metrics label it.
        reason: HandshakeFailure,
    },
    /// ICE consent expired on every path: the peer is gone.
    Disconnected,
    /// The router paused (or resumed) `publisher`'s camera toward this participant: its
    /// downlink's estimate cannot carry it, or last-N leaves it out.
    VideoPaused {
        /// Whose camera.
        publisher: ParticipantId,
        /// Stopped or flowing again.
        paused: bool,
        /// Why.
        reason: sluice_sfu::PauseReason,
    },
    /// Someone (possibly this participant) became its room's dominant speaker.
    DominantSpeaker {
        /// Who.
        participant: ParticipantId,
    },
}
