//! One hub per loaded thread: a task that owns the thread's event stream, turns each core event
//! into v2 notifications in order, remembers what a late subscriber or `thread/read` needs, and
//! fans the notifications out to the subscribed clients.
//!
//! Ordering: a request handler that changes a thread and must answer before the notifications its
//! change causes (`thread/goal/set`, `turn/start`) holds the hub's gate while it changes and
//! answers; the hub takes the same gate before forwarding each event, so the answer always comes
//! first. Turn responses are sent by the hub itself, right before the `turn/started` they belong
//! to.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use quest_core::{
    Config, Event, EventMsg, EventStream, Op, ThreadHandle, ThreadManager,
    TurnError as CoreTurnError,
};
use quest_protocol::app_server::jsonrpc::RequestId;
use quest_protocol::app_server::v2::{
    ErrorNotification, ExecutionStatus, FileUpdateChange, ItemCompletedNotification,
    ItemDeltaNotification, ItemStartedNotification, PatchChangeKind, Thread, ThreadItem,
    ThreadStatus, ThreadStatusChangedNotification, ThreadTokenUsage,
    ThreadTokenUsageUpdatedNotification, TokenUsageBreakdown, Turn, TurnError, TurnNotification,
    TurnStatus, UserInput,
};
use quest_protocol::exec_events::{PatchApplyStatus, PatchChangeKind as ExecChangeKind};
use quest_protocol::ops::TurnErrorKind;
use quest_protocol::{ThreadId, TokenUsage};
use serde_json::{Value, json};

use crate::server::{ClientHandle, now_ms};

/// A `turn/start` waiting for its turn to begin; answered by the hub right before `turn/started`.
pub(crate) struct PendingStart {
    pub(crate) client: ClientHandle,
    pub(crate) request_id: RequestId,
    pub(crate) input: Vec<UserInput>,
    pub(crate) client_message_id: Option<String>,
}

struct CurrentTurn {
    id: String,
    started_ms: i64,
    items: Vec<ThreadItem>,
    open_message: Option<(String, String)>,
    commands: HashMap<String, (String, i64)>,
}

struct HubState {
    subscribers: HashMap<u64, ClientHandle>,
    status: ThreadStatus,
    current: Option<CurrentTurn>,
    turns: Vec<Turn>,
    usage_total: TokenUsage,
    pending_starts: VecDeque<PendingStart>,
    thread: Thread,
    next_item: u64,
    last_error: Option<TurnError>,
}

/// A loaded thread.
pub(crate) struct ThreadHub {
    pub(crate) thread_id: ThreadId,
    pub(crate) handle: ThreadHandle,
    /// The manager that runs the thread (goal changes go through it).
    pub(crate) manager: ThreadManager,
    /// The thread's configuration.
    pub(crate) config: Arc<Config>,
    pub(crate) gate: tokio::sync::Mutex<()>,
    state: Mutex<HubState>,
}

/// A batch of notifications produced by one event.
struct Outgoing {
    /// A `turn/start` answer to send first, to one client.
    response: Option<(ClientHandle, RequestId, Value)>,
    notifications: Vec<(&'static str, Value)>,
}

impl ThreadHub {
    /// Wraps a started thread and spawns the task that forwards its events.
    pub(crate) fn spawn(
        started: quest_core::StartedThread,
        manager: ThreadManager,
        thread: Thread,
    ) -> Arc<ThreadHub> {
        let quest_core::StartedThread {
            thread_id,
            handle,
            events,
        } = started;
        let config = manager.config().clone();
        let hub = Arc::new(ThreadHub {
            thread_id,
            handle,
            manager,
            config,
            gate: tokio::sync::Mutex::new(()),
            state: Mutex::new(HubState {
                subscribers: HashMap::new(),
                status: ThreadStatus::Idle,
                current: None,
                turns: Vec::new(),
                usage_total: TokenUsage::default(),
                pending_starts: VecDeque::new(),
                thread,
                next_item: 0,
                last_error: None,
            }),
        });
        tokio::spawn(hub.clone().pump(events));
        hub
    }

