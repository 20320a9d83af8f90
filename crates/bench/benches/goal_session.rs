//! A scripted 200-turn goal session: `quest exec --goal … --turn-budget 200` against the
//! in-process mock model. Every goal turn is one argv `shell` call (`echo N`) and one assistant
//! message, so each turn is two requests; the goal ends budget-limited (exit 5).
//!
//! Run: `cargo build --release -p quest-cli && cargo bench -p quest-bench --bench goal_session`
//! (`QUEST_BIN` overrides the binary, `QUEST_BENCH_TURNS` the number of turns, default 200).
//!
//! The mock's own share is measured afterwards by replaying every captured request body, one
//! fresh connection each, against a second mock playing the same script.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use quest_bench::{
    BenchError, Stats, measure, ms, post_and_drain, provider_args, quest_bin, quest_command,
};
use quest_mock_model::{Condition, MockModel, Rule, Script, Step, Usage};
use serde_json::json;

fn main() -> ExitCode {
    quest_bench::bench_main("goal_session", run)
}

fn turns() -> usize {
    quest_bench::env_count("QUEST_BENCH_TURNS", 200)
}

/// One cheap argv tool call, then a short report, every goal turn. The last turn's report
/// answers the budget wind-down message that follows its tool output.
fn script() -> Script {
    let usage = Usage::new(2000, 1800, 20, 0);
    Script::new([])
        .with_rule(Rule {
            name: Some("wind-down".into()),
            when: Condition {
                last_user_text_contains: Some("budget has been reached".into()),
                ..Condition::default()
            },
            then: Step::message("Wrapping up.").with_usage(usage),
            max_matches: None,
            verbatim: false,
        })
        .with_rule(Rule {
            name: Some("report".into()),
            when: Condition {
                last_item_type: Some("function_call_output".into()),
                ..Condition::default()
            },
            then: Step::message("Step {n} done; continuing.").with_usage(usage),
            max_matches: None,
            verbatim: false,
        })
        .with_default(
            Step::function_call("shell", json!({"command": ["echo", "{n}"]})).with_usage(usage),
        )
}

fn mock(script: Script) -> Result<MockModel, BenchError> {
    MockModel::builder(script)
        .start_blocking()
        .map_err(|e| BenchError::Unexpected(e.to_string()))
}

fn run() -> Result<(), BenchError> {
    let bin = quest_bin()?;
    let turns = turns();
    println!("quest binary: {}", bin.display());
    let model = mock(script())?;
    let home = tempfile::tempdir().map_err(|e| BenchError::Unexpected(e.to_string()))?;
    let work = tempfile::tempdir().map_err(|e| BenchError::Unexpected(e.to_string()))?;
    let mut cmd = quest_command(&bin, home.path(), work.path());
    cmd.arg("exec")
        .arg("--json")
        .arg("--skip-git-repo-check")
        .args(provider_args(&model.uri()))
        .args(["-c", "goals.no_progress_backoff=[\"1ms\"]"])
        .args(["--goal", "count upward, one echo per turn"])
        .args(["--turn-budget", &turns.to_string()]);
    let spawned = Instant::now();
    let result = measure(&cmd)?;
    let m = result.measurement;
    let requests = model.requests();
    if m.code != 5 {
        return Err(BenchError::Unexpected(format!(
            "expected exit 5 (budgetLimited), got {}\n--- stderr\n{}",
            m.code,
            String::from_utf8_lossy(&result.stderr)
        )));
    }
    let stdout = String::from_utf8_lossy(&result.stdout);
    let turns_completed = stdout.matches("\"turn.completed\"").count();
    let tool_items = stdout.matches("\"command_execution\"").count();

    // The mock alone: replay every request against a second server with the same script.
    let replay = mock(script())?;
    let mut mock_time = Duration::ZERO;
    let mut answer_times = Vec::with_capacity(requests.len());
    for request in &requests {
        let body =
            serde_json::to_vec(&request.body).map_err(|e| BenchError::Unexpected(e.to_string()))?;
        let t = post_and_drain(replay.addr(), &body)?;
        mock_time += t;
        answer_times.push(ms(t));
    }
    let answers = Stats::of(&answer_times);

    let first = requests.first().map(|r| r.received_at);
    let last = requests.last().map(|r| r.received_at);
    let startup = first.map(|f| f.duration_since(spawned)).unwrap_or_default();
    let steady = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f),
        _ => Duration::ZERO,
    };
    let gaps: Vec<f64> = model.gaps().iter().map(|g| ms(*g)).collect();
    let gap = Stats::of(&gaps);
    let body_sizes: Vec<f64> = requests
        .iter()
        .map(|r| r.body_len as f64 / 1024.0)
        .collect();
    let db = home.path().join("state.sqlite");
    let db_kib = std::fs::metadata(&db).map(|m| m.len() / 1024).unwrap_or(0);
    let t = turns as f64;

    println!(
        "\ngoal session: {turns} turns (turn budget), exit {}",
        m.code
    );
    println!(
        "requests received: {} (expected {})",
        requests.len(),
        2 * turns
    );
    println!(
        "turn.completed events: {turns_completed}, command_execution item events (started + completed): {tool_items}"
    );
    println!("| metric | value |");
    println!("|---|---|");
    println!("| total wall | {:.0} ms |", ms(m.wall()));
    println!("| wall per turn | {:.2} ms |", ms(m.wall()) / t);
    println!("| spawn → first request | {:.1} ms |", ms(startup));
    println!(
        "| first → last request, per turn | {:.2} ms |",
        ms(steady) / (t - 0.5).max(1.0)
    );
    println!(
        "| gap between requests: median / p90 / max | {:.2} / {:.2} / {:.2} ms |",
        gap.median, gap.p90, gap.max
    );
    println!(
        "| CPU user+sys (quest + its tool children) | {:.0} ms ({:.2} ms/turn) |",
        ms(m.cpu()),
        ms(m.cpu()) / t
    );
    println!(
        "| CPU user / sys (whole tree) | {:.0} / {:.0} ms |",
        m.user_us as f64 / 1000.0,
        m.sys_us as f64 / 1000.0
    );
    println!(
        "| CPU of quest alone (10 ms ticks) | {:.0} ms ({:.2} ms/turn) |",
        ms(m.self_cpu()),
        ms(m.self_cpu()) / t
    );
    println!("| peak RSS | {:.1} MiB |", m.maxrss_kib as f64 / 1024.0);
    println!(
        "| mock answering, replayed (sum; per request median / p90) | {:.0} ms ({:.2} / {:.2} ms) |",
        ms(mock_time),
        answers.median,
        answers.p90
    );
    println!(
        "| overhead per turn beyond the mock | {:.2} ms |",
        (ms(m.wall()) - ms(mock_time)) / t
    );
    println!(
        "| request body size: first / last | {:.1} / {:.1} KiB |",
        body_sizes.first().copied().unwrap_or(0.0),
        body_sizes.last().copied().unwrap_or(0.0)
    );
    println!("| state.sqlite after the run | {db_kib} KiB |");

    if requests.len() != 2 * turns {
        return Err(BenchError::Unexpected(format!(
            "expected {} requests, the mock got {}",
            2 * turns,
            requests.len()
        )));
    }
    Ok(())
}
