use std::time::{Duration, Instant};

use sluice_rtp::{is_keyframe, Codec, RtpHeader};

use super::*;

fn stamp() -> Stamp {
    Stamp {
        send_time_unix_us: 1_700_000_000_123_456,
        publisher_id: "p-ada".into(),
    }
}

#[test]
fn stamp_round_trips_and_foreign_payloads_have_none() {
    let mut out = vec![0xFC];
    stamp().write(&mut out);
    out.extend_from_slice(&[0; 40]);
    assert_eq!(Stamp::find(&out), Some(stamp()));
    assert_eq!(Stamp::find(&[0u8; 100]), None);
    assert_eq!(Stamp::find(&out[..10]), None, "truncated stamp");
}

#[test]
fn audio_packets_carry_mid_twcc_and_an_80_byte_payload() {
    let mut source = AudioSource::new(0xAB, "0", 65_535, 1000);
    let mut packet = Vec::new();
    source.next_packet(&stamp(), &mut packet);
    let h = RtpHeader::parse(&packet).unwrap();
    assert_eq!(
        (
            h.payload_type(),
            h.sequence_number(),
            h.timestamp(),
            h.ssrc()
        ),
        (111, 65_535, 1000, 0xAB)
    );
    assert_eq!(h.extension(1), Some(&b"0"[..]));
    assert_eq!(h.extension(3).map(<[u8]>::len), Some(2));
    assert_eq!(h.payload().len(), AUDIO_PAYLOAD_BYTES);
    assert_eq!(Stamp::find(h.payload()), Some(stamp()));
    source.next_packet(&stamp(), &mut packet);
    let h = RtpHeader::parse(&packet).unwrap();
    assert_eq!((h.sequence_number(), h.timestamp()), (0, 1960));
}

#[test]
fn set_extension_can_write_the_transport_sequence_number() {
    let mut source = AudioSource::new(1, "12", 0, 0);
    let mut packet = Vec::new();
    source.next_packet(&stamp(), &mut packet);
    assert!(sluice_rtp::set_extension(
        &mut packet,
        3,
        &0x1234u16.to_be_bytes()
    ));
    let h = RtpHeader::parse(&packet).unwrap();
    assert_eq!(h.extension(3), Some(&[0x12, 0x34][..]));
    assert_eq!(h.extension(1), Some(&b"12"[..]));
}

#[test]
fn first_frame_is_a_keyframe_split_into_packets_with_marker_on_the_last() {
    let now = Instant::now();
    let mut source = VideoSource::new(7, "1", 100, 0, 30, 1_000_000, Duration::from_secs(3));
    let mut packets = Vec::new();
    source.next_frame(now, &stamp(), &mut packets);
    assert!(packets.len() > 1, "a keyframe at 1 Mbit/s spans packets");
    for (i, p) in packets.iter().enumerate() {
        let h = RtpHeader::parse(p).unwrap();
        assert!(h.payload().len() <= MAX_PAYLOAD_BYTES);
        assert_eq!(h.marker(), i + 1 == packets.len());
        assert_eq!(h.sequence_number(), 100 + i as u16);
        assert_eq!(h.timestamp(), 0);
        assert_eq!(is_keyframe(Codec::Vp8, h.payload()), i == 0, "packet {i}");
        assert_eq!(Stamp::find(h.payload()), Some(stamp()));
    }
    source.next_frame(now + source.frame_interval(), &stamp(), &mut packets);
    let h = RtpHeader::parse(&packets[0]).unwrap();
    assert!(
        !is_keyframe(Codec::Vp8, h.payload()),
        "second frame is a delta frame"
    );
    assert_eq!(h.timestamp(), 3000);
}

#[test]
fn keyframes_follow_the_interval_and_requests() {
    let start = Instant::now();
    let mut source = VideoSource::new(7, "1", 0, 0, 10, 300_000, Duration::from_secs(2));
    let mut packets = Vec::new();
    let mut keyframe_times = Vec::new();
    for i in 0..50u32 {
        let now = start + Duration::from_millis(100) * i;
        if i == 13 {
            source.request_keyframe();
        }
        source.next_frame(now, &stamp(), &mut packets);
        let h = RtpHeader::parse(&packets[0]).unwrap();
        if is_keyframe(Codec::Vp8, h.payload()) {
            keyframe_times.push(i);
        }
    }
    assert_eq!(keyframe_times, vec![0, 13, 33]);
    assert_eq!(source.keyframes_sent, 3);
}

#[test]
fn delta_frames_add_up_to_the_configured_bitrate() {
    let start = Instant::now();
    let mut source = VideoSource::new(7, "1", 0, 0, 25, 800_000, Duration::from_secs(3600));
    let mut packets = Vec::new();
    source.next_frame(start, &stamp(), &mut packets); // the keyframe
    let mut payload_bytes = 0;
    for i in 1..=25u32 {
        source.next_frame(
            start + Duration::from_millis(40) * i,
            &stamp(),
            &mut packets,
        );
        payload_bytes += packets
            .iter()
            .map(|p| RtpHeader::parse(p).unwrap().payload().len())
            .sum::<usize>();
    }
    let bits = payload_bytes as f64 * 8.0;
    assert!(
        (bits / 800_000.0 - 1.0).abs() < 0.05,
        "{bits} bits in one second"
    );
}
