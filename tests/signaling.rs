//! Signalling end to end: the real server in process and clients on the real WebSocket.
//! What a participant is sent (offers only for published tracks, mute state, a resync
//! after falling behind) and how the server ends clients that stall (no join, no
//! answer, no media, no reading).

mod support;

use support::{start_server, Server};

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sluice_loadgen::answer::{write_answer, AnswerParams, LocalTrack};
use sluice_loadgen::remote::RemoteOffer;
use sluice_loadgen::{Client, ClientConfig, ClientEvent};
use sluice_signal::protocol::{
    decode_server_message, encode_client_message, ClientMessage, ErrorCode, ParticipantInfo,
    PublishSlot, ServerMessage, Source, TrackInfo, PROTOCOL_VERSION,
};
use sluice_signal::sdp::Kind;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Generous bound for slow CI machines; the waits end as soon as the condition holds.
const WAIT: Duration = Duration::from_secs(20);

/// A server with one worker, the given `signaling` section and extra top-level YAML.
async fn start(signaling: &str, extra: &str) -> Server {
    start_with_media(signaling, "", extra).await
}

/// [`start`] with extra `media` keys.
async fn start_with_media(signaling: &str, media: &str, extra: &str) -> Server {
    let yaml = format!(
        "http:\n  listen: \"127.0.0.1:0\"\n\
         media:\n  listen: \"127.0.0.1:0\"\n  workers: 1\n  announce: [\"127.0.0.1\"]\n{media}\
         signaling:\n{signaling}\n\
         limits:\n  signaling_messages_per_second: 1000000\n\
         {extra}"
    );
    start_server(&yaml).await
}

/// A client speaking the protocol by hand: it answers only when told to.
struct Raw {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    id: String,
}

