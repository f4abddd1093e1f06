//! Behaviour of the ICE-lite agent against browser-style checks built with stun-rs.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_ice::{
    BadRequestReason, Credentials, IceConfig, IceError, IceEvent, IceLite, StunDrop,
    UnauthorizedReason,
};
use stun_rs::MessageClass;
use support::*;

fn local() -> SocketAddr {
    "192.0.2.1:3478".parse().unwrap()
}

fn browser() -> SocketAddr {
    "198.51.100.7:50000".parse().unwrap()
}

fn other_browser_address() -> SocketAddr {
    "[2001:db8::7]:50002".parse().unwrap()
}

fn server_credentials() -> Credentials {
    Credentials {
        ufrag: SERVER_UFRAG.into(),
        pwd: SERVER_PWD.into(),
    }
}

fn agent_with(config: IceConfig) -> IceLite {
    let mut agent = IceLite::new(config, server_credentials()).unwrap();
    agent
        .set_remote_credentials(Credentials {
            ufrag: BROWSER_UFRAG.into(),
            pwd: "browserPasswordOf24Char/".into(),
        })
        .unwrap();
    agent
}

fn agent() -> IceLite {
    agent_with(IceConfig {
        software: Some("sluice test".into()),
        ..IceConfig::default()
    })
}

fn events(agent: &mut IceLite) -> Vec<IceEvent> {
    std::iter::from_fn(|| agent.poll_event()).collect()
}

/// Feeds `check` and returns the agent's verdict and the only transmit it queued.
fn exchange(
    agent: &mut IceLite,
    now: Instant,
    from: SocketAddr,
    check: &Check,
) -> (Result<(), IceError>, Vec<u8>) {
    let result = agent.handle_stun(now, local(), from, &check.encode());
    let transmit = agent.poll_transmit().expect("a response is queued");
    assert_eq!(transmit.source, local());
    assert_eq!(transmit.destination, from);
    assert!(agent.poll_transmit().is_none(), "exactly one response");
    (result, transmit.contents)
}

#[test]
fn valid_check_gets_authenticated_success_with_sender_as_mapped_address() {
    let mut agent = agent();
    let check = Check::default();
    let (result, response) = exchange(&mut agent, Instant::now(), browser(), &check);
    assert_eq!(result, Ok(()));

    let message = decode_response(&response, Some(SERVER_PWD));
    assert_eq!(message.class(), MessageClass::SuccessResponse);
    assert_eq!(message.method(), stun_rs::methods::BINDING);
    assert_eq!(message.transaction_id().as_bytes(), &check.transaction_id);
    assert_eq!(mapped_address(&message), browser());
    // Validation passed, and it validated something: both attributes are present.
    assert!(has_integrity(&message));
    assert!(has_fingerprint(&message));
}

#[test]
fn success_response_maps_ipv6_sender() {
    let mut agent = agent();
    let (result, response) = exchange(
        &mut agent,
        Instant::now(),
        other_browser_address(),
        &Check::default(),
    );
    assert_eq!(result, Ok(()));
    let message = decode_response(&response, Some(SERVER_PWD));
    assert_eq!(mapped_address(&message), other_browser_address());
}

#[test]
fn success_response_integrity_fails_with_another_password() {
    let mut agent = agent();
    let (_, response) = exchange(&mut agent, Instant::now(), browser(), &Check::default());
    let ctx = stun_rs::DecoderContextBuilder::default()
        .with_key(stun_rs::HMACKey::new_short_term("someOtherPassword0123456").unwrap())
        .with_validation()
        .build();
    let decoder = stun_rs::MessageDecoderBuilder::default()
        .with_context(ctx)
        .build();
    assert!(decoder.decode(&response).is_err());
}

#[test]
fn valid_check_validates_address_without_nominating_it() {
    let mut agent = agent();
    assert!(!agent.is_permitted(browser()));
    exchange(&mut agent, Instant::now(), browser(), &Check::default())
        .0
        .unwrap();
    assert!(agent.is_permitted(browser()));
    assert!(!agent.is_permitted(other_browser_address()));
    assert_eq!(agent.nominated(), None);
    assert_eq!(events(&mut agent), vec![IceEvent::Validated(browser())]);
}

