//! End to end on 127.0.0.1: several `Client`s against an in-process stand-in for the
//! Sluice server (WebSocket signalling with the real `Negotiator`, `IceLite`, the DTLS
//! engine, webrtc-srtp, and plain forwarding of decrypted RTP to every other
//! participant under the publisher's own SSRCs).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sluice_dtls::{Certificate, Config, Connection, Event, Fingerprint, PeerAuth, Role};
use sluice_ice::{demux, Credentials, IceConfig, IceLite, PacketClass};
use sluice_loadgen::transport::srtp_contexts;
use sluice_loadgen::{Client, ClientConfig, ClientEvent, MediaKind, Phase};
use sluice_signal::negotiation::{Negotiator, NegotiatorConfig, TransportParams};
use sluice_signal::protocol::{ClientMessage, ParticipantInfo, ServerMessage};
use sluice_signal::sdp::{Kind, SendStream, Setup};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_tungstenite::tungstenite::Message;
use webrtc_srtp::context::Context;

/// A publisher's (audio SSRC, (video SSRC, RTX SSRC)).
type Published = (Option<u32>, Option<(u32, u32)>);

struct Peer {
    name: String,
    tx: UnboundedSender<ServerMessage>,
    negotiator: Negotiator,
    ice: IceLite,
    dtls: Option<Connection>,
    srtp: Option<(Context, Context)>,
    /// (audio ssrc, video ssrc, video rtx ssrc) from the first answer.
    ssrcs: Option<Published>,
}

struct Server {
    cert: Arc<Certificate>,
    media_addr: SocketAddr,
    peers: HashMap<String, Peer>,
    next_id: u32,
}

impl Server {
    fn offer_where_needed(&mut self) {
        for peer in self.peers.values_mut() {
            if peer.negotiator.needs_offer() {
                let (revision, sdp) = peer.negotiator.create_offer().unwrap();
                let _ = peer.tx.send(ServerMessage::Offer {
                    revision,
                    sdp,
                    publish: Vec::new(),
                });
            }
        }
    }

    fn add_tracks_of(&mut self, publisher: &str) {
        let Some((audio, video)) = self.peers.get(publisher).and_then(|p| p.ssrcs) else {
            return;
        };
        for (id, peer) in self
            .peers
            .iter_mut()
            .filter(|(id, _)| id.as_str() != publisher)
        {
            let _ = id;
            if let Some(ssrc) = audio {
                let _ = peer.negotiator.add_remote_track(
                    publisher,
                    Kind::Audio,
                    stream(publisher, "a", ssrc, None),
                );
            }
            if let Some((ssrc, rtx)) = video {
                let _ = peer.negotiator.add_remote_track(
                    publisher,
                    Kind::Video,
                    stream(publisher, "v", ssrc, Some(rtx)),
                );
            }
        }
    }
}

fn stream(p: &str, t: &str, ssrc: u32, rtx_ssrc: Option<u32>) -> SendStream {
    SendStream {
        stream_id: p.into(),
        track_id: format!("{p}-{t}"),
        ssrc,
        rtx_ssrc,
        cname: p.into(),
    }
}

type Shared = Arc<Mutex<Server>>;

