//! Shared helpers for the interop tests: drive a sluice-dtls [`Connection`] over a real
//! UDP socket on 127.0.0.1 in a background thread, exactly as the crate docs teach.
//!
//! Each test binary includes this module with `mod common;` and uses a subset of it.
#![allow(dead_code)]

pub mod process;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_dtls::{Connected, Connection, Error, Event};

/// The longest we block in `recv_from` before re-checking the stop flag: bounds how long
/// dropping a [`UdpPeer`] takes.
const MAX_RECV_WAIT: Duration = Duration::from_millis(20);

/// Why our side did not produce a [`Connected`].
#[derive(Debug)]
pub enum PeerFailure {
    /// The engine reported a failure.
    Engine(Error),
    /// The peer closed before completion.
    Closed,
    /// The socket failed.
    Io(std::io::Error),
    /// Neither completion nor failure within the wait.
    TimedOut(Duration),
    /// The driver ended (run deadline) without an outcome.
    NoOutcome,
}

/// Our side of an interop test: a [`Connection`] driven over a UDP socket by a thread.
/// The thread keeps answering after completion (so a peer that lost our final flight can
/// finish) until the handle is dropped or its run deadline passes.
pub struct UdpPeer {
    local_addr: SocketAddr,
    outcome: mpsc::Receiver<Result<Box<Connected>, PeerFailure>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpPeer {
    /// Binds 127.0.0.1:0 and starts driving `conn`. With `peer: None` (server role) the
    /// peer is learnt from the first datagram; afterwards only that address is heard.
    pub fn spawn(conn: Connection, peer: Option<SocketAddr>, run_for: Duration) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        Self::spawn_on(socket, conn, peer, run_for)
    }

    /// Like [`UdpPeer::spawn`] on an already bound socket.
    pub fn spawn_on(
        socket: UdpSocket,
        conn: Connection,
        peer: Option<SocketAddr>,
        run_for: Duration,
    ) -> Self {
        let local_addr = socket.local_addr().expect("local_addr");
        let (tx, outcome) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::spawn(move || {
            drive(
                socket,
                conn,
                peer,
                Instant::now() + run_for,
                &thread_stop,
                &tx,
            )
        });
        Self {
            local_addr,
            outcome,
            stop,
            thread: Some(thread),
        }
    }

    /// The address our socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits (bounded) for our connection to complete or fail.
    pub fn wait(&self, timeout: Duration) -> Result<Box<Connected>, PeerFailure> {
        match self.outcome.recv_timeout(timeout) {
            Ok(outcome) => outcome,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(PeerFailure::TimedOut(timeout)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(PeerFailure::NoOutcome),
        }
    }
}

impl Drop for UdpPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The run loop of the crate docs over a blocking socket whose read timeout is the
/// connection's next timer (capped so that `stop` is noticed).
fn drive(
    socket: UdpSocket,
    mut conn: Connection,
    mut peer: Option<SocketAddr>,
    run_deadline: Instant,
    stop: &AtomicBool,
    outcome: &mpsc::Sender<Result<Box<Connected>, PeerFailure>>,
) {
    let mut buf = vec![0u8; 65_536];
    let mut reported = false;
    let mut report = |result: Result<Box<Connected>, PeerFailure>| {
        if !reported {
            reported = true;
            let _ = outcome.send(result);
        }
    };
    while !stop.load(Ordering::Relaxed) && Instant::now() < run_deadline {
        while let Some(datagram) = conn.poll_transmit() {
            if let Some(to) = peer {
                if let Err(e) = socket.send_to(&datagram, to) {
                    report(Err(PeerFailure::Io(e)));
                    return;
                }
            }
        }
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Connected(c) => report(Ok(c)),
                Event::Failed(e) => report(Err(PeerFailure::Engine(e))),
                Event::Closed => report(Err(PeerFailure::Closed)),
            }
        }
        if conn.is_finished() {
            return;
        }
        let now = Instant::now();
        let wake = conn
            .poll_timeout()
            .unwrap_or(run_deadline)
            .min(run_deadline);
        let wait = wake
            .saturating_duration_since(now)
            .clamp(Duration::from_millis(1), MAX_RECV_WAIT);
        if let Err(e) = socket.set_read_timeout(Some(wait)) {
            report(Err(PeerFailure::Io(e)));
            return;
        }
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                if peer.is_none() {
                    peer = Some(from);
                }
                if peer == Some(from) {
                    conn.handle_datagram(Instant::now(), buf.get(..len).unwrap_or_default());
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // ICMP port unreachable surfaces as ConnectionRefused on Linux when the peer
            // is not listening yet; our retransmission timer covers that.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => {
                report(Err(PeerFailure::Io(e)));
                return;
            }
        }
        let now = Instant::now();
        if conn.poll_timeout().is_some_and(|t| now >= t) {
            conn.handle_timeout(now);
        }
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago (for a child process to bind).
pub fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    socket.local_addr().expect("local_addr").port()
}

/// Lower-case or upper-case hex to bytes; `None` if malformed.
pub fn hex_decode(hex: &str) -> Option<Vec<u8>> {
    let hex = hex.trim();
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}
