//! The `quest exec --json` JSONL stream, in the shape `@openai/codex-sdk` parses.
//!
//! Every line is one [`ThreadEvent`]. `goal.updated` is a Quest extension emitted only with
//! `--goal`.

use serde::{Deserialize, Serialize};

use crate::goal::ThreadGoal;

/// One line of `exec --json` output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ThreadEvent {
    /// First line: the thread id, usable with `exec resume`.
    #[serde(rename = "thread.started")]
    ThreadStarted {
        /// UUID of the thread.
        thread_id: String,
    },
    /// A turn began.
    #[serde(rename = "turn.started")]
    TurnStarted {},
    /// A turn finished; usage summed over all its requests.
    #[serde(rename = "turn.completed")]
    TurnCompleted {
        /// Summed usage.
        usage: ExecUsage,
    },
    /// A turn failed.
    #[serde(rename = "turn.failed")]
    TurnFailed {
        /// What went wrong.
        error: ExecError,
    },
    /// An item began (commands).
    #[serde(rename = "item.started")]
    ItemStarted {
        /// The item.
        item: ThreadItem,
    },
    /// An item changed.
    #[serde(rename = "item.updated")]
    ItemUpdated {
        /// The item.
        item: ThreadItem,
    },
    /// An item finished.
    #[serde(rename = "item.completed")]
    ItemCompleted {
        /// The item.
        item: ThreadItem,
    },
    /// A retry notice or a fatal error.
    #[serde(rename = "error")]
    Error {
        /// Human-readable text.
        message: String,
    },
    /// Quest extension: the goal changed.
    #[serde(rename = "goal.updated")]
    GoalUpdated {
        /// The goal after the change.
        goal: ThreadGoal,
    },
}

/// `turn.completed.usage`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecUsage {
    /// Input tokens.
    pub input_tokens: i64,
    /// Cached input tokens.
    pub cached_input_tokens: i64,
    /// Always 0 for the Responses API.
    #[serde(default)]
    pub cache_write_input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Reasoning tokens (part of output).
    #[serde(default)]
    pub reasoning_output_tokens: i64,
}

impl From<crate::TokenUsage> for ExecUsage {
    fn from(usage: crate::TokenUsage) -> Self {
        ExecUsage {
            input_tokens: usage.input_tokens,
            cached_input_tokens: usage.cached_input_tokens,
            cache_write_input_tokens: 0,
            output_tokens: usage.output_tokens,
            reasoning_output_tokens: usage.reasoning_output_tokens,
        }
    }
}

/// `turn.failed.error`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecError {
    /// Human-readable text.
    pub message: String,
}

/// An item of the exec stream: an exec-local id (`item_N`) and its details.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThreadItem {
    /// `item_0`, `item_1`, …
    pub id: String,
    /// Type-specific fields.
    #[serde(flatten)]
    pub details: ThreadItemDetails,
}

/// The item kinds Quest emits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThreadItemDetails {
    /// Final or intermediate assistant text.
    AgentMessage {
        /// The text.
        text: String,
    },
    /// Reasoning summary.
    Reasoning {
        /// The text.
        text: String,
    },
    /// A shell command.
    CommandExecution {
        /// The command line as run.
        command: String,
        /// stdout and stderr, interleaved as captured (capped).
        aggregated_output: String,
        /// Exit code; `None` while running.
        exit_code: Option<i32>,
        /// Lifecycle status.
        status: CommandExecutionStatus,
    },
    /// A patch applied (or not) to files.
    FileChange {
        /// Files touched.
        changes: Vec<FileUpdateChange>,
        /// Whether the patch applied.
        status: PatchApplyStatus,
    },
    /// A call of a tool on an MCP server.
    McpToolCall {
        /// Server name (the `[mcp_servers]` key).
        server: String,
        /// The tool's name on that server.
        tool: String,
        /// Arguments as sent (null when the model sent none).
        arguments: serde_json::Value,
        /// What the server returned (also for results with `isError`); null while running or
        /// when the call never got a result.
        result: Option<McpToolCallItemResult>,
        /// Why the call got no result; null otherwise.
        error: Option<McpToolCallItemError>,
        /// Lifecycle status.
        status: McpToolCallStatus,
    },
    /// A non-fatal warning.
    Error {
        /// Text.
        message: String,
    },
    /// The thread's history was compacted into a summary (automatically or on request). The
    /// item carries no fields, like the app-server's `contextCompaction` item.
    ContextCompaction {},
}

/// Status of a command item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandExecutionStatus {
    /// Still running.
    InProgress,
    /// Exited with code 0.
    Completed,
    /// Exited non-zero, timed out or could not start.
    Failed,
    /// Refused by policy.
    Declined,
}

/// `mcp_tool_call.result`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct McpToolCallItemResult {
    /// MCP content blocks as the server sent them.
    pub content: Vec<serde_json::Value>,
    /// `structuredContent`, or null.
    pub structured_content: Option<serde_json::Value>,
}

/// `mcp_tool_call.error`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpToolCallItemError {
    /// What went wrong (names the server).
    pub message: String,
}

/// Status of an `mcp_tool_call` item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum McpToolCallStatus {
    /// Dispatched, no answer yet.
    InProgress,
    /// The server returned a result without `isError`.
    Completed,
    /// A result with `isError`, no result at all, or declined.
    Failed,
}

/// One file in a `file_change` item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileUpdateChange {
    /// Path as written in the patch.
    pub path: String,
    /// What happened to it.
    pub kind: PatchChangeKind,
}

