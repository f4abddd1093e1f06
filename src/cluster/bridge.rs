//! The signalling bridge: a client whose WebSocket reached a node that does not host
//! its room is relayed, frame by frame, to the room's node (the owner). The owner runs
//! the whole protocol (token check, limits, offers with its own ICE candidates), so the
//! client's media goes straight to the owner and the client cannot tell it was bridged.
//!
//! The hop is a plain WebSocket to the owner's `cluster.internal_url` + `/ws`, with two
//! headers naming this node and its per-boot key; the owner checks them against this
//! node's heartbeat in Redis before it trusts the hop (exempts it from the per-address
//! limit, takes the client's address from `X-Forwarded-For`). The join token, when
//! tokens are on, is inside the forwarded `join` and is checked by the owner as always.

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::ws::{self, close_code, WebSocket};
use futures_util::{SinkExt, StreamExt};
use sluice_signal::protocol::{encode_server_message, ErrorCode, ServerMessage};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as UpstreamClose;
use tokio_tungstenite::tungstenite::Message as UpstreamMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{Cluster, KEY_HEADER, NODE_HEADER};
use crate::app::AppState;

/// The WebSocket to the room's node.
pub type Upstream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest wait for the other side's Close frame once one side closed.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Why the room's node could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("bad internal_url {0:?}")]
    Url(String),
    #[error("connecting to the room's node: {0}")]
    Connect(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the room's node did not answer in time")]
    Timeout,
}

impl BridgeError {
    /// Whether the node's host answered that nothing listens on its port: its process
    /// is gone (killed, crashed), not merely slow or cut off.
    pub fn is_refused(&self) -> bool {
        matches!(
            self,
            BridgeError::Connect(tokio_tungstenite::tungstenite::Error::Io(error))
                if error.kind() == std::io::ErrorKind::ConnectionRefused
        )
    }
}

/// Opens the hop to `internal_url`'s `/ws` on behalf of a client at `client_ip`.
pub async fn connect(
    cluster: &Cluster,
    internal_url: &str,
    client_ip: IpAddr,
    timeout: Duration,
) -> Result<Upstream, BridgeError> {
    let base = internal_url
        .strip_prefix("http://")
        .ok_or_else(|| BridgeError::Url(internal_url.to_owned()))?;
    let url = format!("ws://{}/ws", base.trim_end_matches('/'));
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|_| BridgeError::Url(internal_url.to_owned()))?;
    let header = |value: &str| {
        HeaderValue::from_str(value).map_err(|_| BridgeError::Url(internal_url.to_owned()))
    };
    let headers = request.headers_mut();
    headers.insert(NODE_HEADER, header(cluster.node_id())?);
    headers.insert(KEY_HEADER, header(cluster.key())?);
    headers.insert("x-forwarded-for", header(&client_ip.to_string())?);
    match tokio::time::timeout(timeout, tokio_tungstenite::connect_async(request)).await {
        Ok(Ok((upstream, _response))) => Ok(upstream),
        Ok(Err(error)) => Err(BridgeError::Connect(error)),
        Err(_) => Err(BridgeError::Timeout),
    }
}

fn to_upstream(message: ws::Message) -> Option<UpstreamMessage> {
    match message {
        ws::Message::Text(text) => Some(UpstreamMessage::text(text.as_str().to_owned())),
        ws::Message::Binary(bytes) => Some(UpstreamMessage::Binary(bytes)),
        ws::Message::Close(frame) => {
            Some(UpstreamMessage::Close(frame.map(|frame| UpstreamClose {
                code: CloseCode::from(frame.code),
                reason: frame.reason.as_str().to_owned().into(),
            })))
        }
        // Each hop answers its own pings.
        ws::Message::Ping(_) | ws::Message::Pong(_) => None,
    }
}

fn to_client(message: UpstreamMessage) -> Option<ws::Message> {
    match message {
        UpstreamMessage::Text(text) => Some(ws::Message::Text(text.as_str().to_owned().into())),
        UpstreamMessage::Binary(bytes) => Some(ws::Message::Binary(bytes)),
        UpstreamMessage::Close(frame) => {
            Some(ws::Message::Close(frame.map(|frame| ws::CloseFrame {
                code: u16::from(frame.code),
                reason: frame.reason.as_str().to_owned().into(),
            })))
        }
        UpstreamMessage::Ping(_) | UpstreamMessage::Pong(_) | UpstreamMessage::Frame(_) => None,
    }
}

/// How the relay ended.
enum Ended {
    /// One side sent Close: it was forwarded; wait for the other side's.
    ClientClosed,
    UpstreamClosed,
    /// The room's node vanished (killed, network gone): tell the client with an
    /// abnormal close, which makes the demo page reconnect.
    UpstreamLost,
    ClientLost,
    ShuttingDown,
}