#[test]
fn use_candidate_nominates_the_sender() {
    let mut agent = agent();
    exchange(&mut agent, Instant::now(), browser(), &Check::nominating())
        .0
        .unwrap();
    assert_eq!(agent.nominated(), Some(browser()));
    assert_eq!(agent.nominated_pair(), Some((local(), browser())));
    assert_eq!(
        events(&mut agent),
        vec![
            IceEvent::Validated(browser()),
            IceEvent::Nominated(browser())
        ]
    );
    // A repeated nomination of the same address is not a new event.
    exchange(&mut agent, Instant::now(), browser(), &Check::nominating())
        .0
        .unwrap();
    assert_eq!(events(&mut agent), vec![]);
}

#[test]
fn latest_nomination_wins() {
    let mut agent = agent();
    let now = Instant::now();
    exchange(&mut agent, now, browser(), &Check::nominating())
        .0
        .unwrap();
    exchange(
        &mut agent,
        now,
        other_browser_address(),
        &Check::nominating(),
    )
    .0
    .unwrap();
    assert_eq!(agent.nominated(), Some(other_browser_address()));
    assert!(
        agent.is_permitted(browser()),
        "the old path keeps its consent"
    );
    assert_eq!(
        events(&mut agent),
        vec![
            IceEvent::Validated(browser()),
            IceEvent::Nominated(browser()),
            IceEvent::Validated(other_browser_address()),
            IceEvent::Nominated(other_browser_address()),
        ]
    );
}

fn assert_rejected(check: Check, expected: IceError, code: u16) {
    let mut agent = agent();
    let (result, response) = exchange(&mut agent, Instant::now(), browser(), &check);
    assert_eq!(result, Err(expected.clone()));
    assert_eq!(expected.stun_error_code(), Some(code));
    let message = decode_response(&response, None);
    assert_eq!(message.class(), MessageClass::ErrorResponse);
    assert_eq!(message.transaction_id().as_bytes(), &check.transaction_id);
    assert_eq!(error_code(&message), code);
    assert!(has_fingerprint(&message));
    assert!(
        !has_integrity(&message),
        "400/401 must not carry MESSAGE-INTEGRITY"
    );
    assert!(!agent.is_permitted(browser()));
    assert_eq!(agent.poll_timeout(), None);
    assert_eq!(events(&mut agent), vec![]);
}

#[test]
fn missing_message_integrity_is_bad_request() {
    assert_rejected(
        Check {
            integrity_pwd: None,
            ..Check::default()
        },
        IceError::BadRequest(BadRequestReason::MissingMessageIntegrity),
        400,
    );
}

#[test]
fn missing_username_is_bad_request() {
    assert_rejected(
        Check {
            username: None,
            ..Check::default()
        },
        IceError::BadRequest(BadRequestReason::MissingUsername),
        400,
    );
}

#[test]
fn missing_fingerprint_is_bad_request() {
    assert_rejected(
        Check {
            fingerprint: false,
            ..Check::default()
        },
        IceError::BadRequest(BadRequestReason::MissingFingerprint),
        400,
    );
}

#[test]
fn wrong_fingerprint_is_bad_request() {
    let mut agent = agent();
    let mut bytes = Check::default().encode();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let result = agent.handle_stun(Instant::now(), local(), browser(), &bytes);
    assert_eq!(
        result,
        Err(IceError::BadRequest(BadRequestReason::BadFingerprint))
    );
    let response = agent.poll_transmit().unwrap().contents;
    assert_eq!(error_code(&decode_response(&response, None)), 400);
    assert!(!agent.is_permitted(browser()));
}

#[test]
fn wrong_local_ufrag_is_unauthorized() {
    assert_rejected(
        Check {
            username: Some(format!("nope:{BROWSER_UFRAG}")),
            ..Check::default()
        },
        IceError::Unauthorized(UnauthorizedReason::UnknownUsername),
        401,
    );
}

