//! The sans-IO core of `sluice-netsim-relay`: per-client links and the relay's
//! command-line options. The binary only owns sockets, the clock and signals.
//!
//! Loop: `handle_client_datagram` / `handle_upstream_datagram` on input, drain
//! `poll_transmit(now)`, sleep until `poll_timeout()` or the next datagram.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::{GilbertElliott, Link, LinkConfig, LinkStats, NetsimError, SimRng};

/// Default bound on distinct client addresses.
pub const DEFAULT_MAX_CLIENTS: usize = 256;

/// Default bound on bytes inside one relay link (256 clients x 2 links x 1 MiB
/// bounds the relay's queues at 512 MiB in the worst case).
pub const DEFAULT_RELAY_MAX_IN_FLIGHT_BYTES: usize = 1024 * 1024;

/// Default hold-back of a reordered datagram when `--reorder` is given alone.
pub const DEFAULT_REORDER_DELAY: Duration = Duration::from_millis(10);

/// Index of a client in the relay (also the index of its upstream socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub usize);

/// What the relay did with a client's datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// From a known client.
    Known(ClientId),
    /// From a new client: the shell must open an upstream socket for it.
    New(ClientId),
    /// The client table is full; the datagram was dropped.
    Rejected,
}

/// Where a datagram leaving the relay goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// To the upstream server, from this client's own socket.
    Upstream(ClientId),
    /// Back to a client, from the listening socket.
    Client(SocketAddr),
}

/// One datagram for the shell to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayTransmit {
    /// Where it goes.
    pub destination: Destination,
    /// Its bytes.
    pub datagram: Vec<u8>,
}

/// Per-direction totals over all clients, printed as JSON on exit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RelayStats {
    /// Client -> server.
    pub up: LinkStats,
    /// Server -> client.
    pub down: LinkStats,
    /// Distinct clients seen.
    pub clients: usize,
    /// Datagrams dropped because the client table was full.
    pub rejected_datagrams: u64,
}

struct Client {
    addr: SocketAddr,
    up: Link,
    down: Link,
}

/// Relay state: one pair of links per client address, like a NAT binding.
pub struct Relay {
    up: LinkConfig,
    down: LinkConfig,
    rng: SimRng,
    max_clients: usize,
    clients: Vec<Client>,
    by_addr: HashMap<SocketAddr, ClientId>,
    rejected_datagrams: u64,
    /// Round-robin start for `poll_transmit`, so one busy client cannot starve others.
    cursor: usize,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("clients", &self.clients.len())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay applying `up` to client->server and `down` to server->client traffic.
    /// Each client's links are seeded from `seed` in arrival order and created at the
    /// client's first datagram (the origin of its `loss_window`).
    pub fn new(up: LinkConfig, down: LinkConfig, seed: u64, max_clients: usize) -> Self {
        Self {
            up,
            down,
            rng: SimRng::new(seed),
            max_clients,
            clients: Vec::new(),
            by_addr: HashMap::new(),
            rejected_datagrams: 0,
            cursor: 0,
        }
    }

    /// A datagram from a client arrived on the listening socket.
    pub fn handle_client_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: Vec<u8>,
    ) -> Admission {
        let (id, admission) = match self.by_addr.get(&from) {
            Some(id) => (*id, Admission::Known(*id)),
            None if self.clients.len() >= self.max_clients => {
                self.rejected_datagrams += 1;
                return Admission::Rejected;
            }
            None => {
                let id = ClientId(self.clients.len());
                let up = Link::new(self.up.clone(), self.rng.fork(), now);
                let down = Link::new(self.down.clone(), self.rng.fork(), now);
                self.clients.push(Client {
                    addr: from,
                    up,
                    down,
                });
                self.by_addr.insert(from, id);
                (id, Admission::New(id))
            }
        };
        if let Some(client) = self.clients.get_mut(id.0) {
            client.up.send(now, datagram);
        }
        admission
    }

    /// A datagram from the server arrived on `client`'s upstream socket.
    pub fn handle_upstream_datagram(&mut self, now: Instant, client: ClientId, datagram: Vec<u8>) {
        if let Some(client) = self.clients.get_mut(client.0) {
            client.down.send(now, datagram);
        }
    }

    /// Next datagram due at `now`; drain until `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<RelayTransmit> {
        let count = self.clients.len();
        for step in 0..count {
            let index = (self.cursor + step) % count;
            let client = self.clients.get_mut(index)?;
            if let Some(datagram) = client.up.poll_deliver(now) {
                self.cursor = (index + 1) % count;
                return Some(RelayTransmit {
                    destination: Destination::Upstream(ClientId(index)),
                    datagram,
                });
            }
            if let Some(datagram) = client.down.poll_deliver(now) {
                self.cursor = (index + 1) % count;
                return Some(RelayTransmit {
                    destination: Destination::Client(client.addr),
                    datagram,
                });
            }
        }
        None
    }

    /// The next instant a datagram is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.clients
            .iter()
            .flat_map(|c| [c.up.poll_timeout(), c.down.poll_timeout()])
            .flatten()
            .min()
    }

    /// Totals per direction.
    pub fn stats(&self) -> RelayStats {
        let mut stats = RelayStats {
            clients: self.clients.len(),
            rejected_datagrams: self.rejected_datagrams,
            ..RelayStats::default()
        };
        for client in &self.clients {
            stats.up.add(&client.up.stats());
            stats.down.add(&client.down.stats());
        }
        stats
    }
}

