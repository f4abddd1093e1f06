//! Negotiator sequencing, driven through the public API with answers that a
//! browser would produce for each offer.

use sluice_signal::negotiation::{
    NegotiationError, Negotiator, NegotiatorConfig, TransportParams, LOCAL_AUDIO_MID,
    LOCAL_VIDEO_MID,
};
use sluice_signal::sdp::fingerprint::format_sha256;
use sluice_signal::sdp::{parse_offer, Direction, Kind, SendStream, Setup};
use std::fmt::Write as _;

const BROWSER_FINGERPRINT: [u8; 32] = [0x5A; 32];

fn transport(setup: Setup) -> TransportParams {
    TransportParams {
        session_id: 0xDEAD_BEEF_0000_0001,
        ice: ("srvU".into(), "serverPasswordIsLongEnough".into()),
        fingerprint_sha256: [0xC3; 32],
        setup,
        candidates: vec!["198.51.100.4:3478".parse().unwrap()],
    }
}

fn negotiator() -> Negotiator {
    Negotiator::new(transport(Setup::ActPass), NegotiatorConfig::default())
}

fn stream(participant: &str, kind: Kind, ssrc: u32) -> SendStream {
    SendStream {
        stream_id: participant.into(),
        track_id: format!("{participant}-{kind}"),
        ssrc,
        rtx_ssrc: (kind == Kind::Video).then_some(ssrc + 1),
        cname: format!("{participant}-cname"),
    }
}

fn add_participant(n: &mut Negotiator, participant: &str, base_ssrc: u32) -> (String, String) {
    let audio = n
        .add_remote_track(
            participant,
            Kind::Audio,
            stream(participant, Kind::Audio, base_ssrc),
        )
        .unwrap();
    let video = n
        .add_remote_track(
            participant,
            Kind::Video,
            stream(participant, Kind::Video, base_ssrc + 10),
        )
        .unwrap();
    (audio, video)
}

/// How the fake browser answers each m-line.
#[derive(Clone, Copy)]
struct AnswerStyle {
    setup: &'static str,
    fingerprint: [u8; 32],
    /// Answer every m-line with the offer's own direction (a broken answerer).
    mirror_direction: bool,
    /// Answer video with a payload type that was never offered.
    foreign_pt: bool,
    /// Leave out the last m-line.
    drop_last: bool,
}

impl Default for AnswerStyle {
    fn default() -> Self {
        Self {
            setup: "active",
            fingerprint: BROWSER_FINGERPRINT,
            mirror_direction: false,
            foreign_pt: false,
            drop_last: false,
        }
    }
}

/// Answers `offer` the way Chrome does after attaching mic and camera to mids 0/1.
fn browser_answer(offer: &str, style: AnswerStyle) -> String {
    let offer = parse_offer(offer).expect("our own offer parses");
    let mut media = offer.media.clone();
    if style.drop_last {
        media.pop();
    }
    let mids: Vec<&str> = media.iter().map(|m| m.mid.as_str()).collect();
    let mut out = format!(
        "v=0\r\no=- 99 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {}\r\na=msid-semantic: WMS local\r\n",
        mids.join(" ")
    );
    for (index, m) in media.iter().enumerate() {
        let mut pts: Vec<u8> = m.codecs.iter().map(|c| c.pt).collect();
        if style.foreign_pt && m.kind == Kind::Video {
            pts.push(45);
        }
        let pt_list: Vec<String> = pts.iter().map(u8::to_string).collect();
        let _ = write!(
            out,
            "m={} 9 UDP/TLS/RTP/SAVPF {}\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:brwz\r\na=ice-pwd:browserPasswordLongEnough\r\n\
a=fingerprint:sha-256 {}\r\na=setup:{}\r\na=mid:{}\r\n",
            m.kind,
            pt_list.join(" "),
            format_sha256(&style.fingerprint),
            style.setup,
            m.mid
        );
        let direction = if style.mirror_direction {
            m.direction
        } else {
            match m.direction {
                Direction::RecvOnly => Direction::SendOnly,
                Direction::SendOnly => Direction::RecvOnly,
                other => other,
            }
        };
        let _ = write!(out, "a={direction}\r\na=rtcp-mux\r\n");
        for c in &m.codecs {
            let _ = write!(out, "a=rtpmap:{} {}/{}\r\n", c.pt, c.name, c.clock_rate);
        }
        if style.foreign_pt && m.kind == Kind::Video {
            out.push_str("a=rtpmap:45 AV1/90000\r\n");
        }
        if direction == Direction::SendOnly {
            let ssrc = 7000 + index as u32;
            let _ = write!(
                out,
                "a=msid:local track{index}\r\na=ssrc:{ssrc} cname:browser\r\n"
            );
        }
    }
    out
}

