//! Batched UDP receives: up to [`RECV_BATCH`] datagrams per `recvmmsg(2)` call, each with
//! the time the kernel queued it.
//!
//! A busy worker wakes up to a socket holding many datagrams; reading them one system call
//! at a time costs a kernel entry per packet. [`RecvBatch`] reads them all at once into
//! buffers allocated when the worker starts, so the receive path allocates nothing.
//!
//! The kernel stamps every datagram as it is queued (`SO_TIMESTAMPNS`, wall-clock time).
//! The stamps are converted to [`Instant`]s once per batch (one reading of each clock), so
//! the forwarding delay can be measured from the moment the packet reached the host, not
//! the moment the worker got round to it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    recvmmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage,
};
use nix::sys::time::TimeSpec;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams read in one `recvmmsg` call before timers and commands get a turn.
pub const RECV_BATCH: usize = 64;
/// Largest datagram we accept; a larger one is truncated by the kernel, then dropped.
pub const MAX_DATAGRAM_BYTES: usize = 2048;

/// What one [`RecvBatch::try_recv`] call read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecvOutcome {
    /// Datagrams now available from [`RecvBatch::datagrams`].
    pub received: usize,
    /// Datagrams larger than [`MAX_DATAGRAM_BYTES`], dropped.
    pub truncated: usize,
    /// Their sizes in bytes as read (at most [`MAX_DATAGRAM_BYTES`] each), for the
    /// received-bytes counter.
    pub truncated_bytes: usize,
}

/// Source, length and kernel receive time of one datagram of the batch.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Which of the batch's buffers holds it.
    buffer: usize,
    from: SocketAddr,
    len: usize,
    received_at: Instant,
}

/// Preallocated buffers and headers for reading [`RECV_BATCH`] datagrams per system call.
pub struct RecvBatch {
    headers: MultiHeaders<SockaddrStorage>,
    /// `RECV_BATCH` buffers of `MAX_DATAGRAM_BYTES`, back to back.
    buffers: Vec<u8>,
    slots: Vec<Slot>,
    /// Set when a datagram came without a timestamp: the kernel shrinks a header's
    /// control length to what it used, so the headers are rebuilt before the next call.
    rebuild_headers: bool,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("datagrams", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            headers: preallocate_headers(),
            buffers: vec![0; RECV_BATCH * MAX_DATAGRAM_BYTES],
            slots: Vec::with_capacity(RECV_BATCH),
            rebuild_headers: false,
        }
    }
}

fn preallocate_headers() -> MultiHeaders<SockaddrStorage> {
    MultiHeaders::preallocate(RECV_BATCH, Some(nix::cmsg_space!(TimeSpec)))
}

/// Asks the kernel to stamp every datagram queued on `socket` with its arrival time.
/// Without it datagrams are stamped when read, which hides the queueing delay.
pub fn enable_receive_timestamps(socket: &UdpSocket) -> io::Result<()> {
    setsockopt(socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)
}

impl RecvBatch {
    /// Reads what the socket holds (at most [`RECV_BATCH`] datagrams) without blocking.
    /// `WouldBlock` when there is nothing to read (tokio's readiness is cleared then).
    pub fn try_recv(&mut self, socket: &UdpSocket) -> io::Result<RecvOutcome> {
        if std::mem::take(&mut self.rebuild_headers) {
            self.headers = preallocate_headers();
        }
        self.slots.clear();
        let fd = socket.as_raw_fd();
        let Self {
            headers,
            buffers,
            slots,
            rebuild_headers,
        } = self;
        // On the stack: `recvmmsg` borrows the vectors for as long as they live, so a
        // reused heap vector could not be handed back.
        let mut chunks = buffers.chunks_exact_mut(MAX_DATAGRAM_BYTES);
        let mut vectors: [[io::IoSliceMut<'_>; 1]; RECV_BATCH] =
            std::array::from_fn(|_| [io::IoSliceMut::new(chunks.next().unwrap_or(&mut []))]);
        let result = socket.try_io(Interest::READABLE, || {
            let results = recvmmsg(
                fd,
                headers,
                vectors.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(io::Error::from)?;
            let clocks = Clocks::read();
            let mut outcome = RecvOutcome::default();
            for (buffer, message) in results.enumerate() {
                if message.flags.contains(MsgFlags::MSG_TRUNC) {
                    outcome.truncated += 1;
                    outcome.truncated_bytes += message.bytes.min(MAX_DATAGRAM_BYTES);
                    continue;
                }
                let Some(from) = message.address.as_ref().and_then(socket_addr) else {
                    continue;
                };
                let stamp = message.cmsgs().ok().and_then(|mut cmsgs| {
                    cmsgs.find_map(|cmsg| match cmsg {
                        ControlMessageOwned::ScmTimestampns(stamp) => Some(stamp),
                        _ => None,
                    })
                });
                let received_at = match stamp {
                    Some(stamp) => clocks.instant_of(timespec_duration(stamp)),
                    None => {
                        *rebuild_headers = true;
                        clocks.instant
                    }
                };
                slots.push(Slot {
                    buffer,
                    from,
                    len: message.bytes.min(MAX_DATAGRAM_BYTES),
                    received_at,
                });
            }
            outcome.received = slots.len();
            Ok(outcome)
        });
        result
    }

    /// The datagrams of the last [`RecvBatch::try_recv`]: source, bytes and the time the
    /// kernel queued them (never later than the call's return).
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8], Instant)> + '_ {
        self.slots.iter().map(|slot| {
            let start = slot.buffer * MAX_DATAGRAM_BYTES;
            let data = self.buffers.get(start..start + slot.len).unwrap_or(&[]);
            (slot.from, data, slot.received_at)
        })
    }
}

