//! Every row of the error/retry matrix (spec `model-wire.md` §4.2) against the mock server over
//! TCP, with a 10 ms backoff base: request counts, gaps between requests, the final error and
//! its user message, and the `Retrying` notices.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use quest_mock_model::{End, Script, Step};
use quest_model::{ModelClient, ModelError, ResponseEvent};
use serde_json::json;
use support::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn url(mock: &quest_mock_model::MockModel) -> String {
    mock.responses_url()
}

#[tokio::test]
async fn usage_limit_429_is_one_request_and_not_retried() {
    let resets_at = chrono::Utc::now().timestamp() + 3600;
    let (mock, run) = run_script(
        always(Step::usage_limit(Some("plus"), Some(resets_at)).retry_after_secs(1)),
        |_| {},
    )
    .await;
    assert_eq!(mock.request_count(), 1);
    let err = run.err();
    assert_eq!(
        *err,
        ModelError::UsageLimit {
            plan_type: Some("plus".into()),
            resets_at: Some(resets_at)
        }
    );
    assert!(err.is_usage_limit());
    assert_eq!(err.usage_limit_resets_at(), Some(resets_at));
    assert_eq!(err.codex_error_info(), json!("usageLimitExceeded"));
    let msg = err.user_message();
    assert!(
        msg.starts_with("You’ve hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro), visit https://chatgpt.com/settings/usage to purchase more credits or try again at "),
        "{msg}"
    );
    assert!(run.retries().is_empty());
}

#[tokio::test]
async fn usage_not_included_429_is_one_request() {
    let (mock, run) = run_script(
        always(Step::http_error(
            429,
            json!({"error":{"type":"usage_not_included"}}),
        )),
        |_| {},
    )
    .await;
    assert_eq!(mock.request_count(), 1);
    assert_eq!(
        run.err().user_message(),
        "To use Quest with your ChatGPT plan, upgrade to Plus: https://chatgpt.com/explore/plus."
    );
    assert!(run.err().is_usage_limit());
}

#[tokio::test]
async fn rate_limit_429_without_retry_after_is_not_retried_even_with_a_hint_in_the_message() {
    let (mock, run) = run_script(
        always(Step::http_error(
            429,
            json!({"error":{"type":"rate_limit_exceeded","message":"Rate limit reached. Please try again in 2.5s."}}),
        )),
        |_| {},
    )
    .await;
    assert_eq!(mock.request_count(), 1);
    assert_eq!(
        run.err().user_message(),
        "exceeded retry limit, last status: 429 Too Many Requests"
    );
    assert!(run.retries().is_empty());
}

#[tokio::test]
async fn rate_limit_429_with_retry_after_always_exhausts_stream_retries() {
    // Spec row: `Retry-After: 1` always → 6 requests, gaps ≈1 s. Budget lowered to 2 retries.
    let (mock, run) = run_script(
        always(
            Step::http_error(429, json!({"error":{"type":"rate_limit_exceeded"}}))
                .retry_after_secs(1),
        ),
        |p| p.stream_max_retries = Some(2),
    )
    .await;
    assert_eq!(mock.request_count(), 3);
    assert_gaps(&mock.gaps(), &[MS(1000), MS(1000)]);
    let reason = "exceeded retry limit, last status: 429 Too Many Requests";
    assert_eq!(run.err().user_message(), reason);
    assert_eq!(
        run.retries(),
        vec![
            (1, 2, MS(1000), reason.to_string()),
            (2, 2, MS(1000), reason.to_string())
        ]
    );
}

#[tokio::test]
async fn rate_limit_429_with_retry_after_once_then_success() {
    let script = Script::new([
        Step::http_error(429, json!({"error":{"type":"rate_limit_exceeded"}})).retry_after_secs(1),
        Step::message("ok"),
    ]);
    let (mock, run) = run_script(script, |_| {}).await;
    assert_eq!(mock.request_count(), 2);
    assert_gaps(&mock.gaps(), &[MS(1000)]);
    assert_eq!(run.ok().http_requests, 2);
    assert_eq!(run.retries().len(), 1);
}

