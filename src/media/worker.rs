//! A media worker thread: one UDP socket, one [`WorkerCore`], one loop.
//!
//! The loop waits for whichever comes first: a datagram, a command from signalling,
//! or the earliest timer any state machine asked for (so every timer is honoured
//! whether or not data arrives). It runs on a tokio current-thread runtime of its own.
//!
//! Datagrams come in by `recvmmsg` batches ([`RecvBatch`], with kernel receive times)
//! and go out by `sendmmsg`, runs to one destination as GSO datagrams ([`SendBatch`]).
//! Everything the core queued while handling a batch leaves in the flush that follows
//! it, so the forwarding delay of a packet ends when that flush does ([`DelaySampler`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::media::batch::{SendBatch, SEND_BATCH};
use crate::media::command::Command;
use crate::media::core::WorkerCore;
use crate::media::delay::DelaySampler;
use crate::media::recv::{self, RecvBatch};
use crate::media::relay::RelayBatch;
use crate::metrics::{DropReason, Metrics, RelayPath};

/// Kernel socket buffer asked for in each direction (capped by net.core.[rw]mem_max):
/// the default 208 KiB holds a few milliseconds of a busy worker's traffic, so a burst
/// (a keyframe fanned out to a large room) or a slow reader would otherwise mean drops.
const SOCKET_BUFFER_BYTES: usize = 4 << 20;
/// Datagrams taken from the core per send plan: more than one system call's worth, so
/// that a destination's packets of one flush can be grouped into GSO runs.
const FLUSH_DATAGRAMS: usize = 8 * SEND_BATCH;
/// How often the busy ratio gauge is refreshed.
const BUSY_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// The channels between the workers of one process, for rooms that span workers.
pub(crate) struct RelayChannels {
    /// What the other workers send this one.
    pub(crate) inbox: mpsc::Receiver<RelayBatch>,
    /// Every worker's inbox, by worker index.
    pub(crate) outboxes: Vec<mpsc::Sender<RelayBatch>>,
    /// The relay between nodes, for the indices beyond this node's workers.
    pub(crate) remote: mpsc::Sender<(usize, RelayBatch)>,
}

/// Runs worker `index` until its command channel closes.
pub(crate) async fn run(
    index: usize,
    socket: UdpSocket,
    mut core: WorkerCore,
    mut commands: mpsc::Receiver<Command>,
    mut relay: RelayChannels,
    metrics: Arc<Metrics>,
) {
    let local = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let span = tracing::info_span!("worker", worker = index, %local);
    let _enter = span.enter();
    tracing::debug!("media worker running");
    enlarge_buffers(&socket);
    if let Err(error) = recv::enable_receive_timestamps(&socket) {
        tracing::debug!(%error, "no kernel receive timestamps");
    }
    let mut received = RecvBatch::default();
    let mut delays = DelaySampler::default();
    let mut batch = SendBatch::new(&socket);
    let mut queue = Vec::with_capacity(FLUSH_DATAGRAMS);
    let mut busy = Duration::ZERO;
    let mut window_start = Instant::now();
    loop {
        let now = Instant::now();
        if core.poll_timeout().is_some_and(|t| t <= now) {
            core.handle_timeout(now);
        }
        flush(&socket, &mut core, &metrics, &mut batch, &mut queue).await;
        flush_relay(&mut core, &relay, &metrics);
        delays.flushed(Instant::now(), |delay| metrics.forward_delay(delay));
        busy += now.elapsed();
        if window_start.elapsed() >= BUSY_REPORT_INTERVAL {
            let ratio = busy.as_secs_f64() / window_start.elapsed().as_secs_f64();
            metrics.set_worker_busy_ratio(index, ratio.min(1.0));
            busy = Duration::ZERO;
            window_start = Instant::now();
        }

        let deadline = core
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + BUSY_REPORT_INTERVAL);
        tokio::select! {
            readable = socket.readable() => {
                let started = Instant::now();
                match readable.and_then(|()| received.try_recv(&socket)) {
                    Ok(outcome) => {
                        for _ in 0..outcome.truncated {
                            metrics.packet_dropped(DropReason::Malformed);
                        }
                        if outcome.truncated > 0 {
                            metrics.packets_received(outcome.truncated as u64, outcome.truncated_bytes);
                        }
                        for (from, datagram, received_at) in received.datagrams() {
                            if core.handle_datagram(started, local, from, datagram) > 0 {
                                delays.forwarded(received_at);
                            }
                        }
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(error) => tracing::debug!(%error, "recvmmsg failed"),
                }
                busy += started.elapsed();
            }
            Some(relayed) = relay.inbox.recv() => {
                let started = Instant::now();
                core.handle_relay(started, relayed);
                busy += started.elapsed();
            }
            command = commands.recv() => {
                let started = Instant::now();
                match command {
                    Some(command) => core.handle_command(started, command),
                    None => break,
                }
                busy += started.elapsed();
            }
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
    tracing::debug!("media worker stopped");
}

/// Sends everything the core queued, up to [`FLUSH_DATAGRAMS`] datagrams per plan
/// (grouped by destination for GSO, [`SEND_BATCH`] messages per system call).
async fn flush(
    socket: &UdpSocket,
    core: &mut WorkerCore,
    metrics: &Metrics,
    batch: &mut SendBatch,
    queue: &mut Vec<(SocketAddr, Vec<u8>)>,
) {
    loop {
        queue.clear();
        while queue.len() < FLUSH_DATAGRAMS {
            match core.poll_transmit() {
                Some(transmit) => queue.push(transmit),
                None => break,
            }
        }
        if queue.is_empty() {
            return;
        }
        batch.send_all(socket, queue, metrics).await;
    }
}

/// Hands each other worker what the core queued for it, one batch per worker; a full
/// inbox drops the batch (counted), as a full socket buffer would.
fn flush_relay(core: &mut WorkerCore, relay: &RelayChannels, metrics: &Metrics) {
    while let Some((worker, batch)) = core.poll_relay() {
        let count = batch.messages.len() as u64;
        let sent = match relay.outboxes.get(worker) {
            Some(outbox) => outbox.try_send(batch).is_ok(),
            None => relay.remote.try_send((worker, batch)).is_ok(),
        };
        if !sent {
            metrics.relay_packets(RelayPath::DroppedQueueFull, count);
        }
    }
}

/// Asks for [`SOCKET_BUFFER_BYTES`] of send and receive buffer; failure only costs
/// burst tolerance, so it is logged and ignored.
fn enlarge_buffers(socket: &UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    for result in [
        setsockopt(socket, sockopt::RcvBuf, &SOCKET_BUFFER_BYTES),
        setsockopt(socket, sockopt::SndBuf, &SOCKET_BUFFER_BYTES),
    ] {
        if let Err(error) = result {
            tracing::debug!(%error, "cannot enlarge the socket buffer");
        }
    }
}
