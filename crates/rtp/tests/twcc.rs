//! TwccRecorder feedback checked with an independent decoder written from
//! draft-holmer-rmcat-transport-wide-cc-extensions-01 section 3.1.

use std::time::{Duration, Instant};

use sluice_rtp::{RtcpIter, RtcpPacket, TwccRecorder};

/// One decoded feedback packet: every reported sequence number with its absolute arrival
/// time in 250 us ticks (reference time * 256 + running deltas), or `None` if lost.
#[derive(Debug)]
struct Decoded {
    base: u16,
    fb_count: u8,
    ref_time: i32,
    packets: Vec<(u16, Option<i64>)>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn decode(buf: &[u8]) -> Decoded {
    assert_eq!(buf[0] >> 6, 2, "version");
    assert_eq!(buf[0] & 0x1F, 15, "fmt");
    assert_eq!(buf[1], 205, "pt");
    let len = (usize::from(be16(buf, 2)) + 1) * 4;
    assert_eq!(len, buf.len(), "length field");
    let end = if buf[0] & 0x20 != 0 {
        let pad = usize::from(buf[len - 1]);
        assert!((1..=3).contains(&pad));
        len - pad
    } else {
        len
    };
    let base = be16(buf, 12);
    let count = usize::from(be16(buf, 14));
    let raw_ref = u32::from_be_bytes([0, buf[16], buf[17], buf[18]]);
    let ref_time = if raw_ref & 0x80_0000 != 0 {
        raw_ref as i32 - 0x100_0000
    } else {
        raw_ref as i32
    };
    let fb_count = buf[19];
    let mut pos = 20;
    let mut symbols: Vec<u16> = Vec::new();
    while symbols.len() < count {
        let chunk = be16(buf, pos);
        pos += 2;
        if chunk & 0x8000 == 0 {
            let symbol = (chunk >> 13) & 0x3;
            let run = usize::from(chunk & 0x1FFF);
            assert!(run > 0, "empty run");
            assert!(symbols.len() + run <= count, "run past status count");
            symbols.extend(std::iter::repeat_n(symbol, run));
        } else if chunk & 0x4000 == 0 {
            for i in 0..14 {
                symbols.push((chunk >> (13 - i)) & 1);
            }
        } else {
            for i in 0..7 {
                symbols.push((chunk >> (12 - 2 * i)) & 0x3);
            }
        }
    }
    assert!(
        symbols[count..].iter().all(|&s| s == 0),
        "non-zero unused symbols"
    );
    symbols.truncate(count);
    let mut t = i64::from(ref_time) * 256;
    let mut packets = Vec::new();
    for (i, s) in symbols.iter().enumerate() {
        let seq = base.wrapping_add(i as u16);
        let arrival = match s {
            0 => None,
            1 => {
                t += i64::from(buf[pos]);
                pos += 1;
                Some(t)
            }
            2 => {
                t += i64::from(i16::from_be_bytes([buf[pos], buf[pos + 1]]));
                pos += 2;
                Some(t)
            }
            _ => panic!("reserved symbol"),
        };
        packets.push((seq, arrival));
    }
    assert!(pos <= end, "deltas overrun");
    assert!(
        end - pos < 4 && buf[pos..end].iter().all(|&b| b == 0),
        "bad padding"
    );
    Decoded {
        base,
        fb_count,
        ref_time,
        packets,
    }
}

fn drain(rec: &mut TwccRecorder) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    loop {
        let mut out = Vec::new();
        if !rec.build_feedback(0x1111, 0x2222, &mut out) {
            assert!(out.is_empty());
            return all;
        }
        assert!(out.len() <= sluice_rtp::twcc::MAX_TWCC_FEEDBACK_BYTES);
        // our own RTCP parser routes it too
        let p: Vec<_> = RtcpIter::new(&out).collect();
        assert!(matches!(p[..], [Ok(RtcpPacket::TransportCc(_))]));
        all.push(out);
        assert!(all.len() < 10_000);
    }
}

fn ticks(us: u64) -> i64 {
    (us / 250) as i64
}

