//! Admission limits end to end: the real server in process on 127.0.0.1, joins through
//! the real WebSocket. Each refusal must reach the client with its code and be counted
//! in `sluice_admissions_refused_total{reason}`.

mod support;

use support::{start_server, Server};

use std::time::Duration;

use sluice_loadgen::{Client, ClientConfig, ClientError};

const WAIT: Duration = Duration::from_secs(20);

async fn start(limits: &str) -> Server {
    let yaml = format!(
        "http:\n  listen: \"127.0.0.1:0\"\n\
         media:\n  listen: \"127.0.0.1:0\"\n  workers: 1\n  announce: [\"127.0.0.1\"]\n\
         limits:\n{limits}"
    );
    start_server(&yaml).await
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
