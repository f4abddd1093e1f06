//! The WebSocket signalling protocol: JSON text frames with a `type` field.
//!
//! One WebSocket per participant at `/ws`. The client joins a room, the server
//! makes every offer and the client answers it (see `docs/signaling.md`).
//! [`decode_client_message`] is the only way client text should enter the server:
//! it checks the size before parsing and validates every field.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::sdp::Kind;
use crate::token::MAX_TOKEN_LEN;

/// Longest room name, in bytes.
pub const MAX_ROOM_LEN: usize = 64;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// A sensible `max_len` for [`decode_client_message`]: an answer SDP of
/// [`crate::sdp::MAX_SDP_LEN`] bytes plus JSON overhead and escaping.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = crate::sdp::MAX_SDP_LEN + 16 * 1024;

/// The version of the signalling protocol this crate implements (docs/signaling.md).
/// A client names it in `join`; the server names it in `joined`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Most track ids in one `subscribe` or `unsubscribe`: more than any room's tracks, few
/// enough that a hostile list costs little (the frame size bounds it anyway).
pub const MAX_TRACK_IDS: usize = 256;
/// Longest track id, in bytes (server ids are `p-<n>-<source>`, far shorter).
pub const MAX_TRACK_ID_LEN: usize = 64;

/// What a published track carries. A participant publishes at most one track per
/// source, so `(participant, source)` names a track and its id says both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The microphone (audio, mid `"0"`).
    Microphone,
    /// The camera (video, mid `"1"`, simulcast when asked for).
    Camera,
    /// A screen share (video, an m-line the server adds on `publish`).
    Screen,
}

impl Source {
    /// Every source, in the order tracks are listed.
    pub const ALL: [Source; 3] = [Source::Microphone, Source::Camera, Source::Screen];

    /// The media kind of this source's track.
    pub fn kind(self) -> Kind {
        match self {
            Source::Microphone => Kind::Audio,
            Source::Camera | Source::Screen => Kind::Video,
        }
    }

    /// The wire name (`microphone`, `camera`, `screen`).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Microphone => "microphone",
            Source::Camera => "camera",
            Source::Screen => "screen",
        }
    }
}

/// One published track as the others are told about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// Stable for the life of the publication; the msid track id of its m-lines and
    /// what `subscribe` and `unsubscribe` name.
    pub id: String,
    /// Audio or video.
    pub kind: Kind,
    /// Microphone, camera or screen.
    pub source: Source,
    /// Its owner turned it off (`mute`); always false for a screen.
    #[serde(default)]
    pub muted: bool,
}

/// Where the server receives one of the client's sources: the client attaches that
/// source's track to the transceiver of `mid` and sends on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishSlot {
    /// The m-line's mid.
    pub mid: String,
    /// What the server expects on it.
    pub source: Source,
}

/// A message from the browser to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Ask to join `room` as `name`; the first message on a connection.
    Join {
        /// Room name: 1-64 bytes of `A-Z a-z 0-9 - _ .`.
        room: String,
        /// Display name: 1-64 characters, no control characters.
        name: String,
        /// Join token (JWT HS256), required when the server is configured with keys.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// The protocol version the client speaks; absent means 1. A server that does
        /// not speak it refuses the join with `unsupported_version`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u32>,
    },
    /// The answer to the offer with the same `revision`.
    Answer {
        /// The revision of the offer being answered.
        revision: u64,
        /// The answer SDP.
        sdp: String,
    },
    /// This participant turned its microphone (`audio`) or camera (`video`) off or on.
    /// The server tells the others, so that they show a placeholder instead of the
    /// last frame they decoded.
    Mute {
        /// Which of its tracks.
        kind: Kind,
        /// Off (`true`) or on again.
        muted: bool,
    },
    /// How large this participant shows another participant's camera, in device pixels
    /// (0 x 0: not shown). The server sends a simulcast camera's smallest encoding that
    /// still fills the tile, so a thumbnail does not cost a full-resolution stream.
    VideoSize {
        /// The participant whose camera the tile shows.
        id: String,
        /// Rendered width in device pixels.
        width: u32,
        /// Rendered height in device pixels.
        height: u32,
    },
    /// Ask the server for an m-line to send `source` on (only `screen`: microphone and
    /// camera always have mids 0 and 1). The next offer carries it, named in its
    /// `publish` list; the track is published once an answer sends on it.
    Publish {
        /// What to publish.
        source: Source,
    },
    /// Stop publishing `source` (only `screen`): the others lose the track at once and
    /// its m-line turns inactive in the next offer, to be reused later.
    Unpublish {
        /// What to stop.
        source: Source,
    },
    /// Receive these tracks of others (ids from `joined`, `track_published`, ...).
    /// Each gets an m-line in the next offer, reusing an inactive one of its kind.
    Subscribe {
        /// At most [`MAX_TRACK_IDS`] ids.
        track_ids: Vec<String>,
    },
    /// Stop receiving these tracks: their m-lines turn inactive and are reused for the
    /// next subscriptions, so an offer grows with what is received, not with the room.
    Unsubscribe {
        /// At most [`MAX_TRACK_IDS`] ids.
        track_ids: Vec<String>,
    },
    /// Leave the room; the server replies `bye` and closes.
    Leave,
    /// Keep-alive; the server replies `pong`.
    Ping,
}

