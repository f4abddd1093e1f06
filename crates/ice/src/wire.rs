//! A bounded, forward-only view of raw STUN bytes (RFC 8489 section 5 and 14).
//!
//! Used before any allocation or cryptography: to find the session a datagram belongs to,
//! to see which of USERNAME, MESSAGE-INTEGRITY and FINGERPRINT are present (stun-rs only
//! validates what is present), and to locate the bytes that MESSAGE-INTEGRITY covers.
//! Every read is checked against what remains; nothing here can panic.

/// The fixed STUN header length.
pub(crate) const HEADER_BYTES: usize = 20;
/// The magic cookie of RFC 5389/8489 messages.
pub(crate) const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Message type of a Binding request.
pub(crate) const BINDING_REQUEST: u16 = 0x0001;
/// The Binding method number.
pub(crate) const METHOD_BINDING: u16 = 0x001;

pub(crate) const ATTR_USERNAME: u16 = 0x0006;
pub(crate) const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
pub(crate) const ATTR_FINGERPRINT: u16 = 0x8028;

/// Length of an HMAC-SHA1 MESSAGE-INTEGRITY value.
pub(crate) const MESSAGE_INTEGRITY_BYTES: usize = 20;
/// Length of a FINGERPRINT value.
pub(crate) const FINGERPRINT_BYTES: usize = 4;
/// Attribute header (type + length).
const ATTR_HEADER_BYTES: usize = 4;

/// No browser sends more than about ten attributes in a check; a message with more is
/// treated as malformed so that a scan is bounded by a constant, not by the datagram.
pub(crate) const MAX_ATTRIBUTES: usize = 32;

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let end = at.checked_add(2)?;
    let b = bytes.get(at..end)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    let b: [u8; 4] = bytes.get(at..end)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// STUN message classes (RFC 8489 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Request,
    Indication,
    SuccessResponse,
    ErrorResponse,
}

/// The parsed fixed header of a STUN message whose length field matches the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) message_type: u16,
    pub(crate) transaction_id: [u8; 12],
}

impl Header {
    /// Parses the header; `None` unless the datagram is exactly one STUN message.
    pub(crate) fn parse(datagram: &[u8]) -> Option<Header> {
        let message_type = read_u16(datagram, 0)?;
        if message_type & 0xC000 != 0 {
            return None;
        }
        let length_bytes = usize::from(read_u16(datagram, 2)?);
        if length_bytes % 4 != 0 || HEADER_BYTES.checked_add(length_bytes)? != datagram.len() {
            return None;
        }
        if read_u32(datagram, 4)? != MAGIC_COOKIE {
            return None;
        }
        let transaction_id: [u8; 12] = datagram.get(8..HEADER_BYTES)?.try_into().ok()?;
        Some(Header {
            message_type,
            transaction_id,
        })
    }

    pub(crate) fn class(&self) -> Class {
        match ((self.message_type >> 4) & 0x1) | ((self.message_type >> 7) & 0x2) {
            0 => Class::Request,
            1 => Class::Indication,
            2 => Class::SuccessResponse,
            _ => Class::ErrorResponse,
        }
    }

    pub(crate) fn method(&self) -> u16 {
        let t = self.message_type;
        (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80)
    }
}

/// One attribute: its type, where its header starts in the message, and its value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawAttribute<'a> {
    pub(crate) attr_type: u16,
    pub(crate) offset: usize,
    pub(crate) value: &'a [u8],
}

/// Walks the attributes of a message whose header has been checked.
///
/// Stops (and sets `malformed`) at a truncated attribute or after [`MAX_ATTRIBUTES`].
pub(crate) struct Attributes<'a> {
    message: &'a [u8],
    position: usize,
    count: usize,
    malformed: bool,
}

impl<'a> Attributes<'a> {
    pub(crate) fn new(message: &'a [u8]) -> Self {
        Attributes {
            message,
            position: HEADER_BYTES,
            count: 0,
            malformed: false,
        }
    }

    /// True when the walk stopped early because the attributes did not parse.
    pub(crate) fn malformed(&self) -> bool {
        self.malformed
    }

    fn fail(&mut self) -> Option<RawAttribute<'a>> {
        self.malformed = true;
        self.position = self.message.len();
        None
    }
}

impl<'a> Iterator for Attributes<'a> {
    type Item = RawAttribute<'a>;

    fn next(&mut self) -> Option<RawAttribute<'a>> {
        if self.position >= self.message.len() {
            return None;
        }
        if self.count >= MAX_ATTRIBUTES {
            return self.fail();
        }
        let offset = self.position;
        let (Some(attr_type), Some(length)) = (
            read_u16(self.message, offset),
            read_u16(self.message, offset.saturating_add(2)),
        ) else {
            return self.fail();
        };
        let start = offset.saturating_add(ATTR_HEADER_BYTES);
        let end = start.saturating_add(usize::from(length));
        let Some(value) = self.message.get(start..end) else {
            return self.fail();
        };
        let padded_end = end.saturating_add((4 - usize::from(length) % 4) % 4);
        if padded_end > self.message.len() {
            return self.fail();
        }
        self.position = padded_end;
        self.count += 1;
        Some(RawAttribute {
            attr_type,
            offset,
            value,
        })
    }
}

/// What a connectivity check must carry, located without decoding anything else.
#[derive(Debug, Default)]
pub(crate) struct CheckLayout<'a> {
    /// The first USERNAME value.
    pub(crate) username: Option<&'a [u8]>,
    /// Offset of the first MESSAGE-INTEGRITY attribute header, and its value.
    pub(crate) integrity: Option<(usize, &'a [u8])>,
    /// The FINGERPRINT value.
    pub(crate) fingerprint: Option<&'a [u8]>,
    /// Offset of the FINGERPRINT attribute header.
    pub(crate) fingerprint_offset: usize,
    /// False when anything follows FINGERPRINT (RFC 8489 section 14.7: it must be last).
    pub(crate) fingerprint_is_last: bool,
}

impl<'a> CheckLayout<'a> {
    /// Scans a message whose header has been checked; `None` if its attributes are malformed.
    pub(crate) fn scan(message: &'a [u8]) -> Option<CheckLayout<'a>> {
        let mut layout = CheckLayout::default();
        let mut attributes = Attributes::new(message);
        for attribute in attributes.by_ref() {
            if layout.fingerprint.is_some() {
                layout.fingerprint_is_last = false;
                continue;
            }
            match attribute.attr_type {
                ATTR_FINGERPRINT => {
                    layout.fingerprint = Some(attribute.value);
                    layout.fingerprint_offset = attribute.offset;
                    layout.fingerprint_is_last = true;
                }
                // RFC 8489 section 14.5: attributes after MESSAGE-INTEGRITY, other than
                // FINGERPRINT, are ignored.
                _ if layout.integrity.is_some() => {}
                ATTR_MESSAGE_INTEGRITY => {
                    layout.integrity = Some((attribute.offset, attribute.value));
                }
                ATTR_USERNAME if layout.username.is_none() => {
                    layout.username = Some(attribute.value);
                }
                _ => {}
            }
        }
        if attributes.malformed() {
            None
        } else {
            Some(layout)
        }
    }
}

/// Splits an ICE USERNAME (`ourufrag:theirufrag`) at its first colon.
pub(crate) fn split_username(username: &[u8]) -> Option<(&str, &str)> {
    let text = core::str::from_utf8(username).ok()?;
    let (local, remote) = text.split_once(':')?;
    if local.is_empty() {
        return None;
    }
    Some((local, remote))
}
