//! The RTP path: identify the track of an incoming packet, record it for feedback, and
//! fan a rewritten copy out to every subscriber.

use std::time::Instant;

use sluice_rtp::red::{wrap_in_red, write_red_payload};
use sluice_rtp::{is_keyframe, set_extension, set_payload_type, Codec, RtpHeader, Vp8Descriptor};
use tracing::{debug, trace};

use crate::fec::{placeholder, FEC_OVERHEAD_BYTES};
use crate::ids::{Kind, ParticipantId, TrackId};
use crate::media::{
    abs_send_time, codec_of, hide_extension, media_payload_type, rewrite_mid, unwrap_rtx,
    EXT_AUDIO_LEVEL, EXT_MID, EXT_REPAIRED_RID, EXT_RID, EXT_TRANSPORT_CC, PT_OPUS, PT_RED_AUDIO,
    PT_RED_VIDEO, PT_ULPFEC,
};
use crate::output::OutputKind;
use crate::pacing::send_rtp;
use crate::router::Router;
use crate::state::{Layer, Participant, SsrcBinding, StreamRole, Track, SSRC_TAKEOVER_SILENCE};
use crate::stats::RouterDrop;
use sluice_bwe::pacer::Priority;

impl Router {
    /// Handles one decrypted RTP packet from `from`'s session at `now`.
    ///
    /// The packet is matched to a published track by SSRC (or, for a new SSRC, by its MID
    /// extension), recorded for RR/TWCC/NACK, and a copy rewritten to each subscriber's
    /// announced SSRC and continuous sequence numbers is queued. RTX answering our NACKs is
    /// unwrapped into the original stream first. Anything unusable is dropped and counted.
    pub fn handle_rtp(&mut self, now: Instant, from: ParticipantId, packet: &[u8]) {
        let track = self.route_rtp(now, from, packet);
        self.lower_deadline_after_rtp(from, track);
    }

    /// [`handle_rtp`](Self::handle_rtp) without the deadline bookkeeping; returns the
    /// track the packet was matched to, if any.
    fn route_rtp(&mut self, now: Instant, from: ParticipantId, packet: &[u8]) -> Option<TrackId> {
        self.touch(now);
        self.stats.rtp_packets_received += 1;
        self.stats.rtp_bytes_received += packet.len() as u64;
        let max_ssrcs = self.config.max_ssrcs_per_participant;
        let twcc_interval = self.config.twcc_feedback_interval;
        let Some(p) = self.participants.get_mut(&from) else {
            self.stats.dropped.add(RouterDrop::UnknownParticipant);
            return None;
        };
        let Ok(h) = RtpHeader::parse(packet) else {
            self.stats.dropped.add(RouterDrop::MalformedRtp);
            return None;
        };
        // Transport-wide: every packet of the transport counts, even ones dropped below
        // (bandwidth probes are padding on the RTX SSRC).
        if let Some(&[a, b]) = h.extension(EXT_TRANSPORT_CC) {
            if p.twcc.record(u16::from_be_bytes([a, b]), now) && p.next_twcc_at.is_none() {
                // one feedback per interval while packets flow; right away after a pause
                let cadence = p.last_twcc_at.and_then(|t| t.checked_add(twcc_interval));
                p.next_twcc_at = Some(cadence.map_or(now, |t| t.max(now)));
            }
        }
        let binding = match p.ssrcs.get(&h.ssrc()) {
            Some(b) => *b,
            None => match learn_ssrc(p, &self.tracks, &h, max_ssrcs) {
                Ok(b) => {
                    debug!(
                        participant = from.0,
                        ssrc = h.ssrc(),
                        track = b.track.0,
                        rtx = (b.role == StreamRole::Rtx),
                        "SSRC learnt from MID"
                    );
                    b
                }
                Err(reason) => {
                    trace!(
                        participant = from.0,
                        ssrc = h.ssrc(),
                        reason = reason.as_str(),
                        "RTP dropped"
                    );
                    self.stats.dropped.add(reason);
                    return None;
                }
            },
        };
        match binding.role {
            StreamRole::Media => {
                self.forward_media(now, binding.track, binding.layer, packet, false)
            }
            StreamRole::Rtx => {
                let layer = self
                    .tracks
                    .get_mut(&binding.track)
                    .and_then(|t| t.layers.get_mut(binding.layer));
                let Some(layer) = layer else {
                    self.stats.dropped.add(RouterDrop::UnknownSsrc);
                    return None;
                };
                if layer.rtx_ssrc.is_none() {
                    layer.rtx_ssrc = Some(h.ssrc());
                }
                let Some(media_ssrc) = layer.ssrc else {
                    self.stats.dropped.add(RouterDrop::UnknownSsrc);
                    return None;
                };
                let mut original = std::mem::take(&mut self.scratch_packet);
                if unwrap_rtx(packet, media_ssrc, &mut original) {
                    self.stats.rtx_received += 1;
                    if already_forwarded(layer, &original) {
                        self.stats.dropped.add(RouterDrop::RtxDuplicate);
                    } else {
                        self.forward_media(now, binding.track, binding.layer, &original, true);
                    }
                } else {
                    self.stats.dropped.add(RouterDrop::RtxPadding);
                }
                self.scratch_packet = original;
            }
        }
        Some(binding.track)
    }

