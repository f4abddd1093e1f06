//! The server side of the DTLS 1.3 handshake: the ClientHello (after a stateless cookie
//! exchange or a HelloRetryRequest for a group, when needed), our ServerHello..Finished
//! flight, and the client's final flight, which we acknowledge.

use std::time::Instant;

use super::*;

/// Bytes of a HelloRetryRequest cookie after the first hello's transcript hash (as long
/// as the suite's hash): the group asked for (0 for none), and a MAC binding both to the
/// peer's address.
const COOKIE_TAIL_LEN: usize = 2 + 16;

fn cookie_mac(config: &Config, peer_address: &[u8], ch1_hash: &[u8], group: u16) -> [u8; 16] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &config.cookie_secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(b"dtls13 retry cookie");
    ctx.update(&(peer_address.len() as u32).to_be_bytes());
    ctx.update(peer_address);
    ctx.update(ch1_hash);
    ctx.update(&group.to_be_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&ctx.sign().as_ref()[..16]);
    out
}

/// The suite a server picks from a ClientHello: the first of ours the client offers.
fn server_suite(config: &Config, ch: &ClientHello) -> Result<Suite13, Error> {
    Suite13::configured(&config.cipher_suites)
        .into_iter()
        .find(|s| ch.cipher_suites.contains(&s.to_u16()))
        .ok_or(Error::NoCommonParameters {
            what: "cipher suite",
        })
}

/// The group a server asks for in a retry: none when the hello has a share we can use.
fn retry_group(config: &Config, ch: &ClientHello) -> Result<Option<NamedGroup>, Error> {
    let has_share = config.groups.iter().any(|g| {
        ch.extensions
            .key_shares
            .iter()
            .any(|(group, _)| *group == g.to_u16())
    });
    if has_share {
        return Ok(None);
    }
    config
        .groups
        .iter()
        .copied()
        .find(|g| ch.extensions.supported_groups.contains(&g.to_u16()))
        .map(Some)
        .ok_or(Error::NoCommonParameters { what: "group" })
}

fn retry_body(
    ch: &ClientHello,
    suite: Suite13,
    group: Option<NamedGroup>,
    cookie: &[u8],
) -> Vec<u8> {
    m13::encode_server_hello(
        &m13::hello_retry_random(),
        &ch.session_id,
        suite.to_u16(),
        group.map(|g| m13::KeyShareField::Retry(g.to_u16())),
        Some(cookie),
    )
}

/// With address validation on, a server answers a first 1.3 ClientHello with this
/// HelloRetryRequest and keeps nothing (RFC 9147 5.1): the cookie carries the hello's
/// transcript hash and the group asked for, MACed with the peer's address.
pub(crate) fn stateless_retry(
    config: &Config,
    peer_address: &[u8],
    msg: &CompleteMessage,
    ch: &ClientHello,
) -> Result<Vec<u8>, Error> {
    let suite = server_suite(config, ch)?;
    let group = retry_group(config, ch)?;
    let mut ch1 = Vec::new();
    m13::write_transcript_message(&mut ch1, ty::CLIENT_HELLO, &msg.body);
    let ch1_hash = suite.hash().digest(&ch1);
    let group_code = group.map_or(0, |g| g.to_u16());
    let mut cookie = Vec::with_capacity(ch1_hash.len() + COOKIE_TAIL_LEN);
    cookie.extend_from_slice(&ch1_hash);
    cookie.extend_from_slice(&group_code.to_be_bytes());
    cookie.extend_from_slice(&cookie_mac(config, peer_address, &ch1_hash, group_code));
    Ok(retry_body(ch, suite, group, &cookie))
}

/// A valid cookie from our [`stateless_retry`]: the first hello's hash and the group.
pub(crate) fn check_cookie(
    config: &Config,
    peer_address: &[u8],
    cookie: &[u8],
) -> Option<(keys::Secret, u16)> {
    let hash_len = cookie.len().checked_sub(COOKIE_TAIL_LEN)?;
    if hash_len != 32 && hash_len != keys::MAX_HASH_LEN {
        return None;
    }
    let (hash, rest) = cookie.split_at(hash_len);
    let (group, mac) = rest.split_at(2);
    let group = u16::from_be_bytes([*group.first()?, *group.get(1)?]);
    let expected = cookie_mac(config, peer_address, hash, group);
    let equal = mac
        .iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0;
    equal.then(|| (keys::Secret::from_slice(hash), group))
}

