//! The UI's loop ([`quest_tui::event_loop`]) with a scripted server on the other end of a channel
//! transport: frames are coalesced (a burst of deltas costs one frame, not one per delta), and a
//! closed connection is shown once and then waited on, not polled in a busy loop, and the loop
//! ends when the terminal input is gone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use quest_tui::app::{App, Cell, Startup};
use quest_tui::event_loop;
use quest_tui::render::Renderer;
use quest_tui::theme::Theme;
use quest_tui::transport::{Incoming, Transport};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use serde_json::{Value, json};
use support::{NOW_MS, THREAD, options, thread_result};
use tokio::sync::mpsc;

/// Generous: the loop itself needs milliseconds.
const TIMEOUT: Duration = Duration::from_secs(60);

fn ctrl_d() -> Event {
    Event::Key(KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL))
}

fn message(value: Value) -> Incoming {
    Incoming::Message(value)
}

/// What the server answers to the UI's first three requests (ids 1–3: `initialize`,
/// `thread/start`, `thread/goal/get`).
fn session_answers() -> Vec<Incoming> {
    vec![
        message(json!({"id": 1, "result": {"userAgent": "quest"}})),
        message(json!({"id": 2, "result": thread_result(json!([]))})),
        message(json!({"id": 3, "result": {"goal": null}})),
    ]
}

struct Drawn {
    frames: usize,
    screen: String,
}

/// Runs the loop until it ends; `quit_when` is checked at every frame and, once true, the test
/// presses Ctrl-D (quit) as a user would.
async fn run_loop(
    app: &mut App,
    transport: &mut Transport,
    quit_when: impl Fn(&App) -> bool,
) -> Drawn {
    let (keys, mut input) = mpsc::unbounded_channel();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut renderer = Renderer::default();
    let theme = Theme::new(false);
    let mut frames = 0;
    let mut quitting = false;
    let ended = tokio::time::timeout(
        TIMEOUT,
        event_loop(app, transport, &mut input, |app| {
            frames += 1;
            let Ok(_) = terminal.draw(|f| renderer.draw(f, app, &theme));
            if !quitting && quit_when(app) {
                quitting = true;
                keys.send(ctrl_d()).unwrap();
            }
            Ok(())
        }),
    )
    .await;
    ended
        .expect("the loop did not end after Ctrl-D")
        .expect("drawing failed");
    let screen = format!("{:?}", terminal.backend().buffer());
    Drawn { frames, screen }
}

#[tokio::test]
async fn a_burst_of_deltas_is_drawn_in_one_frame_not_one_per_delta() {
    let (server_tx, incoming) = mpsc::unbounded_channel();
    let (outgoing, _requests) = mpsc::unbounded_channel();
    let mut transport = Transport { outgoing, incoming };
    // Everything the server will say is already waiting when the loop starts, as it is when a
    // fast model outpaces the terminal.
    for m in session_answers() {
        server_tx.send(m).unwrap();
    }
    let turn = json!({"threadId": THREAD, "turnId": "turn-1"});
    server_tx
        .send(message(json!({"method": "turn/started", "params": {
            "threadId": THREAD, "turn": {"id": "turn-1"}}})))
        .unwrap();
    server_tx
        .send(message(json!({"method": "item/started", "params": {
            "threadId": THREAD, "turnId": "turn-1",
            "item": {"type": "agentMessage", "id": "msg-1", "text": ""}}})))
        .unwrap();
    let mut full = String::new();
    for i in 0..1000 {
        let delta = format!("word{i} ");
        full.push_str(&delta);
        let mut params = turn.clone();
        params["itemId"] = json!("msg-1");
        params["delta"] = json!(delta);
        server_tx
            .send(message(
                json!({"method": "item/agentMessage/delta", "params": params}),
            ))
            .unwrap();
    }
    full.push_str("THE-END");
    server_tx
        .send(message(json!({"method": "item/completed", "params": {
            "threadId": THREAD, "turnId": "turn-1",
            "item": {"type": "agentMessage", "id": "msg-1", "text": full}}})))
        .unwrap();
    server_tx
        .send(message(json!({"method": "turn/completed", "params": {
            "threadId": THREAD, "turn": {"id": "turn-1", "status": "completed"}}})))
        .unwrap();

    let mut app = App::new(options(Startup::New), NOW_MS);
    let drawn = run_loop(&mut app, &mut transport, |app| {
        app.cells.iter().any(|c| {
            matches!(c, Cell::Assistant { text, streaming: false, .. } if text.ends_with("THE-END"))
        })
    })
    .await;
    // The first frame (drawn before anything arrives), then one frame with all 1000 deltas.
    assert!(
        drawn.frames <= 3,
        "{} frames for 1000 deltas that arrived together",
        drawn.frames
    );
    assert!(drawn.screen.contains("THE-END"), "{}", drawn.screen);
    drop(server_tx);
}

#[tokio::test]
async fn a_closed_connection_is_shown_and_waited_on_not_polled() {
    let (server_tx, incoming) = mpsc::unbounded_channel();
    let (outgoing, _requests) = mpsc::unbounded_channel();
    let mut transport = Transport { outgoing, incoming };
    for m in session_answers() {
        server_tx.send(m).unwrap();
    }
    server_tx
        .send(Incoming::Closed("the server closed the connection".into()))
        .unwrap();
    // The connection is gone for good: the channel is closed too.
    drop(server_tx);

    let mut app = App::new(options(Startup::New), NOW_MS);
    let drawn = run_loop(&mut app, &mut transport, |app| app.disconnected).await;
    assert!(drawn.screen.contains("Disconnected"), "{}", drawn.screen);
    let disconnected_notices = app
        .cells
        .iter()
        .filter(|c| matches!(c, Cell::Info { title, .. } if title.starts_with("Disconnected")))
        .count();
    assert_eq!(disconnected_notices, 1);
    // Every state change bumps the revision: connected, three answers, the disconnection and
    // the key. A loop that kept polling the closed channel would count each empty poll too
    // (thousands in the 16 ms before the next frame may be drawn).
    assert!(
        app.revision <= 10,
        "revision {} after a disconnection: the loop kept polling the closed connection",
        app.revision
    );
}

#[tokio::test]
async fn the_loop_ends_when_the_terminal_input_is_gone() {
    let (server_tx, incoming) = mpsc::unbounded_channel();
    let (outgoing, _requests) = mpsc::unbounded_channel();
    let mut transport = Transport { outgoing, incoming };
    for m in session_answers() {
        server_tx.send(m).unwrap();
    }
    // The input reader stopped (its terminal went away): nobody can press anything any more.
    let (keys, mut input) = mpsc::unbounded_channel::<Event>();
    drop(keys);
    let mut app = App::new(options(Startup::New), NOW_MS);
    let mut frames = 0;
    tokio::time::timeout(
        TIMEOUT,
        event_loop(&mut app, &mut transport, &mut input, |_| {
            frames += 1;
            Ok(())
        }),
    )
    .await
    .expect("the loop kept running with no input")
    .unwrap();
    assert!(frames >= 1);
    drop(server_tx);
}
