use super::*;
use crate::GilbertElliott;

const MS: Duration = Duration::from_millis(1);

/// A datagram carrying its index, padded to `len` bytes.
fn numbered(i: u32, len: usize) -> Vec<u8> {
    let mut d = i.to_be_bytes().to_vec();
    d.resize(len.max(4), 0xEE);
    d
}

fn index_of(d: &[u8]) -> u32 {
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Sends `(offset, datagram)` pairs at their virtual times and collects every
/// delivery with its offset from `t0`, advancing time only to send times and to the
/// link's own `poll_timeout`.
fn run(link: &mut Link, t0: Instant, sends: Vec<(Duration, Vec<u8>)>) -> Vec<(Duration, Vec<u8>)> {
    let mut out = Vec::new();
    let mut sends = sends.into_iter().peekable();
    loop {
        let next_send = sends.peek().map(|(at, _)| t0 + *at);
        let next_delivery = link.poll_timeout();
        let now = match (next_send, next_delivery) {
            (None, None) => return out,
            (Some(s), None) => s,
            (None, Some(d)) => d,
            (Some(s), Some(d)) => s.min(d),
        };
        while let Some(d) = link.poll_deliver(now) {
            out.push((now - t0, d));
        }
        while sends.peek().is_some_and(|(at, _)| t0 + *at <= now) {
            let (_, d) = sends.next().unwrap();
            link.send(now, d);
        }
        while let Some(d) = link.poll_deliver(now) {
            out.push((now - t0, d));
        }
    }
}

fn evenly_spaced(count: u32, spacing: Duration, len: usize) -> Vec<(Duration, Vec<u8>)> {
    (0..count)
        .map(|i| (spacing * i, numbered(i, len)))
        .collect()
}

#[test]
fn perfect_link_delivers_everything_at_once_in_order() {
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::default(), 1, t0);
    for i in 0..5 {
        link.send(t0, numbered(i, 10));
    }
    assert_eq!(link.poll_timeout(), Some(t0));
    let got: Vec<u32> = std::iter::from_fn(|| link.poll_deliver(t0))
        .map(|d| index_of(&d))
        .collect();
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    assert_eq!(link.poll_timeout(), None);
    let s = link.stats();
    assert_eq!((s.sent, s.delivered, s.dropped.total()), (5, 5, 0));
}

#[test]
fn delay_holds_datagrams_until_due() {
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::delayed(40 * MS), 1, t0);
    link.send(t0, numbered(0, 10));
    assert_eq!(link.poll_deliver(t0 + 39 * MS), None);
    assert_eq!(link.poll_timeout(), Some(t0 + 40 * MS));
    assert!(link.poll_deliver(t0 + 40 * MS).is_some());
}

#[test]
fn bernoulli_loss_of_10_percent_lands_between_9_and_11_percent() {
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::lossy(10 * MS, 0.1), 7, t0);
    let out = run(&mut link, t0, evenly_spaced(20_000, MS, 20));
    let lost = 20_000 - out.len();
    assert!((1_800..2_200).contains(&lost), "lost {lost}");
    assert_eq!(link.stats().dropped.loss, lost as u64);
    assert_eq!(link.stats().dropped.total(), lost as u64);
}

/// Mean length of runs of consecutive missing indices.
fn mean_loss_run(delivered: &[u32], total: u32) -> f64 {
    let got: std::collections::HashSet<u32> = delivered.iter().copied().collect();
    let (mut runs, mut lost, mut in_run) = (0u32, 0u32, false);
    for i in 0..total {
        if got.contains(&i) {
            in_run = false;
        } else {
            lost += 1;
            if !in_run {
                runs += 1;
            }
            in_run = true;
        }
    }
    f64::from(lost) / f64::from(runs.max(1))
}

#[test]
fn burst_loss_matches_mean_and_comes_in_runs() {
    let t0 = Instant::now();
    let ge = GilbertElliott::gilbert(0.05, 0.45);
    let mut link = Link::new(LinkConfig::bursty(MS, 0.05, 0.45), 3, t0);
    let out = run(&mut link, t0, evenly_spaced(20_000, MS, 8));
    let delivered: Vec<u32> = out.iter().map(|(_, d)| index_of(d)).collect();
    let loss = 1.0 - delivered.len() as f64 / 20_000.0;
    assert!((loss - ge.mean_loss()).abs() < 0.015, "loss {loss}");
    assert_eq!(link.stats().dropped.burst, 20_000 - delivered.len() as u64);
    assert_eq!(link.stats().dropped.loss, 0);
    // Bursts average 1 / 0.45 = 2.2 datagrams; Bernoulli at 10 % averages 1.1.
    let burst_run = mean_loss_run(&delivered, 20_000);
    assert!(burst_run > 1.8, "burst run {burst_run}");

    let mut bernoulli = Link::new(LinkConfig::lossy(MS, 0.1), 3, t0);
    let out = run(&mut bernoulli, t0, evenly_spaced(20_000, MS, 8));
    let delivered: Vec<u32> = out.iter().map(|(_, d)| index_of(d)).collect();
    assert!(mean_loss_run(&delivered, 20_000) < 1.3);
}

