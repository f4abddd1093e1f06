//! ICE credentials (RFC 8839 section 5.4): a username fragment and a password.

use ring::rand::SecureRandom;

use crate::error::IceError;

/// Characters allowed in ice-ufrag and ice-pwd: ALPHA / DIGIT / "+" / "/" (RFC 8839).
/// There are exactly 64, so one random byte masked to six bits picks one uniformly.
const ICE_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Length of generated ufrags: 48 random bits, twice the 24 that RFC 8445 section 5.3 asks for.
pub const GENERATED_UFRAG_CHARS: usize = 8;
/// Length of generated passwords: 144 random bits, above the 128 that RFC 8445 asks for.
pub const GENERATED_PWD_CHARS: usize = 24;

/// RFC 8839 bounds.
const MIN_UFRAG_CHARS: usize = 4;
const MIN_PWD_CHARS: usize = 22;
const MAX_CREDENTIAL_CHARS: usize = 256;

/// One side's ICE username fragment and password, as written in SDP
/// (`a=ice-ufrag`, `a=ice-pwd`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The username fragment: public, it appears in every check's USERNAME.
    pub ufrag: String,
    /// The password: the short-term key for MESSAGE-INTEGRITY.
    pub pwd: String,
}

impl core::fmt::Debug for Credentials {
    // The password must never reach a log line.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Credentials")
            .field("ufrag", &self.ufrag)
            .field("pwd", &"<redacted>")
            .finish()
    }
}

fn is_ice_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'+' || byte == b'/'
}

fn random_ice_string(rng: &dyn SecureRandom, chars: usize) -> Result<String, IceError> {
    let mut bytes = vec![0u8; chars];
    rng.fill(&mut bytes).map_err(|_| IceError::RandomFailure)?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ICE_CHARS[usize::from(b & 0x3F)]))
        .collect())
}

impl Credentials {
    /// Fresh local credentials for one session, drawn from `rng`
    /// (pass `&ring::rand::SystemRandom::new()`; tests may pass a fixed generator).
    pub fn generate(rng: &dyn SecureRandom) -> Result<Credentials, IceError> {
        Ok(Credentials {
            ufrag: random_ice_string(rng, GENERATED_UFRAG_CHARS)?,
            pwd: random_ice_string(rng, GENERATED_PWD_CHARS)?,
        })
    }

    /// Checks the RFC 8839 rules for credentials we issue: ufrag 4..=256 and pwd 22..=256
    /// ice-chars.
    pub fn validate_local(&self) -> Result<(), IceError> {
        check_ice_string(
            &self.ufrag,
            MIN_UFRAG_CHARS,
            "ufrag must be 4..=256 ice-chars",
        )?;
        check_ice_string(&self.pwd, MIN_PWD_CHARS, "pwd must be 22..=256 ice-chars")
    }

    /// Checks credentials from a peer's SDP. Lenient on the minimum lengths (a lite agent
    /// never uses the remote password) but strict on the character set and the maximum,
    /// so what we store stays small.
    pub fn validate_remote(&self) -> Result<(), IceError> {
        check_ice_string(&self.ufrag, 1, "remote ufrag must be 1..=256 ice-chars")?;
        if self.pwd.len() > MAX_CREDENTIAL_CHARS {
            return Err(IceError::InvalidCredentials("remote pwd longer than 256"));
        }
        Ok(())
    }
}

fn check_ice_string(value: &str, min_chars: usize, why: &'static str) -> Result<(), IceError> {
    let ok =
        (min_chars..=MAX_CREDENTIAL_CHARS).contains(&value.len()) && value.bytes().all(is_ice_char);
    if ok {
        Ok(())
    } else {
        Err(IceError::InvalidCredentials(why))
    }
}
