//! The simulated context window: usage follows request size, and requests that do not fit are
//! refused with `context_length_exceeded` without using up the script.

// Helpers outside `#[test]` functions unwrap too: a failed request must fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{body, client, events};
use quest_mock_model::{Condition, ContextModel, MockModel, Rule, Script, Step, Usage};
use serde_json::{Value, json};

fn user(text: &str) -> Value {
    json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
}

fn completed_usage(text: &str) -> Value {
    events(text)
        .into_iter()
        .find(|e| e["type"] == "response.completed")
        .map(|e| e["response"]["usage"].clone())
        .unwrap_or(Value::Null)
}

async fn post_with_kind(url: &str, body: &Value, kind: &str) -> String {
    let metadata = json!({"request_kind": kind, "turn_id": "t"}).to_string();
    client()
        .post(url)
        .header("content-type", "application/json")
        .header("x-codex-turn-metadata", metadata)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn usage_grows_with_input_and_oversized_requests_are_refused() {
    let script = Script::new([
        Step::message("one"),
        Step::message("two").with_usage(Usage::new(0, 0, 7, 0)),
    ])
    .with_default(Step::message("more"))
    .with_context(ContextModel::with_window(300));
    let mock = MockModel::start(script).await;
    let url = mock.responses_url();

    let small = body(json!([user("hi")]));
    let text = post_with_kind(&url, &small, "turn").await;
    let expected = (small["input"].to_string().len() / 4) as u64;
    let usage = completed_usage(&text);
    assert_eq!(usage["input_tokens"], json!(expected), "{text}");
    assert_eq!(usage["output_tokens"], json!(50));

    // Four times the text: more input tokens; the step's own output count is kept.
    let bigger = body(json!([user(&"x".repeat(400))]));
    let text = post_with_kind(&url, &bigger, "turn").await;
    let usage = completed_usage(&text);
    let bigger_tokens = usage["input_tokens"].as_u64().unwrap();
    assert!(bigger_tokens > expected && bigger_tokens <= 300, "{usage}");
    assert_eq!(usage["output_tokens"], json!(7));

    // Over the window: refused, and the default step is still what answers next.
    let huge = body(json!([user(&"y".repeat(2000))]));
    let text = post_with_kind(&url, &huge, "turn").await;
    let failed = events(&text)
        .into_iter()
        .find(|e| e["type"] == "response.failed")
        .expect("response.failed");
    assert_eq!(
        failed["response"]["error"]["code"],
        "context_length_exceeded"
    );
    let requests = mock.requests();
    assert_eq!(requests[2].answered_by, "context_window");
    assert!(requests[2].input_tokens.unwrap() > 300);
    assert_eq!(requests[0].input_tokens, Some(expected));
    let text = post_with_kind(&url, &small, "turn").await;
    assert!(text.contains("more"), "{text}");
}

#[tokio::test]
async fn rules_match_on_request_kind() {
    let script = Script::default()
        .with_rule(Rule::new(
            Condition::request_kind("compaction"),
            Step::message("SUMMARY"),
        ))
        .with_default(Step::message("ordinary"));
    let mock = MockModel::start(script).await;
    let url = mock.responses_url();
    let request = body(json!([user("hi")]));
    assert!(
        post_with_kind(&url, &request, "turn")
            .await
            .contains("ordinary")
    );
    assert!(
        post_with_kind(&url, &request, "compaction")
            .await
            .contains("SUMMARY")
    );
    // No metadata header at all: not a compaction.
    let text = client()
        .post(&url)
        .body(request.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("ordinary"), "{text}");
}

#[test]
fn context_model_is_validated_and_parses_from_toml() {
    let script =
        Script::parse_toml("[context]\nwindow = 1000\nbytes_per_token = 3\n", "inline").unwrap();
    assert_eq!(
        script.context,
        Some(ContextModel {
            bytes_per_token: 3,
            window: Some(1000),
            output_tokens: 50
        })
    );
    let err = Script::parse_toml("[context]\nbytes_per_token = 0\n", "inline").unwrap_err();
    assert!(err.to_string().contains("bytes_per_token"), "{err}");
}
