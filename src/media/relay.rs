//! Rooms that span workers: what one worker tells another about a room they share.
//!
//! A room whose participants sit on several workers has one copy of each publisher on
//! every worker that hosts members of the room: the worker with the publisher's session
//! (its *home*) copies each decrypted packet once to every other worker of the room, and
//! each of those feeds it to its own router as if the publisher were local (a *mirror*),
//! fanning it out to its own subscribers. Feedback that only the publisher can answer
//! (keyframe requests) crosses back to the home worker, which sends it to the publisher;
//! a NACK for a packet the relay lost is answered by the home worker from its router's
//! cache, never by the publisher (which the home worker already asks for what the
//! publisher's own link lost). Mediasoup's pipe transports between routers are the
//! model; the messages are plain values over in-process channels, and the same messages
//! are what a relay between nodes has to carry.
//!
//! Everything here is bounded: a worker queues at most [`MAX_QUEUED_RELAY_MESSAGES`]
//! messages between two flushes, and the channels between workers hold
//! [`RELAY_CHANNEL_BATCHES`] batches; what does not fit is dropped and counted, as a
//! full socket buffer would drop it.

use std::collections::BTreeMap;

use sluice_rtp::{RtcpIter, RtcpPacket};

use crate::media::command::{ParticipantId, PublicationSpec};

/// Most messages one worker queues for the others between two flushes.
pub const MAX_QUEUED_RELAY_MESSAGES: usize = 8192;

/// Batches a worker's relay inbox holds before senders drop (one batch per sender and
/// flush, so this is many milliseconds of a busy room).
pub const RELAY_CHANNEL_BATCHES: usize = 512;

/// One message between the workers of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayMessage {
    /// `participant`, whose session is on the sending worker, is in `room` and publishes
    /// `publications` (all of them; an empty list once it publishes nothing). The
    /// receiver keeps a mirror of it in its router.
    Publications {
        /// The room both workers host.
        room: String,
        /// The [`RoomSpan`](crate::media::command::RoomSpan) version the sender knew:
        /// a receiver that has since been told it no longer hosts the room ignores it.
        version: u64,
        /// The publisher.
        participant: ParticipantId,
        /// Everything it publishes now.
        publications: Vec<PublicationSpec>,
    },
    /// `participant` left, or the room no longer spans the receiving worker: drop its
    /// mirror.
    Gone(ParticipantId),
    /// A decrypted RTP packet from `participant`, as it arrived (before any rewrite).
    Rtp {
        /// The publisher.
        participant: ParticipantId,
        /// The plaintext packet.
        data: Vec<u8>,
    },
    /// `participant`'s sender reports (lip sync of its streams), the rest of its RTCP
    /// removed: what it says about media it receives concerns its home worker only.
    SenderReports {
        /// The publisher.
        participant: ParticipantId,
        /// Plaintext RTCP made of SR packets only.
        data: Vec<u8>,
    },
    /// Feedback for `participant` (whose session is on the receiving worker) from the
    /// sender's router: keyframe requests, NACKs and REMB only.
    Feedback {
        /// The publisher it is for.
        participant: ParticipantId,
        /// Plaintext RTCP made of PLI, FIR, NACK and REMB packets only.
        data: Vec<u8>,
    },
}

/// What one worker sends another in one go: everything it queued for it during one
/// flush, so a busy room costs one channel operation per flush, not one per packet.
#[derive(Debug)]
pub struct RelayBatch {
    /// The sending worker.
    pub from: usize,
    /// In the order they were queued.
    pub messages: Vec<RelayMessage>,
}

/// Messages waiting for the next flush, by destination worker.
#[derive(Debug, Default)]
pub(crate) struct RelayOutbox {
    queues: BTreeMap<usize, Vec<RelayMessage>>,
    queued: usize,
}

impl RelayOutbox {
    /// Queues `message` for `worker`; false (and nothing queued) when the outbox is full.
    pub(crate) fn push(&mut self, worker: usize, message: RelayMessage) -> bool {
        if self.queued >= MAX_QUEUED_RELAY_MESSAGES {
            return false;
        }
        self.queued += 1;
        self.queues.entry(worker).or_default().push(message);
        true
    }

    /// Everything queued for one worker, if anything is queued.
    pub(crate) fn pop(&mut self) -> Option<(usize, Vec<RelayMessage>)> {
        let (worker, messages) = self.queues.pop_first()?;
        self.queued = self.queued.saturating_sub(messages.len());
        Some((worker, messages))
    }
}

