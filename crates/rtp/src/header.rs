//! Zero-copy view of an RTP packet (RFC 3550 section 5.1) and its header extensions
//! (RFC 8285 one-byte and two-byte forms).

use crate::error::RtpError;
use crate::reader::Reader;

/// Length of the fixed RTP header before CSRCs.
pub const RTP_FIXED_HEADER_LEN: usize = 12;

/// RFC 8285 profile value of the one-byte extension form.
pub const ONE_BYTE_EXTENSION_PROFILE: u16 = 0xBEDE;

/// Which RFC 8285 form a header extension block uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionForm {
    /// Profile 0xBEDE: 4-bit id, 1..=16 data bytes, ids 1..=14.
    OneByte,
    /// Profile 0x100X: 8-bit id, 0..=255 data bytes, ids 1..=255.
    TwoByte,
}

impl ExtensionForm {
    fn from_profile(profile: u16) -> Option<Self> {
        if profile == ONE_BYTE_EXTENSION_PROFILE {
            Some(Self::OneByte)
        } else if profile & 0xFFF0 == 0x1000 {
            Some(Self::TwoByte)
        } else {
            None
        }
    }
}

/// A parsed view over an RTP packet; borrowing, never copying, the bytes.
///
/// All length fields are validated in [`RtpHeader::parse`], so the accessors cannot fail.
#[derive(Debug, Clone, Copy)]
pub struct RtpHeader<'a> {
    buf: &'a [u8],
    marker: bool,
    payload_type: u8,
    sequence_number: u16,
    timestamp: u32,
    ssrc: u32,
    csrc_count: usize,
    /// Offset of the 4-byte extension header, if the X bit is set.
    extension_offset: Option<usize>,
    extension_profile: u16,
    /// Offset and length of the extension data after the 4-byte extension header.
    extension_data: (usize, usize),
    header_len: usize,
    padding_len: usize,
}

impl<'a> RtpHeader<'a> {
    /// Parses and validates the header, CSRC list, extension block and padding of `buf`.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        let truncated = |needed: usize| RtpError::Truncated {
            needed,
            available: buf.len(),
        };
        let mut r = Reader::new(buf);
        let b0 = r.u8().ok_or(truncated(RTP_FIXED_HEADER_LEN))?;
        let version = b0 >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let has_padding = b0 & 0x20 != 0;
        let has_extension = b0 & 0x10 != 0;
        let csrc_count = usize::from(b0 & 0x0F);
        let b1 = r.u8().ok_or(truncated(RTP_FIXED_HEADER_LEN))?;
        let sequence_number = r.u16().ok_or(truncated(RTP_FIXED_HEADER_LEN))?;
        let timestamp = r.u32().ok_or(truncated(RTP_FIXED_HEADER_LEN))?;
        let ssrc = r.u32().ok_or(truncated(RTP_FIXED_HEADER_LEN))?;
        let csrc_end = RTP_FIXED_HEADER_LEN + 4 * csrc_count;
        r.skip(4 * csrc_count).ok_or(truncated(csrc_end))?;

        let mut extension_offset = None;
        let mut extension_profile = 0;
        let mut extension_data = (0, 0);
        if has_extension {
            let offset = r.position();
            extension_profile = r.u16().ok_or(truncated(offset + 4))?;
            let words = usize::from(r.u16().ok_or(truncated(offset + 4))?);
            let data_offset = r.position();
            r.skip(words * 4)
                .ok_or(truncated(data_offset + words * 4))?;
            extension_offset = Some(offset);
            extension_data = (data_offset, words * 4);
        }
        let header_len = r.position();
        let mut padding_len = 0;
        if has_padding {
            let available = r.remaining();
            padding_len = usize::from(buf.last().copied().unwrap_or(0));
            if padding_len == 0 || padding_len > available {
                return Err(RtpError::BadPadding {
                    padding_len,
                    available,
                });
            }
        }
        Ok(Self {
            buf,
            marker: b1 & 0x80 != 0,
            payload_type: b1 & 0x7F,
            sequence_number,
            timestamp,
            ssrc,
            csrc_count,
            extension_offset,
            extension_profile,
            extension_data,
            header_len,
            padding_len,
        })
    }

    /// The M bit: for video, the last packet of a frame.
    pub fn marker(&self) -> bool {
        self.marker
    }

    /// The 7-bit payload type.
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// The 16-bit sequence number.
    pub fn sequence_number(&self) -> u16 {
        self.sequence_number
    }

    /// The 32-bit media timestamp, in units of the codec clock rate.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// The synchronisation source.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The contributing sources (mixers only; normally empty in WebRTC).
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        let list = self
            .buf
            .get(RTP_FIXED_HEADER_LEN..RTP_FIXED_HEADER_LEN + 4 * self.csrc_count)
            .unwrap_or(&[]);
        list.chunks_exact(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap_or([0; 4])))
    }

    /// Bytes before the payload: fixed header, CSRCs and extension block.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Number of padding bytes at the end (0 when the P bit is clear).
    pub fn padding_len(&self) -> usize {
        self.padding_len
    }

    /// The payload, excluding header and padding.
    pub fn payload(&self) -> &'a [u8] {
        let end = self.buf.len().saturating_sub(self.padding_len);
        self.buf.get(self.header_len..end).unwrap_or(&[])
    }

    /// The whole packet this view was parsed from.
    pub fn packet(&self) -> &'a [u8] {
        self.buf
    }

    /// The extension block's profile field (0xBEDE, 0x100X or something else), if present.
    pub fn extension_profile(&self) -> Option<u16> {
        self.extension_offset.map(|_| self.extension_profile)
    }

    /// Iterates over RFC 8285 extension elements as `(id, data)`.
    ///
    /// Empty when there is no extension block or its profile is not an RFC 8285 form.
    pub fn extensions(&self) -> ExtensionIter<'a> {
        let form = self
            .extension_offset
            .and_then(|_| ExtensionForm::from_profile(self.extension_profile));
        let (off, len) = self.extension_data;
        let data = self.buf.get(off..off + len).unwrap_or(&[]);
        ExtensionIter {
            data,
            base_offset: off,
            pos: 0,
            form,
        }
    }

    /// The data of the first extension element with `id`, in either RFC 8285 form.
    pub fn extension(&self, id: u8) -> Option<&'a [u8]> {
        self.extensions().find(|e| e.id == id).map(|e| e.data)
    }

    /// Absolute offset and length of the data of extension `id` inside the packet.
    pub fn extension_range(&self, id: u8) -> Option<(usize, usize)> {
        self.extensions()
            .find(|e| e.id == id)
            .map(|e| (e.offset, e.len))
    }
}

