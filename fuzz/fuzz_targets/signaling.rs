//! Client messages and join tokens on arbitrary text; the first byte picks the path:
//!
//! - 0: `decode_client_message`; a decoded message re-encodes to one that decodes to the
//!   same value, and a Join's token goes through `token::verify`;
//! - 1: `token::verify` on the text as a token;
//! - 2: the text is `header-json '\n' claims-json`, signed with the configured key, so
//!   that header and claims parsing after a good signature is reached;
//! - 3: sign-then-verify round trip of claims made from the text: accepted and equal
//!   while valid, `Expired` after `exp` plus the leeway.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use ring::hmac;
use sluice_signal::protocol::{
    decode_client_message, encode_client_message, ClientMessage, DEFAULT_MAX_MESSAGE_LEN,
};
use sluice_signal::token::{self, JoinClaims, SigningKey, TokenError, LEEWAY_SECS};

const NOW_UNIX: u64 = 1_800_000_000;

fn keys() -> Vec<SigningKey> {
    vec![
        SigningKey {
            id: "k1".into(),
            secret: b"0123456789abcdef0123456789abcdef".to_vec(),
        },
        SigningKey {
            id: String::new(),
            secret: b"another secret of thirty-two by!".to_vec(),
        },
    ]
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let keys = keys();
    match mode % 4 {
        0 => {
            let Ok(message) = decode_client_message(&text, DEFAULT_MAX_MESSAGE_LEN) else {
                return;
            };
            let encoded = encode_client_message(&message);
            let again = decode_client_message(&encoded, usize::MAX)
                .expect("a re-encoded valid message decodes");
            assert_eq!(again, message, "round trip changed the message");
            if let ClientMessage::Join { token: Some(t), .. } = &message {
                let _ = token::verify(t, &keys, NOW_UNIX);
            }
        }
        1 => {
            let _ = token::verify(&text, &keys, NOW_UNIX);
        }
        2 => {
            let (header, claims) = text.split_once('\n').unwrap_or((&text, ""));
            let mut t = URL_SAFE_NO_PAD.encode(header);
            t.push('.');
            t.push_str(&URL_SAFE_NO_PAD.encode(claims));
            let key = hmac::Key::new(hmac::HMAC_SHA256, &keys[usize::from(mode >> 2 & 1)].secret);
            let tag = hmac::sign(&key, t.as_bytes());
            t.push('.');
            t.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
            let _ = token::verify(&t, &keys, NOW_UNIX);
        }
        _ => {
            let mut parts = text.splitn(3, '\u{0}');
            let room = parts.next().unwrap_or_default().to_owned();
            let sub = parts.next().unwrap_or_default().to_owned();
            let name = parts.next().map(str::to_owned);
            let exp = NOW_UNIX - LEEWAY_SECS + u64::from(mode);
            let claims = JoinClaims {
                room,
                sub,
                exp,
                nbf: (mode & 0x10 != 0).then_some(NOW_UNIX - 5),
                name,
            };
            let key = &keys[usize::from(mode >> 2 & 1)];
            let signed = token::sign(&claims, key);
            if signed.len() > token::MAX_TOKEN_LEN {
                return;
            }
            assert_eq!(token::verify(&signed, &keys, NOW_UNIX), Ok(claims.clone()));
            assert_eq!(
                token::verify(&signed, &keys, exp + LEEWAY_SECS + 1),
                Err(TokenError::Expired)
            );
        }
    }
});
