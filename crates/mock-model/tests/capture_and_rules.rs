//! Request capture, the pairing check and rules mode, over real TCP.

mod common;

use std::time::Duration;

use common::{body, events, post, post_text};
use quest_mock_model::{Condition, MockModel, Output, Rule, Script, Step};
use serde_json::{Value, json};

fn user(text: &str) -> Value {
    json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
}

fn done_items(text: &str) -> Vec<Value> {
    events(text)
        .into_iter()
        .filter(|e| e["type"] == "response.output_item.done")
        .map(|e| e["item"].clone())
        .collect()
}

#[tokio::test]
async fn every_request_is_recorded_with_headers_body_and_times() {
    let mock = MockModel::start(Script::new([Step::message("a"), Step::message("b")])).await;
    let first = body(json!([user("hello")]));
    post_text(&mock.responses_url(), &first).await;
    let second = body(json!([
        user("hello"),
        {"type": "function_call", "id": "fc_1", "call_id": "call_abc", "name": "exec_command", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_abc", "output": "hi\n"},
    ]));
    post_text(&format!("{}?api-version=1", mock.responses_url()), &second).await;

    assert_eq!(mock.request_count(), 2);
    let requests = mock.requests();
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/v1/responses");
    assert_eq!(requests[1].query.as_deref(), Some("api-version=1"));
    assert_eq!(requests[0].header("Authorization"), Some("Bearer sk-test"));
    assert_eq!(requests[0].body, first);
    assert_eq!(requests[1].index, 1);
    assert!(requests[1].received_at >= requests[0].received_at);
    assert!(requests[0].received_at_unix_ms > 1_700_000_000_000);
    assert_eq!(mock.gaps().len(), 1);
    assert_eq!(mock.input_items(1).len(), 3);
    assert_eq!(
        mock.function_call_output("call_abc").unwrap()["output"],
        "hi\n"
    );
    assert!(mock.function_call_output("call_nope").is_none());
    assert_eq!(requests[1].items_of_type("message").len(), 1);
    assert!(mock.pairing_violations().is_empty());
}

#[tokio::test]
#[should_panic(expected = "expected exactly one request, got 2")]
async fn single_request_fails_unless_exactly_one() {
    let mock = MockModel::start(Script::default()).await;
    post_text(&mock.responses_url(), &body(json!([]))).await;
    assert_eq!(mock.single_request().index, 0);
    post_text(&mock.responses_url(), &body(json!([]))).await;
    mock.single_request();
}

#[tokio::test]
async fn wait_for_requests_wakes_on_arrival_and_times_out() {
    let mock = MockModel::start(Script::default()).await;
    let url = mock.responses_url();
    let sender = tokio::spawn(async move {
        for _ in 0..3 {
            post_text(&url, &body(json!([]))).await;
        }
    });
    let requests = mock
        .wait_for_requests(3, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(requests.len(), 3);
    sender.await.unwrap();
    let error = mock
        .wait_for_requests(4, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "timed out after 50ms waiting for 4 request(s); 3 arrived"
    );
}

#[tokio::test]
async fn other_paths_and_bad_json_are_rejected_but_recorded_without_using_a_step() {
    let mock = MockModel::start(Script::new([Step::message("first")])).await;
    let client = common::client();
    // `GET /v1/models` is the model list now; any other path is refused.
    let status = client
        .get(format!("{}/embeddings", mock.uri()))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    let response = client
        .post(mock.responses_url())
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let (_, _, text) = post_text(&mock.responses_url(), &body(json!([]))).await;
    assert_eq!(done_items(&text)[0]["content"][0]["text"], "first");
    let answered: Vec<String> = mock.requests().into_iter().map(|r| r.answered_by).collect();
    assert_eq!(answered, ["not_found", "invalid_json", "steps[0]"]);
    let statuses: Vec<u16> = mock.requests().into_iter().map(|r| r.status).collect();
    assert_eq!(statuses, [404, 400, 200]);
}

#[tokio::test]
async fn unpaired_outputs_are_rejected_like_the_real_api_and_goal_outputs_pass() {
    let mock = MockModel::start(Script::new([Step::message("ok")])).await;
    let goal_item = json!({"type": "function_call_output", "id": "fco_1", "name": "goal_objective", "namespace": "agent", "output": "do it"});
    let orphan = json!({"type": "function_call_output", "call_id": "call_missing", "output": "x"});
    let (status, _, text) = post_text(
        &mock.responses_url(),
        &body(json!([user("hi"), goal_item.clone(), orphan])),
    )
    .await;
    assert_eq!(status, 400);
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        error["error"]["message"],
        "No tool call found for function call output with call_id call_missing."
    );
    assert_eq!(mock.pairing_violations(), [(0, "call_missing".to_owned())]);
    // The goal objective output has no call_id and is accepted; the step was not used up.
    let (status, _, text) =
        post_text(&mock.responses_url(), &body(json!([user("hi"), goal_item]))).await;
    assert_eq!(status, 200);
    assert_eq!(done_items(&text)[0]["content"][0]["text"], "ok");

    // With the check off, the request is answered but the violation is still visible.
    let mock = MockModel::start(Script::new([Step::message("ok")]).without_pairing_check()).await;
    let orphan = json!({"type": "custom_tool_call_output", "call_id": "call_p", "output": "x"});
    let (status, _, _) = post_text(&mock.responses_url(), &body(json!([orphan]))).await;
    assert_eq!(status, 200);
    assert_eq!(mock.pairing_violations(), [(0, "call_p".to_owned())]);
}

/// A long tool-using session driven by two rules: after a tool output, either finish (on the
/// 100th call) or call the tool again with the request number in the arguments.
#[tokio::test]
async fn rules_drive_a_long_session_without_a_hand_written_list() {
    let script = Script::new([Step::message("ready")])
        .with_rule(
            Rule::new(
                Condition {
                    last_output_contains: Some("round 100".into()),
                    ..Condition::default()
                },
                Step::update_goal("complete"),
            )
            .named("finish"),
        )
        .with_rule(Rule::new(
            Condition::last_item_type("function_call_output"),
            Step::items([Output::function_call(
                "exec_command",
                json!({"cmd": "echo round {match}"}),
            )
            .call_id("call_{n}")]),
        ))
        .with_rule(Rule::new(
            Condition::last_user_text_contains("start"),
            Step::function_call("exec_command", json!({"cmd": "echo round 0"})),
        ))
        .with_default(Step::message("unexpected"));
    let mock = MockModel::start(script).await;
    let url = mock.responses_url();

    // Request 1 uses the step list.
    let (_, _, text) = post_text(&url, &body(json!([user("hi")]))).await;
    assert_eq!(done_items(&text)[0]["content"][0]["text"], "ready");

    let client = common::client();
    let mut input = vec![user("start")];
    let mut finished = None;
    for _ in 0..150 {
        let (status, _, text) =
            common::post_text_with(&client, &url, &body(Value::Array(input.clone()))).await;
        assert_eq!(status, 200);
        let item = done_items(&text).remove(0);
        input.push(item.clone());
        let args: Value = serde_json::from_str(item["arguments"].as_str().unwrap()).unwrap();
        if item["name"] == "update_goal" {
            finished = Some(args);
            break;
        }
        let cmd = args["cmd"].as_str().unwrap();
        input.push(json!({"type": "function_call_output", "call_id": item["call_id"], "output": cmd.trim_start_matches("echo ")}));
    }
    assert_eq!(finished, Some(json!({"status": "complete"})));
    // 1 step + 1 start + 100 rounds + 1 finish
    assert_eq!(mock.request_count(), 103);
    let requests = mock.requests();
    assert_eq!(requests[2].answered_by, "rules[1]");
    assert_eq!(requests[102].answered_by, "finish");
    assert_eq!(mock.input_items(3)[3]["call_id"], "call_3");
    assert!(mock.pairing_violations().is_empty());
}

#[tokio::test]
async fn rules_respect_max_matches_and_fall_back_to_default() {
    let script = Script::default()
        .with_rule(Rule::always(Step::message("limited {match}")).at_most(2))
        .with_rule(Rule::new(
            Condition::input_contains("magic"),
            Step::message("magic seen in {n}"),
        ))
        .with_default(Step::message("fallback"));
    let mock = MockModel::start(script).await;
    let mut texts = Vec::new();
    for input in ["a", "b", "has magic", "c"] {
        let (_, _, text) = post_text(&mock.responses_url(), &body(json!([user(input)]))).await;
        texts.push(
            done_items(&text)[0]["content"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        texts,
        ["limited 1", "limited 2", "magic seen in 3", "fallback"]
    );
}

#[tokio::test]
async fn pushed_steps_are_served_after_the_script_steps() {
    let mock = MockModel::start(Script::new([Step::message("scripted")])).await;
    mock.push_step(Step::message("pushed"));
    let mut texts = Vec::new();
    for _ in 0..3 {
        let (_, _, text) = post_text(&mock.responses_url(), &body(json!([]))).await;
        texts.push(
            done_items(&text)[0]["content"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        texts,
        ["scripted", "pushed", "mock-model: script exhausted"]
    );
}

#[test]
fn blocking_server_answers_while_the_caller_blocks() {
    let mock = MockModel::start_blocking(Script::new([Step::message("from a thread")]));
    let url = mock.responses_url();
    let client = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async { post_text(&url, &body(json!([]))).await.2 })
    });
    let requests = mock
        .wait_for_requests_blocking(1, Duration::from_secs(10))
        .unwrap();
    assert_eq!(requests.len(), 1);
    assert!(client.join().unwrap().contains("from a thread"));
    assert!(
        mock.wait_for_requests_blocking(2, Duration::from_millis(20))
            .is_err()
    );
}

#[tokio::test]
async fn dropping_the_server_closes_the_port() {
    let mock = MockModel::start(Script::default()).await;
    let addr = mock.addr();
    post(&mock.responses_url(), &body(json!([])))
        .await
        .text()
        .await
        .unwrap();
    mock.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_each_get_one_step_in_arrival_order() {
    let steps: Vec<Step> = (0..20)
        .map(|i| Step::message(format!("step {i}")))
        .collect();
    let mock = MockModel::start(Script::new(steps)).await;
    let client = common::client();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = client.clone();
        let url = mock.responses_url();
        tasks.push(tokio::spawn(async move {
            let (_, _, text) = common::post_text_with(&client, &url, &body(json!([]))).await;
            done_items(&text)[0]["content"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        }));
    }
    let mut texts = Vec::new();
    for task in tasks {
        texts.push(task.await.unwrap());
    }
    texts.sort_by_key(|t| t.trim_start_matches("step ").parse::<u32>().unwrap());
    let expected: Vec<String> = (0..20).map(|i| format!("step {i}")).collect();
    assert_eq!(texts, expected);
    // The capture order is the order steps were handed out.
    let answered: Vec<String> = mock.requests().into_iter().map(|r| r.answered_by).collect();
    let expected: Vec<String> = (0..20).map(|i| format!("steps[{i}]")).collect();
    assert_eq!(answered, expected);
}

#[tokio::test]
async fn listed_steps_and_verbatim_rules_keep_braces_as_written() {
    let patch =
        "*** Begin Patch\n*** Add File: a.rs\n+fn f(n: u8) { println!(\"{n}\"); }\n*** End Patch\n";
    let script = Script::new([Step::apply_patch(patch)])
        .with_rule(Rule::always(Step::apply_patch(patch)).verbatim().at_most(1))
        .with_default(Step::message("request {n}"));
    let mock = MockModel::start(script).await;
    for _ in 0..2 {
        let (_, _, text) = post_text(&mock.responses_url(), &body(json!([]))).await;
        assert_eq!(done_items(&text)[0]["input"], patch);
    }
    let (_, _, text) = post_text(&mock.responses_url(), &body(json!([]))).await;
    assert_eq!(done_items(&text)[0]["content"][0]["text"], "request 3");
}

/// Items the mock streams, echoed back as input, decode as Quest's protocol items.
#[tokio::test]
async fn streamed_items_echoed_back_decode_as_protocol_items() {
    let usage = quest_protocol::TokenUsage {
        input_tokens: 1200,
        cached_input_tokens: 1000,
        output_tokens: 7,
        reasoning_output_tokens: 2,
        total_tokens: 1207,
    };
    let step = Step::calls([
        Output::reasoning("plan").encrypted("gAAAA"),
        Output::function_call("exec_command", json!({"cmd": "ls"})).call_id("c1"),
        Output::apply_patch("*** Begin Patch\n*** End Patch\n").call_id("c2"),
        Output::message("hi"),
    ])
    .with_usage(quest_mock_model::Usage::from(&usage));
    let mock = MockModel::start(Script::new([step, Step::message("done")])).await;
    let (_, _, text) = post_text(&mock.responses_url(), &body(json!([user("go")]))).await;
    let all = events(&text);
    assert_eq!(
        all.last().unwrap()["response"]["usage"],
        json!({"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 1000}, "output_tokens": 7,
               "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 1207})
    );
    let mut input = vec![user("go")];
    input.extend(done_items(&text));
    input.push(json!({"type": "function_call_output", "call_id": "c1", "output": "a\nb\n"}));
    input.push(json!({"type": "custom_tool_call_output", "call_id": "c2", "output": "Success."}));
    post_text(&mock.responses_url(), &body(Value::Array(input))).await;
    let typed = mock.request(1).unwrap().typed_input().unwrap();
    assert_eq!(typed.len(), 7);
    assert!(
        matches!(&typed[2], quest_protocol::ResponseItem::FunctionCall { call_id, .. } if call_id == "c1")
    );
}

#[tokio::test]
async fn an_invalid_rust_built_script_is_refused_at_start() {
    let step = Step::message("x").with_header("bad header", "v");
    let error = MockModel::builder(Script::new([step]))
        .start()
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "script: steps[0]: header name \"bad header\" is not valid"
    );
}
