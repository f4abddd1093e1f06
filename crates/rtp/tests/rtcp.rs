//! RTCP parsing against hand-built RFC layouts, builder round trips, NACK packing and
//! in-place SSRC translation.

use sluice_rtp::rtcp::{FirEntry, RtcpPacket};
use sluice_rtp::{
    rewrite_media_ssrc, write_bye, write_fir, write_nack, write_pli, write_receiver_report,
    write_remb, write_sdes_cname, write_sender_report, ReportBlock, RtcpError, RtcpIter,
};

fn packets(buf: &[u8]) -> Vec<RtcpPacket<'_>> {
    RtcpIter::new(buf).collect::<Result<Vec<_>, _>>().unwrap()
}

fn block(ssrc: u32) -> ReportBlock {
    ReportBlock {
        ssrc,
        fraction_lost: 25,
        cumulative_lost: -3,
        extended_highest_seq: 0x0001_0005,
        jitter: 77,
        last_sr: 0x1234_5678,
        delay_since_last_sr: 65_536,
    }
}

#[test]
fn parses_hand_built_sender_report_with_one_block() {
    #[rustfmt::skip]
    let sr = [
        0x81, 200, 0x00, 0x0C,             // V=2 RC=1 PT=SR length=12 words
        0x11, 0x22, 0x33, 0x44,            // sender SSRC
        0xE5, 0x00, 0x00, 0x01, 0x80, 0x00, 0x00, 0x00, // NTP
        0x00, 0x01, 0x00, 0x00,            // RTP ts
        0x00, 0x00, 0x00, 0x0A,            // packet count
        0x00, 0x00, 0x10, 0x00,            // octet count
        0xAA, 0xBB, 0xCC, 0xDD,            // block: SSRC
        0x19, 0xFF, 0xFF, 0xFD,            // fraction 25, cumulative -3
        0x00, 0x01, 0x00, 0x05,            // ext highest seq
        0x00, 0x00, 0x00, 0x4D,            // jitter 77
        0x12, 0x34, 0x56, 0x78,            // LSR
        0x00, 0x01, 0x00, 0x00,            // DLSR
    ];
    let p = packets(&sr);
    let [RtcpPacket::SenderReport(s)] = p.as_slice() else {
        panic!("{p:?}")
    };
    assert_eq!(s.sender_ssrc, 0x1122_3344);
    assert_eq!(s.ntp_timestamp, 0xE500_0001_8000_0000);
    assert_eq!(s.ntp_middle_32(), 0x0001_8000);
    assert_eq!(
        (s.rtp_timestamp, s.packet_count, s.octet_count),
        (0x10000, 10, 4096)
    );
    assert_eq!(
        s.blocks.iter().collect::<Vec<_>>(),
        vec![block(0xAABB_CCDD)]
    );
}

#[test]
fn sender_report_builder_round_trips_and_matches_the_golden_bytes() {
    let mut out = Vec::new();
    let n = write_sender_report(
        0x1122_3344,
        0xE500_0001_8000_0000,
        0x10000,
        10,
        4096,
        &[block(0xAABB_CCDD)],
        &mut out,
    );
    assert_eq!(n, 1);
    assert_eq!(out.len(), 52);
    assert_eq!(&out[..4], &[0x81, 200, 0x00, 0x0C]);
    assert_eq!(&out[32..36], &[0x19, 0xFF, 0xFF, 0xFD]);
}

#[test]
fn compound_rr_sdes_bye_round_trip() {
    let mut out = Vec::new();
    write_receiver_report(7, &[block(1), block(2)], &mut out);
    write_sdes_cname(7, b"sluice-cname", &mut out);
    write_bye(7, &mut out);
    assert_eq!(out.len() % 4, 0);
    let p = packets(&out);
    assert_eq!(p.len(), 3);
    let RtcpPacket::ReceiverReport(rr) = p[0] else {
        panic!()
    };
    assert_eq!(rr.sender_ssrc, 7);
    assert_eq!(
        rr.blocks.iter().map(|b| b.ssrc).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let RtcpPacket::Sdes(sdes) = p[1] else {
        panic!()
    };
    let chunks: Vec<_> = sdes.chunks().collect();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].ssrc, 7);
    assert_eq!(chunks[0].cname(), Some(&b"sluice-cname"[..]));
    let RtcpPacket::Bye(bye) = p[2] else { panic!() };
    assert_eq!(bye.ssrcs().collect::<Vec<_>>(), vec![7]);
    assert_eq!(bye.reason(), None);
}

#[test]
fn sdes_chunk_with_cname_of_every_length_mod_4_is_aligned() {
    for len in 0..8 {
        let cname = vec![b'x'; len];
        let mut out = Vec::new();
        write_sdes_cname(9, &cname, &mut out);
        assert_eq!(out.len() % 4, 0);
        let p = packets(&out);
        let RtcpPacket::Sdes(s) = p[0] else { panic!() };
        assert_eq!(s.chunks().next().unwrap().cname(), Some(&cname[..]));
    }
}