async fn handle_ws(shared: Shared, tcp: tokio::net::TcpStream) {
    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    let (tx, mut rx) = unbounded_channel::<ServerMessage>();
    let mut me: Option<String> = None;
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(out) = out else { break };
                let bye = matches!(out, ServerMessage::Bye { .. });
                let _ = ws.send(Message::text(serde_json::to_string(&out).unwrap())).await;
                if bye { break; }
            }
            frame = ws.next() => {
                let Some(Ok(Message::Text(text))) = frame else { break };
                let message: ClientMessage = serde_json::from_str(text.as_str()).unwrap();
                let mut server = shared.lock().unwrap();
                match message {
                    ClientMessage::Join { name, .. } => {
                        server.next_id += 1;
                        let id = format!("p-{}", server.next_id);
                        let ice_creds = Credentials::generate(&ring::rand::SystemRandom::new()).unwrap();
                        let negotiator = Negotiator::new(TransportParams {
                            session_id: u64::from(server.next_id),
                            ice: (ice_creds.ufrag.clone(), ice_creds.pwd.clone()),
                            fingerprint_sha256: server.cert.fingerprint().0,
                            setup: Setup::ActPass,
                            candidates: vec![server.media_addr],
                        }, NegotiatorConfig::default());
                        let participants: Vec<ParticipantInfo> = server.peers.iter()
                            .map(|(id, p)| ParticipantInfo::new(id.clone(), p.name.clone())).collect();
                        for peer in server.peers.values() {
                            let _ = peer.tx.send(ServerMessage::ParticipantJoined { id: id.clone(), name: name.clone(), audio_muted: false, video_muted: false, tracks: Vec::new() });
                        }
                        let _ = tx.send(ServerMessage::Joined { version: sluice_signal::protocol::PROTOCOL_VERSION, participant_id: id.clone(), room: "r".into(), participants });
                        server.peers.insert(id.clone(), Peer {
                            name, tx: tx.clone(), negotiator,
                            ice: IceLite::new(IceConfig::default(), ice_creds).unwrap(),
                            dtls: None, srtp: None, ssrcs: None,
                        });
                        // everyone already publishing shows up in the first offer
                        let publishers: Vec<String> = server.peers.keys().filter(|p| **p != id).cloned().collect();
                        for p in publishers {
                            if let Some((audio, video)) = server.peers[&p].ssrcs {
                                let peer = server.peers.get_mut(&id).unwrap();
                                if let Some(s) = audio { let _ = peer.negotiator.add_remote_track(&p, Kind::Audio, stream(&p, "a", s, None)); }
                                if let Some((s, r)) = video { let _ = peer.negotiator.add_remote_track(&p, Kind::Video, stream(&p, "v", s, Some(r))); }
                            }
                        }
                        me = Some(id);
                    }
                    ClientMessage::Answer { revision, sdp } => {
                        let id = me.clone().unwrap();
                        let cert = server.cert.clone();
                        let peer = server.peers.get_mut(&id).unwrap();
                        let answer = peer.negotiator.on_answer(revision, &sdp).expect("answer accepted");
                        let first = peer.ssrcs.is_none();
                        if first {
                            peer.ice.set_remote_credentials(Credentials { ufrag: answer.ice_ufrag.clone(), pwd: answer.ice_pwd.clone() }).unwrap();
                            let role = if answer.setup == Setup::Active { Role::Server } else { Role::Client };
                            peer.dtls = Some(Connection::new(Arc::new(Config::new(cert)), role,
                                PeerAuth::Fingerprint(Fingerprint(answer.fingerprint_sha256)), id.as_bytes(), Instant::now()));
                            let audio = answer.media.first().and_then(|m| m.ssrcs.first().copied());
                            let video = answer.media.get(1).and_then(|m| m.fid_groups.first().copied());
                            peer.ssrcs = Some((audio, video));
                        }
                        if first { server.add_tracks_of(&id); }
                    }
                    ClientMessage::Leave => {
                        let id = me.take().unwrap();
                        server.peers.remove(&id);
                        for peer in server.peers.values_mut() {
                            peer.negotiator.remove_participant(&id);
                            let _ = peer.tx.send(ServerMessage::ParticipantLeft { id: id.clone() });
                        }
                        let _ = tx.send(ServerMessage::Bye { reason: "left".into() });
                    }
                    ClientMessage::Ping => { let _ = tx.send(ServerMessage::Pong); }
                    ClientMessage::Mute { .. } | ClientMessage::VideoSize { .. }
                    | ClientMessage::Publish { .. } | ClientMessage::Unpublish { .. }
                    | ClientMessage::Subscribe { .. } | ClientMessage::Unsubscribe { .. } => {}
                }
                server.offer_where_needed();
            }
        }
    }
}

