//! Graceful shutdown of the real `sluice` process: on SIGTERM a connected participant
//! is told `bye shutting_down` over signalling, the process stops accepting joins and
//! exits 0 within `shutdown.grace_period_ms`; with a drain period, calls in progress go
//! on first and the process exits as soon as their rooms are empty.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sluice_loadgen::{Client, ClientConfig, ClientEvent, MediaKind};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
const WAIT: Duration = Duration::from_secs(20);
/// `shutdown.grace_period_ms` of the test server.
const GRACE_PERIOD: Duration = Duration::from_secs(5);

/// The server process; killed if the test fails before it exits.
struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn start(yaml: &str) -> Process {
        // One file per server: the tests of this file run side by side.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("shutdown-{}-{n}.yaml", std::process::id()));
        std::fs::write(&path, yaml).expect("write config");
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
        Process { child, lines }
    }

    /// The first JSON log line whose message is `message`.
    fn wait_for_log(&self, message: &str) -> serde_json::Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(remaining)
                .unwrap_or_else(|_| panic!("no log line {message:?} in time"));
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                if value["message"] == message {
                    return value;
                }
            }
        }
    }

    fn terminate(&self) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success());
    }

    /// Polls for the exit status until `deadline`.
    async fn wait_for_exit(&mut self, deadline: Instant) -> Option<i32> {
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "sluice did not exit in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_participants_bye_and_exits_0_within_the_grace_period() {
    let mut process = Process::start(&format!(
        "http:\n  listen: \"127.0.0.1:0\"\n\
         media:\n  listen: \"127.0.0.1:0\"\n  workers: 1\n  announce: [\"127.0.0.1\"]\n\
         log:\n  format: json\n\
         shutdown:\n  grace_period_ms: {}\n",
        GRACE_PERIOD.as_millis()
    ));
    let listening = process.wait_for_log("HTTP listening");
    let addr: SocketAddr = listening["http_listen"]
        .as_str()
        .expect("http_listen field")
        .parse()
        .expect("an address");
    let url = format!("ws://{addr}/ws");
    let config = |name: &str| ClientConfig {
        server_url: url.clone(),
        room: "drain".to_owned(),
        name: name.to_owned(),
        video_bitrate_bps: 200_000,
        video_fps: 10,
        connect_timeout: WAIT,
        ..ClientConfig::default()
    };
    let ada = Client::connect(config("Ada")).await.expect("Ada joins");
    let bo = Client::connect(config("Bo")).await.expect("Bo joins");
    ada.wait_connected(WAIT)
        .await
        .expect("Ada's media connects");
    bo.wait_connected(WAIT).await.expect("Bo's media connects");

    // JSON logs carry the participant and room: as fields of signalling events, and
    // through the session span for media events.
    let joined = process.wait_for_log("participant joined");
    assert_eq!(joined["room"], "drain", "{joined}");
    assert!(joined["participant"].is_u64(), "{joined}");
    let connected = process.wait_for_log("DTLS connected");
    assert_eq!(connected["span"]["room"], "drain", "{connected}");
    assert!(connected["span"]["participant"].is_u64(), "{connected}");

    let signalled = Instant::now();
    process.terminate();
    for client in [&ada, &bo] {
        client
            .wait_for_event(
                |e| matches!(e, ClientEvent::Bye { reason } if reason == "shutting_down"),
                GRACE_PERIOD,
            )
            .await
            .expect("bye shutting_down before the grace period ends");
    }
    // New joins are refused from now on (the listener closes, or answers 503).
    let late = Client::connect(ClientConfig {
        connect_timeout: Duration::from_secs(2),
        ..config("Late")
    })
    .await;
    assert!(late.is_err(), "a join after SIGTERM was accepted");

    let code = process
        .wait_for_exit(signalled + GRACE_PERIOD + Duration::from_secs(2))
        .await;
    assert_eq!(code, Some(0));
    eprintln!("exited {:?} after SIGTERM", signalled.elapsed());
}

/// `shutdown.drain_period_ms` of the drain test: far longer than the test waits.
const DRAIN_PERIOD: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_lets_calls_go_on_and_exits_once_their_rooms_are_empty() {
    let process = Process::start(&format!(
        "http:\n  listen: \"127.0.0.1:0\"\n\
         media:\n  listen: \"127.0.0.1:0\"\n  workers: 1\n  announce: [\"127.0.0.1\"]\n\
         log:\n  format: json\n\
         shutdown:\n  grace_period_ms: {}\n  drain_period_ms: {}\n",
        DRAIN_PERIOD.as_millis() + 5000,
        DRAIN_PERIOD.as_millis()
    ));
    let mut process = process;
    let listening = process.wait_for_log("HTTP listening");
    let addr: SocketAddr = listening["http_listen"]
        .as_str()
        .expect("http_listen field")
        .parse()
        .expect("an address");
    let url = format!("ws://{addr}/ws");
    let config = |room: &str, name: &str| ClientConfig {
        server_url: url.clone(),
        room: room.to_owned(),
        name: name.to_owned(),
        video_bitrate_bps: 200_000,
        video_fps: 10,
        connect_timeout: WAIT,
        ..ClientConfig::default()
    };
    let ada = Client::connect(config("meeting", "Ada"))
        .await
        .expect("Ada joins");
    ada.wait_connected(WAIT)
        .await
        .expect("Ada's media connects");

    let signalled = Instant::now();
    process.terminate();
    process.wait_for_log("draining: calls in progress go on, no new room opens");
    // No new room opens ...
    let elsewhere = Client::connect(config("another", "Late")).await;
    assert!(elsewhere.is_err(), "a new room opened while draining");
    // ... but the call in progress takes a newcomer, and media flows both ways.
    let bo = Client::connect(config("meeting", "Bo"))
        .await
        .expect("Bo joins the call in progress");
    bo.wait_connected(WAIT).await.expect("Bo's media connects");
    for (receiver, sender) in [(&ada, &bo), (&bo, &ada)] {
        let from = sender.participant_id().to_owned();
        receiver
            .wait_for(
                move |stats| stats.packets_from(&from, MediaKind::Video) >= 20,
                WAIT,
            )
            .await
            .expect("media flows during the drain");
    }
    assert!(
        ada.events()
            .iter()
            .all(|e| !matches!(e, ClientEvent::Bye { .. })),
        "a participant was ended during the drain period"
    );
    // The room empties: the process exits without waiting out the drain period.
    ada.leave().await.expect("Ada leaves");
    bo.leave().await.expect("Bo leaves");
    process.wait_for_log("draining: every room has closed");
    let code = process.wait_for_exit(signalled + DRAIN_PERIOD / 2).await;
    assert_eq!(code, Some(0));
    eprintln!("exited {:?} after SIGTERM", signalled.elapsed());
}
