//! The controlling side of ICE against an ICE-lite server (RFC 8445 section 7.2,
//! consent freshness RFC 7675), sans-IO.
//!
//! The server never sends checks, so the browser's whole job is: send a Binding request
//! with USERNAME `server:ours`, PRIORITY, ICE-CONTROLLING, USE-CANDIDATE,
//! MESSAGE-INTEGRITY (keyed with the server's password) and FINGERPRINT; retransmit with
//! backoff until an authenticated success response arrives; then keep sending a check
//! every few seconds so the server's consent does not expire, and give up when no
//! response has arrived for the consent timeout.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ring::rand::SecureRandom;
use stun_rs::attributes::ice::{IceControlling, Priority, UseCandidate};
use stun_rs::attributes::stun::{ErrorCode, Fingerprint, MessageIntegrity, UserName};
use stun_rs::methods::BINDING;
use stun_rs::{
    DecoderContextBuilder, HMACKey, MessageClass, MessageDecoderBuilder, MessageEncoderBuilder,
    StunMessageBuilder, TransactionId,
};
use thiserror::Error;

/// RFC 8445 host candidate priority for component 1 with local preference 65535,
/// the value Chrome puts in PRIORITY for a peer-reflexive candidate of a host pair.
pub const CHECK_PRIORITY: u32 = (110 << 24) | (65_535 << 8) | 255;

/// Timing of the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IceClientConfig {
    /// First retransmission interval of the nominating check.
    pub initial_interval: Duration,
    /// Cap of the doubling retransmission interval.
    pub max_interval: Duration,
    /// Time between consent checks once connected (RFC 7675 asks for about 5 s).
    pub consent_interval: Duration,
    /// Connected state is lost when no success response arrived for this long.
    pub consent_timeout: Duration,
}

impl Default for IceClientConfig {
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_millis(50),
            max_interval: Duration::from_millis(800),
            consent_interval: Duration::from_secs(5),
            consent_timeout: Duration::from_secs(30),
        }
    }
}

/// What the agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceClientEvent {
    /// The first authenticated success response: the server validated and nominated us.
    Connected {
        /// Round-trip time of the successful check.
        rtt: Duration,
    },
    /// No success response for the consent timeout.
    ConsentLost,
}

/// Why a STUN datagram was not accepted as the answer to one of our checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum IceClientError {
    /// Not a STUN message, or FINGERPRINT/MESSAGE-INTEGRITY did not validate.
    #[error("undecodable or unauthenticated STUN message")]
    Invalid,
    /// A success response without MESSAGE-INTEGRITY.
    #[error("response lacks MESSAGE-INTEGRITY")]
    Unauthenticated,
    /// The transaction id is not the one of an outstanding check.
    #[error("response to an unknown transaction")]
    UnknownTransaction,
    /// The server answered with an error response.
    #[error("error response {0}")]
    ErrorResponse(u16),
    /// A request or indication (an ICE-lite server sends none).
    #[error("unexpected STUN request or indication")]
    NotAResponse,
    /// The system random generator failed.
    #[error("random generator failure")]
    Random,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    transaction_id: [u8; 12],
    first_sent: Instant,
    next_retransmit: Instant,
    interval: Duration,
    nominate: bool,
}

/// The controlling ICE agent of one client, for one remote candidate.
pub struct IceClient {
    config: IceClientConfig,
    username: String,
    key: HMACKey,
    tie_breaker: u64,
    rng: ring::rand::SystemRandom,
    pending: Option<Pending>,
    connected: bool,
    consent_lost: bool,
    last_success: Option<Instant>,
    next_consent_check: Option<Instant>,
    started: Instant,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<IceClientEvent>,
    /// Checks sent, retransmissions included.
    pub checks_sent: u64,
}

impl std::fmt::Debug for IceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceClient")
            .field("username", &self.username)
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

impl IceClient {
    /// Starts checking: the first nominating check is queued at once.
    ///
    /// `remote_pwd` keys MESSAGE-INTEGRITY of our requests and of the server's responses.
    pub fn new(
        config: IceClientConfig,
        remote_ufrag: &str,
        remote_pwd: &str,
        local_ufrag: &str,
        now: Instant,
    ) -> Result<Self, IceClientError> {
        let key = HMACKey::new_short_term(remote_pwd).map_err(|_| IceClientError::Invalid)?;
        let rng = ring::rand::SystemRandom::new();
        let mut tie = [0u8; 8];
        rng.fill(&mut tie).map_err(|_| IceClientError::Random)?;
        let mut agent = Self {
            config,
            username: format!("{remote_ufrag}:{local_ufrag}"),
            key,
            tie_breaker: u64::from_be_bytes(tie),
            rng,
            pending: None,
            connected: false,
            consent_lost: false,
            last_success: None,
            next_consent_check: None,
            started: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            checks_sent: 0,
        };
        agent.start_check(now, true)?;
        Ok(agent)
    }

