//! Turns that survive interruption, crashes and hostile servers (issue 17): the real binary
//! against the scripted model server, with real signals.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::TestEnv;
use quest_mock_model::{MockModel, Script, Step};
use serde_json::{Value, json};

/// Generous bound for anything a loaded CI machine must do; far below the waits under test.
const LIMIT: Duration = Duration::from_secs(60);

/// A running `quest exec` whose stdout and stderr lines arrive on channels.
/// A running `quest exec`; killed on drop unless [`Running::finish`] took it (a failed
/// assertion must not leave it running).
struct Running {
    child: Option<Child>,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    seen_stdout: Vec<String>,
    seen_stderr: Vec<String>,
}

impl Running {
    fn spawn(cmd: &mut std::process::Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = |pipe: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().unwrap()));
        let stderr = lines(Box::new(child.stderr.take().unwrap()));
        Running {
            child: Some(child),
            stdout,
            stderr,
            seen_stdout: Vec::new(),
            seen_stderr: Vec::new(),
        }
    }

    fn report(&mut self) -> String {
        self.seen_stdout.extend(self.stdout.try_iter());
        self.seen_stderr.extend(self.stderr.try_iter());
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            self.seen_stdout.join("\n"),
            self.seen_stderr.join("\n")
        )
    }

    /// Waits for a stdout line satisfying `pred`.
    fn wait_stdout(&mut self, what: &str, pred: impl Fn(&str) -> bool) {
        let deadline = std::time::Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    let hit = pred(&line);
                    self.seen_stdout.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!("no stdout line {what} within {LIMIT:?}\n{}", self.report()),
            }
        }
    }

    /// Waits for a stderr line containing `text`.
    fn wait_stderr(&mut self, text: &str) {
        let deadline = std::time::Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(text);
                    self.seen_stderr.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!(
                    "no stderr line {text:?} within {LIMIT:?}\n{}",
                    self.report()
                ),
            }
        }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.as_ref().unwrap().id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Waits for the exit (killing the process after [`LIMIT`]) and returns the code and every
    /// stdout line as JSON.
    fn finish(mut self) -> (i32, Vec<Value>, String) {
        let (tx, rx) = mpsc::channel();
        let mut child = self.child.take().unwrap();
        let pid = child.id();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = match rx.recv_timeout(LIMIT) {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let mut out = String::new();
                out.push_str(&self.seen_stdout.join("\n"));
                out.extend(self.stdout.try_iter().map(|l| format!("\n{l}")));
                out.push_str("\n--- stderr\n");
                out.push_str(&self.seen_stderr.join("\n"));
                out.extend(self.stderr.try_iter().map(|l| format!("\n{l}")));
                panic!("quest exec did not exit within {LIMIT:?}\n--- stdout\n{out}");
            }
        };
        // The pipes close at exit: collect everything that is left.
        self.seen_stdout.extend(self.stdout.iter());
        self.seen_stderr.extend(self.stderr.iter());
        let stderr = self.seen_stderr.join("\n");
        let events = self
            .seen_stdout
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("stdout line is not JSON ({e}): {line}\n--- stderr\n{stderr}")
                })
            })
            .collect();
        (status.code().unwrap_or(-1), events, stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A server that answers every request with a rate-limit 429 whose `Retry-After` is absurd.
fn hostile_retry_after(value: &str) -> MockModel {
    MockModel::start_blocking(
        Script::new([]).with_default(
            Step::http_error(429, json!({"error":{"type":"rate_limit_exceeded"}}))
                .with_header("retry-after", value),
        ),
    )
}

fn is_retry_notice(line: &str) -> bool {
    line.contains("\"type\":\"error\"") && line.contains("Reconnecting... 1/")
}

/// Issue 17 item 2: `Retry-After: 1e30` used to panic the turn task, after which `exec` hung and
/// ignored SIGINT. Now the hint is clamped, the wait is pending, and one SIGINT ends the turn with
/// a clean `--json` stream and exit 130.
#[cfg(unix)]
#[test]
fn sigint_ends_a_retry_wait_after_a_hostile_retry_after() {
    let mock = hostile_retry_after("1e30");
    let env = TestEnv::new();
    let mut run = Running::spawn(
        env.exec(&mock)
            .args(["-c", "model_client.max_retry_delay_s=3600"])
            .arg("hello"),
    );
    run.wait_stdout("announcing the retry", is_retry_notice);
    run.signal(nix::sys::signal::Signal::SIGINT);
    let (code, events, stderr) = run.finish();
    assert_eq!(code, 130, "{stderr}");
    let last = events.last().unwrap();
    assert_eq!(
        *last,
        json!({"type":"turn.failed","error":{"message":"turn interrupted"}}),
        "{events:?}"
    );
    assert_eq!(mock.request_count(), 1);
}

/// Issue 17 item 2: a second SIGINT within a second exits at once, even while the first one's
/// orderly exit is still waiting (here: a telemetry flush to a collector that never answers,
/// with a retry wait pending when the signals arrive).
#[cfg(unix)]
#[test]
fn second_sigint_exits_at_once_while_a_retry_wait_is_pending() {
    // A collector that accepts connections and never answers: the orderly exit waits for it.
    let collector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", collector.local_addr().unwrap());
    let mock = hostile_retry_after("18446744073709551616");
    let env = TestEnv::new();
    let mut run = Running::spawn(
        env.exec(&mock)
            .args(["-c", "model_client.max_retry_delay_s=3600"])
            .args([
                "-c".to_string(),
                format!(
                    "otel.trace_exporter={{otlp-http={{endpoint=\"{endpoint}\", protocol=\"binary\"}}}}"
                ),
            ])
            .args(["-c", "otel.shutdown_timeout_ms=600000"])
            .env("OTEL_EXPORTER_OTLP_TIMEOUT", "600000")
            .env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "600000")
            .arg("hello"),
    );
    run.wait_stdout("announcing the retry", is_retry_notice);
    run.signal(nix::sys::signal::Signal::SIGINT);
    run.wait_stderr("press Ctrl-C again");
    run.signal(nix::sys::signal::Signal::SIGINT);
    let (code, events, stderr) = run.finish();
    assert_eq!(code, 130, "{stderr}");
    assert!(stderr.contains("Exiting at once."), "{stderr}");
    assert_eq!(events.last().unwrap()["type"], "turn.failed", "{events:?}");
    assert_eq!(mock.request_count(), 1);
    drop(collector);
}

