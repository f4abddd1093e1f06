//! Video FEC per subscriber (RFC 5109 ULPFEC inside RFC 2198 RED): a subscriber whose
//! link loses packets gets its video in RED with ULPFEC packets numbered into its stream,
//! from which its receiver rebuilds what it lost; a clean subscriber gets plain video.
//! The numbering stays gap-free across FEC packets and encoding switches, a NACK for a FEC
//! number retransmits nothing, and FEC goes away only after the loss has.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use sluice_rtp::ulpfec::{recover, FecError};
use sluice_rtp::{write_nack, RtcpIter, RtcpPacket, RtpHeader, TwccRecorder};
use sluice_sfu::{Kind, ParticipantId, Router, RouterConfig, SubscriptionSpec, TrackId, TrackSpec};

const PUB: ParticipantId = ParticipantId(1);
const LOSSY: ParticipantId = ParticipantId(2);
const CLEAN: ParticipantId = ParticipantId(3);
const LOSSY_SSRC: u32 = 0xB0;
const CLEAN_SSRC: u32 = 0xC0;
const PT_VP8: u8 = 96;
const PT_RED: u8 = 116;
const PT_RED_RTX: u8 = 117;
const PT_ULPFEC: u8 = 118;

/// One simulcast encoding as the publisher sends it: three packets per frame.
struct Encoding {
    rid: &'static str,
    ssrc: u32,
    seq: u16,
    ts: u32,
    picture_id: u16,
    key_wanted: bool,
}

impl Encoding {
    fn frame(&mut self) -> Vec<Vec<u8>> {
        self.ts = self.ts.wrapping_add(3000);
        self.picture_id = (self.picture_id + 1) & 0x7FFF;
        let key = std::mem::take(&mut self.key_wanted);
        (0..3)
            .map(|i| {
                self.seq = self.seq.wrapping_add(1);
                let mut payload = vec![
                    if i == 0 { 0x90 } else { 0x80 },
                    0x80,
                    0x80 | (self.picture_id >> 8) as u8,
                    self.picture_id as u8,
                ];
                if i == 0 {
                    payload.extend_from_slice(if key {
                        &[0x00, 0x9D, 0x01, 0x2A]
                    } else {
                        &[0x01, 0x11, 0x22, 0x33]
                    });
                }
                let len = 200 + usize::from(self.seq) * 37 % 900;
                payload.extend((0..len).map(|b| (b as u8) ^ (self.seq as u8)));
                Rtp::new(PT_VP8, self.ssrc, self.seq, self.ts, &payload)
                    .mid("1")
                    .ext(5, self.rid.as_bytes())
                    .twcc(0)
                    .build()
            })
            .collect()
    }
}

/// What one subscriber's side of the network did with the packets sent to it.
#[derive(Default)]
struct Receiver {
    recorder: TwccRecorder,
    /// Every RTP packet sent to it, in order, with whether the network dropped it.
    sent: Vec<(Vec<u8>, bool)>,
}

struct Call {
    router: Router,
    track: TrackId,
    now: Instant,
    encodings: [Encoding; 2],
    lossy: Receiver,
    clean: Receiver,
    /// The lossy link drops every `drop_every`-th packet (0: none).
    drop_every: usize,
    next_frame: Instant,
    next_feedback: Instant,
}

impl Call {
    fn new() -> Self {
        let now = Instant::now();
        let mut router = Router::new(RouterConfig {
            // the default, `media.video_fec: true`
            video_fec_loss_threshold: Some(0.03),
            ..RouterConfig::default()
        });
        for p in [PUB, LOSSY, CLEAN] {
            router.add_participant("room", p).unwrap();
        }
        let track = router
            .publish(
                PUB,
                TrackSpec {
                    rids: vec!["q".into(), "h".into()],
                    ..TrackSpec::new("1", Kind::Video)
                },
            )
            .unwrap();
        // both accepted RED, its RTX and ULPFEC, as Chromium's answers do
        let accepts = |ssrc: u32| SubscriptionSpec {
            rtx_ssrc: Some(ssrc + 1),
            payload_types: vec![PT_VP8, 98, 102, PT_RED, PT_ULPFEC, PT_RED_RTX],
            ..SubscriptionSpec::new(ssrc)
        };
        router.subscribe(LOSSY, track, accepts(LOSSY_SSRC)).unwrap();
        router.subscribe(CLEAN, track, accepts(CLEAN_SSRC)).unwrap();
        let encoding = |rid, ssrc, seq, ts| Encoding {
            rid,
            ssrc,
            seq,
            ts,
            picture_id: 0,
            key_wanted: true,
        };
        Self {
            router,
            track,
            now,
            encodings: [
                encoding("q", 0x100, 100, 10_000),
                encoding("h", 0x200, 65_000, 4_000_000_000),
            ],
            lossy: Receiver::default(),
            clean: Receiver::default(),
            drop_every: 9,
            next_frame: now,
            next_feedback: now,
        }
    }

