//! When a command or a file change needs a person's approval: pure decisions from the approval
//! policy, the sandbox mode and what the model asked, plus the per-thread table of pending
//! requests that front-ends answer with `ExecApproval` / `PatchApproval` ops.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use quest_protocol::sandbox::{ApprovalReason, AskForApproval, ReviewDecision, SandboxMode};
use tokio::sync::oneshot;

/// What to do with a command before running it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandPlan {
    /// Run it, in the sandbox or not.
    Run {
        /// Confine it with the thread's sandbox.
        sandboxed: bool,
    },
    /// Ask a person first.
    Ask {
        /// Why.
        reason: ApprovalReason,
        /// Whether approving runs it outside the sandbox.
        unsandboxed: bool,
    },
    /// Refuse without asking; the text goes back to the model.
    Reject(String),
}

/// Decides how a command runs: `escalate` is the model asking to run it outside the sandbox
/// (`sandbox_permissions: "require_escalated"`), `known_safe` says the command only reads,
/// `approved_for_session` that a person already approved this exact command in this thread.
pub fn plan_command(
    policy: AskForApproval,
    mode: SandboxMode,
    escalate: bool,
    known_safe: bool,
    approved_for_session: bool,
) -> CommandPlan {
    let unconfined = mode == SandboxMode::DangerFullAccess;
    if escalate && !unconfined {
        return match policy {
            AskForApproval::Never => CommandPlan::Reject(
                "running a command outside the sandbox needs approval, and the approval policy is `never`; \
                 run it inside the sandbox or explain to the user what is needed"
                    .to_string(),
            ),
            _ if approved_for_session => CommandPlan::Run { sandboxed: false },
            AskForApproval::OnRequest | AskForApproval::OnFailure | AskForApproval::Untrusted => {
                CommandPlan::Ask {
                    reason: ApprovalReason::EscalationRequested,
                    unsandboxed: true,
                }
            }
        };
    }
    match policy {
        AskForApproval::Untrusted if !known_safe && !approved_for_session => CommandPlan::Ask {
            reason: ApprovalReason::Untrusted,
            unsandboxed: false,
        },
        AskForApproval::Untrusted
        | AskForApproval::OnFailure
        | AskForApproval::OnRequest
        | AskForApproval::Never => CommandPlan::Run {
            sandboxed: !unconfined,
        },
    }
}

/// Whether a call of an MCP tool waits for a person first: never under `never`; otherwise
/// unless the server marks the tool read-only (`readOnlyHint`) or a person approved the tool
/// for the session. MCP tools run outside the sandbox, so `on-failure` asks like `on-request`.
pub fn mcp_call_needs_approval(
    policy: AskForApproval,
    read_only: bool,
    approved_for_session: bool,
) -> bool {
    policy != AskForApproval::Never && !read_only && !approved_for_session
}

/// Whether a command that failed in the sandbox is offered to a person to run again without it
/// (`on-failure` only, and only when the failure looks like the sandbox's doing).
pub fn retry_unsandboxed(policy: AskForApproval, mode: SandboxMode, output: &str) -> bool {
    policy == AskForApproval::OnFailure
        && mode != SandboxMode::DangerFullAccess
        && looks_like_sandbox_denial(output)
}

/// Whether command output shows the marks of a sandbox denial (EACCES, EROFS, EPERM).
pub fn looks_like_sandbox_denial(output: &str) -> bool {
    [
        "Permission denied",
        "Read-only file system",
        "Operation not permitted",
    ]
    .iter()
    .any(|mark| output.contains(mark))
}

/// Programs that only read, run without asking under `untrusted`.
const SAFE_PROGRAMS: &[&str] = &[
    "ls", "cat", "head", "tail", "wc", "pwd", "echo", "grep", "rg", "which", "true", "false", "nl",
    "sort", "uniq", "cut", "tr", "stat", "file", "du", "df", "date", "uname", "whoami", "id",
    "basename", "dirname", "realpath", "printf", "test",
];

/// Git subcommands that only read.
const SAFE_GIT: &[&str] = &[
    "status",
    "log",
    "diff",
    "show",
    "rev-parse",
    "ls-files",
    "blame",
];

