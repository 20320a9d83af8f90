//! The Linux enforcement: everything that runs in the child between `clone` and `exec`.
//!
//! With [`crate::spawn`], this is where Quest uses `unsafe`: the child's setup and the raw
//! system calls Landlock detection, namespaces and mounts need. Everything that allocates or can fail
//! for a reason other than the kernel (paths, rules, the BPF program) is built in the parent by
//! [`prepare`]; the child only makes system calls on memory prepared for it: it runs inside Quest's memory
//! (see [`crate::spawn`]), where only async-signal-safe work that writes nothing is sound.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::{KernelSupport, REQUIRED_LANDLOCK_ABI, Sandbox, SandboxError, SandboxMode};

/// Device files a confined command may still write (`> /dev/null`).
const WRITABLE_DEVICES: [&str; 5] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/tty",
    "/dev/urandom",
];

/// `LANDLOCK_CREATE_RULESET_VERSION`.
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

/// The Landlock ABI of the running kernel, 0 when Landlock is absent or disabled.
pub(super) fn landlock_abi() -> i32 {
    // SAFETY: `landlock_create_ruleset` with a null attribute pointer, size 0 and the VERSION
    // flag only returns the ABI number (or -1 with errno); it reads and writes no memory.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(abi).unwrap_or(0).max(0)
}

pub(super) fn kernel_support() -> KernelSupport {
    KernelSupport {
        landlock_abi: landlock_abi(),
        seccomp: network_filter().is_ok(),
    }
}

/// The seccomp program used when the network is off: `socket`/`socketpair` fail with `EPERM`
/// unless the family is `AF_UNIX`; `io_uring_setup` fails with `EPERM` (its socket and connect
/// operations would not pass through the filter).
fn network_filter() -> Result<BpfProgram, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let not_unix = SeccompRule::new(vec![
        SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Ne,
            libc::AF_UNIX as u64,
        )
        .map_err(|e| e.to_string())?,
    ])
    .map_err(|e| e.to_string())?;
    let mut rules = std::collections::BTreeMap::new();
    rules.insert(libc::SYS_socket, vec![not_unix.clone()]);
    rules.insert(libc::SYS_socketpair, vec![not_unix]);
    // An empty rule list matches the system call unconditionally.
    rules.insert(libc::SYS_io_uring_setup, Vec::new());
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    BpfProgram::try_from(filter).map_err(|e| e.to_string())
}

/// One read-only bind mount for the child: `path` over itself.
#[derive(Debug)]
struct ReadOnlyBind {
    path: CString,
}

/// Everything the child does before `exec`, prepared in the parent.
#[derive(Debug)]
pub(crate) struct ChildSetup {
    /// Quest's pid: when the child's parent is no longer this, Quest died before the death
    /// signal was armed.
    parent_pid: libc::pid_t,
    /// Paths bind-mounted read-only in a private mount namespace.
    binds: Vec<ReadOnlyBind>,
    /// The working directory, entered again after the binds so it resolves through them.
    cwd: CString,
    /// `/proc/self/uid_map` and `/proc/self/gid_map` contents when a user namespace is needed.
    uid_map: CString,
    gid_map: CString,
    /// The Landlock domain to enter; `None` when unconfined.
    ruleset: Option<RulesetCreated>,
    /// The seccomp program to load; `None` when the network is allowed.
    seccomp: Option<BpfProgram>,
}

fn cstring(path: &Path) -> Result<CString, SandboxError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| SandboxError::Setup(format!("path {} contains a NUL byte", path.display())))
}

