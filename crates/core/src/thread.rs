//! The thread actor: one tokio task per thread that takes [`Op`]s, runs turns one at a time, and
//! emits [`Event`]s. Interrupts reach a running turn through its cancellation token.

use std::collections::VecDeque;
use std::sync::Arc;

use quest_protocol::{ResponseItem, ThreadId, TurnId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::blocking;
use crate::protocol::{EventMsg, Op, TurnError, TurnTrigger};
use crate::session::{EventSink, EventStream, History, Session};
use crate::turn::{TurnKind, TurnObserver, TurnOutcome, TurnReport, run_compact_turn, run_turn};

/// Sends ops to a running thread actor.
#[derive(Clone, Debug)]
pub struct ThreadHandle {
    /// The thread.
    pub thread_id: ThreadId,
    ops: mpsc::UnboundedSender<Op>,
    events: EventSink,
    task: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl ThreadHandle {
    /// A new event subscriber: it receives every event the thread sends from now on.
    pub fn subscribe(&self) -> EventStream {
        self.events.subscribe()
    }

    /// A sender that does not keep the actor alive (for the actor's own policy).
    pub(crate) fn weak_ops(&self) -> mpsc::WeakUnboundedSender<Op> {
        self.ops.downgrade()
    }

    /// Queues an op. Returns false when the actor has stopped.
    pub fn submit(&self, op: Op) -> bool {
        self.ops.send(op).is_ok()
    }

    /// Waits until the actor task has ended (after [`Op::Shutdown`]).
    pub async fn join(&self) {
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Decides what happens between turns; implemented by the goal runtime.
pub trait IdlePolicy: Send {
    /// Called when a turn starts, with its kind, its trigger and its root span (to link it to
    /// the goal's first turn). Returns the goal status to record on the span, if there is a goal.
    fn on_turn_start(
        &mut self,
        turn_id: TurnId,
        kind: TurnKind,
        trigger: TurnTrigger,
        span: &tracing::Span,
    ) -> Option<&'static str>;
    /// Called with every finished turn before its end event is sent.
    fn on_turn_end(&mut self, report: &TurnReport);
    /// Called when the thread goes idle: after how long a hidden turn should start, if at all.
    fn next_continuation(&mut self) -> Option<std::time::Duration>;
    /// Called when that wait is over: the hidden turn's input, or `None` when the goal stopped
    /// meanwhile (the persisted status is re-read here).
    fn confirm_continuation(&mut self) -> Option<Vec<ResponseItem>>;
    /// Model-visible records of user goal changes (`origin: "user"`) not yet in the history;
    /// a user turn starts with them.
    fn take_user_records(&mut self) -> Vec<ResponseItem> {
        Vec::new()
    }
    /// The per-turn observer the running turn reports to.
    fn observer(&self) -> Option<Arc<dyn TurnObserver>>;
    /// Called on `Op::Interrupt { pause_goal: true }` before the turn is cancelled.
    fn on_interrupt(&mut self);
    /// Called once before the actor stops.
    fn on_shutdown(&mut self);
}

struct Running {
    turn_id: TurnId,
    trigger: TurnTrigger,
    kind: TurnKind,
    cancel: CancellationToken,
    handle: JoinHandle<(History, TurnReport)>,
}

/// Starts the actor for a thread whose history (prefix included) is `history`.
pub fn spawn_thread(
    session: Arc<Session>,
    history: History,
    policy: Option<Box<dyn IdlePolicy>>,
) -> ThreadHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let thread_id = session.thread_id;
    let events = session.events.clone();
    let actor = Actor {
        session,
        history: Some(history),
        queue: VecDeque::new(),
        running: None,
        policy,
    };
    let task = tokio::spawn(actor.run(rx));
    ThreadHandle {
        thread_id,
        ops: tx,
        events,
        task: Arc::new(std::sync::Mutex::new(Some(task))),
    }
}

/// Work waiting for the running turn to end.
enum Pending {
    /// A user message.
    UserInput(String),
    /// A compaction asked for by the user.
    Compact,
}

struct Actor {
    session: Arc<Session>,
    history: Option<History>,
    queue: VecDeque<Pending>,
    running: Option<Running>,
    policy: Option<Box<dyn IdlePolicy>>,
}

impl Actor {
    async fn run(mut self, mut ops: mpsc::UnboundedReceiver<Op>) {
        let mut continuation: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        let mut shutting_down = false;
        loop {
            tokio::select! {
                op = ops.recv(), if !shutting_down => match op {
                    Some(Op::UserInput { text }) => {
                        continuation = None;
                        self.queue.push_back(Pending::UserInput(text));
                        if self.running.is_none() {
                            self.start_next_user_turn().await;
                        }
                    }
                    Some(Op::Compact) => {
                        continuation = None;
                        self.queue.push_back(Pending::Compact);
                        if self.running.is_none() {
                            self.start_next_user_turn().await;
                        }
                    }
                    Some(Op::Interrupt { pause_goal }) => {
                        continuation = None;
                        if pause_goal {
                            self.with_policy(|policy| policy.on_interrupt()).await;
                        }
                        if let Some(running) = &self.running {
                            running.cancel.cancel();
                        } else {
                            self.session.emit(None, EventMsg::Idle);
                        }
                    }
                    Some(
                        Op::ExecApproval { call_id, decision }
                        | Op::PatchApproval { call_id, decision }
                        | Op::McpApproval { call_id, decision },
                    ) => {
                        if !self.session.approvals.answer(&call_id, decision) {
                            self.session.emit(None, EventMsg::Warning(format!(
                                "no approval request is waiting for call {call_id}"
                            )));
                        }
                    }
                    Some(Op::WakeIdle) => {
                        if self.running.is_none() && continuation.is_none() {
                            continuation = self.schedule_continuation().await;
                            if continuation.is_none() {
                                self.session.emit(None, EventMsg::Idle);
                            }
                        }
                    }
                    Some(Op::Shutdown) | None => {
                        shutting_down = true;
                        continuation = None;
                        match &self.running {
                            Some(running) => running.cancel.cancel(),
                            None => break,
                        }
                    }
                },
                joined = async {
                    match self.running.as_mut() {
                        Some(running) => (&mut running.handle).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let Some(running) = self.running.take() else { continue };
                    // With nothing queued, the next hidden turn is decided in the same trip to
                    // the blocking pool as the turn's end (nothing can be queued meanwhile: ops
                    // wait while this branch runs).
                    let schedule = !shutting_down && self.queue.is_empty();
                    let next = match joined {
                        Ok((history, report)) => {
                            self.history = Some(history);
                            self.finish_turn(report, schedule).await
                        }
                        Err(err) => {
                            // A panic (or an abort) inside the turn task still ends the turn
                            // through the normal path: recorded, accounted, reported.
                            // What the turn recorded before it died is history.
                            self.reload_history().await;
                            self.finish_turn(TurnReport {
                                turn_id: running.turn_id,
                                trigger: running.trigger,
                                outcome: TurnOutcome::Failed(TurnError::internal(format!(
                                    "the turn stopped because of an internal error in Quest: {err}"
                                ))),
                                usage: Default::default(),
                                tool_results: Vec::new(),
                                model_requests: 0,
                                kind: running.kind,
                                compactions: 0,
                            }, schedule)
                            .await
                        }
                    };
                    if shutting_down {
                        break;
                    }
                    if !self.queue.is_empty() {
                        self.start_next_user_turn().await;
                    } else {
                        continuation = next.map(|delay| Box::pin(tokio::time::sleep(delay)));
                        if continuation.is_none() {
                            self.session.emit(None, EventMsg::Idle);
                        }
                    }
                },
                _ = async {
                    match continuation.as_mut() {
                        Some(sleep) => sleep.as_mut().await,
                        None => std::future::pending().await,
                    }
                } => {
                    continuation = None;
                    // Re-read right before starting (another process may have paused the goal),
                    // in the same trip to the blocking pool as the turn's start.
                    if !self.start_goal_turn().await {
                        self.session.emit(None, EventMsg::Idle);
                    }
                },
            }
        }
        self.with_policy(|policy| policy.on_shutdown()).await;
        if let Some(mcp) = &self.session.mcp {
            mcp.shutdown().await;
        }
        self.session.emit(None, EventMsg::ShutdownComplete);
    }

    /// Runs `f` on the policy off the async workers (the goal runtime reads and writes the
    /// store); `None` without a policy.
    async fn with_policy<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut dyn IdlePolicy) -> T + Send + 'static,
    ) -> Option<T> {
        let mut policy = self.policy.take()?;
        let (policy, value) = blocking::run(move || {
            let value = f(policy.as_mut());
            (policy, value)
        })
        .await;
        self.policy = Some(policy);
        Some(value)
    }

    async fn schedule_continuation(&mut self) -> Option<std::pin::Pin<Box<tokio::time::Sleep>>> {
        let delay = self
            .with_policy(|policy| policy.next_continuation())
            .await??;
        Some(Box::pin(tokio::time::sleep(delay)))
    }

    async fn start_next_user_turn(&mut self) {
        match self.queue.pop_front() {
            Some(Pending::UserInput(text)) => {
                if let Some(telemetry) = &self.session.telemetry {
                    telemetry.user_prompt(&[quest_otel::PromptItem::Text(text.clone())]);
                }
                // Goal changes the user made since the last turn come first (no store call).
                let mut input = self
                    .policy
                    .as_mut()
                    .map(|policy| policy.take_user_records())
                    .unwrap_or_default();
                input.push(ResponseItem::text_message("user", text));
                self.start_turn(TurnTrigger::User, input).await;
            }
            Some(Pending::Compact) => {
                self.start_turn_of(TurnKind::Compact, TurnTrigger::User, Vec::new())
                    .await
            }
            None => {}
        }
    }

    async fn start_turn(&mut self, trigger: TurnTrigger, input: Vec<ResponseItem>) {
        self.start_turn_of(TurnKind::Regular, trigger, input).await;
    }

    async fn start_turn_of(
        &mut self,
        kind: TurnKind,
        trigger: TurnTrigger,
        input: Vec<ResponseItem>,
    ) {
        let turn_id = TurnId::new();
        let span = turn_span(&self.session, turn_id, trigger);
        let policy_span = span.clone();
        let status = self
            .with_policy(move |policy| policy.on_turn_start(turn_id, kind, trigger, &policy_span))
            .await
            .flatten();
        self.launch_turn(turn_id, kind, trigger, input, span, status);
    }

    /// Starts the hidden goal turn whose wait is over, if the policy confirms it (false: the
    /// goal stopped meanwhile, nothing started). The confirmation and the turn's start share
    /// one trip to the blocking pool.
    async fn start_goal_turn(&mut self) -> bool {
        let turn_id = TurnId::new();
        let trigger = TurnTrigger::Goal;
        let kind = TurnKind::Regular;
        let session = self.session.clone();
        let started = self
            .with_policy(move |policy| {
                let input = policy.confirm_continuation()?;
                // The span exists only for a turn that starts.
                let span = turn_span(&session, turn_id, trigger);
                let status = policy.on_turn_start(turn_id, kind, trigger, &span);
                Some((input, span, status))
            })
            .await
            .flatten();
        match started {
            Some((input, span, status)) => {
                self.launch_turn(turn_id, kind, trigger, input, span, status);
                true
            }
            None => false,
        }
    }

    /// Queues the turn's row, announces the turn and spawns its task (the policy has been told
    /// of the turn's start; `status` is the goal status it reported).
    fn launch_turn(
        &mut self,
        turn_id: TurnId,
        kind: TurnKind,
        trigger: TurnTrigger,
        input: Vec<ResponseItem>,
        span: tracing::Span,
        status: Option<&'static str>,
    ) {
        // The turn row reaches the disk with the turn's first commit (its first response, or
        // at once for a user turn, whose prompt must not be lost).
        self.session.queue(quest_state::PendingWrite::BeginTurn {
            thread_id: self.session.thread_id,
            turn_id,
            trigger: match trigger {
                TurnTrigger::User => quest_state::TurnTrigger::User,
                TurnTrigger::Goal => quest_state::TurnTrigger::Goal,
            },
            at_ms: quest_state::now_ms(),
        });
        if let Some(status) = status {
            span.record("quest.goal.status", status);
        }
        self.session
            .emit(Some(turn_id), EventMsg::TurnStarted { trigger });
        let cancel = CancellationToken::new();
        let session = self.session.clone();
        let mut history = self.history.take().unwrap_or_default();
        let observer = self.policy.as_ref().and_then(|p| p.observer());
        let token = cancel.clone();
        let handle = tokio::spawn(
            async move {
                let report = match kind {
                    TurnKind::Regular => {
                        run_turn(
                            session,
                            &mut history,
                            turn_id,
                            trigger,
                            input,
                            token,
                            observer,
                        )
                        .await
                    }
                    TurnKind::Compact => {
                        run_compact_turn(session, &mut history, turn_id, trigger, token, observer)
                            .await
                    }
                };
                let span = tracing::Span::current();
                match &report.outcome {
                    TurnOutcome::Completed { .. } => span.record("quest.turn.outcome", "completed"),
                    TurnOutcome::Failed(_) => {
                        span.record("otel.status_code", "ERROR");
                        span.record("quest.turn.outcome", "failed")
                    }
                    TurnOutcome::Aborted => span.record("quest.turn.outcome", "interrupted"),
                };
                (history, report)
            }
            .instrument(span),
        );
        self.running = Some(Running {
            turn_id,
            trigger,
            kind,
            cancel,
            handle,
        });
    }

    /// Records the turn's end and announces it; with `schedule`, also asks the policy (in the
    /// same trip to the blocking pool) after how long the next hidden turn should start.
    async fn finish_turn(
        &mut self,
        report: TurnReport,
        schedule: bool,
    ) -> Option<std::time::Duration> {
        use quest_state::TurnStatus;
        let (status, error) = match &report.outcome {
            TurnOutcome::Completed { .. } => (TurnStatus::Completed, None),
            TurnOutcome::Failed(err) => (TurnStatus::Failed, Some(err.message.clone())),
            TurnOutcome::Aborted => (TurnStatus::Interrupted, None),
        };
        // Committed together with the goal's end-of-turn change, or on its own below.
        self.session.queue(quest_state::PendingWrite::FinishTurn {
            turn_id: report.turn_id,
            status,
            usage: Some(report.usage),
            error,
            at_ms: quest_state::now_ms(),
        });
        // The goal's end-of-turn change commits the queue with it; what is left commits alone.
        let session = self.session.clone();
        let mut policy = self.policy.take();
        let (policy, report, committed, next) = blocking::run(move || {
            if let Some(policy) = policy.as_mut() {
                policy.on_turn_end(&report);
            }
            let committed = session.commit();
            let next = match policy.as_mut() {
                Some(policy) if schedule => policy.next_continuation(),
                _ => None,
            };
            (policy, report, committed, next)
        })
        .await;
        self.policy = policy;
        if let Err(err) = committed {
            self.session.emit(
                Some(report.turn_id),
                EventMsg::Warning(format!("failed to record the turn end: {err}")),
            );
        }
        let msg = match report.outcome {
            TurnOutcome::Completed { last_message } => EventMsg::TurnCompleted {
                usage: report.usage,
                last_message,
            },
            TurnOutcome::Failed(error) => EventMsg::TurnFailed {
                error,
                usage: report.usage,
            },
            TurnOutcome::Aborted => EventMsg::TurnAborted,
        };
        self.session.emit(Some(report.turn_id), msg);
        next
    }

    /// After a crashed turn task: what the turn recorded before it died is history, and the
    /// calls it left without outputs are answered before the next request.
    async fn reload_history(&mut self) {
        let session = self.session.clone();
        let loaded = blocking::run(move || {
            let _ = session.commit();
            let store = session.store.as_ref()?;
            let mut loaded = store.load_history(&session.thread_id).ok()?;
            let repairs = crate::turn::dangling_call_outputs(&loaded.items);
            if !repairs.is_empty() {
                // Queued even if this commit fails: the next one writes them, in this order.
                let _ = session.persist(None, &repairs);
                let _ = session.commit();
                loaded.items.extend(repairs);
            }
            Some(loaded)
        })
        .await;
        if let Some(loaded) = loaded {
            self.history = Some(History::new(loaded.items, loaded.compactions));
        }
    }
}

/// The root span of a turn.
fn turn_span(session: &Session, turn_id: TurnId, trigger: TurnTrigger) -> tracing::Span {
    let span = tracing::info_span!(
        target: "quest::turn",
        parent: None,
        "invoke_agent",
        otel.name = "invoke_agent quest",
        otel.kind = "internal",
        otel.status_code = tracing::field::Empty,
        gen_ai.operation.name = "invoke_agent",
        gen_ai.agent.name = "quest",
        gen_ai.provider.name = %session.provider_name(),
        gen_ai.request.model = %session.config.model,
        gen_ai.conversation.id = %session.thread_id,
        quest.turn.id = %turn_id,
        quest.turn.trigger = trigger.as_str(),
        quest.goal.id = tracing::field::Empty,
        quest.goal.status = tracing::field::Empty,
        quest.turn.outcome = tracing::field::Empty,
    );
    if let Some(parent) = quest_otel::traceparent_context_from_env() {
        quest_otel::set_parent_from_context(&span, parent);
    }
    span
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use quest_mock_model::{MockModel, Script, Step};
    use quest_protocol::TokenUsage;
    use quest_protocol::goal::GoalStatus;

    use super::*;
    use crate::goal::{GoalBudgets, GoalRuntime};
    use crate::protocol::TurnErrorKind;
    use crate::tools::{ToolCall, ToolResult};
    use crate::turn::TurnObserver;

    /// The goal runtime, except that the turn's observer panics when usage arrives (on the
    /// blocking pool for a response that runs tools, in the turn task for the last one): a stand-in
    /// for any bug that panics inside a turn task.
    struct PanicsInTurn(GoalRuntime);

    struct PanickingObserver(Arc<dyn TurnObserver>);

    impl TurnObserver for PanickingObserver {
        fn goal_tool(&self, turn_id: TurnId, call: &ToolCall) -> Option<ToolResult> {
            self.0.goal_tool(turn_id, call)
        }
        fn on_usage(&self, _turn_id: TurnId, _usage: &TokenUsage) {
            panic!("a bug inside the turn");
        }
        fn on_final_usage(&self, _turn_id: TurnId, _usage: &TokenUsage) {
            panic!("a bug inside the turn");
        }
        fn after_tools(&self, turn_id: TurnId, results: &[ToolResult]) -> Option<String> {
            self.0.after_tools(turn_id, results)
        }
        fn goal_objective(&self) -> Option<(String, &'static str)> {
            self.0.goal_objective()
        }
    }

    impl IdlePolicy for PanicsInTurn {
        fn on_turn_start(
            &mut self,
            turn_id: TurnId,
            kind: TurnKind,
            trigger: TurnTrigger,
            span: &tracing::Span,
        ) -> Option<&'static str> {
            self.0.on_turn_start(turn_id, kind, trigger, span)
        }
        fn on_turn_end(&mut self, report: &TurnReport) {
            self.0.on_turn_end(report)
        }
        fn next_continuation(&mut self) -> Option<Duration> {
            self.0.next_continuation()
        }
        fn confirm_continuation(&mut self) -> Option<Vec<ResponseItem>> {
            self.0.confirm_continuation()
        }
        fn observer(&self) -> Option<Arc<dyn TurnObserver>> {
            let inner = self.0.observer()?;
            Some(Arc::new(PanickingObserver(inner)))
        }
        fn on_interrupt(&mut self) {
            self.0.on_interrupt()
        }
        fn on_shutdown(&mut self) {
            self.0.on_shutdown()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_inside_a_turn_ends_it_as_failed_and_counts_as_no_progress() {
        let mock = MockModel::start(Script::new([]).with_default(
            Step::message("hello").with_usage(quest_mock_model::Usage::new(100, 0, 10, 0)),
        ))
        .await;
        let home = tempfile::tempdir().unwrap();
        let loaded = crate::load_config(crate::ConfigOverrides {
            home: Some(home.path().to_path_buf()),
            cwd: Some(home.path().to_path_buf()),
            raw_overrides: vec![
                "model_provider=mock".to_string(),
                format!(
                    "model_providers.mock={{name=\"mock\", base_url=\"{}\", wire_api=\"responses\"}}",
                    mock.uri()
                ),
                "goals.no_progress_backoff=[\"1h\"]".to_string(),
            ],
            ..crate::ConfigOverrides::default()
        })
        .unwrap();
        let config = Arc::new(loaded.config);
        let store = quest_state::Store::open_in(home.path()).unwrap();
        let thread_id = ThreadId::new();
        store
            .create_thread(&quest_state::NewThread {
                id: thread_id,
                cwd: "/".to_string(),
                model: config.model.clone(),
                model_provider: config.model_provider_id.clone(),
            })
            .unwrap();
        let events = crate::session::EventSink::default();
        let mut rx = events.subscribe();
        let session = Arc::new(Session {
            thread_id,
            config: config.clone(),
            client: crate::build_client(&config, "test", false).unwrap(),
            store: Some(store.clone()),
            events,
            tools: Vec::new(),
            mcp: None,
            telemetry: None,
            propagate_trace: false,
            log_user_prompt: false,
            server: (None, None),
            pending: Default::default(),
            approvals: Default::default(),
            window: Default::default(),
            command_env: Default::default(),
        });
        let runtime = GoalRuntime::new(session.clone(), store.clone(), config.goals.clone(), true);
        runtime
            .create_goal("keep going", GoalBudgets::default(), true, None)
            .unwrap();
        let handle = spawn_thread(
            session,
            History::default(),
            Some(Box::new(PanicsInTurn(runtime.clone()))),
        );
        handle.submit(Op::WakeIdle);
        let failed = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(event) = rx.recv().await {
                if let EventMsg::TurnFailed { error, .. } = event.msg {
                    return Some(error);
                }
            }
            None
        })
        .await
        .expect("the turn never ended")
        .expect("events ended");
        assert_eq!(failed.kind, TurnErrorKind::Internal);
        let goal = store.get_goal(&thread_id).unwrap().unwrap();
        // Counted and classified like any goal turn that got nowhere; no instant retry.
        assert_eq!(goal.status, GoalStatus::Active);
        assert_eq!((goal.turns_used, goal.no_progress_streak), (1, 1));
        let turns = store.list_turns(&thread_id).unwrap();
        assert_eq!(turns.len(), 1);
        assert_eq!(turns[0].status, quest_state::TurnStatus::Failed);
        handle.submit(Op::Shutdown);
        handle.join().await;
        assert_eq!(mock.request_count(), 1);
    }
}
