//! Fan-out cost: one 1200-byte video packet forwarded to 10 subscribers (rewrite, cache
//! insert, queue), with outputs drained and recycled as a worker would.
//! Run briefly: `cargo bench -p sluice-sfu --bench router -- --quick`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_sfu::{Kind, ParticipantId, Router, RouterConfig, SubscriptionSpec, TrackSpec};

const SUBSCRIBERS: u64 = 10;

fn video_packet(seq: u16, ts: u32, len: usize) -> Vec<u8> {
    // VP8 keyframe start, transport-cc (id 3) and abs-send-time (id 2) extensions
    let mut p = vec![0x90, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0xA1u32.to_be_bytes());
    p.extend_from_slice(&[0xBE, 0xDE, 0, 2, 0x31, 0, 0, 0x22, 0, 0, 0, 0]);
    p.extend_from_slice(&[0x10, 0x00, 0x9D, 0x01, 0x2A]);
    p.resize(len, 0x55);
    p
}

fn fan_out(c: &mut Criterion) {
    bench_fan_out(c, "fan_out_1200B_to_10", RouterConfig::default());
    // the same without retransmission caches: the difference is the cost of keeping a
    // copy per subscriber for NACKs
    let no_cache = RouterConfig {
        retransmission_cache_packets: 0,
        ..RouterConfig::default()
    };
    bench_fan_out(c, "fan_out_1200B_to_10_without_rtx_cache", no_cache);
}

fn bench_fan_out(c: &mut Criterion, name: &str, config: RouterConfig) {
    let mut router = Router::new(config);
    let publisher = ParticipantId(0);
    router.add_participant("bench", publisher).unwrap();
    let track = router
        .publish(
            publisher,
            TrackSpec {
                mid: "1".into(),
                kind: Kind::Video,
                ssrc: Some(0xA1),
                rtx_ssrc: None,
                rids: Vec::new(),
            },
        )
        .unwrap();
    for i in 1..=SUBSCRIBERS {
        router.add_participant("bench", ParticipantId(i)).unwrap();
        router
            .subscribe(
                ParticipantId(i),
                track,
                SubscriptionSpec::new(0xB000 + i as u32),
            )
            .unwrap();
    }
    let start = Instant::now();
    let mut packet = video_packet(0, 0, 1200);
    let mut seq: u16 = 0;
    let mut group = c.benchmark_group("router");
    group.throughput(Throughput::Elements(SUBSCRIBERS));
    group.bench_function(name, |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            packet[2..4].copy_from_slice(&seq.to_be_bytes());
            // transport-cc data (extension id 3) follows the 0xBEDE header at offset 17
            packet[17..19].copy_from_slice(&seq.to_be_bytes());
            let now = start + Duration::from_micros(u64::from(seq) * 100);
            router.handle_rtp(now, publisher, black_box(&packet));
            while let Some(out) = router.poll_output() {
                router.recycle(black_box(out.data));
            }
        })
    });
    group.finish();
    let stats = router.stats();
    assert_eq!(stats.dropped.total(), 0, "{stats:?}");
    assert_eq!(
        stats.forwarded_packets,
        stats.rtp_packets_received * SUBSCRIBERS
    );
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
