//! Child processes (OpenSSL, the dtls-peer example) for interop tests: output lines on a
//! channel so that every wait has a deadline, and a kill on drop on every path.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sluice-dtls-interop-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    /// Writes a file and returns its path as a command-line argument.
    pub fn write(&self, name: &str, contents: &str) -> String {
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

/// A child whose stdout and stderr lines (stderr prefixed "stderr: ") arrive on a
/// channel. Its stdin stays open (an EOF ends `openssl s_client`). Killed and reaped on
/// drop.
pub struct ChildProcess {
    name: String,
    child: Child,
    _stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    transcript: Vec<String>,
}

impl ChildProcess {
    /// Starts `program`; if it cannot be found, the test fails with `missing_hint`.
    pub fn spawn(program: &str, args: &[String], missing_hint: &str) -> Self {
        let mut child = match Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("`{program}` not found: {missing_hint}")
            }
            Err(e) => panic!("could not start {program}: {e}"),
        };
        let stdin = child.stdin.take().expect("piped stdin");
        let (tx, lines) = mpsc::channel();
        forward_lines(child.stdout.take().expect("piped stdout"), "", tx.clone());
        forward_lines(child.stderr.take().expect("piped stderr"), "stderr: ", tx);
        Self {
            name: program.rsplit('/').next().unwrap_or(program).to_owned(),
            child,
            _stdin: stdin,
            lines,
            transcript: Vec::new(),
        }
    }

    /// Waits until a line satisfies `pick`; fails (with the output so far) when `timeout`
    /// passes or the child's output ends first.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        pick: impl Fn(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
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
                    "{}: no {what} ({e:?}, exit status {:?}); output so far:\n{}",
                    self.name,
                    self.child.try_wait().ok().flatten(),
                    self.output()
                ),
            }
        }
    }

    /// Waits until the child closed its output (it is exiting), then reaps it.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.transcript.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{} did not exit within {timeout:?}; output so far:\n{}",
                    self.name,
                    self.output()
                ),
            }
        }
        self.child.wait().expect("reap child")
    }

    /// Everything printed so far, one line per entry.
    pub fn output(&self) -> String {
        self.transcript.join("\n")
    }
}

impl Drop for ChildProcess {
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
pub fn openssl_keying_material(line: &str) -> Option<String> {
    line.trim()
        .strip_prefix("Keying material: ")
        .map(|hex| hex.trim().to_owned())
}

/// The profile name in OpenSSL's "SRTP Extension negotiated, profile=NAME".
pub fn openssl_srtp_profile(line: &str) -> Option<String> {
    line.trim()
        .strip_prefix("SRTP Extension negotiated, profile=")
        .map(|name| name.trim().to_owned())
}

/// Where OpenSSL is expected; a missing binary fails the test instead of skipping it.
pub const OPENSSL_MISSING: &str = "the OpenSSL interop tests need the OpenSSL 3 CLI on PATH \
     (e.g. `apt-get install openssl`); refusing to skip";

/// OpenSSL flags shared by both roles: DTLS 1.2 at 256-byte datagrams, SRTP with
/// AES128_CM_HMAC_SHA1_80, and the RFC 5764 exporter printed after the handshake.
pub fn openssl_dtls_srtp_args() -> Vec<String> {
    [
        "-dtls1_2",
        "-mtu",
        "256",
        "-use_srtp",
        "SRTP_AES128_CM_SHA1_80",
        "-keymatexport",
        "EXTRACTOR-dtls_srtp",
        "-keymatexportlen",
        "60",
    ]
    .map(String::from)
    .to_vec()
}