#[tokio::test]
async fn rate_limit_429_with_past_http_date_retries_at_once() {
    let script = Script::new([
        Step::http_error(429, json!({"error":{"type":"rate_limit_exceeded"}}))
            .retry_after_date_in(-30),
        Step::message("ok"),
    ]);
    let (mock, run) = run_script(script, |_| {}).await;
    assert_eq!(mock.request_count(), 2);
    assert_gaps(&mock.gaps(), &[MS(0)]);
    run.ok();
    assert_eq!(run.retries()[0].2, Duration::ZERO);
}

#[tokio::test]
async fn retry_after_ms_is_honoured_quest_deviation() {
    // Codex ignores `retry-after-ms` (1 request); Quest honours it.
    let (mock, run) = run_script(
        always(
            Step::http_error(429, json!({"error":{"type":"rate_limit_exceeded"}}))
                .retry_after_ms(150),
        ),
        |p| p.stream_max_retries = Some(3),
    )
    .await;
    assert_eq!(mock.request_count(), 4);
    assert_gaps(&mock.gaps(), &[MS(150), MS(150), MS(150)]);
    assert_eq!(
        run.err().user_message(),
        "exceeded retry limit, last status: 429 Too Many Requests"
    );
}

/// Issue 17: a hint longer than `max_retry_delay` is clamped to it (it used to fail the call;
/// values beyond what a `Duration` holds panicked the task).
#[tokio::test]
async fn server_hints_longer_than_max_retry_delay_are_clamped() {
    for (name, value) in [
        ("retry-after", "300"),
        ("retry-after", "1e30"),
        ("retry-after", "18446744073709551616"),
        ("retry-after", "inf"),
        ("retry-after-ms", "1e30"),
    ] {
        let mock = quest_mock_model::MockModel::start(always(
            Step::http_error(429, json!({"error":{"type":"rate_limit_exceeded"}}))
                .with_header(name, value),
        ))
        .await;
        let mut opts = options();
        opts.max_retry_delay = MS(150);
        let mut p = provider(&mock);
        p.stream_max_retries = Some(2);
        let client = ModelClient::new(p, opts).unwrap();
        let run = run_with(&client, &prompt()).await;
        assert_eq!(mock.request_count(), 3, "{name}: {value}");
        assert_gaps(&mock.gaps(), &[MS(150), MS(150)]);
        assert_eq!(
            run.err().user_message(),
            "exceeded retry limit, last status: 429 Too Many Requests",
            "{name}: {value}"
        );
        let delays: Vec<Duration> = run.retries().iter().map(|r| r.2).collect();
        assert_eq!(delays, [MS(150), MS(150)], "{name}: {value}");
    }
}

/// The transport layer clamps a 5xx hint the same way.
#[tokio::test]
async fn transport_retry_hint_on_5xx_is_clamped() {
    let mock = quest_mock_model::MockModel::start(
        Script::new([Step::http_error(503, json!({"error":{"message":"busy"}}))
            .with_header("retry-after", "1e30")])
        .with_default(Step::message("ok")),
    )
    .await;
    let mut opts = options();
    opts.max_retry_delay = MS(100);
    let client = ModelClient::new(provider(&mock), opts).unwrap();
    let run = run_with(&client, &prompt()).await;
    run.ok();
    assert_eq!(mock.request_count(), 2);
    assert_gaps(&mock.gaps(), &[MS(100)]);
}

/// "try again in N s" with an absurd N in a `response.failed` is clamped as well.
#[tokio::test]
async fn huge_try_again_in_hint_is_clamped() {
    let mock = quest_mock_model::MockModel::start(
        Script::new([Step::failed(
            "rate_limit_exceeded",
            "Rate limit reached. Please try again in 99999999999999999999999999s.",
        )])
        .with_default(Step::message("ok")),
    )
    .await;
    let mut opts = options();
    opts.max_retry_delay = MS(100);
    let client = ModelClient::new(provider(&mock), opts).unwrap();
    let run = run_with(&client, &prompt()).await;
    run.ok();
    assert_eq!(mock.request_count(), 2);
    assert_eq!(run.retries()[0].2, MS(100));
}

