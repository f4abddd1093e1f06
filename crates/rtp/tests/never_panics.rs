//! Seeded random and mutated inputs through every parser: nothing may panic.

use std::time::{Duration, Instant};

use sluice_rtp::{
    is_keyframe, rewrite_media_ssrc, set_extension, write_nack, write_pli, write_receiver_report,
    write_remb, write_rtx, write_sdes_cname, Codec, RtcpIter, RtcpPacket, RtpHeader,
    StreamRewriter, TwccFeedback, TwccRecorder,
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = (self.next() as usize) % (max_len + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn exercise_rtp(buf: &mut [u8]) {
    if let Ok(h) = RtpHeader::parse(buf) {
        let _ = (h.csrcs().count(), h.payload().len(), h.extension_profile());
        for e in h.extensions() {
            let _ = h.extension(e.id);
        }
        for codec in [
            Codec::Vp8,
            Codec::Vp9,
            Codec::H264,
            Codec::Opus,
            Codec::Other,
        ] {
            let _ = is_keyframe(codec, h.payload());
        }
    }
    let _ = set_extension(buf, 1, &[0, 1]);
    let mut out = Vec::new();
    let _ = write_rtx(buf, 1, 97, 1, &mut out);
    let mut rw = StreamRewriter::new(5, 90_000);
    rw.switch_source(RtpHeader::parse(buf).map(|h| h.ssrc()).unwrap_or(0));
    let _ = rw.rewrite(buf);
}

fn exercise_rtcp(buf: &mut [u8]) {
    for p in RtcpIter::new(buf).flatten() {
        match p {
            RtcpPacket::SenderReport(s) => {
                let _ = s.blocks.iter().count();
            }
            RtcpPacket::ReceiverReport(r) => {
                let _ = r.blocks.iter().count();
            }
            RtcpPacket::Sdes(s) => {
                for c in s.chunks() {
                    let _ = c.items().count();
                }
            }
            RtcpPacket::Bye(b) => {
                let _ = (b.ssrcs().count(), b.reason());
            }
            RtcpPacket::Nack(n) => {
                let _ = n.lost().take(100_000).count();
            }
            RtcpPacket::Fir(f) => {
                let _ = f.entries().count();
            }
            RtcpPacket::TransportCc(t) => {
                let lazy = t.statuses().count();
                // The strict decoder accepts only what the lazy walk covers in full.
                let mut fb = TwccFeedback::default();
                if fb.decode(&t).is_ok() {
                    assert_eq!(fb.packets().len(), usize::from(t.packet_status_count));
                    assert_eq!(lazy, fb.packets().len());
                }
            }
            RtcpPacket::Remb(r) => {
                let _ = r.ssrcs().count();
            }
            _ => {}
        }
    }
    let _ = rewrite_media_ssrc(buf, |s| Some(s ^ 1));
}

#[test]
fn random_bytes_never_panic_any_parser() {
    let mut rng = Rng(0xDEAD_BEEF_CAFE);
    for _ in 0..20_000 {
        let mut buf = rng.bytes(200);
        // bias towards version 2 so parsing gets past the first byte
        if let Some(b) = buf.first_mut() {
            if rng.next() % 4 != 0 {
                *b = (*b & 0x3F) | 0x80;
            }
        }
        exercise_rtp(&mut buf);
        exercise_rtcp(&mut buf);
    }
}

#[test]
fn mutated_valid_packets_never_panic_any_parser() {
    let mut valid_rtcp = Vec::new();
    write_receiver_report(1, &[Default::default()], &mut valid_rtcp);
    write_sdes_cname(1, b"cname", &mut valid_rtcp);
    write_pli(1, 2, &mut valid_rtcp);
    write_nack(1, 2, &[1, 5, 40], &mut valid_rtcp);
    write_remb(1, 1_000_000, &[3, 4], &mut valid_rtcp);
    let mut valid_rtp = vec![0xB1, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 7];
    valid_rtp.extend_from_slice(&[0xBE, 0xDE, 0, 2, 0x11, 0, 1, 0, 0x52, 1, 2, 3]);
    valid_rtp.extend_from_slice(&[0x7C, 0x85, 0xB8, 0, 2]);
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        for base in [&valid_rtcp, &valid_rtp] {
            let mut buf = base.clone();
            for _ in 0..(1 + rng.next() % 4) {
                let i = (rng.next() as usize) % buf.len();
                buf[i] = rng.next() as u8;
            }
            if rng.next() % 3 == 0 {
                buf.truncate((rng.next() as usize) % buf.len());
            }
            exercise_rtp(&mut buf);
            exercise_rtcp(&mut buf);
        }
    }
}

#[test]
fn random_transport_sequence_numbers_keep_feedback_valid_and_bounded() {
    let t0 = Instant::now();
    let mut rng = Rng(7);
    let mut rec = TwccRecorder::new(512);
    let mut out = Vec::new();
    for i in 0..20_000u64 {
        let seq = rng.next() as u16;
        rec.record(seq, t0 + Duration::from_micros(i * (rng.next() % 50_000)));
        if i % 97 == 0 {
            let mut n = 0;
            loop {
                out.clear();
                if !rec.build_feedback(1, 2, &mut out) {
                    break;
                }
                assert!(out.len() <= sluice_rtp::twcc::MAX_TWCC_FEEDBACK_BYTES);
                assert!(matches!(
                    RtcpIter::new(&out).next(),
                    Some(Ok(RtcpPacket::TransportCc(_)))
                ));
                let fb = TwccFeedback::parse(&out).expect("own feedback decodes");
                assert!(!fb.packets().is_empty());
                n += 1;
                assert!(n < 1000);
            }
        }
    }
}
