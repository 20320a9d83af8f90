//! Real-process tests for `quest_tools::shell`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

use std::path::Path;
use std::time::Duration;

use quest_tools::shell::{
    CommandLine, ExecOutput, ExecRequest, ShellError, format_for_model, run_command,
};
use tokio_util::sync::CancellationToken;

/// Upper bound for any single test run; a hang fails the test instead of blocking the suite.
const TEST_LIMIT: Duration = Duration::from_secs(60);

fn shell(cmd: &str, cwd: &Path) -> ExecRequest {
    ExecRequest::new(CommandLine::Shell(cmd.to_owned()), cwd)
}

/// A plain `sh -c` command: starts faster than a login shell.
fn sh(cmd: &str, cwd: &Path) -> ExecRequest {
    ExecRequest::new(
        CommandLine::Argv(vec!["sh".into(), "-c".into(), cmd.to_owned()]),
        cwd,
    )
}

async fn run(req: ExecRequest) -> ExecOutput {
    let shown = format!("{:?}", req.command);
    match tokio::time::timeout(TEST_LIMIT, run_command(req, CancellationToken::new())).await {
        Ok(Ok(out)) => out,
        Ok(Err(err)) => panic!("{shown} failed to run: {err}"),
        Err(_) => panic!("{shown} did not finish within {TEST_LIMIT:?}"),
    }
}

/// Whether a pid is gone or a zombie (dead, waiting for a reaper that may never come in a
/// container).
fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            matches!(state, Some("Z" | "X"))
        }
    }
}

/// Waits (bounded) for a process to die; killing is asynchronous in the kernel.
async fn wait_dead(pid: i32) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if is_dead(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    is_dead(pid)
}

fn first_pid(output: &str) -> i32 {
    output
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("expected a pid on the first line of {output:?}"))
}

#[tokio::test]
async fn exit_codes_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let ok = run(ExecRequest::new(
        CommandLine::Argv(vec!["true".into()]),
        dir.path(),
    ))
    .await;
    assert_eq!((ok.exit_code, ok.signal), (Some(0), None));
    assert!(ok.success());
    let failed = run(shell("echo nope; exit 3", dir.path())).await;
    assert_eq!(failed.exit_code, Some(3));
    assert_eq!(failed.aggregated_output, "nope\n");
    assert!(!failed.success());
    assert!(format_for_model(&failed).starts_with("Exit code: 3\nWall time: "));
    assert!(format_for_model(&failed).ends_with("Output:\nnope\n"));
}

#[tokio::test]
async fn stdout_and_stderr_interleave_in_write_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(shell(
        "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done",
        dir.path(),
    ))
    .await;
    let expected: String = (1..=5).map(|i| format!("out{i}\nerr{i}\n")).collect();
    assert_eq!(out.aggregated_output, expected);
    assert_eq!(out.truncated_bytes, 0);
}

/// Peak resident set size of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn huge_output_is_capped_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let total: usize = 50 * 1024 * 1024;
    let before = peak_rss_kib();
    let mut req = shell(
        &format!("printf START; head -c {total} /dev/zero | tr '\\0' a; printf END"),
        dir.path(),
    );
    req.max_output_bytes = 4096;
    let out = run(req).await;
    let after = peak_rss_kib();
    assert_eq!(out.exit_code, Some(0));
    let printed = total + "START".len() + "END".len();
    assert_eq!(out.truncated_bytes, printed - 4096);
    assert!(out.aggregated_output.starts_with("STARTaaa"), "head kept");
    assert!(out.aggregated_output.ends_with("aaaEND"), "tail kept");
    assert!(
        out.aggregated_output
            .contains(&format!("\n[... {} bytes omitted ...]\n", printed - 4096))
    );
    assert!(out.aggregated_output.len() < 4096 + 64);
    // 50 MB went through; memory must not have grown anywhere near that.
    assert!(
        after - before < 16 * 1024,
        "peak RSS grew by {} KiB",
        after - before
    );
    assert!(format_for_model(&out).contains("Output truncated: "));
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut req = sh("sleep 100 & echo $!; wait", dir.path());
    // Long enough for the shell to start its child even on a loaded machine.
    req.timeout = Duration::from_secs(2);
    let out = run(req).await;
    assert!(out.timed_out, "{out:?}");
    assert!(!out.cancelled);
    assert_eq!((out.exit_code, out.signal), (None, Some(15)), "{out:?}");
    assert!(out.duration >= Duration::from_secs(2));
    let grandchild = first_pid(&out.aggregated_output);
    assert!(
        wait_dead(grandchild).await,
        "grandchild {grandchild} survived"
    );
    let text = format_for_model(&out);
    assert!(text.contains("Timed out"), "{text}");
    assert!(
        text.starts_with("Exit code: 143 (terminated by SIGTERM)"),
        "{text}"
    );
}

