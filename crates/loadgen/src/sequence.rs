//! Loss from RTP sequence numbers alone, for packets that are counted but not decrypted.
//!
//! The SFU rewrites sequence numbers per subscriber, so every SSRC a client receives is
//! one continuous sequence: anything missing between the first and the highest number
//! seen is lost. The counter extends the 16-bit numbers across rollovers (a packet is
//! placed at the extended number nearest to the highest one seen), tells duplicates from
//! late packets with a bitmap of the last [`SEQUENCE_WINDOW`] numbers, and uses fixed
//! memory whatever arrives.

/// How far behind the highest sequence number a packet is still recognised as a
/// duplicate or a late arrival. Older packets are counted in
/// [`SequenceLoss::too_old`] and do not change the loss.
pub const SEQUENCE_WINDOW: u64 = 1024;

const WORDS: usize = (SEQUENCE_WINDOW / 64) as usize;

/// Counts received, lost, duplicate and reordered packets of one SSRC from their
/// sequence numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceLoss {
    /// Extended number of the first packet (`None` before any).
    first: Option<u64>,
    /// Highest extended number seen.
    highest: u64,
    /// Distinct sequence numbers received.
    unique: u64,
    /// Packets whose number was already received (within the window).
    duplicates: u64,
    /// Packets that arrived after a higher number (and filled a gap).
    reordered: u64,
    /// Packets more than [`SEQUENCE_WINDOW`] behind the highest number.
    too_old: u64,
    /// Bit `n % SEQUENCE_WINDOW` is set when extended number `n` (within the window
    /// below `highest`) was received.
    seen: [u64; WORDS],
}

impl Default for SequenceLoss {
    fn default() -> Self {
        Self {
            first: None,
            highest: 0,
            unique: 0,
            duplicates: 0,
            reordered: 0,
            too_old: 0,
            seen: [0; WORDS],
        }
    }
}

/// What one sequence number turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceVerdict {
    /// New and at least as high as every number before.
    InOrder,
    /// New, but lower than the highest seen: it fills a gap.
    Reordered,
    /// Already received.
    Duplicate,
    /// Too far behind to tell; ignored.
    TooOld,
}

impl SequenceLoss {
    /// The bitmap word and mask of `extended`.
    fn slot(extended: u64) -> (usize, u64) {
        let slot = extended % SEQUENCE_WINDOW;
        (usize::try_from(slot / 64).unwrap_or(0), 1u64 << (slot % 64))
    }

    fn is_seen(&self, extended: u64) -> bool {
        let (word, mask) = Self::slot(extended);
        self.seen.get(word).is_some_and(|w| w & mask != 0)
    }

    fn set_seen(&mut self, extended: u64, seen: bool) {
        let (word, mask) = Self::slot(extended);
        if let Some(w) = self.seen.get_mut(word) {
            if seen {
                *w |= mask;
            } else {
                *w &= !mask;
            }
        }
    }

    /// Records one packet's sequence number.
    pub fn on_packet(&mut self, sequence_number: u16) -> SequenceVerdict {
        let Some(_) = self.first else {
            let extended = u64::from(sequence_number) + (1 << 16);
            self.first = Some(extended);
            self.highest = extended;
            self.unique = 1;
            self.set_seen(extended, true);
            return SequenceVerdict::InOrder;
        };
        // The extended number nearest to the highest one: a forward step of up to 2^15
        // (rollover included) or a backward one of up to 2^15.
        let delta = i64::from(sequence_number.wrapping_sub(self.highest as u16) as i16);
        let Some(extended) = self.highest.checked_add_signed(delta) else {
            self.too_old += 1;
            return SequenceVerdict::TooOld;
        };
        if extended > self.highest {
            let step = extended - self.highest;
            if step >= SEQUENCE_WINDOW {
                self.seen = [0; WORDS];
            } else {
                for n in self.highest + 1..=extended {
                    self.set_seen(n, false);
                }
            }
            self.highest = extended;
            self.unique += 1;
            self.set_seen(extended, true);
            return SequenceVerdict::InOrder;
        }
        let first = self.first.unwrap_or(extended);
        if self.highest - extended >= SEQUENCE_WINDOW || extended < first {
            self.too_old += 1;
            return SequenceVerdict::TooOld;
        }
        if self.is_seen(extended) {
            self.duplicates += 1;
            return SequenceVerdict::Duplicate;
        }
        self.set_seen(extended, true);
        self.unique += 1;
        self.reordered += 1;
        SequenceVerdict::Reordered
    }

