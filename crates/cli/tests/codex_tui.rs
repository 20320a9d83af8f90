//! Codex's own terminal UI (`@openai/codex` 0.169.0, pinned in `tests/codex-tui`) drives
//! `quest app-server` over WebSocket in a tmux pane: a chat answer appears (with its token usage in
//! `/status`), `/goal` shows the pursuing footer, a goal the runtime blocks shows "Goal stalled",
//! one out of budget shows "Goal unmet", and neither calls the model again.
//!
//! Needs tmux and `npm ci --prefix tests/codex-tui` (both done by `.ci/run`); when either is
//! missing the test fails and says so.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use common::servers::{ListeningServer, QUEST_LISTENING, codex_bin, work_requests};
use common::tmux::Tmux;
use common::{TestEnv, provider_args};
use quest_mock_model::{Condition, MockModel, Rule, Script, Step};

fn start_server(env: &TestEnv, mock: &MockModel) -> ListeningServer {
    start_server_with(env, mock, &[])
}

/// Starts `quest app-server` with extra `-c` overrides.
fn start_server_with(env: &TestEnv, mock: &MockModel, overrides: &[&str]) -> ListeningServer {
    ListeningServer::spawn(
        env.quest_bare()
            .arg("app-server")
            .args(["--listen", "ws://127.0.0.1:0"])
            .args(provider_args(&mock.uri()))
            .args(["-c", "goals.no_progress_backoff=[\"2s\"]"])
            .args(overrides.iter().flat_map(|o| ["-c", o]))
            .arg("-C")
            .arg(env.work()),
        QUEST_LISTENING,
    )
}

/// Codex's TUI in a tmux pane, attached to `server`, with a Codex home of its own (returned so it
/// lives as long as the pane), once it shows the model.
fn open_codex_tui(
    env: &TestEnv,
    server: &ListeningServer,
    name: &str,
) -> (Tmux, tempfile::TempDir) {
    let codex = codex_bin();
    let codex_home = tempfile::tempdir().unwrap();
    let session = format!("{name}-{}", std::process::id());
    let command = format!(
        "env CODEX_HOME={} node {} --remote {}",
        codex_home.path().display(),
        codex.display(),
        server.url
    );
    let tui = Tmux::start(&session, env.work(), &command, (160, 50));
    tui.wait_for("gpt-test");
    (tui, codex_home)
}

#[test]
fn codex_tui_chats_and_pursues_a_goal_against_quest() {
    let env = TestEnv::new();
    let goal_turns = Condition::input_contains("codex_internal_context source=\\\"goal\\\"");
    let script = Script::default()
        .with_rule(Rule::new(
            Condition::last_user_text_contains("ping"),
            Step::message("pong from mock"),
        ))
        .with_rule(Rule::new(
            goal_turns,
            Step::message("Still looking into it."),
        ))
        .with_rule(Rule::new(
            Condition::last_user_text_contains("say hi").and(not_title()),
            Step::message("Hello from mock")
                .with_usage(quest_mock_model::Usage::new(12_000, 0, 345, 0)),
        ))
        .with_default(Step::message("Hello from mock"));
    let mock = MockModel::start_blocking(script);
    let server = start_server_with(&env, &mock, &["model_context_window=200000"]);
    let (tui, _codex_home) = open_codex_tui(&env, &server, "quest-tui");

    tui.type_line("say hi");
    tui.wait_for("Hello from mock");
    // The turn's token usage and the context window reach Codex's /status.
    tui.type_line("/status");
    let status = tui.wait_for("Token usage:");
    assert!(
        status.contains("12.3K total  (12K input + 345 output)"),
        "screen:\n{status}"
    );
    assert!(status.contains("12.3K used / 200K"), "screen:\n{status}");

    tui.type_line("/goal write hello.txt");
    tui.wait_for("Pursuing goal");
    // The model only restates that it is working: the runtime's breaker blocks the goal after
    // three turns without progress, and the footer says so.
    let screen = tui.wait_for("Goal stalled");
    let stalled_at = work_requests(&mock);
    assert!(
        stalled_at >= 4,
        "chat + three goal turns; screen:\n{screen}"
    );

    // A blocked goal costs nothing more: the next chat turn is the only request.
    tui.type_line("ping");
    tui.wait_for("pong from mock");
    assert_eq!(
        work_requests(&mock),
        stalled_at + 1,
        "screen:\n{}",
        tui.screen()
    );
    drop(server);
}

/// Not a request for Codex's title generation (which quotes the user's first message).
fn not_title() -> Condition {
    Condition::input_contains("Generate a concise, single-line task title").negate()
}

