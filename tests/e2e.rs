//! End to end: the real server (HTTP, WebSocket signalling, UDP media worker) in
//! process on 127.0.0.1, and clients built from our own crates (sluice-loadgen) that
//! join through the real WebSocket and UDP sockets, publish synthetic RTP and decrypt
//! what the others send.

mod support;

use support::{start_server, Server};

use std::time::Duration;

use sluice_loadgen::{Client, ClientConfig, ClientEvent, MediaKind};

const SECRET: &str = "0123456789abcdef0123456789abcdef-e2e";
/// Generous bound for slow CI machines; the waits end as soon as the condition holds.
const WAIT: Duration = Duration::from_secs(20);

async fn start(role: &str, with_keys: bool) -> Server {
    let auth = if with_keys {
        format!("auth:\n  keys:\n    - id: k1\n      secret: \"{SECRET}\"\n")
    } else {
        String::new()
    };
    let yaml = format!(
        "http:\n  listen: \"127.0.0.1:0\"\n\
         media:\n  listen: \"127.0.0.1:0\"\n  workers: 1\n  announce: [\"127.0.0.1\"]\n\
         dtls:\n  role: {role}\n{auth}"
    );
    start_server(&yaml).await
}

fn client_config(server: &Server, room: &str, name: &str) -> ClientConfig {
    ClientConfig {
        server_url: server.url.clone(),
        room: room.to_owned(),
        name: name.to_owned(),
        video_bitrate_bps: 300_000,
        video_fps: 15,
        connect_timeout: WAIT,
        ..ClientConfig::default()
    }
}

async fn wait_receiving(receiver: &Client, from: &str, at_least: u64) {
    let from = from.to_owned();
    receiver
        .wait_for(
            |s| {
                s.packets_from(&from, MediaKind::Audio) >= at_least
                    && s.packets_from(&from, MediaKind::Video) >= at_least
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{} never received from {from}: {e}",
                receiver.participant_id()
            )
        });
}

