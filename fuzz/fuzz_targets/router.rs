//! The media router of one room: Ada publishes audio, video with RTX and a video track
//! without announced SSRCs (learnt from the MID extension); Bo publishes audio; Bo, Cy and
//! Ada subscribe to each other. Fuzz RTP/RTCP arrives from any of them with time passing.
//!
//! Input: frames `[control][len u16][bytes]`. Control bits 0-1: sender (Ada, Bo, Cy, or a
//! participant the router does not know); bit 2: RTCP (else RTP); bit 3: RTP built from
//! the bytes with a valid header (SSRC, payload type, MID and transport-cc extensions
//! picked by the first bytes) so that packets reach forwarding; bits 4-7: time that passes
//! before the frame, in 20 ms steps. An empty RTCP frame is a control-plane call instead
//! (bits 0-1 and 3 pick it): someone leaves and rejoins, a track is unpublished or
//! republished, a subscription ends or restarts, so teardown races with traffic. Every output must be addressed to a room member,
//! RTP outputs must parse and carry an SSRC announced to their receiver, and the queue
//! must stay within its bound.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sluice_rtp::RtpHeader;
use sluice_sfu::{
    Kind, OutputKind, ParticipantId, Router, RouterConfig, SubscriptionSpec, TrackSpec,
};

const ADA: ParticipantId = ParticipantId(1);
const BO: ParticipantId = ParticipantId(2);
const CY: ParticipantId = ParticipantId(3);
const STRANGER: ParticipantId = ParticipantId(99);
const MAX_QUEUED_OUTPUTS: usize = 512;

/// SSRCs a structured packet may carry: every publisher SSRC, RTX SSRCs, subscriber-side
/// SSRCs and unknown ones.
const SSRCS: [u32; 8] = [0xA1, 0xA2, 0xA3, 0xB1, 0xB0, 0xC3, 0xA9, 0xDEAD];
const PAYLOAD_TYPES: [u8; 8] = [111, 96, 97, 98, 99, 102, 103, 0];
const MIDS: [&[u8]; 4] = [b"0", b"1", b"2", b"zz"];

/// SSRCs announced to each receiver (media and RTX of its subscriptions), and the
/// router's own RTCP sender SSRC.
fn announced(to: ParticipantId) -> &'static [u32] {
    match to {
        ADA => &[0x0B01],
        BO => &[0x0A01, 0x0A02, 0x0A03, 0x0A04],
        CY => &[0x0C02, 0x0C03, 0x0C04],
        _ => &[],
    }
}

fn setup() -> Router {
    let config = RouterConfig {
        max_queued_outputs: MAX_QUEUED_OUTPUTS,
        max_ssrcs_per_participant: 8,
        // FEC toward every subscriber that accepted it, lossy or not
        video_fec_loss_threshold: Some(0.0),
        ..RouterConfig::default()
    };
    let mut r = Router::new(config);
    for p in [ADA, BO, CY] {
        r.add_participant("room", p).expect("add participant");
    }
    let track = |mid: &str, kind, ssrc, rtx_ssrc| TrackSpec {
        mid: mid.into(),
        kind,
        ssrc,
        rtx_ssrc,
        rids: Vec::new(),
    };
    let mic = r
        .publish(ADA, track("0", Kind::Audio, Some(0xA1), None))
        .expect("publish");
    let cam = r
        .publish(ADA, track("1", Kind::Video, Some(0xA2), Some(0xA3)))
        .expect("publish");
    let screen = r
        .publish(ADA, track("2", Kind::Video, None, None))
        .expect("publish");
    let bo_mic = r
        .publish(BO, track("0", Kind::Audio, Some(0xB1), None))
        .expect("publish");
    let sub = |ssrc, rtx_ssrc: Option<u32>, mid: Option<&str>| SubscriptionSpec {
        ssrc,
        rtx_ssrc,
        mid: mid.map(Into::into),
        payload_types: Vec::new(),
    };
    r.subscribe(BO, mic, sub(0x0A01, None, Some("3")))
        .expect("subscribe");
    r.subscribe(BO, cam, sub(0x0A02, Some(0x0A03), Some("4")))
        .expect("subscribe");
    r.subscribe(BO, screen, sub(0x0A04, None, Some("55")))
        .expect("subscribe");
    // Cy's answer accepted RED, its RTX and ULPFEC: its camera goes in RED with FEC
    let with_fec = SubscriptionSpec {
        payload_types: vec![96, 116, 117, 118],
        ..sub(0x0C02, Some(0x0C03), None)
    };
    r.subscribe(CY, cam, with_fec).expect("subscribe");
    r.subscribe(CY, screen, sub(0x0C04, None, None))
        .expect("subscribe");
    r.subscribe(ADA, bo_mic, sub(0x0B01, None, Some("7")))
        .expect("subscribe");
    r
}

