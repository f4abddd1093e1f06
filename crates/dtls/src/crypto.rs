//! The handshake's cryptography, assembled from `ring` primitives: the TLS 1.2 PRF, the
//! key schedule with the extended master secret, AEAD record protection, ECDHE and ECDSA.
//! Nothing here implements a primitive; it only wires ring's together as RFC 5246, 5288,
//! 7627, 7905 and 5705 describe. ML-KEM-768, which ring lacks, is aws-lc-rs's; the hybrid
//! only concatenates its output with ring's X25519 as draft-ietf-tls-ecdhe-mlkem says.

use aws_lc_rs::kem;
use ring::{aead, agreement, hmac, rand::SecureRandom, signature};

use crate::Error;

/// Cipher suites we implement (ECDHE with ECDSA authentication, AEAD only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    /// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (0xC02B), the one every WebRTC stack offers.
    EcdheEcdsaAes128GcmSha256,
    /// TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 (0xC02C).
    EcdheEcdsaAes256GcmSha384,
    /// TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 (0xCCA9).
    EcdheEcdsaChacha20Poly1305Sha256,
    /// TLS_AES_128_GCM_SHA256 (0x1301), DTLS 1.3 only.
    Tls13Aes128GcmSha256,
    /// TLS_AES_256_GCM_SHA384 (0x1302), DTLS 1.3 only.
    Tls13Aes256GcmSha384,
    /// TLS_CHACHA20_POLY1305_SHA256 (0x1303), DTLS 1.3 only.
    Tls13Chacha20Poly1305Sha256,
}

impl CipherSuite {
    /// The DTLS 1.3 suites in our default preference order: AES-128-GCM first, as every
    /// browser offers it and it is the cheapest with AES instructions.
    pub const TLS13: [CipherSuite; 3] = [
        Self::Tls13Aes128GcmSha256,
        Self::Tls13Aes256GcmSha384,
        Self::Tls13Chacha20Poly1305Sha256,
    ];

    /// The DTLS 1.2 suites in our default preference order.
    pub const ALL: [CipherSuite; 3] = [
        Self::EcdheEcdsaAes128GcmSha256,
        Self::EcdheEcdsaChacha20Poly1305Sha256,
        Self::EcdheEcdsaAes256GcmSha384,
    ];

    /// The IANA code point.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::EcdheEcdsaAes128GcmSha256 => 0xc02b,
            Self::EcdheEcdsaAes256GcmSha384 => 0xc02c,
            Self::EcdheEcdsaChacha20Poly1305Sha256 => 0xcca9,
            Self::Tls13Aes128GcmSha256 => 0x1301,
            Self::Tls13Aes256GcmSha384 => 0x1302,
            Self::Tls13Chacha20Poly1305Sha256 => 0x1303,
        }
    }

    /// True for the DTLS 1.3 suites, which a DTLS 1.2 handshake never selects.
    pub fn is_tls13(self) -> bool {
        matches!(
            self,
            Self::Tls13Aes128GcmSha256
                | Self::Tls13Aes256GcmSha384
                | Self::Tls13Chacha20Poly1305Sha256
        )
    }

    /// Parses the IANA code point of a DTLS 1.2 suite.
    pub fn from_u16(v: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.to_u16() == v)
    }

    /// The IANA name, as metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcdheEcdsaAes128GcmSha256 => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            Self::EcdheEcdsaAes256GcmSha384 => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            Self::EcdheEcdsaChacha20Poly1305Sha256 => {
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
            }
            Self::Tls13Aes128GcmSha256 => "TLS_AES_128_GCM_SHA256",
            Self::Tls13Aes256GcmSha384 => "TLS_AES_256_GCM_SHA384",
            Self::Tls13Chacha20Poly1305Sha256 => "TLS_CHACHA20_POLY1305_SHA256",
        }
    }

    pub(crate) fn prf_hash(self) -> PrfHash {
        match self {
            Self::EcdheEcdsaAes256GcmSha384 => PrfHash::Sha384,
            _ => PrfHash::Sha256,
        }
    }

    fn aead(self) -> &'static aead::Algorithm {
        match self {
            Self::EcdheEcdsaAes128GcmSha256 | Self::Tls13Aes128GcmSha256 => &aead::AES_128_GCM,
            Self::EcdheEcdsaAes256GcmSha384 | Self::Tls13Aes256GcmSha384 => &aead::AES_256_GCM,
            Self::EcdheEcdsaChacha20Poly1305Sha256 | Self::Tls13Chacha20Poly1305Sha256 => {
                &aead::CHACHA20_POLY1305
            }
        }
    }

    /// The part of the nonce that comes from the key block (4 for GCM, 12 for ChaCha20).
    fn fixed_iv_len(self) -> usize {
        match self {
            Self::EcdheEcdsaChacha20Poly1305Sha256 => 12,
            _ => 4,
        }
    }

    /// Bytes each record carries in addition to its plaintext.
    pub(crate) fn record_overhead(self) -> usize {
        match self {
            Self::EcdheEcdsaChacha20Poly1305Sha256 => 16,
            _ => 8 + 16,
        }
    }
}

