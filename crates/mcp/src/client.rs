//! One live connection to one server: spawning (stdio) or dialling (streamable HTTP), the
//! handshake, and the child process's lifetime.
//!
//! A stdio server runs in its own process group with a minimal environment. The group is killed
//! when the connection is dropped, and on Linux the child also gets `SIGKILL` if Quest dies
//! without cleaning up (parent-death signal), so servers never outlive Quest.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, InitializeRequestParams};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::watch;

use crate::config::{McpServerConfig, McpServerTransportConfig};
use crate::error::McpError;

/// Variables a stdio server inherits from Quest's environment (Codex's list); everything else
/// must be named in `env_vars` or set in `env`.
pub const DEFAULT_ENV_VARS: &[&str] = &[
    "HOME", "LOGNAME", "PATH", "SHELL", "USER", "LANG", "LC_ALL", "TERM", "TMPDIR", "TZ",
];

/// Lines of a stdio server's stderr kept for error messages.
const STDERR_TAIL_LINES: usize = 20;
/// How long a stdio server gets to exit after its stdin closes, and again after `SIGTERM`.
const EXIT_GRACE: Duration = Duration::from_secs(2);

pub(crate) type Service = RunningService<RoleClient, ClientConfig>;

/// The last lines a stdio server wrote to stderr.
pub(crate) type StderrTail = Arc<Mutex<VecDeque<String>>>;

