//! Full in-memory handshakes per second on one core, DTLS 1.3 and DTLS 1.2.
//! Run: `cargo bench -p sluice-dtls --bench handshake`.

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_dtls::{Certificate, Config, Connection, DtlsVersion, Event, PeerAuth, Role};

fn pair(client: &Arc<Config>, server: &Arc<Config>, now: Instant) -> (Connection, Connection) {
    let c = Connection::new(
        client.clone(),
        Role::Client,
        PeerAuth::Fingerprint(server.certificate.fingerprint()),
        b"s",
        now,
    );
    let s = Connection::new(
        server.clone(),
        Role::Server,
        PeerAuth::Fingerprint(client.certificate.fingerprint()),
        b"c",
        now,
    );
    (c, s)
}

/// Runs one handshake to completion in memory; returns both connections.
fn handshake(client: &Arc<Config>, server: &Arc<Config>) -> (Connection, Connection) {
    let now = Instant::now();
    let (mut c, mut s) = pair(client, server, now);
    let mut done = (false, false);
    while !(done.0 && done.1) {
        while let Some(d) = c.poll_transmit() {
            s.handle_datagram(now, &d);
        }
        while let Some(d) = s.poll_transmit() {
            c.handle_datagram(now, &d);
        }
        while let Some(e) = c.poll_event() {
            done.0 |= matches!(e, Event::Connected(_));
            assert!(!matches!(e, Event::Failed(_)), "{e:?}");
        }
        while let Some(e) = s.poll_event() {
            done.1 |= matches!(e, Event::Connected(_));
            assert!(!matches!(e, Event::Failed(_)), "{e:?}");
        }
    }
    (c, s)
}

fn configs(version: DtlsVersion) -> (Arc<Config>, Arc<Config>) {
    let config = || {
        let mut c = Config::new(Arc::new(Certificate::generate().unwrap()));
        c.versions = vec![version];
        Arc::new(c)
    };
    (config(), config())
}

fn bench_handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("dtls");
    g.throughput(Throughput::Elements(1));
    // The 1.2 name is the one earlier measurements in docs/benchmarks.md used.
    for (name, version) in [
        ("full_handshake_both_sides", DtlsVersion::Dtls12),
        ("full_handshake_both_sides_dtls13", DtlsVersion::Dtls13),
    ] {
        let (client, server) = configs(version);
        g.bench_function(name, |b| b.iter(|| handshake(&client, &server)));
    }
    g.finish();
}

criterion_group!(benches, bench_handshake);
criterion_main!(benches);
