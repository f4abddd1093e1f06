//! A room that spans two media workers, end to end: the real server with two workers and
//! `media.room_worker_participants: 2`, so that the first two participants of the room
//! land on worker 0 and the next two on worker 1. Every participant must receive and
//! decrypt every publisher whichever worker either is on, and a keyframe request from a
//! subscriber on worker 1 must reach a publisher on worker 0 (its publisher sends
//! keyframes only when asked).

mod support;

use std::time::Duration;

use sluice_loadgen::{Client, ClientConfig, MediaKind};
use support::{start_server, Server};

const WAIT: Duration = Duration::from_secs(30);

fn config(server: &Server, name: &str, publish: bool) -> ClientConfig {
    ClientConfig {
        server_url: server.url.clone(),
        room: "spanning".into(),
        name: name.into(),
        publish_audio: publish,
        publish_video: publish,
        video_bitrate_bps: 200_000,
        video_fps: 15,
        // no periodic keyframes: a subscriber gets one only if its request crosses
        keyframe_interval: Duration::from_secs(3600),
        connect_timeout: WAIT,
        ..ClientConfig::default()
    }
}

fn keyframes_from(client: &Client, publisher: &str) -> u64 {
    keyframe_count(&client.stats(), publisher)
}

/// Waits until `client` decoded a keyframe of `publisher`.
async fn gets_keyframe_from(client: &Client, publisher: &str, what: &str) {
    client
        .wait_for(|s| keyframe_count(s, publisher) > 0, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

fn keyframe_count(stats: &sluice_loadgen::ClientStats, publisher: &str) -> u64 {
    stats
        .remote
        .get(&(publisher.to_owned(), MediaKind::Video))
        .map_or(0, |t| t.keyframes)
}

async fn receives_from(client: &Client, publisher: &str) {
    client
        .wait_for(
            |s| {
                s.packets_from(publisher, MediaKind::Audio) >= 20
                    && s.packets_from(publisher, MediaKind::Video) >= 20
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{} never received {publisher}: {e}",
                client.participant_id()
            )
        });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_participant_receives_every_publisher_across_two_workers() {
    let server = start_server(
        "http:\n  listen: \"127.0.0.1:0\"\n\
         media:\n  listen: \"127.0.0.1:0\"\n  workers: 2\n  announce: [\"127.0.0.1\"]\n  room_worker_participants: 2\n",
    )
    .await;
    // worker 0
    let first = Client::connect(config(&server, "first", true))
        .await
        .expect("first joins");
    let second = Client::connect(config(&server, "second", true))
        .await
        .expect("second joins");
    let first_id = first.participant_id().to_owned();
    let second_id = second.participant_id().to_owned();
    receives_from(&second, &first_id).await;
    gets_keyframe_from(
        &second,
        &first_id,
        "a keyframe on the publisher's own worker",
    )
    .await;
    let requests_before = first.stats().sent.keyframe_requests;
    assert_eq!(
        server.metric("sluice_relay_packets_total{path=\"media_out\"}"),
        0.0,
        "a room on one worker relays nothing"
    );

    // worker 1
    let viewer = Client::connect(config(&server, "viewer", false))
        .await
        .expect("viewer joins");
    let third = Client::connect(config(&server, "third", true))
        .await
        .expect("third joins");
    let third_id = third.participant_id().to_owned();

    for publisher in [&first_id, &second_id] {
        receives_from(&viewer, publisher).await;
        receives_from(&third, publisher).await;
    }
    for client in [&first, &second, &viewer] {
        receives_from(client, &third_id).await;
    }
    receives_from(&first, &second_id).await;

    // The publisher on worker 0 sends no keyframe unless asked: the viewer on worker 1
    // decodes it only because its request crossed.
    gets_keyframe_from(
        &viewer,
        &first_id,
        "a keyframe requested from the other worker",
    )
    .await;
    assert!(first.stats().sent.keyframe_requests > requests_before);
    assert!(keyframes_from(&third, &first_id) > 0);
    assert!(keyframes_from(&first, &third_id) > 0);

    for client in [&first, &second, &viewer, &third] {
        assert_eq!(client.stats().decrypt_failures, 0);
    }
    let relayed_out = server.metric("sluice_relay_packets_total{path=\"media_out\"}");
    let relayed_in = server.metric("sluice_relay_packets_total{path=\"media_in\"}");
    assert!(relayed_out > 0.0 && relayed_in > 0.0);
    assert!(server.metric("sluice_relay_packets_total{path=\"feedback_in\"}") > 0.0);
    println!(
        "relayed {relayed_out} packets out, {relayed_in} in; dropped {} (queue full), {} (unknown)",
        server.metric("sluice_relay_packets_total{path=\"dropped_queue_full\"}"),
        server.metric("sluice_relay_packets_total{path=\"dropped_unknown\"}")
    );
}
