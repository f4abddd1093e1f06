//! Behaviour of the router on hand-built RTP/RTCP, on virtual time.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use sluice_rtp::{write_nack, write_pli, write_sender_report, RtcpIter, RtcpPacket};
use sluice_sfu::{
    Kind, OutputKind, ParticipantId, Router, RouterConfig, RouterDrop, RouterError,
    SubscriptionSpec, TrackId, TrackSpec,
};

const ROOM: &str = "room";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn video(mid: &str, ssrc: Option<u32>) -> TrackSpec {
    TrackSpec {
        mid: mid.into(),
        kind: Kind::Video,
        ssrc,
        rtx_ssrc: None,
        rids: Vec::new(),
    }
}

fn audio(mid: &str, ssrc: Option<u32>) -> TrackSpec {
    TrackSpec {
        mid: mid.into(),
        kind: Kind::Audio,
        ssrc,
        rtx_ssrc: None,
        rids: Vec::new(),
    }
}

/// A router with participants 1..=n in one room.
fn room_of(n: u64, config: RouterConfig) -> Router {
    let mut r = Router::new(config);
    for i in 1..=n {
        r.add_participant(ROOM, ParticipantId(i)).unwrap();
    }
    r
}

fn plis_in(outputs: &[&sluice_sfu::Output]) -> Vec<u32> {
    outputs
        .iter()
        .flat_map(|o| RtcpIter::new(&o.data))
        .filter_map(|p| match p {
            Ok(RtcpPacket::Pli { media_ssrc, .. }) => Some(media_ssrc),
            _ => None,
        })
        .collect()
}

#[test]
fn three_participants_receive_each_others_media_with_announced_ssrcs_and_continuous_seq() {
    let mut r = room_of(3, RouterConfig::default());
    let ids = [ParticipantId(1), ParticipantId(2), ParticipantId(3)];
    // publisher i: audio ssrc 100+i, video ssrc 200+i; announced to subscriber s as
    // 10_000*s + 100*i + kind
    let mut tracks = Vec::new();
    for &p in &ids {
        let a = r.publish(p, audio("0", Some(100 + p.0 as u32))).unwrap();
        let v = r.publish(p, video("1", Some(200 + p.0 as u32))).unwrap();
        tracks.push((p, a, v));
    }
    let announced =
        |s: ParticipantId, p: ParticipantId, kind: u32| (10_000 * s.0 + 100 * p.0) as u32 + kind;
    for &s in &ids {
        for &(p, a, v) in &tracks {
            if p != s {
                r.subscribe(s, a, SubscriptionSpec::new(announced(s, p, 1)))
                    .unwrap();
                r.subscribe(s, v, SubscriptionSpec::new(announced(s, p, 2)))
                    .unwrap();
            }
        }
    }
    let t0 = Instant::now();
    let mut outputs = Vec::new();
    for i in 0..30u16 {
        let now = t0 + ms(20 * u64::from(i));
        for &p in &ids {
            // sequence numbers cross the 16-bit wrap
            let seq = 65_520u16.wrapping_add(i);
            let a = Rtp::new(111, 100 + p.0 as u32, seq, 960 * u32::from(i), OPUS).twcc(2 * i);
            r.handle_rtp(now, p, &a.build());
            let payload = if i == 0 { VP8_KEYFRAME } else { VP8_DELTA };
            let v =
                Rtp::new(96, 200 + p.0 as u32, seq, 3000 * u32::from(i), payload).twcc(2 * i + 1);
            r.handle_rtp(now, p, &v.build());
        }
        outputs.extend(drain(&mut r));
    }
    for &s in &ids {
        let got = rtp_to(&outputs, s);
        let mut by_ssrc: BTreeMap<u32, Vec<u16>> = BTreeMap::new();
        for v in &got {
            by_ssrc.entry(v.ssrc).or_default().push(v.seq);
        }
        let mut expected: Vec<u32> = ids
            .iter()
            .filter(|&&p| p != s)
            .flat_map(|&p| [announced(s, p, 1), announced(s, p, 2)])
            .collect();
        expected.sort();
        assert_eq!(
            by_ssrc.keys().copied().collect::<Vec<_>>(),
            expected,
            "subscriber {s:?}"
        );
        for (ssrc, seqs) in by_ssrc {
            assert_eq!(seqs.len(), 30, "ssrc {ssrc}");
            for w in seqs.windows(2) {
                assert_eq!(w[1], w[0].wrapping_add(1), "ssrc {ssrc} continuous");
            }
        }
        // each subscriber's transport numbers its own packets, gap-free from 0
        let transport: Vec<u16> = got.iter().map(|p| p.transport_seq.unwrap()).collect();
        assert_eq!(transport, (0..got.len() as u16).collect::<Vec<_>>());
    }
    let st = r.stats();
    assert_eq!(st.forwarded_packets, 3 * 2 * 2 * 30);
    assert_eq!(st.dropped.total(), 0);
}

