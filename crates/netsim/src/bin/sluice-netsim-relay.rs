//! `sluice-netsim-relay`: a UDP relay applying `sluice_netsim`'s impairment model per
//! direction between real sockets (see `--help`). The only I/O in the crate: the
//! model itself is `sluice_netsim::relay::Relay`, driven here by the real clock.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use sluice_netsim::relay::{
    Admission, ClientId, Destination, Relay, RelayConfig, RelayStats, USAGE,
};
use tokio::net::UdpSocket;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::sleep_until;

/// Largest UDP payload.
const MAX_DATAGRAM_BYTES: usize = 65_535;
/// Upstream datagrams waiting for the main loop; beyond this the reader tasks wait
/// and the kernel's socket buffer absorbs (and eventually drops) the excess.
const UPSTREAM_CHANNEL_DATAGRAMS: usize = 1024;

/// Writes a diagnostic to stderr, ignoring a closed stderr (the relay must keep
/// relaying when whoever started it stopped reading its diagnostics).
fn warn(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "sluice-netsim-relay: {message}");
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let config = match RelayConfig::from_args(args) {
        Ok(config) => config,
        Err(error) => {
            warn(format_args!("{error}\n\n{USAGE}"));
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            warn(format_args!("cannot start runtime: {error}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(stats) => {
            let line = serde_json::to_string(&stats).unwrap_or_else(|_| "{}".to_string());
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
            ExitCode::SUCCESS
        }
        Err(error) => {
            warn(format_args!("{error}"));
            ExitCode::FAILURE
        }
    }
}

/// Opens the per-client upstream socket (like a NAT binding) and starts the task
/// that forwards what the server sends on it.
async fn open_upstream(
    id: ClientId,
    upstream: SocketAddr,
    to_main: mpsc::Sender<(ClientId, Vec<u8>)>,
) -> std::io::Result<Arc<UdpSocket>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = Arc::new(UdpSocket::bind(local).await?);
    socket.connect(upstream).await?;
    let reader = Arc::clone(&socket);
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM_BYTES];
        loop {
            match reader.recv(&mut buf).await {
                Ok(n) => {
                    let datagram = buf.get(..n).unwrap_or_default().to_vec();
                    if to_main.send((id, datagram)).await.is_err() {
                        return;
                    }
                }
                // ICMP port unreachable from a server that is not up yet.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => {
                    warn(format_args!("upstream socket of client {}: {e}", id.0));
                    return;
                }
            }
        }
    });
    Ok(socket)
}

async fn run(config: RelayConfig) -> std::io::Result<RelayStats> {
    let listen = UdpSocket::bind(config.listen).await?;
    let _ = writeln!(std::io::stderr(), "listening on {}", listen.local_addr()?);

    let mut relay = Relay::new(
        config.up.clone(),
        config.down.clone(),
        config.seed,
        config.max_clients,
    );
    let (to_main, mut from_upstream) = mpsc::channel(UPSTREAM_CHANNEL_DATAGRAMS);
    let mut upstream_sockets: Vec<Option<Arc<UdpSocket>>> = Vec::new();
    let end = config.duration.map(|d| tokio::time::Instant::now() + d);
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut buf = vec![0u8; MAX_DATAGRAM_BYTES];

    loop {
        let now = Instant::now();
        while let Some(transmit) = relay.poll_transmit(now) {
            // Send errors (e.g. ICMP unreachable) are the network's business: the
            // datagram is lost, as it would be on a real path. Awaiting (rather than
            // try_send) matters for a fresh socket whose write readiness tokio has
            // not seen yet; a UDP send only waits while the kernel buffer is full.
            match transmit.destination {
                Destination::Upstream(id) => {
                    if let Some(Some(socket)) = upstream_sockets.get(id.0) {
                        let _ = socket.send(&transmit.datagram).await;
                    }
                }
                Destination::Client(addr) => {
                    let _ = listen.send_to(&transmit.datagram, addr).await;
                }
            }
        }
        let wake = relay.poll_timeout().map(tokio::time::Instant::from_std);
        let far = tokio::time::Instant::now();
        tokio::select! {
            received = listen.recv_from(&mut buf) => {
                let (n, from) = match received {
                    Ok(received) => received,
                    Err(e) => {
                        warn(format_args!("listen socket: {e}"));
                        continue;
                    }
                };
                let datagram = buf.get(..n).unwrap_or_default().to_vec();
                if let Admission::New(id) = relay.handle_client_datagram(Instant::now(), from, datagram) {
                    let socket = match open_upstream(id, config.upstream, to_main.clone()).await {
                        Ok(socket) => Some(socket),
                        Err(e) => {
                            warn(format_args!("upstream socket for {from}: {e}"));
                            None
                        }
                    };
                    upstream_sockets.push(socket);
                }
            }
            Some((id, datagram)) = from_upstream.recv() => {
                relay.handle_upstream_datagram(Instant::now(), id, datagram);
            }
            _ = sleep_until(wake.unwrap_or(far)), if wake.is_some() => {}
            _ = sleep_until(end.unwrap_or(far)), if end.is_some() => break,
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    Ok(relay.stats())
}