/// The hash the PRF and transcript use for a suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrfHash {
    Sha256,
    Sha384,
}

impl PrfHash {
    fn hmac(self) -> hmac::Algorithm {
        match self {
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha384 => hmac::HMAC_SHA384,
        }
    }

    pub(crate) fn digest(self, data: &[u8]) -> ring::digest::Digest {
        let alg = match self {
            Self::Sha256 => &ring::digest::SHA256,
            Self::Sha384 => &ring::digest::SHA384,
        };
        ring::digest::digest(alg, data)
    }
}

/// P_hash from RFC 5246 section 5, filling `out`.
pub(crate) fn prf(hash: PrfHash, secret: &[u8], label: &[u8], seed: &[u8], out: &mut [u8]) {
    let key = hmac::Key::new(hash.hmac(), secret);
    let mut label_seed = Vec::with_capacity(label.len() + seed.len());
    label_seed.extend_from_slice(label);
    label_seed.extend_from_slice(seed);
    // A(1) = HMAC(secret, label + seed)
    let mut a = hmac::sign(&key, &label_seed);
    let mut filled = 0;
    while filled < out.len() {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(a.as_ref());
        ctx.update(&label_seed);
        let block = ctx.sign();
        let n = (out.len() - filled).min(block.as_ref().len());
        out[filled..filled + n].copy_from_slice(&block.as_ref()[..n]);
        filled += n;
        a = hmac::sign(&key, a.as_ref());
    }
}

/// The 48-byte master secret from the extended master secret construction (RFC 7627).
pub(crate) fn extended_master_secret(
    hash: PrfHash,
    pre_master_secret: &[u8],
    session_hash: &[u8],
) -> [u8; 48] {
    let mut ms = [0u8; 48];
    prf(
        hash,
        pre_master_secret,
        b"extended master secret",
        session_hash,
        &mut ms,
    );
    ms
}

/// Finished verify_data (RFC 5246 section 7.4.9).
pub(crate) fn verify_data(
    hash: PrfHash,
    master_secret: &[u8],
    client: bool,
    transcript: &[u8],
) -> [u8; 12] {
    let label: &[u8] = if client {
        b"client finished"
    } else {
        b"server finished"
    };
    let mut out = [0u8; 12];
    prf(
        hash,
        master_secret,
        label,
        hash.digest(transcript).as_ref(),
        &mut out,
    );
    out
}

/// The RFC 5705 exporter without context, as DTLS-SRTP uses it.
pub(crate) fn export_keying_material(
    hash: PrfHash,
    master_secret: &[u8],
    label: &[u8],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
    out: &mut [u8],
) {
    let mut seed = [0u8; 64];
    seed[..32].copy_from_slice(client_random);
    seed[32..].copy_from_slice(server_random);
    prf(hash, master_secret, label, &seed, out);
}

/// One direction's AEAD record protection.
pub(crate) struct DirectionKeys {
    key: aead::LessSafeKey,
    iv: [u8; 12],
}

/// Both directions' record keys for epoch 1.
pub(crate) struct RecordKeys {
    suite: CipherSuite,
    write: DirectionKeys,
    read: DirectionKeys,
}