#[test]
fn ssrc_is_learnt_from_the_mid_extension_of_the_first_packets() {
    let mut r = room_of(2, RouterConfig::default());
    let (pubr, sub) = (ParticipantId(1), ParticipantId(2));
    let v = r.publish(pubr, video("1", None)).unwrap();
    r.subscribe(sub, v, SubscriptionSpec::new(0xBEEF)).unwrap();
    let t0 = Instant::now();
    // first packet without MID: nothing to bind it to
    r.handle_rtp(t0, pubr, &Rtp::new(96, 0x5151, 9, 0, VP8_KEYFRAME).build());
    assert_eq!(r.stats().dropped.get(RouterDrop::UnknownSsrc), 1);
    assert_eq!(r.track_ssrc(v), None);
    // with the MID: learnt, and later packets need no MID
    r.handle_rtp(
        t0,
        pubr,
        &Rtp::new(96, 0x5151, 10, 0, VP8_KEYFRAME).mid("1").build(),
    );
    r.handle_rtp(
        t0 + ms(33),
        pubr,
        &Rtp::new(96, 0x5151, 11, 3000, VP8_DELTA).build(),
    );
    assert_eq!(r.track_ssrc(v), Some(0x5151));
    let got = rtp_to(&drain(&mut r), sub);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|p| p.ssrc == 0xBEEF));
    assert_eq!(got[1].seq, got[0].seq.wrapping_add(1));
}

#[test]
fn rtx_learnt_from_mid_and_payload_type_is_unwrapped_into_the_original_stream() {
    let mut r = room_of(2, RouterConfig::default());
    let (pubr, sub) = (ParticipantId(1), ParticipantId(2));
    let v = r.publish(pubr, video("1", None)).unwrap();
    r.subscribe(sub, v, SubscriptionSpec::new(0xBEEF)).unwrap();
    let t0 = Instant::now();
    r.handle_rtp(
        t0,
        pubr,
        &Rtp::new(96, 0x5151, 100, 0, VP8_KEYFRAME).mid("1").build(),
    );
    // 101 lost; 102 arrives
    r.handle_rtp(
        t0 + ms(5),
        pubr,
        &Rtp::new(96, 0x5151, 102, 0, &[0x00, 2]).build(),
    );
    // the publisher answers our NACK on its RTX SSRC (PT 97), MID still present
    let mut rtx_payload = 101u16.to_be_bytes().to_vec();
    rtx_payload.extend_from_slice(&[0x00, 1]);
    r.handle_rtp(
        t0 + ms(40),
        pubr,
        &Rtp::new(97, 0x7272, 1, 0, &rtx_payload).mid("1").build(),
    );
    let got = rtp_to(&drain(&mut r), sub);
    assert_eq!(got.len(), 3);
    let recovered = &got[2];
    assert_eq!(recovered.ssrc, 0xBEEF);
    assert_eq!(recovered.pt, 96);
    assert_eq!(
        recovered.seq,
        got[0].seq.wrapping_add(1),
        "slots between 100 and 102"
    );
    assert_eq!(recovered.payload, vec![0x00, 1]);
    assert_eq!(r.stats().rtx_received, 1);
    // a padding-only RTX probe is dropped (and counted)
    r.handle_rtp(t0 + ms(50), pubr, &Rtp::new(97, 0x7272, 2, 0, &[]).build());
    assert_eq!(r.stats().dropped.get(RouterDrop::RtxPadding), 1);
}

#[test]
fn a_retransmission_of_a_packet_already_forwarded_is_not_forwarded_again() {
    let mut r = room_of(2, RouterConfig::default());
    let (pubr, sub) = (ParticipantId(1), ParticipantId(2));
    let v = r.publish(pubr, video("1", None)).unwrap();
    r.subscribe(sub, v, SubscriptionSpec::new(0xBEEF)).unwrap();
    let t0 = Instant::now();
    for seq in [100u16, 101, 103] {
        let payload: &[u8] = if seq == 100 { VP8_KEYFRAME } else { &[0x00, 2] };
        r.handle_rtp(
            t0 + ms(u64::from(seq - 100)),
            pubr,
            &Rtp::new(96, 0x5151, seq, 0, payload).mid("1").build(),
        );
    }
    assert_eq!(rtp_to(&drain(&mut r), sub).len(), 3);
    // Chrome's bandwidth probe: RTX copies of 100 and 101, which arrived, then the
    // genuine retransmission of the lost 102
    for (rtx_seq, original) in [(1u16, 100u16), (2, 101), (3, 102)] {
        let mut payload = original.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0x00, 1]);
        r.handle_rtp(
            t0 + ms(40),
            pubr,
            &Rtp::new(97, 0x7272, rtx_seq, 0, &payload).mid("1").build(),
        );
    }
    let got = rtp_to(&drain(&mut r), sub);
    assert_eq!(got.len(), 1, "only the lost packet is forwarded: {got:?}");
    assert_eq!(got[0].payload, vec![0x00, 1]);
    assert_eq!(r.stats().dropped.get(RouterDrop::RtxDuplicate), 2);
}

