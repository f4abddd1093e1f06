//! RFC 7983 classification and the pre-validation ufrag lookup.

mod support;

use sluice_ice::demux::{classify, stun_local_ufrag};
use sluice_ice::PacketClass;
use support::*;

#[test]
fn classify_follows_rfc_7983_for_every_first_byte() {
    for first in 0..=255u8 {
        let expected = match first {
            0..=3 => PacketClass::Stun,
            16..=19 => PacketClass::Zrtp,
            20..=63 => PacketClass::Dtls,
            64..=79 => PacketClass::TurnChannel,
            128..=191 => PacketClass::Rtp,
            _ => PacketClass::Unknown,
        };
        // Second byte 96: a dynamic RTP payload type.
        assert_eq!(classify(&[first, 96, 0, 0]), expected, "first byte {first}");
    }
}

#[test]
fn classify_range_edges() {
    assert_eq!(classify(&[3]), PacketClass::Stun);
    assert_eq!(classify(&[4]), PacketClass::Unknown);
    assert_eq!(classify(&[15]), PacketClass::Unknown);
    assert_eq!(classify(&[16]), PacketClass::Zrtp);
    assert_eq!(classify(&[19]), PacketClass::Zrtp);
    assert_eq!(classify(&[20]), PacketClass::Dtls);
    assert_eq!(classify(&[63]), PacketClass::Dtls);
    assert_eq!(classify(&[64]), PacketClass::TurnChannel);
    assert_eq!(classify(&[79]), PacketClass::TurnChannel);
    assert_eq!(classify(&[80]), PacketClass::Unknown);
    assert_eq!(classify(&[127]), PacketClass::Unknown);
    assert_eq!(classify(&[191, 0]), PacketClass::Rtp);
    assert_eq!(classify(&[192, 200]), PacketClass::Unknown);
}

#[test]
fn classify_tells_rtcp_from_rtp_by_second_byte() {
    for second in 0..=255u8 {
        let expected = if (192..=223).contains(&second) {
            PacketClass::Rtcp
        } else {
            PacketClass::Rtp
        };
        assert_eq!(classify(&[0x80, second]), expected, "second byte {second}");
    }
    // Sender report (200) and receiver report (201) as browsers send them.
    assert_eq!(classify(&[0x81, 200, 0, 6]), PacketClass::Rtcp);
    assert_eq!(classify(&[0x81, 201, 0, 1]), PacketClass::Rtcp);
    // RTP with the marker bit set and payload type 111 (Opus): 0x80 | 111 = 239.
    assert_eq!(classify(&[0x80, 239]), PacketClass::Rtp);
}

#[test]
fn classify_empty_and_short_datagrams() {
    assert_eq!(classify(&[]), PacketClass::Unknown);
    assert_eq!(classify(&[0x80]), PacketClass::Rtp);
    assert_eq!(classify(&[0x00]), PacketClass::Stun);
}

#[test]
fn ufrag_of_a_browser_check() {
    let bytes = Check::default().encode();
    assert_eq!(stun_local_ufrag(&bytes), Some(SERVER_UFRAG));
}

#[test]
fn ufrag_of_a_check_without_integrity_is_still_found() {
    // Lookup precedes validation: the agent then answers 400.
    let bytes = Check {
        integrity_pwd: None,
        fingerprint: false,
        ..Check::default()
    }
    .encode();
    assert_eq!(stun_local_ufrag(&bytes), Some(SERVER_UFRAG));
}

#[test]
fn ufrag_of_every_truncation_is_none() {
    let bytes = Check::default().encode();
    for len in 0..bytes.len() {
        assert_eq!(stun_local_ufrag(&bytes[..len]), None, "truncated to {len}");
    }
}

#[test]
fn ufrag_absent_or_unusable_is_none() {
    let no_username = Check {
        username: None,
        ..Check::default()
    }
    .encode();
    assert_eq!(stun_local_ufrag(&no_username), None);
    let no_colon = Check {
        username: Some("abcd".into()),
        ..Check::default()
    }
    .encode();
    assert_eq!(stun_local_ufrag(&no_colon), None);
    let empty_local = Check {
        username: Some(":abcd".into()),
        ..Check::default()
    }
    .encode();
    assert_eq!(stun_local_ufrag(&empty_local), None);
}

#[test]
fn ufrag_of_non_requests_is_none() {
    let mut bytes = Check::default().encode();
    bytes[0..2].copy_from_slice(&[0x01, 0x01]);
    assert_eq!(stun_local_ufrag(&bytes), None);
}

fn header(length: u16) -> Vec<u8> {
    let mut bytes = vec![0x00, 0x01];
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    bytes.extend_from_slice(&[9; 12]);
    bytes
}

#[test]
fn ufrag_of_hostile_inputs_is_none() {
    // Length field larger than the datagram.
    let mut lying_length = header(0xFFFC);
    lying_length.extend_from_slice(&[0x00, 0x06, 0x00, 0x04, b'a', b':', b'b', b'c']);
    assert_eq!(stun_local_ufrag(&lying_length), None);

    // Attribute length running past the end.
    let mut long_attribute = header(8);
    long_attribute.extend_from_slice(&[0x00, 0x06, 0xFF, 0xFF, b'a', b':', b'b', b'c']);
    assert_eq!(stun_local_ufrag(&long_attribute), None);

    // Non-UTF-8 username.
    let mut not_utf8 = header(8);
    not_utf8.extend_from_slice(&[0x00, 0x06, 0x00, 0x03, 0xFF, b':', 0xFE, 0]);
    assert_eq!(stun_local_ufrag(&not_utf8), None);

    // Wrong magic cookie.
    let mut old_stun = Check::default().encode();
    old_stun[4] ^= 0xFF;
    assert_eq!(stun_local_ufrag(&old_stun), None);

    // Thousands of empty attributes before the username: the scan gives up.
    let mut many = Vec::new();
    for _ in 0..5000 {
        many.extend_from_slice(&[0x80, 0x22, 0x00, 0x00]);
    }
    many.extend_from_slice(&[0x00, 0x06, 0x00, 0x04, b'a', b'b', b':', b'c']);
    let mut flood = header(u16::try_from(many.len()).unwrap());
    flood.extend_from_slice(&many);
    assert_eq!(stun_local_ufrag(&flood), None);
}

#[test]
fn ufrag_of_a_hand_built_request() {
    let mut bytes = header(12);
    bytes.extend_from_slice(&[
        0x00, 0x06, 0x00, 0x06, b'a', b'b', b'c', b'd', b':', b'x', 0, 0,
    ]);
    assert_eq!(stun_local_ufrag(&bytes), Some("abcd"));
}
