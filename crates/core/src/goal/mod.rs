//! The goal runtime: keeps a thread working toward its goal with hidden continuation turns and
//! stops it — durably, with an audited reason — when it cannot make progress.
//!
//! Every status change goes through [`quest_protocol::goal::transition::transition`] inside the
//! store's transaction, so this module only decides *when* to ask for a change: at turn start and
//! end, after tools, on errors, while idle, on interrupt and on exit.

pub mod control;
pub mod prompts;
pub mod tools;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use quest_protocol::goal::transition::TurnOutcome as GoalTurnOutcome;
use quest_protocol::goal::transition::{
    AccountingMode, BreakerThresholds, CreateGoal, CreateMode, GoalLimits, GoalState, Trigger,
};
use quest_protocol::goal::{Actor, GoalStatus};
use quest_protocol::{ResponseItem, TokenUsage, TurnId};
use quest_state::{GoalContext, Lease, LeaseAcquire, StateError, Store};
use serde_json::json;

use crate::config::GoalsConfig;
use crate::protocol::{EventMsg, TurnTrigger};
use crate::session::Session;
use crate::thread::IdlePolicy;
use crate::tools::{GOAL_TOOL_NAMES, ToolCall, ToolResult};
use crate::turn::{TurnObserver, TurnOutcome, TurnReport};

pub use tools::goal_tool_specs;

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

