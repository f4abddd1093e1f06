//! RTP header views and in-place rewriting against hand-built RFC 3550 / RFC 8285 layouts.

use sluice_rtp::{
    set_extension, set_marker, set_payload_type, set_sequence_number, set_ssrc, set_timestamp,
    RtpError, RtpHeader,
};

/// V=2 P=1 X=1 CC=2, M=1 PT=111, seq 0xFFFE, ts 0xDEADBEEF, ssrc 0x01020304,
/// CSRCs 0xAAAAAAAA and 0xBBBBBBBB, one-byte extensions (id 1 len 1, padding byte,
/// id 5 len 3), payload "hello", 3 bytes padding.
fn golden_one_byte() -> Vec<u8> {
    let mut p = vec![
        0xB2, 0xEF, 0xFF, 0xFE, 0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04, //
        0xAA, 0xAA, 0xAA, 0xAA, 0xBB, 0xBB, 0xBB, 0xBB, //
        0xBE, 0xDE, 0x00, 0x02, // profile, 2 words
        0x10, 0x77, 0x00, 0x52, 0x01, 0x02, 0x03, 0x00,
    ];
    p.extend_from_slice(b"hello");
    p.extend_from_slice(&[0, 0, 3]);
    p
}

#[test]
fn parses_fixed_fields_csrcs_extension_and_padding() {
    let p = golden_one_byte();
    let h = RtpHeader::parse(&p).unwrap();
    assert!(h.marker());
    assert_eq!(h.payload_type(), 111);
    assert_eq!(h.sequence_number(), 0xFFFE);
    assert_eq!(h.timestamp(), 0xDEAD_BEEF);
    assert_eq!(h.ssrc(), 0x0102_0304);
    assert_eq!(
        h.csrcs().collect::<Vec<_>>(),
        vec![0xAAAA_AAAA, 0xBBBB_BBBB]
    );
    assert_eq!(h.header_len(), 32);
    assert_eq!(h.padding_len(), 3);
    assert_eq!(h.payload(), b"hello");
    assert_eq!(h.extension_profile(), Some(0xBEDE));
    assert_eq!(h.extension(1), Some(&[0x77][..]));
    assert_eq!(h.extension(5), Some(&[1, 2, 3][..]));
    assert_eq!(h.extension(2), None);
    let ids: Vec<u8> = h.extensions().map(|e| e.id).collect();
    assert_eq!(ids, vec![1, 5]);
}

#[test]
fn parses_two_byte_extensions_including_empty_and_long_elements() {
    // X=1, profile 0x1000, 3 words: id 7 len 0, id 200 len 5, padding
    let mut p = vec![
        0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0x10, 0x00, 0x00, 0x03,
    ];
    p.extend_from_slice(&[7, 0, 200, 5, 1, 2, 3, 4, 5, 0, 0, 0]);
    p.extend_from_slice(&[0xEE]);
    let h = RtpHeader::parse(&p).unwrap();
    assert_eq!(h.extension(7), Some(&[][..]));
    assert_eq!(h.extension(200), Some(&[1, 2, 3, 4, 5][..]));
    assert_eq!(h.payload(), &[0xEE]);
}

#[test]
fn one_byte_id_15_stops_extension_parsing() {
    let mut p = vec![
        0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0xBE, 0xDE, 0x00, 0x01,
    ];
    p.extend_from_slice(&[0xF0, 0x21, 0xAB, 0x00]);
    let h = RtpHeader::parse(&p).unwrap();
    assert_eq!(h.extension(2), None);
    assert_eq!(h.extensions().count(), 0);
}

#[test]
fn unknown_extension_profile_yields_no_elements() {
    let mut p = vec![
        0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0x12, 0x34, 0x00, 0x01,
    ];
    p.extend_from_slice(&[0x10, 0x01, 0, 0]);
    let h = RtpHeader::parse(&p).unwrap();
    assert_eq!(h.extension_profile(), Some(0x1234));
    assert_eq!(h.extension(1), None);
}

#[test]
fn rejects_bad_version_truncation_and_bad_padding() {
    let mut p = golden_one_byte();
    assert!(matches!(
        RtpHeader::parse(&p[..11]),
        Err(RtpError::Truncated { .. })
    ));
    // CSRC list cut short
    assert!(matches!(
        RtpHeader::parse(&p[..16]),
        Err(RtpError::Truncated { .. })
    ));
    // extension announced longer than the packet
    assert!(matches!(
        RtpHeader::parse(&p[..30]),
        Err(RtpError::Truncated { .. })
    ));
    let last = p.len() - 1;
    p[last] = 0;
    assert!(matches!(
        RtpHeader::parse(&p),
        Err(RtpError::BadPadding { .. })
    ));
    p[last] = 200;
    assert!(matches!(
        RtpHeader::parse(&p),
        Err(RtpError::BadPadding { .. })
    ));
    p[0] = 0x40;
    assert_eq!(RtpHeader::parse(&p).unwrap_err(), RtpError::BadVersion(1));
}

#[test]
fn in_place_setters_rewrite_only_their_fields() {
    let mut p = golden_one_byte();
    let orig = p.clone();
    assert!(set_ssrc(&mut p, 0x1122_3344));
    assert!(set_sequence_number(&mut p, 0x0001));
    assert!(set_timestamp(&mut p, 0x0A0B_0C0D));
    assert!(set_payload_type(&mut p, 96));
    assert!(set_marker(&mut p, false));
    let h = RtpHeader::parse(&p).unwrap();
    assert_eq!(
        (
            h.ssrc(),
            h.sequence_number(),
            h.timestamp(),
            h.payload_type(),
            h.marker()
        ),
        (0x1122_3344, 1, 0x0A0B_0C0D, 96, false)
    );
    assert_eq!(&p[12..], &orig[12..]);
    assert_eq!(p[0], orig[0]);
}

#[test]
fn setters_refuse_buffers_shorter_than_a_header() {
    let mut short = [0x80u8; 11];
    assert!(!set_ssrc(&mut short, 1));
    assert!(!set_sequence_number(&mut short, 1));
    assert!(!set_timestamp(&mut short, 1));
    assert!(!set_payload_type(&mut short, 1));
    assert_eq!(short, [0x80u8; 11]);
}

#[test]
fn set_extension_overwrites_same_length_element_only() {
    let mut p = golden_one_byte();
    assert!(set_extension(&mut p, 5, &[9, 8, 7]));
    assert_eq!(
        RtpHeader::parse(&p).unwrap().extension(5),
        Some(&[9, 8, 7][..])
    );
    assert!(!set_extension(&mut p, 5, &[1, 2]));
    assert!(!set_extension(&mut p, 3, &[1]));
    assert_eq!(
        RtpHeader::parse(&p).unwrap().extension(5),
        Some(&[9, 8, 7][..])
    );
    assert_eq!(RtpHeader::parse(&p).unwrap().payload(), b"hello");
}
