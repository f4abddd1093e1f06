//! The client side of the DTLS 1.2 handshake: ClientHello (again after a
//! HelloVerifyRequest), the server's flight 4, and our flight 5.

use std::time::Instant;

use super::*;

impl Connection {
    pub(super) fn start_client(&mut self, now: Instant, cookie: &[u8]) -> Result<(), Error> {
        let random = if cookie.is_empty() {
            self.random()?
        } else {
            self.hs_mut()?.client_random
        };
        let speaks_13 = self.config.speaks_13();
        let suites13 = crate::tls13::keys::Suite13::configured(&self.config.cipher_suites)
            .into_iter()
            .map(|s| s.to_u16())
            .filter(|_| speaks_13);
        let suites12 = self
            .config
            .cipher_suites
            .iter()
            .filter(|s| !s.is_tls13() && self.config.speaks_12())
            .map(|s| s.to_u16());
        let suites: Vec<u16> = suites13
            .chain(suites12)
            .chain(std::iter::once(messages::TLS_EMPTY_RENEGOTIATION_INFO_SCSV))
            .collect();
        // The hybrid exists only in 1.3's key_share: a 1.2-only offer leaves it out.
        let groups: Vec<u16> = self
            .config
            .groups
            .iter()
            .filter(|g| speaks_13 || g.is_ecdhe())
            .map(|g| g.to_u16())
            .collect();
        let profiles: Vec<u16> = self
            .config
            .srtp_profiles
            .iter()
            .map(|p| p.to_u16())
            .collect();
        let (shares13, offer13) = if speaks_13 {
            let shares = crate::tls13::conn::client_shares(&self.config, &self.rng)?;
            let offer = crate::tls13::conn::client_offer(&self.config, &shares);
            (shares, Some(offer))
        } else {
            (Vec::new(), None)
        };
        let body = ClientHello::encode(
            &random,
            cookie,
            &suites,
            &groups,
            &profiles,
            offer13.as_ref(),
        );
        let seq = self.next_send_seq;
        self.next_send_seq += 1;
        let hs = self.hs_mut()?;
        hs.client_random = random;
        hs.shares13 = shares13;
        hs.client_hello_body = body.clone();
        hs.hello13 = offer13.map(|o| crate::tls13::conn::ClientHelloParts {
            random,
            suites: suites.clone(),
            groups: groups.clone(),
            profiles: profiles.clone(),
            versions: o.versions,
        });
        hs.transcript.clear();
        messages::write_full_message(&mut hs.transcript, HandshakeType::ClientHello, seq, &body);
        self.send_flight(
            now,
            Flight {
                items: vec![FlightItem::Handshake {
                    msg_type: HandshakeType::ClientHello,
                    message_seq: seq,
                    epoch: 0,
                    body,
                }],
                timed: true,
            },
        )
    }

    pub(super) fn client_on_hello_verify(
        &mut self,
        now: Instant,
        msg: &CompleteMessage,
    ) -> Result<(), Error> {
        let cookie = messages::parse_hello_verify_request(&msg.body)?;
        let hs = self.hs_mut()?;
        if hs.hello_verify_seen || cookie.is_empty() || cookie.len() > 255 {
            return Err(Error::BadCookieExchange);
        }
        hs.hello_verify_seen = true;
        self.mark_peer_flight(msg.message_seq);
        self.start_client(now, &cookie)
    }

