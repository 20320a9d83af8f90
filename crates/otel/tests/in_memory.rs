//! Every session event and metric through the real routing filters into in-memory exporters.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry_sdk::logs::InMemoryLogExporter;
use opentelemetry_sdk::metrics::InMemoryMetricExporter;
use opentelemetry_sdk::trace::InMemorySpanExporter;
use quest_otel::ApiRequestDetails;
use quest_otel::GenAiCall;
use quest_otel::GoalStatusChange;
use quest_otel::GoalTransition;
use quest_otel::MetricsClient;
use quest_otel::MetricsConfig;
use quest_otel::OtelProvider;
use quest_otel::OtelSettings;
use quest_otel::PromptItem;
use quest_otel::SessionTelemetry;
use quest_otel::TelemetryAuthMode;
use quest_otel::ToolDecisionSource;
use quest_otel::metrics::PointSnapshot;
use quest_otel::metrics::flatten_metrics;
use quest_protocol::goal::Actor;
use quest_protocol::goal::BudgetLimitKind;
use quest_protocol::goal::GoalReason;
use quest_protocol::goal::GoalStatus;
use tracing_subscriber::layer::SubscriberExt;

struct Harness {
    logs: InMemoryLogExporter,
    spans: InMemorySpanExporter,
    metrics: InMemoryMetricExporter,
    client: MetricsClient,
    provider: OtelProvider,
}

#[derive(Debug)]
struct Log {
    name: String,
    target: String,
    attributes: BTreeMap<String, String>,
}

fn harness() -> Harness {
    let mut settings = OtelSettings::new("test", "quest_test", "1.2.3", "/tmp/quest-home");
    settings
        .span_attributes
        .insert("example.trace_attr".into(), "enabled".into());
    let logs = InMemoryLogExporter::default();
    let spans = InMemorySpanExporter::default();
    let metrics = InMemoryMetricExporter::default();
    let client = MetricsClient::new(MetricsConfig::in_memory(
        "test",
        "quest_test",
        "1.2.3",
        metrics.clone(),
    ))
    .unwrap();
    let provider =
        OtelProvider::in_memory(&settings, logs.clone(), spans.clone(), Some(client.clone()))
            .unwrap();
    Harness {
        logs,
        spans,
        metrics,
        client,
        provider,
    }
}

fn session(log_user_prompts: bool, client: &MetricsClient) -> SessionTelemetry {
    SessionTelemetry::new(
        "thread-1",
        "gpt-5.5",
        "gpt-5.5",
        Some("acct-42".into()),
        Some("dev@example.com".into()),
        Some(TelemetryAuthMode::ApiKey),
        "quest_exec".into(),
        log_user_prompts,
        "xterm".into(),
        "exec".into(),
    )
    .with_metrics(client.clone())
    .with_tool_result_max_bytes(16)
}

/// Runs `f` inside a root span with both layers attached, then returns the exported data.
fn capture(
    h: &Harness,
    f: impl FnOnce(),
) -> (
    Vec<Log>,
    Vec<opentelemetry_sdk::trace::SpanData>,
    Vec<PointSnapshot>,
) {
    let subscriber = tracing_subscriber::registry()
        .with(h.provider.logger_layer())
        .with(h.provider.tracing_layer());
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!(target: "quest::turn", "turn");
        let _entered = span.enter();
        f();
    });
    h.provider.force_flush();
    let logs = h
        .logs
        .get_emitted_logs()
        .unwrap()
        .into_iter()
        .map(|data| Log {
            name: data.record.event_name().unwrap_or_default().to_string(),
            target: data
                .record
                .target()
                .map(|t| t.to_string())
                .unwrap_or_default(),
            attributes: data
                .record
                .attributes_iter()
                .map(|(k, v)| (k.to_string(), format!("{v:?}")))
                .collect(),
        })
        .collect();
    let metrics = flatten_metrics(&h.metrics.get_finished_metrics().unwrap());
    (logs, h.spans.get_finished_spans().unwrap(), metrics)
}