/// The kept stderr lines as one text.
pub(crate) fn tail_text(tail: &StderrTail) -> String {
    tail.lock()
        .map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

/// A connected server.
pub(crate) struct Connection {
    pub(crate) service: Service,
    /// The stdio child, until shutdown takes it.
    child: Mutex<Option<ChildProcess>>,
    /// Flips to true when the stdio child exits.
    exited: Option<watch::Receiver<bool>>,
    /// The stdio child's process id.
    pub(crate) pid: Option<u32>,
}

impl Connection {
    fn new(service: Service, child: Option<ChildProcess>) -> Self {
        Connection {
            service,
            exited: child.as_ref().map(|c| c.exited.clone()),
            pid: child.as_ref().and_then(|c| c.pid),
            child: Mutex::new(child),
        }
    }

    /// True once the transport closed or the child exited.
    pub(crate) fn is_closed(&self) -> bool {
        self.service.is_closed() || self.exited.as_ref().is_some_and(|e| *e.borrow())
    }

    /// The server's `initialize` result as JSON (capabilities, serverInfo, instructions).
    pub(crate) fn server_info(&self) -> serde_json::Value {
        self.service
            .peer_info()
            .and_then(|info| serde_json::to_value(&*info).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    /// The last lines a stdio server wrote to stderr.
    pub(crate) fn stderr_tail(&self) -> String {
        self.child
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(ChildProcess::stderr_tail))
            .unwrap_or_default()
    }

    /// Ends the session and stops the child: stdin closed, then `SIGTERM`, then `SIGKILL`.
    pub(crate) async fn shutdown(&self) {
        self.service.cancellation_token().cancel();
        let child = self.child.lock().ok().and_then(|mut c| c.take());
        if let Some(child) = child {
            child.stop().await;
        }
    }
}

/// A stdio server's process group.
pub(crate) struct ChildProcess {
    pgid: Option<Pid>,
    exited: watch::Receiver<bool>,
    pid: Option<u32>,
    stderr_tail: StderrTail,
}

impl ChildProcess {
    async fn wait_exit(&mut self, limit: Duration) -> bool {
        let mut exited = self.exited.clone();
        tokio::time::timeout(limit, exited.wait_for(|e| *e))
            .await
            .is_ok()
    }

    async fn stop(mut self) {
        if !self.wait_exit(EXIT_GRACE).await {
            if let Some(pgid) = self.pgid {
                let _ = killpg(pgid, Signal::SIGTERM);
            }
            self.wait_exit(EXIT_GRACE).await;
        }
        // Drop kills whatever is left of the group.
    }

    /// The last lines the server wrote to stderr, for error messages.
    fn stderr_tail(&self) -> String {
        tail_text(&self.stderr_tail)
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            // ESRCH (already gone) is fine.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

fn client_info() -> ClientConfig {
    InitializeRequestParams::new(
        ClientCapabilities::default(),
        Implementation::new("quest", env!("CARGO_PKG_VERSION")),
    )
}

/// Connects to `server` and completes the handshake (no timeout here; the caller bounds it).
/// On error nothing is left running.
pub(crate) async fn connect(
    server: &str,
    config: &McpServerConfig,
    cwd: &Path,
    stderr_slot: &Mutex<Option<StderrTail>>,
) -> Result<Connection, McpError> {
    match &config.transport {
        McpServerTransportConfig::Stdio {
            command,
            args,
            env,
            env_vars,
            cwd: server_cwd,
        } => {
            let dir = match server_cwd {
                Some(dir) => cwd.join(dir),
                None => cwd.to_path_buf(),
            };
            let mut cmd = Command::new(command);
            cmd.args(args)
                .current_dir(&dir)
                .env_clear()
                .envs(
                    DEFAULT_ENV_VARS
                        .iter()
                        .copied()
                        .chain(env_vars.iter().map(String::as_str))
                        .filter_map(|name| std::env::var_os(name).map(|value| (name, value))),
                )
                .envs(env)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(true);
            set_parent_death_signal(&mut cmd);
            let mut child = cmd.spawn().map_err(|source| McpError::Spawn {
                server: server.to_string(),
                command: command.clone(),
                message: match source.kind() {
                    std::io::ErrorKind::NotFound if !dir.is_dir() => {
                        format!("working directory {} does not exist", dir.display())
                    }
                    std::io::ErrorKind::NotFound => "program not found".to_string(),
                    _ => source.to_string(),
                },
            })?;
            let pid = child.id();
            let pgid = pid.and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
            let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
            if let Ok(mut slot) = stderr_slot.lock() {
                *slot = Some(stderr_tail.clone());
            }
            if let Some(stderr) = child.stderr.take() {
                let tail = stderr_tail.clone();
                let name = server.to_string();
                tokio::spawn(async move {
                    let mut lines = BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::debug!(target: "quest::mcp", server = %name, "stderr: {line}");
                        if let Ok(mut tail) = tail.lock() {
                            if tail.len() == STDERR_TAIL_LINES {
                                tail.pop_front();
                            }
                            tail.push_back(line);
                        }
                    }
                });
            }
            let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
                return Err(McpError::Spawn {
                    server: server.to_string(),
                    command: command.clone(),
                    message: "no stdio pipes".to_string(),
                });
            };
            let (exited_tx, exited) = watch::channel(false);
            let process = ChildProcess {
                pgid,
                exited,
                pid,
                stderr_tail,
            };
            let name = server.to_string();
            tokio::spawn(async move {
                let status = child.wait().await;
                tracing::debug!(target: "quest::mcp", server = %name, ?status, "server process exited");
                let _ = exited_tx.send(true);
            });
            match client_info().serve((stdout, stdin)).await {
                Ok(service) => Ok(Connection::new(service, Some(process))),
                Err(err) => {
                    // Give the process a moment to print why it quit before reading its stderr.
                    let mut process = process;
                    process.wait_exit(Duration::from_millis(500)).await;
                    Err(McpError::Handshake {
                        server: server.to_string(),
                        message: with_stderr(err.to_string(), &process.stderr_tail()),
                    })
                }
            }
        }
        McpServerTransportConfig::StreamableHttp {
            url,
            bearer_token_env_var,
            http_headers,
            env_http_headers,
        } => {
            let config_error = |message: String| McpError::Config {
                server: server.to_string(),
                message,
            };
            let mut transport = StreamableHttpClientTransportConfig::with_uri(url.as_str());
            if let Some(var) = bearer_token_env_var {
                let token = std::env::var(var).map_err(|_| {
                    config_error(format!(
                        "bearer_token_env_var: environment variable {var} is not set"
                    ))
                })?;
                transport = transport.auth_header(token);
            }
            let mut headers = HashMap::new();
            for (name, value) in http_headers {
                headers.insert(
                    header_name(name).map_err(&config_error)?,
                    header_value(name, value).map_err(&config_error)?,
                );
            }
            for (name, var) in env_http_headers {
                // Codex skips a header whose variable is unset.
                if let Ok(value) = std::env::var(var) {
                    headers.insert(
                        header_name(name).map_err(&config_error)?,
                        header_value(name, &value).map_err(&config_error)?,
                    );
                }
            }
            let transport =
                StreamableHttpClientTransport::from_config(transport.custom_headers(headers));
            let service =
                client_info()
                    .serve(transport)
                    .await
                    .map_err(|err| McpError::Handshake {
                        server: server.to_string(),
                        message: err.to_string(),
                    })?;
            Ok(Connection::new(service, None))
        }
    }
}

fn header_name(name: &str) -> Result<http::HeaderName, String> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("invalid header name {name:?}"))
}

fn header_value(name: &str, value: &str) -> Result<http::HeaderValue, String> {
    http::HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {name:?}"))
}

pub(crate) fn with_stderr(message: String, stderr: &str) -> String {
    if stderr.trim().is_empty() {
        message
    } else {
        format!("{message}; server stderr:\n{stderr}")
    }
}

/// Linux: the child gets `SIGKILL` when the thread that spawned it ends (with Quest's runtime
/// threads, when Quest exits), so a crash of Quest leaves no server behind.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_parent_death_signal(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn set_parent_death_signal(_cmd: &mut Command) {}
