//! The goal data model: statuses (wire camelCase, storage snake_case), actors, the fixed reason
//! vocabulary of the audit trail, and the `ThreadGoal` wire object with Quest's additive fields.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub mod transition;

pub use transition::{
    AccountingMode, BreakerThresholds, BudgetChange, CreateGoal, CreateMode, GoalEvent,
    GoalEventKind, GoalLimits, GoalOrigin, GoalState, LastTransitionMs, Transition,
    TransitionError, Trigger, TurnOutcome, UpdateGoal, blocker_fingerprint, transition,
    validate_objective,
};

/// Longest objective accepted, in Unicode scalar values (`MAX_THREAD_GOAL_OBJECTIVE_CHARS`).
pub const MAX_THREAD_GOAL_OBJECTIVE_CHARS: usize = 4_000;

/// Status of a thread goal. Serialises in the wire (camelCase) spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GoalStatus {
    /// Being pursued; continuation turns start whenever the thread goes idle.
    Active,
    /// Stopped by the user (or the model at the user's request, or restart handling).
    Paused,
    /// Stopped because no progress is possible without outside help.
    Blocked,
    /// Stopped by a provider usage limit.
    UsageLimited,
    /// Stopped because a token, time or turn budget was reached.
    BudgetLimited,
    /// The objective is met.
    Complete,
}

impl GoalStatus {
    /// Every status, in declaration order.
    pub const ALL: [GoalStatus; 6] = [
        GoalStatus::Active,
        GoalStatus::Paused,
        GoalStatus::Blocked,
        GoalStatus::UsageLimited,
        GoalStatus::BudgetLimited,
        GoalStatus::Complete,
    ];

    /// Wire spelling (`usageLimited`).
    pub fn as_wire(self) -> &'static str {
        match self {
            GoalStatus::Active => "active",
            GoalStatus::Paused => "paused",
            GoalStatus::Blocked => "blocked",
            GoalStatus::UsageLimited => "usageLimited",
            GoalStatus::BudgetLimited => "budgetLimited",
            GoalStatus::Complete => "complete",
        }
    }

    /// Storage spelling (`usage_limited`).
    pub fn as_storage(self) -> &'static str {
        match self {
            GoalStatus::Active => "active",
            GoalStatus::Paused => "paused",
            GoalStatus::Blocked => "blocked",
            GoalStatus::UsageLimited => "usage_limited",
            GoalStatus::BudgetLimited => "budget_limited",
            GoalStatus::Complete => "complete",
        }
    }

    /// Parses either spelling.
    pub fn parse(text: &str) -> Option<GoalStatus> {
        GoalStatus::ALL
            .into_iter()
            .find(|s| s.as_wire() == text || s.as_storage() == text)
    }

    /// True for every status in which no continuation turn may start.
    pub fn is_stopped(self) -> bool {
        !matches!(self, GoalStatus::Active)
    }
}

impl fmt::Display for GoalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_wire())
    }
}

impl FromStr for GoalStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GoalStatus::parse(s).ok_or_else(|| format!("unknown goal status `{s}`"))
    }
}

/// Who caused a goal change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Actor {
    /// The user, through the CLI, TUI or an API client acting for them.
    User,
    /// The model, through the goal tools.
    Model,
    /// The runtime: usage limits, budgets, circuit breaker, restart handling.
    System,
}