fn span_events(
    spans: &[opentelemetry_sdk::trace::SpanData],
) -> Vec<(String, BTreeMap<String, String>)> {
    spans
        .iter()
        .flat_map(|span| span.events.iter())
        .map(|event| {
            let attrs = event
                .attributes
                .iter()
                .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                .collect();
            (event.name.to_string(), attrs)
        })
        .collect()
}

fn attr<'a>(log: &'a Log, key: &str) -> &'a str {
    log.attributes
        .get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{key} missing in {log:?}"))
}

#[test]
fn user_prompt_is_redacted_in_logs_and_absent_from_traces() {
    let h = harness();
    let s = session(false, &h.client);
    let (logs, spans, _) = capture(&h, || {
        s.user_prompt(&[
            PromptItem::Text("secret plan".into()),
            PromptItem::Image,
            PromptItem::LocalImage,
        ]);
    });
    let log = logs
        .iter()
        .find(|l| l.name == "codex.user_prompt")
        .expect("log record");
    assert_eq!(log.target, "codex_otel.log_only");
    assert!(attr(log, "prompt").contains("[REDACTED]"));
    assert!(attr(log, "prompt_length").contains("11"));
    assert!(attr(log, "user.email").contains("dev@example.com"));
    assert!(attr(log, "user.account_id").contains("acct-42"));
    for key in [
        "event.timestamp",
        "conversation.id",
        "app.version",
        "auth_mode",
        "originator",
        "terminal.type",
        "model",
        "slug",
    ] {
        attr(log, key);
    }
    let events = span_events(&spans);
    let (_, trace) = events
        .iter()
        .find(|(name, _)| name == "codex.user_prompt")
        .expect("span event");
    assert_eq!(trace["prompt_length"], "11");
    assert_eq!(trace["text_input_count"], "1");
    assert_eq!(trace["image_input_count"], "1");
    assert_eq!(trace["local_image_input_count"], "1");
    assert!(!trace.contains_key("prompt"));
    assert!(!trace.contains_key("user.email"));
    assert!(!trace.contains_key("user.account_id"));
    // The trace-safe copy never reaches the log exporter.
    assert_eq!(
        logs.iter()
            .filter(|l| l.name == "codex.user_prompt")
            .count(),
        1
    );
    assert!(logs.iter().all(|l| l.target == "codex_otel.log_only"));
    // Span attributes from config are on every span.
    assert!(spans.iter().all(|span| {
        span.attributes
            .iter()
            .any(|kv| kv.key.as_str() == "example.trace_attr" && kv.value.to_string() == "enabled")
    }));
}

#[test]
fn user_prompt_text_is_logged_when_enabled() {
    let h = harness();
    let s = session(true, &h.client);
    let (logs, _, _) = capture(&h, || {
        s.user_prompt(&[PromptItem::Text("hello there".into())])
    });
    let log = logs.iter().find(|l| l.name == "codex.user_prompt").unwrap();
    assert!(attr(log, "prompt").contains("hello there"));
}

