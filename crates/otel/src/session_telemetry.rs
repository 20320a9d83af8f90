//! [`SessionTelemetry`]: one thread's event and metric API. Sensitive fields (prompt text,
//! e-mail, account id, tool arguments and output) go only to log-only events; trace-safe
//! copies carry lengths, counts and flags.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use quest_protocol::goal::Actor;
use quest_protocol::goal::BudgetLimitKind;
use quest_protocol::goal::GoalReason;
use quest_protocol::goal::GoalStatus;

use crate::metrics;
use crate::metrics::MetricsClient;
use crate::metrics::Timer;
use crate::redaction::DEFAULT_TOOL_RESULT_MAX_BYTES;
use crate::redaction::REDACTED;
use crate::redaction::redact_secrets;
use crate::redaction::truncate_preview;
use crate::sanitize_metric_tag_value;

/// Event (Codex name): a conversation (thread) started.
pub const CONVERSATION_STARTS_EVENT: &str = "codex.conversation_starts";
/// Event (Codex name): a user prompt was submitted.
pub const USER_PROMPT_EVENT: &str = "codex.user_prompt";
/// Event (Codex name): one model HTTP request attempt finished.
pub const API_REQUEST_EVENT: &str = "codex.api_request";
/// Event (Codex name): one SSE event was handled.
pub const SSE_EVENT_EVENT: &str = "codex.sse_event";
/// Event (Codex name): a tool call was approved or denied.
pub const TOOL_DECISION_EVENT: &str = "codex.tool_decision";
/// Event (Codex name): a tool call finished.
pub const TOOL_RESULT_EVENT: &str = "codex.tool_result";
/// Event (Codex name): time to the first token of a turn.
pub const TURN_TTFT_EVENT: &str = "codex.turn_ttft";
/// A context compaction.
pub const COMPACTION_EVENT: &str = "codex.compaction";
/// Event (Quest only): a failed model request is about to be retried.
pub const API_REQUEST_RETRY_EVENT: &str = "quest.api_request.retry";
/// Event (Quest only): a goal was created.
pub const GOAL_CREATED_EVENT: &str = "quest.goal.created";
/// Event (Quest only): a goal changed status (creation and clearing included).
pub const GOAL_STATUS_CHANGED_EVENT: &str = "quest.goal.status_changed";
/// Event (Quest only): a goal stopped at a token, time or turn budget.
pub const GOAL_BUDGET_LIMITED_EVENT: &str = "quest.goal.budget_limited";
/// Event (Quest only): a goal stopped at a provider usage limit.
pub const GOAL_USAGE_LIMITED_EVENT: &str = "quest.goal.usage_limited";
/// Event (Quest only): a goal was completed.
pub const GOAL_COMPLETED_EVENT: &str = "quest.goal.completed";
/// Event (Quest only): a goal was cleared.
pub const GOAL_CLEARED_EVENT: &str = "quest.goal.cleared";

/// How the session authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TelemetryAuthMode {
    /// An API key.
    ApiKey,
    /// A ChatGPT account (or another account-token mode).
    Chatgpt,
}

impl TelemetryAuthMode {
    fn as_str(self) -> &'static str {
        match self {
            TelemetryAuthMode::ApiKey => "api_key",
            TelemetryAuthMode::Chatgpt => "chatgpt",
        }
    }
}

/// Who decided on a tool call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolDecisionSource {
    /// An automated reviewer.
    AutomatedReviewer,
    /// The approval policy in config.
    Config,
    /// The user.
    User,
}

impl fmt::Display for ToolDecisionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ToolDecisionSource::AutomatedReviewer => "automated_reviewer",
            ToolDecisionSource::Config => "config",
            ToolDecisionSource::User => "user",
        })
    }
}

/// One item of a user prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromptItem {
    /// Text typed by the user.
    Text(String),
    /// An image given by URL.
    Image,
    /// An image from a local file.
    LocalImage,
}

/// Details of a model HTTP request beyond attempt, status, error and duration.
#[derive(Clone, Debug, Default)]
pub struct ApiRequestDetails {
    /// `error.type` of a failed attempt (the status code for HTTP failures, else the GenAI
    /// error vocabulary of [`crate::gen_ai::ModelErrorType`]).
    pub error_type: Option<String>,
    /// Whether an auth header was sent.
    pub auth_header_attached: bool,
    /// Name of the auth header.
    pub auth_header_name: Option<String>,
    /// Whether this is the retry after a 401.
    pub retry_after_unauthorized: bool,
    /// Auth recovery mode in effect.
    pub recovery_mode: Option<String>,
    /// Auth recovery phase in effect.
    pub recovery_phase: Option<String>,
    /// Endpoint path or `unknown`.
    pub endpoint: Option<String>,
    /// Server request id.
    pub request_id: Option<String>,
    /// Cloudflare ray id.
    pub cf_ray: Option<String>,
    /// Auth error text.
    pub auth_error: Option<String>,
    /// Auth error code.
    pub auth_error_code: Option<String>,
}

