//! The UI state and the reducer that changes it. Everything here is pure: server messages and key
//! events go in, and the JSON-RPC messages to send come out through [`App::take_outgoing`]. The
//! runner owns the terminal and the transport; the renderer only reads this state.

use std::collections::HashMap;

use quest_protocol::goal::{GoalReason, GoalStatus, ThreadGoal};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use serde_json::{Value, json};

use crate::composer::Composer;
use crate::format;

/// What to do once connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Startup {
    /// Start a new thread.
    New,
    /// Resume this thread.
    Resume(String),
    /// Resume the most recently updated thread.
    ResumeLast,
    /// Pick a thread to resume.
    ResumePicker,
}

/// Options for a new [`App`].
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// What to do once connected.
    pub startup: Startup,
    /// Working directory for new threads (`None` = the server's).
    pub cwd: Option<String>,
    /// Model for new threads (`None` = the server's).
    pub model: Option<String>,
    /// Offset of the local time zone from UTC, in seconds (for reset times).
    pub utc_offset_seconds: i32,
    /// Where the server runs, shown in `/status` (`in-process` or the URL).
    pub server_label: String,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            startup: Startup::New,
            cwd: None,
            model: None,
            utc_offset_seconds: 0,
            server_label: "in-process".to_string(),
        }
    }
}

/// Status of a command or patch cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Still running.
    Running,
    /// Finished successfully.
    Done,
    /// Failed.
    Failed,
    /// Refused by the user.
    Declined,
}

impl RunState {
    fn from_wire(status: Option<&str>) -> RunState {
        match status {
            Some("completed") => RunState::Done,
            Some("failed") => RunState::Failed,
            Some("declined") => RunState::Declined,
            _ => RunState::Running,
        }
    }
}

/// One file of a patch cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchFile {
    /// Path (with ` → new` for moves).
    pub path: String,
    /// `add`, `delete` or `update`.
    pub kind: String,
    /// Unified diff, possibly empty.
    pub diff: String,
    /// Added lines.
    pub added: usize,
    /// Removed lines.
    pub removed: usize,
}

/// What kind of information cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InfoKind {
    /// Neutral.
    Plain,
    /// A warning or a retry notice.
    Notice,
    /// An error.
    Error,
}

/// One entry of the chat history.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// What the user sent.
    User {
        /// Item id.
        id: String,
        /// Text.
        text: String,
    },
    /// Assistant text (Markdown).
    Assistant {
        /// Item id.
        id: String,
        /// Text so far.
        text: String,
        /// Still streaming.
        streaming: bool,
    },
    /// A reasoning summary.
    Reasoning {
        /// Item id.
        id: String,
        /// Summary text.
        text: String,
    },
    /// A shell command.
    Command {
        /// Item id.
        id: String,
        /// The command.
        command: String,
        /// Output so far.
        output: String,
        /// Exit code once done.
        exit_code: Option<i32>,
        /// Duration once done.
        duration_ms: Option<i64>,
        /// State.
        state: RunState,
    },
    /// A patch.
    Patch {
        /// Item id.
        id: String,
        /// Files.
        files: Vec<PatchFile>,
        /// State.
        state: RunState,
    },
    /// Information: a title and lines.
    Info {
        /// Kind.
        kind: InfoKind,
        /// Title line (bold).
        title: String,
        /// Further lines.
        lines: Vec<String>,
    },
    /// A table (the goal log).
    Table {
        /// Title.
        title: String,
        /// Column names.
        header: Vec<String>,
        /// Rows.
        rows: Vec<Vec<String>>,
    },
}

/// A thread offered by the resume picker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadSummary {
    /// Thread id.
    pub id: String,
    /// First message or objective.
    pub preview: String,
    /// Unix seconds.
    pub updated_at: i64,
}

/// A server→client approval request.
#[derive(Clone, Debug, PartialEq)]
pub struct Approval {
    /// The JSON-RPC id to answer.
    pub request_id: Value,
    /// `commandExecution` or `fileChange`.
    pub patch: bool,
    /// The command, for commands.
    pub command: Option<String>,
    /// Working directory, for commands.
    pub cwd: Option<String>,
    /// Why the server asks.
    pub reason: Option<String>,
    /// Files of the patch (from its `item/started`), for patches.
    pub files: Vec<PatchFile>,
    /// For an MCP tool call (`mcpServer/elicitation/request`): the server's name.
    pub mcp_server: Option<String>,
}

/// A dialog that takes the keyboard until answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Modal {
    /// `/goal <objective>` while an unfinished goal exists.
    ReplaceGoal {
        /// The new objective.
        objective: String,
        /// Selected option.
        selected: usize,
    },
    /// A resumed thread's goal is paused, blocked or usage-limited.
    ResumeGoal {
        /// Selected option.
        selected: usize,
    },
    /// `/goal edit`.
    EditGoal {
        /// The objective being edited.
        editor: Composer,
    },
    /// The server asks to run a command or apply a patch.
    Approval {
        /// The request.
        approval: Approval,
        /// Selected option.
        selected: usize,
    },
    /// `quest resume` / `/resume`.
    ThreadPicker {
        /// Threads, newest first.
        threads: Vec<ThreadSummary>,
        /// Selected row.
        selected: usize,
    },
}

impl Modal {
    /// The options of a selection dialog.
    pub fn options(&self) -> Vec<&'static str> {
        match self {
            Modal::ReplaceGoal { .. } => vec!["Replace current goal", "Cancel"],
            Modal::ResumeGoal { .. } => vec!["Resume goal", "Leave paused"],
            Modal::Approval { approval, .. } if approval.mcp_server.is_some() => vec![
                "Yes, allow it (y)",
                "Yes, and allow this tool for the session (a)",
                "No, continue without it (n)",
                "No, and stop the turn (esc)",
            ],
            Modal::Approval { approval, .. } if approval.patch => vec![
                "Yes, apply the changes (y)",
                "Yes, and don't ask again for these files this session (a)",
                "No, continue without them (n)",
                "No, and stop the turn (esc)",
            ],
            Modal::Approval { .. } => vec![
                "Yes, run it (y)",
                "Yes, and don't ask again this session (a)",
                "No, continue without running it (n)",
                "No, and stop the turn (esc)",
            ],
            Modal::EditGoal { .. } | Modal::ThreadPicker { .. } => Vec::new(),
        }
    }
}

/// Why a request was sent; decides what its answer does.
#[derive(Clone, Debug, PartialEq)]
enum Pending {
    Initialize,
    ThreadStart,
    ThreadResume,
    ThreadList {
        last: bool,
    },
    TurnStart,
    Interrupt,
    GoalGet {
        offer_resume: bool,
    },
    GoalSet(GoalAction),
    GoalClear {
        then_objective: Option<String>,
    },
    GoalLog {
        panel: bool,
    },
    /// Esc / Ctrl-C with an active goal: once the goal is paused, the turn running then is
    /// interrupted.
    PauseBeforeInterrupt,
    Other,
}

#[derive(Clone, Debug, PartialEq)]
enum GoalAction {
    Set,
    Pause,
    Resume,
    Edit,
    Budget,
}

/// A turn in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveTurn {
    /// Turn id.
    pub id: String,
    /// When it started (ms, UI clock).
    pub started_ms: i64,
}

/// A slash command.
pub struct SlashCommand {
    /// Name without the slash.
    pub name: &'static str,
    /// One-line description.
    pub description: &'static str,
}

/// Every slash command, in popup order.
pub const SLASH_COMMANDS: &[SlashCommand] = &[
    SlashCommand {
        name: "goal",
        description: "set or view the goal for a long-running task",
    },
    SlashCommand {
        name: "new",
        description: "start a new thread",
    },
    SlashCommand {
        name: "resume",
        description: "resume a saved thread",
    },
    SlashCommand {
        name: "compact",
        description: "summarize the thread so far to free context",
    },
    SlashCommand {
        name: "status",
        description: "show the thread, model, goal and token usage",
    },
    SlashCommand {
        name: "model",
        description: "show the model, or choose one for new threads",
    },
    SlashCommand {
        name: "quit",
        description: "exit Quest",
    },
];

