//! MCP servers in a thread: started in the background when the thread starts, offered to the
//! model as functions (`mcp__server__tool`) plus Codex's resource tools, and called from the
//! turn loop with begin/end events for front-ends.
//!
//! A server failure never fails a turn: the model gets an error result naming the server, and a
//! call that fails counts as an unsuccessful tool call (so a goal whose only activity is a broken
//! server trips the no-progress and repeated-blocker breakers).

use std::sync::Arc;
use std::time::Instant;

use quest_mcp::{McpConnectionManager, McpError, McpTool, McpToolOutput, ModelImage, WarningSink};
use quest_protocol::exec_events::McpToolCallItemResult;
use quest_protocol::{ContentItem, ResponseItem};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use quest_protocol::sandbox::{McpApprovalRequest, ReviewDecision};

use crate::approval::mcp_call_needs_approval;
use crate::config::Config;
use crate::protocol::EventMsg;
use crate::tools::{ToolCall, ToolContext, ToolResult, ask, not_approved};

/// `list_mcp_resources`.
pub const LIST_RESOURCES: &str = "list_mcp_resources";
/// `list_mcp_resource_templates`.
pub const LIST_RESOURCE_TEMPLATES: &str = "list_mcp_resource_templates";
/// `read_mcp_resource`.
pub const READ_RESOURCE: &str = "read_mcp_resource";

/// A thread's MCP servers, available once their concurrent start has finished (each server
/// bounded by its startup timeout).
#[derive(Clone)]
pub struct McpServersHandle {
    ready: watch::Receiver<Option<Arc<McpConnectionManager>>>,
}

impl McpServersHandle {
    /// Starts every enabled server in the background; `None` when none is enabled. Must be
    /// called inside the Tokio runtime. Warnings (a server that fails to start, exits, is
    /// restarted) go to `warn`.
    pub fn start(config: &Config, warn: WarningSink) -> Option<Self> {
        if !config.mcp_servers.iter().any(|(_, server)| server.enabled) {
            return None;
        }
        let (tx, ready) = watch::channel(None);
        let servers = config.mcp_servers.clone();
        let cwd = config.cwd.clone();
        tokio::spawn(async move {
            let (manager, _failures) = McpConnectionManager::start(&servers, &cwd, warn).await;
            let _ = tx.send(Some(Arc::new(manager)));
        });
        Some(McpServersHandle { ready })
    }

    /// The servers, once started (waits for the start to finish).
    pub async fn manager(&self) -> Option<Arc<McpConnectionManager>> {
        let mut ready = self.ready.clone();
        let started = ready.wait_for(Option::is_some).await.ok()?;
        started.clone()
    }

    /// Stops every server (waits for a start in progress first).
    pub async fn shutdown(&self) {
        if let Some(manager) = self.manager().await {
            manager.shutdown().await;
        }
    }
}

/// The function specs for the model: every server's tools, then the three resource tools.
pub fn tool_specs(manager: &McpConnectionManager) -> Vec<Value> {
    let mut specs: Vec<Value> = manager.tools().iter().map(McpTool::function_spec).collect();
    specs.extend(resource_tool_specs());
    specs
}

/// Codex's resource tools.
pub fn resource_tool_specs() -> Vec<Value> {
    let server =
        json!({"type": "string", "description": "MCP server name. Omit to list every server's."});
    let cursor = json!({"type": "string", "description": "Cursor from a previous call's nextCursor (needs server)."});
    vec![
        json!({
            "type": "function",
            "name": LIST_RESOURCES,
            "description": "Lists resources provided by MCP servers (files, database schemas, application data). Prefer resources over web search when possible.",
            "strict": false,
            "parameters": {"type": "object", "properties": {"server": server, "cursor": cursor}, "additionalProperties": false}
        }),
        json!({
            "type": "function",
            "name": LIST_RESOURCE_TEMPLATES,
            "description": "Lists resource templates (parameterised resource URIs) provided by MCP servers.",
            "strict": false,
            "parameters": {"type": "object", "properties": {"server": server, "cursor": cursor}, "additionalProperties": false}
        }),
        json!({
            "type": "function",
            "name": READ_RESOURCE,
            "description": "Reads one resource of an MCP server, given the server name and the resource URI (from list_mcp_resources).",
            "strict": false,
            "parameters": {
                "type": "object",
                "properties": {
                    "server": {"type": "string", "description": "MCP server name, exactly as listed."},
                    "uri": {"type": "string", "description": "Resource URI, exactly as listed."}
                },
                "required": ["server", "uri"],
                "additionalProperties": false
            }
        }),
    ]
}