/// A goal status transition, typed as the goal runtime knows it.
#[derive(Clone, Debug)]
pub struct GoalTransition {
    /// Goal id.
    pub goal_id: String,
    /// Previous status; `None` when the goal was just created.
    pub from: Option<GoalStatus>,
    /// New status; `None` when the goal was cleared.
    pub to: Option<GoalStatus>,
    /// Who caused the change.
    pub actor: Actor,
    /// Why, in the goal runtime's reason vocabulary.
    pub reason: GoalReason,
    /// Tokens charged to the goal so far.
    pub tokens_used: u64,
    /// Seconds the goal has run.
    pub time_used_seconds: u64,
    /// Turns the goal has run.
    pub turns_used: u64,
    /// Token budget, when set (reported on creation).
    pub token_budget: Option<u64>,
    /// Time budget in seconds, when set (reported on creation).
    pub time_budget_seconds: Option<u64>,
    /// Turn budget, when set (reported on creation).
    pub turn_budget: Option<u64>,
    /// Which budget stopped the goal (for `budgetLimited`).
    pub budget_limit_kind: Option<BudgetLimitKind>,
    /// When the usage window resets, Unix seconds (for `usageLimited`).
    pub usage_limit_resets_at: Option<i64>,
}

impl GoalTransition {
    /// A change with no budgets, limit kind or reset time.
    pub fn new(
        goal_id: impl Into<String>,
        from: Option<GoalStatus>,
        to: Option<GoalStatus>,
        actor: Actor,
        reason: GoalReason,
    ) -> Self {
        Self {
            goal_id: goal_id.into(),
            from,
            to,
            actor,
            reason,
            tokens_used: 0,
            time_used_seconds: 0,
            turns_used: 0,
            token_budget: None,
            time_budget_seconds: None,
            turn_budget: None,
            budget_limit_kind: None,
            usage_limit_resets_at: None,
        }
    }
}

/// A goal status transition in wire spellings, as older callers pass it. Converted to a
/// [`GoalTransition`]: `none` or an empty string means "no goal" (created / cleared).
#[derive(Clone, Debug, Default)]
pub struct GoalStatusChange {
    /// Goal id.
    pub goal_id: String,
    /// Previous status (wire spelling), `none` when the goal was just created.
    pub from: String,
    /// New status (wire spelling), `none` when the goal was cleared.
    pub to: String,
    /// `user`, `model` or `system`.
    pub actor: String,
    /// Reason vocabulary of the goal runtime.
    pub reason: String,
    /// Tokens charged to the goal so far.
    pub tokens_used: u64,
    /// Seconds the goal has run.
    pub time_used_seconds: u64,
    /// Turns the goal has run.
    pub turns_used: u64,
}

impl GoalStatusChange {
    /// The typed transition; unknown actor or reason spellings fall back to `system` /
    /// `user_request`.
    pub fn to_transition(&self) -> GoalTransition {
        let actor = match self.actor.as_str() {
            "user" => Actor::User,
            "model" => Actor::Model,
            _ => Actor::System,
        };
        let mut transition = GoalTransition::new(
            self.goal_id.clone(),
            GoalStatus::parse(&self.from),
            GoalStatus::parse(&self.to),
            actor,
            GoalReason::parse(&self.reason).unwrap_or(GoalReason::UserRequest),
        );
        transition.tokens_used = self.tokens_used;
        transition.time_used_seconds = self.time_used_seconds;
        transition.turns_used = self.turns_used;
        transition
    }
}

/// The `codex.goal.*` counter a transition counts, if any.
pub fn codex_goal_counter(
    from: Option<GoalStatus>,
    to: Option<GoalStatus>,
) -> Option<&'static str> {
    let to = to?;
    if from.is_none() {
        return Some(metrics::CODEX_GOAL_CREATED_METRIC);
    }
    match to {
        GoalStatus::Active => Some(metrics::CODEX_GOAL_RESUMED_METRIC),
        GoalStatus::Complete => Some(metrics::CODEX_GOAL_COMPLETED_METRIC),
        GoalStatus::Blocked => Some(metrics::CODEX_GOAL_BLOCKED_METRIC),
        GoalStatus::BudgetLimited => Some(metrics::CODEX_GOAL_BUDGET_LIMITED_METRIC),
        GoalStatus::UsageLimited => Some(metrics::CODEX_GOAL_USAGE_LIMITED_METRIC),
        GoalStatus::Paused => None,
    }
}

fn status_name(status: Option<GoalStatus>) -> &'static str {
    status.map_or("none", GoalStatus::as_wire)
}

/// One model call for the GenAI metrics.
#[derive(Clone, Debug, Default)]
pub struct GenAiCall {
    /// `gen_ai.operation.name` (`chat`).
    pub operation: String,
    /// `gen_ai.provider.name`.
    pub provider: String,
    /// `gen_ai.request.model`.
    pub request_model: String,
    /// `gen_ai.response.model` when returned.
    pub response_model: Option<String>,
    /// `server.address`.
    pub server_address: Option<String>,
    /// `server.port`.
    pub server_port: Option<u16>,
    /// Input tokens (cached included); recorded only on success.
    pub input_tokens: u64,
    /// Output tokens (reasoning included); recorded only on success.
    pub output_tokens: u64,
    /// Request start to completion or failure.
    pub duration: Duration,
    /// `error.type` on failure.
    pub error_type: Option<String>,
}

