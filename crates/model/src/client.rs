//! The streaming client: builds the request, sends it with two retry layers, decodes the SSE
//! stream into [`ResponseEvent`]s.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue};
use quest_protocol::{ResponseItem, TokenUsage};
use serde_json::Value;

use crate::error::ModelError;
use crate::provider::ModelProviderInfo;
use crate::retry::{backoff, retry_after, try_again_in};
use crate::sse::{SseDecoder, SseFrame, WireEvent, decode_event};

/// Client-wide options that do not come from the provider table.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// `originator` header and user-agent prefix (`quest_exec`, an app-server client name, …).
    pub originator: String,
    /// API key that wins over the provider's `env_key` (`CODEX_API_KEY` / `QUEST_API_KEY`,
    /// resolved by the caller).
    pub api_key_override: Option<String>,
    /// First backoff delay (default 200 ms); later ones double.
    pub backoff_base: Duration,
    /// Longest delay Quest waits for a retry (default 120 s). Longer server hints fail the call
    /// with [`ModelError::RetryDelayTooLong`]; computed backoff is capped here.
    pub max_retry_delay: Duration,
    /// Appended to the user agent after a space, e.g. `xterm (quest_exec; 0.1.0)`.
    pub user_agent_suffix: Option<String>,
    /// Send W3C `traceparent`/`tracestate` (`[otel] propagate_model_requests`, default true).
    /// When the prompt's headers already carry a `traceparent`, those are sent as given.
    pub propagate_trace_context: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            originator: "quest".to_string(),
            api_key_override: None,
            backoff_base: Duration::from_millis(200),
            max_retry_delay: Duration::from_secs(120),
            user_agent_suffix: None,
            propagate_trace_context: true,
        }
    }
}

/// One model call's input.
#[derive(Clone, Debug, Default)]
pub struct Prompt {
    /// Model slug.
    pub model: String,
    /// The full history (base instructions are the first `developer` message).
    pub input: Vec<ResponseItem>,
    /// Tool definitions, sent verbatim.
    pub tools: Vec<Value>,
    /// `parallel_tool_calls`.
    pub parallel_tool_calls: bool,
    /// `reasoning` object, e.g. `{"effort":"medium"}`; omitted when `None`.
    pub reasoning: Option<Value>,
    /// `prompt_cache_key` (the thread id); omitted when `None`.
    pub prompt_cache_key: Option<String>,
    /// Headers set by the caller (`session-id`, `thread-id`, `x-codex-turn-metadata`, …).
    pub extra_headers: HeaderMap,
    /// `client_metadata` object; omitted when `None`.
    pub client_metadata: Option<Value>,
}

/// What the caller sees while a call streams.
#[derive(Clone, Debug, PartialEq)]
pub enum ResponseEvent {
    /// `response.created`.
    Created {
        /// Server response id.
        response_id: String,
    },
    /// `response.output_item.added`: an item started.
    OutputItemAdded(ResponseItem),
    /// Streamed assistant text.
    OutputTextDelta(String),
    /// Streamed reasoning summary text.
    ReasoningSummaryDelta(String),
    /// `response.output_item.done`: the authoritative item (tool calls run from this).
    OutputItemDone(ResponseItem),
    /// `response.completed`.
    Completed {
        /// Server response id.
        response_id: String,
        /// Usage of this response.
        usage: TokenUsage,
    },
    /// A layer-2 retry is about to happen after `delay`; front-ends print
    /// `Reconnecting... {attempt}/{max_attempts} ({reason})`.
    Retrying {
        /// 1-based retry number.
        attempt: u32,
        /// The retry budget (`stream_max_retries`).
        max_attempts: u32,
        /// How long the client waits before re-sending.
        delay: Duration,
        /// The error being retried (its user message).
        reason: String,
    },
}

