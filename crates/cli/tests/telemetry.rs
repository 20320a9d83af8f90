//! Telemetry end to end: a goal session through `quest exec --goal` against the scripted model,
//! exported to a real OTLP receiver, checked span by span.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{TestEnv, jsonl, run, thread_id};
use quest_mock_model::{MockModel, Script, Step, Usage};
use quest_otel::test_receiver::{
    OtlpReceiver, Received, ReceivedSpan, ReceiverTls, TestCa, Transport,
};
use serde_json::json;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";
const OBJECTIVE: &str = "SECRET-OBJECTIVE-7781 keep this out of telemetry";

fn otel_args(receiver: &OtlpReceiver, protocol: &str) -> Vec<String> {
    let endpoint = receiver.http_endpoint();
    let exporter = format!("{{otlp-http={{endpoint=\"{endpoint}\", protocol=\"{protocol}\"}}}}");
    vec![
        "-c".into(),
        format!("otel.exporter={exporter}"),
        "-c".into(),
        format!("otel.trace_exporter={exporter}"),
        "-c".into(),
        format!("otel.metrics_exporter={exporter}"),
        "-c".into(),
        "otel.environment=\"e2e\"".into(),
        "-c".into(),
        "otel.span_attributes={team=\"agents\"}".into(),
        "-c".into(),
        "otel.tracestate={quest={tier=\"gold\"}}".into(),
    ]
}

