//! Metrics facade: [`MetricsClient`] over an OTLP or in-memory exporter, with name/tag
//! validation, default tags, cached instruments, GenAI histograms and timers.

mod names;
mod snapshot;
mod validation;

pub use names::*;
pub use snapshot::PointSnapshot;
pub use snapshot::flatten_metrics;
pub use validation::sanitize_metric_tag_value;
pub use validation::validate_metric_name;
pub use validation::validate_tag;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::time::Duration;
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use opentelemetry::metrics::Histogram;
use opentelemetry::metrics::Meter;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::metrics::InMemoryMetricExporter;
use opentelemetry_sdk::metrics::PeriodicReader;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::metrics::Temporality;

use crate::config::OtelExporter;
use crate::config::Signal;
use crate::config::resolve_exporter;
use crate::config::resolve_otlp_timeout;
use crate::io_runtime::ExportDeadline;
use crate::io_runtime::ExportGuard;
use crate::io_runtime::GuardedMetricExporter;
use crate::io_runtime::IoRuntime;
use crate::resource::ResourceSettings;
use crate::resource::build_resource;

/// Result of metrics operations.
pub type Result<T> = std::result::Result<T, MetricsError>;

/// Metrics errors. None is retried; [`crate::SessionTelemetry`] logs them at warn and goes on.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A metric name was empty (caller bug).
    #[error("metric name must not be empty")]
    EmptyMetricName,
    /// A metric name broke the naming rules (ASCII letter first, `[A-Za-z0-9._-]`, ≤ 255).
    #[error("invalid metric name: {name}")]
    InvalidMetricName {
        /// The rejected name.
        name: String,
    },
    /// A tag key or value was empty.
    #[error("{label} must not be empty")]
    EmptyTagComponent {
        /// `tag key` or `tag value`.
        label: &'static str,
    },
    /// A tag key or value contained characters outside `[A-Za-z0-9._/-]`.
    #[error("invalid {label}: {value}")]
    InvalidTagComponent {
        /// `tag key` or `tag value`.
        label: &'static str,
        /// The rejected text.
        value: String,
    },
    /// A counter was given a negative increment.
    #[error("counter increment must be non-negative, got {inc}")]
    NegativeCounterIncrement {
        /// The rejected increment.
        inc: i64,
    },
    /// No metrics client is installed (global helpers) or the exporter resolved to none.
    #[error("metrics exporter is disabled")]
    ExporterDisabled,
    /// The OTLP metric exporter could not be built.
    #[error("failed to build metrics exporter: {message}")]
    ExporterBuild {
        /// Builder error text.
        message: String,
    },
    /// Invalid metrics configuration.
    #[error("invalid metrics config: {message}")]
    InvalidConfig {
        /// What was wrong.
        message: String,
    },
    /// Flush or shutdown of the meter provider failed.
    #[error("metrics provider shutdown failed: {source}")]
    ProviderShutdown {
        /// SDK error.
        #[source]
        source: OTelSdkError,
    },
}

/// Where metrics go.
#[derive(Clone, Debug)]
pub enum MetricsExporter {
    /// An OTLP exporter (`Statsig` is resolved first).
    Otlp(OtelExporter),
    /// An in-memory exporter, for tests.
    InMemory(InMemoryMetricExporter),
}

/// Settings of a [`MetricsClient`].
#[derive(Clone)]
pub struct MetricsConfig {
    environment: String,
    service_name: String,
    service_version: String,
    exporter: MetricsExporter,
    export_interval: Option<Duration>,
    default_tags: BTreeMap<String, String>,
    deny_list: &'static [&'static str],
    resource: Option<Resource>,
    guard: Option<ExportGuard>,
}

impl std::fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("service_name", &self.service_name)
            .field("exporter", &self.exporter)
            .finish_non_exhaustive()
    }
}

impl MetricsConfig {
    fn new(
        environment: impl Into<String>,
        service_name: impl Into<String>,
        service_version: impl Into<String>,
        exporter: MetricsExporter,
    ) -> Self {
        Self {
            environment: environment.into(),
            service_name: service_name.into(),
            service_version: service_version.into(),
            exporter,
            export_interval: None,
            default_tags: BTreeMap::new(),
            deny_list: &[],
            resource: None,
            guard: None,
        }
    }