/// One participant as announced to others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    /// Server-assigned participant id (also the msid stream id of its media).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its microphone is off (it said so with `mute`); absent means false.
    #[serde(default)]
    pub audio_muted: bool,
    /// Its camera is off; absent means false.
    #[serde(default)]
    pub video_muted: bool,
    /// What it publishes now (absent from servers that predate tracks: empty).
    #[serde(default)]
    pub tracks: Vec<TrackInfo>,
}

impl ParticipantInfo {
    /// A participant with microphone and camera on that publishes nothing yet.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            audio_muted: false,
            video_muted: false,
            tracks: Vec::new(),
        }
    }
}

/// A message from the server to the browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The join succeeded; an `offer` follows.
    Joined {
        /// The protocol version the server speaks ([`PROTOCOL_VERSION`]).
        version: u32,
        /// This participant's id.
        participant_id: String,
        /// The room joined.
        room: String,
        /// Everyone else already in the room.
        participants: Vec<ParticipantInfo>,
    },
    /// An offer to answer with the same revision.
    Offer {
        /// Starts at 1 and increases by one per offer on this connection.
        revision: u64,
        /// The offer SDP.
        sdp: String,
        /// The m-lines on which the server receives from this client, and which source
        /// each must carry (mid 0 microphone, mid 1 camera, and a screen's m-line
        /// after `publish`). Absent means mids 0 and 1 only.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        publish: Vec<PublishSlot>,
    },
    /// Someone joined the room (their media arrives with an offer once they publish).
    ParticipantJoined {
        /// Participant id.
        id: String,
        /// Display name.
        name: String,
        /// Its microphone is off.
        #[serde(default)]
        audio_muted: bool,
        /// Its camera is off.
        #[serde(default)]
        video_muted: bool,
        /// What it publishes (nothing yet on a fresh join).
        #[serde(default)]
        tracks: Vec<TrackInfo>,
    },
    /// Someone published a track (its answer sends on the m-line). Subscribers get it in
    /// their next offer when they subscribe (by default: every microphone and screen,
    /// cameras up to `media.max_video_subscriptions`).
    TrackPublished {
        /// The owner.
        participant_id: String,
        /// The track.
        track: TrackInfo,
    },
    /// Someone stopped publishing a track; its m-line turns inactive in the next offer.
    TrackUnpublished {
        /// The owner.
        participant_id: String,
        /// The track's id.
        track_id: String,
    },
    /// Someone left the room.
    ParticipantLeft {
        /// Participant id.
        id: String,
    },
    /// Someone turned its microphone or camera off or on.
    ParticipantMuted {
        /// Participant id.
        id: String,
        /// Which of its tracks.
        kind: Kind,
        /// Off (`true`) or on again.
        muted: bool,
    },
    /// The server stopped (or resumed) forwarding someone's camera to this participant
    /// because its downlink cannot carry it, or because the room has more cameras than
    /// the server sends and the owner is not among the most recent speakers: show a
    /// paused state, not a frozen frame.
    VideoPaused {
        /// Participant id of the camera's owner.
        id: String,
        /// Stopped (`true`) or flowing again.
        paused: bool,
        /// `bandwidth` or `last_n`.
        reason: String,
    },
    /// Someone else became the room's dominant speaker (the one clearly speaking most).
    DominantSpeaker {
        /// Participant id.
        id: String,
    },
    /// Everyone else in the room now: replaces what the client knew. Sent when room
    /// changes could not be delivered one by one (the connection fell behind).
    RoomState {
        /// Everyone else in the room.
        participants: Vec<ParticipantInfo>,
    },
    /// A request failed; fatal codes are followed by `bye` and close.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable detail (never echoes client input).
        message: String,
    },
    /// Reply to `ping`.
    Pong,
    /// The server ends the session and closes the socket.
    Bye {
        /// Why.
        reason: String,
    },
}

