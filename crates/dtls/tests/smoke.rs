use sluice_dtls::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn in_memory_handshake_completes_with_equal_keys() {
    let ca = Arc::new(Certificate::generate().unwrap());
    let cb = Arc::new(Certificate::generate().unwrap());
    let now = Instant::now();
    let mut a = Connection::new(
        Arc::new(Config::new(ca.clone())),
        Role::Client,
        PeerAuth::Fingerprint(cb.fingerprint()),
        b"a",
        now,
    );
    let mut b = Connection::new(
        Arc::new(Config::new(cb.clone())),
        Role::Server,
        PeerAuth::Fingerprint(ca.fingerprint()),
        b"b",
        now,
    );
    let mut ka = None;
    let mut kb = None;
    for _ in 0..50 {
        while let Some(d) = a.poll_transmit() {
            b.handle_datagram(now, &d);
        }
        while let Some(d) = b.poll_transmit() {
            a.handle_datagram(now, &d);
        }
        while let Some(e) = a.poll_event() {
            println!("a {e:?}");
            if let Event::Connected(c) = e {
                ka = Some(c)
            }
        }
        while let Some(e) = b.poll_event() {
            println!("b {e:?}");
            if let Event::Connected(c) = e {
                kb = Some(c)
            }
        }
        if ka.is_some() && kb.is_some() {
            break;
        }
    }
    let (ka, kb) = (ka.unwrap(), kb.unwrap());
    assert_eq!(ka.srtp.exported, kb.srtp.exported);
    assert_eq!(ka.srtp.local, kb.srtp.remote);
    let _ = Duration::ZERO;
}