/// Gaps of `turns` layer-2 attempts, each made of `1 + transport` HTTP attempts.
fn layered_gaps(turns: u32, transport: u32) -> Vec<Duration> {
    let mut gaps = Vec::new();
    for turn in 1..=turns {
        for n in 1..=transport {
            gaps.push(turn_backoff(n));
        }
        if turn < turns {
            gaps.push(turn_backoff(turn));
        }
    }
    gaps
}

#[tokio::test]
async fn http_500_is_30_requests_then_high_demand() {
    let (mock, run) = run_script(
        always(Step::http_error(500, json!({"error":{"message":"boom"}}))),
        |_| {},
    )
    .await;
    assert_eq!(mock.request_count(), 30);
    assert_gaps(&mock.gaps(), &layered_gaps(6, 4));
    let err = run.err();
    assert_eq!(
        err.user_message(),
        "We’re currently experiencing high demand, which may cause temporary errors."
    );
    assert_eq!(err.codex_error_info(), json!("internalServerError"));
    let retries = run.retries();
    assert_eq!(retries.len(), 5);
    assert_eq!(retries[4].0, 5);
    assert_eq!(retries[4].1, 5);
}

#[tokio::test]
async fn http_502_and_503_plain_are_30_requests_then_unexpected_status() {
    for (status, text) in [(502, "502 Bad Gateway"), (503, "503 Service Unavailable")] {
        let (mock, run) = run_script(
            always(Step::http_error(
                status,
                json!({"error":{"message":"upstream down"}}),
            )),
            |_| {},
        )
        .await;
        assert_eq!(mock.request_count(), 30, "{status}");
        assert_eq!(
            run.err().user_message(),
            format!(
                "unexpected status {text}: upstream down, url: {}",
                url(&mock)
            )
        );
    }
}

#[tokio::test]
async fn http_503_overloaded_gets_transport_retries_only() {
    for code in ["server_is_overloaded", "slow_down"] {
        let (mock, run) = run_script(
            always(Step::http_error(
                503,
                json!({"error":{"code":code,"message":"busy"}}),
            )),
            |_| {},
        )
        .await;
        assert_eq!(mock.request_count(), 5, "{code}");
        assert_gaps(&mock.gaps(), &layered_gaps(1, 4));
        assert_eq!(
            run.err().user_message(),
            "Selected model is at capacity. Please try a different model."
        );
        assert!(run.retries().is_empty());
    }
}

#[tokio::test]
async fn http_503_retry_after_without_transport_retries_is_honoured_by_layer_two() {
    let (mock, run) = run_script(
        always(Step::http_error(503, json!({"error":{"message":"later"}})).retry_after_secs(1)),
        |p| {
            p.request_max_retries = Some(0);
            p.stream_max_retries = Some(2);
        },
    )
    .await;
    assert_eq!(mock.request_count(), 3);
    assert_gaps(&mock.gaps(), &[MS(1000), MS(1000)]);
    assert!(
        run.err()
            .user_message()
            .starts_with("unexpected status 503 Service Unavailable: later, url: ")
    );
}

#[tokio::test]
async fn http_503_retry_after_three_times_then_ok_is_silent() {
    let step = || Step::http_error(503, json!({"error":{"message":"later"}})).retry_after_secs(1);
    let script = Script::new([step(), step(), step(), Step::message("ok")]);
    let (mock, run) = run_script(script, |_| {}).await;
    assert_eq!(mock.request_count(), 4);
    assert_gaps(&mock.gaps(), &[MS(1000), MS(1000), MS(1000)]);
    assert_eq!(run.ok().http_requests, 4);
    assert!(run.retries().is_empty(), "transport retries are silent");
}

#[tokio::test]
async fn http_401_403_404_are_retried_at_layer_two_only() {
    for (status, text) in [
        (401, "401 Unauthorized"),
        (403, "403 Forbidden"),
        (404, "404 Not Found"),
    ] {
        let (mock, run) = run_script(
            always(
                Step::http_error(status, json!({"error":{"message":"nope"}}))
                    .with_header("x-request-id", "req_1"),
            ),
            |_| {},
        )
        .await;
        assert_eq!(mock.request_count(), 6, "{status}");
        assert_gaps(&mock.gaps(), &(1..=5).map(turn_backoff).collect::<Vec<_>>());
        assert_eq!(
            run.err().user_message(),
            format!(
                "unexpected status {text}: nope, url: {}, request id: req_1",
                url(&mock)
            )
        );
    }
}