#[test]
fn tool_result_truncates_arguments_and_output_and_counts_calls() {
    let h = harness();
    let s = session(false, &h.client);
    let args = r#"{"cmd":"cargo test --workspace --all-features"}"#;
    let output = "line one\nline two\nline three with a long tail";
    let (logs, spans, metrics) = capture(&h, || {
        s.tool_result(
            "exec_command",
            "call-1",
            args,
            Duration::from_millis(42),
            true,
            output,
            None,
        );
        s.tool_decision(
            "exec_command",
            "call-1",
            "Approved",
            ToolDecisionSource::User,
        );
    });
    let log = logs.iter().find(|l| l.name == "codex.tool_result").unwrap();
    assert!(attr(log, "arguments").contains("[... telemetry preview truncated ...]"));
    assert!(
        attr(log, "output").contains("line one\\nline tw")
            || attr(log, "output").contains("line one\nline tw")
    );
    assert!(attr(log, "output_truncated").contains("true"));
    assert!(attr(log, "duration_ms").contains("42"));
    let (_, trace) = span_events(&spans)
        .into_iter()
        .find(|(n, _)| n == "codex.tool_result")
        .unwrap();
    assert_eq!(trace["arguments_length"], args.len().to_string());
    assert_eq!(trace["output_length"], output.len().to_string());
    assert_eq!(trace["output_line_count"], "3");
    assert_eq!(trace["tool_origin"], "builtin");
    assert!(!trace.contains_key("arguments") && !trace.contains_key("output"));
    let decision = logs
        .iter()
        .find(|l| l.name == "codex.tool_decision")
        .unwrap();
    assert!(attr(decision, "decision").contains("approved"));
    assert!(attr(decision, "source").contains("user"));
    assert!(
        span_events(&spans)
            .iter()
            .all(|(n, _)| n != "codex.tool_decision")
    );

    let call = metrics
        .iter()
        .find(|p| p.name == "codex.tool.call")
        .unwrap();
    assert_eq!(call.value, 1.0);
    assert_eq!(call.attributes["tool"], "exec_command");
    assert_eq!(call.attributes["success"], "true");
    for (key, value) in [
        ("originator", "quest_exec"),
        ("model", "gpt-5.5"),
        ("session_source", "exec"),
        ("auth_mode", "api_key"),
    ] {
        assert_eq!(call.attributes[key], value, "{key}");
    }
    let duration = metrics
        .iter()
        .find(|p| p.name == "codex.tool.call.duration_ms")
        .unwrap();
    assert_eq!(duration.unit, "ms");
    assert_eq!(duration.value, 42.0);
}

#[test]
fn api_request_sse_and_completion_events_and_metrics() {
    let h = harness();
    let s = session(false, &h.client);
    let (logs, spans, metrics) = capture(&h, || {
        s.conversation_starts(
            "openai",
            Some("high"),
            "auto",
            Some(272_000),
            None,
            "never",
            "workspace-write",
            &["fs", "git"],
        );
        s.record_api_request(
            1,
            Some(200),
            None,
            Duration::from_millis(120),
            &ApiRequestDetails {
                endpoint: Some("/v1/responses".into()),
                auth_header_attached: true,
                ..Default::default()
            },
        );
        s.record_api_request(
            2,
            Some(429),
            Some("rate limited"),
            Duration::from_millis(5),
            &ApiRequestDetails::default(),
        );
        s.log_sse_event("response.output_text.delta", Duration::from_millis(1), None);
        s.log_sse_event("response.failed", Duration::from_millis(2), Some("boom"));
        s.sse_event_completed(1000, 200, Some(600), Some(50), 0);
    });
    let starts = logs
        .iter()
        .find(|l| l.name == "codex.conversation_starts")
        .unwrap();
    assert!(attr(starts, "mcp_servers").contains("fs, git"));
    let (_, trace_starts) = span_events(&spans)
        .into_iter()
        .find(|(n, _)| n == "codex.conversation_starts")
        .unwrap();
    assert_eq!(trace_starts["mcp_server_count"], "2");

    let api: Vec<_> = logs
        .iter()
        .filter(|l| l.name == "codex.api_request")
        .collect();
    assert_eq!(api.len(), 2);
    assert!(attr(api[0], "endpoint").contains("/v1/responses"));
    assert!(attr(api[1], "error.message").contains("rate limited"));
    let counts: Vec<_> = metrics
        .iter()
        .filter(|p| p.name == "codex.api_request")
        .collect();
    assert_eq!(counts.len(), 2);
    assert!(
        counts
            .iter()
            .any(|p| p.attributes["status"] == "200" && p.attributes["success"] == "true")
    );
    assert!(
        counts
            .iter()
            .any(|p| p.attributes["status"] == "429" && p.attributes["success"] == "false")
    );

    let sse: Vec<_> = logs
        .iter()
        .filter(|l| l.name == "codex.sse_event")
        .collect();
    assert_eq!(sse.len(), 3);
    // Only the failure and the completion are trace events.
    let sse_trace: Vec<_> = span_events(&spans)
        .into_iter()
        .filter(|(n, _)| n == "codex.sse_event")
        .collect();
    assert_eq!(sse_trace.len(), 2);
    let completed = &sse_trace[1].1;
    assert_eq!(completed["input_token_count"], "1000");
    assert_eq!(completed["cached_token_count"], "600");
    assert!(metrics.iter().any(|p| p.name == "codex.sse_event"
        && p.attributes["kind"] == "response.failed"
        && p.attributes["success"] == "false"));
    let usage: BTreeMap<_, _> = metrics
        .iter()
        .filter(|p| p.name == "codex.turn.token_usage")
        .map(|p| (p.attributes["token_type"].clone(), p.value))
        .collect();
    assert_eq!(usage["input"], 1000.0);
    assert_eq!(usage["output"], 200.0);
    assert_eq!(usage["cached_input"], 600.0);
    assert!(metrics.iter().any(|p| p.name == "codex.thread.started"));
}