#[test]
fn unknown_ssrc_unknown_mid_and_unknown_participant_are_dropped_and_counted() {
    let mut r = room_of(2, RouterConfig::default());
    let v = r.publish(ParticipantId(1), video("1", Some(7))).unwrap();
    r.subscribe(ParticipantId(2), v, SubscriptionSpec::new(70))
        .unwrap();
    let t0 = Instant::now();
    r.handle_rtp(
        t0,
        ParticipantId(1),
        &Rtp::new(96, 8, 1, 0, VP8_KEYFRAME).build(),
    );
    r.handle_rtp(
        t0,
        ParticipantId(1),
        &Rtp::new(96, 9, 1, 0, VP8_KEYFRAME).mid("5").build(),
    );
    r.handle_rtp(
        t0,
        ParticipantId(9),
        &Rtp::new(96, 7, 1, 0, VP8_KEYFRAME).build(),
    );
    r.handle_rtp(t0, ParticipantId(1), &[0x80, 96, 0]);
    let st = r.stats();
    assert_eq!(st.dropped.get(RouterDrop::UnknownSsrc), 2);
    assert_eq!(st.dropped.get(RouterDrop::UnknownParticipant), 1);
    assert_eq!(st.dropped.get(RouterDrop::MalformedRtp), 1);
    assert_eq!(st.forwarded_packets, 0);
    assert!(rtp_to(&drain(&mut r), ParticipantId(2)).is_empty());
}

/// Forwards seqs 1..=5 of a video track to a subscriber announced as (0xB0, rtx) and
/// returns the router and the forwarded packets.
fn forwarded_video(rtx: Option<u32>) -> (Router, Vec<RtpView>, Instant) {
    let mut r = room_of(2, RouterConfig::default());
    let v = r.publish(ParticipantId(1), video("1", Some(0xA1))).unwrap();
    let spec = SubscriptionSpec {
        ssrc: 0xB0,
        rtx_ssrc: rtx,
        mid: None,
        payload_types: Vec::new(),
    };
    r.subscribe(ParticipantId(2), v, spec).unwrap();
    let t0 = Instant::now();
    for seq in 1..=5u16 {
        let payload = if seq == 1 { VP8_KEYFRAME } else { VP8_DELTA };
        let p = Rtp::new(96, 0xA1, seq, 3000 * u32::from(seq), payload).twcc(seq);
        r.handle_rtp(t0, ParticipantId(1), &p.build());
    }
    let got = rtp_to(&drain(&mut r), ParticipantId(2));
    assert_eq!(got.len(), 5);
    (r, got, t0)
}

#[test]
fn nack_is_answered_from_the_cache_with_a_plain_retransmission_without_rtx() {
    let (mut r, sent, t0) = forwarded_video(None);
    let mut nack = Vec::new();
    write_nack(
        0x2222,
        0xB0,
        &[sent[1].seq, sent[3].seq, sent[4].seq.wrapping_add(50)],
        &mut nack,
    );
    r.handle_rtcp(t0 + ms(30), ParticipantId(2), &nack);
    let again = rtp_to(&drain(&mut r), ParticipantId(2));
    assert_eq!(again.len(), 2);
    for (resent, original) in again.iter().zip([&sent[1], &sent[3]]) {
        assert_eq!(
            (resent.ssrc, resent.seq, resent.ts),
            (original.ssrc, original.seq, original.ts)
        );
        assert_eq!(resent.payload, original.payload);
        // a fresh transport-wide sequence number, after the five first sent
        assert!(resent.transport_seq.unwrap() >= 5);
    }
    let st = r.stats();
    assert_eq!(
        (
            st.nacks_received,
            st.nacks_answered,
            st.nacks_missed,
            st.rtx_sent
        ),
        (1, 2, 1, 0)
    );
}

#[test]
fn nack_is_answered_with_rtx_on_the_announced_rtx_ssrc() {
    let (mut r, sent, t0) = forwarded_video(Some(0xB1));
    let mut nack = Vec::new();
    write_nack(0x2222, 0xB0, &[sent[2].seq, sent[3].seq], &mut nack);
    r.handle_rtcp(t0 + ms(30), ParticipantId(2), &nack);
    let again = rtp_to(&drain(&mut r), ParticipantId(2));
    assert_eq!(again.len(), 2);
    for (i, (rtx, original)) in again.iter().zip([&sent[2], &sent[3]]).enumerate() {
        assert_eq!(rtx.ssrc, 0xB1);
        assert_eq!(rtx.pt, 97);
        assert_eq!(rtx.seq, i as u16, "RTX stream has its own sequence");
        assert_eq!(&rtx.payload[..2], &original.seq.to_be_bytes());
        assert_eq!(&rtx.payload[2..], &original.payload[..]);
    }
    assert_eq!(r.stats().rtx_sent, 2);
}

