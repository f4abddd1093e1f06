//! A DTLS pair on virtual time: two engines joined by `sluice-netsim` links, plus the
//! matrix runner shared by the tests and the `matrix` example.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sluice_dtls::{
    Certificate, Config, Connected, Connection, DtlsVersion, Error, Event, PeerAuth, Recovery, Role,
};
use sluice_netsim::dtls_view;
use sluice_netsim::sim::{Endpoint, Pair};
use sluice_netsim::{GilbertElliott, LinkConfig};

/// One way of the link, as the issue specifies: 35 ms each way.
pub const ONE_WAY: Duration = Duration::from_millis(35);
/// The handshake deadline every cell is held to.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A small P-256 self-signed leaf, as browsers use.
pub fn small_cert(i: usize) -> Arc<Certificate> {
    static CERTS: OnceLock<[Arc<Certificate>; 2]> = OnceLock::new();
    CERTS.get_or_init(|| {
        [
            Arc::new(Certificate::generate().expect("cert")),
            Arc::new(Certificate::generate().expect("cert")),
        ]
    })[i % 2]
        .clone()
}

/// A P-256 certificate of at least 7 KB (many subject alternative names), so that one
/// Certificate message spans dozens of 200-byte datagrams.
pub fn large_cert(i: usize) -> Arc<Certificate> {
    static CERTS: OnceLock<[Arc<Certificate>; 2]> = OnceLock::new();
    CERTS.get_or_init(|| {
        let make = |tag: &str| {
            let names = (0..240)
                .map(|n| format!("media-{tag}-{n:04}.participants.sluice.example"))
                .collect();
            let c = Certificate::generate_with_names(names).expect("large cert");
            assert!(
                c.der().len() >= 7 * 1024,
                "certificate is {} bytes",
                c.der().len()
            );
            Arc::new(c)
        };
        [make("a"), make("b")]
    })[i % 2]
        .clone()
}

/// Which of a side's own datagrams to lose on their first transmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flight {
    /// The client's ClientHello (flight 1, or 3 after a HelloVerifyRequest).
    ClientHello,
    /// The server's HelloVerifyRequest (flight 2).
    HelloVerifyRequest,
    /// ServerHello .. ServerHelloDone (flight 4).
    ServerHelloToDone,
    /// Certificate .. Finished (flight 5), every datagram of it.
    ClientCertificateToFinished,
    /// Only the datagrams of flight 5 carrying ChangeCipherSpec or Finished.
    ClientFinished,
    /// The server's ChangeCipherSpec + Finished (flight 6).
    ServerFinished,
    /// DTLS 1.3: the server's ServerHello .. Finished, every datagram of it.
    ServerHelloToFinished13,
    /// DTLS 1.3: the client's Certificate .. Finished, every datagram of it.
    ClientCertificateToFinished13,
    /// DTLS 1.3: the server's ACK of the client's final flight.
    ServerAck13,
}

/// True when a datagram starts with a DTLS 1.3 unified header (a protected record).
pub fn starts_protected(datagram: &[u8]) -> bool {
    datagram
        .first()
        .is_some_and(|b| b & 0b1110_0000 == 0b0010_0000)
}

impl Flight {
    pub const ALL: [Flight; 6] = [
        Self::ClientHello,
        Self::HelloVerifyRequest,
        Self::ServerHelloToDone,
        Self::ClientCertificateToFinished,
        Self::ClientFinished,
        Self::ServerFinished,
    ];

    /// The flights of a DTLS 1.3 handshake.
    pub const ALL_13: [Flight; 4] = [
        Self::ClientHello,
        Self::ServerHelloToFinished13,
        Self::ClientCertificateToFinished13,
        Self::ServerAck13,
    ];

    pub fn sender(self) -> Role {
        match self {
            Self::ClientHello
            | Self::ClientCertificateToFinished
            | Self::ClientFinished
            | Self::ClientCertificateToFinished13 => Role::Client,
            _ => Role::Server,
        }
    }

    /// `hello_now`: the sender sent a ServerHello in this same instant.
    fn matches(self, datagram: &[u8], hello_now: bool) -> bool {
        let hs = |t: u8| dtls_view::carries_handshake(datagram, t);
        let finished = dtls_view::carries_content_type(datagram, 20)
            || dtls_view::records(datagram)
                .map_while(Result::ok)
                .any(|r| r.epoch == 1 && r.content_type == 22);
        match self {
            Self::ClientHello => hs(1),
            Self::HelloVerifyRequest => hs(3),
            Self::ServerHelloToDone => hs(2) || hs(11) || hs(12) || hs(13) || hs(14),
            Self::ClientCertificateToFinished => hs(11) || hs(16) || hs(15) || finished,
            Self::ClientFinished | Self::ServerFinished => finished,
            Self::ServerHelloToFinished13 => hs(2) || (hello_now && starts_protected(datagram)),
            Self::ClientCertificateToFinished13 => starts_protected(datagram),
            Self::ServerAck13 => !hello_now && starts_protected(datagram),
        }
    }
}