const GOAL_USAGE: &str = "Usage: /goal [<objective>|clear|edit|pause|resume|budget|log]";

/// The whole UI state.
pub struct App {
    /// UI clock, unix ms (advanced by ticks; fixed in tests).
    pub now_ms: i64,
    /// Options given at start.
    pub options: AppOptions,
    /// The thread shown, once started.
    pub thread_id: Option<String>,
    /// Its model.
    pub model: Option<String>,
    /// Its working directory.
    pub cwd: Option<String>,
    /// History cells, oldest first.
    pub cells: Vec<Cell>,
    /// The running turn.
    pub turn: Option<ActiveTurn>,
    /// The thread's goal.
    pub goal: Option<ThreadGoal>,
    /// Tokens used by the thread.
    pub tokens_total: i64,
    /// Input tokens of the latest request (the context in use).
    pub context_used: i64,
    /// The model's context window, when the server says.
    pub context_window: Option<i64>,
    /// The composer.
    pub composer: Composer,
    /// Selected row of the slash popup.
    pub popup_selected: usize,
    /// The open dialog.
    pub modal: Option<Modal>,
    /// Approval requests waiting behind the open dialog.
    pub queued_approvals: Vec<Approval>,
    /// The goal panel is shown.
    pub show_goal_panel: bool,
    /// Recent goal transitions for the panel.
    pub goal_log: Vec<Value>,
    /// Lines scrolled up from the bottom of the history.
    pub scroll: usize,
    /// A one-line hint above the composer (e.g. "press Ctrl-C again to quit").
    pub hint: Option<String>,
    /// The user asked to quit.
    pub should_quit: bool,
    /// Connection to the server is gone.
    pub disconnected: bool,
    /// Bumped on every change; the renderer draws when it moves.
    pub revision: u64,
    quit_armed: bool,
    initialized: bool,
    next_id: i64,
    pending: HashMap<i64, Pending>,
    outgoing: Vec<Value>,
    queued_input: Vec<String>,
    offer_goal_resume: bool,
    pending_patch_files: HashMap<String, Vec<PatchFile>>,
}

fn str_of<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// `text` as diff lines that all start with `mark`.
fn prefix_lines(text: &str, mark: char) -> String {
    text.lines().map(|line| format!("{mark}{line}\n")).collect()
}

fn count_diff(diff: &str) -> (usize, usize) {
    let mut added = 0;
    let mut removed = 0;
    for line in diff.lines() {
        if line.starts_with("+++") || line.starts_with("---") {
            continue;
        }
        if line.starts_with('+') {
            added += 1;
        } else if line.starts_with('-') {
            removed += 1;
        }
    }
    (added, removed)
}

fn patch_files(changes: Option<&Value>) -> Vec<PatchFile> {
    let Some(list) = changes.and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|change| {
            let kind = change
                .get("kind")
                .and_then(|k| str_of(k, "type").or_else(|| k.as_str()))
                .unwrap_or("update")
                .to_string();
            // The protocol carries a new file's content for `add` and a removed file's content
            // for `delete`; only `update` carries a unified diff.
            let raw = str_of(change, "diff").unwrap_or_default();
            let diff = match kind.as_str() {
                "add" => prefix_lines(raw, '+'),
                "delete" => prefix_lines(raw, '-'),
                _ => raw.to_string(),
            };
            let mut path = str_of(change, "path").unwrap_or("?").to_string();
            if let Some(to) = change
                .get("kind")
                .and_then(|k| str_of(k, "move_path").or_else(|| str_of(k, "movePath")))
            {
                path = format!("{path} → {to}");
            }
            let (mut added, mut removed) = count_diff(&diff);
            if diff.is_empty() {
                added = 0;
                removed = 0;
            }
            PatchFile {
                path,
                kind,
                diff,
                added,
                removed,
            }
        })
        .collect()
}

impl App {
    /// A new UI that will follow `options.startup` once [`App::connected`] is called.
    pub fn new(options: AppOptions, now_ms: i64) -> App {
        App {
            now_ms,
            options,
            thread_id: None,
            model: None,
            cwd: None,
            cells: Vec::new(),
            turn: None,
            goal: None,
            tokens_total: 0,
            context_used: 0,
            context_window: None,
            composer: Composer::default(),
            popup_selected: 0,
            modal: None,
            queued_approvals: Vec::new(),
            show_goal_panel: false,
            goal_log: Vec::new(),
            scroll: 0,
            hint: None,
            should_quit: false,
            disconnected: false,
            revision: 0,
            quit_armed: false,
            initialized: false,
            next_id: 1,
            pending: HashMap::new(),
            outgoing: Vec::new(),
            queued_input: Vec::new(),
            offer_goal_resume: false,
            pending_patch_files: HashMap::new(),
        }
    }