    /// OTLP metrics; with [`OtelExporter::Statsig`] the Statsig deny-list applies.
    pub fn otlp(
        environment: impl Into<String>,
        service_name: impl Into<String>,
        service_version: impl Into<String>,
        exporter: OtelExporter,
    ) -> Self {
        let statsig = exporter == OtelExporter::Statsig;
        let config = Self::new(
            environment,
            service_name,
            service_version,
            MetricsExporter::Otlp(exporter),
        );
        if statsig {
            config.with_statsig_deny_list()
        } else {
            config
        }
    }

    /// Metrics collected by an in-memory exporter.
    pub fn in_memory(
        environment: impl Into<String>,
        service_name: impl Into<String>,
        service_version: impl Into<String>,
        exporter: InMemoryMetricExporter,
    ) -> Self {
        Self::new(
            environment,
            service_name,
            service_version,
            MetricsExporter::InMemory(exporter),
        )
    }

    /// Sets the periodic export interval.
    pub fn with_export_interval(mut self, interval: Duration) -> Self {
        self.export_interval = Some(interval);
        self
    }

    /// Adds a default tag (validated now); per-call tags with the same key win.
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Result<Self> {
        let (key, value) = (key.into(), value.into());
        validate_tag(&key, &value)?;
        self.default_tags.insert(key, value);
        Ok(self)
    }

    /// Drops the Statsig deny-listed metric names at record time.
    pub fn with_statsig_deny_list(mut self) -> Self {
        self.deny_list = STATSIG_DISABLED_METRICS;
        self
    }

    /// Uses this resource instead of building one (the provider shares one resource).
    pub fn with_resource(mut self, resource: Resource) -> Self {
        self.resource = Some(resource);
        self
    }

    pub(crate) fn with_export_guard(mut self, guard: ExportGuard) -> Self {
        self.guard = Some(guard);
        self
    }
}

