//! `sluice-loadgen`: many synthetic participants against one Sluice server.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use sluice_loadgen::report::{StormReport, Summary};
use sluice_loadgen::{Client, ClientConfig, ClientStats, Phase};
use sluice_signal::token::{sign, JoinClaims, SigningKey};

/// Synthetic WebRTC participants for load tests of a Sluice server.
#[derive(Debug, Parser)]
#[command(name = "sluice-loadgen", version)]
struct Args {
    /// The server's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// Number of rooms.
    #[arg(long, default_value_t = 1)]
    rooms: u32,
    /// Participants per room that publish audio and video.
    #[arg(long, default_value_t = 2)]
    publishers_per_room: u32,
    /// Participants per room that only receive.
    #[arg(long, default_value_t = 0)]
    subscribers_per_room: u32,
    /// New participants started per second.
    #[arg(long, default_value_t = 10.0)]
    ramp_per_second: f64,
    /// Total run time in seconds, ramp included; everything stops then.
    #[arg(long, default_value_t = 30)]
    duration_s: u64,
    /// Video bitrate per publisher, kbit/s.
    #[arg(long, default_value_t = 500)]
    video_kbps: u64,
    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Publish no video.
    #[arg(long)]
    no_video: bool,
    /// Publish no audio.
    #[arg(long)]
    no_audio: bool,
    /// Mint HS256 join tokens with this secret (when the server has auth.keys).
    #[arg(long)]
    token_secret: Option<String>,
    /// Key id written into minted tokens.
    #[arg(long)]
    token_kid: Option<String>,
    /// Room names are PREFIX-0, PREFIX-1, ...
    #[arg(long, default_value = "load")]
    room_prefix: String,
    /// Local IP for the media sockets.
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    /// Per-participant join + handshake timeout in seconds.
    #[arg(long, default_value_t = 15)]
    connect_timeout_s: u64,
    /// Decrypt one received media packet in N per stream; the others are counted
    /// (loss, jitter) from their clear RTP header. 1 = decrypt every packet.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(sluice_loadgen::MAX_DECRYPT_EVERY)))]
    decrypt_every: u32,
    /// Handshake storm: join every participant through signalling first (ICE and DTLS
    /// held back, no media), then release all their handshakes at once (or at
    /// --storm-rate) and report handshake completion times and rates.
    #[arg(long)]
    handshake_storm: bool,
    /// Handshakes released per second in a storm (default: all at once).
    #[arg(long)]
    storm_rate: Option<f64>,
    /// Print one JSON object at the end instead of progress lines and a table.
    #[arg(long)]
    json: bool,
}

