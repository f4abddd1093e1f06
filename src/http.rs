//! The HTTP server: demo page, health and readiness probes, metrics, and the
//! signalling WebSocket.
//!
//! | route      | what                                                        |
//! |------------|-------------------------------------------------------------|
//! | `GET /`    | the demo page (`src/web/index.html`), `/app.js` its script   |
//! | `/healthz` | 200 `ok` while the process runs (liveness)                   |
//! | `/readyz`  | 200 while taking new clients, 503 while draining and after   |
//! | `/metrics` | OpenMetrics text exposition of [`Metrics`]                  |
//! | `/debug/subscribers` | with `http.debug_endpoints`: every subscriber's estimate, allocation and layers (JSON) |
//! | `/ws`      | WebSocket upgrade, handed to [`signaling::handle_socket`]    |
//!
//! The router needs `ConnectInfo<SocketAddr>` for `/ws` (the peer address feeds
//! per-source limits): serve it with
//! `router(state).into_make_service_with_connect_info::<SocketAddr>()`.

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::{IpAddr, SocketAddr};

use crate::app::AppState;
use crate::metrics::{AdmissionRefusal, OPENMETRICS_CONTENT_TYPE};
use crate::signaling;

/// Kernel send buffer of every HTTP/WebSocket connection (Linux doubles the value for
/// its bookkeeping). Loopback and LAN connections would otherwise autotune it to
/// megabytes, so a client that stops reading would hold that much memory before its
/// writes block and `signaling.send_timeout_ms` can end it. 64 KiB still carries a
/// 256 KiB offer at the pace the client reads it.
pub const SOCKET_SEND_BUFFER_BYTES: usize = 64 * 1024;

/// Bounds the send buffer of every connection `listener` accepts to
/// [`SOCKET_SEND_BUFFER_BYTES`] (accepted sockets inherit it from the listening one).
pub fn bound_send_buffers(listener: &tokio::net::TcpListener) {
    if let Err(error) = nix::sys::socket::setsockopt(
        listener,
        nix::sys::socket::sockopt::SndBuf,
        &SOCKET_SEND_BUFFER_BYTES,
    ) {
        tracing::warn!(%error, "cannot bound the HTTP connections' send buffers");
    }
}

/// The demo page, embedded so the binary is self-contained.
pub const INDEX_HTML: &str = include_str!("web/index.html");
/// The demo page's script.
pub const APP_JS: &str = include_str!("web/app.js");

/// The HTTP routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/app.js", get(app_js))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/debug/subscribers", get(debug_subscribers))
        .route("/ws", get(websocket))
        .route("/internal/media", get(internal_media))
        .with_state(state)
}

