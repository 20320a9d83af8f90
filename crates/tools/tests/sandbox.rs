//! The sandbox against real processes on this kernel: what a confined command cannot do, and that
//! the same commands succeed without confinement. Each denial is paired with the same command
//! succeeding under `danger-full-access`, so a test cannot pass because the command was broken.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quest_tools::env_policy::ShellEnvironmentPolicy;
use quest_tools::process;
use quest_tools::sandbox::{
    KernelSupport, Sandbox, SandboxMode, SandboxPolicy, SandboxWorkspaceWrite,
};
use quest_tools::shell::{CommandLine, ExecOutput, ExecRequest, ShellError, run_command};
use tokio_util::sync::CancellationToken;

const TEST_LIMIT: Duration = Duration::from_secs(60);

/// A workspace with a `.git`, a Quest home under `/tmp`, and a directory outside both.
struct Fixture {
    _dirs: Vec<tempfile::TempDir>,
    workspace: PathBuf,
    home: PathBuf,
    outside: PathBuf,
}

fn fixture() -> Fixture {
    let ws = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ws.path().join(".git/hooks")).unwrap();
    std::fs::write(ws.path().join(".git/config"), "[core]\n").unwrap();
    std::fs::write(home.path().join("state.sqlite"), "db").unwrap();
    Fixture {
        workspace: ws.path().to_path_buf(),
        home: home.path().to_path_buf(),
        outside: outside.path().to_path_buf(),
        _dirs: vec![ws, home, outside],
    }
}

impl Fixture {
    /// `workspace-write` where `/tmp` is writable (the default), so the home and `outside`
    /// directories (both under `/tmp`) are inside a writable root unless protected.
    fn workspace_write(&self, settings: SandboxWorkspaceWrite) -> Sandbox {
        Sandbox::new(
            SandboxPolicy::WorkspaceWrite(settings),
            &self.workspace,
            vec![self.home.clone()],
        )
    }

    fn sandbox(&self, mode: SandboxMode) -> Sandbox {
        Sandbox::new(
            SandboxPolicy::new(mode, SandboxWorkspaceWrite::default()),
            &self.workspace,
            vec![self.home.clone()],
        )
    }
}

async fn try_run(cmd: &str, cwd: &Path, sandbox: Sandbox) -> Result<ExecOutput, ShellError> {
    let mut req = ExecRequest::new(
        CommandLine::Argv(vec!["bash".into(), "-c".into(), cmd.to_owned()]),
        cwd,
    );
    req.sandbox = Some(sandbox);
    tokio::time::timeout(TEST_LIMIT, run_command(req, CancellationToken::new()))
        .await
        .unwrap_or_else(|_| panic!("`{cmd}` did not finish within {TEST_LIMIT:?}"))
}

async fn run(cmd: &str, cwd: &Path, sandbox: Sandbox) -> ExecOutput {
    let mode = sandbox.mode();
    try_run(cmd, cwd, sandbox)
        .await
        .unwrap_or_else(|err| panic!("`{cmd}` under {mode} failed to start: {err}"))
}

fn assert_ok(out: &ExecOutput, what: &str) {
    assert!(out.success(), "{what} should succeed: {out:#?}");
}

fn assert_denied(out: &ExecOutput, what: &str) {
    assert!(!out.success(), "{what} should be denied: {out:#?}");
    let text = out.aggregated_output.to_lowercase();
    assert!(
        text.contains("permission denied")
            || text.contains("read-only file system")
            || text.contains("operation not permitted"),
        "{what} should fail for lack of permission: {out:#?}"
    );
}

#[test]
fn kernel_supports_the_confining_modes() {
    let support = KernelSupport::detect();
    assert!(
        support.can_enforce(SandboxMode::WorkspaceWrite),
        "{support:?}"
    );
    assert_eq!(
        support.enforcement(SandboxMode::WorkspaceWrite),
        format!("landlock-abi-{}+seccomp", support.landlock_abi)
    );
    assert_eq!(support.enforcement(SandboxMode::DangerFullAccess), "none");
}

