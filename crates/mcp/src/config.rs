//! `[mcp_servers.<name>]` tables of `config.toml`, with Codex's keys.
//!
//! ```toml
//! [mcp_servers.docs]                # a stdio server: a child process speaking JSON-RPC on stdin/stdout
//! command = "npx"
//! args = ["-y", "@modelcontextprotocol/server-everything"]
//! env = { LOG_LEVEL = "warn" }      # set for the child (on top of a minimal inherited environment)
//! env_vars = ["GITHUB_TOKEN"]       # inherited from Quest's environment when set
//! cwd = "/srv/docs"
//! startup_timeout_sec = 20          # default 10
//! tool_timeout_sec = 120            # default 60
//! enabled_tools = ["echo"]          # only these tools are offered to the model
//! disabled_tools = ["get-env"]      # never these
//!
//! [mcp_servers.tracker]             # a streamable-HTTP server
//! url = "https://mcp.example.com/mcp"
//! bearer_token_env_var = "TRACKER_TOKEN"
//! http_headers = { "X-Team" = "infra" }
//! env_http_headers = { "X-Api-Key" = "TRACKER_API_KEY" }   # header value read from the environment
//! enabled = false
//! ```
//!
//! Raw tables are checked once, when the configuration is read: a table with both `command` and
//! `url`, with neither, with stdio keys on an HTTP server (or the reverse), a non-positive
//! timeout or a server name outside `[A-Za-z0-9_-]` is an error naming the server and the key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Startup timeout when `startup_timeout_sec` is not set (Codex's default).
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Tool-call timeout when `tool_timeout_sec` is not set (Codex's default).
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Every configured server by name (the keys of `[mcp_servers]`), names validated.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<String, McpServerConfig>")]
#[serde(into = "BTreeMap<String, McpServerConfig>")]
pub struct McpServers(BTreeMap<String, McpServerConfig>);

impl McpServers {
    /// Builds the set, checking every name with [`validate_server_name`].
    ///
    /// # Errors
    /// The first invalid name.
    pub fn new(servers: BTreeMap<String, McpServerConfig>) -> Result<Self, String> {
        for name in servers.keys() {
            validate_server_name(name)?;
        }
        Ok(McpServers(servers))
    }

    /// The servers by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &McpServerConfig)> {
        self.0.iter()
    }

    /// One server.
    pub fn get(&self, name: &str) -> Option<&McpServerConfig> {
        self.0.get(name)
    }

    /// True when no server is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of configured servers (enabled or not).
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl TryFrom<BTreeMap<String, McpServerConfig>> for McpServers {
    type Error = String;

    fn try_from(servers: BTreeMap<String, McpServerConfig>) -> Result<Self, String> {
        McpServers::new(servers)
    }
}

impl From<McpServers> for BTreeMap<String, McpServerConfig> {
    fn from(servers: McpServers) -> Self {
        servers.0
    }
}

/// Checks a server name: 1 to 64 characters of `[A-Za-z0-9_-]`, as Codex requires (the name
/// becomes part of the tool names the model sees).
///
/// # Errors
/// A message naming the server and what is wrong.
pub fn validate_server_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("mcp_servers: a server name must not be empty".to_string());
    }
    if name.len() > 64 {
        return Err(format!(
            "mcp_servers.{name}: a server name must be at most 64 characters"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "mcp_servers.\"{name}\": invalid character {bad:?} in server name (allowed: letters, digits, '_' and '-')"
        ));
    }
    Ok(())
}

/// One `[mcp_servers.<name>]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawMcpServerConfig", into = "RawMcpServerConfig")]
pub struct McpServerConfig {
    /// How to reach the server.
    pub transport: McpServerTransportConfig,
    /// `enabled` (default true): a disabled server is never started.
    pub enabled: bool,
    /// `startup_timeout_sec`: how long the handshake and first tool listing may take.
    pub startup_timeout: Option<Duration>,
    /// `tool_timeout_sec`: how long one tool call may take.
    pub tool_timeout: Option<Duration>,
    /// `enabled_tools`: when set, only these tools are offered to the model.
    pub enabled_tools: Option<Vec<String>>,
    /// `disabled_tools`: tools never offered (applied after `enabled_tools`).
    pub disabled_tools: Vec<String>,
}

impl McpServerConfig {
    /// The startup timeout in force.
    pub fn startup_timeout(&self) -> Duration {
        self.startup_timeout.unwrap_or(DEFAULT_STARTUP_TIMEOUT)
    }