struct Metadata {
    conversation_id: String,
    model: String,
    slug: String,
    account_id: Option<String>,
    account_email: Option<String>,
    auth_mode: Option<TelemetryAuthMode>,
    originator: String,
    log_user_prompts: bool,
    terminal_type: String,
    session_source: String,
    app_version: &'static str,
    service_name: Option<String>,
}

/// Per-thread telemetry: Codex's `codex.*` events (and Quest-only `quest.*` goal and retry
/// events) plus the metrics that go with them.
#[derive(Clone)]
pub struct SessionTelemetry {
    metadata: Arc<Metadata>,
    metrics: Option<MetricsClient>,
    metadata_tags: Arc<Vec<(&'static str, String)>>,
    tool_result_max_bytes: usize,
    known_secrets: Arc<Vec<String>>,
}

impl fmt::Debug for SessionTelemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTelemetry")
            .field("conversation_id", &self.metadata.conversation_id)
            .finish_non_exhaustive()
    }
}

fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Emits an INFO event on the log-only target with the common session fields.
macro_rules! log_event {
    ($self:expr, $name:expr, $($fields:tt)*) => {{
        let m = &$self.metadata;
        tracing::event!(
            name: $name,
            target: crate::targets::OTEL_LOG_ONLY_TARGET,
            tracing::Level::INFO,
            event.name = $name,
            event.timestamp = %timestamp(),
            conversation.id = %m.conversation_id,
            app.version = m.app_version,
            auth_mode = m.auth_mode.map(TelemetryAuthMode::as_str),
            originator = %m.originator,
            user.account_id = m.account_id.as_deref(),
            user.email = m.account_email.as_deref(),
            terminal.type = %m.terminal_type,
            model = %m.model,
            slug = %m.slug,
            $($fields)*
        );
    }};
}

/// Emits an INFO event on the trace-safe target (no account id or e-mail).
macro_rules! trace_event {
    ($self:expr, $name:expr, $($fields:tt)*) => {{
        let m = &$self.metadata;
        tracing::event!(
            name: $name,
            target: crate::targets::OTEL_TRACE_SAFE_TARGET,
            tracing::Level::INFO,
            event.name = $name,
            event.timestamp = %timestamp(),
            conversation.id = %m.conversation_id,
            app.version = m.app_version,
            auth_mode = m.auth_mode.map(TelemetryAuthMode::as_str),
            originator = %m.originator,
            terminal.type = %m.terminal_type,
            model = %m.model,
            slug = %m.slug,
            $($fields)*
        );
    }};
}

