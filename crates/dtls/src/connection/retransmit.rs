//! What both roles share about flights: sending and re-sending ours, recognising the
//! peer's repeat of its previous flight, and the final flight kept after completion.

use std::time::Instant;

use super::*;

/// Flights of at most this many datagrams are sent twice when retransmitted.
const REDUNDANT_FLIGHT_DATAGRAMS: usize = 2;

impl Connection {
    /// The flight timers: the end of final-flight retention, and the retransmission timer.
    pub(super) fn on_flight_timers(&mut self, now: Instant) -> Result<(), Error> {
        if self.retain_until.is_some_and(|t| now >= t) {
            self.retain_until = None;
            self.flight = None;
            self.peer_last_flight = None;
        }
        if self.retransmit_at.is_some_and(|t| now >= t) {
            self.stats.timer_retransmissions += 1;
            // Back off only when the path looks dead: new bytes of the peer's flight since
            // the last timeout show it is alive and merely lossy, and a long flight needs
            // several rounds to fill in.
            if !std::mem::take(&mut self.peer_progress) {
                self.timer.backoff();
            }
            self.rtt_probe = None; // Karn: no sample from a retransmitted flight
            self.transmit_flight(now, true)?;
        }
        Ok(())
    }

    /// The peer sent a message we already processed. If it belongs to its previous flight,
    /// our answer was lost: re-send it now rather than waiting for our timer.
    pub(super) fn on_peer_retransmission(
        &mut self,
        now: Instant,
        message_seq: u16,
    ) -> Result<(), Error> {
        let Some((first, last)) = self.peer_last_flight else {
            return Ok(());
        };
        if !(first..=last).contains(&message_seq) || self.flight.is_none() {
            return Ok(());
        }
        let final_flight = self.state == State::Connected;
        if !final_flight && !self.config.recovery.resend_on_repeat {
            return Ok(());
        }
        if final_flight && !self.config.recovery.retain_final_flight {
            return Ok(());
        }
        let spacing = self.timer.repeat_spacing();
        if self
            .last_transmission
            .is_some_and(|t| now.duration_since(t) < spacing)
        {
            return Ok(());
        }
        if final_flight {
            self.stats.final_flight_retransmissions += 1;
        } else {
            self.stats.repeat_retransmissions += 1;
        }
        self.rtt_probe = None;
        self.transmit_flight(now, true)
    }

    /// The peer's flight that ended with `last_seq` is complete: remember its range so a
    /// repeat of it can be recognised, and start the next one.
    pub(super) fn mark_peer_flight(&mut self, last_seq: u16) {
        self.peer_last_flight = Some((self.peer_flight_start, last_seq));
        self.peer_flight_start = last_seq.wrapping_add(1);
    }

    pub(super) fn send_flight(&mut self, now: Instant, flight: Flight) -> Result<(), Error> {
        self.flight = Some(flight);
        self.timer.reset_backoff();
        self.transmit_flight(now, false)?;
        self.rtt_probe = self.retransmit_at.map(|_| now);
        Ok(())
    }

    /// Sends the current flight. A retransmission of a small flight goes out twice: the
    /// loss that made it necessary is likely to strike again, and one extra copy of a
    /// datagram or two is far cheaper than another timeout (QUIC's PTO probes do the same).
    pub(super) fn transmit_flight(
        &mut self,
        now: Instant,
        retransmission: bool,
    ) -> Result<(), Error> {
        let Some(flight) = self.flight.as_ref() else {
            self.retransmit_at = None;
            return Ok(());
        };
        let datagrams = packetize(
            flight,
            &mut self.writer,
            self.config.max_datagram_size,
            &mut self.transmits,
        )?;
        if retransmission
            && self.config.recovery.redundant_retransmission
            && datagrams <= REDUNDANT_FLIGHT_DATAGRAMS
        {
            packetize(
                flight,
                &mut self.writer,
                self.config.max_datagram_size,
                &mut self.transmits,
            )?;
        }
        self.last_transmission = Some(now);
        self.retransmit_at = flight.timed.then(|| now + self.timer.current());
        Ok(())
    }
}

#[cfg(test)]
mod retransmission_count_tests {
    //! Exact retransmission counts per reason, on virtual time with chosen losses. The
    //! link is 35 ms each way; P-256 certificates and 1200-byte datagrams keep every
    //! flight in one datagram, so the timeline of each test can be worked out by hand.

    use super::super::*;
    use crate::cert::Certificate;
    use sluice_netsim::sim::{Endpoint, Pair};
    use sluice_netsim::{drop_first, dtls_view, LinkConfig};

    struct Peer {
        conn: Connection,
        connected: bool,
    }

