//! `a=fingerprint` values (RFC 8122): SHA-256 only.

use std::fmt::Write as _;

/// The only hash function Sluice accepts for certificate fingerprints.
pub const SHA256_NAME: &str = "sha-256";

/// Formats a SHA-256 digest as upper-case hex bytes separated by colons.
pub fn format_sha256(digest: &[u8; 32]) -> String {
    let mut out = String::with_capacity(32 * 3);
    for (i, byte) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{byte:02X}");
    }
    out
}

/// Parses `AA:BB:...` (32 bytes, either case) into a digest; `None` if malformed.
pub fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let mut digest = [0u8; 32];
    let mut parts = text.split(':');
    for slot in digest.iter_mut() {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *slot = u8::from_str_radix(part, 16).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_fingerprint_round_trips_in_upper_case() {
        let digest: [u8; 32] = std::array::from_fn(|i| (i * 7 + 0xA0) as u8);
        let text = format_sha256(&digest);
        assert_eq!(text.len(), 32 * 3 - 1);
        assert!(text.starts_with("A0:A7:AE:"));
        assert_eq!(parse_sha256(&text), Some(digest));
        assert_eq!(parse_sha256(&text.to_lowercase()), Some(digest));
    }

    #[test]
    fn malformed_fingerprints_are_rejected() {
        let good = format_sha256(&[0xAB; 32]);
        assert_eq!(parse_sha256(&good[..good.len() - 3]), None); // 31 bytes
        assert_eq!(parse_sha256(&format!("{good}:00")), None); // 33 bytes
        assert_eq!(parse_sha256(&good.replace("AB:AB", "ABAB")), None);
        assert_eq!(parse_sha256(&good.replacen("AB", "G1", 1)), None);
        assert_eq!(parse_sha256(&good.replacen("AB", "+1", 1)), None);
        assert_eq!(parse_sha256(""), None);
    }
}
