//! Context compaction end to end: the real `quest` binary against `quest-mock-model` simulating a
//! context window (input tokens grow with what Quest sends; oversized requests are refused with
//! `context_length_exceeded`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use common::{TestEnv, completed_items, db_path, jsonl, run, thread_id};
use quest_mock_model::{
    CapturedRequest, Condition, ContextModel, MockModel, ModelList, Rule, Script, Step,
};
use quest_protocol::{ResponseItem, ThreadId};
use serde_json::{Value, json};

const OBJECTIVE: &str = "Count the sheep in batches until the tally reaches seventy";
const FAST_BACKOFF: [&str; 2] = ["-c", "goals.no_progress_backoff=[\"10ms\"]"];
/// Output tokens the simulated model reports per response.
const OUTPUT_TOKENS: u64 = 50;
const WINDOW: u64 = 16_000;

fn metadata(request: &CapturedRequest) -> Value {
    request
        .header("x-codex-turn-metadata")
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or(Value::Null)
}

fn kind(request: &CapturedRequest) -> String {
    metadata(request)["request_kind"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn turn_of(request: &CapturedRequest) -> String {
    metadata(request)["turn_id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn window_id(request: &CapturedRequest) -> String {
    request
        .header("x-codex-window-id")
        .unwrap_or_default()
        .to_string()
}

fn input_text(request: &CapturedRequest) -> String {
    request.body["input"].to_string()
}

fn goal_json(env: &TestEnv, id: &str) -> Value {
    let status = run(env.quest_bare().args(["goal", "status", id, "--json"]), 0);
    serde_json::from_slice::<Value>(&status.stdout).unwrap()["goal"].clone()
}

fn summarizer() -> Rule {
    let mut rule = Rule::new(
        Condition::request_kind("compaction"),
        Step::message("SUMMARY-{n}: counted sheep in batches; the tally so far is right."),
    );
    rule.name = Some("summary".into());
    rule
}

/// A goal model that counts in batches: each turn runs one unique command (about 2.3 KB of
/// output), then reports; from request `finish_at` on it marks the goal complete.
fn counting_model(finish_at: usize) -> Script {
    Script::default()
        .with_rule(summarizer())
        .with_rule(Rule::new(
            Condition {
                min_request: Some(finish_at),
                ..Condition::last_item_type("function_call_output").negate()
            },
            Step::update_goal("complete"),
        ))
        .with_rule(Rule::new(
            Condition::last_item_type("function_call_output"),
            Step::message("batch {n} counted"),
        ))
        .with_default(Step::function_call(
            "exec_command",
            json!({"cmd": "echo batch-{n}; seq 1 600"}),
        ))
}

fn window_args() -> Vec<String> {
    vec!["-c".into(), format!("model_context_window={WINDOW}")]
}

#[test]
fn long_goal_runs_past_the_window_with_compaction() {
    let mock = MockModel::start_blocking(
        counting_model(70).with_context(ContextModel::with_window(WINDOW)),
    );
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock)
            .args(window_args())
            .args(FAST_BACKOFF)
            .args(["--goal", OBJECTIVE]),
        0,
    );
    let events = jsonl(&out);
    let id = thread_id(&events);
    let requests = mock.requests();

    // The model never refused a request: compaction kept every one inside the window.
    assert!(
        requests.iter().all(|r| r.answered_by != "context_window"),
        "{:?}",
        requests.iter().map(|r| &r.answered_by).collect::<Vec<_>>()
    );
    let compactions: Vec<usize> = (0..requests.len())
        .filter(|&i| kind(&requests[i]) == "compaction")
        .collect();
    assert!(compactions.len() >= 3, "compactions at {compactions:?}");
    assert_eq!(
        completed_items(&events, "context_compaction").len(),
        compactions.len()
    );
    let turn_requests: Vec<&CapturedRequest> =
        requests.iter().filter(|r| kind(r) == "turn").collect();
    assert!(turn_requests.len() >= 60, "{}", turn_requests.len());
    let largest = turn_requests
        .iter()
        .map(|r| r.input_tokens.unwrap())
        .max()
        .unwrap();
    assert!(largest <= WINDOW, "{largest}");

    for (n, &i) in compactions.iter().enumerate() {
        let request = &requests[i];
        // The summary request is an ordinary Responses request ending with Quest's prompt.
        assert_eq!(request.path, "/v1/responses");
        let last = request.last_input_item().unwrap();
        assert!(last.to_string().contains("hand-off note"), "{last}");
        assert_eq!(request.body["tools"], json!([]));
        assert_eq!(window_id(request), format!("{id}:{n}"));
        // The next request carries the next window id, the summary, and is much smaller.
        let next = &requests[i + 1];
        assert_eq!(window_id(next), format!("{id}:{}", n + 1));
        assert!(next.input_tokens.unwrap() < request.input_tokens.unwrap() / 2);
        assert!(input_text(next).contains(&format!("SUMMARY-{}", i + 1)));
    }
    for request in requests[compactions[0] + 1..]
        .iter()
        .filter(|r| kind(r) == "turn")
    {
        let text = input_text(request);
        assert!(text.contains(OBJECTIVE), "request {}", request.index);
        // The objective block the compaction added, not only the continuation message.
        assert!(
            text.contains(r#"source=\"goal_objective\""#),
            "request {}",
            request.index
        );
    }
    // Some compactions happened mid-turn: between tool outputs and the request that carries
    // them (an earlier request and the next one belong to the same turn).
    let mid_turn = compactions
        .iter()
        .filter(|&&i| {
            let turn = turn_of(&requests[i]);
            i > 0
                && turn_of(&requests[i - 1]) == turn
                && requests
                    .get(i + 1)
                    .is_some_and(|next| turn_of(next) == turn)
        })
        .count();
    assert!(
        mid_turn >= 1,
        "no mid-turn compaction among {compactions:?}"
    );

    // The goal reached its stop state; every request, summary requests included, was charged,
    // and only real turns were counted as goal turns.
    let goal = goal_json(&env, &id);
    assert_eq!(goal["status"], "complete");
    let charged: u64 = requests
        .iter()
        .map(|r| r.input_tokens.unwrap() + OUTPUT_TOKENS)
        .sum();
    assert_eq!(goal["tokensUsed"].as_u64().unwrap(), charged, "{goal}");
    let turns = turn_requests
        .iter()
        .map(|r| turn_of(r))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert_eq!(goal["turnsUsed"].as_u64().unwrap(), turns as u64);

    // A later resume continues from the compacted state: the newest summary, the next window.
    let follow = MockModel::start_blocking(Script::new([Step::message("all counted")]));
    run(
        env.exec(&follow)
            .args(window_args())
            .args(["resume", &id, "how many batches?"]),
        0,
    );
    let request = follow.single_request();
    let last_summary = format!("SUMMARY-{}", compactions.last().unwrap() + 1);
    assert!(input_text(&request).contains(&last_summary));
    assert!(
        !input_text(&request).contains("batch-2\\n"),
        "early output is gone"
    );
    assert_eq!(window_id(&request), format!("{id}:{}", compactions.len()));
}

#[test]
fn a_turn_that_ends_over_the_limit_compacts_before_it_completes() {
    // The answer itself is huge (10k output tokens), so the limit is crossed by the last
    // response of the turn: the compaction runs before the turn completes.
    let script = Script::new([Step::message("a very long answer")
        .with_usage(quest_mock_model::Usage::new(0, 0, 10_000, 0))])
    .with_rule(summarizer())
    .with_context(ContextModel::with_window(WINDOW));
    let mock = MockModel::start_blocking(script);
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock).args(window_args()).args([
            "-c",
            "model_auto_compact_token_limit=5000",
            "write a lot",
        ]),
        0,
    );
    let events = jsonl(&out);
    let requests = mock.requests();
    assert_eq!(
        requests.iter().map(kind).collect::<Vec<_>>(),
        ["turn", "compaction"]
    );
    assert_eq!(turn_of(&requests[0]), turn_of(&requests[1]));
    let types: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["type"].as_str().unwrap(),
                e["item"]["type"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        types[types.len() - 3..],
        [
            "item.completed agent_message",
            "item.completed context_compaction",
            "turn.completed "
        ]
    );
    // The turn's usage includes the summary request.
    let usage = &events.last().unwrap()["usage"];
    assert_eq!(
        usage["output_tokens"].as_u64().unwrap(),
        10_000 + OUTPUT_TOKENS
    );
}

