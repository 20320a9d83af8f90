//! The server shared by every connection: configuration, the loaded threads, and the per-connection
//! loop that enforces the `initialize` handshake and dispatches requests in arrival order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use quest_core::{Config, ConfigOverrides, ManagerOptions, ThreadManager, load_config};
use quest_protocol::ThreadId;
use quest_protocol::app_server::jsonrpc::{
    ErrorObject, INVALID_REQUEST, IncomingMessage, METHOD_NOT_FOUND, OutgoingMessage, RequestId,
    parse_incoming,
};
use quest_protocol::app_server::v2::{InitializeParams, InitializeResponse};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::threads::ThreadHub;
use crate::transport::{Connection, Inbound};
use crate::{startup, thread_api};

/// Default limit on one incoming message.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// How the server is set up.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Configuration inputs (`$QUEST_HOME`, `-c` overrides, …) applied to every thread.
    pub config: ConfigOverrides,
    /// Longest accepted message in bytes; longer ones are refused with an error.
    pub max_message_bytes: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            config: ConfigOverrides::default(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration could not be loaded.
    #[error("{0}")]
    Config(String),
    /// The state database could not be opened.
    #[error("state database: {0}")]
    State(String),
}

/// One subscribed client of a thread.
#[derive(Clone)]
pub(crate) struct ClientHandle {
    pub(crate) id: u64,
    pub(crate) outbound: mpsc::UnboundedSender<OutgoingMessage>,
    pub(crate) opted_out: Arc<Vec<String>>,
}

impl ClientHandle {
    /// Sends a notification unless the client opted out of its method.
    pub(crate) fn notify(&self, method: &str, params: Value) {
        if self.opted_out.iter().any(|m| m == method) {
            return;
        }
        let _ = self.outbound.send(OutgoingMessage::Notification {
            method: method.to_string(),
            params,
            emitted_at_ms: now_ms(),
        });
    }

    /// Sends a server→client request.
    pub(crate) fn request(&self, id: RequestId, method: &str, params: Value) {
        let _ = self.outbound.send(OutgoingMessage::Request {
            id,
            method: method.to_string(),
            params,
        });
    }

    pub(crate) fn respond(&self, id: RequestId, result: Value) {
        let _ = self.outbound.send(OutgoingMessage::Response { id, result });
    }

    pub(crate) fn respond_error(&self, id: RequestId, error: ErrorObject) {
        let _ = self.outbound.send(OutgoingMessage::Error {
            id: Some(id),
            error,
        });
    }
}

/// The Codex release whose app-server protocol (v2 schemas) this server implements.
pub const CODEX_PROTOCOL_VERSION: &str = "0.169.0";

