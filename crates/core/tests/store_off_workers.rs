//! Store calls never run on an async worker: every SQLite read and commit of a goal session —
//! turn rows, rollout items, goal charges, goal tools, compaction records, heartbeats, the
//! turn end — goes through the blocking pool. A check installed in `quest-state` records every
//! database call made from async code, with its stack.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Mutex;

use quest_core::goal::GoalBudgets;
use quest_core::{EventMsg, NewGoal, ThreadOptions};
use quest_mock_model::{Condition, Rule, Script, Step, Usage};
use quest_protocol::goal::GoalStatus;
use serde_json::json;
use support::{Harness, until_idle, wait_for};

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

fn compaction_rule() -> Rule {
    let mut rule = Rule::new(
        Condition::request_kind("compaction"),
        Step::message("SUMMARY of the work so far"),
    );
    rule.name = Some("summary".into());
    rule
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goal_session_makes_no_store_call_on_an_async_worker() {
    assert!(quest_state::set_call_check(check));
    let small = Usage::new(300, 0, 12, 0);
    // The turn's last response crosses the compaction limit: the turn compacts at its end.
    let large = Usage::new(3000, 0, 12, 0);
    let script = Script::new([
        Step::function_call("exec_command", json!({"cmd": "echo working"})).with_usage(small),
        Step::message("first step done").with_usage(small),
        Step::function_call("exec_command", json!({"cmd": "echo more"})).with_usage(small),
        Step::update_goal("complete").with_usage(small),
        Step::message("All done.").with_usage(large),
    ])
    .with_rule(compaction_rule())
    .with_default(Step::message("You are welcome."));
    let h = Harness::new(
        script,
        &[
            "model_context_window=100000",
            "model_auto_compact_token_limit=2500",
            "goals.heartbeat_interval=\"50ms\"",
        ],
    )
    .await;
    let mut started = h
        .manager
        .blocking(|m| {
            m.start_thread(ThreadOptions {
                goal_loop: true,
                headless: false,
            })
        })
        .await
        .unwrap();
    let thread_id = started.thread_id;
    h.manager
        .blocking(move |m| {
            m.create_goal(
                &thread_id,
                NewGoal {
                    objective: "finish the job".to_string(),
                    budgets: GoalBudgets::default(),
                    replace: true,
                    ..NewGoal::default()
                },
            )
        })
        .await
        .unwrap();
    started.handle.submit(quest_core::Op::WakeIdle);
    let events = until_idle(&mut started.events).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e.msg, EventMsg::ContextCompacted { .. })),
        "the session compacted"
    );
    let goal = h
        .manager
        .blocking(move |m| m.goal(&thread_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(goal.status, GoalStatus::Complete);
    // A user turn after the goal, then an interrupt-free shutdown (releases the lease).
    started.handle.submit(quest_core::Op::UserInput {
        text: "thanks".into(),
    });
    wait_for(&mut started.events, |e| {
        matches!(e.msg, EventMsg::TurnCompleted { .. })
    })
    .await;
    h.manager.shutdown().await;

    assert!(*CALLS.lock().unwrap() > 20, "the check saw the store calls");
    let violations = VIOLATIONS.lock().unwrap();
    assert!(
        violations.is_empty(),
        "{} store calls ran on async workers; the first:\n{}",
        violations.len(),
        violations.first().map(String::as_str).unwrap_or_default()
    );
}
