//! Batched UDP sends: many datagrams in one `sendmmsg(2)` call, and runs of datagrams to
//! one destination in one GSO datagram (`UDP_SEGMENT`).
//!
//! An SFU sends each incoming packet to every subscriber, so most datagrams of a flush go
//! to different addresses: `sendmmsg` saves one system call per datagram. A subscriber of
//! several publishers (or of a keyframe) also gets runs of equal-sized packets; with
//! generic segmentation offload such a run crosses the kernel's UDP stack once and is cut
//! into datagrams at the end, saving most of the per-packet kernel cost.
//!
//! Each flush is planned by [`Plan::build`] (a pure function, unit-tested): datagrams are
//! grouped by destination (order per destination kept), runs become GSO messages, and
//! messages with the same segment size share a system call. Support is probed once per
//! socket; a kernel or path that refuses GSO gets plain `sendmmsg` from then on.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{
    getsockopt, sendmmsg, sockopt, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::metrics::{DropReason, Metrics};

/// Messages handed to the kernel in one `sendmmsg` call.
pub const SEND_BATCH: usize = 64;
/// Most datagrams in one GSO message (the kernel's limit was 64 before Linux 5.x).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO message (a UDP datagram carries at most 65,507).
pub const MAX_GSO_BYTES: usize = 65_000;
/// Largest segment sent with GSO: a segment must fit the path MTU unfragmented, and 1452
/// bytes fit a 1500-byte Ethernet MTU under IPv6 and IPv4 headers. WebRTC packets are
/// smaller (about 1200 bytes); a larger datagram is sent on its own.
pub const MAX_GSO_SEGMENT_BYTES: usize = 1452;

/// How runs are formed; `None` in [`Plan::build`] means no GSO at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GsoLimits {
    /// Most datagrams per GSO message.
    pub max_segments: usize,
    /// Most payload bytes per GSO message.
    pub max_bytes: usize,
    /// Largest segment size.
    pub max_segment_bytes: usize,
}

impl Default for GsoLimits {
    fn default() -> Self {
        Self {
            max_segments: MAX_GSO_SEGMENTS,
            max_bytes: MAX_GSO_BYTES,
            max_segment_bytes: MAX_GSO_SEGMENT_BYTES,
        }
    }
}

/// One message for the kernel: `segments` datagrams to one destination, at positions
/// `start..start + segments` of [`Plan::order`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    /// First position in the plan's order.
    pub start: usize,
    /// How many datagrams it carries.
    pub segments: usize,
    /// GSO segment size in bytes (every datagram but the last has this length); 0 for a
    /// plain datagram.
    pub segment_bytes: u16,
}

/// The send plan of one flush: an order of the queued datagrams and the messages that
/// carry them. Reused from flush to flush (no allocation once warm).
#[derive(Debug, Default)]
pub struct Plan {
    /// (destination, queue index, length in bytes), grouped by destination, queue order
    /// within each.
    order: Vec<(SocketAddr, usize, usize)>,
    /// (round, message): the round is the message's rank among its destination's
    /// messages, so sorting by it keeps each destination's order.
    messages: Vec<(usize, Message)>,
}

