//! The goal as stored, its audit events, and what a transition returns.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::super::{Actor, BudgetLimitKind, GoalReason, GoalStatus, LastTransition, ThreadGoal};

/// The full internal goal: the stored row, including fields that never reach the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoalState {
    /// Internal id (UUID v4); a replacement gets a new one, an edit keeps it.
    pub goal_id: String,
    /// Owning thread.
    pub thread_id: String,
    /// Trimmed objective, 1..=4000 characters.
    pub objective: String,
    /// Current status.
    pub status: GoalStatus,
    /// Token cap; `None` = no cap.
    pub token_budget: Option<i64>,
    /// Tokens charged so far.
    pub tokens_used: i64,
    /// Wall-clock cap in seconds; `None` = no cap.
    pub time_budget_seconds: Option<i64>,
    /// Seconds charged while active.
    pub time_used_seconds: i64,
    /// Cap on goal turns; `None` = no cap.
    pub turn_budget: Option<i64>,
    /// Goal turns charged.
    pub turns_used: i64,
    /// Which budget tripped; `Some` only while `budgetLimited` (and `None` even then when the user
    /// set `budgetLimited` directly on a goal that is within all its budgets).
    pub budget_limit_kind: Option<BudgetLimitKind>,
    /// Unix seconds at which the usage limit resets; `Some` only while `usageLimited`.
    pub usage_limit_resets_at: Option<i64>,
    /// Resume automatically when the usage window resets.
    pub auto_resume_at_reset: bool,
    /// The reset time (unix seconds) of the last automatic resume, so each distinct reset time
    /// resumes at most once.
    pub last_auto_resume_reset_at: Option<i64>,
    /// Consecutive goal turns without progress.
    pub no_progress_streak: i64,
    /// Consecutive no-progress goal turns reporting the same blocker.
    pub blocker_streak: i64,
    /// Fingerprint of the last reported blocker (see [`crate::goal::blocker_fingerprint`]).
    pub last_blocker_fingerprint: Option<String>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Unix milliseconds; bumped by every mutation, accounting included.
    pub updated_at_ms: i64,
    /// The latest audited change of this goal.
    pub last_transition: Option<LastTransitionMs>,
}

/// The latest audited change of a goal, in milliseconds (converted to seconds on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastTransitionMs {
    /// Who made the change.
    pub actor: Actor,
    /// Why.
    pub reason: GoalReason,
    /// Unix milliseconds.
    pub at_ms: i64,
}

impl GoalState {
    /// The app-server wire object (`ThreadGoal`, seconds instead of milliseconds).
    pub fn to_wire(&self) -> ThreadGoal {
        ThreadGoal {
            thread_id: self.thread_id.clone(),
            objective: self.objective.clone(),
            status: self.status,
            token_budget: self.token_budget,
            tokens_used: self.tokens_used,
            time_used_seconds: self.time_used_seconds,
            created_at: self.created_at_ms.div_euclid(1000),
            updated_at: self.updated_at_ms.div_euclid(1000),
            time_budget_seconds: self.time_budget_seconds,
            turn_budget: self.turn_budget,
            turns_used: self.turns_used,
            budget_limit_kind: self.budget_limit_kind,
            usage_limit_resets_at: self.usage_limit_resets_at,
            auto_resume_at_reset: self.auto_resume_at_reset,
            last_transition: self.last_transition.map(|t| LastTransition {
                actor: t.actor,
                reason: t.reason,
                at: t.at_ms.div_euclid(1000),
            }),
        }
    }

    /// The first budget this goal has reached, checked in the order tokens, time, turns.
    pub fn exceeded_budget(&self) -> Option<BudgetLimitKind> {
        let over = |budget: Option<i64>, used: i64| budget.is_some_and(|b| used >= b);
        if over(self.token_budget, self.tokens_used) {
            Some(BudgetLimitKind::Tokens)
        } else if over(self.time_budget_seconds, self.time_used_seconds) {
            Some(BudgetLimitKind::Time)
        } else if over(self.turn_budget, self.turns_used) {
            Some(BudgetLimitKind::Turns)
        } else {
            None
        }
    }

    /// Counters and budgets as a JSON object, for audit-event details.
    pub fn counters_json(&self) -> Value {
        json!({
            "tokensUsed": self.tokens_used,
            "timeUsedSeconds": self.time_used_seconds,
            "turnsUsed": self.turns_used,
            "tokenBudget": self.token_budget,
            "timeBudgetSeconds": self.time_budget_seconds,
            "turnBudget": self.turn_budget,
            "noProgressStreak": self.no_progress_streak,
            "blockerStreak": self.blocker_streak,
        })
    }
}

/// Where a user-side change came from (`origin` of `thread/goal/set` and `clear`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GoalOrigin {
    /// A person asked for it.
    User,
    /// A client acted on its own.
    Automatic,
}

impl GoalOrigin {
    /// Lowercase name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            GoalOrigin::User => "user",
            GoalOrigin::Automatic => "automatic",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(text: &str) -> Option<GoalOrigin> {
        match text {
            "user" => Some(GoalOrigin::User),
            "automatic" => Some(GoalOrigin::Automatic),
            _ => None,
        }
    }
}

