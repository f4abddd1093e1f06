//! Builds connectivity checks the way a browser does, with stun-rs, and reads responses.
#![allow(dead_code)]

use std::net::SocketAddr;

use stun_rs::attributes::ice::{IceControlled, IceControlling, Priority, UseCandidate};
use stun_rs::attributes::stun::{
    ErrorCode, Fingerprint, MessageIntegrity, UserName, XorMappedAddress,
};
use stun_rs::methods::BINDING;
use stun_rs::{
    DecoderContextBuilder, HMACKey, MessageClass, MessageDecoderBuilder, MessageEncoderBuilder,
    StunMessage, StunMessageBuilder,
};

pub const SERVER_UFRAG: &str = "srvU";
pub const SERVER_PWD: &str = "serverPasswordOf24Chars/";
pub const BROWSER_UFRAG: &str = "brws";

/// What goes into a check; every field defaults to what Chrome sends.
#[derive(Clone, Debug)]
pub struct Check {
    pub username: Option<String>,
    pub integrity_pwd: Option<String>,
    pub fingerprint: bool,
    pub controlling: bool,
    pub controlled: bool,
    pub use_candidate: bool,
    pub transaction_id: [u8; 12],
}

impl Default for Check {
    fn default() -> Self {
        Check {
            username: Some(format!("{SERVER_UFRAG}:{BROWSER_UFRAG}")),
            integrity_pwd: Some(SERVER_PWD.to_string()),
            fingerprint: true,
            controlling: true,
            controlled: false,
            use_candidate: false,
            transaction_id: [7; 12],
        }
    }
}

impl Check {
    pub fn nominating() -> Check {
        Check {
            use_candidate: true,
            ..Check::default()
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut builder = StunMessageBuilder::new(BINDING, MessageClass::Request)
            .with_transaction_id(self.transaction_id.into());
        if let Some(username) = &self.username {
            builder = builder.with_attribute(UserName::new(username).unwrap());
        }
        if self.controlling {
            builder = builder.with_attribute(IceControlling::new(0x1122_3344_5566_7788));
        }
        if self.controlled {
            builder = builder.with_attribute(IceControlled::new(0x1122_3344_5566_7788));
        }
        builder = builder.with_attribute(Priority::new(1_845_501_695));
        if self.use_candidate {
            builder = builder.with_attribute(UseCandidate::default());
        }
        if let Some(pwd) = &self.integrity_pwd {
            builder = builder
                .with_attribute(MessageIntegrity::new(HMACKey::new_short_term(pwd).unwrap()));
        }
        if self.fingerprint {
            builder = builder.with_attribute(Fingerprint::default());
        }
        let message = builder.build();
        let mut buffer = vec![0u8; 512];
        let size = MessageEncoderBuilder::default()
            .build()
            .encode(&mut buffer, &message)
            .unwrap();
        buffer.truncate(size);
        buffer
    }
}

/// Decodes a response, validating FINGERPRINT and (with `pwd`) MESSAGE-INTEGRITY.
pub fn decode_response(bytes: &[u8], pwd: Option<&str>) -> StunMessage {
    let mut ctx = DecoderContextBuilder::default().with_validation();
    if let Some(pwd) = pwd {
        ctx = ctx.with_key(HMACKey::new_short_term(pwd).unwrap());
    }
    let decoder = MessageDecoderBuilder::default()
        .with_context(ctx.build())
        .build();
    let (message, size) = decoder
        .decode(bytes)
        .expect("response must decode and validate");
    assert_eq!(size, bytes.len());
    message
}

pub fn has_integrity(message: &StunMessage) -> bool {
    message.get::<MessageIntegrity>().is_some()
}

pub fn has_fingerprint(message: &StunMessage) -> bool {
    message.get::<Fingerprint>().is_some()
}

pub fn error_code(message: &StunMessage) -> u16 {
    message
        .get::<ErrorCode>()
        .expect("ERROR-CODE present")
        .as_error_code()
        .unwrap()
        .error_code()
        .error_code()
}

pub fn mapped_address(message: &StunMessage) -> SocketAddr {
    *message
        .get::<XorMappedAddress>()
        .expect("XOR-MAPPED-ADDRESS present")
        .as_xor_mapped_address()
        .unwrap()
        .socket_address()
}

/// CRC-32 (ISO-HDLC) for hand-built messages; bitwise, test-only.
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

/// Appends MESSAGE-INTEGRITY (keyed with `pwd`) and FINGERPRINT to a message built
/// without them, fixing the length field as RFC 8489 requires. Lets tests carry
/// attributes stun-rs cannot encode.
pub fn seal(mut message: Vec<u8>, pwd: &str) -> Vec<u8> {
    let set_length = |m: &mut Vec<u8>, extra: usize| {
        let length = (m.len() - 20 + extra) as u16;
        m[2..4].copy_from_slice(&length.to_be_bytes());
    };
    set_length(&mut message, 24);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, pwd.as_bytes());
    let tag = ring::hmac::sign(&key, &message);
    message.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
    message.extend_from_slice(tag.as_ref());
    set_length(&mut message, 8);
    let fingerprint = crc32(&message) ^ 0x5354_554E;
    message.extend_from_slice(&[0x80, 0x28, 0x00, 0x04]);
    message.extend_from_slice(&fingerprint.to_be_bytes());
    message
}

/// A deterministic xorshift64* generator for fuzz-like loops.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
}
