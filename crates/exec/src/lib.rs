//! `quest exec`: run one turn (or, with `--goal`, a goal to its stop state) without a UI.
//!
//! stdout carries only JSONL with `--json`; everything meant for people goes to stderr. This crate
//! parses no config files and touches no SQL directly: it drives `quest-core`.
#![warn(missing_docs, unreachable_pub)]

mod processor;
pub mod sanitize;

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use quest_core::config::parse_duration;
use quest_core::goal::GoalBudgets;
use quest_core::{
    ConfigOverrides, CoreError, EventMsg, GoalError, ManagerOptions, NewGoal, Op, StartedThread,
    ThreadManager, ThreadOptions, load_config,
};
use quest_protocol::ThreadId;
use quest_protocol::goal::GoalStatus;

pub use processor::{EventProcessor, OutputMode};

/// Exit code of a failed turn or runtime error.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code of bad command-line usage or configuration.
pub const EXIT_USAGE: i32 = 2;

/// Exit code of `quest exec --goal` for a run that ended with the goal in `status`.
pub fn goal_exit_code(status: GoalStatus) -> i32 {
    match status {
        GoalStatus::Complete => 0,
        GoalStatus::Blocked => 3,
        GoalStatus::UsageLimited => 4,
        GoalStatus::BudgetLimited => 5,
        GoalStatus::Paused => 6,
        // A run never ends while active; treat it as a failed run.
        GoalStatus::Active => EXIT_FAILURE,
    }
}

/// `quest exec` arguments. Every flag `@openai/codex-sdk` passes is accepted.
#[derive(Args, Debug, Default, Clone)]
#[command(
    args_conflicts_with_subcommands = false,
    subcommand_precedence_over_arg = true
)]
pub struct ExecArgs {
    /// Print the JSONL event stream on stdout.
    #[arg(long = "json", alias = "experimental-json", global = true)]
    pub json: bool,
    /// Override a config key: `-c key=value` (value parsed as TOML, else a string).
    #[arg(short = 'c', long = "config", value_name = "KEY=VALUE", global = true)]
    pub config: Vec<String>,
    /// Model slug.
    #[arg(short = 'm', long, global = true)]
    pub model: Option<String>,
    /// Recorded source of a new thread (accepted for SDK compatibility).
    #[arg(long, global = true, hide = true)]
    pub thread_source: Option<String>,
    /// Sandbox mode: read-only, workspace-write, danger-full-access.
    #[arg(short = 's', long, global = true)]
    pub sandbox: Option<String>,
    /// When to ask before running a command: untrusted, on-failure, on-request, never (the
    /// default). Nobody answers in exec: a request is denied and the model is told.
    #[arg(short = 'a', long = "ask-for-approval", global = true)]
    pub ask_for_approval: Option<String>,
    /// Working directory of the thread.
    #[arg(short = 'C', long = "cd", global = true)]
    pub cd: Option<PathBuf>,
    /// Extra writable directories for the workspace-write sandbox.
    #[arg(long = "add-dir", global = true)]
    pub add_dir: Vec<PathBuf>,
    /// Run outside a git repository.
    #[arg(long, global = true)]
    pub skip_git_repo_check: bool,
    /// JSON Schema the final message must follow (accepted; not enforced yet).
    #[arg(long, global = true)]
    pub output_schema: Option<PathBuf>,
    /// Accepted and ignored (SDK compatibility).
    #[arg(long, global = true, hide = true)]
    pub cyber_access_program: Option<String>,
    /// Do not record the thread.
    #[arg(long, global = true)]
    pub ephemeral: bool,
    /// Write the last agent message to this file.
    #[arg(short = 'o', long, global = true)]
    pub output_last_message: Option<PathBuf>,
    /// Colour: always, never, auto.
    #[arg(long, default_value = "auto", global = true)]
    pub color: String,
    /// Images to attach (accepted; not sent yet).
    #[arg(short = 'i', long = "image", global = true)]
    pub images: Vec<PathBuf>,
    /// Run the goal loop for this objective until a stop state ("-" reads stdin).
    #[arg(long, global = true, value_name = "OBJECTIVE", num_args = 0..=1, default_missing_value = "")]
    pub goal: Option<String>,
    /// Token budget of the goal.
    #[arg(long, global = true)]
    pub token_budget: Option<i64>,
    /// Time budget of the goal (e.g. 2h, 90m).
    #[arg(long, global = true)]
    pub time_budget: Option<String>,
    /// Turn budget of the goal.
    #[arg(long, global = true)]
    pub turn_budget: Option<i64>,
    /// Prompt; `-` or absent reads stdin.
    pub prompt: Option<String>,
    /// `$QUEST_HOME` to use instead of the environment's (set by `quest demo`).
    #[arg(skip)]
    pub home_override: Option<PathBuf>,
    /// `resume <THREAD_ID> [PROMPT]`.
    #[command(subcommand)]
    pub command: Option<ExecCommand>,
}

