//! Goal scenarios: `quest exec --goal` and `quest goal …` against the scripted model over TCP.
//! Each test asserts the final status, the audit log and how many requests the model received.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::{TestEnv, jsonl, run, thread_id};
use quest_mock_model::{Condition, MockModel, Output, Rule, Script, Step, Usage};
use serde_json::{Value, json};

const FAST_BACKOFF: [&str; 2] = ["-c", "goals.no_progress_backoff=[\"10ms\"]"];

/// A model that makes progress every turn: it runs `cmd`, then reports; after a budget
/// wind-down message it only wraps up.
fn progress_model(cmd: &str, usage: Option<Usage>) -> Script {
    let with_usage = |step: Step| match usage {
        Some(u) => step.with_usage(u),
        None => step,
    };
    Script::new([])
        .with_rule(Rule {
            name: Some("wind-down".into()),
            when: Condition {
                last_user_text_contains: Some("budget has been reached".into()),
                ..Condition::default()
            },
            then: with_usage(Step::message(
                "Wrapping up: progress so far, next step noted.",
            )),
            max_matches: None,
            verbatim: false,
        })
        .with_rule(Rule {
            name: Some("reply".into()),
            when: Condition {
                last_item_type: Some("function_call_output".into()),
                ..Condition::default()
            },
            then: with_usage(Step::message("step done")),
            max_matches: None,
            verbatim: false,
        })
        .with_default(with_usage(Step::function_call(
            "exec_command",
            json!({"cmd": cmd}),
        )))
}

/// Starts `quest exec --goal` in the background and waits until its first model request arrived;
/// returns the child and the thread id from its first JSONL line.
fn spawn_goal_run(
    env: &TestEnv,
    mock: &MockModel,
    objective: &str,
) -> (std::process::Child, String) {
    let mut child = env
        .exec(mock)
        .args(["--goal", objective])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let id = first["thread_id"].as_str().unwrap().to_string();
    mock.wait_for_requests_blocking(1, Duration::from_secs(20))
        .unwrap();
    (child, id)
}

fn goal_updates(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["type"] == "goal.updated")
        .map(|e| &e["goal"])
        .collect()
}

fn goal_json(env: &TestEnv, id: &str) -> Value {
    let out = run(env.quest_bare().args(["goal", "status", id, "--json"]), 0);
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["goal"].clone()
}

fn goal_log(env: &TestEnv, id: &str) -> Vec<Value> {
    let out = run(env.quest_bare().args(["goal", "log", id, "--json"]), 0);
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["events"]
        .as_array()
        .unwrap()
        .clone()
}

fn reasons(log: &[Value]) -> Vec<String> {
    log.iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["actor"].as_str().unwrap(),
                e["reason"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn goal_runs_to_completion_with_real_tools() {
    let mock = MockModel::start_blocking(Script::new([
        Step::function_call(
            "exec_command",
            json!({"cmd": "echo working > progress.txt"}),
        ),
        Step::message("Wrote progress.txt; verifying next turn."),
        Step::function_call("exec_command", json!({"cmd": "cat progress.txt"})),
        Step::update_goal("complete"),
        Step::message("Goal complete."),
    ]));
    let env = TestEnv::new();
    let out = run(env.exec(&mock).args(["--goal", "create progress.txt"]), 0);
    let events = jsonl(&out);
    let id = thread_id(&events);
    let updates = goal_updates(&events);
    assert_eq!(updates.first().unwrap()["status"], "active");
    assert_eq!(updates.last().unwrap()["status"], "complete");
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "turn.started")
            .count(),
        2
    );
    assert_eq!(mock.request_count(), 5);
    // Continuation turns carry the goal prompt and the goal trigger.
    let first = mock.request(0).unwrap();
    assert!(
        first.body["input"]
            .to_string()
            .contains("create progress.txt")
    );
    assert!(
        first.body["input"]
            .to_string()
            .contains("source=\\\"goal\\\"")
    );
    assert!(
        first
            .header("x-codex-turn-metadata")
            .unwrap()
            .contains("\"turn_trigger\":\"goal\"")
    );
    let goal = goal_json(&env, &id);
    assert_eq!(goal["status"], "complete");
    assert_eq!(goal["turnsUsed"], 2);
    assert_eq!(
        reasons(&goal_log(&env, &id)),
        ["user:user_request", "model:tool_update_goal"]
    );
    assert_eq!(
        std::fs::read_to_string(env.work().join("progress.txt")).unwrap(),
        "working\n"
    );
}