#[tokio::test]
async fn processes_ignoring_sigterm_get_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    // Ignored signals stay ignored across exec, so the sleep ignores SIGTERM too.
    let mut req = sh("trap '' TERM; sleep 100 & echo $!; wait", dir.path());
    req.timeout = Duration::from_secs(2);
    let out = run(req).await;
    assert!(out.timed_out);
    assert_eq!(out.signal, Some(9), "{out:?}");
    let grandchild = first_pid(&out.aggregated_output);
    assert!(
        wait_dead(grandchild).await,
        "grandchild {grandchild} survived"
    );
}

#[tokio::test]
async fn cancellation_kills_the_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("started");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let cancel = CancellationToken::new();
    let req = shell("sleep 100 & echo $! > started; wait", dir.path());
    let task = tokio::spawn(run_command(req, cancel.clone()));
    // Opening the fifo for reading blocks until the command has started its grandchild and
    // writes the pid: an event, not a guess.
    let pid_text = tokio::time::timeout(
        TEST_LIMIT,
        tokio::task::spawn_blocking(move || std::fs::read_to_string(fifo).unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let grandchild = first_pid(&pid_text);
    assert!(!is_dead(grandchild));
    cancel.cancel();
    let out = tokio::time::timeout(TEST_LIMIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(out.cancelled && !out.timed_out, "{out:?}");
    assert_eq!(out.signal, Some(15));
    assert!(
        wait_dead(grandchild).await,
        "grandchild {grandchild} survived"
    );
    assert!(format_for_model(&out).contains("Cancelled"));
}

#[tokio::test]
async fn dropping_the_future_kills_the_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("started");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let req = shell("sleep 100 & echo $! > started; wait", dir.path());
    let task = tokio::spawn(run_command(req, CancellationToken::new()));
    let pid_text = tokio::task::spawn_blocking(move || std::fs::read_to_string(fifo).unwrap())
        .await
        .unwrap();
    let grandchild = first_pid(&pid_text);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(
        wait_dead(grandchild).await,
        "grandchild {grandchild} survived"
    );
}

#[tokio::test]
async fn a_process_killed_by_a_signal_is_reported_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(shell("echo before; kill -9 $$", dir.path())).await;
    assert_eq!((out.exit_code, out.signal), (None, Some(9)));
    assert!(!out.timed_out && !out.cancelled);
    assert_eq!(out.aggregated_output, "before\n");
    assert!(format_for_model(&out).starts_with("Exit code: 137 (terminated by SIGKILL)"));
}

#[tokio::test]
async fn env_is_injected_and_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let mut req = ExecRequest::new(
        CommandLine::Argv(vec![
            "sh".into(),
            "-c".into(),
            "printf '%s|%s' \"$TRACEPARENT\" \"$HOME\"".into(),
        ]),
        dir.path(),
    );
    req.env = vec![
        ("TRACEPARENT".into(), "00-abc-def-01".into()),
        ("HOME".into(), "/nonexistent-home".into()),
    ];
    let out = run(req).await;
    assert_eq!(out.aggregated_output, "00-abc-def-01|/nonexistent-home");
}

#[tokio::test]
async fn runs_in_the_requested_cwd() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("marker.txt"), "here").unwrap();
    let out = run(shell("pwd -P; cat marker.txt", dir.path())).await;
    let real = dir.path().canonicalize().unwrap();
    assert_eq!(out.aggregated_output, format!("{}\nhere", real.display()));
}

#[tokio::test]
async fn stdin_is_null() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(ExecRequest::new(
        CommandLine::Argv(vec!["cat".into()]),
        dir.path(),
    ))
    .await;
    assert_eq!(
        (out.exit_code, out.aggregated_output.as_str()),
        (Some(0), "")
    );
}

#[tokio::test]
async fn background_process_holding_the_pipe_does_not_block_completion() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(shell("sleep 30 & echo $!; echo done", dir.path())).await;
    assert_eq!(out.exit_code, Some(0));
    assert!(!out.timed_out);
    let pid = first_pid(&out.aggregated_output);
    assert!(out.aggregated_output.ends_with("done\n"));
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
}

#[tokio::test]
async fn start_failures_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = run_command(shell("true", &missing), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ShellError::CwdNotFound(_)));
    assert_eq!(
        err.to_string(),
        format!("working directory {} does not exist", missing.display())
    );

    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let err = run_command(shell("true", &file), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ShellError::CwdNotADirectory(_)), "{err}");

    let err = run_command(
        ExecRequest::new(
            CommandLine::Argv(vec!["quest-no-such-program-xyz".into()]),
            dir.path(),
        ),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "program not found: quest-no-such-program-xyz"
    );

    let err = run_command(
        ExecRequest::new(CommandLine::Argv(vec![]), dir.path()),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ShellError::EmptyCommand));
    let err = run_command(shell("  ", dir.path()), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ShellError::EmptyCommand));

    std::fs::write(dir.path().join("script.sh"), "#!/bin/sh\necho hi\n").unwrap();
    let err = run_command(
        ExecRequest::new(CommandLine::Argv(vec!["./script.sh".into()]), dir.path()),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ShellError::PermissionDenied(_)), "{err}");
}

