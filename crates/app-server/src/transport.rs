//! Transports: newline-delimited JSON on stdio, one text frame per message on WebSocket, and an
//! in-process channel. Each turns a client into a [`Connection`] (messages in, messages out) and
//! hands it to the server; none of them interprets the messages.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use quest_protocol::app_server::jsonrpc::OutgoingMessage;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::server::Server;

/// One message received from a client.
#[derive(Debug)]
pub enum Inbound {
    /// A complete message (a stdio line or a WebSocket text frame).
    Text(String),
    /// A message longer than the limit was received and discarded.
    TooLarge {
        /// Its size in bytes (at least this many).
        bytes: usize,
    },
    /// A frame that is not text (binary WebSocket frame) or not UTF-8.
    NotText,
}

/// The two ends a transport gives the server for one client.
pub struct Connection {
    /// Messages from the client; closed when the client goes away.
    pub inbound: mpsc::Receiver<Inbound>,
    /// Messages to the client.
    pub outbound: mpsc::UnboundedSender<OutgoingMessage>,
}

/// Where `quest app-server` listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// stdin/stdout (`stdio://`, the default).
    Stdio,
    /// A WebSocket listener (`ws://IP:PORT`).
    WebSocket(SocketAddr),
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "stdio://" || text == "stdio" {
            return Ok(Listen::Stdio);
        }
        let Some(rest) = text.strip_prefix("ws://") else {
            return Err(format!(
                "unsupported listen address `{text}`: use stdio:// or ws://IP:PORT"
            ));
        };
        let rest = rest.trim_end_matches('/');
        rest.parse::<SocketAddr>().map(Listen::WebSocket).map_err(|_| {
            format!("invalid WebSocket address `{text}`: expected ws://IP:PORT, e.g. ws://127.0.0.1:4500")
        })
    }
}

/// WebSocket authentication: a capability token every upgrade request must present as
/// `Authorization: Bearer <token>`.
#[derive(Clone, Default)]
pub struct WsAuth {
    token: Option<Arc<str>>,
}

impl std::fmt::Debug for WsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsAuth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl WsAuth {
    /// No authentication (loopback listeners only).
    pub fn none() -> Self {
        WsAuth { token: None }
    }

    /// Reads the token from a file (trimmed; must not be empty).
    pub fn from_token_file(path: &PathBuf) -> Result<Self, String> {
        let raw = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --ws-token-file {}: {e}", path.display()))?;
        let token = raw.trim();
        if token.is_empty() {
            return Err(format!("--ws-token-file {} is empty", path.display()));
        }
        Ok(WsAuth {
            token: Some(Arc::from(token)),
        })
    }

    /// True when a token is required.
    pub fn is_required(&self) -> bool {
        self.token.is_some()
    }

