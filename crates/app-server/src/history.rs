//! A stored thread's items, rebuilt from its rollout for clients that reopen it after the turns
//! ran (`thread/resume`, `thread/turns/list`, `thread/items/list`, `thread/read`).
//!
//! The rollout keeps what was exchanged with the model; this maps it to what a user saw: the
//! messages they typed (not the context Quest adds), answers, reasoning summaries, commands with
//! their output and exit code, patches with their files, and compactions.

use std::collections::HashMap;

use quest_protocol::app_server::v2::{
    ExecutionStatus, FileUpdateChange, PatchChangeKind, ThreadItem, UserInput,
};
use quest_protocol::exec_events::PatchChangeKind as ExecChangeKind;
use quest_protocol::transcript::{TranscriptEntry, TranscriptItem};
use quest_protocol::{ContentItem, ReasoningSummary, ResponseItem};
use quest_tools::apply_patch::{ChunkLine, Hunk, UpdateChunk, declared_changes, parse_patch};
use quest_tools::shell::{CommandLine, display_command};
use serde_json::{Value, json};

/// One rebuilt item and the turn it belongs to (`None` for rows written outside a turn).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HistoryItem {
    pub(crate) turn_id: Option<String>,
    pub(crate) item: ThreadItem,
}

/// A tool call waiting for its output.
struct PendingCall {
    index: usize,
    kind: CallKind,
}

enum CallKind {
    Command,
    Patch,
}

/// Rebuilds the items of a transcript, in order. A call whose output never came (a crash or an
/// interrupt) stays `inProgress`… unless the turn ended, which the caller knows; it is reported
/// as failed here because nothing is running it any more.
pub(crate) fn items_from_transcript(entries: &[TranscriptEntry], cwd: &str) -> Vec<HistoryItem> {
    let mut out: Vec<HistoryItem> = Vec::new();
    let mut pending: HashMap<String, PendingCall> = HashMap::new();
    for (seq, entry) in entries.iter().enumerate() {
        let turn_id = entry.turn_id.clone();
        let item = match &entry.item {
            TranscriptItem::Compaction(_) => Some(ThreadItem::ContextCompaction {
                id: format!("compaction-{seq}"),
            }),
            TranscriptItem::Item(item) => match item {
                ResponseItem::Message { id, role, content } => {
                    message_item(item, id.as_deref(), role, content, seq)
                }
                ResponseItem::Reasoning { id, summary, .. } => {
                    let summary: Vec<String> = summary
                        .iter()
                        .map(|ReasoningSummary::SummaryText { text }| text.clone())
                        .filter(|text| !text.is_empty())
                        .collect();
                    (!summary.is_empty()).then(|| ThreadItem::Reasoning {
                        id: id.clone().unwrap_or_else(|| format!("reasoning-{seq}")),
                        summary,
                        content: Vec::new(),
                    })
                }
                ResponseItem::FunctionCall {
                    name,
                    arguments,
                    call_id,
                    ..
                } => call_item(name, Some(arguments), None, call_id, cwd).map(|(item, kind)| {
                    pending.insert(
                        call_id.clone(),
                        PendingCall {
                            index: out.len(),
                            kind,
                        },
                    );
                    item
                }),
                ResponseItem::CustomToolCall {
                    name,
                    input,
                    call_id,
                    ..
                } => call_item(name, None, Some(input), call_id, cwd).map(|(item, kind)| {
                    pending.insert(
                        call_id.clone(),
                        PendingCall {
                            index: out.len(),
                            kind,
                        },
                    );
                    item
                }),
                ResponseItem::FunctionCallOutput {
                    call_id: Some(call_id),
                    output,
                    ..
                }
                | ResponseItem::CustomToolCallOutput {
                    call_id, output, ..
                } => {
                    if let Some(call) = pending.remove(call_id.as_str())
                        && let Some(slot) = out.get_mut(call.index)
                    {
                        complete(&mut slot.item, &call.kind, output);
                    }
                    None
                }
                _ => None,
            },
        };
        if let Some(item) = item {
            out.push(HistoryItem { turn_id, item });
        }
    }
    // Calls that never got an output did not finish.
    for call in pending.values() {
        if let Some(slot) = out.get_mut(call.index) {
            set_status(&mut slot.item, ExecutionStatus::Failed);
        }
    }
    out
}

