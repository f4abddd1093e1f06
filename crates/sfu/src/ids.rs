//! Identifiers and the descriptions of publications and subscriptions that signalling
//! hands to the router.

/// A participant (one peer connection) as named by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParticipantId(pub u64);

impl std::fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A published track, allocated by [`Router::publish`](crate::Router::publish).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrackId(pub u64);

/// Media kind of a track; decides clock rate, keyframe handling and NACK/RTX use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Opus at 48 kHz: no keyframes, no retransmission cache by default.
    Audio,
    /// VP8/VP9/H264 at 90 kHz: keyframe gating, PLI, NACK and RTX.
    Video,
}

impl Kind {
    /// RTP clock rate of every codec of this kind in Sluice's fixed payload table.
    pub fn clock_rate_hz(self) -> u32 {
        match self {
            Kind::Audio => 48_000,
            Kind::Video => 90_000,
        }
    }
}

/// What a publisher sends on one m-line of its answer.
///
/// Browsers' answers often carry no `a=ssrc` lines; then `ssrc`/`rtx_ssrc` are `None` and
/// the router learns them from the MID header extension of the first packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackSpec {
    /// The m-line's MID, as carried in the `sdes:mid` header extension (1..=16 bytes).
    pub mid: String,
    /// Audio or video.
    pub kind: Kind,
    /// Media SSRC, if the answer announced it.
    pub ssrc: Option<u32>,
    /// RTX SSRC (`a=ssrc-group:FID`), if announced.
    pub rtx_ssrc: Option<u32>,
    /// Simulcast: the RTP stream ids (`a=rid`) of the encodings the answer sends, lowest
    /// quality first. Their SSRCs are learnt from the RID and repaired-RID header
    /// extensions. Empty for a track sent as one encoding (`ssrc`/`rtx_ssrc` apply then).
    pub rids: Vec<String>,
}

impl TrackSpec {
    /// A track sent as one encoding whose SSRCs are learnt from the MID extension.
    pub fn new(mid: impl Into<String>, kind: Kind) -> Self {
        Self {
            mid: mid.into(),
            kind,
            ssrc: None,
            rtx_ssrc: None,
            rids: Vec::new(),
        }
    }
}

/// What the server announced to a subscriber in the m-line that carries a track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSpec {
    /// The SSRC written into every packet to this subscriber.
    pub ssrc: u32,
    /// The RTX SSRC of the FID group; NACKs are answered with RTX on it when set, with
    /// plain retransmissions otherwise.
    pub rtx_ssrc: Option<u32>,
    /// The subscriber-side MID of the m-line. When set, a forwarded `sdes:mid` extension
    /// is rewritten to it (or hidden if the lengths differ, since extensions are never
    /// resized in place); when `None` the publisher's MID is left as is.
    pub mid: Option<String>,
    /// The media payload types the subscriber's answer accepted on the m-line. A packet
    /// of any other payload type is not forwarded: the subscriber could not decode it,
    /// and an independent receiver may treat it as a protocol error. Empty accepts all.
    /// On video, RED ([`PT_RED_VIDEO`](crate::media::PT_RED_VIDEO)) and ULPFEC
    /// ([`PT_ULPFEC`](crate::media::PT_ULPFEC)) among them let the router add FEC toward
    /// a lossy subscriber, and the RTX payload type of RED
    /// ([`PT_RED_VIDEO_RTX`](crate::media::PT_RED_VIDEO_RTX)) lets it retransmit a
    /// packet sent in RED as it was sent.
    pub payload_types: Vec<u8>,
}

impl SubscriptionSpec {
    /// A subscription announced with `ssrc` only (no RTX, MID left unchanged, every
    /// payload type accepted).
    pub fn new(ssrc: u32) -> Self {
        Self {
            ssrc,
            rtx_ssrc: None,
            mid: None,
            payload_types: Vec::new(),
        }
    }
}
