//! Keyframe detection on hand-built VP8, VP9 and H.264 payloads.

use sluice_rtp::{is_keyframe, Codec};

#[test]
fn vp8_keyframe_needs_start_partition_zero_and_p_bit_clear() {
    // X=0 S=1 PID=0, then frame tag with P=0
    assert!(is_keyframe(Codec::Vp8, &[0x10, 0x50, 0x2A, 0x00]));
    // same with P=1: interframe
    assert!(!is_keyframe(Codec::Vp8, &[0x10, 0x51, 0x2A, 0x00]));
    // S=0: continuation packet
    assert!(!is_keyframe(Codec::Vp8, &[0x00, 0x50, 0x2A]));
    // PID=1
    assert!(!is_keyframe(Codec::Vp8, &[0x11, 0x50, 0x2A]));
}

#[test]
fn vp8_descriptor_extensions_are_skipped() {
    // X=1 S=1; I L T set; 15-bit picture id (M=1), TL0PICIDX, TID byte; then tag P=0
    let p = [0x90, 0xE0, 0x81, 0x23, 0x05, 0x40, 0x50, 0x01];
    assert!(is_keyframe(Codec::Vp8, &p));
    // the same payload read without skipping would see 0xE0 / 0x81 as the tag; flip the
    // real tag's P bit and it must no longer be a keyframe
    let mut q = p;
    q[6] = 0x51;
    assert!(!is_keyframe(Codec::Vp8, &q));
    // 7-bit picture id only
    assert!(is_keyframe(Codec::Vp8, &[0x90, 0x80, 0x11, 0x50]));
    // truncated descriptor
    assert!(!is_keyframe(Codec::Vp8, &[0x90, 0xE0, 0x81]));
}

#[test]
fn vp9_keyframe_is_non_predicted_start_of_base_layer_frame() {
    // I=1 P=0 L=0 F=0 B=1 E=0; 15-bit picture id; payload
    assert!(is_keyframe(Codec::Vp9, &[0x88, 0x80, 0x01, 0xAA]));
    // P=1
    assert!(!is_keyframe(Codec::Vp9, &[0xC8, 0x80, 0x01, 0xAA]));
    // B=0: middle of the frame
    assert!(!is_keyframe(Codec::Vp9, &[0x80, 0x80, 0x01, 0xAA]));
    // L=1 non-flexible: layer byte SID=0 then TL0PICIDX
    assert!(is_keyframe(Codec::Vp9, &[0xA8, 0x01, 0x00, 0x07, 0xAA]));
    // SID=1: an upper spatial layer, not where a decoder can start
    assert!(!is_keyframe(Codec::Vp9, &[0xA8, 0x01, 0x02, 0x07, 0xAA]));
    // descriptor only, no payload
    assert!(!is_keyframe(Codec::Vp9, &[0x88, 0x80, 0x01]));
}

#[test]
fn h264_idr_and_sps_in_single_stap_a_and_fu_a() {
    // single NAL: IDR (type 5), non-IDR slice (type 1), SPS (type 7)
    assert!(is_keyframe(Codec::H264, &[0x65, 0x88, 0x84]));
    assert!(!is_keyframe(Codec::H264, &[0x41, 0x9A]));
    assert!(is_keyframe(Codec::H264, &[0x67, 0x42, 0xC0, 0x1F]));
    // STAP-A containing SPS + PPS
    let stap = [0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xCE];
    assert!(is_keyframe(Codec::H264, &stap));
    // STAP-A with only non-IDR slices and a PPS
    let stap_p = [0x78, 0x00, 0x02, 0x41, 0x9A, 0x00, 0x02, 0x68, 0xCE];
    assert!(!is_keyframe(Codec::H264, &stap_p));
    // STAP-A with a size running past the end
    assert!(!is_keyframe(Codec::H264, &[0x78, 0x00, 0x09, 0x41]));
    // FU-A: start of IDR, middle of IDR, start of non-IDR
    assert!(is_keyframe(Codec::H264, &[0x7C, 0x85, 0xB8]));
    assert!(!is_keyframe(Codec::H264, &[0x7C, 0x05, 0xB8]));
    assert!(!is_keyframe(Codec::H264, &[0x7C, 0x81, 0xB8]));
}

#[test]
fn audio_is_always_decodable_and_unknown_never_a_keyframe() {
    assert!(is_keyframe(Codec::Opus, &[0xFC]));
    assert!(!is_keyframe(Codec::Other, &[0x10, 0x50]));
    assert!(!is_keyframe(Codec::Vp8, &[]));
    assert!(!is_keyframe(Codec::H264, &[]));
}
