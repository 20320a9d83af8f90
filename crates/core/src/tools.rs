//! Model-facing tools: their JSON specs and the dispatcher that turns a tool-call item into a real
//! side effect (a process, a patch) and an output item for the model.
//!
//! Malformed arguments never fail the turn: they become an error output the model can read and fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use quest_protocol::ResponseItem;
use quest_protocol::exec_events::{PatchApplyStatus, PatchFileChange};
use quest_protocol::sandbox::{
    ApprovalReason, ApprovalResolved, AskForApproval, ExecApprovalRequest, PatchApprovalRequest,
    ReviewDecision, SandboxMode, SandboxPolicy,
};
use quest_tools::apply_patch::{
    apply_patch, declared_changes, format_for_model as format_patch_for_model, parse_patch,
    preview_patch,
};
use quest_tools::sandbox::Sandbox;

use crate::approval::{
    Approvals, CommandPlan, is_known_safe_command, plan_command, retry_unsandboxed,
};
use quest_tools::shell::{
    CommandLine, ExecRequest, display_command, format_for_model, run_command,
};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::protocol::EventMsg;

/// Names of the goal tools, which never count as progress.
pub const GOAL_TOOL_NAMES: [&str; 3] = ["get_goal", "create_goal", "update_goal"];

/// A tool call as the model asked for it.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    /// Pairs the call with its output.
    pub call_id: String,
    /// Tool name.
    pub name: String,
    /// JSON arguments (function tools) or raw input (custom tools).
    pub payload: String,
    /// True for `custom_tool_call` items, whose output item differs.
    pub custom: bool,
}

impl ToolCall {
    /// Extracts a call from a response item.
    pub fn from_item(item: &ResponseItem) -> Option<ToolCall> {
        match item {
            ResponseItem::FunctionCall {
                name,
                arguments,
                call_id,
                ..
            } => Some(ToolCall {
                call_id: call_id.clone(),
                name: name.clone(),
                payload: arguments.clone(),
                custom: false,
            }),
            ResponseItem::CustomToolCall {
                call_id,
                name,
                input,
                ..
            } => Some(ToolCall {
                call_id: call_id.clone(),
                name: name.clone(),
                payload: input.clone(),
                custom: true,
            }),
            _ => None,
        }
    }

    /// The output item answering this call.
    pub fn output_item(&self, output: String) -> ResponseItem {
        if self.custom {
            ResponseItem::CustomToolCallOutput {
                id: None,
                call_id: self.call_id.clone(),
                output,
            }
        } else {
            ResponseItem::FunctionCallOutput {
                id: None,
                call_id: Some(self.call_id.clone()),
                name: None,
                namespace: None,
                output,
            }
        }
    }
}

/// What running one tool call produced.
#[derive(Clone, Debug)]
pub struct ToolResult {
    /// The call.
    pub call: ToolCall,
    /// Text sent back to the model.
    pub output: String,
    /// The handler actually ran (false for unknown tools and unparseable arguments).
    pub executed: bool,
    /// The handler ran and succeeded (command exit 0, patch applied).
    pub success: bool,
    /// A file change was applied.
    pub changed_files: bool,
    /// Exit code of a shell command.
    pub exit_code: Option<i32>,
}

impl ToolResult {
    fn refused(call: &ToolCall, output: String) -> Self {
        ToolResult {
            call: call.clone(),
            output,
            executed: false,
            success: false,
            changed_files: false,
            exit_code: None,
        }
    }

    /// The output item for the model.
    pub fn output_item(&self) -> ResponseItem {
        self.call.output_item(self.output.clone())
    }
}

/// Everything a tool handler needs from its turn.
#[derive(Clone)]
pub struct ToolContext {
    /// Working directory of the thread.
    pub cwd: PathBuf,
    /// Default command timeout.
    pub shell_timeout: Duration,
    /// Longest timeout a call may ask for (`timeout_ms` beyond it is cut to it).
    pub max_shell_timeout: Duration,
    /// Output cap per command.
    pub max_output_bytes: usize,
    /// The environment of spawned processes, after `[shell_environment_policy]`.
    pub base_env: std::sync::Arc<[(String, String)]>,
    /// Extra environment for spawned processes (e.g. `TRACEPARENT`), set over `base_env`.
    pub env: Vec<(String, String)>,
    /// The sandbox commands and patches obey.
    pub sandbox: Sandbox,
    /// When a person is asked.
    pub approval_policy: AskForApproval,
    /// Where requests wait for their answer.
    pub approvals: Approvals,
    /// Cancelled when the turn is interrupted.
    pub cancel: CancellationToken,
}