#[test]
fn wrong_remote_ufrag_is_unauthorized_once_remote_credentials_are_known() {
    assert_rejected(
        Check {
            username: Some(format!("{SERVER_UFRAG}:evil")),
            ..Check::default()
        },
        IceError::Unauthorized(UnauthorizedReason::UnknownUsername),
        401,
    );
}

#[test]
fn username_without_colon_is_unauthorized() {
    assert_rejected(
        Check {
            username: Some(SERVER_UFRAG.to_string()),
            ..Check::default()
        },
        IceError::Unauthorized(UnauthorizedReason::UnknownUsername),
        401,
    );
}

#[test]
fn any_remote_ufrag_is_accepted_before_remote_credentials_are_known() {
    let mut agent = IceLite::new(IceConfig::default(), server_credentials()).unwrap();
    let check = Check {
        username: Some(format!("{SERVER_UFRAG}:whoever")),
        ..Check::default()
    };
    let (result, _) = exchange(&mut agent, Instant::now(), browser(), &check);
    assert_eq!(result, Ok(()));
    assert!(agent.is_permitted(browser()));
}

#[test]
fn wrong_password_is_unauthorized() {
    assert_rejected(
        Check {
            integrity_pwd: Some("notTheServerPassword1234".into()),
            ..Check::default()
        },
        IceError::Unauthorized(UnauthorizedReason::BadIntegrity),
        401,
    );
}

#[test]
fn peer_claiming_controlled_role_gets_authenticated_role_conflict() {
    let mut agent = agent();
    let check = Check {
        controlling: false,
        controlled: true,
        ..Check::nominating()
    };
    let (result, response) = exchange(&mut agent, Instant::now(), browser(), &check);
    assert_eq!(result, Err(IceError::RoleConflict));
    let message = decode_response(&response, Some(SERVER_PWD));
    assert_eq!(error_code(&message), 487);
    assert!(
        has_integrity(&message),
        "487 answers an authenticated request"
    );
    assert!(!agent.is_permitted(browser()));
    assert_eq!(agent.nominated(), None);
}

#[test]
fn unknown_comprehension_required_attribute_gets_420() {
    let mut agent = agent();
    // A check without MI/FP, plus attribute 0x7F01 (comprehension-required, unassigned).
    let mut raw = Check {
        integrity_pwd: None,
        fingerprint: false,
        ..Check::default()
    }
    .encode();
    raw.extend_from_slice(&[0x7F, 0x01, 0x00, 0x04, 1, 2, 3, 4]);
    let bytes = seal(raw, SERVER_PWD);
    let result = agent.handle_stun(Instant::now(), local(), browser(), &bytes);
    assert_eq!(result, Err(IceError::UnknownAttributes { count: 1 }));
    let response = agent.poll_transmit().unwrap().contents;
    let message = decode_response(&response, Some(SERVER_PWD));
    assert_eq!(error_code(&message), 420);
    let listed = message
        .get::<stun_rs::attributes::stun::UnknownAttributes>()
        .unwrap()
        .as_unknown_attributes()
        .unwrap()
        .attributes()
        .to_vec();
    assert_eq!(listed, vec![0x7F01]);
    assert!(!agent.is_permitted(browser()));
}

#[test]
fn unknown_comprehension_optional_attribute_is_ignored() {
    let mut agent = agent();
    let mut raw = Check {
        integrity_pwd: None,
        fingerprint: false,
        ..Check::default()
    }
    .encode();
    // GOOG-NETWORK-INFO, as Chrome sends it.
    raw.extend_from_slice(&[0xC0, 0x57, 0x00, 0x04, 0, 1, 0, 10]);
    let bytes = seal(raw, SERVER_PWD);
    assert_eq!(
        agent.handle_stun(Instant::now(), local(), browser(), &bytes),
        Ok(())
    );
}

