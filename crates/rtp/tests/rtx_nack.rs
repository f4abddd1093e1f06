//! RetransmissionCache, RFC 4588 RTX packets and NackGenerator.

use std::time::{Duration, Instant};

use sluice_rtp::nack::NackConfig;
use sluice_rtp::{write_rtx, NackGenerator, RetransmissionCache, RtpHeader};

fn pkt(seq: u16, len: usize) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 1]);
    p.resize(len, seq as u8);
    p
}

#[test]
fn cache_returns_packets_by_sequence_number_across_wrap() {
    let mut c = RetransmissionCache::new(16, 1 << 20);
    for i in 0..20u16 {
        let seq = 65_530u16.wrapping_add(i);
        assert!(c.insert(seq, &pkt(seq, 100)));
    }
    // the newest 16 are kept, the 4 oldest evicted
    for i in 0..4u16 {
        assert_eq!(c.get(65_530u16.wrapping_add(i)), None);
    }
    for i in 4..20u16 {
        let seq = 65_530u16.wrapping_add(i);
        assert_eq!(c.get(seq), Some(&pkt(seq, 100)[..]));
    }
    assert_eq!(c.get(100), None);
    assert_eq!(c.total_bytes(), 1600);
}

#[test]
fn cache_respects_its_byte_budget_by_evicting_oldest() {
    let mut c = RetransmissionCache::new(64, 1000);
    for seq in 0..10u16 {
        assert!(c.insert(seq, &pkt(seq, 300)));
        assert!(c.total_bytes() <= 1000);
    }
    assert_eq!(c.get(6), None);
    for seq in 7..10u16 {
        assert!(c.get(seq).is_some());
    }
    assert!(!c.insert(10, &vec![0x80; 1001]));
    assert!(!c.insert(11, &vec![0x80; 1501]));
}

#[test]
fn cache_rejects_packets_older_than_its_window_and_handles_big_jumps() {
    let mut c = RetransmissionCache::new(8, 1 << 20);
    assert!(c.insert(100, &pkt(100, 50)));
    assert!(c.insert(200, &pkt(200, 50)));
    assert_eq!(c.get(100), None);
    assert_eq!(c.total_bytes(), 50);
    assert!(!c.insert(150, &pkt(150, 50)));
    assert!(c.insert(195, &pkt(195, 50)));
    assert_eq!(c.get(195).map(<[u8]>::len), Some(50));
}

#[test]
fn rtx_packet_prefixes_original_sequence_number_and_drops_padding() {
    let mut orig = vec![0xA0, 0x80 | 96, 0x12, 0x34, 0, 0, 0, 5, 0, 0, 0, 9];
    orig.extend_from_slice(&[1, 2, 3, 0, 0, 2]);
    let mut out = Vec::new();
    write_rtx(&orig, 0x7777, 97, 500, &mut out).unwrap();
    let h = RtpHeader::parse(&out).unwrap();
    assert_eq!(
        (h.ssrc(), h.payload_type(), h.sequence_number()),
        (0x7777, 97, 500)
    );
    assert!(h.marker());
    assert_eq!(h.timestamp(), 5);
    assert_eq!(h.padding_len(), 0);
    assert_eq!(h.payload(), &[0x12, 0x34, 1, 2, 3, 0]);
    assert!(write_rtx(&orig[..5], 1, 1, 1, &mut out).is_err());
}

fn cfg() -> NackConfig {
    NackConfig {
        reorder_delay: Duration::from_millis(10),
        retry_interval: Duration::from_millis(50),
        max_retries: 3,
        max_age: Duration::from_millis(1000),
        max_missing: 100,
    }
}

#[test]
fn gap_is_nacked_after_the_reorder_delay_then_retried() {
    let t0 = Instant::now();
    let mut g = NackGenerator::new(cfg());
    g.on_packet(10, t0);
    g.on_packet(14, t0);
    assert!(g.poll_nacks(t0).is_empty(), "reordering grace");
    assert_eq!(g.poll_timeout(), Some(t0 + Duration::from_millis(10)));
    let t1 = t0 + Duration::from_millis(10);
    assert_eq!(g.poll_nacks(t1), vec![11, 12, 13]);
    assert!(g.poll_nacks(t1 + Duration::from_millis(49)).is_empty());
    g.on_packet(12, t1);
    assert_eq!(g.poll_nacks(t1 + Duration::from_millis(50)), vec![11, 13]);
    assert_eq!(g.poll_nacks(t1 + Duration::from_millis(100)), vec![11, 13]);
    // max_retries = 3 reached: given up
    assert!(g.poll_nacks(t1 + Duration::from_millis(150)).is_empty());
    assert_eq!(g.missing_count(), 0);
    assert_eq!(g.abandoned_count(), 2);
    assert_eq!(g.poll_timeout(), None);
}

