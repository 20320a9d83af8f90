//! Turns core events into `exec --json` lines or readable progress.

use std::collections::HashMap;
use std::io::Write;

use owo_colors::OwoColorize;
use quest_core::{EventMsg, TurnTrigger};
use quest_protocol::TokenUsage;
use quest_protocol::exec_events::{
    CommandExecutionStatus, ExecError, ExecUsage, FileUpdateChange, McpToolCallItemError,
    McpToolCallStatus, ThreadEvent, ThreadItem, ThreadItemDetails,
};
use quest_protocol::sandbox::ApprovalReason;

/// Most of an agent message or reasoning text shown in the human progress output; a longer
/// one shows its head and tail and how much was left out (the last message on stdout and in
/// `--output-last-message` stays whole).
pub(crate) const MAX_PRINTED_TEXT_BYTES: usize = 64 * 1024;

/// `text` for the progress output, at most [`MAX_PRINTED_TEXT_BYTES`].
fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_PRINTED_TEXT_BYTES {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(quest_core::compact::truncate_middle(
            text,
            MAX_PRINTED_TEXT_BYTES,
        ))
    }
}

/// `turn.failed` message of an interrupted turn.
pub(crate) const TURN_INTERRUPTED: &str = "turn interrupted";

/// Output mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMode {
    /// JSONL on stdout.
    Json,
    /// Progress on stderr, final message on stdout.
    Human {
        /// Colourise stderr.
        color: bool,
    },
}

/// Converts events to output; keeps exec-local item ids.
pub struct EventProcessor {
    mode: OutputMode,
    next_item: u64,
    running_commands: HashMap<String, (String, String)>,
    /// Item ids of MCP tool calls in progress, by call id.
    running_mcp_calls: HashMap<String, String>,
    /// Last agent message of the latest completed turn.
    pub last_message: Option<String>,
    show_goal_events: bool,
    /// A turn started and has not ended yet.
    turn_open: bool,
    /// The JSONL line being written, reused from line to line.
    line: Vec<u8>,
}

/// Capacity of the JSONL line buffer kept between lines.
const LINE_BUFFER_KEPT: usize = 64 * 1024;

impl EventProcessor {
    /// A processor for `mode`; `goal` enables `goal.updated` lines.
    pub fn new(mode: OutputMode, goal: bool) -> Self {
        EventProcessor {
            mode,
            next_item: 0,
            running_commands: HashMap::new(),
            running_mcp_calls: HashMap::new(),
            last_message: None,
            show_goal_events: goal,
            turn_open: false,
            line: Vec::new(),
        }
    }

    /// Ends what the stream left open when the turn stops without its normal end (interrupt,
    /// forced exit): every started command is completed as `failed`, then, with `--json`,
    /// `turn.failed` carries `message`. Does nothing when no turn is open.
    pub fn abort_open_turn(&mut self, message: &str) {
        if !self.turn_open {
            return;
        }
        self.turn_open = false;
        let mut open: Vec<(String, String)> =
            self.running_commands.drain().map(|(_, v)| v).collect();
        open.sort();
        for (id, command) in open {
            match self.mode {
                OutputMode::Json => self.json(&ThreadEvent::ItemCompleted {
                    item: ThreadItem {
                        id,
                        details: ThreadItemDetails::CommandExecution {
                            command,
                            aggregated_output: String::new(),
                            exit_code: None,
                            status: CommandExecutionStatus::Failed,
                        },
                    },
                }),
                OutputMode::Human { .. } => {
                    self.human(&format!("  {command}: interrupted"), Style::Warn)
                }
            }
        }
        match self.mode {
            OutputMode::Json => self.json(&ThreadEvent::TurnFailed {
                error: ExecError {
                    message: message.to_string(),
                },
            }),
            OutputMode::Human { .. } => self.human(message, Style::Warn),
        }
    }

    fn item_id(&mut self) -> String {
        let id = format!("item_{}", self.next_item);
        self.next_item += 1;
        id
    }

    /// Emits the first line.
    pub fn thread_started(&mut self, thread_id: &str) {
        match self.mode {
            OutputMode::Json => self.json(&ThreadEvent::ThreadStarted {
                thread_id: thread_id.to_string(),
            }),
            OutputMode::Human { .. } => {
                self.human(&format!("thread {thread_id}"), Style::Dim);
            }
        }
    }

