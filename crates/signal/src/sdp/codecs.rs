//! The server's fixed payload-type and header-extension tables.
//!
//! Every participant is offered exactly the same payload types and extension ids,
//! so a packet forwarded from one participant to another never needs its payload
//! type or extension ids rewritten: the SFU only rewrites SSRCs and sequence numbers.

use super::types::{Direction, Kind};

/// One entry of the fixed payload-type table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecSpec {
    /// RTP payload type.
    pub pt: u8,
    /// Encoding name as written in `a=rtpmap` (case as browsers write it).
    pub name: &'static str,
    /// RTP clock rate in Hz.
    pub clock_rate_hz: u32,
    /// Audio channel count, written as the third rtpmap field when present.
    pub channels: Option<u8>,
    /// The `a=fmtp` parameters, if any.
    pub fmtp: Option<&'static str>,
    /// The payload type of the matching RTX stream (RFC 4588), if any.
    pub rtx_pt: Option<u8>,
}

/// Opus payload type.
pub const OPUS_PT: u8 = 111;
/// VP8 payload type.
pub const VP8_PT: u8 = 96;
/// VP8 retransmission payload type.
pub const VP8_RTX_PT: u8 = 97;
/// VP9 payload type.
pub const VP9_PT: u8 = 98;
/// VP9 retransmission payload type.
pub const VP9_RTX_PT: u8 = 99;
/// H.264 payload type.
pub const H264_PT: u8 = 102;
/// H.264 retransmission payload type.
pub const H264_RTX_PT: u8 = 103;

/// Opus carried with redundancy (RFC 2198 RED) payload type.
pub const RED_AUDIO_PT: u8 = 63;

/// Audio codecs in order of preference. RED comes after Opus, so a browser sends plain
/// Opus (it sends RED only when RED is its first codec) while its receiver accepts RED:
/// the server adds redundancy per subscriber, only toward those whose link loses
/// packets.
pub const AUDIO_CODECS: &[CodecSpec] = &[
    CodecSpec {
        pt: OPUS_PT,
        name: "opus",
        clock_rate_hz: 48_000,
        channels: Some(2),
        fmtp: Some("minptime=10;useinbandfec=1"),
        rtx_pt: None,
    },
    CodecSpec {
        pt: RED_AUDIO_PT,
        name: "red",
        clock_rate_hz: 48_000,
        channels: Some(2),
        fmtp: Some("111/111"),
        rtx_pt: None,
    },
];

/// Video codecs in order of preference.
pub const VIDEO_CODECS: &[CodecSpec] = &[
    CodecSpec {
        pt: VP8_PT,
        name: "VP8",
        clock_rate_hz: 90_000,
        channels: None,
        fmtp: None,
        rtx_pt: Some(VP8_RTX_PT),
    },
    CodecSpec {
        pt: VP9_PT,
        name: "VP9",
        clock_rate_hz: 90_000,
        channels: None,
        fmtp: Some("profile-id=0"),
        rtx_pt: Some(VP9_RTX_PT),
    },
    CodecSpec {
        pt: H264_PT,
        name: "H264",
        clock_rate_hz: 90_000,
        channels: None,
        fmtp: Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
        rtx_pt: Some(H264_RTX_PT),
    },
];

/// Video carried in RED (RFC 2198), the container of ULPFEC: payload type.
pub const RED_VIDEO_PT: u8 = 116;
/// Retransmissions (RFC 4588) of video sent in RED.
pub const RED_VIDEO_RTX_PT: u8 = 117;
/// ULPFEC (RFC 5109) parity packets, always sent inside RED.
pub const ULPFEC_PT: u8 = 118;

/// Codecs offered after [`VIDEO_CODECS`] on the video m-lines the server sends on only:
/// RED and ULPFEC let the SFU add parity packets toward a subscriber whose link loses
/// packets. They are not offered where the browser sends (its camera): a browser that
/// negotiated them would wrap its own video in RED and add FEC, which the SFU forwards
/// per encoding and would have to unpack first.
pub const VIDEO_FEC_CODECS: &[CodecSpec] = &[
    CodecSpec {
        pt: RED_VIDEO_PT,
        name: "red",
        clock_rate_hz: 90_000,
        channels: None,
        fmtp: None,
        rtx_pt: Some(RED_VIDEO_RTX_PT),
    },
    CodecSpec {
        pt: ULPFEC_PT,
        name: "ulpfec",
        clock_rate_hz: 90_000,
        channels: None,
        fmtp: None,
        rtx_pt: None,
    },
];

/// RTCP feedback types offered for every video codec.
pub const VIDEO_RTCP_FB: &[&str] = &["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"];

