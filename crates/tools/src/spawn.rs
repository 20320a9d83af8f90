//! Starting a command without copying Quest: a `vfork`-style spawn.
//!
//! `std::process::Command` can only use `posix_spawn` when nothing has to run in the child before
//! `exec`. Quest always has something to run there (the death signal, and under a sandbox the
//! mounts, Landlock and seccomp of [`ChildSetup`]), so std would `fork`: copy the page tables of
//! the whole process, then take a copy-on-write fault for every page Quest touches until the
//! child has exec'd. On a goal turn that was about a third of Quest's CPU.
//!
//! Here the child is created with `clone(CLONE_VM | CLONE_VFORK)`, the way `posix_spawn` does
//! it: it runs on a stack of its own inside Quest's memory, and the calling thread waits until
//! the child has exec'd or exited. What that asks of the child:
//! - Everything it touches was prepared here, before the clone; it only makes system calls.
//!   It must not write to Quest's memory except the error slot and the `sh` fallback arguments,
//!   which belong to this call.
//! - No signal handler of Quest may run in it: every signal is blocked around the clone, and the
//!   child resets every handler to the default before unblocking them (as `exec` would).
//!
//! The exit is watched through a pidfd (`pidfd_open`, Linux 5.3), or on older kernels through
//! `SIGCHLD`.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::ptr;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{Signal as SignalStream, SignalKind, signal};

use crate::process;
use crate::sandbox::ChildSetup;

/// Size of the child's stack (only the pages it touches are ever allocated).
const CHILD_STACK: usize = 256 * 1024;

/// The search path `execvp` uses when the environment has no `PATH`.
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// One process to start.
pub(crate) struct SpawnRequest<'a> {
    /// The program: a path when it contains a `/`, otherwise looked up in the child's `PATH`.
    pub program: &'a str,
    /// The whole argument vector, `argv[0]` included.
    pub argv: &'a [String],
    /// The working directory.
    pub cwd: &'a Path,
    /// Start from an empty environment instead of Quest's.
    pub clear_env: bool,
    /// Variables set on top of the starting environment, later ones winning.
    pub env: &'a [(String, String)],
    /// Descriptors for the child's stdin, stdout and stderr (duplicated onto 0, 1 and 2).
    pub stdio: [RawFd; 3],
}

/// A started child: its pid and how its exit is watched. Dropping it before its exit was
/// collected kills it.
pub(crate) struct Child {
    pid: libc::pid_t,
    watch: ExitWatch,
    status: Option<ExitStatus>,
}

enum ExitWatch {
    Pidfd(AsyncFd<OwnedFd>),
    Sigchld(SignalStream),
}

/// Everything the child reads, prepared in the parent. The pointer arrays point into the
/// `CString`s kept alongside them.
struct ChildArgs<'a> {
    setup: &'a ChildSetup,
    candidates: Vec<*const libc::c_char>,
    argv: Vec<*const libc::c_char>,
    /// `/bin/sh <candidate> <args…>`, for a file `execve` refuses as `ENOEXEC` (a script without
    /// `#!`), as `execvp` does; slot 1 is filled in by the child.
    sh_argv: Vec<Cell<*const libc::c_char>>,
    envp: Vec<*const libc::c_char>,
    cwd: *const libc::c_char,
    stdio: [RawFd; 3],
    /// The errno of the step that failed in the child; 0 while none has.
    error: AtomicI32,
}

fn cstring(bytes: impl Into<Vec<u8>>, what: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    })
}

/// The child's environment: Quest's (unless `clear`) with `overrides` set over it, later ones
/// winning, in name order.
fn environment(clear: bool, overrides: &[(String, String)]) -> BTreeMap<OsString, OsString> {
    let mut vars: BTreeMap<OsString, OsString> = if clear {
        BTreeMap::new()
    } else {
        std::env::vars_os().collect()
    };
    for (key, value) in overrides {
        vars.insert(OsString::from(key), OsString::from(value));
    }
    vars
}