#[test]
fn small_case_is_byte_exact() {
    let t0 = Instant::now();
    let mut rec = TwccRecorder::default();
    rec.record(10, t0);
    rec.record(11, t0 + Duration::from_micros(1000));
    rec.record(13, t0 + Duration::from_micros(1500));
    let mut out = Vec::new();
    assert!(rec.build_feedback(0x0102_0304, 0x0506_0708, &mut out));
    #[rustfmt::skip]
    let expected = [
        0xAF, 205, 0x00, 0x06,       // V=2 P=1 FMT=15, PT=205, 6 words
        0x01, 0x02, 0x03, 0x04,      // sender SSRC
        0x05, 0x06, 0x07, 0x08,      // media SSRC
        0x00, 0x0A, 0x00, 0x04,      // base 10, 4 statuses
        0x00, 0x00, 0x00, 0x00,      // reference time 0, feedback count 0
        0xB4, 0x00,                  // 1-bit status vector: 1 1 0 1
        0x00, 0x04, 0x02,            // deltas 0, 4, 2 ticks
        0x00, 0x00, 0x03,            // padding, count 3
    ];
    assert_eq!(out, expected);
    assert!(!rec.build_feedback(1, 2, &mut out));
}

#[test]
fn reference_time_is_in_64ms_units_and_feedback_count_increments() {
    let t0 = Instant::now();
    let mut rec = TwccRecorder::default();
    rec.record(1, t0);
    let mut out = Vec::new();
    assert!(rec.build_feedback(1, 2, &mut out));
    rec.record(2, t0 + Duration::from_millis(100));
    let mut out2 = Vec::new();
    assert!(rec.build_feedback(1, 2, &mut out2));
    let d = decode(&out2);
    assert_eq!((d.base, d.ref_time, d.fb_count), (2, 1, 1));
    assert_eq!(d.packets, vec![(2, Some(400))]);
}

/// A deterministic xorshift generator for the arrival patterns.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn losses_reordering_and_large_deltas_decode_to_the_recorded_arrivals() {
    let t0 = Instant::now();
    let mut rng = Rng(0x5EED_1234);
    // (seq, arrival_us) with 10% loss, jitter, occasional 80-700 ms stalls
    let mut sent: Vec<(u16, Option<u64>)> = Vec::new();
    let mut t_us = 0u64;
    let first_seq = 65_000u16; // crosses the 16-bit wrap
    for i in 0..3000u16 {
        let seq = first_seq.wrapping_add(i);
        t_us += 500 + rng.next() % 4000;
        if rng.next() % 50 == 0 {
            t_us += 80_000 + rng.next() % 620_000;
        }
        let lost = rng.next() % 10 == 0;
        sent.push((seq, (!lost).then_some(t_us)));
    }
    // Reorder: some packets arrive up to 30 ms later than their send order implies.
    let mut arrivals: Vec<(u16, u64)> = sent
        .iter()
        .filter_map(|&(s, a)| {
            a.map(|a| {
                (
                    s,
                    a + if rng.next() % 7 == 0 {
                        rng.next() % 30_000
                    } else {
                        0
                    },
                )
            })
        })
        .collect();
    arrivals.sort_by_key(|&(_, a)| a);
    let expected: std::collections::HashMap<u16, u64> = arrivals.iter().copied().collect();

    let mut rec = TwccRecorder::default();
    let mut decoded = Vec::new();
    let epoch_us = arrivals[0].1;
    for (n, &(seq, a)) in arrivals.iter().enumerate() {
        // false only for a packet that arrived after its feedback was sent
        let _ = rec.record(seq, t0 + Duration::from_micros(a));
        // feedback every ~100 packets, as a periodic timer would
        if n % 100 == 99 {
            decoded.extend(drain(&mut rec).iter().map(|p| decode(p)));
        }
    }
    decoded.extend(drain(&mut rec).iter().map(|p| decode(p)));

    let mut next_base: Option<u16> = None;
    let mut reported = std::collections::HashMap::new();
    let mut saw_large = false;
    let mut saw_negative = false;
    for (i, d) in decoded.iter().enumerate() {
        assert_eq!(d.fb_count, i as u8);
        if let Some(b) = next_base {
            assert_eq!(d.base, b, "feedback packets are contiguous");
        }
        next_base = Some(d.base.wrapping_add(d.packets.len() as u16));
        let mut prev = None;
        for &(seq, arr) in &d.packets {
            if let (Some(p), Some(a)) = (prev, arr) {
                saw_large |= a - p > 255;
                saw_negative |= a < p;
            }
            if arr.is_some() {
                prev = arr;
            }
            assert!(
                reported.insert(seq, arr).is_none(),
                "seq {seq} reported twice"
            );
        }
    }
    assert!(
        saw_large && saw_negative,
        "pattern must exercise both delta sizes"
    );
    let mut late_ignored = 0;
    for &(seq, _) in &sent {
        let Some(&got) = reported.get(&seq) else {
            continue;
        };
        match (expected.get(&seq), got) {
            (Some(&a), Some(t)) => assert_eq!(t, ticks(a - epoch_us), "arrival of {seq}"),
            (None, None) => {}
            // reordered beyond a feedback boundary: reported lost, then ignored when late
            (Some(_), None) => late_ignored += 1,
            (None, Some(_)) => panic!("lost packet {seq} reported received"),
        }
    }
    assert!(late_ignored < 60, "{late_ignored}");
    // every sequence number from the first to the last received was reported
    assert_eq!(
        reported.len(),
        usize::from(sent.last().unwrap().0.wrapping_sub(first_seq)) + 1 - trailing_lost(&sent)
    );
}