/// Creates the next offer and answers it like a browser; returns the offer SDP.
fn round_trip(n: &mut Negotiator) -> String {
    let (revision, offer) = n.create_offer().unwrap();
    n.on_answer(revision, &browser_answer(&offer, AnswerStyle::default()))
        .unwrap();
    offer
}

fn directions(offer: &str) -> Vec<(String, Kind, Direction)> {
    parse_offer(offer)
        .unwrap()
        .media
        .into_iter()
        .map(|m| (m.mid, m.kind, m.direction))
        .collect()
}

#[test]
fn first_offer_receives_the_browsers_microphone_and_camera() {
    let mut n = negotiator();
    assert!(n.needs_offer());
    let (revision, offer) = n.create_offer().unwrap();
    assert_eq!(revision, 1);
    assert_eq!(
        directions(&offer),
        vec![
            (LOCAL_AUDIO_MID.into(), Kind::Audio, Direction::RecvOnly),
            (LOCAL_VIDEO_MID.into(), Kind::Video, Direction::RecvOnly),
        ]
    );
    let answer = n
        .on_answer(1, &browser_answer(&offer, AnswerStyle::default()))
        .unwrap();
    assert_eq!(answer.media[0].ssrcs, vec![7000]);
    assert_eq!(answer.fingerprint_sha256, BROWSER_FINGERPRINT);
    assert!(!n.needs_offer(), "nothing changed since");
}

#[test]
fn first_offer_of_a_late_joiner_lists_everyone_already_there() {
    let mut n = negotiator();
    assert_eq!(
        add_participant(&mut n, "alice", 100),
        ("2".into(), "3".into())
    );
    assert_eq!(
        add_participant(&mut n, "bob", 200),
        ("4".into(), "5".into())
    );
    let (_, offer) = n.create_offer().unwrap();
    let parsed = parse_offer(&offer).unwrap();
    assert_eq!(parsed.media.len(), 6);
    assert_eq!(
        parsed.media[4].msid,
        Some(("bob".into(), "bob-audio".into()))
    );
    assert_eq!(parsed.media[5].ssrcs, vec![210, 211]);
    assert_eq!(parsed.media[5].fid_groups, vec![(210, 211)]);
}

#[test]
fn no_second_offer_while_an_answer_is_outstanding() {
    let mut n = negotiator();
    let (first, offer) = n.create_offer().unwrap();
    add_participant(&mut n, "alice", 100);
    assert!(
        !n.needs_offer(),
        "the change is queued behind the outstanding answer"
    );
    assert_eq!(
        n.create_offer(),
        Err(NegotiationError::AnswerOutstanding { revision: first })
    );
    assert_eq!(n.outstanding_revision(), Some(first));

    n.on_answer(first, &browser_answer(&offer, AnswerStyle::default()))
        .unwrap();
    assert!(
        n.needs_offer(),
        "the queued change is offered once the answer is in"
    );
    let (second, offer) = n.create_offer().unwrap();
    assert_eq!(second, first + 1);
    assert_eq!(directions(&offer).len(), 4);
    assert!(offer.contains(&format!(
        "o=- {} 2 IN IP4",
        0xDEAD_BEEF_0000_0001u64 & (i64::MAX as u64)
    )));
}

#[test]
fn answer_for_another_revision_is_refused_and_the_offer_stays_outstanding() {
    let mut n = negotiator();
    let (revision, offer) = n.create_offer().unwrap();
    let answer = browser_answer(&offer, AnswerStyle::default());
    assert_eq!(
        n.on_answer(revision + 1, &answer),
        Err(NegotiationError::RevisionMismatch {
            expected: revision,
            got: revision + 1
        })
    );
    assert_eq!(n.outstanding_revision(), Some(revision));
    assert!(n.on_answer(revision, &answer).is_ok());
    assert_eq!(
        n.on_answer(revision, &answer),
        Err(NegotiationError::UnexpectedAnswer)
    );
}

#[test]
fn answer_without_any_offer_is_unexpected() {
    let mut n = negotiator();
    assert_eq!(
        n.on_answer(1, "v=0\r\n"),
        Err(NegotiationError::UnexpectedAnswer)
    );
}

#[test]
fn leaving_participant_turns_inactive_without_removing_or_reordering() {
    let mut n = negotiator();
    add_participant(&mut n, "alice", 100);
    add_participant(&mut n, "bob", 200);
    round_trip(&mut n);
    assert_eq!(n.remove_participant("alice"), 2);
    assert_eq!(n.remove_participant("alice"), 0);
    assert!(n.needs_offer());
    let offer = round_trip(&mut n);
    let mids: Vec<(String, Direction)> = directions(&offer)
        .into_iter()
        .map(|(m, _, d)| (m, d))
        .collect();
    assert_eq!(
        mids,
        vec![
            ("0".into(), Direction::RecvOnly),
            ("1".into(), Direction::RecvOnly),
            ("2".into(), Direction::Inactive),
            ("3".into(), Direction::Inactive),
            ("4".into(), Direction::SendOnly),
            ("5".into(), Direction::SendOnly),
        ]
    );
    assert!(
        !offer.contains("alice"),
        "an inactive m-line names no stream"
    );
}

