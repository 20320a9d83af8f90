//! `quest app-server` next to `codex app-server` on the same mock model, over stdio JSON-RPC:
//! `turn/start` → `turn/completed` latency of a scripted one-message turn, resident memory once
//! initialized (idle), and with 20 live threads that each ran a turn.
//!
//! Run: `cargo build --release -p quest-cli && cargo bench -p quest-bench --bench app_server`.
//! `QUEST_BIN` overrides the quest binary; `CODEX_BIN` names the codex binary (default: the one
//! `npm ci --prefix tests/codex-tui` installs); `QUEST_BENCH_TURNS` sets the measured turns (30).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use quest_bench::{BenchError, Stats, ms, provider_args, quest_bin};
use quest_mock_model::{MockModel, Script, Step, Usage};
use serde_json::{Value, json};

fn main() -> ExitCode {
    quest_bench::bench_main("app_server", run)
}

const TIMEOUT: Duration = Duration::from_secs(60);

fn codex_bin() -> PathBuf {
    match std::env::var_os("CODEX_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "../../tests/codex-tui/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex",
        ),
    }
}

fn unexpected(message: impl Into<String>) -> BenchError {
    BenchError::Unexpected(message.into())
}

/// A server on the other end of a pipe.
struct Rpc {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
    next_id: i64,
}

