//! Helpers shared by the integration tests: a real HTTP client and an SSE frame splitter.
#![allow(dead_code, unreachable_pub, clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// A minimal Responses request body with these input items.
pub fn body(input: Value) -> Value {
    json!({"model": "gpt-5.5", "stream": true, "input": input, "tools": []})
}

pub async fn post(url: &str, body: &Value) -> reqwest::Response {
    post_with(&client(), url, body).await
}

pub async fn post_with(client: &reqwest::Client, url: &str, body: &Value) -> reqwest::Response {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-test")
        .body(body.to_string())
        .send()
        .await
        .expect("request sent")
}

/// Posts and returns status, headers and the full body text.
pub async fn post_text(url: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, String) {
    post_text_with(&client(), url, body).await
}

pub async fn post_text_with(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    let response = post_with(client, url, body).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    (status, headers, text)
}

/// One SSE frame: the `event:` name (if any) and the data.
#[derive(Debug, Clone, PartialEq)]
pub struct RawFrame {
    pub event: Option<String>,
    pub data: String,
}

pub fn frames(text: &str) -> Vec<RawFrame> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let mut event = None;
            let mut data = String::new();
            for line in f.lines() {
                if let Some(rest) = line.strip_prefix("event: ") {
                    event = Some(rest.to_owned());
                } else if let Some(rest) = line.strip_prefix("data: ") {
                    data.push_str(rest);
                }
            }
            RawFrame { event, data }
        })
        .collect()
}

/// The JSON events of an SSE body (unparseable frames skipped); checks `event:` = `type`.
pub fn events(text: &str) -> Vec<Value> {
    frames(text)
        .into_iter()
        .filter_map(|f| {
            let value: Value = serde_json::from_str(&f.data).ok()?;
            if let Some(name) = &f.event {
                assert_eq!(
                    Some(name.as_str()),
                    value["type"].as_str(),
                    "event line matches type"
                );
            }
            Some(value)
        })
        .collect()
}

pub fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Reads body chunks until `timeout` passes without one; returns the text and whether the body
/// ended (`Ok(true)`), stalled (`Ok(false)`) or failed (`Err`).
pub async fn read_until_quiet(
    response: &mut reqwest::Response,
    timeout: Duration,
) -> (String, Result<bool, String>) {
    let mut text = String::new();
    loop {
        match tokio::time::timeout(timeout, response.chunk()).await {
            Err(_) => return (text, Ok(false)),
            Ok(Ok(None)) => return (text, Ok(true)),
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Err(e)) => return (text, Err(e.to_string())),
        }
    }
}