#[test]
fn loss_window_limits_loss_to_its_interval() {
    let t0 = Instant::now();
    let config = LinkConfig {
        loss: 1.0,
        loss_window: Some((Duration::from_secs(1), Duration::from_secs(2))),
        ..LinkConfig::default()
    };
    let mut link = Link::new(config, 1, t0);
    let out = run(&mut link, t0, evenly_spaced(30, 100 * MS, 8));
    let delivered: Vec<u32> = out.iter().map(|(_, d)| index_of(d)).collect();
    let expected: Vec<u32> = (0..10).chain(20..30).collect();
    assert_eq!(delivered, expected);
    assert_eq!(link.stats().dropped.loss, 10);
}

#[test]
fn jitter_varies_delay_within_bounds_and_keeps_order() {
    let t0 = Instant::now();
    let config = LinkConfig {
        delay: 50 * MS,
        jitter: 20 * MS,
        ..LinkConfig::default()
    };
    let mut link = Link::new(config, 5, t0);
    let out = run(&mut link, t0, evenly_spaced(2_000, 10 * MS, 8));
    assert_eq!(out.len(), 2_000);
    let mut latencies = Vec::new();
    for (i, (at, d)) in out.iter().enumerate() {
        assert_eq!(index_of(d), i as u32, "jitter alone must not reorder");
        let latency = *at - 10 * MS * i as u32;
        assert!(latency >= 30 * MS && latency <= 70 * MS, "{latency:?}");
        latencies.push(latency);
    }
    let min = latencies.iter().min().unwrap();
    let max = latencies.iter().max().unwrap();
    assert!(
        *max - *min > 30 * MS,
        "jitter had no effect: {min:?}..{max:?}"
    );
}

#[test]
fn duplication_rate_matches_and_copies_are_identical() {
    let t0 = Instant::now();
    let config = LinkConfig {
        delay: 5 * MS,
        duplicate: 0.05,
        ..LinkConfig::default()
    };
    let mut link = Link::new(config, 9, t0);
    let out = run(&mut link, t0, evenly_spaced(20_000, MS, 8));
    let extra = out.len() - 20_000;
    assert!((800..1_200).contains(&extra), "extra {extra}");
    assert_eq!(link.stats().duplicated, extra as u64);
    let indices: Vec<u32> = out.iter().map(|(_, d)| index_of(d)).collect();
    assert!(
        indices.windows(2).all(|w| w[0] <= w[1]),
        "copies arrive in order"
    );
}

#[test]
fn reordered_datagrams_are_overtaken() {
    let t0 = Instant::now();
    let config = LinkConfig {
        delay: 10 * MS,
        reorder: 0.1,
        reorder_delay: 25 * MS,
        ..LinkConfig::default()
    };
    let mut link = Link::new(config, 4, t0);
    let out = run(&mut link, t0, evenly_spaced(10_000, MS, 8));
    assert_eq!(out.len(), 10_000);
    let reordered = link.stats().reordered;
    assert!((900..1_100).contains(&reordered), "reordered {reordered}");
    // A held-back datagram arrives after later-sent ones.
    let indices: Vec<u32> = out.iter().map(|(_, d)| index_of(d)).collect();
    let overtaken = indices.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(overtaken as u64 >= reordered / 2, "overtaken {overtaken}");
    for (at, d) in &out {
        let latency = *at - MS * index_of(d);
        assert!(latency == 10 * MS || latency == 35 * MS, "{latency:?}");
    }
}

#[test]
fn equal_delivery_times_keep_send_order() {
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::delayed(20 * MS), 2, t0);
    for i in 0..100 {
        link.send(t0, numbered(i, 8));
    }
    let got: Vec<u32> = std::iter::from_fn(|| link.poll_deliver(t0 + 20 * MS))
        .map(|d| index_of(&d))
        .collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

