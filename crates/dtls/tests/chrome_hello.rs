//! A ClientHello as current Chrome sends it (DTLS 1.3 offered through supported_versions, a
//! post-quantum key share that makes the hello itself span two datagrams, extensions we do
//! not know) negotiates DTLS 1.2 with a 1.2-only server, and DTLS 1.3 with ours by default,
//! with the X25519MLKEM768 hybrid; X25519 when the hybrid is configured away (a
//! HelloRetryRequest for X25519 when the hello's only share is the hybrid). A hybrid share
//! of the wrong length is refused with an illegal_parameter alert.

mod sim;

use std::time::Instant;

use sluice_dtls::{Config, Connection, DtlsVersion, Error, Event, NamedGroup, PeerAuth, Role};
use sluice_netsim::dtls_view;

const DATAGRAM1: &[u8] = include_bytes!("vectors/chromium156-clienthello-datagram1.bin");
const DATAGRAM2: &[u8] = include_bytes!("vectors/chromium156-clienthello-datagram2.bin");

fn server() -> Connection {
    server_with(&[DtlsVersion::Dtls12])
}

fn server_with(versions: &[DtlsVersion]) -> Connection {
    server_with_groups(versions, &NamedGroup::ALL)
}

fn server_with_groups(versions: &[DtlsVersion], groups: &[NamedGroup]) -> Connection {
    let mut config = Config::new(sim::small_cert(1));
    config.versions = versions.to_vec();
    config.groups = groups.to_vec();
    Connection::new(
        std::sync::Arc::new(config),
        Role::Server,
        PeerAuth::AcceptAnyCertificate,
        b"127.0.0.1:50000",
        Instant::now(),
    )
}

/// The body of the (unfragmented) ServerHello among what the server sends now, after
/// checking that it has not failed.
fn server_hello_body(conn: &mut Connection) -> Option<Vec<u8>> {
    let mut body = None;
    while let Some(d) = conn.poll_transmit() {
        for r in dtls_view::records(&d).map_while(Result::ok) {
            for f in r
                .handshake_fragments()
                .into_iter()
                .flatten()
                .map_while(Result::ok)
            {
                if f.msg_type == 2 && f.fragment_offset == 0 && f.fragment_length == f.length {
                    body = Some(f.body.to_vec());
                }
            }
        }
    }
    while let Some(e) = conn.poll_event() {
        assert!(!matches!(e, Event::Failed(_)), "server failed: {e:?}");
    }
    body
}

/// The ServerHello the server answered with: (version, cipher suite, srtp profiles).
fn server_hello(conn: &mut Connection) -> Option<(u16, u16, Vec<u16>)> {
    let b = server_hello_body(conn)?;
    let version = u16::from_be_bytes([b[0], b[1]]);
    let sid_len = b[34] as usize;
    let at = 35 + sid_len;
    let suite = u16::from_be_bytes([b[at], b[at + 1]]);
    // Walk the extensions for use_srtp (14).
    let mut i = at + 3 + 2;
    let mut profiles = Vec::new();
    while i + 4 <= b.len() {
        let ty = u16::from_be_bytes([b[i], b[i + 1]]);
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        if ty == 14 {
            let n = u16::from_be_bytes([b[i + 4], b[i + 5]]) as usize;
            for k in 0..n / 2 {
                profiles.push(u16::from_be_bytes([b[i + 6 + 2 * k], b[i + 7 + 2 * k]]));
            }
        }
        i += 4 + len;
    }
    Some((version, suite, profiles))
}

#[test]
fn captured_chromium_hello_in_two_datagrams_negotiates_dtls_1_2() {
    let mut s = server();
    s.handle_datagram(Instant::now(), DATAGRAM1);
    assert!(
        server_hello(&mut s).is_none(),
        "half a ClientHello is not enough"
    );
    s.handle_datagram(Instant::now(), DATAGRAM2);
    let (version, suite, profiles) = server_hello(&mut s).expect("a ServerHello");
    assert_eq!(version, 0xfefd, "DTLS 1.2");
    assert_eq!(suite, 0xc02b, "ECDHE-ECDSA-AES128-GCM-SHA256");
    assert_eq!(
        profiles,
        vec![0x0007],
        "our first preference that Chrome offers"
    );
}

