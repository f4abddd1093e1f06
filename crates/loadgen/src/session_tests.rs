use std::time::{Duration, Instant};

use sluice_rtp::{write_pli, RtcpIter, RtcpPacket, RtpHeader};
use sluice_signal::sdp::Kind;

use super::*;
use crate::remote::RemoteTrack;
use crate::stats::MediaKind;

const UNIX_US: u64 = 1_700_000_000_000_000;

fn config(audio: Option<u32>, video: Option<(u32, u32)>, rtcp: u32) -> SessionConfig {
    SessionConfig {
        audio_ssrc: audio,
        video_ssrcs: video,
        rtcp_ssrc: rtcp,
        video_bitrate_bps: 300_000,
        video_fps: 20,
        keyframe_interval: Duration::from_secs(100),
        rtcp_interval: Duration::from_secs(1),
        nack_interval: Duration::from_millis(20),
        decrypt_every: 1,
    }
}

fn publisher(now: Instant) -> MediaSession {
    MediaSession::new(config(Some(11), Some((22, 23)), 99), "p-ada", now, UNIX_US)
}

fn subscriber(now: Instant) -> MediaSession {
    subscribed(MediaSession::new(
        config(None, None, 77),
        "p-bo",
        now,
        UNIX_US,
    ))
}

/// `s` subscribed to p-ada's audio (SSRC 11) and video (22, RTX 23).
fn subscribed(mut s: MediaSession) -> MediaSession {
    s.set_remote_tracks(&[
        RemoteTrack {
            mid: "2".into(),
            kind: Kind::Audio,
            participant_id: "p-ada".into(),
            ssrc: 11,
            rtx_ssrc: None,
        },
        RemoteTrack {
            mid: "3".into(),
            kind: Kind::Video,
            participant_id: "p-ada".into(),
            ssrc: 22,
            rtx_ssrc: Some(23),
        },
    ]);
    s
}

/// Runs the publisher for `duration`, delivering its RTP to the subscriber `delay` later
/// unless `drop` says otherwise; returns the subscriber's RTCP.
fn run(
    a: &mut MediaSession,
    b: &mut MediaSession,
    from: Instant,
    duration: Duration,
    delay: Duration,
    mut drop: impl FnMut(&RtpHeader) -> bool,
) -> Vec<Vec<u8>> {
    let mut now = from;
    let mut rtcp = Vec::new();
    while now < from + duration {
        now = a.poll_timeout().min(b.poll_timeout());
        a.handle_timeout(now);
        b.handle_timeout(now);
        while let Some(out) = a.poll_output() {
            if let Outgoing::Rtp(p) = out {
                let h = RtpHeader::parse(&p).unwrap();
                if !drop(&h) {
                    b.handle_rtp(now + delay, &p);
                }
            }
        }
        while let Some(out) = b.poll_output() {
            if let Outgoing::Rtcp(p) = out {
                rtcp.push(p);
            }
        }
    }
    rtcp
}