fn trailing_lost(sent: &[(u16, Option<u64>)]) -> usize {
    sent.iter().rev().take_while(|(_, a)| a.is_none()).count()
}

#[test]
fn delta_beyond_16_bits_splits_into_a_new_packet_with_its_own_reference() {
    let t0 = Instant::now();
    let mut rec = TwccRecorder::default();
    rec.record(1, t0);
    rec.record(2, t0 + Duration::from_millis(10_000));
    let packets = drain(&mut rec);
    assert_eq!(packets.len(), 2);
    let a = decode(&packets[0]);
    let b = decode(&packets[1]);
    assert_eq!(a.packets, vec![(1, Some(0))]);
    assert_eq!(b.base, 2);
    assert_eq!(b.ref_time, 10_000 / 64);
    assert_eq!(b.packets, vec![(2, Some(40_000))]);
}

#[test]
fn long_loss_runs_use_run_length_chunks() {
    let t0 = Instant::now();
    let mut rec = TwccRecorder::default();
    rec.record(100, t0);
    rec.record(3100, t0 + Duration::from_millis(20));
    let packets = drain(&mut rec);
    assert_eq!(packets.len(), 1);
    assert!(packets[0].len() < 40, "{} bytes", packets[0].len());
    let d = decode(&packets[0]);
    assert_eq!(d.packets.len(), 3001);
    assert_eq!(d.packets[0], (100, Some(0)));
    assert!(d.packets[1..3000].iter().all(|p| p.1.is_none()));
    assert_eq!(d.packets[3000], (3100, Some(80)));
}

#[test]
fn many_large_deltas_split_by_size() {
    let t0 = Instant::now();
    let mut rec = TwccRecorder::default();
    for i in 0..2000u64 {
        // 70 ms apart, all large deltas (280 ticks)
        rec.record(i as u16, t0 + Duration::from_millis(70 * i));
    }
    let packets = drain(&mut rec);
    assert!(packets.len() >= 4);
    let total: usize = packets.iter().map(|p| decode(p).packets.len()).sum();
    assert_eq!(total, 2000);
    for p in &packets {
        let d = decode(p);
        let mut prev: Option<i64> = None;
        for (seq, a) in d.packets {
            let a = a.unwrap();
            assert_eq!(a, ticks(70_000 * u64::from(seq)));
            if let Some(p) = prev {
                assert_eq!(a - p, 280);
            }
            prev = Some(a);
        }
    }
}

#[test]
fn duplicates_and_packets_older_than_the_last_feedback_are_ignored() {
    let t0 = Instant::now();
    let mut rec = TwccRecorder::default();
    assert!(rec.record(5, t0));
    assert!(!rec.record(5, t0 + Duration::from_millis(1)));
    assert!(rec.record(7, t0 + Duration::from_millis(2)));
    let mut out = Vec::new();
    assert!(rec.build_feedback(1, 2, &mut out));
    assert_eq!(
        decode(&out).packets,
        vec![(5, Some(0)), (6, None), (7, Some(8))]
    );
    assert!(!rec.record(6, t0 + Duration::from_millis(3)));
    assert!(!rec.has_pending());
}

