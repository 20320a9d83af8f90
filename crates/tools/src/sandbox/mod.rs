//! The sandbox that confines commands, enforced by the kernel on the child process between `clone`
//! and `exec`; no helper binary.
//!
//! On Linux a confined command gets, in this order:
//! - `PR_SET_PDEATHSIG` (`SIGKILL`): it dies when Quest does;
//! - a private mount namespace where every protected path (`.git` of a writable root, Quest's
//!   home) that lies inside a writable root is bind-mounted read-only (a user namespace is created
//!   for that when the process lacks `CAP_SYS_ADMIN`);
//! - a Landlock domain: the whole file system readable and executable, writes only beneath the
//!   writable roots (and to `/dev/null` and friends), no TCP `connect`/`bind` when the network is
//!   off and the kernel's ABI has network rules (ABI 4), no connecting to abstract UNIX sockets
//!   of other domains (ABI 6). Landlock also forbids any later `mount`/`umount`, so the read-only
//!   binds cannot be undone from inside;
//! - when the network is off, a seccomp filter that fails `socket`/`socketpair` for every family
//!   but `AF_UNIX` and `io_uring_setup` (whose requests would bypass the socket filter) with
//!   `EPERM`.
//!
//! What a mode needs is checked before anything is spawned: Landlock ABI 3 (Linux 6.2, the first
//! that can deny `truncate`) for `read-only` and `workspace-write`, seccomp for network-off. A
//! kernel that lacks them makes [`Sandbox::prepare`] fail with [`SandboxError::Unsupported`]:
//! a command never runs less confined than its mode says. `danger-full-access` is never
//! confined (the child still dies with Quest).

use std::path::{Component, Path, PathBuf};

pub use quest_protocol::sandbox::{SandboxMode, SandboxPolicy, SandboxWorkspaceWrite};

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod linux;

#[cfg(target_os = "linux")]
pub(crate) use linux::ChildSetup;

/// The Landlock ABI version a confining mode needs (the first with `LANDLOCK_ACCESS_FS_TRUNCATE`).
pub const REQUIRED_LANDLOCK_ABI: i32 = 3;

/// Why a command cannot be run under its sandbox. Never retried: the caller reports the message
/// to the model (or the user) instead of running the command.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Returned by [`Sandbox::prepare`] when the kernel lacks what the mode needs (Landlock
    /// missing or too old, seccomp unavailable, not Linux).
    #[error(
        "sandbox mode {mode} cannot be enforced on this system: {reason}; refusing to run the command unconfined (use --sandbox danger-full-access to run without a sandbox)"
    )]
    Unsupported {
        /// The mode asked for.
        mode: SandboxMode,
        /// What is missing.
        reason: String,
    },
    /// Returned by [`Sandbox::check_workdir`] when a command's working directory lies outside
    /// the workspace and the writable roots.
    #[error(
        "working directory {} is outside the sandbox's readable roots (the workspace {} and the writable roots)",
        .workdir.display(),
        .workspace.display()
    )]
    WorkdirOutside {
        /// The directory asked for.
        workdir: PathBuf,
        /// The thread's workspace.
        workspace: PathBuf,
    },
    /// Returned by [`Sandbox::check_write`] when a file change targets a path the sandbox keeps
    /// read-only.
    #[error("{} is not writable in sandbox mode {mode}: {reason}", .path.display())]
    NotWritable {
        /// The path.
        path: PathBuf,
        /// The mode.
        mode: SandboxMode,
        /// Why (outside the writable roots, or a protected path).
        reason: String,
    },
    /// Returned by [`Sandbox::prepare`] when building the Landlock ruleset or the seccomp
    /// program fails for another reason (an unreadable writable root, ...).
    #[error("cannot set up the sandbox: {0}")]
    Setup(String),
}

/// A writable directory and the paths beneath it that stay read-only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WritableRoot {
    /// The directory (canonical).
    pub root: PathBuf,
    /// Existing paths beneath `root` kept read-only (canonical).
    pub read_only_subpaths: Vec<PathBuf>,
}

/// The sandbox of one thread: its policy, its workspace and the paths that stay read-only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    /// Mode and settings.
    pub policy: SandboxPolicy,
    /// The thread's workspace (its working directory), writable in `workspace-write`.
    pub workspace: PathBuf,
    /// Paths kept read-only even inside a writable root: Quest's home and config directory.
    /// (`.git` of every writable root is always added.)
    pub protected: Vec<PathBuf>,
}

impl Sandbox {
    /// A sandbox for `workspace` under `policy`, protecting `protected`.
    pub fn new(
        policy: SandboxPolicy,
        workspace: impl Into<PathBuf>,
        protected: Vec<PathBuf>,
    ) -> Self {
        Sandbox {
            policy,
            workspace: workspace.into(),
            protected,
        }
    }

