use sluice_signal::negotiation::{Negotiator, NegotiatorConfig, TransportParams};
use sluice_signal::sdp::{parse_answer, parse_offer, Direction, Kind, SendStream, Setup};

use super::*;

fn negotiator(setup: Setup) -> Negotiator {
    Negotiator::new(
        TransportParams {
            session_id: 99,
            ice: ("srvU".into(), "serverPasswordOf24Chars/".into()),
            fingerprint_sha256: [0x5A; 32],
            setup,
            candidates: vec!["127.0.0.1:40000".parse().unwrap()],
        },
        NegotiatorConfig::default(),
    )
}

fn stream(p: &str, kind: Kind, ssrc: u32) -> SendStream {
    SendStream {
        stream_id: p.into(),
        track_id: format!("{p}-{kind}"),
        ssrc,
        rtx_ssrc: (kind == Kind::Video).then_some(ssrc + 1),
        cname: p.into(),
    }
}

fn add(n: &mut Negotiator, p: &str, base: u32) {
    n.add_remote_track(p, Kind::Audio, stream(p, Kind::Audio, base))
        .unwrap();
    n.add_remote_track(p, Kind::Video, stream(p, Kind::Video, base + 10))
        .unwrap();
}

fn params(version: u64, audio: bool, video: bool) -> AnswerParams {
    AnswerParams {
        session_id: 7,
        version,
        ice_ufrag: "cliU".into(),
        ice_pwd: "clientPasswordOf24Chars".into(),
        fingerprint_sha256: [0xC1; 32],
        stream_id: "stream-a".into(),
        cname: "cname-a".into(),
        audio: audio.then(|| LocalTrack {
            track_id: "mic".into(),
            ssrc: 1111,
            rtx_ssrc: None,
        }),
        video: video.then(|| LocalTrack {
            track_id: "cam".into(),
            ssrc: 2222,
            rtx_ssrc: Some(3333),
        }),
    }
}

fn answer_round(n: &mut Negotiator, p: &AnswerParams) -> sluice_signal::sdp::Answer {
    let (revision, offer) = n.create_offer().unwrap();
    let parsed = parse_offer(&offer).unwrap();
    let sdp = write_answer(&parsed, p).unwrap();
    n.on_answer(revision, &sdp)
        .unwrap_or_else(|e| panic!("negotiator rejected answer: {e}\n{sdp}"))
}

#[test]
fn first_answer_publishes_own_tracks_and_passes_the_negotiator() {
    let mut n = negotiator(Setup::ActPass);
    let answer = answer_round(&mut n, &params(1, true, true));
    assert_eq!(answer.setup, Setup::Active);
    assert_eq!(answer.fingerprint_sha256, [0xC1; 32]);
    assert_eq!(answer.ice_ufrag, "cliU");
    let audio = &answer.media[0];
    assert_eq!(
        (audio.kind, audio.direction),
        (Kind::Audio, Direction::SendOnly)
    );
    assert_eq!(audio.ssrcs, vec![1111]);
    assert_eq!(audio.msid, Some(("stream-a".into(), "mic".into())));
    let video = &answer.media[1];
    assert_eq!(
        (video.kind, video.direction),
        (Kind::Video, Direction::SendOnly)
    );
    assert_eq!(video.fid_groups, vec![(2222, 3333)]);
    assert_eq!(video.codecs.first().map(|c| c.pt), Some(96));
    assert_eq!(video.rtx, vec![(97, 96)]);
}

