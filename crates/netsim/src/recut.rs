//! Re-fragmenting DTLS handshake flights at random boundaries.
//!
//! Browsers and other stacks may cut a retransmitted flight at different fragment
//! boundaries than the original (field notes: two of three Rust stacks never finish
//! a handshake when that happens). The re-cutter emulates such a peer on the wire:
//! every epoch-0 handshake fragment is split into 1..=3 pieces at fresh random
//! boundaries, each piece becomes its own record (same epoch and sequence number),
//! other records pass unchanged and in order, and everything is re-packed greedily
//! into datagrams of at most `max_datagram_size` bytes.

use crate::dtls_view::{
    records, write_handshake_header, write_record_header, HANDSHAKE_HEADER_LEN, RECORD_HEADER_LEN,
};
use crate::SimRng;

/// Header bytes each handshake piece costs once it is its own record.
const PIECE_OVERHEAD: usize = RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN;

/// One record to emit, before packing.
#[derive(Debug, Clone, Copy)]
enum Unit<'a> {
    /// A record passed through as it was.
    Opaque(&'a [u8]),
    /// A piece of a handshake fragment, to be wrapped in its own record.
    Piece(Piece<'a>),
}

#[derive(Debug, Clone, Copy)]
struct Piece<'a> {
    version: u16,
    epoch: u16,
    sequence: u64,
    msg_type: u8,
    length: u32,
    message_seq: u16,
    fragment_offset: u32,
    bytes: &'a [u8],
}

impl Piece<'_> {
    fn encoded_len(&self) -> usize {
        PIECE_OVERHEAD + self.bytes.len()
    }

    fn write(&self, out: &mut Vec<u8>) {
        write_record_header(
            out,
            crate::dtls_view::CONTENT_TYPE_HANDSHAKE,
            self.version,
            self.epoch,
            self.sequence,
            HANDSHAKE_HEADER_LEN + self.bytes.len(),
        );
        write_handshake_header(
            out,
            self.msg_type,
            self.length,
            self.message_seq,
            self.fragment_offset,
            self.bytes.len() as u32,
        );
        out.extend_from_slice(self.bytes);
    }

    /// Splits off the first `n` bytes (`n < bytes.len()`).
    fn split_at(self, n: usize) -> (Self, Self) {
        let (head, tail) = self.bytes.split_at(n.min(self.bytes.len()));
        let first = Piece {
            bytes: head,
            ..self
        };
        let second = Piece {
            bytes: tail,
            fragment_offset: self.fragment_offset.saturating_add(head.len() as u32),
            ..self
        };
        (first, second)
    }
}

/// Re-cuts one datagram. Returns `None` when the datagram does not parse as DTLS
/// records, holds an inconsistent handshake fragment, or carries no epoch-0
/// handshake record: the caller then forwards it untouched.
///
/// `max_datagram_size` of `None` means "the original datagram's length". A datagram
/// always holds at least one record, so a non-handshake record larger than the
/// limit, or a limit too small for a 1-byte piece, still goes out (alone).
pub fn recut_datagram(
    datagram: &[u8],
    max_datagram_size: Option<usize>,
    rng: &mut SimRng,
) -> Option<Vec<Vec<u8>>> {
    let limit = max_datagram_size.unwrap_or(datagram.len());
    let units = split_into_units(datagram, rng)?;
    Some(pack(&units, limit))
}

fn split_into_units<'a>(datagram: &'a [u8], rng: &mut SimRng) -> Option<Vec<Unit<'a>>> {
    let mut units = Vec::new();
    let mut any_handshake = false;
    for record in records(datagram) {
        let record = record.ok()?;
        let Some(fragments) = record.handshake_fragments() else {
            units.push(Unit::Opaque(record.raw));
            continue;
        };
        any_handshake = true;
        for fragment in fragments {
            let fragment = fragment.ok()?;
            if !fragment.is_consistent() {
                return None;
            }
            let whole = Piece {
                version: record.version,
                epoch: record.epoch,
                sequence: record.sequence,
                msg_type: fragment.msg_type,
                length: fragment.length,
                message_seq: fragment.message_seq,
                fragment_offset: fragment.fragment_offset,
                bytes: fragment.body,
            };
            push_random_pieces(whole, rng, &mut units);
        }
    }
    any_handshake.then_some(units)
}