    /// Messages to send, in order.
    pub fn take_outgoing(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.outgoing)
    }

    fn request(&mut self, method: &str, params: Value, purpose: Pending) {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, purpose);
        self.outgoing
            .push(json!({"id": id, "method": method, "params": params}));
    }

    fn info(&mut self, title: impl Into<String>, lines: Vec<String>) {
        self.push_cell(Cell::Info {
            kind: InfoKind::Plain,
            title: title.into(),
            lines,
        });
    }

    fn error(&mut self, title: impl Into<String>) {
        self.push_cell(Cell::Info {
            kind: InfoKind::Error,
            title: title.into(),
            lines: Vec::new(),
        });
    }

    fn push_cell(&mut self, cell: Cell) {
        self.cells.push(cell);
        self.scroll = 0;
    }

    /// Starts the session: sends `initialize`.
    pub fn connected(&mut self) {
        self.revision += 1;
        self.request(
            "initialize",
            json!({
                "clientInfo": {"name": "quest-tui", "title": "Quest", "version": env!("CARGO_PKG_VERSION")},
                "capabilities": {"experimentalApi": true},
            }),
            Pending::Initialize,
        );
    }

    /// The connection closed.
    pub fn disconnected(&mut self, why: &str) {
        self.revision += 1;
        if !self.disconnected {
            self.disconnected = true;
            self.turn = None;
            self.error(format!("Disconnected from the server: {why}"));
        }
    }

    /// Advances the UI clock.
    pub fn tick(&mut self, now_ms: i64) {
        // Only a visible clock (the working timer) needs a redraw.
        if self.turn.is_some() && now_ms / 1000 != self.now_ms / 1000 {
            self.revision += 1;
        }
        self.now_ms = now_ms;
    }

    /// Handles one message from the server.
    pub fn on_message(&mut self, message: Value) {
        self.revision += 1;
        let id = message.get("id").cloned();
        let method = str_of(&message, "method").map(str::to_string);
        match (id, method) {
            (Some(id), Some(method)) => self.on_server_request(id, &method, message.get("params")),
            (None, Some(method)) => {
                let params = message.get("params").cloned().unwrap_or(Value::Null);
                self.on_notification(&method, &params);
            }
            (Some(id), None) => {
                let Some(id) = id.as_i64() else {
                    return;
                };
                let Some(purpose) = self.pending.remove(&id) else {
                    return;
                };
                let outcome = match (message.get("result"), message.get("error")) {
                    (_, Some(error)) => Err(str_of(error, "message")
                        .unwrap_or("unknown error")
                        .to_string()),
                    (Some(result), None) => Ok(result.clone()),
                    (None, None) => Ok(Value::Null),
                };
                self.on_response(purpose, outcome);
            }
            (None, None) => {
                if let Some(error) = message.get("error") {
                    let text = str_of(error, "message").unwrap_or("unknown error");
                    self.error(format!("Server error: {text}"));
                }
            }
        }
    }

    fn on_server_request(&mut self, id: Value, method: &str, params: Option<&Value>) {
        let params = params.cloned().unwrap_or(Value::Null);
        let approval = match method {
            "item/commandExecution/requestApproval" => Approval {
                request_id: id,
                patch: false,
                command: str_of(&params, "command").map(str::to_string),
                cwd: str_of(&params, "cwd").map(str::to_string),
                reason: str_of(&params, "reason").map(str::to_string),
                files: Vec::new(),
                mcp_server: None,
            },
            "mcpServer/elicitation/request" => Approval {
                request_id: id,
                patch: false,
                command: None,
                cwd: None,
                reason: str_of(&params, "message").map(str::to_string),
                files: Vec::new(),
                mcp_server: Some(
                    str_of(&params, "serverName")
                        .unwrap_or("MCP server")
                        .to_string(),
                ),
            },
            "item/fileChange/requestApproval" => {
                let item = str_of(&params, "itemId").unwrap_or_default();
                let files = self
                    .pending_patch_files
                    .get(item)
                    .cloned()
                    .or_else(|| {
                        self.cells.iter().rev().find_map(|c| match c {
                            Cell::Patch { id, files, .. } if id == item => Some(files.clone()),
                            _ => None,
                        })
                    })
                    .unwrap_or_default();
                Approval {
                    request_id: id,
                    patch: true,
                    command: None,
                    cwd: None,
                    reason: str_of(&params, "reason").map(str::to_string),
                    files,
                    mcp_server: None,
                }
            }
            other => {
                self.outgoing.push(json!({
                    "id": id,
                    "error": {"code": -32601, "message": format!("Method not found: {other}")},
                }));
                return;
            }
        };
        if self.modal.is_none() {
            self.modal = Some(Modal::Approval {
                approval,
                selected: 0,
            });
        } else {
            self.queued_approvals.push(approval);
        }
    }

    fn answer_approval(&mut self, approval: &Approval, choice: usize) {
        let decision = match choice {
            0 => "accept",
            1 => "acceptForSession",
            2 => "decline",
            _ => "cancel",
        };
        let result = match &approval.mcp_server {
            // MCP tool calls are answered as elicitations; "for the session" rides in `_meta`.
            Some(_) => match decision {
                "accept" => json!({"action": "accept", "content": null}),
                "acceptForSession" => {
                    json!({"action": "accept", "content": null, "_meta": {"persist": "session"}})
                }
                "decline" => json!({"action": "decline", "content": null}),
                _ => json!({"action": "cancel", "content": null}),
            },
            None => json!({"decision": decision}),
        };
        self.outgoing.push(json!({
            "id": approval.request_id,
            "result": result,
        }));
        let what = if let Some(server) = &approval.mcp_server {
            format!("the {server} tool call")
        } else if approval.patch {
            "the changes".to_string()
        } else {
            approval
                .command
                .clone()
                .map_or_else(|| "the command".to_string(), |c| format!("`{c}`"))
        };
        let verdict = match decision {
            "accept" => format!("Approved {what}"),
            "acceptForSession" => format!("Approved {what} for this session"),
            "decline" => format!("Declined {what}"),
            _ => format!("Declined {what} and stopped the turn"),
        };
        self.info(verdict, Vec::new());
        self.modal = None;
        if !self.queued_approvals.is_empty() {
            let next = self.queued_approvals.remove(0);
            self.modal = Some(Modal::Approval {
                approval: next,
                selected: 0,
            });
        }
    }

    fn find_cell(&mut self, item_id: &str) -> Option<&mut Cell> {
        self.cells.iter_mut().rev().find(|c| match c {
            Cell::User { id, .. }
            | Cell::Assistant { id, .. }
            | Cell::Reasoning { id, .. }
            | Cell::Command { id, .. }
            | Cell::Patch { id, .. } => id == item_id,
            _ => false,
        })
    }

    fn on_notification(&mut self, method: &str, params: &Value) {
        match method {
            "turn/started" => {
                if let Some(id) = params.get("turn").and_then(|t| str_of(t, "id")) {
                    self.turn = Some(ActiveTurn {
                        id: id.to_string(),
                        started_ms: self.now_ms,
                    });
                }
            }
            "turn/completed" => {
                let turn = params.get("turn").cloned().unwrap_or(Value::Null);
                self.turn = None;
                if self.hint.as_deref() == Some("Interrupting…") {
                    self.hint = None;
                }
                for cell in &mut self.cells {
                    if let Cell::Assistant { streaming, .. } = cell {
                        *streaming = false;
                    }
                    if let Cell::Command { state, .. } | Cell::Patch { state, .. } = cell
                        && *state == RunState::Running
                    {
                        *state = RunState::Failed;
                    }
                }
                if str_of(&turn, "status") == Some("interrupted") {
                    self.push_cell(Cell::Info {
                        kind: InfoKind::Error,
                        title: "Interrupted. Tell the model what to do differently.".to_string(),
                        lines: Vec::new(),
                    });
                }
                self.flush_queued_input();
            }
            "item/started" | "item/completed" => {
                let completed = method == "item/completed";
                let item = params.get("item").cloned().unwrap_or(Value::Null);
                self.on_item(&item, completed);
            }
            "item/agentMessage/delta" => {
                let item_id = str_of(params, "itemId").unwrap_or_default().to_string();
                let delta = str_of(params, "delta").unwrap_or_default();
                match self.find_cell(&item_id) {
                    Some(Cell::Assistant { text, .. }) => text.push_str(delta),
                    _ => self.push_cell(Cell::Assistant {
                        id: item_id,
                        text: delta.to_string(),
                        streaming: true,
                    }),
                }
            }
            "item/reasoning/summaryTextDelta" | "item/reasoning/textDelta" => {
                let item_id = str_of(params, "itemId").unwrap_or_default().to_string();
                let delta = str_of(params, "delta").unwrap_or_default();
                match self.find_cell(&item_id) {
                    Some(Cell::Reasoning { text, .. }) => text.push_str(delta),
                    _ => self.push_cell(Cell::Reasoning {
                        id: item_id,
                        text: delta.to_string(),
                    }),
                }
            }
            "item/commandExecution/outputDelta" => {
                let item_id = str_of(params, "itemId").unwrap_or_default().to_string();
                let delta = str_of(params, "delta").unwrap_or_default();
                if let Some(Cell::Command { output, .. }) = self.find_cell(&item_id) {
                    output.push_str(delta);
                }
            }
            "thread/tokenUsage/updated" => {
                let usage = params.get("tokenUsage").cloned().unwrap_or(Value::Null);
                if let Some(total) = usage
                    .get("total")
                    .and_then(|t| t.get("totalTokens"))
                    .and_then(Value::as_i64)
                {
                    self.tokens_total = total;
                }
                if let Some(input) = usage
                    .get("last")
                    .and_then(|t| t.get("inputTokens"))
                    .and_then(Value::as_i64)
                {
                    self.context_used = input;
                }
                if let Some(window) = usage.get("modelContextWindow").and_then(Value::as_i64) {
                    self.context_window = Some(window);
                }
            }
            "thread/goal/updated" => {
                if str_of(params, "threadId") != self.thread_id.as_deref() {
                    return;
                }
                let Some(goal) = params
                    .get("goal")
                    .and_then(|g| serde_json::from_value::<ThreadGoal>(g.clone()).ok())
                else {
                    return;
                };
                self.set_goal(goal);
            }
            "thread/goal/cleared" if str_of(params, "threadId") == self.thread_id.as_deref() => {
                self.goal = None;
                self.offer_goal_resume = false;
            }
            "error" => {
                let error = params.get("error").cloned().unwrap_or(Value::Null);
                let message = str_of(&error, "message").unwrap_or("error").to_string();
                let will_retry = params
                    .get("willRetry")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if will_retry {
                    let details = str_of(&error, "additionalDetails")
                        .map(|d| vec![d.to_string()])
                        .unwrap_or_default();
                    // Successive retries of one request update one notice.
                    if let Some(Cell::Info {
                        kind: InfoKind::Notice,
                        title,
                        lines,
                    }) = self.cells.last_mut()
                        && title.starts_with("Reconnecting")
                    {
                        *title = message;
                        *lines = details;
                    } else {
                        self.push_cell(Cell::Info {
                            kind: InfoKind::Notice,
                            title: message,
                            lines: details,
                        });
                    }
                } else {
                    let lines = str_of(&error, "additionalDetails")
                        .map(|d| vec![d.to_string()])
                        .unwrap_or_default();
                    self.push_cell(Cell::Info {
                        kind: InfoKind::Error,
                        title: message,
                        lines,
                    });
                }
            }
            "serverRequest/resolved" => {
                // Another client (or the server) settled it: stop asking here.
                let Some(id) = params.get("requestId") else {
                    return;
                };
                self.queued_approvals.retain(|a| &a.request_id != id);
                if matches!(&self.modal, Some(Modal::Approval { approval, .. }) if &approval.request_id == id)
                {
                    self.modal = None;
                    if !self.queued_approvals.is_empty() {
                        let next = self.queued_approvals.remove(0);
                        self.modal = Some(Modal::Approval {
                            approval: next,
                            selected: 0,
                        });
                    }
                }
            }
            "warning" | "configWarning" => {
                let text = str_of(params, "message")
                    .or_else(|| str_of(params, "summary"))
                    .unwrap_or("warning")
                    .to_string();
                self.push_cell(Cell::Info {
                    kind: InfoKind::Notice,
                    title: format!("⚠ {text}"),
                    lines: Vec::new(),
                });
            }
            _ => {}
        }
    }

    fn on_item(&mut self, item: &Value, completed: bool) {
        let Some(id) = str_of(item, "id").map(str::to_string) else {
            return;
        };
        match str_of(item, "type").unwrap_or_default() {
            "userMessage" => {
                if self.find_cell(&id).is_some() {
                    return;
                }
                let text = item
                    .get("content")
                    .and_then(Value::as_array)
                    .map(|parts| {
                        parts
                            .iter()
                            .filter_map(|p| str_of(p, "text").or_else(|| str_of(p, "path")))
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                self.push_cell(Cell::User { id, text });
            }
            "agentMessage" => {
                let final_text = str_of(item, "text").unwrap_or_default().to_string();
                match self.find_cell(&id) {
                    Some(Cell::Assistant {
                        text, streaming, ..
                    }) => {
                        if completed {
                            if !final_text.is_empty() {
                                *text = final_text;
                            }
                            *streaming = false;
                        }
                    }
                    _ => {
                        if completed && final_text.is_empty() {
                            return;
                        }
                        self.push_cell(Cell::Assistant {
                            id,
                            text: final_text,
                            streaming: !completed,
                        });
                    }
                }
            }
            "reasoning" => {
                if !completed {
                    return;
                }
                let summary = item
                    .get("summary")
                    .and_then(Value::as_array)
                    .map(|parts| {
                        parts
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                match self.find_cell(&id) {
                    Some(Cell::Reasoning { text, .. }) => {
                        if !summary.is_empty() {
                            *text = summary;
                        }
                    }
                    _ => {
                        if !summary.trim().is_empty() {
                            self.push_cell(Cell::Reasoning { id, text: summary });
                        }
                    }
                }
            }
            "commandExecution" => {
                let command_text = str_of(item, "command").unwrap_or_default().to_string();
                let exit = item
                    .get("exitCode")
                    .and_then(Value::as_i64)
                    .map(|c| c as i32);
                let duration = item.get("durationMs").and_then(Value::as_i64);
                let aggregated = str_of(item, "aggregatedOutput").map(str::to_string);
                let new_state = RunState::from_wire(str_of(item, "status"));
                match self.find_cell(&id) {
                    Some(Cell::Command {
                        output,
                        exit_code,
                        duration_ms,
                        state,
                        ..
                    }) => {
                        if let Some(all) = aggregated {
                            *output = all;
                        }
                        *exit_code = exit.or(*exit_code);
                        *duration_ms = duration.or(*duration_ms);
                        if completed || new_state != RunState::Running {
                            *state = if completed && new_state == RunState::Running {
                                RunState::Done
                            } else {
                                new_state
                            };
                        }
                    }
                    _ => self.push_cell(Cell::Command {
                        id,
                        command: command_text,
                        output: aggregated.unwrap_or_default(),
                        exit_code: exit,
                        duration_ms: duration,
                        state: new_state,
                    }),
                }
            }
            "fileChange" => {
                let files = patch_files(item.get("changes"));
                let new_state = RunState::from_wire(str_of(item, "status"));
                self.pending_patch_files.insert(id.clone(), files.clone());
                match self.find_cell(&id) {
                    Some(Cell::Patch {
                        files: old, state, ..
                    }) => {
                        if !files.is_empty() {
                            *old = files;
                        }
                        *state = new_state;
                    }
                    _ => self.push_cell(Cell::Patch {
                        id,
                        files,
                        state: new_state,
                    }),
                }
                if completed {
                    self.pending_patch_files
                        .remove(str_of(item, "id").unwrap_or_default());
                }
            }
            "contextCompaction" if completed => self.info("Context compacted", Vec::new()),
            _ => {}
        }
    }

    fn set_goal(&mut self, goal: ThreadGoal) {
        let previous = self.goal.as_ref().map(|g| g.status);
        let status = goal.status;
        let transition = goal.last_transition.clone();
        self.goal = Some(goal);
        if self.offer_goal_resume {
            self.offer_goal_resume = false;
            self.maybe_offer_resume();
            return;
        }
        if previous.is_some() && previous != Some(status) {
            // Stops the user did not cause are worth a line in the history.
            let why = transition
                .filter(|t| t.actor != quest_protocol::goal::Actor::User)
                .map(|t| t.reason);
            if let Some(reason) = why
                && status != GoalStatus::Active
            {
                let label = format::status_label(status);
                self.info(
                    format!("Goal {label}"),
                    vec![format!("Reason: {}", reason_text(reason))],
                );
            }
        }
    }

    fn maybe_offer_resume(&mut self) {
        let Some(goal) = &self.goal else {
            return;
        };
        if matches!(
            goal.status,
            GoalStatus::Paused | GoalStatus::Blocked | GoalStatus::UsageLimited
        ) && self.modal.is_none()
        {
            self.modal = Some(Modal::ResumeGoal { selected: 0 });
        }
    }

    fn on_response(&mut self, purpose: Pending, outcome: Result<Value, String>) {
        match purpose {
            Pending::Initialize => match outcome {
                Ok(_) => {
                    self.initialized = true;
                    self.outgoing.push(json!({"method": "initialized"}));
                    match self.options.startup.clone() {
                        Startup::New => self.start_thread(),
                        Startup::Resume(id) => self.resume_thread(&id),
                        Startup::ResumeLast => self.request(
                            "thread/list",
                            json!({"limit": 1}),
                            Pending::ThreadList { last: true },
                        ),
                        Startup::ResumePicker => self.open_picker(),
                    }
                }
                Err(e) => self.error(format!("The server refused to start a session: {e}")),
            },
            Pending::ThreadStart | Pending::ThreadResume => {
                let resumed = purpose == Pending::ThreadResume;
                match outcome {
                    Ok(result) => self.thread_opened(&result, resumed),
                    Err(e) => {
                        let what = if resumed { "resume" } else { "start" };
                        self.error(format!("Failed to {what} the thread: {e}"));
                    }
                }
            }
            Pending::ThreadList { last } => match outcome {
                Ok(result) => {
                    let threads: Vec<ThreadSummary> = result
                        .get("data")
                        .and_then(Value::as_array)
                        .map(|list| {
                            list.iter()
                                .filter_map(|t| {
                                    Some(ThreadSummary {
                                        id: str_of(t, "id")?.to_string(),
                                        preview: str_of(t, "preview")
                                            .unwrap_or_default()
                                            .to_string(),
                                        updated_at: t
                                            .get("updatedAt")
                                            .and_then(Value::as_i64)
                                            .unwrap_or_default(),
                                    })
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    if threads.is_empty() {
                        self.info(
                            "No saved threads to resume",
                            vec!["Starting a new thread.".to_string()],
                        );
                        if self.thread_id.is_none() {
                            self.start_thread();
                        }
                    } else if last {
                        let id = threads[0].id.clone();
                        self.resume_thread(&id);
                    } else {
                        self.modal = Some(Modal::ThreadPicker {
                            threads,
                            selected: 0,
                        });
                    }
                }
                Err(e) => self.error(format!("Failed to list threads: {e}")),
            },
            Pending::TurnStart => {
                if let Err(e) = outcome {
                    self.error(format!("Failed to send the message: {e}"));
                }
            }
            Pending::Interrupt => {
                if let Err(e) = outcome {
                    self.error(format!("Failed to interrupt: {e}"));
                }
            }
            Pending::PauseBeforeInterrupt => {
                match outcome {
                    Ok(result) => self.goal_from_result(&result),
                    Err(e) => self.error(format!("Failed to pause task goal: {e}")),
                }
                // The turn running now: the one Esc met, or a continuation that started while
                // the pause was on its way. None when Esc came between turns and none followed.
                if let Some(turn_id) = self
                    .turn
                    .as_ref()
                    .map(|t| t.id.clone())
                    .filter(|id| !id.is_empty())
                {
                    self.send_interrupt(&turn_id);
                }
            }
            Pending::GoalGet { offer_resume } => match outcome {
                Ok(result) => {
                    match result
                        .get("goal")
                        .and_then(|g| serde_json::from_value::<ThreadGoal>(g.clone()).ok())
                    {
                        Some(goal) => {
                            self.goal = Some(goal);
                            if offer_resume && self.offer_goal_resume {
                                self.offer_goal_resume = false;
                                self.maybe_offer_resume();
                            }
                        }
                        None => {
                            self.goal = None;
                            self.offer_goal_resume = false;
                        }
                    }
                }
                Err(e) => {
                    self.offer_goal_resume = false;
                    if !e.to_lowercase().contains("ephemeral") {
                        self.error(format!("Failed to read thread goal: {e}"));
                    }
                }
            },
            Pending::GoalSet(action) => match outcome {
                Ok(result) => {
                    self.goal_from_result(&result);
                    self.goal_action_done(&action);
                }
                Err(e) => {
                    let verb = match action {
                        GoalAction::Set => "set",
                        GoalAction::Edit | GoalAction::Budget => "update",
                        GoalAction::Pause | GoalAction::Resume => "update",
                    };
                    self.error(format!("Failed to {verb} thread goal: {e}"));
                }
            },
            Pending::GoalClear { then_objective } => match outcome {
                Ok(result) => {
                    let cleared = result
                        .get("cleared")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    self.goal = None;
                    match then_objective {
                        Some(objective) => self.set_new_goal(&objective),
                        None if cleared => self.info("Goal cleared", Vec::new()),
                        None => self.info(
                            "No goal to clear",
                            vec!["This thread does not currently have a goal.".to_string()],
                        ),
                    }
                }
                Err(e) => {
                    let verb = if then_objective.is_some() {
                        "replace"
                    } else {
                        "clear"
                    };
                    self.error(format!("Failed to {verb} thread goal: {e}"));
                }
            },
            Pending::GoalLog { panel } => match outcome {
                Ok(result) => {
                    let events: Vec<Value> = result
                        .get("events")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    if panel {
                        self.goal_log = events;
                    } else {
                        self.goal_log_table(&events);
                    }
                }
                Err(e) => self.error(format!("Failed to read the goal log: {e}")),
            },
            Pending::Other => {
                if let Err(e) = outcome {
                    self.error(format!("The server refused: {e}"));
                }
            }
        }
    }

    fn goal_from_result(&mut self, result: &Value) {
        if let Some(goal) = result
            .get("goal")
            .and_then(|g| serde_json::from_value::<ThreadGoal>(g.clone()).ok())
        {
            self.goal = Some(goal);
        }
    }

    fn goal_action_done(&mut self, action: &GoalAction) {
        let Some(goal) = self.goal.clone() else {
            return;
        };
        let label = format::status_label(goal.status);
        match action {
            GoalAction::Set | GoalAction::Edit => {
                let title = if *action == GoalAction::Set {
                    format!("Goal {label}")
                } else {
                    "Goal updated".to_string()
                };
                self.info(title, vec![format!("Objective: {}", goal.objective)]);
            }
            GoalAction::Pause | GoalAction::Resume => {
                self.info(format!("Goal {label}"), Vec::new())
            }
            GoalAction::Budget => self.info("Goal budget updated", budget_lines(&goal)),
        }
    }

    fn goal_log_table(&mut self, events: &[Value]) {
        if events.is_empty() {
            self.info(
                "Goal log",
                vec!["No goal events for this thread.".to_string()],
            );
            return;
        }
        let offset = self.options.utc_offset_seconds;
        let rows = events
            .iter()
            .map(|e| {
                let at = e.get("atMs").and_then(Value::as_i64).unwrap_or_default() / 1000;
                let from = str_of(e, "fromStatus").unwrap_or("-");
                let to = str_of(e, "toStatus").unwrap_or("-");
                vec![
                    format::clock(at, offset),
                    str_of(e, "actor").unwrap_or("?").to_string(),
                    str_of(e, "kind").unwrap_or("?").to_string(),
                    format!("{from} → {to}"),
                    str_of(e, "reason").unwrap_or("").to_string(),
                ]
            })
            .collect();
        self.push_cell(Cell::Table {
            title: "Goal log".to_string(),
            header: ["time", "actor", "event", "status", "reason"]
                .iter()
                .map(ToString::to_string)
                .collect(),
            rows,
        });
    }

    fn thread_opened(&mut self, result: &Value, resumed: bool) {
        let thread = result.get("thread").cloned().unwrap_or(Value::Null);
        let Some(id) = str_of(&thread, "id") else {
            self.error("The server answered without a thread id");
            return;
        };
        let new_thread = self.thread_id.as_deref() != Some(id);
        if new_thread && self.thread_id.is_some() {
            // Switching threads: the old one keeps running on the server, unwatched.
            if let Some(old) = self.thread_id.clone() {
                self.request(
                    "thread/unsubscribe",
                    json!({"threadId": old}),
                    Pending::Other,
                );
            }
            self.cells.clear();
            self.goal = None;
            self.turn = None;
            self.tokens_total = 0;
            self.context_used = 0;
        }
        self.thread_id = Some(id.to_string());
        self.model = str_of(result, "model")
            .map(str::to_string)
            .or_else(|| str_of(&thread, "model").map(str::to_string));
        self.cwd = str_of(result, "cwd").map(str::to_string);
        if resumed {
            let turns = thread
                .get("turns")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let preview = str_of(&thread, "preview").unwrap_or_default();
            let mut lines = vec![format!("Thread {id}")];
            if !preview.is_empty() {
                lines.push(format!("Started with: {}", one_line(preview, 80)));
            }
            lines.push(match turns.len() {
                1 => "1 earlier turn".to_string(),
                n => format!("{n} earlier turns"),
            });
            self.info("Resumed thread", lines);
            for turn in &turns {
                if let Some(items) = turn.get("items").and_then(Value::as_array) {
                    for item in items {
                        self.on_item(item, true);
                    }
                }
            }
            self.offer_goal_resume = true;
        }
        if let Some(status) = thread.get("status")
            && str_of(status, "type") == Some("active")
        {
            self.turn = Some(ActiveTurn {
                id: String::new(),
                started_ms: self.now_ms,
            });
        }
        self.request(
            "thread/goal/get",
            json!({"threadId": id}),
            Pending::GoalGet {
                offer_resume: resumed,
            },
        );
        self.flush_queued_input();
    }

    fn start_thread(&mut self) {
        let mut params = serde_json::Map::new();
        if let Some(cwd) = &self.options.cwd {
            params.insert("cwd".into(), json!(cwd));
        }
        if let Some(model) = &self.options.model {
            params.insert("model".into(), json!(model));
        }
        self.request("thread/start", Value::Object(params), Pending::ThreadStart);
    }

    fn resume_thread(&mut self, id: &str) {
        self.request(
            "thread/resume",
            json!({"threadId": id}),
            Pending::ThreadResume,
        );
    }

    fn open_picker(&mut self) {
        self.request(
            "thread/list",
            json!({"limit": 50}),
            Pending::ThreadList { last: false },
        );
    }

    fn flush_queued_input(&mut self) {
        if self.thread_id.is_none() {
            return;
        }
        let queued = std::mem::take(&mut self.queued_input);
        for text in queued {
            self.submit_text(&text);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Keys

    /// Handles pasted text (bracketed paste).
    pub fn on_paste(&mut self, text: &str) {
        self.revision += 1;
        match &mut self.modal {
            Some(Modal::EditGoal { editor }) => editor.paste(text),
            Some(_) => {}
            None => {
                self.composer.paste(text);
                self.popup_selected = 0;
            }
        }
    }

    /// Handles a key press.
    pub fn on_key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        self.revision += 1;
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let was_armed = std::mem::take(&mut self.quit_armed);
        if was_armed {
            self.hint = None;
        }
        if ctrl && key.code == KeyCode::Char('c') {
            self.ctrl_c(was_armed);
            return;
        }
        if self.modal.is_some() {
            self.modal_key(key);
            return;
        }
        if ctrl {
            match key.code {
                KeyCode::Char('d') if self.composer.is_empty() => self.should_quit = true,
                KeyCode::Char('g') => self.toggle_goal_panel(),
                KeyCode::Char('j') => self.composer.insert('\n'),
                KeyCode::Char('u') => self.composer.delete_to_line_start(),
                KeyCode::Char('w') => self.composer.delete_word(),
                KeyCode::Char('a') => self.composer.home(),
                KeyCode::Char('e') => self.composer.end(),
                _ => {}
            }
            return;
        }
        let popup = self.popup_matches();
        match key.code {
            KeyCode::Esc => self.escape(),
            KeyCode::Enter
                if key
                    .modifiers
                    .intersects(KeyModifiers::ALT | KeyModifiers::SHIFT) =>
            {
                self.composer.insert('\n');
            }
            KeyCode::Enter => {
                if let Some(cmd) = popup.get(self.popup_selected.min(popup.len().saturating_sub(1)))
                    && self.composer.text() != format!("/{}", cmd.name)
                {
                    self.composer.set(&format!("/{}", cmd.name));
                }
                let text = self.composer.submit();
                self.popup_selected = 0;
                self.submit_text(&text);
            }
            KeyCode::Tab => {
                if let Some(cmd) = popup.get(self.popup_selected.min(popup.len().saturating_sub(1)))
                {
                    self.composer.set(&format!("/{} ", cmd.name));
                    self.popup_selected = 0;
                }
            }
            KeyCode::Up if !popup.is_empty() => {
                self.popup_selected = self.popup_selected.saturating_sub(1);
            }
            KeyCode::Down if !popup.is_empty() => {
                self.popup_selected = (self.popup_selected + 1).min(popup.len() - 1);
            }
            KeyCode::Up => self.composer.up(),
            KeyCode::Down => self.composer.down(),
            KeyCode::Left => self.composer.left(),
            KeyCode::Right => self.composer.right(),
            KeyCode::Home => self.composer.home(),
            KeyCode::End => self.composer.end(),
            KeyCode::Backspace => {
                self.composer.backspace();
                self.popup_selected = 0;
            }
            KeyCode::Delete => self.composer.delete(),
            KeyCode::PageUp => self.scroll = self.scroll.saturating_add(10),
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(10),
            KeyCode::Char(ch) => {
                self.composer.insert(ch);
                self.popup_selected = 0;
            }
            _ => {}
        }
    }

    /// The slash commands matching what is typed (empty when no popup is shown).
    pub fn popup_matches(&self) -> Vec<&'static SlashCommand> {
        let text = self.composer.text();
        let Some(prefix) = text.strip_prefix('/') else {
            return Vec::new();
        };
        if prefix.contains(char::is_whitespace) {
            return Vec::new();
        }
        SLASH_COMMANDS
            .iter()
            .filter(|c| c.name.starts_with(&prefix.to_lowercase()))
            .collect()
    }

    fn ctrl_c(&mut self, was_armed: bool) {
        if self.modal.is_some() {
            self.modal_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
            return;
        }
        if self.turn.is_some() {
            self.interrupt();
            return;
        }
        if !self.composer.is_empty() {
            self.composer.clear();
            return;
        }
        if was_armed {
            self.should_quit = true;
        } else {
            self.quit_armed = true;
            self.hint = Some("Press Ctrl-C again to quit".to_string());
        }
    }

    fn escape(&mut self) {
        if !self.popup_matches().is_empty() {
            self.composer.clear();
            return;
        }
        // Between two turns of a pursued goal (the next continuation is on its way) Esc pauses
        // the goal too: the user saw it working a moment ago and means "stop".
        if self.turn.is_some() || self.goal_active() {
            self.interrupt();
        } else if self.show_goal_panel {
            self.show_goal_panel = false;
        }
    }

    fn goal_active(&self) -> bool {
        self.goal
            .as_ref()
            .is_some_and(|g| g.status == GoalStatus::Active)
    }

    /// Esc / Ctrl-C during a turn: an active goal is paused first, then the running turn
    /// interrupted.
    fn interrupt(&mut self) {
        let Some(thread) = self.thread_id.clone() else {
            return;
        };
        let turn_id = self.turn.as_ref().map(|t| t.id.clone()).unwrap_or_default();
        if self.goal_active() {
            self.request(
                "thread/goal/set",
                json!({"threadId": thread, "status": "paused", "origin": "user"}),
                Pending::PauseBeforeInterrupt,
            );
        } else if !turn_id.is_empty() {
            self.send_interrupt(&turn_id);
        } else {
            return;
        }
        if self.turn.is_some() {
            self.hint = Some("Interrupting…".to_string());
        }
    }

    fn send_interrupt(&mut self, turn_id: &str) {
        let Some(thread) = self.thread_id.clone() else {
            return;
        };
        self.request(
            "turn/interrupt",
            json!({"threadId": thread, "turnId": turn_id}),
            Pending::Interrupt,
        );
    }

    fn toggle_goal_panel(&mut self) {
        self.show_goal_panel = !self.show_goal_panel;
        if self.show_goal_panel
            && let Some(thread) = self.thread_id.clone()
            && self.goal.is_some()
        {
            self.request(
                "thread/goal/log",
                json!({"threadId": thread, "limit": 100}),
                Pending::GoalLog { panel: true },
            );
        }
    }

    fn modal_key(&mut self, key: KeyEvent) {
        let Some(modal) = self.modal.take() else {
            return;
        };
        match modal {
            Modal::EditGoal { mut editor } => match key.code {
                KeyCode::Esc => self.info("Goal edit cancelled", Vec::new()),
                KeyCode::Enter
                    if !key
                        .modifiers
                        .intersects(KeyModifiers::ALT | KeyModifiers::SHIFT) =>
                {
                    let objective = editor.text().trim().to_string();
                    if objective.is_empty() {
                        self.error("Goal objective must not be empty.");
                        self.modal = Some(Modal::EditGoal { editor });
                    } else {
                        self.edit_goal(&objective);
                    }
                }
                code => {
                    match code {
                        KeyCode::Enter => editor.insert('\n'),
                        KeyCode::Char(c) => editor.insert(c),
                        KeyCode::Backspace => editor.backspace(),
                        KeyCode::Delete => editor.delete(),
                        KeyCode::Left => editor.left(),
                        KeyCode::Right => editor.right(),
                        KeyCode::Home => editor.home(),
                        KeyCode::End => editor.end(),
                        KeyCode::Up => editor.up(),
                        KeyCode::Down => editor.down(),
                        _ => {}
                    }
                    self.modal = Some(Modal::EditGoal { editor });
                }
            },
            Modal::ThreadPicker { threads, selected } => match key.code {
                KeyCode::Esc => {
                    if self.thread_id.is_none() {
                        self.start_thread();
                    }
                }
                KeyCode::Enter => {
                    if let Some(t) = threads.get(selected) {
                        let id = t.id.clone();
                        self.resume_thread(&id);
                    }
                }
                KeyCode::Up => {
                    self.modal = Some(Modal::ThreadPicker {
                        selected: selected.saturating_sub(1),
                        threads,
                    })
                }
                KeyCode::Down => {
                    self.modal = Some(Modal::ThreadPicker {
                        selected: (selected + 1).min(threads.len().saturating_sub(1)),
                        threads,
                    })
                }
                _ => self.modal = Some(Modal::ThreadPicker { threads, selected }),
            },
            mut modal => {
                let count = modal.options().len();
                let selected = match &mut modal {
                    Modal::ReplaceGoal { selected, .. }
                    | Modal::ResumeGoal { selected }
                    | Modal::Approval { selected, .. } => selected,
                    _ => return,
                };
                let choice = match key.code {
                    KeyCode::Up => {
                        *selected = selected.saturating_sub(1);
                        None
                    }
                    KeyCode::Down => {
                        *selected = (*selected + 1).min(count - 1);
                        None
                    }
                    KeyCode::Enter => Some(*selected),
                    KeyCode::Esc => Some(count - 1),
                    KeyCode::Char(c) if c.is_ascii_digit() => {
                        let n = c.to_digit(10).unwrap_or(0) as usize;
                        (n >= 1 && n <= count).then(|| n - 1)
                    }
                    KeyCode::Char('y') if matches!(modal, Modal::Approval { .. }) => Some(0),
                    KeyCode::Char('a') if matches!(modal, Modal::Approval { .. }) => Some(1),
                    KeyCode::Char('n') if matches!(modal, Modal::Approval { .. }) => Some(2),
                    _ => None,
                };
                match choice {
                    None => self.modal = Some(modal),
                    Some(choice) => self.choose(modal, choice),
                }
            }
        }
    }

    fn choose(&mut self, modal: Modal, choice: usize) {
        match modal {
            Modal::ReplaceGoal { objective, .. } => {
                if choice == 0 {
                    self.replace_goal(&objective);
                } else {
                    self.info("Kept the current goal", Vec::new());
                }
            }
            Modal::ResumeGoal { .. } => {
                if choice == 0 {
                    self.goal_status("active", GoalAction::Resume);
                } else {
                    let label = self
                        .goal
                        .as_ref()
                        .map_or("paused", |g| format::status_label(g.status));
                    self.info(
                        format!("Goal left {label}"),
                        vec!["Resume it with /goal resume.".to_string()],
                    );
                }
            }
            Modal::Approval { approval, .. } => self.answer_approval(&approval, choice),
            Modal::EditGoal { .. } | Modal::ThreadPicker { .. } => {}
        }
    }

    // -----------------------------------------------------------------------------------------
    // Submitting

    fn submit_text(&mut self, text: &str) {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return;
        }
        if let Some(command) = trimmed.strip_prefix('/') {
            let (name, args) = command
                .split_once(char::is_whitespace)
                .map_or((command, ""), |(n, a)| (n, a.trim()));
            self.slash(&name.to_lowercase(), args, text);
            return;
        }
        let Some(thread) = self.thread_id.clone() else {
            self.queued_input.push(text.to_string());
            self.hint = Some("Queued until the thread has started".to_string());
            return;
        };
        self.request(
            "turn/start",
            json!({"threadId": thread, "input": [{"type": "text", "text": text, "text_elements": []}]}),
            Pending::TurnStart,
        );
    }

    fn slash(&mut self, name: &str, args: &str, raw: &str) {
        match name {
            "goal" => self.goal_command(args, raw),
            "new" => {
                self.start_thread();
            }
            "resume" => {
                if args.is_empty() {
                    self.open_picker();
                } else {
                    self.resume_thread(args);
                }
            }
            "status" => self.status_command(),
            "compact" => match self.thread_id.clone() {
                Some(thread) => {
                    self.request(
                        "thread/compact/start",
                        json!({"threadId": thread}),
                        Pending::Other,
                    );
                    self.info("Compacting the thread…", Vec::new());
                }
                None => self.error("No thread to compact yet"),
            },
            "model" => {
                if args.is_empty() {
                    let model = self.model.clone().unwrap_or_else(|| "unknown".to_string());
                    let mut lines = vec![format!("Model: {model}")];
                    if let Some(next) = &self.options.model
                        && Some(next) != self.model.as_ref()
                    {
                        lines.push(format!("New threads use: {next}"));
                    }
                    lines.push("Choose one for new threads with /model <name>.".to_string());
                    self.info("Model", lines);
                } else {
                    self.options.model = Some(args.to_string());
                    self.info(
                        format!("Model for new threads: {args}"),
                        vec!["Start one with /new.".to_string()],
                    );
                }
            }
            "quit" | "exit" => self.should_quit = true,
            other => self.error(format!(
                "Unknown command /{other}. Commands: {}",
                SLASH_COMMANDS
                    .iter()
                    .map(|c| format!("/{}", c.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    fn status_command(&mut self) {
        let mut lines = vec![
            format!(
                "Thread: {}",
                self.thread_id
                    .clone()
                    .unwrap_or_else(|| "(starting)".into())
            ),
            format!(
                "Model: {}",
                self.model.clone().unwrap_or_else(|| "unknown".into())
            ),
            format!("Server: {}", self.options.server_label),
        ];
        if let Some(cwd) = &self.cwd {
            lines.push(format!("Directory: {cwd}"));
        }
        lines.push(format!(
            "Tokens used: {}",
            format::tokens(self.tokens_total)
        ));
        if let Some(window) = self.context_window {
            lines.push(format!(
                "Context: {} / {}",
                format::tokens(self.context_used),
                format::tokens(window)
            ));
        }
        match &self.goal {
            Some(goal) => lines.push(format!(
                "Goal: {} ({})",
                one_line(&goal.objective, 60),
                format::status_label(goal.status)
            )),
            None => lines.push("Goal: none".to_string()),
        }
        self.info("Status", lines);
    }

    fn goal_command(&mut self, args: &str, _raw: &str) {
        let Some(thread) = self.thread_id.clone() else {
            if args.is_empty() {
                self.info(
                    GOAL_USAGE,
                    vec!["Example: /goal improve benchmark coverage".to_string()],
                );
            } else {
                self.queued_input.push(format!("/goal {args}"));
                self.hint = Some("Queued until the thread has started".to_string());
            }
            return;
        };
        let (sub, rest) = args
            .split_once(char::is_whitespace)
            .map_or((args, ""), |(s, r)| (s, r.trim()));
        match sub.to_lowercase().as_str() {
            "" => self.goal_summary(),
            "clear" if rest.is_empty() => self.request(
                "thread/goal/clear",
                json!({"threadId": thread, "origin": "user"}),
                Pending::GoalClear {
                    then_objective: None,
                },
            ),
            "pause" if rest.is_empty() => {
                if self.goal.is_none() {
                    self.no_goal();
                } else {
                    self.goal_status("paused", GoalAction::Pause);
                }
            }
            "resume" if rest.is_empty() => {
                if self.goal.is_none() {
                    self.no_goal();
                } else {
                    self.goal_status("active", GoalAction::Resume);
                }
            }
            "edit" if rest.is_empty() => match &self.goal {
                Some(goal) => {
                    let mut editor = Composer::default();
                    editor.set(&goal.objective);
                    self.modal = Some(Modal::EditGoal { editor });
                }
                None => self.info(
                    "No goal is currently set.",
                    vec!["Create a goal before editing it.".to_string()],
                ),
            },
            "budget" => self.goal_budget(&thread, rest),
            "log" if rest.is_empty() => {
                self.request(
                    "thread/goal/log",
                    json!({"threadId": thread, "limit": 100}),
                    Pending::GoalLog { panel: false },
                );
            }
            _ => {
                let objective = args.trim().to_string();
                match &self.goal {
                    Some(goal) if format::unfinished(goal.status) => {
                        self.modal = Some(Modal::ReplaceGoal {
                            objective,
                            selected: 0,
                        });
                    }
                    Some(_) => self.replace_goal(&objective),
                    None => self.set_new_goal(&objective),
                }
            }
        }
    }

    fn no_goal(&mut self) {
        self.info(GOAL_USAGE, vec!["No goal is currently set.".to_string()]);
    }

    fn goal_summary(&mut self) {
        let Some(goal) = self.goal.clone() else {
            self.no_goal();
            return;
        };
        let mut lines = vec![
            format!("Status: {}", format::status_label(goal.status)),
            format!("Objective: {}", goal.objective),
            format!("Time used: {}", format::elapsed(goal.time_used_seconds)),
            format!("Tokens used: {}", format::tokens(goal.tokens_used)),
        ];
        if let Some(budget) = goal.token_budget {
            lines.push(format!("Token budget: {}", format::tokens(budget)));
        }
        if let Some(budget) = goal.time_budget_seconds {
            lines.push(format!("Time budget: {}", format::elapsed(budget)));
        }
        if let Some(budget) = goal.turn_budget {
            lines.push(format!("Turns: {} / {budget}", goal.turns_used));
        }
        if goal.status == GoalStatus::UsageLimited
            && let Some(at) = goal.usage_limit_resets_at
        {
            lines.push(format!(
                "Usage limit resets at {}",
                format::clock(at, self.options.utc_offset_seconds)
            ));
        }
        lines.push(String::new());
        lines.push(
            match goal.status {
                GoalStatus::Active => "Commands: /goal edit, /goal pause, /goal clear",
                GoalStatus::Paused | GoalStatus::Blocked | GoalStatus::UsageLimited => {
                    "Commands: /goal edit, /goal resume, /goal clear"
                }
                GoalStatus::BudgetLimited | GoalStatus::Complete => {
                    "Commands: /goal edit, /goal clear"
                }
            }
            .to_string(),
        );
        self.info("Goal", lines);
    }

    fn goal_status(&mut self, status: &str, action: GoalAction) {
        let Some(thread) = self.thread_id.clone() else {
            return;
        };
        self.request(
            "thread/goal/set",
            json!({"threadId": thread, "status": status, "origin": "user"}),
            Pending::GoalSet(action),
        );
    }

    fn set_new_goal(&mut self, objective: &str) {
        let Some(thread) = self.thread_id.clone() else {
            return;
        };
        if objective.chars().count() > 4000 {
            self.error(format!(
                "Goal objective is too long: {} characters. Limit: 4000 characters.",
                objective.chars().count()
            ));
            return;
        }
        self.request(
            "thread/goal/set",
            json!({"threadId": thread, "objective": objective, "status": "active", "origin": "user"}),
            Pending::GoalSet(GoalAction::Set),
        );
    }

    fn replace_goal(&mut self, objective: &str) {
        let Some(thread) = self.thread_id.clone() else {
            return;
        };
        self.request(
            "thread/goal/clear",
            json!({"threadId": thread, "origin": "user"}),
            Pending::GoalClear {
                then_objective: Some(objective.to_string()),
            },
        );
    }

    fn edit_goal(&mut self, objective: &str) {
        let Some(thread) = self.thread_id.clone() else {
            return;
        };
        let mut params = json!({"threadId": thread, "objective": objective, "origin": "user"});
        if self
            .goal
            .as_ref()
            .is_some_and(|g| matches!(g.status, GoalStatus::BudgetLimited | GoalStatus::Complete))
        {
            params["status"] = json!("active");
        }
        self.request(
            "thread/goal/set",
            params,
            Pending::GoalSet(GoalAction::Edit),
        );
    }

    fn goal_budget(&mut self, thread: &str, args: &str) {
        const BUDGET_USAGE: &str =
            "Usage: /goal budget <tokens|none> [time=<2h|none>] [turns=<50|none>]";
        if self.goal.is_none() {
            self.no_goal();
            return;
        }
        if args.is_empty() {
            let goal = self.goal.clone();
            let mut lines = goal.as_ref().map(budget_lines).unwrap_or_default();
            lines.push(String::new());
            lines.push(BUDGET_USAGE.to_string());
            self.info("Goal budget", lines);
            return;
        }
        let mut params = json!({"threadId": thread, "origin": "user"});
        for word in args.split_whitespace() {
            let (key, value) = match word.split_once('=') {
                Some((k, v)) => (k.to_lowercase(), v),
                None => ("tokens".to_string(), word),
            };
            let none = value.eq_ignore_ascii_case("none");
            let parsed = match key.as_str() {
                "tokens" | "token" => {
                    if none {
                        Some(("tokenBudget", Value::Null))
                    } else {
                        format::parse_tokens(value).map(|n| ("tokenBudget", json!(n)))
                    }
                }
                "time" => {
                    if none {
                        Some(("timeBudgetSeconds", Value::Null))
                    } else {
                        format::parse_duration(value).map(|n| ("timeBudgetSeconds", json!(n)))
                    }
                }
                "turns" | "turn" => {
                    if none {
                        Some(("turnBudget", Value::Null))
                    } else {
                        value
                            .parse::<i64>()
                            .ok()
                            .filter(|n| *n > 0)
                            .map(|n| ("turnBudget", json!(n)))
                    }
                }
                _ => None,
            };
            match parsed {
                Some((field, value)) => params[field] = value,
                None => {
                    self.error(format!("Invalid budget `{word}`. {BUDGET_USAGE}"));
                    return;
                }
            }
        }
        // Raising the limit that stopped a goal brings it back, as the spec's budget rule says.
        if self
            .goal
            .as_ref()
            .is_some_and(|g| g.status == GoalStatus::BudgetLimited)
        {
            params["status"] = json!("active");
        }
        self.request(
            "thread/goal/set",
            params,
            Pending::GoalSet(GoalAction::Budget),
        );
    }
}

fn budget_lines(goal: &ThreadGoal) -> Vec<String> {
    let tokens = goal.token_budget.map_or("none".to_string(), format::tokens);
    let time = goal
        .time_budget_seconds
        .map_or("none".to_string(), format::elapsed);
    let turns = goal
        .turn_budget
        .map_or("none".to_string(), |t| t.to_string());
    vec![
        format!(
            "Tokens: {} used, budget {tokens}",
            format::tokens(goal.tokens_used)
        ),
        format!(
            "Time: {} used, budget {time}",
            format::elapsed(goal.time_used_seconds)
        ),
        format!("Turns: {} used, budget {turns}", goal.turns_used),
    ]
}

/// A human reason for an automatic goal stop.
pub fn reason_text(reason: GoalReason) -> &'static str {
    match reason {
        GoalReason::UserRequest => "you asked",
        GoalReason::Interrupt => "interrupted",
        GoalReason::ToolUpdateGoal => "the model reported it",
        GoalReason::TurnError => "a turn failed",
        GoalReason::UsageLimit => "usage limit reached",
        GoalReason::UsageLimitReset => "usage limit reset",
        GoalReason::BudgetTokens => "token budget used up",
        GoalReason::BudgetTime => "time budget used up",
        GoalReason::BudgetTurns => "turn budget used up",
        GoalReason::NoProgress => "no progress in recent turns",
        GoalReason::RepeatedBlocker => "the same blocker was reported repeatedly",
        GoalReason::EmptyResponses => "repeated empty responses",
        GoalReason::ExecutionFailures => "repeated execution failures",
        GoalReason::AwaitingInput => "waiting for input",
        GoalReason::ProcessExit => "Quest exited while the goal was active",
    }
}

/// The first line of `text`, cut to `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let first = text.lines().next().unwrap_or_default();
    if first.chars().count() > max {
        let cut: String = first.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else if text.lines().nth(1).is_some() {
        format!("{first} …")
    } else {
        first.to_string()
    }
}
