//! One DTLS 1.2 connection, client or server: the sans-IO state machine.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::cert::{peer_public_key, Fingerprint};
use crate::codec::Reader;
use crate::config::Config;
use crate::crypto::{
    self, CipherSuite, KeyShare, NamedGroup, PeerPublicKey, RecordKeys, ECDSA_SECP256R1_SHA256,
};
use crate::flight::{packetize, Flight, FlightItem, RecordWriter};
use crate::messages::{self, ClientHello, FragmentHeader, HandshakeType, ServerHello};
use crate::reassembly::{CompleteMessage, FragmentOutcome, Reassembler};
use crate::record::{self, ContentType, RawRecord, ReplayWindow};
use crate::srtp::{SrtpKeyingMaterial, SrtpProfile};
use crate::{AlertDescription, Error};

/// Which side of the handshake we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends the ClientHello (SDP `a=setup:active`).
    Client,
    /// Answers it (SDP `a=setup:passive`).
    Server,
}

/// How the peer's certificate is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAuth {
    /// Accept only a certificate whose SHA-256 fingerprint is this one (from the SDP).
    Fingerprint(Fingerprint),
    /// Accept any certificate. Only for tools and tests without signalling: it gives up
    /// the only authentication WebRTC has.
    AcceptAnyCertificate,
}

/// What a connection reports to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed and the peer is authenticated.
    Connected(Box<Connected>),
    /// The connection failed; nothing more will happen on it.
    Failed(Error),
    /// The peer closed the connection with close_notify.
    Closed,
}

/// The outcome of a completed handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// SRTP keys for the media layer.
    pub srtp: SrtpKeyingMaterial,
    /// The negotiated cipher suite.
    pub cipher_suite: CipherSuite,
    /// The fingerprint of the certificate the peer proved it holds.
    pub peer_fingerprint: Fingerprint,
    /// From the connection's creation to completion.
    pub handshake_duration: Duration,
}

/// Counters for one connection, for metrics and for the test matrix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Datagrams handed to the driver.
    pub datagrams_sent: u64,
    /// Bytes handed to the driver.
    pub bytes_sent: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Flights re-sent because our timer expired ([`RetransmitReason::Timeout`]).
    pub timer_retransmissions: u64,
    /// Flights re-sent during the handshake because the peer repeated its previous flight
    /// ([`RetransmitReason::PeerRepeat`]).
    pub repeat_retransmissions: u64,
    /// Final flights re-sent after completion because the peer, still handshaking,
    /// repeated its last flight ([`RetransmitReason::FinalFlight`]).
    pub final_flight_retransmissions: u64,
    /// Records dropped because they did not parse.
    pub malformed_records: u64,
    /// Records dropped because they did not authenticate.
    pub bad_mac_records: u64,
    /// Records dropped by the replay window.
    pub replayed_records: u64,
    /// Records of an epoch we cannot read.
    pub wrong_epoch_records: u64,
    /// Handshake fragments dropped without failing (buffer limits, too far ahead).
    pub dropped_fragments: u64,
    /// Fragments recognised as the peer's retransmission of messages we already have.
    pub retransmitted_fragments: u64,
}

impl ConnectionStats {
    /// Flights re-sent for `reason` so far. Counters only grow, so a driver that exports
    /// them can add the difference between two snapshots at any time, including after
    /// completion, when final-flight re-sends still happen.
    pub fn retransmissions(&self, reason: RetransmitReason) -> u64 {
        match reason {
            RetransmitReason::Timeout => self.timer_retransmissions,
            RetransmitReason::PeerRepeat => self.repeat_retransmissions,
            RetransmitReason::FinalFlight => self.final_flight_retransmissions,
        }
    }

    /// Flights re-sent for any reason.
    pub fn total_retransmissions(&self) -> u64 {
        RetransmitReason::ALL
            .iter()
            .map(|&r| self.retransmissions(r))
            .sum()
    }
}