impl std::fmt::Debug for RecordKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordKeys")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl RecordKeys {
    /// Derives the key block (RFC 5246 section 6.3) and splits it by role.
    pub(crate) fn derive(
        suite: CipherSuite,
        master_secret: &[u8],
        client_random: &[u8; 32],
        server_random: &[u8; 32],
        is_client: bool,
    ) -> Result<Self, Error> {
        let alg = suite.aead();
        let key_len = alg.key_len();
        let iv_len = suite.fixed_iv_len();
        let mut block = vec![0u8; 2 * key_len + 2 * iv_len];
        let mut seed = [0u8; 64];
        seed[..32].copy_from_slice(server_random);
        seed[32..].copy_from_slice(client_random);
        prf(
            suite.prf_hash(),
            master_secret,
            b"key expansion",
            &seed,
            &mut block,
        );
        let (client_key, rest) = block.split_at(key_len);
        let (server_key, rest) = rest.split_at(key_len);
        let (client_iv, server_iv) = rest.split_at(iv_len);
        let make = |key: &[u8], iv: &[u8]| -> Result<DirectionKeys, Error> {
            let unbound = aead::UnboundKey::new(alg, key).map_err(|_| Error::Crypto("aead key"))?;
            let mut full_iv = [0u8; 12];
            full_iv[..iv.len()].copy_from_slice(iv);
            Ok(DirectionKeys {
                key: aead::LessSafeKey::new(unbound),
                iv: full_iv,
            })
        };
        let client = make(client_key, client_iv)?;
        let server = make(server_key, server_iv)?;
        let (write, read) = if is_client {
            (client, server)
        } else {
            (server, client)
        };
        Ok(Self { suite, write, read })
    }

    pub(crate) fn suite(&self) -> CipherSuite {
        self.suite
    }

    fn nonce(&self, dir: &DirectionKeys, epoch_seq: u64, explicit: Option<&[u8]>) -> [u8; 12] {
        let mut nonce = dir.iv;
        match self.suite {
            CipherSuite::EcdheEcdsaChacha20Poly1305Sha256 => {
                // RFC 7905: the padded sequence number XORed into the 12-byte IV.
                for (n, s) in nonce[4..].iter_mut().zip(epoch_seq.to_be_bytes()) {
                    *n ^= s;
                }
            }
            _ => {
                let explicit = explicit.map_or(epoch_seq.to_be_bytes(), |e| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(e);
                    b
                });
                nonce[4..].copy_from_slice(&explicit);
            }
        }
        nonce
    }

    fn aad(epoch_seq: u64, content_type: u8, len: usize) -> [u8; 13] {
        let mut aad = [0u8; 13];
        aad[..8].copy_from_slice(&epoch_seq.to_be_bytes());
        aad[8] = content_type;
        aad[9..11].copy_from_slice(&crate::record::DTLS_1_2.to_be_bytes());
        aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
        aad
    }

    /// Appends the protected form of `plaintext` (explicit nonce, ciphertext, tag).
    pub(crate) fn seal(
        &self,
        epoch: u16,
        sequence: u64,
        content_type: u8,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let epoch_seq = (u64::from(epoch) << 48) | sequence;
        let nonce = self.nonce(&self.write, epoch_seq, None);
        if self.suite != CipherSuite::EcdheEcdsaChacha20Poly1305Sha256 {
            out.extend_from_slice(&epoch_seq.to_be_bytes());
        }
        let start = out.len();
        out.extend_from_slice(plaintext);
        let aad = Self::aad(epoch_seq, content_type, plaintext.len());
        let mut body = out.split_off(start);
        self.write
            .key
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                &mut body,
            )
            .map_err(|_| Error::Crypto("seal"))?;
        out.extend_from_slice(&body);
        Ok(())
    }

    /// Decrypts a protected record body; `None` when it does not authenticate.
    pub(crate) fn open(
        &self,
        epoch: u16,
        sequence: u64,
        content_type: u8,
        body: &[u8],
    ) -> Option<Vec<u8>> {
        let epoch_seq = (u64::from(epoch) << 48) | sequence;
        let (explicit, ciphertext) = match self.suite {
            CipherSuite::EcdheEcdsaChacha20Poly1305Sha256 => (None, body),
            _ => {
                if body.len() < 8 {
                    return None;
                }
                let (e, c) = body.split_at(8);
                (Some(e), c)
            }
        };
        let tag_len = self.read.key.algorithm().tag_len();
        let plain_len = ciphertext.len().checked_sub(tag_len)?;
        let nonce = self.nonce(&self.read, epoch_seq, explicit);
        let aad = Self::aad(epoch_seq, content_type, plain_len);
        let mut buf = ciphertext.to_vec();
        let plain = self
            .read
            .key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                &mut buf,
            )
            .ok()?;
        let n = plain.len();
        buf.truncate(n);
        Some(buf)
    }
}

