//! Request size and tokens per turn over a long goal, with and without context compaction.
//!
//! Two runs of `quest exec --goal … --turn-budget N` (default 500 turns) against the mock model
//! simulating a context window (input tokens = bytes of `input` / 4, 50 output tokens per
//! answer). Every goal turn runs one argv `shell` command with about 1.1 KB of output, then reports, so a turn
//! is two requests. The first run sets `model_context_window` (the auto-compaction limit is 90 %
//! of it); the second leaves the window unknown and the mock never refuses, so the history is
//! never compacted.
//!
//! Run: `cargo build --release -p quest-cli && cargo bench -p quest-bench --bench compaction`
//! (`QUEST_BIN` overrides the binary, `QUEST_BENCH_TURNS` the number of turns,
//! `QUEST_BENCH_WINDOW` the window in tokens, default 64000).

use std::process::ExitCode;

use quest_bench::{BenchError, Stats, measure, ms, provider_args, quest_bin, quest_command};
use quest_mock_model::{CapturedRequest, Condition, ContextModel, MockModel, Rule, Script, Step};
use serde_json::json;

fn main() -> ExitCode {
    quest_bench::bench_main("compaction", run)
}

fn script() -> Script {
    Script::default()
        .with_rule(Rule::new(
            Condition::request_kind("compaction"),
            Step::message(
                "Hand-off: counting in batches with `seq`; every batch so far succeeded. \
                 Next: keep counting, one batch per turn.",
            ),
        ))
        .with_rule(Rule::new(
            Condition::last_item_type("function_call_output"),
            Step::message("Batch {n} counted; continuing."),
        ))
        .with_default(Step::function_call(
            "shell",
            json!({"command": ["sh", "-c", "echo batch-{n}; seq 1 300"]}),
        ))
        .with_context(ContextModel::default())
}

fn kind(request: &CapturedRequest) -> String {
    request
        .header("x-codex-turn-metadata")
        .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
        .and_then(|m| m["request_kind"].as_str().map(str::to_string))
        .unwrap_or_default()
}

struct Summary {
    label: String,
    wall_ms: f64,
    requests: usize,
    compactions: usize,
    body_kib: Vec<f64>,
    tokens: Vec<f64>,
    total_input_tokens: u64,
    goal_tokens: u64,
}

fn session(turns: usize, window: Option<u64>) -> Result<Summary, BenchError> {
    let bin = quest_bin()?;
    let model = MockModel::builder(script())
        .start_blocking()
        .map_err(|e| BenchError::Unexpected(e.to_string()))?;
    let home = tempfile::tempdir().map_err(|e| BenchError::Unexpected(e.to_string()))?;
    let work = tempfile::tempdir().map_err(|e| BenchError::Unexpected(e.to_string()))?;
    let mut cmd = quest_command(&bin, home.path(), work.path());
    cmd.arg("exec")
        .arg("--json")
        .arg("--skip-git-repo-check")
        .args(provider_args(&model.uri()))
        .args(["-c", "goals.no_progress_backoff=[\"1ms\"]"]);
    if let Some(window) = window {
        cmd.args(["-c", &format!("model_context_window={window}")]);
    }
    cmd.args(["--goal", "count upward in batches, one batch per turn"])
        .args(["--turn-budget", &turns.to_string()]);
    let result = measure(&cmd)?;
    if result.measurement.code != 5 {
        return Err(BenchError::Unexpected(format!(
            "expected exit 5 (budgetLimited), got {}\n--- stderr\n{}",
            result.measurement.code,
            String::from_utf8_lossy(&result.stderr)
        )));
    }
    let requests = model.requests();
    let turn_requests: Vec<&CapturedRequest> =
        requests.iter().filter(|r| kind(r) == "turn").collect();
    let stdout = String::from_utf8_lossy(&result.stdout);
    let goal_tokens = stdout
        .lines()
        .rev()
        .find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            v["goal"]["tokensUsed"].as_u64()
        })
        .unwrap_or(0);
    Ok(Summary {
        label: match window {
            Some(w) => format!("with compaction (window {w})"),
            None => "without compaction".to_string(),
        },
        wall_ms: ms(result.measurement.wall()),
        requests: requests.len(),
        compactions: requests.len() - turn_requests.len(),
        body_kib: turn_requests
            .iter()
            .map(|r| r.body_len as f64 / 1024.0)
            .collect(),
        tokens: turn_requests
            .iter()
            .map(|r| r.input_tokens.unwrap_or(0) as f64)
            .collect(),
        total_input_tokens: requests.iter().filter_map(|r| r.input_tokens).sum(),
        goal_tokens,
    })
}

fn run() -> Result<(), BenchError> {
    let turns = quest_bench::env_count("QUEST_BENCH_TURNS", 500);
    let window = quest_bench::env_count("QUEST_BENCH_WINDOW", 64_000) as u64;
    println!("quest binary: {}", quest_bin()?.display());
    let runs = [session(turns, Some(window))?, session(turns, None)?];
    println!("\n{turns}-turn goal session, two requests per turn");
    println!("| | {} | {} |", runs[0].label, runs[1].label);
    println!("|---|---|---|");
    let row = |name: &str, f: &dyn Fn(&Summary) -> String| {
        println!("| {name} | {} | {} |", f(&runs[0]), f(&runs[1]));
    };
    row("requests (summary requests)", &|s| {
        format!("{} ({})", s.requests, s.compactions)
    });
    for at in [1usize, 50, 100, 250, turns] {
        if at > turns || (at == turns && at < 250) {
            continue;
        }
        // The second request of turn `at` (the one carrying its tool output).
        let index = (2 * at).saturating_sub(1);
        row(&format!("request body at turn {at}"), &|s| {
            let i = index.min(s.body_kib.len().saturating_sub(1));
            format!(
                "{:.1} KiB / {:.0} tokens",
                s.body_kib.get(i).copied().unwrap_or(0.0),
                s.tokens.get(i).copied().unwrap_or(0.0)
            )
        });
    }
    row("largest request body", &|s| {
        format!("{:.1} KiB", Stats::of(&s.body_kib).max)
    });
    row("input tokens per request: median / p90 / max", &|s| {
        let t = Stats::of(&s.tokens);
        format!("{:.0} / {:.0} / {:.0}", t.median, t.p90, t.max)
    });
    row("input tokens per turn (mean, summaries included)", &|s| {
        format!("{:.0}", s.total_input_tokens as f64 / turns as f64)
    });
    row("input tokens, whole session", &|s| {
        format!("{}", s.total_input_tokens)
    });
    row("goal tokensUsed at the end", &|s| {
        format!("{}", s.goal_tokens)
    });
    row("wall time", &|s| format!("{:.1} s", s.wall_ms / 1000.0));
    Ok(())
}
