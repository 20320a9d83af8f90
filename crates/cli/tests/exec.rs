//! `quest exec` end to end: the real binary against the scripted model server over TCP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use common::{TestEnv, completed_items, jsonl, run, thread_id, types};
use quest_mock_model::{MockModel, Output, Script, Step, Usage};
use serde_json::json;

#[test]
fn plain_turn_prints_the_sdk_event_stream() {
    let mock = MockModel::start_blocking(Script::new([
        Step::message("Hello there").with_usage(Usage::new(1200, 1000, 7, 0))
    ]));
    let env = TestEnv::new();
    let out = run(env.exec(&mock).arg("say hello"), 0);
    let events = jsonl(&out);
    assert_eq!(
        types(&events),
        [
            "thread.started",
            "turn.started",
            "item.completed",
            "turn.completed"
        ]
    );
    assert_eq!(
        events[2]["item"],
        json!({"id":"item_0","type":"agent_message","text":"Hello there"})
    );
    assert_eq!(
        events[3]["usage"],
        json!({"input_tokens":1200,"cached_input_tokens":1000,"cache_write_input_tokens":0,"output_tokens":7,"reasoning_output_tokens":0})
    );
    let request = mock.single_request();
    assert_eq!(request.path, "/v1/responses");
    assert_eq!(request.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(request.body["stream"], true);
    assert_eq!(request.body["store"], false);
    assert_eq!(request.body["model"], "gpt-test");
    assert_eq!(request.body["prompt_cache_key"], thread_id(&events));
    assert_eq!(
        request.header("thread-id"),
        Some(thread_id(&events).as_str())
    );
    let input = request.body["input"].as_array().unwrap();
    assert_eq!(input[0]["role"], "developer");
    assert_eq!(input.last().unwrap()["content"][0]["text"], "say hello");
}

#[test]
fn human_mode_prints_the_final_message_on_stdout() {
    let mock = MockModel::start_blocking(Script::new([Step::message("All done.")]));
    let env = TestEnv::new();
    let mut cmd = env.quest(&mock, "exec");
    cmd.args(["--skip-git-repo-check", "hi"]);
    let out = run(&mut cmd, 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "All done.\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("agent: All done."), "{stderr}");
}

#[test]
fn prompt_is_read_from_stdin() {
    use std::io::Write;
    let mock = MockModel::start_blocking(Script::new([Step::message("ok")]));
    let env = TestEnv::new();
    let mut child = env
        .exec(&mock)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"prompt from stdin")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let input = mock.single_request().body["input"].clone();
    assert_eq!(
        input.as_array().unwrap().last().unwrap()["content"][0]["text"],
        "prompt from stdin"
    );
}

#[test]
fn shell_round_trip_runs_a_real_process() {
    let mock = MockModel::start_blocking(Script::new([
        Step::function_call(
            "exec_command",
            json!({"cmd": "echo hi; echo oops >&2; exit 3"}),
        ),
        Step::message("The command printed hi."),
    ]));
    let env = TestEnv::new();
    let out = run(env.exec(&mock).arg("run it"), 0);
    let events = jsonl(&out);
    let started: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "item.started")
        .collect();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["item"]["status"], "in_progress");
    assert_eq!(started[0]["item"]["exit_code"], json!(null));
    let command = completed_items(&events, "command_execution");
    assert_eq!(command.len(), 1);
    assert_eq!(command[0]["id"], started[0]["item"]["id"]);
    assert_eq!(command[0]["exit_code"], 3);
    assert_eq!(command[0]["status"], "failed");
    let output = command[0]["aggregated_output"].as_str().unwrap();
    assert!(output.contains("hi") && output.contains("oops"), "{output}");
    assert_eq!(mock.request_count(), 2);
    let second = mock.request(1).unwrap();
    let call_id = second.body["input"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap()["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    let result = mock.function_call_output(&call_id).unwrap();
    let text = result["output"].as_str().unwrap();
    assert!(
        text.contains("exit code: 3") || text.contains("Exit code: 3"),
        "{text}"
    );
    assert!(mock.pairing_violations().is_empty());
}

#[test]
fn tool_calls_of_one_response_answer_in_call_order() {
    let mock = MockModel::start_blocking(Script::new([
        Step::calls([
            Output::function_call("exec_command", json!({"cmd": "sleep 0.3; echo first"}))
                .call_id("call_a"),
            Output::function_call("exec_command", json!({"cmd": "echo second"})).call_id("call_b"),
        ]),
        Step::message("both ran"),
    ]));
    let env = TestEnv::new();
    run(env.exec(&mock).arg("run two"), 0);
    let input = mock.input_items(1);
    let outputs: Vec<_> = input
        .iter()
        .filter(|i| i["type"] == "function_call_output")
        .map(|i| i["call_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outputs, ["call_a", "call_b"]);
    let calls_then_outputs: Vec<_> = input
        .iter()
        .filter(|i| i["type"] == "function_call" || i["type"] == "function_call_output")
        .map(|i| i["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        calls_then_outputs,
        [
            "function_call",
            "function_call",
            "function_call_output",
            "function_call_output"
        ]
    );
    assert!(
        mock.function_call_output("call_a").unwrap()["output"]
            .as_str()
            .unwrap()
            .contains("first")
    );
}

#[test]
fn apply_patch_edits_real_files() {
    let env = TestEnv::new();
    std::fs::write(env.work().join("notes.txt"), "alpha\nbeta\ngamma\n").unwrap();
    std::fs::write(env.work().join("old.txt"), "bye\n").unwrap();
    let patch = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** Update File: notes.txt\n@@\n alpha\n-beta\n+BETA\n gamma\n*** Delete File: old.txt\n*** End Patch\n";
    let mock = MockModel::start_blocking(Script::new([
        Step::apply_patch(patch),
        Step::function_call(
            "apply_patch",
            json!({"input": "*** Begin Patch\n*** Update File: notes.txt\n@@\n-missing line\n+x\n*** End Patch\n"}),
        ),
        Step::message("patched"),
    ]));
    let out = run(env.exec(&mock).arg("edit"), 0);
    assert_eq!(
        std::fs::read_to_string(env.work().join("hello.txt")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(env.work().join("notes.txt")).unwrap(),
        "alpha\nBETA\ngamma\n"
    );
    assert!(!env.work().join("old.txt").exists());
    let events = jsonl(&out);
    let changes = completed_items(&events, "file_change");
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["status"], "completed");
    assert_eq!(
        changes[0]["changes"],
        json!([{"path":"hello.txt","kind":"add"},{"path":"notes.txt","kind":"update"},{"path":"old.txt","kind":"delete"}])
    );
    assert_eq!(changes[1]["status"], "failed");
    assert_eq!(
        changes[1]["changes"],
        json!([{"path":"notes.txt","kind":"update"}])
    );
    // The model sees each patch as a command result; the failed one changed nothing and says why.
    let applied = mock.input_items(1);
    let applied = applied
        .iter()
        .rfind(|i| i["type"] == "custom_tool_call_output")
        .unwrap()["output"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        applied.starts_with("Exit code: 0\nWall time: ")
            && applied.ends_with(
                "Output:\nSuccess. Updated the following files:\nA hello.txt\nM notes.txt\nD old.txt\n"
            ),
        "{applied}"
    );
    let input = mock.input_items(2);
    let failure = input
        .iter()
        .rfind(|i| i["type"] == "function_call_output")
        .unwrap();
    let failure = failure["output"].as_str().unwrap();
    assert!(
        failure.starts_with("Exit code: 1\nWall time: ")
            && failure
                .ends_with("Output:\nFailed to find expected lines in notes.txt:\nmissing line\n"),
        "{failure}"
    );
}

/// The `item.started` / `item.completed` events of a run, as `(event, item type, status)`.
fn item_events(events: &[serde_json::Value]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter(|e| e["type"] == "item.started" || e["type"] == "item.completed")
        .filter(|e| e["item"]["type"] != "agent_message")
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["item"]["type"].as_str().unwrap().to_string(),
                e["item"]["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn patch_failing_patch_command_run_and_answer_in_the_models_order_every_run() {
    let patch_a = "*** Begin Patch\n*** Update File: f.txt\n@@\n-alpha\n+ALPHA\n*** End Patch\n";
    let patch_b = "*** Begin Patch\n*** Update File: f.txt\n@@\n-no such line\n+x\n*** End Patch\n";
    for run_number in 0..5 {
        let env = TestEnv::new();
        std::fs::write(env.work().join("f.txt"), "alpha\nbeta\n").unwrap();
        let mock = MockModel::start_blocking(Script::new([
            Step::calls([
                Output::function_call("apply_patch", json!({ "input": patch_a })).call_id("call_a"),
                Output::function_call("apply_patch", json!({ "input": patch_b })).call_id("call_b"),
                Output::function_call("exec_command", json!({"cmd": "cat f.txt"}))
                    .call_id("call_c"),
            ]),
            Step::message("ok"),
        ]));
        let out = run(env.exec(&mock).arg("edit"), 0);
        let events = jsonl(&out);
        let expected: Vec<(String, String, String)> = [
            ("item.completed", "file_change", "completed"),
            ("item.completed", "file_change", "failed"),
            ("item.started", "command_execution", "in_progress"),
            ("item.completed", "command_execution", "completed"),
        ]
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
        assert_eq!(item_events(&events), expected, "run {run_number}");
        let command = completed_items(&events, "command_execution");
        assert_eq!(
            command[0]["aggregated_output"], "ALPHA\nbeta\n",
            "run {run_number}: the command ran after patch A"
        );

        let input = mock.input_items(1);
        let outputs: Vec<(&str, &str)> = input
            .iter()
            .filter(|i| i["type"] == "function_call_output")
            .map(|i| {
                (
                    i["call_id"].as_str().unwrap(),
                    i["output"].as_str().unwrap(),
                )
            })
            .collect();
        let ids: Vec<&str> = outputs.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, ["call_a", "call_b", "call_c"], "run {run_number}");
        assert!(
            outputs[0].1.starts_with("Exit code: 0\n"),
            "{}",
            outputs[0].1
        );
        assert!(
            outputs[1].1.starts_with("Exit code: 1\n") && outputs[1].1.contains("no such line"),
            "{}",
            outputs[1].1
        );
        assert!(outputs[2].1.contains("ALPHA"), "{}", outputs[2].1);
        assert_eq!(
            std::fs::read_to_string(env.work().join("f.txt")).unwrap(),
            "ALPHA\nbeta\n"
        );
    }
}

#[test]
fn two_patches_to_one_file_in_one_response_keep_both_edits() {
    // A large file makes each patch take long enough that two patches run at once would race.
    let lines: Vec<String> = (0..200_000).map(|i| format!("line {i}")).collect();
    let original = format!("{}\n", lines.join("\n"));
    let patch = |line: usize| {
        format!(
            "*** Begin Patch\n*** Update File: big.txt\n@@\n-line {line}\n+LINE {line}\n*** End Patch\n"
        )
    };
    for run_number in 0..8 {
        let env = TestEnv::new();
        std::fs::write(env.work().join("big.txt"), &original).unwrap();
        let mock = MockModel::start_blocking(Script::new([
            Step::calls([
                Output::apply_patch(patch(10)).call_id("first"),
                Output::apply_patch(patch(199_990)).call_id("second"),
            ]),
            Step::message("ok"),
        ]));
        let out = run(env.exec(&mock).arg("edit"), 0);
        let events = jsonl(&out);
        let changes = completed_items(&events, "file_change");
        assert_eq!(changes.len(), 2);
        assert!(changes.iter().all(|c| c["status"] == "completed"));
        let text = std::fs::read_to_string(env.work().join("big.txt")).unwrap();
        assert!(
            text.contains("\nLINE 10\n") && text.contains("\nLINE 199990\n"),
            "run {run_number}: an edit was lost"
        );
    }
}

#[test]
fn garbage_tool_arguments_become_an_error_output() {
    let mock = MockModel::start_blocking(Script::new([
        Step::function_call("exec_command", json!("{\"cmd\": ")),
        Step::function_call("no_such_tool", json!({})),
        Step::message("recovered"),
    ]));
    let env = TestEnv::new();
    let out = run(env.exec(&mock).arg("x"), 0);
    assert_eq!(
        completed_items(&jsonl(&out), "agent_message")[0]["text"],
        "recovered"
    );
    let second = mock.input_items(1);
    let output = second
        .iter()
        .find(|i| i["type"] == "function_call_output")
        .unwrap();
    assert!(
        output["output"]
            .as_str()
            .unwrap()
            .contains("failed to parse function arguments"),
        "{output}"
    );
    let third = mock.input_items(2);
    let output = third
        .iter()
        .rfind(|i| i["type"] == "function_call_output")
        .unwrap();
    assert!(
        output["output"]
            .as_str()
            .unwrap()
            .contains("unsupported call: no_such_tool")
    );
}

#[test]
fn resume_rebuilds_the_exact_history() {
    let mock = MockModel::start_blocking(Script::new([
        Step::function_call("exec_command", json!({"cmd": "echo one"})),
        Step::message("first answer"),
        Step::message("second answer"),
    ]));
    let env = TestEnv::new();
    let first = jsonl(&run(env.exec(&mock).arg("first prompt"), 0));
    let id = thread_id(&first);
    let second = jsonl(&run(
        env.exec(&mock).args(["resume", &id, "second prompt"]),
        0,
    ));
    assert_eq!(thread_id(&second), id);
    let before = mock.input_items(1);
    let after = mock.input_items(2);
    // Everything sent in the first run, plus the answer, then the new prompt.
    assert_eq!(&after[..before.len()], &before[..]);
    assert_eq!(after[before.len()]["content"][0]["text"], "first answer");
    assert_eq!(after.last().unwrap()["content"][0]["text"], "second prompt");
}

#[test]
fn resume_of_an_unknown_thread_is_a_usage_error() {
    let mock = MockModel::start_blocking(Script::new([]));
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock)
            .args(["resume", "0190b4a0-0000-7000-8000-000000000000", "x"]),
        2,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("thread not found"));
    assert_eq!(mock.request_count(), 0);
}

#[test]
fn missing_api_key_names_the_variable_before_any_request() {
    let mock = MockModel::start_blocking(Script::new([Step::message("never")]));
    let env = TestEnv::new();
    let out = run(env.exec(&mock).env_remove("TEST_API_KEY").arg("x"), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TEST_API_KEY"), "{stderr}");
    assert_eq!(mock.request_count(), 0);
}

#[test]
fn codex_api_key_replaces_the_provider_key() {
    let mock = MockModel::start_blocking(Script::new([Step::message("ok")]));
    let env = TestEnv::new();
    run(
        env.exec(&mock)
            .env_remove("TEST_API_KEY")
            .env("CODEX_API_KEY", "sk-codex")
            .arg("x"),
        0,
    );
    assert_eq!(
        mock.single_request().header("authorization"),
        Some("Bearer sk-codex")
    );
}

#[test]
fn invalid_config_values_are_usage_errors_naming_the_key() {
    let mock = MockModel::start_blocking(Script::new([]));
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock)
            .args(["-c", "goals.max_no_progress_turns=\"many\"", "x"]),
        2,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("goals.max_no_progress_turns"), "{stderr}");
    std::fs::write(env.home().join("config.toml"), "model = [\n").unwrap();
    let out = run(env.exec(&mock).arg("x"), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("config.toml"));
    assert_eq!(mock.request_count(), 0);
}

#[test]
fn unknown_config_keys_warn_but_run() {
    let mock = MockModel::start_blocking(Script::new([Step::message("ok")]));
    let env = TestEnv::new();
    std::fs::write(env.home().join("config.toml"), "modle = \"typo\"\n").unwrap();
    let events = jsonl(&run(env.exec(&mock).arg("x"), 0));
    let warnings = completed_items(&events, "error");
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0]["message"].as_str().unwrap().contains("modle"));
}