    fn take_outputs(&mut self) {
        let outputs: Vec<_> = run_timers(&mut self.router, self.now)
            .into_iter()
            .map(|(_, o)| o)
            .chain(drain(&mut self.router))
            .collect();
        for out in outputs {
            match (out.to, out.kind) {
                (PUB, sluice_sfu::OutputKind::Rtcp) => {
                    for packet in RtcpIter::new(&out.data).filter_map(Result::ok) {
                        if let RtcpPacket::Pli { media_ssrc, .. } = packet {
                            for e in &mut self.encodings {
                                e.key_wanted |= e.ssrc == media_ssrc;
                            }
                        }
                    }
                }
                (to, sluice_sfu::OutputKind::Rtp) if to == LOSSY || to == CLEAN => {
                    let drop_every = if to == LOSSY { self.drop_every } else { 0 };
                    let rx = if to == LOSSY {
                        &mut self.lossy
                    } else {
                        &mut self.clean
                    };
                    let dropped = drop_every > 0 && rx.sent.len() % drop_every == drop_every / 2;
                    if !dropped {
                        if let Some(seq) = RtpView::of(&out.data).transport_seq {
                            rx.recorder.record(seq, self.now);
                        }
                    }
                    rx.sent.push((out.data, dropped));
                }
                _ => {}
            }
        }
    }

    /// Runs `duration` of virtual time in 1 ms steps: 30 frames/s on both encodings,
    /// transport-cc feedback from both subscribers every 50 ms.
    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.now += Duration::from_millis(1);
            if self.now >= self.next_frame {
                self.next_frame += Duration::from_micros(33_333);
                let packets: Vec<Vec<u8>> = self
                    .encodings
                    .iter_mut()
                    .flat_map(Encoding::frame)
                    .collect();
                for p in packets {
                    self.router.handle_rtp(self.now, PUB, &p);
                }
            }
            self.take_outputs();
            if self.now >= self.next_feedback {
                self.next_feedback += Duration::from_millis(50);
                for (id, ssrc) in [(LOSSY, LOSSY_SSRC), (CLEAN, CLEAN_SSRC)] {
                    let rx = if id == LOSSY {
                        &mut self.lossy
                    } else {
                        &mut self.clean
                    };
                    let mut feedback = Vec::new();
                    let mut all = Vec::new();
                    while rx.recorder.build_feedback(0xFEED, ssrc, &mut feedback) {
                        all.push(std::mem::take(&mut feedback));
                    }
                    for fb in all {
                        self.router.handle_rtcp(self.now, id, &fb);
                    }
                }
                self.take_outputs();
            }
        }
    }

    fn fec_interval(&self, id: ParticipantId) -> u8 {
        self.router
            .subscriber_report(id)
            .unwrap()
            .video_fec_interval
    }
}

/// The packet a libwebrtc receiver hands its FEC decoder for a media packet in RED: the
/// block header removed, the block's payload type in the RTP header.
fn unwrap_red(packet: &[u8]) -> Vec<u8> {
    let h = RtpHeader::parse(packet).unwrap();
    let at = h.header_len();
    let mut out = packet[..at].to_vec();
    out[1] = (out[1] & 0x80) | (packet[at] & 0x7F);
    out.extend_from_slice(&packet[at + 1..]);
    out
}

fn is_fec(view: &RtpView) -> bool {
    view.pt == PT_RED && view.payload.first() == Some(&PT_ULPFEC)
}

