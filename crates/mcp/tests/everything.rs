//! End-to-end tests against the reference server `@modelcontextprotocol/server-everything`
//! (pinned in `tests/mcp/package.json`, installed by `.ci/run`), over stdio and streamable HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quest_mcp::{
    McpConnectionManager, McpError, McpServerConfig, McpServers, ServerStatus, WarningSink,
};
use serde_json::json;

/// The installed server's entry point; a missing install is a failure, not a skip.
fn everything_js() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        path.is_file(),
        "{} is missing: run `npm ci --prefix tests/mcp` (as .ci/run does)",
        path.display()
    );
    path
}

fn everything(extra: impl FnOnce(&mut McpServerConfig)) -> McpServerConfig {
    let mut config = McpServerConfig::stdio(
        "node",
        vec![everything_js().display().to_string(), "stdio".to_string()],
    );
    // Generous for a loaded 2-core machine.
    config.startup_timeout = Some(Duration::from_secs(60));
    config.tool_timeout = Some(Duration::from_secs(60));
    extra(&mut config);
    config
}

fn servers(list: Vec<(&str, McpServerConfig)>) -> McpServers {
    McpServers::new(
        list.into_iter()
            .map(|(name, config)| (name.to_string(), config))
            .collect::<BTreeMap<_, _>>(),
    )
    .unwrap()
}

fn warnings() -> (WarningSink, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (
        Arc::new(move |w: String| sink.lock().unwrap().push(w)),
        seen,
    )
}

