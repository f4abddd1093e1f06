//! The answer parser: what a browser answered to one of our offers.
//!
//! The parser is written for hostile input: the size and line count are checked
//! before anything else, every list has a cap, numbers are parsed with range checks,
//! and no input byte is ever used as an index.

use super::error::SdpError;
use super::fingerprint::{parse_sha256, SHA256_NAME};
use super::lines::{split_lines, Line};
use super::types::{Direction, Kind, Setup};

/// Limits applied by [`parse_answer_with_limits`]; [`ParseLimits::default`] is what
/// [`parse_answer`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest accepted SDP in bytes.
    pub max_sdp_len: usize,
    /// Most lines accepted.
    pub max_lines: usize,
    /// Most m-lines accepted.
    pub max_media_sections: usize,
    /// Most payload types (media + RTX) per m-line.
    pub max_codecs_per_media: usize,
    /// Most distinct SSRCs per m-line.
    pub max_ssrcs_per_media: usize,
    /// Most header extensions per m-line.
    pub max_extmaps_per_media: usize,
    /// Most `a=ssrc-group:FID` lines per m-line.
    pub max_fid_groups_per_media: usize,
    /// Most `a=rtcp-fb` entries per codec.
    pub max_rtcp_fb_per_codec: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_sdp_len: super::MAX_SDP_LEN,
            max_lines: 8192,
            max_media_sections: super::MAX_MEDIA_SECTIONS,
            max_codecs_per_media: 64,
            max_ssrcs_per_media: 32,
            max_extmaps_per_media: 32,
            max_fid_groups_per_media: 16,
            max_rtcp_fb_per_codec: 16,
        }
    }
}

/// A parsed answer (or, from [`parse_offer`], one of our own offers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The answerer's ICE username fragment (checked in its STUN requests).
    pub ice_ufrag: String,
    /// The answerer's ICE password.
    pub ice_pwd: String,
    /// SHA-256 of the answerer's DTLS certificate.
    pub fingerprint_sha256: [u8; 32],
    /// The answerer's DTLS role: `Active` or `Passive` (`ActPass` only from [`parse_offer`]).
    pub setup: Setup,
    /// The mids of the first `a=group:BUNDLE`, empty when absent.
    pub bundle_mids: Vec<String>,
    /// The m-lines in order.
    pub media: Vec<AnswerMedia>,
}

/// One answered m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerMedia {
    /// `a=mid`.
    pub mid: String,
    /// Audio or video.
    pub kind: Kind,
    /// The answerer's direction; `Inactive` when rejected.
    pub direction: Direction,
    /// The m-line has port 0: the answerer rejected it.
    pub rejected: bool,
    /// Media codecs (not RTX) in the answerer's order of preference.
    pub codecs: Vec<Codec>,
    /// RTX payload types as `(rtx_pt, apt)`.
    pub rtx: Vec<(u8, u8)>,
    /// Every SSRC named by an `a=ssrc` line, in first-seen order.
    pub ssrcs: Vec<u32>,
    /// `a=ssrc-group:FID` pairs as `(media_ssrc, rtx_ssrc)`.
    pub fid_groups: Vec<(u32, u32)>,
    /// Header extensions as `(id, uri)`.
    pub extmaps: Vec<(u8, String)>,
    /// `a=msid` as `(stream_id, track_id)`; the track id is empty when absent.
    pub msid: Option<(String, String)>,
    /// The RIDs of `a=simulcast:send` that also have an `a=rid:<rid> send` line, in the
    /// attribute's order (the first of each group of alternatives, paused ones too);
    /// empty without simulcast. At most [`MAX_SIMULCAST_RIDS`](super::MAX_SIMULCAST_RIDS).
    pub simulcast_send: Vec<String>,
}

