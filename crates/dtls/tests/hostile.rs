//! Bad input: every case fails cleanly with the expected alert, or is dropped and counted,
//! and nothing panics.

mod sim;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_dtls::{
    AlertDescription, Certificate, Config, Connection, Error, Event, Fingerprint, PeerAuth, Role,
};
use sluice_netsim::dtls_view;
use sluice_netsim::SimRng;

struct Side {
    conn: Connection,
    events: Vec<Event>,
    sent: Vec<Vec<u8>>,
}

impl Side {
    fn new(role: Role, cert: Arc<Certificate>, peer: PeerAuth, now: Instant) -> Self {
        // These cases tamper with DTLS 1.2 records; hostile_13.rs covers 1.3.
        let mut config = Config::new(cert);
        config.versions = vec![sluice_dtls::DtlsVersion::Dtls12];
        let conn = Connection::new(Arc::new(config), role, peer, b"peer", now);
        Self {
            conn,
            events: Vec::new(),
            sent: Vec::new(),
        }
    }

    fn drain(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(d) = self.conn.poll_transmit() {
            self.sent.push(d.clone());
            out.push(d);
        }
        while let Some(e) = self.conn.poll_event() {
            self.events.push(e);
        }
        out
    }

    fn connected(&self) -> bool {
        self.events.iter().any(|e| matches!(e, Event::Connected(_)))
    }

    fn failure(&self) -> Option<&Error> {
        self.events.iter().find_map(|e| match e {
            Event::Failed(e) => Some(e),
            _ => None,
        })
    }

    /// The fatal alert this side sent, if any (plaintext alerts only).
    fn sent_plaintext_alert(&self) -> Option<u8> {
        self.sent.iter().find_map(|d| {
            dtls_view::records(d)
                .map_while(Result::ok)
                .find(|r| r.content_type == 21 && r.epoch == 0)
                .and_then(|r| r.body.get(1).copied())
        })
    }
}

fn pair(client_expects: PeerAuth, server_expects: Option<PeerAuth>) -> (Side, Side, Instant) {
    let now = Instant::now();
    let cc = sim::small_cert(0);
    let sc = sim::small_cert(1);
    let client = Side::new(Role::Client, cc.clone(), client_expects, now);
    let server = Side::new(
        Role::Server,
        sc,
        server_expects.unwrap_or(PeerAuth::Fingerprint(cc.fingerprint())),
        now,
    );
    (client, server, now)
}