#[test]
fn hand_sealed_check_is_accepted() {
    // Pins our own MESSAGE-INTEGRITY verification against an independent encoder.
    let mut agent = agent();
    let raw = Check {
        integrity_pwd: None,
        fingerprint: false,
        ..Check::default()
    }
    .encode();
    let bytes = seal(raw, SERVER_PWD);
    assert_eq!(
        agent.handle_stun(Instant::now(), local(), browser(), &bytes),
        Ok(())
    );
}

#[test]
fn attribute_after_fingerprint_is_bad_request() {
    let mut agent = agent();
    let mut bytes = Check::default().encode();
    bytes.extend_from_slice(&[0xC0, 0x57, 0x00, 0x04, 0, 1, 0, 10]);
    let length = (bytes.len() - 20) as u16;
    bytes[2..4].copy_from_slice(&length.to_be_bytes());
    assert_eq!(
        agent.handle_stun(Instant::now(), local(), browser(), &bytes),
        Err(IceError::BadRequest(BadRequestReason::BadFingerprint))
    );
}

#[test]
fn responses_and_indications_are_dropped_unanswered() {
    let mut agent = agent();
    let mut bytes = Check::default().encode();
    for (type_bytes, class) in [
        ([0x01, 0x01], "success response"),
        ([0x01, 0x11], "error response"),
        ([0x00, 0x11], "indication"),
    ] {
        bytes[0..2].copy_from_slice(&type_bytes);
        let result = agent.handle_stun(Instant::now(), local(), browser(), &bytes);
        assert_eq!(result, Err(IceError::UnexpectedClass { class }));
        assert_eq!(result.unwrap_err().drop_reason(), StunDrop::UnexpectedClass);
        assert!(agent.poll_transmit().is_none());
    }
    assert!(!agent.is_permitted(browser()));
}

#[test]
fn non_binding_request_is_dropped_unanswered() {
    let mut agent = agent();
    let mut bytes = Check::default().encode();
    bytes[0..2].copy_from_slice(&[0x00, 0x03]); // Allocate request
    let result = agent.handle_stun(Instant::now(), local(), browser(), &bytes);
    assert_eq!(result, Err(IceError::UnsupportedMethod { method: 3 }));
    assert!(agent.poll_transmit().is_none());
}

#[test]
fn garbage_is_malformed_and_unanswered() {
    let mut agent = agent();
    for bytes in [&b""[..], &[0u8; 3][..], &[0u8; 20][..], &[0xFF; 40][..]] {
        let result = agent.handle_stun(Instant::now(), local(), browser(), bytes);
        assert_eq!(result.unwrap_err().drop_reason(), StunDrop::Malformed);
        assert!(agent.poll_transmit().is_none());
    }
    let mut truncated = Check::default().encode();
    truncated.pop();
    assert_eq!(
        agent.handle_stun(Instant::now(), local(), browser(), &truncated),
        Err(IceError::Malformed)
    );
    let huge = vec![0u8; sluice_ice::MAX_STUN_MESSAGE_BYTES + 1];
    assert!(matches!(
        agent.handle_stun(Instant::now(), local(), browser(), &huge),
        Err(IceError::TooLarge { .. })
    ));
}

#[test]
fn consent_expires_after_thirty_seconds_without_checks() {
    let mut agent = agent();
    let t0 = Instant::now();
    exchange(&mut agent, t0, browser(), &Check::nominating())
        .0
        .unwrap();
    events(&mut agent);
    assert_eq!(agent.poll_timeout(), Some(t0 + Duration::from_secs(30)));

    agent.handle_timeout(t0 + Duration::from_millis(29_999));
    assert!(agent.is_permitted(browser()));
    assert_eq!(events(&mut agent), vec![]);

    agent.handle_timeout(t0 + Duration::from_secs(30));
    assert!(!agent.is_permitted(browser()));
    assert_eq!(agent.nominated(), None);
    assert_eq!(agent.poll_timeout(), None);
    assert_eq!(
        events(&mut agent),
        vec![IceEvent::ConsentExpired(browser()), IceEvent::Disconnected]
    );
}

