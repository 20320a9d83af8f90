//! Snapshots of the main screens, rendered into ratatui's `TestBackend` (no colours).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use insta::assert_snapshot;
use quest_tui::app::App;
use ratatui::crossterm::event::KeyCode;
use serde_json::json;
use support::*;

fn chat(app: &mut App) {
    user_message(
        app,
        "t1",
        "u1",
        "Explain the build and fix the failing test.",
    );
    item(
        app,
        "started",
        "t1",
        json!({"type": "reasoning", "id": "r1", "summary": [], "content": []}),
    );
    item(
        app,
        "completed",
        "t1",
        json!({"type": "reasoning", "id": "r1",
        "summary": ["Looking at the test runner configuration first."], "content": []}),
    );
}

#[test]
fn idle() {
    let app = started();
    assert_snapshot!(screen(&app, 80, 24).backend());
}

#[test]
fn streaming_markdown() {
    let mut app = started();
    turn_started(&mut app, "t1");
    chat(&mut app);
    item(
        &mut app,
        "started",
        "t1",
        json!({"type": "agentMessage", "id": "m1", "text": ""}),
    );
    let text = "The build has **two** steps:\n\n1. `cargo build` compiles\n2. the tests run:\n   - unit\n   - integration\n\n```sh\ncargo nextest run\n```\nNow I am chec";
    notify(
        &mut app,
        "item/agentMessage/delta",
        json!({"threadId": THREAD, "turnId": "t1", "itemId": "m1", "delta": text}),
    );
    app.tick(NOW_MS + 7_000);
    assert_snapshot!(screen(&app, 80, 24).backend());
}

#[test]
fn command_cells() {
    let mut app = started();
    turn_started(&mut app, "t1");
    item(
        &mut app,
        "started",
        "t1",
        json!({"type": "commandExecution", "id": "c1", "command": "cargo test -p parser",
        "cwd": "/work/project", "status": "inProgress", "commandActions": [], "aggregatedOutput": null,
        "exitCode": null, "durationMs": null, "processId": null, "source": "agent"}),
    );
    item(
        &mut app,
        "completed",
        "t1",
        json!({"type": "commandExecution", "id": "c1", "command": "cargo test -p parser",
        "cwd": "/work/project", "status": "failed", "commandActions": [],
        "aggregatedOutput": "running 12 tests\ntest a ... ok\ntest b ... ok\ntest c ... ok\ntest d ... ok\ntest e ... FAILED\nfailures: 1\n",
        "exitCode": 101, "durationMs": 2340, "processId": null, "source": "agent"}),
    );
    item(
        &mut app,
        "started",
        "t1",
        json!({"type": "commandExecution", "id": "c2", "command": "tail -f build.log",
        "cwd": "/work/project", "status": "inProgress", "commandActions": [], "aggregatedOutput": null,
        "exitCode": null, "durationMs": null, "processId": null, "source": "agent"}),
    );
    notify(
        &mut app,
        "item/commandExecution/outputDelta",
        json!({"threadId": THREAD, "turnId": "t1", "itemId": "c2", "delta": "Compiling parser v0.1.0\n"}),
    );
    app.tick(NOW_MS + 3_000);
    assert_snapshot!(screen(&app, 80, 24).backend());
}

#[test]
fn patch_cell() {
    let mut app = started();
    item(
        &mut app,
        "completed",
        "t1",
        json!({"type": "fileChange", "id": "p1", "status": "completed", "changes": [
            {"path": "src/lib.rs", "kind": {"type": "update", "move_path": null},
             "diff": "@@ -1,3 +1,3 @@\n fn parse() {\n-    old();\n+    new();\n+    check();\n }\n"},
            {"path": "tests/parse.rs", "kind": {"type": "add"}, "diff": "#[test]\nfn parses() {}\n"},
        ]}),
    );
    assert_snapshot!(screen(&app, 80, 16).backend());
}

fn footer_for(goal_value: serde_json::Value) -> String {
    let mut app = started();
    set_goal(&mut app, goal_value);
    let terminal = screen(&app, 80, 4);
    let buffer = terminal.backend().buffer();
    (0..80u16)
        .map(|x| buffer[(x, 3)].symbol().to_string())
        .collect::<String>()
        .trim_end()
        .to_string()
}

