//! TUI timings (`cargo bench -p quest-tui --bench tui_frames`), all through the UI's real loop
//! ([`quest_tui::event_loop`]: frame pacing, coalescing) with an in-process app-server whose model
//! provider is `quest-mock-model` over loopback TCP. Frames are drawn into ratatui's `TestBackend`
//! (80×24), so terminal output is not included (`cargo bench -p quest-bench --bench tui_start`
//! measures the real binary in a terminal).
//!
//! 1. Time to first frame: from before the in-process server is created (what `quest` does first)
//!    to the first frame drawn, and to the first frame of a ready session (`initialize`,
//!    `thread/start` answered: the footer shows the model).
//! 2. Streaming a 100 KB Markdown answer from the mock model (1024 deltas): frames drawn versus
//!    deltas received, and the time of each frame; once paced (1 ms between SSE events, a fast
//!    model) and once as one burst.
//! 3. Render cost alone: one frame after every 100-byte delta of the same answer (what an
//!    unpaced UI would do), showing how a frame's cost grows with the answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use quest_app_server::{Server, ServerOptions};
use quest_core::ConfigOverrides;
use quest_mock_model::{MockModel, Script, Step};
use quest_tui::app::{App, AppOptions, Cell, Startup};
use quest_tui::event_loop;
use quest_tui::render::Renderer;
use quest_tui::theme::Theme;
use quest_tui::transport::{self, Incoming, Transport};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;
use tokio::sync::mpsc;

const ANSWER_BYTES: usize = 100 * 1024;
const DELTAS: usize = 1024;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name}: n={} median={} p99={} max={}",
        samples.len(),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap()),
    );
}

fn answer_100kb() -> String {
    let block = "## Step\n\nThe parser reads **tokens** one by one and builds the `Ast` as it goes; \
errors carry the span of the token that caused them.\n\n- first item with `code`\n- second item \
that is long enough to wrap on an eighty column terminal at least once\n  - nested item\n\n\
```rust\nfn parse(input: &str) -> Result<Ast, Error> {\n    let mut p = Parser::new(input);\n    p.program()\n}\n```\n\n";
    let mut text = String::new();
    while text.len() < ANSWER_BYTES {
        text.push_str(block);
    }
    text.truncate(ANSWER_BYTES);
    text
}

fn server(home: &std::path::Path, mock: &MockModel) -> Arc<Server> {
    let provider = format!(
        "model_providers.bench={{name=\"bench\", base_url=\"{}\", wire_api=\"responses\", request_max_retries=0, stream_max_retries=0}}",
        mock.uri()
    );
    Server::new(ServerOptions {
        config: ConfigOverrides {
            home: Some(home.to_path_buf()),
            cwd: Some(home.to_path_buf()),
            raw_overrides: vec![
                "model_provider=bench".into(),
                provider,
                "model=gpt-bench".into(),
            ],
            ..ConfigOverrides::default()
        },
        ..ServerOptions::default()
    })
    .unwrap()
}

/// The in-process transport with a counter of `item/agentMessage/delta` notifications.
fn counting(mut inner: Transport, deltas: Arc<AtomicUsize>) -> Transport {
    let (tx, incoming) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = inner.incoming.recv().await {
            if let Incoming::Message(m) = &message
                && m["method"] == "item/agentMessage/delta"
            {
                deltas.fetch_add(1, Ordering::Relaxed);
            }
            if tx.send(message).is_err() {
                return;
            }
        }
    });
    Transport {
        outgoing: inner.outgoing,
        incoming,
    }
}

fn key(code: KeyCode, modifiers: KeyModifiers) -> Event {
    Event::Key(KeyEvent::new(code, modifiers))
}

fn ready(app: &App) -> bool {
    app.thread_id.is_some() && app.model.is_some()
}

fn answered(app: &App) -> bool {
    app.turn.is_none()
        && app
            .cells
            .iter()
            .any(|c| matches!(c, Cell::Assistant { streaming: false, text, .. } if text.len() >= ANSWER_BYTES - 16))
}

fn options() -> AppOptions {
    AppOptions {
        startup: Startup::New,
        ..AppOptions::default()
    }
}

/// Phase 1: time to the first frame and to the first frame of a ready session.
async fn first_frame(mock: &MockModel) -> (Duration, Duration) {
    let home = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let server = server(home.path(), mock);
    let mut link = transport::in_process(server.clone());
    let mut app = App::new(options(), now_ms());
    let theme = Theme::new(true);
    let mut renderer = Renderer::default();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let (keys, mut input) = mpsc::unbounded_channel();
    let mut first = None;
    let mut session = None;
    event_loop(&mut app, &mut link, &mut input, |app| {
        terminal.draw(|f| renderer.draw(f, app, &theme)).unwrap();
        first.get_or_insert_with(|| start.elapsed());
        if session.is_none() && ready(app) {
            session = Some(start.elapsed());
            keys.send(key(KeyCode::Char('d'), KeyModifiers::CONTROL))
                .unwrap();
        }
        Ok(())
    })
    .await
    .unwrap();
    server.shutdown().await;
    (first.unwrap(), session.unwrap())
}