/// Error from a user-side goal operation.
#[derive(Debug, thiserror::Error)]
pub enum GoalError {
    /// The request was refused (exact spec message).
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error("goal storage failed: {0}")]
    Storage(String),
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
            .map_err(|e| GoalError::Storage(e.to_string()))
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
            .map_err(|e| match e {
                StateError::Transition(refusal) => GoalError::Refused(refusal.to_string()),
                other => GoalError::Storage(other.to_string()),
            })?;
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
            .ok_or_else(|| GoalError::Storage("goal vanished after creation".to_string()))?;
        self.inner().user_record = Some(prompts::user_set_goal(&goal.objective));
        self.acquire_lease()?;
        Ok(goal)
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

    /// Takes (or renews) the lease that says this process runs the goal loop, and starts the
    /// heartbeat that keeps it live and flushes active wall-clock time every 15 s.
    fn acquire_lease(&self) -> Result<(), GoalError> {
        let thread_id = self.shared.session.thread_id;
        let acquired = self
            .shared
            .store
            .acquire_lease(&thread_id)
            .map_err(|e| GoalError::Storage(e.to_string()))?;
        let lease = match acquired {
            LeaseAcquire::Acquired(lease) => lease,
            LeaseAcquire::HeldBy(other) => {
                return Err(GoalError::Refused(format!(
                    "the goal of thread {thread_id} is being pursued by another quest process (pid {})",
                    other.pid
                )));
            }
        };
        let start_heartbeat = {
            let mut inner = self.inner();
            let first = inner.lease.is_none();
            inner.lease = Some(lease);
            first
        };
        if start_heartbeat {
            let weak = Arc::downgrade(&self.shared);
            tokio::spawn(async move {
                let period = Duration::from_millis(quest_state::LEASE_HEARTBEAT_INTERVAL_MS as u64);
                loop {
                    tokio::time::sleep(period).await;
                    let Some(shared) = weak.upgrade() else { break };
                    let runtime = GoalRuntime { shared };
                    if !runtime.heartbeat() {
                        break;
                    }
                }
            });
        }
        Ok(())
    }

    /// One heartbeat; false when the lease is gone and the heartbeat should stop.
    fn heartbeat(&self) -> bool {
        let (lease, seconds) = {
            let mut inner = self.inner();
            let Some(lease) = inner.lease.clone() else {
                return false;
            };
            let seconds = inner.take_whole_seconds();
            (lease, seconds)
        };
        match self.shared.store.heartbeat(&lease, seconds) {
            Ok((renewed, outcome)) => {
                self.inner().lease = Some(renewed);
                if outcome.changed
                    && let Some(goal) = &outcome.goal
                {
                    if goal.status != GoalStatus::Active {
                        self.inner().clock = None;
                    }
                    self.shared
                        .session
                        .emit(None, EventMsg::GoalUpdated(Box::new(goal.to_wire())));
                }
                true
            }
            Err(err) => {
                let message = format!("goal lease heartbeat failed: {err}");
                let mut inner = self.inner();
                if matches!(err, StateError::LeaseLost { .. }) {
                    inner.lease = None;
                    inner.suspended = Some(message.clone());
                }
                drop(inner);
                self.shared.session.emit(None, EventMsg::Warning(message));
                !matches!(err, StateError::LeaseLost { .. })
            }
        }
    }

    /// Flushes pending tokens, whole active seconds and `turns` with `mode`.
    fn flush(&self, mode: AccountingMode, turns: i64, turn_id: Option<TurnId>) {
        let (tokens, seconds) = {
            let mut inner = self.inner();
            let tokens = std::mem::take(&mut inner.pending_tokens);
            let seconds = inner.take_whole_seconds();
            (tokens, seconds)
        };
        if tokens == 0 && seconds == 0 && turns == 0 {
            return;
        }
        let trigger = Trigger::AccountUsage {
            tokens,
            seconds,
            turns,
            mode,
        };
        if let Err(err) = self.apply(trigger, Actor::System, turn_id) {
            self.shared.session.emit(
                turn_id,
                EventMsg::Warning(format!("goal accounting failed: {err}")),
            );
        }
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

    fn tool_result(&self, call: &ToolCall, output: String, success: bool) -> ToolResult {
        ToolResult {
            call: call.clone(),
            output,
            executed: true,
            success,
            changed_files: false,
            exit_code: None,
        }
    }

    fn tool_payload(goal: Option<&GoalState>, completed_report: bool) -> String {
        let wire = goal.map(GoalState::to_wire);
        let report = wire.as_ref().is_some_and(|g| {
            completed_report
                && g.status == GoalStatus::Complete
                && (g.token_budget.is_some() || g.time_used_seconds > 0)
        });
        json!({
            "goal": wire.as_ref().map(|g| g.for_model()),
            "remainingTokens": wire.as_ref().and_then(|g| g.remaining_tokens()),
            "completionBudgetReport": if report { Some(prompts::COMPLETION_BUDGET_REPORT.trim()) } else { None },
        })
        .to_string()
    }

    fn handle_goal_tool(&self, turn_id: TurnId, call: &ToolCall) -> ToolResult {
        match call.name.as_str() {
            "get_goal" => match self.current() {
                Ok(goal) => self.tool_result(call, Self::tool_payload(goal.as_ref(), false), true),
                Err(err) => self.tool_result(call, err.to_string(), false),
            },
            "create_goal" => {
                let args: tools::CreateGoalArgs = match serde_json::from_str(&call.payload) {
                    Ok(args) => args,
                    Err(err) => return self.tool_result(call, err.to_string(), false),
                };
                let mut create =
                    CreateGoal::new(self.shared.session.thread_id.to_string(), args.objective);
                create.token_budget = args.token_budget;
                create.limits = self.limits();
                match self.apply(Trigger::Create(create), Actor::Model, Some(turn_id)) {
                    Ok(goal) => {
                        {
                            let mut inner = self.inner();
                            inner.goal_turn = true;
                            inner.pending_tokens = 0;
                            inner.charge_mode = None;
                            inner.clock = Some(Instant::now());
                        }
                        if let Err(err) = self.acquire_lease() {
                            self.shared
                                .session
                                .emit(Some(turn_id), EventMsg::Warning(err.to_string()));
                        }
                        self.tool_result(call, Self::tool_payload(goal.as_ref(), false), true)
                    }
                    Err(err) => self.tool_result(call, err.to_string(), false),
                }
            }
            "update_goal" => {
                let args: tools::UpdateGoalArgs = match serde_json::from_str(&call.payload) {
                    Ok(args) => args,
                    Err(err) => return self.tool_result(call, err.to_string(), false),
                };
                let status = match args.status.as_str() {
                    "complete" => GoalStatus::Complete,
                    "blocked" => GoalStatus::Blocked,
                    "paused" => GoalStatus::Paused,
                    _ => {
                        let refusal = quest_protocol::goal::transition::TransitionError::ModelStatusNotAllowed;
                        return self.tool_result(call, refusal.to_string(), false);
                    }
                };
                let mode = if status == GoalStatus::Complete {
                    AccountingMode::ActiveOrComplete
                } else {
                    AccountingMode::ActiveOrStopped
                };
                self.flush(mode, 0, Some(turn_id));
                match self.apply(Trigger::SetStatus { status }, Actor::Model, Some(turn_id)) {
                    Ok(goal) => {
                        {
                            let mut inner = self.inner();
                            if status == GoalStatus::Complete {
                                // Quest charges the completing request at turn end.
                                inner.charge_mode = Some(AccountingMode::ActiveOrComplete);
                            } else {
                                inner.goal_turn = false;
                                inner.pending_tokens = 0;
                            }
                        }
                        self.tool_result(call, Self::tool_payload(goal.as_ref(), true), true)
                    }
                    Err(err) => self.tool_result(call, err.to_string(), false),
                }
            }
            other => self.tool_result(call, format!("unsupported call: {other}"), false),
        }
    }

    /// Runs the `notify` program for statuses that need someone's attention (§17i): never for
    /// an ordinary continuation. `[goals] notify = "all"` also reports every other status change.
    fn notify(&self, goal: &GoalState, event: &quest_protocol::goal::transition::GoalEvent) {
        let Some(argv) = &self.shared.session.config.notify else {
            return;
        };
        let attention = match goal.status {
            GoalStatus::Complete
            | GoalStatus::Blocked
            | GoalStatus::UsageLimited
            | GoalStatus::BudgetLimited => true,
            GoalStatus::Paused => event.actor == Actor::System,
            GoalStatus::Active => false,
        };
        let wanted = match self.shared.config.notify.as_str() {
            "none" => false,
            "all" => true,
            _ => attention,
        };
        if !wanted {
            return;
        }
        let objective: String = goal.objective.chars().take(200).collect();
        let payload = json!({
            "type": "goal-status-changed",
            "thread-id": goal.thread_id,
            "goal": {
                "status": goal.status.as_wire(),
                "objective": objective,
                "tokensUsed": goal.tokens_used,
                "tokenBudget": goal.token_budget,
                "timeUsedSeconds": goal.time_used_seconds,
                "reason": event.reason.as_str(),
            },
        })
        .to_string();
        let Some((program, args)) = argv.split_first() else {
            return;
        };
        let spawned = std::process::Command::new(program)
            .args(args)
            .arg(&payload)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        match spawned {
            // Reap it in the background; a slow notifier never delays the goal loop.
            Ok(mut child) => {
                std::thread::spawn(move || child.wait());
            }
            Err(err) => self.shared.session.emit(
                None,
                EventMsg::Warning(format!("notify program `{program}` failed to start: {err}")),
            ),
        }
    }

    /// The first "model at capacity" failure of a goal defers one retry instead of blocking
    /// (§17h); a second one blocks as any other turn error.
    fn defer_overload(&self, error: &crate::protocol::TurnError) -> bool {
        if error.kind != "server_overloaded" {
            return false;
        }
        let Some(goal) = self.current().ok().flatten() else {
            return false;
        };
        if goal.status != GoalStatus::Active {
            return false;
        }
        let mut inner = self.inner();
        if inner.overload_retry_used_for.as_deref() == Some(goal.goal_id.as_str()) {
            return false;
        }
        inner.overload_retry_used_for = Some(goal.goal_id);
        inner.overload_retry_pending = true;
        true
    }

    fn classify(&self, report: &TurnReport, last_message: Option<&str>) -> GoalTurnOutcome {
        let inner = self.inner();
        let progress = report.tool_results.iter().any(|r| {
            r.changed_files
                || (r.success
                    && !GOAL_TOOL_NAMES.contains(&r.call.name.as_str())
                    && !inner.previous_calls.contains(&(
                        r.call.name.clone(),
                        r.call.payload.clone(),
                        r.output.clone(),
                    )))
        });
        if progress {
            GoalTurnOutcome::Progress
        } else {
            GoalTurnOutcome::NoProgress {
                blocker: last_message.map(str::to_string),
            }
        }
    }

    fn continuation_input(&self, goal: &GoalState) -> Vec<ResponseItem> {
        let mut items = Vec::new();
        if let Some(record) = self.inner().user_record.take() {
            items.push(ResponseItem::text_message("user", record));
        }
        if std::mem::take(&mut self.inner().resume_note) {
            items.push(ResponseItem::text_message("user", prompts::resumed()));
        }
        items.push(ResponseItem::text_message(
            "user",
            prompts::continuation(&goal.to_wire()),
        ));
        items
    }
}

