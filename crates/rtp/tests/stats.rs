//! ReceiveStats and SenderStats (RFC 3550 A.1, A.3, A.8).

use std::time::{Duration, Instant};

use sluice_rtp::{ntp_from_unix, ntp_middle_32, ReceiveStats, SenderStats};

const CLOCK: u32 = 90_000;

#[test]
fn fraction_lost_covers_only_the_last_interval_and_cumulative_all() {
    let t0 = Instant::now();
    let mut s = ReceiveStats::new(42);
    for seq in 0..100u16 {
        if seq % 10 != 5 {
            s.on_packet(
                seq,
                u32::from(seq) * 3000,
                t0 + Duration::from_millis(u64::from(seq) * 33),
                CLOCK,
            );
        }
    }
    let b = s.report_block(t0);
    assert_eq!(b.ssrc, 42);
    assert_eq!(b.cumulative_lost, 10);
    assert_eq!(b.fraction_lost, (10 * 256 / 100) as u8);
    assert_eq!(b.extended_highest_seq, 99);
    for seq in 100..200u16 {
        s.on_packet(
            seq,
            u32::from(seq) * 3000,
            t0 + Duration::from_millis(u64::from(seq) * 33),
            CLOCK,
        );
    }
    let b = s.report_block(t0);
    assert_eq!(b.fraction_lost, 0);
    assert_eq!(b.cumulative_lost, 10);
    // an interval with no packets reports no loss
    assert_eq!(s.report_block(t0).fraction_lost, 0);
}

#[test]
fn extended_highest_sequence_counts_wraps() {
    let t0 = Instant::now();
    let mut s = ReceiveStats::new(1);
    for i in 0..100u16 {
        s.on_packet(65_500u16.wrapping_add(i), 0, t0, CLOCK);
    }
    let b = s.report_block(t0);
    assert_eq!(b.extended_highest_seq, (1 << 16) | 63);
    assert_eq!(b.cumulative_lost, 0);
    // a late packet from before the wrap is not a new cycle
    s.on_packet(65_535, 0, t0, CLOCK);
    assert_eq!(s.extended_highest_seq(), (1 << 16) | 63);
}

#[test]
fn duplicates_make_cumulative_loss_negative() {
    let t0 = Instant::now();
    let mut s = ReceiveStats::new(1);
    for seq in [1u16, 2, 2, 3, 3] {
        s.on_packet(seq, 0, t0, CLOCK);
    }
    assert_eq!(s.report_block(t0).cumulative_lost, -2);
}

#[test]
fn large_jump_is_believed_only_when_continued() {
    let t0 = Instant::now();
    let mut s = ReceiveStats::new(1);
    for seq in 0..10u16 {
        assert!(s.on_packet(seq, 0, t0, CLOCK));
    }
    assert!(!s.on_packet(30_000, 0, t0, CLOCK));
    assert_eq!(s.extended_highest_seq(), 9);
    assert!(s.on_packet(30_001, 0, t0, CLOCK));
    assert_eq!(s.extended_highest_seq(), 30_001);
    assert_eq!(s.cumulative_lost(), 0);
}

#[test]
fn constant_delay_has_zero_jitter() {
    let t0 = Instant::now();
    let mut s = ReceiveStats::new(1);
    for i in 0..200u32 {
        let ts = 1_000_000 + i * 1800; // 20 ms at 90 kHz
        s.on_packet(
            i as u16,
            ts,
            t0 + Duration::from_millis(u64::from(i) * 20 + 37),
            CLOCK,
        );
    }
    assert_eq!(s.jitter(), 0);
}

#[test]
fn alternating_delay_converges_to_the_delay_swing() {
    let t0 = Instant::now();
    let mut s = ReceiveStats::new(1);
    for i in 0..600u32 {
        let ts = i * 1800;
        // every other packet is 5 ms late: |D| = 5 ms = 450 ticks each time
        let extra = if i % 2 == 1 { 5 } else { 0 };
        s.on_packet(
            i as u16,
            ts,
            t0 + Duration::from_millis(u64::from(i) * 20 + extra),
            CLOCK,
        );
    }
    let j = s.jitter();
    assert!((445..=450).contains(&j), "jitter {j}");
    assert_eq!(s.report_block(t0).jitter, j);
}

#[test]
fn dlsr_is_time_since_the_last_sender_report_in_1_65536_seconds() {
    let t0 = Instant::now();
    let mut s = ReceiveStats::new(1);
    s.on_packet(1, 0, t0, CLOCK);
    let b = s.report_block(t0);
    assert_eq!((b.last_sr, b.delay_since_last_sr), (0, 0));
    s.on_sender_report(0xABCD_1234, t0);
    let b = s.report_block(t0 + Duration::from_millis(1500));
    assert_eq!(b.last_sr, 0xABCD_1234);
    assert_eq!(b.delay_since_last_sr, 98_304);
}

#[test]
fn ntp_conversion_matches_the_1900_epoch() {
    assert_eq!(ntp_from_unix(Duration::ZERO), 2_208_988_800u64 << 32);
    let half = ntp_from_unix(Duration::from_millis(1500));
    assert_eq!(half, ((2_208_988_801u64) << 32) | 0x8000_0000);
    assert_eq!(
        ntp_middle_32(half),
        ((2_208_988_801u64 & 0xFFFF) << 16) as u32 | 0x8000
    );
}

#[test]
fn sender_stats_count_and_extrapolate_the_rtp_clock() {
    let t0 = Instant::now();
    let mut s = SenderStats::new(CLOCK);
    assert_eq!(s.rtp_timestamp_at(t0), None);
    s.on_packet(1000, 1100, t0);
    s.on_packet(4000, 900, t0 + Duration::from_millis(33));
    assert_eq!((s.packet_count(), s.octet_count()), (2, 2000));
    let ts = s.rtp_timestamp_at(t0 + Duration::from_millis(133)).unwrap();
    assert_eq!(ts, 4000 + 9000);
    let info = s.sender_report(0x1234_5678_9ABC_DEF0, ts);
    assert_eq!(
        (
            info.ntp,
            info.rtp_timestamp,
            info.packet_count,
            info.octet_count
        ),
        (0x1234_5678_9ABC_DEF0, 13_000, 2, 2000)
    );
}
