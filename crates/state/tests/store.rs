//! Integration tests against real SQLite files in temporary directories, including concurrent
//! writers in other processes and a writer killed with SIGKILL.
// Helpers outside `#[test]` functions unwrap too: a failed setup step must fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::BufRead;
use std::path::PathBuf;
use std::str::FromStr;

use common::*;
use quest_protocol::goal::{
    AccountingMode, Actor, BudgetChange, CreateGoal, CreateMode, GoalEventKind, GoalOrigin,
    GoalReason, GoalStatus, Trigger, UpdateGoal,
};
use quest_protocol::{ThreadId, TokenUsage, TurnId};
use quest_state::{
    GoalContext, LeaseAcquire, SCHEMA_VERSION, StateError, Store, TurnStatus, TurnTrigger,
};

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in(dir.path().join("home")).unwrap();
    (dir, store)
}

fn user() -> GoalContext {
    GoalContext::default()
}

fn set_status(status: GoalStatus) -> Trigger {
    Trigger::SetStatus { status }
}

fn account(tokens: i64) -> Trigger {
    Trigger::AccountUsage {
        tokens,
        seconds: 0,
        turns: 0,
        mode: AccountingMode::ActiveOnly,
    }
}

// ------------------------------------------------------------------ child process entry

/// Not a test on its own: the body run by child processes that the tests below spawn.
#[test]
#[ignore = "entry point for child processes spawned by other tests"]
fn child_entry() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let db = PathBuf::from(std::env::var(CHILD_DB).unwrap());
    let thread = ThreadId::from_str(&std::env::var(CHILD_THREAD).unwrap()).unwrap();
    let count: usize = std::env::var(CHILD_COUNT).unwrap().parse().unwrap();
    let store = Store::open(&db).unwrap();
    let stdin = std::io::stdin();
    let mut go = String::new();
    match mode.as_str() {
        // Appends one item per transaction forever, reporting each committed seq.
        "append_forever" => {
            say("READY");
            for i in 0.. {
                let seq = store.append_rollout(&thread, None, &[item(i)]).unwrap();
                say(&format!("SEQ {seq}"));
            }
        }
        // Waits for "go", then charges `count` tokens one at a time and appends `count` items.
        "contend" => {
            say("READY");
            stdin.lock().read_line(&mut go).unwrap();
            for i in 0..count {
                store
                    .apply_goal(&thread, &account(1), Actor::System, &GoalContext::default())
                    .unwrap();
                store.append_rollout(&thread, None, &[item(i)]).unwrap();
            }
            say("DONE");
        }
        // Pauses the goal as the user would from another shell.
        "pause" => {
            let outcome = store
                .apply_goal(
                    &thread,
                    &set_status(GoalStatus::Paused),
                    Actor::User,
                    &GoalContext::default(),
                )
                .unwrap();
            say(&format!("STATUS {}", outcome.goal.unwrap().status));
        }
        // Holds the goal lease until stdin closes.
        "hold_lease" => {
            match store.acquire_lease(&thread).unwrap() {
                LeaseAcquire::Acquired(lease) => say(&format!("LEASE {}", lease.pid)),
                LeaseAcquire::HeldBy(other) => panic!("lease held by {other:?}"),
            }
            let _ = stdin.lock().read_line(&mut go);
        }
        other => panic!("unknown child mode {other}"),
    }
}

// ------------------------------------------------------------------ schema

#[test]
fn migrates_empty_database_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("nested").join("home");
    let store = Store::open_in(&home).unwrap();
    assert_eq!(store.path(), home.join("state.sqlite"));
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let thread = new_thread(&store);
    store.append_rollout(&thread, None, &[item(0)]).unwrap();
    drop(store);

    let raw = rusqlite::Connection::open(home.join("state.sqlite")).unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(raw);

    let store = Store::open_in(&home).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.load_rollout(&thread).unwrap(), vec![item(0)]);
}

#[test]
fn simultaneous_first_opens_migrate_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let (path, barrier) = (path.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let store = Store::open(&path).unwrap();
                new_thread(&store);
                store.schema_version().unwrap()
            })
        })
        .collect();
    for opener in openers {
        assert_eq!(opener.join().unwrap(), SCHEMA_VERSION);
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.list_threads(10).unwrap().len(), 4);
}

