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
mod schedule;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use quest_protocol::goal::transition::TransitionError;
use quest_protocol::goal::transition::TurnOutcome as GoalTurnOutcome;
use quest_protocol::goal::transition::{
    AccountingMode, BreakerThresholds, CreateGoal, CreateMode, GoalLimits, GoalState, Trigger,
};
use quest_protocol::goal::{Actor, GoalStatus};
use quest_protocol::{ResponseItem, ThreadId, TokenUsage, TurnId};
use quest_state::{GoalContext, Lease, LeaseAcquire, StateError, Store};
use serde_json::json;

use crate::config::GoalsConfig;
use crate::protocol::{EventMsg, TurnTrigger};
use crate::session::Session;
use crate::thread::IdlePolicy;
use crate::tools::{GOAL_TOOL_NAMES, ToolCall, ToolResult};
use crate::turn::{TurnObserver, TurnOutcome, TurnReport};

pub use model_tools::goal_tool_specs;

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
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The running turn is charged to the goal.
    goal_turn: bool,
    /// Accounting mode of the next flush (ActiveOrComplete after `update_goal complete`).
    charge_mode: Option<AccountingMode>,
    /// Tokens used by the running turn since the last flush.
    pending_tokens: i64,
    /// Start of the unflushed active wall-clock interval.
    clock: Option<Instant>,
    /// Goal ids that already got the budget wind-down message.
    steered: HashSet<String>,
    /// Tool calls of the previous goal turn (name, payload, output), for repeat detection.
    previous_calls: HashSet<(String, String, String)>,
    /// The last turn was interrupted: do not continue on the following idle.
    interrupted: bool,
    /// A stop could not be persisted: no continuation from this process (§17a).
    suspended: Option<String>,
    /// Send the "blocked audit restarts" note with the next continuation.
    resume_note: bool,
    /// A usage-limit auto-resume is scheduled for this reset time.
    auto_resume_for: Option<i64>,
    /// The user's goal record, written into history with the next goal turn.
    user_record: Option<String>,
    /// The lease this process holds on the thread's goal loop.
    lease: Option<Lease>,
    /// A deferred retry after "model at capacity" is scheduled.
    overload_retry_pending: bool,
    /// Goal id that already used its one deferred overload retry.
    overload_retry_used_for: Option<String>,
    /// The goal as last announced (without `updatedAt`), to skip announcing no-op writes.
    last_announced: Option<quest_protocol::goal::ThreadGoal>,
}

