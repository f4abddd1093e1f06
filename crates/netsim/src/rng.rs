//! A small seeded PRNG owned by this crate.
//!
//! Impairment results must be reproducible from a seed forever: a failing seed in
//! the DTLS test matrix has to fail the same way next year. A dependency's PRNG may
//! change its output on upgrade, so the generator lives here: xoshiro256** seeded
//! through SplitMix64 (both public-domain algorithms by Blackman and Vigna).

use std::ops::Range;

/// One SplitMix64 step: used to expand a 64-bit seed into the 256-bit state.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Deterministic xoshiro256** generator. Not for cryptography.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRng {
    state: [u64; 4],
}

impl SimRng {
    /// Creates a generator whose whole output is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let state = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Self { state }
    }

    /// Next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = &mut self.state;
        let result = s1.wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = *s1 << 17;
        *s2 ^= *s0;
        *s3 ^= *s1;
        *s1 ^= *s2;
        *s0 ^= *s3;
        *s2 ^= t;
        *s3 = s3.rotate_left(45);
        result
    }

    /// Uniform `f64` in `[0, 1)` with 53 bits of precision.
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`. Always consumes exactly one draw, so the stream
    /// position does not depend on `p` (a cell with 0 % loss and one with 10 % loss
    /// see the same later draws). `p <= 0` or NaN is never true, `p >= 1` always.
    pub fn chance(&mut self, p: f64) -> bool {
        let x = self.unit_f64();
        x < p
    }

    /// Uniform integer in `range` (`lo..hi`, `hi` excluded); returns `lo` when the
    /// range is empty. Uses rejection so the result is unbiased.
    pub fn range(&mut self, range: Range<u64>) -> u64 {
        let Range { start, end } = range;
        if end <= start {
            return start;
        }
        let span = end - start;
        // Reject the top partial bucket so every value is equally likely.
        let zone = u64::MAX - (u64::MAX - span + 1) % span;
        loop {
            let x = self.next_u64();
            if x <= zone {
                return start + x % span;
            }
        }
    }

    /// An independent generator derived from this one (e.g. for the other
    /// direction of a link pair). Advances `self`.
    pub fn fork(&mut self) -> SimRng {
        SimRng::new(self.next_u64())
    }
}

impl From<u64> for SimRng {
    fn from(seed: u64) -> Self {
        SimRng::new(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_stream() {
        let mut a = SimRng::new(42);
        let mut b = SimRng::new(42);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn different_seeds_give_different_streams() {
        let mut a = SimRng::new(1);
        let mut b = SimRng::new(2);
        let same = (0..64).filter(|_| a.next_u64() == b.next_u64()).count();
        assert_eq!(same, 0);
    }

    #[test]
    fn output_is_pinned_across_versions() {
        // Pins the algorithm: changing it would silently change every seeded test.
        let mut r = SimRng::new(0);
        let first: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        let mut again = SimRng::new(0);
        assert_eq!(first, (0..3).map(|_| again.next_u64()).collect::<Vec<_>>());
        assert_eq!(first[0], PINNED_FIRST_OUTPUT_SEED_0);
    }

    const PINNED_FIRST_OUTPUT_SEED_0: u64 = 0x99EC_5F36_CB75_F2B4;

    #[test]
    fn chance_frequency_matches_probability() {
        let mut r = SimRng::new(7);
        let hits = (0..100_000).filter(|_| r.chance(0.25)).count();
        assert!((24_000..26_000).contains(&hits), "hits = {hits}");
    }

    #[test]
    fn chance_extremes_are_exact() {
        let mut r = SimRng::new(7);
        assert!((0..10_000).all(|_| !r.chance(0.0)));
        assert!((0..10_000).all(|_| r.chance(1.0)));
        assert!((0..100).all(|_| !r.chance(f64::NAN)));
    }

    #[test]
    fn range_stays_in_bounds_and_covers_it() {
        let mut r = SimRng::new(9);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let v = r.range(10..15);
            assert!((10..15).contains(&v));
            if let Some(slot) = seen.get_mut((v - 10) as usize) {
                *slot = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(r.range(5..5), 5);
        let (lo, hi) = (6, 5);
        assert_eq!(r.range(lo..hi), 6);
    }

    #[test]
    fn fork_gives_an_independent_stream() {
        let mut parent = SimRng::new(3);
        let mut child = parent.fork();
        let same = (0..64)
            .filter(|_| parent.next_u64() == child.next_u64())
            .count();
        assert_eq!(same, 0);
    }
}
