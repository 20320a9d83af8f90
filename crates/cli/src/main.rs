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
#[command(name = "quest", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    let code = match cli.command {
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "quest", &mut std::io::stdout());
            0
        }
        Command::Exec(args) => runtime().block_on(run_exec(*args)),
        Command::Goal(args) => goal_cmd::run(args),
        Command::Mcp(args) => mcp_cmd::run(args),
        Command::Demo => runtime().block_on(demo::run()),
        Command::AppServer(args) => runtime().block_on(quest_app_server::run(args)),
    };
    // Whatever the commands started dies with Quest.
    quest_tools::process::kill_all();
    std::process::exit(code);
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("Error: cannot start the async runtime: {err}");
            std::process::exit(1);
        }
    }
}
