//! Extended (wrap-free) sequence numbers.
//!
//! RTP sequence numbers are 16 bits and wrap every 65536 packets, about 20 seconds of
//! 1080p video. Everything that compares or subtracts them works on 64-bit extended
//! numbers produced by [`SeqUnwrapper`], so wrap-around is handled in one place.

/// `a` is newer than `b` in 16-bit serial number arithmetic (RFC 1982).
pub fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

/// Turns 16-bit sequence numbers into 64-bit extended ones by tracking the highest seen.
///
/// A number within half the space behind the highest is treated as a late packet, not a
/// wrap. Extended numbers start at `1 << 16` so that packets slightly older than the first
/// one still map to a non-negative value.
#[derive(Debug, Clone, Default)]
pub struct SeqUnwrapper {
    highest: Option<u64>,
}

impl SeqUnwrapper {
    /// A fresh unwrapper that has seen nothing.
    pub fn new() -> Self {
        Self { highest: None }
    }

    /// Extended form of `seq` without updating the highest seen.
    pub fn peek(&self, seq: u16) -> u64 {
        match self.highest {
            None => (1u64 << 16) + u64::from(seq),
            Some(h) => {
                let delta = seq.wrapping_sub(h as u16) as i16;
                // `h` is at least 1 << 16 and moves back at most 32768, so this never underflows
                // in practice; saturate anyway to stay panic-free.
                if delta >= 0 {
                    h.saturating_add(delta as u64)
                } else {
                    h.saturating_sub(u64::from(delta.unsigned_abs()))
                }
            }
        }
    }

    /// Extended form of `seq`, advancing the highest seen if it is newer.
    pub fn extend(&mut self, seq: u16) -> u64 {
        let ext = self.peek(seq);
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    /// The highest extended sequence number seen so far.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrapper_counts_cycles_across_wrap() {
        let mut u = SeqUnwrapper::new();
        let a = u.extend(65534);
        let b = u.extend(65535);
        let c = u.extend(0);
        let d = u.extend(1);
        assert_eq!([b - a, c - b, d - c], [1, 1, 1]);
        // a late packet from before the wrap maps behind, not a cycle ahead
        assert_eq!(u.extend(65535), b);
        assert_eq!(u.highest(), Some(d));
    }

    #[test]
    fn serial_comparison_handles_wrap() {
        assert!(seq_newer(0, 65535));
        assert!(!seq_newer(65535, 0));
        assert!(seq_newer(10, 5));
        assert!(!seq_newer(5, 5));
    }
}
