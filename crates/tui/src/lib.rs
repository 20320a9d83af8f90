//! `quest` with no subcommand: the terminal UI. It is a client of the app-server v2 protocol —
//! by default the server runs in this process over a channel, with `--remote ws://HOST:PORT` it
//! is a running `quest app-server` (or a Codex app-server) elsewhere.
//!
//! [`app::App`] holds the state and is changed only by server messages and key events (a pure
//! reducer, unit- and snapshot-tested); [`render::Renderer`] draws it; [`run`] owns the terminal,
//! the transport and the frame pacing.
#![warn(missing_docs, unreachable_pub)]

pub mod app;
pub mod composer;
pub mod format;
pub mod render;
mod run;
pub mod theme;
pub mod transport;
pub mod wrap;

pub use run::{TerminalGuard, TuiOptions, event_loop, run};
