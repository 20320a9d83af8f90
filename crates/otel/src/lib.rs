//! Quest's OpenTelemetry integration.
//!
//! This crate owns everything that leaves the process as telemetry: the provider wiring for
//! logs, traces and metrics ([`OtelProvider`]), OTLP exporters (HTTP protobuf, HTTP JSON, gRPC,
//! TLS), the session event API ([`SessionTelemetry`]) with its `codex_otel.*` routing targets,
//! the metrics facade ([`MetricsClient`]), GenAI and goal telemetry names, W3C trace-context
//! helpers and content redaction. It knows nothing about agents beyond strings: callers pass
//! ids, model names and statuses in; it never reads config files, never performs model or tool
//! I/O, and never sends telemetry anywhere the settings did not name. With the `test-receiver`
//! feature it also offers a real OTLP receiver for tests ([`test_receiver::OtlpReceiver`]).
#![warn(missing_docs, unreachable_pub)]

mod config;
pub mod gen_ai;
mod io_runtime;
pub mod metrics;
mod otlp;
mod provider;
pub mod redaction;
mod resource;
pub mod session_telemetry;
mod targets;
mod trace_context;

#[cfg(feature = "test-receiver")]
pub mod test_receiver;

pub use config::DEFAULT_OTEL_ENVIRONMENT;
pub use config::DEFAULT_SHUTDOWN_TIMEOUT;
pub use config::OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT;
pub use config::OtelExporter;
pub use config::OtelHttpProtocol;
pub use config::OtelSettings;
pub use config::OtelTlsConfig;
pub use config::STATSIG_API_KEY_HEADER;
pub use config::STATSIG_OTLP_HTTP_ENDPOINT;
pub use config::STATSIG_OTLP_HTTP_ENDPOINT_ENV;
pub use config::STATSIG_SECRET_ENV;
pub use config::Signal;
pub use config::encode_tracestate_member;
pub use config::http_signal_endpoint;
pub use config::resolve_exporter;
pub use config::resolve_otlp_timeout;
pub use config::validate_span_attributes;
pub use config::validate_tracestate_entries;
pub use config::validate_tracestate_member;
pub use metrics::MetricsClient;
pub use metrics::MetricsConfig;
pub use metrics::MetricsError;
pub use metrics::MetricsExporter;
pub use metrics::Timer;
pub use metrics::sanitize_metric_tag_value;
pub use provider::OtelProvider;
pub use provider::ProviderBuild;
pub use provider::ShutdownReport;
pub use resource::ResourceSettings;
pub use resource::build_resource;
pub use session_telemetry::ApiRequestDetails;
pub use session_telemetry::GenAiCall;
pub use session_telemetry::GoalStatusChange;
pub use session_telemetry::GoalTransition;
pub use session_telemetry::PromptItem;
pub use session_telemetry::SessionTelemetry;
pub use session_telemetry::TelemetryAuthMode;
pub use session_telemetry::ToolDecisionSource;
pub use targets::OTEL_LOG_ONLY_TARGET;
pub use targets::OTEL_TARGET_PREFIX;
pub use targets::OTEL_TRACE_SAFE_TARGET;
pub use targets::QUEST_SPAN_TARGET_PREFIX;
pub use targets::is_quest_span;
pub use targets::log_export_filter;
pub use targets::trace_export_filter;
pub use trace_context::W3cTraceContext;
pub use trace_context::context_from_w3c_trace_context;
pub use trace_context::current_span_trace_id;
pub use trace_context::current_span_w3c_trace_context;
pub use trace_context::inject_span_w3c_trace_headers;
pub use trace_context::link_span_to_w3c_trace_context;
pub use trace_context::merge_tracestate_entries;
pub use trace_context::set_parent_from_context;
pub use trace_context::set_parent_from_w3c_trace_context;
pub use trace_context::span_trace_env;
pub use trace_context::span_w3c_trace_context;
pub use trace_context::traceparent_context_from_env;

/// Errors building telemetry providers. None of them is retried: the caller reports the
/// error and runs without that telemetry.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    /// Returned by [`OtelProvider::from`] when `span_attributes` or `tracestate` are invalid
    /// (config loading drops such entries with a warning first, so this means a direct caller
    /// passed bad settings).
    #[error("{0}")]
    InvalidTraceMetadata(#[from] std::io::Error),
    /// Returned when a TLS file cannot be read or parsed, or mTLS is half configured.
    #[error("{message}")]
    Tls {
        /// What was wrong and which file.
        message: String,
    },
    /// Returned when an OTLP endpoint is unusable (e.g. a gRPC endpoint without a host).
    #[error("{message}")]
    InvalidEndpoint {
        /// What was wrong and which endpoint.
        message: String,
    },
    /// Returned when the OTLP exporter builder rejects its configuration.
    #[error("failed to build OTLP exporter: {0}")]
    ExporterBuild(#[from] opentelemetry_otlp::ExporterBuildError),
    /// Returned when the metrics client cannot be built.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// Returned when the dedicated export runtime cannot start.
    #[error("failed to start the telemetry export runtime: {message}")]
    Runtime {
        /// The I/O error text.
        message: String,
    },
}
