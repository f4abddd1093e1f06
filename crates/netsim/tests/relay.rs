//! End-to-end test of the relay binary over 127.0.0.1: a client sends through the
//! relay to an echo socket and gets its datagrams back. Read timeouts are bounds
//! only; nothing sleeps to synchronise.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(5);

/// An echo server on 127.0.0.1 that answers until `count` datagrams or a quiet
/// `BOUND`, then returns how many it echoed.
fn spawn_echo(count: usize) -> (SocketAddr, thread::JoinHandle<usize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(BOUND)).unwrap();
    let addr = socket.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut echoed = 0;
        while echoed < count {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                break;
            };
            socket.send_to(&buf[..n], from).unwrap();
            echoed += 1;
        }
        echoed
    });
    (addr, handle)
}

/// Starts the relay and returns it with the address it printed.
fn spawn_relay(upstream: SocketAddr, extra: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-netsim-relay"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream.to_string(),
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("relay binary runs");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

/// Waits for the relay to exit and parses its JSON stats line.
fn finish(child: Child) -> serde_json::Value {
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{:?}", output.status);
    let stdout = String::from_utf8(output.stdout).unwrap();
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout:?}"))
}

#[test]
fn datagrams_cross_the_relay_and_come_back_from_upstream() {
    let (echo_addr, echo) = spawn_echo(20);
    let (child, relay_addr) = spawn_relay(echo_addr, &["--delay-ms", "5", "--duration-s", "2"]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(BOUND)).unwrap();
    let mut buf = [0u8; 2048];
    for i in 0..20u32 {
        let payload = [i.to_be_bytes().as_slice(), &[0xAB; 100]].concat();
        client.send_to(&payload, relay_addr).unwrap();
        let (n, from) = client.recv_from(&mut buf).expect("echo within bound");
        assert_eq!(from, relay_addr, "replies come from the listen address");
        assert_eq!(&buf[..n], payload.as_slice());
    }
    assert_eq!(echo.join().unwrap(), 20);
    let stats = finish(child);
    assert_eq!(stats["up"]["delivered"], 20);
    assert_eq!(stats["down"]["delivered"], 20);
    assert_eq!(stats["clients"], 1);
}

#[test]
fn total_loss_upstream_drops_everything_and_is_counted() {
    let (echo_addr, _echo) = spawn_echo(0);
    let (child, relay_addr) = spawn_relay(
        echo_addr,
        &["--up-loss", "1", "--duration-s", "1", "--seed", "3"],
    );
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..10 {
        client.send_to(b"lost", relay_addr).unwrap();
    }
    let stats = finish(child);
    assert_eq!(stats["up"]["dropped"]["loss"], 10);
    assert_eq!(stats["up"]["delivered"], 0);
}

#[test]
fn sigterm_prints_stats_and_exits() {
    let (echo_addr, echo) = spawn_echo(1);
    let (child, relay_addr) = spawn_relay(echo_addr, &[]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(BOUND)).unwrap();
    client.send_to(b"one", relay_addr).unwrap();
    let mut buf = [0u8; 16];
    let (n, _) = client.recv_from(&mut buf).expect("echo within bound");
    assert_eq!(&buf[..n], b"one");
    assert_eq!(echo.join().unwrap(), 1);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let stats = finish(child);
    assert_eq!(stats["up"]["delivered"], 1);
    assert_eq!(stats["down"]["delivered"], 1);
}