#[test]
fn context_length_exceeded_compacts_once_and_retries_the_request() {
    // No window is configured for this model, so only the refusal triggers compaction.
    let script = Script::default()
        .with_rule(summarizer())
        .with_rule(Rule::new(
            Condition::requests(14, usize::MAX),
            Step::message("finished counting"),
        ))
        .with_default(Step::function_call(
            "exec_command",
            json!({"cmd": "echo round-{n}; seq 1 600"}),
        ))
        .with_context(ContextModel::with_window(6_000));
    let mock = MockModel::start_blocking(script);
    let env = TestEnv::new();
    let out = run(env.exec(&mock).arg("count in rounds"), 0);
    let events = jsonl(&out);
    let id = thread_id(&events);
    let requests = mock.requests();
    let first = requests
        .iter()
        .position(|r| r.answered_by == "context_window")
        .expect("a refused request");
    assert_eq!(kind(&requests[first]), "turn");
    // The refusal is followed by summary requests (one that is itself too large is sent again
    // with less history), then the same turn's request again, now fitting.
    let mut i = first + 1;
    while kind(&requests[i]) == "compaction" && requests[i].answered_by == "context_window" {
        i += 1;
    }
    assert_eq!(kind(&requests[i]), "compaction");
    assert_eq!(requests[i].answered_by, "summary");
    let retry = &requests[i + 1];
    assert_eq!(kind(retry), "turn");
    assert_eq!(turn_of(retry), turn_of(&requests[first]));
    assert_ne!(retry.answered_by, "context_window");
    assert_eq!(window_id(retry), format!("{id}:1"));
    assert!(
        input_text(retry).contains("count in rounds"),
        "the latest user message survives"
    );
    assert!(!completed_items(&events, "context_compaction").is_empty());
    let last = events.last().unwrap();
    assert_eq!(last["type"], "turn.completed", "{last}");
}