fn by_name<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[test]
fn goal_session_exports_one_span_tree_per_turn() {
    let mock = MockModel::start_blocking(Script::new([
        Step::function_call("exec_command", json!({"cmd": "echo \"tp=$TRACEPARENT\""}))
            .with_usage(Usage::new(1000, 200, 50, 10)),
        Step::message("Checked the trace context.").with_usage(Usage::new(1100, 900, 12, 0)),
        Step::update_goal("complete").with_usage(Usage::new(1200, 1000, 8, 0)),
        Step::message("Done.").with_usage(Usage::new(1300, 1200, 5, 0)),
    ]));
    let receiver = OtlpReceiver::start().unwrap();
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock)
            .args(otel_args(&receiver, "binary"))
            .env("TRACEPARENT", format!("00-{TRACE_ID}-{PARENT_SPAN}-01"))
            .args(["--goal", OBJECTIVE]),
        0,
    );
    let thread = thread_id(&jsonl(&out));
    // The exit flush delivered everything before the process ended; allow the receiver a moment
    // to finish decoding the last request.
    let received = receiver
        .wait_until(Duration::from_secs(10), |r| {
            let spans = r.spans();
            by_name(&spans, "invoke_agent quest").len() == 2
                && !r.metric_points().is_empty()
                && !r.log_records().is_empty()
        })
        .unwrap_or_else(|r| panic!("incomplete export: {:#?}", r.spans()));
    let spans = received.spans();

    // Two goal turns, each a root `invoke_agent` span under the TRACEPARENT of the caller.
    let turns = by_name(&spans, "invoke_agent quest");
    assert_eq!(turns.len(), 2);
    for turn in &turns {
        assert_eq!(turn.trace_id, TRACE_ID);
        assert_eq!(turn.parent_span_id, PARENT_SPAN);
        assert_eq!(turn.attributes["gen_ai.conversation.id"], thread);
        assert_eq!(turn.attributes["gen_ai.operation.name"], "invoke_agent");
        assert_eq!(turn.attributes["quest.turn.trigger"], "goal");
        assert_eq!(turn.attributes["quest.goal.status"], "active");
        assert_eq!(
            turn.attributes["team"], "agents",
            "configured span attribute"
        );
        assert_eq!(turn.resource["service.name"], "quest_exec");
        assert_eq!(turn.resource["env"], "e2e");
    }
    let turn_ids: Vec<&str> = turns.iter().map(|t| t.span_id.as_str()).collect();
    // The second turn links back to the goal's first turn.
    assert!(
        turns.iter().any(|t| t
            .links
            .iter()
            .any(|(_, span)| turn_ids.contains(&span.as_str()))),
        "no link to the first goal turn"
    );

    // Four model requests, each a `chat` child of a turn, with usage and response id.
    let chats = by_name(&spans, "chat gpt-test");
    assert_eq!(chats.len(), 4);
    for chat in &chats {
        assert!(turn_ids.contains(&chat.parent_span_id.as_str()));
        assert_eq!(chat.attributes["gen_ai.provider.name"], "test");
        assert_eq!(chat.attributes["gen_ai.request.model"], "gpt-test");
        assert!(chat.attributes.contains_key("gen_ai.response.id"));
        assert!(chat.attributes.contains_key("gen_ai.usage.input_tokens"));
    }

    // Tool calls: `execute_tool` children of turns, tied to the response that asked for them.
    let shell = by_name(&spans, "execute_tool exec_command");
    assert_eq!(shell.len(), 1);
    assert!(turn_ids.contains(&shell[0].parent_span_id.as_str()));
    assert_eq!(shell[0].attributes["quest.tool.exit_code"], "0");
    let response_ids: Vec<&str> = chats
        .iter()
        .map(|c| c.attributes["gen_ai.response.id"].as_str())
        .collect();
    assert!(response_ids.contains(&shell[0].attributes["quest.tool.requested_by"].as_str()));
    assert_eq!(by_name(&spans, "execute_tool update_goal").len(), 1);

    // The shell command ran with TRACEPARENT of its own tool span.
    let output = mock.input_items(1);
    let tool_output = output
        .iter()
        .find(|i| i["type"] == "function_call_output")
        .unwrap()["output"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        tool_output.contains(&format!("tp=00-{TRACE_ID}-{}-01", shell[0].span_id)),
        "{tool_output}"
    );

    // Every model request carried the traceparent of its chat span.
    let chat_ids: Vec<&str> = chats.iter().map(|c| c.span_id.as_str()).collect();
    for request in mock.requests() {
        let traceparent = request.header("traceparent").expect("traceparent header");
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts[1], TRACE_ID);
        assert!(chat_ids.contains(&parts[2]), "{traceparent}");
        assert!(
            request
                .header("tracestate")
                .unwrap_or_default()
                .contains("quest=tier:gold")
        );
    }

    // Metrics: GenAI usage and duration, goal transitions and goal totals at the stop.
    let points = received.metric_points();
    let names: BTreeMap<&str, usize> = points.iter().fold(BTreeMap::new(), |mut acc, p| {
        *acc.entry(p.name.as_str()).or_default() += 1;
        acc
    });
    for name in [
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.duration",
        "quest.goal.transitions",
        "quest.goal.tokens",
        "quest.goal.duration",
    ] {
        assert!(names.contains_key(name), "missing metric {name}: {names:?}");
    }
    let usage = points
        .iter()
        .find(|p| p.name == "gen_ai.client.token.usage")
        .unwrap();
    assert_eq!(usage.unit, "{token}");
    let complete = points
        .iter()
        .find(|p| {
            p.name == "quest.goal.transitions"
                && p.attributes.get("to").map(String::as_str) == Some("complete")
        })
        .expect("transition to complete");
    assert_eq!(complete.attributes["actor"], "model");

    // Logs: the goal lifecycle event.
    let logs = received.log_records();
    assert!(
        logs.iter()
            .any(|l| l.event_name == "quest.goal.status_changed"
                || l.attributes.get("event.name").map(String::as_str)
                    == Some("quest.goal.status_changed")),
        "{:#?}",
        logs.iter().map(|l| &l.event_name).collect::<Vec<_>>()
    );

    // No prompt text anywhere in what left the process.
    let everything = format!(
        "{:?}{:?}{:?}",
        received.traces, received.logs, received.metrics
    );
    if let Some(at) = everything.find("SECRET-OBJECTIVE-7781") {
        panic!(
            "objective leaked: …{}…",
            &everything[at.saturating_sub(600)..(at + 100).min(everything.len())]
        );
    }
}

