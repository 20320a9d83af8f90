//! Cost of one `SessionTelemetry` event and one counter increment, against the same work done
//! directly on the OpenTelemetry SDK (same exporters, same attributes).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::hint::black_box;
use std::time::Duration;
use std::time::Instant;

use criterion::Criterion;
use criterion::criterion_group;
use criterion::criterion_main;
use opentelemetry::KeyValue;
use opentelemetry::logs::AnyValue;
use opentelemetry::logs::LogRecord as _;
use opentelemetry::logs::Logger as _;
use opentelemetry::logs::LoggerProvider as _;
use opentelemetry::logs::Severity;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::logs::InMemoryLogExporter;
use opentelemetry_sdk::metrics::InMemoryMetricExporter;
use opentelemetry_sdk::metrics::PeriodicReader;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::InMemorySpanExporter;
use quest_otel::MetricsClient;
use quest_otel::MetricsConfig;
use quest_otel::OtelProvider;
use quest_otel::OtelSettings;
use quest_otel::SessionTelemetry;
use quest_otel::TelemetryAuthMode;
use quest_otel::ToolDecisionSource;
use tracing_subscriber::layer::SubscriberExt;

const RESET_EVERY: u64 = 4096;

fn session(client: &MetricsClient) -> SessionTelemetry {
    SessionTelemetry::new(
        "thread-bench",
        "gpt-5.5",
        "gpt-5.5",
        Some("acct".into()),
        Some("dev@example.com".into()),
        Some(TelemetryAuthMode::ApiKey),
        "quest_exec".into(),
        false,
        "xterm".into(),
        "exec".into(),
    )
    .with_metrics(client.clone())
}

fn bench(c: &mut Criterion) {
    let settings = OtelSettings::new("bench", "quest_bench", "0.1.0", "/tmp/quest-bench");
    let logs = InMemoryLogExporter::default();
    let metrics_exporter = InMemoryMetricExporter::default();
    let client = MetricsClient::new(MetricsConfig::in_memory(
        "bench",
        "quest_bench",
        "0.1.0",
        metrics_exporter,
    ))
    .unwrap();
    let provider = OtelProvider::in_memory(
        &settings,
        logs.clone(),
        InMemorySpanExporter::default(),
        Some(client.clone()),
    )
    .unwrap();
    let session = session(&client);
    let subscriber = tracing_subscriber::registry()
        .with(provider.logger_layer())
        .with(provider.tracing_layer());

    let mut group = c.benchmark_group("telemetry");
    tracing::subscriber::with_default(subscriber, || {
        group.bench_function("session_event_tool_decision", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for i in 0..iters {
                    session.tool_decision(
                        black_box("exec_command"),
                        black_box("call-1"),
                        "approved",
                        ToolDecisionSource::User,
                    );
                    if i % RESET_EVERY == 0 {
                        logs.reset();
                    }
                }
                start.elapsed()
            })
        });
    });

    // The same log record (same attributes) emitted directly on the SDK logger.
    let sdk_logger = provider.logger.as_ref().unwrap().logger("bench");
    group.bench_function("sdk_log_record", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for i in 0..iters {
                let mut record = sdk_logger.create_log_record();
                record.set_event_name("quest.tool_decision");
                record.set_target("codex_otel.log_only");
                record.set_severity_number(Severity::Info);
                record.set_severity_text("INFO");
                record.add_attributes([
                    ("event.name", AnyValue::from("quest.tool_decision")),
                    ("event.timestamp", AnyValue::from(chrono_like_timestamp())),
                    ("conversation.id", AnyValue::from("thread-bench")),
                    ("app.version", AnyValue::from("0.1.0")),
                    ("auth_mode", AnyValue::from("api_key")),
                    ("originator", AnyValue::from("quest_exec")),
                    ("user.account_id", AnyValue::from("acct")),
                    ("user.email", AnyValue::from("dev@example.com")),
                    ("terminal.type", AnyValue::from("xterm")),
                    ("model", AnyValue::from("gpt-5.5")),
                    ("slug", AnyValue::from("gpt-5.5")),
                    ("tool_name", AnyValue::from(black_box("exec_command"))),
                    ("call_id", AnyValue::from(black_box("call-1"))),
                    ("decision", AnyValue::from("approved")),
                    ("source", AnyValue::from("user")),
                ]);
                sdk_logger.emit(record);
                if i % RESET_EVERY == 0 {
                    logs.reset();
                }
            }
            start.elapsed()
        })
    });

    group.bench_function("session_counter", |b| {
        b.iter(|| {
            session.counter(
                black_box("codex.tool.call"),
                1,
                &[("tool", "exec_command"), ("success", "true")],
            )
        })
    });

    let sdk_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(InMemoryMetricExporter::default()).build())
        .build();
    let counter = sdk_provider
        .meter("bench")
        .u64_counter("codex.tool.call")
        .build();
    group.bench_function("sdk_counter", |b| {
        b.iter(|| {
            counter.add(
                1,
                &[
                    KeyValue::new("auth_mode", "api_key"),
                    KeyValue::new("session_source", "exec"),
                    KeyValue::new("originator", "quest_exec"),
                    KeyValue::new("model", "gpt-5.5"),
                    KeyValue::new("app.version", "0.1.0"),
                    KeyValue::new("tool", black_box("exec_command")),
                    KeyValue::new("success", "true"),
                ],
            )
        })
    });
    group.finish();
}

/// The SDK path formats a timestamp string too, as the session event does.
fn chrono_like_timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", now.as_secs(), now.subsec_millis())
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