async fn index() -> Response {
    static_file("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    static_file("text/javascript; charset=utf-8", APP_JS)
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    state
        .metrics
        .record_log_lines_dropped(crate::logging::dropped_lines());
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

/// Every subscriber as the workers last published it; 404 unless `http.debug_endpoints`.
async fn debug_subscribers(State(state): State<AppState>) -> Response {
    if !state.config.http.debug_endpoints {
        return StatusCode::NOT_FOUND.into_response();
    }
    let subscribers = state.metrics.subscribers.snapshot();
    axum::Json(serde_json::json!({ "subscribers": subscribers })).into_response()
}

/// The client's address: the TCP peer, or with `http.trust_forwarded_for` the last
/// `X-Forwarded-For` entry (appended by our reverse proxy; earlier entries come from
/// the client and prove nothing).
pub fn client_ip(peer_addr: SocketAddr, headers: &HeaderMap, trust_forwarded_for: bool) -> IpAddr {
    if !trust_forwarded_for {
        return peer_addr.ip();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .next_back()
        .and_then(|entry| entry.trim().parse::<IpAddr>().ok())
        .unwrap_or_else(|| peer_addr.ip())
}

/// Chunk in which a signalling WebSocket is read. The library default (128 KiB, allocated
/// up front for every connection) was half of a participant's memory; signalling
/// messages are a few KiB and arrive a few times per minute, so small reads cost nothing.
/// The buffer stays allocated for the connection's life and grows by doubling when a
/// read fills it: 4 KiB chunks left 8 KiB per idle viewer, 1 KiB leaves 2 KiB. A large
/// answer (70 KB from a publisher in a room of 50) takes more reads, a few per KiB of
/// network buffer, which is nothing next to parsing it.
const WEBSOCKET_READ_BUFFER_BYTES: usize = 1024;
/// Largest messages' worth of unsent data kept for a client that does not read: beyond
/// that the send fails and the connection ends, instead of memory growing without bound.
const WEBSOCKET_QUEUED_MESSAGES: usize = 4;

async fn websocket(
    upgrade: WebSocketUpgrade,
    ConnectInfo(peer_addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<AppState>,
) -> Response {
    if !state.accepts_sessions() {
        state
            .metrics
            .admission_refused(AdmissionRefusal::ShuttingDown);
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response();
    }
    // A hop from another cluster node that proves itself (its key matches its
    // heartbeat) carries the client's address and is not counted against the bridging
    // node's address: that node already applied the per-address limit to the client.
    let internal = internal_hop(&state, &headers).await;
    let ip = client_ip(
        peer_addr,
        &headers,
        internal || state.config.http.trust_forwarded_for,
    );
    let ip_slot = if internal {
        None
    } else {
        let Some(slot) = state.sessions_per_ip.try_acquire(ip) else {
            tracing::info!(client_ip = %ip, "signalling refused: limits.sessions_per_source_ip reached");
            state
                .metrics
                .admission_refused(AdmissionRefusal::SessionsPerSourceIp);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                "too many sessions from this address",
            )
                .into_response();
        };
        Some(slot)
    };
    let origin = signaling::Origin {
        client_ip: ip,
        internal,
    };
    let max_message_bytes = state.config.limits.signaling_message_bytes;
    upgrade
        .max_message_size(max_message_bytes)
        .max_frame_size(max_message_bytes)
        .read_buffer_size(WEBSOCKET_READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(max_message_bytes.saturating_mul(WEBSOCKET_QUEUED_MESSAGES))
        .on_upgrade(move |socket| async move {
            let _open = state.shutdown.track();
            let _ip_slot = ip_slot;
            signaling::handle_socket(socket, peer_addr, state, origin).await;
        })
}

/// Another node's control link for the sessions it places on this node's workers
/// (rooms that span nodes). Only a live member of the cluster that proves itself gets
/// one; anyone else gets 403.
async fn internal_media(
    upgrade: WebSocketUpgrade,
    headers: HeaderMap,
    State(state): State<AppState>,
) -> Response {
    let Some(directory) = state.directory.clone() else {
        return (StatusCode::NOT_FOUND, "not a cluster member").into_response();
    };
    if !internal_hop(&state, &headers).await {
        return (StatusCode::FORBIDDEN, "cluster members only").into_response();
    }
    if !state.accepts_sessions() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response();
    }
    let max_message_bytes = state.config.limits.signaling_message_bytes;
    upgrade
        .max_message_size(max_message_bytes)
        .max_frame_size(max_message_bytes)
        .on_upgrade(move |socket| async move {
            let _open = state.shutdown.track();
            crate::cluster::media_control::serve(socket, state, directory).await;
        })
}

/// Whether the request is a bridged hop from a live member of this node's cluster.
async fn internal_hop(state: &AppState, headers: &HeaderMap) -> bool {
    let (Some(cluster), Some(node), Some(key)) = (
        state.cluster.as_ref(),
        headers.get(crate::cluster::NODE_HEADER),
        headers.get(crate::cluster::KEY_HEADER),
    ) else {
        return false;
    };
    let (Ok(node), Ok(key)) = (node.to_str(), key.to_str()) else {
        return false;
    };
    let verified = cluster.verify_peer(node, key).await;
    if !verified {
        tracing::info!(node, "cluster hop refused: node or key unknown");
    }
    verified
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::shutdown::Shutdown;
    use axum::body::{to_bytes, Body};
    use axum::http::Request;
    use futures_util::StreamExt;
    use tower::ServiceExt;

    fn state() -> AppState {
        let state = AppState::new(
            Arc::new(Config::default()),
            Arc::new(Metrics::new()),
            Shutdown::new(),
        );
        state.set_ready(true);
        state
    }

    async fn get(state: &AppState, path: &str) -> (StatusCode, Option<String>, String) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = router(state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn healthz_answers_ok() {
        let (status, _, body) = get(&state(), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ok");
    }

    #[tokio::test]
    async fn healthz_stays_ok_during_shutdown() {
        let state = state();
        state.shutdown.begin();
        let (status, _, _) = get(&state, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn readyz_is_ok_while_ready() {
        let (status, _, _) = get(&state(), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn readyz_is_unavailable_before_ready() {
        let state = state();
        state.set_ready(false);
        let (status, _, _) = get(&state, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn readyz_is_unavailable_once_shutdown_began() {
        let state = state();
        state.shutdown.begin();
        let (status, _, _) = get(&state, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn readyz_is_unavailable_while_draining() {
        let state = state();
        state.set_draining();
        let (status, _, _) = get(&state, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            state.accepts_sessions(),
            "a draining node still takes joins"
        );
    }

    #[tokio::test]
    async fn metrics_exposes_the_families() {
        let state = state();
        state.metrics.session_opened();
        let (status, content_type, body) = get(&state, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some(OPENMETRICS_CONTENT_TYPE));
        assert!(body.contains("sluice_sessions 1"), "{body}");
        for family in [
            "sluice_dtls_handshakes_started_total",
            "sluice_dtls_handshake_duration_seconds_bucket",
            "sluice_packets_dropped_total",
            "sluice_signaling_messages_total",
        ] {
            assert!(body.contains(family), "missing {family}");
        }
    }

    #[tokio::test]
    async fn the_subscriber_debug_endpoint_is_served_only_when_enabled() {
        let (status, _, _) = get(&state(), "/debug/subscribers").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let mut config = Config::default();
        config.http.debug_endpoints = true;
        let state = AppState::new(Arc::new(config), Arc::new(Metrics::new()), Shutdown::new());
        state.metrics.subscribers.publish(
            0,
            vec![crate::subscribers::SubscriberSnapshot {
                participant: "p-4".into(),
                room: "demo".into(),
                worker: 0,
                estimate_bps: Some(812_000),
                acked_bps: Some(640_000),
                rtt_ms: 52,
                loss_fraction: Some(0.0),
                probe_results: 2,
                allocated_bps: 600_000,
                desired_bps: 1_400_000,
                paused_tracks: 0,
                reduced_frame_rate_tracks: 0,
                audio_redundancy: 1,
                video_fec_interval: 5,
                tracks: Vec::new(),
            }],
        );
        let (status, content_type, body) = get(&state, "/debug/subscribers").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some("application/json"));
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["subscribers"][0]["participant"], "p-4");
        assert_eq!(json["subscribers"][0]["estimate_bps"], 812_000);
    }

    #[tokio::test]
    async fn root_serves_the_demo_page_as_html() {
        let (status, content_type, body) = get(&state(), "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some("text/html; charset=utf-8"));
        assert_eq!(body, INDEX_HTML);
        assert!(body.to_ascii_lowercase().contains("<html"));
    }

    #[tokio::test]
    async fn app_js_is_served_as_javascript() {
        let (status, content_type, body) = get(&state(), "/app.js").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            content_type.as_deref(),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(body, APP_JS);
    }

    #[tokio::test]
    async fn unknown_path_is_not_found() {
        let (status, _, _) = get(&state(), "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    /// Serves the router on 127.0.0.1:0 the way `main` does; returns its address.
    async fn serve(state: AppState) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn websocket_reaches_the_signalling_stub() {
        use tokio_tungstenite::tungstenite::Message;

        let state = state();
        let addr = serve(state.clone()).await;
        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .expect("upgrade");
        let first = socket.next().await.expect("a message").expect("no error");
        let Message::Text(text) = first else {
            panic!("expected text, got {first:?}");
        };
        let reply: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
        assert_eq!(reply["type"], "error");
        assert_eq!(reply["code"], "internal");
        assert_eq!(reply["message"], "media workers not running");
        let second = socket.next().await.expect("a message").expect("no error");
        let Message::Text(text) = second else {
            panic!("expected text, got {second:?}");
        };
        let bye: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
        assert_eq!(bye["type"], "bye");
        // Then the server closes the socket.
        match socket.next().await {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {}
            Some(Ok(other)) => panic!("expected the socket to close, got {other:?}"),
        }
        state.shutdown.idle().await;
        assert!(state
            .metrics
            .encode()
            .contains("sluice_signaling_messages_total{direction=\"sent\"} 2"));
    }

    #[test]
    fn client_ip_is_the_peer_unless_forwarded_for_is_trusted() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "10.9.9.9, 203.0.113.5".parse().unwrap());
        assert_eq!(client_ip(peer, &headers, false), peer.ip());
        // The last entry is the one our proxy appended; the first is the client's claim.
        assert_eq!(
            client_ip(peer, &headers, true),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(peer, &HeaderMap::new(), true), peer.ip());
        headers.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_ip(peer, &headers, true), peer.ip());
    }

    #[tokio::test]
    async fn websockets_beyond_sessions_per_source_ip_are_refused_with_429() {
        let mut config = Config::default();
        config.limits.sessions_per_source_ip = 2;
        let state = AppState::new(Arc::new(config), Arc::new(Metrics::new()), Shutdown::new());
        state.set_ready(true);
        let addr = serve(state.clone()).await;
        let url = format!("ws://{addr}/ws");
        // Two live sessions from 127.0.0.1 (held here, as open sockets would).
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let held = [
            state.sessions_per_ip.try_acquire(loopback).unwrap(),
            state.sessions_per_ip.try_acquire(loopback).unwrap(),
        ];
        match tokio_tungstenite::connect_async(&url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
            }
            other => panic!("expected HTTP 429, got {other:?}"),
        }
        assert!(state
            .metrics
            .encode()
            .contains("sluice_admissions_refused_total{reason=\"sessions_per_source_ip\"} 1"));
        // A freed slot admits the next connection, which holds a slot while it runs.
        drop(held);
        let (socket, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("admitted");
        drop(socket);
        let released = async {
            while state.sessions_per_ip.count(loopback) > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), released)
            .await
            .expect("the slot is released when the connection ends");
    }

    #[tokio::test]
    async fn websocket_is_refused_once_shutdown_began() {
        let state = state();
        let addr = serve(state.clone()).await;
        state.shutdown.begin();
        let result = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await;
        match result {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            }
            other => panic!("expected HTTP 503, got {other:?}"),
        }
    }
}
