//! The Sluice server: the only place that performs I/O.
//!
//! Start-up: parse the command line, load and validate the configuration (exit 2
//! with the offending key path if it is invalid), start logging, bind HTTP, and
//! serve until SIGTERM or SIGINT. Shutdown: `/readyz` turns 503, no new connection
//! is accepted, open ones get `shutdown.grace_period_ms` to finish, exit 0.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use sluice::app::{self, AppState};
use sluice::config::{Config, DEFAULT_CONFIG_YAML};
use sluice::http;
use sluice::logging;
use sluice::metrics::Metrics;
use sluice::shutdown::Shutdown;

/// Exit code for an invalid configuration or command line.
const EXIT_INVALID_CONFIG: u8 = 2;
/// Exit code for a failure at run time (e.g. the HTTP port is taken).
const EXIT_RUNTIME_ERROR: u8 = 1;

/// A WebRTC selective forwarding unit whose DTLS-SRTP handshakes complete on
/// slow, lossy links.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    /// YAML configuration file; without it the embedded default is used.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the configuration, print the result and exit (0 valid, 2 invalid).
    #[arg(long)]
    check_config: bool,
    /// Print the embedded default configuration (documented YAML) and exit.
    #[arg(long, conflicts_with_all = ["config", "check_config"])]
    print_default_config: bool,
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
enum ServerError {
    #[error("cannot bind http.listen {addr}: {source}")]
    BindHttp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install the signal handler: {0}")]
    Signals(#[source] std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("media plane: {0}")]
    Media(#[from] sluice::media::MediaError),
    #[error("{0}")]
    Cluster(#[from] sluice::app::ClusterStartError),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{DEFAULT_CONFIG_YAML}");
        return ExitCode::SUCCESS;
    }
    let source = cli.config.as_ref().map_or_else(
        || "the embedded default".to_owned(),
        |path| path.display().to_string(),
    );
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("sluice: invalid configuration in {source}:");
            for line in err.to_string().lines() {
                eprintln!("  {line}");
            }
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    if cli.check_config {
        println!("sluice: configuration in {source} is valid");
        return ExitCode::SUCCESS;
    }
    let _log_guard = match logging::init(&config.log) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("sluice: {err}");
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    tracing::info!(config = %source, version = env!("CARGO_PKG_VERSION"), "sluice starting");
    match run(config) {
        Ok(()) => {
            tracing::info!("sluice stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = %err, "sluice failed");
            eprintln!("sluice: {err}");
            ExitCode::from(EXIT_RUNTIME_ERROR)
        }
    }
}

/// Builds the multi-thread runtime and serves until a stop signal.
fn run(config: Config) -> Result<(), ServerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice-http")
        .build()
        .map_err(ServerError::Runtime)?;
    runtime.block_on(serve(Arc::new(config)))
}

async fn serve(config: Arc<Config>) -> Result<(), ServerError> {
    if config.auth.is_development_mode() {
        tracing::warn!("auth.keys is empty: unsigned joins are accepted (development mode)");
    }
    let shutdown = Shutdown::new();
    let metrics = Arc::new(Metrics::with_workers(config.media.resolved_workers()));
    let state = AppState::new(Arc::clone(&config), metrics, shutdown.clone());
    let announce: Vec<String> = state.announce.iter().map(ToString::to_string).collect();
    tracing::info!(
        media_listen = %config.media.listen,
        workers = config.media.resolved_workers(),
        announce = ?announce,
        "media configuration"
    );
    let state = app::start_media(state)?;
    let state = app::start_cluster(state)?;
    if let Some(cluster) = state.cluster.clone() {
        // Registered before the node reports ready, so a join it accepts can be placed
        // at once; an unreachable Redis only delays that (the heartbeat retries).
        if let Err(error) = cluster.beat().await {
            tracing::warn!(%error, "redis unreachable at start: retrying in the background");
        }
        tracing::info!(node = cluster.node_id(), "cluster member");
        tokio::spawn(Arc::clone(&cluster).run(shutdown.clone()));
    }
    let mut stop_signals = StopSignals::install().map_err(ServerError::Signals)?;

    let listen = config.http.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServerError::BindHttp {
            addr: listen,
            source,
        })?;
    let local_addr = listener.local_addr().unwrap_or(listen);
    let app = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    http::bound_send_buffers(&listener);
    let server = axum::serve(listener, app).with_graceful_shutdown({
        let shutdown = shutdown.clone();
        async move { shutdown.begun().await }
    });
    let mut server = tokio::spawn(async move { server.await });
    state.set_ready(true);
    tracing::info!(http_listen = %local_addr, "HTTP listening");

    tokio::select! {
        signal = stop_signals.next() => tracing::info!(signal, "stop signal received: shutting down"),
        result = &mut server => {
            // The accept loop only ends on its own if it failed.
            return match result {
                Ok(Err(err)) => Err(ServerError::Serve(err)),
                _ => Ok(()),
            };
        }
    }

    let signalled = tokio::time::Instant::now();
    state.set_draining();
    if let Some(rooms) = &state.rooms {
        rooms.stop_opening_rooms();
    }
    if let Some(cluster) = &state.cluster {
        cluster.drain().await;
    }
    let drain_period = config.shutdown.drain_period();
    if !drain_period.is_zero() {
        tracing::info!(
            drain_period_ms = config.shutdown.drain_period_ms,
            rooms = open_rooms(&state),
            "draining: calls in progress go on, no new room opens"
        );
        tokio::select! {
            () = rooms_closed(&state) => tracing::info!("draining: every room has closed"),
            () = tokio::time::sleep(drain_period) => tracing::info!(
                rooms = open_rooms(&state),
                "drain period over: ending the sessions still open"
            ),
            signal = stop_signals.next() => tracing::warn!(signal, "second stop signal: ending the sessions now"),
        }
    }
    if let Some(cluster) = &state.cluster {
        cluster.move_rooms().await;
    }
    shutdown.begin();
    let grace_period = config
        .shutdown
        .grace_period()
        .saturating_sub(signalled.elapsed());
    let drained = async {
        let _ = server.await;
        shutdown.idle().await;
    };
    tokio::select! {
        result = tokio::time::timeout(grace_period, drained) => match result {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!(
                open_connections = shutdown.open_connections(),
                grace_period_ms = config.shutdown.grace_period_ms,
                "grace period over: closing open connections"
            ),
        },
        signal = stop_signals.next() => tracing::warn!(signal, "second stop signal: exiting now"),
    }
    if let Some(cluster) = &state.cluster {
        cluster.leave().await;
    }
    Ok(())
}

fn open_rooms(state: &AppState) -> usize {
    state.rooms.as_ref().map_or(0, |rooms| rooms.room_count())
}

/// Resolves once no room is open: a draining node then has nothing left to wait for.
async fn rooms_closed(state: &AppState) {
    // Rooms close from many tasks; a glance four times a second is all the exit needs.
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    while open_rooms(state) > 0 {
        ticker.tick().await;
    }
}

/// SIGTERM and SIGINT (Ctrl-C).
struct StopSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        Ok(Self {})
    }

    /// Waits for the next stop signal and names it.
    #[cfg(unix)]
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
