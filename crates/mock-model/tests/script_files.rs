//! Script files (TOML and JSON), their errors, and the `quest-mock-model` binary.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use quest_mock_model::{
    Condition, End, HttpError, MockModel, Output, Rule, Script, ScriptError, Step, Usage,
};
use serde_json::{Value, json};

const TOML_SCRIPT: &str = r#"
check_pairing = true

[[steps]]
output = [
  { type = "reasoning", summary = ["plan"], encrypted_content = "gAAAA" },
  { type = "function_call", name = "exec_command", arguments = { cmd = "echo hi" }, call_id = "call_1" },
  { type = "custom_tool_call", input = "*** Begin Patch\n*** End Patch\n", call_id = "call_2" },
]
usage = { input_tokens = 100, cached_tokens = 20, output_tokens = 5 }

[[steps]]
http_error = { status = 429, body = { error = { type = "usage_limit_reached", plan_type = "pro", resets_at = 1795518360 } } }

[[steps]]
headers = { "retry-after" = "1" }
http_error = { status = 503, raw_body = "busy", content_type = "text/plain" }

[[steps]]
output = [{ type = "message", text = "partial", deltas = 2 }]
cut_after = 3

[[steps]]
end = { kind = "failed", code = "server_error", message = "boom" }

[[rules]]
name = "reply to tool output"
when = { last_item_type = "function_call_output" }
then = { output = [{ type = "message", text = "tool said {last_output}" }] }

[default]
output = [{ type = "message", text = "bye" }]
"#;

fn expected_script() -> Script {
    Script::new([
        Step::calls([
            Output::reasoning("plan").encrypted("gAAAA"),
            Output::function_call("exec_command", json!({"cmd": "echo hi"})).call_id("call_1"),
            Output::apply_patch("*** Begin Patch\n*** End Patch\n").call_id("call_2"),
        ])
        .with_usage(Usage::new(100, 20, 5, 0)),
        Step::http_error(
            429,
            json!({"error": {"type": "usage_limit_reached", "plan_type": "pro", "resets_at": 1_795_518_360}}),
        ),
        Step {
            http_error: Some(HttpError {
                status: 503,
                body: None,
                raw_body: Some("busy".into()),
                content_type: Some("text/plain".into()),
                retry_after_date_offset_s: None,
            }),
            ..Step::default()
        }
        .retry_after_secs(1),
        Step::message("partial").with_deltas(2).cut_after(3),
        Step::default().with_end(End::Failed {
            code: Some("server_error".into()),
            error_type: None,
            message: Some("boom".into()),
        }),
    ])
    .with_rule(
        Rule::new(Condition::last_item_type("function_call_output"), Step::message("tool said {last_output}"))
            .named("reply to tool output"),
    )
    .with_default(Step::message("bye"))
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

#[test]
fn toml_and_json_scripts_load_into_the_same_script_as_the_builders() {
    let dir = tempfile::tempdir().unwrap();
    let from_toml = Script::from_path(&write(dir.path(), "s.toml", TOML_SCRIPT)).unwrap();
    assert_eq!(from_toml, expected_script());
    let json_text = serde_json::to_string_pretty(&expected_script()).unwrap();
    let from_json = Script::from_path(&write(dir.path(), "s.json", &json_text)).unwrap();
    assert_eq!(from_json, expected_script());
    // Unknown extension: sniffed from the first character.
    assert_eq!(
        Script::from_path(&write(dir.path(), "s.script", &json_text)).unwrap(),
        expected_script()
    );
    assert_eq!(
        Script::from_path(&write(dir.path(), "t.script", TOML_SCRIPT)).unwrap(),
        expected_script()
    );
}

#[test]
fn malformed_scripts_say_what_is_wrong_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let error = |name: &str, text: &str| {
        Script::from_path(&write(dir.path(), name, text))
            .unwrap_err()
            .to_string()
    };

    let e = error(
        "bad.toml",
        "[[steps]]\noutput = [{ type = \"message\", txt = \"hi\" }]\n",
    );
    assert!(e.contains("bad.toml: invalid TOML script"), "{e}");
    assert!(e.contains("line 2"), "{e}");

    let e = error(
        "bad.json",
        "{\n  \"steps\": [\n    {\"outptu\": []}\n  ]\n}",
    );
    assert!(
        e.contains("bad.json: invalid JSON script: unknown field `outptu`"),
        "{e}"
    );
    assert!(e.contains("line 3"), "{e}");

    let e = error("syntax.json", "{\"steps\": [}");
    assert!(e.contains("line 1 column 12"), "{e}");

    let e = error(
        "combo.toml",
        "[[steps]]\n[[steps]]\nhttp_error = { status = 500 }\noutput = [{ type = \"message\", text = \"x\" }]\n",
    );
    assert!(
        e.ends_with(
            "combo.toml: steps[1]: `http_error` cannot be combined with `output` or `events`"
        ),
        "{e}"
    );

    let e = error(
        "rule.toml",
        "[[rules]]\nthen = { stall_after = 1, cut_after = 2 }\n",
    );
    assert!(
        e.ends_with("rules[0].then: `cut_after` and `stall_after` are exclusive"),
        "{e}"
    );

    let e = error(
        "hdr.toml",
        "[default]\nheaders = { \"bad header\" = \"x\" }\n",
    );
    assert!(
        e.ends_with("default: header name \"bad header\" is not valid"),
        "{e}"
    );

    let missing = Script::from_path(&dir.path().join("missing.toml")).unwrap_err();
    assert!(matches!(missing, ScriptError::Read { .. }));
    assert!(
        missing.to_string().starts_with("cannot read script "),
        "{missing}"
    );
}