impl Rpc {
    fn spawn(mut cmd: Command) -> Result<Rpc, BenchError> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| unexpected(format!("spawn: {e}")))?;
        let stdin = child.stdin.take().ok_or_else(|| unexpected("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| unexpected("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && tx.send(value).is_err()
                {
                    return;
                }
            }
        });
        Ok(Rpc {
            child,
            stdin,
            lines: rx,
            next_id: 0,
        })
    }

    fn send(&mut self, message: &Value) -> Result<(), BenchError> {
        writeln!(self.stdin, "{message}").map_err(|e| unexpected(format!("write: {e}")))?;
        self.stdin
            .flush()
            .map_err(|e| unexpected(format!("flush: {e}")))
    }

    fn recv(&mut self) -> Result<Value, BenchError> {
        self.lines
            .recv_timeout(TIMEOUT)
            .map_err(|_| unexpected("no message from the server within 60 s"))
    }

    fn call(&mut self, method: &str, params: Value) -> Result<Value, BenchError> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"id": id, "method": method, "params": params}))?;
        loop {
            let message = self.recv()?;
            if message["id"] == id && message.get("method").is_none() {
                return match message.get("error") {
                    Some(error) => Err(unexpected(format!("{method}: {error}"))),
                    None => Ok(message["result"].clone()),
                };
            }
        }
    }

    fn wait_turn_completed(&mut self, thread: &str) -> Result<Value, BenchError> {
        loop {
            let message = self.recv()?;
            if message["method"] == "turn/completed" && message["params"]["threadId"] == thread {
                return Ok(message["params"]["turn"].clone());
            }
        }
    }

    fn start_thread(&mut self, cwd: &Path) -> Result<String, BenchError> {
        let result = self.call(
            "thread/start",
            json!({"cwd": cwd, "approvalPolicy": "never", "sandbox": "danger-full-access"}),
        )?;
        result["thread"]["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| unexpected(format!("thread/start: {result}")))
    }

    fn turn(&mut self, thread: &str) -> Result<Duration, BenchError> {
        let start = Instant::now();
        self.call(
            "turn/start",
            json!({"threadId": thread, "input": [{"type": "text", "text": "say hi", "text_elements": []}]}),
        )?;
        let turn = self.wait_turn_completed(thread)?;
        let elapsed = start.elapsed();
        if turn["status"] != "completed" {
            return Err(unexpected(format!("turn did not complete: {turn}")));
        }
        Ok(elapsed)
    }

    fn rss_kib(&self) -> Result<u64, BenchError> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .map_err(|e| unexpected(format!("/proc status: {e}")))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| unexpected("no VmRSS"))
    }

    fn finish(mut self) {
        drop(self.stdin);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Figures {
    latency: Stats,
    idle_kib: u64,
    one_thread_kib: u64,
    twenty_threads_kib: u64,
}

fn measure_server(
    name: &str,
    cmd: Command,
    work: &Path,
    turns: usize,
) -> Result<Figures, BenchError> {
    let mut rpc = Rpc::spawn(cmd)?;
    rpc.call(
        "initialize",
        json!({"clientInfo": {"name": "bench", "title": null, "version": "0.0.1"},
               "capabilities": {"experimentalApi": true}}),
    )?;
    rpc.send(&json!({"method": "initialized"}))?;
    // Let start-up work settle before reading idle memory.
    rpc.call("thread/loaded/list", json!({}))?;
    let idle_kib = rpc.rss_kib()?;
    let thread = rpc.start_thread(work)?;
    rpc.turn(&thread)?; // warm-up
    let mut samples = Vec::with_capacity(turns);
    for _ in 0..turns {
        samples.push(ms(rpc.turn(&thread)?));
    }
    let one_thread_kib = rpc.rss_kib()?;
    for _ in 1..20 {
        let other = rpc.start_thread(work)?;
        rpc.turn(&other)?;
    }
    let twenty_threads_kib = rpc.rss_kib()?;
    rpc.finish();
    let latency = Stats::of(&samples);
    println!(
        "{name}: turn latency median {:.2} ms (min {:.2}, max {:.2}, n={}), RSS idle {} KiB, 1 thread {} KiB, 20 threads {} KiB",
        latency.median,
        latency.min,
        latency.max,
        turns,
        idle_kib,
        one_thread_kib,
        twenty_threads_kib
    );
    Ok(Figures {
        latency,
        idle_kib,
        one_thread_kib,
        twenty_threads_kib,
    })
}

fn run() -> Result<(), BenchError> {
    let turns = quest_bench::env_count("QUEST_BENCH_TURNS", 30);
    let mock = MockModel::builder(
        Script::default()
            .with_default(Step::message("Hello from mock").with_usage(Usage::new(10, 0, 5, 0))),
    )
    .start_blocking()
    .map_err(|e| unexpected(e.to_string()))?;
    let work = tempfile::tempdir().map_err(|e| unexpected(e.to_string()))?;
    let mut rows = Vec::new();

    let quest = quest_bin()?;
    let quest_home = tempfile::tempdir().map_err(|e| unexpected(e.to_string()))?;
    let mut cmd = quest_bench::quest_command(&quest, quest_home.path(), work.path());
    cmd.arg("app-server").args(provider_args(&mock.uri()));
    rows.push((
        "quest app-server",
        measure_server("quest", cmd, work.path(), turns)?,
    ));

    let codex = codex_bin();
    if codex.is_file() {
        let codex_home = tempfile::tempdir().map_err(|e| unexpected(e.to_string()))?;
        let mut cmd = Command::new(&codex);
        cmd.env("CODEX_HOME", codex_home.path())
            .env("BENCH_API_KEY", "sk-bench")
            .env_remove("OPENAI_API_KEY")
            .env_remove("CODEX_API_KEY")
            .env_remove("RUST_LOG")
            .current_dir(work.path())
            .arg("app-server")
            .args(provider_args(&mock.uri()));
        rows.push((
            "codex app-server 0.169.0",
            measure_server("codex", cmd, work.path(), turns)?,
        ));
    } else {
        println!(
            "codex binary not found at {} (set CODEX_BIN); quest only",
            codex.display()
        );
    }

    println!();
    println!("| server | turn latency median | min | RSS idle | RSS 1 thread | RSS 20 threads |");
    println!("|---|---|---|---|---|---|");
    for (name, f) in rows {
        println!(
            "| `{name}` | {:.1} ms | {:.1} ms | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
            f.latency.median,
            f.latency.min,
            f.idle_kib as f64 / 1024.0,
            f.one_thread_kib as f64 / 1024.0,
            f.twenty_threads_kib as f64 / 1024.0
        );
    }
    Ok(())
}
