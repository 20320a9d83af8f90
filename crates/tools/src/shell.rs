//! Running a real process for the model: a command line in a working directory, with a timeout,
//! cancellation, an output cap that keeps the head and the tail, and cleanup of the whole process
//! group.
//!
//! How a run works:
//! - The process is spawned in a new process group with stdin on `/dev/null` and stdout and stderr
//!   on **one** pipe, so the aggregated output has exactly the order the process wrote it in.
//! - Output is read as it arrives into a head+tail buffer: at most
//!   `max_output_bytes` are kept (the first half and the last half); memory stays bounded however
//!   much the process prints.
//! - On timeout or cancellation the whole group gets `SIGTERM`, then `SIGKILL` after
//!   [`KILL_GRACE`]. That is reported in [`ExecOutput`] (`timed_out`, `cancelled`, `signal`), not as
//!   an error.
//! - When the direct child exits on its own, the pipe is drained until every writer is gone or
//!   [`DRAIN_AFTER_EXIT`] has passed. Background processes the command started and left running
//!   (`server &`) are not killed; they lose their output pipe.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::process;
use crate::sandbox::{ChildSetup, Sandbox, SandboxError, SandboxMode};
use crate::spawn::{self, SpawnRequest};

/// Time between `SIGTERM` and `SIGKILL` when a command is stopped.
pub const KILL_GRACE: Duration = Duration::from_secs(1);

/// How long output is still read after the direct child exited, when something it left running
/// keeps the output pipe open.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(250);

/// Default timeout used by [`ExecRequest::new`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default output cap used by [`ExecRequest::new`] (64 KiB).
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// How long reading goes on after `SIGKILL`, for processes that escaped the group but hold the
/// pipe.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(1);

/// Size of one read from the output pipe.
const READ_CHUNK: usize = 64 * 1024;

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandLine {
    /// A program and its arguments, run directly (the program is looked up in `PATH`).
    Argv(Vec<String>),
    /// A shell command string, run as `/bin/bash -lc <cmd>` (`/bin/sh -c <cmd>` where bash is
    /// absent).
    Shell(String),
}

/// What the process reads on stdin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stdin {
    /// `/dev/null`: a command waiting for input sees end of file at once.
    #[default]
    Null,
}

/// One command to run.
#[derive(Clone, Debug)]
pub struct ExecRequest {
    /// The command line.
    pub command: CommandLine,
    /// Working directory; must exist.
    pub cwd: PathBuf,
    /// Wall-clock limit from spawn; the process group is killed when it passes.
    pub timeout: Duration,
    /// Variables added to (or overriding) the inherited environment, e.g. `TRACEPARENT`.
    pub env: Vec<(String, String)>,
    /// Most bytes of output kept: the first half and the last half; the middle is dropped.
    pub max_output_bytes: usize,
    /// What the process reads on stdin.
    pub stdin: Stdin,
    /// Start from an empty environment instead of Quest's: `env` is then the whole environment
    /// (see [`crate::env_policy`]).
    pub clear_env: bool,
    /// The sandbox the command runs in; `None` runs it unconfined (it still dies with Quest).
    pub sandbox: Option<Sandbox>,
}

impl ExecRequest {
    /// A request with [`DEFAULT_TIMEOUT`], [`DEFAULT_MAX_OUTPUT_BYTES`], no extra environment and
    /// a null stdin.
    pub fn new(command: CommandLine, cwd: impl Into<PathBuf>) -> Self {
        Self {
            command,
            cwd: cwd.into(),
            timeout: DEFAULT_TIMEOUT,
            env: Vec::new(),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            stdin: Stdin::Null,
            clear_env: false,
            sandbox: None,
        }
    }
}

/// What a finished (or stopped) command produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code, when the process exited normally.
    pub exit_code: Option<i32>,
    /// Signal number, when the process was terminated by a signal (ours or anyone's).
    pub signal: Option<i32>,
    /// stdout and stderr interleaved in the order written, lossy UTF-8, head and tail kept with a
    /// marker in between when capped.
    pub aggregated_output: String,
    /// Bytes of output dropped by the cap (0 when everything was kept).
    pub truncated_bytes: usize,
    /// Wall time from spawn to the end of output collection.
    pub duration: Duration,
    /// The timeout passed and the process group was killed.
    pub timed_out: bool,
    /// The run was cancelled and the process group was killed.
    pub cancelled: bool,
}

impl ExecOutput {
    /// True when the process exited by itself with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && !self.cancelled
    }
}