/// The paths `execvp` would try for `program` with this search path, in order: `program`
/// itself when it names a path, else each `PATH` entry joined with it (an empty entry is the
/// working directory).
fn candidates(program: &str, path: Option<&OsStr>) -> Vec<Vec<u8>> {
    if program.contains('/') {
        return vec![program.as_bytes().to_vec()];
    }
    let path = path.map_or(DEFAULT_PATH, OsStrExt::as_bytes);
    path.split(|b| *b == b':')
        .map(|dir| {
            if dir.is_empty() {
                program.as_bytes().to_vec()
            } else {
                let mut full = dir.to_vec();
                if !full.ends_with(b"/") {
                    full.push(b'/');
                }
                full.extend_from_slice(program.as_bytes());
                full
            }
        })
        .collect()
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect()
}

/// Starts `req` with `setup` run in the child before `exec`, in a process group of its own
/// (`setpgid(0, 0)`), and registers it with [`process`] before anything could reap it.
///
/// # Errors
/// The errno of whatever failed: a NUL byte in an argument, `clone`, or a step in the child
/// (`ENOENT` when the program was not found, the sandbox's errors, …).
pub(crate) fn spawn(req: &SpawnRequest<'_>, setup: &ChildSetup) -> io::Result<Child> {
    spawn_watched(req, setup, true)
}

/// [`spawn`], watching the exit through a pidfd when `pidfd` is set and the kernel has them,
/// through `SIGCHLD` otherwise.
fn spawn_watched(req: &SpawnRequest<'_>, setup: &ChildSetup, pidfd: bool) -> io::Result<Child> {
    let vars = environment(req.clear_env, req.env);
    let path = vars.get(OsStr::new("PATH")).map(OsString::as_os_str);
    let candidates = candidates(req.program, path)
        .into_iter()
        .map(|c| cstring(c, "the program path"))
        .collect::<io::Result<Vec<_>>>()?;
    let argv = req
        .argv
        .iter()
        .map(|a| cstring(a.as_bytes(), "an argument"))
        .collect::<io::Result<Vec<_>>>()?;
    let envp = vars
        .into_iter()
        .map(|(k, v)| {
            let mut entry = k.into_vec();
            entry.push(b'=');
            entry.extend_from_slice(v.as_bytes());
            cstring(entry, "an environment variable")
        })
        .collect::<io::Result<Vec<_>>>()?;
    let cwd = cstring(req.cwd.as_os_str().as_bytes(), "the working directory")?;
    let mut sh_argv = vec![Cell::new(c"/bin/sh".as_ptr()), Cell::new(ptr::null())];
    sh_argv.extend(argv.iter().skip(1).map(|a| Cell::new(a.as_ptr())));
    sh_argv.push(Cell::new(ptr::null()));
    let args = ChildArgs {
        setup,
        candidates: candidates.iter().map(|c| c.as_ptr()).collect(),
        argv: null_terminated(&argv),
        sh_argv,
        envp: null_terminated(&envp),
        cwd: cwd.as_ptr(),
        stdio: req.stdio,
        error: AtomicI32::new(0),
    };
    let pid = process::register_spawned(|| clone_child(&args))?;
    let error = args.error.load(Ordering::SeqCst);
    if error != 0 {
        // The child has called `_exit`: collect it so no zombie is left.
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid out pointer.
        while unsafe { libc::waitpid(pid, &mut status, 0) } == -1
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
        process::finished(pid);
        return Err(io::Error::from_raw_os_error(error));
    }
    let opened = if pidfd {
        pidfd_open(pid)
    } else {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    };
    let watch = match opened {
        // SAFETY: the pidfd is owned by the AsyncFd and stays open until it is dropped.
        Ok(fd) => unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map(ExitWatch::Pidfd)
            .map_err(|err| err.into_parts().1),
        Err(_) => signal(SignalKind::child()).map(ExitWatch::Sigchld),
    };
    let mut child = Child {
        pid,
        watch: match watch {
            Ok(watch) => watch,
            Err(err) => {
                // Not watchable: kill it rather than leave it running unobserved.
                kill_and_try_reap(pid);
                process::finished(pid);
                return Err(err);
            }
        },
        status: None,
    };
    // Exits that happened before a `SIGCHLD` stream existed are seen here.
    if let Err(err) = child.try_wait() {
        // Dropping the child kills it; nothing will wait for it as a running command.
        process::finished(pid);
        return Err(err);
    }
    Ok(child)
}

fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Blocks every signal, clones the child on a stack of its own, and restores the mask. Returns
/// the child's pid once it has exec'd or exited.
fn clone_child(args: &ChildArgs<'_>) -> io::Result<libc::pid_t> {
    thread_local! {
        /// This thread's child stack, kept between spawns: mapping and unmapping one per command
        /// cost three system calls and a TLB shootdown across Quest's other threads each time.
        /// Reuse is safe because the calling thread is suspended until its child has exec'd or
        /// exited, and only this thread spawns on it.
        static STACK: std::cell::RefCell<Option<ChildStack>> = const { std::cell::RefCell::new(None) };
    }
    STACK.with(|slot| {
        let mut slot = slot.borrow_mut();
        let stack = match slot.take() {
            Some(stack) => stack,
            None => ChildStack::new()?,
        };
        let result = clone_on(args, &stack);
        *slot = Some(stack);
        result
    })
}

/// [`clone_child`] on `stack`.
fn clone_on(args: &ChildArgs<'_>, stack: &ChildStack) -> io::Result<libc::pid_t> {
    // SAFETY: sigset_t is plain data; sigfillset/sigemptyset initialise it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to sigsets we own.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: `child_main` only reads `args` (which outlives the call: CLONE_VFORK suspends this
    // thread until the child has exec'd or exited) and runs on `stack`, a mapping of its own.
    // Every signal is blocked, so no handler of ours can run in the child before it resets them.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            ptr::from_ref(args).cast_mut().cast(),
        )
    };
    let clone_error = io::Error::last_os_error();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut()) };
    if pid == -1 {
        return Err(clone_error);
    }
    Ok(pid)
}

/// An anonymous mapping for the child's stack, with a guard page at its low end.
struct ChildStack {
    base: *mut libc::c_void,
}

