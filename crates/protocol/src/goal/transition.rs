//! The goal state machine: one pure function, [`transition`], through which every goal change
//! goes — user requests (CLI, TUI, API), model tools (`create_goal`, `update_goal`) and system
//! events (usage accounting, budgets, usage limits, turn errors, the circuit breaker, restart
//! handling).
//!
//! The function takes the current goal (or none), a [`Trigger`], the [`Actor`] asking and the
//! current time, and returns either a [`Transition`] (the new goal, whether anything changed, and
//! the audit [`GoalEvent`] to write in the same transaction) or a [`TransitionError`] carrying the
//! exact user- or model-facing message. It performs no I/O; the store applies the result.
//!
//! Rules enforced here (see the goal-runtime specification §4, §5, §7, §9–12, §17):
//! - budget precedence: `paused`/`blocked` never overwrite `budgetLimited`; `active` over any
//!   budget is stored as `budgetLimited`; a budget lowered under usage on an `active` goal trips it;
//! - authority: the model may only create (when no unfinished goal exists) and mark
//!   `complete`/`blocked`/`paused` an `active` or `budgetLimited` goal; system stops are the
//!   system's; everything else belongs to the user;
//! - `budgetLimitKind` is set only while `budgetLimited`, `usageLimitResetsAt` only while
//!   `usageLimited`;
//! - a goal is never `active` while over one of its budgets, so accounting overshoots a budget by
//!   at most the one delta that crossed it.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    Actor, BudgetLimitKind, GoalReason, GoalStatus, LastTransition,
    MAX_THREAD_GOAL_OBJECTIVE_CHARS, ThreadGoal,
};

/// Longest blocker excerpt kept in an audit event's detail, in characters.
pub const MAX_BLOCKER_EXCERPT_CHARS: usize = 500;

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
    /// Fingerprint of the last reported blocker (see [`blocker_fingerprint`]).
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

/// A three-state budget change: omitted = keep, `null` = clear, number = set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BudgetChange {
    /// Leave the budget as it is.
    #[default]
    Keep,
    /// Remove the budget (a token budget falls back to `max_goal_token_budget` when configured).
    Clear,
    /// Set the budget to this value (must be positive).
    Set(i64),
}

/// Configured limits and defaults (`[goals]` in `config.toml`) that creation and budget changes
/// need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoalLimits {
    /// `max_goal_token_budget`: ceiling for token budgets and the default for goals created
    /// without one.
    pub max_token_budget: Option<i64>,
    /// `default_time_budget`, in seconds, for goals created without a time budget.
    pub default_time_budget_seconds: Option<i64>,
    /// `default_turn_budget` for goals created without a turn budget.
    pub default_turn_budget: Option<i64>,
}

/// How a creation treats an existing goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateMode {
    /// Create only when there is no goal or the current one is `complete` (`create_goal`, the
    /// unconfirmed `/goal <objective>`).
    IfNoneOrComplete,
    /// Replace whatever goal exists (`/goal <objective>` after "Replace goal?"); user only.
    Replace,
}

/// A goal creation request (`/goal <objective>`, `thread/goal/set` on a thread without a goal,
/// `create_goal`, `quest exec --goal`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateGoal {
    /// Owning thread.
    pub thread_id: String,
    /// The id the new goal gets (UUID v4); supplied by the caller so the function stays pure.
    pub new_goal_id: String,
    /// Untrimmed objective text.
    pub objective: String,
    /// Requested status (user only; `None` = `active`).
    pub status: Option<GoalStatus>,
    /// Token budget; `None` = the configured maximum, if any.
    pub token_budget: Option<i64>,
    /// Time budget in seconds; `None` = the configured default (user only).
    pub time_budget_seconds: Option<i64>,
    /// Turn budget; `None` = the configured default (user only).
    pub turn_budget: Option<i64>,
    /// Opt in to automatic resume at usage-limit reset (user only).
    pub auto_resume_at_reset: bool,
    /// What to do with an existing goal.
    pub mode: CreateMode,
    /// Configured limits.
    pub limits: GoalLimits,
}

impl CreateGoal {
    /// A plain creation with a fresh UUID v4 goal id and no explicit budgets.
    pub fn new(thread_id: impl Into<String>, objective: impl Into<String>) -> Self {
        CreateGoal {
            thread_id: thread_id.into(),
            new_goal_id: uuid::Uuid::new_v4().to_string(),
            objective: objective.into(),
            status: None,
            token_budget: None,
            time_budget_seconds: None,
            turn_budget: None,
            auto_resume_at_reset: false,
            mode: CreateMode::IfNoneOrComplete,
            limits: GoalLimits::default(),
        }
    }
}