fn change(from: Option<GoalStatus>, to: Option<GoalStatus>, reason: GoalReason) -> GoalTransition {
    let mut change = GoalTransition::new("goal-7", from, to, Actor::System, reason);
    change.tokens_used = 2_000_000;
    change.time_used_seconds = 95;
    change.turns_used = 12;
    change
}

#[test]
fn goal_status_change_event_and_goal_metrics() {
    let h = harness();
    let s = session(false, &h.client);
    let mut limited = change(
        Some(GoalStatus::Active),
        Some(GoalStatus::BudgetLimited),
        GoalReason::BudgetTokens,
    );
    limited.budget_limit_kind = Some(BudgetLimitKind::Tokens);
    let (logs, spans, metrics) = capture(&h, || {
        s.goal_transition(&limited);
        s.goal_continuation_turn("no_progress");
    });
    let log = logs
        .iter()
        .find(|l| l.name == "quest.goal.status_changed")
        .unwrap();
    for (key, value) in [
        ("from", "active"),
        ("to", "budgetLimited"),
        ("actor", "system"),
        ("reason", "budget_tokens"),
        ("tokens_used", "2000000"),
        ("time_used_seconds", "95"),
        ("goal.id", "goal-7"),
    ] {
        assert!(attr(log, key).contains(value), "{key}");
    }
    let limited_log = logs
        .iter()
        .find(|l| l.name == "quest.goal.budget_limited")
        .unwrap();
    assert!(attr(limited_log, "limit_kind").contains("tokens"));
    assert!(
        span_events(&spans)
            .iter()
            .any(|(n, a)| n == "quest.goal.status_changed" && a["to"] == "budgetLimited")
    );
    let transition = metrics
        .iter()
        .find(|p| p.name == "quest.goal.transitions")
        .unwrap();
    assert_eq!(transition.attributes["from"], "active");
    assert_eq!(transition.attributes["to"], "budgetLimited");
    assert_eq!(transition.attributes["actor"], "system");
    assert_eq!(transition.attributes["reason"], "budget_tokens");
    let tokens = metrics
        .iter()
        .find(|p| p.name == "quest.goal.tokens")
        .unwrap();
    assert_eq!(
        (tokens.unit.as_str(), tokens.value, tokens.count),
        ("{token}", 2_000_000.0, 1)
    );
    let duration = metrics
        .iter()
        .find(|p| p.name == "quest.goal.duration")
        .unwrap();
    assert_eq!((duration.unit.as_str(), duration.value), ("s", 95.0));
    assert!(
        metrics
            .iter()
            .any(|p| p.name == "codex.goal.budget_limited")
    );
    assert!(
        metrics
            .iter()
            .any(|p| p.name == "quest.goal.continuation_turns"
                && p.attributes["outcome"] == "no_progress")
    );
}

