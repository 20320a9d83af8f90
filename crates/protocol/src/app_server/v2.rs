//! The app-server v2 messages Quest implements, in the wire shape of Codex 0.169 (camelCase,
//! nullable members present as `null`). Parameter types accept and ignore members Quest does not
//! use, so a newer client's extra fields never fail a request.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::goal::{GoalStatus, ThreadGoal};

// ---------------------------------------------------------------------------------------------
// Three-state optional fields.

/// Deserialises a member that distinguishes "omitted" (`None`) from `null` (`Some(None)`).
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

// ---------------------------------------------------------------------------------------------
// initialize

/// `initialize` params.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeParams {
    /// Who is connecting.
    pub client_info: ClientInfo,
    /// Opt-ins.
    #[serde(default)]
    pub capabilities: Option<InitializeCapabilities>,
}

/// `clientInfo`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    /// Client name, e.g. `codex-tui`.
    pub name: String,
    /// Display title.
    #[serde(default)]
    pub title: Option<String>,
    /// Client version.
    pub version: String,
}

/// `capabilities`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeCapabilities {
    /// The client accepts experimental methods and fields.
    #[serde(default)]
    pub experimental_api: bool,
    /// Notification methods the client does not want.
    #[serde(default)]
    pub opt_out_notification_methods: Option<Vec<String>>,
}

/// `initialize` result.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResponse {
    /// `<client>/<server version> (<os>; <arch>) …`.
    pub user_agent: String,
    /// The server's home directory (`$QUEST_HOME`).
    pub codex_home: String,
    /// `unix` or `windows`.
    pub platform_family: String,
    /// `linux`, `macos`, …
    pub platform_os: String,
}

// ---------------------------------------------------------------------------------------------
// Threads, turns, items

/// A thread as reported to clients.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Thread {
    /// Thread id (UUID v7).
    pub id: String,
    /// Always `[]` in Quest (no remote environments).
    pub environments: Vec<Value>,
    /// Unused (null).
    pub extra: Option<Value>,
    /// Same as `id`.
    pub session_id: String,
    /// Unused (null).
    pub forked_from_id: Option<String>,
    /// Unused (null).
    pub attached_to_thread_id: Option<String>,
    /// Unused (null).
    pub parent_thread_id: Option<String>,
    /// First user message (or the goal objective), `""` when none yet.
    pub preview: String,
    /// True for threads that are never recorded.
    pub ephemeral: bool,
    /// Unused (null).
    pub section: Option<Value>,
    /// Unused (null).
    pub section_entered_at: Option<i64>,
    /// Unused (null).
    pub project_id: Option<String>,
    /// Always `paginated`.
    pub history_mode: String,
    /// Provider id.
    pub model_provider: String,
    /// Model slug.
    pub model: Option<String>,
    /// Reasoning effort, when configured.
    pub reasoning_effort: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Unix seconds of the latest activity.
    pub recency_at: Option<i64>,
    /// Runtime status.
    pub status: ThreadStatus,
    /// Where the thread is recorded (Quest: the state database path), or null.
    pub path: Option<String>,
    /// Working directory.
    pub cwd: String,
    /// Server version.
    pub cli_version: String,
    /// Originator that created it.
    pub originator: Option<String>,
    /// Session source (`appServer`, `exec`, `cli`, …).
    pub source: String,
    /// Whether a user can type into it.
    pub can_accept_direct_input: Option<bool>,
    /// Thread source as given at start (`user`, …).
    pub thread_source: Option<String>,
    /// Unused (null).
    pub agent_nickname: Option<String>,
    /// Unused (null).
    pub agent_role: Option<String>,
    /// Unused (null).
    pub git_info: Option<Value>,
    /// Display name, when set.
    pub name: Option<String>,
    /// Unused (null).
    pub daybreak_enabled: Option<bool>,
    /// Turns, when asked for.
    pub turns: Vec<Turn>,
}

