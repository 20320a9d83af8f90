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
use quest_protocol::app_server::approvals::{
    COMMAND_APPROVAL_METHOD, CommandExecutionApprovalDecision,
    CommandExecutionRequestApprovalParams, CommandExecutionRequestApprovalResponse,
    FILE_CHANGE_APPROVAL_METHOD, FileChangeRequestApprovalParams,
    FileChangeRequestApprovalResponse, MCP_ELICITATION_METHOD, McpElicitationResponse,
    McpToolApprovalParams, SERVER_REQUEST_RESOLVED_METHOD, ServerRequestResolvedNotification,
};
use quest_protocol::app_server::jsonrpc::{ErrorObject, RequestId};
use quest_protocol::app_server::v2::{
    ErrorNotification, ExecutionStatus, FileUpdateChange, ItemCompletedNotification,
    ItemDeltaNotification, ItemStartedNotification, PatchChangeKind, Thread, ThreadItem,
    ThreadStatus, ThreadStatusChangedNotification, ThreadTokenUsage,
    ThreadTokenUsageUpdatedNotification, TokenUsageBreakdown, Turn, TurnError, TurnNotification,
    TurnStatus, UserInput,
};
use quest_protocol::exec_events::{
    PatchApplyStatus, PatchChangeKind as ExecChangeKind, PatchFileChange,
};
use quest_protocol::mcp::McpToolCallThreadItem;
use quest_protocol::ops::TurnErrorKind;
use quest_protocol::sandbox::{ApprovalReason, ReviewDecision};
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
    /// File changes whose `item/started` went out with their approval request.
    started_patches: HashMap<String, Vec<FileUpdateChange>>,
    /// File changes a person declined: their item is already completed.
    declined_patches: Vec<String>,
    /// MCP tool calls in flight.
    mcp_calls: HashMap<String, McpToolCallThreadItem>,
}

/// What a server→client approval request is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RequestKind {
    Command,
    FileChange,
    McpToolCall,
}

/// A server→client request waiting for a client's answer.
struct PendingRequest {
    id: RequestId,
    call_id: String,
    kind: RequestKind,
    method: &'static str,
    params: Value,
}

/// Server→client request ids, unique in the process.
static NEXT_REQUEST_ID: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);

struct HubState {
    subscribers: HashMap<u64, ClientHandle>,
    status: ThreadStatus,
    current: Option<CurrentTurn>,
    turns: Vec<Turn>,
    usage_total: TokenUsage,
    /// The model's context window, as the thread's manager knows it.
    context_window: Option<i64>,
    pending_starts: VecDeque<PendingStart>,
    thread: Thread,
    next_item: u64,
    last_error: Option<TurnError>,
    /// Approval requests sent to the clients and not yet resolved.
    requests: Vec<PendingRequest>,
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
    /// Server→client requests, sent to every subscriber after the notifications.
    requests: Vec<(RequestId, &'static str, Value)>,
}

impl Outgoing {
    /// Queues `item/started` for `item`.
    fn item_started(&mut self, thread: &str, turn: &str, item: ThreadItem, now: i64) {
        self.notifications.push((
            "item/started",
            value(&ItemStartedNotification {
                item,
                thread_id: thread.to_string(),
                turn_id: turn.to_string(),
                started_at_ms: now,
            }),
        ));
    }

