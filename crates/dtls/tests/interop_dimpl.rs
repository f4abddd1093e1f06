//! Interop with dimpl (str0m's sans-IO DTLS, which speaks 1.3): a stack we did not write,
//! in both roles, on the same virtual-time netsim links as the matrix. Both ends must
//! report the same SRTP keying material (dimpl exports the RFC 5764 block, as we do).

mod sim;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sim::Peer;
use sluice_dtls::{
    Certificate, CipherSuite, Config, Connected, Connection, DtlsVersion, Fingerprint, NamedGroup,
    PeerAuth, Role, SrtpProfile,
};
use sluice_netsim::sim::{Endpoint, Pair};
use sluice_netsim::LinkConfig;

/// dimpl behind the netsim endpoint interface.
struct DimplPeer {
    dtls: dimpl::Dtls,
    out: VecDeque<Vec<u8>>,
    timeout: Option<Instant>,
    connected: bool,
    keying: Option<(Vec<u8>, dimpl::SrtpProfile)>,
    peer_cert: Option<Vec<u8>>,
    error: Option<String>,
    now: Option<Instant>,
}

impl DimplPeer {
    fn new(dtls: dimpl::Dtls) -> Self {
        let mut p = Self {
            dtls,
            out: VecDeque::new(),
            timeout: None,
            connected: false,
            keying: None,
            peer_cert: None,
            error: None,
            now: None,
        };
        p.drain();
        p
    }

    fn drain(&mut self) {
        // Large enough for a 7 KB peer certificate, which dimpl hands out whole.
        let mut buf = vec![0u8; 16384];
        loop {
            match self.dtls.poll_output(&mut buf) {
                dimpl::Output::Packet(p) => self.out.push_back(p.to_vec()),
                dimpl::Output::Timeout(t) => {
                    self.timeout = Some(t);
                    break;
                }
                dimpl::Output::Connected => self.connected = true,
                dimpl::Output::PeerCert(c) => self.peer_cert = Some(c.to_vec()),
                dimpl::Output::KeyingMaterial(km, profile) => {
                    self.keying = Some((km.to_vec(), profile));
                }
                dimpl::Output::BufferTooSmall { needed } => buf.resize(needed, 0),
                _ => {}
            }
        }
    }
}

impl Endpoint for DimplPeer {
    fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        self.now = Some(now);
        if self.error.is_some() {
            return;
        }
        let result = self
            .dtls
            .handle_timeout(now)
            .and_then(|()| self.dtls.handle_packet(datagram));
        if let Err(e) = result {
            self.error = Some(format!("{e:?}"));
        }
        self.drain();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = Some(now);
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.dtls.handle_timeout(now) {
            self.error = Some(format!("{e:?}"));
        }
        self.drain();
    }

    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.error.is_some() {
            return None;
        }
        // dimpl can report a timer that is already due and stays due until something
        // else happens; asking again a millisecond later keeps virtual time moving.
        match (self.timeout, self.now) {
            (Some(t), Some(now)) if t <= now => Some(now + Duration::from_millis(1)),
            (t, _) => t,
        }
    }
}

fn profile_matches(ours: SrtpProfile, theirs: dimpl::SrtpProfile) -> bool {
    matches!(
        (ours, theirs),
        (
            SrtpProfile::Aes128CmHmacSha1_80,
            dimpl::SrtpProfile::AES128_CM_SHA1_80
        ) | (
            SrtpProfile::AeadAes128Gcm,
            dimpl::SrtpProfile::AEAD_AES_128_GCM
        ) | (
            SrtpProfile::AeadAes256Gcm,
            dimpl::SrtpProfile::AEAD_AES_256_GCM
        )
    )
}

fn our_config(versions: &[DtlsVersion], mtu: usize) -> (Arc<Config>, Arc<Certificate>) {
    our_config_with(
        versions,
        mtu,
        Arc::new(Certificate::generate().expect("certificate")),
    )
}

fn our_config_with(
    versions: &[DtlsVersion],
    mtu: usize,
    cert: Arc<Certificate>,
) -> (Arc<Config>, Arc<Certificate>) {
    let mut c = Config::new(cert.clone());
    c.versions = versions.to_vec();
    c.max_datagram_size = mtu;
    (Arc::new(c), cert)
}

fn dimpl_config(mtu: usize) -> Arc<dimpl::Config> {
    Arc::new(
        // dimpl fails when its small default queues fill (docs/dtls.md); a 7 KB
        // certificate flight in 200-byte datagrams needs room for about 60 records.
        dimpl::Config::builder()
            .mtu(mtu)
            .max_queue_rx(256)
            .max_queue_tx(256)
            .build()
            .expect("dimpl config"),
    )
}

enum DimplKind {
    V13,
    V12,
    Auto,
}