#[test]
fn codex_tui_interrupts_pauses_clears_hits_usage_limits_compacts_and_resumes() {
    let env = TestEnv::new();
    // Goal turns: the last user message is the runtime's continuation message.
    let goal_turn = Condition::last_user_text_contains("codex_internal_context source=\"goal\"");
    let script = Script::default()
        .with_rule(Rule::new(
            Condition::request_kind("compaction"),
            Step::message("SUMMARY: a slow command was interrupted; goals came and went."),
        ))
        .with_rule(Rule::new(
            Condition::input_contains("LIMITME").and(not_title()),
            Step::usage_limit(Some("plus"), Some(4_102_444_800)),
        ))
        .with_rule(Rule::new(
            Condition::last_user_text_contains("ping").and(not_title()),
            Step::message("pong from mock"),
        ))
        .with_rule(Rule::new(
            Condition::last_user_text_contains("run slow")
                .and(Condition::last_item_type("message"))
                .and(not_title()),
            Step::calls([quest_mock_model::Output::function_call(
                "exec_command",
                serde_json::json!({"cmd": "sleep 30"}),
            )]),
        ))
        .with_rule(Rule::new(
            goal_turn.and(Condition::last_item_type("message")),
            Step::calls([quest_mock_model::Output::function_call(
                "exec_command",
                serde_json::json!({"cmd": "echo goal-step; sleep 30"}),
            )]),
        ))
        .with_default(Step::message("Hello from mock"));
    let mock = MockModel::start_blocking(script);
    let server = start_server(&env, &mock);
    let (tui, _codex_home) = open_codex_tui(&env, &server, "quest-tui-flows");

    // Esc interrupts a running command.
    tui.type_line("please run slow");
    tui.wait_for("Running sleep 30");
    tui.press("Escape");
    tui.wait_for("Conversation interrupted");

    // Esc during a goal turn pauses the goal before interrupting; a paused goal asks the model
    // nothing more.
    tui.type_line("/goal write the report");
    tui.wait_for("Pursuing goal");
    tui.wait_for("Running echo goal-step");
    tui.press("Escape");
    tui.wait_for("Goal paused (/goal resume)");
    let paused_at = work_requests(&mock);
    tui.type_line("ping");
    tui.wait_for("pong from mock");
    assert_eq!(
        work_requests(&mock),
        paused_at + 1,
        "screen:\n{}",
        tui.screen()
    );

    // Resumed, it continues; cleared, the footer drops it and nothing continues after Esc.
    tui.type_line("/goal resume");
    tui.wait_for("Pursuing goal");
    tui.wait_for_count("Running echo goal-step", 1);
    tui.type_line("/goal clear");
    tui.wait_until("the goal footer gone", |screen| {
        screen.contains("Goal cleared")
            && !screen.contains("Pursuing goal")
            && !screen.contains("Goal paused (/goal resume)")
    });
    tui.press("Escape");
    tui.wait_for_count("Conversation interrupted", 3);
    let settled = work_requests(&mock);
    tui.type_line("ping");
    tui.wait_for_count("pong from mock", 2);
    assert_eq!(
        work_requests(&mock),
        settled + 1,
        "screen:\n{}",
        tui.screen()
    );

    // A goal that hits the usage limit says so in the footer, after one request.
    tui.type_line("/goal LIMITME finish the report");
    tui.wait_for("Goal hit usage limits");
    assert_eq!(
        work_requests(&mock),
        settled + 2,
        "screen:\n{}",
        tui.screen()
    );

    // /compact runs thread/compact/start.
    tui.type_line("/compact");
    tui.wait_for("Context compacted");
    assert!(
        mock.requests().iter().any(|r| r
            .header("x-codex-turn-metadata")
            .is_some_and(|m| m.contains("\"request_kind\":\"compaction\""))),
        "no compaction request"
    );

    // A new thread, then /resume picks the earlier one and shows its history.
    tui.type_line("/new");
    tui.wait_until("a fresh thread", |screen| {
        !screen.contains("please run slow")
    });
    tui.type_line("/resume");
    tui.wait_for("Resume a previous session");
    tui.wait_for("please run slow");
    tui.press("Enter");
    let reopened = tui.wait_until("the earlier thread's history", |screen| {
        screen.contains("please run slow") && screen.contains("pong from mock")
    });
    assert!(
        !reopened.contains("Resume a previous session"),
        "screen:\n{reopened}"
    );
    drop(server);
}