/// A thread's runtime status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ThreadStatus {
    /// Recorded but not running in this server.
    NotLoaded,
    /// Loaded, no turn running.
    Idle,
    /// The last turn failed.
    SystemError,
    /// A turn is running.
    #[serde(rename_all = "camelCase")]
    Active {
        /// `waitingOnApproval` / `waitingOnUserInput`.
        active_flags: Vec<String>,
    },
}

/// A turn.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Turn {
    /// Turn id.
    pub id: String,
    /// Same as `id` (Quest turns are chain roots).
    pub root_turn_id: Option<String>,
    /// Items, according to `itemsView`.
    pub items: Vec<ThreadItem>,
    /// `notLoaded`, `summary` or `full`.
    pub items_view: String,
    /// Status.
    pub status: TurnStatus,
    /// Failure, when `failed`.
    pub error: Option<TurnError>,
    /// Unix seconds.
    pub started_at: Option<i64>,
    /// Unix seconds.
    pub completed_at: Option<i64>,
    /// Duration in ms.
    pub duration_ms: Option<i64>,
}

/// Turn status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TurnStatus {
    /// Finished normally.
    Completed,
    /// Stopped by an interrupt.
    Interrupted,
    /// Ended with an error.
    Failed,
    /// Running.
    InProgress,
}

/// Why a turn failed (also the `error` notification's payload).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TurnError {
    /// User-facing message.
    pub message: String,
    /// `usageLimitExceeded`, `internalServerError`, … (string or object form).
    pub codex_error_info: Option<Value>,
    /// More detail.
    pub additional_details: Option<String>,
    /// Unused (null).
    pub misalignment: Option<Value>,
}

/// One input element of a user message.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum UserInput {
    /// Text.
    Text {
        /// The text.
        text: String,
        /// UI annotations (kept verbatim).
        #[serde(default)]
        text_elements: Vec<Value>,
    },
    /// An image by URL.
    Image {
        /// URL or data URL.
        #[serde(default)]
        url: Option<String>,
    },
    /// A local image file.
    LocalImage {
        /// Path.
        path: String,
    },
    /// A skill reference.
    Skill {
        /// Name.
        name: String,
        /// Path.
        path: String,
    },
    /// A mention.
    Mention {
        /// Name.
        name: String,
        /// Path.
        path: String,
    },
}

/// A thread item.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ThreadItem {
    /// What the user sent.
    #[serde(rename_all = "camelCase")]
    UserMessage {
        /// Item id.
        id: String,
        /// Client's id for the message.
        client_id: Option<String>,
        /// Content.
        content: Vec<UserInput>,
    },
    /// Assistant text.
    #[serde(rename_all = "camelCase")]
    AgentMessage {
        /// Item id.
        id: String,
        /// Full text (empty at `item/started`).
        text: String,
        /// Unused (null).
        phase: Option<String>,
        /// Unused (null).
        moderation: Option<Value>,
        /// Unused (null).
        memory_citation: Option<Value>,
        /// Unused (null).
        delivery: Option<Value>,
        /// Unused (null).
        questions: Option<Vec<Value>>,
    },
    /// Reasoning summary.
    Reasoning {
        /// Item id.
        id: String,
        /// Summary parts.
        summary: Vec<String>,
        /// Raw reasoning parts.
        content: Vec<String>,
    },
    /// A shell command.
    #[serde(rename_all = "camelCase")]
    CommandExecution {
        /// Item id (the tool call id).
        id: String,
        /// Command as displayed.
        command: String,
        /// Parsed actions (`unknown` in Quest).
        command_actions: Vec<Value>,
        /// Working directory.
        cwd: String,
        /// Output so far.
        aggregated_output: Option<String>,
        /// Exit code.
        exit_code: Option<i32>,
        /// Duration.
        duration_ms: Option<i64>,
        /// Unused (null).
        process_id: Option<String>,
        /// `agent`.
        source: String,
        /// Status.
        status: ExecutionStatus,
    },
    /// A patch.
    #[serde(rename_all = "camelCase")]
    FileChange {
        /// Item id (the tool call id).
        id: String,
        /// Files.
        changes: Vec<FileUpdateChange>,
        /// Status.
        status: ExecutionStatus,
    },
    /// The thread's history was compacted into a summary.
    ContextCompaction {
        /// Item id.
        id: String,
    },
    /// A call of a tool on an MCP server (see [`crate::mcp::McpToolCallThreadItem`]).
    #[serde(rename_all = "camelCase")]
    McpToolCall {
        /// Item id (the tool call id).
        id: String,
        /// Server name.
        server: String,
        /// The tool's name on the server.
        tool: String,
        /// Lifecycle status.
        status: crate::mcp::McpToolCallThreadItemStatus,
        /// Arguments as sent.
        arguments: Value,
        /// What the server returned, when it did.
        result: Option<crate::mcp::McpToolCallThreadItemResult>,
        /// Why the call got no result.
        error: Option<crate::mcp::McpToolCallThreadItemError>,
        /// How long the call took, once finished.
        duration_ms: Option<i64>,
    },
}