    /// The tool-call timeout in force.
    pub fn tool_timeout(&self) -> Duration {
        self.tool_timeout.unwrap_or(DEFAULT_TOOL_TIMEOUT)
    }

    /// Whether a tool with this (server-side) name is offered to the model.
    pub fn tool_allowed(&self, tool: &str) -> bool {
        let enabled = self
            .enabled_tools
            .as_ref()
            .is_none_or(|list| list.iter().any(|t| t == tool));
        enabled && !self.disabled_tools.iter().any(|t| t == tool)
    }

    /// A stdio server with defaults for everything else.
    pub fn stdio(command: impl Into<String>, args: Vec<String>) -> Self {
        McpServerConfig {
            transport: McpServerTransportConfig::Stdio {
                command: command.into(),
                args,
                env: BTreeMap::new(),
                env_vars: Vec::new(),
                cwd: None,
            },
            enabled: true,
            startup_timeout: None,
            tool_timeout: None,
            enabled_tools: None,
            disabled_tools: Vec::new(),
        }
    }

    /// A streamable-HTTP server with defaults for everything else.
    pub fn streamable_http(url: impl Into<String>) -> Self {
        McpServerConfig {
            transport: McpServerTransportConfig::StreamableHttp {
                url: url.into(),
                bearer_token_env_var: None,
                http_headers: BTreeMap::new(),
                env_http_headers: BTreeMap::new(),
            },
            ..McpServerConfig::stdio("", Vec::new())
        }
    }
}

/// How a server is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum McpServerTransportConfig {
    /// A child process speaking newline-delimited JSON-RPC on stdin/stdout.
    Stdio {
        /// `command`: program to run (looked up in `PATH`).
        command: String,
        /// `args`.
        args: Vec<String>,
        /// `env`: variables set for the child.
        env: BTreeMap<String, String>,
        /// `env_vars`: variables copied from Quest's environment when set.
        env_vars: Vec<String>,
        /// `cwd`: working directory (default: the thread's).
        cwd: Option<PathBuf>,
    },
    /// A streamable-HTTP endpoint.
    StreamableHttp {
        /// `url`.
        url: String,
        /// `bearer_token_env_var`: environment variable holding a bearer token.
        bearer_token_env_var: Option<String>,
        /// `http_headers`: headers sent on every request.
        http_headers: BTreeMap<String, String>,
        /// `env_http_headers`: header name → environment variable holding its value.
        env_http_headers: BTreeMap<String, String>,
    },
}

impl McpServerTransportConfig {
    /// `stdio` or `streamable_http`, as shown by `quest mcp list`.
    pub fn kind(&self) -> &'static str {
        match self {
            McpServerTransportConfig::Stdio { .. } => "stdio",
            McpServerTransportConfig::StreamableHttp { .. } => "streamable_http",
        }
    }
}

/// The table as written; checked into [`McpServerConfig`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RawMcpServerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    env: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    env_vars: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cwd: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bearer_token_env_var: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http_headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    env_http_headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    startup_timeout_sec: Option<f64>,
    /// Older Codex spelling, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    startup_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tool_timeout_sec: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enabled_tools: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disabled_tools: Option<Vec<String>>,
}

fn seconds(key: &str, value: Option<f64>) -> Result<Option<Duration>, String> {
    match value {
        None => Ok(None),
        Some(secs) if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 * 365.0 => {
            Ok(Some(Duration::from_secs_f64(secs)))
        }
        Some(secs) => Err(format!(
            "`{key}` must be a positive number of seconds, not {secs}"
        )),
    }
}

impl TryFrom<RawMcpServerConfig> for McpServerConfig {
    type Error = String;