/// An in-place update of an existing goal by the user (`thread/goal/set`, `/goal edit`,
/// `quest goal pause|resume|edit|budget`). Every field is optional; an empty update changes
/// nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateGoal {
    /// The owning thread, used in the "no goal exists" message.
    pub thread_id: String,
    /// New objective (untrimmed); `None` = keep.
    pub objective: Option<String>,
    /// Requested status; `None` = keep (precedence rules are re-applied either way).
    pub status: Option<GoalStatus>,
    /// Token budget change.
    pub token_budget: BudgetChange,
    /// Time budget change.
    pub time_budget_seconds: BudgetChange,
    /// Turn budget change.
    pub turn_budget: BudgetChange,
    /// Change the auto-resume opt-in; `None` = keep.
    pub auto_resume_at_reset: Option<bool>,
    /// Configured limits.
    pub limits: GoalLimits,
}

/// Which statuses an accounting flush may charge (§9 accounting modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountingMode {
    /// `active` or `budgetLimited` (ordinary flushes).
    ActiveOnly,
    /// Also `complete` (the flush of the turn that completed the goal).
    ActiveOrComplete,
    /// Also `paused`, `blocked`, `usageLimited` (the flush that precedes a stop).
    ActiveOrStopped,
}

impl AccountingMode {
    fn matches(self, status: GoalStatus) -> bool {
        match status {
            GoalStatus::Active | GoalStatus::BudgetLimited => true,
            GoalStatus::Complete => matches!(self, AccountingMode::ActiveOrComplete),
            GoalStatus::Paused | GoalStatus::Blocked | GoalStatus::UsageLimited => {
                matches!(self, AccountingMode::ActiveOrStopped)
            }
        }
    }
}

/// How the runtime classified a finished goal turn (§17a).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TurnOutcome {
    /// A non-goal tool executed successfully and was not an exact repeat, or a file changed.
    Progress,
    /// Nothing useful happened; `blocker` is the final assistant text (the reported blocker).
    NoProgress {
        /// Final assistant text, if any.
        blocker: Option<String>,
    },
    /// The turn ended waiting for user input or an approval; not counted.
    Waiting,
}

/// Circuit-breaker thresholds (`[goals] max_no_progress_turns`, `max_repeated_blocker_turns`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerThresholds {
    /// Consecutive no-progress turns that block the goal (reason `no_progress`).
    pub max_no_progress_turns: i64,
    /// Consecutive turns with the same blocker that block the goal (reason `repeated_blocker`).
    pub max_repeated_blocker_turns: i64,
}

impl Default for BreakerThresholds {
    fn default() -> Self {
        BreakerThresholds {
            max_no_progress_turns: 3,
            max_repeated_blocker_turns: 3,
        }
    }
}

/// A loop guard other than the breaker that stops an active goal (§11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardStop {
    /// Consecutive automatic turns with neither text nor a tool call.
    EmptyResponses,
    /// Consecutive goal turns where a command failed and no tool succeeded.
    ExecutionFailures,
}

/// Everything that can change a goal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Create (or replace) a goal. User or model (`create_goal`).
    Create(CreateGoal),
    /// Update objective, status, budgets or settings in place. User only.
    Update(UpdateGoal),
    /// Request a status. User: any status (`active` behaves exactly like [`Trigger::Resume`]).
    /// Model (`update_goal`): `complete`, `blocked`, `paused` only, and only on a goal it is
    /// pursuing (`active`, or `budgetLimited` for `complete`); otherwise a no-op.
    SetStatus {
        /// Requested status.
        status: GoalStatus,
    },
    /// User resume: `active` with the breaker counters and fingerprint reset; lands in
    /// `budgetLimited` when still over a budget.
    Resume,
    /// The user interrupted the running goal (Esc, Ctrl-C, SIGINT): `active` → `paused`, reason
    /// `interrupt`.
    Interrupt,
    /// Charge usage (system). May trip `budgetLimited`.
    AccountUsage {
        /// Tokens to add (`goal_charge()` of the usage since the last flush).
        tokens: i64,
        /// Whole wall-clock seconds to add.
        seconds: i64,
        /// Goal turns to add.
        turns: i64,
        /// Which statuses may be charged.
        mode: AccountingMode,
    },
    /// The provider reported a usage limit (system): `active`/`budgetLimited` → `usageLimited`.
    UsageLimit {
        /// Unix seconds at which the limit resets, when known.
        resets_at: Option<i64>,
    },
    /// A goal turn failed for good (system): `active` → `blocked`, reason `turn_error`.
    TurnError {
        /// Error class (e.g. `RetryLimit`, `ServerOverloaded`).
        error_class: String,
        /// Error message (an excerpt is kept).
        message: String,
    },
    /// The classification of a finished goal turn (system); updates the breaker counters and
    /// may block the goal.
    TurnClassified {
        /// The classification.
        outcome: TurnOutcome,
        /// Thresholds in force.
        thresholds: BreakerThresholds,
    },
    /// A loop guard fired (system): `active` → `blocked`.
    Guard(GuardStop),
    /// A headless goal turn ended waiting for input (system): `active` → `paused`, reason
    /// `awaiting_input`.
    AwaitingInput,
    /// The usage window reset (system): `usageLimited` → `active`, at most once per distinct
    /// reset time, only when auto-resume is enabled.
    AutoResumeAtReset {
        /// `[goals] auto_resume_after_usage_limit` (the goal's own opt-in also counts).
        enabled_by_config: bool,
    },
    /// The process running the goal exited or was found dead (system): `active` → `paused`,
    /// reason `process_exit`.
    ProcessExit {
        /// `true` for a clean exit, `false` for one detected on load (crash).
        clean: bool,
    },
    /// Delete the goal. User only.
    Clear,
}