impl From<crate::mcp::McpToolCallThreadItem> for ThreadItem {
    fn from(item: crate::mcp::McpToolCallThreadItem) -> Self {
        ThreadItem::McpToolCall {
            id: item.id,
            server: item.server,
            tool: item.tool,
            status: item.status,
            arguments: item.arguments,
            result: item.result,
            error: item.error,
            duration_ms: item.duration_ms,
        }
    }
}

impl ThreadItem {
    /// The item id.
    pub fn id(&self) -> &str {
        match self {
            ThreadItem::UserMessage { id, .. }
            | ThreadItem::AgentMessage { id, .. }
            | ThreadItem::Reasoning { id, .. }
            | ThreadItem::CommandExecution { id, .. }
            | ThreadItem::FileChange { id, .. }
            | ThreadItem::McpToolCall { id, .. }
            | ThreadItem::ContextCompaction { id } => id,
        }
    }

    /// An agent message item.
    pub fn agent_message(id: impl Into<String>, text: impl Into<String>) -> Self {
        ThreadItem::AgentMessage {
            id: id.into(),
            text: text.into(),
            phase: None,
            moderation: None,
            memory_citation: None,
            delivery: None,
            questions: None,
        }
    }
}

/// Status of a command or patch item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExecutionStatus {
    /// Running.
    InProgress,
    /// Done.
    Completed,
    /// Failed.
    Failed,
    /// Refused by the user.
    Declined,
}

/// One file of a patch item.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileUpdateChange {
    /// Path.
    pub path: String,
    /// Kind.
    pub kind: PatchChangeKind,
    /// Unified diff (may be empty).
    pub diff: String,
}

/// Kind of file change.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum PatchChangeKind {
    /// Created.
    Add,
    /// Removed.
    Delete,
    /// Modified, maybe moved.
    Update {
        /// New path when moved.
        move_path: Option<String>,
    },
}

/// Token usage of a thread.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ThreadTokenUsage {
    /// Sum over the thread.
    pub total: TokenUsageBreakdown,
    /// The latest response.
    pub last: TokenUsageBreakdown,
    /// Context window, when known.
    pub model_context_window: Option<i64>,
}

/// Token counts.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsageBreakdown {
    /// Total.
    pub total_tokens: i64,
    /// Input.
    pub input_tokens: i64,
    /// Cached input.
    pub cached_input_tokens: i64,
    /// Cache writes (0).
    pub cache_write_input_tokens: i64,
    /// Output.
    pub output_tokens: i64,
    /// Reasoning output.
    pub reasoning_output_tokens: i64,
}

