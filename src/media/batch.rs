//! Batched UDP sends: many datagrams to many destinations in one `sendmmsg(2)` call.
//!
//! An SFU sends each incoming packet to every subscriber, so most datagrams of a batch go
//! to different addresses: GSO (one destination, equal sizes) rarely applies, but
//! `sendmmsg` saves one system call per datagram. The batch owns no packet memory: it
//! borrows the queued datagrams for the duration of one call.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams handed to the kernel in one `sendmmsg` call.
pub const SEND_BATCH: usize = 64;

/// Reusable headers for `sendmmsg`, sized for [`SEND_BATCH`] datagrams.
pub struct SendBatch {
    headers: MultiHeaders<SockaddrStorage>,
    addresses: Vec<Option<SockaddrStorage>>,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch").finish_non_exhaustive()
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        Self {
            headers: MultiHeaders::preallocate(SEND_BATCH, None),
            addresses: Vec::with_capacity(SEND_BATCH),
        }
    }
}

impl SendBatch {
    /// Sends the first datagrams of `queue` (at most [`SEND_BATCH`]) without blocking.
    /// Returns how many the kernel took (at least one), or the error of the first one;
    /// `WouldBlock` when the socket buffer is full.
    pub fn try_send(
        &mut self,
        socket: &UdpSocket,
        queue: &[(SocketAddr, Vec<u8>)],
    ) -> io::Result<usize> {
        let batch = queue.get(..queue.len().min(SEND_BATCH)).unwrap_or(&[]);
        if batch.is_empty() {
            return Ok(0);
        }
        self.addresses.clear();
        self.addresses
            .extend(batch.iter().map(|(to, _)| Some(SockaddrStorage::from(*to))));
        let slices: Vec<[io::IoSlice<'_>; 1]> = batch
            .iter()
            .map(|(_, data)| [io::IoSlice::new(data)])
            .collect();
        let fd = socket.as_raw_fd();
        let headers = &mut self.headers;
        let addresses = &self.addresses;
        socket.try_io(Interest::WRITABLE, || {
            let no_control: [ControlMessage<'_>; 0] = [];
            sendmmsg(
                fd,
                headers,
                &slices,
                addresses,
                no_control,
                MsgFlags::empty(),
            )
            .map(Iterator::count)
            .map_err(io::Error::from)
        })
    }
}