/// Machine-readable error codes, snake_case on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The message was malformed or not valid in this state.
    BadRequest,
    /// The token is missing or invalid.
    Unauthorized,
    /// The room has reached its participant limit.
    RoomFull,
    /// The server has reached its room limit.
    TooManyRooms,
    /// The message needs a joined room.
    NotInRoom,
    /// The client sends too fast.
    RateLimited,
    /// The message exceeds the size limit.
    MessageTooLarge,
    /// The server is shutting down.
    ShuttingDown,
    /// Something went wrong on the server.
    Internal,
    /// The join named a protocol version this server does not speak.
    UnsupportedVersion,
    /// A cluster node cannot place the room: the shared store (Redis) or the room's
    /// node is unreachable. Transient: the client may retry with backoff.
    ClusterUnavailable,
    /// A `subscribe` or `unsubscribe` named a track that is not published in the room
    /// (now). The other ids of the message were applied.
    UnknownTrack,
    /// A `subscribe` would exceed `media.max_video_subscriptions` cameras; the ids
    /// beyond it were not subscribed.
    SubscriptionLimit,
}

impl ErrorCode {
    /// The wire name (`bad_request`, ...), also a good metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::ClusterUnavailable => "cluster_unavailable",
            ErrorCode::UnknownTrack => "unknown_track",
            ErrorCode::SubscriptionLimit => "subscription_limit",
        }
    }
}

/// Why a client message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// The text is longer than the limit (checked before parsing).
    #[error("message is {len} bytes, more than the {max_len}-byte limit")]
    TooLarge {
        /// Message length in bytes.
        len: usize,
        /// The limit.
        max_len: usize,
    },
    /// Not JSON, unknown `type`, or missing/mistyped fields.
    #[error("malformed message at line {line}, column {column}")]
    Malformed {
        /// Line of the JSON error.
        line: usize,
        /// Column of the JSON error.
        column: usize,
    },
    /// The room name is empty, too long or has characters outside `A-Za-z0-9-_.`.
    #[error("invalid room name")]
    InvalidRoom,
    /// The display name is empty, too long or has control characters.
    #[error("invalid display name")]
    InvalidName,
    /// The token is longer than [`MAX_TOKEN_LEN`].
    #[error("token too long")]
    TokenTooLong,
    /// A `subscribe` or `unsubscribe` lists more than [`MAX_TRACK_IDS`] ids, or an id
    /// that is empty or longer than [`MAX_TRACK_ID_LEN`].
    #[error("invalid track id list")]
    InvalidTrackIds,
    /// The join names a protocol version other than [`PROTOCOL_VERSION`].
    #[error("protocol version {0} is not spoken here (this server speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u32),
}

impl ProtocolError {
    /// The code to send back in a [`ServerMessage::Error`].
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            ProtocolError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            _ => ErrorCode::BadRequest,
        }
    }
}