/// Whether a shell command line is known to only read: one simple command (no `;`, pipes,
/// redirections, substitutions or globbing) whose program is on the read-only list, `git` with
/// a read-only subcommand, `find` without actions that write or run, or `sed -n`.
pub fn is_known_safe_command(line: &str) -> bool {
    if line.chars().any(|c| {
        matches!(
            c,
            ';' | '|' | '&' | '>' | '<' | '$' | '`' | '(' | ')' | '\n' | '*' | '?' | '{'
        )
    }) {
        return false;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((program, args)) = words.split_first() else {
        return false;
    };
    match *program {
        "git" => args.first().is_some_and(|sub| SAFE_GIT.contains(sub)),
        "find" => !args.iter().any(|a| {
            matches!(
                *a,
                "-exec"
                    | "-execdir"
                    | "-ok"
                    | "-okdir"
                    | "-delete"
                    | "-fprint"
                    | "-fprintf"
                    | "-fls"
            )
        }),
        // Only line-range printing: `sed -n 10,20p file`.
        "sed" => {
            args.first() == Some(&"-n")
                && args.get(1).is_some_and(|script| {
                    script.strip_suffix('p').is_some_and(|range| {
                        !range.is_empty() && range.chars().all(|c| c.is_ascii_digit() || c == ',')
                    })
                })
        }
        p => SAFE_PROGRAMS.contains(&p),
    }
}

/// Requests of one thread waiting for an answer, and the commands approved for the session.
#[derive(Clone, Default)]
pub struct Approvals {
    inner: Arc<Mutex<ApprovalsInner>>,
    headless: bool,
}

#[derive(Default)]
struct ApprovalsInner {
    pending: HashMap<String, oneshot::Sender<ReviewDecision>>,
    approved_commands: BTreeSet<String>,
    approved_tools: BTreeSet<String>,
    /// A person answered a request since the current turn began.
    answered_this_turn: bool,
}

impl Approvals {
    /// Approvals of a thread; `headless` when nobody can answer (every request is declined at
    /// once).
    pub fn new(headless: bool) -> Self {
        Approvals {
            inner: Arc::default(),
            headless,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ApprovalsInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether nobody can answer requests.
    pub fn is_headless(&self) -> bool {
        self.headless
    }

    /// Registers a request for `call_id`; the receiver gets the answer.
    pub fn register(&self, call_id: &str) -> oneshot::Receiver<ReviewDecision> {
        let (tx, rx) = oneshot::channel();
        self.lock().pending.insert(call_id.to_string(), tx);
        rx
    }

    /// Answers the request for `call_id`; false when nothing waits for it (unknown id, already
    /// answered, or its turn ended).
    pub fn answer(&self, call_id: &str, decision: ReviewDecision) -> bool {
        let mut inner = self.lock();
        let answered = match inner.pending.remove(call_id) {
            Some(tx) => tx.send(decision).is_ok(),
            None => false,
        };
        inner.answered_this_turn |= answered;
        answered
    }

    /// Forgets a request that will not be answered (its turn was interrupted).
    pub fn withdraw(&self, call_id: &str) {
        self.lock().pending.remove(call_id);
    }

    /// Whether any request is waiting.
    pub fn any_pending(&self) -> bool {
        !self.lock().pending.is_empty()
    }

    /// A turn begins: forget whether the previous one waited for a person.
    pub fn begin_turn(&self) {
        self.lock().answered_this_turn = false;
    }

    /// Whether a person answered a request during the current turn: the turn waited on a
    /// person, so a goal does not count it as a turn without progress.
    pub fn answered_this_turn(&self) -> bool {
        self.lock().answered_this_turn
    }

    /// Remembers `command` as approved for the rest of the thread's life in this process.
    pub fn approve_for_session(&self, command: &str) {
        self.lock().approved_commands.insert(command.to_string());
    }

    /// Whether `command` was approved for the session.
    pub fn approved_for_session(&self, command: &str) -> bool {
        self.lock().approved_commands.contains(command)
    }

    /// Remembers an MCP tool (`server/tool`) as approved for the session.
    pub fn approve_tool_for_session(&self, tool: &str) {
        self.lock().approved_tools.insert(tool.to_string());
    }

    /// Whether an MCP tool was approved for the session.
    pub fn tool_approved_for_session(&self, tool: &str) -> bool {
        self.lock().approved_tools.contains(tool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AskForApproval::*;
    use SandboxMode::*;

    #[test]
    fn plan_table() {
        let run = |sandboxed| CommandPlan::Run { sandboxed };
        let ask = |reason, unsandboxed| CommandPlan::Ask {
            reason,
            unsandboxed,
        };
        // (policy, mode, escalate, safe, session) -> plan
        let table = [
            (Never, WorkspaceWrite, false, false, false, run(true)),
            (OnRequest, WorkspaceWrite, false, false, false, run(true)),
            (OnFailure, ReadOnly, false, false, false, run(true)),
            (
                OnRequest,
                WorkspaceWrite,
                true,
                false,
                false,
                ask(ApprovalReason::EscalationRequested, true),
            ),
            (OnRequest, WorkspaceWrite, true, false, true, run(false)),
            (
                Untrusted,
                WorkspaceWrite,
                false,
                false,
                false,
                ask(ApprovalReason::Untrusted, false),
            ),
            (Untrusted, WorkspaceWrite, false, true, false, run(true)),
            (Untrusted, WorkspaceWrite, false, false, true, run(true)),
            (Never, DangerFullAccess, true, false, false, run(false)),
            (
                Untrusted,
                DangerFullAccess,
                false,
                false,
                false,
                ask(ApprovalReason::Untrusted, false),
            ),
        ];
        for (policy, mode, escalate, safe, session, expected) in table {
            assert_eq!(
                plan_command(policy, mode, escalate, safe, session),
                expected,
                "{policy} {mode} escalate={escalate} safe={safe} session={session}"
            );
        }
        assert!(matches!(
            plan_command(Never, WorkspaceWrite, true, true, false),
            CommandPlan::Reject(_)
        ));
    }

    #[test]
    fn mcp_calls_ask_unless_never_read_only_or_approved() {
        assert!(!mcp_call_needs_approval(Never, false, false));
        for policy in [OnRequest, OnFailure, Untrusted] {
            assert!(mcp_call_needs_approval(policy, false, false), "{policy}");
            assert!(!mcp_call_needs_approval(policy, true, false), "{policy}");
            assert!(!mcp_call_needs_approval(policy, false, true), "{policy}");
        }
    }

    #[test]
    fn only_on_failure_retries_denials() {
        let denied = "touch: cannot touch '/x': Permission denied";
        assert!(retry_unsandboxed(OnFailure, WorkspaceWrite, denied));
        assert!(!retry_unsandboxed(OnFailure, WorkspaceWrite, "test failed"));
        assert!(!retry_unsandboxed(OnRequest, WorkspaceWrite, denied));
        assert!(!retry_unsandboxed(OnFailure, DangerFullAccess, denied));
    }

    #[test]
    fn safe_commands() {
        for safe in [
            "ls -la",
            "cat README.md",
            "git status",
            "git diff HEAD~1",
            "find . -name x.rs",
            "sed -n 1,10p f",
            "rg foo src",
        ] {
            assert!(is_known_safe_command(safe), "{safe}");
        }
        for unsafe_cmd in [
            "rm -rf /",
            "ls; rm x",
            "cat x > y",
            "echo $(id)",
            "git push",
            "find . -delete",
            "find . -exec rm {} +",
            "python3 -c 'print(1)'",
            "",
        ] {
            assert!(!is_known_safe_command(unsafe_cmd), "{unsafe_cmd}");
        }
    }

    #[tokio::test]
    async fn answers_reach_the_waiting_request_once() {
        let approvals = Approvals::default();
        let rx = approvals.register("call-1");
        assert!(approvals.any_pending());
        assert!(!approvals.answer("other", ReviewDecision::Approved));
        assert!(approvals.answer("call-1", ReviewDecision::Denied));
        assert!(!approvals.answer("call-1", ReviewDecision::Approved));
        assert_eq!(rx.await.unwrap(), ReviewDecision::Denied);
        assert!(!approvals.any_pending());
        assert!(approvals.answered_this_turn());
        approvals.begin_turn();
        assert!(!approvals.answered_this_turn());
        approvals.approve_for_session("cargo test");
        assert!(approvals.approved_for_session("cargo test"));
        assert!(!approvals.approved_for_session("cargo build"));
    }
}