#[test]
fn subscriber_attributes_packets_and_measures_delay() {
    let now = Instant::now();
    let (mut a, mut b) = (publisher(now), subscriber(now));
    let rtcp = run(
        &mut a,
        &mut b,
        now,
        Duration::from_secs(2),
        Duration::from_millis(30),
        |_| false,
    );
    let mut stats = ClientStats::default();
    b.fill_stats(&mut stats);
    let audio = &stats.remote[&("p-ada".to_owned(), MediaKind::Audio)];
    assert!(
        (99..=101).contains(&audio.packets),
        "{} audio packets in 2 s",
        audio.packets
    );
    assert_eq!(audio.lost, 0);
    let p50 = audio.delay.quantile(0.5).unwrap();
    assert!(
        p50 >= Duration::from_millis(29) && p50 <= Duration::from_millis(33),
        "{p50:?}"
    );
    let video = &stats.remote[&("p-ada".to_owned(), MediaKind::Video)];
    assert_eq!(video.keyframes, 1);
    assert_eq!(video.misattributed, 0);
    assert!(
        video.bytes > 2 * 300_000 / 8 * 9 / 10,
        "{} video bytes",
        video.bytes
    );
    // receiver reports name both streams
    let blocks: Vec<u32> = rtcp
        .iter()
        .flat_map(|d| RtcpIter::new(d).filter_map(Result::ok).collect::<Vec<_>>())
        .filter_map(|p| match p {
            RtcpPacket::ReceiverReport(rr) => {
                Some(rr.blocks.iter().map(|b| b.ssrc).collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect();
    assert!(blocks.contains(&11) && blocks.contains(&22), "{blocks:?}");
}

#[test]
fn lost_video_packet_is_nacked_and_recovered_through_rtx() {
    let now = Instant::now();
    let (mut a, mut b) = (publisher(now), subscriber(now));
    let mut dropped = None;
    let rtcp = run(
        &mut a,
        &mut b,
        now,
        Duration::from_millis(500),
        Duration::ZERO,
        |h| {
            if h.ssrc() == 22 && h.sequence_number() % 7 == 3 && dropped.is_none() {
                dropped = Some(h.sequence_number());
                true
            } else {
                false
            }
        },
    );
    let dropped = dropped.expect("a video packet was dropped");
    let mut stats = ClientStats::default();
    b.fill_stats(&mut stats);
    assert_eq!(
        stats.remote[&("p-ada".to_owned(), MediaKind::Video)].lost,
        1
    );

    let nacks: Vec<Vec<u8>> = rtcp
        .into_iter()
        .filter(|d| RtcpIter::new(d).any(|p| matches!(p, Ok(RtcpPacket::Nack(_)))))
        .collect();
    let first = nacks.first().expect("the subscriber NACKed");
    let named: Vec<u16> = RtcpIter::new(first)
        .filter_map(|p| match p {
            Ok(RtcpPacket::Nack(n)) => Some(n.lost().collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(named, vec![dropped]);

    a.handle_rtcp(now, first);
    let Some(Outgoing::Rtp(rtx)) = a.poll_output() else {
        panic!("no RTX")
    };
    let h = RtpHeader::parse(&rtx).unwrap();
    assert_eq!((h.ssrc(), h.payload_type()), (23, 97));
    assert_eq!(h.payload().get(..2), Some(&dropped.to_be_bytes()[..]));
    b.handle_rtp(now + Duration::from_millis(600), &rtx);
    b.fill_stats(&mut stats);
    let video = &stats.remote[&("p-ada".to_owned(), MediaKind::Video)];
    assert_eq!((video.lost, video.rtx_packets), (0, 1));
    let mut sent = ClientStats::default();
    a.fill_stats(&mut sent);
    assert_eq!((sent.sent.nacks_received, sent.sent.rtx_packets), (1, 1));
}

#[test]
fn pli_for_our_video_forces_a_keyframe() {
    let now = Instant::now();
    let (mut a, mut b) = (publisher(now), subscriber(now));
    run(
        &mut a,
        &mut b,
        now,
        Duration::from_millis(300),
        Duration::ZERO,
        |_| false,
    );
    let mut pli = Vec::new();
    write_pli(77, 22, &mut pli);
    a.handle_rtcp(now, &pli);
    let later = now + Duration::from_millis(300);
    run(
        &mut a,
        &mut b,
        later,
        Duration::from_millis(100),
        Duration::ZERO,
        |_| false,
    );
    let mut stats = ClientStats::default();
    b.fill_stats(&mut stats);
    assert_eq!(
        stats.remote[&("p-ada".to_owned(), MediaKind::Video)].keyframes,
        2
    );
    a.fill_stats(&mut stats);
    assert_eq!((stats.sent.keyframes, stats.sent.keyframe_requests), (2, 1));
}

#[test]
fn packets_from_unknown_ssrcs_are_counted_not_attributed() {
    let now = Instant::now();
    let mut b = subscriber(now);
    let mut other = MediaSession::new(config(Some(555), None, 1), "p-x", now, UNIX_US);
    other.handle_timeout(now);
    let Some(Outgoing::Rtp(p)) = other.poll_output() else {
        panic!()
    };
    assert!(!b.knows_ssrc(555));
    b.handle_rtp(now, &p);
    b.on_decrypt_failure(555);
    b.on_decrypt_failure(11);
    let mut stats = ClientStats::default();
    b.fill_stats(&mut stats);
    assert_eq!(stats.unknown_ssrc_packets, 2);
    assert_eq!(stats.decrypt_failures, 1);
    assert_eq!(stats.packets_received(), 0);
}

#[test]
fn publisher_sends_fifty_audio_packets_per_second() {
    let now = Instant::now();
    let mut a = MediaSession::new(config(Some(11), None, 1), "p-a", now, UNIX_US);
    let mut t = now;
    let mut audio = 0;
    while t < now + Duration::from_secs(1) {
        a.handle_timeout(t);
        while let Some(out) = a.poll_output() {
            if matches!(out, Outgoing::Rtp(_)) {
                audio += 1;
            }
        }
        t = a.poll_timeout();
    }
    assert_eq!(audio, 50);
}

#[test]
fn video_that_starts_without_a_keyframe_is_pli_requested_until_one_arrives() {
    let now = Instant::now();
    let (mut a, mut b) = (publisher(now), subscriber(now));
    // the subscriber misses the first 300 ms (and so the first keyframe)
    run(
        &mut a,
        &mut b,
        now,
        Duration::from_millis(300),
        Duration::ZERO,
        |_| true,
    );
    let rtcp = run(
        &mut a,
        &mut b,
        now + Duration::from_millis(300),
        Duration::from_millis(1200),
        Duration::ZERO,
        |_| false,
    );
    let plis: Vec<u32> = rtcp
        .iter()
        .flat_map(|d| RtcpIter::new(d).filter_map(Result::ok).collect::<Vec<_>>())
        .filter_map(|p| match p {
            RtcpPacket::Pli { media_ssrc, .. } => Some(media_ssrc),
            _ => None,
        })
        .collect();
    // one PLI per 500 ms while no keyframe came (nobody relays them to the publisher here)
    assert_eq!(plis, vec![22, 22, 22]);
    // once relayed, the publisher's keyframe ends the requests
    let mut pli = Vec::new();
    write_pli(77, 22, &mut pli);
    a.handle_rtcp(now, &pli);
    let later = now + Duration::from_millis(1600);
    let rtcp = run(
        &mut a,
        &mut b,
        later,
        Duration::from_secs(2),
        Duration::ZERO,
        |_| false,
    );
    assert!(!rtcp
        .iter()
        .any(|d| RtcpIter::new(d).any(|p| matches!(p, Ok(RtcpPacket::Pli { .. })))));
    let mut stats = ClientStats::default();
    b.fill_stats(&mut stats);
    let video = &stats.remote[&("p-ada".to_owned(), MediaKind::Video)];
    assert_eq!((video.keyframes, video.plis_sent), (1, 3));
}

fn sampling_subscriber(now: Instant, every: u32) -> MediaSession {
    subscribed(MediaSession::new(
        SessionConfig {
            decrypt_every: every,
            ..config(None, None, 77)
        },
        "p-bo",
        now,
        UNIX_US,
    ))
}

/// The clear header a plain RTP packet would show once protected (no SRTP tag here).
fn clear(packet: &[u8]) -> crate::clear::ClearRtp {
    crate::clear::ClearRtp::parse(packet, 0).unwrap()
}

#[test]
fn sampling_decrypts_one_packet_in_n_per_stream() {
    let now = Instant::now();
    let mut b = sampling_subscriber(now, 4);
    let header = |ssrc: u32, seq: u16| crate::clear::ClearRtp {
        ssrc,
        sequence_number: seq,
        timestamp: 0,
        payload_type: 111,
        marker: false,
        payload_len: 100,
    };
    let actions: Vec<_> = (0..9).map(|i| b.rtp_action(&header(11, i))).collect();
    use crate::transport::RtpAction::{Count, Decrypt, Drop};
    assert_eq!(
        actions,
        [Decrypt, Count, Count, Count, Decrypt, Count, Count, Count, Decrypt]
    );
    assert_eq!(b.rtp_action(&header(999, 1)), Drop);
    // RTX carries its original sequence number encrypted: always decrypted.
    assert_eq!(b.rtp_action(&header(23, 1)), Decrypt);
    assert_eq!(b.rtp_action(&header(23, 2)), Decrypt);
    // Video that has not shown a keyframe yet is decrypted until it does.
    assert_eq!(b.rtp_action(&header(22, 1)), Decrypt);
    assert_eq!(b.rtp_action(&header(22, 2)), Decrypt);
}

#[test]
fn sampling_forces_a_decryption_before_the_rollover_guess_could_fail() {
    let now = Instant::now();
    let mut b = sampling_subscriber(now, crate::MAX_DECRYPT_EVERY);
    let header = |seq: u16| crate::clear::ClearRtp {
        ssrc: 11,
        sequence_number: seq,
        timestamp: 0,
        payload_type: 111,
        marker: false,
        payload_len: 100,
    };
    use crate::transport::RtpAction::{Count, Decrypt};
    assert_eq!(b.rtp_action(&header(0)), Decrypt);
    // a burst of loss: the next packet is far from the last decrypted one
    assert_eq!(b.rtp_action(&header(10)), Count);
    assert_eq!(
        b.rtp_action(&header(MAX_UNDECRYPTED_SEQUENCE_GAP + 1)),
        Decrypt
    );
}

#[test]
fn clear_header_packets_count_loss_without_delay() {
    let now = Instant::now();
    let (mut a, mut b) = (publisher(now), sampling_subscriber(now, 8));
    let mut t = now;
    let mut dropped = 0;
    while t < now + Duration::from_secs(2) {
        t = a.poll_timeout();
        a.handle_timeout(t);
        while let Some(out) = a.poll_output() {
            let Outgoing::Rtp(p) = out else { continue };
            let c = clear(&p);
            if c.ssrc == 11 && c.sequence_number % 10 == 7 {
                dropped += 1;
                continue;
            }
            match b.rtp_action(&c) {
                crate::transport::RtpAction::Decrypt => b.handle_rtp(t, &p),
                crate::transport::RtpAction::Count => b.handle_clear_rtp(t, &c),
                crate::transport::RtpAction::Drop => panic!("known ssrc dropped"),
            }
        }
        while b.poll_output().is_some() {}
    }
    let mut stats = ClientStats::default();
    b.fill_stats(&mut stats);
    let audio = &stats.remote[&("p-ada".to_owned(), MediaKind::Audio)];
    assert!(dropped >= 9, "{dropped}");
    assert_eq!(audio.lost, dropped);
    assert!((89..=92).contains(&audio.packets), "{}", audio.packets);
    // one in eight decrypted, and only those give a delay
    assert_eq!(audio.decrypted, audio.packets.div_ceil(8));
    assert_eq!(audio.delay.count(), audio.decrypted);
    let video = &stats.remote[&("p-ada".to_owned(), MediaKind::Video)];
    assert_eq!(video.keyframes, 1);
    assert_eq!(video.lost, 0);
    assert!(video.decrypted < video.packets, "{video:?}");
}
