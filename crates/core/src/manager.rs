//! [`ThreadManager`]: many threads in one process.
//!
//! The manager owns the state database, restart reconciliation, goal-loop leases and the goal
//! runtime of every thread it has loaded. Front-ends (exec, the `quest goal` commands, the
//! app-server) start, resume, list, interrupt and shut down threads here, subscribe to a thread's
//! events, and read or change goals here — whether or not the thread is loaded in this process —
//! without ever touching SQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use quest_model::ModelClient;
use quest_protocol::goal::transition::{
    BudgetChange, CreateGoal, CreateMode, GoalEvent, GoalState, Trigger, UpdateGoal,
};
use quest_protocol::goal::{GoalOrigin, GoalStatus};
use quest_protocol::transcript::TranscriptEntry;
use quest_protocol::{ThreadId, TurnId};
use quest_state::Store;

use crate::config::Config;
use crate::goal::control::GoalControl;
use crate::goal::{GoalBudgets, GoalError, GoalRuntime, goal_tool_specs};
use crate::protocol::Op;
use crate::session::{EventSink, EventStream, Session};
use crate::telemetry::ThreadTelemetry;
use crate::thread::{IdlePolicy, ThreadHandle, spawn_thread};
use crate::{CoreError, build_client, session, tools};

pub use quest_state::GoalEventPage;

/// How a manager runs its threads.
#[derive(Clone, Debug)]
pub struct ManagerOptions {
    /// Keep nothing on disk: threads are ephemeral and goals are unavailable.
    pub ephemeral: bool,
    /// `originator` header and telemetry service name.
    pub originator: String,
    /// Telemetry for threads; `None` when off.
    pub telemetry: Option<ThreadTelemetry>,
    /// Send W3C trace context on model requests.
    pub propagate_trace: bool,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            ephemeral: false,
            originator: "quest".to_string(),
            telemetry: None,
            propagate_trace: false,
        }
    }
}

/// How one thread runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadOptions {
    /// Start hidden continuation turns while the thread's goal is `active`. Off for a plain
    /// `quest exec`, which runs the turns it is given and nothing else.
    pub goal_loop: bool,
    /// Nobody can answer approval requests (a headless `quest exec`): each request is
    /// announced, declined at once, and the model is told why.
    pub headless: bool,
}

/// A thread just started or resumed: its handle and a first event subscription that sees every
/// event from the very start.
pub struct StartedThread {
    /// The thread.
    pub thread_id: ThreadId,
    /// Sends ops; subscribes more listeners.
    pub handle: ThreadHandle,
    /// Receives the thread's events.
    pub events: EventStream,
}

/// A recorded thread, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadSummary {
    /// Thread id.
    pub id: ThreadId,
    /// Working directory.
    pub cwd: String,
    /// Model slug.
    pub model: String,
    /// Model provider id.
    pub model_provider: String,
    /// Title, when one was set.
    pub title: Option<String>,
    /// Preview text (first user message or goal objective).
    pub preview: Option<String>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Unix milliseconds.
    pub updated_at_ms: i64,
}

impl From<quest_state::ThreadRecord> for ThreadSummary {
    fn from(r: quest_state::ThreadRecord) -> Self {
        ThreadSummary {
            id: r.id,
            cwd: r.cwd,
            model: r.model,
            model_provider: r.model_provider,
            title: r.title,
            preview: r.preview,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
        }
    }
}

/// How a recorded turn stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnState {
    /// Started and not ended (or its process died before reconciliation marked it).
    Running,
    /// Ended normally.
    Completed,
    /// Ended with an error.
    Failed,
    /// Ended by an interrupt or by the death of its process.
    Interrupted,
}

/// A recorded turn, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnSummary {
    /// Turn id.
    pub id: TurnId,
    /// How it stands.
    pub state: TurnState,
    /// Error text of a failed turn.
    pub error: Option<String>,
    /// Unix milliseconds.
    pub started_at_ms: i64,
    /// Unix milliseconds, once ended.
    pub ended_at_ms: Option<i64>,
}

