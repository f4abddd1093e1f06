//! Per-subscriber bandwidth estimation and allocation, end to end on virtual time: a
//! publisher sends its camera as three encodings (150 kbit/s, 500 kbit/s, 1.5 Mbit/s)
//! and answers PLIs with keyframes; the router's copies to one subscriber cross a netsim
//! bottleneck; the subscriber reports arrivals with transport-cc feedback, which crosses
//! back. The router must settle on the encoding the bottleneck carries, without
//! overfilling it, and move up when the bottleneck widens.

mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use common::*;
use sluice_netsim::{Link, LinkConfig};
use sluice_rtp::{RtcpIter, RtcpPacket, RtpHeader, TwccRecorder};
use sluice_sfu::{
    Kind, OutputKind, ParticipantId, PauseReason, Router, RouterConfig, RouterEvent,
    SubscriptionSpec, TrackId, TrackSpec,
};

const PUB: ParticipantId = ParticipantId(1);
const SUB: ParticipantId = ParticipantId(2);
/// A second publisher: one 500 kbit/s encoding, and a microphone nobody speaks into.
const OTHER: ParticipantId = ParticipantId(3);
const OTHER_SSRC: u32 = 0x900;
const RIDS: [&str; 3] = ["q", "h", "f"];
/// Bytes per frame of each encoding at 30 frames/s: 150 kbit/s, 500 kbit/s, 1.5 Mbit/s.
const FRAME_BYTES: [usize; 3] = [625, 2083, 6250];
const MAX_PACKET_PAYLOAD: usize = 1100;
const ONE_WAY: Duration = Duration::from_millis(25);

/// The publisher: three encodings, each answering a PLI on its SSRC with a keyframe.
struct Publisher {
    seq: [u16; 3],
    ts: [u32; 3],
    picture_id: [u16; 3],
    key_wanted: [bool; 3],
}

impl Publisher {
    fn ssrc(layer: usize) -> u32 {
        0x100 * (layer as u32 + 1)
    }

    fn frame(&mut self, layer: usize, out: &mut Vec<Vec<u8>>) {
        let key = std::mem::take(&mut self.key_wanted[layer]);
        self.ts[layer] = self.ts[layer].wrapping_add(3000);
        self.picture_id[layer] = (self.picture_id[layer] + 1) & 0x7FFF;
        let mut left = FRAME_BYTES[layer];
        let mut first = true;
        while left > 0 {
            let size = left.min(MAX_PACKET_PAYLOAD);
            left -= size;
            let pid = self.picture_id[layer];
            let mut payload = vec![
                if first { 0x90 } else { 0x80 },
                0x80,
                0x80 | (pid >> 8) as u8,
                pid as u8,
                if key { 0x00 } else { 0x01 },
            ];
            payload.resize(size, 0xAB);
            self.seq[layer] = self.seq[layer].wrapping_add(1);
            out.push(
                Rtp::new(
                    96,
                    Self::ssrc(layer),
                    self.seq[layer],
                    self.ts[layer],
                    &payload,
                )
                .mid("1")
                .ext(5, RIDS[layer].as_bytes())
                .twcc(0) // browsers send it; the router rewrites it per subscriber
                .build(),
            );
            first = false;
        }
    }
}

struct Run {
    router: Router,
    track: TrackId,
    down: Link,
    up: VecDeque<(Instant, Vec<u8>)>,
    recorder: TwccRecorder,
    publisher: Publisher,
    now: Instant,
    next_frame: Instant,
    next_feedback: Instant,
    /// Subscriber bytes delivered in the current measurement window.
    delivered_bytes: u64,
    /// The second publisher's camera, when it is in the room.
    other: Option<(TrackId, u16, bool)>,
    /// The last REMB the router sent the second publisher.
    remb_to_other: Option<u64>,
}

impl Run {
    fn new(capacity_bps: u64) -> Self {
        let now = Instant::now();
        let mut router = Router::new(RouterConfig::default());
        router.add_participant("room", PUB).unwrap();
        router.add_participant("room", SUB).unwrap();
        let spec = TrackSpec {
            rids: RIDS.iter().map(|r| (*r).to_owned()).collect(),
            ..TrackSpec::new("1", Kind::Video)
        };
        let track = router.publish(PUB, spec).unwrap();
        let sub = SubscriptionSpec {
            rtx_ssrc: Some(0xB1),
            ..SubscriptionSpec::new(0xB0)
        };
        router.subscribe(SUB, track, sub).unwrap();
        // a 100 ms queue at the bottleneck, as a home router might have
        let queue = (capacity_bps / 8 / 10) as usize;
        let down = Link::new(LinkConfig::throttled(ONE_WAY, capacity_bps, queue), 7, now);
        Self {
            router,
            track,
            down,
            up: VecDeque::new(),
            recorder: TwccRecorder::default(),
            publisher: Publisher {
                seq: [0, 10_000, 20_000],
                ts: [0, 1_000_000, 2_000_000],
                picture_id: [0, 100, 200],
                key_wanted: [true; 3],
            },
            now,
            next_frame: now,
            next_feedback: now,
            delivered_bytes: 0,
            other: None,
            remb_to_other: None,
        }
    }