#[test]
fn inactive_slot_is_reused_for_a_new_participant_after_the_answer() {
    let mut n = negotiator();
    add_participant(&mut n, "alice", 100);
    round_trip(&mut n);
    n.remove_participant("alice");
    round_trip(&mut n); // inactive acknowledged

    assert_eq!(
        add_participant(&mut n, "carol", 300),
        ("2".into(), "3".into())
    );
    let offer = round_trip(&mut n);
    let parsed = parse_offer(&offer).unwrap();
    assert_eq!(parsed.media.len(), 4, "no m-line was added");
    assert_eq!(parsed.media[2].direction, Direction::SendOnly);
    assert_eq!(
        parsed.media[2].msid,
        Some(("carol".into(), "carol-audio".into()))
    );
    assert_eq!(parsed.media[3].ssrcs, vec![310, 311]);
}

#[test]
fn slot_is_not_reused_before_its_inactive_state_was_answered() {
    let mut n = negotiator();
    add_participant(&mut n, "alice", 100);
    round_trip(&mut n);
    n.remove_participant("alice");
    let (revision, offer) = n.create_offer().unwrap(); // carries inactive, answer pending
                                                       // Carol joins while the browser has not yet confirmed alice's m-lines inactive:
                                                       // reusing them would turn sendonly(alice) into sendonly(carol) without the
                                                       // browser ever seeing the track end.
    assert_eq!(
        add_participant(&mut n, "carol", 300),
        ("4".into(), "5".into())
    );
    n.on_answer(revision, &browser_answer(&offer, AnswerStyle::default()))
        .unwrap();
    round_trip(&mut n);
    // Now alice's old m-lines are free again.
    assert_eq!(
        add_participant(&mut n, "dave", 400),
        ("2".into(), "3".into())
    );
}

#[test]
fn participant_added_and_removed_between_offers_is_offered_inactive_first() {
    let mut n = negotiator();
    round_trip(&mut n);
    add_participant(&mut n, "alice", 100);
    n.remove_participant("alice");
    assert_eq!(
        add_participant(&mut n, "bob", 200),
        ("4".into(), "5".into())
    );
    let offer = round_trip(&mut n);
    let d: Vec<Direction> = directions(&offer).into_iter().map(|(_, _, d)| d).collect();
    assert_eq!(
        d,
        vec![
            Direction::RecvOnly,
            Direction::RecvOnly,
            Direction::Inactive,
            Direction::Inactive,
            Direction::SendOnly,
            Direction::SendOnly
        ]
    );
}

#[test]
fn remove_single_track_frees_only_that_kind() {
    let mut n = negotiator();
    add_participant(&mut n, "alice", 100);
    assert!(n.remove_remote_track("alice", Kind::Video));
    assert!(!n.remove_remote_track("alice", Kind::Video));
    assert_eq!(n.mid_of("alice", Kind::Audio), Some("2"));
    assert_eq!(n.mid_of("alice", Kind::Video), None);
}

#[test]
fn duplicate_track_and_invalid_stream_ids_are_refused() {
    let mut n = negotiator();
    add_participant(&mut n, "alice", 100);
    assert_eq!(
        n.add_remote_track("alice", Kind::Audio, stream("alice", Kind::Audio, 900)),
        Err(NegotiationError::DuplicateTrack { kind: Kind::Audio })
    );
    let mut bad = stream("eve", Kind::Audio, 500);
    bad.cname = "x\r\na=setup:active".into();
    assert!(matches!(
        n.add_remote_track("eve", Kind::Audio, bad),
        Err(NegotiationError::InvalidSendStream(_))
    ));
    assert_eq!(n.slots().len(), 4, "a refused track takes no m-line");
}

#[test]
fn media_section_limit_caps_the_number_of_forwarded_tracks() {
    let mut n = Negotiator::new(
        transport(Setup::ActPass),
        NegotiatorConfig {
            max_media_sections: 4,
            ..NegotiatorConfig::default()
        },
    );
    add_participant(&mut n, "alice", 100);
    assert_eq!(
        n.add_remote_track("bob", Kind::Audio, stream("bob", Kind::Audio, 200)),
        Err(NegotiationError::TooManyMediaSections { max: 4 })
    );
}