impl Conn13 {
    /// A server answering a second ClientHello that returned a valid cookie: the
    /// transcript starts as if we had kept the first hello and our retry request.
    pub(crate) fn server_after_retry(
        h: Handover,
        now: Instant,
        msg: &CompleteMessage,
        ch: &ClientHello,
        ch1_hash: keys::Secret,
        group: u16,
        cookie: &[u8],
    ) -> Result<Self, Error> {
        let suite = server_suite(&h.config, ch)?;
        if ch1_hash.len() != suite.hash().len() {
            // The second hello offers suites that pick another hash than the first did.
            return Err(Error::BadCookieExchange);
        }
        let group = match group {
            0 => None,
            g => Some(NamedGroup::from_u16(g).ok_or(Error::BadCookieExchange)?),
        };
        let mut conn = Self::from_handover(h, State::ServerAwaitSecondClientHello, suite);
        conn.next_message_seq = msg.message_seq;
        conn.peer_flight_start = msg.message_seq;
        let hs = conn.hs_mut()?;
        hs.hello_retried = true;
        m13::write_transcript_message(&mut hs.transcript, m13::MESSAGE_HASH, &ch1_hash);
        let hrr = retry_body(ch, suite, group, cookie);
        m13::write_transcript_message(&mut hs.transcript, ty::SERVER_HELLO, &hrr);
        conn.server_on_client_hello(now, msg, ch)?;
        Ok(conn)
    }

    /// A server whose peer's ClientHello offers 1.3: answer it.
    pub(crate) fn server(
        h: Handover,
        now: Instant,
        msg: &CompleteMessage,
        ch: &ClientHello,
    ) -> Result<Self, Error> {
        let suite = server_suite(&h.config, ch)?;
        let mut conn = Self::from_handover(h, State::ServerAwaitSecondClientHello, suite);
        conn.peer_flight_start = msg.message_seq;
        conn.server_on_client_hello(now, msg, ch)?;
        Ok(conn)
    }

    pub(super) fn server_on_client_hello(
        &mut self,
        now: Instant,
        msg: &CompleteMessage,
        ch: &ClientHello,
    ) -> Result<(), Error> {
        let hs = self
            .hs
            .as_deref()
            .ok_or(Error::Crypto("handshake state gone"))?;
        let suite = hs.suite;
        if !ch.cipher_suites.contains(&suite.to_u16()) {
            return Err(Error::NoCommonParameters {
                what: "cipher suite",
            });
        }
        if !ch.extensions.supported_versions.contains(&m13::DTLS_1_3) {
            return Err(Error::UnsupportedVersion);
        }
        if !ch
            .extensions
            .signature_algorithms
            .contains(&ECDSA_SECP256R1_SHA256)
        {
            return Err(Error::NoCommonParameters {
                what: "signature scheme",
            });
        }
        let profile = self
            .config
            .srtp_profiles
            .iter()
            .copied()
            .find(|p| ch.extensions.srtp_profiles.contains(&p.to_u16()))
            .ok_or(if ch.extensions.srtp_profiles.is_empty() {
                Error::MissingSrtp
            } else {
                Error::NoCommonParameters {
                    what: "SRTP profile",
                }
            })?;
        // The first of our groups the client sent a share for; else the first of our
        // groups it supports, asked for with a HelloRetryRequest.
        let share = self.config.groups.iter().copied().find_map(|g| {
            ch.extensions
                .key_shares
                .iter()
                .find(|(group, _)| *group == g.to_u16())
                .map(|(_, public)| (g, public.clone()))
        });
        let hello_retried = hs.hello_retried;
        self.mark_peer_flight(msg.message_seq);
        let Some((group, peer_public)) = share else {
            if hello_retried {
                return Err(Error::BadKeyShare);
            }
            let group = self
                .config
                .groups
                .iter()
                .copied()
                .find(|g| ch.extensions.supported_groups.contains(&g.to_u16()))
                .ok_or(Error::NoCommonParameters { what: "group" })?;
            return self.server_send_hello_retry(now, msg, ch, group);
        };
        let (own_public, shared) = KeyShare::respond(group, &peer_public, &self.rng)?;
        let random = self.random()?;
        let seq = self.next_message_seq;
        let hs = self.hs_mut()?;
        hs.srtp_profile = Some(profile);
        hs.group = Some(group);
        hs.session_id = ch.session_id.clone();
        m13::write_transcript_message(&mut hs.transcript, ty::CLIENT_HELLO, &msg.body);
        let sh = m13::encode_server_hello(
            &random,
            &ch.session_id,
            suite.to_u16(),
            Some(m13::KeyShareField::Share(group.to_u16(), &own_public)),
            None,
        );
        m13::write_transcript_message(&mut hs.transcript, ty::SERVER_HELLO, &sh);
        let schedule =
            Schedule::handshake(suite.hash(), &shared, &suite.hash().digest(&hs.transcript))?;
        let read = EpochKeys::derive(suite, &schedule.client_handshake)?;
        let write = EpochKeys::derive(suite, &schedule.server_handshake)?;
        hs.schedule = Some(schedule);
        let ee = m13::encode_encrypted_extensions(profile.to_u16());
        m13::write_transcript_message(&mut hs.transcript, m13::ENCRYPTED_EXTENSIONS, &ee);
        let cr = m13::encode_certificate_request();
        m13::write_transcript_message(&mut hs.transcript, ty::CERTIFICATE_REQUEST, &cr);
        self.hs_read = Some(read);
        self.hs_write = Some(write);
        let mut items = vec![
            OutMessage::new(ty::SERVER_HELLO, seq, 0, sh),
            OutMessage::new(m13::ENCRYPTED_EXTENSIONS, seq + 1, 2, ee),
            OutMessage::new(ty::CERTIFICATE_REQUEST, seq + 2, 2, cr),
        ];
        self.next_message_seq = seq + 3;
        self.own_certificate_messages(&mut items, &[], true)?;
        self.own_finished(&mut items, true)?;
        let hs = self.hs_mut()?;
        let schedule = hs.schedule.as_ref().ok_or(Error::Crypto("no schedule"))?;
        let app = schedule.application(&suite.hash().digest(&hs.transcript))?;
        let app_write = EpochKeys::derive(suite, &app.server)?;
        hs.application = Some(app);
        self.app_write = Some(app_write);
        self.state = State::ServerAwaitCertificate;
        self.send_flight(now, Flight::new(items, true))
    }