/// JSON specs of the built-in tools, in the order sent to the model.
pub fn builtin_tool_specs() -> Vec<serde_json::Value> {
    vec![
        json!({
            "type": "function",
            "name": "exec_command",
            "description": "Runs a shell command (bash -lc) in the workspace and returns its exit code and output (stdout and stderr interleaved; long output keeps the head and tail).",
            "strict": false,
            "parameters": {
                "type": "object",
                "properties": {
                    "cmd": {"type": "string", "description": "The shell command to execute."},
                    "workdir": {"type": "string", "description": "Working directory; defaults to the workspace root."},
                    "timeout_ms": {"type": "number", "description": "Kill the command after this many milliseconds."},
                    "sandbox_permissions": {"type": "string", "enum": ["use_default", "require_escalated"], "description": "`require_escalated` asks the user to run this command outside the sandbox (approval policy on-request); give a justification."},
                    "justification": {"type": "string", "description": "Why the command is needed; shown to the user when asking for approval."}
                },
                "required": ["cmd"],
                "additionalProperties": false
            }
        }),
        json!({
            "type": "function",
            "name": "apply_patch",
            "description": "Edits files with a patch: '*** Begin Patch', then '*** Add File: path' (lines prefixed '+'), '*** Delete File: path', or '*** Update File: path' (optional '*** Move to: new'), hunks starting with '@@' whose lines are ' ' context, '-' removed, '+' added; end with '*** End Patch'. All hunks apply or none do.",
            "strict": false,
            "parameters": {
                "type": "object",
                "properties": {
                    "input": {"type": "string", "description": "The entire patch."}
                },
                "required": ["input"],
                "additionalProperties": false
            }
        }),
    ]
}

#[derive(Deserialize)]
struct ExecCommandArgs {
    cmd: String,
    #[serde(flatten)]
    common: CommandArgs,
}

#[derive(Deserialize)]
struct ShellArgs {
    command: Vec<String>,
    #[serde(flatten)]
    common: CommandArgs,
}

/// Arguments every command tool takes.
#[derive(Deserialize)]
struct CommandArgs {
    #[serde(default)]
    workdir: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    sandbox_permissions: SandboxPermissions,
    #[serde(default)]
    justification: Option<String>,
}

/// `sandbox_permissions` of a command tool call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SandboxPermissions {
    #[default]
    UseDefault,
    RequireEscalated,
}

#[derive(Deserialize)]
struct PatchArgs {
    input: String,
}

/// Runs one non-goal tool call. `emit` receives begin/end events for front-ends.
pub async fn run_builtin_tool(
    call: &ToolCall,
    ctx: &ToolContext,
    emit: &(dyn Fn(EventMsg) + Send + Sync),
) -> ToolResult {
    match call.name.as_str() {
        "exec_command" => match parse_args::<ExecCommandArgs>(call) {
            Ok(args) => {
                let line = CommandLine::Shell(args.cmd);
                run_shell(call, ctx, emit, line, args.common).await
            }
            Err(result) => result,
        },
        "shell" | "container.exec" => match parse_args::<ShellArgs>(call) {
            Ok(args) if args.command.is_empty() => {
                ToolResult::refused(call, "command must not be empty".to_string())
            }
            Ok(args) => {
                let line = CommandLine::Argv(args.command);
                run_shell(call, ctx, emit, line, args.common).await
            }
            Err(result) => result,
        },
        "apply_patch" => {
            let input = if call.custom {
                call.payload.clone()
            } else {
                match parse_args::<PatchArgs>(call) {
                    Ok(args) => args.input,
                    Err(result) => return result,
                }
            };
            run_patch(call, ctx, emit, &input).await
        }
        other => ToolResult::refused(call, format!("unsupported call: {other}")),
    }
}

fn parse_args<T: serde::de::DeserializeOwned>(call: &ToolCall) -> Result<T, ToolResult> {
    serde_json::from_str(&call.payload).map_err(|err| {
        ToolResult::refused(
            call,
            format!(
                "failed to parse function arguments for `{}`: {err}",
                call.name
            ),
        )
    })
}

/// Sends an approval request (`event`, for tool call `call_id`) to the front-ends and waits for
/// the answer; an interrupted turn withdraws the request and counts as `abort`. Without anyone
/// to ask (headless), the request is announced and declined at once.
pub(crate) async fn ask(
    ctx: &ToolContext,
    emit: &(dyn Fn(EventMsg) + Send + Sync),
    call_id: &str,
    event: EventMsg,
) -> ReviewDecision {
    let resolved = |decision, automatic| {
        EventMsg::ApprovalResolved(ApprovalResolved {
            call_id: call_id.to_string(),
            decision,
            automatic,
        })
    };
    if ctx.approvals.is_headless() {
        emit(event);
        emit(resolved(ReviewDecision::Denied, true));
        return ReviewDecision::Denied;
    }
    let answer = ctx.approvals.register(call_id);
    emit(event);
    let decision = tokio::select! {
        decision = answer => decision.unwrap_or(ReviewDecision::Denied),
        () = ctx.cancel.cancelled() => {
            ctx.approvals.withdraw(call_id);
            ReviewDecision::Abort
        }
    };
    emit(resolved(decision, false));
    if decision == ReviewDecision::Abort {
        // `cancel`: the person stops the whole turn, not only this call.
        ctx.cancel.cancel();
    }
    decision
}

