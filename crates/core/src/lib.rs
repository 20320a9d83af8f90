//! The agent itself: configuration, the [`ThreadManager`] that runs many threads in one process,
//! the per-thread actor and its turn loop, the tools the model can call, and the goal runtime that
//! keeps a thread working toward its objective.
//!
//! Front-ends (`exec`, the CLI, the app-server) talk to core only through the [`ThreadManager`]
//! and the protocol types it re-exports: they send [`Op`]s and receive [`Event`]s, and they never
//! open the state database themselves. Core turns ops into model requests, tool runs and durable
//! records. It never formats text for a terminal and never parses command lines.
#![warn(missing_docs, unreachable_pub)]

pub mod approval;
pub mod blocking;
pub mod compact;
pub mod config;
pub mod goal;
pub mod manager;
pub mod mcp;
pub mod prompts;
pub mod protocol;
pub mod session;
pub mod telemetry;
pub mod thread;
pub mod tool_order;
pub mod tools;
pub mod turn;
pub mod window;

use quest_model::{ClientOptions, ModelClient, ModelError};
use quest_protocol::ThreadId;

pub use config::{Config, ConfigError, ConfigOverrides, LoadedConfig, load_config};
pub use goal::GoalError;
pub use manager::{
    GoalUpdate, ManagerOptions, NewGoal, StartedThread, ThreadManager, ThreadOptions,
    ThreadSummary, TurnState, TurnSummary,
};
pub use protocol::{Event, EventMsg, Op, TurnError, TurnErrorKind, TurnTrigger};
pub use session::{EventStream, Session};
pub use thread::{IdlePolicy, ThreadHandle};

/// Errors starting, resuming or addressing a thread. Front-ends report them; nothing is retried.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The model client could not be built (e.g. the API key variable is unset).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The state database failed (opening it, or a read or write).
    #[error("state database: {0}")]
    State(#[from] quest_state::StateError),
    /// `resume` named a thread the database does not have.
    #[error("thread not found: {0}")]
    ThreadNotFound(ThreadId),
    /// The thread is not loaded in this manager.
    #[error("thread {0} is not loaded")]
    ThreadNotLoaded(ThreadId),
    /// The thread is already loaded in this manager.
    #[error("thread {0} is already loaded")]
    ThreadAlreadyLoaded(ThreadId),
    /// Another live process runs the thread (holds its lease); nothing was sent to it.
    #[error(
        "thread {thread_id} is in use by another quest process (pid {pid}); nothing was sent to it"
    )]
    LeaseHeld {
        /// The thread.
        thread_id: ThreadId,
        /// The holder's process id.
        pid: u32,
    },
    /// A goal operation failed while starting or resuming the thread.
    #[error(transparent)]
    Goal(GoalError),
    /// There is no state database yet (nothing was ever recorded in this Quest home).
    #[error("no state database in {0}")]
    NoDatabase(std::path::PathBuf),
    /// The operation needs a recorded thread, but the manager keeps nothing on disk.
    #[error("this needs a recorded thread; threads are ephemeral here")]
    Ephemeral,
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
        provider_id: Some(config.model_provider_id.clone()),
        // Each attempt's `chat` span, with the configured tracestate members merged.
        trace_headers: Some(quest_otel::inject_span_w3c_trace_headers),
        ..ClientOptions::default()
    };
    ModelClient::new(config.model_provider.clone(), options)
}

/// Kills every command the tools of this process are still running (`SIGKILL` to each process
/// group). For a front-end about to exit without unwinding; returns how many were killed.
pub fn kill_running_commands() -> usize {
    quest_tools::shell::kill_running_commands()
}