#[test]
fn captured_hello_reassembles_in_any_order_and_with_duplicates() {
    let mut s = server();
    for d in [DATAGRAM2, DATAGRAM2, DATAGRAM1] {
        s.handle_datagram(Instant::now(), d);
    }
    let (version, _, _) = server_hello(&mut s).expect("a ServerHello");
    assert_eq!(version, 0xfefd);
    // Chrome re-sends the same two datagrams: the server re-sends its flight, once.
    s.handle_datagram(
        Instant::now() + std::time::Duration::from_secs(1),
        DATAGRAM1,
    );
    assert!(
        server_hello(&mut s).is_some(),
        "flight re-sent on the repeat"
    );
}

fn ext(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// A ClientHello built the way Chrome builds one today.
fn chrome_like_client_hello() -> Vec<u8> {
    chrome_like_client_hello_with_shares(true)
}

/// The same, with or without its X25519 share (the post-quantum one is always there).
fn chrome_like_client_hello_with_shares(x25519: bool) -> Vec<u8> {
    chrome_like_client_hello_with(x25519, HYBRID_CLIENT_SHARE_LEN)
}

/// ML-KEM-768 encapsulation key (1184 bytes) then X25519 public value (32).
const HYBRID_CLIENT_SHARE_LEN: usize = 1216;
/// ML-KEM-768 ciphertext (1088 bytes) then X25519 public value (32).
const HYBRID_SERVER_SHARE_LEN: usize = 1120;

/// A Chrome-like hello whose hybrid share is `hybrid_len` bytes. The filler bytes decode
/// as a valid encapsulation key (every 12-bit coefficient, 0xbab or 0xaba, is below the
/// ML-KEM modulus 3329) and a valid X25519 point.
fn chrome_like_client_hello_with(x25519: bool, hybrid_len: usize) -> Vec<u8> {
    let mut b = vec![0xfe, 0xfd];
    b.extend_from_slice(&[0x42; 32]);
    b.push(0); // session id
    b.push(0); // cookie
    let suites: [u16; 9] = [
        0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xcca9, 0xcca8, 0xc009, 0xc013,
    ];
    b.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        b.extend_from_slice(&s.to_be_bytes());
    }
    b.extend_from_slice(&[1, 0]);
    let mut e = Vec::new();
    ext(&mut e, 0xff01, &[0]);
    ext(&mut e, 23, &[]);
    ext(&mut e, 10, &[0, 8, 0x11, 0xec, 0, 29, 0, 23, 0, 24]);
    ext(&mut e, 11, &[1, 0]);
    ext(&mut e, 13, &[0, 6, 4, 3, 8, 4, 4, 1]);
    ext(&mut e, 14, &[0, 6, 0, 1, 0, 8, 0, 7, 0]);
    ext(&mut e, 43, &[4, 0xfe, 0xfc, 0xfe, 0xfd]);
    // key_share: X25519MLKEM768 (1184 + 32 bytes) and X25519.
    let mut ks = Vec::new();
    ks.extend_from_slice(&0x11ecu16.to_be_bytes());
    ks.extend_from_slice(&(hybrid_len as u16).to_be_bytes());
    ks.extend(std::iter::repeat_n(0xab, hybrid_len));
    if x25519 {
        ks.extend_from_slice(&29u16.to_be_bytes());
        ks.extend_from_slice(&32u16.to_be_bytes());
        ks.extend(std::iter::repeat_n(0xcd, 32));
    }
    let mut share = (ks.len() as u16).to_be_bytes().to_vec();
    share.extend_from_slice(&ks);
    ext(&mut e, 51, &share);
    ext(&mut e, 0x4469, &[0, 3, 2, 0x68, 0x32]); // an extension nobody here knows
    ext(&mut e, 45, &[1, 1]); // psk_key_exchange_modes
    b.extend_from_slice(&(e.len() as u16).to_be_bytes());
    b.extend_from_slice(&e);
    b
}

fn fragment_record(msg: &[u8], seq: u64, offset: usize, len: usize) -> Vec<u8> {
    let mut body = vec![1];
    body.extend_from_slice(&(msg.len() as u32).to_be_bytes()[1..]);
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&(offset as u32).to_be_bytes()[1..]);
    body.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    body.extend_from_slice(&msg[offset..offset + len]);
    let mut r = vec![22, 0xfe, 0xff, 0, 0];
    r.extend_from_slice(&seq.to_be_bytes()[2..]);
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(&body);
    r
}