impl From<&crate::TokenUsage> for TokenUsageBreakdown {
    fn from(u: &crate::TokenUsage) -> Self {
        TokenUsageBreakdown {
            total_tokens: u.total_tokens,
            input_tokens: u.input_tokens,
            cached_input_tokens: u.cached_input_tokens,
            cache_write_input_tokens: 0,
            output_tokens: u.output_tokens,
            reasoning_output_tokens: u.reasoning_output_tokens,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Thread methods

/// `thread/start` params (members Quest does not use are ignored).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadStartParams {
    /// Model override.
    #[serde(default)]
    pub model: Option<String>,
    /// Provider override.
    #[serde(default)]
    pub model_provider: Option<String>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<String>,
    /// `read-only`, `workspace-write`, `danger-full-access`.
    #[serde(default)]
    pub sandbox: Option<String>,
    /// Approval policy (string form).
    #[serde(default)]
    pub approval_policy: Option<Value>,
    /// `key → value` config overrides.
    #[serde(default)]
    pub config: Option<serde_json::Map<String, Value>>,
    /// Never record the thread.
    #[serde(default)]
    pub ephemeral: Option<bool>,
    /// Replaces the base instructions.
    #[serde(default)]
    pub base_instructions: Option<String>,
    /// Extra developer instructions.
    #[serde(default)]
    pub developer_instructions: Option<String>,
    /// Thread source label (`user`, `thread_title`, …).
    #[serde(default)]
    pub thread_source: Option<String>,
}

/// `thread/start` and `thread/resume` result.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadStartResponse {
    /// The thread.
    pub thread: Thread,
    /// Model.
    pub model: String,
    /// Provider.
    pub model_provider: String,
    /// Unused (null).
    pub service_tier: Option<String>,
    /// `[]`.
    pub disabled_plugin_ids: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// `[cwd]`.
    pub runtime_workspace_roots: Vec<String>,
    /// `[]`.
    pub instruction_sources: Vec<String>,
    /// `never` (Quest asks for no approvals yet).
    pub approval_policy: String,
    /// `user`.
    pub approvals_reviewer: String,
    /// Sandbox policy object.
    pub sandbox: Value,
    /// Unused (null).
    pub active_permission_profile: Option<Value>,
    /// Reasoning effort.
    pub reasoning_effort: Option<String>,
    /// `explicitRequestOnly`.
    pub multi_agent_mode: String,
}

/// `thread/resume` params.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadResumeParams {
    /// Thread to resume.
    pub thread_id: String,
    /// Leave `thread.turns` empty.
    #[serde(default)]
    pub exclude_turns: bool,
}

/// Params naming a thread (`thread/read`, `thread/unsubscribe`, `thread/goal/get`, …).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadIdParams {
    /// The thread.
    pub thread_id: String,
    /// `thread/read`: include turns.
    #[serde(default)]
    pub include_turns: bool,
}

/// `thread/list` params.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadListParams {
    /// Opaque cursor from a previous page.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Page size (default 25, at most 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only archived threads (Quest has none).
    #[serde(default)]
    pub archived: Option<bool>,
    /// Only these providers (empty = all).
    #[serde(default)]
    pub model_providers: Option<Vec<String>>,
    /// Only these source kinds (empty = all).
    #[serde(default)]
    pub source_kinds: Option<Vec<String>>,
    /// Substring of the preview.
    #[serde(default)]
    pub search_term: Option<String>,
    /// Leave out these ids.
    #[serde(default)]
    pub excluded_thread_ids: Option<Vec<String>>,
    /// Only threads of this working directory (string or list).
    #[serde(default)]
    pub cwd: Option<Value>,
}

/// `thread/list` result.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadListResponse {
    /// Threads, newest first.
    pub data: Vec<Thread>,
    /// `{}`.
    pub read_states: serde_json::Map<String, Value>,
    /// Next page, when more exist.
    pub next_cursor: Option<String>,
    /// Unused (null).
    pub backwards_cursor: Option<String>,
}