/// One reading of the wall clock and the monotonic clock, to convert kernel timestamps
/// (wall-clock) into [`Instant`]s.
#[derive(Debug, Clone, Copy)]
pub struct Clocks {
    /// Monotonic time of the reading.
    pub instant: Instant,
    /// Wall-clock time of the reading, since the Unix epoch.
    pub since_epoch: Duration,
}

impl Clocks {
    /// Reads both clocks now.
    pub fn read() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self {
            instant: Instant::now(),
            since_epoch,
        }
    }

    /// The [`Instant`] of a wall-clock `stamp`: as long before `self.instant` as the stamp
    /// is before `self.since_epoch`. A stamp in the future (the wall clock was stepped)
    /// maps to `self.instant`, so a receive time is never later than its reading.
    pub fn instant_of(&self, stamp: Duration) -> Instant {
        let age = self.since_epoch.saturating_sub(stamp);
        self.instant.checked_sub(age).unwrap_or(self.instant)
    }
}

fn timespec_duration(stamp: TimeSpec) -> Duration {
    let seconds = u64::try_from(stamp.tv_sec()).unwrap_or(0);
    let nanos = u32::try_from(stamp.tv_nsec()).unwrap_or(0);
    Duration::new(seconds, nanos.min(999_999_999))
}

fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    address.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_in_the_past_maps_to_an_earlier_instant() {
        let clocks = Clocks::read();
        let stamp = clocks.since_epoch - Duration::from_millis(3);
        assert_eq!(
            clocks.instant.duration_since(clocks.instant_of(stamp)),
            Duration::from_millis(3)
        );
    }

    #[test]
    fn a_stamp_in_the_future_maps_to_the_reading() {
        let clocks = Clocks::read();
        let stamp = clocks.since_epoch + Duration::from_secs(5);
        assert_eq!(clocks.instant_of(stamp), clocks.instant);
    }

    async fn pair() -> (UdpSocket, UdpSocket) {
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        (receiver, sender)
    }

    #[tokio::test]
    async fn one_batch_reads_every_queued_datagram_with_source_length_and_time() {
        let (receiver, sender) = pair().await;
        enable_receive_timestamps(&receiver).unwrap();
        let to = receiver.local_addr().unwrap();
        let before = Instant::now();
        for n in 0..20u8 {
            sender
                .send_to(&vec![n; 100 + usize::from(n)], to)
                .await
                .unwrap();
        }
        receiver.readable().await.unwrap();
        let mut batch = RecvBatch::default();
        let outcome = batch.try_recv(&receiver).unwrap();
        let after = Instant::now();
        assert_eq!(outcome.received, 20);
        assert_eq!(outcome.truncated, 0);
        for (n, (from, data, received_at)) in (0u8..).zip(batch.datagrams()) {
            assert_eq!(from, sender.local_addr().unwrap());
            assert_eq!(data, vec![n; 100 + usize::from(n)].as_slice());
            assert!(received_at <= after, "not in the future");
            // the wall clock and the monotonic clock may drift apart a little
            assert!(received_at + Duration::from_millis(1000) >= before);
        }
        assert_eq!(
            batch.try_recv(&receiver).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[tokio::test]
    async fn the_kernel_stamp_precedes_a_late_read() {
        let (receiver, sender) = pair().await;
        enable_receive_timestamps(&receiver).unwrap();
        // Linux turns queue-time stamping on through deferred work after the first socket
        // asks for it; a datagram queued before that is stamped when it is read. So the
        // measurement is repeated until one datagram was queued with stamping on, and the
        // test fails only if none ever was (stamps missing or taken at read time).
        for _attempt in 0..50 {
            if let Some(waited) = one_late_read(&receiver, &sender).await {
                if waited >= Duration::from_millis(10) {
                    return;
                }
            }
        }
        panic!("no datagram carried a stamp earlier than its read");
    }

    /// Sends one datagram, lets it wait 20 ms in the socket (the delay being measured, not
    /// synchronisation), reads it and returns how long before the read its stamp lies, or
    /// `None` when the wall clock was stepped meanwhile (the conversion is then off by the
    /// step and nothing was measured).
    async fn one_late_read(receiver: &UdpSocket, sender: &UdpSocket) -> Option<Duration> {
        sender
            .send_to(b"late", receiver.local_addr().unwrap())
            .await
            .unwrap();
        receiver.readable().await.unwrap();
        let before = Clocks::read();
        std::thread::sleep(Duration::from_millis(20));
        let read_after = Instant::now();
        let mut batch = RecvBatch::default();
        assert_eq!(batch.try_recv(receiver).unwrap().received, 1);
        let (_, _, received_at) = batch.datagrams().next().unwrap();
        let after = Clocks::read();
        let wall_elapsed = after.since_epoch.as_secs_f64() - before.since_epoch.as_secs_f64();
        let mono_elapsed = after.instant.duration_since(before.instant).as_secs_f64();
        if (wall_elapsed - mono_elapsed).abs() > 0.005 {
            return None;
        }
        Some(read_after.duration_since(received_at))
    }

    #[tokio::test]
    async fn an_oversized_datagram_is_dropped_and_counted() {
        let (receiver, sender) = pair().await;
        let to = receiver.local_addr().unwrap();
        sender
            .send_to(&[7; MAX_DATAGRAM_BYTES + 1], to)
            .await
            .unwrap();
        sender.send_to(&[8; 10], to).await.unwrap();
        receiver.readable().await.unwrap();
        let mut batch = RecvBatch::default();
        let outcome = batch.try_recv(&receiver).unwrap();
        assert_eq!(outcome.truncated, 1);
        assert_eq!(outcome.received, 1);
        assert_eq!(batch.datagrams().next().unwrap().1, &[8; 10]);
    }
}