#[test]
fn failed_reactive_compaction_fails_the_turn_and_blocks_the_goal() {
    let script = Script::default()
        .with_rule(Rule::new(
            Condition::request_kind("compaction"),
            Step::http_error(400, json!({"error": {"message": "no summaries today"}})),
        ))
        .with_default(Step::failed(
            "context_length_exceeded",
            "Your input exceeds the context window of this model.",
        ));
    let mock = MockModel::start_blocking(script);
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock)
            .args(FAST_BACKOFF)
            .args(["--goal", OBJECTIVE]),
        3,
    );
    let events = jsonl(&out);
    let id = thread_id(&events);
    // One refused request, one summary request, no retry and no further turn.
    assert_eq!(
        mock.requests().iter().map(kind).collect::<Vec<_>>(),
        ["turn", "compaction"]
    );
    let failed = events
        .iter()
        .find(|e| e["type"] == "turn.failed")
        .expect("turn.failed");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("context window was exceeded and compacting the history failed"),
        "{message}"
    );
    let goal = goal_json(&env, &id);
    assert_eq!(goal["status"], "blocked", "{goal}");
}

/// Waits until the mock has received a compaction request; returns its index.
fn wait_for_compaction_request(mock: &MockModel) -> usize {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let requests = mock.requests();
        if let Some(r) = requests.iter().find(|r| kind(r) == "compaction") {
            return r.index;
        }
        assert!(Instant::now() < deadline, "no compaction request arrived");
        let _ = mock.wait_for_requests_blocking(requests.len() + 1, Duration::from_secs(30));
    }
}

#[test]
fn crash_during_compaction_keeps_the_history_and_resume_compacts_again() {
    // The first summary request never gets an answer: the process is killed while waiting.
    let mut stall = Rule::new(
        Condition::request_kind("compaction"),
        Step::message("never sent").stall_after(0),
    );
    stall.max_matches = Some(1);
    let mut script = counting_model(40);
    script.rules.insert(0, stall);
    script.rules.insert(
        1,
        Rule::new(
            Condition::last_user_text_contains("How far"),
            Step::message("far"),
        ),
    );
    let mock = MockModel::start_blocking(script.with_context(ContextModel::with_window(WINDOW)));
    let env = TestEnv::new();
    let mut child = env
        .exec(&mock)
        .args(window_args())
        .args(FAST_BACKOFF)
        .args(["--goal", OBJECTIVE])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let id = first["thread_id"].as_str().unwrap().to_string();
    let stalled = wait_for_compaction_request(&mock);
    child.kill().unwrap();
    child.wait().unwrap();

    // The rollout is exactly the history that was being summarized: nothing lost, nothing
    // half-written.
    let thread = ThreadId::from_str(&id).unwrap();
    let store = quest_state::Store::open(db_path(env.home())).unwrap();
    let loaded = store.load_history(&thread).unwrap();
    assert_eq!(loaded.compactions, 0);
    let sent: Vec<ResponseItem> = mock.requests()[stalled].typed_input().unwrap();
    assert_eq!(loaded.items, sent[..sent.len() - 1].to_vec());
    drop(store);

    // Resuming the goal compacts before its first request and runs the goal to its end.
    let before = mock.request_count();
    let out = run(
        env.exec(&mock)
            .args(window_args())
            .args(FAST_BACKOFF)
            .args(["resume", &id, "--goal"]),
        0,
    );
    let events = jsonl(&out);
    let requests = mock.requests();
    assert_eq!(kind(&requests[before]), "compaction");
    assert_eq!(requests[before].answered_by, "summary");
    assert!(!completed_items(&events, "context_compaction").is_empty());
    let store = quest_state::Store::open(db_path(env.home())).unwrap();
    let loaded = store.load_history(&thread).unwrap();
    assert!(loaded.compactions >= 1);
    assert_eq!(goal_json(&env, &id)["status"], "complete");
    // A later turn starts from the compacted history.
    let count = mock.request_count();
    run(
        env.exec(&mock)
            .args(window_args())
            .args(["resume", &id, "How far did we get?"]),
        0,
    );
    let request = mock.request(count).unwrap();
    assert!(input_text(&request).contains("SUMMARY-"));
    assert!(!input_text(&request).contains("batch-2\\n"));
    assert_eq!(window_id(&request), format!("{id}:{}", loaded.compactions));
}

