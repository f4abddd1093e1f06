//! The TLS 1.3 key schedule (RFC 8446 section 7) as DTLS 1.3 labels it (RFC 9147 section
//! 5.9: "dtls13" in place of "tls13 "), record protection with the unified header's
//! record-number encryption (RFC 9147 section 4.2.3), and the RFC 8446 exporter.
//!
//! Both hashes of the suites (SHA-256, SHA-384) run the same schedule, chosen by [`Hash13`].
//!
//! Every primitive is ring's: HKDF-Extract is one HMAC (RFC 5869 defines it so, and ring's
//! `hkdf::Salt` keeps the result opaque, while the schedule needs secrets as bytes to feed
//! the next step), HKDF-Expand is `ring::hkdf`, AEAD is `ring::aead`, and the record-number
//! mask is ring's QUIC header-protection mask, which is the same computation.

use ring::{aead, digest, hkdf, hmac};

use crate::crypto::CipherSuite;
use crate::Error;

/// The TLS 1.3 cipher suites we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suite13 {
    /// TLS_AES_128_GCM_SHA256 (0x1301), the one every DTLS 1.3 stack offers.
    Aes128GcmSha256,
    /// TLS_AES_256_GCM_SHA384 (0x1302): a 256-bit key and a SHA-384 schedule.
    Aes256GcmSha384,
    /// TLS_CHACHA20_POLY1305_SHA256 (0x1303).
    Chacha20Poly1305Sha256,
}

impl Suite13 {
    /// Our default preference order: AES-128-GCM first (what browsers offer first, the
    /// cheapest with AES instructions), then AES-256-GCM, then ChaCha20-Poly1305.
    pub(crate) const ALL: [Suite13; 3] = [
        Self::Aes128GcmSha256,
        Self::Aes256GcmSha384,
        Self::Chacha20Poly1305Sha256,
    ];

    pub(crate) fn to_u16(self) -> u16 {
        match self {
            Self::Aes128GcmSha256 => 0x1301,
            Self::Aes256GcmSha384 => 0x1302,
            Self::Chacha20Poly1305Sha256 => 0x1303,
        }
    }

    pub(crate) fn from_u16(v: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.to_u16() == v)
    }

    /// The engine's suite for a configured [`CipherSuite`]; `None` for a DTLS 1.2 one.
    pub(crate) fn from_cipher_suite(suite: CipherSuite) -> Option<Self> {
        Self::from_u16(suite.to_u16()).filter(|_| suite.is_tls13())
    }

    /// The public name, as [`crate::Connected::cipher_suite`] reports it.
    pub(crate) fn to_cipher_suite(self) -> CipherSuite {
        match self {
            Self::Aes128GcmSha256 => CipherSuite::Tls13Aes128GcmSha256,
            Self::Aes256GcmSha384 => CipherSuite::Tls13Aes256GcmSha384,
            Self::Chacha20Poly1305Sha256 => CipherSuite::Tls13Chacha20Poly1305Sha256,
        }
    }

    /// The 1.3 suites a configuration allows, in its order; the default order when it
    /// names none (a list written before 1.3 existed keeps 1.3 working).
    pub(crate) fn configured(suites: &[CipherSuite]) -> Vec<Suite13> {
        let listed: Vec<Suite13> = suites
            .iter()
            .filter_map(|s| Self::from_cipher_suite(*s))
            .collect();
        if listed.is_empty() {
            Self::ALL.to_vec()
        } else {
            listed
        }
    }

    /// The hash of the transcript and the key schedule.
    pub(crate) fn hash(self) -> Hash13 {
        match self {
            Self::Aes256GcmSha384 => Hash13::Sha384,
            Self::Aes128GcmSha256 | Self::Chacha20Poly1305Sha256 => Hash13::Sha256,
        }
    }

    fn aead(self) -> &'static aead::Algorithm {
        match self {
            Self::Aes128GcmSha256 => &aead::AES_128_GCM,
            Self::Aes256GcmSha384 => &aead::AES_256_GCM,
            Self::Chacha20Poly1305Sha256 => &aead::CHACHA20_POLY1305,
        }
    }

    fn mask(self) -> &'static aead::quic::Algorithm {
        match self {
            Self::Aes128GcmSha256 => &aead::quic::AES_128,
            Self::Aes256GcmSha384 => &aead::quic::AES_256,
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

/// The longest hash output a suite uses (SHA-384).
pub(crate) const MAX_HASH_LEN: usize = 48;

/// The hash a TLS 1.3 suite names; HKDF and HMAC follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash13 {
    Sha256,
    Sha384,
}