/// The app-server: shared by all connections of one process.
pub struct Server {
    pub(crate) options: ServerOptions,
    pub(crate) config: Arc<Config>,
    pub(crate) config_warnings: Vec<String>,
    /// Runs threads with the server's own configuration; answers for unloaded threads.
    pub(crate) default_manager: ThreadManager,
    managers: Mutex<HashMap<String, ThreadManager>>,
    threads: Mutex<HashMap<ThreadId, Arc<ThreadHub>>>,
    next_client: AtomicU64,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Server {
    /// Loads the configuration and opens the state database.
    pub fn new(options: ServerOptions) -> Result<Arc<Server>, ServerError> {
        let loaded =
            load_config(options.config.clone()).map_err(|e| ServerError::Config(e.to_string()))?;
        let config = Arc::new(loaded.config);
        let default_manager = ThreadManager::new(
            config.clone(),
            ManagerOptions {
                originator: "quest_app_server".to_string(),
                ..ManagerOptions::default()
            },
        )
        .map_err(|e| ServerError::State(e.to_string()))?;
        Ok(Arc::new(Server {
            options,
            config,
            config_warnings: loaded.warnings,
            default_manager,
            managers: Mutex::new(HashMap::new()),
            threads: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(1),
        }))
    }

    pub(crate) fn threads(&self) -> MutexGuard<'_, HashMap<ThreadId, Arc<ThreadHub>>> {
        match self.threads.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub(crate) fn managers(&self) -> MutexGuard<'_, HashMap<String, ThreadManager>> {
        match self.managers.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub(crate) fn loaded(&self, id: &ThreadId) -> Option<Arc<ThreadHub>> {
        self.threads().get(id).cloned()
    }

    pub(crate) fn register(&self, hub: Arc<ThreadHub>) {
        self.threads().insert(hub.thread_id, hub);
    }

    /// Routes a client's answer to the thread whose server request it answers.
    fn answer_request(&self, id: &RequestId, answer: Result<Value, ErrorObject>) {
        let hubs: Vec<Arc<ThreadHub>> = self.threads().values().cloned().collect();
        if !hubs
            .iter()
            .any(|hub| hub.answer_request(id, answer.clone()))
        {
            tracing::debug!("answer to unknown or resolved server request {id}");
        }
    }

    /// Ids of the threads running in this process.
    pub fn loaded_thread_ids(&self) -> Vec<ThreadId> {
        let mut ids: Vec<ThreadId> = self.threads().keys().copied().collect();
        ids.sort_by_key(|id| id.to_string());
        ids
    }

    /// Stops every loaded thread: running turns are cancelled, active goals are paused with reason
    /// `process_exit` (unless configured otherwise) and leases released. Returns when all stopped.
    pub async fn shutdown(&self) {
        let managers: Vec<ThreadManager> = self.managers().values().cloned().collect();
        for manager in managers {
            manager.shutdown().await;
        }
        self.default_manager.shutdown().await;
    }

    /// Serves one client until it disconnects. Threads it started keep running.
    pub async fn serve_connection(self: Arc<Self>, mut connection: Connection) {
        let client_id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let mut session = ClientSession {
            server: self.clone(),
            client: ClientHandle {
                id: client_id,
                outbound: connection.outbound.clone(),
                opted_out: Arc::new(Vec::new()),
            },
            initialized: false,
        };
        let max = self.options.max_message_bytes;
        while let Some(inbound) = connection.inbound.recv().await {
            let inbound = match inbound {
                Inbound::Text(text) if text.len() > max => Inbound::TooLarge { bytes: text.len() },
                other => other,
            };
            match inbound {
                Inbound::Text(text) => session.handle_text(&text).await,
                Inbound::TooLarge { bytes } => {
                    let _ = connection.outbound.send(OutgoingMessage::Error {
                        id: None,
                        error: ErrorObject::invalid_request(format!(
                            "Invalid request: message of {bytes} bytes exceeds the limit of {} bytes",
                            self.options.max_message_bytes
                        )),
                    });
                }
                Inbound::NotText => {
                    let _ = connection.outbound.send(OutgoingMessage::Error {
                        id: None,
                        error: ErrorObject::new(
                            quest_protocol::app_server::jsonrpc::PARSE_ERROR,
                            "Parse error: messages must be UTF-8 JSON text",
                        ),
                    });
                }
            }
        }
        // The client is gone: stop sending to it; its threads keep running and stay recorded.
        let hubs: Vec<Arc<ThreadHub>> = self.threads().values().cloned().collect();
        for hub in hubs {
            hub.unsubscribe(client_id);
        }
    }
}

/// Per-connection state.
pub(crate) struct ClientSession {
    pub(crate) server: Arc<Server>,
    pub(crate) client: ClientHandle,
    initialized: bool,
}

/// A handler's outcome: a result to send now, or an error.
pub(crate) type HandlerResult = Result<Reply, ErrorObject>;

/// What a handler wants sent.
pub(crate) enum Reply {
    /// Send this result now.
    Now(Value),
    /// The handler already answered (ordered with thread events), or will later.
    Deferred,
}

impl ClientSession {
    async fn handle_text(&mut self, text: &str) {
        let message = match parse_incoming(text) {
            Ok(message) => message,
            Err(err) => {
                let _ = self.client.outbound.send(OutgoingMessage::Error {
                    id: err.id,
                    error: err.error,
                });
                return;
            }
        };
        match message {
            IncomingMessage::Request { id, method, params } => {
                let result = self.dispatch(&id, &method, params).await;
                match result {
                    Ok(Reply::Now(value)) => self.client.respond(id, value),
                    Ok(Reply::Deferred) => {}
                    Err(error) => self.client.respond_error(id, error),
                }
            }
            IncomingMessage::Notification { method, .. } => {
                // `initialized` and other client notifications need no answer.
                tracing::debug!("client notification {method}");
            }
            IncomingMessage::Response { id, result } => self.server.answer_request(&id, Ok(result)),
            IncomingMessage::Error { id, error } => self.server.answer_request(&id, Err(error)),
        }
    }

