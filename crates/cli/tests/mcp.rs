//! MCP servers end to end: `quest exec --json` with the reference server
//! `@modelcontextprotocol/server-everything` (pinned in `tests/mcp`, installed by `.ci/run`) over
//! stdio and streamable HTTP, against the scripted model over TCP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{TestEnv, completed_items, jsonl, run, thread_id};
use quest_mock_model::{Condition, MockModel, Output, Rule, Script, Step};
use serde_json::{Value, json};

fn everything_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/mcp/node_modules/@modelcontextprotocol/server-everything");
    assert!(
        dir.join("dist/index.js").is_file(),
        "{} is missing: run `npm ci --prefix tests/mcp` (as .ci/run does)",
        dir.display()
    );
    dir
}

/// `-c mcp_servers.<name>={...}` for the stdio server.
fn everything_stdio(name: &str) -> [String; 2] {
    let js = everything_dir().join("dist/index.js");
    [
        "-c".to_string(),
        format!(
            "mcp_servers.{name}={{command=\"node\", args=[{:?}, \"stdio\"], startup_timeout_sec=60}}",
            js.display().to_string()
        ),
    ]
}

fn output_text(mock: &MockModel, request: usize, call_id: &str) -> String {
    let input = mock.input_items(request);
    let item = input
        .iter()
        .find(|i| i["type"] == "function_call_output" && i["call_id"] == call_id)
        .unwrap_or_else(|| panic!("no output for {call_id} in request {request}: {input:#?}"));
    item["output"].as_str().unwrap().to_string()
}

fn call(name: &str, call_id: &str, arguments: Value) -> Output {
    let mut output = Output::function_call(name, arguments);
    if let Output::FunctionCall(spec) = &mut output {
        spec.call_id = Some(call_id.to_string());
    }
    output
}

#[test]
fn exec_offers_calls_and_reads_from_the_everything_server() {
    let feature_doc =
        std::fs::read_to_string(everything_dir().join("dist/docs/features.md")).unwrap();
    let uri = "demo://resource/static/document/features.md";
    let mock = MockModel::start_blocking(Script::new([
        Step::calls([call(
            "mcp__everything__echo",
            "c-echo",
            json!({"message": "hello mcp"}),
        )]),
        Step::calls([
            call(
                "list_mcp_resources",
                "c-list",
                json!({"server": "everything"}),
            ),
            call("mcp__everything__echo", "c-bad", json!({"message": 5})),
        ]),
        Step::calls([
            call(
                "read_mcp_resource",
                "c-read",
                json!({"server": "everything", "uri": uri}),
            ),
            call("mcp__everything__get-tiny-image", "c-img", json!({})),
        ]),
        Step::message("All done."),
    ]));
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock)
            .args(everything_stdio("everything"))
            .arg("use the tools"),
        0,
    );
    let events = jsonl(&out);

    // The server's tools (with their schemas) and the resource tools reach the model.
    let first = mock.request(0).unwrap();
    let names = first.tool_names();
    for expected in [
        "exec_command",
        "mcp__everything__echo",
        "mcp__everything__get-sum",
        "list_mcp_resources",
        "list_mcp_resource_templates",
        "read_mcp_resource",
    ] {
        assert!(
            names.contains(&expected.to_string()),
            "{expected} missing: {names:?}"
        );
    }
    let echo_spec = first.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "mcp__everything__echo")
        .unwrap()
        .clone();
    assert_eq!(echo_spec["type"], "function");
    assert_eq!(echo_spec["description"], "Echoes back the input string");
    assert_eq!(
        echo_spec["parameters"]["properties"]["message"]["type"],
        "string"
    );

    // The echo text goes back to the model.
    assert_eq!(output_text(&mock, 1, "c-echo"), "Echo: hello mcp");
    // Resources are listed with their server; a tool error comes back as an error result.
    let listed: Value = serde_json::from_str(&output_text(&mock, 2, "c-list")).unwrap();
    let resources = listed["resources"].as_array().unwrap();
    assert!(
        resources
            .iter()
            .any(|r| r["uri"] == uri && r["server"] == "everything"),
        "{listed}"
    );
    assert!(
        output_text(&mock, 2, "c-bad").starts_with("The tool reported an error:"),
        "{}",
        output_text(&mock, 2, "c-bad")
    );
    // The resource is read.
    let read: Value = serde_json::from_str(&output_text(&mock, 3, "c-read")).unwrap();
    assert_eq!(read["contents"][0]["uri"], uri);
    assert_eq!(read["contents"][0]["text"], feature_doc.as_str());

    // The image reaches the model as an image, after the tool outputs.
    assert!(output_text(&mock, 3, "c-img").contains("[image 1: image/png]"));
    let input = mock.input_items(3);
    let last = input.last().unwrap();
    assert_eq!(last["role"], "user", "{last}");
    assert_eq!(
        last["content"][0]["text"],
        "Image 1 returned by mcp__everything__get-tiny-image:"
    );
    assert!(
        last["content"][1]["image_url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,iVBOR"),
        "{last}"
    );

    // exec --json shows mcp_tool_call items in the SDK's shape.
    let started: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "item.started" && e["item"]["type"] == "mcp_tool_call")
        .map(|e| &e["item"])
        .collect();
    assert_eq!(started.len(), 3, "{events:#?}");
    assert_eq!(started[0]["status"], "in_progress");
    let calls = completed_items(&events, "mcp_tool_call");
    assert_eq!(calls.len(), 3, "{events:#?}");
    let ok = calls
        .iter()
        .find(|c| c["arguments"]["message"] == "hello mcp")
        .unwrap();
    assert_eq!(
        **ok,
        json!({"id": ok["id"], "type": "mcp_tool_call", "server": "everything", "tool": "echo",
               "arguments": {"message": "hello mcp"},
               "result": {"content": [{"type": "text", "text": "Echo: hello mcp"}], "structured_content": null},
               "error": null, "status": "completed"})
    );
    assert_eq!(
        ok["id"], started[0]["id"],
        "started and completed share an id"
    );
    let bad = calls
        .iter()
        .find(|c| c["arguments"]["message"] == 5)
        .unwrap();
    assert_eq!(bad["status"], "failed");
    assert!(bad["result"]["content"][0]["text"].is_string(), "{bad}");
    assert_eq!(
        events.last().unwrap()["type"],
        "turn.completed",
        "{events:#?}"
    );
}

