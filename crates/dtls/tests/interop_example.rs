//! The `dtls-peer` example as a command-line tool: against OpenSSL in both roles, against
//! itself, and its failure exit. Each check reads what the tool prints, as a user would.
//!
//! `cargo test -p sluice-dtls` builds the examples before running tests; when only this
//! test is built (`--test interop_example`), build the example first with
//! `cargo build -p sluice-dtls --example dtls-peer` (the test fails if it is missing).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::process::{
    openssl_dtls_srtp_args, openssl_keying_material, openssl_srtp_profile, ChildProcess, TempDir,
    OPENSSL_MISSING,
};
use sluice_dtls::generate_pem;

/// Bound on every wait for a child (loopback handshakes take milliseconds).
const CHILD_WAIT: Duration = Duration::from_secs(20);

/// target/<profile>/examples/dtls-peer, next to this test's target/<profile>/deps/.
fn example_binary() -> String {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .expect("test binary lives in target/<profile>/deps");
    let path = profile_dir
        .join("examples")
        .join(format!("dtls-peer{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p sluice-dtls --example dtls-peer`",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

fn spawn_peer(args: &[&str]) -> ChildProcess {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    ChildProcess::spawn(
        &example_binary(),
        &args,
        "the dtls-peer example is not built",
    )
}

fn peer_line(prefix: &'static str) -> impl Fn(&str) -> Option<String> {
    move |line| line.strip_prefix(prefix).map(|v| v.trim().to_owned())
}

/// Waits until dtls-peer reports its bound socket (so a peer may send to it).
fn wait_ready(peer: &mut ChildProcess) {
    peer.wait_for("bound socket", CHILD_WAIT, |l| {
        (l.starts_with("stderr: dtls-peer: ") && l.contains(" on ")).then_some(())
    });
}

/// What dtls-peer printed: its profile and keying-material lines, and its exit success.
fn peer_result(peer: &mut ChildProcess) -> (String, String) {
    let profile = peer.wait_for("srtp-profile line", CHILD_WAIT, peer_line("srtp-profile: "));
    let keys = peer.wait_for(
        "keying-material",
        CHILD_WAIT,
        peer_line("keying-material: "),
    );
    let status = peer.wait_exit(CHILD_WAIT);
    assert!(
        status.success(),
        "dtls-peer exited with {status}:\n{}",
        peer.output()
    );
    (profile, keys)
}

#[test]
fn example_server_and_openssl_client_print_equal_keying_material() {
    let dir = TempDir::new();
    let (_, cert_pem, key_pem) = generate_pem().expect("certificate");
    let listen = format!("127.0.0.1:{}", common::free_udp_port());
    let mut peer = spawn_peer(&[
        "--role",
        "server",
        "--listen",
        &listen,
        "--mtu",
        "256",
        "--linger-ms",
        "200",
    ]);
    wait_ready(&mut peer);

    let mut args = vec!["s_client".to_owned()];
    args.extend(openssl_dtls_srtp_args());
    args.extend([
        "-connect".to_owned(),
        listen,
        "-cert".to_owned(),
        dir.write("cert.pem", &cert_pem),
        "-key".to_owned(),
        dir.write("key.pem", &key_pem),
    ]);
    let mut openssl = ChildProcess::spawn("openssl", &args, OPENSSL_MISSING);
    let their_profile = openssl.wait_for("SRTP profile", CHILD_WAIT, openssl_srtp_profile);
    let their_keys = openssl.wait_for("keying material", CHILD_WAIT, openssl_keying_material);

    let (profile, keys) = peer_result(&mut peer);
    assert_eq!(profile, their_profile);
    assert_eq!(keys, their_keys);
}

#[test]
fn example_client_with_pem_files_and_openssl_server_print_equal_keying_material() {
    let dir = TempDir::new();
    let (_, server_cert, server_key) = generate_pem().expect("server certificate");
    let (_, client_cert, client_key) = generate_pem().expect("client certificate");
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
        dir.write("server-cert.pem", &server_cert),
        "-key".to_owned(),
        dir.write("server-key.pem", &server_key),
    ]);
    let mut openssl = ChildProcess::spawn("openssl", &args, OPENSSL_MISSING);
    openssl.wait_for("ACCEPT line", CHILD_WAIT, |l| {
        (l.trim() == "ACCEPT").then_some(())
    });

    let connect = format!("127.0.0.1:{port}");
    let cert = dir.write("client-cert.pem", &client_cert);
    let key = dir.write("client-key.pem", &client_key);
    let mut peer = spawn_peer(&[
        "--role",
        "client",
        "--connect",
        &connect,
        "--mtu",
        "256",
        "--cert",
        &cert,
        "--key",
        &key,
        "--linger-ms",
        "200",
    ]);
    let their_profile = openssl.wait_for("SRTP profile", CHILD_WAIT, openssl_srtp_profile);
    let their_keys = openssl.wait_for("keying material", CHILD_WAIT, openssl_keying_material);

    let (profile, keys) = peer_result(&mut peer);
    assert_eq!(profile, their_profile);
    assert_eq!(keys, their_keys);
    assert!(
        openssl.output().contains(client_cert.trim()),
        "OpenSSL did not receive the certificate from --cert:\n{}",
        openssl.output()
    );
}

#[test]
fn example_client_and_server_agree_on_a_restricted_profile_at_200_byte_datagrams() {
    let listen = format!("127.0.0.1:{}", common::free_udp_port());
    let gcm = "SRTP_AEAD_AES_128_GCM";
    let mut server = spawn_peer(&[
        "--role",
        "server",
        "--listen",
        &listen,
        "--srtp-profile",
        gcm,
        "--mtu",
        "200",
        "--linger-ms",
        "200",
    ]);
    wait_ready(&mut server);
    let mut client = spawn_peer(&[
        "--role",
        "client",
        "--connect",
        &listen,
        "--mtu",
        "200",
        "--linger-ms",
        "200",
    ]);
    let (client_profile, client_keys) = peer_result(&mut client);
    let (server_profile, server_keys) = peer_result(&mut server);
    assert_eq!(server_profile, gcm);
    assert_eq!(client_profile, gcm);
    assert_eq!(client_keys, server_keys);
    assert_eq!(
        client_keys.len(),
        112,
        "56 bytes of AEAD_AES_128_GCM keying material"
    );
}

#[test]
fn example_exits_with_failure_and_the_reason_when_nobody_answers() {
    let connect = format!("127.0.0.1:{}", common::free_udp_port());
    let mut client = spawn_peer(&[
        "--role",
        "client",
        "--connect",
        &connect,
        "--timeout-s",
        "1",
    ]);
    let status = client.wait_exit(CHILD_WAIT);
    assert!(!status.success(), "exit status {status}");
    assert!(
        client.output().contains("handshake deadline passed"),
        "no reason printed:\n{}",
        client.output()
    );
}

/// As a server the example keeps answering until its peer has been quiet for the engine's
/// largest retransmission interval (3 s), not for a fixed 2 s: a client that lost the
/// final flight, and whose repeats are held up in the network for 2.4 s, still gets it
/// again and completes. (With `--linger-ms 2000`, the old behaviour, this test fails.)
#[test]
fn example_server_lingers_until_a_client_that_lost_the_final_flight_is_served() {
    use std::net::UdpSocket;
    use std::sync::Arc;
    use std::time::Instant;

    use sluice_dtls::{Certificate, Config, Connection, Event, PeerAuth, Role};

    let listen = format!("127.0.0.1:{}", common::free_udp_port());
    let mut server = spawn_peer(&["--role", "server", "--listen", &listen]);
    wait_ready(&mut server);

    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.connect(&listen).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let cert = Arc::new(Certificate::generate().expect("certificate"));
    // A DTLS 1.2 client: its final flight is the server's CCS + Finished, which this test
    // drops (in 1.3 the client sends the last flight and the server ACKs it).
    let mut config = Config::new(cert);
    config.versions = vec![sluice_dtls::DtlsVersion::Dtls12];
    let mut client = Connection::new(
        Arc::new(config),
        Role::Client,
        PeerAuth::AcceptAnyCertificate,
        b"server",
        Instant::now(),
    );
    const HOLD: Duration = Duration::from_millis(2400);
    let mut lost_final_flight_at: Option<Instant> = None;
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut connected = false;
    let deadline = Instant::now() + CHILD_WAIT;
    let mut buf = vec![0u8; 65_536];
    while !connected && Instant::now() < deadline {
        // the client's datagrams: held up in the network for HOLD after the loss
        while let Some(datagram) = client.poll_transmit() {
            match lost_final_flight_at {
                Some(at) if at.elapsed() < HOLD => held.push(datagram),
                _ => {
                    socket.send(&datagram).expect("send");
                }
            }
        }
        if lost_final_flight_at.is_some_and(|at| at.elapsed() >= HOLD) && !held.is_empty() {
            // the newest copy of the client's repeated flight arrives, late
            if let Some(last) = held.last() {
                socket.send(last).expect("send");
            }
            held.clear();
        }
        if let Ok(n) = socket.recv(&mut buf) {
            let datagram = &buf[..n];
            // the server's final flight is its only datagram opening with a CCS record
            if lost_final_flight_at.is_none() && datagram.first() == Some(&20) {
                lost_final_flight_at = Some(Instant::now());
                continue;
            }
            client.handle_datagram(Instant::now(), datagram);
        }
        let now = Instant::now();
        if client.poll_timeout().is_some_and(|t| t <= now) {
            client.handle_timeout(now);
        }
        while let Some(event) = client.poll_event() {
            match event {
                Event::Connected(_) => connected = true,
                Event::Failed(e) => panic!("client failed: {e}\n{}", server.output()),
                Event::Closed => {}
            }
        }
    }
    assert!(
        lost_final_flight_at.is_some(),
        "the final flight was seen and dropped"
    );
    assert!(
        connected,
        "the server answered the late repeat:\n{}",
        server.output()
    );
    let status = server.wait_exit(CHILD_WAIT);
    assert!(status.success(), "dtls-peer exited with {status}");
}