/// Issue 17 item 6: a `timeout_ms` asked for by the model cannot exceed
/// `[tools] max_shell_timeout_ms`.
#[test]
fn model_requested_timeout_is_capped_by_the_configured_maximum() {
    let mock = MockModel::start_blocking(Script::new([
        Step::function_call(
            "exec_command",
            json!({"cmd": "sleep 120", "timeout_ms": 86_400_000u64}),
        ),
        Step::message("done"),
    ]));
    let env = TestEnv::new();
    let out = common::run(
        env.exec(&mock)
            .args(["-c", "tools.shell_timeout_ms=300"])
            .args(["-c", "tools.max_shell_timeout_ms=300"])
            .arg("sleep"),
        0,
    );
    let events = common::jsonl(&out);
    let command = common::completed_items(&events, "command_execution");
    assert_eq!(command.len(), 1);
    assert_eq!(command[0]["status"], "failed");
    let second = mock.request(1).unwrap();
    let outputs = second.items_of_type("function_call_output");
    assert_eq!(outputs.len(), 1);
    assert!(
        outputs[0]["output"].as_str().unwrap().contains("Timed out"),
        "{outputs:?}"
    );
}

/// Starts `quest exec` on a model that asks for one command, which reports its process group
/// through a fifo and then sleeps; returns once the command runs, with its process group.
#[cfg(unix)]
fn exec_with_running_command(env: &TestEnv, mock: &MockModel) -> (Running, i32) {
    exec_with_running_command_args(env, mock, &["run the long command"])
}

