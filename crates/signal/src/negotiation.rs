//! Server-side offer/answer sequencing for one participant's peer connection.
//!
//! The server always offers and the browser always answers, so there is no glare;
//! what remains is ordering. [`Negotiator`] keeps the m-line list and enforces:
//!
//! - mid "0" (audio) and mid "1" (video) are the browser's own microphone and camera,
//!   `recvonly` from the server's point of view, for the whole session; further
//!   `recvonly` m-lines (a screen share) come and go with [`Negotiator::add_local_track`]
//!   and [`Negotiator::remove_local_track`];
//! - every other m-line carries one track of another participant (`sendonly`); when
//!   that participant leaves it turns `inactive`, and it is only reused for a new
//!   track after an answer has acknowledged the `inactive` state, so the browser
//!   sees inactive -> sendonly and fires a fresh `track` event;
//! - m-lines are never removed or reordered (mid == index);
//! - at most one offer is outstanding: changes made meanwhile are queued and
//!   [`Negotiator::needs_offer`] turns true again once the answer arrives.

use std::net::SocketAddr;

use thiserror::Error;

use crate::sdp::{
    parse_answer_with_limits, write_offer, Answer, Direction, Kind, MediaSection, OfferParams,
    ParseLimits, SdpError, SendStream, Setup, MAX_MEDIA_SECTIONS,
};

/// The mid of the browser's microphone m-line.
pub const LOCAL_AUDIO_MID: &str = "0";
/// The mid of the browser's camera m-line.
pub const LOCAL_VIDEO_MID: &str = "1";

/// The server's transport parameters, fixed for the life of the peer connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportParams {
    /// The `o=` session id (masked below 2^63 by the negotiator).
    pub session_id: u64,
    /// Our ICE credentials `(ufrag, pwd)`.
    pub ice: (String, String),
    /// SHA-256 of our DTLS certificate.
    pub fingerprint_sha256: [u8; 32],
    /// Our `a=setup` (from the `dtls.role` configuration).
    pub setup: Setup,
    /// Our host candidates, most preferred first.
    pub candidates: Vec<SocketAddr>,
}

/// Limits of one negotiator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegotiatorConfig {
    /// Most m-lines in the session, the two local ones included; each other
    /// participant needs two (audio + video), so this caps the visible room size.
    pub max_media_sections: usize,
    /// Limits applied when parsing answers. The default 64 KiB answer holds
    /// roughly 25 participants' m-lines from Chrome; raise `max_sdp_len` (and the
    /// WebSocket message limit) for larger rooms.
    pub answer_limits: ParseLimits,
    /// Ask for the participant's camera as simulcast ([`SIMULCAST_RIDS`]) so each
    /// subscriber can get the encoding its link and its screen can use.
    pub simulcast: bool,
}

/// The RIDs of the camera's simulcast encodings, lowest quality first: a quarter, half
/// and full resolution (the demo page scales them 4, 2 and 1).
pub const SIMULCAST_RIDS: [&str; 3] = ["q", "h", "f"];

impl Default for NegotiatorConfig {
    fn default() -> Self {
        Self {
            max_media_sections: MAX_MEDIA_SECTIONS,
            answer_limits: ParseLimits::default(),
            simulcast: false,
        }
    }
}

/// Why a negotiation step was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NegotiationError {
    /// `create_offer` while the answer to `revision` has not arrived.
    #[error("the answer to offer {revision} is still outstanding")]
    AnswerOutstanding {
        /// The offer waiting for its answer.
        revision: u64,
    },
    /// An answer arrived while no offer was outstanding.
    #[error("answer without an outstanding offer")]
    UnexpectedAnswer,
    /// An answer for another revision than the outstanding offer.
    #[error("answer for revision {got}, expected {expected}")]
    RevisionMismatch {
        /// The outstanding revision.
        expected: u64,
        /// The revision in the answer.
        got: u64,
    },
    /// The answer's SDP is invalid.
    #[error("invalid answer SDP: {0}")]
    Sdp(#[from] SdpError),
    /// The answer's m-lines do not mirror the offer's (count, order, mid, kind).
    #[error("answer media section {media_index} does not match the offer")]
    MediaMismatch {
        /// The first mismatching m-line (or the offer's count when too few/many).
        media_index: usize,
    },
    /// The answer's direction is not a valid reply to the offered one.
    #[error("answer media section {media_index} has an incompatible direction")]
    DirectionMismatch {
        /// The m-line.
        media_index: usize,
    },
    /// The answer uses a payload type we did not offer, or under another name.
    #[error("answer media section {media_index} uses a payload type that was not offered")]
    UnofferedPayloadType {
        /// The m-line.
        media_index: usize,
    },
    /// The answer's `a=setup` is not a legal reply to ours.
    #[error("answer a=setup is not compatible with the offer")]
    SetupMismatch,
    /// The answerer's certificate fingerprint changed between answers.
    #[error("the remote certificate fingerprint changed")]
    FingerprintChanged,
    /// No m-line left within [`NegotiatorConfig::max_media_sections`].
    #[error("no room for another m-line (limit {max})")]
    TooManyMediaSections {
        /// The limit.
        max: usize,
    },
    /// A track with this msid track id is already on an m-line.
    #[error("a {kind} track with this id is already in this session")]
    DuplicateTrack {
        /// The kind.
        kind: Kind,
    },
    /// A send stream's ids cannot be written into SDP.
    #[error("invalid send stream: {0}")]
    InvalidSendStream(SdpError),
}

