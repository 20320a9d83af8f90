//! `quest mcp list|get|add|remove` against a real `$QUEST_HOME/config.toml`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use common::{TestEnv, run};
use serde_json::{Value, json};

fn config(env: &TestEnv) -> String {
    std::fs::read_to_string(env.home().join("config.toml")).unwrap()
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn add_list_get_remove_keep_the_rest_of_the_file() {
    let env = TestEnv::new();
    let original = "# my settings\nmodel = \"gpt-test\" # the model\n\n[goals]\n# keep going\nmax_no_progress_turns = 4\n";
    std::fs::write(env.home().join("config.toml"), original).unwrap();

    let out = run(
        env.quest_bare().args([
            "mcp",
            "add",
            "docs",
            "--env",
            "LOG=warn",
            "--startup-timeout-sec",
            "20",
            "--",
            "npx",
            "-y",
            "@modelcontextprotocol/server-everything",
        ]),
        0,
    );
    assert!(
        stdout(&out).starts_with("Added MCP server `docs`"),
        "{}",
        stdout(&out)
    );
    run(
        env.quest_bare().args([
            "mcp",
            "add",
            "tracker",
            "--url",
            "https://mcp.example.com/mcp",
            "--bearer-token-env-var",
            "TRACKER_TOKEN",
            "--header",
            "X-Team=infra",
        ]),
        0,
    );
    let text = config(&env);
    assert!(
        text.starts_with(original),
        "comments and keys kept:\n{text}"
    );
    assert!(text.contains("[mcp_servers.docs]\ncommand = \"npx\"\nargs = [\"-y\", \"@modelcontextprotocol/server-everything\"]\nenv = { LOG = \"warn\" }\nstartup_timeout_sec = 20\n"), "{text}");
    assert!(
        !text.contains("[mcp_servers]\n"),
        "no empty parent table header:\n{text}"
    );

    let listed: Value = serde_json::from_str(&stdout(&run(
        env.quest_bare().args(["mcp", "list", "--json"]),
        0,
    )))
    .unwrap();
    assert_eq!(
        listed,
        json!([
            {"name": "docs", "enabled": true,
             "transport": {"type": "stdio", "command": "npx", "args": ["-y", "@modelcontextprotocol/server-everything"],
                           "env": {"LOG": "warn"}, "env_vars": [], "cwd": null},
             "startup_timeout_sec": 20.0, "tool_timeout_sec": 60.0, "enabled_tools": null, "disabled_tools": []},
            {"name": "tracker", "enabled": true,
             "transport": {"type": "streamable_http", "url": "https://mcp.example.com/mcp",
                           "bearer_token_env_var": "TRACKER_TOKEN", "http_headers": {"X-Team": "infra"},
                           "env_http_headers": {}},
             "startup_timeout_sec": 10.0, "tool_timeout_sec": 60.0, "enabled_tools": null, "disabled_tools": []}
        ])
    );
    let table = stdout(&run(env.quest_bare().args(["mcp", "list"]), 0));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME "), "{table}");
    assert!(lines[1].starts_with("docs     stdio "), "{table}");
    assert!(
        lines[1].contains("npx -y @modelcontextprotocol/server-everything"),
        "{table}"
    );
    assert!(
        lines[1].ends_with("LOG=*****"),
        "env values are masked: {table}"
    );
    assert!(
        lines[2].contains("bearer token from $TRACKER_TOKEN"),
        "{table}"
    );

    let one: Value = serde_json::from_str(&stdout(&run(
        env.quest_bare().args(["mcp", "get", "tracker", "--json"]),
        0,
    )))
    .unwrap();
    assert_eq!(one["transport"]["url"], "https://mcp.example.com/mcp");

    // Replacing keeps one table; removing restores the original text exactly.
    let out = run(
        env.quest_bare()
            .args(["mcp", "add", "docs", "--", "node", "server.js"]),
        0,
    );
    assert!(stdout(&out).starts_with("Updated MCP server `docs`"));
    assert_eq!(config(&env).matches("[mcp_servers.docs]").count(), 1);
    run(env.quest_bare().args(["mcp", "remove", "docs"]), 0);
    run(env.quest_bare().args(["mcp", "remove", "tracker"]), 0);
    let text = config(&env);
    assert!(
        text.starts_with(original) && !text.contains("docs") && !text.contains("tracker"),
        "{text}"
    );
    let empty = stdout(&run(env.quest_bare().args(["mcp", "list"]), 0));
    assert!(empty.starts_with("No MCP servers configured."), "{empty}");
}

#[test]
fn bad_requests_fail_without_touching_the_file() {
    let env = TestEnv::new();
    let original = "# only a comment\n[mcp_servers.keep]\ncommand = \"x\"\n";
    std::fs::write(env.home().join("config.toml"), original).unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["mcp", "add", "bad.name", "--", "x"],
            "invalid character '.' in server name",
        ),
        (
            &["mcp", "add", "nothing"],
            "give the server's command after `--`",
        ),
        (
            &["mcp", "add", "s", "--url", "ftp://x"],
            "`url` must be an http:// or https:// URL",
        ),
        (
            &["mcp", "add", "s", "--env", "NOEQUALS", "--", "x"],
            "--env expects KEY=VALUE",
        ),
        (
            &["mcp", "remove", "missing"],
            "no MCP server named `missing`",
        ),
        (
            &["mcp", "add", "s", "--tool-timeout-sec", "0", "--", "x"],
            "`tool_timeout_sec` must be a positive number",
        ),
    ];
    for (args, expected) in cases {
        let out = run(env.quest_bare().args(args), 1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(config(&env), original, "{args:?} changed the file");
    }
    let out = run(env.quest_bare().args(["mcp", "get", "missing"]), 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no MCP server named `missing`"));
}

#[test]
fn add_creates_the_config_file() {
    let env = TestEnv::new();
    run(
        env.quest_bare()
            .args(["mcp", "add", "local", "--", "my-server"]),
        0,
    );
    assert_eq!(
        config(&env),
        "[mcp_servers.local]\ncommand = \"my-server\"\n"
    );
}
