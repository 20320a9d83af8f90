//! The JSON-RPC layer: handshake, error codes, malformed and oversized input over the WebSocket
//! and in-process transports, WebSocket authentication, and the start-up calls of Codex's TUI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use quest_mock_model::{Script, Step};
use serde_json::{Value, json};
use support::{Client, Fixture};

fn code(error: &Value) -> i64 {
    error["code"].as_i64().unwrap()
}

fn message(error: &Value) -> &str {
    error["message"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_before_initialize_are_refused_and_initialize_answers_once() {
    let fixture = Fixture::start(Script::default()).await;
    let mut client = Client::connect_ws(&fixture.url).await;
    let error = client.request("thread/list", json!({})).await.unwrap_err();
    assert_eq!(code(&error), -32600, "{error}");
    assert!(message(&error).contains("initialize"), "{error}");
    let result = client.initialize().await;
    assert_eq!(result["platformOs"], std::env::consts::OS);
    // Codex's TUI takes the version after the first `/` as the server's and warns ("A background
    // Codex service is running v…, older than your Codex CLI") when it is older than its own.
    let agent = result["userAgent"].as_str().unwrap();
    assert!(
        agent.starts_with("quest-test/0.169.0 ("),
        "the protocol version Quest speaks comes first: {agent}"
    );
    assert!(
        agent.contains(&format!("quest/{}", env!("CARGO_PKG_VERSION"))),
        "{agent}"
    );
    assert_eq!(
        result["codexHome"],
        fixture.home.path().display().to_string()
    );
    let again = client
        .request(
            "initialize",
            json!({"clientInfo": {"name": "x", "version": "1"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&again), -32600);
    assert!(message(&again).contains("Already initialized"), "{again}");
    // The server still serves after both refusals.
    client.call("thread/list", json!({})).await;
}

async fn malformed_input_is_answered_and_the_server_keeps_serving(mut client: Client) {
    // Not JSON at all.
    client.send_text("this is not json").await;
    let reply = client
        .wait_for("a parse error", |m| m.get("error").is_some())
        .await;
    assert_eq!(code(&reply["error"]), -32700, "{reply}");
    assert!(reply["id"].is_null());
    // JSON, but not an object.
    client.send_text("[1, 2, 3]").await;
    let reply = client
        .wait_for("invalid request", |m| m.get("error").is_some())
        .await;
    assert_eq!(code(&reply["error"]), -32600, "{reply}");
    // A request whose method is not a string keeps its id in the answer.
    client.send_text(r#"{"id": 77, "method": 5}"#).await;
    let reply = client.wait_for("bad method", |m| m["id"] == 77).await;
    assert_eq!(code(&reply["error"]), -32600, "{reply}");
    assert!(message(&reply["error"]).contains("`method`"), "{reply}");
    // A binary frame (or non-UTF-8 line).
    client.send_binary(vec![0xff, 0x00, 0x13]).await;
    let reply = client
        .wait_for("non-text", |m| m.get("error").is_some())
        .await;
    assert_eq!(code(&reply["error"]), -32700, "{reply}");
    // Unknown method.
    let error = client
        .request("no/such/method", json!({}))
        .await
        .unwrap_err();
    assert_eq!(code(&error), -32601, "{error}");
    assert!(message(&error).contains("no/such/method"), "{error}");
    // Bad params name the field.
    let error = client
        .request("thread/goal/get", json!({"threadId": 5}))
        .await
        .unwrap_err();
    assert_eq!(code(&error), -32602, "{error}");
    assert!(message(&error).contains("threadId"), "{error}");
    let error = client
        .request("turn/start", json!({"input": []}))
        .await
        .unwrap_err();
    assert_eq!(code(&error), -32602, "{error}");
    assert!(message(&error).contains("threadId"), "{error}");
    let error = client
        .request(
            "thread/goal/set",
            json!({"threadId": "x", "tokenBudget": "lots"}),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&error), -32602, "{error}");
    assert!(message(&error).contains("tokenBudget"), "{error}");
    let error = client
        .request("thread/read", json!({"threadId": "not-a-uuid"}))
        .await
        .unwrap_err();
    assert!(
        message(&error).contains("invalid thread id: not-a-uuid"),
        "{error}"
    );
    // Oversized (the fixture's limit is 64 KiB).
    let big = format!(
        r#"{{"id": 9, "method": "thread/list", "params": {{"searchTerm": "{}"}}}}"#,
        "x".repeat(100 * 1024)
    );
    client.send_text(&big).await;
    let reply = client
        .wait_for("size refusal", |m| m.get("error").is_some())
        .await;
    assert_eq!(code(&reply["error"]), -32600, "{reply}");
    assert!(
        message(&reply["error"]).contains("exceeds the limit"),
        "{reply}"
    );
    // And after all that, a normal request still works.
    let listed = client.call("thread/list", json!({"limit": 5})).await;
    assert_eq!(listed["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_over_websocket() {
    let fixture = Fixture::start(Script::default()).await;
    malformed_input_is_answered_and_the_server_keeps_serving(fixture.client().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_over_the_in_process_channel() {
    let fixture = Fixture::start(Script::default()).await;
    let mut client = Client::in_process(fixture.server.clone());
    client.initialize().await;
    malformed_input_is_answered_and_the_server_keeps_serving(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_far_over_the_limit_closes_only_that_connection() {
    let fixture = Fixture::start(Script::default()).await;
    let mut other = fixture.client().await;
    let mut client = fixture.client().await;
    client.send_text(&"y".repeat(1024 * 1024)).await;
    assert!(client.next().await.is_none(), "the connection should close");
    other.call("thread/list", json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_token_is_required_when_configured() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let auth = quest_app_server::WsAuth::from_token_file(&token_file).unwrap();
    let mock = quest_mock_model::MockModel::start(Script::default()).await;
    let server =
        quest_app_server::Server::new(support::options(home.path(), home.path(), &mock.uri(), &[]))
            .unwrap();
    let listener = quest_app_server::transport::bind_ws("127.0.0.1:0".parse().unwrap(), &auth)
        .await
        .unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(quest_app_server::transport::serve_ws(
        server, listener, auth,
    ));

    let refused = tokio_tungstenite::connect_async(url.as_str()).await;
    let err = refused.expect_err("no token must be refused").to_string();
    assert!(err.contains("401"), "{err}");
    let mut wrong = url.as_str().into_client_request().unwrap();
    wrong
        .headers_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(wrong).await.is_err());
    let mut right = url.as_str().into_client_request().unwrap();
    right
        .headers_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    let (stream, _) = tokio_tungstenite::connect_async(right).await.unwrap();
    drop(stream);

    // A non-loopback bind without a token is refused before listening.
    let err = quest_app_server::transport::bind_ws(
        "0.0.0.0:0".parse().unwrap(),
        &quest_app_server::WsAuth::none(),
    )
    .await
    .unwrap_err();
    assert!(err.contains("--ws-token-file"), "{err}");
}

/// The start-up requests Codex 0.169's TUI sends (from `codex-tui-remote-trace.json`), answered
/// from Quest's state and valid against Codex's schemas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_tui_start_up_calls_get_schema_valid_answers() {
    let fixture = Fixture::start(Script::default()).await;
    let work = fixture.work.path().display().to_string();
    let mut client = Client::connect_ws(&fixture.url).await;
    client
        .send_request_with_id(
            json!("initialize"),
            "initialize",
            json!({"clientInfo": {"name": "codex-tui", "title": null, "version": "0.169.0"},
                   "capabilities": {"requiredHumanApproval": true, "experimentalApi": true,
                                    "requestAttestation": false, "optOutNotificationMethods": null}}),
        )
        .await;
    client
        .wait_for("initialize", |m| m["id"] == "initialize")
        .await;
    client.send_text(r#"{"method":"initialized"}"#).await;
    let requests = vec![
        ("account/read", json!({})),
        (
            "model/list",
            json!({"modelProvider": null, "cursor": null, "limit": null, "includeHidden": true}),
        ),
        ("hooks/list", json!({"cwds": [work], "threadId": null})),
        ("account/bedrock/checkGovCloudRequirements", json!({})),
        ("config/read", json!({"includeLayers": true, "cwd": "."})),
        ("configRequirements/read", Value::Null),
        ("collaborationMode/list", json!({})),
        (
            "thread/start",
            json!({"model": null, "modelProvider": null, "cwd": null, "approvalPolicy": null,
            "sandbox": "workspace-write", "config": {}, "ephemeral": false, "historyMode": "paginated",
            "threadSource": "user", "dynamicTools": []}),
        ),
        (
            "thread/list",
            json!({"currentAccountOnly": true, "cursor": null, "limit": 100,
            "sortKey": "section_position", "modelProviders": [], "sourceKinds": ["exec", "appServer"],
            "archived": false, "useStateDbOnly": true}),
        ),
        ("skills/list", json!({"cwds": [work], "forceReload": true})),
        ("thread/loaded/list", json!({"cursor": null, "limit": null})),
        (
            "plugin/installed",
            json!({"cwds": [work], "installSuggestionPluginNames": null}),
        ),
    ];
    let mut thread_id = String::new();
    for (index, (method, params)) in requests.into_iter().enumerate() {
        let id = json!(format!("startup-{index}"));
        client
            .send_request_with_id(id.clone(), method, params)
            .await;
        let reply = client.wait_for(method, |m| m["id"] == id).await;
        assert!(reply.get("result").is_some(), "{method}: {reply}");
        if method == "thread/start" {
            thread_id = reply["result"]["thread"]["id"]
                .as_str()
                .unwrap()
                .to_string();
            assert_eq!(reply["result"]["thread"]["status"], json!({"type": "idle"}));
            assert_eq!(reply["result"]["cwd"], work.as_str());
            let started = client.notification("thread/started", |_| true).await;
            assert_eq!(started["thread"]["id"], thread_id.as_str());
        }
        if method == "thread/loaded/list" {
            assert_eq!(reply["result"]["data"], json!([thread_id]));
        }
        if method == "model/list" {
            assert_eq!(reply["result"]["data"][0]["model"], "gpt-test");
        }
        if method == "config/read" {
            assert_eq!(reply["result"]["config"]["model_provider"], "test");
        }
    }
    for (method, params) in [
        ("thread/read", json!({"threadId": thread_id})),
        (
            "thread/turns/list",
            json!({"threadId": thread_id, "cursor": null, "limit": 1, "sortDirection": null, "itemsView": null}),
        ),
        (
            "thread/readState/update",
            json!({"threadId": thread_id, "operation": {"type": "read"}, "expectedRevision": null}),
        ),
        ("thread/goal/get", json!({"threadId": thread_id})),
    ] {
        client.call(method, params).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_threads_are_reported_by_id() {
    let fixture = Fixture::start(Script::new([Step::message("hi")])).await;
    let mut client = fixture.client().await;
    let missing = "01a21d6e-4999-7d22-9083-6f1284430785";
    for method in [
        "thread/read",
        "thread/goal/get",
        "thread/resume",
        "thread/turns/list",
    ] {
        let error = client
            .request(method, json!({"threadId": missing}))
            .await
            .unwrap_err();
        assert_eq!(
            message(&error),
            format!("thread not found: {missing}"),
            "{method}: {error}"
        );
    }
    let unsub = client
        .call("thread/unsubscribe", json!({"threadId": missing}))
        .await;
    assert_eq!(unsub["status"], "notLoaded");
}