#[test]
fn refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    drop(Store::open(&path).unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.pragma_update(None, "user_version", 99).unwrap();
    drop(raw);
    match Store::open(&path) {
        Err(StateError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (99, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn goal_status_check_constraint_rejects_wire_spelling() {
    let (_dir, store) = temp_store();
    let raw = rusqlite::Connection::open(store.path()).unwrap();
    let err = raw
        .execute(
            "INSERT INTO thread_goals (thread_id, goal_id, objective, status, created_at_ms, updated_at_ms)
             VALUES ('t', 'g', 'o', 'usageLimited', 0, 0)",
            [],
        )
        .unwrap_err();
    assert!(err.to_string().contains("CHECK"), "{err}");
}

// ------------------------------------------------------------------ threads, turns, rollout

#[test]
fn batch_commits_turn_rows_items_compaction_and_goal_change_all_or_nothing() {
    use quest_protocol::{CompactedHistory, CompactionTrigger};
    use quest_state::{GoalWrite, PendingWrite};
    let (_dir, store) = temp_store();
    let thread = new_thread(&store);
    let goal_id = create_goal(&store, &thread, "batch me");
    let turn = TurnId::new();
    let compaction = CompactedHistory {
        summary: "s".into(),
        replacement_history: vec![item(100)],
        trigger: CompactionTrigger::Auto,
        tokens_before: 10,
        tokens_after: 1,
    };
    let writes = vec![
        PendingWrite::BeginTurn {
            thread_id: thread,
            turn_id: turn,
            trigger: TurnTrigger::Goal,
            at_ms: 1_000,
        },
        PendingWrite::Append {
            thread_id: thread,
            turn_id: Some(turn),
            items: vec![item(0), item(1)],
        },
        PendingWrite::Compaction {
            thread_id: thread,
            turn_id: Some(turn),
            record: Box::new(compaction),
        },
        PendingWrite::Append {
            thread_id: thread,
            turn_id: Some(turn),
            items: vec![item(2)],
        },
        PendingWrite::FinishTurn {
            turn_id: turn,
            status: TurnStatus::Completed,
            usage: Some(TokenUsage::default()),
            error: None,
            at_ms: 2_000,
        },
    ];
    // A refused goal change (this thread has no goal) rolls the whole batch back.
    let goalless = new_thread(&store);
    let refused = store.commit_batch(
        &writes,
        Some(GoalWrite {
            thread_id: &goalless,
            trigger: &set_status(GoalStatus::Paused),
            actor: Actor::User,
            ctx: &GoalContext::default(),
            only_if: None,
        }),
    );
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(store.rollout_len(&thread).unwrap(), 0);
    assert!(store.list_turns(&thread).unwrap().is_empty());
    // The same batch with an accepted change lands whole, in order.
    let outcome = store
        .commit_batch(
            &writes,
            Some(GoalWrite {
                thread_id: &thread,
                trigger: &account(7),
                actor: Actor::System,
                ctx: &GoalContext {
                    expected_goal_id: Some(goal_id),
                    ..GoalContext::default()
                },
                only_if: None,
            }),
        )
        .unwrap()
        .unwrap();
    assert_eq!(outcome.goal.unwrap().tokens_used, 7);
    let reopened = Store::open(store.path()).unwrap();
    let loaded = reopened.load_history(&thread).unwrap();
    assert_eq!(loaded.compactions, 1);
    // The compaction replaced what was queued before it; what came after follows it.
    assert_eq!(loaded.items, vec![item(100), item(2)]);
    let turns = reopened.list_turns(&thread).unwrap();
    assert_eq!(turns.len(), 1);
    assert_eq!(
        (turns[0].id, turns[0].status, turns[0].ended_at_ms),
        (turn, TurnStatus::Completed, Some(2_000))
    );
    // A batch naming a thread that does not exist fails whole and leaves the store as it was.
    let missing = ThreadId::new();
    let err = store
        .commit_batch(
            &[
                PendingWrite::Append {
                    thread_id: thread,
                    turn_id: None,
                    items: vec![item(3)],
                },
                PendingWrite::Append {
                    thread_id: missing,
                    turn_id: None,
                    items: vec![item(4)],
                },
            ],
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains(&missing.to_string()), "{err}");
    assert_eq!(
        store.load_history(&thread).unwrap().items,
        vec![item(100), item(2)]
    );
}

/// Appends to two threads, interleaved in one batch, number each thread's items on from its own
/// end, and the next batch carries on from there; each thread's `updated_at_ms` is the latest of
/// its writes in the batch (written once per thread, at the batch's end).
#[test]
fn batch_numbers_each_threads_items_from_its_own_end_and_touches_each_thread() {
    use quest_state::PendingWrite;
    let (_dir, store) = temp_store();
    let a = new_thread(&store);
    let b = new_thread(&store);
    store.append_rollout(&b, None, &[item(50)]).unwrap();
    let turn = TurnId::new();
    let append =
        |thread: ThreadId, items: Vec<quest_protocol::ResponseItem>| PendingWrite::Append {
            thread_id: thread,
            turn_id: None,
            items,
        };
    let later = 4_000_000_000_000;
    store
        .commit_batch(
            &[
                PendingWrite::BeginTurn {
                    thread_id: a,
                    turn_id: turn,
                    trigger: TurnTrigger::User,
                    at_ms: later,
                },
                append(a, vec![item(0), item(1)]),
                append(b, vec![item(51)]),
                append(a, vec![item(2)]),
                append(b, vec![item(52), item(53)]),
                PendingWrite::FinishTurn {
                    turn_id: turn,
                    status: TurnStatus::Completed,
                    usage: None,
                    error: None,
                    at_ms: later + 5,
                },
            ],
            None,
        )
        .unwrap();
    store
        .commit_batch(&[append(a, vec![item(3)]), append(b, vec![item(54)])], None)
        .unwrap();
    assert_eq!(
        store.load_rollout(&a).unwrap(),
        (0..4).map(item).collect::<Vec<_>>()
    );
    assert_eq!(
        store.load_rollout(&b).unwrap(),
        (50..55).map(item).collect::<Vec<_>>()
    );
    assert_eq!(
        (
            store.rollout_len(&a).unwrap(),
            store.rollout_len(&b).unwrap()
        ),
        (4, 5)
    );
    let thread_a = store.get_thread(&a).unwrap().unwrap();
    let thread_b = store.get_thread(&b).unwrap().unwrap();
    assert_eq!(thread_a.updated_at_ms, later + 5);
    assert!(thread_b.updated_at_ms < later, "{}", thread_b.updated_at_ms);
    assert!(thread_b.updated_at_ms >= thread_b.created_at_ms);
}

/// Several goal changes in one batch apply in order, each to the goal the one before it left,
/// and a change whose `only_if` status no longer holds is skipped: a turn's charge that trips
/// the budget leaves its classification out, in the same single commit.
#[test]
fn batch_applies_goal_changes_in_order_and_skips_those_whose_status_changed() {
    use quest_protocol::goal::transition::{BreakerThresholds, TurnOutcome};
    use quest_state::GoalWrite;
    let (_dir, store) = temp_store();
    let thread = new_thread(&store);
    let mut create = CreateGoal::new(thread.to_string(), "budgeted");
    create.token_budget = Some(10);
    store
        .apply_goal(&thread, &Trigger::Create(create), Actor::User, &user())
        .unwrap();
    let classify = Trigger::TurnClassified {
        outcome: TurnOutcome::NoProgress { blocker: None },
        thresholds: BreakerThresholds {
            max_no_progress_turns: 5,
            max_repeated_blocker_turns: 3,
        },
    };
    let ctx = GoalContext::default();
    let turn_end = |charge: &Trigger| {
        store.commit_batch_all(
            &[],
            &[
                GoalWrite {
                    thread_id: &thread,
                    trigger: charge,
                    actor: Actor::System,
                    ctx: &ctx,
                    only_if: None,
                },
                GoalWrite {
                    thread_id: &thread,
                    trigger: &classify,
                    actor: Actor::System,
                    ctx: &ctx,
                    only_if: Some(GoalStatus::Active),
                },
            ],
        )
    };
    let outcomes = turn_end(&account(7)).unwrap();
    assert_eq!(outcomes.len(), 2);
    let charged = outcomes[0].as_ref().unwrap().goal.as_ref().unwrap();
    assert_eq!((charged.tokens_used, charged.no_progress_streak), (7, 0));
    let classified = outcomes[1].as_ref().unwrap().goal.as_ref().unwrap();
    assert_eq!(
        (classified.tokens_used, classified.no_progress_streak),
        (7, 1)
    );
    // This charge exhausts the budget: the goal is no longer active, so no classification.
    let outcomes = turn_end(&account(5)).unwrap();
    let limited = outcomes[0].as_ref().unwrap().goal.as_ref().unwrap();
    assert_eq!(limited.status, GoalStatus::BudgetLimited);
    assert!(outcomes[1].is_none(), "{outcomes:?}");
    let stored = Store::open(store.path())
        .unwrap()
        .get_goal(&thread)
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.status, stored.tokens_used, stored.no_progress_streak),
        (GoalStatus::BudgetLimited, 12, 1)
    );
}

#[test]
fn compaction_record_replaces_earlier_history_on_load() {
    use quest_protocol::{CompactedHistory, CompactionTrigger};
    let (_dir, store) = temp_store();
    let thread = new_thread(&store);
    let turn = TurnId::new();
    store
        .append_rollout(&thread, None, &(0..10).map(item).collect::<Vec<_>>())
        .unwrap();
    let empty = store.load_history(&thread).unwrap();
    assert_eq!(empty.compactions, 0);
    assert_eq!(empty.items.len(), 10);
    let record = |summary: &str, keep: Vec<quest_protocol::ResponseItem>| CompactedHistory {
        summary: summary.into(),
        replacement_history: keep,
        trigger: CompactionTrigger::Auto,
        tokens_before: 5000,
        tokens_after: 300,
    };
    store
        .append_compaction(
            &thread,
            Some(&turn),
            &record("first", vec![item(0), item(100)]),
        )
        .unwrap();
    store
        .append_rollout(&thread, Some(&turn), &[item(11), item(12)])
        .unwrap();
    let loaded = store.load_history(&thread).unwrap();
    assert_eq!(loaded.compactions, 1);
    assert_eq!(loaded.items, vec![item(0), item(100), item(11), item(12)]);
    assert_eq!(store.load_rollout(&thread).unwrap(), loaded.items);
    // A second compaction wins over the first; items after it follow.
    store
        .append_compaction(&thread, None, &record("second", vec![item(200)]))
        .unwrap();
    store.append_rollout(&thread, None, &[item(13)]).unwrap();
    let reopened = Store::open(store.path()).unwrap();
    let loaded = reopened.load_history(&thread).unwrap();
    assert_eq!(loaded.compactions, 2);
    assert_eq!(loaded.items, vec![item(200), item(13)]);
    let records = reopened.list_compactions(&thread).unwrap();
    assert_eq!(
        records
            .iter()
            .map(|r| r.summary.as_str())
            .collect::<Vec<_>>(),
        ["first", "second"]
    );
    // The raw rollout keeps every row: nothing before a compaction is deleted.
    assert_eq!(reopened.rollout_len(&thread).unwrap(), 10 + 1 + 2 + 1 + 1);
    // The transcript shows every row in order, with its turn and the compactions in place.
    let transcript = reopened.load_transcript(&thread).unwrap();
    assert_eq!(transcript.len(), 15);
    assert_eq!(
        transcript[3].item,
        quest_state::TranscriptItem::Item(item(3))
    );
    assert_eq!(transcript[3].turn_id, None);
    match &transcript[10].item {
        quest_state::TranscriptItem::Compaction(c) => assert_eq!(c.summary, "first"),
        other => panic!("expected the first compaction, got {other:?}"),
    }
    assert_eq!(transcript[11].turn_id, Some(turn.to_string()));
    assert_eq!(
        transcript[12].item,
        quest_state::TranscriptItem::Item(item(12))
    );
    assert!(matches!(
        transcript[13].item,
        quest_state::TranscriptItem::Compaction(_)
    ));
    // Another thread is unaffected.
    let other = new_thread(&store);
    store.append_rollout(&other, None, &[item(1)]).unwrap();
    assert_eq!(store.load_history(&other).unwrap().compactions, 0);
}

#[test]
fn rollout_round_trips_exact_history() {
    let (_dir, store) = temp_store();
    let thread = new_thread(&store);
    let other = new_thread(&store);
    let turn = TurnId::new();
    let first: Vec<_> = (0..7).map(item).collect();
    let second: Vec<_> = (7..20).map(item).collect();
    assert_eq!(
        store.append_rollout(&thread, Some(&turn), &first).unwrap(),
        7
    );
    store.append_rollout(&other, None, &[item(99)]).unwrap();
    assert_eq!(store.append_rollout(&thread, None, &second).unwrap(), 20);
    assert_eq!(store.append_rollout(&thread, None, &[]).unwrap(), 20);
    let expected: Vec<_> = (0..20).map(item).collect();
    assert_eq!(store.load_rollout(&thread).unwrap(), expected);
    assert_eq!(store.rollout_len(&thread).unwrap(), 20);
    assert_eq!(store.load_rollout(&other).unwrap(), vec![item(99)]);
    // Reopening sees the same history.
    let reopened = Store::open(store.path()).unwrap();
    assert_eq!(reopened.load_rollout(&thread).unwrap(), expected);
    // Unknown thread.
    let missing = ThreadId::new();
    assert!(matches!(
        store.append_rollout(&missing, None, &[item(0)]),
        Err(StateError::NotFound { what: "thread", .. })
    ));
    assert!(store.load_rollout(&missing).unwrap().is_empty());
}

#[test]
fn threads_list_get_latest_and_preview() {
    let (_dir, store) = temp_store();
    let a = new_thread(&store);
    let b = new_thread(&store);
    store.append_rollout(&a, None, &[item(0)]).unwrap();
    let got = store.get_thread(&a).unwrap().unwrap();
    assert_eq!(
        (got.cwd.as_str(), got.model.as_str()),
        ("/work/project", "gpt-5.5")
    );
    assert!(store.get_thread(&ThreadId::new()).unwrap().is_none());
    let listed: Vec<_> = store
        .list_threads(10)
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&a) && listed.contains(&b));
    assert_eq!(store.list_threads(1).unwrap().len(), 1);
    let latest = store.latest_thread(Some("/work/project")).unwrap().unwrap();
    assert_eq!(latest.id, listed[0]);
    assert!(store.latest_thread(Some("/elsewhere")).unwrap().is_none());
    assert!(store.fill_thread_preview(&a, "first").unwrap());
    assert!(!store.fill_thread_preview(&a, "second").unwrap());
    store.set_thread_title(&a, "Title").unwrap();
    let got = store.get_thread(&a).unwrap().unwrap();
    assert_eq!(
        (got.preview.as_deref(), got.title.as_deref()),
        (Some("first"), Some("Title"))
    );
    assert!(store.set_thread_title(&ThreadId::new(), "x").is_err());
}