impl ChildStack {
    fn new() -> io::Result<Self> {
        // SAFETY: an anonymous private mapping; checked for MAP_FAILED below.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                CHILD_STACK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = ChildStack { base };
        // SAFETY: the first page of the mapping made above.
        if unsafe { libc::mprotect(base, page_size(), libc::PROT_NONE) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    fn top(&self) -> *mut libc::c_void {
        // The end of the mapping: page aligned, so 16-byte aligned as the ABI wants.
        self.base.wrapping_byte_add(CHILD_STACK)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, which nothing uses any more.
        unsafe { libc::munmap(self.base, CHILD_STACK) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf with a valid name.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// The child, between `clone` and `exec`. Makes system calls on `ChildArgs` and nothing else;
/// on failure stores the errno and exits with 127.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` passed to clone, alive while the parent is suspended.
    let args = unsafe { &*arg.cast::<ChildArgs<'_>>() };
    // SAFETY: the contract of `child_steps`: we are the vfork child.
    let errno = match unsafe { child_steps(args) } {
        Ok(()) => libc::EINVAL,
        Err(err) => err.raw_os_error().unwrap_or(libc::EINVAL),
    };
    args.error.store(errno.max(1), Ordering::SeqCst);
    // SAFETY: ends the child without running anything of the parent's (no atexit handlers).
    unsafe { libc::_exit(127) }
}

/// Signal handlers back to the default, the process group, stdio, the working directory, the
/// sandbox setup, an empty signal mask, then `exec`. Returns only on failure.
///
/// # Safety
/// Only in the `CLONE_VM | CLONE_VFORK` child, with every signal blocked.
unsafe fn child_steps(args: &ChildArgs<'_>) -> io::Result<()> {
    let check = |rc: libc::c_int| {
        if rc == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // No handler of Quest's may run here (it would run on Quest's memory); exec would reset
    // them anyway. Ignored signals stay ignored, except SIGPIPE, which Rust ignores in Quest
    // and a command must get back.
    for sig in 1..=libc::SIGRTMAX() {
        // SAFETY: querying a handler into a struct we own.
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: as above; an invalid signal number only returns EINVAL.
        if unsafe { libc::sigaction(sig, ptr::null(), &mut current) } == -1 {
            continue;
        }
        if current.sa_sigaction != libc::SIG_DFL
            && (current.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
        {
            // SAFETY: a zeroed sigaction is SIG_DFL with no flags and an empty mask.
            let default: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: valid pointer to a sigaction we own.
            unsafe { libc::sigaction(sig, &default, ptr::null_mut()) };
        }
    }
    // SAFETY: setpgid with integer arguments.
    check(unsafe { libc::setpgid(0, 0) })?;
    for (target, &fd) in args.stdio.iter().enumerate() {
        let target = target as libc::c_int;
        if fd == target {
            // dup2 onto itself would keep FD_CLOEXEC.
            // SAFETY: fcntl on a descriptor of ours.
            check(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) })?;
        } else {
            // SAFETY: dup2 on descriptors of ours.
            check(unsafe { libc::dup2(fd, target) })?;
        }
    }
    // SAFETY: a NUL-terminated path prepared by the parent.
    check(unsafe { libc::chdir(args.cwd) })?;
    // SAFETY: we are the child, as `enter` requires.
    unsafe { args.setup.enter()? };
    // SAFETY: an empty set we own; SIG_SETMASK with it unblocks every signal.
    let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, ptr::null_mut());
    }
    exec_first(args)
}

/// Tries each candidate path the way `execvp` does: a missing one moves on, `EACCES` is kept
/// for the end, `ENOEXEC` runs the file with `/bin/sh`.
fn exec_first(args: &ChildArgs<'_>) -> io::Result<()> {
    let mut denied = false;
    let mut last = libc::ENOENT;
    for &path in &args.candidates {
        // SAFETY: NUL-terminated strings and NULL-terminated pointer arrays from the parent.
        unsafe { libc::execve(path, args.argv.as_ptr(), args.envp.as_ptr()) };
        let err = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::ENOENT);
        match err {
            libc::ENOEXEC => {
                if let Some(slot) = args.sh_argv.get(1) {
                    slot.set(path);
                }
                // SAFETY: `sh_argv` is laid out as `*const c_char` (Cell is transparent), NULL
                // terminated, pointing at strings the parent keeps alive.
                unsafe {
                    libc::execve(
                        c"/bin/sh".as_ptr(),
                        args.sh_argv.as_ptr().cast(),
                        args.envp.as_ptr(),
                    )
                };
                return Err(io::Error::last_os_error());
            }
            libc::EACCES => denied = true,
            libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
            _ => return Err(io::Error::from_raw_os_error(err)),
        }
        last = err;
    }
    Err(io::Error::from_raw_os_error(if denied {
        libc::EACCES
    } else {
        last
    }))
}

/// SIGKILLs `pid` and collects it if it is already gone; otherwise [`process::reap_orphans`]
/// collects it later (its process group stays registered until it is).
fn kill_and_try_reap(pid: libc::pid_t) {
    // SAFETY: kill and waitpid on our own child, with a valid status pointer.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut status = 0;
        libc::waitpid(pid, &mut status, libc::WNOHANG);
    }
}

impl Child {
    pub(crate) fn id(&self) -> libc::pid_t {
        self.pid
    }

    /// The exit status if the child has exited (collecting it), `None` while it runs.
    fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let mut raw = 0;
        loop {
            // SAFETY: waitpid on our own child with a valid out pointer.
            match unsafe { libc::waitpid(self.pid, &mut raw, libc::WNOHANG) } {
                0 => return Ok(None),
                -1 => {
                    let err = io::Error::last_os_error();
                    if err.kind() != io::ErrorKind::Interrupted {
                        return Err(err);
                    }
                }
                _ => {
                    let status = ExitStatus::from_raw(raw);
                    self.status = Some(status);
                    return Ok(Some(status));
                }
            }
        }
    }

