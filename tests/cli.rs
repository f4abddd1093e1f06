//! The `sluice` binary's command line: configuration errors, the embedded default,
//! and a graceful stop on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// Writes `yaml` to a file named after the test and returns its path.
fn config_file(name: &str, yaml: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}.yaml"));
    std::fs::write(&path, yaml).expect("write config");
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(SLUICE)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run sluice")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn invalid_config_exits_2_naming_the_key() {
    let path = config_file("invalid", "media:\n  listen: \"x\"\n");
    let output = run(&["--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("media.listen: \"x\" is not IP:PORT"),
        "{message}"
    );
    assert!(message.contains("cli-invalid.yaml"), "{message}");
}

#[test]
fn check_config_reports_every_range_violation() {
    let path = config_file("ranges", "dtls:\n  max_datagram_size: 100\n  role: both\n");
    let output = run(&["--check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("dtls.role: expected auto, client or server"),
        "{message}"
    );
}

#[test]
fn check_config_rejects_unknown_keys_with_their_path() {
    let path = config_file("unknown", "limits:\n  room: 5\n");
    let output = run(&["--check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("limits.room: unknown field `room`"),
        "{message}"
    );
}

#[test]
fn check_config_accepts_a_valid_file() {
    let path = config_file("valid", "limits:\n  rooms: 5\n");
    let output = run(&["--check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn check_config_accepts_the_embedded_default() {
    let output = run(&["--check-config"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn missing_config_file_exits_2() {
    let output = run(&["--config", "/nonexistent/sluice.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("cannot read configuration file"));
}

#[test]
fn print_default_config_prints_the_shipped_file() {
    let output = run(&["--print-default-config"]);
    assert_eq!(output.status.code(), Some(0));
    let shipped = include_str!("../config/sluice.yaml");
    assert_eq!(String::from_utf8_lossy(&output.stdout), shipped);
}

/// A server process that is killed if the test fails before it exits.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(name: &str, yaml: &str) -> Self {
        let path = config_file(name, yaml);
        let mut child = Command::new(SLUICE)
            .args(["--config", path.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits for a JSON log line whose message is `message`; returns the line.
    fn wait_for_log(&self, message: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(remaining)
                .unwrap_or_else(|_| panic!("no log line {message:?} within 30 s"));
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                if value["message"] == message {
                    return value;
                }
            }
        }
    }

    fn wait_for_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "sluice did not exit within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A plain HTTP/1.1 GET; returns the status code and body.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn server_serves_health_and_stops_with_exit_0_on_sigterm() {
    let mut server = Server::start(
        "serve",
        "http:\n  listen: \"127.0.0.1:0\"\nlog:\n  format: json\nshutdown:\n  grace_period_ms: 5000\n",
    );
    server.wait_for_log("auth.keys is empty: unsigned joins are accepted (development mode)");
    let listening = server.wait_for_log("HTTP listening");
    let addr: SocketAddr = listening["http_listen"]
        .as_str()
        .expect("http_listen field")
        .parse()
        .expect("an address");

    let (status, body) = http_get(addr, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, _) = http_get(addr, "/readyz");
    assert_eq!(status, 200);
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("sluice_sessions"));

    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    server.wait_for_log("stop signal received: shutting down");
    assert_eq!(server.wait_for_exit(), Some(0));
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after exit"
    );
}