/// Everything the relay binary needs, parsed from its command line.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayConfig {
    /// Address clients send to (port 0 picks one; the binary prints it).
    pub listen: SocketAddr,
    /// The server all clients are relayed to.
    pub upstream: SocketAddr,
    /// Client -> server impairments.
    pub up: LinkConfig,
    /// Server -> client impairments.
    pub down: LinkConfig,
    /// Seed for every random choice.
    pub seed: u64,
    /// Exit after this long; `None` = until SIGTERM/SIGINT.
    pub duration: Option<Duration>,
    /// Bound on distinct client addresses.
    pub max_clients: usize,
}

/// `--help` text of the relay binary.
pub const USAGE: &str = "\
sluice-netsim-relay --listen ADDR --upstream ADDR [options]

UDP relay applying a seeded impairment model per direction. Each client address
gets its own upstream socket (like a NAT). Prints `listening on ADDR` to stderr
on start and one JSON line of per-direction stats to stdout on exit.

General:
  --seed N                 random seed (default 0)
  --duration-s SECS        exit after SECS seconds (fractions allowed)
  --max-clients N          distinct client addresses (default 256)

Impairments, each as --NAME (both directions), --up-NAME (client->server)
or --down-NAME (server->client); direction-specific options win:
  loss P                   Bernoulli loss probability 0..1
  burst P_GB,P_BG          Gilbert burst loss (replaces loss)
  loss-window-s FROM,TO    loss applies only in this interval (seconds after
                           the client's first datagram)
  delay-ms MS              one-way delay
  jitter-ms MS             uniform +-jitter (keeps order)
  duplicate P              duplication probability
  reorder P                probability a datagram is held back ...
  reorder-delay-ms MS      ... by this much (default 10)
  rate-kbps KBPS           bottleneck rate
  queue-bytes N            bottleneck queue (default 65536)
  mtu BYTES                drop datagrams larger than this
  recut-dtls               re-fragment DTLS handshake records (no value)
  recut-size BYTES         datagram size for re-cutting (default: original)
  max-in-flight-bytes N    bytes held per client link (default 1 MiB)
Example: --loss 0.1 --delay-ms 40 --down-rate-kbps 225 --up-burst 0.05,0.5
";

/// Which directions an option applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Both,
    Up,
    Down,
}

fn invalid(option: &str, reason: impl Into<String>) -> NetsimError {
    NetsimError::InvalidOption {
        option: option.to_string(),
        reason: reason.into(),
    }
}

fn number<T: std::str::FromStr>(option: &str, value: &str) -> Result<T, NetsimError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(option, format!("cannot parse {value:?}")))
}

fn pair_of<T: std::str::FromStr>(option: &str, value: &str) -> Result<(T, T), NetsimError> {
    let (a, b) = value
        .split_once(',')
        .ok_or_else(|| invalid(option, "expects two comma-separated values"))?;
    Ok((number(option, a)?, number(option, b)?))
}

fn seconds(option: &str, value: &str) -> Result<Duration, NetsimError> {
    duration_from_secs(option, number(option, value)?)
}

fn duration_from_secs(option: &str, secs: f64) -> Result<Duration, NetsimError> {
    Duration::try_from_secs_f64(secs).map_err(|_| invalid(option, "not a valid duration"))
}

fn millis(option: &str, value: &str) -> Result<Duration, NetsimError> {
    let ms: f64 = number(option, value)?;
    duration_from_secs(option, ms / 1000.0)
}

/// Per-direction option names that take no value.
const FLAGS: &[&str] = &["recut-dtls"];

