//! A two-endpoint test driver on virtual time, in the style of quinn-proto's `Pair`.
//!
//! Build a pair, set the links, drive, assert:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sluice_netsim::{sim::{Endpoint, Pair}, LinkConfig};
//!
//! /// Sends "ping" once; done when it hears anything back.
//! #[derive(Default)]
//! struct Pinger { sent: bool, heard: bool }
//! impl Endpoint for Pinger {
//!     fn handle_datagram(&mut self, _now: Instant, _d: &[u8]) { self.heard = true; }
//!     fn handle_timeout(&mut self, _now: Instant) {}
//!     fn poll_transmit(&mut self) -> Option<Vec<u8>> {
//!         (!std::mem::replace(&mut self.sent, true)).then(|| b"ping".to_vec())
//!     }
//!     fn poll_timeout(&self) -> Option<Instant> { None }
//! }
//! /// Echoes what it receives.
//! #[derive(Default)]
//! struct Echo { pending: Vec<Vec<u8>> }
//! impl Endpoint for Echo {
//!     fn handle_datagram(&mut self, _now: Instant, d: &[u8]) { self.pending.push(d.to_vec()); }
//!     fn handle_timeout(&mut self, _now: Instant) {}
//!     fn poll_transmit(&mut self) -> Option<Vec<u8>> { self.pending.pop() }
//!     fn poll_timeout(&self) -> Option<Instant> { None }
//! }
//!
//! let link = LinkConfig::delayed(Duration::from_millis(25));
//! let mut pair = Pair::new(Pinger::default(), Echo::default(), link.clone(), link, 1);
//! let outcome = pair.drive_until(Duration::from_secs(1), |a, _| a.heard);
//! assert!(outcome.finished);
//! assert_eq!(outcome.elapsed, Duration::from_millis(50));
//! ```

use std::time::{Duration, Instant};

use crate::{Link, LinkConfig, SimRng};

/// A sans-IO protocol endpoint the pair can drive.
pub trait Endpoint {
    /// A datagram from the peer arrived at `now`.
    fn handle_datagram(&mut self, now: Instant, datagram: &[u8]);
    /// `now` reached (or passed) the endpoint's `poll_timeout`.
    fn handle_timeout(&mut self, now: Instant);
    /// Next datagram to send; the pair drains this after every `handle_*` call.
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;
    /// When the endpoint next needs `handle_timeout`; `None` = no timer.
    fn poll_timeout(&self) -> Option<Instant>;
}

/// One side of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The first endpoint (sends on `link_ab`).
    A,
    /// The second endpoint (sends on `link_ba`).
    B,
}

/// Result of [`Pair::drive_until`]; counts and `elapsed` cover that call only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// `done` returned true before the deadline.
    pub finished: bool,
    /// Virtual time that passed during the call.
    pub elapsed: Duration,
    /// Datagrams A transmitted during the call (lost ones included).
    pub datagrams_a_to_b: u64,
    /// Datagrams B transmitted during the call (lost ones included).
    pub datagrams_b_to_a: u64,
    /// Set when an endpoint kept asking for a timeout at the same instant more than
    /// the per-instant step cap allows: a busy loop in the endpoint (a bug to fix,
    /// not something to wait out). The pair stops driving once this is set.
    pub busy_loop: Option<Side>,
}

/// Default cap on steps taken without virtual time moving.
pub const DEFAULT_MAX_STEPS_PER_INSTANT: u32 = 10_000;

/// Two endpoints joined by two simulated links on one virtual clock.
#[derive(Debug)]
pub struct Pair<A: Endpoint, B: Endpoint> {
    a: A,
    b: B,
    start: Instant,
    now: Instant,
    link_ab: Link,
    link_ba: Link,
    sent_a_to_b: u64,
    sent_b_to_a: u64,
    steps_at_now: u32,
    max_steps_per_instant: u32,
    busy_loop: Option<Side>,
}

impl<A: Endpoint, B: Endpoint> Pair<A, B> {
    /// A pair whose virtual clock starts at one real `Instant::now()` (the only real
    /// clock read); both links derive their randomness from `seed`.
    pub fn new(a: A, b: B, link_ab: LinkConfig, link_ba: LinkConfig, seed: u64) -> Self {
        Self::with_start(a, b, link_ab, link_ba, seed, Instant::now())
    }

    /// Like [`Pair::new`] with an explicit start instant (for endpoints built with
    /// that instant, or to avoid reading the clock at all).
    pub fn with_start(
        a: A,
        b: B,
        link_ab: LinkConfig,
        link_ba: LinkConfig,
        seed: u64,
        start: Instant,
    ) -> Self {
        let mut rng = SimRng::new(seed);
        let rng_ab = rng.fork();
        let rng_ba = rng.fork();
        Self {
            a,
            b,
            start,
            now: start,
            link_ab: Link::new(link_ab, rng_ab, start),
            link_ba: Link::new(link_ba, rng_ba, start),
            sent_a_to_b: 0,
            sent_b_to_a: 0,
            steps_at_now: 0,
            max_steps_per_instant: DEFAULT_MAX_STEPS_PER_INSTANT,
            busy_loop: None,
        }
    }