/// One RFC 8285 extension element, located inside the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionElement<'a> {
    /// The local identifier negotiated in SDP (a=extmap).
    pub id: u8,
    /// The element's data bytes.
    pub data: &'a [u8],
    /// Offset of `data` from the start of the packet (for in-place rewriting).
    pub offset: usize,
    /// Length of `data`.
    pub len: usize,
}

/// Iterator over the elements of an RFC 8285 extension block; stops at malformed data.
#[derive(Debug, Clone)]
pub struct ExtensionIter<'a> {
    data: &'a [u8],
    base_offset: usize,
    pos: usize,
    form: Option<ExtensionForm>,
}

impl<'a> Iterator for ExtensionIter<'a> {
    type Item = ExtensionElement<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let form = self.form?;
        loop {
            let first = *self.data.get(self.pos)?;
            // A zero byte is padding in both forms (RFC 8285 sections 4.2 and 4.3).
            if first == 0 {
                self.pos += 1;
                continue;
            }
            let (id, len, hdr) = match form {
                ExtensionForm::OneByte => {
                    let id = first >> 4;
                    if id == 15 {
                        // Reserved: the rest of the block must be ignored.
                        self.form = None;
                        return None;
                    }
                    (id, usize::from(first & 0x0F) + 1, 1)
                }
                ExtensionForm::TwoByte => {
                    let len = usize::from(*self.data.get(self.pos + 1)?);
                    (first, len, 2)
                }
            };
            let start = self.pos + hdr;
            let Some(data) = self.data.get(start..start + len) else {
                self.form = None;
                return None;
            };
            self.pos = start + len;
            return Some(ExtensionElement {
                id,
                data,
                offset: self.base_offset + start,
                len,
            });
        }
    }
}

fn write_fixed(buf: &mut [u8], offset: usize, bytes: &[u8]) -> bool {
    if buf.len() < RTP_FIXED_HEADER_LEN {
        return false;
    }
    crate::reader::write_at(buf, offset, bytes)
}

/// Overwrites the SSRC in place; false if `buf` is shorter than a fixed RTP header.
pub fn set_ssrc(buf: &mut [u8], ssrc: u32) -> bool {
    write_fixed(buf, 8, &ssrc.to_be_bytes())
}

/// Overwrites the sequence number in place; false if `buf` is too short.
pub fn set_sequence_number(buf: &mut [u8], seq: u16) -> bool {
    write_fixed(buf, 2, &seq.to_be_bytes())
}

/// Overwrites the timestamp in place; false if `buf` is too short.
pub fn set_timestamp(buf: &mut [u8], timestamp: u32) -> bool {
    write_fixed(buf, 4, &timestamp.to_be_bytes())
}

/// Overwrites the 7-bit payload type, keeping the marker bit; false if `buf` is too short.
pub fn set_payload_type(buf: &mut [u8], payload_type: u8) -> bool {
    if buf.len() < RTP_FIXED_HEADER_LEN {
        return false;
    }
    match buf.get_mut(1) {
        Some(b) => {
            *b = (*b & 0x80) | (payload_type & 0x7F);
            true
        }
        None => false,
    }
}

/// Sets or clears the marker bit; false if `buf` is too short.
pub fn set_marker(buf: &mut [u8], marker: bool) -> bool {
    if buf.len() < RTP_FIXED_HEADER_LEN {
        return false;
    }
    match buf.get_mut(1) {
        Some(b) => {
            *b = (*b & 0x7F) | if marker { 0x80 } else { 0 };
            true
        }
        None => false,
    }
}

/// Overwrites the data of an existing extension element `id` whose length equals
/// `data.len()` (e.g. a transport-wide sequence number). Returns false if the packet does
/// not parse, has no such element, or the lengths differ: growing the header in place would
/// shift the payload, which the forwarding path never does.
pub fn set_extension(buf: &mut [u8], id: u8, data: &[u8]) -> bool {
    let range = match RtpHeader::parse(buf) {
        Ok(h) => h.extension_range(id),
        Err(_) => None,
    };
    match range {
        Some((offset, len)) if len == data.len() => crate::reader::write_at(buf, offset, data),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_payload_type_keeps_marker_bit() {
        let mut p = [0x80, 0x80 | 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(set_payload_type(&mut p, 111));
        assert_eq!(p[1], 0x80 | 111);
        assert!(!set_payload_type(&mut p[..11], 1));
    }
}
