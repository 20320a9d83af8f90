//! Metric names, GenAI instrument settings and tag keys.

/// Counter: one per tool call (tags `tool`, `success`).
pub const TOOL_CALL_METRIC: &str = "codex.tool.call";
/// Duration histogram of tool calls.
pub const TOOL_CALL_DURATION_METRIC: &str = "codex.tool.call.duration_ms";
/// Counter: one per model HTTP request (tags `status`, `success`).
pub const API_REQUEST_METRIC: &str = "codex.api_request";
/// Duration histogram of model HTTP requests.
pub const API_REQUEST_DURATION_METRIC: &str = "codex.api_request.duration_ms";
/// Counter: one per SSE event (tags `kind`, `success`).
pub const SSE_EVENT_METRIC: &str = "codex.sse_event";
/// Duration histogram of SSE events.
pub const SSE_EVENT_DURATION_METRIC: &str = "codex.sse_event.duration_ms";
/// Histogram of tokens per completed response (tag `token_type`).
pub const TURN_TOKEN_USAGE_METRIC: &str = "codex.turn.token_usage";
/// Counter: one per thread start.
pub const THREAD_STARTED_METRIC: &str = "codex.thread.started";
/// Duration histogram: turn start to turn end.
pub const TURN_E2E_DURATION_METRIC: &str = "codex.turn.e2e_duration_ms";
/// Duration histogram: turn start to the first streamed output.
pub const TURN_TTFT_DURATION_METRIC: &str = "codex.turn.ttft.duration_ms";
/// Duration histogram: turn start to the first assistant message.
pub const TURN_TTFM_DURATION_METRIC: &str = "codex.turn.ttfm.duration_ms";
/// Histogram: tool calls made by one turn.
pub const TURN_TOOL_CALL_METRIC: &str = "codex.turn.tool.call";

/// Counter: a goal was created.
pub const CODEX_GOAL_CREATED_METRIC: &str = "codex.goal.created";
/// Counter: a stopped goal became active again.
pub const CODEX_GOAL_RESUMED_METRIC: &str = "codex.goal.resumed";
/// Counter: a goal was completed.
pub const CODEX_GOAL_COMPLETED_METRIC: &str = "codex.goal.completed";
/// Counter: a goal stopped at a budget.
pub const CODEX_GOAL_BUDGET_LIMITED_METRIC: &str = "codex.goal.budget_limited";
/// Counter: a goal stopped at a usage limit.
pub const CODEX_GOAL_USAGE_LIMITED_METRIC: &str = "codex.goal.usage_limited";
/// Counter: a goal was blocked.
pub const CODEX_GOAL_BLOCKED_METRIC: &str = "codex.goal.blocked";
/// Histogram: tokens a goal had used when it left `active`.
pub const CODEX_GOAL_TOKEN_COUNT_METRIC: &str = "codex.goal.token_count";
/// Histogram: seconds a goal had run when it left `active`.
pub const CODEX_GOAL_DURATION_S_METRIC: &str = "codex.goal.duration_s";

/// GenAI histogram of tokens per model call (unit `{token}`).
pub const GEN_AI_CLIENT_TOKEN_USAGE: &str = "gen_ai.client.token.usage";
/// GenAI histogram of model call duration (unit `s`).
pub const GEN_AI_CLIENT_OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
/// Bucket boundaries of [`GEN_AI_CLIENT_TOKEN_USAGE`].
pub const GEN_AI_TOKEN_USAGE_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// Bucket boundaries of [`GEN_AI_CLIENT_OPERATION_DURATION`].
pub const GEN_AI_OPERATION_DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// Counter of goal status transitions (tags `from`, `to`, `actor`, `reason`).
pub const GOAL_TRANSITIONS_METRIC: &str = "quest.goal.transitions";
/// Counter of goal continuation turns (tag `outcome`).
pub const GOAL_CONTINUATION_TURNS_METRIC: &str = "quest.goal.continuation_turns";
/// Histogram of tokens a goal used when it stopped (unit `{token}`).
pub const GOAL_TOKENS_METRIC: &str = "quest.goal.tokens";
/// Histogram of seconds a goal ran when it stopped (unit `s`).
pub const GOAL_DURATION_METRIC: &str = "quest.goal.duration";

/// Metrics never sent to the Statsig shorthand exporter.
pub const STATSIG_DISABLED_METRICS: &[&str] = &[
    "codex.api_request",
    "codex.api_request.duration_ms",
    "codex.conversation.turn.count",
    "codex.responses_api_engine_iapi_ttft.duration_ms",
    "codex.responses_api_engine_service_tbt.duration_ms",
    "codex.responses_api_engine_service_ttft.duration_ms",
    "codex.tool.call",
    "codex.tool.call.duration_ms",
    "codex.turn.cost_microusd",
    "codex.turn.token_usage",
];

/// Session metadata tag: auth mode.
pub const AUTH_MODE_TAG: &str = "auth_mode";
/// Session metadata tag: session source.
pub const SESSION_SOURCE_TAG: &str = "session_source";
/// Session metadata tag: originator.
pub const ORIGINATOR_TAG: &str = "originator";
/// Session metadata tag: metrics service name.
pub const SERVICE_NAME_TAG: &str = "service_name";
/// Session metadata tag: model.
pub const MODEL_TAG: &str = "model";
/// Session metadata tag: application version.
pub const APP_VERSION_TAG: &str = "app.version";
/// Counter: context compactions (tags `trigger`, `status`).
pub const COMPACTION_METRIC: &str = "codex.compaction";
/// Histogram: live-context tokens around a compaction (tag `phase`: `before`, `after`).
pub const COMPACTION_TOKENS_METRIC: &str = "codex.compaction.tokens";