    /// Changes the busy-loop cap (steps allowed without virtual time advancing).
    pub fn set_max_steps_per_instant(&mut self, max_steps: u32) {
        self.max_steps_per_instant = max_steps.max(1);
    }

    /// Endpoint A.
    pub fn a(&self) -> &A {
        &self.a
    }
    /// Endpoint B.
    pub fn b(&self) -> &B {
        &self.b
    }
    /// Endpoint A, mutably (e.g. to start a handshake).
    pub fn a_mut(&mut self) -> &mut A {
        &mut self.a
    }
    /// Endpoint B, mutably.
    pub fn b_mut(&mut self) -> &mut B {
        &mut self.b
    }
    /// Current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }
    /// The instant the virtual clock started at.
    pub fn start(&self) -> Instant {
        self.start
    }
    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }
    /// The A -> B link (stats, drop filter).
    pub fn link_ab(&self) -> &Link {
        &self.link_ab
    }
    /// The B -> A link.
    pub fn link_ba(&self) -> &Link {
        &self.link_ba
    }
    /// The A -> B link, mutably (e.g. `set_drop_filter`).
    pub fn link_ab_mut(&mut self) -> &mut Link {
        &mut self.link_ab
    }
    /// The B -> A link, mutably.
    pub fn link_ba_mut(&mut self) -> &mut Link {
        &mut self.link_ba
    }
    /// Datagrams A and B have transmitted since the start.
    pub fn datagrams_sent(&self) -> (u64, u64) {
        (self.sent_a_to_b, self.sent_b_to_a)
    }
    /// The side caught in a busy loop, if any.
    pub fn busy_loop(&self) -> Option<Side> {
        self.busy_loop
    }

    fn drain_a(&mut self) {
        while let Some(datagram) = self.a.poll_transmit() {
            self.sent_a_to_b += 1;
            self.link_ab.send(self.now, datagram);
        }
    }

    fn drain_b(&mut self) {
        while let Some(datagram) = self.b.poll_transmit() {
            self.sent_b_to_a += 1;
            self.link_ba.send(self.now, datagram);
        }
    }

    /// Earliest pending event: an endpoint timer or a link delivery.
    fn next_event(&self) -> Option<Instant> {
        [
            self.a.poll_timeout(),
            self.b.poll_timeout(),
            self.link_ab.poll_timeout(),
            self.link_ba.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Advances to the earliest pending event and handles everything due then:
    /// deliveries first (A->B, then B->A), then endpoint timers, draining transmits
    /// after every call. Returns false when nothing is pending or a busy loop was
    /// detected (see [`Pair::busy_loop`]).
    pub fn step(&mut self) -> bool {
        if self.busy_loop.is_some() {
            return false;
        }
        self.drain_a();
        self.drain_b();
        let Some(next) = self.next_event() else {
            return false;
        };
        if next > self.now {
            self.now = next;
            self.steps_at_now = 0;
        }
        self.steps_at_now += 1;
        if self.steps_at_now > self.max_steps_per_instant {
            let a_due = self.a.poll_timeout().is_some_and(|t| t <= self.now);
            self.busy_loop = Some(if a_due { Side::A } else { Side::B });
            return false;
        }
        let now = self.now;
        while let Some(datagram) = self.link_ab.poll_deliver(now) {
            self.b.handle_datagram(now, &datagram);
            self.drain_b();
        }
        while let Some(datagram) = self.link_ba.poll_deliver(now) {
            self.a.handle_datagram(now, &datagram);
            self.drain_a();
        }
        if self.a.poll_timeout().is_some_and(|t| t <= now) {
            self.a.handle_timeout(now);
            self.drain_a();
        }
        if self.b.poll_timeout().is_some_and(|t| t <= now) {
            self.b.handle_timeout(now);
            self.drain_b();
        }
        true
    }

    /// Steps until `done(a, b)` holds, nothing is pending, a busy loop is detected,
    /// or `deadline` of virtual time has passed since this call began (the clock
    /// then stops at exactly that deadline).
    pub fn drive_until(
        &mut self,
        deadline: Duration,
        mut done: impl FnMut(&A, &B) -> bool,
    ) -> Outcome {
        let call_start = self.now;
        let limit = call_start.checked_add(deadline).unwrap_or(call_start);
        let (sent_ab, sent_ba) = (self.sent_a_to_b, self.sent_b_to_a);
        let finished = loop {
            self.drain_a();
            self.drain_b();
            if done(&self.a, &self.b) {
                break true;
            }
            match self.next_event() {
                None => break false,
                Some(next) if next > limit => {
                    self.now = self.now.max(limit);
                    break false;
                }
                Some(_) => {}
            }
            if !self.step() {
                break done(&self.a, &self.b);
            }
        };
        Outcome {
            finished,
            elapsed: self.now - call_start,
            datagrams_a_to_b: self.sent_a_to_b - sent_ab,
            datagrams_b_to_a: self.sent_b_to_a - sent_ba,
            busy_loop: self.busy_loop,
        }
    }
}

#[cfg(test)]
mod tests;
