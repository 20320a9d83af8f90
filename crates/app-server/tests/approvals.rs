//! Approval requests over the app-server: the server asks the client with
//! `item/commandExecution/requestApproval` / `item/fileChange/requestApproval`, the client's
//! decision (accept, acceptForSession, decline, cancel) decides what runs, and
//! `serverRequest/resolved` closes the request. Every message is validated against Codex's
//! schemas, the test client's answers too. A real mock model over TCP and real processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use quest_mock_model::{Script, Step};
use serde_json::{Value, json};
use support::{Client, Fixture};

const COMMAND_APPROVAL: &str = "item/commandExecution/requestApproval";
const FILE_APPROVAL: &str = "item/fileChange/requestApproval";

fn method(m: &Value) -> &str {
    m["method"].as_str().unwrap_or("")
}

/// Temp dirs are not writable from the sandbox in these tests, so a second temp dir is truly
/// outside every writable root.
fn closed_tmp() -> Vec<String> {
    vec![
        "sandbox_workspace_write.exclude_slash_tmp=true".into(),
        "sandbox_workspace_write.exclude_tmpdir_env_var=true".into(),
    ]
}

async fn start_thread(client: &mut Client, policy: &str) -> String {
    let started = client
        .call("thread/start", json!({"approvalPolicy": policy}))
        .await;
    // Codex 0.169's schema has no `on-failure`; it is reported as `on-request`.
    let wire = if policy == "on-failure" {
        "on-request"
    } else {
        policy
    };
    assert_eq!(started["approvalPolicy"], wire);
    started["thread"]["id"].as_str().unwrap().to_string()
}