/// A process exiting at once (a second Ctrl-C) kills what is still running first, even a command
/// that ignores SIGTERM.
#[tokio::test]
async fn kill_running_commands_kills_every_running_group() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("started");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let req = sh(
        "trap '' TERM; sleep 100 & echo $! > started; wait",
        dir.path(),
    );
    let task = tokio::spawn(run_command(req, CancellationToken::new()));
    let pid_text = tokio::time::timeout(
        TEST_LIMIT,
        tokio::task::spawn_blocking(move || std::fs::read_to_string(fifo).unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let grandchild = first_pid(&pid_text);
    assert_eq!(quest_tools::shell::kill_running_commands(), 1);
    let out = tokio::time::timeout(TEST_LIMIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(out.signal, Some(9), "{out:?}");
    assert!(
        wait_dead(grandchild).await,
        "grandchild {grandchild} survived"
    );
    // Finished commands are forgotten.
    assert_eq!(quest_tools::shell::kill_running_commands(), 0);
}

/// Quest ignores `SIGPIPE` (as every Rust program does) and blocks every signal while it starts a
/// command; the command must get neither.
#[tokio::test]
async fn a_command_starts_with_sigpipe_default_and_no_signal_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(ExecRequest::new(
        CommandLine::Argv(vec!["cat".into(), "/proc/self/status".into()]),
        dir.path(),
    ))
    .await;
    let field = |name: &str| {
        let line = out
            .aggregated_output
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {}", out.aggregated_output));
        u64::from_str_radix(line[name.len()..].trim(), 16).unwrap()
    };
    assert_eq!(field("SigBlk:"), 0);
    // SIGPIPE is signal 13: bit 12 of the mask.
    assert_eq!(field("SigIgn:") & (1 << 12), 0);
    // Through a pipe that closes early, the writer dies of SIGPIPE instead of looping on EPIPE.
    let out = run(sh("yes | head -n 1; echo done", dir.path())).await;
    assert_eq!(out.aggregated_output, "y\ndone\n");
}

/// `PATH` is searched as `execvp` does: in the command's own environment, past entries that do
/// not have the program or may not run it, and a script without `#!` runs with `/bin/sh`.
#[tokio::test]
async fn programs_are_looked_up_in_the_commands_path_like_execvp() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    std::fs::create_dir(&first).unwrap();
    std::fs::create_dir(&second).unwrap();
    // Not executable in the first entry, a script without `#!` in the second.
    std::fs::write(first.join("quest-tool"), "echo wrong\n").unwrap();
    std::fs::write(second.join("quest-tool"), "echo \"from second: $1\"\n").unwrap();
    std::fs::set_permissions(
        second.join("quest-tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}:/usr/bin:/bin",
        first.display(),
        dir.path().join("missing").display()
    );
    let mut req = ExecRequest::new(
        CommandLine::Argv(vec!["quest-tool".into(), "arg".into()]),
        dir.path(),
    );
    req.env = vec![("PATH".into(), path.clone())];
    let err = run_command(req.clone(), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "permission denied executing quest-tool");
    req.env = vec![("PATH".into(), format!("{path}:{}", second.display()))];
    let out = run(req.clone()).await;
    assert_eq!(out.aggregated_output, "from second: arg\n");
    assert_eq!(out.exit_code, Some(0));
    // With no PATH at all, execvp's default (/bin:/usr/bin) still finds system programs.
    req.clear_env = true;
    req.env = Vec::new();
    req.command = CommandLine::Argv(vec!["echo".into(), "default path".into()]);
    assert_eq!(run(req).await.aggregated_output, "default path\n");
}

/// Not a test on its own: `a_command_dies_when_quest_is_killed` runs this test binary again with
/// `QUEST_TEST_PID_FILE` set, and this then starts a command that writes its pid there and
/// sleeps. Without the variable it returns at once.
#[tokio::test]
async fn child_process_for_the_kill_test() {
    let Some(file) = std::env::var_os("QUEST_TEST_PID_FILE") else {
        return;
    };
    let file = std::path::PathBuf::from(file);
    let cwd = file.parent().unwrap().to_path_buf();
    let script = format!(
        "echo $$ > '{}.tmp'; mv '{0}.tmp' '{0}'; exec sleep 300",
        file.display()
    );
    let _ = run_command(sh(&script, &cwd), CancellationToken::new()).await;
}

/// A command dies with the process that started it, even one killed with SIGKILL, which has no
/// chance to clean up (`PR_SET_PDEATHSIG`, armed in the child before `exec`).
#[tokio::test]
async fn a_command_dies_when_quest_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pid");
    let mut quest = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_for_the_kill_test", "--nocapture"])
        .env("QUEST_TEST_PID_FILE", &file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + TEST_LIMIT;
    let pid: i32 = loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            break text.trim().parse().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(!is_dead(pid), "the command {pid} should be running");
    quest.kill().unwrap();
    quest.wait().unwrap();
    if !wait_dead(pid).await {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
        panic!("the command {pid} outlived the process that started it");
    }
}
