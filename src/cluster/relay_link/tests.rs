use std::time::Duration;

use sluice_dtls::Certificate;
use sluice_netsim::sim::{Endpoint, Pair};
use sluice_netsim::LinkConfig;

use super::*;
use crate::media::relay::RelayMessage;
use crate::media::ParticipantId;

/// One node's end: sends `frames` frames, one per `interval`, once connected.
struct Node {
    link: RelayLink,
    frames: u64,
    interval: Duration,
    next_send: Option<Instant>,
    sent: u64,
    received: Vec<RelayFrame>,
    connected: bool,
    failed: Option<String>,
}

impl Node {
    fn new(link: RelayLink, frames: u64) -> Self {
        Self {
            link,
            frames,
            interval: Duration::from_millis(2),
            next_send: None,
            sent: 0,
            received: Vec::new(),
            connected: false,
            failed: None,
        }
    }

    fn events(&mut self, now: Instant) {
        while let Some(event) = self.link.poll_event() {
            match event {
                LinkEvent::Connected => {
                    self.connected = true;
                    self.next_send = Some(now);
                }
                LinkEvent::Failed(why) => self.failed = Some(why),
                LinkEvent::Frame(frame) => self.received.push(frame),
            }
        }
    }
}

fn frame(n: u64) -> RelayFrame {
    RelayFrame {
        from_worker: 1,
        to_worker: 0,
        message: RelayMessage::Rtp {
            participant: ParticipantId(n),
            data: vec![
                0x80,
                96,
                (n >> 8) as u8,
                n as u8,
                0,
                0,
                0,
                1,
                0,
                0,
                0,
                9,
                7,
                7,
            ],
        },
    }
}

impl Endpoint for Node {
    fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        self.link.handle_datagram(now, datagram);
        self.events(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.link.poll_timeout().is_some_and(|t| t <= now) {
            self.link.handle_timeout(now);
        }
        if self.next_send.is_some_and(|t| t <= now) && self.sent < self.frames {
            self.link.send(&frame(self.sent));
            self.sent += 1;
            self.next_send = (self.sent < self.frames).then(|| now + self.interval);
        }
        self.events(now);
    }

    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.link.poll_transmit()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [
            self.link.poll_timeout(),
            self.next_send.filter(|_| self.sent < self.frames),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

struct Nodes {
    a: RelayLink,
    b: RelayLink,
}

fn nodes(now: Instant, b_trusts: Option<Fingerprint>) -> Nodes {
    let cert_a = Arc::new(Certificate::generate().unwrap());
    let cert_b = Arc::new(Certificate::generate().unwrap());
    let config = |cert: &Arc<Certificate>| Arc::new(sluice_dtls::Config::new(Arc::clone(cert)));
    Nodes {
        a: RelayLink::new(
            config(&cert_a),
            Role::Client,
            cert_b.fingerprint(),
            0x5100,
            now,
        ),
        b: RelayLink::new(
            config(&cert_b),
            Role::Server,
            b_trusts.unwrap_or_else(|| cert_a.fingerprint()),
            0x5200,
            now,
        ),
    }
}

fn lossy(loss: f64) -> LinkConfig {
    LinkConfig {
        loss,
        jitter: Duration::from_millis(2),
        ..LinkConfig::delayed(Duration::from_millis(15))
    }
}

#[test]
fn frames_cross_intact_in_both_directions() {
    let start = Instant::now();
    let Nodes { a, b } = nodes(start, None);
    let link = LinkConfig::delayed(Duration::from_millis(10));
    let mut pair = Pair::with_start(
        Node::new(a, 200),
        Node::new(b, 50),
        link.clone(),
        link,
        7,
        start,
    );
    let outcome = pair.drive_until(Duration::from_secs(10), |a, b| {
        a.received.len() == 50 && b.received.len() == 200
    });
    assert!(
        outcome.finished,
        "{:?} / {:?}",
        pair.a().failed,
        pair.b().failed
    );
    let expected: Vec<RelayFrame> = (0..200).map(frame).collect();
    assert_eq!(pair.b().received, expected);
    assert_eq!(
        pair.a().link.stats().rejected + pair.b().link.stats().rejected,
        0
    );
}

#[test]
fn the_link_connects_and_carries_frames_through_ten_percent_loss() {
    for seed in 1..=10 {
        let start = Instant::now();
        let Nodes { a, b } = nodes(start, None);
        let mut pair = Pair::with_start(
            Node::new(a, 1000),
            Node::new(b, 0),
            lossy(0.1),
            lossy(0.1),
            seed,
            start,
        );
        pair.drive_until(Duration::from_secs(60), |a, _| a.sent == 1000);
        pair.drive_until(Duration::from_secs(1), |_, _| false);
        let b = pair.b();
        assert!(pair.a().connected && b.connected, "seed {seed}: handshake");
        let got = b.received.len();
        assert!((850..=950).contains(&got), "seed {seed}: {got} of 1000");
        assert_eq!(b.link.stats().rejected, 0, "seed {seed}");
        // what arrives is what was sent, each frame once
        let mut seen = std::collections::HashSet::new();
        for received in &b.received {
            let RelayMessage::Rtp { participant, .. } = &received.message else {
                panic!("seed {seed}: {received:?}");
            };
            assert_eq!(*received, frame(participant.0), "seed {seed}");
            assert!(seen.insert(participant.0), "seed {seed}: duplicate");
        }
    }
}

#[test]
fn a_node_with_another_certificate_is_refused() {
    let start = Instant::now();
    let stranger = Certificate::generate().unwrap().fingerprint();
    let Nodes { a, b } = nodes(start, Some(stranger));
    let link = LinkConfig::delayed(Duration::from_millis(10));
    let mut pair = Pair::with_start(
        Node::new(a, 10),
        Node::new(b, 10),
        link.clone(),
        link,
        3,
        start,
    );
    pair.drive_until(Duration::from_secs(120), |a, b| {
        a.failed.is_some() || b.failed.is_some()
    });
    assert!(
        pair.b().failed.is_some(),
        "the server end refuses the client's certificate"
    );
    assert!(!pair.b().connected);
    assert!(pair.b().received.is_empty() && pair.a().received.is_empty());
}

#[test]
fn forged_tampered_and_early_datagrams_carry_nothing() {
    let start = Instant::now();
    let Nodes { a, b } = nodes(start, None);
    let link = LinkConfig::delayed(Duration::from_millis(10));
    let mut pair = Pair::with_start(
        Node::new(a, 0),
        Node::new(b, 0),
        link.clone(),
        link,
        5,
        start,
    );
    // before keys: a frame cannot be sent
    pair.a_mut().link.send(&frame(1));
    assert_eq!(pair.a().link.stats().frames_dropped, 1);
    pair.drive_until(Duration::from_secs(10), |a, b| a.connected && b.connected);
    let now = pair.now();
    pair.a_mut().link.send(&frame(2));
    let mut protected = pair.a_mut().link.poll_transmit().unwrap();
    // a plaintext APP packet, as an attacker without keys would send
    let forged = app_packet(0x5100, &{
        let mut bytes = Vec::new();
        frame(3).encode(&mut bytes);
        bytes
    });
    pair.b_mut().link.handle_datagram(now, &forged);
    if let Some(byte) = protected.get_mut(20) {
        *byte ^= 1;
    }
    pair.b_mut().link.handle_datagram(now, &protected);
    pair.b_mut().link.handle_datagram(now, &[0x99; 40]);
    pair.b_mut().events(now);
    assert_eq!(pair.b().link.stats().rejected, 3);
    assert!(pair.b().received.is_empty());
}
