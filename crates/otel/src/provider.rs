//! [`OtelProvider`]: builds the log, trace and metric pipelines from [`OtelSettings`], hands
//! out `tracing` layers that route events by target, and flushes everything at exit within one
//! bounded deadline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;
use std::time::Instant;

use opentelemetry::Context;
use opentelemetry::KeyValue;
use opentelemetry::trace::Span as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::BatchLogProcessor;
use opentelemetry_sdk::logs::InMemoryLogExporter;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::BatchSpanProcessor;
use opentelemetry_sdk::trace::InMemorySpanExporter;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::SimpleSpanProcessor;
use opentelemetry_sdk::trace::Span;
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::trace::SpanProcessor;
use opentelemetry_sdk::trace::Tracer;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

use crate::OtelError;
use crate::config::OtelExporter;
use crate::config::OtelSettings;
use crate::config::Signal;
use crate::config::resolve_exporter;
use crate::config::resolve_otlp_timeout;
use crate::config::validate_span_attributes;
use crate::config::validate_tracestate_entries;
use crate::io_runtime::ExportDeadline;
use crate::io_runtime::ExportGuard;
use crate::io_runtime::GuardedLogExporter;
use crate::io_runtime::GuardedSpanExporter;
use crate::io_runtime::IoRuntime;
use crate::metrics::MetricsClient;
use crate::metrics::MetricsConfig;
use crate::otlp;
use crate::resource::ResourceSettings;
use crate::resource::build_resource;
use crate::targets::log_export_filter;
use crate::targets::trace_export_filter;
use crate::trace_context::install_tracestate_config;

/// Sets the configured attributes on every span when it starts.
#[derive(Debug)]
struct SpanAttributeProcessor {
    attributes: Vec<KeyValue>,
}

impl SpanProcessor for SpanAttributeProcessor {
    fn on_start(&self, span: &mut Span, _cx: &Context) {
        for attribute in &self.attributes {
            span.set_attribute(attribute.clone());
        }
    }

    fn on_end(&self, _span: SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// What the bounded shutdown achieved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Signals (`traces`, `metrics`, `logs`) whose flush finished before the deadline.
    pub completed: Vec<&'static str>,
    /// Signals still flushing at the deadline; their pending data is dropped.
    pub timed_out: Vec<&'static str>,
}

/// The process's telemetry pipelines.
pub struct OtelProvider {
    /// Log pipeline (log-only and session events).
    pub logger: Option<SdkLoggerProvider>,
    /// Trace pipeline.
    pub tracer_provider: Option<SdkTracerProvider>,
    /// Tracer named after the service.
    pub tracer: Option<Tracer>,
    /// Metrics client (also installed as the process-global client).
    pub metrics: Option<MetricsClient>,
    warnings: Vec<String>,
    shutdown_timeout: Duration,
    deadline: ExportDeadline,
    shut_down: AtomicBool,
    _runtime: Option<Arc<IoRuntime>>,
}

impl std::fmt::Debug for OtelProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelProvider")
            .field("logs", &self.logger.is_some())
            .field("traces", &self.tracer_provider.is_some())
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

fn span_attribute_values(settings: &OtelSettings) -> Vec<KeyValue> {
    settings
        .span_attributes
        .iter()
        .map(|(key, value)| KeyValue::new(key.clone(), value.clone()))
        .collect()
}

fn resource_settings(settings: &OtelSettings) -> ResourceSettings {
    ResourceSettings {
        service_name: settings.service_name.clone(),
        service_version: settings.service_version.clone(),
        environment: settings.environment.clone(),
        resource_attributes: settings.resource_attributes.clone(),
    }
}

/// Statsig is metrics only: on logs or traces it is ignored with a warning.
fn signal_exporter(
    exporter: &OtelExporter,
    signal: &str,
    warnings: &mut Vec<String>,
) -> OtelExporter {
    match exporter {
        OtelExporter::Statsig => {
            warnings.push(format!(
                "the statsig exporter is metrics-only; {signal} are not exported"
            ));
            OtelExporter::None
        }
        OtelExporter::None | OtelExporter::OtlpGrpc { .. } | OtelExporter::OtlpHttp { .. } => {
            exporter.clone()
        }
    }
}

/// The result of [`OtelProvider::build`]: the provider (`None` when nothing is exported) and
/// the startup warnings to show the user (ignored exporters, a missing Statsig secret, an
/// exporter that could not be built).
#[derive(Debug)]
pub struct ProviderBuild {
    /// The pipelines, when at least one exporter is in use.
    pub provider: Option<OtelProvider>,
    /// One line per problem, naming the `[otel]` key it concerns.
    pub warnings: Vec<String>,
}

/// Builds one signal's exporter; a failure becomes a warning naming the config key and the
/// signal runs without an exporter (telemetry is never fatal).
fn exporter_or_warn<T>(
    key: &str,
    signal: &str,
    built: Result<Option<T>, OtelError>,
    warnings: &mut Vec<String>,
) -> Option<T> {
    match built {
        Ok(exporter) => exporter,
        Err(err) => {
            warnings.push(format!("otel.{key}: {err}; {signal} are not exported"));
            None
        }
    }
}

impl OtelProvider {
    /// Builds the pipelines. `Ok(None)` when no exporter is enabled (the configured tracestate
    /// is then cleared). Invalid span attributes or tracestate are hard errors here; config
    /// loading is expected to have filtered them with [`OtelSettings::sanitize_trace_metadata`].
    /// An exporter that cannot be built (unreadable CA, half-configured mTLS, bad endpoint) is
    /// left out with a warning; [`OtelProvider::build`] returns those warnings even when no
    /// provider results.
    #[allow(clippy::should_implement_trait)]
    pub fn from(settings: &OtelSettings) -> Result<Option<Self>, OtelError> {
        Self::build(settings).map(|built| built.provider)
    }

