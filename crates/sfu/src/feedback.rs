//! The RTCP path: SRs from publishers are remembered for lip sync; NACK, PLI and FIR from
//! subscribers are answered here (retransmission) or turned into throttled requests to the
//! publisher; RR, REMB and transport-cc from subscribers are counted, never forwarded.

use std::time::Instant;

use sluice_rtp::rtcp::{Nack, SenderReport};
use sluice_rtp::{set_extension, write_rtx, RtcpIter, RtcpPacket, RtpHeader};
use tracing::trace;

use sluice_bwe::pacer::Priority;

use crate::forward::maybe_send_pli;
use crate::ids::ParticipantId;
use crate::media::{
    abs_send_time, hide_extension, rewrite_mid, rtx_payload_type, EXT_ABS_SEND_TIME, EXT_RID,
    PT_RED_VIDEO, PT_RED_VIDEO_RTX,
};
use crate::pacing::send_rtp;
use crate::router::Router;
use crate::state::{SenderReportMapping, StreamRole, Track};
use crate::stats::RouterDrop;
use sluice_rtp::red::wrap_in_red;

impl Router {
    /// Handles one decrypted RTCP datagram (compound or reduced-size) from `from` at `now`.
    /// Packets after a malformed one are dropped (their boundaries are unknown).
    pub fn handle_rtcp(&mut self, now: Instant, from: ParticipantId, packet: &[u8]) {
        self.deadline.set(None);
        self.touch(now);
        self.stats.rtcp_packets_received += 1;
        if !self.participants.contains_key(&from) {
            self.stats.dropped.add(RouterDrop::UnknownParticipant);
            return;
        }
        let mut transport_feedback = false;
        for item in RtcpIter::new(packet) {
            let Ok(rtcp) = item else {
                self.stats.dropped.add(RouterDrop::MalformedRtcp);
                break;
            };
            match rtcp {
                RtcpPacket::SenderReport(sr) => self.on_sender_report(now, from, &sr),
                RtcpPacket::ReceiverReport(_) => self.stats.receiver_reports_received += 1,
                RtcpPacket::Nack(nack) => self.on_nack(now, from, &nack),
                RtcpPacket::Pli { media_ssrc, .. } => {
                    self.on_keyframe_request(now, from, media_ssrc)
                }
                RtcpPacket::Fir(fir) => {
                    for entry in fir.entries() {
                        self.on_keyframe_request(now, from, entry.ssrc);
                    }
                }
                RtcpPacket::Remb(_) => self.stats.remb_received += 1,
                RtcpPacket::TransportCc(_) => {
                    self.stats.twcc_received += 1;
                    transport_feedback = true;
                }
                _ => {}
            }
        }
        if transport_feedback {
            // about the packets we sent it: its bandwidth estimate
            self.on_transport_feedback(now, from, packet);
        }
    }

    fn on_sender_report(&mut self, now: Instant, from: ParticipantId, sr: &SenderReport<'_>) {
        self.stats.sender_reports_received += 1;
        let binding = self
            .participants
            .get(&from)
            .and_then(|p| p.ssrcs.get(&sr.sender_ssrc).copied())
            .filter(|b| b.role == StreamRole::Media);
        let layer = binding.and_then(|b| {
            self.tracks
                .get_mut(&b.track)
                .and_then(|t| t.layers.get_mut(b.layer))
        });
        let Some(layer) = layer.filter(|l| l.ssrc == Some(sr.sender_ssrc)) else {
            self.stats.dropped.add(RouterDrop::RtcpUnknownSsrc);
            return;
        };
        layer.sender_report = Some(SenderReportMapping {
            ssrc: sr.sender_ssrc,
            ntp: sr.ntp_timestamp,
            rtp_timestamp: sr.rtp_timestamp,
            arrival: now,
        });
        if let Some(recv) = layer.recv.as_mut() {
            recv.on_sender_report(sr.ntp_middle_32(), now);
        }
    }