    /// Records and fans out one packet of encoding `layer` of a track (`recovered`:
    /// unwrapped from RTX, so not counted as a network arrival in the receive statistics).
    fn forward_media(
        &mut self,
        now: Instant,
        track_id: TrackId,
        layer: usize,
        pkt: &[u8],
        recovered: bool,
    ) {
        let Router {
            config,
            participants,
            tracks,
            outbox,
            stats,
            epoch,
            jitter,
            next_layer_selection_at,
            ..
        } = self;
        let Some(track) = tracks.get_mut(&track_id) else {
            return;
        };
        let Ok(h) = RtpHeader::parse(pkt) else {
            stats.dropped.add(RouterDrop::MalformedRtp);
            return;
        };
        let Some(current_ssrc) = track.layers.get(layer).map(|l| l.ssrc) else {
            stats.dropped.add(RouterDrop::UnknownSsrc);
            return;
        };
        if current_ssrc != Some(h.ssrc()) {
            // Another SSRC bound to this encoding takes over only from a silent stream.
            let silent = track.layers.get(layer).is_none_or(|l| {
                l.last_packet_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= SSRC_TAKEOVER_SILENCE)
            });
            if current_ssrc.is_some() && !silent {
                stats.dropped.add(RouterDrop::Stale);
                return;
            }
            debug!(
                track = track_id.0,
                layer,
                ssrc = h.ssrc(),
                "track switches media SSRC"
            );
            let nack =
                (config.nack.enabled && track.kind == Kind::Video).then_some(config.nack.generator);
            track.set_media_ssrc(layer, h.ssrc(), nack);
        }
        if track.kind == Kind::Video && matches!(h.payload_type(), PT_RED_VIDEO | PT_ULPFEC) {
            // never offered to publishers: the router adds these per subscriber itself
            stats.dropped.add(RouterDrop::PayloadTypeNotAccepted);
            return;
        }
        let codec = codec_of(h.payload_type());
        if codec != Codec::Other {
            track.codec = codec;
        }
        let keyframe = track.kind == Kind::Video && is_keyframe(track.codec, h.payload());
        let (kind, track_codec) = (track.kind, track.codec);
        let clock_rate_hz = kind.clock_rate_hz();
        let simulcast = track.layers.len() > 1;
        let Some(l) = track.layers.get_mut(layer) else {
            return;
        };
        l.last_packet_at = Some(now);
        l.bitrate.on_packet(now, pkt.len());
        // VP8 pictures carry their temporal layer: measured per layer for the allocation,
        // and checked against each subscriber's cap below.
        let descriptor = (track_codec == Codec::Vp8)
            .then(|| Vp8Descriptor::parse(h.payload()))
            .flatten();
        if let Some(meter) =
            descriptor.and_then(|d| l.temporal_bitrate.get_mut(usize::from(d.temporal_id)))
        {
            meter.on_packet(now, pkt.len());
        }
        if !recovered {
            if let Some(recv) = l.recv.as_mut() {
                recv.on_packet(
                    h.sequence_number(),
                    h.timestamp(),
                    now,
                    kind.clock_rate_hz(),
                );
            }
        }
        if let Some(nack) = l.nack.as_mut() {
            nack.on_packet(h.sequence_number(), now);
        }
        if let Some(cache) = l.cache.as_mut() {
            cache.insert_at(h.sequence_number(), pkt, now);
        }
        if keyframe {
            l.keyframe.pending = false;
            l.keyframe.attempts = 0;
        }
        if kind == Kind::Audio && h.extension(EXT_AUDIO_LEVEL).is_some() {
            if let Some(publisher) = participants.get_mut(&track.publisher) {
                let voice = speaks(&h);
                publisher.speech.on_packet(now, voice);
                if voice {
                    publisher.last_voice_at = Some(now);
                }
            }
        }
        // allocation, encoding choice, RED and speaker detection run while media flows
        if next_layer_selection_at.is_none() {
            *next_layer_selection_at = now.checked_add(config.layer_selection_interval);
        }
        // Video of a known codec switches (and starts) only on a keyframe.
        let switch_point = kind != Kind::Video || track_codec == Codec::Other || keyframe;
        if let Some(publisher) = participants.get_mut(&track.publisher) {
            if publisher.next_rr_at.is_none() {
                publisher.next_rr_at =
                    now.checked_add(jitter.jittered(config.rtcp_report_interval));
            }
        }
        let since_epoch = now.saturating_duration_since(epoch.unwrap_or(now));
        let send_time = abs_send_time(since_epoch);
        let payload_len = h.payload().len();
        let payload_type = h.payload_type();
        let header_len = h.header_len();
        let ssrc = h.ssrc();
        let (sequence_number, timestamp) = (h.sequence_number(), h.timestamp());
        for sub in &mut track.subscriptions {
            if !sub.payload_types.is_empty() && !sub.payload_types.contains(&payload_type) {
                stats.dropped.add(RouterDrop::PayloadTypeNotAccepted);
                continue;
            }
            if !sub.accepts(layer, switch_point, ssrc, now, clock_rate_hz) {
                if sub.layer.is_none() && !sub.paused && sub.target == layer {
                    stats.dropped.add(RouterDrop::AwaitingKeyframe);
                }
                continue;
            }
            if let Some(d) = &descriptor {
                if !sub.passes_temporal(d) {
                    // numbered over, so the subscriber sees no loss to ask for
                    sub.rewriter.skip(pkt);
                    sub.vp8.skip_parsed(d);
                    stats.temporal_layer_skipped += 1;
                    continue;
                }
            }
            // audio to a subscriber whose link loses packets: Opus with the previous
            // frames repeated (RED), where its answer accepted RED
            let red_distance = if sub.red_accepted && payload_type == PT_OPUS {
                participants
                    .get(&sub.subscriber)
                    .map_or(0, |p| usize::from(p.link.red_distance))
            } else {
                0
            };
            // video to a subscriber whose link loses packets: in RED, with a ULPFEC
            // packet after every `fec_interval` packets (see `fec`)
            let fec_interval = if kind == Kind::Video && sub.fec_accepted {
                participants
                    .get(&sub.subscriber)
                    .map_or(0, |p| p.link.fec_interval)
            } else {
                0
            };
            let mut buf = outbox.buffer();
            if red_distance > 0 {
                buf.extend_from_slice(pkt.get(..header_len).unwrap_or_default());
                // the primary frame goes in without the original's padding
                if let Some(first) = buf.first_mut() {
                    *first &= !0x20;
                }
                write_red_payload(
                    &mut buf,
                    PT_OPUS,
                    timestamp,
                    h.payload(),
                    track.recent_frames.before(sequence_number, red_distance),
                );
            } else {
                buf.extend_from_slice(pkt);
            }
            let Some((_, ts)) = sub.rewriter.rewrite(&mut buf) else {
                outbox.recycle(buf);
                stats.dropped.add(RouterDrop::Stale);
                continue;
            };
            if let (Some(d), Some(payload)) = (&descriptor, buf.get_mut(header_len..)) {
                sub.vp8.rewrite_parsed(payload, d);
            }
            if red_distance > 0 {
                set_payload_type(&mut buf, PT_RED_AUDIO);
                stats.red_packets_sent += 1;
            }
            if let Some(mid) = &sub.mid {
                rewrite_mid(&mut buf, mid.as_bytes());
            }
            if simulcast {
                hide_extension(&mut buf, EXT_RID);
            }
            let mut fec_placeholder = None;
            if fec_interval > 0 && wrap_in_red(&mut buf, PT_RED_VIDEO) {
                stats.red_video_packets_sent += 1;
                sub.fec_pending = sub.fec_pending.saturating_add(1);
                sub.fec_longest = sub.fec_longest.max(buf.len());
                if sub.fec_pending >= fec_interval {
                    // the next number is the FEC packet's; it leaves behind this one
                    if let Some(seq) = sub.rewriter.insert() {
                        let mut fec = outbox.buffer();
                        let expected = sub.fec_longest + FEC_OVERHEAD_BYTES;
                        if placeholder(&mut fec, &buf, seq, expected) {
                            fec_placeholder = Some(fec);
                        } else {
                            outbox.recycle(fec);
                        }
                    }
                    sub.fec_pending = 0;
                    sub.fec_longest = 0;
                }
            }
            sub.sender.on_packet(ts, payload_len, now);
            sub.last_forwarded_at = Some(now);
            stats.forwarded_packets += 1;
            stats.forwarded_bytes += buf.len() as u64;
            let Some(subscriber) = participants.get_mut(&sub.subscriber) else {
                outbox.recycle(buf);
                continue;
            };
            if subscriber.next_sr_at.is_none() {
                subscriber.next_sr_at =
                    now.checked_add(jitter.jittered(config.rtcp_report_interval));
            }
            let priority = match kind {
                Kind::Audio => Priority::Audio,
                Kind::Video => Priority::Video,
            };
            send_rtp(
                sub.subscriber,
                subscriber,
                buf,
                priority,
                now,
                &send_time,
                outbox,
                stats,
            );
            if let Some(fec) = fec_placeholder {
                send_rtp(
                    sub.subscriber,
                    subscriber,
                    fec,
                    Priority::Video,
                    now,
                    &send_time,
                    outbox,
                    stats,
                );
            }
        }
        if kind == Kind::Audio
            && payload_type == PT_OPUS
            && config.audio_red_loss_threshold.is_some()
        {
            track
                .recent_frames
                .push(sequence_number, timestamp, h.payload());
        }
        maybe_send_pli(
            track,
            layer,
            now,
            config.keyframe_request_interval,
            config.max_keyframe_request_attempts,
            config.rtcp_sender_ssrc,
            outbox,
            stats,
        );
    }
}

