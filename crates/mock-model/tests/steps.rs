//! Every step kind, over real TCP.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{body, events, frames, post, post_text, read_until_quiet, types};
use quest_mock_model::{
    End, Frame, MockModel, Output, Script, Step, Usage, ev_completed, ev_created, ev_message,
};
use serde_json::{Value, json};

fn hello() -> Value {
    body(
        json!([{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]),
    )
}

#[tokio::test]
async fn message_is_streamed_as_deltas_then_done_then_completed() {
    let mock = MockModel::start(Script::new([Step::message("Hello, world!").with_deltas(3)])).await;
    let (status, headers, text) = post_text(&mock.responses_url(), &hello()).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    let events = events(&text);
    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.output_item.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let deltas: String = events[2..5]
        .iter()
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "Hello, world!");
    assert_eq!(events[2]["item_id"], "msg_1_0");
    assert_eq!(
        events[5]["item"],
        json!({"type": "message", "role": "assistant", "id": "msg_1_0",
               "content": [{"type": "output_text", "text": "Hello, world!", "annotations": []}]})
    );
    assert_eq!(
        events[6],
        json!({"type": "response.completed", "response": {"id": "resp_1"}})
    );
    // every frame carries its event line
    assert!(frames(&text).iter().all(|f| f.event.is_some()));
}

#[tokio::test]
async fn message_without_added_event_and_without_ids() {
    let step = Step::message("x")
        .without_added()
        .without_ids()
        .without_created()
        .with_response_id("r9");
    let mock = MockModel::start(Script::new([step])).await;
    let (_, _, text) = post_text(&mock.responses_url(), &hello()).await;
    let events = events(&text);
    assert_eq!(
        types(&events),
        [
            "response.output_text.delta",
            "response.output_item.done",
            "response.completed"
        ]
    );
    assert!(events[0].get("item_id").is_none());
    assert!(events[1]["item"].get("id").is_none());
    assert_eq!(events[2]["response"]["id"], "r9");
}

