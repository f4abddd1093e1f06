//! The server's offer as this client needs it: transport facts, its host candidates
//! and the remote tracks (which SSRC belongs to which participant).

use std::net::{IpAddr, SocketAddr};

use sluice_signal::sdp::{parse_offer_with_limits, Answer, Direction, Kind, ParseLimits};

use crate::error::AnswerError;

/// Largest offer accepted. The server's offer grows by two m-lines per other
/// participant and passes sluice-signal's default 64 KiB parse limit at about 48
/// participants; a browser takes far larger descriptions, so this client does too
/// (the WebSocket message limit, 1 MiB, bounds it anyway).
pub const MAX_OFFER_SDP_BYTES: usize = 512 * 1024;

/// Most lines accepted in an offer of [`MAX_OFFER_SDP_BYTES`].
pub const MAX_OFFER_SDP_LINES: usize = 32 * 1024;

/// Most candidates kept from one offer; the server writes one per announced address.
pub const MAX_CANDIDATES: usize = 16;

/// One track the server forwards to us on a `sendonly` m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTrack {
    /// The m-line's mid.
    pub mid: String,
    /// Audio or video.
    pub kind: Kind,
    /// The publishing participant (the msid stream id).
    pub participant_id: String,
    /// The SSRC the server sends the media with.
    pub ssrc: u32,
    /// The RTX SSRC (video), from `a=ssrc-group:FID`.
    pub rtx_ssrc: Option<u32>,
}

/// A parsed offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOffer {
    /// The parsed SDP (ICE credentials, fingerprint, setup, m-lines).
    pub sdp: Answer,
    /// UDP host candidates in offer order.
    pub candidates: Vec<SocketAddr>,
}

impl RemoteOffer {
    /// Parses one of the server's offers.
    pub fn parse(text: &str) -> Result<Self, AnswerError> {
        let limits = ParseLimits {
            max_sdp_len: MAX_OFFER_SDP_BYTES,
            max_lines: MAX_OFFER_SDP_LINES,
            ..ParseLimits::default()
        };
        let sdp = parse_offer_with_limits(text, &limits)?;
        let candidates = parse_candidates(text);
        Ok(Self { sdp, candidates })
    }

    /// The candidate to send checks to: the first of `bind_ip`'s address family.
    pub fn candidate_for(&self, bind_ip: IpAddr) -> Option<SocketAddr> {
        self.candidates
            .iter()
            .find(|c| c.is_ipv4() == bind_ip.is_ipv4())
            .copied()
    }

    /// Every track the server currently sends (its `sendonly` m-lines with an SSRC).
    pub fn tracks(&self) -> Vec<RemoteTrack> {
        self.sdp
            .media
            .iter()
            .filter(|m| m.direction == Direction::SendOnly && !m.rejected)
            .filter_map(|m| {
                let (participant_id, _) = m.msid.clone()?;
                let rtx_ssrc = m.fid_groups.first().map(|(_, rtx)| *rtx);
                let ssrc = m
                    .fid_groups
                    .first()
                    .map(|(media, _)| *media)
                    .or_else(|| m.ssrcs.iter().copied().find(|s| Some(*s) != rtx_ssrc))?;
                Some(RemoteTrack {
                    mid: m.mid.clone(),
                    kind: m.kind,
                    participant_id,
                    ssrc,
                    rtx_ssrc,
                })
            })
            .collect()
    }
}

/// Reads `a=candidate` lines: component 1, UDP, any type; at most [`MAX_CANDIDATES`],
/// duplicates (one per m-line under BUNDLE) removed.
pub fn parse_candidates(sdp: &str) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for line in sdp.lines() {
        let Some(value) = line.trim_end().strip_prefix("a=candidate:") else {
            continue;
        };
        let mut fields = value.split_ascii_whitespace();
        let (_foundation, component, transport, _priority, ip, port) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        );
        if component != Some("1") || !transport.is_some_and(|t| t.eq_ignore_ascii_case("udp")) {
            continue;
        }
        let (Some(Ok(ip)), Some(Ok(port))) =
            (ip.map(str::parse::<IpAddr>), port.map(str::parse::<u16>))
        else {
            continue;
        };
        let addr = SocketAddr::new(ip, port);
        if !out.contains(&addr) {
            out.push(addr);
            if out.len() >= MAX_CANDIDATES {
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_keep_udp_component_one_once_each() {
        let sdp = "a=candidate:1 1 udp 2130706431 192.0.2.1 3478 typ host\r\n\
                   a=candidate:1 1 udp 2130706431 192.0.2.1 3478 typ host\r\n\
                   a=candidate:2 1 tcp 2130706431 192.0.2.2 3478 typ host\r\n\
                   a=candidate:3 2 udp 2130706431 192.0.2.3 3478 typ host\r\n\
                   a=candidate:4 1 UDP 2130706431 ::1 4000 typ host\r\n\
                   a=candidate:5 1 udp 1 not-an-ip 1 typ host\r\n";
        assert_eq!(
            parse_candidates(sdp),
            vec![
                "192.0.2.1:3478".parse::<SocketAddr>().unwrap(),
                "[::1]:4000".parse().unwrap()
            ]
        );
    }
}