#[test]
fn exec_resume_compact_compacts_on_request_and_charges_the_goal() {
    // A goal that makes no progress for two turns and stops at its turn budget.
    let first = MockModel::start_blocking(
        Script::default().with_default(Step::message("thinking about the sheep")),
    );
    let env = TestEnv::new();
    let out = run(
        env.exec(&first)
            .args(FAST_BACKOFF)
            .args(["--goal", OBJECTIVE, "--turn-budget", "2"]),
        5,
    );
    let id = thread_id(&jsonl(&out));
    let before = goal_json(&env, &id);
    assert_eq!(before["status"], "budgetLimited", "{before}");

    let model = MockModel::start_blocking(
        Script::default()
            .with_rule(summarizer())
            .with_default(Step::message("next step"))
            .with_context(ContextModel::default()),
    );
    let out = run(env.exec(&model).args(["resume", &id, "--compact"]), 0);
    let events = jsonl(&out);
    let types: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["type"].as_str().unwrap(),
                e["item"]["type"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        types,
        [
            "thread.started ",
            "turn.started ",
            "item.completed context_compaction",
            "turn.completed "
        ]
    );
    let request = model.single_request();
    assert_eq!(kind(&request), "compaction");
    assert_eq!(window_id(&request), format!("{id}:0"));
    // The summary request's tokens were charged; the compaction is not a goal turn.
    let after = goal_json(&env, &id);
    assert_eq!(after["status"], "budgetLimited");
    assert_eq!(after["turnsUsed"], before["turnsUsed"]);
    assert_eq!(
        after["tokensUsed"].as_u64().unwrap(),
        before["tokensUsed"].as_u64().unwrap() + request.input_tokens.unwrap() + OUTPUT_TOKENS
    );

    // The next turn starts from the compacted history in the next window.
    run(env.exec(&model).args(["resume", &id, "what now?"]), 0);
    let next = model.request(1).unwrap();
    assert_eq!(kind(&next), "turn");
    assert_eq!(window_id(&next), format!("{id}:1"));
    let text = input_text(&next);
    assert!(text.contains("SUMMARY-1"), "{text}");
    assert!(text.contains(OBJECTIVE));
    assert!(!text.contains("thinking about the sheep"), "{text}");
}

/// The script of `context_length_exceeded_compacts_once_and_retries_the_request`: a model
/// with a 6000-token window and no window Quest knows of for its slug.
fn rounds_model(window: u64) -> Script {
    Script::default()
        .with_rule(summarizer())
        .with_rule(Rule::new(
            Condition::requests(14, usize::MAX),
            Step::message("finished counting"),
        ))
        .with_default(Step::function_call(
            "exec_command",
            json!({"cmd": "echo round-{n}; seq 1 600"}),
        ))
        .with_context(ContextModel::with_window(window))
}

