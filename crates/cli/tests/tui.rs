//! Quest's own terminal UI, driven in a tmux pane (a real pseudo-terminal) against
//! `quest-mock-model`: `/goal` starts continuation turns, Esc pauses the goal before interrupting
//! the running turn and no further request reaches the model, and `/goal resume` into a usage
//! limit shows the usage-limited footer. Once with the server in-process (`quest`), once attached
//! to a separately started `quest app-server` (`quest --remote ws://…`).
//!
//! The same UI also drives Codex's own app-server (`codex app-server --listen ws://…`, 0.169.0,
//! pinned in `tests/codex-tui`): chat, `/goal`, and Esc pausing the goal.
//!
//! Needs tmux and `npm ci --prefix tests/codex-tui` (both done by `.ci/run`); when either is
//! missing the test fails and says so.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::servers::{ListeningServer, QUEST_LISTENING, codex_bin, work_requests};
use common::tmux::Tmux;
use common::{TestEnv, provider_args};
use quest_mock_model::{Condition, MockModel, Rule, Script, Step};

const TIMEOUT: Duration = Duration::from_secs(90);
const GOAL_TURN: &str = "codex_internal_context source=\\\"goal\\\"";

fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// A script that runs `quest` with the test environment (tmux starts commands through a shell).
fn launcher(env: &TestEnv, args: &[String]) -> std::path::PathBuf {
    let path = env.home().join("launch-tui.sh");
    let mut line = format!(
        "export QUEST_HOME={} HOME={} TEST_API_KEY=sk-test NO_COLOR=1\nunset QUEST_API_KEY CODEX_API_KEY OPENAI_API_KEY\nexec {}",
        shell_quote(&env.home().display().to_string()),
        shell_quote(&env.user_home.path().display().to_string()),
        shell_quote(env!("CARGO_BIN_EXE_quest")),
    );
    for arg in args {
        line.push(' ');
        line.push_str(&shell_quote(arg));
    }
    line.push_str(&format!(
        " 2>{}\n",
        shell_quote(&env.home().join("tui-stderr.log").display().to_string())
    ));
    std::fs::write(&path, line).unwrap();
    path
}

fn goal_config() -> Vec<String> {
    [
        "goals.max_no_progress_turns=50",
        "goals.max_repeated_blocker_turns=50",
        "goals.no_progress_backoff=[\"1s\"]",
    ]
    .iter()
    .flat_map(|c| ["-c".to_string(), c.to_string()])
    .collect()
}

/// Goal turns answer at once twice, then hang (so Esc always meets a running turn); the chat
/// "ping 7431" gets "pong"; every request after that (the resumed goal) hits a usage limit.
fn script(resets_at: i64) -> Script {
    Script::default()
        .with_rule(Rule::new(
            Condition::last_user_text_contains("ping 7431"),
            Step::message("pong from mock"),
        ))
        .with_rule(Rule::new(
            Condition::input_contains("pong from mock"),
            Step::usage_limit(Some("plus"), Some(resets_at)),
        ))
        .with_rule(
            Rule::new(
                Condition::input_contains(GOAL_TURN),
                Step::message("Still working on it."),
            )
            .at_most(2),
        )
        .with_rule(Rule::new(
            Condition::input_contains(GOAL_TURN),
            Step::message("never shown").delay(Duration::from_secs(120)),
        ))
        .with_default(Step::message("Hello from mock"))
}

