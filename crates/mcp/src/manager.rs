//! Every configured server of a thread: started together, listed as model tools, called,
//! restarted when they die, stopped together.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, PaginatedRequestParams, ReadResourceRequestParams};
use serde_json::{Value, json};

use crate::client::{Connection, StderrTail, connect, tail_text, with_stderr};
use crate::config::{McpServerConfig, McpServers};
use crate::convert::McpToolOutput;
use crate::error::McpError;
use crate::naming::qualified_tool_name;

/// A failed server is not retried more often than this (a call to it fails fast meanwhile).
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(30);

/// One tool offered to the model.
#[derive(Clone, Debug, PartialEq)]
pub struct McpTool {
    /// The function name the model sees (`mcp__server__tool`, see [`crate::naming`]).
    pub qualified_name: String,
    /// Server name.
    pub server: String,
    /// The tool's name on its server.
    pub name: String,
    /// Description (the server's, or its title).
    pub description: String,
    /// The tool's input JSON Schema (always an object schema with `properties`).
    pub input_schema: Value,
    /// The server marks it read-only (`annotations.readOnlyHint`); otherwise it may change things.
    pub read_only: bool,
}

impl McpTool {
    /// The Responses API function definition.
    pub fn function_spec(&self) -> Value {
        json!({
            "type": "function",
            "name": self.qualified_name,
            "description": self.description,
            "strict": false,
            "parameters": self.input_schema,
        })
    }

    fn from_listing(server: &str, tool: &Value) -> Option<Self> {
        let name = tool.get("name")?.as_str()?.to_string();
        let description = tool
            .get("description")
            .and_then(Value::as_str)
            .or_else(|| tool.get("title").and_then(Value::as_str))
            .unwrap_or_default()
            .to_string();
        let mut input_schema = tool
            .get("inputSchema")
            .filter(|s| s.is_object())
            .cloned()
            .unwrap_or_else(|| json!({}));
        if let Some(schema) = input_schema.as_object_mut() {
            // The Responses API wants an object schema with properties.
            schema.insert("type".to_string(), json!("object"));
            schema.entry("properties").or_insert_with(|| json!({}));
        }
        let read_only = tool
            .pointer("/annotations/readOnlyHint")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Some(McpTool {
            qualified_name: qualified_tool_name(server, &name),
            server: server.to_string(),
            name,
            description,
            input_schema,
            read_only,
        })
    }
}

/// A server's state as `quest mcp list` / front-ends show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerStatus {
    /// Connected.
    Ready,
    /// Not started yet (or stopped).
    Stopped,
    /// The last start failed.
    Failed(String),
}

enum SlotState {
    Stopped,
    Ready(Arc<Connection>),
    Failed { error: McpError, at: Instant },
}

struct ServerSlot {
    name: String,
    config: McpServerConfig,
    /// Held while connecting, so concurrent callers share one (re)start.
    state: tokio::sync::Mutex<SlotState>,
    /// Last listed tools (kept while the server is down, so names stay stable).
    tools: Mutex<Vec<McpTool>>,
    /// Starts after the first one (restarts and retries).
    restarts: std::sync::atomic::AtomicU32,
}

/// Callback for warnings meant for the user (a server failed to start, exited, was restarted).
pub type WarningSink = Arc<dyn Fn(String) + Send + Sync>;

/// The servers of one thread.
pub struct McpConnectionManager {
    servers: BTreeMap<String, Arc<ServerSlot>>,
    cwd: PathBuf,
    warn: WarningSink,
}

impl McpConnectionManager {
    /// Starts every enabled server concurrently, each bounded by its startup timeout, and returns
    /// once all have connected or failed. A failure is reported through `warn` (naming the
    /// server) and in the returned list; it never fails the thread.
    pub async fn start(
        servers: &McpServers,
        cwd: &Path,
        warn: WarningSink,
    ) -> (Self, Vec<McpError>) {
        let manager = McpConnectionManager {
            servers: servers
                .iter()
                .filter(|(_, config)| config.enabled)
                .map(|(name, config)| {
                    (
                        name.clone(),
                        Arc::new(ServerSlot {
                            name: name.clone(),
                            config: config.clone(),
                            state: tokio::sync::Mutex::new(SlotState::Stopped),
                            tools: Mutex::new(Vec::new()),
                            restarts: Default::default(),
                        }),
                    )
                })
                .collect(),
            cwd: cwd.to_path_buf(),
            warn,
        };
        let starts = manager.servers.values().map(|slot| async {
            let mut state = slot.state.lock().await;
            manager.start_locked(slot, &mut state).await.err()
        });
        let failures = futures_util::future::join_all(starts)
            .await
            .into_iter()
            .flatten()
            .collect();
        (manager, failures)
    }

