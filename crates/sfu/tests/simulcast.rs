//! Simulcast: a publisher's camera sent as three encodings (RIDs "q", "h", "f", lowest
//! quality first), each subscriber fed one of them as a single continuous stream.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice_rtp::{RtcpIter, RtcpPacket, Vp8Descriptor};
use sluice_sfu::{
    Kind, OutputKind, ParticipantId, Router, RouterConfig, RouterDrop, SubscriptionSpec, TrackId,
    TrackSpec,
};

const ROOM: &str = "room";
const PUB: ParticipantId = ParticipantId(1);
const SUB: ParticipantId = ParticipantId(2);
const SUB_SSRC: u32 = 0xB0B0;
const EXT_RID: u8 = 5;
const EXT_REPAIRED_RID: u8 = 6;

/// What the publisher sends of one encoding: its own SSRC, sequence numbers, timestamps
/// and picture numbering, as browsers do.
struct Encoding {
    rid: &'static str,
    ssrc: u32,
    seq: u16,
    ts: u32,
    picture_id: u16,
    tl0: u8,
}

impl Encoding {
    fn new(rid: &'static str, ssrc: u32, seq: u16, ts: u32, picture_id: u16) -> Self {
        Self {
            rid,
            ssrc,
            seq,
            ts,
            picture_id,
            tl0: (picture_id % 200) as u8,
        }
    }

    /// The next frame, one packet: VP8 descriptor with a 15-bit PictureID and TL0PICIDX.
    fn frame(&mut self, key: bool) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(3000);
        self.picture_id = (self.picture_id + 1) & 0x7FFF;
        self.tl0 = self.tl0.wrapping_add(1);
        let payload = [
            0x90,
            0xC0,
            0x80 | (self.picture_id >> 8) as u8,
            self.picture_id as u8,
            self.tl0,
            if key { 0x00 } else { 0x01 },
            0x9D,
            0x01,
            0x2A,
        ];
        Rtp::new(96, self.ssrc, self.seq, self.ts, &payload)
            .mid("1")
            .ext(EXT_RID, self.rid.as_bytes())
            .build()
    }
}

fn encodings() -> [Encoding; 3] {
    [
        Encoding::new("q", 0x100, 100, 10_000, 10),
        Encoding::new("h", 0x200, 30_000, 2_000_000_000, 5_000),
        Encoding::new("f", 0x300, 65_000, 4_000_000_000, 32_760),
    ]
}

fn setup() -> (Router, TrackId) {
    let mut r = Router::new(RouterConfig::default());
    r.add_participant(ROOM, PUB).unwrap();
    r.add_participant(ROOM, SUB).unwrap();
    let spec = TrackSpec {
        rids: vec!["q".into(), "h".into(), "f".into()],
        ..TrackSpec::new("1", Kind::Video)
    };
    let track = r.publish(PUB, spec).unwrap();
    r.subscribe(SUB, track, SubscriptionSpec::new(SUB_SSRC))
        .unwrap();
    (r, track)
}

/// Forwarded packets with their picture id.
struct Out {
    seq: u16,
    ts: u32,
    picture_id: u16,
    tl0: u8,
    key: bool,
}

fn forwarded(r: &mut Router) -> Vec<Out> {
    rtp_to(&drain(r), SUB)
        .into_iter()
        .map(|v| {
            assert_eq!(v.ssrc, SUB_SSRC);
            let d = Vp8Descriptor::parse(&v.payload).unwrap();
            Out {
                seq: v.seq,
                ts: v.ts,
                picture_id: d.picture_id.unwrap().0,
                tl0: d.tl0_pic_idx.unwrap(),
                key: v.payload.get(5) == Some(&0),
            }
        })
        .collect()
}

fn plis_for(outputs: &[sluice_sfu::Output]) -> Vec<u32> {
    outputs
        .iter()
        .filter(|o| o.to == PUB && o.kind == OutputKind::Rtcp)
        .flat_map(|o| {
            RtcpIter::new(&o.data)
                .filter_map(Result::ok)
                .collect::<Vec<_>>()
        })
        .filter_map(|p| match p {
            RtcpPacket::Pli { media_ssrc, .. } => Some(media_ssrc),
            _ => None,
        })
        .collect()
}

/// Checks that the packets form one stream: every sequence number follows the one
/// before, timestamps never go back, picture ids and TL0PICIDX count up by one per frame.
fn assert_one_stream(out: &[Out]) {
    for pair in out.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!(b.seq, a.seq.wrapping_add(1), "contiguous sequence numbers");
        let step = b.ts.wrapping_sub(a.ts);
        assert!(step > 0 && step < 0x8000_0000, "timestamps move forward");
        assert_eq!(
            b.picture_id,
            (a.picture_id + 1) & 0x7FFF,
            "picture ids continue"
        );
        assert_eq!(b.tl0, a.tl0.wrapping_add(1), "TL0PICIDX continues");
    }
}

