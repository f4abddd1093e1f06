//! The offer writer: the server's SDP offer for one participant's peer connection.
//!
//! Every offer has the same shape: session-level `a=ice-lite`, one BUNDLE group with
//! every m-line, rtcp-mux and reduced-size RTCP, the fixed payload-type table of
//! [`super::codecs`], our host candidates inside the SDP (we never trickle), and for
//! each `sendonly` m-line the SSRC (and RTX SSRC) the SFU will send with.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::candidate::write_host_candidates;
use super::codecs::{
    codecs_for, codecs_offered, extensions_for, is_fec_container, payload_types_for, rtcp_fb_for,
    EXT_REPAIRED_RID_ID, EXT_REPAIRED_RID_URI, EXT_RID_ID, EXT_RID_URI,
};
use super::error::SdpError;
use super::fingerprint::{format_sha256, SHA256_NAME};
use super::types::{Direction, Kind, Setup};
use super::MAX_MEDIA_SECTIONS;

/// Longest identifier (mid, stream id, track id, cname) the writer accepts: msid ids
/// are limited to 64 characters by RFC 8830, and the rest gain nothing from more.
pub const MAX_ID_LEN: usize = 64;

/// Everything needed to write one offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferParams {
    /// The `o=` session id; must stay the same across re-offers and be below 2^63.
    pub session_id: u64,
    /// The `o=` session version; must increase with every new offer.
    pub version: u64,
    /// Our ICE credentials `(ufrag, pwd)`.
    pub ice: (String, String),
    /// SHA-256 digest of our DTLS certificate (DER).
    pub fingerprint_sha256: [u8; 32],
    /// Our DTLS role offer.
    pub setup: Setup,
    /// Our host candidates, most preferred first.
    pub candidates: Vec<SocketAddr>,
    /// The m-lines, in their fixed order.
    pub media: Vec<MediaSection>,
}

/// One m-line of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    /// The media id (`a=mid`), unique in the offer.
    pub mid: String,
    /// Audio or video.
    pub kind: Kind,
    /// The server's direction (`SendRecv` is not used by Sluice and is rejected).
    pub direction: Direction,
    /// What the server sends on a `sendonly` m-line; required there, ignored otherwise.
    pub send: Option<SendStream>,
    /// Simulcast the server asks to receive on a `recvonly` video m-line: the RIDs of the
    /// encodings, lowest quality first (`a=rid:<rid> recv`, `a=simulcast:recv`, and the
    /// RID header extensions). Empty: one encoding.
    pub simulcast: Vec<String>,
}

/// Most simulcast encodings asked for on one m-line.
pub const MAX_SIMULCAST_RIDS: usize = 3;

/// RFC 8851 `rid-id`: alphanumerics, `-` and `_`; at most 16 bytes so it fits the
/// one-byte header extension.
pub fn is_valid_rid(rid: &str) -> bool {
    !rid.is_empty()
        && rid.len() <= 16
        && rid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The identity of a stream the server forwards on a `sendonly` m-line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SendStream {
    /// The msid stream id: the id of the participant whose media this is.
    pub stream_id: String,
    /// The msid track id.
    pub track_id: String,
    /// The SSRC the server sends media with.
    pub ssrc: u32,
    /// The SSRC of the RTX stream (video only).
    pub rtx_ssrc: Option<u32>,
    /// The RTCP canonical name of the source.
    pub cname: String,
}

/// Writes an offer from [`OfferParams`].
///
/// ```
/// use sluice_signal::sdp::{Direction, Kind, MediaSection, OfferBuilder, OfferParams, Setup};
/// let params = OfferParams {
///     session_id: 1,
///     version: 1,
///     ice: ("ufrag".into(), "0123456789abcdefghijkl".into()),
///     fingerprint_sha256: [0; 32],
///     setup: Setup::ActPass,
///     candidates: vec!["192.0.2.1:3478".parse().unwrap()],
///     media: vec![MediaSection { mid: "0".into(), kind: Kind::Audio,
///                                direction: Direction::RecvOnly, send: None,
///                                simulcast: vec![] }],
/// };
/// let sdp = OfferBuilder::new(&params).build().unwrap();
/// assert!(sdp.starts_with("v=0\r\n"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct OfferBuilder<'a> {
    params: &'a OfferParams,
}

impl<'a> OfferBuilder<'a> {
    /// Prepares to write `params`.
    pub fn new(params: &'a OfferParams) -> Self {
        Self { params }
    }

    /// Validates the parameters and writes the SDP with CRLF line endings.
    pub fn build(&self) -> Result<String, SdpError> {
        validate(self.params)?;
        Ok(write(self.params))
    }
}

/// Shorthand for `OfferBuilder::new(params).build()`.
pub fn write_offer(params: &OfferParams) -> Result<String, SdpError> {
    OfferBuilder::new(params).build()
}