#[test]
fn outside_a_git_repo_without_the_flag_is_refused() {
    let mock = MockModel::start_blocking(Script::new([]));
    let env = TestEnv::new();
    let mut cmd = env.quest(&mock, "exec");
    cmd.args(["--json", "hi"]);
    let out = run(&mut cmd, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--skip-git-repo-check"));
}

#[test]
fn output_last_message_is_written() {
    let mock = MockModel::start_blocking(Script::new([Step::message("final words")]));
    let env = TestEnv::new();
    let file = env.work().join("last.txt");
    run(env.exec(&mock).arg("-o").arg(&file).arg("x"), 0);
    assert_eq!(std::fs::read_to_string(file).unwrap(), "final words");
}

#[test]
fn ephemeral_threads_leave_no_record() {
    let mock = MockModel::start_blocking(Script::new([Step::message("ok")]));
    let env = TestEnv::new();
    let events = jsonl(&run(env.exec(&mock).args(["--ephemeral", "x"]), 0));
    let id = thread_id(&events);
    let out = run(env.exec(&mock).args(["resume", &id, "again"]), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("thread not found"));
}

#[test]
fn a_cut_stream_is_retried_and_announced() {
    let mock = MockModel::start_blocking(Script::new([
        Step::message("partial").cut_after(1),
        Step::message("recovered"),
    ]));
    let env = TestEnv::new();
    let events = jsonl(&run(env.exec(&mock).arg("x"), 0));
    let notices: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "error")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(notices.len(), 1, "{events:?}");
    assert!(
        notices[0].starts_with("Reconnecting... 1/1 ("),
        "{}",
        notices[0]
    );
    assert_eq!(
        completed_items(&events, "agent_message")[0]["text"],
        "recovered"
    );
    assert_eq!(mock.request_count(), 2);
}

