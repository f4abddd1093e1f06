//! Offer writer and answer parser tests.

use super::*;
use std::net::SocketAddr;

const FINGERPRINT: [u8; 32] = [
    0x1F, 0x2E, 0x3D, 0x4C, 0x5B, 0x6A, 0x79, 0x88, 0x97, 0xA6, 0xB5, 0xC4, 0xD3, 0xE2, 0xF1, 0x00,
    0x0F, 0x1E, 0x2D, 0x3C, 0x4B, 0x5A, 0x69, 0x78, 0x87, 0x96, 0xA5, 0xB4, 0xC3, 0xD2, 0xE1, 0xF0,
];
const FINGERPRINT_TEXT: &str = "1F:2E:3D:4C:5B:6A:79:88:97:A6:B5:C4:D3:E2:F1:00:\
0F:1E:2D:3C:4B:5A:69:78:87:96:A5:B4:C3:D2:E1:F0";

fn send(participant: &str, track: &str, ssrc: u32, rtx: Option<u32>) -> SendStream {
    SendStream {
        stream_id: participant.to_owned(),
        track_id: track.to_owned(),
        ssrc,
        rtx_ssrc: rtx,
        cname: format!("{participant}-cname"),
    }
}

fn section(mid: &str, kind: Kind, direction: Direction, send: Option<SendStream>) -> MediaSection {
    MediaSection {
        mid: mid.to_owned(),
        kind,
        direction,
        send,
        simulcast: Vec::new(),
    }
}

/// The first offer to the third participant of a room: its own mic/camera plus
/// the two other participants' tracks, the second of whom already left.
fn params() -> OfferParams {
    OfferParams {
        session_id: 4_611_686_018_427_387_904,
        version: 3,
        ice: (
            "sluiceUfrag".to_owned(),
            "sluicePasswordOf24Chars+".to_owned(),
        ),
        fingerprint_sha256: FINGERPRINT,
        setup: Setup::ActPass,
        candidates: vec![
            "203.0.113.7:3478".parse().unwrap(),
            "[2001:db8::7]:3478".parse().unwrap(),
        ],
        media: vec![
            section("0", Kind::Audio, Direction::RecvOnly, None),
            section("1", Kind::Video, Direction::RecvOnly, None),
            section(
                "2",
                Kind::Audio,
                Direction::SendOnly,
                Some(send("p1", "p1-audio", 1001, None)),
            ),
            section(
                "3",
                Kind::Video,
                Direction::SendOnly,
                Some(send("p1", "p1-video", 1002, Some(1003))),
            ),
            // Left the room: inactive, and its old stream must not be written.
            section(
                "4",
                Kind::Audio,
                Direction::Inactive,
                Some(send("p2", "p2-audio", 2001, None)),
            ),
            section("5", Kind::Video, Direction::Inactive, None),
        ],
    }
}

fn offer() -> String {
    OfferBuilder::new(&params()).build().unwrap()
}

fn lines(sdp: &str) -> Vec<&str> {
    sdp.split("\r\n").filter(|l| !l.is_empty()).collect()
}

/// The lines of each media section (m-line first), session lines dropped.
fn sections(sdp: &str) -> Vec<Vec<&str>> {
    let mut out: Vec<Vec<&str>> = Vec::new();
    for line in lines(sdp) {
        if line.starts_with("m=") {
            out.push(vec![line]);
        } else if let Some(current) = out.last_mut() {
            current.push(line);
        }
    }
    out
}

#[test]
fn offer_uses_crlf_line_endings_only() {
    let sdp = offer();
    assert!(sdp.ends_with("\r\n"));
    assert_eq!(sdp.matches('\n').count(), sdp.matches("\r\n").count());
    assert!(!sdp.contains("\r\r"));
}

#[test]
fn offer_session_section_is_ice_lite_with_one_bundle_group() {
    let sdp = offer();
    let session: Vec<&str> = lines(&sdp)
        .into_iter()
        .take_while(|l| !l.starts_with("m="))
        .collect();
    assert_eq!(
        session,
        vec![
            "v=0",
            "o=- 4611686018427387904 3 IN IP4 0.0.0.0",
            "s=-",
            "t=0 0",
            "a=ice-lite",
            "a=group:BUNDLE 0 1 2 3 4 5",
            "a=msid-semantic: WMS *",
        ]
    );
}

