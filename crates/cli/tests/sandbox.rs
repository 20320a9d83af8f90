//! The sandbox, environment policy and process cleanup through the real `quest exec` binary: a
//! scripted model runs hostile commands and the test checks what they could do.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{TestEnv, run};
use quest_mock_model::{MockModel, Script, Step};
use quest_otel::test_receiver::OtlpReceiver;
use serde_json::{Value, json};

/// The text of the `function_call_output` items in the last request the model received.
fn tool_outputs(mock: &MockModel) -> Vec<String> {
    let last = mock.request_count() - 1;
    mock.input_items(last)
        .iter()
        .filter(|i| i["type"] == "function_call_output")
        .map(|i| i["output"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn shell_step(cmd: &str) -> Step {
    Step::function_call("exec_command", json!({ "cmd": cmd }))
}

/// Runs one model turn that executes `cmd`, then answers "done"; returns the tool output.
fn exec_one(env: &TestEnv, cmd: &str, extra: &[&str]) -> String {
    let mock = MockModel::start_blocking(Script::new([shell_step(cmd), Step::message("done")]));
    run(env.exec(&mock).args(extra).arg("go"), 0);
    let outputs = tool_outputs(&mock);
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    outputs[0].clone()
}

struct Hostile {
    outside: tempfile::TempDir,
    listener: TcpListener,
}

impl Hostile {
    fn new(env: &TestEnv) -> Self {
        std::fs::create_dir_all(env.work().join(".git/hooks")).unwrap();
        std::fs::write(env.work().join(".git/config"), "[core]\n").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Hostile {
            outside: tempfile::tempdir().unwrap(),
            listener,
        }
    }

    /// One command per escape; each prints a marker only when it succeeds.
    fn script(&self, env: &TestEnv) -> String {
        let port = self.listener.local_addr().unwrap().port();
        let home = env.home().display();
        let outside = self.outside.path().display();
        [
            format!("(echo pwned > {outside}/escape.txt) 2>/dev/null && echo WROTE-OUTSIDE"),
            "(echo evil > .git/hooks/pre-commit) 2>/dev/null && echo WROTE-GIT".to_string(),
            format!("(echo x > {home}/planted.txt) 2>/dev/null && echo WROTE-HOME"),
            format!("(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo CONNECTED"),
            "echo ok > inside.txt && echo WROTE-INSIDE".to_string(),
        ]
        .join("; ")
    }

    fn accepted(&self) -> bool {
        self.listener.accept().is_ok()
    }
}

const ESCAPES: [&str; 4] = ["WROTE-OUTSIDE", "WROTE-GIT", "WROTE-HOME", "CONNECTED"];

#[test]
fn workspace_write_confines_commands_and_full_access_does_not() {
    let env = TestEnv::new();
    let hostile = Hostile::new(&env);
    // /tmp stays writable (the default): the home and `outside` live there too, so only the
    // protected paths and the missing root keep them safe. `outside` is made unreachable by
    // excluding the temp dirs for this run.
    let output = exec_one(
        &env,
        &hostile.script(&env),
        &[
            "-c",
            "sandbox_workspace_write.exclude_slash_tmp=true",
            "-c",
            "sandbox_workspace_write.exclude_tmpdir_env_var=true",
        ],
    );
    for marker in ESCAPES {
        assert!(
            !output.contains(marker),
            "{marker} under workspace-write: {output}"
        );
    }
    assert!(output.contains("WROTE-INSIDE"), "{output}");
    assert!(!hostile.accepted(), "the listener saw a connection");
    assert!(!hostile.outside.path().join("escape.txt").exists());
    assert!(!env.work().join(".git/hooks/pre-commit").exists());
    assert!(!env.home().join("planted.txt").exists());

    // The home under a writable /tmp is still protected.
    let output = exec_one(&env, &hostile.script(&env), &[]);
    assert!(!output.contains("WROTE-HOME"), "{output}");
    assert!(!output.contains("WROTE-GIT"), "{output}");

    let output = exec_one(
        &env,
        &hostile.script(&env),
        &["--sandbox", "danger-full-access"],
    );
    for marker in ESCAPES {
        assert!(
            output.contains(marker),
            "{marker} missing under danger-full-access: {output}"
        );
    }
    assert!(hostile.accepted());
    assert!(env.work().join(".git/hooks/pre-commit").exists());
}

#[test]
fn read_only_refuses_writes_in_the_workspace() {
    let env = TestEnv::new();
    let output = exec_one(
        &env,
        "touch made-here.txt; echo status=$?",
        &["--sandbox", "read-only"],
    );
    assert!(output.contains("status=1"), "{output}");
    assert!(!env.work().join("made-here.txt").exists());
}

#[test]
fn commands_do_not_see_key_variables() {
    let env = TestEnv::new();
    let mock = MockModel::start_blocking(Script::new([shell_step("env"), Step::message("done")]));
    run(
        env.exec(&mock)
            .env("OPENAI_API_KEY", "sk-openai-should-not-leak")
            .env("GITHUB_TOKEN", "ghp-should-not-leak")
            .env("MY_SERVICE_SECRET", "shh")
            .env("CODEX_HOME", "/somewhere")
            .env("HARMLESS_VARIABLE", "visible")
            .arg("go"),
        0,
    );
    let output = &tool_outputs(&mock)[0];
    assert!(output.contains("HARMLESS_VARIABLE=visible"), "{output}");
    // TEST_API_KEY is the provider's env_key; QUEST_HOME is set by the test environment.
    for name in [
        "OPENAI_API_KEY",
        "GITHUB_TOKEN",
        "MY_SERVICE_SECRET",
        "CODEX_HOME",
        "QUEST_HOME",
        "TEST_API_KEY",
    ] {
        assert!(
            !output.contains(&format!("{name}=")),
            "{name} leaked: {output}"
        );
    }
}

#[test]
fn the_model_is_told_the_enforced_sandbox() {
    let env = TestEnv::new();
    let mock = MockModel::start_blocking(Script::new([Step::message("hi")]));
    run(env.exec(&mock).arg("go"), 0);
    let request = &mock.requests()[0];
    let context = mock
        .input_items(0)
        .iter()
        .filter_map(|i| i["content"][0]["text"].as_str().map(str::to_string))
        .find(|t| t.contains("<environment_context>"))
        .unwrap();
    assert!(
        context.contains("<sandbox_mode>workspace-write</sandbox_mode>"),
        "{context}"
    );
    assert!(
        context.contains("<sandbox_enforcement>landlock-abi-"),
        "{context}"
    );
    assert!(
        context.contains("<network_access>restricted</network_access>"),
        "{context}"
    );
    assert!(
        context.contains("<approval_policy>never</approval_policy>"),
        "{context}"
    );
    let metadata: Value =
        serde_json::from_str(request.header("x-codex-turn-metadata").unwrap()).unwrap();
    assert!(
        metadata["sandbox"]
            .as_str()
            .unwrap()
            .starts_with("landlock-abi-"),
        "{metadata}"
    );
    assert_eq!(metadata["sandbox_mode"], "workspace-write");
}

fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => matches!(
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next()),
            Some("Z" | "X")
        ),
    }
}

