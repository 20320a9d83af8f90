//! A thread's shared, immutable context and its durable history.

use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderName, HeaderValue};
use quest_model::{EncodedItems, ModelClient, Prompt};
use quest_protocol::sandbox::SandboxMode;
use quest_protocol::{ResponseItem, ThreadId, TurnId};
use quest_state::Store;
use quest_tools::sandbox::{KernelSupport, Sandbox};
use serde_json::json;
use tokio::sync::mpsc;

use crate::compact::CompactionSettings;
use crate::config::Config;
use crate::prompts;
use crate::protocol::{Event, EventMsg, TurnTrigger};

/// Receives a thread's events, in order, from the moment of subscribing.
pub type EventStream = mpsc::UnboundedReceiver<Event>;

/// The subscribers of one thread's events. Cheap to clone; clones share the subscriber list.
#[derive(Clone, Debug, Default)]
pub struct EventSink {
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<Event>>>>,
}

impl EventSink {
    /// A new subscriber: it receives every event sent after this call.
    pub fn subscribe(&self) -> EventStream {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().push(tx);
        rx
    }

    /// Sends `event` to every live subscriber and forgets the ones that left.
    pub fn send(&self, event: Event) {
        let mut subscribers = self.lock();
        if let [only] = subscribers.as_slice() {
            if only.send(event).is_err() {
                subscribers.clear();
            }
            return;
        }
        subscribers.retain(|tx| tx.send(event.clone()).is_ok());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::UnboundedSender<Event>>> {
        match self.subscribers.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// What every turn of one thread shares.
pub struct Session {
    /// The thread.
    pub thread_id: ThreadId,
    /// Resolved configuration.
    pub config: Arc<Config>,
    /// Model client (one HTTP connection pool per process).
    pub client: ModelClient,
    /// Durable store; `None` for ephemeral threads.
    pub store: Option<Store>,
    /// Where events go: every subscriber of the thread.
    pub events: EventSink,
    /// Tool specs sent with every request.
    pub tools: Vec<serde_json::Value>,
    /// The thread's MCP servers; `None` when none is enabled.
    pub mcp: Option<crate::mcp::McpServersHandle>,
    /// Session events and metrics; `None` when telemetry is off.
    pub telemetry: Option<Arc<quest_otel::SessionTelemetry>>,
    /// Send `traceparent`/`tracestate` (with configured members) on model requests.
    pub propagate_trace: bool,
    /// `[otel] log_user_prompt`: goal objectives may appear in exported tool results.
    pub log_user_prompt: bool,
    /// Host and port of the provider's base URL (`server.address` / `server.port`).
    pub server: (Option<String>, Option<u16>),
    /// Turn rows and rollout items waiting for the next commit (see [`Session::commit`]).
    pub pending: Mutex<Vec<quest_state::PendingWrite>>,
    /// Approval requests waiting for a front-end's answer, and commands approved for the
    /// session.
    pub approvals: crate::approval::Approvals,
    /// The context window when the configuration has none: the provider's model list.
    pub window: crate::window::ThreadWindow,
    /// [`Session::command_env`], built by the first command.
    pub command_env: std::sync::OnceLock<Arc<[(String, String)]>>,
}

impl Session {
    /// The compaction settings to decide with: the configured ones, completed by the
    /// provider's model list for a model with no known window (see [`crate::window`]). A
    /// failed lookup is reported here as a warning, once per process. `wait`: see
    /// [`crate::window::ThreadWindow::settings`].
    pub async fn compaction_settings(
        &self,
        turn_id: Option<TurnId>,
        wait: bool,
    ) -> CompactionSettings {
        let (settings, warning) = self.window.settings(self.config.compaction, wait).await;
        if let Some(message) = warning {
            self.emit(turn_id, EventMsg::Warning(message));
        }
        settings
    }

    /// The sandbox of this thread's commands and patches: the configured policy around the
    /// thread's workspace, keeping Quest's home (and config) read-only.
    pub fn sandbox(&self) -> Sandbox {
        Sandbox::new(
            self.config.sandbox_policy.clone(),
            &self.config.cwd,
            vec![self.config.home.clone()],
        )
    }

    /// The environment of this thread's commands: Quest's environment filtered by
    /// `[shell_environment_policy]`, without the provider's key variable. Built once per
    /// session (filtering the whole environment through the policy's patterns for every
    /// response that runs a command was measurable per turn).
    pub fn command_env(&self) -> Arc<[(String, String)]> {
        self.command_env
            .get_or_init(|| {
                let env_key = self.config.model_provider.env_key.as_deref();
                self.config
                    .shell_environment_policy
                    .build(std::env::vars(), env_key.as_slice())
                    .into()
            })
            .clone()
    }

    /// `gen_ai.provider.name`: `openai` for the built-in provider, else the provider id.
    pub fn provider_name(&self) -> &str {
        &self.config.model_provider_id
    }

    /// Host and port of a base URL, for `server.address` / `server.port`.
    pub fn server_address(url: &str) -> (Option<String>, Option<u16>) {
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = rest.split('/').next().unwrap_or_default();
        match authority.rsplit_once(':') {
            Some((host, port)) => (Some(host.to_string()), port.parse().ok()),
            None if !authority.is_empty() => (Some(authority.to_string()), None),
            None => (None, None),
        }
    }

    /// Sends an event to every subscriber; a closed receiver only means that subscriber left.
    pub fn emit(&self, turn_id: Option<TurnId>, msg: EventMsg) {
        self.events.send(Event {
            thread_id: self.thread_id,
            turn_id,
            msg,
        });
    }

    /// Queues items for the durable rollout (no-op for ephemeral threads). They reach the disk
    /// with the next [`Session::commit`] or goal change, in one transaction with it.
    pub fn persist(&self, turn_id: Option<TurnId>, items: &[ResponseItem]) -> Result<(), String> {
        if self.store.is_some() && !items.is_empty() {
            self.queue(quest_state::PendingWrite::Append {
                thread_id: self.thread_id,
                turn_id,
                items: items.to_vec(),
            });
        }
        Ok(())
    }

    /// Queues a write for the next commit (no-op for ephemeral threads).
    pub fn queue(&self, write: quest_state::PendingWrite) {
        if self.store.is_some() {
            self.lock_pending().push(write);
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Vec<quest_state::PendingWrite>> {
        match self.pending.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Commits the queued writes, and `goal` after them, in one transaction. On failure the
    /// queue is kept for the next attempt.
    pub fn commit_with(
        &self,
        goal: Option<quest_state::GoalWrite<'_>>,
    ) -> Result<Option<quest_state::GoalApplyOutcome>, quest_state::StateError> {
        let Some(store) = &self.store else {
            return Ok(None);
        };
        // Holding the queue across the write keeps writes in order when the heartbeat and the
        // turn commit at the same moment.
        let mut pending = self.lock_pending();
        let outcome = store.commit_batch(&pending, goal)?;
        pending.clear();
        Ok(outcome)
    }

    /// Commits the queued writes and then the goal changes `goals`, in order, in one
    /// transaction (see [`quest_state::Store::commit_batch_all`]). On failure the queue is kept
    /// for the next attempt.
    pub fn commit_with_all(
        &self,
        goals: &[quest_state::GoalWrite<'_>],
    ) -> Result<Vec<Option<quest_state::GoalApplyOutcome>>, quest_state::StateError> {
        let Some(store) = &self.store else {
            return Ok(Vec::new());
        };
        let mut pending = self.lock_pending();
        let outcomes = store.commit_batch_all(&pending, goals)?;
        pending.clear();
        Ok(outcomes)
    }

    /// Commits the queued writes.
    pub fn commit(&self) -> Result<(), String> {
        self.commit_with(None)
            .map(|_| ())
            .map_err(|e| format!("failed to record the conversation: {e}"))
    }

    /// Queues a compaction record behind the items it summarizes (no-op for ephemeral threads).
    /// It reaches the disk with the next commit, in one transaction with everything queued
    /// before it: a crash before that commit leaves the previous history intact, and once the
    /// commit returns a resume starts from the compacted history.
    pub fn queue_compaction(
        &self,
        turn_id: Option<TurnId>,
        record: &quest_protocol::CompactedHistory,
    ) {
        self.queue(quest_state::PendingWrite::Compaction {
            thread_id: self.thread_id,
            turn_id,
            record: Box::new(record.clone()),
        });
    }

    /// Takes queued compaction records back out (their commit failed; the history in memory
    /// stays the one from before the compaction, and so must the rollout).
    pub fn unqueue_compaction(&self) {
        self.lock_pending()
            .retain(|write| !matches!(write, quest_state::PendingWrite::Compaction { .. }));
    }

    /// The model request for the current history (its already encoded items, not a copy).
    pub fn prompt(&self, history: &History, turn_id: TurnId, trigger: TurnTrigger) -> Prompt {
        let mut prompt = self.request(turn_id, trigger, history.window, RequestKind::Turn);
        prompt.encoded_input = history.encoded().clone();
        prompt
    }

    /// The summary request of a compaction: `input` (history and hand-off prompt) without tools,
    /// marked `request_kind: "compaction"`.
    pub fn compaction_prompt(
        &self,
        input: Vec<ResponseItem>,
        turn_id: TurnId,
        trigger: TurnTrigger,
        window: u64,
    ) -> Prompt {
        let mut prompt = self.request(turn_id, trigger, window, RequestKind::Compaction);
        prompt.input = input;
        prompt.tools = Vec::new();
        prompt.parallel_tool_calls = false;
        prompt
    }

    fn request(
        &self,
        turn_id: TurnId,
        trigger: TurnTrigger,
        window: u64,
        kind: RequestKind,
    ) -> Prompt {
        let thread = self.thread_id.to_string();
        let window_id = format!("{thread}:{window}");
        let metadata = json!({
            "session_id": thread,
            "thread_id": thread,
            "turn_id": turn_id.to_string(),
            "window_id": window_id,
            "window_number": window,
            "context_window_id": window_id,
            "request_kind": kind.as_str(),
            "turn_trigger": match trigger { TurnTrigger::User => "exec", TurnTrigger::Goal => "goal" },
            "sandbox": KernelSupport::detect().enforcement(self.config.sandbox_mode),
            "sandbox_mode": self.config.sandbox_mode.as_str(),
            "model": self.config.model,
        })
        .to_string();
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("session-id", thread.as_str()),
            ("thread-id", thread.as_str()),
            ("x-client-request-id", thread.as_str()),
            ("x-codex-window-id", window_id.as_str()),
            ("x-codex-turn-metadata", metadata.as_str()),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        let reasoning = match (
            &self.config.reasoning_effort,
            &self.config.reasoning_summary,
        ) {
            (None, None) => None,
            (effort, summary) => {
                let mut r = serde_json::Map::new();
                if let Some(e) = effort {
                    r.insert("effort".into(), json!(e));
                }
                if let Some(s) = summary {
                    r.insert("summary".into(), json!(s));
                }
                Some(serde_json::Value::Object(r))
            }
        };
        Prompt {
            model: self.config.model.clone(),
            encoded_input: EncodedItems::new(),
            input: Vec::new(),
            tools: self.tools.clone(),
            parallel_tool_calls: true,
            reasoning,
            prompt_cache_key: Some(thread.clone()),
            extra_headers: headers,
            client_metadata: Some(json!({
                "thread_id": thread,
                "session_id": thread,
                "turn_id": turn_id.to_string(),
                "x-codex-window-id": window_id,
                "x-codex-turn-metadata": metadata,
            })),
        }
    }
}

/// What a model request is for (`request_kind` in `x-codex-turn-metadata`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// An ordinary sampling request of a turn.
    Turn,
    /// The summary request of a context compaction.
    Compaction,
}

impl RequestKind {
    /// `turn` / `compaction`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Turn => "turn",
            RequestKind::Compaction => "compaction",
        }
    }
}

/// A thread's live conversation: the items sent with every request (and their JSON, encoded
/// once as they are appended), the context window number (bumped by each compaction) and the
/// measured size of the context.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// The items, prefix included. Only appended to (or replaced as a whole), so that
    /// `encoded` always holds exactly these items.
    items: Vec<ResponseItem>,
    /// `items`, serialized for the request body.
    encoded: EncodedItems,
    /// Compactions so far: `x-codex-window-id` is `<thread>:<window>`.
    pub window: u64,
    /// Size of the live context.
    pub tracker: crate::compact::ContextTracker,
}

impl History {
    /// A history loaded from storage (or a new thread's prefix), not yet measured.
    pub fn new(items: Vec<ResponseItem>, window: u64) -> Self {
        let tracker = crate::compact::ContextTracker::estimated(&items);
        History {
            encoded: EncodedItems::from_items(&items),
            items,
            window,
            tracker,
        }
    }

    /// The items, prefix included.
    pub fn items(&self) -> &[ResponseItem] {
        &self.items
    }

    /// The items as the request body carries them.
    pub fn encoded(&self) -> &EncodedItems {
        &self.encoded
    }

    /// A response arrived with this usage (see [`crate::compact::ContextTracker::on_response`]).
    pub fn on_response(&mut self, input_tokens: i64, output_tokens: i64) {
        self.tracker
            .on_response(input_tokens, output_tokens, &self.items);
    }

    /// Appends `items` (and their JSON).
    pub fn extend(&mut self, items: Vec<ResponseItem>) {
        self.encoded.extend(&items);
        self.items.extend(items);
    }
}

/// The sandbox as the model is told about it: the mode, how this system enforces it, the
/// approval policy, network and writable roots.
pub fn sandbox_context(config: &Config) -> prompts::SandboxContext {
    let sandbox = Sandbox::new(
        config.sandbox_policy.clone(),
        &config.cwd,
        vec![config.home.clone()],
    );
    let writable_roots = match config.sandbox_mode {
        SandboxMode::DangerFullAccess => Vec::new(),
        SandboxMode::ReadOnly | SandboxMode::WorkspaceWrite => sandbox
            .writable_roots()
            .into_iter()
            .map(|root| root.root.display().to_string())
            .collect(),
    };
    prompts::SandboxContext {
        mode: config.sandbox_mode.as_str().to_string(),
        enforcement: KernelSupport::detect().enforcement(config.sandbox_mode),
        approval_policy: config.approval_policy.as_str().to_string(),
        network_access: config.sandbox_policy.has_network(),
        writable_roots,
    }
}

/// The items every new thread starts with: base instructions, `AGENTS.md`, environment context.
pub fn initial_items(config: &Config) -> Vec<ResponseItem> {
    let custom = config
        .instructions_file
        .as_ref()
        .and_then(|path| std::fs::read_to_string(path).ok());
    let mut items = vec![ResponseItem::text_message(
        "developer",
        prompts::base_instructions(custom.as_deref(), &config.cwd, config.sandbox_mode.as_str()),
    )];
    if let Some(doc) = prompts::project_doc(&config.cwd, config.project_doc_max_bytes) {
        items.push(ResponseItem::text_message("user", doc));
    }
    let date = chrono::Local::now().format("%Y-%m-%d").to_string();
    items.push(ResponseItem::text_message(
        "user",
        prompts::environment_context(&config.cwd, &date, &sandbox_context(config)),
    ));
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_address_splits_host_and_port() {
        assert_eq!(
            Session::server_address("http://127.0.0.1:4318/v1"),
            (Some("127.0.0.1".to_string()), Some(4318))
        );
        assert_eq!(
            Session::server_address("https://api.openai.com/v1"),
            (Some("api.openai.com".to_string()), None)
        );
        assert_eq!(Session::server_address(""), (None, None));
    }
}