/// Who is on a `sendonly` m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupant {
    /// The participant whose track this is.
    pub participant_id: String,
    /// What the server sends on the m-line.
    pub stream: SendStream,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SlotUse {
    /// The browser's own microphone or camera.
    Local,
    /// Forwarding another participant's track.
    Remote(Occupant),
    /// Inactive and not yet acknowledged as such by an answer.
    Freed {
        /// The offer that first carried the inactive state.
        offered_in: Option<u64>,
    },
    /// Inactive and acknowledged: may take a new occupant.
    Reusable,
}

/// One m-line of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    mid: String,
    kind: Kind,
    usage: SlotUse,
}

impl Slot {
    /// The m-line's mid (its index as a decimal string).
    pub fn mid(&self) -> &str {
        &self.mid
    }

    /// Audio or video.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The server's direction on this m-line.
    pub fn direction(&self) -> Direction {
        match self.usage {
            SlotUse::Local => Direction::RecvOnly,
            SlotUse::Remote(_) => Direction::SendOnly,
            SlotUse::Freed { .. } | SlotUse::Reusable => Direction::Inactive,
        }
    }

    /// The forwarded track on a `sendonly` m-line.
    pub fn occupant(&self) -> Option<&Occupant> {
        match &self.usage {
            SlotUse::Remote(occupant) => Some(occupant),
            _ => None,
        }
    }