/// Process ids whose command line contains `needle`.
fn pids_with_cmdline(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z'));
            if !zombie
                && String::from_utf8_lossy(&cmdline)
                    .replace('\0', " ")
                    .contains(needle)
            {
                out.push(pid);
            }
        }
    }
    out
}

#[test]
fn silent_server_is_reported_after_its_timeout_and_the_turn_proceeds() {
    let marker = format!("{}", 60_000 + std::process::id() % 20_000);
    let mock = MockModel::start_blocking(Script::new([
        Step::calls([call("mcp__silent__search", "c-silent", json!({}))]),
        Step::message("Answered anyway."),
    ]));
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock)
            .args(everything_stdio("everything"))
            .args([
                "-c",
                &format!("mcp_servers.silent={{command=\"sleep\", args=[\"{marker}\"], startup_timeout_sec=1}}"),
            ])
            .arg("hello"),
        0,
    );
    let events = jsonl(&out);
    let warnings: Vec<&str> = completed_items(&events, "error")
        .iter()
        .filter_map(|i| i["message"].as_str())
        .collect();
    assert_eq!(
        warnings,
        ["MCP server `silent` did not finish starting within 1s (startup_timeout_sec)"],
        "{events:#?}"
    );
    let agent = completed_items(&events, "agent_message");
    assert_eq!(agent[0]["text"], "Answered anyway.");
    // A call of the silent server's tools says why it is unavailable.
    assert_eq!(
        output_text(&mock, 1, "c-silent"),
        "`mcp__silent__search` is not available: MCP server `silent` did not finish starting within 1s (startup_timeout_sec)"
    );
    // The working server's tools are offered; the silent one has none.
    let names = mock.request(0).unwrap().tool_names();
    assert!(
        names.iter().any(|n| n == "mcp__everything__echo"),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("mcp__silent__")),
        "{names:?}"
    );
    // Nothing is left running after quest exits.
    let needle = format!("sleep {marker}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pids_with_cmdline(&needle).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the silent server outlived quest"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stdio_server_does_not_outlive_quest() {
    // A unique working directory marks this test's server process.
    let mock = MockModel::start_blocking(Script::new([Step::message("ok")]));
    let env = TestEnv::new();
    let tag = env.work().display().to_string();
    let out = run(
        env.exec(&mock)
            .args(everything_stdio("everything"))
            .args([
                "-c",
                &format!("mcp_servers.everything.env={{QUEST_TEST_TAG={tag:?}}}"),
            ])
            .arg("hi"),
        0,
    );
    assert_eq!(thread_id(&jsonl(&out)).len(), 36);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alive: Vec<u32> = pids_with_cmdline("server-everything/dist/index.js")
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .map(|env| {
                        String::from_utf8_lossy(&env).contains(&format!("QUEST_TEST_TAG={tag}"))
                    })
                    .unwrap_or(false)
            })
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "server {alive:?} outlived quest");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn failing_server_counts_toward_the_goal_breaker() {
    // Every goal turn reads from a server that never started; the goal must stop by itself.
    let mock = MockModel::start_blocking(
        Script::new([])
            .with_rule(Rule {
                name: Some("answer".into()),
                when: Condition {
                    last_item_type: Some("function_call_output".into()),
                    ..Condition::default()
                },
                then: Step::message("The tracker server is still down."),
                max_matches: None,
                verbatim: false,
            })
            .with_default(Step::function_call(
                "read_mcp_resource",
                json!({"server": "silent", "uri": "tracker://issues/1"}),
            )),
    );
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock).args([
            "-c",
            "mcp_servers.silent={command=\"sleep\", args=[\"300\"], startup_timeout_sec=1}",
            "-c",
            "goals.no_progress_backoff=[\"10ms\"]",
            "-c",
            "goals.max_no_progress_turns=2",
            "--goal",
            "close issue 1",
        ]),
        3,
    );
    let events = jsonl(&out);
    let id = thread_id(&events);
    let status = run(env.quest_bare().args(["goal", "status", &id, "--json"]), 0);
    let goal: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(goal["goal"]["status"], "blocked", "{goal}");
    assert_eq!(mock.request_count(), 4, "two turns of two requests");
    let output = output_text(
        &mock,
        1,
        mock.input_items(1)
            .iter()
            .rev()
            .find(|i| i["type"] == "function_call_output")
            .unwrap()["call_id"]
            .as_str()
            .unwrap(),
    );
    assert!(
        output.starts_with("MCP server `silent` did not finish starting within 1s"),
        "{output}"
    );
}

