//! One DTLS 1.3 handshake (RFC 9147), either role, after the version is decided.
//!
//! The DTLS 1.2 engine is always the entry point: it reads the ClientHello (server) or the
//! ServerHello (client), and when 1.3 is chosen it hands over to this engine the message
//! that decided it, its reassembler, timer and counters. From then on this engine owns
//! the connection.
//!
//! Loss recovery is 1.2's (RTT-adaptive timer, re-send on the peer's repeat, fresh record
//! numbers on every transmission) plus ACKs: each record we send is remembered with the
//! bytes of the message it carried, an ACK marks those bytes delivered, and a re-send
//! carries only bytes nobody acknowledged. A receiver ACKs what it holds of a flight that
//! is not complete yet, and the server ACKs the client's final flight (kept readable for
//! `final_flight_retention` so late repeats are ACKed again).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use crate::cert::{peer_public_key, Fingerprint};
use crate::codec::Reader;
use crate::config::{Config, DtlsVersion};
use crate::connection::{Connected, ConnectionStats, Event, PeerAuth, Role};
use crate::crypto::{KeyShare, NamedGroup, PeerPublicKey, ECDSA_SECP256R1_SHA256};
use crate::messages::{ClientHello, FragmentHeader, Offer13, ServerHello, HANDSHAKE_HEADER_LEN};
use crate::reassembly::{CompleteMessage, FragmentOutcome, Reassembler};
use crate::record::ReplayWindow;
use crate::srtp::{SrtpKeyingMaterial, SrtpProfile};
use crate::timer::RetransmitTimer;
use crate::tls13::keys::{self, EpochKeys, Schedule, Suite13};
use crate::tls13::messages as m13;
use crate::tls13::record::{self as rec13, Record13};
use crate::{AlertDescription, Error};

mod client;
mod flight;
mod server;

pub(crate) use client::{client_offer, client_shares};
use flight::{Flight, OutMessage};
pub(crate) use server::{check_cookie, stateless_retry};

/// Handshake message types as TLS 1.3 numbers them.
mod ty {
    pub(crate) const CLIENT_HELLO: u8 = 1;
    pub(crate) const SERVER_HELLO: u8 = 2;
    pub(crate) const CERTIFICATE: u8 = 11;
    pub(crate) const CERTIFICATE_REQUEST: u8 = 13;
    pub(crate) const CERTIFICATE_VERIFY: u8 = 15;
    pub(crate) const FINISHED: u8 = 20;
}

/// Smaller fragments are not started at the end of a datagram (as in 1.2).
const MIN_FRAGMENT: usize = 32;
/// Records we remember having sent, to map ACKs back to message bytes.
const MAX_SENT_RECORDS: usize = 2048;
/// Record numbers of the peer's current flight we remember for our ACKs.
const MAX_ACK_RECORDS: usize = 512;
/// Protected records that arrived before their keys, kept until the keys exist.
const MAX_DEFERRED_RECORDS: usize = 8;
const MAX_DEFERRED_RECORD_LEN: usize = 2048;
/// How long we wait after the first record of an incomplete flight before ACKing it: long
/// enough that a burst of datagrams is acknowledged in one ACK, short against the RTO.
const ACK_DELAY: Duration = Duration::from_millis(20);
/// After an ACK that leaves gaps, the missing records are re-sent this much later, so that
/// the other ACK datagrams of the same burst are read first and nothing they acknowledge
/// is sent again.
const ACK_RESEND_DELAY: Duration = Duration::from_millis(2);
/// Flights of at most this many datagrams are sent twice when retransmitted (as in 1.2).
const REDUNDANT_FLIGHT_DATAGRAMS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    ServerAwaitSecondClientHello,
    ServerAwaitCertificate,
    ServerAwaitCertificateVerify,
    ServerAwaitFinished,
    ClientAwaitServerHello,
    ClientAwaitEncryptedExtensions,
    ClientAwaitCertificateRequest,
    ClientAwaitCertificate,
    ClientAwaitCertificateVerify,
    ClientAwaitFinished,
    Connected,
    Failed,
    Closed,
}

impl State {
    fn waiting_for(self) -> &'static str {
        match self {
            Self::ServerAwaitSecondClientHello => "ClientHello after HelloRetryRequest (1.3)",
            Self::ServerAwaitCertificate
            | Self::ServerAwaitCertificateVerify
            | Self::ServerAwaitFinished => "client Certificate..Finished (1.3)",
            Self::ClientAwaitServerHello => "ServerHello (1.3)",
            Self::ClientAwaitEncryptedExtensions
            | Self::ClientAwaitCertificateRequest
            | Self::ClientAwaitCertificate
            | Self::ClientAwaitCertificateVerify
            | Self::ClientAwaitFinished => "server EncryptedExtensions..Finished (1.3)",
            Self::Connected => "nothing",
            Self::Failed => "nothing (failed)",
            Self::Closed => "nothing (closed)",
        }
    }
}