#[test]
fn goal_blocked_by_the_model_exits_3() {
    let mock = MockModel::start_blocking(Script::new([
        Step::update_goal("blocked"),
        Step::message("I need credentials I do not have."),
    ]));
    let env = TestEnv::new();
    let out = run(env.exec(&mock).args(["--goal", "deploy"]), 3);
    let id = thread_id(&jsonl(&out));
    assert_eq!(goal_json(&env, &id)["status"], "blocked");
    assert_eq!(mock.request_count(), 2);
    assert_eq!(
        reasons(&goal_log(&env, &id)).last().unwrap(),
        "model:tool_update_goal"
    );
}

#[test]
fn breaker_blocks_a_model_that_never_calls_update_goal() {
    let mock = MockModel::start_blocking(
        Script::new([]).with_default(Step::message("I am still looking into the failure.")),
    );
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock)
            .args(FAST_BACKOFF)
            .args(["--goal", "fix it"]),
        3,
    );
    let id = thread_id(&jsonl(&out));
    let goal = goal_json(&env, &id);
    assert_eq!(goal["status"], "blocked");
    // Three no-progress turns, one request each, then nothing more.
    assert_eq!(mock.request_count(), 3);
    let last = reasons(&goal_log(&env, &id)).pop().unwrap();
    assert!(
        last == "system:repeated_blocker" || last == "system:no_progress",
        "{last}"
    );
}

#[test]
fn breaker_counts_failing_commands_as_no_progress() {
    let mock = MockModel::start_blocking(
        Script::new([])
            .with_rule(Rule {
                name: Some("answer".into()),
                when: Condition {
                    last_item_type: Some("function_call_output".into()),
                    ..Condition::default()
                },
                then: Step::message("Try {n} failed."),
                max_matches: None,
                verbatim: false,
            })
            .with_default(Step::function_call(
                "exec_command",
                json!({"cmd": "exit 1"}),
            )),
    );
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock).args(FAST_BACKOFF).args([
            "-c",
            "goals.max_no_progress_turns=2",
            "--goal",
            "fix it",
        ]),
        3,
    );
    let id = thread_id(&jsonl(&out));
    assert_eq!(goal_json(&env, &id)["status"], "blocked");
    assert_eq!(mock.request_count(), 4, "two turns of two requests");
}

#[test]
fn usage_limit_stops_after_one_request_and_resume_costs_one_more() {
    let resets_at = 4_102_444_800; // 2100-01-01
    let mock = MockModel::start_blocking(
        Script::new([]).with_default(Step::usage_limit(Some("plus"), Some(resets_at))),
    );
    let env = TestEnv::new();
    let out = run(env.exec(&mock).args(["--goal", "long job"]), 4);
    let events = jsonl(&out);
    let id = thread_id(&events);
    assert_eq!(mock.request_count(), 1);
    assert!(events.iter().any(|e| e["type"] == "turn.failed"));
    let goal = goal_json(&env, &id);
    assert_eq!(goal["status"], "usageLimited");
    assert_eq!(goal["usageLimitResetsAt"], resets_at);
    assert_eq!(
        reasons(&goal_log(&env, &id)).last().unwrap(),
        "system:usage_limit"
    );

    // Resuming while still limited: exactly one more request, back to usageLimited.
    run(env.exec(&mock).args(["resume", &id, "--goal"]), 4);
    assert_eq!(mock.request_count(), 2);
    assert_eq!(goal_json(&env, &id)["status"], "usageLimited");
}