/// Applies one per-direction option to `config`.
fn apply(config: &mut LinkConfig, key: &str, option: &str, value: &str) -> Result<(), NetsimError> {
    match key {
        "loss" => config.loss = number(option, value)?,
        "burst" => {
            let (p_gb, p_bg) = pair_of(option, value)?;
            config.burst = Some(GilbertElliott::gilbert(p_gb, p_bg));
        }
        "loss-window-s" => {
            let (from, to): (f64, f64) = pair_of(option, value)?;
            config.loss_window = Some((
                duration_from_secs(option, from)?,
                duration_from_secs(option, to)?,
            ));
        }
        "delay-ms" => config.delay = millis(option, value)?,
        "jitter-ms" => config.jitter = millis(option, value)?,
        "duplicate" => config.duplicate = number(option, value)?,
        "reorder" => config.reorder = number(option, value)?,
        "reorder-delay-ms" => config.reorder_delay = millis(option, value)?,
        "rate-kbps" => {
            let kbps: f64 = number(option, value)?;
            if !(kbps.is_finite() && kbps > 0.0) {
                return Err(invalid(option, "must be a positive rate"));
            }
            config.rate_bps = Some((kbps * 1000.0).round() as u64);
        }
        "queue-bytes" => config.queue_bytes = number(option, value)?,
        "mtu" => config.max_datagram_size = Some(number(option, value)?),
        "recut-dtls" => config.recut_dtls = true,
        "recut-size" => config.recut_datagram_size = Some(number(option, value)?),
        "max-in-flight-bytes" => config.max_in_flight_bytes = number(option, value)?,
        _ => return Err(invalid(option, "unknown option (see --help)")),
    }
    Ok(())
}

impl RelayConfig {
    /// Parses the relay's arguments (without the program name). Accepts
    /// `--name value` and `--name=value`.
    pub fn from_args<I, S>(args: I) -> Result<Self, NetsimError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut listen = None;
        let mut upstream = None;
        let mut seed = 0;
        let mut duration = None;
        let mut max_clients = DEFAULT_MAX_CLIENTS;
        let mut link_options: Vec<(Scope, String, String, String)> = Vec::new();