#[test]
fn built_chrome_like_hello_fragmented_and_overlapping_negotiates_dtls_1_2() {
    let hello = chrome_like_client_hello();
    assert!(hello.len() > 1300);
    let mut s = server();
    // Three records over two datagrams, overlapping, delivered out of order.
    let mut d1 = fragment_record(&hello, 1, 600, 700);
    d1.extend_from_slice(&fragment_record(&hello, 2, 1250, hello.len() - 1250));
    let d2 = fragment_record(&hello, 0, 0, 650);
    s.handle_datagram(Instant::now(), &d1);
    assert!(server_hello(&mut s).is_none());
    s.handle_datagram(Instant::now(), &d2);
    let (version, suite, profiles) = server_hello(&mut s).expect("a ServerHello");
    assert_eq!(version, 0xfefd);
    assert_eq!(suite, 0xc02b);
    assert_eq!(profiles, vec![0x0007]);
}

/// The ServerHello of a DTLS 1.3 answer: (random, suite, supported_versions value,
/// key_share extension data).
type Hello13 = ([u8; 32], u16, Vec<u8>, Vec<u8>);

fn server_hello_13(conn: &mut Connection) -> Option<Hello13> {
    let b = server_hello_body(conn)?;
    let mut random = [0u8; 32];
    random.copy_from_slice(&b[2..34]);
    let at = 35 + b[34] as usize;
    let suite = u16::from_be_bytes([b[at], b[at + 1]]);
    let (mut versions, mut key_share) = (Vec::new(), Vec::new());
    let mut i = at + 3 + 2;
    while i + 4 <= b.len() {
        let ty = u16::from_be_bytes([b[i], b[i + 1]]);
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        let data = b[i + 4..i + 4 + len].to_vec();
        match ty {
            43 => versions = data,
            51 => key_share = data,
            _ => {}
        }
        i += 4 + len;
    }
    Some((random, suite, versions, key_share))
}

const BOTH: [DtlsVersion; 2] = [DtlsVersion::Dtls13, DtlsVersion::Dtls12];

/// SHA-256("HelloRetryRequest"), RFC 8446 4.1.3.
const HELLO_RETRY_RANDOM_PREFIX: [u8; 4] = [0xcf, 0x21, 0xad, 0x74];

/// The key_share extension data of a ServerHello choosing the hybrid: group, length.
const HYBRID_SERVER_SHARE_HEADER: [u8; 4] = [
    0x11,
    0xec,
    (HYBRID_SERVER_SHARE_LEN >> 8) as u8,
    HYBRID_SERVER_SHARE_LEN as u8,
];

/// Chromium 156 sends two shares, X25519MLKEM768 (1216 bytes) and X25519: our server
/// encapsulates to the hybrid one and answers DTLS 1.3 in one round trip.
#[test]
fn captured_chromium_hello_negotiates_dtls_1_3_with_the_hybrid() {
    let mut s = server_with(&BOTH);
    s.handle_datagram(Instant::now(), DATAGRAM1);
    s.handle_datagram(Instant::now(), DATAGRAM2);
    let (random, suite, versions, key_share) = server_hello_13(&mut s).expect("a ServerHello");
    assert_ne!(random[..4], HELLO_RETRY_RANDOM_PREFIX, "no retry needed");
    assert_eq!(suite, 0x1301, "TLS_AES_128_GCM_SHA256");
    assert_eq!(versions, vec![0xfe, 0xfc], "DTLS 1.3");
    assert_eq!(key_share[..4], HYBRID_SERVER_SHARE_HEADER, "X25519MLKEM768");
    assert_eq!(key_share.len(), 4 + HYBRID_SERVER_SHARE_LEN);
    assert_eq!(s.version(), Some(DtlsVersion::Dtls13));
    // Chrome repeating its hello (our flight was lost) gets the flight again.
    let later = Instant::now() + std::time::Duration::from_secs(1);
    s.handle_datagram(later, DATAGRAM1);
    s.handle_datagram(later, DATAGRAM2);
    assert!(server_hello_13(&mut s).is_some(), "flight re-sent");
}

