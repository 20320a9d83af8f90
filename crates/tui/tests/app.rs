//! The reducer: which requests the UI sends for each key and server message, and in what order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use quest_tui::app::{App, Cell, InfoKind, Modal, Startup};
use ratatui::crossterm::event::KeyCode;
use serde_json::json;
use support::*;

fn methods(messages: &[serde_json::Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["method"].as_str().unwrap_or("<response>").to_string())
        .collect()
}

#[test]
fn startup_initializes_then_starts_a_thread_in_the_working_directory() {
    let mut app = App::new(options(Startup::New), NOW_MS);
    app.connected();
    let out = sent(&mut app);
    assert_eq!(methods(&out), ["initialize"]);
    assert_eq!(out[0]["params"]["capabilities"]["experimentalApi"], true);
    respond(&mut app, &out[0], json!({}));
    let out = sent(&mut app);
    assert_eq!(methods(&out), ["initialized", "thread/start"]);
    assert_eq!(out[1]["params"]["cwd"], "/work/project");
    respond(&mut app, &out[1], thread_result(json!([])));
    assert_eq!(app.thread_id.as_deref(), Some(THREAD));
    assert_eq!(app.model.as_deref(), Some("gpt-test"));
    assert_eq!(methods(&sent(&mut app)), ["thread/goal/get"]);
}

#[test]
fn esc_during_a_goal_turn_pauses_the_goal_before_interrupting() {
    let mut app = started();
    set_goal(&mut app, goal("active", json!({})));
    turn_started(&mut app, "turn-1");
    key(&mut app, KeyCode::Esc);
    let out = sent(&mut app);
    assert_eq!(
        methods(&out),
        ["thread/goal/set"],
        "pause first, nothing else yet"
    );
    assert_eq!(out[0]["params"]["status"], "paused");
    assert_eq!(out[0]["params"]["origin"], "user");
    respond(
        &mut app,
        &out[0],
        json!({"goal": goal("paused", json!({}))}),
    );
    let out = sent(&mut app);
    assert_eq!(methods(&out), ["turn/interrupt"]);
    assert_eq!(out[0]["params"]["turnId"], "turn-1");
    assert_eq!(
        app.goal.as_ref().unwrap().status,
        quest_protocol::goal::GoalStatus::Paused
    );
}

#[test]
fn a_failed_pause_is_reported_and_the_turn_still_interrupted() {
    let mut app = started();
    set_goal(&mut app, goal("active", json!({})));
    turn_started(&mut app, "turn-1");
    ctrl(&mut app, 'c');
    let out = sent(&mut app);
    respond_error(&mut app, &out[0], "database is locked");
    assert_eq!(methods(&sent(&mut app)), ["turn/interrupt"]);
    assert!(app.cells.iter().any(
        |c| matches!(c, Cell::Info { kind: InfoKind::Error, title, .. }
        if title == "Failed to pause task goal: database is locked")
    ));
}

#[test]
fn esc_between_goal_turns_pauses_the_goal() {
    let mut app = started();
    set_goal(&mut app, goal("active", json!({})));
    turn_started(&mut app, "turn-1");
    turn_completed(&mut app, "turn-1", "completed");
    assert!(app.turn.is_none());
    key(&mut app, KeyCode::Esc);
    let out = sent(&mut app);
    assert_eq!(methods(&out), ["thread/goal/set"]);
    assert_eq!(out[0]["params"]["status"], "paused");
    assert_eq!(out[0]["params"]["origin"], "user");
    respond(
        &mut app,
        &out[0],
        json!({"goal": goal("paused", json!({}))}),
    );
    assert!(sent(&mut app).is_empty(), "no turn to interrupt");
    assert_eq!(
        app.goal.as_ref().unwrap().status,
        quest_protocol::goal::GoalStatus::Paused
    );
    // Idle with a paused goal, Esc asks nothing.
    key(&mut app, KeyCode::Esc);
    assert!(sent(&mut app).is_empty());
}

#[test]
fn esc_without_a_goal_interrupts_at_once() {
    let mut app = started();
    turn_started(&mut app, "turn-9");
    key(&mut app, KeyCode::Esc);
    let out = sent(&mut app);
    assert_eq!(methods(&out), ["turn/interrupt"]);
    turn_completed(&mut app, "turn-9", "interrupted");
    assert!(app.turn.is_none());
}