    /// [`OtelProvider::from`], also returning every startup warning.
    pub fn build(settings: &OtelSettings) -> Result<ProviderBuild, OtelError> {
        let mut warnings = Vec::new();
        let log_exporter = signal_exporter(&settings.exporter, "logs", &mut warnings);
        let trace_exporter = signal_exporter(&settings.trace_exporter, "traces", &mut warnings);
        let (metrics_exporter, metrics_warning) = resolve_exporter(&settings.metrics_exporter);
        warnings.extend(metrics_warning);
        let logs_on = log_exporter != OtelExporter::None;
        let traces_on = trace_exporter != OtelExporter::None;
        let metrics_on = metrics_exporter != OtelExporter::None;
        // An inbound `TRACEPARENT` is propagated (to model requests and child processes) even
        // when no trace exporter is configured: spans then get real contexts that are never
        // exported.
        let inbound = crate::trace_context::traceparent_context_from_env().is_some();
        if !logs_on && !traces_on && !metrics_on && !inbound {
            install_tracestate_config(BTreeMap::new());
            tracing::debug!("No OTEL exporter enabled in settings.");
            return Ok(ProviderBuild::finish(None, warnings));
        }
        if traces_on {
            validate_span_attributes(&settings.span_attributes)?;
        }
        validate_tracestate_entries(&settings.tracestate)?;

        let runtime = IoRuntime::new()?;
        let deadline = ExportDeadline::default();
        let guard = |signal: Signal| ExportGuard {
            runtime: Arc::clone(&runtime),
            timeout: resolve_otlp_timeout(signal),
            deadline: deadline.clone(),
        };
        let resource = build_resource(&resource_settings(settings));
        // gRPC channels spawn their connection tasks on the runtime current at build time.
        let _enter = runtime.handle().map(tokio::runtime::Handle::enter);

        let logger = exporter_or_warn(
            "exporter",
            "logs",
            otlp::log_exporter(&log_exporter, resolve_otlp_timeout(Signal::Logs)),
            &mut warnings,
        )
        .map(|inner| {
            let exporter = GuardedLogExporter {
                inner,
                guard: guard(Signal::Logs),
            };
            SdkLoggerProvider::builder()
                .with_resource(resource.clone())
                .with_log_processor(BatchLogProcessor::builder(exporter).build())
                .build()
        });

        let tracer_provider = exporter_or_warn(
            "trace_exporter",
            "traces",
            otlp::span_exporter(&trace_exporter, resolve_otlp_timeout(Signal::Traces)),
            &mut warnings,
        )
        .map(|inner| {
            let exporter = GuardedSpanExporter {
                inner,
                guard: guard(Signal::Traces),
            };
            let mut builder = SdkTracerProvider::builder().with_resource(resource.clone());
            let attributes = span_attribute_values(settings);
            if !attributes.is_empty() {
                builder = builder.with_span_processor(SpanAttributeProcessor { attributes });
            }
            builder
                .with_span_processor(BatchSpanProcessor::builder(exporter).build())
                .build()
        })
        .or_else(|| {
            inbound.then(|| {
                SdkTracerProvider::builder()
                    .with_resource(resource.clone())
                    .build()
            })
        });

        let metrics = if metrics_on {
            let mut config = MetricsConfig::otlp(
                settings.environment.clone(),
                settings.service_name.clone(),
                settings.service_version.clone(),
                metrics_exporter,
            )
            .with_resource(resource)
            .with_export_guard(guard(Signal::Metrics));
            if settings.metrics_exporter == OtelExporter::Statsig {
                config = config.with_statsig_deny_list();
            }
            if let Some(interval) = settings.metrics_export_interval {
                config = config.with_export_interval(interval);
            }
            exporter_or_warn(
                "metrics_exporter",
                "metrics",
                MetricsClient::new(config)
                    .map(Some)
                    .map_err(OtelError::from),
                &mut warnings,
            )
        } else {
            None
        };

        if logger.is_none() && tracer_provider.is_none() && metrics.is_none() {
            install_tracestate_config(BTreeMap::new());
            return Ok(ProviderBuild::finish(None, warnings));
        }
        let provider = Self::install(
            logger,
            tracer_provider,
            metrics,
            settings,
            warnings.clone(),
            deadline,
            Some(runtime),
        );
        Ok(ProviderBuild::finish(Some(provider), warnings))
    }