/// With the hybrid configured away, the same hello gets X25519, from its second share.
#[test]
fn captured_chromium_hello_gets_x25519_from_a_server_without_the_hybrid() {
    let mut s = server_with_groups(&BOTH, &[NamedGroup::X25519, NamedGroup::P256]);
    s.handle_datagram(Instant::now(), DATAGRAM1);
    s.handle_datagram(Instant::now(), DATAGRAM2);
    let (random, _, versions, key_share) = server_hello_13(&mut s).expect("a ServerHello");
    assert_ne!(random[..4], HELLO_RETRY_RANDOM_PREFIX, "no retry needed");
    assert_eq!(versions, vec![0xfe, 0xfc], "DTLS 1.3");
    assert_eq!(&key_share[..4], &[0, 29, 0, 32], "our X25519 share");
}

/// A hello whose only share is the hybrid gets the hybrid at once from our server, and a
/// HelloRetryRequest for X25519 from one without the hybrid.
#[test]
fn a_hello_with_only_the_hybrid_share_gets_it_or_a_retry_for_x25519() {
    let hello = chrome_like_client_hello_with_shares(false);
    let d = fragment_record(&hello, 0, 0, hello.len());
    let mut s = server_with(&BOTH);
    s.handle_datagram(Instant::now(), &d[..]);
    let (random, _, _, key_share) = server_hello_13(&mut s).expect("a ServerHello");
    assert_ne!(random[..4], HELLO_RETRY_RANDOM_PREFIX, "a real ServerHello");
    assert_eq!(key_share[..4], HYBRID_SERVER_SHARE_HEADER);

    let mut s = server_with_groups(&BOTH, &[NamedGroup::X25519, NamedGroup::P256]);
    s.handle_datagram(Instant::now(), &d[..]);
    let (random, suite, versions, key_share) = server_hello_13(&mut s).expect("a ServerHello");
    assert_eq!(
        random[..4],
        HELLO_RETRY_RANDOM_PREFIX,
        "a HelloRetryRequest"
    );
    assert_eq!(suite, 0x1301);
    assert_eq!(versions, vec![0xfe, 0xfc]);
    assert_eq!(key_share, vec![0, 29], "asks for X25519");
}

/// A hybrid share one byte short, one byte long, empty, or the size of a server's share
/// is refused: an illegal_parameter alert (RFC 8446 section 4.2.8) and a failed
/// connection, never a panic and never a fallback to the X25519 share beside it.
#[test]
fn a_hybrid_share_of_the_wrong_length_gets_an_illegal_parameter_alert() {
    for len in [
        HYBRID_CLIENT_SHARE_LEN - 1,
        HYBRID_CLIENT_SHARE_LEN + 1,
        0,
        32,
        HYBRID_SERVER_SHARE_LEN,
    ] {
        let hello = chrome_like_client_hello_with(true, len);
        let mut s = server_with(&BOTH);
        s.handle_datagram(Instant::now(), &fragment_record(&hello, 0, 0, hello.len()));
        let mut alerts = Vec::new();
        while let Some(d) = s.poll_transmit() {
            // A plaintext alert record: type 21, then level and description.
            if d.first() == Some(&21) {
                alerts.push(d[d.len() - 2..].to_vec());
            }
        }
        assert_eq!(
            alerts,
            vec![vec![2, 47]],
            "fatal illegal_parameter, {len} bytes"
        );
        let mut failure = None;
        while let Some(e) = s.poll_event() {
            if let Event::Failed(e) = e {
                failure = Some(e);
            }
        }
        assert_eq!(failure, Some(Error::BadKeyShare), "{len} bytes");
    }
}

#[test]
fn built_chrome_like_hello_fragmented_and_overlapping_negotiates_the_hybrid_at_once() {
    let hello = chrome_like_client_hello();
    let mut s = server_with(&BOTH);
    let mut d1 = fragment_record(&hello, 1, 600, 700);
    d1.extend_from_slice(&fragment_record(&hello, 2, 1250, hello.len() - 1250));
    let d2 = fragment_record(&hello, 0, 0, 650);
    s.handle_datagram(Instant::now(), &d1);
    s.handle_datagram(Instant::now(), &d2);
    let (random, suite, versions, key_share) = server_hello_13(&mut s).expect("a ServerHello");
    assert_ne!(random[..4], HELLO_RETRY_RANDOM_PREFIX, "a real ServerHello");
    assert_eq!(suite, 0x1301);
    assert_eq!(versions, vec![0xfe, 0xfc]);
    assert_eq!(key_share[..4], HYBRID_SERVER_SHARE_HEADER);
}