#[tokio::test]
async fn http_400_is_one_request_with_the_raw_body() {
    let body = r#"{"error": {"type": "invalid_request_error", "message": "bad input"}}"#;
    let (mock, run) = run_script(
        always(Step::http_error_raw(400, body, "application/json")),
        |_| {},
    )
    .await;
    assert_eq!(mock.request_count(), 1);
    assert_eq!(run.err().user_message(), body);
    assert_eq!(run.err().codex_error_info(), json!("badRequest"));
}

#[tokio::test]
async fn http_400_context_length_exceeded_is_the_context_window_error() {
    let body = r#"{"error": {"type": "invalid_request_error", "code": "context_length_exceeded", "message": "Your input exceeds the context window of this model."}}"#;
    let (mock, run) = run_script(
        always(Step::http_error_raw(400, body, "application/json")),
        |_| {},
    )
    .await;
    assert_eq!(mock.request_count(), 1);
    assert!(
        matches!(run.err(), ModelError::ContextWindowExceeded),
        "{:?}",
        run.err()
    );
    assert_eq!(run.err().codex_error_info(), json!("contextWindowExceeded"));
}

#[tokio::test]
async fn sse_cut_before_completed_is_six_requests() {
    let (mock, run) = run_script(always(Step::message("partial").cut_after(2)), |_| {}).await;
    assert_eq!(mock.request_count(), 6);
    assert_gaps(&mock.gaps(), &(1..=5).map(turn_backoff).collect::<Vec<_>>());
    let msg = "stream disconnected before completion: stream closed before response.completed";
    assert_eq!(run.err().user_message(), msg);
    let retries = run.retries();
    assert_eq!(retries.len(), 5);
    assert!(retries.iter().all(|r| r.3 == msg && r.1 == 5));
    assert_eq!(
        retries.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
}

#[tokio::test]
async fn aborted_connection_is_a_stream_error_and_retried() {
    let (mock, run) = run_script(always(Step::message("partial").abort_after(2)), |p| {
        p.stream_max_retries = Some(1)
    })
    .await;
    assert_eq!(mock.request_count(), 2);
    assert!(
        run.err()
            .user_message()
            .starts_with("stream disconnected before completion: "),
        "{}",
        run.err()
    );
}

#[tokio::test]
async fn sse_idle_timeout_retries_after_idle_plus_backoff() {
    let (mock, run) = run_script(always(Step::message("x").stall_after(1)), |p| {
        p.stream_idle_timeout_ms = Some(300);
        p.stream_max_retries = Some(2);
    })
    .await;
    assert_eq!(mock.request_count(), 3);
    assert_gaps(
        &mock.gaps(),
        &[MS(300) + turn_backoff(1), MS(300) + turn_backoff(2)],
    );
    assert_eq!(
        run.err().user_message(),
        "stream disconnected before completion: idle timeout waiting for SSE"
    );
}

#[tokio::test]
async fn response_failed_server_error_is_six_requests() {
    let (mock, run) = run_script(
        always(Step::failed("server_error", "the server broke")),
        |_| {},
    )
    .await;
    assert_eq!(mock.request_count(), 6);
    assert_gaps(&mock.gaps(), &(1..=5).map(turn_backoff).collect::<Vec<_>>());
    assert_eq!(
        run.err().user_message(),
        "stream disconnected before completion: the server broke"
    );
}

#[tokio::test]
async fn response_failed_rate_limit_waits_the_hinted_delay_then_succeeds() {
    let message = "Rate limit reached for gpt-5.5. Please try again in 0.3s.";
    let script = Script::new([
        Step::failed("rate_limit_exceeded", message),
        Step::message("ok"),
    ]);
    let (mock, run) = run_script(script, |_| {}).await;
    assert_eq!(mock.request_count(), 2);
    assert_gaps(&mock.gaps(), &[MS(300)]);
    run.ok();
    assert_eq!(
        run.retries(),
        vec![(1, 5, MS(300), format!("rate limit exceeded: {message}"))]
    );
}

#[tokio::test]
async fn response_failed_fixed_errors_are_one_request() {
    let cases: [(&str, &str); 3] = [
        (
            "context_length_exceeded",
            "Quest ran out of room in the model's context window. Start a new thread or clear earlier history before retrying.",
        ),
        (
            "insufficient_quota",
            "Quota exceeded. Check your plan and billing details.",
        ),
        (
            "usage_not_included",
            "To use Quest with your ChatGPT plan, upgrade to Plus: https://chatgpt.com/explore/plus.",
        ),
    ];
    for (code, message) in cases {
        let (mock, run) = run_script(always(Step::failed(code, "server text")), |_| {}).await;
        assert_eq!(mock.request_count(), 1, "{code}");
        assert_eq!(run.err().user_message(), message);
        assert!(run.retries().is_empty());
    }
}

#[tokio::test]
async fn response_failed_usage_limit_is_a_usage_limit_quest_deviation() {
    // Codex retries this six times as a stream error; Quest stops after one request.
    for end in [
        End::Failed {
            code: Some("usage_limit_reached".into()),
            error_type: None,
            message: Some("usage limit".into()),
        },
        End::Failed {
            code: None,
            error_type: Some("usage_limit_reached".into()),
            message: Some("usage limit".into()),
        },
    ] {
        let (mock, run) = run_script(always(Step::message("x").with_end(end)), |_| {}).await;
        assert_eq!(mock.request_count(), 1);
        assert!(run.err().is_usage_limit());
        assert_eq!(
            run.err().user_message(),
            "You’ve hit your usage limit. Try again later."
        );
    }
}

#[tokio::test]
async fn response_incomplete_is_one_request() {
    let (mock, run) = run_script(always(Step::incomplete("max_output_tokens")), |_| {}).await;
    assert_eq!(mock.request_count(), 1);
    assert_eq!(
        run.err().user_message(),
        "Incomplete response returned, reason: max_output_tokens"
    );
}

#[tokio::test]
async fn top_level_error_event_then_eof_is_six_requests() {
    let (mock, run) = run_script(always(Step::error_event("something")), |_| {}).await;
    assert_eq!(mock.request_count(), 6);
    assert_eq!(
        run.err().user_message(),
        "stream disconnected before completion: stream closed before response.completed"
    );
}

#[tokio::test]
async fn connection_refused_is_bounded_by_transport_retries() {
    // Bind then drop a listener so the port is (almost certainly) closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let p = quest_model::ModelProviderInfo {
        name: "closed".into(),
        base_url: Some(format!("http://127.0.0.1:{port}/v1")),
        request_max_retries: Some(2),
        ..Default::default()
    };
    let client = ModelClient::new(p, options()).unwrap();
    let run = run_with(&client, &prompt()).await;
    let msg = run.err().user_message();
    assert!(msg.starts_with("Connection failed: "), "{msg}");
    assert_eq!(
        run.err().codex_error_info(),
        json!({"httpConnectionFailed":{"httpStatusCode":null}})
    );
    assert!(run.retries().is_empty());
    // Two transport backoffs (10 ms + 20 ms, ±10 %) were waited.
    assert!(run.elapsed >= MS(26), "{:?}", run.elapsed);
}

