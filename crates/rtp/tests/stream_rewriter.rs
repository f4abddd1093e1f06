//! StreamRewriter: one continuous output stream across source switches and wrap-around.

use sluice_rtp::{RtpHeader, StreamRewriter};

fn pkt(ssrc: u32, seq: u16, ts: u32) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xAB; 20]);
    p
}

fn rw(r: &mut StreamRewriter, ssrc: u32, seq: u16, ts: u32) -> Option<(u16, u32)> {
    let mut p = pkt(ssrc, seq, ts);
    let out = r.rewrite(&mut p);
    if let Some((s, t)) = out {
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(
            (h.ssrc(), h.sequence_number(), h.timestamp()),
            (0x5151, s, t)
        );
        assert_eq!(h.payload(), &[0xAB; 20]);
    }
    out
}

#[test]
fn switch_continues_sequence_and_timestamp_after_last_output() {
    let mut r = StreamRewriter::new(0x5151, 90_000);
    r.switch_source(1);
    assert_eq!(rw(&mut r, 1, 100, 1000), Some((100, 1000)));
    assert_eq!(rw(&mut r, 1, 101, 1000), Some((101, 1000)));
    assert_eq!(rw(&mut r, 1, 102, 4000), Some((102, 4000)));
    // a different source with unrelated numbering takes over
    r.switch_source(2);
    // the old source's late packets are dropped after the switch takes effect
    assert_eq!(rw(&mut r, 2, 50_000, 777_000), Some((103, 7000)));
    assert_eq!(rw(&mut r, 1, 103, 7000), None);
    assert_eq!(rw(&mut r, 2, 50_001, 777_000), Some((104, 7000)));
    assert_eq!(rw(&mut r, 2, 50_002, 780_000), Some((105, 10_000)));
}

#[test]
fn explicit_gap_is_used_for_the_timestamp_jump() {
    let mut r = StreamRewriter::new(0x5151, 48_000);
    r.switch_source(1);
    rw(&mut r, 1, 10, 960).unwrap();
    r.switch_source_with_gap(2, 48_000);
    assert_eq!(rw(&mut r, 2, 9, 5), Some((11, 48_960)));
}

#[test]
fn packets_older_than_the_switch_point_are_dropped() {
    let mut r = StreamRewriter::new(0x5151, 90_000);
    r.switch_source(1);
    rw(&mut r, 1, 9, 0).unwrap();
    rw(&mut r, 1, 10, 3000).unwrap();
    r.switch_source(2);
    // gap = the observed frame interval (3000)
    assert_eq!(rw(&mut r, 2, 500, 90_000), Some((11, 6000)));
    // reordered packet of the new source from before its first forwarded one
    assert_eq!(rw(&mut r, 2, 499, 87_000), None);
    // reordering after the switch point is forwarded with its own (older) number
    assert_eq!(rw(&mut r, 2, 502, 93_000), Some((13, 9000)));
    assert_eq!(rw(&mut r, 2, 501, 93_000), Some((12, 9000)));
}

#[test]
fn input_and_output_wrap_around_keep_continuity() {
    let mut r = StreamRewriter::new(0x5151, 90_000);
    r.switch_source(1);
    let mut expected_seq = 65_530u16;
    let mut ts = u32::MAX - 6000;
    for i in 0..12u16 {
        let seq = 65_530u16.wrapping_add(i);
        assert_eq!(rw(&mut r, 1, seq, ts), Some((expected_seq, ts)));
        expected_seq = expected_seq.wrapping_add(1);
        ts = ts.wrapping_add(3000);
    }
    // switch to a source that is itself about to wrap
    r.switch_source(2);
    let last_ts = ts.wrapping_sub(3000);
    let mut out_ts = last_ts.wrapping_add(3000);
    for i in 0..10u16 {
        let seq = 65_533u16.wrapping_add(i);
        let in_ts = 100u32.wrapping_add(u32::from(i) * 3000);
        assert_eq!(rw(&mut r, 2, seq, in_ts), Some((expected_seq, out_ts)));
        expected_seq = expected_seq.wrapping_add(1);
        out_ts = out_ts.wrapping_add(3000);
    }
}

#[test]
fn switching_back_to_the_same_ssrc_reanchors_it() {
    let mut r = StreamRewriter::new(0x5151, 90_000);
    r.switch_source(1);
    rw(&mut r, 1, 1000, 0).unwrap();
    rw(&mut r, 1, 1001, 3000).unwrap();
    // renegotiation restarts the publisher's numbering under the same SSRC
    r.switch_source(1);
    assert_eq!(rw(&mut r, 1, 5, 10), Some((1002, 6000)));
    assert_eq!(r.output_timestamp(1, 3010), Some(9000));
    assert_eq!(r.output_timestamp(2, 3010), None);
}

#[test]
fn pending_switch_keeps_forwarding_old_source_until_new_one_arrives() {
    let mut r = StreamRewriter::new(0x5151, 90_000);
    r.switch_source(1);
    rw(&mut r, 1, 1, 0).unwrap();
    r.switch_source(2);
    assert_eq!(r.current_source(), Some(2));
    // until the new source's first packet, the old one keeps the subscriber fed
    assert_eq!(rw(&mut r, 1, 2, 3000), Some((2, 3000)));
    assert_eq!(rw(&mut r, 2, 70, 1), Some((3, 6000)));
    assert_eq!(rw(&mut r, 1, 3, 6000), None);
}