    /// The mode.
    pub fn mode(&self) -> SandboxMode {
        self.policy.mode()
    }

    /// The writable roots of this sandbox (empty for `read-only`; `/` with nothing protected for
    /// `danger-full-access`). Roots that do not exist are left out; protected paths are the
    /// existing `.git` of each root and every [`Sandbox::protected`] path beneath it.
    pub fn writable_roots(&self) -> Vec<WritableRoot> {
        let settings = match &self.policy {
            SandboxPolicy::ReadOnly => return Vec::new(),
            SandboxPolicy::DangerFullAccess => {
                return vec![WritableRoot {
                    root: PathBuf::from("/"),
                    read_only_subpaths: Vec::new(),
                }];
            }
            SandboxPolicy::WorkspaceWrite(settings) => settings,
        };
        let mut candidates = vec![self.workspace.clone()];
        candidates.extend(settings.writable_roots.iter().cloned());
        if !settings.exclude_tmpdir_env_var
            && let Some(tmp) = std::env::var_os("TMPDIR").filter(|v| !v.is_empty())
        {
            candidates.push(PathBuf::from(tmp));
        }
        if !settings.exclude_slash_tmp {
            candidates.push(PathBuf::from("/tmp"));
            candidates.push(PathBuf::from("/dev/shm"));
        }
        let protected: Vec<PathBuf> = self
            .protected
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        let mut roots: Vec<WritableRoot> = Vec::new();
        for candidate in candidates {
            let Ok(root) = std::fs::canonicalize(&candidate) else {
                continue;
            };
            if roots.iter().any(|r| r.root == root) {
                continue;
            }
            let mut read_only_subpaths = Vec::new();
            // Most roots (/tmp, /dev/shm) have no `.git`: one `lstat` says so, where resolving
            // the path would walk every component of it first.
            let dot_git = root.join(".git");
            if std::fs::symlink_metadata(&dot_git).is_ok()
                && let Ok(git) = std::fs::canonicalize(&dot_git)
                && git.starts_with(&root)
            {
                read_only_subpaths.push(git);
            }
            for p in &protected {
                if p.starts_with(&root) && !read_only_subpaths.contains(p) {
                    read_only_subpaths.push(p.clone());
                }
            }
            roots.push(WritableRoot {
                root,
                read_only_subpaths,
            });
        }
        roots
    }

    /// Refuses a working directory outside the workspace and the writable roots (in
    /// `danger-full-access` any directory is accepted). `dir` must already be absolute.
    ///
    /// # Errors
    /// [`SandboxError::WorkdirOutside`].
    pub fn check_workdir(&self, dir: &Path) -> Result<(), SandboxError> {
        if self.mode() == SandboxMode::DangerFullAccess {
            return Ok(());
        }
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| normalize(dir));
        let workspace =
            std::fs::canonicalize(&self.workspace).unwrap_or_else(|_| normalize(&self.workspace));
        let inside = dir.starts_with(&workspace)
            || self
                .writable_roots()
                .iter()
                .any(|root| dir.starts_with(&root.root));
        if inside {
            Ok(())
        } else {
            Err(SandboxError::WorkdirOutside {
                workdir: dir,
                workspace,
            })
        }
    }

    /// Refuses a write to `path` (absolute) that the sandbox would deny a command: outside every
    /// writable root, or inside a protected path. Used by in-process writers such as
    /// `apply_patch`, so they obey the same rules as commands.
    ///
    /// # Errors
    /// [`SandboxError::NotWritable`].
    pub fn check_write(&self, path: &Path) -> Result<(), SandboxError> {
        let mode = self.mode();
        if mode == SandboxMode::DangerFullAccess {
            return Ok(());
        }
        let resolved = resolve_existing_prefix(path);
        let not_writable = |reason: String| SandboxError::NotWritable {
            path: path.to_path_buf(),
            mode,
            reason,
        };
        let roots = self.writable_roots();
        let Some(root) = roots.iter().find(|r| resolved.starts_with(&r.root)) else {
            return Err(not_writable(
                "it is outside the workspace and the writable roots".to_string(),
            ));
        };
        // A `.git` that does not exist yet is still the repository's metadata once created.
        let git = root.root.join(".git");
        if resolved.starts_with(&git) {
            return Err(not_writable(format!("{} is kept read-only", git.display())));
        }
        for sub in &root.read_only_subpaths {
            if resolved.starts_with(sub) {
                return Err(not_writable(format!("{} is kept read-only", sub.display())));
            }
        }
        Ok(())
    }

    /// Checks that the kernel can enforce this sandbox and builds everything the child needs
    /// (Landlock ruleset, seccomp program, mount plan), so that nothing but system calls is left
    /// for the child between `clone` and `exec`.
    ///
    /// # Errors
    /// [`SandboxError::Unsupported`] when the kernel lacks what the mode needs,
    /// [`SandboxError::Setup`] when a rule cannot be built.
    #[cfg(target_os = "linux")]
    pub(crate) fn prepare(&self, cwd: &Path) -> Result<ChildSetup, SandboxError> {
        linux::prepare(Some(self), cwd)
    }
}