#[derive(Default)]
struct Fleet {
    clients: Vec<Client>,
    join_failures: u64,
    join_errors: Vec<String>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn participant_configs(args: &Args) -> Vec<ClientConfig> {
    let per_room = args.publishers_per_room + args.subscribers_per_room;
    let mut configs = Vec::new();
    // interleave rooms so that every room fills up at the same pace
    for index in 0..per_room {
        for room in 0..args.rooms {
            let publisher = index < args.publishers_per_room;
            let room_name = format!("{}-{room}", args.room_prefix);
            let name = format!("{}-{room}-{index}", if publisher { "pub" } else { "sub" });
            let token = args.token_secret.as_ref().map(|secret| {
                sign(
                    &JoinClaims {
                        room: room_name.clone(),
                        sub: name.clone(),
                        exp: unix_now() + args.duration_s + 3600,
                        nbf: None,
                        name: None,
                    },
                    &SigningKey {
                        id: args.token_kid.clone().unwrap_or_default(),
                        secret: secret.as_bytes().to_vec(),
                    },
                )
            });
            configs.push(ClientConfig {
                server_url: args.url.clone(),
                room: room_name,
                name,
                token,
                publish_audio: publisher && !args.no_audio && !args.handshake_storm,
                publish_video: publisher && !args.no_video && !args.handshake_storm,
                video_bitrate_bps: args.video_kbps * 1000,
                video_fps: args.fps,
                keyframe_interval: Duration::from_secs(3),
                dtls_max_datagram_size: 1200,
                bind_ip: args.bind_ip,
                connect_timeout: Duration::from_secs(args.connect_timeout_s),
                decrypt_every: args.decrypt_every,
                hold_transport: args.handshake_storm,
                // the progress line reads snapshots once a second
                stats_interval: Duration::from_millis(500),
            });
        }
    }
    configs
}

/// Distinct failure reasons of the clients with how many clients gave each.
fn failure_reasons(stats: &[ClientStats]) -> std::collections::BTreeMap<String, u64> {
    let mut reasons = std::collections::BTreeMap::new();
    for reason in stats.iter().filter_map(|s| s.failure.as_ref()) {
        if reasons.len() < 20 || reasons.contains_key(reason) {
            *reasons.entry(reason.clone()).or_insert(0) += 1;
        }
    }
    reasons
}

/// Every client's phase, without copying their statistics (polled while thousands of
/// clients handshake on the same core).
fn phases(fleet: &Mutex<Fleet>) -> Vec<Phase> {
    fleet
        .lock()
        .map(|f| f.clients.iter().map(Client::phase).collect())
        .unwrap_or_default()
}

/// Polls the fleet every 50 ms until no client is in a phase `pending` matches, or until
/// `deadline`.
async fn wait_while_any(fleet: &Mutex<Fleet>, deadline: Instant, pending: impl Fn(&Phase) -> bool) {
    while phases(fleet).iter().any(&pending) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn snapshot(fleet: &Mutex<Fleet>) -> (Vec<ClientStats>, u64) {
    match fleet.lock() {
        Ok(f) => (
            f.clients.iter().map(Client::stats).collect(),
            f.join_failures,
        ),
        Err(_) => (Vec::new(), 0),
    }
}

/// Starts one participant every 1/`per_second` seconds from `started` (none after
/// `end`), each connecting in its own task; the returned task ends when every join
/// has finished.
fn spawn_ramp(
    configs: Vec<ClientConfig>,
    per_second: f64,
    started: Instant,
    end: Instant,
    fleet: Arc<Mutex<Fleet>>,
) -> tokio::task::JoinHandle<()> {
    let interval = Duration::from_secs_f64(1.0 / per_second);
    tokio::spawn(async move {
        let mut joins = Vec::new();
        for (i, config) in configs.into_iter().enumerate() {
            let at = started + interval.mul_f64(i as f64);
            if at >= end {
                break;
            }
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
            let fleet = Arc::clone(&fleet);
            joins.push(tokio::spawn(async move {
                let result = Client::connect(config).await;
                if let Ok(mut f) = fleet.lock() {
                    match result {
                        Ok(client) => f.clients.push(client),
                        Err(e) => {
                            f.join_failures += 1;
                            if f.join_errors.len() < 5 {
                                f.join_errors.push(e.to_string());
                            }
                        }
                    }
                }
            }));
        }
        for join in joins {
            let _ = join.await;
        }
    })
}

async fn leave_all(fleet: &Mutex<Fleet>) -> Vec<String> {
    let (clients, errors) = match fleet.lock() {
        Ok(mut f) => (
            std::mem::take(&mut f.clients),
            std::mem::take(&mut f.join_errors),
        ),
        Err(_) => (Vec::new(), Vec::new()),
    };
    let leaving: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(c.leave()))
        .collect();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::future::join_all(leaving),
    )
    .await;
    errors
}

