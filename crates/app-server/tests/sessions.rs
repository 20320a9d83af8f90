//! Full sessions against the mock model over a real WebSocket, every server message validated
//! against Codex's schemas: chat, goals and their continuations, usage limits, resume after a
//! restart, clear, and many threads at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use quest_mock_model::{Condition, Rule, Script, Step, Usage};
use serde_json::{Value, json};
use support::Fixture;

fn method(m: &Value) -> &str {
    m["method"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_turn_streams_items_and_answers_turn_start_before_turn_started() {
    let script = Script::new([Step::items([quest_mock_model::Output::Message(
        quest_mock_model::MessageSpec {
            text: "Hello from mock".into(),
            deltas: 3,
            id: None,
            no_id: false,
            no_added: false,
        },
    )])
    .with_usage(Usage::new(1200, 1000, 7, 0))]);
    let fixture = Fixture::start(script).await;
    let mut client = fixture.client().await;
    let thread = client.start_thread().await;
    let request = client
        .send_request(
            "turn/start",
            json!({"threadId": thread, "input": [{"type": "text", "text": "say hi", "text_elements": []}],
                   "clientUserMessageId": "client-msg-1"}),
        )
        .await;
    let response = client.response(&request).await.unwrap();
    let turn_id = response["turn"]["id"].as_str().unwrap().to_string();
    assert_eq!(response["turn"]["status"], "inProgress");
    let completed = client.turn_completed(&thread).await;
    assert_eq!(completed["id"], turn_id.as_str());
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["items"][0]["text"], "Hello from mock");

    // Order of what the thread's subscriber saw, from the turn/start answer on.
    let id_value = serde_json::to_value(&request).unwrap();
    let start = client.log.iter().position(|m| m["id"] == id_value).unwrap();
    let seen: Vec<&str> = client.log[start + 1..].iter().map(method).collect();
    assert_eq!(
        seen,
        [
            "thread/status/changed",
            "turn/started",
            "item/started",
            "item/completed",
            "item/started",
            "item/agentMessage/delta",
            "item/agentMessage/delta",
            "item/agentMessage/delta",
            "item/completed",
            "thread/tokenUsage/updated",
            "thread/status/changed",
            "turn/completed",
        ],
        "{}",
        client.transcript()
    );
    let user_item = &client.log[start + 3]["params"]["item"];
    assert_eq!(user_item["type"], "userMessage");
    assert_eq!(user_item["clientId"], "client-msg-1");
    assert_eq!(user_item["content"][0]["text"], "say hi");
    let deltas: String = client.log[start + 6..start + 9]
        .iter()
        .map(|m| m["params"]["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "Hello from mock");
    let usage = &client.log[start + 10]["params"]["tokenUsage"];
    assert_eq!(usage["total"]["inputTokens"], 1200);
    assert_eq!(usage["total"]["cachedInputTokens"], 1000);
    assert_eq!(usage["last"]["outputTokens"], 7);

    // The model saw the user's text; thread/read and the turn list report the turn.
    assert_eq!(fixture.mock.request_count(), 1);
    let body = fixture.mock.single_request().body.to_string();
    assert!(body.contains("say hi"), "{body}");
    let read = client
        .call(
            "thread/read",
            json!({"threadId": thread, "includeTurns": true}),
        )
        .await;
    assert_eq!(read["thread"]["preview"], "say hi");
    assert_eq!(read["thread"]["turns"][0]["id"], turn_id.as_str());
    assert_eq!(
        read["thread"]["turns"][0]["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let turns = client
        .call("thread/turns/list", json!({"threadId": thread, "limit": 1}))
        .await;
    assert_eq!(turns["data"][0]["id"], turn_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_patches_become_items() {
    let script = Script::new([
        Step::calls([
            quest_mock_model::Output::function_call(
                "exec_command",
                json!({"cmd": "echo from-shell"}),
            ),
            quest_mock_model::Output::apply_patch(
                "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** Update File: notes.txt\n*** Move to: renamed.txt\n@@\n one\n-two\n+2\n*** End Patch\n",
            ),
        ]),
        Step::message("done"),
    ]);
    let fixture = Fixture::start(script).await;
    std::fs::write(fixture.work.path().join("notes.txt"), "one\ntwo\nthree\n").unwrap();
    let mut client = fixture.client().await;
    let thread = client.start_thread().await;
    client.start_turn(&thread, "make hello.txt").await;
    let completed = client.turn_completed(&thread).await;
    assert_eq!(completed["status"], "completed", "{}", client.transcript());
    let command = client
        .log
        .iter()
        .find(|m| {
            method(m) == "item/completed" && m["params"]["item"]["type"] == "commandExecution"
        })
        .expect("a commandExecution item")
        .clone();
    assert_eq!(command["params"]["item"]["status"], "completed");
    assert_eq!(command["params"]["item"]["exitCode"], 0);
    assert!(
        command["params"]["item"]["aggregatedOutput"]
            .as_str()
            .unwrap()
            .contains("from-shell")
    );
    assert!(client.log.iter().any(|m| {
        method(m) == "item/commandExecution/outputDelta"
            && m["params"]["delta"]
                .as_str()
                .unwrap()
                .contains("from-shell")
    }));
    let patch = client
        .log
        .iter()
        .find(|m| method(m) == "item/completed" && m["params"]["item"]["type"] == "fileChange")
        .expect("a fileChange item")
        .clone();
    assert_eq!(patch["params"]["item"]["status"], "completed");
    // Each file with what changed in it, as Codex sends it: a new file's content, an update's
    // unified diff (and where it moved).
    let changes = &patch["params"]["item"]["changes"];
    assert_eq!(changes[0]["kind"]["type"], "add");
    assert_eq!(changes[0]["diff"], "hi\n");
    assert_eq!(changes[1]["kind"]["type"], "update");
    assert_eq!(changes[1]["kind"]["move_path"], "renamed.txt");
    assert_eq!(
        changes[1]["diff"],
        "@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n"
    );
    assert_eq!(
        std::fs::read_to_string(fixture.work.path().join("hello.txt")).unwrap(),
        "hi\n"
    );
}

/// Continuations answer `update_goal complete` on their first request and a message after the
/// tool output.
fn completing_model() -> Script {
    Script::default()
        .with_rule(Rule::new(
            Condition::last_item_type("function_call_output"),
            Step::message("goal done").with_usage(Usage::new(100, 0, 10, 0)),
        ))
        .with_default(Step::update_goal("complete").with_usage(Usage::new(200, 0, 12, 0)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goal_set_answers_first_then_continues_until_the_model_completes_it() {
    let fixture = Fixture::start(completing_model()).await;
    let mut client = fixture.client().await;
    let thread = client.start_thread().await;
    let none = client
        .call("thread/goal/get", json!({"threadId": thread}))
        .await;
    assert_eq!(none, json!({"goal": null}));
    let request = client
        .send_request(
            "thread/goal/set",
            json!({"threadId": thread, "objective": "  write hello.txt  ", "status": "active", "origin": "user"}),
        )
        .await;
    let set = client.response(&request).await.unwrap();
    assert_eq!(set["goal"]["objective"], "write hello.txt");
    assert_eq!(set["goal"]["status"], "active");
    assert_eq!(set["goal"]["tokenBudget"], Value::Null);
    assert_eq!(set["goal"]["tokensUsed"], 0);
    // The response comes before the notification it causes, which carries turnId null.
    let update = client
        .notification("thread/goal/updated", |p| p["goal"]["status"] == "active")
        .await;
    assert_eq!(update["turnId"], Value::Null);
    let id_value = serde_json::to_value(&request).unwrap();
    let answered = client.log.iter().position(|m| m["id"] == id_value).unwrap();
    let announced = client
        .log
        .iter()
        .position(|m| method(m) == "thread/goal/updated")
        .unwrap();
    assert!(answered < announced, "{}", client.transcript());
    // A continuation starts by itself and the model completes the goal.
    let complete = client.goal_status(&thread, "complete").await;
    assert!(complete["turnId"].is_string(), "{complete}");
    let turn = client.turn_completed(&thread).await;
    assert_eq!(turn["status"], "completed");
    let got = client
        .call("thread/goal/get", json!({"threadId": thread}))
        .await;
    assert_eq!(got["goal"]["status"], "complete");
    assert_eq!(got["goal"]["tokensUsed"], 200 + 12 + 100 + 10);
    // Exactly one continuation turn: two requests (the call, then after its output).
    assert_eq!(fixture.mock.request_count(), 2);
    let first = fixture.mock.request(0).unwrap();
    assert!(first.body.to_string().contains("write hello.txt"));
    // The audit trail (Quest extension) records the creation and the completion.
    let log = client
        .call("thread/goal/log", json!({"threadId": thread}))
        .await;
    let kinds: Vec<&str> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["toStatus"].as_str().unwrap_or("none"))
        .collect();
    assert!(
        kinds.contains(&"active") && kinds.contains(&"complete"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goal_set_edits_in_place_and_budgets_have_three_states() {
    let fixture = Fixture::start(Script::default()).await;
    let mut client = fixture.client().await;
    let thread = client.start_thread().await;
    let error = client
        .request(
            "thread/goal/set",
            json!({"threadId": thread, "status": "paused"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error["message"],
        format!("cannot update goal for thread {thread}: no goal exists")
    );
    let error = client
        .request(
            "thread/goal/set",
            json!({"threadId": thread, "objective": "   "}),
        )
        .await
        .unwrap_err();
    assert_eq!(error["message"], "goal objective must not be empty");
    let error = client
        .request(
            "thread/goal/set",
            json!({"threadId": thread, "objective": "o", "tokenBudget": 0}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error["message"],
        "goal budgets must be positive when provided"
    );

    // Created paused with a budget: no continuation starts.
    let created = client
        .call(
            "thread/goal/set",
            json!({"threadId": thread, "objective": "first", "status": "paused", "tokenBudget": 500}),
        )
        .await;
    assert_eq!(created["goal"]["status"], "paused");
    assert_eq!(created["goal"]["tokenBudget"], 500);
    let created_at = created["goal"]["createdAt"].clone();
    // Omitted budget keeps it; the objective edit keeps the goal (same createdAt).
    let edited = client
        .call(
            "thread/goal/set",
            json!({"threadId": thread, "objective": "second"}),
        )
        .await;
    assert_eq!(edited["goal"]["objective"], "second");
    assert_eq!(edited["goal"]["tokenBudget"], 500);
    assert_eq!(edited["goal"]["status"], "paused");
    assert_eq!(edited["goal"]["createdAt"], created_at);
    // null clears it.
    let cleared_budget = client
        .call(
            "thread/goal/set",
            json!({"threadId": thread, "tokenBudget": null}),
        )
        .await;
    assert_eq!(cleared_budget["goal"]["tokenBudget"], Value::Null);
    // Quest's experimental budgets ride along and show on the goal.
    let extra = client
        .call(
            "thread/goal/set",
            json!({"threadId": thread, "turnBudget": 3, "timeBudgetSeconds": 600}),
        )
        .await;
    assert_eq!(extra["goal"]["turnBudget"], 3);
    assert_eq!(extra["goal"]["timeBudgetSeconds"], 600);
    assert_eq!(
        fixture.mock.request_count(),
        0,
        "a paused goal must not call the model"
    );

    // Clear: true, then false; `thread/goal/cleared` only for the first.
    let cleared = client
        .call("thread/goal/clear", json!({"threadId": thread}))
        .await;
    assert_eq!(cleared, json!({"cleared": true}));
    client
        .notification("thread/goal/cleared", |p| p["threadId"].is_string())
        .await;
    let again = client
        .call("thread/goal/clear", json!({"threadId": thread}))
        .await;
    assert_eq!(again, json!({"cleared": false}));
    let cleared_count = client
        .log
        .iter()
        .filter(|m| method(m) == "thread/goal/cleared")
        .count();
    assert_eq!(cleared_count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_limit_stops_the_goal_after_one_request() {
    let script = Script::new([Step::usage_limit(Some("plus"), Some(4_102_444_800))]);
    let fixture = Fixture::start(script).await;
    let mut client = fixture.client().await;
    let thread = client.start_thread().await;
    client
        .call(
            "thread/goal/set",
            json!({"threadId": thread, "objective": "keep going", "origin": "user"}),
        )
        .await;
    let limited = client.goal_status(&thread, "usageLimited").await;
    assert!(limited["turnId"].is_string());
    let error = client
        .notification("error", |p| p["willRetry"] == false)
        .await;
    assert_eq!(error["error"]["codexErrorInfo"], "usageLimitExceeded");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("usage limit")
    );
    let turn = client.turn_completed(&thread).await;
    assert_eq!(turn["status"], "failed");
    assert_eq!(turn["error"]["codexErrorInfo"], "usageLimitExceeded");
    let status = client
        .notification("thread/status/changed", |p| {
            p["status"]["type"] == "systemError"
        })
        .await;
    assert_eq!(status["threadId"], thread.as_str());
    assert_eq!(fixture.mock.request_count(), 1, "exactly one request");
    let got = client
        .call("thread/goal/get", json!({"threadId": thread}))
        .await;
    assert_eq!(got["goal"]["status"], "usageLimited");
    assert_eq!(got["goal"]["usageLimitResetsAt"], 4_102_444_800_i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_restart_sends_the_goal_snapshot_and_history() {
    let script = Script::new([Step::message("first answer")]);
    let mut fixture = Fixture::start(script).await;
    let mut client = fixture.client().await;
    let thread = client.start_thread().await;
    client.start_turn(&thread, "hello there").await;
    client.turn_completed(&thread).await;
    client
        .call(
            "thread/goal/set",
            json!({"threadId": thread, "objective": "later", "status": "paused"}),
        )
        .await;
    client.close().await;

    fixture.restart().await;
    let mut client = fixture.client().await;
    let listed = client.call("thread/list", json!({})).await;
    assert_eq!(listed["data"][0]["id"], thread.as_str());
    assert_eq!(listed["data"][0]["status"]["type"], "notLoaded");
    assert_eq!(listed["data"][0]["preview"], "hello there");
    let id = client
        .send_request("thread/resume", json!({"threadId": thread}))
        .await;
    let resumed = client.response(&id).await.unwrap();
    assert_eq!(resumed["thread"]["id"], thread.as_str());
    assert_eq!(resumed["thread"]["turns"][0]["status"], "completed");
    let snapshot = client
        .wait_for("the goal snapshot", |m| {
            method(m).starts_with("thread/goal/")
        })
        .await;
    assert_eq!(
        method(&snapshot),
        "thread/goal/updated",
        "{}",
        client.transcript()
    );
    assert_eq!(snapshot["params"]["goal"]["status"], "paused");
    assert_eq!(snapshot["params"]["turnId"], Value::Null);
    let id_value = serde_json::to_value(&id).unwrap();
    let answered = client.log.iter().position(|m| m["id"] == id_value).unwrap();
    let snap_at = client
        .log
        .iter()
        .position(|m| method(m) == "thread/goal/updated")
        .unwrap();
    assert!(answered < snap_at);
    // A paused goal does not continue after resume; the thread takes new input with its history.
    fixture.mock.push_step(Step::message("second answer"));
    client.start_turn(&thread, "and again").await;
    let turn = client.turn_completed(&thread).await;
    assert_eq!(turn["items"][0]["text"], "second answer");
    assert_eq!(fixture.mock.request_count(), 2);
    let body = fixture.mock.request(1).unwrap().body.to_string();
    assert!(
        body.contains("hello there") && body.contains("first answer"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_list_pages_with_a_cursor() {
    let fixture = Fixture::start(Script::default()).await;
    let mut client = fixture.client().await;
    let mut started = Vec::new();
    for n in 0..5 {
        let thread = client.start_thread().await;
        client
            .call(
                "thread/goal/set",
                json!({"threadId": thread, "objective": format!("goal {n}"), "status": "paused"}),
            )
            .await;
        started.push(thread);
    }
    // A thread without content yet is not listed (it would clutter every picker).
    let empty = client.start_thread().await;
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let page = client
            .call("thread/list", json!({"limit": 2, "cursor": cursor}))
            .await;
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|t| t["id"].as_str().unwrap().to_string()));
        cursor = page["nextCursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    let mut expected = started.clone();
    expected.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, expected, "every thread exactly once");
    assert!(!seen.contains(&empty));
    let error = client
        .request("thread/list", json!({"cursor": "garbage"}))
        .await
        .unwrap_err();
    assert_eq!(error["code"], -32602);
    assert!(error["message"].as_str().unwrap().contains("cursor"));

    // Codex's resume picker asks for interactive sources; every Quest thread is resumable there.
    // Quest has no sub-agents.
    for (kinds, expected) in [
        (json!(["cli", "vscode"]), 5),
        (json!(["exec", "appServer"]), 5),
        (json!(["subAgent", "subAgentReview"]), 0),
    ] {
        let page = client
            .call(
                "thread/list",
                json!({"limit": 25, "sourceKinds": kinds, "modelProviders": [], "archived": false}),
            )
            .await;
        assert_eq!(
            page["data"].as_array().unwrap().len(),
            expected,
            "sourceKinds {kinds}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_client_loses_nothing() {
    let fixture = Fixture::start(completing_model()).await;
    let mut first = fixture.client().await;
    let thread = first.start_thread().await;
    first
        .send_request(
            "thread/goal/set",
            json!({"threadId": thread, "objective": "finish without me"}),
        )
        .await;
    first.close().await;
    // The goal keeps running with nobody connected; a new client sees it complete.
    let mut second = fixture.client().await;
    let deadline = std::time::Instant::now() + support::TIMEOUT;
    loop {
        let got = second
            .call("thread/goal/get", json!({"threadId": thread}))
            .await;
        if got["goal"]["status"] == "complete" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "goal never completed: {got}"
        );
        second
            .call("thread/resume", json!({"threadId": thread}))
            .await;
        let _ = second
            .notification("thread/goal/updated", |p| p["goal"]["status"] == "complete")
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_threads_with_goals_reach_their_stop_states_without_crosstalk() {
    // Even threads complete (the model calls update_goal), odd ones block (the model reports a
    // blocker through update_goal).
    let script = Script::default()
        .with_rule(Rule::new(
            Condition::last_item_type("function_call_output"),
            Step::message("stopping here"),
        ))
        .with_rule(Rule::new(
            Condition::input_contains("objective-odd"),
            Step::update_goal("blocked"),
        ))
        .with_default(Step::update_goal("complete"));
    let fixture = Fixture::start(script).await;
    let mut client = fixture.client().await;
    let mut threads = Vec::new();
    for _ in 0..20 {
        threads.push(client.start_thread().await);
    }
    for (i, thread) in threads.iter().enumerate() {
        let kind = if i % 2 == 0 { "even" } else { "odd" };
        client
            .send_request(
                "thread/goal/set",
                json!({"threadId": thread, "objective": format!("objective-{kind}-{i}")}),
            )
            .await;
    }
    let mut finished = std::collections::HashMap::new();
    while finished.len() < threads.len() {
        let update = client
            .notification("thread/goal/updated", |p| {
                p["goal"]["status"] == "complete" || p["goal"]["status"] == "blocked"
            })
            .await;
        let thread = update["threadId"].as_str().unwrap().to_string();
        // The goal in each notification belongs to the thread it is reported for.
        assert_eq!(update["goal"]["threadId"], thread.as_str());
        finished.insert(thread, update["goal"].clone());
    }
    for (i, thread) in threads.iter().enumerate() {
        let goal = &finished[thread];
        let (kind, status) = if i % 2 == 0 {
            ("even", "complete")
        } else {
            ("odd", "blocked")
        };
        assert_eq!(goal["objective"], format!("objective-{kind}-{i}"));
        assert_eq!(goal["status"], status, "thread {i}");
        let stored = client
            .call("thread/goal/get", json!({"threadId": thread}))
            .await;
        assert_eq!(stored["goal"]["status"], status);
    }
    // Every notification names a thread and item ids never move between threads.
    let mut item_threads: std::collections::HashMap<String, String> = Default::default();
    for m in &client.log {
        if let (Some(item), Some(thread)) = (
            m["params"]["item"]["id"].as_str(),
            m["params"]["threadId"].as_str(),
        ) {
            let owner = item_threads
                .entry(item.to_string())
                .or_insert_with(|| thread.to_string());
            if !item.starts_with("msg_") && !item.starts_with("rs_") {
                assert_eq!(owner, thread, "item {item} seen in two threads");
            }
        }
    }
    // Each continuation's request carried its own thread's objective only.
    for request in fixture.mock.requests() {
        let body = request.body.to_string();
        let mentioned = (0..20)
            .filter(|i| {
                body.contains(&format!("-{i}\\\""))
                    || body.contains(&format!("-{i}<"))
                    || body.contains(&format!("-{i}\""))
            })
            .count();
        assert!(mentioned <= 1, "a request mentions several objectives");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_start_runs_a_compaction_turn_and_the_next_turn_carries_the_summary() {
    let script = Script::default()
        .with_rule(Rule::new(
            Condition::request_kind("compaction"),
            Step::message("SUMMARY: the user greeted twice; nothing else is pending."),
        ))
        .with_default(Step::message("Hello again"));
    let fixture = Fixture::start(script).await;
    let mut client = fixture.client().await;
    let thread = client.start_thread().await;
    client.start_turn(&thread, "first hello").await;
    client.turn_completed(&thread).await;

    let answer = client
        .call("thread/compact/start", json!({"threadId": thread}))
        .await;
    assert_eq!(answer, json!({}));
    let completed = client.turn_completed(&thread).await;
    assert_eq!(completed["status"], "completed", "{}", client.transcript());
    let compaction_items: Vec<&Value> = client
        .log
        .iter()
        .filter(|m| method(m) == "item/completed")
        .filter(|m| m["params"]["item"]["type"] == "contextCompaction")
        .collect();
    assert_eq!(compaction_items.len(), 1, "{}", client.transcript());
    assert_eq!(
        compaction_items[0]["params"]["turnId"], completed["id"],
        "the item belongs to the compaction turn"
    );

    // The summary request went through /responses with request_kind "compaction".
    let requests = fixture.mock.requests();
    assert_eq!(requests.len(), 2);
    let metadata: Value =
        serde_json::from_str(requests[1].header("x-codex-turn-metadata").unwrap()).unwrap();
    assert_eq!(metadata["request_kind"], "compaction");

    // The next turn's request is built on the summary, not the original exchange.
    client.start_turn(&thread, "what now?").await;
    client.turn_completed(&thread).await;
    let last = fixture.mock.requests().pop().unwrap();
    let input = last.body["input"].to_string();
    assert!(input.contains("SUMMARY: the user greeted twice"), "{input}");
    assert!(!input.contains("\"Hello again\""), "{input}");
    assert!(input.contains("what now?"), "{input}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_start_names_an_unknown_thread() {
    let fixture = Fixture::start(Script::default()).await;
    let mut client = fixture.client().await;
    let err = client
        .request(
            "thread/compact/start",
            json!({"threadId": "00000000-0000-7000-8000-000000000000"}),
        )
        .await
        .unwrap_err();
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("00000000-0000-7000-8000-000000000000"),
        "{err}"
    );
    let err = client
        .request("thread/compact/start", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32602, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("threadId"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_thread_lists_the_items_its_turns_showed() {
    let script = Script::new([
        Step::calls([
            quest_mock_model::Output::function_call(
                "exec_command",
                json!({"cmd": "echo from-shell"}),
            ),
            quest_mock_model::Output::apply_patch(
                "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch\n",
            ),
        ]),
        Step::message("done"),
        Step::message("second answer"),
    ]);
    let mut fixture = Fixture::start(script).await;
    let mut client = fixture.client().await;
    let thread = client.start_thread().await;
    let first = client.start_turn(&thread, "make hello.txt").await;
    client.turn_completed(&thread).await;
    let second = client.start_turn(&thread, "thanks").await;
    client.turn_completed(&thread).await;
    let live_command = client
        .log
        .iter()
        .find(|m| {
            method(m) == "item/completed" && m["params"]["item"]["type"] == "commandExecution"
        })
        .map(|m| m["params"]["item"]["command"].clone())
        .expect("a live commandExecution item");
    client.close().await;

    // A new server process knows the thread only from the store.
    fixture.restart().await;
    let mut client = fixture.client().await;
    // What Codex's TUI asks when it resumes a thread from its picker.
    let resumed = client
        .call(
            "thread/resume",
            json!({"threadId": thread, "excludeTurns": true}),
        )
        .await;
    assert_eq!(resumed["thread"]["id"], thread.as_str());
    let turns = client
        .call(
            "thread/turns/list",
            json!({"threadId": thread, "limit": 5, "sortDirection": "desc", "itemsView": "notLoaded"}),
        )
        .await;
    assert_eq!(turns["data"][0]["id"], second.as_str());
    assert_eq!(turns["data"][0]["itemsView"], "notLoaded");
    assert_eq!(turns["data"][0]["items"], json!([]));
    let items = client
        .call(
            "thread/items/list",
            json!({"threadId": thread, "limit": 100, "sortDirection": "desc"}),
        )
        .await;
    let seen: Vec<(String, String)> = items["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["turnId"].as_str().unwrap().to_string(),
                e["item"]["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        (&second, "agentMessage"),
        (&second, "userMessage"),
        (&first, "agentMessage"),
        (&first, "fileChange"),
        (&first, "commandExecution"),
        (&first, "userMessage"),
    ]
    .iter()
    .map(|(t, k)| (t.to_string(), k.to_string()))
    .collect();
    assert_eq!(seen, expected);
    let data = items["data"].as_array().unwrap();
    assert_eq!(data[1]["item"]["content"][0]["text"], "thanks");
    assert_eq!(data[2]["item"]["text"], "done");
    assert_eq!(data[3]["item"]["changes"][0]["path"], "hello.txt");
    assert_eq!(data[3]["item"]["status"], "completed");
    // The command reads as it did live.
    assert_eq!(data[4]["item"]["command"], live_command);
    assert!(
        live_command.as_str().unwrap().contains("echo from-shell"),
        "{live_command}"
    );
    assert_eq!(data[4]["item"]["exitCode"], 0);
    // The command's output only (a login profile may print before it), without the header
    // lines the model was sent.
    let output = data[4]["item"]["aggregatedOutput"].as_str().unwrap();
    assert!(output.ends_with("from-shell\n"), "{output}");
    assert!(!output.contains("Exit code"), "{output}");

    // One turn's items, oldest first, paged and after an item anchor.
    let page = client
        .call(
            "thread/items/list",
            json!({"threadId": thread, "turnId": first, "limit": 2}),
        )
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["data"][0]["item"]["type"], "userMessage");
    let rest = client
        .call(
            "thread/items/list",
            json!({"threadId": thread, "turnId": first, "cursor": page["nextCursor"]}),
        )
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 2);
    assert_eq!(rest["nextCursor"], Value::Null);
    let command_id = data[4]["item"]["id"].clone();
    let after = client
        .call(
            "thread/items/list",
            json!({"threadId": thread, "turnId": first, "cursor": {"type": "item", "itemId": command_id}}),
        )
        .await;
    assert_eq!(after["data"][0]["item"]["type"], "fileChange");
    let err = client
        .request(
            "thread/items/list",
            json!({"threadId": thread, "cursor": {"type": "item", "itemId": command_id}}),
        )
        .await
        .unwrap_err();
    assert!(err["message"].as_str().unwrap().contains("turnId"), "{err}");

    // thread/read with turns carries the same items.
    let read = client
        .call(
            "thread/read",
            json!({"threadId": thread, "includeTurns": true}),
        )
        .await;
    assert_eq!(
        read["thread"]["turns"][0]["items"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

/// `thread/tokenUsage/updated` carries the model's context window: a configured one, or the one
/// the provider's model list gives for a model Quest does not know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_usage_reports_the_context_window() {
    /// Runs one turn on a new thread; the `modelContextWindow` of its last usage notification.
    async fn window_of_a_new_thread(fixture: &Fixture) -> Value {
        let mut client = fixture.client().await;
        let thread = client.start_thread().await;
        client
            .call(
                "turn/start",
                json!({"threadId": thread, "input": [{"type": "text", "text": "hi", "text_elements": []}]}),
            )
            .await;
        client.turn_completed(&thread).await;
        let usage = client
            .log
            .iter()
            .rev()
            .find(|m| method(m) == "thread/tokenUsage/updated")
            .expect("a usage notification")
            .clone();
        usage["params"]["tokenUsage"]["modelContextWindow"].clone()
    }
    // Turns of two requests: the decision before the second one waits for the model list.
    let turns = |n: usize| {
        Script::new((0..n).flat_map(|_| {
            [
                Step::function_call("exec_command", json!({"cmd": "echo hi"})),
                Step::message("ok").with_usage(Usage::new(100, 0, 5, 0)),
            ]
        }))
    };
    let listed = Fixture::start(turns(2).with_models(
        quest_mock_model::ModelList::with_context_window("gpt-test", 64_000),
    ))
    .await;
    assert_eq!(window_of_a_new_thread(&listed).await, 64_000);
    assert_eq!(window_of_a_new_thread(&listed).await, 64_000);
    assert_eq!(
        listed.mock.model_list_requests().len(),
        1,
        "one lookup for the process, whatever the number of threads"
    );

    let configured = Fixture::start_with(turns(1), vec!["model_context_window=32000".into()]).await;
    assert_eq!(window_of_a_new_thread(&configured).await, 32_000);
    assert!(configured.mock.model_list_requests().is_empty());
    // Unknown everywhere: no figure (the schema allows null).
    let unknown = Fixture::start(turns(1)).await;
    assert_eq!(window_of_a_new_thread(&unknown).await, Value::Null);
}