    /// True after the first success response (and until consent is lost).
    pub fn is_connected(&self) -> bool {
        self.connected && !self.consent_lost
    }

    fn start_check(&mut self, now: Instant, nominate: bool) -> Result<(), IceClientError> {
        let mut transaction_id = [0u8; 12];
        self.rng
            .fill(&mut transaction_id)
            .map_err(|_| IceClientError::Random)?;
        let interval = self.config.initial_interval;
        self.pending = Some(Pending {
            transaction_id,
            first_sent: now,
            next_retransmit: now + interval,
            interval,
            nominate,
        });
        self.send_pending();
        Ok(())
    }

    fn send_pending(&mut self) {
        let Some(pending) = self.pending else { return };
        if let Some(bytes) = self.encode_check(pending.transaction_id, pending.nominate) {
            self.transmits.push_back(bytes);
            self.checks_sent += 1;
        }
    }

    /// Encodes one Binding request the way a controlling browser does.
    pub fn encode_check(&self, transaction_id: [u8; 12], nominate: bool) -> Option<Vec<u8>> {
        let mut builder = StunMessageBuilder::new(BINDING, MessageClass::Request)
            .with_transaction_id(TransactionId::from(transaction_id))
            .with_attribute(UserName::new(&self.username).ok()?)
            .with_attribute(IceControlling::new(self.tie_breaker))
            .with_attribute(Priority::new(CHECK_PRIORITY));
        if nominate {
            builder = builder.with_attribute(UseCandidate::default());
        }
        let message = builder
            .with_attribute(MessageIntegrity::new(self.key.clone()))
            .with_attribute(Fingerprint::default())
            .build();
        let mut buffer = vec![0u8; 256];
        let size = MessageEncoderBuilder::default()
            .build()
            .encode(&mut buffer, &message)
            .ok()?;
        buffer.truncate(size);
        Some(buffer)
    }

    /// Handles a STUN datagram from the server.
    pub fn handle_stun(&mut self, now: Instant, datagram: &[u8]) -> Result<(), IceClientError> {
        let decoder = MessageDecoderBuilder::default()
            .with_context(
                DecoderContextBuilder::default()
                    .with_key(self.key.clone())
                    .with_validation()
                    .build(),
            )
            .build();
        let (message, _) = decoder
            .decode(datagram)
            .map_err(|_| IceClientError::Invalid)?;
        let pending = match self.pending {
            Some(p) if message.transaction_id().as_bytes() == &p.transaction_id => p,
            _ => return Err(IceClientError::UnknownTransaction),
        };
        match message.class() {
            MessageClass::SuccessResponse => {}
            MessageClass::ErrorResponse => {
                let code = message
                    .get::<ErrorCode>()
                    .and_then(|a| a.as_error_code().ok())
                    .map_or(0, |e| e.error_code().error_code());
                return Err(IceClientError::ErrorResponse(code));
            }
            _ => return Err(IceClientError::NotAResponse),
        }
        if message.get::<MessageIntegrity>().is_none() {
            return Err(IceClientError::Unauthenticated);
        }
        self.pending = None;
        self.last_success = Some(now);
        self.next_consent_check = Some(now + self.config.consent_interval);
        if !self.connected {
            self.connected = true;
            self.events.push_back(IceClientEvent::Connected {
                rtt: now.saturating_duration_since(pending.first_sent),
            });
        }
        Ok(())
    }

    /// Lets time pass: retransmits the outstanding check, starts consent checks, and
    /// reports lost consent.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.consent_lost {
            return;
        }
        let reference = self.last_success.unwrap_or(self.started);
        if now.saturating_duration_since(reference) >= self.config.consent_timeout {
            self.consent_lost = true;
            self.pending = None;
            self.events.push_back(IceClientEvent::ConsentLost);
            return;
        }
        if let Some(mut pending) = self.pending {
            if now >= pending.next_retransmit {
                pending.interval = (pending.interval * 2).min(self.config.max_interval);
                pending.next_retransmit = now + pending.interval;
                self.pending = Some(pending);
                self.send_pending();
            }
        } else if self.next_consent_check.is_some_and(|t| now >= t) {
            self.next_consent_check = Some(now + self.config.consent_interval);
            // A fresh transaction; a lost consent check is simply superseded by the next.
            let _ = self.start_check(now, false);
        }
    }

    /// The next moment [`handle_timeout`](Self::handle_timeout) must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.consent_lost {
            return None;
        }
        let expiry = self.last_success.unwrap_or(self.started) + self.config.consent_timeout;
        let next = match self.pending {
            Some(p) => p.next_retransmit,
            None => self.next_consent_check.unwrap_or(expiry),
        };
        Some(next.min(expiry))
    }

    /// A datagram to send to the server's candidate.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// What happened.
    pub fn poll_event(&mut self) -> Option<IceClientEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
#[path = "ice_tests.rs"]
mod tests;