    fn state(&self) -> MutexGuard<'_, HubState> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    async fn pump(self: Arc<Self>, mut events: EventStream) {
        while let Some(event) = events.recv().await {
            let stop = matches!(event.msg, EventMsg::ShutdownComplete);
            let _gate = self.gate.lock().await;
            let (out, subscribers) = {
                let mut state = self.state();
                let out = state.apply(&self.thread_id, event);
                (out, state.subscribers.values().cloned().collect::<Vec<_>>())
            };
            if let Some((client, id, result)) = out.response {
                client.respond(id, result);
            }
            for (method, params) in out.notifications {
                for client in &subscribers {
                    client.notify(method, params.clone());
                }
            }
            if stop {
                break;
            }
        }
    }

    /// Adds a client; it receives every later notification of this thread.
    pub(crate) fn subscribe(&self, client: &ClientHandle) {
        self.state().subscribers.insert(client.id, client.clone());
    }

    /// Removes a client; returns whether it was subscribed.
    pub(crate) fn unsubscribe(&self, client_id: u64) -> bool {
        self.state().subscribers.remove(&client_id).is_some()
    }

    /// Queues a `turn/start` to be answered when its turn begins, and sends the input.
    pub(crate) fn start_turn(&self, pending: PendingStart, text: String) -> bool {
        self.state().pending_starts.push_back(pending);
        let sent = self.handle.submit(Op::UserInput { text });
        if !sent {
            self.state().pending_starts.pop_back();
        }
        sent
    }

    /// The running turn's id.
    pub(crate) fn running_turn(&self) -> Option<String> {
        self.state().current.as_ref().map(|t| t.id.clone())
    }

    /// True when no turn runs.
    pub(crate) fn is_idle(&self) -> bool {
        self.state().current.is_none()
    }

    /// The thread object as it stands, with turns when asked.
    pub(crate) fn thread(&self, with_turns: bool) -> Thread {
        let state = self.state();
        let mut thread = state.thread.clone();
        thread.status = state.status.clone();
        if with_turns {
            thread.turns = state.turns.clone();
        }
        thread
    }

    /// Turns completed while loaded (oldest first).
    pub(crate) fn turns(&self) -> Vec<Turn> {
        self.state().turns.clone()
    }

    /// Updates the preview shown for the thread.
    pub(crate) fn set_preview(&self, preview: &str) {
        let mut state = self.state();
        if state.thread.preview.is_empty() {
            state.thread.preview = preview.chars().take(200).collect();
        }
    }
}

fn value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn turn_error(error: &CoreTurnError) -> TurnError {
    TurnError {
        message: error.message.clone(),
        codex_error_info: Some(codex_error_info(error)),
        additional_details: None,
        misalignment: None,
    }
}

/// Maps Quest's error class to Codex's `codexErrorInfo`.
fn codex_error_info(error: &CoreTurnError) -> Value {
    match error.kind {
        TurnErrorKind::UsageLimitReached
        | TurnErrorKind::UsageNotIncluded
        | TurnErrorKind::InsufficientQuota => json!("usageLimitExceeded"),
        TurnErrorKind::ContextLengthExceeded => json!("contextWindowExceeded"),
        TurnErrorKind::ServerOverloaded => json!("serverOverloaded"),
        TurnErrorKind::InternalServerError => json!("internalServerError"),
        TurnErrorKind::InvalidRequest | TurnErrorKind::InvalidConfig => json!("badRequest"),
        TurnErrorKind::MissingEnvVar => json!("unauthorized"),
        TurnErrorKind::RateLimited => json!("rateLimitExceeded"),
        TurnErrorKind::RetryLimit | TurnErrorKind::UnexpectedStatus => {
            json!({"responseTooManyFailedAttempts": {"httpStatusCode": null}})
        }
        TurnErrorKind::StreamDisconnected | TurnErrorKind::Incomplete => {
            json!({"responseStreamDisconnected": {"httpStatusCode": null}})
        }
        TurnErrorKind::ConnectionFailed => {
            json!({"httpConnectionFailed": {"httpStatusCode": null}})
        }
        TurnErrorKind::Internal | TurnErrorKind::MalformedEvent | TurnErrorKind::NotEventStream => {
            json!("other")
        }
    }
}

