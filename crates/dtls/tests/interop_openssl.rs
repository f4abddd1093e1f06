//! Interop with the OpenSSL command line (`openssl s_server` / `openssl s_client`), an
//! independent DTLS 1.2 implementation: both roles, at 256- and 1200-byte datagrams.
//!
//! Each test completes one DTLS-SRTP handshake between sluice-dtls (in-process, over UDP
//! on 127.0.0.1) and an OpenSSL child process, then checks that OpenSSL's exported
//! "EXTRACTOR-dtls_srtp" keying material and negotiated profile equal ours, and that each
//! side saw the other's certificate.
//!
//! The `openssl` binary must be on PATH: when it is missing these tests fail (CI installs
//! it) rather than skip, so that a green run always means interop was exercised.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::{
    openssl_dtls_srtp_args, openssl_keying_material, openssl_srtp_profile, ChildProcess, TempDir,
    OPENSSL_MISSING,
};
use common::UdpPeer;
use sluice_dtls::{generate_pem, Certificate, Config, Connection, PeerAuth, Role, SrtpProfile};

/// Bound on every wait for the OpenSSL child (loopback handshakes take milliseconds).
const CHILD_WAIT: Duration = Duration::from_secs(20);
/// How long our driver thread may run at most.
const RUN_FOR: Duration = Duration::from_secs(30);

const PROFILE_NAME: &str = "SRTP_AES128_CM_SHA1_80";

fn spawn_openssl(args: &[String]) -> ChildProcess {
    ChildProcess::spawn("openssl", args, OPENSSL_MISSING)
}

/// Our engine's config for one test: our certificate and the datagram size under test.
/// SRTP keeps the default preference (AEAD GCM first): OpenSSL offers only
/// AES128_CM_HMAC_SHA1_80 here, so negotiating it is part of what is checked.
fn sluice_config(certificate: Arc<Certificate>, max_datagram_size: usize) -> Arc<Config> {
    let mut config = Config::new(certificate);
    config.max_datagram_size = max_datagram_size;
    Arc::new(config)
}

/// What both directions check once OpenSSL printed its keying material.
fn assert_interop(
    openssl: &mut ChildProcess,
    ours: &UdpPeer,
    our_certificate: &Certificate,
    openssl_certificate: &Certificate,
) {
    let profile = openssl.wait_for("negotiated SRTP profile", CHILD_WAIT, openssl_srtp_profile);
    let theirs = openssl.wait_for("keying material", CHILD_WAIT, openssl_keying_material);
    let connected = ours
        .wait(CHILD_WAIT)
        .unwrap_or_else(|e| panic!("sluice-dtls: {e:?}; openssl output:\n{}", openssl.output()));

    assert_eq!(profile, PROFILE_NAME, "profile OpenSSL negotiated");
    assert_eq!(connected.srtp.profile, SrtpProfile::Aes128CmHmacSha1_80);
    assert_eq!(connected.srtp.profile.name(), profile);
    assert_eq!(theirs.len(), 120, "OpenSSL printed 60 bytes of hex");
    assert_eq!(
        connected.srtp.exported_hex(),
        theirs,
        "exported EXTRACTOR-dtls_srtp keying material differs from OpenSSL's"
    );
    assert_eq!(
        connected.peer_fingerprint,
        openssl_certificate.fingerprint(),
        "we authenticated OpenSSL's certificate"
    );
    assert!(
        openssl
            .output()
            .contains(our_certificate.certificate_pem().trim()),
        "OpenSSL did not print our certificate; output:\n{}",
        openssl.output()
    );
}

/// sluice-dtls as server, `openssl s_client` as client.
fn sluice_server_against_openssl_client(max_datagram_size: usize) {
    let dir = TempDir::new();
    let (our_cert, _, _) = generate_pem().expect("our certificate");
    let (their_cert, their_cert_pem, their_key_pem) = generate_pem().expect("their certificate");
    let our_cert = Arc::new(our_cert);
    let conn = Connection::new(
        sluice_config(our_cert.clone(), max_datagram_size),
        Role::Server,
        PeerAuth::Fingerprint(their_cert.fingerprint()),
        b"openssl-client",
        Instant::now(),
    );
    let ours = UdpPeer::spawn(conn, None, RUN_FOR);

    let mut args = vec!["s_client".to_owned()];
    args.extend(openssl_dtls_srtp_args());
    args.extend([
        "-connect".to_owned(),
        ours.local_addr().to_string(),
        "-cert".to_owned(),
        dir.write("client-cert.pem", &their_cert_pem),
        "-key".to_owned(),
        dir.write("client-key.pem", &their_key_pem),
    ]);
    let mut openssl = spawn_openssl(&args);
    assert_interop(&mut openssl, &ours, &our_cert, &their_cert);
}

/// sluice-dtls as client, `openssl s_server` (requiring a client certificate) as server.
fn sluice_client_against_openssl_server(max_datagram_size: usize) {
    let dir = TempDir::new();
    let (our_cert, _, _) = generate_pem().expect("our certificate");
    let (their_cert, their_cert_pem, their_key_pem) = generate_pem().expect("their certificate");
    let our_cert = Arc::new(our_cert);
    let port = common::free_udp_port();

    let mut args = vec!["s_server".to_owned()];
    args.extend(openssl_dtls_srtp_args());
    args.extend([
        "-accept".to_owned(),
        format!("127.0.0.1:{port}"),
        "-naccept".to_owned(),
        "1".to_owned(),
        "-Verify".to_owned(),
        "1".to_owned(),
        "-cert".to_owned(),
        dir.write("server-cert.pem", &their_cert_pem),
        "-key".to_owned(),
        dir.write("server-key.pem", &their_key_pem),
    ]);
    let mut openssl = spawn_openssl(&args);
    // s_server prints ACCEPT once its socket is bound; starting earlier would only cost
    // a retransmission, but waiting keeps the test fast and its failures clear.
    openssl.wait_for("ACCEPT line", CHILD_WAIT, |l| {
        (l.trim() == "ACCEPT").then_some(())
    });

    let conn = Connection::new(
        sluice_config(our_cert.clone(), max_datagram_size),
        Role::Client,
        PeerAuth::Fingerprint(their_cert.fingerprint()),
        b"openssl-server",
        Instant::now(),
    );
    let peer = format!("127.0.0.1:{port}").parse().expect("address");
    let ours = UdpPeer::spawn(conn, Some(peer), RUN_FOR);
    assert_interop(&mut openssl, &ours, &our_cert, &their_cert);
}

#[test]
fn sluice_server_and_openssl_client_export_equal_keys_at_256_byte_datagrams() {
    sluice_server_against_openssl_client(256);
}

#[test]
fn sluice_server_and_openssl_client_export_equal_keys_at_1200_byte_datagrams() {
    sluice_server_against_openssl_client(1200);
}

#[test]
fn sluice_client_and_openssl_server_export_equal_keys_at_256_byte_datagrams() {
    sluice_client_against_openssl_server(256);
}

#[test]
fn sluice_client_and_openssl_server_export_equal_keys_at_1200_byte_datagrams() {
    sluice_client_against_openssl_server(1200);
}
