//! A forward-only, bounds-checked byte reader.
//!
//! Every parser in this crate reads network bytes through [`Reader`], so a length field
//! that points past the end of the buffer turns into `None` instead of a panic.

/// Reads big-endian integers and sub-slices from a byte slice, never past its end.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Offset of the next byte from the start of the buffer.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// The next `len` bytes, or `None` (without consuming) if fewer remain.
    pub(crate) fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(len)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// Everything not yet consumed.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        out
    }

    pub(crate) fn skip(&mut self, len: usize) -> Option<()> {
        self.take(len).map(|_| ())
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }

    pub(crate) fn u24(&mut self) -> Option<u32> {
        let b = self.take(3)?;
        Some(u32::from_be_bytes([0, *b.first()?, *b.get(1)?, *b.get(2)?]))
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        let arr: [u8; 4] = b.try_into().ok()?;
        Some(u32::from_be_bytes(arr))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let arr: [u8; 8] = b.try_into().ok()?;
        Some(u64::from_be_bytes(arr))
    }
}

/// Reads a big-endian `u32` at `offset`, if in bounds.
pub(crate) fn be_u32_at(buf: &[u8], offset: usize) -> Option<u32> {
    let b = buf.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

/// Writes `bytes` at `offset` if the whole range is in bounds; returns whether it did.
pub(crate) fn write_at(buf: &mut [u8], offset: usize, bytes: &[u8]) -> bool {
    let Some(end) = offset.checked_add(bytes.len()) else {
        return false;
    };
    match buf.get_mut(offset..end) {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_returns_none_past_end_without_consuming() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Some(0x0102));
        assert_eq!(r.u16(), None);
        assert_eq!(r.u8(), Some(3));
        assert_eq!(r.u8(), None);
        assert_eq!(r.take(usize::MAX), None);
    }

    #[test]
    fn write_at_refuses_out_of_bounds() {
        let mut b = [0u8; 4];
        assert!(!write_at(&mut b, 3, &[1, 2]));
        assert!(!write_at(&mut b, usize::MAX, &[1]));
        assert!(write_at(&mut b, 2, &[1, 2]));
        assert_eq!(b, [0, 0, 1, 2]);
    }
}
