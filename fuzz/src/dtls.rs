//! A client and a server `sluice_dtls::Connection` joined in memory, that can be stopped
//! after any flight so a fuzz target starts from a real handshake state.
//!
//! Without HelloVerifyRequest the handshake is four deliveries: client flight 1
//! (ClientHello), server flight 4 (ServerHello..ServerHelloDone), client flight 5
//! (Certificate..Finished), server flight 6 (CCS, Finished). With it, flights 2 and 3 come
//! first (six deliveries).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sluice_dtls::{
    Certificate, CipherSuite, Config, Connection, DtlsVersion, Event, NamedGroup, PeerAuth, Role,
};

/// Datagrams one call may queue before the target calls it unbounded output: a flight
/// of a handshake with small certificates is a handful of datagrams (sent twice when
/// redundant retransmission is on), plus alerts.
pub const MAX_DATAGRAMS_PER_CALL: usize = 64;
/// Events one call may queue.
pub const MAX_EVENTS_PER_CALL: usize = 4;

fn certificates() -> &'static [Arc<Certificate>; 2] {
    static CERTS: OnceLock<[Arc<Certificate>; 2]> = OnceLock::new();
    CERTS.get_or_init(|| {
        let make = || Arc::new(Certificate::generate().expect("certificate generation"));
        [make(), make()]
    })
}

/// Where a handshake between the two engines is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Nothing delivered: the client's ClientHello is pending, the server is fresh.
    BeforeClientHello,
    /// Flight 1 delivered: the server sent flight 4, which is pending.
    AfterFlight1,
    /// Flight 4 delivered: the client sent flight 5, which is pending.
    AfterFlight4,
    /// Flight 5 delivered: the server is connected, its flight 6 is pending.
    AfterFlight5,
    /// Flight 6 delivered: both connected.
    Connected,
}

impl Stage {
    /// Every stage, in handshake order.
    pub const ALL: [Stage; 5] = [
        Stage::BeforeClientHello,
        Stage::AfterFlight1,
        Stage::AfterFlight4,
        Stage::AfterFlight5,
        Stage::Connected,
    ];

    /// The stage a fuzz input's selector byte names.
    pub fn from_byte(byte: u8) -> Stage {
        Stage::ALL[usize::from(byte) % Stage::ALL.len()]
    }

    /// How many flights are delivered to reach this stage (without HelloVerifyRequest;
    /// with it, two more come first).
    pub fn deliveries(self, hello_verify: bool) -> usize {
        let base = match self {
            Stage::BeforeClientHello => 0,
            Stage::AfterFlight1 => 1,
            Stage::AfterFlight4 => 2,
            Stage::AfterFlight5 => 3,
            Stage::Connected => 4,
        };
        if hello_verify && base > 0 {
            base + 2
        } else {
            base
        }
    }
}

/// One side of the pair, with what it queued but nobody received yet.
pub struct Side {
    /// The engine.
    pub conn: Connection,
    /// Datagrams sent and not yet delivered to the peer.
    pub pending: Vec<Vec<u8>>,
    /// Every event so far.
    pub events: Vec<Event>,
}

impl Side {
    /// Moves the engine's queued output into `pending`/`events`, checking the bounds every
    /// target asserts: no datagram larger than the configured size, a bounded number of
    /// datagrams and events per call.
    pub fn collect(&mut self, max_datagram_size: usize) {
        let mut datagrams = 0;
        while let Some(d) = self.conn.poll_transmit() {
            assert!(
                d.len() <= max_datagram_size,
                "datagram of {} bytes exceeds max_datagram_size {max_datagram_size}",
                d.len()
            );
            datagrams += 1;
            assert!(
                datagrams <= MAX_DATAGRAMS_PER_CALL,
                "more than {MAX_DATAGRAMS_PER_CALL} datagrams queued by one call"
            );
            self.pending.push(d);
        }
        let mut events = 0;
        while let Some(e) = self.conn.poll_event() {
            events += 1;
            assert!(
                events <= MAX_EVENTS_PER_CALL,
                "more than {MAX_EVENTS_PER_CALL} events queued by one call"
            );
            self.events.push(e);
        }
    }

    /// True once a Connected event was seen.
    pub fn connected(&self) -> bool {
        self.events.iter().any(|e| matches!(e, Event::Connected(_)))
    }
}

