//! The crate's one error type.

use thiserror::Error;

/// Errors from parsing DTLS views, validating a [`crate::LinkConfig`] or reading
/// relay options. Parsing errors carry enough context to find the bad byte.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum NetsimError {
    /// A record or handshake header, or the body it announces, runs past the end of
    /// its container.
    #[error("truncated {what} at byte {offset}: needed {needed} bytes, {remaining} remain")]
    Truncated {
        /// Which structure was being read.
        what: &'static str,
        /// Offset of the structure inside its container.
        offset: usize,
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes left in the container.
        remaining: usize,
    },
    /// A probability outside `0.0..=1.0` (or NaN).
    #[error("{field} must be a probability in 0..=1, got {value}")]
    InvalidProbability {
        /// The configuration field.
        field: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A configuration value that cannot work (e.g. a rate of 0 bit/s).
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The configuration field.
        field: &'static str,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A relay command-line option that is unknown, lacks a value or does not parse.
    #[error("option --{option}: {reason}")]
    InvalidOption {
        /// The option name without the leading dashes.
        option: String,
        /// What was wrong with it.
        reason: String,
    },
}