#[test]
fn a_lossy_subscriber_gets_red_and_fec_that_rebuild_its_losses_and_a_clean_one_plain_video() {
    let mut call = Call::new();
    call.run(Duration::from_secs(6));
    // an encoding switch down and up again while FEC is on
    call.router.set_max_layer(LOSSY, call.track, 0).unwrap();
    call.run(Duration::from_secs(2));
    call.router.set_max_layer(LOSSY, call.track, 1).unwrap();
    call.run(Duration::from_secs(4));

    let interval = call.fec_interval(LOSSY);
    assert!((5..=10).contains(&interval), "FEC interval {interval}");
    assert_eq!(call.fec_interval(CLEAN), 0);
    let stats = call.router.stats();
    assert!(stats.fec_packets_sent > 50, "{stats:?}");

    // the clean subscriber: plain VP8 only
    let clean: Vec<RtpView> = call
        .clean
        .sent
        .iter()
        .map(|(p, _)| RtpView::of(p))
        .collect();
    assert!(clean.len() > 500);
    assert!(clean
        .iter()
        .filter(|v| v.ssrc == CLEAN_SSRC)
        .all(|v| v.pt == PT_VP8));

    // the lossy one: RED from the first FEC on, FEC packets among the media
    let media: Vec<(RtpView, &Vec<u8>, bool)> = call
        .lossy
        .sent
        .iter()
        .map(|(p, dropped)| (RtpView::of(p), p, *dropped))
        .filter(|(v, _, _)| v.ssrc == LOSSY_SSRC)
        .collect();
    let first_fec = media.iter().position(|(v, _, _)| is_fec(v)).unwrap();
    let after = &media[first_fec..];
    assert!(after.iter().all(|(v, _, _)| v.pt == PT_RED), "all in RED");
    let fec_count = after.iter().filter(|(v, _, _)| is_fec(v)).count();
    let media_count = after.len() - fec_count;
    assert!(
        media_count >= fec_count * 5 - 5 && media_count <= fec_count * 10 + 10,
        "{media_count} media packets, {fec_count} FEC packets"
    );

    // one gap-free stream: every number once, none missing, across FEC and switches
    let mut seqs: Vec<u16> = media.iter().map(|(v, _, _)| v.seq).collect();
    let first = seqs[0];
    seqs.iter_mut().for_each(|s| *s = s.wrapping_sub(first));
    seqs.sort_unstable();
    assert!(
        seqs.iter().enumerate().all(|(i, &s)| usize::from(s) == i),
        "contiguous sequence numbers"
    );
    assert!(call.router.stats().forwarded_packets > 0);
    assert!(
        call.router.forwarded_layer(LOSSY, call.track) == Some(1),
        "switched back up"
    );

    // the receiver: rebuilds each packet that was the only one lost of its FEC group,
    // byte for byte, from the packets it received (unwrapped from RED)
    let originals: HashMap<u16, Vec<u8>> = after
        .iter()
        .filter(|(v, _, _)| !is_fec(v))
        .map(|(v, p, _)| (v.seq, unwrap_red(p)))
        .collect();
    let mut received: Vec<Vec<u8>> = Vec::new();
    let (mut recovered, mut unrecoverable) = (0, 0);
    for (view, packet, dropped) in after {
        if *dropped {
            continue;
        }
        if !is_fec(view) {
            received.push(unwrap_red(packet));
            continue;
        }
        let window: Vec<&[u8]> = received.iter().rev().take(64).map(Vec::as_slice).collect();
        let mut out = Vec::new();
        match recover(&mut out, &view.payload[1..], LOSSY_SSRC, &window) {
            Ok(seq) => {
                assert_eq!(Some(&out), originals.get(&seq), "packet {seq} rebuilt");
                assert!(
                    media.iter().any(|(v, _, d)| v.seq == seq && *d),
                    "{seq} was lost"
                );
                recovered += 1;
                received.push(out);
            }
            Err(FecError::NotOneMissing) => unrecoverable += 1,
            Err(e) => panic!("FEC packet {} does not fit what was sent: {e}", view.seq),
        }
    }
    assert!(recovered >= 20, "{recovered} rebuilt, {unrecoverable} not");
}