/// A client and a server on a virtual clock.
pub struct Pair {
    /// The client (`a=setup:active`).
    pub client: Side,
    /// The server (`a=setup:passive`).
    pub server: Side,
    /// Virtual time.
    pub now: Instant,
    /// The datagram size both engines are configured with.
    pub max_datagram_size: usize,
    deliveries: usize,
}

impl Pair {
    /// Two engines with real certificates, each expecting the other's fingerprint.
    pub fn new(hello_verify: bool) -> Pair {
        Pair::with_versions(hello_verify, &[DtlsVersion::Dtls12])
    }

    /// The same with the given versions enabled on both sides. With 1.3 the flights are
    /// ClientHello, ServerHello..Finished, Certificate..Finished and the server's ACK.
    pub fn with_versions(hello_verify: bool, versions: &[DtlsVersion]) -> Pair {
        Pair::with_client_config(hello_verify, versions, |_| {})
    }

    /// Like [`Pair::with_versions`], with the client's configuration adjusted by `tweak`.
    pub fn with_client_config(
        hello_verify: bool,
        versions: &[DtlsVersion],
        tweak: impl FnOnce(&mut Config),
    ) -> Pair {
        let [client_cert, server_cert] = certificates().clone();
        let now = Instant::now();
        let mut server_config = Config::new(server_cert.clone());
        server_config.hello_verify = hello_verify;
        server_config.versions = versions.to_vec();
        let mut client_config = Config::new(client_cert.clone());
        client_config.versions = versions.to_vec();
        tweak(&mut client_config);
        let max_datagram_size = client_config.max_datagram_size;
        let client = Connection::new(
            Arc::new(client_config),
            Role::Client,
            PeerAuth::Fingerprint(server_cert.fingerprint()),
            b"server",
            now,
        );
        let server = Connection::new(
            Arc::new(server_config),
            Role::Server,
            PeerAuth::Fingerprint(client_cert.fingerprint()),
            b"client",
            now,
        );
        let side = |conn| Side {
            conn,
            pending: Vec::new(),
            events: Vec::new(),
        };
        let mut pair = Pair {
            client: side(client),
            server: side(server),
            now,
            max_datagram_size,
            deliveries: 0,
        };
        pair.collect();
        pair
    }

    /// A pair driven to `stage`.
    pub fn at(stage: Stage, hello_verify: bool) -> Pair {
        Pair::at_versions(stage, hello_verify, &[DtlsVersion::Dtls12])
    }

    /// A pair with `versions` driven to `stage`.
    pub fn at_versions(stage: Stage, hello_verify: bool, versions: &[DtlsVersion]) -> Pair {
        Pair::at_versions_with(stage, hello_verify, versions, |_| {})
    }

    /// Like [`Pair::at_versions`], with the client's configuration adjusted by `tweak`.
    pub fn at_versions_with(
        stage: Stage,
        hello_verify: bool,
        versions: &[DtlsVersion],
        tweak: impl FnOnce(&mut Config),
    ) -> Pair {
        let mut pair = Pair::with_client_config(hello_verify, versions, tweak);
        // 1.3 negotiates before any HelloVerifyRequest: no extra flights.
        let hello_verify = hello_verify && !versions.contains(&DtlsVersion::Dtls13);
        for _ in 0..stage.deliveries(hello_verify) {
            pair.deliver_next_flight();
        }
        pair
    }

    /// Drains both engines' output into their `pending` queues.
    pub fn collect(&mut self) {
        self.client.collect(self.max_datagram_size);
        self.server.collect(self.max_datagram_size);
    }

    /// The side whose flight is next in the handshake and the side receiving it.
    pub fn next_sender_is_client(&self) -> bool {
        self.deliveries.is_multiple_of(2)
    }

    /// Takes the flight that is next in the handshake (without delivering it).
    pub fn take_next_flight(&mut self) -> Vec<Vec<u8>> {
        let sender = if self.next_sender_is_client() {
            &mut self.client
        } else {
            &mut self.server
        };
        std::mem::take(&mut sender.pending)
    }

