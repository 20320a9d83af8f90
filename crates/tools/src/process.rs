//! Keeping track of the processes commands leave behind, so that they die with Quest.
//!
//! - Every command runs in its own process group, registered here while any member is alive;
//!   [`kill_all`] kills every registered group (a `server &` left by an earlier command
//!   included).
//! - A process that escaped its group with `setsid` is still found through its parent chain
//!   while its parent lives ([`kill_group_tree`]). Once its parent is gone it is re-parented to
//!   Quest when Quest called [`supervise_children`] (`PR_SET_CHILD_SUBREAPER`), so [`kill_all`]
//!   finds it among Quest's descendants; such adopted orphans are reaped by [`reap_orphans`]
//!   when they exit.
//! - The direct child of each command also has `PR_SET_PDEATHSIG` (`SIGKILL`), for the case
//!   where Quest itself is killed without a chance to clean up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// Process groups of commands that may still have members.
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
/// Direct children of running commands, reaped by their own `wait`; [`reap_orphans`] must not
/// take their exit status.
static RUNNING: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn lock<T>(m: &'static Mutex<T>) -> MutexGuard<'static, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes Quest the reaper of orphaned descendants (`PR_SET_CHILD_SUBREAPER`), so a process that
/// escaped with `setsid` and lost its parent is re-parented to Quest (and killed by
/// [`kill_all`]) instead of to init. Front-ends call it once at start-up.
///
/// # Errors
/// The `prctl` error (never on Linux 3.4 or newer).
pub fn supervise_children() -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)
}

pub(crate) fn register(pid: i32) {
    lock(&GROUPS).insert(pid);
    lock(&RUNNING).insert(pid);
}

/// The command's direct child was waited for; its group stays registered while it has members.
pub(crate) fn finished(pid: i32) {
    lock(&RUNNING).remove(&pid);
    if killpg(Pid::from_raw(pid), None).is_err() {
        lock(&GROUPS).remove(&pid);
    }
}

/// One line of `/proc/<pid>/stat`: parent, group and state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProcStat {
    pid: i32,
    ppid: i32,
    pgrp: i32,
    zombie: bool,
}

/// Parses `/proc/<pid>/stat`; the command name may hold spaces and parentheses, so fields are
/// read after the last `)`.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let mut fields = text.get(close + 1..)?.split_ascii_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        ppid,
        pgrp,
        zombie: state == "Z",
    })
}

fn all_processes() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let name = entry.file_name();
        let pid: i32 = name.to_str()?.parse().ok()?;
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&text)
    })
    .collect()
}

/// Members of the groups in `groups` plus, transitively, every child of a member or of such a
/// child, and (with `root`) every descendant of `root`.
fn tree(procs: &[ProcStat], groups: &BTreeSet<i32>, root: Option<i32>) -> BTreeSet<i32> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut found: BTreeSet<i32> = procs
        .iter()
        .filter(|p| groups.contains(&p.pgrp))
        .map(|p| p.pid)
        .collect();
    let mut stack: Vec<i32> = found.iter().copied().collect();
    if let Some(root) = root {
        stack.push(root);
    }
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
            if found.insert(child) {
                stack.push(child);
            }
        }
    }
    if let Some(root) = root {
        found.remove(&root);
    }
    found
}

/// Sends `signal` to the group `pgid` and to every process descended from one of its members
/// (those that left the group with `setsid` included).
pub(crate) fn kill_group_tree(pgid: i32, signal: Signal) {
    let _ = killpg(Pid::from_raw(pgid), signal);
    let groups = BTreeSet::from([pgid]);
    for pid in tree(&all_processes(), &groups, None) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// Kills (`SIGKILL`) every process commands started that is still alive: every registered
/// group, the descendants of their members, and every descendant of Quest adopted as an orphan.
/// Front-ends call it when Quest exits: it kills every descendant of Quest, whoever started it.
pub fn kill_all() {
    let groups = std::mem::take(&mut *lock(&GROUPS));
    for &pgid in &groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    let me = std::process::id() as i32;
    // Killing a parent re-parents its children to Quest; a few passes catch them.
    for _ in 0..3 {
        let procs = all_processes();
        let alive: BTreeSet<i32> = procs.iter().filter(|p| !p.zombie).map(|p| p.pid).collect();
        let victims: Vec<i32> = tree(&procs, &groups, Some(me))
            .into_iter()
            .filter(|pid| alive.contains(pid))
            .collect();
        if victims.is_empty() {
            break;
        }
        for pid in &victims {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        reap_orphans();
    }
}

/// Reaps exited orphans that were re-parented to Quest (see [`supervise_children`]); the
/// direct children of running commands are left to their own `wait`.
pub fn reap_orphans() {
    let me = std::process::id() as i32;
    let running = lock(&RUNNING).clone();
    for p in all_processes() {
        if p.ppid == me && p.zombie && !running.contains(&p.pid) {
            let _ = waitpid(Pid::from_raw(p.pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let p = parse_stat("4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 99").unwrap();
        assert_eq!(
            p,
            ProcStat {
                pid: 4242,
                ppid: 1,
                pgrp: 4242,
                zombie: false
            }
        );
        assert!(parse_stat("12 (x) Z 3 12 12").unwrap().zombie);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn tree_follows_groups_and_parents() {
        let procs = [
            ProcStat {
                pid: 10,
                ppid: 1,
                pgrp: 10,
                zombie: false,
            },
            ProcStat {
                pid: 11,
                ppid: 10,
                pgrp: 10,
                zombie: false,
            },
            // Escaped with setsid, parent still alive.
            ProcStat {
                pid: 12,
                ppid: 11,
                pgrp: 12,
                zombie: false,
            },
            ProcStat {
                pid: 13,
                ppid: 12,
                pgrp: 12,
                zombie: false,
            },
            // Unrelated.
            ProcStat {
                pid: 20,
                ppid: 1,
                pgrp: 20,
                zombie: false,
            },
            // Adopted by Quest (pid 5).
            ProcStat {
                pid: 30,
                ppid: 5,
                pgrp: 30,
                zombie: false,
            },
        ];
        let groups = BTreeSet::from([10]);
        assert_eq!(
            tree(&procs, &groups, None),
            BTreeSet::from([10, 11, 12, 13])
        );
        assert_eq!(
            tree(&procs, &groups, Some(5)),
            BTreeSet::from([10, 11, 12, 13, 30])
        );
    }
}
