use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_dtls::{Certificate, Config, Connection, Event, PeerAuth, Role};
use sluice_ice::{Credentials, IceConfig, IceEvent, IceLite};
use webrtc_srtp::context::Context;

use super::*;
use crate::media::{AudioSource, Stamp};

const SERVER_UFRAG: &str = "srvU";
const SERVER_PWD: &str = "serverPasswordOf24Chars/";

/// The server's half, in memory: ICE-lite, DTLS and SRTP as the real server wires them.
struct FakeServer {
    ice: IceLite,
    dtls: Connection,
    dtls_started: bool,
    srtp: Option<(Context, Context)>,
    out: Vec<Vec<u8>>,
}

impl FakeServer {
    /// `packet` protected with the server's outbound SRTP context.
    fn protect(&mut self, packet: &[u8]) -> Vec<u8> {
        self.srtp
            .as_mut()
            .expect("keys")
            .0
            .encrypt_rtp(packet)
            .expect("protect")
            .to_vec()
    }

    fn new(role: Role, cert: Arc<Certificate>, client_fp: Fingerprint, now: Instant) -> Self {
        let ice = IceLite::new(
            IceConfig::default(),
            Credentials {
                ufrag: SERVER_UFRAG.into(),
                pwd: SERVER_PWD.into(),
            },
        )
        .unwrap();
        let dtls = Connection::new(
            Arc::new(Config::new(cert)),
            role,
            PeerAuth::Fingerprint(client_fp),
            b"client",
            now,
        );
        // a DTLS client must not send before ICE nominated the pair: hold its flight
        let dtls_started = role == Role::Server;
        Self {
            ice,
            dtls,
            dtls_started,
            srtp: None,
            out: Vec::new(),
        }
    }

    fn handle(&mut self, now: Instant, datagram: &[u8]) -> Option<Vec<u8>> {
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let from: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let mut plain = None;
        match demux::classify(datagram) {
            PacketClass::Stun => {
                let _ = self.ice.handle_stun(now, local, from, datagram);
            }
            PacketClass::Dtls => self.dtls.handle_datagram(now, datagram),
            PacketClass::Rtp => {
                plain = self
                    .srtp
                    .as_mut()
                    .and_then(|(_, r)| r.decrypt_rtp(datagram).ok())
                    .map(|b| b.to_vec())
            }
            _ => {}
        }
        self.pump(now);
        plain
    }

    fn pump(&mut self, now: Instant) {
        while let Some(t) = self.ice.poll_transmit() {
            self.out.push(t.contents);
        }
        while let Some(e) = self.ice.poll_event() {
            if matches!(e, IceEvent::Nominated(_)) {
                self.dtls_started = true;
            }
        }
        if self.dtls.poll_timeout().is_some_and(|t| t <= now) {
            self.dtls.handle_timeout(now);
        }
        if self.dtls_started {
            while let Some(d) = self.dtls.poll_transmit() {
                self.out.push(d);
            }
        }
        while let Some(e) = self.dtls.poll_event() {
            if let Event::Connected(c) = e {
                self.srtp = Some(srtp_contexts(&c.srtp).unwrap());
            }
        }
    }
}

fn pair(server_role: Role) -> (Transport, FakeServer, Instant) {
    let now = Instant::now();
    let client_cert = Arc::new(Certificate::generate().unwrap());
    let server_cert = Arc::new(Certificate::generate().unwrap());
    let client_role = match server_role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let server = FakeServer::new(
        server_role,
        server_cert.clone(),
        client_cert.fingerprint(),
        now,
    );
    let transport = Transport::new(
        TransportParams {
            remote_ufrag: SERVER_UFRAG.into(),
            remote_pwd: SERVER_PWD.into(),
            local_ufrag: "cliU".into(),
            remote_fingerprint: server_cert.fingerprint().0,
            role: client_role,
            dtls: Arc::new(Config::new(client_cert)),
            ice: IceClientConfig::default(),
        },
        now,
    )
    .unwrap();
    (transport, server, now)
}