/// Why a flight was sent again. Each re-send of a whole flight counts once, whether it
/// went out as one copy or (a small flight) two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetransmitReason {
    /// Our retransmission timer expired before the peer's next flight was complete.
    Timeout,
    /// During the handshake the peer repeated its previous flight, so ours was lost; we
    /// re-sent at once instead of waiting for the timer.
    PeerRepeat,
    /// After completion (server only) the peer repeated its last flight, so our final
    /// flight was lost; we re-sent the final flight we keep for this.
    FinalFlight,
}

impl RetransmitReason {
    /// Every reason, in a fixed order.
    pub const ALL: [RetransmitReason; 3] = [
        RetransmitReason::Timeout,
        RetransmitReason::PeerRepeat,
        RetransmitReason::FinalFlight,
    ];

    /// A stable snake_case label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RetransmitReason::Timeout => "timeout",
            RetransmitReason::PeerRepeat => "peer_repeat",
            RetransmitReason::FinalFlight => "final_flight",
        }
    }
}

/// Where the handshake stands. Each state names what it waits for, which is what a
/// timeout reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    ClientAwaitServerHello,
    ClientAwaitCertificate,
    ClientAwaitKeyExchange,
    ClientAwaitCertificateRequestOrDone,
    ClientAwaitServerHelloDone,
    ClientAwaitFinished,
    ServerAwaitClientHello,
    ServerAwaitCertificate,
    ServerAwaitClientKeyExchange,
    ServerAwaitCertificateVerify,
    ServerAwaitFinished,
    Connected,
    Failed,
    Closed,
}

impl State {
    fn waiting_for(self) -> &'static str {
        match self {
            Self::ClientAwaitServerHello => "ServerHello (server flight 2/4)",
            Self::ClientAwaitCertificate
            | Self::ClientAwaitKeyExchange
            | Self::ClientAwaitCertificateRequestOrDone
            | Self::ClientAwaitServerHelloDone => "the rest of server flight 4",
            Self::ClientAwaitFinished => "server CCS+Finished (flight 6)",
            Self::ServerAwaitClientHello => "ClientHello (client flight 1/3)",
            Self::ServerAwaitCertificate
            | Self::ServerAwaitClientKeyExchange
            | Self::ServerAwaitCertificateVerify
            | Self::ServerAwaitFinished => "client flight 5",
            Self::Connected => "nothing",
            Self::Failed => "nothing (failed)",
            Self::Closed => "nothing (closed)",
        }
    }
}

/// Secrets and choices accumulated during one handshake; dropped on completion.
struct Handshake {
    client_random: [u8; 32],
    server_random: [u8; 32],
    suite: Option<CipherSuite>,
    srtp_profile: Option<SrtpProfile>,
    key_share: Option<KeyShare>,
    own_public: Vec<u8>,
    pre_master_secret: Option<Vec<u8>>,
    peer_key: Option<PeerPublicKey>,
    peer_fingerprint: Option<Fingerprint>,
    certificate_requested: bool,
    /// Every handshake message so far, in unfragmented form (transcript for Finished,
    /// CertificateVerify and the extended master secret).
    transcript: Vec<u8>,
    hello_verify_seen: bool,
}

/// Epoch-1 records that arrived before we could read epoch 1 (reordering).
/// Flights of at most this many datagrams are sent twice when retransmitted.
const REDUNDANT_FLIGHT_DATAGRAMS: usize = 2;

const MAX_DEFERRED_RECORDS: usize = 8;
const MAX_DEFERRED_RECORD_LEN: usize = 2048;