#[test]
fn turns_are_numbered_and_finished() {
    let (_dir, store) = temp_store();
    let thread = new_thread(&store);
    let t1 = TurnId::new();
    let t2 = TurnId::new();
    assert_eq!(
        store
            .begin_turn(&thread, &t1, TurnTrigger::Exec)
            .unwrap()
            .seq,
        1
    );
    assert_eq!(
        store
            .begin_turn(&thread, &t2, TurnTrigger::Goal)
            .unwrap()
            .seq,
        2
    );
    let usage = TokenUsage {
        input_tokens: 1100,
        cached_input_tokens: 900,
        output_tokens: 12,
        ..Default::default()
    };
    store
        .finish_turn(&t1, TurnStatus::Completed, Some(&usage), None)
        .unwrap();
    assert_eq!(store.interrupt_running_turns(&thread).unwrap(), 1);
    let turns = store.list_turns(&thread).unwrap();
    assert_eq!(turns[0].status, TurnStatus::Completed);
    assert_eq!(turns[0].usage, Some(usage));
    assert!(turns[0].ended_at_ms.is_some());
    assert_eq!(
        (turns[1].trigger, turns[1].status),
        (TurnTrigger::Goal, TurnStatus::Interrupted)
    );
    store
        .finish_turn(&t2, TurnStatus::Failed, None, Some("stream closed"))
        .unwrap();
    assert_eq!(
        store.list_turns(&thread).unwrap()[1].error.as_deref(),
        Some("stream closed")
    );
    assert!(matches!(
        store.finish_turn(&TurnId::new(), TurnStatus::Completed, None, None),
        Err(StateError::NotFound { what: "turn", .. })
    ));
}

