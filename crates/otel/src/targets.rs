//! Event targets and the filters that route them: log-only events never reach the trace
//! exporter, only this crate's events reach the log exporter, and only Quest's own spans reach
//! the trace exporter (never those of the HTTP, gRPC or TLS libraries underneath, whose spans
//! would otherwise multiply with every export).

use tracing::Level;
use tracing::Metadata;

/// Prefix of every event target emitted by this crate.
pub const OTEL_TARGET_PREFIX: &str = "codex_otel";
/// Target of events that may carry sensitive fields; exported as logs only.
pub const OTEL_LOG_ONLY_TARGET: &str = "codex_otel.log_only";
/// Target of events without sensitive fields; exported as span events only.
pub const OTEL_TRACE_SAFE_TARGET: &str = "codex_otel.trace_safe";
/// Target prefix of Quest's spans: `quest::<area>` targets and the `quest_*` crates' module
/// paths. Spans of any other target are never exported.
pub const QUEST_SPAN_TARGET_PREFIX: &str = "quest";

/// True for events this crate emits, except trace-safe copies.
pub fn log_export_filter(meta: &Metadata<'_>) -> bool {
    meta.target().starts_with(OTEL_TARGET_PREFIX)
        && !meta.target().starts_with(OTEL_TRACE_SAFE_TARGET)
}

/// True for a span Quest exports: its target is `quest`, `quest::…` or a `quest_*` crate
/// path, at INFO level or above.
pub fn is_quest_span(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    let ours = target
        .strip_prefix(QUEST_SPAN_TARGET_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::") || rest.starts_with('_'));
    ours && *meta.level() <= Level::INFO
}

/// True for Quest's own spans (see [`is_quest_span`]) and for events on the trace-safe target.
pub fn trace_export_filter(meta: &Metadata<'_>) -> bool {
    if meta.is_span() {
        is_quest_span(meta)
    } else {
        meta.target().starts_with(OTEL_TRACE_SAFE_TARGET)
    }
}