/// RTCP feedback types offered for every audio codec.
pub const AUDIO_RTCP_FB: &[&str] = &["transport-cc"];

/// Extension id of `urn:ietf:params:rtp-hdrext:sdes:mid`.
pub const EXT_MID_ID: u8 = 1;
/// Extension id of abs-send-time.
pub const EXT_ABS_SEND_TIME_ID: u8 = 2;
/// Extension id of transport-wide congestion control sequence numbers.
pub const EXT_TRANSPORT_CC_ID: u8 = 3;
/// Extension id of the client-to-mixer audio level (audio m-lines only).
pub const EXT_AUDIO_LEVEL_ID: u8 = 4;

/// Extension id of the RTP stream id naming a simulcast encoding (RFC 8852); only on
/// m-lines that receive simulcast.
pub const EXT_RID_ID: u8 = 5;
/// Extension id of the repaired RTP stream id (the encoding an RTX stream repairs).
pub const EXT_REPAIRED_RID_ID: u8 = 6;

/// URI of the MID header extension (RFC 8843).
pub const EXT_MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// URI of abs-send-time.
pub const EXT_ABS_SEND_TIME_URI: &str =
    "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
/// URI of transport-wide congestion control.
pub const EXT_TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// URI of the client-to-mixer audio level (RFC 6464).
pub const EXT_AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
/// URI of the RTP stream id (RFC 8852).
pub const EXT_RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
/// URI of the repaired RTP stream id (RFC 8852).
pub const EXT_REPAIRED_RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";

/// The codecs offered for `kind`, in order of preference.
pub fn codecs_for(kind: Kind) -> &'static [CodecSpec] {
    match kind {
        Kind::Audio => AUDIO_CODECS,
        Kind::Video => VIDEO_CODECS,
    }
}

/// The codecs offered on an m-line of `kind` on which the server's direction is
/// `direction`: [`codecs_for`], plus [`VIDEO_FEC_CODECS`] on video m-lines the server
/// sends on.
pub fn codecs_offered(
    kind: Kind,
    direction: Direction,
) -> impl Iterator<Item = &'static CodecSpec> + Clone {
    let fec: &'static [CodecSpec] = if kind == Kind::Video && direction == Direction::SendOnly {
        VIDEO_FEC_CODECS
    } else {
        &[]
    };
    codecs_for(kind).iter().chain(fec)
}

/// Whether `spec` is one of the containers ([`VIDEO_FEC_CODECS`]) rather than a codec:
/// no RTCP feedback is offered for it.
pub fn is_fec_container(spec: &CodecSpec) -> bool {
    VIDEO_FEC_CODECS.iter().any(|c| c.pt == spec.pt)
}

/// The RTCP feedback types offered for every codec of `kind`.
pub fn rtcp_fb_for(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Audio => AUDIO_RTCP_FB,
        Kind::Video => VIDEO_RTCP_FB,
    }
}

/// The header extensions offered on an m-line of `kind`, as `(id, uri)`.
///
/// Ids are identical across kinds because BUNDLE puts every m-line on one
/// RTP session, where an id can only mean one extension.
pub fn extensions_for(kind: Kind) -> &'static [(u8, &'static str)] {
    const AUDIO: &[(u8, &str)] = &[
        (EXT_MID_ID, EXT_MID_URI),
        (EXT_ABS_SEND_TIME_ID, EXT_ABS_SEND_TIME_URI),
        (EXT_TRANSPORT_CC_ID, EXT_TRANSPORT_CC_URI),
        (EXT_AUDIO_LEVEL_ID, EXT_AUDIO_LEVEL_URI),
    ];
    const VIDEO: &[(u8, &str)] = &[
        (EXT_MID_ID, EXT_MID_URI),
        (EXT_ABS_SEND_TIME_ID, EXT_ABS_SEND_TIME_URI),
        (EXT_TRANSPORT_CC_ID, EXT_TRANSPORT_CC_URI),
    ];
    match kind {
        Kind::Audio => AUDIO,
        Kind::Video => VIDEO,
    }
}

/// Every payload type (media and RTX) offered for `kind` in `direction` (see
/// [`codecs_offered`]), in m-line order.
pub fn payload_types_for(kind: Kind, direction: Direction) -> impl Iterator<Item = u8> {
    codecs_offered(kind, direction).flat_map(|c| std::iter::once(c.pt).chain(c.rtx_pt))
}

/// Looks up the codec spec whose media payload type is `pt` on an m-line of `kind`.
pub fn codec_by_pt(kind: Kind, pt: u8) -> Option<&'static CodecSpec> {
    codecs_for(kind).iter().find(|c| c.pt == pt)
}