/// Loses every datagram of one flight sent at the instant the flight was first sent.
#[derive(Debug, Clone, Copy)]
struct TargetedLoss {
    flight: Flight,
    first_sent: Option<Instant>,
    dropped: u32,
}

/// One engine plus what it reported.
pub struct Peer {
    pub conn: Connection,
    pub connected: Option<Box<Connected>>,
    pub failed: Option<Error>,
    pub connected_at: Option<Instant>,
    now: Instant,
    targeted: Option<TargetedLoss>,
    hello_sent_at: Option<Instant>,
}

impl Peer {
    pub fn new(conn: Connection, now: Instant) -> Self {
        Self {
            conn,
            connected: None,
            failed: None,
            connected_at: None,
            now,
            targeted: None,
            hello_sent_at: None,
        }
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.conn.poll_event() {
            match e {
                Event::Connected(c) => {
                    self.connected = Some(c);
                    self.connected_at = Some(self.now);
                }
                Event::Failed(e) => self.failed = Some(e),
                Event::Closed => {}
            }
        }
    }

    pub fn targeted_drops(&self) -> u32 {
        self.targeted.map_or(0, |t| t.dropped)
    }
}

impl Endpoint for Peer {
    fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        self.now = now;
        self.conn.handle_datagram(now, datagram);
        self.drain_events();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.conn.handle_timeout(now);
        self.drain_events();
    }

    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        loop {
            let d = self.conn.poll_transmit()?;
            if dtls_view::carries_handshake(&d, 2) {
                self.hello_sent_at = Some(self.now);
            }
            let hello_now = self.hello_sent_at == Some(self.now);
            if let Some(t) = self.targeted.as_mut() {
                if t.flight.matches(&d, hello_now) && t.first_sent.is_none_or(|at| at == self.now) {
                    t.first_sent = Some(self.now);
                    t.dropped += 1;
                    continue;
                }
            }
            return Some(d);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.conn.poll_timeout()
    }
}

/// The network of one cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    None,
    Random(f64),
    /// Gilbert-Elliott bursts: mean loss about p_gb / (p_gb + p_bg).
    Burst {
        p_good_to_bad: f64,
        p_bad_to_good: f64,
    },
}

/// Everything that defines one cell of the matrix.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub large_certificate: bool,
    pub max_datagram_size: usize,
    pub loss: Loss,
    pub recut: bool,
    pub duplicate: f64,
    pub reorder: f64,
    pub jitter: Duration,
    pub targeted: Option<Flight>,
    pub hello_verify: bool,
    pub recovery: Recovery,
    /// The versions both sides enable.
    pub versions: Vec<DtlsVersion>,
    /// The server's groups, when not the default (P-256 only forces a 1.3 client, whose
    /// share is X25519, through a HelloRetryRequest).
    pub server_groups: Option<Vec<sluice_dtls::NamedGroup>>,
    /// Both sides keep the X25519MLKEM768 hybrid first (the default configuration). Off,
    /// they use X25519 and P-256 only, as every cell measured before the hybrid existed:
    /// the cells then measure loss recovery, not the hybrid's larger hellos.
    pub hybrid: bool,
}

impl Scenario {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            large_certificate: false,
            max_datagram_size: 1200,
            loss: Loss::None,
            recut: false,
            duplicate: 0.0,
            reorder: 0.0,
            jitter: Duration::ZERO,
            targeted: None,
            hello_verify: false,
            recovery: Recovery::FULL,
            versions: vec![DtlsVersion::Dtls12],
            server_groups: None,
            hybrid: false,
        }
    }

    /// The same DTLS 1.3 cell with the default groups, the hybrid first, named
    /// "1.3 hybrid: ...": the client's hello grows to about 1,450 bytes and the server's
    /// ServerHello to about 1,190.
    pub fn hybrid(mut self) -> Self {
        self.hybrid = true;
        self.name = self.name.replacen("1.3: ", "1.3 hybrid: ", 1);
        self
    }

    /// The same cell with DTLS 1.3 enabled on both sides (and 1.2 kept), named "1.3: ...".
    pub fn dtls13(mut self) -> Self {
        self.versions = vec![DtlsVersion::Dtls13, DtlsVersion::Dtls12];
        self.name = format!("1.3: {}", self.name);
        self
    }

    fn link(&self) -> LinkConfig {
        let mut l = LinkConfig::delayed(ONE_WAY);
        match self.loss {
            Loss::None => {}
            Loss::Random(p) => l.loss = p,
            Loss::Burst {
                p_good_to_bad,
                p_bad_to_good,
            } => l.burst = Some(GilbertElliott::gilbert(p_good_to_bad, p_bad_to_good)),
        }
        if self.recut {
            l = l.with_recut_dtls(Some(self.max_datagram_size));
        }
        l.duplicate = self.duplicate;
        l.reorder = self.reorder;
        l.reorder_delay = Duration::from_millis(20);
        l.jitter = self.jitter;
        l.with_mtu(self.max_datagram_size)
    }
}