/// Builds the child's setup for `sandbox` (`None`: no confinement, only the death signal).
pub(super) fn prepare(sandbox: Option<&Sandbox>, cwd: &Path) -> Result<ChildSetup, SandboxError> {
    // SAFETY: getpid, getuid and getgid cannot fail and touch no memory.
    let (parent_pid, uid, gid) = unsafe { (libc::getpid(), libc::getuid(), libc::getgid()) };
    let mut setup = ChildSetup {
        parent_pid,
        binds: Vec::new(),
        cwd: cstring(cwd)?,
        uid_map: CString::new(format!("{uid} {uid} 1\n")).unwrap_or_default(),
        gid_map: CString::new(format!("{gid} {gid} 1\n")).unwrap_or_default(),
        ruleset: None,
        seccomp: None,
    };
    let Some(sandbox) = sandbox else {
        return Ok(setup);
    };
    let mode = sandbox.mode();
    if mode == SandboxMode::DangerFullAccess {
        return Ok(setup);
    }
    let abi = landlock_abi();
    if abi < REQUIRED_LANDLOCK_ABI {
        return Err(SandboxError::Unsupported {
            mode,
            reason: if abi == 0 {
                "the kernel has no Landlock (it needs Linux 6.2 or newer with Landlock enabled in the LSM list)".to_string()
            } else {
                format!(
                    "the kernel's Landlock ABI is {abi}, and {REQUIRED_LANDLOCK_ABI} (Linux 6.2) is needed to deny truncation outside the writable roots"
                )
            },
        });
    }
    let network = sandbox.policy.has_network();
    if !network {
        setup.seccomp = Some(
            network_filter().map_err(|reason| SandboxError::Unsupported {
                mode,
                reason: format!(
                    "the seccomp filter that denies network sockets cannot be built: {reason}"
                ),
            })?,
        );
    }
    let setup_err =
        |what: &str, err: &dyn std::fmt::Display| SandboxError::Setup(format!("{what}: {err}"));
    let fs_abi = ABI::V3;
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(fs_abi))
        .map_err(|e| setup_err("Landlock file system rules", &e))?;
    if !network && abi >= 4 {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(ABI::V4))
            .map_err(|e| setup_err("Landlock network rules", &e))?;
    }
    if !network && abi >= 6 {
        ruleset = ruleset
            .scope(Scope::AbstractUnixSocket)
            .map_err(|e| setup_err("Landlock abstract socket scope", &e))?;
    }
    let mut created = ruleset
        .create()
        .map_err(|e| setup_err("creating the Landlock ruleset", &e))?;
    let root = PathFd::new("/").map_err(|e| setup_err("opening /", &e))?;
    created = created
        .add_rule(PathBeneath::new(root, AccessFs::from_read(fs_abi)))
        .map_err(|e| setup_err("Landlock read rule for /", &e))?;
    for device in WRITABLE_DEVICES {
        // A device missing from a minimal container is simply not writable.
        if let Ok(fd) = PathFd::new(device) {
            created = created
                .add_rule(PathBeneath::new(fd, AccessFs::from_file(fs_abi)))
                .map_err(|e| setup_err(device, &e))?;
        }
    }
    for writable in sandbox.writable_roots() {
        let fd = PathFd::new(&writable.root)
            .map_err(|e| setup_err(&format!("opening {}", writable.root.display()), &e))?;
        created = created
            .add_rule(PathBeneath::new(fd, AccessFs::from_all(fs_abi)))
            .map_err(|e| {
                setup_err(
                    &format!("Landlock rule for {}", writable.root.display()),
                    &e,
                )
            })?;
        for sub in writable.read_only_subpaths {
            setup.binds.push(ReadOnlyBind {
                path: cstring(&sub)?,
            });
        }
    }
    setup.ruleset = Some(created);
    Ok(setup)
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == -1 { Err(last_error()) } else { Ok(()) }
}

/// Writes `content` to the file at `path`.
///
/// # Safety
/// Called only in the spawned child before `exec`: it makes `open`, `write` and `close` system calls on
/// the given buffers and nothing else.
unsafe fn write_proc_file(path: &CStr, content: &CStr) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last_error());
    }
    let data = content.to_bytes();
    // SAFETY: `data` is a valid buffer of `data.len()` bytes; `fd` was just opened by us.
    let written = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    let result = if written < 0 {
        Err(last_error())
    } else {
        Ok(())
    };
    // SAFETY: closing the descriptor opened above, exactly once.
    unsafe { libc::close(fd) };
    result
}

/// The `MS_*` flags a read-only remount must keep so the kernel accepts it inside a user
/// namespace (locked flags of the original mount cannot be cleared there).
fn kept_mount_flags(statvfs_flags: libc::c_ulong) -> libc::c_ulong {
    let mut flags = 0;
    for (st, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if statvfs_flags & st != 0 {
            flags |= ms;
        }
    }
    flags
}

impl ChildSetup {
    /// Builds the setup for an unconfined command: only the death signal.
    pub(crate) fn unconfined(cwd: &Path) -> Result<Self, SandboxError> {
        prepare(None, cwd)
    }

