//! End-to-end exports to a real OTLP receiver on 127.0.0.1:0 (HTTP protobuf, HTTP JSON, gRPC),
//! decoded with the official opentelemetry-proto types.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::time::Duration;
use std::time::Instant;

use quest_otel::OtelExporter;
use quest_otel::OtelHttpProtocol;
use quest_otel::OtelProvider;
use quest_otel::OtelSettings;
use quest_otel::PromptItem;
use quest_otel::SessionTelemetry;
use quest_otel::W3cTraceContext;
use quest_otel::test_receiver::OtlpReceiver;
use quest_otel::test_receiver::Received;
use quest_otel::test_receiver::ReceiverMode;
use quest_otel::test_receiver::Transport;
use tracing_subscriber::layer::SubscriberExt;

const WAIT: Duration = Duration::from_secs(20);

fn http(endpoint: String, protocol: OtelHttpProtocol) -> OtelExporter {
    OtelExporter::OtlpHttp {
        endpoint,
        headers: HashMap::from([("x-otlp-token".to_string(), "tok-1".to_string())]),
        protocol,
        tls: None,
    }
}

fn settings(exporter: OtelExporter) -> OtelSettings {
    let mut settings = OtelSettings::new("staging", "quest_test", "1.2.3", "/tmp/quest-home");
    settings.exporter = exporter.clone();
    settings.trace_exporter = exporter.clone();
    settings.metrics_exporter = exporter;
    settings
        .span_attributes
        .insert("example.trace_attr".into(), "enabled".into());
    settings.tracestate.insert(
        "example".into(),
        BTreeMap::from([
            ("alpha".to_string(), "one".to_string()),
            ("beta".to_string(), "two".to_string()),
        ]),
    );
    settings.shutdown_timeout = Duration::from_secs(10);
    settings
}

fn session(provider: &OtelProvider) -> SessionTelemetry {
    let session = SessionTelemetry::new(
        "thread-9",
        "gpt-5.5",
        "gpt-5.5",
        None,
        Some("dev@example.com".into()),
        None,
        "quest_exec".into(),
        false,
        "xterm".into(),
        "exec".into(),
    );
    match provider.metrics() {
        Some(client) => session.with_metrics(client.clone()),
        None => session,
    }
}

/// Emits one turn's worth of telemetry under a span parented on an inbound W3C context and
/// returns the context the turn would propagate.
fn emit(provider: &OtelProvider) -> Option<W3cTraceContext> {
    let subscriber = tracing_subscriber::registry()
        .with(provider.logger_layer())
        .with(provider.tracing_layer());
    let s = session(provider);
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!(target: "quest::turn", "invoke_agent quest");
        let inbound = W3cTraceContext {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            tracestate: Some("example=alpha:zero;keep:yes,other=value".into()),
        };
        assert!(quest_otel::set_parent_from_w3c_trace_context(
            &span, &inbound
        ));
        let _entered = span.enter();
        s.user_prompt(&[PromptItem::Text("do the thing".into())]);
        s.tool_result(
            "exec_command",
            "call-1",
            "{}",
            Duration::from_millis(7),
            true,
            "ok",
            None,
        );
        let mut headers = http::HeaderMap::new();
        assert!(quest_otel::inject_span_w3c_trace_headers(
            &span,
            &mut headers
        ));
        assert!(
            headers["traceparent"]
                .to_str()
                .unwrap()
                .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        );
        // A child process started under the span continues the trace.
        let env = quest_otel::span_trace_env(&span);
        let output = std::process::Command::new("sh")
            .args(["-c", "printf '%s|%s' \"$TRACEPARENT\" \"$TRACESTATE\""])
            .env_remove("TRACEPARENT")
            .envs(env)
            .output()
            .unwrap();
        let printed = String::from_utf8(output.stdout).unwrap();
        assert!(
            printed.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{printed}"
        );
        assert!(
            printed.ends_with("|example=alpha:one;keep:yes;beta:two,other=value"),
            "{printed}"
        );
        quest_otel::current_span_w3c_trace_context()
    })
}