/// All three encodings send one frame every 33 ms; `key` says which send keyframes.
fn send_frames(
    r: &mut Router,
    enc: &mut [Encoding; 3],
    now: &mut Instant,
    frames: usize,
    key: [bool; 3],
    live: [bool; 3],
) -> Vec<Out> {
    let mut out = Vec::new();
    for _ in 0..frames {
        *now += Duration::from_millis(33);
        for (i, e) in enc.iter_mut().enumerate() {
            if live[i] {
                let p = e.frame(key[i]);
                r.handle_rtp(*now, PUB, &p);
            }
        }
        out.extend(forwarded(r));
        run_timers(r, *now);
    }
    out
}

#[test]
fn the_top_encoding_is_forwarded_from_its_first_keyframe_and_switches_only_on_keyframes() {
    let (mut r, track) = setup();
    let mut enc = encodings();
    let mut now = Instant::now();
    let mut all = Vec::new();

    // deltas only: nothing can be decoded, nothing is forwarded
    let out = send_frames(&mut r, &mut enc, &mut now, 5, [false; 3], [true; 3]);
    assert!(out.is_empty());
    assert!(r.stats().dropped.get(RouterDrop::AwaitingKeyframe) > 0);

    // a keyframe on "f": the subscriber gets the full encoding from it on
    let out = send_frames(&mut r, &mut enc, &mut now, 1, [true, true, true], [true; 3]);
    assert_eq!(out.len(), 1);
    assert!(out[0].key);
    all.extend(out);
    all.extend(send_frames(
        &mut r, &mut enc, &mut now, 10, [false; 3], [true; 3],
    ));
    assert_eq!(r.forwarded_layer(SUB, track), Some(2));

    // the page shows a thumbnail: the lowest encoding is wanted, requested with a PLI
    r.set_max_layer(SUB, track, 0).unwrap();
    let out = drain(&mut r);
    let mut plis = plis_for(&out);
    plis.extend(plis_for(
        &run_timers(&mut r, now + Duration::from_millis(1))
            .into_iter()
            .map(|(_, o)| o)
            .collect::<Vec<_>>(),
    ));
    assert!(plis.contains(&0x100), "PLI for the q encoding: {plis:x?}");
    // until its keyframe arrives, "f" keeps flowing (no freeze)
    let out = send_frames(&mut r, &mut enc, &mut now, 5, [false; 3], [true; 3]);
    assert_eq!(out.len(), 5);
    assert_eq!(r.forwarded_layer(SUB, track), Some(2));
    all.extend(out);
    // a keyframe of "h" changes nothing: it is not the target
    all.extend(send_frames(
        &mut r,
        &mut enc,
        &mut now,
        1,
        [false, true, false],
        [true; 3],
    ));
    assert_eq!(r.forwarded_layer(SUB, track), Some(2));
    // the keyframe of "q": switched
    let out = send_frames(
        &mut r,
        &mut enc,
        &mut now,
        1,
        [true, false, false],
        [true; 3],
    );
    assert_eq!(out.len(), 1);
    assert!(out[0].key);
    assert_eq!(r.forwarded_layer(SUB, track), Some(0));
    all.extend(out);
    all.extend(send_frames(
        &mut r, &mut enc, &mut now, 10, [false; 3], [true; 3],
    ));

    // and back up
    r.set_max_layer(SUB, track, 2).unwrap();
    all.extend(send_frames(
        &mut r, &mut enc, &mut now, 3, [false; 3], [true; 3],
    ));
    assert_eq!(r.forwarded_layer(SUB, track), Some(0));
    // in that frame "q" (sent first) still goes out, then the keyframe of "f"
    let out = send_frames(
        &mut r,
        &mut enc,
        &mut now,
        1,
        [false, false, true],
        [true; 3],
    );
    assert_eq!(out.len(), 2);
    assert!(!out[0].key && out[1].key);
    assert_eq!(r.forwarded_layer(SUB, track), Some(2));
    all.extend(out);
    all.extend(send_frames(
        &mut r, &mut enc, &mut now, 10, [false; 3], [true; 3],
    ));

    assert_eq!(all.len(), 1 + 10 + 5 + 1 + 1 + 10 + 3 + 2 + 10);
    assert_one_stream(&all);
}

