//! Pacing toward subscribers: once a subscriber's transport-cc feedback gives it a
//! bandwidth estimate, its RTP leaves through a [`Pacer`] at a multiple of that estimate
//! (audio at once, retransmissions before video), so a keyframe or a switch to a higher
//! encoding does not arrive at its bottleneck as one burst. Its transport-wide sequence
//! number and send time are stamped when a packet leaves the pacer, so the estimator
//! sees the network's delay, not the pacer's queue.

use std::time::Instant;

use sluice_bwe::pacer::{Pacer, PacerConfig, PacerOutput, Priority};

use crate::allocation::SubscriberLink;
use crate::fec::Leaving;
use crate::forward::SRTP_OVERHEAD_BYTES;
use crate::ids::ParticipantId;
use crate::media::EXT_ABS_SEND_TIME;
use crate::output::{Outbox, OutputKind};
use crate::state::Participant;
use crate::stats::RouterStats;

/// Packets leaving a pacer per call, bounding the work of one call.
const MAX_RELEASED_PER_CALL: usize = 256;

/// A pacer for a subscriber whose estimate just became known.
pub(crate) fn new_pacer() -> Pacer<Vec<u8>> {
    Pacer::new(PacerConfig::default())
}

/// Sends one RTP packet to `id`: through its pacer when it has one, at once otherwise.
#[allow(clippy::too_many_arguments)] // the router's disjoint fields, borrowed separately
pub(crate) fn send_rtp(
    id: ParticipantId,
    subscriber: &mut Participant,
    buf: Vec<u8>,
    priority: Priority,
    now: Instant,
    send_time: &[u8; 3],
    outbox: &mut Outbox,
    stats: &mut RouterStats,
) {
    match subscriber.link.pacer.as_mut() {
        Some(pacer) => {
            let size = buf.len() + SRTP_OVERHEAD_BYTES;
            if !pacer.enqueue(now, buf, size, priority) {
                stats.paced_dropped += 1;
            }
            release(id, subscriber, now, send_time, outbox, stats);
        }
        None => {
            let mut buf = buf;
            let Participant {
                link,
                next_transport_seq,
                ..
            } = subscriber;
            let SubscriberLink { bwe, fec, .. } = link;
            leave(
                fec,
                next_transport_seq,
                bwe,
                &mut buf,
                now,
                send_time,
                stats,
            );
            outbox.push(id, OutputKind::Rtp, buf, stats);
        }
    }
}

/// Hands everything `id`'s pacer lets go at `now` to the outbox.
pub(crate) fn release(
    id: ParticipantId,
    subscriber: &mut Participant,
    now: Instant,
    send_time: &[u8; 3],
    outbox: &mut Outbox,
    stats: &mut RouterStats,
) {
    // Pacing smooths bursts; it must not become the bottleneck. What the allocation could
    // not avoid sending (a single-encoding camera below its estimate, a track waiting out
    // its shortfall before a pause) would otherwise queue in the pacer and be dropped
    // there as late video, which a decoder takes worse than a burst.
    let rate = subscriber
        .link
        .bwe
        .estimate_bps()
        .max(subscriber.link.allocated_bps);
    // Disjoint fields: the pacer hands packets out while the sequence number and the
    // estimator are stamped, without collecting them first.
    let Participant {
        link,
        next_transport_seq,
        ..
    } = subscriber;
    let SubscriberLink {
        pacer, bwe, fec, ..
    } = link;
    let Some(pacer) = pacer.as_mut() else {
        return;
    };
    pacer.set_estimate(rate);
    let dropped_before = pacer.stats().dropped_late_video;
    for _ in 0..MAX_RELEASED_PER_CALL {
        match pacer.poll_send(now) {
            Some(PacerOutput::Packet { mut packet, .. }) => {
                leave(
                    fec,
                    next_transport_seq,
                    bwe,
                    &mut packet,
                    now,
                    send_time,
                    stats,
                );
                outbox.push(id, OutputKind::Rtp, packet, stats);
            }
            // probes are sent as padding by the allocation's probe sender
            Some(PacerOutput::Padding { .. }) => {}
            None => break,
        }
    }
    stats.paced_dropped += pacer.stats().dropped_late_video - dropped_before;
}

impl crate::router::Router {
    /// Lets every subscriber's pacer release what is due at `now`.
    pub(crate) fn release_pacers(&mut self, now: Instant) {
        let crate::router::Router {
            participants,
            outbox,
            stats,
            epoch,
            ..
        } = self;
        let send_time =
            crate::media::abs_send_time(now.saturating_duration_since(epoch.unwrap_or(now)));
        for (&id, p) in participants.iter_mut() {
            if p.link
                .pacer
                .as_ref()
                .and_then(|pacer| pacer.poll_timeout())
                .is_some_and(|t| t <= now)
            {
                release(id, p, now, &send_time, outbox, stats);
            }
        }
    }
}

/// What happens to every RTP packet as it leaves toward a subscriber: a FEC placeholder
/// gets its parity (over the packets as they left before it), the transport-wide sequence
/// number and send time are stamped and the estimator told, and a video packet in RED is
/// remembered, stamped, for the next FEC packet of its stream.
#[allow(clippy::too_many_arguments)] // the participant's disjoint fields
fn leave(
    fec: &mut crate::fec::FecEncoder,
    next_transport_seq: &mut u16,
    bwe: &mut sluice_bwe::Bwe,
    packet: &mut Vec<u8>,
    now: Instant,
    send_time: &[u8; 3],
    stats: &mut RouterStats,
) {
    let leaving = fec.before_leaving(packet, stats);
    sluice_rtp::set_extension(packet, EXT_ABS_SEND_TIME, send_time);
    crate::forward::stamp_parts(next_transport_seq, bwe, packet, now);
    if leaving == Leaving::Media {
        fec.record(packet);
    }
}
