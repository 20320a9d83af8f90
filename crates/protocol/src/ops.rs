//! What a front-end sends to a thread ([`Op`]) and what the thread reports back ([`Event`]).
//!
//! These are the only types a front-end (exec, the app-server, the TUI) needs to drive a thread
//! through core's `ThreadManager`; they carry no behaviour beyond small helpers.

use serde::{Deserialize, Serialize};

use crate::exec_events::{McpToolCallItemResult, PatchApplyStatus, PatchFileChange};
use crate::goal::ThreadGoal;
use crate::sandbox::{
    ApprovalResolved, ExecApprovalRequest, McpApprovalRequest, PatchApprovalRequest, ReviewDecision,
};
use crate::{ThreadId, TokenUsage, TurnId};

/// Why a turn runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
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
    /// Answers an [`EventMsg::ExecApprovalRequest`] with the same `call_id`.
    ExecApproval {
        /// The tool call that asked.
        call_id: String,
        /// The person's decision.
        decision: ReviewDecision,
    },
    /// Answers an [`EventMsg::PatchApprovalRequest`] with the same `call_id`.
    PatchApproval {
        /// The tool call that asked.
        call_id: String,
        /// The person's decision.
        decision: ReviewDecision,
    },
    /// Answers an [`EventMsg::McpApprovalRequest`] with the same `call_id`.
    McpApproval {
        /// The tool call that asked.
        call_id: String,
        /// The person's decision.
        decision: ReviewDecision,
    },
    /// Re-evaluate the idle policy now (e.g. a goal was just created or resumed).
    WakeIdle,
    /// Compact the history now, in a turn of its own (queued behind a running turn).
    Compact,
    /// Finish the running turn's bookkeeping and stop the actor.
    Shutdown,
}

/// An event from a thread, tagged with the turn it belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The thread.
    pub thread_id: ThreadId,
    /// The turn, when the event belongs to one.
    pub turn_id: Option<TurnId>,
    /// What happened.
    pub msg: EventMsg,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
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
        /// Files touched, each with its diff (empty when parsing failed).
        changes: Vec<PatchFileChange>,
        /// Outcome.
        status: PatchApplyStatus,
        /// Summary or error text.
        message: String,
    },
    /// A call of a tool on an MCP server is about to be sent.
    McpToolCallBegin {
        /// Tool call id.
        call_id: String,
        /// Server name.
        server: String,
        /// The tool's name on the server.
        tool: String,
        /// Arguments as sent.
        arguments: serde_json::Value,
    },
    /// A call of a tool on an MCP server finished.
    McpToolCallEnd {
        /// Tool call id.
        call_id: String,
        /// Server name.
        server: String,
        /// The tool's name on the server.
        tool: String,
        /// Arguments as sent.
        arguments: serde_json::Value,
        /// What the server returned; `None` when the call got no result.
        result: Option<McpToolCallItemResult>,
        /// The result has `isError`.
        is_error: bool,
        /// Why there is no result (server down, timeout, declined).
        error: Option<String>,
        /// How long the call took.
        duration_ms: u64,
    },
    /// A command waits for a person's decision; the turn is paused until an
    /// [`Op::ExecApproval`] answers it or the turn is interrupted.
    ExecApprovalRequest(ExecApprovalRequest),
    /// A file change waits for a person's decision, answered by [`Op::PatchApproval`].
    PatchApprovalRequest(PatchApprovalRequest),
    /// A call of an MCP tool waits for a person's decision, answered by [`Op::McpApproval`].
    McpApprovalRequest(McpApprovalRequest),
    /// An approval request was answered (or withdrawn because its turn was interrupted).
    ApprovalResolved(ApprovalResolved),
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
    /// The history was compacted (already recorded durably when this is sent).
    ContextCompacted {
        /// Why.
        trigger: crate::CompactionTrigger,
        /// Live-context tokens before.
        tokens_before: i64,
        /// Estimated tokens of the compacted history.
        tokens_after: i64,
    },
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
        /// Why.
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