fn new_turn(id: &str, status: TurnStatus, started: i64) -> Turn {
    Turn {
        id: id.to_string(),
        root_turn_id: Some(id.to_string()),
        items: Vec::new(),
        items_view: "notLoaded".to_string(),
        status,
        error: None,
        started_at: Some(started / 1000),
        completed_at: None,
        duration_ms: None,
    }
}

impl HubState {
    fn item_id(&mut self, prefix: &str) -> String {
        self.next_item += 1;
        format!("{prefix}_{}", self.next_item)
    }

    fn apply(&mut self, thread_id: &ThreadId, event: Event) -> Outgoing {
        let thread = thread_id.to_string();
        let turn_id = event.turn_id.map(|t| t.to_string());
        let mut out = Outgoing {
            response: None,
            notifications: Vec::new(),
        };
        let now = now_ms();
        match event.msg {
            EventMsg::TurnStarted { trigger } => {
                let id = turn_id.unwrap_or_default();
                let pending = match trigger {
                    quest_core::TurnTrigger::User => self.pending_starts.pop_front(),
                    quest_core::TurnTrigger::Goal => None,
                };
                let turn = new_turn(&id, TurnStatus::InProgress, now);
                if let Some(pending) = &pending {
                    let mut answer = new_turn(&id, TurnStatus::InProgress, now);
                    answer.started_at = None;
                    out.response = Some((
                        pending.client.clone(),
                        pending.request_id.clone(),
                        json!({ "turn": answer }),
                    ));
                }
                self.status = ThreadStatus::Active {
                    active_flags: Vec::new(),
                };
                self.last_error = None;
                out.notifications.push((
                    "thread/status/changed",
                    value(&ThreadStatusChangedNotification {
                        thread_id: thread.clone(),
                        status: self.status.clone(),
                    }),
                ));
                out.notifications.push((
                    "turn/started",
                    value(&TurnNotification {
                        thread_id: thread.clone(),
                        turn,
                    }),
                ));
                let mut current = CurrentTurn {
                    id: id.clone(),
                    started_ms: now,
                    items: Vec::new(),
                    open_message: None,
                    commands: HashMap::new(),
                };
                if let Some(pending) = pending {
                    let item = ThreadItem::UserMessage {
                        id: uuid::Uuid::now_v7().to_string(),
                        client_id: pending.client_message_id,
                        content: pending.input,
                    };
                    out.notifications.push((
                        "item/started",
                        value(&ItemStartedNotification {
                            item: item.clone(),
                            thread_id: thread.clone(),
                            turn_id: id.clone(),
                            started_at_ms: now,
                        }),
                    ));
                    out.notifications.push((
                        "item/completed",
                        value(&ItemCompletedNotification {
                            item: item.clone(),
                            thread_id: thread.clone(),
                            turn_id: id,
                            completed_at_ms: now,
                        }),
                    ));
                    current.items.push(item);
                }
                self.current = Some(current);
            }
            EventMsg::AgentMessageDelta(delta) => {
                let Some(turn) = turn_id else {
                    return out;
                };
                let opened = self.current.as_ref().and_then(|c| c.open_message.clone());
                let item_id = match opened {
                    Some((id, _)) => id,
                    None => {
                        let id = self.item_id("msg");
                        out.notifications.push((
                            "item/started",
                            value(&ItemStartedNotification {
                                item: ThreadItem::agent_message(&id, ""),
                                thread_id: thread.clone(),
                                turn_id: turn.clone(),
                                started_at_ms: now,
                            }),
                        ));
                        id
                    }
                };
                if let Some(current) = self.current.as_mut() {
                    let text = current
                        .open_message
                        .get_or_insert_with(|| (item_id.clone(), String::new()));
                    text.1.push_str(&delta);
                }
                out.notifications.push((
                    "item/agentMessage/delta",
                    value(&ItemDeltaNotification {
                        thread_id: thread.clone(),
                        turn_id: turn,
                        item_id,
                        delta,
                    }),
                ));
            }
            EventMsg::AgentMessage(text) => {
                let Some(turn) = turn_id else {
                    return out;
                };
                let opened = self.current.as_mut().and_then(|c| c.open_message.take());
                let item_id = match opened {
                    Some((id, _)) => id,
                    None => {
                        let id = self.item_id("msg");
                        out.notifications.push((
                            "item/started",
                            value(&ItemStartedNotification {
                                item: ThreadItem::agent_message(&id, ""),
                                thread_id: thread.clone(),
                                turn_id: turn.clone(),
                                started_at_ms: now,
                            }),
                        ));
                        id
                    }
                };
                let item = ThreadItem::agent_message(item_id, text);
                self.push_item(&item);
                out.notifications.push((
                    "item/completed",
                    value(&ItemCompletedNotification {
                        item,
                        thread_id: thread.clone(),
                        turn_id: turn,
                        completed_at_ms: now,
                    }),
                ));
            }
            EventMsg::Reasoning(text) => {
                let Some(turn) = turn_id else {
                    return out;
                };
                let id = self.item_id("rs");
                let item = ThreadItem::Reasoning {
                    id,
                    summary: vec![text],
                    content: Vec::new(),
                };
                self.item_pair(&mut out, &thread, &turn, item, now);
            }
            EventMsg::ContextCompacted { .. } => {
                let Some(turn) = turn_id else {
                    return out;
                };
                let item = ThreadItem::ContextCompaction {
                    id: self.item_id("cc"),
                };
                self.item_pair(&mut out, &thread, &turn, item, now);
            }
            EventMsg::ExecCommandBegin { call_id, command } => {
                let Some(turn) = turn_id else {
                    return out;
                };
                let cwd = self.thread.cwd.clone();
                if let Some(current) = self.current.as_mut() {
                    current
                        .commands
                        .insert(call_id.clone(), (command.clone(), now));
                }
                out.notifications.push((
                    "item/started",
                    value(&ItemStartedNotification {
                        item: command_item(&call_id, &command, &cwd, None, None, None),
                        thread_id: thread.clone(),
                        turn_id: turn,
                        started_at_ms: now,
                    }),
                ));
            }
            EventMsg::ExecCommandEnd {
                call_id,
                command,
                output,
                exit_code,
                success,
            } => {
                let Some(turn) = turn_id else {
                    return out;
                };
                let cwd = self.thread.cwd.clone();
                let started = self
                    .current
                    .as_mut()
                    .and_then(|c| c.commands.remove(&call_id))
                    .map(|(_, at)| at);
                if started.is_none() {
                    out.notifications.push((
                        "item/started",
                        value(&ItemStartedNotification {
                            item: command_item(&call_id, &command, &cwd, None, None, None),
                            thread_id: thread.clone(),
                            turn_id: turn.clone(),
                            started_at_ms: now,
                        }),
                    ));
                }
                if !output.is_empty() {
                    out.notifications.push((
                        "item/commandExecution/outputDelta",
                        value(&ItemDeltaNotification {
                            thread_id: thread.clone(),
                            turn_id: turn.clone(),
                            item_id: call_id.clone(),
                            delta: output.clone(),
                        }),
                    ));
                }
                let status = if success {
                    ExecutionStatus::Completed
                } else {
                    ExecutionStatus::Failed
                };
                let item = command_item(
                    &call_id,
                    &command,
                    &cwd,
                    Some((output, status)),
                    exit_code,
                    started.map(|at| now - at),
                );
                self.push_item(&item);
                out.notifications.push((
                    "item/completed",
                    value(&ItemCompletedNotification {
                        item,
                        thread_id: thread.clone(),
                        turn_id: turn,
                        completed_at_ms: now,
                    }),
                ));
            }
            EventMsg::PatchApplied {
                call_id,
                changes,
                status,
                message: _,
            } => {
                let Some(turn) = turn_id else {
                    return out;
                };
                let changes: Vec<FileUpdateChange> = changes
                    .into_iter()
                    .map(|c| FileUpdateChange {
                        path: c.path,
                        kind: match c.kind {
                            ExecChangeKind::Add => PatchChangeKind::Add,
                            ExecChangeKind::Delete => PatchChangeKind::Delete,
                            ExecChangeKind::Update => PatchChangeKind::Update { move_path: None },
                        },
                        diff: String::new(),
                    })
                    .collect();
                let started = ThreadItem::FileChange {
                    id: call_id.clone(),
                    changes: changes.clone(),
                    status: ExecutionStatus::InProgress,
                };
                out.notifications.push((
                    "item/started",
                    value(&ItemStartedNotification {
                        item: started,
                        thread_id: thread.clone(),
                        turn_id: turn.clone(),
                        started_at_ms: now,
                    }),
                ));
                let item = ThreadItem::FileChange {
                    id: call_id,
                    changes,
                    status: match status {
                        PatchApplyStatus::Completed => ExecutionStatus::Completed,
                        PatchApplyStatus::Failed => ExecutionStatus::Failed,
                    },
                };
                self.push_item(&item);
                out.notifications.push((
                    "item/completed",
                    value(&ItemCompletedNotification {
                        item,
                        thread_id: thread.clone(),
                        turn_id: turn,
                        completed_at_ms: now,
                    }),
                ));
            }
            EventMsg::Retrying {
                attempt,
                max_attempts,
                reason,
            } => {
                let Some(turn) = turn_id else {
                    return out;
                };
                out.notifications.push((
                    "error",
                    value(&ErrorNotification {
                        error: TurnError {
                            message: format!("Reconnecting... {attempt}/{max_attempts}"),
                            codex_error_info: None,
                            additional_details: Some(reason),
                            misalignment: None,
                        },
                        will_retry: true,
                        thread_id: thread.clone(),
                        turn_id: turn,
                    }),
                ));
            }
            EventMsg::Warning(message) => {
                out.notifications
                    .push(("warning", json!({"message": message, "threadId": thread})));
            }
            // Not yet sent as `mcpToolCall` items (`quest_protocol::mcp` has the item's shape).
            EventMsg::McpToolCallBegin { .. } | EventMsg::McpToolCallEnd { .. } => {}
            EventMsg::GoalUpdated(goal) => {
                out.notifications.push((
                    "thread/goal/updated",
                    json!({"threadId": thread, "turnId": turn_id, "goal": *goal}),
                ));
            }
            EventMsg::GoalCleared => {
                out.notifications
                    .push(("thread/goal/cleared", json!({"threadId": thread})));
            }
            EventMsg::TurnCompleted { usage, .. } => {
                self.usage_notification(&mut out, &thread, turn_id.as_deref(), &usage);
                self.finish_turn(&mut out, &thread, TurnStatus::Completed, None, now);
            }
            EventMsg::TurnFailed { error, usage } => {
                self.usage_notification(&mut out, &thread, turn_id.as_deref(), &usage);
                let wire = turn_error(&error);
                if let Some(turn) = &turn_id {
                    out.notifications.push((
                        "error",
                        value(&ErrorNotification {
                            error: wire.clone(),
                            will_retry: false,
                            thread_id: thread.clone(),
                            turn_id: turn.clone(),
                        }),
                    ));
                }
                self.finish_turn(&mut out, &thread, TurnStatus::Failed, Some(wire), now);
            }
            EventMsg::TurnAborted => {
                self.finish_turn(&mut out, &thread, TurnStatus::Interrupted, None, now);
            }
            EventMsg::Idle | EventMsg::ShutdownComplete => {}
        }
        out
    }