/// A valid RTP packet whose fields come from `bytes`: [ssrc/pt selector][mid/ext
/// selector][seq u16][ts u32][payload...].
fn structured_rtp(bytes: &[u8]) -> Vec<u8> {
    let get = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let ssrc = SSRCS[usize::from(get(0) & 7)];
    let pt = PAYLOAD_TYPES[usize::from(get(0) >> 3 & 7)];
    let marker = get(0) & 0x80;
    let ext = get(1);
    let mut p = vec![
        0x80,
        marker | pt,
        get(2),
        get(3),
        get(4),
        get(5),
        get(6),
        get(7),
    ];
    p.extend_from_slice(&ssrc.to_be_bytes());
    let mut elements = Vec::new();
    if ext & 1 != 0 {
        let mid = MIDS[usize::from(ext >> 1 & 3)];
        elements.push(0x10 | (mid.len() as u8 - 1));
        elements.extend_from_slice(mid);
    }
    if ext & 8 != 0 {
        elements.extend_from_slice(&[0x31, get(8), ext]);
    }
    if !elements.is_empty() {
        while !elements.len().is_multiple_of(4) {
            elements.push(0);
        }
        p[0] |= 0x10;
        p.extend_from_slice(&[0xBE, 0xDE, 0, (elements.len() / 4) as u8]);
        p.extend_from_slice(&elements);
    }
    p.extend_from_slice(bytes.get(9..).unwrap_or(&[]));
    p
}

/// A control-plane call racing with the traffic: leave/rejoin, unpublish/republish,
/// unsubscribe/resubscribe. Errors (e.g. a track already gone) are expected and ignored.
fn control(r: &mut Router, op: u8) {
    let who = [ADA, BO, CY, STRANGER][usize::from(op & 3)];
    match op >> 3 & 1 {
        0 => {
            let _ = r.remove_participant(who);
            let _ = r.add_participant("room", who);
        }
        _ => {
            for track in r.published_tracks(ADA).to_vec() {
                let _ = r.unsubscribe(who, track);
                if op & 3 == 0 {
                    let _ = r.unpublish(track);
                }
            }
            let mid = ["0", "1", "2", "3"][usize::from(op & 3)];
            if let Ok(track) = r.publish(
                ADA,
                TrackSpec {
                    mid: mid.into(),
                    kind: Kind::Video,
                    ssrc: None,
                    rtx_ssrc: None,
                    rids: Vec::new(),
                },
            ) {
                let _ = r.subscribe(BO, track, SubscriptionSpec::new(0x0A04));
                let _ = r.subscribe(CY, track, SubscriptionSpec::new(0x0C04));
            }
        }
    }
}

fn drain(r: &mut Router) {
    assert!(
        r.queued_outputs() <= MAX_QUEUED_OUTPUTS,
        "output queue past its bound"
    );
    while let Some(out) = r.poll_output() {
        assert!(
            r.participants("room").contains(&out.to),
            "output to {:?}, who is not in the room",
            out.to
        );
        if out.kind == OutputKind::Rtp {
            let h = RtpHeader::parse(&out.data).expect("forwarded RTP parses");
            assert!(
                announced(out.to).contains(&h.ssrc()),
                "RTP to {:?} with SSRC {:#x} never announced to it",
                out.to,
                h.ssrc()
            );
        }
        r.recycle(out.data);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = setup();
    let mut now = Instant::now();
    for frame in sluice_fuzz::frames(data, 256) {
        now += Duration::from_millis(20 * u64::from(frame.control >> 4));
        if r.poll_timeout().is_some_and(|t| t <= now) {
            r.handle_timeout(now);
            drain(&mut r);
        }
        let from = [ADA, BO, CY, STRANGER][usize::from(frame.control & 3)];
        if frame.control & 4 != 0 && frame.bytes.is_empty() {
            control(&mut r, frame.control);
        } else if frame.control & 4 != 0 {
            r.handle_rtcp(now, from, frame.bytes);
        } else if frame.control & 8 != 0 {
            r.handle_rtp(now, from, &structured_rtp(frame.bytes));
        } else {
            r.handle_rtp(now, from, frame.bytes);
        }
        drain(&mut r);
    }
    // Let every timer run out: reports, NACK retries, keyframe requests.
    for _ in 0..64 {
        let Some(t) = r.poll_timeout() else { break };
        now = now.max(t);
        r.handle_timeout(now);
        drain(&mut r);
    }
});