    /// Waits for the child to exit and collects its status. Cancel-safe: dropping the future
    /// loses nothing, and a later call picks up where it left off.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            match &mut self.watch {
                ExitWatch::Pidfd(fd) => fd.readable().await?.clear_ready(),
                ExitWatch::Sigchld(stream) => {
                    stream.recv().await;
                }
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() {
            kill_and_try_reap(self.pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn program_lookup_follows_execvp() {
        assert_eq!(candidates("./run.sh", None), vec![b"./run.sh".to_vec()]);
        assert_eq!(
            candidates("echo", Some(OsStr::new("/usr/local/bin:/usr/bin/::/bin"))),
            vec![
                b"/usr/local/bin/echo".to_vec(),
                b"/usr/bin/echo".to_vec(),
                b"echo".to_vec(),
                b"/bin/echo".to_vec(),
            ]
        );
        assert_eq!(
            candidates("ls", None),
            vec![b"/bin/ls".to_vec(), b"/usr/bin/ls".to_vec()]
        );
    }

    fn request<'a>(argv: &'a [String], cwd: &'a Path, stdio: [RawFd; 3]) -> SpawnRequest<'a> {
        SpawnRequest {
            program: &argv[0],
            argv,
            cwd,
            clear_env: false,
            env: &[],
            stdio,
        }
    }

    /// A working directory, an unconfined setup for it, and `/dev/null` for the child's stdio.
    fn fixture() -> (tempfile::TempDir, ChildSetup, std::fs::File) {
        let dir = tempfile::tempdir().unwrap();
        let setup = ChildSetup::unconfined(dir.path()).unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        (dir, setup, null)
    }

    fn children() -> Vec<i32> {
        let mut pids = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            pids.extend(text.split_whitespace().map(|p| p.parse::<i32>().unwrap()));
        }
        pids
    }

    #[tokio::test]
    async fn exits_are_collected_through_a_pidfd_or_sigchld() {
        let (dir, setup, null) = fixture();
        let fd = null.as_raw_fd();
        for pidfd in [true, false] {
            let argv: Vec<String> = ["sh", "-c", "sleep 0.2; exit 3"].map(String::from).into();
            let mut child =
                spawn_watched(&request(&argv, dir.path(), [fd; 3]), &setup, pidfd).unwrap();
            assert_eq!(matches!(child.watch, ExitWatch::Pidfd(_)), pidfd);
            let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(status.code(), Some(3), "pidfd: {pidfd}");
            assert!(!children().contains(&child.id()), "pidfd: {pidfd}");
            process::finished(child.id());
        }
    }

    #[tokio::test]
    async fn a_step_that_fails_in_the_child_is_its_errno_and_leaves_no_zombie() {
        let (dir, setup, null) = fixture();
        let fd = null.as_raw_fd();
        let gone = dir.path().join("gone");
        let argv: Vec<String> = vec!["true".into()];
        let err = spawn(&request(&argv, &gone, [fd; 3]), &setup)
            .err()
            .unwrap();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        let argv: Vec<String> = vec!["/definitely/not/a/program".into()];
        let err = spawn(&request(&argv, dir.path(), [fd; 3]), &setup)
            .err()
            .unwrap();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(children(), Vec::<i32>::new());
    }

    #[tokio::test]
    async fn dropping_a_running_child_kills_it() {
        let (dir, setup, null) = fixture();
        let fd = null.as_raw_fd();
        let argv: Vec<String> = ["sleep", "600"].map(String::from).into();
        let child = spawn(&request(&argv, dir.path(), [fd; 3]), &setup).unwrap();
        let pid = child.id();
        drop(child);
        // Dead (a zombie until collected) or already collected.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.rsplit(')').next().unwrap_or("").trim().starts_with('Z'))
                .unwrap_or(true);
            if state {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{pid} still runs");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn overrides_replace_inherited_variables_and_clear_starts_empty() {
        let vars = environment(true, &[("A".into(), "1".into()), ("A".into(), "2".into())]);
        assert_eq!(
            vars,
            BTreeMap::from([(OsString::from("A"), OsString::from("2"))])
        );
        let inherited = environment(false, &[]);
        assert_eq!(inherited.len(), std::env::vars_os().count());
    }
}
