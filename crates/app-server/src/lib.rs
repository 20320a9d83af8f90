//! `quest app-server`: Quest's threads, turns and goals behind the Codex app-server v2 protocol
//! (JSON-RPC without the `jsonrpc` member), so editors, scripts and Codex's own TUI
//! (`codex --remote ws://…`) can drive Quest.
//!
//! This crate owns the transports (stdio, WebSocket, in-process channel), the JSON-RPC session
//! (the `initialize` handshake, errors with standard codes, size limits) and the mapping between
//! core's events and v2 notifications. It never runs a model or a tool itself and never formats
//! text for a terminal; on stdio, stdout carries protocol messages only.
#![warn(missing_docs, unreachable_pub)]

mod history;
mod server;
mod startup;
mod thread_api;
mod threads;
pub mod transport;

use std::path::PathBuf;

use clap::Args;
use quest_core::ConfigOverrides;

pub use server::{
    CODEX_PROTOCOL_VERSION, DEFAULT_MAX_MESSAGE_BYTES, Server, ServerError, ServerOptions,
};
pub use transport::{InProcessClient, Inbound, Listen, WsAuth, in_process};

/// Exit code for bad usage (flags, addresses, config).
pub const EXIT_USAGE: i32 = 2;
/// Exit code for a failure while serving.
pub const EXIT_FAILURE: i32 = 1;

/// `quest app-server` flags.
#[derive(Args, Debug, Clone)]
pub struct AppServerArgs {
    /// Where to listen: `stdio://` (default) or `ws://IP:PORT`.
    #[arg(long, default_value = "stdio://", value_name = "URL")]
    pub listen: Listen,
    /// File holding the capability token WebSocket clients must send as
    /// `Authorization: Bearer <token>`; required for a non-loopback `ws://` address.
    #[arg(long, value_name = "PATH")]
    pub ws_token_file: Option<PathBuf>,
    /// WebSocket auth mode; only `capability-token` (with `--ws-token-file`) is supported.
    #[arg(long, value_name = "MODE", requires = "ws_token_file")]
    pub ws_auth: Option<WsAuthMode>,
    /// Largest accepted message in bytes; longer ones are answered with an error.
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE_BYTES, value_name = "BYTES")]
    pub max_message_bytes: usize,
    /// Override a configuration value (TOML), as `key=value`; repeatable.
    #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Working directory for threads started without a `cwd`.
    #[arg(short = 'C', long = "cd", value_name = "DIR")]
    pub cd: Option<PathBuf>,
}

/// WebSocket authentication modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WsAuthMode {
    /// A shared capability token read from `--ws-token-file`.
    CapabilityToken,
}

/// Runs `quest app-server` until stdin closes (stdio) or the process is told to stop (SIGINT or
/// SIGTERM); loaded threads are shut down cleanly first. Returns the exit code.
pub async fn run(args: AppServerArgs) -> i32 {
    let auth = match &args.ws_token_file {
        Some(path) => match WsAuth::from_token_file(path) {
            Ok(auth) => auth,
            Err(message) => {
                eprintln!("Error: {message}");
                return EXIT_USAGE;
            }
        },
        None => WsAuth::none(),
    };
    let options = ServerOptions {
        config: ConfigOverrides {
            cwd: args.cd.clone(),
            raw_overrides: args.config.clone(),
            ..ConfigOverrides::default()
        },
        max_message_bytes: args.max_message_bytes.max(1024),
    };
    let server = match Server::new(options) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("Error: {err}");
            return EXIT_USAGE;
        }
    };
    let code = match args.listen {
        Listen::Stdio => {
            tokio::select! {
                () = transport::serve_stdio(server.clone()) => 0,
                () = stop_signal() => 0,
            }
        }
        Listen::WebSocket(addr) => {
            let listener = match transport::bind_ws(addr, &auth).await {
                Ok(listener) => listener,
                Err(message) => {
                    eprintln!("Error: {message}");
                    return EXIT_USAGE;
                }
            };
            match listener.local_addr() {
                Ok(bound) => eprintln!("quest app-server listening on ws://{bound}"),
                Err(_) => eprintln!("quest app-server listening on ws://{addr}"),
            }
            tokio::select! {
                result = transport::serve_ws(server.clone(), listener, auth) => match result {
                    Ok(()) => 0,
                    Err(err) => {
                        eprintln!("Error: WebSocket listener failed: {err}");
                        EXIT_FAILURE
                    }
                },
                () = stop_signal() => 0,
            }
        }
    };
    server.shutdown().await;
    code
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