#[test]
fn an_unreachable_collector_does_not_hold_up_exit() {
    let mock = MockModel::start_blocking(Script::new([Step::message("ok")]));
    // Nothing listens on this port.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let exporter =
        format!("{{otlp-http={{endpoint=\"http://127.0.0.1:{port}\", protocol=\"json\"}}}}");
    let env = TestEnv::new();
    let started = std::time::Instant::now();
    run(
        env.exec(&mock)
            .args(["-c", &format!("otel.trace_exporter={exporter}")])
            .args(["-c", &format!("otel.exporter={exporter}")])
            .args(["-c", "otel.shutdown_timeout_ms=500"])
            .arg("hello"),
        0,
    );
    // Bounded: the flush gives up after its timeout instead of retrying.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn invalid_otel_config_is_a_usage_error_and_bad_metadata_warns() {
    let mock = MockModel::start_blocking(Script::new([Step::message("ok")]));
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock)
            .args(["-c", "otel.exporter=\"otlp-http\"", "x"]),
        2,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("otel.exporter"));
    let events = jsonl(&run(
        env.exec(&mock)
            .args(["-c", "otel.span_attributes={\"\"=\"x\"}", "x"]),
        0,
    ));
    let warnings: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "item.completed" && e["item"]["type"] == "error")
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]["item"]["message"]
            .as_str()
            .unwrap()
            .contains("span_attributes")
    );
}

/// A half-configured mTLS exporter and an unreadable CA file are warnings naming the key; the
/// run succeeds and the remaining exporter still delivers.
#[test]
fn broken_telemetry_tls_warns_and_never_fails_the_run() {
    let mock = MockModel::start_blocking(Script::new([Step::message("ok")]));
    let receiver = OtlpReceiver::start().unwrap();
    let env = TestEnv::new();
    let endpoint = receiver.http_endpoint();
    let out = run(
        env.exec(&mock)
            .args([
                "-c",
                "otel.exporter={otlp-grpc={endpoint=\"https://127.0.0.1:4317\", tls={client-certificate=\"/nonexistent/client.pem\"}}}",
                "-c",
                "otel.metrics_exporter={otlp-http={endpoint=\"https://127.0.0.1:4318\", protocol=\"json\", tls={ca-certificate=\"/nonexistent/ca.pem\"}}}",
                "-c",
                &format!("otel.trace_exporter={{otlp-http={{endpoint=\"{endpoint}\", protocol=\"binary\"}}}}"),
            ])
            .arg("hello"),
        0,
    );
    let events = jsonl(&out);
    let warnings: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "item.completed" && e["item"]["type"] == "error")
        .filter_map(|e| e["item"]["message"].as_str())
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings.iter().any(|w| w.starts_with("otel.exporter: ")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("otel.metrics_exporter: failed to read /nonexistent/ca.pem")),
        "{warnings:?}"
    );
    receiver
        .wait_until(Duration::from_secs(20), |r| !r.traces.is_empty())
        .unwrap_or_else(|r| panic!("traces still exported: {:?}", r.requests));
}