/// Two subscribers of one video track whose first keyframe went through.
fn video_with_two_subscribers() -> (Router, Instant) {
    let mut r = room_of(3, RouterConfig::default());
    let v = r.publish(ParticipantId(1), video("1", Some(0xA1))).unwrap();
    r.subscribe(ParticipantId(2), v, SubscriptionSpec::new(0xB2))
        .unwrap();
    r.subscribe(ParticipantId(3), v, SubscriptionSpec::new(0xB3))
        .unwrap();
    let t0 = Instant::now();
    r.handle_rtp(
        t0,
        ParticipantId(1),
        &Rtp::new(96, 0xA1, 1, 0, VP8_KEYFRAME).build(),
    );
    drain(&mut r);
    (r, t0)
}

fn pli_from(r: &mut Router, now: Instant, from: ParticipantId, media_ssrc: u32) {
    let mut pli = Vec::new();
    write_pli(0x9999, media_ssrc, &mut pli);
    r.handle_rtcp(now, from, &pli);
}

#[test]
fn plis_from_two_subscribers_within_the_interval_send_one_pli() {
    let (mut r, t0) = video_with_two_subscribers();
    let t1 = t0 + ms(1000);
    pli_from(&mut r, t1, ParticipantId(2), 0xB2);
    let first = drain(&mut r);
    assert_eq!(plis_in(&rtcp_to(&first, ParticipantId(1))), vec![0xA1]);
    pli_from(&mut r, t1 + ms(100), ParticipantId(3), 0xB3);
    assert!(plis_in(&rtcp_to(&drain(&mut r), ParticipantId(1))).is_empty());
    // the keyframe answering the first PLI also serves the second subscriber
    r.handle_rtp(
        t1 + ms(150),
        ParticipantId(1),
        &Rtp::new(96, 0xA1, 2, 90_000, VP8_KEYFRAME).build(),
    );
    let later = run_timers(&mut r, t1 + ms(2000));
    let later: Vec<_> = later.iter().map(|(_, o)| o).collect();
    assert!(plis_in(&later).is_empty());
    assert_eq!(r.stats().keyframe_requests_sent, 1);
    assert_eq!(r.stats().keyframe_requests_received, 2);
}

#[test]
fn a_throttled_pli_is_sent_when_the_interval_ends_if_no_keyframe_arrived() {
    let (mut r, t0) = video_with_two_subscribers();
    let t1 = t0 + ms(1000);
    pli_from(&mut r, t1, ParticipantId(2), 0xB2);
    pli_from(&mut r, t1 + ms(100), ParticipantId(3), 0xB3);
    drain(&mut r);
    // the RR timer may come first; the PLI is due exactly at t1 + 500 ms
    let later = run_timers(&mut r, t1 + ms(600));
    let pli_times: Vec<Instant> = later
        .iter()
        .filter(|(_, o)| o.to == ParticipantId(1) && !plis_in(&[o]).is_empty())
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(pli_times, vec![t1 + ms(500)]);
}

#[test]
fn a_new_subscription_requests_a_keyframe_and_waits_for_it() {
    let (mut r, t0) = video_with_two_subscribers();
    r.add_participant(ROOM, ParticipantId(4)).unwrap();
    let v = r.published_tracks(ParticipantId(1))[0];
    let t1 = t0 + ms(2000);
    r.handle_rtp(
        t1,
        ParticipantId(1),
        &Rtp::new(96, 0xA1, 2, 1000, VP8_DELTA).build(),
    );
    drain(&mut r);
    r.subscribe(ParticipantId(4), v, SubscriptionSpec::new(0xB4))
        .unwrap();
    assert!(
        r.poll_timeout().is_some_and(|t| t <= t1),
        "the PLI is due at once"
    );
    r.handle_timeout(t1);
    let out = drain(&mut r);
    assert_eq!(plis_in(&rtcp_to(&out, ParticipantId(1))), vec![0xA1]);
    // a delta frame is held back from the new subscriber only
    r.handle_rtp(
        t1 + ms(10),
        ParticipantId(1),
        &Rtp::new(96, 0xA1, 3, 2000, VP8_DELTA).build(),
    );
    let out = drain(&mut r);
    assert!(rtp_to(&out, ParticipantId(4)).is_empty());
    assert_eq!(rtp_to(&out, ParticipantId(2)).len(), 1);
    assert_eq!(r.stats().dropped.get(RouterDrop::AwaitingKeyframe), 1);
    r.handle_rtp(
        t1 + ms(40),
        ParticipantId(1),
        &Rtp::new(96, 0xA1, 4, 3000, VP8_KEYFRAME).build(),
    );
    let got = rtp_to(&drain(&mut r), ParticipantId(4));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].ssrc, 0xB4);
    assert_eq!(got[0].payload, VP8_KEYFRAME);
}

