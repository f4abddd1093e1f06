//! Batched UDP receive: up to [`RECV_BATCH`] datagrams per `recvmmsg(2)` call.
//!
//! A load generator runs hundreds of clients on one core; with one `recv_from` (and one
//! wake-up of the client's task) per datagram it spends its core in system calls and
//! scheduling long before the server is saturated. Each client instead drains its
//! socket in batches once tokio reports it readable.
//!
//! The buffers and `recvmmsg` headers are per thread, not per client: a client handles
//! its batch synchronously before the next await, so one scratch area per runtime
//! thread serves every client on it, costs no memory per client and no allocation per
//! packet. (nix's headers hold raw pointers, so they could not live in a task that
//! moves between threads anyway.)

use std::cell::RefCell;
use std::io;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams received per `recvmmsg` call.
pub const RECV_BATCH: usize = 32;
/// Largest datagram kept whole; longer ones are truncated by the kernel and dropped.
pub const MAX_RECV_DATAGRAM_BYTES: usize = 2048;

struct Scratch {
    headers: MultiHeaders<SockaddrStorage>,
    buffers: Box<[[u8; MAX_RECV_DATAGRAM_BYTES]; RECV_BATCH]>,
    /// (length, source, truncated) of each datagram of the last batch.
    received: Vec<(usize, Option<SocketAddr>, bool)>,
}

impl Scratch {
    fn new() -> Self {
        Self {
            headers: MultiHeaders::preallocate(RECV_BATCH, None),
            buffers: Box::new([[0; MAX_RECV_DATAGRAM_BYTES]; RECV_BATCH]),
            received: Vec::with_capacity(RECV_BATCH),
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::from(std::net::SocketAddrV4::from(*v4)));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
}

/// Receives one batch without blocking and hands each datagram to `handle` (source,
/// bytes). Returns how many datagrams arrived; `Err(WouldBlock)` when none were
/// waiting, which also clears tokio's readiness so that the next `readable().await`
/// waits. Truncated datagrams and datagrams without an IP source are skipped (still
/// counted in the returned number).
pub fn recv_batch(
    socket: &UdpSocket,
    mut handle: impl FnMut(SocketAddr, &[u8]),
) -> io::Result<usize> {
    SCRATCH.with(|scratch| {
        let Ok(mut scratch) = scratch.try_borrow_mut() else {
            return Err(io::Error::other("receive scratch re-entered"));
        };
        let Scratch {
            headers,
            buffers,
            received,
        } = &mut *scratch;
        received.clear();
        let fd = socket.as_raw_fd();
        socket.try_io(Interest::READABLE, || {
            let mut iovs = buffers.each_mut().map(|b| [IoSliceMut::new(b)]);
            let results = recvmmsg(fd, headers, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None)
                .map_err(io::Error::from)?;
            for message in results {
                let truncated = message.flags.contains(MsgFlags::MSG_TRUNC);
                let from = message.address.as_ref().and_then(socket_addr);
                received.push((message.bytes, from, truncated));
            }
            Ok(())
        })?;
        let count = received.len();
        for ((len, from, truncated), buffer) in received.iter().zip(buffers.iter()) {
            let (Some(from), false) = (*from, *truncated) else {
                continue;
            };
            if let Some(datagram) = buffer.get(..*len) {
                handle(from, datagram);
            }
        }
        Ok(count)
    })
}