/// [`exec_with_running_command`] with these arguments after the provider flags.
#[cfg(unix)]
fn exec_with_running_command_args(
    env: &TestEnv,
    mock: &MockModel,
    args: &[&str],
) -> (Running, i32) {
    let fifo = env.work().join("started.fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let run = Running::spawn(env.exec(mock).args(args));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read_to_string(fifo));
    });
    let pgid: i32 = rx
        .recv_timeout(LIMIT)
        .expect("the command did not start")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (run, pgid)
}

#[cfg(unix)]
fn long_command_model() -> MockModel {
    MockModel::start_blocking(Script::new([Step::function_call(
        "exec_command",
        json!({"cmd": "echo $$ > started.fifo; sleep 600"}),
    )]))
}

/// The request after resuming: 200 (the mock refuses, as the real API does, a call without an
/// output), and the interrupted call answered with "aborted".
#[cfg(unix)]
fn assert_resumed_request_is_well_formed(env: &TestEnv, thread_id: &str) {
    let resumed = MockModel::start_blocking(Script::new([Step::message("back")]));
    let out = common::run(env.exec(&resumed).args(["resume", thread_id, "go on"]), 0);
    assert_eq!(
        common::completed_items(&common::jsonl(&out), "agent_message")[0]["text"],
        "back"
    );
    let request = resumed.single_request();
    assert!(request.unanswered_calls.is_empty(), "{:?}", request.body);
    assert!(request.unpaired_outputs.is_empty(), "{:?}", request.body);
    let calls = request.items_of_type("function_call");
    assert_eq!(calls.len(), 1);
    let call_id = calls[0]["call_id"].as_str().unwrap();
    assert_eq!(
        request.function_call_output(call_id).unwrap()["output"],
        "aborted"
    );
}

/// Issue 17 item 1: Ctrl-C during a command records an "aborted" output for the call, the
/// `--json` stream completes the started item and fails the turn, and the thread can go on.
#[cfg(unix)]
#[test]
fn interrupted_command_is_answered_and_the_resumed_thread_is_well_formed() {
    let mock = long_command_model();
    let env = TestEnv::new();
    let (run, _pgid) = exec_with_running_command(&env, &mock);
    run.signal(nix::sys::signal::Signal::SIGINT);
    let (code, events, stderr) = run.finish();
    assert_eq!(code, 130, "{stderr}");
    assert_eq!(
        common::types(&events),
        [
            "thread.started",
            "turn.started",
            "item.started",
            "item.completed",
            "turn.failed"
        ],
        "{events:?}"
    );
    assert_eq!(events[3]["item"]["id"], events[2]["item"]["id"]);
    assert_eq!(events[3]["item"]["status"], "failed");
    assert_eq!(
        events[4],
        json!({"type":"turn.failed","error":{"message":"turn interrupted"}})
    );
    assert_eq!(mock.request_count(), 1);
    assert_resumed_request_is_well_formed(&env, &common::thread_id(&events));
}

/// Issue 17 item 1: after SIGKILL during a command, resuming answers the dangling call before
/// the next request.
#[cfg(unix)]
#[test]
fn call_left_dangling_by_sigkill_is_answered_on_resume() {
    let mock = long_command_model();
    let env = TestEnv::new();
    let (mut run, pgid) = exec_with_running_command(&env, &mock);
    run.signal(nix::sys::signal::Signal::SIGKILL);
    // The orphaned command would outlive the test.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    );
    run.wait_stdout("thread.started", |line| line.contains("thread.started"));
    let (code, events, _) = run.finish();
    assert_eq!(code, -1);
    assert_resumed_request_is_well_formed(&env, &common::thread_id(&events));
}

