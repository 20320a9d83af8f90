//! Errors of the mock model server. None of them is retried: they are set-up errors a test or
//! the binary reports as is.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A script that could not be read or does not make sense.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The script file could not be read (returned by [`crate::Script::from_path`]).
    #[error("cannot read script {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The JSON is malformed or does not match the script shape; the message carries the line
    /// and column.
    #[error("{origin}: invalid JSON script: {source}")]
    Json {
        /// File name or other label of the script.
        origin: String,
        /// The parse error (with line and column).
        source: serde_json::Error,
    },
    /// The TOML is malformed or does not match the script shape; the message carries the line,
    /// the column and the offending snippet.
    #[error("{origin}: invalid TOML script: {source}")]
    Toml {
        /// File name or other label of the script.
        origin: String,
        /// The parse error (with line, column and snippet).
        source: Box<toml::de::Error>,
    },
    /// A step combines settings that cannot go together (returned by [`crate::Script::validate`]).
    #[error("{origin}: {location}: {message}")]
    Invalid {
        /// File name or other label of the script.
        origin: String,
        /// Where in the script, e.g. `steps[2]` or `rules[0].then`.
        location: String,
        /// What is wrong.
        message: String,
    },
}

/// Starting or driving the server failed.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// The listening socket could not be bound (port in use, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The request log file could not be opened.
    #[error("cannot open request log {}: {source}", path.display())]
    Log {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The background server thread could not be started or died before binding.
    #[error("cannot start the server thread: {0}")]
    Thread(String),
    /// The script is invalid.
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// [`crate::MockModel::wait_for_requests`] gave up before enough requests arrived.
    #[error("timed out after {timeout:?} waiting for {wanted} request(s); {got} arrived")]
    WaitTimeout {
        /// Requests waited for.
        wanted: usize,
        /// Requests that arrived.
        got: usize,
        /// The timeout.
        timeout: Duration,
    },
}