fn message_item(
    item: &ResponseItem,
    id: Option<&str>,
    role: &str,
    content: &[ContentItem],
    seq: usize,
) -> Option<ThreadItem> {
    let text: String = content
        .iter()
        .filter_map(|part| match part {
            ContentItem::InputText { text } | ContentItem::OutputText { text } => {
                Some(text.as_str())
            }
            ContentItem::Refusal { refusal } => Some(refusal.as_str()),
            _ => None,
        })
        .collect();
    match role {
        "user" if !quest_core::compact::is_internal_message(item) => {
            Some(ThreadItem::UserMessage {
                id: id.map_or_else(|| format!("user-{seq}"), str::to_string),
                client_id: None,
                content: vec![UserInput::Text {
                    text,
                    text_elements: Vec::new(),
                }],
            })
        }
        "assistant" if !text.is_empty() => Some(ThreadItem::AgentMessage {
            id: id.map_or_else(|| format!("msg-{seq}"), str::to_string),
            text,
            phase: None,
            moderation: None,
            memory_citation: None,
            delivery: None,
            questions: None,
        }),
        _ => None,
    }
}

/// The item a tool call shows as, before its output is known.
fn call_item(
    name: &str,
    arguments: Option<&str>,
    input: Option<&str>,
    call_id: &str,
    cwd: &str,
) -> Option<(ThreadItem, CallKind)> {
    let args: Value = arguments
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or(Value::Null);
    match name {
        "exec_command" | "shell" | "container.exec" => {
            // Shown as the live item showed it.
            let line = match (&args["cmd"], &args["command"]) {
                (Value::String(cmd), _) => CommandLine::Shell(cmd.clone()),
                (_, Value::Array(argv)) => CommandLine::Argv(
                    argv.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                ),
                _ => CommandLine::Shell(arguments.unwrap_or_default().to_string()),
            };
            let command = display_command(&line);
            let cwd = args["workdir"].as_str().unwrap_or(cwd).to_string();
            Some((
                ThreadItem::CommandExecution {
                    id: call_id.to_string(),
                    command_actions: vec![json!({"type": "unknown", "command": command})],
                    command,
                    cwd,
                    aggregated_output: None,
                    exit_code: None,
                    duration_ms: None,
                    process_id: None,
                    source: "agent".to_string(),
                    status: ExecutionStatus::InProgress,
                },
                CallKind::Command,
            ))
        }
        "apply_patch" => {
            let patch = input
                .map(str::to_string)
                .or_else(|| args["input"].as_str().map(str::to_string))
                .unwrap_or_default();
            Some((
                ThreadItem::FileChange {
                    id: call_id.to_string(),
                    changes: patch_changes(&patch),
                    status: ExecutionStatus::InProgress,
                },
                CallKind::Patch,
            ))
        }
        _ => None,
    }
}

/// The files a patch changes, each with what changed as far as the patch itself tells (the files
/// as they were are gone): a new file's content, an update's edits (without line numbers, which
/// only the file knew), nothing for a deletion. A patch that does not parse still names its files.
fn patch_changes(patch: &str) -> Vec<FileUpdateChange> {
    let Ok(parsed) = parse_patch(patch) else {
        return declared_changes(patch)
            .into_iter()
            .map(|change| FileUpdateChange {
                path: change.path,
                kind: change_kind(change.kind, change.move_path),
                diff: String::new(),
            })
            .collect();
    };
    parsed
        .hunks
        .into_iter()
        .map(|hunk| match hunk {
            Hunk::Add { path, contents } => FileUpdateChange {
                path,
                kind: PatchChangeKind::Add,
                diff: contents,
            },
            Hunk::Delete { path } => FileUpdateChange {
                path,
                kind: PatchChangeKind::Delete,
                diff: String::new(),
            },
            Hunk::Update {
                path,
                move_path,
                chunks,
            } => FileUpdateChange {
                path,
                kind: PatchChangeKind::Update { move_path },
                diff: chunks.iter().map(chunk_diff).collect(),
            },
        })
        .collect()
}