    fn push_item(&mut self, item: &ThreadItem) {
        if let Some(current) = self.current.as_mut() {
            current.items.push(item.clone());
        }
    }

    fn item_pair(
        &mut self,
        out: &mut Outgoing,
        thread: &str,
        turn: &str,
        item: ThreadItem,
        now: i64,
    ) {
        out.notifications.push((
            "item/started",
            value(&ItemStartedNotification {
                item: item.clone(),
                thread_id: thread.to_string(),
                turn_id: turn.to_string(),
                started_at_ms: now,
            }),
        ));
        self.push_item(&item);
        out.notifications.push((
            "item/completed",
            value(&ItemCompletedNotification {
                item,
                thread_id: thread.to_string(),
                turn_id: turn.to_string(),
                completed_at_ms: now,
            }),
        ));
    }

    fn usage_notification(
        &mut self,
        out: &mut Outgoing,
        thread: &str,
        turn: Option<&str>,
        usage: &TokenUsage,
    ) {
        let Some(turn) = turn else {
            return;
        };
        if usage.is_zero() {
            return;
        }
        self.usage_total.add(usage);
        out.notifications.push((
            "thread/tokenUsage/updated",
            value(&ThreadTokenUsageUpdatedNotification {
                thread_id: thread.to_string(),
                turn_id: turn.to_string(),
                token_usage: ThreadTokenUsage {
                    total: TokenUsageBreakdown::from(&self.usage_total),
                    last: TokenUsageBreakdown::from(usage),
                    model_context_window: None,
                },
            }),
        ));
    }

