//! The wire form of the DTLS 1.3 handshake messages that differ from DTLS 1.2's (RFC 8446
//! section 4 with RFC 9147's changes), each parser panic-free.

use crate::codec::{put_u16, put_vec16, put_vec24, put_vec8, Reader};
use crate::messages::ext;
use crate::Error;

/// DTLS 1.3 on the wire (supported_versions).
pub(crate) const DTLS_1_3: u16 = 0xfefc;

/// TLS 1.3 message types that DTLS 1.2 does not have.
pub(crate) const ENCRYPTED_EXTENSIONS: u8 = 8;
/// The synthetic message that replaces ClientHello1 in the transcript after a
/// HelloRetryRequest (RFC 8446 section 4.4.1).
pub(crate) const MESSAGE_HASH: u8 = 254;

/// The last eight bytes of ServerHello.random when a server that supports 1.3 negotiates
/// 1.2 (RFC 8446 section 4.1.3: "DOWNGRD" then 01).
pub(crate) const DOWNGRADE_SENTINEL_12: [u8; 8] = [0x44, 0x4f, 0x57, 0x4e, 0x47, 0x52, 0x44, 0x01];

/// ServerHello.random of a HelloRetryRequest: SHA-256 of "HelloRetryRequest".
pub(crate) fn hello_retry_random() -> [u8; 32] {
    crate::tls13::keys::sha256(b"HelloRetryRequest")
}

fn push_ext(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    put_u16(out, ty);
    put_vec16(out, data);
}

/// A ServerHello or HelloRetryRequest selecting DTLS 1.3.
pub(crate) fn encode_server_hello(
    random: &[u8; 32],
    session_id_echo: &[u8],
    suite: u16,
    key_share: Option<KeyShareField<'_>>,
    cookie: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    put_u16(&mut out, crate::record::DTLS_1_2);
    out.extend_from_slice(random);
    put_vec8(&mut out, session_id_echo);
    put_u16(&mut out, suite);
    out.push(0);
    let mut exts = Vec::new();
    push_ext(&mut exts, ext::SUPPORTED_VERSIONS, &DTLS_1_3.to_be_bytes());
    if let Some(key_share) = key_share {
        let mut ks = Vec::new();
        match key_share {
            KeyShareField::Share(group, public) => {
                put_u16(&mut ks, group);
                put_vec16(&mut ks, public);
            }
            KeyShareField::Retry(group) => put_u16(&mut ks, group),
        }
        push_ext(&mut exts, ext::KEY_SHARE, &ks);
    }
    if let Some(cookie) = cookie {
        let mut c = Vec::new();
        put_vec16(&mut c, cookie);
        push_ext(&mut exts, ext::COOKIE, &c);
    }
    put_vec16(&mut out, &exts);
    out
}

/// The key_share of a ServerHello (a share) or of a HelloRetryRequest (a group).
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyShareField<'a> {
    Share(u16, &'a [u8]),
    Retry(u16),
}

/// EncryptedExtensions: only use_srtp is ours to send.
pub(crate) fn encode_encrypted_extensions(srtp_profile: u16) -> Vec<u8> {
    let mut srtp = Vec::new();
    put_vec16(&mut srtp, &srtp_profile.to_be_bytes());
    put_vec8(&mut srtp, &[]);
    let mut exts = Vec::new();
    push_ext(&mut exts, ext::USE_SRTP, &srtp);
    let mut out = Vec::new();
    put_vec16(&mut out, &exts);
    out
}

/// The SRTP profiles an EncryptedExtensions names (empty when it has no use_srtp).
pub(crate) fn parse_encrypted_extensions(body: &[u8]) -> Result<Vec<u16>, Error> {
    let bad = || Error::Decode {
        what: "EncryptedExtensions",
    };
    let mut r = Reader::new(body);
    let block = r.vec16().ok_or_else(bad)?;
    if !r.is_empty() {
        return Err(bad());
    }
    let mut r = Reader::new(block);
    let mut profiles = Vec::new();
    while !r.is_empty() {
        let ty = r.u16().ok_or_else(bad)?;
        let data = r.vec16().ok_or_else(bad)?;
        if ty == ext::USE_SRTP {
            let mut d = Reader::new(data);
            let list = d.vec16().ok_or_else(bad)?;
            let mut l = Reader::new(list);
            while !l.is_empty() {
                profiles.push(l.u16().ok_or_else(bad)?);
            }
        }
    }
    Ok(profiles)
}

/// CertificateRequest: empty context, signature_algorithms with the schemes we verify.
pub(crate) fn encode_certificate_request() -> Vec<u8> {
    let mut schemes = Vec::new();
    for s in crate::crypto::SUPPORTED_SIGNATURE_SCHEMES {
        put_u16(&mut schemes, s);
    }
    let mut sa = Vec::new();
    put_vec16(&mut sa, &schemes);
    let mut exts = Vec::new();
    push_ext(&mut exts, ext::SIGNATURE_ALGORITHMS, &sa);
    let mut out = Vec::new();
    put_vec8(&mut out, &[]);
    put_vec16(&mut out, &exts);
    out
}

