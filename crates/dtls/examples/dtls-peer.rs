//! A DTLS-SRTP endpoint over a plain UDP socket: one handshake, then it prints the
//! negotiated SRTP profile and the exported keying material and exits.
//!
//! It exists to check sluice-dtls against other implementations by hand (OpenSSL, the
//! `dtls` crate, another dtls-peer) and to show the engine's run loop with real I/O:
//!
//! ```text
//! cargo run --release -p sluice-dtls --example dtls-peer -- --role server --listen 127.0.0.1:4444
//! cargo run --release -p sluice-dtls --example dtls-peer -- --role client --connect 127.0.0.1:4444
//! openssl s_client -dtls1_2 -connect 127.0.0.1:4444 -use_srtp SRTP_AES128_CM_SHA1_80 \
//!     -keymatexport EXTRACTOR-dtls_srtp -keymatexportlen 60 -cert c.pem -key k.pem
//! ```
//!
//! With no signalling there is no fingerprint to check, so any peer certificate is
//! accepted: never copy that into something that carries real media.

use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_dtls::{
    Certificate, Config, Connection, Event, PeerAuth, Role, SrtpProfile, MIN_DATAGRAM_SIZE,
};

const USAGE: &str = "\
usage: dtls-peer --role server --listen ADDR:PORT [options]
       dtls-peer --role client --connect ADDR:PORT [options]
options:
  --mtu N                largest datagram we send, headers included (default 1200)
  --cert FILE --key FILE PEM certificate and PKCS#8 key (default: fresh P-256 certificate)
  --srtp-profile NAME    offer/accept only this profile, e.g. SRTP_AES128_CM_SHA1_80
  --timeout-s N          give up after N seconds (default 30)
  --linger-ms N          keep answering exactly N ms after completion (default: until the
                         peer has been quiet for the engine's largest retransmission
                         interval, so a peer that lost our final flight gets it again)";

/// Command-line options.
struct Options {
    role: Role,
    address: SocketAddr,
    max_datagram_size: usize,
    cert_and_key: Option<(String, String)>,
    srtp_profile: Option<SrtpProfile>,
    timeout: Duration,
    /// A fixed linger after completion; `None`: linger until the peer is quiet.
    linger: Option<Duration>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let (mut role, mut listen, mut connect) = (None, None, None);
    let (mut cert, mut key, mut srtp_profile) = (None, None, None);
    let mut max_datagram_size = 1200;
    let mut timeout = Duration::from_secs(30);
    let mut linger = None;
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new()); // not an error: print the usage and exit 0
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        let address = |v: &str| {
            v.parse::<SocketAddr>()
                .map_err(|_| format!("{flag}: not an ADDR:PORT: {v}"))
        };
        match flag.as_str() {
            "--role" => {
                role = Some(match value.as_str() {
                    "server" => Role::Server,
                    "client" => Role::Client,
                    _ => return Err(format!("--role: expected server or client, got {value}")),
                })
            }
            "--listen" => listen = Some(address(&value)?),
            "--connect" => connect = Some(address(&value)?),
            "--mtu" => max_datagram_size = number(&value)? as usize,
            "--cert" => cert = Some(value),
            "--key" => key = Some(value),
            "--srtp-profile" => {
                srtp_profile = Some(
                    SrtpProfile::DEFAULT_PREFERENCE
                        .into_iter()
                        .find(|p| p.name().eq_ignore_ascii_case(&value))
                        .ok_or_else(|| format!("--srtp-profile: unknown profile {value}"))?,
                )
            }
            "--timeout-s" => timeout = Duration::from_secs(number(&value)?),
            "--linger-ms" => linger = Some(Duration::from_millis(number(&value)?)),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let role = role.ok_or("--role is required")?;
    let address = match (role, listen, connect) {
        (Role::Server, Some(a), None) => a,
        (Role::Client, None, Some(a)) => a,
        (Role::Server, _, _) => return Err("a server needs --listen (and no --connect)".into()),
        (Role::Client, _, _) => return Err("a client needs --connect (and no --listen)".into()),
    };
    if max_datagram_size < MIN_DATAGRAM_SIZE {
        return Err(format!("--mtu must be at least {MIN_DATAGRAM_SIZE}"));
    }
    let cert_and_key = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("--cert and --key go together".into()),
    };
    Ok(Options {
        role,
        address,
        max_datagram_size,
        cert_and_key,
        srtp_profile,
        timeout,
        linger,
    })
}

