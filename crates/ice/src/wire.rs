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

#[cfg(test)]
mod tests {
    use super::*;

    fn message(attributes: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0x00, 0x01];
        bytes.extend_from_slice(&u16::try_from(attributes.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        bytes.extend_from_slice(&[1; 12]);
        bytes.extend_from_slice(attributes);
        bytes
    }

    #[test]
    fn header_requires_exact_length_cookie_and_zero_top_bits() {
        let good = message(&[]);
        assert!(Header::parse(&good).is_some());
        let mut top_bits = good.clone();
        top_bits[0] = 0x40;
        assert!(Header::parse(&top_bits).is_none());
        let mut longer = good.clone();
        longer.push(0);
        assert!(Header::parse(&longer).is_none());
        let mut unaligned = message(&[0, 0]);
        unaligned[3] = 2;
        assert!(Header::parse(&unaligned).is_none());
    }

    #[test]
    fn class_and_method_decode_from_message_type() {
        let header = |message_type| Header {
            message_type,
            transaction_id: [0; 12],
        };
        assert_eq!(header(0x0001).class(), Class::Request);
        assert_eq!(header(0x0011).class(), Class::Indication);
        assert_eq!(header(0x0101).class(), Class::SuccessResponse);
        assert_eq!(header(0x0111).class(), Class::ErrorResponse);
        assert_eq!(header(0x0101).method(), METHOD_BINDING);
        assert_eq!(header(0x0003).method(), 0x003);
        assert_eq!(header(0x3EEF).method(), 0xFFF);
    }

    #[test]
    fn attributes_skip_padding_and_report_offsets() {
        let bytes = message(&[
            0x00, 0x06, 0x00, 0x03, b'a', b':', b'b', 0, // USERNAME, 1 byte of padding
            0x80, 0x28, 0x00, 0x04, 1, 2, 3, 4, // FINGERPRINT
        ]);
        let attributes: Vec<_> = Attributes::new(&bytes).collect();
        assert_eq!(attributes.len(), 2);
        assert_eq!(attributes[0].value, b"a:b");
        assert_eq!(attributes[1].offset, 28);
        assert_eq!(attributes[1].value, &[1, 2, 3, 4]);
    }

    #[test]
    fn attribute_walk_stops_at_truncation_and_at_the_count_bound() {
        let truncated = message(&[0x00, 0x06, 0x00, 0x09, b'a', b':', b'b', 0]);
        let mut walk = Attributes::new(&truncated);
        assert!(walk.next().is_none());
        assert!(walk.malformed());
        assert!(CheckLayout::scan(&truncated).is_none());

        let many = [0x80u8, 0x22, 0x00, 0x00].repeat(MAX_ATTRIBUTES + 1);
        let bytes = message(&many);
        let mut walk = Attributes::new(&bytes);
        assert_eq!(walk.by_ref().count(), MAX_ATTRIBUTES);
        assert!(walk.malformed());
    }

    #[test]
    fn layout_ignores_attributes_after_integrity_but_sees_fingerprint() {
        let mut attributes = vec![0x00, 0x08, 0x00, 0x14];
        attributes.extend_from_slice(&[0xAA; 20]);
        attributes.extend_from_slice(&[0x00, 0x06, 0x00, 0x04, b'x', b':', b'y', b'z']);
        attributes.extend_from_slice(&[0x80, 0x28, 0x00, 0x04, 1, 2, 3, 4]);
        let bytes = message(&attributes);
        let layout = CheckLayout::scan(&bytes).unwrap();
        assert!(layout.username.is_none(), "USERNAME after MI is ignored");
        assert_eq!(layout.integrity.map(|(offset, _)| offset), Some(20));
        assert_eq!(layout.fingerprint, Some(&[1u8, 2, 3, 4][..]));
        assert!(layout.fingerprint_is_last);
    }

    #[test]
    fn split_username_needs_a_colon_and_a_local_part() {
        assert_eq!(split_username(b"ab:cd"), Some(("ab", "cd")));
        assert_eq!(split_username(b"ab:"), Some(("ab", "")));
        assert_eq!(split_username(b"ab:c:d"), Some(("ab", "c:d")));
        assert_eq!(split_username(b":cd"), None);
        assert_eq!(split_username(b"abcd"), None);
        assert_eq!(split_username(&[0xFF, b':']), None);
    }
}