/// The result of one handshake.
#[derive(Debug, Clone)]
pub struct Run {
    pub completed: bool,
    pub keys_equal: bool,
    pub elapsed: Duration,
    pub datagrams: u64,
    pub client_error: Option<Error>,
    pub server_error: Option<Error>,
    pub targeted_drops: u32,
}

/// Runs one handshake of `scenario` with `seed`: client is A, server is B.
pub fn run(scenario: &Scenario, seed: u64) -> Run {
    let start = Instant::now();
    let certs = |i: usize| {
        if scenario.large_certificate {
            large_cert(i)
        } else {
            small_cert(i)
        }
    };
    let config = |cert: Arc<Certificate>| {
        let mut c = Config::new(cert);
        c.max_datagram_size = scenario.max_datagram_size;
        c.hello_verify = scenario.hello_verify;
        c.recovery = scenario.recovery;
        c.versions = scenario.versions.clone();
        if !scenario.hybrid {
            c.groups = vec![
                sluice_dtls::NamedGroup::X25519,
                sluice_dtls::NamedGroup::P256,
            ];
        }
        if !scenario.recovery.adaptive_timer {
            c.initial_rto = Duration::from_secs(1);
        }
        Arc::new(c)
    };
    let (client_cert, server_cert) = (certs(0), certs(1));
    let client = Connection::new(
        config(client_cert.clone()),
        Role::Client,
        PeerAuth::Fingerprint(server_cert.fingerprint()),
        b"server",
        start,
    );
    let server_config = match &scenario.server_groups {
        Some(groups) => {
            let mut c = (*config(server_cert)).clone();
            c.groups = groups.clone();
            Arc::new(c)
        }
        None => config(server_cert),
    };
    let server = Connection::new(
        server_config,
        Role::Server,
        PeerAuth::Fingerprint(client_cert.fingerprint()),
        b"127.0.0.1:5000",
        start,
    );
    let mut a = Peer::new(client, start);
    let mut b = Peer::new(server, start);
    if let Some(flight) = scenario.targeted {
        let t = Some(TargetedLoss {
            flight,
            first_sent: None,
            dropped: 0,
        });
        match flight.sender() {
            Role::Client => a.targeted = t,
            Role::Server => b.targeted = t,
        }
    }
    let link = scenario.link();
    let mut pair = Pair::with_start(a, b, link.clone(), link, seed, start);
    let outcome = pair.drive_until(DEADLINE + Duration::from_millis(1), |a, b| {
        (a.connected.is_some() && b.connected.is_some()) || a.failed.is_some() || b.failed.is_some()
    });
    let (a, b) = (pair.a(), pair.b());
    let completed = a.connected.is_some()
        && b.connected.is_some()
        && outcome.elapsed <= DEADLINE
        && outcome.busy_loop.is_none();
    let expected_version = if scenario.versions.contains(&DtlsVersion::Dtls13) {
        DtlsVersion::Dtls13
    } else {
        DtlsVersion::Dtls12
    };
    let keys_equal = match (&a.connected, &b.connected) {
        (Some(x), Some(y)) => {
            x.version == expected_version
                && y.version == expected_version
                && x.srtp.exported == y.srtp.exported
                && x.srtp.local == y.srtp.remote
                && x.srtp.remote == y.srtp.local
                && x.srtp.profile == y.srtp.profile
        }
        _ => false,
    };
    Run {
        completed,
        keys_equal,
        elapsed: outcome.elapsed,
        datagrams: outcome.datagrams_a_to_b + outcome.datagrams_b_to_a,
        client_error: a.failed.clone(),
        server_error: b.failed.clone(),
        targeted_drops: a.targeted_drops() + b.targeted_drops(),
    }
}

