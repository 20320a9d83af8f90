//! TUI timings (`cargo bench -p quest-tui --bench tui_frames`):
//!
//! - time to first frame: from nothing to the first drawn frame, and to the first frame of a
//!   usable session (in-process app-server created, `initialize`, `thread/start` and
//!   `thread/goal/get` answered, frame drawn);
//! - frame time while streaming a 100 KB Markdown answer in 100-byte deltas, drawing after every
//!   delta (the worst case: the runner draws at most once per 16 ms and coalesces deltas).
//!
//! Frames are drawn into ratatui's `TestBackend` (80×24), so terminal I/O is not included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use quest_app_server::{Server, ServerOptions};
use quest_core::ConfigOverrides;
use quest_tui::app::{App, AppOptions, Startup};
use quest_tui::render::Renderer;
use quest_tui::theme::Theme;
use quest_tui::transport::{self, Incoming};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::json;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name}: n={} median={:.3} ms p95={:.3} ms p99={:.3} ms max={:.3} ms",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.95).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
    );
}

fn draw(terminal: &mut Terminal<TestBackend>, renderer: &mut Renderer, app: &App, theme: &Theme) {
    terminal.draw(|f| renderer.draw(f, app, theme)).unwrap();
}

async fn first_frame(home: &std::path::Path) -> (Duration, Duration) {
    let start = Instant::now();
    let theme = Theme::new(true);
    let mut renderer = Renderer::default();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut app = App::new(
        AppOptions {
            startup: Startup::New,
            ..AppOptions::default()
        },
        now_ms(),
    );
    draw(&mut terminal, &mut renderer, &app, &theme);
    let first = start.elapsed();
    let server = Server::new(ServerOptions {
        config: ConfigOverrides {
            home: Some(home.to_path_buf()),
            cwd: Some(home.to_path_buf()),
            ..ConfigOverrides::default()
        },
        ..ServerOptions::default()
    })
    .unwrap();
    let mut link = transport::in_process(server.clone());
    app.connected();
    let mut goal_answered = false;
    loop {
        for message in app.take_outgoing() {
            if message["method"] == "thread/goal/get" {
                goal_answered = true;
            }
            link.outgoing.send(message).unwrap();
        }
        if app.thread_id.is_some() && goal_answered {
            // Wait for the goal answer too: the footer is complete then.
            match link.incoming.recv().await {
                Some(Incoming::Message(m)) => app.on_message(m),
                other => panic!("server went away: {other:?}"),
            }
            break;
        }
        match link.incoming.recv().await {
            Some(Incoming::Message(m)) => app.on_message(m),
            other => panic!("server went away: {other:?}"),
        }
    }
    draw(&mut terminal, &mut renderer, &app, &theme);
    let ready = start.elapsed();
    server.shutdown().await;
    (first, ready)
}

fn answer_100kb() -> String {
    let block = "## Step\n\nThe parser reads **tokens** one by one and builds the `Ast` as it goes; \
errors carry the span of the token that caused them.\n\n- first item with `code`\n- second item \
that is long enough to wrap on an eighty column terminal at least once\n  - nested item\n\n\
```rust\nfn parse(input: &str) -> Result<Ast, Error> {\n    let mut p = Parser::new(input);\n    p.program()\n}\n```\n\n";
    let mut text = String::new();
    while text.len() < 100 * 1024 {
        text.push_str(block);
    }
    text.truncate(100 * 1024);
    text
}

fn streaming() -> Vec<Duration> {
    let theme = Theme::new(true);
    let mut renderer = Renderer::default();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut app = App::new(AppOptions::default(), now_ms());
    app.connected();
    let init = app.take_outgoing();
    app.on_message(json!({"id": init[0]["id"], "result": {}}));
    let out = app.take_outgoing();
    let start = out.iter().find(|m| m["method"] == "thread/start").unwrap();
    app.on_message(json!({"id": start["id"], "result": {
        "thread": {"id": "t", "preview": "", "status": {"type": "idle"}, "turns": []},
        "model": "gpt-bench", "cwd": "/tmp"}}));
    app.take_outgoing();
    app.on_message(
        json!({"method": "turn/started", "params": {"threadId": "t", "turn": {"id": "turn"}}}),
    );
    app.on_message(
        json!({"method": "item/started", "params": {"threadId": "t", "turnId": "turn",
        "item": {"type": "agentMessage", "id": "m", "text": ""}}}),
    );
    let text = answer_100kb();
    let bytes = text.as_bytes();
    let mut frames = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let mut end = (at + 100).min(bytes.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        let delta = &text[at..end];
        at = end;
        let t = Instant::now();
        app.on_message(json!({"method": "item/agentMessage/delta", "params": {
            "threadId": "t", "turnId": "turn", "itemId": "m", "delta": delta}}));
        draw(&mut terminal, &mut renderer, &app, &theme);
        frames.push(t.elapsed());
    }
    frames
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut first = Vec::new();
    let mut ready = Vec::new();
    for _ in 0..20 {
        let home = tempfile::tempdir().unwrap();
        let (f, r) = runtime.block_on(first_frame(home.path()));
        first.push(f);
        ready.push(r);
    }
    report("first frame (connecting)", first);
    report(
        "first frame of a ready session (in-process server, thread started)",
        ready,
    );
    let mut all = Vec::new();
    for _ in 0..3 {
        all.extend(streaming());
    }
    report(
        "frame while streaming a 100 KB answer (100-byte deltas, 80x24)",
        all,
    );
}