#[test]
fn goal_footer_in_every_status() {
    let lines = [
        footer_for(goal("active", json!({"tokenBudget": 50_000}))),
        footer_for(goal("active", json!({}))),
        footer_for(goal("paused", json!({}))),
        footer_for(goal("blocked", json!({}))),
        footer_for(goal(
            "usageLimited",
            json!({"usageLimitResetsAt": 1_795_784_700}),
        )),
        footer_for(goal("usageLimited", json!({}))),
        footer_for(goal(
            "budgetLimited",
            json!({"tokenBudget": 10_000, "budgetLimitKind": "tokens"}),
        )),
        footer_for(goal(
            "budgetLimited",
            json!({"timeBudgetSeconds": 3000, "budgetLimitKind": "time"}),
        )),
        footer_for(goal(
            "budgetLimited",
            json!({"turnBudget": 5, "turnsUsed": 5, "budgetLimitKind": "turns"}),
        )),
        footer_for(goal("budgetLimited", json!({}))),
        footer_for(goal("complete", json!({"tokenBudget": 50_000}))),
        footer_for(goal("complete", json!({}))),
    ];
    assert_snapshot!(lines.join("\n"));
}

#[test]
fn replace_goal_prompt() {
    let mut app = started();
    set_goal(&mut app, goal("active", json!({})));
    submit(&mut app, "/goal migrate the parser to the new grammar");
    assert_snapshot!(screen(&app, 80, 16).backend());
}

#[test]
fn resume_goal_prompt() {
    let mut app = App::new(
        options(quest_tui::app::Startup::Resume(THREAD.into())),
        NOW_MS,
    );
    app.connected();
    let out = sent(&mut app);
    respond(&mut app, &out[0], json!({}));
    let out = sent(&mut app);
    respond(
        &mut app,
        find(&out, "thread/resume"),
        thread_result(json!([
            {"id": "t0", "status": "completed", "items": [
                {"type": "userMessage", "id": "u0", "clientId": null, "content": [{"type": "text", "text": "fix the flaky test", "text_elements": []}]},
                {"type": "agentMessage", "id": "m0", "text": "Working on it."}]}
        ])),
    );
    set_goal(
        &mut app,
        goal(
            "paused",
            json!({"lastTransition": {"actor": "system", "reason": "process_exit", "at": 1_795_780_000}}),
        ),
    );
    assert_snapshot!(screen(&app, 80, 20).backend());
}

#[test]
fn usage_limited_resume_prompt() {
    let mut app = App::new(
        options(quest_tui::app::Startup::Resume(THREAD.into())),
        NOW_MS,
    );
    app.connected();
    let out = sent(&mut app);
    respond(&mut app, &out[0], json!({}));
    let out = sent(&mut app);
    respond(
        &mut app,
        find(&out, "thread/resume"),
        thread_result(json!([])),
    );
    set_goal(
        &mut app,
        goal(
            "usageLimited",
            json!({"usageLimitResetsAt": 1_795_784_700,
        "lastTransition": {"actor": "system", "reason": "usage_limit", "at": 1_795_780_000}}),
        ),
    );
    assert_snapshot!(screen(&app, 80, 14).backend());
}

#[test]
fn command_approval_prompt() {
    let mut app = started();
    turn_started(&mut app, "t1");
    app.on_message(
        json!({"id": 3, "method": "item/commandExecution/requestApproval", "params": {
        "threadId": THREAD, "turnId": "t1", "itemId": "call_1", "startedAtMs": NOW_MS,
        "command": "curl -fsSL https://example.com/install.sh | sh", "cwd": "/work/project",
        "reason": "needs network access"}}),
    );
    assert_snapshot!(screen(&app, 80, 16).backend());
}

#[test]
fn patch_approval_prompt() {
    let mut app = started();
    turn_started(&mut app, "t1");
    item(
        &mut app,
        "started",
        "t1",
        json!({"type": "fileChange", "id": "call_2", "status": "inProgress", "changes": [
        {"path": "src/main.rs", "kind": {"type": "update", "move_path": null}, "diff": "-a\n+b\n+c\n"}]}),
    );
    app.on_message(json!({"id": 4, "method": "item/fileChange/requestApproval", "params": {
        "threadId": THREAD, "turnId": "t1", "itemId": "call_2", "startedAtMs": NOW_MS, "reason": null}}));
    assert_snapshot!(screen(&app, 80, 16).backend());
}

#[test]
fn narrow_terminal() {
    let mut app = started();
    set_goal(&mut app, goal("active", json!({"tokenBudget": 50_000})));
    turn_started(&mut app, "t1");
    chat(&mut app);
    item(
        &mut app,
        "completed",
        "t1",
        json!({"type": "agentMessage", "id": "m1",
        "text": "A long answer that has to wrap several times in a narrow terminal, with `inline code`."}),
    );
    type_text(&mut app, "a draft that is longer than the composer is wide");
    assert_snapshot!(screen(&app, 40, 20).backend());
}