    fn try_from(raw: RawMcpServerConfig) -> Result<Self, String> {
        let stdio_keys = [
            ("args", raw.args.is_some()),
            ("env", raw.env.is_some()),
            ("env_vars", raw.env_vars.is_some()),
            ("cwd", raw.cwd.is_some()),
        ];
        let http_keys = [
            ("bearer_token_env_var", raw.bearer_token_env_var.is_some()),
            ("http_headers", raw.http_headers.is_some()),
            ("env_http_headers", raw.env_http_headers.is_some()),
        ];
        let misplaced = |keys: &[(&str, bool)], kind: &str| -> Result<(), String> {
            match keys.iter().find(|(_, set)| *set) {
                Some((key, _)) => Err(format!("`{key}` is not supported by a {kind} server")),
                None => Ok(()),
            }
        };
        let transport = match (raw.command, raw.url) {
            (Some(_), Some(_)) => {
                return Err(
                    "set either `command` (a stdio server) or `url` (a streamable-HTTP server), not both"
                        .to_string(),
                );
            }
            (None, None) => {
                return Err(
                    "missing `command` (a stdio server) or `url` (a streamable-HTTP server)"
                        .to_string(),
                );
            }
            (Some(command), None) => {
                misplaced(&http_keys, "stdio")?;
                if command.trim().is_empty() {
                    return Err("`command` must not be empty".to_string());
                }
                McpServerTransportConfig::Stdio {
                    command,
                    args: raw.args.unwrap_or_default(),
                    env: raw.env.unwrap_or_default(),
                    env_vars: raw.env_vars.unwrap_or_default(),
                    cwd: raw.cwd,
                }
            }
            (None, Some(url)) => {
                misplaced(&stdio_keys, "streamable-HTTP")?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!(
                        "`url` must be an http:// or https:// URL, not {url:?}"
                    ));
                }
                let headers = raw.http_headers.unwrap_or_default();
                for (name, value) in &headers {
                    http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| format!("`http_headers`: invalid header name {name:?}"))?;
                    http::HeaderValue::from_str(value).map_err(|_| {
                        format!("`http_headers`: invalid value for header {name:?}")
                    })?;
                }
                let env_headers = raw.env_http_headers.unwrap_or_default();
                for name in env_headers.keys() {
                    http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| format!("`env_http_headers`: invalid header name {name:?}"))?;
                }
                McpServerTransportConfig::StreamableHttp {
                    url,
                    bearer_token_env_var: raw.bearer_token_env_var,
                    http_headers: headers,
                    env_http_headers: env_headers,
                }
            }
        };
        let startup_timeout = match (raw.startup_timeout_sec, raw.startup_timeout_ms) {
            (Some(_), _) => seconds("startup_timeout_sec", raw.startup_timeout_sec)?,
            (None, Some(0)) => return Err("`startup_timeout_ms` must be positive".to_string()),
            (None, Some(ms)) => Some(Duration::from_millis(ms)),
            (None, None) => None,
        };
        Ok(McpServerConfig {
            transport,
            enabled: raw.enabled.unwrap_or(true),
            startup_timeout,
            tool_timeout: seconds("tool_timeout_sec", raw.tool_timeout_sec)?,
            enabled_tools: raw.enabled_tools,
            disabled_tools: raw.disabled_tools.unwrap_or_default(),
        })
    }
}

impl From<McpServerConfig> for RawMcpServerConfig {
    fn from(config: McpServerConfig) -> Self {
        let mut raw = RawMcpServerConfig {
            enabled: (!config.enabled).then_some(false),
            startup_timeout_sec: config.startup_timeout.map(|d| d.as_secs_f64()),
            tool_timeout_sec: config.tool_timeout.map(|d| d.as_secs_f64()),
            enabled_tools: config.enabled_tools,
            disabled_tools: (!config.disabled_tools.is_empty()).then_some(config.disabled_tools),
            ..RawMcpServerConfig::default()
        };
        match config.transport {
            McpServerTransportConfig::Stdio {
                command,
                args,
                env,
                env_vars,
                cwd,
            } => {
                raw.command = Some(command);
                raw.args = (!args.is_empty()).then_some(args);
                raw.env = (!env.is_empty()).then_some(env);
                raw.env_vars = (!env_vars.is_empty()).then_some(env_vars);
                raw.cwd = cwd;
            }
            McpServerTransportConfig::StreamableHttp {
                url,
                bearer_token_env_var,
                http_headers,
                env_http_headers,
            } => {
                raw.url = Some(url);
                raw.bearer_token_env_var = bearer_token_env_var;
                raw.http_headers = (!http_headers.is_empty()).then_some(http_headers);
                raw.env_http_headers = (!env_http_headers.is_empty()).then_some(env_http_headers);
            }
        }
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<McpServers, String> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            mcp_servers: McpServers,
        }
        toml::from_str::<File>(text)
            .map(|f| f.mcp_servers)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn codex_stdio_and_http_tables_parse() {
        let servers = parse(
            r#"
            [mcp_servers.docs]
            command = "npx"
            args = ["-y", "pkg"]
            env = { A = "1" }
            env_vars = ["TOKEN"]
            cwd = "/srv"
            startup_timeout_sec = 20
            tool_timeout_sec = 2.5
            enabled_tools = ["echo"]
            disabled_tools = ["get-env"]

            [mcp_servers.tracker]
            url = "https://mcp.example.com/mcp"
            bearer_token_env_var = "TRACKER_TOKEN"
            http_headers = { "X-Team" = "infra" }
            env_http_headers = { "X-Key" = "KEY_VAR" }
            enabled = false
            startup_timeout_ms = 1500
            "#,
        )
        .unwrap();
        let docs = servers.get("docs").unwrap();
        assert_eq!(docs.startup_timeout(), Duration::from_secs(20));
        assert_eq!(docs.tool_timeout(), Duration::from_millis(2500));
        assert!(docs.enabled);
        assert!(docs.tool_allowed("echo"));
        assert!(!docs.tool_allowed("get-sum"), "not in enabled_tools");
        assert!(matches!(
            &docs.transport,
            McpServerTransportConfig::Stdio { command, args, env, env_vars, cwd }
                if command == "npx" && args == &["-y", "pkg"] && env["A"] == "1"
                    && env_vars == &["TOKEN"] && cwd.as_deref() == Some(std::path::Path::new("/srv"))
        ));
        let tracker = servers.get("tracker").unwrap();
        assert!(!tracker.enabled);
        assert_eq!(tracker.startup_timeout(), Duration::from_millis(1500));
        assert_eq!(tracker.tool_timeout(), DEFAULT_TOOL_TIMEOUT);
        assert_eq!(tracker.transport.kind(), "streamable_http");
    }