// ------------------------------------------------------------------ goals

#[test]
fn goal_api_writes_row_and_audit_trail() {
    let (_dir, store) = temp_store();
    let thread = new_thread(&store);
    assert!(store.get_goal(&thread).unwrap().is_none());

    let mut create = CreateGoal::new(thread.to_string(), "  make tests pass ");
    create.token_budget = Some(300);
    let turn = TurnId::new().to_string();
    let created = store
        .apply_goal(
            &thread,
            &Trigger::Create(create),
            Actor::Model,
            &GoalContext {
                turn_id: Some(turn.clone()),
                ..GoalContext::default()
            },
        )
        .unwrap();
    let goal = created.goal.clone().unwrap();
    assert_eq!(
        (goal.objective.as_str(), goal.status),
        ("make tests pass", GoalStatus::Active)
    );
    assert!(created.changed && created.status_changed);
    let ev = created.event.unwrap();
    assert_eq!((ev.actor, ev.kind), (Actor::Model, GoalEventKind::Created));
    assert_eq!(ev.turn_id.as_deref(), Some(turn.as_str()));
    assert!(ev.id.is_some());
    assert_eq!(store.get_goal(&thread).unwrap(), Some(goal.clone()));

    // 212 per flush against a budget of 300 → budgetLimited after the 2nd flush at 424.
    let first = store
        .apply_goal(&thread, &account(212), Actor::System, &user())
        .unwrap();
    assert!(first.changed && first.event.is_none());
    let second = store
        .apply_goal(&thread, &account(212), Actor::System, &user())
        .unwrap();
    let g = store.get_goal(&thread).unwrap().unwrap();
    assert_eq!((g.status, g.tokens_used), (GoalStatus::BudgetLimited, 424));
    assert_eq!(second.event.unwrap().reason, GoalReason::BudgetTokens);
    assert_eq!(
        g.to_wire().last_transition.unwrap().reason,
        GoalReason::BudgetTokens
    );

    // A refused request writes nothing and carries the exact message.
    let err = store
        .apply_goal(
            &thread,
            &set_status(GoalStatus::Active),
            Actor::Model,
            &user(),
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("update_goal can only mark the existing goal complete")
    );
    let err = store
        .apply_goal(&ThreadId::new(), &Trigger::Resume, Actor::User, &user())
        .unwrap_err();
    assert!(err.to_string().ends_with(": no goal exists"), "{err}");
    assert!(!err.to_string().contains("thread :"), "{err}");

    // Raise the budget and resume: same goal active again, origin recorded.
    let resume = UpdateGoal {
        thread_id: thread.to_string(),
        status: Some(GoalStatus::Active),
        token_budget: BudgetChange::Set(10_000),
        ..UpdateGoal::default()
    };
    let out = store
        .apply_goal(
            &thread,
            &Trigger::Update(resume),
            Actor::User,
            &GoalContext {
                origin: Some(GoalOrigin::User),
                ..GoalContext::default()
            },
        )
        .unwrap();
    assert_eq!(out.goal.as_ref().unwrap().status, GoalStatus::Active);
    assert_eq!(out.goal.as_ref().unwrap().goal_id, goal.goal_id);
    assert_eq!(out.event.as_ref().unwrap().origin, Some(GoalOrigin::User));

    // Clear, then the events of the cleared goal are still there.
    let cleared = store
        .apply_goal(&thread, &Trigger::Clear, Actor::User, &user())
        .unwrap();
    assert!(cleared.goal.is_none() && cleared.changed);
    assert!(store.get_goal(&thread).unwrap().is_none());
    let again = store
        .apply_goal(&thread, &Trigger::Clear, Actor::User, &user())
        .unwrap();
    assert!(!again.changed);

    let page = store.goal_events(&thread, None, 100, None).unwrap();
    let kinds: Vec<_> = page.events.iter().map(|e| (e.kind, e.reason)).collect();
    assert_eq!(
        kinds,
        vec![
            (GoalEventKind::Created, GoalReason::ToolUpdateGoal),
            (GoalEventKind::StatusChanged, GoalReason::BudgetTokens),
            (GoalEventKind::BudgetChanged, GoalReason::UserRequest),
            (GoalEventKind::Cleared, GoalReason::UserRequest),
        ]
    );
    assert_eq!(page.events[1].detail["tokensUsed"], 424);
    assert_eq!(page.events[1].from_status, Some(GoalStatus::Active));
    assert_eq!(page.events[3].to_status, None);
    assert_eq!(page.next_cursor, None);
}