#[test]
fn when_the_publisher_stops_its_top_encoding_the_subscriber_moves_down_at_a_keyframe() {
    let (mut r, track) = setup();
    let mut enc = encodings();
    let mut now = Instant::now();
    let mut all = send_frames(&mut r, &mut enc, &mut now, 1, [true; 3], [true; 3]);
    all.extend(send_frames(
        &mut r, &mut enc, &mut now, 10, [false; 3], [true; 3],
    ));
    assert_eq!(r.forwarded_layer(SUB, track), Some(2));

    // the browser's uplink got worse: it stops sending "f"
    let live = [true, true, false];
    let mut plis = Vec::new();
    for _ in 0..100 {
        now += Duration::from_millis(33);
        for e in enc.iter_mut().take(2) {
            let p = e.frame(false);
            r.handle_rtp(now, PUB, &p);
        }
        all.extend(forwarded(&mut r));
        let timers: Vec<_> = run_timers(&mut r, now)
            .into_iter()
            .map(|(_, o)| o)
            .collect();
        plis.extend(plis_for(&timers));
        if plis.contains(&0x200) {
            break;
        }
    }
    assert!(plis.contains(&0x200), "a keyframe of h is requested");
    all.extend(send_frames(
        &mut r,
        &mut enc,
        &mut now,
        1,
        [false, true, false],
        live,
    ));
    assert_eq!(r.forwarded_layer(SUB, track), Some(1));
    all.extend(send_frames(
        &mut r, &mut enc, &mut now, 10, [false; 3], live,
    ));
    assert_one_stream(&all);
}

#[test]
fn a_rid_the_answer_did_not_announce_is_dropped_and_rtx_is_bound_by_repaired_rid() {
    let (mut r, _track) = setup();
    let now = Instant::now();
    let stray = Rtp::new(96, 0x999, 1, 1, VP8_KEYFRAME)
        .mid("1")
        .ext(EXT_RID, b"x")
        .build();
    r.handle_rtp(now, PUB, &stray);
    assert_eq!(r.stats().dropped.get(RouterDrop::UnknownRid), 1);
    // without a RID a simulcast track cannot tell the encoding
    let bare = Rtp::new(96, 0x998, 1, 1, VP8_KEYFRAME).mid("1").build();
    r.handle_rtp(now, PUB, &bare);
    assert_eq!(r.stats().dropped.get(RouterDrop::UnknownSsrc), 1);

    // "h" media, then a retransmission of its packet 6 on its RTX SSRC
    let mut enc = encodings();
    let mut packets = Vec::new();
    for i in 0..6 {
        packets.push(enc[1].frame(i == 0));
    }
    for (i, p) in packets.iter().enumerate() {
        if i != 4 {
            r.handle_rtp(now, PUB, p);
        }
    }
    r.set_max_layer(SUB, _track, 1).unwrap();
    let lost = &packets[4];
    let seq = u16::from_be_bytes([lost[2], lost[3]]);
    let mut rtx_payload = seq.to_be_bytes().to_vec();
    rtx_payload.extend_from_slice(&lost[lost.len() - 9..]);
    let rtx = Rtp::new(97, 0x201, 1, enc[1].ts, &rtx_payload)
        .mid("1")
        .ext(EXT_REPAIRED_RID, b"h")
        .build();
    r.handle_rtp(now, PUB, &rtx);
    assert_eq!(r.stats().rtx_received, 1, "{:?}", r.stats());
}

#[test]
fn forwarded_copies_carry_no_rid() {
    let (mut r, _track) = setup();
    let mut enc = encodings();
    let now = Instant::now();
    let p = enc[2].frame(true);
    r.handle_rtp(now, PUB, &p);
    let out = drain(&mut r);
    let copy = out
        .iter()
        .find(|o| o.to == SUB && o.kind == OutputKind::Rtp)
        .unwrap();
    let h = sluice_rtp::RtpHeader::parse(&copy.data).unwrap();
    assert_eq!(h.extension(EXT_RID), None);
}

#[test]
fn simulcast_specs_out_of_bounds_are_refused() {
    let mut r = Router::new(RouterConfig::default());
    r.add_participant(ROOM, PUB).unwrap();
    let with = |rids: &[&str], kind| TrackSpec {
        rids: rids.iter().map(|s| (*s).to_owned()).collect(),
        ..TrackSpec::new("1", kind)
    };
    assert!(r
        .publish(PUB, with(&["a", "b", "c", "d"], Kind::Video))
        .is_err());
    assert!(r.publish(PUB, with(&["", "b"], Kind::Video)).is_err());
    assert!(r.publish(PUB, with(&["a"], Kind::Audio)).is_err());
    let announced = TrackSpec {
        ssrc: Some(5),
        ..with(&["a", "b"], Kind::Video)
    };
    assert!(r.publish(PUB, announced).is_err());
    assert!(r.publish(PUB, with(&["a", "b"], Kind::Video)).is_ok());
}
