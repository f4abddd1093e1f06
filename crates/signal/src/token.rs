//! Join tokens: compact JWS (RFC 7515) with HS256 only (RFC 7518 section 3.2).
//!
//! An application backend mints a token per participant with a secret it shares
//! with Sluice; the browser passes it in `join`. Only HS256 is accepted: `alg` is
//! never trusted to pick the algorithm (so `none` and algorithm confusion are out),
//! and the signature is checked by `ring` in constant time before the claims are
//! even parsed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest token accepted, in bytes; a join token has a few short claims.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// A named HMAC secret. Several keys allow rotation: new tokens carry the new
/// key's id as `kid` while tokens signed with the old key stay valid.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// The key id written to and matched against the `kid` header.
    pub id: String,
    /// The shared secret (at least 32 random bytes recommended).
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The claims of a join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinClaims {
    /// The only room this token admits to.
    pub room: String,
    /// The participant's identity in the application.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Not valid before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Display name the application vouches for (overrides the one in `join`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Why a token was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("token is longer than {max_len} bytes")]
    TooLong {
        /// The limit.
        max_len: usize,
    },
    /// Not three base64url parts, or a part is not the JSON it must be.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` is not `HS256` (including `none`).
    #[error("unsupported token algorithm (only HS256)")]
    UnsupportedAlgorithm,
    /// The header lists `crit` extensions, none of which we understand.
    #[error("token has critical header extensions")]
    CriticalHeader,
    /// The `kid` header names no configured key.
    #[error("token key id is not configured")]
    UnknownKey,
    /// No key is configured.
    #[error("no token signing keys configured")]
    NoKeys,
    /// No key verifies the signature.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing)]
    crit: Option<serde_json::Value>,
}

fn hmac_key(key: &SigningKey) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, &key.secret)
}

/// Signs `claims` with `key` (HS256, `kid` = `key.id` when non-empty).
pub fn sign(claims: &JoinClaims, key: &SigningKey) -> String {
    let header = Header {
        alg: "HS256".to_owned(),
        typ: Some("JWT".to_owned()),
        kid: (!key.id.is_empty()).then(|| key.id.clone()),
        crit: None,
    };
    // Serializing structs of strings and integers cannot fail.
    let header_json = serde_json::to_vec(&header).unwrap_or_default();
    let claims_json = serde_json::to_vec(claims).unwrap_or_default();
    let mut token = URL_SAFE_NO_PAD.encode(header_json);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims_json));
    let tag = hmac::sign(&hmac_key(key), token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
    token
}

