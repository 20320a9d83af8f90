//! The terminal UI as a user meets it: the release `quest` binary started in a tmux pane (a real
//! pseudo-terminal, 80×24) against `quest-mock-model`, and — for comparison, when installed —
//! Codex's own TUI against the same mock.
//!
//! 1. Time to first frame: from the moment the shell in the pane execs the UI to the end of its
//!    first frame (`ESC [ ? 2026 l`, the end of a synchronized update: both UIs draw every frame
//!    as one), and to the first frame of a ready session (Quest: the footer shows the model;
//!    Codex: the header's "loading" gives way to the working directory).
//! 2. Frames the real `quest` writes to the terminal while a 100 KB answer streams (1024 deltas,
//!    1 ms between SSE events): how many, how far apart, how many bytes each.
//!
//! Timing comes from the pane's raw output, piped by `tmux pipe-pane` into a FIFO this bench
//! reads: the script in the pane prints a marker and then `exec`s the UI, so the marker and the
//! frames travel the same path and their arrival times differ by what the UI took.
//!
//! Run: `cargo build --release -p quest-cli && cargo bench -p quest-bench --bench tui_start`.
//! `QUEST_BIN` overrides the quest binary; `CODEX_BIN` names the codex binary (default: the one
//! `npm ci --prefix tests/codex-tui` installs; skipped when missing); `QUEST_BENCH_RUNS` sets the
//! start-up runs per UI (20). Needs tmux.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use quest_bench::{BenchError, Stats, env_count, ms, provider_args, quest_bin};
use quest_mock_model::{MockModel, Script, Step};

fn main() -> ExitCode {
    quest_bench::bench_main("tui_start", run)
}

const TIMEOUT: Duration = Duration::from_secs(60);
const GO: &[u8] = b"GO-3141\r\n";
const FRAME_END: &[u8] = b"\x1b[?2026l";
const FRAME_START: &[u8] = b"\x1b[?2026h";
const END_MARKER: &str = "END-OF-ANSWER-2718";

fn unexpected(message: impl Into<String>) -> BenchError {
    BenchError::Unexpected(message.into())
}