/// Named groups for the key exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NamedGroup {
    /// X25519MLKEM768 (0x11EC, draft-ietf-tls-ecdhe-mlkem), DTLS 1.3 only, preferred: an
    /// ML-KEM-768 encapsulation joined to an X25519 exchange, so that a recording of the
    /// handshake stays secret against a future quantum computer while X25519 still holds
    /// if ML-KEM falls. It costs 1216 bytes in the ClientHello and 1120 in the ServerHello.
    X25519MlKem768,
    /// x25519 (29): cheapest and constant-time; the one every stack has.
    X25519,
    /// secp256r1 (23).
    P256,
}

impl NamedGroup {
    /// Our preference order.
    pub const ALL: [NamedGroup; 3] = [Self::X25519MlKem768, Self::X25519, Self::P256];

    /// The IANA code point.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::X25519MlKem768 => 0x11ec,
            Self::X25519 => 29,
            Self::P256 => 23,
        }
    }

    /// Parses an IANA code point.
    pub fn from_u16(v: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.to_u16() == v)
    }

    /// The IANA name, as configuration files and metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::X25519MlKem768 => "X25519MLKEM768",
            Self::X25519 => "x25519",
            Self::P256 => "secp256r1",
        }
    }

    /// True for the elliptic-curve groups a DTLS 1.2 ECDHE exchange can use; the hybrid
    /// has no ServerKeyExchange form and exists only in DTLS 1.3's key_share.
    pub fn is_ecdhe(self) -> bool {
        !matches!(self, Self::X25519MlKem768)
    }

    fn algorithm(self) -> &'static agreement::Algorithm {
        match self {
            Self::X25519 | Self::X25519MlKem768 => &agreement::X25519,
            Self::P256 => &agreement::ECDH_P256,
        }
    }
}

/// ML-KEM-768 sizes (FIPS 203) and X25519's, which fix the hybrid shares' lengths.
pub(crate) const MLKEM768_ENCAPSULATION_KEY_LEN: usize = 1184;
pub(crate) const MLKEM768_CIPHERTEXT_LEN: usize = 1088;
const X25519_PUBLIC_LEN: usize = 32;
/// The client's X25519MLKEM768 share: encapsulation key, then X25519 public value.
pub(crate) const HYBRID_CLIENT_SHARE_LEN: usize =
    MLKEM768_ENCAPSULATION_KEY_LEN + X25519_PUBLIC_LEN;
/// The server's X25519MLKEM768 share: ciphertext, then X25519 public value.
pub(crate) const HYBRID_SERVER_SHARE_LEN: usize = MLKEM768_CIPHERTEXT_LEN + X25519_PUBLIC_LEN;

/// Splits a hybrid share whose ML-KEM part is `mlkem_len` bytes; `None` unless the length
/// is exact. For X25519MLKEM768 the ML-KEM part comes first, in shares and secret alike.
fn split_hybrid(share: &[u8], mlkem_len: usize) -> Option<(&[u8], &[u8])> {
    (share.len() == mlkem_len + X25519_PUBLIC_LEN).then(|| share.split_at(mlkem_len))
}

/// One ephemeral key exchange of ours for one handshake: an ECDHE key pair, or, for the
/// hybrid, an ML-KEM-768 decapsulation key beside an X25519 key pair.
pub(crate) struct KeyShare {
    group: NamedGroup,
    private: agreement::EphemeralPrivateKey,
    mlkem: Option<kem::DecapsulationKey<kem::AlgorithmId>>,
    public: Vec<u8>,
}