/// Exchanges datagrams in memory until quiet, applying `tamper` to what the client sends.
fn exchange(c: &mut Side, s: &mut Side, now: Instant, mut tamper: impl FnMut(&mut Vec<u8>)) {
    for _ in 0..20 {
        let mut moved = false;
        for mut d in c.drain() {
            tamper(&mut d);
            s.conn.handle_datagram(now, &d);
            moved = true;
        }
        for d in s.drain() {
            c.conn.handle_datagram(now, &d);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    c.drain();
    s.drain();
}

#[test]
fn wrong_fingerprint_fails_with_bad_certificate() {
    let (mut c, mut s, now) = pair(PeerAuth::Fingerprint(Fingerprint([7; 32])), None);
    exchange(&mut c, &mut s, now, |_| {});
    assert_eq!(c.failure(), Some(&Error::FingerprintMismatch));
    assert_eq!(
        c.sent_plaintext_alert(),
        Some(AlertDescription::BadCertificate.to_u8())
    );
    assert_eq!(
        s.failure(),
        Some(&Error::PeerAlert(AlertDescription::BadCertificate))
    );
    assert!(!c.connected() && !s.connected());
}

#[test]
fn server_refuses_a_client_certificate_with_the_wrong_fingerprint() {
    let sc = sim::small_cert(1);
    let (mut c, mut s, now) = pair(
        PeerAuth::Fingerprint(sc.fingerprint()),
        Some(PeerAuth::Fingerprint(Fingerprint([9; 32]))),
    );
    exchange(&mut c, &mut s, now, |_| {});
    assert_eq!(s.failure(), Some(&Error::FingerprintMismatch));
    assert!(!s.connected() && !c.connected());
}

fn flip_last_byte_of_handshake(d: &mut [u8], msg_type: u8) -> bool {
    let base = d.as_ptr() as usize;
    let target = dtls_view::records(d)
        .map_while(Result::ok)
        .filter_map(|r| r.handshake_fragments())
        .flat_map(|f| f.map_while(Result::ok))
        .find(|f| f.msg_type == msg_type && !f.body.is_empty())
        .map(|f| f.body.as_ptr() as usize - base + f.body.len() - 1);
    match target {
        Some(i) => {
            d[i] ^= 0x55;
            true
        }
        None => false,
    }
}

#[test]
fn tampered_certificate_verify_fails_with_decrypt_error() {
    let sc = sim::small_cert(1);
    let (mut c, mut s, now) = pair(PeerAuth::Fingerprint(sc.fingerprint()), None);
    let mut tampered = false;
    exchange(&mut c, &mut s, now, |d| {
        tampered |= flip_last_byte_of_handshake(d, 15);
    });
    assert!(tampered);
    assert_eq!(
        s.failure(),
        Some(&Error::BadSignature {
            what: "CertificateVerify"
        })
    );
    assert_eq!(
        s.sent_plaintext_alert(),
        Some(AlertDescription::DecryptError.to_u8())
    );
    assert_eq!(
        c.failure(),
        Some(&Error::PeerAlert(AlertDescription::DecryptError))
    );
}

#[test]
fn tampered_finished_is_dropped_as_a_bad_record_and_the_handshake_times_out() {
    let sc = sim::small_cert(1);
    let (mut c, mut s, now) = pair(PeerAuth::Fingerprint(sc.fingerprint()), None);
    let flip_finished = |d: &mut Vec<u8>| {
        let base = d.as_ptr() as usize;
        let at = dtls_view::records(d)
            .map_while(Result::ok)
            .find(|r| r.epoch == 1 && r.content_type == 22)
            .map(|r| r.body.as_ptr() as usize - base + r.body.len() / 2);
        if let Some(i) = at {
            d[i] ^= 1;
        }
    };
    exchange(&mut c, &mut s, now, flip_finished);
    assert!(s.conn.stats().bad_mac_records >= 1);
    assert!(
        !s.connected() && s.failure().is_none(),
        "dropped, not fatal"
    );
    // The client keeps retransmitting (always tampered); the server gives up at its deadline.
    let mut t = now;
    while let Some(next) = s.conn.poll_timeout() {
        t = next;
        s.conn.handle_timeout(t);
        c.conn.handle_timeout(t);
        exchange(&mut c, &mut s, t, flip_finished);
    }
    assert!(matches!(s.failure(), Some(Error::HandshakeTimeout { .. })));
    assert!(t.duration_since(now) <= Duration::from_secs(31));
    assert!(s.conn.stats().bad_mac_records >= 2);
}

#[test]
fn records_from_a_wrong_epoch_are_dropped_and_counted() {
    let sc = sim::small_cert(1);
    let (mut c, mut s, now) = pair(PeerAuth::Fingerprint(sc.fingerprint()), None);
    // Epoch 2 never exists; epoch 1 before keys is held back at most briefly.
    let mut bogus = vec![22, 0xfe, 0xfd, 0, 2, 0, 0, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4];
    s.conn.handle_datagram(now, &bogus);
    bogus[4] = 7;
    s.conn.handle_datagram(now, &bogus);
    assert_eq!(s.conn.stats().wrong_epoch_records, 2);
    exchange(&mut c, &mut s, now, |_| {});
    assert!(
        c.connected() && s.connected(),
        "the handshake is unaffected"
    );
    // After completion an epoch-1 record that does not authenticate is dropped too.
    bogus[4] = 1;
    s.conn.handle_datagram(now, &bogus);
    assert_eq!(s.conn.stats().bad_mac_records, 1);
    assert!(s.conn.is_connected());
}

/// A fresh server given one epoch-0 handshake record: `header` then `len` zero bytes.
fn server_fed_one_fragment(header: &[u8; 12], len: usize) -> Side {
    let now = Instant::now();
    let mut s = Side::new(
        Role::Server,
        sim::small_cert(1),
        PeerAuth::AcceptAnyCertificate,
        now,
    );
    let mut body = header.to_vec();
    body.resize(12 + len, 0);
    let mut d = vec![22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0];
    d.extend_from_slice(&(body.len() as u16).to_be_bytes());
    d.extend_from_slice(&body);
    s.conn.handle_datagram(now, &d);
    s.drain();
    s
}

#[test]
fn fragment_beyond_its_message_fails_with_decode_error() {
    // ClientHello fragment: length 120, offset 100, fragment_length 50.
    let s = server_fed_one_fragment(&[1, 0, 0, 120, 0, 0, 0, 0, 100, 0, 0, 50], 50);
    assert!(matches!(
        s.failure(),
        Some(Error::FragmentOutOfBounds {
            offset: 100,
            fragment_length: 50,
            length: 120
        })
    ));
    assert_eq!(
        s.sent_plaintext_alert(),
        Some(AlertDescription::DecodeError.to_u8())
    );
}

#[test]
fn oversized_message_is_a_fatal_alert_not_an_allocation() {
    // A ClientHello claiming 16 MiB.
    let s = server_fed_one_fragment(&[1, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 4], 4);
    assert!(
        matches!(s.failure(), Some(Error::MessageTooLarge { .. })),
        "{:?}",
        s.events
    );
    assert_eq!(
        s.sent_plaintext_alert(),
        Some(AlertDescription::RecordOverflow.to_u8())
    );
}

#[test]
fn a_flood_of_junk_records_is_dropped_and_the_handshake_still_completes() {
    let sc = sim::small_cert(1);
    let (mut c, mut s, now) = pair(PeerAuth::Fingerprint(sc.fingerprint()), None);
    let mut rng = SimRng::new(42);
    let junk = |rng: &mut SimRng| -> Vec<u8> {
        let len = rng.range(0..1500) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        match rng.range(0..3) {
            // A plausible header in front of garbage: unknown types and versions.
            0 if d.len() > 13 => {
                d[0] = 30 + (rng.range(0..200) as u8);
            }
            // Application data and alerts claiming epoch 1 with random bodies.
            1 if d.len() > 13 => {
                d[0] = 23;
                d[1] = 0xfe;
                d[2] = 0xfd;
                d[3] = 0;
                d[4] = 1;
                let body = (d.len() - 13) as u16;
                d[11..13].copy_from_slice(&body.to_be_bytes());
            }
            _ => {}
        }
        d
    };
    for _ in 0..5000 {
        s.conn.handle_datagram(now, &junk(&mut rng));
        c.conn.handle_datagram(now, &junk(&mut rng));
    }
    assert!(s.failure().is_none() && c.failure().is_none());
    exchange(&mut c, &mut s, now, |_| {});
    assert!(
        c.connected() && s.connected(),
        "client {:?} {:?}; server {:?} {:?}",
        c.events,
        c.conn,
        s.events,
        s.conn
    );
    for _ in 0..5000 {
        s.conn.handle_datagram(now, &junk(&mut rng));
    }
    assert!(s.conn.is_connected());
    let st = s.conn.stats();
    assert!(st.malformed_records + st.wrong_epoch_records + st.bad_mac_records > 1000);
}

#[test]
fn a_repeated_final_client_flight_gets_the_final_flight_again() {
    let sc = sim::small_cert(1);
    let (mut c, mut s, now) = pair(PeerAuth::Fingerprint(sc.fingerprint()), None);
    exchange(&mut c, &mut s, now, |_| {});
    assert!(c.connected() && s.connected());
    // The client's retransmitted flight 5 is the peer's repeat, not a renegotiation: the
    // server re-sends its final flight and stays connected.
    let flight5: Vec<Vec<u8>> = c.sent.iter().skip(1).cloned().collect();
    for d in &flight5 {
        s.conn.handle_datagram(now + Duration::from_secs(1), d);
    }
    assert!(!s.drain().is_empty(), "final flight re-sent");
    assert!(s.conn.is_connected());
}
