//! Handshake reassembly by byte coverage.
//!
//! A message completes when the union of its fragments covers every byte, whatever their
//! boundaries, order, overlaps or duplicates; peers re-cut retransmitted flights at new
//! boundaries, so exact-offset matching (what the stacks in field-notes.md do) stalls.
//! Fragments of messages already delivered are reported as the peer's retransmission and
//! never stored. Everything buffered counts against one byte budget per connection.

use crate::messages::FragmentHeader;
use crate::Error;

/// How far ahead of the next expected message we buffer (a flight has at most 6 messages).
const MAX_MESSAGES_AHEAD: u16 = 16;
/// Distinct covered ranges per message before further fragments are dropped; merging keeps
/// real traffic far below this, only a peer sending thousands of disjoint slivers hits it.
const MAX_RANGES_PER_MESSAGE: usize = 256;

/// What happened to one fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FragmentOutcome {
    /// Stored; may have completed a message. `new_bytes` is false when every byte of it
    /// was already held (a duplicate).
    Accepted { new_bytes: bool },
    /// Part of a message we already delivered: the peer is retransmitting.
    Retransmission { message_seq: u16 },
    /// Not stored, for a reason that is the peer's problem but not fatal.
    Dropped(FragmentDrop),
}

/// Why a fragment was dropped without failing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FragmentDrop {
    TooFarAhead,
    BudgetExhausted,
    TooManyRanges,
}

/// A complete handshake message, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CompleteMessage {
    pub(crate) msg_type: u8,
    pub(crate) message_seq: u16,
    pub(crate) epoch: u16,
    pub(crate) body: Vec<u8>,
}

#[derive(Debug)]
struct Partial {
    message_seq: u16,
    msg_type: u8,
    epoch: u16,
    body: Vec<u8>,
    /// Sorted, disjoint, non-adjacent half-open ranges of received bytes.
    covered: Vec<(usize, usize)>,
}

impl Partial {
    fn is_complete(&self) -> bool {
        self.body.is_empty() || self.covered.first() == Some(&(0, self.body.len()))
    }

    fn covered_len(&self) -> usize {
        self.covered.iter().map(|(s, e)| e - s).sum()
    }

    /// Records `[start, end)` as received, merging neighbours. Returns false when the
    /// range list is full and the range would add a new entry.
    fn cover(&mut self, start: usize, end: usize) -> bool {
        if start == end {
            return true;
        }
        let mut new_start = start;
        let mut new_end = end;
        let mut merged = Vec::with_capacity(self.covered.len() + 1);
        let mut inserted = false;
        for &(s, e) in &self.covered {
            if e < new_start {
                merged.push((s, e));
            } else if s > new_end {
                if !inserted {
                    merged.push((new_start, new_end));
                    inserted = true;
                }
                merged.push((s, e));
            } else {
                new_start = new_start.min(s);
                new_end = new_end.max(e);
            }
        }
        if !inserted {
            merged.push((new_start, new_end));
        }
        if merged.len() > MAX_RANGES_PER_MESSAGE {
            return false;
        }
        self.covered = merged;
        true
    }
}

/// Reassembles the peer's handshake messages and hands them out strictly in order.
#[derive(Debug)]
pub(crate) struct Reassembler {
    next_seq: u16,
    pending: Vec<Partial>,
    buffered_bytes: usize,
    max_buffered_bytes: usize,
}

impl Reassembler {
    pub(crate) fn new(max_buffered_bytes: usize) -> Self {
        Self {
            next_seq: 0,
            pending: Vec::new(),
            buffered_bytes: 0,
            max_buffered_bytes,
        }
    }

    /// The message_seq of the next message to deliver.
    pub(crate) fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// Bytes currently held for incomplete or undelivered messages.
    #[cfg(test)]
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Drops everything (after the handshake, to free memory).
    pub(crate) fn clear(&mut self) {
        self.pending = Vec::new();
        self.buffered_bytes = 0;
    }

    /// Takes one fragment. `fragment` must be exactly `header.fragment_length` bytes.
    pub(crate) fn insert(
        &mut self,
        epoch: u16,
        header: &FragmentHeader,
        fragment: &[u8],
    ) -> Result<FragmentOutcome, Error> {
        let length = header.length as usize;
        let offset = header.fragment_offset as usize;
        let end = offset + header.fragment_length as usize;
        if end > length {
            return Err(Error::FragmentOutOfBounds {
                offset,
                fragment_length: header.fragment_length as usize,
                length,
            });
        }
        if header.message_seq < self.next_seq {
            return Ok(FragmentOutcome::Retransmission {
                message_seq: header.message_seq,
            });
        }
        if header.message_seq - self.next_seq >= MAX_MESSAGES_AHEAD {
            return Ok(FragmentOutcome::Dropped(FragmentDrop::TooFarAhead));
        }
        if length > self.max_buffered_bytes {
            return Err(Error::MessageTooLarge {
                length,
                limit: self.max_buffered_bytes,
            });
        }
        let index = match self
            .pending
            .iter()
            .position(|p| p.message_seq == header.message_seq)
        {
            Some(i) => {
                let p = &self.pending[i];
                if p.msg_type != header.msg_type || p.body.len() != length || p.epoch != epoch {
                    return Err(Error::InconsistentFragments {
                        message_seq: header.message_seq,
                    });
                }
                i
            }
            None => {
                if self.buffered_bytes + length > self.max_buffered_bytes {
                    return Ok(FragmentOutcome::Dropped(FragmentDrop::BudgetExhausted));
                }
                self.buffered_bytes += length;
                self.pending.push(Partial {
                    message_seq: header.message_seq,
                    msg_type: header.msg_type,
                    epoch,
                    body: vec![0; length],
                    covered: Vec::new(),
                });
                self.pending.len() - 1
            }
        };
        let partial = &mut self.pending[index];
        if let (Some(dst), true) = (
            partial.body.get_mut(offset..end),
            fragment.len() == end - offset,
        ) {
            dst.copy_from_slice(fragment);
        } else {
            return Err(Error::Decode {
                what: "handshake fragment",
            });
        }
        let before = partial.covered_len();
        if !partial.cover(offset, end) {
            return Ok(FragmentOutcome::Dropped(FragmentDrop::TooManyRanges));
        }
        Ok(FragmentOutcome::Accepted {
            new_bytes: partial.covered_len() > before || before == 0,
        })
    }

