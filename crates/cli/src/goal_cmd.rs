//! `quest goal status|list|log|pause|resume|edit|clear|budget`.

use clap::{Args, Subcommand};
use quest_core::config::parse_duration;
use quest_core::goal::prompts::human_duration;
use std::sync::Arc;

use quest_core::{ConfigOverrides, CoreError, ThreadManager, load_config};
use quest_protocol::ThreadId;
use quest_protocol::goal::transition::{BudgetChange, GoalEvent, GoalState};
use serde_json::json;

/// `quest goal` arguments.
#[derive(Args, Debug)]
pub(crate) struct GoalArgs {
    #[command(subcommand)]
    command: GoalCommand,
    /// Override a config key: `-c key=value`.
    #[arg(short = 'c', long = "config", global = true, value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum GoalCommand {
    /// Show a thread's goal.
    Status { thread_id: String },
    /// List every goal.
    List,
    /// Show the audit trail of a thread's goals.
    Log {
        thread_id: String,
        /// Most events shown.
        #[arg(long, default_value_t = 200)]
        limit: usize,
    },
    /// Pause an active goal.
    Pause { thread_id: String },
    /// Resume a paused, blocked or usage-limited goal.
    Resume {
        thread_id: String,
        /// Resume automatically when the usage limit resets instead of now.
        #[arg(long)]
        at_reset: bool,
    },
    /// Replace the objective (keeps counters and budgets).
    Edit {
        thread_id: String,
        objective: String,
    },
    /// Delete the goal (the audit trail stays).
    Clear { thread_id: String },
    /// Set budgets: `quest goal budget <thread> <tokens|none> [--time-budget 2h|none] [--turn-budget 50|none]`.
    Budget {
        thread_id: String,
        /// Token budget or `none`; omit to keep.
        tokens: Option<String>,
        /// Time budget (`2h`, `90m`, `none`).
        #[arg(long)]
        time_budget: Option<String>,
        /// Turn budget or `none`.
        #[arg(long)]
        turn_budget: Option<String>,
    },
}

struct Failure {
    code: i32,
    message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

fn failed(message: impl ToString) -> Failure {
    Failure {
        code: 1,
        message: message.to_string(),
    }
}

/// Runs a goal command; returns the exit code.
pub(crate) fn run(args: GoalArgs) -> i32 {
    match run_inner(&args) {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("Error: {}", failure.message);
            failure.code
        }
    }
}

fn parse_thread(text: &str) -> Result<ThreadId, Failure> {
    text.parse::<ThreadId>()
        .map_err(|e| usage(format!("invalid thread id `{text}`: {e}")))
}

fn parse_change(
    text: Option<&str>,
    what: &str,
    parse: impl Fn(&str) -> Result<i64, String>,
) -> Result<BudgetChange, Failure> {
    match text {
        None => Ok(BudgetChange::Keep),
        Some("none") | Some("null") => Ok(BudgetChange::Clear),
        Some(value) => parse(value)
            .map(BudgetChange::Set)
            .map_err(|e| usage(format!("{what}: {e}"))),
    }
}

fn run_inner(args: &GoalArgs) -> Result<(), Failure> {
    let loaded = load_config(ConfigOverrides {
        raw_overrides: args.config.clone(),
        ..ConfigOverrides::default()
    })
    .map_err(|e| usage(e.to_string()))?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    // Readers never create a database: without one there is no thread and no goal.
    let manager = match ThreadManager::open_existing(Arc::new(loaded.config)) {
        Ok(manager) => manager,
        Err(CoreError::NoDatabase(_)) => return no_database(args),
        Err(err) => return Err(failed(err)),
    };
    let print_goal = |goal: Option<GoalState>| {
        if args.json {
            println!("{}", json!({"goal": goal.as_ref().map(GoalState::to_wire)}));
        } else {
            match goal {
                Some(goal) => print!("{}", render_goal(&goal)),
                None => println!("No goal is currently set."),
            }
        }
    };
    match &args.command {
        GoalCommand::Status { thread_id } => {
            let id = parse_thread(thread_id)?;
            print_goal(manager.goal(&id).map_err(failed)?);
        }
        GoalCommand::List => {
            let goals = manager.list_goals().map_err(failed)?;
            if args.json {
                let wire: Vec<_> = goals.iter().map(GoalState::to_wire).collect();
                println!("{}", json!({"goals": wire}));
            } else if goals.is_empty() {
                println!("No goals.");
            } else {
                for goal in goals {
                    println!(
                        "{}  {:<13}  {}",
                        goal.thread_id,
                        goal.status.as_wire(),
                        first_line(&goal.objective, 70)
                    );
                }
            }
        }
        GoalCommand::Log { thread_id, limit } => {
            let id = parse_thread(thread_id)?;
            let events = manager.goal_log(&id, *limit).map_err(failed)?;
            if args.json {
                println!("{}", json!({"events": events}));
            } else if events.is_empty() {
                println!("No goal events for thread {id}.");
            } else {
                for event in &events {
                    println!("{}", render_event(event));
                }
            }
        }
        GoalCommand::Pause { thread_id } => {
            let id = parse_thread(thread_id)?;
            print_goal(manager.pause_goal(&id).map_err(failed)?);
        }
        GoalCommand::Resume {
            thread_id,
            at_reset,
        } => {
            let id = parse_thread(thread_id)?;
            let goal = manager.resume_goal(&id, *at_reset).map_err(failed)?;
            let runner = manager.goal_runner(&id).map_err(failed)?;
            eprintln!("{}", resume_note(&id, runner, *at_reset));
            print_goal(goal);
        }
        GoalCommand::Edit {
            thread_id,
            objective,
        } => {
            let id = parse_thread(thread_id)?;
            print_goal(manager.edit_goal(&id, objective).map_err(failed)?);
        }
        GoalCommand::Clear { thread_id } => {
            let id = parse_thread(thread_id)?;
            let cleared = manager
                .clear_goal(&id, Some(quest_protocol::goal::GoalOrigin::User))
                .map_err(failed)?;
            if args.json {
                println!("{}", json!({"cleared": cleared}));
            } else if cleared {
                println!("Goal cleared.");
            } else {
                println!("No goal to clear.");
            }
        }
        GoalCommand::Budget {
            thread_id,
            tokens,
            time_budget,
            turn_budget,
        } => {
            let id = parse_thread(thread_id)?;
            let int = |v: &str| {
                v.parse::<i64>()
                    .map_err(|e| format!("`{v}` is not a number: {e}"))
            };
            let tokens = parse_change(tokens.as_deref(), "token budget", int)?;
            let time = parse_change(time_budget.as_deref(), "--time-budget", |v| {
                parse_duration(v).map(|d| d.as_secs() as i64)
            })?;
            let turns = parse_change(turn_budget.as_deref(), "--turn-budget", int)?;
            print_goal(
                manager
                    .set_goal_budgets(&id, tokens, time, turns)
                    .map_err(failed)?,
            );
        }
    }
    Ok(())
}

