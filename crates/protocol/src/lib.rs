//! Quest's shared vocabulary: thread and turn ids, the Responses-API conversation items that make
//! up a thread's history, token usage, the goal data model, the ops and events a front-end
//! exchanges with a thread, and the `exec --json` event stream.
//!
//! This crate owns types and pure functions only. It performs no I/O, spawns nothing and knows no
//! storage or transport; every other crate depends on it, so it must stay small and fast to build.
#![warn(missing_docs, unreachable_pub)]

pub mod app_server;
pub mod compaction;
pub mod exec_events;
pub mod goal;
pub mod ids;
pub mod items;
pub mod mcp;
pub mod ops;
pub mod sandbox;
pub mod transcript;
pub mod usage;

pub use compaction::{CompactedHistory, CompactionTrigger, LoadedHistory};
pub use ids::{ThreadId, TurnId};
pub use items::{ContentItem, ReasoningSummary, ResponseItem};
pub use ops::{Event, EventMsg, Op, TurnError, TurnErrorKind, TurnTrigger};
pub use usage::TokenUsage;