#[test]
fn rate_limit_spaces_deliveries_by_serialisation_time() {
    // 1200 bytes at 225 kbit/s take 9600 / 225000 s = 42.667 ms each.
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::throttled(10 * MS, 225_000, 64 * 1024), 1, t0);
    let out = run(
        &mut link,
        t0,
        (0..10)
            .map(|i| (Duration::ZERO, numbered(i, 1200)))
            .collect(),
    );
    assert_eq!(out.len(), 10);
    let per_datagram_ns = 1200.0 * 8.0 * 1e9 / 225_000.0;
    for (k, (at, d)) in out.iter().enumerate() {
        assert_eq!(index_of(d), k as u32);
        let expected_ns = 10e6 + per_datagram_ns * (k as f64 + 1.0);
        let error_ns = (at.as_nanos() as f64 - expected_ns).abs();
        assert!(
            error_ns < 1_000.0,
            "datagram {k} at {at:?}, expected {expected_ns} ns"
        );
    }
}

#[test]
fn full_queue_tail_drops_then_accepts_again_once_drained() {
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::throttled(Duration::ZERO, 225_000, 6_000), 1, t0);
    for i in 0..10 {
        link.send(t0, numbered(i, 1200));
    }
    assert_eq!(link.stats().dropped.queue, 5);
    // After two serialisation times, two slots are free again.
    let later = t0 + Duration::from_nanos(2 * 42_666_667);
    for i in 10..13 {
        link.send(later, numbered(i, 1200));
    }
    assert_eq!(link.stats().dropped.queue, 6);
    let out = run(&mut link, t0, Vec::new());
    let got: Vec<u32> = out.iter().map(|(_, d)| index_of(d)).collect();
    assert_eq!(got, vec![0, 1, 2, 3, 4, 10, 11]);
}

#[test]
fn datagrams_above_mtu_are_dropped() {
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::default().with_mtu(1200), 1, t0);
    link.send(t0, numbered(0, 1200));
    link.send(t0, numbered(1, 1201));
    link.send(t0, numbered(2, 200));
    let got: Vec<u32> = std::iter::from_fn(|| link.poll_deliver(t0))
        .map(|d| index_of(&d))
        .collect();
    assert_eq!(got, vec![0, 2]);
    assert_eq!(link.stats().dropped.mtu, 1);
    assert_eq!(link.stats().dropped.get(LinkDrop::Mtu), 1);
}

#[test]
fn drop_filter_drops_the_targeted_datagram_once() {
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::default(), 1, t0);
    let mut armed = true;
    link.set_drop_filter(Box::new(move |d: &[u8]| {
        let hit = armed && d.get(4) == Some(&0x42);
        if hit {
            armed = false;
        }
        hit
    }));
    let mut target = numbered(1, 8);
    target[4] = 0x42;
    link.send(t0, numbered(0, 8));
    link.send(t0, target.clone());
    link.send(t0, target);
    let got: Vec<u32> = std::iter::from_fn(|| link.poll_deliver(t0))
        .map(|d| index_of(&d))
        .collect();
    assert_eq!(got, vec![0, 1]);
    assert_eq!(link.stats().dropped.targeted, 1);
    link.clear_drop_filter();
}

#[test]
fn in_flight_bytes_are_bounded() {
    let t0 = Instant::now();
    let config = LinkConfig {
        delay: Duration::from_secs(1),
        max_in_flight_bytes: 10_000,
        ..LinkConfig::default()
    };
    let mut link = Link::new(config, 1, t0);
    for i in 0..20 {
        link.send(t0, numbered(i, 1000));
    }
    let s = link.stats();
    assert_eq!((s.in_flight, s.dropped.overflow), (10, 10));
}

fn impaired() -> LinkConfig {
    LinkConfig {
        delay: 30 * MS,
        jitter: 10 * MS,
        loss: 0.1,
        duplicate: 0.05,
        reorder: 0.05,
        reorder_delay: 15 * MS,
        rate_bps: Some(2_000_000),
        queue_bytes: 20_000,
        ..LinkConfig::default()
    }
}

#[test]
fn same_seed_gives_the_same_deliveries() {
    let t0 = Instant::now();
    let sends = || evenly_spaced(3_000, MS, 300);
    let mut a = Link::new(impaired(), 77, t0);
    let mut b = Link::new(impaired(), 77, t0);
    let out_a = run(&mut a, t0, sends());
    let out_b = run(&mut b, t0, sends());
    assert_eq!(out_a, out_b);
    assert_eq!(a.stats(), b.stats());
}

#[test]
fn different_seeds_give_different_deliveries() {
    let t0 = Instant::now();
    let sends = || evenly_spaced(3_000, MS, 300);
    let out_a = run(&mut Link::new(impaired(), 77, t0), t0, sends());
    let out_b = run(&mut Link::new(impaired(), 78, t0), t0, sends());
    assert_ne!(out_a, out_b);
}

