//! What the client sends (headers, body, URL) and how it decodes successful streams, against the
//! mock server over TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use http::HeaderValue;
use quest_mock_model::{MockModel, Output, Script, Step, Usage};
use quest_model::{ModelClient, ModelError, ModelProviderInfo, ResponseEvent};
use quest_protocol::{ResponseItem, TokenUsage};
use serde_json::json;
use support::*;
use tracing::Instrument;

#[tokio::test]
async fn plain_message_streams_events_and_maps_usage() {
    let script = Script::new([Step::message("Hello there")
        .with_deltas(3)
        .with_usage(Usage::new(1200, 1000, 7, 2))
        .with_response_id("resp_1")]);
    let (mock, run) = run_script(script, |_| {}).await;
    assert_eq!(mock.request_count(), 1);
    let outcome = run.ok();
    assert_eq!(outcome.response_id, "resp_1");
    assert_eq!(outcome.http_requests, 1);
    let usage = TokenUsage {
        input_tokens: 1200,
        cached_input_tokens: 1000,
        output_tokens: 7,
        reasoning_output_tokens: 2,
        total_tokens: 1207,
    };
    assert_eq!(outcome.usage, usage);
    assert_eq!(outcome.items.len(), 1);
    assert_eq!(
        outcome.items[0].message_text().as_deref(),
        Some("Hello there")
    );

    let deltas: String = run
        .events
        .iter()
        .filter_map(|e| match e {
            ResponseEvent::OutputTextDelta(d) => Some(d.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, "Hello there");
    let events = run.stream_events();
    assert!(matches!(events[0], ResponseEvent::Created { response_id } if response_id == "resp_1"));
    assert!(matches!(
        events[1],
        ResponseEvent::OutputItemAdded(ResponseItem::Message { .. })
    ));
    assert_eq!(
        events.last().copied(),
        Some(&ResponseEvent::Completed {
            response_id: "resp_1".into(),
            usage
        })
    );
    // Every SSE event is reported with its JSON type, and the one attempt as a success.
    let kinds: Vec<&str> = run
        .events
        .iter()
        .filter_map(|e| match e {
            ResponseEvent::SseEvent { kind, error, .. } => {
                assert!(error.is_none(), "{kind}: {error:?}");
                Some(kind.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(kinds.first(), Some(&"response.created"));
    assert_eq!(kinds.last(), Some(&"response.completed"));
    assert!(kinds.contains(&"response.output_text.delta"), "{kinds:?}");
    let attempts = run.attempts();
    assert_eq!(attempts.len(), 1);
    assert!(attempts[0].succeeded());
    assert_eq!(
        (
            attempts[0].attempt,
            attempts[0].status,
            attempts[0].retry_delay
        ),
        (1, Some(200), None)
    );
}

#[tokio::test]
async fn parallel_calls_reasoning_and_apply_patch_are_decoded_in_order() {
    let script = Script::new([Step::calls([
        Output::reasoning("thinking").encrypted("gAAAA"),
        Output::function_call("exec_command", json!({"cmd": "echo a"})).call_id("call_a"),
        Output::function_call("exec_command", json!({"cmd": "echo b"})).call_id("call_b"),
        Output::apply_patch("*** Begin Patch\n*** End Patch\n"),
    ])]);
    let (_mock, run) = run_script(script, |_| {}).await;
    let items = &run.ok().items;
    assert_eq!(items.len(), 4);
    assert!(
        matches!(&items[0], ResponseItem::Reasoning { encrypted_content: Some(e), .. } if e == "gAAAA")
    );
    match &items[1] {
        ResponseItem::FunctionCall {
            call_id,
            arguments,
            name,
            ..
        } => {
            assert_eq!(call_id, "call_a");
            assert_eq!(name, "exec_command");
            let args: serde_json::Value = serde_json::from_str(arguments).unwrap();
            assert_eq!(args, json!({"cmd": "echo a"}));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&items[2], ResponseItem::FunctionCall { call_id, .. } if call_id == "call_b"));
    assert!(
        matches!(&items[3], ResponseItem::CustomToolCall { name, .. } if name == "apply_patch")
    );
    assert!(items.iter().filter(|i| i.is_tool_call()).count() == 3);
}

#[tokio::test]
async fn request_headers_body_and_url_follow_the_spec() {
    let mock = MockModel::start(Script::new([Step::message("ok")])).await;
    let mut p = provider(&mock);
    p.http_headers
        .insert("x-static".into(), "static-value".into());
    p.env_http_headers
        .insert("x-from-env".into(), "PATH".into());
    p.env_http_headers
        .insert("x-unset".into(), "QUEST_MODEL_TEST_SURELY_UNSET".into());
    p.query_params
        .insert("api-version".into(), "2025-01-01".into());
    let mut opts = options();
    opts.user_agent_suffix = Some("xterm (quest_exec; 0.1.0)".into());
    let client = ModelClient::new(p, opts).unwrap();
    let mut prompt = prompt();
    prompt.tools = vec![
        json!({"type":"function","name":"exec_command","strict":false,"parameters":{"type":"object"}}),
    ];
    prompt.reasoning = Some(json!({"effort":"medium"}));
    prompt.client_metadata = Some(json!({"thread_id":"thread-1"}));
    prompt
        .extra_headers
        .insert("session-id", HeaderValue::from_static("thread-1"));
    prompt
        .extra_headers
        .insert("thread-id", HeaderValue::from_static("thread-1"));
    run_with(&client, &prompt).await.ok();

    let req = mock.single_request();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/responses");
    assert_eq!(req.query.as_deref(), Some("api-version=2025-01-01"));
    assert_eq!(req.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("accept"), Some("text/event-stream"));
    assert_eq!(req.header("originator"), Some("quest_exec"));
    let ua = req.header("user-agent").unwrap();
    assert!(
        ua.starts_with(&format!("quest_exec/{} (", env!("CARGO_PKG_VERSION"))),
        "{ua}"
    );
    assert!(ua.ends_with(") xterm (quest_exec; 0.1.0)"), "{ua}");
    assert_eq!(req.header("session-id"), Some("thread-1"));
    assert_eq!(req.header("thread-id"), Some("thread-1"));
    assert_eq!(req.header("x-static"), Some("static-value"));
    assert_eq!(
        req.header("x-from-env"),
        Some(std::env::var("PATH").unwrap().as_str())
    );
    assert_eq!(req.header("x-unset"), None);
    assert_eq!(req.header("accept-encoding"), None);
    assert_eq!(req.header("transfer-encoding"), None);
    assert_eq!(
        req.header("content-length"),
        Some(req.body_len.to_string().as_str())
    );
    assert_eq!(req.header("traceparent"), None, "no span, no trace context");

    let body = &req.body;
    assert_eq!(body["model"], "gpt-5.5");
    assert_eq!(body["stream"], true);
    assert_eq!(body["store"], false);
    assert_eq!(body["tool_choice"], "auto");
    assert_eq!(body["parallel_tool_calls"], true);
    assert_eq!(body["include"], json!(["reasoning.encrypted_content"]));
    assert_eq!(body["prompt_cache_key"], "thread-1");
    assert_eq!(body["reasoning"], json!({"effort":"medium"}));
    assert_eq!(body["client_metadata"], json!({"thread_id":"thread-1"}));
    assert_eq!(body["tools"][0]["name"], "exec_command");
    assert_eq!(
        body["input"],
        json!([{"type":"message","role":"user","content":[{"type":"input_text","text":"hello"}]}])
    );
    for absent in [
        "instructions",
        "previous_response_id",
        "max_output_tokens",
        "temperature",
    ] {
        assert!(body.get(absent).is_none(), "{absent}");
    }
}

#[tokio::test]
async fn missing_api_key_fails_before_any_request() {
    let mock = MockModel::start(Script::new([Step::message("never")])).await;
    let mut opts = options();
    opts.api_key_override = None;
    let err = ModelClient::new(provider(&mock), opts).unwrap_err();
    assert_eq!(
        err,
        ModelError::MissingEnvVar {
            var: "QUEST_MODEL_TEST_KEY_NEVER_SET".into()
        }
    );
    assert_eq!(
        err.user_message(),
        "Missing environment variable: `QUEST_MODEL_TEST_KEY_NEVER_SET`."
    );
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn provider_without_env_key_sends_no_authorization() {
    let mock = MockModel::start(Script::new([Step::message("ok")])).await;
    let mut p = provider(&mock);
    p.env_key = None;
    let mut opts = options();
    opts.api_key_override = None;
    let client = ModelClient::new(p, opts).unwrap();
    run_with(&client, &prompt()).await.ok();
    assert_eq!(mock.single_request().header("authorization"), None);
}

#[tokio::test]
async fn completed_returns_without_waiting_for_the_connection_to_close() {
    let (_mock, run) = run_script(
        Script::new([Step::message("ok").keep_open(Duration::from_secs(20))]),
        |_| {},
    )
    .await;
    run.ok();
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
}

#[tokio::test]
async fn data_only_frames_and_garbage_frames_are_handled() {
    let script = Script::new([Step::message("fine").data_only().garbage_at(1)]);
    let (_mock, run) = run_script(script, |_| {}).await;
    assert_eq!(run.ok().items[0].message_text().as_deref(), Some("fine"));
}

#[tokio::test]
async fn minimal_stream_without_created_or_ids_works() {
    let script = Script::new([Step::message("bare")
        .without_created()
        .without_added()
        .without_ids()]);
    let (mock, run) = run_script(script, |_| {}).await;
    let outcome = run.ok();
    assert_eq!(outcome.items.len(), 1);
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn one_client_serves_concurrent_calls() {
    let mock = MockModel::start(Script::new([]).with_default(Step::message("ok"))).await;
    let client = ModelClient::new(provider(&mock), options()).unwrap();
    let runs = futures_util::future::join_all((0..8).map(|_| {
        let c = client.clone();
        async move { run_with(&c, &prompt()).await }
    }))
    .await;
    assert!(runs.iter().all(|r| r.result.is_ok()));
    assert_eq!(mock.request_count(), 8);
}

fn otel_subscriber() -> (
    opentelemetry_sdk::trace::SdkTracerProvider,
    impl tracing::Subscriber + Send + Sync,
) {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let tracer = provider.tracer("quest-model-test");
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
    (provider, subscriber)
}

/// The `traceparent` sent, and the trace id and span id of the caller's span.
async fn traceparent_for_span() -> (String, String, String) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let mock = MockModel::start(Script::new([Step::message("ok")])).await;
    let client = ModelClient::new(provider(&mock), options()).unwrap();
    let span = tracing::info_span!(target: "quest::turn", "invoke_agent", model = "gpt-5.5");
    let trace_id = span.context().span().span_context().trace_id().to_string();
    let span_id = span.context().span().span_context().span_id().to_string();
    run_with(&client, &prompt()).instrument(span).await.ok();
    let header = mock
        .single_request()
        .header("traceparent")
        .map(str::to_string)
        .unwrap_or_default();
    (header, trace_id, span_id)
}

/// The request continues the caller's trace from the attempt's own `chat` span (a child of
/// the caller's span, not the caller's span itself).
#[track_caller]
fn assert_attempt_traceparent(header: &str, trace_id: &str, caller_span: &str) {
    let parts: Vec<&str> = header.split('-').collect();
    assert_eq!(parts.len(), 4, "{header}");
    assert_eq!(parts[1], trace_id, "{header}");
    assert_ne!(parts[2], caller_span, "{header}");
    assert_ne!(parts[2], "0000000000000000", "{header}");
}

#[tokio::test]
async fn traceparent_is_injected_from_the_attempt_span() {
    let (_provider, subscriber) = otel_subscriber();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (header, trace_id, caller) = traceparent_for_span().await;
    assert_attempt_traceparent(&header, &trace_id, &caller);
}

#[tokio::test]
async fn traceparent_uses_the_global_propagator_when_installed() {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let (_provider, subscriber) = otel_subscriber();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (header, trace_id, caller) = traceparent_for_span().await;
    assert_attempt_traceparent(&header, &trace_id, &caller);
}

/// Every HTTP attempt of both retry layers is its own `chat` span and is reported once: the
/// 5xx attempts with their status code as `error.type` and the delay before the retry, then
/// the success. Each request carries the traceparent of its own attempt span.
#[tokio::test]
async fn every_attempt_is_a_chat_span_and_is_reported() {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;
    let spans = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let tracer_provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let subscriber = tracing_subscriber::registry().with(
        tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("quest-model-test")),
    );
    let _guard = tracing::subscriber::set_default(subscriber);
    let mock = MockModel::start(Script::new([
        Step::http_error(503, json!({"error": {"message": "busy"}})),
        Step::http_error(502, json!({"error": {"message": "gateway"}})),
        Step::message("ok").with_usage(Usage::new(100, 20, 40, 5)),
    ]))
    .await;
    let client = ModelClient::new(provider(&mock), options()).unwrap();
    let run = run_with(&client, &prompt())
        .instrument(tracing::info_span!(target: "quest::turn", "invoke_agent"))
        .await;
    run.ok();
    let attempts = run.attempts();
    let summary: Vec<(u32, Option<u16>, Option<&str>, bool)> = attempts
        .iter()
        .map(|a| {
            (
                a.attempt,
                a.status,
                a.error_type.as_deref(),
                a.retry_delay.is_some(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, Some(503), Some("503"), true),
            (2, Some(502), Some("502"), true),
            (3, Some(200), None, false),
        ]
    );
    let finished = spans.get_finished_spans().unwrap();
    let mut chats: Vec<_> = finished
        .iter()
        .filter(|s| s.name == "chat gpt-5.5")
        .collect();
    chats.sort_by_key(|s| s.start_time);
    assert_eq!(chats.len(), 3, "one chat span per attempt");
    let attr = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    };
    use opentelemetry::Value;
    for (index, chat) in chats.iter().enumerate() {
        assert_eq!(
            attr(chat, "quest.retry.attempt"),
            Some(Value::I64(index as i64 + 1))
        );
        assert_eq!(
            attr(chat, "gen_ai.conversation.id"),
            Some(Value::from("thread-1"))
        );
        assert!(matches!(attr(chat, "server.port"), Some(Value::I64(_))));
        let traceparent = mock.requests()[index]
            .header("traceparent")
            .unwrap()
            .to_string();
        assert!(
            traceparent.contains(&chat.span_context.span_id().to_string()),
            "request {index} carries its own attempt span: {traceparent}"
        );
    }
    assert_eq!(attr(chats[0], "error.type"), Some(Value::from("503")));
    assert_eq!(
        attr(chats[0], "http.response.status_code"),
        Some(Value::I64(503))
    );
    assert_eq!(attr(chats[2], "error.type"), None);
    assert_eq!(
        attr(chats[2], "gen_ai.usage.reasoning.output_tokens"),
        Some(Value::I64(5))
    );
    assert!(attr(chats[2], "gen_ai.response.id").is_some());
}

/// A call that fails on every attempt reports every attempt (not one `status=none` record).
#[tokio::test]
async fn a_call_failing_every_attempt_reports_each_one() {
    let (mock, run) = run_script(
        always(Step::http_error(500, json!({"error": {"message": "down"}}))),
        |p| {
            p.request_max_retries = Some(2);
            p.stream_max_retries = Some(1);
        },
    )
    .await;
    run.err();
    let attempts = run.attempts();
    // Layer 1: 3 HTTP requests per logical request; layer 2: 2 logical requests.
    assert_eq!(mock.request_count(), 6);
    assert_eq!(attempts.len(), 6);
    assert!(
        attempts
            .iter()
            .enumerate()
            .all(|(i, a)| a.attempt == i as u32 + 1
                && a.status == Some(500)
                && a.error_type.as_deref() == Some("500"))
    );
    let retried: Vec<bool> = attempts.iter().map(|a| a.retry_delay.is_some()).collect();
    assert_eq!(retried, [true, true, true, true, true, false]);
}

#[tokio::test]
async fn invalid_provider_settings_are_reported() {
    let p = ModelProviderInfo {
        name: "x".into(),
        base_url: Some("not a url".into()),
        ..Default::default()
    };
    let err = ModelClient::new(p, options()).unwrap_err();
    assert!(err.user_message().contains("base_url `not a url`"), "{err}");
    let mut p = ModelProviderInfo::default();
    p.http_headers.insert("bad header".into(), "v".into());
    let err = ModelClient::new(p, options()).unwrap_err();
    assert!(
        err.user_message()
            .contains("`bad header` is not a valid header name"),
        "{err}"
    );
}

#[tokio::test]
async fn response_headers_are_returned_with_the_outcome() {
    let mock = MockModel::start(Script::new([Step::message("ok")
        .with_header("x-codex-turn-state", "sticky-1")
        .with_header("x-codex-primary-used-percent", "42.5")]))
    .await;
    let client = ModelClient::new(provider(&mock), options()).unwrap();
    let (outcome, meta) = client
        .stream_with_meta(&prompt(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(outcome.items.len(), 1);
    assert_eq!(meta.turn_state(), Some("sticky-1"));
    assert_eq!(meta.header("x-codex-primary-used-percent"), Some("42.5"));
}

#[test]
fn caller_trace_headers_win_and_propagation_can_be_disabled() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mock = MockModel::start(Script::new([Step::message("a"), Step::message("b")])).await;
        let mut prompt = prompt();
        let given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        prompt
            .extra_headers
            .insert("traceparent", http::HeaderValue::from_static(given));
        prompt.extra_headers.insert(
            "tracestate",
            http::HeaderValue::from_static("quest=tier:gold"),
        );
        let client = ModelClient::new(provider(&mock), options()).unwrap();
        client.stream(&prompt, &mut |_| {}).await.unwrap();
        let off = ModelClient::new(
            provider(&mock),
            quest_model::ClientOptions {
                propagate_trace_context: false,
                ..options()
            },
        )
        .unwrap();
        off.stream(&prompt, &mut |_| {}).await.unwrap();
        let requests = mock.requests();
        assert_eq!(requests[0].header("traceparent"), Some(given));
        assert_eq!(requests[0].header("tracestate"), Some("quest=tier:gold"));
        assert_eq!(requests[1].header("traceparent"), None);
        assert_eq!(requests[1].header("tracestate"), None);
    });
}
