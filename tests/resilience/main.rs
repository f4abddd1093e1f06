//! Handshake storm through a lossy path, in process: the real server (HTTP, signalling,
//! one UDP media worker) announces only the address of a small lossy UDP relay, and 20
//! synthetic participants (sluice-loadgen) join one room at the same moment through it
//! with 30 % of datagrams dropped in each direction. Every ICE + DTLS handshake must
//! complete. The long form (50 clients, 10 % and 30 %, the netsim relay binary, recovery
//! on and off) is `scripts/resilience.sh scenario3`; results are in docs/resilience.md.
//!
//! Cargo builds this file as the integration test `resilience` of the `sluice` package
//! (tests/<name>/main.rs), so it uses the package's dev-dependencies only.

#[path = "../support/mod.rs"]
mod support;

use support::start_server;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use sluice_loadgen::{Client, ClientConfig};
use tokio::net::UdpSocket;

/// Participants that join at once.
const CLIENTS: usize = 20;
/// Share of datagrams the relay drops in each direction.
const LOSS: f64 = 0.30;
/// Per-client bound for join + ICE + DTLS; the server's own handshake deadline is 30 s.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(40);
const MAX_DATAGRAM_BYTES: usize = 2048;

/// splitmix64: a tiny deterministic generator, enough to decide which datagram is lost.
struct Loss {
    state: u64,
    probability: f64,
}

impl Loss {
    fn new(seed: u64, probability: f64) -> Self {
        Self {
            state: seed,
            probability,
        }
    }

    fn drops(&mut self) -> bool {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 53) as f64) < self.probability
    }
}

/// A UDP relay that drops `LOSS` of the datagrams in each direction. Like a NAT, each
/// client address gets its own upstream socket, so the server sees distinct 5-tuples.
async fn start_lossy_relay(upstream: SocketAddr) -> SocketAddr {
    let listen = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("relay binds"));
    let addr = listen.local_addr().expect("relay address");
    tokio::spawn(async move {
        let mut clients: HashMap<SocketAddr, (Arc<UdpSocket>, Loss)> = HashMap::new();
        let mut buf = vec![0u8; MAX_DATAGRAM_BYTES];
        let mut next_seed = 1u64;
        while let Ok((n, from)) = listen.recv_from(&mut buf).await {
            if let Entry::Vacant(slot) = clients.entry(from) {
                let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("upstream"));
                socket.connect(upstream).await.expect("connect upstream");
                let reader = Arc::clone(&socket);
                let back = Arc::clone(&listen);
                let mut down = Loss::new(next_seed.wrapping_mul(7919), LOSS);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; MAX_DATAGRAM_BYTES];
                    while let Ok(n) = reader.recv(&mut buf).await {
                        if !down.drops() {
                            let _ = back.send_to(&buf[..n], from).await;
                        }
                    }
                });
                slot.insert((socket, Loss::new(next_seed, LOSS)));
                next_seed += 1;
            }
            if let Some((socket, up)) = clients.get_mut(&from) {
                if !up.drops() {
                    let _ = socket.send(&buf[..n]).await;
                }
            }
        }
    });
    addr
}

/// A free UDP port on 127.0.0.1 for the media worker (the relay must know it up front).
fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("address").port()
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted
        .get(index.min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_joining_at_once_through_30_percent_loss_all_complete_their_handshakes() {
    let media_port = free_udp_port();
    let relay = start_lossy_relay(SocketAddr::from(([127, 0, 0, 1], media_port))).await;
    let yaml = format!(
        "http:\n  listen: \"127.0.0.1:0\"\n\
         media:\n  listen: \"127.0.0.1:{media_port}\"\n  workers: 1\n  announce: [\"{relay}\"]\n\
         limits:\n  sessions_per_source_ip: 100\n"
    );
    let server = start_server(&yaml).await;

    let started = Instant::now();
    let joins = (0..CLIENTS).map(|i| {
        Client::connect(ClientConfig {
            server_url: server.url.clone(),
            room: "storm".to_owned(),
            name: format!("p{i}"),
            publish_audio: true,
            publish_video: false,
            connect_timeout: CONNECT_TIMEOUT,
            ..ClientConfig::default()
        })
    });
    let clients: Vec<Client> = join_all(joins)
        .await
        .into_iter()
        .enumerate()
        .map(|(i, c)| c.unwrap_or_else(|e| panic!("client {i} could not join: {e}")))
        .collect();
    let connected = join_all(clients.iter().map(|c| c.wait_connected(CONNECT_TIMEOUT))).await;

    let mut failures = Vec::new();
    let mut handshakes = Vec::new();
    let mut retransmissions = 0;
    for (client, result) in clients.iter().zip(&connected) {
        match result {
            Ok(stats) => {
                handshakes.extend(stats.handshake_time);
                retransmissions += stats.dtls_retransmissions;
            }
            Err(e) => failures.push(format!("{}: {e}", client.participant_id())),
        }
    }
    handshakes.sort();
    println!(
        "{CLIENTS} clients, {:.0} % loss each way: {} connected in {:.1} s; ICE+DTLS p50 {:?} p95 {:?} max {:?}; \
         client DTLS retransmissions {retransmissions}",
        LOSS * 100.0,
        handshakes.len(),
        started.elapsed().as_secs_f64(),
        quantile(&handshakes, 0.5),
        quantile(&handshakes, 0.95),
        handshakes.last().copied().unwrap_or_default(),
    );
    assert!(
        failures.is_empty(),
        "handshakes that did not complete: {failures:?}"
    );
    assert_eq!(handshakes.len(), CLIENTS);
}
