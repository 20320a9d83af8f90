//! The goal loop in-process: a `ThreadManager`, a real mock model over TCP and a real SQLite
//! store in a temporary home, driven to every stop state.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quest_core::goal::GoalBudgets;
use quest_core::{EventMsg, ManagerOptions, NewGoal, Op, ThreadManager, ThreadOptions};
use quest_mock_model::{Script, Step, Usage};
use quest_protocol::goal::{GoalReason, GoalStatus};
use serde_json::json;
use support::{Harness, progress_model, statuses, until_idle, wait_for};

fn usage() -> Usage {
    Usage::new(1100, 900, 12, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goal_runs_to_complete() {
    let h = Harness::new(
        Script::new([
            Step::function_call("exec_command", json!({"cmd": "echo working"})).with_usage(usage()),
            Step::update_goal("complete").with_usage(usage()),
            Step::message("All done.").with_usage(usage()),
        ]),
        &[],
    )
    .await;
    let mut t = h.start_goal("finish the job", GoalBudgets::default());
    let events = until_idle(&mut t.events).await;
    let goal = h.goal(&t);
    assert_eq!(goal.status, GoalStatus::Complete);
    assert_eq!(statuses(&events).last(), Some(&GoalStatus::Complete));
    // Three responses of 212 chargeable tokens each, the completing one included; one turn.
    assert_eq!((goal.tokens_used, goal.turns_used), (636, 1));
    assert_eq!(h.mock.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goal_blocked_by_the_model_counts_its_turn() {
    let h = Harness::new(
        Script::new([
            Step::update_goal("blocked"),
            Step::message("Blocked: the API key is missing."),
        ]),
        &[],
    )
    .await;
    let mut t = h.start_goal("deploy", GoalBudgets::default());
    until_idle(&mut t.events).await;
    let goal = h.goal(&t);
    assert_eq!(goal.status, GoalStatus::Blocked);
    assert_eq!(
        goal.last_transition.unwrap().reason,
        GoalReason::ToolUpdateGoal
    );
    // The turn in which the model blocked the goal is a goal turn like any other.
    assert_eq!(goal.turns_used, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_blocks_a_model_that_only_talks() {
    let h = Harness::new(
        Script::new([]).with_default(Step::message("Still looking into the failure.")),
        &[],
    )
    .await;
    let mut t = h.start_goal("fix the build", GoalBudgets::default());
    until_idle(&mut t.events).await;
    let goal = h.goal(&t);
    assert_eq!(goal.status, GoalStatus::Blocked);
    assert_eq!(
        goal.last_transition.unwrap().reason,
        GoalReason::RepeatedBlocker
    );
    assert_eq!(h.mock.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_stops_a_model_repeating_the_same_command() {
    // `sleep` makes the reported wall time differ between runs of the very same command.
    let h = Harness::new(progress_model("sleep 0.$(( $$ % 7 + 1 )); echo same"), &[]).await;
    let mut t = h.start_goal("make it pass", GoalBudgets::default());
    until_idle(&mut t.events).await;
    let goal = h.goal(&t);
    assert_eq!(goal.status, GoalStatus::Blocked);
    // Turn 1 made progress; turns 2-4 repeated it exactly: three no-progress turns.
    assert_eq!(goal.turns_used, 4);
    assert_eq!(h.mock.request_count(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_limit_stops_after_one_request() {
    let resets_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 3600;
    let h = Harness::new(
        Script::new([]).with_default(Step::usage_limit(Some("plus"), Some(resets_at))),
        &[],
    )
    .await;
    let mut t = h.start_goal("refactor", GoalBudgets::default());
    until_idle(&mut t.events).await;
    let goal = h.goal(&t);
    assert_eq!(goal.status, GoalStatus::UsageLimited);
    assert_eq!(goal.usage_limit_resets_at, Some(resets_at));
    assert_eq!(h.mock.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_budget_limits_the_goal() {
    let h = Harness::new(progress_model("echo {n}"), &[]).await;
    let mut t = h.start_goal(
        "count",
        GoalBudgets {
            turns: Some(2),
            ..GoalBudgets::default()
        },
    );
    until_idle(&mut t.events).await;
    let goal = h.goal(&t);
    assert_eq!(goal.status, GoalStatus::BudgetLimited);
    assert_eq!(goal.turns_used, 2);
    assert_eq!(h.mock.request_count(), 4);
}

/// How much `counter` grows over a goal run of `turns` turns, each a tool call and a report,
/// ending budget-limited.
async fn growth_over_goal_turns(turns: i64, counter: fn() -> u64) -> u64 {
    // No heartbeat lands inside the run.
    let h = Harness::new(
        progress_model("echo {n}"),
        &["goals.heartbeat_interval=\"25s\""],
    )
    .await;
    let before = counter();
    let mut t = h.start_goal(
        "count",
        GoalBudgets {
            turns: Some(turns),
            ..GoalBudgets::default()
        },
    );
    until_idle(&mut t.events).await;
    let after = counter();
    let goal = h.goal(&t);
    assert_eq!(
        (goal.status, goal.turns_used),
        (GoalStatus::BudgetLimited, turns)
    );
    after - before
}

/// A goal turn that runs a tool and then reports costs two commits: the response that asked for
/// the tool (before the tool runs), and the turn's end (the report, its charge and the
/// breaker's classification). Measured as the difference between a 3-turn and a 2-turn run, so
/// that setting up and the last turn cancel out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goal_turn_costs_two_commits() {
    let two = growth_over_goal_turns(2, quest_state::committed_transactions).await;
    let three = growth_over_goal_turns(3, quest_state::committed_transactions).await;
    assert_eq!(
        three - two,
        2,
        "commits: {two} for 2 turns, {three} for 3 turns"
    );
}

/// A goal turn that runs a tool and then reports hands work to the blocking pool four times:
/// starting the turn (re-reading the goal), charging and committing the response that asked for
/// the tool, after the tool, and at the turn's end (which also decides the next turn). Each
/// hand-off costs thread wake-ups, so store calls that can share one do. Measured like the
/// commits above, as the difference between a 3-turn and a 2-turn run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goal_turn_costs_four_handoffs_to_the_blocking_pool() {
    let two = growth_over_goal_turns(2, quest_core::blocking::handoffs).await;
    let three = growth_over_goal_turns(3, quest_core::blocking::handoffs).await;
    assert_eq!(
        three - two,
        4,
        "hand-offs: {two} for 2 turns, {three} for 3 turns"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_pauses_the_goal() {
    let h = Harness::new(
        Script::new([]).with_default(Step::message("thinking").delay(Duration::from_secs(120))),
        &[],
    )
    .await;
    let mut t = h.start_goal("long task", GoalBudgets::default());
    wait_for(&mut t.events, |e| {
        matches!(e.msg, EventMsg::TurnStarted { .. })
    })
    .await;
    h.mock.wait_for_requests(1, support::TIMEOUT).await.unwrap();
    h.manager.interrupt(&t.thread_id, true).unwrap();
    wait_for(&mut t.events, |e| matches!(e.msg, EventMsg::TurnAborted)).await;
    let goal = h.goal(&t);
    assert_eq!(goal.status, GoalStatus::Paused);
    assert_eq!(goal.last_transition.unwrap().reason, GoalReason::Interrupt);
    h.manager.shutdown().await;
    assert_eq!(h.mock.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_threads_run_goals_at_once_without_crosstalk() {
    let h = Harness::new(progress_model("echo {n}"), &[]).await;
    let budgets = |turns| GoalBudgets {
        turns: Some(turns),
        ..GoalBudgets::default()
    };
    let mut a = h.start_goal("thread a", budgets(2));
    let mut b = h.start_goal("thread b", budgets(3));
    let (events_a, events_b) = tokio::join!(until_idle(&mut a.events), until_idle(&mut b.events));
    assert!(events_a.iter().all(|e| e.thread_id == a.thread_id));
    assert!(events_b.iter().all(|e| e.thread_id == b.thread_id));
    let (goal_a, goal_b) = (h.goal(&a), h.goal(&b));
    assert_eq!(
        (goal_a.status, goal_a.turns_used),
        (GoalStatus::BudgetLimited, 2)
    );
    assert_eq!(
        (goal_b.status, goal_b.turns_used),
        (GoalStatus::BudgetLimited, 3)
    );
    assert_eq!(goal_a.objective, "thread a");
    let per_thread = |id: &quest_protocol::ThreadId| {
        h.mock
            .requests()
            .iter()
            .filter(|r| r.headers.get("session-id") == Some(&id.to_string()))
            .count()
    };
    assert_eq!((per_thread(&a.thread_id), per_thread(&b.thread_id)), (4, 6));
    // The two loops overlapped in time rather than running one after the other.
    let turns = |events: &[quest_core::Event]| {
        events
            .iter()
            .filter(|e| matches!(e.msg, EventMsg::TurnStarted { .. }))
            .count()
    };
    assert_eq!((turns(&events_a), turns(&events_b)), (2, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounting_never_charges_a_goal_that_replaced_the_turns_goal() {
    let h = Harness::new(
        Script::new([
            Step::function_call("exec_command", json!({"cmd": "sleep 2; echo done"}))
                .with_usage(usage()),
            Step::message("finished").with_usage(usage()),
        ]),
        &[],
    )
    .await;
    let mut t = h
        .manager
        .start_thread(ThreadOptions {
            goal_loop: false,
            headless: false,
        })
        .unwrap();
    let new_goal = |objective: &str| NewGoal {
        objective: objective.to_string(),
        replace: true,
        ..NewGoal::default()
    };
    h.manager
        .create_goal(&t.thread_id, new_goal("first"))
        .unwrap();
    t.handle.submit(Op::UserInput {
        text: "go".to_string(),
    });
    wait_for(&mut t.events, |e| {
        matches!(e.msg, EventMsg::ExecCommandBegin { .. })
    })
    .await;
    // Another process replaces the goal while the command runs.
    let other = ThreadManager::new(h.manager.config().clone(), ManagerOptions::default()).unwrap();
    let replacement = other.create_goal(&t.thread_id, new_goal("second")).unwrap();
    wait_for(&mut t.events, |e| {
        matches!(e.msg, EventMsg::TurnCompleted { .. })
    })
    .await;
    let goal = h.goal(&t);
    assert_eq!(goal.goal_id, replacement.goal_id);
    assert_eq!((goal.tokens_used, goal.turns_used), (0, 0));
    assert_eq!(goal.no_progress_streak, 0);
    h.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goal_resumed_by_another_process_is_picked_up_by_the_loaded_thread() {
    let h = Harness::new(
        Script::new([
            Step::update_goal("blocked"),
            Step::message("Blocked."),
            Step::update_goal("complete"),
            Step::message("Done after all."),
        ]),
        &["goals.heartbeat_interval=\"100ms\""],
    )
    .await;
    let mut t = h.start_goal("ship", GoalBudgets::default());
    until_idle(&mut t.events).await;
    assert_eq!(h.goal(&t).status, GoalStatus::Blocked);
    // `quest goal resume` from a shell: another manager over the same database.
    let other = ThreadManager::new(h.manager.config().clone(), ManagerOptions::default()).unwrap();
    assert_eq!(
        other.goal_runner(&t.thread_id).unwrap(),
        None,
        "same process"
    );
    other.resume_goal(&t.thread_id, false).unwrap();
    let events = until_idle(&mut t.events).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e.msg, EventMsg::TurnStarted { .. })),
        "{events:#?}"
    );
    assert_eq!(h.goal(&t).status, GoalStatus::Complete);
    assert_eq!(h.mock.request_count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_budget_stop_runs_notify() {
    let notify_dir = tempfile::tempdir().unwrap();
    let out = notify_dir.path().join("notified.jsonl");
    let notify = format!(
        "notify=[\"sh\", \"-c\", \"printf '%s\\\\n' \\\"$1\\\" >> {}\", \"notify\"]",
        out.display()
    );
    let h = Harness::new(
        Script::new([]),
        &["goals.heartbeat_interval=\"100ms\"", &notify],
    )
    .await;
    // A loaded, idle thread whose goal has a 1 s time budget: only the heartbeat can stop it.
    let mut t = h
        .manager
        .start_thread(ThreadOptions {
            goal_loop: false,
            headless: false,
        })
        .unwrap();
    h.manager
        .create_goal(
            &t.thread_id,
            NewGoal {
                objective: "wait".to_string(),
                budgets: GoalBudgets {
                    time_seconds: Some(1),
                    ..GoalBudgets::default()
                },
                ..NewGoal::default()
            },
        )
        .unwrap();
    wait_for(
        &mut t.events,
        |e| matches!(&e.msg, EventMsg::GoalUpdated(g) if g.status == GoalStatus::BudgetLimited),
    )
    .await;
    let deadline = std::time::Instant::now() + support::TIMEOUT;
    let text = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.contains("budgetLimited") || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(text.contains("\"budget_time\""), "notify payload: {text:?}");
    h.manager.shutdown().await;
    assert_eq!(h.mock.request_count(), 0);
}

/// The user texts of a captured request's input, in order.
#[allow(clippy::expect_used)]
fn user_texts(request: &quest_mock_model::CapturedRequest) -> Vec<String> {
    request
        .typed_input()
        .expect("the request input parses")
        .iter()
        .filter(|item| item.role() == Some("user"))
        .filter_map(|item| item.message_text())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goal_changes_carry_their_origin_and_only_user_changes_reach_the_model() {
    use quest_core::GoalUpdate;
    use quest_protocol::goal::GoalOrigin;
    let h = Harness::new(Script::new([]).with_default(Step::message("noted")), &[]).await;
    // A loaded thread without a goal loop: goal changes only, then one user turn.
    let mut t = h
        .manager
        .start_thread(ThreadOptions {
            goal_loop: false,
            headless: true,
        })
        .unwrap();
    let id = t.thread_id;
    h.manager
        .create_goal(
            &id,
            NewGoal {
                objective: "first objective".into(),
                origin: Some(GoalOrigin::User),
                ..NewGoal::default()
            },
        )
        .unwrap();
    // A client acting on its own pauses: audited as automatic, nothing for the model.
    h.manager
        .update_goal(
            &id,
            GoalUpdate {
                status: Some(GoalStatus::Paused),
                origin: Some(GoalOrigin::Automatic),
                ..GoalUpdate::default()
            },
        )
        .unwrap();
    // The user edits the objective and resumes in one change.
    h.manager
        .update_goal(
            &id,
            GoalUpdate {
                objective: Some("second objective".into()),
                status: Some(GoalStatus::Active),
                origin: Some(GoalOrigin::User),
                ..GoalUpdate::default()
            },
        )
        .unwrap();
    // A budget-only change by the user writes nothing for the model.
    h.manager
        .update_goal(
            &id,
            GoalUpdate {
                token_budget: quest_protocol::goal::BudgetChange::Set(50_000),
                origin: Some(GoalOrigin::User),
                ..GoalUpdate::default()
            },
        )
        .unwrap();
    // A clear without an origin records nothing for the model either.
    assert!(h.manager.clear_goal(&id, None).unwrap());
    t.handle.submit(Op::UserInput {
        text: "what now?".into(),
    });
    wait_for(&mut t.events, |e| {
        matches!(e.msg, EventMsg::TurnCompleted { .. })
    })
    .await;
    let texts = user_texts(&h.mock.request(0).unwrap());
    let records: Vec<&String> = texts
        .iter()
        .filter(|t| t.contains("source=\"user_goal\""))
        .collect();
    assert_eq!(records.len(), 3, "{texts:#?}");
    assert!(records[0].contains("User set the goal: \"first objective\""));
    assert!(records[1].contains("User set the goal: \"second objective\""));
    assert!(records[2].contains("User set goal status: \"active\"."));
    assert_eq!(texts.last().map(String::as_str), Some("what now?"));
    // The audit trail keeps each change's origin.
    let origins: Vec<Option<GoalOrigin>> = h
        .manager
        .goal_log(&id, 100)
        .unwrap()
        .iter()
        .map(|e| e.origin)
        .collect();
    assert_eq!(
        origins,
        [
            Some(GoalOrigin::User),
            Some(GoalOrigin::Automatic),
            Some(GoalOrigin::User),
            Some(GoalOrigin::User),
            None
        ]
    );

    // On a thread this process has not loaded, a user clear lands in the rollout, so the model
    // sees it when the thread is resumed.
    h.manager
        .create_goal(
            &id,
            NewGoal {
                objective: "third objective".into(),
                origin: Some(GoalOrigin::Automatic),
                ..NewGoal::default()
            },
        )
        .unwrap();
    h.manager.shutdown_thread(&id).await.unwrap();
    assert!(h.manager.clear_goal(&id, Some(GoalOrigin::User)).unwrap());
    let mut resumed = h
        .manager
        .resume_thread(
            id,
            ThreadOptions {
                goal_loop: false,
                headless: true,
            },
        )
        .unwrap();
    resumed.handle.submit(Op::UserInput {
        text: "and now?".into(),
    });
    wait_for(&mut resumed.events, |e| {
        matches!(e.msg, EventMsg::TurnCompleted { .. })
    })
    .await;
    let texts = user_texts(&h.mock.request(1).unwrap());
    let records: Vec<&String> = texts
        .iter()
        .filter(|t| t.contains("source=\"user_goal\""))
        .collect();
    assert_eq!(records.len(), 4, "{texts:#?}");
    assert!(records[3].contains("User cleared the goal."), "{texts:#?}");
    assert!(!texts.iter().any(|t| t.contains("third objective")));
}

/// `quest exec` drives everything on one runtime thread, which a blocked write holds up (its
/// `--json` reader stopped reading). The lease must keep beating meanwhile, or the goal of a
/// live process would go stale and be taken for a crashed one's.
#[tokio::test(flavor = "current_thread")]
async fn the_lease_keeps_beating_while_the_runtime_is_held_up() {
    let h = Harness::new(
        Script::new([Step::update_goal("blocked"), Step::message("Blocked.")]),
        &["goals.heartbeat_interval=\"50ms\""],
    )
    .await;
    let mut t = h.start_goal("ship", GoalBudgets::default());
    until_idle(&mut t.events).await;
    let store = quest_state::Store::open_in(h.home.path()).unwrap();
    let lease = |what: &str| {
        store
            .lease(&t.thread_id)
            .unwrap()
            .unwrap_or_else(|| panic!("no lease {what}"))
            .heartbeat_at_ms
    };
    let before = lease("before");
    // Hold the only runtime thread, as a write to a full pipe would.
    std::thread::sleep(Duration::from_millis(600));
    let after = lease("after");
    assert!(
        after >= before + 300,
        "no heartbeat while the runtime was held up: {before} -> {after}"
    );
}