/// Secrets and choices of the handshake in progress; dropped on completion.
struct Handshake {
    suite: Suite13,
    /// The group of the shared secret, once ServerHello is sent or read.
    group: Option<NamedGroup>,
    /// Every handshake message so far in TLS form (type, length, body).
    transcript: Vec<u8>,
    schedule: Option<Schedule>,
    srtp_profile: Option<SrtpProfile>,
    peer_key: Option<PeerPublicKey>,
    peer_fingerprint: Option<Fingerprint>,
    /// Client: our shares by group; the ClientHello sent (to rebuild after a retry).
    own_shares: Vec<(NamedGroup, KeyShare)>,
    client_hello_offer: Option<ClientHelloParts>,
    hello_retried: bool,
    /// Client: the server asked for our certificate, with this context.
    certificate_request: Option<Vec<u8>>,
    /// Server: the ClientHello's session id, echoed.
    session_id: Vec<u8>,
    application: Option<keys::ApplicationSecrets>,
}

/// What a client needs to send its ClientHello again after a HelloRetryRequest.
#[derive(Debug, Clone)]
pub(crate) struct ClientHelloParts {
    pub(crate) random: [u8; 32],
    pub(crate) suites: Vec<u16>,
    pub(crate) groups: Vec<u16>,
    pub(crate) profiles: Vec<u16>,
    pub(crate) versions: Vec<u16>,
}

/// What the 1.2 engine hands over at the version decision.
pub(crate) struct Handover {
    pub(crate) config: Arc<Config>,
    pub(crate) role: Role,
    pub(crate) peer_auth: PeerAuth,
    pub(crate) created: Instant,
    pub(crate) deadline: Instant,
    pub(crate) reassembler: Reassembler,
    pub(crate) timer: RetransmitTimer,
    pub(crate) stats: ConnectionStats,
    /// Record sequence numbers already used in epoch 0.
    pub(crate) epoch0_next: u64,
    /// Our next handshake message_seq.
    pub(crate) next_message_seq: u16,
}

/// The DTLS 1.3 engine of one connection.
pub(crate) struct Conn13 {
    config: Arc<Config>,
    role: Role,
    peer_auth: PeerAuth,
    rng: SystemRandom,
    state: State,
    created: Instant,
    deadline: Instant,
    hs: Option<Box<Handshake>>,
    // Keys per epoch: 2 (handshake) and 3 (application).
    hs_read: Option<EpochKeys>,
    hs_write: Option<EpochKeys>,
    app_read: Option<EpochKeys>,
    app_write: Option<EpochKeys>,
    next_record: [u64; 4],
    replay: [ReplayWindow; 4],
    deferred: Vec<(Vec<u8>, usize, Vec<u8>)>,
    reassembler: Reassembler,
    next_message_seq: u16,
    /// The message_seq range of the peer's previous complete flight.
    peer_last_flight: Option<(u16, u16)>,
    peer_flight_start: u16,
    flight: Option<Flight>,
    last_transmission: Option<Instant>,
    retransmit_at: Option<Instant>,
    /// A re-send of what a partial ACK showed missing.
    resend_at: Option<Instant>,
    retain_until: Option<Instant>,
    rtt_probe: Option<Instant>,
    timer: RetransmitTimer,
    peer_progress: bool,
    /// Record numbers of the peer's current flight, for our next ACK.
    to_ack: Vec<(u64, u64)>,
    ack_at: Option<Instant>,
    last_ack_sent: Option<Instant>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    stats: ConnectionStats,
}