    /// Queues `item/completed` for `item`.
    fn item_completed(&mut self, thread: &str, turn: &str, item: ThreadItem, now: i64) {
        self.notifications.push((
            "item/completed",
            value(&ItemCompletedNotification {
                item,
                thread_id: thread.to_string(),
                turn_id: turn.to_string(),
                completed_at_ms: now,
            }),
        ));
    }
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
                context_window: None,
                pending_starts: VecDeque::new(),
                thread,
                next_item: 0,
                last_error: None,
                requests: Vec::new(),
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
                state.context_window = self.manager.context_window();
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
            for (id, method, params) in out.requests {
                for client in &subscribers {
                    client.request(id.clone(), method, params.clone());
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

    /// Sends the approval requests still waiting to `client` (a client that joined a thread
    /// while its turn waits for a person).
    pub(crate) fn replay_requests(&self, client: &ClientHandle) {
        let state = self.state();
        for request in &state.requests {
            client.request(request.id.clone(), request.method, request.params.clone());
        }
    }

    /// A client answered server request `id`: hands the decision to the thread. Returns false
    /// when the request is not this thread's. A malformed or error answer declines: nothing
    /// runs without a clear yes.
    pub(crate) fn answer_request(
        &self,
        id: &RequestId,
        answer: Result<Value, ErrorObject>,
    ) -> bool {
        let (call_id, kind) = {
            let state = self.state();
            match state.requests.iter().find(|r| &r.id == id) {
                Some(request) => (request.call_id.clone(), request.kind),
                None => return false,
            }
        };
        let decision = match answer {
            Ok(result) => match parse_decision(kind, result) {
                Ok(decision) => decision,
                Err(err) => {
                    tracing::warn!("malformed answer to approval request {id}: {err}; declined");
                    ReviewDecision::Denied
                }
            },
            Err(error) => {
                tracing::warn!(
                    "approval request {id} answered with error {}: declined",
                    error.message
                );
                ReviewDecision::Denied
            }
        };
        let op = match kind {
            RequestKind::Command => Op::ExecApproval { call_id, decision },
            RequestKind::FileChange => Op::PatchApproval { call_id, decision },
            RequestKind::McpToolCall => Op::McpApproval { call_id, decision },
        };
        self.handle.submit(op);
        true
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

fn parse_decision(kind: RequestKind, result: Value) -> Result<ReviewDecision, serde_json::Error> {
    Ok(match kind {
        RequestKind::Command => {
            serde_json::from_value::<CommandExecutionRequestApprovalResponse>(result)?
                .decision
                .review_decision()
        }
        RequestKind::FileChange => {
            serde_json::from_value::<FileChangeRequestApprovalResponse>(result)?
                .decision
                .review_decision()
        }
        RequestKind::McpToolCall => {
            serde_json::from_value::<McpElicitationResponse>(result)?.review_decision()
        }
    })
}

/// The text a client shows for why approval is needed.
fn reason_text(reason: ApprovalReason, justification: Option<String>) -> String {
    let why = match reason {
        ApprovalReason::EscalationRequested => {
            "The model asks to run this command outside the sandbox"
        }
        ApprovalReason::SandboxDenied => {
            "The command failed in the sandbox; run it again without the sandbox?"
        }
        ApprovalReason::Untrusted => {
            "The approval policy asks before commands that are not known to be read-only"
        }
        ApprovalReason::OutsideWritableRoots => "The change writes outside the writable roots",
        ApprovalReason::McpToolCall => "The MCP tool may have side effects",
    };
    match justification {
        Some(text) if !text.trim().is_empty() => format!("{why}: {text}"),
        _ => why.to_string(),
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
            requests: Vec::new(),
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
                    started_patches: HashMap::new(),
                    declined_patches: Vec::new(),
                    mcp_calls: HashMap::new(),
                };
                if let Some(pending) = pending {
                    let item = ThreadItem::UserMessage {
                        id: uuid::Uuid::now_v7().to_string(),
                        client_id: pending.client_message_id,
                        content: pending.input,
                    };
                    out.item_started(&thread, &id, item.clone(), now);
                    out.item_completed(&thread, &id, item.clone(), now);
                    current.items.push(item);
                }
                self.current = Some(current);
            }
            EventMsg::AgentMessageDelta(delta) => {
                let Some(turn) = turn_id else {
                    return out;
                };
                let opened = self.current.as_ref().and_then(|c| c.open_message.clone());
                let item_id = self.message_id(&mut out, &thread, &turn, opened, now);
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
                let item_id = self.message_id(&mut out, &thread, &turn, opened, now);
                let item = ThreadItem::agent_message(item_id, text);
                self.complete_item(&mut out, &thread, &turn, item, now);
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
                // A command that waited for approval already has its item.
                let started_by_request = self
                    .current
                    .as_ref()
                    .is_some_and(|c| c.commands.contains_key(&call_id));
                if started_by_request {
                    return out;
                }
                if let Some(current) = self.current.as_mut() {
                    current
                        .commands
                        .insert(call_id.clone(), (command.clone(), now));
                }
                out.item_started(
                    &thread,
                    &turn,
                    command_item(&call_id, &command, &cwd, None, None, None),
                    now,
                );
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
                // A command that ends after its turn did (killed by an interrupt) was already
                // completed with the turn; a client must not see items after `turn/completed`.
                if self.current.as_ref().is_none_or(|c| c.id != turn) {
                    return out;
                }
                let cwd = self.thread.cwd.clone();
                let started = self
                    .current
                    .as_mut()
                    .and_then(|c| c.commands.remove(&call_id))
                    .map(|(_, at)| at);
                if started.is_none() {
                    out.item_started(
                        &thread,
                        &turn,
                        command_item(&call_id, &command, &cwd, None, None, None),
                        now,
                    );
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
                self.complete_item(&mut out, &thread, &turn, item, now);
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
                let changes = wire_changes(changes);
                let (declined, started_by_request) = match self.current.as_mut() {
                    Some(current) => {
                        let declined = current.declined_patches.iter().position(|c| c == &call_id);
                        if let Some(index) = declined {
                            current.declined_patches.remove(index);
                        }
                        (
                            declined.is_some(),
                            current.started_patches.remove(&call_id).is_some(),
                        )
                    }
                    None => (false, false),
                };
                if declined {
                    // Its item was completed as `declined` when the person said no.
                    return out;
                }
                if !started_by_request {
                    let started = ThreadItem::FileChange {
                        id: call_id.clone(),
                        changes: changes.clone(),
                        status: ExecutionStatus::InProgress,
                    };
                    out.item_started(&thread, &turn, started, now);
                }
                let item = ThreadItem::FileChange {
                    id: call_id,
                    changes,
                    status: match status {
                        PatchApplyStatus::Completed => ExecutionStatus::Completed,
                        PatchApplyStatus::Failed => ExecutionStatus::Failed,
                    },
                };
                self.complete_item(&mut out, &thread, &turn, item, now);
            }
            EventMsg::ExecApprovalRequest(request) => {
                let Some(turn) = turn_id else {
                    return out;
                };
                let cwd = request.cwd.display().to_string();
                let already = self
                    .current
                    .as_ref()
                    .is_some_and(|c| c.commands.contains_key(&request.call_id));
                if !already {
                    if let Some(current) = self.current.as_mut() {
                        current
                            .commands
                            .insert(request.call_id.clone(), (request.command.clone(), now));
                    }
                    out.item_started(
                        &thread,
                        &turn,
                        command_item(&request.call_id, &request.command, &cwd, None, None, None),
                        now,
                    );
                }
                let params = value(&CommandExecutionRequestApprovalParams {
                    thread_id: thread.clone(),
                    turn_id: turn,
                    item_id: request.call_id.clone(),
                    started_at_ms: now,
                    reason: Some(reason_text(request.reason, request.justification)),
                    command: Some(request.command.clone()),
                    cwd: Some(cwd),
                    command_actions: Some(vec![
                        json!({"type": "unknown", "command": request.command}),
                    ]),
                    available_decisions: Some(CommandExecutionApprovalDecision::offered()),
                });
                self.open_request(
                    &mut out,
                    &thread,
                    request.call_id,
                    RequestKind::Command,
                    params,
                );
            }
            EventMsg::PatchApprovalRequest(request) => {
                let Some(turn) = turn_id else {
                    return out;
                };
                let changes = wire_changes(request.changes);
                if let Some(current) = self.current.as_mut() {
                    current
                        .started_patches
                        .insert(request.call_id.clone(), changes.clone());
                }
                out.item_started(
                    &thread,
                    &turn,
                    ThreadItem::FileChange {
                        id: request.call_id.clone(),
                        changes,
                        status: ExecutionStatus::InProgress,
                    },
                    now,
                );
                let params = value(&FileChangeRequestApprovalParams {
                    thread_id: thread.clone(),
                    turn_id: turn,
                    item_id: request.call_id.clone(),
                    started_at_ms: now,
                    reason: Some(reason_text(request.reason, request.justification)),
                    grant_root: None,
                });
                self.open_request(
                    &mut out,
                    &thread,
                    request.call_id,
                    RequestKind::FileChange,
                    params,
                );
            }
            EventMsg::ApprovalResolved(resolved) => {
                let Some(index) = self
                    .requests
                    .iter()
                    .position(|r| r.call_id == resolved.call_id)
                else {
                    return out;
                };
                let request = self.requests.remove(index);
                out.notifications.push((
                    SERVER_REQUEST_RESOLVED_METHOD,
                    value(&ServerRequestResolvedNotification {
                        thread_id: thread.clone(),
                        request_id: request.id,
                    }),
                ));
                if !resolved.decision.is_approved()
                    && let Some(turn) = turn_id
                {
                    self.decline_item(
                        &mut out,
                        &thread,
                        &turn,
                        request.kind,
                        &resolved.call_id,
                        now,
                    );
                }
                self.set_waiting(&mut out, &thread);
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
            EventMsg::McpToolCallBegin {
                call_id,
                server,
                tool,
                arguments,
            } => {
                let Some(turn) = turn_id else {
                    return out;
                };
                let item = McpToolCallThreadItem::started(call_id.clone(), server, tool, arguments);
                if let Some(current) = self.current.as_mut() {
                    current.mcp_calls.insert(call_id, item.clone());
                }
                out.item_started(&thread, &turn, item.into(), now);
            }
            EventMsg::McpToolCallEnd {
                call_id,
                server,
                tool,
                arguments,
                result,
                is_error,
                error,
                duration_ms,
            } => {
                let Some(turn) = turn_id else {
                    return out;
                };
                let started = self
                    .current
                    .as_mut()
                    .and_then(|c| c.mcp_calls.remove(&call_id))
                    .unwrap_or_else(|| {
                        McpToolCallThreadItem::started(call_id, server, tool, arguments)
                    });
                let item: ThreadItem = started
                    .finished(result.as_ref(), is_error, error.as_deref(), duration_ms)
                    .into();
                self.complete_item(&mut out, &thread, &turn, item, now);
            }
            EventMsg::McpApprovalRequest(request) => {
                let Some(turn) = turn_id else {
                    return out;
                };
                let params = value(&McpToolApprovalParams::new(
                    thread.clone(),
                    Some(turn),
                    &request.server,
                    &request.tool,
                    &request.arguments,
                    request.description.as_deref(),
                ));
                self.open_request(
                    &mut out,
                    &thread,
                    request.call_id,
                    RequestKind::McpToolCall,
                    params,
                );
            }
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

    /// Records and queues an approval request, and marks the thread as waiting on approval.
    fn open_request(
        &mut self,
        out: &mut Outgoing,
        thread: &str,
        call_id: String,
        kind: RequestKind,
        params: Value,
    ) {
        let id =
            RequestId::Integer(NEXT_REQUEST_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let method = match kind {
            RequestKind::Command => COMMAND_APPROVAL_METHOD,
            RequestKind::FileChange => FILE_CHANGE_APPROVAL_METHOD,
            RequestKind::McpToolCall => MCP_ELICITATION_METHOD,
        };
        self.requests.push(PendingRequest {
            id: id.clone(),
            call_id,
            kind,
            method,
            params: params.clone(),
        });
        self.set_waiting(out, thread);
        out.requests.push((id, method, params));
    }

    /// Sets `activeFlags` to say whether a request waits, announcing a change.
    fn set_waiting(&mut self, out: &mut Outgoing, thread: &str) {
        if self.current.is_none() {
            return;
        }
        let flags = if self.requests.is_empty() {
            Vec::new()
        } else {
            vec!["waitingOnApproval".to_string()]
        };
        let status = ThreadStatus::Active {
            active_flags: flags,
        };
        if status == self.status {
            return;
        }
        self.status = status;
        out.notifications.push((
            "thread/status/changed",
            value(&ThreadStatusChangedNotification {
                thread_id: thread.to_string(),
                status: self.status.clone(),
            }),
        ));
    }

    /// Completes the item of a declined request with status `declined`.
    fn decline_item(
        &mut self,
        out: &mut Outgoing,
        thread: &str,
        turn: &str,
        kind: RequestKind,
        call_id: &str,
        now: i64,
    ) {
        let cwd = self.thread.cwd.clone();
        let item = match kind {
            // Core reports a declined MCP call as a failed call with its reason.
            RequestKind::McpToolCall => return,
            RequestKind::Command => {
                let Some((command, started)) = self
                    .current
                    .as_mut()
                    .and_then(|c| c.commands.remove(call_id))
                else {
                    return;
                };
                let mut item =
                    command_item(call_id, &command, &cwd, None, None, Some(now - started));
                if let ThreadItem::CommandExecution { status, .. } = &mut item {
                    *status = ExecutionStatus::Declined;
                }
                item
            }
            RequestKind::FileChange => {
                let Some(current) = self.current.as_mut() else {
                    return;
                };
                let Some(changes) = current.started_patches.remove(call_id) else {
                    return;
                };
                current.declined_patches.push(call_id.to_string());
                ThreadItem::FileChange {
                    id: call_id.to_string(),
                    changes,
                    status: ExecutionStatus::Declined,
                }
            }
        };
        self.complete_item(out, thread, turn, item, now);
    }

    /// The id of the agent message being streamed (`opened`), or of a new one announced with
    /// `item/started`.
    fn message_id(
        &mut self,
        out: &mut Outgoing,
        thread: &str,
        turn: &str,
        opened: Option<(String, String)>,
        now: i64,
    ) -> String {
        if let Some((id, _)) = opened {
            return id;
        }
        let id = self.item_id("msg");
        out.item_started(thread, turn, ThreadItem::agent_message(&id, ""), now);
        id
    }

    /// Records a finished item in the turn and queues its `item/completed`.
    fn complete_item(
        &mut self,
        out: &mut Outgoing,
        thread: &str,
        turn: &str,
        item: ThreadItem,
        now: i64,
    ) {
        self.push_item(&item);
        out.item_completed(thread, turn, item, now);
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
        out.item_started(thread, turn, item.clone(), now);
        self.complete_item(out, thread, turn, item, now);
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
                    model_context_window: self.context_window,
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
            out.item_completed(thread, &current.id, item, now);
        }
        // Commands still running when the turn ends (an interrupt) end with it, before
        // `turn/completed`.
        let mut unfinished: Vec<(String, (String, i64))> = current.commands.drain().collect();
        unfinished.sort_by_key(|(_, (_, started))| *started);
        for (call_id, (command, started)) in unfinished {
            let item = command_item(
                &call_id,
                &command,
                &self.thread.cwd,
                Some((String::new(), ExecutionStatus::Failed)),
                None,
                Some(now - started),
            );
            current.items.push(item.clone());
            out.item_completed(thread, &current.id, item, now);
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

fn wire_changes(changes: Vec<PatchFileChange>) -> Vec<FileUpdateChange> {
    changes
        .into_iter()
        .map(|c| FileUpdateChange {
            path: c.path,
            kind: match c.kind {
                ExecChangeKind::Add => PatchChangeKind::Add,
                ExecChangeKind::Delete => PatchChangeKind::Delete,
                ExecChangeKind::Update => PatchChangeKind::Update {
                    move_path: c.move_path,
                },
            },
            diff: c.diff,
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use quest_protocol::TurnId;

    fn state() -> HubState {
        let thread: Thread = serde_json::from_value(json!({
            "id": "t", "environments": [], "sessionId": "t", "preview": "", "ephemeral": false,
            "historyMode": "full", "modelProvider": "test", "createdAt": 0, "updatedAt": 0,
            "status": {"type": "idle"}, "cwd": "/w", "cliVersion": "0", "source": "appServer",
            "turns": []
        }))
        .unwrap();
        HubState {
            subscribers: HashMap::new(),
            status: ThreadStatus::Idle,
            current: None,
            turns: Vec::new(),
            usage_total: TokenUsage::default(),
            context_window: None,
            pending_starts: VecDeque::new(),
            thread,
            next_item: 0,
            last_error: None,
            requests: Vec::new(),
        }
    }

    fn methods(out: &Outgoing) -> Vec<&'static str> {
        out.notifications.iter().map(|(m, _)| *m).collect()
    }

    #[test]
    fn an_interrupted_command_completes_before_its_turn_and_never_after() {
        let thread = ThreadId::new();
        let turn = TurnId::new();
        let event = |msg| Event {
            thread_id: thread,
            turn_id: Some(turn),
            msg,
        };
        let mut hub = state();
        hub.apply(
            &thread,
            event(EventMsg::TurnStarted {
                trigger: quest_core::TurnTrigger::Goal,
            }),
        );
        hub.apply(
            &thread,
            event(EventMsg::ExecCommandBegin {
                call_id: "c1".into(),
                command: "sleep 30".into(),
            }),
        );
        let aborted = hub.apply(&thread, event(EventMsg::TurnAborted));
        assert_eq!(
            methods(&aborted),
            ["item/completed", "thread/status/changed", "turn/completed"]
        );
        let item = &aborted.notifications[0].1["item"];
        assert_eq!(item["id"], "c1");
        assert_eq!(item["status"], "failed");
        // The command's own end, arriving late, adds nothing.
        let late = hub.apply(
            &thread,
            event(EventMsg::ExecCommandEnd {
                call_id: "c1".into(),
                command: "sleep 30".into(),
                output: String::new(),
                exit_code: None,
                success: false,
            }),
        );
        assert!(late.notifications.is_empty(), "{:?}", methods(&late));
        assert_eq!(hub.turns[0].items.len(), 1);
    }
}