/// `quest exec` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum ExecCommand {
    /// Continue a recorded thread.
    Resume(ResumeArgs),
}

/// `quest exec resume`.
#[derive(Args, Debug, Clone)]
pub struct ResumeArgs {
    /// Thread id (from `thread.started`).
    pub thread_id: Option<String>,
    /// Prompt; `-` or absent reads stdin.
    pub prompt: Option<String>,
    /// Resume the most recent thread.
    #[arg(long)]
    pub last: bool,
    /// Compact the thread's history into a summary first; without a prompt (and without
    /// `--goal`), only compact.
    #[arg(long)]
    pub compact: bool,
}

/// Runs `quest exec` and returns the process exit code.
pub async fn run_exec(args: ExecArgs) -> i32 {
    let mode = if args.json {
        OutputMode::Json
    } else {
        let color = match args.color.as_str() {
            "always" => true,
            "never" => false,
            _ => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        OutputMode::Human { color }
    };
    match run_inner(args, mode).await {
        Ok(code) => code,
        Err(ExecFailure { code, message }) => {
            eprintln!("Error: {message}");
            code
        }
    }
}

struct ExecFailure {
    code: i32,
    message: String,
}

fn usage(message: impl Into<String>) -> ExecFailure {
    ExecFailure {
        code: EXIT_USAGE,
        message: message.into(),
    }
}

fn failure(message: impl Into<String>) -> ExecFailure {
    ExecFailure {
        code: EXIT_FAILURE,
        message: message.into(),
    }
}

async fn run_inner(args: ExecArgs, mode: OutputMode) -> Result<i32, ExecFailure> {
    let (resume, positional) = match &args.command {
        Some(ExecCommand::Resume(r)) => (Some(r.clone()), r.prompt.clone()),
        None => (None, args.prompt.clone()),
    };
    let loaded = load_config(ConfigOverrides {
        home: args.home_override.clone(),
        cwd: args.cd.clone(),
        model: args.model.clone(),
        sandbox_mode: args.sandbox.clone(),
        approval_policy: args.ask_for_approval.clone(),
        add_dirs: args.add_dir.clone(),
        raw_overrides: args.config.clone(),
    })
    .map_err(|e| usage(e.to_string()))?;
    let config = Arc::new(loaded.config);
    if !config.cwd.is_dir() {
        return Err(usage(format!(
            "working directory {} does not exist",
            config.cwd.display()
        )));
    }
    if !args.skip_git_repo_check && !inside_git_repo(&config.cwd) {
        return Err(usage(
            "Not inside a trusted directory and --skip-git-repo-check was not specified.",
        ));
    }
    let goal_request = GoalRequest::from_args(&args, resume.is_some())?;
    let compact = resume.as_ref().is_some_and(|r| r.compact);
    let prompt = match &goal_request {
        Some(_) if resume.is_some() => None,
        None if compact && positional.is_none() => None,
        Some(GoalRequest {
            objective: Some(_), ..
        }) => None,
        Some(_) => Some(read_prompt(positional.clone())?),
        None => Some(read_prompt(positional.clone())?),
    };
    let originator = originator();
    let telemetry_config = quest_core::telemetry::telemetry_config(&config, &originator)
        .map_err(|e| usage(e.to_string()))?;
    let telemetry =
        quest_core::telemetry::Telemetry::install(&telemetry_config).map_err(failure)?;
    if args.ephemeral && goal_request.is_some() {
        return Err(usage(
            "--goal needs a recorded thread; it cannot be combined with --ephemeral",
        ));
    }
    let manager = ThreadManager::new(
        config.clone(),
        ManagerOptions {
            ephemeral: args.ephemeral,
            originator: originator.clone(),
            telemetry: telemetry.as_ref().map(|t| t.thread_options(&originator)),
            propagate_trace: telemetry_config.propagate_model_requests,
        },
    )
    .map_err(|e| failure(e.to_string()))?;
    let options = ThreadOptions {
        goal_loop: goal_request.is_some(),
        // Nobody is there to answer an approval request: each is declined at once.
        headless: true,
    };
    let started = match &resume {
        Some(resume) => {
            let thread_id = resolve_thread(resume, &manager)?;
            manager.resume_thread(thread_id, options)
        }
        None => manager.start_thread(options),
    }
    .map_err(|e| match e {
        CoreError::ThreadNotFound(_) => usage(e.to_string()),
        CoreError::Model(err) => failure(err.user_message()),
        other => failure(other.to_string()),
    })?;
    let processor: SharedProcessor = Arc::new(std::sync::Mutex::new(EventProcessor::new(
        mode,
        goal_request.is_some(),
    )));
    let mut signals = StopSignals::install(processor.clone());
    lock(&processor).thread_started(&started.thread_id.to_string());
    let provider_warnings = telemetry.as_ref().map(|t| t.warnings()).unwrap_or_default();
    for warning in loaded
        .warnings
        .iter()
        .chain(&telemetry_config.warnings)
        .chain(&provider_warnings)
    {
        lock(&processor).warning(warning);
    }
    let code = match goal_request {
        Some(request) => {
            let objective = match (&request.objective, &prompt) {
                (Some(objective), _) => Some(objective.clone()),
                (None, Some(prompt)) => Some(prompt.clone()),
                (None, None) => None,
            };
            let thread_id = started.thread_id;
            let setup = match objective {
                Some(objective) => manager
                    .create_goal(
                        &thread_id,
                        NewGoal {
                            objective,
                            budgets: request.budgets,
                            replace: true,
                            origin: Some(quest_protocol::goal::GoalOrigin::User),
                            ..NewGoal::default()
                        },
                    )
                    .map(|_| ()),
                None => manager.resume_goal(&thread_id, false).map(|_| ()),
            };
            if let Err(err) = setup {
                started.handle.submit(Op::Shutdown);
                started.handle.join().await;
                return Err(match err {
                    GoalError::Refused(_) => usage(err.to_string()),
                    other => failure(other.to_string()),
                });
            }
            if compact {
                started.handle.submit(Op::Compact);
            }
            drive_goal(started, &manager, &processor, &mut signals).await
        }
        None => {
            let mut ops = Vec::new();
            if compact {
                ops.push(Op::Compact);
            }
            if let Some(text) = prompt {
                ops.push(Op::UserInput { text });
            }
            if ops.is_empty() {
                return Err(usage("no prompt given"));
            }
            drive_turns(started, ops, &processor, &mut signals).await
        }
    };
    if let Some(telemetry) = &telemetry {
        // Bounded by `[otel] shutdown_timeout_ms`; an unreachable collector cannot hold up exit.
        // What misses the deadline is dropped with one warning on stderr, printed by the provider.
        // The exports run on the telemetry's own runtime, so waiting here cannot stall them;
        // `block_in_place` only exists on a multi-thread runtime (`quest exec` has one thread).
        match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| telemetry.shutdown());
            }
            _ => {
                telemetry.shutdown();
            }
        }
    }
    if let Some(path) = &args.output_last_message {
        let text = lock(&processor).last_message.clone().unwrap_or_default();
        if let Err(err) = std::fs::write(path, text) {
            eprintln!(
                "warning: could not write the last message to {}: {err}",
                path.display()
            );
        }
    }
    let last_message = lock(&processor).last_message.clone();
    if let (OutputMode::Human { .. }, Some(text)) = (mode, &last_message)
        && code == 0
    {
        println!("{}", sanitize::strip_terminal_escapes(text));
    }
    Ok(code)
}