#[test]
fn a_nack_for_a_fec_number_retransmits_nothing_and_one_for_media_gets_rtx_of_red() {
    let mut call = Call::new();
    call.run(Duration::from_secs(5));
    assert!(call.fec_interval(LOSSY) > 0);
    let views: Vec<RtpView> = call
        .lossy
        .sent
        .iter()
        .map(|(p, _)| RtpView::of(p))
        .collect();
    let fec = views.iter().rev().find(|v| is_fec(v)).unwrap().seq;
    let (media_seq, media_packet) = call
        .lossy
        .sent
        .iter()
        .rev()
        .map(|(p, _)| (RtpView::of(p), p))
        .find(|(v, _)| v.ssrc == LOSSY_SSRC && v.pt == PT_RED && !is_fec(v))
        .map(|(v, p)| (v.seq, p.clone()))
        .unwrap();
    let missed_before = call.router.stats().nacks_missed;
    let sent_before = call.lossy.sent.len();

    let mut nack = Vec::new();
    write_nack(0xFEED, LOSSY_SSRC, &[fec], &mut nack);
    call.router.handle_rtcp(call.now, LOSSY, &nack);
    call.take_outputs();
    call.now += Duration::from_millis(20);
    call.take_outputs();
    let resent: Vec<RtpView> = call.lossy.sent[sent_before..]
        .iter()
        .map(|(p, _)| RtpView::of(p))
        .filter(|v| v.ssrc == LOSSY_SSRC + 1 && v.payload.len() >= 2)
        .collect();
    // no media packet for a FEC number: an empty RTX packet of that number (the
    // receiver takes it as padding and stops asking)
    assert_eq!(resent.len(), 1, "one answer");
    assert_eq!(resent[0].pt, PT_RED_RTX);
    assert_eq!(resent[0].payload, fec.to_be_bytes());
    assert_eq!(call.router.stats().nacks_missed, missed_before);
    assert_eq!(call.router.stats().nacks_for_fec, 1);

    let sent_before = call.lossy.sent.len();
    let mut nack = Vec::new();
    write_nack(0xFEED, LOSSY_SSRC, &[media_seq], &mut nack);
    call.router.handle_rtcp(call.now, LOSSY, &nack);
    call.take_outputs();
    call.now += Duration::from_millis(20);
    call.take_outputs();
    let rtx: Vec<RtpView> = call.lossy.sent[sent_before..]
        .iter()
        .map(|(p, _)| RtpView::of(p))
        .filter(|v| v.ssrc == LOSSY_SSRC + 1 && !v.payload.is_empty())
        .collect();
    assert_eq!(rtx.len(), 1, "one retransmission");
    // RTX of the packet as sent: in RED, with its original sequence number first
    assert_eq!(rtx[0].pt, PT_RED_RTX);
    assert_eq!(rtx[0].payload[..2], media_seq.to_be_bytes());
    let original = RtpView::of(&media_packet);
    assert_eq!(rtx[0].payload[2..], original.payload[..]);
    assert_eq!(original.payload[0], PT_VP8);
}

#[test]
fn fec_stays_through_a_short_clean_spell_and_goes_after_a_long_one() {
    let mut call = Call::new();
    call.run(Duration::from_secs(5));
    let interval = call.fec_interval(LOSSY);
    assert!(interval > 0);
    call.drop_every = 0;
    call.run(Duration::from_secs(6));
    assert_eq!(
        call.fec_interval(LOSSY),
        interval,
        "kept through 6 s without loss"
    );
    call.run(Duration::from_secs(12));
    assert_eq!(call.fec_interval(LOSSY), 0, "off after a long clean spell");
    let fec_before = call.router.stats().fec_packets_sent;
    let sent_before = call.lossy.sent.len();
    call.run(Duration::from_secs(1));
    assert_eq!(call.router.stats().fec_packets_sent, fec_before);
    let last: Vec<RtpView> = call.lossy.sent[sent_before..]
        .iter()
        .map(|(p, _)| RtpView::of(p))
        .filter(|v| v.ssrc == LOSSY_SSRC)
        .collect();
    assert!(
        !last.is_empty() && last.iter().all(|v| v.pt == PT_VP8),
        "plain VP8 again"
    );
}