/// The wire-spelling form core passes today: `none` is "no goal", so creation counts
/// `codex.goal.created`, never `codex.goal.resumed`.
#[test]
fn goal_creation_in_wire_spelling_counts_created_not_resumed() {
    let h = harness();
    let s = session(false, &h.client);
    let (_, _, metrics) = capture(&h, || {
        s.goal_status_changed(&GoalStatusChange {
            goal_id: "goal-1".into(),
            from: "none".into(),
            to: "active".into(),
            actor: "user".into(),
            reason: "user_request".into(),
            ..Default::default()
        });
    });
    let counters: Vec<&str> = metrics
        .iter()
        .filter(|p| p.name.starts_with("codex.goal."))
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(counters, ["codex.goal.created"]);
}

/// Every transition counts exactly the `codex.goal.*` counter Codex's catalogue names, and
/// emits exactly the Quest goal events that apply (creation was once counted as a resume).
#[test]
fn every_goal_transition_counts_its_codex_counter() {
    use GoalStatus::*;
    type Case = (
        Option<GoalStatus>,
        Option<GoalStatus>,
        Vec<&'static str>,
        Vec<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            None,
            Some(Active),
            vec!["codex.goal.created"],
            vec!["quest.goal.created"],
        ),
        (
            None,
            Some(Paused),
            vec!["codex.goal.created"],
            vec!["quest.goal.created"],
        ),
        (
            Some(Paused),
            Some(Active),
            vec!["codex.goal.resumed"],
            vec![],
        ),
        (
            Some(UsageLimited),
            Some(Active),
            vec!["codex.goal.resumed"],
            vec![],
        ),
        (Some(Active), Some(Paused), vec![], vec![]),
        (
            Some(Active),
            Some(Complete),
            vec!["codex.goal.completed"],
            vec!["quest.goal.completed"],
        ),
        (
            Some(Active),
            Some(Blocked),
            vec!["codex.goal.blocked"],
            vec![],
        ),
        (
            Some(Active),
            Some(BudgetLimited),
            vec!["codex.goal.budget_limited"],
            vec!["quest.goal.budget_limited"],
        ),
        (
            Some(Active),
            Some(UsageLimited),
            vec!["codex.goal.usage_limited"],
            vec!["quest.goal.usage_limited"],
        ),
        (Some(Paused), None, vec![], vec!["quest.goal.cleared"]),
    ];
    for (from, to, counters, events) in cases {
        let h = harness();
        let s = session(false, &h.client);
        let (logs, _, metrics) = capture(&h, || {
            s.goal_transition(&change(from, to, GoalReason::UserRequest));
        });
        let mut counted: Vec<&str> = metrics
            .iter()
            .filter(|p| p.name.starts_with("codex.goal.") && p.kind == "sum")
            .map(|p| p.name.as_str())
            .collect();
        counted.sort();
        assert_eq!(counted, counters, "{from:?} -> {to:?}");
        let mut emitted: Vec<&str> = logs
            .iter()
            .map(|l| l.name.as_str())
            .filter(|n| *n != "quest.goal.status_changed")
            .collect();
        emitted.sort();
        assert_eq!(emitted, events, "{from:?} -> {to:?}");
        assert!(
            logs.iter().any(|l| l.name == "quest.goal.status_changed"),
            "{from:?} -> {to:?}"
        );
        let transitions = metrics
            .iter()
            .find(|p| p.name == "quest.goal.transitions")
            .unwrap();
        let name = |status: Option<GoalStatus>| status.map_or("none", GoalStatus::as_wire);
        assert_eq!(transitions.attributes["from"], name(from));
        assert_eq!(transitions.attributes["to"], name(to));
        // Stop histograms only when an active stretch ends.
        let stopped = from == Some(Active) && to != Some(Active);
        assert_eq!(
            metrics.iter().any(|p| p.name == "quest.goal.tokens"),
            stopped,
            "{from:?} -> {to:?}"
        );
    }
}

