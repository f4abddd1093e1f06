//! Signalling over WebSocket: the room protocol of docs/signaling.md.
//!
//! [`rooms::Rooms`] places rooms on media workers and fans room changes out;
//! [`connection`] runs one participant's protocol (join, offers, answers, leave).
//! Without a media plane (HTTP-only tests) every client is told, in the protocol's
//! format, that media is unavailable: an `internal` error, `bye`, close.

pub mod connection;
pub mod peers;
pub mod rooms;

use std::net::{IpAddr, SocketAddr};

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};

use crate::app::AppState;
use crate::metrics::Direction;

/// Where a signalling connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The client's address (behind a trusted proxy or cluster hop, the forwarded one).
    pub client_ip: IpAddr,
    /// A hop bridged by another cluster node, which already placed the room here:
    /// served here, never bridged again.
    pub internal: bool,
}

/// Runs one signalling connection from `peer_addr` to completion.
pub async fn handle_socket(
    socket: WebSocket,
    peer_addr: SocketAddr,
    state: AppState,
    origin: Origin,
) {
    match state.rooms.clone() {
        Some(rooms) => {
            tracing::debug!(%peer_addr, "signalling connection opened");
            connection::run(socket, state, rooms, origin).await;
            tracing::debug!(%peer_addr, "signalling connection closed");
        }
        None => refuse(socket, peer_addr, state).await,
    }
}

async fn refuse(mut socket: WebSocket, peer_addr: SocketAddr, state: AppState) {
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