#[test]
fn codex_tui_shows_a_goal_out_of_budget_then_one_achieved() {
    let env = TestEnv::new();
    let goal_turn = Condition::last_user_text_contains("codex_internal_context source=\"goal\"");
    // Asked for a budgeted goal, the model creates one with a 1500-token budget; each goal turn
    // then reports 2100 tokens, so the first continuation exhausts the budget.
    let script = Script::default()
        .with_rule(Rule::new(
            Condition::last_user_text_contains("with a budget")
                .and(Condition::last_item_type("message"))
                .and(not_title()),
            Step::create_goal("Tidy the release notes", Some(1_500)),
        ))
        .with_rule(Rule::new(
            goal_turn
                .clone()
                .and(Condition::input_contains("SHIPIT"))
                .and(Condition::last_item_type("message")),
            Step::update_goal("complete"),
        ))
        .with_rule(Rule::new(
            Condition::last_call_name("update_goal")
                .and(Condition::last_item_type("function_call_output"))
                .and(not_title()),
            Step::message("The notes are shipped."),
        ))
        .with_rule(Rule::new(
            goal_turn,
            Step::message("Still tidying the notes.")
                .with_usage(quest_mock_model::Usage::new(2_000, 0, 100, 0)),
        ))
        .with_rule(Rule::new(
            Condition::last_call_name("create_goal")
                .and(Condition::last_item_type("function_call_output"))
                .and(not_title()),
            Step::message("Goal set with a budget."),
        ))
        .with_rule(Rule::new(
            Condition::last_user_text_contains("ping").and(not_title()),
            Step::message("pong from mock"),
        ))
        .with_default(Step::message("Hello from mock"));
    let mock = MockModel::start_blocking(script);
    let server = start_server(&env, &mock);
    let (tui, _codex_home) = open_codex_tui(&env, &server, "quest-tui-budget");

    tui.type_line("please set a goal with a budget");
    // Codex's footer for `budgetLimited`: "Goal unmet (<used> / <budget> tokens)".
    let screen = tui.wait_for("Goal unmet (");
    assert!(screen.contains(" / 1.5K tokens)"), "screen:\n{screen}");
    assert!(
        screen.contains("Still tidying the notes."),
        "screen:\n{screen}"
    );
    let limited_at = work_requests(&mock);
    assert!(limited_at >= 3, "screen:\n{screen}");

    // Out of budget, the goal asks the model nothing more: the next chat turn is the only
    // request, and the footer keeps the status.
    tui.type_line("ping");
    let screen = tui.wait_for("pong from mock");
    assert_eq!(work_requests(&mock), limited_at + 1, "screen:\n{screen}");
    assert!(screen.contains("Goal unmet ("), "screen:\n{screen}");

    // The last status: a goal the model marks complete shows "Goal achieved".
    tui.type_line("/goal clear");
    tui.wait_until("the goal footer gone", |screen| {
        screen.contains("Goal cleared") && !screen.contains("Goal unmet (")
    });
    tui.type_line("/goal SHIPIT publish the notes");
    let screen = tui.wait_for("Goal achieved");
    assert!(
        screen.contains("The notes are shipped."),
        "screen:\n{screen}"
    );
    drop(server);
}

/// Quest's approval requests appear as Codex's own approval dialogs and the answers reach Quest:
/// an approved escalated command runs outside the sandbox; a declined patch is not applied and
/// the model is told so.
#[test]
fn codex_tui_shows_and_answers_quests_approval_requests() {
    let env = TestEnv::new();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("approved.txt");
    let script = Script::default()
        .with_rule(Rule::new(
            Condition::last_item_type("function_call_output").and(not_title()),
            Step::message("The command finished."),
        ))
        .with_rule(Rule::new(
            Condition::last_item_type("custom_tool_call_output").and(not_title()),
            Step::message("Leaving the file alone."),
        ))
        .with_rule(Rule::new(
            Condition::last_user_text_contains("write outside").and(not_title()),
            Step::calls([quest_mock_model::Output::function_call(
                "exec_command",
                serde_json::json!({
                    "cmd": format!("echo approved > {}", target.display()),
                    "sandbox_permissions": "require_escalated",
                    "justification": "the report goes to the shared directory",
                }),
            )]),
        ))
        .with_rule(Rule::new(
            Condition::last_user_text_contains("add notes").and(not_title()),
            Step::calls([quest_mock_model::Output::custom_tool_call(
                "apply_patch",
                "*** Begin Patch\n*** Add File: notes.txt\n+first\n+second\n*** End Patch\n",
            )]),
        ))
        .with_default(Step::message("Hello from mock"));
    let mock = MockModel::start_blocking(script);
    // Codex's TUI starts its threads read-only: every write asks.
    let server = start_server_with(&env, &mock, &["approval_policy=\"on-request\""]);
    let (tui, _codex_home) = open_codex_tui(&env, &server, "quest-tui-approvals");

    tui.type_line("please write outside");
    let dialog = tui.wait_for("Would you like to run the following command?");
    assert!(
        dialog.contains("the report goes to the shared directory"),
        "the justification is shown; screen:\n{dialog}"
    );
    assert!(!target.exists(), "nothing runs before the answer");
    tui.press("y");
    tui.wait_for("The command finished.");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "approved\n");

    tui.type_line("please add notes");
    let dialog = tui.wait_for("Would you like to make the following edits?");
    // The change is shown with its content, as Codex shows its own patches.
    assert!(
        dialog.contains("notes.txt (+2 -0)"),
        "the new file and its line count; screen:\n{dialog}"
    );
    tui.press("Escape");
    tui.wait_until("the turn after the refusal", |screen| {
        screen.contains("Leaving the file alone.") || screen.contains("Conversation interrupted")
    });
    assert!(
        !env.work().join("notes.txt").exists(),
        "a declined patch is not applied"
    );
    drop(server);
}