/// Asks about a command.
async fn ask_exec(
    ctx: &ToolContext,
    emit: &(dyn Fn(EventMsg) + Send + Sync),
    request: ExecApprovalRequest,
) -> ReviewDecision {
    let call_id = request.call_id.clone();
    ask(ctx, emit, &call_id, EventMsg::ExecApprovalRequest(request)).await
}

/// What the model is told when `what` was not approved.
pub(crate) fn not_approved(ctx: &ToolContext, what: &str) -> String {
    if ctx.approvals.is_headless() {
        format!(
            "{what} needs a person's approval, and nobody can approve it in this non-interactive run; \
             it was not run. Do not retry it as is: find a way that works inside the sandbox, or \
             report what is needed"
        )
    } else {
        format!("the user did not approve {what}; it was not run. Do not retry it as is")
    }
}

async fn run_shell(
    call: &ToolCall,
    ctx: &ToolContext,
    emit: &(dyn Fn(EventMsg) + Send + Sync),
    line: CommandLine,
    args: CommandArgs,
) -> ToolResult {
    let cwd = match args.workdir {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => ctx.cwd.join(dir),
        None => ctx.cwd.clone(),
    };
    let command = display_command(&line);
    let mode = ctx.sandbox.mode();
    let known_safe = match &line {
        CommandLine::Shell(text) => is_known_safe_command(text),
        CommandLine::Argv(argv) => is_known_safe_command(&argv.join(" ")),
    };
    let escalate = args.sandbox_permissions == SandboxPermissions::RequireEscalated;
    let plan = plan_command(
        ctx.approval_policy,
        mode,
        escalate,
        known_safe,
        ctx.approvals.approved_for_session(&command),
    );
    let request = |reason, unsandboxed, justification| ExecApprovalRequest {
        call_id: call.call_id.clone(),
        command: command.clone(),
        cwd: cwd.clone(),
        reason,
        justification,
        unsandboxed,
    };
    let sandboxed = match plan {
        CommandPlan::Run { sandboxed } => sandboxed,
        CommandPlan::Reject(message) => return ToolResult::refused(call, message),
        CommandPlan::Ask {
            reason,
            unsandboxed,
        } => {
            let decision = ask_exec(
                ctx,
                emit,
                request(reason, unsandboxed, args.justification.clone()),
            )
            .await;
            match decision {
                ReviewDecision::Approved => {}
                ReviewDecision::ApprovedForSession => ctx.approvals.approve_for_session(&command),
                ReviewDecision::Denied | ReviewDecision::Abort => {
                    let what = format!("running `{command}`");
                    return ToolResult::refused(call, not_approved(ctx, &what));
                }
            }
            !unsandboxed && mode != SandboxMode::DangerFullAccess
        }
    };
    let timeout = args
        .timeout_ms
        .map(|ms| Duration::from_millis(ms.max(1)).min(ctx.max_shell_timeout))
        .unwrap_or(ctx.shell_timeout);
    let result = execute(call, ctx, emit, &line, &cwd, timeout, sandboxed).await;
    if sandboxed && !result.success && retry_unsandboxed(ctx.approval_policy, mode, &result.output)
    {
        let tail: String = result
            .output
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let decision = ask_exec(
            ctx,
            emit,
            request(ApprovalReason::SandboxDenied, true, Some(tail)),
        )
        .await;
        return match decision {
            ReviewDecision::Approved | ReviewDecision::ApprovedForSession => {
                if decision == ReviewDecision::ApprovedForSession {
                    ctx.approvals.approve_for_session(&command);
                }
                execute(call, ctx, emit, &line, &cwd, timeout, false).await
            }
            ReviewDecision::Denied | ReviewDecision::Abort => {
                let what = format!("running `{command}` again without the sandbox");
                ToolResult {
                    output: format!(
                        "{}\nThe command failed in the sandbox; {}.",
                        result.output,
                        not_approved(ctx, &what)
                    ),
                    ..result
                }
            }
        };
    }
    result
}