fn codex_bin() -> PathBuf {
    match std::env::var_os("CODEX_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "../../tests/codex-tui/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex",
        ),
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn tmux(args: &[&str]) -> Result<String, BenchError> {
    let out = Command::new("tmux")
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| unexpected(format!("cannot run tmux: {e}")))?;
    if !out.status.success() {
        return Err(unexpected(format!("tmux {args:?} failed")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

enum Piped {
    Opened,
    Chunk(Instant, Vec<u8>),
    Closed,
}

/// A UI in a tmux pane whose raw output arrives, timestamped, through a FIFO.
struct Pane {
    name: String,
    rx: mpsc::Receiver<Piped>,
    data: Vec<u8>,
    /// (arrival time, end offset in `data`) of every chunk.
    chunks: Vec<(Instant, usize)>,
    closed: bool,
}

impl Pane {
    /// Starts `script` (which must wait for a line on stdin, print [`GO`] and exec the UI) in a
    /// detached 80×24 session and attaches the output pipe; the UI starts on [`Pane::go`].
    fn start(name: &str, dir: &Path, script: &Path) -> Result<Pane, BenchError> {
        let fifo = dir.join("pane.fifo");
        let status = Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .map_err(|e| unexpected(format!("mkfifo: {e}")))?;
        if !status.success() {
            return Err(unexpected("mkfifo failed"));
        }
        tmux(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "80",
            "-y",
            "24",
            "-c",
            &dir.join("work").display().to_string(),
            &format!("bash {}", quote(&script.display().to_string())),
        ])?;
        let (tx, rx) = mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let Ok(mut file) = std::fs::File::open(&path) else {
                let _ = tx.send(Piped::Closed);
                return;
            };
            let _ = tx.send(Piped::Opened);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match file.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(Piped::Closed);
                        return;
                    }
                    Ok(n) => {
                        if tx
                            .send(Piped::Chunk(Instant::now(), buf[..n].to_vec()))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        let pane = Pane {
            name: name.to_string(),
            rx,
            data: Vec::new(),
            chunks: Vec::new(),
            closed: false,
        };
        tmux(&[
            "pipe-pane",
            "-t",
            name,
            &format!("cat > {}", quote(&fifo.display().to_string())),
        ])?;
        match pane.rx.recv_timeout(TIMEOUT) {
            Ok(Piped::Opened) => Ok(pane),
            _ => Err(unexpected("tmux never opened the output pipe")),
        }
    }

    fn keys(&self, args: &[&str]) -> Result<(), BenchError> {
        let mut all = vec!["send-keys", "-t", &self.name];
        all.extend_from_slice(args);
        tmux(&all).map(|_| ())
    }

    /// Lets the script exec the UI.
    fn go(&self) -> Result<(), BenchError> {
        self.keys(&["Enter"])
    }

    fn screen(&self) -> Result<String, BenchError> {
        tmux(&["capture-pane", "-p", "-t", &self.name])
    }

    fn take(&mut self, message: Piped) {
        match message {
            Piped::Chunk(at, bytes) => {
                self.data.extend_from_slice(&bytes);
                self.chunks.push((at, self.data.len()));
            }
            Piped::Closed => self.closed = true,
            Piped::Opened => {}
        }
    }

    /// Takes what has arrived so far.
    fn drain(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            self.take(m);
        }
    }

    /// When the byte at `offset` arrived.
    fn arrival(&self, offset: usize) -> Instant {
        let i = self.chunks.partition_point(|(_, end)| *end <= offset);
        self.chunks[i].0
    }

    /// Waits for `needle` at or after `from`; returns its arrival time and the offset after it.
    fn wait_for(&mut self, needle: &[u8], from: usize) -> Result<(Instant, usize), BenchError> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(at) = find(&self.data[from.min(self.data.len())..], needle) {
                let end = from + at + needle.len();
                return Ok((self.arrival(end - 1), end));
            }
            if self.closed {
                return Err(unexpected(format!(
                    "the UI exited before showing {:?}; screen:\n{}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(&self.data)
                )));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(m) => self.take(m),
                Err(_) => {
                    return Err(unexpected(format!(
                        "the UI never showed {:?}; screen:\n{}",
                        String::from_utf8_lossy(needle),
                        self.screen().unwrap_or_default()
                    )));
                }
            }
        }
    }

    /// Waits until the pane's program has exited (the pipe closes with it).
    fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(m) => self.take(m),
                Err(_) => return false,
            }
        }
        true
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = find(&haystack[from..], needle) {
        out.push(from + at);
        from += at + needle.len();
    }
    out
}

#[derive(Clone, Copy)]
enum Ui {
    Quest,
    Codex,
}

