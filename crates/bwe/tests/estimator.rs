//! The estimator's public API against hostile, repeated, missing and extreme feedback.

use std::time::{Duration, Instant};

use sluice_bwe::{Bwe, BweConfig};
use sluice_rtp::TwccRecorder;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Sends `count` 1000-byte packets `gap` apart from `seq`, recording them as arriving
/// `arrival_gap` apart; returns the feedback datagrams.
fn exchange(
    bwe: &mut Bwe,
    rec: &mut TwccRecorder,
    start: Instant,
    seq: &mut u16,
    count: u32,
    gap: Duration,
    arrival_gap: Duration,
) -> Vec<Vec<u8>> {
    for i in 0..count {
        bwe.on_packet_sent(start + gap * i, *seq, 1000, None);
        rec.record(*seq, start + Duration::from_millis(30) + arrival_gap * i);
        *seq = seq.wrapping_add(1);
    }
    let mut out = Vec::new();
    loop {
        let mut fb = Vec::new();
        if !rec.build_feedback(1, 2, &mut fb) {
            return out;
        }
        out.push(fb);
    }
}

#[test]
fn garbage_feedback_never_panics_and_is_counted() {
    let t0 = Instant::now();
    let mut bwe = Bwe::new(BweConfig::default());
    for s in 0..500u16 {
        bwe.on_packet_sent(t0 + Duration::from_millis(u64::from(s)), s, 1200, None);
    }
    let mut rng = Rng(99);
    let mut bad = 0;
    for i in 0..20_000u64 {
        let len = (rng.next() % 80) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // mostly well-framed transport-cc, so the decoder gets past the header
        if len >= 20 && rng.next() % 4 != 0 {
            buf[0] = 0x8F;
            buf[1] = 205;
            buf[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
            buf.truncate(len / 4 * 4);
        }
        let now = t0 + Duration::from_millis(500 + i);
        if bwe.on_feedback_bytes(now, &buf).is_err() {
            bad += 1;
        }
        bwe.handle_timeout(now);
        let est = bwe.estimate_bps();
        assert!((30_000..=20_000_000).contains(&est), "{est}");
    }
    assert_eq!(bwe.stats().bad_feedback, bad);
    assert!(bad > 1000);
}

#[test]
fn feedback_about_packets_never_sent_changes_nothing() {
    let t0 = Instant::now();
    let mut bwe = Bwe::new(BweConfig::default());
    let mut seq = 0;
    let mut rec = TwccRecorder::default();
    exchange(
        &mut bwe,
        &mut rec,
        t0,
        &mut seq,
        50,
        Duration::from_millis(10),
        Duration::from_millis(10),
    );
    let before = bwe.stats();
    // A report about sequence numbers 30000.. from a different recorder.
    let mut other = TwccRecorder::default();
    for i in 0..200u16 {
        other.record(30_000 + i, t0 + Duration::from_millis(u64::from(i)));
    }
    let mut fb = Vec::new();
    assert!(other.build_feedback(1, 2, &mut fb));
    bwe.on_feedback_bytes(t0 + Duration::from_secs(1), &fb)
        .unwrap();
    let after = bwe.stats();
    assert_eq!(before.estimate_bps, after.estimate_bps);
    assert_eq!(before.acked_bps, after.acked_bps);
    assert_eq!(before.loss_fraction, after.loss_fraction);
}

#[test]
fn a_repeated_report_counts_once() {
    let t0 = Instant::now();
    let mut a = Bwe::new(BweConfig::default());
    let mut b = Bwe::new(BweConfig::default());
    let (mut seq_a, mut seq_b) = (0, 0);
    let (mut rec_a, mut rec_b) = (TwccRecorder::default(), TwccRecorder::default());
    for round in 0..40u32 {
        let start = t0 + Duration::from_millis(50) * round;
        let fa = exchange(
            &mut a,
            &mut rec_a,
            start,
            &mut seq_a,
            5,
            Duration::from_millis(10),
            Duration::from_millis(10),
        );
        let fb = exchange(
            &mut b,
            &mut rec_b,
            start,
            &mut seq_b,
            5,
            Duration::from_millis(10),
            Duration::from_millis(10),
        );
        let now = start + Duration::from_millis(80);
        for d in &fa {
            a.on_feedback_bytes(now, d).unwrap();
        }
        for d in &fb {
            b.on_feedback_bytes(now, d).unwrap();
            b.on_feedback_bytes(now, d).unwrap(); // the network duplicated it
        }
    }
    assert_eq!(a.stats(), b.stats());
}

#[test]
fn silence_halves_the_estimate_once_per_second_of_sending() {
    let t0 = Instant::now();
    let mut bwe = Bwe::new(BweConfig::default());
    bwe.on_packet_sent(t0, 0, 1000, None);
    let start = bwe.estimate_bps();
    let due = bwe.poll_timeout().unwrap();
    assert!(due <= t0 + Duration::from_secs(1));
    bwe.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(bwe.estimate_bps(), start / 2);
    // nothing sent since: no further cut, no timer due now
    bwe.handle_timeout(t0 + Duration::from_secs(5));
    assert_eq!(bwe.estimate_bps(), start / 2);
    assert!(bwe
        .poll_timeout()
        .is_none_or(|t| t > t0 + Duration::from_secs(5)));
    assert_eq!(bwe.stats().starvation_cuts, 1);
}

#[test]
fn the_estimate_stays_within_the_configured_bounds() {
    let t0 = Instant::now();
    let config = BweConfig {
        min_bitrate_bps: 100_000,
        max_bitrate_bps: 800_000,
        ..BweConfig::default()
    };
    // A perfect path for a minute: up to the maximum, never beyond.
    let mut bwe = Bwe::new(config.clone());
    bwe.set_desired_bitrate(t0, Some(10_000_000));
    let mut rec = TwccRecorder::default();
    let mut seq = 0;
    for round in 0..1200u32 {
        let start = t0 + Duration::from_millis(50) * round;
        // a little more than the estimate allows, so growth is never app-limited
        let per_round = (bwe.estimate_bps() / 8 / 20).div_ceil(1000) as u32 + 1;
        let gap = Duration::from_millis(50) / per_round;
        for d in exchange(&mut bwe, &mut rec, start, &mut seq, per_round, gap, gap) {
            bwe.on_feedback_bytes(start + Duration::from_millis(80), &d)
                .unwrap();
        }
        while bwe.poll_probe().is_some() {}
        assert!(bwe.estimate_bps() <= 800_000);
    }
    assert_eq!(bwe.estimate_bps(), 800_000);

    // A path whose delay grows without end: packets leave 5 ms apart and arrive 100 ms
    // apart (80 kbit/s). Down to the minimum, never below.
    let mut bwe = Bwe::new(config);
    let mut rec = TwccRecorder::default();
    for n in 0..1000u32 {
        let sent = t0 + Duration::from_millis(5) * n;
        bwe.on_packet_sent(sent, n as u16, 1000, None);
        rec.record(
            n as u16,
            t0 + Duration::from_millis(30) + Duration::from_millis(100) * n,
        );
        if n % 10 == 9 {
            let mut fb = Vec::new();
            while {
                fb.clear();
                rec.build_feedback(1, 2, &mut fb)
            } {
                bwe.on_feedback_bytes(sent + Duration::from_millis(1), &fb)
                    .unwrap();
            }
            assert!(bwe.estimate_bps() >= 100_000);
        }
    }
    assert_eq!(bwe.estimate_bps(), 100_000, "{:?}", bwe.stats());
}

#[test]
fn raising_the_maximum_at_the_cap_probes_for_more() {
    let t0 = Instant::now();
    let config = BweConfig {
        max_bitrate_bps: 500_000,
        start_bitrate_bps: 500_000,
        probing: true,
        ..BweConfig::default()
    };
    let mut bwe = Bwe::new(config);
    bwe.on_packet_sent(t0, 0, 1000, None);
    // initial probes, capped at the maximum
    let initial: Vec<_> = std::iter::from_fn(|| bwe.poll_probe()).collect();
    assert!(!initial.is_empty() && initial.iter().all(|c| c.bitrate_bps <= 500_000));
    // the packet is reported; the probes' results never arrive and the controller
    // gives up on them after a second
    let mut rec = TwccRecorder::default();
    rec.record(0, t0 + Duration::from_millis(30));
    let mut fb = Vec::new();
    assert!(rec.build_feedback(1, 2, &mut fb));
    bwe.on_feedback_bytes(t0 + Duration::from_millis(80), &fb)
        .unwrap();
    bwe.handle_timeout(t0 + Duration::from_secs(2));
    assert_eq!(bwe.estimate_bps(), 500_000);
    let now = t0 + Duration::from_secs(3);
    bwe.set_bitrate_bounds(now, 30_000, 2_000_000);
    let probe = bwe.poll_probe().expect("a probe above the old maximum");
    assert_eq!(probe.bitrate_bps, 1_000_000);
    // lowering the maximum clamps the estimate at once
    bwe.set_bitrate_bounds(now, 30_000, 200_000);
    assert_eq!(bwe.estimate_bps(), 200_000);
}
