//! How far commands are trusted: the sandbox mode and policy they run under, the approval policy
//! that decides when a person is asked, and the shapes of an approval request and its answer.
//!
//! Names and string forms follow Codex's `config.toml` and protocol (`workspace-write`,
//! `on-request`, `approved_for_session`), so a Codex user's settings mean the same here.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `sandbox_mode` / `--sandbox`: what a command may touch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// Read anything, write nothing (except `/dev/null` and the like), no network.
    ReadOnly,
    /// Read anything; write only in the workspace, the writable roots and the temp dirs; `.git`
    /// and Quest's home stay read-only; network only when `network_access` is set.
    #[default]
    WorkspaceWrite,
    /// No confinement at all.
    DangerFullAccess,
}

impl SandboxMode {
    /// The config spelling (`workspace-write`).
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::ReadOnly => "read-only",
            SandboxMode::WorkspaceWrite => "workspace-write",
            SandboxMode::DangerFullAccess => "danger-full-access",
        }
    }
}

impl std::fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[sandbox_workspace_write]` table of `config.toml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxWorkspaceWrite {
    /// Directories writable in addition to the workspace and the temp dirs.
    pub writable_roots: Vec<PathBuf>,
    /// Allow network access (TCP and every other socket family).
    pub network_access: bool,
    /// Do not make `$TMPDIR` writable.
    pub exclude_tmpdir_env_var: bool,
    /// Do not make `/tmp` writable.
    pub exclude_slash_tmp: bool,
}

/// The sandbox a command runs under: a mode and, for `workspace-write`, its settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum SandboxPolicy {
    /// See [`SandboxMode::ReadOnly`].
    ReadOnly,
    /// See [`SandboxMode::WorkspaceWrite`].
    WorkspaceWrite(SandboxWorkspaceWrite),
    /// See [`SandboxMode::DangerFullAccess`].
    DangerFullAccess,
}

impl SandboxPolicy {
    /// The policy of `mode` with the given `[sandbox_workspace_write]` settings (ignored by the
    /// other modes).
    pub fn new(mode: SandboxMode, workspace_write: SandboxWorkspaceWrite) -> Self {
        match mode {
            SandboxMode::ReadOnly => SandboxPolicy::ReadOnly,
            SandboxMode::WorkspaceWrite => SandboxPolicy::WorkspaceWrite(workspace_write),
            SandboxMode::DangerFullAccess => SandboxPolicy::DangerFullAccess,
        }
    }

    /// The mode.
    pub fn mode(&self) -> SandboxMode {
        match self {
            SandboxPolicy::ReadOnly => SandboxMode::ReadOnly,
            SandboxPolicy::WorkspaceWrite(_) => SandboxMode::WorkspaceWrite,
            SandboxPolicy::DangerFullAccess => SandboxMode::DangerFullAccess,
        }
    }

    /// Whether commands may open network sockets.
    pub fn has_network(&self) -> bool {
        match self {
            SandboxPolicy::ReadOnly => false,
            SandboxPolicy::WorkspaceWrite(ww) => ww.network_access,
            SandboxPolicy::DangerFullAccess => true,
        }
    }
}

/// `approval_policy` / `--ask-for-approval`: when a person is asked before a command runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AskForApproval {
    /// Only commands known to be read-only run without asking; everything else is asked.
    Untrusted,
    /// Everything runs in the sandbox; a command that fails there is offered to the person to
    /// run again without the sandbox.
    OnFailure,
    /// Everything runs in the sandbox; the model may ask (with a justification) to run one
    /// command without it, and the person decides.
    OnRequest,
    /// Never ask: commands run in the sandbox and failures go back to the model.
    #[default]
    Never,
}

impl AskForApproval {
    /// The config spelling (`on-request`).
    pub fn as_str(self) -> &'static str {
        match self {
            AskForApproval::Untrusted => "untrusted",
            AskForApproval::OnFailure => "on-failure",
            AskForApproval::OnRequest => "on-request",
            AskForApproval::Never => "never",
        }
    }
}

impl AskForApproval {
    /// The name on the app-server v2 wire. Codex 0.169's schema no longer has `on-failure`;
    /// its closest value is `on-request` (commands run in the sandbox and a person may be asked
    /// to let one run outside it).
    pub fn app_server_name(self) -> &'static str {
        match self {
            AskForApproval::OnFailure => "on-request",
            other => other.as_str(),
        }
    }
}