/// Which packets of an RTCP compound a filter keeps.
fn keep_packets(packet: &[u8], keep: impl Fn(&RtcpPacket<'_>) -> bool) -> Option<Vec<u8>> {
    let mut kept = Vec::new();
    let mut iter = RtcpIter::new(packet);
    while let Some(Ok((rtcp, range))) = iter.next_with_range() {
        if keep(&rtcp) {
            kept.extend_from_slice(packet.get(range)?);
        }
    }
    (!kept.is_empty()).then_some(kept)
}

/// The sender reports of a publisher's RTCP compound, if it has any.
pub(crate) fn sender_reports(packet: &[u8]) -> Option<Vec<u8>> {
    keep_packets(packet, |p| matches!(p, RtcpPacket::SenderReport(_)))
}

/// What of a router's RTCP toward a mirrored publisher must reach the real one: its
/// keyframe requests, NACKs and REMB (the rate its subscribers there can take).
/// Receiver reports and transport-wide feedback describe the relay, not the publisher's
/// link, and stay behind.
pub(crate) fn feedback(packet: &[u8]) -> Option<Vec<u8>> {
    keep_packets(packet, |p| {
        matches!(
            p,
            RtcpPacket::Pli { .. } | RtcpPacket::Fir(_) | RtcpPacket::Nack(_) | RtcpPacket::Remb(_)
        )
    })
}

/// `packet` with every REMB lowered to what `cap` allows for its SSRCs (the lowest cap
/// of any of them), or `None` when no REMB needed lowering. A publisher's own worker
/// and the other workers of its room each ask it for what their subscribers can take;
/// the publisher, which obeys the latest REMB it got, must get the lowest.
pub(crate) fn capped_remb(packet: &[u8], cap: impl Fn(u32) -> Option<u64>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(packet.len());
    let mut changed = false;
    let mut iter = RtcpIter::new(packet);
    while let Some(Ok((rtcp, range))) = iter.next_with_range() {
        let lowered = match &rtcp {
            RtcpPacket::Remb(remb) => remb
                .ssrcs()
                .filter_map(&cap)
                .min()
                .filter(|limit| *limit < remb.bitrate_bps)
                .map(|limit| (remb.sender_ssrc, limit, remb.ssrcs().collect::<Vec<u32>>())),
            _ => None,
        };
        match lowered {
            Some((sender, limit, ssrcs)) => {
                sluice_rtp::write_remb(sender, limit, &ssrcs, &mut out);
                changed = true;
            }
            None => out.extend_from_slice(packet.get(range)?),
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender_report(ssrc: u32) -> Vec<u8> {
        let mut sr = vec![0x80, 200, 0, 6];
        sr.extend_from_slice(&ssrc.to_be_bytes());
        sr.extend_from_slice(&[0; 20]);
        sr
    }

    #[test]
    fn only_sender_reports_cross_to_other_workers() {
        let mut compound = sender_report(1);
        let mut pli = Vec::new();
        sluice_rtp::write_pli(1, 99, &mut pli);
        compound.extend_from_slice(&pli);
        compound.extend_from_slice(&sender_report(2));
        let kept = sender_reports(&compound).expect("two SRs");
        assert_eq!(kept.len(), 2 * 28);
        assert_eq!(kept.get(..28), Some(sender_report(1).as_slice()));
        assert!(sender_reports(&pli).is_none());
    }

    #[test]
    fn only_keyframe_requests_nacks_and_remb_cross_back() {
        let mut compound = Vec::new();
        compound.extend_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 1]); // empty RR
        let mut pli = Vec::new();
        sluice_rtp::write_pli(1, 7, &mut pli);
        let mut nack = Vec::new();
        sluice_rtp::write_nack(1, 7, &[10, 12], &mut nack);
        let mut remb = Vec::new();
        sluice_rtp::write_remb(1, 300_000, &[7], &mut remb);
        compound.extend_from_slice(&pli);
        compound.extend_from_slice(&remb);
        compound.extend_from_slice(&nack);
        let kept = feedback(&compound).expect("PLI, REMB and NACK");
        let mut expected = pli.clone();
        expected.extend_from_slice(&remb);
        expected.extend_from_slice(&nack);
        assert_eq!(kept, expected);
        assert!(
            feedback(&compound[..8]).is_none(),
            "a receiver report stays behind"
        );
    }

    #[test]
    fn a_remb_is_lowered_to_the_lowest_cap_of_its_ssrcs_and_left_alone_otherwise() {
        let mut compound = vec![0x80, 201, 0, 1, 0, 0, 0, 1]; // empty RR
        let mut remb = Vec::new();
        sluice_rtp::write_remb(9, 800_000, &[7, 8], &mut remb);
        compound.extend_from_slice(&remb);
        let cap = |ssrc: u32| (ssrc == 8).then_some(300_000);
        let lowered = capped_remb(&compound, cap).expect("lowered");
        let mut expected = vec![0x80, 201, 0, 1, 0, 0, 0, 1];
        sluice_rtp::write_remb(9, 300_000, &[7, 8], &mut expected);
        assert_eq!(lowered, expected);
        assert!(
            capped_remb(&compound, |_| Some(900_000)).is_none(),
            "caps above: unchanged"
        );
        assert!(capped_remb(&compound, |_| None).is_none());
    }

    #[test]
    fn a_malformed_compound_keeps_what_came_before_the_damage() {
        let mut pli = Vec::new();
        sluice_rtp::write_pli(1, 7, &mut pli);
        let mut compound = pli.clone();
        compound.extend_from_slice(&[0x81, 206, 0, 40]); // claims far more than follows
        assert_eq!(feedback(&compound), Some(pli));
        assert_eq!(feedback(&[0xFF; 3]), None);
    }

    #[test]
    fn the_outbox_is_bounded_and_hands_out_per_worker_batches() {
        let mut outbox = RelayOutbox::default();
        for n in 0..MAX_QUEUED_RELAY_MESSAGES {
            assert!(outbox.push(n % 2, RelayMessage::Gone(ParticipantId(1))));
        }
        assert!(!outbox.push(0, RelayMessage::Gone(ParticipantId(1))));
        let (first, messages) = outbox.pop().unwrap();
        assert_eq!((first, messages.len()), (0, MAX_QUEUED_RELAY_MESSAGES / 2));
        assert!(outbox.push(0, RelayMessage::Gone(ParticipantId(1))));
        let (second, _) = outbox.pop().unwrap();
        assert_eq!(second, 0);
        assert_eq!(outbox.pop().map(|(w, _)| w), Some(1));
        assert!(outbox.pop().is_none());
    }
}
