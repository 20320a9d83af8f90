//! Cold one-turn `quest exec --json --skip-git-repo-check` against the in-process mock model:
//! a fresh `QUEST_HOME` per run; wall time, CPU time and peak RSS of the child.
//!
//! Run: `cargo build --release -p quest-cli && cargo bench -p quest-bench --bench exec_cold`
//! (`QUEST_BIN` overrides the binary, `QUEST_BENCH_RUNS` the number of runs, default 30).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use quest_bench::{
    BenchError, Measurement, Stats, measure, ms, provider_args, quest_bin, quest_command,
};
use quest_mock_model::{MockModel, Script, Step, Usage};

fn main() -> ExitCode {
    quest_bench::bench_main("exec_cold", run)
}

fn runs() -> usize {
    quest_bench::env_count("QUEST_BENCH_RUNS", 30)
}

fn run() -> Result<(), BenchError> {
    let bin = quest_bin()?;
    let n = runs();
    println!("quest binary: {}", bin.display());
    for ephemeral in [false, true] {
        let mock = MockModel::builder(Script::new([]).with_default(
            Step::message("Done: nothing to change.").with_usage(Usage::new(1200, 0, 12, 0)),
        ))
        .start_blocking()
        .map_err(|e| BenchError::Unexpected(e.to_string()))?;
        // One unmeasured run so that the binary is in the page cache.
        let mut all = Vec::with_capacity(n);
        for i in 0..=n {
            let home = tempfile::tempdir().map_err(|e| BenchError::Unexpected(e.to_string()))?;
            let work = tempfile::tempdir().map_err(|e| BenchError::Unexpected(e.to_string()))?;
            let mut cmd = quest_command(&bin, home.path(), work.path());
            cmd.arg("exec")
                .arg("--json")
                .arg("--skip-git-repo-check")
                .args(provider_args(&mock.uri()));
            if ephemeral {
                cmd.arg("--ephemeral");
            }
            cmd.arg("say done");
            let spawned = Instant::now();
            let result = measure(&cmd)?;
            if result.measurement.code != 0
                || !result.stdout.windows(14).any(|w| w == b"turn.completed")
            {
                return Err(BenchError::Unexpected(format!(
                    "run {i}: exit {}\n--- stdout\n{}\n--- stderr\n{}",
                    result.measurement.code,
                    String::from_utf8_lossy(&result.stdout),
                    String::from_utf8_lossy(&result.stderr)
                )));
            }
            if i > 0 {
                let first_request = mock
                    .request(i)
                    .map(|r| r.received_at.duration_since(spawned))
                    .unwrap_or_default();
                all.push((result.measurement, first_request));
            }
        }
        let requests = mock.request_count();
        if requests != n + 1 {
            return Err(BenchError::Unexpected(format!(
                "expected {} requests, the mock got {requests}",
                n + 1
            )));
        }
        report(
            if ephemeral {
                "exec --ephemeral"
            } else {
                "exec"
            },
            &all,
        );
    }
    Ok(())
}

fn report(label: &str, all: &[(Measurement, Duration)]) {
    let col = |f: &dyn Fn(&Measurement) -> f64| {
        Stats::of(&all.iter().map(|(m, _)| f(m)).collect::<Vec<_>>())
    };
    let request = Stats::of(&all.iter().map(|(_, d)| ms(*d)).collect::<Vec<_>>());
    let wall = col(&|m| ms(m.wall()));
    let cpu = col(&|m| ms(m.cpu()));
    let user = col(&|m| m.user_us as f64 / 1000.0);
    let sys = col(&|m| m.sys_us as f64 / 1000.0);
    let rss = col(&|m| m.maxrss_kib as f64 / 1024.0);
    println!("\n{label}: {} runs, fresh QUEST_HOME each", all.len());
    println!("| metric | median | p90 | min | max |");
    println!("|---|---|---|---|---|");
    for (name, s, unit) in [
        ("wall", wall, "ms"),
        (
            "spawn → request arrives (incl. ≈1 ms wrapper start)",
            request,
            "ms",
        ),
        ("CPU user+sys", cpu, "ms"),
        ("CPU user", user, "ms"),
        ("CPU sys", sys, "ms"),
        ("peak RSS", rss, "MiB"),
    ] {
        println!(
            "| {name} | {:.1} {unit} | {:.1} {unit} | {:.1} {unit} | {:.1} {unit} |",
            s.median, s.p90, s.min, s.max
        );
    }
}