/// `thread/turns/list` params.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadTurnsListParams {
    /// The thread.
    pub thread_id: String,
    /// Opaque cursor.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<u32>,
    /// `asc` / `desc` (default `desc`, newest first).
    #[serde(default)]
    pub sort_direction: Option<String>,
    /// `notLoaded`, `summary` (default) or `full`.
    #[serde(default)]
    pub items_view: Option<String>,
}

/// `thread/items/list` params.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadItemsListParams {
    /// The thread.
    pub thread_id: String,
    /// A cursor from an earlier page, or `{"type": "item", "itemId": …}` (needs `turnId`).
    #[serde(default)]
    pub cursor: Option<Value>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<u32>,
    /// `asc` (default, oldest first) / `desc`.
    #[serde(default)]
    pub sort_direction: Option<String>,
    /// Only the items of this turn.
    #[serde(default)]
    pub turn_id: Option<String>,
}

/// `thread/turns/list` result.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadTurnsListResponse {
    /// Turns.
    pub data: Vec<Turn>,
    /// Next page.
    pub next_cursor: Option<String>,
    /// Unused (null).
    pub backwards_cursor: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Turn methods

/// `turn/start` params.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnStartParams {
    /// The thread.
    pub thread_id: String,
    /// The user message.
    pub input: Vec<UserInput>,
    /// The client's id for the message.
    #[serde(default)]
    pub client_user_message_id: Option<String>,
}

/// `turn/start` result.
#[derive(Clone, Debug, Serialize)]
pub struct TurnStartResponse {
    /// The new turn (`inProgress`).
    pub turn: Turn,
}

/// `thread/compact/start` params.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadCompactStartParams {
    /// The loaded thread whose history to compact.
    pub thread_id: String,
}

/// `turn/interrupt` params.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnInterruptParams {
    /// The thread.
    pub thread_id: String,
    /// The turn to interrupt.
    pub turn_id: String,
}

// ---------------------------------------------------------------------------------------------
// Goals

/// Who asked for a goal change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GoalMutationOrigin {
    /// A person (writes a model-visible record).
    User,
    /// Automation.
    Automatic,
}

/// `thread/goal/set` params, with Quest's experimental budgets.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadGoalSetParams {
    /// The thread.
    pub thread_id: String,
    /// New objective; `None`/null = keep.
    #[serde(default)]
    pub objective: Option<String>,
    /// Requested status; `None`/null = keep (or `active` on create).
    #[serde(default)]
    pub status: Option<GoalStatus>,
    /// Omitted = keep, null = clear, number = set.
    #[serde(default, deserialize_with = "nullable")]
    pub token_budget: Option<Option<i64>>,
    /// Who asked.
    #[serde(default)]
    pub origin: Option<GoalMutationOrigin>,
    /// Quest (experimental): wall-clock budget, same three states.
    #[serde(default, deserialize_with = "nullable")]
    pub time_budget_seconds: Option<Option<i64>>,
    /// Quest (experimental): turn budget, same three states.
    #[serde(default, deserialize_with = "nullable")]
    pub turn_budget: Option<Option<i64>>,
    /// Quest (experimental): resume by itself when the usage window resets.
    #[serde(default)]
    pub auto_resume_at_reset: Option<bool>,
}

/// `thread/goal/clear` params.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadGoalClearParams {
    /// The thread.
    pub thread_id: String,
    /// Who asked.
    #[serde(default)]
    pub origin: Option<GoalMutationOrigin>,
}

/// `thread/goal/get` and `thread/goal/set` result.
#[derive(Clone, Debug, Serialize)]
pub struct ThreadGoalResponse {
    /// The goal (`null` for get without a goal).
    pub goal: Option<ThreadGoal>,
}

/// `thread/goal/clear` result.
#[derive(Clone, Debug, Serialize)]
pub struct ThreadGoalClearResponse {
    /// False when there was no goal.
    pub cleared: bool,
}