/// Joins everyone, releases their handshakes, waits for the outcome and reports it.
async fn run_storm(args: &Args) -> bool {
    let configs = participant_configs(args);
    let participants = configs.len();
    let started = Instant::now();
    let fleet = Arc::new(Mutex::new(Fleet::default()));
    let join_deadline = started
        + Duration::from_secs_f64(participants as f64 / args.ramp_per_second)
        + Duration::from_secs(args.connect_timeout_s);
    let ramp = spawn_ramp(
        configs,
        args.ramp_per_second,
        started,
        join_deadline,
        Arc::clone(&fleet),
    );
    let _ = ramp.await;
    // Every joined client answers its first offer and then waits in Phase::Held.
    wait_while_any(&fleet, join_deadline, |p| {
        matches!(p, Phase::Joining | Phase::Connecting)
    })
    .await;
    let joined_after = started.elapsed();

    let released_at = Instant::now();
    let release_interval = args
        .storm_rate
        .filter(|r| *r > 0.0 && r.is_finite())
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let held: Vec<usize> = phases(&fleet)
        .iter()
        .enumerate()
        .filter(|(_, p)| **p == Phase::Held)
        .map(|(i, _)| i)
        .collect();
    for (n, &index) in held.iter().enumerate() {
        if let Some(interval) = release_interval {
            let at = released_at + interval.mul_f64(n as f64);
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        }
        if let Ok(f) = fleet.lock() {
            if let Some(client) = f.clients.get(index) {
                let _ = client.release();
            }
        }
    }
    let outcome_deadline = Instant::now() + Duration::from_secs(args.connect_timeout_s + 5);
    wait_while_any(&fleet, outcome_deadline, |p| {
        matches!(p, Phase::Held | Phase::Connecting)
    })
    .await;
    let (stats, join_failures) = snapshot(&fleet);
    let report = StormReport::new(&stats, join_failures, held.len() as u64, released_at);
    let failures = failure_reasons(&stats);
    let join_errors = leave_all(&fleet).await;
    if args.json {
        let mut json = report.to_json();
        json["joined_after_ms"] = serde_json::json!(joined_after.as_secs_f64() * 1000.0);
        json["join_errors"] = serde_json::json!(join_errors);
        json["failures"] = serde_json::json!(failures);
        json["storm_rate"] = serde_json::json!(args.storm_rate);
        println!("{json}");
    } else {
        println!(
            "joined {} participants in {:.1} s",
            participants,
            joined_after.as_secs_f64()
        );
        print!("{}", report.table());
        for e in &join_errors {
            println!("join error: {e}");
        }
        for (reason, clients) in &failures {
            println!("failure ({clients} clients): {reason}");
        }
    }
    report.failed == 0 && report.completed == participants as u64
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if args.ramp_per_second <= 0.0 || !args.ramp_per_second.is_finite() {
        eprintln!("--ramp-per-second must be positive");
        std::process::exit(2);
    }
    if args.handshake_storm {
        let ok = run_storm(&args).await;
        std::process::exit(if ok { 0 } else { 1 });
    }
    let configs = participant_configs(&args);
    let started = Instant::now();
    let end = started + Duration::from_secs(args.duration_s);
    let fleet = Arc::new(Mutex::new(Fleet::default()));
    let ramp = spawn_ramp(
        configs,
        args.ramp_per_second,
        started,
        end,
        Arc::clone(&fleet),
    );

    let mut previous_sent = 0u64;
    let mut previous_received = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while Instant::now() < end {
        tick.tick().await;
        let (stats, join_failures) = snapshot(&fleet);
        let summary = Summary::from_stats(&stats, join_failures);
        if !args.json {
            let connected = stats.iter().filter(|s| s.phase == Phase::Connected).count();
            println!(
                "t={:>4}s participants {:>4} connected {:>4} handshakes {:>4} done / {:>3} failed  sent {:>7} pkt/s  received {:>7} pkt/s  loss {:.2} %",
                started.elapsed().as_secs(),
                stats.len(),
                connected,
                summary.handshakes_done,
                summary.failed,
                summary.packets_sent.saturating_sub(previous_sent),
                summary.packets_received.saturating_sub(previous_received),
                summary.loss_percent(),
            );
        }
        previous_sent = summary.packets_sent;
        previous_received = summary.packets_received;
    }
    ramp.abort();

    let (stats, join_failures) = snapshot(&fleet);
    let summary = Summary::from_stats(&stats, join_failures);
    let failures_by_reason = failure_reasons(&stats);
    let errors = leave_all(&fleet).await;

    if args.json {
        let mut json = summary.to_json();
        json["join_errors"] = serde_json::json!(errors);
        json["duration_s"] = serde_json::json!(args.duration_s);
        json["decrypt_every"] = serde_json::json!(args.decrypt_every);
        json["failures"] = serde_json::json!(failures_by_reason);
        println!("{json}");
    } else {
        println!();
        print!("{}", summary.table());
        for e in errors {
            println!("join error: {e}");
        }
        for (reason, clients) in &failures_by_reason {
            println!("failure ({clients} clients): {reason}");
        }
    }
    let ok = summary.failed == 0 && summary.handshakes_done > 0;
    std::process::exit(if ok { 0 } else { 1 });
}