    async fn dispatch(
        &mut self,
        id: &RequestId,
        method: &str,
        params: Option<Value>,
    ) -> HandlerResult {
        if method == "initialize" {
            return self.initialize(id, params);
        }
        if !self.initialized {
            return Err(ErrorObject::new(
                INVALID_REQUEST,
                format!("Not initialized: send `initialize` before `{method}`"),
            ));
        }
        let server = self.server.clone();
        match method {
            "account/read" => Ok(Reply::Now(startup::account_read())),
            "model/list" => Ok(Reply::Now(startup::model_list(&server.config))),
            "config/read" => Ok(Reply::Now(startup::config_read(&server.config))),
            "configRequirements/read" => Ok(Reply::Now(startup::config_requirements())),
            "collaborationMode/list" => Ok(Reply::Now(startup::collaboration_modes())),
            "hooks/list" => Ok(Reply::Now(startup::hooks_list(
                &server.config,
                params.as_ref(),
            ))),
            "skills/list" => Ok(Reply::Now(startup::skills_list(
                &server.config,
                params.as_ref(),
            ))),
            "plugin/installed" => Ok(Reply::Now(startup::plugins_installed())),
            "account/bedrock/checkGovCloudRequirements" => Ok(Reply::Now(
                json!({"isGovCloud": false, "shouldWarn": false}),
            )),
            "account/rateLimits/read" => Ok(Reply::Now(startup::rate_limits())),
            "thread/start" => thread_api::thread_start(self, id, parse_params(params)?).await,
            "thread/resume" => thread_api::thread_resume(self, id, parse_params(params)?).await,
            "thread/read" => thread_api::thread_read(self, parse_params(params)?).await,
            "thread/list" => thread_api::thread_list(self, parse_params(params)?).await,
            "thread/loaded/list" => Ok(Reply::Now(json!({
                "data": server.loaded_thread_ids().iter().map(ToString::to_string).collect::<Vec<_>>(),
                "nextCursor": null,
            }))),
            "thread/turns/list" => thread_api::thread_turns_list(self, parse_params(params)?).await,
            "thread/items/list" => thread_api::thread_items_list(self, parse_params(params)?).await,
            "thread/readState/update" => {
                thread_api::read_state_update(self, parse_params(params)?).await
            }
            "thread/unsubscribe" => thread_api::thread_unsubscribe(self, parse_params(params)?),
            "turn/start" => thread_api::turn_start(self, id, parse_params(params)?).await,
            "turn/interrupt" => thread_api::turn_interrupt(self, parse_params(params)?).await,
            "thread/compact/start" => {
                thread_api::thread_compact_start(self, parse_params(params)?).await
            }
            "thread/goal/get" => thread_api::goal_get(self, parse_params(params)?).await,
            "thread/goal/set" => thread_api::goal_set(self, id, parse_params(params)?).await,
            "thread/goal/clear" => thread_api::goal_clear(self, id, parse_params(params)?).await,
            "thread/goal/log" | "thread/goal/history" => {
                thread_api::goal_log(self, parse_params(params)?).await
            }
            other => Err(ErrorObject::new(
                METHOD_NOT_FOUND,
                format!("Method not found: {other}"),
            )),
        }
    }

    fn initialize(&mut self, id: &RequestId, params: Option<Value>) -> HandlerResult {
        if self.initialized {
            return Err(ErrorObject::invalid_request("Already initialized"));
        }
        let params: InitializeParams = parse_params(params)?;
        let capabilities = params.capabilities.unwrap_or_default();
        self.client.opted_out = Arc::new(
            capabilities
                .opt_out_notification_methods
                .unwrap_or_default(),
        );
        self.initialized = true;
        let response = InitializeResponse {
            // Codex's clients read the server's version from the first product token and warn
            // when it is older than their own: that slot names the protocol version Quest
            // speaks; Quest's own version follows.
            user_agent: format!(
                "{}/{CODEX_PROTOCOL_VERSION} ({}; {}) quest/{} ({}; {})",
                params.client_info.name,
                std::env::consts::OS,
                std::env::consts::ARCH,
                env!("CARGO_PKG_VERSION"),
                params.client_info.name,
                params.client_info.version,
            ),
            codex_home: self.server.config.home.display().to_string(),
            platform_family: std::env::consts::FAMILY.to_string(),
            platform_os: std::env::consts::OS.to_string(),
        };
        let value =
            serde_json::to_value(response).map_err(|e| ErrorObject::internal(e.to_string()))?;
        self.client.respond(id.clone(), value);
        // Configuration findings follow the response, as Codex sends its own.
        for warning in &self.server.config_warnings {
            self.client.notify(
                "configWarning",
                json!({"summary": warning, "details": null}),
            );
        }
        Ok(Reply::Deferred)
    }
}

/// Parses request params into `T`; errors name the offending field.
pub(crate) fn parse_params<T: DeserializeOwned>(params: Option<Value>) -> Result<T, ErrorObject> {
    let value = match params {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(value) => value,
    };
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            ErrorObject::invalid_params(format!("Invalid params: {inner}"))
        } else {
            ErrorObject::invalid_params(format!("Invalid params: {path}: {inner}"))
        }
    })
}

/// Parses a thread id param.
pub(crate) fn parse_thread_id(text: &str) -> Result<ThreadId, ErrorObject> {
    text.parse::<ThreadId>()
        .map_err(|_| ErrorObject::invalid_params(format!("invalid thread id: {text}")))
}