fn dimpl_endpoint(kind: DimplKind, mtu: usize, start: Instant) -> (dimpl::Dtls, Vec<u8>) {
    let cert = dimpl::certificate::generate_self_signed_certificate().expect("dimpl cert");
    let der = cert.certificate.clone();
    let config = dimpl_config(mtu);
    let dtls = match kind {
        DimplKind::V13 => dimpl::Dtls::new_13(config, cert, start),
        DimplKind::V12 => dimpl::Dtls::new_12(config, cert, start),
        DimplKind::Auto => dimpl::Dtls::new_auto(config, cert, start),
    };
    (dtls, der)
}

struct Outcome {
    ours: Option<Box<Connected>>,
    our_error: Option<sluice_dtls::Error>,
    dimpl_error: Option<String>,
    dimpl_connected: bool,
    dimpl_keying: Option<(Vec<u8>, dimpl::SrtpProfile)>,
    dimpl_peer_cert: Option<Vec<u8>>,
    our_der: Vec<u8>,
    elapsed: Duration,
    our_stats: sluice_dtls::ConnectionStats,
    busy_loop: Option<sluice_netsim::sim::Side>,
}

/// Our engine as `our_role` against dimpl as the other role.
fn run(
    our_role: Role,
    our_versions: &[DtlsVersion],
    kind: DimplKind,
    mtu: usize,
    loss: f64,
    seed: u64,
) -> Outcome {
    run_with(our_role, our_versions, kind, mtu, loss, seed, None)
}

fn run_with(
    our_role: Role,
    our_versions: &[DtlsVersion],
    kind: DimplKind,
    mtu: usize,
    loss: f64,
    seed: u64,
    cert: Option<Arc<Certificate>>,
) -> Outcome {
    run_tweaked(our_role, our_versions, kind, mtu, loss, seed, cert, &|_| {})
}

#[allow(clippy::too_many_arguments)]
fn run_tweaked(
    our_role: Role,
    our_versions: &[DtlsVersion],
    kind: DimplKind,
    mtu: usize,
    loss: f64,
    seed: u64,
    cert: Option<Arc<Certificate>>,
    tweak: &dyn Fn(&mut Config),
) -> Outcome {
    let start = Instant::now();
    let (config, cert) = match cert {
        Some(cert) => our_config_with(our_versions, mtu, cert),
        None => our_config(our_versions, mtu),
    };
    let mut config = (*config).clone();
    tweak(&mut config);
    let config = Arc::new(config);
    let (mut dimpl, dimpl_der) = dimpl_endpoint(kind, mtu, start);
    if our_role == Role::Server {
        dimpl.set_active(true);
    }
    let ours = Connection::new(
        config,
        our_role,
        PeerAuth::Fingerprint(Fingerprint::of_der(&dimpl_der)),
        b"peer",
        start,
    );
    let mut link = LinkConfig::delayed(Duration::from_millis(35)).with_mtu(mtu);
    link.loss = loss;
    let mut pair = Pair::with_start(
        Peer::new(ours, start),
        DimplPeer::new(dimpl),
        link.clone(),
        link,
        seed,
        start,
    );
    let outcome = pair.drive_until(Duration::from_secs(30), |a, b| {
        (a.connected.is_some() && b.connected && b.keying.is_some())
            || a.failed.is_some()
            || b.error.is_some()
    });
    // Let the last flight and its acknowledgement settle.
    pair.drive_until(Duration::from_secs(2), |_, _| false);
    let (a, b) = (pair.a(), pair.b());
    Outcome {
        ours: a.connected.clone(),
        our_error: a.failed.clone(),
        dimpl_error: b.error.clone(),
        dimpl_connected: b.connected,
        dimpl_keying: b.keying.clone(),
        dimpl_peer_cert: b.peer_cert.clone(),
        our_der: cert.der().to_vec(),
        elapsed: outcome.elapsed,
        our_stats: a.conn.stats(),
        busy_loop: outcome.busy_loop,
    }
}

fn assert_equal_keys(o: &Outcome, version: DtlsVersion) {
    assert!(
        o.our_error.is_none() && o.dimpl_error.is_none(),
        "ours: {:?}, dimpl: {:?}",
        o.our_error,
        o.dimpl_error
    );
    let ours = o.ours.as_ref().expect("we connected");
    assert!(o.dimpl_connected, "dimpl connected");
    assert_eq!(ours.version, version);
    let (km, profile) = o.dimpl_keying.as_ref().expect("dimpl exported keys");
    assert!(profile_matches(ours.srtp.profile, *profile), "same profile");
    assert_eq!(&ours.srtp.exported, km, "same SRTP keying material");
    assert_eq!(
        o.dimpl_peer_cert.as_deref(),
        Some(o.our_der.as_slice()),
        "dimpl saw our certificate"
    );
}