impl std::fmt::Display for AskForApproval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A person's answer to an approval request (Codex's `ReviewDecision`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    /// Run it (this once).
    Approved,
    /// Run it, and do not ask again for the same command in this thread.
    ApprovedForSession,
    /// Do not run it; the model is told and the turn goes on.
    #[default]
    Denied,
    /// Do not run it, and interrupt the turn.
    Abort,
}

impl ReviewDecision {
    /// Whether the action may go ahead.
    pub fn is_approved(self) -> bool {
        matches!(
            self,
            ReviewDecision::Approved | ReviewDecision::ApprovedForSession
        )
    }
}

/// Why a command needs a person's approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalReason {
    /// The model asked to run the command outside the sandbox (`on-request`).
    EscalationRequested,
    /// The command failed in the sandbox; approving runs it again without the sandbox
    /// (`on-failure`).
    SandboxDenied,
    /// The command is not known to be read-only (`untrusted`).
    Untrusted,
    /// A file change writes outside the writable roots.
    OutsideWritableRoots,
    /// A call to an MCP server's tool that may have side effects.
    McpToolCall,
}

/// A command waiting for a person's decision. The turn that asked waits until an
/// `ExecApproval` op with the same `call_id` answers it (or the turn is interrupted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecApprovalRequest {
    /// The tool call; the answer names it.
    pub call_id: String,
    /// The command as displayed (`/bin/bash -lc 'cargo test'`).
    pub command: String,
    /// Its working directory.
    pub cwd: PathBuf,
    /// Why approval is needed.
    pub reason: ApprovalReason,
    /// The model's justification, or what failed in the sandbox.
    pub justification: Option<String>,
    /// Whether approving runs the command without the sandbox.
    pub unsandboxed: bool,
}

/// A file change waiting for a person's decision, answered by a `PatchApproval` op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchApprovalRequest {
    /// The tool call; the answer names it.
    pub call_id: String,
    /// The files the patch would change, each with its diff.
    pub changes: Vec<crate::exec_events::PatchFileChange>,
    /// Why approval is needed.
    pub reason: ApprovalReason,
    /// What the sandbox objected to.
    pub justification: Option<String>,
}

/// A call of an MCP server's tool waiting for a person's decision, answered by an
/// `McpApproval` op.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct McpApprovalRequest {
    /// The tool call; the answer names it.
    pub call_id: String,
    /// The MCP server.
    pub server: String,
    /// The tool's name on the server.
    pub tool: String,
    /// The arguments the model passes.
    pub arguments: serde_json::Value,
    /// The tool's description, for the person.
    pub description: Option<String>,
}

/// How an approval request ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalResolved {
    /// The tool call that asked.
    pub call_id: String,
    /// The decision (`abort` when the turn was interrupted while the request waited).
    pub decision: ReviewDecision,
    /// Nobody could be asked (a headless `quest exec`): the request was declined at once.
    pub automatic: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_forms_match_codex_config() {
        for (mode, text) in [
            (SandboxMode::ReadOnly, "read-only"),
            (SandboxMode::WorkspaceWrite, "workspace-write"),
            (SandboxMode::DangerFullAccess, "danger-full-access"),
        ] {
            assert_eq!(serde_json::to_value(mode).unwrap(), text);
            assert_eq!(mode.as_str(), text);
        }
        for (policy, text) in [
            (AskForApproval::Untrusted, "untrusted"),
            (AskForApproval::OnFailure, "on-failure"),
            (AskForApproval::OnRequest, "on-request"),
            (AskForApproval::Never, "never"),
        ] {
            assert_eq!(serde_json::to_value(policy).unwrap(), text);
            assert_eq!(policy.as_str(), text);
        }
        assert_eq!(
            serde_json::to_value(ReviewDecision::ApprovedForSession).unwrap(),
            "approved_for_session"
        );
    }

    #[test]
    fn network_follows_the_mode() {
        assert!(!SandboxPolicy::ReadOnly.has_network());
        assert!(SandboxPolicy::DangerFullAccess.has_network());
        let mut ww = SandboxWorkspaceWrite::default();
        assert!(!SandboxPolicy::WorkspaceWrite(ww.clone()).has_network());
        ww.network_access = true;
        assert!(SandboxPolicy::new(SandboxMode::WorkspaceWrite, ww).has_network());
    }
}