#[tokio::test]
async fn cut_stream_retry_resends_received_items_and_outcome_keeps_them() {
    let script = Script::new([
        // Frames: created, added, delta, done, completed → cut after the item is done.
        Step::message("first part").cut_after(4),
        Step::message("second part").with_response_id("resp_final"),
    ]);
    let (mock, run) = run_script(script, |_| {}).await;
    assert_eq!(mock.request_count(), 2);
    let first = mock.input_items(0);
    let second = mock.input_items(1);
    assert_eq!(second.len(), first.len() + 1);
    assert_eq!(second[..first.len()], first[..]);
    let echoed = &second[first.len()];
    assert_eq!(echoed["type"], "message");
    assert_eq!(echoed["role"], "assistant");
    assert_eq!(echoed["content"][0]["text"], "first part");
    let outcome = run.ok();
    assert_eq!(outcome.response_id, "resp_final");
    let texts: Vec<_> = outcome
        .items
        .iter()
        .map(|i| i.message_text().unwrap())
        .collect();
    assert_eq!(texts, vec!["first part", "second part"]);
    assert!(matches!(
        run.events
            .iter()
            .find(|e| matches!(e, ResponseEvent::Retrying { .. })),
        Some(ResponseEvent::Retrying {
            attempt: 1,
            max_attempts: 5,
            ..
        })
    ));
}