    /// Prints a warning (config warnings, non-fatal problems).
    pub fn warning(&mut self, message: &str) {
        match self.mode {
            OutputMode::Json => {
                let item = ThreadItem {
                    id: self.item_id(),
                    details: ThreadItemDetails::Error {
                        message: message.to_string(),
                    },
                };
                self.json(&ThreadEvent::ItemCompleted { item });
            }
            OutputMode::Human { .. } => self.human(&format!("warning: {message}"), Style::Warn),
        }
    }

    /// Handles one core event.
    pub fn process(&mut self, msg: &EventMsg) {
        match msg {
            EventMsg::TurnStarted { trigger } => {
                self.turn_open = true;
                match self.mode {
                    OutputMode::Json => self.json(&ThreadEvent::TurnStarted {}),
                    OutputMode::Human { .. } => {
                        let label = match trigger {
                            TurnTrigger::User => "turn started",
                            TurnTrigger::Goal => "goal continuation started",
                        };
                        self.human(label, Style::Dim);
                    }
                }
            }
            EventMsg::AgentMessageDelta(_) => {}
            EventMsg::AgentMessage(text) => {
                self.last_message = Some(text.clone());
                match self.mode {
                    OutputMode::Json => {
                        let item = ThreadItem {
                            id: self.item_id(),
                            details: ThreadItemDetails::AgentMessage { text: text.clone() },
                        };
                        self.json(&ThreadEvent::ItemCompleted { item });
                    }
                    OutputMode::Human { .. } => {
                        self.human(&format!("agent: {}", shown(text)), Style::Plain);
                    }
                }
            }
            EventMsg::Reasoning(text) => match self.mode {
                OutputMode::Json => {
                    let item = ThreadItem {
                        id: self.item_id(),
                        details: ThreadItemDetails::Reasoning { text: text.clone() },
                    };
                    self.json(&ThreadEvent::ItemCompleted { item });
                }
                OutputMode::Human { .. } => {
                    self.human(&format!("thinking: {}", shown(text)), Style::Dim);
                }
            },
            EventMsg::ExecCommandBegin { call_id, command } => {
                let id = self.item_id();
                self.running_commands
                    .insert(call_id.clone(), (id.clone(), command.clone()));
                match self.mode {
                    OutputMode::Json => self.json(&ThreadEvent::ItemStarted {
                        item: ThreadItem {
                            id,
                            details: ThreadItemDetails::CommandExecution {
                                command: command.clone(),
                                aggregated_output: String::new(),
                                exit_code: None,
                                status: CommandExecutionStatus::InProgress,
                            },
                        },
                    }),
                    OutputMode::Human { .. } => self.human(&format!("$ {command}"), Style::Command),
                }
            }
            EventMsg::ExecCommandEnd {
                call_id,
                command,
                output,
                exit_code,
                success,
            } => {
                // A command of an interrupted turn that ends late was already completed.
                let Some((id, _)) = self.running_commands.remove(call_id) else {
                    return;
                };
                match self.mode {
                    OutputMode::Json => self.json(&ThreadEvent::ItemCompleted {
                        item: ThreadItem {
                            id,
                            details: ThreadItemDetails::CommandExecution {
                                command: command.clone(),
                                aggregated_output: output.clone(),
                                exit_code: *exit_code,
                                status: if *success {
                                    CommandExecutionStatus::Completed
                                } else {
                                    CommandExecutionStatus::Failed
                                },
                            },
                        },
                    }),
                    OutputMode::Human { .. } => {
                        let code = exit_code.map_or("killed".to_string(), |c| format!("exit {c}"));
                        let style = if *success { Style::Ok } else { Style::Error };
                        self.human(&format!("  {code}"), style);
                        for line in output.lines().take(20) {
                            self.human(&format!("  {line}"), Style::Dim);
                        }
                    }
                }
            }
            EventMsg::PatchApplied {
                changes,
                status,
                message,
                ..
            } => match self.mode {
                OutputMode::Json => {
                    let item = ThreadItem {
                        id: self.item_id(),
                        details: ThreadItemDetails::FileChange {
                            changes: changes.iter().map(FileUpdateChange::from).collect(),
                            status: *status,
                        },
                    };
                    self.json(&ThreadEvent::ItemCompleted { item });
                }
                OutputMode::Human { .. } => self.human(&format!("patch: {message}"), Style::Ok),
            },
            EventMsg::McpToolCallBegin {
                call_id,
                server,
                tool,
                arguments,
            } => {
                let id = self.item_id();
                self.running_mcp_calls.insert(call_id.clone(), id.clone());
                match self.mode {
                    OutputMode::Json => self.json(&ThreadEvent::ItemStarted {
                        item: ThreadItem {
                            id,
                            details: ThreadItemDetails::McpToolCall {
                                server: server.clone(),
                                tool: tool.clone(),
                                arguments: arguments.clone(),
                                result: None,
                                error: None,
                                status: McpToolCallStatus::InProgress,
                            },
                        },
                    }),
                    OutputMode::Human { .. } => self.human(
                        &format!("mcp: {server}.{tool}({arguments})"),
                        Style::Command,
                    ),
                }
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
                let id = match self.running_mcp_calls.remove(call_id) {
                    Some(id) => id,
                    None => self.item_id(),
                };
                let failed = *is_error || error.is_some();
                match self.mode {
                    OutputMode::Json => self.json(&ThreadEvent::ItemCompleted {
                        item: ThreadItem {
                            id,
                            details: ThreadItemDetails::McpToolCall {
                                server: server.clone(),
                                tool: tool.clone(),
                                arguments: arguments.clone(),
                                result: result.clone(),
                                error: error
                                    .clone()
                                    .map(|message| McpToolCallItemError { message }),
                                status: if failed {
                                    McpToolCallStatus::Failed
                                } else {
                                    McpToolCallStatus::Completed
                                },
                            },
                        },
                    }),
                    OutputMode::Human { .. } => {
                        let (label, style) = match error {
                            Some(message) => (format!("  failed: {message}"), Style::Error),
                            None if *is_error => {
                                (format!("  tool error ({duration_ms} ms)"), Style::Error)
                            }
                            None => (format!("  ok ({duration_ms} ms)"), Style::Ok),
                        };
                        self.human(&label, style);
                    }
                }
            }
            EventMsg::Retrying {
                attempt,
                max_attempts,
                reason,
            } => {
                let message = format!("Reconnecting... {attempt}/{max_attempts} ({reason})");
                match self.mode {
                    OutputMode::Json => self.json(&ThreadEvent::Error { message }),
                    OutputMode::Human { .. } => self.human(&message, Style::Warn),
                }
            }
            EventMsg::Warning(message) => self.warning(message),
            EventMsg::ContextCompacted {
                trigger,
                tokens_before,
                tokens_after,
            } => match self.mode {
                OutputMode::Json => {
                    let item = ThreadItem {
                        id: self.item_id(),
                        details: ThreadItemDetails::ContextCompaction {},
                    };
                    self.json(&ThreadEvent::ItemCompleted { item });
                }
                OutputMode::Human { .. } => self.human(
                    &format!(
                        "context compacted ({}): ~{tokens_before} -> ~{tokens_after} tokens",
                        trigger.as_str()
                    ),
                    Style::Dim,
                ),
            },
            // `quest exec` has nobody to ask: core declines each request at once, and the
            // request itself is what the user should see.
            EventMsg::ApprovalResolved(_) => {}
            EventMsg::ExecApprovalRequest(request) => self.warning(&format!(
                "approval needed to run `{}` ({}); nobody can approve it in exec, so it was declined",
                request.command,
                approval_reason(request.reason)
            )),
            EventMsg::McpApprovalRequest(request) => self.warning(&format!(
                "approval needed to call `{}` of MCP server `{}` ({}); nobody can approve it in exec, so it was declined",
                request.tool,
                request.server,
                approval_reason(ApprovalReason::McpToolCall)
            )),
            EventMsg::PatchApprovalRequest(request) => self.warning(&format!(
                "approval needed to change {} ({}); nobody can approve it in exec, so it was declined",
                request
                    .changes
                    .iter()
                    .map(|c| c.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                approval_reason(request.reason)
            )),
            EventMsg::GoalUpdated(goal) => match self.mode {
                OutputMode::Json => {
                    if self.show_goal_events {
                        self.json(&ThreadEvent::GoalUpdated {
                            goal: (**goal).clone(),
                        });
                    }
                }
                OutputMode::Human { .. } => {
                    let budget = goal.token_budget.map_or(String::new(), |b| format!("/{b}"));
                    self.human(
                        &format!(
                            "goal {}: {} tokens{budget}, {}s, {} turns",
                            goal.status, goal.tokens_used, goal.time_used_seconds, goal.turns_used
                        ),
                        Style::Goal,
                    );
                }
            },
            EventMsg::GoalCleared => {
                if let OutputMode::Human { .. } = self.mode {
                    self.human("goal cleared", Style::Goal);
                }
            }
            EventMsg::TurnCompleted { usage, .. } => {
                self.turn_open = false;
                match self.mode {
                    OutputMode::Json => self.json(&ThreadEvent::TurnCompleted {
                        usage: ExecUsage::from(*usage),
                    }),
                    OutputMode::Human { .. } => self.human(&usage_line(usage), Style::Dim),
                }
            }
            EventMsg::TurnFailed { error, .. } => {
                self.turn_open = false;
                match self.mode {
                    OutputMode::Json => {
                        self.json(&ThreadEvent::Error {
                            message: error.message.clone(),
                        });
                        self.json(&ThreadEvent::TurnFailed {
                            error: ExecError {
                                message: error.message.clone(),
                            },
                        });
                    }
                    OutputMode::Human { .. } => {
                        self.human(&format!("ERROR: {}", error.message), Style::Error)
                    }
                }
            }
            EventMsg::TurnAborted => self.abort_open_turn(TURN_INTERRUPTED),
            EventMsg::Idle | EventMsg::ShutdownComplete => {}
        }
    }

    /// Prints one JSONL line: encoded into a buffer kept for the next line, written with one
    /// `write_all` and flushed (consumers read the stream as it comes).
    fn json(&mut self, event: &ThreadEvent) {
        let line = &mut self.line;
        line.clear();
        if serde_json::to_writer(&mut *line, event).is_ok() {
            line.push(b'\n');
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line);
            let _ = out.flush();
        }
        // A huge event (a command's whole output) does not keep its memory for good.
        if line.capacity() > LINE_BUFFER_KEPT {
            *line = Vec::new();
        }
    }

