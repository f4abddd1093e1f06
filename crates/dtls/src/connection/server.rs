//! The server side of the DTLS 1.2 handshake: the ClientHello (with an optional stateless
//! cookie exchange), our flight 4, the client's flight 5 and our final flight.

use std::time::Instant;

use super::*;

impl Connection {
    pub(super) fn cookie(&self, ch: &ClientHello) -> Vec<u8> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.config.cookie_secret);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(&self.peer_address);
        ctx.update(&ch.random);
        ctx.update(&ch.session_id);
        ctx.sign().as_ref()[..20].to_vec()
    }

    pub(super) fn server_on_client_hello(
        &mut self,
        now: Instant,
        msg: &CompleteMessage,
    ) -> Result<(), Error> {
        let ch = ClientHello::parse(&msg.body)?;
        // DTLS versions count down: 0xfefd is 1.2, 0xfeff is 1.0.
        if ch.client_version > record::DTLS_1_2 {
            return Err(Error::UnsupportedVersion);
        }
        if self.config.speaks_13()
            && ch
                .extensions
                .supported_versions
                .contains(&crate::tls13::messages::DTLS_1_3)
        {
            // 1.3 is preferred whenever both sides speak it; the 1.3 engine answers.
            if self.config.hello_verify {
                let valid = ch.extensions.cookie.as_deref().and_then(|c| {
                    crate::tls13::conn::check_cookie(&self.config, &self.peer_address, c)
                        .map(|(hash, group)| (hash, group, c.to_vec()))
                });
                let Some((ch1_hash, group, cookie)) = valid else {
                    // Address validation: a HelloRetryRequest with a cookie, no state.
                    let hrr = crate::tls13::conn::stateless_retry(
                        &self.config,
                        &self.peer_address,
                        msg,
                        &ch,
                    )?;
                    self.mark_peer_flight(msg.message_seq);
                    return self.send_flight(
                        now,
                        Flight {
                            items: vec![FlightItem::Handshake {
                                msg_type: HandshakeType::ServerHello,
                                message_seq: 0,
                                epoch: 0,
                                body: hrr,
                            }],
                            timed: false,
                        },
                    );
                };
                let handover = self.handover();
                let v13 =
                    Conn13::server_after_retry(handover, now, msg, &ch, ch1_hash, group, &cookie)?;
                self.adopt_13(v13);
                return Ok(());
            }
            let handover = self.handover();
            let v13 = Conn13::server(handover, now, msg, &ch)?;
            self.adopt_13(v13);
            return Ok(());
        }
        if !self.config.speaks_12() {
            return Err(Error::UnsupportedVersion);
        }
        if self.config.hello_verify {
            let cookie = self.cookie(&ch);
            if ch.cookie != cookie {
                // Stateless: answer and forget; a repeat of this hello gets the same answer.
                self.mark_peer_flight(msg.message_seq);
                let body = messages::encode_hello_verify_request(&cookie);
                self.next_send_seq = msg.message_seq;
                return self.send_flight(
                    now,
                    Flight {
                        items: vec![FlightItem::Handshake {
                            msg_type: HandshakeType::HelloVerifyRequest,
                            message_seq: msg.message_seq,
                            epoch: 0,
                            body,
                        }],
                        timed: false,
                    },
                );
            }
        }
        if !ch.null_compression {
            return Err(Error::NoCommonParameters {
                what: "compression",
            });
        }
        if !ch.extensions.extended_master_secret {
            return Err(Error::MissingExtendedMasterSecret);
        }
        if ch
            .extensions
            .renegotiation_info
            .as_ref()
            .is_some_and(|r| !r.is_empty())
        {
            return Err(Error::BadRenegotiationInfo);
        }
        let suite = self
            .config
            .cipher_suites
            .iter()
            .copied()
            .find(|s| !s.is_tls13() && ch.cipher_suites.contains(&s.to_u16()))
            .ok_or(Error::NoCommonParameters {
                what: "cipher suite",
            })?;
        let group = if ch.extensions.supported_groups.is_empty() {
            Some(NamedGroup::P256)
        } else {
            self.config
                .groups
                .iter()
                .copied()
                .find(|g| g.is_ecdhe() && ch.extensions.supported_groups.contains(&g.to_u16()))
        }
        .ok_or(Error::NoCommonParameters { what: "group" })?;
        if !ch.extensions.signature_algorithms.is_empty()
            && !ch
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

        let mut server_random = self.random()?;
        if self.config.speaks_13() {
            // RFC 8446 4.1.3: a server that speaks 1.3 but negotiates 1.2 says so, so that
            // a 1.3 client whose offer was stripped of 1.3 can tell.
            server_random[24..].copy_from_slice(&crate::tls13::messages::DOWNGRADE_SENTINEL_12);
        }
        let share = KeyShare::generate(group, &self.rng)?;
        let certificate = self.config.certificate.clone();
        self.mark_peer_flight(msg.message_seq);
        let mut seq = msg.message_seq;
        let hs = self
            .hs
            .as_deref_mut()
            .ok_or(Error::Crypto("handshake state gone"))?;
        hs.client_random = ch.random;
        hs.server_random = server_random;
        hs.suite = Some(suite);
        hs.group = Some(group);
        hs.srtp_profile = Some(profile);
        hs.transcript.clear();
        add_to_transcript(hs, msg);

        let params = messages::ServerKeyExchange::params(group.to_u16(), share.public());
        let signed = messages::server_key_exchange_signed_data(&ch.random, &server_random, &params);
        let signature = certificate.sign(&signed)?;
        hs.key_share = Some(share);
        let bodies = [
            (
                HandshakeType::ServerHello,
                ServerHello::encode(&server_random, suite.to_u16(), profile.to_u16()),
            ),
            (
                HandshakeType::Certificate,
                messages::encode_certificate(certificate.der()),
            ),
            (
                HandshakeType::ServerKeyExchange,
                messages::ServerKeyExchange::encode(&params, ECDSA_SECP256R1_SHA256, &signature),
            ),
            (
                HandshakeType::CertificateRequest,
                messages::encode_certificate_request(),
            ),
            (HandshakeType::ServerHelloDone, Vec::new()),
        ];
        let mut items = Vec::with_capacity(bodies.len());
        for (ty, body) in bodies {
            messages::write_full_message(&mut hs.transcript, ty, seq, &body);
            items.push(FlightItem::Handshake {
                msg_type: ty,
                message_seq: seq,
                epoch: 0,
                body,
            });
            seq += 1;
        }
        self.next_send_seq = seq;
        self.state = State::ServerAwaitCertificate;
        self.send_flight(now, Flight { items, timed: true })
    }

    pub(super) fn server_on_client_key_exchange(
        &mut self,
        msg: &CompleteMessage,
    ) -> Result<(), Error> {
        let public = messages::parse_client_key_exchange(&msg.body)?;
        let hs = self.hs_mut()?;
        let suite = hs.suite.ok_or(Error::Crypto("no suite"))?;
        let share = hs.key_share.take().ok_or(Error::Crypto("no key share"))?;
        let pre_master = share.agree(&public)?;
        add_to_transcript(hs, msg);
        let session_hash = suite.prf_hash().digest(&hs.transcript);
        let master =
            crypto::extended_master_secret(suite.prf_hash(), &pre_master, session_hash.as_ref());
        let keys = RecordKeys::derive(suite, &master, &hs.client_random, &hs.server_random, false)?;
        self.writer.keys = Some(keys);
        self.read_keys = true;
        self.master_secret = Some(master);
        self.state = State::ServerAwaitCertificateVerify;
        Ok(())
    }

    pub(super) fn server_on_certificate_verify(
        &mut self,
        msg: &CompleteMessage,
    ) -> Result<(), Error> {
        let (scheme, signature) = messages::parse_signed(&msg.body, "CertificateVerify")?;
        let hs = self.hs_mut()?;
        let key = hs.peer_key.as_ref().ok_or(Error::NoPeerCertificate)?;
        if !key.verify(scheme, &hs.transcript, &signature) {
            return Err(Error::BadSignature {
                what: "CertificateVerify",
            });
        }
        add_to_transcript(hs, msg);
        self.state = State::ServerAwaitFinished;
        Ok(())
    }

    pub(super) fn server_send_finished(
        &mut self,
        now: Instant,
        peer_seq: u16,
    ) -> Result<(), Error> {
        self.mark_peer_flight(peer_seq);
        let master = self
            .master_secret
            .ok_or(Error::Crypto("no master secret"))?;
        let seq = self.next_send_seq;
        let hs = self.hs_mut()?;
        let suite = hs.suite.ok_or(Error::Crypto("no suite"))?;
        let verify = crypto::verify_data(suite.prf_hash(), &master, false, &hs.transcript);
        self.next_send_seq += 1;
        let flight = Flight {
            items: vec![
                FlightItem::ChangeCipherSpec,
                FlightItem::Handshake {
                    msg_type: HandshakeType::Finished,
                    message_seq: seq,
                    epoch: 1,
                    body: verify.to_vec(),
                },
            ],
            timed: false,
        };
        self.send_flight(now, flight)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn a_client_hello_is_answered_with_flight_4_in_order() {
        let (client, server) = configs();
        let now = Instant::now();
        let (mut c, mut s) = new_pair(client, server, now);
        deliver(&mut c, &mut s, now);
        let mut types = Vec::new();
        while let Some(d) = s.poll_transmit() {
            types.extend(plaintext_handshake_types(&d));
        }
        // ServerHello, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone.
        assert_eq!(types, [2, 11, 12, 13, 14]);
        assert_eq!(s.state, State::ServerAwaitCertificate);
    }

    #[test]
    fn a_cookie_exchange_keeps_no_state_until_the_cookie_returns() {
        let (client, server) = configs();
        let mut server = (*server).clone();
        server.hello_verify = true;
        let now = Instant::now();
        let (mut c, mut s) = new_pair(client, Arc::new(server), now);
        deliver(&mut c, &mut s, now);
        assert_eq!(s.state, State::ServerAwaitClientHello);
        assert!(s.hs.as_ref().expect("handshake").suite.is_none());
        assert!(
            s.retransmit_at.is_none(),
            "a HelloVerifyRequest is not timed"
        );
        let hvr = s.poll_transmit().expect("HelloVerifyRequest");
        assert_eq!(plaintext_handshake_types(&hvr), [3]);
    }

    #[test]
    fn a_server_keeps_its_final_flight_after_completion() {
        let (client, server) = configs();
        let now = Instant::now();
        let (mut c, mut s) = new_pair(client, server, now);
        for _ in 0..4 {
            deliver(&mut c, &mut s, now);
            deliver(&mut s, &mut c, now);
        }
        assert!(s.is_connected());
        assert!(s.flight.is_some(), "final flight retained");
        assert!(s.retain_until.is_some());
        s.handle_timeout(now + s.config.final_flight_retention);
        assert!(s.flight.is_none(), "released when retention ends");
        assert!(s.is_connected());
    }
}