#[test]
fn every_media_section_carries_transport_mux_and_candidates() {
    let sdp = offer();
    let all = sections(&sdp);
    assert_eq!(all.len(), 6);
    for (index, lines) in all.iter().enumerate() {
        let has = |l: &str| lines.contains(&l);
        assert!(
            lines[0].ends_with(" 9 UDP/TLS/RTP/SAVPF")
                || lines[0].contains(" 9 UDP/TLS/RTP/SAVPF ")
        );
        assert_eq!(
            lines[1], "c=IN IP4 0.0.0.0",
            "c= right after m= in section {index}"
        );
        assert!(has(&format!("a=mid:{index}")));
        // rtcp-rsize only where RTCP flows (an inactive m-line keeps rtcp-mux alone)
        assert!(has("a=rtcp-mux") && (has("a=rtcp-rsize") || has("a=inactive")));
        assert!(has("a=ice-ufrag:sluiceUfrag") && has("a=ice-pwd:sluicePasswordOf24Chars+"));
        assert!(has(&format!("a=fingerprint:sha-256 {FINGERPRINT_TEXT}")));
        assert!(has("a=setup:actpass"));
        assert!(has(
            "a=candidate:1 1 udp 2130706431 203.0.113.7 3478 typ host"
        ));
        assert!(has(
            "a=candidate:2 1 udp 2130706175 2001:db8::7 3478 typ host"
        ));
        assert!(has("a=end-of-candidates"));
        assert!(
            !lines.iter().any(|l| l.starts_with("a=ice-lite")),
            "ice-lite is session-level"
        );
        let extmaps: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("a=extmap:"))
            .collect();
        let mut expected = vec![
            "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        ];
        if lines[0].starts_with("m=audio") {
            expected.push("a=extmap:4 urn:ietf:params:rtp-hdrext:ssrc-audio-level");
        }
        if has("a=inactive") {
            // nothing flows on it: no header extensions
            expected.clear();
        }
        assert_eq!(extmaps, expected, "section {index}");
    }
}

#[test]
fn audio_sections_offer_opus_111_then_red_with_transport_cc() {
    let sdp = offer();
    let audio = &sections(&sdp)[0];
    assert_eq!(audio[0], "m=audio 9 UDP/TLS/RTP/SAVPF 111 63");
    let codec_lines: Vec<&str> = audio
        .iter()
        .copied()
        .filter(|l| {
            l.starts_with("a=rtpmap") || l.starts_with("a=fmtp") || l.starts_with("a=rtcp-fb")
        })
        .collect();
    assert_eq!(
        codec_lines,
        vec![
            "a=rtpmap:111 opus/48000/2",
            "a=rtcp-fb:111 transport-cc",
            "a=fmtp:111 minptime=10;useinbandfec=1",
            "a=rtpmap:63 red/48000/2",
            "a=rtcp-fb:63 transport-cc",
            "a=fmtp:63 111/111",
        ]
    );
}

#[test]
fn video_sections_offer_the_fixed_payload_types_with_rtx_and_feedback() {
    let sdp = offer();
    let video = &sections(&sdp)[1];
    assert_eq!(video[0], "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 102 103");
    let has = |l: &str| video.contains(&l);
    for (pt, rtpmap, fmtp, rtx) in [
        (96, "VP8/90000", None, 97),
        (98, "VP9/90000", Some("profile-id=0"), 99),
        (
            102,
            "H264/90000",
            Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
            103,
        ),
    ] {
        assert!(has(&format!("a=rtpmap:{pt} {rtpmap}")));
        if let Some(fmtp) = fmtp {
            assert!(has(&format!("a=fmtp:{pt} {fmtp}")));
        }
        for fb in ["nack", "nack pli", "ccm fir", "transport-cc", "goog-remb"] {
            assert!(has(&format!("a=rtcp-fb:{pt} {fb}")), "{pt} {fb}");
        }
        assert!(has(&format!("a=rtpmap:{rtx} rtx/90000")));
        assert!(has(&format!("a=fmtp:{rtx} apt={pt}")));
        assert!(!video
            .iter()
            .any(|l| l.starts_with(&format!("a=rtcp-fb:{rtx} "))));
    }
}

#[test]
fn directions_and_stream_identity_follow_each_slot() {
    let sdp = offer();
    let all = sections(&sdp);
    fn direction<'a>(s: &[&'a str]) -> &'a str {
        s.iter()
            .copied()
            .find(|l| ["a=sendonly", "a=recvonly", "a=inactive", "a=sendrecv"].contains(l))
            .unwrap()
    }
    let directions: Vec<&str> = all.iter().map(|s| direction(s)).collect();
    assert_eq!(
        directions,
        vec![
            "a=recvonly",
            "a=recvonly",
            "a=sendonly",
            "a=sendonly",
            "a=inactive",
            "a=inactive"
        ]
    );

    let ssrc_lines = |s: &Vec<&str>| -> Vec<String> {
        s.iter()
            .filter(|l| l.starts_with("a=ssrc") || l.starts_with("a=msid:"))
            .map(|l| l.to_string())
            .collect()
    };
    assert!(ssrc_lines(&all[0]).is_empty() && ssrc_lines(&all[1]).is_empty());
    assert_eq!(
        ssrc_lines(&all[2]),
        vec![
            "a=msid:p1 p1-audio",
            "a=ssrc:1001 cname:p1-cname",
            "a=ssrc:1001 msid:p1 p1-audio",
        ]
    );
    assert_eq!(
        ssrc_lines(&all[3]),
        vec![
            "a=msid:p1 p1-video",
            "a=ssrc-group:FID 1002 1003",
            "a=ssrc:1002 cname:p1-cname",
            "a=ssrc:1002 msid:p1 p1-video",
            "a=ssrc:1003 cname:p1-cname",
            "a=ssrc:1003 msid:p1 p1-video",
        ]
    );
    assert!(
        ssrc_lines(&all[4]).is_empty(),
        "inactive m-lines carry no stream"
    );
    assert!(ssrc_lines(&all[5]).is_empty());
}