#[test]
fn a_packet_older_than_the_first_is_included_before_any_feedback() {
    let t0 = Instant::now();
    let mut rec = TwccRecorder::default();
    rec.record(10, t0);
    rec.record(9, t0 + Duration::from_millis(1));
    let mut out = Vec::new();
    assert!(rec.build_feedback(1, 2, &mut out));
    let d = decode(&out);
    assert_eq!(d.base, 9);
    assert_eq!(d.packets, vec![(9, Some(4)), (10, Some(0))]);
}

#[test]
fn window_bounds_unreported_history() {
    let t0 = Instant::now();
    let mut rec = TwccRecorder::new(64);
    for i in 0..1000u16 {
        rec.record(i, t0 + Duration::from_millis(u64::from(i)));
    }
    let packets = drain(&mut rec);
    let seqs: Vec<u16> = packets
        .iter()
        .flat_map(|p| decode(p).packets)
        .map(|(s, _)| s)
        .collect();
    assert_eq!(seqs, (936..1000).collect::<Vec<_>>());
}

#[test]
fn crate_decoder_agrees_with_the_independent_decoder() {
    let t0 = Instant::now();
    let mut rng = Rng(99);
    let mut rec = TwccRecorder::default();
    let mut t_us = 0;
    for i in 0..400u16 {
        t_us += rng.next() % 90_000;
        if rng.next() % 5 != 0 {
            rec.record(i.wrapping_add(65_400), t0 + Duration::from_micros(t_us));
        }
    }
    for p in drain(&mut rec) {
        let theirs = decode(&p);
        let Some(Ok(RtcpPacket::TransportCc(t))) = RtcpIter::new(&p).next() else {
            panic!()
        };
        let ours: Vec<(u16, Option<i64>)> = t
            .statuses()
            .map(|s| (s.sequence_number, s.arrival_us.map(|us| us / 250)))
            .collect();
        assert_eq!(ours, theirs.packets);
    }
}

#[test]
fn crate_decoder_reads_the_hand_built_vector() {
    #[rustfmt::skip]
    let p = [
        0xAF, 205, 0x00, 0x06, 1, 2, 3, 4, 5, 6, 7, 8,
        0x00, 0x0A, 0x00, 0x04, 0x00, 0x00, 0x02, 0x00,
        0xB4, 0x00, 0x00, 0x04, 0x02, 0x00, 0x00, 0x03,
    ];
    let Some(Ok(RtcpPacket::TransportCc(t))) = RtcpIter::new(&p).next() else {
        panic!()
    };
    let s: Vec<_> = t
        .statuses()
        .map(|s| (s.sequence_number, s.arrival_us))
        .collect();
    assert_eq!(
        s,
        vec![
            (10, Some(128_000)),
            (11, Some(129_000)),
            (12, None),
            (13, Some(129_500))
        ]
    );
}

#[test]
fn the_ring_is_allocated_on_the_first_packet_and_grows_with_the_unreported_span() {
    let t0 = Instant::now();
    let mut rec = TwccRecorder::new(512);
    assert_eq!(
        rec.allocated_slots(),
        0,
        "a receive-only participant records nothing"
    );
    // 20 packets between feedbacks, as a publisher with feedback every 50-100 ms has
    for round in 0..50u16 {
        for i in 0..20u16 {
            rec.record(
                round * 20 + i,
                t0 + Duration::from_millis(u64::from(round * 20 + i)),
            );
        }
        let fb = drain(&mut rec);
        let d = decode(&fb[0]);
        assert_eq!(d.base, round * 20);
        assert_eq!(d.packets.len(), 20);
    }
    assert_eq!(rec.allocated_slots(), 32);
    // 300 unreported packets (one of them lost): the ring grows and still reports them all
    for i in 1000..1300u16 {
        if i != 1100 {
            rec.record(i, t0 + Duration::from_millis(u64::from(i)));
        }
    }
    assert_eq!(rec.allocated_slots(), 512);
    let packets: Vec<_> = drain(&mut rec)
        .iter()
        .flat_map(|p| decode(p).packets)
        .collect();
    assert_eq!(packets.len(), 300);
    assert_eq!(packets.iter().filter(|p| p.1.is_none()).count(), 1);
    // never beyond the configured window
    for i in 0..5000u16 {
        rec.record(1300 + i, t0 + Duration::from_secs(2));
    }
    assert_eq!(rec.allocated_slots(), 512);
}