/// Everything one goal run exports, by name.
#[derive(Debug, PartialEq)]
struct Names {
    spans: BTreeSet<String>,
    span_events: BTreeSet<String>,
    logs: BTreeSet<String>,
    metrics: BTreeSet<String>,
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// The exact names a goal run with one retried request, one shell command and a completed goal
/// exports: Codex's `codex.*` events and metrics, the GenAI spans and metrics, Quest's goal
/// telemetry — and nothing else (no spans of the HTTP/gRPC libraries underneath).
fn expected_names() -> Names {
    Names {
        spans: set(&[
            "chat gpt-test",
            "execute_tool exec_command",
            "execute_tool update_goal",
            "invoke_agent quest",
        ]),
        // Trace-safe copies become events of the span current when they are emitted (thread
        // start and goal creation happen outside any turn).
        span_events: set(&[
            "codex.api_request",
            "codex.sse_event",
            "codex.tool_result",
            "codex.turn_ttft",
            "quest.api_request.retry",
            "quest.goal.completed",
            "quest.goal.status_changed",
        ]),
        logs: set(&[
            "codex.api_request",
            "codex.conversation_starts",
            "codex.sse_event",
            "codex.tool_decision",
            "codex.tool_result",
            "codex.turn_ttft",
            "quest.api_request.retry",
            "quest.goal.completed",
            "quest.goal.created",
            "quest.goal.status_changed",
        ]),
        metrics: set(&[
            "codex.api_request",
            "codex.api_request.duration_ms",
            "codex.goal.completed",
            "codex.goal.created",
            "codex.goal.duration_s",
            "codex.goal.token_count",
            "codex.sse_event",
            "codex.sse_event.duration_ms",
            "codex.thread.started",
            "codex.tool.call",
            "codex.tool.call.duration_ms",
            "codex.turn.e2e_duration_ms",
            "codex.turn.token_usage",
            "codex.turn.tool.call",
            "codex.turn.ttfm.duration_ms",
            "codex.turn.ttft.duration_ms",
            "gen_ai.client.operation.duration",
            "gen_ai.client.token.usage",
            "quest.goal.continuation_turns",
            "quest.goal.duration",
            "quest.goal.tokens",
            "quest.goal.transitions",
        ]),
    }
}

/// One exporter value for all three signals.
fn all_signals(exporter: &str) -> Vec<String> {
    ["exporter", "trace_exporter", "metrics_exporter"]
        .iter()
        .flat_map(|key| ["-c".to_string(), format!("otel.{key}={exporter}")])
        .collect()
}

/// Runs a goal session exporting with `args`, waits for the exit flush to arrive, checks the
/// exact names and the GenAI attributes, and returns what was received.
fn goal_run_exports_exactly(receiver: &OtlpReceiver, args: Vec<String>) -> Received {
    let mock = MockModel::start_blocking(Script::new([
        Step::http_error(503, json!({"error": {"message": "busy"}})),
        Step::function_call("exec_command", json!({"cmd": "echo \"tp=$TRACEPARENT\""}))
            .with_usage(Usage::new(1000, 200, 50, 10)),
        Step::message("Checked the trace context.").with_usage(Usage::new(1100, 900, 12, 0)),
        Step::update_goal("complete").with_usage(Usage::new(1200, 1000, 8, 0)),
        Step::message("Done.").with_usage(Usage::new(1300, 1200, 5, 0)),
    ]));
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock)
            .args(args)
            .args(["-c", "otel.environment=\"e2e\""])
            .args(["--goal", OBJECTIVE]),
        0,
    );
    let thread = thread_id(&jsonl(&out));
    let expected = expected_names();
    let names = |r: &Received| Names {
        spans: r.spans().into_iter().map(|s| s.name).collect(),
        span_events: r
            .spans()
            .into_iter()
            .flat_map(|s| s.events.into_iter().map(|(name, _)| name))
            .collect(),
        logs: r.log_records().into_iter().map(|l| l.event_name).collect(),
        metrics: r.metric_points().into_iter().map(|m| m.name).collect(),
    };
    // The exit flush delivered everything before the process ended; the receiver may still be
    // decoding the last request.
    let received = receiver
        .wait_until(Duration::from_secs(20), |r| names(r) == expected)
        .unwrap_or_else(|r| {
            panic!(
                "exported names differ.\nexpected {expected:#?}\nreceived {:#?}",
                names(&r)
            )
        });

    // Attributes of the GenAI spans.
    let spans = received.spans();
    let turn = spans
        .iter()
        .find(|s| s.name == "invoke_agent quest")
        .unwrap();
    for key in [
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "quest.goal.id",
        "quest.goal.status",
    ] {
        assert!(
            turn.attributes.contains_key(key),
            "invoke_agent lacks {key}"
        );
    }
    assert_eq!(turn.attributes["gen_ai.request.model"], "gpt-test");
    let chats: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == "chat gpt-test").collect();
    // Four responses, the first after one 503: five HTTP attempts, five `chat` spans.
    assert_eq!(chats.len(), 5, "one chat span per HTTP attempt");
    assert_eq!(mock.requests().len(), 5);
    let failed: Vec<&&ReceivedSpan> = chats
        .iter()
        .filter(|c| c.attributes.get("error.type").map(String::as_str) == Some("503"))
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attributes["http.response.status_code"], "503");
    for chat in &chats {
        assert_eq!(chat.attributes["gen_ai.conversation.id"], thread);
        for noisy in ["code.", "thread.", "busy_ns", "idle_ns", "target"] {
            assert!(
                chat.attributes.keys().all(|k| !k.starts_with(noisy)),
                "{noisy} on {:?}",
                chat.attributes
            );
        }
    }
    let completed = chats
        .iter()
        .find(|c| {
            c.attributes
                .get("gen_ai.usage.reasoning.output_tokens")
                .map(String::as_str)
                == Some("10")
        })
        .expect("reasoning tokens on the chat span");
    assert!(completed.attributes.contains_key("gen_ai.response.id"));
    // `server.port` is an integer on spans and on the GenAI metrics.
    let int_attr =
        |attributes: &[quest_otel::test_receiver::proto::tonic::common::v1::KeyValue],
         key: &str| {
            attributes.iter().find(|kv| kv.key == key).map(|kv| {
            matches!(
                kv.value.as_ref().and_then(|v| v.value.as_ref()),
                Some(quest_otel::test_receiver::proto::tonic::common::v1::any_value::Value::IntValue(_))
            )
        })
        };
    for request in &received.traces {
        for span in request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .filter(|s| s.name.starts_with("chat "))
        {
            assert_eq!(int_attr(&span.attributes, "server.port"), Some(true));
        }
    }
    use quest_otel::test_receiver::proto::tonic::metrics::v1::metric::Data;
    let mut gen_ai_points = 0;
    for metric in received
        .metrics
        .iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .filter(|m| m.name.starts_with("gen_ai."))
    {
        if let Some(Data::Histogram(histogram)) = &metric.data {
            for point in &histogram.data_points {
                gen_ai_points += 1;
                assert_eq!(int_attr(&point.attributes, "server.port"), Some(true));
                // The convention's attributes only: no session tags.
                for key in point.attributes.iter().map(|kv| kv.key.as_str()) {
                    assert!(
                        key.starts_with("gen_ai.")
                            || key.starts_with("server.")
                            || key == "error.type",
                        "{}: unexpected attribute {key}",
                        metric.name
                    );
                }
            }
        }
    }
    assert!(gen_ai_points > 0);
    // One `codex.api_request` per HTTP attempt, the failed one with its status code.
    let requests: Vec<_> = received
        .metric_points()
        .into_iter()
        .filter(|p| p.name == "codex.api_request")
        .collect();
    assert_eq!(requests.iter().map(|p| p.value).sum::<f64>(), 5.0);
    assert!(requests.iter().any(|p| p.attributes["status"] == "503"
        && p.attributes["success"] == "false"
        && p.value == 1.0));
    // Goal counters: created once, completed once, never "resumed".
    for (name, value) in [("codex.goal.created", 1.0), ("codex.goal.completed", 1.0)] {
        let total: f64 = received
            .metric_points()
            .iter()
            .filter(|p| p.name == name)
            .map(|p| p.value)
            .sum();
        assert_eq!(total, value, "{name}");
    }
    for (_, resource) in received.resources() {
        assert_eq!(resource["service.name"], "quest_exec");
        assert_eq!(resource["env"], "e2e");
    }
    received
}

