//! Building STUN Binding requests that pass the ICE agent's authentication, so that
//! fuzzed attribute bytes reach the code behind MESSAGE-INTEGRITY and FINGERPRINT.

use ring::hmac;

/// The agent's local ufrag in every STUN target.
pub const LOCAL_UFRAG: &str = "srvU";
/// The agent's local password (RFC 8839: at least 22 characters).
pub const LOCAL_PWD: &str = "serverPasswordOf24Chars/";
/// The remote ufrag the agent is told about when a target sets remote credentials.
pub const REMOTE_UFRAG: &str = "brws";
/// The remote password that goes with [`REMOTE_UFRAG`].
pub const REMOTE_PWD: &str = "browserPasswordOf24Char/";

const HEADER_BYTES: usize = 20;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_FINGERPRINT: u16 = 0x8028;
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// CRC-32 (ISO-HDLC), bitwise: only for building fuzz inputs, never on a hot path.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn set_length(message: &mut [u8], body_len: usize) {
    let len = u16::try_from(body_len).unwrap_or(u16::MAX).to_be_bytes();
    if let Some(field) = message.get_mut(2..4) {
        field.copy_from_slice(&len);
    }
}

/// Appends one attribute (type, length, value, zero padding to 4 bytes).
pub fn push_attribute(message: &mut Vec<u8>, attr_type: u16, value: &[u8]) {
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    message.extend_from_slice(&attr_type.to_be_bytes());
    message.extend_from_slice(&len.to_be_bytes());
    message.extend_from_slice(value.get(..usize::from(len)).unwrap_or(value));
    while !message.len().is_multiple_of(4) {
        message.push(0);
    }
}

/// A Binding request header (length 0 for now) with `transaction_id`.
pub fn binding_request(transaction_id: [u8; 12]) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0x00, 0x00];
    m.extend_from_slice(&MAGIC_COOKIE);
    m.extend_from_slice(&transaction_id);
    m
}

/// Appends a USERNAME of `local:remote`.
pub fn push_username(message: &mut Vec<u8>, local: &str, remote: &str) {
    let username = format!("{local}:{remote}");
    push_attribute(message, ATTR_USERNAME, username.as_bytes());
}

/// Appends MESSAGE-INTEGRITY keyed with `pwd` and FINGERPRINT to a message built without
/// them, fixing the length field before each as RFC 8489 sections 14.5 and 14.7 require.
/// Whatever the attribute bytes are, the result authenticates.
pub fn seal(mut message: Vec<u8>, pwd: &str) -> Vec<u8> {
    if message.len() < HEADER_BYTES {
        message.resize(HEADER_BYTES, 0);
    }
    let body = message.len() - HEADER_BYTES;
    set_length(&mut message, body + 24);
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, pwd.as_bytes());
    let tag = hmac::sign(&key, &message);
    push_attribute(&mut message, ATTR_MESSAGE_INTEGRITY, tag.as_ref());
    set_length(&mut message, body + 24 + 8);
    let fingerprint = crc32(&message) ^ FINGERPRINT_XOR;
    push_attribute(&mut message, ATTR_FINGERPRINT, &fingerprint.to_be_bytes());
    message
}

/// A Binding request as Chrome sends it (USERNAME, ICE-CONTROLLING, PRIORITY, optional
/// USE-CANDIDATE), sealed with [`LOCAL_PWD`]: the seed of every STUN corpus.
pub fn chrome_like_check(transaction_id: [u8; 12], nominate: bool) -> Vec<u8> {
    let mut m = binding_request(transaction_id);
    push_username(&mut m, LOCAL_UFRAG, REMOTE_UFRAG);
    push_attribute(&mut m, 0x802A, &0x1122_3344_5566_7788u64.to_be_bytes()); // ICE-CONTROLLING
    push_attribute(&mut m, 0x0024, &1_845_501_695u32.to_be_bytes()); // PRIORITY
    if nominate {
        push_attribute(&mut m, 0x0025, &[]); // USE-CANDIDATE
    }
    seal(m, LOCAL_PWD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