/// One file a patch changes, as front-ends show it (the exec JSONL `file_change` entry is its
/// [`FileUpdateChange`] part).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchFileChange {
    /// Path as written in the patch (the source, for a move).
    pub path: String,
    /// Added, deleted or updated.
    pub kind: PatchChangeKind,
    /// Destination, when the file was moved.
    pub move_path: Option<String>,
    /// What changes: the new file's content for an Add, the removed file's content for a Delete,
    /// a unified diff for an Update (empty for a plain rename). Empty when unknown (what a patch
    /// that does not apply declares).
    pub diff: String,
}

impl From<&PatchFileChange> for FileUpdateChange {
    fn from(change: &PatchFileChange) -> Self {
        FileUpdateChange {
            path: change.path.clone(),
            kind: change.kind,
        }
    }
}

/// Kind of file change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatchChangeKind {
    /// Created.
    Add,
    /// Removed.
    Delete,
    /// Modified (possibly moved).
    Update,
}

/// Status of a `file_change` item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatchApplyStatus {
    /// Applied.
    Completed,
    /// Not applied (nothing changed).
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_serialise_in_sdk_shape() {
        let lines = [
            (
                ThreadEvent::ThreadStarted {
                    thread_id: "abc".into(),
                },
                json!({"type":"thread.started","thread_id":"abc"}),
            ),
            (ThreadEvent::TurnStarted {}, json!({"type":"turn.started"})),
            (
                ThreadEvent::ItemStarted {
                    item: ThreadItem {
                        id: "item_0".into(),
                        details: ThreadItemDetails::CommandExecution {
                            command: "/bin/bash -lc 'echo hi'".into(),
                            aggregated_output: String::new(),
                            exit_code: None,
                            status: CommandExecutionStatus::InProgress,
                        },
                    },
                },
                json!({"type":"item.started","item":{"id":"item_0","type":"command_execution",
                    "command":"/bin/bash -lc 'echo hi'","aggregated_output":"","exit_code":null,
                    "status":"in_progress"}}),
            ),
            (
                ThreadEvent::ItemCompleted {
                    item: ThreadItem {
                        id: "item_1".into(),
                        details: ThreadItemDetails::FileChange {
                            changes: vec![FileUpdateChange {
                                path: "a.txt".into(),
                                kind: PatchChangeKind::Add,
                            }],
                            status: PatchApplyStatus::Completed,
                        },
                    },
                },
                json!({"type":"item.completed","item":{"id":"item_1","type":"file_change",
                    "changes":[{"path":"a.txt","kind":"add"}],"status":"completed"}}),
            ),
            (
                ThreadEvent::ItemCompleted {
                    item: ThreadItem {
                        id: "item_2".into(),
                        details: ThreadItemDetails::McpToolCall {
                            server: "everything".into(),
                            tool: "echo".into(),
                            arguments: json!({"message": "hi"}),
                            result: Some(McpToolCallItemResult {
                                content: vec![json!({"type": "text", "text": "Echo: hi"})],
                                structured_content: None,
                            }),
                            error: None,
                            status: McpToolCallStatus::Completed,
                        },
                    },
                },
                json!({"type":"item.completed","item":{"id":"item_2","type":"mcp_tool_call",
                    "server":"everything","tool":"echo","arguments":{"message":"hi"},
                    "result":{"content":[{"type":"text","text":"Echo: hi"}],"structured_content":null},
                    "error":null,"status":"completed"}}),
            ),
            (
                ThreadEvent::ItemStarted {
                    item: ThreadItem {
                        id: "item_3".into(),
                        details: ThreadItemDetails::McpToolCall {
                            server: "s".into(),
                            tool: "t".into(),
                            arguments: serde_json::Value::Null,
                            result: None,
                            error: Some(McpToolCallItemError {
                                message: "unknown MCP server `s`".into(),
                            }),
                            status: McpToolCallStatus::Failed,
                        },
                    },
                },
                json!({"type":"item.started","item":{"id":"item_3","type":"mcp_tool_call",
                    "server":"s","tool":"t","arguments":null,"result":null,
                    "error":{"message":"unknown MCP server `s`"},"status":"failed"}}),
            ),
            (
                ThreadEvent::TurnCompleted {
                    usage: ExecUsage {
                        input_tokens: 2100,
                        cached_input_tokens: 1000,
                        cache_write_input_tokens: 0,
                        output_tokens: 29,
                        reasoning_output_tokens: 0,
                    },
                },
                json!({"type":"turn.completed","usage":{"input_tokens":2100,"cached_input_tokens":1000,
                    "cache_write_input_tokens":0,"output_tokens":29,"reasoning_output_tokens":0}}),
            ),
            (
                ThreadEvent::TurnFailed {
                    error: ExecError {
                        message: "boom".into(),
                    },
                },
                json!({"type":"turn.failed","error":{"message":"boom"}}),
            ),
            (
                ThreadEvent::ItemCompleted {
                    item: ThreadItem {
                        id: "item_2".into(),
                        details: ThreadItemDetails::ContextCompaction {},
                    },
                },
                json!({"type":"item.completed","item":{"id":"item_2","type":"context_compaction"}}),
            ),
            (
                ThreadEvent::Error {
                    message: "Reconnecting... 1/5".into(),
                },
                json!({"type":"error","message":"Reconnecting... 1/5"}),
            ),
        ];
        for (event, expected) in lines {
            let value = serde_json::to_value(&event).unwrap();
            assert_eq!(value, expected);
            let back: ThreadEvent = serde_json::from_value(value).unwrap();
            assert_eq!(back, event);
        }
    }
}