    /// Connects `slot` (its state lock held) and lists its tools.
    async fn start_locked(
        &self,
        slot: &ServerSlot,
        state: &mut SlotState,
    ) -> Result<Arc<Connection>, McpError> {
        if let SlotState::Ready(old) = std::mem::replace(state, SlotState::Stopped) {
            old.shutdown().await;
        }
        let timeout = slot.config.startup_timeout();
        let stderr: Mutex<Option<StderrTail>> = Mutex::new(None);
        let attempt = async {
            let connection = connect(&slot.name, &slot.config, &self.cwd, &stderr).await?;
            let tools = connection
                .service
                .peer()
                .list_all_tools()
                .await
                .map_err(|err| McpError::Handshake {
                    server: slot.name.clone(),
                    message: with_stderr(
                        format!("tools/list failed: {err}"),
                        &connection.stderr_tail(),
                    ),
                })?;
            Ok::<_, McpError>((connection, tools))
        };
        let result = match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(McpError::StartupTimeout {
                server: slot.name.clone(),
                timeout,
                stderr: stderr
                    .lock()
                    .ok()
                    .and_then(|t| t.as_ref().map(tail_text))
                    .filter(|t| !t.trim().is_empty())
                    .map(|t| format!("; server stderr:\n{t}"))
                    .unwrap_or_default(),
            }),
        };
        match result {
            Ok((connection, tools)) => {
                let listed: Vec<McpTool> = tools
                    .iter()
                    .filter_map(|tool| serde_json::to_value(tool).ok())
                    .filter_map(|tool| McpTool::from_listing(&slot.name, &tool))
                    .filter(|tool| slot.config.tool_allowed(&tool.name))
                    .collect();
                if let Ok(mut slot_tools) = slot.tools.lock() {
                    *slot_tools = listed;
                }
                let connection = Arc::new(connection);
                *state = SlotState::Ready(connection.clone());
                Ok(connection)
            }
            Err(error) => {
                (self.warn)(error.to_string());
                tracing::warn!(target: "quest::mcp", server = %slot.name, "{error}");
                *state = SlotState::Failed {
                    error: error.clone(),
                    at: Instant::now(),
                };
                Err(error)
            }
        }
    }

    /// The live connection of `server`, (re)starting it when it died or (after a pause) when its
    /// last start failed.
    async fn connection(&self, server: &str) -> Result<Arc<Connection>, McpError> {
        let slot = self
            .servers
            .get(server)
            .ok_or_else(|| McpError::UnknownServer {
                server: server.to_string(),
            })?;
        let mut state = slot.state.lock().await;
        match &*state {
            SlotState::Ready(connection) if !connection.is_closed() => {
                return Ok(connection.clone());
            }
            SlotState::Ready(connection) => {
                let mut message = format!("MCP server `{server}` exited; restarting it");
                let stderr = connection.stderr_tail();
                if !stderr.trim().is_empty() {
                    message.push_str(&format!(" (its last stderr: {})", stderr.trim()));
                }
                (self.warn)(message);
            }
            SlotState::Failed { error, at } if at.elapsed() < RETRY_FAILED_AFTER => {
                return Err(error.clone());
            }
            SlotState::Failed { .. } | SlotState::Stopped => {}
        }
        slot.restarts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.start_locked(slot, &mut state).await
    }

    /// The tools offered to the model, sorted by name. A name that two tools would share (only
    /// possible when a server name contains `__`) is hashed for both.
    pub fn tools(&self) -> Vec<McpTool> {
        let mut tools: Vec<McpTool> = self
            .servers
            .values()
            .filter_map(|slot| slot.tools.lock().ok().map(|t| t.clone()))
            .flatten()
            .collect();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for tool in &tools {
            *counts.entry(tool.qualified_name.clone()).or_default() += 1;
        }
        for tool in &mut tools {
            if counts.get(&tool.qualified_name).copied().unwrap_or(0) > 1 {
                tool.qualified_name = crate::naming::hashed_tool_name(&tool.server, &tool.name);
            }
        }
        tools.sort_by(|a, b| a.qualified_name.cmp(&b.qualified_name));
        tools
    }

    /// The tool behind a model-facing name.
    pub fn resolve(&self, qualified_name: &str) -> Option<McpTool> {
        self.tools()
            .into_iter()
            .find(|tool| tool.qualified_name == qualified_name)
    }

    /// Names of the enabled servers.
    pub fn server_names(&self) -> Vec<String> {
        self.servers.keys().cloned().collect()
    }

    /// The configuration of an enabled server.
    pub fn server_config(&self, server: &str) -> Option<&McpServerConfig> {
        self.servers.get(server).map(|slot| &slot.config)
    }

    /// Each enabled server's state.
    pub async fn statuses(&self) -> Vec<(String, ServerStatus)> {
        let mut out = Vec::new();
        for (name, slot) in &self.servers {
            let status = match &*slot.state.lock().await {
                SlotState::Ready(c) if !c.is_closed() => ServerStatus::Ready,
                SlotState::Ready(_) | SlotState::Stopped => ServerStatus::Stopped,
                SlotState::Failed { error, .. } => ServerStatus::Failed(error.to_string()),
            };
            out.push((name.clone(), status));
        }
        out
    }

    /// Process id of a stdio server's child, when running.
    pub async fn server_pid(&self, server: &str) -> Option<u32> {
        let slot = self.servers.get(server)?;
        match &*slot.state.lock().await {
            SlotState::Ready(connection) => connection.pid,
            _ => None,
        }
    }

    /// How many times a server was (re)started after its first start.
    pub fn restarts(&self, server: &str) -> u32 {
        self.servers
            .get(server)
            .map(|s| s.restarts.load(std::sync::atomic::Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Calls `tool` on `server` with `arguments` (a JSON object or null), bounded by the
    /// server's tool timeout. A result with `isError` is `Ok`; `Err` means the call never got a
    /// result (server down, timeout, protocol error).
    pub async fn call_tool(
        &self,
        server: &str,
        tool: &str,
        arguments: Value,
    ) -> Result<McpToolOutput, McpError> {
        let connection = self.connection(server).await?;
        let timeout = self
            .server_config(server)
            .map(McpServerConfig::tool_timeout)
            .unwrap_or(crate::config::DEFAULT_TOOL_TIMEOUT);
        let mut params = CallToolRequestParams::new(tool.to_string());
        match arguments {
            Value::Object(map) => params = params.with_arguments(map),
            Value::Null => {}
            other => {
                return Err(McpError::Request {
                    server: server.to_string(),
                    method: "tools/call".to_string(),
                    message: format!("arguments must be a JSON object, not {other}"),
                });
            }
        }
        let call = connection.service.peer().call_tool(params);
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(result)) => Ok(McpToolOutput::from_json(
                &serde_json::to_value(&result).unwrap_or(Value::Null),
            )),
            Ok(Err(err)) => Err(self.request_error(server, "tools/call", &connection, err)),
            Err(_) => Err(McpError::ToolTimeout {
                server: server.to_string(),
                tool: tool.to_string(),
                timeout,
            }),
        }
    }

    fn request_error(
        &self,
        server: &str,
        method: &str,
        connection: &Connection,
        err: rmcp::ServiceError,
    ) -> McpError {
        let mut message = err.to_string();
        if connection.is_closed() {
            message = with_stderr(
                format!("{message} (the server exited; it is restarted at the next call)"),
                &connection.stderr_tail(),
            );
        }
        McpError::Request {
            server: server.to_string(),
            method: method.to_string(),
            message,
        }
    }

    async fn bounded<T, F>(
        &self,
        server: &str,
        method: &str,
        connection: &Connection,
        request: F,
    ) -> Result<T, McpError>
    where
        F: std::future::Future<Output = Result<T, rmcp::ServiceError>>,
    {
        let timeout = self
            .server_config(server)
            .map(McpServerConfig::tool_timeout)
            .unwrap_or(crate::config::DEFAULT_TOOL_TIMEOUT);
        match tokio::time::timeout(timeout, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(self.request_error(server, method, connection, err)),
            Err(_) => Err(McpError::ToolTimeout {
                server: server.to_string(),
                tool: method.to_string(),
                timeout,
            }),
        }
    }

    fn supports_resources(connection: &Connection) -> bool {
        connection
            .server_info()
            .pointer("/capabilities/resources")
            .is_some_and(|r| !r.is_null())
    }

    /// `list_mcp_resources`: one server's page (with `cursor`), or every server's resources.
    /// Each resource carries a `server` field.
    pub async fn list_resources(
        &self,
        server: Option<&str>,
        cursor: Option<String>,
    ) -> Result<Value, McpError> {
        self.list_resource_kind(server, cursor, "resources").await
    }

    /// `list_mcp_resource_templates`, shaped as [`Self::list_resources`].
    pub async fn list_resource_templates(
        &self,
        server: Option<&str>,
        cursor: Option<String>,
    ) -> Result<Value, McpError> {
        self.list_resource_kind(server, cursor, "resourceTemplates")
            .await
    }

    async fn list_resource_kind(
        &self,
        server: Option<&str>,
        cursor: Option<String>,
        key: &str,
    ) -> Result<Value, McpError> {
        let method = if key == "resources" {
            "resources/list"
        } else {
            "resources/templates/list"
        };
        let page = |server: String, connection: Arc<Connection>, cursor: Option<String>| async move {
            if !Self::supports_resources(&connection) {
                return Ok((Vec::new(), None));
            }
            let params = cursor.map(|c| PaginatedRequestParams::default().with_cursor(Some(c)));
            let peer = connection.service.peer();
            let value = if key == "resources" {
                self.bounded(&server, method, &connection, peer.list_resources(params))
                    .await
                    .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))?
            } else {
                self.bounded(
                    &server,
                    method,
                    &connection,
                    peer.list_resource_templates(params),
                )
                .await
                .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))?
            };
            let items = value
                .get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|mut item| {
                    if let Some(object) = item.as_object_mut() {
                        object.insert("server".to_string(), json!(server));
                    }
                    item
                })
                .collect::<Vec<_>>();
            let next = value
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_string);
            Ok::<_, McpError>((items, next))
        };
        match server {
            Some(server) => {
                let connection = self.connection(server).await?;
                let (items, next) = page(server.to_string(), connection, cursor).await?;
                let mut out = json!({ "server": server, key: items });
                if let Some(next) = next {
                    out["nextCursor"] = json!(next);
                }
                Ok(out)
            }
            None => {
                if cursor.is_some() {
                    return Err(McpError::Request {
                        server: String::new(),
                        method: method.to_string(),
                        message: "`cursor` needs `server`".to_string(),
                    });
                }
                let mut all = Vec::new();
                for name in self.servers.keys() {
                    // A server that is down is skipped here; naming it gives its error.
                    let Ok(connection) = self.connection(name).await else {
                        continue;
                    };
                    let mut cursor = None;
                    loop {
                        let (items, next) = page(name.clone(), connection.clone(), cursor).await?;
                        all.extend(items);
                        match next {
                            Some(next) => cursor = Some(next),
                            None => break,
                        }
                    }
                }
                Ok(json!({ key: all }))
            }
        }
    }

    /// `read_mcp_resource`: the resource's contents as the server returned them.
    pub async fn read_resource(&self, server: &str, uri: &str) -> Result<Value, McpError> {
        let connection = self.connection(server).await?;
        let result = self
            .bounded(
                server,
                "resources/read",
                &connection,
                connection
                    .service
                    .peer()
                    .read_resource(ReadResourceRequestParams::new(uri)),
            )
            .await?;
        let mut value = serde_json::to_value(result).unwrap_or(Value::Null);
        if let Some(object) = value.as_object_mut() {
            object.insert("server".to_string(), json!(server));
            object.insert("uri".to_string(), json!(uri));
        }
        Ok(value)
    }

    /// Stops every server (stdin closed, then `SIGTERM`, then `SIGKILL` to its process group).
    pub async fn shutdown(&self) {
        let stops = self.servers.values().map(|slot| async move {
            let mut state = slot.state.lock().await;
            if let SlotState::Ready(connection) = std::mem::replace(&mut *state, SlotState::Stopped)
            {
                connection.shutdown().await;
            }
        });
        futures_util::future::join_all(stops).await;
    }
}
