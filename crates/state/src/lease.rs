//! Goal-loop leases: which process runs a thread's goal loop, and whether it is still alive.
//!
//! A lease row names the holder's pid and the process's start identity (boot id plus the start
//! time from `/proc/<pid>/stat` on Linux), so a recycled pid is not mistaken for the holder. A
//! lease is live while that process exists with the same identity and its heartbeat is recent.

use std::path::Path;

use rusqlite::{OptionalExtension, Transaction, params};

use crate::error::StateError;

/// How often the holder should heartbeat (and flush wall-clock time).
pub const LEASE_HEARTBEAT_INTERVAL_MS: i64 = 15_000;

/// A lease whose heartbeat is older than this is stale even if its process still exists
/// (a hung process must not keep a goal `active` forever).
pub const LEASE_STALE_AFTER_MS: i64 = 4 * LEASE_HEARTBEAT_INTERVAL_MS;

/// A goal-loop lease on one thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The thread.
    pub thread_id: String,
    /// Unique id of this holder (UUID v4); heartbeats and release must present it.
    pub holder_id: String,
    /// Holder's process id.
    pub pid: u32,
    /// Holder's process start identity (`<boot id>:<start ticks>`), when the OS exposes it.
    pub process_start: Option<String>,
    /// Unix milliseconds.
    pub started_at_ms: i64,
    /// Unix milliseconds of the last heartbeat.
    pub heartbeat_at_ms: i64,
}

/// Result of [`crate::Store::acquire_lease`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseAcquire {
    /// This process now holds the lease (fresh, or taken over from a dead/stale holder).
    Acquired(Lease),
    /// Another live process holds it; do not run the goal loop.
    HeldBy(Lease),
}

impl Lease {
    /// Whether the lease is held by a live process at `now_ms`: the heartbeat is recent and the
    /// process exists with the recorded start identity.
    pub fn is_live(&self, now_ms: i64) -> bool {
        if now_ms.saturating_sub(self.heartbeat_at_ms) > LEASE_STALE_AFTER_MS {
            return false;
        }
        process_alive(self.pid, self.process_start.as_deref())
    }
}

/// This process's start identity.
pub(crate) fn own_process_start() -> Option<String> {
    process_start_identity(std::process::id())
}

/// `<boot id>:<start time in clock ticks since boot>` of `pid`, read from `/proc`; `None` where
/// `/proc` is unavailable or the process does not exist.
pub(crate) fn process_start_identity(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces; fields after it are plain.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Field 22 (starttime) is the 20th field after the command name.
    let start = after_comm.split_whitespace().nth(19)?;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    Some(format!("{}:{start}", boot.trim()))
}

/// Whether `pid` is running and, when `start` is known, is the same process that recorded it.
pub(crate) fn process_alive(pid: u32, start: Option<&str>) -> bool {
    if !Path::new("/proc/self/stat").exists() {
        // No procfs: rely on the heartbeat alone.
        return true;
    }
    match (process_start_identity(pid), start) {
        (None, _) => false,
        (Some(found), Some(expected)) => found == expected,
        (Some(_), None) => true,
    }
}

pub(crate) fn read_lease(
    tx: &Transaction<'_>,
    thread_id: &str,
) -> Result<Option<Lease>, StateError> {
    Ok(tx
        .query_row(
            "SELECT thread_id, holder_id, pid, process_start, started_at_ms, heartbeat_at_ms
             FROM goal_leases WHERE thread_id = ?1",
            params![thread_id],
            |r| {
                Ok(Lease {
                    thread_id: r.get(0)?,
                    holder_id: r.get(1)?,
                    pid: r.get(2)?,
                    process_start: r.get(3)?,
                    started_at_ms: r.get(4)?,
                    heartbeat_at_ms: r.get(5)?,
                })
            },
        )
        .optional()?)
}

pub(crate) fn write_lease(tx: &Transaction<'_>, lease: &Lease) -> Result<(), StateError> {
    tx.execute(
        "INSERT INTO goal_leases
             (thread_id, holder_id, pid, process_start, started_at_ms, heartbeat_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (thread_id) DO UPDATE SET holder_id = excluded.holder_id,
             pid = excluded.pid, process_start = excluded.process_start,
             started_at_ms = excluded.started_at_ms, heartbeat_at_ms = excluded.heartbeat_at_ms",
        params![
            lease.thread_id,
            lease.holder_id,
            lease.pid,
            lease.process_start,
            lease.started_at_ms,
            lease.heartbeat_at_ms
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_with_its_identity() {
        let own = own_process_start();
        if Path::new("/proc/self/stat").exists() {
            let identity = own.clone().unwrap();
            assert!(identity.contains(':'));
            assert_eq!(process_start_identity(std::process::id()), own);
        }
        assert!(process_alive(std::process::id(), own.as_deref()));
    }

    #[test]
    fn stale_heartbeat_is_not_live_even_for_this_process() {
        let lease = Lease {
            thread_id: "t".into(),
            holder_id: "h".into(),
            pid: std::process::id(),
            process_start: own_process_start(),
            started_at_ms: 0,
            heartbeat_at_ms: 1_000,
        };
        assert!(lease.is_live(1_000 + LEASE_STALE_AFTER_MS));
        assert!(!lease.is_live(1_001 + LEASE_STALE_AFTER_MS));
    }
}
