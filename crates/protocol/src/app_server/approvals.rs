//! Server→client approval requests of the app-server v2 protocol, as Codex 0.169 names them:
//! `item/commandExecution/requestApproval`, `item/fileChange/requestApproval`, and the
//! `mcpServer/elicitation/request` form Codex uses to ask before an MCP tool call, plus the
//! client's answers and `serverRequest/resolved`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::sandbox::ReviewDecision;

/// `item/commandExecution/requestApproval`.
pub const COMMAND_APPROVAL_METHOD: &str = "item/commandExecution/requestApproval";
/// `item/fileChange/requestApproval`.
pub const FILE_CHANGE_APPROVAL_METHOD: &str = "item/fileChange/requestApproval";
/// `mcpServer/elicitation/request` (an MCP tool-call approval).
pub const MCP_ELICITATION_METHOD: &str = "mcpServer/elicitation/request";
/// `serverRequest/resolved`.
pub const SERVER_REQUEST_RESOLVED_METHOD: &str = "serverRequest/resolved";
/// `_meta.codex_approval_kind` of an MCP tool-call approval.
pub const MCP_TOOL_CALL_APPROVAL_KIND: &str = "mcp_tool_call";

/// `item/commandExecution/requestApproval` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandExecutionRequestApprovalParams {
    /// Thread.
    pub thread_id: String,
    /// Turn that asks.
    pub turn_id: String,
    /// The `commandExecution` item the request is about.
    pub item_id: String,
    /// Unix milliseconds when the request started.
    pub started_at_ms: i64,
    /// Why approval is needed (the model's justification, or what the sandbox refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The command as displayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Its working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Parsed actions for display (`{"type": "unknown", "command": …}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_actions: Option<Vec<Value>>,
    /// The decisions a client may offer, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_decisions: Option<Vec<CommandExecutionApprovalDecision>>,
}

/// A client's decision on a command (`CommandExecutionApprovalDecision`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CommandExecutionApprovalDecision {
    /// Run it.
    Accept,
    /// Run it, and do not ask again for the same command in this thread.
    AcceptForSession,
    /// Run it and amend the exec policy (Quest has no exec policy: treated as `accept`).
    AcceptWithExecpolicyAmendment {
        /// The proposed command prefix.
        execpolicy_amendment: Vec<String>,
    },
    /// A network rule for a host (Quest has no per-host rules: `allow` accepts, `deny`
    /// declines).
    ApplyNetworkPolicyAmendment {
        /// `{"host", "action"}`.
        network_policy_amendment: Value,
    },
    /// Do not run it; the turn goes on.
    Decline,
    /// Do not run it and interrupt the turn.
    Cancel,
}

impl CommandExecutionApprovalDecision {
    /// What core does with it.
    pub fn review_decision(&self) -> ReviewDecision {
        match self {
            Self::Accept | Self::AcceptWithExecpolicyAmendment { .. } => ReviewDecision::Approved,
            Self::AcceptForSession => ReviewDecision::ApprovedForSession,
            Self::ApplyNetworkPolicyAmendment {
                network_policy_amendment,
            } => {
                if network_policy_amendment["action"] == "allow" {
                    ReviewDecision::Approved
                } else {
                    ReviewDecision::Denied
                }
            }
            Self::Decline => ReviewDecision::Denied,
            Self::Cancel => ReviewDecision::Abort,
        }
    }

    /// The decisions Quest offers for a command.
    pub fn offered() -> Vec<Self> {
        vec![
            Self::Accept,
            Self::AcceptForSession,
            Self::Decline,
            Self::Cancel,
        ]
    }
}

/// `item/commandExecution/requestApproval` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandExecutionRequestApprovalResponse {
    /// The decision.
    pub decision: CommandExecutionApprovalDecision,
}

/// `item/fileChange/requestApproval` params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileChangeRequestApprovalParams {
    /// Thread.
    pub thread_id: String,
    /// Turn that asks.
    pub turn_id: String,
    /// The `fileChange` item the request is about.
    pub item_id: String,
    /// Unix milliseconds when the request started.
    pub started_at_ms: i64,
    /// Why approval is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A root the change asks write access to for the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_root: Option<String>,
}

/// A client's decision on a file change (`FileChangeApprovalDecision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FileChangeApprovalDecision {
    /// Apply it.
    Accept,
    /// Apply it, and do not ask again for changes to the same files in this thread.
    AcceptForSession,
    /// Do not apply it; the turn goes on.
    Decline,
    /// Do not apply it and interrupt the turn.
    Cancel,
}

impl FileChangeApprovalDecision {
    /// What core does with it.
    pub fn review_decision(self) -> ReviewDecision {
        match self {
            Self::Accept => ReviewDecision::Approved,
            Self::AcceptForSession => ReviewDecision::ApprovedForSession,
            Self::Decline => ReviewDecision::Denied,
            Self::Cancel => ReviewDecision::Abort,
        }
    }
}

/// `item/fileChange/requestApproval` result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChangeRequestApprovalResponse {
    /// The decision.
    pub decision: FileChangeApprovalDecision,
}