#[tokio::test]
async fn server_silent_before_headers_times_out_after_transport_retries() {
    let (mock, run) = run_script(
        always(Step::message("late").delay(Duration::from_secs(3))),
        |p| {
            p.stream_idle_timeout_ms = Some(200);
            p.request_max_retries = Some(1);
        },
    )
    .await;
    assert_eq!(mock.request_count(), 2);
    assert_eq!(
        run.err().user_message(),
        "Connection failed: timed out waiting for response headers"
    );
    assert!(run.retries().is_empty());
}

/// `message` then `response.completed` whose `response` is `completed` written verbatim.
fn completed_raw(response: &str) -> Step {
    Step::events([
        quest_mock_model::Frame::Event(json!({
            "type": "response.output_item.done",
            "item": {"type":"message","role":"assistant","id":"msg_1","content":[{"type":"output_text","text":"hi"}]}
        })),
        quest_mock_model::Frame::Raw(format!(
            "event: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{response}}}\n\n"
        )),
    ])
}

/// Issue 17: `null` counts, integral floats and counts beyond i64 are accepted (they used to be
/// a "cut stream", retried five times).
#[tokio::test]
async fn usage_with_nulls_floats_and_huge_counts_completes_in_one_request() {
    let (mock, run) = run_script(
        always(completed_raw(
            r#"{"id":"resp_1","usage":{"input_tokens":12,"input_tokens_details":{"cached_tokens":null},"output_tokens":5.0,"output_tokens_details":{"reasoning_tokens":null},"total_tokens":99999999999999999999999}}"#,
        )),
        |_| {},
    )
    .await;
    assert_eq!(mock.request_count(), 1);
    let outcome = run.ok();
    assert_eq!(outcome.usage.input_tokens, 12);
    assert_eq!(outcome.usage.cached_input_tokens, 0);
    assert_eq!(outcome.usage.output_tokens, 5);
    assert_eq!(outcome.usage.total_tokens, i64::MAX);
    assert!(run.retries().is_empty());
}

/// A `response.completed` that is truly malformed fails at once with the event and the field.
#[tokio::test]
async fn malformed_completed_fails_once_naming_event_and_field() {
    let (mock, run) = run_script(
        always(completed_raw(
            r#"{"id":"resp_1","usage":{"input_tokens":12,"output_tokens":"many"}}"#,
        )),
        |_| {},
    )
    .await;
    assert_eq!(mock.request_count(), 1);
    assert_eq!(
        run.err().user_message(),
        "the server sent a malformed `response.completed` event: `response.usage.output_tokens`: invalid type: string \"many\", expected a token count (a whole number or null)"
    );
    assert!(run.retries().is_empty());
}

/// A 200 answer that is a JSON document is reported as such, not as a cut stream.
#[tokio::test]
async fn json_document_instead_of_sse_is_reported_as_such() {
    let (mock, run) = run_script(
        always(Step::http_error(
            200,
            json!({"id":"resp_1","object":"response","output":[]}),
        )),
        |_| {},
    )
    .await;
    assert_eq!(mock.request_count(), 1);
    assert_eq!(
        run.err().user_message(),
        "the server answered 200 OK with `application/json` instead of a stream of server-sent events: {\"id\":\"resp_1\",\"object\":\"response\",\"output\":[]}"
    );
    // An error document carries its message; a JSON body with another content type is
    // recognised by its shape.
    let (mock, run) = run_script(
        always(Step::http_error_raw(
            200,
            r#"  {"error":{"message":"stream not supported here"}}"#,
            "text/plain",
        )),
        |_| {},
    )
    .await;
    assert_eq!(mock.request_count(), 1);
    assert_eq!(
        run.err().user_message(),
        "the server answered 200 OK with `text/plain` instead of a stream of server-sent events: stream not supported here"
    );
    assert_eq!(run.err().error_type(), "not_event_stream");
}