#[test]
fn report_blocks_beyond_31_are_not_written() {
    let blocks: Vec<_> = (0..40).map(block).collect();
    let mut out = Vec::new();
    assert_eq!(write_receiver_report(1, &blocks, &mut out), 31);
    let p = packets(&out);
    let RtcpPacket::ReceiverReport(rr) = p[0] else {
        panic!()
    };
    assert_eq!(rr.blocks.len(), 31);
}

#[test]
fn pli_and_fir_golden_bytes_and_round_trip() {
    let mut out = Vec::new();
    write_pli(0x0102_0304, 0x0A0B_0C0D, &mut out);
    assert_eq!(out, [0x81, 206, 0, 2, 1, 2, 3, 4, 0x0A, 0x0B, 0x0C, 0x0D]);
    write_fir(5, 0xCAFE, 9, &mut out);
    assert_eq!(
        &out[12..],
        &[0x84, 206, 0, 4, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0xCA, 0xFE, 9, 0, 0, 0]
    );
    let p = packets(&out);
    assert!(matches!(
        p[0],
        RtcpPacket::Pli {
            sender_ssrc: 0x0102_0304,
            media_ssrc: 0x0A0B_0C0D
        }
    ));
    let RtcpPacket::Fir(fir) = p[1] else { panic!() };
    assert_eq!(
        fir.entries().collect::<Vec<_>>(),
        vec![FirEntry {
            ssrc: 0xCAFE,
            seq: 9
        }]
    );
}

#[test]
fn nack_packs_runs_into_pid_blp_pairs() {
    let lost = [100u16, 101, 103, 116, 117, 200];
    let mut out = Vec::new();
    assert_eq!(write_nack(1, 2, &lost, &mut out), lost.len());
    // PID 100: 101 -> bit0, 103 -> bit2, 116 -> bit15; PID 117 BLP 0; PID 200 BLP 0
    assert_eq!(
        &out[12..],
        &[0, 100, 0x80, 0x05, 0, 117, 0, 0, 0, 200, 0, 0]
    );
    assert_eq!(&out[..4], &[0x81, 205, 0, 5]);
    let p = packets(&out);
    let RtcpPacket::Nack(n) = p[0] else { panic!() };
    assert_eq!((n.sender_ssrc, n.media_ssrc), (1, 2));
    assert_eq!(n.lost().collect::<Vec<_>>(), lost.to_vec());
}

#[test]
fn nack_packing_spans_the_sequence_wrap() {
    let lost = [65_534u16, 65_535, 0, 3, 14];
    let mut out = Vec::new();
    write_nack(1, 2, &lost, &mut out);
    assert_eq!(out.len(), 16, "one pair covers the wrap");
    let p = packets(&out);
    let RtcpPacket::Nack(n) = p[0] else { panic!() };
    assert_eq!(n.lost().collect::<Vec<_>>(), lost.to_vec());
}

#[test]
fn nack_with_too_many_pairs_reports_how_much_was_consumed() {
    let lost: Vec<u16> = (0..400u16).map(|i| i * 20).collect();
    let mut out = Vec::new();
    let consumed = write_nack(1, 2, &lost, &mut out);
    assert_eq!(consumed, 250);
    let p = packets(&out);
    let RtcpPacket::Nack(n) = p[0] else { panic!() };
    assert_eq!(n.lost().collect::<Vec<_>>(), lost[..250].to_vec());
    let mut out2 = Vec::new();
    assert_eq!(write_nack(1, 2, &lost[consumed..], &mut out2), 150);
    assert_eq!(write_nack(1, 2, &[], &mut out2), 0);
}

#[test]
fn remb_round_trips_bitrate_with_mantissa_rounding() {
    let mut out = Vec::new();
    write_remb(3, 1_500_000, &[10, 11], &mut out);
    let p = packets(&out);
    let RtcpPacket::Remb(r) = p[0] else {
        panic!("{p:?}")
    };
    assert_eq!(r.sender_ssrc, 3);
    // 1_500_000 = 0b1_0110_1110_0011_0110_0000 needs 21 bits -> exponent 3, exact here
    assert_eq!(r.bitrate_bps, 1_500_000);
    assert_eq!(r.ssrcs().collect::<Vec<_>>(), vec![10, 11]);
    let mut out = Vec::new();
    write_remb(3, 1_000_001, &[], &mut out);
    let p = packets(&out);
    let RtcpPacket::Remb(r) = p[0] else { panic!() };
    assert!(r.bitrate_bps <= 1_000_001 && r.bitrate_bps > 999_990);
}