/// Aggregated results of one cell.
#[derive(Debug, Clone)]
pub struct CellResult {
    pub name: String,
    pub runs: usize,
    pub completed: usize,
    pub keys_mismatched: usize,
    pub median: Duration,
    pub p95: Duration,
    pub max: Duration,
    pub mean_datagrams: f64,
    pub first_failure: Option<(u64, Run)>,
}

impl CellResult {
    pub fn completion(&self) -> f64 {
        self.completed as f64 / self.runs as f64
    }

    pub fn row(&self) -> String {
        format!(
            "| {} | {}/{} ({:.1} %) | {:.2} s | {:.2} s | {:.2} s | {:.0} |",
            self.name,
            self.completed,
            self.runs,
            100.0 * self.completion(),
            self.median.as_secs_f64(),
            self.p95.as_secs_f64(),
            self.max.as_secs_f64(),
            self.mean_datagrams
        )
    }
}

pub const TABLE_HEADER: &str =
    "| cell | completed | median | p95 | max | datagrams/handshake |\n|---|---|---|---|---|---|";

/// Runs `seeds` handshakes of a scenario.
pub fn run_cell(scenario: &Scenario, seeds: std::ops::Range<u64>) -> CellResult {
    let mut times = Vec::new();
    let mut datagrams = 0u64;
    let mut completed = 0;
    let mut keys_mismatched = 0;
    let mut first_failure = None;
    let runs = seeds.clone().count();
    for seed in seeds {
        let r = run(scenario, seed);
        datagrams += r.datagrams;
        if r.completed {
            completed += 1;
            times.push(r.elapsed);
            if !r.keys_equal {
                keys_mismatched += 1;
            }
        } else if first_failure.is_none() {
            first_failure = Some((seed, r));
        }
    }
    times.sort();
    let pct = |p: f64| {
        if times.is_empty() {
            Duration::ZERO
        } else {
            times[((times.len() - 1) as f64 * p).round() as usize]
        }
    };
    CellResult {
        name: scenario.name.clone(),
        runs,
        completed,
        keys_mismatched,
        median: pct(0.5),
        p95: pct(0.95),
        max: times.last().copied().unwrap_or_default(),
        mean_datagrams: datagrams as f64 / runs as f64,
        first_failure,
    }
}

/// The loss columns of the main matrix.
pub fn loss_columns() -> Vec<(&'static str, Loss)> {
    vec![
        ("0 %", Loss::None),
        ("10 %", Loss::Random(0.10)),
        ("30 %", Loss::Random(0.30)),
        ("50 %", Loss::Random(0.50)),
        (
            "burst (GE 5 %/30 %, mean 14 %)",
            Loss::Burst {
                p_good_to_bad: 0.05,
                p_bad_to_good: 0.30,
            },
        ),
    ]
}

/// Every cell of the main matrix: certificate x datagram size x loss, fragments re-cut.
pub fn main_matrix() -> Vec<Scenario> {
    let mut out = Vec::new();
    for large in [false, true] {
        for mtu in [1200, 200] {
            for (label, loss) in loss_columns() {
                let mut s = Scenario::new(format!(
                    "{} leaf, {} B datagrams, loss {}, re-cut",
                    if large { "7 KB" } else { "P-256" },
                    mtu,
                    label
                ));
                s.large_certificate = large;
                s.max_datagram_size = mtu;
                s.loss = loss;
                s.recut = true;
                out.push(s);
            }
        }
    }
    out
}

/// Duplication, reordering and jitter on top of 10 % loss.
pub fn disorder_matrix() -> Vec<Scenario> {
    let mut out = Vec::new();
    for large in [false, true] {
        let mut s = Scenario::new(format!(
            "{} leaf, 200 B, 10 % loss + 10 % duplication + 20 % reordering + 10 ms jitter",
            if large { "7 KB" } else { "P-256" }
        ));
        s.large_certificate = large;
        s.max_datagram_size = 200;
        s.loss = Loss::Random(0.10);
        s.duplicate = 0.10;
        s.reorder = 0.20;
        s.jitter = Duration::from_millis(10);
        s.recut = true;
        out.push(s);
    }
    out
}

/// Each flight of each side lost once, with and without HelloVerifyRequest.
pub fn targeted_matrix() -> Vec<Scenario> {
    let mut out = Vec::new();
    for hello_verify in [false, true] {
        for large in [false, true] {
            for flight in Flight::ALL {
                if flight == Flight::HelloVerifyRequest && !hello_verify {
                    continue;
                }
                let mut s = Scenario::new(format!(
                    "lose {:?} once, {} leaf, 200 B{}",
                    flight,
                    if large { "7 KB" } else { "P-256" },
                    if hello_verify {
                        ", HelloVerifyRequest"
                    } else {
                        ""
                    }
                ));
                s.large_certificate = large;
                s.max_datagram_size = 200;
                s.targeted = Some(flight);
                s.hello_verify = hello_verify;
                out.push(s);
            }
        }
    }
    out
}

