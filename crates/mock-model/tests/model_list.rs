//! `GET /v1/models`: the scripted model list, its failure modes, and its requests recorded apart
//! from model calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{body, client, post_text};
use quest_mock_model::{MockModel, ModelList, Script, Step};
use serde_json::{Value, json};

async fn get(url: &str) -> (u16, String) {
    let response = client()
        .get(url)
        .header("authorization", "Bearer sk-test")
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn serves_the_scripted_list_and_records_it_apart_from_model_calls() {
    let script = Script::new([Step::message("hi")])
        .with_models(ModelList::with_context_window("local-llm", 20_000));
    let mock = MockModel::start(script).await;
    let (status, text) = get(&format!("{}/models", mock.uri())).await;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        list,
        json!({"object": "list", "data": [{
            "id": "local-llm", "object": "model", "owned_by": "mock-model", "context_window": 20_000
        }]})
    );
    // The bare path answers too.
    let (status, _) = get(&format!("http://{}/models", mock.addr())).await;
    assert_eq!(status, 200);

    // A model call still gets the first step, and counts alone.
    let (status, _, _) = post_text(&mock.responses_url(), &body(json!([]))).await;
    assert_eq!(status, 200);
    assert_eq!(mock.request_count(), 1);
    assert_eq!(mock.single_request().answered_by, "steps[0]");
    let listed = mock.model_list_requests();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].method, "GET");
    assert_eq!(listed[0].path, "/v1/models");
    assert_eq!(listed[0].header("authorization"), Some("Bearer sk-test"));
    assert_eq!(listed[0].answered_by, "models");
    assert_eq!(listed[1].index, 1);
}

#[tokio::test]
async fn without_a_script_list_the_list_is_empty() {
    let mock = MockModel::start(Script::default()).await;
    let (status, text) = get(&format!("{}/models", mock.uri())).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"object": "list", "data": []})
    );
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn errors_garbage_and_delays_are_scriptable() {
    let mock = MockModel::start(Script::default().with_models(ModelList::status(404))).await;
    let (status, text) = get(&format!("{}/models", mock.uri())).await;
    assert_eq!(status, 404);
    assert!(text.contains("model list unavailable"), "{text}");

    let mock = MockModel::start(Script::default().with_models(ModelList::raw("<html>oops"))).await;
    assert_eq!(
        get(&format!("{}/models", mock.uri())).await,
        (200, "<html>oops".to_string())
    );

    let mock = MockModel::start(
        Script::default().with_models(ModelList::with_context_window("m", 1).delayed(300)),
    )
    .await;
    let started = Instant::now();
    let (status, _) = get(&format!("{}/models", mock.uri())).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn script_files_take_a_models_table_and_reject_bad_statuses() {
    let script = Script::parse_toml(
        "[models]\ndata = [{ id = \"local-llm\", max_model_len = 8192 }]\ndelay_ms = 5\n",
        "models.toml",
    )
    .unwrap();
    let models = script.models.unwrap();
    assert_eq!(
        models.data,
        [json!({"id": "local-llm", "max_model_len": 8192})]
    );
    assert_eq!(models.delay_ms, 5);

    let err = Script::parse_toml("[models]\nstatus = 5\n", "bad.toml")
        .and_then(|script| script.validate("bad.toml").map(|()| script))
        .unwrap_err()
        .to_string();
    assert!(err.contains("models") && err.contains("status"), "{err}");
    let err = Script::parse_toml("[models]\nentries = []\n", "bad.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("entries"), "{err}");
}