/// Quest (experimental) `thread/goal/log` params: the audit trail.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadGoalLogParams {
    /// The thread.
    pub thread_id: String,
    /// Most entries to return (default 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<i64>,
}

// ---------------------------------------------------------------------------------------------
// Notifications

/// `thread/started`.
#[derive(Clone, Debug, Serialize)]
pub struct ThreadStartedNotification {
    /// The thread.
    pub thread: Thread,
}

/// `thread/status/changed`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadStatusChangedNotification {
    /// The thread.
    pub thread_id: String,
    /// New status.
    pub status: ThreadStatus,
}

/// `turn/started` and `turn/completed`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnNotification {
    /// The thread.
    pub thread_id: String,
    /// The turn.
    pub turn: Turn,
}

/// `item/started`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemStartedNotification {
    /// The item.
    pub item: ThreadItem,
    /// The thread.
    pub thread_id: String,
    /// The turn.
    pub turn_id: String,
    /// Unix ms.
    pub started_at_ms: i64,
}

/// `item/completed`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemCompletedNotification {
    /// The item.
    pub item: ThreadItem,
    /// The thread.
    pub thread_id: String,
    /// The turn.
    pub turn_id: String,
    /// Unix ms.
    pub completed_at_ms: i64,
}

/// `item/agentMessage/delta` and `item/commandExecution/outputDelta`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemDeltaNotification {
    /// The thread.
    pub thread_id: String,
    /// The turn.
    pub turn_id: String,
    /// The item.
    pub item_id: String,
    /// Text to append.
    pub delta: String,
}

/// `thread/tokenUsage/updated`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadTokenUsageUpdatedNotification {
    /// The thread.
    pub thread_id: String,
    /// The turn.
    pub turn_id: String,
    /// Usage.
    pub token_usage: ThreadTokenUsage,
}

/// `thread/goal/updated`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadGoalUpdatedNotification {
    /// The thread.
    pub thread_id: String,
    /// The turn the change belongs to; null for API changes and snapshots.
    pub turn_id: Option<String>,
    /// The goal.
    pub goal: ThreadGoal,
}

/// `thread/goal/cleared`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadGoalClearedNotification {
    /// The thread.
    pub thread_id: String,
}

/// `error`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorNotification {
    /// The error.
    pub error: TurnError,
    /// True when the request is being retried.
    pub will_retry: bool,
    /// The thread.
    pub thread_id: String,
    /// The turn.
    pub turn_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn goal_set_budget_has_three_states() {
        let omitted: ThreadGoalSetParams = serde_json::from_value(json!({"threadId":"t"})).unwrap();
        assert_eq!(omitted.token_budget, None);
        let null: ThreadGoalSetParams =
            serde_json::from_value(json!({"threadId":"t","tokenBudget":null})).unwrap();
        assert_eq!(null.token_budget, Some(None));
        let set: ThreadGoalSetParams =
            serde_json::from_value(json!({"threadId":"t","tokenBudget":5})).unwrap();
        assert_eq!(set.token_budget, Some(Some(5)));
    }

    #[test]
    fn statuses_and_items_use_wire_tags() {
        assert_eq!(
            serde_json::to_value(ThreadStatus::Active {
                active_flags: vec![]
            })
            .unwrap(),
            json!({"type":"active","activeFlags":[]})
        );
        let item = ThreadItem::FileChange {
            id: "c".into(),
            changes: vec![FileUpdateChange {
                path: "a".into(),
                kind: PatchChangeKind::Update { move_path: None },
                diff: String::new(),
            }],
            status: ExecutionStatus::Completed,
        };
        assert_eq!(
            serde_json::to_value(item).unwrap(),
            json!({"type":"fileChange","id":"c","status":"completed",
                   "changes":[{"path":"a","kind":{"type":"update","move_path":null},"diff":""}]})
        );
    }
}
