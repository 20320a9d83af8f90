//! Telemetry end to end: a goal session through `quest exec --goal` against the scripted model,
//! exported to a real OTLP receiver, checked span by span.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestEnv, jsonl, run, thread_id};
use quest_mock_model::{MockModel, Script, Step, Usage};
use quest_otel::test_receiver::{OtlpReceiver, ReceivedSpan};
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
    assert!(response_ids.contains(&shell[0].attributes["gen_ai.response.id"].as_str()));
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