impl Plan {
    /// Plans the sending of `queue`. Without `gso`, every datagram is a plain message,
    /// in queue order. With it, each destination's datagrams stay in queue order, runs of
    /// equal length (the last may be shorter) become one GSO message within `gso`'s
    /// limits, and messages are ordered so that equal segment sizes are adjacent.
    pub fn build(&mut self, queue: &[(SocketAddr, Vec<u8>)], gso: Option<GsoLimits>) {
        self.order.clear();
        self.messages.clear();
        self.order.extend(
            queue
                .iter()
                .enumerate()
                .map(|(index, (destination, data))| (*destination, index, data.len())),
        );
        let Some(limits) = gso else {
            self.messages
                .extend((0..self.order.len()).map(|start| (0, Message::plain(start))));
            return;
        };
        // (destination, index) pairs are unique: an unstable sort is deterministic and
        // keeps queue order within a destination, without a scratch allocation.
        self.order.sort_unstable();
        let length_at =
            |position: usize| self.order.get(position).map_or(0, |(_, _, length)| *length);
        let mut position = 0;
        let mut round = 0;
        let mut previous: Option<SocketAddr> = None;
        while let Some(&(destination, _, _)) = self.order.get(position) {
            round = if previous == Some(destination) {
                round + 1
            } else {
                0
            };
            previous = Some(destination);
            let segment = length_at(position);
            let mut segments = 1;
            let mut bytes = segment;
            if segment > 0 && segment <= limits.max_segment_bytes {
                while let Some(&(next, _, _)) = self.order.get(position + segments) {
                    let length = length_at(position + segments);
                    if next != destination
                        || segments >= limits.max_segments
                        || length == 0
                        || length > segment
                        || bytes + length > limits.max_bytes
                    {
                        break;
                    }
                    segments += 1;
                    bytes += length;
                    if length < segment {
                        break;
                    }
                }
            }
            let message = match u16::try_from(segment) {
                Ok(segment_bytes) if segments > 1 => Message {
                    start: position,
                    segments,
                    segment_bytes,
                },
                _ => Message::plain(position),
            };
            self.messages.push((round, message));
            position += message.segments;
        }
        // Within a round each destination has one message, so any order is fine: largest
        // first, GSO before plain at equal size, lets a GSO call carry the plain messages
        // that follow it (see `call_at`).
        let order = &self.order;
        self.messages.sort_unstable_by_key(|(round, message)| {
            let size = match message.segment_bytes {
                0 => order.get(message.start).map_or(0, |(_, _, length)| *length),
                segment => usize::from(segment),
            };
            (
                *round,
                std::cmp::Reverse(size),
                message.segment_bytes == 0,
                message.start,
            )
        });
    }

    /// The messages that one `sendmmsg` call starting at `first` carries: at most
    /// [`SEND_BATCH`]; returns their count and the call's GSO segment size (0: none).
    /// One control message applies to every message of a call, so a GSO call takes the
    /// GSO messages of its segment size and the plain datagrams no longer than it (the
    /// kernel sends a datagram no longer than the segment size unsegmented); a plain
    /// call takes plain datagrams only.
    pub fn call_at(&self, first: usize) -> (usize, u16) {
        let Some((_, head)) = self.messages.get(first) else {
            return (0, 0);
        };
        let segment_bytes = head.segment_bytes;
        let count = self
            .messages()
            .skip(first)
            .take(SEND_BATCH)
            .take_while(|message| match (segment_bytes, message.segment_bytes) {
                (0, other) => other == 0,
                (segment, 0) => self
                    .order
                    .get(message.start)
                    .is_some_and(|(_, _, length)| *length <= usize::from(segment)),
                (segment, other) => other == segment,
            })
            .count();
        (count, segment_bytes)
    }

    /// The messages, in sending order.
    pub fn messages(&self) -> impl Iterator<Item = Message> + '_ {
        self.messages.iter().map(|(_, message)| *message)
    }

    /// The queue indices of the datagrams, in planned order (messages point into it).
    pub fn order(&self) -> impl Iterator<Item = usize> + '_ {
        self.order.iter().map(|(_, index, _)| *index)
    }

    /// Replaces the message at `position` (in sending order) by plain messages, one per
    /// datagram: used when the kernel refused it as a GSO message.
    fn split(&mut self, position: usize) {
        let Some(&(round, message)) = self.messages.get(position) else {
            return;
        };
        let plain = (message.start..message.start + message.segments)
            .map(|start| (round, Message::plain(start)));
        self.messages.splice(position..=position, plain);
    }
}

impl Message {
    fn plain(start: usize) -> Self {
        Self {
            start,
            segments: 1,
            segment_bytes: 0,
        }
    }
}

/// Whether the socket can take GSO messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GsoState {
    /// The kernel does not know `UDP_SEGMENT`, or a first GSO send failed.
    Unsupported,
    /// The option exists; no GSO message has been sent yet.
    Untested,
    /// A GSO message went out: later failures are about that message, not support.
    Working,
}

