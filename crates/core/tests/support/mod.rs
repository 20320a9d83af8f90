//! In-process harness: a `ThreadManager` over a temporary Quest home, talking to a real
//! `quest-mock-model` server over TCP. Waits on events with generous timeouts; never sleeps.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use quest_core::goal::GoalBudgets;
use quest_core::{
    ConfigOverrides, Event, EventMsg, EventStream, ManagerOptions, NewGoal, StartedThread,
    ThreadManager, ThreadOptions, load_config,
};
use quest_mock_model::{Condition, MockModel, Rule, Script, Step};
use quest_protocol::goal::GoalStatus;
use quest_protocol::goal::transition::GoalState;
use serde_json::json;

/// Long enough for a loaded 2-core machine; only reached when something is broken.
pub const TIMEOUT: Duration = Duration::from_secs(60);

pub struct Harness {
    pub home: tempfile::TempDir,
    pub work: tempfile::TempDir,
    pub mock: MockModel,
    pub manager: ThreadManager,
}

impl Harness {
    /// A manager whose provider is `mock`, with fast backoffs and extra `-c` overrides.
    pub async fn new(script: Script, overrides: &[&str]) -> Harness {
        let mock = MockModel::start(script).await;
        let home = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let mut raw = vec![
            "model_provider=mock".to_string(),
            format!(
                "model_providers.mock={{name=\"mock\", base_url=\"{}\", wire_api=\"responses\", request_max_retries=1, stream_max_retries=1}}",
                mock.uri()
            ),
            "model=gpt-test".to_string(),
            "model_client.retry_backoff_base_ms=10".to_string(),
            "goals.no_progress_backoff=[\"10ms\"]".to_string(),
        ];
        raw.extend(overrides.iter().map(|s| s.to_string()));
        let loaded = load_config(ConfigOverrides {
            home: Some(home.path().to_path_buf()),
            cwd: Some(work.path().to_path_buf()),
            raw_overrides: raw,
            ..ConfigOverrides::default()
        })
        .unwrap();
        let manager =
            ThreadManager::new(Arc::new(loaded.config), ManagerOptions::default()).unwrap();
        Harness {
            home,
            work,
            mock,
            manager,
        }
    }

    /// A thread running the goal loop with a fresh goal; the loop is started.
    pub fn start_goal(&self, objective: &str, budgets: GoalBudgets) -> StartedThread {
        let started = self
            .manager
            .start_thread(ThreadOptions {
                goal_loop: true,
                headless: false,
            })
            .unwrap();
        self.manager
            .create_goal(
                &started.thread_id,
                NewGoal {
                    objective: objective.to_string(),
                    budgets,
                    replace: true,
                    ..NewGoal::default()
                },
            )
            .unwrap();
        started.handle.submit(quest_core::Op::WakeIdle);
        started
    }

    pub fn goal(&self, started: &StartedThread) -> GoalState {
        self.manager.goal(&started.thread_id).unwrap().unwrap()
    }
}

/// Waits for the next event matching `pred`; returns every event seen up to and including it.
pub async fn wait_for(
    events: &mut EventStream,
    mut pred: impl FnMut(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(TIMEOUT, async {
        while let Some(event) = events.recv().await {
            let done = pred(&event);
            seen.push(event);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    match found {
        Ok(true) => seen,
        Ok(false) => panic!("event stream ended before the expected event; saw {seen:#?}"),
        Err(_) => panic!("timed out waiting for an event; saw {seen:#?}"),
    }
}

/// Waits until the thread goes idle (the goal loop stopped); returns the events.
pub async fn until_idle(events: &mut EventStream) -> Vec<Event> {
    wait_for(events, |e| matches!(e.msg, EventMsg::Idle)).await
}

/// The goal statuses announced in `events`, in order, without repeats.
pub fn statuses(events: &[Event]) -> Vec<GoalStatus> {
    let mut out: Vec<GoalStatus> = Vec::new();
    for event in events {
        if let EventMsg::GoalUpdated(goal) = &event.msg
            && out.last() != Some(&goal.status)
        {
            out.push(goal.status);
        }
    }
    out
}

/// Every goal turn runs `cmd` in the shell, then reports; the wind-down message is answered.
pub fn progress_model(cmd: &str) -> Script {
    Script::new([])
        .with_rule(Rule {
            name: Some("wind-down".into()),
            when: Condition {
                last_user_text_contains: Some("budget has been reached".into()),
                ..Condition::default()
            },
            then: Step::message("Wrapping up."),
            max_matches: None,
            verbatim: false,
        })
        .with_rule(Rule {
            name: Some("reply".into()),
            when: Condition {
                last_item_type: Some("function_call_output".into()),
                ..Condition::default()
            },
            then: Step::message("step done"),
            max_matches: None,
            verbatim: false,
        })
        .with_default(Step::function_call("exec_command", json!({"cmd": cmd})))
}
