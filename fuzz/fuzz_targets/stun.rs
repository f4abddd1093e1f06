//! An ICE-lite agent with fixed credentials fed STUN datagrams: raw fuzz bytes, and fuzz
//! attributes sealed with the right password (MESSAGE-INTEGRITY + FINGERPRINT) so that
//! mutations reach stun-rs decoding, role checks and nomination.
//!
//! Input: a flags byte (bit 0: the agent knows the remote credentials), then frames
//! `[control][len u16][bytes]`. Control bits 0-1: 0 = raw datagram, 1 = our USERNAME plus
//! the bytes as attributes, sealed, 2 = the bytes as attributes (USERNAME included or
//! not), sealed, 3 = like 1 with a wrong remote ufrag; bits 2-4: source port; bits 5-7:
//! time that passes before it, in steps of 5 s (so consent expires).
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sluice_fuzz::stun::{
    binding_request, push_username, seal, LOCAL_PWD, LOCAL_UFRAG, REMOTE_PWD, REMOTE_UFRAG,
};
use sluice_ice::demux::{classify, stun_local_ufrag};
use sluice_ice::{Credentials, IceConfig, IceEvent, IceLite};

const MAX_CANDIDATE_PAIRS: usize = 4;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let config = IceConfig {
        max_candidate_pairs: MAX_CANDIDATE_PAIRS,
        ..IceConfig::default()
    };
    let local_credentials = Credentials {
        ufrag: LOCAL_UFRAG.into(),
        pwd: LOCAL_PWD.into(),
    };
    let mut agent = IceLite::new(config, local_credentials).expect("valid agent");
    if flags & 1 == 1 {
        agent
            .set_remote_credentials(Credentials {
                ufrag: REMOTE_UFRAG.into(),
                pwd: REMOTE_PWD.into(),
            })
            .expect("valid remote credentials");
    }
    let local: SocketAddr = "192.0.2.1:3478".parse().expect("address");
    let mut now = Instant::now();
    for frame in sluice_fuzz::frames(rest, 64) {
        now += Duration::from_secs(5 * u64::from(frame.control >> 5));
        agent.handle_timeout(now);
        let port = 40_000 + u16::from((frame.control >> 2) & 7);
        let from = SocketAddr::from(([198, 51, 100, 7], port));
        let txid: [u8; 12] = [frame.control; 12];
        let datagram = match frame.control & 3 {
            0 => frame.bytes.to_vec(),
            mode => {
                let mut m = binding_request(txid);
                match mode {
                    1 => push_username(&mut m, LOCAL_UFRAG, REMOTE_UFRAG),
                    3 => push_username(&mut m, LOCAL_UFRAG, "evil"),
                    _ => {}
                }
                m.extend_from_slice(frame.bytes);
                while !m.len().is_multiple_of(4) {
                    m.push(0);
                }
                seal(m, LOCAL_PWD)
            }
        };
        let _ = classify(&datagram);
        let _ = stun_local_ufrag(&datagram);
        let result = agent.handle_stun(now, local, from, &datagram);
        let mut transmits = 0;
        while let Some(t) = agent.poll_transmit() {
            transmits += 1;
            assert!(transmits <= 16, "unbounded transmits");
            assert_eq!(t.destination, from, "answer to another address");
            assert!(
                t.contents.len() <= 1500,
                "response of {} bytes",
                t.contents.len()
            );
        }
        assert!(
            result.is_err() || transmits == 1,
            "an accepted check must be answered"
        );
        while let Some(event) = agent.poll_event() {
            if let IceEvent::Validated(a) | IceEvent::Nominated(a) = event {
                assert!(
                    agent.validated_count() <= MAX_CANDIDATE_PAIRS,
                    "validated {a} past the bound"
                );
            }
        }
        assert!(agent.validated_count() <= MAX_CANDIDATE_PAIRS);
        if let Some(nominated) = agent.nominated() {
            assert!(
                agent.is_permitted(nominated),
                "nominated address not permitted"
            );
        }
    }
});