/// What `--goal` and the budget flags asked for.
struct GoalRequest {
    /// Objective given with `--goal` (`None` = take the prompt, or resume the existing goal).
    objective: Option<String>,
    budgets: GoalBudgets,
}

impl GoalRequest {
    fn from_args(args: &ExecArgs, resuming: bool) -> Result<Option<GoalRequest>, ExecFailure> {
        let budgets_given =
            args.token_budget.is_some() || args.time_budget.is_some() || args.turn_budget.is_some();
        let Some(goal) = &args.goal else {
            if budgets_given {
                return Err(usage(
                    "--token-budget, --time-budget and --turn-budget need --goal",
                ));
            }
            return Ok(None);
        };
        let objective = match goal.as_str() {
            "" => None,
            "-" => Some(read_prompt(None)?),
            text => Some(text.to_string()),
        };
        if resuming && objective.is_some() {
            return Err(usage(
                "exec resume --goal continues the thread's existing goal; it takes no objective",
            ));
        }
        let time_seconds = match &args.time_budget {
            Some(text) => Some(
                parse_duration(text)
                    .map_err(|e| usage(format!("--time-budget: {e}")))?
                    .as_secs() as i64,
            ),
            None => None,
        };
        Ok(Some(GoalRequest {
            objective,
            budgets: GoalBudgets {
                tokens: args.token_budget,
                time_seconds,
                turns: args.turn_budget,
            },
        }))
    }
}