/// The class of a turn failure. Front-ends map it to exit codes and wire error infos; the goal
/// runtime maps it to a goal stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnErrorKind {
    /// The provider's usage limit was reached (HTTP 429 `usage_limit_reached`).
    UsageLimitReached,
    /// The plan does not include this usage (`usage_not_included`).
    UsageNotIncluded,
    /// The account's quota is spent (`insufficient_quota`).
    InsufficientQuota,
    /// The conversation no longer fits the model's context window.
    ContextLengthExceeded,
    /// The provider is at capacity (`server_is_overloaded`, `slow_down`).
    ServerOverloaded,
    /// The provider rejected the request as malformed (HTTP 400).
    InvalidRequest,
    /// The response ended incomplete.
    Incomplete,
    /// The provider failed (HTTP 500).
    InternalServerError,
    /// Retries were exhausted.
    RetryLimit,
    /// An HTTP status the client does not classify.
    UnexpectedStatus,
    /// Rate limited (HTTP 429 other than a usage limit).
    RateLimited,
    /// The stream ended before `response.completed`.
    StreamDisconnected,
    /// The provider could not be reached.
    ConnectionFailed,
    /// The stream carried an event Quest cannot use (a field of the wrong shape).
    MalformedEvent,
    /// A successful answer that was not an event stream (e.g. a JSON document).
    NotEventStream,
    /// The provider's API key variable is unset.
    MissingEnvVar,
    /// The provider configuration is invalid.
    InvalidConfig,
    /// Quest itself failed (storage, a crashed turn task).
    Internal,
}

impl TurnErrorKind {
    /// The snake_case class, as exported in telemetry and recorded in the goal audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            TurnErrorKind::UsageLimitReached => "usage_limit_reached",
            TurnErrorKind::UsageNotIncluded => "usage_not_included",
            TurnErrorKind::InsufficientQuota => "insufficient_quota",
            TurnErrorKind::ContextLengthExceeded => "context_length_exceeded",
            TurnErrorKind::ServerOverloaded => "server_overloaded",
            TurnErrorKind::InvalidRequest => "invalid_request",
            TurnErrorKind::Incomplete => "incomplete",
            TurnErrorKind::InternalServerError => "internal_server_error",
            TurnErrorKind::RetryLimit => "retry_limit",
            TurnErrorKind::UnexpectedStatus => "unexpected_status",
            TurnErrorKind::RateLimited => "rate_limited",
            TurnErrorKind::StreamDisconnected => "stream_disconnected",
            TurnErrorKind::ConnectionFailed => "connection_failed",
            TurnErrorKind::MalformedEvent => "malformed_event",
            TurnErrorKind::NotEventStream => "not_event_stream",
            TurnErrorKind::MissingEnvVar => "missing_env_var",
            TurnErrorKind::InvalidConfig => "invalid_config",
            TurnErrorKind::Internal => "internal",
        }
    }

    /// True for "out of allowance" failures: a goal stops as `usageLimited` instead of retrying.
    pub fn is_usage_limit(self) -> bool {
        matches!(
            self,
            TurnErrorKind::UsageLimitReached
                | TurnErrorKind::UsageNotIncluded
                | TurnErrorKind::InsufficientQuota
        )
    }
}

/// Why a turn failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnError {
    /// User-facing message.
    pub message: String,
    /// The class of failure.
    pub kind: TurnErrorKind,
    /// Reset time (unix seconds) of a usage limit, when the provider said.
    pub resets_at: Option<i64>,
}

impl TurnError {
    /// A failure of Quest itself rather than of the model provider.
    pub fn internal(message: impl Into<String>) -> Self {
        TurnError {
            message: message.into(),
            kind: TurnErrorKind::Internal,
            resets_at: None,
        }
    }

    /// True for provider usage limits.
    pub fn is_usage_limit(&self) -> bool {
        self.kind.is_usage_limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kind_strings_match_the_serde_names() {
        for kind in [
            TurnErrorKind::UsageLimitReached,
            TurnErrorKind::ServerOverloaded,
            TurnErrorKind::StreamDisconnected,
            TurnErrorKind::Internal,
        ] {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::String(kind.as_str().to_string())
            );
        }
    }

    #[test]
    fn events_round_trip_through_json() {
        let event = Event {
            thread_id: ThreadId::new(),
            turn_id: Some(TurnId::new()),
            msg: EventMsg::TurnFailed {
                error: TurnError::internal("boom"),
                usage: TokenUsage::default(),
            },
        };
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), event);
    }
}