/// Reusable headers and plan for sending a worker's queue.
pub struct SendBatch {
    plain: MultiHeaders<SockaddrStorage>,
    gso: MultiHeaders<SockaddrStorage>,
    gso_state: GsoState,
    plan: Plan,
    addresses: Vec<Option<SockaddrStorage>>,
    /// Allocations of the I/O vectors, kept from one flush to the next (see [`recycle`]).
    iov_storage: Vec<io::IoSlice<'static>>,
    slice_storage: Vec<&'static [io::IoSlice<'static>]>,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("gso_state", &self.gso_state)
            .finish_non_exhaustive()
    }
}

impl SendBatch {
    /// Headers for `socket`, probing once whether its kernel supports `UDP_SEGMENT`.
    pub fn new(socket: &UdpSocket) -> Self {
        let gso_state = match getsockopt(socket, sockopt::UdpGsoSegment) {
            Ok(_) => GsoState::Untested,
            Err(error) => {
                tracing::debug!(%error, "no UDP GSO: plain sendmmsg");
                GsoState::Unsupported
            }
        };
        Self::with_gso(gso_state != GsoState::Unsupported)
    }

    /// Headers that use GSO only if `gso` (the caller has probed support).
    pub fn with_gso(gso: bool) -> Self {
        Self {
            plain: MultiHeaders::preallocate(SEND_BATCH, None),
            gso: MultiHeaders::preallocate(SEND_BATCH, Some(nix::cmsg_space!(u16))),
            gso_state: if gso {
                GsoState::Untested
            } else {
                GsoState::Unsupported
            },
            plan: Plan::default(),
            addresses: Vec::with_capacity(SEND_BATCH),
            iov_storage: Vec::new(),
            slice_storage: Vec::with_capacity(SEND_BATCH),
        }
    }

    /// Whether GSO messages are still being sent.
    pub fn gso_enabled(&self) -> bool {
        self.gso_state != GsoState::Unsupported
    }

    /// Sends every datagram of `queue`, waiting while the socket buffer is full. A
    /// datagram the kernel refuses (e.g. an ICMP error reported for its destination) is
    /// dropped and counted; the others still go.
    pub async fn send_all(
        &mut self,
        socket: &UdpSocket,
        queue: &[(SocketAddr, Vec<u8>)],
        metrics: &Metrics,
    ) {
        let limits = self.gso_enabled().then(GsoLimits::default);
        self.plan.build(queue, limits);
        let mut iovs: Vec<io::IoSlice<'_>> = recycle(std::mem::take(&mut self.iov_storage));
        iovs.extend(
            self.plan
                .order()
                .map(|index| io::IoSlice::new(queue.get(index).map_or(&[][..], |(_, d)| d))),
        );
        self.send_planned(socket, queue, &iovs, metrics).await;
        self.iov_storage = recycle(iovs);
    }