fn assert_export(received: &Received, transport: Transport) {
    assert!(
        received.requests.iter().all(|r| r.transport == transport),
        "{:?}",
        received.requests
    );
    for signal in ["traces", "logs", "metrics"] {
        let request = received
            .requests
            .iter()
            .find(|r| r.signal == signal)
            .unwrap_or_else(|| panic!("no {signal} request"));
        assert_eq!(
            request.headers.get("x-otlp-token").map(String::as_str),
            Some("tok-1")
        );
        if transport != Transport::Grpc {
            assert_eq!(
                request.path,
                format!("/v1/{signal}"),
                "base endpoint gets the signal path"
            );
        }
    }
    let resources = received.resources();
    for signal in ["traces", "logs", "metrics"] {
        let (_, resource) = resources.iter().find(|(s, _)| *s == signal).unwrap();
        assert_eq!(resource["service.name"], "quest_test", "{signal}");
        assert_eq!(resource["service.version"], "1.2.3", "{signal}");
        assert_eq!(resource["env"], "staging", "{signal}");
        assert_eq!(
            resource["deployment.environment.name"], "staging",
            "{signal}"
        );
    }
    let spans = received.spans();
    let turn = spans
        .iter()
        .find(|s| s.name == "invoke_agent quest")
        .expect("turn span");
    assert_eq!(turn.attributes["example.trace_attr"], "enabled");
    assert_eq!(turn.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(turn.parent_span_id, "00f067aa0ba902b7");
    let event_names: Vec<_> = turn.events.iter().map(|(name, _)| name.as_str()).collect();
    assert!(
        event_names.contains(&"codex.user_prompt") && event_names.contains(&"codex.tool_result"),
        "{event_names:?}"
    );
    let logs = received.log_records();
    let prompt = logs
        .iter()
        .find(|l| l.event_name == "codex.user_prompt")
        .expect("prompt log");
    assert_eq!(prompt.attributes["prompt"], "[REDACTED]");
    assert_eq!(prompt.attributes["user.email"], "dev@example.com");
    assert!(logs.iter().any(|l| l.event_name == "codex.tool_result"));
    let points = received.metric_points();
    let call = points
        .iter()
        .find(|p| p.name == "codex.tool.call")
        .expect("tool counter");
    assert_eq!(call.value, 1.0);
    assert_eq!(call.temporality, 1, "delta temporality");
    assert_eq!(call.attributes["tool"], "exec_command");
    assert!(
        points
            .iter()
            .any(|p| p.name == "codex.tool.call.duration_ms" && p.kind == "histogram")
    );
}

fn run(exporter: OtelExporter, receiver: &OtlpReceiver, transport: Transport) {
    let provider = OtelProvider::from(&settings(exporter))
        .unwrap()
        .expect("provider");
    let propagated = emit(&provider).expect("valid propagated context");
    assert_eq!(
        propagated.tracestate.as_deref(),
        Some("example=alpha:one;keep:yes;beta:two,other=value")
    );
    let report = provider.shutdown();
    assert!(report.timed_out.is_empty(), "{report:?}");
    assert_eq!(report.completed.len(), 3, "{report:?}");
    let received = receiver
        .wait_until(WAIT, |r| {
            !r.traces.is_empty() && !r.logs.is_empty() && !r.metrics.is_empty()
        })
        .unwrap_or_else(|r| panic!("incomplete export: {r:?}"));
    assert_export(&received, transport);
}

#[test]
fn http_protobuf_from_a_plain_thread() {
    let receiver = OtlpReceiver::start().unwrap();
    run(
        http(receiver.http_endpoint(), OtelHttpProtocol::Binary),
        &receiver,
        Transport::HttpProtobuf,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_from_a_multi_thread_runtime() {
    let receiver = OtlpReceiver::start().unwrap();
    run(
        http(receiver.http_endpoint(), OtelHttpProtocol::Json),
        &receiver,
        Transport::HttpJson,
    );
}

#[tokio::test(flavor = "current_thread")]
async fn grpc_from_a_current_thread_runtime() {
    let receiver = OtlpReceiver::start().unwrap();
    let exporter = OtelExporter::OtlpGrpc {
        endpoint: receiver.grpc_endpoint(),
        headers: HashMap::from([("x-otlp-token".to_string(), "tok-1".to_string())]),
        tls: None,
    };
    run(exporter, &receiver, Transport::Grpc);
}

#[test]
fn full_signal_path_is_used_as_is() {
    let receiver = OtlpReceiver::start().unwrap();
    let mut settings = settings(OtelExporter::None);
    settings.trace_exporter = http(
        format!("{}/v1/traces", receiver.http_endpoint()),
        OtelHttpProtocol::Binary,
    );
    let provider = OtelProvider::from(&settings).unwrap().unwrap();
    emit(&provider);
    assert!(provider.shutdown().timed_out.is_empty());
    let received = receiver.wait_until(WAIT, |r| !r.traces.is_empty()).unwrap();
    assert_eq!(received.requests[0].path, "/v1/traces");
    assert!(received.logs.is_empty() && received.metrics.is_empty());
}

fn bounded_shutdown(exporter: OtelExporter) -> (quest_otel::ShutdownReport, Duration) {
    let mut settings = settings(exporter);
    settings.shutdown_timeout = Duration::from_millis(600);
    let provider = OtelProvider::from(&settings).unwrap().unwrap();
    emit(&provider);
    let started = Instant::now();
    let report = provider.shutdown();
    (report, started.elapsed())
}

#[test]
fn stalled_receiver_does_not_hold_shutdown_beyond_the_timeout() {
    let receiver = OtlpReceiver::start().unwrap();
    receiver.set_mode(ReceiverMode::Stall);
    let (report, elapsed) =
        bounded_shutdown(http(receiver.http_endpoint(), OtelHttpProtocol::Binary));
    // The exports did reach the receiver and hang there.
    receiver
        .wait_until(WAIT, |r| r.requests.len() >= 3)
        .unwrap();
    assert!(!report.timed_out.is_empty(), "{report:?}");
    assert!(
        elapsed < Duration::from_millis(600 + 1500),
        "shutdown took {elapsed:?}"
    );
    // A second shutdown (e.g. from Drop) is a no-op.
}

#[test]
fn slow_grpc_receiver_is_bounded_too() {
    let receiver = OtlpReceiver::start().unwrap();
    receiver.set_mode(ReceiverMode::Delay(Duration::from_secs(30)));
    let exporter = OtelExporter::OtlpGrpc {
        endpoint: receiver.grpc_endpoint(),
        headers: HashMap::new(),
        tls: None,
    };
    let (report, elapsed) = bounded_shutdown(exporter);
    assert!(!report.timed_out.is_empty(), "{report:?}");
    assert!(
        elapsed < Duration::from_millis(600 + 1500),
        "shutdown took {elapsed:?}"
    );
}

#[test]
fn unreachable_collector_does_not_hang_shutdown() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (report, elapsed) = bounded_shutdown(http(
        format!("http://127.0.0.1:{port}"),
        OtelHttpProtocol::Json,
    ));
    assert!(
        elapsed < Duration::from_millis(600 + 1500),
        "shutdown took {elapsed:?}: {report:?}"
    );
}

#[test]
fn nothing_recorded_means_no_export_and_no_wait() {
    let receiver = OtlpReceiver::start().unwrap();
    receiver.set_mode(ReceiverMode::Stall);
    let provider = OtelProvider::from(&settings(http(
        receiver.http_endpoint(),
        OtelHttpProtocol::Binary,
    )))
    .unwrap()
    .unwrap();
    let report = provider.shutdown();
    assert!(report.timed_out.is_empty(), "{report:?}");
    assert!(
        receiver.received().requests.is_empty(),
        "{:?}",
        receiver.received().requests
    );
}

/// Runs in a child process with `OTEL_RESOURCE_ATTRIBUTES` set (see the parent test below).
#[test]
#[ignore = "spawned by resource_attributes_from_the_environment_reach_all_signals"]
fn child_resource_attributes() {
    let Ok(endpoint) = std::env::var("QUEST_TEST_OTLP_ENDPOINT") else {
        panic!("run through resource_attributes_from_the_environment_reach_all_signals");
    };
    let mut settings = settings(http(endpoint, OtelHttpProtocol::Binary));
    settings
        .resource_attributes
        .insert("team".into(), "config-wins".into());
    let provider = OtelProvider::from(&settings).unwrap().unwrap();
    emit(&provider);
    assert!(provider.shutdown().timed_out.is_empty());
}

#[test]
fn resource_attributes_from_the_environment_reach_all_signals() {
    let receiver = OtlpReceiver::start().unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_resource_attributes",
            "--ignored",
            "--nocapture",
        ])
        .env("QUEST_TEST_OTLP_ENDPOINT", receiver.http_endpoint())
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.region=eu-west,service.version=9.9.9,team=env",
        )
        .env("OTEL_SERVICE_NAME", "from-env")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "child failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let received = receiver
        .wait_until(WAIT, |r| {
            !r.traces.is_empty() && !r.logs.is_empty() && !r.metrics.is_empty()
        })
        .unwrap();
    for signal in ["traces", "logs", "metrics"] {
        let (_, resource) = received
            .resources()
            .into_iter()
            .find(|(s, _)| *s == signal)
            .unwrap();
        assert_eq!(resource["deployment.region"], "eu-west", "{signal}");
        assert_eq!(
            resource["service.version"], "9.9.9",
            "env beats Quest defaults ({signal})"
        );
        assert_eq!(
            resource["service.name"], "from-env",
            "OTEL_SERVICE_NAME ({signal})"
        );
        assert_eq!(
            resource["team"], "config-wins",
            "[otel.resource_attributes] wins ({signal})"
        );
        assert_eq!(resource["env"], "staging", "{signal}");
        assert!(resource.contains_key("telemetry.sdk.name"), "{signal}");
    }
}