    /// Enters a private mount namespace (and a user namespace when not privileged) and makes
    /// every protected path a read-only bind mount of itself.
    ///
    /// # Safety
    /// Child only, between `clone` and `exec`: system calls on prepared buffers, no allocation.
    unsafe fn bind_read_only(&self) -> io::Result<()> {
        // SAFETY: unshare takes flags only.
        let own_ns = unsafe { libc::unshare(libc::CLONE_NEWNS) };
        if own_ns == -1 {
            // Without CAP_SYS_ADMIN a mount namespace needs a user namespace that maps our own
            // uid and gid onto themselves.
            // SAFETY: unshare takes flags only; the child is single-threaded, as it requires.
            check(unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) })?;
            // SAFETY: child-only helper on static or prepared buffers (see its contract).
            unsafe {
                write_proc_file(c"/proc/self/setgroups", c"deny\n")?;
                write_proc_file(c"/proc/self/uid_map", &self.uid_map)?;
                write_proc_file(c"/proc/self/gid_map", &self.gid_map)?;
            }
        }
        // Our binds must not propagate back to Quest's namespace.
        // SAFETY: all pointers are NUL-terminated static strings or null.
        check(unsafe {
            libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        })?;
        for bind in &self.binds {
            let path = bind.path.as_ptr();
            // SAFETY: `path` is a prepared NUL-terminated string that outlives the call.
            check(unsafe {
                libc::mount(
                    path,
                    path,
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                )
            })?;
            // SAFETY: statvfs writes only into the zeroed struct we own.
            let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
            // SAFETY: `path` as above; `stat` is a valid out pointer.
            check(unsafe { libc::statvfs(path, &mut stat) })?;
            let flags =
                libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | kept_mount_flags(stat.f_flag);
            // SAFETY: `path` as above; null source, type and data are allowed for a remount.
            check(unsafe {
                libc::mount(
                    std::ptr::null(),
                    path,
                    std::ptr::null(),
                    flags,
                    std::ptr::null(),
                )
            })?;
        }
        // The working directory was entered before the binds; enter it again so a cwd inside a
        // protected path sees the read-only mount.
        // SAFETY: `cwd` is a prepared NUL-terminated string.
        check(unsafe { libc::chdir(self.cwd.as_ptr()) })
    }

    /// Runs in the child between `clone` and `exec`: death signal, read-only binds, Landlock,
    /// seccomp, in that order (mounts are impossible once Landlock is on).
    ///
    /// # Safety
    /// Only in the child of [`crate::spawn`], which shares Quest's memory: everything it touches
    /// was prepared by [`prepare`]; it makes system calls, does not allocate, and writes nothing
    /// of Quest's.
    pub(crate) unsafe fn enter(&self) -> io::Result<()> {
        // SAFETY: prctl with integer arguments only.
        check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) })?;
        // SAFETY: getppid cannot fail.
        if unsafe { libc::getppid() } != self.parent_pid {
            // Quest died between the clone and prctl: the death signal will never come.
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        if !self.binds.is_empty() {
            // SAFETY: we are in the child (caller's contract).
            unsafe { self.bind_read_only()? };
        }
        if let Some(ruleset) = &self.ruleset {
            // SAFETY: a bitwise copy that `restrict_self` consumes and drops here. The ruleset
            // owns no heap memory, only its descriptor, and the child has its own descriptor
            // table: dropping the copy closes the child's descriptor, never Quest's, and Quest's
            // original is left untouched.
            let ruleset = unsafe { std::ptr::read(ruleset) };
            match ruleset.restrict_self() {
                Ok(status) if status.ruleset == RulesetStatus::FullyEnforced => {}
                Ok(_) => return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
                Err(_) => return Err(io::Error::from_raw_os_error(libc::EPERM)),
            }
        }
        if let Some(program) = &self.seccomp {
            seccompiler::apply_filter(program)
                .map_err(|_| io::Error::from_raw_os_error(libc::EPERM))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_has_landlock_and_the_filter_builds() {
        // The machines Quest is built and tested on run Linux 6.2 or newer with Landlock on;
        // if this fails, the sandbox tests below it would all be refusals.
        let support = kernel_support();
        assert!(support.landlock_abi >= REQUIRED_LANDLOCK_ABI, "{support:?}");
        assert!(support.seccomp, "{support:?}");
    }

    #[test]
    fn remount_keeps_locked_flags() {
        let flags = kept_mount_flags(libc::ST_NOSUID | libc::ST_NODEV | libc::ST_RDONLY);
        assert_eq!(flags, libc::MS_NOSUID | libc::MS_NODEV);
    }
}