impl Trigger {
    /// What the trigger does, as a verb phrase for messages ("clear a goal").
    pub fn action(&self) -> &'static str {
        match self {
            Trigger::Create(_) => "create a goal",
            Trigger::Update(_) => "edit a goal or its budgets",
            Trigger::SetStatus { .. } => "set the goal status",
            Trigger::Resume => "resume a goal",
            Trigger::Interrupt => "interrupt a goal",
            Trigger::AccountUsage { .. } => "charge goal usage",
            Trigger::UsageLimit { .. } => "report a usage limit",
            Trigger::TurnError { .. } => "report a goal turn error",
            Trigger::TurnClassified { .. } => "classify a goal turn",
            Trigger::Guard(_) => "stop a goal by a loop guard",
            Trigger::AwaitingInput => "pause a goal that awaits input",
            Trigger::AutoResumeAtReset { .. } => "auto-resume a goal",
            Trigger::ProcessExit { .. } => "pause a goal on process exit",
            Trigger::Clear => "clear a goal",
        }
    }
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
    fn unchanged(goal: Option<&GoalState>) -> Self {
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

/// Validates and trims an objective (`create_goal`, `/goal`, `thread/goal/set`).
pub fn validate_objective(objective: &str) -> Result<String, TransitionError> {
    let trimmed = objective.trim();
    if trimmed.is_empty() {
        return Err(TransitionError::EmptyObjective);
    }
    if trimmed.chars().count() > MAX_THREAD_GOAL_OBJECTIVE_CHARS {
        return Err(TransitionError::ObjectiveTooLong);
    }
    Ok(trimmed.to_owned())
}

/// Validates a requested token budget against the configured maximum.
pub fn validate_token_budget(budget: i64, max: Option<i64>) -> Result<i64, TransitionError> {
    if budget <= 0 {
        return Err(TransitionError::BudgetNotPositive);
    }
    match max {
        Some(max) if budget > max => Err(TransitionError::TokenBudgetTooLarge {
            requested: budget,
            max,
        }),
        _ => Ok(budget),
    }
}

fn validate_positive(budget: i64) -> Result<i64, TransitionError> {
    if budget <= 0 {
        Err(TransitionError::BudgetNotPositive)
    } else {
        Ok(budget)
    }
}

/// A stable fingerprint of a reported blocker, so near-identical wording counts as the same
/// blocker: lowercased, every run of digits replaced by `#`, punctuation and whitespace runs
/// collapsed to one space, trimmed, then hashed (64-bit FNV-1a, 16 hex digits). Empty or
/// punctuation-only text has the fingerprint of the empty string.
pub fn blocker_fingerprint(text: &str) -> String {
    let normalized = normalize_blocker(text);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in normalized.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn normalize_blocker(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    let mut in_digits = false;
    for ch in text.chars().flat_map(char::to_lowercase) {
        if ch.is_numeric() {
            if !in_digits {
                if pending_space && !out.is_empty() {
                    out.push(' ');
                }
                pending_space = false;
                out.push('#');
                in_digits = true;
            }
        } else if ch.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            in_digits = false;
            out.push(ch);
        } else {
            pending_space = true;
            in_digits = false;
        }
    }
    out
}

fn excerpt(text: &str) -> String {
    text.chars().take(MAX_BLOCKER_EXCERPT_CHARS).collect()
}

/// Applies `trigger`, asked by `actor` at `now_ms`, to `goal` (the thread's current goal, if
/// any).
///
/// Returns the new state and the audit event to persist with it, or the refusal with its exact
/// message. Triggers that do not apply to the current status (a usage limit on a paused goal, a
/// process exit of a goal that is no longer active, a second automatic resume for the same reset
/// time, `paused` requested on a `budgetLimited` goal) are accepted as no-ops
/// (`changed == false`), because they race with other writers and must not fail the caller.
pub fn transition(
    goal: Option<&GoalState>,
    trigger: &Trigger,
    actor: Actor,
    now_ms: i64,
) -> Result<Transition, TransitionError> {
    let not_permitted = || TransitionError::NotPermitted {
        actor,
        action: trigger.action(),
    };
    match trigger {
        Trigger::Create(create) => match actor {
            Actor::User | Actor::Model => apply_create(goal, create, actor, now_ms),
            Actor::System => Err(not_permitted()),
        },
        Trigger::Update(update) => match actor {
            Actor::User => apply_update(goal, update, now_ms),
            Actor::Model | Actor::System => Err(not_permitted()),
        },
        Trigger::SetStatus { status } => match actor {
            Actor::User => {
                let update = UpdateGoal {
                    thread_id: goal.map(|g| g.thread_id.clone()).unwrap_or_default(),
                    status: Some(*status),
                    ..UpdateGoal::default()
                };
                apply_update(goal, &update, now_ms)
            }
            Actor::Model => apply_model_status(goal, *status, now_ms),
            Actor::System => Err(not_permitted()),
        },
        Trigger::Resume => match actor {
            Actor::User => {
                let update = UpdateGoal {
                    thread_id: goal.map(|g| g.thread_id.clone()).unwrap_or_default(),
                    status: Some(GoalStatus::Active),
                    ..UpdateGoal::default()
                };
                apply_update(goal, &update, now_ms)
            }
            Actor::Model | Actor::System => Err(not_permitted()),
        },
        Trigger::Interrupt => match actor {
            Actor::User => Ok(stop_if_active(
                goal,
                GoalStatus::Paused,
                actor,
                GoalReason::Interrupt,
                json!({}),
                now_ms,
            )),
            Actor::Model | Actor::System => Err(not_permitted()),
        },
        Trigger::Clear => match actor {
            Actor::User => Ok(apply_clear(goal, now_ms)),
            Actor::Model | Actor::System => Err(not_permitted()),
        },
        Trigger::AccountUsage {
            tokens,
            seconds,
            turns,
            mode,
        } => match actor {
            Actor::System => Ok(apply_accounting(
                goal, *tokens, *seconds, *turns, *mode, now_ms,
            )),
            Actor::User | Actor::Model => Err(not_permitted()),
        },
        Trigger::UsageLimit { resets_at } => match actor {
            Actor::System => Ok(apply_usage_limit(goal, *resets_at, now_ms)),
            Actor::User | Actor::Model => Err(not_permitted()),
        },
        Trigger::TurnError {
            error_class,
            message,
        } => match actor {
            Actor::System => Ok(stop_if_active(
                goal,
                GoalStatus::Blocked,
                actor,
                GoalReason::TurnError,
                json!({"errorClass": error_class, "error": excerpt(message)}),
                now_ms,
            )),
            Actor::User | Actor::Model => Err(not_permitted()),
        },
        Trigger::TurnClassified {
            outcome,
            thresholds,
        } => match actor {
            Actor::System => Ok(apply_breaker(goal, outcome, *thresholds, now_ms)),
            Actor::User | Actor::Model => Err(not_permitted()),
        },
        Trigger::Guard(guard) => match actor {
            Actor::System => {
                let reason = match guard {
                    GuardStop::EmptyResponses => GoalReason::EmptyResponses,
                    GuardStop::ExecutionFailures => GoalReason::ExecutionFailures,
                };
                Ok(stop_if_active(
                    goal,
                    GoalStatus::Blocked,
                    actor,
                    reason,
                    json!({}),
                    now_ms,
                ))
            }
            Actor::User | Actor::Model => Err(not_permitted()),
        },
        Trigger::AwaitingInput => match actor {
            Actor::System => Ok(stop_if_active(
                goal,
                GoalStatus::Paused,
                actor,
                GoalReason::AwaitingInput,
                json!({}),
                now_ms,
            )),
            Actor::User | Actor::Model => Err(not_permitted()),
        },
        Trigger::AutoResumeAtReset { enabled_by_config } => match actor {
            Actor::System => Ok(apply_auto_resume(goal, *enabled_by_config, now_ms)),
            Actor::User | Actor::Model => Err(not_permitted()),
        },
        Trigger::ProcessExit { clean } => match actor {
            Actor::System => Ok(stop_if_active(
                goal,
                GoalStatus::Paused,
                actor,
                GoalReason::ProcessExit,
                json!({"exit": if *clean { "clean" } else { "unclean" }}),
                now_ms,
            )),
            Actor::User | Actor::Model => Err(not_permitted()),
        },
    }
}

/// Sets `status` and keeps `budget_limit_kind` / `usage_limit_resets_at` consistent with it.
fn set_status(goal: &mut GoalState, status: GoalStatus, resets_at: Option<i64>) {
    goal.status = status;
    match status {
        GoalStatus::BudgetLimited => {
            goal.usage_limit_resets_at = None;
            goal.budget_limit_kind = goal.exceeded_budget().or(goal.budget_limit_kind);
        }
        GoalStatus::UsageLimited => {
            goal.budget_limit_kind = None;
            goal.usage_limit_resets_at = resets_at;
        }
        GoalStatus::Active | GoalStatus::Paused | GoalStatus::Blocked | GoalStatus::Complete => {
            goal.budget_limit_kind = None;
            goal.usage_limit_resets_at = None;
        }
    }
}

/// The precedence rules of §4 applied to a requested status.
fn resolve_requested(current: GoalStatus, requested: GoalStatus, goal: &GoalState) -> GoalStatus {
    match requested {
        GoalStatus::Paused | GoalStatus::Blocked if current == GoalStatus::BudgetLimited => {
            GoalStatus::BudgetLimited
        }
        GoalStatus::Active if goal.exceeded_budget().is_some() => GoalStatus::BudgetLimited,
        GoalStatus::Active
        | GoalStatus::Paused
        | GoalStatus::Blocked
        | GoalStatus::UsageLimited
        | GoalStatus::BudgetLimited
        | GoalStatus::Complete => requested,
    }
}

fn reset_breaker(goal: &mut GoalState) {
    goal.no_progress_streak = 0;
    goal.blocker_streak = 0;
    goal.last_blocker_fingerprint = None;
}

#[allow(clippy::too_many_arguments)]
fn event(
    goal: &GoalState,
    actor: Actor,
    kind: GoalEventKind,
    from: Option<GoalStatus>,
    to: Option<GoalStatus>,
    reason: GoalReason,
    extra: Value,
    now_ms: i64,
) -> GoalEvent {
    let mut detail = goal.counters_json();
    if let (Some(map), Value::Object(extra)) = (detail.as_object_mut(), extra) {
        map.extend(extra);
    }
    if let (Some(map), Some(kind)) = (detail.as_object_mut(), goal.budget_limit_kind) {
        map.insert("budgetLimitKind".into(), json!(kind.as_str()));
    }
    GoalEvent {
        id: None,
        thread_id: goal.thread_id.clone(),
        goal_id: goal.goal_id.clone(),
        at_ms: now_ms,
        actor,
        kind,
        from_status: from,
        to_status: to,
        reason,
        origin: None,
        turn_id: None,
        detail,
    }
}

fn finish(
    before: Option<&GoalState>,
    mut after: GoalState,
    actor: Actor,
    kind: GoalEventKind,
    reason: GoalReason,
    extra: Value,
    now_ms: i64,
) -> Transition {
    after.updated_at_ms = now_ms;
    after.last_transition = Some(LastTransitionMs {
        actor,
        reason,
        at_ms: now_ms,
    });
    let from = before.map(|g| g.status);
    let status_changed =
        from != Some(after.status) || before.is_some_and(|b| b.goal_id != after.goal_id);
    let ev = event(
        &after,
        actor,
        kind,
        from,
        Some(after.status),
        reason,
        extra,
        now_ms,
    );
    Transition {
        goal: Some(after),
        changed: true,
        status_changed,
        event: Some(ev),
    }
}

fn apply_create(
    goal: Option<&GoalState>,
    create: &CreateGoal,
    actor: Actor,
    now_ms: i64,
) -> Result<Transition, TransitionError> {
    let objective = validate_objective(&create.objective)?;
    let token_budget = match create.token_budget {
        Some(b) => Some(validate_token_budget(b, create.limits.max_token_budget)?),
        None => create.limits.max_token_budget,
    };
    let model_only_fields = create.status.is_some()
        || create.time_budget_seconds.is_some()
        || create.turn_budget.is_some()
        || create.auto_resume_at_reset
        || create.mode == CreateMode::Replace;
    if actor == Actor::Model && model_only_fields {
        return Err(TransitionError::NotPermitted {
            actor,
            action: "choose a status, time or turn budgets, auto-resume, or a forced replacement when creating a goal",
        });
    }
    let time_budget_seconds = match create.time_budget_seconds {
        Some(b) => Some(validate_positive(b)?),
        None => create.limits.default_time_budget_seconds,
    };
    let turn_budget = match create.turn_budget {
        Some(b) => Some(validate_positive(b)?),
        None => create.limits.default_turn_budget,
    };
    if let Some(existing) = goal {
        let replaceable =
            existing.status == GoalStatus::Complete || create.mode == CreateMode::Replace;
        if !replaceable {
            return Err(TransitionError::UnfinishedGoalExists);
        }
    }
    let mut new_goal = GoalState {
        goal_id: create.new_goal_id.clone(),
        thread_id: create.thread_id.clone(),
        objective,
        status: GoalStatus::Active,
        token_budget,
        tokens_used: 0,
        time_budget_seconds,
        time_used_seconds: 0,
        turn_budget,
        turns_used: 0,
        budget_limit_kind: None,
        usage_limit_resets_at: None,
        auto_resume_at_reset: create.auto_resume_at_reset,
        last_auto_resume_reset_at: None,
        no_progress_streak: 0,
        blocker_streak: 0,
        last_blocker_fingerprint: None,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
        last_transition: None,
    };
    let requested = create.status.unwrap_or(GoalStatus::Active);
    let status = resolve_requested(GoalStatus::Active, requested, &new_goal);
    set_status(&mut new_goal, status, None);
    let reason = match actor {
        Actor::Model => GoalReason::ToolUpdateGoal,
        Actor::User | Actor::System => GoalReason::UserRequest,
    };
    let (kind, extra) = match goal {
        None => (
            GoalEventKind::Created,
            json!({"objective": excerpt(&new_goal.objective)}),
        ),
        Some(old) => (
            GoalEventKind::Replaced,
            json!({
                "objective": excerpt(&new_goal.objective),
                "replacedGoalId": old.goal_id,
                "replaced": old.counters_json(),
            }),
        ),
    };
    Ok(finish(goal, new_goal, actor, kind, reason, extra, now_ms))
}

fn apply_budget_change(
    current: Option<i64>,
    change: BudgetChange,
    clear_to: Option<i64>,
    validate: impl Fn(i64) -> Result<i64, TransitionError>,
) -> Result<Option<i64>, TransitionError> {
    match change {
        BudgetChange::Keep => Ok(current),
        BudgetChange::Clear => Ok(clear_to),
        BudgetChange::Set(value) => validate(value).map(Some),
    }
}

fn apply_update(
    goal: Option<&GoalState>,
    update: &UpdateGoal,
    now_ms: i64,
) -> Result<Transition, TransitionError> {
    let Some(current) = goal else {
        // `thread/goal/set` with an objective on a thread without a goal creates one.
        return match &update.objective {
            Some(objective) => {
                let budget = |change: BudgetChange| match change {
                    BudgetChange::Set(v) => Some(v),
                    BudgetChange::Keep | BudgetChange::Clear => None,
                };
                let create = CreateGoal {
                    thread_id: update.thread_id.clone(),
                    new_goal_id: uuid::Uuid::new_v4().to_string(),
                    objective: objective.clone(),
                    status: update.status,
                    token_budget: budget(update.token_budget),
                    time_budget_seconds: budget(update.time_budget_seconds),
                    turn_budget: budget(update.turn_budget),
                    auto_resume_at_reset: update.auto_resume_at_reset.unwrap_or(false),
                    mode: CreateMode::IfNoneOrComplete,
                    limits: update.limits,
                };
                apply_create(None, &create, Actor::User, now_ms)
            }
            None => Err(TransitionError::NoGoal {
                thread_id: update.thread_id.clone(),
            }),
        };
    };
    let mut next = current.clone();
    if let Some(objective) = &update.objective {
        next.objective = validate_objective(objective)?;
    }
    let max = update.limits.max_token_budget;
    next.token_budget = apply_budget_change(next.token_budget, update.token_budget, max, |b| {
        validate_token_budget(b, max)
    })?;
    next.time_budget_seconds = apply_budget_change(
        next.time_budget_seconds,
        update.time_budget_seconds,
        None,
        validate_positive,
    )?;
    next.turn_budget = apply_budget_change(
        next.turn_budget,
        update.turn_budget,
        None,
        validate_positive,
    )?;
    if let Some(flag) = update.auto_resume_at_reset {
        next.auto_resume_at_reset = flag;
    }

    let requested = update.status.unwrap_or(current.status);
    let resuming = requested == GoalStatus::Active && current.status != GoalStatus::Active;
    if resuming {
        reset_breaker(&mut next);
    }
    let status = resolve_requested(current.status, requested, &next);
    let resets_at = if status == GoalStatus::UsageLimited {
        current.usage_limit_resets_at
    } else {
        None
    };
    set_status(&mut next, status, resets_at);

    if next == *current {
        return Ok(Transition::unchanged(goal));
    }
    let objective_changed = next.objective != current.objective;
    let budgets_changed = next.token_budget != current.token_budget
        || next.time_budget_seconds != current.time_budget_seconds
        || next.turn_budget != current.turn_budget;
    let kind = if objective_changed || next.auto_resume_at_reset != current.auto_resume_at_reset {
        GoalEventKind::Edited
    } else if budgets_changed {
        GoalEventKind::BudgetChanged
    } else {
        GoalEventKind::StatusChanged
    };
    let reason = match (next.status, next.budget_limit_kind) {
        (GoalStatus::BudgetLimited, Some(kind)) if current.status != GoalStatus::BudgetLimited => {
            kind.reason()
        }
        _ => GoalReason::UserRequest,
    };
    let mut extra = serde_json::Map::new();
    if objective_changed {
        extra.insert("objectiveChanged".into(), json!(true));
    }
    if budgets_changed {
        extra.insert(
            "previousBudgets".into(),
            json!({
                "tokenBudget": current.token_budget,
                "timeBudgetSeconds": current.time_budget_seconds,
                "turnBudget": current.turn_budget,
            }),
        );
    }
    if let Some(requested) = update.status
        && requested != next.status
    {
        extra.insert("requestedStatus".into(), json!(requested));
    }
    Ok(finish(
        goal,
        next,
        Actor::User,
        kind,
        reason,
        Value::Object(extra),
        now_ms,
    ))
}

fn apply_model_status(
    goal: Option<&GoalState>,
    status: GoalStatus,
    now_ms: i64,
) -> Result<Transition, TransitionError> {
    match status {
        GoalStatus::Complete | GoalStatus::Blocked | GoalStatus::Paused => {}
        GoalStatus::Active | GoalStatus::UsageLimited | GoalStatus::BudgetLimited => {
            return Err(TransitionError::ModelStatusNotAllowed);
        }
    }
    let Some(current) = goal else {
        return Err(TransitionError::ModelNoGoal);
    };
    // The model acts only on a goal it is pursuing; stops made by the user or the system stay.
    let applies = match current.status {
        GoalStatus::Active => true,
        GoalStatus::BudgetLimited => status == GoalStatus::Complete,
        GoalStatus::Paused
        | GoalStatus::Blocked
        | GoalStatus::UsageLimited
        | GoalStatus::Complete => false,
    };
    if !applies {
        return Ok(Transition::unchanged(goal));
    }
    let mut next = current.clone();
    set_status(&mut next, status, None);
    Ok(finish(
        goal,
        next,
        Actor::Model,
        GoalEventKind::StatusChanged,
        GoalReason::ToolUpdateGoal,
        json!({}),
        now_ms,
    ))
}

fn stop_if_active(
    goal: Option<&GoalState>,
    to: GoalStatus,
    actor: Actor,
    reason: GoalReason,
    extra: Value,
    now_ms: i64,
) -> Transition {
    match goal {
        Some(current) if current.status == GoalStatus::Active => {
            let mut next = current.clone();
            set_status(&mut next, to, None);
            finish(
                goal,
                next,
                actor,
                GoalEventKind::StatusChanged,
                reason,
                extra,
                now_ms,
            )
        }
        Some(_) | None => Transition::unchanged(goal),
    }
}

fn apply_clear(goal: Option<&GoalState>, now_ms: i64) -> Transition {
    let Some(current) = goal else {
        return Transition::unchanged(None);
    };
    let ev = event(
        current,
        Actor::User,
        GoalEventKind::Cleared,
        Some(current.status),
        None,
        GoalReason::UserRequest,
        json!({}),
        now_ms,
    );
    Transition {
        goal: None,
        changed: true,
        status_changed: true,
        event: Some(ev),
    }
}

fn apply_accounting(
    goal: Option<&GoalState>,
    tokens: i64,
    seconds: i64,
    turns: i64,
    mode: AccountingMode,
    now_ms: i64,
) -> Transition {
    let Some(current) = goal else {
        return Transition::unchanged(None);
    };
    let (tokens, seconds, turns) = (tokens.max(0), seconds.max(0), turns.max(0));
    if !mode.matches(current.status) || (tokens == 0 && seconds == 0 && turns == 0) {
        return Transition::unchanged(goal);
    }
    let mut next = current.clone();
    next.tokens_used = next.tokens_used.saturating_add(tokens);
    next.time_used_seconds = next.time_used_seconds.saturating_add(seconds);
    next.turns_used = next.turns_used.saturating_add(turns);
    next.updated_at_ms = now_ms;
    if next.status == GoalStatus::Active
        && let Some(kind) = next.exceeded_budget()
    {
        set_status(&mut next, GoalStatus::BudgetLimited, None);
        next.budget_limit_kind = Some(kind);
        return finish(
            goal,
            next,
            Actor::System,
            GoalEventKind::StatusChanged,
            kind.reason(),
            json!({"delta": {"tokens": tokens, "seconds": seconds, "turns": turns}}),
            now_ms,
        );
    }
    Transition {
        goal: Some(next),
        changed: true,
        status_changed: false,
        event: None,
    }
}

fn apply_usage_limit(goal: Option<&GoalState>, resets_at: Option<i64>, now_ms: i64) -> Transition {
    match goal {
        Some(current)
            if matches!(
                current.status,
                GoalStatus::Active | GoalStatus::BudgetLimited
            ) =>
        {
            let mut next = current.clone();
            set_status(&mut next, GoalStatus::UsageLimited, resets_at);
            finish(
                goal,
                next,
                Actor::System,
                GoalEventKind::StatusChanged,
                GoalReason::UsageLimit,
                json!({"resetsAt": resets_at}),
                now_ms,
            )
        }
        Some(_) | None => Transition::unchanged(goal),
    }
}

fn apply_breaker(
    goal: Option<&GoalState>,
    outcome: &TurnOutcome,
    thresholds: BreakerThresholds,
    now_ms: i64,
) -> Transition {
    let Some(current) = goal else {
        return Transition::unchanged(None);
    };
    if !matches!(
        current.status,
        GoalStatus::Active | GoalStatus::BudgetLimited
    ) {
        return Transition::unchanged(goal);
    }
    let mut next = current.clone();
    let blocker = match outcome {
        TurnOutcome::Waiting => return Transition::unchanged(goal),
        TurnOutcome::Progress => {
            reset_breaker(&mut next);
            None
        }
        TurnOutcome::NoProgress { blocker } => {
            next.no_progress_streak = next.no_progress_streak.saturating_add(1);
            let fingerprint = blocker
                .as_deref()
                .filter(|text| !normalize_blocker(text).is_empty())
                .map(blocker_fingerprint);
            match fingerprint {
                Some(fp) if next.last_blocker_fingerprint.as_deref() == Some(fp.as_str()) => {
                    next.blocker_streak = next.blocker_streak.saturating_add(1);
                }
                Some(fp) => {
                    next.blocker_streak = 1;
                    next.last_blocker_fingerprint = Some(fp);
                }
                None => {
                    next.blocker_streak = 0;
                    next.last_blocker_fingerprint = None;
                }
            }
            blocker.as_deref()
        }
    };
    if next == *current {
        return Transition::unchanged(goal);
    }
    next.updated_at_ms = now_ms;
    if next.status == GoalStatus::Active {
        let reason = if next.blocker_streak >= thresholds.max_repeated_blocker_turns {
            Some(GoalReason::RepeatedBlocker)
        } else if next.no_progress_streak >= thresholds.max_no_progress_turns {
            Some(GoalReason::NoProgress)
        } else {
            None
        };
        if let Some(reason) = reason {
            set_status(&mut next, GoalStatus::Blocked, None);
            let extra = json!({"blocker": blocker.map(excerpt)});
            return finish(
                goal,
                next,
                Actor::System,
                GoalEventKind::StatusChanged,
                reason,
                extra,
                now_ms,
            );
        }
    }
    Transition {
        goal: Some(next),
        changed: true,
        status_changed: false,
        event: None,
    }
}

fn apply_auto_resume(goal: Option<&GoalState>, enabled_by_config: bool, now_ms: i64) -> Transition {
    let Some(current) = goal else {
        return Transition::unchanged(None);
    };
    let due = match (current.status, current.usage_limit_resets_at) {
        (GoalStatus::UsageLimited, Some(resets_at)) => {
            (enabled_by_config || current.auto_resume_at_reset)
                && current.last_auto_resume_reset_at != Some(resets_at)
                && now_ms >= resets_at.saturating_mul(1000)
        }
        _ => false,
    };
    if !due {
        return Transition::unchanged(goal);
    }
    let resets_at = current.usage_limit_resets_at;
    let mut next = current.clone();
    next.last_auto_resume_reset_at = resets_at;
    let status = resolve_requested(current.status, GoalStatus::Active, &next);
    set_status(&mut next, status, None);
    finish(
        goal,
        next,
        Actor::System,
        GoalEventKind::StatusChanged,
        GoalReason::UsageLimitReset,
        json!({"resetsAt": resets_at}),
        now_ms,
    )
}

#[cfg(test)]
#[path = "transition_tests.rs"]
mod tests;
