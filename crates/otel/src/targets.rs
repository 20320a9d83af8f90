//! Event targets and the filters that route them: log-only events never reach the trace
//! exporter, and only this crate's events reach the log exporter.

use tracing::Metadata;

/// Prefix of every event target emitted by this crate.
pub const OTEL_TARGET_PREFIX: &str = "codex_otel";
/// Target of events that may carry sensitive fields; exported as logs only.
pub const OTEL_LOG_ONLY_TARGET: &str = "codex_otel.log_only";
/// Target of events without sensitive fields; exported as span events only.
pub const OTEL_TRACE_SAFE_TARGET: &str = "codex_otel.trace_safe";

/// True for events this crate emits, except trace-safe copies.
pub fn log_export_filter(meta: &Metadata<'_>) -> bool {
    meta.target().starts_with(OTEL_TARGET_PREFIX)
        && !meta.target().starts_with(OTEL_TRACE_SAFE_TARGET)
}

/// True for every span, and for events on the trace-safe target.
pub fn trace_export_filter(meta: &Metadata<'_>) -> bool {
    meta.is_span() || meta.target().starts_with(OTEL_TRACE_SAFE_TARGET)
}