impl KeyShare {
    pub(crate) fn generate(group: NamedGroup, rng: &dyn SecureRandom) -> Result<Self, Error> {
        let private = agreement::EphemeralPrivateKey::generate(group.algorithm(), rng)
            .map_err(|_| Error::Crypto("ecdhe keygen"))?;
        let ecdhe_public = private
            .compute_public_key()
            .map_err(|_| Error::Crypto("ecdhe public"))?;
        let (mlkem, public) = match group {
            NamedGroup::X25519MlKem768 => {
                let dk = kem::DecapsulationKey::generate(&kem::ML_KEM_768)
                    .map_err(|_| Error::Crypto("ml-kem keygen"))?;
                let ek = dk
                    .encapsulation_key()
                    .and_then(|ek| ek.key_bytes())
                    .map_err(|_| Error::Crypto("ml-kem public"))?;
                let mut public = Vec::with_capacity(HYBRID_CLIENT_SHARE_LEN);
                public.extend_from_slice(ek.as_ref());
                public.extend_from_slice(ecdhe_public.as_ref());
                (Some(dk), public)
            }
            _ => (None, ecdhe_public.as_ref().to_vec()),
        };
        Ok(Self {
            group,
            private,
            mlkem,
            public,
        })
    }

    pub(crate) fn public(&self) -> &[u8] {
        &self.public
    }

    /// The shared secret with the peer's answer `peer_public`: the ECDHE secret, or for
    /// the hybrid the decapsulated ML-KEM secret followed by the X25519 secret. A share of
    /// the wrong length or an invalid point is [`Error::BadKeyShare`]; a ciphertext that is
    /// only corrupted decapsulates to an unrelated secret (ML-KEM's implicit rejection), so
    /// the handshake keys differ and nothing the peer protects opens.
    pub(crate) fn agree(self, peer_public: &[u8]) -> Result<Vec<u8>, Error> {
        let Some(dk) = self.mlkem else {
            return ecdhe(self.group, self.private, peer_public);
        };
        let (ciphertext, x25519) =
            split_hybrid(peer_public, MLKEM768_CIPHERTEXT_LEN).ok_or(Error::BadKeyShare)?;
        let mlkem_secret = dk
            .decapsulate(kem::Ciphertext::from(ciphertext))
            .map_err(|_| Error::BadKeyShare)?;
        let mut shared = mlkem_secret.as_ref().to_vec();
        shared.extend_from_slice(&ecdhe(NamedGroup::X25519, self.private, x25519)?);
        Ok(shared)
    }

    /// The server's side in one step: our public share answering the client's
    /// `peer_public` in `group`, and the shared secret. For ECDHE a fresh key pair agreed
    /// with the peer's; for the hybrid an encapsulation to the client's ML-KEM key (the
    /// ciphertext is our share's first part) and a fresh X25519 exchange.
    pub(crate) fn respond(
        group: NamedGroup,
        peer_public: &[u8],
        rng: &dyn SecureRandom,
    ) -> Result<(Vec<u8>, Vec<u8>), Error> {
        if group != NamedGroup::X25519MlKem768 {
            let own = Self::generate(group, rng)?;
            let public = own.public.clone();
            return Ok((public, own.agree(peer_public)?));
        }
        let (ek, x25519) =
            split_hybrid(peer_public, MLKEM768_ENCAPSULATION_KEY_LEN).ok_or(Error::BadKeyShare)?;
        let ek =
            kem::EncapsulationKey::new(&kem::ML_KEM_768, ek).map_err(|_| Error::BadKeyShare)?;
        let (ciphertext, mlkem_secret) = ek.encapsulate().map_err(|_| Error::BadKeyShare)?;
        let own = Self::generate(NamedGroup::X25519, rng)?;
        let mut public = Vec::with_capacity(HYBRID_SERVER_SHARE_LEN);
        public.extend_from_slice(ciphertext.as_ref());
        public.extend_from_slice(&own.public);
        let mut shared = mlkem_secret.as_ref().to_vec();
        shared.extend_from_slice(&own.agree(x25519)?);
        Ok((public, shared))
    }
}