#[test]
fn checks_refresh_consent() {
    let mut agent = agent();
    let t0 = Instant::now();
    for step in 0..=6u64 {
        let now = t0 + Duration::from_secs(10 * step);
        agent.handle_timeout(now);
        exchange(&mut agent, now, browser(), &Check::nominating())
            .0
            .unwrap();
        assert!(
            agent.is_permitted(browser()),
            "permitted at {} s",
            10 * step
        );
    }
    let last = t0 + Duration::from_secs(60);
    assert_eq!(agent.poll_timeout(), Some(last + Duration::from_secs(30)));
    agent.handle_timeout(last + Duration::from_secs(29));
    assert!(agent.is_permitted(browser()));
    assert_eq!(agent.nominated(), Some(browser()));
    agent.handle_timeout(last + Duration::from_secs(30));
    assert!(!agent.is_permitted(browser()));
}

#[test]
fn rejected_checks_do_not_refresh_consent() {
    let mut agent = agent();
    let t0 = Instant::now();
    exchange(&mut agent, t0, browser(), &Check::default())
        .0
        .unwrap();
    let bad = Check {
        integrity_pwd: Some("notTheServerPassword1234".into()),
        ..Check::default()
    };
    exchange(&mut agent, t0 + Duration::from_secs(20), browser(), &bad)
        .0
        .unwrap_err();
    agent.handle_timeout(t0 + Duration::from_secs(30));
    assert!(!agent.is_permitted(browser()));
}

#[test]
fn one_expiring_path_does_not_disconnect_while_another_is_fresh() {
    let mut agent = agent();
    let t0 = Instant::now();
    exchange(&mut agent, t0, browser(), &Check::nominating())
        .0
        .unwrap();
    exchange(
        &mut agent,
        t0 + Duration::from_secs(10),
        other_browser_address(),
        &Check::default(),
    )
    .0
    .unwrap();
    events(&mut agent);
    agent.handle_timeout(t0 + Duration::from_secs(30));
    assert_eq!(
        events(&mut agent),
        vec![IceEvent::ConsentExpired(browser())]
    );
    assert_eq!(agent.nominated(), None);
    assert!(agent.is_permitted(other_browser_address()));
    assert_eq!(agent.poll_timeout(), Some(t0 + Duration::from_secs(40)));
}

#[test]
fn is_permitted_at_judges_expiry_without_waiting_for_handle_timeout() {
    let mut agent = agent();
    let t0 = Instant::now();
    exchange(&mut agent, t0, browser(), &Check::default())
        .0
        .unwrap();
    assert!(agent.is_permitted_at(t0 + Duration::from_secs(29), browser()));
    assert!(!agent.is_permitted_at(t0 + Duration::from_secs(30), browser()));
}

#[test]
fn remembered_addresses_are_bounded_and_nominated_one_is_spared() {
    let mut agent = agent_with(IceConfig {
        max_candidate_pairs: 2,
        ..IceConfig::default()
    });
    let t0 = Instant::now();
    let addr = |port: u16| SocketAddr::from(([198, 51, 100, 7], port));
    exchange(&mut agent, t0, addr(1), &Check::nominating())
        .0
        .unwrap();
    exchange(
        &mut agent,
        t0 + Duration::from_secs(1),
        addr(2),
        &Check::default(),
    )
    .0
    .unwrap();
    events(&mut agent);
    // Full: addr(1) expires first but is nominated, so addr(2) makes room.
    exchange(
        &mut agent,
        t0 + Duration::from_secs(2),
        addr(3),
        &Check::default(),
    )
    .0
    .unwrap();
    assert_eq!(agent.validated_count(), 2);
    assert!(agent.is_permitted(addr(1)));
    assert!(!agent.is_permitted(addr(2)));
    assert!(agent.is_permitted(addr(3)));
    assert_eq!(
        events(&mut agent),
        vec![
            IceEvent::ConsentExpired(addr(2)),
            IceEvent::Validated(addr(3))
        ]
    );
    for port in 10..100 {
        exchange(
            &mut agent,
            t0 + Duration::from_secs(3),
            addr(port),
            &Check::default(),
        )
        .0
        .unwrap();
        assert!(agent.validated_count() <= 2);
    }
    assert_eq!(agent.nominated(), Some(addr(1)));
}

