//! Quest's durable state: one embedded SQLite database per Quest home (`$QUEST_HOME/state.sqlite`)
//! holding threads, turns, the conversation rollout, thread goals, the goal audit trail and the
//! leases of processes that run goal loops.
//!
//! The database runs in WAL mode with `synchronous = FULL`, so a write that returned is on disk
//! and a process killed at any point leaves a readable database. Several processes may share the
//! file (a running `quest exec` and `quest goal pause` from another shell); every write is one
//! short `BEGIN IMMEDIATE` transaction, so they serialize instead of failing.
//!
//! Goal changes go through [`Store::apply_goal`], which runs the pure
//! [`quest_protocol::goal::transition`] function inside the transaction and writes the goal row
//! and its audit event together, before the caller announces anything.
//!
//! This crate owns SQL and nothing else: it spawns no tasks, knows no model, prompt or terminal,
//! and never decides a goal transition itself.
#![warn(missing_docs, unreachable_pub)]

mod batch;
mod error;
mod goals;
mod lease;
mod store;
mod threads;

pub use batch::{GoalWrite, PendingWrite};
pub use error::StateError;
pub use goals::{GoalApplyOutcome, GoalContext, GoalEventPage};
pub use lease::{LEASE_HEARTBEAT_INTERVAL_MS, LEASE_STALE_AFTER_MS, Lease, LeaseAcquire};
pub use quest_protocol::transcript::{TranscriptEntry, TranscriptItem};
pub use store::{
    SCHEMA_VERSION, STATE_DB_FILE_NAME, Store, committed_transactions, create_private_dir, now_ms,
    set_call_check,
};
pub use threads::{NewThread, ThreadRecord, TurnRecord, TurnStatus, TurnTrigger};
