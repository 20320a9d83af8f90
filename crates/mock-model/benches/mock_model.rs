//! Throughput of the mock model server: start-up cost, per-request round trip (with a small and
//! a Codex-sized request body) and SSE streaming of a large response.
//!
//! Run: `cargo bench -p quest-mock-model --bench mock_model`
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use quest_mock_model::{MockModel, Script, Step};
use serde_json::{Value, json};

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn report(name: &str, samples: &mut [Duration]) {
    let total: Duration = samples.iter().sum();
    let mean = total / samples.len() as u32;
    let p50 = percentile(samples, 0.5);
    let p99 = percentile(samples, 0.99);
    println!(
        "{name:<44} n={:<6} mean={:>8.1} µs  p50={:>8.1} µs  p99={:>8.1} µs",
        samples.len(),
        mean.as_secs_f64() * 1e6,
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
}

fn request_body(extra_bytes: usize) -> String {
    let filler = "x".repeat(extra_bytes);
    json!({
        "model": "gpt-5.5",
        "stream": true,
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": filler}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        ],
        "tools": [],
    })
    .to_string()
}

async fn round_trips(name: &str, body_bytes: usize, n: usize) {
    let mock = MockModel::start(
        Script::default().with_default(Step::message("Hello from the bench").with_deltas(4)),
    )
    .await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = request_body(body_bytes);
    let url = mock.responses_url();
    let send = || async {
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let text = response.text().await.unwrap();
        assert!(text.contains("response.completed"));
    };
    for _ in 0..50 {
        send().await;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        send().await;
        samples.push(started.elapsed());
    }
    report(name, &mut samples);
}

async fn startup(n: usize) {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let mock = MockModel::start(Script::default()).await;
        mock.shutdown().await;
        samples.push(started.elapsed());
    }
    report("start + shutdown (no request)", &mut samples);
}

async fn streaming(total_bytes: usize, deltas: usize) {
    let text = "lorem ipsum dolor sit amet ".repeat(total_bytes / 27);
    let mock =
        MockModel::start(Script::default().with_default(Step::message(text).with_deltas(deltas)))
            .await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let body: Value = json!({"model": "m", "input": []});
    let mut best = f64::MAX;
    let mut size = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let mut response = client
            .post(mock.responses_url())
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        size = 0;
        while let Some(chunk) = response.chunk().await.unwrap() {
            size += chunk.len();
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "SSE stream {:>5.1} MB in {deltas} deltas{:<13} best of 5: {:>7.1} ms  = {:>7.1} MB/s",
        size as f64 / 1e6,
        "",
        best * 1e3,
        size as f64 / 1e6 / best
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it once quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let scale = if quick { 10 } else { 1 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        startup(500 / scale).await;
        round_trips(
            "round trip, 0.2 KB request, 4-delta message",
            0,
            5000 / scale,
        )
        .await;
        round_trips(
            "round trip, 38 KB request, 4-delta message",
            38_000,
            2000 / scale,
        )
        .await;
        streaming(10_000_000 / scale, 10_000 / scale).await;
    });
}
