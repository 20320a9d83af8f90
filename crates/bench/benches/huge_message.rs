//! Peak RSS of `quest exec --json` when the model answers with a 50 MB message (issue 17,
//! item 7), against a one-word answer.
//!
//! The mock runs inside the bench process; each `quest` run is measured alone by the wrapper of
//! `quest_bench::measure` (so the mock's own 100 MB of events do not count). Cases: a one-word
//! answer; 50 MB in one `output_text.delta` and then the whole `output_item.done`; the same in
//! 1000 deltas, as a streaming provider sends it.
//!
//! Run: `cargo build --release -p quest-cli && cargo bench -p quest-bench --bench huge_message`
//! (`QUEST_BIN` overrides the binary, `QUEST_BENCH_RUNS` the runs per case, default 3,
//! `QUEST_BENCH_MESSAGE_BYTES` the message size, default 50 000 000).

use std::process::ExitCode;

use quest_bench::{BenchError, Stats, measure, ms, provider_args, quest_bin, quest_command};
use quest_mock_model::{MockModel, Script, Step};

fn main() -> ExitCode {
    quest_bench::bench_main("huge_message", run)
}

fn unexpected(e: impl std::fmt::Display) -> BenchError {
    BenchError::Unexpected(e.to_string())
}

fn run() -> Result<(), BenchError> {
    let bin = quest_bin()?;
    let runs = quest_bench::env_count("QUEST_BENCH_RUNS", 3);
    let size = quest_bench::env_count("QUEST_BENCH_MESSAGE_BYTES", 50_000_000);
    println!("quest binary: {}", bin.display());
    let text: String = (0..size)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let cases = [
        ("one-word answer", Step::message("done")),
        (
            "50 MB message, 1 delta + done item",
            Step::message(text.clone()),
        ),
        (
            "50 MB message, 1000 deltas + done item",
            Step::message(text).with_deltas(1000),
        ),
    ];
    println!(
        "\n| case ({runs} runs each) | peak RSS median | peak RSS max | wall median | CPU median | stdout |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, step) in cases {
        let mock = MockModel::builder(Script::new([]).with_default(step))
            .start_blocking()
            .map_err(unexpected)?;
        let mut rss = Vec::new();
        let mut wall = Vec::new();
        let mut cpu = Vec::new();
        let mut stdout_len = 0;
        for i in 0..runs {
            let home = tempfile::tempdir().map_err(unexpected)?;
            let work = tempfile::tempdir().map_err(unexpected)?;
            let mut cmd = quest_command(&bin, home.path(), work.path());
            cmd.arg("exec")
                .arg("--json")
                .arg("--skip-git-repo-check")
                .args(provider_args(&mock.uri()))
                .args(["-c", "model_providers.bench.stream_idle_timeout_ms=120000"])
                .arg("answer");
            let result = measure(&cmd)?;
            if result.measurement.code != 0
                || !result.stdout.windows(14).any(|w| w == b"turn.completed")
            {
                return Err(BenchError::Unexpected(format!(
                    "{label}, run {i}: exit {}\n--- stdout\n{}\n--- stderr\n{}",
                    result.measurement.code,
                    String::from_utf8_lossy(&result.stdout),
                    String::from_utf8_lossy(&result.stderr)
                )));
            }
            rss.push(result.measurement.maxrss_kib as f64 / 1024.0);
            wall.push(ms(result.measurement.wall()));
            cpu.push(ms(result.measurement.cpu()));
            stdout_len = result.stdout.len();
        }
        let rss = Stats::of(&rss);
        println!(
            "| {label} | {:.1} MiB | {:.1} MiB | {:.0} ms | {:.0} ms | {stdout_len} B |",
            rss.median,
            rss.max,
            Stats::of(&wall).median,
            Stats::of(&cpu).median,
        );
    }
    Ok(())
}