#[test]
fn answers_that_do_not_mirror_the_offer_are_refused() {
    type Expect = fn(&NegotiationError) -> bool;
    let cases: [(AnswerStyle, Expect); 3] = [
        (
            AnswerStyle {
                drop_last: true,
                ..AnswerStyle::default()
            },
            |e| matches!(e, NegotiationError::MediaMismatch { media_index: 3 }),
        ),
        (
            AnswerStyle {
                mirror_direction: true,
                ..AnswerStyle::default()
            },
            |e| matches!(e, NegotiationError::DirectionMismatch { media_index: 0 }),
        ),
        (
            AnswerStyle {
                foreign_pt: true,
                ..AnswerStyle::default()
            },
            |e| matches!(e, NegotiationError::UnofferedPayloadType { media_index: 1 }),
        ),
    ];
    for (style, expected) in cases {
        let mut n = negotiator();
        add_participant(&mut n, "alice", 100);
        let (revision, offer) = n.create_offer().unwrap();
        let err = n
            .on_answer(revision, &browser_answer(&offer, style))
            .unwrap_err();
        assert!(expected(&err), "{err:?}");
        assert_eq!(n.outstanding_revision(), Some(revision));
    }
}

#[test]
fn answer_setup_must_complement_the_configured_role() {
    // We are DTLS client (a=setup:active): the browser must answer passive.
    let mut n = Negotiator::new(transport(Setup::Active), NegotiatorConfig::default());
    let (revision, offer) = n.create_offer().unwrap();
    assert!(offer.contains("a=setup:active\r\n"));
    let active = browser_answer(&offer, AnswerStyle::default());
    assert_eq!(
        n.on_answer(revision, &active),
        Err(NegotiationError::SetupMismatch)
    );
    let passive = browser_answer(
        &offer,
        AnswerStyle {
            setup: "passive",
            ..AnswerStyle::default()
        },
    );
    assert_eq!(
        n.on_answer(revision, &passive).unwrap().setup,
        Setup::Passive
    );
}

#[test]
fn remote_certificate_may_not_change_between_answers() {
    let mut n = negotiator();
    round_trip(&mut n);
    add_participant(&mut n, "alice", 100);
    let (revision, offer) = n.create_offer().unwrap();
    let other = AnswerStyle {
        fingerprint: [0x11; 32],
        ..AnswerStyle::default()
    };
    assert_eq!(
        n.on_answer(revision, &browser_answer(&offer, other)),
        Err(NegotiationError::FingerprintChanged)
    );
}

#[test]
fn a_screen_share_gets_its_own_receiving_m_line_without_simulcast() {
    let mut n = Negotiator::new(
        transport(Setup::ActPass),
        NegotiatorConfig {
            simulcast: true,
            ..NegotiatorConfig::default()
        },
    );
    round_trip(&mut n);
    let mid = n.add_local_track(Kind::Video).unwrap();
    assert_eq!(mid, "2");
    assert_eq!(n.local_mids().collect::<Vec<_>>(), ["0", "1", "2"]);
    let offer = round_trip(&mut n);
    assert_eq!(
        directions(&offer)[2],
        ("2".into(), Kind::Video, Direction::RecvOnly)
    );
    let screen = offer.split("m=video").nth(2).expect("third m-line");
    assert!(!screen.contains("a=simulcast"), "{screen}");
    assert!(offer
        .split("m=video")
        .nth(1)
        .unwrap()
        .contains("a=simulcast"));
}

#[test]
fn a_stopped_screen_share_m_line_is_recycled_for_the_next_video_track() {
    let mut n = negotiator();
    round_trip(&mut n);
    let mid = n.add_local_track(Kind::Video).unwrap();
    round_trip(&mut n);
    assert!(
        !n.remove_local_track(LOCAL_VIDEO_MID),
        "the camera's m-line stays"
    );
    assert!(n.remove_local_track(&mid));
    assert!(!n.remove_local_track(&mid));
    let offer = round_trip(&mut n);
    assert_eq!(directions(&offer)[2].2, Direction::Inactive);
    // someone else's camera takes the recycled m-line
    let taken = n
        .add_remote_track("bob", Kind::Video, stream("bob", Kind::Video, 300))
        .unwrap();
    assert_eq!(taken, mid);
    assert_eq!(n.slots().len(), 3);
}

#[test]
fn a_participant_may_have_a_camera_and_a_screen_told_apart_by_track_id() {
    let mut n = negotiator();
    add_participant(&mut n, "alice", 100);
    let mut screen = stream("alice", Kind::Video, 500);
    screen.track_id = "alice-screen".into();
    let mid = n.add_remote_track("alice", Kind::Video, screen).unwrap();
    assert_eq!(n.mid_of_track("alice-screen"), Some(mid.as_str()));
    assert_eq!(n.mid_of_track("alice-video"), Some("3"));
    assert!(n.remove_track("alice-screen"));
    assert!(!n.remove_track("alice-screen"));
    assert_eq!(n.mid_of_track("alice-video"), Some("3"));
}