/// Temporality for OTLP metrics: Delta unless
/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=cumulative`.
pub fn otlp_temporality() -> Temporality {
    match std::env::var("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE") {
        Ok(value) if value.trim().eq_ignore_ascii_case("cumulative") => Temporality::Cumulative,
        _ => Temporality::Delta,
    }
}

/// The instrument cached under `name`, created by `make` on first use (no allocation on hits).
fn cached<T: Clone>(map: &mut HashMap<String, T>, name: &str, make: impl FnOnce() -> T) -> T {
    if let Some(found) = map.get(name) {
        return found.clone();
    }
    let made = make();
    map.insert(name.to_string(), made.clone());
    made
}

#[derive(Default)]
struct Instruments {
    counters: HashMap<String, Counter<u64>>,
    histograms: HashMap<String, Histogram<f64>>,
    durations: HashMap<String, Histogram<f64>>,
    u64_histograms: HashMap<String, Histogram<u64>>,
}

struct Inner {
    provider: SdkMeterProvider,
    meter: Meter,
    instruments: Mutex<Instruments>,
    default_tags: BTreeMap<String, String>,
    deny_list: &'static [&'static str],
    deadline: Option<ExportDeadline>,
    _runtime: Option<Arc<IoRuntime>>,
}

/// Records metrics; cheap to clone.
#[derive(Clone)]
pub struct MetricsClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MetricsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsClient").finish_non_exhaustive()
    }
}

/// Unit, description and bucket boundaries of an explicitly configured histogram.
#[derive(Clone, Copy, Debug)]
pub struct HistogramSpec {
    /// UCUM unit (`s`, `{token}`, `ms`).
    pub unit: &'static str,
    /// Description.
    pub description: &'static str,
    /// Explicit bucket boundaries, or `None` for the SDK defaults.
    pub boundaries: Option<&'static [f64]>,
}

impl MetricsClient {
    /// Builds the meter provider. OTLP exports run on a dedicated runtime, Delta temporality.
    pub fn new(config: MetricsConfig) -> Result<Self> {
        for (key, value) in &config.default_tags {
            validate_tag(key, value)?;
        }
        let resource = config.resource.clone().unwrap_or_else(|| {
            build_resource(&ResourceSettings {
                service_name: config.service_name.clone(),
                service_version: config.service_version.clone(),
                environment: config.environment.clone(),
                resource_attributes: BTreeMap::new(),
            })
        });
        let mut builder = SdkMeterProvider::builder().with_resource(resource);
        let mut deadline = None;
        let mut runtime = None;
        match &config.exporter {
            MetricsExporter::InMemory(exporter) => {
                let mut reader = PeriodicReader::builder(exporter.clone());
                if let Some(interval) = config.export_interval {
                    reader = reader.with_interval(interval);
                }
                builder = builder.with_reader(reader.build());
            }
            MetricsExporter::Otlp(exporter) => {
                let (exporter, _warning) = resolve_exporter(exporter);
                let guard = match config.guard.clone() {
                    Some(guard) => guard,
                    None => {
                        let rt = IoRuntime::new().map_err(|err| MetricsError::InvalidConfig {
                            message: err.to_string(),
                        })?;
                        runtime = Some(Arc::clone(&rt));
                        ExportGuard {
                            runtime: rt,
                            timeout: resolve_otlp_timeout(Signal::Metrics),
                            deadline: ExportDeadline::default(),
                        }
                    }
                };
                let temporality = otlp_temporality();
                let _enter = guard.runtime.handle().map(tokio::runtime::Handle::enter);
                let inner = crate::otlp::metric_exporter(&exporter, guard.timeout, temporality)
                    .map_err(|err| MetricsError::ExporterBuild {
                        message: err.to_string(),
                    })?
                    .ok_or(MetricsError::ExporterDisabled)?;
                deadline = Some(guard.deadline.clone());
                let wrapped = GuardedMetricExporter {
                    inner,
                    guard,
                    temporality,
                };
                let mut reader = PeriodicReader::builder(wrapped);
                if let Some(interval) = config.export_interval {
                    reader = reader.with_interval(interval);
                }
                builder = builder.with_reader(reader.build());
            }
        }
        let provider = builder.build();
        let meter = provider.meter("quest");
        Ok(Self {
            inner: Arc::new(Inner {
                provider,
                meter,
                instruments: Mutex::new(Instruments::default()),
                default_tags: config.default_tags,
                deny_list: config.deny_list,
                deadline,
                _runtime: runtime,
            }),
        })
    }

    fn attributes(&self, tags: &[(&str, &str)]) -> Result<Vec<KeyValue>> {
        for (key, value) in tags {
            validate_tag(key, value)?;
        }
        let mut merged: Vec<KeyValue> =
            Vec::with_capacity(self.inner.default_tags.len() + tags.len());
        for (key, value) in &self.inner.default_tags {
            if !tags.iter().any(|(k, _)| k == key) {
                merged.push(KeyValue::new(key.clone(), value.clone()));
            }
        }
        for (index, (key, value)) in tags.iter().enumerate() {
            // Later duplicates of the same key win.
            if tags[index + 1..].iter().any(|(k, _)| k == key) {
                continue;
            }
            merged.push(KeyValue::new(key.to_string(), value.to_string()));
        }
        Ok(merged)
    }

    fn denied(&self, name: &str) -> bool {
        self.inner.deny_list.contains(&name)
    }

    fn instruments(&self) -> std::sync::MutexGuard<'_, Instruments> {
        match self.inner.instruments.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Adds `inc` to the counter `name`.
    pub fn counter(&self, name: &str, inc: i64, tags: &[(&str, &str)]) -> Result<()> {
        self.counter_with_description(name, "", inc, tags)
    }

    /// Adds `inc` to the counter `name`, created with `description` on first use.
    pub fn counter_with_description(
        &self,
        name: &str,
        description: &str,
        inc: i64,
        tags: &[(&str, &str)],
    ) -> Result<()> {
        validate_metric_name(name)?;
        if inc < 0 {
            return Err(MetricsError::NegativeCounterIncrement { inc });
        }
        let attributes = self.attributes(tags)?;
        if self.denied(name) {
            return Ok(());
        }
        let counter = {
            let mut instruments = self.instruments();
            cached(&mut instruments.counters, name, || {
                let mut builder = self.inner.meter.u64_counter(name.to_string());
                if !description.is_empty() {
                    builder = builder.with_description(description.to_string());
                }
                builder.build()
            })
        };
        counter.add(inc.unsigned_abs(), &attributes);
        Ok(())
    }

    /// Records `value` in the f64 histogram `name` (SDK default buckets).
    pub fn histogram(&self, name: &str, value: i64, tags: &[(&str, &str)]) -> Result<()> {
        validate_metric_name(name)?;
        let attributes = self.attributes(tags)?;
        if self.denied(name) {
            return Ok(());
        }
        let histogram = {
            let mut instruments = self.instruments();
            cached(&mut instruments.histograms, name, || {
                self.inner.meter.f64_histogram(name.to_string()).build()
            })
        };
        histogram.record(value as f64, &attributes);
        Ok(())
    }

    /// Records a duration in whole milliseconds (unit `ms`).
    pub fn record_duration(
        &self,
        name: &str,
        duration: Duration,
        tags: &[(&str, &str)],
    ) -> Result<()> {
        validate_metric_name(name)?;
        let attributes = self.attributes(tags)?;
        if self.denied(name) {
            return Ok(());
        }
        let histogram = {
            let mut instruments = self.instruments();
            cached(&mut instruments.durations, name, || {
                self.inner
                    .meter
                    .f64_histogram(name.to_string())
                    .with_unit("ms")
                    .with_description("Duration in milliseconds.")
                    .build()
            })
        };
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        histogram.record(millis as f64, &attributes);
        Ok(())
    }

    /// Records `value` in an f64 histogram with explicit unit and buckets (created on first use).
    pub fn record_f64(
        &self,
        name: &str,
        spec: HistogramSpec,
        value: f64,
        tags: &[(&str, &str)],
    ) -> Result<()> {
        validate_metric_name(name)?;
        let attributes = self.attributes(tags)?;
        if self.denied(name) {
            return Ok(());
        }
        let histogram = {
            let mut instruments = self.instruments();
            cached(&mut instruments.histograms, name, || {
                let mut builder = self
                    .inner
                    .meter
                    .f64_histogram(name.to_string())
                    .with_unit(spec.unit)
                    .with_description(spec.description);
                if let Some(bounds) = spec.boundaries {
                    builder = builder.with_boundaries(bounds.to_vec());
                }
                builder.build()
            })
        };
        histogram.record(value, &attributes);
        Ok(())
    }

    /// Records `value` in a u64 histogram with explicit unit and buckets (created on first use).
    pub fn record_u64(
        &self,
        name: &str,
        spec: HistogramSpec,
        value: u64,
        tags: &[(&str, &str)],
    ) -> Result<()> {
        validate_metric_name(name)?;
        let attributes = self.attributes(tags)?;
        if self.denied(name) {
            return Ok(());
        }
        let histogram = {
            let mut instruments = self.instruments();
            cached(&mut instruments.u64_histograms, name, || {
                let mut builder = self
                    .inner
                    .meter
                    .u64_histogram(name.to_string())
                    .with_unit(spec.unit)
                    .with_description(spec.description);
                if let Some(bounds) = spec.boundaries {
                    builder = builder.with_boundaries(bounds.to_vec());
                }
                builder.build()
            })
        };
        histogram.record(value, &attributes);
        Ok(())
    }

    /// Records `value` in a u64 histogram with explicit unit and buckets, with exactly
    /// `attributes` (no default tags, typed values): for semantic-convention instruments.
    pub fn record_u64_with_attributes(
        &self,
        name: &str,
        spec: HistogramSpec,
        value: u64,
        attributes: &[KeyValue],
    ) -> Result<()> {
        validate_metric_name(name)?;
        if self.denied(name) {
            return Ok(());
        }
        let histogram = {
            let mut instruments = self.instruments();
            cached(&mut instruments.u64_histograms, name, || {
                let mut builder = self
                    .inner
                    .meter
                    .u64_histogram(name.to_string())
                    .with_unit(spec.unit)
                    .with_description(spec.description);
                if let Some(bounds) = spec.boundaries {
                    builder = builder.with_boundaries(bounds.to_vec());
                }
                builder.build()
            })
        };
        histogram.record(value, attributes);
        Ok(())
    }

    /// [`MetricsClient::record_u64_with_attributes`] for an f64 histogram.
    pub fn record_f64_with_attributes(
        &self,
        name: &str,
        spec: HistogramSpec,
        value: f64,
        attributes: &[KeyValue],
    ) -> Result<()> {
        validate_metric_name(name)?;
        if self.denied(name) {
            return Ok(());
        }
        let histogram = {
            let mut instruments = self.instruments();
            cached(&mut instruments.histograms, name, || {
                let mut builder = self
                    .inner
                    .meter
                    .f64_histogram(name.to_string())
                    .with_unit(spec.unit)
                    .with_description(spec.description);
                if let Some(bounds) = spec.boundaries {
                    builder = builder.with_boundaries(bounds.to_vec());
                }
                builder.build()
            })
        };
        histogram.record(value, attributes);
        Ok(())
    }

    /// Starts a timer recording into the duration histogram `name`.
    pub fn start_timer(&self, name: &str, tags: &[(&str, &str)]) -> Result<Timer> {
        validate_metric_name(name)?;
        for (key, value) in tags {
            validate_tag(key, value)?;
        }
        Ok(Timer {
            client: self.clone(),
            name: name.to_string(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            start: Instant::now(),
            recorded: false,
        })
    }

    /// Exports everything recorded so far.
    pub fn force_flush(&self) -> Result<()> {
        self.inner
            .provider
            .force_flush()
            .map_err(|source| MetricsError::ProviderShutdown { source })
    }

    /// Flushes and shuts down the meter provider (default bound: 2 s).
    pub fn shutdown(&self) -> Result<()> {
        self.shutdown_with_timeout(crate::config::DEFAULT_SHUTDOWN_TIMEOUT)
    }

    /// Flushes and shuts down; OTLP exports give up when `timeout` has passed.
    pub fn shutdown_with_timeout(&self, timeout: Duration) -> Result<()> {
        if let Some(deadline) = &self.inner.deadline {
            deadline.set(Instant::now() + timeout);
        }
        self.inner
            .provider
            .shutdown_with_timeout(timeout)
            .map_err(|source| MetricsError::ProviderShutdown { source })
    }
}

/// Measures elapsed time into a duration histogram.
#[derive(Debug)]
pub struct Timer {
    client: MetricsClient,
    name: String,
    tags: Vec<(String, String)>,
    start: Instant,
    recorded: bool,
}

impl Timer {
    /// Records the elapsed time with `extra_tags` added (the timer's own tags win).
    pub fn record(&mut self, extra_tags: &[(&str, &str)]) -> Result<()> {
        let mut tags: Vec<(&str, &str)> = extra_tags
            .iter()
            .filter(|(key, _)| !self.tags.iter().any(|(own, _)| own == key))
            .copied()
            .collect();
        tags.extend(self.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.recorded = true;
        self.client
            .record_duration(&self.name, self.start.elapsed(), &tags)
    }
}

impl Drop for Timer {
    /// Records once if [`Timer::record`] was never called.
    fn drop(&mut self) {
        if !self.recorded
            && let Err(err) = self.record(&[])
        {
            tracing::warn!("metrics timer [{}] failed: {err}", self.name);
        }
    }
}

static GLOBAL: OnceLock<MetricsClient> = OnceLock::new();

/// Installs the process-global client; the first install wins.
pub fn install_global(client: MetricsClient) {
    let _ = GLOBAL.set(client);
}

/// The process-global client, if one was installed.
pub fn global() -> Option<MetricsClient> {
    GLOBAL.get().cloned()
}

/// Starts a timer on the global client.
pub fn start_global_timer(name: &str, tags: &[(&str, &str)]) -> Result<Timer> {
    global()
        .ok_or(MetricsError::ExporterDisabled)?
        .start_timer(name, tags)
}

/// Spec of [`GEN_AI_CLIENT_TOKEN_USAGE`].
pub const GEN_AI_TOKEN_USAGE_SPEC: HistogramSpec = HistogramSpec {
    unit: "{token}",
    description: "Number of input and output tokens used.",
    boundaries: Some(&GEN_AI_TOKEN_USAGE_BUCKETS),
};
/// Spec of [`GEN_AI_CLIENT_OPERATION_DURATION`].
pub const GEN_AI_OPERATION_DURATION_SPEC: HistogramSpec = HistogramSpec {
    unit: "s",
    description: "GenAI operation duration.",
    boundaries: Some(&GEN_AI_OPERATION_DURATION_BUCKETS),
};
/// Spec of [`GOAL_TOKENS_METRIC`].
pub const GOAL_TOKENS_SPEC: HistogramSpec = HistogramSpec {
    unit: "{token}",
    description: "Tokens a goal used by the time it stopped.",
    boundaries: Some(&GEN_AI_TOKEN_USAGE_BUCKETS),
};
/// Spec of [`GOAL_DURATION_METRIC`].
pub const GOAL_DURATION_SPEC: HistogramSpec = HistogramSpec {
    unit: "s",
    description: "Seconds a goal ran by the time it stopped.",
    boundaries: None,
};
