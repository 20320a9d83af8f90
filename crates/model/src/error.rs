//! The model error taxonomy: what went wrong with a model call, whether it was retried, and the
//! message a user sees.

use chrono::{DateTime, Datelike, Local, TimeZone};
use http::StatusCode;
use serde_json::json;

/// Why a model call failed. `Display` is the user-facing message ([`ModelError::user_message`]).
///
/// "Retried" below refers to the two layers of [`crate::ModelClient::stream`]: layer 1 repeats one
/// HTTP request silently (5xx, connection errors), layer 2 re-sends the request visibly
/// (announced with [`crate::ResponseEvent::Retrying`]). The variant returned is the last error
/// after every allowed retry.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The provider's `env_key` variable is unset or empty. Returned by
    /// [`crate::ModelClient::new`] before any request. Never retried.
    #[error("Missing environment variable: `{var}`.")]
    MissingEnvVar {
        /// The variable name.
        var: String,
    },
    /// The provider configuration cannot be used (bad base URL, header name or value).
    /// Returned by [`crate::ModelClient::new`]. Never retried.
    #[error("Invalid model provider configuration: {message}")]
    InvalidConfig {
        /// What is wrong and where.
        message: String,
    },
    /// HTTP 429 with `error.type == "usage_limit_reached"`, or (Quest) a `response.failed` whose
    /// type or code is `usage_limit_reached`. Never retried: exactly one request.
    #[error("{}", usage_limit_message(plan_type.as_deref(), *resets_at, Local::now()))]
    UsageLimit {
        /// `error.plan_type` (`plus`, `pro`, `team`, …).
        plan_type: Option<String>,
        /// `error.resets_at`, unix seconds.
        resets_at: Option<i64>,
    },
    /// HTTP 429 or `response.failed` with `usage_not_included`. Never retried.
    #[error(
        "To use Quest with your ChatGPT plan, upgrade to Plus: https://chatgpt.com/explore/plus."
    )]
    UsageNotIncluded,
    /// `insufficient_quota` (HTTP 429 body or `response.failed`). Never retried.
    #[error("Quota exceeded. Check your plan and billing details.")]
    QuotaExceeded,
    /// `response.failed` with `context_length_exceeded`. Never retried.
    #[error(
        "Quest ran out of room in the model's context window. Start a new thread or clear earlier history before retrying."
    )]
    ContextWindowExceeded,
    /// HTTP 503 (after layer-1 retries) or `response.failed` with `server_is_overloaded` or
    /// `slow_down`. Never retried at layer 2.
    #[error("Selected model is at capacity. Please try a different model.")]
    ServerOverloaded,
    /// HTTP 400: the raw response body. Never retried.
    #[error("{body}")]
    InvalidRequest {
        /// The response body as received.
        body: String,
    },
    /// `response.incomplete`. Never retried.
    #[error("Incomplete response returned, reason: {}", reason.as_deref().unwrap_or("unknown"))]
    Incomplete {
        /// `incomplete_details.reason`, e.g. `max_output_tokens`.
        reason: Option<String>,
    },
    /// HTTP 500 after every retry of both layers.
    #[error("We\u{2019}re currently experiencing high demand, which may cause temporary errors.")]
    InternalServerError,
    /// HTTP 429 that is not a usage limit: returned at once without a retry hint, or after the
    /// layer-2 budget when `Retry-After`/`retry-after-ms` was present.
    #[error("exceeded retry limit, last status: {status}")]
    RetryLimit {
        /// The last HTTP status.
        status: StatusCode,
    },
    /// Any other non-success status (401, 403, 404, 502, 503 …) after every retry: 5xx are
    /// retried at both layers, other statuses at layer 2 only.
    #[error("unexpected status {status}: {detail}, url: {url}{}", suffix(cf_ray.as_deref(), request_id.as_deref()))]
    UnexpectedStatus {
        /// The HTTP status.
        status: StatusCode,
        /// `error.message` of a JSON body, else the body (at most 1000 bytes).
        detail: String,
        /// The request URL.
        url: String,
        /// `cf-ray` response header.
        cf_ray: Option<String>,
        /// `x-request-id` / `x-oai-request-id` response header.
        request_id: Option<String>,
    },
    /// A `response.failed` with `rate_limit_exceeded`; retried at layer 2, after the
    /// "try again in" delay when the message has one.
    #[error("rate limit exceeded: {message}")]
    RateLimited {
        /// The server's message.
        message: String,
    },
    /// The SSE stream broke before `response.completed`: closed early, idle timeout, read
    /// error, or a generic `response.failed`. Retried at layer 2.
    #[error("stream disconnected before completion: {message}")]
    Stream {
        /// What happened, e.g. `stream closed before response.completed`.
        message: String,
    },
    /// A known stream event Quest cannot use: `response.output_item.done` or
    /// `response.completed` with a field of the wrong shape. Never retried: the response was
    /// produced (and billed); asking again would likely get the same.
    #[error("the server sent a malformed `{event}` event: {detail}")]
    MalformedEvent {
        /// The event `type`.
        event: String,
        /// The field and what is wrong with it.
        detail: String,
    },
    /// A successful response that is not a stream of server-sent events, e.g. a JSON document
    /// (an endpoint that ignores `"stream": true`, or a proxy's error page). Never retried.
    #[error("the server answered {status} with {} instead of a stream of server-sent events: {detail}", content_type.as_deref().map_or_else(|| "a body without content-type".to_string(), |t| format!("`{t}`")))]
    NotEventStream {
        /// The HTTP status.
        status: StatusCode,
        /// The `content-type` header.
        content_type: Option<String>,
        /// `error.message` of a JSON body, else the start of the body (at most 1000 bytes).
        detail: String,
    },
    /// The connection could not be established (refused, DNS, TLS, timeout before response
    /// headers) after the layer-1 retries. Not retried at layer 2 (bounded, unlike Codex).
    #[error("Connection failed: {message}")]
    ConnectionFailed {
        /// The transport error.
        message: String,
    },
}