#[test]
fn setup_attribute_follows_the_configured_dtls_role() {
    for (setup, line) in [
        (Setup::ActPass, "a=setup:actpass"),
        (Setup::Passive, "a=setup:passive"),
        (Setup::Active, "a=setup:active"),
    ] {
        let mut p = params();
        p.setup = setup;
        let sdp = write_offer(&p).unwrap();
        assert_eq!(sdp.matches(&format!("{line}\r\n")).count(), 6, "{line}");
    }
}

#[test]
fn offer_parses_back_into_the_same_media() {
    let parsed = parse_offer(&offer()).unwrap();
    assert_eq!(parsed.ice_ufrag, "sluiceUfrag");
    assert_eq!(parsed.ice_pwd, "sluicePasswordOf24Chars+");
    assert_eq!(parsed.fingerprint_sha256, FINGERPRINT);
    assert_eq!(parsed.setup, Setup::ActPass);
    assert_eq!(parsed.bundle_mids, vec!["0", "1", "2", "3", "4", "5"]);
    let p = params();
    assert_eq!(parsed.media.len(), p.media.len());
    for (got, want) in parsed.media.iter().zip(&p.media) {
        assert_eq!(got.mid, want.mid);
        assert_eq!(got.kind, want.kind);
        assert_eq!(got.direction, want.direction);
        assert!(!got.rejected);
        let pts: Vec<u8> = got.codecs.iter().map(|c| c.pt).collect();
        if want.direction == Direction::Inactive {
            // one payload type, nothing else of the codec block
            let first = match want.kind {
                Kind::Audio => 111,
                Kind::Video => 96,
            };
            assert_eq!(pts, vec![first]);
            assert!(got.codecs[0].rtcp_fb.is_empty() && got.codecs[0].fmtp.is_none());
            assert!(got.rtx.is_empty() && got.extmaps.is_empty() && got.ssrcs.is_empty());
            continue;
        }
        match want.kind {
            Kind::Audio => {
                assert_eq!(pts, vec![111, 63]);
                let opus = &got.codecs[0];
                assert_eq!(
                    (opus.name.as_str(), opus.clock_rate, opus.channels),
                    ("opus", 48000, Some(2))
                );
                assert_eq!(opus.fmtp.as_deref(), Some("minptime=10;useinbandfec=1"));
                assert_eq!(opus.rtcp_fb, vec!["transport-cc"]);
                assert!(got.rtx.is_empty());
                assert_eq!(got.extmaps.len(), 4);
            }
            Kind::Video if want.direction == Direction::SendOnly => {
                // where the server sends: RED and ULPFEC for FEC toward lossy subscribers
                assert_eq!(pts, vec![96, 98, 102, 116, 118]);
                assert_eq!(got.rtx, vec![(97, 96), (99, 98), (103, 102), (117, 116)]);
                assert_eq!(got.codecs[0].rtcp_fb.len(), 5);
                assert!(got.codecs[3].rtcp_fb.is_empty() && got.codecs[4].rtcp_fb.is_empty());
                assert_eq!(
                    (got.codecs[3].name.as_str(), got.codecs[4].name.as_str()),
                    ("red", "ulpfec")
                );
                assert_eq!(got.extmaps.len(), 3);
            }
            Kind::Video => {
                assert_eq!(pts, vec![96, 98, 102]);
                assert_eq!(got.rtx, vec![(97, 96), (99, 98), (103, 102)]);
                assert_eq!(got.codecs[0].rtcp_fb.len(), 5);
                assert_eq!(got.extmaps.len(), 3);
            }
        }
    }
    assert_eq!(parsed.media[2].ssrcs, vec![1001]);
    assert_eq!(
        parsed.media[2].msid,
        Some(("p1".to_owned(), "p1-audio".to_owned()))
    );
    assert_eq!(parsed.media[3].ssrcs, vec![1002, 1003]);
    assert_eq!(parsed.media[3].fid_groups, vec![(1002, 1003)]);
    assert!(parsed.media[4].ssrcs.is_empty() && parsed.media[4].msid.is_none());
}

