//! Seeded random and mutated input never panics and never grows state past its bounds.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_ice::demux::{classify, stun_local_ufrag};
use sluice_ice::{Credentials, IceConfig, IceLite};
use support::*;

fn agent() -> IceLite {
    IceLite::new(
        IceConfig {
            max_candidate_pairs: 4,
            ..IceConfig::default()
        },
        Credentials {
            ufrag: SERVER_UFRAG.into(),
            pwd: SERVER_PWD.into(),
        },
    )
    .unwrap()
}

fn feed(agent: &mut IceLite, rng: &mut XorShift, now: Instant, bytes: &[u8]) {
    let _ = classify(bytes);
    let _ = stun_local_ufrag(bytes);
    let local: SocketAddr = "192.0.2.1:3478".parse().unwrap();
    let from = SocketAddr::from(([198, 51, 100, 7], 1 + rng.below(64) as u16));
    let _ = agent.handle_stun(now, local, from, bytes);
    while agent.poll_transmit().is_some() {}
    while agent.poll_event().is_some() {}
    assert!(agent.validated_count() <= 4);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut agent = agent();
    let t0 = Instant::now();
    for i in 0..20_000u64 {
        let len = rng.below(300);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        // Make a good share look like STUN so the deeper paths are reached.
        if i % 2 == 0 && bytes.len() >= 20 {
            bytes[0] &= 0x01;
            bytes[1] = 0x01;
            let length = ((bytes.len() - 20) & !3) as u16;
            bytes.truncate(20 + usize::from(length));
            bytes[2..4].copy_from_slice(&length.to_be_bytes());
            bytes[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        }
        feed(&mut agent, &mut rng, t0 + Duration::from_millis(i), &bytes);
    }
}

#[test]
fn mutated_valid_checks_never_panic() {
    let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
    let mut agent = agent();
    let t0 = Instant::now();
    let templates = [
        Check::default().encode(),
        Check::nominating().encode(),
        seal(
            Check {
                integrity_pwd: None,
                fingerprint: false,
                ..Check::default()
            }
            .encode(),
            SERVER_PWD,
        ),
    ];
    for i in 0..20_000u64 {
        let mut bytes = templates[rng.below(templates.len())].clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(4) {
                0 => {
                    let at = rng.below(bytes.len());
                    bytes[at] ^= 1 << rng.below(8);
                }
                1 => {
                    let at = rng.below(bytes.len());
                    bytes[at] = rng.next_u64() as u8;
                }
                2 => bytes.truncate(rng.below(bytes.len() + 1)),
                _ => {
                    let extra = rng.below(16);
                    bytes.extend((0..extra).map(|_| rng.next_u64() as u8));
                }
            }
            if bytes.is_empty() {
                break;
            }
        }
        let now = t0 + Duration::from_millis(i * 10);
        feed(&mut agent, &mut rng, now, &bytes);
        agent.handle_timeout(now);
    }
}

/// Mutates the attributes of a check and then seals it with the right password, so the
/// mutations reach the authenticated path (stun-rs decoding, roles, nomination).
#[test]
fn mutated_then_sealed_checks_never_panic_and_reach_every_verdict() {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let mut agent = agent();
    let local: SocketAddr = "192.0.2.1:3478".parse().unwrap();
    let t0 = Instant::now();
    let body = Check {
        integrity_pwd: None,
        fingerprint: false,
        ..Check::nominating()
    }
    .encode();
    let (mut accepted, mut rejected_after_auth) = (0u32, 0u32);
    for i in 0..20_000u64 {
        let mut bytes = body.clone();
        for _ in 0..1 + rng.below(3) {
            // Leave the 20-byte header alone; mutate attribute bytes.
            let at = 20 + rng.below(bytes.len() - 20);
            if rng.below(2) == 0 {
                bytes[at] ^= 1 << rng.below(8);
            } else {
                bytes[at] = rng.next_u64() as u8;
            }
        }
        let sealed = seal(bytes, SERVER_PWD);
        let from = SocketAddr::from(([198, 51, 100, 7], 1 + rng.below(64) as u16));
        let now = t0 + Duration::from_millis(i);
        match agent.handle_stun(now, local, from, &sealed) {
            Ok(()) => accepted += 1,
            Err(e) if e.stun_error_code().is_some_and(|c| c != 401 && c != 400) => {
                rejected_after_auth += 1
            }
            Err(_) => {}
        }
        while agent.poll_transmit().is_some() {}
        while agent.poll_event().is_some() {}
        assert!(agent.validated_count() <= 4);
    }
    assert!(accepted > 100, "accepted {accepted}");
    assert!(
        rejected_after_auth > 10,
        "rejected after auth {rejected_after_auth}"
    );
}
