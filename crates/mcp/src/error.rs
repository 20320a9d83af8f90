//! Errors of the MCP layer. None of them is fatal to a thread: startup errors become warnings,
//! call errors become error results the model reads.

use std::time::Duration;

/// What went wrong talking to a server. Every message names the server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum McpError {
    /// A name that is not a configured, enabled server (returned by calls naming a server).
    #[error("unknown MCP server `{server}`")]
    UnknownServer {
        /// The name asked for.
        server: String,
    },
    /// The configuration could not be used at connect time (a bearer token variable unset…).
    #[error("MCP server `{server}`: {message}")]
    Config {
        /// Server name.
        server: String,
        /// What is wrong.
        message: String,
    },
    /// The stdio server's process could not be started. Retried at the next use.
    #[error("MCP server `{server}` could not be started (`{command}`): {message}")]
    Spawn {
        /// Server name.
        server: String,
        /// The configured command.
        command: String,
        /// Why.
        message: String,
    },
    /// The `initialize` handshake or the first tool listing failed. Retried at the next use.
    #[error("MCP server `{server}` failed to start: {message}")]
    Handshake {
        /// Server name.
        server: String,
        /// The SDK's error, with the server's last stderr lines when there are some.
        message: String,
    },
    /// The handshake did not finish within `startup_timeout_sec`. Retried at the next use.
    #[error("MCP server `{server}` did not finish starting within {}s (startup_timeout_sec){stderr}", timeout.as_secs_f64())]
    StartupTimeout {
        /// Server name.
        server: String,
        /// The timeout in force.
        timeout: Duration,
        /// `; server stderr: …` or empty.
        stderr: String,
    },
    /// A tool call did not answer within `tool_timeout_sec` (the request is cancelled).
    #[error("MCP server `{server}`: `{tool}` did not answer within {}s (tool_timeout_sec)", timeout.as_secs_f64())]
    ToolTimeout {
        /// Server name.
        server: String,
        /// Tool or method.
        tool: String,
        /// The timeout in force.
        timeout: Duration,
    },
    /// The server answered a request with an error or the connection broke during it.
    #[error("MCP server `{server}`: {method} failed: {message}")]
    Request {
        /// Server name.
        server: String,
        /// `tools/call`, `resources/read`, …
        method: String,
        /// The error.
        message: String,
    },
}

impl McpError {
    /// The server the error is about.
    pub fn server(&self) -> &str {
        match self {
            McpError::UnknownServer { server }
            | McpError::Config { server, .. }
            | McpError::Spawn { server, .. }
            | McpError::Handshake { server, .. }
            | McpError::StartupTimeout { server, .. }
            | McpError::ToolTimeout { server, .. }
            | McpError::Request { server, .. } => server,
        }
    }
}
