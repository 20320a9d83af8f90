//! W3C trace context: reading and writing `traceparent`/`tracestate`, parenting spans from a
//! remote context, and upserting the configured tracestate members into what is propagated.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::RwLock;

use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::trace::TraceState;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde::Deserialize;
use serde::Serialize;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A W3C trace context as carried in headers, env vars or the app-server `trace` member.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct W3cTraceContext {
    /// `traceparent` header value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// `tracestate` header value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

type TracestateConfig = BTreeMap<String, BTreeMap<String, String>>;

fn tracestate_slot() -> &'static RwLock<TracestateConfig> {
    static SLOT: OnceLock<RwLock<TracestateConfig>> = OnceLock::new();
    SLOT.get_or_init(|| RwLock::new(BTreeMap::new()))
}

/// Replaces the process-wide configured tracestate (done by provider construction).
pub(crate) fn install_tracestate_config(config: TracestateConfig) {
    match tracestate_slot().write() {
        Ok(mut slot) => *slot = config,
        Err(poisoned) => *poisoned.into_inner() = config,
    }
}

fn configured_tracestate() -> TracestateConfig {
    match tracestate_slot().read() {
        Ok(slot) => slot.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// Upserts configured members into a propagated `tracestate` header value. Configured fields
/// replace same-named fields of their member, other fields and members are kept, configured
/// members move to the front in ascending key order. `None` when the result is empty.
pub fn merge_tracestate_entries(
    incoming: Option<&str>,
    config: &TracestateConfig,
) -> Option<String> {
    let mut state = match incoming.map(str::trim).filter(|value| !value.is_empty()) {
        None => TraceState::default(),
        Some(header) => match header.parse::<TraceState>() {
            Ok(state) => state,
            Err(err) => {
                tracing::warn!(
                    "ignoring invalid tracestate while propagating trace context: {err}"
                );
                TraceState::default()
            }
        },
    };
    for (member, fields) in config.iter().rev() {
        let existing = state.get(member).unwrap_or_default().to_string();
        let mut seen: Vec<&str> = Vec::new();
        let mut parts: Vec<String> = Vec::new();
        for part in existing.split(';').filter(|part| !part.is_empty()) {
            let key = part.split_once(':').map(|(key, _)| key);
            match key.and_then(|key| fields.get_key_value(key)) {
                Some((key, value)) => {
                    if !seen.contains(&key.as_str()) {
                        seen.push(key.as_str());
                        parts.push(format!("{key}:{value}"));
                    }
                }
                None => parts.push(part.to_string()),
            }
        }
        for (key, value) in fields {
            if !seen.contains(&key.as_str()) {
                parts.push(format!("{key}:{value}"));
            }
        }
        match state.insert(member.clone(), parts.join(";")) {
            Ok(next) => state = next,
            Err(err) => {
                tracing::warn!(
                    "ignoring configured tracestate while propagating trace context: {err}"
                );
                break;
            }
        }
    }
    let header = state.header();
    (!header.is_empty()).then_some(header)
}

fn context_to_w3c(cx: &Context) -> Option<W3cTraceContext> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    let traceparent = carrier.remove("traceparent")?;
    let tracestate = merge_tracestate_entries(
        carrier.get("tracestate").map(String::as_str),
        &configured_tracestate(),
    );
    Some(W3cTraceContext {
        traceparent: Some(traceparent),
        tracestate,
    })
}

/// The span's W3C context (with configured tracestate merged), `None` without a valid context.
pub fn span_w3c_trace_context(span: &tracing::Span) -> Option<W3cTraceContext> {
    context_to_w3c(&span.context())
}

/// [`span_w3c_trace_context`] for the current span.
pub fn current_span_w3c_trace_context() -> Option<W3cTraceContext> {
    span_w3c_trace_context(&tracing::Span::current())
}

/// Writes `traceparent`/`tracestate` for `span` into `headers`, replacing or removing what was
/// there. Returns false (and removes both) without a valid context.
pub fn inject_span_w3c_trace_headers(span: &tracing::Span, headers: &mut http::HeaderMap) -> bool {
    headers.remove("traceparent");
    headers.remove("tracestate");
    let Some(context) = span_w3c_trace_context(span) else {
        return false;
    };
    let Some(traceparent) = context
        .traceparent
        .as_deref()
        .and_then(|value| http::HeaderValue::from_str(value).ok())
    else {
        return false;
    };
    headers.insert("traceparent", traceparent);
    if let Some(tracestate) = context
        .tracestate
        .as_deref()
        .and_then(|value| http::HeaderValue::from_str(value).ok())
    {
        headers.insert("tracestate", tracestate);
    }
    true
}

/// Environment for a child process started under `span`: `TRACEPARENT` and (when non-empty)
/// `TRACESTATE`. Empty without a valid context; callers then remove inherited values.
pub fn span_trace_env(span: &tracing::Span) -> Vec<(&'static str, String)> {
    let Some(context) = span_w3c_trace_context(span) else {
        return Vec::new();
    };
    let mut env = Vec::with_capacity(2);
    if let Some(traceparent) = context.traceparent {
        env.push(("TRACEPARENT", traceparent));
    }
    if let Some(tracestate) = context.tracestate {
        env.push(("TRACESTATE", tracestate));
    }
    env
}

/// The current span's trace id (32 lowercase hex chars).
pub fn current_span_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span_context = cx.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// A remote context from a W3C trace context; `None` without a valid `traceparent`.
pub fn context_from_w3c_trace_context(trace: &W3cTraceContext) -> Option<Context> {
    let traceparent = trace.traceparent.as_deref()?;
    let mut carrier: HashMap<String, String> = HashMap::new();
    carrier.insert("traceparent".to_string(), traceparent.trim().to_string());
    if let Some(tracestate) = &trace.tracestate {
        carrier.insert("tracestate".to_string(), tracestate.trim().to_string());
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Parents `span` on `cx`; false when the span is not recorded by an OpenTelemetry layer.
pub fn set_parent_from_context(span: &tracing::Span, cx: Context) -> bool {
    span.set_parent(cx).is_ok()
}

/// Parents `span` on a W3C trace context; false when the context is invalid.
pub fn set_parent_from_w3c_trace_context(span: &tracing::Span, trace: &W3cTraceContext) -> bool {
    match context_from_w3c_trace_context(trace) {
        Some(cx) => set_parent_from_context(span, cx),
        None => false,
    }
}

/// Adds a span link from `span` to the span described by `trace` (e.g. a goal's first turn,
/// stored with the goal, so continuation turns across restarts can be reassembled).
/// False when the context is invalid.
pub fn link_span_to_w3c_trace_context(span: &tracing::Span, trace: &W3cTraceContext) -> bool {
    match context_from_w3c_trace_context(trace) {
        Some(cx) => {
            span.add_link(cx.span().span_context().clone());
            true
        }
        None => false,
    }
}

/// The context given by `TRACEPARENT` (and optional `TRACESTATE`), read once per process.
pub fn traceparent_context_from_env() -> Option<Context> {
    static FROM_ENV: OnceLock<Option<W3cTraceContext>> = OnceLock::new();
    let trace = FROM_ENV.get_or_init(|| {
        let traceparent = std::env::var("TRACEPARENT").ok()?;
        let trace = W3cTraceContext {
            traceparent: Some(traceparent),
            tracestate: std::env::var("TRACESTATE").ok(),
        };
        if context_from_w3c_trace_context(&trace).is_some() {
            tracing::debug!("TRACEPARENT detected; continuing trace from parent context");
            Some(trace)
        } else {
            tracing::warn!("TRACEPARENT is set but invalid; ignoring trace context");
            None
        }
    });
    trace.as_ref().and_then(context_from_w3c_trace_context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_example_from_the_reference() {
        let config = BTreeMap::from([(
            "example".to_string(),
            BTreeMap::from([
                ("alpha".to_string(), "one".to_string()),
                ("beta".to_string(), "two".to_string()),
            ]),
        )]);
        assert_eq!(
            merge_tracestate_entries(Some("example=alpha:zero;keep:yes,other=value"), &config)
                .as_deref(),
            Some("example=alpha:one;keep:yes;beta:two,other=value")
        );
        assert_eq!(merge_tracestate_entries(None, &BTreeMap::new()), None);
        // Invalid incoming state is dropped, configured members still apply, in key order.
        let two = BTreeMap::from([
            (
                "zeta".to_string(),
                BTreeMap::from([("k".to_string(), "v".to_string())]),
            ),
            (
                "acme".to_string(),
                BTreeMap::from([("k".to_string(), "v".to_string())]),
            ),
        ]);
        assert_eq!(
            merge_tracestate_entries(Some("Bad Key=1"), &two).as_deref(),
            Some("acme=k:v,zeta=k:v")
        );
    }

    #[test]
    fn duplicate_configured_fields_keep_first_and_plain_parts_survive() {
        let config = BTreeMap::from([(
            "m".to_string(),
            BTreeMap::from([("a".to_string(), "1".to_string())]),
        )]);
        assert_eq!(
            merge_tracestate_entries(Some("m=a:0;flag;a:9"), &config).as_deref(),
            Some("m=a:1;flag")
        );
    }

    #[test]
    fn w3c_context_round_trip() {
        let trace = W3cTraceContext {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            tracestate: Some("vendor=x".into()),
        };
        let cx = context_from_w3c_trace_context(&trace).unwrap();
        assert!(cx.span().span_context().is_remote());
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(
            context_from_w3c_trace_context(&W3cTraceContext {
                traceparent: Some("00-nothex-00f067aa0ba902b7-01".into()),
                tracestate: None
            })
            .is_none()
        );
        assert!(context_from_w3c_trace_context(&W3cTraceContext::default()).is_none());
    }
}