#[test]
fn offers_that_cannot_be_written_correctly_are_refused() {
    type Mutation = Box<dyn Fn(&mut OfferParams)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("no media", Box::new(|p| p.media.clear())),
        (
            "sendonly without stream",
            Box::new(|p| p.media[2].send = None),
        ),
        (
            "sendrecv",
            Box::new(|p| p.media[0].direction = Direction::SendRecv),
        ),
        ("duplicate mid", Box::new(|p| p.media[3].mid = "2".into())),
        (
            "mid with space",
            Box::new(|p| p.media[0].mid = "a b".into()),
        ),
        (
            "mid too long for the header extension",
            Box::new(|p| p.media[0].mid = "m".repeat(17)),
        ),
        (
            "line injection in cname",
            Box::new(|p| {
                if let Some(s) = p.media[2].send.as_mut() {
                    s.cname = "x\r\na=setup:active".into();
                }
            }),
        ),
        (
            "space in track id",
            Box::new(|p| {
                if let Some(s) = p.media[2].send.as_mut() {
                    s.track_id = "a b".into();
                }
            }),
        ),
        (
            "stream id too long",
            Box::new(|p| {
                if let Some(s) = p.media[2].send.as_mut() {
                    s.stream_id = "s".repeat(MAX_ID_LEN + 1);
                }
            }),
        ),
        (
            "rtx on audio",
            Box::new(|p| {
                if let Some(s) = p.media[2].send.as_mut() {
                    s.rtx_ssrc = Some(5);
                }
            }),
        ),
        (
            "rtx equals media ssrc",
            Box::new(|p| {
                if let Some(s) = p.media[3].send.as_mut() {
                    s.rtx_ssrc = Some(s.ssrc);
                }
            }),
        ),
        ("short ice pwd", Box::new(|p| p.ice.1 = "short".into())),
        (
            "ice ufrag charset",
            Box::new(|p| p.ice.0 = "bad:ufrag".into()),
        ),
        (
            "session id above 2^63",
            Box::new(|p| p.session_id = u64::MAX),
        ),
        (
            "too many m-lines",
            Box::new(|p| {
                p.media = (0..=MAX_MEDIA_SECTIONS)
                    .map(|i| section(&i.to_string(), Kind::Audio, Direction::Inactive, None))
                    .collect();
            }),
        ),
    ];
    for (name, mutate) in cases {
        let mut p = params();
        mutate(&mut p);
        assert!(write_offer(&p).is_err(), "{name} was accepted");
    }
}

fn chrome_answer() -> String {
    [
        "v=0",
        "o=- 5163526830712243163 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1 2 3",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS 3c1f6e0d-5f4b-4a8e-9c3b-2a1d0e9f8c7b",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:Hq2X",
        "a=ice-pwd:k1VmQ8a9ZtD3rJ6sLwE2yB0n",
        "a=ice-options:trickle",
        &format!("a=fingerprint:sha-256 {FINGERPRINT_TEXT}"),
        "a=setup:active",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=sendonly",
        "a=msid:3c1f6e0d-5f4b-4a8e-9c3b-2a1d0e9f8c7b 7d2c9a41-03b6-4f57-8e2d-6b1f5a0c9e34",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=ssrc:2864148170 cname:Zk8vQ3pR1tYw6uN2",
        "a=ssrc:2864148170 msid:3c1f6e0d-5f4b-4a8e-9c3b-2a1d0e9f8c7b 7d2c9a41-03b6-4f57-8e2d-6b1f5a0c9e34",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 102 103",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:Hq2X",
        "a=ice-pwd:k1VmQ8a9ZtD3rJ6sLwE2yB0n",
        "a=ice-options:trickle",
        &format!("a=fingerprint:sha-256 {FINGERPRINT_TEXT}"),
        "a=setup:active",
        "a=mid:1",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "a=sendonly",
        "a=msid:3c1f6e0d-5f4b-4a8e-9c3b-2a1d0e9f8c7b 0e4b7f12-9a3c-4d6e-b5f8-1c2a3d4e5f60",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 goog-remb",
        "a=rtcp-fb:96 transport-cc",
        "a=rtcp-fb:96 ccm fir",
        "a=rtcp-fb:96 nack",
        "a=rtcp-fb:96 nack pli",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=rtpmap:98 VP9/90000",
        "a=rtcp-fb:98 goog-remb",
        "a=rtcp-fb:98 transport-cc",
        "a=rtcp-fb:98 ccm fir",
        "a=rtcp-fb:98 nack",
        "a=rtcp-fb:98 nack pli",
        "a=fmtp:98 profile-id=0",
        "a=rtpmap:99 rtx/90000",
        "a=fmtp:99 apt=98",
        "a=rtpmap:102 H264/90000",
        "a=rtcp-fb:102 goog-remb",
        "a=rtcp-fb:102 transport-cc",
        "a=rtcp-fb:102 ccm fir",
        "a=rtcp-fb:102 nack",
        "a=rtcp-fb:102 nack pli",
        "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        "a=rtpmap:103 rtx/90000",
        "a=fmtp:103 apt=102",
        "a=ssrc-group:FID 1190326410 3462718335",
        "a=ssrc:1190326410 cname:Zk8vQ3pR1tYw6uN2",
        "a=ssrc:1190326410 msid:3c1f6e0d-5f4b-4a8e-9c3b-2a1d0e9f8c7b 0e4b7f12-9a3c-4d6e-b5f8-1c2a3d4e5f60",
        "a=ssrc:3462718335 cname:Zk8vQ3pR1tYw6uN2",
        "a=ssrc:3462718335 msid:3c1f6e0d-5f4b-4a8e-9c3b-2a1d0e9f8c7b 0e4b7f12-9a3c-4d6e-b5f8-1c2a3d4e5f60",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:Hq2X",
        "a=ice-pwd:k1VmQ8a9ZtD3rJ6sLwE2yB0n",
        "a=ice-options:trickle",
        &format!("a=fingerprint:sha-256 {FINGERPRINT_TEXT}"),
        "a=setup:active",
        "a=mid:2",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=recvonly",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:Hq2X",
        "a=ice-pwd:k1VmQ8a9ZtD3rJ6sLwE2yB0n",
        "a=ice-options:trickle",
        &format!("a=fingerprint:sha-256 {FINGERPRINT_TEXT}"),
        "a=setup:active",
        "a=mid:3",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=recvonly",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 nack",
        "a=rtcp-fb:96 nack pli",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "",
    ]
    .join("\r\n")
}

