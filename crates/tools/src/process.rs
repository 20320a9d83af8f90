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

/// Runs `spawn` and registers the child it returns (a command's direct child, leading its own
/// process group) while holding the list [`reap_orphans`] consults, so that it can never take
/// the new child's exit status before the child is known.
pub(crate) fn register_spawned(
    spawn: impl FnOnce() -> std::io::Result<i32>,
) -> std::io::Result<i32> {
    let mut running = lock(&RUNNING);
    let pid = spawn()?;
    running.insert(pid);
    drop(running);
    lock(&GROUPS).insert(pid);
    Ok(pid)
}

/// How many command process groups are registered (running, or with members left behind).
pub(crate) fn registered_groups() -> usize {
    lock(&GROUPS).len()
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
    session: i32,
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
    let session = fields.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        ppid,
        pgrp,
        session,
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

fn read_stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Quest's children: the pids in `/proc/self/task/*/children` (an orphan is re-parented to one
/// of Quest's threads, so every thread's list is read). `None` when the kernel has no such
/// files (`CONFIG_PROC_CHILDREN`); a thread that exits meanwhile is skipped. The lists are a
/// snapshot: a child that appears while they are read may be missed, and is found by the next
/// call.
fn own_children() -> Option<Vec<i32>> {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let available = *AVAILABLE.get_or_init(|| {
        std::path::Path::new(&format!("/proc/self/task/{}/children", std::process::id())).exists()
    });
    if !available {
        return None;
    }
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let mut pids = Vec::new();
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        pids.extend(
            text.split_ascii_whitespace()
                .filter_map(|pid| pid.parse::<i32>().ok()),
        );
    }
    Some(pids)
}

/// The processes matching `is_root` plus, transitively, every child of one of them.
fn tree(procs: &[ProcStat], is_root: impl Fn(&ProcStat) -> bool) -> BTreeSet<i32> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut found: BTreeSet<i32> = procs.iter().filter(|p| is_root(p)).map(|p| p.pid).collect();
    let mut stack: Vec<i32> = found.iter().copied().collect();
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
            if found.insert(child) {
                stack.push(child);
            }
        }
    }
    found
}

/// Whether `p` was started by a command: a member of a command's group, or a child of Quest
/// (`me`, in group `my_group`) that leads a session of its own — an orphan that escaped with
/// `setsid` and was adopted. Quest's other children (the notify program, MCP servers) stay in
/// Quest's session and are not matched.
fn started_by_command(p: &ProcStat, groups: &BTreeSet<i32>, me: i32, my_group: i32) -> bool {
    groups.contains(&p.pgrp) || (p.ppid == me && p.session == p.pid && p.pgrp != my_group)
}