/// The request context and the signature schemes a CertificateRequest allows.
pub(crate) fn parse_certificate_request(body: &[u8]) -> Result<(Vec<u8>, Vec<u16>), Error> {
    let bad = || Error::Decode {
        what: "CertificateRequest",
    };
    let mut r = Reader::new(body);
    let context = r.vec8().ok_or_else(bad)?.to_vec();
    let block = r.vec16().ok_or_else(bad)?;
    let mut r = Reader::new(block);
    let mut schemes = Vec::new();
    while !r.is_empty() {
        let ty = r.u16().ok_or_else(bad)?;
        let data = r.vec16().ok_or_else(bad)?;
        if ty == ext::SIGNATURE_ALGORITHMS {
            let mut d = Reader::new(data);
            let list = d.vec16().ok_or_else(bad)?;
            let mut l = Reader::new(list);
            while !l.is_empty() {
                schemes.push(l.u16().ok_or_else(bad)?);
            }
        }
    }
    Ok((context, schemes))
}

/// Certificate with one entry (our self-signed leaf) and no per-entry extensions.
pub(crate) fn encode_certificate(context: &[u8], der: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(der.len() + 5);
    put_vec24(&mut entry, der);
    put_vec16(&mut entry, &[]);
    let mut out = Vec::with_capacity(entry.len() + 4 + context.len());
    put_vec8(&mut out, context);
    put_vec24(&mut out, &entry);
    out
}

/// The leaf of a Certificate (the first entry), `None` for an empty list.
pub(crate) fn parse_certificate(body: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    let bad = || Error::Decode {
        what: "Certificate",
    };
    let mut r = Reader::new(body);
    let _context = r.vec8().ok_or_else(bad)?;
    let list = r.vec24().ok_or_else(bad)?;
    if !r.is_empty() {
        return Err(bad());
    }
    let mut l = Reader::new(list);
    if l.is_empty() {
        return Ok(None);
    }
    let leaf = l.vec24().ok_or_else(bad)?;
    let _extensions = l.vec16().ok_or_else(bad)?;
    Ok(Some(leaf.to_vec()))
}

/// An ACK record's body: the record numbers, each a 64-bit epoch and sequence.
pub(crate) fn encode_ack(records: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 16 * records.len());
    put_u16(&mut out, (16 * records.len()) as u16);
    for (epoch, seq) in records {
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
    }
    out
}

/// Parses an ACK body; `None` when malformed (then it is dropped whole).
pub(crate) fn parse_ack(body: &[u8]) -> Option<Vec<(u64, u64)>> {
    let mut r = Reader::new(body);
    let list = r.vec16()?;
    if !r.is_empty() || list.len() % 16 != 0 {
        return None;
    }
    let mut l = Reader::new(list);
    let mut out = Vec::with_capacity(list.len() / 16);
    while !l.is_empty() {
        let e = l.take(8)?;
        let s = l.take(8)?;
        let mut eb = [0u8; 8];
        eb.copy_from_slice(e);
        let mut sb = [0u8; 8];
        sb.copy_from_slice(s);
        out.push((u64::from_be_bytes(eb), u64::from_be_bytes(sb)));
    }
    Some(out)
}

/// A TLS-style handshake message (type, 24-bit length, body), as the DTLS 1.3 transcript
/// hashes it: without message_seq and fragment fields (RFC 9147 section 5.2).
pub(crate) fn write_transcript_message(out: &mut Vec<u8>, msg_type: u8, body: &[u8]) {
    out.push(msg_type);
    crate::codec::put_u24(out, body.len() as u32);
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_bodies_round_trip_and_malformed_ones_are_refused() {
        let records = [(2, 7), (3, 0x1_0000)];
        let body = encode_ack(&records);
        assert_eq!(parse_ack(&body), Some(records.to_vec()));
        assert_eq!(parse_ack(&body[..body.len() - 1]), None);
        assert_eq!(parse_ack(&[0, 15, 0]), None);
        assert_eq!(parse_ack(&[]), None);
    }

    #[test]
    fn the_hello_retry_random_is_the_rfc_8446_constant() {
        assert_eq!(
            hello_retry_random()[..4],
            [0xcf, 0x21, 0xad, 0x74],
            "RFC 8446 section 4.1.3"
        );
    }

    #[test]
    fn certificate_and_extensions_round_trip() {
        let der = [1u8, 2, 3];
        assert_eq!(
            parse_certificate(&encode_certificate(&[], &der)).unwrap(),
            Some(der.to_vec())
        );
        assert_eq!(
            parse_encrypted_extensions(&encode_encrypted_extensions(7)).unwrap(),
            vec![7]
        );
        let (ctx, schemes) = parse_certificate_request(&encode_certificate_request()).unwrap();
        assert!(ctx.is_empty());
        assert!(schemes.contains(&0x0403));
    }
}