    /// Builds a provider whose logs and spans go to in-memory exporters (simple processors, so
    /// records are visible at once) and whose metrics go to `metrics`; same filters, span
    /// attributes and tracestate handling as [`OtelProvider::from`]. For tests in any crate.
    pub fn in_memory(
        settings: &OtelSettings,
        logs: InMemoryLogExporter,
        spans: InMemorySpanExporter,
        metrics: Option<MetricsClient>,
    ) -> Result<Self, OtelError> {
        validate_span_attributes(&settings.span_attributes)?;
        validate_tracestate_entries(&settings.tracestate)?;
        let resource = build_resource(&resource_settings(settings));
        let logger = SdkLoggerProvider::builder()
            .with_resource(resource.clone())
            .with_simple_exporter(logs)
            .build();
        let mut builder = SdkTracerProvider::builder().with_resource(resource);
        let attributes = span_attribute_values(settings);
        if !attributes.is_empty() {
            builder = builder.with_span_processor(SpanAttributeProcessor { attributes });
        }
        let tracer_provider = builder
            .with_span_processor(SimpleSpanProcessor::new(spans))
            .build();
        Ok(Self::install(
            Some(logger),
            Some(tracer_provider),
            metrics,
            settings,
            Vec::new(),
            ExportDeadline::default(),
            None,
        ))
    }

    fn install(
        logger: Option<SdkLoggerProvider>,
        tracer_provider: Option<SdkTracerProvider>,
        metrics: Option<MetricsClient>,
        settings: &OtelSettings,
        warnings: Vec<String>,
        deadline: ExportDeadline,
        runtime: Option<Arc<IoRuntime>>,
    ) -> Self {
        install_tracestate_config(settings.tracestate.clone());
        let tracer = tracer_provider.as_ref().map(|provider| {
            let tracer = provider.tracer(settings.service_name.clone());
            opentelemetry::global::set_tracer_provider(provider.clone());
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            tracer
        });
        if let Some(client) = &metrics {
            crate::metrics::install_global(client.clone());
        }
        Self {
            logger,
            tracer_provider,
            tracer,
            metrics,
            warnings,
            shutdown_timeout: settings.shutdown_timeout,
            deadline,
            shut_down: AtomicBool::new(false),
            _runtime: runtime,
        }
    }

