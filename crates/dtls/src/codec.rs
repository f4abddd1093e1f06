//! A forward-only, bounds-checked reader and small write helpers.
//!
//! Every length field read from the network is checked against what remains before it is
//! used, so no input can make the parser index out of bounds or allocate on its behalf.

/// Reads big-endian integers and length-prefixed slices from a byte slice; never panics.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|b| b.first().copied())
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u24(&mut self) -> Option<u32> {
        self.take(3)
            .map(|b| u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    pub(crate) fn u48(&mut self) -> Option<u64> {
        self.take(6)
            .map(|b| u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]))
    }

    /// A slice prefixed by a one-byte length.
    pub(crate) fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }

    /// A slice prefixed by a two-byte length.
    pub(crate) fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    /// A slice prefixed by a three-byte length.
    pub(crate) fn vec24(&mut self) -> Option<&'a [u8]> {
        let n = self.u24()? as usize;
        self.take(n)
    }
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u24(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes()[1..]);
}

pub(crate) fn put_u48(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes()[2..]);
}

/// Writes `body` prefixed by a one-byte length. Callers only pass bodies they built.
pub(crate) fn put_vec8(out: &mut Vec<u8>, body: &[u8]) {
    out.push(body.len() as u8);
    out.extend_from_slice(body);
}

pub(crate) fn put_vec16(out: &mut Vec<u8>, body: &[u8]) {
    put_u16(out, body.len() as u16);
    out.extend_from_slice(body);
}

pub(crate) fn put_vec24(out: &mut Vec<u8>, body: &[u8]) {
    put_u24(out, body.len() as u32);
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_refuses_lengths_beyond_the_buffer() {
        let mut r = Reader::new(&[0x00, 0x05, 1, 2]);
        assert_eq!(r.vec16(), None);
        let mut r = Reader::new(&[3, 1, 2]);
        assert_eq!(r.vec8(), None);
        let mut r = Reader::new(&[0, 0, 2, 9, 8, 7]);
        assert_eq!(r.vec24(), Some(&[9u8, 8][..]));
        assert_eq!(r.u8(), Some(7));
        assert!(r.is_empty());
    }
}
