//! RFC 7983 demultiplexing of one UDP port shared by STUN, DTLS and SRTP.
//!
//! The server calls [`classify`] on every datagram, so it looks at one or two bytes and
//! nothing else. [`stun_local_ufrag`] lets the server find the session a binding request
//! belongs to before any session-specific validation.

use crate::wire::{Attributes, Header, ATTR_USERNAME, BINDING_REQUEST};

/// What a datagram on the shared port is, by its first byte (RFC 7983 section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketClass {
    /// First byte 0..=3: STUN.
    Stun,
    /// First byte 16..=19: ZRTP (never used by WebRTC; dropped by the server).
    Zrtp,
    /// First byte 20..=63: DTLS.
    Dtls,
    /// First byte 64..=79: TURN ChannelData.
    TurnChannel,
    /// First byte 128..=191 and a second byte outside 192..=223: RTP.
    Rtp,
    /// First byte 128..=191 and a second byte in 192..=223: RTCP (RFC 5761 section 4).
    Rtcp,
    /// Empty, or a first byte no protocol on this port uses.
    Unknown,
}

/// Classifies a datagram by its first byte (and, for RTP/RTCP, its second).
#[inline]
pub fn classify(datagram: &[u8]) -> PacketClass {
    match datagram.first() {
        None => PacketClass::Unknown,
        Some(&first) => match first {
            0..=3 => PacketClass::Stun,
            16..=19 => PacketClass::Zrtp,
            20..=63 => PacketClass::Dtls,
            64..=79 => PacketClass::TurnChannel,
            128..=191 => match datagram.get(1) {
                Some(192..=223) => PacketClass::Rtcp,
                _ => PacketClass::Rtp,
            },
            _ => PacketClass::Unknown,
        },
    }
}

/// The part of USERNAME before ':' in a STUN Binding request: the ufrag the server
/// gave this session in its SDP answer, so the session can be found before validation.
///
/// Returns `None` for anything that is not a well-formed Binding request with a UTF-8
/// `local:remote` USERNAME. The scan visits at most a fixed number of attributes and
/// allocates nothing. The result is *unauthenticated*: use it only to pick the session
/// whose agent then validates the request.
pub fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
    let header = Header::parse(datagram)?;
    if header.message_type != BINDING_REQUEST {
        return None;
    }
    let username = Attributes::new(datagram).find(|a| a.attr_type == ATTR_USERNAME)?;
    crate::wire::split_username(username.value).map(|(local, _)| local)
}