#[test]
fn goal_run_exports_exactly_its_names_over_http_protobuf() {
    let receiver = OtlpReceiver::start().unwrap();
    let endpoint = receiver.http_endpoint();
    let received = goal_run_exports_exactly(
        &receiver,
        all_signals(&format!(
            "{{otlp-http={{endpoint=\"{endpoint}\", protocol=\"binary\"}}}}"
        )),
    );
    assert!(
        received
            .requests
            .iter()
            .all(|r| r.transport == Transport::HttpProtobuf)
    );
}

#[test]
fn goal_run_exports_exactly_its_names_over_http_json() {
    let receiver = OtlpReceiver::start().unwrap();
    let endpoint = receiver.http_endpoint();
    let received = goal_run_exports_exactly(
        &receiver,
        all_signals(&format!(
            "{{otlp-http={{endpoint=\"{endpoint}\", protocol=\"json\"}}}}"
        )),
    );
    assert!(
        received
            .requests
            .iter()
            .all(|r| r.transport == Transport::HttpJson)
    );
}

#[test]
fn goal_run_exports_exactly_its_names_over_grpc() {
    let receiver = OtlpReceiver::start().unwrap();
    let endpoint = receiver.grpc_endpoint();
    let received = goal_run_exports_exactly(
        &receiver,
        all_signals(&format!("{{otlp-grpc={{endpoint=\"{endpoint}\"}}}}")),
    );
    assert!(
        received
            .requests
            .iter()
            .all(|r| r.transport == Transport::Grpc)
    );
}

