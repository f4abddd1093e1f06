use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_ice::{Credentials, IceConfig, IceEvent, IceLite};

use super::*;

const SERVER_UFRAG: &str = "srvU";
const SERVER_PWD: &str = "serverPasswordOf24Chars/";
const CLIENT_UFRAG: &str = "cliU";

fn server() -> IceLite {
    let mut lite = IceLite::new(
        IceConfig::default(),
        Credentials {
            ufrag: SERVER_UFRAG.into(),
            pwd: SERVER_PWD.into(),
        },
    )
    .unwrap();
    lite.set_remote_credentials(Credentials {
        ufrag: CLIENT_UFRAG.into(),
        pwd: "clientPasswordOf24Chars".into(),
    })
    .unwrap();
    lite
}

fn addrs() -> (SocketAddr, SocketAddr) {
    (
        "192.0.2.1:3478".parse().unwrap(),
        "198.51.100.7:50000".parse().unwrap(),
    )
}

/// Delivers every client transmit to the server and every response back.
fn exchange(client: &mut IceClient, lite: &mut IceLite, now: Instant) -> Vec<IceEvent> {
    let (local, from) = addrs();
    while let Some(check) = client.poll_transmit() {
        lite.handle_stun(now, local, from, &check).unwrap();
        while let Some(t) = lite.poll_transmit() {
            assert_eq!(t.destination, from);
            let _ = client.handle_stun(now, &t.contents);
        }
    }
    std::iter::from_fn(|| lite.poll_event()).collect()
}

#[test]
fn first_check_is_accepted_and_nominates_and_its_response_connects() {
    let now = Instant::now();
    let mut client = IceClient::new(
        IceClientConfig::default(),
        SERVER_UFRAG,
        SERVER_PWD,
        CLIENT_UFRAG,
        now,
    )
    .unwrap();
    let mut lite = server();
    let events = exchange(&mut client, &mut lite, now);
    let (_, from) = addrs();
    assert!(events.contains(&IceEvent::Nominated(from)), "{events:?}");
    assert_eq!(lite.nominated(), Some(from));
    assert!(client.is_connected());
    assert!(matches!(
        client.poll_event(),
        Some(IceClientEvent::Connected { .. })
    ));
}

#[test]
fn unanswered_check_is_retransmitted_with_doubling_interval() {
    let now = Instant::now();
    let mut client = IceClient::new(
        IceClientConfig::default(),
        SERVER_UFRAG,
        SERVER_PWD,
        CLIENT_UFRAG,
        now,
    )
    .unwrap();
    let first = client.poll_transmit().unwrap();
    let mut sent_at = Vec::new();
    let mut t = now;
    while t < now + Duration::from_secs(2) {
        let Some(next) = client.poll_timeout() else {
            break;
        };
        t = next;
        client.handle_timeout(t);
        while let Some(again) = client.poll_transmit() {
            assert_eq!(again.get(8..20), first.get(8..20), "same transaction id");
            sent_at.push(t.duration_since(now).as_millis());
        }
    }
    assert_eq!(sent_at[..5], [50, 150, 350, 750, 1550]);
    assert!(!client.is_connected());
}

#[test]
fn response_keyed_with_another_password_is_rejected() {
    let now = Instant::now();
    let mut client = IceClient::new(
        IceClientConfig::default(),
        SERVER_UFRAG,
        "someOtherPasswordOf24Ch",
        CLIENT_UFRAG,
        now,
    )
    .unwrap();
    let mut lite = server();
    let (local, from) = addrs();
    let check = client.poll_transmit().unwrap();
    // the server rejects our integrity (401) ...
    assert!(lite.handle_stun(now, local, from, &check).is_err());
    let response = lite.poll_transmit().unwrap();
    // ... and its error response carries no integrity we could accept as success
    assert!(client.handle_stun(now, &response.contents).is_err());
    assert!(!client.is_connected());
}

#[test]
fn response_to_an_unknown_transaction_is_ignored() {
    let now = Instant::now();
    let mut client = IceClient::new(
        IceClientConfig::default(),
        SERVER_UFRAG,
        SERVER_PWD,
        CLIENT_UFRAG,
        now,
    )
    .unwrap();
    let mut lite = server();
    let (local, from) = addrs();
    let stale = client.encode_check([9; 12], true).unwrap();
    lite.handle_stun(now, local, from, &stale).unwrap();
    let response = lite.poll_transmit().unwrap();
    assert_eq!(
        client.handle_stun(now, &response.contents),
        Err(IceClientError::UnknownTransaction)
    );
    assert!(!client.is_connected());
}

#[test]
fn consent_checks_keep_the_server_permitting_and_silence_loses_consent() {
    let start = Instant::now();
    let config = IceClientConfig::default();
    let mut client = IceClient::new(config, SERVER_UFRAG, SERVER_PWD, CLIENT_UFRAG, start).unwrap();
    let mut lite = server();
    exchange(&mut client, &mut lite, start);
    let _ = client.poll_event();
    let (_, from) = addrs();

    // 60 s with the server answering: its 30 s consent never expires.
    let mut now = start;
    while now < start + Duration::from_secs(60) {
        now = client.poll_timeout().unwrap();
        client.handle_timeout(now);
        lite.handle_timeout(now);
        exchange(&mut client, &mut lite, now);
    }
    assert!(lite.is_permitted_at(now, from));
    assert!(client.is_connected());
    assert_eq!(client.poll_event(), None);

    // Then the server goes silent: consent is lost 30 s after the last success.
    let silent_from = now;
    loop {
        now = client.poll_timeout().expect("timer until consent is lost");
        client.handle_timeout(now);
        while client.poll_transmit().is_some() {}
        if let Some(event) = client.poll_event() {
            assert_eq!(event, IceClientEvent::ConsentLost);
            break;
        }
    }
    assert!(now.duration_since(silent_from) <= config.consent_timeout);
    assert!(!client.is_connected());
    assert_eq!(client.poll_timeout(), None);
}
