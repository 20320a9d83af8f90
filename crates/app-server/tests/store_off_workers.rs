//! The app-server never touches the state database from an async worker: every read and commit a
//! client's requests cause (thread lists, reopened histories, goal reads and changes, previews)
//! goes through core's `ThreadManager` on the blocking pool, so one slow disk never holds up
//! another client or thread. A check installed in `quest-state` records every database call made
//! from async code, with its stack.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Mutex;

use quest_mock_model::{Condition, Rule, Script, Step, Usage};
use serde_json::json;
use support::Fixture;

static VIOLATIONS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static CALLS: Mutex<usize> = Mutex::new(0);

fn check(what: &'static str) {
    *CALLS.lock().unwrap() += 1;
    if quest_core::blocking::on_async_worker() {
        let thread = std::thread::current();
        VIOLATIONS.lock().unwrap().push(format!(
            "store {what} on async thread {:?}:\n{}",
            thread.name(),
            std::backtrace::Backtrace::force_capture()
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_reads_or_writes_the_database_on_an_async_worker() {
    assert!(quest_state::set_call_check(check));
    let script = Script::new([Step::message("first answer")])
        .with_rule(Rule::new(
            Condition::last_item_type("function_call_output"),
            Step::message("goal done").with_usage(Usage::new(100, 0, 10, 0)),
        ))
        .with_default(Step::update_goal("complete").with_usage(Usage::new(200, 0, 12, 0)));
    let mut fixture = Fixture::start(script).await;
    let mut client = fixture.client().await;
    let thread = client.start_thread().await;
    client.start_turn(&thread, "hello there").await;
    client.turn_completed(&thread).await;
    client
        .call(
            "thread/goal/set",
            json!({"threadId": thread, "objective": "finish the job", "status": "active"}),
        )
        .await;
    client.goal_status(&thread, "complete").await;
    client.turn_completed(&thread).await;
    let by_id = json!({"threadId": thread});
    for method in [
        "thread/goal/get",
        "thread/goal/log",
        "thread/turns/list",
        "thread/items/list",
        "thread/readState/update",
    ] {
        client.call(method, by_id.clone()).await;
    }
    client
        .call(
            "thread/read",
            json!({"threadId": thread, "includeTurns": true}),
        )
        .await;
    client.call("thread/list", json!({})).await;
    client.call("thread/goal/clear", by_id.clone()).await;
    client.close().await;

    // The same thread from a fresh server: unloaded reads, then a resume that rebuilds the turns.
    fixture.restart().await;
    let mut client = fixture.client().await;
    client.call("thread/list", json!({})).await;
    client
        .call(
            "thread/read",
            json!({"threadId": thread, "includeTurns": true}),
        )
        .await;
    client.call("thread/goal/get", by_id.clone()).await;
    client
        .call(
            "thread/goal/set",
            json!({"threadId": thread, "objective": "later", "status": "paused"}),
        )
        .await;
    let resumed = client.call("thread/resume", by_id.clone()).await;
    assert_eq!(resumed["thread"]["turns"][0]["status"], "completed");
    client.close().await;
    fixture.server.shutdown().await;

    assert!(*CALLS.lock().unwrap() > 20, "the check saw the store calls");
    let violations = VIOLATIONS.lock().unwrap();
    assert!(
        violations.is_empty(),
        "{} store calls ran on async workers; the first:\n{}",
        violations.len(),
        violations.first().map(String::as_str).unwrap_or_default()
    );
}