    /// Hands `datagrams` to the receiver of the next flight and counts the delivery.
    pub fn deliver_as_next_flight(&mut self, datagrams: &[Vec<u8>]) {
        let to_server = self.next_sender_is_client();
        self.deliveries += 1;
        for d in datagrams {
            self.feed(to_server, d);
        }
    }

    /// Delivers the next real flight unchanged.
    pub fn deliver_next_flight(&mut self) {
        let flight = self.take_next_flight();
        self.deliver_as_next_flight(&flight);
    }

    /// Feeds one datagram to the server (`to_server`) or the client, then collects.
    pub fn feed(&mut self, to_server: bool, datagram: &[u8]) {
        let now = self.now;
        if to_server {
            self.server.conn.handle_datagram(now, datagram);
        } else {
            self.client.conn.handle_datagram(now, datagram);
        }
        self.collect();
    }

    /// Lets `elapsed` pass and runs both engines' timers.
    pub fn advance(&mut self, elapsed: Duration) {
        self.now += elapsed;
        let now = self.now;
        self.client.conn.handle_timeout(now);
        self.server.conn.handle_timeout(now);
        self.collect();
    }

    /// Exchanges everything pending both ways, advancing to the next timer when quiet,
    /// for at most `max_rounds` rounds.
    pub fn run(&mut self, max_rounds: usize) {
        for _ in 0..max_rounds {
            let to_server = std::mem::take(&mut self.client.pending);
            let to_client = std::mem::take(&mut self.server.pending);
            if to_server.is_empty() && to_client.is_empty() {
                let next = [
                    self.client.conn.poll_timeout(),
                    self.server.conn.poll_timeout(),
                ]
                .into_iter()
                .flatten()
                .min();
                match next {
                    Some(t) => self.advance(t.saturating_duration_since(self.now)),
                    None => return,
                }
                continue;
            }
            for d in &to_server {
                self.feed(true, d);
            }
            for d in &to_client {
                self.feed(false, d);
            }
        }
    }
}

/// Time that passes before a frame, from its control byte: 0..=199 in 5 ms steps (below
/// and around the retransmission timer), 200..=255 in 1 s steps (backoff, the deadline).
pub fn elapsed_from_control(control: u8) -> Duration {
    if control < 200 {
        Duration::from_millis(5 * u64::from(control))
    } else {
        Duration::from_secs(u64::from(control - 200))
    }
}

/// The body of the `dtls_server` and `dtls_client` targets.
///
/// Input: a selector byte (bits 0-2: the [`Stage`], modulo 5; bit 3: the server sends a
/// HelloVerifyRequest; bit 4: afterwards deliver the real pending flight and let the
/// handshake run on; bit 5: both sides speak DTLS 1.3 and 1.2, so 1.3 is negotiated;
/// bit 7: the client offers neither the X25519MLKEM768 hybrid nor AES-128-GCM, so a 1.3
/// handshake runs on X25519 and the SHA-384 suite instead of the hybrid and SHA-256),
/// then frames `[control][len u16][datagram]` fed to one side, each after the time
/// [`elapsed_from_control`] names.
pub fn fuzz_one_side(data: &[u8], to_server: bool) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let hello_verify = selector & 0x08 != 0;
    let versions: &[DtlsVersion] = if selector & 0x20 != 0 {
        &[DtlsVersion::Dtls13, DtlsVersion::Dtls12]
    } else {
        &[DtlsVersion::Dtls12]
    };
    let classical = selector & 0x80 != 0;
    let mut pair = Pair::at_versions_with(
        Stage::from_byte(selector & 0x07),
        hello_verify,
        versions,
        |config| {
            if classical {
                config.groups = vec![NamedGroup::X25519, NamedGroup::P256];
                config.cipher_suites.retain(|s| *s != CipherSuite::Tls13Aes128GcmSha256);
                config.cipher_suites.retain(|s| *s != CipherSuite::Tls13Chacha20Poly1305Sha256);
            }
        },
    );
    for frame in crate::frames(rest, 32) {
        pair.advance(elapsed_from_control(frame.control));
        pair.feed(to_server, frame.bytes);
    }
    if selector & 0x10 != 0 {
        pair.run(24);
    }
}

/// DTLS record header length.
const RECORD_HEADER_BYTES: usize = 13;
/// Handshake fragment header length (inside a handshake record's body).
const FRAGMENT_HEADER_BYTES: usize = 12;