    pub(super) fn server_send_hello_retry(
        &mut self,
        now: Instant,
        msg: &CompleteMessage,
        ch: &ClientHello,
        group: NamedGroup,
    ) -> Result<(), Error> {
        let seq = self.next_message_seq;
        let hs = self.hs_mut()?;
        let suite = hs.suite;
        hs.hello_retried = true;
        // RFC 8446 4.4.1: ClientHello1 enters the transcript as its hash.
        let mut ch1 = Vec::new();
        m13::write_transcript_message(&mut ch1, ty::CLIENT_HELLO, &msg.body);
        hs.transcript.clear();
        let ch1_hash = suite.hash().digest(&ch1);
        m13::write_transcript_message(&mut hs.transcript, m13::MESSAGE_HASH, &ch1_hash);
        let hrr = m13::encode_server_hello(
            &m13::hello_retry_random(),
            &ch.session_id,
            suite.to_u16(),
            Some(m13::KeyShareField::Retry(group.to_u16())),
            None,
        );
        m13::write_transcript_message(&mut hs.transcript, ty::SERVER_HELLO, &hrr);
        self.next_message_seq = seq + 1;
        self.state = State::ServerAwaitSecondClientHello;
        // Not on our timer: the client's timer repeats ClientHello1 if this is lost, and
        // the repeat makes us send it again.
        self.send_flight(
            now,
            Flight::new(vec![OutMessage::new(ty::SERVER_HELLO, seq, 0, hrr)], false),
        )
    }

