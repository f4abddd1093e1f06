//! Hand-built RTP packets and a small harness around a `Router` for the integration tests.
#![allow(dead_code)]

use std::time::Instant;

use sluice_rtp::RtpHeader;
use sluice_sfu::{Output, OutputKind, ParticipantId, Router};

/// A VP8 payload starting a keyframe (S=1, partition 0, frame tag P bit 0).
pub const VP8_KEYFRAME: &[u8] = &[0x10, 0x00, 0x9D, 0x01, 0x2A, 0xAA, 0xBB];
/// A VP8 payload of a delta frame.
pub const VP8_DELTA: &[u8] = &[0x10, 0x01, 0xCC, 0xDD, 0xEE];
/// An Opus payload.
pub const OPUS: &[u8] = &[0xF8, 0xFF, 0xFE, 0x01];

/// An RTP packet builder with RFC 8285 one-byte extensions.
#[derive(Debug, Clone)]
pub struct Rtp {
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub exts: Vec<(u8, Vec<u8>)>,
    pub payload: Vec<u8>,
}

impl Rtp {
    pub fn new(pt: u8, ssrc: u32, seq: u16, ts: u32, payload: &[u8]) -> Self {
        Self {
            pt,
            seq,
            ts,
            ssrc,
            exts: Vec::new(),
            payload: payload.to_vec(),
        }
    }

    pub fn ext(mut self, id: u8, data: &[u8]) -> Self {
        self.exts.push((id, data.to_vec()));
        self
    }

    pub fn mid(self, mid: &str) -> Self {
        self.ext(1, mid.as_bytes())
    }

    pub fn twcc(self, transport_seq: u16) -> Self {
        self.ext(3, &transport_seq.to_be_bytes())
    }

    pub fn build(&self) -> Vec<u8> {
        let x = if self.exts.is_empty() { 0 } else { 0x10 };
        let mut p = vec![0x80 | x, self.pt & 0x7F];
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&self.ts.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        if !self.exts.is_empty() {
            let mut body = Vec::new();
            for (id, data) in &self.exts {
                body.push((id << 4) | (data.len() as u8 - 1));
                body.extend_from_slice(data);
            }
            while body.len() % 4 != 0 {
                body.push(0);
            }
            p.extend_from_slice(&[0xBE, 0xDE]);
            p.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
            p.extend_from_slice(&body);
        }
        p.extend_from_slice(&self.payload);
        p
    }
}

/// Drains every queued output (recycling nothing: tests keep them).
pub fn drain(router: &mut Router) -> Vec<Output> {
    std::iter::from_fn(|| router.poll_output()).collect()
}

pub fn rtp_to(outputs: &[Output], to: ParticipantId) -> Vec<RtpView> {
    outputs
        .iter()
        .filter(|o| o.to == to && o.kind == OutputKind::Rtp)
        .map(|o| RtpView::of(&o.data))
        .collect()
}

pub fn rtcp_to(outputs: &[Output], to: ParticipantId) -> Vec<&Output> {
    outputs
        .iter()
        .filter(|o| o.to == to && o.kind == OutputKind::Rtcp)
        .collect()
}

/// The fields of a forwarded packet the tests look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpView {
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
    pub mid: Option<Vec<u8>>,
    pub transport_seq: Option<u16>,
}

impl RtpView {
    pub fn of(data: &[u8]) -> Self {
        let h = RtpHeader::parse(data).expect("router output parses");
        Self {
            pt: h.payload_type(),
            seq: h.sequence_number(),
            ts: h.timestamp(),
            ssrc: h.ssrc(),
            payload: h.payload().to_vec(),
            mid: h.extension(1).map(<[u8]>::to_vec),
            transport_seq: h
                .extension(3)
                .and_then(|d| d.try_into().ok())
                .map(u16::from_be_bytes),
        }
    }
}

/// Runs the router's timers up to `until`, collecting everything it sends.
pub fn run_timers(router: &mut Router, until: Instant) -> Vec<(Instant, Output)> {
    let mut out = Vec::new();
    let mut rounds = 0;
    while let Some(t) = router.poll_timeout().filter(|&t| t <= until) {
        rounds += 1;
        assert!(
            rounds < 100_000,
            "poll_timeout keeps returning {t:?} without progress"
        );
        router.handle_timeout(t);
        out.extend(drain(router).into_iter().map(|o| (t, o)));
    }
    out
}
