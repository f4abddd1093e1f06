//! The TLS 1.3 key schedule (RFC 8446 section 7) as DTLS 1.3 labels it (RFC 9147 section
//! 5.9: "dtls13" in place of "tls13 "), record protection with the unified header's
//! record-number encryption (RFC 9147 section 4.2.3), and the RFC 8446 exporter.
//!
//! Every primitive is ring's: HKDF-Extract is one HMAC (RFC 5869 defines it so, and ring's
//! `hkdf::Salt` keeps the result opaque, while the schedule needs secrets as bytes to feed
//! the next step), HKDF-Expand is `ring::hkdf`, AEAD is `ring::aead`, and the record-number
//! mask is ring's QUIC header-protection mask, which is the same computation.

use ring::{aead, digest, hkdf, hmac};

use crate::Error;

/// The TLS 1.3 cipher suites we implement. Both hash with SHA-256, so one schedule serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suite13 {
    /// TLS_AES_128_GCM_SHA256 (0x1301), the one every DTLS 1.3 stack offers.
    Aes128GcmSha256,
    /// TLS_CHACHA20_POLY1305_SHA256 (0x1303).
    Chacha20Poly1305Sha256,
}

impl Suite13 {
    pub(crate) const ALL: [Suite13; 2] = [Self::Aes128GcmSha256, Self::Chacha20Poly1305Sha256];

    pub(crate) fn to_u16(self) -> u16 {
        match self {
            Self::Aes128GcmSha256 => 0x1301,
            Self::Chacha20Poly1305Sha256 => 0x1303,
        }
    }

    pub(crate) fn from_u16(v: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.to_u16() == v)
    }

    fn aead(self) -> &'static aead::Algorithm {
        match self {
            Self::Aes128GcmSha256 => &aead::AES_128_GCM,
            Self::Chacha20Poly1305Sha256 => &aead::CHACHA20_POLY1305,
        }
    }

    fn mask(self) -> &'static aead::quic::Algorithm {
        match self {
            Self::Aes128GcmSha256 => &aead::quic::AES_128,
            Self::Chacha20Poly1305Sha256 => &aead::quic::CHACHA20,
        }
    }

    fn key_len(self) -> usize {
        self.aead().key_len()
    }

    /// Bytes a protected record adds to its content: the unified header (flags, 16-bit
    /// sequence, length), the inner content type and the AEAD tag.
    pub(crate) fn record_overhead(self) -> usize {
        5 + 1 + self.aead().tag_len()
    }
}

/// Hash length of SHA-256, the transcript hash of both suites.
pub(crate) const HASH_LEN: usize = 32;

/// SHA-256 of `data`.
pub(crate) fn hash(data: &[u8]) -> [u8; HASH_LEN] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(d.as_ref());
    out
}

/// HKDF-Extract(salt, ikm) = HMAC-Hash(salt, ikm) (RFC 5869 section 2.2).
fn extract(salt: &[u8], ikm: &[u8]) -> [u8; HASH_LEN] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, salt), ikm);
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The label prefix: "tls13 " in TLS 1.3, "dtls13" in DTLS 1.3 (RFC 9147 section 5.9).
pub(crate) const DTLS13_LABEL_PREFIX: &[u8] = b"dtls13";

/// HKDF-Expand-Label (RFC 8446 section 7.1) with the given label prefix.
fn expand_label_with(
    prefix: &[u8],
    secret: &[u8],
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) -> Result<(), Error> {
    let length = (out.len() as u16).to_be_bytes();
    let label_len = [(prefix.len() + label.len()) as u8];
    let context_len = [context.len() as u8];
    let info: [&[u8]; 6] = [&length, &label_len, prefix, label, &context_len, context];
    hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, secret)
        .expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| Error::Crypto("hkdf expand"))
}

pub(crate) fn expand_label(
    secret: &[u8],
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) -> Result<(), Error> {
    expand_label_with(DTLS13_LABEL_PREFIX, secret, label, context, out)
}

fn derive_secret_with(
    prefix: &[u8],
    secret: &[u8],
    label: &[u8],
    transcript_hash: &[u8],
) -> Result<[u8; HASH_LEN], Error> {
    let mut out = [0u8; HASH_LEN];
    expand_label_with(prefix, secret, label, transcript_hash, &mut out)?;
    Ok(out)
}

