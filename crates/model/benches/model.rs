//! Benchmarks: SSE decode throughput on a large recorded stream, and per-request client
//! overhead against the mock server on loopback.
//!
//! `cargo bench -p quest-model --bench model`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quest_mock_model::{MockModel, Output, Script, Step};
use quest_model::sse::{SseDecoder, WireEvent, decode_event};
use quest_model::{ClientOptions, ModelClient, ModelProviderInfo, Prompt};
use quest_protocol::ResponseItem;

/// Records the body of a long response (many small text deltas, tool calls with large
/// arguments, a reasoning item with a large encrypted blob) as the mock serves it.
fn record_stream(rt: &tokio::runtime::Runtime) -> Vec<u8> {
    rt.block_on(async {
        let mut outputs = Vec::new();
        let text: String = "The quick brown fox jumps over the lazy dog. ".repeat(2_000);
        outputs.push(Output::reasoning("planning the change").encrypted("gAAAA".repeat(20_000)));
        for i in 0..20 {
            let args =
                serde_json::json!({"cmd": format!("cat file_{i}.rs"), "data": "x".repeat(10_000)});
            outputs.push(Output::function_call("exec_command", args));
        }
        outputs.push(Output::message(text).deltas(20_000));
        let mock =
            MockModel::start(Script::new([Step::items(outputs)]).without_pairing_check()).await;
        let body = reqwest::Client::new()
            .post(mock.responses_url())
            .header("content-type", "application/json")
            .body(r#"{"model":"m","input":[]}"#)
            .send()
            .await
            .and_then(|r| r.error_for_status());
        match body {
            Ok(response) => response
                .bytes()
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default(),
            Err(e) => panic!("recording failed: {e}"),
        }
    })
}

fn decode(bytes: &[u8], chunk: usize) -> usize {
    let mut decoder = SseDecoder::new();
    let mut frames = Vec::new();
    let mut done = 0;
    for piece in bytes.chunks(chunk) {
        decoder.feed(piece, &mut frames);
        for frame in frames.drain(..) {
            if let WireEvent::OutputItemDone(item) = decode_event(&frame.data) {
                black_box(&item);
                done += 1;
            }
        }
    }
    done
}

fn sse_decode(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bytes = record_stream(&rt);
    assert!(
        decode(&bytes, 16 * 1024) == 22,
        "recording must hold 22 items"
    );
    eprintln!("recorded stream: {} bytes", bytes.len());
    let mut group = c.benchmark_group("sse_decode");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    for chunk in [1024usize, 16 * 1024] {
        group.bench_function(format!("chunks_of_{chunk}"), |b| {
            b.iter(|| decode(black_box(&bytes), chunk));
        });
    }
    group.bench_function("framing_only_16k", |b| {
        b.iter(|| {
            let mut decoder = SseDecoder::new();
            let mut frames = Vec::new();
            for piece in bytes.chunks(16 * 1024) {
                decoder.feed(piece, &mut frames);
                frames.clear();
            }
        });
    });
    group.finish();
}

fn client_overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt.block_on(MockModel::start(
        Script::new([]).with_default(Step::message("ok")),
    ));
    let provider = ModelProviderInfo {
        name: "mock".into(),
        base_url: Some(mock.uri()),
        ..ModelProviderInfo::default()
    };
    let client = ModelClient::new(provider, ClientOptions::default()).unwrap();
    let mut prompt = Prompt {
        model: "gpt-5.5".into(),
        input: vec![ResponseItem::text_message("user", "hello")],
        ..Prompt::default()
    };
    let mut group = c.benchmark_group("client");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("one_call_small_prompt", |b| {
        b.iter(|| {
            rt.block_on(client.stream(&prompt, &mut |e| {
                black_box(e);
            }))
            .unwrap()
        });
    });
    // A history of ~40 KB, like a first Codex request.
    prompt.input.insert(
        0,
        ResponseItem::text_message("developer", "x".repeat(38_000)),
    );
    group.bench_function("one_call_38k_prompt", |b| {
        b.iter(|| {
            rt.block_on(client.stream(&prompt, &mut |e| {
                black_box(e);
            }))
            .unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, sse_decode, client_overhead);
criterion_main!(benches);
