//! Everything that can change a goal: the [`Trigger`]s and the requests they carry.

use super::super::GoalStatus;
use super::*;

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
    pub(super) fn matches(self, status: GoalStatus) -> bool {
        match status {
            GoalStatus::Active | GoalStatus::BudgetLimited => true,
            GoalStatus::Complete => matches!(self, AccountingMode::ActiveOrComplete),
            GoalStatus::Paused | GoalStatus::Blocked | GoalStatus::UsageLimited => {
                matches!(self, AccountingMode::ActiveOrStopped)
            }
        }
    }
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
            Trigger::AutoResumeAtReset { .. } => "auto-resume a goal",
            Trigger::ProcessExit { .. } => "pause a goal on process exit",
            Trigger::Clear => "clear a goal",
        }
    }
}
