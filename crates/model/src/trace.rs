//! W3C trace-context propagation from the current `tracing` span to request headers.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::Injector;
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Writes `traceparent` (and `tracestate` when non-empty) for the current span's OpenTelemetry
/// context, when it has a valid span context. Uses the global text-map propagator; when that is
/// the no-op default, the W3C headers are written directly so propagation never silently stops.
pub fn inject_current_context(headers: &mut HeaderMap) {
    inject_span_context(&tracing::Span::current(), headers);
}

/// [`inject_current_context`] for `span`.
pub fn inject_span_context(span: &tracing::Span, headers: &mut HeaderMap) {
    let cx = span.context();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return;
    }
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&cx, &mut HeaderInjector(headers));
    });
    if headers.contains_key("traceparent") {
        return;
    }
    let traceparent = format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    );
    let mut injector = HeaderInjector(headers);
    injector.set("traceparent", traceparent);
    let state = sc.trace_state().header();
    if !state.is_empty() {
        injector.set("tracestate", state);
    }
}