/// PEM files of a generated test CA's certificate and a client certificate.
fn write_tls_files(dir: &std::path::Path, ca: &TestCa) -> (String, String, String) {
    let client = ca.client_cert().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    (
        write("ca.pem", ca.cert_pem()),
        write("client.pem", &client.cert_pem),
        write("client.key", &client.key_pem),
    )
}

#[test]
fn goal_run_exports_exactly_its_names_over_grpc_with_mutual_tls() {
    let ca = TestCa::new().unwrap();
    let receiver = OtlpReceiver::start_tls(ReceiverTls {
        server: ca.server_cert().unwrap(),
        client_ca_pem: Some(ca.cert_pem().to_string()),
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ca_path, cert, key) = write_tls_files(dir.path(), &ca);
    let endpoint = receiver.grpc_endpoint();
    assert!(endpoint.starts_with("https://"));
    let received = goal_run_exports_exactly(
        &receiver,
        all_signals(&format!(
            "{{otlp-grpc={{endpoint=\"{endpoint}\", tls={{ca-certificate=\"{ca_path}\", client-certificate=\"{cert}\", client-private-key=\"{key}\"}}}}}}"
        )),
    );
    assert!(
        received
            .requests
            .iter()
            .all(|r| r.transport == Transport::Grpc)
    );
    assert!(
        received.handshakes.with_client_certificate >= 1,
        "{:?}",
        received.handshakes
    );
    assert_eq!(received.handshakes.failed, 0, "{:?}", received.handshakes);
}

#[test]
fn goal_run_exports_exactly_its_names_over_https() {
    let ca = TestCa::new().unwrap();
    let receiver = OtlpReceiver::start_tls(ReceiverTls {
        server: ca.server_cert().unwrap(),
        client_ca_pem: None,
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ca_path, _, _) = write_tls_files(dir.path(), &ca);
    let endpoint = receiver.http_endpoint();
    assert!(endpoint.starts_with("https://"));
    let received = goal_run_exports_exactly(
        &receiver,
        all_signals(&format!(
            "{{otlp-http={{endpoint=\"{endpoint}\", protocol=\"binary\", tls={{ca-certificate=\"{ca_path}\"}}}}}}"
        )),
    );
    assert!(
        received
            .requests
            .iter()
            .all(|r| r.transport == Transport::HttpProtobuf)
    );
    assert!(
        received.handshakes.succeeded >= 1,
        "{:?}",
        received.handshakes
    );
    assert_eq!(received.handshakes.failed, 0, "{:?}", received.handshakes);
}

/// With `TRACEPARENT` set and no trace exporter, model requests and shell commands still
/// continue the caller's trace, each from its own (unexported) span — never the inherited
/// context unchanged.
#[test]
fn inbound_traceparent_is_propagated_without_a_trace_exporter() {
    let mock = MockModel::start_blocking(Script::new([
        Step::function_call("exec_command", json!({"cmd": "echo \"tp=$TRACEPARENT\""})),
        Step::message("done"),
    ]));
    let env = TestEnv::new();
    run(
        env.exec(&mock)
            .env("TRACEPARENT", format!("00-{TRACE_ID}-{PARENT_SPAN}-01"))
            .arg("check the trace"),
        0,
    );
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    let mut seen = BTreeSet::new();
    for request in &requests {
        let traceparent = request.header("traceparent").expect("traceparent sent");
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts[1], TRACE_ID, "{traceparent}");
        assert_ne!(parts[2], PARENT_SPAN, "{traceparent}");
        seen.insert(parts[2].to_string());
    }
    assert_eq!(seen.len(), 2, "each request from its own span");
    let output = mock.input_items(1);
    let tool_output = output
        .iter()
        .find(|i| i["type"] == "function_call_output")
        .unwrap()["output"]
        .as_str()
        .unwrap()
        .to_string();
    let child = tool_output
        .split("tp=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    let parts: Vec<&str> = child.split('-').collect();
    assert_eq!(parts.len(), 4, "{tool_output}");
    assert_eq!(parts[1], TRACE_ID, "{tool_output}");
    assert_ne!(
        parts[2], PARENT_SPAN,
        "not the inherited context: {tool_output}"
    );
    assert!(!seen.contains(parts[2]), "the tool span, not a chat span");
}
