//! Handshake messages: their wire form and a parser for each that never panics.

use crate::codec::{put_u16, put_u24, put_vec16, put_vec24, put_vec8, Reader};
use crate::Error;

/// Bytes in a DTLS handshake message header.
pub(crate) const HANDSHAKE_HEADER_LEN: usize = 12;

/// Handshake message types (RFC 5246 7.4, RFC 6347 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeType {
    HelloRequest,
    ClientHello,
    ServerHello,
    HelloVerifyRequest,
    Certificate,
    ServerKeyExchange,
    CertificateRequest,
    ServerHelloDone,
    CertificateVerify,
    ClientKeyExchange,
    Finished,
}

impl HandshakeType {
    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::HelloRequest,
            1 => Self::ClientHello,
            2 => Self::ServerHello,
            3 => Self::HelloVerifyRequest,
            11 => Self::Certificate,
            12 => Self::ServerKeyExchange,
            13 => Self::CertificateRequest,
            14 => Self::ServerHelloDone,
            15 => Self::CertificateVerify,
            16 => Self::ClientKeyExchange,
            20 => Self::Finished,
            _ => return None,
        })
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Self::HelloRequest => 0,
            Self::ClientHello => 1,
            Self::ServerHello => 2,
            Self::HelloVerifyRequest => 3,
            Self::Certificate => 11,
            Self::ServerKeyExchange => 12,
            Self::CertificateRequest => 13,
            Self::ServerHelloDone => 14,
            Self::CertificateVerify => 15,
            Self::ClientKeyExchange => 16,
            Self::Finished => 20,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::HelloRequest => "HelloRequest",
            Self::ClientHello => "ClientHello",
            Self::ServerHello => "ServerHello",
            Self::HelloVerifyRequest => "HelloVerifyRequest",
            Self::Certificate => "Certificate",
            Self::ServerKeyExchange => "ServerKeyExchange",
            Self::CertificateRequest => "CertificateRequest",
            Self::ServerHelloDone => "ServerHelloDone",
            Self::CertificateVerify => "CertificateVerify",
            Self::ClientKeyExchange => "ClientKeyExchange",
            Self::Finished => "Finished",
        }
    }
}

/// The header of one handshake fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FragmentHeader {
    pub(crate) msg_type: u8,
    pub(crate) length: u32,
    pub(crate) message_seq: u16,
    pub(crate) fragment_offset: u32,
    pub(crate) fragment_length: u32,
}