/// Whether an audio packet's RFC 6464 level (0 = loudest, 127 = silence, in -dBov) says
/// someone is speaking.
fn speaks(h: &RtpHeader<'_>) -> bool {
    h.extension(EXT_AUDIO_LEVEL)
        .and_then(|level| level.first())
        .is_some_and(|b| b & 0x7F < VOICE_LEVEL_DBOV)
}

/// Audio louder than -50 dBov counts as voice (silence and comfort noise are quieter).
const VOICE_LEVEL_DBOV: u8 = 50;

/// SRTP adds a 10-byte authentication tag to every packet on the wire.
pub(crate) const SRTP_OVERHEAD_BYTES: usize = 10;

/// Whether `original` (an unwrapped retransmission) is a packet the track already
/// forwarded, i.e. its sequence number is still in the track's retransmission cache.
/// Tracks without a cache (audio, where RTX is not negotiated) cannot tell and forward.
fn already_forwarded(layer: &Layer, original: &[u8]) -> bool {
    let Ok(header) = RtpHeader::parse(original) else {
        return false;
    };
    layer
        .cache
        .as_ref()
        .is_some_and(|cache| cache.get(header.sequence_number()).is_some())
}

/// Writes the subscriber's next transport-wide sequence number into the packet's
/// transport-cc extension (if it has one): each subscriber's transport numbers its own
/// packets, whatever publisher they came from. Returns the number written, `None` for a
/// packet without the extension.
pub(crate) fn stamp_transport_seq(subscriber: &mut Participant, buf: &mut [u8]) -> Option<u16> {
    let seq = subscriber.next_transport_seq;
    if set_extension(buf, EXT_TRANSPORT_CC, &seq.to_be_bytes()) {
        subscriber.next_transport_seq = seq.wrapping_add(1);
        Some(seq)
    } else {
        None
    }
}