impl TurnObserver for GoalRuntime {
    fn goal_tool(&self, turn_id: TurnId, call: &ToolCall) -> Option<ToolResult> {
        if GOAL_TOOL_NAMES.contains(&call.name.as_str()) {
            Some(self.handle_goal_tool(turn_id, call))
        } else {
            None
        }
    }

    fn on_usage(&self, _turn_id: TurnId, usage: &TokenUsage) {
        let mut inner = self.inner();
        if inner.goal_turn {
            inner.pending_tokens = inner.pending_tokens.saturating_add(usage.goal_charge());
        }
    }

    fn after_tools(&self, turn_id: TurnId, results: &[ToolResult]) -> Option<String> {
        let executed = results
            .iter()
            .any(|r| r.executed && r.call.name != "update_goal");
        if !executed || !self.inner().goal_turn {
            return None;
        }
        let mode = self
            .inner()
            .charge_mode
            .unwrap_or(AccountingMode::ActiveOnly);
        self.flush(mode, 0, Some(turn_id));
        let goal = self.current().ok().flatten()?;
        if goal.status != GoalStatus::BudgetLimited {
            return None;
        }
        let mut inner = self.inner();
        if inner.steered.insert(goal.goal_id.clone()) {
            Some(prompts::budget_limit(&goal.to_wire()))
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
                let trigger = if error.usage_limit {
                    Trigger::UsageLimit {
                        resets_at: error.resets_at,
                    }
                } else {
                    Trigger::TurnError {
                        error_class: error.kind.clone(),
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
        if !self.shared.continuations {
            return None;
        }
        {
            let mut inner = self.inner();
            if inner.suspended.is_some() || std::mem::take(&mut inner.interrupted) {
                return None;
            }
        }
        let goal = self.current().ok().flatten()?;
        if goal.status == GoalStatus::Active
            && std::mem::take(&mut self.inner().overload_retry_pending)
        {
            return Some(self.shared.config.server_overloaded_retry_delay.0);
        }
        match goal.status {
            GoalStatus::Active => Some(
                self.shared
                    .config
                    .backoff_after(goal.no_progress_streak.max(0) as u32),
            ),
            GoalStatus::UsageLimited => {
                let enabled =
                    self.shared.config.auto_resume_after_usage_limit || goal.auto_resume_at_reset;
                let resets_at = goal.usage_limit_resets_at?;
                if !enabled || goal.last_auto_resume_reset_at == Some(resets_at) {
                    return None;
                }
                self.inner().auto_resume_for = Some(resets_at);
                let wait_ms = (resets_at * 1000 - now_ms()).max(0) as u64;
                let (min, max) = (
                    self.shared.config.auto_resume_jitter_min_ms,
                    self.shared.config.auto_resume_jitter_max_ms,
                );
                let spread = max.saturating_sub(min).saturating_add(1);
                let jitter_ms = min + (now_ms().unsigned_abs() % spread);
                Some(Duration::from_millis(wait_ms + jitter_ms))
            }
            GoalStatus::Paused
            | GoalStatus::Blocked
            | GoalStatus::BudgetLimited
            | GoalStatus::Complete => None,
        }
    }

    fn confirm_continuation(&mut self) -> Option<Vec<ResponseItem>> {
        if self.inner().suspended.is_some() {
            return None;
        }
        if self.inner().auto_resume_for.take().is_some() {
            let trigger = Trigger::AutoResumeAtReset {
                enabled_by_config: self.shared.config.auto_resume_after_usage_limit,
            };
            if self.apply(trigger, Actor::System, None).is_err() {
                return None;
            }
        } else {
            // Idle wall-clock time counts while active; it may trip the time budget.
            self.flush(AccountingMode::ActiveOnly, 0, None);
        }
        let goal = self.current().ok().flatten()?;
        match goal.status {
            GoalStatus::Active => Some(self.continuation_input(&goal)),
            GoalStatus::Paused
            | GoalStatus::Blocked
            | GoalStatus::UsageLimited
            | GoalStatus::BudgetLimited
            | GoalStatus::Complete => None,
        }
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
