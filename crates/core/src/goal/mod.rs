//! The goal runtime: keeps a thread working toward its goal with hidden continuation turns and
//! stops it — durably, with an audited reason — when it cannot make progress.
//!
//! Every status change goes through [`quest_protocol::goal::transition::transition`] inside the
//! store's transaction, so this module only decides *when* to ask for a change: at turn start and
//! end, after tools, on errors, while idle, on interrupt and on exit.

mod accounting;
pub mod control;
mod lease;
pub mod model_tools;
mod notify;
pub mod prompts;
pub mod schedule;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use quest_protocol::goal::transition::TransitionError;
use quest_protocol::goal::transition::TurnOutcome as GoalTurnOutcome;
use quest_protocol::goal::transition::{
    AccountingMode, BreakerThresholds, CreateGoal, CreateMode, GoalLimits, GoalState, Trigger,
};
use quest_protocol::goal::{Actor, GoalOrigin, GoalStatus};
use quest_protocol::{ResponseItem, ThreadId, TokenUsage, TurnId};
use quest_state::{GoalContext, Lease, LeaseAcquire, StateError, Store};
use serde_json::json;

use crate::config::GoalsConfig;
use crate::protocol::{EventMsg, TurnTrigger};
use crate::session::Session;
use crate::thread::IdlePolicy;
use crate::tools::{GOAL_TOOL_NAMES, ToolCall, ToolResult};
use crate::turn::{TurnKind, TurnObserver, TurnOutcome, TurnReport};

pub use model_tools::goal_tool_specs;
pub use schedule::{Decision, ScheduleFlags, decide};

use accounting::{CallFingerprint, call_fingerprint};

/// Budgets asked for when a goal is created from the command line.
#[derive(Clone, Copy, Debug, Default)]
pub struct GoalBudgets {
    /// Token budget.
    pub tokens: Option<i64>,
    /// Time budget in seconds.
    pub time_seconds: Option<i64>,
    /// Turn budget.
    pub turns: Option<i64>,
}

/// Error from a goal operation, typed up to the front-end, which decides how to show it.
#[derive(Debug, thiserror::Error)]
pub enum GoalError {
    /// The transition function refused the request; the text is the exact spec message. Not
    /// retried: the request is wrong for the goal as it is.
    #[error("{0}")]
    Refused(#[from] TransitionError),
    /// Another live process holds the thread's goal-loop lease, so this one may not run, charge
    /// or pause the goal. Not retried; the message names the holder.
    #[error("the goal of thread {thread_id} is being pursued by another quest process (pid {pid})")]
    LeaseHeld {
        /// The thread.
        thread_id: ThreadId,
        /// The holder's process id.
        pid: u32,
    },
    /// The thread is not recorded in the state database.
    #[error("no such thread: {0}")]
    NoSuchThread(ThreadId),
    /// Goals need a recorded thread, and this manager keeps nothing on disk.
    #[error("goals need a recorded thread; this thread is ephemeral")]
    Ephemeral,
    /// The store failed; the caller may retry the whole operation later.
    #[error("goal storage failed: {0}")]
    Storage(StateError),
}

impl From<StateError> for GoalError {
    fn from(err: StateError) -> Self {
        match err {
            StateError::Transition(refusal) => GoalError::Refused(refusal),
            other => GoalError::Storage(other),
        }
    }
}

/// The goal runtime of one thread. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct GoalRuntime {
    shared: Arc<Shared>,
}

struct Shared {
    session: Arc<Session>,
    store: Store,
    config: GoalsConfig,
    /// Start hidden continuation turns (off for a plain `quest exec`, which runs one turn).
    continuations: bool,
    /// The thread actor's op queue, to wake it when another process changed the goal.
    wake: Mutex<Option<tokio::sync::mpsc::WeakUnboundedSender<crate::protocol::Op>>>,
    /// Dropped with the runtime: tells the heartbeat thread to stop.
    heartbeat_stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    inner: Mutex<Inner>,
}