#[test]
fn model_errors_fail_the_turn_with_exit_1() {
    for (step, requests, needle) in [
        (
            Step::usage_limit(Some("pro"), None),
            1,
            "You’ve hit your usage limit.",
        ),
        (
            Step::http_error(
                400,
                json!({"error": {"type": "invalid_request_error", "message": "bad"}}),
            ),
            1,
            "invalid_request_error",
        ),
        // The refusal triggers a compaction; a model that refuses every summary request too
        // (three, each with half the history of the one before) fails the turn.
        (
            Step::failed("context_length_exceeded", "too long"),
            4,
            "context window",
        ),
    ] {
        let mock = MockModel::start_blocking(Script::new([]).with_default(step));
        let env = TestEnv::new();
        let events = jsonl(&run(env.exec(&mock).arg("x"), 1));
        let failed = events.iter().find(|e| e["type"] == "turn.failed").unwrap();
        let message = failed["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message}");
        assert_eq!(mock.request_count(), requests, "{message}");
    }
}

#[test]
fn turn_state_is_echoed_within_a_turn_only() {
    let mock = MockModel::start_blocking(Script::new([
        Step::function_call("exec_command", json!({"cmd": "true"}))
            .with_header("x-codex-turn-state", "sticky-1"),
        Step::message("first turn done"),
        Step::message("second turn"),
    ]));
    let env = TestEnv::new();
    let id = thread_id(&jsonl(&run(env.exec(&mock).arg("one"), 0)));
    run(env.exec(&mock).args(["resume", &id, "two"]), 0);
    assert_eq!(mock.request(0).unwrap().header("x-codex-turn-state"), None);
    assert_eq!(
        mock.request(1).unwrap().header("x-codex-turn-state"),
        Some("sticky-1")
    );
    assert_eq!(mock.request(2).unwrap().header("x-codex-turn-state"), None);
}