#[test]
fn gen_ai_metrics_use_the_semantic_convention_buckets() {
    let h = harness();
    let s = session(false, &h.client);
    let (_, _, metrics) = capture(&h, || {
        s.record_gen_ai_call(&GenAiCall {
            operation: "chat".into(),
            provider: "openai".into(),
            request_model: "gpt-5.5".into(),
            response_model: Some("gpt-5.5-2026".into()),
            server_address: Some("api.openai.com".into()),
            server_port: Some(443),
            input_tokens: 1500,
            output_tokens: 300,
            duration: Duration::from_millis(2500),
            error_type: None,
        });
        s.record_gen_ai_call(&GenAiCall {
            operation: "chat".into(),
            provider: "openai".into(),
            request_model: "gpt-5.5".into(),
            duration: Duration::from_millis(100),
            error_type: Some("429".into()),
            ..Default::default()
        });
    });
    let tokens: Vec<_> = metrics
        .iter()
        .filter(|p| p.name == "gen_ai.client.token.usage")
        .collect();
    assert_eq!(
        tokens.len(),
        2,
        "one record per token type, none for the failure"
    );
    assert!(tokens.iter().all(|p| p.unit == "{token}"
        && p.bounds == quest_otel::metrics::GEN_AI_TOKEN_USAGE_BUCKETS.to_vec()));
    let input = tokens
        .iter()
        .find(|p| p.attributes["gen_ai.token.type"] == "input")
        .unwrap();
    assert_eq!(input.value, 1500.0);
    assert_eq!(input.attributes["gen_ai.response.model"], "gpt-5.5-2026");
    assert_eq!(input.attributes["server.port"], "443");
    // Only the convention's attributes: no session tags such as `originator` or `model`.
    let mut keys: Vec<&str> = input.attributes.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "gen_ai.operation.name",
            "gen_ai.provider.name",
            "gen_ai.request.model",
            "gen_ai.response.model",
            "gen_ai.token.type",
            "server.address",
            "server.port",
        ]
    );
    let durations: Vec<_> = metrics
        .iter()
        .filter(|p| p.name == "gen_ai.client.operation.duration")
        .collect();
    assert_eq!(durations.len(), 2);
    assert!(durations.iter().all(|p| p.unit == "s"
        && p.bounds == quest_otel::metrics::GEN_AI_OPERATION_DURATION_BUCKETS.to_vec()));
    assert!(
        durations
            .iter()
            .any(|p| p.attributes.get("error.type").map(String::as_str) == Some("429"))
    );
}

#[test]
fn metrics_client_validates_names_tags_and_merges_default_tags() {
    use quest_otel::MetricsError;
    let exporter = InMemoryMetricExporter::default();
    let client = MetricsClient::new(
        MetricsConfig::in_memory("test", "svc", "1", exporter.clone())
            .with_tag("region", "eu")
            .unwrap()
            .with_tag("tier", "free")
            .unwrap(),
    )
    .unwrap();
    assert!(matches!(
        client.counter("1bad", 1, &[]),
        Err(MetricsError::InvalidMetricName { .. })
    ));
    assert!(matches!(
        client.counter("-", 1, &[]),
        Err(MetricsError::InvalidMetricName { .. })
    ));
    assert!(matches!(
        client.counter(&"a".repeat(256), 1, &[]),
        Err(MetricsError::InvalidMetricName { .. })
    ));
    assert!(client.counter(&"a".repeat(255), 1, &[]).is_ok());
    assert!(matches!(
        client.counter("ok", -1, &[]),
        Err(MetricsError::NegativeCounterIncrement { inc: -1 })
    ));
    assert!(matches!(
        client.counter("ok", 1, &[("bad key", "v")]),
        Err(MetricsError::InvalidTagComponent {
            label: "tag key",
            ..
        })
    ));
    assert!(matches!(
        client.histogram("ok", 1, &[("k", "")]),
        Err(MetricsError::EmptyTagComponent { label: "tag value" })
    ));
    assert!(
        MetricsConfig::in_memory("t", "s", "1", exporter.clone())
            .with_tag("k", "has space")
            .is_err()
    );
    client
        .counter("quest.test.count", 3, &[("tier", "pro")])
        .unwrap();
    {
        let mut timer = client
            .start_timer("quest.test.timer", &[("phase", "a")])
            .unwrap();
        timer
            .record(&[("phase", "ignored"), ("extra", "x")])
            .unwrap();
    }
    client.shutdown().unwrap();
    let points = flatten_metrics(&exporter.get_finished_metrics().unwrap());
    let count = points
        .iter()
        .find(|p| p.name == "quest.test.count")
        .unwrap();
    assert_eq!(count.value, 3.0);
    assert_eq!(count.attributes["tier"], "pro");
    assert_eq!(count.attributes["region"], "eu");
    let timer: Vec<_> = points
        .iter()
        .filter(|p| p.name == "quest.test.timer")
        .collect();
    assert_eq!(
        timer.len(),
        1,
        "an explicitly recorded timer does not record again on drop"
    );
    assert_eq!(timer[0].attributes["phase"], "a");
    assert_eq!(timer[0].attributes["extra"], "x");
}

