//! The client side of the DTLS 1.3 handshake: our key shares and offer (sent by the 1.2
//! engine's ClientHello), the ServerHello or HelloRetryRequest, the server's flight, and our
//! final flight, re-sent until the server acknowledges it.

use std::time::Instant;

use super::*;

/// The shares a 1.3 client offers: one of our preferred group (a server that prefers
/// another asks with a HelloRetryRequest), and when that is the hybrid, one of our first
/// elliptic-curve group beside it, as Chromium does: a server without ML-KEM then answers
/// at once instead of costing a round trip, for 32 more bytes on a ClientHello that the
/// hybrid's 1216 bytes fragment anyway.
pub(crate) fn client_shares(
    config: &Config,
    rng: &dyn SecureRandom,
) -> Result<Vec<(NamedGroup, KeyShare)>, Error> {
    let group = config
        .groups
        .first()
        .copied()
        .ok_or(Error::NoCommonParameters { what: "group" })?;
    let mut shares = vec![(group, KeyShare::generate(group, rng)?)];
    if !group.is_ecdhe() {
        if let Some(classical) = config.groups.iter().copied().find(|g| g.is_ecdhe()) {
            shares.push((classical, KeyShare::generate(classical, rng)?));
        }
    }
    Ok(shares)
}

/// The 1.3 additions of a client's first ClientHello.
pub(crate) fn client_offer(config: &Config, shares: &[(NamedGroup, KeyShare)]) -> Offer13 {
    let mut versions = vec![m13::DTLS_1_3];
    if config.speaks_12() {
        versions.push(crate::record::DTLS_1_2);
    }
    Offer13 {
        versions,
        key_shares: shares
            .iter()
            .map(|(g, s)| (g.to_u16(), s.public().to_vec()))
            .collect(),
        cookie: None,
    }
}

impl Conn13 {
    /// A client whose ServerHello (or HelloRetryRequest) chose 1.3.
    pub(crate) fn client(
        h: Handover,
        now: Instant,
        client_hello_body: &[u8],
        offer: ClientHelloParts,
        shares: Vec<(NamedGroup, KeyShare)>,
        msg: &CompleteMessage,
        sh: &ServerHello,
    ) -> Result<Self, Error> {
        let suite = Suite13::from_u16(sh.cipher_suite)
            .filter(|s| offer.suites.contains(&s.to_u16()))
            .ok_or(Error::NoCommonParameters {
                what: "cipher suite",
            })?;
        let mut conn = Self::from_handover(h, State::ClientAwaitServerHello, suite);
        let hs = conn.hs_mut()?;
        m13::write_transcript_message(&mut hs.transcript, ty::CLIENT_HELLO, client_hello_body);
        hs.own_shares = shares;
        hs.client_hello_offer = Some(offer);
        conn.client_on_server_hello(now, msg, sh)?;
        Ok(conn)
    }

    pub(super) fn client_on_server_hello(
        &mut self,
        now: Instant,
        msg: &CompleteMessage,
        sh: &ServerHello,
    ) -> Result<(), Error> {
        let suite = {
            let hs = self
                .hs
                .as_deref()
                .ok_or(Error::Crypto("handshake state gone"))?;
            hs.suite
        };
        if sh.cipher_suite != suite.to_u16() {
            return Err(Error::NoCommonParameters {
                what: "cipher suite",
            });
        }
        if sh.extensions.supported_versions != [m13::DTLS_1_3] {
            return Err(Error::UnsupportedVersion);
        }
        if !sh.session_id.is_empty() || sh.compression != 0 {
            return Err(Error::Decode {
                what: "ServerHello",
            });
        }
        if sh.random == m13::hello_retry_random() {
            self.mark_peer_flight(msg.message_seq);
            return self.client_on_hello_retry(now, msg, sh);
        }
        let [(group, server_public)] = sh.extensions.key_shares.as_slice() else {
            return Err(Error::BadKeyShare);
        };
        let hs = self.hs_mut()?;
        let index = hs
            .own_shares
            .iter()
            .position(|(g, _)| g.to_u16() == *group)
            .ok_or(Error::BadKeyShare)?;
        let (chosen, share) = hs.own_shares.swap_remove(index);
        hs.own_shares.clear();
        hs.group = Some(chosen);
        let shared = share.agree(server_public)?;
        m13::write_transcript_message(&mut hs.transcript, ty::SERVER_HELLO, &msg.body);
        let schedule =
            Schedule::handshake(suite.hash(), &shared, &suite.hash().digest(&hs.transcript))?;
        self.hs_read = Some(EpochKeys::derive(suite, &schedule.server_handshake)?);
        self.hs_write = Some(EpochKeys::derive(suite, &schedule.client_handshake)?);
        self.hs_mut()?.schedule = Some(schedule);
        // Our ClientHello is answered; the server's flight goes on in epoch 2.
        self.flight = None;
        self.retransmit_at = None;
        self.state = State::ClientAwaitEncryptedExtensions;
        Ok(())
    }