/// Runs in a child process with `TRACEPARENT`/`TRACESTATE` set (see the parent test below).
#[test]
#[ignore = "spawned by traceparent_from_the_environment_parents_the_run"]
fn child_traceparent_from_env() {
    use opentelemetry::trace::TraceContextExt;
    let cx = quest_otel::traceparent_context_from_env().expect("context from TRACEPARENT");
    let span_context = cx.span().span_context().clone();
    assert_eq!(
        span_context.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert!(span_context.is_remote());
    assert_eq!(span_context.trace_state().header(), "vendor=v1");
}

#[test]
fn traceparent_from_the_environment_parents_the_run() {
    let run = |traceparent: &str| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_traceparent_from_env",
                "--ignored",
                "--nocapture",
            ])
            .env("TRACEPARENT", traceparent)
            .env("TRACESTATE", "vendor=v1")
            .output()
            .unwrap()
    };
    let good = run("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    // An invalid TRACEPARENT is ignored, so the child's expectation fails.
    let bad = run("00-not-a-trace-01");
    assert!(!bad.status.success());
}

/// PEM files of a test CA, a server certificate and a client certificate.
struct TlsFiles {
    _dir: tempfile::TempDir,
    ca: std::path::PathBuf,
    client_cert: std::path::PathBuf,
    client_key: std::path::PathBuf,
}