#[test]
fn ctrl_c_clears_the_composer_then_asks_before_quitting() {
    let mut app = started();
    type_text(&mut app, "draft");
    ctrl(&mut app, 'c');
    assert_eq!(app.composer.text(), "");
    assert!(!app.should_quit);
    ctrl(&mut app, 'c');
    assert!(!app.should_quit);
    assert_eq!(app.hint.as_deref(), Some("Press Ctrl-C again to quit"));
    ctrl(&mut app, 'c');
    assert!(app.should_quit);
}

#[test]
fn a_new_goal_over_an_unfinished_one_asks_and_replaces_by_clear_then_set() {
    let mut app = started();
    set_goal(&mut app, goal("paused", json!({})));
    let out = submit(&mut app, "/goal ship the release");
    assert!(out.is_empty(), "nothing is sent before the answer: {out:?}");
    assert!(matches!(app.modal, Some(Modal::ReplaceGoal { .. })));
    key(&mut app, KeyCode::Enter);
    let out = sent(&mut app);
    assert_eq!(methods(&out), ["thread/goal/clear"]);
    respond(&mut app, &out[0], json!({"cleared": true}));
    let out = sent(&mut app);
    assert_eq!(methods(&out), ["thread/goal/set"]);
    assert_eq!(out[0]["params"]["objective"], "ship the release");
    assert_eq!(out[0]["params"]["status"], "active");

    // Cancel keeps the goal.
    let mut app = started();
    set_goal(&mut app, goal("active", json!({})));
    submit(&mut app, "/goal other");
    key(&mut app, KeyCode::Char('2'));
    assert!(sent(&mut app).is_empty());
    assert!(app.modal.is_none());
}

#[test]
fn a_complete_goal_is_replaced_without_asking() {
    let mut app = started();
    set_goal(&mut app, goal("complete", json!({})));
    let out = submit(&mut app, "/goal next thing");
    assert_eq!(methods(&out), ["thread/goal/clear"]);
    assert!(app.modal.is_none());
}

#[test]
fn goal_subcommands_send_the_right_requests() {
    let mut app = started();
    let out = submit(&mut app, "/goal first objective");
    assert_eq!(out[0]["params"]["objective"], "first objective");
    respond(
        &mut app,
        &out[0],
        json!({"goal": goal("active", json!({}))}),
    );
    let out = submit(&mut app, "/goal PAUSE");
    assert_eq!(out[0]["params"]["status"], "paused");
    let out = submit(&mut app, "/goal resume");
    assert_eq!(out[0]["params"]["status"], "active");
    let out = submit(&mut app, "/goal budget 50K time=2h turns=30");
    let p = &out[0]["params"];
    assert_eq!(
        (
            p["tokenBudget"].clone(),
            p["timeBudgetSeconds"].clone(),
            p["turnBudget"].clone()
        ),
        (json!(50_000), json!(7200), json!(30))
    );
    let out = submit(&mut app, "/goal budget none");
    assert!(out[0]["params"]["tokenBudget"].is_null());
    assert!(
        out[0]["params"].get("timeBudgetSeconds").is_none(),
        "unmentioned budgets are kept"
    );
    let out = submit(&mut app, "/goal budget lots");
    assert!(out.is_empty());
    assert!(
        matches!(app.cells.last(), Some(Cell::Info { kind: InfoKind::Error, title, .. }) if title.contains("Invalid budget `lots`"))
    );
    let out = submit(&mut app, "/goal log");
    assert_eq!(methods(&out), ["thread/goal/log"]);
    respond(
        &mut app,
        &out[0],
        json!({"events": [
        {"atMs": NOW_MS, "actor": "user", "kind": "created", "fromStatus": null, "toStatus": "active", "reason": "user_request"}
    ], "nextCursor": null}),
    );
    assert!(
        matches!(app.cells.last(), Some(Cell::Table { rows, .. }) if rows[0][3] == "- → active")
    );
    let out = submit(&mut app, "/goal clear");
    assert_eq!(methods(&out), ["thread/goal/clear"]);
    respond(&mut app, &out[0], json!({"cleared": true}));
    assert!(app.goal.is_none());
}