    #[test]
    fn disabled_tools_win_over_enabled_tools() {
        let mut config = McpServerConfig::stdio("x", Vec::new());
        config.enabled_tools = Some(vec!["a".into(), "b".into()]);
        config.disabled_tools = vec!["b".into()];
        assert!(config.tool_allowed("a"));
        assert!(!config.tool_allowed("b"));
        assert!(!config.tool_allowed("c"));
    }

    #[test]
    fn bad_tables_are_errors_naming_the_key() {
        let cases = [
            ("command = \"a\"\nurl = \"http://x\"", "not both"),
            ("args = [\"a\"]", "missing `command`"),
            (
                "command = \"a\"\nbearer_token_env_var = \"T\"",
                "`bearer_token_env_var`",
            ),
            ("url = \"http://x\"\ncwd = \"/\"", "`cwd` is not supported"),
            ("url = \"ftp://x\"", "http:// or https://"),
            (
                "command = \"a\"\nstartup_timeout_sec = 0",
                "`startup_timeout_sec`",
            ),
            (
                "command = \"a\"\ntool_timeout_sec = -1",
                "`tool_timeout_sec`",
            ),
            (
                "command = \"a\"\ntool_timeout_sec = nan",
                "`tool_timeout_sec`",
            ),
            ("command = \"  \"", "must not be empty"),
            (
                "url = \"http://x\"\nhttp_headers = { \"a b\" = \"1\" }",
                "invalid header name",
            ),
        ];
        for (body, expected) in cases {
            let err = parse(&format!("[mcp_servers.s]\n{body}")).unwrap_err();
            assert!(err.contains(expected), "{body}: {err}");
            assert!(
                err.contains("mcp_servers"),
                "{body}: error names the table: {err}"
            );
        }
    }

    #[test]
    fn server_names_are_checked() {
        assert!(validate_server_name("git-hub_2").is_ok());
        for bad in ["", "a.b", "a b", "ü", &"x".repeat(65)] {
            assert!(validate_server_name(bad).is_err(), "{bad:?}");
        }
        let err = parse("[mcp_servers.\"a.b\"]\ncommand = \"x\"").unwrap_err();
        assert!(err.contains("invalid character '.'"), "{err}");
    }

    #[test]
    fn config_round_trips_through_its_raw_form() {
        let servers = parse(
            "[mcp_servers.a]\ncommand = \"x\"\nargs = [\"1\"]\ntool_timeout_sec = 3\n[mcp_servers.b]\nurl = \"http://h/mcp\"\nenabled = false\n",
        )
        .unwrap();
        let text = toml::to_string(&BTreeMap::from([("mcp_servers", servers.clone())])).unwrap();
        assert_eq!(parse(&text).unwrap(), servers, "{text}");
    }
}