fn process_alive(pid: u32) -> bool {
    // A zombie is not alive: read its state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits (bounded) until no process matches; returns whether that happened.
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

fn pids_with_cmdline(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) && process_alive(pid) {
                out.push(pid);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_server_tools_calls_resources_and_errors() {
    let cwd = tempfile::tempdir().unwrap();
    let (sink, seen) = warnings();
    let (manager, failures) = McpConnectionManager::start(
        &servers(vec![("everything", everything(|_| {}))]),
        cwd.path(),
        sink,
    )
    .await;
    assert!(failures.is_empty(), "{failures:?}");
    assert!(seen.lock().unwrap().is_empty());

    // Tools: qualified, valid, with their schemas and read-only hints.
    let tools = manager.tools();
    let echo = tools
        .iter()
        .find(|t| t.qualified_name == "mcp__everything__echo")
        .unwrap_or_else(|| {
            panic!(
                "no echo tool in {:?}",
                tools.iter().map(|t| &t.qualified_name).collect::<Vec<_>>()
            )
        });
    assert_eq!(echo.name, "echo");
    assert_eq!(echo.input_schema["type"], "object");
    assert_eq!(echo.input_schema["properties"]["message"]["type"], "string");
    assert!(echo.read_only, "echo is annotated readOnlyHint");
    assert_eq!(echo.function_spec()["name"], "mcp__everything__echo");
    for tool in &tools {
        assert!(
            quest_mcp::naming::is_valid_function_name(&tool.qualified_name),
            "{}",
            tool.qualified_name
        );
    }
    assert!(tools.len() >= 5, "{}", tools.len());

    // The echo tool's text comes back.
    let out = manager
        .call_tool("everything", "echo", json!({"message": "hello from quest"}))
        .await
        .unwrap();
    assert!(!out.is_error);
    assert_eq!(out.to_model(10_000).text, "Echo: hello from quest");

    // Structured content and images.
    let sum = manager
        .call_tool("everything", "get-sum", json!({"a": 2, "b": 40}))
        .await
        .unwrap();
    assert!(sum.to_model(10_000).text.contains("42"), "{sum:?}");
    let image = manager
        .call_tool("everything", "get-tiny-image", json!({}))
        .await
        .unwrap();
    let model = image.to_model(10_000);
    assert_eq!(model.images.len(), 1, "{model:?}");
    assert_eq!(model.images[0].mime_type, "image/png");
    assert!(
        model.text.contains("[image 1: image/png]"),
        "{}",
        model.text
    );

    // A tool error comes back as an error result, not a transport failure.
    let bad = manager
        .call_tool("everything", "echo", json!({"message": 5}))
        .await
        .unwrap();
    assert!(bad.is_error, "{bad:?}");
    assert!(
        bad.to_model(10_000)
            .text
            .starts_with("The tool reported an error:")
    );

    // Resources: listed (with their server) and read.
    let listed = manager
        .list_resources(Some("everything"), None)
        .await
        .unwrap();
    let resources = listed["resources"].as_array().unwrap();
    assert!(!resources.is_empty(), "{listed}");
    assert!(resources.iter().all(|r| r["server"] == "everything"));
    let uri = resources[0]["uri"].as_str().unwrap().to_string();
    let read = manager.read_resource("everything", &uri).await.unwrap();
    assert_eq!(read["uri"], json!(uri));
    let contents = read["contents"].as_array().unwrap();
    assert_eq!(contents[0]["uri"], json!(uri), "{read}");
    assert!(contents[0].get("text").is_some() || contents[0].get("blob").is_some());
    let all = manager.list_resources(None, None).await.unwrap();
    assert!(all["resources"].as_array().unwrap().len() >= resources.len());
    let templates = manager
        .list_resource_templates(Some("everything"), None)
        .await
        .unwrap();
    assert!(
        !templates["resourceTemplates"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{templates}"
    );

    // Unknown servers and unreadable resources are errors naming the server.
    let err = manager
        .call_tool("nope", "echo", json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, McpError::UnknownServer { .. }), "{err}");
    let err = manager
        .read_resource("everything", "demo://no/such/thing")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`everything`"), "{err}");

    let pid = manager.server_pid("everything").await.unwrap();
    manager.shutdown().await;
    assert!(
        wait_until(|| !process_alive(pid)),
        "server {pid} outlived shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabled_and_disabled_tools_filter_what_the_model_sees() {
    let cwd = tempfile::tempdir().unwrap();
    let config = everything(|c| {
        c.enabled_tools = Some(vec!["echo".into(), "get-sum".into()]);
        c.disabled_tools = vec!["get-sum".into()];
    });
    let (sink, _) = warnings();
    let (manager, failures) =
        McpConnectionManager::start(&servers(vec![("e", config)]), cwd.path(), sink).await;
    assert!(failures.is_empty(), "{failures:?}");
    let names: Vec<String> = manager
        .tools()
        .into_iter()
        .map(|t| t.qualified_name)
        .collect();
    assert_eq!(names, ["mcp__e__echo"]);
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_times_out_without_holding_up_the_others() {
    let cwd = tempfile::tempdir().unwrap();
    let marker = format!("{}", 40_000 + std::process::id() % 20_000);
    let mut silent = McpServerConfig::stdio("sleep", vec![marker.clone()]);
    silent.startup_timeout = Some(Duration::from_secs(2));
    let mut disabled = McpServerConfig::stdio("/nonexistent/never-started", Vec::new());
    disabled.enabled = false;
    let (sink, seen) = warnings();
    let (manager, failures) = McpConnectionManager::start(
        &servers(vec![
            ("silent", silent),
            ("everything", everything(|_| {})),
            ("off", disabled),
        ]),
        cwd.path(),
        sink,
    )
    .await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(matches!(&failures[0], McpError::StartupTimeout { server, .. } if server == "silent"));
    let warnings = seen.lock().unwrap().clone();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("MCP server `silent` did not finish starting within 2s"),
        "{warnings:?}"
    );
    assert_eq!(
        manager.server_names(),
        ["everything", "silent"],
        "disabled servers never start"
    );
    // The working server is usable; the silent one's process is gone.
    assert!(manager.tools().iter().any(|t| t.server == "everything"));
    assert!(manager.tools().iter().all(|t| t.server != "silent"));
    let needle = format!("sleep {marker}");
    assert!(
        wait_until(|| pids_with_cmdline(&needle).is_empty()),
        "silent server left running"
    );
    // A call to the failed server fails fast with its startup error.
    let err = manager
        .call_tool("silent", "x", json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, McpError::StartupTimeout { .. }), "{err}");
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_program_is_a_warning_naming_the_server() {
    let cwd = tempfile::tempdir().unwrap();
    let (sink, seen) = warnings();
    let (_manager, failures) = McpConnectionManager::start(
        &servers(vec![(
            "ghost",
            McpServerConfig::stdio("/nonexistent/quest-mcp-ghost", Vec::new()),
        )]),
        cwd.path(),
        sink,
    )
    .await;
    assert_eq!(failures.len(), 1);
    let message = failures[0].to_string();
    assert_eq!(
        message,
        "MCP server `ghost` could not be started (`/nonexistent/quest-mcp-ghost`): program not found"
    );
    assert_eq!(seen.lock().unwrap().as_slice(), [message]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_that_dies_is_restarted_at_the_next_call() {
    let cwd = tempfile::tempdir().unwrap();
    let (sink, seen) = warnings();
    let (manager, failures) = McpConnectionManager::start(
        &servers(vec![("everything", everything(|_| {}))]),
        cwd.path(),
        sink,
    )
    .await;
    assert!(failures.is_empty(), "{failures:?}");
    let first = manager.server_pid("everything").await.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Wait (bounded) until the manager has seen the death, then call.
    let deadline = Instant::now() + Duration::from_secs(30);
    while manager.statuses().await[0].1 == ServerStatus::Ready {
        assert!(
            Instant::now() < deadline,
            "the manager never noticed the server's death"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = manager
        .call_tool("everything", "echo", json!({"message": "again"}))
        .await
        .unwrap();
    assert_eq!(out.plain_text(), "Echo: again");
    assert_eq!(manager.restarts("everything"), 1);
    let second = manager.server_pid("everything").await.unwrap();
    assert_ne!(first, second);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|w| w.starts_with("MCP server `everything` exited; restarting it")),
        "{:?}",
        seen.lock().unwrap()
    );
    manager.shutdown().await;
    assert!(wait_until(|| !process_alive(second)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_manager_kills_the_servers() {
    let cwd = tempfile::tempdir().unwrap();
    let (sink, _) = warnings();
    let (manager, _) = McpConnectionManager::start(
        &servers(vec![("everything", everything(|_| {}))]),
        cwd.path(),
        sink,
    )
    .await;
    let pid = manager.server_pid("everything").await.unwrap();
    drop(manager);
    assert!(
        wait_until(|| !process_alive(pid)),
        "server {pid} outlived its manager"
    );
}

/// The same package in its streamable-HTTP mode, on a free loopback port.
struct HttpServer {
    child: tokio::process::Child,
    url: String,
}

async fn start_http_server() -> HttpServer {
    use tokio::io::{AsyncBufReadExt, BufReader};
    // Find a free port; retry when another process takes it first.
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = tokio::process::Command::new("node")
            .arg(everything_js())
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening on port") {
                    return true;
                }
                if line.contains("already in use") {
                    return false;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if ready {
            // Keep draining stderr so the server never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return HttpServer {
                child,
                url: format!("http://127.0.0.1:{port}/mcp"),
            };
        }
        let _ = child.kill().await;
    }
    panic!("the streamable-HTTP server did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_http_server_works() {
    let mut server = start_http_server().await;
    let cwd = tempfile::tempdir().unwrap();
    let mut config = McpServerConfig::streamable_http(server.url.clone());
    config.startup_timeout = Some(Duration::from_secs(60));
    if let quest_mcp::McpServerTransportConfig::StreamableHttp { http_headers, .. } =
        &mut config.transport
    {
        http_headers.insert("X-Quest-Test".into(), "1".into());
    }
    let (sink, seen) = warnings();
    let (manager, failures) =
        McpConnectionManager::start(&servers(vec![("web", config)]), cwd.path(), sink).await;
    assert!(
        failures.is_empty(),
        "{failures:?} {:?}",
        seen.lock().unwrap()
    );
    assert!(
        manager
            .tools()
            .iter()
            .any(|t| t.qualified_name == "mcp__web__echo")
    );
    let out = manager
        .call_tool("web", "echo", json!({"message": "over http"}))
        .await
        .unwrap();
    assert_eq!(out.plain_text(), "Echo: over http");
    let listed = manager.list_resources(Some("web"), None).await.unwrap();
    assert!(!listed["resources"].as_array().unwrap().is_empty());
    manager.shutdown().await;
    server.child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_http_server_is_a_warning() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cwd = tempfile::tempdir().unwrap();
    let mut config = McpServerConfig::streamable_http(format!("http://127.0.0.1:{port}/mcp"));
    config.startup_timeout = Some(Duration::from_secs(30));
    let (sink, seen) = warnings();
    let (_manager, failures) =
        McpConnectionManager::start(&servers(vec![("down", config)]), cwd.path(), sink).await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].server(), "down");
    assert!(
        seen.lock().unwrap()[0].starts_with("MCP server `down` failed to start"),
        "{:?}",
        seen.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_variable_must_be_set() {
    let cwd = tempfile::tempdir().unwrap();
    let mut config = McpServerConfig::streamable_http("http://127.0.0.1:9/mcp");
    if let quest_mcp::McpServerTransportConfig::StreamableHttp {
        bearer_token_env_var,
        ..
    } = &mut config.transport
    {
        *bearer_token_env_var = Some("QUEST_TEST_UNSET_TOKEN_VARIABLE".into());
    }
    let (sink, _) = warnings();
    let (_manager, failures) =
        McpConnectionManager::start(&servers(vec![("auth", config)]), cwd.path(), sink).await;
    assert_eq!(
        failures[0].to_string(),
        "MCP server `auth`: bearer_token_env_var: environment variable QUEST_TEST_UNSET_TOKEN_VARIABLE is not set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_working_directory_is_named() {
    let cwd = tempfile::tempdir().unwrap();
    let mut config = McpServerConfig::stdio("node", Vec::new());
    if let quest_mcp::McpServerTransportConfig::Stdio { cwd: dir, .. } = &mut config.transport {
        *dir = Some("no/such/dir".into());
    }
    let (sink, _) = warnings();
    let (_manager, failures) =
        McpConnectionManager::start(&servers(vec![("lost", config)]), cwd.path(), sink).await;
    assert_eq!(
        failures[0].to_string(),
        format!(
            "MCP server `lost` could not be started (`node`): working directory {} does not exist",
            cwd.path().join("no/such/dir").display()
        )
    );
}
