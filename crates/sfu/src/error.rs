//! The crate's error type: why a control-plane call (join, publish, subscribe) was refused.
//!
//! The media path never returns errors: a packet it cannot use is dropped and counted by
//! [`RouterDrop`](crate::RouterDrop).

use thiserror::Error;

use crate::ids::{ParticipantId, TrackId};

/// Why a router call was refused. Nothing changed when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RouterError {
    /// `add_participant` with an id already present.
    #[error("participant {0:?} already exists")]
    ParticipantExists(ParticipantId),
    /// The participant is not on this router.
    #[error("unknown participant {0:?}")]
    UnknownParticipant(ParticipantId),
    /// The track is not on this router.
    #[error("unknown track {0:?}")]
    UnknownTrack(TrackId),
    /// The room holds `max_participants_per_room` participants.
    #[error("room is full ({max} participants)")]
    RoomFull {
        /// The configured limit.
        max: usize,
    },
    /// The router holds `max_participants` participants.
    #[error("router is full ({max} participants)")]
    RouterFull {
        /// The configured limit.
        max: usize,
    },
    /// The room name is empty or longer than `max_room_name_bytes`.
    #[error("room name of {len} bytes is empty or over the limit of {max}")]
    BadRoomName {
        /// Its length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The participant publishes `max_tracks_per_participant` tracks already.
    #[error("participant {participant:?} publishes too many tracks (max {max})")]
    TooManyTracks {
        /// The publisher.
        participant: ParticipantId,
        /// The configured limit.
        max: usize,
    },
    /// The participant has `max_subscriptions_per_participant` subscriptions already.
    #[error("participant {participant:?} has too many subscriptions (max {max})")]
    TooManySubscriptions {
        /// The subscriber.
        participant: ParticipantId,
        /// The configured limit.
        max: usize,
    },
    /// The participant would exceed `max_ssrcs_per_participant`.
    #[error("participant {participant:?} uses too many SSRCs (max {max})")]
    TooManySsrcs {
        /// The participant.
        participant: ParticipantId,
        /// The configured limit.
        max: usize,
    },
    /// The publisher already has a track with this MID.
    #[error("participant {participant:?} already publishes MID {mid:?}")]
    DuplicateMid {
        /// The publisher.
        participant: ParticipantId,
        /// The MID.
        mid: String,
    },
    /// The MID is empty or longer than 16 bytes (RFC 8843 one-byte extension limit).
    #[error("MID of {0} bytes is empty or longer than 16")]
    BadMid(usize),
    /// The simulcast RIDs are unusable: more than 3, one empty or longer than 16 bytes,
    /// on an audio track, or given together with announced SSRCs.
    #[error("{0} simulcast RIDs are not usable (at most 3 non-empty ones of 16 bytes, video only, no SSRCs)")]
    BadRids(usize),
    /// The SSRC is already used by this participant (as publisher, or announced to it as
    /// subscriber).
    #[error("SSRC {ssrc} already in use for participant {participant:?}")]
    SsrcInUse {
        /// The participant.
        participant: ParticipantId,
        /// The SSRC.
        ssrc: u32,
    },
    /// The subscriber already receives this track.
    #[error("participant {subscriber:?} already subscribes to {track:?}")]
    AlreadySubscribed {
        /// The subscriber.
        subscriber: ParticipantId,
        /// The track.
        track: TrackId,
    },
    /// The subscriber does not receive this track.
    #[error("participant {subscriber:?} does not subscribe to {track:?}")]
    NotSubscribed {
        /// The subscriber.
        subscriber: ParticipantId,
        /// The track.
        track: TrackId,
    },
    /// Subscriber and publisher are in different rooms.
    #[error("participant {subscriber:?} is not in the room of {track:?}")]
    DifferentRoom {
        /// The subscriber.
        subscriber: ParticipantId,
        /// The track.
        track: TrackId,
    },
    /// A participant cannot subscribe to its own track.
    #[error("participant {0:?} cannot subscribe to its own track")]
    OwnTrack(ParticipantId),
}