    fn finish_turn(
        &mut self,
        out: &mut Outgoing,
        thread: &str,
        status: TurnStatus,
        error: Option<TurnError>,
        now: i64,
    ) {
        let Some(mut current) = self.current.take() else {
            return;
        };
        if let Some((id, text)) = current.open_message.take() {
            // A stream that ended without its final message still closes the item it opened.
            let item = ThreadItem::agent_message(id, text);
            current.items.push(item.clone());
            out.notifications.push((
                "item/completed",
                value(&ItemCompletedNotification {
                    item,
                    thread_id: thread.to_string(),
                    turn_id: current.id.clone(),
                    completed_at_ms: now,
                }),
            ));
        }
        self.status = if status == TurnStatus::Failed {
            ThreadStatus::SystemError
        } else {
            ThreadStatus::Idle
        };
        self.last_error.clone_from(&error);
        out.notifications.push((
            "thread/status/changed",
            value(&ThreadStatusChangedNotification {
                thread_id: thread.to_string(),
                status: self.status.clone(),
            }),
        ));
        let mut turn = new_turn(&current.id, status, current.started_ms);
        turn.error = error;
        turn.completed_at = Some(now / 1000);
        turn.duration_ms = Some(now - current.started_ms);
        turn.items_view = "summary".to_string();
        turn.items = current
            .items
            .iter()
            .filter(|i| matches!(i, ThreadItem::AgentMessage { .. }))
            .cloned()
            .collect();
        out.notifications.push((
            "turn/completed",
            value(&TurnNotification {
                thread_id: thread.to_string(),
                turn: turn.clone(),
            }),
        ));
        turn.items = current.items;
        turn.items_view = "full".to_string();
        self.turns.push(turn);
        self.thread.updated_at = now / 1000;
        self.thread.recency_at = Some(now / 1000);
    }
}

fn command_item(
    call_id: &str,
    command: &str,
    cwd: &str,
    done: Option<(String, ExecutionStatus)>,
    exit_code: Option<i32>,
    duration_ms: Option<i64>,
) -> ThreadItem {
    let (output, status) = match done {
        Some((output, status)) => (Some(output), status),
        None => (None, ExecutionStatus::InProgress),
    };
    ThreadItem::CommandExecution {
        id: call_id.to_string(),
        command: command.to_string(),
        command_actions: vec![json!({"type": "unknown", "command": command})],
        cwd: cwd.to_string(),
        aggregated_output: output,
        exit_code,
        duration_ms,
        process_id: None,
        source: "agent".to_string(),
        status,
    }
}
