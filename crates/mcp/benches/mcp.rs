//! MCP costs that a turn pays: starting a server (spawn, `initialize`, `tools/list`) and one
//! `tools/call` round trip, over stdio and streamable HTTP, against the reference server
//! `@modelcontextprotocol/server-everything` (`npm ci --prefix tests/mcp` first).
//!
//! `cargo bench -p quest-mcp --bench mcp` prints the median and the fastest of N runs per case.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark binary

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quest_mcp::{McpConnectionManager, McpServerConfig, McpServers};
use serde_json::json;

fn everything_js() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(path.is_file(), "run `npm ci --prefix tests/mcp` first");
    path
}

fn servers(name: &str, config: McpServerConfig) -> McpServers {
    McpServers::new(BTreeMap::from([(name.to_string(), config)])).unwrap()
}

fn report(case: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let median = samples[samples.len() / 2];
    println!(
        "| {case} | {:.2} ms | {:.2} ms | {} |",
        median.as_secs_f64() * 1e3,
        samples[0].as_secs_f64() * 1e3,
        samples.len()
    );
}

async fn calls(manager: &McpConnectionManager, server: &str, runs: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let started = Instant::now();
        let out = manager
            .call_tool(server, "echo", json!({"message": format!("m{i}")}))
            .await
            .unwrap();
        samples.push(started.elapsed());
        assert!(!out.is_error);
    }
    samples
}

fn main() {
    // `cargo bench` passes `--bench`; nextest's listing passes `--list`: answer with no tests.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let cwd = std::env::temp_dir();
        let warn: quest_mcp::WarningSink = Arc::new(|w: String| eprintln!("warning: {w}"));
        let stdio = McpServerConfig::stdio(
            "node",
            vec![everything_js().display().to_string(), "stdio".into()],
        );
        println!("| case | median | min | runs |\n|---|---|---|---|");

        let mut starts = Vec::new();
        for _ in 0..10 {
            let started = Instant::now();
            let (manager, failures) =
                McpConnectionManager::start(&servers("e", stdio.clone()), &cwd, warn.clone()).await;
            starts.push(started.elapsed());
            assert!(failures.is_empty());
            manager.shutdown().await;
        }
        report(
            "stdio server start (spawn node, initialize, tools/list)",
            starts,
        );

        let (manager, _) =
            McpConnectionManager::start(&servers("e", stdio.clone()), &cwd, warn.clone()).await;
        calls(&manager, "e", 20).await; // warm-up
        report(
            "stdio `tools/call` echo round trip",
            calls(&manager, "e", 300).await,
        );
        manager.shutdown().await;

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut http = tokio::process::Command::new("node")
            .arg(everything_js())
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/mcp");
        let mut config = McpServerConfig::streamable_http(url);
        config.startup_timeout = Some(Duration::from_secs(30));
        // The server needs a moment to listen: retry the start until it connects.
        let deadline = Instant::now() + Duration::from_secs(30);
        let manager = loop {
            let (manager, failures) =
                McpConnectionManager::start(&servers("h", config.clone()), &cwd, Arc::new(|_| {}))
                    .await;
            if failures.is_empty() {
                break manager;
            }
            assert!(Instant::now() < deadline, "{failures:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        calls(&manager, "h", 20).await;
        report(
            "streamable-HTTP `tools/call` echo round trip",
            calls(&manager, "h", 300).await,
        );
        manager.shutdown().await;
        http.kill().await.unwrap();
    });
}