/// Without a database: `list` shows nothing, everything else names the missing thread.
fn no_database(args: &GoalArgs) -> Result<(), Failure> {
    let thread = match &args.command {
        GoalCommand::List => {
            if args.json {
                println!("{}", json!({"goals": []}));
            } else {
                println!("No goals.");
            }
            return Ok(());
        }
        GoalCommand::Status { thread_id }
        | GoalCommand::Log { thread_id, .. }
        | GoalCommand::Pause { thread_id }
        | GoalCommand::Resume { thread_id, .. }
        | GoalCommand::Edit { thread_id, .. }
        | GoalCommand::Clear { thread_id }
        | GoalCommand::Budget { thread_id, .. } => parse_thread(thread_id)?,
    };
    Err(failed(format!("no such thread: {thread}")))
}

/// What happens next after `quest goal resume`: who runs the goal, or how to run it.
fn resume_note(id: &ThreadId, runner: Option<u32>, at_reset: bool) -> String {
    match (runner, at_reset) {
        (Some(pid), false) => {
            format!("quest process {pid} runs thread {id} and continues the goal.")
        }
        (Some(pid), true) => format!(
            "quest process {pid} runs thread {id} and resumes the goal when the usage limit resets."
        ),
        (None, false) => format!(
            "No quest process is running thread {id}. To continue the goal now, run:\n  quest exec resume {id} --goal"
        ),
        (None, true) => format!(
            "No quest process is running thread {id}, so nothing will resume the goal at the reset time. To run it, use:\n  quest exec resume {id} --goal"
        ),
    }
}

fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > max {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line.to_string()
    }
}

/// The text block of `quest goal status`.
pub(crate) fn render_goal(goal: &GoalState) -> String {
    let wire = goal.to_wire();
    let mut out = String::new();
    out.push_str("Goal\n");
    out.push_str(&format!("  Status:      {}", wire.status.as_wire()));
    if let Some(kind) = wire.budget_limit_kind {
        out.push_str(&format!(" ({} budget)", kind.as_str()));
    }
    if let Some(at) = wire.usage_limit_resets_at {
        out.push_str(&format!(" (resets {})", local_time(at * 1000)));
    }
    out.push('\n');
    out.push_str(&format!(
        "  Objective:   {}\n",
        first_line(&wire.objective, 200)
    ));
    out.push_str(&format!(
        "  Time used:   {}{}\n",
        human_duration(wire.time_used_seconds),
        wire.time_budget_seconds
            .map_or(String::new(), |b| format!(" / {}", human_duration(b)))
    ));
    out.push_str(&format!(
        "  Tokens used: {}{}\n",
        wire.tokens_used,
        wire.token_budget
            .map_or(String::new(), |b| format!(" / {b}"))
    ));
    out.push_str(&format!(
        "  Turns used:  {}{}\n",
        wire.turns_used,
        wire.turn_budget
            .map_or(String::new(), |b| format!(" / {b}"))
    ));
    if let Some(last) = &wire.last_transition {
        out.push_str(&format!(
            "  Last change: {} by {} at {}\n",
            last.reason.as_str(),
            last.actor.as_str(),
            local_time(last.at * 1000)
        ));
    }
    out
}

/// One audit line.
pub(crate) fn render_event(event: &GoalEvent) -> String {
    let from = event.from_status.map_or("-", |s| s.as_wire());
    let to = event.to_status.map_or("-", |s| s.as_wire());
    format!(
        "{}  {:<7} {:<15} {:>13} -> {:<13} {}",
        local_time(event.at_ms),
        event.actor.as_str(),
        event.kind.as_str(),
        from,
        to,
        event.reason.as_str()
    )
}

/// Unix milliseconds as local `YYYY-MM-DD HH:MM:SS`.
fn local_time(ms: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_millis_opt(ms) {
        chrono::LocalResult::Single(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        _ => ms.to_string(),
    }
}