fn suffix(cf_ray: Option<&str>, request_id: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(ray) = cf_ray {
        out.push_str(", cf-ray: ");
        out.push_str(ray);
    }
    if let Some(id) = request_id {
        out.push_str(", request id: ");
        out.push_str(id);
    }
    out
}

impl ModelError {
    /// The message to show a user: what happened and what to do.
    pub fn user_message(&self) -> String {
        self.to_string()
    }

    /// True for the errors that mean "out of allowance" (usage limit, plan without access,
    /// quota): the goal runtime stops instead of retrying.
    pub fn is_usage_limit(&self) -> bool {
        matches!(
            self,
            ModelError::UsageLimit { .. }
                | ModelError::UsageNotIncluded
                | ModelError::QuotaExceeded
        )
    }

    /// When the usage limit resets (unix seconds), if the server said.
    pub fn usage_limit_resets_at(&self) -> Option<i64> {
        match self {
            ModelError::UsageLimit { resets_at, .. } => *resets_at,
            _ => None,
        }
    }

    /// The app-server `codexErrorInfo` value for this error (camelCase string or object).
    pub fn codex_error_info(&self) -> serde_json::Value {
        let with_status = |name: &str, status: Option<StatusCode>| json!({ name: { "httpStatusCode": status.map(|s| s.as_u16()) } });
        match self {
            ModelError::UsageLimit { .. }
            | ModelError::UsageNotIncluded
            | ModelError::QuotaExceeded => json!("usageLimitExceeded"),
            ModelError::ContextWindowExceeded => json!("contextWindowExceeded"),
            ModelError::ServerOverloaded => json!("serverOverloaded"),
            ModelError::InvalidRequest { .. } => json!("badRequest"),
            ModelError::InternalServerError => json!("internalServerError"),
            ModelError::RateLimited { .. } => json!("rateLimitExceeded"),
            ModelError::RetryLimit { status } => {
                with_status("responseTooManyFailedAttempts", Some(*status))
            }
            ModelError::UnexpectedStatus { status, .. } => match status.as_u16() {
                401 | 403 => json!("unauthorized"),
                _ => with_status("responseStreamConnectionFailed", Some(*status)),
            },
            ModelError::Stream { .. } => with_status("responseStreamDisconnected", None),
            ModelError::ConnectionFailed { .. } => with_status("httpConnectionFailed", None),
            ModelError::MissingEnvVar { .. }
            | ModelError::InvalidConfig { .. }
            | ModelError::Incomplete { .. }
            | ModelError::MalformedEvent { .. }
            | ModelError::NotEventStream { .. } => json!("other"),
        }
    }

