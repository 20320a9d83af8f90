//! Telemetry overhead on a scripted 50-turn goal session: the release `quest` binary runs
//! `quest exec --goal ... --turn-budget 50` against the scripted model, alternating runs with
//! `[otel]` off and with all three exporters pointed at a local OTLP/HTTP receiver. Prints wall
//! time, child CPU time (from `/proc/self/stat`) and peak RSS (polled `VmHWM`) per run, then
//! medians and ON/OFF ratios.
//!
//! Run with `cargo build --release -p quest-cli && cargo bench -p quest-cli --bench
//! telemetry_overhead`. `QUEST_BIN` overrides the binary; `TELBENCH_PAIRS` the number of pairs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quest_mock_model::{Condition, MockModel, Rule, Script, Step};
use quest_otel::test_receiver::OtlpReceiver;
use serde_json::json;

const TURNS: usize = 50;

/// One measured run.
struct Sample {
    wall: Duration,
    cpu: Duration,
    peak_rss_kib: u64,
}

fn quest_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("QUEST_BIN") {
        return PathBuf::from(path);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/release/quest")
        .components()
        .collect()
}

/// Each goal turn: one `shell` call (`echo <n>`, no login shell), then one message.
fn script() -> Script {
    Script::new([])
        .with_rule(Rule {
            name: Some("wind-down".into()),
            when: Condition {
                last_user_text_contains: Some("budget has been reached".into()),
                ..Condition::default()
            },
            then: Step::message("Wrapping up."),
            max_matches: None,
            verbatim: false,
        })
        .with_rule(Rule {
            name: Some("reply".into()),
            when: Condition {
                last_item_type: Some("function_call_output".into()),
                ..Condition::default()
            },
            then: Step::message("step {n} done"),
            max_matches: None,
            verbatim: false,
        })
        .with_default(Step::function_call(
            "shell",
            json!({"command": ["echo", "{n}"]}),
        ))
}

fn provider_args(base_url: &str) -> Vec<String> {
    vec![
        "-c".into(),
        "model_provider=test".into(),
        "-c".into(),
        format!(
            "model_providers.test={{name=\"test\", base_url=\"{base_url}\", wire_api=\"responses\", env_key=\"TEST_API_KEY\", request_max_retries=1, stream_max_retries=1, stream_idle_timeout_ms=5000}}"
        ),
        "-c".into(),
        "model=gpt-test".into(),
        "-c".into(),
        "goals.no_progress_backoff=[\"1ms\"]".into(),
    ]
}

fn otel_args(receiver: &OtlpReceiver) -> Vec<String> {
    let endpoint = receiver.http_endpoint();
    let exporter = format!("{{otlp-http={{endpoint=\"{endpoint}\", protocol=\"binary\"}}}}");
    ["exporter", "trace_exporter", "metrics_exporter"]
        .iter()
        .flat_map(|key| ["-c".to_string(), format!("otel.{key}={exporter}")])
        .collect()
}

/// CPU time (user + sys) of this process's waited-for children, from `/proc/self/stat`
/// (`cutime` + `cstime`, in clock ticks of 10 ms).
fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // Fields after the `(comm)` part; cutime and cstime are fields 16 and 17 (1-based).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields[13] + fields[14];
    Duration::from_millis(ticks * 10)
}