impl Actor {
    /// Lowercase name as stored and exported.
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::User => "user",
            Actor::Model => "model",
            Actor::System => "system",
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fixed reason vocabulary of goal audit events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoalReason {
    /// The user asked for it.
    UserRequest,
    /// The user interrupted a running goal (Ctrl-C / Esc).
    Interrupt,
    /// The model called `update_goal` (or `create_goal`).
    ToolUpdateGoal,
    /// A turn failed with a non-retryable error or exhausted its retries.
    TurnError,
    /// The provider reported a usage limit.
    UsageLimit,
    /// Automatic resume once the usage window reset.
    UsageLimitReset,
    /// The token budget was reached.
    BudgetTokens,
    /// The time budget was reached.
    BudgetTime,
    /// The turn budget was reached.
    BudgetTurns,
    /// Too many consecutive turns without progress.
    NoProgress,
    /// The same blocker was reported for too many consecutive turns.
    RepeatedBlocker,
    /// Too many consecutive empty responses. In the fixed vocabulary for readers of audit
    /// trails; Quest never writes it (the no-progress breaker stops such a goal).
    EmptyResponses,
    /// Too many consecutive turns whose commands failed. In the vocabulary; never written by
    /// Quest (the no-progress breaker stops such a goal).
    ExecutionFailures,
    /// A headless run reached a turn that waits for user input. In the vocabulary; never
    /// written by Quest (a headless run declines approval requests at once instead of waiting).
    AwaitingInput,
    /// The process running the goal exited (cleanly or not).
    ProcessExit,
}

impl GoalReason {
    /// Every reason, in declaration order.
    pub const ALL: [GoalReason; 15] = [
        GoalReason::UserRequest,
        GoalReason::Interrupt,
        GoalReason::ToolUpdateGoal,
        GoalReason::TurnError,
        GoalReason::UsageLimit,
        GoalReason::UsageLimitReset,
        GoalReason::BudgetTokens,
        GoalReason::BudgetTime,
        GoalReason::BudgetTurns,
        GoalReason::NoProgress,
        GoalReason::RepeatedBlocker,
        GoalReason::EmptyResponses,
        GoalReason::ExecutionFailures,
        GoalReason::AwaitingInput,
        GoalReason::ProcessExit,
    ];

    /// snake_case name as stored and exported.
    pub fn as_str(self) -> &'static str {
        match self {
            GoalReason::UserRequest => "user_request",
            GoalReason::Interrupt => "interrupt",
            GoalReason::ToolUpdateGoal => "tool_update_goal",
            GoalReason::TurnError => "turn_error",
            GoalReason::UsageLimit => "usage_limit",
            GoalReason::UsageLimitReset => "usage_limit_reset",
            GoalReason::BudgetTokens => "budget_tokens",
            GoalReason::BudgetTime => "budget_time",
            GoalReason::BudgetTurns => "budget_turns",
            GoalReason::NoProgress => "no_progress",
            GoalReason::RepeatedBlocker => "repeated_blocker",
            GoalReason::EmptyResponses => "empty_responses",
            GoalReason::ExecutionFailures => "execution_failures",
            GoalReason::AwaitingInput => "awaiting_input",
            GoalReason::ProcessExit => "process_exit",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(text: &str) -> Option<GoalReason> {
        GoalReason::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for GoalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which budget stopped a goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetLimitKind {
    /// `tokenBudget`.
    Tokens,
    /// `timeBudgetSeconds`.
    Time,
    /// `turnBudget`.
    Turns,
}

impl BudgetLimitKind {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetLimitKind::Tokens => "tokens",
            BudgetLimitKind::Time => "time",
            BudgetLimitKind::Turns => "turns",
        }
    }

    /// The audit reason for a stop by this budget.
    pub fn reason(self) -> GoalReason {
        match self {
            BudgetLimitKind::Tokens => GoalReason::BudgetTokens,
            BudgetLimitKind::Time => GoalReason::BudgetTime,
            BudgetLimitKind::Turns => GoalReason::BudgetTurns,
        }
    }
}

/// The latest audit entry of a goal, as carried on `ThreadGoal.lastTransition`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastTransition {
    /// Who made the change.
    pub actor: Actor,
    /// Why (fixed vocabulary).
    pub reason: GoalReason,
    /// Unix seconds.
    pub at: i64,
}

/// The `ThreadGoal` wire object (app-server v2, camelCase) with Quest's additive fields.
///
/// Codex fields are always present (`tokenBudget` as `null` when unset). Quest extensions are
/// skipped when they hold their default so default-config output stays Codex-identical; use
/// [`ThreadGoal::for_model`] for model tool results, which also omit a null `tokenBudget`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadGoal {
    /// Owning thread.
    pub thread_id: String,
    /// Trimmed objective, 1..=4000 chars.
    pub objective: String,
    /// Current status.
    pub status: GoalStatus,
    /// Token cap; `None` = no cap.
    pub token_budget: Option<i64>,
    /// Tokens charged so far.
    pub tokens_used: i64,
    /// Wall-clock seconds while active.
    pub time_used_seconds: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Quest: wall-clock cap on `timeUsedSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_budget_seconds: Option<i64>,
    /// Quest: cap on `turnsUsed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_budget: Option<i64>,
    /// Quest: goal turns charged.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub turns_used: i64,
    /// Quest: which budget tripped; set iff status is `budgetLimited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_limit_kind: Option<BudgetLimitKind>,
    /// Quest: unix seconds when the usage limit resets; set iff `usageLimited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_limit_resets_at: Option<i64>,
    /// Quest: resume automatically when the usage window resets.
    #[serde(default, skip_serializing_if = "is_false")]
    pub auto_resume_at_reset: bool,
    /// Quest: latest audit entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition: Option<LastTransition>,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl ThreadGoal {
    /// JSON for model tool results: like the wire object but without a null `tokenBudget`, and
    /// without the bookkeeping extensions (`lastTransition`; `turnsUsed` unless a turn budget is
    /// set), so a run with default settings gives the model exactly Codex's shape.
    pub fn for_model(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(map) = value.as_object_mut() {
            map.remove("lastTransition");
            if self.turn_budget.is_none() {
                map.remove("turnsUsed");
            }
        }
        if let Some(map) = value.as_object_mut()
            && map
                .get("tokenBudget")
                .is_some_and(serde_json::Value::is_null)
        {
            map.remove("tokenBudget");
        }
        value
    }