    /// A short, stable tag for telemetry (`error.type`).
    pub fn error_type(&self) -> &'static str {
        match self {
            ModelError::MissingEnvVar { .. } => "missing_env_var",
            ModelError::InvalidConfig { .. } => "invalid_config",
            ModelError::UsageLimit { .. } => "usage_limit_reached",
            ModelError::UsageNotIncluded => "usage_not_included",
            ModelError::QuotaExceeded => "insufficient_quota",
            ModelError::ContextWindowExceeded => "context_length_exceeded",
            ModelError::ServerOverloaded => "server_overloaded",
            ModelError::InvalidRequest { .. } => "invalid_request",
            ModelError::Incomplete { .. } => "incomplete",
            ModelError::InternalServerError => "internal_server_error",
            ModelError::RetryLimit { .. } => "retry_limit",
            ModelError::UnexpectedStatus { .. } => "unexpected_status",
            ModelError::RateLimited { .. } => "rate_limited",
            ModelError::Stream { .. } => "stream_disconnected",
            ModelError::ConnectionFailed { .. } => "connection_failed",
            ModelError::MalformedEvent { .. } => "malformed_event",
            ModelError::NotEventStream { .. } => "not_event_stream",
        }
    }
}

/// The usage-limit message for `plan_type`, with the reset time rendered in `now`'s time zone:
/// `11:06 AM` when the reset is on `now`'s date, else `Nov 25th, 2026 9:46 AM`.
pub fn usage_limit_message<Tz: TimeZone>(
    plan_type: Option<&str>,
    resets_at: Option<i64>,
    now: DateTime<Tz>,
) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let when = resets_at
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .map(|utc| format_reset_time(utc.with_timezone(&now.timezone()), &now));
    let try_again = match &when {
        Some(time) => format!("try again at {time}"),
        None => "try again later".to_string(),
    };
    let head = "You\u{2019}ve hit your usage limit.";
    match plan_type.map(str::to_ascii_lowercase).as_deref() {
        Some("plus") => format!(
            "{head} Upgrade to Pro (https://chatgpt.com/explore/pro), visit https://chatgpt.com/settings/usage to purchase more credits or {try_again}."
        ),
        Some("pro") => format!(
            "{head} Visit https://chatgpt.com/settings/usage to purchase more credits or {try_again}."
        ),
        Some("team" | "business" | "enterprise" | "edu") => {
            format!("{head} To get more access now, send a request to your admin or {try_again}.")
        }
        Some("free" | "go") => format!(
            "{head} Upgrade to Plus to continue using Quest (https://chatgpt.com/explore/plus), or {try_again}."
        ),
        _ => {
            let mut s = try_again;
            if let Some(first) = s.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            format!("{head} {s}.")
        }
    }
}

