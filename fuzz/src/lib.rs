//! Shared pieces of Sluice's fuzz targets: the input framing every multi-datagram target
//! uses, STUN sealing (so mutations reach the authenticated paths of the ICE agent) and a
//! two-engine DTLS pair that can be stopped after any flight.
//!
//! Input framing is deliberately trivial so that seeds can be written by hand and read in
//! a hex dump: a frame is `[control: u8][length: u16 big-endian][bytes]`, and a truncated
//! last frame takes whatever is left.
#![forbid(unsafe_code)]

pub mod dtls;
pub mod stun;

/// One frame of a multi-datagram fuzz input.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// A target-specific control byte (which side, which mode, how much time passes).
    pub control: u8,
    /// The datagram (or text) carried by the frame.
    pub bytes: &'a [u8],
}

/// Splits `input` into frames; at most `max_frames` so a single input stays fast.
pub fn frames(input: &[u8], max_frames: usize) -> impl Iterator<Item = Frame<'_>> {
    let mut rest = input;
    std::iter::from_fn(move || {
        let (&control, after) = rest.split_first()?;
        let (len, after) = match after {
            [hi, lo, tail @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), tail),
            tail => (tail.len(), &[][..]),
        };
        let take = len.min(after.len());
        let (bytes, tail) = after.split_at(take);
        rest = tail;
        Some(Frame { control, bytes })
    })
    .take(max_frames)
}

/// Encodes frames in the format [`frames`] reads (for seeds and tests).
pub fn encode_frames<'a>(frames: impl IntoIterator<Item = (u8, &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (control, bytes) in frames {
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        out.push(control);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(bytes.get(..usize::from(len)).unwrap_or(bytes));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_tolerate_truncation() {
        let encoded = encode_frames([(1, &b"abc"[..]), (2, &b""[..]), (3, &b"xy"[..])]);
        let got: Vec<(u8, Vec<u8>)> = frames(&encoded, 10)
            .map(|f| (f.control, f.bytes.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![(1, b"abc".to_vec()), (2, vec![]), (3, b"xy".to_vec())]
        );
        let cut: Vec<usize> = frames(&encoded[..5], 10).map(|f| f.bytes.len()).collect();
        assert_eq!(cut, vec![2]);
    }
}
