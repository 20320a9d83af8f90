//! The streaming client: builds the request, sends it with two retry layers, decodes the SSE
//! stream into [`ResponseEvent`]s.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue};
use quest_protocol::{ResponseItem, TokenUsage};
use serde_json::Value;
use tracing::Instrument;

use crate::body::{EncodedItems, RequestBody, request_body};
use crate::error::ModelError;
use crate::provider::ModelProviderInfo;
use crate::retry::{backoff, clamp_delay, retry_after, try_again_in};
use crate::sse::{SseDecoder, SseFrame, WireEvent, decode_frame};

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
    /// Longest delay Quest waits for a retry (default 120 s). Longer server hints (however large)
    /// are clamped to it, and so is computed backoff.
    pub max_retry_delay: Duration,
    /// Appended to the user agent after a space, e.g. `xterm (quest_exec; 0.1.0)`.
    pub user_agent_suffix: Option<String>,
    /// Send W3C `traceparent`/`tracestate` (`[otel] propagate_model_requests`, default true).
    /// When the prompt's headers already carry a `traceparent`, those are sent as given;
    /// otherwise each attempt carries the context of its own `chat` span.
    pub propagate_trace_context: bool,
    /// The provider id (`[model_providers.<id>]`), for `gen_ai.provider.name` on `chat` spans
    /// (`openai` for OpenAI endpoints whatever the id); the provider's display name when unset.
    pub provider_id: Option<String>,
    /// Writes `traceparent`/`tracestate` for an attempt's `chat` span into the request headers
    /// (e.g. with configured tracestate members merged); returns whether it wrote any. When
    /// unset, the span's OpenTelemetry context is injected as is.
    pub trace_headers: Option<fn(&tracing::Span, &mut HeaderMap) -> bool>,
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
            provider_id: None,
            trace_headers: None,
        }
    }
}

