//! Append and goal-write latency of the state store with `synchronous = FULL` (every commit is
//! fsynced). Run: `cargo bench -p quest-state --bench append`. The database lives under Cargo's
//! target tmp dir (a real disk, not tmpfs) unless `QUEST_BENCH_DIR` names another directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use quest_protocol::goal::{AccountingMode, Actor, CreateGoal, Trigger};
use quest_protocol::{ResponseItem, ThreadId};
use quest_state::{GoalContext, NewThread, Store};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn report(name: &str, items_per_op: usize, mut samples: Vec<Duration>) {
    let total: Duration = samples.iter().sum();
    samples.sort();
    let ops = samples.len() as f64 / total.as_secs_f64();
    println!(
        "| {name} | {} | {:.0} | {:.0} | {:.2} | {:.2} |",
        samples.len(),
        ops,
        ops * items_per_op as f64,
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
    );
}

fn main() {
    let base =
        std::env::var("QUEST_BENCH_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").to_owned());
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let store = Store::open_in(dir.path()).unwrap();
    let thread = ThreadId::new();
    store
        .create_thread(&NewThread {
            id: thread,
            cwd: "/bench".into(),
            model: "m".into(),
            model_provider: "p".into(),
        })
        .unwrap();
    let item = ResponseItem::FunctionCallOutput {
        id: None,
        call_id: Some("call_1".into()),
        name: None,
        namespace: None,
        output: "x".repeat(400),
    };

    println!("database: {}", store.path().display());
    println!("| operation | ops | ops/s | items/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");

    let single: Vec<_> = (0..1000)
        .map(|_| {
            let start = Instant::now();
            store
                .append_rollout(&thread, None, std::slice::from_ref(&item))
                .unwrap();
            start.elapsed()
        })
        .collect();
    report("append 1 item / txn", 1, single);

    let batch = vec![item; 16];
    let batched: Vec<_> = (0..300)
        .map(|_| {
            let start = Instant::now();
            store.append_rollout(&thread, None, &batch).unwrap();
            start.elapsed()
        })
        .collect();
    report("append 16 items / txn", 16, batched);

    store
        .apply_goal(
            &thread,
            &Trigger::Create(CreateGoal::new(thread.to_string(), "bench")),
            Actor::User,
            &GoalContext::default(),
        )
        .unwrap();
    let flush = Trigger::AccountUsage {
        tokens: 212,
        seconds: 1,
        turns: 0,
        mode: AccountingMode::ActiveOnly,
    };
    let goal_writes: Vec<_> = (0..1000)
        .map(|_| {
            let start = Instant::now();
            store
                .apply_goal(&thread, &flush, Actor::System, &GoalContext::default())
                .unwrap();
            start.elapsed()
        })
        .collect();
    report("apply_goal accounting flush", 1, goal_writes);

    let start = Instant::now();
    let history = store.load_rollout(&thread).unwrap();
    println!(
        "\nload_rollout of {} items: {:.1} ms",
        history.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
}