#[test]
fn token_budget_stops_the_goal_after_the_crossing_turn() {
    let mock = MockModel::start_blocking(progress_model(
        "echo step {n}",
        Some(Usage::new(1100, 900, 12, 0)),
    ));
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock)
            .args(["--goal", "count", "--token-budget", "500"]),
        5,
    );
    let id = thread_id(&jsonl(&out));
    let goal = goal_json(&env, &id);
    assert_eq!(goal["status"], "budgetLimited");
    assert_eq!(goal["budgetLimitKind"], "tokens");
    // 212 tokens per request: 424 after turn 1, 636 after the first request of turn 2 trips it;
    // the crossing turn ends naturally (2 requests) and nothing follows.
    assert_eq!(goal["tokensUsed"], 848);
    assert_eq!(mock.request_count(), 4);
    // The wind-down message reached the model once, in the crossing turn.
    let last = mock.request(3).unwrap().body["input"].to_string();
    assert!(last.contains("budget has been reached"), "{last}");
}

#[test]
fn turn_budget_stops_after_n_goal_turns() {
    let mock = MockModel::start_blocking(progress_model("echo {n}", None));
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock)
            .args(["--goal", "loop", "--turn-budget", "2"]),
        5,
    );
    let id = thread_id(&jsonl(&out));
    let goal = goal_json(&env, &id);
    assert_eq!(goal["status"], "budgetLimited");
    assert_eq!(goal["budgetLimitKind"], "turns");
    assert_eq!(goal["turnsUsed"], 2);
    assert_eq!(mock.request_count(), 4);
}

#[test]
fn time_budget_stops_the_goal() {
    let mock = MockModel::start_blocking(progress_model("sleep 1.2; echo {n}", None));
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock)
            .args(["--goal", "slow", "--time-budget", "2s"]),
        5,
    );
    let id = thread_id(&jsonl(&out));
    let goal = goal_json(&env, &id);
    assert_eq!(goal["status"], "budgetLimited");
    assert_eq!(goal["budgetLimitKind"], "time");
    assert!(goal["timeUsedSeconds"].as_i64().unwrap() >= 2);
    assert!(mock.request_count() <= 4, "{}", mock.request_count());
}

#[test]
fn pause_from_another_process_stops_the_loop_before_its_next_turn() {
    let mock = MockModel::start_blocking(progress_model("sleep 0.5; echo {n}", None));
    let env = TestEnv::new();
    let (mut child, id) = spawn_goal_run(&env, &mock, "forever");
    let paused = run(env.quest_bare().args(["goal", "pause", &id, "--json"]), 0);
    let paused: Value = serde_json::from_slice(&paused.stdout).unwrap();
    assert_eq!(paused["goal"]["status"], "paused");
    let at_pause = mock.request_count();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(6));
    // At most the turn in flight finished; no new turn started.
    assert!(
        mock.request_count() <= at_pause + 1,
        "{} vs {at_pause}",
        mock.request_count()
    );
    assert_eq!(goal_json(&env, &id)["status"], "paused");
    assert_eq!(
        reasons(&goal_log(&env, &id)).last().unwrap(),
        "user:user_request"
    );
}

#[cfg(unix)]
#[test]
fn sigkill_while_active_comes_back_paused() {
    let mock = MockModel::start_blocking(
        Script::new([]).with_default(Step::message("thinking").delay(Duration::from_secs(60))),
    );
    let env = TestEnv::new();
    let (mut child, id) = spawn_goal_run(&env, &mock, "survive a crash");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let goal = goal_json(&env, &id);
    assert_eq!(goal["status"], "paused");
    let log = goal_log(&env, &id);
    let last = log.last().unwrap();
    assert_eq!(last["reason"], "process_exit");
    assert_eq!(last["actor"], "system");
    assert!(last["detail"].to_string().contains("unclean"), "{last}");
    // The history survived: resuming sends the original goal prompt again.
    let resumed = MockModel::start_blocking(Script::new([Step::message("back")]));
    run(env.exec(&resumed).args(["resume", &id, "status?"]), 0);
    assert!(
        resumed.single_request().body["input"]
            .to_string()
            .contains("survive a crash")
    );
    assert_eq!(goal_json(&env, &id)["status"], "paused");
}