impl From<quest_state::TurnRecord> for TurnSummary {
    fn from(r: quest_state::TurnRecord) -> Self {
        TurnSummary {
            id: r.id,
            state: match r.status {
                quest_state::TurnStatus::Running => TurnState::Running,
                quest_state::TurnStatus::Completed => TurnState::Completed,
                quest_state::TurnStatus::Failed => TurnState::Failed,
                quest_state::TurnStatus::Interrupted => TurnState::Interrupted,
            },
            error: r.error,
            started_at_ms: r.started_at_ms,
            ended_at_ms: r.ended_at_ms,
        }
    }
}

/// A new goal asked for by the user (`quest exec --goal`, `thread/goal/set` on a thread without
/// a goal, `/goal <objective>`).
#[derive(Clone, Debug, Default)]
pub struct NewGoal {
    /// The objective (trimmed and validated by the transition function).
    pub objective: String,
    /// Budgets; `None` each = the configured default.
    pub budgets: GoalBudgets,
    /// Initial status (`None` = `active`).
    pub status: Option<GoalStatus>,
    /// Replace an unfinished goal (the user confirmed); otherwise only a missing or `complete`
    /// goal is replaced.
    pub replace: bool,
    /// Where the request came from (`thread/goal/set` `origin`).
    pub origin: Option<GoalOrigin>,
}

/// An in-place change of an existing goal by the user (`thread/goal/set`, `quest goal edit`,
/// `quest goal budget`). Every field is optional.
#[derive(Clone, Debug, Default)]
pub struct GoalUpdate {
    /// New objective.
    pub objective: Option<String>,
    /// Requested status (precedence rules apply; `active` resets the breaker like a resume).
    pub status: Option<GoalStatus>,
    /// Token budget change.
    pub token_budget: BudgetChange,
    /// Time budget change, seconds.
    pub time_budget_seconds: BudgetChange,
    /// Turn budget change.
    pub turn_budget: BudgetChange,
    /// Opt in to (or out of) automatic resume at the usage-limit reset.
    pub auto_resume_at_reset: Option<bool>,
    /// Where the request came from.
    pub origin: Option<GoalOrigin>,
}

/// Runs many threads in one process. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct ThreadManager {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    options: ManagerOptions,
    store: Option<Store>,
    client: Mutex<Option<ModelClient>>,
    /// Shared with every manager derived by [`ThreadManager::with_config`]: a thread is loaded
    /// once per process, whichever configuration it runs with.
    threads: Arc<Mutex<HashMap<ThreadId, Loaded>>>,
    /// Context-window lookups in the providers' model lists, by model-list URL and model: one
    /// per process (shared like `threads`) for each model with no known or configured window.
    windows: crate::window::WindowLookups,
    /// This manager's lookup, once its model client is built.
    window: Mutex<Option<Arc<crate::window::WindowLookup>>>,
}

