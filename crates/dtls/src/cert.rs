//! Certificates: our own (generated or loaded) and what we need from the peer's.
//!
//! WebRTC authenticates self-signed certificates by the SHA-256 fingerprint carried in
//! signalling (RFC 8122), so there is no chain to build: we need our key to sign with, the
//! DER to send, and from the peer's certificate its public key and its fingerprint.

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use std::fmt;

use crate::crypto::{PeerCurve, PeerPublicKey};
use crate::Error;

/// A SHA-256 certificate fingerprint, as `a=fingerprint:sha-256` carries it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_der(der: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// Parses the SDP form `AB:CD:...` (32 colon-separated hex bytes, any case).
    pub fn parse(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        let mut n = 0;
        for part in s.trim().split(':') {
            if n == 32 || part.len() != 2 {
                return None;
            }
            out[n] = u8::from_str_radix(part, 16).ok()?;
            n += 1;
        }
        (n == 32).then_some(Self(out))
    }
}

impl fmt::Display for Fingerprint {
    /// The SDP form: upper-case hex bytes separated by colons.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Why a certificate could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// rcgen could not generate the certificate.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// The PEM input did not contain a usable certificate or key.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// The key is not an ECDSA P-256 PKCS#8 key, or does not match.
    #[error("unsupported private key: {0}")]
    Key(String),
}

/// Our certificate and its signing key. Shared (behind an `Arc`) by every connection.
pub struct Certificate {
    der: Vec<u8>,
    key: EcdsaKeyPair,
    fingerprint: Fingerprint,
    rng: SystemRandom,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("fingerprint", &self.fingerprint)
            .field("der_len", &self.der.len())
            .finish()
    }
}

impl Certificate {
    /// A fresh self-signed ECDSA P-256 certificate, as browsers make for WebRTC.
    pub fn generate() -> Result<Self, CertificateError> {
        Self::generate_with_names(vec!["sluice".to_owned()])
    }

    /// A self-signed certificate with the given subject alternative names. Many names make
    /// a large certificate; tests use that to force long, fragmented certificate flights.
    pub fn generate_with_names(names: Vec<String>) -> Result<Self, CertificateError> {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CertificateError::Generate(e.to_string()))?;
        let params = rcgen::CertificateParams::new(names)
            .map_err(|e| CertificateError::Generate(e.to_string()))?;
        let cert = params
            .self_signed(&key_pair)
            .map_err(|e| CertificateError::Generate(e.to_string()))?;
        Self::from_der(cert.der().to_vec(), &key_pair.serialize_der())
    }

    /// Builds from a DER certificate and a PKCS#8 DER ECDSA P-256 private key.
    pub fn from_der(cert_der: Vec<u8>, pkcs8_der: &[u8]) -> Result<Self, CertificateError> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8_der, &rng)
            .map_err(|e| CertificateError::Key(e.to_string()))?;
        let peer = peer_public_key(&cert_der)
            .map_err(|_| CertificateError::Pem("certificate does not parse".into()))?;
        if peer.point() != key.public_key().as_ref() {
            return Err(CertificateError::Key(
                "private key does not match the certificate".into(),
            ));
        }
        Ok(Self {
            fingerprint: Fingerprint::of_der(&cert_der),
            der: cert_der,
            key,
            rng,
        })
    }

    /// Loads a PEM certificate and a PEM PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertificateError> {
        let cert = pem_block(cert_pem, "CERTIFICATE")?;
        let key = pem_block(key_pem, "PRIVATE KEY")?;
        Self::from_der(cert, &key)
    }

    /// The certificate in PEM form (for handing to other tools, such as OpenSSL in tests).
    pub fn certificate_pem(&self) -> String {
        to_pem("CERTIFICATE", &self.der)
    }

    /// The DER certificate.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Our fingerprint, for the SDP we send.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.key
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| Error::Crypto("ecdsa sign"))
    }
}

/// Generates a certificate and returns it together with its PEM certificate and PEM
/// PKCS#8 key, for tools and tests that need files.
pub fn generate_pem() -> Result<(Certificate, String, String), CertificateError> {
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| CertificateError::Generate(e.to_string()))?;
    let params = rcgen::CertificateParams::new(vec!["sluice".to_owned()])
        .map_err(|e| CertificateError::Generate(e.to_string()))?;
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| CertificateError::Generate(e.to_string()))?;
    let cert_pem = cert.pem();
    let key_pem = key_pair.serialize_pem();
    let c = Certificate::from_der(cert.der().to_vec(), &key_pair.serialize_der())?;
    Ok((c, cert_pem, key_pem))
}

fn pem_block(text: &str, label: &str) -> Result<Vec<u8>, CertificateError> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(text.as_bytes())
        .map_err(|e| CertificateError::Pem(e.to_string()))?;
    if parsed.label != label {
        return Err(CertificateError::Pem(format!(
            "expected {label}, found {}",
            parsed.label
        )));
    }
    Ok(parsed.contents)
}

fn to_pem(label: &str, der: &[u8]) -> String {
    let mut out = format!("-----BEGIN {label}-----\n");
    let b64 = base64_encode(der);
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Extracts the ECDSA public key from a DER certificate.
pub(crate) fn peer_public_key(der: &[u8]) -> Result<PeerPublicKey, Error> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| Error::BadCertificate {
        reason: "does not parse as X.509",
    })?;
    let spki = cert.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY {
        return Err(Error::BadCertificate {
            reason: "not an EC key",
        });
    }
    let curve_oid = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .ok_or(Error::BadCertificate {
            reason: "EC key without named curve",
        })?;
    let curve = if curve_oid == x509_parser::oid_registry::OID_EC_P256 {
        PeerCurve::P256
    } else if curve_oid == x509_parser::oid_registry::OID_NIST_EC_P384 {
        PeerCurve::P384
    } else {
        return Err(Error::BadCertificate {
            reason: "unsupported curve",
        });
    };
    Ok(PeerPublicKey::new(
        curve,
        spki.subject_public_key.data.to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_round_trips_through_sdp_form() {
        let c = Certificate::generate().unwrap();
        let s = c.fingerprint().to_string();
        assert_eq!(s.len(), 32 * 3 - 1);
        assert_eq!(Fingerprint::parse(&s), Some(c.fingerprint()));
        assert_eq!(Fingerprint::parse(&s.to_lowercase()), Some(c.fingerprint()));
        assert_eq!(Fingerprint::parse("AB:CD"), None);
        assert_eq!(Fingerprint::parse(&format!("{s}:00")), None);
    }

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let (c, cert_pem, key_pem) = generate_pem().unwrap();
        let loaded = Certificate::from_pem(&cert_pem, &key_pem).unwrap();
        assert_eq!(loaded.fingerprint(), c.fingerprint());
        assert!(Certificate::from_der(c.der().to_vec(), b"junk").is_err());
        assert!(c
            .certificate_pem()
            .starts_with("-----BEGIN CERTIFICATE-----\n"));
        let again = Certificate::from_pem(&c.certificate_pem(), &key_pem).unwrap();
        assert_eq!(again.fingerprint(), c.fingerprint());
    }

    #[test]
    fn peer_key_extraction_rejects_garbage() {
        assert!(peer_public_key(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
        let c = Certificate::generate().unwrap();
        assert!(peer_public_key(c.der()).is_ok());
    }
}