/// What an audit event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoalEventKind {
    /// A goal was created on a thread that had none.
    Created,
    /// A new goal replaced an existing one (new `goal_id`, counters reset).
    Replaced,
    /// Only the status changed.
    StatusChanged,
    /// The objective or a goal setting changed (status may have changed with it).
    Edited,
    /// A budget changed (status may have changed with it).
    BudgetChanged,
    /// The goal was deleted.
    Cleared,
}

impl GoalEventKind {
    /// Every kind, in declaration order.
    pub const ALL: [GoalEventKind; 6] = [
        GoalEventKind::Created,
        GoalEventKind::Replaced,
        GoalEventKind::StatusChanged,
        GoalEventKind::Edited,
        GoalEventKind::BudgetChanged,
        GoalEventKind::Cleared,
    ];

    /// snake_case name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            GoalEventKind::Created => "created",
            GoalEventKind::Replaced => "replaced",
            GoalEventKind::StatusChanged => "status_changed",
            GoalEventKind::Edited => "edited",
            GoalEventKind::BudgetChanged => "budget_changed",
            GoalEventKind::Cleared => "cleared",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(text: &str) -> Option<GoalEventKind> {
        GoalEventKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// One entry of the goal audit trail (`thread_goal_events`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoalEvent {
    /// Row id, assigned by the store (`None` before it is written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// Owning thread.
    pub thread_id: String,
    /// The goal the event concerns (for a replacement: the new goal).
    pub goal_id: String,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Who caused it.
    pub actor: Actor,
    /// What happened.
    pub kind: GoalEventKind,
    /// Status before (`None` when there was no goal).
    pub from_status: Option<GoalStatus>,
    /// Status after (`None` when the goal was cleared).
    pub to_status: Option<GoalStatus>,
    /// Why (fixed vocabulary).
    pub reason: GoalReason,
    /// Where a user-side change came from, filled in by the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<GoalOrigin>,
    /// The turn the change is attributed to, filled in by the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<String>,
    /// Counters at the time plus event-specific facts (error class, blocker excerpt, …).
    pub detail: Value,
}

/// The outcome of an accepted trigger.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The goal after the trigger (`None` when there is none, e.g. after a clear).
    pub goal: Option<GoalState>,
    /// True when the stored row must be written (or deleted).
    pub changed: bool,
    /// True when the status changed, a goal appeared or a goal was deleted.
    pub status_changed: bool,
    /// The audit event to write in the same transaction, if this change is audited. Accounting
    /// flushes and breaker counter updates that do not change the status are not audited.
    pub event: Option<GoalEvent>,
}

impl Transition {
    pub(super) fn unchanged(goal: Option<&GoalState>) -> Self {
        Transition {
            goal: goal.cloned(),
            changed: false,
            status_changed: false,
            event: None,
        }
    }
}

/// A refused request. The `Display` text is the exact message shown to the user or the model.
/// None of these is retried: the request itself is wrong for the current goal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The objective is empty after trimming (create, edit).
    #[error("goal objective must not be empty")]
    EmptyObjective,
    /// The objective is longer than 4000 characters after trimming (create, edit).
    #[error("goal objective must be at most 4000 characters")]
    ObjectiveTooLong,
    /// A budget of zero or less was given (create, budget change).
    #[error("goal budgets must be positive when provided")]
    BudgetNotPositive,
    /// A token budget above `max_goal_token_budget` was given.
    #[error("goal token budget {requested} exceeds the maximum allowed goal token budget of {max}")]
    TokenBudgetTooLarge {
        /// The requested budget.
        requested: i64,
        /// The configured maximum.
        max: i64,
    },
    /// `create_goal` (or an unconfirmed creation) while an unfinished goal exists.
    #[error(
        "cannot create a new goal because this thread has an unfinished goal; complete the existing goal first"
    )]
    UnfinishedGoalExists,
    /// `update_goal` asked for a status the model may not set.
    #[error(
        "update_goal can only mark the existing goal complete, blocked, or paused at the user's explicit request; resume, budget-limited, and usage-limited status changes are controlled by the user or system"
    )]
    ModelStatusNotAllowed,
    /// `update_goal` on a thread without a goal.
    #[error("cannot update goal because this thread has no goal")]
    ModelNoGoal,
    /// A user pause of a `complete` goal: there is nothing left to pause (the transition table
    /// has no `complete` → `paused` move; edit or replace the goal instead).
    #[error("cannot pause a goal that is complete; edit or replace it instead")]
    CompleteCannotPause,
    /// A user update on a thread without a goal (and without an objective to create one).
    #[error("cannot update goal for thread {thread_id}: no goal exists")]
    NoGoal {
        /// The thread.
        thread_id: String,
    },
    /// The actor may not use this trigger (e.g. the model clearing a goal or changing budgets,
    /// the user reporting a usage limit).
    #[error("{actor} is not allowed to {action}")]
    NotPermitted {
        /// Who asked.
        actor: Actor,
        /// The refused action (the trigger name).
        action: &'static str,
    },
}

impl TransitionError {
    /// Fills in the thread id of a [`TransitionError::NoGoal`] raised by a trigger that does not
    /// carry one (`SetStatus`, `Resume` on a thread without a goal).
    pub fn for_thread(self, thread: &str) -> Self {
        match self {
            TransitionError::NoGoal { thread_id } if thread_id.is_empty() => {
                TransitionError::NoGoal {
                    thread_id: thread.to_owned(),
                }
            }
            other => other,
        }
    }
}