#[test]
fn replacement_keeps_history_and_drops_the_first_turn_trace() {
    let (_dir, store) = temp_store();
    let thread = new_thread(&store);
    let first = create_goal(&store, &thread, "first");
    assert!(
        store
            .set_goal_first_turn_trace_context(&thread, &first, "00-abc-def-01")
            .unwrap()
    );
    assert!(
        !store
            .set_goal_first_turn_trace_context(&thread, &first, "00-xyz-def-01")
            .unwrap()
    );

    let mut replace = CreateGoal::new(thread.to_string(), "second");
    replace.mode = CreateMode::Replace;
    let out = store
        .apply_goal(&thread, &Trigger::Create(replace), Actor::User, &user())
        .unwrap();
    let second = out.goal.unwrap().goal_id;
    assert_ne!(first, second);
    assert_eq!(store.goal_first_turn_trace_context(&thread).unwrap(), None);

    let all = store.goal_events(&thread, None, 10, None).unwrap().events;
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].kind, GoalEventKind::Replaced);
    assert_eq!(all[1].detail["replacedGoalId"], first.as_str());
    let only_first = store
        .goal_events(&thread, Some(&first), 10, None)
        .unwrap()
        .events;
    assert_eq!(only_first.len(), 1);
    assert_eq!(only_first[0].goal_id, first);

    // A write aimed at the replaced goal does nothing.
    let stale = store
        .apply_goal(
            &thread,
            &account(50),
            Actor::System,
            &GoalContext {
                expected_goal_id: Some(first),
                ..GoalContext::default()
            },
        )
        .unwrap();
    assert!(!stale.changed);
    assert_eq!(store.get_goal(&thread).unwrap().unwrap().tokens_used, 0);
    let fresh = store
        .apply_goal(
            &thread,
            &account(50),
            Actor::System,
            &GoalContext {
                expected_goal_id: Some(second),
                ..GoalContext::default()
            },
        )
        .unwrap();
    assert!(fresh.changed);
}