/// Why a command could not be run at all. A command that ran and failed, was killed or timed out
/// is not an error: it is an [`ExecOutput`]. None of these is retried; the caller reports the
/// message to the model as the tool output.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// Returned by [`run_command`] when the working directory does not exist.
    #[error("working directory {} does not exist", .0.display())]
    CwdNotFound(PathBuf),
    /// Returned by [`run_command`] when the working directory is not a directory.
    #[error("working directory {} is not a directory", .0.display())]
    CwdNotADirectory(PathBuf),
    /// Returned by [`run_command`] for an empty argv or an empty shell string.
    #[error("empty command")]
    EmptyCommand,
    /// Returned by [`run_command`] when the program is not found (not in `PATH`, or no such file).
    #[error("program not found: {0}")]
    ProgramNotFound(String),
    /// Returned by [`run_command`] when the program exists but may not be executed.
    #[error("permission denied executing {0}")]
    PermissionDenied(String),
    /// Returned by [`run_command`] for any other spawn failure (too many processes, bad
    /// environment string, ...).
    #[error("failed to start {program}: {source}")]
    Spawn {
        /// Program that failed to start.
        program: String,
        /// The OS error.
        source: io::Error,
    },
    /// Returned by [`run_command`] when the command's sandbox cannot be enforced, or its working
    /// directory lies outside the sandbox: the command was not started.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// Returned by [`run_command`] when the sandbox could not be entered in the child (the kernel
    /// refused a namespace, mount, Landlock or seccomp step): the command did not run.
    #[error("could not enter the {mode} sandbox before running {program}: {source}")]
    SandboxSetup {
        /// Program that was to run.
        program: String,
        /// The mode.
        mode: SandboxMode,
        /// The OS error from the child.
        source: io::Error,
    },
    /// Returned by [`run_command`] when the output pipe or waiting on the process fails.
    #[error("I/O error while running {program}: {source}")]
    Io {
        /// Program being run.
        program: String,
        /// The OS error.
        source: io::Error,
    },
}

/// The shell used for [`CommandLine::Shell`]: `/bin/bash` when present, else `/bin/sh`.
fn shell_program() -> &'static (&'static str, &'static str) {
    static SHELL: OnceLock<(&'static str, &'static str)> = OnceLock::new();
    SHELL.get_or_init(|| {
        if Path::new("/bin/bash").exists() {
            ("/bin/bash", "-lc")
        } else {
            ("/bin/sh", "-c")
        }
    })
}

/// The argv actually executed for a command line.
fn resolved_argv(command: &CommandLine) -> Vec<String> {
    match command {
        CommandLine::Argv(argv) => argv.clone(),
        CommandLine::Shell(cmd) => {
            let (shell, flag) = shell_program();
            vec![(*shell).to_owned(), (*flag).to_owned(), cmd.clone()]
        }
    }
}

/// The command as one shell-quoted line, as shown in the exec JSONL `command` field, e.g.
/// `/bin/bash -lc 'echo hi'`.
pub fn display_command(command: &CommandLine) -> String {
    let argv = resolved_argv(command);
    let mut out = String::new();
    for (i, arg) in argv.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        push_quoted(&mut out, arg);
    }
    out
}

/// Appends `arg` quoted for a POSIX shell: bare when it only has safe characters, otherwise in
/// single quotes with embedded quotes written as `'\''`.
fn push_quoted(out: &mut String, arg: &str) {
    let safe = !arg.is_empty()
        && arg.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'-' | b'.' | b'/' | b'@' | b'%' | b'+' | b'=' | b':' | b','
                )
        });
    if safe {
        out.push_str(arg);
        return;
    }
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
}

/// The tool output text the model sees, e.g.
/// `"Exit code: 0\nWall time: 0.1 seconds\nOutput:\nhi\n"`, with lines for a timeout, a
/// cancellation, a terminating signal and truncated output when they apply.
pub fn format_for_model(output: &ExecOutput) -> String {
    let mut text = String::new();
    match (output.exit_code, output.signal) {
        (Some(code), _) => {
            let _ = writeln!(text, "Exit code: {code}");
        }
        (None, Some(sig)) => {
            let _ = writeln!(
                text,
                "Exit code: {} (terminated by {})",
                128 + sig,
                signal_name(sig)
            );
        }
        (None, None) => text.push_str("Exit code: unknown\n"),
    }
    let _ = writeln!(
        text,
        "Wall time: {:.1} seconds",
        output.duration.as_secs_f64()
    );
    if output.timed_out {
        text.push_str("Timed out: the command did not finish in time and was killed\n");
    }
    if output.cancelled {
        text.push_str("Cancelled: the command was interrupted and killed\n");
    }
    if output.truncated_bytes > 0 {
        let _ = writeln!(
            text,
            "Output truncated: {} bytes omitted from the middle",
            output.truncated_bytes
        );
    }
    text.push_str("Output:\n");
    text.push_str(&output.aggregated_output);
    text
}

