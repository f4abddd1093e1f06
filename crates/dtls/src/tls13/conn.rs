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
use crate::crypto::{CipherSuite, KeyShare, NamedGroup, PeerPublicKey, ECDSA_SECP256R1_SHA256};
use crate::messages::{ClientHello, FragmentHeader, Offer13, ServerHello, HANDSHAKE_HEADER_LEN};
use crate::reassembly::{CompleteMessage, FragmentOutcome, Reassembler};
use crate::record::ReplayWindow;
use crate::srtp::{SrtpKeyingMaterial, SrtpProfile};
use crate::timer::RetransmitTimer;
use crate::tls13::keys::{self, EpochKeys, Schedule, Suite13};
use crate::tls13::messages as m13;
use crate::tls13::record::{self as rec13, Record13};
use crate::{AlertDescription, Error};

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

/// One handshake message of a flight we send, with the bytes the peer acknowledged.
#[derive(Debug)]
struct OutMessage {
    msg_type: u8,
    message_seq: u16,
    epoch: u16,
    body: Vec<u8>,
    /// Sorted, disjoint half-open ranges the peer acknowledged.
    acked: Vec<(u32, u32)>,
    /// An empty message is acknowledged as a whole.
    empty_acked: bool,
    /// Where its first transmission cut it. Re-sends cut at the same offsets (and never
    /// merge two original fragments into one), because some stacks reassemble only
    /// fragments that match the ones they have seen (dimpl, docs/dtls.md).
    cuts: Option<Vec<u32>>,
}

impl OutMessage {
    fn new(msg_type: u8, message_seq: u16, epoch: u16, body: Vec<u8>) -> Self {
        Self {
            msg_type,
            message_seq,
            epoch,
            body,
            acked: Vec::new(),
            empty_acked: false,
            cuts: None,
        }
    }

    fn is_acked(&self) -> bool {
        if self.body.is_empty() {
            return self.empty_acked;
        }
        self.acked.first() == Some(&(0, self.body.len() as u32))
    }

    fn ack(&mut self, start: u32, end: u32) {
        if self.body.is_empty() {
            self.empty_acked = true;
            return;
        }
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        let mut merged = Vec::with_capacity(self.acked.len() + 1);
        for &(a, b) in &self.acked {
            if b < s || a > e {
                merged.push((a, b));
            } else {
                s = s.min(a);
                e = e.max(b);
            }
        }
        merged.push((s, e));
        merged.sort_unstable();
        self.acked = merged;
    }

    /// The byte ranges still to deliver.
    fn missing(&self) -> Vec<(usize, usize)> {
        let len = self.body.len();
        if len == 0 {
            return if self.empty_acked {
                vec![]
            } else {
                vec![(0, 0)]
            };
        }
        let mut out = Vec::new();
        let mut at = 0usize;
        for &(a, b) in &self.acked {
            if (a as usize) > at {
                out.push((at, a as usize));
            }
            at = at.max(b as usize);
        }
        if at < len {
            out.push((at, len));
        }
        out
    }
}

/// A flight we sent and may have to send again, in part.
#[derive(Debug, Default)]
struct Flight {
    messages: Vec<OutMessage>,
    /// (epoch, record sequence) -> (message index, byte range, when sent), for ACKs.
    sent: BTreeMap<(u16, u64), (usize, u32, u32, Instant)>,
    sent_order: VecDeque<(u16, u64)>,
    /// Retransmitted on our timer (everything but a HelloRetryRequest).
    timed: bool,
}

impl Flight {
    fn new(messages: Vec<OutMessage>, timed: bool) -> Self {
        Self {
            messages,
            timed,
            ..Self::default()
        }
    }

    fn is_acked(&self) -> bool {
        self.messages.iter().all(OutMessage::is_acked)
    }

    fn remember(&mut self, epoch: u16, seq: u64, msg: usize, range: (u32, u32), at: Instant) {
        if self.sent_order.len() == MAX_SENT_RECORDS {
            if let Some(old) = self.sent_order.pop_front() {
                self.sent.remove(&old);
            }
        }
        self.sent.insert((epoch, seq), (msg, range.0, range.1, at));
        self.sent_order.push_back((epoch, seq));
    }
}