#[tokio::test]
async fn a_loaded_script_plays_its_rules_with_templates() {
    let script = Script::parse_toml(TOML_SCRIPT, "inline").unwrap();
    let mock = MockModel::start(Script {
        steps: Vec::new(),
        ..script
    })
    .await;
    let input = json!([
        {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "hi"},
    ]);
    let (_, _, text) = common::post_text(&mock.responses_url(), &common::body(input)).await;
    assert!(text.contains("\"text\":\"tool said hi\""), "{text}");
    assert_eq!(mock.single_request().answered_by, "reply to tool output");
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_serves_a_script_file_writes_the_port_file_and_logs_requests() {
    let dir = tempfile::tempdir().unwrap();
    let script = write(dir.path(), "script.toml", TOML_SCRIPT);
    let port_file = dir.path().join("port");
    let log = dir.path().join("requests.jsonl");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_quest-mock-model"))
            .arg("--script")
            .arg(&script)
            .arg("--port-file")
            .arg(&port_file)
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The first stdout line is printed once the server listens.
    let stdout = child.0.stdout.take().unwrap();
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let base_url = tokio::time::timeout(Duration::from_secs(30), first_line)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let base_url = base_url.trim();
    let port: u16 = std::fs::read_to_string(&port_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(base_url, format!("http://127.0.0.1:{port}/v1"));

    let input = json!([{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]}]);
    let (status, _, text) = common::post_text(
        &format!("{base_url}/responses"),
        &common::body(input.clone()),
    )
    .await;
    assert_eq!(status, 200);
    assert!(text.contains("\"call_id\":\"call_1\""));
    let (status, _, text) =
        common::post_text(&format!("{base_url}/responses"), &common::body(input)).await;
    assert_eq!(status, 429);
    assert!(text.contains("usage_limit_reached"));

    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["path"], "/v1/responses");
    assert_eq!(lines[0]["method"], "POST");
    assert_eq!(lines[0]["headers"]["authorization"], "Bearer sk-test");
    assert_eq!(lines[0]["body"]["input"][0]["content"][0]["text"], "go");
    assert_eq!(lines[0]["answered_by"], "steps[0]");
    assert_eq!(lines[1]["index"], 1);
    assert!(lines[1]["received_at_unix_ms"].is_u64());
}

#[test]
fn binary_rejects_a_malformed_script_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let script = write(
        dir.path(),
        "broken.toml",
        "[[steps]]\ncut_after = \"three\"\n",
    );
    let output = Command::new(env!("CARGO_BIN_EXE_quest-mock-model"))
        .arg("--script")
        .arg(&script)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("broken.toml: invalid TOML script"),
        "{stderr}"
    );
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(output.stdout.is_empty());
}