fn load_certificate(cert_and_key: &Option<(String, String)>) -> Result<Certificate, String> {
    match cert_and_key {
        None => Certificate::generate().map_err(|e| e.to_string()),
        Some((cert, key)) => {
            let read = |path: &str| {
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))
            };
            Certificate::from_pem(&read(cert)?, &read(key)?).map_err(|e| e.to_string())
        }
    }
}

/// Drives one connection to completion plus the linger; `Ok` once keys were printed.
fn run(options: &Options) -> Result<(), String> {
    let certificate = Arc::new(load_certificate(&options.cert_and_key)?);
    eprintln!(
        "dtls-peer: our fingerprint sha-256 {}",
        certificate.fingerprint()
    );
    let mut config = Config::new(certificate);
    // A peer that lost our last flight repeats its own at most this far apart: silence for
    // that long means it has what it needs.
    let quiet = config.max_rto;
    config.max_datagram_size = options.max_datagram_size;
    config.handshake_timeout = options.timeout;
    if let Some(profile) = options.srtp_profile {
        config.srtp_profiles = vec![profile];
    }

    let (socket, mut peer) = match options.role {
        Role::Server => (UdpSocket::bind(options.address), None),
        Role::Client => {
            let any: SocketAddr = if options.address.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            }
            .parse()
            .map_err(|_| "bad wildcard address")?;
            (UdpSocket::bind(any), Some(options.address))
        }
    };
    let socket = socket.map_err(|e| format!("cannot bind: {e}"))?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    eprintln!("dtls-peer: {:?} on {local}", options.role);

    let start = Instant::now();
    let run_deadline = start + options.timeout;
    let peer_address = peer.map(|p| p.to_string()).unwrap_or_default();
    let mut conn = Connection::new(
        Arc::new(config),
        options.role,
        PeerAuth::AcceptAnyCertificate,
        peer_address.as_bytes(),
        start,
    );
    let mut connected_at: Option<Instant> = None;
    let mut last_heard = start;
    let linger_end = |connected: Instant, last_heard: Instant| match options.linger {
        Some(fixed) => connected + fixed,
        None => (last_heard.max(connected) + quiet).min(connected + options.timeout),
    };
    let mut buf = vec![0u8; 65_536];
    loop {
        // 1. Send everything the connection wants sent (a server waits for its peer).
        while let Some(datagram) = conn.poll_transmit() {
            if let Some(to) = peer {
                socket
                    .send_to(&datagram, to)
                    .map_err(|e| format!("send: {e}"))?;
            }
        }
        // 2. React to what happened.
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Connected(c) => {
                    println!("srtp-profile: {}", c.srtp.profile.name());
                    println!("keying-material: {}", c.srtp.exported_hex());
                    eprintln!(
                        "dtls-peer: connected in {:?} (DTLS {}, {:?}, peer sha-256 {})",
                        c.handshake_duration,
                        c.version.as_str(),
                        c.cipher_suite,
                        c.peer_fingerprint
                    );
                    connected_at = Some(Instant::now());
                }
                Event::Failed(e) => return Err(format!("handshake failed: {e}")),
                Event::Closed if connected_at.is_some() => {
                    eprintln!("dtls-peer: peer closed");
                    return Ok(());
                }
                Event::Closed => return Err("peer closed before the handshake completed".into()),
            }
        }
        let now = Instant::now();
        let linger_until = connected_at.map(|c| linger_end(c, last_heard));
        if let Some(until) = linger_until {
            if now >= until {
                conn.close();
                while let Some(datagram) = conn.poll_transmit() {
                    if let Some(to) = peer {
                        let _ = socket.send_to(&datagram, to);
                    }
                }
                return Ok(());
            }
        } else if now >= run_deadline {
            return Err(format!("no handshake within {:?}", options.timeout));
        }
        // 3. Sleep until a datagram arrives or the next timer is due, whichever is first.
        let give_up = connected_at.is_none().then_some(run_deadline);
        let wake = [conn.poll_timeout(), linger_until, give_up]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(run_deadline);
        let wait = wake
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        socket
            .set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                if peer.is_none() {
                    eprintln!("dtls-peer: peer is {from}");
                    peer = Some(from);
                }
                if peer == Some(from) {
                    last_heard = Instant::now();
                    conn.handle_datagram(last_heard, buf.get(..len).unwrap_or_default());
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // The peer's port is not open yet (ICMP unreachable): our timer retries.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(format!("receive: {e}")),
        }
        let now = Instant::now();
        if conn.poll_timeout().is_some_and(|t| now >= t) {
            conn.handle_timeout(now);
        }
    }
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("dtls-peer: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("dtls-peer: {reason}");
            ExitCode::FAILURE
        }
    }
}