    /// Packets expected from the first number to the highest one.
    pub fn expected(&self) -> u64 {
        self.first.map_or(0, |first| self.highest - first + 1)
    }

    /// Distinct packets received.
    pub fn received(&self) -> u64 {
        self.unique
    }

    /// Packets missing between the first and the highest number (late arrivals that
    /// filled a gap are not lost; duplicates do not hide a loss).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.unique)
    }

    /// Duplicates seen.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Packets that arrived after a higher number.
    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// Packets too far behind to classify.
    pub fn too_old(&self) -> u64 {
        self.too_old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(numbers: impl IntoIterator<Item = u16>) -> SequenceLoss {
        let mut loss = SequenceLoss::default();
        for n in numbers {
            loss.on_packet(n);
        }
        loss
    }

    #[test]
    fn continuous_sequence_has_no_loss() {
        let loss = feed(100..200);
        assert_eq!(
            (loss.expected(), loss.received(), loss.lost()),
            (100, 100, 0)
        );
    }

    #[test]
    fn gaps_are_counted_as_lost() {
        let loss = feed((0..100).filter(|n| n % 10 != 3));
        assert_eq!(loss.expected(), 100);
        assert_eq!(loss.lost(), 10);
    }

    #[test]
    fn late_packet_fills_its_gap() {
        let mut loss = feed([1, 2, 4, 5]);
        assert_eq!(loss.lost(), 1);
        assert_eq!(loss.on_packet(3), SequenceVerdict::Reordered);
        assert_eq!((loss.lost(), loss.reordered()), (0, 1));
    }

    #[test]
    fn duplicates_do_not_hide_a_loss() {
        let mut loss = feed([10, 11, 13]);
        assert_eq!(loss.on_packet(13), SequenceVerdict::Duplicate);
        assert_eq!(loss.on_packet(11), SequenceVerdict::Duplicate);
        assert_eq!((loss.received(), loss.lost(), loss.duplicates()), (3, 1, 2));
    }

    #[test]
    fn rollover_extends_the_sequence() {
        let numbers = (65_500u32..65_536 + 100).map(|n| n as u16);
        let loss = feed(numbers.filter(|&n| n != 5 && n != 65_530));
        assert_eq!(loss.expected(), 136);
        assert_eq!(loss.lost(), 2);
    }

    #[test]
    fn reordering_across_rollover_is_a_late_packet_not_a_jump() {
        let mut loss = feed([65_534, 65_535, 1]);
        assert_eq!(loss.lost(), 1);
        assert_eq!(loss.on_packet(0), SequenceVerdict::Reordered);
        assert_eq!((loss.expected(), loss.lost()), (4, 0));
    }

    #[test]
    fn packet_before_the_first_is_not_counted() {
        let mut loss = feed([1000, 1001]);
        assert_eq!(loss.on_packet(999), SequenceVerdict::TooOld);
        assert_eq!((loss.expected(), loss.lost()), (2, 0));
    }

    #[test]
    fn packets_older_than_the_window_are_ignored() {
        let mut loss = feed([0]);
        loss.on_packet(2000);
        assert_eq!(loss.on_packet(500), SequenceVerdict::TooOld);
        assert_eq!(loss.too_old(), 1);
        assert_eq!(loss.lost(), 1999);
    }

    #[test]
    fn bitmap_is_cleared_when_the_sequence_moves_on() {
        // After a window's worth of progress the slot of an old number is reused: the
        // new number must not be taken for a duplicate.
        let mut loss = feed([0, 1]);
        loss.on_packet(1023);
        assert_eq!(loss.on_packet(1024), SequenceVerdict::InOrder);
        assert_eq!(loss.on_packet(1025), SequenceVerdict::InOrder);
        assert_eq!(loss.on_packet(1025), SequenceVerdict::Duplicate);
        assert_eq!(loss.lost(), 1026 - 5);
    }

    #[test]
    fn long_sequence_across_rollovers_counts_exactly() {
        let mut loss = SequenceLoss::default();
        let mut lost = 0;
        for n in 0u32..300_000 {
            if n % 997 == 0 && n > 0 {
                lost += 1;
                continue;
            }
            loss.on_packet(n as u16);
        }
        assert_eq!(loss.expected(), 300_000);
        assert_eq!(loss.lost(), lost);
    }
}