#[test]
fn sender_reports_to_subscribers_translate_the_publishers_sr_through_the_timestamp_offset() {
    let mut r = room_of(2, RouterConfig::default());
    let (pubr, sub) = (ParticipantId(1), ParticipantId(2));
    let a = r.publish(pubr, audio("0", None)).unwrap();
    r.subscribe(sub, a, SubscriptionSpec::new(0xB0)).unwrap();
    let t0 = Instant::now();
    // first source: ts base 1_000, then silence, then a new SSRC (same MID) with another
    // base, so the output timestamps are offset from the input ones
    for i in 0..5u32 {
        let p = Rtp::new(111, 0x11, i as u16, 1_000 + 960 * i, OPUS).mid("0");
        r.handle_rtp(t0 + ms(20 * u64::from(i)), pubr, &p.build());
    }
    let t1 = t0 + ms(3000);
    for i in 0..5u32 {
        let p = Rtp::new(111, 0x22, 500 + i as u16, 7_000_000 + 960 * i, OPUS).mid("0");
        r.handle_rtp(t1 + ms(20 * u64::from(i)), pubr, &p.build());
    }
    let forwarded = rtp_to(&drain(&mut r), sub);
    assert_eq!(forwarded.len(), 10);
    let offset = forwarded[5].ts.wrapping_sub(7_000_000);
    assert_ne!(offset, 0);
    // publisher SR for the new SSRC: NTP N <-> RTP 7_000_960
    let ntp: u64 = 0xE000_0000_8000_0000;
    let mut sr = Vec::new();
    write_sender_report(0x22, ntp, 7_000_960, 5, 20, &[], &mut sr);
    let t_sr = t1 + ms(100);
    r.handle_rtcp(t_sr, pubr, &sr);
    let reports = run_timers(&mut r, t_sr + ms(3000));
    let (t_out, report) = reports
        .iter()
        .find(|(t, o)| o.to == sub && *t > t_sr)
        .expect("an SR to the subscriber");
    let mut packets = RtcpIter::new(&report.data);
    let Some(Ok(RtcpPacket::SenderReport(out))) = packets.next() else {
        panic!("compound starts with an SR");
    };
    assert!(matches!(packets.next(), Some(Ok(RtcpPacket::Sdes(_)))));
    let elapsed = *t_out - t_sr;
    let elapsed_ticks = (elapsed.as_nanos() * 48_000 / 1_000_000_000) as u32;
    assert_eq!(out.sender_ssrc, 0xB0);
    assert_eq!(
        out.rtp_timestamp,
        7_000_960u32
            .wrapping_add(offset)
            .wrapping_add(elapsed_ticks)
    );
    let ntp_elapsed = out.ntp_timestamp - ntp;
    let expected = (elapsed.as_secs_f64() * 4_294_967_296.0) as u64;
    assert!(
        ntp_elapsed.abs_diff(expected) < 10,
        "{ntp_elapsed} vs {expected}"
    );
    assert_eq!(out.packet_count, 10);
}

#[test]
fn rr_twcc_and_sr_are_generated_on_schedule_in_virtual_time() {
    let mut r = room_of(2, RouterConfig::default());
    let (pubr, sub) = (ParticipantId(1), ParticipantId(2));
    let a = r.publish(pubr, audio("0", Some(0x11))).unwrap();
    r.subscribe(sub, a, SubscriptionSpec::new(0xB0)).unwrap();
    let t0 = Instant::now();
    let mut sent = Vec::new();
    let end = t0 + ms(10_000);
    let mut i: u32 = 0;
    // one audio packet every 20 ms; timers run in between, exactly when due
    loop {
        let next_packet = t0 + ms(20 * u64::from(i));
        if next_packet >= end {
            break;
        }
        sent.extend(run_timers(&mut r, next_packet));
        let p = Rtp::new(111, 0x11, i as u16, 960 * i, OPUS).twcc(i as u16);
        r.handle_rtp(next_packet, pubr, &p.build());
        if i % 50 == 0 {
            let mut sr = Vec::new();
            write_sender_report(0x11, 1 << 40, 960 * i, i, i, &[], &mut sr);
            r.handle_rtcp(next_packet, pubr, &sr);
        }
        sent.extend(drain(&mut r).into_iter().map(|o| (next_packet, o)));
        i += 1;
    }
    let times = |to: ParticipantId, pred: &dyn Fn(&RtcpPacket) -> bool| -> Vec<Instant> {
        sent.iter()
            .filter(|(_, o)| o.to == to && o.kind == OutputKind::Rtcp)
            .filter(|(_, o)| {
                RtcpIter::new(&o.data)
                    .next()
                    .is_some_and(|p| p.is_ok_and(|p| pred(&p)))
            })
            .map(|(t, _)| *t)
            .collect()
    };
    let rr = times(pubr, &|p| matches!(p, RtcpPacket::ReceiverReport(_)));
    let twcc = times(pubr, &|p| matches!(p, RtcpPacket::TransportCc(_)));
    let sr = times(sub, &|p| matches!(p, RtcpPacket::SenderReport(_)));
    for (name, list) in [("rr", &rr), ("sr", &sr)] {
        assert!(
            (6..=20).contains(&list.len()),
            "{name}: {} reports",
            list.len()
        );
        for w in list.windows(2) {
            let gap = w[1] - w[0];
            assert!(gap >= ms(500) && gap < ms(1500), "{name} gap {gap:?}");
        }
    }
    // jitter: not all intervals equal
    let gaps: std::collections::BTreeSet<_> = rr.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() > 1);
    assert!(
        (180..=205).contains(&twcc.len()),
        "{} twcc feedbacks",
        twcc.len()
    );
    for w in twcc.windows(2) {
        let gap = w[1] - w[0];
        assert!(gap >= ms(40) && gap <= ms(70), "twcc gap {gap:?}");
    }
    // RR carries a block for the publisher's stream
    let (_, first_rr) = sent
        .iter()
        .find(|(_, o)| {
            o.to == pubr
                && matches!(
                    RtcpIter::new(&o.data).next(),
                    Some(Ok(RtcpPacket::ReceiverReport(_)))
                )
        })
        .unwrap();
    let Some(Ok(RtcpPacket::ReceiverReport(rr))) = RtcpIter::new(&first_rr.data).next() else {
        unreachable!()
    };
    assert_eq!(
        rr.blocks.iter().map(|b| b.ssrc).collect::<Vec<_>>(),
        vec![0x11]
    );
}