/// Issue 17 item 4: SIGKILL while a goal turn's command runs loses neither the turn nor the
/// tokens of the response that asked for the command, and the next load closes the turn the
/// dead process left `running` as `interrupted`.
#[cfg(unix)]
#[test]
fn sigkill_during_a_goal_command_keeps_the_turn_and_its_tokens_charged() {
    let mock = MockModel::start_blocking(Script::new([Step::function_call(
        "exec_command",
        json!({"cmd": "echo $$ > started.fifo; sleep 600"}),
    )
    .with_usage(quest_mock_model::Usage::new(1000, 0, 50, 0))]));
    let env = TestEnv::new();
    let (mut run, pgid) =
        exec_with_running_command_args(&env, &mock, &["--goal", "count the files"]);
    run.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    );
    run.wait_stdout("thread.started", |line| line.contains("thread.started"));
    let (code, events, _) = run.finish();
    assert_eq!(code, -1);
    let id = common::thread_id(&events);

    let status = common::run(env.quest_bare().args(["goal", "status", &id, "--json"]), 0);
    let goal = &serde_json::from_slice::<Value>(&status.stdout).unwrap()["goal"];
    assert_eq!(goal["turnsUsed"], 1, "{goal}");
    assert_eq!(goal["tokensUsed"], 1050, "{goal}");

    let resumed = MockModel::start_blocking(Script::new([Step::message("back")]));
    common::run(env.exec(&resumed).args(["resume", &id, "status?"]), 0);
    let store = quest_state::Store::open_in(env.home()).unwrap();
    let turns = store.list_turns(&id.parse().unwrap()).unwrap();
    let statuses: Vec<_> = turns.iter().map(|t| t.status).collect();
    assert_eq!(
        statuses,
        [
            quest_state::TurnStatus::Interrupted,
            quest_state::TurnStatus::Completed
        ]
    );
}

/// Set when this test binary is re-executed as the one-child wrapper of [`peak_rss_of`]: the
/// JSON `[program, args...]` to run.
const WRAP_COMMAND: &str = "QUEST_TEST_WRAP_COMMAND";
/// Where the wrapper writes the child's stdout, and its peak RSS in bytes (`<file>.rss`).
const WRAP_OUTPUT: &str = "QUEST_TEST_WRAP_OUTPUT";

/// Runs `cmd` through a fresh copy of this test binary and returns the child's stdout and peak
/// RSS. A child's `ru_maxrss` includes the memory of the process that spawned it (Linux keeps
/// the high-water mark across `exec`), and this test process holds the mock's 100 MB of events,
/// so a small wrapper does the spawning.
#[cfg(target_os = "linux")]
fn peak_rss_of(cmd: &std::process::Command, test_name: &str) -> (Vec<u8>, u64) {
    let scratch = tempfile::tempdir().unwrap();
    let output = scratch.path().join("stdout");
    let mut argv = vec![cmd.get_program().to_string_lossy().into_owned()];
    argv.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    let mut wrapper = std::process::Command::new(std::env::current_exe().unwrap());
    wrapper
        .args(["--exact", test_name, "--nocapture", "--test-threads", "1"])
        .env(WRAP_COMMAND, serde_json::to_string(&argv).unwrap())
        .env(WRAP_OUTPUT, &output)
        .current_dir(cmd.get_current_dir().unwrap());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapper.env(key, value),
            None => wrapper.env_remove(key),
        };
    }
    let status = wrapper.status().unwrap();
    let rss = std::fs::read_to_string(output.with_extension("rss"));
    assert!(status.success() && rss.is_ok(), "wrapper failed: {status}");
    (
        std::fs::read(&output).unwrap(),
        rss.unwrap().trim().parse().unwrap(),
    )
}

