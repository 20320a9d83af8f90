//! Model Context Protocol (MCP) servers for Quest, through the official Rust SDK (`rmcp`).
//!
//! This crate owns the `[mcp_servers.<name>]` configuration ([`config`]), the connections to
//! those servers ([`McpConnectionManager`]: concurrent start with startup timeouts, restart when
//! a server dies, shutdown without orphans), the function names the model sees ([`naming`]) and
//! what a tool result becomes for the model ([`convert`]). It knows nothing of threads, turns,
//! approvals or telemetry: core decides when to call and what to record.

#![warn(missing_docs, unreachable_pub)]

mod client;
pub mod config;
pub mod convert;
mod error;
mod manager;
pub mod naming;

pub use client::DEFAULT_ENV_VARS;
pub use config::{McpServerConfig, McpServerTransportConfig, McpServers};
pub use convert::{McpToolOutput, ModelImage, ModelOutput};
pub use error::McpError;
pub use manager::{McpConnectionManager, McpTool, ServerStatus, WarningSink};