#[test]
fn remove_participant_removes_its_tracks_and_subscriptions_and_stops_forwarding() {
    let mut r = room_of(3, RouterConfig::default());
    let ids = [ParticipantId(1), ParticipantId(2), ParticipantId(3)];
    let mut tracks = Vec::new();
    for &p in &ids {
        tracks.push((p, r.publish(p, audio("0", Some(p.0 as u32))).unwrap()));
    }
    for &s in &ids {
        for &(p, t) in &tracks {
            if p != s {
                r.subscribe(s, t, SubscriptionSpec::new((100 * s.0 + p.0) as u32))
                    .unwrap();
            }
        }
    }
    let removed = r.remove_participant(ParticipantId(2));
    assert_eq!(removed, vec![tracks[1].1]);
    assert_eq!(r.participants(ROOM), &[ParticipantId(1), ParticipantId(3)]);
    assert_eq!(r.room_of(ParticipantId(2)), None);
    let t0 = Instant::now();
    r.handle_rtp(t0, ParticipantId(1), &Rtp::new(111, 1, 1, 0, OPUS).build());
    r.handle_rtp(t0, ParticipantId(2), &Rtp::new(111, 2, 1, 0, OPUS).build());
    let out = drain(&mut r);
    assert!(out.iter().all(|o| o.to != ParticipantId(2)));
    assert_eq!(rtp_to(&out, ParticipantId(3)).len(), 1);
    assert_eq!(r.stats().dropped.get(RouterDrop::UnknownParticipant), 1);
    assert_eq!(
        r.subscribe(ParticipantId(3), tracks[1].1, SubscriptionSpec::new(9)),
        Err(RouterError::UnknownTrack(tracks[1].1))
    );
    // the room disappears with its last participant
    r.remove_participant(ParticipantId(1));
    r.remove_participant(ParticipantId(3));
    assert_eq!(r.room_count(), 0);
}

