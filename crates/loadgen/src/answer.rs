//! A Chrome-like SDP answer writer for the server's offers.
//!
//! Chrome answers every m-line of the offer in order, with the same mid and kind, a
//! direction that complements the offered one, the offered header extensions, the
//! codecs it supports among the offered ones, and its own SSRCs on the m-lines it sends.
//! This writer does the same for a client that sends Opus on the first audio m-line it
//! may send on and VP8 (+RTX) on the first such video m-line.

use std::fmt::Write as _;

use sluice_signal::sdp::fingerprint::format_sha256;
use sluice_signal::sdp::{Answer, AnswerMedia, Codec, Direction, Kind, Setup};

use crate::error::AnswerError;

/// One locally published track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTrack {
    /// The msid track id.
    pub track_id: String,
    /// The SSRC we send media with.
    pub ssrc: u32,
    /// The RTX SSRC (video only).
    pub rtx_ssrc: Option<u32>,
}

/// Everything of ours that goes into an answer; constant for the whole session
/// except `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerParams {
    /// The `o=` session id.
    pub session_id: u64,
    /// The `o=` version; increases with every answer.
    pub version: u64,
    /// Our ICE username fragment.
    pub ice_ufrag: String,
    /// Our ICE password.
    pub ice_pwd: String,
    /// SHA-256 of our DTLS certificate.
    pub fingerprint_sha256: [u8; 32],
    /// The msid stream id of our tracks.
    pub stream_id: String,
    /// Our RTCP CNAME.
    pub cname: String,
    /// Our microphone, when publishing audio.
    pub audio: Option<LocalTrack>,
    /// Our camera, when publishing video.
    pub video: Option<LocalTrack>,
}

/// The `a=setup` that complements the offer's (RFC 8842): `actpass` and `passive`
/// make us `active` (DTLS client), `active` makes us `passive` (DTLS server).
pub fn answer_setup(offered: Setup) -> Setup {
    match offered {
        Setup::ActPass | Setup::Passive => Setup::Active,
        Setup::Active => Setup::Passive,
    }
}

/// Our direction on an m-line, and which local track (if any) goes on it.
fn answer_direction<'a>(
    offered: &AnswerMedia,
    params: &'a AnswerParams,
    used: &mut [bool; 2],
) -> (Direction, Option<&'a LocalTrack>) {
    if offered.rejected {
        return (Direction::Inactive, None);
    }
    let (slot, local) = match offered.kind {
        Kind::Audio => (0, params.audio.as_ref()),
        Kind::Video => (1, params.video.as_ref()),
    };
    let server_receives = offered.direction.receives();
    let server_sends = offered.direction.sends();
    let ours = match (server_receives, used[slot], local) {
        (true, false, Some(track)) => {
            used[slot] = true;
            Some(track)
        }
        _ => None,
    };
    let direction = match (ours.is_some(), server_sends) {
        (true, true) => Direction::SendRecv,
        (true, false) => Direction::SendOnly,
        (false, true) => Direction::RecvOnly,
        (false, false) => Direction::Inactive,
    };
    (direction, ours)
}

/// The codec we use on an m-line of `kind` and the RTX payload type paired with it.
fn pick_codec(media: &AnswerMedia) -> Option<(&Codec, Option<u8>)> {
    let wanted = match media.kind {
        Kind::Audio => "opus",
        Kind::Video => "VP8",
    };
    let codec = media
        .codecs
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(wanted))?;
    let rtx = media
        .rtx
        .iter()
        .find(|(_, apt)| *apt == codec.pt)
        .map(|(rtx, _)| *rtx);
    Some((codec, rtx))
}

/// Writes the answer to `offer` (parsed with `sluice_signal::sdp::parse_offer`).
///
/// Every offered m-line is answered in order. On each receiving m-line of the server the
/// first one of each kind carries our local track of that kind (if any), as `sendonly`;
/// the server's `sendonly` m-lines are answered `recvonly`; everything else `inactive`.
pub fn write_answer(offer: &Answer, params: &AnswerParams) -> Result<String, AnswerError> {
    let mut out = String::with_capacity(512 + offer.media.len() * 1200);
    let _ = write!(
        out,
        "v=0\r\no=- {} {} IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
        params.session_id & (i64::MAX as u64),
        params.version
    );
    out.push_str("a=group:BUNDLE");
    for media in offer.media.iter().filter(|m| !m.rejected) {
        out.push(' ');
        out.push_str(&media.mid);
    }
    let _ = write!(out, "\r\na=msid-semantic: WMS {}\r\n", params.stream_id);
    let fingerprint = format_sha256(&params.fingerprint_sha256);
    let setup = answer_setup(offer.setup);
    let mut used = [false; 2];
    for media in &offer.media {
        let (direction, local) = answer_direction(media, params, &mut used);
        let (codec, rtx_pt) = pick_codec(media).ok_or_else(|| AnswerError::NoCommonCodec {
            mid: media.mid.clone(),
        })?;
        let port = if media.rejected { 0 } else { 9 };
        let _ = write!(
            out,
            "m={} {port} UDP/TLS/RTP/SAVPF {}",
            media.kind, codec.pt
        );
        if let Some(rtx) = rtx_pt {
            let _ = write!(out, " {rtx}");
        }
        let _ = write!(
            out,
            "\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\n\
             a=ice-options:trickle\r\na=fingerprint:sha-256 {fingerprint}\r\na=setup:{setup}\r\na=mid:{}\r\n",
            params.ice_ufrag, params.ice_pwd, media.mid
        );
        for (id, uri) in &media.extmaps {
            let _ = write!(out, "a=extmap:{id} {uri}\r\n");
        }
        let _ = write!(out, "a={direction}\r\n");
        if let Some(track) = local {
            let _ = write!(out, "a=msid:{} {}\r\n", params.stream_id, track.track_id);
        }
        out.push_str("a=rtcp-mux\r\na=rtcp-rsize\r\n");
        write_codec(&mut out, codec);
        if let Some(rtx) = rtx_pt {
            let _ = write!(
                out,
                "a=rtpmap:{rtx} rtx/{}\r\na=fmtp:{rtx} apt={}\r\n",
                codec.clock_rate, codec.pt
            );
        }
        if let Some(track) = local {
            let rtx_ssrc = track.rtx_ssrc.filter(|_| rtx_pt.is_some());
            if let Some(rtx) = rtx_ssrc {
                let _ = write!(out, "a=ssrc-group:FID {} {rtx}\r\n", track.ssrc);
            }
            for ssrc in std::iter::once(track.ssrc).chain(rtx_ssrc) {
                let _ = write!(out, "a=ssrc:{ssrc} cname:{}\r\n", params.cname);
            }
        }
    }
    Ok(out)
}

fn write_codec(out: &mut String, codec: &Codec) {
    let pt = codec.pt;
    let _ = write!(out, "a=rtpmap:{pt} {}/{}", codec.name, codec.clock_rate);
    if let Some(channels) = codec.channels {
        let _ = write!(out, "/{channels}");
    }
    out.push_str("\r\n");
    for fb in &codec.rtcp_fb {
        let _ = write!(out, "a=rtcp-fb:{pt} {fb}\r\n");
    }
    if let Some(fmtp) = &codec.fmtp {
        let _ = write!(out, "a=fmtp:{pt} {fmtp}\r\n");
    }
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