/// The secrets of one handshake, computed in schedule order.
pub(crate) struct Schedule {
    prefix: &'static [u8],
    handshake_secret: [u8; HASH_LEN],
    pub(crate) client_handshake: [u8; HASH_LEN],
    pub(crate) server_handshake: [u8; HASH_LEN],
}

/// The secrets after the server's Finished.
pub(crate) struct ApplicationSecrets {
    pub(crate) client: [u8; HASH_LEN],
    pub(crate) server: [u8; HASH_LEN],
    pub(crate) exporter: [u8; HASH_LEN],
}

impl Schedule {
    /// From the (EC)DHE shared secret and the hash of ClientHello..ServerHello. No PSK:
    /// the early secret is HKDF-Extract(0, 0).
    pub(crate) fn handshake(shared: &[u8], hello_hash: &[u8]) -> Result<Self, Error> {
        Self::handshake_with(DTLS13_LABEL_PREFIX, shared, hello_hash)
    }

    fn handshake_with(
        prefix: &'static [u8],
        shared: &[u8],
        hello_hash: &[u8],
    ) -> Result<Self, Error> {
        let zeros = [0u8; HASH_LEN];
        let early = extract(&zeros, &zeros);
        let derived = derive_secret_with(prefix, &early, b"derived", &hash(&[]))?;
        let handshake_secret = extract(&derived, shared);
        Ok(Self {
            prefix,
            client_handshake: derive_secret_with(
                prefix,
                &handshake_secret,
                b"c hs traffic",
                hello_hash,
            )?,
            server_handshake: derive_secret_with(
                prefix,
                &handshake_secret,
                b"s hs traffic",
                hello_hash,
            )?,
            handshake_secret,
        })
    }

    /// From the hash of ClientHello..server Finished.
    pub(crate) fn application(&self, transcript_hash: &[u8]) -> Result<ApplicationSecrets, Error> {
        let zeros = [0u8; HASH_LEN];
        let derived =
            derive_secret_with(self.prefix, &self.handshake_secret, b"derived", &hash(&[]))?;
        let master = extract(&derived, &zeros);
        Ok(ApplicationSecrets {
            client: derive_secret_with(self.prefix, &master, b"c ap traffic", transcript_hash)?,
            server: derive_secret_with(self.prefix, &master, b"s ap traffic", transcript_hash)?,
            exporter: derive_secret_with(self.prefix, &master, b"exp master", transcript_hash)?,
        })
    }
}

/// Finished.verify_data: HMAC(finished_key, transcript hash) (RFC 8446 section 4.4.4).
pub(crate) fn finished_verify_data(
    traffic_secret: &[u8],
    transcript_hash: &[u8],
) -> Result<[u8; HASH_LEN], Error> {
    let mut key = [0u8; HASH_LEN];
    expand_label(traffic_secret, b"finished", &[], &mut key)?;
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), transcript_hash);
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(tag.as_ref());
    Ok(out)
}

/// The RFC 8446 section 7.5 exporter with an empty context, as DTLS-SRTP uses it.
pub(crate) fn export(exporter_secret: &[u8], label: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let secret = derive_secret_with(DTLS13_LABEL_PREFIX, exporter_secret, label, &hash(&[]))?;
    expand_label(&secret, b"exporter", &hash(&[]), out)
}

/// The 64 spaces, context string and separator that a TLS 1.3 CertificateVerify signs
/// before the transcript hash (RFC 8446 section 4.4.3). DTLS 1.3 keeps the TLS strings.
pub(crate) fn certificate_verify_input(server: bool, transcript_hash: &[u8]) -> Vec<u8> {
    let mut out = vec![0x20u8; 64];
    out.extend_from_slice(if server {
        b"TLS 1.3, server CertificateVerify"
    } else {
        b"TLS 1.3, client CertificateVerify"
    });
    out.push(0);
    out.extend_from_slice(transcript_hash);
    out
}

/// Keys protecting one direction of one epoch.
pub(crate) struct EpochKeys {
    suite: Suite13,
    key: aead::LessSafeKey,
    iv: [u8; 12],
    mask: aead::quic::HeaderProtectionKey,
}

