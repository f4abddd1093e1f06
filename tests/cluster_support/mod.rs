//! A cluster on one machine for the tests: a real `redis-server` on a free loopback
//! port, and `sluice` processes (the real binary) on their own HTTP and UDP ports that
//! share it. Everything is polled with deadlines; nothing sleeps to synchronise.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// Whether the cluster tests can run. Without `redis-server` they are skipped loudly,
/// unless `SLUICE_REQUIRE_REDIS` is set (CI sets it), in which case they fail.
pub fn redis_server_available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_REDIS").is_none(),
            "SLUICE_REQUIRE_REDIS is set but redis-server is not installed"
        );
        eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
    }
    found
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cluster-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A `redis-server` without persistence: a restart loses every key, as a Redis that
/// is replaced would.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl Redis {
    pub async fn start() -> Redis {
        let port = free_port();
        let mut redis = Redis {
            port,
            child: None,
            dir: scratch_dir(&format!("redis-{port}")),
        };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and waits until it answers PING.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "redis already running");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--dir",
                self.dir.to_str().expect("utf-8 path"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping().await {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn ping(&self) -> bool {
        let Ok(mut conn) = self.connection().await else {
            return false;
        };
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }

    pub async fn connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url())?;
        client.get_multiplexed_async_connection().await
    }

    /// `GET key`, `None` when absent or Redis is down.
    pub async fn get(&self, key: &str) -> Option<String> {
        let mut conn = self.connection().await.ok()?;
        redis::cmd("GET")
            .arg(key)
            .query_async::<Option<String>>(&mut conn)
            .await
            .ok()
            .flatten()
    }

    /// Waits until the cluster has settled after Redis started empty: a node has
    /// noticed (the epoch key exists) and the settling period is over.
    pub async fn wait_settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut conn) = self.connection().await {
                let (epoch, settling): (bool, bool) = redis::pipe()
                    .exists("sluice:epoch")
                    .exists("sluice:settling")
                    .query_async(&mut conn)
                    .await
                    .unwrap_or((false, true));
                if epoch && !settling {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "the cluster never settled");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server (SIGKILL) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One `sluice` node of the cluster.
pub struct Node {
    pub id: String,
    pub http: SocketAddr,
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Starts node `id` against `redis_url` and waits for `/readyz`.
    pub async fn start(id: &str, redis_url: &str, extra_yaml: &str) -> Node {
        let port = free_port();
        let dir = scratch_dir(id);
        let config = dir.join("sluice.yaml");
        // A test that sets its own shutdown section replaces this default one.
        let shutdown = if extra_yaml.contains("shutdown:") {
            ""
        } else {
            "shutdown:\n  grace_period_ms: 5000\n"
        };
        // A test that places the relay socket itself replaces this default.
        let relay = if extra_yaml.contains("relay_listen:") {
            ""
        } else {
            "  relay_listen: \"127.0.0.1:0\"\n"
        };
        let yaml = format!(
            "http:\n  listen: \"127.0.0.1:{port}\"\n\
             media:\n  listen: \"127.0.0.1:0\"\n  workers: 1\n  announce: [\"127.0.0.1\"]\n\
             log:\n  format: json\n\
             {shutdown}\
             cluster:\n  redis_url: \"{redis_url}\"\n  node_id: \"{id}\"\n  \
             internal_url: \"http://127.0.0.1:{port}\"\n{relay}{extra_yaml}"
        );
        std::fs::write(&config, yaml).expect("write config");
        let log = std::fs::File::create(dir.join("sluice.log")).expect("log file");
        let child = Command::new(SLUICE)
            .args(["--config", config.to_str().expect("utf-8 path")])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sluice");
        let node = Node {
            id: id.to_owned(),
            http: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while node.get("/readyz").await.map(|(status, _)| status) != Some(200) {
            assert!(Instant::now() < deadline, "node {id} never became ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        node
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`-KILL`, `-TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// The exit code, once the process has exited, polling until `deadline`.
    pub async fn wait_for_exit(&mut self, deadline: Instant) -> Option<i32> {
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "node {} did not exit", self.id);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A plain HTTP/1.0 GET: status and body, `None` if the node does not answer.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(self.http),
        )
        .await
        .ok()?
        .ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.http);
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut response))
            .await
            .ok()?
            .ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((status, body))
    }

    /// One metric sample from `/metrics` (0 when absent or unreachable).
    pub async fn metric(&self, series: &str) -> f64 {
        let Some((_, body)) = self.get("/metrics").await else {
            return 0.0;
        };
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }
}

/// The netsim UDP relay (`sluice-netsim-relay`) in front of a socket: impairs what
/// passes through it in both directions, seeded.
pub struct ImpairedPath {
    /// Where to send to reach the socket behind it.
    pub listen: SocketAddr,
    child: Child,
}

impl ImpairedPath {
    /// A relay on a free loopback port in front of `upstream`, with `args` as its
    /// impairments (e.g. `["--loss", "0.1", "--seed", "7"]`). Builds the relay if it is
    /// not built yet.
    pub fn start(upstream: SocketAddr, args: &[&str]) -> ImpairedPath {
        let binary = std::path::Path::new(SLUICE).with_file_name("sluice-netsim-relay");
        if !binary.exists() {
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "sluice-netsim",
                    "--bin",
                    "sluice-netsim-relay",
                ])
                .status()
                .expect("cargo runs");
            assert!(status.success(), "sluice-netsim-relay builds");
        }
        let listen = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
        let child = Command::new(&binary)
            .args([
                "--listen",
                &listen.to_string(),
                "--upstream",
                &upstream.to_string(),
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sluice-netsim-relay");
        ImpairedPath { listen, child }
    }
}

impl Drop for ImpairedPath {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback UDP port that was free a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback UDP port")
}