/// Name of a signal number for messages (`SIGKILL`), or `signal N` when unknown.
fn signal_name(sig: i32) -> String {
    match Signal::try_from(sig) {
        Ok(signal) => signal.as_str().to_owned(),
        Err(_) => format!("signal {sig}"),
    }
}

/// Runs `req` to completion, until its timeout, or until `cancel` fires, and returns what it
/// printed and how it ended.
///
/// A timed-out or cancelled run kills the whole process group (`SIGTERM`, then `SIGKILL` after
/// [`KILL_GRACE`]) and is reported in the [`ExecOutput`]. Dropping the returned future kills the
/// group with `SIGKILL`.
///
/// # Errors
/// [`ShellError`] when the process cannot be started (missing cwd or program, empty command) or
/// its output pipe fails.
pub async fn run_command(
    req: ExecRequest,
    cancel: CancellationToken,
) -> Result<ExecOutput, ShellError> {
    match std::fs::metadata(&req.cwd) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(ShellError::CwdNotADirectory(req.cwd)),
        Err(_) => return Err(ShellError::CwdNotFound(req.cwd)),
    }
    let argv = resolved_argv(&req.command);
    let program = match argv.first() {
        Some(p) if !p.is_empty() => p.clone(),
        _ => return Err(ShellError::EmptyCommand),
    };
    if let CommandLine::Shell(cmd) = &req.command
        && cmd.trim().is_empty()
    {
        return Err(ShellError::EmptyCommand);
    }

    if let Some(sandbox) = &req.sandbox {
        sandbox.check_workdir(&req.cwd)?;
    }
    let child_setup = match &req.sandbox {
        Some(sandbox) => sandbox.prepare(&req.cwd)?,
        None => ChildSetup::unconfined(&req.cwd)?,
    };
    let confined = req
        .sandbox
        .as_ref()
        .map(Sandbox::mode)
        .filter(|mode| *mode != SandboxMode::DangerFullAccess);

    let io_err = |source| ShellError::Io {
        program: program.clone(),
        source,
    };
    let (reader, writer) = io::pipe().map_err(io_err)?;
    let stdin = match req.stdin {
        Stdin::Null => std::fs::File::open("/dev/null").map_err(io_err)?,
    };
    let spawn_req = SpawnRequest {
        program: &program,
        argv: &argv,
        cwd: &req.cwd,
        clear_env: req.clear_env,
        env: &req.env,
        stdio: [stdin.as_raw_fd(), writer.as_raw_fd(), writer.as_raw_fd()],
    };
    let started = Instant::now();
    let spawned = spawn::spawn(&spawn_req, &child_setup);
    // The child has its own copies now; drop ours of the pipe's write end so the pipe reaches
    // end of file once the process group is done writing.
    drop((stdin, writer, child_setup));
    let mut child = spawned.map_err(|source| spawn_error(&program, confined, source))?;
    let pid = Some(child.id());
    let mut guard = GroupGuard {
        pgid: pid.map(Pid::from_raw),
        armed: true,
    };
    let mut reader = pipe::Receiver::from_owned_fd(reader.into()).map_err(io_err)?;

    let mut output = CappedOutput::new(req.max_output_bytes);
    let mut chunk = vec![0u8; READ_CHUNK];
    let deadline = started + req.timeout;
    let mut status: Option<ExitStatus> = None;
    let mut eof = false;
    let mut stop: Option<StopReason> = None;
    let mut sigkill_at: Option<Instant> = None;
    let mut stop_reading_at: Option<Instant> = None;

    while !(eof && status.is_some()) {
        let stop_reading = stop_reading_at.unwrap_or(deadline);
        tokio::select! {
            read = reader.read(&mut chunk), if !eof => {
                match read {
                    Ok(0) => eof = true,
                    Ok(n) => output.push(&chunk[..n]),
                    Err(source) if source.kind() == io::ErrorKind::Interrupted => {}
                    Err(source) => return Err(io_err(source)),
                }
            }
            waited = child.wait(), if status.is_none() => {
                let exit = waited.map_err(io_err)?;
                status = Some(exit);
                if stop.is_none() {
                    stop_reading_at = Some(Instant::now() + DRAIN_AFTER_EXIT);
                }
            }
            () = tokio::time::sleep_until(deadline), if stop.is_none() && status.is_none() => {
                stop = Some(StopReason::Timeout);
                guard.signal(Signal::SIGTERM);
                sigkill_at = Some(Instant::now() + KILL_GRACE);
            }
            () = cancel.cancelled(), if stop.is_none() && status.is_none() => {
                stop = Some(StopReason::Cancelled);
                guard.signal(Signal::SIGTERM);
                sigkill_at = Some(Instant::now() + KILL_GRACE);
            }
            () = sleep_until_opt(sigkill_at) => {
                guard.signal(Signal::SIGKILL);
                sigkill_at = None;
                stop_reading_at = Some(Instant::now() + DRAIN_AFTER_KILL);
            }
            () = tokio::time::sleep_until(stop_reading), if status.is_some() && stop_reading_at.is_some() => {
                break;
            }
        }
    }
    // After a stop, make sure nothing of the group survives the grace period: members that
    // ignored SIGTERM but closed the pipe would otherwise be left behind.
    if sigkill_at.is_some() {
        guard.signal(Signal::SIGKILL);
    }
    guard.armed = false;
    let duration = started.elapsed();
    if let Some(pid) = pid {
        process::finished(pid);
    }
    process::reap_orphans();
    let (aggregated_output, truncated_bytes) = output.finish();
    let status = match status {
        Some(status) => status,
        None => child.wait().await.map_err(io_err)?,
    };
    Ok(ExecOutput {
        exit_code: status.code(),
        signal: status.signal(),
        aggregated_output,
        truncated_bytes,
        duration,
        timed_out: stop == Some(StopReason::Timeout),
        cancelled: stop == Some(StopReason::Cancelled),
    })
}