impl std::fmt::Debug for Conn13 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn13")
            .field("role", &self.role)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Conn13 {
    fn from_handover(h: Handover, state: State, suite: Suite13) -> Self {
        Self {
            config: h.config,
            role: h.role,
            peer_auth: h.peer_auth,
            rng: SystemRandom::new(),
            state,
            created: h.created,
            deadline: h.deadline,
            hs: Some(Box::new(Handshake {
                suite,
                group: None,
                transcript: Vec::new(),
                schedule: None,
                srtp_profile: None,
                peer_key: None,
                peer_fingerprint: None,
                own_shares: Vec::new(),
                client_hello_offer: None,
                hello_retried: false,
                certificate_request: None,
                session_id: Vec::new(),
                application: None,
            })),
            hs_read: None,
            hs_write: None,
            app_read: None,
            app_write: None,
            next_record: [h.epoch0_next, 0, 0, 0],
            replay: Default::default(),
            deferred: Vec::new(),
            reassembler: h.reassembler,
            next_message_seq: h.next_message_seq,
            peer_last_flight: None,
            peer_flight_start: 0,
            flight: None,
            last_transmission: None,
            retransmit_at: None,
            resend_at: None,
            retain_until: None,
            rtt_probe: None,
            timer: h.timer,
            peer_progress: false,
            to_ack: Vec::new(),
            ack_at: None,
            last_ack_sent: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: h.stats,
        }
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    pub(crate) fn is_finished(&self) -> bool {
        matches!(self.state, State::Failed | State::Closed)
    }

    pub(crate) fn stats(&self) -> ConnectionStats {
        self.stats
    }

    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.timer.srtt()
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let d = self.transmits.pop_front()?;
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += d.len() as u64;
        Some(d)
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.is_finished() {
            return None;
        }
        let deadline = (self.state != State::Connected).then_some(self.deadline);
        [
            deadline,
            self.retransmit_at,
            self.resend_at,
            self.retain_until,
            self.ack_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(crate) fn close(&mut self) {
        if self.is_finished() {
            return;
        }
        self.send_alert(AlertDescription::CloseNotify);
        self.state = State::Closed;
        self.flight = None;
        self.retransmit_at = None;
        self.retain_until = None;
        self.ack_at = None;
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
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
            self.retransmit_at = None;
            self.hs_read = None;
            self.hs_write = None;
            self.peer_last_flight = None;
            self.to_ack = Vec::new();
        }
        if self.ack_at.is_some_and(|t| now >= t) {
            self.ack_at = None;
            if let Err(e) = self.send_ack(now) {
                self.fail(e);
                return;
            }
        }
        if self.resend_at.is_some_and(|t| now >= t) {
            self.resend_at = None;
            if self.flight.as_ref().is_some_and(|f| !f.is_acked()) {
                self.stats.repeat_retransmissions += 1;
                self.rtt_probe = None;
                if let Err(e) = self.transmit_flight(now, true) {
                    self.fail(e);
                    return;
                }
            }
        }
        if self.retransmit_at.is_some_and(|t| now >= t) {
            self.stats.timer_retransmissions += 1;
            if !std::mem::take(&mut self.peer_progress) {
                self.timer.backoff();
            }
            self.rtt_probe = None;
            if let Err(e) = self.transmit_flight(now, true) {
                self.fail(e);
            }
        }
    }

    /// Feeds one datagram. `skip_plaintext` is set for the datagram that decided the
    /// version: its epoch-0 records were read by the 1.2 engine already.
    pub(crate) fn handle_datagram(&mut self, now: Instant, datagram: &[u8], skip_plaintext: bool) {
        if self.is_finished() {
            return;
        }
        if !skip_plaintext {
            self.stats.datagrams_received += 1;
        }
        let mut records = Vec::new();
        if !rec13::parse_datagram(datagram, &mut records) {
            self.stats.malformed_records += 1;
        }
        for record in records {
            let result = match record {
                Record13::Plaintext { .. } if skip_plaintext => Ok(()),
                Record13::Plaintext {
                    content_type,
                    epoch,
                    sequence,
                    body,
                } => self.handle_plaintext(now, content_type, epoch, sequence, body),
                Record13::Ciphertext {
                    header,
                    epoch_bits,
                    sequence_len,
                    body,
                } => self.handle_ciphertext(now, header, epoch_bits, sequence_len, body),
            }
            .and_then(|()| self.process_messages(now));
            if let Err(e) = result {
                self.fail(e);
                return;
            }
            if self.is_finished() {
                return;
            }
        }
    }

    fn handle_plaintext(
        &mut self,
        now: Instant,
        content_type: u8,
        epoch: u16,
        sequence: u64,
        body: &[u8],
    ) -> Result<(), Error> {
        if epoch != 0 {
            self.stats.wrong_epoch_records += 1;
            return Ok(());
        }
        match content_type {
            rec13::CONTENT_HANDSHAKE => self.handle_fragments(now, 0, sequence, body),
            rec13::CONTENT_ALERT if self.state != State::Connected => {
                self.handle_alert(body, false)
            }
            _ => Ok(()),
        }
    }

    fn handle_ciphertext(
        &mut self,
        now: Instant,
        header: &[u8],
        epoch_bits: u8,
        sequence_len: usize,
        body: &[u8],
    ) -> Result<(), Error> {
        let epoch: u16 = match epoch_bits {
            2 => 2,
            3 => 3,
            _ => {
                self.stats.wrong_epoch_records += 1;
                return Ok(());
            }
        };
        let keys = if epoch == 2 {
            self.hs_read.as_ref()
        } else {
            self.app_read.as_ref()
        };
        let Some(keys) = keys else {
            self.stats.wrong_epoch_records += 1;
            // Reordering can bring protected records before the ServerHello whose keys
            // they need; keep a few (the newest win, so junk cannot lock real ones out).
            if epoch == 2
                && self.state != State::Connected
                && header.len() + body.len() <= MAX_DEFERRED_RECORD_LEN
            {
                if self.deferred.len() == MAX_DEFERRED_RECORDS {
                    self.deferred.remove(0);
                }
                self.deferred
                    .push((header.to_vec(), sequence_len, body.to_vec()));
            }
            return Ok(());
        };
        let window = &self.replay[usize::from(epoch)];
        let expected = window.highest().map_or(0, |h| h.saturating_add(1));
        let Some(opened) = rec13::open_ciphertext(keys, header, sequence_len, body, expected)
        else {
            self.stats.bad_mac_records += 1;
            return Ok(());
        };
        if !self.replay[usize::from(epoch)].check(opened.sequence) {
            self.stats.replayed_records += 1;
            return Ok(());
        }
        self.replay[usize::from(epoch)].mark(opened.sequence);
        match opened.content_type {
            rec13::CONTENT_HANDSHAKE => {
                self.handle_fragments(now, epoch, opened.sequence, &opened.content)
            }
            rec13::CONTENT_ACK => self.handle_ack(now, &opened.content),
            rec13::CONTENT_ALERT => self.handle_alert(&opened.content, true),
            rec13::CONTENT_APPLICATION_DATA if epoch == 3 => {
                // No data channels here; but the server reading epoch 3 proves it has our
                // Finished, as an ACK would.
                self.on_flight_acked(now);
                Ok(())
            }
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
            self.ack_at = None;
            self.events.push_back(Event::Closed);
            return Ok(());
        }
        if level == 2 || authenticated {
            // TLS 1.3 has no warning alerts besides close_notify and user_canceled.
            if desc != AlertDescription::CloseNotify {
                self.fail_silently(Error::PeerAlert(desc));
            }
        }
        Ok(())
    }

    fn handle_fragments(
        &mut self,
        now: Instant,
        epoch: u16,
        record_seq: u64,
        body: &[u8],
    ) -> Result<(), Error> {
        let mut r = Reader::new(body);
        let mut repeat = None;
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
                // No post-handshake messages are ours to read (no KeyUpdate, no tickets
                // without resumption): drop them, but acknowledge the record below so the
                // peer stops re-sending it.
                self.stats.dropped_fragments += 1;
                continue;
            }
            match self.reassembler.insert(epoch, &header, fragment)? {
                FragmentOutcome::Accepted { new_bytes } => {
                    self.peer_progress |= new_bytes;
                    if header.message_seq >= self.peer_flight_start {
                        self.implicit_ack();
                    }
                }
                FragmentOutcome::Retransmission { message_seq } => {
                    self.stats.retransmitted_fragments += 1;
                    repeat = Some(message_seq);
                }
                FragmentOutcome::Dropped(_) => self.stats.dropped_fragments += 1,
            }
        }
        // Every handshake record we read is acknowledged, including repeats: a repeat
        // means the peer did not get our ACK (or our next flight).
        if epoch != 0 || self.role == Role::Client {
            self.note_for_ack(now, epoch, record_seq);
        }
        if let Some(message_seq) = repeat {
            self.on_peer_repeat(now, message_seq)?;
        }
        Ok(())
    }

    fn process_messages(&mut self, now: Instant) -> Result<(), Error> {
        loop {
            while let Some(msg) = self.reassembler.pop() {
                if let Some(sent) = self.rtt_probe.take() {
                    self.timer
                        .on_rtt_sample(now.saturating_duration_since(sent));
                }
                self.timer.reset_backoff();
                self.process_message(now, msg)?;
                if self.is_finished() {
                    return Ok(());
                }
            }
            if self.hs_read.is_some() && !self.deferred.is_empty() {
                for (header, sequence_len, body) in std::mem::take(&mut self.deferred) {
                    self.handle_ciphertext(now, &header, 2, sequence_len, &body)?;
                }
                continue;
            }
            return Ok(());
        }
    }

    fn process_message(&mut self, now: Instant, msg: CompleteMessage) -> Result<(), Error> {
        let expected_epoch = match msg.msg_type {
            ty::CLIENT_HELLO | ty::SERVER_HELLO => 0,
            _ => 2,
        };
        let unexpected = |state: State| Error::UnexpectedMessage {
            got: "handshake message",
            expected: state.waiting_for(),
        };
        if msg.epoch != expected_epoch {
            return Err(unexpected(self.state));
        }
        match (self.state, msg.msg_type) {
            (State::ServerAwaitSecondClientHello, ty::CLIENT_HELLO) => {
                let ch = ClientHello::parse(&msg.body)?;
                self.server_on_client_hello(now, &msg, &ch)
            }
            (State::ServerAwaitCertificate, ty::CERTIFICATE) => {
                self.on_peer_certificate(&msg)?;
                self.state = State::ServerAwaitCertificateVerify;
                Ok(())
            }
            (State::ServerAwaitCertificateVerify, ty::CERTIFICATE_VERIFY) => {
                self.on_peer_certificate_verify(&msg)?;
                self.state = State::ServerAwaitFinished;
                Ok(())
            }
            (State::ServerAwaitFinished, ty::FINISHED) => self.server_on_finished(now, &msg),
            (State::ClientAwaitServerHello, ty::SERVER_HELLO) => {
                let sh = ServerHello::parse(&msg.body)?;
                self.client_on_server_hello(now, &msg, &sh)
            }
            (State::ClientAwaitEncryptedExtensions, m13::ENCRYPTED_EXTENSIONS) => {
                let offered: Vec<u16> = self
                    .config
                    .srtp_profiles
                    .iter()
                    .map(|p| p.to_u16())
                    .collect();
                let profiles = m13::parse_encrypted_extensions(&msg.body)?;
                let profile = match profiles.as_slice() {
                    [one] if offered.contains(one) => {
                        SrtpProfile::from_u16(*one).ok_or(Error::MissingSrtp)?
                    }
                    _ => return Err(Error::MissingSrtp),
                };
                let hs = self.hs_mut()?;
                hs.srtp_profile = Some(profile);
                m13::write_transcript_message(&mut hs.transcript, msg.msg_type, &msg.body);
                self.state = State::ClientAwaitCertificateRequest;
                Ok(())
            }
            (State::ClientAwaitCertificateRequest, ty::CERTIFICATE_REQUEST) => {
                let (context, schemes) = m13::parse_certificate_request(&msg.body)?;
                if !schemes.contains(&ECDSA_SECP256R1_SHA256) {
                    return Err(Error::NoCommonParameters {
                        what: "client certificate signature scheme",
                    });
                }
                let hs = self.hs_mut()?;
                hs.certificate_request = Some(context);
                m13::write_transcript_message(&mut hs.transcript, msg.msg_type, &msg.body);
                self.state = State::ClientAwaitCertificate;
                Ok(())
            }
            (
                State::ClientAwaitCertificateRequest | State::ClientAwaitCertificate,
                ty::CERTIFICATE,
            ) => {
                self.on_peer_certificate(&msg)?;
                self.state = State::ClientAwaitCertificateVerify;
                Ok(())
            }
            (State::ClientAwaitCertificateVerify, ty::CERTIFICATE_VERIFY) => {
                self.on_peer_certificate_verify(&msg)?;
                self.state = State::ClientAwaitFinished;
                Ok(())
            }
            (State::ClientAwaitFinished, ty::FINISHED) => self.client_on_finished(now, &msg),
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

    fn mark_peer_flight(&mut self, last_seq: u16) {
        self.peer_last_flight = Some((self.peer_flight_start, last_seq));
        self.peer_flight_start = last_seq.wrapping_add(1);
        // The peer's flight is complete: what we send next acknowledges it.
        self.to_ack.clear();
        self.ack_at = None;
    }

    fn on_peer_certificate(&mut self, msg: &CompleteMessage) -> Result<(), Error> {
        let leaf = m13::parse_certificate(&msg.body)?.ok_or(Error::NoPeerCertificate)?;
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
        m13::write_transcript_message(&mut hs.transcript, msg.msg_type, &msg.body);
        Ok(())
    }

    fn on_peer_certificate_verify(&mut self, msg: &CompleteMessage) -> Result<(), Error> {
        let (scheme, signature) = crate::messages::parse_signed(&msg.body, "CertificateVerify")?;
        let peer_is_server = self.role == Role::Client;
        let hs = self.hs_mut()?;
        let input =
            keys::certificate_verify_input(peer_is_server, &hs.suite.hash().digest(&hs.transcript));
        let key = hs.peer_key.as_ref().ok_or(Error::NoPeerCertificate)?;
        if !key.verify(scheme, &input, &signature) {
            return Err(Error::BadSignature {
                what: "CertificateVerify",
            });
        }
        m13::write_transcript_message(&mut hs.transcript, msg.msg_type, &msg.body);
        Ok(())
    }

    fn verify_finished(&mut self, msg: &CompleteMessage) -> Result<(), Error> {
        let peer_is_server = self.role == Role::Client;
        let hs = self.hs_mut()?;
        let schedule = hs.schedule.as_ref().ok_or(Error::Crypto("no schedule"))?;
        let secret = if peer_is_server {
            &schedule.server_handshake
        } else {
            &schedule.client_handshake
        };
        let h = hs.suite.hash();
        let expected = keys::finished_verify_data(h, secret, &h.digest(&hs.transcript))?;
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
        m13::write_transcript_message(&mut hs.transcript, msg.msg_type, &msg.body);
        Ok(())
    }

    /// Our Certificate and CertificateVerify (and the Finished after them), appended to
    /// the transcript and to `items`.
    fn own_certificate_messages(
        &mut self,
        items: &mut Vec<OutMessage>,
        context: &[u8],
        server: bool,
    ) -> Result<(), Error> {
        let certificate = self.config.certificate.clone();
        let mut seq = self.next_message_seq;
        let hs = self.hs_mut()?;
        let body = m13::encode_certificate(context, certificate.der());
        m13::write_transcript_message(&mut hs.transcript, ty::CERTIFICATE, &body);
        items.push(OutMessage::new(ty::CERTIFICATE, seq, 2, body));
        seq += 1;
        let input = keys::certificate_verify_input(server, &hs.suite.hash().digest(&hs.transcript));
        let signature = certificate.sign(&input)?;
        let body = crate::messages::encode_signed(ECDSA_SECP256R1_SHA256, &signature);
        m13::write_transcript_message(&mut hs.transcript, ty::CERTIFICATE_VERIFY, &body);
        items.push(OutMessage::new(ty::CERTIFICATE_VERIFY, seq, 2, body));
        seq += 1;
        self.next_message_seq = seq;
        Ok(())
    }

    fn own_finished(&mut self, items: &mut Vec<OutMessage>, server: bool) -> Result<(), Error> {
        let seq = self.next_message_seq;
        let hs = self.hs_mut()?;
        let schedule = hs.schedule.as_ref().ok_or(Error::Crypto("no schedule"))?;
        let secret = if server {
            schedule.server_handshake
        } else {
            schedule.client_handshake
        };
        let h = hs.suite.hash();
        let verify = keys::finished_verify_data(h, &secret, &h.digest(&hs.transcript))?;
        m13::write_transcript_message(&mut hs.transcript, ty::FINISHED, &verify);
        items.push(OutMessage::new(ty::FINISHED, seq, 2, verify.to_vec()));
        self.next_message_seq = seq + 1;
        Ok(())
    }

    fn complete(&mut self, now: Instant) -> Result<(), Error> {
        let hs = self
            .hs
            .take()
            .ok_or(Error::Crypto("handshake state gone"))?;
        let profile = hs.srtp_profile.ok_or(Error::MissingSrtp)?;
        let peer_fingerprint = hs.peer_fingerprint.ok_or(Error::NoPeerCertificate)?;
        let group = hs.group.ok_or(Error::Crypto("no group"))?;
        let app = hs.application.as_ref().ok_or(Error::Crypto("no secrets"))?;
        if self.app_read.is_none() {
            self.app_read = Some(EpochKeys::derive(hs.suite, &app.client)?);
        }
        let mut exported = vec![0u8; SrtpKeyingMaterial::export_len(profile)];
        keys::export(
            hs.suite.hash(),
            &app.exporter,
            b"EXTRACTOR-dtls_srtp",
            &mut exported,
        )?;
        let srtp = SrtpKeyingMaterial::from_export(profile, exported, self.role == Role::Client);
        self.state = State::Connected;
        self.deferred = Vec::new();
        // Keeps next_seq, so late repeats are still recognised as repeats.
        self.reassembler.clear();
        // The client re-sends its final flight until it is acknowledged, for at most the
        // retention time; the server keeps reading epoch 2 as long to ACK late repeats.
        if self.config.recovery.retain_final_flight || self.role == Role::Client {
            self.retain_until = Some(now + self.config.final_flight_retention);
        } else {
            self.hs_read = None;
        }
        if self.role == Role::Server {
            // From here on the server only sends ACKs, in epoch 3.
            self.flight = None;
            self.retransmit_at = None;
            self.hs_write = None;
        }
        let cipher_suite = hs.suite.to_cipher_suite();
        self.events.push_back(Event::Connected(Box::new(Connected {
            srtp,
            cipher_suite,
            peer_fingerprint,
            handshake_duration: now.saturating_duration_since(self.created),
            version: DtlsVersion::Dtls13,
            group,
        })));
        Ok(())
    }

    pub(crate) fn fail(&mut self, error: Error) {
        if self.is_finished() {
            return;
        }
        if let Some(alert) = error.alert() {
            self.send_alert(alert);
        }
        self.fail_silently(error);
    }

    fn fail_silently(&mut self, error: Error) {
        self.state = State::Failed;
        self.flight = None;
        self.hs = None;
        self.retransmit_at = None;
        self.resend_at = None;
        self.retain_until = None;
        self.ack_at = None;
        self.reassembler.clear();
        self.deferred = Vec::new();
        self.events.push_back(Event::Failed(error));
    }

    /// Alerts are protected with the newest keys we write with (plaintext before any).
    fn send_alert(&mut self, alert: AlertDescription) {
        let body = [2, alert.to_u8()];
        let epoch = if self.app_write.is_some() && self.state == State::Connected {
            3
        } else if self.hs_write.is_some() {
            2
        } else {
            0
        };
        let mut datagram = Vec::with_capacity(64);
        if self
            .write_record(&mut datagram, epoch, rec13::CONTENT_ALERT, &body)
            .is_ok()
        {
            self.transmits.push_back(datagram);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::connection::test_support::{configs, deliver, new_pair};
    use crate::connection::Connection;
    use crate::crypto::CipherSuite;

    pub(super) fn with_versions(config: &Arc<Config>, versions: &[DtlsVersion]) -> Arc<Config> {
        let mut c = (**config).clone();
        c.versions = versions.to_vec();
        Arc::new(c)
    }

    pub(super) fn connected(conn: &mut Connection) -> Option<Box<Connected>> {
        while let Some(e) = conn.poll_event() {
            match e {
                Event::Connected(c) => return Some(c),
                Event::Failed(e) => panic!("{:?} failed: {e}", conn.role()),
                Event::Closed => {}
            }
        }
        None
    }

    /// Runs a lossless exchange until both report; returns both outcomes.
    pub(super) fn handshake(
        client: Arc<Config>,
        server: Arc<Config>,
    ) -> (Connection, Connection, Box<Connected>, Box<Connected>) {
        let now = Instant::now();
        let (mut c, mut s) = new_pair(client, server, now);
        let (mut cc, mut sc) = (None, None);
        for _ in 0..6 {
            deliver(&mut c, &mut s, now);
            deliver(&mut s, &mut c, now);
            cc = cc.or_else(|| connected(&mut c));
            sc = sc.or_else(|| connected(&mut s));
        }
        (
            c,
            s,
            cc.expect("client connected"),
            sc.expect("server connected"),
        )
    }

    pub(super) const BOTH: [DtlsVersion; 2] = [DtlsVersion::Dtls13, DtlsVersion::Dtls12];

    #[test]
    fn two_13_engines_agree_on_srtp_keys_in_one_round_trip() {
        let (client, server) = configs();
        let (mut c, mut s, cc, sc) =
            handshake(with_versions(&client, &BOTH), with_versions(&server, &BOTH));
        assert_eq!(cc.version, DtlsVersion::Dtls13);
        assert_eq!(sc.version, DtlsVersion::Dtls13);
        assert_eq!(cc.cipher_suite, CipherSuite::Tls13Aes128GcmSha256);
        assert_eq!(
            (cc.group, sc.group),
            (NamedGroup::X25519MlKem768, NamedGroup::X25519MlKem768),
            "the hybrid by default"
        );
        assert_eq!(cc.srtp.exported, sc.srtp.exported);
        assert_eq!(cc.srtp.local, sc.srtp.remote);
        assert_eq!(cc.peer_fingerprint, server.certificate.fingerprint());
        assert_eq!(sc.peer_fingerprint, client.certificate.fingerprint());
        // The server's ACK of the client's final flight stops the client's timer.
        let now = Instant::now();
        deliver(&mut s, &mut c, now);
        let Some(inner) = c.v13.as_ref() else {
            panic!("1.3 engine")
        };
        assert!(inner.flight.is_none(), "final flight acknowledged");
        assert!(s.stats().datagrams_sent >= 2);
    }

    #[test]
    fn a_12_only_peer_still_gets_12_in_both_roles() {
        let (client, server) = configs();
        let only12 = [DtlsVersion::Dtls12];
        let (_, _, cc, sc) = handshake(
            with_versions(&client, &BOTH),
            with_versions(&server, &only12),
        );
        assert_eq!(
            (cc.version, sc.version),
            (DtlsVersion::Dtls12, DtlsVersion::Dtls12)
        );
        assert_eq!(cc.srtp.exported, sc.srtp.exported);
        let (_, _, cc, sc) = handshake(
            with_versions(&client, &only12),
            with_versions(&server, &BOTH),
        );
        assert_eq!(
            (cc.version, sc.version),
            (DtlsVersion::Dtls12, DtlsVersion::Dtls12)
        );
        assert_eq!(cc.srtp.exported, sc.srtp.exported);
    }

    fn with_groups(config: &Arc<Config>, groups: &[NamedGroup]) -> Arc<Config> {
        let mut c = (**config).clone();
        c.groups = groups.to_vec();
        Arc::new(c)
    }

    fn with_suites(config: &Arc<Config>, suites: &[CipherSuite]) -> Arc<Config> {
        let mut c = (**config).clone();
        c.cipher_suites = suites.to_vec();
        Arc::new(c)
    }

    /// The client's first flight: the hybrid and an X25519 share, in a ClientHello that
    /// spans two datagrams of at most 1200 bytes.
    #[test]
    fn a_client_offers_the_hybrid_and_x25519_in_a_two_datagram_hello() {
        let (mut c, _, _, _, _) = pair13();
        let datagrams: Vec<Vec<u8>> = std::iter::from_fn(|| c.poll_transmit()).collect();
        assert_eq!(datagrams.len(), 2);
        assert!(datagrams.iter().all(|d| d.len() <= 1200));
        // One record of one fragment per datagram: headers, then the hello's bytes.
        let header = crate::record::RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN;
        let body: Vec<u8> = datagrams
            .iter()
            .flat_map(|d| d[header..].to_vec())
            .collect();
        let ch = ClientHello::parse(&body).expect("one ClientHello");
        let shares: Vec<(u16, usize)> = ch
            .extensions
            .key_shares
            .iter()
            .map(|(g, public)| (*g, public.len()))
            .collect();
        assert_eq!(shares, [(0x11ec, 1216), (29, 32)]);
    }

    /// Each group a server may end on, whoever lacks the hybrid: the client's second share
    /// when the server has no hybrid (no retry), a retry for P-256, and a retry for the
    /// hybrid itself when the client led with X25519. Keys agree in every case.
    #[test]
    fn the_hybrid_and_the_classical_groups_meet_in_both_directions() {
        let (client, server) = configs();
        let (client, server) = (with_versions(&client, &BOTH), with_versions(&server, &BOTH));
        use NamedGroup::{X25519MlKem768 as Hybrid, P256, X25519};
        let cases: [(&[NamedGroup], &[NamedGroup], NamedGroup); 5] = [
            (&NamedGroup::ALL, &NamedGroup::ALL, Hybrid),
            (&NamedGroup::ALL, &[X25519, P256], X25519),
            (&NamedGroup::ALL, &[P256], P256),
            (&[X25519, Hybrid], &[Hybrid], Hybrid),
            (&[Hybrid], &NamedGroup::ALL, Hybrid),
        ];
        for (client_groups, server_groups, expected) in cases {
            let (_, _, cc, sc) = handshake(
                with_groups(&client, client_groups),
                with_groups(&server, server_groups),
            );
            assert_eq!(
                (cc.group, sc.group),
                (expected, expected),
                "{client_groups:?} {server_groups:?}"
            );
            assert_eq!(cc.srtp.exported, sc.srtp.exported);
            assert_eq!(cc.srtp.local, sc.srtp.remote);
        }
    }

    /// TLS_AES_256_GCM_SHA384 in both roles (a SHA-384 schedule and transcript), chosen
    /// by the server's order when the client offers it, with and without a retry cookie.
    #[test]
    fn aes_256_gcm_sha384_is_negotiated_by_the_servers_order_in_both_roles() {
        let (client, server) = configs();
        let (client, server) = (with_versions(&client, &BOTH), with_versions(&server, &BOTH));
        let only256 = [CipherSuite::Tls13Aes256GcmSha384];
        let server_prefers_256 = [
            CipherSuite::Tls13Aes256GcmSha384,
            CipherSuite::Tls13Aes128GcmSha256,
        ];
        let cases = [
            (with_suites(&client, &only256), server.clone()),
            (client.clone(), with_suites(&server, &only256)),
            (client.clone(), with_suites(&server, &server_prefers_256)),
            (
                client.clone(),
                with_hello_verify(&with_suites(&server, &only256), None),
            ),
        ];
        for (c, s) in cases {
            let (_, _, cc, sc) = handshake(c, s);
            assert_eq!(cc.cipher_suite, CipherSuite::Tls13Aes256GcmSha384);
            assert_eq!(sc.cipher_suite, CipherSuite::Tls13Aes256GcmSha384);
            assert_eq!(cc.srtp.exported, sc.srtp.exported);
        }
        let chacha_first = [
            CipherSuite::Tls13Chacha20Poly1305Sha256,
            CipherSuite::Tls13Aes128GcmSha256,
        ];
        let (_, _, cc, sc) = handshake(client.clone(), with_suites(&server, &chacha_first));
        assert_eq!(cc.cipher_suite, CipherSuite::Tls13Chacha20Poly1305Sha256);
        assert_eq!(cc.srtp.exported, sc.srtp.exported);
        let (_, _, cc, _) = handshake(client, server);
        assert_eq!(
            cc.cipher_suite,
            CipherSuite::Tls13Aes128GcmSha256,
            "our default"
        );
    }

    pub(super) fn pair13() -> (Connection, Connection, Arc<Config>, Arc<Config>, Instant) {
        let (client, server) = configs();
        let (client, server) = (with_versions(&client, &BOTH), with_versions(&server, &BOTH));
        let now = Instant::now();
        let (c, s) = new_pair(client.clone(), server.clone(), now);
        (c, s, client, server, now)
    }

    pub(super) fn failure(conn: &mut Connection) -> Option<Error> {
        while let Some(e) = conn.poll_event() {
            if let Event::Failed(e) = e {
                return Some(e);
            }
        }
        None
    }

    pub(super) fn drop_all(conn: &mut Connection) {
        while conn.poll_transmit().is_some() {}
    }

    #[test]
    fn a_wrong_fingerprint_fails_in_both_roles() {
        let (client, server) = configs();
        let (client, server) = (with_versions(&client, &BOTH), with_versions(&server, &BOTH));
        let stranger = crate::cert::Certificate::generate().expect("certificate");
        let now = Instant::now();
        let mut c = Connection::new(
            client.clone(),
            Role::Client,
            PeerAuth::Fingerprint(stranger.fingerprint()),
            b"s",
            now,
        );
        let mut s = Connection::new(
            server.clone(),
            Role::Server,
            PeerAuth::Fingerprint(client.certificate.fingerprint()),
            b"c",
            now,
        );
        deliver(&mut c, &mut s, now);
        deliver(&mut s, &mut c, now);
        assert_eq!(failure(&mut c), Some(Error::FingerprintMismatch));
        let mut c = Connection::new(
            client,
            Role::Client,
            PeerAuth::Fingerprint(server.certificate.fingerprint()),
            b"s",
            now,
        );
        let mut s = Connection::new(
            server,
            Role::Server,
            PeerAuth::Fingerprint(stranger.fingerprint()),
            b"c",
            now,
        );
        for _ in 0..3 {
            deliver(&mut c, &mut s, now);
            deliver(&mut s, &mut c, now);
        }
        assert_eq!(failure(&mut s), Some(Error::FingerprintMismatch));
    }

    #[test]
    fn records_of_unknown_epochs_and_junk_are_dropped_and_counted() {
        let (mut c, mut s, _, _, now) = pair13();
        deliver(&mut c, &mut s, now);
        let before = s.stats();
        // Epoch 1 (0-RTT, never ours), epoch 3 before its keys, a connection id.
        for first in [0x2d_u8, 0x2f, 0x3e] {
            s.handle_datagram(
                now,
                &[
                    first, 0, 1, 0, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
                    18, 19, 20,
                ],
            );
        }
        // A protected epoch-2 record with a garbage body.
        s.handle_datagram(
            now,
            &[
                0x2e, 0, 1, 0, 20, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
            ],
        );
        let after = s.stats();
        assert!(after.wrong_epoch_records >= before.wrong_epoch_records + 2);
        assert!(after.bad_mac_records > before.bad_mac_records);
        assert!(!s.is_finished());
        for _ in 0..3 {
            deliver(&mut s, &mut c, now);
            deliver(&mut c, &mut s, now);
        }
        assert!(c.is_connected() && s.is_connected());
    }

    pub(super) fn with_hello_verify(
        config: &Arc<Config>,
        groups: Option<Vec<NamedGroup>>,
    ) -> Arc<Config> {
        let mut c = (**config).clone();
        c.hello_verify = true;
        if let Some(groups) = groups {
            c.groups = groups;
        }
        Arc::new(c)
    }
}
