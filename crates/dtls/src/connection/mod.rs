//! One DTLS connection, client or server: the sans-IO state machine (DTLS 1.2 here; once
//! DTLS 1.3 is negotiated, `crate::tls13::conn` takes over behind the same API).
//!
//! This module holds what every connection has (the public API, the record layer's
//! dispatch, message ordering, completion and failure); `client` and `server` hold each
//! role's handshake steps, `retransmit` the flight and re-send logic both share.

mod client;
mod retransmit;
mod server;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::cert::{peer_public_key, Fingerprint};
use crate::codec::Reader;
use crate::config::{Config, DtlsVersion};
use crate::crypto::{
    self, CipherSuite, KeyShare, NamedGroup, PeerPublicKey, RecordKeys, ECDSA_SECP256R1_SHA256,
};
use crate::flight::{packetize, Flight, FlightItem, RecordWriter};
use crate::messages::{self, ClientHello, FragmentHeader, HandshakeType, ServerHello};
use crate::reassembly::{CompleteMessage, FragmentOutcome, Reassembler};
use crate::record::{self, ContentType, RawRecord, ReplayWindow};
use crate::srtp::{SrtpKeyingMaterial, SrtpProfile};
use crate::tls13::conn::{Conn13, Handover};
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
    /// The negotiated protocol version.
    pub version: DtlsVersion,
    /// The key exchange group the shared secret came from: whether a connection is
    /// protected against later quantum decryption (the hybrid) shows here and in metrics.
    pub group: NamedGroup,
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
    group: Option<NamedGroup>,
    own_public: Vec<u8>,
    pre_master_secret: Option<Vec<u8>>,
    peer_key: Option<PeerPublicKey>,
    peer_fingerprint: Option<Fingerprint>,
    certificate_requested: bool,
    /// Every handshake message so far, in unfragmented form (transcript for Finished,
    /// CertificateVerify and the extended master secret).
    transcript: Vec<u8>,
    hello_verify_seen: bool,
    /// A client offering 1.3: its key shares and what its ClientHello offered, handed to
    /// the 1.3 engine if the server picks 1.3.
    shares13: Vec<(NamedGroup, KeyShare)>,
    hello13: Option<crate::tls13::conn::ClientHelloParts>,
    client_hello_body: Vec<u8>,
}

/// Epoch-1 records that arrived before we could read epoch 1 (reordering).
const MAX_DEFERRED_RECORDS: usize = 8;
const MAX_DEFERRED_RECORD_LEN: usize = 2048;