#[test]
fn pending_events_are_bounded() {
    let mut agent = agent_with(IceConfig {
        max_candidate_pairs: 1,
        ..IceConfig::default()
    });
    let now = Instant::now();
    for port in 1..1000u16 {
        exchange(
            &mut agent,
            now,
            SocketAddr::from(([198, 51, 100, 7], port)),
            &Check::nominating(),
        )
        .0
        .unwrap();
    }
    assert!(events(&mut agent).len() <= 7);
}

#[test]
fn invalid_local_credentials_and_config_are_refused() {
    let short_pwd = Credentials {
        ufrag: "abcd".into(),
        pwd: "tooShort".into(),
    };
    assert!(matches!(
        IceLite::new(IceConfig::default(), short_pwd),
        Err(IceError::InvalidCredentials(_))
    ));
    let bad_chars = Credentials {
        ufrag: "ab:d".into(),
        pwd: SERVER_PWD.into(),
    };
    assert!(IceLite::new(IceConfig::default(), bad_chars).is_err());
    let no_pairs = IceConfig {
        max_candidate_pairs: 0,
        ..IceConfig::default()
    };
    assert!(matches!(
        IceLite::new(no_pairs, server_credentials()),
        Err(IceError::InvalidConfig(_))
    ));
    let mut agent = agent();
    assert!(agent
        .set_remote_credentials(Credentials {
            ufrag: "has space".into(),
            pwd: String::new()
        })
        .is_err());
}

#[test]
fn generated_credentials_follow_rfc_8839() {
    let rng = ring::rand::SystemRandom::new();
    let a = Credentials::generate(&rng).unwrap();
    let b = Credentials::generate(&rng).unwrap();
    assert!(a.ufrag.len() >= 4 && a.pwd.len() >= 22);
    let ice_char = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    assert!(a.ufrag.chars().chain(a.pwd.chars()).all(ice_char));
    assert!(a.validate_local().is_ok());
    assert_ne!(a, b);
    assert!(
        !format!("{a:?}").contains(&a.pwd),
        "Debug must not print the password"
    );
}

/// RFC 5769 section 2.1: a request with USERNAME "evtj:h6vY", password
/// "VOkJxbRl1RmTxUk/WvJxBt", and ICE-CONTROLLED.
const RFC5769_SAMPLE_REQUEST: [u8; 108] = [
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
];

#[test]
fn rfc5769_sample_request_authenticates_and_meets_role_conflict() {
    let rfc_credentials = Credentials {
        ufrag: "evtj".into(),
        pwd: "VOkJxbRl1RmTxUk/WvJxBt".into(),
    };
    let mut agent = IceLite::new(IceConfig::default(), rfc_credentials).unwrap();
    let result = agent.handle_stun(Instant::now(), local(), browser(), &RFC5769_SAMPLE_REQUEST);
    // It passed FINGERPRINT, USERNAME and MESSAGE-INTEGRITY (else 400/401), and carries
    // ICE-CONTROLLED, so a lite agent answers 487.
    assert_eq!(result, Err(IceError::RoleConflict));
    let response = agent.poll_transmit().unwrap().contents;
    let message = decode_response(&response, Some("VOkJxbRl1RmTxUk/WvJxBt"));
    assert_eq!(error_code(&message), 487);
    assert_eq!(
        sluice_ice::demux::stun_local_ufrag(&RFC5769_SAMPLE_REQUEST),
        Some("evtj")
    );
}

#[test]
fn rfc5769_sample_request_with_another_password_is_unauthorized() {
    let credentials = Credentials {
        ufrag: "evtj".into(),
        pwd: "VOkJxbRl1RmTxUk/WvJxBu".into(),
    };
    let mut agent = IceLite::new(IceConfig::default(), credentials).unwrap();
    let result = agent.handle_stun(Instant::now(), local(), browser(), &RFC5769_SAMPLE_REQUEST);
    assert_eq!(
        result,
        Err(IceError::Unauthorized(UnauthorizedReason::BadIntegrity))
    );
}
