//! A webinar-sized room end to end: one sluice-loadgen publisher and 300 viewers (that
//! publish nothing) join one room of the real server; every viewer must receive and
//! decrypt the publisher's audio and video. Viewers cost the others no offers, so the
//! join does not grow with the square of the room.
//!
//! `SLUICE_LARGE_ROOM_VIEWERS` sets the number of viewers (300 by default).

mod support;

use std::time::{Duration, Instant};

use sluice_loadgen::{Client, ClientConfig, MediaKind};
use support::start_server;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publisher_and_three_hundred_viewers_all_receive_and_decrypt() {
    let viewers_wanted: usize = std::env::var("SLUICE_LARGE_ROOM_VIEWERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let server = start_server(
        "http:\n  listen: \"127.0.0.1:0\"\n\
         media:\n  listen: \"127.0.0.1:0\"\n  workers: 1\n  announce: [\"127.0.0.1\"]\n\
         limits:\n  participants_per_room: 1000\n  sessions_per_source_ip: 2000\n  handshakes_in_flight: 1000\n",
    )
    .await;
    let config = |name: String, publish: bool| ClientConfig {
        server_url: server.url.clone(),
        room: "webinar".into(),
        name,
        publish_audio: publish,
        publish_video: publish,
        video_bitrate_bps: 300_000,
        video_fps: 15,
        keyframe_interval: Duration::from_secs(2),
        connect_timeout: WAIT,
        ..ClientConfig::default()
    };
    let publisher = Client::connect(config("Speaker".into(), true))
        .await
        .expect("publisher joins");
    let id = publisher.participant_id().to_owned();
    let started = Instant::now();
    let mut viewers = Vec::new();
    for n in 0..viewers_wanted {
        viewers.push(
            Client::connect(config(format!("viewer-{n}"), false))
                .await
                .expect("viewer joins"),
        );
    }
    let joined = started.elapsed();
    let mut first_media = Vec::new();
    for viewer in &viewers {
        let id = id.clone();
        viewer
            .wait_for(
                |s| {
                    s.packets_from(&id, MediaKind::Audio) >= 10
                        && s.packets_from(&id, MediaKind::Video) >= 10
                },
                WAIT,
            )
            .await
            .unwrap_or_else(|e| panic!("{} never received: {e}", viewer.participant_id()));
        first_media.push(started.elapsed());
    }
    for viewer in &viewers {
        let stats = viewer.stats();
        assert_eq!(stats.decrypt_failures, 0);
        // every viewer decrypted what it counted (decrypt_every 1)
        assert!(stats.packets_from(&id, MediaKind::Video) >= 10);
    }
    let connect: Vec<Duration> = viewers
        .iter()
        .filter_map(|v| v.stats().handshake_time)
        .collect();
    let quantile = |values: &[Duration], q: f64| {
        let mut sorted = values.to_vec();
        sorted.sort();
        sorted
            .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{} viewers: all joined after {joined:?}, all receiving after {:?}; offer-to-connected p50 {:?} p99 {:?}",
        viewers.len(),
        first_media.last().copied().unwrap_or_default(),
        quantile(&connect, 0.5),
        quantile(&connect, 0.99)
    );
    assert_eq!(
        server.metric("sluice_dtls_handshakes_completed_total"),
        (viewers_wanted + 1) as f64
    );
}
