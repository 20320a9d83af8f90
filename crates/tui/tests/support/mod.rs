//! Drives an [`App`] the way a server would: answers its requests and sends notifications.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use quest_tui::app::{App, AppOptions, Startup};
use quest_tui::render::Renderer;
use quest_tui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::{Value, json};

/// 2026-11-27 12:00:00 UTC.
pub const NOW_MS: i64 = 1_795_780_800_000;
pub const THREAD: &str = "019ac5a0-0000-7000-8000-000000000001";

pub fn options(startup: Startup) -> AppOptions {
    AppOptions {
        startup,
        cwd: Some("/work/project".into()),
        model: None,
        utc_offset_seconds: 0,
        server_label: "in-process".into(),
    }
}

/// Sends everything the app queued and returns it.
pub fn sent(app: &mut App) -> Vec<Value> {
    app.take_outgoing()
}

/// The last request with this method (panics when none).
pub fn find<'a>(messages: &'a [Value], method: &str) -> &'a Value {
    messages
        .iter()
        .rev()
        .find(|m| m["method"] == method)
        .unwrap_or_else(|| panic!("no {method} in {messages:#?}"))
}

pub fn respond(app: &mut App, request: &Value, result: Value) {
    app.on_message(json!({"id": request["id"], "result": result}));
}

pub fn respond_error(app: &mut App, request: &Value, message: &str) {
    app.on_message(json!({"id": request["id"], "error": {"code": -32600, "message": message}}));
}

pub fn notify(app: &mut App, method: &str, params: Value) {
    app.on_message(json!({"method": method, "params": params}));
}

pub fn thread_result(turns: Value) -> Value {
    json!({
        "thread": {"id": THREAD, "preview": "fix the flaky test", "status": {"type": "idle"}, "turns": turns},
        "model": "gpt-test",
        "cwd": "/work/project",
    })
}

/// An app connected to a server with a started thread and no goal.
pub fn started() -> App {
    let mut app = App::new(options(Startup::New), NOW_MS);
    app.connected();
    let out = sent(&mut app);
    respond(
        &mut app,
        find(&out, "initialize"),
        json!({"userAgent": "quest"}),
    );
    let out = sent(&mut app);
    respond(
        &mut app,
        find(&out, "thread/start"),
        thread_result(json!([])),
    );
    let out = sent(&mut app);
    respond(
        &mut app,
        find(&out, "thread/goal/get"),
        json!({"goal": null}),
    );
    sent(&mut app);
    app
}

pub fn goal(status: &str, extra: Value) -> Value {
    let mut goal = json!({
        "threadId": THREAD,
        "objective": "make every test in this repo pass",
        "status": status,
        "tokenBudget": null,
        "tokensUsed": 12_500,
        "timeUsedSeconds": 3480,
        "createdAt": 1_795_777_000,
        "updatedAt": 1_795_780_000,
    });
    if let (Some(map), Some(more)) = (goal.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            map.insert(k.clone(), v.clone());
        }
    }
    goal
}

pub fn set_goal(app: &mut App, goal: Value) {
    notify(
        app,
        "thread/goal/updated",
        json!({"threadId": THREAD, "turnId": null, "goal": goal}),
    );
}

pub fn turn_started(app: &mut App, turn: &str) {
    notify(
        app,
        "turn/started",
        json!({"threadId": THREAD, "turn": {"id": turn, "status": "inProgress", "items": []}}),
    );
}

pub fn turn_completed(app: &mut App, turn: &str, status: &str) {
    notify(
        app,
        "turn/completed",
        json!({"threadId": THREAD, "turn": {"id": turn, "status": status, "items": []}}),
    );
}

pub fn item(app: &mut App, phase: &str, turn: &str, item: Value) {
    notify(
        app,
        &format!("item/{phase}"),
        json!({"threadId": THREAD, "turnId": turn, "item": item}),
    );
}

pub fn user_message(app: &mut App, turn: &str, id: &str, text: &str) {
    let value = json!({"type": "userMessage", "id": id, "clientId": null,
        "content": [{"type": "text", "text": text, "text_elements": []}]});
    item(app, "started", turn, value.clone());
    item(app, "completed", turn, value);
}

pub fn key(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

pub fn ctrl(app: &mut App, ch: char) {
    app.on_key(KeyEvent::new(KeyCode::Char(ch), KeyModifiers::CONTROL));
}

pub fn type_text(app: &mut App, text: &str) {
    for ch in text.chars() {
        key(app, KeyCode::Char(ch));
    }
}

pub fn submit(app: &mut App, text: &str) -> Vec<Value> {
    type_text(app, text);
    key(app, KeyCode::Enter);
    sent(app)
}

/// Renders the app into a test terminal without colours.
pub fn screen(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    let mut renderer = Renderer::default();
    let theme = Theme::new(false);
    terminal
        .draw(|frame| renderer.draw(frame, app, &theme))
        .unwrap();
    terminal
}