/// `mcpServer/elicitation/request` params of an MCP tool-call approval (form mode, an empty
/// form, `_meta.codex_approval_kind = "mcp_tool_call"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpToolApprovalParams {
    /// Thread.
    pub thread_id: String,
    /// Turn that asks.
    pub turn_id: Option<String>,
    /// The MCP server.
    pub server_name: String,
    /// `form`.
    pub mode: String,
    /// The question shown to the person.
    pub message: String,
    /// The (empty) form.
    pub requested_schema: Value,
    /// Codex's approval metadata: kind, persistence offered, the tool's arguments.
    #[serde(rename = "_meta")]
    pub meta: Value,
}

impl McpToolApprovalParams {
    /// The request for calling `tool` of `server` with `arguments`.
    pub fn new(
        thread_id: String,
        turn_id: Option<String>,
        server: &str,
        tool: &str,
        arguments: &Value,
        description: Option<&str>,
    ) -> Self {
        let mut meta = json!({
            "codex_approval_kind": MCP_TOOL_CALL_APPROVAL_KIND,
            "persist": ["session"],
            "tool_name": tool,
            "tool_params": arguments,
        });
        if let Some(description) = description {
            meta["tool_description"] = json!(description);
        }
        McpToolApprovalParams {
            thread_id,
            turn_id,
            server_name: server.to_string(),
            mode: "form".to_string(),
            message: format!("Allow the {server} MCP server to run tool \"{tool}\"?"),
            requested_schema: json!({"type": "object", "properties": {}}),
            meta,
        }
    }
}

/// `mcpServer/elicitation/request` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct McpElicitationResponse {
    /// `accept`, `decline` or `cancel`.
    pub action: McpElicitationAction,
    /// Form content (unused for approvals).
    #[serde(default)]
    pub content: Option<Value>,
    /// Client metadata; `{"persist": "session"}` approves the tool for the session.
    #[serde(default, rename = "_meta")]
    pub meta: Option<Value>,
}

/// `McpServerElicitationAction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum McpElicitationAction {
    /// Go ahead.
    Accept,
    /// Do not call the tool; the turn goes on.
    Decline,
    /// Do not call the tool and interrupt the turn.
    Cancel,
}

impl McpElicitationResponse {
    /// What core does with it.
    pub fn review_decision(&self) -> ReviewDecision {
        match self.action {
            McpElicitationAction::Accept => {
                let persist = self.meta.as_ref().and_then(|m| m.get("persist"));
                if persist.is_some_and(|p| p == "session" || p == "always") {
                    ReviewDecision::ApprovedForSession
                } else {
                    ReviewDecision::Approved
                }
            }
            McpElicitationAction::Decline => ReviewDecision::Denied,
            McpElicitationAction::Cancel => ReviewDecision::Abort,
        }
    }
}

/// `serverRequest/resolved` params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerRequestResolvedNotification {
    /// Thread.
    pub thread_id: String,
    /// The server request that no longer waits.
    pub request_id: crate::app_server::jsonrpc::RequestId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_use_the_wire_names() {
        for (wire, decision) in [
            (json!("accept"), ReviewDecision::Approved),
            (
                json!("acceptForSession"),
                ReviewDecision::ApprovedForSession,
            ),
            (json!("decline"), ReviewDecision::Denied),
            (json!("cancel"), ReviewDecision::Abort),
            (
                json!({"acceptWithExecpolicyAmendment": {"execpolicy_amendment": ["cargo"]}}),
                ReviewDecision::Approved,
            ),
            (
                json!({"applyNetworkPolicyAmendment": {"network_policy_amendment": {"host": "h", "action": "deny"}}}),
                ReviewDecision::Denied,
            ),
        ] {
            let parsed: CommandExecutionRequestApprovalResponse =
                serde_json::from_value(json!({ "decision": wire })).unwrap();
            assert_eq!(parsed.decision.review_decision(), decision, "{wire}");
        }
        let parsed: FileChangeRequestApprovalResponse =
            serde_json::from_value(json!({"decision": "acceptForSession"})).unwrap();
        assert_eq!(
            parsed.decision.review_decision(),
            ReviewDecision::ApprovedForSession
        );
        assert!(
            serde_json::from_value::<FileChangeRequestApprovalResponse>(
                json!({"decision": "approved"})
            )
            .is_err()
        );
        let mcp: McpElicitationResponse = serde_json::from_value(
            json!({"action": "accept", "content": {}, "_meta": {"persist": "session"}}),
        )
        .unwrap();
        assert_eq!(mcp.review_decision(), ReviewDecision::ApprovedForSession);
        let mcp: McpElicitationResponse =
            serde_json::from_value(json!({"action": "decline"})).unwrap();
        assert_eq!(mcp.review_decision(), ReviewDecision::Denied);
    }

    #[test]
    fn command_request_serializes_camel_case() {
        let params = CommandExecutionRequestApprovalParams {
            thread_id: "t".into(),
            turn_id: "u".into(),
            item_id: "call_1".into(),
            started_at_ms: 5,
            reason: Some("needs network".into()),
            command: Some("curl x".into()),
            cwd: Some("/w".into()),
            command_actions: None,
            available_decisions: Some(CommandExecutionApprovalDecision::offered()),
        };
        assert_eq!(
            serde_json::to_value(&params).unwrap(),
            json!({
                "threadId": "t", "turnId": "u", "itemId": "call_1", "startedAtMs": 5,
                "reason": "needs network", "command": "curl x", "cwd": "/w",
                "availableDecisions": ["accept", "acceptForSession", "decline", "cancel"],
            })
        );
    }
}
