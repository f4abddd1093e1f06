//! Engine configuration, shared by every connection of a process.

use std::sync::Arc;
use std::time::Duration;

use crate::cert::Certificate;
use crate::crypto::{CipherSuite, NamedGroup};
use crate::srtp::SrtpProfile;

/// The loss-recovery behaviours that distinguish this engine from the stacks in
/// the seed's story. They exist as switches only so that their value can be measured
/// (docs/resilience.md); production keeps them all on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// RTT-adaptive retransmission timer with exponential backoff. Off: a fixed timer of
    /// [`Config::initial_rto`] with no backoff, as the `dtls` crate does with 1 s.
    pub adaptive_timer: bool,
    /// Re-send our flight at once when the peer repeats its previous flight.
    pub resend_on_repeat: bool,
    /// Keep our final flight after completion and re-send it when the peer repeats its own.
    pub retain_final_flight: bool,
    /// Send a retransmitted flight of one or two datagrams twice.
    pub redundant_retransmission: bool,
}

impl Recovery {
    /// Everything on (the default).
    pub const FULL: Recovery = Recovery {
        adaptive_timer: true,
        resend_on_repeat: true,
        retain_final_flight: true,
        redundant_retransmission: true,
    };
    /// Everything off: what a naive engine does.
    pub const NONE: Recovery = Recovery {
        adaptive_timer: false,
        resend_on_repeat: false,
        retain_final_flight: false,
        redundant_retransmission: false,
    };
}

impl Default for Recovery {
    fn default() -> Self {
        Self::FULL
    }
}

/// A DTLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtlsVersion {
    /// DTLS 1.2 (RFC 6347).
    Dtls12,
    /// DTLS 1.3 (RFC 9147).
    Dtls13,
}

impl DtlsVersion {
    /// "1.2" or "1.3", as configuration files and metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dtls12 => "1.2",
            Self::Dtls13 => "1.3",
        }
    }
}

/// Engine settings. Build with [`Config::new`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our certificate and key.
    pub certificate: Arc<Certificate>,
    /// Cipher suites in preference order, DTLS 1.3's and 1.2's in one list (each version
    /// picks from its own). A list with no 1.3 suite leaves 1.3 on its defaults.
    pub cipher_suites: Vec<CipherSuite>,
    /// Key exchange groups in preference order. The X25519MLKEM768 hybrid is first by
    /// default; DTLS 1.2 skips it, having no way to carry it.
    pub groups: Vec<NamedGroup>,
    /// SRTP profiles in preference order (the server's order decides).
    pub srtp_profiles: Vec<SrtpProfile>,
    /// Every datagram we send, headers included, fits in this many bytes.
    pub max_datagram_size: usize,
    /// The first retransmission timeout (RFC 9147 recommends 400 ms for DTLS-SRTP).
    pub initial_rto: Duration,
    /// The cap for the doubling retransmission timeout.
    pub max_rto: Duration,
    /// A handshake not complete after this long fails.
    pub handshake_timeout: Duration,
    /// How long the final flight is kept after completion to answer a peer that missed it.
    pub final_flight_retention: Duration,
    /// Bound on buffered handshake bytes per connection; a longer message is fatal.
    pub max_handshake_buffer: usize,
    /// Send a HelloVerifyRequest with a stateless cookie before committing state. Off by
    /// default: under WebRTC, ICE has already verified the peer's address.
    pub hello_verify: bool,
    /// Key for cookie HMACs; random per process.
    pub cookie_secret: [u8; 32],
    /// Loss-recovery switches (all on by default).
    pub recovery: Recovery,
    /// The versions we speak. With both, a client offers 1.3 and accepts 1.2, and a server
    /// answers 1.3 to a client that offers it and 1.2 otherwise, with the downgrade
    /// sentinel of RFC 8446 section 4.1.3. Order does not matter: 1.3 is preferred.
    pub versions: Vec<DtlsVersion>,
}

impl Config {
    /// Whether DTLS 1.3 is enabled.
    pub fn speaks_13(&self) -> bool {
        self.versions.contains(&DtlsVersion::Dtls13)
    }

    /// Whether DTLS 1.2 is enabled.
    pub fn speaks_12(&self) -> bool {
        self.versions.contains(&DtlsVersion::Dtls12)
    }
}

/// The smallest datagram size we can fragment a flight into.
pub const MIN_DATAGRAM_SIZE: usize = 128;

impl Config {
    /// Defaults: DTLS 1.3 preferred and 1.2 accepted, 1200-byte datagrams, 400 ms initial
    /// timeout doubling to 3 s, a 30 s deadline, 64 KiB of reassembly buffer, no
    /// HelloVerifyRequest.
    pub fn new(certificate: Arc<Certificate>) -> Self {
        let mut cookie_secret = [0u8; 32];
        // A failing system RNG leaves a zero key; cookies then only lose their secrecy,
        // not their function, and hello_verify is off by default.
        let _ =
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut cookie_secret);
        Self {
            certificate,
            cipher_suites: CipherSuite::TLS13
                .into_iter()
                .chain(CipherSuite::ALL)
                .collect(),
            groups: NamedGroup::ALL.to_vec(),
            srtp_profiles: SrtpProfile::DEFAULT_PREFERENCE.to_vec(),
            max_datagram_size: 1200,
            initial_rto: Duration::from_millis(400),
            max_rto: Duration::from_secs(3),
            handshake_timeout: Duration::from_secs(30),
            final_flight_retention: Duration::from_secs(30),
            max_handshake_buffer: 64 * 1024,
            hello_verify: false,
            cookie_secret,
            recovery: Recovery::FULL,
            versions: vec![DtlsVersion::Dtls13, DtlsVersion::Dtls12],
        }
    }
}