#[test]
fn goal_edit_prefills_the_objective_and_reactivates_a_finished_goal() {
    let mut app = started();
    set_goal(
        &mut app,
        goal(
            "budgetLimited",
            json!({"tokenBudget": 10_000, "budgetLimitKind": "tokens"}),
        ),
    );
    submit(&mut app, "/goal edit");
    let Some(Modal::EditGoal { editor }) = &app.modal else {
        panic!("no edit dialog: {:?}", app.modal);
    };
    assert_eq!(editor.text(), "make every test in this repo pass");
    type_text(&mut app, " quickly");
    key(&mut app, KeyCode::Enter);
    let out = sent(&mut app);
    assert_eq!(
        out[0]["params"]["objective"],
        "make every test in this repo pass quickly"
    );
    assert_eq!(out[0]["params"]["status"], "active");
}

#[test]
fn resuming_a_thread_with_a_stopped_goal_asks_before_continuing() {
    for status in ["paused", "blocked", "usageLimited"] {
        let mut app = App::new(options(Startup::ResumeLast), NOW_MS);
        app.connected();
        let out = sent(&mut app);
        respond(&mut app, &out[0], json!({}));
        let out = sent(&mut app);
        let list = find(&out, "thread/list");
        respond(
            &mut app,
            list,
            json!({"data": [{"id": THREAD, "preview": "p", "updatedAt": 1}], "nextCursor": null}),
        );
        let out = sent(&mut app);
        assert_eq!(find(&out, "thread/resume")["params"]["threadId"], THREAD);
        respond(
            &mut app,
            find(&out, "thread/resume"),
            thread_result(json!([])),
        );
        let _ = sent(&mut app);
        set_goal(
            &mut app,
            goal(
                status,
                json!({"lastTransition": {"actor": "system", "reason": "process_exit", "at": 1}}),
            ),
        );
        assert!(
            matches!(app.modal, Some(Modal::ResumeGoal { .. })),
            "{status}"
        );
        key(&mut app, KeyCode::Enter);
        let out = sent(&mut app);
        assert_eq!(find(&out, "thread/goal/set")["params"]["status"], "active");
    }
    // An active goal is not asked about; a new thread never is.
    let mut app = started();
    set_goal(&mut app, goal("paused", json!({})));
    assert!(app.modal.is_none());
}

#[test]
fn approval_requests_are_answered_with_the_chosen_decision() {
    let mut app = started();
    app.on_message(
        json!({"id": 7, "method": "item/commandExecution/requestApproval", "params": {
        "threadId": THREAD, "turnId": "t", "itemId": "call_1", "startedAtMs": NOW_MS,
        "command": "rm -rf build", "cwd": "/work/project", "reason": "outside the sandbox"}}),
    );
    assert!(matches!(app.modal, Some(Modal::Approval { .. })));
    app.on_message(
        json!({"id": "p-1", "method": "item/fileChange/requestApproval", "params": {
        "threadId": THREAD, "turnId": "t", "itemId": "call_2", "startedAtMs": NOW_MS}}),
    );
    key(&mut app, KeyCode::Char('n'));
    let out = sent(&mut app);
    assert_eq!(out, [json!({"id": 7, "result": {"decision": "decline"}})]);
    // The queued patch approval comes next.
    assert!(matches!(&app.modal, Some(Modal::Approval { approval, .. }) if approval.patch));
    key(&mut app, KeyCode::Esc);
    assert_eq!(
        sent(&mut app),
        [json!({"id": "p-1", "result": {"decision": "cancel"}})]
    );
    // A request settled elsewhere closes its dialog.
    app.on_message(json!({"id": 9, "method": "item/commandExecution/requestApproval", "params": {
        "threadId": THREAD, "turnId": "t", "itemId": "call_3", "startedAtMs": NOW_MS, "command": "make"}}));
    assert!(app.modal.is_some());
    notify(
        &mut app,
        "serverRequest/resolved",
        json!({"threadId": THREAD, "requestId": 9}),
    );
    assert!(app.modal.is_none());
    // MCP tool calls are elicitations with their own answer shape.
    app.on_message(
        json!({"id": 10, "method": "mcpServer/elicitation/request", "params": {
        "threadId": THREAD, "turnId": "t", "serverName": "everything", "message": "Allow echo?"}}),
    );
    key(&mut app, KeyCode::Char('a'));
    assert_eq!(
        sent(&mut app),
        [
            json!({"id": 10, "result": {"action": "accept", "content": null, "_meta": {"persist": "session"}}})
        ]
    );
    app.on_message(json!({"id": 8, "method": "item/tool/requestUserInput", "params": {}}));
    let out = sent(&mut app);
    assert_eq!(out[0]["id"], 8);
    assert_eq!(out[0]["error"]["code"], -32601);
}