#[test]
fn nacks_work_across_the_wrap_and_expire_by_age() {
    let t0 = Instant::now();
    let mut g = NackGenerator::new(NackConfig {
        max_retries: 100,
        ..cfg()
    });
    g.on_packet(65_534, t0);
    g.on_packet(1, t0);
    assert_eq!(
        g.poll_nacks(t0 + Duration::from_millis(10)),
        vec![65_535, 0]
    );
    assert!(g.poll_nacks(t0 + Duration::from_millis(1000)).is_empty());
    assert_eq!(g.missing_count(), 0);
}

#[test]
fn a_gap_larger_than_the_limit_resets_instead_of_growing() {
    let t0 = Instant::now();
    let mut g = NackGenerator::new(cfg());
    g.on_packet(0, t0);
    g.on_packet(5000, t0);
    assert_eq!(g.missing_count(), 0);
    g.on_packet(5003, t0);
    assert_eq!(
        g.poll_nacks(t0 + Duration::from_secs(1) / 10),
        vec![5001, 5002]
    );
}

#[test]
fn cache_memory_stays_within_its_byte_budget_whatever_the_packet_sizes() {
    let max_bytes = 64 * 1024;
    let mut c = RetransmissionCache::new(1024, max_bytes);
    let index_bytes = c.heap_bytes();
    for i in 0..5000u32 {
        let seq = i as u16;
        // alternate sizes so that freed slots could not simply be reused in place
        let len = if i % 3 == 0 {
            1200
        } else {
            150 + (i as usize % 900)
        };
        assert!(c.insert(seq, &pkt(seq, len)));
        assert!(c.total_bytes() <= max_bytes);
        assert_eq!(c.get(seq), Some(&pkt(seq, len)[..]));
    }
    assert!(
        c.heap_bytes() <= max_bytes + 2 * index_bytes + 1024 * 32,
        "heap {} for a budget of {max_bytes}",
        c.heap_bytes()
    );
    // the newest packets are all still there, the oldest are gone
    assert!(c.get(4999).is_some() && c.get(4990).is_some());
    assert_eq!(c.get(1000), None);
}

/// Sends `seconds` of a stream of `len`-byte packets at `per_second` through a windowed
/// cache and returns it with the time of the last packet and its sequence number.
fn windowed_stream(
    max_bytes: usize,
    per_second: u32,
    len: usize,
    seconds: u32,
) -> (RetransmissionCache, Instant, u16) {
    let window = Duration::from_secs(1);
    let mut c = RetransmissionCache::new(512, max_bytes).with_window(window);
    let t0 = Instant::now();
    let gap = Duration::from_secs(1) / per_second;
    let mut last = (t0, 0u16);
    for i in 0..per_second * seconds {
        let seq = i as u16;
        let now = t0 + gap * i;
        assert!(c.insert_at(seq, &pkt(seq, len), now));
        assert!(c.total_bytes() <= max_bytes);
        last = (now, seq);
    }
    (c, last.0, last.1)
}

#[test]
fn a_windowed_cache_holds_about_its_window_of_a_slow_stream_not_its_whole_budget() {
    // 500 kbit/s video: 60 packets/s of 1,040 bytes, 62 KB/s
    let budget = 128 * 1024;
    let (c, _, last) = windowed_stream(budget, 60, 1040, 10);
    let ring = c.heap_bytes();
    assert!(ring <= 64 * 1024 + 32 * 1024, "holds {ring} bytes");
    assert!(ring < budget, "grew to its whole budget: {ring}");
    // every packet of the last second can still be resent
    for back in 0..60u16 {
        let seq = last.wrapping_sub(back);
        assert_eq!(c.get(seq), Some(&pkt(seq, 1040)[..]), "seq {seq}");
    }
}

#[test]
fn a_windowed_cache_of_a_fast_stream_grows_to_its_budget_and_no_further() {
    // 5 Mbit/s: 520 packets/s of 1,200 bytes; one second would need 624 KB
    let budget = 128 * 1024;
    let (c, _, last) = windowed_stream(budget, 520, 1200, 3);
    assert!(c.heap_bytes() >= budget);
    assert!(c.heap_bytes() <= budget + 64 * 1024, "{}", c.heap_bytes());
    // what fits in the budget (about 100 packets) is there
    for back in 0..100u16 {
        let seq = last.wrapping_sub(back);
        assert!(c.get(seq).is_some(), "seq {seq}");
    }
}

#[test]
fn a_windowed_cache_of_a_tiny_stream_stays_at_its_initial_size() {
    let (c, _, last) = windowed_stream(128 * 1024, 50, 100, 10);
    assert!(
        c.heap_bytes() <= 16 * 1024 + 32 * 1024,
        "{}",
        c.heap_bytes()
    );
    assert!(c.get(last.wrapping_sub(49)).is_some());
}
