//! RFC 7983 classification and the STUN ufrag lookup: the first work on every datagram.
//! Run: `cargo bench -p sluice-ice --bench demux`.

use criterion::{criterion_group, criterion_main, Criterion};
use sluice_ice::demux::{classify, stun_local_ufrag};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let rtp = {
        let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 1, 0x11, 0x22, 0x33, 0x44];
        p.resize(1200, 0);
        p
    };
    let dtls = vec![23u8, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 16];
    // A binding request: header, USERNAME "abcd:efgh".
    let mut stun = vec![0, 1, 0, 12, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[7u8; 12]);
    stun.extend_from_slice(&[0, 6, 0, 9]);
    stun.extend_from_slice(b"abcd:efgh\0\0\0");
    c.bench_function("classify rtp", |b| b.iter(|| classify(black_box(&rtp))));
    c.bench_function("classify dtls", |b| b.iter(|| classify(black_box(&dtls))));
    c.bench_function("stun_local_ufrag", |b| {
        b.iter(|| stun_local_ufrag(black_box(&stun)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