/// A DTLS 1.3 or 1.2 connection for DTLS-SRTP. Drive it as the crate documentation shows.
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
    /// Once DTLS 1.3 is negotiated, the engine that owns the connection.
    pub(crate) v13: Option<Box<Conn13>>,
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
                group: None,
                own_public: Vec::new(),
                pre_master_secret: None,
                peer_key: None,
                peer_fingerprint: None,
                certificate_requested: false,
                transcript: Vec::new(),
                hello_verify_seen: false,
                shares13: Vec::new(),
                hello13: None,
                client_hello_body: Vec::new(),
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
            v13: None,
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
        match &self.v13 {
            Some(v13) => v13.is_connected(),
            None => self.state == State::Connected,
        }
    }

    /// The negotiated version once it is known (DTLS 1.3 from its hello on).
    pub fn version(&self) -> Option<DtlsVersion> {
        if self.v13.is_some() {
            Some(DtlsVersion::Dtls13)
        } else if matches!(
            self.state,
            State::ClientAwaitServerHello | State::ServerAwaitClientHello
        ) {
            None
        } else {
            Some(DtlsVersion::Dtls12)
        }
    }

    /// True after a failure or a close: the connection will do nothing more.
    pub fn is_finished(&self) -> bool {
        match &self.v13 {
            Some(v13) => v13.is_finished(),
            None => matches!(self.state, State::Failed | State::Closed),
        }
    }

    /// Counters.
    pub fn stats(&self) -> ConnectionStats {
        match &self.v13 {
            Some(v13) => v13.stats(),
            None => self.stats,
        }
    }

    /// The smoothed round-trip time measured during the handshake.
    pub fn rtt(&self) -> Option<Duration> {
        match &self.v13 {
            Some(v13) => v13.rtt(),
            None => self.timer.srtt(),
        }
    }

    /// Feeds one received datagram (all its records).
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if let Some(v13) = self.v13.as_mut() {
            v13.handle_datagram(now, datagram, false);
            return;
        }
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
            if let Some(v13) = self.v13.as_mut() {
                // The version was decided by this record: the 1.3 engine reads the rest
                // of the datagram (its protected records), skipping what we read.
                v13.handle_datagram(now, datagram, true);
                return;
            }
            if self.is_finished() {
                return;
            }
        }
    }

    /// Lets time pass: retransmits, expires the deadline and the retained final flight.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(v13) = self.v13.as_mut() {
            v13.handle_timeout(now);
            return;
        }
        if self.is_finished() {
            return;
        }
        if self.state != State::Connected && now >= self.deadline {
            let waiting_for = self.state.waiting_for();
            self.fail_silently(Error::HandshakeTimeout { waiting_for });
            return;
        }
        if let Err(e) = self.on_flight_timers(now) {
            self.fail(e);
        }
    }

    /// The next datagram to send, if any. Drain until `None` after every call.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if let Some(v13) = self.v13.as_mut() {
            return v13.poll_transmit();
        }
        let d = self.transmits.pop_front()?;
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += d.len() as u64;
        Some(d)
    }

    /// When [`Connection::handle_timeout`] must next be called, whether or not data arrives.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(v13) = &self.v13 {
            return v13.poll_timeout();
        }
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
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        self.v13.as_mut()?.poll_event()
    }

    /// Sends close_notify and ends the connection.
    pub fn close(&mut self) {
        if let Some(v13) = self.v13.as_mut() {
            v13.close();
            return;
        }
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
                self.client_on_server_hello(now, &msg)
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

    /// The 1.3 engine owns the connection from now on; the 1.2 handshake state goes.
    fn adopt_13(&mut self, v13: Conn13) {
        self.v13 = Some(Box::new(v13));
        self.hs = None;
        self.flight = None;
        self.retransmit_at = None;
    }

    /// Everything the 1.3 engine takes over when 1.3 is negotiated. The 1.2 handshake
    /// state is freed: from here on this engine only forwards.
    fn handover(&mut self) -> Handover {
        self.deferred = Vec::new();
        self.transmits = VecDeque::new();
        Handover {
            config: self.config.clone(),
            role: self.role,
            peer_auth: self.peer_auth,
            created: self.created,
            deadline: self.deadline,
            reassembler: std::mem::replace(
                &mut self.reassembler,
                Reassembler::new(self.config.max_handshake_buffer),
            ),
            timer: self.timer.clone(),
            stats: self.stats,
            epoch0_next: self.writer.next_sequence(0),
            next_message_seq: self.next_send_seq,
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
        let group = hs.group.ok_or(Error::Crypto("no group"))?;
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
            version: DtlsVersion::Dtls12,
            group,
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
}

fn add_to_transcript(hs: &mut Handshake, msg: &CompleteMessage) {
    if let Some(ty) = HandshakeType::from_u8(msg.msg_type) {
        messages::write_full_message(&mut hs.transcript, ty, msg.message_seq, &msg.body);
    }
}

#[cfg(test)]
pub(super) mod test_support {
    //! Two connections wired by hand, for the role modules' unit tests.

    use super::*;
    use crate::cert::Certificate;

    /// DTLS 1.2 configurations (the role modules test the 1.2 handshake).
    pub(crate) fn configs() -> (Arc<Config>, Arc<Config>) {
        let config = |cert: Certificate| {
            let mut c = Config::new(Arc::new(cert));
            c.versions = vec![DtlsVersion::Dtls12];
            Arc::new(c)
        };
        (
            config(Certificate::generate().expect("certificate")),
            config(Certificate::generate().expect("certificate")),
        )
    }

    pub(crate) fn new_pair(
        client: Arc<Config>,
        server: Arc<Config>,
        now: Instant,
    ) -> (Connection, Connection) {
        let c = Connection::new(
            client.clone(),
            Role::Client,
            PeerAuth::Fingerprint(server.certificate.fingerprint()),
            b"server",
            now,
        );
        let s = Connection::new(
            server,
            Role::Server,
            PeerAuth::Fingerprint(client.certificate.fingerprint()),
            b"client",
            now,
        );
        (c, s)
    }

    /// Delivers everything `from` has queued to `to`; returns how many datagrams moved.
    pub(crate) fn deliver(from: &mut Connection, to: &mut Connection, now: Instant) -> usize {
        let mut n = 0;
        while let Some(d) = from.poll_transmit() {
            to.handle_datagram(now, &d);
            n += 1;
        }
        n
    }

    /// The handshake message types of every plaintext (epoch 0) record in `datagram`.
    pub(crate) fn plaintext_handshake_types(datagram: &[u8]) -> Vec<u8> {
        let mut records = Vec::new();
        let _ = record::parse_records(datagram, &mut records);
        records
            .iter()
            .filter(|r| r.epoch == 0 && r.content_type == ContentType::Handshake)
            .filter_map(|r| r.body.first().copied())
            .collect()
    }
}