/// A DTLS 1.2 connection for DTLS-SRTP. Drive it as the crate documentation shows.
pub struct Connection {
    config: Arc<Config>,
    role: Role,
    peer_auth: PeerAuth,
    peer_address: Vec<u8>,
    rng: SystemRandom,
    state: State,
    created: Instant,
    deadline: Instant,
    hs: Option<Box<Handshake>>,
    master_secret: Option<[u8; 48]>,
    writer: RecordWriter,
    read_keys: bool,
    replay: ReplayWindow,
    deferred: Vec<(u16, u64, ContentType, Vec<u8>)>,
    reassembler: Reassembler,
    next_send_seq: u16,
    /// message_seq of the first message of the peer flight we are receiving.
    peer_flight_start: u16,
    /// message_seq range of the peer's previous complete flight: seeing it again means
    /// our answer to it was lost.
    peer_last_flight: Option<(u16, u16)>,
    flight: Option<Flight>,
    last_transmission: Option<Instant>,
    retransmit_at: Option<Instant>,
    retain_until: Option<Instant>,
    /// When our current flight was first sent, while no retransmission muddles the sample.
    rtt_probe: Option<Instant>,
    timer: crate::timer::RetransmitTimer,
    last_renegotiation_refusal: Option<Instant>,
    /// New handshake bytes arrived since our last timeout.
    peer_progress: bool,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    stats: ConnectionStats,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Creates a connection. A client queues its ClientHello at once; a server waits.
    ///
    /// `peer_address` only feeds the HelloVerifyRequest cookie (any stable encoding of the
    /// peer's transport address will do); `now` starts the handshake deadline.
    pub fn new(
        config: Arc<Config>,
        role: Role,
        peer_auth: PeerAuth,
        peer_address: &[u8],
        now: Instant,
    ) -> Self {
        let timer = crate::timer::RetransmitTimer::new(
            config.recovery.adaptive_timer,
            config.initial_rto,
            config.max_rto,
        );
        let mut conn = Self {
            reassembler: Reassembler::new(config.max_handshake_buffer),
            deadline: now + config.handshake_timeout,
            config,
            role,
            peer_auth,
            peer_address: peer_address.to_vec(),
            rng: SystemRandom::new(),
            state: match role {
                Role::Client => State::ClientAwaitServerHello,
                Role::Server => State::ServerAwaitClientHello,
            },
            created: now,
            hs: Some(Box::new(Handshake {
                client_random: [0; 32],
                server_random: [0; 32],
                suite: None,
                srtp_profile: None,
                key_share: None,
                own_public: Vec::new(),
                pre_master_secret: None,
                peer_key: None,
                peer_fingerprint: None,
                certificate_requested: false,
                transcript: Vec::new(),
                hello_verify_seen: false,
            })),
            master_secret: None,
            writer: RecordWriter::default(),
            read_keys: false,
            replay: ReplayWindow::default(),
            deferred: Vec::new(),
            next_send_seq: 0,
            peer_flight_start: 0,
            peer_last_flight: None,
            flight: None,
            last_transmission: None,
            retransmit_at: None,
            retain_until: None,
            rtt_probe: None,
            timer,
            last_renegotiation_refusal: None,
            peer_progress: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: ConnectionStats::default(),
        };
        if role == Role::Client {
            if let Err(e) = conn.start_client(now, &[]) {
                conn.fail(e);
            }
        }
        conn
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// True once the handshake completed (and until close or failure).
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// True after a failure or a close: the connection will do nothing more.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Failed | State::Closed)
    }

    /// Counters.
    pub fn stats(&self) -> ConnectionStats {
        self.stats
    }

    /// The smoothed round-trip time measured during the handshake.
    pub fn rtt(&self) -> Option<Duration> {
        self.timer.srtt()
    }