/// Why continuation is suspended in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SuspendCause {
    /// A system stop could not be persisted (§17a): cleared when the goal is next seen active
    /// after a user change.
    StopFailed,
    /// Another process took the lease over: cleared when this process takes it back.
    LeaseLost,
}

#[derive(Default)]
struct Inner {
    /// The running turn is charged to the goal.
    goal_turn: bool,
    /// The goal the running goal turn is charged to (accounting aimed at a replaced goal is
    /// dropped by the store).
    turn_goal_id: Option<String>,
    /// Accounting mode of the next flush (ActiveOrComplete after `update_goal complete`).
    charge_mode: Option<AccountingMode>,
    /// Tokens used by the running turn since the last flush.
    pending_tokens: i64,
    /// Goal turns not yet charged (the running turn, until its first flush).
    pending_turns: i64,
    /// The goal of the running turn has a time budget (its time is flushed at every boundary).
    time_budgeted: bool,
    /// Start of the unflushed active wall-clock interval.
    clock: Option<Instant>,
    /// Goal ids that already got the budget wind-down message.
    steered: HashSet<String>,
    /// Fingerprints of the previous goal turn's tool calls, for repeat detection.
    previous_calls: HashSet<CallFingerprint>,
    /// The last turn was interrupted: do not continue on the following idle.
    interrupted: bool,
    /// A stop could not be persisted, or the lease was lost: no continuation from this
    /// process until the cause is gone (§17a).
    suspended: Option<SuspendCause>,
    /// Send the "blocked audit restarts" note with the next continuation.
    resume_note: bool,
    /// A usage-limit auto-resume is scheduled for this reset time.
    auto_resume_for: Option<i64>,
    /// The user's goal record, written into history with the next goal turn.
    user_records: Vec<String>,
    /// The lease this process holds on the thread's goal loop.
    lease: Option<Lease>,
    /// A deferred retry after "model at capacity" is scheduled.
    overload_retry_pending: bool,
    /// Goal id that already used its one deferred overload retry.
    overload_retry_used_for: Option<String>,
    /// The goal as last announced (without `updatedAt`), to skip announcing no-op writes.
    last_announced: Option<quest_protocol::goal::ThreadGoal>,
    /// The goal as the continuation's confirmation just read it, for the start of the turn it
    /// confirmed (which follows at once: the store is not read twice in a row).
    confirmed: Option<GoalState>,
}

impl Inner {
    /// The goal a running goal turn's writes are aimed at: a goal replaced or cleared since the
    /// turn started must not be charged or stopped for it.
    fn turn_expected_goal(&self) -> Option<String> {
        if self.goal_turn {
            self.turn_goal_id.clone()
        } else {
            None
        }
    }