/// What an MCP call adds to its [`ToolResult`].
#[derive(Clone, Debug, Default)]
pub struct McpCallInfo {
    /// The server called (for telemetry's `mcp_server`).
    pub server: String,
    /// Images the tool returned, sent to the model after the tool outputs.
    pub images: Vec<ModelImage>,
}

/// Which MCP call a model tool call is, if any.
#[derive(Clone, Debug)]
pub enum McpCall {
    /// A server's tool.
    Tool(McpTool),
    /// One of the resource tools.
    Resource(&'static str),
    /// `mcp__<server>__…` naming a configured server that does not offer that tool now (it
    /// failed to start, or the tool is filtered out or gone).
    Unavailable {
        /// The server.
        server: String,
    },
}

/// Classifies a call by name.
pub fn classify(manager: &McpConnectionManager, name: &str) -> Option<McpCall> {
    match name {
        LIST_RESOURCES => Some(McpCall::Resource(LIST_RESOURCES)),
        LIST_RESOURCE_TEMPLATES => Some(McpCall::Resource(LIST_RESOURCE_TEMPLATES)),
        READ_RESOURCE => Some(McpCall::Resource(READ_RESOURCE)),
        _ => manager.resolve(name).map(McpCall::Tool).or_else(|| {
            manager
                .server_names()
                .into_iter()
                .find(|server| name.starts_with(&format!("mcp__{server}__")))
                .map(|server| McpCall::Unavailable { server })
        }),
    }
}

/// Answers a call of a tool the server does not offer, saying why.
pub async fn run_unavailable(
    manager: &McpConnectionManager,
    server: &str,
    call: &ToolCall,
) -> (ToolResult, McpCallInfo) {
    let status = manager
        .statuses()
        .await
        .into_iter()
        .find(|(name, _)| name == server)
        .map(|(_, status)| status);
    let output = match status {
        Some(quest_mcp::ServerStatus::Failed(error)) => {
            format!("`{}` is not available: {error}", call.name)
        }
        _ => format!(
            "MCP server `{server}` has no tool behind `{}`; use one of the functions offered",
            call.name
        ),
    };
    let info = McpCallInfo {
        server: server.to_string(),
        images: Vec::new(),
    };
    (refused(call, output), info)
}

fn executed(call: &ToolCall, output: String, success: bool) -> ToolResult {
    ToolResult {
        call: call.clone(),
        output,
        executed: true,
        success,
        changed_files: false,
        exit_code: None,
    }
}

fn refused(call: &ToolCall, output: String) -> ToolResult {
    ToolResult {
        executed: false,
        ..executed(call, output, false)
    }
}

/// Runs a server's tool: begin/end events, the result (capped) for the model.
pub async fn run_tool(
    manager: &McpConnectionManager,
    tool: &McpTool,
    call: &ToolCall,
    ctx: &ToolContext,
    emit: &(dyn Fn(EventMsg) + Send + Sync),
) -> (ToolResult, McpCallInfo) {
    let mut info = McpCallInfo {
        server: tool.server.clone(),
        images: Vec::new(),
    };
    let arguments = if call.payload.trim().is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_str::<Value>(&call.payload)
    };
    let arguments = match arguments {
        Ok(value @ (Value::Object(_) | Value::Null)) => value,
        Ok(_) | Err(_) => {
            let message = format!(
                "failed to parse function arguments for `{}`: expected a JSON object",
                call.name
            );
            return (refused(call, message), info);
        }
    };
    let key = format!("{}/{}", tool.server, tool.name);
    if mcp_call_needs_approval(
        ctx.approval_policy,
        tool.read_only,
        ctx.approvals.tool_approved_for_session(&key),
    ) {
        let request = McpApprovalRequest {
            call_id: call.call_id.clone(),
            server: tool.server.clone(),
            tool: tool.name.clone(),
            arguments: arguments.clone(),
            description: (!tool.description.is_empty()).then(|| tool.description.clone()),
        };
        let decision = ask(
            ctx,
            emit,
            &call.call_id,
            EventMsg::McpApprovalRequest(request),
        )
        .await;
        match decision {
            ReviewDecision::Approved => {}
            ReviewDecision::ApprovedForSession => ctx.approvals.approve_tool_for_session(&key),
            ReviewDecision::Denied | ReviewDecision::Abort => {
                let what = format!("calling `{}` of MCP server `{}`", tool.name, tool.server);
                let message = not_approved(ctx, &what);
                // Front-ends show the call that did not happen, with why.
                emit(EventMsg::McpToolCallBegin {
                    call_id: call.call_id.clone(),
                    server: tool.server.clone(),
                    tool: tool.name.clone(),
                    arguments: arguments.clone(),
                });
                emit(EventMsg::McpToolCallEnd {
                    call_id: call.call_id.clone(),
                    server: tool.server.clone(),
                    tool: tool.name.clone(),
                    arguments,
                    result: None,
                    is_error: false,
                    error: Some(message.clone()),
                    duration_ms: 0,
                });
                return (refused(call, message), info);
            }
        }
    }
    emit(EventMsg::McpToolCallBegin {
        call_id: call.call_id.clone(),
        server: tool.server.clone(),
        tool: tool.name.clone(),
        arguments: arguments.clone(),
    });
    let started = Instant::now();
    let outcome = tokio::select! {
        biased;
        _ = ctx.cancel.cancelled() => Err(McpError::Request {
            server: tool.server.clone(),
            method: "tools/call".to_string(),
            message: "interrupted".to_string(),
        }),
        outcome = manager.call_tool(&tool.server, &tool.name, arguments.clone()) => outcome,
    };
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (result, end) = match outcome {
        Ok(output) => {
            let model = output.to_model(ctx.max_output_bytes);
            info.images = model.images;
            let success = !output.is_error;
            (
                executed(call, model.text, success),
                (
                    Some(McpToolCallItemResult {
                        content: output.content.clone(),
                        structured_content: output.structured_content.clone(),
                    }),
                    output.is_error,
                    None,
                ),
            )
        }
        Err(error) => {
            let message = error.to_string();
            let text = McpToolOutput::error_text(message.clone())
                .to_model(ctx.max_output_bytes)
                .text;
            (executed(call, text, false), (None, false, Some(message)))
        }
    };
    emit(EventMsg::McpToolCallEnd {
        call_id: call.call_id.clone(),
        server: tool.server.clone(),
        tool: tool.name.clone(),
        arguments,
        result: end.0,
        is_error: end.1,
        error: end.2,
        duration_ms,
    });
    (result, info)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    server: String,
    uri: String,
}

