//! Bad input against the DTLS 1.3 paths: a downgrade, junk and forged records, broken
//! hybrid key shares. Nothing panics; attacks fail with the named error, noise is dropped
//! and counted.

mod sim;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_dtls::{Config, Connection, DtlsVersion, Error, Event, PeerAuth, Role};
use sluice_netsim::SimRng;

const BOTH: [DtlsVersion; 2] = [DtlsVersion::Dtls13, DtlsVersion::Dtls12];

fn conn(role: Role, versions: &[DtlsVersion], now: Instant) -> Connection {
    let (own, peer) = match role {
        Role::Client => (sim::small_cert(0), sim::small_cert(1)),
        Role::Server => (sim::small_cert(1), sim::small_cert(0)),
    };
    let mut config = Config::new(own);
    config.versions = versions.to_vec();
    Connection::new(
        Arc::new(config),
        role,
        PeerAuth::Fingerprint(peer.fingerprint()),
        b"peer",
        now,
    )
}

fn failure(c: &mut Connection) -> Option<Error> {
    let mut out = None;
    while let Some(e) = c.poll_event() {
        if let Event::Failed(e) = e {
            out = Some(e);
        }
    }
    out
}

fn pump(from: &mut Connection, to: &mut Connection, now: Instant, tamper: impl Fn(&mut [u8])) {
    while let Some(mut d) = from.poll_transmit() {
        tamper(&mut d);
        to.handle_datagram(now, &d);
    }
}

/// Rewrites DTLS 1.3 (fe fc) to 1.2 (fe fd) inside the supported_versions extension of a
/// plaintext ClientHello, as an attacker stripping 1.3 from the offer would.
fn strip_13_offer(d: &mut [u8]) {
    let mut i = 0;
    while i + 7 <= d.len() {
        // extension 43, data length 5, list length 4, fe fc
        if d[i..i + 7] == [0x00, 0x2b, 0x00, 0x05, 0x04, 0xfe, 0xfc] {
            d[i + 6] = 0xfd;
        }
        i += 1;
    }
}

#[test]
fn a_downgrade_to_12_is_detected_by_the_sentinel() {
    let now = Instant::now();
    let mut c = conn(Role::Client, &BOTH, now);
    let mut s = conn(Role::Server, &BOTH, now);
    for _ in 0..3 {
        pump(&mut c, &mut s, now, strip_13_offer);
        pump(&mut s, &mut c, now, |_| {});
    }
    assert_eq!(failure(&mut c), Some(Error::Downgrade));
    assert!(!c.is_connected() && !s.is_connected());
}

#[test]
fn a_12_only_server_sets_no_sentinel_and_a_13_client_accepts_12() {
    let now = Instant::now();
    let mut c = conn(Role::Client, &BOTH, now);
    let mut s = conn(Role::Server, &[DtlsVersion::Dtls12], now);
    for _ in 0..4 {
        pump(&mut c, &mut s, now, |_| {});
        pump(&mut s, &mut c, now, |_| {});
    }
    assert!(c.is_connected() && s.is_connected());
    assert_eq!(c.version(), Some(DtlsVersion::Dtls12));
}

#[test]
fn a_13_only_server_refuses_a_12_only_client() {
    let now = Instant::now();
    let mut c = conn(Role::Client, &[DtlsVersion::Dtls12], now);
    let mut s = conn(Role::Server, &[DtlsVersion::Dtls13], now);
    pump(&mut c, &mut s, now, |_| {});
    assert_eq!(failure(&mut s), Some(Error::UnsupportedVersion));
}

/// Junk of every shape (random bytes, random unified headers, random epochs) before,
/// during and after a 1.3 handshake: dropped, counted, and the handshake completes.
#[test]
fn junk_floods_never_panic_or_stop_a_13_handshake() {
    let now = Instant::now();
    let mut rng = SimRng::new(13);
    let mut c = conn(Role::Client, &BOTH, now);
    let mut s = conn(Role::Server, &BOTH, now);
    let mut junk = |target: &mut Connection, n: usize| {
        for _ in 0..n {
            let len = rng.range(0..300) as usize;
            let mut d: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if let Some(first) = d.first_mut() {
                *first = match rng.range(0..4) {
                    0 => 0x20 | (*first & 0x1f),
                    1 => 22,
                    2 => 26,
                    _ => *first,
                };
            }
            target.handle_datagram(now, &d);
        }
    };
    junk(&mut s, 3000);
    pump(&mut c, &mut s, now, |_| {});
    junk(&mut s, 3000);
    junk(&mut c, 3000);
    for _ in 0..4 {
        pump(&mut s, &mut c, now, |_| {});
        pump(&mut c, &mut s, now, |_| {});
    }
    assert!(
        c.is_connected() && s.is_connected(),
        "{:?} {:?}",
        failure(&mut c),
        failure(&mut s)
    );
    junk(&mut s, 3000);
    junk(&mut c, 3000);
    assert!(c.is_connected() && s.is_connected());
    let stats = s.stats();
    assert!(stats.malformed_records + stats.bad_mac_records + stats.wrong_epoch_records > 0);
    // Nothing scheduled in the past, nothing left running away.
    assert!(s.poll_timeout().is_none_or(|t| t >= now));
    let later = now + Duration::from_secs(60);
    s.handle_timeout(later);
    c.handle_timeout(later);
    assert!(s.is_connected() && c.is_connected());
}

