//! A scripted room history (alice present, bob joins, alice leaves, carol reuses her
//! m-lines) for checking the offers against a real browser.
//!
//! `cargo run -p sluice-signal --example chrome_session > offers.json` prints the four
//! offers; `tests/chrome/` has a page that feeds them to Chromium and posts its
//! answers back; `... --example chrome_session -- check answers.json` replays the
//! history with those answers. `tests/chrome_answers.rs` pins the result.

use sluice_signal::negotiation::*;
use sluice_signal::sdp::*;
use std::fmt::Write as _;

fn stream(p: &str, kind: Kind, ssrc: u32) -> SendStream {
    SendStream {
        stream_id: p.into(),
        track_id: format!("{p}-{kind}"),
        ssrc,
        rtx_ssrc: (kind == Kind::Video).then_some(ssrc + 1),
        cname: format!("{p}-cname"),
    }
}

fn fake_answer(offer: &str) -> String {
    let o = parse_offer(offer).unwrap();
    let mids: Vec<&str> = o.media.iter().map(|m| m.mid.as_str()).collect();
    let mut out = format!("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {}\r\na=fingerprint:sha-256 {}\r\na=setup:active\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijabcdefghijab\r\n", mids.join(" "), fingerprint::format_sha256(&[1;32]));
    for m in &o.media {
        let pts: Vec<String> = m.codecs.iter().map(|c| c.pt.to_string()).collect();
        let d = match m.direction {
            Direction::RecvOnly => "sendonly",
            Direction::SendOnly => "recvonly",
            _ => "inactive",
        };
        let _ = write!(
            out,
            "m={} 9 UDP/TLS/RTP/SAVPF {}\r\na=mid:{}\r\na={}\r\n",
            m.kind,
            pts.join(" "),
            m.mid,
            d
        );
        for c in &m.codecs {
            let _ = write!(out, "a=rtpmap:{} {}/{}\r\n", c.pt, c.name, c.clock_rate);
        }
    }
    out
}

/// The scripted room history: alice is there, bob joins, alice leaves, carol joins.
fn run(mut answer: impl FnMut(usize, &str) -> String) -> Vec<String> {
    let t = TransportParams {
        session_id: 12345,
        ice: ("sl8Q".into(), "rE4cZ7uN1pK0vW9xT2qB6mYd".into()),
        fingerprint_sha256: [7; 32],
        setup: Setup::ActPass,
        candidates: vec!["127.0.0.1:3478".parse().unwrap()],
    };
    let mut n = Negotiator::new(t, NegotiatorConfig::default());
    let mut offers = Vec::new();
    let mut step = |n: &mut Negotiator, offers: &mut Vec<String>| {
        let (rev, sdp) = n.create_offer().unwrap();
        let a = answer(offers.len(), &sdp);
        match n.on_answer(rev, &a) { Ok(parsed) => eprintln!("rev {rev}: answer ok: {} media, setup {:?}, mid0 ssrcs {:?}, mid1 ssrcs {:?} fid {:?}", parsed.media.len(), parsed.setup, parsed.media[0].ssrcs, parsed.media[1].ssrcs, parsed.media[1].fid_groups),
            Err(e) => eprintln!("rev {rev}: ANSWER REJECTED: {e}") }
        offers.push(sdp);
    };
    n.add_remote_track("alice", Kind::Audio, stream("alice", Kind::Audio, 100))
        .unwrap();
    n.add_remote_track("alice", Kind::Video, stream("alice", Kind::Video, 110))
        .unwrap();
    step(&mut n, &mut offers);
    n.add_remote_track("bob", Kind::Audio, stream("bob", Kind::Audio, 200))
        .unwrap();
    n.add_remote_track("bob", Kind::Video, stream("bob", Kind::Video, 210))
        .unwrap();
    step(&mut n, &mut offers);
    n.remove_participant("alice");
    step(&mut n, &mut offers);
    n.add_remote_track("carol", Kind::Audio, stream("carol", Kind::Audio, 300))
        .unwrap();
    n.add_remote_track("carol", Kind::Video, stream("carol", Kind::Video, 310))
        .unwrap();
    step(&mut n, &mut offers);
    offers
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("check") {
        let answers: Vec<String> =
            serde_json::from_str(&std::fs::read_to_string(&args[2]).unwrap()).unwrap();
        run(|i, _| answers[i].clone());
    } else {
        let offers = run(|_, o| fake_answer(o));
        println!("{}", serde_json::to_string(&offers).unwrap());
    }
}