#[derive(Clone)]
struct Loaded {
    handle: ThreadHandle,
    goal: Option<GoalRuntime>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl ThreadManager {
    /// A manager for `config`. Opens (creating if needed) the state database under
    /// `config.home` unless `options.ephemeral`.
    pub fn new(config: Arc<Config>, options: ManagerOptions) -> Result<Self, CoreError> {
        let store = if options.ephemeral {
            None
        } else {
            Some(Store::open_in(&config.home)?)
        };
        Ok(ThreadManager {
            inner: Arc::new(Inner {
                config,
                options,
                store,
                client: Mutex::new(None),
                threads: Arc::new(Mutex::new(HashMap::new())),
                windows: Arc::default(),
                window: Mutex::new(None),
            }),
        })
    }

    /// A manager for threads that run with another configuration (a client's per-thread
    /// overrides: model, working directory, sandbox, …) in this same process. It shares this
    /// manager's state database connection and its set of loaded threads, so a thread is loaded at
    /// most once and any of the managers can reach it; its own model client is built lazily. With
    /// `ephemeral` its new threads are not recorded.
    pub fn with_config(&self, config: Arc<Config>, ephemeral: bool) -> Result<Self, CoreError> {
        let store = match (&self.inner.store, ephemeral) {
            (_, true) => None,
            (Some(store), false) if config.home == self.inner.config.home => Some(store.clone()),
            (_, false) => Some(Store::open_in(&config.home)?),
        };
        Ok(ThreadManager {
            inner: Arc::new(Inner {
                config,
                options: ManagerOptions {
                    ephemeral,
                    ..self.inner.options.clone()
                },
                store,
                client: Mutex::new(None),
                threads: self.inner.threads.clone(),
                windows: self.inner.windows.clone(),
                window: Mutex::new(None),
            }),
        })
    }

    /// A manager over an existing state database only: `Err(CoreError::NoDatabase)` when this
    /// Quest home has none, and nothing is created. For readers (`quest goal status|log|list`).
    pub fn open_existing(config: Arc<Config>) -> Result<Self, CoreError> {
        let path = config.home.join(quest_state::STATE_DB_FILE_NAME);
        if !path.is_file() {
            return Err(CoreError::NoDatabase(path));
        }
        Self::new(config, ManagerOptions::default())
    }

    /// Runs `f` with this manager on the runtime's blocking pool and waits for it without
    /// holding an async worker. Most manager calls read or write the state database (and a
    /// commit waits for the disk); front-ends running in async code make them through this.
    pub async fn blocking<T, F>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(&ThreadManager) -> T + Send + 'static,
    {
        let manager = self.clone();
        crate::blocking::run(move || f(&manager)).await
    }

    /// The configuration threads start with.
    pub fn config(&self) -> &Arc<Config> {
        &self.inner.config
    }

    /// The model's context window as far as it is known now: configured, known for the slug, or
    /// read from the provider's model list (once that answered).
    pub fn context_window(&self) -> Option<i64> {
        let configured = self.inner.config.compaction.context_window;
        configured.or_else(|| {
            lock(&self.inner.window)
                .as_ref()
                .and_then(|lookup| lookup.peek())
                .flatten()
        })
    }

    /// Whether threads are recorded.
    pub fn is_ephemeral(&self) -> bool {
        self.inner.store.is_none()
    }

    fn store(&self) -> Result<&Store, CoreError> {
        self.inner.store.as_ref().ok_or(CoreError::Ephemeral)
    }

    fn client(&self) -> Result<ModelClient, CoreError> {
        let mut client = lock(&self.inner.client);
        if let Some(client) = client.as_ref() {
            return Ok(client.clone());
        }
        let built = build_client(
            &self.inner.config,
            &self.inner.options.originator,
            self.inner.options.propagate_trace,
        )?;
        *client = Some(built.clone());
        let config = &self.inner.config;
        let lookup = crate::window::WindowLookup::new(
            &config.compaction,
            &config.model,
            &built,
            std::time::Duration::from_millis(config.model_tuning.model_list_timeout_ms),
        )
        .map(|lookup| {
            let key = (built.model_list_url(), config.model.clone());
            lock(&self.inner.windows)
                .entry(key)
                .or_insert(lookup)
                .clone()
        });
        *lock(&self.inner.window) = lookup;
        Ok(built)
    }

    /// Starts a new thread (recorded unless the manager is ephemeral).
    pub fn start_thread(&self, options: ThreadOptions) -> Result<StartedThread, CoreError> {
        let client = self.client()?;
        let thread_id = ThreadId::new();
        let config = &self.inner.config;
        let items = session::initial_items(config);
        if let Some(store) = &self.inner.store {
            store.create_thread(&quest_state::NewThread {
                id: thread_id,
                cwd: config.cwd.display().to_string(),
                model: config.model.clone(),
                model_provider: config.model_provider_id.clone(),
            })?;
            store.append_rollout(&thread_id, None, &items)?;
        }
        self.launch(client, thread_id, session::History::new(items, 0), options)
    }

    /// Loads a recorded thread with its exact history and starts its actor. Restart
    /// reconciliation runs first: an `active` goal whose runner died comes back `paused`
    /// (unless `[goals] auto_continue_on_resume`).
    pub fn resume_thread(
        &self,
        thread_id: ThreadId,
        options: ThreadOptions,
    ) -> Result<StartedThread, CoreError> {
        let store = self.store()?;
        if lock(&self.inner.threads).contains_key(&thread_id) {
            return Err(CoreError::ThreadAlreadyLoaded(thread_id));
        }
        if store.get_thread(&thread_id)?.is_none() {
            return Err(CoreError::ThreadNotFound(thread_id));
        }
        let client = self.client()?;
        store
            .reconcile_for_load(&thread_id, self.inner.config.goals.auto_continue_on_resume)
            .map_err(|err| match err {
                quest_state::StateError::LeaseHeld { pid, .. } => {
                    CoreError::LeaseHeld { thread_id, pid }
                }
                other => CoreError::State(other),
            })?;
        let mut loaded = store.load_history(&thread_id)?;
        // A process that died while tools ran left calls without outputs; the API refuses a
        // history like that, so answer them now, durably.
        let repairs = crate::turn::dangling_call_outputs(&loaded.items);
        if !repairs.is_empty() {
            store.append_rollout(&thread_id, None, &repairs)?;
            loaded.items.extend(repairs);
        }
        self.launch(
            client,
            thread_id,
            session::History::new(loaded.items, loaded.compactions),
            options,
        )
    }

    fn launch(
        &self,
        client: ModelClient,
        thread_id: ThreadId,
        history: session::History,
        options: ThreadOptions,
    ) -> Result<StartedThread, CoreError> {
        let config = self.inner.config.clone();
        let store = self.inner.store.clone();
        let mut tool_specs = tools::builtin_tool_specs();
        if store.is_some() {
            tool_specs.extend(goal_tool_specs());
        }
        let thread_telemetry = self.inner.options.telemetry.as_ref();
        let telemetry = thread_telemetry.map(|t| t.session(&thread_id.to_string(), &config));
        if let Some(t) = &telemetry {
            t.conversation_starts(
                &config.model_provider_id,
                config.reasoning_effort.as_deref(),
                config.reasoning_summary.as_deref().unwrap_or("auto"),
                config.compaction.context_window,
                config.compaction.auto_compact_limit,
                config.approval_policy.as_str(),
                config.sandbox_mode.as_str(),
                &config
                    .mcp_servers
                    .iter()
                    .filter(|(_, server)| server.enabled)
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>(),
            );
        }
        let events = EventSink::default();
        let first = events.subscribe();
        // MCP servers start now, concurrently, while the thread gets going; the first turn waits
        // for them (each bounded by its startup timeout). Their warnings go to every subscriber.
        let mcp = {
            let events = events.clone();
            crate::mcp::McpServersHandle::start(
                &config,
                Arc::new(move |message: String| {
                    events.send(crate::protocol::Event {
                        thread_id,
                        turn_id: None,
                        msg: crate::protocol::EventMsg::Warning(message),
                    })
                }),
            )
        };
        let server = Session::server_address(config.model_provider.base_url());
        let window = lock(&self.inner.window).clone();
        if let Some(lookup) = &window {
            lookup.start();
        }
        let session = Arc::new(Session {
            thread_id,
            config: config.clone(),
            client,
            store: store.clone(),
            events,
            tools: tool_specs,
            mcp,
            log_user_prompt: thread_telemetry.is_some_and(|t| t.log_user_prompt),
            telemetry,
            propagate_trace: self.inner.options.propagate_trace,
            server,
            pending: Default::default(),
            approvals: crate::approval::Approvals::new(options.headless),
            window: crate::window::ThreadWindow::new(window),
            command_env: Default::default(),
        });
        let goal = store.map(|store| {
            GoalRuntime::new(
                session.clone(),
                store,
                config.goals.clone(),
                options.goal_loop,
            )
        });
        if let Some(runtime) = &goal {
            // The lease says this process runs the thread: nobody else may charge, continue or
            // pause its goal while it is loaded here.
            runtime.acquire_lease().map_err(|err| match err {
                GoalError::LeaseHeld { pid, .. } => CoreError::LeaseHeld { thread_id, pid },
                GoalError::Storage(err) => CoreError::State(err),
                other => CoreError::Goal(other),
            })?;
        }
        let policy = goal.clone().map(|g| Box::new(g) as Box<dyn IdlePolicy>);
        let handle = spawn_thread(session, history, policy);
        if let Some(runtime) = &goal {
            runtime.attach(handle.weak_ops());
        }
        lock(&self.inner.threads).insert(
            thread_id,
            Loaded {
                handle: handle.clone(),
                goal,
            },
        );
        Ok(StartedThread {
            thread_id,
            handle,
            events: first,
        })
    }

    /// Recorded threads, most recently updated first.
    pub fn list_threads(&self, limit: usize) -> Result<Vec<ThreadSummary>, CoreError> {
        Ok(self
            .store()?
            .list_threads(limit)?
            .into_iter()
            .map(ThreadSummary::from)
            .collect())
    }

    /// A recorded thread, or `None` when there is no such thread.
    pub fn thread_summary(&self, thread_id: &ThreadId) -> Result<Option<ThreadSummary>, CoreError> {
        Ok(self
            .store()?
            .get_thread(thread_id)?
            .map(ThreadSummary::from))
    }

    /// A recorded thread's turns, oldest first.
    pub fn turns(&self, thread_id: &ThreadId) -> Result<Vec<TurnSummary>, CoreError> {
        Ok(self
            .store()?
            .list_turns(thread_id)?
            .into_iter()
            .map(TurnSummary::from)
            .collect())
    }

    /// Everything a recorded thread's rollout holds, in order, each row with the turn that wrote
    /// it: the transcript a front-end shows when it reopens the thread (compactions do not hide
    /// the rows before them here, unlike the history the model is sent).
    pub fn transcript(&self, thread_id: &ThreadId) -> Result<Vec<TranscriptEntry>, CoreError> {
        Ok(self.store()?.load_transcript(thread_id)?)
    }

    /// Sets a recorded thread's preview (what thread lists show) unless it has one already: the
    /// first message or objective names a thread, later ones do not rename it. Returns whether
    /// it was set.
    pub fn fill_thread_preview(
        &self,
        thread_id: &ThreadId,
        preview: &str,
    ) -> Result<bool, CoreError> {
        Ok(self.store()?.fill_thread_preview(thread_id, preview)?)
    }

    /// The most recently updated recorded thread, optionally only among those started in `cwd`.
    pub fn latest_thread(&self, cwd: Option<&str>) -> Result<Option<ThreadId>, CoreError> {
        Ok(self.store()?.latest_thread(cwd)?.map(|t| t.id))
    }

    /// The threads loaded in this manager.
    pub fn loaded_threads(&self) -> Vec<ThreadId> {
        lock(&self.inner.threads).keys().copied().collect()
    }

    /// The handle of a loaded thread.
    pub fn thread(&self, thread_id: &ThreadId) -> Option<ThreadHandle> {
        lock(&self.inner.threads)
            .get(thread_id)
            .map(|l| l.handle.clone())
    }

    fn loaded(&self, thread_id: &ThreadId) -> Option<Loaded> {
        lock(&self.inner.threads).get(thread_id).cloned()
    }

    /// Subscribes to a loaded thread's events from now on.
    pub fn subscribe(&self, thread_id: &ThreadId) -> Result<EventStream, CoreError> {
        self.thread(thread_id)
            .map(|h| h.subscribe())
            .ok_or(CoreError::ThreadNotLoaded(*thread_id))
    }

    /// Sends an op to a loaded thread.
    pub fn submit(&self, thread_id: &ThreadId, op: Op) -> Result<(), CoreError> {
        match self.thread(thread_id) {
            Some(handle) if handle.submit(op) => Ok(()),
            _ => Err(CoreError::ThreadNotLoaded(*thread_id)),
        }
    }

    /// Interrupts a loaded thread's running turn; with `pause_goal` an active goal is paused
    /// first (reason `interrupt`).
    pub fn interrupt(&self, thread_id: &ThreadId, pause_goal: bool) -> Result<(), CoreError> {
        self.submit(thread_id, Op::Interrupt { pause_goal })
    }

    /// Stops a loaded thread: the running turn's bookkeeping finishes, an active goal run by
    /// this process is paused (reason `process_exit`), its lease is released, and the thread is
    /// unloaded once its actor has ended.
    pub async fn shutdown_thread(&self, thread_id: &ThreadId) -> Result<(), CoreError> {
        let handle = self
            .thread(thread_id)
            .ok_or(CoreError::ThreadNotLoaded(*thread_id))?;
        handle.submit(Op::Shutdown);
        handle.join().await;
        lock(&self.inner.threads).remove(thread_id);
        Ok(())
    }

    /// Waits until a loaded thread's actor has ended (after it was asked to shut down) and
    /// unloads it.
    pub async fn join_thread(&self, thread_id: &ThreadId) {
        if let Some(handle) = self.thread(thread_id) {
            handle.join().await;
        }
        lock(&self.inner.threads).remove(thread_id);
    }

    /// Shuts every loaded thread down.
    pub async fn shutdown(&self) {
        for thread_id in self.loaded_threads() {
            let _ = self.shutdown_thread(&thread_id).await;
        }
    }

    // ----- goals -----------------------------------------------------------------------------

    fn control(&self) -> Result<GoalControl, GoalError> {
        let store = self.inner.store.clone().ok_or(GoalError::Ephemeral)?;
        Ok(GoalControl::new(store, &self.inner.config))
    }

    /// `NoSuchThread` unless the thread is recorded.
    fn require_thread(&self, thread_id: &ThreadId) -> Result<(), GoalError> {
        let store = self.inner.store.as_ref().ok_or(GoalError::Ephemeral)?;
        match store.get_thread(thread_id)? {
            Some(_) => Ok(()),
            None => Err(GoalError::NoSuchThread(*thread_id)),
        }
    }

    /// The process id of another live process that runs the thread (holds its lease), if any.
    /// `None` also when this process runs it.
    pub fn goal_runner(&self, thread_id: &ThreadId) -> Result<Option<u32>, GoalError> {
        let store = self.inner.store.as_ref().ok_or(GoalError::Ephemeral)?;
        Ok(store
            .live_lease(thread_id)?
            .map(|l| l.pid)
            .filter(|pid| *pid != std::process::id()))
    }

    fn goal_runtime(&self, thread_id: &ThreadId) -> Option<GoalRuntime> {
        self.loaded(thread_id).and_then(|l| l.goal)
    }

    /// Wakes a loaded thread after a goal change, so an `active` goal continues when idle.
    fn wake(&self, thread_id: &ThreadId) {
        if let Some(handle) = self.thread(thread_id) {
            handle.submit(Op::WakeIdle);
        }
    }

    /// The thread's goal. For a thread not loaded here, restart reconciliation runs first.
    pub fn goal(&self, thread_id: &ThreadId) -> Result<Option<GoalState>, GoalError> {
        self.require_thread(thread_id)?;
        match self.goal_runtime(thread_id) {
            Some(runtime) => runtime.current(),
            None => self.control()?.status(thread_id),
        }
    }

    /// Every recorded goal, most recently updated first.
    pub fn list_goals(&self) -> Result<Vec<GoalState>, GoalError> {
        self.control()?.list()
    }

    /// The thread's goal audit trail (all goals, oldest first), at most `limit` events.
    pub fn goal_log(
        &self,
        thread_id: &ThreadId,
        limit: usize,
    ) -> Result<Vec<GoalEvent>, GoalError> {
        self.require_thread(thread_id)?;
        self.control()?.log(thread_id, limit)
    }

    /// One page of the audit trail (`thread/goal/history`).
    pub fn goal_history(
        &self,
        thread_id: &ThreadId,
        goal_id: Option<&str>,
        limit: usize,
        cursor: Option<i64>,
    ) -> Result<GoalEventPage, GoalError> {
        self.require_thread(thread_id)?;
        let store = self.inner.store.as_ref().ok_or(GoalError::Ephemeral)?;
        Ok(store.goal_events(thread_id, goal_id, limit, cursor)?)
    }

    /// Creates a goal for the user. On a loaded thread the goal is announced on its event
    /// stream, this process takes the goal-loop lease, and an idle thread starts working.
    pub fn create_goal(&self, thread_id: &ThreadId, goal: NewGoal) -> Result<GoalState, GoalError> {
        self.require_thread(thread_id)?;
        if let Some(runtime) = self.goal_runtime(thread_id) {
            let created =
                runtime.create_goal(&goal.objective, goal.budgets, goal.replace, goal.origin)?;
            return Ok(created);
        }
        let control = self.control()?;
        let mut create = CreateGoal::new(thread_id.to_string(), goal.objective);
        create.token_budget = goal.budgets.tokens;
        create.time_budget_seconds = goal.budgets.time_seconds;
        create.turn_budget = goal.budgets.turns;
        create.status = goal.status;
        create.auto_resume_at_reset = self.inner.config.goals.auto_resume_after_usage_limit;
        create.mode = if goal.replace {
            CreateMode::Replace
        } else {
            CreateMode::IfNoneOrComplete
        };
        create.limits = control.limits();
        let goal = control.apply(thread_id, Trigger::Create(create), goal.origin)?;
        goal.ok_or_else(|| {
            GoalError::Refused(quest_protocol::goal::transition::TransitionError::NoGoal {
                thread_id: thread_id.to_string(),
            })
        })
    }

    fn apply_user(
        &self,
        thread_id: &ThreadId,
        trigger: Trigger,
        origin: Option<GoalOrigin>,
    ) -> Result<Option<GoalState>, GoalError> {
        self.require_thread(thread_id)?;
        let control = self.control()?;
        control.require(thread_id)?;
        let goal = match self.goal_runtime(thread_id) {
            Some(runtime) => runtime.apply_user(trigger, origin)?,
            None => control.apply(thread_id, trigger, origin)?,
        };
        if goal
            .as_ref()
            .is_some_and(|g| g.status == GoalStatus::Active)
        {
            self.wake(thread_id);
        }
        Ok(goal)
    }

    /// Changes an existing goal in place (objective, status, budgets, auto-resume opt-in). The
    /// audit trail records `update.origin`; with `origin: "user"` an objective or status change
    /// also reaches the model as a user record (spec §13.5).
    pub fn update_goal(
        &self,
        thread_id: &ThreadId,
        update: GoalUpdate,
    ) -> Result<Option<GoalState>, GoalError> {
        let limits = self.control()?.limits();
        self.apply_user(
            thread_id,
            Trigger::Update(UpdateGoal {
                thread_id: thread_id.to_string(),
                objective: update.objective,
                status: update.status,
                token_budget: update.token_budget,
                time_budget_seconds: update.time_budget_seconds,
                turn_budget: update.turn_budget,
                auto_resume_at_reset: update.auto_resume_at_reset,
                limits,
            }),
            update.origin,
        )
    }

    /// `active` → `paused` at the user's request (`origin: "user"`).
    pub fn pause_goal(&self, thread_id: &ThreadId) -> Result<Option<GoalState>, GoalError> {
        self.apply_user(
            thread_id,
            Trigger::SetStatus {
                status: GoalStatus::Paused,
            },
            Some(GoalOrigin::User),
        )
    }

    /// Back to `active` with fresh breaker counters; with `at_reset` a usage-limited goal opts
    /// into resuming itself at the reset time instead.
    pub fn resume_goal(
        &self,
        thread_id: &ThreadId,
        at_reset: bool,
    ) -> Result<Option<GoalState>, GoalError> {
        if at_reset {
            return self.update_goal(
                thread_id,
                GoalUpdate {
                    auto_resume_at_reset: Some(true),
                    origin: Some(GoalOrigin::User),
                    ..GoalUpdate::default()
                },
            );
        }
        if let Some(runtime) = self.goal_runtime(thread_id) {
            self.control()?.require(thread_id)?;
            let goal = runtime.resume(Some(GoalOrigin::User))?;
            self.wake(thread_id);
            return Ok(goal);
        }
        self.apply_user(thread_id, Trigger::Resume, Some(GoalOrigin::User))
    }

    /// Replaces the objective, keeping id, counters and status.
    pub fn edit_goal(
        &self,
        thread_id: &ThreadId,
        objective: &str,
    ) -> Result<Option<GoalState>, GoalError> {
        self.update_goal(
            thread_id,
            GoalUpdate {
                objective: Some(objective.to_string()),
                origin: Some(GoalOrigin::User),
                ..GoalUpdate::default()
            },
        )
    }

    /// Changes budgets (three-state each).
    pub fn set_goal_budgets(
        &self,
        thread_id: &ThreadId,
        tokens: BudgetChange,
        time_seconds: BudgetChange,
        turns: BudgetChange,
    ) -> Result<Option<GoalState>, GoalError> {
        self.update_goal(
            thread_id,
            GoalUpdate {
                token_budget: tokens,
                time_budget_seconds: time_seconds,
                turn_budget: turns,
                origin: Some(GoalOrigin::User),
                ..GoalUpdate::default()
            },
        )
    }

    /// Deletes the goal (the audit trail stays, with `origin`); false when there was none.
    /// With `origin: "user"` the model sees `User cleared the goal.` at the next turn.
    pub fn clear_goal(
        &self,
        thread_id: &ThreadId,
        origin: Option<GoalOrigin>,
    ) -> Result<bool, GoalError> {
        self.require_thread(thread_id)?;
        let control = self.control()?;
        if control.status_raw(thread_id)?.is_none() {
            return Ok(false);
        }
        match self.goal_runtime(thread_id) {
            Some(runtime) => {
                runtime.apply_user(Trigger::Clear, origin)?;
            }
            None => {
                control.apply(thread_id, Trigger::Clear, origin)?;
            }
        }
        Ok(true)
    }
}