#[tokio::test]
async fn workspace_write_allows_the_workspace_and_tmp() {
    let f = fixture();
    let sb = f.workspace_write(SandboxWorkspaceWrite::default());
    let out = run(
        "echo hi > new.txt && mkdir -p src/a && echo x > src/a/b && rm new.txt && t=$(mktemp) && echo ok > $t && cat $t && echo > /dev/null",
        &f.workspace,
        sb,
    )
    .await;
    assert_ok(&out, "writing in the workspace and /tmp");
    assert_eq!(out.aggregated_output, "ok\n");
    assert_eq!(
        std::fs::read_to_string(f.workspace.join("src/a/b")).unwrap(),
        "x\n"
    );
}

#[tokio::test]
async fn workspace_write_denies_outside_git_and_home_and_full_access_allows_them() {
    let f = fixture();
    let no_tmp = SandboxWorkspaceWrite {
        exclude_slash_tmp: true,
        exclude_tmpdir_env_var: true,
        ..Default::default()
    };
    let outside = f.outside.join("escape.txt");
    let writes = [
        (
            format!("echo pwned > {}", outside.display()),
            "a file outside the workspace",
        ),
        (
            "echo '[core] fsmonitor = evil' >> .git/config".to_string(),
            ".git/config",
        ),
        (
            "echo evil > .git/hooks/pre-commit".to_string(),
            "a new git hook",
        ),
        ("rm .git/config".to_string(), "deleting .git/config"),
        (
            format!("echo x > {}/state.sqlite", f.home.display()),
            "the Quest home's database",
        ),
        (
            format!("touch {}/config.toml", f.home.display()),
            "a new file in the Quest home",
        ),
        (
            format!("truncate -s 0 {}", f.home.join("state.sqlite").display()),
            "truncating the database",
        ),
    ];
    for (cmd, what) in &writes {
        // Outside the workspace with /tmp excluded; .git and the home with /tmp writable too.
        let settings = if what.contains("outside") {
            no_tmp.clone()
        } else {
            SandboxWorkspaceWrite::default()
        };
        let out = run(cmd, &f.workspace, f.workspace_write(settings)).await;
        assert_denied(&out, what);
    }
    // A working directory inside .git must not get around the read-only bind.
    let out = run(
        "echo evil > config",
        &f.workspace.join(".git"),
        f.workspace_write(SandboxWorkspaceWrite::default()),
    )
    .await;
    assert_denied(&out, ".git/config through a cwd inside .git");
    assert!(!outside.exists());
    assert_eq!(
        std::fs::read_to_string(f.workspace.join(".git/config")).unwrap(),
        "[core]\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.home.join("state.sqlite")).unwrap(),
        "db"
    );
    assert!(!f.workspace.join(".git/hooks/pre-commit").exists());

    for (cmd, what) in &writes {
        let out = run(cmd, &f.workspace, f.sandbox(SandboxMode::DangerFullAccess)).await;
        assert_ok(&out, &format!("{what} under danger-full-access"));
    }
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "pwned\n");
    assert!(f.workspace.join(".git/hooks/pre-commit").exists());
}

#[tokio::test]
async fn read_only_refuses_writes_in_the_workspace() {
    let f = fixture();
    for cmd in ["touch a.txt", "mkdir d", "echo x > /tmp/quest-ro-test-$$"] {
        let out = run(cmd, &f.workspace, f.sandbox(SandboxMode::ReadOnly)).await;
        assert_denied(&out, cmd);
    }
    let out = run(
        "cat .git/config && ls /",
        &f.workspace,
        f.sandbox(SandboxMode::ReadOnly),
    )
    .await;
    assert_ok(&out, "reading under read-only");
    let out = run(
        "touch a.txt",
        &f.workspace,
        f.sandbox(SandboxMode::WorkspaceWrite),
    )
    .await;
    assert_ok(&out, "the same write under workspace-write");
}

/// Connects to `port` from bash's `/dev/tcp`, and says whether the listener saw it.
async fn connect_from_sandbox(f: &Fixture, sandbox: Sandbox) -> (ExecOutput, bool) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = run(
        &format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected"),
        &f.workspace,
        sandbox,
    )
    .await;
    // The command has exited: a connection it made is already in the accept queue.
    let accepted = listener.accept().is_ok();
    (out, accepted)
}