        let mut args = args.into_iter().map(Into::into);
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                return Err(invalid(&arg, "expected an option starting with --"));
            };
            let (name, inline_value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (name.to_string(), None),
            };
            let (scope, key) = if let Some(k) = name.strip_prefix("up-") {
                (Scope::Up, k.to_string())
            } else if let Some(k) = name.strip_prefix("down-") {
                (Scope::Down, k.to_string())
            } else {
                (Scope::Both, name.clone())
            };
            let is_flag = FLAGS.contains(&key.as_str());
            let value = match (inline_value, is_flag) {
                (Some(v), _) => v,
                (None, true) => String::new(),
                (None, false) => args.next().ok_or_else(|| invalid(&name, "missing value"))?,
            };
            match (scope, key.as_str()) {
                (Scope::Both, "listen") => listen = Some(number(&name, &value)?),
                (Scope::Both, "upstream") => upstream = Some(number(&name, &value)?),
                (Scope::Both, "seed") => seed = number(&name, &value)?,
                (Scope::Both, "duration-s") => duration = Some(seconds(&name, &value)?),
                (Scope::Both, "max-clients") => max_clients = number(&name, &value)?,
                _ => link_options.push((scope, key, name, value)),
            }
        }

        let relay_default = LinkConfig {
            max_in_flight_bytes: DEFAULT_RELAY_MAX_IN_FLIGHT_BYTES,
            ..LinkConfig::default()
        };
        let mut up = relay_default.clone();
        let mut down = relay_default;
        // Shorthand first, so direction-specific options override it in any order.
        link_options.sort_by_key(|(scope, ..)| *scope != Scope::Both);
        for (scope, key, name, value) in &link_options {
            if matches!(scope, Scope::Both | Scope::Up) {
                apply(&mut up, key, name, value)?;
            }
            if matches!(scope, Scope::Both | Scope::Down) {
                apply(&mut down, key, name, value)?;
            }
        }
        for config in [&mut up, &mut down] {
            if config.reorder > 0.0 && config.reorder_delay.is_zero() {
                config.reorder_delay = DEFAULT_REORDER_DELAY;
            }
            config.validate()?;
        }
        Ok(Self {
            listen: listen.ok_or_else(|| invalid("listen", "is required"))?,
            upstream: upstream.ok_or_else(|| invalid("upstream", "is required"))?,
            up,
            down,
            seed,
            duration,
            max_clients,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> Result<RelayConfig, NetsimError> {
        RelayConfig::from_args(args.split_whitespace())
    }

    #[test]
    fn shorthand_sets_both_directions_and_specific_options_win() {
        let c = parse(
            "--up-loss 0.3 --listen 127.0.0.1:4000 --upstream 127.0.0.1:5000 \
             --loss 0.1 --delay-ms 40 --down-rate-kbps 225 --seed 9 --duration-s 1.5",
        )
        .unwrap();
        assert_eq!(c.up.loss, 0.3);
        assert_eq!(c.down.loss, 0.1);
        assert_eq!(c.up.delay, Duration::from_millis(40));
        assert_eq!(c.down.delay, Duration::from_millis(40));
        assert_eq!(c.down.rate_bps, Some(225_000));
        assert_eq!(c.up.rate_bps, None);
        assert_eq!(c.seed, 9);
        assert_eq!(c.duration, Some(Duration::from_millis(1500)));
        assert_eq!(c.max_clients, DEFAULT_MAX_CLIENTS);
        assert_eq!(c.up.max_in_flight_bytes, DEFAULT_RELAY_MAX_IN_FLIGHT_BYTES);
    }

    #[test]
    fn parses_burst_window_flags_and_inline_values() {
        let c = parse(
            "--listen=127.0.0.1:0 --upstream 127.0.0.1:5000 --up-burst 0.05,0.5 \
             --loss-window-s 1,2.5 --recut-dtls --down-mtu 1200 --reorder 0.1",
        )
        .unwrap();
        assert_eq!(c.up.burst, Some(GilbertElliott::gilbert(0.05, 0.5)));
        assert!(c.down.burst.is_none());
        assert_eq!(
            c.down.loss_window,
            Some((Duration::from_secs(1), Duration::from_millis(2500)))
        );
        assert!(c.up.recut_dtls && c.down.recut_dtls);
        assert_eq!(c.down.max_datagram_size, Some(1200));
        assert_eq!(c.up.reorder_delay, DEFAULT_REORDER_DELAY);
    }

    #[test]
    fn rejects_bad_options() {
        assert!(parse("--upstream 127.0.0.1:1").is_err());
        assert!(parse("--listen 127.0.0.1:1 --upstream 127.0.0.1:1 --loss 2").is_err());
        assert!(parse("--listen 127.0.0.1:1 --upstream 127.0.0.1:1 --frobnicate 1").is_err());
        assert!(parse("--listen 127.0.0.1:1 --upstream 127.0.0.1:1 --delay-ms").is_err());
        assert!(parse("--listen 127.0.0.1:1 --upstream 127.0.0.1:1 --burst 0.1").is_err());
        assert!(parse("--listen nowhere --upstream 127.0.0.1:1").is_err());
    }

    #[test]
    fn relay_gives_each_client_its_own_links_and_routes_replies() {
        let t0 = Instant::now();
        let mut relay = Relay::new(
            LinkConfig::delayed(Duration::from_millis(10)),
            LinkConfig::delayed(Duration::from_millis(20)),
            1,
            2,
        );
        let c1: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        let c2: SocketAddr = "127.0.0.1:1002".parse().unwrap();
        let c3: SocketAddr = "127.0.0.1:1003".parse().unwrap();
        assert_eq!(
            relay.handle_client_datagram(t0, c1, b"a".to_vec()),
            Admission::New(ClientId(0))
        );
        assert_eq!(
            relay.handle_client_datagram(t0, c2, b"b".to_vec()),
            Admission::New(ClientId(1))
        );
        assert_eq!(
            relay.handle_client_datagram(t0, c1, b"c".to_vec()),
            Admission::Known(ClientId(0))
        );
        assert_eq!(
            relay.handle_client_datagram(t0, c3, b"d".to_vec()),
            Admission::Rejected
        );
        assert_eq!(relay.poll_transmit(t0), None);
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(relay.poll_timeout(), Some(t1));
        let mut sent: Vec<RelayTransmit> = std::iter::from_fn(|| relay.poll_transmit(t1)).collect();
        sent.sort_by_key(|t| t.datagram.clone());
        assert_eq!(
            sent.iter().map(|t| t.destination).collect::<Vec<_>>(),
            vec![
                Destination::Upstream(ClientId(0)),
                Destination::Upstream(ClientId(1)),
                Destination::Upstream(ClientId(0)),
            ]
        );
        relay.handle_upstream_datagram(t1, ClientId(1), b"reply".to_vec());
        let t2 = t1 + Duration::from_millis(20);
        assert_eq!(relay.poll_timeout(), Some(t2));
        assert_eq!(
            relay.poll_transmit(t2),
            Some(RelayTransmit {
                destination: Destination::Client(c2),
                datagram: b"reply".to_vec()
            })
        );
        let stats = relay.stats();
        assert_eq!((stats.up.delivered, stats.down.delivered), (3, 1));
        assert_eq!((stats.clients, stats.rejected_datagrams), (2, 1));
    }
}