    pub(super) fn client_on_hello_retry(
        &mut self,
        now: Instant,
        msg: &CompleteMessage,
        sh: &ServerHello,
    ) -> Result<(), Error> {
        // A retry names a group we did not send a share for, or carries only a cookie
        // (address validation), in which case our shares stay as they were.
        let requested = match sh.extensions.retry_group {
            Some(g) => Some(
                NamedGroup::from_u16(g)
                    .filter(|g| self.config.groups.contains(g))
                    .ok_or(Error::BadKeyShare)?,
            ),
            None if sh.extensions.cookie.is_some() => None,
            None => return Err(Error::BadKeyShare),
        };
        let new_share = match requested {
            Some(group) => Some((group, KeyShare::generate(group, &self.rng)?)),
            None => None,
        };
        let seq = self.next_message_seq;
        let hs = self.hs_mut()?;
        let repeats_a_group = requested.is_some_and(|g| hs.own_shares.iter().any(|(o, _)| *o == g));
        if hs.hello_retried || repeats_a_group {
            // A second retry, or a retry for a group we already sent (RFC 8446 4.1.4).
            return Err(Error::BadKeyShare);
        }
        hs.hello_retried = true;
        let offer = hs
            .client_hello_offer
            .clone()
            .ok_or(Error::Crypto("no ClientHello to repeat"))?;
        if let Some(share) = new_share {
            hs.own_shares = vec![share];
        }
        let ch1 = std::mem::take(&mut hs.transcript);
        let ch1_hash = hs.suite.hash().digest(&ch1);
        m13::write_transcript_message(&mut hs.transcript, m13::MESSAGE_HASH, &ch1_hash);
        m13::write_transcript_message(&mut hs.transcript, ty::SERVER_HELLO, &msg.body);
        let offer13 = Offer13 {
            versions: offer.versions.clone(),
            key_shares: hs
                .own_shares
                .iter()
                .map(|(g, s)| (g.to_u16(), s.public().to_vec()))
                .collect(),
            cookie: sh.extensions.cookie.clone(),
        };
        let body = ClientHello::encode(
            &offer.random,
            &[],
            &offer.suites,
            &offer.groups,
            &offer.profiles,
            Some(&offer13),
        );
        m13::write_transcript_message(&mut hs.transcript, ty::CLIENT_HELLO, &body);
        self.next_message_seq = seq + 1;
        self.state = State::ClientAwaitServerHello;
        self.send_flight(
            now,
            Flight::new(vec![OutMessage::new(ty::CLIENT_HELLO, seq, 0, body)], true),
        )
    }

    pub(super) fn client_on_finished(
        &mut self,
        now: Instant,
        msg: &CompleteMessage,
    ) -> Result<(), Error> {
        self.verify_finished(msg)?;
        self.mark_peer_flight(msg.message_seq);
        let hs = self.hs_mut()?;
        let suite = hs.suite;
        let schedule = hs.schedule.as_ref().ok_or(Error::Crypto("no schedule"))?;
        let app = schedule.application(&suite.hash().digest(&hs.transcript))?;
        let context = hs.certificate_request.clone();
        self.app_read = Some(EpochKeys::derive(suite, &app.server)?);
        self.app_write = Some(EpochKeys::derive(suite, &app.client)?);
        self.hs_mut()?.application = Some(app);
        let mut items = Vec::new();
        if let Some(context) = context {
            self.own_certificate_messages(&mut items, &context, false)?;
        }
        self.own_finished(&mut items, false)?;
        self.send_flight(now, Flight::new(items, true))?;
        self.complete(now)?;
        // Unlike 1.2's, this final flight is acknowledged: keep re-sending it until the
        // server's ACK arrives, or until retention ends.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;
    use crate::connection::test_support::deliver;

    #[test]
    fn a_tampered_server_finished_is_refused() {
        assert_eq!(client_refuses_tampered(ty::FINISHED), Error::BadFinished);
    }

    #[test]
    fn a_tampered_server_certificate_verify_is_refused() {
        assert!(matches!(
            client_refuses_tampered(ty::CERTIFICATE_VERIFY),
            Error::BadSignature { .. } | Error::Decode { .. }
        ));
    }

    /// The server's first flight is lost, then tampered with before its retransmission:
    /// the client refuses it with the named error. `index` picks the message.
    fn client_refuses_tampered(msg_type: u8) -> Error {
        let (mut c, mut s, _, _, now) = pair13();
        deliver(&mut c, &mut s, now);
        drop_all(&mut s);
        let inner = s.v13.as_mut().expect("1.3 server");
        let flight = inner.flight.as_mut().expect("server flight");
        let m = flight
            .messages
            .iter_mut()
            .find(|m| m.msg_type == msg_type)
            .expect("message");
        let last = m.body.len() - 1;
        m.body[last] ^= 1;
        let later = now + Duration::from_secs(1);
        s.handle_timeout(later);
        deliver(&mut s, &mut c, later);
        failure(&mut c).expect("the client fails")
    }
}