/// A few cells again with every recovery feature off (fixed 1 s timer, no re-send on the
/// peer's repeat, no final-flight retention, no redundancy): what each feature buys.
pub fn naive_matrix() -> Vec<Scenario> {
    let mut out = Vec::new();
    for (label, recovery) in [
        ("all recovery off", sluice_dtls::Recovery::NONE),
        (
            "no final-flight retention",
            Recovery {
                retain_final_flight: false,
                ..Recovery::FULL
            },
        ),
        (
            "no re-send on repeat",
            Recovery {
                resend_on_repeat: false,
                ..Recovery::FULL
            },
        ),
        (
            "fixed 1 s timer",
            Recovery {
                adaptive_timer: false,
                ..Recovery::FULL
            },
        ),
        (
            "no redundant retransmission",
            Recovery {
                redundant_retransmission: false,
                ..Recovery::FULL
            },
        ),
    ] {
        let mut s = Scenario::new(format!("{label}: lose ServerFinished once, P-256, 1200 B"));
        s.targeted = Some(Flight::ServerFinished);
        s.recovery = recovery;
        out.push(s);
        for (loss_label, loss) in [("30 %", 0.30), ("50 %", 0.50)] {
            let mut s = Scenario::new(format!("{label}: P-256, 200 B, loss {loss_label}, re-cut"));
            s.max_datagram_size = 200;
            s.loss = Loss::Random(loss);
            s.recut = true;
            s.recovery = recovery;
            out.push(s);
        }
    }
    out
}

/// The main matrix, the disorder cells and every 1.3 flight lost once, with DTLS 1.3.
pub fn matrix_13() -> Vec<Scenario> {
    let mut out: Vec<Scenario> = main_matrix()
        .into_iter()
        .chain(disorder_matrix())
        .map(Scenario::dtls13)
        .collect();
    out.extend(retry_matrix_13());
    out.extend(targeted_matrix_13());
    out.extend(hybrid_matrix_13());
    out
}

/// The main matrix with DTLS 1.3 and the default groups (the hybrid first).
pub fn hybrid_matrix_13() -> Vec<Scenario> {
    main_matrix()
        .into_iter()
        .map(|s| s.dtls13().hybrid())
        .collect()
}

/// Random loss with a HelloRetryRequest first: for a group (the server has only P-256),
/// or with a cookie (address validation).
pub fn retry_matrix_13() -> Vec<Scenario> {
    let mut out = Vec::new();
    for (retry, hello_verify, server_groups) in [
        (
            "retry for P-256",
            false,
            Some(vec![sluice_dtls::NamedGroup::P256]),
        ),
        ("retry with a cookie", true, None),
    ] {
        for (large, loss) in [(false, 0.3), (true, 0.5)] {
            let mut s = Scenario::new(format!(
                "{} leaf, 200 B datagrams, loss {} %, re-cut, {retry}",
                if large { "7 KB" } else { "P-256" },
                (loss * 100.0) as u32
            ))
            .dtls13();
            s.large_certificate = large;
            s.max_datagram_size = 200;
            s.loss = Loss::Random(loss);
            s.recut = true;
            s.hello_verify = hello_verify;
            s.server_groups = server_groups.clone();
            out.push(s);
        }
    }
    out
}

/// Each DTLS 1.3 flight (the ACK included) lost once; then the same with a
/// HelloRetryRequest first (for a group, or for address validation with a cookie), where
/// "ServerHelloToFinished13" is the retry request.
pub fn targeted_matrix_13() -> Vec<Scenario> {
    let mut out = Vec::new();
    for (retry, hello_verify, server_groups) in [
        ("", false, None),
        (
            ", retry for P-256",
            false,
            Some(vec![sluice_dtls::NamedGroup::P256]),
        ),
        (", retry with a cookie", true, None),
    ] {
        for large in [false, true] {
            if !retry.is_empty() && large {
                continue;
            }
            for flight in Flight::ALL_13 {
                let mut s = Scenario::new(format!(
                    "lose {:?} once, {} leaf, 200 B{retry}",
                    flight,
                    if large { "7 KB" } else { "P-256" },
                ))
                .dtls13();
                s.large_certificate = large;
                s.max_datagram_size = 200;
                s.targeted = Some(flight);
                s.hello_verify = hello_verify;
                s.server_groups = server_groups.clone();
                out.push(s);
            }
        }
    }
    out
}
