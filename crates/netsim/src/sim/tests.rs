use super::*;

const MS: Duration = Duration::from_millis(1);

/// Sends requests 0..total one at a time, retransmitting on a doubling timer until
/// the matching reply arrives.
struct Requester {
    total: u32,
    next: u32,
    initial_rto: Duration,
    rto: Duration,
    timer: Option<Instant>,
    outbox: Vec<Vec<u8>>,
    started: bool,
    retransmissions: u32,
}

impl Requester {
    fn new(total: u32, start: Instant) -> Self {
        Self {
            total,
            next: 0,
            initial_rto: 100 * MS,
            rto: 100 * MS,
            // Fires at once so the first request goes out through handle_timeout.
            timer: Some(start),
            outbox: Vec::new(),
            started: false,
            retransmissions: 0,
        }
    }

    fn done(&self) -> bool {
        self.next >= self.total
    }
}

impl Endpoint for Requester {
    fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        let Ok(bytes) = <[u8; 4]>::try_from(datagram) else {
            return;
        };
        if u32::from_be_bytes(bytes) != self.next || self.done() {
            return;
        }
        self.next += 1;
        self.rto = self.initial_rto;
        if self.done() {
            self.timer = None;
        } else {
            self.outbox.push(self.next.to_be_bytes().to_vec());
            self.timer = Some(now + self.rto);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.done() {
            self.timer = None;
            return;
        }
        if self.started {
            self.retransmissions += 1;
            self.rto = (self.rto * 2).min(Duration::from_secs(1));
        }
        self.started = true;
        self.outbox.push(self.next.to_be_bytes().to_vec());
        self.timer = Some(now + self.rto);
    }

    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }
}

/// Echoes every datagram back.
#[derive(Default)]
struct Echo {
    outbox: Vec<Vec<u8>>,
    received: u64,
}

impl Endpoint for Echo {
    fn handle_datagram(&mut self, _now: Instant, datagram: &[u8]) {
        self.received += 1;
        self.outbox.push(datagram.to_vec());
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

fn requester_pair(total: u32, link: LinkConfig, seed: u64) -> Pair<Requester, Echo> {
    let start = Instant::now();
    Pair::with_start(
        Requester::new(total, start),
        Echo::default(),
        link.clone(),
        link,
        seed,
        start,
    )
}

#[test]
fn ping_pong_on_a_perfect_link_takes_one_round_trip_per_request() {
    let mut pair = requester_pair(20, LinkConfig::delayed(25 * MS), 1);
    let outcome = pair.drive_until(Duration::from_secs(60), |a, _| a.done());
    assert!(outcome.finished);
    assert_eq!(outcome.elapsed, 20 * 50 * MS);
    assert_eq!(
        (outcome.datagrams_a_to_b, outcome.datagrams_b_to_a),
        (20, 20)
    );
    assert_eq!(pair.a().retransmissions, 0);
}

#[test]
fn ping_pong_with_retransmit_timers_completes_under_30_percent_loss() {
    for seed in 0..50 {
        let mut pair = requester_pair(20, LinkConfig::lossy(25 * MS, 0.3), seed);
        let outcome = pair.drive_until(Duration::from_secs(600), |a, _| a.done());
        assert!(outcome.finished, "seed {seed}: {outcome:?}");
        assert!(
            outcome.datagrams_a_to_b > 20,
            "seed {seed}: loss had no effect"
        );
        let lost = pair.link_ab().stats().dropped.loss + pair.link_ba().stats().dropped.loss;
        assert!(lost > 0);
    }
}

#[test]
fn same_seed_reproduces_the_same_run() {
    let run = |seed| {
        let mut pair = requester_pair(30, LinkConfig::lossy(20 * MS, 0.25), seed);
        let outcome = pair.drive_until(Duration::from_secs(600), |a, _| a.done());
        (outcome, pair.link_ab().stats(), pair.link_ba().stats())
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

#[test]
fn targeted_drop_forces_one_retransmission() {
    let mut pair = requester_pair(3, LinkConfig::delayed(10 * MS), 1);
    let mut armed = true;
    pair.link_ba_mut()
        .set_drop_filter(Box::new(move |d: &[u8]| {
            let hit = armed && d == 1u32.to_be_bytes();
            armed &= !hit;
            hit
        }));
    let outcome = pair.drive_until(Duration::from_secs(10), |a, _| a.done());
    assert!(outcome.finished);
    assert_eq!(pair.link_ba().stats().dropped.targeted, 1);
    assert_eq!(pair.a().retransmissions, 1);
    // Two clean round trips (40 ms) plus one 100 ms timeout and its round trip.
    assert_eq!(outcome.elapsed, 20 * MS + 100 * MS + 20 * MS + 20 * MS);
}

/// Asks for a timeout every second forever.
struct Ticker {
    next: Instant,
    ticks: u32,
}

impl Endpoint for Ticker {
    fn handle_datagram(&mut self, _now: Instant, _datagram: &[u8]) {}
    fn handle_timeout(&mut self, now: Instant) {
        self.ticks += 1;
        self.next = now + Duration::from_secs(1);
    }
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next)
    }
}

#[test]
fn deadline_stops_the_clock_exactly_at_the_deadline() {
    let start = Instant::now();
    let ticker = Ticker {
        next: start + Duration::from_secs(1),
        ticks: 0,
    };
    let mut pair = Pair::with_start(
        ticker,
        Echo::default(),
        LinkConfig::default(),
        LinkConfig::default(),
        1,
        start,
    );
    let outcome = pair.drive_until(Duration::from_millis(10_500), |_, _| false);
    assert!(!outcome.finished);
    assert_eq!(outcome.elapsed, Duration::from_millis(10_500));
    assert_eq!(pair.a().ticks, 10);
    // A second call continues from there.
    let outcome = pair.drive_until(Duration::from_secs(1), |_, _| false);
    assert_eq!(outcome.elapsed, Duration::from_secs(1));
    assert_eq!(pair.a().ticks, 11);
}

/// A buggy endpoint whose timer never moves past the instant it is handled at.
struct Spinner {
    at: Instant,
    timeouts: u64,
}

impl Endpoint for Spinner {
    fn handle_datagram(&mut self, _now: Instant, _datagram: &[u8]) {}
    fn handle_timeout(&mut self, _now: Instant) {
        self.timeouts += 1;
    }
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.at)
    }
}

#[test]
fn busy_looping_endpoint_is_reported_instead_of_spinning() {
    let start = Instant::now();
    let mut pair = Pair::with_start(
        Echo::default(),
        Spinner {
            at: start,
            timeouts: 0,
        },
        LinkConfig::default(),
        LinkConfig::default(),
        1,
        start,
    );
    pair.set_max_steps_per_instant(500);
    let outcome = pair.drive_until(Duration::from_secs(30), |_, _| false);
    assert!(!outcome.finished);
    assert_eq!(outcome.busy_loop, Some(Side::B));
    assert_eq!(pair.b().timeouts, 500);
    assert!(!pair.step());
}

#[test]
fn step_returns_false_when_nothing_is_pending() {
    let start = Instant::now();
    let mut pair = Pair::with_start(
        Echo::default(),
        Echo::default(),
        LinkConfig::default(),
        LinkConfig::default(),
        1,
        start,
    );
    assert!(!pair.step());
    let outcome = pair.drive_until(Duration::from_secs(5), |_, _| false);
    assert_eq!(outcome.elapsed, Duration::ZERO);
    assert!(!outcome.finished && outcome.busy_loop.is_none());
}
