//! Small value types shared by the offer writer and the answer parser.

use std::fmt;

/// The media kind of an m-line. Sluice only negotiates audio and video.
///
/// Also a field of signalling messages (`"audio"`, `"video"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `m=audio`
    Audio,
    /// `m=video`
    Video,
}

impl Kind {
    /// The token used on the `m=` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }

    /// Parses the media token of an `m=` line; anything but audio/video is `None`.
    pub fn from_token(token: &str) -> Option<Self> {
        match token {
            "audio" => Some(Kind::Audio),
            "video" => Some(Kind::Video),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The direction attribute of an m-line, always from the point of view of the
/// side that wrote the description.
///
/// The server's offers only use `SendOnly`, `RecvOnly` and `Inactive`; an answer
/// may also say `SendRecv` (a browser that did not narrow its transceiver).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `a=sendonly`
    SendOnly,
    /// `a=recvonly`
    RecvOnly,
    /// `a=inactive`
    Inactive,
    /// `a=sendrecv` (also the default when no direction attribute is present).
    SendRecv,
}

impl Direction {
    /// The attribute name without `a=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
            Direction::SendRecv => "sendrecv",
        }
    }

    /// Parses a direction attribute name.
    pub fn from_attribute(name: &str) -> Option<Self> {
        match name {
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            "sendrecv" => Some(Direction::SendRecv),
            _ => None,
        }
    }

    /// Whether the writer of the description sends media on this m-line.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendOnly | Direction::SendRecv)
    }

    /// Whether the writer of the description receives media on this m-line.
    pub fn receives(self) -> bool {
        matches!(self, Direction::RecvOnly | Direction::SendRecv)
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The DTLS role attribute `a=setup` (RFC 4145, RFC 8842).
///
/// In an offer `ActPass` lets the answerer choose; browsers answer `Active`,
/// which makes the server the DTLS server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setup {
    /// `a=setup:actpass`: either role, the answerer decides.
    ActPass,
    /// `a=setup:active`: this side is the DTLS client.
    Active,
    /// `a=setup:passive`: this side is the DTLS server.
    Passive,
}

impl Setup {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::ActPass => "actpass",
            Setup::Active => "active",
            Setup::Passive => "passive",
        }
    }

    /// Parses an `a=setup` value (`holdconn` is not supported and yields `None`).
    pub fn from_value(value: &str) -> Option<Self> {
        match value {
            "actpass" => Some(Setup::ActPass),
            "active" => Some(Setup::Active),
            "passive" => Some(Setup::Passive),
            _ => None,
        }
    }

    /// Whether an answerer's `answer` is a legal reply to an offer that said `self`
    /// (RFC 8842 section 5.3).
    pub fn accepts_answer(self, answer: Setup) -> bool {
        match self {
            Setup::ActPass => matches!(answer, Setup::Active | Setup::Passive),
            Setup::Active => answer == Setup::Passive,
            Setup::Passive => answer == Setup::Active,
        }
    }
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