#[test]
fn goal_commands_edit_budget_resume_and_clear() {
    let mock = MockModel::start_blocking(Script::new([
        Step::update_goal("blocked"),
        Step::message("blocked"),
    ]));
    let env = TestEnv::new();
    let id = thread_id(&jsonl(&run(
        env.exec(&mock).args(["--goal", "first objective"]),
        3,
    )));
    let edited = run(
        env.quest_bare()
            .args(["goal", "edit", &id, "second objective", "--json"]),
        0,
    );
    let edited: Value = serde_json::from_slice(&edited.stdout).unwrap();
    assert_eq!(edited["goal"]["objective"], "second objective");
    let budget = run(
        env.quest_bare().args([
            "goal",
            "budget",
            &id,
            "5000",
            "--turn-budget",
            "7",
            "--json",
        ]),
        0,
    );
    let budget: Value = serde_json::from_slice(&budget.stdout).unwrap();
    assert_eq!(budget["goal"]["tokenBudget"], 5000);
    assert_eq!(budget["goal"]["turnBudget"], 7);
    let resumed = run(env.quest_bare().args(["goal", "resume", &id, "--json"]), 0);
    let resumed: Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(resumed["goal"]["status"], "active");
    let list = run(env.quest_bare().args(["goal", "list", "--json"]), 0);
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list["goals"].as_array().unwrap().len(), 1);
    let cleared = run(env.quest_bare().args(["goal", "clear", &id, "--json"]), 0);
    assert_eq!(
        serde_json::from_slice::<Value>(&cleared.stdout).unwrap(),
        json!({"cleared": true})
    );
    let again = run(env.quest_bare().args(["goal", "clear", &id, "--json"]), 0);
    assert_eq!(
        serde_json::from_slice::<Value>(&again.stdout).unwrap(),
        json!({"cleared": false})
    );
    assert_eq!(goal_json(&env, &id), Value::Null);
    // The audit trail survives the clear.
    assert!(goal_log(&env, &id).len() >= 4);
    let bad = run(env.quest_bare().args(["goal", "status", "not-a-thread"]), 2);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid thread id"));
}

#[test]
fn goal_tools_follow_the_spec_shapes() {
    let mock = MockModel::start_blocking(Script::new([
        Step::calls([
            Output::get_goal(),
            Output::function_call("update_goal", json!({"status": "active"})),
        ]),
        Step::update_goal("complete"),
        Step::message("done"),
    ]));
    let env = TestEnv::new();
    run(
        env.exec(&mock)
            .args(["--goal", "shape check", "--token-budget", "100000"]),
        0,
    );
    let second = mock.input_items(1);
    let outputs: Vec<_> = second
        .iter()
        .filter(|i| i["type"] == "function_call_output")
        .map(|i| i["output"].as_str().unwrap().to_string())
        .collect();
    let get: Value = serde_json::from_str(&outputs[0]).unwrap();
    assert_eq!(get["goal"]["objective"], "shape check");
    assert_eq!(get["goal"]["tokenBudget"], 100000);
    assert!(get["remainingTokens"].as_i64().unwrap() <= 100000);
    assert_eq!(get["completionBudgetReport"], Value::Null);
    assert!(outputs[1].starts_with("update_goal can only mark the existing goal complete"));
    let third = mock.input_items(2);
    let done = third
        .iter()
        .rfind(|i| i["type"] == "function_call_output")
        .unwrap();
    let done: Value = serde_json::from_str(done["output"].as_str().unwrap()).unwrap();
    assert_eq!(done["goal"]["status"], "complete");
    assert!(done["completionBudgetReport"].is_string());
    // The tools were offered in the spec's order, after the built-ins.
    let names = mock.request(0).unwrap().tool_names();
    let goal_tools: Vec<_> = names
        .iter()
        .filter(|n| n.contains("goal"))
        .cloned()
        .collect();
    assert_eq!(goal_tools, ["get_goal", "create_goal", "update_goal"]);
}

#[test]
fn usage_limited_goal_resumes_itself_at_reset_when_asked() {
    let resets_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 1;
    let mock = MockModel::start_blocking(Script::new([
        Step::usage_limit(None, Some(resets_at)),
        Step::update_goal("complete"),
        Step::message("finished after the reset"),
    ]));
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock).args([
            "-c",
            "goals.auto_resume_after_usage_limit=true",
            "-c",
            "goals.auto_resume_jitter_min_ms=0",
            "-c",
            "goals.auto_resume_jitter_max_ms=20",
            "--goal",
            "wait out the limit",
        ]),
        0,
    );
    let id = thread_id(&jsonl(&out));
    assert_eq!(mock.request_count(), 3);
    // The second request came no earlier than the reset time.
    let second = mock.request(1).unwrap();
    assert!(second.received_at_unix_ms as i64 >= resets_at * 1000);
    assert_eq!(
        reasons(&goal_log(&env, &id)),
        [
            "user:user_request",
            "system:usage_limit",
            "system:usage_limit_reset",
            "model:tool_update_goal"
        ]
    );
}

