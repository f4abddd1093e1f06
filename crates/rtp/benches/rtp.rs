//! Per-packet costs on the forwarding path: parse + rewrite of a 1200-byte packet, and
//! building one TWCC feedback packet.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use sluice_rtp::{set_extension, RtpHeader, StreamRewriter, TwccRecorder};

fn packet_1200() -> Vec<u8> {
    let mut p = vec![0x90, 96, 0, 1, 0, 0, 0x0B, 0xB8, 0x12, 0x34, 0x56, 0x78];
    p.extend_from_slice(&[0xBE, 0xDE, 0, 2, 0x31, 0, 1, 0x10, 0x55, 0, 0, 0]);
    p.resize(1200, 0xAB);
    p
}

fn parse_and_rewrite(c: &mut Criterion) {
    let mut pkt = packet_1200();
    let mut rewriter = StreamRewriter::new(0x9999, 90_000);
    rewriter.switch_source(0x1234_5678);
    let mut seq = 0u16;
    let mut twcc_seq = 0u16;
    c.bench_function("parse + rewrite 1200-byte packet", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            twcc_seq = twcc_seq.wrapping_add(1);
            pkt[2..4].copy_from_slice(&seq.to_be_bytes());
            pkt[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
            let h = RtpHeader::parse(black_box(&pkt)).unwrap();
            black_box((h.payload().len(), h.extension(3)));
            let out = rewriter.rewrite(&mut pkt);
            set_extension(&mut pkt, 3, &twcc_seq.to_be_bytes());
            black_box(out)
        })
    });
}

fn twcc_build(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut out = Vec::with_capacity(1500);
    let mut next = 0u16;
    c.bench_function("TWCC feedback for 100 packets (5% loss)", |b| {
        b.iter(|| {
            let mut rec = TwccRecorder::new(256);
            for i in 0..100u16 {
                if i % 20 != 7 {
                    rec.record(
                        next.wrapping_add(i),
                        t0 + Duration::from_micros(u64::from(i) * 900),
                    );
                }
            }
            next = next.wrapping_add(100);
            out.clear();
            black_box(rec.build_feedback(1, 2, &mut out));
        })
    });
}

criterion_group!(benches, parse_and_rewrite, twcc_build);
criterion_main!(benches);