/// Pumps the thread's events into `processor` until the actor stops. `on_event` sees each event
/// after it was printed and says whether to ask the actor to shut down. The first SIGINT/SIGTERM
/// interrupts the turn (pausing an active goal); [`StopSignals`] handles a second one. Returns the
/// signal that interrupted the run, if any.
async fn pump_events(
    started: &mut StartedThread,
    processor: &SharedProcessor,
    signals: &mut StopSignals,
    mut on_event: impl FnMut(&EventMsg) -> bool,
) -> Option<i32> {
    let mut interrupted: Option<i32> = None;
    let mut shutting_down = false;
    loop {
        let event = tokio::select! {
            event = started.events.recv() => event,
            Some(signal) = signals.first.recv(), if interrupted.is_none() => {
                interrupted = Some(signal);
                started.handle.submit(Op::Interrupt { pause_goal: true });
                continue;
            }
        };
        let Some(event) = event else { break };
        lock(processor).process(&event.msg);
        if matches!(event.msg, EventMsg::ShutdownComplete) {
            break;
        }
        if on_event(&event.msg) && !shutting_down {
            shutting_down = true;
            started.handle.submit(Op::Shutdown);
        }
    }
    started.handle.join().await;
    interrupted
}

/// Runs the goal loop until the goal stops; the exit code follows the final status.
async fn drive_goal(
    mut started: StartedThread,
    manager: &ThreadManager,
    processor: &SharedProcessor,
    signals: &mut StopSignals,
) -> i32 {
    started.handle.submit(Op::WakeIdle);
    pump_events(&mut started, processor, signals, |msg| {
        matches!(msg, EventMsg::Idle)
    })
    .await;
    match manager.goal(&started.thread_id) {
        Ok(Some(goal)) => goal_exit_code(goal.status),
        Ok(None) => EXIT_FAILURE,
        Err(err) => {
            eprintln!("Error: {err}");
            EXIT_FAILURE
        }
    }
}

/// Runs one turn per op (a user message, a compaction), in order; 0 when every one completed,
/// `128 + signal` when a signal interrupted one. The first turn that fails or is interrupted ends
/// the run.
async fn drive_turns(
    mut started: StartedThread,
    ops: Vec<Op>,
    processor: &SharedProcessor,
    signals: &mut StopSignals,
) -> i32 {
    let mut remaining = ops.len();
    for op in ops {
        started.handle.submit(op);
    }
    let mut code = EXIT_FAILURE;
    let mut aborted = false;
    let signal = pump_events(&mut started, processor, signals, |msg| match msg {
        EventMsg::TurnCompleted { .. } => {
            remaining -= 1;
            if remaining == 0 {
                code = 0;
            }
            remaining == 0
        }
        EventMsg::TurnAborted => {
            aborted = true;
            true
        }
        EventMsg::TurnFailed { .. } => true,
        _ => false,
    })
    .await;
    match signal {
        Some(signal) if aborted => 128 + signal,
        _ => code,
    }
}

/// The event processor, shared with the signal task that may have to close the stream itself.
type SharedProcessor = Arc<std::sync::Mutex<EventProcessor>>;