    /// Answers a subscriber's NACK from the track's cache: the cached packet is rewritten
    /// again for the subscriber (SSRC, sequence number, timestamp, MID, a fresh transport
    /// sequence number and send time) and sent as RTX on the announced RTX SSRC when there
    /// is one, as is otherwise. At most `max_retransmissions_per_nack` packets per NACK.
    fn on_nack(&mut self, now: Instant, from: ParticipantId, nack: &Nack<'_>) {
        let Router {
            config,
            participants,
            tracks,
            outbox,
            stats,
            epoch,
            scratch_packet,
            ..
        } = self;
        let send_time = abs_send_time(now.saturating_duration_since(epoch.unwrap_or(now)));
        stats.nacks_received += 1;
        let Some(subscriber) = participants.get_mut(&from) else {
            return;
        };
        let Some(announced) = subscriber
            .announced
            .get(&nack.media_ssrc)
            .filter(|a| a.role == StreamRole::Media)
            .copied()
        else {
            stats.dropped.add(RouterDrop::RtcpUnknownSsrc);
            return;
        };
        let Some(track) = tracks.get_mut(&announced.track) else {
            stats.dropped.add(RouterDrop::RtcpUnknownSsrc);
            return;
        };
        let Track {
            layers,
            subscriptions,
            codec,
            ..
        } = track;
        let Some(sub) = subscriptions.iter_mut().find(|s| s.subscriber == from) else {
            stats.dropped.add(RouterDrop::RtcpUnknownSsrc);
            return;
        };
        // Only packets of the encoding forwarded now can be found again: the rewriter
        // maps back into the current source alone.
        let cache = sub
            .layer
            .and_then(|l| layers.get(l))
            .and_then(|l| l.cache.as_ref());
        let vp8 = *codec == sluice_rtp::Codec::Vp8;
        let simulcast = layers.len() > 1;
        let mut rewritten = std::mem::take(scratch_packet);
        for (i, seq) in nack.lost().enumerate() {
            if i >= config.max_retransmissions_per_nack {
                stats.nacks_missed += 1;
                continue;
            }
            let cached = sub
                .rewriter
                .source_sequence_number(seq)
                .and_then(|source_seq| cache?.get(source_seq));
            let Some(cached) = cached else {
                if !sub.rewriter.is_inserted(seq) {
                    stats.nacks_missed += 1;
                    continue;
                }
                // A lost FEC packet (its group's media packets are NACKed on their own):
                // an empty RTX packet of its number, so the receiver stops asking.
                stats.nacks_for_fec += 1;
                let Some(rtx_ssrc) = sub.rtx_ssrc.filter(|_| sub.red_rtx_accepted) else {
                    continue;
                };
                let ts = sub.rewriter.newest_timestamp().unwrap_or(0);
                crate::fec::write_empty(&mut rewritten, sub.ssrc, seq, ts);
                let mut buf = outbox.buffer();
                if write_rtx(
                    &rewritten,
                    rtx_ssrc,
                    PT_RED_VIDEO_RTX,
                    sub.rtx_seq,
                    &mut buf,
                )
                .is_err()
                {
                    outbox.recycle(buf);
                    continue;
                }
                sub.rtx_seq = sub.rtx_seq.wrapping_add(1);
                send_rtp(
                    from,
                    subscriber,
                    buf,
                    Priority::Retransmission,
                    now,
                    &send_time,
                    outbox,
                    stats,
                );
                continue;
            };
            rewritten.clear();
            rewritten.extend_from_slice(cached);
            if sub.rewriter.rewrite_again(&mut rewritten).is_none() {
                stats.nacks_missed += 1;
                continue;
            }
            if vp8 {
                let header_len = RtpHeader::parse(&rewritten).map_or(0, |h| h.header_len());
                if let Some(payload) = rewritten.get_mut(header_len..).filter(|_| header_len > 0) {
                    sub.vp8.rewrite_again(payload);
                }
            }
            if let Some(mid) = &sub.mid {
                rewrite_mid(&mut rewritten, mid.as_bytes());
            }
            if simulcast {
                hide_extension(&mut rewritten, EXT_RID);
            }
            set_extension(&mut rewritten, EXT_ABS_SEND_TIME, &send_time);
            // while it gets FEC its video goes in RED, and so does a retransmission, as
            // RTX of RED (what libwebrtc receivers expect); where RTX of RED was not
            // accepted the plain packet goes as RTX of its codec, which they take too
            if sub.fec_accepted
                && sub.red_rtx_accepted
                && sub.rtx_ssrc.is_some()
                && subscriber.link.fec_interval > 0
            {
                wrap_in_red(&mut rewritten, PT_RED_VIDEO);
            }
            let original = rewritten.as_slice();
            let mut buf = outbox.buffer();
            let rtx_pt = RtpHeader::parse(original)
                .ok()
                .and_then(|h| match h.payload_type() {
                    PT_RED_VIDEO => Some(PT_RED_VIDEO_RTX),
                    pt => rtx_payload_type(pt),
                });
            match (sub.rtx_ssrc, rtx_pt) {
                (Some(rtx_ssrc), Some(pt)) => {
                    if write_rtx(original, rtx_ssrc, pt, sub.rtx_seq, &mut buf).is_err() {
                        outbox.recycle(buf);
                        stats.nacks_missed += 1;
                        continue;
                    }
                    sub.rtx_seq = sub.rtx_seq.wrapping_add(1);
                    stats.rtx_sent += 1;
                }
                _ => buf.extend_from_slice(original),
            }
            stats.nacks_answered += 1;
            trace!(subscriber = from.0, seq, "retransmission");
            send_rtp(
                from,
                subscriber,
                buf,
                Priority::Retransmission,
                now,
                &send_time,
                outbox,
                stats,
            );
        }
        *scratch_packet = rewritten;
    }

    /// A subscriber's PLI/FIR for an SSRC we announced to it becomes a throttled PLI to
    /// the publisher of that track.
    fn on_keyframe_request(&mut self, now: Instant, from: ParticipantId, media_ssrc: u32) {
        let Router {
            config,
            participants,
            tracks,
            outbox,
            stats,
            ..
        } = self;
        stats.keyframe_requests_received += 1;
        let announced = participants
            .get(&from)
            .and_then(|p| p.announced.get(&media_ssrc).copied());
        let Some(track) = announced.and_then(|a| tracks.get_mut(&a.track)) else {
            stats.dropped.add(RouterDrop::RtcpUnknownSsrc);
            return;
        };
        let layer = track.layer_of(from).unwrap_or(0);
        track.request_keyframe(layer);
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