    fn check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let header = headers
            .get(AUTHORIZATION)
            .ok_or("missing websocket bearer token")?
            .to_str()
            .map_err(|_| "invalid authorization header")?;
        let (scheme, token) = header
            .split_once(' ')
            .ok_or("invalid authorization header")?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err("invalid authorization header");
        }
        if constant_time_eq(expected.as_bytes(), token.trim().as_bytes()) {
            Ok(())
        } else {
            Err("invalid websocket bearer token")
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Refuses a non-loopback WebSocket bind without a token.
pub fn check_bind(addr: &SocketAddr, auth: &WsAuth) -> Result<(), String> {
    if addr.ip().is_loopback() || auth.is_required() {
        Ok(())
    } else {
        Err(format!(
            "refusing to listen on {addr} without authentication: non-loopback WebSocket listeners need --ws-token-file"
        ))
    }
}

/// Reads newline-delimited messages from `reader` into a connection's inbound channel, refusing
/// lines longer than `max_bytes` without buffering them.
pub async fn read_lines<R: AsyncBufRead + Unpin>(
    mut reader: R,
    max_bytes: usize,
    inbound: mpsc::Sender<Inbound>,
) {
    let mut line: Vec<u8> = Vec::new();
    let mut discarding: Option<usize> = None;
    loop {
        let chunk = match reader.fill_buf().await {
            Ok(chunk) => chunk,
            Err(err) => {
                tracing::warn!("stdin read failed: {err}");
                return;
            }
        };
        if chunk.is_empty() {
            // EOF: a final unterminated line still counts.
            if discarding.is_none() && !line.is_empty() {
                let _ = inbound.send(decode_line(std::mem::take(&mut line))).await;
            }
            return;
        }
        let (take, newline) = match memchr_newline(chunk) {
            Some(pos) => (pos + 1, true),
            None => (chunk.len(), false),
        };
        let piece_len = if newline { take - 1 } else { take };
        match discarding.as_mut() {
            Some(seen) => *seen += piece_len,
            None => {
                if line.len() + piece_len > max_bytes {
                    discarding = Some(line.len() + piece_len);
                    line.clear();
                } else {
                    line.extend_from_slice(&chunk[..piece_len]);
                }
            }
        }
        reader.consume(take);
        if newline {
            let message = match discarding.take() {
                Some(bytes) => Some(Inbound::TooLarge { bytes }),
                None => {
                    let text = std::mem::take(&mut line);
                    let blank = text.iter().all(u8::is_ascii_whitespace);
                    (!blank).then(|| decode_line(text))
                }
            };
            if let Some(message) = message
                && inbound.send(message).await.is_err()
            {
                return;
            }
        }
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == b'\n')
}

fn decode_line(mut bytes: Vec<u8>) -> Inbound {
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    match String::from_utf8(bytes) {
        Ok(text) => Inbound::Text(text),
        Err(_) => Inbound::NotText,
    }
}

/// Writes each outgoing message as one line. Only protocol messages ever reach `writer`.
pub async fn write_lines<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut outbound: mpsc::UnboundedReceiver<OutgoingMessage>,
) {
    while let Some(message) = outbound.recv().await {
        let mut line = message.to_json();
        line.push('\n');
        if writer.write_all(line.as_bytes()).await.is_err() || writer.flush().await.is_err() {
            return;
        }
    }
}

/// Serves one client on stdin/stdout until stdin closes.
pub async fn serve_stdio(server: Arc<Server>) {
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_lines(
        tokio::io::BufReader::new(tokio::io::stdin()),
        server.options.max_message_bytes,
        in_tx,
    ));
    let writer = tokio::spawn(write_lines(tokio::io::stdout(), out_rx));
    server
        .clone()
        .serve_connection(Connection {
            inbound: in_rx,
            outbound: out_tx,
        })
        .await;
    reader.abort();
    let _ = writer.await;
}

#[derive(Clone)]
struct WsState {
    server: Arc<Server>,
    auth: WsAuth,
}

/// Binds the WebSocket listener. The caller runs [`serve_ws`] with the returned listener.
pub async fn bind_ws(addr: SocketAddr, auth: &WsAuth) -> Result<tokio::net::TcpListener, String> {
    check_bind(&addr, auth)?;
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on ws://{addr}: {e}"))
}

/// Accepts WebSocket clients until the listener fails; each is its own connection.
pub async fn serve_ws(
    server: Arc<Server>,
    listener: tokio::net::TcpListener,
    auth: WsAuth,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/", axum::routing::any(ws_upgrade))
        .route("/readyz", axum::routing::get(|| async { "ok" }))
        .with_state(WsState { server, auth });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

async fn ws_upgrade(
    State(state): State<WsState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if let Err(message) = state.auth.check(&headers) {
        tracing::info!("refused WebSocket client {peer}: {message}");
        return (StatusCode::UNAUTHORIZED, message).into_response();
    }
    let Ok(upgrade) = upgrade else {
        return (
            StatusCode::BAD_REQUEST,
            "this endpoint speaks the app-server protocol over WebSocket",
        )
            .into_response();
    };
    let max = state.server.options.max_message_bytes;
    // Frames a little over the limit still arrive whole so they can be answered with an error;
    // anything far larger closes the connection (1009).
    let hard_limit = max.saturating_mul(4).max(64 * 1024);
    upgrade
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| ws_connection(state.server, socket, max))
}

