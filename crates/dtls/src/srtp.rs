//! DTLS-SRTP: protection profiles (RFC 5764, RFC 7714) and the keying material exported
//! from a completed handshake for the media layer.

use std::fmt;

/// SRTP protection profiles negotiated through the use_srtp extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    /// SRTP_AES128_CM_HMAC_SHA1_80 (0x0001), supported by every WebRTC stack.
    Aes128CmHmacSha1_80,
    /// SRTP_AES128_CM_HMAC_SHA1_32 (0x0002).
    Aes128CmHmacSha1_32,
    /// SRTP_AEAD_AES_128_GCM (0x0007).
    AeadAes128Gcm,
    /// SRTP_AEAD_AES_256_GCM (0x0008).
    AeadAes256Gcm,
}

impl SrtpProfile {
    /// Our default preference order when we choose (server role): AEAD first because it
    /// authenticates the whole packet with a 16-byte tag, then the universally supported
    /// AES-CM/HMAC-SHA1-80.
    pub const DEFAULT_PREFERENCE: [SrtpProfile; 4] = [
        Self::AeadAes128Gcm,
        Self::Aes128CmHmacSha1_80,
        Self::AeadAes256Gcm,
        Self::Aes128CmHmacSha1_32,
    ];

    /// The IANA code point.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::Aes128CmHmacSha1_80 => 0x0001,
            Self::Aes128CmHmacSha1_32 => 0x0002,
            Self::AeadAes128Gcm => 0x0007,
            Self::AeadAes256Gcm => 0x0008,
        }
    }

    /// Parses an IANA code point.
    pub fn from_u16(v: u16) -> Option<Self> {
        Self::DEFAULT_PREFERENCE
            .into_iter()
            .find(|p| p.to_u16() == v)
    }

    /// The name OpenSSL and the RFCs use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aes128CmHmacSha1_80 => "SRTP_AES128_CM_SHA1_80",
            Self::Aes128CmHmacSha1_32 => "SRTP_AES128_CM_SHA1_32",
            Self::AeadAes128Gcm => "SRTP_AEAD_AES_128_GCM",
            Self::AeadAes256Gcm => "SRTP_AEAD_AES_256_GCM",
        }
    }

    /// Master key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Self::AeadAes256Gcm => 32,
            _ => 16,
        }
    }

    /// Master salt length in bytes.
    pub fn salt_len(self) -> usize {
        match self {
            Self::AeadAes128Gcm | Self::AeadAes256Gcm => 12,
            _ => 14,
        }
    }
}

impl fmt::Display for SrtpProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One direction's SRTP master key and salt.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpMasterKey {
    /// The master key.
    pub key: Vec<u8>,
    /// The master salt.
    pub salt: Vec<u8>,
}

impl fmt::Debug for SrtpMasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SrtpMasterKey(..)")
    }
}

/// The SRTP keys of both directions, derived with the RFC 5705 exporter and the label
/// "EXTRACTOR-dtls_srtp" (RFC 5764 section 4.2). The media layer builds its SRTP contexts
/// from this one value: `local` protects what we send, `remote` unprotects what we receive.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKeyingMaterial {
    /// The negotiated profile.
    pub profile: SrtpProfile,
    /// Keys for the packets this endpoint sends.
    pub local: SrtpMasterKey,
    /// Keys for the packets the peer sends.
    pub remote: SrtpMasterKey,
    /// The exported block as RFC 5764 lays it out (client key, server key, client salt,
    /// server salt), which is what `openssl -keymatexport EXTRACTOR-dtls_srtp` prints.
    pub exported: Vec<u8>,
}

impl fmt::Debug for SrtpKeyingMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpKeyingMaterial")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl SrtpKeyingMaterial {
    /// Splits the exported block according to our role.
    pub(crate) fn from_export(profile: SrtpProfile, exported: Vec<u8>, is_client: bool) -> Self {
        let k = profile.key_len();
        let s = profile.salt_len();
        let part = |from: usize, len: usize| exported.get(from..from + len).unwrap_or(&[]).to_vec();
        let client = SrtpMasterKey {
            key: part(0, k),
            salt: part(2 * k, s),
        };
        let server = SrtpMasterKey {
            key: part(k, k),
            salt: part(2 * k + s, s),
        };
        let (local, remote) = if is_client {
            (client, server)
        } else {
            (server, client)
        };
        Self {
            profile,
            local,
            remote,
            exported,
        }
    }

    /// Bytes to export for a profile.
    pub(crate) fn export_len(profile: SrtpProfile) -> usize {
        2 * (profile.key_len() + profile.salt_len())
    }

    /// The exported block in upper-case hex, as OpenSSL prints it.
    pub fn exported_hex(&self) -> String {
        self.exported.iter().map(|b| format!("{b:02X}")).collect()
    }
}