fn format_reset_time<Tz: TimeZone>(at: DateTime<Tz>, now: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    if at.date_naive() == now.date_naive() {
        at.format("%-I:%M %p").to_string()
    } else {
        let day = at.day();
        let ordinal = match (day % 10, day % 100) {
            (_, 11..=13) => "th",
            (1, _) => "st",
            (2, _) => "nd",
            (3, _) => "rd",
            _ => "th",
        };
        format!(
            "{} {day}{ordinal}, {}",
            at.format("%b"),
            at.format("%Y %-I:%M %p")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;

    fn at(offset_hours: i32, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<FixedOffset> {
        FixedOffset::east_opt(offset_hours * 3600)
            .unwrap()
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
    }

    #[test]
    fn usage_limit_messages_per_plan() {
        // 2026-11-25 14:06 UTC.
        let resets = at(0, 2026, 11, 25, 14, 6).timestamp();
        let now = at(0, 2026, 11, 25, 9, 0);
        assert_eq!(
            usage_limit_message(None, None, now),
            "You’ve hit your usage limit. Try again later."
        );
        assert_eq!(
            usage_limit_message(Some("unknown"), Some(resets), now),
            "You’ve hit your usage limit. Try again at 2:06 PM."
        );
        assert_eq!(
            usage_limit_message(Some("plus"), Some(resets), now),
            "You’ve hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro), visit https://chatgpt.com/settings/usage to purchase more credits or try again at 2:06 PM."
        );
        assert_eq!(
            usage_limit_message(Some("pro"), Some(resets), now),
            "You’ve hit your usage limit. Visit https://chatgpt.com/settings/usage to purchase more credits or try again at 2:06 PM."
        );
        assert_eq!(
            usage_limit_message(Some("team"), Some(resets), now),
            "You’ve hit your usage limit. To get more access now, send a request to your admin or try again at 2:06 PM."
        );
        assert_eq!(
            usage_limit_message(Some("free"), None, now),
            "You’ve hit your usage limit. Upgrade to Plus to continue using Quest (https://chatgpt.com/explore/plus), or try again later."
        );
    }

    #[test]
    fn reset_time_uses_the_given_zone_and_date_form_on_other_days() {
        let resets = at(0, 2026, 11, 25, 14, 46).timestamp();
        // Seen from UTC-5 the reset is 9:46 AM on the same local day.
        let now_ny = at(-5, 2026, 11, 25, 8, 0);
        assert_eq!(
            usage_limit_message(Some("pro"), Some(resets), now_ny),
            "You’ve hit your usage limit. Visit https://chatgpt.com/settings/usage to purchase more credits or try again at 9:46 AM."
        );
        let yesterday_ny = at(-5, 2026, 11, 24, 8, 0);
        assert_eq!(
            usage_limit_message(None, Some(resets), yesterday_ny),
            "You’ve hit your usage limit. Try again at Nov 25th, 2026 9:46 AM."
        );
        // In UTC+10 the reset is already the next day.
        let now_syd = at(10, 2026, 11, 25, 20, 0);
        assert_eq!(
            usage_limit_message(None, Some(resets), now_syd),
            "You’ve hit your usage limit. Try again at Nov 26th, 2026 12:46 AM."
        );
        for (d, want) in [
            (1, "1st"),
            (2, "2nd"),
            (3, "3rd"),
            (11, "11th"),
            (12, "12th"),
            (13, "13th"),
            (21, "21st"),
            (22, "22nd"),
            (31, "31st"),
        ] {
            let r = at(0, 2026, 12, d, 10, 0).timestamp();
            let msg = usage_limit_message(None, Some(r), at(0, 2026, 11, 1, 0, 0));
            assert!(msg.contains(&format!("Dec {want}, 2026 10:00 AM")), "{msg}");
        }
    }

    /// Runs in a child process of this test binary with `TZ` pinned, so the `Local` path
    /// (`Display`/`user_message`) is exercised without touching this process's environment.
    #[test]
    fn user_message_renders_local_time_with_pinned_tz() {
        if let Ok(expected) = std::env::var("QUEST_MODEL_TZ_CHILD") {
            let resets = at(0, 2030, 1, 2, 15, 30).timestamp();
            let err = ModelError::UsageLimit {
                plan_type: Some("pro".into()),
                resets_at: Some(resets),
            };
            assert!(
                err.user_message()
                    .ends_with(&format!("try again at {expected}.")),
                "{}",
                err.user_message()
            );
            return;
        }
        for (tz, expected) in [
            ("UTC0", "Jan 2nd, 2030 3:30 PM"),
            ("<+0900>-9", "Jan 3rd, 2030 12:30 AM"),
        ] {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "error::tests::user_message_renders_local_time_with_pinned_tz",
                    "--nocapture",
                ])
                .env("TZ", tz)
                .env("QUEST_MODEL_TZ_CHILD", expected)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "TZ={tz}: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
        }
    }

    #[test]
    fn classification_helpers() {
        let e = ModelError::UsageLimit {
            plan_type: None,
            resets_at: Some(5),
        };
        assert!(e.is_usage_limit());
        assert_eq!(e.usage_limit_resets_at(), Some(5));
        assert_eq!(e.codex_error_info(), json!("usageLimitExceeded"));
        assert_eq!(
            ModelError::Stream {
                message: "x".into()
            }
            .codex_error_info(),
            json!({"responseStreamDisconnected": {"httpStatusCode": null}})
        );
        assert_eq!(
            ModelError::InternalServerError.codex_error_info(),
            json!("internalServerError")
        );
        assert!(!ModelError::ServerOverloaded.is_usage_limit());
        let status = ModelError::UnexpectedStatus {
            status: StatusCode::BAD_GATEWAY,
            detail: "bad".into(),
            url: "http://h/v1/responses".into(),
            cf_ray: Some("ray".into()),
            request_id: Some("req".into()),
        };
        assert_eq!(
            status.user_message(),
            "unexpected status 502 Bad Gateway: bad, url: http://h/v1/responses, cf-ray: ray, request id: req"
        );
        assert_eq!(status.error_type(), "unexpected_status");
    }
}