#[test]
fn statsig_deny_list_drops_listed_metrics_only() {
    let exporter = InMemoryMetricExporter::default();
    let client = MetricsClient::new(
        MetricsConfig::in_memory("t", "s", "1", exporter.clone()).with_statsig_deny_list(),
    )
    .unwrap();
    client.counter("codex.tool.call", 1, &[]).unwrap();
    client.counter("codex.thread.started", 1, &[]).unwrap();
    client.shutdown().unwrap();
    let names: Vec<_> = flatten_metrics(&exporter.get_finished_metrics().unwrap())
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["codex.thread.started".to_string()]);
}

#[test]
fn continuation_turn_links_to_the_goal_first_turn() {
    let h = harness();
    let first = quest_otel::W3cTraceContext {
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        tracestate: None,
    };
    let (_, spans, _) = capture(&h, || {
        assert!(quest_otel::link_span_to_w3c_trace_context(
            &tracing::Span::current(),
            &first
        ));
        assert!(!quest_otel::link_span_to_w3c_trace_context(
            &tracing::Span::current(),
            &quest_otel::W3cTraceContext::default()
        ));
    });
    let turn = spans.iter().find(|s| s.name == "turn").unwrap();
    let links: Vec<_> = turn
        .links
        .iter()
        .map(|l| l.span_context.trace_id().to_string())
        .collect();
    assert_eq!(links, vec!["0af7651916cd43dd8448eb211c80319c".to_string()]);
}

/// Spans of the libraries underneath (HTTP/2, gRPC, hyper, reqwest) are never exported, nor
/// DEBUG spans of Quest's own crates; exported spans carry no `code.*`, `thread.*`,
/// `busy_ns`/`idle_ns` or `target` attributes.
#[test]
fn only_quest_spans_are_exported_without_instrumentation_noise() {
    let h = harness();
    let (_, spans, _) = capture(&h, || {
        tracing::info_span!(target: "h2::codec::framed_read", "FramedRead::decode_frame")
            .in_scope(|| {});
        tracing::info_span!(target: "h2::proto::connection", "Connection").in_scope(|| {});
        tracing::info_span!(target: "tonic::transport", "grpc").in_scope(|| {});
        tracing::info_span!(target: "hyper_util::client::legacy", "connect").in_scope(|| {});
        tracing::info_span!(target: "questionable_crate", "lookalike").in_scope(|| {});
        tracing::debug_span!(target: "quest::tool", "debug detail").in_scope(|| {});
        tracing::info_span!(target: "quest_core::thread", "module path span").in_scope(|| {});
        tracing::info_span!(target: "quest::tool", "execute_tool").in_scope(|| {});
    });
    let mut names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    names.sort();
    assert_eq!(names, ["execute_tool", "module path span", "turn"]);
    for span in &spans {
        let keys: Vec<String> = span
            .attributes
            .iter()
            .map(|kv| kv.key.to_string())
            .collect();
        assert!(
            keys.iter().all(|k| !k.starts_with("code.")
                && !k.starts_with("thread.")
                && k != "busy_ns"
                && k != "idle_ns"
                && k != "target"),
            "{}: {keys:?}",
            span.name
        );
    }
}