#[test]
fn ssrc_flood_binds_at_most_32_ssrcs_and_leaves_the_live_stream_and_others_alone() {
    let mut r = room_of(3, RouterConfig::default());
    let v = r.publish(ParticipantId(1), video("1", None)).unwrap();
    let other = r.publish(ParticipantId(3), audio("0", Some(0x33))).unwrap();
    r.subscribe(ParticipantId(2), v, SubscriptionSpec::new(0xB1))
        .unwrap();
    r.subscribe(ParticipantId(2), other, SubscriptionSpec::new(0xB3))
        .unwrap();
    let t0 = Instant::now();
    for i in 0..60u32 {
        let now = t0 + ms(u64::from(i));
        let payload = if i == 0 { VP8_KEYFRAME } else { VP8_DELTA };
        let live = Rtp::new(96, 0x1000, i as u16, 90 * i, payload).mid("1");
        r.handle_rtp(now, ParticipantId(1), &live.build());
        // one new SSRC per step claiming the same MID
        let flood = Rtp::new(96, 0xF000 + i, 1, 0, VP8_KEYFRAME).mid("1");
        r.handle_rtp(now, ParticipantId(1), &flood.build());
        r.handle_rtp(
            now,
            ParticipantId(3),
            &Rtp::new(111, 0x33, i as u16, 960 * i, OPUS).build(),
        );
    }
    let st = r.stats();
    // the live SSRC plus 31 flood SSRCs are bound; the other 29 flood SSRCs are refused
    assert_eq!(st.dropped.get(RouterDrop::SsrcLimit), 29);
    assert_eq!(st.dropped.get(RouterDrop::Stale), 31);
    assert_eq!(r.track_ssrc(v), Some(0x1000));
    let got = rtp_to(&drain(&mut r), ParticipantId(2));
    let live: Vec<u16> = got
        .iter()
        .filter(|p| p.ssrc == 0xB1)
        .map(|p| p.seq)
        .collect();
    assert_eq!(live.len(), 60);
    assert!(live.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    assert_eq!(got.iter().filter(|p| p.ssrc == 0xB3).count(), 60);
}

#[test]
fn an_undrained_output_queue_drops_its_oldest_outputs() {
    let config = RouterConfig {
        max_queued_outputs: 4,
        ..RouterConfig::default()
    };
    let mut r = room_of(2, config);
    let a = r.publish(ParticipantId(1), audio("0", Some(1))).unwrap();
    r.subscribe(ParticipantId(2), a, SubscriptionSpec::new(2))
        .unwrap();
    let t0 = Instant::now();
    for seq in 0..10u16 {
        r.handle_rtp(
            t0,
            ParticipantId(1),
            &Rtp::new(111, 1, seq, 0, OPUS).build(),
        );
    }
    assert_eq!(r.queued_outputs(), 4);
    assert_eq!(r.stats().dropped.get(RouterDrop::OutputQueueFull), 6);
    let seqs: Vec<u16> = rtp_to(&drain(&mut r), ParticipantId(2))
        .iter()
        .map(|p| p.seq)
        .collect();
    assert_eq!(seqs, vec![6, 7, 8, 9]);
}

#[test]
fn recycled_buffers_are_reused_and_the_pool_is_bounded() {
    let config = RouterConfig {
        max_pooled_buffers: 2,
        ..RouterConfig::default()
    };
    let mut r = room_of(2, config);
    let a = r.publish(ParticipantId(1), audio("0", Some(1))).unwrap();
    r.subscribe(ParticipantId(2), a, SubscriptionSpec::new(2))
        .unwrap();
    let t0 = Instant::now();
    r.handle_rtp(t0, ParticipantId(1), &Rtp::new(111, 1, 1, 0, OPUS).build());
    let out = r.poll_output().unwrap();
    let ptr = out.data.as_ptr();
    r.recycle(out.data);
    assert_eq!(r.pooled_buffers(), 1);
    r.handle_rtp(
        t0,
        ParticipantId(1),
        &Rtp::new(111, 1, 2, 960, OPUS).build(),
    );
    assert_eq!(r.pooled_buffers(), 0);
    assert_eq!(
        r.poll_output().unwrap().data.as_ptr(),
        ptr,
        "the same allocation"
    );
    for _ in 0..5 {
        r.recycle(Vec::with_capacity(1500));
    }
    assert_eq!(r.pooled_buffers(), 2);
}

#[test]
fn forwarded_mid_names_the_subscribers_m_line() {
    let mut r = room_of(3, RouterConfig::default());
    let v = r.publish(ParticipantId(1), video("1", None)).unwrap();
    let spec = |ssrc, mid: &str| SubscriptionSpec {
        ssrc,
        rtx_ssrc: None,
        mid: Some(mid.into()),
        payload_types: Vec::new(),
    };
    r.subscribe(ParticipantId(2), v, spec(0xB2, "3")).unwrap();
    r.subscribe(ParticipantId(3), v, spec(0xB3, "11")).unwrap();
    let pkt = Rtp::new(96, 0x51, 1, 0, VP8_KEYFRAME).mid("1").twcc(9);
    r.handle_rtp(Instant::now(), ParticipantId(1), &pkt.build());
    let out = drain(&mut r);
    let to2 = &rtp_to(&out, ParticipantId(2))[0];
    let to3 = &rtp_to(&out, ParticipantId(3))[0];
    assert_eq!(to2.mid.as_deref(), Some(&b"3"[..]));
    assert_eq!(
        to3.mid, None,
        "a MID of another length is hidden, not resized"
    );
    // each subscriber's transport starts its own numbering
    assert_eq!((to2.transport_seq, to3.transport_seq), (Some(0), Some(0)));
}

#[test]
fn control_plane_bounds_and_errors() {
    let config = RouterConfig {
        max_participants_per_room: 2,
        max_tracks_per_participant: 1,
        ..RouterConfig::default()
    };
    let mut r = room_of(2, config);
    assert_eq!(
        r.add_participant(ROOM, ParticipantId(3)),
        Err(RouterError::RoomFull { max: 2 })
    );
    assert_eq!(
        r.add_participant("x", ParticipantId(1)),
        Err(RouterError::ParticipantExists(ParticipantId(1)))
    );
    r.add_participant("other", ParticipantId(3)).unwrap();
    let a = r.publish(ParticipantId(1), audio("0", Some(5))).unwrap();
    assert!(matches!(
        r.publish(ParticipantId(1), video("1", None)),
        Err(RouterError::TooManyTracks { .. })
    ));
    assert_eq!(
        r.subscribe(ParticipantId(1), a, SubscriptionSpec::new(1)),
        Err(RouterError::OwnTrack(ParticipantId(1)))
    );
    assert_eq!(
        r.subscribe(ParticipantId(3), a, SubscriptionSpec::new(1)),
        Err(RouterError::DifferentRoom {
            subscriber: ParticipantId(3),
            track: a
        })
    );
    r.subscribe(ParticipantId(2), a, SubscriptionSpec::new(1))
        .unwrap();
    assert!(matches!(
        r.subscribe(ParticipantId(2), a, SubscriptionSpec::new(2)),
        Err(RouterError::AlreadySubscribed { .. })
    ));
    r.unsubscribe(ParticipantId(2), a).unwrap();
    assert!(matches!(
        r.unsubscribe(ParticipantId(2), a),
        Err(RouterError::NotSubscribed { .. })
    ));
    assert_eq!(
        r.unpublish(TrackId(999)),
        Err(RouterError::UnknownTrack(TrackId(999)))
    );
}

#[test]
fn drop_reason_labels_are_distinct() {
    let labels: std::collections::BTreeSet<_> =
        RouterDrop::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels.len(), RouterDrop::ALL.len());
}