const BOTH: [DtlsVersion; 2] = [DtlsVersion::Dtls13, DtlsVersion::Dtls12];

#[test]
fn our_13_server_and_a_dimpl_13_client_agree_on_srtp_keys() {
    let o = run(Role::Server, &BOTH, DimplKind::V13, 1150, 0.0, 1);
    assert_equal_keys(&o, DtlsVersion::Dtls13);
}

#[test]
fn our_13_client_and_a_dimpl_13_server_agree_on_srtp_keys() {
    let o = run(Role::Client, &BOTH, DimplKind::V13, 1150, 0.0, 2);
    assert_equal_keys(&o, DtlsVersion::Dtls13);
}

/// dimpl 0.9 has no ML-KEM: our client's hybrid share is ignored, the X25519 share sent
/// beside it is used, and no HelloRetryRequest is needed; our server, whose first group
/// is the hybrid, takes dimpl's X25519 share.
#[test]
fn a_dimpl_peer_without_the_hybrid_gets_x25519_in_both_roles() {
    for role in [Role::Client, Role::Server] {
        let o = run(role, &BOTH, DimplKind::V13, 1150, 0.0, 6);
        assert_equal_keys(&o, DtlsVersion::Dtls13);
        let ours = o.ours.as_ref().expect("connected");
        assert_eq!(ours.group, NamedGroup::X25519, "{role:?}");
    }
}

/// TLS_AES_256_GCM_SHA384 with dimpl in both roles: our side allows only it, so dimpl's
/// server must pick it and dimpl's client must have offered it.
#[test]
fn aes_256_gcm_sha384_with_dimpl_in_both_roles() {
    for role in [Role::Client, Role::Server] {
        let o = run_tweaked(role, &BOTH, DimplKind::V13, 1150, 0.0, 7, None, &|c| {
            c.cipher_suites = vec![CipherSuite::Tls13Aes256GcmSha384];
            c.versions = vec![DtlsVersion::Dtls13];
        });
        assert_equal_keys(&o, DtlsVersion::Dtls13);
        let ours = o.ours.as_ref().expect("connected");
        assert_eq!(
            ours.cipher_suite,
            CipherSuite::Tls13Aes256GcmSha384,
            "{role:?}"
        );
    }
}

#[test]
fn our_13_client_and_a_dimpl_auto_server_choose_13() {
    let o = run(Role::Client, &BOTH, DimplKind::Auto, 1150, 0.0, 3);
    assert_equal_keys(&o, DtlsVersion::Dtls13);
}

#[test]
fn our_13_client_falls_back_to_12_with_a_dimpl_12_server() {
    let o = run(Role::Client, &BOTH, DimplKind::V12, 1150, 0.0, 4);
    assert_equal_keys(&o, DtlsVersion::Dtls12);
}

#[test]
fn our_13_server_answers_a_dimpl_12_client_with_12() {
    let o = run(Role::Server, &BOTH, DimplKind::V12, 1150, 0.0, 5);
    assert_equal_keys(&o, DtlsVersion::Dtls12);
}

#[test]
fn interop_13_survives_small_datagrams_and_loss_in_both_roles() {
    for seed in 0..10 {
        for role in [Role::Server, Role::Client] {
            let o = run(role, &BOTH, DimplKind::V13, 200, 0.2, 100 + seed);
            eprintln!(
                "{role:?} seed {seed}: ours {:?} dimpl {} after {:?} (ours {:?}) busy {:?}",
                o.ours.as_ref().map(|c| c.version),
                o.dimpl_connected,
                o.elapsed,
                o.our_stats,
                o.busy_loop
            );
            assert_equal_keys(&o, DtlsVersion::Dtls13);
            assert!(o.elapsed < Duration::from_secs(30));
        }
    }
}

/// Our 7 KB certificate reaches dimpl in both roles: whole at 1200 bytes, and through
/// 10 % loss in 600-byte datagrams, where our ACK-driven re-sends keep the first
/// transmission's fragment boundaries (dimpl reassembles only fragments matching the
/// ones it has seen, and at most 50 per message: in 200-byte datagrams this flight never
/// completes against it, a limit of dimpl 0.9 that docs/dtls.md records).
#[test]
fn interop_13_with_a_7_kb_certificate_in_both_roles() {
    for role in [Role::Client, Role::Server] {
        let o = run_with(
            role,
            &BOTH,
            DimplKind::V13,
            1200,
            0.0,
            300,
            Some(sim::large_cert(0)),
        );
        assert_equal_keys(&o, DtlsVersion::Dtls13);
        for seed in 0..10 {
            let o = run_with(
                role,
                &BOTH,
                DimplKind::V13,
                600,
                0.1,
                400 + seed,
                Some(sim::large_cert(0)),
            );
            assert_equal_keys(&o, DtlsVersion::Dtls13);
        }
    }
}