#[test]
fn answers_to_reoffers_receive_remote_tracks_and_mirror_inactive_lines() {
    let mut n = negotiator(Setup::ActPass);
    add(&mut n, "p-bo", 100);
    let first = answer_round(&mut n, &params(1, true, true));
    assert_eq!(first.media.len(), 4);
    assert_eq!(first.media[2].direction, Direction::RecvOnly);
    assert_eq!(first.media[3].direction, Direction::RecvOnly);
    assert!(first.media[2].ssrcs.is_empty());

    add(&mut n, "p-cy", 200);
    let second = answer_round(&mut n, &params(2, true, true));
    assert_eq!(second.media.len(), 6);
    // our own tracks stay on mid 0/1
    assert_eq!(second.media[0].direction, Direction::SendOnly);
    assert_eq!(second.media[1].ssrcs, vec![2222, 3333]);

    assert_eq!(n.remove_participant("p-bo"), 2);
    let third = answer_round(&mut n, &params(3, true, true));
    let directions: Vec<Direction> = third.media.iter().map(|m| m.direction).collect();
    assert_eq!(
        directions,
        [
            Direction::SendOnly,
            Direction::SendOnly,
            Direction::Inactive,
            Direction::Inactive,
            Direction::RecvOnly,
            Direction::RecvOnly
        ]
    );

    // the freed pair is reused for a newcomer once acknowledged: recvonly again
    add(&mut n, "p-di", 300);
    let fourth = answer_round(&mut n, &params(4, true, true));
    assert_eq!(fourth.media.len(), 6);
    assert_eq!(fourth.media[2].direction, Direction::RecvOnly);
}

#[test]
fn receive_only_client_answers_its_own_lines_inactive() {
    let mut n = negotiator(Setup::ActPass);
    add(&mut n, "p-bo", 100);
    let answer = answer_round(&mut n, &params(1, false, false));
    assert_eq!(answer.media[0].direction, Direction::Inactive);
    assert_eq!(answer.media[1].direction, Direction::Inactive);
    assert!(answer.media[0].ssrcs.is_empty() && answer.media[0].msid.is_none());
    assert_eq!(answer.media[2].direction, Direction::RecvOnly);
}

#[test]
fn setup_complements_every_server_role() {
    for (offered, expected) in [
        (Setup::ActPass, Setup::Active),
        (Setup::Passive, Setup::Active),
        (Setup::Active, Setup::Passive),
    ] {
        let mut n = negotiator(offered);
        let answer = answer_round(&mut n, &params(1, true, false));
        assert_eq!(answer.setup, expected, "offered {offered}");
        assert_eq!(answer.media[1].direction, Direction::Inactive);
    }
}

#[test]
fn answer_parses_with_the_plain_answer_parser() {
    let mut n = negotiator(Setup::ActPass);
    add(&mut n, "p-bo", 100);
    let (_, offer) = n.create_offer().unwrap();
    let sdp = write_answer(&parse_offer(&offer).unwrap(), &params(1, true, true)).unwrap();
    let parsed = parse_answer(&sdp).unwrap();
    assert_eq!(parsed.bundle_mids, vec!["0", "1", "2", "3"]);
    // extension ids are mirrored from the offer
    assert!(parsed.media[0]
        .extmaps
        .iter()
        .any(|(id, uri)| *id == 1 && uri == "urn:ietf:params:rtp-hdrext:sdes:mid"));
}

#[test]
fn offer_without_a_usable_codec_is_an_error() {
    let mut n = negotiator(Setup::ActPass);
    let (_, offer) = n.create_offer().unwrap();
    let mut parsed = parse_offer(&offer).unwrap();
    parsed.media[1].codecs.retain(|c| c.name != "VP8");
    assert_eq!(
        write_answer(&parsed, &params(1, true, true)),
        Err(AnswerError::NoCommonCodec { mid: "1".into() })
    );
}

#[test]
fn offer_for_a_room_of_fifty_is_parsed_past_the_default_sdp_limit() {
    let mut n = negotiator(Setup::ActPass);
    for i in 0..49u32 {
        add(&mut n, &format!("participant-{i:04}"), 100_000 + 100 * i);
    }
    let (_, offer) = n.create_offer().unwrap();
    assert!(
        offer.len() > sluice_signal::sdp::MAX_SDP_LEN,
        "offer of {} bytes is within the default limit",
        offer.len()
    );
    assert!(parse_offer(&offer).is_err());
    let parsed = crate::remote::RemoteOffer::parse(&offer).unwrap();
    assert_eq!(parsed.sdp.setup, Setup::ActPass);
    assert_eq!(parsed.tracks().len(), 98);
    assert_eq!(parsed.candidates.len(), 1);
    let answer = write_answer(&parsed.sdp, &params(1, true, true)).unwrap();
    eprintln!(
        "room of 50: offer {} bytes, answer {} bytes",
        offer.len(),
        answer.len()
    );
}
