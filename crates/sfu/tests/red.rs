//! Audio redundancy (RFC 2198 RED) per subscriber: a subscriber whose answer accepted
//! RED gets each Opus packet with the frames before it repeated, one that did not gets
//! plain Opus, and the repeated frames are exactly what the publisher sent before.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice_rtp::red::parse_red_payload;
use sluice_sfu::{Kind, ParticipantId, Router, RouterConfig, SubscriptionSpec, TrackSpec};

const PUB: ParticipantId = ParticipantId(1);
const WITH_RED: ParticipantId = ParticipantId(2);
const PLAIN: ParticipantId = ParticipantId(3);

fn frame(n: u16) -> Vec<u8> {
    vec![0xF8, n as u8, (n >> 8) as u8, 0x55]
}

#[test]
fn a_subscriber_that_accepted_red_gets_the_previous_frames_repeated_and_another_plain_opus() {
    let config = RouterConfig {
        // always, where accepted: the loss-driven switch is tested in the allocation
        audio_red_loss_threshold: Some(0.0),
        ..RouterConfig::default()
    };
    let mut router = Router::new(config);
    for p in [PUB, WITH_RED, PLAIN] {
        router.add_participant("room", p).unwrap();
    }
    let mic = router
        .publish(
            PUB,
            TrackSpec {
                ssrc: Some(0xA0),
                ..TrackSpec::new("0", Kind::Audio)
            },
        )
        .unwrap();
    let accepts = |ssrc, pts: Vec<u8>| SubscriptionSpec {
        payload_types: pts,
        ..SubscriptionSpec::new(ssrc)
    };
    router
        .subscribe(WITH_RED, mic, accepts(0xB0, vec![111, 63]))
        .unwrap();
    router
        .subscribe(PLAIN, mic, accepts(0xC0, vec![111]))
        .unwrap();

    let start = Instant::now();
    let mut red = Vec::new();
    let mut plain = Vec::new();
    for n in 0..60u16 {
        let now = start + Duration::from_millis(20 * u64::from(n));
        // frame 40 is lost on the way to the server: nothing repeats it, nothing pretends
        if n != 40 {
            let packet = Rtp::new(111, 0xA0, 1000 + n, 960 * u32::from(n), &frame(n)).build();
            router.handle_rtp(now, PUB, &packet);
        }
        let outputs: Vec<_> = run_timers(&mut router, now)
            .into_iter()
            .map(|(_, o)| o)
            .chain(drain(&mut router))
            .collect();
        red.extend(rtp_to(&outputs, WITH_RED));
        plain.extend(rtp_to(&outputs, PLAIN));
    }
    assert!(plain.iter().all(|p| p.pt == 111));
    assert_eq!(plain.len(), 59);
    let as_red: Vec<&RtpView> = red.iter().filter(|p| p.pt == 63).collect();
    assert!(
        as_red.len() >= 30,
        "RED once the first allocation ran: {} of {}",
        as_red.len(),
        red.len()
    );
    assert!(router.stats().red_packets_sent >= 30);
    for p in &as_red {
        let blocks = parse_red_payload(&p.payload).expect("a valid RED payload");
        let (primary, earlier) = blocks.split_last().unwrap();
        let n = u16::from(primary.payload[1]) | u16::from(primary.payload[2]) << 8;
        assert_eq!(primary.payload, frame(n).as_slice());
        assert_eq!(primary.timestamp_offset, 0);
        // the frame just before it (one frame on a link without loss; two from 10 %),
        // at its timestamp distance, never the frame lost before it reached the server
        let expected: Vec<u16> = (n.saturating_sub(1)..n).filter(|&m| m != 40).collect();
        let got: Vec<u16> = earlier
            .iter()
            .map(|b| u16::from(b.payload[1]) | u16::from(b.payload[2]) << 8)
            .collect();
        assert_eq!(got, expected, "frames repeated in the packet of frame {n}");
        for (b, m) in earlier.iter().zip(&got) {
            assert_eq!(b.payload_type, 111);
            assert_eq!(b.timestamp_offset, 960 * u32::from(n - m));
        }
    }
    // sequence numbers stay one stream whatever the payload type
    let seqs: Vec<u16> = red.iter().map(|p| p.seq).collect();
    assert!(seqs
        .windows(2)
        .all(|w| w[1] == w[0].wrapping_add(1) || w[1] == w[0].wrapping_add(2)));
}