fn media_step(
    server: &mut Server,
    now: Instant,
    from: Option<(SocketAddr, &[u8])>,
) -> Vec<(SocketAddr, Vec<u8>)> {
    let local = server.media_addr;
    let mut out = Vec::new();
    let mut forward: Option<(String, Vec<u8>)> = None;
    let mut feedback: Option<Vec<u8>> = None;
    if let Some((from, datagram)) = from {
        match demux::classify(datagram) {
            PacketClass::Stun => {
                let ufrag = demux::stun_local_ufrag(datagram).map(str::to_owned);
                if let Some(peer) = server
                    .peers
                    .values_mut()
                    .find(|p| Some(&p.ice.local_credentials().ufrag) == ufrag.as_ref())
                {
                    let _ = peer.ice.handle_stun(now, local, from, datagram);
                }
            }
            class => {
                if let Some((id, peer)) = server
                    .peers
                    .iter_mut()
                    .find(|(_, p)| p.ice.is_permitted(from))
                {
                    match class {
                        PacketClass::Dtls => {
                            if let Some(d) = peer.dtls.as_mut() {
                                d.handle_datagram(now, datagram)
                            }
                        }
                        PacketClass::Rtcp => {
                            if let Some((_, remote)) = peer.srtp.as_mut() {
                                if let Ok(plain) = remote.decrypt_rtcp(datagram) {
                                    feedback = Some(plain.to_vec());
                                }
                            }
                        }
                        PacketClass::Rtp => {
                            if let Some((_, remote)) = peer.srtp.as_mut() {
                                if let Ok(plain) = remote.decrypt_rtp(datagram) {
                                    forward = Some((id.clone(), plain.to_vec()));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    if let Some((publisher, plain)) = forward {
        for (_, peer) in server.peers.iter_mut().filter(|(id, _)| **id != publisher) {
            if peer.negotiator.mid_of(&publisher, Kind::Audio).is_none() {
                continue;
            }
            if let (Some((local_ctx, _)), Some(to)) = (peer.srtp.as_mut(), peer.ice.nominated()) {
                if let Ok(bytes) = local_ctx.encrypt_rtp(&plain) {
                    out.push((to, bytes.to_vec()));
                }
            }
        }
    }
    // Feedback goes to the publisher of the stream it names (SSRCs are not rewritten).
    if let Some(plain) = feedback {
        let targets: Vec<u32> = sluice_rtp::RtcpIter::new(&plain)
            .filter_map(Result::ok)
            .filter_map(|p| match p {
                sluice_rtp::RtcpPacket::Pli { media_ssrc, .. } => Some(media_ssrc),
                sluice_rtp::RtcpPacket::Nack(n) => Some(n.media_ssrc),
                _ => None,
            })
            .collect();
        for peer in server.peers.values_mut() {
            let owns = peer
                .ssrcs
                .is_some_and(|(_, v)| v.is_some_and(|(s, _)| targets.contains(&s)));
            if let (true, Some((local_ctx, _)), Some(to)) =
                (owns, peer.srtp.as_mut(), peer.ice.nominated())
            {
                if let Ok(bytes) = local_ctx.encrypt_rtcp(&plain) {
                    out.push((to, bytes.to_vec()));
                }
            }
        }
    }
    for peer in server.peers.values_mut() {
        while let Some(t) = peer.ice.poll_transmit() {
            out.push((t.destination, t.contents));
        }
        while peer.ice.poll_event().is_some() {}
        let Some(dtls) = peer.dtls.as_mut() else {
            continue;
        };
        if dtls.poll_timeout().is_some_and(|t| t <= now) {
            dtls.handle_timeout(now);
        }
        if let Some(to) = peer.ice.nominated() {
            while let Some(d) = dtls.poll_transmit() {
                out.push((to, d));
            }
        }
        while let Some(e) = dtls.poll_event() {
            if let Event::Connected(c) = e {
                peer.srtp = Some(srtp_contexts(&c.srtp).unwrap());
            }
        }
    }
    out
}

async fn start_server() -> String {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shared: Shared = Arc::new(Mutex::new(Server {
        cert: Arc::new(Certificate::generate().unwrap()),
        media_addr: udp.local_addr().unwrap(),
        peers: HashMap::new(),
        next_id: 0,
    }));
    let url = format!("ws://{}/ws", tcp.local_addr().unwrap());
    let for_accept = Arc::clone(&shared);
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            tokio::spawn(handle_ws(Arc::clone(&for_accept), stream));
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            let received =
                tokio::time::timeout(Duration::from_millis(5), udp.recv_from(&mut buf)).await;
            let out = {
                let mut server = shared.lock().unwrap();
                match &received {
                    Ok(Ok((len, from))) => {
                        media_step(&mut server, Instant::now(), Some((*from, &buf[..*len])))
                    }
                    _ => media_step(&mut server, Instant::now(), None),
                }
            };
            for (to, bytes) in out {
                let _ = udp.send_to(&bytes, to).await;
            }
        }
    });
    url
}

fn config(url: &str, name: &str, publish: bool) -> ClientConfig {
    ClientConfig {
        server_url: url.to_owned(),
        room: "r".into(),
        name: name.into(),
        publish_audio: publish,
        publish_video: publish,
        video_bitrate_bps: 200_000,
        video_fps: 15,
        connect_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_exchange_media_through_an_in_process_server() {
    let url = start_server().await;
    let wait = Duration::from_secs(15);
    let ada = Client::connect(config(&url, "Ada", true)).await.unwrap();
    ada.wait_connected(wait).await.unwrap();
    let bo = Client::connect(config(&url, "Bo", true)).await.unwrap();
    let cy = Client::connect(config(&url, "Cy", false)).await.unwrap();
    bo.wait_connected(wait).await.unwrap();
    cy.wait_connected(wait).await.unwrap();
    let (a, b) = (
        ada.participant_id().to_owned(),
        bo.participant_id().to_owned(),
    );

    let cy_stats = cy
        .wait_for(
            |s| {
                [&a, &b].iter().all(|p| {
                    s.packets_from(p, MediaKind::Audio) >= 25
                        && s.packets_from(p, MediaKind::Video) >= 20
                })
            },
            wait,
        )
        .await
        .unwrap();
    let ada_stats = ada
        .wait_for(|s| s.packets_from(&b, MediaKind::Video) >= 20, wait)
        .await
        .unwrap();
    for stats in [&cy_stats, &ada_stats] {
        assert_eq!(stats.decrypt_failures, 0);
        assert!(stats.handshake_time.is_some());
        for (key, track) in &stats.remote {
            assert_eq!(track.misattributed, 0, "{key:?}");
            let p50 = track.delay.quantile(0.5).unwrap();
            assert!(p50 < Duration::from_millis(200), "{key:?} delay {p50:?}");
        }
    }
    let video = &cy_stats.remote[&(a.clone(), MediaKind::Video)];
    assert!(video.keyframes >= 1, "the first frame is a keyframe");
    assert_eq!(
        cy_stats.sent.audio_packets + cy_stats.sent.video_packets,
        0,
        "Cy only receives"
    );
    assert_eq!(cy_stats.participants.len(), 2);

    // Ada leaves: the others learn it and answer the re-offer that turns her lines inactive.
    let revision_before = bo.stats().offer_revision;
    let final_ada = ada.leave().await.unwrap();
    assert_eq!(final_ada.phase, Phase::Closed);
    bo.wait_for_event(
        |e| *e == ClientEvent::ParticipantLeft { id: a.clone() },
        wait,
    )
    .await
    .unwrap();
    let after = bo
        .wait_for(|s| s.offer_revision > revision_before, wait)
        .await
        .unwrap();
    assert!(!after.participants.contains_key(&a));
    assert_eq!(after.phase, Phase::Connected);
}