    impl Endpoint for Peer {
        fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
            self.conn.handle_datagram(now, datagram);
            self.drain();
        }
        fn handle_timeout(&mut self, now: Instant) {
            self.conn.handle_timeout(now);
            self.drain();
        }
        fn poll_transmit(&mut self) -> Option<Vec<u8>> {
            self.conn.poll_transmit()
        }
        fn poll_timeout(&self) -> Option<Instant> {
            self.conn.poll_timeout()
        }
    }

    impl Peer {
        fn drain(&mut self) {
            while let Some(event) = self.conn.poll_event() {
                if let Event::Connected(_) = event {
                    self.connected = true;
                }
            }
        }
    }

    /// A client (A) and a server (B); `server_rto` is the server's initial timeout.
    fn pair(server_rto: Duration, seed: u64) -> Pair<Peer, Peer> {
        let start = Instant::now();
        let client_cert = Arc::new(Certificate::generate().expect("certificate"));
        let server_cert = Arc::new(Certificate::generate().expect("certificate"));
        let mut client_config = Config::new(client_cert.clone());
        client_config.versions = vec![DtlsVersion::Dtls12];
        let client = Connection::new(
            Arc::new(client_config),
            Role::Client,
            PeerAuth::Fingerprint(server_cert.fingerprint()),
            b"server",
            start,
        );
        let mut server_config = Config::new(server_cert);
        server_config.initial_rto = server_rto;
        server_config.versions = vec![DtlsVersion::Dtls12];
        let server = Connection::new(
            Arc::new(server_config),
            Role::Server,
            PeerAuth::Fingerprint(client_cert.fingerprint()),
            b"client",
            start,
        );
        let link = LinkConfig::delayed(Duration::from_millis(35));
        Pair::with_start(
            Peer {
                conn: client,
                connected: false,
            },
            Peer {
                conn: server,
                connected: false,
            },
            link.clone(),
            link,
            seed,
            start,
        )
    }

    /// Runs until both are connected, then 5 s more so that late re-sends happen too.
    fn run(pair: &mut Pair<Peer, Peer>) -> (ConnectionStats, ConnectionStats) {
        let outcome = pair.drive_until(Duration::from_secs(10), |a, b| a.connected && b.connected);
        assert!(outcome.finished, "the handshake completes");
        pair.drive_until(Duration::from_secs(5), |_, _| false);
        (pair.a().conn.stats(), pair.b().conn.stats())
    }

    fn counts(stats: &ConnectionStats) -> [u64; 3] {
        RetransmitReason::ALL.map(|r| stats.retransmissions(r))
    }

    const DATAGRAM_IS_FINISHED_FLIGHT: fn(&[u8]) -> bool =
        |d| dtls_view::carries_content_type(d, 20);

    #[test]
    fn a_clean_handshake_retransmits_nothing() {
        let mut pair = pair(Duration::from_millis(400), 1);
        let (client, server) = run(&mut pair);
        assert_eq!(counts(&client), [0, 0, 0]);
        assert_eq!(counts(&server), [0, 0, 0]);
    }

    /// The server's final flight is lost once: the client's timer repeats flight 5 (sent
    /// twice, a one-datagram flight), the server, already connected, re-sends its final
    /// flight once (the second copy falls within the repeat spacing).
    #[test]
    fn a_final_flight_resent_after_completion_is_counted() {
        let mut pair = pair(Duration::from_millis(400), 2);
        pair.link_ba_mut()
            .set_drop_filter(drop_first(1, DATAGRAM_IS_FINISHED_FLIGHT));
        let (client, server) = run(&mut pair);
        assert_eq!(counts(&client), [1, 0, 0]);
        assert_eq!(counts(&server), [0, 0, 1]);
        assert_eq!(server.total_retransmissions(), 1);
    }

    /// Lost twice (both copies of the first re-send), the final flight is re-sent twice:
    /// one per repeat of the client, each counted although the server completed long ago.
    #[test]
    fn every_final_flight_resend_is_counted() {
        let mut pair = pair(Duration::from_millis(400), 3);
        pair.link_ba_mut()
            .set_drop_filter(drop_first(3, DATAGRAM_IS_FINISHED_FLIGHT));
        let (client, server) = run(&mut pair);
        assert_eq!(counts(&client), [2, 0, 0]);
        assert_eq!(counts(&server), [0, 0, 2]);
    }

    /// The server's flight 4 is lost once; the client's ClientHello timer (400 ms) fires
    /// before the server's (1 s), so the server re-sends flight 4 on the client's repeat.
    #[test]
    fn a_resend_on_the_peers_repeat_is_counted_apart_from_timeouts() {
        let mut pair = pair(Duration::from_secs(1), 4);
        pair.link_ba_mut()
            .set_drop_filter(drop_first(1, |d| dtls_view::carries_handshake(d, 2)));
        let (client, server) = run(&mut pair);
        assert_eq!(counts(&client), [1, 0, 0]);
        assert_eq!(counts(&server), [0, 1, 0]);
    }

    /// Flight 4 lost once with a server timer of 100 ms: the server's timer re-sends it
    /// long before the client's 400 ms ClientHello timer would fire.
    #[test]
    fn timer_driven_resends_are_counted_as_timeouts() {
        let mut pair = pair(Duration::from_millis(100), 5);
        pair.link_ba_mut()
            .set_drop_filter(drop_first(1, |d| dtls_view::carries_handshake(d, 2)));
        let (client, server) = run(&mut pair);
        assert_eq!(counts(&client), [0, 0, 0]);
        assert_eq!(counts(&server), [1, 0, 0]);
    }
}
