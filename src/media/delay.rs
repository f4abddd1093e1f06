//! Sampling of the forwarding delay: kernel receive time of an RTP packet to the return
//! of the send call that carried its forwarded copies.
//!
//! The worker reads a batch, feeds it to the core, then flushes everything the core
//! queued: every copy made from a batch leaves in the flush that follows it. So the worker
//! only needs the receive times of the packets that were forwarded, and the time the
//! flush ended. Observing a shared histogram takes a lock, so only one forwarded packet in
//! [`SAMPLE_EVERY`] is kept; the rest cost one counter increment.

use std::time::{Duration, Instant};

use crate::media::recv::RECV_BATCH;

/// One forwarded packet in this many is observed.
pub const SAMPLE_EVERY: u32 = 16;

/// Receive times of sampled forwarded packets, waiting for their flush.
#[derive(Debug)]
pub struct DelaySampler {
    every: u32,
    seen: u32,
    pending: Vec<Instant>,
}

impl Default for DelaySampler {
    fn default() -> Self {
        Self::new(SAMPLE_EVERY)
    }
}

impl DelaySampler {
    /// Keeps one forwarded packet in `every` (at least 1).
    pub fn new(every: u32) -> Self {
        Self {
            every: every.max(1),
            seen: 0,
            pending: Vec::with_capacity(RECV_BATCH),
        }
    }

    /// Notes a packet received at `received_at` whose copies are queued for sending.
    /// At most [`RECV_BATCH`] samples wait; more are not kept (a flush always follows a
    /// batch, so this bound is only reached if flushes stop).
    pub fn forwarded(&mut self, received_at: Instant) {
        self.seen = self.seen.wrapping_add(1);
        if self.seen % self.every == 0 && self.pending.len() < RECV_BATCH {
            self.pending.push(received_at);
        }
    }

    /// Reports the delay of every waiting sample, the flush having ended at `sent_at`.
    pub fn flushed(&mut self, sent_at: Instant, mut observe: impl FnMut(Duration)) {
        for received_at in self.pending.drain(..) {
            observe(sent_at.saturating_duration_since(received_at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(sampler: &mut DelaySampler, sent_at: Instant) -> Vec<Duration> {
        let mut delays = Vec::new();
        sampler.flushed(sent_at, |delay| delays.push(delay));
        delays
    }

    #[test]
    fn one_forwarded_packet_in_every_is_observed() {
        let t0 = Instant::now();
        let mut sampler = DelaySampler::new(4);
        for n in 0..10u64 {
            sampler.forwarded(t0 + Duration::from_micros(n));
        }
        let sent_at = t0 + Duration::from_micros(100);
        // the 4th and 8th packets (received at 3 us and 7 us)
        assert_eq!(
            drain(&mut sampler, sent_at),
            vec![Duration::from_micros(97), Duration::from_micros(93)]
        );
        assert!(drain(&mut sampler, sent_at).is_empty(), "observed once");
    }

    #[test]
    fn the_count_carries_over_between_batches() {
        let t0 = Instant::now();
        let mut sampler = DelaySampler::new(3);
        sampler.forwarded(t0);
        sampler.forwarded(t0);
        assert!(drain(&mut sampler, t0).is_empty());
        sampler.forwarded(t0);
        assert_eq!(drain(&mut sampler, t0).len(), 1);
    }

    #[test]
    fn waiting_samples_are_bounded() {
        let t0 = Instant::now();
        let mut sampler = DelaySampler::new(1);
        for _ in 0..10 * RECV_BATCH {
            sampler.forwarded(t0);
        }
        assert_eq!(drain(&mut sampler, t0).len(), RECV_BATCH);
    }

    #[test]
    fn a_send_time_before_the_receive_time_is_a_zero_delay() {
        let t0 = Instant::now();
        let mut sampler = DelaySampler::new(1);
        sampler.forwarded(t0 + Duration::from_millis(1));
        assert_eq!(drain(&mut sampler, t0), vec![Duration::ZERO]);
    }
}
