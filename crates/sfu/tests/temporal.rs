//! VP8 temporal layers per subscriber, end to end on virtual time: a publisher that cannot
//! simulcast sends one VP8 encoding with three temporal layers (the L1T3 pattern 0 2 1 2,
//! 30 frames/s); the router's copies to one subscriber cross a netsim bottleneck narrower
//! than the whole encoding, and transport-cc feedback crosses back. The router must lower
//! the frame rate (leave out the upper temporal layers) instead of overfilling the link,
//! number what it forwards without gaps in sequence numbers or PictureIDs, and give the
//! full frame rate back when the link widens.

mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use common::*;
use sluice_netsim::{Link, LinkConfig};
use sluice_rtp::{RtpHeader, TwccRecorder, Vp8Descriptor};
use sluice_sfu::{
    Kind, OutputKind, ParticipantId, Router, RouterConfig, SubscriptionSpec, TrackSpec,
};

const PUB: ParticipantId = ParticipantId(1);
const SUB: ParticipantId = ParticipantId(2);
const SSRC: u32 = 0x100;
const ONE_WAY: Duration = Duration::from_millis(25);
/// Bytes of a picture of each temporal layer: the base layer costs most (it is referenced
/// the longest). Per four pictures 8400 bytes at 30 pictures/s: about 500 kbit/s whole,
/// 240 kbit/s for layer 0, 360 kbit/s for layers 0 and 1.
const PICTURE_BYTES: [usize; 3] = [4000, 2000, 1200];
/// The temporal layer of the n-th picture in the L1T3 pattern.
const PATTERN: [u8; 4] = [0, 2, 1, 2];
const MAX_PACKET_PAYLOAD: usize = 1100;

struct Run {
    router: Router,
    down: Link,
    up: VecDeque<(Instant, Vec<u8>)>,
    recorder: TwccRecorder,
    now: Instant,
    next_frame: Instant,
    next_feedback: Instant,
    seq: u16,
    ts: u32,
    picture_id: u16,
    tl0: u8,
    pictures: u64,
    key_wanted: bool,
    /// Delivered to the subscriber: (sequence number, temporal layer, PictureID).
    delivered: Vec<(u16, u8, u16)>,
    delivered_bytes: u64,
}

impl Run {
    fn new(capacity_bps: u64) -> Self {
        let now = Instant::now();
        let mut router = Router::new(RouterConfig::default());
        router.add_participant("room", PUB).unwrap();
        router.add_participant("room", SUB).unwrap();
        let spec = TrackSpec {
            ssrc: Some(SSRC),
            ..TrackSpec::new("1", Kind::Video)
        };
        let track = router.publish(PUB, spec).unwrap();
        let sub = SubscriptionSpec {
            rtx_ssrc: Some(0xB1),
            ..SubscriptionSpec::new(0xB0)
        };
        router.subscribe(SUB, track, sub).unwrap();
        let mut run = Self {
            router,
            down: Link::new(link(capacity_bps), 11, now),
            up: VecDeque::new(),
            recorder: TwccRecorder::default(),
            now,
            next_frame: now,
            next_feedback: now,
            seq: 40_000,
            ts: 0,
            picture_id: 0x7F00,
            tl0: 250,
            pictures: 0,
            key_wanted: true,
            delivered: Vec::new(),
            delivered_bytes: 0,
        };
        run.down.set_config(link(capacity_bps));
        run
    }

    /// One picture of the L1T3 pattern, cut into packets.
    fn picture(&mut self) -> Vec<Vec<u8>> {
        let tid = PATTERN[(self.pictures % 4) as usize];
        self.pictures += 1;
        let key = std::mem::take(&mut self.key_wanted);
        let tid = if key { 0 } else { tid };
        if tid == 0 {
            self.tl0 = self.tl0.wrapping_add(1);
        }
        self.picture_id = (self.picture_id + 1) & 0x7FFF;
        self.ts = self.ts.wrapping_add(3000);
        // TID 1 right after a base picture depends on the base layer only: a sync point
        let sync = tid == 1;
        let mut left = PICTURE_BYTES[usize::from(tid)];
        let mut first = true;
        let mut packets = Vec::new();
        while left > 0 {
            let size = left.min(MAX_PACKET_PAYLOAD);
            left -= size;
            let mut payload = vec![
                if first { 0x90 } else { 0x80 },
                0xE0, // PictureID, TL0PICIDX and TID present
                0x80 | (self.picture_id >> 8) as u8,
                self.picture_id as u8,
                self.tl0,
                (tid << 6) | if sync { 0x20 } else { 0 },
                if key { 0x00 } else { 0x01 },
            ];
            payload.resize(size.max(payload.len()), 0xAB);
            self.seq = self.seq.wrapping_add(1);
            packets.push(
                Rtp::new(96, SSRC, self.seq, self.ts, &payload)
                    .mid("1")
                    .twcc(0)
                    .build(),
            );
            first = false;
        }
        packets
    }

