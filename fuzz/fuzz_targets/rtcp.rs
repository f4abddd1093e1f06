//! RTCP on arbitrary bytes, two ways chosen by the first byte:
//!
//! - even: the rest is a (compound) RTCP datagram: `RtcpIter` with every sub-iterator,
//!   packet ranges, and `rewrite_media_ssrc` on a copy (identity map changes nothing; a
//!   datagram that iterates cleanly is always rewritable and keeps its structure);
//! - odd: the rest is a program for a `TwccRecorder`: 3-byte steps `[seq u16][dt]` (dt in
//!   ms; dt 255 builds feedback; bits 1-3 of the first byte pick a window of 16 << n).
//!   Every feedback it builds must parse back as one
//!   transport-cc packet of at most 1200 bytes that reports only recorded packets, at
//!   their recorded arrival time (to the 250 us tick).
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sluice_rtp::{rewrite_media_ssrc, RtcpIter, RtcpPacket, TwccFeedback, TwccRecorder};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        rtcp(rest);
    } else {
        twcc(rest, 16 << ((mode >> 1) % 8));
    }
});

fn visit(p: &RtcpPacket<'_>) {
    match p {
        RtcpPacket::SenderReport(s) => {
            let _ = (s.ntp_middle_32(), s.blocks.iter().count(), s.blocks.len());
        }
        RtcpPacket::ReceiverReport(r) => {
            assert_eq!(r.blocks.iter().count(), r.blocks.len());
        }
        RtcpPacket::Sdes(s) => {
            for c in s.chunks().take(1024) {
                let _ = (c.items().take(1024).count(), c.cname());
            }
        }
        RtcpPacket::Bye(b) => {
            let _ = (b.ssrcs().count(), b.reason());
        }
        RtcpPacket::Nack(n) => {
            // 17 sequence numbers per FCI at most.
            let _ = n.lost().take(17 * 1024).count();
        }
        RtcpPacket::Fir(f) => {
            let _ = f.entries().count();
        }
        RtcpPacket::TransportCc(t) => {
            let n = t.statuses().count();
            assert!(n <= usize::from(t.packet_status_count));
            // The strict decoder succeeds only on reports the lazy walk covers in full.
            let mut fb = TwccFeedback::default();
            match fb.decode(t) {
                Ok(()) => assert_eq!(fb.packets().len(), n),
                Err(_) => assert!(fb.packets().is_empty()),
            }
        }
        RtcpPacket::Remb(r) => {
            let _ = r.ssrcs().count();
        }
        _ => {}
    }
}

fn rtcp(data: &[u8]) {
    let mut iter = RtcpIter::new(data);
    let mut next_start = 0;
    let mut packets = 0;
    let mut clean = true;
    while let Some(item) = iter.next_with_range() {
        match item {
            Ok((p, range)) => {
                assert_eq!(range.start, next_start, "packets are not contiguous");
                assert!(range.end > range.start && range.end <= data.len());
                next_start = range.end;
                packets += 1;
                visit(&p);
            }
            Err(_) => {
                clean = false;
            }
        }
    }
    assert!(iter.next().is_none(), "the iterator resumed after an error");
    for p in RtcpIter::new(data).flatten() {
        visit(&p);
    }

    let mut copy = data.to_vec();
    let identity = rewrite_media_ssrc(&mut copy, Some);
    assert_eq!(copy, data, "an identity rewrite changed bytes");
    if clean {
        assert!(
            identity.is_ok(),
            "clean datagram not rewritable: {identity:?}"
        );
        let _ = rewrite_media_ssrc(&mut copy, |s| Some(s ^ 0xDEAD_BEEF))
            .expect("clean datagram not rewritable");
        let again: Vec<_> = RtcpIter::new(&copy).collect();
        assert_eq!(again.len(), packets, "rewriting changed the packet count");
        assert!(again.iter().all(Result::is_ok), "rewriting broke a packet");
    }
}

fn twcc(program: &[u8], window: usize) {
    let t0 = Instant::now();
    let mut now = t0;
    let mut recorder = TwccRecorder::new(window);
    let mut epoch: Option<Instant> = None;
    let mut accepted: HashMap<u16, Vec<u64>> = HashMap::new();
    let mut out = Vec::new();
    for step in program.chunks_exact(3).take(4096) {
        let seq = u16::from_be_bytes([step[0], step[1]]);
        if step[2] == 255 {
            build_all(&mut recorder, &accepted, &mut out);
            continue;
        }
        now += Duration::from_millis(u64::from(step[2]));
        let first = *epoch.get_or_insert(now);
        if recorder.record(seq, now) {
            let us = u64::try_from(now.duration_since(first).as_micros()).unwrap_or(u64::MAX);
            accepted.entry(seq).or_default().push(us);
        }
    }
    build_all(&mut recorder, &accepted, &mut out);
}

fn build_all(recorder: &mut TwccRecorder, accepted: &HashMap<u16, Vec<u64>>, out: &mut Vec<u8>) {
    for _ in 0..=4096 {
        out.clear();
        if !recorder.build_feedback(1, 2, out) {
            assert!(out.is_empty(), "false but wrote bytes");
            assert!(!recorder.has_pending(), "false while packets are pending");
            return;
        }
        assert!(out.len() <= 1200, "feedback of {} bytes", out.len());
        let mut packets = RtcpIter::new(out);
        let Some(Ok(RtcpPacket::TransportCc(fb))) = packets.next() else {
            panic!("feedback does not parse as transport-cc: {out:02x?}");
        };
        assert!(packets.next().is_none(), "more than one packet written");
        let strict = TwccFeedback::parse(out).expect("own feedback rejected by the decoder");
        assert_eq!(strict.packets().len(), usize::from(fb.packet_status_count));
        let statuses: Vec<_> = fb.statuses().collect();
        assert_eq!(
            statuses.len(),
            usize::from(fb.packet_status_count),
            "feedback cut short"
        );
        for s in statuses {
            let Some(arrival) = s.arrival_us else {
                continue;
            };
            let recorded = accepted
                .get(&s.sequence_number)
                .unwrap_or_else(|| panic!("seq {} reported but never recorded", s.sequence_number));
            assert!(
                recorded
                    .iter()
                    .any(|&us| (us / 250 * 250) as i64 == arrival),
                "seq {} reported at {arrival} us, recorded at {recorded:?}",
                s.sequence_number
            );
        }
    }
    panic!("build_feedback never stopped returning true");
}