/// What this system can enforce: the Landlock ABI version (0 without Landlock) and whether the
/// seccomp filter used for network-off can be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSupport {
    /// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`, or 0.
    pub landlock_abi: i32,
    /// The seccomp socket filter compiles for this architecture.
    pub seccomp: bool,
}

impl KernelSupport {
    /// Probes the running kernel (once per process).
    pub fn detect() -> Self {
        #[cfg(target_os = "linux")]
        {
            static SUPPORT: std::sync::OnceLock<KernelSupport> = std::sync::OnceLock::new();
            *SUPPORT.get_or_init(linux::kernel_support)
        }
        #[cfg(not(target_os = "linux"))]
        {
            KernelSupport {
                landlock_abi: 0,
                seccomp: false,
            }
        }
    }

    /// Whether `mode` can be enforced (with or without network).
    pub fn can_enforce(&self, mode: SandboxMode) -> bool {
        match mode {
            SandboxMode::DangerFullAccess => true,
            SandboxMode::ReadOnly | SandboxMode::WorkspaceWrite => {
                self.landlock_abi >= REQUIRED_LANDLOCK_ABI && self.seccomp
            }
        }
    }

    /// How the sandbox of `mode` is enforced here, for request metadata and logs, e.g.
    /// `landlock-abi-7+seccomp`, or `none`.
    pub fn enforcement(&self, mode: SandboxMode) -> String {
        match mode {
            SandboxMode::DangerFullAccess => "none".to_string(),
            SandboxMode::ReadOnly | SandboxMode::WorkspaceWrite if self.can_enforce(mode) => {
                format!("landlock-abi-{}+seccomp", self.landlock_abi)
            }
            SandboxMode::ReadOnly | SandboxMode::WorkspaceWrite => "unavailable".to_string(),
        }
    }
}

/// `path` with `.` and `..` removed lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The canonical form of the longest existing ancestor of `path`, with the rest appended
/// (lexically normalized): where a write to `path` would land, following symlinks that exist.
fn resolve_existing_prefix(path: &Path) -> PathBuf {
    let path = normalize(path);
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = std::fs::canonicalize(existing) {
            let mut out = canonical;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace_write(dir: &Path) -> Sandbox {
        Sandbox::new(
            SandboxPolicy::WorkspaceWrite(SandboxWorkspaceWrite {
                exclude_slash_tmp: true,
                exclude_tmpdir_env_var: true,
                ..Default::default()
            }),
            dir,
            vec![dir.join("home")],
        )
    }

    #[test]
    fn writable_roots_protect_git_and_home() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let roots = workspace_write(dir.path()).writable_roots();
        assert_eq!(
            roots,
            vec![WritableRoot {
                root: root.clone(),
                read_only_subpaths: vec![root.join(".git"), root.join("home")],
            }]
        );
    }

    #[test]
    fn check_write_follows_roots_and_protected_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        let sandbox = workspace_write(dir.path());
        sandbox.check_write(&dir.path().join("src/new.rs")).unwrap();
        for denied in [
            dir.path().join(".git/hooks/pre-commit"),
            dir.path().join("home/config.toml"),
            dir.path().join("../escape.txt"),
            PathBuf::from("/etc/passwd"),
        ] {
            let err = sandbox.check_write(&denied).unwrap_err();
            assert!(matches!(err, SandboxError::NotWritable { .. }), "{err}");
        }
        let full = Sandbox::new(SandboxPolicy::DangerFullAccess, dir.path(), Vec::new());
        full.check_write(Path::new("/etc/passwd")).unwrap();
        let ro = Sandbox::new(SandboxPolicy::ReadOnly, dir.path(), Vec::new());
        assert!(ro.check_write(&dir.path().join("a.txt")).is_err());
    }

    #[test]
    fn workdir_must_be_inside_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let sandbox = workspace_write(dir.path());
        sandbox.check_workdir(&dir.path().join("sub")).unwrap();
        let err = sandbox.check_workdir(Path::new("/etc")).unwrap_err();
        assert!(matches!(err, SandboxError::WorkdirOutside { .. }), "{err}");
        Sandbox::new(SandboxPolicy::DangerFullAccess, dir.path(), Vec::new())
            .check_workdir(Path::new("/etc"))
            .unwrap();
    }

    #[test]
    fn symlinked_escape_is_not_writable() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let sandbox = workspace_write(dir.path());
        assert!(sandbox.check_write(&dir.path().join("link/x.txt")).is_err());
    }
}