/// One model call's input.
#[derive(Clone, Debug, Default)]
pub struct Prompt {
    /// Model slug.
    pub model: String,
    /// The history already serialized (a thread's live history, kept encoded as it grows);
    /// sent first, before `input`.
    pub encoded_input: EncodedItems,
    /// The history, or the rest of it after `encoded_input` (base instructions are the first
    /// `developer` message).
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
    /// One HTTP attempt ended (every attempt of both retry layers is reported once, in order,
    /// before the retry or the final result).
    RequestAttempt(RequestAttempt),
    /// One SSE event was received on the current attempt's stream.
    SseEvent {
        /// The event's JSON `type` (`parse_error` for unparsable data, `stream_error` when the
        /// stream broke or went idle).
        kind: String,
        /// Time since the previous event (or since the response headers).
        duration: Duration,
        /// The failure, for `response.failed`, unparsable data or a broken stream.
        error: Option<String>,
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

/// One HTTP attempt of a model call, as reported by [`ResponseEvent::RequestAttempt`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestAttempt {
    /// 1-based attempt number within the call, counted across both retry layers.
    pub attempt: u32,
    /// HTTP status of the response, when one arrived.
    pub status: Option<u16>,
    /// `error.type` of a failed attempt: the status code for HTTP failures, else one of
    /// `usage_limit_reached`, `rate_limited`, `stream_disconnected`, `idle_timeout`,
    /// `response_failed`, `response_incomplete`, `connection_failed`, `_OTHER`.
    pub error_type: Option<String>,
    /// What went wrong, for a failed attempt.
    pub error: Option<String>,
    /// Request start to the end of the response (the end of the stream for a `200`).
    pub duration: Duration,
    /// Delay before the next attempt, when this one is retried.
    pub retry_delay: Option<Duration>,
}

impl RequestAttempt {
    /// True for a 2xx response whose stream completed.
    pub fn succeeded(&self) -> bool {
        self.error_type.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// An attempt in flight: its `chat` span and what is known so far.
struct Attempt {
    span: tracing::Span,
    number: u32,
    started: std::time::Instant,
    status: Option<u16>,
}

impl Attempt {
    /// Records the outcome on the span and reports it.
    fn finish(
        self,
        failure: Option<&AttemptError>,
        retry_delay: Option<Duration>,
        on_event: &mut (dyn FnMut(ResponseEvent) + Send),
    ) {
        if let Some(status) = self.status {
            self.span
                .record("http.response.status_code", i64::from(status));
        }
        let error_type = failure.map(|failure| failure.error_type(self.status));
        if let Some(kind) = &error_type {
            self.span.record("error.type", kind.as_str());
            self.span.record("otel.status_code", "ERROR");
        }
        on_event(ResponseEvent::RequestAttempt(RequestAttempt {
            attempt: self.number,
            status: self.status,
            error_type,
            error: failure.map(|failure| failure.error.user_message()),
            duration: self.started.elapsed(),
            retry_delay,
        }));
    }
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
    /// `error.type` when the variant alone does not tell (idle timeout, broken stream,
    /// `response.failed`).
    kind: Option<&'static str>,
}

impl AttemptError {
    fn never(error: ModelError) -> Self {
        Self {
            error,
            retry: Retry::Never,
            kind: None,
        }
    }
    fn backoff(error: ModelError) -> Self {
        Self {
            error,
            retry: Retry::Backoff,
            kind: None,
        }
    }
    fn with_kind(mut self, kind: &'static str) -> Self {
        self.kind = Some(kind);
        self
    }

    /// `error.type` of the attempt: the status code for an HTTP failure, else the GenAI
    /// vocabulary.
    fn error_type(&self, status: Option<u16>) -> String {
        if let Some(status) = status.filter(|s| !(200..300).contains(s)) {
            return status.to_string();
        }
        if let Some(kind) = self.kind {
            return kind.to_string();
        }
        match &self.error {
            ModelError::UsageLimit { .. } => "usage_limit_reached",
            ModelError::RateLimited { .. } => "rate_limited",
            ModelError::ConnectionFailed { .. } => "connection_failed",
            ModelError::Incomplete { .. } => "response_incomplete",
            ModelError::Stream { .. } => "stream_disconnected",
            ModelError::ContextWindowExceeded
            | ModelError::QuotaExceeded
            | ModelError::UsageNotIncluded
            | ModelError::ServerOverloaded => "response_failed",
            ModelError::MissingEnvVar { .. }
            | ModelError::InvalidConfig { .. }
            | ModelError::InvalidRequest { .. }
            | ModelError::InternalServerError
            | ModelError::RetryLimit { .. }
            | ModelError::UnexpectedStatus { .. }
            | ModelError::MalformedEvent { .. }
            | ModelError::NotEventStream { .. } => "_OTHER",
        }
        .to_string()
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

    pub(crate) fn endpoint(&self) -> &reqwest::Url {
        &self.inner.url
    }

    pub(crate) fn static_headers(&self) -> &HeaderMap {
        &self.inner.headers
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
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
            let (failure, attempt) =
                match self.send(prompt, &body, &mut http_requests, on_event).await {
                    Ok((response, attempt)) => {
                        let meta = ResponseMeta {
                            headers: response.headers().clone(),
                        };
                        let streamed = read_stream(
                            response,
                            inner.provider.stream_idle_timeout(),
                            &attempt.span,
                            on_event,
                            &mut received,
                        )
                        .instrument(attempt.span.clone())
                        .await;
                        match streamed {
                            Ok((response_id, usage)) => {
                                attempt.finish(None, None, on_event);
                                let outcome = ResponseOutcome {
                                    response_id,
                                    items: received,
                                    usage,
                                    http_requests,
                                };
                                return Ok((outcome, meta));
                            }
                            Err(failure) => (failure, attempt),
                        }
                    }
                    Err(failed) => failed,
                };
            let delay = match failure.retry {
                Retry::Never => None,
                _ if retries >= max_retries => None,
                Retry::Backoff => Some(backoff(
                    inner.opts.backoff_base,
                    retries + 1,
                    inner.opts.max_retry_delay,
                )),
                Retry::After(hint) => {
                    let delay = clamp_delay(hint, inner.opts.max_retry_delay);
                    if delay < hint {
                        tracing::warn!(requested = ?hint, ?delay, "server retry hint clamped to max_retry_delay");
                    }
                    Some(delay)
                }
            };
            attempt.finish(Some(&failure), delay, on_event);
            let Some(delay) = delay else {
                return Err(failure.error);
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

    /// The `chat {model}` span of one HTTP attempt (OpenTelemetry GenAI conventions), a child
    /// of the caller's current span.
    fn attempt_span(&self, prompt: &Prompt, attempt: u32) -> tracing::Span {
        let inner = &*self.inner;
        let provider_id = inner
            .opts
            .provider_id
            .as_deref()
            .unwrap_or(&inner.provider.name);
        let host = inner.url.host_str().unwrap_or_default();
        let provider = if host == "api.openai.com"
            || host.ends_with(".openai.com")
            || host == "chatgpt.com"
            || host.ends_with(".chatgpt.com")
        {
            "openai"
        } else {
            provider_id
        };
        let port = inner.url.port_or_known_default().map(i64::from);
        tracing::info_span!(
            target: "quest::model",
            "chat",
            otel.name = %format!("chat {}", prompt.model),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            gen_ai.operation.name = "chat",
            gen_ai.provider.name = provider,
            gen_ai.request.model = %prompt.model,
            gen_ai.conversation.id = prompt.prompt_cache_key.as_deref(),
            gen_ai.response.id = tracing::field::Empty,
            gen_ai.response.model = tracing::field::Empty,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
            gen_ai.usage.cache_read.input_tokens = tracing::field::Empty,
            gen_ai.usage.reasoning.output_tokens = tracing::field::Empty,
            codex.usage.reasoning_output_tokens = tracing::field::Empty,
            codex.usage.total_tokens = tracing::field::Empty,
            server.address = host,
            server.port = port,
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            quest.retry.attempt = i64::from(attempt),
        )
    }

    fn request_headers(&self, prompt: &Prompt, span: &tracing::Span) -> HeaderMap {
        let mut headers = self.inner.headers.clone();
        for (name, value) in &prompt.extra_headers {
            headers.insert(name.clone(), value.clone());
        }
        if !self.inner.opts.propagate_trace_context {
            headers.remove("traceparent");
            headers.remove("tracestate");
        } else if !headers.contains_key("traceparent") {
            // The caller did not supply a context: propagate this attempt's `chat` span.
            match self.inner.opts.trace_headers {
                Some(inject) => {
                    inject(span, &mut headers);
                }
                None => crate::trace::inject_span_context(span, &mut headers),
            }
        }
        headers
    }

    /// Layer 1: one logical HTTP request, repeated silently for 5xx and connection errors.
    /// Every attempt gets its own `chat` span and is reported when it ends; the last attempt
    /// is handed back unfinished (streaming on success, awaiting the layer-2 decision on
    /// failure).
    async fn send(
        &self,
        prompt: &Prompt,
        body: &RequestBody,
        http_requests: &mut u32,
        on_event: &mut (dyn FnMut(ResponseEvent) + Send),
    ) -> Result<(reqwest::Response, Attempt), (AttemptError, Attempt)> {
        let inner = &*self.inner;
        let max = inner.provider.request_max_retries();
        let idle = inner.provider.stream_idle_timeout();
        let mut attempt: u64 = 0;
        loop {
            attempt += 1;
            *http_requests += 1;
            let span = self.attempt_span(prompt, *http_requests);
            let headers = self.request_headers(prompt, &span);
            let mut current = Attempt {
                span,
                number: *http_requests,
                started: std::time::Instant::now(),
                status: None,
            };
            let request = inner
                .http
                .post(inner.url.clone())
                .headers(headers)
                .body(reqwest::Body::wrap(body.clone()));
            let can_retry = attempt <= max;
            let retry_no = u32::try_from(attempt).unwrap_or(u32::MAX);
            let retry_backoff = || {
                backoff(
                    inner.opts.backoff_base,
                    retry_no,
                    inner.opts.max_retry_delay,
                )
            };
            let sent = tokio::time::timeout(idle, request.send())
                .instrument(current.span.clone())
                .await;
            let response = match sent {
                Ok(Ok(response)) => response,
                Ok(Err(err)) => {
                    let message = transport_message(&err);
                    let failure = AttemptError::never(ModelError::ConnectionFailed { message });
                    if can_retry {
                        let delay = retry_backoff();
                        tracing::debug!(attempt, error = %failure.error, "transport error, retrying");
                        current.finish(Some(&failure), Some(delay), on_event);
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err((failure, current));
                }
                Err(_) => {
                    let failure = AttemptError::never(ModelError::ConnectionFailed {
                        message: "timed out waiting for response headers".to_string(),
                    });
                    if can_retry {
                        let delay = retry_backoff();
                        current.finish(Some(&failure), Some(delay), on_event);
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err((failure, current));
                }
            };
            let status = response.status();
            current.status = Some(status.as_u16());
            if status.is_success() {
                return Ok((response, current));
            }
            let hint = retry_after(response.headers(), chrono::Utc::now());
            if status.is_server_error() && can_retry {
                let delay = match hint {
                    Some(hint) => clamp_delay(hint, inner.opts.max_retry_delay),
                    None => retry_backoff(),
                };
                // Drain the body so the connection can be reused.
                let failure = status_error(response, inner.url.as_str()).await;
                tracing::debug!(attempt, %status, ?delay, "server error, retrying");
                current.finish(Some(&failure), Some(delay), on_event);
                tokio::time::sleep(delay).await;
                continue;
            }
            let failure = status_error(response, inner.url.as_str()).await;
            return Err((failure, current));
        }
    }
}

/// An error with its sources (reqwest's own message says little: "error sending request").
pub(crate) fn transport_message(err: &dyn std::error::Error) -> String {
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
        kind: None,
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
                    kind: None,
                },
                None => AttemptError::never(error),
            }
        }
        // Providers that check the window before streaming answer 400 with this code.
        400 if is("context_length_exceeded") => {
            AttemptError::never(ModelError::ContextWindowExceeded)
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

/// The JSON `type` of an SSE event, as reported in [`ResponseEvent::SseEvent`].
fn sse_kind(event: &WireEvent, data: &str) -> String {
    match event {
        WireEvent::Created { .. } => "response.created",
        WireEvent::OutputItemAdded(_) => "response.output_item.added",
        WireEvent::OutputTextDelta(_) => "response.output_text.delta",
        WireEvent::ReasoningSummaryDelta(_) => "response.reasoning_summary_text.delta",
        WireEvent::ReasoningTextDelta(_) => "response.reasoning_text.delta",
        WireEvent::OutputItemDone(_) => "response.output_item.done",
        WireEvent::Completed { .. } => "response.completed",
        WireEvent::Failed { .. } => "response.failed",
        WireEvent::Incomplete { .. } => "response.incomplete",
        WireEvent::Unparseable => "parse_error",
        WireEvent::Malformed { event, .. } => return event.clone(),
        WireEvent::Ignored => {
            #[derive(serde::Deserialize)]
            struct Kind {
                #[serde(rename = "type")]
                kind: String,
            }
            return serde_json::from_str::<Kind>(data)
                .map_or_else(|_| "unknown".to_string(), |k| k.kind);
        }
    }
    .to_string()
}

/// `response.model` of a `response.completed` event, when present.
fn response_model(data: &str) -> Option<String> {
    serde_json::from_str::<Value>(data)
        .ok()?
        .pointer("/response/model")?
        .as_str()
        .map(str::to_string)
}

/// How much of a body that is not an event stream is read to describe it.
const NOT_SSE_READ_CAP: usize = 64 * 1024;

/// `application/json`, `application/problem+json`, … (parameters and case ignored).
fn is_json_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// [`ModelError::NotEventStream`] for a body that starts with `head`.
fn not_event_stream(
    status: http::StatusCode,
    content_type: Option<String>,
    head: &[u8],
) -> AttemptError {
    let text = String::from_utf8_lossy(head);
    let message = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
        v.pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let detail = message.unwrap_or_else(|| {
        let body = text.trim();
        if body.is_empty() {
            "empty body".to_string()
        } else {
            truncate(body, 1000)
        }
    });
    AttemptError::never(ModelError::NotEventStream {
        status,
        content_type,
        detail,
    })
}

/// Reads the SSE body until `response.completed` or a failure, reporting every SSE event and
/// recording the response id, model and usage on the attempt's `span`.
async fn read_stream(
    response: reqwest::Response,
    idle: Duration,
    span: &tracing::Span,
    on_event: &mut (dyn FnMut(ResponseEvent) + Send),
    received: &mut Vec<ResponseItem>,
) -> Result<(String, TokenUsage), AttemptError> {
    let status = response.status();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = response.bytes_stream();
    if content_type.as_deref().is_some_and(is_json_type) {
        let mut head = Vec::new();
        while head.len() < NOT_SSE_READ_CAP {
            match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(Ok(chunk))) => head.extend_from_slice(&chunk),
                _ => break,
            }
        }
        return Err(not_event_stream(status, content_type, &head));
    }
    let mut decoder = SseDecoder::new();
    let mut frames: Vec<SseFrame> = Vec::new();
    let mut response_id = String::new();
    let mut last_event = std::time::Instant::now();
    let stream_error = |failure: AttemptError,
                        last_event: std::time::Instant,
                        on_event: &mut (dyn FnMut(ResponseEvent) + Send)| {
        on_event(ResponseEvent::SseEvent {
            kind: "stream_error".to_string(),
            duration: last_event.elapsed(),
            error: Some(failure.error.user_message()),
        });
        failure
    };
    // The start of the body while no frame has been seen, to tell a JSON document from a cut
    // stream when the body ends.
    let mut head: Option<Vec<u8>> = Some(Vec::new());
    loop {
        let chunk = match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(err))) => {
                let failure = AttemptError::backoff(ModelError::Stream {
                    message: format!("error reading stream: {}", transport_message(&err)),
                })
                .with_kind("stream_disconnected");
                return Err(stream_error(failure, last_event, on_event));
            }
            Ok(None) => {
                if let Some(head) = &head
                    && matches!(head.trim_ascii_start().first(), Some(b'{' | b'['))
                {
                    return Err(not_event_stream(status, content_type, head));
                }
                let failure = AttemptError::backoff(ModelError::Stream {
                    message: "stream closed before response.completed".to_string(),
                })
                .with_kind("stream_disconnected");
                return Err(stream_error(failure, last_event, on_event));
            }
            Err(_) => {
                let failure = AttemptError::backoff(ModelError::Stream {
                    message: "idle timeout waiting for SSE".to_string(),
                })
                .with_kind("idle_timeout");
                return Err(stream_error(failure, last_event, on_event));
            }
        };
        decoder.feed(&chunk, &mut frames);
        if let Some(start) = head.as_mut() {
            if frames.is_empty() && start.len() < NOT_SSE_READ_CAP {
                start.extend_from_slice(&chunk[..chunk.len().min(NOT_SSE_READ_CAP - start.len())]);
            } else {
                head = None;
            }
        }
        for frame in frames.drain(..) {
            let event = decode_frame(&frame);
            let error = match &event {
                WireEvent::Unparseable => Some("unparsable SSE event".to_string()),
                WireEvent::Failed { message, .. } => Some(
                    message
                        .clone()
                        .unwrap_or_else(|| "response.failed event received".to_string()),
                ),
                _ => None,
            };
            on_event(ResponseEvent::SseEvent {
                kind: sse_kind(&event, &frame.data),
                duration: last_event.elapsed(),
                error,
            });
            last_event = std::time::Instant::now();
            match event {
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
                    span.record("gen_ai.response.id", id.as_str());
                    if let Some(model) = response_model(&frame.data) {
                        span.record("gen_ai.response.model", model.as_str());
                    }
                    span.record("gen_ai.usage.input_tokens", usage.input_tokens);
                    span.record("gen_ai.usage.output_tokens", usage.output_tokens);
                    span.record(
                        "gen_ai.usage.cache_read.input_tokens",
                        usage.cached_input_tokens,
                    );
                    span.record(
                        "gen_ai.usage.reasoning.output_tokens",
                        usage.reasoning_output_tokens,
                    );
                    span.record(
                        "codex.usage.reasoning_output_tokens",
                        usage.reasoning_output_tokens,
                    );
                    span.record("codex.usage.total_tokens", usage.total_tokens);
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
                WireEvent::Malformed { event, detail } => {
                    return Err(AttemptError::never(ModelError::MalformedEvent {
                        event,
                        detail,
                    }));
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
        return AttemptError::never(ModelError::ContextWindowExceeded).with_kind("response_failed");
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
        })
        .with_kind("usage_limit_reached");
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
    let kind = if matches!(error, ModelError::RateLimited { .. }) {
        "rate_limited"
    } else {
        "response_failed"
    };
    AttemptError {
        error,
        retry: hint.map_or(Retry::Backoff, Retry::After),
        kind: Some(kind),
    }
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
        let body: Value =
            serde_json::from_slice(&request_body(&prompt, &received).to_vec()).unwrap();
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
        let body: Value =
            serde_json::from_slice(&request_body(&Prompt::default(), &[]).to_vec()).unwrap();
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
