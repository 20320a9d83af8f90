//! `quest-mock-model`: serve a script file as a Responses API endpoint.
//!
//! Prints the base URL (`http://127.0.0.1:PORT/v1`) on stdout once listening, optionally writes
//! the port to a file (atomically) and every request as a JSON line to a log, and runs until
//! SIGINT or SIGTERM.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use quest_mock_model::{MockModel, Script};

/// A scripted OpenAI Responses API server.
#[derive(Debug, Parser)]
#[command(name = "quest-mock-model", version)]
struct Args {
    /// Script file (JSON or TOML): steps, rules and a default step.
    #[arg(long, value_name = "FILE")]
    script: PathBuf,
    /// Port to listen on (default: any free port).
    #[arg(long, value_name = "N", default_value_t = 0)]
    port: u16,
    /// Append every request as one JSON line to this file.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Write the bound port to this file once listening.
    #[arg(long, value_name = "FILE")]
    port_file: Option<PathBuf>,
}

fn write_atomically(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let script = Script::from_path(&args.script)?;
    let mut builder = MockModel::builder(script).port(args.port);
    if let Some(log) = &args.log {
        builder = builder.log_file(log);
    }
    let mock = builder.start().await?;
    if let Some(port_file) = &args.port_file {
        write_atomically(port_file, &format!("{}\n", mock.port()))?;
    }
    println!("{}", mock.uri());
    stop_signal().await;
    mock.shutdown().await;
    Ok(())
}