impl Raw {
    async fn connect(server: &Server) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(server.url.as_str())
            .await
            .expect("websocket connects");
        Self {
            ws,
            id: String::new(),
        }
    }

    /// A connection whose kernel receive buffer is tiny, so that when the test stops
    /// reading, the server's writes soon block.
    async fn connect_small_buffer(server: &Server) -> Self {
        let addr = server
            .url
            .trim_start_matches("ws://")
            .trim_end_matches("/ws")
            .parse()
            .expect("server address");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = socket.connect(addr).await.expect("tcp connects");
        let (ws, _) =
            tokio_tungstenite::client_async(server.url.as_str(), MaybeTlsStream::Plain(stream))
                .await
                .expect("websocket handshake");
        Self {
            ws,
            id: String::new(),
        }
    }

    async fn send(&mut self, message: &ClientMessage) {
        let text = encode_client_message(message);
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// The next server message; `None` when the socket closed.
    async fn recv(&mut self) -> Option<ServerMessage> {
        let deadline = tokio::time::sleep(WAIT);
        tokio::pin!(deadline);
        loop {
            let frame = tokio::select! {
                frame = self.ws.next() => frame,
                () = &mut deadline => panic!("{}: no message within {WAIT:?}", self.id),
            };
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return Some(
                        decode_server_message(text.as_str(), usize::MAX).expect("valid message"),
                    )
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Reads until `pick` returns something, failing on close.
    async fn until<T>(&mut self, mut pick: impl FnMut(&ServerMessage) -> Option<T>) -> T {
        loop {
            let message = self
                .recv()
                .await
                .unwrap_or_else(|| panic!("{}: closed while waiting", self.id));
            if let Some(found) = pick(&message) {
                return found;
            }
        }
    }

    async fn join(server: &Server, room: &str, name: &str) -> Self {
        let mut raw = Self::connect(server).await;
        raw.join_room(room, name).await;
        raw
    }

    async fn join_room(&mut self, room: &str, name: &str) -> Vec<ParticipantInfo> {
        self.send(&ClientMessage::Join {
            room: room.into(),
            name: name.into(),
            token: None,
            version: None,
        })
        .await;
        let (id, participants) = self
            .until(|m| match m {
                ServerMessage::Joined {
                    participant_id,
                    participants,
                    ..
                } => Some((participant_id.clone(), participants.clone())),
                _ => None,
            })
            .await;
        self.id = id;
        participants
    }

    /// Answers the next offer without publishing anything; returns the offer's text.
    async fn answer_next_offer(&mut self) -> String {
        self.answer_next_offer_publishing(None).await
    }

    /// Answers the next offer, sending `audio` on the microphone m-line if given.
    async fn answer_next_offer_publishing(&mut self, audio: Option<LocalTrack>) -> String {
        self.answer_next_offer_with(audio, None, false).await.0
    }

    /// Answers the next offer, sending `audio` and `video` on mids 0 and 1 if given and,
    /// with `screen`, a screen share on the m-line the offer's `publish` names for it.
    /// Returns the offer's text and its `publish` list.
    async fn answer_next_offer_with(
        &mut self,
        audio: Option<LocalTrack>,
        video: Option<LocalTrack>,
        screen: bool,
    ) -> (String, Vec<PublishSlot>) {
        let (revision, sdp, publish) = self
            .until(|m| match m {
                ServerMessage::Offer {
                    revision,
                    sdp,
                    publish,
                } => Some((*revision, sdp.clone(), publish.clone())),
                _ => None,
            })
            .await;
        let offer = RemoteOffer::parse(&sdp).expect("offer parses");
        let answer = write_answer(
            &offer.sdp,
            &AnswerParams {
                session_id: 9,
                version: revision,
                ice_ufrag: "rawufrag".into(),
                ice_pwd: "rawpasswordrawpasswordrawpass".into(),
                fingerprint_sha256: [9; 32],
                stream_id: self.id.clone(),
                cname: self.id.clone(),
                audio,
                video,
            },
        )
        .expect("answer");
        let screen_mid = publish
            .iter()
            .find(|slot| slot.source == Source::Screen)
            .map(|slot| slot.mid.clone());
        let answer = match screen_mid.filter(|_| screen) {
            Some(mid) => send_on(&answer, &mid),
            None => answer,
        };
        self.send(&ClientMessage::Answer {
            revision,
            sdp: answer,
        })
        .await;
        (sdp, publish)
    }

    /// Reads to the `bye` and returns its reason.
    async fn bye(&mut self) -> String {
        self.until(|m| match m {
            ServerMessage::Bye { reason } => Some(reason.clone()),
            _ => None,
        })
        .await
    }
}

/// `answer` with the m-line `mid` turned from inactive to sendonly, as a browser answers
/// once a track is attached to that transceiver (the server learns its SSRC by MID).
fn send_on(answer: &str, mid: &str) -> String {
    let marker = format!("a=mid:{mid}\r\n");
    let start = answer.find(&marker).expect("the m-line is answered") + marker.len();
    let end = answer[start..]
        .find("m=")
        .map_or(answer.len(), |i| start + i);
    format!(
        "{}{}{}",
        &answer[..start],
        answer[start..end].replace("a=inactive\r\n", "a=sendonly\r\n"),
        &answer[end..]
    )
}

/// The m-lines of an offer, and the msid track ids of those the server sends on.
fn m_lines(offer: &str) -> (usize, Vec<String>) {
    let count = offer.lines().filter(|l| l.starts_with("m=")).count();
    let mut sent = Vec::new();
    for section in offer.split("m=").skip(1) {
        if section.lines().any(|l| l.trim_end() == "a=sendonly") {
            if let Some(msid) = section.lines().find_map(|l| l.strip_prefix("a=msid:")) {
                sent.push(
                    msid.split(' ')
                        .nth(1)
                        .unwrap_or_default()
                        .trim_end()
                        .to_owned(),
                );
            }
        }
    }
    sent.sort();
    (count, sent)
}

fn track(id: u32, ssrc: u32) -> LocalTrack {
    LocalTrack {
        track_id: format!("t-{id}"),
        ssrc,
        rtx_ssrc: None,
    }
}

fn loadgen_config(server: &Server, room: &str, name: &str) -> ClientConfig {
    ClientConfig {
        server_url: server.url.clone(),
        room: room.to_owned(),
        name: name.to_owned(),
        video_bitrate_bps: 200_000,
        video_fps: 10,
        connect_timeout: WAIT,
        ..ClientConfig::default()
    }
}

/// The revision and remote track count of every offer `client` has answered.
fn answered(client: &Client) -> Vec<(u64, usize)> {
    client
        .events()
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::Answered { revision, tracks } => Some((revision, tracks)),
            _ => None,
        })
        .collect()
}