    pub(super) fn server_on_finished(
        &mut self,
        now: Instant,
        msg: &CompleteMessage,
    ) -> Result<(), Error> {
        self.verify_finished(msg)?;
        self.peer_last_flight = Some((self.peer_flight_start, msg.message_seq));
        self.peer_flight_start = msg.message_seq.wrapping_add(1);
        self.complete(now)?;
        // The client's final flight is acknowledged explicitly (RFC 9147 section 7).
        self.ack_at = None;
        self.send_ack(now)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;
    use crate::connection::test_support::{configs, deliver, new_pair};
    use crate::connection::Connection;

    /// With address validation on, the server answers the first 1.3 hello with a
    /// HelloRetryRequest carrying a cookie and keeps no 1.3 state until the cookie returns.
    #[test]
    fn address_validation_uses_a_stateless_retry_cookie() {
        for server_groups in [None, Some(vec![NamedGroup::P256])] {
            let (client, server) = configs();
            let client = with_versions(&client, &BOTH);
            let server = with_hello_verify(&with_versions(&server, &BOTH), server_groups);
            let now = Instant::now();
            let (mut c, mut s) = new_pair(client, server, now);
            deliver(&mut c, &mut s, now);
            assert!(s.v13.is_none(), "no 1.3 state before the cookie returns");
            assert!(s
                .poll_timeout()
                .is_some_and(|t| t >= now + Duration::from_secs(29)));
            let (mut cc, mut sc) = (None, None);
            for _ in 0..6 {
                deliver(&mut s, &mut c, now);
                deliver(&mut c, &mut s, now);
                cc = cc.or_else(|| connected(&mut c));
                sc = sc.or_else(|| connected(&mut s));
            }
            let (cc, sc) = (cc.expect("client"), sc.expect("server"));
            assert_eq!(cc.version, DtlsVersion::Dtls13);
            assert_eq!(cc.srtp.exported, sc.srtp.exported);
        }
    }

    #[test]
    fn a_cookie_from_another_address_or_tampered_is_refused() {
        let (_, server) = configs();
        let server = with_hello_verify(&with_versions(&server, &BOTH), None);
        let ch_body = {
            let (client, _) = configs();
            // An X25519-only hello fits one datagram (the hybrid's does not).
            let mut client = (*with_versions(&client, &BOTH)).clone();
            client.groups = vec![NamedGroup::X25519];
            let client = Arc::new(client);
            let now = Instant::now();
            let mut c = Connection::new(
                client,
                Role::Client,
                PeerAuth::AcceptAnyCertificate,
                b"s",
                now,
            );
            // One record, one unfragmented message: record and handshake headers, body.
            let d = c.poll_transmit().expect("ClientHello");
            d[crate::record::RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN..].to_vec()
        };
        let ch = ClientHello::parse(&ch_body).expect("hello");
        let msg = CompleteMessage {
            msg_type: ty::CLIENT_HELLO,
            message_seq: 0,
            epoch: 0,
            body: ch_body.clone(),
        };
        let hrr = stateless_retry(&server, b"198.51.100.7:5000", &msg, &ch).expect("retry");
        let sh = ServerHello::parse(&hrr).expect("parse");
        let cookie = sh.extensions.cookie.expect("cookie");
        assert!(check_cookie(&server, b"198.51.100.7:5000", &cookie).is_some());
        assert!(check_cookie(&server, b"198.51.100.8:5000", &cookie).is_none());
        let mut tampered = cookie.clone();
        tampered[0] ^= 1;
        assert!(check_cookie(&server, b"198.51.100.7:5000", &tampered).is_none());
        assert!(check_cookie(&server, b"198.51.100.7:5000", &cookie[1..]).is_none());
    }

    #[test]
    fn a_server_asks_for_another_group_with_a_hello_retry_request() {
        let (client, server) = configs();
        let mut client = (*with_versions(&client, &BOTH)).clone();
        client.groups = vec![NamedGroup::X25519, NamedGroup::P256];
        let mut server = (*with_versions(&server, &BOTH)).clone();
        server.groups = vec![NamedGroup::P256];
        let (_, _, cc, sc) = handshake(Arc::new(client), Arc::new(server));
        assert_eq!(cc.version, DtlsVersion::Dtls13);
        assert_eq!(cc.srtp.exported, sc.srtp.exported);
    }

    #[test]
    fn a_server_prefers_aes_128_gcm_when_both_suites_are_offered() {
        let (client, server) = configs();
        let now = Instant::now();
        let (mut c, mut s) = new_pair(
            with_versions(&client, &BOTH),
            with_versions(&server, &BOTH),
            now,
        );
        deliver(&mut c, &mut s, now);
        let inner = s.v13.as_ref().expect("1.3 server");
        assert_eq!(
            inner.hs.as_ref().map(|h| h.suite),
            Some(Suite13::Aes128GcmSha256)
        );
    }

    #[test]
    fn a_tampered_client_finished_is_refused_by_the_server() {
        let (mut c, mut s, _, _, now) = pair13();
        deliver(&mut c, &mut s, now);
        deliver(&mut s, &mut c, now);
        drop_all(&mut c);
        let inner = c.v13.as_mut().expect("1.3 client");
        let flight = inner.flight.as_mut().expect("client flight");
        let fin = flight
            .messages
            .iter_mut()
            .find(|m| m.msg_type == ty::FINISHED)
            .expect("Finished");
        fin.body[0] ^= 0x80;
        let later = now + Duration::from_secs(1);
        c.handle_timeout(later);
        deliver(&mut c, &mut s, later);
        assert_eq!(failure(&mut s), Some(Error::BadFinished));
    }
}
