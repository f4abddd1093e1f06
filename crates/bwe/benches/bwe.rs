//! Cost of the estimator per transport-cc report and of the pacer per packet.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use sluice_bwe::pacer::{Pacer, PacerConfig, Priority};
use sluice_bwe::{Bwe, BweConfig};
use sluice_rtp::TwccRecorder;

/// One report of `per_report` packets (5 % lost, 1 ms apart) per iteration; only
/// `on_feedback_bytes` is timed, sending and building the report are not.
fn feedback(c: &mut Criterion, per_report: u16) {
    let name = format!("on_feedback_bytes: report of {per_report} packets (5 % lost)");
    c.bench_function(&name, |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            let mut bwe = Bwe::new(BweConfig::default());
            let mut rec = TwccRecorder::default();
            let mut seq = 0u16;
            let mut n = 0u64;
            let mut out = Vec::with_capacity(1500);
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                for i in 0..per_report {
                    let at = t0 + Duration::from_millis(n);
                    bwe.on_packet_sent(at, seq, 1200, None);
                    if i % 20 != 7 {
                        rec.record(seq, at + Duration::from_millis(30));
                    }
                    seq = seq.wrapping_add(1);
                    n += 1;
                }
                out.clear();
                rec.build_feedback(1, 2, &mut out);
                let now = t0 + Duration::from_millis(n + 40);
                let start = Instant::now();
                let r = bwe.on_feedback_bytes(now, black_box(&out));
                timed += start.elapsed();
                black_box(r.ok());
            }
            timed
        })
    });
}

fn feedback_sizes(c: &mut Criterion) {
    feedback(c, 20);
    feedback(c, 100);
}

fn pacer(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut p: Pacer<u32> = Pacer::new(PacerConfig::default());
    p.set_estimate(2_000_000);
    let mut now = t0;
    let mut i = 0u32;
    c.bench_function("pacer: enqueue + poll_send one video packet", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            now += Duration::from_millis(5); // budget for one 1200 B packet at 5 Mbit/s
            p.enqueue(now, i, 1200, Priority::Video);
            black_box(p.poll_send(now))
        })
    });
}

criterion_group!(benches, feedback_sizes, pacer);
criterion_main!(benches);