    /// Feeds one received datagram (all its records).
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if self.is_finished() {
            return;
        }
        self.stats.datagrams_received += 1;
        let mut records = Vec::new();
        if record::parse_records(datagram, &mut records).is_err() {
            self.stats.malformed_records += 1;
        }
        for rec in records {
            // Messages are processed after every record, so that keys derived from a
            // ClientKeyExchange are ready for the Finished in the next record.
            if let Err(e) = self
                .handle_record(now, rec)
                .and_then(|()| self.process_messages(now))
            {
                self.fail(e);
                return;
            }
            if self.is_finished() {
                return;
            }
        }
    }

    /// Lets time pass: retransmits, expires the deadline and the retained final flight.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_finished() {
            return;
        }
        if self.state != State::Connected && now >= self.deadline {
            let waiting_for = self.state.waiting_for();
            self.fail_silently(Error::HandshakeTimeout { waiting_for });
            return;
        }
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
            if let Err(e) = self.transmit_flight(now, true) {
                self.fail(e);
            }
        }
    }

    /// The next datagram to send, if any. Drain until `None` after every call.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let d = self.transmits.pop_front()?;
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += d.len() as u64;
        Some(d)
    }

    /// When [`Connection::handle_timeout`] must next be called, whether or not data arrives.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_finished() {
            return None;
        }
        let deadline = (self.state != State::Connected).then_some(self.deadline);
        [deadline, self.retransmit_at, self.retain_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Sends close_notify and ends the connection.
    pub fn close(&mut self) {
        if self.is_finished() {
            return;
        }
        self.send_alert(AlertDescription::CloseNotify, false);
        self.state = State::Closed;
        self.flight = None;
        self.retransmit_at = None;
        self.retain_until = None;
    }

    // ---- records ----

    fn handle_record(&mut self, now: Instant, rec: RawRecord<'_>) -> Result<(), Error> {
        match rec.epoch {
            0 => self.handle_plaintext(now, rec.content_type, rec.body),
            1 => {
                if !self.read_keys {
                    // Finished can overtake the ClientKeyExchange it depends on; keep a
                    // few such records until the keys exist.
                    // Newest wins when full: junk cannot lock a real record out.
                    self.stats.wrong_epoch_records += 1;
                    if rec.body.len() <= MAX_DEFERRED_RECORD_LEN
                        && !matches!(self.state, State::Connected)
                    {
                        if self.deferred.len() == MAX_DEFERRED_RECORDS {
                            self.deferred.remove(0);
                        }
                        self.deferred.push((
                            rec.epoch,
                            rec.sequence,
                            rec.content_type,
                            rec.body.to_vec(),
                        ));
                    }
                    return Ok(());
                }
                self.handle_protected(now, rec.epoch, rec.sequence, rec.content_type, rec.body)
            }
            _ => {
                self.stats.wrong_epoch_records += 1;
                Ok(())
            }
        }
    }

    fn handle_protected(
        &mut self,
        now: Instant,
        epoch: u16,
        sequence: u64,
        content_type: ContentType,
        body: &[u8],
    ) -> Result<(), Error> {
        if !self.replay.check(sequence) {
            self.stats.replayed_records += 1;
            return Ok(());
        }
        let Some(keys) = self.writer.keys.as_ref() else {
            self.stats.wrong_epoch_records += 1;
            return Ok(());
        };
        let Some(plain) = keys.open(epoch, sequence, content_type.to_u8(), body) else {
            self.stats.bad_mac_records += 1;
            return Ok(());
        };
        self.replay.mark(sequence);
        match content_type {
            ContentType::Handshake => self.handle_fragments(now, epoch, &plain),
            ContentType::Alert => self.handle_alert(&plain, true),
            // No data channels here: application data is not ours to deliver.
            ContentType::ApplicationData | ContentType::ChangeCipherSpec => Ok(()),
        }
    }

    fn handle_plaintext(
        &mut self,
        now: Instant,
        content_type: ContentType,
        body: &[u8],
    ) -> Result<(), Error> {
        match content_type {
            ContentType::Handshake => self.handle_fragments(now, 0, body),
            // An unauthenticated alert can only end a handshake in progress.
            ContentType::Alert if self.state != State::Connected => self.handle_alert(body, false),
            _ => Ok(()),
        }
    }

    fn handle_alert(&mut self, body: &[u8], authenticated: bool) -> Result<(), Error> {
        let mut r = Reader::new(body);
        let (Some(level), Some(desc)) = (r.u8(), r.u8()) else {
            self.stats.malformed_records += 1;
            return Ok(());
        };
        let desc = AlertDescription::from_u8(desc);
        if desc == AlertDescription::CloseNotify && authenticated {
            self.state = State::Closed;
            self.flight = None;
            self.retransmit_at = None;
            self.retain_until = None;
            self.events.push_back(Event::Closed);
            return Ok(());
        }
        if level == 2 {
            self.fail_silently(Error::PeerAlert(desc));
        }
        Ok(())
    }

    fn handle_fragments(&mut self, now: Instant, epoch: u16, body: &[u8]) -> Result<(), Error> {
        let mut r = Reader::new(body);
        while !r.is_empty() {
            let Some(header) = FragmentHeader::parse(&mut r) else {
                self.stats.malformed_records += 1;
                return Ok(());
            };
            let Some(fragment) = r.take(header.fragment_length as usize) else {
                return Err(Error::Decode {
                    what: "handshake fragment",
                });
            };
            if self.state == State::Connected && header.message_seq >= self.reassembler.next_seq() {
                self.refuse_renegotiation(now, epoch, &header);
                continue;
            }
            match self.reassembler.insert(epoch, &header, fragment)? {
                FragmentOutcome::Accepted { new_bytes } => self.peer_progress |= new_bytes,
                FragmentOutcome::Retransmission { message_seq } => {
                    self.stats.retransmitted_fragments += 1;
                    self.on_peer_retransmission(now, message_seq)?;
                }
                FragmentOutcome::Dropped(_) => self.stats.dropped_fragments += 1,
            }
        }
        Ok(())
    }

    fn refuse_renegotiation(&mut self, now: Instant, epoch: u16, header: &FragmentHeader) {
        let is_hello = header.msg_type == HandshakeType::ClientHello.to_u8()
            || header.msg_type == HandshakeType::HelloRequest.to_u8();
        if epoch == 0 || !is_hello {
            self.stats.dropped_fragments += 1;
            return;
        }
        // RFC 5746: refuse with a warning and keep the media flowing.
        let spacing = self.timer.repeat_spacing();
        if self
            .last_renegotiation_refusal
            .is_none_or(|t| now.duration_since(t) >= spacing)
        {
            self.last_renegotiation_refusal = Some(now);
            self.send_alert(AlertDescription::NoRenegotiation, true);
        }
    }

    /// The peer sent a message we already processed. If it belongs to its previous flight,
    /// our answer was lost: re-send it now rather than waiting for our timer.
    fn on_peer_retransmission(&mut self, now: Instant, message_seq: u16) -> Result<(), Error> {
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

    // ---- messages ----

    fn process_messages(&mut self, now: Instant) -> Result<(), Error> {
        loop {
            while let Some(msg) = self.reassembler.pop() {
                if let Some(sent) = self.rtt_probe.take() {
                    self.timer
                        .on_rtt_sample(now.saturating_duration_since(sent));
                }
                self.timer.reset_backoff();
                self.process_message(now, msg)?;
                if self.is_finished() || self.state == State::Connected {
                    break;
                }
            }
            if self.read_keys && !self.deferred.is_empty() && !self.is_finished() {
                for (epoch, seq, ct, body) in std::mem::take(&mut self.deferred) {
                    self.handle_protected(now, epoch, seq, ct, &body)?;
                }
                continue;
            }
            return Ok(());
        }
    }

    fn process_message(&mut self, now: Instant, msg: CompleteMessage) -> Result<(), Error> {
        let ty = HandshakeType::from_u8(msg.msg_type).ok_or(Error::UnexpectedMessage {
            got: "unknown handshake type",
            expected: self.state.waiting_for(),
        })?;
        let expect_epoch = u16::from(ty == HandshakeType::Finished);
        if msg.epoch != expect_epoch {
            return Err(Error::UnexpectedMessage {
                got: ty.name(),
                expected: "it in its own epoch",
            });
        }
        let unexpected = |state: State| Error::UnexpectedMessage {
            got: ty.name(),
            expected: state.waiting_for(),
        };
        match (self.state, ty) {
            (State::ClientAwaitServerHello, HandshakeType::HelloVerifyRequest) => {
                self.client_on_hello_verify(now, &msg)
            }
            (State::ClientAwaitServerHello, HandshakeType::ServerHello) => {
                self.client_on_server_hello(&msg)
            }
            (State::ClientAwaitCertificate, HandshakeType::Certificate) => {
                self.on_peer_certificate(&msg)?;
                self.state = State::ClientAwaitKeyExchange;
                Ok(())
            }
            (State::ClientAwaitKeyExchange, HandshakeType::ServerKeyExchange) => {
                self.client_on_server_key_exchange(&msg)
            }
            (State::ClientAwaitCertificateRequestOrDone, HandshakeType::CertificateRequest) => {
                let schemes = messages::parse_certificate_request(&msg.body)?;
                if !schemes.contains(&ECDSA_SECP256R1_SHA256) {
                    return Err(Error::NoCommonParameters {
                        what: "client certificate signature scheme",
                    });
                }
                let hs = self.hs_mut()?;
                hs.certificate_requested = true;
                add_to_transcript(hs, &msg);
                self.state = State::ClientAwaitServerHelloDone;
                Ok(())
            }
            (
                State::ClientAwaitCertificateRequestOrDone | State::ClientAwaitServerHelloDone,
                HandshakeType::ServerHelloDone,
            ) => {
                if !msg.body.is_empty() {
                    return Err(Error::Decode {
                        what: "ServerHelloDone",
                    });
                }
                add_to_transcript(self.hs_mut()?, &msg);
                self.client_send_key_exchange(now, msg.message_seq)
            }
            (State::ClientAwaitFinished, HandshakeType::Finished) => {
                self.verify_peer_finished(&msg)?;
                self.complete(now, msg.message_seq)
            }
            (State::ServerAwaitClientHello, HandshakeType::ClientHello) => {
                self.server_on_client_hello(now, &msg)
            }
            (State::ServerAwaitCertificate, HandshakeType::Certificate) => {
                self.on_peer_certificate(&msg)?;
                self.state = State::ServerAwaitClientKeyExchange;
                Ok(())
            }
            (State::ServerAwaitCertificate, HandshakeType::ClientKeyExchange) => {
                Err(Error::NoPeerCertificate)
            }
            (State::ServerAwaitClientKeyExchange, HandshakeType::ClientKeyExchange) => {
                self.server_on_client_key_exchange(&msg)
            }
            (State::ServerAwaitCertificateVerify, HandshakeType::CertificateVerify) => {
                self.server_on_certificate_verify(&msg)
            }
            (State::ServerAwaitFinished, HandshakeType::Finished) => {
                self.verify_peer_finished(&msg)?;
                self.server_send_finished(now, msg.message_seq)?;
                self.complete(now, msg.message_seq)
            }
            (state, _) => Err(unexpected(state)),
        }
    }

    fn hs_mut(&mut self) -> Result<&mut Handshake, Error> {
        self.hs
            .as_deref_mut()
            .ok_or(Error::Crypto("handshake state gone"))
    }

    fn random(&self) -> Result<[u8; 32], Error> {
        let mut r = [0u8; 32];
        self.rng.fill(&mut r).map_err(|_| Error::Crypto("rng"))?;
        Ok(r)
    }

    // ---- client ----

    fn start_client(&mut self, now: Instant, cookie: &[u8]) -> Result<(), Error> {
        let random = if cookie.is_empty() {
            self.random()?
        } else {
            self.hs_mut()?.client_random
        };
        let suites: Vec<u16> = self
            .config
            .cipher_suites
            .iter()
            .map(|s| s.to_u16())
            .chain(std::iter::once(messages::TLS_EMPTY_RENEGOTIATION_INFO_SCSV))
            .collect();
        let groups: Vec<u16> = self.config.groups.iter().map(|g| g.to_u16()).collect();
        let profiles: Vec<u16> = self
            .config
            .srtp_profiles
            .iter()
            .map(|p| p.to_u16())
            .collect();
        let body = ClientHello::encode(&random, cookie, &suites, &groups, &profiles);
        let seq = self.next_send_seq;
        self.next_send_seq += 1;
        let hs = self.hs_mut()?;
        hs.client_random = random;
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

    fn client_on_hello_verify(&mut self, now: Instant, msg: &CompleteMessage) -> Result<(), Error> {
        let cookie = messages::parse_hello_verify_request(&msg.body)?;
        let hs = self.hs_mut()?;
        if hs.hello_verify_seen || cookie.is_empty() || cookie.len() > 255 {
            return Err(Error::BadCookieExchange);
        }
        hs.hello_verify_seen = true;
        self.mark_peer_flight(msg.message_seq);
        self.start_client(now, &cookie)
    }

    fn client_on_server_hello(&mut self, msg: &CompleteMessage) -> Result<(), Error> {
        let sh = ServerHello::parse(&msg.body)?;
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

    fn on_peer_certificate(&mut self, msg: &CompleteMessage) -> Result<(), Error> {
        let leaf = messages::parse_certificate(&msg.body)?.ok_or(Error::NoPeerCertificate)?;
        let fingerprint = Fingerprint::of_der(&leaf);
        if let PeerAuth::Fingerprint(expected) = self.peer_auth {
            if expected != fingerprint {
                return Err(Error::FingerprintMismatch);
            }
        }
        let key = peer_public_key(&leaf)?;
        let hs = self.hs_mut()?;
        hs.peer_key = Some(key);
        hs.peer_fingerprint = Some(fingerprint);
        add_to_transcript(hs, msg);
        Ok(())
    }

    fn client_on_server_key_exchange(&mut self, msg: &CompleteMessage) -> Result<(), Error> {
        let ske = messages::ServerKeyExchange::parse(&msg.body)?;
        let group = NamedGroup::from_u16(ske.group)
            .filter(|g| self.config.groups.contains(g))
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
        add_to_transcript(hs, msg);
        self.state = State::ClientAwaitCertificateRequestOrDone;
        Ok(())
    }

    fn client_send_key_exchange(&mut self, now: Instant, peer_seq: u16) -> Result<(), Error> {
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

    fn verify_peer_finished(&mut self, msg: &CompleteMessage) -> Result<(), Error> {
        let master = self
            .master_secret
            .ok_or(Error::Crypto("no master secret"))?;
        let peer_is_client = self.role == Role::Server;
        let hs = self.hs_mut()?;
        let suite = hs.suite.ok_or(Error::Crypto("no suite"))?;
        let expected =
            crypto::verify_data(suite.prf_hash(), &master, peer_is_client, &hs.transcript);
        let equal = msg.body.len() == expected.len()
            && msg
                .body
                .iter()
                .zip(expected.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !equal {
            return Err(Error::BadFinished);
        }
        add_to_transcript(hs, msg);
        Ok(())
    }

    // ---- server ----

    fn cookie(&self, ch: &ClientHello) -> Vec<u8> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.config.cookie_secret);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(&self.peer_address);
        ctx.update(&ch.random);
        ctx.update(&ch.session_id);
        ctx.sign().as_ref()[..20].to_vec()
    }

    fn server_on_client_hello(&mut self, now: Instant, msg: &CompleteMessage) -> Result<(), Error> {
        let ch = ClientHello::parse(&msg.body)?;
        // DTLS versions count down: 0xfefd is 1.2, 0xfeff is 1.0.
        if ch.client_version > record::DTLS_1_2 {
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
            .find(|s| ch.cipher_suites.contains(&s.to_u16()))
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
                .find(|g| ch.extensions.supported_groups.contains(&g.to_u16()))
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

        let server_random = self.random()?;
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

    fn server_on_client_key_exchange(&mut self, msg: &CompleteMessage) -> Result<(), Error> {
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

    fn server_on_certificate_verify(&mut self, msg: &CompleteMessage) -> Result<(), Error> {
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

    fn server_send_finished(&mut self, now: Instant, peer_seq: u16) -> Result<(), Error> {
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

    // ---- completion and failure ----

    fn complete(&mut self, now: Instant, _peer_seq: u16) -> Result<(), Error> {
        let master = self
            .master_secret
            .take()
            .ok_or(Error::Crypto("no master secret"))?;
        let hs = self
            .hs
            .take()
            .ok_or(Error::Crypto("handshake state gone"))?;
        let suite = hs.suite.ok_or(Error::Crypto("no suite"))?;
        let profile = hs.srtp_profile.ok_or(Error::MissingSrtp)?;
        let peer_fingerprint = hs.peer_fingerprint.ok_or(Error::NoPeerCertificate)?;
        let mut exported = vec![0u8; SrtpKeyingMaterial::export_len(profile)];
        crypto::export_keying_material(
            suite.prf_hash(),
            &master,
            b"EXTRACTOR-dtls_srtp",
            &hs.client_random,
            &hs.server_random,
            &mut exported,
        );
        let srtp = SrtpKeyingMaterial::from_export(profile, exported, self.role == Role::Client);
        self.state = State::Connected;
        self.reassembler.clear();
        self.deferred = Vec::new();
        self.retransmit_at = None;
        self.rtt_probe = None;
        match self.role {
            Role::Client => {
                self.flight = None;
                self.peer_last_flight = None;
            }
            Role::Server => {
                if self.config.recovery.retain_final_flight {
                    self.retain_until = Some(now + self.config.final_flight_retention);
                } else {
                    self.flight = None;
                    self.peer_last_flight = None;
                }
            }
        }
        self.events.push_back(Event::Connected(Box::new(Connected {
            srtp,
            cipher_suite: suite,
            peer_fingerprint,
            handshake_duration: now.saturating_duration_since(self.created),
        })));
        Ok(())
    }

    /// Fails with an alert to the peer.
    fn fail(&mut self, error: Error) {
        if self.is_finished() {
            return;
        }
        if let Some(alert) = error.alert() {
            self.send_alert(alert, false);
        }
        self.fail_silently(error);
    }

    fn fail_silently(&mut self, error: Error) {
        self.state = State::Failed;
        self.flight = None;
        self.hs = None;
        self.master_secret = None;
        self.retransmit_at = None;
        self.retain_until = None;
        self.reassembler.clear();
        self.deferred = Vec::new();
        self.events.push_back(Event::Failed(error));
    }

    fn send_alert(&mut self, alert: AlertDescription, warning: bool) {
        let level = if warning { 1 } else { 2 };
        let body = [level, alert.to_u8()];
        // Once we have sent our CCS the peer reads epoch 1 from us.
        let epoch = u16::from(self.writer.keys.is_some() && self.sent_change_cipher_spec());
        let mut datagram = Vec::with_capacity(64);
        if self
            .writer
            .write_record(
                &mut datagram,
                ContentType::Alert,
                epoch,
                record::DTLS_1_2,
                &body,
            )
            .is_ok()
        {
            self.transmits.push_back(datagram);
        }
    }

    fn sent_change_cipher_spec(&self) -> bool {
        match self.role {
            Role::Client => matches!(self.state, State::ClientAwaitFinished | State::Connected),
            Role::Server => self.state == State::Connected,
        }
    }

    // ---- flights ----

    /// The peer's flight that ended with `last_seq` is complete: remember its range so a
    /// repeat of it can be recognised, and start the next one.
    fn mark_peer_flight(&mut self, last_seq: u16) {
        self.peer_last_flight = Some((self.peer_flight_start, last_seq));
        self.peer_flight_start = last_seq.wrapping_add(1);
    }

    fn send_flight(&mut self, now: Instant, flight: Flight) -> Result<(), Error> {
        self.flight = Some(flight);
        self.timer.reset_backoff();
        self.transmit_flight(now, false)?;
        self.rtt_probe = self.retransmit_at.map(|_| now);
        Ok(())
    }

    /// Sends the current flight. A retransmission of a small flight goes out twice: the
    /// loss that made it necessary is likely to strike again, and one extra copy of a
    /// datagram or two is far cheaper than another timeout (QUIC's PTO probes do the same).
    fn transmit_flight(&mut self, now: Instant, retransmission: bool) -> Result<(), Error> {
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

fn add_to_transcript(hs: &mut Handshake, msg: &CompleteMessage) {
    if let Some(ty) = HandshakeType::from_u8(msg.msg_type) {
        messages::write_full_message(&mut hs.transcript, ty, msg.message_seq, &msg.body);
    }
}

#[cfg(test)]
mod retransmission_count_tests {
    //! Exact retransmission counts per reason, on virtual time with chosen losses. The
    //! link is 35 ms each way; P-256 certificates and 1200-byte datagrams keep every
    //! flight in one datagram, so the timeline of each test can be worked out by hand.

    use super::*;
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
        let client = Connection::new(
            Arc::new(Config::new(client_cert.clone())),
            Role::Client,
            PeerAuth::Fingerprint(server_cert.fingerprint()),
            b"server",
            start,
        );
        let mut server_config = Config::new(server_cert);
        server_config.initial_rto = server_rto;
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