/// The result of a successful call.
#[derive(Clone, Debug, PartialEq)]
pub struct ResponseOutcome {
    /// Id of the response that completed.
    pub response_id: String,
    /// Every authoritative item received, across retries, in order (unknown item types left out).
    pub items: Vec<ResponseItem>,
    /// Usage of the completed response.
    pub usage: TokenUsage,
    /// HTTP requests made for this call, retries included.
    pub http_requests: u32,
}

/// Metadata of the response that completed a call.
#[derive(Clone, Debug, Default)]
pub struct ResponseMeta {
    /// The HTTP response headers.
    pub headers: HeaderMap,
}

impl ResponseMeta {
    /// `x-codex-turn-state`, to send back on later requests of the same turn.
    pub fn turn_state(&self) -> Option<&str> {
        self.header("x-codex-turn-state")
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A Responses API client. Cheap to clone; clones share one connection pool.
#[derive(Clone, Debug)]
pub struct ModelClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    provider: ModelProviderInfo,
    opts: ClientOptions,
    url: reqwest::Url,
    headers: HeaderMap,
}

/// How layer 2 should treat a failed attempt.
enum Retry {
    Never,
    Backoff,
    After(Duration),
}

struct AttemptError {
    error: ModelError,
    retry: Retry,
}

impl AttemptError {
    fn never(error: ModelError) -> Self {
        Self {
            error,
            retry: Retry::Never,
        }
    }
    fn backoff(error: ModelError) -> Self {
        Self {
            error,
            retry: Retry::Backoff,
        }
    }
}

impl ModelClient {
    /// Builds a client for `provider`. Resolves the API key and static headers now, so a missing
    /// key is [`ModelError::MissingEnvVar`] before any request.
    pub fn new(provider: ModelProviderInfo, opts: ClientOptions) -> Result<Self, ModelError> {
        let invalid = |message: String| ModelError::InvalidConfig { message };
        let api_key = provider.api_key(opts.api_key_override.as_deref())?;
        let mut url = reqwest::Url::parse(&format!("{}/responses", provider.base_url()))
            .map_err(|e| invalid(format!("base_url `{}`: {e}", provider.base_url())))?;
        if !provider.query_params.is_empty() {
            url.query_pairs_mut().extend_pairs(&provider.query_params);
        }

        let mut headers = HeaderMap::new();
        let mut put = |name: &str, value: &str, what: &str| -> Result<(), ModelError> {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("{what}: `{name}` is not a valid header name")))?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                invalid(format!(
                    "{what}: value of `{name}` is not a valid header value"
                ))
            })?;
            headers.insert(name, value);
            Ok(())
        };
        put("content-type", "application/json", "content-type")?;
        put("accept", "text/event-stream", "accept")?;
        put("originator", &opts.originator, "originator")?;
        put(
            "user-agent",
            &user_agent(&opts.originator, opts.user_agent_suffix.as_deref()),
            "user-agent",
        )?;
        if let Some(key) = &api_key {
            put("authorization", &format!("Bearer {key}"), "API key")?;
        }
        for (name, value) in &provider.http_headers {
            put(name, value, "http_headers")?;
        }
        for (name, var) in &provider.env_http_headers {
            if let Ok(value) = std::env::var(var)
                && !value.trim().is_empty()
            {
                put(name, &value, "env_http_headers")?;
            }
        }

        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| invalid(format!("HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                provider,
                opts,
                url,
                headers,
            }),
        })
    }

    /// The provider this client talks to.
    pub fn provider(&self) -> &ModelProviderInfo {
        &self.inner.provider
    }

    /// The request URL (`{base_url}/responses` plus query parameters).
    pub fn url(&self) -> &str {
        self.inner.url.as_str()
    }

    /// Streams one model call, retrying per the provider's budgets, and calls `on_event` for
    /// every event (including [`ResponseEvent::Retrying`] before each visible retry). Returns when
    /// `response.completed` arrives, without waiting for the connection to close.
    pub async fn stream(
        &self,
        prompt: &Prompt,
        on_event: &mut (dyn FnMut(ResponseEvent) + Send),
    ) -> Result<ResponseOutcome, ModelError> {
        self.stream_with_meta(prompt, on_event)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// [`ModelClient::stream`], also returning the headers of the response that completed
    /// (`x-codex-turn-state` to echo on the next request of the turn, rate-limit headers,
    /// request ids).
    pub async fn stream_with_meta(
        &self,
        prompt: &Prompt,
        on_event: &mut (dyn FnMut(ResponseEvent) + Send),
    ) -> Result<(ResponseOutcome, ResponseMeta), ModelError> {
        let inner = &*self.inner;
        let max_retries = u32::try_from(inner.provider.stream_max_retries()).unwrap_or(100);
        let mut received: Vec<ResponseItem> = Vec::new();
        let mut http_requests = 0u32;
        let mut retries = 0u32;
        loop {
            let body = request_body(prompt, &received);
            let headers = self.request_headers(prompt);
            let failure = match self.send(&body, headers, &mut http_requests).await {
                Ok(response) => {
                    let meta = ResponseMeta {
                        headers: response.headers().clone(),
                    };
                    match read_stream(
                        response,
                        inner.provider.stream_idle_timeout(),
                        on_event,
                        &mut received,
                    )
                    .await
                    {
                        Ok((response_id, usage)) => {
                            let outcome = ResponseOutcome {
                                response_id,
                                items: received,
                                usage,
                                http_requests,
                            };
                            return Ok((outcome, meta));
                        }
                        Err(failure) => failure,
                    }
                }
                Err(failure) => failure,
            };
            let delay = match failure.retry {
                Retry::Never => return Err(failure.error),
                _ if retries >= max_retries => return Err(failure.error),
                Retry::Backoff => backoff(
                    inner.opts.backoff_base,
                    retries + 1,
                    inner.opts.max_retry_delay,
                ),
                Retry::After(hint) => {
                    if hint > inner.opts.max_retry_delay {
                        return Err(ModelError::RetryDelayTooLong {
                            requested: hint,
                            max: inner.opts.max_retry_delay,
                            detail: failure.error.user_message(),
                        });
                    }
                    hint
                }
            };
            retries += 1;
            tracing::warn!(attempt = retries, max = max_retries, ?delay, error = %failure.error, "retrying model request");
            on_event(ResponseEvent::Retrying {
                attempt: retries,
                max_attempts: max_retries,
                delay,
                reason: failure.error.user_message(),
            });
            tokio::time::sleep(delay).await;
        }
    }

    fn request_headers(&self, prompt: &Prompt) -> HeaderMap {
        let mut headers = self.inner.headers.clone();
        for (name, value) in &prompt.extra_headers {
            headers.insert(name.clone(), value.clone());
        }
        if !self.inner.opts.propagate_trace_context {
            headers.remove("traceparent");
            headers.remove("tracestate");
        } else if !headers.contains_key("traceparent") {
            // The caller did not supply a context (with its configured tracestate members):
            // propagate the current span's.
            crate::trace::inject_current_context(&mut headers);
        }
        headers
    }

    /// Layer 1: one logical HTTP request, repeated silently for 5xx and connection errors.
    async fn send(
        &self,
        body: &[u8],
        headers: HeaderMap,
        http_requests: &mut u32,
    ) -> Result<reqwest::Response, AttemptError> {
        let inner = &*self.inner;
        let max = inner.provider.request_max_retries();
        let idle = inner.provider.stream_idle_timeout();
        let mut attempt: u64 = 0;
        loop {
            attempt += 1;
            *http_requests += 1;
            let request = inner
                .http
                .post(inner.url.clone())
                .headers(headers.clone())
                .body(body.to_vec());
            let can_retry = attempt <= max;
            let retry_no = u32::try_from(attempt).unwrap_or(u32::MAX);
            let response = match tokio::time::timeout(idle, request.send()).await {
                Ok(Ok(response)) => response,
                Ok(Err(err)) => {
                    let message = transport_message(&err);
                    if can_retry {
                        tracing::debug!(attempt, error = %message, "transport error, retrying");
                        tokio::time::sleep(backoff(
                            inner.opts.backoff_base,
                            retry_no,
                            inner.opts.max_retry_delay,
                        ))
                        .await;
                        continue;
                    }
                    return Err(AttemptError::never(ModelError::ConnectionFailed {
                        message,
                    }));
                }
                Err(_) => {
                    if can_retry {
                        tokio::time::sleep(backoff(
                            inner.opts.backoff_base,
                            retry_no,
                            inner.opts.max_retry_delay,
                        ))
                        .await;
                        continue;
                    }
                    return Err(AttemptError::never(ModelError::ConnectionFailed {
                        message: "timed out waiting for response headers".to_string(),
                    }));
                }
            };
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let hint = retry_after(response.headers(), chrono::Utc::now());
            if status.is_server_error() && can_retry {
                let delay = hint.unwrap_or_else(|| {
                    backoff(
                        inner.opts.backoff_base,
                        retry_no,
                        inner.opts.max_retry_delay,
                    )
                });
                if delay > inner.opts.max_retry_delay {
                    let error = status_error(response, inner.url.as_str()).await.error;
                    return Err(AttemptError::never(ModelError::RetryDelayTooLong {
                        requested: delay,
                        max: inner.opts.max_retry_delay,
                        detail: error.user_message(),
                    }));
                }
                // Drain the body so the connection can be reused.
                let _ = response.bytes().await;
                tracing::debug!(attempt, %status, ?delay, "server error, retrying");
                tokio::time::sleep(delay).await;
                continue;
            }
            return Err(status_error(response, inner.url.as_str()).await);
        }
    }
}