fn tls_receiver(mutual: bool) -> (OtlpReceiver, TlsFiles) {
    use quest_otel::test_receiver::ReceiverTls;
    use quest_otel::test_receiver::TestCa;
    let ca = TestCa::new().unwrap();
    let client = ca.client_cert().unwrap();
    let receiver = OtlpReceiver::start_tls(ReceiverTls {
        server: ca.server_cert().unwrap(),
        client_ca_pem: mutual.then(|| ca.cert_pem().to_string()),
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let files = TlsFiles {
        ca: write("ca.pem", ca.cert_pem()),
        client_cert: write("client.pem", &client.cert_pem),
        client_key: write("client.key", &client.key_pem),
        _dir: dir,
    };
    (receiver, files)
}

fn tls_config(files: &TlsFiles, client: bool) -> quest_otel::OtelTlsConfig {
    quest_otel::OtelTlsConfig {
        ca_certificate: Some(files.ca.clone()),
        client_certificate: client.then(|| files.client_cert.clone()),
        client_private_key: client.then(|| files.client_key.clone()),
    }
}

#[test]
fn http_over_tls_with_a_test_ca() {
    let (receiver, files) = tls_receiver(false);
    assert!(receiver.http_endpoint().starts_with("https://127.0.0.1:"));
    let exporter = OtelExporter::OtlpHttp {
        endpoint: receiver.http_endpoint(),
        headers: HashMap::from([("x-otlp-token".to_string(), "tok-1".to_string())]),
        protocol: OtelHttpProtocol::Binary,
        tls: Some(tls_config(&files, false)),
    };
    run(exporter, &receiver, Transport::HttpProtobuf);
    let handshakes = receiver.received().handshakes;
    assert!(handshakes.succeeded >= 1, "{handshakes:?}");
    assert_eq!(handshakes.failed, 0, "{handshakes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_mutual_tls_with_a_test_ca() {
    let (receiver, files) = tls_receiver(true);
    let exporter = OtelExporter::OtlpGrpc {
        endpoint: receiver.grpc_endpoint(),
        headers: HashMap::from([("x-otlp-token".to_string(), "tok-1".to_string())]),
        tls: Some(tls_config(&files, true)),
    };
    run(exporter, &receiver, Transport::Grpc);
    let handshakes = receiver.received().handshakes;
    assert!(handshakes.with_client_certificate >= 1, "{handshakes:?}");
    assert_eq!(handshakes.failed, 0, "{handshakes:?}");
}

#[test]
fn http_over_mutual_tls_with_a_test_ca() {
    let (receiver, files) = tls_receiver(true);
    let exporter = OtelExporter::OtlpHttp {
        endpoint: receiver.http_endpoint(),
        headers: HashMap::from([("x-otlp-token".to_string(), "tok-1".to_string())]),
        protocol: OtelHttpProtocol::Json,
        tls: Some(tls_config(&files, true)),
    };
    run(exporter, &receiver, Transport::HttpJson);
    let handshakes = receiver.received().handshakes;
    assert!(handshakes.with_client_certificate >= 1, "{handshakes:?}");
}

/// The mTLS receiver really demands a client certificate: without one nothing gets through.
#[test]
fn mutual_tls_receiver_refuses_a_client_without_certificate() {
    let (receiver, files) = tls_receiver(true);
    let mut settings = settings(OtelExporter::None);
    settings.trace_exporter = OtelExporter::OtlpHttp {
        endpoint: receiver.http_endpoint(),
        headers: HashMap::new(),
        protocol: OtelHttpProtocol::Binary,
        tls: Some(tls_config(&files, false)),
    };
    settings.shutdown_timeout = Duration::from_secs(5);
    let provider = OtelProvider::from(&settings).unwrap().unwrap();
    emit(&provider);
    provider.shutdown();
    let received = receiver
        .wait_until(WAIT, |r| r.handshakes.failed >= 1)
        .unwrap_or_else(|r| panic!("no failed handshake: {:?}", r.handshakes));
    assert!(received.traces.is_empty());
    assert_eq!(received.handshakes.succeeded, 0);
}
