//! The ICE-lite agent of one session: answers connectivity checks, tracks which remote
//! addresses are validated, nominated and still consenting (RFC 8445 lite, RFC 7675).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use ring::hmac;
use stun_rs::MessageDecoderBuilder;

use crate::config::IceConfig;
use crate::credentials::Credentials;
use crate::error::{BadRequestReason, IceError, UnauthorizedReason};
use crate::paths::{Paths, Refresh};
use crate::response::{Responder, StunErrorCode};
use crate::wire::{
    self, CheckLayout, Class, Header, FINGERPRINT_BYTES, HEADER_BYTES, MESSAGE_INTEGRITY_BYTES,
    METHOD_BINDING,
};

/// The largest binding request we process, in bytes. Browser checks are 100 to 200 bytes;
/// the bound lets integrity be checked in a stack buffer without allocating.
pub const MAX_STUN_MESSAGE_BYTES: usize = 1500;

/// Length of a MESSAGE-INTEGRITY attribute including its header.
const MESSAGE_INTEGRITY_ATTRIBUTE_BYTES: usize = 4 + MESSAGE_INTEGRITY_BYTES;

/// Responses waiting to be sent. The server drains after every datagram, so a handful is
/// plenty; past it new responses are dropped and the peer retransmits its check.
const MAX_PENDING_TRANSMITS: usize = 16;

/// A datagram the agent wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Our local address to send from (the one the check arrived on).
    pub source: SocketAddr,
    /// Where to send it.
    pub destination: SocketAddr,
    /// The encoded STUN message.
    pub contents: Vec<u8>,
}

/// What happened, for the server to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceEvent {
    /// A remote address passed a check and may now send DTLS/SRTP.
    Validated(SocketAddr),
    /// The peer nominated this address: send media there from now on.
    Nominated(SocketAddr),
    /// No valid check arrived from this address for `consent_timeout` (or it was forgotten
    /// to make room for a newer one): it is no longer permitted.
    ConsentExpired(SocketAddr),
    /// The last permitted address expired: the session has no path to its peer.
    Disconnected,
}

/// An ICE-lite agent in the controlled role, one per session.
///
/// Drive it as every protocol core of Sluice is driven: feed STUN datagrams with
/// [`handle_stun`](Self::handle_stun), drain [`poll_transmit`](Self::poll_transmit) and
/// [`poll_event`](Self::poll_event), and call [`handle_timeout`](Self::handle_timeout) at
/// [`poll_timeout`](Self::poll_timeout). Memory is bounded: at most
/// `max_candidate_pairs` addresses, a fixed number of queued transmits and events.
pub struct IceLite {
    config: IceConfig,
    local: Credentials,
    remote: Option<Credentials>,
    integrity_key: hmac::Key,
    responder: Responder,
    paths: Paths,
    nominated: Option<SocketAddr>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<IceEvent>,
    max_pending_events: usize,
}

impl core::fmt::Debug for IceLite {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IceLite")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("paths", &self.paths)
            .field("nominated", &self.nominated)
            .finish_non_exhaustive()
    }
}

/// What an accepted check asks of the agent.
struct CheckOutcome {
    use_candidate: bool,
}