fn invalid(field: &'static str, reason: &'static str) -> SdpError {
    SdpError::InvalidOffer { field, reason }
}

/// RFC 8866 `token-char`, which is what msid ids, mids and cnames must consist of
/// for the lines we write to parse back unambiguously.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`{|}~".contains(c)
}

fn check_id(value: &str, field: &'static str) -> Result<(), SdpError> {
    if value.is_empty() {
        return Err(invalid(field, "empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(invalid(field, "longer than 64 characters"));
    }
    if !value.chars().all(is_token_char) {
        return Err(invalid(field, "not an RFC 8866 token"));
    }
    Ok(())
}

/// RFC 8839 `ice-char`: ALPHA / DIGIT / "+" / "/".
fn check_ice(value: &str, field: &'static str, min_len: usize) -> Result<(), SdpError> {
    if value.len() < min_len || value.len() > 256 {
        return Err(invalid(field, "length out of the RFC 8839 range"));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
    {
        return Err(invalid(field, "not made of ice-char"));
    }
    Ok(())
}

fn validate(params: &OfferParams) -> Result<(), SdpError> {
    if params.session_id > i64::MAX as u64 {
        return Err(invalid("session_id", "must be below 2^63"));
    }
    check_ice(&params.ice.0, "ice.ufrag", 4)?;
    check_ice(&params.ice.1, "ice.pwd", 22)?;
    if params.media.is_empty() {
        return Err(invalid("media", "an offer needs at least one m-line"));
    }
    if params.media.len() > MAX_MEDIA_SECTIONS {
        return Err(SdpError::TooManyMediaSections {
            max: MAX_MEDIA_SECTIONS,
        });
    }
    for (index, section) in params.media.iter().enumerate() {
        check_id(&section.mid, "mid")?;
        if section.mid.len() > 16 {
            // The MID header extension carries at most 16 bytes.
            return Err(invalid("mid", "longer than 16 bytes"));
        }
        if params
            .media
            .iter()
            .take(index)
            .any(|s| s.mid == section.mid)
        {
            return Err(SdpError::DuplicateMid { media_index: index });
        }
        match section.direction {
            Direction::SendRecv => {
                return Err(invalid("direction", "Sluice never offers sendrecv"))
            }
            Direction::SendOnly => {
                let send = section
                    .send
                    .as_ref()
                    .ok_or(invalid("send", "a sendonly m-line needs a send stream"))?;
                check_id(&send.stream_id, "send.stream_id")?;
                check_id(&send.track_id, "send.track_id")?;
                check_id(&send.cname, "send.cname")?;
                match (section.kind, send.rtx_ssrc) {
                    (Kind::Audio, Some(_)) => {
                        return Err(invalid("send.rtx_ssrc", "audio has no RTX"))
                    }
                    (Kind::Video, Some(rtx)) if rtx == send.ssrc => {
                        return Err(invalid("send.rtx_ssrc", "equals the media ssrc"))
                    }
                    _ => {}
                }
            }
            Direction::RecvOnly | Direction::Inactive => {}
        }
        if !section.simulcast.is_empty() {
            if section.kind != Kind::Video || section.direction != Direction::RecvOnly {
                return Err(invalid("simulcast", "only on a recvonly video m-line"));
            }
            if section.simulcast.len() > MAX_SIMULCAST_RIDS {
                return Err(invalid("simulcast", "more than 3 encodings"));
            }
            if !section.simulcast.iter().all(|r| is_valid_rid(r)) {
                return Err(invalid("simulcast", "not an RFC 8851 rid-id of 16 bytes"));
            }
            let unique = section
                .simulcast
                .iter()
                .enumerate()
                .all(|(i, r)| !section.simulcast.iter().take(i).any(|x| x == r));
            if !unique {
                return Err(invalid("simulcast", "a RID appears twice"));
            }
        }
    }
    Ok(())
}

fn write(params: &OfferParams) -> String {
    let mut out = String::with_capacity(1024 + params.media.len() * 1536);
    let _ = write!(
        out,
        "v=0\r\no=- {} {} IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n",
        params.session_id, params.version
    );
    out.push_str("a=ice-lite\r\n");
    out.push_str("a=group:BUNDLE");
    for section in &params.media {
        out.push(' ');
        out.push_str(&section.mid);
    }
    out.push_str("\r\n");
    out.push_str("a=msid-semantic: WMS *\r\n");

    let fingerprint = format_sha256(&params.fingerprint_sha256);
    for section in &params.media {
        write_media(&mut out, params, section, &fingerprint);
    }
    out
}

/// The transport lines every m-line repeats (identical across the BUNDLE group, so
/// the m-line that carries the group's transport may change without renegotiating it).
fn write_transport(out: &mut String, params: &OfferParams, fingerprint: &str) {
    write_host_candidates(out, &params.candidates);
    out.push_str("a=end-of-candidates\r\n");
    let _ = write!(
        out,
        "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:{SHA256_NAME} {fingerprint}\r\na=setup:{}\r\n",
        params.ice.0, params.ice.1, params.setup
    );
}

/// An inactive m-line (a track no longer sent or received, kept because m-lines are
/// never removed and recycled later): nothing flows on it, so it carries only what an
/// m-line of the BUNDLE group still needs (its mid, its direction, rtcp-mux, the shared
/// transport) and a single payload type, since an m-line must list at least one. No
/// feedback, fmtp, RTX, header extensions or SSRCs: the offer of a participant who
/// unsubscribed from most of a large room costs about what its remaining tracks do.
/// The full codec block comes back when the m-line is reused.
fn write_inactive_media(
    out: &mut String,
    params: &OfferParams,
    section: &MediaSection,
    fingerprint: &str,
) {
    let kind = section.kind;
    let codec = codecs_for(kind).first();
    let pt = codec.map_or(0, |c| c.pt);
    let _ = write!(
        out,
        "m={kind} 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\n"
    );
    write_transport(out, params, fingerprint);
    let _ = write!(out, "a=mid:{}\r\na=inactive\r\na=rtcp-mux\r\n", section.mid);
    if let Some(codec) = codec {
        let _ = write!(out, "a=rtpmap:{pt} {}/{}", codec.name, codec.clock_rate_hz);
        if let Some(channels) = codec.channels {
            let _ = write!(out, "/{channels}");
        }
        out.push_str("\r\n");
    }
}

fn write_media(out: &mut String, params: &OfferParams, section: &MediaSection, fingerprint: &str) {
    if section.direction == Direction::Inactive {
        write_inactive_media(out, params, section, fingerprint);
        return;
    }
    let kind = section.kind;
    let _ = write!(out, "m={kind} 9 UDP/TLS/RTP/SAVPF");
    for pt in payload_types_for(kind, section.direction) {
        let _ = write!(out, " {pt}");
    }
    out.push_str("\r\nc=IN IP4 0.0.0.0\r\n");
    write_transport(out, params, fingerprint);
    let _ = write!(out, "a=mid:{}\r\n", section.mid);
    for (id, uri) in extensions_for(kind) {
        let _ = write!(out, "a=extmap:{id} {uri}\r\n");
    }
    if !section.simulcast.is_empty() {
        let _ = write!(
            out,
            "a=extmap:{EXT_RID_ID} {EXT_RID_URI}\r\na=extmap:{EXT_REPAIRED_RID_ID} {EXT_REPAIRED_RID_URI}\r\n"
        );
    }
    let _ = write!(out, "a={}\r\n", section.direction);
    if !section.simulcast.is_empty() {
        for rid in &section.simulcast {
            let _ = write!(out, "a=rid:{rid} recv\r\n");
        }
        let _ = write!(out, "a=simulcast:recv {}\r\n", section.simulcast.join(";"));
    }
    let send = match section.direction {
        Direction::SendOnly => section.send.as_ref(),
        _ => None,
    };
    if let Some(send) = send {
        let _ = write!(out, "a=msid:{} {}\r\n", send.stream_id, send.track_id);
    }
    out.push_str("a=rtcp-mux\r\na=rtcp-rsize\r\n");
    for codec in codecs_offered(kind, section.direction) {
        let pt = codec.pt;
        let _ = write!(out, "a=rtpmap:{pt} {}/{}", codec.name, codec.clock_rate_hz);
        if let Some(channels) = codec.channels {
            let _ = write!(out, "/{channels}");
        }
        out.push_str("\r\n");
        let fb: &[&str] = if is_fec_container(codec) {
            &[]
        } else {
            rtcp_fb_for(kind)
        };
        for fb in fb {
            let _ = write!(out, "a=rtcp-fb:{pt} {fb}\r\n");
        }
        if let Some(fmtp) = codec.fmtp {
            let _ = write!(out, "a=fmtp:{pt} {fmtp}\r\n");
        }
        if let Some(rtx) = codec.rtx_pt {
            let _ = write!(
                out,
                "a=rtpmap:{rtx} rtx/{}\r\na=fmtp:{rtx} apt={pt}\r\n",
                codec.clock_rate_hz
            );
        }
    }
    if let Some(send) = send {
        let rtx = match kind {
            Kind::Video => send.rtx_ssrc,
            Kind::Audio => None,
        };
        if let Some(rtx) = rtx {
            let _ = write!(out, "a=ssrc-group:FID {} {rtx}\r\n", send.ssrc);
        }
        for ssrc in std::iter::once(send.ssrc).chain(rtx) {
            let _ = write!(
                out,
                "a=ssrc:{ssrc} cname:{}\r\na=ssrc:{ssrc} msid:{} {}\r\n",
                send.cname, send.stream_id, send.track_id
            );
        }
    }
}