fn wait_requests(mock: &MockModel, at_least: usize, screen: impl Fn() -> String) {
    let deadline = Instant::now() + TIMEOUT;
    while mock.request_count() < at_least {
        assert!(
            Instant::now() < deadline,
            "only {} model requests; screen:\n{}",
            mock.request_count(),
            screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn goal_flow(tui: &Tmux, mock: &MockModel) {
    tui.wait_for("gpt-test");
    tui.type_line("say hi");
    tui.wait_for("Hello from mock");

    tui.type_line("/goal write hello.txt");
    tui.wait_for("Pursuing goal");
    // Two continuation turns answer; the third hangs in flight.
    tui.wait_until("two continuation turns", |s| {
        s.matches("Still working on it.").count() >= 2
    });
    wait_requests(mock, 4, || tui.screen());
    tui.wait_for("Working on the goal");

    tui.keys(&["Escape"]);
    let screen = tui.wait_for("Goal paused (/goal resume)");
    tui.wait_for("Interrupted");
    let paused_at = mock.request_count();
    assert_eq!(paused_at, 4, "chat + three goal turns; screen:\n{screen}");

    // Paused means no more continuations: the next request is the chat turn.
    tui.type_line("ping 7431");
    tui.wait_for("pong from mock");
    assert_eq!(
        mock.request_count(),
        paused_at + 1,
        "screen:\n{}",
        tui.screen()
    );
    assert!(tui.screen().contains("Goal paused (/goal resume)"));

    // Resuming runs one continuation, which hits the usage limit: one request, then the footer.
    tui.type_line("/goal resume");
    let screen = tui.wait_for("Goal hit usage limits (resets ");
    assert!(screen.contains("/goal resume)"), "{screen}");
    assert_eq!(mock.request_count(), paused_at + 2, "screen:\n{screen}");

    tui.type_line("/quit");
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn tui_goal_pause_on_esc_and_usage_limit_in_process() {
    let env = TestEnv::new();
    let mock = MockModel::start_blocking(script(now_s() + 3600));
    let mut args = provider_args(&mock.uri());
    args.extend(goal_config());
    args.push("-C".into());
    args.push(env.work().display().to_string());
    let launch = launcher(&env, &args);
    let tui = Tmux::start(
        &format!("quest-tui-local-{}", std::process::id()),
        env.work(),
        &format!("bash {}", launch.display()),
        (100, 30),
    );
    goal_flow(&tui, &mock);
    tui.wait_exit();
    drop(tui);

    // `quest resume --last` reopens the thread with its history and asks before resuming the
    // usage-limited goal; leaving it costs no request.
    let requests = mock.request_count();
    let mut args = vec!["resume".to_string(), "--last".to_string()];
    args.extend(provider_args(&mock.uri()));
    args.extend(goal_config());
    let launch = launcher(&env, &args);
    let tui = Tmux::start(
        &format!("quest-tui-resume-{}", std::process::id()),
        env.work(),
        &format!("bash {}", launch.display()),
        (100, 30),
    );
    let screen = tui.wait_for("Resume usage limited goal?");
    assert!(screen.contains("Goal: write hello.txt"), "{screen}");
    assert!(
        screen.contains("pong from mock"),
        "history is shown: {screen}"
    );
    tui.keys(&["2"]);
    tui.wait_for("Goal left usage limited");
    assert!(tui.screen().contains("Goal hit usage limits (resets "));
    tui.type_line("/quit");
    tui.wait_exit();
    assert_eq!(mock.request_count(), requests);
}

#[test]
fn tui_goal_pause_on_esc_and_usage_limit_over_remote() {
    let env = TestEnv::new();
    let mock = MockModel::start_blocking(script(now_s() + 3600));
    let server = ListeningServer::spawn(
        env.quest_bare()
            .arg("app-server")
            .args(["--listen", "ws://127.0.0.1:0"])
            .args(provider_args(&mock.uri()))
            .args(goal_config())
            .arg("-C")
            .arg(env.work()),
        QUEST_LISTENING,
    );
    let launch = launcher(&env, &["--remote".to_string(), server.url.clone()]);
    let tui = Tmux::start(
        &format!("quest-tui-remote-{}", std::process::id()),
        env.work(),
        &format!("bash {}", launch.display()),
        (100, 30),
    );
    goal_flow(&tui, &mock);
    tui.wait_exit();
    drop(server);
}

#[test]
fn tui_chats_and_pauses_a_goal_on_a_codex_app_server() {
    let codex = codex_bin();
    let env = TestEnv::new();
    let script = Script::default()
        .with_rule(Rule::new(
            Condition::last_user_text_contains("ping 7431"),
            Step::message("pong from mock"),
        ))
        .with_rule(Rule::new(
            Condition::input_contains("write hello.txt"),
            Step::message("Still working on it.").delay(Duration::from_millis(2000)),
        ))
        .with_default(Step::message("Hello from mock"));
    let mock = MockModel::start_blocking(script);
    let codex_home = tempfile::tempdir().unwrap();
    std::fs::write(
        codex_home.path().join("config.toml"),
        format!(
            "model = \"gpt-test\"\nmodel_provider = \"mock\"\n\
             [model_providers.mock]\nname = \"mock\"\nbase_url = \"{}\"\n\
             wire_api = \"responses\"\nenv_key = \"TEST_API_KEY\"\n\
             [features]\ngoals = true\n",
            mock.uri()
        ),
    )
    .unwrap();
    let server = ListeningServer::spawn(
        std::process::Command::new("node")
            .arg(&codex)
            .args(["app-server", "--listen", "ws://127.0.0.1:0"])
            .env("CODEX_HOME", codex_home.path())
            .env("HOME", env.user_home.path())
            .env("TEST_API_KEY", "sk-test")
            .env_remove("OPENAI_API_KEY")
            .env_remove("CODEX_API_KEY")
            .current_dir(env.work())
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
        "listening on: ",
    );
    let launch = launcher(&env, &["--remote".to_string(), server.url.clone()]);
    let tui = Tmux::start(
        &format!("quest-tui-codex-{}", std::process::id()),
        env.work(),
        &format!("bash {}", launch.display()),
        (100, 30),
    );
    tui.wait_for("gpt-test");
    tui.type_line("say hi");
    tui.wait_for("Hello from mock");

    tui.type_line("/goal write hello.txt");
    tui.wait_for("Pursuing goal");
    tui.wait_until("a continuation turn", |s| {
        s.matches("Still working on it.").count() >= 2
    });
    // Esc while a goal turn runs (each answer takes the mock 2 s) pauses the goal first.
    tui.wait_for("Working on the goal");
    tui.keys(&["Escape"]);
    tui.wait_for("Goal paused (/goal resume)");
    // A turn that was already under way when Esc arrived may still finish; none starts after.
    tui.wait_until("the turn to end", |s| !s.contains("Working on the goal"));
    let paused_at = work_requests(&mock);
    tui.type_line("ping 7431");
    tui.wait_for("pong from mock");
    assert_eq!(
        work_requests(&mock),
        paused_at + 1,
        "screen:\n{}",
        tui.screen()
    );
    tui.type_line("/quit");
    tui.wait_exit();
    drop(server);
}

#[test]
fn tui_asks_before_running_a_command_and_obeys_the_answer() {
    let env = TestEnv::new();
    let script = Script::new([
        Step::function_call(
            "exec_command",
            serde_json::json!({"cmd": "touch approved.txt"}),
        ),
        Step::function_call(
            "exec_command",
            serde_json::json!({"cmd": "touch declined.txt"}),
        ),
        Step::message("All done."),
    ]);
    let mock = MockModel::start_blocking(script);
    let mut args = provider_args(&mock.uri());
    args.extend([
        "-c".to_string(),
        "approval_policy=\"untrusted\"".to_string(),
    ]);
    args.push("-C".into());
    args.push(env.work().display().to_string());
    let launch = launcher(&env, &args);
    let tui = Tmux::start(
        &format!("quest-tui-approve-{}", std::process::id()),
        env.work(),
        &format!("bash {}", launch.display()),
        (100, 30),
    );
    tui.wait_for("gpt-test");
    tui.type_line("create the files");
    let screen = tui.wait_for("Run this command?");
    assert!(screen.contains("touch approved.txt"), "{screen}");
    tui.keys(&["y"]);
    tui.wait_for("Approved `");
    let screen = tui.wait_for("Run this command?");
    assert!(screen.contains("touch declined.txt"), "{screen}");
    tui.keys(&["n"]);
    tui.wait_for("All done.");
    assert!(env.work().join("approved.txt").exists());
    assert!(!env.work().join("declined.txt").exists());
    let screen = tui.screen();
    assert!(screen.contains("Declined `"), "{screen}");
    tui.type_line("/quit");
    tui.wait_exit();
}

/// A patch cell shows each file with its line counts and its diff: the server sends the diff of
/// every file the patch changed.
#[test]
fn tui_patch_cells_show_each_files_diff() {
    let env = TestEnv::new();
    std::fs::write(env.work().join("notes.txt"), "one\ntwo\nthree\n").unwrap();
    let script = Script::new([
        Step::calls([quest_mock_model::Output::apply_patch(
            "*** Begin Patch\n*** Update File: notes.txt\n@@\n one\n-two\n+2\n*** Add File: fresh.txt\n+brand new\n*** End Patch\n",
        )]),
        Step::message("Patched."),
    ]);
    let mock = MockModel::start_blocking(script);
    let mut args = provider_args(&mock.uri());
    args.extend(["-c".to_string(), "approval_policy=\"never\"".to_string()]);
    args.push("-C".into());
    args.push(env.work().display().to_string());
    let launch = launcher(&env, &args);
    let tui = Tmux::start(
        &format!("quest-tui-patch-{}", std::process::id()),
        env.work(),
        &format!("bash {}", launch.display()),
        (100, 30),
    );
    tui.wait_for("gpt-test");
    tui.type_line("edit the notes");
    let screen = tui.wait_for("Patched.");
    assert!(screen.contains("notes.txt +1 −1"), "{screen}");
    assert!(screen.contains("-two") && screen.contains("+2"), "{screen}");
    assert!(screen.contains("fresh.txt (new) +1 −0"), "{screen}");
    assert!(screen.contains("+brand new"), "{screen}");
    assert_eq!(
        std::fs::read_to_string(env.work().join("notes.txt")).unwrap(),
        "one\n2\nthree\n"
    );
    tui.type_line("/quit");
    tui.wait_exit();
}

fn request_kind(request: &quest_mock_model::CapturedRequest) -> String {
    request
        .header("x-codex-turn-metadata")
        .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
        .and_then(|m| m["request_kind"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn window_id(request: &quest_mock_model::CapturedRequest) -> String {
    request
        .header("x-codex-window-id")
        .unwrap_or_default()
        .to_string()
}

#[test]
fn tui_compact_summarizes_the_thread_and_the_next_turn_starts_from_the_summary() {
    let env = TestEnv::new();
    let script = Script::default()
        .with_rule(Rule::new(
            Condition::request_kind("compaction"),
            Step::message("SUMMARY-{n}: the user shared marker ALPHA-7431; nothing else pending."),
        ))
        .with_rule(Rule::new(
            Condition::last_user_text_contains("ALPHA-7431"),
            Step::message("Noted, FIRST-ANSWER-5512."),
        ))
        .with_default(Step::message("Continuing from the summary."));
    let mock = MockModel::start_blocking(script);
    let mut args = provider_args(&mock.uri());
    args.push("-C".into());
    args.push(env.work().display().to_string());
    let launch = launcher(&env, &args);
    let tui = Tmux::start(
        &format!("quest-tui-compact-{}", std::process::id()),
        env.work(),
        &format!("bash {}", launch.display()),
        (100, 30),
    );
    tui.wait_for("gpt-test");
    tui.type_line("remember the marker ALPHA-7431");
    tui.wait_for("FIRST-ANSWER-5512");
    assert_eq!(mock.request_count(), 1);

    tui.type_line("/compact");
    let screen = tui.wait_for("Context compacted");
    assert!(screen.contains("Compacting the thread"), "{screen}");
    wait_requests(&mock, 2, || tui.screen());
    let compaction = mock.request(1).unwrap();
    assert_eq!(request_kind(&compaction), "compaction", "screen:\n{screen}");
    let text = compaction.body["input"].to_string();
    assert!(
        text.contains("ALPHA-7431") && text.contains("FIRST-ANSWER-5512"),
        "the summary request carries the history: {text}"
    );
    let first_window = window_id(&compaction);
    let thread = first_window
        .strip_suffix(":0")
        .unwrap_or_else(|| panic!("window id {first_window:?} of the first window"));

    // The next turn is an ordinary turn in the next window, built from the summary: the old
    // answer is gone, the summary stands in for it.
    tui.type_line("what next?");
    tui.wait_for("Continuing from the summary.");
    assert_eq!(mock.request_count(), 3, "screen:\n{}", tui.screen());
    let next = mock.request(2).unwrap();
    assert_eq!(request_kind(&next), "turn");
    assert_eq!(window_id(&next), format!("{thread}:1"));
    let text = next.body["input"].to_string();
    assert!(text.contains("SUMMARY-"), "{text}");
    assert!(text.contains("what next?"), "{text}");
    assert!(!text.contains("FIRST-ANSWER-5512"), "{text}");
    // The history on screen still shows the whole conversation and the compaction notice.
    let history = tui.history();
    for shown in ["ALPHA-7431", "FIRST-ANSWER-5512", "Context compacted"] {
        assert!(history.contains(shown), "{shown:?} missing:\n{history}");
    }
    tui.type_line("/quit");
    tui.wait_exit();
}
