//! OpenTelemetry GenAI semantic-convention names for spans and attributes, and the
//! `error.type` vocabulary used on failed model calls.

/// `gen_ai.operation.name` of the agent turn span.
pub const OPERATION_INVOKE_AGENT: &str = "invoke_agent";
/// `gen_ai.operation.name` of the model call span.
pub const OPERATION_CHAT: &str = "chat";
/// `gen_ai.operation.name` of the tool call span.
pub const OPERATION_EXECUTE_TOOL: &str = "execute_tool";

/// Attribute keys used on GenAI spans and metrics.
pub mod attr {
    /// `gen_ai.operation.name`.
    pub const OPERATION_NAME: &str = "gen_ai.operation.name";
    /// `gen_ai.provider.name`.
    pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
    /// `gen_ai.agent.name`.
    pub const AGENT_NAME: &str = "gen_ai.agent.name";
    /// `gen_ai.conversation.id` (the thread id).
    pub const CONVERSATION_ID: &str = "gen_ai.conversation.id";
    /// `gen_ai.request.model`.
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    /// `gen_ai.response.id`.
    pub const RESPONSE_ID: &str = "gen_ai.response.id";
    /// `gen_ai.response.model`.
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    /// `gen_ai.usage.input_tokens` (cached tokens included).
    pub const USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    /// `gen_ai.usage.output_tokens` (reasoning tokens included).
    pub const USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    /// `gen_ai.usage.cache_read.input_tokens`.
    pub const USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
    /// `gen_ai.usage.reasoning.output_tokens`.
    pub const USAGE_REASONING_OUTPUT_TOKENS: &str = "gen_ai.usage.reasoning.output_tokens";
    /// `gen_ai.token.type` (`input` / `output`) on the token usage histogram.
    pub const TOKEN_TYPE: &str = "gen_ai.token.type";
    /// `gen_ai.tool.name`.
    pub const TOOL_NAME: &str = "gen_ai.tool.name";
    /// `gen_ai.tool.call.id`.
    pub const TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
    /// `gen_ai.tool.type` (`function` or `extension`).
    pub const TOOL_TYPE: &str = "gen_ai.tool.type";
    /// `server.address`.
    pub const SERVER_ADDRESS: &str = "server.address";
    /// `server.port`.
    pub const SERVER_PORT: &str = "server.port";
    /// `http.response.status_code`.
    pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    /// `error.type`.
    pub const ERROR_TYPE: &str = "error.type";
    /// `quest.turn.id`.
    pub const TURN_ID: &str = "quest.turn.id";
    /// `quest.turn.trigger` (`user` / `goal` / `exec`).
    pub const TURN_TRIGGER: &str = "quest.turn.trigger";
    /// `quest.goal.id`.
    pub const GOAL_ID: &str = "quest.goal.id";
    /// `quest.goal.status`.
    pub const GOAL_STATUS: &str = "quest.goal.status";
    /// `quest.retry.attempt`.
    pub const RETRY_ATTEMPT: &str = "quest.retry.attempt";
    /// `quest.tool.requested_by` (the requesting call's `gen_ai.response.id`).
    pub const TOOL_REQUESTED_BY: &str = "quest.tool.requested_by";
    /// Codex's reasoning token attribute, kept beside the GenAI one.
    pub const CODEX_REASONING_OUTPUT_TOKENS: &str = "codex.usage.reasoning_output_tokens";
    /// Codex's total token attribute.
    pub const CODEX_TOTAL_TOKENS: &str = "codex.usage.total_tokens";
    /// GenAI content attributes, recorded only with content capture on.
    pub const INPUT_MESSAGES: &str = "gen_ai.input.messages";
    /// See [`INPUT_MESSAGES`].
    pub const OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
    /// See [`INPUT_MESSAGES`].
    pub const SYSTEM_INSTRUCTIONS: &str = "gen_ai.system_instructions";
    /// See [`INPUT_MESSAGES`].
    pub const TOOL_DEFINITIONS: &str = "gen_ai.tool.definitions";
    /// See [`INPUT_MESSAGES`].
    pub const TOOL_CALL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
    /// See [`INPUT_MESSAGES`].
    pub const TOOL_CALL_RESULT: &str = "gen_ai.tool.call.result";
}

/// Why a model call failed, as recorded in `error.type` (HTTP failures use the status code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelErrorType {
    /// The account's usage limit was hit.
    UsageLimitReached,
    /// 429 / rate limited.
    RateLimited,
    /// The SSE stream ended early.
    StreamDisconnected,
    /// No SSE event within the idle timeout.
    IdleTimeout,
    /// `response.failed`.
    ResponseFailed,
    /// `response.incomplete`.
    ResponseIncomplete,
    /// The connection could not be made.
    ConnectionFailed,
    /// Anything else.
    Other,
}

impl ModelErrorType {
    /// The `error.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelErrorType::UsageLimitReached => "usage_limit_reached",
            ModelErrorType::RateLimited => "rate_limited",
            ModelErrorType::StreamDisconnected => "stream_disconnected",
            ModelErrorType::IdleTimeout => "idle_timeout",
            ModelErrorType::ResponseFailed => "response_failed",
            ModelErrorType::ResponseIncomplete => "response_incomplete",
            ModelErrorType::ConnectionFailed => "connection_failed",
            ModelErrorType::Other => "_OTHER",
        }
    }
}

/// `invoke_agent {agent}` — the root span of a turn.
pub fn invoke_agent_span_name(agent_name: &str) -> String {
    format!("{OPERATION_INVOKE_AGENT} {agent_name}")
}

/// `chat {model}` — one model HTTP request attempt.
pub fn chat_span_name(request_model: &str) -> String {
    format!("{OPERATION_CHAT} {request_model}")
}

/// `execute_tool {tool}` — one tool call.
pub fn execute_tool_span_name(tool_name: &str) -> String {
    format!("{OPERATION_EXECUTE_TOOL} {tool_name}")
}

/// `gen_ai.provider.name` for a model provider: `openai` for OpenAI endpoints, else the id.
pub fn provider_name(provider_id: &str, base_url: &str) -> String {
    let host = base_url
        .split_once("://")
        .map_or(base_url, |(_, rest)| rest)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    if host == "api.openai.com"
        || host.ends_with(".openai.com")
        || host == "chatgpt.com"
        || host.ends_with(".chatgpt.com")
    {
        "openai".to_string()
    } else {
        provider_id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_names_and_provider() {
        assert_eq!(invoke_agent_span_name("quest"), "invoke_agent quest");
        assert_eq!(chat_span_name("gpt-5.5"), "chat gpt-5.5");
        assert_eq!(
            execute_tool_span_name("exec_command"),
            "execute_tool exec_command"
        );
        assert_eq!(
            provider_name("openai", "https://api.openai.com/v1"),
            "openai"
        );
        assert_eq!(
            provider_name("ollama", "http://localhost:11434/v1"),
            "ollama"
        );
        assert_eq!(ModelErrorType::Other.as_str(), "_OTHER");
    }
}
