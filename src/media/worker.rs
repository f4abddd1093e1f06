//! A media worker thread: one UDP socket, one [`WorkerCore`], one loop.
//!
//! The loop waits for whichever comes first: a datagram, a command from signalling,
//! or the earliest timer any state machine asked for (so every timer is honoured
//! whether or not data arrives). It runs on a tokio current-thread runtime of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::media::command::Command;
use crate::media::core::WorkerCore;
use crate::metrics::{DropReason, Metrics};

/// Largest datagram we read; anything larger is truncated and fails to parse.
const MAX_DATAGRAM_BYTES: usize = 2048;
/// Datagrams read in one go before timers and commands get a turn.
const RECV_BATCH: usize = 64;
/// How often the busy ratio gauge is refreshed.
const BUSY_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Runs worker `index` until its command channel closes.
pub(crate) async fn run(
    index: usize,
    socket: UdpSocket,
    mut core: WorkerCore,
    mut commands: mpsc::Receiver<Command>,
    metrics: Arc<Metrics>,
) {
    let local = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let span = tracing::info_span!("worker", worker = index, %local);
    let _enter = span.enter();
    tracing::debug!("media worker running");
    let mut buf = vec![0u8; MAX_DATAGRAM_BYTES];
    let mut busy = Duration::ZERO;
    let mut window_start = Instant::now();
    loop {
        let now = Instant::now();
        if core.poll_timeout().is_some_and(|t| t <= now) {
            core.handle_timeout(now);
        }
        flush(&socket, &mut core, &metrics).await;
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
            received = socket.recv_from(&mut buf) => {
                let started = Instant::now();
                match received {
                    Ok((len, from)) => {
                        core.handle_datagram(started, local, from, buf.get(..len).unwrap_or(&[]));
                        for _ in 1..RECV_BATCH {
                            match socket.try_recv_from(&mut buf) {
                                Ok((len, from)) => core.handle_datagram(
                                    Instant::now(), local, from, buf.get(..len).unwrap_or(&[])),
                                Err(_) => break,
                            }
                        }
                    }
                    Err(error) => tracing::debug!(%error, "recv_from failed"),
                }
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

async fn flush(socket: &UdpSocket, core: &mut WorkerCore, metrics: &Metrics) {
    while let Some((destination, data)) = core.poll_transmit() {
        match socket.send_to(&data, destination).await {
            Ok(_) => metrics.packet_sent(data.len()),
            Err(error) => {
                tracing::trace!(%error, %destination, "send_to failed");
                metrics.packet_dropped(DropReason::QueueFull);
            }
        }
    }
}