/// Runs one of the resource tools; the model gets the JSON answer (capped).
pub async fn run_resource_tool(
    manager: &McpConnectionManager,
    name: &'static str,
    call: &ToolCall,
    ctx: &ToolContext,
) -> (ToolResult, McpCallInfo) {
    let payload = if call.payload.trim().is_empty() {
        "{}"
    } else {
        call.payload.as_str()
    };
    let parse_error = |err: serde_json::Error| {
        refused(
            call,
            format!("failed to parse function arguments for `{name}`: {err}"),
        )
    };
    let (server, outcome) = match name {
        READ_RESOURCE => match serde_json::from_str::<ReadArgs>(payload) {
            Ok(args) => (
                args.server.clone(),
                manager.read_resource(&args.server, &args.uri).await,
            ),
            Err(err) => return (parse_error(err), McpCallInfo::default()),
        },
        _ => match serde_json::from_str::<ListArgs>(payload) {
            Ok(args) => {
                let server = args.server.clone().unwrap_or_default();
                let listed = if name == LIST_RESOURCES {
                    manager
                        .list_resources(args.server.as_deref(), args.cursor)
                        .await
                } else {
                    manager
                        .list_resource_templates(args.server.as_deref(), args.cursor)
                        .await
                };
                (server, listed)
            }
            Err(err) => return (parse_error(err), McpCallInfo::default()),
        },
    };
    let info = McpCallInfo {
        server,
        images: Vec::new(),
    };
    let result = match outcome {
        Ok(value) => {
            let (text, _) =
                quest_mcp::convert::cap_middle(&value.to_string(), ctx.max_output_bytes);
            executed(call, text, true)
        }
        Err(error) => executed(call, error.to_string(), false),
    };
    (result, info)
}

/// The message that shows the model the images of this round's MCP results (the Responses API
/// takes images in messages, not in function outputs).
pub fn images_message(images: &[(String, Vec<ModelImage>)]) -> Option<ResponseItem> {
    if images.iter().all(|(_, list)| list.is_empty()) {
        return None;
    }
    let mut content = Vec::new();
    for (tool, list) in images {
        for (index, image) in list.iter().enumerate() {
            content.push(ContentItem::InputText {
                text: format!("Image {} returned by {tool}:", index + 1),
            });
            content.push(ContentItem::InputImage {
                image_url: image.data_url(),
            });
        }
    }
    Some(ResponseItem::Message {
        id: None,
        role: "user".to_string(),
        content,
    })
}