fn change_kind(kind: ExecChangeKind, move_path: Option<String>) -> PatchChangeKind {
    match kind {
        ExecChangeKind::Add => PatchChangeKind::Add,
        ExecChangeKind::Delete => PatchChangeKind::Delete,
        ExecChangeKind::Update => PatchChangeKind::Update { move_path },
    }
}

/// One update chunk as diff lines: its `@@` header, then context, removed and added lines.
fn chunk_diff(chunk: &UpdateChunk) -> String {
    let mut text = match &chunk.context {
        Some(context) => format!("@@ {context}\n"),
        None => "@@\n".to_string(),
    };
    for line in &chunk.lines {
        let (mark, line) = match line {
            ChunkLine::Context(line) => (' ', line),
            ChunkLine::Remove(line) => ('-', line),
            ChunkLine::Add(line) => ('+', line),
        };
        text.push(mark);
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// Fills in a call's outcome from the output text the model was sent (`Exit code: N`, …,
/// `Output:` then the output).
fn complete(item: &mut ThreadItem, kind: &CallKind, output: &str) {
    let exit_code = output
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("Exit code: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|code| code.parse::<i32>().ok());
    let body = output
        .split_once("Output:\n")
        .map_or(output, |(_, body)| body)
        .to_string();
    let duration_ms = output
        .lines()
        .find_map(|line| line.strip_prefix("Wall time: "))
        .and_then(|rest| rest.strip_suffix(" seconds"))
        .and_then(|secs| secs.parse::<f64>().ok())
        .map(|secs| (secs * 1000.0).round() as i64);
    let status = if exit_code == Some(0) {
        ExecutionStatus::Completed
    } else {
        ExecutionStatus::Failed
    };
    match (item, kind) {
        (
            ThreadItem::CommandExecution {
                aggregated_output,
                exit_code: code,
                duration_ms: duration,
                status: slot,
                ..
            },
            CallKind::Command,
        ) => {
            *aggregated_output = Some(body);
            *code = exit_code;
            *duration = duration_ms;
            *slot = status;
        }
        (ThreadItem::FileChange { status: slot, .. }, CallKind::Patch) => *slot = status,
        _ => {}
    }
}

fn set_status(item: &mut ThreadItem, status: ExecutionStatus) {
    match item {
        ThreadItem::CommandExecution { status: slot, .. }
        | ThreadItem::FileChange { status: slot, .. } => *slot = status,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quest_protocol::{CompactedHistory, CompactionTrigger};

    fn entry(turn: &str, item: ResponseItem) -> TranscriptEntry {
        TranscriptEntry {
            turn_id: Some(turn.to_string()),
            item: TranscriptItem::Item(item),
        }
    }

    fn message(role: &str, text: &str) -> ResponseItem {
        let part = if role == "assistant" {
            ContentItem::OutputText { text: text.into() }
        } else {
            ContentItem::InputText { text: text.into() }
        };
        ResponseItem::Message {
            id: None,
            role: role.into(),
            content: vec![part],
        }
    }

    fn call(name: &str, arguments: Value, call_id: &str) -> ResponseItem {
        ResponseItem::FunctionCall {
            id: None,
            name: name.into(),
            arguments: arguments.to_string(),
            call_id: call_id.into(),
        }
    }

    fn output(call_id: &str, text: &str) -> ResponseItem {
        ResponseItem::FunctionCallOutput {
            id: None,
            call_id: Some(call_id.into()),
            name: None,
            namespace: None,
            output: text.into(),
        }
    }

    #[test]
    fn a_transcript_becomes_what_the_user_saw() {
        let patch = "*** Begin Patch\n*** Add File: notes.txt\n+hello\n*** Update File: src/a.rs\n*** Move to: src/b.rs\n@@\n-old\n+new\n*** End Patch\n";
        let entries = vec![
            entry("t1", message("developer", "base instructions")),
            entry(
                "t1",
                message(
                    "user",
                    "<environment_context>\n  <cwd>/w</cwd>\n</environment_context>",
                ),
            ),
            entry("t1", message("user", "count the files")),
            entry(
                "t1",
                ResponseItem::Reasoning {
                    id: Some("rs_1".into()),
                    summary: vec![ReasoningSummary::SummaryText {
                        text: "Listing files".into(),
                    }],
                    content: None,
                    encrypted_content: None,
                },
            ),
            entry(
                "t1",
                call("exec_command", json!({"cmd": "ls | wc -l"}), "c1"),
            ),
            entry(
                "t1",
                output("c1", "Exit code: 0\nWall time: 0.2 seconds\nOutput:\n3\n"),
            ),
            entry(
                "t1",
                ResponseItem::CustomToolCall {
                    id: None,
                    call_id: "p1".into(),
                    name: "apply_patch".into(),
                    input: patch.into(),
                },
            ),
            entry(
                "t1",
                ResponseItem::CustomToolCallOutput {
                    id: None,
                    call_id: "p1".into(),
                    output: "Exit code: 1\nWall time: 0.0 seconds\nOutput:\nfailed\n".into(),
                },
            ),
            entry("t1", message("assistant", "There are 3 files.")),
            entry(
                "t2",
                message(
                    "user",
                    "<codex_internal_context source=\"goal\">\ncontinue\n</codex_internal_context>",
                ),
            ),
            entry(
                "t2",
                call(
                    "shell",
                    json!({"command": ["bash", "-lc", "sleep 9"]}),
                    "c2",
                ),
            ),
            TranscriptEntry {
                turn_id: Some("t2".into()),
                item: TranscriptItem::Compaction(CompactedHistory {
                    summary: "s".into(),
                    replacement_history: Vec::new(),
                    trigger: CompactionTrigger::Auto,
                    tokens_before: 10,
                    tokens_after: 1,
                }),
            },
            entry(
                "t2",
                call("update_goal", json!({"status": "complete"}), "g1"),
            ),
        ];
        let items = items_from_transcript(&entries, "/w");
        let kinds: Vec<(&str, &str)> = items
            .iter()
            .map(|h| {
                (
                    h.turn_id.as_deref().unwrap(),
                    match &h.item {
                        ThreadItem::UserMessage { .. } => "user",
                        ThreadItem::AgentMessage { .. } => "agent",
                        ThreadItem::Reasoning { .. } => "reasoning",
                        ThreadItem::CommandExecution { .. } => "command",
                        ThreadItem::FileChange { .. } => "patch",
                        ThreadItem::ContextCompaction { .. } => "compaction",
                        ThreadItem::McpToolCall { .. } => "mcp",
                    },
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("t1", "user"),
                ("t1", "reasoning"),
                ("t1", "command"),
                ("t1", "patch"),
                ("t1", "agent"),
                ("t2", "command"),
                ("t2", "compaction"),
            ]
        );
        match &items[2].item {
            ThreadItem::CommandExecution {
                command,
                aggregated_output,
                exit_code,
                duration_ms,
                status,
                cwd,
                ..
            } => {
                assert_eq!(
                    command,
                    &display_command(&CommandLine::Shell("ls | wc -l".into()))
                );
                assert_eq!(aggregated_output.as_deref(), Some("3\n"));
                assert_eq!(*exit_code, Some(0));
                assert_eq!(*duration_ms, Some(200));
                assert_eq!(*status, ExecutionStatus::Completed);
                assert_eq!(cwd, "/w");
            }
            other => panic!("{other:?}"),
        }
        match &items[3].item {
            ThreadItem::FileChange {
                changes, status, ..
            } => {
                assert_eq!(*status, ExecutionStatus::Failed);
                assert_eq!(changes.len(), 2);
                assert_eq!(changes[0].path, "notes.txt");
                assert_eq!(changes[0].kind, PatchChangeKind::Add);
                // A new file's content, as a live item carries it.
                assert_eq!(changes[0].diff, "hello\n");
                assert_eq!(
                    changes[1].kind,
                    PatchChangeKind::Update {
                        move_path: Some("src/b.rs".into())
                    }
                );
                assert_eq!(changes[1].diff, "@@\n-old\n+new\n");
            }
            other => panic!("{other:?}"),
        }
        // The interrupted command never answered: not running any more.
        match &items[5].item {
            ThreadItem::CommandExecution {
                command, status, ..
            } => {
                assert_eq!(
                    command,
                    &display_command(&CommandLine::Argv(vec![
                        "bash".into(),
                        "-lc".into(),
                        "sleep 9".into()
                    ]))
                );
                assert_eq!(*status, ExecutionStatus::Failed);
            }
            other => panic!("{other:?}"),
        }
    }
}
