//! Agent configuration, with the documented defaults.

use std::time::Duration;

/// Longest SOFTWARE value we put in responses, in bytes (RFC 8489 allows 763; we keep
/// responses small because an unauthenticated request can trigger one).
pub const MAX_SOFTWARE_BYTES: usize = 128;

/// Configuration of one [`IceLite`](crate::IceLite) agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceConfig {
    /// How long a validated address stays permitted without a fresh valid check
    /// (RFC 7675 section 5.1: 30 s).
    pub consent_timeout: Duration,
    /// How many remote addresses the agent remembers at once; bounds memory. When full,
    /// the address whose consent expires first (preferring one not nominated) is forgotten.
    pub max_candidate_pairs: usize,
    /// Optional SOFTWARE attribute in success responses (at most [`MAX_SOFTWARE_BYTES`]).
    pub software: Option<String>,
}

impl Default for IceConfig {
    fn default() -> Self {
        IceConfig {
            consent_timeout: Duration::from_secs(30),
            max_candidate_pairs: 8,
            software: None,
        }
    }
}
