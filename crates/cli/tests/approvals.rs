//! Approval policies in `quest exec`, which has nobody to ask: `never` (the default) refuses
//! escalation without asking; every other policy announces each approval request and declines
//! it at once, and the model is told why. Real binary, scripted model over TCP, real commands.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use common::{TestEnv, completed_items, jsonl, run, thread_id};
use quest_mock_model::{Condition, MockModel, Output, Rule, Script, Step};
use serde_json::{Value, json};

/// Temp dirs are not writable from the sandbox, so another temp dir is truly outside.
const CLOSED_TMP: [&str; 4] = [
    "-c",
    "sandbox_workspace_write.exclude_slash_tmp=true",
    "-c",
    "sandbox_workspace_write.exclude_tmpdir_env_var=true",
];

/// The `function_call_output` texts of request `index`.
fn outputs(mock: &MockModel, index: usize) -> Vec<String> {
    mock.input_items(index)
        .iter()
        .filter(|i| i["type"] == "function_call_output")
        .map(|i| i["output"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The `error` items (non-fatal warnings) of an `exec --json` run.
fn warnings(events: &[Value]) -> Vec<String> {
    completed_items(events, "error")
        .iter()
        .map(|i| i["message"].as_str().unwrap().to_string())
        .collect()
}

fn escalation(target: &std::path::Path) -> Step {
    Step::function_call(
        "exec_command",
        json!({
            "cmd": format!("echo out > {}", target.display()),
            "sandbox_permissions": "require_escalated",
            "justification": "the output goes to the shared directory",
        }),
    )
}

#[test]
fn never_refuses_escalation_without_asking() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("out.txt");
    let mock = MockModel::start_blocking(Script::new([escalation(&target), Step::message("ok")]));
    let env = TestEnv::new();
    let out = run(env.exec(&mock).args(CLOSED_TMP).arg("write it"), 0);
    let told = outputs(&mock, 1).join("\n");
    assert!(told.contains("approval policy is `never`"), "{told}");
    assert!(!target.exists());
    // Nothing was asked: no approval warning.
    let events = jsonl(&out);
    assert!(
        !warnings(&events).iter().any(|w| w.contains("approval")),
        "{events:?}"
    );
}

#[test]
fn on_request_in_exec_declines_at_once_and_says_so() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("out.txt");
    let mock = MockModel::start_blocking(Script::new([escalation(&target), Step::message("ok")]));
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock)
            .args(CLOSED_TMP)
            .args(["--ask-for-approval", "on-request", "write it"]),
        0,
    );
    let told = outputs(&mock, 1).join("\n");
    assert!(told.contains("nobody can approve"), "{told}");
    assert!(!target.exists(), "an unapproved command ran");
    let events = jsonl(&out);
    let warned = warnings(&events);
    assert!(
        warned.iter().any(|w| w.contains("approval needed to run")
            && w.contains("outside the sandbox")
            && w.contains("declined")),
        "{warned:?}"
    );
    // Human mode says the same on stderr.
    let mock = MockModel::start_blocking(Script::new([escalation(&target), Step::message("ok")]));
    let mut cmd = env.quest(&mock, "exec");
    let human = run(
        cmd.args(["--skip-git-repo-check", "--cd"])
            .arg(env.work())
            .args(CLOSED_TMP)
            .args(["-a", "on-request", "write it"]),
        0,
    );
    let stderr = String::from_utf8_lossy(&human.stderr);
    assert!(
        stderr.contains("approval needed to run")
            && stderr.contains("nobody can approve it in exec"),
        "{stderr}"
    );
    assert!(!target.exists());
}

#[test]
fn untrusted_in_exec_runs_known_safe_commands_and_declines_the_rest() {
    let mock = MockModel::start_blocking(Script::new([
        Step::calls([
            Output::function_call("exec_command", json!({"cmd": "ls -a"})),
            Output::function_call("exec_command", json!({"cmd": "touch made.txt"})),
        ]),
        Step::message("ok"),
    ]));
    let env = TestEnv::new();
    std::fs::write(env.work().join("present.txt"), "x").unwrap();
    run(
        env.exec(&mock)
            .args(["--ask-for-approval", "untrusted", "look around"]),
        0,
    );
    let told = outputs(&mock, 1);
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(told[0].contains("present.txt"), "`ls` ran: {}", told[0]);
    assert!(told[1].contains("nobody can approve"), "{}", told[1]);
    assert!(!env.work().join("made.txt").exists());
}

#[test]
fn on_failure_in_exec_returns_the_sandbox_failure() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("out.txt");
    let mock = MockModel::start_blocking(Script::new([
        Step::function_call(
            "exec_command",
            json!({"cmd": format!("echo out > {}", target.display())}),
        ),
        Step::message("ok"),
    ]));
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock)
            .args(CLOSED_TMP)
            .args(["--ask-for-approval", "on-failure", "write it"]),
        0,
    );
    let told = outputs(&mock, 1).join("\n");
    assert!(
        told.contains("failed in the sandbox") && told.contains("nobody can approve"),
        "{told}"
    );
    assert!(!target.exists());
    let warned = warnings(&jsonl(&out));
    assert!(
        warned
            .iter()
            .any(|w| w.contains("it failed in the sandbox")),
        "{warned:?}"
    );
}