#[tokio::test]
async fn function_call_arguments_are_a_json_string() {
    let mock = MockModel::start(Script::new([
        Step::function_call(
            "exec_command",
            json!({"cmd": "echo hi", "yield_time_ms": 2000}),
        ),
        Step::items([Output::function_call("exec_command", "{\"cmd\": \"ls\"}")
            .call_id("call_abc")
            .id("fc_1")]),
    ]))
    .await;
    let (_, _, text) = post_text(&mock.responses_url(), &hello()).await;
    let events = events(&text);
    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.output_item.added",
            "response.output_item.done",
            "response.completed"
        ]
    );
    assert_eq!(events[1]["item"]["arguments"], "");
    let item = &events[2]["item"];
    assert_eq!(item["type"], "function_call");
    assert_eq!(item["name"], "exec_command");
    assert_eq!(item["call_id"], "call_1_0");
    assert_eq!(item["id"], "fc_1_0");
    let args: Value = serde_json::from_str(item["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"cmd": "echo hi", "yield_time_ms": 2000}));

    let (_, _, text) = post_text(&mock.responses_url(), &hello()).await;
    let done = &common::events(&text)[2]["item"];
    assert_eq!(
        *done,
        json!({"type": "function_call", "id": "fc_1", "call_id": "call_abc", "name": "exec_command",
               "arguments": "{\"cmd\": \"ls\"}"})
    );
}

#[tokio::test]
async fn parallel_calls_patch_and_reasoning_in_one_response() {
    let step = Step::calls([
        Output::reasoning("thinking about it")
            .encrypted("gAAAA-opaque")
            .deltas(1),
        Output::function_call("exec_command", json!({"cmd": "a"})).call_id("call_a"),
        Output::function_call("exec_command", json!({"cmd": "b"})).call_id("call_b"),
        Output::apply_patch("*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n")
            .call_id("call_p"),
        Output::update_goal("complete"),
        Output::create_goal("ship it", Some(300)),
        Output::get_goal(),
    ])
    .with_usage(Usage::new(1200, 1000, 7, 3));
    let mock = MockModel::start(Script::new([step])).await;
    let (_, _, text) = post_text(&mock.responses_url(), &hello()).await;
    let events = events(&text);
    let done: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "response.output_item.done")
        .map(|e| &e["item"])
        .collect();
    assert_eq!(done.len(), 7);
    assert_eq!(
        *done[0],
        json!({"type": "reasoning", "id": "rs_1_0", "summary": [{"type": "summary_text", "text": "thinking about it"}],
               "content": null, "encrypted_content": "gAAAA-opaque"})
    );
    assert!(types(&events).contains(&"response.reasoning_summary_part.added".to_owned()));
    let summary_delta = events
        .iter()
        .find(|e| e["type"] == "response.reasoning_summary_text.delta")
        .unwrap();
    assert_eq!(summary_delta["delta"], "thinking about it");
    assert_eq!(summary_delta["summary_index"], 0);
    assert_eq!(done[1]["call_id"], "call_a");
    assert_eq!(done[2]["call_id"], "call_b");
    assert_eq!(
        *done[3],
        json!({"type": "custom_tool_call", "id": "ctc_1_3", "call_id": "call_p", "name": "apply_patch",
               "input": "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"})
    );
    assert_eq!(done[4]["name"], "update_goal");
    assert_eq!(done[4]["arguments"], "{\"status\":\"complete\"}");
    assert_eq!(
        done[5]["arguments"],
        "{\"objective\":\"ship it\",\"token_budget\":300}"
    );
    assert_eq!(done[6]["arguments"], "{}");
    // output_index follows item order
    let indexes: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "response.output_item.done")
        .map(|e| e["output_index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(
        events.last().unwrap()["response"]["usage"],
        json!({"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 1000}, "output_tokens": 7,
               "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 1207})
    );
}

#[tokio::test]
async fn usage_limit_429_has_the_exact_shape() {
    let mock = MockModel::start(Script::new([Step::usage_limit(
        Some("plus"),
        Some(1_795_518_360),
    )
    .with_header("x-codex-active-limit", "codex")]))
    .await;
    let (status, headers, text) = post_text(&mock.responses_url(), &hello()).await;
    assert_eq!(status, 429);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-codex-active-limit"], "codex");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["type"], "usage_limit_reached");
    assert_eq!(body["error"]["plan_type"], "plus");
    assert_eq!(body["error"]["resets_at"], 1_795_518_360);
    assert!(body["error"]["resets_in_seconds"].is_u64());
    assert_eq!(body["error"]["message"], "The usage limit has been reached");
}

#[tokio::test]
async fn http_errors_carry_retry_hints_and_raw_bodies() {
    let past = SystemTime::now() - Duration::from_secs(3600);
    let mock = MockModel::start(Script::new([
        Step::http_error(
            429,
            json!({"error": {"type": "rate_limit_exceeded", "message": "slow down"}}),
        )
        .retry_after_secs(3)
        .retry_after_ms(1500),
        Step::http_error(503, json!({"error": {"code": "server_is_overloaded"}}))
            .retry_after_date(past),
        Step::http_error(502, Value::Null).retry_after_date_in(-60),
        Step::http_error_raw(500, "upstream exploded", "text/html; charset=utf-8")
            .with_header("x-request-id", "req_123")
            .with_header("cf-ray", "ray-1"),
    ]))
    .await;
    let url = mock.responses_url();
    let (status, headers, text) = post_text(&url, &hello()).await;
    assert_eq!(
        (
            status,
            headers["retry-after"].to_str().unwrap(),
            headers["retry-after-ms"].to_str().unwrap()
        ),
        (429, "3", "1500")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["error"]["message"],
        "slow down"
    );

    let (status, headers, _) = post_text(&url, &hello()).await;
    assert_eq!(status, 503);
    let date = httpdate_parse(headers["retry-after"].to_str().unwrap());
    assert!(date < SystemTime::now());

    let (status, headers, text) = post_text(&url, &hello()).await;
    assert_eq!((status, text.as_str()), (502, ""));
    let date = httpdate_parse(headers["retry-after"].to_str().unwrap());
    let age = SystemTime::now().duration_since(date).unwrap();
    assert!(
        age >= Duration::from_secs(59) && age <= Duration::from_secs(62),
        "{age:?}"
    );

    let (status, headers, text) = post_text(&url, &hello()).await;
    assert_eq!((status, text.as_str()), (500, "upstream exploded"));
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["x-request-id"], "req_123");
    assert_eq!(headers["cf-ray"], "ray-1");
}

fn httpdate_parse(text: &str) -> SystemTime {
    httpdate::parse_http_date(text).unwrap_or_else(|e| panic!("bad HTTP date {text:?}: {e}"))
}

#[tokio::test]
async fn failed_incomplete_and_error_event_endings() {
    let mock = MockModel::start(Script::new([
        Step::failed(
            "rate_limit_exceeded",
            "Rate limit reached for gpt-5.5. Please try again in 2.5s.",
        ),
        Step::default().with_end(End::Failed {
            code: None,
            error_type: Some("usage_limit_reached".into()),
            message: Some("usage limit".into()),
        }),
        Step::incomplete("max_output_tokens"),
        Step::message("partial").with_end(End::ErrorEvent {
            code: Some("oops".into()),
            message: Some("bad".into()),
        }),
    ]))
    .await;
    let url = mock.responses_url();
    let last = |text: String| events(&text).last().cloned().unwrap();
    assert_eq!(
        last(post_text(&url, &hello()).await.2),
        json!({"type": "response.failed", "response": {"id": "resp_1", "error": {
            "code": "rate_limit_exceeded", "message": "Rate limit reached for gpt-5.5. Please try again in 2.5s."}}})
    );
    assert_eq!(
        last(post_text(&url, &hello()).await.2)["response"]["error"],
        json!({"type": "usage_limit_reached", "message": "usage limit"})
    );
    assert_eq!(
        last(post_text(&url, &hello()).await.2),
        json!({"type": "response.incomplete", "response": {"id": "resp_3", "incomplete_details": {"reason": "max_output_tokens"}}})
    );
    let text = post_text(&url, &hello()).await.2;
    let all = events(&text);
    assert_eq!(
        all.last().unwrap(),
        &json!({"type": "error", "code": "oops", "message": "bad"})
    );
    assert!(!types(&all).contains(&"response.completed".to_owned()));
}

#[tokio::test]
async fn cut_after_n_events_ends_the_body_cleanly_without_completed() {
    let mock = MockModel::start(Script::new([Step::message("abc")
        .with_deltas(3)
        .cut_after(2)]))
    .await;
    let mut response = post(&mock.responses_url(), &hello()).await;
    let (text, ended) = read_until_quiet(&mut response, Duration::from_secs(5)).await;
    assert_eq!(ended, Ok(true));
    assert_eq!(
        types(&events(&text)),
        ["response.created", "response.output_item.added"]
    );
}

#[tokio::test]
async fn abort_after_n_events_drops_the_connection() {
    let mock = MockModel::start(Script::new([Step::message("abc")
        .with_deltas(3)
        .abort_after(3)]))
    .await;
    let mut response = post(&mock.responses_url(), &hello()).await;
    let (text, ended) = read_until_quiet(&mut response, Duration::from_secs(5)).await;
    assert!(ended.is_err(), "body must fail, got {ended:?}");
    assert_eq!(events(&text).len(), 3);
}

#[tokio::test]
async fn stall_after_n_events_keeps_the_socket_open_until_shutdown() {
    let mock = MockModel::start(Script::new([Step::message("abc").stall_after(2)])).await;
    let mut response = post(&mock.responses_url(), &hello()).await;
    let (text, ended) = read_until_quiet(&mut response, Duration::from_millis(300)).await;
    assert_eq!(ended, Ok(false), "stream must stall, not end");
    assert_eq!(events(&text).len(), 2);
    // Stopping the server ends the stalled stream.
    let shutdown = tokio::spawn(mock.shutdown());
    let (_, ended) = read_until_quiet(&mut response, Duration::from_secs(5)).await;
    assert_ne!(ended, Ok(false));
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn delay_before_response_and_between_events() {
    let mock = MockModel::start(Script::new([
        Step::message("x").delay(Duration::from_millis(200)),
        Step::message("abcd")
            .with_deltas(4)
            .event_delay(Duration::from_millis(40)),
    ]))
    .await;
    let started = Instant::now();
    let response = post(&mock.responses_url(), &hello()).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    response.text().await.unwrap();

    let mut response = post(&mock.responses_url(), &hello()).await;
    let first = Instant::now();
    let mut chunks = 0;
    let mut text = String::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        chunks += 1;
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    // 8 frames: 7 gaps of 40 ms after the first frame.
    assert!(
        first.elapsed() >= Duration::from_millis(7 * 40 - 20),
        "{:?}",
        first.elapsed()
    );
    assert!(chunks >= 4, "frames arrive separately ({chunks} chunks)");
    assert_eq!(events(&text).len(), 8);
}

#[tokio::test]
async fn keep_open_after_completed_holds_the_body() {
    let mock = MockModel::start(Script::new([
        Step::message("x").keep_open(Duration::from_secs(30))
    ]))
    .await;
    let mut response = post(&mock.responses_url(), &hello()).await;
    let (text, ended) = read_until_quiet(&mut response, Duration::from_millis(300)).await;
    assert_eq!(ended, Ok(false));
    assert_eq!(types(&events(&text)).last().unwrap(), "response.completed");
}

#[tokio::test]
async fn data_only_frames_and_a_garbage_frame() {
    let mock = MockModel::start(Script::new([Step::message("x").data_only().garbage_at(1)])).await;
    let (_, _, text) = post_text(&mock.responses_url(), &hello()).await;
    let frames = frames(&text);
    assert!(frames.iter().all(|f| f.event.is_none()));
    assert_eq!(frames.len(), 6);
    assert!(serde_json::from_str::<Value>(&frames[1].data).is_err());
    assert_eq!(events(&text).len(), 5);
}

#[tokio::test]
async fn raw_events_and_custom_stream_headers() {
    let step = Step::events([
        Frame::Event(ev_created("r1")),
        Frame::Data(ev_message("m1", "hi")),
        Frame::Raw(": a comment\n\n".into()),
        Frame::Event(ev_completed("r1", None)),
    ])
    .with_header("x-codex-turn-state", "ts-1")
    .with_header("x-codex-primary-used-percent", "42.5");
    let mock = MockModel::start(Script::new([step])).await;
    let (_, headers, text) = post_text(&mock.responses_url(), &hello()).await;
    assert_eq!(headers["x-codex-turn-state"], "ts-1");
    assert_eq!(headers["x-codex-primary-used-percent"], "42.5");
    assert!(text.contains("\n\n: a comment\n\n"));
    assert_eq!(
        types(&events(&text)),
        [
            "response.created",
            "response.output_item.done",
            "response.completed"
        ]
    );
    assert_eq!(frames(&text)[1].event, None);
}

#[tokio::test]
async fn steps_then_default() {
    let mock = MockModel::start(
        Script::new([Step::message("one"), Step::message("two")])
            .with_default(Step::message("again")),
    )
    .await;
    let mut texts = Vec::new();
    for _ in 0..4 {
        let (_, _, text) = post_text(&mock.responses_url(), &hello()).await;
        let done = events(&text)
            .into_iter()
            .find(|e| e["type"] == "response.output_item.done")
            .unwrap();
        texts.push(
            done["item"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(texts, ["one", "two", "again", "again"]);
    let answered: Vec<String> = mock.requests().into_iter().map(|r| r.answered_by).collect();
    assert_eq!(answered, ["steps[0]", "steps[1]", "default", "default"]);

    // Without a default, a short message says the script is exhausted.
    let mock = MockModel::start(Script::default()).await;
    let (status, _, text) = post_text(&mock.uri().replace("/v1", "/responses"), &hello()).await;
    assert_eq!(status, 200);
    assert!(text.contains("mock-model: script exhausted"));
}