#[test]
fn goal_events_paginate_with_cursor() {
    let (_dir, store) = temp_store();
    let thread = new_thread(&store);
    create_goal(&store, &thread, "paging");
    for _ in 0..3 {
        store
            .apply_goal(
                &thread,
                &set_status(GoalStatus::Paused),
                Actor::User,
                &user(),
            )
            .unwrap();
        store
            .apply_goal(&thread, &Trigger::Resume, Actor::User, &user())
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.goal_events(&thread, None, 3, cursor).unwrap();
        assert!(page.events.len() <= 3);
        seen.extend(page.events.iter().map(|e| e.id.unwrap()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn reconcile_pauses_active_goal_without_live_lease() {
    let (_dir, store) = temp_store();
    let thread = new_thread(&store);
    create_goal(&store, &thread, "survive restarts");

    // auto_continue keeps it active.
    let kept = store.reconcile_on_load(&thread, true).unwrap();
    assert!(!kept.changed);
    assert_eq!(kept.goal.unwrap().status, GoalStatus::Active);

    // Our own live lease keeps it active too.
    let LeaseAcquire::Acquired(lease) = store.acquire_lease(&thread).unwrap() else {
        panic!("lease not acquired");
    };
    assert!(lease.is_live(quest_state::now_ms()));
    assert!(!store.reconcile_on_load(&thread, false).unwrap().changed);
    assert!(store.release_lease(&lease).unwrap());
    assert!(!store.release_lease(&lease).unwrap());

    // No lease (never run, or released on a clean exit): readers leave the goal alone.
    let untouched = store.reconcile_on_load(&thread, false).unwrap();
    assert!(!untouched.changed);
    assert_eq!(untouched.goal.unwrap().status, GoalStatus::Active);

    // A lease whose process is gone: paused, system, process_exit, unclean.
    let LeaseAcquire::Acquired(lease) = store.acquire_lease(&thread).unwrap() else {
        panic!("lease not acquired");
    };
    let later = lease.heartbeat_at_ms + quest_state::LEASE_STALE_AFTER_MS + 1;
    let out = store.reconcile_on_load_at(&thread, false, later).unwrap();
    assert!(out.changed);
    assert_eq!(out.goal.unwrap().status, GoalStatus::Paused);
    let ev = out.event.unwrap();
    assert_eq!(
        (ev.actor, ev.reason),
        (Actor::System, GoalReason::ProcessExit)
    );
    assert_eq!(ev.detail["exit"], "unclean");
    // Idempotent.
    assert!(!store.reconcile_on_load(&thread, false).unwrap().changed);
}

#[test]
fn stale_heartbeat_makes_a_lease_dead() {
    let (_dir, store) = temp_store();
    let thread = new_thread(&store);
    create_goal(&store, &thread, "x");
    let LeaseAcquire::Acquired(lease) = store.acquire_lease(&thread).unwrap() else {
        panic!("lease not acquired");
    };
    let later = lease.heartbeat_at_ms + quest_state::LEASE_STALE_AFTER_MS + 1;
    assert!(!lease.is_live(later));
    let out = store.reconcile_on_load_at(&thread, false, later).unwrap();
    assert_eq!(out.goal.unwrap().status, GoalStatus::Paused);
    assert!(
        store.lease(&thread).unwrap().is_none(),
        "dead lease row removed"
    );
    // The holder notices on its next heartbeat.
    assert!(matches!(
        store.heartbeat(&lease, 1),
        Err(StateError::LeaseLost { .. })
    ));
}

#[test]
fn recycled_pid_with_other_start_identity_is_not_live() {
    let (_dir, store) = temp_store();
    let thread = new_thread(&store);
    let LeaseAcquire::Acquired(mut lease) = store.acquire_lease(&thread).unwrap() else {
        panic!("lease not acquired");
    };
    let now = quest_state::now_ms();
    assert!(lease.is_live(now));
    if lease.process_start.is_some() {
        lease.process_start = Some("other-boot:1".into());
        assert!(!lease.is_live(now));
    }
    // A pid that has exited is not live.
    let mut done = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = done.id();
    done.wait().unwrap();
    lease.pid = dead_pid;
    lease.process_start = None;
    assert!(!lease.is_live(now));
}

#[test]
fn heartbeat_flushes_time_and_can_trip_time_budget() {
    let (_dir, store) = temp_store();
    let thread = new_thread(&store);
    let mut create = CreateGoal::new(thread.to_string(), "timed");
    create.time_budget_seconds = Some(20);
    store
        .apply_goal(&thread, &Trigger::Create(create), Actor::User, &user())
        .unwrap();
    let LeaseAcquire::Acquired(lease) = store.acquire_lease(&thread).unwrap() else {
        panic!("lease not acquired");
    };
    let (lease, out) = store.heartbeat(&lease, 15).unwrap();
    assert_eq!(out.goal.unwrap().time_used_seconds, 15);
    let (_, out) = store.heartbeat(&lease, 15).unwrap();
    let goal = out.goal.unwrap();
    assert_eq!(
        (goal.status, goal.time_used_seconds),
        (GoalStatus::BudgetLimited, 30)
    );
    assert_eq!(out.event.unwrap().reason, GoalReason::BudgetTime);
    assert_eq!(
        store.lease(&thread).unwrap().unwrap().holder_id,
        lease.holder_id
    );
}

// ------------------------------------------------------------------ concurrency

#[test]
fn two_threads_with_their_own_connections_lose_no_writes() {
    let (_dir, store) = temp_store();
    let thread = new_thread(&store);
    create_goal(&store, &thread, "contend");
    let path = store.path().to_path_buf();
    const N: usize = 150;
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let path = path.clone();
            std::thread::spawn(move || {
                let own = Store::open(&path).unwrap();
                for i in 0..N {
                    own.apply_goal(&thread, &account(1), Actor::System, &GoalContext::default())
                        .unwrap();
                    own.append_rollout(&thread, None, &[item(w * 1000 + i)])
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(
        store.get_goal(&thread).unwrap().unwrap().tokens_used,
        2 * N as i64
    );
    let items = store.load_rollout(&thread).unwrap();
    assert_eq!(items.len(), 2 * N);
    for w in 0..2 {
        let mine: Vec<_> = items
            .iter()
            .filter(|it| (0..N).any(|i| **it == item(w * 1000 + i)))
            .cloned()
            .collect();
        let expected: Vec<_> = (0..N).map(|i| item(w * 1000 + i)).collect();
        assert_eq!(mine, expected, "worker {w} items out of order or lost");
    }
}

#[test]
fn two_processes_and_this_one_serialize_on_the_same_file() {
    let (_dir, store) = temp_store();
    let thread = new_thread(&store);
    create_goal(&store, &thread, "contend across processes");
    const N: usize = 100;
    let mut children: Vec<_> = (0..2)
        .map(|_| spawn_child("contend", store.path(), &thread, N))
        .collect();
    for c in &children {
        c.expect("READY");
    }
    for c in &mut children {
        c.send("go");
    }
    for i in 0..N {
        store
            .apply_goal(&thread, &account(1), Actor::System, &user())
            .unwrap();
        store.append_rollout(&thread, None, &[item(i)]).unwrap();
    }
    for c in children {
        c.expect("DONE");
        c.wait_success();
    }
    assert_eq!(
        store.get_goal(&thread).unwrap().unwrap().tokens_used,
        3 * N as i64
    );
    assert_eq!(store.rollout_len(&thread).unwrap(), 3 * N as i64);
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

#[test]
fn pause_from_another_process_is_seen_by_the_running_one() {
    let (_dir, store) = temp_store();
    let thread = new_thread(&store);
    create_goal(&store, &thread, "pause me");
    let child = spawn_child("pause", store.path(), &thread, 0);
    assert_eq!(child.expect("STATUS"), "paused");
    child.wait_success();
    let goal = store.get_goal(&thread).unwrap().unwrap();
    assert_eq!(goal.status, GoalStatus::Paused);
    let events = store.goal_events(&thread, None, 10, None).unwrap().events;
    assert_eq!(events.last().unwrap().actor, Actor::User);
}

#[test]
fn sigkilled_writer_leaves_a_readable_prefix() {
    let (_dir, store) = temp_store();
    let thread = new_thread(&store);
    let mut child = spawn_child("append_forever", store.path(), &thread, 0);
    child.expect("READY");
    let mut last = 0;
    while last < 60 {
        last = child.expect("SEQ").parse().unwrap();
    }
    child.child.kill().unwrap(); // SIGKILL on Unix
    child.child.wait().unwrap();

    let reopened = Store::open(store.path()).unwrap();
    assert_eq!(reopened.integrity_check().unwrap(), "ok");
    let items = reopened.load_rollout(&thread).unwrap();
    assert!(
        items.len() as i64 >= last,
        "lost committed items: {} < {last}",
        items.len()
    );
    for (i, it) in items.iter().enumerate() {
        assert_eq!(*it, item(i), "item {i} differs");
    }
    // The database stays writable after the crash.
    let next = reopened
        .append_rollout(&thread, None, &[item(items.len())])
        .unwrap();
    assert_eq!(next, items.len() as i64 + 1);
}

#[test]
fn lease_held_by_a_live_process_then_freed_by_its_death() {
    let (_dir, store) = temp_store();
    let thread = new_thread(&store);
    create_goal(&store, &thread, "leased");
    let mut holder = spawn_child("hold_lease", store.path(), &thread, 0);
    let pid: u32 = holder.expect("LEASE").parse().unwrap();
    assert_eq!(pid, holder.child.id());

    match store.acquire_lease(&thread).unwrap() {
        LeaseAcquire::HeldBy(lease) => assert_eq!(lease.pid, pid),
        LeaseAcquire::Acquired(lease) => panic!("took a live lease: {lease:?}"),
    }
    let out = store.reconcile_on_load(&thread, false).unwrap();
    assert!(
        !out.changed,
        "a goal run by a live process must stay active"
    );

    holder.child.kill().unwrap();
    holder.child.wait().unwrap();
    let out = store.reconcile_on_load(&thread, false).unwrap();
    assert_eq!(out.goal.unwrap().status, GoalStatus::Paused);
    assert!(matches!(
        store.acquire_lease(&thread).unwrap(),
        LeaseAcquire::Acquired(_)
    ));
}

fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn home_is_private_and_database_files_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let store = Store::open_in(&home).unwrap();
    // A write makes SQLite create the WAL and shared-memory files.
    new_thread(&store);
    assert_eq!(mode_of(&home), 0o700);
    let db = home.join("state.sqlite");
    for file in [
        db.clone(),
        home.join("state.sqlite-wal"),
        home.join("state.sqlite-shm"),
    ] {
        assert!(file.exists(), "{} missing", file.display());
        assert_eq!(mode_of(&file), 0o600, "{}", file.display());
    }
    drop(store);

    // An existing home and database left open by an older version are narrowed.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _store = Store::open_in(&home).unwrap();
    assert_eq!(mode_of(&home), 0o700);
    assert_eq!(mode_of(&db), 0o600);
}