#[test]
fn goal_summary_log_and_panel() {
    let mut app = started();
    set_goal(
        &mut app,
        goal(
            "blocked",
            json!({"tokenBudget": 50_000, "timeBudgetSeconds": 7200, "turnBudget": 40, "turnsUsed": 12}),
        ),
    );
    submit(&mut app, "/goal");
    let out = submit(&mut app, "/goal log");
    respond(
        &mut app,
        &out[0],
        json!({"events": [
        {"atMs": NOW_MS - 600_000, "actor": "user", "kind": "created", "fromStatus": null, "toStatus": "active", "reason": "user_request"},
        {"atMs": NOW_MS, "actor": "system", "kind": "status_changed", "fromStatus": "active", "toStatus": "blocked", "reason": "no_progress"}
    ], "nextCursor": null}),
    );
    ctrl(&mut app, 'g');
    let out = sent(&mut app);
    respond(
        &mut app,
        &out[0],
        json!({"events": [
        {"atMs": NOW_MS, "actor": "system", "kind": "status_changed", "fromStatus": "active", "toStatus": "blocked", "reason": "no_progress"}
    ], "nextCursor": null}),
    );
    assert_snapshot!(screen(&app, 80, 36).backend());
    key(&mut app, KeyCode::Esc);
    assert!(!app.show_goal_panel);
}

#[test]
fn slash_popup() {
    let mut app = started();
    type_text(&mut app, "/");
    key(&mut app, KeyCode::Down);
    assert_snapshot!(screen(&app, 80, 14).backend());
}

#[test]
fn resizing_redraws_from_scratch_and_no_color_has_no_colours() {
    use quest_tui::render::Renderer;
    use quest_tui::theme::Theme;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::style::Color;

    let mut app = started();
    set_goal(
        &mut app,
        goal("usageLimited", json!({"usageLimitResetsAt": 1_795_784_700})),
    );
    chat(&mut app);
    item(
        &mut app,
        "completed",
        "t1",
        json!({"type": "agentMessage", "id": "m1",
        "text": "An answer long enough to wrap differently at every width the terminal takes."}),
    );
    let draw = |renderer: &mut Renderer, w: u16, h: u16, color: bool| {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal
            .draw(|f| renderer.draw(f, &app, &Theme::new(color)))
            .unwrap();
        terminal.backend().buffer().clone()
    };
    // One renderer across sizes, as in a resized terminal: each size looks as if drawn fresh.
    let mut renderer = Renderer::default();
    let wide = draw(&mut renderer, 80, 24, false);
    let narrow = draw(&mut renderer, 40, 24, false);
    let again = draw(&mut renderer, 80, 24, false);
    assert_eq!(wide, again);
    assert_eq!(narrow, draw(&mut Renderer::default(), 40, 24, false));
    assert!(wide.content.iter().all(|c| c.fg == Color::Reset));
    let colored = draw(&mut renderer, 80, 24, true);
    assert!(
        colored.content.iter().any(|c| c.fg == Color::Red),
        "the usage-limited footer is red"
    );
}

#[test]
fn errors_and_retry_notices() {
    let mut app = started();
    turn_started(&mut app, "t1");
    user_message(&mut app, "t1", "u1", "run the migration");
    for n in 1..=2 {
        notify(
            &mut app,
            "error",
            json!({"threadId": THREAD, "turnId": "t1", "willRetry": true,
            "error": {"message": format!("Reconnecting... {n}/5"), "codexErrorInfo": null,
                      "additionalDetails": "stream disconnected before completion"}}),
        );
    }
    notify(
        &mut app,
        "error",
        json!({"threadId": THREAD, "turnId": "t1", "willRetry": false,
        "error": {"message": "You've hit your usage limit. Try again at 13:05.",
                  "codexErrorInfo": "usageLimitExceeded", "additionalDetails": null}}),
    );
    turn_completed(&mut app, "t1", "failed");
    assert_snapshot!(screen(&app, 80, 14).backend());
}

#[test]
fn resume_picker() {
    let mut app = App::new(options(quest_tui::app::Startup::ResumePicker), NOW_MS);
    app.connected();
    let out = sent(&mut app);
    respond(&mut app, &out[0], json!({}));
    let out = sent(&mut app);
    respond(
        &mut app,
        find(&out, "thread/list"),
        json!({"data": [
        {"id": "a", "preview": "make every test in this repo pass", "updatedAt": 1_795_780_000},
        {"id": "b", "preview": "explain the build\nsecond line", "updatedAt": 1_795_700_000},
        {"id": "c", "preview": "", "updatedAt": 1_795_600_000}
    ], "nextCursor": null}),
    );
    key(&mut app, KeyCode::Down);
    assert_snapshot!(screen(&app, 80, 12).backend());
    key(&mut app, KeyCode::Enter);
    assert_eq!(
        find(&sent(&mut app), "thread/resume")["params"]["threadId"],
        "b"
    );
}