/// `VmHWM` of a live process in KiB (None once it has exited).
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run_once(bin: &Path, telemetry: bool) -> Sample {
    let mock = MockModel::start_blocking(script());
    let receiver = telemetry.then(|| OtlpReceiver::start().expect("OTLP receiver"));
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin);
    cmd.env("QUEST_HOME", home.path())
        .env("TEST_API_KEY", "sk-test")
        .env_remove("QUEST_API_KEY")
        .env_remove("CODEX_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("TRACEPARENT")
        .env_remove("TRACESTATE")
        .env("NO_COLOR", "1")
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .args(["exec", "--json", "--skip-git-repo-check", "--cd"])
        .arg(work.path())
        .args(provider_args(&mock.uri()));
    if let Some(receiver) = &receiver {
        cmd.args(otel_args(receiver));
    }
    cmd.args([
        "--goal",
        "count upward forever",
        "--turn-budget",
        &TURNS.to_string(),
    ]);

    let cpu_before = children_cpu();
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn quest");
    let pid = child.id();
    // Drain the pipes on threads so the child never blocks on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buf).ok();
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut buf).ok();
        buf
    });
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait quest") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let wall = start.elapsed();
    let cpu = children_cpu().saturating_sub(cpu_before);
    let stdout = out_thread.join().unwrap();
    let stderr = err_thread.join().unwrap();

    let code = status.code().unwrap_or(-1);
    assert_eq!(
        code,
        5,
        "expected exit 5 (budgetLimited)\n--- stderr\n{}",
        String::from_utf8_lossy(&stderr)
    );
    let requests = mock.request_count();
    assert_eq!(
        requests,
        2 * TURNS,
        "expected {} model requests\n--- stdout\n{}",
        2 * TURNS,
        String::from_utf8_lossy(&stdout)
    );
    if let Some(receiver) = &receiver {
        let received = receiver
            .wait_until(Duration::from_secs(10), |r| {
                r.spans()
                    .iter()
                    .filter(|s| s.name == "invoke_agent quest")
                    .count()
                    == TURNS
                    && !r.metric_points().is_empty()
                    && !r.log_records().is_empty()
            })
            .unwrap_or_else(|r| {
                panic!(
                    "incomplete export: {} spans, {} metric points, {} logs",
                    r.spans().len(),
                    r.metric_points().len(),
                    r.log_records().len()
                )
            });
        println!(
            "    receiver: {} spans, {} metric points, {} log records",
            received.spans().len(),
            received.metric_points().len(),
            received.log_records().len()
        );
    }
    Sample {
        wall,
        cpu,
        peak_rss_kib: peak,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter.
    let bin = quest_bin();
    if !bin.is_file() {
        eprintln!(
            "release quest binary not found at {}; run `cargo build --release -p quest-cli` first (or set QUEST_BIN)",
            bin.display()
        );
        std::process::exit(2);
    }
    let pairs: usize = std::env::var("TELBENCH_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9)
        .max(1);
    println!(
        "telemetry overhead: {TURNS}-turn goal session, {pairs} OFF/ON pairs, {}",
        bin.display()
    );
    // One warm-up pair (page cache, first-connection costs), not counted.
    run_once(&bin, false);
    run_once(&bin, true);

    let mut off = Vec::new();
    let mut on = Vec::new();
    for pair in 0..pairs {
        // Alternate which side goes first so drift in machine load hits both equally.
        let order = if pair % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for telemetry in order {
            let sample = run_once(&bin, telemetry);
            println!(
                "  pair {pair} {}: wall {:.1} ms, cpu {:.1} ms, peak rss {} KiB",
                if telemetry { "ON " } else { "OFF" },
                ms(sample.wall),
                ms(sample.cpu),
                sample.peak_rss_kib
            );
            if telemetry {
                on.push(sample);
            } else {
                off.push(sample);
            }
        }
    }

    let stat = |samples: &[Sample], f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    let wall = |s: &Sample| ms(s.wall);
    let cpu = |s: &Sample| ms(s.cpu);
    let rss = |s: &Sample| s.peak_rss_kib as f64 / 1024.0;
    let (off_wall, on_wall) = (stat(&off, wall), stat(&on, wall));
    let (off_cpu, on_cpu) = (stat(&off, cpu), stat(&on, cpu));
    let (off_rss, on_rss) = (stat(&off, rss), stat(&on, rss));
    let min_wall = |samples: &[Sample]| samples.iter().map(wall).fold(f64::INFINITY, f64::min);
    println!();
    println!("| metric (median of {pairs}) | OFF | ON | ON/OFF | ON−OFF per turn |");
    println!("|---|---|---|---|---|");
    println!(
        "| wall time | {off_wall:.0} ms | {on_wall:.0} ms | {:.2}× | {:.2} ms |",
        on_wall / off_wall,
        (on_wall - off_wall) / TURNS as f64
    );
    println!(
        "| wall time (min) | {:.0} ms | {:.0} ms | {:.2}× | {:.2} ms |",
        min_wall(&off),
        min_wall(&on),
        min_wall(&on) / min_wall(&off),
        (min_wall(&on) - min_wall(&off)) / TURNS as f64
    );
    println!(
        "| CPU (user+sys, quest + its commands) | {off_cpu:.0} ms | {on_cpu:.0} ms | {:.2}× | {:.2} ms |",
        on_cpu / off_cpu,
        (on_cpu - off_cpu) / TURNS as f64
    );
    println!(
        "| peak RSS | {off_rss:.1} MiB | {on_rss:.1} MiB | {:.2}× | – |",
        on_rss / off_rss
    );
}
