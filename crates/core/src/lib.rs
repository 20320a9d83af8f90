//! The agent itself: configuration, the per-thread actor and its turn loop, the tools the model can
//! call, and the goal runtime that keeps a thread working toward its objective.
//!
//! Core turns [`Op`]s into model requests, tool runs and durable records, and reports everything
//! as [`Event`]s. It never formats text for a terminal and never parses command lines; front-ends
//! (`exec`, the CLI) do that.
#![warn(missing_docs, unreachable_pub)]

pub mod config;
pub mod goal;
pub mod prompts;
pub mod protocol;
pub mod session;
pub mod telemetry;
pub mod thread;
pub mod tools;
pub mod turn;

use std::sync::Arc;

use quest_model::{ClientOptions, ModelClient, ModelError};
use quest_protocol::{ResponseItem, ThreadId};
use quest_state::Store;
use tokio::sync::mpsc;

pub use config::{Config, ConfigError, ConfigOverrides, LoadedConfig, load_config};
pub use protocol::{Event, EventMsg, Op, TurnError, TurnTrigger};
pub use session::Session;
pub use thread::{IdlePolicy, ThreadHandle, spawn_thread};

/// Errors starting or resuming a thread. Front-ends report them and exit; nothing is retried.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The model client could not be built (e.g. the API key variable is unset).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The state database failed.
    #[error("state database: {0}")]
    State(String),
    /// `resume` named a thread the database does not have.
    #[error("thread not found: {0}")]
    ThreadNotFound(ThreadId),
}

/// Builds the model client for a configuration. `CODEX_API_KEY` or `QUEST_API_KEY`, when set,
/// replace the provider's key variable.
pub fn build_client(
    config: &Config,
    originator: &str,
    propagate_trace: bool,
) -> Result<ModelClient, ModelError> {
    let api_key_override = ["QUEST_API_KEY", "CODEX_API_KEY"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()));
    let options = ClientOptions {
        originator: originator.to_string(),
        api_key_override,
        backoff_base: std::time::Duration::from_millis(config.model_tuning.retry_backoff_base_ms),
        max_retry_delay: std::time::Duration::from_secs(config.model_tuning.max_retry_delay_s),
        propagate_trace_context: propagate_trace,
        ..ClientOptions::default()
    };
    ModelClient::new(config.model_provider.clone(), options)
}

/// A started thread: its handle, its events, and the store it records to.
pub struct StartedThread {
    /// Sends ops.
    pub handle: ThreadHandle,
    /// Receives events.
    pub events: mpsc::UnboundedReceiver<Event>,
    /// The shared session.
    pub session: Arc<Session>,
}

/// Everything needed to start or resume a thread.
pub struct ThreadSpec {
    /// Configuration.
    pub config: Arc<Config>,
    /// Model client.
    pub client: ModelClient,
    /// Store; `None` makes the thread ephemeral.
    pub store: Option<Store>,
    /// Extra tool specs (goal tools) appended to the built-in ones.
    pub extra_tools: Vec<serde_json::Value>,
    /// Telemetry for the thread; `None` when off.
    pub telemetry: Option<telemetry::ThreadTelemetry>,
    /// Send W3C trace context on model requests.
    pub propagate_trace: bool,
}

/// Creates a new thread (recorded unless ephemeral) and starts its actor.
pub fn start_thread(
    spec: ThreadSpec,
    policy: impl FnOnce(&Arc<Session>) -> Option<Box<dyn IdlePolicy>>,
) -> Result<StartedThread, CoreError> {
    let thread_id = ThreadId::new();
    let items = session::initial_items(&spec.config);
    if let Some(store) = &spec.store {
        store
            .create_thread(&quest_state::NewThread {
                id: thread_id,
                cwd: spec.config.cwd.display().to_string(),
                model: spec.config.model.clone(),
                model_provider: spec.config.model_provider_id.clone(),
            })
            .map_err(|e| CoreError::State(e.to_string()))?;
        store
            .append_rollout(&thread_id, None, &items)
            .map_err(|e| CoreError::State(e.to_string()))?;
    }
    Ok(launch(spec, thread_id, items, policy))
}

/// Resumes a recorded thread with its exact history.
pub fn resume_thread(
    spec: ThreadSpec,
    thread_id: ThreadId,
    policy: impl FnOnce(&Arc<Session>) -> Option<Box<dyn IdlePolicy>>,
) -> Result<StartedThread, CoreError> {
    let store = spec
        .store
        .as_ref()
        .ok_or_else(|| CoreError::State("resume needs a persistent store".to_string()))?;
    if store
        .get_thread(&thread_id)
        .map_err(|e| CoreError::State(e.to_string()))?
        .is_none()
    {
        return Err(CoreError::ThreadNotFound(thread_id));
    }
    let items = store
        .load_rollout(&thread_id)
        .map_err(|e| CoreError::State(e.to_string()))?;
    Ok(launch(spec, thread_id, items, policy))
}

fn launch(
    spec: ThreadSpec,
    thread_id: ThreadId,
    history: Vec<ResponseItem>,
    policy: impl FnOnce(&Arc<Session>) -> Option<Box<dyn IdlePolicy>>,
) -> StartedThread {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut tools = tools::builtin_tool_specs();
    tools.extend(spec.extra_tools);
    let telemetry = spec
        .telemetry
        .as_ref()
        .map(|t| t.session(&thread_id.to_string(), &spec.config));
    if let Some(t) = &telemetry {
        t.conversation_starts(
            &spec.config.model_provider_id,
            spec.config.reasoning_effort.as_deref(),
            spec.config.reasoning_summary.as_deref().unwrap_or("auto"),
            None,
            None,
            "never",
            &spec.config.sandbox_mode,
            &[],
        );
    }
    let server = Session::server_address(spec.config.model_provider.base_url());
    let session = Arc::new(Session {
        thread_id,
        config: spec.config,
        client: spec.client,
        store: spec.store,
        events: tx,
        tools,
        log_user_prompt: spec.telemetry.as_ref().is_some_and(|t| t.log_user_prompt),
        telemetry,
        propagate_trace: spec.propagate_trace,
        server,
    });
    let policy = policy(&session);
    let handle = spawn_thread(session.clone(), history, policy);
    StartedThread {
        handle,
        events: rx,
        session,
    }
}