fn lock(processor: &SharedProcessor) -> std::sync::MutexGuard<'_, EventProcessor> {
    processor
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// SIGINT and SIGTERM. The first one is delivered on `first`: the turn is interrupted (an active
/// goal paused) and the normal exit path runs, telemetry flush included. A second one exits at
/// once with `128 + signal`, after killing running commands and closing the event stream.
struct StopSignals {
    first: tokio::sync::mpsc::UnboundedReceiver<i32>,
}

impl StopSignals {
    fn install(processor: SharedProcessor) -> Self {
        let (tx, first) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher = SignalWatcher::new();
        tokio::spawn(async move {
            let mut received = 0u32;
            while let Some(signal) = watcher.next().await {
                received += 1;
                if received == 1 {
                    eprintln!("Interrupting; press Ctrl-C again to exit at once.");
                    let _ = tx.send(signal);
                    continue;
                }
                eprintln!("Exiting at once.");
                quest_core::kill_running_commands();
                lock(&processor).abort_open_turn(crate::processor::TURN_INTERRUPTED);
                std::process::exit(128 + signal);
            }
        });
        StopSignals { first }
    }
}

/// SIGINT and SIGTERM streams, registered once so that no delivery between two waits is lost.
struct SignalWatcher {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl SignalWatcher {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = signal(SignalKind::interrupt())
                .and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
                .ok();
            if streams.is_none() {
                eprintln!("warning: cannot watch SIGINT/SIGTERM; Ctrl-C ends the process at once");
            }
            SignalWatcher { streams }
        }
        #[cfg(not(unix))]
        {
            SignalWatcher {}
        }
    }

    /// The next signal's number; `None` when signals cannot be watched.
    async fn next(&mut self) -> Option<i32> {
        #[cfg(unix)]
        {
            let (interrupt, terminate) = self.streams.as_mut()?;
            tokio::select! {
                Some(()) = interrupt.recv() => Some(2),
                Some(()) = terminate.recv() => Some(15),
                else => None,
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.ok().map(|()| 2)
        }
    }
}

fn resolve_thread(resume: &ResumeArgs, manager: &ThreadManager) -> Result<ThreadId, ExecFailure> {
    if manager.is_ephemeral() {
        return Err(usage("exec resume cannot be combined with --ephemeral"));
    }
    if let Some(id) = &resume.thread_id {
        return id
            .parse::<ThreadId>()
            .map_err(|e| usage(format!("invalid thread id `{id}`: {e}")));
    }
    if resume.last {
        return manager
            .latest_thread(None)
            .map_err(|e| failure(e.to_string()))?
            .ok_or_else(|| usage("no recorded thread to resume"));
    }
    Err(usage("exec resume needs a THREAD_ID or --last"))
}

/// Reads the prompt: the positional, or stdin when absent or `-`; piped stdin next to a
/// positional is appended as a `<stdin>` block.
fn read_prompt(positional: Option<String>) -> Result<String, ExecFailure> {
    let stdin_is_terminal = std::io::stdin().is_terminal();
    let read_stdin = || -> Result<String, ExecFailure> {
        let mut buffer = String::new();
        std::io::stdin()
            .read_to_string(&mut buffer)
            .map_err(|e| usage(format!("failed to read the prompt from stdin: {e}")))?;
        Ok(buffer)
    };
    match positional.as_deref() {
        None | Some("-") => {
            if stdin_is_terminal {
                return Err(usage(
                    "no prompt given: pass it as an argument or pipe it on stdin",
                ));
            }
            let text = read_stdin()?;
            if text.trim().is_empty() {
                return Err(usage("the prompt read from stdin is empty"));
            }
            Ok(text)
        }
        Some(text) => {
            if !stdin_is_terminal {
                let extra = read_stdin()?;
                if !extra.trim().is_empty() {
                    return Ok(format!("{text}\n\n<stdin>\n{}\n</stdin>", extra.trim_end()));
                }
            }
            Ok(text.to_string())
        }
    }
}

fn inside_git_repo(dir: &Path) -> bool {
    dir.ancestors().any(|d| d.join(".git").exists())
}

/// `originator` header value: the SDK's override when set, else `quest_exec`.
pub fn originator() -> String {
    std::env::var("CODEX_INTERNAL_ORIGINATOR_OVERRIDE")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "quest_exec".to_string())
}