/// Runs a command (in the sandbox or not) and reports it to the front-ends.
async fn execute(
    call: &ToolCall,
    ctx: &ToolContext,
    emit: &(dyn Fn(EventMsg) + Send + Sync),
    line: &CommandLine,
    cwd: &Path,
    timeout: Duration,
    sandboxed: bool,
) -> ToolResult {
    let command = display_command(line);
    emit(EventMsg::ExecCommandBegin {
        call_id: call.call_id.clone(),
        command: command.clone(),
    });
    let mut env = Vec::with_capacity(ctx.base_env.len() + ctx.env.len());
    env.extend(ctx.base_env.iter().cloned());
    env.extend(ctx.env.iter().cloned());
    let sandbox = if sandboxed {
        ctx.sandbox.clone()
    } else {
        Sandbox::new(SandboxPolicy::DangerFullAccess, &ctx.cwd, Vec::new())
    };
    let request = ExecRequest {
        command: line.clone(),
        cwd: cwd.to_path_buf(),
        timeout,
        env,
        max_output_bytes: ctx.max_output_bytes,
        stdin: Default::default(),
        clear_env: true,
        sandbox: Some(sandbox),
    };
    match run_command(request, ctx.cancel.clone()).await {
        Ok(output) => {
            let success = output.exit_code == Some(0) && !output.timed_out;
            emit(EventMsg::ExecCommandEnd {
                call_id: call.call_id.clone(),
                command,
                output: output.aggregated_output.clone(),
                exit_code: output.exit_code,
                success,
            });
            ToolResult {
                call: call.clone(),
                output: format_for_model(&output),
                executed: true,
                success,
                changed_files: false,
                exit_code: output.exit_code,
            }
        }
        Err(err) => {
            let message = format!("failed to run command: {err}");
            emit(EventMsg::ExecCommandEnd {
                call_id: call.call_id.clone(),
                command,
                output: message.clone(),
                exit_code: None,
                success: false,
            });
            ToolResult {
                call: call.clone(),
                output: message,
                executed: true,
                success: false,
                changed_files: false,
                exit_code: None,
            }
        }
    }
}

async fn run_patch(
    call: &ToolCall,
    ctx: &ToolContext,
    emit: &(dyn Fn(EventMsg) + Send + Sync),
    input: &str,
) -> ToolResult {
    let cwd = ctx.cwd.as_path();
    let started = std::time::Instant::now();
    let patch = parse_patch(input);
    // The files the patch names, for the `file_change` item of a patch that fails.
    let attempted: Vec<PatchFileChange> = match &patch {
        Ok(patch) => patch.changes(),
        Err(_) => declared_changes(input),
    };
    // The patch obeys the same writable roots as commands; outside them a person may allow it
    // (unless the policy is `never`).
    let objection = patch.as_ref().ok().and_then(|patch| {
        patch
            .changes()
            .iter()
            .flat_map(|c| std::iter::once(&c.path).chain(c.move_path.as_ref()))
            .find_map(|path| ctx.sandbox.check_write(&cwd.join(path)).err())
    });
    if let Some(objection) = objection {
        let refusal = if ctx.approval_policy == AskForApproval::Never {
            Some(format!("apply_patch refused: {objection}"))
        } else {
            let decision = ask(
                ctx,
                emit,
                &call.call_id,
                EventMsg::PatchApprovalRequest(PatchApprovalRequest {
                    call_id: call.call_id.clone(),
                    // The person sees what would change in each file.
                    changes: patch
                        .as_ref()
                        .ok()
                        .and_then(|patch| preview_patch(cwd, patch).ok())
                        .unwrap_or_else(|| attempted.clone()),
                    reason: ApprovalReason::OutsideWritableRoots,
                    justification: Some(objection.to_string()),
                }),
            )
            .await;
            (!decision.is_approved()).then(|| {
                format!(
                    "apply_patch refused: {objection}; {}",
                    not_approved(ctx, "this change")
                )
            })
        };
        if let Some(message) = refusal {
            emit(EventMsg::PatchApplied {
                call_id: call.call_id.clone(),
                changes: attempted,
                status: PatchApplyStatus::Failed,
                message: message.clone(),
            });
            return ToolResult::refused(call, message);
        }
    }
    let result = patch.and_then(|patch| apply_patch(cwd, &patch));
    // The model sees the patch as a command result, as with Codex.
    let output = format_patch_for_model(&result, started.elapsed());
    match result {
        Ok(report) => {
            emit(EventMsg::PatchApplied {
                call_id: call.call_id.clone(),
                message: report.summary(),
                changes: report.changes,
                status: PatchApplyStatus::Completed,
            });
            ToolResult {
                call: call.clone(),
                output,
                executed: true,
                success: true,
                changed_files: true,
                exit_code: None,
            }
        }
        Err(err) => {
            emit(EventMsg::PatchApplied {
                call_id: call.call_id.clone(),
                changes: attempted,
                status: PatchApplyStatus::Failed,
                message: err.to_string(),
            });
            ToolResult {
                call: call.clone(),
                output,
                executed: true,
                success: false,
                changed_files: false,
                exit_code: None,
            }
        }
    }
}