struct Streamed {
    frame_times: Vec<Duration>,
    frames: usize,
    deltas: usize,
    stream: Duration,
}

/// Phase 2: one 100 KB answer streamed from the mock model through the real loop.
async fn stream_answer(mock: &MockModel) -> Streamed {
    let home = tempfile::tempdir().unwrap();
    let server = server(home.path(), mock);
    let deltas = Arc::new(AtomicUsize::new(0));
    let mut link = counting(transport::in_process(server.clone()), deltas.clone());
    let mut app = App::new(options(), now_ms());
    let theme = Theme::new(true);
    let mut renderer = Renderer::default();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let (keys, mut input) = mpsc::unbounded_channel();
    let mut frame_times = Vec::new();
    let mut sent = false;
    let mut done = false;
    let mut first_delta_at: Option<Instant> = None;
    let mut stream = Duration::ZERO;
    event_loop(&mut app, &mut link, &mut input, |app| {
        let t = Instant::now();
        terminal.draw(|f| renderer.draw(f, app, &theme)).unwrap();
        let took = t.elapsed();
        if sent && !done {
            let streaming = app
                .cells
                .iter()
                .any(|c| matches!(c, Cell::Assistant { .. }));
            if streaming {
                frame_times.push(took);
                first_delta_at.get_or_insert(t);
            }
        }
        if !sent && ready(app) {
            sent = true;
            keys.send(Event::Paste("explain the parser".into()))
                .unwrap();
            keys.send(key(KeyCode::Enter, KeyModifiers::NONE)).unwrap();
        } else if sent && !done && answered(app) {
            done = true;
            stream = first_delta_at.map(|at| at.elapsed()).unwrap_or_default();
            keys.send(key(KeyCode::Char('d'), KeyModifiers::CONTROL))
                .unwrap();
        }
        Ok(())
    })
    .await
    .unwrap();
    server.shutdown().await;
    Streamed {
        frames: frame_times.len(),
        frame_times,
        deltas: deltas.load(Ordering::Relaxed),
        stream,
    }
}

/// Phase 3: a frame after every 100-byte delta, no pacing (the reducer and renderer alone).
fn render_every_delta() -> Vec<Duration> {
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
    let mut frames = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let mut end = (at + 100).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        let delta = &text[at..end];
        at = end;
        let t = Instant::now();
        app.on_message(json!({"method": "item/agentMessage/delta", "params": {
            "threadId": "t", "turnId": "turn", "itemId": "m", "delta": delta}}));
        terminal.draw(|f| renderer.draw(f, &app, &theme)).unwrap();
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

    let idle = runtime.block_on(MockModel::start(
        Script::default().with_default(Step::message("ok")),
    ));
    let mut first = Vec::new();
    let mut session = Vec::new();
    for _ in 0..30 {
        let (f, s) = runtime.block_on(first_frame(&idle));
        first.push(f);
        session.push(s);
    }
    report(
        "1. first frame (server created, session not started yet)",
        first,
    );
    report(
        "1. first frame of a ready session (footer shows the model)",
        session,
    );

    for (label, step) in [
        (
            "paced, 1 ms between SSE events",
            Step::message(answer_100kb())
                .with_deltas(DELTAS)
                .event_delay(Duration::from_millis(1)),
        ),
        (
            "one burst",
            Step::message(answer_100kb()).with_deltas(DELTAS),
        ),
    ] {
        let mock = runtime.block_on(MockModel::start(Script::default().with_default(step)));
        let mut times = Vec::new();
        for run in 0..3 {
            let streamed = runtime.block_on(stream_answer(&mock));
            println!(
                "2. 100 KB answer, {label}, run {run}: {} deltas received, {} frames drawn while streaming, stream {} ({:.0} frames/s)",
                streamed.deltas,
                streamed.frames,
                ms(streamed.stream),
                streamed.frames as f64 / streamed.stream.as_secs_f64().max(1e-9),
            );
            times.extend(streamed.frame_times);
        }
        report(&format!("2. frame time while streaming ({label})"), times);
    }

    let mut all = Vec::new();
    for _ in 0..3 {
        all.extend(render_every_delta());
    }
    report(
        "3. reducer + frame after every 100-byte delta (no pacing)",
        all,
    );
}