/// A fresh directory with `home/`, `work/` and the pane's script for one run of `ui`.
fn prepare(ui: Ui, mock: &MockModel, quest: &Path) -> Result<tempfile::TempDir, BenchError> {
    let dir = tempfile::tempdir().map_err(|e| unexpected(format!("tempdir: {e}")))?;
    let home = dir.path().join("home");
    let work = dir.path().join("work");
    for d in [&home, &work] {
        std::fs::create_dir_all(d).map_err(|e| unexpected(format!("mkdir: {e}")))?;
    }
    let user_home = dir.path().display().to_string();
    let exec = match ui {
        Ui::Quest => {
            let mut line = format!(
                "export QUEST_HOME={} HOME={} BENCH_API_KEY=sk-bench NO_COLOR=1\n\
                 unset QUEST_API_KEY CODEX_API_KEY OPENAI_API_KEY RUST_LOG\n\
                 exec {}",
                quote(&home.display().to_string()),
                quote(&user_home),
                quote(&quest.display().to_string())
            );
            for arg in provider_args(&mock.uri())
                .into_iter()
                .chain(["-C".to_string(), work.display().to_string()])
            {
                line.push(' ');
                line.push_str(&quote(&arg));
            }
            line
        }
        Ui::Codex => {
            std::fs::write(
                home.join("config.toml"),
                format!(
                    "model = \"gpt-bench\"\nmodel_provider = \"mock\"\n\
                     check_for_update_on_startup = false\n\
                     [model_providers.mock]\nname = \"mock\"\nbase_url = \"{}\"\n\
                     wire_api = \"responses\"\nenv_key = \"BENCH_API_KEY\"\n\
                     [projects.\"{}\"]\ntrust_level = \"trusted\"\n",
                    mock.uri(),
                    work.display()
                ),
            )
            .map_err(|e| unexpected(format!("codex config: {e}")))?;
            format!(
                "export CODEX_HOME={} HOME={} BENCH_API_KEY=sk-bench NO_COLOR=1\n\
                 unset QUEST_API_KEY CODEX_API_KEY OPENAI_API_KEY RUST_LOG\n\
                 exec {}",
                quote(&home.display().to_string()),
                quote(&user_home),
                quote(&codex_bin().display().to_string())
            )
        }
    };
    let script = format!(
        "read -r _\nprintf '{}'\n{exec} 2>{}\n",
        String::from_utf8_lossy(GO).replace("\r\n", "\\n"),
        quote(&dir.path().join("stderr.log").display().to_string())
    );
    std::fs::write(dir.path().join("run.sh"), script)
        .map_err(|e| unexpected(format!("script: {e}")))?;
    Ok(dir)
}

fn ready_marker(ui: Ui) -> &'static [u8] {
    match ui {
        Ui::Quest => b"gpt-bench",
        Ui::Codex => b"~/work",
    }
}

/// One start: (first frame, ready frame) after the exec.
fn start_once(
    ui: Ui,
    mock: &MockModel,
    quest: &Path,
    n: usize,
) -> Result<(Duration, Duration), BenchError> {
    let dir = prepare(ui, mock, quest)?;
    let name = format!("quest-bench-tui-{}-{n}", std::process::id());
    let mut pane = Pane::start(&name, dir.path(), &dir.path().join("run.sh"))?;
    pane.go()?;
    let (t0, after_go) = pane.wait_for(GO, 0)?;
    let (first, _) = pane.wait_for(FRAME_END, after_go)?;
    let (ready_text, at) = pane.wait_for(ready_marker(ui), after_go)?;
    // The frame that carries the marker ends at the next end of a synchronized update.
    let (ready, _) = pane.wait_for(FRAME_END, at)?;
    debug_assert!(ready >= ready_text);
    // Quit as a user would (the session is killed anyway when `pane` drops; a key sent after
    // the UI exited may find no tmux server any more, hence no error checks).
    let quit = match ui {
        Ui::Quest => "C-d",
        Ui::Codex => "C-c",
    };
    for _ in 0..2 {
        let _ = pane.keys(&[quit]);
        if pane.wait_closed(Duration::from_secs(5)) {
            break;
        }
    }
    Ok((first - t0, ready - t0))
}

fn answer() -> String {
    let block = "## Step\n\nThe parser reads **tokens** one by one and builds the `Ast` as it goes; \
errors carry the span of the token that caused them.\n\n- first item with `code`\n- second item \
that is long enough to wrap on an eighty column terminal at least once\n  - nested item\n\n\
```rust\nfn parse(input: &str) -> Result<Ast, Error> {\n    let mut p = Parser::new(input);\n    p.program()\n}\n```\n\n";
    let tail = format!("\n\n{END_MARKER}\n");
    let mut text = String::new();
    while text.len() < 100 * 1024 {
        text.push_str(block);
    }
    text.truncate(100 * 1024 - tail.len());
    text.push_str(&tail);
    text
}

struct Streamed {
    frames: usize,
    stream: Duration,
    intervals: Vec<f64>,
    bytes: Vec<f64>,
}