    pub(super) fn client_on_server_hello(
        &mut self,
        now: Instant,
        msg: &CompleteMessage,
    ) -> Result<(), Error> {
        let sh = ServerHello::parse(&msg.body)?;
        let offered_13 = self.hs.as_ref().is_some_and(|hs| hs.hello13.is_some());
        if offered_13 && sh.extensions.supported_versions == [crate::tls13::messages::DTLS_1_3] {
            let mut handover = self.handover();
            handover.next_message_seq = self.next_send_seq;
            let hs = self.hs_mut()?;
            let parts = hs.hello13.take().ok_or(Error::Crypto("no 1.3 offer"))?;
            let shares = std::mem::take(&mut hs.shares13);
            let body = std::mem::take(&mut hs.client_hello_body);
            let v13 = Conn13::client(handover, now, &body, parts, shares, msg, &sh)?;
            // Our ClientHello is answered: the 1.2 engine stops re-sending it.
            self.flight = None;
            self.retransmit_at = None;
            self.adopt_13(v13);
            return Ok(());
        }
        if !sh.extensions.supported_versions.is_empty() {
            // A 1.2 ServerHello has no supported_versions; any other selection is one we
            // did not offer.
            return Err(Error::UnsupportedVersion);
        }
        if offered_13 && sh.random[24..] == crate::tls13::messages::DOWNGRADE_SENTINEL_12 {
            return Err(Error::Downgrade);
        }
        if !self.config.speaks_12() {
            return Err(Error::UnsupportedVersion);
        }
        if sh.server_version != record::DTLS_1_2 {
            return Err(Error::UnsupportedVersion);
        }
        let suite = CipherSuite::from_u16(sh.cipher_suite)
            .filter(|s| self.config.cipher_suites.contains(s))
            .ok_or(Error::NoCommonParameters {
                what: "cipher suite",
            })?;
        if sh.compression != 0 {
            return Err(Error::NoCommonParameters {
                what: "compression",
            });
        }
        if !sh.extensions.extended_master_secret {
            return Err(Error::MissingExtendedMasterSecret);
        }
        if sh
            .extensions
            .renegotiation_info
            .as_ref()
            .is_some_and(|r| !r.is_empty())
        {
            return Err(Error::BadRenegotiationInfo);
        }
        let profile = match sh.extensions.srtp_profiles.as_slice() {
            [one] => SrtpProfile::from_u16(*one)
                .filter(|p| self.config.srtp_profiles.contains(p))
                .ok_or(Error::MissingSrtp)?,
            _ => return Err(Error::MissingSrtp),
        };
        let hs = self.hs_mut()?;
        hs.server_random = sh.random;
        hs.suite = Some(suite);
        hs.srtp_profile = Some(profile);
        add_to_transcript(hs, msg);
        self.state = State::ClientAwaitCertificate;
        Ok(())
    }

    pub(super) fn client_on_server_key_exchange(
        &mut self,
        msg: &CompleteMessage,
    ) -> Result<(), Error> {
        let ske = messages::ServerKeyExchange::parse(&msg.body)?;
        let group = NamedGroup::from_u16(ske.group)
            .filter(|g| g.is_ecdhe() && self.config.groups.contains(g))
            .ok_or(Error::NoCommonParameters { what: "group" })?;
        let share = KeyShare::generate(group, &self.rng)?;
        let hs = self.hs_mut()?;
        let signed = messages::server_key_exchange_signed_data(
            &hs.client_random,
            &hs.server_random,
            &ske.params,
        );
        let key = hs.peer_key.as_ref().ok_or(Error::NoPeerCertificate)?;
        if !key.verify(ske.scheme, &signed, &ske.signature) {
            return Err(Error::BadSignature {
                what: "ServerKeyExchange",
            });
        }
        // Our public value goes into ClientKeyExchange; `agree` consumes the private key.
        hs.own_public = share.public().to_vec();
        hs.pre_master_secret = Some(share.agree(&ske.public)?);
        hs.group = Some(group);
        add_to_transcript(hs, msg);
        self.state = State::ClientAwaitCertificateRequestOrDone;
        Ok(())
    }