impl SessionTelemetry {
    /// A session for `conversation_id`; metrics go to the global client when one is installed.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        conversation_id: impl fmt::Display,
        model: &str,
        slug: &str,
        account_id: Option<String>,
        account_email: Option<String>,
        auth_mode: Option<TelemetryAuthMode>,
        originator: String,
        log_user_prompts: bool,
        terminal_type: String,
        session_source: String,
    ) -> Self {
        let metadata = Metadata {
            conversation_id: conversation_id.to_string(),
            model: model.to_string(),
            slug: slug.to_string(),
            account_id,
            account_email,
            auth_mode,
            originator: sanitize_metric_tag_value(&originator),
            log_user_prompts,
            terminal_type,
            session_source,
            app_version: env!("CARGO_PKG_VERSION"),
            service_name: None,
        };
        let mut session = Self {
            metadata: Arc::new(metadata),
            metrics: metrics::global(),
            metadata_tags: Arc::new(Vec::new()),
            tool_result_max_bytes: DEFAULT_TOOL_RESULT_MAX_BYTES,
            known_secrets: Arc::new(Vec::new()),
        };
        session.rebuild_tags();
        session
    }

    fn rebuild_tags(&mut self) {
        let m = &self.metadata;
        let mut tags: Vec<(&'static str, String)> = Vec::new();
        if let Some(mode) = m.auth_mode {
            tags.push((metrics::AUTH_MODE_TAG, mode.as_str().to_string()));
        }
        tags.push((
            metrics::SESSION_SOURCE_TAG,
            sanitize_metric_tag_value(&m.session_source),
        ));
        tags.push((metrics::ORIGINATOR_TAG, m.originator.clone()));
        if let Some(service) = &m.service_name {
            tags.push((
                metrics::SERVICE_NAME_TAG,
                sanitize_metric_tag_value(service),
            ));
        }
        tags.push((metrics::MODEL_TAG, sanitize_metric_tag_value(&m.model)));
        tags.push((
            metrics::APP_VERSION_TAG,
            sanitize_metric_tag_value(m.app_version),
        ));
        self.metadata_tags = Arc::new(tags);
    }

    fn update_metadata(&mut self, f: impl FnOnce(&mut Metadata)) {
        let current = &self.metadata;
        let mut next = Metadata {
            conversation_id: current.conversation_id.clone(),
            model: current.model.clone(),
            slug: current.slug.clone(),
            account_id: current.account_id.clone(),
            account_email: current.account_email.clone(),
            auth_mode: current.auth_mode,
            originator: current.originator.clone(),
            log_user_prompts: current.log_user_prompts,
            terminal_type: current.terminal_type.clone(),
            session_source: current.session_source.clone(),
            app_version: current.app_version,
            service_name: current.service_name.clone(),
        };
        f(&mut next);
        self.metadata = Arc::new(next);
        self.rebuild_tags();
    }

    /// Records metrics on `client` instead of the global client.
    pub fn with_metrics(mut self, client: MetricsClient) -> Self {
        self.metrics = Some(client);
        self
    }

    /// Switches the model and slug.
    pub fn with_model(mut self, model: &str, slug: &str) -> Self {
        self.update_metadata(|m| {
            m.model = model.to_string();
            m.slug = slug.to_string();
        });
        self
    }

    /// Adds the `service_name` metric tag.
    pub fn with_metrics_service_name(mut self, service_name: &str) -> Self {
        self.update_metadata(|m| m.service_name = Some(service_name.to_string()));
        self
    }

    /// Caps tool argument/output previews in `codex.tool_result` (default 2048 bytes).
    pub fn with_tool_result_max_bytes(mut self, max_bytes: usize) -> Self {
        self.tool_result_max_bytes = max_bytes;
        self
    }

    /// Values scrubbed from exported tool arguments and output wherever they appear (the
    /// provider's API key), besides the key-like values every export is scrubbed of.
    pub fn with_known_secrets(mut self, secrets: Vec<String>) -> Self {
        self.known_secrets = Arc::new(secrets);
        self
    }

    fn tags<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut tags: Vec<(&str, &str)> = self
            .metadata_tags
            .iter()
            .map(|(key, value)| (*key, value.as_str()))
            .collect();
        tags.extend_from_slice(extra);
        tags
    }

    /// Adds to a counter; failures are logged, never returned.
    pub fn counter(&self, name: &str, inc: i64, tags: &[(&str, &str)]) {
        if let Some(client) = &self.metrics
            && let Err(err) = client.counter(name, inc, &self.tags(tags))
        {
            tracing::warn!("metrics counter [{name}] failed: {err}");
        }
    }

    /// Records a histogram value; failures are logged.
    pub fn histogram(&self, name: &str, value: i64, tags: &[(&str, &str)]) {
        if let Some(client) = &self.metrics
            && let Err(err) = client.histogram(name, value, &self.tags(tags))
        {
            tracing::warn!("metrics histogram [{name}] failed: {err}");
        }
    }

    /// Records a duration in ms; failures are logged.
    pub fn record_duration(&self, name: &str, duration: Duration, tags: &[(&str, &str)]) {
        if let Some(client) = &self.metrics
            && let Err(err) = client.record_duration(name, duration, &self.tags(tags))
        {
            tracing::warn!("metrics duration [{name}] failed: {err}");
        }
    }

    /// Starts a timer with the session tags.
    pub fn start_timer(&self, name: &str, tags: &[(&str, &str)]) -> metrics::Result<Timer> {
        match &self.metrics {
            Some(client) => client.start_timer(name, &self.tags(tags)),
            None => Err(metrics::MetricsError::ExporterDisabled),
        }
    }

    /// Flushes and shuts down the metrics client (bounded, 2 s default).
    pub fn shutdown_metrics(&self) -> metrics::Result<()> {
        match &self.metrics {
            Some(client) => client.shutdown(),
            None => Ok(()),
        }
    }

    /// `codex.conversation_starts` (logs and traces) and the `codex.thread.started` counter.
    #[allow(clippy::too_many_arguments)]
    pub fn conversation_starts(
        &self,
        provider_name: &str,
        reasoning_effort: Option<&str>,
        reasoning_summary: &str,
        context_window: Option<i64>,
        auto_compact_token_limit: Option<i64>,
        approval_policy: &str,
        sandbox_policy: &str,
        mcp_servers: &[&str],
    ) {
        log_event!(
            self,
            CONVERSATION_STARTS_EVENT,
            provider_name = provider_name,
            reasoning_effort = reasoning_effort,
            reasoning_summary = reasoning_summary,
            context_window = context_window,
            auto_compact_token_limit = auto_compact_token_limit,
            approval_policy = approval_policy,
            sandbox_policy = sandbox_policy,
            mcp_servers = %mcp_servers.join(", "),
        );
        trace_event!(
            self,
            CONVERSATION_STARTS_EVENT,
            provider_name = provider_name,
            reasoning_effort = reasoning_effort,
            reasoning_summary = reasoning_summary,
            context_window = context_window,
            auto_compact_token_limit = auto_compact_token_limit,
            approval_policy = approval_policy,
            sandbox_policy = sandbox_policy,
            mcp_server_count = mcp_servers.len() as u64,
        );
        self.counter(metrics::THREAD_STARTED_METRIC, 1, &[]);
    }

    /// `codex.user_prompt`: the log copy has the text only with `log_user_prompts`; the trace
    /// copy has lengths and counts.
    pub fn user_prompt(&self, items: &[PromptItem]) {
        let text: String = items
            .iter()
            .filter_map(|item| match item {
                PromptItem::Text(text) => Some(text.as_str()),
                PromptItem::Image | PromptItem::LocalImage => None,
            })
            .collect();
        let prompt_length = text.chars().count() as u64;
        let prompt = if self.metadata.log_user_prompts {
            text.as_str()
        } else {
            REDACTED
        };
        let count = |wanted: fn(&PromptItem) -> bool| {
            items.iter().filter(|item| wanted(item)).count() as u64
        };
        log_event!(
            self,
            USER_PROMPT_EVENT,
            prompt_length = prompt_length,
            prompt = prompt,
        );
        trace_event!(
            self,
            USER_PROMPT_EVENT,
            prompt_length = prompt_length,
            text_input_count = count(|item| matches!(item, PromptItem::Text(_))),
            image_input_count = count(|item| matches!(item, PromptItem::Image)),
            local_image_input_count = count(|item| matches!(item, PromptItem::LocalImage)),
        );
    }

    /// One HTTP attempt of a model call (call it once per attempt, retries included):
    /// `codex.api_request` (logs and traces) plus the `codex.api_request` counter and
    /// `codex.api_request.duration_ms` histogram (tags `status` — the code or `none` — and
    /// `success`).
    pub fn record_api_request(
        &self,
        attempt: u64,
        status: Option<u16>,
        error: Option<&str>,
        duration: Duration,
        details: &ApiRequestDetails,
    ) {
        let success = status.is_some_and(|code| (200..300).contains(&code)) && error.is_none();
        let status_tag = status.map_or_else(|| "none".to_string(), |code| code.to_string());
        let success_tag = if success { "true" } else { "false" };
        let tags = [("status", status_tag.as_str()), ("success", success_tag)];
        self.counter(metrics::API_REQUEST_METRIC, 1, &tags);
        self.record_duration(metrics::API_REQUEST_DURATION_METRIC, duration, &tags);
        let endpoint = details.endpoint.as_deref().unwrap_or("unknown");
        log_event!(
            self,
            API_REQUEST_EVENT,
            duration_ms = millis(duration),
            http.response.status_code = status,
            error.message = error,
            error.type = details.error_type.as_deref(),
            attempt = attempt,
            auth.header_attached = details.auth_header_attached,
            auth.header_name = details.auth_header_name.as_deref(),
            auth.retry_after_unauthorized = details.retry_after_unauthorized,
            auth.recovery_mode = details.recovery_mode.as_deref(),
            auth.recovery_phase = details.recovery_phase.as_deref(),
            endpoint = endpoint,
            auth.request_id = details.request_id.as_deref(),
            auth.cf_ray = details.cf_ray.as_deref(),
            auth.error = details.auth_error.as_deref(),
            auth.error_code = details.auth_error_code.as_deref(),
        );
        trace_event!(
            self,
            API_REQUEST_EVENT,
            duration_ms = millis(duration),
            http.response.status_code = status,
            error.message = error,
            error.type = details.error_type.as_deref(),
            attempt = attempt,
            auth.header_attached = details.auth_header_attached,
            auth.header_name = details.auth_header_name.as_deref(),
            auth.retry_after_unauthorized = details.retry_after_unauthorized,
            endpoint = endpoint,
            auth.request_id = details.request_id.as_deref(),
        );
    }

    /// One SSE event: `codex.sse_event` + `.duration_ms` (tags `kind`, `success`); success is a
    /// log-only `codex.sse_event`, a failure (`response.failed` or an error) also a trace event.
    pub fn log_sse_event(&self, kind: &str, duration: Duration, error: Option<&str>) {
        let success = error.is_none() && kind != "response.failed";
        let kind_tag = sanitize_metric_tag_value(kind);
        let tags = [
            ("kind", kind_tag.as_str()),
            ("success", if success { "true" } else { "false" }),
        ];
        self.counter(metrics::SSE_EVENT_METRIC, 1, &tags);
        self.record_duration(metrics::SSE_EVENT_DURATION_METRIC, duration, &tags);
        if success && kind == "response.completed" {
            // Logged with its token counts by `sse_event_completed`.
        } else if success {
            log_event!(
                self,
                SSE_EVENT_EVENT,
                event.kind = kind,
                duration_ms = millis(duration),
            );
        } else {
            let message = error.unwrap_or("response.failed");
            log_event!(
                self,
                SSE_EVENT_EVENT,
                event.kind = kind,
                duration_ms = millis(duration),
                error.message = message,
            );
            trace_event!(
                self,
                SSE_EVENT_EVENT,
                event.kind = kind,
                duration_ms = millis(duration),
                error.message = message,
            );
        }
    }

    /// `codex.sse_event` of kind `response.completed` with token counts, and
    /// `codex.turn.token_usage` (tag `token_type`).
    pub fn sse_event_completed(
        &self,
        input_token_count: i64,
        output_token_count: i64,
        cached_token_count: Option<i64>,
        reasoning_token_count: Option<i64>,
        tool_token_count: i64,
    ) {
        log_event!(
            self,
            SSE_EVENT_EVENT,
            event.kind = "response.completed",
            input_token_count = input_token_count,
            output_token_count = output_token_count,
            cached_token_count = cached_token_count,
            reasoning_token_count = reasoning_token_count,
            tool_token_count = tool_token_count,
        );
        trace_event!(
            self,
            SSE_EVENT_EVENT,
            event.kind = "response.completed",
            input_token_count = input_token_count,
            output_token_count = output_token_count,
            cached_token_count = cached_token_count,
            reasoning_token_count = reasoning_token_count,
            tool_token_count = tool_token_count,
        );
        let mut usage = vec![("input", input_token_count), ("output", output_token_count)];
        usage.extend(cached_token_count.map(|value| ("cached_input", value)));
        usage.extend(reasoning_token_count.map(|value| ("reasoning_output", value)));
        for (kind, value) in usage {
            self.histogram(
                metrics::TURN_TOKEN_USAGE_METRIC,
                value,
                &[("token_type", kind)],
            );
        }
    }

    /// Log-only `codex.tool_decision`.
    pub fn tool_decision(
        &self,
        tool_name: &str,
        call_id: &str,
        decision: &str,
        source: ToolDecisionSource,
    ) {
        log_event!(
            self,
            TOOL_DECISION_EVENT,
            tool_name = tool_name,
            call_id = call_id,
            decision = %decision.to_lowercase(),
            source = %source,
        );
    }

    /// A finished tool call: `codex.tool.call` + `codex.tool.call.duration_ms` (tags `tool`,
    /// `success`); log-only `codex.tool_result` with arguments and output capped at the
    /// preview limit; trace-safe copy with lengths only.
    #[allow(clippy::too_many_arguments)]
    pub fn tool_result(
        &self,
        tool_name: &str,
        call_id: &str,
        arguments: &str,
        duration: Duration,
        success: bool,
        output: &str,
        mcp_server: Option<&str>,
    ) {
        let tool_tag = sanitize_metric_tag_value(tool_name);
        let tags = [
            ("tool", tool_tag.as_str()),
            ("success", if success { "true" } else { "false" }),
        ];
        self.counter(metrics::TOOL_CALL_METRIC, 1, &tags);
        self.record_duration(metrics::TOOL_CALL_DURATION_METRIC, duration, &tags);
        // Scrub before cutting, so a secret split by the cut cannot survive half-visible.
        let (arguments_preview, arguments_truncated) = truncate_preview(
            &redact_secrets(arguments, &self.known_secrets),
            self.tool_result_max_bytes,
        );
        let (output_preview, output_truncated) = truncate_preview(
            &redact_secrets(output, &self.known_secrets),
            self.tool_result_max_bytes,
        );
        log_event!(
            self,
            TOOL_RESULT_EVENT,
            tool_name = tool_name,
            call_id = call_id,
            arguments = %arguments_preview,
            arguments_truncated = arguments_truncated,
            duration_ms = millis(duration),
            success = success,
            output = %output_preview,
            output_truncated = output_truncated,
            mcp_server = mcp_server,
        );
        trace_event!(
            self,
            TOOL_RESULT_EVENT,
            tool_name = tool_name,
            call_id = call_id,
            duration_ms = millis(duration),
            success = success,
            arguments_length = arguments.len() as u64,
            output_length = output.len() as u64,
            output_line_count = output.lines().count() as u64,
            tool_origin = if mcp_server.is_some() {
                "mcp"
            } else {
                "builtin"
            },
        );
    }

    /// A goal transition (creation and clearing included): `quest.goal.status_changed` plus,
    /// as they apply, `quest.goal.created`, `quest.goal.budget_limited`,
    /// `quest.goal.usage_limited`, `quest.goal.completed` and `quest.goal.cleared` (logs and
    /// traces; no objective text in either); counter `quest.goal.transitions` (tags from, to,
    /// actor, reason) and the matching `codex.goal.*` counter; and when the goal leaves
    /// `active`, `quest.goal.tokens` / `quest.goal.duration` and their `codex.goal.*` twins.
    pub fn goal_transition(&self, change: &GoalTransition) {
        let (from, to) = (status_name(change.from), status_name(change.to));
        let (actor, reason) = (change.actor.as_str(), change.reason.as_str());
        if change.from.is_none() {
            log_event!(
                self,
                GOAL_CREATED_EVENT,
                goal.id = %change.goal_id,
                status = to,
                actor = actor,
                token_budget = change.token_budget,
                time_budget_seconds = change.time_budget_seconds,
                turn_budget = change.turn_budget,
            );
            trace_event!(
                self,
                GOAL_CREATED_EVENT,
                goal.id = %change.goal_id,
                status = to,
                actor = actor,
                token_budget = change.token_budget,
                time_budget_seconds = change.time_budget_seconds,
                turn_budget = change.turn_budget,
            );
        }
        log_event!(
            self,
            GOAL_STATUS_CHANGED_EVENT,
            goal.id = %change.goal_id,
            from = from,
            to = to,
            actor = actor,
            reason = reason,
            tokens_used = change.tokens_used,
            time_used_seconds = change.time_used_seconds,
            turns_used = change.turns_used,
        );
        trace_event!(
            self,
            GOAL_STATUS_CHANGED_EVENT,
            goal.id = %change.goal_id,
            from = from,
            to = to,
            actor = actor,
            reason = reason,
            tokens_used = change.tokens_used,
            time_used_seconds = change.time_used_seconds,
            turns_used = change.turns_used,
        );
        match change.to {
            Some(GoalStatus::BudgetLimited) => {
                let kind = change.budget_limit_kind.map(BudgetLimitKind::as_str);
                log_event!(self, GOAL_BUDGET_LIMITED_EVENT, goal.id = %change.goal_id, limit_kind = kind);
                trace_event!(self, GOAL_BUDGET_LIMITED_EVENT, goal.id = %change.goal_id, limit_kind = kind);
            }
            Some(GoalStatus::UsageLimited) => {
                let resets_at = change.usage_limit_resets_at;
                log_event!(self, GOAL_USAGE_LIMITED_EVENT, goal.id = %change.goal_id, resets_at = resets_at);
                trace_event!(self, GOAL_USAGE_LIMITED_EVENT, goal.id = %change.goal_id, resets_at = resets_at);
            }
            Some(GoalStatus::Complete) => {
                log_event!(
                    self,
                    GOAL_COMPLETED_EVENT,
                    goal.id = %change.goal_id,
                    tokens_used = change.tokens_used,
                    time_used_seconds = change.time_used_seconds,
                    turns_used = change.turns_used,
                );
                trace_event!(
                    self,
                    GOAL_COMPLETED_EVENT,
                    goal.id = %change.goal_id,
                    tokens_used = change.tokens_used,
                    time_used_seconds = change.time_used_seconds,
                    turns_used = change.turns_used,
                );
            }
            None => {
                log_event!(self, GOAL_CLEARED_EVENT, goal.id = %change.goal_id, from = from);
                trace_event!(self, GOAL_CLEARED_EVENT, goal.id = %change.goal_id, from = from);
            }
            Some(GoalStatus::Active | GoalStatus::Paused | GoalStatus::Blocked) => {}
        }
        let tags = [
            ("from", from),
            ("to", to),
            ("actor", actor),
            ("reason", reason),
        ];
        self.counter(metrics::GOAL_TRANSITIONS_METRIC, 1, &tags);
        if let Some(name) = codex_goal_counter(change.from, change.to) {
            self.counter(name, 1, &[]);
        }
        if change.from == Some(GoalStatus::Active) && change.to != Some(GoalStatus::Active) {
            self.record_u64(
                metrics::GOAL_TOKENS_METRIC,
                metrics::GOAL_TOKENS_SPEC,
                change.tokens_used,
                &[("to", to)],
            );
            self.record_f64(
                metrics::GOAL_DURATION_METRIC,
                metrics::GOAL_DURATION_SPEC,
                change.time_used_seconds as f64,
                &[("to", to)],
            );
            self.histogram(
                metrics::CODEX_GOAL_TOKEN_COUNT_METRIC,
                i64::try_from(change.tokens_used).unwrap_or(i64::MAX),
                &[],
            );
            self.histogram(
                metrics::CODEX_GOAL_DURATION_S_METRIC,
                i64::try_from(change.time_used_seconds).unwrap_or(i64::MAX),
                &[],
            );
        }
    }

    /// [`SessionTelemetry::goal_transition`] for a transition given in wire spellings.
    pub fn goal_status_changed(&self, change: &GoalStatusChange) {
        self.goal_transition(&change.to_transition());
    }

    /// A failed HTTP attempt of a model call is about to be retried: log and trace event
    /// `quest.api_request.retry` (`attempt` is the failed attempt's 1-based number).
    pub fn api_request_retry(
        &self,
        attempt: u64,
        delay: Duration,
        error_type: Option<&str>,
        reason: &str,
    ) {
        log_event!(
            self,
            API_REQUEST_RETRY_EVENT,
            attempt = attempt,
            delay_ms = millis(delay),
            error.type = error_type,
            error.message = reason,
        );
        trace_event!(
            self,
            API_REQUEST_RETRY_EVENT,
            attempt = attempt,
            delay_ms = millis(delay),
            error.type = error_type,
            error.message = reason,
        );
    }

    /// Histogram `codex.turn.ttft.duration_ms` and event `codex.turn_ttft` (logs and traces):
    /// turn start to the first streamed output.
    pub fn record_turn_ttft(&self, duration: Duration) {
        self.record_duration(metrics::TURN_TTFT_DURATION_METRIC, duration, &[]);
        log_event!(self, TURN_TTFT_EVENT, duration_ms = millis(duration));
        trace_event!(self, TURN_TTFT_EVENT, duration_ms = millis(duration));
    }

    /// Histogram `codex.turn.ttfm.duration_ms`: turn start to the first assistant message.
    pub fn record_turn_ttfm(&self, duration: Duration) {
        self.record_duration(metrics::TURN_TTFM_DURATION_METRIC, duration, &[]);
    }

    /// End of a turn: histogram `codex.turn.e2e_duration_ms` and histogram
    /// `codex.turn.tool.call` (tool calls the turn made).
    pub fn record_turn_end(&self, duration: Duration, tool_calls: u64) {
        self.record_duration(metrics::TURN_E2E_DURATION_METRIC, duration, &[]);
        self.histogram(
            metrics::TURN_TOOL_CALL_METRIC,
            i64::try_from(tool_calls).unwrap_or(i64::MAX),
            &[],
        );
    }

    /// A context compaction: event `codex.compaction` (logs and traces) with the trigger, the
    /// live-context tokens before and after and the outcome; counter `codex.compaction` (tags
    /// `trigger`, `status`) and histogram `codex.compaction.tokens` (tag `phase`: before, after).
    pub fn compaction(
        &self,
        trigger: &str,
        tokens_before: i64,
        tokens_after: i64,
        duration: Duration,
        error: Option<&str>,
    ) {
        let trigger = sanitize_metric_tag_value(trigger);
        let status = if error.is_some() {
            "failed"
        } else {
            "completed"
        };
        self.counter(
            metrics::COMPACTION_METRIC,
            1,
            &[("trigger", trigger.as_str()), ("status", status)],
        );
        self.histogram(
            metrics::COMPACTION_TOKENS_METRIC,
            tokens_before,
            &[("phase", "before")],
        );
        if error.is_none() {
            self.histogram(
                metrics::COMPACTION_TOKENS_METRIC,
                tokens_after,
                &[("phase", "after")],
            );
        }
        log_event!(
            self,
            COMPACTION_EVENT,
            trigger = %trigger,
            tokens_before = tokens_before,
            tokens_after = tokens_after,
            duration_ms = millis(duration),
            status = status,
            error.message = error,
        );
        trace_event!(
            self,
            COMPACTION_EVENT,
            trigger = %trigger,
            tokens_before = tokens_before,
            tokens_after = tokens_after,
            duration_ms = millis(duration),
            status = status,
        );
    }

    /// Counter `quest.goal.continuation_turns` (tag `outcome`: progress, no_progress, waiting).
    pub fn goal_continuation_turn(&self, outcome: &str) {
        let outcome = sanitize_metric_tag_value(outcome);
        self.counter(
            metrics::GOAL_CONTINUATION_TURNS_METRIC,
            1,
            &[("outcome", outcome.as_str())],
        );
    }

    /// GenAI metrics for one model call: on success one `gen_ai.client.token.usage` record per
    /// token type; always one `gen_ai.client.operation.duration` record. Only the semantic
    /// convention's attributes are set (no session tags); `server.port` is an integer.
    pub fn record_gen_ai_call(&self, call: &GenAiCall) {
        let Some(client) = &self.metrics else {
            return;
        };
        let mut base = vec![
            KeyValue::new(crate::gen_ai::attr::OPERATION_NAME, call.operation.clone()),
            KeyValue::new(crate::gen_ai::attr::PROVIDER_NAME, call.provider.clone()),
            KeyValue::new(
                crate::gen_ai::attr::REQUEST_MODEL,
                call.request_model.clone(),
            ),
        ];
        if let Some(model) = &call.response_model {
            base.push(KeyValue::new(
                crate::gen_ai::attr::RESPONSE_MODEL,
                model.clone(),
            ));
        }
        if let Some(address) = &call.server_address {
            base.push(KeyValue::new(
                crate::gen_ai::attr::SERVER_ADDRESS,
                address.clone(),
            ));
        }
        if let Some(port) = call.server_port {
            base.push(KeyValue::new(
                crate::gen_ai::attr::SERVER_PORT,
                i64::from(port),
            ));
        }
        if call.error_type.is_none() {
            for (kind, value) in [("input", call.input_tokens), ("output", call.output_tokens)] {
                let mut attributes = base.clone();
                attributes.push(KeyValue::new(crate::gen_ai::attr::TOKEN_TYPE, kind));
                if let Err(err) = client.record_u64_with_attributes(
                    metrics::GEN_AI_CLIENT_TOKEN_USAGE,
                    metrics::GEN_AI_TOKEN_USAGE_SPEC,
                    value,
                    &attributes,
                ) {
                    tracing::warn!(
                        "metrics histogram [{}] failed: {err}",
                        metrics::GEN_AI_CLIENT_TOKEN_USAGE
                    );
                }
            }
        }
        let mut attributes = base;
        if let Some(error_type) = &call.error_type {
            attributes.push(KeyValue::new(
                crate::gen_ai::attr::ERROR_TYPE,
                error_type.clone(),
            ));
        }
        if let Err(err) = client.record_f64_with_attributes(
            metrics::GEN_AI_CLIENT_OPERATION_DURATION,
            metrics::GEN_AI_OPERATION_DURATION_SPEC,
            call.duration.as_secs_f64(),
            &attributes,
        ) {
            tracing::warn!(
                "metrics histogram [{}] failed: {err}",
                metrics::GEN_AI_CLIENT_OPERATION_DURATION
            );
        }
    }

    fn record_u64(
        &self,
        name: &str,
        spec: metrics::HistogramSpec,
        value: u64,
        tags: &[(&str, &str)],
    ) {
        if let Some(client) = &self.metrics
            && let Err(err) = client.record_u64(name, spec, value, &self.tags(tags))
        {
            tracing::warn!("metrics histogram [{name}] failed: {err}");
        }
    }

    fn record_f64(
        &self,
        name: &str,
        spec: metrics::HistogramSpec,
        value: f64,
        tags: &[(&str, &str)],
    ) {
        if let Some(client) = &self.metrics
            && let Err(err) = client.record_f64(name, spec, value, &self.tags(tags))
        {
            tracing::warn!("metrics histogram [{name}] failed: {err}");
        }
    }
}