    /// Adds a second publisher whose single-encoding camera `SUB` also receives, and
    /// makes the first publisher the one speaking.
    fn with_second_publisher(mut self) -> Self {
        self.router.add_participant("room", OTHER).unwrap();
        let spec = TrackSpec {
            ssrc: Some(OTHER_SSRC),
            ..TrackSpec::new("1", Kind::Video)
        };
        let track = self.router.publish(OTHER, spec).unwrap();
        let sub = SubscriptionSpec {
            rtx_ssrc: Some(0xC1),
            ..SubscriptionSpec::new(0xC0)
        };
        self.router.subscribe(SUB, track, sub).unwrap();
        let mic = self
            .router
            .publish(
                PUB,
                TrackSpec {
                    ssrc: Some(0xA0),
                    ..TrackSpec::new("0", Kind::Audio)
                },
            )
            .unwrap();
        self.router
            .subscribe(SUB, mic, SubscriptionSpec::new(0xD0))
            .unwrap();
        self.other = Some((track, 0, true));
        self
    }

    fn set_capacity(&mut self, capacity_bps: u64) {
        let queue = (capacity_bps / 8 / 10) as usize;
        self.down
            .set_config(LinkConfig::throttled(ONE_WAY, capacity_bps, queue));
    }

    fn drain_router(&mut self) {
        while let Some(out) = self.router.poll_output() {
            if out.to == SUB {
                self.down.send(self.now, out.data);
            } else if out.kind == OutputKind::Rtcp {
                for packet in RtcpIter::new(&out.data).filter_map(Result::ok) {
                    if let RtcpPacket::Remb(remb) = &packet {
                        if remb.ssrcs().any(|s| s == OTHER_SSRC) {
                            self.remb_to_other = Some(remb.bitrate_bps);
                        }
                    }
                    if let RtcpPacket::Pli { media_ssrc, .. } = packet {
                        if media_ssrc == OTHER_SSRC {
                            if let Some(other) = self.other.as_mut() {
                                other.2 = true;
                            }
                        }
                        for layer in 0..3 {
                            if Publisher::ssrc(layer) == media_ssrc {
                                self.publisher.key_wanted[layer] = true;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Runs for `duration` of virtual time in 1 ms steps.
    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.now += Duration::from_millis(1);
            let now = self.now;
            if now >= self.next_frame {
                self.next_frame += Duration::from_micros(33_333);
                let mut packets = Vec::new();
                for layer in 0..3 {
                    self.publisher.frame(layer, &mut packets);
                }
                for p in packets {
                    self.router.handle_rtp(now, PUB, &p);
                    self.drain_router();
                }
                if let Some((_, seq, key)) = self.other.as_mut() {
                    let mut frame = Vec::new();
                    for _ in 0..2 {
                        *seq = seq.wrapping_add(1);
                        let mut payload = vec![0x90, 0x80, 0x80, 0x01, if *key { 0 } else { 1 }];
                        payload.resize(1040, 0xCD);
                        let ts = u32::from(*seq) * 1500;
                        frame.push(Rtp::new(96, OTHER_SSRC, *seq, ts, &payload).twcc(0).build());
                    }
                    *key = false;
                    // the first publisher speaks (RFC 6464 level 30 = -30 dBov)
                    let voice = Rtp::new(111, 0xA0, *seq, u32::from(*seq) * 960, OPUS)
                        .ext(4, &[0x80 | 30])
                        .twcc(0)
                        .build();
                    self.router.handle_rtp(now, PUB, &voice);
                    for p in frame {
                        self.router.handle_rtp(now, OTHER, &p);
                    }
                    self.drain_router();
                }
            }
            while let Some(datagram) = self.down.poll_deliver(now) {
                self.delivered_bytes += datagram.len() as u64;
                if let Ok(h) = RtpHeader::parse(&datagram) {
                    if let Some(&[a, b]) = h.extension(3) {
                        self.recorder.record(u16::from_be_bytes([a, b]), now);
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

    /// The rate delivered to the subscriber over `duration`.
    fn measure(&mut self, duration: Duration) -> u64 {
        self.delivered_bytes = 0;
        self.run(duration);
        self.delivered_bytes * 8 * 1000 / duration.as_millis() as u64
    }
}

#[test]
fn a_narrow_downlink_gets_the_encoding_it_can_carry_and_a_wide_one_the_full_encoding() {
    let mut run = Run::new(600_000);
    run.run(Duration::from_secs(15));
    let report = run.router.subscriber_report(SUB).unwrap();
    let rate = run.measure(Duration::from_secs(5));
    let layer = run.router.forwarded_layer(SUB, run.track);
    let dropped = run.down.stats().dropped.total();
    println!("600 kbit/s: report {report:?}, delivered {rate} bit/s, layer {layer:?}, link drops {dropped}");
    let estimate = report.estimate_bps.expect("feedback arrived");
    assert!(
        estimate <= 700_000,
        "estimate {estimate} within the bottleneck"
    );
    assert!(
        matches!(layer, Some(0) | Some(1)),
        "a low encoding for a 600 kbit/s link, got {layer:?}"
    );
    assert!(rate <= 600_000, "never more than the link carries: {rate}");
    assert!(rate >= 100_000, "video keeps flowing: {rate}");

    // the bottleneck widens: the estimate probes up and the full encoding follows
    run.set_capacity(4_000_000);
    run.run(Duration::from_secs(20));
    let report = run.router.subscriber_report(SUB).unwrap();
    let layer = run.router.forwarded_layer(SUB, run.track);
    println!("4 Mbit/s: report {report:?}, layer {layer:?}");
    assert_eq!(
        layer,
        Some(2),
        "the full encoding on a wide link ({report:?})"
    );
    assert!(run.router.stats().probe_packets_sent > 0);
}

#[test]
fn a_subscriber_without_transport_feedback_is_not_limited() {
    let mut run = Run::new(10_000_000);
    // nothing ever reports back
    run.up.clear();
    run.next_feedback = run.now + Duration::from_secs(3600);
    run.run(Duration::from_secs(3));
    assert_eq!(
        run.router.subscriber_report(SUB).unwrap().estimate_bps,
        None
    );
    assert_eq!(run.router.forwarded_layer(SUB, run.track), Some(2));
}

#[test]
fn when_even_the_lowest_encodings_do_not_fit_the_silent_participants_video_is_paused() {
    let mut run = Run::new(450_000).with_second_publisher();
    run.run(Duration::from_secs(15));
    let report = run.router.subscriber_report(SUB).unwrap();
    let (other_track, ..) = run.other.unwrap();
    let events: Vec<_> = std::iter::from_fn(|| run.router.poll_event()).collect();
    println!("450 kbit/s, two cameras: {report:?}, events {events:?}");
    assert_eq!(report.paused_tracks, 1, "{report:?}");
    // the speaker's camera keeps flowing, the other one is paused and said so
    assert!(run.router.forwarded_layer(SUB, run.track).is_some());
    assert_eq!(run.router.forwarded_layer(SUB, other_track), None);
    assert_eq!(
        events.last(),
        Some(&RouterEvent::VideoPaused {
            subscriber: SUB,
            publisher: OTHER,
            paused: true,
            reason: PauseReason::Bandwidth,
        })
    );
    let rate = run.measure(Duration::from_secs(3));
    assert!(rate <= 450_000, "within the link: {rate}");
    // the single-encoding publisher is asked for what its one subscriber can take,
    // never below the floor
    let remb = run
        .remb_to_other
        .expect("REMB to the single-encoding publisher");
    // (85 % of the subscriber's estimate when the REMB left, which is below its link)
    assert!(
        (150_000..=450_000).contains(&remb),
        "REMB {remb} for a subscriber behind 450 kbit/s"
    );

    // room again: it resumes
    run.set_capacity(3_000_000);
    run.run(Duration::from_secs(20));
    let report = run.router.subscriber_report(SUB).unwrap();
    println!("3 Mbit/s: {report:?}");
    assert_eq!(report.paused_tracks, 0);
    assert!(run.router.forwarded_layer(SUB, other_track).is_some());
    let events: Vec<_> = std::iter::from_fn(|| run.router.poll_event()).collect();
    assert!(events.contains(&RouterEvent::VideoPaused {
        subscriber: SUB,
        publisher: OTHER,
        paused: false,
        reason: PauseReason::Bandwidth,
    }));
}

#[test]
fn a_burst_for_a_paced_subscriber_leaves_over_time_not_at_once() {
    let mut run = Run::new(1_000_000);
    run.run(Duration::from_secs(5));
    let estimate = run
        .router
        .subscriber_report(SUB)
        .unwrap()
        .estimate_bps
        .unwrap();
    // a large keyframe of the encoding it receives: 40 packets of 1100 bytes at one instant
    let layer = run.router.forwarded_layer(SUB, run.track).unwrap();
    let mut packets = Vec::new();
    run.publisher.key_wanted[layer] = true;
    for _ in 0..8 {
        run.publisher.frame(layer, &mut packets);
    }
    let now = run.now;
    for p in &packets {
        run.router.handle_rtp(now, PUB, p);
    }
    let at_once: usize = std::iter::from_fn(|| run.router.poll_output())
        .filter(|o| o.to == SUB && o.kind == OutputKind::Rtp)
        .map(|o| o.data.len())
        .sum();
    // the pacer lets out a 5 ms burst at 2.5 x the estimate, not the whole frame
    let burst_allowance = (estimate as f64 * 2.5 / 8.0 * 0.005) as usize + 1500;
    println!("estimate {estimate}, {} bytes queued, {at_once} bytes at once (allowance {burst_allowance})", packets.iter().map(Vec::len).sum::<usize>());
    assert!(at_once <= burst_allowance, "{at_once} bytes left at once");
    // and the rest follows on the pacer's timer
    let wake = run.router.poll_timeout().unwrap();
    assert!(wake <= now + Duration::from_millis(20), "{:?}", wake - now);
}
