//! The in-process server the end-to-end tests run against: the real HTTP router, signalling
//! and media workers from a YAML configuration, listening on an ephemeral loopback port.
//! Each test binary compiles its own copy and uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use sluice::app::{self, AppState};
use sluice::config::Config;
use sluice::http;
use sluice::metrics::Metrics;
use sluice::shutdown::Shutdown;

/// A running server: its signalling URL and its state (metrics, media plane).
pub struct Server {
    /// `ws://127.0.0.1:PORT/ws`.
    pub url: String,
    /// What the server runs on, for reading metrics and worker addresses.
    pub state: AppState,
}

/// Starts a server from `yaml` (with one media worker, as the tests' configurations say).
pub async fn start_server(yaml: &str) -> Server {
    let config = Arc::new(Config::load_str(yaml).expect("valid test configuration"));
    let state = AppState::new(config, Arc::new(Metrics::with_workers(1)), Shutdown::new());
    let state = app::start_media(state).expect("media plane starts");
    state.set_ready(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr: SocketAddr = listener.local_addr().expect("bound address");
    let app = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    http::bound_send_buffers(&listener);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        url: format!("ws://{addr}/ws"),
        state,
    }
}

impl Server {
    /// The value of a metric sample line, exactly as exposed (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        self.state
            .metrics
            .encode()
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }
}