    /// Sends the planned messages, `iovs` holding the datagrams in planned order.
    async fn send_planned(
        &mut self,
        socket: &UdpSocket,
        queue: &[(SocketAddr, Vec<u8>)],
        iovs: &[io::IoSlice<'_>],
        metrics: &Metrics,
    ) {
        let mut next = 0;
        while next < self.plan.messages.len() {
            match self.try_send_from(socket, queue, iovs, next) {
                Ok((messages, datagrams, bytes)) => {
                    metrics.packets_sent(datagrams as u64, bytes);
                    next += messages.max(1);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(error) = socket.writable().await {
                        tracing::debug!(%error, "socket not writable");
                        return;
                    }
                }
                Err(error) => {
                    let Some(message) = self.plan.messages().nth(next) else {
                        return;
                    };
                    let refused_gso = message.segment_bytes > 0
                        && matches!(
                            Errno::from_raw(error.raw_os_error().unwrap_or(0)),
                            Errno::EIO | Errno::EINVAL | Errno::EMSGSIZE
                        );
                    if refused_gso {
                        if self.gso_state == GsoState::Untested {
                            tracing::info!(%error, "UDP GSO refused: plain sendmmsg from now on");
                            self.gso_state = GsoState::Unsupported;
                        }
                        self.plan.split(next);
                        continue;
                    }
                    let destination = self
                        .plan
                        .order
                        .get(message.start)
                        .map(|(destination, _, _)| *destination);
                    tracing::trace!(%error, ?destination, "send failed");
                    for _ in 0..message.segments {
                        metrics.packet_dropped(DropReason::QueueFull);
                    }
                    next += 1;
                }
            }
        }
    }

    /// One `sendmmsg` call for the messages from `first` that share its segment size.
    /// Returns (messages, datagrams, bytes) the kernel took.
    fn try_send_from(
        &mut self,
        socket: &UdpSocket,
        queue: &[(SocketAddr, Vec<u8>)],
        iovs: &[io::IoSlice<'_>],
        first: usize,
    ) -> io::Result<(usize, usize, usize)> {
        let (count, segment_bytes) = self.plan.call_at(first);
        if count == 0 {
            return Ok((0, 0, 0));
        }
        let call = self.plan.messages.get(first..first + count).unwrap_or(&[]);
        self.addresses.clear();
        let mut slices: Vec<&[io::IoSlice<'_>]> = recycle(std::mem::take(&mut self.slice_storage));
        for (_, message) in call {
            let destination = self.plan.order.get(message.start).map(|(d, _, _)| *d);
            self.addresses.push(destination.map(SockaddrStorage::from));
            slices.push(
                iovs.get(message.start..message.start + message.segments)
                    .unwrap_or(&[]),
            );
        }
        let fd = socket.as_raw_fd();
        let addresses = &self.addresses;
        let result = if segment_bytes == 0 {
            let headers = &mut self.plain;
            socket.try_io(Interest::WRITABLE, || {
                let none: [ControlMessage<'_>; 0] = [];
                sendmmsg(fd, headers, &slices, addresses, none, MsgFlags::empty())
                    .map(Iterator::count)
                    .map_err(io::Error::from)
            })
        } else {
            let headers = &mut self.gso;
            socket.try_io(Interest::WRITABLE, || {
                let segment = [ControlMessage::UdpGsoSegments(&segment_bytes)];
                sendmmsg(fd, headers, &slices, addresses, segment, MsgFlags::empty())
                    .map(Iterator::count)
                    .map_err(io::Error::from)
            })
        };
        self.slice_storage = recycle(slices);
        let sent = result?;
        if segment_bytes > 0 && sent > 0 && self.gso_state == GsoState::Untested {
            self.gso_state = GsoState::Working;
        }
        let (datagrams, bytes) = call
            .iter()
            .take(sent)
            .flat_map(|(_, message)| message.start..message.start + message.segments)
            .filter_map(|position| self.plan.order.get(position))
            .filter_map(|(_, index, _)| queue.get(*index))
            .fold((0, 0), |(count, bytes), (_, data)| {
                (count + 1, bytes + data.len())
            });
        Ok((sent, datagrams, bytes))
    }
}

/// An empty vector with `vector`'s allocation, for values of another lifetime: the I/O
/// vectors borrow the queued datagrams for one flush only, but their memory serves the
/// next. (The standard library collects a `filter_map` over `into_iter` in place when
/// the element layouts match, as they do here; otherwise this merely allocates.)
fn recycle<T, U>(vector: Vec<T>) -> Vec<U> {
    vector.into_iter().filter_map(|_| None).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(items: &[(&str, usize)]) -> Vec<(SocketAddr, Vec<u8>)> {
        items
            .iter()
            .enumerate()
            .map(|(n, (to, len))| (to.parse().unwrap(), vec![n as u8; *len]))
            .collect()
    }

    /// Each message as (destination, queue indices, segment size).
    fn plan(
        queue: &[(SocketAddr, Vec<u8>)],
        gso: Option<GsoLimits>,
    ) -> Vec<(SocketAddr, Vec<usize>, u16)> {
        let mut plan = Plan::default();
        plan.build(queue, gso);
        let order: Vec<usize> = plan.order().collect();
        plan.messages()
            .map(|m| {
                let indices = order[m.start..m.start + m.segments].to_vec();
                (queue[indices[0]].0, indices, m.segment_bytes)
            })
            .collect()
    }

    const A: &str = "192.0.2.1:1000";
    const B: &str = "192.0.2.2:1000";
    const C: &str = "192.0.2.3:1000";

    #[test]
    fn without_gso_every_datagram_is_plain_in_queue_order() {
        let q = queue(&[(B, 100), (A, 100), (B, 100)]);
        let messages = plan(&q, None);
        assert_eq!(
            messages,
            vec![
                (B.parse().unwrap(), vec![0], 0),
                (A.parse().unwrap(), vec![1], 0),
                (B.parse().unwrap(), vec![2], 0),
            ]
        );
    }

    #[test]
    fn interleaved_equal_datagrams_to_one_destination_become_one_run_in_order() {
        let q = queue(&[(A, 100), (B, 50), (A, 100), (A, 100), (B, 70)]);
        let messages = plan(&q, Some(GsoLimits::default()));
        assert!(messages.contains(&(A.parse().unwrap(), vec![0, 2, 3], 100)));
        // B's two datagrams grow in size: no run, but their order is kept
        let b: Vec<Vec<usize>> = messages
            .iter()
            .filter(|(to, _, _)| *to == B.parse::<SocketAddr>().unwrap())
            .map(|(_, indices, _)| indices.clone())
            .collect();
        assert_eq!(b, vec![vec![1], vec![4]]);
    }

    #[test]
    fn a_shorter_datagram_ends_a_run_and_a_longer_one_starts_the_next() {
        let q = queue(&[(A, 100), (A, 100), (A, 60), (A, 100), (A, 120), (A, 120)]);
        let messages = plan(&q, Some(GsoLimits::default()));
        assert_eq!(
            messages
                .iter()
                .map(|(_, i, s)| (i.clone(), *s))
                .collect::<Vec<_>>(),
            vec![(vec![0, 1, 2], 100), (vec![3], 0), (vec![4, 5], 120)]
        );
    }

    #[test]
    fn runs_are_cut_at_the_segment_and_byte_limits() {
        let limits = GsoLimits {
            max_segments: 3,
            max_bytes: 250,
            max_segment_bytes: 1000,
        };
        let q = queue(&[(A, 10); 7]);
        let runs: Vec<usize> = plan(&q, Some(limits))
            .iter()
            .map(|(_, i, _)| i.len())
            .collect();
        assert_eq!(runs, vec![3, 3, 1]);
        let q = queue(&[(A, 100); 5]);
        let runs: Vec<usize> = plan(&q, Some(limits))
            .iter()
            .map(|(_, i, _)| i.len())
            .collect();
        assert_eq!(runs, vec![2, 2, 1]);
    }

    #[test]
    fn datagrams_larger_than_the_segment_limit_are_sent_alone() {
        let q = queue(&[(A, MAX_GSO_SEGMENT_BYTES + 1); 3]);
        let messages = plan(&q, Some(GsoLimits::default()));
        assert_eq!(messages.len(), 3);
        assert!(messages.iter().all(|(_, i, s)| i.len() == 1 && *s == 0));
    }

    #[test]
    fn each_destination_keeps_its_order_and_equal_segment_sizes_are_adjacent() {
        let q = queue(&[
            (A, 100),
            (B, 100),
            (C, 80),
            (A, 100),
            (B, 100),
            (C, 80),
            (A, 40),
            (C, 90),
        ]);
        let messages = plan(&q, Some(GsoLimits::default()));
        for to in [A, B, C] {
            let to: SocketAddr = to.parse().unwrap();
            let indices: Vec<usize> = messages
                .iter()
                .filter(|(d, _, _)| *d == to)
                .flat_map(|(_, i, _)| i.clone())
                .collect();
            let mut sorted = indices.clone();
            sorted.sort_unstable();
            assert_eq!(indices, sorted, "order kept for {to}");
        }
        let sizes: Vec<u16> = messages.iter().map(|(_, _, s)| *s).collect();
        // round 0: A [0,3,6] seg 100, B [1,4] seg 100, C [2,5] seg 80; round 1: C [7]
        assert_eq!(sizes, vec![100, 100, 80, 0]);
        let covered: usize = messages.iter().map(|(_, i, _)| i.len()).sum();
        assert_eq!(covered, q.len());
    }

    #[test]
    fn a_gso_call_carries_plain_datagrams_no_longer_than_its_segments() {
        const D: &str = "192.0.2.4:1000";
        const E: &str = "192.0.2.5:1000";
        const F: &str = "192.0.2.6:1000";
        let q = queue(&[
            (F, 200),
            (A, 100),
            (A, 100),
            (B, 100),
            (B, 100),
            (D, 90),
            (C, 80),
            (C, 80),
            (E, 50),
        ]);
        let mut plan = Plan::default();
        plan.build(&q, Some(GsoLimits::default()));
        let mut calls = Vec::new();
        let mut first = 0;
        loop {
            let (count, segment) = plan.call_at(first);
            if count == 0 {
                break;
            }
            let messages: Vec<(usize, u16)> = plan
                .messages()
                .skip(first)
                .take(count)
                .map(|m| (m.segments, m.segment_bytes))
                .collect();
            calls.push((segment, messages));
            first += count;
        }
        assert_eq!(
            calls,
            vec![
                (0, vec![(1, 0)]),                       // F: longer than any segment
                (100, vec![(2, 100), (2, 100), (1, 0)]), // A, B runs, then D (90)
                (80, vec![(2, 80), (1, 0)]),             // C run, then E (50)
            ]
        );
    }

    #[test]
    fn a_refused_gso_message_is_split_into_plain_ones_in_place() {
        let q = queue(&[(A, 100), (A, 100), (A, 100), (B, 10)]);
        let mut plan = Plan::default();
        plan.build(&q, Some(GsoLimits::default()));
        let position = plan.messages().position(|m| m.segments == 3).unwrap();
        plan.split(position);
        let messages: Vec<Message> = plan.messages().collect();
        assert_eq!(messages.len(), 4);
        assert!(messages
            .iter()
            .all(|m| m.segments == 1 && m.segment_bytes == 0));
        let order: Vec<usize> = plan.order().collect();
        let a: Vec<usize> = messages
            .iter()
            .map(|m| order[m.start])
            .filter(|i| *i < 3)
            .collect();
        assert_eq!(a, vec![0, 1, 2]);
    }

    #[test]
    fn recycling_keeps_the_allocation() {
        let data = [1u8; 4];
        let mut vector: Vec<io::IoSlice<'_>> = Vec::with_capacity(64);
        vector.push(io::IoSlice::new(&data));
        let recycled: Vec<io::IoSlice<'static>> = recycle(vector);
        assert!(recycled.is_empty());
        assert!(recycled.capacity() >= 64);
    }

    #[tokio::test]
    async fn a_gso_run_arrives_as_separate_datagrams_at_a_plain_receiver() {
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut batch = SendBatch::new(&sender);
        assert!(batch.gso_enabled(), "this kernel supports UDP_SEGMENT");
        let to = receiver.local_addr().unwrap();
        let elsewhere = other.local_addr().unwrap();
        let mut q: Vec<(SocketAddr, Vec<u8>)> = (0..10u8).map(|n| (to, vec![n; 1000])).collect();
        q.push((to, vec![10; 300]));
        q.insert(3, (elsewhere, vec![99; 20]));
        let metrics = Metrics::new();
        batch.send_all(&sender, &q, &metrics).await;
        assert_eq!(batch.gso_state, GsoState::Working, "a GSO message went out");
        let mut buffer = [0u8; 2048];
        for n in 0..11u8 {
            let (len, from) = receiver.recv_from(&mut buffer).await.unwrap();
            assert_eq!(from, sender.local_addr().unwrap());
            let expected = if n == 10 { 300 } else { 1000 };
            assert_eq!(&buffer[..len], vec![n; expected].as_slice());
        }
        let (len, _) = other.recv_from(&mut buffer).await.unwrap();
        assert_eq!(&buffer[..len], &[99; 20]);
        let text = metrics.encode();
        assert!(text.contains("sluice_packets_sent_total 12"), "{text}");
    }
}