fn transport_message(err: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The reset time (unix seconds) of the active rate-limit window from the
/// `x-codex-{primary,secondary}-reset-at` headers: the window with the highest used percent
/// (the primary one on a tie or when no percent is given). Unparseable values are ignored.
fn header_reset_at(headers: &http::HeaderMap) -> Option<i64> {
    let number = |name: String| {
        headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    ["primary", "secondary"]
        .into_iter()
        .filter_map(|window| {
            let reset = number(format!("x-codex-{window}-reset-at"))?;
            if reset < 0.0 || reset > i64::MAX as f64 {
                return None;
            }
            let used = number(format!("x-codex-{window}-used-percent")).unwrap_or(0.0);
            Some((used, reset as i64))
        })
        .fold(None, |best: Option<(f64, i64)>, (used, reset)| match best {
            Some((best_used, _)) if best_used >= used => best,
            _ => Some((used, reset)),
        })
        .map(|(_, reset)| reset)
}

/// Classifies a non-success response (after layer-1 retries) per the spec's matrix.
async fn status_error(response: reqwest::Response, url: &str) -> AttemptError {
    let status = response.status();
    let headers = response.headers().clone();
    let hint = retry_after(&headers, chrono::Utc::now());
    let body = response.text().await.unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_str(&body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(|e| e.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (error_type, code) = (field("type"), field("code"));
    let is = |name: &str| error_type.as_deref() == Some(name) || code.as_deref() == Some(name);

    let with_hint = |error: ModelError| AttemptError {
        error,
        retry: hint.map_or(Retry::Backoff, Retry::After),
    };
    match status.as_u16() {
        429 => {
            if error_type.as_deref() == Some("usage_limit_reached") {
                let resets_at = parsed
                    .as_ref()
                    .and_then(|v| v.pointer("/error/resets_at"))
                    .and_then(Value::as_i64)
                    .or_else(|| header_reset_at(&headers));
                return AttemptError::never(ModelError::UsageLimit {
                    plan_type: field("plan_type"),
                    resets_at,
                });
            }
            if is("usage_not_included") {
                return AttemptError::never(ModelError::UsageNotIncluded);
            }
            if is("insufficient_quota") {
                return AttemptError::never(ModelError::QuotaExceeded);
            }
            let error = ModelError::RetryLimit { status };
            match hint {
                Some(delay) => AttemptError {
                    error,
                    retry: Retry::After(delay),
                },
                None => AttemptError::never(error),
            }
        }
        400 => AttemptError::never(ModelError::InvalidRequest { body }),
        _ if status.is_server_error() && (is("server_is_overloaded") || is("slow_down")) => {
            AttemptError::never(ModelError::ServerOverloaded)
        }
        500 => with_hint(ModelError::InternalServerError),
        _ => {
            let detail = field("message").unwrap_or_else(|| truncate(&body, 1000));
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            with_hint(ModelError::UnexpectedStatus {
                status,
                detail,
                url: url.to_string(),
                cf_ray: header("cf-ray"),
                request_id: header("x-request-id").or_else(|| header("x-oai-request-id")),
            })
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Reads the SSE body until `response.completed` or a failure.
async fn read_stream(
    response: reqwest::Response,
    idle: Duration,
    on_event: &mut (dyn FnMut(ResponseEvent) + Send),
    received: &mut Vec<ResponseItem>,
) -> Result<(String, TokenUsage), AttemptError> {
    let mut body = response.bytes_stream();
    let mut decoder = SseDecoder::new();
    let mut frames: Vec<SseFrame> = Vec::new();
    let mut response_id = String::new();
    loop {
        let chunk = match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(err))) => {
                return Err(AttemptError::backoff(ModelError::Stream {
                    message: format!("error reading stream: {}", transport_message(&err)),
                }));
            }
            Ok(None) => {
                return Err(AttemptError::backoff(ModelError::Stream {
                    message: "stream closed before response.completed".to_string(),
                }));
            }
            Err(_) => {
                return Err(AttemptError::backoff(ModelError::Stream {
                    message: "idle timeout waiting for SSE".to_string(),
                }));
            }
        };
        decoder.feed(&chunk, &mut frames);
        for frame in frames.drain(..) {
            match decode_event(&frame.data) {
                WireEvent::Created { response_id: id } => {
                    response_id.clone_from(&id);
                    on_event(ResponseEvent::Created { response_id: id });
                }
                WireEvent::OutputItemAdded(item) => on_event(ResponseEvent::OutputItemAdded(item)),
                WireEvent::OutputTextDelta(delta) => {
                    on_event(ResponseEvent::OutputTextDelta(delta))
                }
                WireEvent::ReasoningSummaryDelta(delta) => {
                    on_event(ResponseEvent::ReasoningSummaryDelta(delta));
                }
                WireEvent::OutputItemDone(item) => {
                    if item != ResponseItem::Other {
                        received.push(item.clone());
                    }
                    on_event(ResponseEvent::OutputItemDone(item));
                }
                WireEvent::Completed {
                    response_id: id,
                    usage,
                } => {
                    let id = if id.is_empty() { response_id } else { id };
                    on_event(ResponseEvent::Completed {
                        response_id: id.clone(),
                        usage,
                    });
                    return Ok((id, usage));
                }
                WireEvent::Failed {
                    code,
                    error_type,
                    message,
                } => return Err(classify_failed(code, error_type, message)),
                WireEvent::Incomplete { reason } => {
                    return Err(AttemptError::never(ModelError::Incomplete { reason }));
                }
                WireEvent::ReasoningTextDelta(_) | WireEvent::Ignored | WireEvent::Unparseable => {}
            }
        }
    }
}

/// Classifies `response.failed` per the spec (with Quest's usage-limit deviation).
fn classify_failed(
    code: Option<String>,
    error_type: Option<String>,
    message: Option<String>,
) -> AttemptError {
    let is = |name: &str| code.as_deref() == Some(name) || error_type.as_deref() == Some(name);
    if is("context_length_exceeded") {
        return AttemptError::never(ModelError::ContextWindowExceeded);
    }
    if is("insufficient_quota") {
        return AttemptError::never(ModelError::QuotaExceeded);
    }
    if is("usage_not_included") {
        return AttemptError::never(ModelError::UsageNotIncluded);
    }
    if is("usage_limit_reached") {
        return AttemptError::never(ModelError::UsageLimit {
            plan_type: None,
            resets_at: None,
        });
    }
    if is("server_is_overloaded") || is("slow_down") {
        return AttemptError::never(ModelError::ServerOverloaded);
    }
    let message = message.unwrap_or_else(|| "response.failed event received".to_string());
    let hint = try_again_in(&message);
    let error = if is("rate_limit_exceeded") {
        ModelError::RateLimited { message }
    } else {
        ModelError::Stream { message }
    };
    AttemptError {
        error,
        retry: hint.map_or(Retry::Backoff, Retry::After),
    }
}

/// The request body, serialized straight from borrowed prompt parts (no intermediate JSON tree).
#[derive(serde::Serialize)]
struct RequestBody<'a> {
    model: &'a str,
    input: Vec<&'a ResponseItem>,
    tools: &'a [Value],
    tool_choice: &'static str,
    parallel_tool_calls: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<&'a Value>,
    store: bool,
    stream: bool,
    include: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_cache_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_metadata: Option<&'a Value>,
}

/// The JSON body of a request: the prompt plus items already received in this call.
pub fn request_body(prompt: &Prompt, received: &[ResponseItem]) -> Vec<u8> {
    let body = RequestBody {
        model: &prompt.model,
        input: prompt
            .input
            .iter()
            .chain(received)
            .filter(|item| **item != ResponseItem::Other)
            .collect(),
        tools: &prompt.tools,
        tool_choice: "auto",
        parallel_tool_calls: prompt.parallel_tool_calls,
        reasoning: prompt.reasoning.as_ref(),
        store: false,
        stream: true,
        include: ["reasoning.encrypted_content"],
        prompt_cache_key: prompt.prompt_cache_key.as_deref(),
        client_metadata: prompt.client_metadata.as_ref(),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// `<originator>/<version> (<os> <os version>; <arch>)[ <suffix>]`, restricted to characters a
/// header value may carry.
pub fn user_agent(originator: &str, suffix: Option<&str>) -> String {
    let (os, version) = os_name_version();
    let mut ua = format!(
        "{originator}/{} ({os} {version}; {})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    if let Some(suffix) = suffix {
        ua.push(' ');
        ua.push_str(suffix);
    }
    ua.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '_' })
        .collect()
}

fn os_name_version() -> (String, String) {
    let fallback = || (std::env::consts::OS.to_string(), "unknown".to_string());
    let Ok(release) = std::fs::read_to_string("/etc/os-release") else {
        return fallback();
    };
    let get = |key: &str| {
        release.lines().find_map(|line| {
            line.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
                .map(|v| v.trim_matches('"').to_string())
        })
    };
    match (get("NAME"), get("VERSION_ID")) {
        (Some(name), Some(version)) => (name, version),
        (Some(name), None) => (name, "unknown".to_string()),
        _ => fallback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_has_spec_fields_and_appends_received_items() {
        let prompt = Prompt {
            model: "gpt-5.5".into(),
            input: vec![
                ResponseItem::text_message("user", "hi"),
                ResponseItem::Other,
            ],
            tools: vec![json!({"type":"function","name":"f"})],
            parallel_tool_calls: true,
            reasoning: Some(json!({"effort":"medium"})),
            prompt_cache_key: Some("thread".into()),
            client_metadata: Some(json!({"thread_id":"thread"})),
            ..Prompt::default()
        };
        let received = vec![ResponseItem::text_message("assistant", "partial")];
        let body: Value = serde_json::from_slice(&request_body(&prompt, &received)).unwrap();
        assert_eq!(body["stream"], true);
        assert_eq!(body["store"], false);
        assert_eq!(body["tool_choice"], "auto");
        assert_eq!(body["parallel_tool_calls"], true);
        assert_eq!(body["include"], json!(["reasoning.encrypted_content"]));
        assert_eq!(body["prompt_cache_key"], "thread");
        assert_eq!(body["reasoning"], json!({"effort":"medium"}));
        assert!(body.get("instructions").is_none());
        assert_eq!(body["input"].as_array().unwrap().len(), 2);
        assert_eq!(body["input"][1]["role"], "assistant");
    }

    #[test]
    fn optional_fields_are_omitted() {
        let body: Value = serde_json::from_slice(&request_body(&Prompt::default(), &[])).unwrap();
        for key in [
            "reasoning",
            "prompt_cache_key",
            "client_metadata",
            "instructions",
            "previous_response_id",
        ] {
            assert!(body.get(key).is_none(), "{key}");
        }
    }

    #[test]
    fn client_and_stream_future_are_send() {
        fn is_send<T: Send>(_: &T) {}
        fn is_sync<T: Send + Sync>() {}
        is_sync::<ModelClient>();
        let client =
            ModelClient::new(ModelProviderInfo::default(), ClientOptions::default()).unwrap();
        let prompt = Prompt::default();
        let mut sink = |_: ResponseEvent| {};
        let fut = client.stream(&prompt, &mut sink);
        is_send(&fut);
    }

    #[test]
    fn user_agent_shape() {
        let ua = user_agent("quest_exec", Some("xterm (quest_exec; 1.0)"));
        let prefix = format!("quest_exec/{} (", env!("CARGO_PKG_VERSION"));
        assert!(ua.starts_with(&prefix), "{ua}");
        assert!(
            ua.contains(&format!("; {})", std::env::consts::ARCH)),
            "{ua}"
        );
        assert!(ua.ends_with(" xterm (quest_exec; 1.0)"), "{ua}");
        assert!(HeaderValue::from_str(&ua).is_ok());
    }

    #[test]
    fn failed_classification() {
        let c = |code: &str, msg: &str| {
            let f = classify_failed(Some(code.into()), None, Some(msg.into()));
            (
                f.error,
                matches!(f.retry, Retry::Never),
                match f.retry {
                    Retry::After(d) => Some(d),
                    _ => None,
                },
            )
        };
        assert_eq!(
            c("context_length_exceeded", "x"),
            (ModelError::ContextWindowExceeded, true, None)
        );
        assert_eq!(
            c("insufficient_quota", "x"),
            (ModelError::QuotaExceeded, true, None)
        );
        assert!(c("usage_limit_reached", "x").0.is_usage_limit());
        let (err, never, hint) = c(
            "rate_limit_exceeded",
            "Rate limit reached for gpt-5.5. Please try again in 2.5s.",
        );
        assert_eq!(
            err.user_message(),
            "rate limit exceeded: Rate limit reached for gpt-5.5. Please try again in 2.5s."
        );
        assert!(!never);
        assert_eq!(hint, Some(Duration::from_millis(2500)));
        let (err, never, hint) = c("server_error", "boom");
        assert_eq!(
            err.user_message(),
            "stream disconnected before completion: boom"
        );
        assert!(!never && hint.is_none());
        let typed = classify_failed(None, Some("usage_limit_reached".into()), None);
        assert!(typed.error.is_usage_limit());
    }
}

#[cfg(test)]
mod reset_header_tests {
    use super::header_reset_at;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn usage_limit_reset_falls_back_to_the_active_window_header() {
        assert_eq!(header_reset_at(&headers(&[])), None);
        assert_eq!(
            header_reset_at(&headers(&[("x-codex-primary-reset-at", "1900000000")])),
            Some(1_900_000_000)
        );
        let both = headers(&[
            ("x-codex-primary-used-percent", "40"),
            ("x-codex-primary-reset-at", "1900000000"),
            ("x-codex-secondary-used-percent", "100"),
            ("x-codex-secondary-reset-at", "1900500000"),
        ]);
        assert_eq!(header_reset_at(&both), Some(1_900_500_000));
        let garbage = headers(&[("x-codex-primary-reset-at", "1e400")]);
        assert_eq!(header_reset_at(&garbage), None);
    }
}