fn ecdhe(
    group: NamedGroup,
    private: agreement::EphemeralPrivateKey,
    peer_public: &[u8],
) -> Result<Vec<u8>, Error> {
    let peer = agreement::UnparsedPublicKey::new(group.algorithm(), peer_public);
    agreement::agree_ephemeral(private, &peer, |secret| secret.to_vec())
        .map_err(|_| Error::BadKeyShare)
}

/// Signature schemes (TLS 1.2 SignatureAndHashAlgorithm) we produce and accept.
pub(crate) const ECDSA_SECP256R1_SHA256: u16 = 0x0403;
pub(crate) const ECDSA_SECP384R1_SHA384: u16 = 0x0503;
/// What we advertise in signature_algorithms and CertificateRequest.
pub(crate) const SUPPORTED_SIGNATURE_SCHEMES: [u16; 2] =
    [ECDSA_SECP256R1_SHA256, ECDSA_SECP384R1_SHA384];

/// A peer's ECDSA public key, extracted from its certificate.
#[derive(Debug, Clone)]
pub(crate) struct PeerPublicKey {
    curve: PeerCurve,
    point: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerCurve {
    P256,
    P384,
}

impl PeerPublicKey {
    pub(crate) fn new(curve: PeerCurve, point: Vec<u8>) -> Self {
        Self { curve, point }
    }

    pub(crate) fn point(&self) -> &[u8] {
        &self.point
    }