#[cfg(unix)]
#[test]
fn sigterm_pauses_the_goal_and_exits_6() {
    let mock = MockModel::start_blocking(
        Script::new([]).with_default(Step::message("thinking").delay(Duration::from_secs(60))),
    );
    let env = TestEnv::new();
    let (mut child, id) = spawn_goal_run(&env, &mock, "be interrupted");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(6));
    assert_eq!(goal_json(&env, &id)["status"], "paused");
    assert_eq!(
        reasons(&goal_log(&env, &id)).last().unwrap(),
        "user:interrupt"
    );
    assert_eq!(mock.request_count(), 1);
}

#[test]
fn plain_exec_runs_one_turn_even_when_the_model_creates_a_goal() {
    let mock = MockModel::start_blocking(Script::new([
        Step::create_goal("ship the release", None),
        Step::message("Goal created; I will keep going in later runs."),
        Step::message("must never be requested"),
    ]));
    let env = TestEnv::new();
    let out = run(env.exec(&mock).arg("set a goal to ship the release"), 0);
    let id = thread_id(&jsonl(&out));
    assert_eq!(mock.request_count(), 2);
    let goal = goal_json(&env, &id);
    assert_eq!(goal["status"], "paused");
    let log = goal_log(&env, &id);
    assert_eq!(
        reasons(&log),
        ["model:tool_update_goal", "system:process_exit"]
    );
    assert!(log[1]["detail"].to_string().contains("clean"));
}

fn overloaded() -> Step {
    Step::http_error(
        503,
        json!({"error": {"code": "server_is_overloaded", "message": "busy"}}),
    )
}

#[test]
fn server_overloaded_defers_one_retry_then_blocks() {
    // The harness allows one transport retry, so each failing turn costs two requests.
    let mock = MockModel::start_blocking(Script::new([]).with_default(overloaded()));
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock).args([
            "-c",
            "goals.server_overloaded_retry_delay=\"50ms\"",
            "--goal",
            "busy provider",
        ]),
        3,
    );
    let id = thread_id(&jsonl(&out));
    assert_eq!(mock.request_count(), 4);
    assert_eq!(
        reasons(&goal_log(&env, &id)).last().unwrap(),
        "system:turn_error"
    );
}

#[test]
fn server_overloaded_retry_can_complete_the_goal() {
    let mock = MockModel::start_blocking(Script::new([
        overloaded(),
        overloaded(),
        Step::update_goal("complete"),
        Step::message("done after the provider recovered"),
    ]));
    let env = TestEnv::new();
    run(
        env.exec(&mock).args([
            "-c",
            "goals.server_overloaded_retry_delay=\"50ms\"",
            "--goal",
            "busy provider",
        ]),
        0,
    );
    assert_eq!(mock.request_count(), 4);
    let gap = mock.gaps()[1];
    assert!(gap >= Duration::from_millis(50), "{gap:?}");
}

#[test]
fn notify_runs_for_attention_states_only() {
    let mock = MockModel::start_blocking(
        Script::new([]).with_default(Step::message("I am still looking into the failure.")),
    );
    let env = TestEnv::new();
    let log = env.work().join("notifications.jsonl");
    let notify = format!(
        "notify=[\"sh\", \"-c\", \"printf '%s\\\\n' \\\"$1\\\" >> {}\", \"notify\"]",
        log.display()
    );
    let out = run(
        env.exec(&mock)
            .args(FAST_BACKOFF)
            .args(["-c", &notify, "--goal", "fix it"]),
        3,
    );
    let id = thread_id(&jsonl(&out));
    // The notifier runs in the background; wait for its line.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if !text.is_empty() || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "three continuation turns, one notification: {text}"
    );
    assert_eq!(lines[0]["thread-id"], id);
    assert_eq!(lines[0]["goal"]["status"], "blocked");
    assert_eq!(lines[0]["goal"]["objective"], "fix it");
}