impl std::fmt::Debug for EpochKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochKeys")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl EpochKeys {
    /// Record keys from a traffic secret (RFC 8446 section 7.3, RFC 9147 section 4.2.3).
    pub(crate) fn derive(suite: Suite13, secret: &[u8]) -> Result<Self, Error> {
        let mut key = vec![0u8; suite.key_len()];
        let mut iv = [0u8; 12];
        let mut sn = vec![0u8; suite.mask().key_len()];
        expand_label(secret, b"key", &[], &mut key)?;
        expand_label(secret, b"iv", &[], &mut iv)?;
        expand_label(secret, b"sn", &[], &mut sn)?;
        let key =
            aead::UnboundKey::new(suite.aead(), &key).map_err(|_| Error::Crypto("aead key"))?;
        let mask = aead::quic::HeaderProtectionKey::new(suite.mask(), &sn)
            .map_err(|_| Error::Crypto("sn key"))?;
        Ok(Self {
            suite,
            key: aead::LessSafeKey::new(key),
            iv,
            mask,
        })
    }

    pub(crate) fn suite(&self) -> Suite13 {
        self.suite
    }

    /// The per-record nonce: the IV XORed with the 48-bit sequence number, left-padded.
    fn nonce(&self, sequence: u64) -> aead::Nonce {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(sequence.to_be_bytes()) {
            *b ^= s;
        }
        aead::Nonce::assume_unique_for_key(n)
    }

    /// The record-number mask for a ciphertext starting with `sample` (16 bytes or more).
    pub(crate) fn sequence_mask(&self, ciphertext: &[u8]) -> Option<[u8; 5]> {
        let sample = ciphertext.get(..16)?;
        self.mask.new_mask(sample).ok()
    }

    /// Seals `inner` (content plus content type) in place, appending the tag.
    pub(crate) fn seal(
        &self,
        sequence: u64,
        header: &[u8],
        inner: &mut Vec<u8>,
    ) -> Result<(), Error> {
        self.key
            .seal_in_place_append_tag(self.nonce(sequence), aead::Aad::from(header), inner)
            .map_err(|_| Error::Crypto("seal"))
    }

    /// Opens a record body in place; `None` when it does not authenticate.
    pub(crate) fn open<'a>(
        &self,
        sequence: u64,
        header: &[u8],
        body: &'a mut [u8],
    ) -> Option<&'a mut [u8]> {
        self.key
            .open_in_place(self.nonce(sequence), aead::Aad::from(header), body)
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 8448 section 3 (a TLS 1.3 1-RTT handshake): with TLS's "tls13 " prefix the
    /// schedule's first steps (HKDF-Extract, Derive-Secret) give the trace's early and
    /// derived secrets, so only the label prefix differs in DTLS.
    #[test]
    fn the_schedule_reproduces_the_rfc_8448_trace_with_tls_labels() {
        let zeros = [0u8; HASH_LEN];
        let early = extract(&zeros, &zeros);
        assert_eq!(
            early.to_vec(),
            hex("33 ad 0a 1c 60 7e c0 3b 09 e6 cd 98 93 68 0c e2
                 10 ad f3 00 aa 1f 26 60 e1 b2 2e 10 f1 70 f9 2a")
        );
        let derived = derive_secret_with(b"tls13 ", &early, b"derived", &hash(&[])).unwrap();
        assert_eq!(
            derived.to_vec(),
            hex("6f 26 15 a1 08 c7 02 c5 67 8f 54 fc 9d ba b6 97
                 16 c0 76 18 9c 48 25 0c eb ea c3 57 6c 36 11 ba")
        );
    }

    #[test]
    fn a_sealed_record_opens_only_with_its_sequence_and_header() {
        let keys = EpochKeys::derive(Suite13::Aes128GcmSha256, &[7u8; 32]).unwrap();
        let header = [0x2e, 0, 5, 0, 20];
        let mut body = b"hello\x16".to_vec();
        keys.seal(5, &header, &mut body).unwrap();
        let mut copy = body.clone();
        assert_eq!(
            keys.open(5, &header, &mut copy).map(|p| p.to_vec()),
            Some(b"hello\x16".to_vec())
        );
        let mut copy = body.clone();
        assert!(keys.open(6, &header, &mut copy).is_none());
        let mut copy = body.clone();
        assert!(keys.open(5, &[0x2e, 0, 5, 0, 21], &mut copy).is_none());
        assert!(keys.sequence_mask(&body).is_some());
    }
}