/// The wrapper side of [`peak_rss_of`]: when this process is one, runs the command, records
/// what it needs and returns true.
#[cfg(target_os = "linux")]
fn act_as_wrapper() -> bool {
    let Some(argv) = std::env::var_os(WRAP_COMMAND) else {
        return false;
    };
    let argv: Vec<String> = serde_json::from_str(&argv.to_string_lossy()).unwrap();
    let output = std::path::PathBuf::from(std::env::var_os(WRAP_OUTPUT).unwrap());
    let status = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_remove(WRAP_COMMAND)
        .env_remove(WRAP_OUTPUT)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&output).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "{argv:?}: {status}");
    let usage =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    // Linux reports kilobytes.
    let rss = u64::try_from(usage.max_rss()).unwrap() * 1024;
    std::fs::write(output.with_extension("rss"), rss.to_string()).unwrap();
    true
}

/// Issue 17 item 7: a 50 MB assistant message (streamed in 1000 deltas, then the whole item)
/// is shortened to its first and last 512 KiB around a notice while it streams, so `exec` never
/// holds it; the shortened text is what is printed, stored and sent back to the model.
#[cfg(target_os = "linux")]
#[test]
fn fifty_megabyte_message_is_shortened_in_bounded_memory() {
    const NAME: &str = "fifty_megabyte_message_is_shortened_in_bounded_memory";
    const SIZE: usize = 50_000_000;
    const HALF: usize = 512 * 1024;
    if act_as_wrapper() {
        return;
    }
    // The mock takes a while to encode 100 MB of events in a debug build.
    let patient = ["-c", "model_providers.test.stream_idle_timeout_ms=120000"];
    let small = MockModel::start_blocking(Script::new([Step::message("small")]));
    let small_env = TestEnv::new();
    let (_, baseline) = peak_rss_of(small_env.exec(&small).args(patient).arg("hi"), NAME);

    let text: String = (0..SIZE)
        .map(|i| char::from(b'a' + u8::try_from(i % 26).unwrap()))
        .collect();
    let mock = MockModel::start_blocking(Script::new([
        Step::message(text.clone()).with_deltas(1000),
        Step::message("short"),
    ]));
    let env = TestEnv::new();
    let (stdout, peak) = peak_rss_of(env.exec(&mock).args(patient).arg("write a lot"), NAME);
    let events: Vec<Value> = String::from_utf8(stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let messages = common::completed_items(&events, "agent_message");
    let shown = messages[0]["text"].as_str().unwrap();
    let notice = format!(
        "\n\n[{} bytes omitted by Quest from the middle of this text]\n\n",
        SIZE - 2 * HALF
    );
    assert_eq!(shown.len(), 2 * HALF + notice.len());
    assert!(shown.starts_with(&text[..HALF]));
    assert!(shown.ends_with(&text[SIZE - HALF..]));
    assert_eq!(&shown[HALF..HALF + notice.len()], notice);
    // Holding the message even once would take 50 MB more than a one-word answer.
    eprintln!(
        "peak RSS: {} KiB for the 50 MB message, {} KiB for a one-word answer",
        peak >> 10,
        baseline >> 10
    );
    assert!(
        peak < baseline + (24 << 20),
        "quest exec peaked at {} MiB, {} MiB for a one-word answer",
        peak >> 20,
        baseline >> 20
    );

    // What was stored is what goes back to the model.
    let resumed = common::run(
        env.exec(&mock)
            .args(["resume", &common::thread_id(&events), "go on"]),
        0,
    );
    assert_eq!(
        common::completed_items(&common::jsonl(&resumed), "agent_message")[0]["text"],
        "short"
    );
    let request = mock.request(1).unwrap();
    assert!(request.body_len < 2 * 2 * HALF, "{}", request.body_len);
    let sent: Vec<&str> = request
        .items_of_type("message")
        .iter()
        .filter(|m| m["role"] == "assistant")
        .filter_map(|m| m["content"][0]["text"].as_str())
        .collect();
    assert_eq!(sent, [shown]);
}
