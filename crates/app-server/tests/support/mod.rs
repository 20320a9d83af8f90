//! Test support: a mock model, an app-server on a real WebSocket (or the in-process channel), and a
//! JSON-RPC client that validates every message the server sends against the vendored Codex 0.169
//! schemas and prints the whole conversation when something fails.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod schema;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use quest_app_server::{InProcessClient, Inbound, Server, ServerOptions, WsAuth};
use quest_core::ConfigOverrides;
use quest_mock_model::{MockModel, Script};
use quest_protocol::app_server::jsonrpc::RequestId;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub use schema::Schemas;

/// Generous: CI machines are slow and shared.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// `-c` overrides pointing the server at `base_url` with fast retries and no backoff.
pub fn provider_overrides(base_url: &str) -> Vec<String> {
    vec![
        "model_provider=test".into(),
        format!(
            "model_providers.test={{name=\"test\", base_url=\"{base_url}\", wire_api=\"responses\", request_max_retries=0, stream_max_retries=0, stream_idle_timeout_ms=5000}}"
        ),
        "model=gpt-test".into(),
        "goals.no_progress_backoff=[\"0s\"]".into(),
        "model_client.retry_backoff_base_ms=1".into(),
    ]
}

/// A mock model plus an app-server on `ws://127.0.0.1:<port>`.
pub struct Fixture {
    pub home: tempfile::TempDir,
    pub work: tempfile::TempDir,
    pub mock: MockModel,
    pub server: Arc<Server>,
    pub url: String,
    extra: Vec<String>,
}

impl Fixture {
    pub async fn start(script: Script) -> Fixture {
        Self::start_with(script, Vec::new()).await
    }

    /// Starts with extra `-c` overrides.
    pub async fn start_with(script: Script, extra: Vec<String>) -> Fixture {
        let home = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let mock = MockModel::start(script).await;
        let (server, url) = serve(home.path(), work.path(), &mock, &extra, WsAuth::none()).await;
        Fixture {
            home,
            work,
            mock,
            server,
            url,
            extra,
        }
    }

    /// A second server process-equivalent on the same home (for resume after a restart).
    pub async fn restart(&mut self) {
        self.server.shutdown().await;
        let (server, url) = serve(
            self.home.path(),
            self.work.path(),
            &self.mock,
            &self.extra,
            WsAuth::none(),
        )
        .await;
        self.server = server;
        self.url = url;
    }

    /// A connected, initialized WebSocket client.
    pub async fn client(&self) -> Client {
        let mut client = Client::connect_ws(&self.url).await;
        client.initialize().await;
        client
    }
}

pub fn options(home: &Path, work: &Path, base_url: &str, extra: &[String]) -> ServerOptions {
    let mut raw = provider_overrides(base_url);
    raw.extend(extra.iter().cloned());
    ServerOptions {
        config: ConfigOverrides {
            home: Some(home.to_path_buf()),
            cwd: Some(work.to_path_buf()),
            raw_overrides: raw,
            ..ConfigOverrides::default()
        },
        max_message_bytes: 64 * 1024,
    }
}

async fn serve(
    home: &Path,
    work: &Path,
    mock: &MockModel,
    extra: &[String],
    auth: WsAuth,
) -> (Arc<Server>, String) {
    let server = Server::new(options(home, work, &mock.uri(), extra)).unwrap();
    let listener = quest_app_server::transport::bind_ws("127.0.0.1:0".parse().unwrap(), &auth)
        .await
        .unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(quest_app_server::transport::serve_ws(
        server.clone(),
        listener,
        auth,
    ));
    (server, url)
}

enum Wire {
    Ws(
        Box<
            tokio_tungstenite::WebSocketStream<
                tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
            >,
        >,
    ),
    InProcess(InProcessClient),
}

/// A JSON-RPC client that checks everything it receives.
pub struct Client {
    wire: Wire,
    next_id: i64,
    methods: HashMap<RequestId, String>,
    backlog: VecDeque<Value>,
    /// Every message received, in order.
    pub log: Vec<Value>,
    schemas: &'static Schemas,
}

