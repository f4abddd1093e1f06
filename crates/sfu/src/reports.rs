//! Timers: RRs and transport-cc feedback and NACKs to publishers, SRs to subscribers, and
//! deferred PLIs. All deadlines are plain `Instant`s the worker sleeps towards.

use std::time::{Duration, Instant};

use sluice_rtp::rtcp::MAX_REPORT_BLOCKS;
use sluice_rtp::{write_nack, write_receiver_report, write_sdes_cname, write_sender_report};

use crate::forward::maybe_send_pli;
use crate::ids::{ParticipantId, TrackId};
use crate::output::OutputKind;
use crate::router::Router;
use crate::state::{Participant, Track};

/// Feedback packets built per participant per timeout, bounding the work of one call.
const MAX_TWCC_PACKETS_PER_TIMEOUT: usize = 16;
/// NACK packets sent per track per timeout.
const MAX_NACK_PACKETS_PER_TIMEOUT: usize = 4;

/// A participant's earliest timer: transport-cc feedback, RR and SR.
fn participant_timer(p: &Participant) -> Option<Instant> {
    [p.next_twcc_at, p.next_rr_at, p.next_sr_at, p.link.timer()]
        .into_iter()
        .flatten()
        .min()
}

/// The earlier of two optional instants (`None` is "never").
fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A duration as a 64-bit NTP interval (32.32 fixed point seconds).
fn duration_to_ntp(d: Duration) -> u64 {
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (d.as_secs() << 32).wrapping_add(frac)
}