/// One answered codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// Payload type.
    pub pt: u8,
    /// Encoding name as written.
    pub name: String,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Channel count when given (audio).
    pub channels: Option<u8>,
    /// `a=fmtp` parameters as written.
    pub fmtp: Option<String>,
    /// `a=rtcp-fb` values for this payload type (e.g. `nack pli`).
    pub rtcp_fb: Vec<String>,
}

/// Parses an answer with [`ParseLimits::default`] (64 KiB, 256 m-lines).
pub fn parse_answer(text: &str) -> Result<Answer, SdpError> {
    parse_answer_with_limits(text, &ParseLimits::default())
}

/// Transport attributes as found at one level (session or one m-line).
#[derive(Debug, Default)]
struct Transport {
    allow_actpass: bool,
    ufrag: Option<String>,
    pwd: Option<String>,
    /// `Some(None)`: fingerprints present but none SHA-256.
    fingerprint: Option<Option<[u8; 32]>>,
    setup: Option<Setup>,
}

impl Transport {
    fn absorb(
        &mut self,
        line: &Line<'_>,
        name: &str,
        value: Option<&str>,
    ) -> Result<bool, SdpError> {
        match name {
            "ice-ufrag" => {
                self.ufrag = Some(nonempty(line, value, "a=ice-ufrag")?.to_owned());
            }
            "ice-pwd" => {
                self.pwd = Some(nonempty(line, value, "a=ice-pwd")?.to_owned());
            }
            "fingerprint" => {
                let value = nonempty(line, value, "a=fingerprint")?;
                let (hash, digest) = value
                    .split_once(' ')
                    .ok_or(line.malformed("a=fingerprint"))?;
                if hash.eq_ignore_ascii_case(SHA256_NAME) {
                    let digest =
                        parse_sha256(digest.trim()).ok_or(line.malformed("sha-256 fingerprint"))?;
                    self.fingerprint = Some(Some(digest));
                } else if self.fingerprint.is_none() {
                    self.fingerprint = Some(None);
                }
            }
            "setup" => {
                let setup = value
                    .and_then(Setup::from_value)
                    .filter(|s| self.allow_actpass || *s != Setup::ActPass)
                    .ok_or(SdpError::InvalidSetup { line: line.number })?;
                self.setup = Some(setup);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn nonempty<'a>(
    line: &Line<'_>,
    value: Option<&'a str>,
    what: &'static str,
) -> Result<&'a str, SdpError> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(line.malformed(what))
}

/// A media section while it is being read.
#[derive(Debug)]
struct MediaBuilder {
    kind: Kind,
    rejected: bool,
    formats: Vec<u8>,
    mid: Option<String>,
    direction: Option<Direction>,
    transport: Transport,
    rtpmaps: Vec<(u8, String, u32, Option<u8>)>,
    fmtps: Vec<(u8, String)>,
    /// Payload type (`u8::MAX` for `*`), feedback type, and the line it was on.
    rtcp_fbs: Vec<(u8, String, usize)>,
    ssrcs: Vec<u32>,
    fid_groups: Vec<(u32, u32)>,
    extmaps: Vec<(u8, String)>,
    msid: Option<(String, String)>,
    rids_send: Vec<String>,
    simulcast_send: Vec<String>,
}

fn too_many(line: &Line<'_>, what: &'static str, max: usize) -> SdpError {
    SdpError::TooManyEntries {
        line: line.number,
        what,
        max,
    }
}

fn push_bounded<T>(
    list: &mut Vec<T>,
    item: T,
    max: usize,
    line: &Line<'_>,
    what: &'static str,
) -> Result<(), SdpError> {
    if list.len() >= max {
        return Err(too_many(line, what, max));
    }
    list.push(item);
    Ok(())
}

fn parse_pt(line: &Line<'_>, text: &str) -> Result<u8, SdpError> {
    text.parse::<u8>()
        .ok()
        .filter(|pt| *pt <= 127)
        .ok_or(line.malformed("payload type"))
}

fn parse_ssrc(line: &Line<'_>, text: &str) -> Result<u32, SdpError> {
    text.parse::<u32>().map_err(|_| line.malformed("ssrc"))
}

impl MediaBuilder {
    fn from_m_line(
        line: &Line<'_>,
        limits: &ParseLimits,
        allow_actpass: bool,
    ) -> Result<Self, SdpError> {
        let mut fields = line.value.split(' ');
        let kind_token = fields.next().unwrap_or("");
        let kind = Kind::from_token(kind_token)
            .ok_or(SdpError::UnsupportedMediaKind { line: line.number })?;
        let port_field = fields.next().ok_or(line.malformed("m-line port"))?;
        let port_text = port_field.split('/').next().unwrap_or(port_field);
        let port: u16 = port_text
            .parse()
            .map_err(|_| line.malformed("m-line port"))?;
        let proto = fields.next().ok_or(line.malformed("m-line protocol"))?;
        if proto.is_empty() {
            return Err(line.malformed("m-line protocol"));
        }
        let mut formats = Vec::new();
        for field in fields.filter(|f| !f.is_empty()) {
            let pt = parse_pt(line, field)?;
            push_bounded(
                &mut formats,
                pt,
                limits.max_codecs_per_media,
                line,
                "payload types",
            )?;
        }
        Ok(Self {
            kind,
            rejected: port == 0,
            formats,
            mid: None,
            direction: None,
            transport: Transport {
                allow_actpass,
                ..Transport::default()
            },
            rtpmaps: Vec::new(),
            fmtps: Vec::new(),
            rtcp_fbs: Vec::new(),
            ssrcs: Vec::new(),
            fid_groups: Vec::new(),
            extmaps: Vec::new(),
            msid: None,
            rids_send: Vec::new(),
            simulcast_send: Vec::new(),
        })
    }

    fn attribute(&mut self, line: &Line<'_>, limits: &ParseLimits) -> Result<(), SdpError> {
        let (name, value) = line.attribute();
        if self.transport.absorb(line, name, value)? {
            return Ok(());
        }
        if let Some(direction) = Direction::from_attribute(name) {
            self.direction = Some(direction);
            return Ok(());
        }
        match name {
            "mid" => self.mid = Some(nonempty(line, value, "a=mid")?.to_owned()),
            "msid" => {
                let value = nonempty(line, value, "a=msid")?;
                let (stream, track) = value.split_once(' ').unwrap_or((value, ""));
                self.msid = Some((stream.to_owned(), track.trim().to_owned()));
            }
            "rtpmap" => self.rtpmap(line, value, limits)?,
            "fmtp" => {
                let value = nonempty(line, value, "a=fmtp")?;
                let (pt, params) = value.split_once(' ').ok_or(line.malformed("a=fmtp"))?;
                let pt = parse_pt(line, pt)?;
                let item = (pt, params.trim().to_owned());
                push_bounded(
                    &mut self.fmtps,
                    item,
                    limits.max_codecs_per_media,
                    line,
                    "fmtp lines",
                )?;
            }
            "rtcp-fb" => {
                let value = nonempty(line, value, "a=rtcp-fb")?;
                let (pt, fb) = value.split_once(' ').ok_or(line.malformed("a=rtcp-fb"))?;
                // `*` applies to every payload type; keep it as 255 and expand later.
                let pt = if pt == "*" {
                    u8::MAX
                } else {
                    parse_pt(line, pt)?
                };
                let max = limits
                    .max_rtcp_fb_per_codec
                    .saturating_mul(limits.max_codecs_per_media);
                push_bounded(
                    &mut self.rtcp_fbs,
                    (pt, fb.trim().to_owned(), line.number),
                    max,
                    line,
                    "rtcp-fb lines",
                )?;
            }
            "ssrc" => {
                let value = nonempty(line, value, "a=ssrc")?;
                let id = value.split(' ').next().unwrap_or(value);
                let ssrc = parse_ssrc(line, id)?;
                if !self.ssrcs.contains(&ssrc) {
                    push_bounded(
                        &mut self.ssrcs,
                        ssrc,
                        limits.max_ssrcs_per_media,
                        line,
                        "ssrcs",
                    )?;
                }
            }
            "ssrc-group" => {
                let value = nonempty(line, value, "a=ssrc-group")?;
                let mut fields = value.split(' ').filter(|f| !f.is_empty());
                if fields.next() == Some("FID") {
                    let media = parse_ssrc(line, fields.next().unwrap_or(""))?;
                    let rtx = parse_ssrc(line, fields.next().unwrap_or(""))?;
                    if fields.next().is_some() {
                        return Err(line.malformed("a=ssrc-group:FID (expected two ssrcs)"));
                    }
                    let max = limits.max_fid_groups_per_media;
                    push_bounded(&mut self.fid_groups, (media, rtx), max, line, "FID groups")?;
                }
            }
            "rid" => {
                let value = nonempty(line, value, "a=rid")?;
                let mut fields = value.split(' ').filter(|f| !f.is_empty());
                let rid = fields.next().unwrap_or("");
                if fields.next() == Some("send") && super::is_valid_rid(rid) {
                    let max = super::MAX_SIMULCAST_RIDS;
                    push_bounded(&mut self.rids_send, rid.to_owned(), max, line, "RIDs")?;
                }
            }
            "simulcast" => {
                let value = nonempty(line, value, "a=simulcast")?;
                let mut fields = value.split(' ').filter(|f| !f.is_empty());
                while let Some(direction) = fields.next() {
                    let list = fields.next().ok_or(line.malformed("a=simulcast"))?;
                    if direction != "send" {
                        continue;
                    }
                    self.simulcast_send.clear();
                    for group in list.split(';') {
                        // alternatives are separated by ','; "~" marks a paused stream
                        let first = group.split(',').next().unwrap_or("");
                        let rid = first.strip_prefix('~').unwrap_or(first);
                        if !super::is_valid_rid(rid) {
                            return Err(line.malformed("a=simulcast rid"));
                        }
                        let max = super::MAX_SIMULCAST_RIDS;
                        push_bounded(&mut self.simulcast_send, rid.to_owned(), max, line, "RIDs")?;
                    }
                }
            }
            "extmap" => {
                let value = nonempty(line, value, "a=extmap")?;
                let mut fields = value.split(' ').filter(|f| !f.is_empty());
                let id_field = fields.next().unwrap_or("");
                let id_text = id_field.split('/').next().unwrap_or(id_field);
                let id = id_text
                    .parse::<u8>()
                    .ok()
                    .filter(|id| *id != 0)
                    .ok_or(line.malformed("a=extmap id"))?;
                let uri = fields.next().ok_or(line.malformed("a=extmap uri"))?;
                let max = limits.max_extmaps_per_media;
                push_bounded(
                    &mut self.extmaps,
                    (id, uri.to_owned()),
                    max,
                    line,
                    "extmaps",
                )?;
            }
            _ => {}
        }
        Ok(())
    }

    fn rtpmap(
        &mut self,
        line: &Line<'_>,
        value: Option<&str>,
        limits: &ParseLimits,
    ) -> Result<(), SdpError> {
        let value = nonempty(line, value, "a=rtpmap")?;
        let (pt, encoding) = value.split_once(' ').ok_or(line.malformed("a=rtpmap"))?;
        let pt = parse_pt(line, pt)?;
        let mut parts = encoding.trim().split('/');
        let name = parts
            .next()
            .filter(|n| !n.is_empty())
            .ok_or(line.malformed("a=rtpmap encoding"))?;
        let clock_rate = parts
            .next()
            .and_then(|r| r.parse::<u32>().ok())
            .filter(|r| *r > 0)
            .ok_or(line.malformed("a=rtpmap clock rate"))?;
        let channels = match parts.next() {
            Some(c) => Some(
                c.parse::<u8>()
                    .map_err(|_| line.malformed("a=rtpmap channels"))?,
            ),
            None => None,
        };
        let item = (pt, name.to_owned(), clock_rate, channels);
        push_bounded(
            &mut self.rtpmaps,
            item,
            limits.max_codecs_per_media,
            line,
            "rtpmap lines",
        )
    }

    fn finish(
        self,
        media_index: usize,
        limits: &ParseLimits,
    ) -> Result<(AnswerMedia, Transport), SdpError> {
        let mid = self.mid.ok_or(SdpError::MissingAttribute {
            attribute: "a=mid",
            media_index: Some(media_index),
        })?;
        let mut codecs = Vec::new();
        let mut rtx = Vec::new();
        for pt in &self.formats {
            let Some((_, name, clock_rate, channels)) = self.rtpmaps.iter().find(|m| m.0 == *pt)
            else {
                // A static payload type without rtpmap: nothing Sluice could use.
                continue;
            };
            let fmtp = self.fmtps.iter().find(|f| f.0 == *pt).map(|f| f.1.clone());
            if name.eq_ignore_ascii_case("rtx") {
                let apt = fmtp
                    .as_deref()
                    .and_then(|f| f.split(';').find_map(|p| p.trim().strip_prefix("apt=")))
                    .and_then(|a| a.parse::<u8>().ok())
                    .filter(|a| *a <= 127);
                if let Some(apt) = apt {
                    rtx.push((*pt, apt));
                }
                continue;
            }
            // More than the limit is refused, not cut: a description accepted under
            // tight limits must read the same under looser ones.
            let mut rtcp_fb = Vec::new();
            for (_, fb, line) in self
                .rtcp_fbs
                .iter()
                .filter(|(fb_pt, _, _)| fb_pt == pt || *fb_pt == u8::MAX)
            {
                if rtcp_fb.len() >= limits.max_rtcp_fb_per_codec {
                    return Err(SdpError::TooManyEntries {
                        line: *line,
                        what: "rtcp-fb lines of one codec",
                        max: limits.max_rtcp_fb_per_codec,
                    });
                }
                rtcp_fb.push(fb.clone());
            }
            codecs.push(Codec {
                pt: *pt,
                name: name.clone(),
                clock_rate: *clock_rate,
                channels: *channels,
                fmtp,
                rtcp_fb,
            });
        }
        let direction = if self.rejected {
            Direction::Inactive
        } else {
            self.direction.unwrap_or(Direction::SendRecv)
        };
        let media = AnswerMedia {
            mid,
            kind: self.kind,
            direction,
            rejected: self.rejected,
            codecs,
            rtx,
            ssrcs: self.ssrcs,
            fid_groups: self.fid_groups,
            extmaps: self.extmaps,
            msid: self.msid,
            simulcast_send: self
                .simulcast_send
                .into_iter()
                .filter(|r| self.rids_send.contains(r))
                .collect(),
        };
        Ok((media, self.transport))
    }
}

/// Parses an answer with explicit limits.
pub fn parse_answer_with_limits(text: &str, limits: &ParseLimits) -> Result<Answer, SdpError> {
    parse_description(text, limits, false)
}

/// Parses one of Sluice's own offers into the same shape as an answer
/// (`a=setup:actpass` allowed). For tests and for synthetic clients that play
/// the browser's part (loadgen).
pub fn parse_offer(text: &str) -> Result<Answer, SdpError> {
    parse_offer_with_limits(text, &ParseLimits::default())
}

/// [`parse_offer`] with explicit limits: the server's offer for a room of 50 is over
/// the default 64 KiB.
pub fn parse_offer_with_limits(text: &str, limits: &ParseLimits) -> Result<Answer, SdpError> {
    parse_description(text, limits, true)
}

fn parse_description(
    text: &str,
    limits: &ParseLimits,
    allow_actpass: bool,
) -> Result<Answer, SdpError> {
    let lines = split_lines(text, limits.max_sdp_len, limits.max_lines)?;
    let mut iter = lines.iter();
    match iter.next() {
        Some(line) if line.kind == 'v' && line.value == "0" => {}
        _ => return Err(SdpError::MissingVersion),
    }

    let mut session = Transport {
        allow_actpass,
        ..Transport::default()
    };
    let mut bundle_mids: Option<Vec<String>> = None;
    let mut sections: Vec<MediaBuilder> = Vec::new();

    for line in iter {
        if line.kind == 'm' {
            if sections.len() >= limits.max_media_sections {
                return Err(SdpError::TooManyMediaSections {
                    max: limits.max_media_sections,
                });
            }
            sections.push(MediaBuilder::from_m_line(line, limits, allow_actpass)?);
            continue;
        }
        if line.kind != 'a' {
            continue;
        }
        match sections.last_mut() {
            Some(section) => section.attribute(line, limits)?,
            None => {
                let (name, value) = line.attribute();
                if session.absorb(line, name, value)? {
                    continue;
                }
                if name == "group" && bundle_mids.is_none() {
                    let value = value.unwrap_or("");
                    let mut fields = value.split(' ').filter(|f| !f.is_empty());
                    if fields.next() == Some("BUNDLE") {
                        let mids: Vec<String> = fields
                            .take(limits.max_media_sections.saturating_add(1))
                            .map(str::to_owned)
                            .collect();
                        if mids.len() > limits.max_media_sections {
                            return Err(SdpError::TooManyMediaSections {
                                max: limits.max_media_sections,
                            });
                        }
                        bundle_mids = Some(mids);
                    }
                }
            }
        }
    }

    let mut media: Vec<AnswerMedia> = Vec::with_capacity(sections.len());
    let mut transports = Vec::with_capacity(sections.len());
    for (index, section) in sections.into_iter().enumerate() {
        let (item, transport) = section.finish(index, limits)?;
        if media.iter().any(|m| m.mid == item.mid) {
            return Err(SdpError::DuplicateMid { media_index: index });
        }
        if !item.rejected {
            transports.push(transport);
        }
        media.push(item);
    }

    let ice_ufrag = resolve(
        &session.ufrag,
        transports.iter().map(|t| &t.ufrag),
        "a=ice-ufrag",
    )?;
    let ice_pwd = resolve(&session.pwd, transports.iter().map(|t| &t.pwd), "a=ice-pwd")?;
    let fingerprint = resolve(
        &session.fingerprint,
        transports.iter().map(|t| &t.fingerprint),
        "a=fingerprint",
    )?;
    let fingerprint_sha256 = fingerprint.ok_or(SdpError::UnsupportedFingerprintHash)?;
    let setup = resolve(
        &session.setup,
        transports.iter().map(|t| &t.setup),
        "a=setup",
    )?;

    Ok(Answer {
        ice_ufrag,
        ice_pwd,
        fingerprint_sha256,
        setup,
        bundle_mids: bundle_mids.unwrap_or_default(),
        media,
    })
}

/// The effective value of a transport attribute across bundled m-lines: each m-line's
/// own value, or the session value when it has none. All must agree.
fn resolve<'a, T: Clone + PartialEq + 'a>(
    session: &Option<T>,
    media: impl Iterator<Item = &'a Option<T>>,
    attribute: &'static str,
) -> Result<T, SdpError> {
    let mut found: Option<&T> = None;
    let mut any_media = false;
    for value in media {
        any_media = true;
        let effective = value.as_ref().or(session.as_ref());
        match (found, effective) {
            (_, None) => {
                return Err(SdpError::MissingAttribute {
                    attribute,
                    media_index: None,
                })
            }
            (None, Some(v)) => found = Some(v),
            (Some(f), Some(v)) if f != v => {
                return Err(SdpError::ConflictingTransport { attribute })
            }
            _ => {}
        }
    }
    if !any_media {
        found = session.as_ref();
    }
    found.cloned().ok_or(SdpError::MissingAttribute {
        attribute,
        media_index: None,
    })
}