/// The same package in its streamable-HTTP mode, on a free loopback port.
struct HttpServer {
    child: std::process::Child,
    url: String,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_http_server() -> HttpServer {
    use std::io::{BufRead, BufReader};
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new("node")
            .arg(everything_dir().join("dist/index.js"))
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reported = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !reported && line.contains("listening on port") {
                    let _ = tx.send(true);
                    reported = true;
                } else if !reported && line.contains("already in use") {
                    let _ = tx.send(false);
                    reported = true;
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)) == Ok(true) {
            return HttpServer {
                child,
                url: format!("http://127.0.0.1:{port}/mcp"),
            };
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("the streamable-HTTP server did not start");
}

#[test]
fn streamable_http_server_works_through_exec() {
    let server = start_http_server();
    let mock = MockModel::start_blocking(Script::new([
        Step::calls([call(
            "mcp__web__echo",
            "c-web",
            json!({"message": "over http"}),
        )]),
        Step::message("ok"),
    ]));
    let env = TestEnv::new();
    let out = run(
        env.exec(&mock)
            .args([
                "-c",
                &format!(
                    "mcp_servers.web={{url={:?}, startup_timeout_sec=60}}",
                    server.url
                ),
            ])
            .arg("hi"),
        0,
    );
    assert_eq!(output_text(&mock, 1, "c-web"), "Echo: over http");
    let calls = completed_items(&jsonl(&out), "mcp_tool_call")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["server"], "web");
    assert_eq!(calls[0]["status"], "completed");
}