#[test]
fn transport_cc_header_fields_are_exposed_for_routing() {
    #[rustfmt::skip]
    let fb = [
        0x8F, 205, 0, 5, 0, 0, 0, 1, 0, 0, 0, 2,
        0x01, 0x00, 0x00, 0x02, 0x00, 0x00, 0x10, 0x07,
        0x20, 0x02, 0x00, 0x00,
    ];
    let p = packets(&fb);
    let RtcpPacket::TransportCc(t) = p[0] else {
        panic!()
    };
    assert_eq!((t.sender_ssrc, t.media_ssrc), (1, 2));
    assert_eq!((t.base_sequence_number, t.packet_status_count), (256, 2));
    assert_eq!((t.reference_time_64ms, t.feedback_packet_count), (16, 7));
    assert_eq!(t.chunks_and_deltas, &[0x20, 0x02, 0x00, 0x00]);
}

#[test]
fn unknown_types_and_app_are_reported() {
    #[rustfmt::skip]
    let buf = [
        0x83, 204, 0, 3, 0, 0, 0, 9, b'a', b'b', b'c', b'd', 1, 2, 3, 4, // APP subtype 3
        0x85, 207, 0, 1, 9, 9, 9, 9, // XR
        0x81, 205, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, // RTPFB fmt 1 without FCI
    ];
    let p = packets(&buf);
    let RtcpPacket::App(a) = p[0] else { panic!() };
    assert_eq!(
        (a.subtype, a.ssrc, &a.name, a.data),
        (3, 9, b"abcd", &[1u8, 2, 3, 4][..])
    );
    assert!(matches!(
        p[1],
        RtcpPacket::Other {
            packet_type: 207,
            count_or_fmt: 5,
            body: &[9, 9, 9, 9]
        }
    ));
    let RtcpPacket::Nack(n) = p[2] else { panic!() };
    assert_eq!(n.lost().count(), 0);
}

#[test]
fn padding_on_the_last_packet_is_stripped() {
    let mut out = Vec::new();
    write_bye(5, &mut out);
    out.extend_from_slice(&[0, 0, 0, 4]);
    out[0] |= 0x20;
    out[3] = 2;
    let p = packets(&out);
    let RtcpPacket::Bye(b) = p[0] else { panic!() };
    assert_eq!(b.ssrcs().collect::<Vec<_>>(), vec![5]);
}

#[test]
fn malformed_packet_yields_one_error_then_stops() {
    let mut out = Vec::new();
    write_pli(1, 2, &mut out);
    write_pli(3, 4, &mut out);
    // length field of the second packet claims more than is present
    out[15] = 9;
    let results: Vec<_> = RtcpIter::new(&out).collect();
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(RtcpError::Truncated { .. })));

    let bad_version = [0x41, 206, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0];
    let r: Vec<_> = RtcpIter::new(&bad_version).collect();
    assert!(matches!(r[..], [Err(RtcpError::BadVersion(1))]));

    // SR with RC=2 but no room for the blocks
    let short_sr = [
        0x82, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let r: Vec<_> = RtcpIter::new(&short_sr).collect();
    assert!(matches!(
        r[..],
        [Err(RtcpError::Malformed {
            packet_type: 200,
            ..
        })]
    ));
}

#[test]
fn rewrite_media_ssrc_translates_feedback_but_not_reports() {
    let mut out = Vec::new();
    write_receiver_report(50, &[block(100)], &mut out);
    write_pli(50, 100, &mut out);
    write_nack(50, 100, &[1, 2], &mut out);
    write_fir(50, 100, 1, &mut out);
    write_remb(50, 1000, &[100, 200], &mut out);
    let map = |s: u32| (s == 100).then_some(0xBEEF);
    assert_eq!(rewrite_media_ssrc(&mut out, map), Ok(4));
    let p = packets(&out);
    let RtcpPacket::ReceiverReport(rr) = p[0] else {
        panic!()
    };
    assert_eq!(rr.blocks.iter().next().unwrap().ssrc, 100);
    assert!(matches!(
        p[1],
        RtcpPacket::Pli {
            sender_ssrc: 50,
            media_ssrc: 0xBEEF
        }
    ));
    let RtcpPacket::Nack(n) = p[2] else { panic!() };
    assert_eq!(n.media_ssrc, 0xBEEF);
    let RtcpPacket::Fir(f) = p[3] else { panic!() };
    assert_eq!(f.media_ssrc, 0);
    assert_eq!(f.entries().next().unwrap().ssrc, 0xBEEF);
    let RtcpPacket::Remb(r) = p[4] else { panic!() };
    assert_eq!(r.ssrcs().collect::<Vec<_>>(), vec![0xBEEF, 200]);
}

#[test]
fn next_with_range_delimits_each_packet_for_verbatim_forwarding() {
    let mut out = Vec::new();
    write_pli(1, 2, &mut out);
    write_fir(1, 2, 3, &mut out);
    let mut it = RtcpIter::new(&out);
    let (_, r1) = it.next_with_range().unwrap().unwrap();
    let (_, r2) = it.next_with_range().unwrap().unwrap();
    assert_eq!((r1, r2), (0..12, 12..32));
    assert!(it.next_with_range().is_none());
}
