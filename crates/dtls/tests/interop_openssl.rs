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

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::UdpPeer;
use sluice_dtls::{generate_pem, Certificate, Config, Connection, PeerAuth, Role, SrtpProfile};

/// Bound on every wait for the OpenSSL child (loopback handshakes take milliseconds).
const CHILD_WAIT: Duration = Duration::from_secs(20);
/// How long our driver thread may run at most.
const RUN_FOR: Duration = Duration::from_secs(30);

const PROFILE_NAME: &str = "SRTP_AES128_CM_SHA1_80";

/// OpenSSL flags shared by both roles: DTLS 1.2 at 256-byte datagrams, SRTP with
/// AES128_CM_HMAC_SHA1_80, and the RFC 5764 exporter printed after the handshake.
fn common_args() -> Vec<String> {
    [
        "-dtls1_2",
        "-mtu",
        "256",
        "-use_srtp",
        PROFILE_NAME,
        "-keymatexport",
        "EXTRACTOR-dtls_srtp",
        "-keymatexportlen",
        "60",
    ]
    .map(String::from)
    .to_vec()
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sluice-dtls-interop-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An OpenSSL child process whose stdout and stderr lines arrive on a channel. Its stdin
/// stays open (an EOF would end s_client early). Killed and reaped on drop, on every path.
struct OpensslChild {
    child: Child,
    _stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    transcript: Vec<String>,
}

impl OpensslChild {
    fn spawn(args: &[String]) -> Self {
        let mut child = match Command::new("openssl")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "the `openssl` command is not on PATH: the OpenSSL interop tests need the \
                 OpenSSL 3 CLI (e.g. `apt-get install openssl`); refusing to skip"
            ),
            Err(e) => panic!("could not start openssl: {e}"),
        };
        let stdin = child.stdin.take().expect("piped stdin");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        forward_lines(stdout, "", tx.clone());
        forward_lines(stderr, "stderr: ", tx);
        Self {
            child,
            _stdin: stdin,
            lines,
            transcript: Vec::new(),
        }
    }

    /// Waits until a line satisfies `pick`, or fails (with the transcript so far) when
    /// the deadline passes or the child's output ends.
    fn wait_for<T>(&mut self, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + CHILD_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = pick(&line);
                    self.transcript.push(line);
                    if let Some(found) = found {
                        return found;
                    }
                }
                Err(e) => panic!(
                    "openssl: no {what} ({e:?}, exit status {:?}); output so far:\n{}",
                    self.child.try_wait().ok().flatten(),
                    self.transcript.join("\n")
                ),
            }
        }
    }

    /// Everything printed so far, one line per entry.
    fn output(&self) -> String {
        self.transcript.join("\n")
    }
}

impl Drop for OpensslChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward_lines(pipe: impl Read + Send + 'static, prefix: &'static str, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(format!("{prefix}{line}")).is_err() {
                break;
            }
        }
    });
}

/// The hex after "Keying material: " on an OpenSSL output line.
fn keying_material(line: &str) -> Option<String> {
    line.trim()
        .strip_prefix("Keying material: ")
        .map(|hex| hex.trim().to_owned())
}

/// The profile name in "SRTP Extension negotiated, profile=NAME".
fn srtp_profile(line: &str) -> Option<String> {
    line.trim()
        .strip_prefix("SRTP Extension negotiated, profile=")
        .map(|name| name.trim().to_owned())
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
    openssl: &mut OpensslChild,
    ours: &UdpPeer,
    our_certificate: &Certificate,
    openssl_certificate: &Certificate,
) {
    let profile = openssl.wait_for("negotiated SRTP profile", srtp_profile);
    let theirs = openssl.wait_for("keying material", keying_material);
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
    args.extend(common_args());
    args.extend([
        "-connect".to_owned(),
        ours.local_addr().to_string(),
        "-cert".to_owned(),
        dir.write("client-cert.pem", &their_cert_pem),
        "-key".to_owned(),
        dir.write("client-key.pem", &their_key_pem),
    ]);
    let mut openssl = OpensslChild::spawn(&args);
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
    args.extend(common_args());
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
    let mut openssl = OpensslChild::spawn(&args);
    // s_server prints ACCEPT once its socket is bound; starting earlier would only cost
    // a retransmission, but waiting keeps the test fast and its failures clear.
    openssl.wait_for("ACCEPT line", |l| (l.trim() == "ACCEPT").then_some(()));

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