impl Client {
    pub async fn connect_ws(url: &str) -> Client {
        let (stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Client::new(Wire::Ws(Box::new(stream)))
    }

    pub fn in_process(server: Arc<Server>) -> Client {
        Client::new(Wire::InProcess(quest_app_server::in_process(server)))
    }

    fn new(wire: Wire) -> Client {
        Client {
            wire,
            next_id: 0,
            methods: HashMap::new(),
            backlog: VecDeque::new(),
            log: Vec::new(),
            schemas: Schemas::get(),
        }
    }

    /// The conversation so far, for failure messages.
    pub fn transcript(&self) -> String {
        self.log
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub async fn send_text(&mut self, text: &str) {
        match &mut self.wire {
            Wire::Ws(ws) => ws.send(Message::Text(text.into())).await.unwrap(),
            Wire::InProcess(c) => c.to_server.send(Inbound::Text(text.into())).await.unwrap(),
        }
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        match &mut self.wire {
            Wire::Ws(ws) => ws.send(Message::Binary(bytes.into())).await.unwrap(),
            Wire::InProcess(c) => c.to_server.send(Inbound::NotText).await.unwrap(),
        }
    }

    /// Sends a request without waiting; returns its id.
    pub async fn send_request(&mut self, method: &str, params: Value) -> RequestId {
        self.next_id += 1;
        let id = RequestId::Integer(self.next_id);
        self.methods.insert(id.clone(), method.to_string());
        let message = json!({"id": self.next_id, "method": method, "params": params});
        self.send_text(&message.to_string()).await;
        id
    }

    /// Sends a request with an id of the caller's choice (string ids, as Codex's TUI uses).
    pub async fn send_request_with_id(&mut self, id: Value, method: &str, params: Value) {
        let request_id: RequestId = serde_json::from_value(id.clone()).unwrap();
        self.methods.insert(request_id, method.to_string());
        let message = json!({"id": id, "method": method, "params": params});
        self.send_text(&message.to_string()).await;
    }

    async fn recv_raw(&mut self) -> Option<Value> {
        let received = tokio::time::timeout(TIMEOUT, async {
            match &mut self.wire {
                Wire::Ws(ws) => loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(text))) => {
                            return Some(serde_json::from_str::<Value>(&text).unwrap());
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                        Some(Ok(_)) => continue,
                    }
                },
                Wire::InProcess(c) => c.from_server.recv().await.map(|m| m.to_value()),
            }
        })
        .await;
        match received {
            Ok(message) => message,
            Err(_) => panic!(
                "no message from the server within {TIMEOUT:?}; conversation so far:\n{}",
                self.transcript()
            ),
        }
    }

    /// The next message from the server (validated), or `None` when the connection closed.
    pub async fn next(&mut self) -> Option<Value> {
        if let Some(message) = self.backlog.pop_front() {
            return Some(message);
        }
        let message = self.recv_raw().await?;
        self.log.push(message.clone());
        if let Err(err) = self.schemas.check_server_message(&message, &self.methods) {
            panic!(
                "server message does not match the Codex schema: {err}\nmessage: {message}\nconversation:\n{}",
                self.transcript()
            );
        }
        Some(message)
    }

    /// Waits for the first message matching `pred`; others stay queued in order.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut skipped = VecDeque::new();
        let found = loop {
            match self.next().await {
                Some(message) if pred(&message) => break message,
                Some(message) => skipped.push_back(message),
                None => panic!(
                    "connection closed while waiting for {what}; conversation:\n{}",
                    self.transcript()
                ),
            }
        };
        skipped.extend(self.backlog.drain(..));
        self.backlog = skipped;
        found
    }

    /// Waits for the response to `id`: `Ok(result)` or `Err(error)`.
    pub async fn response(&mut self, id: &RequestId) -> Result<Value, Value> {
        let id_value = serde_json::to_value(id).unwrap();
        let message = self
            .wait_for(&format!("the response to {id_value}"), |m| {
                m.get("id") == Some(&id_value) && m.get("method").is_none()
            })
            .await;
        match message.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(message["result"].clone()),
        }
    }

    pub async fn request(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.send_request(method, params).await;
        self.response(&id).await
    }

    /// A request that must succeed.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        match self.request(method, params.clone()).await {
            Ok(result) => result,
            Err(error) => panic!(
                "{method} {params} failed: {error}\nconversation:\n{}",
                self.transcript()
            ),
        }
    }

    /// Waits for a server→client request `method`; returns `(id, params)`.
    pub async fn server_request(&mut self, method: &str) -> (Value, Value) {
        let message = self
            .wait_for(method, |m| {
                m.get("method").and_then(Value::as_str) == Some(method) && m.get("id").is_some()
            })
            .await;
        (message["id"].clone(), message["params"].clone())
    }

    /// Answers a server→client request; the result is checked against Codex's response schema
    /// for `method` first, so tests only send what a Codex client could.
    pub async fn answer(&mut self, method: &str, id: &Value, result: Value) {
        let schema = match method {
            "item/commandExecution/requestApproval" => "CommandExecutionRequestApprovalResponse",
            "item/fileChange/requestApproval" => "FileChangeRequestApprovalResponse",
            "mcpServer/elicitation/request" => "McpServerElicitationRequestResponse",
            other => panic!("no response schema for {other}"),
        };
        if let Err(err) = self.schemas.check(schema, &result) {
            panic!("the test's answer does not match the Codex schema: {err}");
        }
        let message = json!({"id": id, "result": result});
        self.send_text(&message.to_string()).await;
    }

    /// Waits for a notification `method` whose params satisfy `pred`.
    pub async fn notification(&mut self, method: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let message = self
            .wait_for(method, |m| {
                m.get("method").and_then(Value::as_str) == Some(method) && pred(&m["params"])
            })
            .await;
        message["params"].clone()
    }

    /// Discards queued messages and returns them.
    pub fn drain_backlog(&mut self) -> Vec<Value> {
        self.backlog.drain(..).collect()
    }

    pub async fn initialize(&mut self) -> Value {
        self.call(
            "initialize",
            json!({
                "clientInfo": {"name": "quest-test", "title": null, "version": "0.0.1"},
                "capabilities": {"experimentalApi": true},
            }),
        )
        .await
    }

    /// Starts a thread; returns its id.
    pub async fn start_thread(&mut self) -> String {
        let result = self.call("thread/start", json!({})).await;
        result["thread"]["id"].as_str().unwrap().to_string()
    }

    /// Starts a turn with text; returns the turn id.
    pub async fn start_turn(&mut self, thread: &str, text: &str) -> String {
        let result = self
            .call(
                "turn/start",
                json!({"threadId": thread, "input": [{"type": "text", "text": text, "text_elements": []}]}),
            )
            .await;
        result["turn"]["id"].as_str().unwrap().to_string()
    }

    /// Waits for `turn/completed` of `thread`; returns the turn.
    pub async fn turn_completed(&mut self, thread: &str) -> Value {
        let thread = thread.to_string();
        self.notification("turn/completed", move |p| p["threadId"] == thread.as_str())
            .await["turn"]
            .clone()
    }

    /// Waits for a `thread/goal/updated` of `thread` with `status`.
    pub async fn goal_status(&mut self, thread: &str, status: &str) -> Value {
        let thread = thread.to_string();
        let status = status.to_string();
        self.notification("thread/goal/updated", move |p| {
            p["threadId"] == thread.as_str() && p["goal"]["status"] == status.as_str()
        })
        .await
    }

    /// The methods of every notification received so far (in order), for one thread.
    pub fn methods_for(&self, thread: &str) -> Vec<String> {
        self.log
            .iter()
            .filter(|m| m["params"]["threadId"] == thread || m["params"]["thread"]["id"] == thread)
            .filter_map(|m| m["method"].as_str().map(str::to_string))
            .collect()
    }

    /// Closes the connection.
    pub async fn close(self) {
        if let Wire::Ws(mut ws) = self.wire {
            let _ = SinkExt::close(&mut ws).await;
        }
    }
}