/// Splits `whole` into 1..=3 non-empty pieces at random boundaries (an empty
/// fragment stays one piece).
fn push_random_pieces<'a>(whole: Piece<'a>, rng: &mut SimRng, units: &mut Vec<Unit<'a>>) {
    let len = whole.bytes.len() as u64;
    let pieces = rng.range(1..4).min(len.max(1));
    // Cut points in 1..len, distinct and ascending.
    let (first_cut, second_cut) = match pieces {
        2 => (Some(rng.range(1..len)), None),
        3 => {
            let a = rng.range(1..len);
            let mut b = rng.range(1..len);
            while b == a {
                b = rng.range(1..len);
            }
            (Some(a.min(b)), Some(a.max(b)))
        }
        _ => (None, None),
    };
    let mut rest = whole;
    let mut consumed = 0u64;
    for cut in [first_cut, second_cut].into_iter().flatten() {
        let (head, tail) = rest.split_at((cut - consumed) as usize);
        units.push(Unit::Piece(head));
        consumed = cut;
        rest = tail;
    }
    units.push(Unit::Piece(rest));
}

/// Greedy packing: append each unit to the current datagram if it fits, else start a
/// new one; a piece that would not fit even an empty datagram is split further to
/// fill the space left.
fn pack(units: &[Unit<'_>], limit: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut current: Vec<u8> = Vec::with_capacity(limit);
    for unit in units {
        match *unit {
            Unit::Opaque(raw) => {
                if !current.is_empty() && current.len() + raw.len() > limit {
                    out.push(std::mem::replace(&mut current, Vec::with_capacity(limit)));
                }
                current.extend_from_slice(raw);
            }
            Unit::Piece(piece) => pack_piece(piece, limit, &mut current, &mut out),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn pack_piece(mut piece: Piece<'_>, limit: usize, current: &mut Vec<u8>, out: &mut Vec<Vec<u8>>) {
    loop {
        let room = limit.saturating_sub(current.len());
        if piece.encoded_len() <= room {
            piece.write(current);
            return;
        }
        let fits_alone = piece.encoded_len() <= limit;
        if fits_alone || room <= PIECE_OVERHEAD {
            // Either a fresh datagram takes it whole, or the space left is too small
            // to carry a byte of it: close the current datagram.
            if !current.is_empty() {
                out.push(std::mem::replace(current, Vec::with_capacity(limit)));
                continue;
            }
            if fits_alone {
                piece.write(current);
                return;
            }
        }
        // Split: fill what is left (at least one byte, even past a degenerate limit).
        let take = room.saturating_sub(PIECE_OVERHEAD).max(1);
        if take >= piece.bytes.len() {
            piece.write(current);
            return;
        }
        let (head, tail) = piece.split_at(take);
        head.write(current);
        out.push(std::mem::replace(current, Vec::with_capacity(limit)));
        piece = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtls_view::{encode_handshake_record, encode_record, parse_records};
    use std::collections::BTreeMap;

    const DTLS12: u16 = 0xfefd;

    /// A flight of two messages: a 1000-byte message cut in two fragments across two
    /// records, a small one, and a ChangeCipherSpec + encrypted Finished behind them.
    fn sample_flight() -> Vec<Vec<u8>> {
        let cert: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut d1 = encode_handshake_record(DTLS12, 0, 3, 11, 1000, 1, 0, &cert[..600]);
        d1.extend(encode_handshake_record(
            DTLS12,
            0,
            4,
            11,
            1000,
            1,
            600,
            &cert[600..],
        ));
        let mut d2 = encode_handshake_record(DTLS12, 0, 5, 14, 0, 2, 0, &[]);
        d2.extend(encode_record(20, DTLS12, 0, 6, &[1]));
        d2.extend(encode_record(22, DTLS12, 1, 0, &[0xAA; 40]));
        vec![d1, d2]
    }

    /// Reassembles handshake messages by byte coverage: (message_seq) -> bytes.
    fn reassemble(datagrams: &[Vec<u8>]) -> BTreeMap<u16, Vec<u8>> {
        let mut messages: BTreeMap<u16, Vec<Option<u8>>> = BTreeMap::new();
        for d in datagrams {
            for rec in parse_records(d).unwrap() {
                let Some(frags) = rec.handshake_fragments() else {
                    continue;
                };
                for f in frags {
                    let f = f.unwrap();
                    let msg = messages
                        .entry(f.message_seq)
                        .or_insert_with(|| vec![None; f.length as usize]);
                    for (i, b) in f.body.iter().enumerate() {
                        msg[f.fragment_offset as usize + i] = Some(*b);
                    }
                }
            }
        }
        messages
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().map(|b| b.expect("gap")).collect()))
            .collect()
    }

    fn non_handshake_records(datagrams: &[Vec<u8>]) -> Vec<Vec<u8>> {
        datagrams
            .iter()
            .flat_map(|d| parse_records(d).unwrap())
            .filter(|r| !r.is_plaintext_handshake())
            .map(|r| r.raw.to_vec())
            .collect()
    }

    fn recut_all(flight: &[Vec<u8>], limit: Option<usize>, rng: &mut SimRng) -> Vec<Vec<u8>> {
        flight
            .iter()
            .flat_map(|d| recut_datagram(d, limit, rng).unwrap())
            .collect()
    }

    #[test]
    fn reassembled_handshake_bytes_equal_the_originals() {
        let flight = sample_flight();
        let original = reassemble(&flight);
        for seed in 0..200 {
            let mut rng = SimRng::new(seed);
            let out = recut_all(&flight, None, &mut rng);
            assert_eq!(reassemble(&out), original, "seed {seed}");
            assert_eq!(
                non_handshake_records(&out),
                non_handshake_records(&flight),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn boundaries_differ_between_two_passes() {
        let flight = sample_flight();
        let mut rng = SimRng::new(1);
        let first = recut_all(&flight, None, &mut rng);
        let second = recut_all(&flight, None, &mut rng);
        assert_ne!(first, second);
        assert_ne!(first, flight);
    }

    #[test]
    fn no_output_datagram_exceeds_the_size() {
        let flight = sample_flight();
        for (seed, limit) in [(1, None), (2, Some(200)), (3, Some(100)), (4, Some(60))] {
            let mut rng = SimRng::new(seed);
            for d in &flight {
                let cap = limit.unwrap_or(d.len());
                for out in recut_datagram(d, limit, &mut rng).unwrap() {
                    assert!(out.len() <= cap, "{} > {cap}", out.len());
                    assert!(!parse_records(&out).unwrap().is_empty());
                }
            }
            let mut rng = SimRng::new(seed);
            assert_eq!(
                reassemble(&recut_all(&flight, limit, &mut rng)),
                reassemble(&flight)
            );
        }
    }

    #[test]
    fn each_piece_keeps_record_epoch_and_sequence() {
        let flight = sample_flight();
        let mut rng = SimRng::new(5);
        let out = recut_all(&flight, Some(120), &mut rng);
        for rec in out.iter().flat_map(|d| parse_records(d).unwrap()) {
            if rec.is_plaintext_handshake() {
                let f = rec.handshake_fragments().unwrap().next().unwrap().unwrap();
                let expected_seq = match (f.message_seq, f.fragment_offset) {
                    (1, o) if o < 600 => 3,
                    (1, _) => 4,
                    _ => 5,
                };
                assert_eq!(rec.sequence, expected_seq);
                assert_eq!(rec.handshake_fragments().unwrap().count(), 1);
            }
        }
    }

    #[test]
    fn fragments_split_into_at_most_three_pieces() {
        let d = encode_handshake_record(DTLS12, 0, 1, 1, 300, 0, 0, &[7; 300]);
        let mut counts = [0usize; 4];
        let mut rng = SimRng::new(8);
        for _ in 0..300 {
            let out = recut_datagram(&d, Some(10_000), &mut rng).unwrap();
            assert_eq!(out.len(), 1);
            let n = parse_records(&out[0]).unwrap().len();
            counts[n.min(3)] += 1;
            assert!((1..=3).contains(&n));
        }
        assert!(
            counts[1] > 0 && counts[2] > 0 && counts[3] > 0,
            "{counts:?}"
        );
    }

    #[test]
    fn unparseable_input_passes_unchanged() {
        let mut rng = SimRng::new(1);
        assert!(recut_datagram(&[22, 0xfe, 0xfd, 0, 0], None, &mut rng).is_none());
        assert!(recut_datagram(&[0x80, 0, 1, 2, 3], None, &mut rng).is_none());
        // Only encrypted records: nothing to re-cut.
        let d = encode_record(23, DTLS12, 1, 9, &[1, 2, 3]);
        assert!(recut_datagram(&d, None, &mut rng).is_none());
        // Inconsistent fragment (offset + length beyond message length).
        let d = encode_handshake_record(DTLS12, 0, 1, 1, 4, 0, 2, b"abcd");
        assert!(recut_datagram(&d, None, &mut rng).is_none());
    }

    #[test]
    fn limit_below_header_size_still_makes_progress_one_byte_per_record() {
        let d = encode_handshake_record(DTLS12, 0, 1, 1, 5, 0, 0, b"abcde");
        let mut rng = SimRng::new(3);
        let out = recut_datagram(&d, Some(10), &mut rng).unwrap();
        assert_eq!(out.len(), 5);
        assert!(out.iter().all(|d| d.len() == PIECE_OVERHEAD + 1));
        assert_eq!(reassemble(&out), reassemble(&[d]));
    }

    #[test]
    fn oversized_opaque_record_goes_out_alone() {
        let mut d = encode_handshake_record(DTLS12, 0, 1, 1, 4, 0, 0, b"abcd");
        d.extend(encode_record(23, DTLS12, 1, 1, &[0; 300]));
        let mut rng = SimRng::new(2);
        let out = recut_datagram(&d, Some(100), &mut rng).unwrap();
        assert_eq!(out.last().unwrap().len(), RECORD_HEADER_LEN + 300);
    }
}