    fn drain_router(&mut self) {
        while let Some(out) = self.router.poll_output() {
            if out.to == SUB {
                self.down.send(self.now, out.data);
            } else if out.kind == OutputKind::Rtcp {
                // any PLI: the next picture is a keyframe
                self.key_wanted = true;
            }
        }
    }

    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.now += Duration::from_millis(1);
            let now = self.now;
            if now >= self.next_frame {
                self.next_frame += Duration::from_micros(33_333);
                for p in self.picture() {
                    self.router.handle_rtp(now, PUB, &p);
                    self.drain_router();
                }
            }
            while let Some(datagram) = self.down.poll_deliver(now) {
                let Ok(h) = RtpHeader::parse(&datagram) else {
                    continue;
                };
                if let Some(&[a, b]) = h.extension(3) {
                    self.recorder.record(u16::from_be_bytes([a, b]), now);
                }
                if h.ssrc() == 0xB0 && h.payload_type() == 96 {
                    self.delivered_bytes += datagram.len() as u64;
                    if let Some(d) = Vp8Descriptor::parse(h.payload()) {
                        let pid = d.picture_id.map_or(0, |(p, _)| p);
                        self.delivered
                            .push((h.sequence_number(), d.temporal_id, pid));
                    }
                }
            }
            if now >= self.next_feedback {
                self.next_feedback += Duration::from_millis(50);
                let mut fb = Vec::new();
                while self.recorder.build_feedback(0xB0B0, 0xB0, &mut fb) {
                    self.up.push_back((now + ONE_WAY, std::mem::take(&mut fb)));
                }
            }
            while self.up.front().is_some_and(|(t, _)| *t <= now) {
                if let Some((_, fb)) = self.up.pop_front() {
                    self.router.handle_rtcp(now, SUB, &fb);
                    self.drain_router();
                }
            }
            if self.router.poll_timeout().is_some_and(|t| t <= now) {
                self.router.handle_timeout(now);
                self.drain_router();
            }
        }
    }
}

fn link(capacity_bps: u64) -> LinkConfig {
    // a 100 ms queue at the bottleneck
    LinkConfig::throttled(ONE_WAY, capacity_bps, (capacity_bps / 8 / 10) as usize)
}

/// Gaps in a run of delivered sequence numbers (in order of arrival on a FIFO link).
fn sequence_gaps(delivered: &[(u16, u8, u16)]) -> u64 {
    delivered
        .windows(2)
        .map(|w| u64::from(w[1].0.wrapping_sub(w[0].0).wrapping_sub(1)))
        .sum()
}

/// Jumps of more than one between the PictureIDs of consecutive pictures delivered.
fn picture_id_jumps(delivered: &[(u16, u8, u16)]) -> usize {
    let mut pictures: Vec<u16> = delivered.iter().map(|d| d.2).collect();
    pictures.dedup();
    pictures
        .windows(2)
        .filter(|w| w[1].wrapping_sub(w[0]) & 0x7FFF != 1)
        .count()
}

#[test]
fn a_narrow_link_gets_a_lower_frame_rate_without_gaps_and_the_full_rate_back_when_it_widens() {
    let mut run = Run::new(400_000);
    run.run(Duration::from_secs(20));
    let before = (
        run.down.stats().dropped.total(),
        run.router.stats().paced_dropped,
    );
    run.delivered.clear();
    run.delivered_bytes = 0;
    run.run(Duration::from_secs(5));
    let report = run.router.subscriber_report(SUB).unwrap();
    let lost =
        run.down.stats().dropped.total() - before.0 + run.router.stats().paced_dropped - before.1;
    let mut per_layer = [0usize; 3];
    for &(_, tid, _) in &run.delivered {
        per_layer[usize::from(tid.min(2))] += 1;
    }
    let rate = run.delivered_bytes * 8 / 5;
    let gaps = sequence_gaps(&run.delivered);
    let jumps = picture_id_jumps(&run.delivered);
    println!(
        "400 kbit/s: {report:?}, delivered {rate} bit/s, packets per temporal layer {per_layer:?}, \
         sequence gaps {gaps}, picture id jumps {jumps}, lost on the way {lost}, skipped {}",
        run.router.stats().temporal_layer_skipped
    );
    assert_eq!(report.paused_tracks, 0, "{report:?}");
    assert_eq!(report.reduced_frame_rate_tracks, 1, "{report:?}");
    assert_eq!(per_layer[2], 0, "the top temporal layer is left out");
    assert!(per_layer[0] > 0, "the base layer flows");
    assert!(rate <= 400_000, "within the link: {rate}");
    assert!(
        gaps <= lost,
        "the skipped pictures leave no gap in the sequence numbers ({gaps} gaps, {lost} lost)"
    );
    assert!(
        jumps as u64 <= lost,
        "nor in the PictureIDs ({jumps} jumps, {lost} lost)"
    );

    // the link widens: every layer comes back
    run.down.set_config(link(3_000_000));
    run.run(Duration::from_secs(15));
    run.delivered.clear();
    run.run(Duration::from_secs(3));
    let report = run.router.subscriber_report(SUB).unwrap();
    let top = run.delivered.iter().filter(|d| d.1 == 2).count();
    println!("3 Mbit/s: {report:?}, top layer packets {top}");
    assert_eq!(report.reduced_frame_rate_tracks, 0, "{report:?}");
    assert!(top > 0, "the full frame rate is back");
    assert_eq!(picture_id_jumps(&run.delivered), 0);
    assert_eq!(sequence_gaps(&run.delivered), 0);
}