    /// Verifies a DER ECDSA signature made with `scheme` over `message`.
    pub(crate) fn verify(&self, scheme: u16, message: &[u8], sig: &[u8]) -> bool {
        let alg: &dyn signature::VerificationAlgorithm = match (self.curve, scheme) {
            (PeerCurve::P256, ECDSA_SECP256R1_SHA256) => &signature::ECDSA_P256_SHA256_ASN1,
            (PeerCurve::P256, ECDSA_SECP384R1_SHA384) => &signature::ECDSA_P256_SHA384_ASN1,
            (PeerCurve::P384, ECDSA_SECP256R1_SHA256) => &signature::ECDSA_P384_SHA256_ASN1,
            (PeerCurve::P384, ECDSA_SECP384R1_SHA384) => &signature::ECDSA_P384_SHA384_ASN1,
            _ => return false,
        };
        signature::UnparsedPublicKey::new(alg, &self.point)
            .verify(message, sig)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5246 has no official vectors; this one is the widely published TLS 1.2
    /// SHA-256 PRF vector (secret, "test label", seed); its first 16 bytes.
    #[test]
    fn prf_sha256_matches_published_vector() {
        let secret = [
            0x9b, 0xbe, 0x43, 0x6b, 0xa9, 0x40, 0xf0, 0x17, 0xb1, 0x76, 0x52, 0x84, 0x9a, 0x71,
            0xdb, 0x35,
        ];
        let seed = [
            0xa0, 0xba, 0x9f, 0x93, 0x6c, 0xda, 0x31, 0x18, 0x27, 0xa6, 0xf7, 0x96, 0xff, 0xd5,
            0x19, 0x8c,
        ];
        let mut out = [0u8; 100];
        prf(PrfHash::Sha256, &secret, b"test label", &seed, &mut out);
        assert_eq!(
            &out[..16],
            &[
                0xe3, 0xf2, 0x29, 0xba, 0x72, 0x7b, 0xe1, 0x7b, 0x8d, 0x12, 0x26, 0x20, 0x55, 0x7c,
                0xd4, 0x53
            ]
        );
    }

    /// Client share 1184 + 32 bytes, server share 1088 + 32, secret 32 + 32, both sides
    /// equal; the ML-KEM part first (draft-ietf-tls-ecdhe-mlkem), so the last 32 bytes of
    /// each share are a plain X25519 public value.
    #[test]
    fn the_hybrid_agrees_with_the_draft_layout() {
        let rng = ring::rand::SystemRandom::new();
        let client = KeyShare::generate(NamedGroup::X25519MlKem768, &rng).unwrap();
        assert_eq!(client.public().len(), HYBRID_CLIENT_SHARE_LEN);
        let client_public = client.public().to_vec();
        let (server_public, server_secret) =
            KeyShare::respond(NamedGroup::X25519MlKem768, &client_public, &rng).unwrap();
        assert_eq!(server_public.len(), HYBRID_SERVER_SHARE_LEN);
        assert_eq!(server_secret.len(), 64);
        // The X25519 halves alone give the secret's last 32 bytes.
        let x25519_client = KeyShare::generate(NamedGroup::X25519, &rng).unwrap();
        let probe = x25519_client.public().to_vec();
        let mut share = client_public[..MLKEM768_ENCAPSULATION_KEY_LEN].to_vec();
        share.extend_from_slice(&probe);
        let (answer, secret) = KeyShare::respond(NamedGroup::X25519MlKem768, &share, &rng).unwrap();
        let classical = x25519_client
            .agree(&answer[MLKEM768_CIPHERTEXT_LEN..])
            .unwrap();
        assert_eq!(&secret[32..], &classical[..], "X25519 secret second");
        assert_eq!(client.agree(&server_public).unwrap(), server_secret);
    }

    /// A ciphertext of the right length but corrupted decapsulates to another secret
    /// without an error (ML-KEM's implicit rejection); wrong lengths are BadKeyShare.
    #[test]
    fn broken_hybrid_shares_fail_or_disagree_without_panicking() {
        let rng = ring::rand::SystemRandom::new();
        let client = KeyShare::generate(NamedGroup::X25519MlKem768, &rng).unwrap();
        let (mut answer, secret) =
            KeyShare::respond(NamedGroup::X25519MlKem768, client.public(), &rng).unwrap();
        answer[100] ^= 0x40;
        let garbage = client.agree(&answer).unwrap();
        assert_ne!(garbage[..32], secret[..32], "implicit rejection");
        assert_eq!(garbage[32..], secret[32..], "X25519 unaffected");
        for len in [
            0,
            32,
            HYBRID_SERVER_SHARE_LEN - 1,
            HYBRID_SERVER_SHARE_LEN + 1,
        ] {
            let client = KeyShare::generate(NamedGroup::X25519MlKem768, &rng).unwrap();
            assert_eq!(client.agree(&vec![1; len]).err(), Some(Error::BadKeyShare));
        }
        for len in [
            0,
            32,
            HYBRID_CLIENT_SHARE_LEN - 1,
            HYBRID_CLIENT_SHARE_LEN + 1,
        ] {
            assert_eq!(
                KeyShare::respond(NamedGroup::X25519MlKem768, &vec![1; len], &rng).err(),
                Some(Error::BadKeyShare)
            );
        }
        // An encapsulation key whose coefficients exceed the modulus (FIPS 203 7.2).
        assert_eq!(
            KeyShare::respond(
                NamedGroup::X25519MlKem768,
                &[0xff; HYBRID_CLIENT_SHARE_LEN],
                &rng
            )
            .err(),
            Some(Error::BadKeyShare)
        );
    }

    #[test]
    fn records_sealed_by_one_side_open_on_the_other() {
        for suite in CipherSuite::ALL {
            let ms = [7u8; 48];
            let cr = [1u8; 32];
            let sr = [2u8; 32];
            let client = RecordKeys::derive(suite, &ms, &cr, &sr, true).unwrap();
            let server = RecordKeys::derive(suite, &ms, &cr, &sr, false).unwrap();
            let mut out = Vec::new();
            client.seal(1, 42, 22, b"finished!", &mut out).unwrap();
            assert_eq!(out.len(), 9 + suite.record_overhead());
            assert_eq!(
                server.open(1, 42, 22, &out).as_deref(),
                Some(&b"finished!"[..])
            );
            assert_eq!(server.open(1, 43, 22, &out), None, "wrong sequence number");
            let mut tampered = out.clone();
            *tampered.last_mut().unwrap() ^= 1;
            assert_eq!(server.open(1, 42, 22, &tampered), None);
        }
    }
}
