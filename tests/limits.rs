//! Admission limits end to end: the real server in process on 127.0.0.1, joins through
//! the real WebSocket. Each refusal must reach the client with its code and be counted
//! in `sluice_admissions_refused_total{reason}`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice::config::Config;
use sluice::http::{self, AppState};
use sluice::metrics::Metrics;
use sluice::shutdown::Shutdown;
use sluice_loadgen::{Client, ClientConfig, ClientError};

const WAIT: Duration = Duration::from_secs(20);

struct Server {
    url: String,
    state: AppState,
}

async fn start(limits: &str) -> Server {
    let yaml = format!(
        "http:\n  listen: \"127.0.0.1:0\"\n\
         media:\n  listen: \"127.0.0.1:0\"\n  workers: 1\n  announce: [\"127.0.0.1\"]\n\
         limits:\n{limits}"
    );
    let config = Arc::new(Config::load_str(&yaml).expect("valid test configuration"));
    let state = AppState::new(config, Arc::new(Metrics::with_workers(1)), Shutdown::new());
    let state = sluice::signaling::with_media(state).expect("media plane starts");
    state.set_ready(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        url: format!("ws://{addr}/ws"),
        state,
    }
}

impl Server {
    fn refused(&self, reason: &str) -> u64 {
        let series = format!("sluice_admissions_refused_total{{reason=\"{reason}\"}}");
        self.state
            .metrics
            .encode()
            .lines()
            .find_map(|line| line.strip_prefix(&series)?.trim().parse().ok())
            .unwrap_or(0)
    }

    async fn join(&self, room: &str, name: &str) -> Result<Client, ClientError> {
        Client::connect(ClientConfig {
            server_url: self.url.clone(),
            room: room.to_owned(),
            name: name.to_owned(),
            publish_video: false,
            connect_timeout: WAIT,
            ..ClientConfig::default()
        })
        .await
    }
}

fn rejected_code(result: Result<Client, ClientError>) -> &'static str {
    match result {
        Err(ClientError::Rejected { code, .. }) => code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_and_participants_per_room_refuse_with_their_codes() {
    let server = start("  rooms: 1\n  participants_per_room: 2\n").await;
    let _ada = server.join("only", "Ada").await.expect("first joins");
    let _bo = server.join("only", "Bo").await.expect("second joins");
    assert_eq!(rejected_code(server.join("only", "Cy").await), "room_full");
    assert_eq!(
        rejected_code(server.join("another", "Di").await),
        "too_many_rooms"
    );
    assert_eq!(server.refused("room_full"), 1);
    assert_eq!(server.refused("too_many_rooms"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_beyond_the_per_address_limit_are_refused() {
    let server = start("  sessions_per_source_ip: 2\n").await;
    let ada = server.join("r", "Ada").await.expect("first joins");
    let _bo = server.join("r", "Bo").await.expect("second joins");
    // Every client here comes from 127.0.0.1: the third is refused at the upgrade.
    let third = server.join("r", "Cy").await;
    assert!(
        third.is_err(),
        "a third session from one address was admitted"
    );
    assert_eq!(server.refused("sessions_per_source_ip"), 1);
    // A session that ends gives its slot back.
    ada.leave().await.expect("Ada leaves");
    let mut admitted = None;
    for _ in 0..100 {
        if let Ok(client) = server.join("r", "Cy").await {
            admitted = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted.is_some(), "the freed slot was never reused");
}
