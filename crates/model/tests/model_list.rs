//! The provider's model list (`GET {base_url}/models`) against the mock server over TCP: what is
//! sent, and every way the answer can fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use quest_mock_model::{MockModel, ModelList, Script};
use quest_model::{ListedWindow, ModelClient, ModelListError};
use serde_json::json;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(30);

async fn client_for(models: ModelList) -> (MockModel, ModelClient) {
    let mock = MockModel::start(Script::default().with_models(models)).await;
    let mut provider = provider(&mock);
    provider.query_params = [("api-version".to_string(), "2025-01-01".to_string())].into();
    provider.http_headers = [("x-tenant".to_string(), "acme".to_string())].into();
    let client = ModelClient::new(provider, options()).unwrap();
    (mock, client)
}

#[tokio::test]
async fn reads_the_window_with_the_providers_key_headers_and_query() {
    let (mock, client) = client_for(ModelList::with_context_window("local-llm", 20_000)).await;
    assert_eq!(
        client.model_list_url(),
        format!("{}/models?api-version=2025-01-01", mock.uri())
    );
    let window = client.listed_context_window("local-llm", TIMEOUT).await;
    assert_eq!(window, Ok(ListedWindow::Window(20_000)));
    let listed = mock.model_list_requests();
    assert_eq!(listed.len(), 1);
    let request = &listed[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", "/v1/models")
    );
    assert_eq!(request.query.as_deref(), Some("api-version=2025-01-01"));
    assert_eq!(request.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(request.header("x-tenant"), Some("acme"));
    assert_eq!(request.header("accept"), Some("application/json"));
    assert_eq!(request.header("content-type"), None);
    assert_eq!(mock.request_count(), 0, "no model call was made");

    assert_eq!(
        client.listed_context_window("other", TIMEOUT).await,
        Ok(ListedWindow::NotListed)
    );
}

#[tokio::test]
async fn a_vllm_style_entry_without_the_usual_field_is_read_too() {
    let models = ModelList {
        data: vec![
            json!({"id": "qwen", "object": "model", "owned_by": "vllm", "max_model_len": 8192}),
        ],
        ..ModelList::default()
    };
    let (_mock, client) = client_for(models).await;
    assert_eq!(
        client.listed_context_window("qwen", TIMEOUT).await,
        Ok(ListedWindow::Window(8192))
    );
}

#[tokio::test]
async fn failures_are_errors_that_say_what_happened() {
    let (_mock, client) = client_for(ModelList::status(404)).await;
    let err = client
        .listed_context_window("m", TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(err, ModelListError::Status(404));
    assert_eq!(err.to_string(), "HTTP 404");

    let (_mock, client) = client_for(ModelList::raw("<html>Bad gateway</html>")).await;
    let err = client
        .listed_context_window("m", TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ModelListError::Invalid(m) if m.contains("not JSON") && m.contains("<html>")),
        "{err}"
    );

    let (_mock, client) = client_for(ModelList::with_context_window("m", 1).delayed(60_000)).await;
    let err = client
        .listed_context_window("m", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(err, ModelListError::Timeout(Duration::from_millis(200)));
    assert_eq!(err.to_string(), "no answer within 200 ms");

    // Nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let provider = quest_model::ModelProviderInfo {
        name: "gone".into(),
        base_url: Some(format!("http://127.0.0.1:{port}/v1")),
        ..quest_model::ModelProviderInfo::default()
    };
    let client = ModelClient::new(provider, options()).unwrap();
    let err = client
        .listed_context_window("m", TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, ModelListError::Connection(_)), "{err}");
}
