//! Full in-memory handshakes per second on one core: DTLS 1.2, DTLS 1.3 with X25519 (the
//! rows measured before the hybrid existed) and DTLS 1.3 with X25519MLKEM768, the default.
//! Run: `cargo bench -p sluice-dtls --bench handshake`.

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_dtls::{
    Certificate, Config, Connection, DtlsVersion, Event, NamedGroup, PeerAuth, Role,
};

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

fn configs(version: DtlsVersion, groups: &[NamedGroup]) -> (Arc<Config>, Arc<Config>) {
    let config = || {
        let mut c = Config::new(Arc::new(Certificate::generate().unwrap()));
        c.versions = vec![version];
        c.groups = groups.to_vec();
        Arc::new(c)
    };
    (config(), config())
}

fn bench_handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("dtls");
    g.throughput(Throughput::Elements(1));
    // The 1.2 name is the one earlier measurements in docs/benchmarks.md used.
    let classical = [NamedGroup::X25519, NamedGroup::P256];
    for (name, version, groups) in [
        (
            "full_handshake_both_sides",
            DtlsVersion::Dtls12,
            &classical[..],
        ),
        (
            "full_handshake_both_sides_dtls13",
            DtlsVersion::Dtls13,
            &classical[..],
        ),
        (
            "full_handshake_both_sides_dtls13_x25519mlkem768",
            DtlsVersion::Dtls13,
            &NamedGroup::ALL[..],
        ),
    ] {
        let (client, server) = configs(version, groups);
        g.bench_function(name, |b| b.iter(|| handshake(&client, &server)));
    }
    g.finish();
}

criterion_group!(benches, bench_handshake);
criterion_main!(benches);