#[test]
fn mcp_calls_are_recorded_in_telemetry() {
    use quest_otel::test_receiver::OtlpReceiver;
    let receiver = OtlpReceiver::start().unwrap();
    let endpoint = receiver.http_endpoint();
    let exporter = format!("{{otlp-http={{endpoint=\"{endpoint}\", protocol=\"binary\"}}}}");
    let mock = MockModel::start_blocking(Script::new([
        Step::calls([call(
            "mcp__everything__echo",
            "c-otel",
            json!({"message": "traced"}),
        )]),
        Step::message("ok"),
    ]));
    let env = TestEnv::new();
    run(
        env.exec(&mock)
            .args(everything_stdio("everything"))
            .args([
                "-c",
                &format!("otel.exporter={exporter}"),
                "-c",
                &format!("otel.trace_exporter={exporter}"),
            ])
            .arg("hi"),
        0,
    );
    let received = receiver
        .wait_until(Duration::from_secs(20), |r| {
            r.spans()
                .iter()
                .any(|s| s.name == "execute_tool mcp__everything__echo")
                && r.log_records().iter().any(|l| {
                    l.attributes.get("event.name").map(String::as_str) == Some("codex.tool_result")
                        || l.event_name == "codex.tool_result"
                })
        })
        .unwrap_or_else(|r| panic!("incomplete export: {:#?} {:#?}", r.spans(), r.log_records()));
    let spans = received.spans();
    let span = spans
        .iter()
        .find(|s| s.name == "execute_tool mcp__everything__echo")
        .unwrap();
    assert_eq!(span.attributes["gen_ai.tool.type"], "extension");
    assert_eq!(span.attributes["gen_ai.tool.call.id"], "c-otel");
    assert_eq!(span.attributes["quest.tool.success"], "true");
    let logs = received.log_records();
    let result = logs
        .iter()
        .find(|l| {
            (l.event_name == "codex.tool_result"
                || l.attributes.get("event.name").map(String::as_str) == Some("codex.tool_result"))
                && l.attributes.get("call_id").map(String::as_str) == Some("c-otel")
        })
        .unwrap_or_else(|| panic!("{logs:#?}"));
    assert_eq!(result.attributes["mcp_server"], "everything");
    assert_eq!(result.attributes["tool_name"], "mcp__everything__echo");
    assert_eq!(result.attributes["output"], "Echo: traced");
}

#[test]
fn killed_quest_leaves_no_server_behind() {
    // A server that would outlive the end of its stdin: a preloaded timer keeps node running.
    let env = TestEnv::new();
    let preload = env.work().join("keep-alive.cjs");
    std::fs::write(&preload, "setInterval(() => {}, 1 << 30);\n").unwrap();
    let js = everything_dir().join("dist/index.js");
    let tag = env.work().display().to_string();
    // The first response stalls, so quest is mid-turn (servers running) when it is killed.
    let mock = MockModel::start_blocking(Script::new([Step {
        stall_after: Some(1),
        ..Step::message("never finished")
    }]));
    let mut child = env
        .exec(&mock)
        .args([
            "-c",
            &format!(
                "mcp_servers.everything={{command=\"node\", args=[\"-r\", {:?}, {:?}, \"stdio\"], env={{QUEST_TEST_TAG={tag:?}}}, startup_timeout_sec=60}}",
                preload.display().to_string(),
                js.display().to_string()
            ),
        ])
        .arg("hi")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    mock.wait_for_requests_blocking(1, Duration::from_secs(60))
        .unwrap();
    let tagged = || -> Vec<u32> {
        pids_with_cmdline("server-everything/dist/index.js")
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .map(|e| String::from_utf8_lossy(&e).contains(&format!("QUEST_TEST_TAG={tag}")))
                    .unwrap_or(false)
            })
            .collect()
    };
    assert_eq!(tagged().len(), 1, "the server runs while quest does");
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !tagged().is_empty() {
        assert!(
            Instant::now() < deadline,
            "server {:?} outlived a killed quest",
            tagged()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
