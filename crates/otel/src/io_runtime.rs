//! A small dedicated Tokio runtime on which every OTLP export runs, so exports work the same
//! from a plain thread, a multi-thread runtime or a current-thread runtime, plus exporter
//! wrappers that bound each export and honour the shutdown deadline.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::Context;
use std::task::Poll;
use std::time::Duration;
use std::time::Instant;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::LogBatch;
use opentelemetry_sdk::logs::LogExporter;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::trace::SpanExporter;

use crate::OtelError;

/// Owns the runtime; shuts it down without blocking when the last user goes away, so dropping
/// a provider inside an async context never panics.
pub(crate) struct IoRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl IoRuntime {
    pub(crate) fn new() -> Result<Arc<Self>, OtelError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("quest-otel-io")
            .enable_all()
            .build()
            .map_err(|err| OtelError::Runtime {
                message: err.to_string(),
            })?;
        Ok(Arc::new(Self {
            runtime: Some(runtime),
        }))
    }

    pub(crate) fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.runtime.as_ref().map(tokio::runtime::Runtime::handle)
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Polls the inner future with the runtime entered, so Tokio timers, sockets and spawned
/// connection tasks of the exporter run on the I/O runtime whoever polls.
struct InRuntime<F> {
    runtime: Arc<IoRuntime>,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let runtime = Arc::clone(&self.runtime);
        let _guard = runtime.handle().map(tokio::runtime::Handle::enter);
        self.future.as_mut().poll(cx)
    }
}

/// Shared deadline set when shutdown starts: exports in flight or started afterwards give up
/// when it passes.
#[derive(Clone, Default)]
pub(crate) struct ExportDeadline(Arc<Mutex<Option<Instant>>>);

impl ExportDeadline {
    pub(crate) fn set(&self, deadline: Instant) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(deadline);
        }
    }

    fn get(&self) -> Option<Instant> {
        self.0.lock().ok().and_then(|slot| *slot)
    }
}

/// Common wrapper state: the runtime, the per-export timeout and the shutdown deadline.
#[derive(Clone)]
pub(crate) struct ExportGuard {
    pub(crate) runtime: Arc<IoRuntime>,
    pub(crate) timeout: Duration,
    pub(crate) deadline: ExportDeadline,
}

impl ExportGuard {
    fn run<'a, F>(&self, future: F) -> impl Future<Output = OTelSdkResult> + Send + 'a
    where
        F: Future<Output = OTelSdkResult> + Send + 'a,
    {
        let limit = match self.deadline.get() {
            Some(deadline) => self
                .timeout
                .min(deadline.saturating_duration_since(Instant::now())),
            None => self.timeout,
        };
        InRuntime {
            runtime: Arc::clone(&self.runtime),
            future: Box::pin(async move {
                match tokio::time::timeout(limit, future).await {
                    Ok(result) => result,
                    Err(_) => Err(OTelSdkError::Timeout(limit)),
                }
            }),
        }
    }

    fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        let _guard = self.runtime.handle().map(tokio::runtime::Handle::enter);
        f()
    }
}

/// Span exporter running on the I/O runtime.
pub(crate) struct GuardedSpanExporter<E> {
    pub(crate) inner: E,
    pub(crate) guard: ExportGuard,
}

impl<E> fmt::Debug for GuardedSpanExporter<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GuardedSpanExporter")
    }
}

impl<E: SpanExporter> SpanExporter for GuardedSpanExporter<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.guard.run(self.inner.export(batch))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.guard
            .enter(|| self.inner.shutdown_with_timeout(timeout))
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.guard.enter(|| self.inner.force_flush())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Log exporter running on the I/O runtime.
pub(crate) struct GuardedLogExporter<E> {
    pub(crate) inner: E,
    pub(crate) guard: ExportGuard,
}

impl<E> fmt::Debug for GuardedLogExporter<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GuardedLogExporter")
    }
}

impl<E: LogExporter> LogExporter for GuardedLogExporter<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        self.guard.run(self.inner.export(batch)).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.guard
            .enter(|| self.inner.shutdown_with_timeout(timeout))
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Metric exporter running on the I/O runtime; skips empty exports and drops deny-listed
/// metric names.
pub(crate) struct GuardedMetricExporter<E> {
    pub(crate) inner: E,
    pub(crate) guard: ExportGuard,
    pub(crate) temporality: Temporality,
}

impl<E: PushMetricExporter> PushMetricExporter for GuardedMetricExporter<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let empty = metrics
            .scope_metrics()
            .all(|scope| scope.metrics().next().is_none());
        if empty {
            return Ok(());
        }
        self.guard.run(self.inner.export(metrics)).await
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.guard.enter(|| self.inner.force_flush())
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.guard
            .enter(|| self.inner.shutdown_with_timeout(timeout))
    }

    fn temporality(&self) -> Temporality {
        self.temporality
    }
}