/// Whether `room` is an acceptable room name.
pub fn is_valid_room(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= MAX_ROOM_LEN
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `name` is an acceptable display name.
pub fn is_valid_name(name: &str) -> bool {
    !name.trim().is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && !name.chars().any(char::is_control)
}

/// Whether `ids` is an acceptable `subscribe`/`unsubscribe` list: bounded in length and
/// in each id's size, so what the server keeps or looks up per message is bounded.
pub fn are_valid_track_ids(ids: &[String]) -> bool {
    ids.len() <= MAX_TRACK_IDS
        && ids
            .iter()
            .all(|id| !id.is_empty() && id.len() <= MAX_TRACK_ID_LEN)
}

/// Parses and validates one client text frame, rejecting it before parsing when
/// it is longer than `max_len` bytes.
pub fn decode_client_message(text: &str, max_len: usize) -> Result<ClientMessage, ProtocolError> {
    if text.len() > max_len {
        return Err(ProtocolError::TooLarge {
            len: text.len(),
            max_len,
        });
    }
    let message: ClientMessage =
        serde_json::from_str(text).map_err(|e| ProtocolError::Malformed {
            line: e.line(),
            column: e.column(),
        })?;
    if let ClientMessage::Join {
        room,
        name,
        token,
        version,
    } = &message
    {
        if let Some(v) = version.filter(|&v| v != PROTOCOL_VERSION) {
            return Err(ProtocolError::UnsupportedVersion(v));
        }
        if !is_valid_room(room) {
            return Err(ProtocolError::InvalidRoom);
        }
        if !is_valid_name(name) {
            return Err(ProtocolError::InvalidName);
        }
        if token.as_ref().is_some_and(|t| t.len() > MAX_TOKEN_LEN) {
            return Err(ProtocolError::TokenTooLong);
        }
    }
    if let ClientMessage::Subscribe { track_ids } | ClientMessage::Unsubscribe { track_ids } =
        &message
    {
        if !are_valid_track_ids(track_ids) {
            return Err(ProtocolError::InvalidTrackIds);
        }
    }
    Ok(message)
}

/// Serializes a server message to one JSON text frame.
pub fn encode_server_message(message: &ServerMessage) -> String {
    // Enums of strings and integers always serialize.
    serde_json::to_string(message).unwrap_or_default()
}

/// Parses a server message (for test clients and load generators).
pub fn decode_server_message(text: &str, max_len: usize) -> Result<ServerMessage, ProtocolError> {
    if text.len() > max_len {
        return Err(ProtocolError::TooLarge {
            len: text.len(),
            max_len,
        });
    }
    serde_json::from_str(text).map_err(|e| ProtocolError::Malformed {
        line: e.line(),
        column: e.column(),
    })
}

/// Serializes a client message (for test clients and load generators).
pub fn encode_client_message(message: &ClientMessage) -> String {
    serde_json::to_string(message).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = DEFAULT_MAX_MESSAGE_LEN;

    #[test]
    fn tile_sizes_and_paused_video_travel_as_documented() {
        assert_eq!(
            decode_client_message(
                r#"{"type":"video_size","id":"p-3","width":320,"height":180}"#,
                MAX
            ),
            Ok(ClientMessage::VideoSize {
                id: "p-3".into(),
                width: 320,
                height: 180
            })
        );
        assert!(decode_client_message(
            r#"{"type":"video_size","id":"p-3","width":-1,"height":180}"#,
            MAX
        )
        .is_err());
        assert_eq!(
            encode_server_message(&ServerMessage::VideoPaused {
                id: "p-3".into(),
                paused: true,
                reason: "last_n".into(),
            }),
            r#"{"type":"video_paused","id":"p-3","paused":true,"reason":"last_n"}"#
        );
        assert_eq!(
            encode_server_message(&ServerMessage::DominantSpeaker { id: "p-4".into() }),
            r#"{"type":"dominant_speaker","id":"p-4"}"#
        );
    }

    #[test]
    fn join_decodes_with_and_without_token() {
        assert_eq!(
            decode_client_message(r#"{"type":"join","room":"standup","name":"Ada"}"#, MAX),
            Ok(ClientMessage::Join {
                room: "standup".into(),
                name: "Ada".into(),
                token: None,
                version: None,
            })
        );
        assert_eq!(
            decode_client_message(
                r#"{"type":"join","room":"a-b_c.d","name":"Zoë 🙂","token":"x.y.z"}"#,
                MAX
            ),
            Ok(ClientMessage::Join {
                room: "a-b_c.d".into(),
                name: "Zoë 🙂".into(),
                token: Some("x.y.z".into()),
                version: None,
            })
        );
        assert_eq!(
            decode_client_message(r#"{"type":"join","room":"r","name":"n","version":1}"#, MAX),
            Ok(ClientMessage::Join {
                room: "r".into(),
                name: "n".into(),
                token: None,
                version: Some(1),
            })
        );
    }

    #[test]
    fn a_join_in_another_protocol_version_is_refused_with_its_own_code() {
        let error =
            decode_client_message(r#"{"type":"join","room":"r","name":"n","version":2}"#, MAX)
                .unwrap_err();
        assert_eq!(error, ProtocolError::UnsupportedVersion(2));
        assert_eq!(error.code(), ErrorCode::UnsupportedVersion);
        assert_eq!(error.code().as_str(), "unsupported_version");
    }

    #[test]
    fn every_client_message_round_trips() {
        let messages = [
            ClientMessage::Join {
                room: "r".into(),
                name: "n".into(),
                token: Some("t".into()),
                version: Some(PROTOCOL_VERSION),
            },
            ClientMessage::Answer {
                revision: 7,
                sdp: "v=0\r\n".into(),
            },
            ClientMessage::Mute {
                kind: Kind::Video,
                muted: true,
            },
            ClientMessage::Publish {
                source: Source::Screen,
            },
            ClientMessage::Unpublish {
                source: Source::Screen,
            },
            ClientMessage::Subscribe {
                track_ids: vec!["p-2-video".into()],
            },
            ClientMessage::Unsubscribe {
                track_ids: Vec::new(),
            },
            ClientMessage::Leave,
            ClientMessage::Ping,
        ];
        for message in messages {
            let text = encode_client_message(&message);
            assert_eq!(decode_client_message(&text, MAX), Ok(message));
        }
    }

    #[test]
    fn server_messages_use_snake_case_tags_and_codes() {
        let text = encode_server_message(&ServerMessage::Error {
            code: ErrorCode::TooManyRooms,
            message: "limit".into(),
        });
        assert_eq!(
            text,
            r#"{"type":"error","code":"too_many_rooms","message":"limit"}"#
        );
        let text = encode_server_message(&ServerMessage::ParticipantJoined {
            id: "p2".into(),
            name: "Bo".into(),
            audio_muted: false,
            video_muted: true,
            tracks: Vec::new(),
        });
        assert_eq!(
            text,
            r#"{"type":"participant_joined","id":"p2","name":"Bo","audio_muted":false,"video_muted":true,"tracks":[]}"#
        );
        let text = encode_server_message(&ServerMessage::ParticipantMuted {
            id: "p2".into(),
            kind: Kind::Video,
            muted: true,
        });
        assert_eq!(
            text,
            r#"{"type":"participant_muted","id":"p2","kind":"video","muted":true}"#
        );
        assert_eq!(
            encode_server_message(&ServerMessage::Pong),
            r#"{"type":"pong"}"#
        );
    }

    #[test]
    fn every_server_message_round_trips() {
        let messages = [
            ServerMessage::Joined {
                version: PROTOCOL_VERSION,
                participant_id: "p1".into(),
                room: "r".into(),
                participants: vec![ParticipantInfo::new("p0", "Ada")],
            },
            ServerMessage::RoomState {
                participants: vec![ParticipantInfo {
                    audio_muted: true,
                    ..ParticipantInfo::new("p0", "Ada")
                }],
            },
            ServerMessage::ParticipantMuted {
                id: "p0".into(),
                kind: Kind::Audio,
                muted: false,
            },
            ServerMessage::Offer {
                revision: 1,
                sdp: "v=0\r\n".into(),
                publish: vec![PublishSlot {
                    mid: "4".into(),
                    source: Source::Screen,
                }],
            },
            ServerMessage::ParticipantJoined {
                id: "p2".into(),
                name: "Bo".into(),
                audio_muted: true,
                video_muted: false,
                tracks: vec![TrackInfo {
                    id: "p2-audio".into(),
                    kind: Kind::Audio,
                    source: Source::Microphone,
                    muted: true,
                }],
            },
            ServerMessage::TrackPublished {
                participant_id: "p2".into(),
                track: TrackInfo {
                    id: "p2-screen".into(),
                    kind: Kind::Video,
                    source: Source::Screen,
                    muted: false,
                },
            },
            ServerMessage::TrackUnpublished {
                participant_id: "p2".into(),
                track_id: "p2-screen".into(),
            },
            ServerMessage::ParticipantLeft { id: "p2".into() },
            ServerMessage::Error {
                code: ErrorCode::RoomFull,
                message: "full".into(),
            },
            ServerMessage::Pong,
            ServerMessage::Bye {
                reason: "leave".into(),
            },
        ];
        for message in messages {
            let text = encode_server_message(&message);
            assert_eq!(decode_server_message(&text, MAX), Ok(message));
        }
    }

    #[test]
    fn error_codes_serialize_to_their_documented_names() {
        let all = [
            ErrorCode::BadRequest,
            ErrorCode::Unauthorized,
            ErrorCode::RoomFull,
            ErrorCode::TooManyRooms,
            ErrorCode::NotInRoom,
            ErrorCode::RateLimited,
            ErrorCode::MessageTooLarge,
            ErrorCode::ShuttingDown,
            ErrorCode::Internal,
            ErrorCode::ClusterUnavailable,
            ErrorCode::UnknownTrack,
            ErrorCode::SubscriptionLimit,
        ];
        for code in all {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
    }

    #[test]
    fn oversized_message_is_rejected_before_parsing() {
        let text = format!(
            r#"{{"type":"answer","revision":1,"sdp":"{}"}}"#,
            "a".repeat(200)
        );
        let err = decode_client_message(&text, 100).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::TooLarge {
                len: text.len(),
                max_len: 100
            }
        );
        assert_eq!(err.code(), ErrorCode::MessageTooLarge);
        // Not even valid JSON, yet the size error wins: nothing was parsed.
        assert!(matches!(
            decode_client_message(&"{".repeat(101), 100),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn malformed_and_unknown_messages_are_bad_requests() {
        for text in [
            "",
            "not json",
            "[]",
            r#"{"room":"r"}"#,
            r#"{"type":"dance"}"#,
            r#"{"type":"join","room":"r"}"#,
            r#"{"type":"answer","revision":-1,"sdp":""}"#,
            r#"{"type":"answer","revision":"1","sdp":""}"#,
            r#"{"type":"mute","kind":"screen","muted":true}"#,
            r#"{"type":"mute","kind":"audio"}"#,
        ] {
            let err = decode_client_message(text, MAX).unwrap_err();
            assert!(matches!(err, ProtocolError::Malformed { .. }), "{text}");
            assert_eq!(err.code(), ErrorCode::BadRequest);
        }
    }

    #[test]
    fn room_names_are_limited_in_length_and_charset() {
        let join = |room: &str| {
            decode_client_message(
                &serde_json::json!({"type":"join","room":room,"name":"n"}).to_string(),
                MAX,
            )
        };
        assert!(join(&"r".repeat(MAX_ROOM_LEN)).is_ok());
        for bad in ["", "a b", "a/b", "../x", "é", "a\nb"] {
            assert_eq!(join(bad), Err(ProtocolError::InvalidRoom), "{bad:?}");
        }
        assert_eq!(
            join(&"r".repeat(MAX_ROOM_LEN + 1)),
            Err(ProtocolError::InvalidRoom)
        );
    }

    #[test]
    fn display_names_are_limited_in_length_and_control_characters() {
        let join = |name: &str| {
            decode_client_message(
                &serde_json::json!({"type":"join","room":"r","name":name}).to_string(),
                MAX,
            )
        };
        assert!(join(&"é".repeat(MAX_NAME_CHARS)).is_ok());
        for bad in ["", "   ", "a\u{0}b", "line\nbreak", "bell\u{7}"] {
            assert_eq!(join(bad), Err(ProtocolError::InvalidName), "{bad:?}");
        }
        assert_eq!(
            join(&"é".repeat(MAX_NAME_CHARS + 1)),
            Err(ProtocolError::InvalidName)
        );
    }

    #[test]
    fn subscription_lists_are_bounded_in_length_and_id_size() {
        let subscribe = |ids: Vec<String>| {
            decode_client_message(
                &serde_json::json!({"type":"subscribe","track_ids":ids}).to_string(),
                MAX,
            )
        };
        assert!(subscribe(vec!["p-1-video".into(); MAX_TRACK_IDS]).is_ok());
        for bad in [
            vec!["p-1-video".to_owned(); MAX_TRACK_IDS + 1],
            vec![String::new()],
            vec!["x".repeat(MAX_TRACK_ID_LEN + 1)],
        ] {
            let error = subscribe(bad).unwrap_err();
            assert_eq!(error, ProtocolError::InvalidTrackIds);
            assert_eq!(error.code(), ErrorCode::BadRequest);
        }
        let text = r#"{"type":"unsubscribe","track_ids":[1]}"#;
        assert!(decode_client_message(text, MAX).is_err());
        let text = r#"{"type":"publish","source":"window"}"#;
        assert!(decode_client_message(text, MAX).is_err());
    }

    #[test]
    fn a_version_one_participant_without_tracks_still_decodes() {
        // what a server without tracks sent: no `tracks`, no `publish`
        let joined = r#"{"type":"participant_joined","id":"p2","name":"Bo"}"#;
        assert!(matches!(
            decode_server_message(joined, MAX),
            Ok(ServerMessage::ParticipantJoined { tracks, .. }) if tracks.is_empty()
        ));
        let offer = r#"{"type":"offer","revision":1,"sdp":"v=0"}"#;
        assert!(matches!(
            decode_server_message(offer, MAX),
            Ok(ServerMessage::Offer { publish, .. }) if publish.is_empty()
        ));
    }

    #[test]
    fn oversized_token_is_rejected() {
        let text = serde_json::json!({
            "type":"join","room":"r","name":"n","token":"t".repeat(MAX_TOKEN_LEN + 1)
        })
        .to_string();
        assert_eq!(
            decode_client_message(&text, MAX),
            Err(ProtocolError::TokenTooLong)
        );
    }
}
