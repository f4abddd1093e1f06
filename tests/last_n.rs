//! Last-N end to end: the real server with `media.last_n: 2`, three sluice-loadgen
//! publishers whose microphones carry RFC 6464 audio levels, and viewers that publish
//! nothing. Every viewer must receive the video of exactly the two publishers that spoke
//! most recently and the audio of all three; when the silent one starts speaking and
//! one of the others falls silent, the viewers' video must follow.
//!
//! `SLUICE_LAST_N_VIEWERS` sets the number of viewers (20 by default; the documented run
//! in docs/benchmarks.md uses 200).

mod support;

use std::time::{Duration, Instant};

use sluice_loadgen::{Client, ClientConfig, MediaKind};
use support::{start_server, Server};

const WAIT: Duration = Duration::from_secs(30);
const SPEAKING: Option<u8> = Some(30);
const SILENT: Option<u8> = Some(127);

fn config(server: &Server, name: &str, publish: bool) -> ClientConfig {
    ClientConfig {
        server_url: server.url.clone(),
        room: "last-n".into(),
        name: name.into(),
        publish_audio: publish,
        publish_video: publish,
        video_bitrate_bps: 200_000,
        video_fps: 15,
        keyframe_interval: Duration::from_secs(10),
        connect_timeout: WAIT,
        // count every packet from its clear header; decrypt a sample
        decrypt_every: 16,
        ..ClientConfig::default()
    }
}

/// Packets of `kind` each viewer received from each publisher.
fn received(viewers: &[Client], publishers: &[String], kind: MediaKind) -> Vec<Vec<u64>> {
    viewers
        .iter()
        .map(|v| {
            let stats = v.stats();
            publishers
                .iter()
                .map(|p| stats.packets_from(p, kind))
                .collect()
        })
        .collect()
}

/// Waits until, over a one-second window, every viewer's video from publisher `i` grew
/// exactly when `flowing[i]`, and its audio from everyone grew. Returns when it held.
async fn wait_for_video_from(
    viewers: &[Client],
    publishers: &[String],
    flowing: [bool; 3],
    label: &str,
) -> Duration {
    let started = Instant::now();
    loop {
        let video_before = received(viewers, publishers, MediaKind::Video);
        let audio_before = received(viewers, publishers, MediaKind::Audio);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let video_after = received(viewers, publishers, MediaKind::Video);
        let audio_after = received(viewers, publishers, MediaKind::Audio);
        let holds = video_before
            .iter()
            .zip(&video_after)
            .all(|(b, a)| (0..3).all(|i| (a[i] > b[i]) == flowing[i]))
            && audio_before
                .iter()
                .zip(&audio_after)
                .all(|(b, a)| (0..3).all(|i| a[i] > b[i]));
        if holds {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < WAIT,
            "{label}: video per viewer and publisher {video_after:?} (before {video_before:?}), \
             audio {audio_after:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_receive_the_video_of_the_two_most_recent_speakers_and_all_audio() {
    let viewers_wanted: usize = std::env::var("SLUICE_LAST_N_VIEWERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let server = start_server(
        "http:\n  listen: \"127.0.0.1:0\"\n\
         media:\n  listen: \"127.0.0.1:0\"\n  workers: 1\n  announce: [\"127.0.0.1\"]\n  last_n: 2\n\
         limits:\n  participants_per_room: 1000\n  sessions_per_source_ip: 2000\n  handshakes_in_flight: 1000\n",
    )
    .await;
    let mut publishers = Vec::new();
    for name in ["Ada", "Bo", "Cy"] {
        let client = Client::connect(config(&server, name, true))
            .await
            .expect("publisher joins");
        client.set_audio_level(SILENT);
        publishers.push(client);
    }
    let joined_at = Instant::now();
    let mut viewers = Vec::new();
    for n in 0..viewers_wanted {
        viewers.push(
            Client::connect(config(&server, &format!("viewer-{n}"), false))
                .await
                .expect("viewer joins"),
        );
    }
    for client in publishers.iter().chain(&viewers) {
        client.wait_connected(WAIT).await.expect("media connects");
    }
    println!(
        "{} viewers connected {:?} after the first joined",
        viewers.len(),
        joined_at.elapsed()
    );
    let ids: Vec<String> = publishers
        .iter()
        .map(|p| p.participant_id().to_owned())
        .collect();

    // Bo and Cy talk, Ada (who joined first) is silent: Ada's camera reaches nobody
    publishers[1].set_audio_level(SPEAKING);
    publishers[2].set_audio_level(SPEAKING);
    wait_for_video_from(&viewers, &ids, [false, true, true], "Bo and Cy speak").await;

    // Ada starts, Cy stops (Bo keeps talking): the viewers get Ada and Bo
    publishers[2].set_audio_level(SILENT);
    publishers[0].set_audio_level(SPEAKING);
    let switched = wait_for_video_from(&viewers, &ids, [true, true, false], "Ada speaks").await;
    println!("video followed the new speaker within {switched:?} (one-second windows)");
    for viewer in &viewers {
        assert_eq!(viewer.stats().decrypt_failures, 0);
    }
}