fn wait_dead(pid: i32) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if is_dead(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn background_processes_die_with_quest() {
    let env = TestEnv::new();
    let output = exec_one(
        &env,
        "sleep 300 >/dev/null 2>&1 & echo bg=$!; setsid sleep 301 >/dev/null 2>&1 & echo sid=$!",
        &[],
    );
    let pids: Vec<i32> = output
        .lines()
        .filter_map(|l| l.split_once('=').filter(|(k, _)| *k == "bg" || *k == "sid"))
        .map(|(_, v)| v.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{output}");
    // `quest exec` has exited: nothing it started may still run.
    for pid in pids {
        if !wait_dead(pid) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!("process {pid} outlived quest");
        }
    }
}

#[test]
fn exported_tool_results_are_redacted() {
    let receiver = OtlpReceiver::start().unwrap();
    let endpoint = receiver.http_endpoint();
    let exporter =
        format!("otel.exporter={{otlp-http={{endpoint=\"{endpoint}\", protocol=\"json\"}}}}");
    let env = TestEnv::new();
    let mock = MockModel::start_blocking(Script::new([
        // The secrets are decoded at run time, so only the command's output carries them.
        shell_step(
            "echo \"token=$(echo aHVudGVyMi1zZWNyZXQtdmFsdWU= | base64 -d)\"; echo \"curl -H 'Authorization: Bearer $(echo YWJjLmRlZi5naGk= | base64 -d)'\"; echo \"the provider key is $(echo c2stdGVzdA== | base64 -d)\"",
        ),
        Step::message("done"),
    ]));
    run(env.exec(&mock).args(["-c", &exporter]).arg("go"), 0);
    let received = receiver
        .wait_until(Duration::from_secs(10), |r| {
            r.log_records()
                .iter()
                .any(|l| l.event_name == "codex.tool_result")
        })
        .unwrap_or_else(|r| panic!("no codex.tool_result: {:#?}", r.log_records()));
    let logs = received.log_records();
    let record = logs
        .iter()
        .find(|l| l.event_name == "codex.tool_result")
        .unwrap();
    let output = &record.attributes["output"];
    // The command really printed the secrets (the model saw them) ...
    let seen = &tool_outputs(&mock)[0];
    assert!(
        seen.contains("hunter2-secret-value") && seen.contains("abc.def.ghi"),
        "{seen}"
    );
    // ... and the export has none of them: not the key=value, not the bearer token, not the
    // provider's API key value (TEST_API_KEY=sk-test).
    for secret in ["hunter2-secret-value", "abc.def.ghi", "sk-test"] {
        assert!(!output.contains(secret), "{secret} exported: {output}");
    }
    assert!(output.contains("[REDACTED]"), "{output}");
    let everything = format!("{:?}{:?}", received.logs, received.traces);
    if let Some(at) = everything.find("hunter2-secret-value") {
        panic!(
            "secret exported: …{}…",
            &everything[at.saturating_sub(800)..(at + 100).min(everything.len())]
        );
    }
}