    fn section(&self, simulcast: bool) -> MediaSection {
        // only the camera: a screen share is sent as one encoding
        let receives_camera = self.usage == SlotUse::Local && self.mid == LOCAL_VIDEO_MID;
        MediaSection {
            mid: self.mid.clone(),
            kind: self.kind,
            direction: self.direction(),
            send: self.occupant().map(|o| o.stream.clone()),
            simulcast: if simulcast && receives_camera {
                SIMULCAST_RIDS.iter().map(|r| (*r).to_owned()).collect()
            } else {
                Vec::new()
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Outstanding {
    revision: u64,
    /// The offered m-lines, to check the answer against.
    media: Vec<MediaSection>,
}

/// The offer/answer state of one participant's peer connection.
#[derive(Debug, Clone)]
pub struct Negotiator {
    transport: TransportParams,
    config: NegotiatorConfig,
    slots: Vec<Slot>,
    /// The revision of the latest offer created (0 before the first).
    revision: u64,
    outstanding: Option<Outstanding>,
    /// Slots changed since the last offer was created.
    changed: bool,
    remote_fingerprint: Option<[u8; 32]>,
}

impl Negotiator {
    /// A negotiator with the two local m-lines; the first offer is due at once.
    pub fn new(transport: TransportParams, config: NegotiatorConfig) -> Self {
        let local = |mid: &str, kind| Slot {
            mid: mid.to_owned(),
            kind,
            usage: SlotUse::Local,
        };
        Self {
            transport,
            config: NegotiatorConfig {
                max_media_sections: config.max_media_sections.clamp(2, MAX_MEDIA_SECTIONS),
                ..config
            },
            slots: vec![
                local(LOCAL_AUDIO_MID, Kind::Audio),
                local(LOCAL_VIDEO_MID, Kind::Video),
            ],
            revision: 0,
            outstanding: None,
            changed: true,
            remote_fingerprint: None,
        }
    }

    /// The m-lines in order.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The revision of the latest offer created (0 before the first).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The revision whose answer is awaited, if any.
    pub fn outstanding_revision(&self) -> Option<u64> {
        self.outstanding.as_ref().map(|o| o.revision)
    }

    /// Whether an offer should be created now: something changed since the last
    /// offer and no answer is outstanding.
    pub fn needs_offer(&self) -> bool {
        self.changed && self.outstanding.is_none()
    }

    /// The mid carrying `participant_id`'s first track of `kind`, if any (a participant
    /// sharing its screen has two video tracks: [`Negotiator::mid_of_track`] tells them apart).
    pub fn mid_of(&self, participant_id: &str, kind: Kind) -> Option<&str> {
        self.slots
            .iter()
            .find(|s| {
                s.kind == kind
                    && s.occupant()
                        .is_some_and(|o| o.participant_id == participant_id)
            })
            .map(|s| s.mid.as_str())
    }

    /// The mid carrying the track whose msid track id is `track_id`, if any.
    pub fn mid_of_track(&self, track_id: &str) -> Option<&str> {
        self.slots
            .iter()
            .find(|s| s.occupant().is_some_and(|o| o.stream.track_id == track_id))
            .map(|s| s.mid.as_str())
    }

    /// The mids on which the server receives from the browser, in order: "0", "1" and
    /// any added with [`Negotiator::add_local_track`].
    pub fn local_mids(&self) -> impl Iterator<Item = &str> {
        self.slots
            .iter()
            .filter(|s| s.usage == SlotUse::Local)
            .map(|s| s.mid.as_str())
    }

    /// Starts forwarding a track of another participant: reuses an acknowledged
    /// inactive m-line of the same kind or appends one. Returns its mid. Takes
    /// effect with the next offer. A participant may have several tracks of a kind
    /// (camera and screen); each is told apart by its msid track id.
    pub fn add_remote_track(
        &mut self,
        participant_id: &str,
        kind: Kind,
        stream: SendStream,
    ) -> Result<String, NegotiationError> {
        if self.mid_of_track(&stream.track_id).is_some() {
            return Err(NegotiationError::DuplicateTrack { kind });
        }
        check_send_stream(kind, &stream)?;
        let occupant = SlotUse::Remote(Occupant {
            participant_id: participant_id.to_owned(),
            stream,
        });
        self.occupy(kind, occupant)
    }

    /// Adds an m-line on which the server receives a further track from the browser
    /// (a screen share): reuses an acknowledged inactive m-line of `kind` or appends
    /// one. Returns its mid; takes effect with the next offer.
    pub fn add_local_track(&mut self, kind: Kind) -> Result<String, NegotiationError> {
        self.occupy(kind, SlotUse::Local)
    }

    /// Withdraws an m-line added with [`Negotiator::add_local_track`]: it turns inactive
    /// and becomes reusable like any other once an answer acknowledged that. Mids "0"
    /// and "1" stay for the whole session; returns whether anything was withdrawn.
    pub fn remove_local_track(&mut self, mid: &str) -> bool {
        if mid == LOCAL_AUDIO_MID || mid == LOCAL_VIDEO_MID {
            return false;
        }
        self.free_where(|slot| slot.mid == mid && slot.usage == SlotUse::Local) > 0
    }

    /// Stops forwarding the track whose msid track id is `track_id`; returns whether
    /// it was on an m-line.
    pub fn remove_track(&mut self, track_id: &str) -> bool {
        self.free_where(|slot| {
            slot.occupant()
                .is_some_and(|o| o.stream.track_id == track_id)
        }) > 0
    }

    fn occupy(&mut self, kind: Kind, occupant: SlotUse) -> Result<String, NegotiationError> {
        let reusable = self
            .slots
            .iter_mut()
            .find(|s| s.kind == kind && s.usage == SlotUse::Reusable);
        let mid = match reusable {
            Some(slot) => {
                slot.usage = occupant;
                slot.mid.clone()
            }
            None => {
                if self.slots.len() >= self.config.max_media_sections {
                    return Err(NegotiationError::TooManyMediaSections {
                        max: self.config.max_media_sections,
                    });
                }
                let mid = self.slots.len().to_string();
                self.slots.push(Slot {
                    mid: mid.clone(),
                    kind,
                    usage: occupant,
                });
                mid
            }
        };
        self.changed = true;
        Ok(mid)
    }

    /// Stops forwarding every track of `kind` from `participant_id`; returns whether it had
    /// one ([`Negotiator::remove_track`] removes one by its id).
    pub fn remove_remote_track(&mut self, participant_id: &str, kind: Kind) -> bool {
        self.free_where(|slot| {
            slot.kind == kind
                && slot
                    .occupant()
                    .is_some_and(|o| o.participant_id == participant_id)
        }) > 0
    }

    /// Marks every m-line of `participant_id` inactive (they become reusable once
    /// an answer acknowledges it). Returns how many m-lines were freed.
    pub fn remove_participant(&mut self, participant_id: &str) -> usize {
        self.free_where(|slot| {
            slot.occupant()
                .is_some_and(|o| o.participant_id == participant_id)
        })
    }

    fn free_where(&mut self, predicate: impl Fn(&Slot) -> bool) -> usize {
        let mut freed = 0;
        for slot in self.slots.iter_mut().filter(|s| predicate(s)) {
            slot.usage = SlotUse::Freed { offered_in: None };
            freed += 1;
        }
        if freed > 0 {
            self.changed = true;
        }
        freed
    }

    /// Creates the next offer `(revision, sdp)`; refused while an answer is outstanding.
    pub fn create_offer(&mut self) -> Result<(u64, String), NegotiationError> {
        if let Some(outstanding) = &self.outstanding {
            return Err(NegotiationError::AnswerOutstanding {
                revision: outstanding.revision,
            });
        }
        let revision = self.revision + 1;
        let simulcast = self.config.simulcast;
        let media: Vec<MediaSection> = self.slots.iter().map(|s| s.section(simulcast)).collect();
        let params = OfferParams {
            session_id: self.transport.session_id & (i64::MAX as u64),
            version: revision,
            ice: self.transport.ice.clone(),
            fingerprint_sha256: self.transport.fingerprint_sha256,
            setup: self.transport.setup,
            candidates: self.transport.candidates.clone(),
            media,
        };
        let sdp = write_offer(&params)?;
        for slot in &mut self.slots {
            if let SlotUse::Freed {
                offered_in: offered_in @ None,
            } = &mut slot.usage
            {
                *offered_in = Some(revision);
            }
        }
        self.revision = revision;
        self.changed = false;
        self.outstanding = Some(Outstanding {
            revision,
            media: params.media,
        });
        Ok((revision, sdp))
    }

    /// Accepts the answer to the outstanding offer. On error nothing changes and the
    /// offer stays outstanding (the server normally ends the session).
    pub fn on_answer(&mut self, revision: u64, sdp: &str) -> Result<Answer, NegotiationError> {
        let outstanding = self
            .outstanding
            .as_ref()
            .ok_or(NegotiationError::UnexpectedAnswer)?;
        if revision != outstanding.revision {
            return Err(NegotiationError::RevisionMismatch {
                expected: outstanding.revision,
                got: revision,
            });
        }
        let answer = parse_answer_with_limits(sdp, &self.config.answer_limits)?;
        check_answer(&outstanding.media, &answer, self.transport.setup)?;
        if self
            .remote_fingerprint
            .is_some_and(|f| f != answer.fingerprint_sha256)
        {
            return Err(NegotiationError::FingerprintChanged);
        }

        self.remote_fingerprint = Some(answer.fingerprint_sha256);
        self.outstanding = None;
        for slot in &mut self.slots {
            if let SlotUse::Freed {
                offered_in: Some(offered),
            } = slot.usage
            {
                if offered <= revision {
                    slot.usage = SlotUse::Reusable;
                }
            }
        }
        Ok(answer)
    }
}

fn check_send_stream(kind: Kind, stream: &SendStream) -> Result<(), NegotiationError> {
    // Reuse the writer's validation so a bad id fails here, not at the next offer.
    let params = OfferParams {
        session_id: 0,
        version: 0,
        ice: ("ufrag".to_owned(), "0".repeat(22)),
        fingerprint_sha256: [0; 32],
        setup: Setup::ActPass,
        candidates: Vec::new(),
        media: vec![MediaSection {
            mid: "0".to_owned(),
            kind,
            direction: Direction::SendOnly,
            send: Some(stream.clone()),
            simulcast: Vec::new(),
        }],
    };
    write_offer(&params)
        .map(|_| ())
        .map_err(NegotiationError::InvalidSendStream)
}

fn check_answer(
    offered: &[MediaSection],
    answer: &Answer,
    setup: Setup,
) -> Result<(), NegotiationError> {
    if !setup.accepts_answer(answer.setup) {
        return Err(NegotiationError::SetupMismatch);
    }
    if answer.media.len() != offered.len() {
        return Err(NegotiationError::MediaMismatch {
            media_index: offered.len().min(answer.media.len()),
        });
    }
    for (index, (offer, answered)) in offered.iter().zip(&answer.media).enumerate() {
        if offer.mid != answered.mid || offer.kind != answered.kind {
            return Err(NegotiationError::MediaMismatch { media_index: index });
        }
        // The answerer may send only where we receive, and receive only where we send.
        let sends_ok = !answered.direction.sends() || offer.direction.receives();
        let receives_ok = !answered.direction.receives() || offer.direction.sends();
        if !sends_ok || !receives_ok {
            return Err(NegotiationError::DirectionMismatch { media_index: index });
        }
        let table = crate::sdp::codecs::codecs_offered(offer.kind, offer.direction);
        let codecs_ok = answered.codecs.iter().all(|c| {
            table
                .clone()
                .any(|t| t.pt == c.pt && t.name.eq_ignore_ascii_case(&c.name))
        });
        let rtx_ok = answered.rtx.iter().all(|(rtx, apt)| {
            table
                .clone()
                .any(|t| t.rtx_pt == Some(*rtx) && t.pt == *apt)
        });
        if !codecs_ok || !rtx_ok {
            return Err(NegotiationError::UnofferedPayloadType { media_index: index });
        }
    }
    Ok(())
}
