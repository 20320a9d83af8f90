//! `quest demo`: an offline tour of the goal runtime. A scripted model runs in this process; the
//! tools are real (a shell, `apply_patch` on real files in a temporary workspace), the state is a
//! real SQLite file, and the goal goes through the same runtime as `quest exec --goal`.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use quest_core::{ConfigOverrides, ManagerOptions, ThreadManager, load_config};
use quest_exec::{ExecArgs, run_exec};
use quest_mock_model::{MockModel, Script, Step, Usage};
use serde_json::json;

use crate::goal_cmd::{render_event, render_goal};

const GREETING: &str = "#!/bin/sh\necho \"Hello, wrld!\"\n";
const CHECK: &str = "#!/bin/sh\ngot=\"$(sh greeting.sh)\"\nif [ \"$got\" = \"Hello, world!\" ]; then echo PASS; else echo \"FAIL: greeting.sh printed '$got'\"; exit 1; fi\n";
const FIX: &str = "*** Begin Patch\n*** Update File: greeting.sh\n@@\n #!/bin/sh\n-echo \"Hello, wrld!\"\n+echo \"Hello, world!\"\n*** End Patch\n";

/// Runs the demo; returns the exit code.
pub(crate) async fn run() -> i32 {
    match run_inner().await {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("Error: {message}");
            1
        }
    }
}

fn usage() -> Usage {
    Usage::new(2400, 2000, 60, 20)
}

async fn run_inner() -> Result<(), String> {
    let root = tempfile::Builder::new()
        .prefix("quest-demo-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let home = root.path().join("home");
    let work = root.path().join("workspace");
    std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    std::fs::write(work.join("greeting.sh"), GREETING).map_err(|e| e.to_string())?;
    std::fs::write(work.join("check.sh"), CHECK).map_err(|e| e.to_string())?;

    println!("Quest demo: a scripted model, real tools, a real goal store.");
    println!("Workspace: {}", work.display());
    println!("State:     {}\n", home.join("state.sqlite").display());

    // 1. A goal that is reached.
    banner("1/3  A goal worked to completion");
    let mock = MockModel::start(Script::new([
        Step::function_call("exec_command", json!({"cmd": "sh check.sh"})).with_usage(usage()),
        Step::apply_patch(FIX).with_usage(usage()),
        Step::function_call("exec_command", json!({"cmd": "sh check.sh"})).with_usage(usage()),
        Step::update_goal("complete").with_usage(usage()),
        Step::message("greeting.sh now prints \"Hello, world!\" and check.sh passes.")
            .with_usage(usage()),
    ]))
    .await;
    let code = run_goal(&mock, &home, &work, "make check.sh pass", &[]).await;
    report(&home, code, mock.request_count())?;
    println!(
        "greeting.sh is now: {}",
        std::fs::read_to_string(work.join("greeting.sh"))
            .unwrap_or_default()
            .lines()
            .last()
            .unwrap_or_default()
    );

    // 2. A usage limit: one failing request, then nothing.
    banner("2/3  A usage limit stops the goal after one request");
    let resets_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 + 3 * 3600)
        .unwrap_or_default();
    let mock = MockModel::start(
        Script::new([]).with_default(Step::usage_limit(Some("plus"), Some(resets_at))),
    )
    .await;
    let code = run_goal(&mock, &home, &work, "refactor the scripts", &[]).await;
    report(&home, code, mock.request_count())?;

    // 3. A model that never makes progress and never says so.
    banner("3/3  The circuit breaker stops a goal that makes no progress");
    // It keeps talking without doing anything, a different excuse each time: no blocker repeats,
    // so the breaker stops it for making no progress (`no_progress`).
    let mock = MockModel::start(
        Script::new([
            Step::message("I am still investigating the build failure.").with_usage(usage()),
            Step::message("Let me think about the compiler output first.").with_usage(usage()),
            Step::message("Perhaps the toolchain version matters here.").with_usage(usage()),
        ])
        .with_default(Step::message("Still considering options.").with_usage(usage())),
    )
    .await;
    let code = run_goal(
        &mock,
        &home,
        &work,
        "port the scripts to Rust",
        &["-c", "goals.no_progress_backoff=[\"200ms\"]"],
    )
    .await;
    report(&home, code, mock.request_count())?;
    println!(
        "\nEvery run above used real processes and a real SQLite store; the temporary directory is removed now."
    );
    Ok(())
}

fn banner(title: &str) {
    println!("\n=== {title} ===\n");
}

async fn run_goal(
    mock: &MockModel,
    home: &Path,
    work: &Path,
    objective: &str,
    extra: &[&str],
) -> i32 {
    let mut config = vec![
        "model_provider=demo".to_string(),
        format!(
            "model_providers.demo={{name=\"scripted demo model\", base_url=\"{}\", wire_api=\"responses\"}}",
            mock.uri()
        ),
        "model=demo-model".to_string(),
    ];
    config.extend(
        extra
            .chunks(2)
            .filter_map(|pair| pair.get(1).map(|v| v.to_string())),
    );
    let args = ExecArgs {
        config,
        cd: Some(PathBuf::from(work)),
        skip_git_repo_check: true,
        color: "auto".to_string(),
        goal: Some(objective.to_string()),
        home_override: Some(home.to_path_buf()),
        ..ExecArgs::default()
    };
    run_exec(args).await
}

fn report(home: &Path, code: i32, requests: usize) -> Result<(), String> {
    let loaded = load_config(ConfigOverrides {
        home: Some(home.to_path_buf()),
        ..ConfigOverrides::default()
    })
    .map_err(|e| e.to_string())?;
    let manager = ThreadManager::new(
        std::sync::Arc::new(loaded.config),
        ManagerOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    let goal = manager
        .list_goals()
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or("the demo goal was not recorded")?;
    println!("\nexit code {code}; the model server received {requests} request(s)\n");
    print!("{}", render_goal(&goal));
    let thread_id = goal
        .thread_id
        .parse()
        .map_err(|e| format!("stored thread id: {e}"))?;
    println!("  Audit log:");
    for event in manager
        .goal_log(&thread_id, 50)
        .map_err(|e| e.to_string())?
    {
        println!("    {}", render_event(&event));
    }
    Ok(())
}
