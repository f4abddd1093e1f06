//! Answers that Chromium 156 produced for the offers of `examples/chrome_session.rs`
//! (recorded with `tests/chrome/`). Pins two facts: the offers we write today are
//! byte-identical to the ones Chromium accepted, and its real answers pass the
//! negotiator's checks with the expected SSRCs.

use sluice_signal::negotiation::{Negotiator, NegotiatorConfig, TransportParams};
use sluice_signal::sdp::{Direction, Kind, SendStream, Setup};

const OFFERS: &str = include_str!("data/chrome156_offers.json");
const ANSWERS: &str = include_str!("data/chrome156_answers.json");

fn stream(p: &str, kind: Kind, ssrc: u32) -> SendStream {
    SendStream {
        stream_id: p.into(),
        track_id: format!("{p}-{kind}"),
        ssrc,
        rtx_ssrc: (kind == Kind::Video).then_some(ssrc + 1),
        cname: format!("{p}-cname"),
    }
}

fn add(n: &mut Negotiator, p: &str, base: u32) {
    n.add_remote_track(p, Kind::Audio, stream(p, Kind::Audio, base))
        .unwrap();
    n.add_remote_track(p, Kind::Video, stream(p, Kind::Video, base + 10))
        .unwrap();
}

#[test]
fn chromium_accepted_offers_are_still_what_we_write_and_its_answers_pass() {
    let offers: Vec<String> = serde_json::from_str(OFFERS).unwrap();
    let answers: Vec<String> = serde_json::from_str(ANSWERS).unwrap();
    assert_eq!((offers.len(), answers.len()), (4, 4));

    let transport = TransportParams {
        session_id: 12345,
        ice: ("sl8Q".into(), "rE4cZ7uN1pK0vW9xT2qB6mYd".into()),
        fingerprint_sha256: [7; 32],
        setup: Setup::ActPass,
        candidates: vec!["127.0.0.1:3478".parse().unwrap()],
    };
    let mut n = Negotiator::new(transport, NegotiatorConfig::default());
    let history: [&dyn Fn(&mut Negotiator); 4] = [
        &|n| add(n, "alice", 100),
        &|n| add(n, "bob", 200),
        &|n| {
            n.remove_participant("alice");
        },
        &|n| add(n, "carol", 300),
    ];
    let mut first_answer = None;
    for (index, change) in history.iter().enumerate() {
        change(&mut n);
        let (revision, offer) = n.create_offer().unwrap();
        assert_eq!(
            offer, offers[index],
            "offer {revision} changed: re-check it with tests/chrome and re-record"
        );
        let answer = n.on_answer(revision, &answers[index]).unwrap();
        assert_eq!(answer.setup, Setup::Active);
        assert_eq!(answer.media[0].direction, Direction::SendOnly);
        assert_eq!(answer.media[1].fid_groups.len(), 1);
        assert_eq!(answer.media[1].ssrcs.len(), 2);
        let expected_remote = if index == 2 {
            Direction::Inactive
        } else {
            Direction::RecvOnly
        };
        assert_eq!(answer.media[2].direction, expected_remote);
        // Chromium receives video in RED with ULPFEC (and RTX of RED) where offered:
        // on the m-lines the server sends on (not while one is inactive)
        let remote_video = &answer.media[if index == 2 { 5 } else { 3 }];
        let pts: Vec<u8> = remote_video.codecs.iter().map(|c| c.pt).collect();
        assert!(pts.contains(&116) && pts.contains(&118), "{pts:?}");
        assert!(remote_video.rtx.contains(&(117, 116)));
        let own_video: Vec<u8> = answer.media[1].codecs.iter().map(|c| c.pt).collect();
        assert!(!own_video.contains(&116), "not where the browser sends");
        first_answer.get_or_insert(answer);
    }
    assert!(!first_answer.unwrap().media[0].ssrcs.is_empty());
}