async fn three_publish_then_one_leaves(role: &str) {
    let server = start(role, false).await;
    let room = format!("e2e-{role}");
    let ada = Client::connect(client_config(&server, &room, "Ada"))
        .await
        .expect("Ada joins");
    let bo = Client::connect(client_config(&server, &room, "Bo"))
        .await
        .expect("Bo joins");
    let cy = Client::connect(client_config(&server, &room, "Cy"))
        .await
        .expect("Cy joins");
    for client in [&ada, &bo, &cy] {
        client.wait_connected(WAIT).await.expect("media connects");
    }
    let ids: Vec<String> = [&ada, &bo, &cy]
        .iter()
        .map(|c| c.participant_id().to_owned())
        .collect();

    // Everyone receives and decrypts everyone else's audio and video.
    for receiver in [&ada, &bo, &cy] {
        for id in &ids {
            if id != receiver.participant_id() {
                wait_receiving(receiver, id, 20).await;
            }
        }
        assert_eq!(receiver.stats().decrypt_failures, 0);
    }

    // The workers publish what every subscriber gets (gauges, /debug/subscribers): each
    // receives the other two's microphone and camera, and the cameras flow.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let board = server.state.metrics.subscribers.snapshot();
        let complete = board.len() == 3
            && board.iter().all(|s| {
                s.room == room
                    && s.tracks.len() == 4
                    && s.tracks
                        .iter()
                        .filter(|t| t.kind == "video")
                        .all(|t| t.layer == Some(0) && !t.paused)
            });
        if complete {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscriber board never showed the call: {board:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Cy leaves: the others are told, and Cy's media stops reaching them.
    let cy_id = cy.participant_id().to_owned();
    cy.leave().await.expect("Cy leaves cleanly");
    for receiver in [&ada, &bo] {
        let id = cy_id.clone();
        receiver
            .wait_for_event(
                move |e| matches!(e, ClientEvent::ParticipantLeft { id: left } if *left == id),
                WAIT,
            )
            .await
            .expect("participant_left");
    }
    // Let packets in flight drain: wait until Bo's media has advanced, then snapshot.
    let bo_id = bo.participant_id().to_owned();
    let base = ada.stats().packets_from(&bo_id, MediaKind::Audio);
    wait_for_audio_from(&ada, &bo_id, base + 25).await;
    let from_cy = ada.stats().packets_from(&cy_id, MediaKind::Audio)
        + ada.stats().packets_from(&cy_id, MediaKind::Video);
    wait_for_audio_from(&ada, &bo_id, base + 75).await;
    let from_cy_later = ada.stats().packets_from(&cy_id, MediaKind::Audio)
        + ada.stats().packets_from(&cy_id, MediaKind::Video);
    assert_eq!(
        from_cy, from_cy_later,
        "Cy's media still reaches Ada after Cy left"
    );

    let metrics = server.state.metrics.encode();
    assert!(
        metrics.contains("sluice_dtls_handshakes_completed_total 3"),
        "{metrics}"
    );
    ada.leave().await.unwrap();
    bo.leave().await.unwrap();
}

async fn wait_for_audio_from(receiver: &Client, from: &str, at_least: u64) {
    let from = from.to_owned();
    receiver
        .wait_for(
            |s| s.packets_from(&from, MediaKind::Audio) >= at_least,
            WAIT,
        )
        .await
        .expect("media keeps flowing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_flows_between_participants_with_the_server_as_dtls_server() {
    three_publish_then_one_leaves("server").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_flows_between_participants_with_the_server_as_dtls_client() {
    three_publish_then_one_leaves("client").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_flows_with_role_auto() {
    let server = start("auto", false).await;
    let ada = Client::connect(client_config(&server, "auto", "Ada"))
        .await
        .unwrap();
    let bo = Client::connect(client_config(&server, "auto", "Bo"))
        .await
        .unwrap();
    ada.wait_connected(WAIT).await.unwrap();
    bo.wait_connected(WAIT).await.unwrap();
    wait_receiving(&bo, ada.participant_id(), 20).await;
    wait_receiving(&ada, bo.participant_id(), 20).await;
}

fn mint(room: &str, secret: &str) -> String {
    use sluice_signal::token::{sign, JoinClaims, SigningKey};
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    sign(
        &JoinClaims {
            room: room.to_owned(),
            sub: "tester".to_owned(),
            exp,
            nbf: None,
            name: None,
        },
        &SigningKey {
            id: "k1".to_owned(),
            secret: secret.as_bytes().to_vec(),
        },
    )
}

async fn join_outcome(server: &Server, room: &str, token: Option<String>) -> Vec<ClientEvent> {
    let config = ClientConfig {
        token,
        ..client_config(server, room, "Tester")
    };
    match Client::connect(config).await {
        Ok(client) => {
            client
                .wait_for_event(
                    |e| matches!(e, ClientEvent::Answered { .. } | ClientEvent::Bye { .. }),
                    WAIT,
                )
                .await
                .expect("an answer or a bye");
            client.events()
        }
        Err(error) => vec![ClientEvent::Failed(error.to_string())],
    }
}

fn refused_unauthorized(events: &[ClientEvent]) -> bool {
    events.iter().any(|e| match e {
        ClientEvent::ServerError { code, .. } => *code == "unauthorized",
        ClientEvent::Failed(message) => message.contains("unauthorized"),
        _ => false,
    })
}

#[tokio::test]
async fn a_join_with_a_bad_token_is_refused_when_keys_are_set() {
    let server = start("auto", true).await;
    let forged = mint("secure", "another-secret-of-at-least-32-bytes!!");
    let events = join_outcome(&server, "secure", Some(forged)).await;
    assert!(refused_unauthorized(&events), "{events:?}");
    let missing = join_outcome(&server, "secure", None).await;
    assert!(refused_unauthorized(&missing), "{missing:?}");
    let other_room = join_outcome(&server, "secure", Some(mint("elsewhere", SECRET))).await;
    assert!(refused_unauthorized(&other_room), "{other_room:?}");
    // The right token for the right room is accepted.
    let good = join_outcome(&server, "secure", Some(mint("secure", SECRET))).await;
    assert!(
        good.iter().any(|e| matches!(e, ClientEvent::Joined { .. })),
        "{good:?}"
    );
}

#[tokio::test]
async fn an_unsigned_join_is_accepted_without_keys() {
    let server = start("auto", false).await;
    let events = join_outcome(&server, "open", None).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClientEvent::Joined { .. })),
        "{events:?}"
    );
}