    /// Whole active seconds since the clock last moved; the fraction is carried forward.
    fn take_whole_seconds(&mut self) -> i64 {
        match self.clock.as_mut() {
            Some(start) => {
                let whole = start.elapsed().as_secs();
                *start += Duration::from_secs(whole);
                whole as i64
            }
            None => 0,
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl GoalRuntime {
    /// A runtime for the session's thread. The session must have a store.
    pub fn new(
        session: Arc<Session>,
        store: Store,
        config: GoalsConfig,
        continuations: bool,
    ) -> Self {
        GoalRuntime {
            shared: Arc::new(Shared {
                session,
                store,
                config,
                continuations,
                wake: Mutex::new(None),
                heartbeat_stop: Mutex::new(None),
                inner: Mutex::new(Inner::default()),
            }),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        match self.shared.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn limits(&self) -> GoalLimits {
        let c = &self.shared.config;
        GoalLimits {
            max_token_budget: c.max_goal_token_budget,
            default_time_budget_seconds: c.default_time_budget.map(|d| d.0.as_secs() as i64),
            default_turn_budget: c.default_turn_budget,
        }
    }

    fn thresholds(&self) -> BreakerThresholds {
        BreakerThresholds {
            max_no_progress_turns: i64::from(self.shared.config.max_no_progress_turns),
            max_repeated_blocker_turns: i64::from(self.shared.config.max_repeated_blocker_turns),
        }
    }

    /// True when the stored goal is `active` (a storage error counts as not active).
    fn is_active(&self) -> bool {
        self.current()
            .ok()
            .flatten()
            .is_some_and(|g| g.status == GoalStatus::Active)
    }

    /// The goal as stored now.
    pub fn current(&self) -> Result<Option<GoalState>, GoalError> {
        self.shared
            .store
            .get_goal(&self.shared.session.thread_id)
            .map_err(GoalError::from)
    }

    /// Applies a trigger through the store, announces the result, and keeps the wall clock in
    /// step with the status. Refusals come back as `GoalError::Refused` with the exact message.
    fn apply(
        &self,
        trigger: Trigger,
        actor: Actor,
        turn_id: Option<TurnId>,
    ) -> Result<Option<GoalState>, GoalError> {
        self.apply_expecting(trigger, actor, turn_id, None)
    }

    /// [`Self::apply`] that changes nothing unless the goal still has `expected_goal_id`.
    fn apply_expecting(
        &self,
        trigger: Trigger,
        actor: Actor,
        turn_id: Option<TurnId>,
        expected_goal_id: Option<String>,
    ) -> Result<Option<GoalState>, GoalError> {
        self.apply_from(trigger, actor, turn_id, expected_goal_id, None)
    }

    /// [`Self::apply_expecting`] recording where a user change came from (`origin`) in the
    /// audit trail; an accepted `origin: "user"` change queues its model-visible records for
    /// the thread's next turn (spec §13.5).
    fn apply_from(
        &self,
        trigger: Trigger,
        actor: Actor,
        turn_id: Option<TurnId>,
        expected_goal_id: Option<String>,
        origin: Option<GoalOrigin>,
    ) -> Result<Option<GoalState>, GoalError> {
        let thread_id = self.shared.session.thread_id;
        let ctx = GoalContext {
            turn_id: turn_id.map(|t| t.to_string()),
            expected_goal_id,
            origin,
        };
        let records = prompts::user_records(&trigger, origin);
        // Queued turn rows and rollout items go into the same transaction.
        let outcome = self
            .shared
            .session
            .commit_with(Some(quest_state::GoalWrite {
                thread_id: &thread_id,
                trigger: &trigger,
                actor,
                ctx: &ctx,
                only_if: None,
            }))
            .map_err(GoalError::from)?
            .ok_or_else(|| {
                GoalError::Refused(TransitionError::NoGoal {
                    thread_id: thread_id.to_string(),
                })
            })?;
        if outcome.changed && !records.is_empty() {
            self.inner().user_records.extend(records);
        }
        self.announce(&outcome, turn_id);
        Ok(outcome.goal)
    }

    /// System changes committed in order in one transaction with the queued writes (see
    /// [`quest_state::Store::commit_batch_all`]), then announced in order. A change with a
    /// status is skipped (`None`) unless the goal has that status when its turn comes.
    fn apply_system_changes(
        &self,
        changes: &[(&Trigger, Option<GoalStatus>)],
        turn_id: Option<TurnId>,
        expected_goal_id: Option<String>,
    ) -> Result<Vec<Option<quest_state::GoalApplyOutcome>>, GoalError> {
        let thread_id = self.shared.session.thread_id;
        let ctx = GoalContext {
            turn_id: turn_id.map(|t| t.to_string()),
            expected_goal_id,
            origin: None,
        };
        let writes: Vec<quest_state::GoalWrite<'_>> = changes
            .iter()
            .map(|(trigger, only_if)| quest_state::GoalWrite {
                thread_id: &thread_id,
                trigger,
                actor: Actor::System,
                ctx: &ctx,
                only_if: *only_if,
            })
            .collect();
        let outcomes = self
            .shared
            .session
            .commit_with_all(&writes)
            .map_err(GoalError::from)?;
        for outcome in outcomes.iter().flatten() {
            self.announce(outcome, turn_id);
        }
        Ok(outcomes)
    }

    /// Creates (or, for the user, replaces a finished) goal with budgets; user actor. With
    /// `origin: "user"` the model sees `User set the goal: …` at the next turn.
    pub fn create_goal(
        &self,
        objective: &str,
        budgets: GoalBudgets,
        replace: bool,
        origin: Option<GoalOrigin>,
    ) -> Result<GoalState, GoalError> {
        let mut create = CreateGoal::new(self.shared.session.thread_id.to_string(), objective);
        create.token_budget = budgets.tokens;
        create.time_budget_seconds = budgets.time_seconds;
        create.turn_budget = budgets.turns;
        create.auto_resume_at_reset = self.shared.config.auto_resume_after_usage_limit;
        create.mode = if replace {
            CreateMode::Replace
        } else {
            CreateMode::IfNoneOrComplete
        };
        create.limits = self.limits();
        let goal = self
            .apply_from(Trigger::Create(create), Actor::User, None, None, origin)?
            .ok_or_else(|| {
                GoalError::Refused(TransitionError::NoGoal {
                    thread_id: self.shared.session.thread_id.to_string(),
                })
            })?;
        {
            let mut inner = self.inner();
            if inner.suspended == Some(SuspendCause::StopFailed) {
                inner.suspended = None;
            }
        }
        self.acquire_lease()?;
        Ok(goal)
    }

    /// Connects the runtime to its thread actor, so changes from other processes wake it.
    pub(crate) fn attach(&self, ops: tokio::sync::mpsc::WeakUnboundedSender<crate::protocol::Op>) {
        match self.shared.wake.lock() {
            Ok(mut guard) => *guard = Some(ops),
            Err(poisoned) => *poisoned.into_inner() = Some(ops),
        }
    }

    /// A user change (pause, edit, budgets, clear, …) made through the manager while this thread
    /// is loaded: applied and announced on the thread's event stream.
    pub(crate) fn apply_user(
        &self,
        trigger: Trigger,
        origin: Option<GoalOrigin>,
    ) -> Result<Option<GoalState>, GoalError> {
        self.apply_from(trigger, Actor::User, None, None, origin)
    }

    /// User resume (`quest exec resume <id> --goal`): back to `active`, breaker counters reset.
    pub fn resume(&self, origin: Option<GoalOrigin>) -> Result<Option<GoalState>, GoalError> {
        self.acquire_lease()?;
        let before = self.current()?;
        let goal = self.apply_from(Trigger::Resume, Actor::User, None, None, origin)?;
        let mut inner = self.inner();
        if before.is_some_and(|g| g.status != GoalStatus::Active) {
            inner.resume_note = true;
        }
        if inner.suspended == Some(SuspendCause::StopFailed) {
            inner.suspended = None;
        }
        drop(inner);
        Ok(goal)
    }

    /// Runs a system stop; if it cannot be persisted, suspends continuation in this process.
    fn system_stop(&self, trigger: Trigger, turn_id: Option<TurnId>) {
        // A stop that belongs to a turn applies only to the goal that turn worked on.
        let expected = if turn_id.is_some() {
            self.inner().turn_expected_goal()
        } else {
            None
        };
        if let Err(err) = self.apply_expecting(trigger, Actor::System, turn_id, expected) {
            let message = format!("could not record the goal stop ({err}); continuation suspended");
            self.inner().suspended = Some(SuspendCause::StopFailed);
            self.shared
                .session
                .emit(turn_id, EventMsg::Warning(message));
        }
    }

    /// Links a goal turn's root span to the goal's first turn, so a backend can reassemble a
    /// goal that ran across many traces; the first goal turn records its own context.
    fn link_to_first_turn(&self, goal_id: &str, span: &tracing::Span) {
        let store = &self.shared.store;
        let thread_id = &self.shared.session.thread_id;
        match store.goal_first_turn_trace_context(thread_id) {
            Ok(Some(stored)) => {
                if let Ok(context) = serde_json::from_str::<quest_otel::W3cTraceContext>(&stored) {
                    quest_otel::link_span_to_w3c_trace_context(span, &context);
                }
            }
            Ok(None) => {
                if let Some(context) = quest_otel::span_w3c_trace_context(span)
                    && let Ok(text) = serde_json::to_string(&context)
                {
                    let _ = store.set_goal_first_turn_trace_context(thread_id, goal_id, &text);
                }
            }
            Err(_) => {}
        }
    }
}

impl TurnObserver for GoalRuntime {
    fn goal_objective(&self) -> Option<(String, &'static str)> {
        self.current()
            .ok()
            .flatten()
            .map(|goal| (goal.objective, goal.status.as_wire()))
    }

    fn on_usage(&self, turn_id: TurnId, usage: &TokenUsage) {
        self.charge_usage(turn_id, usage);
    }

    fn on_final_usage(&self, _turn_id: TurnId, usage: &TokenUsage) {
        self.defer_usage(usage);
    }

    fn after_tools(&self, turn_id: TurnId, results: &[ToolResult]) -> Option<String> {
        self.flush_after_tools(turn_id, results)
    }

    fn handles_tool(&self, name: &str) -> bool {
        GOAL_TOOL_NAMES.contains(&name)
    }

    fn goal_tool(&self, turn_id: TurnId, call: &ToolCall) -> Option<ToolResult> {
        if GOAL_TOOL_NAMES.contains(&call.name.as_str()) {
            Some(self.handle_goal_tool(turn_id, call))
        } else {
            None
        }
    }
}

impl IdlePolicy for GoalRuntime {
    fn on_turn_start(
        &mut self,
        turn_id: TurnId,
        kind: TurnKind,
        _trigger: TurnTrigger,
        span: &tracing::Span,
    ) -> Option<&'static str> {
        let confirmed = self.inner().confirmed.take();
        let goal = match confirmed {
            Some(goal) => Some(goal),
            None => self.current().ok().flatten(),
        };
        let status = goal.as_ref().map(|g| g.status.as_wire());
        if let Some(goal) = &goal {
            span.record("quest.goal.id", goal.goal_id.as_str());
        }
        if let Some(goal) = goal
            .as_ref()
            .filter(|g| matches!(g.status, GoalStatus::Active | GoalStatus::BudgetLimited))
        {
            self.link_to_first_turn(&goal.goal_id, span);
        }
        let mut inner = self.inner();
        inner.pending_tokens = 0;
        inner.charge_mode = None;
        inner.interrupted = false;
        inner.goal_turn = inner.lease.is_some()
            && goal.as_ref().is_some_and(|g| {
                matches!(g.status, GoalStatus::Active | GoalStatus::BudgetLimited)
            });
        inner.turn_goal_id = goal
            .as_ref()
            .filter(|_| inner.goal_turn)
            .map(|g| g.goal_id.clone());
        inner.time_budgeted = goal
            .as_ref()
            .is_some_and(|g| g.time_budget_seconds.is_some());
        if goal.is_some_and(|g| g.status == GoalStatus::Active) {
            inner.clock.get_or_insert_with(Instant::now);
        }
        // The turn counts with its first charge (its first response, or its end): before that
        // nothing ran and nothing was spent, so a crash cannot erase a turn that did work. A
        // compaction turn is charged its tokens but is not a goal turn.
        inner.pending_turns = i64::from(inner.goal_turn && kind == TurnKind::Regular);
        drop(inner);
        let _ = turn_id;
        status
    }

    fn on_turn_end(&mut self, report: &TurnReport) {
        if report.kind == TurnKind::Compact {
            self.end_compaction_turn(report);
            return;
        }
        let turn_id = Some(report.turn_id);
        let (goal_turn, mode) = {
            let inner = self.inner();
            (
                inner.goal_turn,
                inner.charge_mode.unwrap_or(AccountingMode::ActiveOnly),
            )
        };
        let mode = match &report.outcome {
            TurnOutcome::Failed(_) => AccountingMode::ActiveOrStopped,
            _ => mode,
        };
        let time_budgeted = self.inner().time_budgeted;
        // A completed turn's charge is committed with its classification, below.
        if goal_turn && !matches!(report.outcome, TurnOutcome::Completed { .. }) {
            self.flush_with(mode, 0, turn_id, time_budgeted);
        }
        match &report.outcome {
            TurnOutcome::Failed(error) if goal_turn && self.defer_overload(error) => {
                self.shared.session.emit(
                    turn_id,
                    EventMsg::Warning(format!(
                        "{} The goal stays active and retries once in {}.",
                        error.message,
                        prompts::human_duration(
                            self.shared.config.server_overloaded_retry_delay.0.as_secs() as i64
                        )
                    )),
                );
            }
            TurnOutcome::Failed(error)
                if goal_turn && error.kind == crate::protocol::TurnErrorKind::Internal =>
            {
                // Quest's own failure (a crashed turn task, storage): no progress, so the
                // breaker and the backoff apply instead of an immediate retry.
                let trigger = Trigger::TurnClassified {
                    outcome: GoalTurnOutcome::NoProgress { blocker: None },
                    thresholds: self.thresholds(),
                };
                self.system_stop(trigger, turn_id);
            }
            TurnOutcome::Failed(error) if goal_turn => {
                let trigger = if error.is_usage_limit() {
                    Trigger::UsageLimit {
                        resets_at: error.resets_at,
                    }
                } else {
                    Trigger::TurnError {
                        error_class: error.kind.as_str().to_string(),
                        message: error.message.clone(),
                    }
                };
                self.system_stop(trigger, turn_id);
            }
            TurnOutcome::Failed(_) => {}
            TurnOutcome::Aborted => self.inner().interrupted = true,
            TurnOutcome::Completed { last_message } => {
                if goal_turn {
                    self.end_completed_turn(report, last_message.as_deref(), mode, time_budgeted);
                }
            }
        }
        let mut inner = self.inner();
        inner.goal_turn = false;
        inner.previous_calls = report.tool_results.iter().map(call_fingerprint).collect();
    }

    fn next_continuation(&mut self) -> Option<Duration> {
        self.schedule_next()
    }

    fn confirm_continuation(&mut self) -> Option<Vec<ResponseItem>> {
        self.confirm_next()
    }

    fn take_user_records(&mut self) -> Vec<ResponseItem> {
        std::mem::take(&mut self.inner().user_records)
            .into_iter()
            .map(|record| ResponseItem::text_message("user", record))
            .collect()
    }

    fn observer(&self) -> Option<Arc<dyn TurnObserver>> {
        Some(Arc::new(self.clone()))
    }

    fn on_interrupt(&mut self) {
        if self.is_active() {
            self.flush(AccountingMode::ActiveOrStopped, 0, None);
            self.system_stop_as_user(Trigger::Interrupt);
        }
    }

    fn on_shutdown(&mut self) {
        // Only the process that runs the thread may pause its goal on the way out.
        if self.holds_lease() && self.is_active() {
            self.flush(AccountingMode::ActiveOrStopped, 0, None);
            self.system_stop(Trigger::ProcessExit { clean: true }, None);
        }
        self.release_lease();
    }
}

impl GoalRuntime {
    /// A turn that only compacted: its tokens are charged, but it is no goal turn (neither
    /// progress nor no progress), and the breaker's memory of the previous turn stays.
    fn end_compaction_turn(&self, report: &TurnReport) {
        let turn_id = Some(report.turn_id);
        if !self.inner().goal_turn {
            return;
        }
        let failed = matches!(report.outcome, TurnOutcome::Failed(_));
        let mode = if failed {
            AccountingMode::ActiveOrStopped
        } else {
            AccountingMode::ActiveOnly
        };
        self.flush(mode, 0, turn_id);
        if let TurnOutcome::Failed(error) = &report.outcome
            && error.is_usage_limit()
        {
            self.system_stop(
                Trigger::UsageLimit {
                    resets_at: error.resets_at,
                },
                turn_id,
            );
        }
        self.inner().goal_turn = false;
    }

    fn system_stop_as_user(&self, trigger: Trigger) {
        if let Err(err) = self.apply(trigger, Actor::User, None) {
            self.shared.session.emit(
                None,
                EventMsg::Warning(format!("could not pause the goal: {err}")),
            );
        }
    }
}
