//! Quest's side-effecting tools: [`shell`] runs a real process in a working directory with a
//! timeout, an output cap and process-group cleanup; [`apply_patch`] parses and atomically applies
//! the `*** Begin Patch` format that OpenAI models emit; [`read_only`] recognises commands that
//! only read, which may run alongside each other.
//!
//! This crate knows nothing about models, threads, storage or telemetry: it takes plain requests
//! and returns plain results plus the text the model should see. `quest-core` wraps these
//! functions as model-facing tools (argument parsing, events, spans). Keep it a leaf: it must not
//! depend on any other Quest crate except `quest-protocol`.
#![warn(missing_docs, unreachable_pub)]

pub mod apply_patch;
pub mod env_policy;
pub mod process;
pub mod read_only;
pub mod sandbox;
pub mod shell;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod spawn;