fn sent_m_lines(offer: &str) -> usize {
    offer
        .lines()
        .filter(|l| l.trim_end() == "a=sendonly")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_another_protocol_version_gets_a_clear_error_and_a_client_of_ours_joins() {
    let server = start("", "").await;
    let mut future = Raw::connect(&server).await;
    future
        .send(&ClientMessage::Join {
            room: "versions".into(),
            name: "Future".into(),
            token: None,
            version: Some(PROTOCOL_VERSION + 1),
        })
        .await;
    let (code, message) = future
        .until(|m| match m {
            ServerMessage::Error { code, message } => Some((*code, message.clone())),
            _ => None,
        })
        .await;
    assert_eq!(code, ErrorCode::UnsupportedVersion);
    assert!(message.contains("version 1"), "{message}");
    // ... and the connection ends
    while future.recv().await.is_some() {}

    let mut current = Raw::connect(&server).await;
    current
        .send(&ClientMessage::Join {
            room: "versions".into(),
            name: "Current".into(),
            token: None,
            version: Some(PROTOCOL_VERSION),
        })
        .await;
    let version = current
        .until(|m| match m {
            ServerMessage::Joined { version, .. } => Some(*version),
            _ => None,
        })
        .await;
    assert_eq!(version, PROTOCOL_VERSION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_joins_is_closed_after_the_join_timeout() {
    let server = start("  join_timeout_ms: 1000", "").await;
    let mut idle = Raw::connect(&server).await;
    let started = Instant::now();
    assert_eq!(idle.bye().await, "idle_timeout");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(
        server.metric("sluice_signaling_sessions_ended_total{reason=\"idle_timeout\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_offer_ends_the_participant_and_the_others_see_it_leave() {
    let server = start("  answer_timeout_ms: 1000", "").await;
    let mut watcher = Raw::join(&server, "ghosts", "watcher").await;
    watcher.answer_next_offer().await;
    let mut ghost = Raw::join(&server, "ghosts", "ghost").await;
    let ghost_id = ghost.id.clone();
    assert!(matches!(
        ghost.recv().await,
        Some(ServerMessage::Offer { .. })
    ));
    assert_eq!(ghost.bye().await, "answer_timeout");
    watcher
        .until(|m| {
            matches!(m, ServerMessage::ParticipantLeft { id } if *id == ghost_id).then_some(())
        })
        .await;
    assert_eq!(
        server.metric("sluice_signaling_sessions_ended_total{reason=\"answer_timeout\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_whose_media_never_connects_is_ended() {
    let server = start_with_media(
        "  answer_timeout_ms: 60000",
        "  connect_timeout_ms: 1000\n",
        "dtls:\n  handshake_timeout_ms: 1000\n",
    )
    .await;
    let mut silent = Raw::join(&server, "silent", "no-ice").await;
    silent.answer_next_offer().await;
    assert_eq!(silent.bye().await, "connect_timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_publishes_nothing_causes_no_offer_to_anyone() {
    let server = start("  answer_timeout_ms: 60000", "").await;
    let publisher = Client::connect(loadgen_config(&server, "webinar", "speaker"))
        .await
        .expect("speaker joins");
    publisher.wait_connected(WAIT).await.expect("speaker media");
    let before = answered(&publisher);

    let mut viewer = Raw::join(&server, "webinar", "viewer").await;
    let offer = viewer.answer_next_offer().await;
    assert_eq!(
        sent_m_lines(&offer),
        2,
        "the viewer receives the speaker's two tracks"
    );

    // A second speaker: its offer to the first is the next one, and it carries only
    // the new speaker's two tracks, nothing for the viewer.
    let second = Client::connect(loadgen_config(&server, "webinar", "second"))
        .await
        .expect("second speaker joins");
    second
        .wait_connected(WAIT)
        .await
        .expect("second speaker media");
    publisher
        .wait_for(|s| s.participants.len() == 2, WAIT)
        .await
        .expect("speaker sees both");
    publisher
        .wait_for_event(
            |e| matches!(e, ClientEvent::Answered { tracks, .. } if *tracks == 2),
            WAIT,
        )
        .await
        .expect("speaker is offered the second speaker");
    let after = answered(&publisher);
    let new: Vec<_> = after[before.len()..].to_vec();
    let last_revision = before.last().map_or(0, |(r, _)| *r);
    assert_eq!(
        new,
        vec![(last_revision + 1, 2)],
        "offers to the speaker after the viewer joined (revision, remote tracks)"
    );
    // The viewer is offered the second speaker too, and still sends nothing.
    let offer = viewer.answer_next_offer().await;
    assert_eq!(sent_m_lines(&offer), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_state_reaches_the_others_and_newcomers() {
    let server = start("  answer_timeout_ms: 60000", "").await;
    let mut ada = Raw::join(&server, "mutes", "Ada").await;
    let mut bo = Raw::join(&server, "mutes", "Bo").await;
    ada.send(&ClientMessage::Mute {
        kind: Kind::Video,
        muted: true,
    })
    .await;
    let ada_id = ada.id.clone();
    bo.until(|m| match m {
        ServerMessage::ParticipantMuted { id, kind, muted } if *id == ada_id => {
            assert_eq!((*kind, *muted), (Kind::Video, true));
            Some(())
        }
        _ => None,
    })
    .await;
    let mut cy = Raw::connect(&server).await;
    let participants = cy.join_room("mutes", "Cy").await;
    let ada_seen = participants
        .iter()
        .find(|p| p.id == ada.id)
        .expect("Ada listed");
    assert!(ada_seen.video_muted && !ada_seen.audio_muted);
    let cy_id = cy.id.clone();
    ada.until(|m| match m {
        ServerMessage::ParticipantJoined {
            id, video_muted, ..
        } if *id == cy_id => Some(*video_muted),
        _ => None,
    })
    .await;
}

/// Toggles `toggler`'s microphone `count` times: each toggle is one room event for
/// every other member.
async fn toggle_mute(toggler: &mut Raw, count: usize) {
    for i in 0..count {
        toggler
            .send(&ClientMessage::Mute {
                kind: Kind::Audio,
                muted: i % 2 == 0,
            })
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_ended_by_the_send_timeout() {
    let server = start("  answer_timeout_ms: 60000\n  send_timeout_ms: 1000", "").await;
    let mut stalled = Raw::connect_small_buffer(&server).await;
    stalled.join_room("stall", "stalled").await;
    let stalled_id = stalled.id.clone();
    let mut toggler = Raw::join(&server, "stall", "toggler").await;
    // The stalled client reads nothing from here on. Filling the loopback buffers takes
    // about 15 s alone on 2 cores and longer when the machine is busy: a wide bound.
    let deadline = Instant::now() + 3 * WAIT;
    loop {
        toggle_mute(&mut toggler, 500).await;
        if server.metric("sluice_signaling_sessions_ended_total{reason=\"send_timeout\"}") >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled client was never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    toggler
        .until(|m| {
            matches!(m, ServerMessage::ParticipantLeft { id } if *id == stalled_id).then_some(())
        })
        .await;
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_falls_behind_gets_the_whole_room_state() {
    let server = start(
        "  answer_timeout_ms: 60000\n  send_timeout_ms: 60000\n  room_event_queue: 16",
        "",
    )
    .await;
    let mut behind = Raw::connect_small_buffer(&server).await;
    behind.join_room("resync", "behind").await;
    let mut toggler = Raw::join(&server, "resync", "toggler").await;
    let leaver = Raw::join(&server, "resync", "leaver").await;
    let leaver_id = leaver.id.clone();
    // `behind` reads nothing until its queue overflowed.
    let deadline = Instant::now() + WAIT;
    while server.metric("sluice_signaling_room_resyncs_total") < 1.0 {
        toggle_mute(&mut toggler, 200).await;
        assert!(Instant::now() < deadline, "the room queue never overflowed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(leaver);
    let stayer = Raw::join(&server, "resync", "stayer").await;
    let truth: std::collections::BTreeSet<String> = [toggler.id.clone(), stayer.id.clone()].into();

    // Now read: apply every change as a client would, until the view is the room.
    let mut view = std::collections::BTreeSet::new();
    let mut resynced = false;
    while !(resynced && view == truth) {
        match behind.recv().await.expect("still connected") {
            ServerMessage::ParticipantJoined { id, .. } => {
                view.insert(id);
            }
            ServerMessage::ParticipantLeft { id } => {
                view.remove(&id);
            }
            ServerMessage::RoomState { participants } => {
                resynced = true;
                view = participants.into_iter().map(|p| p.id).collect();
            }
            _ => {}
        }
    }
    assert!(!view.contains(&leaver_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_storm_costs_each_member_a_few_offers() {
    const JOINERS: usize = 100;
    let server = start(
        "  answer_timeout_ms: 60000",
        "  participants_per_room: 200\n  sessions_per_source_ip: 500\n",
    )
    .await;
    let mut member = Raw::join(&server, "storm", "member").await;
    member.answer_next_offer().await;

    // 100 participants join within a moment and each publishes a microphone.
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..JOINERS {
        let url = server.url.clone();
        joins.spawn(async move {
            let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .expect("websocket connects");
            let mut raw = Raw {
                ws,
                id: String::new(),
            };
            raw.join_room("storm", &format!("joiner-{i}")).await;
            let ssrc = 0x1000 + i as u32;
            raw.answer_next_offer_publishing(Some(LocalTrack {
                track_id: format!("mic-{i}"),
                ssrc,
                rtx_ssrc: None,
            }))
            .await;
            raw
        });
    }
    let started = Instant::now();
    let mut joiners = Vec::new();
    while let Some(raw) = joins.join_next().await {
        joiners.push(raw.expect("joiner"));
    }
    let joined_in = started.elapsed();

    // The member answers every offer until one carries all 100 microphones.
    let mut offers = 0;
    loop {
        let offer = member.answer_next_offer().await;
        offers += 1;
        if sent_m_lines(&offer) == JOINERS {
            break;
        }
    }
    // One offer per renegotiation window (100 ms) the storm lasted, plus the one in
    // flight when it began: without batching it is one per answer round trip
    // (measured: 13 offers for a storm of 85 ms; with batching 1).
    let windows = joined_in.as_millis() as usize / 100;
    assert!(
        offers <= 2 + windows,
        "{offers} offers for {JOINERS} joins in {joined_in:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_share_is_offered_once_to_each_subscriber_and_its_m_line_recycled() {
    let server = start("  answer_timeout_ms: 60000", "").await;
    let mut ada = Raw::join(&server, "screens", "Ada").await;
    ada.answer_next_offer_with(Some(track(1, 0x100)), None, false)
        .await;
    let mut bo = Raw::join(&server, "screens", "Bo").await;
    let (first, _) = bo.answer_next_offer_with(None, None, false).await;
    let ada_mic = format!("{}-audio", ada.id);
    let ada_screen = format!("{}-screen", ada.id);
    assert_eq!(m_lines(&first), (3, vec![ada_mic.clone()]));

    // Ada shares her screen: her next offer has an m-line for it, named in `publish`.
    ada.send(&ClientMessage::Publish {
        source: Source::Screen,
    })
    .await;
    let (offer, publish) = ada
        .answer_next_offer_with(Some(track(1, 0x100)), None, true)
        .await;
    let screen_mid = publish
        .iter()
        .find(|s| s.source == Source::Screen)
        .map(|s| s.mid.clone())
        .expect("a screen m-line in publish");
    let sources: Vec<(String, Source)> =
        publish.iter().map(|s| (s.mid.clone(), s.source)).collect();
    assert_eq!(
        sources,
        [
            ("0".into(), Source::Microphone),
            ("1".into(), Source::Camera),
            (screen_mid.clone(), Source::Screen)
        ]
    );
    assert_eq!(m_lines(&offer).0, 3, "the screen's m-line is the third");

    // Bo is told, then offered it once: one more video m-line, sent to him.
    let ada_id = ada.id.clone();
    let announced = bo
        .until(|m| match m {
            ServerMessage::TrackPublished {
                participant_id,
                track,
            } if *participant_id == ada_id => Some(track.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        announced,
        TrackInfo {
            id: ada_screen.clone(),
            kind: Kind::Video,
            source: Source::Screen,
            muted: false
        }
    );
    let (offer, _) = bo.answer_next_offer_with(None, None, false).await;
    assert_eq!(
        m_lines(&offer),
        (4, vec![ada_mic.clone(), ada_screen.clone()])
    );
    assert!(
        offer.contains(&format!("a=msid:{ada_screen} {ada_screen}")),
        "a screen is a stream of its own"
    );

    // Ada stops: Bo is told at once, and nothing else was offered to him meanwhile.
    ada.send(&ClientMessage::Unpublish {
        source: Source::Screen,
    })
    .await;
    let mut offers_between = 0;
    loop {
        match bo.recv().await.expect("bo connected") {
            ServerMessage::TrackUnpublished {
                participant_id,
                track_id,
            } => {
                assert_eq!(
                    (participant_id, track_id),
                    (ada.id.clone(), ada_screen.clone())
                );
                break;
            }
            ServerMessage::Offer { .. } => offers_between += 1,
            _ => {}
        }
    }
    assert_eq!(offers_between, 0, "the screen cost Bo exactly one offer");
    let (offer, _) = bo.answer_next_offer_with(None, None, false).await;
    assert_eq!(
        m_lines(&offer),
        (4, vec![ada_mic.clone()]),
        "m-line kept, inactive"
    );
    let (offer, publish) = ada
        .answer_next_offer_with(Some(track(1, 0x100)), None, false)
        .await;
    assert!(publish.iter().all(|s| s.source != Source::Screen));
    assert_eq!(m_lines(&offer).0, 3);

    // Sharing again recycles the inactive m-lines on both sides: no offer grows.
    ada.send(&ClientMessage::Publish {
        source: Source::Screen,
    })
    .await;
    let (offer, publish) = ada
        .answer_next_offer_with(Some(track(1, 0x100)), None, true)
        .await;
    assert_eq!(m_lines(&offer).0, 3);
    assert!(publish
        .iter()
        .any(|s| s.source == Source::Screen && s.mid == screen_mid));
    let (offer, _) = bo.answer_next_offer_with(None, None, false).await;
    assert_eq!(m_lines(&offer), (4, vec![ada_mic, ada_screen]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_follow_subscriptions_and_never_grow_past_the_most_subscribed_at_once() {
    let server = start_with_media(
        "  answer_timeout_ms: 60000",
        "  max_video_subscriptions: 2\n",
        "",
    )
    .await;
    // four publishers with microphone and camera
    let mut publishers = Vec::new();
    for i in 0..4u32 {
        let mut publisher = Raw::join(&server, "subs", &format!("pub-{i}")).await;
        let video = LocalTrack {
            rtx_ssrc: Some(0x2000 + i),
            ..track(10 + i, 0x1000 + i)
        };
        publisher
            .answer_next_offer_with(Some(track(i, 0x100 + i)), Some(video), false)
            .await;
        publishers.push(publisher);
    }
    let camera = |p: &Raw| format!("{}-video", p.id);
    let microphone = |p: &Raw| format!("{}-audio", p.id);
    let mut viewer = Raw::connect(&server).await;
    let listed = viewer.join_room("subs", "viewer").await;
    for p in &publishers {
        let info = listed.iter().find(|i| i.id == p.id).expect("listed");
        let ids: Vec<&str> = info.tracks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, [microphone(p), camera(p)], "tracks in joined");
    }
    // by default: every microphone, the first two cameras
    let offer = viewer.answer_next_offer().await;
    let mut expected: Vec<String> = publishers.iter().map(microphone).collect();
    expected.extend([camera(&publishers[0]), camera(&publishers[1])]);
    expected.sort();
    let (lines, sent) = m_lines(&offer);
    assert_eq!(sent, expected);
    assert_eq!(lines, 2 + 6);
    let mut sizes = vec![offer.len()];

    // A third camera is over the limit, an unknown id is an error; the session goes on.
    viewer
        .send(&ClientMessage::Subscribe {
            track_ids: vec![camera(&publishers[2])],
        })
        .await;
    let code = viewer
        .until(|m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(code, ErrorCode::SubscriptionLimit);
    for (track_ids, expected) in [
        (vec!["p-999999-audio".to_owned()], ErrorCode::UnknownTrack),
        (
            vec![format!("{}-screen", publishers[0].id)],
            ErrorCode::UnknownTrack,
        ),
        (
            vec![format!("{}-audio", viewer.id)],
            ErrorCode::UnknownTrack,
        ),
        // a list over the bound is refused whole, before anything is looked up
        (vec![camera(&publishers[2]); 257], ErrorCode::BadRequest),
    ] {
        viewer.send(&ClientMessage::Subscribe { track_ids }).await;
        let code = viewer
            .until(|m| match m {
                ServerMessage::Error { code, .. } => Some(*code),
                _ => None,
            })
            .await;
        assert_eq!(code, expected);
    }
    viewer
        .send(&ClientMessage::Unsubscribe {
            track_ids: vec![
                "p-999999-video".into(),
                "nonsense".into(),
                camera(&publishers[0]),
                microphone(&publishers[0]),
                microphone(&publishers[1]),
            ],
        })
        .await;
    let code = viewer
        .until(|m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(code, ErrorCode::UnknownTrack);
    // ... and the known ids of that message were applied
    let offer = viewer.answer_next_offer().await;
    let (lines, sent) = m_lines(&offer);
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(lines, 8, "m-lines are kept (inactive), never removed");
    sizes.push(offer.len());

    // Churn: swap cameras back and forth. An m-line freed by an unsubscription is
    // reused once the answer acknowledged it inactive, so the offer never grows.
    for round in 0..4 {
        let (drop, take) = if round % 2 == 0 { (1, 2) } else { (2, 1) };
        viewer
            .send(&ClientMessage::Unsubscribe {
                track_ids: vec![camera(&publishers[drop])],
            })
            .await;
        let offer = viewer.answer_next_offer().await;
        assert_eq!(m_lines(&offer).0, 8, "round {round}");
        let before = offer.len();
        sizes.push(before);
        viewer
            .send(&ClientMessage::Subscribe {
                track_ids: vec![camera(&publishers[take]), camera(&publishers[3])],
            })
            .await;
        let offer = viewer.answer_next_offer().await;
        let (lines, sent) = m_lines(&offer);
        assert_eq!(lines, 8, "round {round}: recycled, not appended");
        assert!(sent.contains(&camera(&publishers[take])), "{sent:?}");
        assert!(sent.contains(&camera(&publishers[3])), "{sent:?}");
        sizes.push(offer.len());
        viewer
            .send(&ClientMessage::Unsubscribe {
                track_ids: vec![camera(&publishers[3])],
            })
            .await;
        let offer = viewer.answer_next_offer().await;
        assert_eq!(m_lines(&offer).0, 8);
        assert!(
            offer.len() <= sizes[sizes.len() - 1],
            "fewer tracks, no larger offer"
        );
        sizes.push(offer.len());
    }
    // Unsubscribing everything: the offer shrinks or stays, never grows.
    let all: Vec<String> = publishers
        .iter()
        .flat_map(|p| [camera(p), microphone(p)])
        .collect();
    viewer
        .send(&ClientMessage::Unsubscribe { track_ids: all })
        .await;
    let offer = viewer.answer_next_offer().await;
    assert_eq!(m_lines(&offer).1, Vec::<String>::new());
    let last = offer.len();
    println!("viewer offer bytes, step by step: {sizes:?}, nothing subscribed: {last}");
    let largest = sizes.iter().copied().max().unwrap_or(0);
    assert!(last <= largest, "{last} > {largest}: {sizes:?}");
    assert!(
        m_lines(&offer).0 <= 8,
        "bounded by the most tracks subscribed at once"
    );
    // still in the room: a ping is answered
    viewer.send(&ClientMessage::Ping).await;
    viewer
        .until(|m| matches!(m, ServerMessage::Pong).then_some(()))
        .await;
}

/// The media sections of an SDP (each from its `m=` line to the next).
fn sections(sdp: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = sdp.match_indices("\r\nm=").map(|(i, _)| i + 2).collect();
    starts.push(sdp.len());
    starts.windows(2).map(|w| &sdp[w[0]..w[1]]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_unsubscribing_the_offer_shrinks_to_about_the_size_of_the_remaining_tracks() {
    let server = start_with_media(
        "  answer_timeout_ms: 60000",
        "  max_video_subscriptions: 8\n",
        "",
    )
    .await;
    const PUBLISHERS: u32 = 6;
    let mut publishers = Vec::new();
    for i in 0..PUBLISHERS {
        let mut publisher = Raw::join(&server, "shrink", &format!("pub-{i}")).await;
        let video = LocalTrack {
            rtx_ssrc: Some(0x2000 + i),
            ..track(10 + i, 0x1000 + i)
        };
        publisher
            .answer_next_offer_with(Some(track(i, 0x100 + i)), Some(video), false)
            .await;
        publishers.push(publisher);
    }
    let mut viewer = Raw::join(&server, "shrink", "viewer").await;
    let all = viewer.answer_next_offer().await;
    assert_eq!(
        m_lines(&all).1.len(),
        2 * PUBLISHERS as usize,
        "all subscribed"
    );

    // Unsubscribe everything but the first publisher's two tracks.
    let track_ids: Vec<String> = publishers[1..]
        .iter()
        .flat_map(|p| [format!("{}-audio", p.id), format!("{}-video", p.id)])
        .collect();
    let dropped = track_ids.len();
    viewer.send(&ClientMessage::Unsubscribe { track_ids }).await;
    let after = viewer.answer_next_offer().await;
    let (lines, sent) = m_lines(&after);
    assert_eq!(lines, 2 + 2 * PUBLISHERS as usize, "m-lines are kept");
    assert_eq!(sent.len(), 2);

    // Each inactive m-line keeps only what JSEP and BUNDLE require: its mid, its
    // direction, rtcp-mux, the transport it shares, and one payload type.
    let mut inactive_bytes = 0;
    let mut inactive = 0;
    for section in sections(&after) {
        if !section.contains("a=inactive\r\n") {
            continue;
        }
        inactive += 1;
        inactive_bytes += section.len();
        let m_line = section.lines().next().unwrap_or_default();
        assert_eq!(m_line.split(' ').count(), 4, "one payload type: {m_line}");
        assert!(section.contains("a=mid:") && section.contains("a=rtcp-mux\r\n"));
        assert_eq!(section.matches("a=rtpmap:").count(), 1, "{section}");
        for absent in ["a=rtcp-fb:", "a=fmtp:", "a=extmap:", "a=ssrc", "a=msid:"] {
            assert!(!section.contains(absent), "{absent} in {section}");
        }
        assert!(section.len() < 512, "{} bytes: {section}", section.len());
    }
    assert_eq!(inactive, dropped);
    // The rest (session, the viewer's own two m-lines, the two tracks still subscribed)
    // is what the offer costs; the inactive m-lines add little to it.
    let remaining = after.len() - inactive_bytes;
    println!(
        "offer bytes: {} with {} tracks, {} after unsubscribing {dropped} \
         ({remaining} for the rest, {inactive_bytes} for {inactive} inactive m-lines)",
        all.len(),
        2 * PUBLISHERS,
        after.len()
    );
    assert!(
        after.len() < remaining + dropped * 512,
        "{} bytes, {remaining} of them for what is still subscribed",
        after.len()
    );
    assert!(
        inactive_bytes * 2 < all.len() - remaining,
        "{inactive_bytes} bytes of inactive m-lines for {dropped} tracks that took {}",
        all.len() - remaining
    );

    // Subscribing again recycles the minimal m-lines into full ones.
    let again: Vec<String> = publishers[1..]
        .iter()
        .map(|p| format!("{}-video", p.id))
        .collect();
    viewer
        .send(&ClientMessage::Subscribe { track_ids: again })
        .await;
    let offer = viewer.answer_next_offer().await;
    let (lines, sent) = m_lines(&offer);
    assert_eq!(lines, 2 + 2 * PUBLISHERS as usize, "recycled, not appended");
    assert_eq!(sent.len(), 2 + (PUBLISHERS as usize - 1));
    for section in sections(&offer) {
        if section.contains("a=sendonly\r\n") {
            assert!(
                section.contains("a=rtcp-fb:"),
                "a full codec block: {section}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_and_unpublishing_a_screen_without_answering_stays_bounded() {
    let server = start("  answer_timeout_ms: 60000", "").await;
    let mut eve = Raw::join(&server, "flood", "Eve").await;
    eve.answer_next_offer().await;
    // Each stopped share leaves an m-line that only an answer makes reusable: without
    // answers, the session's m-lines run out and further shares are refused.
    for _ in 0..300 {
        eve.send(&ClientMessage::Publish {
            source: Source::Screen,
        })
        .await;
        eve.send(&ClientMessage::Unpublish {
            source: Source::Screen,
        })
        .await;
    }
    eve.send(&ClientMessage::Publish {
        source: Source::Camera,
    })
    .await;
    eve.send(&ClientMessage::Ping).await;
    let mut refused = 0;
    let mut pong = false;
    let mut offered = None;
    // the errors come before the pong (messages are handled in order); the offer the
    // flood made due comes once, whenever its batching window closes
    while !(pong && offered.is_some()) {
        match eve.recv().await.expect("still connected") {
            ServerMessage::Error { code, .. } => {
                assert!(!pong, "an error after the pong");
                assert_eq!(code, ErrorCode::BadRequest);
                refused += 1;
            }
            ServerMessage::Offer { sdp, publish, .. } => {
                assert!(offered.is_none(), "one offer at a time");
                offered = Some((sdp, publish));
            }
            ServerMessage::Pong => pong = true,
            _ => {}
        }
    }
    // 254 shares fit beside mids 0 and 1; the other 46 and the camera are refused
    assert_eq!(refused, 300 - 254 + 1);
    let (sdp, publish) = offered.unwrap_or_default();
    assert!(publish.iter().all(|s| s.source != Source::Screen));
    assert_eq!(
        m_lines(&sdp).0,
        256,
        "every m-line the session may have, no more"
    );
}