/// Stamps the subscriber's transport-wide sequence number and tells its bandwidth
/// estimator what left (the feedback about this packet will name that number); takes
/// the two fields it touches, for a caller that holds other fields of the participant
/// (its pacer) at the same time.
pub(crate) fn stamp_parts(
    next_transport_seq: &mut u16,
    bwe: &mut sluice_bwe::Bwe,
    buf: &mut [u8],
    now: Instant,
) {
    let seq = *next_transport_seq;
    if set_extension(buf, EXT_TRANSPORT_CC, &seq.to_be_bytes()) {
        *next_transport_seq = seq.wrapping_add(1);
        bwe.on_packet_sent(now, seq, buf.len() + SRTP_OVERHEAD_BYTES, None);
    }
}

/// Binds a new SSRC of `p` to the published track whose MID the packet carries, within
/// the participant's SSRC budget. A simulcast track's encoding is named by the RID
/// extension (media) or the repaired-RID extension (its RTX); a plain track's RTX is told
/// apart by its RTX payload type.
fn learn_ssrc(
    p: &mut Participant,
    tracks: &std::collections::BTreeMap<TrackId, Track>,
    h: &RtpHeader<'_>,
    max_ssrcs: usize,
) -> Result<SsrcBinding, RouterDrop> {
    let mid = h.extension(EXT_MID).ok_or(RouterDrop::UnknownSsrc)?;
    let (&track_id, track) = p
        .published
        .iter()
        .filter_map(|id| tracks.get(id).map(|t| (id, t)))
        .find(|(_, t)| t.mid.as_bytes() == mid)
        .ok_or(RouterDrop::UnknownSsrc)?;
    if p.ssrcs.len() >= max_ssrcs {
        return Err(RouterDrop::SsrcLimit);
    }
    let layer_named = |rid: &[u8]| {
        track
            .layers
            .iter()
            .position(|l| l.rid.as_deref().is_some_and(|r| r.as_bytes() == rid))
    };
    let simulcast = track.layers.iter().any(|l| l.rid.is_some());
    let (layer, role) = if simulcast {
        if let Some(rid) = h.extension(EXT_RID) {
            (
                layer_named(rid).ok_or(RouterDrop::UnknownRid)?,
                StreamRole::Media,
            )
        } else if let Some(rid) = h.extension(EXT_REPAIRED_RID) {
            (
                layer_named(rid).ok_or(RouterDrop::UnknownRid)?,
                StreamRole::Rtx,
            )
        } else {
            return Err(RouterDrop::UnknownSsrc);
        }
    } else if track.kind == Kind::Video && media_payload_type(h.payload_type()).is_some() {
        (0, StreamRole::Rtx)
    } else {
        (0, StreamRole::Media)
    };
    let binding = SsrcBinding {
        track: track_id,
        layer,
        role,
    };
    p.ssrcs.insert(h.ssrc(), binding);
    Ok(binding)
}