/// Verifies `token` against `keys` at `now_unix` (seconds since the Unix epoch).
///
/// The key is chosen by the `kid` header when present, otherwise each key is tried.
/// `exp` is required; `exp` and `nbf` get [`LEEWAY_SECS`] of clock skew.
pub fn verify(token: &str, keys: &[SigningKey], now_unix: u64) -> Result<JoinClaims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong {
            max_len: MAX_TOKEN_LEN,
        });
    }
    if keys.is_empty() {
        return Err(TokenError::NoKeys);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("expected three dot-separated parts"));
    };

    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| TokenError::Malformed("header is not base64url"))?;
    let header: Header = serde_json::from_slice(&header_json)
        .map_err(|_| TokenError::Malformed("header is not a JSON object with alg"))?;
    if header.alg != "HS256" {
        return Err(TokenError::UnsupportedAlgorithm);
    }
    if header.crit.is_some() {
        return Err(TokenError::CriticalHeader);
    }
    if header
        .typ
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
    {
        return Err(TokenError::Malformed("typ is not JWT"));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| TokenError::Malformed("signature is not base64url"))?;

    // The signing input is the first two parts exactly as received.
    let signing_input_len = header_b64.len() + 1 + claims_b64.len();
    let signing_input = token
        .get(..signing_input_len)
        .ok_or(TokenError::Malformed("signing input"))?;

    let verified = match &header.kid {
        Some(kid) => {
            let key = keys
                .iter()
                .find(|k| &k.id == kid)
                .ok_or(TokenError::UnknownKey)?;
            hmac::verify(&hmac_key(key), signing_input.as_bytes(), &signature).is_ok()
        }
        None => keys
            .iter()
            .any(|key| hmac::verify(&hmac_key(key), signing_input.as_bytes(), &signature).is_ok()),
    };
    if !verified {
        return Err(TokenError::BadSignature);
    }

    let claims_json = URL_SAFE_NO_PAD
        .decode(claims_b64)
        .map_err(|_| TokenError::Malformed("claims are not base64url"))?;
    let claims: JoinClaims = serde_json::from_slice(&claims_json)
        .map_err(|_| TokenError::Malformed("claims lack room, sub or exp"))?;
    if now_unix > claims.exp.saturating_add(LEEWAY_SECS) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = claims.nbf {
        if nbf > now_unix.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::NotYetValid);
        }
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn key(id: &str, secret: &str) -> SigningKey {
        SigningKey {
            id: id.to_owned(),
            secret: secret.as_bytes().to_vec(),
        }
    }

    fn claims() -> JoinClaims {
        JoinClaims {
            room: "standup".to_owned(),
            sub: "user-17".to_owned(),
            exp: NOW + 600,
            nbf: None,
            name: Some("Ada".to_owned()),
        }
    }

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Builds a token with arbitrary header and payload JSON, signed with `key`.
    fn forge(header: &str, payload: &str, key: &SigningKey) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let tag = hmac::sign(&hmac_key(key), input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    #[test]
    fn valid_token_round_trips_its_claims() {
        let k = key("k1", "a secret of reasonable length!!!");
        let token = sign(&claims(), &k);
        assert_eq!(verify(&token, &[k], NOW), Ok(claims()));
    }

    #[test]
    fn token_signed_with_another_key_is_rejected() {
        let token = sign(&claims(), &key("k1", "right secret"));
        assert_eq!(
            verify(&token, &[key("k1", "wrong secret")], NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn expired_token_is_rejected_after_the_leeway_only() {
        let k = key("", "secret");
        let token = sign(&claims(), &k);
        let exp = claims().exp;
        assert!(verify(&token, std::slice::from_ref(&k), exp + LEEWAY_SECS).is_ok());
        assert_eq!(
            verify(&token, &[k], exp + LEEWAY_SECS + 1),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn token_before_nbf_is_rejected() {
        let k = key("", "secret");
        let mut c = claims();
        c.nbf = Some(NOW + 120);
        let token = sign(&c, &k);
        assert_eq!(
            verify(&token, std::slice::from_ref(&k), NOW),
            Err(TokenError::NotYetValid)
        );
        assert!(verify(&token, &[k], NOW + 120 - LEEWAY_SECS).is_ok());
    }

    #[test]
    fn alg_none_is_rejected_even_without_signature() {
        let k = key("", "secret");
        let payload = serde_json::to_string(&claims()).unwrap();
        let token = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&payload)
        );
        assert_eq!(
            verify(&token, &[k], NOW),
            Err(TokenError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn other_algorithms_are_rejected_even_with_a_valid_mac() {
        let k = key("", "secret");
        let payload = serde_json::to_string(&claims()).unwrap();
        for alg in ["HS512", "RS256", "hs256", "ES256"] {
            let token = forge(&format!(r#"{{"alg":"{alg}"}}"#), &payload, &k);
            assert_eq!(
                verify(&token, std::slice::from_ref(&k), NOW),
                Err(TokenError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
    }

    #[test]
    fn tampered_payload_is_rejected() {
        let k = key("k1", "secret");
        let token = sign(&claims(), &k);
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut evil = claims();
        evil.room = "boardroom".to_owned();
        let evil_payload = b64(&serde_json::to_string(&evil).unwrap());
        parts[1] = &evil_payload;
        assert_eq!(
            verify(&parts.join("."), &[k], NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn kid_selects_the_key_and_unknown_kid_is_rejected() {
        let old = key("2023", "old secret");
        let new = key("2024", "new secret");
        let keys = [old.clone(), new.clone()];
        assert!(verify(&sign(&claims(), &old), &keys, NOW).is_ok());
        assert!(verify(&sign(&claims(), &new), &keys, NOW).is_ok());
        // A kid pointing at a different configured key must not fall back to trying others.
        let payload = serde_json::to_string(&claims()).unwrap();
        let mislabelled = forge(r#"{"alg":"HS256","kid":"2023"}"#, &payload, &new);
        assert_eq!(
            verify(&mislabelled, &keys, NOW),
            Err(TokenError::BadSignature)
        );
        let unknown = forge(r#"{"alg":"HS256","kid":"2099"}"#, &payload, &new);
        assert_eq!(verify(&unknown, &keys, NOW), Err(TokenError::UnknownKey));
    }

    #[test]
    fn without_kid_every_key_is_tried() {
        let a = key("", "secret a");
        let b = key("", "secret b");
        let token = sign(&claims(), &b);
        assert_eq!(verify(&token, &[a, b], NOW), Ok(claims()));
    }

    #[test]
    fn malformed_tokens_are_typed_errors() {
        let k = key("", "secret");
        let good = sign(&claims(), &k);
        let cases = [
            String::new(),
            "a.b".to_owned(),
            format!("{good}.extra"),
            "!!!.e30.AAAA".to_owned(),
            format!("{}.e30.AAAA", b64("[1,2]")),
            format!("{}=", good), // padding is not base64url-no-pad
        ];
        for token in &cases {
            assert!(
                matches!(
                    verify(token, std::slice::from_ref(&k), NOW),
                    Err(TokenError::Malformed(_))
                ),
                "{token}"
            );
        }
        let oversized = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            verify(&oversized, std::slice::from_ref(&k), NOW),
            Err(TokenError::TooLong {
                max_len: MAX_TOKEN_LEN
            })
        );
        assert_eq!(verify(&good, &[], NOW), Err(TokenError::NoKeys));
    }

    #[test]
    fn validly_signed_claims_missing_exp_are_rejected() {
        let k = key("", "secret");
        let token = forge(r#"{"alg":"HS256"}"#, r#"{"room":"r","sub":"s"}"#, &k);
        assert!(matches!(
            verify(&token, &[k], NOW),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn crit_header_is_rejected() {
        let k = key("", "secret");
        let payload = serde_json::to_string(&claims()).unwrap();
        let token = forge(r#"{"alg":"HS256","crit":["exp"]}"#, &payload, &k);
        assert_eq!(verify(&token, &[k], NOW), Err(TokenError::CriticalHeader));
    }

    #[test]
    fn debug_output_does_not_leak_the_secret() {
        let text = format!("{:?}", key("k", "hunter2"));
        assert!(!text.contains("hunter2"));
    }
}
