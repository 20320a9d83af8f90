//! How the UI reaches an app-server: in the same process over a channel (the default), or over
//! WebSocket (`--remote ws://HOST:PORT`). Both carry the same JSON-RPC messages; the UI cannot
//! tell them apart.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use quest_app_server::{Inbound, Server};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Something from the server.
#[derive(Debug)]
pub enum Incoming {
    /// One JSON-RPC message.
    Message(Value),
    /// The connection ended, with the reason.
    Closed(String),
}

/// A connection to an app-server: messages out, messages in.
pub struct Transport {
    /// Messages to the server.
    pub outgoing: mpsc::UnboundedSender<Value>,
    /// Messages from the server, then one [`Incoming::Closed`].
    pub incoming: mpsc::UnboundedReceiver<Incoming>,
}

/// Connects to a server running in this process (the same message handling as stdio and
/// WebSocket clients get).
pub fn in_process(server: Arc<Server>) -> Transport {
    let client = quest_app_server::in_process(server);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Value>();
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let to_server = client.to_server;
    tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            if to_server
                .send(Inbound::Text(message.to_string()))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut from_server = client.from_server;
    tokio::spawn(async move {
        while let Some(message) = from_server.recv().await {
            if in_tx.send(Incoming::Message(message.to_value())).is_err() {
                return;
            }
        }
        let _ = in_tx.send(Incoming::Closed("the server stopped".to_string()));
    });
    Transport {
        outgoing: out_tx,
        incoming: in_rx,
    }
}

/// Connects to `quest app-server --listen ws://…` (or any app-server v2 WebSocket endpoint).
/// `token`, when given, is sent as `Authorization: Bearer <token>`.
pub async fn connect_ws(url: &str, token: Option<&str>) -> Result<Transport, String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    if !url.starts_with("ws://") && !url.starts_with("wss://") {
        return Err(format!(
            "invalid --remote address `{url}`: expected ws://HOST:PORT"
        ));
    }
    if url.starts_with("wss://") {
        return Err(format!(
            "`{url}`: wss:// is not supported; use ws:// (through an SSH tunnel for remote hosts)"
        ));
    }
    let mut request = url
        .into_client_request()
        .map_err(|e| format!("invalid --remote address `{url}`: {e}"))?;
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().map_err(|_| {
            "the remote token contains characters not allowed in a header".to_string()
        })?;
        request.headers_mut().insert("authorization", value);
    }
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Value>();
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            if sink
                .send(Message::Text(message.to_string().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = sink.close().await;
    });
    tokio::spawn(async move {
        let reason = loop {
            match stream.next().await {
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<Value>(&text) {
                    Ok(value) => {
                        if in_tx.send(Incoming::Message(value)).is_err() {
                            return;
                        }
                    }
                    Err(e) => break format!("the server sent a message that is not JSON: {e}"),
                },
                Some(Ok(Message::Close(frame))) => {
                    break match frame {
                        Some(frame) if !frame.reason.is_empty() => {
                            format!("the server closed the connection: {}", frame.reason)
                        }
                        _ => "the server closed the connection".to_string(),
                    };
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break format!("connection lost: {e}"),
                None => break "connection lost".to_string(),
            }
        };
        let _ = in_tx.send(Incoming::Closed(reason));
    });
    Ok(Transport {
        outgoing: out_tx,
        incoming: in_rx,
    })
}