#[test]
fn a_user_turn_on_a_thread_another_process_runs_is_refused() {
    let mock = MockModel::start_blocking(progress_model("sleep 0.3; echo {n}", None));
    let env = TestEnv::new();
    let (mut child, id) = spawn_goal_run(&env, &mock, "keep going");
    let out = run(
        env.exec(&mock)
            .args(["resume", &id, "a question from another shell"]),
        1,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("another quest process (pid {})", child.id())),
        "{stderr}"
    );
    // Nothing of the refused turn reached the thread or the model.
    let store = quest_state::Store::open_in(env.home()).unwrap();
    let rollout =
        serde_json::to_string(&store.load_rollout(&id.parse().unwrap()).unwrap()).unwrap();
    assert!(!rollout.contains("a question from another shell"));
    assert!(
        mock.requests()
            .iter()
            .all(|r| !r.body.to_string().contains("a question from another shell"))
    );
    // The runner was neither paused nor charged by the refused process: it is still going.
    assert_eq!(goal_json(&env, &id)["status"], "active");
    assert!(
        !reasons(&goal_log(&env, &id)).contains(&"system:process_exit".to_string()),
        "{:?}",
        goal_log(&env, &id)
    );
    run(env.quest_bare().args(["goal", "pause", &id]), 0);
    assert_eq!(child.wait().unwrap().code(), Some(6));
}

#[test]
fn goal_resume_from_the_shell_stays_active_and_says_how_to_run_it() {
    let mock = MockModel::start_blocking(Script::new([
        Step::update_goal("blocked"),
        Step::message("I need credentials I do not have."),
    ]));
    let env = TestEnv::new();
    let out = run(env.exec(&mock).args(["--goal", "deploy"]), 3);
    let id = thread_id(&jsonl(&out));
    let resumed = run(env.quest_bare().args(["goal", "resume", &id]), 0);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        stderr.contains(&format!("quest exec resume {id} --goal")),
        "{stderr}"
    );
    // Reading the goal afterwards records no crash that never happened.
    assert_eq!(goal_json(&env, &id)["status"], "active");
    assert_eq!(goal_json(&env, &id)["status"], "active");
    assert_eq!(
        reasons(&goal_log(&env, &id)).last().unwrap(),
        "user:user_request"
    );
    let at_reset = run(
        env.quest_bare().args(["goal", "resume", &id, "--at-reset"]),
        0,
    );
    let stderr = String::from_utf8_lossy(&at_reset.stderr);
    assert!(
        stderr.contains("nothing will resume the goal at the reset time"),
        "{stderr}"
    );
}

#[test]
fn readers_of_an_unknown_thread_fail_without_creating_a_database() {
    let env = TestEnv::new();
    let unknown = "019ac0de-0000-7000-8000-000000000000";
    for args in [
        vec!["goal", "status", unknown],
        vec!["goal", "log", unknown],
        vec!["goal", "pause", unknown],
    ] {
        let out = run(env.quest_bare().args(&args), 1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("no such thread"), "{args:?}: {stderr}");
    }
    assert!(!env.home().join("state.sqlite").exists());
    let listed = run(env.quest_bare().args(["goal", "list", "--json"]), 0);
    assert_eq!(
        serde_json::from_slice::<Value>(&listed.stdout).unwrap(),
        json!({"goals": []})
    );
    assert!(!env.home().join("state.sqlite").exists());
}

#[test]
fn pausing_a_complete_goal_is_refused() {
    let mock = MockModel::start_blocking(Script::new([
        Step::update_goal("complete"),
        Step::message("Done."),
    ]));
    let env = TestEnv::new();
    let out = run(env.exec(&mock).args(["--goal", "finish"]), 0);
    let id = thread_id(&jsonl(&out));
    let refused = run(env.quest_bare().args(["goal", "pause", &id]), 1);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("cannot pause a goal that is complete"),
        "{stderr}"
    );
    assert_eq!(goal_json(&env, &id)["status"], "complete");
}