impl Inner {
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
        let thread_id = self.shared.session.thread_id;
        let ctx = GoalContext {
            turn_id: turn_id.map(|t| t.to_string()),
            ..GoalContext::default()
        };
        let outcome = self
            .shared
            .store
            .apply_goal(&thread_id, &trigger, actor, &ctx)
            .map_err(GoalError::from)?;
        if let (Some(event), Some(goal)) = (&outcome.event, &outcome.goal)
            && outcome.status_changed
        {
            self.notify(goal, event);
        }
        if let (Some(event), Some(t)) = (&outcome.event, &self.shared.session.telemetry)
            && outcome.status_changed
        {
            let counters = outcome.goal.as_ref();
            t.goal_status_changed(&quest_otel::GoalStatusChange {
                goal_id: event.goal_id.clone(),
                from: event
                    .from_status
                    .map_or("none", |s| s.as_wire())
                    .to_string(),
                to: event.to_status.map_or("none", |s| s.as_wire()).to_string(),
                actor: event.actor.as_str().to_string(),
                reason: event.reason.as_str().to_string(),
                tokens_used: counters.map_or(0, |g| g.tokens_used.max(0) as u64),
                time_used_seconds: counters.map_or(0, |g| g.time_used_seconds.max(0) as u64),
                turns_used: counters.map_or(0, |g| g.turns_used.max(0) as u64),
            });
        }
        if outcome.changed {
            match &outcome.goal {
                Some(goal) => {
                    let mut inner = self.inner();
                    if goal.status == GoalStatus::Active {
                        inner.clock.get_or_insert_with(Instant::now);
                    } else {
                        inner.clock = None;
                    }
                    let wire = goal.to_wire();
                    let comparable = quest_protocol::goal::ThreadGoal {
                        updated_at: 0,
                        ..wire.clone()
                    };
                    let fresh = inner.last_announced.as_ref() != Some(&comparable);
                    inner.last_announced = Some(comparable);
                    drop(inner);
                    if fresh {
                        self.shared
                            .session
                            .emit(turn_id, EventMsg::GoalUpdated(Box::new(wire)));
                    }
                }
                None => {
                    self.inner().clock = None;
                    self.shared.session.emit(turn_id, EventMsg::GoalCleared);
                }
            }
        }
        Ok(outcome.goal)
    }

    /// Creates (or, for the user, replaces a finished) goal with budgets; user actor.
    pub fn create_goal(
        &self,
        objective: &str,
        budgets: GoalBudgets,
        replace: bool,
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
            .apply(Trigger::Create(create), Actor::User, None)?
            .ok_or_else(|| {
                GoalError::Refused(TransitionError::NoGoal {
                    thread_id: self.shared.session.thread_id.to_string(),
                })
            })?;
        self.inner().user_record = Some(prompts::user_set_goal(&goal.objective));
        self.acquire_lease()?;
        Ok(goal)
    }

    /// A user change (pause, edit, budgets, clear, …) made through the manager while this thread
    /// is loaded: applied and announced on the thread's event stream.
    pub(crate) fn apply_user(&self, trigger: Trigger) -> Result<Option<GoalState>, GoalError> {
        self.apply(trigger, Actor::User, None)
    }

    /// User resume (`quest exec resume <id> --goal`): back to `active`, breaker counters reset.
    pub fn resume(&self) -> Result<Option<GoalState>, GoalError> {
        self.acquire_lease()?;
        let before = self.current()?;
        let goal = self.apply(Trigger::Resume, Actor::User, None)?;
        if before.is_some_and(|g| g.status != GoalStatus::Active) {
            self.inner().resume_note = true;
        }
        Ok(goal)
    }

    /// Runs a system stop; if it cannot be persisted, suspends continuation in this process.
    fn system_stop(&self, trigger: Trigger, turn_id: Option<TurnId>) {
        if let Err(err) = self.apply(trigger, Actor::System, turn_id) {
            let message = format!("could not record the goal stop ({err}); continuation suspended");
            self.inner().suspended = Some(message.clone());
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
    fn on_usage(&self, _turn_id: TurnId, usage: &TokenUsage) {
        self.charge_usage(usage);
    }

    fn after_tools(&self, turn_id: TurnId, results: &[ToolResult]) -> Option<String> {
        self.flush_after_tools(turn_id, results)
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
        _turn_id: TurnId,
        _trigger: TurnTrigger,
        span: &tracing::Span,
    ) -> Option<&'static str> {
        let goal = self.current().ok().flatten();
        let status = goal.as_ref().map(|g| g.status.as_wire());
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
        inner.goal_turn = goal
            .as_ref()
            .is_some_and(|g| matches!(g.status, GoalStatus::Active | GoalStatus::BudgetLimited));
        if goal.is_some_and(|g| g.status == GoalStatus::Active) {
            inner.clock.get_or_insert_with(Instant::now);
        }
        status
    }

    fn on_turn_end(&mut self, report: &TurnReport) {
        let turn_id = Some(report.turn_id);
        let (goal_turn, mode) = {
            let inner = self.inner();
            (
                inner.goal_turn,
                inner.charge_mode.unwrap_or(AccountingMode::ActiveOnly),
            )
        };
        if goal_turn {
            let mode = match &report.outcome {
                TurnOutcome::Failed(_) => AccountingMode::ActiveOrStopped,
                _ => mode,
            };
            self.flush(mode, 1, turn_id);
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
                if goal_turn && self.is_active() {
                    let outcome = self.classify(report, last_message.as_deref());
                    if let Some(t) = &self.shared.session.telemetry {
                        t.goal_continuation_turn(match outcome {
                            GoalTurnOutcome::Progress => "progress",
                            GoalTurnOutcome::NoProgress { .. } => "no_progress",
                            GoalTurnOutcome::Waiting => "waiting",
                        });
                    }
                    let trigger = Trigger::TurnClassified {
                        outcome,
                        thresholds: self.thresholds(),
                    };
                    self.system_stop(trigger, turn_id);
                }
            }
        }
        let mut inner = self.inner();
        inner.goal_turn = false;
        inner.previous_calls = report
            .tool_results
            .iter()
            .map(|r| {
                (
                    r.call.name.clone(),
                    r.call.payload.clone(),
                    r.output.clone(),
                )
            })
            .collect();
    }

    fn next_continuation(&mut self) -> Option<Duration> {
        self.schedule_next()
    }

    fn confirm_continuation(&mut self) -> Option<Vec<ResponseItem>> {
        self.confirm_next()
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
        let thread_id = self.shared.session.thread_id;
        if self.is_active() {
            self.flush(AccountingMode::ActiveOrStopped, 0, None);
            self.system_stop(Trigger::ProcessExit { clean: true }, None);
        }
        let lease = self.inner().lease.take();
        if let Some(lease) = lease
            && let Err(err) = self.shared.store.release_lease(&lease)
        {
            self.shared.session.emit(
                None,
                EventMsg::Warning(format!(
                    "could not release the goal lease of {thread_id}: {err}"
                )),
            );
        }
    }
}

impl GoalRuntime {
    fn system_stop_as_user(&self, trigger: Trigger) {
        if let Err(err) = self.apply(trigger, Actor::User, None) {
            self.shared.session.emit(
                None,
                EventMsg::Warning(format!("could not pause the goal: {err}")),
            );
        }
    }
}
