//! Shared helpers: sample data and a child-process harness that re-runs this test binary in a
//! "child" mode against the same database file.

#![allow(dead_code, unreachable_pub)]
// Test support code: a failed setup step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use quest_protocol::goal::{Actor, CreateGoal, Trigger};
use quest_protocol::{ContentItem, ResponseItem, ThreadId};
use quest_state::{GoalContext, NewThread, Store};

pub const CHILD_MODE: &str = "QUEST_STATE_TEST_CHILD_MODE";
pub const CHILD_DB: &str = "QUEST_STATE_TEST_CHILD_DB";
pub const CHILD_THREAD: &str = "QUEST_STATE_TEST_CHILD_THREAD";
pub const CHILD_COUNT: &str = "QUEST_STATE_TEST_CHILD_COUNT";
/// Marks protocol lines in a child's stdout (the test harness writes its own text around them).
pub const MARKER: &str = "#child# ";

/// Writes one protocol line from a child process.
pub fn say(message: &str) {
    println!("\n{MARKER}{message}");
}

pub fn new_thread(store: &Store) -> ThreadId {
    let id = ThreadId::new();
    store
        .create_thread(&NewThread {
            id,
            cwd: "/work/project".into(),
            model: "gpt-5.5".into(),
            model_provider: "openai".into(),
        })
        .unwrap();
    id
}

/// A deterministic, varied rollout item for position `i`.
pub fn item(i: usize) -> ResponseItem {
    match i % 5 {
        0 => ResponseItem::text_message("user", format!("message {i} with ünïcödé and \"quotes\"")),
        1 => ResponseItem::Message {
            id: Some(format!("msg_{i}")),
            role: "assistant".into(),
            content: vec![
                ContentItem::OutputText {
                    text: format!("answer {i}"),
                },
                ContentItem::Refusal {
                    refusal: "no".into(),
                },
            ],
        },
        2 => ResponseItem::FunctionCall {
            id: Some(format!("fc_{i}")),
            name: "shell".into(),
            arguments: format!("{{\"command\":[\"echo\",\"{i}\"]}}"),
            call_id: format!("call_{i}"),
        },
        3 => ResponseItem::FunctionCallOutput {
            id: None,
            call_id: Some(format!("call_{}", i - 1)),
            name: None,
            namespace: None,
            output: format!("{i}\n"),
        },
        _ => ResponseItem::CustomToolCall {
            id: None,
            call_id: format!("ctc_{i}"),
            name: "apply_patch".into(),
            input: "*** Begin Patch\n*** End Patch".into(),
        },
    }
}

pub fn create_goal(store: &Store, thread: &ThreadId, objective: &str) -> String {
    let outcome = store
        .apply_goal(
            thread,
            &Trigger::Create(CreateGoal::new(thread.to_string(), objective)),
            Actor::User,
            &GoalContext::default(),
        )
        .unwrap();
    outcome.goal.unwrap().goal_id
}

/// A child process running this test binary's `child_entry` in `mode`.
pub struct ChildProc {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub lines: mpsc::Receiver<String>,
}

pub fn spawn_child(mode: &str, db: &Path, thread: &ThreadId, count: usize) -> ChildProc {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "child_entry",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_MODE, mode)
        .env(CHILD_DB, db)
        .env(CHILD_THREAD, thread.to_string())
        .env(CHILD_COUNT, count.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout: ChildStdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    ChildProc {
        stdin: child.stdin.take(),
        child,
        lines: rx,
    }
}

impl ChildProc {
    /// Waits (up to 60 s) for the next protocol line starting with `prefix`; other output of the
    /// test harness is skipped.
    pub fn expect(&self, prefix: &str) -> String {
        let mut skipped = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|e| {
                    panic!("child gave no `{prefix}` line ({e}); its other output: {skipped:#?}")
                });
            let marker = format!("{MARKER}{prefix}");
            if let Some(at) = line.find(&marker) {
                return line[at + marker.len()..].trim().to_owned();
            }
            skipped.push(line);
        }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn wait_success(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "child failed: {status}");
    }
}
