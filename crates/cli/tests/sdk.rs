//! The official TypeScript SDK (`@openai/codex-sdk`, pinned in `tests/sdk`) driving the real
//! `quest` binary through `codexPathOverride` against the scripted model server: a thread with two
//! `run()` turns and one `runStreamed()` turn, final responses, usage and the thread id read back by
//! the SDK, and the requests the server saw.
//!
//! Needs Node.js 18+ and `npm ci --omit=optional --prefix tests/sdk` (done by `.ci/run`); when
//! either is missing these tests fail and say so.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::TestEnv;
use quest_mock_model::{MockModel, Script, Step, Usage};
use serde_json::{Value, json};

/// The repository root (`crates/cli/../..`).
fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    std::fs::canonicalize(&root).unwrap_or(root)
}

/// `tests/sdk/run-thread.mjs`, after checking that `node` runs and the SDK is installed.
fn sdk_script() -> PathBuf {
    let sdk_dir = repo_root().join("tests").join("sdk");
    let install = format!(
        "run `npm ci --omit=optional --prefix {}`",
        sdk_dir.display()
    );
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`node --version` failed ({}): the SDK compatibility test needs Node.js 18+; install it, then {install}",
            out.status
        ),
        Err(e) => panic!(
            "cannot run `node` ({e}): the SDK compatibility test needs Node.js 18+; install it, then {install}"
        ),
    }
    let sdk_package = sdk_dir.join("node_modules/@openai/codex-sdk/package.json");
    assert!(
        sdk_package.is_file(),
        "@openai/codex-sdk is not installed ({} is missing): {install}",
        sdk_package.display()
    );
    sdk_dir.join("run-thread.mjs")
}

/// `node run-thread.mjs --quest <quest> --base-url <mock> --cd <work> <extra...>` with a fresh
/// `QUEST_HOME` and none of the caller's keys or SDK variables leaking in.
fn run_thread(env: &TestEnv, mock: &MockModel, extra: &[&str]) -> Output {
    let script = sdk_script();
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .arg("--quest")
        .arg(env!("CARGO_BIN_EXE_quest"))
        .arg("--base-url")
        .arg(mock.uri())
        .arg("--cd")
        .arg(env.work())
        .args(extra)
        .env("QUEST_HOME", env.home())
        .env("TEST_API_KEY", "sk-env")
        .env("NO_COLOR", "1")
        .env_remove("QUEST_API_KEY")
        .env_remove("CODEX_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("CODEX_INTERNAL_ORIGINATOR_OVERRIDE")
        .env_remove("TRACEPARENT")
        .env_remove("TRACESTATE")
        .current_dir(env.work())
        .stdin(Stdio::null());
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !output.status.success() {
        panic!(
            "{cmd:?} failed ({})\n--- stdout\n{}\n--- stderr\n{}\n--- requests the mock saw\n{:#?}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            mock.requests()
                .iter()
                .map(|r| (&r.path, &r.answered_by, &r.headers))
                .collect::<Vec<_>>()
        );
    }
    output
}

/// One JSON record per turn from the script's stdout.
fn turns(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("run-thread printed a non-JSON line ({e}): {line}"))
        })
        .collect()
}

/// The SDK's `Usage` for a scripted [`Usage::new`].
fn sdk_usage(input: u64, cached: u64, output: u64, reasoning: u64) -> Value {
    json!({
        "input_tokens": input,
        "cached_input_tokens": cached,
        "cache_write_input_tokens": 0,
        "output_tokens": output,
        "reasoning_output_tokens": reasoning,
    })
}