#[tokio::test]
async fn network_is_off_unless_allowed() {
    let f = fixture();
    for mode in [SandboxMode::WorkspaceWrite, SandboxMode::ReadOnly] {
        let (out, accepted) = connect_from_sandbox(&f, f.sandbox(mode)).await;
        assert_denied(&out, &format!("a TCP connection under {mode}"));
        assert!(!accepted, "the listener saw a connection under {mode}");
    }
    // Creating any non-UNIX socket fails, UDP included; UNIX sockets still work.
    let out = run(
        "python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)'",
        &f.workspace,
        f.sandbox(SandboxMode::WorkspaceWrite),
    )
    .await;
    if out.exit_code != Some(127) {
        assert_denied(&out, "a UDP socket");
        let out = run(
            "python3 -c 'import socket; a, b = socket.socketpair(); a.send(b\"x\"); print(b.recv(1))'",
            &f.workspace,
            f.sandbox(SandboxMode::WorkspaceWrite),
        )
        .await;
        assert_ok(&out, "a UNIX socket pair");
    }

    let (out, accepted) = connect_from_sandbox(&f, f.sandbox(SandboxMode::DangerFullAccess)).await;
    assert_ok(&out, "a TCP connection under danger-full-access");
    assert!(accepted);
    let with_network = f.workspace_write(SandboxWorkspaceWrite {
        network_access: true,
        ..Default::default()
    });
    let (out, accepted) = connect_from_sandbox(&f, with_network).await;
    assert_ok(&out, "a TCP connection with network_access = true");
    assert!(accepted);
}

#[tokio::test]
async fn workdir_outside_the_roots_is_refused() {
    let f = fixture();
    let err = try_run(
        "true",
        Path::new("/etc"),
        f.sandbox(SandboxMode::WorkspaceWrite),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("outside the sandbox"), "{err}");
    run(
        "true",
        Path::new("/etc"),
        f.sandbox(SandboxMode::DangerFullAccess),
    )
    .await;
}

#[tokio::test]
async fn environment_policy_hides_key_variables() {
    let f = fixture();
    let vars = [
        ("PATH", std::env::var("PATH").unwrap()),
        ("OPENAI_API_KEY", "sk-test-secret".to_string()),
        ("GITHUB_TOKEN", "ghp_secret".to_string()),
        ("QUEST_HOME", f.home.display().to_string()),
        ("CUSTOM_PROVIDER_CRED", "cred".to_string()),
        ("VISIBLE", "yes".to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v));
    let env = ShellEnvironmentPolicy::default().build(vars, &["CUSTOM_PROVIDER_CRED"]);
    let mut req = ExecRequest::new(CommandLine::Argv(vec!["env".into()]), &f.workspace);
    req.env = env;
    req.clear_env = true;
    req.sandbox = Some(f.sandbox(SandboxMode::WorkspaceWrite));
    let out = run_command(req, CancellationToken::new()).await.unwrap();
    assert_ok(&out, "env");
    assert!(out.aggregated_output.contains("VISIBLE=yes"), "{out:#?}");
    for name in [
        "OPENAI_API_KEY",
        "GITHUB_TOKEN",
        "QUEST_HOME",
        "CUSTOM_PROVIDER_CRED",
    ] {
        assert!(
            !out.aggregated_output.contains(name),
            "{name} leaked: {}",
            out.aggregated_output
        );
    }
}

fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => matches!(
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next()),
            Some("Z" | "X")
        ),
    }
}

async fn wait_dead(pid: i32) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if is_dead(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn background_and_setsid_escapes_die_with_kill_all() {
    process::supervise_children().unwrap();
    let f = fixture();
    let out = run(
        "sleep 300 >/dev/null 2>&1 & echo $!; setsid sleep 301 >/dev/null 2>&1 & echo $!",
        &f.workspace,
        f.sandbox(SandboxMode::WorkspaceWrite),
    )
    .await;
    assert_ok(&out, "starting background processes");
    let pids: Vec<i32> = out
        .aggregated_output
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{out:#?}");
    for pid in &pids {
        assert!(
            !is_dead(*pid),
            "{pid} should outlive its command until Quest exits"
        );
    }
    process::kill_all();
    for pid in pids {
        assert!(wait_dead(pid).await, "{pid} survived kill_all");
    }
}
