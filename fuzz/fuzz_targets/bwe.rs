//! The send-side estimator and pacer of one subscriber driven by arbitrary programs: the
//! estimator sees packets sent, feedback built by a real `TwccRecorder` from fuzzed
//! arrival patterns (optionally corrupted), raw feedback bytes and time passing; the
//! pacer gets packets of every class, probe clusters and polls.
//!
//! Input: frames `[control][len u16][bytes]`. Control bits 0-2 pick the step:
//! 0 send packets (one per byte: the byte gives the size, whether the receiver gets it,
//! and its extra delay), 1 time passes (bytes as a big-endian count of 100 us steps),
//! 2 the receiver's feedback is delivered (a byte flipped if the frame has bytes),
//! 3 the bytes are delivered as a feedback datagram, 4 the application's desired rate,
//! 5 pacer traffic (one enqueue per byte, class from the byte), 6-7 drain the pacer.
//! Bits 3-7: time that passes before the step, in 5 ms steps.
//!
//! Checks: the estimate stays within the configured bounds; after `handle_timeout(now)`
//! no timer is still due at `now` (no busy loop); the pacer's queue stays within its
//! bound and never hands out more packets than it was given; a probe's packets carry the
//! id of a cluster the estimator planned.
#![no_main]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sluice_bwe::pacer::{Pacer, PacerConfig, PacerOutput, Priority};
use sluice_bwe::{Bwe, BweConfig};
use sluice_rtp::TwccRecorder;

const MIN_BPS: u64 = 50_000;
const MAX_BPS: u64 = 10_000_000;
const MAX_QUEUE: usize = 64;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let config = BweConfig {
        min_bitrate_bps: MIN_BPS,
        max_bitrate_bps: MAX_BPS,
        history_packets: 256,
        ..BweConfig::default()
    };
    let mut bwe = Bwe::new(config);
    let mut pacer: Pacer<u32> = Pacer::new(PacerConfig {
        max_queue_packets: MAX_QUEUE,
        ..PacerConfig::default()
    });
    let mut recorder = TwccRecorder::new(256);
    let mut seq: u16 = 0;
    let mut planned: BTreeSet<u32> = BTreeSet::new();
    let mut enqueued = 0u64;
    let mut handed_out = 0u64;
    let mut feedback = Vec::new();

    for frame in sluice_fuzz::frames(data, 512) {
        now += Duration::from_millis(5) * u32::from(frame.control >> 3);
        match frame.control & 7 {
            0 => {
                for &b in frame.bytes.iter().take(64) {
                    let size = 40 + usize::from(b) * 5;
                    let probe = planned
                        .iter()
                        .copied()
                        .find(|id| id % 4 == u32::from(b % 4));
                    bwe.on_packet_sent(now, seq, size, probe);
                    if b % 5 != 0 {
                        let extra = Duration::from_micros(u64::from(b) * 200);
                        recorder.record(seq, now + Duration::from_millis(20) + extra);
                    }
                    seq = seq.wrapping_add(1);
                }
            }
            1 => {
                let steps = frame
                    .bytes
                    .iter()
                    .take(3)
                    .fold(0u64, |acc, &b| acc << 8 | u64::from(b));
                now += Duration::from_micros(steps * 100);
            }
            2 => loop {
                feedback.clear();
                if !recorder.build_feedback(1, 2, &mut feedback) {
                    break;
                }
                if let (Some(&at), Some(&with)) = (frame.bytes.first(), frame.bytes.get(1)) {
                    let i = usize::from(at) % feedback.len();
                    feedback[i] ^= with;
                }
                let _ = bwe.on_feedback_bytes(now, &feedback);
            },
            3 => {
                let _ = bwe.on_feedback_bytes(now, frame.bytes);
            }
            4 => {
                let desired = frame
                    .bytes
                    .iter()
                    .take(4)
                    .fold(0u64, |acc, &b| acc << 8 | u64::from(b));
                bwe.set_desired_bitrate(now, (desired != 0).then_some(desired));
            }
            5 => {
                for &b in frame.bytes.iter().take(64) {
                    let class = match b % 4 {
                        0 => Priority::Audio,
                        1 => Priority::Retransmission,
                        2 => Priority::Video,
                        _ => Priority::Padding,
                    };
                    if pacer.enqueue(now, u32::from(b), 100 + usize::from(b) * 4, class) {
                        enqueued += 1;
                    }
                }
            }
            _ => {
                for _ in 0..256 {
                    let Some(out) = pacer.poll_send(now) else {
                        break;
                    };
                    let probe = match out {
                        PacerOutput::Packet { probe_cluster, .. } => {
                            handed_out += 1;
                            probe_cluster
                        }
                        PacerOutput::Padding { probe_cluster, .. } => probe_cluster,
                    };
                    if let Some(id) = probe {
                        assert!(planned.contains(&id), "probe id {id} never planned");
                    }
                }
            }
        }
        if bwe.poll_timeout().is_some_and(|t| t <= now) {
            bwe.handle_timeout(now);
            assert!(
                bwe.poll_timeout().is_none_or(|t| t > now),
                "a timer is still due right after handle_timeout"
            );
        }
        while let Some(cluster) = bwe.poll_probe() {
            planned.insert(cluster.id);
            pacer.start_probe(now, cluster);
        }
        let est = bwe.estimate_bps();
        assert!(
            (MIN_BPS..=MAX_BPS).contains(&est),
            "estimate {est} out of bounds"
        );
        pacer.set_estimate(est);
        let stats = pacer.stats();
        assert!(stats.queued_packets <= MAX_QUEUE);
        assert!(handed_out <= enqueued);
    }
});