/// Sends `signal` to the group `pgid` and to every process descended from one of its members
/// (those that left the group with `setsid` included).
pub(crate) fn kill_group_tree(pgid: i32, signal: Signal) {
    let _ = killpg(Pid::from_raw(pgid), signal);
    for pid in tree(&all_processes(), |p| p.pgrp == pgid) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// Kills (`SIGKILL`) every process commands started that is still alive: every registered
/// group, the processes that escaped one with `setsid` (found through their parents, or adopted
/// by Quest), and their descendants. Front-ends call it when Quest exits.
pub fn kill_all() {
    let groups = lock(&GROUPS).clone();
    for &pgid in &groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    let me = std::process::id() as i32;
    let my_group = nix::unistd::getpgrp().as_raw();
    // Killing a parent re-parents its children to Quest; a few passes catch them.
    for _ in 0..3 {
        let procs = all_processes();
        let victims = tree(&procs, |p| started_by_command(p, &groups, me, my_group));
        let alive: Vec<i32> = procs
            .iter()
            .filter(|p| !p.zombie && victims.contains(&p.pid))
            .map(|p| p.pid)
            .collect();
        for pid in &alive {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        reap_orphans();
        if alive.is_empty() {
            break;
        }
    }
    lock(&GROUPS).clear();
}

/// Reaps exited orphans that were re-parented to Quest (see [`supervise_children`]) and were
/// started by a command. Direct children of running commands are left to their own `wait`, and
/// so are Quest's other children, whose spawners wait for them.
pub fn reap_orphans() {
    // Almost always no child at all has exited: one `waitid` that collects nothing tells.
    if !a_child_has_exited() {
        return;
    }
    let me = std::process::id() as i32;
    let my_group = nix::unistd::getpgrp().as_raw();
    let running = lock(&RUNNING).clone();
    let groups = lock(&GROUPS).clone();
    // Quest's own children are enough (an adopted orphan is one); reading every process on the
    // machine after each command cost more than the rest of a goal turn on a busy host.
    let candidates = match own_children() {
        Some(pids) => pids.into_iter().filter_map(read_stat).collect(),
        None => all_processes(),
    };
    for p in candidates {
        if p.ppid == me
            && p.zombie
            && started_by_command(&p, &groups, me, my_group)
            && !running.contains(&p.pid)
        {
            let _ = waitpid(Pid::from_raw(p.pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}

/// Whether one of Quest's children is a zombie waiting to be collected (none when Quest has no
/// children at all).
fn a_child_has_exited() -> bool {
    use nix::sys::wait::{Id, WaitStatus, waitid};
    !matches!(
        waitid(
            Id::All,
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT
        ),
        Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let p = parse_stat("4242 (my (odd) name) S 1 4242 4240 0 -1 4194560 99").unwrap();
        assert_eq!(
            p,
            ProcStat {
                pid: 4242,
                ppid: 1,
                pgrp: 4242,
                session: 4240,
                zombie: false
            }
        );
        assert!(parse_stat("12 (x) Z 3 12 12 0").unwrap().zombie);
        assert_eq!(parse_stat("garbage"), None);
    }

    /// A command's `setsid` escape whose parent exited is re-parented to Quest (the subreaper);
    /// once it has exited, `reap_orphans` finds it among Quest's own children and reaps it.
    #[test]
    fn adopted_orphans_are_found_among_own_children_and_reaped() {
        use nix::sys::wait::{Id, waitid};
        supervise_children().unwrap();
        let out = std::process::Command::new("sh")
            // The escape outlives its parent: it only exits once the outer `sh` is gone, so the
            // outer one can never reap it first.
            .args([
                "-c",
                "setsid sh -c 'while kill -0 \"$0\"; do sleep 0.01; done' $$ >/dev/null 2>&1 & echo $!",
            ])
            .output()
            .unwrap();
        let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        // `sh` has been waited for, so the escape is this process's child now: wait for it to
        // exit without taking its status.
        waitid(
            Id::Pid(Pid::from_raw(pid)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        )
        .unwrap();
        assert!(own_children().unwrap().contains(&pid));
        assert!(read_stat(pid).unwrap().zombie);
        reap_orphans();
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the orphan {pid} was not reaped"
        );
    }

    #[test]
    fn tree_follows_groups_parents_and_adopted_escapes() {
        let stat = |pid, ppid, pgrp, session| ProcStat {
            pid,
            ppid,
            pgrp,
            session,
            zombie: false,
        };
        // Quest is pid 5 in group 5, session 1.
        let procs = [
            stat(10, 5, 10, 1),
            stat(11, 10, 10, 1),
            // Escaped with setsid, parent still alive.
            stat(12, 11, 12, 12),
            stat(13, 12, 12, 12),
            // Unrelated.
            stat(20, 1, 20, 20),
            // Escaped with setsid and adopted by Quest.
            stat(30, 5, 30, 30),
            // Quest's own child (notify program): not a command's.
            stat(40, 5, 5, 1),
        ];
        let groups = BTreeSet::from([10]);
        assert_eq!(
            tree(&procs, |p| p.pgrp == 10),
            BTreeSet::from([10, 11, 12, 13])
        );
        assert_eq!(
            tree(&procs, |p| started_by_command(p, &groups, 5, 5)),
            BTreeSet::from([10, 11, 12, 13, 30])
        );
    }
}
