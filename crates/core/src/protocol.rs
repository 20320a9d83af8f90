//! What front-ends send to a thread ([`Op`]) and what it sends back ([`Event`]).

use quest_model::ModelError;
use quest_protocol::exec_events::{FileUpdateChange, PatchApplyStatus};
use quest_protocol::goal::ThreadGoal;
use quest_protocol::{ThreadId, TokenUsage, TurnId};

/// Why a turn runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnTrigger {
    /// Input typed or piped by the user (or an SDK acting for them).
    User,
    /// A hidden goal continuation started by the runtime.
    Goal,
}

impl TurnTrigger {
    /// `user` / `goal`, as recorded and exported.
    pub fn as_str(self) -> &'static str {
        match self {
            TurnTrigger::User => "user",
            TurnTrigger::Goal => "goal",
        }
    }
}

/// A request to a thread.
#[derive(Debug)]
pub enum Op {
    /// Start a turn with this user text (queued while a turn runs).
    UserInput {
        /// The prompt.
        text: String,
    },
    /// Stop the running turn; with `pause_goal` an active goal is paused first.
    Interrupt {
        /// Pause an active goal (reason `interrupt`) before interrupting.
        pause_goal: bool,
    },
    /// Re-evaluate the idle policy now (e.g. a goal was just created or resumed).
    WakeIdle,
    /// Finish the running turn's bookkeeping and stop the actor.
    Shutdown,
}

/// An event from a thread, tagged with the turn it belongs to.
#[derive(Clone, Debug)]
pub struct Event {
    /// The thread.
    pub thread_id: ThreadId,
    /// The turn, when the event belongs to one.
    pub turn_id: Option<TurnId>,
    /// What happened.
    pub msg: EventMsg,
}

/// What happened.
#[derive(Clone, Debug)]
pub enum EventMsg {
    /// A turn began.
    TurnStarted {
        /// Why.
        trigger: TurnTrigger,
    },
    /// Streamed assistant text.
    AgentMessageDelta(String),
    /// A complete assistant message.
    AgentMessage(String),
    /// A complete reasoning summary.
    Reasoning(String),
    /// A shell command is about to run.
    ExecCommandBegin {
        /// Tool call id.
        call_id: String,
        /// Command as displayed.
        command: String,
    },
    /// A shell command finished.
    ExecCommandEnd {
        /// Tool call id.
        call_id: String,
        /// Command as displayed.
        command: String,
        /// Captured output (capped).
        output: String,
        /// Exit code (`None` when killed or not started).
        exit_code: Option<i32>,
        /// True when the command ran and exited 0.
        success: bool,
    },
    /// A patch was applied or rejected.
    PatchApplied {
        /// Tool call id.
        call_id: String,
        /// Files touched (empty when parsing failed).
        changes: Vec<FileUpdateChange>,
        /// Outcome.
        status: PatchApplyStatus,
        /// Summary or error text.
        message: String,
    },
    /// A model request is being retried.
    Retrying {
        /// 1-based attempt about to start.
        attempt: u32,
        /// Maximum retries.
        max_attempts: u32,
        /// Why.
        reason: String,
    },
    /// A non-fatal problem worth showing.
    Warning(String),
    /// The goal changed (committed to storage before this is sent).
    GoalUpdated(Box<ThreadGoal>),
    /// The goal was cleared.
    GoalCleared,
    /// A turn ended normally.
    TurnCompleted {
        /// Usage summed over the turn's requests.
        usage: TokenUsage,
        /// The last assistant message of the turn.
        last_message: Option<String>,
    },
    /// A turn ended with an error.
    TurnFailed {
        /// The model error, when the failure came from the model client.
        error: TurnError,
        /// Usage of the requests that did succeed.
        usage: TokenUsage,
    },
    /// A turn was interrupted.
    TurnAborted,
    /// The thread went idle (no turn running, nothing queued, no continuation scheduled).
    Idle,
    /// The actor stopped; no more events follow.
    ShutdownComplete,
}

/// Why a turn failed.
#[derive(Clone, Debug)]
pub struct TurnError {
    /// User-facing message.
    pub message: String,
    /// True for provider usage limits.
    pub usage_limit: bool,
    /// Reset time (unix seconds) of a usage limit.
    pub resets_at: Option<i64>,
    /// Short stable class, e.g. `usage_limit`, `server_overloaded`.
    pub kind: String,
}

impl TurnError {
    /// Builds the turn error from a model error.
    pub fn from_model(err: &ModelError) -> Self {
        TurnError {
            message: err.user_message(),
            usage_limit: err.is_usage_limit(),
            resets_at: err.usage_limit_resets_at(),
            kind: err.error_type().to_string(),
        }
    }

    /// An error that did not come from the model client.
    pub fn internal(message: impl Into<String>) -> Self {
        TurnError {
            message: message.into(),
            usage_limit: false,
            resets_at: None,
            kind: "internal".to_string(),
        }
    }
}