/// Drives both sides on virtual time until the client is connected or `limit` passes.
fn drive(
    client: &mut Transport,
    server: &mut FakeServer,
    mut now: Instant,
    limit: Duration,
) -> (Instant, Vec<TransportEvent>) {
    let end = now + limit;
    let mut events = Vec::new();
    while now < end {
        let mut progressed = false;
        while let Some(d) = client.poll_transmit() {
            server.handle(now, &d);
            progressed = true;
        }
        server.pump(now);
        for d in std::mem::take(&mut server.out) {
            client.handle_datagram(now, &d, |_| true);
            progressed = true;
        }
        events.extend(std::iter::from_fn(|| client.poll_event()));
        if client.is_connected() && server.srtp.is_some() && !progressed {
            break;
        }
        if !progressed {
            let next = [client.poll_timeout(), server.dtls.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(end);
            now = next.max(now + Duration::from_millis(1));
            client.handle_timeout(now);
        }
    }
    (now, events)
}

#[test]
fn client_completes_ice_dtls_and_srtp_against_a_dtls_server() {
    let (mut client, mut server, now) = pair(Role::Server);
    let (now, events) = drive(&mut client, &mut server, now, Duration::from_secs(5));
    assert!(
        matches!(events.first(), Some(TransportEvent::IceConnected { .. })),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TransportEvent::Connected { .. })),
        "{events:?}"
    );
    assert!(server.srtp.is_some());

    // media both ways
    let mut source = AudioSource::new(4242, "0", 1, 1);
    let mut packet = Vec::new();
    let stamp = Stamp {
        send_time_unix_us: 1,
        publisher_id: "me".into(),
    };
    source.next_packet(&stamp, &mut packet);
    let protected = client.protect_rtp(&packet).unwrap();
    assert_ne!(protected, packet);
    assert_eq!(server.handle(now, &protected), Some(packet.clone()));

    let from_server = server.protect(&packet);
    assert_eq!(
        client.handle_datagram(now, &from_server, |s| s == 4242),
        Received::Rtp(packet.clone())
    );
    // an SSRC we do not expect is not decrypted
    assert_eq!(
        client.handle_datagram(now, &from_server, |_| false),
        Received::DecryptFailed { ssrc: 4242 }
    );
    // a tampered packet fails authentication
    source.next_packet(&stamp, &mut packet);
    let mut tampered = server.protect(&packet);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(
        client.handle_datagram(now, &tampered, |_| true),
        Received::DecryptFailed { ssrc: 4242 }
    );
}

#[test]
fn client_acts_as_dtls_server_when_the_offer_says_active() {
    let (mut client, mut server, now) = pair(Role::Client);
    let (_, events) = drive(&mut client, &mut server, now, Duration::from_secs(5));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TransportEvent::Connected { .. })),
        "{events:?}"
    );
    assert!(server.srtp.is_some());
}

#[test]
fn no_dtls_before_ice_succeeds() {
    let (mut client, _server, now) = pair(Role::Server);
    let first = client.poll_transmit().unwrap();
    assert_eq!(demux::classify(&first), PacketClass::Stun);
    client.handle_timeout(now + Duration::from_secs(2));
    while let Some(d) = client.poll_transmit() {
        assert_eq!(
            demux::classify(&d),
            PacketClass::Stun,
            "only checks while ICE is pending"
        );
    }
    assert!(client.dtls_stats().is_none());
}

#[test]
fn sampled_decryption_keeps_the_srtp_rollover_counter_across_wraps() {
    let (mut client, mut server, now) = pair(Role::Server);
    let (now, _) = drive(&mut client, &mut server, now, Duration::from_secs(5));
    assert!(client.is_connected());
    // 70,000 packets from sequence number 65,000: two rollovers; one in 16 decrypted.
    let mut source = AudioSource::new(4242, "0", 65_000, 1);
    let stamp = Stamp {
        send_time_unix_us: 1,
        publisher_id: "me".into(),
    };
    let mut packet = Vec::new();
    let (mut decrypted, mut counted) = (0, 0);
    for i in 0..70_000u32 {
        source.next_packet(&stamp, &mut packet);
        let protected = server.protect(&packet);
        let sample = i % 16 == 0;
        let received = client.handle_datagram_sampled(now, &protected, |c| {
            assert_eq!(c.sequence_number, 65_000u16.wrapping_add(i as u16));
            assert_eq!(c.payload_len, packet.len() - 24);
            if sample {
                RtpAction::Decrypt
            } else {
                RtpAction::Count
            }
        });
        match received {
            Received::Rtp(plain) => {
                assert_eq!(plain, packet, "packet {i}");
                decrypted += 1;
            }
            Received::Clear(_) => counted += 1,
            other => panic!("packet {i}: {other:?}"),
        }
    }
    assert_eq!((decrypted, counted), (4375, 65_625));
}
