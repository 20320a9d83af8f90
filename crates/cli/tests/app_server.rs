//! `quest app-server` as a process: stdio framing (stdout carries protocol messages only),
//! malformed input answered without the server going down, flag validation, clean exit on EOF.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{TestEnv, provider_args};
use quest_mock_model::{MockModel, Script, Step};
use serde_json::{Value, json};

fn app_server(env: &TestEnv, mock: &MockModel) -> Command {
    let mut cmd = env.quest_bare();
    cmd.arg("app-server")
        .args(provider_args(&mock.uri()))
        .arg("-C")
        .arg(env.work())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn stdio_answers_malformed_lines_and_keeps_serving() {
    let env = TestEnv::new();
    let mock = MockModel::start_blocking(Script::new([Step::message("Hello over stdio")]));
    let mut child = app_server(&env, &mock).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let lines = [
        json!({"id": 1, "method": "thread/list", "params": {}}).to_string(),
        json!({"id": 2, "method": "initialize", "params": {"clientInfo": {"name": "t", "version": "1"}}}).to_string(),
        "{not json".to_string(),
        String::new(),
        "[]".to_string(),
        json!({"id": 3, "method": "bogus"}).to_string(),
        json!({"id": 4, "method": "thread/goal/set", "params": {"threadId": []}}).to_string(),
        json!({"id": 5, "method": "thread/start", "params": {}}).to_string(),
    ];
    for line in &lines {
        writeln!(stdin, "{line}").unwrap();
    }
    stdin.flush().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut out = Vec::new();
    let mut thread = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout carried a non-protocol line {line:?}: {e}"));
        if value["id"] == 5 {
            let id = value["result"]["thread"]["id"]
                .as_str()
                .unwrap()
                .to_string();
            writeln!(
                stdin,
                "{}",
                json!({"id": 6, "method": "turn/start", "params": {"threadId": id, "input": [{"type": "text", "text": "hi"}]}})
            )
            .unwrap();
            stdin.flush().unwrap();
            thread = Some(id);
        }
        let done = value["method"] == "turn/completed";
        out.push(value);
        if done {
            break;
        }
    }
    drop(stdin);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "exit {status:?}; stderr:\n{stderr}");
    let dump = out
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let errors: Vec<(Value, i64)> = out
        .iter()
        .filter(|m| m.get("error").is_some())
        .map(|m| (m["id"].clone(), m["error"]["code"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        errors,
        vec![
            (json!(1), -32600),
            (Value::Null, -32700),
            (Value::Null, -32600),
            (json!(3), -32601),
            (json!(4), -32602),
        ],
        "{dump}"
    );
    let completed = out.last().unwrap();
    assert_eq!(completed["params"]["threadId"], thread.unwrap().as_str());
    assert_eq!(
        completed["params"]["turn"]["items"][0]["text"], "Hello over stdio",
        "{dump}"
    );
    assert_eq!(mock.request_count(), 1);
}

#[test]
fn non_loopback_websocket_needs_a_token_file() {
    let env = TestEnv::new();
    let mock = MockModel::start_blocking(Script::default());
    let output = app_server(&env, &mock)
        .args(["--listen", "ws://0.0.0.0:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--ws-token-file"), "{stderr}");
    let output = app_server(&env, &mock)
        .args(["--listen", "tcp://nowhere"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("stdio:// or ws://IP:PORT"));
}