#[test]
fn one_track_cache_answers_every_subscribers_nacks_rewritten_for_each() {
    let mut r = room_of(6, RouterConfig::default());
    let v = r.publish(ParticipantId(1), video("1", Some(0xA1))).unwrap();
    for s in 2..=6u32 {
        let spec = SubscriptionSpec {
            ssrc: 0xB0 + s,
            rtx_ssrc: None,
            mid: Some(format!("m{s}")),
            payload_types: Vec::new(),
        };
        r.subscribe(ParticipantId(u64::from(s)), v, spec).unwrap();
    }
    let t0 = Instant::now();
    for seq in 1..=5u16 {
        let payload = if seq == 1 { VP8_KEYFRAME } else { VP8_DELTA };
        let p = Rtp::new(96, 0xA1, seq, 3000 * u32::from(seq), payload)
            .mid("1")
            .twcc(seq);
        r.handle_rtp(t0, ParticipantId(1), &p.build());
    }
    let first = drain(&mut r);
    // one cache for the track, however many subscribe: five packets, not twenty-five
    let held = r.retransmission_cache_bytes();
    assert!(held > 0);
    assert!(held < 2 * RouterConfig::default().retransmission_cache_bytes);
    for s in 2..=6u64 {
        let sent = rtp_to(&first, ParticipantId(s));
        assert_eq!(sent.len(), 5);
        let mut nack = Vec::new();
        write_nack(0x2222, 0xB0 + s as u32, &[sent[2].seq], &mut nack);
        r.handle_rtcp(t0 + ms(30), ParticipantId(s), &nack);
        let again = rtp_to(&drain(&mut r), ParticipantId(s));
        assert_eq!(again.len(), 1, "subscriber {s}");
        let resent = &again[0];
        assert_eq!(
            (resent.ssrc, resent.seq, resent.ts, &resent.payload),
            (sent[2].ssrc, sent[2].seq, sent[2].ts, &sent[2].payload)
        );
        assert_eq!(resent.mid.as_deref(), sent[2].mid.as_deref());
    }
    assert_eq!(r.retransmission_cache_bytes(), held);
    assert_eq!(r.stats().nacks_answered, 5);
}

#[test]
fn a_payload_type_the_subscribers_answer_did_not_accept_is_not_forwarded_to_it() {
    let mut r = room_of(3, RouterConfig::default());
    let v = r.publish(ParticipantId(1), video("1", Some(0xA1))).unwrap();
    let spec = |ssrc, payload_types: Vec<u8>| SubscriptionSpec {
        ssrc,
        rtx_ssrc: None,
        mid: None,
        payload_types,
    };
    // Subscriber 2 accepted VP8 (96) only; subscriber 3 accepted VP8 and H.264 (102).
    r.subscribe(ParticipantId(2), v, spec(0xB2, vec![96]))
        .unwrap();
    r.subscribe(ParticipantId(3), v, spec(0xB3, vec![96, 102]))
        .unwrap();
    let t0 = Instant::now();
    let h264_idr = [0x65, 0x88, 0x84, 0x00];
    let p = Rtp::new(102, 0xA1, 1, 3000, &h264_idr).twcc(1);
    r.handle_rtp(t0, ParticipantId(1), &p.build());
    let out = drain(&mut r);
    assert!(
        rtp_to(&out, ParticipantId(2)).is_empty(),
        "H.264 to a VP8-only answer"
    );
    assert_eq!(rtp_to(&out, ParticipantId(3)).len(), 1);
    assert_eq!(r.stats().dropped.get(RouterDrop::PayloadTypeNotAccepted), 1);
    let p = Rtp::new(96, 0xA1, 2, 6000, VP8_KEYFRAME).twcc(2);
    r.handle_rtp(t0, ParticipantId(1), &p.build());
    let out = drain(&mut r);
    assert_eq!(
        rtp_to(&out, ParticipantId(2)).len(),
        1,
        "VP8 still reaches it"
    );
}