/// One 100 KB answer streamed into the real `quest` in a pane.
fn stream_once(mock: &MockModel, quest: &Path, n: usize) -> Result<Streamed, BenchError> {
    let dir = prepare(Ui::Quest, mock, quest)?;
    let name = format!("quest-bench-tui-stream-{}-{n}", std::process::id());
    let mut pane = Pane::start(&name, dir.path(), &dir.path().join("run.sh"))?;
    pane.go()?;
    let (_, after_go) = pane.wait_for(GO, 0)?;
    let (_, at) = pane.wait_for(b"gpt-bench", after_go)?;
    pane.wait_for(FRAME_END, at)?;
    pane.keys(&["-l", "explain the parser"])?;
    pane.wait_for(b"explain the parser", at)?;
    // Keys that arrive together read as a paste; a pause makes the Enter a submit.
    std::thread::sleep(Duration::from_millis(400));
    pane.drain();
    let from = pane.data.len();
    let sent = Instant::now();
    pane.keys(&["Enter"])?;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let screen = pane.screen()?;
        if screen.contains(END_MARKER) && !screen.contains("Working") {
            break;
        }
        if Instant::now() > deadline {
            return Err(unexpected(format!(
                "the answer never ended; screen:\n{screen}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    pane.drain();
    let segment = &pane.data[from..];
    let ends = find_all(segment, FRAME_END);
    let starts = find_all(segment, FRAME_START);
    let times: Vec<Instant> = ends.iter().map(|e| pane.arrival(from + e)).collect();
    let intervals = times.windows(2).map(|w| ms(w[1] - w[0])).collect();
    let bytes = starts
        .iter()
        .zip(&ends)
        .map(|(s, e)| (e + FRAME_END.len() - s) as f64)
        .collect();
    let stream = times.last().map(|t| *t - sent).unwrap_or_default();
    let _ = pane.keys(&["C-d"]);
    pane.wait_closed(Duration::from_secs(10));
    Ok(Streamed {
        frames: ends.len(),
        stream,
        intervals,
        bytes,
    })
}

fn print_stats(label: &str, values: &[f64], unit: &str) {
    let s = Stats::of(values);
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let p99 = sorted
        .get(((sorted.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or_default();
    println!(
        "{label}: n={} median={:.1} {unit} p90={:.1} p99={:.1} min={:.1} max={:.1}",
        values.len(),
        s.median,
        s.p90,
        p99,
        s.min,
        s.max
    );
}

fn run() -> Result<(), BenchError> {
    let quest = quest_bin()?;
    let runs = env_count("QUEST_BENCH_RUNS", 20);
    let idle = MockModel::start_blocking(Script::default().with_default(Step::message("ok")));
    let codex = codex_bin();
    let mut uis = vec![("quest", Ui::Quest)];
    if codex.is_file() {
        uis.push(("codex", Ui::Codex));
    } else {
        println!("codex: {} not found, skipped", codex.display());
    }
    for (label, ui) in uis {
        let mut first = Vec::new();
        let mut ready = Vec::new();
        for n in 0..runs {
            let (f, r) = start_once(ui, &idle, &quest, n)?;
            first.push(ms(f));
            ready.push(ms(r));
        }
        print_stats(&format!("{label}: first frame"), &first, "ms");
        print_stats(
            &format!("{label}: first frame of a ready session"),
            &ready,
            "ms",
        );
    }

    let mock = MockModel::start_blocking(
        Script::default().with_default(
            Step::message(answer())
                .with_deltas(1024)
                .event_delay(Duration::from_millis(1)),
        ),
    );
    let mut intervals = Vec::new();
    let mut bytes = Vec::new();
    for n in 0..3 {
        let s = stream_once(&mock, &quest, n)?;
        println!(
            "quest: 100 KB answer, run {n}: {} frames written from Enter to the end ({:.0} ms, {:.0} frames/s), 1024 deltas",
            s.frames,
            ms(s.stream),
            s.frames as f64 / s.stream.as_secs_f64().max(1e-9)
        );
        intervals.extend(s.intervals);
        bytes.extend(s.bytes);
    }
    print_stats(
        "quest: interval between frames while streaming",
        &intervals,
        "ms",
    );
    print_stats(
        "quest: bytes written per frame while streaming",
        &bytes,
        "B",
    );
    Ok(())
}