/// Relays between `client` and `upstream` until either closes; `join` (the client's
/// join message) goes first. Counted in `sluice_cluster_bridged_sessions`.
pub async fn relay(client: WebSocket, upstream: Upstream, join: String, state: &AppState) {
    let gauge = state.metrics.cluster.bridged_sessions.clone();
    gauge.inc();
    relay_inner(client, upstream, join, state).await;
    gauge.dec();
}

async fn relay_inner(
    mut client: WebSocket,
    mut upstream: Upstream,
    join: String,
    state: &AppState,
) {
    let send_timeout = state.config.signaling.send_timeout();
    if upstream.send(UpstreamMessage::text(join)).await.is_err() {
        let _ = client
            .send(ws::Message::Close(Some(ws::CloseFrame {
                code: close_code::ERROR,
                reason: "room node unreachable".into(),
            })))
            .await;
        return;
    }
    let shutdown = state.shutdown.clone();
    let ended = loop {
        tokio::select! {
            frame = client.recv() => match frame {
                Some(Ok(message)) => {
                    let closing = matches!(message, ws::Message::Close(_));
                    if let Some(message) = to_upstream(message) {
                        if upstream.send(message).await.is_err() {
                            break Ended::UpstreamLost;
                        }
                    }
                    if closing {
                        break Ended::ClientClosed;
                    }
                }
                Some(Err(_)) | None => break Ended::ClientLost,
            },
            frame = upstream.next() => match frame {
                Some(Ok(message)) => {
                    let closing = matches!(message, UpstreamMessage::Close(_));
                    if let Some(message) = to_client(message) {
                        match tokio::time::timeout(send_timeout, client.send(message)).await {
                            Ok(Ok(())) => {}
                            _ => break Ended::ClientLost,
                        }
                    }
                    if closing {
                        break Ended::UpstreamClosed;
                    }
                }
                Some(Err(_)) | None => break Ended::UpstreamLost,
            },
            () = shutdown.begun() => break Ended::ShuttingDown,
        }
    };
    match ended {
        Ended::ClientClosed => {
            // The owner answers the forwarded Close; wait for it so its bye is not lost.
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while let Some(Ok(message)) = upstream.next().await {
                    if matches!(message, UpstreamMessage::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
        Ended::UpstreamClosed => {
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while let Some(Ok(message)) = client.recv().await {
                    if matches!(message, ws::Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
        Ended::UpstreamLost => {
            tracing::info!("bridged signalling: the room's node went away");
            let _ = tokio::time::timeout(
                send_timeout,
                client.send(ws::Message::Close(Some(ws::CloseFrame {
                    code: close_code::ERROR,
                    reason: "room node unreachable".into(),
                }))),
            )
            .await;
        }
        Ended::ClientLost => {
            let _ = tokio::time::timeout(CLOSE_WAIT, upstream.close(None)).await;
        }
        Ended::ShuttingDown => {
            // As for a local participant: told why, then closed; the owner sees the
            // hop close and ends the session.
            let _ = tokio::time::timeout(CLOSE_WAIT, upstream.close(None)).await;
            for message in [
                ServerMessage::Error {
                    code: ErrorCode::ShuttingDown,
                    message: "the server is shutting down".to_owned(),
                },
                ServerMessage::Bye {
                    reason: "shutting_down".to_owned(),
                },
            ] {
                let text = encode_server_message(&message);
                let sent =
                    tokio::time::timeout(send_timeout, client.send(ws::Message::Text(text.into())))
                        .await;
                if !matches!(sent, Ok(Ok(()))) {
                    return;
                }
            }
            let _ = tokio::time::timeout(
                send_timeout,
                client.send(ws::Message::Close(Some(ws::CloseFrame {
                    code: close_code::AWAY,
                    reason: "shutting_down".into(),
                }))),
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_the_bridge_unchanged_and_pings_stay_on_their_hop() {
        let text = to_upstream(ws::Message::Text("{\"type\":\"ping\"}".into()));
        assert_eq!(text, Some(UpstreamMessage::text("{\"type\":\"ping\"}")));
        let close = to_client(UpstreamMessage::Close(Some(UpstreamClose {
            code: CloseCode::Policy,
            reason: "unauthorized".into(),
        })));
        match close {
            Some(ws::Message::Close(Some(frame))) => {
                assert_eq!(frame.code, close_code::POLICY);
                assert_eq!(frame.reason.as_str(), "unauthorized");
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
        assert_eq!(to_upstream(ws::Message::Ping(vec![1].into())), None);
        assert_eq!(to_client(UpstreamMessage::Pong(vec![1].into())), None);
    }
}
