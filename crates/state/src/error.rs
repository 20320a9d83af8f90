//! The error type of the state layer.

use std::path::PathBuf;

use quest_protocol::goal::TransitionError;

/// Everything the store can fail with. None of these is retried inside the store: SQLite's busy
/// timeout already waits for other writers, so an error that surfaces is final for the call.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The Quest home directory could not be created (`Store::open_in`). Not retried.
    #[error("cannot create state directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Returned by `Store::open` when the database file cannot be created 0600 or its mode
    /// (or its WAL/SHM files') cannot be narrowed. Not retried.
    #[error("cannot restrict the permissions of {path}: {source}")]
    Permissions {
        /// The database file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Opening or configuring the database file failed. Not retried.
    #[error("cannot open state database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer Quest (its `user_version` is above this build's
    /// schema). Returned by `Store::open`; the user must upgrade Quest.
    #[error(
        "state database schema version {found} is newer than this build supports ({supported}); upgrade quest"
    )]
    SchemaTooNew {
        /// `PRAGMA user_version` found in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A statement failed (including `SQLITE_BUSY` after the busy timeout ran out). Returned by
    /// every operation; callers may retry the whole operation later.
    #[error("state database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value could not be decoded (hand-edited or corrupt row). Not retried.
    #[error("corrupt state: {table}.{column} = {value:?}: {problem}")]
    Corrupt {
        /// Table name.
        table: &'static str,
        /// Column name.
        column: &'static str,
        /// The offending value (truncated).
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A value could not be serialized for storage. Not retried.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The serde error.
        source: serde_json::Error,
    },
    /// The goal transition was refused; the message is the exact user/model-facing text.
    /// Returned by `Store::apply_goal`; not retried.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// A thread or turn the operation needs does not exist. Not retried.
    #[error("{what} not found: {id}")]
    NotFound {
        /// `thread` or `turn`.
        what: &'static str,
        /// The id.
        id: String,
    },
    /// The lease passed to a heartbeat or release is no longer held by this holder (another
    /// process took it over after it went stale). The caller must stop its goal loop.
    #[error("goal lease for thread {thread_id} is no longer held by this process")]
    LeaseLost {
        /// The thread.
        thread_id: String,
    },
    /// Another live process holds the thread (`Store::reconcile_for_load`). Not retried: the
    /// caller must not run the thread while that process does.
    #[error("thread {thread_id} is in use by another quest process (pid {pid})")]
    LeaseHeld {
        /// The thread.
        thread_id: String,
        /// The holder's process id.
        pid: u32,
    },
    /// A goal trigger produced a goal for another thread than the one it was applied to (a
    /// `Create` whose `thread_id` differs from the call's). A caller bug; not retried.
    #[error("goal trigger for thread {found} applied to thread {expected}")]
    ThreadMismatch {
        /// The thread the call named.
        expected: String,
        /// The thread inside the trigger.
        found: String,
    },
    /// The store's connection mutex was poisoned by a panic in another thread. Not retried.
    #[error("state store connection poisoned by an earlier panic")]
    Poisoned,
}

pub(crate) fn corrupt(
    table: &'static str,
    column: &'static str,
    value: &str,
    problem: impl ToString,
) -> StateError {
    StateError::Corrupt {
        table,
        column,
        value: value.chars().take(80).collect(),
        problem: problem.to_string(),
    }
}