#[test]
fn an_unknown_model_compacts_at_ninety_percent_of_the_window_its_provider_lists() {
    // The same run refuses a request when the provider lists no window (the reactive test
    // above); here the provider's model list gives the window, so Quest compacts ahead of it.
    // Each round adds about 790 tokens: 90 % of 6500 is crossed by the 8th request (about
    // 5990 tokens), while at 95 % that request would still be sent and the 9th refused.
    const LISTED: u64 = 6_500;
    let script =
        rounds_model(LISTED).with_models(ModelList::with_context_window("gpt-test", LISTED));
    let mock = MockModel::start_blocking(script);
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock).args([
            "-c",
            "model_client.model_list_timeout_ms=30000",
            "count in rounds",
        ]),
        0,
    );
    let events = jsonl(&out);
    assert_eq!(events.last().unwrap()["type"], "turn.completed");
    assert!(
        completed_items(&events, "error").is_empty(),
        "no warning: {events:?}"
    );
    assert_eq!(mock.model_list_requests().len(), 1, "asked once");
    let requests = mock.requests();
    assert!(
        requests.iter().all(|r| r.answered_by != "context_window"),
        "never refused: {:?}",
        requests.iter().map(|r| &r.answered_by).collect::<Vec<_>>()
    );
    let first = requests
        .iter()
        .position(|r| kind(r) == "compaction")
        .expect("a compaction");
    // The limit is 90 % of the listed window: every request before the compaction was below
    // it, and the next one (one more round of the same size) would have crossed it.
    let limit = LISTED * 9 / 10;
    let before: Vec<u64> = requests[..first]
        .iter()
        .map(|r| r.input_tokens.unwrap())
        .collect();
    assert!(before.len() >= 3, "{before:?}");
    assert!(before.iter().all(|&t| t < limit), "{before:?}");
    let [.., previous, last] = before[..] else {
        unreachable!()
    };
    assert!(
        last + (last - previous) >= limit,
        "compacted early: {before:?}"
    );
    let turn_requests: Vec<u64> = requests
        .iter()
        .filter(|r| kind(r) == "turn")
        .map(|r| r.input_tokens.unwrap())
        .collect();
    assert!(
        turn_requests.iter().all(|&t| t <= LISTED),
        "{turn_requests:?}"
    );
}

/// A turn of two requests (a command, then the answer). The decision before the second request
/// is the first to wait for the model list; one before the first request or at the end of a
/// turn never does.
fn two_requests() -> Script {
    Script::new([
        Step::function_call("exec_command", json!({"cmd": "echo hi"})),
        Step::message("hello"),
    ])
}

/// Runs a two-request turn against a provider whose model list fails as `models` says; the
/// turn must complete and one warning must say what went wrong.
fn failing_model_list(models: ModelList, extra: &[&str]) -> String {
    let mock = MockModel::start_blocking(two_requests().with_models(models));
    let env = TestEnv::new();
    let out = run(env.exec(&mock).args(extra).arg("say hello"), 0);
    let events = jsonl(&out);
    assert_eq!(
        events.last().unwrap()["type"],
        "turn.completed",
        "{events:?}"
    );
    assert_eq!(completed_items(&events, "agent_message").len(), 1);
    assert_eq!(
        mock.request_count(),
        2,
        "the turn's two model calls, nothing more"
    );
    assert_eq!(mock.model_list_requests().len(), 1, "one look at the list");
    let warnings = completed_items(&events, "error");
    assert_eq!(warnings.len(), 1, "{events:?}");
    let message = warnings[0]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("could not read the context window of `gpt-test`")
            && message.contains(&format!("GET {}/models", mock.uri()))
            && message.contains("model_context_window"),
        "{message}"
    );
    message
}

#[test]
fn a_failing_model_list_is_harmless_and_reported_once() {
    let message = failing_model_list(ModelList::status(404), &[]);
    assert!(message.contains("HTTP 404"), "{message}");
    let message = failing_model_list(ModelList::raw("<html>gateway</html>"), &[]);
    assert!(message.contains("not JSON"), "{message}");
    let message = failing_model_list(
        ModelList::with_context_window("gpt-test", 6_000).delayed(120_000),
        &["-c", "model_client.model_list_timeout_ms=300"],
    );
    assert!(message.contains("no answer within 300 ms"), "{message}");
}

#[test]
fn known_or_configured_windows_never_ask_the_provider() {
    let cases: [(&[&str], usize); 4] = [
        // The control: an unknown slug without a window asks.
        (&[], 1),
        (&["-c", "model=gpt-5.5"], 0),
        (&["-c", "model_context_window=50000"], 0),
        (&["-c", "model_client.model_list_timeout_ms=0"], 0),
    ];
    for (args, asked) in cases {
        let mock = MockModel::start_blocking(
            two_requests().with_models(ModelList::with_context_window("gpt-test", 6_000)),
        );
        let env = TestEnv::new();
        let out = run(env.exec(&mock).args(args).arg("say hello"), 0);
        assert_eq!(jsonl(&out).last().unwrap()["type"], "turn.completed");
        assert_eq!(mock.request_count(), 2);
        assert_eq!(mock.model_list_requests().len(), asked, "{args:?}");
    }
}