/// The text of the `function_call_output` the model received in request `index`.
fn tool_output(fixture: &Fixture, index: usize) -> String {
    fixture
        .mock
        .input_items(index)
        .iter()
        .filter(|i| i["type"] == "function_call_output" || i["type"] == "custom_tool_call_output")
        .map(|i| i["output"].to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn completed_item(client: &Client, item_type: &str) -> Value {
    client
        .log
        .iter()
        .find(|m| method(m) == "item/completed" && m["params"]["item"]["type"] == item_type)
        .unwrap_or_else(|| panic!("no completed {item_type}:\n{}", client.transcript()))["params"]
        ["item"]
        .clone()
}

fn escalating_script(target: &std::path::Path) -> Script {
    Script::new([
        Step::function_call(
            "exec_command",
            json!({
                "cmd": format!("echo escalated > {}", target.display()),
                "sandbox_permissions": "require_escalated",
                "justification": "the report belongs next to the other reports",
            }),
        ),
        Step::message("done"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_request_escalation_is_asked_and_accept_runs_it_outside_the_sandbox() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("report.txt");
    let fixture = Fixture::start_with(escalating_script(&target), closed_tmp()).await;
    let mut client = fixture.client().await;
    let thread = start_thread(&mut client, "on-request").await;
    client.start_turn(&thread, "write the report").await;

    let (id, params) = client.server_request(COMMAND_APPROVAL).await;
    assert_eq!(params["threadId"], thread.as_str());
    assert!(
        params["command"]
            .as_str()
            .unwrap()
            .contains("echo escalated")
    );
    let reason = params["reason"].as_str().unwrap();
    assert!(
        reason.contains("outside the sandbox")
            && reason.contains("the report belongs next to the other reports"),
        "{reason}"
    );
    assert_eq!(
        params["availableDecisions"],
        json!(["accept", "acceptForSession", "decline", "cancel"])
    );
    // The command's item started before the request, under the same id.
    let started = client
        .log
        .iter()
        .position(|m| {
            method(m) == "item/started"
                && m["params"]["item"]["type"] == "commandExecution"
                && m["params"]["item"]["id"] == params["itemId"]
        })
        .unwrap_or_else(|| {
            panic!(
                "no item/started before the request:\n{}",
                client.transcript()
            )
        });
    let asked = client
        .log
        .iter()
        .position(|m| method(m) == COMMAND_APPROVAL)
        .unwrap();
    assert!(started < asked);
    client
        .notification("thread/status/changed", |p| {
            p["status"]["activeFlags"] == json!(["waitingOnApproval"])
        })
        .await;
    // Nothing ran while the request waited.
    assert!(!target.exists());

    client
        .answer(COMMAND_APPROVAL, &id, json!({"decision": "accept"}))
        .await;
    let resolved = client
        .notification("serverRequest/resolved", |_| true)
        .await;
    assert_eq!(resolved["requestId"], id);
    assert_eq!(resolved["threadId"], thread.as_str());
    client
        .notification("thread/status/changed", |p| {
            p["status"]["activeFlags"] == json!([])
        })
        .await;
    let turn = client.turn_completed(&thread).await;
    assert_eq!(turn["status"], "completed");
    let item = completed_item(&client, "commandExecution");
    assert_eq!(item["status"], "completed", "{item}");
    assert_eq!(item["id"], params["itemId"]);
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "escalated\n",
        "the approved command ran outside the sandbox"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_command_does_not_run_and_the_model_is_told() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("report.txt");
    let fixture = Fixture::start_with(escalating_script(&target), closed_tmp()).await;
    let mut client = fixture.client().await;
    let thread = start_thread(&mut client, "on-request").await;
    client.start_turn(&thread, "write the report").await;
    let (id, _) = client.server_request(COMMAND_APPROVAL).await;
    client
        .answer(COMMAND_APPROVAL, &id, json!({"decision": "decline"}))
        .await;
    client
        .notification("serverRequest/resolved", |p| p["requestId"] == id)
        .await;
    let turn = client.turn_completed(&thread).await;
    assert_eq!(turn["status"], "completed", "decline lets the turn go on");
    let item = completed_item(&client, "commandExecution");
    assert_eq!(item["status"], "declined", "{item}");
    assert!(!target.exists(), "a declined command ran");
    let told = tool_output(&fixture, 1);
    assert!(told.contains("did not approve"), "{told}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_declines_and_interrupts_the_turn() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("report.txt");
    let fixture = Fixture::start_with(escalating_script(&target), closed_tmp()).await;
    let mut client = fixture.client().await;
    let thread = start_thread(&mut client, "on-request").await;
    client.start_turn(&thread, "write the report").await;
    let (id, _) = client.server_request(COMMAND_APPROVAL).await;
    client
        .answer(COMMAND_APPROVAL, &id, json!({"decision": "cancel"}))
        .await;
    let turn = client.turn_completed(&thread).await;
    assert_eq!(turn["status"], "interrupted", "{}", client.transcript());
    assert!(!target.exists());
    assert_eq!(
        fixture.mock.request_count(),
        1,
        "the interrupted turn sent nothing more to the model"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_offers_an_unsandboxed_rerun() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("out.txt");
    let script = Script::new([
        Step::function_call(
            "exec_command",
            json!({"cmd": format!("echo rerun > {}", target.display())}),
        ),
        Step::message("done"),
    ]);
    let fixture = Fixture::start_with(script, closed_tmp()).await;
    let mut client = fixture.client().await;
    let thread = start_thread(&mut client, "on-failure").await;
    client.start_turn(&thread, "write out.txt").await;
    let (id, params) = client.server_request(COMMAND_APPROVAL).await;
    let reason = params["reason"].as_str().unwrap();
    assert!(reason.contains("failed in the sandbox"), "{reason}");
    // The sandboxed attempt already ran and failed.
    let failed = completed_item(&client, "commandExecution");
    assert_eq!(failed["status"], "failed");
    assert!(!target.exists());
    client
        .answer(COMMAND_APPROVAL, &id, json!({"decision": "accept"}))
        .await;
    let turn = client.turn_completed(&thread).await;
    assert_eq!(turn["status"], "completed");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "rerun\n");
    let rerun = client
        .log
        .iter()
        .rev()
        .find(|m| {
            method(m) == "item/completed" && m["params"]["item"]["type"] == "commandExecution"
        })
        .unwrap()["params"]["item"]
        .clone();
    assert_eq!(rerun["status"], "completed", "{rerun}");
    assert_eq!(rerun["exitCode"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_outside_the_writable_roots_are_asked() {
    let script = Script::new([
        Step::apply_patch(
            "*** Begin Patch\n*** Add File: .git/accepted.txt\n+yes\n*** End Patch\n",
        ),
        Step::apply_patch("*** Begin Patch\n*** Add File: .git/declined.txt\n+no\n*** End Patch\n"),
        Step::message("done"),
    ]);
    let fixture = Fixture::start(script).await;
    std::fs::create_dir_all(fixture.work.path().join(".git")).unwrap();
    let mut client = fixture.client().await;
    let thread = start_thread(&mut client, "on-request").await;
    client.start_turn(&thread, "write into .git").await;

    let (id, params) = client.server_request(FILE_APPROVAL).await;
    assert!(
        params["reason"].as_str().unwrap().contains("read-only"),
        "{params}"
    );
    let started = client
        .log
        .iter()
        .find(|m| method(m) == "item/started" && m["params"]["item"]["type"] == "fileChange")
        .expect("the fileChange item starts before the request");
    assert_eq!(started["params"]["item"]["id"], params["itemId"]);
    assert_eq!(
        started["params"]["item"]["changes"][0]["path"],
        ".git/accepted.txt"
    );
    client
        .answer(FILE_APPROVAL, &id, json!({"decision": "accept"}))
        .await;

    let (second, _) = client.server_request(FILE_APPROVAL).await;
    assert_ne!(second, id);
    client
        .answer(FILE_APPROVAL, &second, json!({"decision": "decline"}))
        .await;
    let turn = client.turn_completed(&thread).await;
    assert_eq!(turn["status"], "completed");
    let statuses: Vec<(String, String)> = client
        .log
        .iter()
        .filter(|m| method(m) == "item/completed" && m["params"]["item"]["type"] == "fileChange")
        .map(|m| {
            (
                m["params"]["item"]["changes"][0]["path"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                m["params"]["item"]["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            (".git/accepted.txt".to_string(), "completed".to_string()),
            (".git/declined.txt".to_string(), "declined".to_string()),
        ],
        "{}",
        client.transcript()
    );
    assert_eq!(
        std::fs::read_to_string(fixture.work.path().join(".git/accepted.txt")).unwrap(),
        "yes\n"
    );
    assert!(!fixture.work.path().join(".git/declined.txt").exists());
    let told = tool_output(&fixture, 2);
    assert!(told.contains("did not approve"), "{told}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_approval_holds_the_goal_and_is_not_a_no_progress_turn() {
    // One no-progress turn would block the goal: the turn that waited for a person must not
    // count as one.
    let script = Script::new([
        Step::function_call("exec_command", json!({"cmd": "touch made-by-goal.txt"})),
        Step::message("I need the user's approval for that"),
        Step::update_goal("complete"),
        Step::message("done"),
    ]);
    let fixture = Fixture::start_with(script, vec!["goals.max_no_progress_turns=1".into()]).await;
    let mut client = fixture.client().await;
    let thread = start_thread(&mut client, "untrusted").await;
    client
        .call(
            "thread/goal/set",
            json!({"threadId": thread, "objective": "make the file", "origin": "user"}),
        )
        .await;
    let (id, params) = client.server_request(COMMAND_APPROVAL).await;
    assert!(
        params["reason"]
            .as_str()
            .unwrap()
            .contains("not known to be read-only"),
        "{params}"
    );

    // While the request waits the goal stays active and nothing more goes to the model.
    let goal = client
        .call("thread/goal/get", json!({"threadId": thread}))
        .await;
    assert_eq!(goal["goal"]["status"], "active");
    let read = client
        .call("thread/read", json!({"threadId": thread}))
        .await;
    assert_eq!(
        read["thread"]["status"],
        json!({"type": "active", "activeFlags": ["waitingOnApproval"]})
    );
    assert_eq!(fixture.mock.request_count(), 1);

    // A second client joining the thread is asked too, and its answer counts.
    let mut other = fixture.client().await;
    other
        .call("thread/resume", json!({"threadId": thread}))
        .await;
    let (replayed, again) = other.server_request(COMMAND_APPROVAL).await;
    assert_eq!(replayed, id);
    assert_eq!(again["itemId"], params["itemId"]);
    assert_eq!(fixture.mock.request_count(), 1);
    other
        .answer(COMMAND_APPROVAL, &replayed, json!({"decision": "decline"}))
        .await;
    // Both clients learn that the request is settled.
    client
        .notification("serverRequest/resolved", |p| p["requestId"] == id)
        .await;
    other
        .notification("serverRequest/resolved", |p| p["requestId"] == id)
        .await;

    let done = client.goal_status(&thread, "complete").await;
    assert_eq!(done["goal"]["status"], "complete");
    assert!(
        !client
            .log
            .iter()
            .any(|m| method(m) == "thread/goal/updated"
                && m["params"]["goal"]["status"] == "blocked"),
        "the declined turn was counted as no progress:\n{}",
        client.transcript()
    );
    assert!(!fixture.work.path().join("made-by-goal.txt").exists());
    assert_eq!(fixture.mock.request_count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_for_session_is_not_asked_again() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("log.txt");
    let call = json!({
        "cmd": format!("echo line >> {}", target.display()),
        "sandbox_permissions": "require_escalated",
        "justification": "append to the shared log",
    });
    let script = Script::new([
        Step::function_call("exec_command", call.clone()),
        Step::function_call("exec_command", call),
        Step::message("done"),
    ]);
    let fixture = Fixture::start_with(script, closed_tmp()).await;
    let mut client = fixture.client().await;
    let thread = start_thread(&mut client, "on-request").await;
    client.start_turn(&thread, "log twice").await;
    let (id, _) = client.server_request(COMMAND_APPROVAL).await;
    client
        .answer(
            COMMAND_APPROVAL,
            &id,
            json!({"decision": "acceptForSession"}),
        )
        .await;
    let turn = client.turn_completed(&thread).await;
    assert_eq!(turn["status"], "completed");
    let asked = client
        .log
        .iter()
        .filter(|m| method(m) == COMMAND_APPROVAL)
        .count();
    assert_eq!(asked, 1, "{}", client.transcript());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "line\nline\n");
}

/// `-c mcp_servers.everything={...}`: the reference MCP server (pinned in `tests/mcp`, installed
/// by `.ci/run`) over stdio.
fn everything_server() -> String {
    let js = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        js.is_file(),
        "{} is missing: run `npm ci --prefix tests/mcp` (as .ci/run does)",
        js.display()
    );
    format!(
        "mcp_servers.everything={{command=\"node\", args=[{:?}, \"stdio\"], startup_timeout_sec=60}}",
        js.display().to_string()
    )
}

fn mcp_call(name: &str, call_id: &str, arguments: Value) -> quest_mock_model::Output {
    let mut output = quest_mock_model::Output::function_call(name, arguments);
    if let quest_mock_model::Output::FunctionCall(spec) = &mut output {
        spec.call_id = Some(call_id.to_string());
    }
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tools_with_side_effects_are_asked_and_appear_as_mcp_tool_call_items() {
    const ELICITATION: &str = "mcpServer/elicitation/request";
    let toggle = "mcp__everything__toggle-simulated-logging";
    let script = Script::new([
        Step::calls([mcp_call(toggle, "c-accepted", json!({}))]),
        Step::calls([mcp_call(toggle, "c-declined", json!({}))]),
        // `echo` is marked read-only by its server: it runs without asking.
        Step::calls([mcp_call(
            "mcp__everything__echo",
            "c-echo",
            json!({"message": "no question asked"}),
        )]),
        Step::message("done"),
    ]);
    let fixture = Fixture::start_with(script, vec![everything_server()]).await;
    let mut client = fixture.client().await;
    let thread = start_thread(&mut client, "on-request").await;
    client.start_turn(&thread, "toggle logging").await;

    let (id, params) = client.server_request(ELICITATION).await;
    assert_eq!(params["serverName"], "everything");
    assert_eq!(params["threadId"], thread.as_str());
    assert_eq!(params["mode"], "form");
    assert_eq!(params["_meta"]["codex_approval_kind"], "mcp_tool_call");
    assert!(
        params["message"]
            .as_str()
            .unwrap()
            .contains("toggle-simulated-logging"),
        "{params}"
    );
    // Nothing was called yet.
    assert!(
        !client
            .log
            .iter()
            .any(|m| m["params"]["item"]["type"] == "mcpToolCall")
    );
    client
        .answer(ELICITATION, &id, json!({"action": "accept", "content": {}}))
        .await;
    client
        .notification("serverRequest/resolved", |p| p["requestId"] == id)
        .await;

    let (second, _) = client.server_request(ELICITATION).await;
    client
        .answer(ELICITATION, &second, json!({"action": "decline"}))
        .await;
    let turn = client.turn_completed(&thread).await;
    assert_eq!(turn["status"], "completed", "{}", client.transcript());

    let items: Vec<Value> = client
        .log
        .iter()
        .filter(|m| method(m) == "item/completed" && m["params"]["item"]["type"] == "mcpToolCall")
        .map(|m| m["params"]["item"].clone())
        .collect();
    assert_eq!(items.len(), 3, "{}", client.transcript());
    assert_eq!(items[0]["id"], "c-accepted");
    assert_eq!(items[0]["status"], "completed", "{}", items[0]);
    assert_eq!(items[0]["server"], "everything");
    assert_eq!(items[0]["tool"], "toggle-simulated-logging");
    assert_eq!(items[1]["id"], "c-declined");
    assert_eq!(items[1]["status"], "failed");
    assert!(
        items[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not approve"),
        "{}",
        items[1]
    );
    assert_eq!(items[2]["id"], "c-echo");
    assert_eq!(items[2]["status"], "completed");
    assert_eq!(
        client
            .log
            .iter()
            .filter(|m| method(m) == ELICITATION)
            .count(),
        2,
        "the read-only tool was asked about"
    );
    let accepted = tool_output(&fixture, 1);
    assert!(accepted.contains("simulated"), "{accepted}");
    let declined = tool_output(&fixture, 2);
    assert!(declined.contains("did not approve"), "{declined}");
    let echoed = tool_output(&fixture, 3);
    assert!(echoed.contains("Echo: no question asked"), "{echoed}");
}