async fn ws_connection(server: Arc<Server>, socket: WebSocket, max_bytes: usize) {
    let (mut sink, mut stream) = socket.split();
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<OutgoingMessage>();
    let (close_tx, mut close_rx) = mpsc::channel::<CloseFrame>(1);
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                message = out_rx.recv() => match message {
                    Some(message) => {
                        if sink.send(Message::Text(message.to_json().into())).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        let _ = sink.close().await;
                        return;
                    }
                },
                Some(frame) = close_rx.recv() => {
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    return;
                }
            }
        }
    });
    let reader = tokio::spawn(async move {
        while let Some(frame) = stream.next().await {
            let inbound = match frame {
                Ok(Message::Text(text)) if text.len() > max_bytes => {
                    Inbound::TooLarge { bytes: text.len() }
                }
                Ok(Message::Text(text)) => Inbound::Text(text.to_string()),
                Ok(Message::Binary(_)) => Inbound::NotText,
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(Message::Close(_)) => break,
                Err(err) => {
                    tracing::info!("WebSocket client dropped: {err}");
                    let _ = close_tx
                        .send(CloseFrame {
                            code: 1009,
                            reason: "message too big".into(),
                        })
                        .await;
                    break;
                }
            };
            if in_tx.send(inbound).await.is_err() {
                break;
            }
        }
    });
    server
        .serve_connection(Connection {
            inbound: in_rx,
            outbound: out_tx,
        })
        .await;
    reader.abort();
    let _ = writer.await;
}

/// The client side of an in-process connection: send raw messages, receive what the server sends.
pub struct InProcessClient {
    /// Messages to the server.
    pub to_server: mpsc::Sender<Inbound>,
    /// Messages from the server.
    pub from_server: mpsc::UnboundedReceiver<OutgoingMessage>,
}

/// Opens an in-process connection (for a TUI in the same process): no sockets, no serialisation
/// on the way out.
pub fn in_process(server: Arc<Server>) -> InProcessClient {
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    tokio::spawn(server.serve_connection(Connection {
        inbound: in_rx,
        outbound: out_tx,
    }));
    InProcessClient {
        to_server: in_tx,
        from_server: out_rx,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!("stdio://".parse::<Listen>(), Ok(Listen::Stdio));
        assert_eq!(
            "ws://127.0.0.1:4500".parse::<Listen>(),
            Ok(Listen::WebSocket("127.0.0.1:4500".parse().unwrap()))
        );
        assert!("ws://localhost".parse::<Listen>().is_err());
        assert!("http://127.0.0.1:1".parse::<Listen>().is_err());
    }

    #[test]
    fn non_loopback_needs_a_token() {
        let any: SocketAddr = "0.0.0.0:4500".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:4500".parse().unwrap();
        assert!(check_bind(&lo, &WsAuth::none()).is_ok());
        let err = check_bind(&any, &WsAuth::none()).unwrap_err();
        assert!(err.contains("--ws-token-file"), "{err}");
        let auth = WsAuth {
            token: Some(Arc::from("t")),
        };
        assert!(check_bind(&any, &auth).is_ok());
    }

    #[test]
    fn bearer_check() {
        let auth = WsAuth {
            token: Some(Arc::from("secret")),
        };
        let mut headers = HeaderMap::new();
        assert_eq!(auth.check(&headers), Err("missing websocket bearer token"));
        headers.insert(AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert_eq!(auth.check(&headers), Err("invalid websocket bearer token"));
        headers.insert(AUTHORIZATION, "Basic secret".parse().unwrap());
        assert_eq!(auth.check(&headers), Err("invalid authorization header"));
        headers.insert(AUTHORIZATION, "Bearer secret".parse().unwrap());
        assert_eq!(auth.check(&headers), Ok(()));
    }

    async fn lines_of(input: &[u8], max: usize) -> Vec<Inbound> {
        let (tx, mut rx) = mpsc::channel(16);
        read_lines(tokio::io::BufReader::with_capacity(8, input), max, tx).await;
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            out.push(m);
        }
        out
    }

    #[tokio::test]
    async fn stdio_lines_are_capped_without_losing_the_next_message() {
        let input = b"{\"a\":1}\r\n\n0123456789012345678901234567890\n{\"b\":2}";
        let got = lines_of(input, 16).await;
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(matches!(&got[0], Inbound::Text(t) if t == "{\"a\":1}"));
        assert!(matches!(got[1], Inbound::TooLarge { bytes: 31 }));
        assert!(matches!(&got[2], Inbound::Text(t) if t == "{\"b\":2}"));
        let got = lines_of(b"\xff\xfe\n", 16).await;
        assert!(matches!(got[0], Inbound::NotText));
    }
}