    pub(super) fn client_send_key_exchange(
        &mut self,
        now: Instant,
        peer_seq: u16,
    ) -> Result<(), Error> {
        self.mark_peer_flight(peer_seq);
        let mut seq = self.next_send_seq;
        let certificate = self.config.certificate.clone();
        let hs = self
            .hs
            .as_deref_mut()
            .ok_or(Error::Crypto("handshake state gone"))?;
        let suite = hs.suite.ok_or(Error::Crypto("no suite"))?;
        let mut items = Vec::new();
        if hs.certificate_requested {
            let body = messages::encode_certificate(certificate.der());
            messages::write_full_message(
                &mut hs.transcript,
                HandshakeType::Certificate,
                seq,
                &body,
            );
            items.push(FlightItem::Handshake {
                msg_type: HandshakeType::Certificate,
                message_seq: seq,
                epoch: 0,
                body,
            });
            seq += 1;
        }
        let public = std::mem::take(&mut hs.own_public);
        let body = messages::encode_client_key_exchange(&public);
        messages::write_full_message(
            &mut hs.transcript,
            HandshakeType::ClientKeyExchange,
            seq,
            &body,
        );
        items.push(FlightItem::Handshake {
            msg_type: HandshakeType::ClientKeyExchange,
            message_seq: seq,
            epoch: 0,
            body,
        });
        seq += 1;
        let pre_master = hs
            .pre_master_secret
            .take()
            .ok_or(Error::Crypto("no pre-master secret"))?;
        let session_hash = suite.prf_hash().digest(&hs.transcript);
        let master =
            crypto::extended_master_secret(suite.prf_hash(), &pre_master, session_hash.as_ref());
        if hs.certificate_requested {
            let signature = certificate.sign(&hs.transcript)?;
            let body = messages::encode_signed(ECDSA_SECP256R1_SHA256, &signature);
            messages::write_full_message(
                &mut hs.transcript,
                HandshakeType::CertificateVerify,
                seq,
                &body,
            );
            items.push(FlightItem::Handshake {
                msg_type: HandshakeType::CertificateVerify,
                message_seq: seq,
                epoch: 0,
                body,
            });
            seq += 1;
        }
        let verify = crypto::verify_data(suite.prf_hash(), &master, true, &hs.transcript);
        messages::write_full_message(&mut hs.transcript, HandshakeType::Finished, seq, &verify);
        items.push(FlightItem::ChangeCipherSpec);
        items.push(FlightItem::Handshake {
            msg_type: HandshakeType::Finished,
            message_seq: seq,
            epoch: 1,
            body: verify.to_vec(),
        });
        seq += 1;
        let keys = RecordKeys::derive(suite, &master, &hs.client_random, &hs.server_random, true)?;
        self.writer.keys = Some(keys);
        self.read_keys = true;
        self.master_secret = Some(master);
        self.next_send_seq = seq;
        self.state = State::ClientAwaitFinished;
        self.send_flight(now, Flight { items, timed: true })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn a_new_client_sends_its_client_hello_at_once_and_waits_for_the_server() {
        let (client, server) = configs();
        let now = Instant::now();
        let (mut c, _s) = new_pair(client, server, now);
        let first = c.poll_transmit().expect("a ClientHello");
        assert_eq!(plaintext_handshake_types(&first), [1]);
        assert!(c.poll_transmit().is_none(), "one datagram");
        assert_eq!(c.state, State::ClientAwaitServerHello);
        assert!(
            c.poll_timeout().is_some(),
            "the ClientHello is on the timer"
        );
    }

    #[test]
    fn a_hello_verify_request_makes_the_client_repeat_its_hello_with_the_cookie() {
        let (client, server) = configs();
        let mut server = (*server).clone();
        server.hello_verify = true;
        let now = Instant::now();
        let (mut c, mut s) = new_pair(client, Arc::new(server), now);
        let random = c.hs.as_ref().expect("handshake").client_random;
        deliver(&mut c, &mut s, now);
        deliver(&mut s, &mut c, now);
        let hs = c.hs.as_ref().expect("handshake");
        assert!(hs.hello_verify_seen);
        assert_eq!(hs.client_random, random, "the same random after the cookie");
        let second = c.poll_transmit().expect("the second ClientHello");
        assert_eq!(plaintext_handshake_types(&second), [1]);
        s.handle_datagram(now, &second);
        assert_eq!(
            s.state,
            State::ServerAwaitCertificate,
            "the cookie was accepted"
        );
    }

    #[test]
    fn a_client_completes_after_the_servers_final_flight_and_exports_keys() {
        let (client, server) = configs();
        let now = Instant::now();
        let (mut c, mut s) = new_pair(client, server, now);
        for _ in 0..4 {
            deliver(&mut c, &mut s, now);
            deliver(&mut s, &mut c, now);
        }
        assert!(c.is_connected());
        assert!(c.hs.is_none(), "handshake state freed");
        assert!(c.flight.is_none(), "a client keeps no final flight");
        let Some(Event::Connected(connected)) = c.poll_event() else {
            panic!("connected event");
        };
        assert_eq!(connected.srtp.local.key.len(), 16);
    }
}
