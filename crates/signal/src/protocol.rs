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
}

impl ParticipantInfo {
    /// A participant with microphone and camera on.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            audio_muted: false,
            video_muted: false,
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
        });
        assert_eq!(
            text,
            r#"{"type":"participant_joined","id":"p2","name":"Bo","audio_muted":false,"video_muted":true}"#
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
            },
            ServerMessage::ParticipantJoined {
                id: "p2".into(),
                name: "Bo".into(),
                audio_muted: true,
                video_muted: false,
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