/// Byte offsets of the records of a datagram, by their length fields (stops at the first
/// record that does not fit).
pub fn record_starts(datagram: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut pos = 0;
    while let Some(len) = datagram.get(pos + 11..pos + RECORD_HEADER_BYTES) {
        starts.push(pos);
        pos += RECORD_HEADER_BYTES + usize::from(u16::from_be_bytes([len[0], len[1]]));
    }
    starts
}

/// Applies one 4-byte mutation `[kind | datagram << 3, a, b, v]` to a flight.
///
/// Kinds: 0 xor `v` into byte `ab`; 1 xor `v` into byte `b % 25` of record `a`'s record and
/// fragment headers; 2 set a 24-bit fragment field (`b % 3`: length, offset, fragment
/// length) of record `a` to `v << (8 * (b / 3 % 3))`; 3 truncate at `ab`; 4 duplicate the
/// datagram; 5 drop it; 6 swap it with the next; 7 insert `v` at `ab`.
pub fn mutate_flight(flight: &mut Vec<Vec<u8>>, op: [u8; 4]) {
    if flight.is_empty() {
        return;
    }
    let [selector, a, b, v] = op;
    let index = usize::from(selector >> 3) % flight.len();
    let ab = usize::from(u16::from_be_bytes([a, b]));
    match selector & 7 {
        4 => {
            let copy = flight[index].clone();
            flight.push(copy);
            return;
        }
        5 => {
            flight.remove(index);
            return;
        }
        6 => {
            let other = (index + 1) % flight.len();
            flight.swap(index, other);
            return;
        }
        _ => {}
    }
    let d = &mut flight[index];
    match selector & 7 {
        0 => {
            if !d.is_empty() {
                let at = ab % d.len();
                d[at] ^= v;
            }
        }
        1 | 2 => {
            let starts = record_starts(d);
            if starts.is_empty() {
                return;
            }
            let start = starts[usize::from(a) % starts.len()];
            if selector & 7 == 1 {
                let at = start + usize::from(b) % (RECORD_HEADER_BYTES + FRAGMENT_HEADER_BYTES);
                if let Some(byte) = d.get_mut(at) {
                    *byte ^= v;
                }
            } else {
                // length at +1, fragment_offset at +6, fragment_length at +9 of the fragment.
                let field = [1, 6, 9][usize::from(b) % 3];
                let value = u32::from(v) << (8 * (usize::from(b) / 3 % 3));
                let at = start + RECORD_HEADER_BYTES + field;
                if let Some(bytes) = d.get_mut(at..at + 3) {
                    bytes.copy_from_slice(&value.to_be_bytes()[1..]);
                }
            }
        }
        3 => {
            let at = ab % (d.len() + 1);
            d.truncate(at);
        }
        _ => {
            let at = ab % (d.len() + 1);
            d.insert(at, v);
        }
    }
}

/// The body of the `dtls_mutate` target.
///
/// Input: a selector byte (bits 0-2: which flight of the handshake to corrupt, modulo the
/// number of flights; bit 3: HelloVerifyRequest on), then 4-byte operations for
/// [`mutate_flight`]. The real handshake runs up to that flight, the corrupted flight is
/// delivered instead of the real one, and the handshake then runs on (retransmissions
/// are real) until it completes, fails or a round limit is reached.
pub fn fuzz_mutated_flight(data: &[u8]) {
    let Some((&selector, ops)) = data.split_first() else {
        return;
    };
    let hello_verify = selector & 0x08 != 0;
    let flights = if hello_verify { 6 } else { 4 };
    let corrupt = usize::from(selector & 0x07) % flights;
    let mut pair = Pair::new(hello_verify);
    for _ in 0..corrupt {
        pair.deliver_next_flight();
    }
    let mut flight = pair.take_next_flight();
    let mut mutated = false;
    for op in ops.chunks_exact(4).take(32) {
        mutate_flight(&mut flight, [op[0], op[1], op[2], op[3]]);
        mutated = true;
        if flight.len() > 64 {
            break;
        }
    }
    pair.deliver_as_next_flight(&flight);
    pair.run(48);
    if !mutated {
        assert!(
            pair.client.connected() && pair.server.connected(),
            "an untouched handshake must complete"
        );
    }
}