#[test]
fn loss_pattern_does_not_depend_on_other_impairments() {
    let t0 = Instant::now();
    let plain = LinkConfig::lossy(Duration::ZERO, 0.2);
    let with_jitter = LinkConfig {
        jitter: 5 * MS,
        delay: 10 * MS,
        ..plain.clone()
    };
    let kept = |config| -> Vec<u32> {
        let mut out: Vec<u32> = run(
            &mut Link::new(config, 12, t0),
            t0,
            evenly_spaced(1_000, MS, 8),
        )
        .iter()
        .map(|(_, d)| index_of(d))
        .collect();
        out.sort_unstable();
        out
    };
    assert_eq!(kept(plain), kept(with_jitter));
}

#[test]
fn recut_link_refragments_handshake_records() {
    use crate::dtls_view::{encode_handshake_record, parse_records};
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::default().with_recut_dtls(Some(150)), 3, t0);
    let body = vec![0x5A; 400];
    let d = encode_handshake_record(0xfefd, 0, 1, 11, 400, 1, 0, &body);
    link.send(t0, d.clone());
    link.send(t0, vec![0x80, 1, 2, 3]);
    let out: Vec<Vec<u8>> = std::iter::from_fn(|| link.poll_deliver(t0)).collect();
    assert!(out.len() >= 4, "{} datagrams", out.len());
    let (handshake, rest) = out.split_at(out.len() - 1);
    assert_eq!(rest[0], vec![0x80, 1, 2, 3]);
    let mut carried = 0;
    for d in handshake {
        assert!(d.len() <= 150);
        for rec in parse_records(d).unwrap() {
            for f in rec.handshake_fragments().unwrap() {
                carried += f.unwrap().body.len();
            }
        }
    }
    assert_eq!(carried, 400);
    let s = link.stats();
    assert_eq!((s.sent, s.recut_datagrams), (2, 1));
    assert_eq!(s.recut_output_datagrams, handshake.len() as u64);
}

#[test]
fn drop_first_drops_only_the_first_matches() {
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::default(), 1, t0);
    link.set_drop_filter(drop_first(2, |d: &[u8]| index_of(d) % 2 == 1));
    for i in 0..8 {
        link.send(t0, numbered(i, 8));
    }
    let got: Vec<u32> = std::iter::from_fn(|| link.poll_deliver(t0))
        .map(|d| index_of(&d))
        .collect();
    assert_eq!(got, vec![0, 2, 4, 5, 6, 7]);
    assert_eq!(link.stats().dropped.targeted, 2);
}

/// Every wire datagram is delivered, dropped for one reason, or still in flight;
/// and no configuration panics.
#[test]
fn counters_balance_under_random_configurations() {
    let mut rng = SimRng::new(2024);
    for round in 0..200 {
        let config = LinkConfig {
            delay: MS * rng.range(0..50) as u32,
            jitter: MS * rng.range(0..20) as u32,
            loss: rng.unit_f64() * 0.5,
            burst: rng
                .chance(0.3)
                .then(|| GilbertElliott::gilbert(rng.unit_f64() * 0.2, rng.unit_f64())),
            loss_window: rng.chance(0.3).then(|| (MS * 100, MS * 300)),
            duplicate: rng.unit_f64() * 0.2,
            reorder: rng.unit_f64() * 0.2,
            reorder_delay: MS * rng.range(0..30) as u32,
            rate_bps: rng.chance(0.5).then(|| rng.range(10_000..10_000_000)),
            queue_bytes: rng.range(1..20_000) as usize,
            max_datagram_size: rng.chance(0.3).then(|| rng.range(0..1500) as usize),
            recut_dtls: false,
            recut_datagram_size: None,
            max_in_flight_bytes: rng.range(0..200_000) as usize,
        };
        let t0 = Instant::now();
        let mut link = Link::new(config, round, t0);
        let sends: Vec<_> = (0..500)
            .map(|i| {
                (
                    MS * rng.range(0..1000) as u32,
                    numbered(i, rng.range(4..1400) as usize),
                )
            })
            .collect();
        let mut sends = sends;
        sends.sort_by_key(|(at, _)| *at);
        let out = run(&mut link, t0, sends);
        let s = link.stats();
        assert_eq!(s.sent, 500, "round {round}");
        assert_eq!(s.in_flight, 0, "round {round}");
        assert_eq!(s.delivered, out.len() as u64, "round {round}");
        assert_eq!(
            s.sent + s.duplicated,
            s.delivered + s.dropped.total(),
            "round {round}"
        );
        assert!(
            out.windows(2).all(|w| w[0].0 <= w[1].0),
            "delivered in time order"
        );
    }
}