impl IceLite {
    /// A new agent answering checks keyed with `local` (our `a=ice-ufrag`/`a=ice-pwd`).
    ///
    /// Fails if the credentials break RFC 8839 or the configuration is unusable.
    pub fn new(config: IceConfig, local: Credentials) -> Result<IceLite, IceError> {
        local.validate_local()?;
        if config.max_candidate_pairs == 0 {
            return Err(IceError::InvalidConfig(
                "max_candidate_pairs must be at least 1",
            ));
        }
        let responder = Responder::new(&local.pwd, config.software.as_deref())?;
        let integrity_key =
            hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, local.pwd.as_bytes());
        let max_pending_events = config
            .max_candidate_pairs
            .saturating_mul(3)
            .saturating_add(4);
        Ok(IceLite {
            paths: Paths::new(config.max_candidate_pairs),
            config,
            local,
            remote: None,
            integrity_key,
            responder,
            nominated: None,
            transmits: VecDeque::with_capacity(MAX_PENDING_TRANSMITS),
            events: VecDeque::with_capacity(max_pending_events),
            max_pending_events,
        })
    }

    /// Our credentials, for the SDP answer.
    pub fn local_credentials(&self) -> &Credentials {
        &self.local
    }

    /// The peer's credentials from its SDP offer. Until they are known, a check with our
    /// ufrag and any remote ufrag is accepted (a lite agent's response only needs our own
    /// password); afterwards the remote part of USERNAME must match `remote.ufrag`.
    pub fn set_remote_credentials(&mut self, remote: Credentials) -> Result<(), IceError> {
        remote.validate_remote()?;
        self.remote = Some(remote);
        Ok(())
    }

    /// The peer's credentials, once set.
    pub fn remote_credentials(&self) -> Option<&Credentials> {
        self.remote.as_ref()
    }

    /// Handles one STUN datagram received on `local` from `from`.
    ///
    /// `Ok(())` means a valid check was answered with a success response. `Err` means it
    /// was not accepted; for 400/401/420/487 an error response was still queued (see
    /// [`IceError::stun_error_code`]). Drain [`poll_transmit`](Self::poll_transmit) either way.
    pub fn handle_stun(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), IceError> {
        if datagram.len() > MAX_STUN_MESSAGE_BYTES {
            return Err(IceError::TooLarge {
                size_bytes: datagram.len(),
                max_bytes: MAX_STUN_MESSAGE_BYTES,
            });
        }
        let header = Header::parse(datagram).ok_or(IceError::Malformed)?;
        match header.class() {
            Class::Request => {}
            Class::Indication => {
                return Err(IceError::UnexpectedClass {
                    class: "indication",
                })
            }
            Class::SuccessResponse => {
                return Err(IceError::UnexpectedClass {
                    class: "success response",
                })
            }
            Class::ErrorResponse => {
                return Err(IceError::UnexpectedClass {
                    class: "error response",
                })
            }
        }
        if header.method() != METHOD_BINDING {
            return Err(IceError::UnsupportedMethod {
                method: header.method(),
            });
        }
        let layout = CheckLayout::scan(datagram).ok_or(IceError::Malformed)?;
        let txid = header.transaction_id;
        match self.check(datagram, &layout) {
            Ok(outcome) => {
                self.accept(now, local, from, txid, outcome);
                Ok(())
            }
            Err((error, unknown)) => {
                let code = match error {
                    IceError::BadRequest(_) => Some(StunErrorCode::BadRequest),
                    IceError::Unauthorized(_) => Some(StunErrorCode::Unauthorized),
                    IceError::UnknownAttributes { .. } => Some(StunErrorCode::UnknownAttribute),
                    IceError::RoleConflict => Some(StunErrorCode::RoleConflict),
                    _ => None,
                };
                tracing::trace!(%from, reason = error.drop_reason().as_str(), "check rejected");
                if let Some(code) = code {
                    let contents = self.responder.error(txid, code, &unknown);
                    self.queue_transmit(local, from, contents);
                }
                Err(error)
            }
        }
    }

    /// Validates a Binding request, in RFC 8489 section 9.1.3 order.
    /// On failure, also returns the unknown comprehension-required attribute types (for 420).
    fn check(
        &self,
        datagram: &[u8],
        layout: &CheckLayout<'_>,
    ) -> Result<CheckOutcome, (IceError, Vec<u16>)> {
        let reject = |e: IceError| (e, Vec::new());
        let bad = |r: BadRequestReason| reject(IceError::BadRequest(r));
        let unauthorized = |r: UnauthorizedReason| reject(IceError::Unauthorized(r));

        // FINGERPRINT: mandatory in ICE (RFC 8445 section 7), last, and correct.
        let fingerprint = layout
            .fingerprint
            .ok_or_else(|| bad(BadRequestReason::MissingFingerprint))?;
        let fingerprint: [u8; FINGERPRINT_BYTES] = fingerprint
            .try_into()
            .map_err(|_| bad(BadRequestReason::BadFingerprint))?;
        let covered = datagram
            .get(..layout.fingerprint_offset)
            .ok_or_else(|| bad(BadRequestReason::BadFingerprint))?;
        if !layout.fingerprint_is_last
            || !stun_rs::attributes::stun::Fingerprint::from(fingerprint).validate(covered)
        {
            return Err(bad(BadRequestReason::BadFingerprint));
        }

        let username = layout
            .username
            .ok_or_else(|| bad(BadRequestReason::MissingUsername))?;
        let (integrity_offset, mac) = layout
            .integrity
            .ok_or_else(|| bad(BadRequestReason::MissingMessageIntegrity))?;

        let (local_ufrag, remote_ufrag) = wire::split_username(username)
            .ok_or_else(|| unauthorized(UnauthorizedReason::UnknownUsername))?;
        let remote_matches = self
            .remote
            .as_ref()
            .is_none_or(|remote| remote.ufrag == remote_ufrag);
        if local_ufrag != self.local.ufrag || !remote_matches {
            return Err(unauthorized(UnauthorizedReason::UnknownUsername));
        }
        if !self.integrity_verifies(datagram, integrity_offset, mac) {
            return Err(unauthorized(UnauthorizedReason::BadIntegrity));
        }

        // Authenticated: now let stun-rs decode the attribute values.
        let (message, _) = MessageDecoderBuilder::default()
            .build()
            .decode(datagram)
            .map_err(|_| bad(BadRequestReason::MalformedAttribute))?;
        let unknown: Vec<u16> = message
            .attributes()
            .iter()
            .filter_map(|a| a.as_unknown().ok())
            .map(|u| u.attribute_type())
            .filter(|t| t.is_comprehension_required())
            .map(|t| t.as_u16())
            .collect();
        if !unknown.is_empty() {
            return Err((
                IceError::UnknownAttributes {
                    count: unknown.len(),
                },
                unknown,
            ));
        }
        let has = |pred: fn(&stun_rs::StunAttribute) -> bool| message.attributes().iter().any(pred);
        // RFC 8445 section 7.3.1.1: both sides think they are controlled. A lite agent
        // cannot switch to controlling, so it always answers 487 and lets the full agent
        // switch (as if our tie-breaker always won).
        if has(stun_rs::StunAttribute::is_ice_controlled) {
            return Err(reject(IceError::RoleConflict));
        }
        Ok(CheckOutcome {
            use_candidate: has(stun_rs::StunAttribute::is_use_candidate),
        })
    }

    /// Verifies MESSAGE-INTEGRITY with our password in constant time (ring), over the
    /// message up to the attribute with its length field rewritten to end after it
    /// (RFC 8489 section 14.5).
    fn integrity_verifies(&self, datagram: &[u8], integrity_offset: usize, mac: &[u8]) -> bool {
        if mac.len() != MESSAGE_INTEGRITY_BYTES {
            return false;
        }
        let mut covered = [0u8; MAX_STUN_MESSAGE_BYTES];
        let (Some(source), Some(target)) = (
            datagram.get(..integrity_offset),
            covered.get_mut(..integrity_offset),
        ) else {
            return false;
        };
        target.copy_from_slice(source);
        let Some(length) = integrity_offset
            .checked_sub(HEADER_BYTES)
            .and_then(|l| l.checked_add(MESSAGE_INTEGRITY_ATTRIBUTE_BYTES))
            .and_then(|l| u16::try_from(l).ok())
        else {
            return false;
        };
        let Some(length_field) = target.get_mut(2..4) else {
            return false;
        };
        length_field.copy_from_slice(&length.to_be_bytes());
        hmac::verify(&self.integrity_key, target, mac).is_ok()
    }

    /// Records a valid check: consent, validation, nomination, and the success response.
    fn accept(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        txid: [u8; 12],
        outcome: CheckOutcome,
    ) {
        let expires_at = now + self.config.consent_timeout;
        match self.paths.refresh(local, from, expires_at, self.nominated) {
            Refresh::Refreshed => {}
            Refresh::Added { evicted } => {
                if let Some(evicted) = evicted {
                    if self.nominated == Some(evicted) {
                        self.nominated = None;
                    }
                    tracing::debug!(%evicted, "path forgotten to make room");
                    self.push_event(IceEvent::ConsentExpired(evicted));
                }
                tracing::debug!(%from, %local, "path validated");
                self.push_event(IceEvent::Validated(from));
            }
        }
        if outcome.use_candidate && self.nominated != Some(from) {
            self.nominated = Some(from);
            tracing::debug!(%from, "path nominated");
            self.push_event(IceEvent::Nominated(from));
        }
        let contents = self.responder.success(txid, from);
        self.queue_transmit(local, from, contents);
    }

    fn queue_transmit(
        &mut self,
        source: SocketAddr,
        destination: SocketAddr,
        contents: Option<Vec<u8>>,
    ) {
        if let Some(contents) = contents {
            if self.transmits.len() < MAX_PENDING_TRANSMITS {
                self.transmits.push_back(Transmit {
                    source,
                    destination,
                    contents,
                });
            }
        }
    }

    fn push_event(&mut self, event: IceEvent) {
        if self.events.len() >= self.max_pending_events {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Lets time pass: forgets every address whose consent expired at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let had_paths = !self.paths.is_empty();
        let mut expired = Vec::new();
        self.paths.expire(now, |remote| expired.push(remote));
        for remote in expired {
            if self.nominated == Some(remote) {
                self.nominated = None;
            }
            tracing::debug!(%remote, "consent expired");
            self.push_event(IceEvent::ConsentExpired(remote));
        }
        if had_paths && self.paths.is_empty() {
            tracing::debug!("no permitted path left");
            self.push_event(IceEvent::Disconnected);
        }
    }

    /// The next moment [`handle_timeout`](Self::handle_timeout) must be called: the
    /// earliest consent expiry, or `None` with no validated address.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.paths.next_expiry()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.events.pop_front()
    }

    /// Whether DTLS/SRTP from `from` may be processed: it passed a check and its consent
    /// has not expired as of the last [`handle_timeout`](Self::handle_timeout).
    pub fn is_permitted(&self, from: SocketAddr) -> bool {
        self.paths.get(from).is_some()
    }

    /// Like [`is_permitted`](Self::is_permitted), but also judges expiry at `now`, for a
    /// caller that may run late on its timers.
    pub fn is_permitted_at(&self, now: Instant, from: SocketAddr) -> bool {
        self.paths
            .get(from)
            .is_some_and(|p| p.consent_expires_at > now)
    }

    /// Where to send media: the latest nominated address, while its consent lasts.
    pub fn nominated(&self) -> Option<SocketAddr> {
        self.nominated
    }

    /// The nominated 5-tuple as `(local, remote)`: which local address to send from.
    pub fn nominated_pair(&self) -> Option<(SocketAddr, SocketAddr)> {
        let remote = self.nominated?;
        self.paths.get(remote).map(|p| (p.local, p.remote))
    }

    /// How many remote addresses are currently validated.
    pub fn validated_count(&self) -> usize {
        self.paths.len()
    }
}
