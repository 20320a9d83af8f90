//! The `quest` binary: one clap definition for every front-end, shell completions generated from
//! it, and nothing else.

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use quest_exec::{ExecArgs, run_exec};

mod demo;
mod goal_cmd;
mod mcp_cmd;

/// Quest: a coding agent that pursues goals until they are done, and stops when it cannot progress.
#[derive(Parser, Debug)]
#[command(name = "quest", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    tui: TuiArgs,
}

/// Flags of the terminal UI (`quest` with no subcommand, and `quest resume`).
#[derive(clap::Args, Debug, Clone, Default)]
struct TuiArgs {
    /// Attach to a running app-server (`quest app-server --listen ws://…`) instead of starting one.
    #[arg(long, value_name = "ws://HOST:PORT")]
    remote: Option<String>,
    /// Environment variable holding the bearer token for `--remote` (sent as
    /// `Authorization: Bearer <token>`).
    #[arg(long, value_name = "VAR", requires = "remote")]
    remote_auth_token_env: Option<String>,
    /// Model for new threads.
    #[arg(short = 'm', long)]
    model: Option<String>,
    /// Override a configuration value (TOML), as `key=value`; repeatable.
    #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Working directory for the session.
    #[arg(short = 'C', long = "cd", value_name = "DIR")]
    cd: Option<std::path::PathBuf>,
}

/// `quest resume` flags.
#[derive(clap::Args, Debug, Clone)]
struct ResumeArgs {
    /// The thread to reopen; without it, a picker lists saved threads.
    #[arg(value_name = "THREAD_ID", conflicts_with = "last")]
    thread: Option<String>,
    /// Reopen the most recently updated thread.
    #[arg(long)]
    last: bool,
    #[command(flatten)]
    tui: TuiArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Reopen a saved thread in the terminal UI (a picker, `--last`, or a thread id).
    Resume(ResumeArgs),
    /// Run a prompt (or a goal with --goal) without a UI.
    #[command(visible_alias = "e")]
    Exec(Box<ExecArgs>),
    /// Offline tour: a scripted model walks goals to complete, usage-limited and blocked.
    Demo,
    /// Read and change goals from the shell.
    Goal(goal_cmd::GoalArgs),
    /// Manage MCP servers (`[mcp_servers]` in config.toml): list, get, add, remove.
    Mcp(mcp_cmd::McpArgs),
    /// Serve the app-server v2 protocol (JSON-RPC) on stdio or a WebSocket, for editors, scripts
    /// and Codex's TUI (`codex --remote ws://…`).
    AppServer(quest_app_server::AppServerArgs),
    /// Print shell completions.
    Completion {
        /// Shell to generate for.
        #[arg(value_enum, default_value_t = Shell::Bash)]
        shell: Shell,
    },
}

fn main() {
    let cli = Cli::parse();
    // Processes that commands leave behind (background jobs, `setsid` escapes) are re-parented
    // to Quest instead of init, so that they can be killed when Quest exits.
    if let Err(err) = quest_tools::process::supervise_children() {
        eprintln!("warning: cannot adopt orphaned command processes: {err}");
    }
    let Some(command) = cli.command else {
        std::process::exit(runtime().block_on(run_tui(cli.tui, None)));
    };
    let code = match command {
        Command::Resume(args) => {
            let startup = match (args.thread, args.last) {
                (Some(id), _) => quest_tui::app::Startup::Resume(id),
                (None, true) => quest_tui::app::Startup::ResumeLast,
                (None, false) => quest_tui::app::Startup::ResumePicker,
            };
            runtime().block_on(run_tui(args.tui, Some(startup)))
        }
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "quest", &mut std::io::stdout());
            0
        }
        Command::Exec(args) => exec_runtime().block_on(run_exec(*args)),
        Command::Goal(args) => goal_cmd::run(args),
        Command::Mcp(args) => mcp_cmd::run(args),
        Command::Demo => runtime().block_on(demo::run()),
        Command::AppServer(args) => runtime().block_on(quest_app_server::run(args)),
    };
    // Whatever the commands started dies with Quest.
    quest_tools::process::kill_all();
    std::process::exit(code);
}

async fn run_tui(args: TuiArgs, startup: Option<quest_tui::app::Startup>) -> i32 {
    let remote_token = match &args.remote_auth_token_env {
        Some(var) => match std::env::var(var) {
            Ok(token) if !token.trim().is_empty() => Some(token.trim().to_string()),
            _ => {
                eprintln!("Error: --remote-auth-token-env: environment variable {var} is not set");
                return 2;
            }
        },
        None => None,
    };
    if args.remote.is_some() && (!args.config.is_empty() || args.cd.is_some()) {
        eprintln!(
            "Error: -c and -C configure the in-process server; with --remote, configure the server where it runs"
        );
        return 2;
    }
    let cwd = args
        .cd
        .as_ref()
        .map(|dir| dir.display().to_string())
        .or_else(|| {
            args.remote.is_none().then(|| {
                std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default()
            })
        })
        .filter(|d| !d.is_empty());
    quest_tui::run(quest_tui::TuiOptions {
        remote: args.remote,
        remote_token,
        config: quest_core::ConfigOverrides {
            cwd: args.cd,
            raw_overrides: args.config,
            ..quest_core::ConfigOverrides::default()
        },
        model: args.model,
        cwd,
        startup,
    })
    .await
}

/// `quest exec`'s runtime: one thread. Exec drives one thread's turns; every store call goes to
/// the blocking pool anyway, and a second worker only added wake-ups between threads (about
/// 0.5 ms of CPU per goal turn, measured with the `goal_session` bench).
fn exec_runtime() -> tokio::runtime::Runtime {
    build_runtime(&mut tokio::runtime::Builder::new_current_thread())
}

fn runtime() -> tokio::runtime::Runtime {
    build_runtime(tokio::runtime::Builder::new_multi_thread().worker_threads(2))
}

fn build_runtime(builder: &mut tokio::runtime::Builder) -> tokio::runtime::Runtime {
    match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("Error: cannot start the async runtime: {err}");
            std::process::exit(1);
        }
    }
}