impl Router {
    /// The next instant [`handle_timeout`](Self::handle_timeout) has work, if any (or a
    /// little earlier: an early wake-up finds nothing due and costs nothing else).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(deadline) = self.deadline.get() {
            return deadline;
        }
        let deadline = self.earliest_timer();
        self.deadline.set(Some(deadline));
        deadline
    }

    /// Lowers the cached deadline to the timers of what one RTP packet touched: its
    /// publisher, its track and the track's subscribers.
    pub(crate) fn lower_deadline_after_rtp(&self, from: ParticipantId, track: Option<TrackId>) {
        let Some(cached) = self.deadline.get() else {
            return;
        };
        let mut next = cached;
        next = earlier(
            next,
            self.participants.get(&from).and_then(participant_timer),
        );
        next = earlier(next, self.next_layer_selection_at);
        if let Some(t) = track.and_then(|id| self.tracks.get(&id)) {
            next = earlier(next, self.track_timer(t));
            for sub in &t.subscriptions {
                let subscriber = self.participants.get(&sub.subscriber);
                next = earlier(next, subscriber.and_then(participant_timer));
            }
        }
        self.deadline.set(Some(next));
    }

    /// The earliest timer of every participant and track.
    fn earliest_timer(&self) -> Option<Instant> {
        let participants = self.participants.values().filter_map(participant_timer);
        let tracks = self.tracks.values().filter_map(|t| self.track_timer(t));
        earlier(
            participants.chain(tracks).min(),
            self.next_layer_selection_at,
        )
    }

    /// A track's earliest timer: its encodings' NACK timers and deferred keyframe
    /// requests.
    fn track_timer(&self, t: &Track) -> Option<Instant> {
        t.layers
            .iter()
            .map(|l| {
                let nack = l.ssrc.and(l.nack.as_ref()).and_then(|n| n.poll_timeout());
                let keyframe = self
                    .last_now
                    .and_then(|now| l.keyframe_due(self.config.keyframe_request_interval, now));
                earlier(nack, keyframe)
            })
            .fold(None, earlier)
    }

    /// Lets time pass to `now`: sends every report, feedback, NACK and deferred PLI due,
    /// divides subscribers' estimates over their tracks, and sends probe padding.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.deadline.set(None);
        self.touch(now);
        if self.next_layer_selection_at.is_some_and(|t| now >= t) {
            self.next_layer_selection_at = now.checked_add(self.config.layer_selection_interval);
            self.update_speakers(now);
            self.allocate(now);
            self.limit_single_encoding_publishers();
        }
        self.send_probes(now);
        self.release_pacers(now);
        let Router {
            config,
            participants,
            tracks,
            outbox,
            stats,
            jitter,
            scratch_seqs,
            scratch_blocks,
            ..
        } = self;
        let rtcp_ssrc = config.rtcp_sender_ssrc;
        for (&id, p) in participants.iter_mut() {
            if p.next_twcc_at.is_some_and(|t| now >= t) {
                let media_ssrc = p
                    .published
                    .iter()
                    .find_map(|t| {
                        tracks
                            .get(t)
                            .and_then(|t| t.layers.iter().find_map(|l| l.ssrc))
                    })
                    .unwrap_or(0);
                for _ in 0..MAX_TWCC_PACKETS_PER_TIMEOUT {
                    let mut buf = outbox.buffer();
                    if !p.twcc.build_feedback(rtcp_ssrc, media_ssrc, &mut buf) {
                        outbox.recycle(buf);
                        break;
                    }
                    stats.twcc_feedback_sent += 1;
                    outbox.push(id, OutputKind::Rtcp, buf, stats);
                }
                p.last_twcc_at = Some(now);
                p.next_twcc_at = p
                    .twcc
                    .has_pending()
                    .then(|| now.checked_add(config.twcc_feedback_interval))
                    .flatten();
            }

            if p.next_rr_at.is_some_and(|t| now >= t) {
                scratch_blocks.clear();
                for t in &p.published {
                    let Some(track) = tracks.get_mut(t) else {
                        continue;
                    };
                    for recv in track.layers.iter_mut().filter_map(|l| l.recv.as_mut()) {
                        if recv.packets_received() > 0 {
                            scratch_blocks.push(recv.report_block(now));
                        }
                    }
                }
                let mut buf = outbox.buffer();
                let mut rest = scratch_blocks.as_slice();
                loop {
                    let n = write_receiver_report(rtcp_ssrc, rest, &mut buf);
                    rest = rest.get(n..).unwrap_or(&[]);
                    if rest.is_empty() || n < MAX_REPORT_BLOCKS {
                        break;
                    }
                }
                write_sdes_cname(rtcp_ssrc, config.cname.as_bytes(), &mut buf);
                stats.receiver_reports_sent += 1;
                outbox.push(id, OutputKind::Rtcp, buf, stats);
                p.next_rr_at = now.checked_add(jitter.jittered(config.rtcp_report_interval));
            }

            if p.next_sr_at.is_some_and(|t| now >= t) {
                for t in &p.subscribed {
                    let Some(track) = tracks.get_mut(t) else {
                        continue;
                    };
                    let clock_rate_hz = u128::from(track.kind.clock_rate_hz());
                    let cname = track.cname.as_bytes();
                    let Some(sub) = track.subscriptions.iter().find(|s| s.subscriber == id) else {
                        continue;
                    };
                    // the SR of the encoding this subscriber is fed from
                    let mapping = sub.layer.and_then(|l| track.layers.get(l)?.sender_report);
                    let Some(mapping) = mapping else {
                        continue;
                    };
                    if sub.sender.packet_count() == 0 {
                        continue;
                    }
                    // The publisher's (NTP, RTP) pair advanced to now, then translated into
                    // this subscriber's timestamp space: audio and video of one publisher
                    // keep the relation their SRs gave, so the receiver can lip-sync.
                    let elapsed = now.saturating_duration_since(mapping.arrival);
                    let ntp = mapping.ntp.wrapping_add(duration_to_ntp(elapsed));
                    let ticks = elapsed.as_nanos().saturating_mul(clock_rate_hz) / 1_000_000_000;
                    let in_ts = mapping.rtp_timestamp.wrapping_add(ticks as u32);
                    let Some(out_ts) = sub.rewriter.output_timestamp(mapping.ssrc, in_ts) else {
                        continue;
                    };
                    let info = sub.sender.sender_report(ntp, out_ts);
                    let mut buf = outbox.buffer();
                    write_sender_report(
                        sub.ssrc,
                        info.ntp,
                        info.rtp_timestamp,
                        info.packet_count,
                        info.octet_count,
                        &[],
                        &mut buf,
                    );
                    write_sdes_cname(sub.ssrc, cname, &mut buf);
                    stats.sender_reports_sent += 1;
                    outbox.push(id, OutputKind::Rtcp, buf, stats);
                }
                p.next_sr_at = now.checked_add(jitter.jittered(config.rtcp_report_interval));
            }
        }

        for track in tracks.values_mut() {
            for layer in 0..track.layers.len() {
                let nack = track
                    .layers
                    .get_mut(layer)
                    .and_then(|l| Some((l.nack.as_mut()?, l.ssrc?)));
                if let Some((nack, media_ssrc)) = nack {
                    scratch_seqs.clear();
                    nack.poll_nacks_into(now, scratch_seqs);
                    let mut rest = scratch_seqs.as_slice();
                    for _ in 0..MAX_NACK_PACKETS_PER_TIMEOUT {
                        if rest.is_empty() {
                            break;
                        }
                        let mut buf = outbox.buffer();
                        let n = write_nack(rtcp_ssrc, media_ssrc, rest, &mut buf);
                        rest = rest.get(n.max(1)..).unwrap_or(&[]);
                        stats.nacks_sent += 1;
                        outbox.push(track.publisher, OutputKind::Rtcp, buf, stats);
                    }
                }
                maybe_send_pli(
                    track,
                    layer,
                    now,
                    config.keyframe_request_interval,
                    config.max_keyframe_request_attempts,
                    rtcp_ssrc,
                    outbox,
                    stats,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ids::{Kind, SubscriptionSpec, TrackSpec};
    use crate::RouterConfig;

    /// A VP8 packet (keyframe when `key`) with sequence number `seq` on SSRC 0xA1.
    fn vp8(seq: u16, key: bool) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
        p.extend_from_slice(&0xA1u32.to_be_bytes());
        // VP8 descriptor (S=1, partition 0), then a payload header: P bit clear on keyframes.
        p.extend_from_slice(&[0x10, if key { 0x00 } else { 0x01 }, 0, 0, 0x9d, 0x01, 0x2a]);
        p
    }

    #[test]
    fn the_cached_deadline_is_never_later_than_the_earliest_timer() {
        let mut r = Router::new(RouterConfig::default());
        for id in 1..=4 {
            r.add_participant("room", ParticipantId(id)).unwrap();
        }
        let track = r
            .publish(
                ParticipantId(1),
                TrackSpec {
                    mid: "1".into(),
                    kind: Kind::Video,
                    ssrc: Some(0xA1),
                    rtx_ssrc: None,
                    rids: Vec::new(),
                },
            )
            .unwrap();
        for id in 2..=4u32 {
            r.subscribe(
                ParticipantId(u64::from(id)),
                track,
                SubscriptionSpec::new(0xB0 + id),
            )
            .unwrap();
        }
        let mut now = Instant::now();
        let mut seq = 0u16;
        for step in 0..2_000u32 {
            now += Duration::from_millis(7);
            // every 13th packet lost: NACK timers come and go
            seq = seq.wrapping_add(if step % 13 == 0 { 2 } else { 1 });
            r.handle_rtp(now, ParticipantId(1), &vp8(seq, step % 300 == 0));
            while r.poll_output().is_some() {}
            let cached = r.poll_timeout();
            let exact = r.earliest_timer();
            assert!(
                exact.is_none() || cached.is_some_and(|c| exact.is_some_and(|e| c <= e)),
                "step {step}: cached {cached:?} later than the earliest timer {exact:?}"
            );
            if let Some(due) = cached.filter(|&t| t <= now) {
                r.handle_timeout(now.max(due));
                while r.poll_output().is_some() {}
                assert_eq!(
                    r.poll_timeout(),
                    r.earliest_timer(),
                    "recomputed after a timeout"
                );
            }
        }
        let st = r.stats();
        assert!(st.receiver_reports_sent > 0 && st.nacks_sent > 0, "{st:?}");
    }

    #[test]
    fn ntp_interval_of_one_and_a_half_seconds() {
        assert_eq!(
            duration_to_ntp(Duration::from_millis(1500)),
            (1 << 32) | (1 << 31)
        );
    }
}