#[test]
fn a_goal_in_exec_cannot_spin_on_declined_requests() {
    // Declines in exec are automatic, not a person's answer: they count as turns without
    // progress, so the breaker stops a model that keeps asking.
    let mock = MockModel::start_blocking(
        Script::new([])
            .with_rule(Rule::new(
                Condition::last_item_type("function_call_output"),
                Step::message("That needs approval."),
            ))
            .with_default(Step::function_call(
                "exec_command",
                json!({"cmd": "touch made.txt"}),
            )),
    );
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock).args([
            "-c",
            "goals.no_progress_backoff=[\"10ms\"]",
            "-c",
            "goals.max_no_progress_turns=2",
            "-c",
            "goals.max_repeated_blocker_turns=10",
            "--ask-for-approval",
            "untrusted",
            "--goal",
            "make the file",
            "--turn-budget",
            "20",
        ]),
        3,
    );
    let id = thread_id(&jsonl(&out));
    let status = run(env.quest_bare().args(["goal", "status", &id, "--json"]), 0);
    let goal: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(goal["goal"]["status"], "blocked", "{goal}");
    assert!(!env.work().join("made.txt").exists());
}

#[test]
fn mcp_tools_with_side_effects_are_declined_in_exec_unless_the_policy_is_never() {
    let js = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        js.is_file(),
        "{} is missing: run `npm ci --prefix tests/mcp` (as .ci/run does)",
        js.display()
    );
    let server = format!(
        "mcp_servers.everything={{command=\"node\", args=[{:?}, \"stdio\"], startup_timeout_sec=60}}",
        js.display().to_string()
    );
    let script = || {
        Script::new([
            Step::calls([
                Output::function_call("mcp__everything__toggle-simulated-logging", json!({})),
                Output::function_call("mcp__everything__echo", json!({"message": "read-only"})),
            ]),
            Step::message("ok"),
        ])
    };
    let env = TestEnv::new();

    let mock = MockModel::start_blocking(script());
    let out = run(
        env.exec(&mock)
            .args(["-c", &server, "--ask-for-approval", "on-request", "go"]),
        0,
    );
    let told = outputs(&mock, 1);
    assert!(told[0].contains("nobody can approve"), "{}", told[0]);
    assert_eq!(told[1], "Echo: read-only");
    let events = jsonl(&out);
    let calls = completed_items(&events, "mcp_tool_call");
    assert_eq!(calls.len(), 2, "{events:?}");
    assert_eq!(calls[0]["status"], "failed");
    assert!(
        calls[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nobody can approve"),
        "{}",
        calls[0]
    );
    assert_eq!(calls[1]["status"], "completed");
    assert!(
        warnings(&events)
            .iter()
            .any(|w| w.contains("toggle-simulated-logging") && w.contains("declined")),
        "{events:?}"
    );

    // Under `never` (exec's default) nothing is asked and the tool runs.
    let mock = MockModel::start_blocking(script());
    run(env.exec(&mock).args(["-c", &server, "go"]), 0);
    let told = outputs(&mock, 1);
    assert!(told[0].contains("simulated"), "{}", told[0]);
}

#[test]
fn tool_decisions_are_exported_with_their_source() {
    use quest_otel::test_receiver::OtlpReceiver;
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("out.txt");
    let mock = MockModel::start_blocking(Script::new([
        Step::calls([
            Output::function_call("exec_command", json!({"cmd": "echo inside"})),
            Output::function_call(
                "exec_command",
                json!({
                    "cmd": format!("echo out > {}", target.display()),
                    "sandbox_permissions": "require_escalated",
                    "justification": "shared directory",
                }),
            ),
        ]),
        Step::message("ok"),
    ]));
    let receiver = OtlpReceiver::start().unwrap();
    let endpoint = receiver.http_endpoint();
    let env = TestEnv::new();
    run(
        env.exec(&mock).args(CLOSED_TMP).args([
            "-c",
            &format!(
                "otel.exporter={{otlp-http={{endpoint=\"{endpoint}\", protocol=\"binary\"}}}}"
            ),
            "--ask-for-approval",
            "on-request",
            "write it",
        ]),
        0,
    );
    let decisions = |r: &quest_otel::test_receiver::Received| {
        r.log_records()
            .into_iter()
            .filter(|l| l.event_name == "codex.tool_decision")
            .map(|l| {
                (
                    l.attributes["decision"].clone(),
                    l.attributes["source"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let received = receiver
        .wait_until(std::time::Duration::from_secs(30), |r| {
            decisions(r).len() >= 2
        })
        .unwrap_or_else(|r| panic!("no decisions: {:#?}", r.log_records()));
    let mut got = decisions(&received);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("approved".to_string(), "config".to_string()),
            ("denied".to_string(), "config".to_string()),
        ]
    );
}
