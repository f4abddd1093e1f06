//! Hostile input: seeded random bytes, mutated valid packets and random control-plane calls
//! never panic, and the router's queues stay bounded.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice_rtp::{write_nack, write_pli, write_sender_report};
use sluice_sfu::{Kind, ParticipantId, Router, RouterConfig, SubscriptionSpec, TrackId, TrackSpec};

/// xorshift64*: deterministic, so a failure reproduces from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, max_len: u64) -> Vec<u8> {
        let len = self.below(max_len + 1) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A plausible packet: valid RTP or RTCP from the test vocabulary, then maybe corrupted.
fn plausible(rng: &mut Rng) -> (bool, Vec<u8>) {
    let ssrc = [0xA1, 0xA2, 0xB0, 0x51, rng.next() as u32][rng.below(5) as usize];
    let mut rtcp = false;
    let mut p = match rng.below(6) {
        0 => Rtp::new(96, ssrc, rng.next() as u16, rng.next() as u32, VP8_KEYFRAME)
            .mid(["0", "1", "2"][rng.below(3) as usize])
            .twcc(rng.next() as u16)
            .build(),
        1 => Rtp::new(97, ssrc, rng.next() as u16, 0, &rng.bytes(6))
            .mid("1")
            .build(),
        2 => Rtp::new(111, ssrc, rng.next() as u16, rng.next() as u32, OPUS).build(),
        3 => {
            rtcp = true;
            let mut b = Vec::new();
            let lost: Vec<u16> = (0..rng.below(40)).map(|_| rng.next() as u16).collect();
            write_nack(1, ssrc, &lost, &mut b);
            b
        }
        4 => {
            rtcp = true;
            let mut b = Vec::new();
            write_sender_report(ssrc, rng.next(), rng.next() as u32, 1, 1, &[], &mut b);
            write_pli(1, ssrc, &mut b);
            b
        }
        _ => {
            rtcp = rng.below(2) == 0;
            rng.bytes(64)
        }
    };
    for _ in 0..rng.below(4) {
        if p.is_empty() {
            break;
        }
        let i = rng.below(p.len() as u64) as usize;
        p[i] = rng.next() as u8;
    }
    if rng.below(8) == 0 {
        p.truncate(rng.below(p.len() as u64 + 1) as usize);
    }
    (rtcp, p)
}

#[test]
fn seeded_random_traffic_and_control_calls_never_panic_and_stay_bounded() {
    let config = RouterConfig {
        max_queued_outputs: 256,
        max_ssrcs_per_participant: 8,
        // FEC on wherever a subscription accepted it
        video_fec_loss_threshold: Some(0.0),
        ..RouterConfig::default()
    };
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut r = Router::new(config.clone());
        let mut now = Instant::now();
        for step in 0..3_000 {
            let who = ParticipantId(rng.below(5));
            match rng.below(20) {
                0 => {
                    let _ = r.add_participant(["a", "b"][rng.below(2) as usize], who);
                }
                1 => {
                    let _ = r.remove_participant(who);
                }
                2 => {
                    let kind = if rng.below(2) == 0 {
                        Kind::Audio
                    } else {
                        Kind::Video
                    };
                    let spec = TrackSpec {
                        mid: ["0", "1", "2"][rng.below(3) as usize].into(),
                        kind,
                        ssrc: (rng.below(2) == 0).then(|| 0xA0 + rng.below(4) as u32),
                        rtx_ssrc: (rng.below(2) == 0).then(|| rng.next() as u32),
                        rids: match rng.below(3) {
                            0 => vec!["q".into(), "h".into(), "f".into()],
                            _ => Vec::new(),
                        },
                    };
                    let _ = r.publish(who, spec);
                }
                3 => {
                    let spec = SubscriptionSpec {
                        ssrc: 0xB0 + rng.below(4) as u32,
                        rtx_ssrc: (rng.below(2) == 0).then(|| 0xC0 + rng.below(4) as u32),
                        mid: (rng.below(2) == 0).then(|| "12".into()),
                        payload_types: match rng.below(3) {
                            0 => vec![96 + rng.below(16) as u8],
                            // RED, its RTX and ULPFEC accepted: video goes with FEC
                            1 => vec![96, 116, 117, 118],
                            _ => Vec::new(),
                        },
                    };
                    let _ = r.subscribe(who, TrackId(rng.below(12)), spec);
                }
                4 => {
                    let _ = r.unsubscribe(who, TrackId(rng.below(12)));
                }
                5 => {
                    let _ = r.unpublish(TrackId(rng.below(12)));
                }
                6 => {
                    now += Duration::from_millis(rng.below(700));
                    r.handle_timeout(now);
                }
                _ => {
                    now += Duration::from_micros(rng.below(20_000));
                    let (rtcp, pkt) = plausible(&mut rng);
                    if rtcp {
                        r.handle_rtcp(now, who, &pkt);
                    } else {
                        r.handle_rtp(now, who, &pkt);
                    }
                }
            }
            assert!(r.queued_outputs() <= 256, "seed {seed} step {step}");
            if let Some(t) = r.poll_timeout() {
                if t <= now {
                    r.handle_timeout(now);
                }
            }
            if rng.below(4) == 0 {
                while let Some(o) = r.poll_output() {
                    r.recycle(o.data);
                }
            }
        }
        assert!(r.pooled_buffers() <= config.max_pooled_buffers);
    }
}