/// Maps a failed spawn to its error. Under a sandbox, errors other than a missing or
/// non-executable program come from the child's sandbox setup (`pre_exec`), which reports only
/// an errno.
fn spawn_error(program: &str, confined: Option<SandboxMode>, source: io::Error) -> ShellError {
    match (source.kind(), confined) {
        (io::ErrorKind::NotFound, _) => ShellError::ProgramNotFound(program.to_owned()),
        (io::ErrorKind::PermissionDenied, None) => ShellError::PermissionDenied(program.to_owned()),
        (_, Some(mode)) if source.raw_os_error() != Some(libc::EACCES) => {
            ShellError::SandboxSetup {
                program: program.to_owned(),
                mode,
                source,
            }
        }
        (io::ErrorKind::PermissionDenied, Some(_)) => {
            ShellError::PermissionDenied(program.to_owned())
        }
        _ => ShellError::Spawn {
            program: program.to_owned(),
            source,
        },
    }
}

/// Why we stopped a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopReason {
    Timeout,
    Cancelled,
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Kills (`SIGKILL`) every command still running and whatever those commands started, for a
/// process about to exit without running destructors (a second Ctrl-C). Returns how many
/// command process groups were registered.
pub fn kill_running_commands() -> usize {
    let groups = process::registered_groups();
    process::kill_all();
    groups
}

/// Kills the process group with `SIGKILL` when dropped while armed (the run's future was dropped
/// mid-way).
struct GroupGuard {
    pgid: Option<Pid>,
    armed: bool,
}

impl GroupGuard {
    /// Signals the group and every process that left it with `setsid` while its parent lives.
    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            process::kill_group_tree(pgid.as_raw(), signal);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            self.signal(Signal::SIGKILL);
            if let Some(pgid) = self.pgid {
                process::finished(pgid.as_raw());
            }
        }
    }
}

/// Output buffer that keeps the first `cap / 2` bytes and the last `cap - cap / 2` bytes.
#[derive(Debug)]
pub(crate) struct CappedOutput {
    head: Vec<u8>,
    head_cap: usize,
    tail: VecDeque<u8>,
    tail_cap: usize,
    omitted: usize,
}

impl CappedOutput {
    pub(crate) fn new(cap: usize) -> Self {
        let head_cap = cap / 2;
        let tail_cap = cap - head_cap;
        Self {
            head: Vec::with_capacity(head_cap.min(READ_CHUNK)),
            head_cap,
            tail: VecDeque::new(),
            tail_cap,
            omitted: 0,
        }
    }