impl Hash13 {
    pub(crate) fn len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
        }
    }

    fn digest_alg(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
        }
    }

    fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha384 => hmac::HMAC_SHA384,
        }
    }

    fn hkdf_alg(self) -> hkdf::Algorithm {
        match self {
            Self::Sha256 => hkdf::HKDF_SHA256,
            Self::Sha384 => hkdf::HKDF_SHA384,
        }
    }

    /// The hash of `data`.
    pub(crate) fn digest(self, data: &[u8]) -> Secret {
        Secret::from_slice(digest::digest(self.digest_alg(), data).as_ref())
    }

    /// HKDF-Extract(salt, ikm) = HMAC-Hash(salt, ikm) (RFC 5869 section 2.2).
    fn extract(self, salt: &[u8], ikm: &[u8]) -> Secret {
        Secret::from_slice(hmac::sign(&hmac::Key::new(self.hmac_alg(), salt), ikm).as_ref())
    }

    fn zeros(self) -> Secret {
        Secret {
            bytes: [0; MAX_HASH_LEN],
            len: self.len(),
        }
    }
}

/// A hash output or a secret of the schedule: as long as the suite's hash, kept inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Secret {
    bytes: [u8; MAX_HASH_LEN],
    len: usize,
}

impl Secret {
    /// At most [`MAX_HASH_LEN`] bytes of `data`.
    pub(crate) fn from_slice(data: &[u8]) -> Self {
        let len = data.len().min(MAX_HASH_LEN);
        let mut bytes = [0; MAX_HASH_LEN];
        bytes[..len].copy_from_slice(&data[..len]);
        Self { bytes, len }
    }
}

impl std::ops::Deref for Secret {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.len)
    }
}

/// SHA-256 of `data`, for the constants RFC 8446 defines with SHA-256 whatever the suite.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
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
    h: Hash13,
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
    hkdf::Prk::new_less_safe(h.hkdf_alg(), secret)
        .expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| Error::Crypto("hkdf expand"))
}

pub(crate) fn expand_label(
    h: Hash13,
    secret: &[u8],
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) -> Result<(), Error> {
    expand_label_with(h, DTLS13_LABEL_PREFIX, secret, label, context, out)
}

fn derive_secret_with(
    h: Hash13,
    prefix: &[u8],
    secret: &[u8],
    label: &[u8],
    transcript_hash: &[u8],
) -> Result<Secret, Error> {
    let mut out = h.zeros();
    expand_label_with(
        h,
        prefix,
        secret,
        label,
        transcript_hash,
        &mut out.bytes[..h.len()],
    )?;
    Ok(out)
}

/// The secrets of one handshake, computed in schedule order.
pub(crate) struct Schedule {
    hash: Hash13,
    prefix: &'static [u8],
    handshake_secret: Secret,
    pub(crate) client_handshake: Secret,
    pub(crate) server_handshake: Secret,
}

/// The secrets after the server's Finished.
pub(crate) struct ApplicationSecrets {
    pub(crate) client: Secret,
    pub(crate) server: Secret,
    pub(crate) exporter: Secret,
}

impl Schedule {
    /// From the (EC)DHE or hybrid shared secret and the hash of ClientHello..ServerHello.
    /// No PSK: the early secret is HKDF-Extract(0, 0).
    pub(crate) fn handshake(h: Hash13, shared: &[u8], hello_hash: &[u8]) -> Result<Self, Error> {
        Self::handshake_with(h, DTLS13_LABEL_PREFIX, shared, hello_hash)
    }