/// Secrets and choices of the handshake in progress; dropped on completion.
struct Handshake {
    suite: Suite13,
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

/// The shares a 1.3 client offers: one, of our preferred group (a server that prefers
/// another asks with a HelloRetryRequest).
pub(crate) fn client_shares(
    config: &Config,
    rng: &dyn SecureRandom,
) -> Result<Vec<(NamedGroup, KeyShare)>, Error> {
    let group = config
        .groups
        .first()
        .copied()
        .ok_or(Error::NoCommonParameters { what: "group" })?;
    Ok(vec![(group, KeyShare::generate(group, rng)?)])
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

/// Bytes of a HelloRetryRequest cookie: the first hello's transcript hash, the group asked
/// for (0 for none), and a MAC binding both to the peer's address.
const COOKIE_LEN: usize = keys::HASH_LEN + 2 + 16;

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

/// The suite a server picks from a ClientHello.
fn server_suite(ch: &ClientHello) -> Result<Suite13, Error> {
    Suite13::ALL
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
    let suite = server_suite(ch)?;
    let group = retry_group(config, ch)?;
    let mut ch1 = Vec::new();
    m13::write_transcript_message(&mut ch1, ty::CLIENT_HELLO, &msg.body);
    let ch1_hash = keys::hash(&ch1);
    let group_code = group.map_or(0, |g| g.to_u16());
    let mut cookie = Vec::with_capacity(COOKIE_LEN);
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
) -> Option<([u8; keys::HASH_LEN], u16)> {
    if cookie.len() != COOKIE_LEN {
        return None;
    }
    let (hash, rest) = cookie.split_at(keys::HASH_LEN);
    let (group, mac) = rest.split_at(2);
    let group = u16::from_be_bytes([*group.first()?, *group.get(1)?]);
    let expected = cookie_mac(config, peer_address, hash, group);
    let equal = mac
        .iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0;
    let mut out = [0u8; keys::HASH_LEN];
    out.copy_from_slice(hash);
    equal.then_some((out, group))
}

impl Conn13 {
    /// A server answering a second ClientHello that returned a valid cookie: the
    /// transcript starts as if we had kept the first hello and our retry request.
    pub(crate) fn server_after_retry(
        h: Handover,
        now: Instant,
        msg: &CompleteMessage,
        ch: &ClientHello,
        ch1_hash: [u8; keys::HASH_LEN],
        group: u16,
        cookie: &[u8],
    ) -> Result<Self, Error> {
        let suite = server_suite(ch)?;
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

    /// A server whose peer's ClientHello offers 1.3: answer it.
    pub(crate) fn server(
        h: Handover,
        now: Instant,
        msg: &CompleteMessage,
        ch: &ClientHello,
    ) -> Result<Self, Error> {
        let suite = server_suite(ch)?;
        let mut conn = Self::from_handover(h, State::ServerAwaitSecondClientHello, suite);
        conn.peer_flight_start = msg.message_seq;
        conn.server_on_client_hello(now, msg, ch)?;
        Ok(conn)
    }

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

    // ---- records ----

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

    /// A message of the peer's next flight arrived, so the peer has all of ours (it cannot
    /// answer a flight it has not completed): stop re-sending it.
    fn implicit_ack(&mut self) {
        if self.state == State::Connected {
            return;
        }
        if let Some(flight) = self.flight.as_mut() {
            for m in &mut flight.messages {
                let len = m.body.len() as u32;
                m.ack(0, len);
            }
            self.retransmit_at = None;
        }
    }

    fn note_for_ack(&mut self, now: Instant, epoch: u16, seq: u64) {
        let number = (u64::from(epoch), seq);
        if self.to_ack.len() < MAX_ACK_RECORDS && !self.to_ack.contains(&number) {
            self.to_ack.push(number);
        }
        if self.ack_at.is_none() {
            self.ack_at = Some(now + ACK_DELAY);
        }
    }

    /// Sends an ACK of every record of the peer's current flight we hold, in as many
    /// records (and datagrams) as it takes.
    fn send_ack(&mut self, now: Instant) -> Result<(), Error> {
        if self.to_ack.is_empty() {
            return Ok(());
        }
        let epoch: u16 = if self.app_write.is_some() { 3 } else { 2 };
        let Some(_) = self.write_keys(epoch) else {
            // Nothing to protect an ACK with yet (the ServerHello was lost): the peer's
            // timer covers it.
            return Ok(());
        };
        let overhead = self.overhead(epoch) + 2;
        let per_record = (self.config.max_datagram_size.saturating_sub(overhead) / 16).max(1);
        // Newest first: if only the first ACK datagram arrives, it tells the sender about
        // its latest transmission, which older ACKs did not cover.
        let numbers: Vec<(u64, u64)> = self.to_ack.iter().rev().copied().collect();
        let mut datagram = Vec::with_capacity(self.config.max_datagram_size);
        for chunk in numbers.chunks(per_record) {
            let body = m13::encode_ack(chunk);
            if !datagram.is_empty()
                && datagram.len() + overhead + body.len() > self.config.max_datagram_size
            {
                self.transmits.push_back(std::mem::take(&mut datagram));
            }
            self.write_record(&mut datagram, epoch, rec13::CONTENT_ACK, &body)?;
        }
        if !datagram.is_empty() {
            self.transmits.push_back(datagram);
        }
        self.last_ack_sent = Some(now);
        Ok(())
    }

    fn handle_ack(&mut self, now: Instant, body: &[u8]) -> Result<(), Error> {
        let Some(numbers) = m13::parse_ack(body) else {
            self.stats.malformed_records += 1;
            return Ok(());
        };
        let Some(flight) = self.flight.as_mut() else {
            return Ok(());
        };
        let mut newly = false;
        // Every record has its own number, re-sends included, so an ACK is an RTT sample
        // without Karn's ambiguity: the newest record it newly acknowledges.
        let mut newest_sent: Option<Instant> = None;
        for (epoch, seq) in numbers {
            let Ok(epoch) = u16::try_from(epoch) else {
                continue;
            };
            if let Some(&(msg, start, end, at)) = flight.sent.get(&(epoch, seq)) {
                if let Some(m) = flight.messages.get_mut(msg) {
                    let before = m.acked.clone();
                    let was = m.is_acked();
                    m.ack(start, end);
                    if m.acked != before || (!was && m.is_acked()) {
                        newly = true;
                        newest_sent = newest_sent.max(Some(at));
                    }
                }
            }
        }
        if !newly {
            return Ok(());
        }
        let acked_all = flight.is_acked();
        if let Some(at) = newest_sent {
            self.timer
                .on_rtt_sample(now.saturating_duration_since(at).saturating_sub(ACK_DELAY));
            self.rtt_probe = None;
        }
        if acked_all {
            self.on_flight_acked(now);
            return Ok(());
        }
        // Part of the flight arrived: the path is alive. Re-send what is missing now
        // rather than at the timer (once the rest of this burst of ACKs is read), at most
        // once per half round trip.
        self.peer_progress = true;
        let spacing = self.timer.repeat_spacing();
        if self.resend_at.is_none()
            && self
                .last_transmission
                .is_some_and(|t| now.saturating_duration_since(t) >= spacing)
        {
            self.resend_at = Some(now + ACK_RESEND_DELAY);
        }
        Ok(())
    }

    /// Our whole flight is acknowledged: stop its timer. A client's final flight is then
    /// done with; a server's flight stays until the client's answers it.
    fn on_flight_acked(&mut self, _now: Instant) {
        self.retransmit_at = None;
        self.resend_at = None;
        if self.state == State::Connected && self.role == Role::Client {
            self.flight = None;
            self.retain_until = None;
            self.hs_write = None;
            self.hs_read = None;
        }
    }

    /// The peer repeated a message of its previous flight: ours was lost.
    fn on_peer_repeat(&mut self, now: Instant, message_seq: u16) -> Result<(), Error> {
        let Some((first, last)) = self.peer_last_flight else {
            return Ok(());
        };
        if !(first..=last).contains(&message_seq) {
            return Ok(());
        }
        let spacing = self.timer.repeat_spacing();
        let recent =
            |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) < spacing);
        if self.state == State::Connected && self.role == Role::Server {
            // The client repeats its final flight: our ACK was lost.
            if !self.config.recovery.retain_final_flight || recent(self.last_ack_sent) {
                return Ok(());
            }
            self.stats.final_flight_retransmissions += 1;
            self.ack_at = None;
            return self.send_ack(now);
        }
        if self.flight.is_none() || !self.config.recovery.resend_on_repeat {
            return Ok(());
        }
        if recent(self.last_transmission) {
            return Ok(());
        }
        self.stats.repeat_retransmissions += 1;
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
        let input = keys::certificate_verify_input(peer_is_server, &keys::hash(&hs.transcript));
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
        let expected = keys::finished_verify_data(secret, &keys::hash(&hs.transcript))?;
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
        let input = keys::certificate_verify_input(server, &keys::hash(&hs.transcript));
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
        let verify = keys::finished_verify_data(&secret, &keys::hash(&hs.transcript))?;
        m13::write_transcript_message(&mut hs.transcript, ty::FINISHED, &verify);
        items.push(OutMessage::new(ty::FINISHED, seq, 2, verify.to_vec()));
        self.next_message_seq = seq + 1;
        Ok(())
    }

    // ---- server ----

    fn server_on_client_hello(
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
        let own = KeyShare::generate(group, &self.rng)?;
        let own_public = own.public().to_vec();
        let shared = own.agree(&peer_public)?;
        let random = self.random()?;
        let seq = self.next_message_seq;
        let hs = self.hs_mut()?;
        hs.srtp_profile = Some(profile);
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
        let schedule = Schedule::handshake(&shared, &keys::hash(&hs.transcript))?;
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
        let app = schedule.application(&keys::hash(&hs.transcript))?;
        let app_write = EpochKeys::derive(suite, &app.server)?;
        hs.application = Some(app);
        self.app_write = Some(app_write);
        self.state = State::ServerAwaitCertificate;
        self.send_flight(now, Flight::new(items, true))
    }

    fn server_send_hello_retry(
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
        m13::write_transcript_message(&mut hs.transcript, m13::MESSAGE_HASH, &keys::hash(&ch1));
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

    fn server_on_finished(&mut self, now: Instant, msg: &CompleteMessage) -> Result<(), Error> {
        self.verify_finished(msg)?;
        self.peer_last_flight = Some((self.peer_flight_start, msg.message_seq));
        self.peer_flight_start = msg.message_seq.wrapping_add(1);
        self.complete(now)?;
        // The client's final flight is acknowledged explicitly (RFC 9147 section 7).
        self.ack_at = None;
        self.send_ack(now)
    }

    // ---- client ----

    fn client_on_server_hello(
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
        let (_, share) = hs.own_shares.swap_remove(index);
        hs.own_shares.clear();
        let shared = share.agree(server_public)?;
        m13::write_transcript_message(&mut hs.transcript, ty::SERVER_HELLO, &msg.body);
        let schedule = Schedule::handshake(&shared, &keys::hash(&hs.transcript))?;
        self.hs_read = Some(EpochKeys::derive(suite, &schedule.server_handshake)?);
        self.hs_write = Some(EpochKeys::derive(suite, &schedule.client_handshake)?);
        self.hs_mut()?.schedule = Some(schedule);
        // Our ClientHello is answered; the server's flight goes on in epoch 2.
        self.flight = None;
        self.retransmit_at = None;
        self.state = State::ClientAwaitEncryptedExtensions;
        Ok(())
    }

    fn client_on_hello_retry(
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
        m13::write_transcript_message(&mut hs.transcript, m13::MESSAGE_HASH, &keys::hash(&ch1));
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

    fn client_on_finished(&mut self, now: Instant, msg: &CompleteMessage) -> Result<(), Error> {
        self.verify_finished(msg)?;
        self.mark_peer_flight(msg.message_seq);
        let hs = self.hs_mut()?;
        let suite = hs.suite;
        let schedule = hs.schedule.as_ref().ok_or(Error::Crypto("no schedule"))?;
        let app = schedule.application(&keys::hash(&hs.transcript))?;
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

    // ---- completion and failure ----

    fn complete(&mut self, now: Instant) -> Result<(), Error> {
        let hs = self
            .hs
            .take()
            .ok_or(Error::Crypto("handshake state gone"))?;
        let profile = hs.srtp_profile.ok_or(Error::MissingSrtp)?;
        let peer_fingerprint = hs.peer_fingerprint.ok_or(Error::NoPeerCertificate)?;
        let app = hs.application.as_ref().ok_or(Error::Crypto("no secrets"))?;
        if self.app_read.is_none() {
            self.app_read = Some(EpochKeys::derive(hs.suite, &app.client)?);
        }
        let mut exported = vec![0u8; SrtpKeyingMaterial::export_len(profile)];
        keys::export(&app.exporter, b"EXTRACTOR-dtls_srtp", &mut exported)?;
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
        let cipher_suite = match hs.suite {
            Suite13::Aes128GcmSha256 => CipherSuite::Tls13Aes128GcmSha256,
            Suite13::Chacha20Poly1305Sha256 => CipherSuite::Tls13Chacha20Poly1305Sha256,
        };
        self.events.push_back(Event::Connected(Box::new(Connected {
            srtp,
            cipher_suite,
            peer_fingerprint,
            handshake_duration: now.saturating_duration_since(self.created),
            version: DtlsVersion::Dtls13,
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

    // ---- sending ----

    fn write_keys(&self, epoch: u16) -> Option<&EpochKeys> {
        match epoch {
            2 => self.hs_write.as_ref(),
            3 => self.app_write.as_ref(),
            _ => None,
        }
    }

    fn overhead(&self, epoch: u16) -> usize {
        if epoch == 0 {
            crate::record::RECORD_HEADER_LEN
        } else {
            self.write_keys(epoch)
                .map_or(22, |k| k.suite().record_overhead())
        }
    }

    /// Writes one record, taking the next record number of its epoch.
    fn write_record(
        &mut self,
        out: &mut Vec<u8>,
        epoch: u16,
        content_type: u8,
        content: &[u8],
    ) -> Result<u64, Error> {
        let slot = self
            .next_record
            .get_mut(usize::from(epoch))
            .ok_or(Error::Crypto("epoch out of range"))?;
        let seq = *slot;
        if seq > crate::record::MAX_SEQUENCE {
            return Err(Error::Crypto("record sequence exhausted"));
        }
        *slot += 1;
        if epoch == 0 {
            rec13::write_plaintext(out, content_type, crate::record::DTLS_1_2, seq, content);
            return Ok(seq);
        }
        let keys = self
            .write_keys(epoch)
            .ok_or(Error::Crypto("no keys for epoch"))?;
        rec13::write_ciphertext(out, keys, epoch, seq, content_type, content)?;
        Ok(seq)
    }

    fn send_flight(&mut self, now: Instant, flight: Flight) -> Result<(), Error> {
        self.flight = Some(flight);
        self.timer.reset_backoff();
        self.transmit_flight(now, false)?;
        self.rtt_probe = self.retransmit_at.map(|_| now);
        Ok(())
    }

    /// Sends every byte of the current flight not yet acknowledged, in fresh records.
    fn transmit_flight(&mut self, now: Instant, retransmission: bool) -> Result<(), Error> {
        let Some(mut flight) = self.flight.take() else {
            self.retransmit_at = None;
            return Ok(());
        };
        let result = self.packetize(&mut flight, now);
        let datagrams = match result {
            Ok(n) => n,
            Err(e) => {
                self.flight = Some(flight);
                return Err(e);
            }
        };
        if retransmission
            && self.config.recovery.redundant_retransmission
            && datagrams <= REDUNDANT_FLIGHT_DATAGRAMS
            && datagrams > 0
        {
            let again = self.packetize(&mut flight, now);
            if let Err(e) = again {
                self.flight = Some(flight);
                return Err(e);
            }
        }
        let timed = flight.timed && !flight.is_acked();
        self.flight = Some(flight);
        self.last_transmission = Some(now);
        self.retransmit_at = timed.then(|| now + self.timer.current());
        Ok(())
    }

    fn packetize(&mut self, flight: &mut Flight, now: Instant) -> Result<usize, Error> {
        let max = self.config.max_datagram_size;
        let mut written = 0;
        let mut datagram: Vec<u8> = Vec::with_capacity(max);
        for index in 0..flight.messages.len() {
            let (msg_type, message_seq, epoch, total, missing, cuts) = {
                let m = &flight.messages[index];
                (
                    m.msg_type,
                    m.message_seq,
                    m.epoch,
                    m.body.len(),
                    m.missing(),
                    m.cuts.clone(),
                )
            };
            let first_transmission = cuts.is_none();
            let cuts = cuts.unwrap_or_default();
            let mut new_cuts = Vec::new();
            let overhead = self.overhead(epoch) + HANDSHAKE_HEADER_LEN;
            if overhead + 1 > max {
                return Err(Error::Crypto("datagram size below record overhead"));
            }
            for (start, end) in missing {
                let mut offset = start;
                loop {
                    // A re-send goes up to the next original cut, whole if it can.
                    let piece_end = cuts
                        .iter()
                        .map(|&c| c as usize)
                        .find(|&c| c > offset && c < end)
                        .unwrap_or(end);
                    let remaining = piece_end - offset;
                    let space = max.saturating_sub(datagram.len() + overhead);
                    let too_small = if first_transmission {
                        space < remaining && space < MIN_FRAGMENT
                    } else {
                        space < remaining
                    };
                    if !datagram.is_empty() && (space == 0 || too_small) {
                        self.transmits
                            .push_back(std::mem::replace(&mut datagram, Vec::with_capacity(max)));
                        written += 1;
                        continue;
                    }
                    let len = remaining.min(space);
                    let mut fragment = Vec::with_capacity(HANDSHAKE_HEADER_LEN + len);
                    FragmentHeader {
                        msg_type,
                        length: total as u32,
                        message_seq,
                        fragment_offset: offset as u32,
                        fragment_length: len as u32,
                    }
                    .write(&mut fragment);
                    let body = flight
                        .messages
                        .get(index)
                        .and_then(|m| m.body.get(offset..offset + len))
                        .ok_or(Error::Crypto("fragment range"))?;
                    fragment.extend_from_slice(body);
                    let seq = self.write_record(
                        &mut datagram,
                        epoch,
                        rec13::CONTENT_HANDSHAKE,
                        &fragment,
                    )?;
                    flight.remember(
                        epoch,
                        seq,
                        index,
                        (offset as u32, (offset + len) as u32),
                        now,
                    );
                    if first_transmission && offset > 0 {
                        new_cuts.push(offset as u32);
                    }
                    offset += len;
                    if offset >= end {
                        break;
                    }
                }
            }
            if let Some(m) = flight.messages.get_mut(index) {
                if m.cuts.is_none() {
                    m.cuts = Some(new_cuts);
                }
            }
        }
        if !datagram.is_empty() {
            self.transmits.push_back(datagram);
            written += 1;
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::test_support::{configs, deliver, new_pair};
    use crate::connection::Connection;

    fn with_versions(config: &Arc<Config>, versions: &[DtlsVersion]) -> Arc<Config> {
        let mut c = (**config).clone();
        c.versions = versions.to_vec();
        Arc::new(c)
    }

    fn connected(conn: &mut Connection) -> Option<Box<Connected>> {
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
    fn handshake(
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

    const BOTH: [DtlsVersion; 2] = [DtlsVersion::Dtls13, DtlsVersion::Dtls12];

    #[test]
    fn two_13_engines_agree_on_srtp_keys_in_one_round_trip() {
        let (client, server) = configs();
        let (mut c, mut s, cc, sc) =
            handshake(with_versions(&client, &BOTH), with_versions(&server, &BOTH));
        assert_eq!(cc.version, DtlsVersion::Dtls13);
        assert_eq!(sc.version, DtlsVersion::Dtls13);
        assert_eq!(cc.cipher_suite, CipherSuite::Tls13Aes128GcmSha256);
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

    fn pair13() -> (Connection, Connection, Arc<Config>, Arc<Config>, Instant) {
        let (client, server) = configs();
        let (client, server) = (with_versions(&client, &BOTH), with_versions(&server, &BOTH));
        let now = Instant::now();
        let (c, s) = new_pair(client.clone(), server.clone(), now);
        (c, s, client, server, now)
    }

    fn failure(conn: &mut Connection) -> Option<Error> {
        while let Some(e) = conn.poll_event() {
            if let Event::Failed(e) = e {
                return Some(e);
            }
        }
        None
    }

    fn drop_all(conn: &mut Connection) {
        while conn.poll_transmit().is_some() {}
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

    /// An ACK written with the peer's real keys but naming records we never sent, and a
    /// flood of them, changes nothing and grows nothing.
    #[test]
    fn forged_and_flooded_acks_are_ignored() {
        let (mut c, mut s, _, _, now) = pair13();
        deliver(&mut c, &mut s, now);
        drop_all(&mut s);
        // Let the client read the server's flight without answering, so that it holds
        // epoch-2 keys; use them to write ACKs the server will authenticate.
        let inner_s = s.v13.as_mut().expect("1.3 server");
        inner_s.transmit_flight(now, false).expect("re-send");
        let mut first = Vec::new();
        while let Some(d) = s.poll_transmit() {
            first.push(d);
        }
        for d in &first {
            c.handle_datagram(now, d);
        }
        // The client's flight is lost; the forged ACKs below take record numbers after
        // it, and its re-send takes fresh ones again.
        drop_all(&mut c);
        let client = c.v13.as_mut().expect("1.3 client");
        let bogus: Vec<(u64, u64)> = (0..4000u64).map(|i| (2, 1_000_000 + i)).collect();
        let body = m13::encode_ack(&bogus);
        for _ in 0..1000 {
            let mut d = Vec::new();
            client
                .write_record(&mut d, 2, rec13::CONTENT_ACK, &body)
                .expect("ACK record");
            s.handle_datagram(now, &d);
        }
        let inner_s = s.v13.as_ref().expect("1.3 server");
        let flight = inner_s.flight.as_ref().expect("flight kept");
        assert!(!flight.is_acked(), "nothing we sent was acknowledged");
        assert!(flight.sent.len() <= MAX_SENT_RECORDS);
        assert!(inner_s.retransmit_at.is_some(), "our timer still runs");
        assert!(!s.is_finished());
        // The real flight still completes the handshake.
        let later = now + Duration::from_secs(1);
        c.handle_timeout(later);
        for _ in 0..3 {
            deliver(&mut c, &mut s, now);
            deliver(&mut s, &mut c, now);
        }
        assert!(
            c.is_connected() && s.is_connected(),
            "{:?} {:?} {:?}",
            failure(&mut c),
            failure(&mut s),
            s.stats()
        );
    }

    #[test]
    fn an_ack_of_part_of_a_flight_re_sends_only_the_rest() {
        let (mut c, mut s, client, server, now) = pair13();
        let _ = (client, server);
        deliver(&mut c, &mut s, now);
        let inner = s.v13.as_mut().expect("1.3 server");
        let flight = inner.flight.as_mut().expect("flight");
        // Acknowledge every record but the last one sent.
        let numbers: Vec<(u16, u64)> = flight.sent.keys().copied().collect();
        let (last, rest) = numbers.split_last().expect("records");
        for &(e, q) in rest {
            if let Some(&(m, a, b, _)) = flight.sent.get(&(e, q)) {
                flight.messages[m].ack(a, b);
            }
        }
        let &(m, a, b, _) = flight.sent.get(last).expect("last record");
        assert!(!flight.is_acked());
        let missing: Vec<_> = flight.messages.iter().map(|m| m.missing()).collect();
        let expect: Vec<Vec<(usize, usize)>> = (0..missing.len())
            .map(|i| {
                if i == m {
                    vec![(a as usize, b as usize)]
                } else {
                    vec![]
                }
            })
            .collect();
        assert_eq!(missing, expect);
        drop_all(&mut s);
        let later = now + Duration::from_secs(1);
        s.handle_timeout(later);
        let mut resent = 0;
        while s.poll_transmit().is_some() {
            resent += 1;
        }
        // One record re-sent (twice: a one-datagram re-send is sent redundantly).
        assert_eq!(resent, 2);
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

    /// The server's ACK of the client's final flight is lost: the client's timer repeats
    /// its flight (with fresh record numbers), the server, connected long since, still
    /// reads epoch 2 and ACKs again, and the client stops.
    #[test]
    fn a_lost_final_ack_is_answered_by_a_repeat_and_a_second_ack() {
        let (mut c, mut s, _, _, now) = pair13();
        deliver(&mut c, &mut s, now);
        deliver(&mut s, &mut c, now);
        deliver(&mut c, &mut s, now);
        assert!(s.is_connected() && c.is_connected());
        drop_all(&mut s);
        let due = c
            .poll_timeout()
            .expect("the client's final flight is timed");
        c.handle_timeout(due);
        assert_eq!(c.stats().timer_retransmissions, 1);
        deliver(&mut c, &mut s, due);
        assert_eq!(s.stats().final_flight_retransmissions, 1, "re-ACKed");
        deliver(&mut s, &mut c, due);
        let inner = c.v13.as_ref().expect("1.3 client");
        assert!(inner.flight.is_none(), "acknowledged at last");
        assert!(inner.retransmit_at.is_none());
    }

    fn with_hello_verify(config: &Arc<Config>, groups: Option<Vec<NamedGroup>>) -> Arc<Config> {
        let mut c = (**config).clone();
        c.hello_verify = true;
        if let Some(groups) = groups {
            c.groups = groups;
        }
        Arc::new(c)
    }

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
            let client = with_versions(&client, &BOTH);
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
}