    /// `max(tokenBudget − tokensUsed, 0)` when a budget exists.
    pub fn remaining_tokens(&self) -> Option<i64> {
        self.token_budget
            .map(|budget| budget.saturating_sub(self.tokens_used).max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn goal() -> ThreadGoal {
        ThreadGoal {
            thread_id: "t".into(),
            objective: "o".into(),
            status: GoalStatus::Active,
            token_budget: None,
            tokens_used: 0,
            time_used_seconds: 0,
            created_at: 1,
            updated_at: 2,
            time_budget_seconds: None,
            turn_budget: None,
            turns_used: 0,
            budget_limit_kind: None,
            usage_limit_resets_at: None,
            auto_resume_at_reset: false,
            last_transition: None,
        }
    }

    #[test]
    fn default_goal_serialises_codex_identically() {
        assert_eq!(
            serde_json::to_value(goal()).unwrap(),
            json!({"threadId":"t","objective":"o","status":"active","tokenBudget":null,
                   "tokensUsed":0,"timeUsedSeconds":0,"createdAt":1,"updatedAt":2})
        );
        assert_eq!(
            goal().for_model(),
            json!({"threadId":"t","objective":"o","status":"active",
                   "tokensUsed":0,"timeUsedSeconds":0,"createdAt":1,"updatedAt":2})
        );
    }

    #[test]
    fn status_spellings() {
        for status in GoalStatus::ALL {
            assert_eq!(GoalStatus::parse(status.as_wire()), Some(status));
            assert_eq!(GoalStatus::parse(status.as_storage()), Some(status));
            let json = serde_json::to_value(status).unwrap();
            assert_eq!(json, json!(status.as_wire()));
        }
        assert_eq!(GoalStatus::UsageLimited.as_storage(), "usage_limited");
        assert_eq!(GoalStatus::parse("nope"), None);
    }

    #[test]
    fn reasons_round_trip() {
        for reason in GoalReason::ALL {
            assert_eq!(GoalReason::parse(reason.as_str()), Some(reason));
            assert_eq!(
                serde_json::to_value(reason).unwrap(),
                json!(reason.as_str())
            );
        }
    }

    #[test]
    fn remaining_tokens_saturates() {
        let mut g = goal();
        assert_eq!(g.remaining_tokens(), None);
        g.token_budget = Some(40);
        g.tokens_used = 50;
        assert_eq!(g.remaining_tokens(), Some(0));
    }
}