/// Concatenated text of every content part of every `input` item with `role`.
fn texts_with_role(input: &[Value], role: &str) -> Vec<String> {
    input
        .iter()
        .filter(|item| item["role"] == role)
        .map(|item| {
            item["content"]
                .as_array()
                .map(|parts| {
                    parts
                        .iter()
                        .filter_map(|p| p["text"].as_str())
                        .collect::<String>()
                })
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn sdk_runs_a_thread_through_quest_with_a_custom_provider() {
    let mock = MockModel::start_blocking(Script::new([
        Step::message("First answer").with_usage(Usage::new(1200, 1000, 7, 0)),
        Step::message("Second answer").with_usage(Usage::new(2400, 2000, 9, 3)),
        Step::message("Streamed answer").with_usage(Usage::new(3600, 3000, 11, 0)),
    ]));
    let env = TestEnv::new();
    let out = run_thread(
        &env,
        &mock,
        &[
            "--provider",
            "custom",
            "--prompt",
            "first question",
            "--prompt",
            "second question",
            "--streamed-prompt",
            "third question",
        ],
    );
    let turns = turns(&out);
    assert_eq!(turns.len(), 3, "{turns:#?}");

    // What the SDK returned.
    let thread_id = turns[0]["threadId"]
        .as_str()
        .expect("a thread id")
        .to_string();
    assert!(!thread_id.is_empty());
    let expected = [
        ("run", "First answer", sdk_usage(1200, 1000, 7, 0)),
        ("run", "Second answer", sdk_usage(2400, 2000, 9, 3)),
        ("streamed", "Streamed answer", sdk_usage(3600, 3000, 11, 0)),
    ];
    for (turn, (kind, text, usage)) in turns.iter().zip(expected) {
        assert_eq!(turn["kind"], kind, "{turn:#}");
        assert_eq!(
            turn["threadId"],
            thread_id.as_str(),
            "same thread on every turn: {turn:#}"
        );
        assert_eq!(turn["finalResponse"], text, "{turn:#}");
        assert_eq!(turn["usage"], usage, "{turn:#}");
        assert_eq!(
            turn["items"],
            json!([{"id": "item_0", "type": "agent_message", "text": text}]),
            "{turn:#}"
        );
    }
    assert_eq!(
        turns[2]["eventTypes"],
        json!([
            "thread.started",
            "turn.started",
            "item.completed",
            "turn.completed"
        ])
    );

    // What the server saw: one request per turn, as the SDK's process, with the SDK's key.
    let requests = mock.requests();
    assert_eq!(requests.len(), 3, "one model request per turn");
    for request in &requests {
        assert_eq!(request.path, "/v1/responses");
        assert_eq!(request.header("originator"), Some("codex_sdk_ts"));
        // `apiKey` reaches quest as CODEX_API_KEY, which replaces the provider's env_key.
        assert_eq!(request.header("authorization"), Some("Bearer sk-sdk"));
        assert_eq!(request.header("thread-id"), Some(thread_id.as_str()));
        assert_eq!(request.body["model"], "gpt-test");
    }

    // Resumed turns carry the earlier history, then the new prompt last.
    let users: Vec<Vec<String>> = requests
        .iter()
        .map(|r| texts_with_role(r.input(), "user"))
        .collect();
    let assistants: Vec<Vec<String>> = requests
        .iter()
        .map(|r| texts_with_role(r.input(), "assistant"))
        .collect();
    let has = |texts: &[String], needle: &str| texts.iter().any(|t| t == needle);
    assert!(
        has(&users[0], "first question"),
        "{:#?}",
        requests[0].input()
    );
    assert!(assistants[0].is_empty(), "{:#?}", requests[0].input());
    assert!(
        has(&users[1], "first question"),
        "{:#?}",
        requests[1].input()
    );
    assert_eq!(
        assistants[1],
        ["First answer"],
        "{:#?}",
        requests[1].input()
    );
    assert_eq!(
        requests[1]
            .last_input_item()
            .map(|item| texts_with_role(std::slice::from_ref(item), "user")),
        Some(vec!["second question".to_string()]),
    );
    assert!(has(&users[2], "first question") && has(&users[2], "second question"));
    assert_eq!(
        assistants[2],
        ["First answer", "Second answer"],
        "{:#?}",
        requests[2].input()
    );
    assert_eq!(
        requests[2]
            .last_input_item()
            .map(|item| texts_with_role(std::slice::from_ref(item), "user")),
        Some(vec!["third question".to_string()]),
    );
}

#[test]
fn sdk_base_url_and_api_key_reach_the_built_in_provider() {
    let mock = MockModel::start_blocking(Script::new([
        Step::message("Built-in answer").with_usage(Usage::new(500, 0, 5, 0))
    ]));
    let env = TestEnv::new();
    let out = run_thread(
        &env,
        &mock,
        &["--provider", "builtin", "--prompt", "hello through baseUrl"],
    );
    let turns = turns(&out);
    assert_eq!(turns.len(), 1, "{turns:#?}");
    assert_eq!(turns[0]["finalResponse"], "Built-in answer");
    assert_eq!(turns[0]["usage"], sdk_usage(500, 0, 5, 0));
    let request = mock.single_request();
    assert_eq!(request.path, "/v1/responses");
    assert_eq!(request.header("originator"), Some("codex_sdk_ts"));
    assert_eq!(request.header("authorization"), Some("Bearer sk-sdk"));
    assert_eq!(
        request.header("thread-id"),
        turns[0]["threadId"].as_str(),
        "the SDK reports the thread quest used"
    );
}

#[test]
fn sdk_reads_mcp_tool_call_items() {
    // An MCP server from config.toml; the SDK parses and type-checks the mcp_tool_call items.
    let js = repo_root()
        .join("tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        js.is_file(),
        "{} is missing: run `npm ci --prefix tests/mcp`",
        js.display()
    );
    let mock = MockModel::start_blocking(Script::new([
        Step::function_call("mcp__everything__echo", json!({"message": "from the sdk"})),
        Step::message("Echoed."),
    ]));
    let env = TestEnv::new();
    std::fs::write(
        env.home().join("config.toml"),
        format!(
            "[mcp_servers.everything]\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\nstartup_timeout_sec = 60\n",
            js.display().to_string()
        ),
    )
    .unwrap();
    let out = run_thread(&env, &mock, &["--prompt", "echo something"]);
    let turns = turns(&out);
    assert_eq!(turns[0]["finalResponse"], "Echoed.");
    let items = turns[0]["items"].as_array().unwrap();
    let call = items
        .iter()
        .find(|i| i["type"] == "mcp_tool_call")
        .unwrap_or_else(|| panic!("{items:#?}"));
    assert_eq!(call["server"], "everything");
    assert_eq!(call["tool"], "echo");
    assert_eq!(call["arguments"], json!({"message": "from the sdk"}));
    assert_eq!(call["status"], "completed");
    assert_eq!(call["result"]["content"][0]["text"], "Echo: from the sdk");
}
