//! Micro-benchmarks for the tools: `cargo bench -p quest-tools --bench tools`.
//!
//! Prints the median and the fastest of several runs for each case.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench fails loudly

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use quest_tools::apply_patch::{apply_patch, parse_patch};
use quest_tools::shell::{CommandLine, ExecRequest, run_command};
use tokio_util::sync::CancellationToken;

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let min = samples[0];
    println!(
        "{name:<48} median {:>10.3} ms   min {:>10.3} ms   ({} runs)",
        median.as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3,
        samples.len()
    );
}

/// A 10 000-line file and a patch changing one line in every ten (1000 hunks, 3 context lines).
fn big_patch() -> (String, String) {
    let lines: Vec<String> = (0..10_000)
        .map(|i| format!("line number {i} of the file"))
        .collect();
    let mut file = lines.join("\n");
    file.push('\n');
    let mut patch = String::from("*** Begin Patch\n*** Update File: big.txt\n");
    for hunk in 0..1000 {
        let target = hunk * 10 + 5;
        patch.push_str("@@\n");
        for line in &lines[target - 3..target] {
            let _ = writeln!(patch, " {line}");
        }
        let _ = writeln!(patch, "-{}", lines[target]);
        let _ = writeln!(patch, "+changed line {target}");
        for line in &lines[target + 1..target + 4] {
            let _ = writeln!(patch, " {line}");
        }
    }
    patch.push_str("*** End Patch\n");
    (file, patch)
}

fn bench_apply_patch() {
    let (file, patch_text) = big_patch();
    let dir = tempfile::tempdir().unwrap();
    let mut parse_samples = Vec::new();
    let mut apply_samples = Vec::new();
    for _ in 0..30 {
        std::fs::write(dir.path().join("big.txt"), &file).unwrap();
        let start = Instant::now();
        let patch = parse_patch(&patch_text).unwrap();
        parse_samples.push(start.elapsed());
        let start = Instant::now();
        apply_patch(dir.path(), &patch).unwrap();
        apply_samples.push(start.elapsed());
    }
    report("parse_patch, 1000 hunks (8000 lines)", parse_samples);
    report("apply_patch, 1000 hunks on a 10k-line file", apply_samples);
}

fn bench_shell(rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, command: CommandLine, runs: usize| {
        let mut samples = Vec::new();
        for _ in 0..runs {
            let req = ExecRequest::new(command.clone(), dir.path());
            let start = Instant::now();
            let out = rt
                .block_on(run_command(req, CancellationToken::new()))
                .unwrap();
            samples.push(start.elapsed());
            assert_eq!(out.exit_code, Some(0));
        }
        report(name, samples);
    };
    run(
        "run_command: spawn + capture `true`",
        CommandLine::Argv(vec!["true".into()]),
        100,
    );
    run(
        "run_command: `sh -c 'echo hi'`",
        CommandLine::Argv(vec!["sh".into(), "-c".into(), "echo hi".into()]),
        100,
    );
    run(
        "run_command: `/bin/bash -lc 'echo hi'` (login)",
        CommandLine::Shell("echo hi".into()),
        30,
    );
    run(
        "run_command: 50 MB of output, 64 KiB kept",
        CommandLine::Argv(vec![
            "head".into(),
            "-c".into(),
            "52428800".into(),
            "/dev/zero".into(),
        ]),
        10,
    );
}

fn main() {
    bench_apply_patch();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    bench_shell(&rt);
}