    /// The next message in order, if it is complete.
    pub(crate) fn pop(&mut self) -> Option<CompleteMessage> {
        let i = self
            .pending
            .iter()
            .position(|p| p.message_seq == self.next_seq && p.is_complete())?;
        let p = self.pending.swap_remove(i);
        self.buffered_bytes -= p.body.len();
        self.next_seq = self.next_seq.wrapping_add(1);
        Some(CompleteMessage {
            msg_type: p.msg_type,
            message_seq: p.message_seq,
            epoch: p.epoch,
            body: p.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u16, length: u32, offset: u32, len: u32) -> FragmentHeader {
        FragmentHeader {
            msg_type: 11,
            length,
            message_seq: seq,
            fragment_offset: offset,
            fragment_length: len,
        }
    }

    fn feed(r: &mut Reassembler, msg: &[u8], seq: u16, cuts: &[(usize, usize)]) {
        for &(s, e) in cuts {
            let h = header(seq, msg.len() as u32, s as u32, (e - s) as u32);
            r.insert(0, &h, &msg[s..e]).unwrap();
        }
    }

    #[test]
    fn completes_from_overlapping_out_of_order_fragments() {
        let msg: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut r = Reassembler::new(64 * 1024);
        feed(&mut r, &msg, 0, &[(500, 800), (0, 300), (250, 520)]);
        assert_eq!(r.pop(), None, "bytes 800..1000 still missing");
        feed(&mut r, &msg, 0, &[(790, 1000), (100, 200)]);
        let m = r.pop().unwrap();
        assert_eq!(m.body, msg);
        assert_eq!(r.buffered_bytes(), 0);
        assert_eq!(r.next_seq(), 1);
    }

    #[test]
    fn delivered_messages_are_reported_as_retransmissions_and_not_stored() {
        let msg = [1u8; 10];
        let mut r = Reassembler::new(1024);
        feed(&mut r, &msg, 0, &[(0, 10)]);
        r.pop().unwrap();
        let out = r.insert(0, &header(0, 10, 0, 5), &msg[..5]).unwrap();
        assert_eq!(out, FragmentOutcome::Retransmission { message_seq: 0 });
        assert_eq!(r.buffered_bytes(), 0);
    }

    #[test]
    fn fragment_beyond_message_end_is_an_error() {
        let mut r = Reassembler::new(1024);
        let e = r.insert(0, &header(0, 10, 8, 5), &[0; 5]).unwrap_err();
        assert!(matches!(e, Error::FragmentOutOfBounds { .. }));
    }

    #[test]
    fn oversized_message_is_refused_before_allocation() {
        let mut r = Reassembler::new(1024);
        let e = r.insert(0, &header(0, 0xff_ffff, 0, 1), &[0]).unwrap_err();
        assert!(matches!(e, Error::MessageTooLarge { .. }));
        assert_eq!(r.buffered_bytes(), 0);
    }

    #[test]
    fn budget_is_shared_across_messages() {
        let mut r = Reassembler::new(1000);
        r.insert(0, &header(0, 600, 0, 1), &[0]).unwrap();
        let out = r.insert(0, &header(1, 600, 0, 1), &[0]).unwrap();
        assert_eq!(out, FragmentOutcome::Dropped(FragmentDrop::BudgetExhausted));
    }

    #[test]
    fn inconsistent_lengths_are_rejected() {
        let mut r = Reassembler::new(1000);
        r.insert(0, &header(0, 600, 0, 1), &[0]).unwrap();
        let e = r.insert(0, &header(0, 601, 1, 1), &[0]).unwrap_err();
        assert!(matches!(e, Error::InconsistentFragments { .. }));
    }

    #[test]
    fn empty_messages_complete_at_once() {
        let mut r = Reassembler::new(1000);
        r.insert(0, &header(0, 0, 0, 0), &[]).unwrap();
        assert_eq!(r.pop().unwrap().body.len(), 0);
    }

    #[test]
    fn range_list_is_bounded() {
        let mut r = Reassembler::new(100_000);
        let mut last = FragmentOutcome::Accepted { new_bytes: true };
        for i in 0..400u32 {
            last = r.insert(0, &header(0, 10_000, i * 3, 1), &[0]).unwrap();
        }
        assert_eq!(last, FragmentOutcome::Dropped(FragmentDrop::TooManyRanges));
    }
}
