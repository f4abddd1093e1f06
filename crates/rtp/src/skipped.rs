//! Numbers an SFU chose not to forward, so that what it does forward stays gap-free.
//!
//! When an SFU drops whole pictures of a temporal layer for one subscriber, the packets it
//! drops leave holes in the sequence numbers (and the pictures in the VP8 PictureIDs) the
//! subscriber sees; its receiver would take them for losses and ask for them again. The
//! forwarded numbers are therefore renumbered: every number is shifted down by how many
//! numbers before it were skipped. [`SkippedNumbers`] keeps those skipped numbers (as
//! extended, wrap-free values) for a bounded window, so that reordered packets and
//! retransmissions within the window are numbered exactly as the first time.

use std::collections::VecDeque;

/// Most skipped numbers remembered. Beyond it the oldest is folded away: numbers before it
/// can no longer be translated and are refused (at 30 pictures/s with half of them
/// dropped, several seconds of video: far older than any useful reordering).
pub const MAX_SKIPPED: usize = 512;

/// Sorted extended numbers that were skipped since the last [`clear`](Self::clear).
#[derive(Debug, Clone, Default)]
pub struct SkippedNumbers {
    /// Ascending, no duplicates.
    entries: VecDeque<u64>,
    /// Skipped numbers folded out of `entries` (all of them older than `floor`).
    folded: u64,
    /// Numbers below this can no longer be translated.
    floor: u64,
}

impl SkippedNumbers {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything (a new source starts its own numbering).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.folded = 0;
        self.floor = 0;
    }

    /// Records `number` as skipped. Only a number newer than every number already
    /// translated may be skipped (the caller checks): an older one was, or will be,
    /// counted by numbers already written.
    pub fn skip(&mut self, number: u64) {
        if number < self.floor || self.contains(number) {
            return;
        }
        let at = self.entries.partition_point(|&e| e < number);
        self.entries.insert(at, number);
        if self.entries.len() > MAX_SKIPPED {
            if let Some(oldest) = self.entries.pop_front() {
                self.folded += 1;
                self.floor = oldest.saturating_add(1);
            }
        }
    }

    /// Whether `number` was skipped.
    pub fn contains(&self, number: u64) -> bool {
        self.entries.binary_search(&number).is_ok()
    }

    /// How many skipped numbers lie before `number`; `None` when `number` is older than
    /// the window and cannot be translated.
    pub fn count_before(&self, number: u64) -> Option<u64> {
        if number < self.floor {
            return None;
        }
        let inside = self.entries.partition_point(|&e| e < number) as u64;
        Some(self.folded + inside)
    }

    /// The inverse of shifting by [`count_before`](Self::count_before): the number that was
    /// written as `shifted`, i.e. the `n` (not skipped) with `n - count_before(n) ==
    /// shifted`. `None` when it lies before the window.
    pub fn unshift(&self, shifted: u64) -> Option<u64> {
        let mut number = shifted.checked_add(self.folded)?;
        for &e in &self.entries {
            if e <= number {
                number += 1;
            } else {
                break;
            }
        }
        (number >= self.floor).then_some(number)
    }

    /// Whether nothing was skipped (the common case, checked first on the packet path).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.folded == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_after_a_skip_shift_down_and_unshift_back() {
        let mut s = SkippedNumbers::new();
        s.skip(12);
        s.skip(14);
        s.skip(15);
        assert_eq!(s.count_before(11), Some(0));
        assert_eq!(s.count_before(13), Some(1));
        assert_eq!(s.count_before(16), Some(3));
        for n in [10u64, 11, 13, 16, 17] {
            let shifted = n - s.count_before(n).unwrap();
            assert_eq!(s.unshift(shifted), Some(n), "{n}");
        }
        // 10, 11, 13, 16, 17 are written as 10, 11, 12, 13, 14: no gaps
        let written: Vec<u64> = [10u64, 11, 13, 16, 17]
            .iter()
            .map(|&n| n - s.count_before(n).unwrap())
            .collect();
        assert_eq!(written, vec![10, 11, 12, 13, 14]);
    }

    #[test]
    fn the_window_is_bounded_and_older_numbers_are_refused() {
        let mut s = SkippedNumbers::new();
        for n in 0..(MAX_SKIPPED as u64 + 10) {
            s.skip(2 * n + 1);
        }
        assert_eq!(s.entries.len(), MAX_SKIPPED);
        // the ten oldest were folded: numbers at or before the tenth are refused
        assert_eq!(s.count_before(19), None);
        assert_eq!(s.count_before(20), Some(10));
        let late = 2 * (MAX_SKIPPED as u64 + 9) + 2;
        assert_eq!(s.count_before(late), Some(MAX_SKIPPED as u64 + 10));
        assert_eq!(s.unshift(late - (MAX_SKIPPED as u64 + 10)), Some(late));
        assert_eq!(s.unshift(0), None);
    }

    #[test]
    fn a_number_is_skipped_once() {
        let mut s = SkippedNumbers::new();
        s.skip(5);
        s.skip(5);
        assert_eq!(s.count_before(6), Some(1));
        assert!(s.contains(5));
        s.clear();
        assert!(s.is_empty());
        assert_eq!(s.count_before(6), Some(0));
    }
}