    fn handshake_with(
        h: Hash13,
        prefix: &'static [u8],
        shared: &[u8],
        hello_hash: &[u8],
    ) -> Result<Self, Error> {
        let zeros = h.zeros();
        let early = h.extract(&zeros, &zeros);
        let derived = derive_secret_with(h, prefix, &early, b"derived", &h.digest(&[]))?;
        let handshake_secret = h.extract(&derived, shared);
        Ok(Self {
            hash: h,
            prefix,
            client_handshake: derive_secret_with(
                h,
                prefix,
                &handshake_secret,
                b"c hs traffic",
                hello_hash,
            )?,
            server_handshake: derive_secret_with(
                h,
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
        let h = self.hash;
        let zeros = h.zeros();
        let derived = derive_secret_with(
            h,
            self.prefix,
            &self.handshake_secret,
            b"derived",
            &h.digest(&[]),
        )?;
        let master = h.extract(&derived, &zeros);
        let derive =
            |label: &[u8]| derive_secret_with(h, self.prefix, &master, label, transcript_hash);
        Ok(ApplicationSecrets {
            client: derive(b"c ap traffic")?,
            server: derive(b"s ap traffic")?,
            exporter: derive(b"exp master")?,
        })
    }
}

/// Finished.verify_data: HMAC(finished_key, transcript hash) (RFC 8446 section 4.4.4).
pub(crate) fn finished_verify_data(
    h: Hash13,
    traffic_secret: &[u8],
    transcript_hash: &[u8],
) -> Result<Secret, Error> {
    let mut key = h.zeros();
    expand_label(
        h,
        traffic_secret,
        b"finished",
        &[],
        &mut key.bytes[..h.len()],
    )?;
    let tag = hmac::sign(&hmac::Key::new(h.hmac_alg(), &key), transcript_hash);
    Ok(Secret::from_slice(tag.as_ref()))
}

/// The RFC 8446 section 7.5 exporter with an empty context, as DTLS-SRTP uses it.
pub(crate) fn export(
    h: Hash13,
    exporter_secret: &[u8],
    label: &[u8],
    out: &mut [u8],
) -> Result<(), Error> {
    let empty = h.digest(&[]);
    let secret = derive_secret_with(h, DTLS13_LABEL_PREFIX, exporter_secret, label, &empty)?;
    expand_label(h, &secret, b"exporter", &empty, out)
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
        let h = suite.hash();
        expand_label(h, secret, b"key", &[], &mut key)?;
        expand_label(h, secret, b"iv", &[], &mut iv)?;
        expand_label(h, secret, b"sn", &[], &mut sn)?;
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
        let h = Hash13::Sha256;
        let zeros = h.zeros();
        let early = h.extract(&zeros, &zeros);
        assert_eq!(
            early.to_vec(),
            hex("33 ad 0a 1c 60 7e c0 3b 09 e6 cd 98 93 68 0c e2
                 10 ad f3 00 aa 1f 26 60 e1 b2 2e 10 f1 70 f9 2a")
        );
        let derived = derive_secret_with(h, b"tls13 ", &early, b"derived", &h.digest(&[])).unwrap();
        assert_eq!(
            derived.to_vec(),
            hex("6f 26 15 a1 08 c7 02 c5 67 8f 54 fc 9d ba b6 97
                 16 c0 76 18 9c 48 25 0c eb ea c3 57 6c 36 11 ba")
        );
    }

    /// With SHA-384 the zero early secret is HMAC-SHA384 of 48 zero bytes keyed with 48
    /// zero bytes, and every secret is 48 bytes long.
    #[test]
    fn the_sha384_schedule_uses_48_byte_secrets() {
        let h = Hash13::Sha384;
        let zeros = h.zeros();
        assert_eq!(
            h.extract(&zeros, &zeros).to_vec(),
            hex(
                "7e e8 20 6f 55 70 02 3e 6d c7 51 9e b1 07 3b c4 e7 91 ad 37 b5 c3 82 aa
                 10 ba 18 e2 35 7e 71 69 71 f9 36 2f 2c 2f e2 a7 6b fd 78 df ec 4e a9 b5"
            )
        );
        let schedule = Schedule::handshake(h, &[1; 32], &h.digest(b"hello")).unwrap();
        assert_eq!(schedule.client_handshake.len(), 48);
        let app = schedule.application(&h.digest(b"finished")).unwrap();
        assert_eq!(app.exporter.len(), 48);
        let verify = finished_verify_data(h, &schedule.client_handshake, &[0; 48]).unwrap();
        assert_eq!(verify.len(), 48);
        for suite in Suite13::ALL {
            let keys = EpochKeys::derive(suite, &[7u8; 48][..suite.hash().len()]).unwrap();
            let mut body = b"x\x16".to_vec();
            keys.seal(1, &[0x2e, 0, 1, 0, 18], &mut body).unwrap();
            assert_eq!(body.len(), 2 + suite.record_overhead() - 6);
        }
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
