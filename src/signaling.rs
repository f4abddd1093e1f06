//! Signalling over WebSocket. STUB: the lead replaces this with the room protocol
//! once the media workers exist. For now every client is told, in the protocol's
//! format (docs/signaling.md), that media is unavailable: an `internal` error, which
//! is fatal, so `bye` follows and the socket is closed.

use std::net::SocketAddr;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};

use crate::http::AppState;
use crate::metrics::Direction;

/// Runs one signalling connection from `peer_addr` to completion.
pub async fn handle_socket(mut socket: WebSocket, peer_addr: SocketAddr, state: AppState) {
    tracing::debug!(%peer_addr, "signalling connection refused: media workers not running");
    let error = serde_json::json!({
        "type": "error",
        "code": "internal",
        "message": "media workers not running",
    });
    let bye = serde_json::json!({ "type": "bye", "reason": "internal" });
    for message in [error, bye] {
        if socket
            .send(Message::Text(message.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
        state.metrics.signaling_message(Direction::Sent);
    }
    let close = CloseFrame {
        code: close_code::ERROR,
        reason: "media workers not running".into(),
    };
    let _ = socket.send(Message::Close(Some(close))).await;
}