impl FragmentHeader {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Option<Self> {
        Some(Self {
            msg_type: r.u8()?,
            length: r.u24()?,
            message_seq: r.u16()?,
            fragment_offset: r.u24()?,
            fragment_length: r.u24()?,
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.push(self.msg_type);
        put_u24(out, self.length);
        put_u16(out, self.message_seq);
        put_u24(out, self.fragment_offset);
        put_u24(out, self.fragment_length);
    }
}

/// Appends a whole (unfragmented) message with its header, as the transcript hashes it.
pub(crate) fn write_full_message(
    out: &mut Vec<u8>,
    msg_type: HandshakeType,
    seq: u16,
    body: &[u8],
) {
    FragmentHeader {
        msg_type: msg_type.to_u8(),
        length: body.len() as u32,
        message_seq: seq,
        fragment_offset: 0,
        fragment_length: body.len() as u32,
    }
    .write(out);
    out.extend_from_slice(body);
}

/// Extension code points we read or write.
pub(crate) mod ext {
    pub(crate) const SUPPORTED_GROUPS: u16 = 10;
    pub(crate) const EC_POINT_FORMATS: u16 = 11;
    pub(crate) const SIGNATURE_ALGORITHMS: u16 = 13;
    pub(crate) const USE_SRTP: u16 = 14;
    pub(crate) const EXTENDED_MASTER_SECRET: u16 = 23;
    pub(crate) const RENEGOTIATION_INFO: u16 = 0xff01;
    pub(crate) const SUPPORTED_VERSIONS: u16 = 43;
    pub(crate) const COOKIE: u16 = 44;
    pub(crate) const KEY_SHARE: u16 = 51;
}

/// Signalling cipher suite value meaning "secure renegotiation supported" (RFC 5746).
pub(crate) const TLS_EMPTY_RENEGOTIATION_INFO_SCSV: u16 = 0x00ff;

/// The extensions we understand, from either hello. Unknown ones are skipped.
#[derive(Debug, Clone, Default)]
pub(crate) struct HelloExtensions {
    pub(crate) supported_groups: Vec<u16>,
    pub(crate) signature_algorithms: Vec<u16>,
    pub(crate) srtp_profiles: Vec<u16>,
    pub(crate) extended_master_secret: bool,
    pub(crate) renegotiation_info: Option<Vec<u8>>,
    /// supported_versions: the client's list, or the server's one selection.
    pub(crate) supported_versions: Vec<u16>,
    /// key_share: the client's shares, or the server's one share.
    pub(crate) key_shares: Vec<(u16, Vec<u8>)>,
    /// key_share of a HelloRetryRequest: the group the server asks for.
    pub(crate) retry_group: Option<u16>,
    /// cookie (TLS 1.3's, not the DTLS 1.2 ClientHello field).
    pub(crate) cookie: Option<Vec<u8>>,
}

fn u16_list(data: &[u8]) -> Option<Vec<u16>> {
    let mut r = Reader::new(data);
    let mut out = Vec::with_capacity(data.len() / 2);
    while !r.is_empty() {
        out.push(r.u16()?);
    }
    Some(out)
}

impl HelloExtensions {
    fn parse(r: &mut Reader<'_>, from_client: bool) -> Result<Self, Error> {
        let mut out = Self::default();
        if r.is_empty() {
            return Ok(out);
        }
        let bad = Error::Decode { what: "extensions" };
        let block = r.vec16().ok_or(bad.clone())?;
        let mut r = Reader::new(block);
        while !r.is_empty() {
            let ty = r.u16().ok_or(bad.clone())?;
            let data = r.vec16().ok_or(bad.clone())?;
            let mut d = Reader::new(data);
            match ty {
                ext::SUPPORTED_GROUPS => {
                    out.supported_groups = d.vec16().and_then(u16_list).ok_or(bad.clone())?;
                }
                ext::SIGNATURE_ALGORITHMS => {
                    out.signature_algorithms = d.vec16().and_then(u16_list).ok_or(bad.clone())?;
                }
                ext::USE_SRTP => {
                    out.srtp_profiles = d.vec16().and_then(u16_list).ok_or(bad.clone())?;
                    d.vec8().ok_or(bad.clone())?; // MKI, which we do not use
                }
                ext::EXTENDED_MASTER_SECRET => out.extended_master_secret = true,
                ext::RENEGOTIATION_INFO => {
                    out.renegotiation_info = Some(d.vec8().ok_or(bad.clone())?.to_vec());
                }
                ext::SUPPORTED_VERSIONS if from_client => {
                    out.supported_versions = d.vec8().and_then(u16_list).ok_or(bad.clone())?;
                }
                ext::SUPPORTED_VERSIONS => {
                    out.supported_versions = vec![d.u16().ok_or(bad.clone())?];
                }
                ext::KEY_SHARE if from_client => {
                    let list = d.vec16().ok_or(bad.clone())?;
                    let mut l = Reader::new(list);
                    while !l.is_empty() {
                        let group = l.u16().ok_or(bad.clone())?;
                        let public = l.vec16().ok_or(bad.clone())?;
                        out.key_shares.push((group, public.to_vec()));
                    }
                }
                ext::KEY_SHARE if data.len() == 2 => {
                    out.retry_group = Some(d.u16().ok_or(bad.clone())?);
                }
                ext::KEY_SHARE => {
                    let group = d.u16().ok_or(bad.clone())?;
                    let public = d.vec16().ok_or(bad.clone())?;
                    out.key_shares.push((group, public.to_vec()));
                }
                ext::COOKIE => {
                    out.cookie = Some(d.vec16().ok_or(bad.clone())?.to_vec());
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// A ClientHello, as much of it as a DTLS 1.2 server needs.
#[derive(Debug, Clone)]
pub(crate) struct ClientHello {
    pub(crate) client_version: u16,
    pub(crate) random: [u8; 32],
    pub(crate) session_id: Vec<u8>,
    pub(crate) cookie: Vec<u8>,
    pub(crate) cipher_suites: Vec<u16>,
    pub(crate) null_compression: bool,
    pub(crate) extensions: HelloExtensions,
}

impl ClientHello {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, Error> {
        let bad = || Error::Decode {
            what: "ClientHello",
        };
        let mut r = Reader::new(body);
        let client_version = r.u16().ok_or_else(bad)?;
        let mut random = [0u8; 32];
        random.copy_from_slice(r.take(32).ok_or_else(bad)?);
        let session_id = r.vec8().ok_or_else(bad)?;
        let cookie = r.vec8().ok_or_else(bad)?;
        let cipher_suites = r.vec16().and_then(u16_list).ok_or_else(bad)?;
        let compression = r.vec8().ok_or_else(bad)?;
        let extensions = HelloExtensions::parse(&mut r, true)?;
        if session_id.len() > 32 || cookie.len() > 255 {
            return Err(bad());
        }
        Ok(Self {
            client_version,
            random,
            session_id: session_id.to_vec(),
            cookie: cookie.to_vec(),
            cipher_suites,
            null_compression: compression.contains(&0),
            extensions,
        })
    }

    /// The body we send: everything a WebRTC server needs to pick from.
    pub(crate) fn encode(
        random: &[u8; 32],
        cookie: &[u8],
        suites: &[u16],
        groups: &[u16],
        srtp_profiles: &[u16],
        offer13: Option<&Offer13>,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        put_u16(&mut out, crate::record::DTLS_1_2);
        out.extend_from_slice(random);
        put_vec8(&mut out, &[]); // no session resumption
        put_vec8(&mut out, cookie);
        let mut s = Vec::new();
        for suite in suites {
            put_u16(&mut s, *suite);
        }
        put_vec16(&mut out, &s);
        put_vec8(&mut out, &[0]);
        let mut exts = Vec::new();
        let mut g = Vec::new();
        for group in groups {
            put_u16(&mut g, *group);
        }
        let mut data = Vec::new();
        put_vec16(&mut data, &g);
        push_ext(&mut exts, ext::SUPPORTED_GROUPS, &data);
        push_ext(&mut exts, ext::EC_POINT_FORMATS, &[1, 0]);
        let mut sa = Vec::new();
        for scheme in crate::crypto::SUPPORTED_SIGNATURE_SCHEMES {
            put_u16(&mut sa, scheme);
        }
        let mut data = Vec::new();
        put_vec16(&mut data, &sa);
        push_ext(&mut exts, ext::SIGNATURE_ALGORITHMS, &data);
        push_ext(&mut exts, ext::USE_SRTP, &srtp_ext(srtp_profiles));
        push_ext(&mut exts, ext::EXTENDED_MASTER_SECRET, &[]);
        push_ext(&mut exts, ext::RENEGOTIATION_INFO, &[0]);
        if let Some(offer) = offer13 {
            let mut v = Vec::new();
            for version in &offer.versions {
                put_u16(&mut v, *version);
            }
            let mut data = Vec::new();
            put_vec8(&mut data, &v);
            push_ext(&mut exts, ext::SUPPORTED_VERSIONS, &data);
            let mut shares = Vec::new();
            for (group, public) in &offer.key_shares {
                put_u16(&mut shares, *group);
                put_vec16(&mut shares, public);
            }
            let mut data = Vec::new();
            put_vec16(&mut data, &shares);
            push_ext(&mut exts, ext::KEY_SHARE, &data);
            if let Some(cookie) = &offer.cookie {
                let mut data = Vec::new();
                put_vec16(&mut data, cookie);
                push_ext(&mut exts, ext::COOKIE, &data);
            }
        }
        put_vec16(&mut out, &exts);
        out
    }
}

/// What a ClientHello adds when it offers DTLS 1.3 (its 1.3 cipher suites go first in
/// the suite list, which the caller builds).
#[derive(Debug, Clone, Default)]
pub(crate) struct Offer13 {
    pub(crate) versions: Vec<u16>,
    pub(crate) key_shares: Vec<(u16, Vec<u8>)>,
    pub(crate) cookie: Option<Vec<u8>>,
}

fn srtp_ext(profiles: &[u16]) -> Vec<u8> {
    let mut p = Vec::new();
    for profile in profiles {
        put_u16(&mut p, *profile);
    }
    let mut data = Vec::new();
    put_vec16(&mut data, &p);
    put_vec8(&mut data, &[]);
    data
}

fn push_ext(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    put_u16(out, ty);
    put_vec16(out, data);
}

/// A ServerHello.
#[derive(Debug, Clone)]
pub(crate) struct ServerHello {
    pub(crate) server_version: u16,
    pub(crate) random: [u8; 32],
    pub(crate) session_id: Vec<u8>,
    pub(crate) cipher_suite: u16,
    pub(crate) compression: u8,
    pub(crate) extensions: HelloExtensions,
}

impl ServerHello {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, Error> {
        let bad = || Error::Decode {
            what: "ServerHello",
        };
        let mut r = Reader::new(body);
        let server_version = r.u16().ok_or_else(bad)?;
        let mut random = [0u8; 32];
        random.copy_from_slice(r.take(32).ok_or_else(bad)?);
        let session_id = r.vec8().ok_or_else(bad)?.to_vec();
        let cipher_suite = r.u16().ok_or_else(bad)?;
        let compression = r.u8().ok_or_else(bad)?;
        let extensions = HelloExtensions::parse(&mut r, false)?;
        Ok(Self {
            server_version,
            session_id,
            random,
            cipher_suite,
            compression,
            extensions,
        })
    }

    pub(crate) fn encode(random: &[u8; 32], suite: u16, srtp_profile: u16) -> Vec<u8> {
        let mut out = Vec::with_capacity(80);
        put_u16(&mut out, crate::record::DTLS_1_2);
        out.extend_from_slice(random);
        put_vec8(&mut out, &[]);
        put_u16(&mut out, suite);
        out.push(0);
        let mut exts = Vec::new();
        push_ext(&mut exts, ext::RENEGOTIATION_INFO, &[0]);
        push_ext(&mut exts, ext::EXTENDED_MASTER_SECRET, &[]);
        push_ext(&mut exts, ext::USE_SRTP, &srtp_ext(&[srtp_profile]));
        push_ext(&mut exts, ext::EC_POINT_FORMATS, &[1, 0]);
        put_vec16(&mut out, &exts);
        out
    }
}

/// HelloVerifyRequest: the server's stateless cookie challenge.
pub(crate) fn parse_hello_verify_request(body: &[u8]) -> Result<Vec<u8>, Error> {
    let mut r = Reader::new(body);
    let bad = || Error::Decode {
        what: "HelloVerifyRequest",
    };
    let _version = r.u16().ok_or_else(bad)?;
    let cookie = r.vec8().ok_or_else(bad)?;
    Ok(cookie.to_vec())
}

pub(crate) fn encode_hello_verify_request(cookie: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + cookie.len());
    put_u16(&mut out, crate::record::DTLS_1_0);
    put_vec8(&mut out, cookie);
    out
}

/// Certificate: we use the first (leaf) certificate only; WebRTC certificates are
/// self-signed and authenticated by fingerprint.
pub(crate) fn parse_certificate(body: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    let bad = || Error::Decode {
        what: "Certificate",
    };
    let mut r = Reader::new(body);
    let list = r.vec24().ok_or_else(bad)?;
    if !r.is_empty() {
        return Err(bad());
    }
    let mut l = Reader::new(list);
    if l.is_empty() {
        return Ok(None);
    }
    let leaf = l.vec24().ok_or_else(bad)?;
    Ok(Some(leaf.to_vec()))
}

pub(crate) fn encode_certificate(der: &[u8]) -> Vec<u8> {
    let mut list = Vec::with_capacity(der.len() + 3);
    put_vec24(&mut list, der);
    let mut out = Vec::with_capacity(list.len() + 3);
    put_vec24(&mut out, &list);
    out
}

/// ServerKeyExchange for ECDHE with a named curve.
#[derive(Debug, Clone)]
pub(crate) struct ServerKeyExchange {
    pub(crate) group: u16,
    pub(crate) public: Vec<u8>,
    /// The ServerECDHParams bytes, which the signature covers.
    pub(crate) params: Vec<u8>,
    pub(crate) scheme: u16,
    pub(crate) signature: Vec<u8>,
}

impl ServerKeyExchange {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, Error> {
        let bad = || Error::Decode {
            what: "ServerKeyExchange",
        };
        let mut r = Reader::new(body);
        let curve_type = r.u8().ok_or_else(bad)?;
        if curve_type != 3 {
            return Err(Error::NoCommonParameters { what: "curve type" });
        }
        let group = r.u16().ok_or_else(bad)?;
        let public = r.vec8().ok_or_else(bad)?.to_vec();
        let params_len = 4 + public.len();
        let params = body.get(..params_len).ok_or_else(bad)?.to_vec();
        let scheme = r.u16().ok_or_else(bad)?;
        let signature = r.vec16().ok_or_else(bad)?.to_vec();
        Ok(Self {
            group,
            public,
            params,
            scheme,
            signature,
        })
    }

    pub(crate) fn params(group: u16, public: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + public.len());
        out.push(3);
        put_u16(&mut out, group);
        put_vec8(&mut out, public);
        out
    }

    pub(crate) fn encode(params: &[u8], scheme: u16, signature: &[u8]) -> Vec<u8> {
        let mut out = params.to_vec();
        put_u16(&mut out, scheme);
        put_vec16(&mut out, signature);
        out
    }
}

/// The data a ServerKeyExchange signature covers.
pub(crate) fn server_key_exchange_signed_data(
    client_random: &[u8; 32],
    server_random: &[u8; 32],
    params: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + params.len());
    out.extend_from_slice(client_random);
    out.extend_from_slice(server_random);
    out.extend_from_slice(params);
    out
}

/// CertificateRequest: ask for an ECDSA certificate signed with our schemes.
pub(crate) fn encode_certificate_request() -> Vec<u8> {
    let mut out = Vec::new();
    put_vec8(&mut out, &[64]); // ecdsa_sign
    let mut schemes = Vec::new();
    for s in crate::crypto::SUPPORTED_SIGNATURE_SCHEMES {
        put_u16(&mut schemes, s);
    }
    put_vec16(&mut out, &schemes);
    put_vec16(&mut out, &[]);
    out
}

/// The signature schemes a CertificateRequest allows.
pub(crate) fn parse_certificate_request(body: &[u8]) -> Result<Vec<u16>, Error> {
    let bad = || Error::Decode {
        what: "CertificateRequest",
    };
    let mut r = Reader::new(body);
    let _types = r.vec8().ok_or_else(bad)?;
    let schemes = r.vec16().and_then(u16_list).ok_or_else(bad)?;
    let _authorities = r.vec16().ok_or_else(bad)?;
    Ok(schemes)
}

/// ClientKeyExchange for ECDHE: the client's public point.
pub(crate) fn parse_client_key_exchange(body: &[u8]) -> Result<Vec<u8>, Error> {
    let mut r = Reader::new(body);
    let public = r.vec8().ok_or(Error::Decode {
        what: "ClientKeyExchange",
    })?;
    Ok(public.to_vec())
}

pub(crate) fn encode_client_key_exchange(public: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + public.len());
    put_vec8(&mut out, public);
    out
}

/// A digitally-signed struct: scheme and signature (CertificateVerify).
pub(crate) fn parse_signed(body: &[u8], what: &'static str) -> Result<(u16, Vec<u8>), Error> {
    let mut r = Reader::new(body);
    let scheme = r.u16().ok_or(Error::Decode { what })?;
    let sig = r.vec16().ok_or(Error::Decode { what })?;
    Ok((scheme, sig.to_vec()))
}

pub(crate) fn encode_signed(scheme: u16, signature: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + signature.len());
    put_u16(&mut out, scheme);
    put_vec16(&mut out, signature);
    out
}