    /// Startup warnings (ignored exporters, missing Statsig secret).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The metrics client, when metrics are exported.
    pub fn metrics(&self) -> Option<&MetricsClient> {
        self.metrics.as_ref()
    }

    /// Layer exporting this crate's log-only events as OTLP log records.
    pub fn logger_layer<S>(&self) -> Option<impl Layer<S> + use<S>>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        self.logger.as_ref().map(|logger| {
            OpenTelemetryTracingBridge::new(logger).with_filter(filter_fn(log_export_filter))
        })
    }

    /// Layer exporting Quest's own spans plus trace-safe events (as span events).
    pub fn tracing_layer<S>(&self) -> Option<impl Layer<S> + use<S>>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        self.tracer.as_ref().map(|tracer| {
            // No `code.*`, `thread.*` or `busy_ns`/`idle_ns` attributes: exported spans carry
            // the GenAI and Quest attributes only.
            tracing_opentelemetry::layer()
                .with_tracer(tracer.clone())
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_target(false)
                .with_filter(filter_fn(trace_export_filter))
        })
    }

    /// Flushes pending spans and logs and exports pending metrics without shutting down.
    pub fn force_flush(&self) {
        if let Some(provider) = &self.tracer_provider {
            let _ = provider.force_flush();
        }
        if let Some(logger) = &self.logger {
            let _ = logger.force_flush();
        }
        if let Some(metrics) = &self.metrics {
            let _ = metrics.force_flush();
        }
    }

    /// Flushes and shuts down traces, metrics and logs concurrently, waiting at most the
    /// configured `shutdown_timeout` in total. Exports still running at the deadline are
    /// abandoned with one warning on stderr. Idempotent; later calls report nothing.
    pub fn shutdown(&self) -> ShutdownReport {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return ShutdownReport::default();
        }
        let timeout = self.shutdown_timeout;
        let deadline = Instant::now() + timeout;
        self.deadline.set(deadline);
        let (tx, rx) = mpsc::channel::<&'static str>();
        let mut pending: Vec<&'static str> = Vec::new();
        let mut spawn = |name: &'static str, job: Box<dyn FnOnce() + Send>| {
            let tx = tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("quest-otel-flush-{name}"))
                .spawn(move || {
                    job();
                    let _ = tx.send(name);
                });
            if spawned.is_ok() {
                pending.push(name);
            }
        };
        if let Some(provider) = self.tracer_provider.clone() {
            spawn(
                "traces",
                Box::new(move || {
                    let _ = provider.force_flush();
                    let _ = provider.shutdown_with_timeout(timeout);
                }),
            );
        }
        if let Some(metrics) = self.metrics.clone() {
            spawn(
                "metrics",
                Box::new(move || {
                    let _ = metrics.shutdown_with_timeout(timeout);
                }),
            );
        }
        if let Some(logger) = self.logger.clone() {
            spawn(
                "logs",
                Box::new(move || {
                    let _ = logger.shutdown_with_timeout(timeout);
                }),
            );
        }
        drop(tx);
        let mut report = ShutdownReport::default();
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(name) => {
                    pending.retain(|signal| *signal != name);
                    report.completed.push(name);
                }
                Err(_) => break,
            }
        }
        if !pending.is_empty() {
            eprintln!(
                "warning: telemetry flush did not finish within {} ms; dropped pending {}",
                timeout.as_millis(),
                pending.join(", ")
            );
            report.timed_out = pending;
        }
        report
    }
}

impl ProviderBuild {
    fn finish(provider: Option<OtelProvider>, warnings: Vec<String>) -> Self {
        for warning in &warnings {
            tracing::warn!("{warning}");
        }
        Self { provider, warnings }
    }
}

impl Drop for OtelProvider {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
