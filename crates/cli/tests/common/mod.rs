//! Test support: run the real `quest` binary against a `quest-mock-model` server, print
//! everything on failure.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod servers;
pub mod tmux;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use quest_mock_model::MockModel;
use serde_json::Value;

/// A fresh `$QUEST_HOME` and workspace for one test.
pub struct TestEnv {
    pub home: tempfile::TempDir,
    pub work: tempfile::TempDir,
    /// `$HOME` of the run: login shells of commands must not pick up the machine user's profile
    /// (which may write to places the sandbox keeps read-only and print about it).
    pub user_home: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> Self {
        TestEnv {
            home: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
            user_home: tempfile::tempdir().unwrap(),
        }
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub fn work(&self) -> &Path {
        self.work.path()
    }

    /// `quest <subcommand>` with the environment pointed at `mock` and fast retries.
    pub fn quest(&self, mock: &MockModel, subcommand: &str) -> Command {
        let mut cmd = self.quest_bare();
        cmd.arg(subcommand).args(provider_args(&mock.uri()));
        cmd
    }

    /// `quest` with only the home and API key set.
    pub fn quest_bare(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quest"));
        cmd.env("QUEST_HOME", self.home())
            .env("HOME", self.user_home.path())
            .env("TEST_API_KEY", "sk-test")
            .env_remove("QUEST_API_KEY")
            .env_remove("CODEX_API_KEY")
            .env_remove("OPENAI_API_KEY")
            .env_remove("TRACEPARENT")
            .env_remove("TRACESTATE")
            .env("NO_COLOR", "1")
            .current_dir(self.work())
            .stdin(Stdio::null());
        cmd
    }

    /// `quest exec --json --skip-git-repo-check --cd <work> ...` against `mock`.
    pub fn exec(&self, mock: &MockModel) -> Command {
        let mut cmd = self.quest_bare();
        cmd.arg("exec")
            .arg("--json")
            .arg("--skip-git-repo-check")
            .arg("--cd")
            .arg(self.work())
            .args(provider_args(&mock.uri()));
        cmd
    }
}

/// `-c` flags defining provider `test` at `base_url` with short retries.
pub fn provider_args(base_url: &str) -> Vec<String> {
    vec![
        "-c".into(),
        "model_provider=test".into(),
        "-c".into(),
        format!(
            "model_providers.test={{name=\"test\", base_url=\"{base_url}\", wire_api=\"responses\", env_key=\"TEST_API_KEY\", request_max_retries=1, stream_max_retries=1, stream_idle_timeout_ms=2000}}"
        ),
        "-c".into(),
        "model=gpt-test".into(),
        "-c".into(),
        "model_client.retry_backoff_base_ms=10".into(),
    ]
}

/// Runs a command and returns its output; prints everything when `expect` does not match.
pub fn run(cmd: &mut Command, expect: i32) -> Output {
    let output = cmd.output().unwrap();
    let code = output.status.code().unwrap_or(-1);
    if code != expect {
        panic!(
            "command {cmd:?}\nexpected exit {expect}, got {code}\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// Parses stdout as JSONL; every line must be JSON (as the SDK requires).
pub fn jsonl(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| {
                panic!(
                    "stdout line is not JSON ({e}): {line}\n--- stderr\n{}",
                    String::from_utf8_lossy(&output.stderr)
                )
            })
        })
        .collect()
}

/// The `type`s of the JSONL events.
pub fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The thread id from `thread.started`.
pub fn thread_id(events: &[Value]) -> String {
    events[0]["thread_id"].as_str().unwrap().to_string()
}

/// Items of `item.completed` events of a type.
pub fn completed_items<'a>(events: &'a [Value], item_type: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["type"] == "item.completed" && e["item"]["type"] == item_type)
        .map(|e| &e["item"])
        .collect()
}

/// The state database of a home.
pub fn db_path(home: &Path) -> PathBuf {
    home.join("state.sqlite")
}
