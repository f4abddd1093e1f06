//! RTP parsing and in-place rewriting on arbitrary bytes: `RtpHeader::parse`, header
//! extensions, `set_extension`, `write_rtx`, `StreamRewriter::rewrite` on a copy,
//! `is_keyframe` for every codec and ULPFEC written and read back. Besides "no panic", it checks the invariants the
//! forwarding path relies on (lengths add up, rewriting changes only what it claims).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_rtp::{is_keyframe, set_extension, ulpfec, write_rtx, Codec, RtpHeader, StreamRewriter};

const CODECS: [Codec; 5] = [
    Codec::Opus,
    Codec::Vp8,
    Codec::Vp9,
    Codec::H264,
    Codec::Other,
];

fuzz_target!(|data: &[u8]| {
    for codec in CODECS {
        let _ = is_keyframe(codec, data);
    }
    // The input as a FEC payload over packets cut from itself: never a panic, and a
    // rebuilt packet never longer than the protection covers.
    let packets: Vec<&[u8]> = data.chunks(64).skip(1).collect();
    let mut recovered = Vec::new();
    if ulpfec::recover(&mut recovered, data, 7, &packets).is_ok() {
        assert!(recovered.len() >= 12 && recovered.len() <= 12 + usize::from(u16::MAX));
    }
    let mut fec = Vec::new();
    if ulpfec::write_fec_payload(&mut fec, &packets).is_ok() {
        assert!(fec.len() >= ulpfec::FEC_HEADER_LEN + 4);
    }
    let Ok(h) = RtpHeader::parse(data) else {
        // Rewriting an unparseable packet must refuse and leave it alone.
        let mut copy = data.to_vec();
        let mut rewriter = StreamRewriter::new(0x5555, 90_000);
        rewriter.switch_source(0);
        assert_eq!(rewriter.rewrite(&mut copy), None);
        assert!(!set_extension(&mut copy, 1, &[0]));
        assert_eq!(copy, data);
        return;
    };
    assert!(h.header_len() + h.padding_len() <= data.len());
    assert_eq!(
        h.payload().len(),
        data.len() - h.header_len() - h.padding_len()
    );
    assert_eq!(h.csrcs().count(), usize::from(data[0] & 0x0F));
    for codec in CODECS {
        let _ = is_keyframe(codec, h.payload());
    }

    // Extensions: every element lies inside the header; writing an element's own bytes
    // back is accepted and changes nothing.
    let mut copy = data.to_vec();
    for e in h.extensions().take(256) {
        assert!(
            e.offset + e.len <= h.header_len(),
            "extension past the header"
        );
        assert_eq!(e.data.len(), e.len);
        let first = h
            .extension(e.id)
            .expect("an element seen by the iterator is found");
        assert!(set_extension(&mut copy, e.id, first));
    }
    assert_eq!(
        copy, data,
        "set_extension with the same bytes changed the packet"
    );

    // RTX: OSN + payload, no padding, same header length.
    let mut rtx = Vec::new();
    write_rtx(data, 0x7777, 97, 9, &mut rtx).expect("a parsed packet has an RTX form");
    let r = RtpHeader::parse(&rtx).expect("the RTX packet parses");
    assert_eq!(
        (r.ssrc(), r.sequence_number(), r.payload_type()),
        (0x7777, 9, 97)
    );
    assert_eq!(
        r.payload().get(..2),
        Some(&h.sequence_number().to_be_bytes()[..])
    );
    assert_eq!(r.payload().get(2..), Some(h.payload()));

    // StreamRewriter: the first packet of the announced source is forwarded, and only
    // SSRC, sequence number and timestamp change.
    let mut copy = data.to_vec();
    let mut rewriter = StreamRewriter::new(0x5555, 90_000);
    rewriter.switch_source(h.ssrc());
    let (seq, ts) = rewriter
        .rewrite(&mut copy)
        .expect("the first packet of the current source is forwarded");
    let out = RtpHeader::parse(&copy).expect("a rewritten packet parses");
    assert_eq!(
        (out.ssrc(), out.sequence_number(), out.timestamp()),
        (0x5555, seq, ts)
    );
    assert_eq!(out.payload(), h.payload());
    assert_eq!(out.header_len(), h.header_len());
    assert_eq!(
        copy.get(12..),
        data.get(12..),
        "bytes past the fixed header changed"
    );
    // The same packet again is a duplicate of an already forwarded sequence number; a
    // packet from another SSRC is not forwarded.
    let mut other = data.to_vec();
    other[8..12].copy_from_slice(&(h.ssrc() ^ 1).to_be_bytes());
    assert_eq!(rewriter.rewrite(&mut other), None);
});