    pub(crate) fn push(&mut self, mut data: &[u8]) {
        if self.head.len() < self.head_cap {
            let take = (self.head_cap - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        if data.is_empty() {
            return;
        }
        if data.len() >= self.tail_cap {
            self.omitted += self.tail.len() + data.len() - self.tail_cap;
            self.tail.clear();
            self.tail.extend(&data[data.len() - self.tail_cap..]);
            return;
        }
        let overflow = (self.tail.len() + data.len()).saturating_sub(self.tail_cap);
        self.omitted += overflow;
        self.tail.drain(..overflow);
        self.tail.extend(data);
    }

    /// The kept text (lossy UTF-8, with a marker where bytes were dropped) and the number of
    /// bytes dropped.
    pub(crate) fn finish(self) -> (String, usize) {
        let mut tail = Vec::from(self.tail);
        if self.omitted == 0 {
            let mut all = self.head;
            all.append(&mut tail);
            return (String::from_utf8_lossy(&all).into_owned(), 0);
        }
        let mut omitted = self.omitted;
        // Do not show half a character at either side of the cut.
        let mut head = self.head;
        if let Err(err) = std::str::from_utf8(&head)
            && err.error_len().is_none()
        {
            omitted += head.len() - err.valid_up_to();
            head.truncate(err.valid_up_to());
        }
        let skip = tail
            .iter()
            .take(3)
            .take_while(|b| (**b & 0b1100_0000) == 0b1000_0000)
            .count();
        omitted += skip;
        let mut text = String::from_utf8_lossy(&head).into_owned();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        let _ = writeln!(text, "[... {omitted} bytes omitted ...]");
        text.push_str(&String::from_utf8_lossy(&tail[skip..]));
        (text, omitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_when_needed() {
        assert_eq!(
            display_command(&CommandLine::Argv(vec![
                "ls".into(),
                "-la".into(),
                "my file".into(),
                "it's".into(),
                String::new(),
            ])),
            r#"ls -la 'my file' 'it'\''s' ''"#
        );
        let (shell, flag) = shell_program();
        assert_eq!(
            display_command(&CommandLine::Shell("echo hi".into())),
            format!("{shell} {flag} 'echo hi'")
        );
    }

    #[test]
    fn capped_output_keeps_head_and_tail() {
        let mut out = CappedOutput::new(10);
        for b in b"abcdefghijklmnopqrstuvwxyz".chunks(3) {
            out.push(b);
        }
        let (text, omitted) = out.finish();
        assert_eq!(omitted, 16);
        assert_eq!(text, "abcde\n[... 16 bytes omitted ...]\nvwxyz");
    }

    #[test]
    fn capped_output_under_cap_is_verbatim() {
        let mut out = CappedOutput::new(10);
        out.push(b"hello");
        out.push(b"world");
        assert_eq!(out.finish(), ("helloworld".to_owned(), 0));
    }

    #[test]
    fn capped_output_zero_cap_drops_everything() {
        let mut out = CappedOutput::new(0);
        out.push(b"hello");
        assert_eq!(out.finish(), ("[... 5 bytes omitted ...]\n".to_owned(), 5));
    }

    #[test]
    fn capped_output_does_not_split_characters() {
        // "é" is two bytes; the head cut falls inside the first one and the tail cut inside
        // the last one.
        let mut out = CappedOutput::new(4);
        out.push("aéxxxxxéz".as_bytes());
        let (text, omitted) = out.finish();
        assert_eq!(text, "a\n[... 9 bytes omitted ...]\nz");
        assert_eq!(omitted, 9);
    }

    #[test]
    fn model_text_mentions_timeout_signal_and_truncation() {
        let out = ExecOutput {
            exit_code: None,
            signal: Some(15),
            aggregated_output: "partial\n".into(),
            truncated_bytes: 42,
            duration: Duration::from_millis(1500),
            timed_out: true,
            cancelled: false,
        };
        assert_eq!(
            format_for_model(&out),
            "Exit code: 143 (terminated by SIGTERM)\nWall time: 1.5 seconds\n\
             Timed out: the command did not finish in time and was killed\n\
             Output truncated: 42 bytes omitted from the middle\nOutput:\npartial\n"
        );
        let ok = ExecOutput {
            exit_code: Some(0),
            signal: None,
            aggregated_output: "hi\n".into(),
            truncated_bytes: 0,
            duration: Duration::from_millis(100),
            timed_out: false,
            cancelled: false,
        };
        assert_eq!(
            format_for_model(&ok),
            "Exit code: 0\nWall time: 0.1 seconds\nOutput:\nhi\n"
        );
    }
}
