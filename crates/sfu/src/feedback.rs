//! The RTCP path: SRs from publishers are remembered for lip sync; NACK, PLI and FIR from
//! subscribers are answered here (retransmission) or turned into throttled requests to the
//! publisher; RR, REMB and transport-cc from subscribers are counted, never forwarded.

use std::time::Instant;

use sluice_rtp::rtcp::{Nack, SenderReport};
use sluice_rtp::{write_rtx, RtcpIter, RtcpPacket, RtpHeader};
use tracing::trace;

use crate::forward::{maybe_send_pli, stamp_transport_seq};
use crate::ids::ParticipantId;
use crate::media::rtx_payload_type;
use crate::output::OutputKind;
use crate::router::Router;
use crate::state::{SenderReportMapping, StreamRole};
use crate::stats::DropReason;

impl Router {
    /// Handles one decrypted RTCP datagram (compound or reduced-size) from `from` at `now`.
    /// Packets after a malformed one are dropped (their boundaries are unknown).
    pub fn handle_rtcp(&mut self, now: Instant, from: ParticipantId, packet: &[u8]) {
        self.touch(now);
        self.stats.rtcp_packets_received += 1;
        if !self.participants.contains_key(&from) {
            self.stats.dropped.add(DropReason::UnknownParticipant);
            return;
        }
        for item in RtcpIter::new(packet) {
            let Ok(rtcp) = item else {
                self.stats.dropped.add(DropReason::MalformedRtcp);
                break;
            };
            match rtcp {
                RtcpPacket::SenderReport(sr) => self.on_sender_report(now, from, &sr),
                RtcpPacket::ReceiverReport(_) => self.stats.receiver_reports_received += 1,
                RtcpPacket::Nack(nack) => self.on_nack(from, &nack),
                RtcpPacket::Pli { media_ssrc, .. } => {
                    self.on_keyframe_request(now, from, media_ssrc)
                }
                RtcpPacket::Fir(fir) => {
                    for entry in fir.entries() {
                        self.on_keyframe_request(now, from, entry.ssrc);
                    }
                }
                RtcpPacket::Remb(_) => self.stats.remb_received += 1,
                RtcpPacket::TransportCc(_) => self.stats.twcc_received += 1,
                _ => {}
            }
        }
    }

    fn on_sender_report(&mut self, now: Instant, from: ParticipantId, sr: &SenderReport<'_>) {
        self.stats.sender_reports_received += 1;
        let binding = self
            .participants
            .get(&from)
            .and_then(|p| p.ssrcs.get(&sr.sender_ssrc).copied())
            .filter(|b| b.role == StreamRole::Media);
        let track = binding.and_then(|b| self.tracks.get_mut(&b.track));
        let Some(track) = track.filter(|t| t.ssrc == Some(sr.sender_ssrc)) else {
            self.stats.dropped.add(DropReason::RtcpUnknownSsrc);
            return;
        };
        track.sender_report = Some(SenderReportMapping {
            ssrc: sr.sender_ssrc,
            ntp: sr.ntp_timestamp,
            rtp_timestamp: sr.rtp_timestamp,
            arrival: now,
        });
        if let Some(recv) = track.recv.as_mut() {
            recv.on_sender_report(sr.ntp_middle_32(), now);
        }
    }

    /// Answers a subscriber's NACK from its subscription's cache: RTX on the announced RTX
    /// SSRC when there is one, the packet as first sent otherwise. At most
    /// `max_retransmissions_per_nack` packets per NACK.
    fn on_nack(&mut self, from: ParticipantId, nack: &Nack<'_>) {
        let Router {
            config,
            participants,
            tracks,
            outbox,
            stats,
            ..
        } = self;
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
            stats.dropped.add(DropReason::RtcpUnknownSsrc);
            return;
        };
        let Some(sub) = tracks
            .get_mut(&announced.track)
            .and_then(|t| t.subscription_mut(from))
        else {
            stats.dropped.add(DropReason::RtcpUnknownSsrc);
            return;
        };
        for (i, seq) in nack.lost().enumerate() {
            if i >= config.max_retransmissions_per_nack {
                stats.nacks_missed += 1;
                continue;
            }
            let Some(original) = sub.cache.as_ref().and_then(|c| c.get(seq)) else {
                stats.nacks_missed += 1;
                continue;
            };
            let mut buf = outbox.buffer();
            let rtx_pt = RtpHeader::parse(original)
                .ok()
                .and_then(|h| rtx_payload_type(h.payload_type()));
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
            stamp_transport_seq(subscriber, &mut buf);
            stats.nacks_answered += 1;
            trace!(subscriber = from.0, seq, "retransmission");
            outbox.push(from, OutputKind::Rtp, buf, stats);
        }
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
            stats.dropped.add(DropReason::RtcpUnknownSsrc);
            return;
        };
        track.request_keyframe();
        maybe_send_pli(
            track,
            now,
            config.keyframe_request_interval,
            config.max_keyframe_request_attempts,
            config.rtcp_sender_ssrc,
            outbox,
            stats,
        );
    }
}