/// Sends a PLI for encoding `layer` to the track's publisher if a keyframe of it is
/// wanted and the throttle allows; gives up after `max_attempts` unanswered PLIs.
#[allow(clippy::too_many_arguments)]
pub(crate) fn maybe_send_pli(
    track: &mut Track,
    layer: usize,
    now: Instant,
    interval: std::time::Duration,
    max_attempts: u32,
    sender_ssrc: u32,
    outbox: &mut crate::output::Outbox,
    stats: &mut crate::stats::RouterStats,
) {
    let Some(l) = track.layers.get_mut(layer) else {
        return;
    };
    let Some(due) = l.keyframe_due(interval, now) else {
        return;
    };
    if now < due {
        return;
    }
    if l.keyframe.attempts >= max_attempts {
        l.keyframe.pending = false;
        return;
    }
    let Some(media_ssrc) = l.ssrc else {
        return;
    };
    let mut buf = outbox.buffer();
    sluice_rtp::write_pli(sender_ssrc, media_ssrc, &mut buf);
    l.keyframe.last_sent_at = Some(now);
    l.keyframe.attempts += 1;
    stats.keyframe_requests_sent += 1;
    trace!(ssrc = media_ssrc, layer, "PLI to publisher");
    outbox.push(track.publisher, OutputKind::Rtcp, buf, stats);
}
