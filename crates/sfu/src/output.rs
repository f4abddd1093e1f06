//! What the router asks the worker to send, and the bounded queue and buffer pool
//! behind `poll_output` / `recycle`.

use std::collections::VecDeque;

use crate::ids::ParticipantId;
use crate::stats::{RouterDrop, RouterStats};

/// Whether an output is RTP (SRTP-protect it) or RTCP (SRTCP-protect it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// A plaintext RTP packet.
    Rtp,
    /// A plaintext RTCP packet (compound or reduced-size).
    Rtcp,
}

/// One plaintext datagram for the worker to encrypt and send to `to`.
///
/// Hand `data` back with [`Router::recycle`](crate::Router::recycle) after sending, so the
/// steady state reuses buffers instead of allocating one per packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The participant whose session sends it.
    pub to: ParticipantId,
    /// RTP or RTCP.
    pub kind: OutputKind,
    /// The plaintext packet.
    pub data: Vec<u8>,
}

/// Something signalling should tell a participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterEvent {
    /// A video track is paused for (or resumed to) `subscriber`.
    VideoPaused {
        /// Who no longer receives it.
        subscriber: ParticipantId,
        /// Whose camera.
        publisher: ParticipantId,
        /// Stopped or flowing again.
        paused: bool,
        /// Why it stopped (or what no longer stops it).
        reason: PauseReason,
    },
    /// The dominant speaker of `room` changed.
    DominantSpeaker {
        /// The room.
        room: String,
        /// Who speaks now.
        participant: ParticipantId,
    },
}

/// Why a video track is paused for a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    /// Its bandwidth estimate cannot carry the track.
    Bandwidth,
    /// The room has more cameras than `last_n` and its publisher is not among the most
    /// recent speakers.
    LastN,
}

impl PauseReason {
    /// The reason as the signalling protocol names it.
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Bandwidth => "bandwidth",
            PauseReason::LastN => "last_n",
        }
    }
}

/// Capacity a fresh buffer is created with: one MTU-sized datagram.
const BUFFER_CAPACITY_BYTES: usize = 1500;

/// Recycled buffers larger than this are not pooled, so one jumbo packet cannot pin memory.
const MAX_POOLED_CAPACITY_BYTES: usize = 4096;

/// The output queue and the buffer pool; bounded both ways.
#[derive(Debug)]
pub(crate) struct Outbox {
    queue: VecDeque<Output>,
    pool: Vec<Vec<u8>>,
    max_queued: usize,
    max_pooled: usize,
}

impl Outbox {
    pub(crate) fn new(max_queued: usize, max_pooled: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            pool: Vec::new(),
            max_queued: max_queued.max(1),
            max_pooled,
        }
    }

    /// An empty buffer, reused from the pool when one is available.
    pub(crate) fn buffer(&mut self) -> Vec<u8> {
        self.pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_CAPACITY_BYTES))
    }

    pub(crate) fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.pool.len() < self.max_pooled && buf.capacity() <= MAX_POOLED_CAPACITY_BYTES {
            buf.clear();
            self.pool.push(buf);
        }
    }

    /// Queues an output; when full, the oldest output is dropped (and counted) first.
    pub(crate) fn push(
        &mut self,
        to: ParticipantId,
        kind: OutputKind,
        data: Vec<u8>,
        stats: &mut RouterStats,
    ) {
        while self.queue.len() >= self.max_queued {
            match self.queue.pop_front() {
                Some(old) => {
                    stats.dropped.add(RouterDrop::OutputQueueFull);
                    self.recycle(old.data);
                }
                None => break,
            }
        }
        self.queue.push_back(Output { to, kind, data });
    }

    pub(crate) fn pop(&mut self) -> Option<Output> {
        self.queue.pop_front()
    }

    /// Forgets queued outputs to a participant that left.
    pub(crate) fn purge(&mut self, to: ParticipantId) {
        let mut kept = VecDeque::with_capacity(self.queue.len());
        while let Some(o) = self.queue.pop_front() {
            if o.to == to {
                self.recycle(o.data);
            } else {
                kept.push_back(o);
            }
        }
        self.queue = kept;
    }

    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn pooled(&self) -> usize {
        self.pool.len()
    }
}