    /// Prints one progress line; command output and model text in it are stripped of terminal
    /// control sequences first, so only this styling reaches the terminal.
    fn human(&self, text: &str, style: Style) {
        let text = crate::sanitize::strip_terminal_escapes(text);
        let color = matches!(self.mode, OutputMode::Human { color: true });
        let mut err = std::io::stderr().lock();
        let _ = if color {
            match style {
                Style::Plain => writeln!(err, "{text}"),
                Style::Dim => writeln!(err, "{}", text.dimmed()),
                Style::Command => writeln!(err, "{}", text.bold()),
                Style::Ok => writeln!(err, "{}", text.green()),
                Style::Warn => writeln!(err, "{}", text.yellow()),
                Style::Error => writeln!(err, "{}", text.red()),
                Style::Goal => writeln!(err, "{}", text.magenta()),
            }
        } else {
            writeln!(err, "{text}")
        };
    }
}

fn approval_reason(reason: ApprovalReason) -> &'static str {
    match reason {
        ApprovalReason::EscalationRequested => "the model asked to run it outside the sandbox",
        ApprovalReason::SandboxDenied => "it failed in the sandbox",
        ApprovalReason::Untrusted => "the approval policy is untrusted",
        ApprovalReason::OutsideWritableRoots => "it writes outside the writable roots",
        ApprovalReason::McpToolCall => "the MCP tool may have side effects",
    }
}

#[derive(Clone, Copy)]
enum Style {
    Plain,
    Dim,
    Command,
    Ok,
    Warn,
    Error,
    Goal,
}

fn usage_line(usage: &TokenUsage) -> String {
    format!(
        "tokens: {} in ({} cached), {} out",
        usage.input_tokens, usage.cached_input_tokens, usage.output_tokens
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_shown_shortened_around_a_notice() {
        assert_eq!(shown("short"), "short");
        let exact = "é".repeat(MAX_PRINTED_TEXT_BYTES / 2);
        assert_eq!(shown(&exact), exact);
        let long = format!("{}{}", "a".repeat(100_000), "z".repeat(100_000));
        let printed = shown(&long);
        assert!(printed.len() <= MAX_PRINTED_TEXT_BYTES, "{}", printed.len());
        assert!(printed.starts_with("aaaa") && printed.ends_with("zzzz"));
        assert!(printed.contains("bytes omitted"), "{printed}");
    }
}