/// A plaintext (epoch 0) ACK or alert injected by anyone on the path is not
/// authenticated: ignored, the handshake goes on.
#[test]
fn plaintext_acks_and_forged_epoch_records_are_ignored() {
    let now = Instant::now();
    let mut c = conn(Role::Client, &BOTH, now);
    let mut s = conn(Role::Server, &BOTH, now);
    pump(&mut c, &mut s, now, |_| {});
    // A plaintext ACK claiming every record up to 100.
    let mut ack = vec![26, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 99];
    let mut body = Vec::new();
    body.extend_from_slice(&((100 * 16) as u16).to_be_bytes());
    for seq in 0..100u64 {
        body.extend_from_slice(&2u64.to_be_bytes());
        body.extend_from_slice(&seq.to_be_bytes());
    }
    ack.extend_from_slice(&(body.len() as u16).to_be_bytes());
    ack.extend_from_slice(&body);
    s.handle_datagram(now, &ack);
    // A plaintext record claiming epoch 3.
    s.handle_datagram(now, &[22, 0xfe, 0xfd, 0, 3, 0, 0, 0, 0, 0, 1, 0, 1, 0]);
    for _ in 0..4 {
        pump(&mut s, &mut c, now, |_| {});
        pump(&mut c, &mut s, now, |_| {});
    }
    assert!(c.is_connected() && s.is_connected());
    assert!(s.stats().wrong_epoch_records >= 1);
}

/// Real 1.3 handshakes with one byte of some datagrams flipped, truncated or cut short
/// (the plaintext hellos included, where parsing meets unauthenticated bytes): every
/// connection either completes or ends in a named failure, and nothing panics.
#[test]
fn mutated_13_handshakes_never_panic() {
    let mut rng = SimRng::new(1313);
    let mut outcomes = [0usize; 2];
    for _ in 0..300 {
        let now = Instant::now();
        let mut c = conn(Role::Client, &BOTH, now);
        let mut s = conn(Role::Server, &BOTH, now);
        let mut mutate = |d: &mut Vec<u8>| {
            if d.is_empty() || rng.range(0..4) != 0 {
                return;
            }
            let at = rng.range(0..d.len() as u64) as usize;
            match rng.range(0..3) {
                0 => d[at] ^= 1 << rng.range(0..8),
                1 => d.truncate(at),
                _ => d[at] = rng.next_u64() as u8,
            }
        };
        let mut t = now;
        for _ in 0..12 {
            while let Some(mut d) = c.poll_transmit() {
                mutate(&mut d);
                s.handle_datagram(t, &d);
            }
            while let Some(mut d) = s.poll_transmit() {
                mutate(&mut d);
                c.handle_datagram(t, &d);
            }
            t += Duration::from_millis(500);
            c.handle_timeout(t);
            s.handle_timeout(t);
        }
        let done = c.is_connected() && s.is_connected();
        outcomes[usize::from(done)] += 1;
        let _ = (failure(&mut c), failure(&mut s));
    }
    assert!(
        outcomes[1] > 0,
        "some handshakes survive the damage: {outcomes:?}"
    );
}

/// Where a ServerHello's X25519MLKEM768 key_share extension starts in a datagram: type 51,
/// extension length 1124, group 0x11ec, share length 1120.
fn hybrid_server_share_at(d: &[u8]) -> Option<usize> {
    const PATTERN: [u8; 8] = [0x00, 0x33, 0x04, 0x64, 0x11, 0xec, 0x04, 0x60];
    d.windows(PATTERN.len()).position(|w| w == PATTERN)
}

/// A server share one byte shorter than X25519MLKEM768's 1120 (the extension keeps its
/// length, so the message still parses): the client refuses it with illegal_parameter.
#[test]
fn a_client_refuses_a_hybrid_server_share_of_the_wrong_length() {
    let now = Instant::now();
    let mut c = conn(Role::Client, &BOTH, now);
    let mut s = conn(Role::Server, &BOTH, now);
    pump(&mut c, &mut s, now, |_| {});
    let mut found = false;
    while let Some(mut d) = s.poll_transmit() {
        if let Some(at) = hybrid_server_share_at(&d) {
            d[at + 7] = 0x5f;
            found = true;
        }
        c.handle_datagram(now, &d);
    }
    assert!(found, "the server answered with the hybrid");
    assert_eq!(failure(&mut c), Some(Error::BadKeyShare));
    let alert = c.poll_transmit().expect("an alert");
    assert_eq!(alert[0], 21, "a plaintext alert record");
    assert_eq!(alert[alert.len() - 2..], [2, 47], "fatal illegal_parameter");
}

/// A corrupted ML-KEM ciphertext decapsulates without error to an unrelated secret
/// (implicit rejection), so the client's handshake keys differ from the server's: every
/// protected record of the server's flight fails authentication and is dropped, as RFC
/// 9147 section 4.5.3 wants, and the handshake ends at its deadline. Nothing is accepted
/// and nothing panics.
#[test]
fn a_corrupted_hybrid_ciphertext_leaves_the_client_unable_to_read_the_server() {
    let now = Instant::now();
    let mut c = conn(Role::Client, &BOTH, now);
    let mut s = conn(Role::Server, &BOTH, now);
    let corrupt = |d: &mut [u8]| {
        if let Some(byte) = hybrid_server_share_at(d).and_then(|at| d.get_mut(at + 8 + 500)) {
            *byte ^= 0x01;
        }
    };
    let mut t = now;
    while t < now + Duration::from_secs(31) {
        pump(&mut c, &mut s, t, |_| {});
        pump(&mut s, &mut c, t, corrupt);
        t += Duration::from_millis(250);
        c.handle_timeout(t);
        s.handle_timeout(t);
    }
    assert!(!c.is_connected() && !s.is_connected());
    assert!(c.stats().bad_mac_records > 0, "{:?}", c.stats());
    assert!(matches!(
        failure(&mut c),
        Some(Error::HandshakeTimeout { .. })
    ));
}