#[test]
fn streaming_deltas_build_one_message_and_retries_update_one_notice() {
    let mut app = started();
    turn_started(&mut app, "t1");
    item(
        &mut app,
        "started",
        "t1",
        json!({"type": "agentMessage", "id": "m1", "text": ""}),
    );
    for piece in ["Hel", "lo ", "world"] {
        notify(
            &mut app,
            "item/agentMessage/delta",
            json!({"threadId": THREAD, "turnId": "t1", "itemId": "m1", "delta": piece}),
        );
    }
    assert!(
        matches!(app.cells.last(), Some(Cell::Assistant { text, streaming: true, .. }) if text == "Hello world")
    );
    for n in 1..=3 {
        notify(
            &mut app,
            "error",
            json!({"threadId": THREAD, "turnId": "t1", "willRetry": true,
            "error": {"message": format!("Reconnecting... {n}/5"), "codexErrorInfo": null, "additionalDetails": "stream closed"}}),
        );
    }
    let notices: Vec<_> = app
        .cells
        .iter()
        .filter(|c| {
            matches!(
                c,
                Cell::Info {
                    kind: InfoKind::Notice,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(notices.len(), 1);
    assert!(matches!(notices[0], Cell::Info { title, .. } if title == "Reconnecting... 3/5"));
    item(
        &mut app,
        "completed",
        "t1",
        json!({"type": "agentMessage", "id": "m1", "text": "Hello world!"}),
    );
    turn_completed(&mut app, "t1", "completed");
    assert!(app.cells.iter().any(
        |c| matches!(c, Cell::Assistant { text, streaming: false, .. } if text == "Hello world!")
    ));
}

#[test]
fn messages_typed_before_the_thread_exists_are_sent_once_it_does() {
    let mut app = App::new(options(Startup::New), NOW_MS);
    app.connected();
    let out = sent(&mut app);
    type_text(&mut app, "early message");
    key(&mut app, KeyCode::Enter);
    respond(&mut app, &out[0], json!({}));
    let out = sent(&mut app);
    respond(
        &mut app,
        find(&out, "thread/start"),
        thread_result(json!([])),
    );
    let out = sent(&mut app);
    assert_eq!(
        find(&out, "turn/start")["params"]["input"][0]["text"],
        "early message"
    );
}

#[test]
fn slash_popup_completes_and_history_recalls() {
    let mut app = started();
    type_text(&mut app, "/st");
    assert_eq!(app.popup_matches().len(), 1);
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.composer.text(), "/status ");
    key(&mut app, KeyCode::Enter);
    assert!(matches!(app.cells.last(), Some(Cell::Info { title, .. }) if title == "Status"));
    submit(&mut app, "hello there");
    key(&mut app, KeyCode::Up);
    assert_eq!(app.composer.text(), "hello there");
    app.on_paste("\r\nline two");
    assert_eq!(app.composer.text(), "hello there\nline two");
    ctrl(&mut app, 'c');
    let out = submit(&mut app, "/compact");
    assert_eq!(methods(&out), ["thread/compact/start"]);
    submit(&mut app, "/bogus");
    assert!(
        matches!(app.cells.last(), Some(Cell::Info { kind: InfoKind::Error, title, .. }) if title.starts_with("Unknown command /bogus"))
    );
}

#[test]
fn a_continuation_that_starts_while_the_pause_is_on_its_way_is_interrupted() {
    let mut app = started();
    set_goal(&mut app, goal("active", json!({})));
    key(&mut app, KeyCode::Esc);
    let out = sent(&mut app);
    assert_eq!(methods(&out), ["thread/goal/set"]);
    // The server had already started the next turn when the pause arrived.
    turn_started(&mut app, "turn-2");
    respond(
        &mut app,
        &out[0],
        json!({"goal": goal("paused", json!({}))}),
    );
    let out = sent(&mut app);
    assert_eq!(methods(&out), ["turn/interrupt"]);
    assert_eq!(out[0]["params"]["turnId"], "turn-2");
}

#[test]
fn esc_with_no_goal_and_no_turn_sends_nothing() {
    let mut app = started();
    key(&mut app, KeyCode::Esc);
    assert!(sent(&mut app).is_empty());
}