#[test]
fn chrome_answer_yields_transport_and_every_media_fact() {
    let answer = parse_answer(&chrome_answer()).unwrap();
    assert_eq!(answer.ice_ufrag, "Hq2X");
    assert_eq!(answer.ice_pwd, "k1VmQ8a9ZtD3rJ6sLwE2yB0n");
    assert_eq!(answer.fingerprint_sha256, FINGERPRINT);
    assert_eq!(answer.setup, Setup::Active);
    assert_eq!(answer.bundle_mids, vec!["0", "1", "2", "3"]);
    assert_eq!(answer.media.len(), 4);

    let mic = &answer.media[0];
    assert_eq!(
        (mic.mid.as_str(), mic.kind, mic.direction),
        ("0", Kind::Audio, Direction::SendOnly)
    );
    assert_eq!(mic.ssrcs, vec![2_864_148_170]);
    assert_eq!(
        mic.msid,
        Some((
            "3c1f6e0d-5f4b-4a8e-9c3b-2a1d0e9f8c7b".to_owned(),
            "7d2c9a41-03b6-4f57-8e2d-6b1f5a0c9e34".to_owned()
        ))
    );
    assert_eq!(
        mic.extmaps.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(
        mic.extmaps[3].1,
        "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
    );
    assert_eq!(
        mic.codecs,
        vec![Codec {
            pt: 111,
            name: "opus".into(),
            clock_rate: 48000,
            channels: Some(2),
            fmtp: Some("minptime=10;useinbandfec=1".into()),
            rtcp_fb: vec!["transport-cc".into()],
        }]
    );

    let camera = &answer.media[1];
    assert_eq!(
        (camera.kind, camera.direction),
        (Kind::Video, Direction::SendOnly)
    );
    assert_eq!(camera.ssrcs, vec![1_190_326_410, 3_462_718_335]);
    assert_eq!(camera.fid_groups, vec![(1_190_326_410, 3_462_718_335)]);
    assert_eq!(
        camera.codecs.iter().map(|c| c.pt).collect::<Vec<_>>(),
        vec![96, 98, 102]
    );
    assert_eq!(camera.rtx, vec![(97, 96), (99, 98), (103, 102)]);
    assert_eq!(
        camera.codecs[0].rtcp_fb,
        vec!["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"]
    );
    assert_eq!(camera.codecs[1].fmtp.as_deref(), Some("profile-id=0"));

    let remote_audio = &answer.media[2];
    assert_eq!(remote_audio.direction, Direction::RecvOnly);
    assert!(remote_audio.ssrcs.is_empty() && remote_audio.msid.is_none());
    assert_eq!(answer.media[3].codecs.len(), 1);
}

#[test]
fn lf_only_answers_are_accepted() {
    let lf = chrome_answer().replace("\r\n", "\n");
    assert_eq!(parse_answer(&lf), parse_answer(&chrome_answer()));
}

/// A Firefox-style answer: transport attributes at session level only.
fn session_level_answer(extra_session: &str, media_attrs: &str) -> String {
    format!(
        "v=0\r\no=mozilla...THIS_IS_SDPARTA-99.0 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
a=fingerprint:sha-256 {FINGERPRINT_TEXT}\r\na=group:BUNDLE 0 1\r\na=ice-options:trickle\r\n\
a=msid-semantic:WMS *\r\n{extra_session}\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\n\
a=ice-pwd:sessionpwdsessionpwd0123\r\na=ice-ufrag:ff01\r\na=mid:0\r\n\
a=msid:{{a1}} {{t1}}\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=setup:active\r\n\
a=ssrc:42 cname:{{c}}\r\n{media_attrs}\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=inactive\r\n\
a=ice-pwd:sessionpwdsessionpwd0123\r\na=ice-ufrag:ff01\r\na=mid:1\r\na=rtcp-mux\r\n\
a=rtpmap:96 VP8/90000\r\na=setup:active\r\n"
    )
}

#[test]
fn session_level_fingerprint_applies_to_every_media_section() {
    let answer = parse_answer(&session_level_answer("", "")).unwrap();
    assert_eq!(answer.fingerprint_sha256, FINGERPRINT);
    assert_eq!(answer.ice_ufrag, "ff01");
    assert_eq!(answer.media[0].msid, Some(("{a1}".into(), "{t1}".into())));
    assert_eq!(answer.media[1].direction, Direction::Inactive);
}

#[test]
fn media_level_fingerprint_overrides_the_session_level_one_consistently() {
    // Media 0 overrides, media 1 falls back to the session value: a conflict.
    let other = fingerprint::format_sha256(&[7; 32]);
    let text = session_level_answer("", &format!("a=fingerprint:sha-256 {other}\r\n"));
    assert_eq!(
        parse_answer(&text),
        Err(SdpError::ConflictingTransport {
            attribute: "a=fingerprint"
        })
    );
}

#[test]
fn conflicting_ice_credentials_across_bundled_sections_are_rejected() {
    let text = chrome_answer().replacen("a=ice-ufrag:Hq2X", "a=ice-ufrag:Zz9Z", 1);
    assert_eq!(
        parse_answer(&text),
        Err(SdpError::ConflictingTransport {
            attribute: "a=ice-ufrag"
        })
    );
}

#[test]
fn only_sha256_fingerprints_are_accepted() {
    let sha1 = "a=fingerprint:sha-1 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB";
    let only_sha1 =
        chrome_answer().replace(&format!("a=fingerprint:sha-256 {FINGERPRINT_TEXT}"), sha1);
    assert_eq!(
        parse_answer(&only_sha1),
        Err(SdpError::UnsupportedFingerprintHash)
    );
    // An extra sha-1 line beside the sha-256 one is fine.
    let both = chrome_answer().replace("a=setup:active", &format!("{sha1}\r\na=setup:active"));
    assert_eq!(parse_answer(&both).unwrap().fingerprint_sha256, FINGERPRINT);
    let bad_digest = chrome_answer().replace(FINGERPRINT_TEXT, "1F:2E");
    assert!(matches!(
        parse_answer(&bad_digest),
        Err(SdpError::Malformed { .. })
    ));
}

#[test]
fn answer_setup_must_be_active_or_passive() {
    let actpass = chrome_answer().replace("a=setup:active", "a=setup:actpass");
    assert!(matches!(
        parse_answer(&actpass),
        Err(SdpError::InvalidSetup { .. })
    ));
    let holdconn = chrome_answer().replace("a=setup:active", "a=setup:holdconn");
    assert!(matches!(
        parse_answer(&holdconn),
        Err(SdpError::InvalidSetup { .. })
    ));
    let passive = chrome_answer().replace("a=setup:active", "a=setup:passive");
    assert_eq!(parse_answer(&passive).unwrap().setup, Setup::Passive);
    let missing = chrome_answer().replace("a=setup:active\r\n", "");
    assert_eq!(
        parse_answer(&missing),
        Err(SdpError::MissingAttribute {
            attribute: "a=setup",
            media_index: None
        })
    );
}

#[test]
fn rejected_media_sections_are_inactive_and_ignored_for_transport() {
    let text = chrome_answer()
        .replace(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n",
            "m=video 0 UDP/TLS/RTP/SAVPF 96 97\r\n",
        )
        .replace("a=mid:3\r\n", "a=mid:3\r\na=ice-ufrag:other\r\n");
    let answer = parse_answer(&text).unwrap();
    assert!(answer.media[3].rejected);
    assert_eq!(answer.media[3].direction, Direction::Inactive);
    assert_eq!(answer.ice_ufrag, "Hq2X");
}

#[test]
fn structural_errors_are_typed() {
    let answer = chrome_answer();
    assert_eq!(parse_answer(""), Err(SdpError::MissingVersion));
    assert_eq!(
        parse_answer(&answer.replacen("v=0", "v=1", 1)),
        Err(SdpError::MissingVersion)
    );
    assert_eq!(
        parse_answer(&answer.replace("a=mid:2\r\n", "")),
        Err(SdpError::MissingAttribute {
            attribute: "a=mid",
            media_index: Some(2)
        })
    );
    assert_eq!(
        parse_answer(&answer.replace("a=mid:2\r\n", "a=mid:1\r\n")),
        Err(SdpError::DuplicateMid { media_index: 2 })
    );
    assert!(matches!(
        parse_answer(&answer.replacen("m=audio", "m=application", 1)),
        Err(SdpError::UnsupportedMediaKind { .. })
    ));
    let no_pwd = answer.replace("a=ice-pwd:k1VmQ8a9ZtD3rJ6sLwE2yB0n\r\n", "");
    assert_eq!(
        parse_answer(&no_pwd),
        Err(SdpError::MissingAttribute {
            attribute: "a=ice-pwd",
            media_index: None
        })
    );
}

#[test]
fn malformed_numbers_are_rejected_not_truncated() {
    let answer = chrome_answer();
    for (from, to) in [
        (
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc",
            "m=audio 9 UDP/TLS/RTP/SAVPF 300\r\nc",
        ),
        ("m=audio 9 UDP", "m=audio 70000 UDP"),
        ("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc", "m=audio 9\r\nc"),
        ("a=ssrc:2864148170 cname", "a=ssrc:4294967296 cname"),
        (
            "a=ssrc-group:FID 1190326410 3462718335",
            "a=ssrc-group:FID 1190326410",
        ),
        (
            "a=ssrc-group:FID 1190326410 3462718335",
            "a=ssrc-group:FID 1 2 3",
        ),
        ("a=extmap:1 urn", "a=extmap:0 urn"),
        ("a=extmap:1 urn", "a=extmap:256 urn"),
        ("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus/fast/2"),
        ("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus/48000/999"),
        ("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus"),
        ("a=rtpmap:111 opus/48000/2", "a=rtpmap:128 opus/48000/2"),
        ("a=fmtp:111 minptime", "a=fmtp:x minptime"),
        ("a=rtcp-fb:111 transport-cc", "a=rtcp-fb:111"),
    ] {
        assert!(answer.contains(from), "{from}");
        let text = answer.replacen(from, to, 1);
        assert!(
            matches!(parse_answer(&text), Err(SdpError::Malformed { .. })),
            "{to}: {:?}",
            parse_answer(&text)
        );
    }
}

#[test]
fn oversized_answers_are_rejected_before_parsing() {
    let big = format!("{}{}", chrome_answer(), "a=x\r\n".repeat(MAX_SDP_LEN / 5));
    assert!(matches!(parse_answer(&big), Err(SdpError::TooLarge { .. })));
}

#[test]
fn media_section_count_is_capped() {
    let limits = ParseLimits {
        max_media_sections: 3,
        ..ParseLimits::default()
    };
    assert_eq!(
        parse_answer_with_limits(&chrome_answer(), &limits),
        Err(SdpError::TooManyMediaSections { max: 3 })
    );
    // The default cap, reached with minimal m-lines inside the size limit.
    let mut text = String::from("v=0\r\n");
    for i in 0..=MAX_MEDIA_SECTIONS {
        text.push_str(&format!("m=audio 0 X 111\r\na=mid:{i}\r\n"));
    }
    assert_eq!(
        parse_answer(&text),
        Err(SdpError::TooManyMediaSections {
            max: MAX_MEDIA_SECTIONS
        })
    );
}

#[test]
fn per_media_lists_are_capped() {
    let limits = ParseLimits::default();
    let ssrcs: String = (0..=limits.max_ssrcs_per_media)
        .map(|i| format!("a=ssrc:{} cname:x\r\n", i + 1))
        .collect();
    let text = chrome_answer().replacen("a=rtcp-mux\r\n", &format!("a=rtcp-mux\r\n{ssrcs}"), 1);
    assert!(matches!(
        parse_answer(&text),
        Err(SdpError::TooManyEntries { what: "ssrcs", .. })
    ));
    let extmaps: String = (1..=limits.max_extmaps_per_media + 1)
        .map(|i| format!("a=extmap:{i} urn:x:{i}\r\n"))
        .collect();
    let text = chrome_answer().replacen("a=rtcp-mux\r\n", &format!("a=rtcp-mux\r\n{extmaps}"), 1);
    assert!(matches!(
        parse_answer(&text),
        Err(SdpError::TooManyEntries {
            what: "extmaps",
            ..
        })
    ));
    let pts: String = (0..=limits.max_codecs_per_media)
        .map(|i| format!(" {}", i % 128))
        .collect();
    let text = chrome_answer().replacen(
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
        &format!("m=audio 9 UDP/TLS/RTP/SAVPF{pts}\r\n"),
        1,
    );
    assert!(matches!(
        parse_answer(&text),
        Err(SdpError::TooManyEntries {
            what: "payload types",
            ..
        })
    ));
}

#[test]
fn more_rtcp_fb_lines_for_one_codec_than_the_limit_are_refused_not_cut() {
    // Wildcard lines count toward every codec: the list a codec ends up with is what is
    // bounded, and cutting it would make the same answer read differently under another
    // limit.
    let limits = ParseLimits {
        max_rtcp_fb_per_codec: 2,
        ..ParseLimits::default()
    };
    let fbs = "a=rtcp-fb:* nack\r\na=rtcp-fb:111 transport-cc\r\na=rtcp-fb:111 nack pli\r\n";
    let text = chrome_answer().replacen("a=rtcp-mux\r\n", &format!("a=rtcp-mux\r\n{fbs}"), 1);
    assert!(matches!(
        parse_answer_with_limits(&text, &limits),
        Err(SdpError::TooManyEntries {
            what: "rtcp-fb lines of one codec",
            max: 2,
            ..
        })
    ));
    assert!(parse_answer(&text).is_ok());
}

#[test]
fn every_truncation_of_a_real_answer_parses_or_errors_without_panicking() {
    let answer = chrome_answer();
    for end in (0..=answer.len()).filter(|i| answer.is_char_boundary(*i)) {
        let _ = parse_answer(&answer[..end]);
    }
}

#[test]
fn byte_mutations_of_a_real_answer_never_panic() {
    // Deterministic xorshift so failures reproduce.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"0123456789:/ =\r\nam-xvFID";
    let original = chrome_answer().into_bytes();
    for _ in 0..3000 {
        let mut bytes = original.clone();
        for _ in 0..(next() % 8 + 1) {
            let at = (next() % bytes.len() as u64) as usize;
            let with = alphabet[(next() % alphabet.len() as u64) as usize];
            if let Some(b) = bytes.get_mut(at) {
                *b = with;
            }
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = parse_answer(text);
            let _ = parse_offer(text);
        }
    }
}

#[test]
fn candidates_appear_for_ipv4_and_ipv6() {
    let mut p = params();
    p.candidates = vec![SocketAddr::from(([10, 0, 0, 1], 50000))];
    let sdp = write_offer(&p).unwrap();
    assert_eq!(
        sdp.matches("a=candidate:1 1 udp 2130706431 10.0.0.1 50000 typ host\r\n")
            .count(),
        6
    );
}

#[test]
fn a_simulcast_camera_m_line_asks_for_each_rid_with_the_rid_extensions() {
    let mut p = params();
    p.media[1].simulcast = vec!["q".into(), "h".into(), "f".into()];
    let sdp = write_offer(&p).unwrap();
    let video: Vec<&str> = sdp
        .split("m=")
        .nth(2)
        .unwrap()
        .split("\r\n")
        .filter(|l| l.contains("rid") || l.contains("simulcast") || l.contains("stream-id"))
        .collect();
    assert_eq!(
        video,
        [
            "a=extmap:5 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
            "a=extmap:6 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
            "a=rid:q recv",
            "a=rid:h recv",
            "a=rid:f recv",
            "a=simulcast:recv q;h;f",
        ]
    );
    assert!(!sdp.split("m=").nth(1).unwrap().contains("simulcast"));
}

#[test]
fn simulcast_is_refused_where_it_cannot_be_received() {
    type Mutation = fn(&mut OfferParams);
    let cases: [(&str, Mutation); 4] = [
        ("audio", |p| p.media[0].simulcast = vec!["a".into()]),
        ("four rids", |p| {
            p.media[1].simulcast = ["a", "b", "c", "d"].map(String::from).to_vec()
        }),
        ("bad rid", |p| p.media[1].simulcast = vec!["a b".into()]),
        ("twice", |p| {
            p.media[1].simulcast = vec!["a".into(), "a".into()]
        }),
    ];
    for (name, mutate) in cases {
        let mut p = params();
        mutate(&mut p);
        assert!(write_offer(&p).is_err(), "{name} was accepted");
    }
}

#[test]
fn chromes_simulcast_answer_gives_the_rids_it_sends() {
    let attrs = "a=rid:f send\r\na=rid:h send\r\na=rid:q send\r\na=simulcast:send f;h;~q\r\n";
    let text = session_level_answer("", "").replace(
        "a=rtpmap:96 VP8/90000\r\n",
        &format!("a=rtpmap:96 VP8/90000\r\n{attrs}"),
    );
    let answer = parse_answer(&text).unwrap();
    assert_eq!(answer.media[1].simulcast_send, ["f", "h", "q"]);
    // a RID in a=simulcast without its a=rid line is not used; alternatives take the first
    let text = session_level_answer("", "").replace(
        "a=rtpmap:96 VP8/90000\r\n",
        "a=rtpmap:96 VP8/90000\r\na=rid:f send\r\na=rid:h send\r\na=simulcast:send f,x;h;q\r\n",
    );
    assert_eq!(
        parse_answer(&text).unwrap().media[1].simulcast_send,
        ["f", "h"]
    );
    let bad = session_level_answer("", "").replace(
        "a=rtpmap:96 VP8/90000\r\n",
        "a=rtpmap:96 VP8/90000\r\na=simulcast:send\r\n",
    );
    assert!(parse_answer(&bad).is_err());
}
