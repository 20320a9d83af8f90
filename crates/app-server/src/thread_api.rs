//! Thread, turn and goal methods.

use std::collections::HashMap;
use std::sync::Arc;

use crate::history;
use quest_core::goal::GoalBudgets;
use quest_core::{
    Config, ConfigOverrides, CoreError, GoalError, GoalUpdate, NewGoal, Op, ThreadManager,
    ThreadOptions, ThreadSummary, TurnState, TurnSummary, load_config,
};
use quest_protocol::ThreadId;
use quest_protocol::app_server::jsonrpc::{ErrorObject, RequestId};
use quest_protocol::app_server::v2::{
    GoalMutationOrigin, Thread, ThreadCompactStartParams, ThreadGoalClearParams,
    ThreadGoalLogParams, ThreadGoalSetParams, ThreadIdParams, ThreadItem, ThreadItemsListParams,
    ThreadListParams, ThreadResumeParams, ThreadStartParams, ThreadStartResponse, ThreadStatus,
    ThreadTurnsListParams, Turn, TurnError, TurnInterruptParams, TurnStartParams, TurnStatus,
    UserInput,
};
use quest_protocol::goal::transition::{BudgetChange, GoalState};
use quest_protocol::goal::{GoalOrigin, GoalStatus};
use serde_json::{Value, json};

use crate::server::{ClientSession, HandlerResult, Reply, Server, now_ms, parse_thread_id};
use crate::threads::{PendingStart, ThreadHub};

const ORIGINATOR: &str = "quest_app_server";

fn internal(err: impl std::fmt::Display) -> ErrorObject {
    ErrorObject::internal(err.to_string())
}

fn not_found(id: &ThreadId) -> ErrorObject {
    ErrorObject::invalid_request(format!("thread not found: {id}"))
}

/// Runs `f` on the blocking pool with `manager`: every state-database read waits on SQLite's lock
/// and every write on the disk, and neither may hold up the async workers other threads and
/// clients are served on.
async fn on_state<T, F>(manager: &ThreadManager, f: F) -> Result<T, ErrorObject>
where
    T: Send + 'static,
    F: FnOnce(&ThreadManager) -> Result<T, ErrorObject> + Send + 'static,
{
    manager.blocking(f).await
}

/// Loads the configuration for a thread: the server's inputs plus the request's overrides.
fn thread_config(
    server: &Server,
    params: &ThreadStartParams,
) -> Result<(Config, String), ErrorObject> {
    let mut overrides: ConfigOverrides = server.options.config.clone();
    if let Some(cwd) = &params.cwd {
        overrides.cwd = Some(cwd.into());
    }
    if let Some(model) = &params.model {
        overrides.model = Some(model.clone());
    }
    if let Some(sandbox) = &params.sandbox {
        overrides.sandbox_mode = Some(sandbox.clone());
    }
    match &params.approval_policy {
        None | Some(Value::Null) => {}
        Some(Value::String(policy)) => overrides.approval_policy = Some(policy.clone()),
        Some(other) => {
            return Err(ErrorObject::invalid_params(format!(
                "Invalid params: approvalPolicy: {other} is not supported; use untrusted, on-failure, on-request or never"
            )));
        }
    }
    if let Some(provider) = &params.model_provider {
        overrides.raw_overrides.push(format!(
            "model_provider={}",
            toml_literal(&json!(provider))?
        ));
    }
    if let Some(map) = &params.config {
        for (key, value) in map {
            if value.is_null() {
                continue;
            }
            overrides
                .raw_overrides
                .push(format!("{key}={}", toml_literal(value)?));
        }
    }
    let key = format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}",
        overrides.cwd,
        overrides.model,
        overrides.sandbox_mode,
        overrides.approval_policy,
        overrides.raw_overrides
    );
    let loaded = load_config(overrides)
        .map_err(|e| ErrorObject::invalid_params(format!("Invalid params: config: {e}")))?;
    let config = loaded.config;
    if !config.cwd.is_dir() {
        return Err(ErrorObject::invalid_params(format!(
            "Invalid params: cwd: {} is not a directory",
            config.cwd.display()
        )));
    }
    Ok((config, key))
}

fn toml_literal(value: &Value) -> Result<String, ErrorObject> {
    let converted: toml::Value = serde_json::from_value(value.clone())
        .map_err(|e| ErrorObject::invalid_params(format!("Invalid params: config: {e}")))?;
    Ok(converted.to_string())
}

fn core_error(err: CoreError) -> ErrorObject {
    match err {
        CoreError::ThreadNotFound(id) => not_found(&id),
        CoreError::LeaseHeld { .. } | CoreError::ThreadAlreadyLoaded(_) => {
            ErrorObject::invalid_request(err.to_string())
        }
        CoreError::Model(model) => internal(model.user_message()),
        other => internal(other),
    }
}

/// The manager for threads with this configuration (one per distinct configuration, all sharing
/// the server's state database and its set of loaded threads).
fn manager_for(
    server: &Server,
    config: Config,
    key: String,
    ephemeral: bool,
) -> Result<ThreadManager, ErrorObject> {
    let key = format!("{key}|ephemeral={ephemeral}");
    let mut managers = server.managers();
    if let Some(manager) = managers.get(&key) {
        return Ok(manager.clone());
    }
    let manager = server
        .default_manager
        .with_config(Arc::new(config), ephemeral)
        .map_err(core_error)?;
    managers.insert(key, manager.clone());
    Ok(manager)
}

fn thread_object(
    id: &ThreadId,
    config: &Config,
    ephemeral: bool,
    thread_source: Option<String>,
    record: Option<&ThreadSummary>,
) -> Thread {
    let now = now_ms() / 1000;
    let (created, updated, preview, name) = match record {
        Some(r) => (
            r.created_at_ms / 1000,
            r.updated_at_ms / 1000,
            r.preview.clone().unwrap_or_default(),
            r.title.clone(),
        ),
        None => (now, now, String::new(), None),
    };
    Thread {
        id: id.to_string(),
        environments: Vec::new(),
        extra: None,
        session_id: id.to_string(),
        forked_from_id: None,
        attached_to_thread_id: None,
        parent_thread_id: None,
        preview,
        ephemeral,
        section: None,
        section_entered_at: None,
        project_id: None,
        history_mode: "paginated".to_string(),
        model_provider: record.map_or_else(
            || config.model_provider_id.clone(),
            |r| r.model_provider.clone(),
        ),
        model: Some(record.map_or_else(|| config.model.clone(), |r| r.model.clone())),
        reasoning_effort: config.reasoning_effort.clone(),
        created_at: created,
        updated_at: updated,
        recency_at: Some(updated),
        status: ThreadStatus::Idle,
        path: None,
        cwd: record.map_or_else(|| config.cwd.display().to_string(), |r| r.cwd.clone()),
        cli_version: env!("CARGO_PKG_VERSION").to_string(),
        originator: Some(ORIGINATOR.to_string()),
        source: "appServer".to_string(),
        can_accept_direct_input: Some(true),
        thread_source,
        agent_nickname: None,
        agent_role: None,
        git_info: None,
        name,
        daybreak_enabled: None,
        turns: Vec::new(),
    }
}

fn start_response(thread: Thread, config: &Config) -> Value {
    let cwd = thread.cwd.clone();
    let sandbox = match config.sandbox_mode.as_str() {
        "danger-full-access" => json!({"type": "dangerFullAccess"}),
        "workspace-write" => json!({
            "type": "workspaceWrite", "writableRoots": [], "networkAccess": false,
            "excludeTmpdirEnvVar": false, "excludeSlashTmp": false,
        }),
        _ => json!({"type": "readOnly", "networkAccess": false}),
    };
    serde_json::to_value(ThreadStartResponse {
        model: thread.model.clone().unwrap_or_default(),
        model_provider: thread.model_provider.clone(),
        thread,
        service_tier: None,
        disabled_plugin_ids: Vec::new(),
        runtime_workspace_roots: vec![cwd.clone()],
        cwd,
        instruction_sources: Vec::new(),
        approval_policy: config.approval_policy.app_server_name().to_string(),
        approvals_reviewer: "user".to_string(),
        sandbox,
        active_permission_profile: None,
        reasoning_effort: config.reasoning_effort.clone(),
        multi_agent_mode: "explicitRequestOnly".to_string(),
    })
    .unwrap_or(Value::Null)
}

/// `thread/start`.
pub(crate) async fn thread_start(
    session: &mut ClientSession,
    id: &RequestId,
    params: ThreadStartParams,
) -> HandlerResult {
    let server = session.server.clone();
    let (config, key) = thread_config(&server, &params)?;
    let ephemeral = params.ephemeral.unwrap_or(false);
    let manager = manager_for(&server, config.clone(), key, ephemeral)?;
    let started = on_state(&manager, |manager| {
        manager
            .start_thread(ThreadOptions {
                goal_loop: true,
                headless: false,
            })
            .map_err(core_error)
    })
    .await?;
    let thread_id = started.thread_id;
    let thread = thread_object(
        &thread_id,
        &config,
        ephemeral,
        params.thread_source.clone(),
        None,
    );
    let hub = ThreadHub::spawn(started, manager, thread.clone());
    hub.subscribe(&session.client);
    server.register(hub.clone());
    let _gate = hub.gate.lock().await;
    session
        .client
        .respond(id.clone(), start_response(thread.clone(), &config));
    session
        .client
        .notify("thread/started", json!({ "thread": thread }));
    Ok(Reply::Deferred)
}

/// `thread/resume`: loads a recorded thread (or joins a loaded one), answers, then sends the goal
/// snapshot; an `active` goal that survived reconciliation continues.
pub(crate) async fn thread_resume(
    session: &mut ClientSession,
    id: &RequestId,
    params: ThreadResumeParams,
) -> HandlerResult {
    let server = session.server.clone();
    let thread_id = parse_thread_id(&params.thread_id)?;
    let hub = match server.loaded(&thread_id) {
        Some(hub) => hub,
        None => {
            let record = thread_summary(&server, thread_id)
                .await?
                .ok_or_else(|| not_found(&thread_id))?;
            let start = ThreadStartParams {
                cwd: Some(record.cwd.clone()),
                model: Some(record.model.clone()),
                ..ThreadStartParams::default()
            };
            let (config, key) = thread_config(&server, &start)?;
            let manager = manager_for(&server, config.clone(), key, false)?;
            let started = on_state(&manager, move |manager| {
                manager
                    .resume_thread(
                        thread_id,
                        ThreadOptions {
                            goal_loop: true,
                            headless: false,
                        },
                    )
                    .map_err(core_error)
            })
            .await?;
            let mut thread = thread_object(&thread_id, &config, false, None, Some(&record));
            thread.turns = stored_turns(&server, thread_id).await?;
            let hub = ThreadHub::spawn(started, manager, thread);
            server.register(hub.clone());
            hub
        }
    };
    hub.subscribe(&session.client);
    let _gate = hub.gate.lock().await;
    let mut thread = hub.thread(!params.exclude_turns);
    if !params.exclude_turns && thread.turns.is_empty() {
        thread.turns = stored_turns(&server, thread_id).await?;
    }
    session
        .client
        .respond(id.clone(), start_response(thread, &hub.config));
    let goal = on_state(&hub.manager, move |manager| {
        manager.goal(&thread_id).map_err(goal_error)
    })
    .await?;
    match &goal {
        Some(goal) => session.client.notify(
            "thread/goal/updated",
            json!({"threadId": thread_id.to_string(), "turnId": null, "goal": goal.to_wire()}),
        ),
        None => session.client.notify(
            "thread/goal/cleared",
            json!({"threadId": thread_id.to_string()}),
        ),
    }
    // A turn waiting for a person asks the joining client too.
    hub.replay_requests(&session.client);
    if goal.is_some_and(|g| g.status == GoalStatus::Active) && hub.is_idle() {
        hub.handle.submit(Op::WakeIdle);
    }
    Ok(Reply::Deferred)
}

fn turn_from_record(record: &TurnSummary) -> Turn {
    let status = match record.state {
        TurnState::Completed => TurnStatus::Completed,
        TurnState::Failed => TurnStatus::Failed,
        TurnState::Interrupted => TurnStatus::Interrupted,
        TurnState::Running => TurnStatus::InProgress,
    };
    Turn {
        id: record.id.to_string(),
        root_turn_id: Some(record.id.to_string()),
        items: Vec::new(),
        items_view: "notLoaded".to_string(),
        status,
        error: record.error.as_ref().map(|message| TurnError {
            message: message.clone(),
            codex_error_info: None,
            additional_details: None,
            misalignment: None,
        }),
        started_at: Some(record.started_at_ms / 1000),
        completed_at: record.ended_at_ms.map(|ms| ms / 1000),
        duration_ms: record.ended_at_ms.map(|end| end - record.started_at_ms),
    }
}

/// A recorded thread, read off the async workers.
async fn thread_summary(
    server: &Server,
    thread_id: ThreadId,
) -> Result<Option<ThreadSummary>, ErrorObject> {
    on_state(&server.default_manager, move |manager| {
        manager.thread_summary(&thread_id).map_err(core_error)
    })
    .await
}

/// Stored turns with the items rebuilt from the rollout (an empty list for an unrecorded thread).
async fn stored_turns(server: &Server, thread_id: ThreadId) -> Result<Vec<Turn>, ErrorObject> {
    on_state(&server.default_manager, move |manager| {
        let Some(record) = manager.thread_summary(&thread_id).map_err(core_error)? else {
            return Ok(Vec::new());
        };
        let records = manager.turns(&thread_id).map_err(core_error)?;
        let transcript = manager.transcript(&thread_id).map_err(core_error)?;
        let mut turns: Vec<Turn> = records.iter().map(turn_from_record).collect();
        let mut by_turn: HashMap<String, Vec<ThreadItem>> = HashMap::new();
        for entry in history::items_from_transcript(&transcript, &record.cwd) {
            if let Some(turn) = entry.turn_id {
                by_turn.entry(turn).or_default().push(entry.item);
            }
        }
        for turn in &mut turns {
            turn.items = by_turn.remove(&turn.id).unwrap_or_default();
            turn.items_view = "full".to_string();
        }
        Ok(turns)
    })
    .await
}

/// All turns of a thread, oldest first: stored ones, with the items of those run while loaded.
async fn all_turns(server: &Server, thread_id: ThreadId) -> Result<Vec<Turn>, ErrorObject> {
    let mut turns = stored_turns(server, thread_id).await?;
    if let Some(hub) = server.loaded(&thread_id) {
        for live in hub.turns() {
            match turns.iter_mut().find(|t| t.id == live.id) {
                Some(slot) => *slot = live,
                None => turns.push(live),
            }
        }
    }
    Ok(turns)
}

/// `thread/read`.
pub(crate) async fn thread_read(
    session: &mut ClientSession,
    params: ThreadIdParams,
) -> HandlerResult {
    let server = &session.server;
    let thread_id = parse_thread_id(&params.thread_id)?;
    let mut thread = match server.loaded(&thread_id) {
        Some(hub) => hub.thread(false),
        None => {
            let record = thread_summary(server, thread_id)
                .await?
                .ok_or_else(|| not_found(&thread_id))?;
            let mut thread = thread_object(&thread_id, &server.config, false, None, Some(&record));
            thread.status = ThreadStatus::NotLoaded;
            thread
        }
    };
    if params.include_turns {
        thread.turns = all_turns(server, thread_id).await?;
    }
    Ok(Reply::Now(json!({ "thread": thread, "readState": null })))
}

fn parse_cursor(cursor: &str) -> Result<(i64, String), ErrorObject> {
    cursor
        .split_once(':')
        .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.to_string())))
        .ok_or_else(|| {
            ErrorObject::invalid_params(format!(
                "Invalid params: cursor: `{cursor}` is not a cursor from thread/list"
            ))
        })
}

/// `thread/list`: recorded threads, most recently updated first, in pages.
/// Whether a `sourceKinds` entry names threads Quest has. Every Quest thread can be continued from
/// any front-end (`quest exec`, the app-server, a TUI), so all first-party kinds match — Codex's
/// TUI asks for `cli`/`vscode` in its resume picker and `exec`/`appServer` elsewhere. Quest has no
/// sub-agents, so the `subAgent*` kinds match nothing.
fn first_party_source(kind: &str) -> bool {
    matches!(kind, "cli" | "vscode" | "exec" | "appServer" | "unknown")
}

pub(crate) async fn thread_list(
    session: &mut ClientSession,
    params: ThreadListParams,
) -> HandlerResult {
    let server = &session.server;
    let limit = params.limit.unwrap_or(25).clamp(1, 100) as usize;
    if params.archived == Some(true) {
        // Quest does not archive threads.
        return Ok(Reply::Now(
            json!({"data": [], "readStates": {}, "nextCursor": null, "backwardsCursor": null}),
        ));
    }
    let after = params.cursor.as_deref().map(parse_cursor).transpose()?;
    let providers = params.model_providers.unwrap_or_default();
    let sources = params.source_kinds.unwrap_or_default();
    let excluded = params.excluded_thread_ids.unwrap_or_default();
    let cwd_filter: Vec<String> = match &params.cwd {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let search = params.search_term.as_deref().map(str::to_lowercase);
    let records = on_state(&server.default_manager, |manager| {
        manager.list_threads(usize::MAX).map_err(core_error)
    })
    .await?;
    let matching = records.into_iter().filter(|r| {
        let id = r.id.to_string();
        // As Codex, a thread is listed once it has content (a user message or a goal): the
        // empty thread every front-end opens at start-up would otherwise pile up in pickers.
        r.preview.is_some()
            && (providers.is_empty() || providers.contains(&r.model_provider))
            && (sources.is_empty() || sources.iter().any(|s| first_party_source(s)))
            && !excluded.contains(&id)
            && (cwd_filter.is_empty() || cwd_filter.contains(&r.cwd))
            && search.as_ref().is_none_or(|term| {
                r.preview
                    .as_deref()
                    .unwrap_or("")
                    .to_lowercase()
                    .contains(term)
                    || r.title
                        .as_deref()
                        .unwrap_or("")
                        .to_lowercase()
                        .contains(term)
            })
            && after.as_ref().is_none_or(|(ms, after_id)| {
                (r.updated_at_ms, id.as_str()) < (*ms, after_id.as_str())
            })
    });
    let mut page: Vec<ThreadSummary> = matching.take(limit + 1).collect();
    let next_cursor = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|r| format!("{}:{}", r.updated_at_ms, r.id))
    } else {
        None
    };
    let data: Vec<Thread> = page
        .iter()
        .map(|record| match server.loaded(&record.id) {
            Some(hub) => {
                let mut thread = hub.thread(false);
                thread.preview = record.preview.clone().unwrap_or_default();
                thread.updated_at = record.updated_at_ms / 1000;
                thread
            }
            None => {
                let mut thread =
                    thread_object(&record.id, &server.config, false, None, Some(record));
                thread.status = ThreadStatus::NotLoaded;
                thread
            }
        })
        .collect();
    Ok(Reply::Now(json!({
        "data": data,
        "readStates": {},
        "nextCursor": next_cursor,
        "backwardsCursor": null,
    })))
}

/// `thread/turns/list`: newest first by default, paged by position.
pub(crate) async fn thread_turns_list(
    session: &mut ClientSession,
    params: ThreadTurnsListParams,
) -> HandlerResult {
    let server = &session.server;
    let thread_id = parse_thread_id(&params.thread_id)?;
    ensure_thread(server, thread_id).await?;
    let mut turns = all_turns(server, thread_id).await?;
    if params.sort_direction.as_deref() != Some("asc") {
        turns.reverse();
    }
    let start = match &params.cursor {
        Some(cursor) => cursor.parse::<usize>().map_err(|_| {
            ErrorObject::invalid_params(format!(
                "Invalid params: cursor: `{cursor}` is not a cursor from thread/turns/list"
            ))
        })?,
        None => 0,
    };
    let limit = params.limit.unwrap_or(25).clamp(1, 100) as usize;
    let end = (start + limit).min(turns.len());
    let page: Vec<Turn> = turns
        .get(start..end)
        .map(<[Turn]>::to_vec)
        .unwrap_or_default();
    let mut page = page;
    if params.items_view.as_deref() == Some("notLoaded") {
        for turn in &mut page {
            turn.items.clear();
            turn.items_view = "notLoaded".to_string();
        }
    }
    let next = (end < turns.len()).then(|| end.to_string());
    Ok(Reply::Now(
        json!({"data": page, "nextCursor": next, "backwardsCursor": null}),
    ))
}

/// `thread/items/list`: the thread's items across turns (or one turn's), oldest first unless
/// `sortDirection` is `desc`, paged by an opaque cursor or after an item anchor.
pub(crate) async fn thread_items_list(
    session: &mut ClientSession,
    params: ThreadItemsListParams,
) -> HandlerResult {
    let server = &session.server;
    let thread_id = parse_thread_id(&params.thread_id)?;
    ensure_thread(server, thread_id).await?;
    let turns = all_turns(server, thread_id).await?;
    if let Some(turn) = &params.turn_id
        && !turns.iter().any(|t| &t.id == turn)
    {
        return Err(ErrorObject::invalid_params(format!(
            "Invalid params: turnId: no turn {turn} in thread {thread_id}"
        )));
    }
    let mut entries: Vec<Value> = turns
        .iter()
        .filter(|turn| params.turn_id.as_ref().is_none_or(|id| &turn.id == id))
        .flat_map(|turn| {
            turn.items
                .iter()
                .map(move |item| json!({"item": item, "turnId": turn.id}))
        })
        .collect();
    let descending = match params.sort_direction.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ErrorObject::invalid_params(format!(
                "Invalid params: sortDirection: `{other}` is neither `asc` nor `desc`"
            )));
        }
    };
    if descending {
        entries.reverse();
    }
    let start = match &params.cursor {
        None | Some(Value::Null) => 0,
        Some(Value::String(cursor)) => cursor.parse::<usize>().map_err(|_| {
            ErrorObject::invalid_params(format!(
                "Invalid params: cursor: `{cursor}` is not a cursor from thread/items/list"
            ))
        })?,
        Some(anchor) => {
            let item_id = match (anchor["type"].as_str(), anchor["itemId"].as_str()) {
                (Some("item"), Some(id)) => id,
                _ => {
                    return Err(ErrorObject::invalid_params(
                        "Invalid params: cursor: expected a string cursor or {\"type\": \"item\", \"itemId\": …}",
                    ));
                }
            };
            if params.turn_id.is_none() {
                return Err(ErrorObject::invalid_params(
                    "Invalid params: turnId: an item anchor needs the turn it is in",
                ));
            }
            let at = entries
                .iter()
                .position(|e| e["item"]["id"] == item_id)
                .ok_or_else(|| {
                    ErrorObject::invalid_params(format!(
                        "Invalid params: cursor: no item {item_id} in that turn"
                    ))
                })?;
            at + 1
        }
    };
    let limit = params.limit.unwrap_or(100).clamp(1, 500) as usize;
    let end = (start + limit).min(entries.len());
    let page: Vec<Value> = entries
        .get(start..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    let next = (end < entries.len()).then(|| end.to_string());
    Ok(Reply::Now(
        json!({"data": page, "nextCursor": next, "backwardsCursor": null}),
    ))
}

/// `Ok` for a thread loaded here or recorded; otherwise the "thread not found" error.
async fn ensure_thread(server: &Server, thread_id: ThreadId) -> Result<(), ErrorObject> {
    if server.loaded(&thread_id).is_some() || thread_summary(server, thread_id).await?.is_some() {
        Ok(())
    } else {
        Err(not_found(&thread_id))
    }
}

/// `thread/readState/update`: Quest keeps no unread markers; every thread reads as read.
pub(crate) async fn read_state_update(
    session: &mut ClientSession,
    params: ThreadIdParams,
) -> HandlerResult {
    let thread_id = parse_thread_id(&params.thread_id)?;
    ensure_thread(&session.server, thread_id).await?;
    Ok(Reply::Now(json!({
        "readState": {"firstUnread": null, "revision": uuid::Uuid::new_v4().to_string()}
    })))
}

/// `thread/unsubscribe`: stop notifications to this client; the thread keeps running.
pub(crate) fn thread_unsubscribe(
    session: &mut ClientSession,
    params: ThreadIdParams,
) -> HandlerResult {
    let thread_id = parse_thread_id(&params.thread_id)?;
    let status = match session.server.loaded(&thread_id) {
        None => "notLoaded",
        Some(hub) if hub.unsubscribe(session.client.id) => "unsubscribed",
        Some(_) => "notSubscribed",
    };
    Ok(Reply::Now(json!({ "status": status })))
}

fn input_text(input: &[UserInput]) -> Result<String, ErrorObject> {
    let mut parts = Vec::new();
    for (index, item) in input.iter().enumerate() {
        match item {
            UserInput::Text { text, .. } => parts.push(text.clone()),
            UserInput::Mention { path, .. } | UserInput::Skill { path, .. } => {
                parts.push(path.clone())
            }
            UserInput::Image { .. } | UserInput::LocalImage { .. } => {
                return Err(ErrorObject::invalid_params(format!(
                    "Invalid params: input[{index}]: image input is not supported by this server"
                )));
            }
        }
    }
    let text = parts.join("\n");
    if text.trim().is_empty() {
        return Err(ErrorObject::invalid_params(
            "Invalid params: input: the message has no text",
        ));
    }
    Ok(text)
}

async fn loaded_hub(server: &Server, thread_id: ThreadId) -> Result<Arc<ThreadHub>, ErrorObject> {
    match server.loaded(&thread_id) {
        Some(hub) => Ok(hub),
        None => {
            ensure_thread(server, thread_id).await?;
            Err(ErrorObject::invalid_request(format!(
                "thread {thread_id} is not loaded; call thread/resume first"
            )))
        }
    }
}

/// `turn/start`: queues the input; the hub answers right before the turn's `turn/started`.
pub(crate) async fn turn_start(
    session: &mut ClientSession,
    id: &RequestId,
    params: TurnStartParams,
) -> HandlerResult {
    let server = session.server.clone();
    let thread_id = parse_thread_id(&params.thread_id)?;
    let hub = loaded_hub(&server, thread_id).await?;
    let text = input_text(&params.input)?;
    hub.subscribe(&session.client);
    if !hub.thread(false).ephemeral {
        let preview: String = text.chars().take(200).collect();
        let recorded = on_state(&hub.manager, move |manager| {
            manager
                .fill_thread_preview(&thread_id, &preview)
                .map_err(core_error)
        })
        .await;
        if let Err(err) = recorded {
            tracing::warn!(
                "could not record the preview of {thread_id}: {}",
                err.message
            );
        }
    }
    hub.set_preview(&text);
    let pending = PendingStart {
        client: session.client.clone(),
        request_id: id.clone(),
        input: params.input,
        client_message_id: params.client_user_message_id,
    };
    if !hub.start_turn(pending, text) {
        return Err(internal(format!("thread {thread_id} has stopped")));
    }
    Ok(Reply::Deferred)
}

/// `turn/interrupt`: cancels the running turn; a goal stays as it is (clients pause it first).
pub(crate) async fn turn_interrupt(
    session: &mut ClientSession,
    params: TurnInterruptParams,
) -> HandlerResult {
    let thread_id = parse_thread_id(&params.thread_id)?;
    let hub = loaded_hub(&session.server, thread_id).await?;
    if hub.running_turn().as_deref() == Some(params.turn_id.as_str()) {
        hub.handle.submit(Op::Interrupt { pause_goal: false });
    }
    Ok(Reply::Now(json!({})))
}

/// `thread/compact/start`: the thread compacts its history in a turn of its own (after the running
/// turn, if any), reported as that turn's `contextCompaction` item; the answer comes at once.
pub(crate) async fn thread_compact_start(
    session: &mut ClientSession,
    params: ThreadCompactStartParams,
) -> HandlerResult {
    let thread_id = parse_thread_id(&params.thread_id)?;
    let hub = loaded_hub(&session.server, thread_id).await?;
    hub.handle.submit(Op::Compact);
    Ok(Reply::Now(json!({})))
}

/// The loaded hub of a thread that may hold a goal, or `None` for a recorded, unloaded thread.
async fn goal_thread(
    server: &Server,
    thread_id: ThreadId,
) -> Result<Option<Arc<ThreadHub>>, ErrorObject> {
    let hub = server.loaded(&thread_id);
    match &hub {
        Some(hub) if hub.thread(false).ephemeral => Err(ErrorObject::invalid_request(format!(
            "ephemeral thread does not support goals: {thread_id}"
        ))),
        Some(_) => Ok(hub),
        None => {
            ensure_thread(server, thread_id).await?;
            Ok(None)
        }
    }
}

fn goal_error(err: GoalError) -> ErrorObject {
    match err {
        GoalError::Refused(refusal) => ErrorObject::invalid_request(refusal.to_string()),
        GoalError::NoSuchThread(id) => not_found(&id),
        GoalError::LeaseHeld { .. } | GoalError::Ephemeral => {
            ErrorObject::invalid_request(err.to_string())
        }
        GoalError::Storage(storage) => internal(storage),
    }
}

fn manager_of(server: &Server, hub: Option<&Arc<ThreadHub>>) -> ThreadManager {
    hub.map_or_else(|| server.default_manager.clone(), |h| h.manager.clone())
}

fn origin(origin: Option<GoalMutationOrigin>) -> Option<GoalOrigin> {
    origin.map(|o| match o {
        GoalMutationOrigin::User => GoalOrigin::User,
        GoalMutationOrigin::Automatic => GoalOrigin::Automatic,
    })
}

/// `thread/goal/get`.
pub(crate) async fn goal_get(session: &mut ClientSession, params: ThreadIdParams) -> HandlerResult {
    let thread_id = parse_thread_id(&params.thread_id)?;
    let hub = goal_thread(&session.server, thread_id).await?;
    let goal = on_state(&manager_of(&session.server, hub.as_ref()), move |manager| {
        manager.goal(&thread_id).map_err(goal_error)
    })
    .await?;
    Ok(Reply::Now(json!({ "goal": goal.map(|g| g.to_wire()) })))
}

fn budget_change(value: Option<Option<i64>>) -> BudgetChange {
    match value {
        None => BudgetChange::Keep,
        Some(None) => BudgetChange::Clear,
        Some(Some(n)) => BudgetChange::Set(n),
    }
}

/// The state side of `thread/goal/set`: creates the goal, or edits the one there is.
fn set_goal(
    manager: &ThreadManager,
    thread_id: ThreadId,
    params: ThreadGoalSetParams,
) -> Result<GoalState, ErrorObject> {
    let existing = manager.goal(&thread_id).map_err(goal_error)?;
    let mut update = GoalUpdate {
        objective: params.objective.clone(),
        status: params.status,
        token_budget: budget_change(params.token_budget),
        time_budget_seconds: budget_change(params.time_budget_seconds),
        turn_budget: budget_change(params.turn_budget),
        auto_resume_at_reset: params.auto_resume_at_reset,
        origin: origin(params.origin),
    };
    let goal = match existing {
        None => {
            let Some(objective) = params.objective.clone() else {
                return Err(ErrorObject::invalid_request(format!(
                    "cannot update goal for thread {thread_id}: no goal exists"
                )));
            };
            let created = manager
                .create_goal(
                    &thread_id,
                    NewGoal {
                        objective,
                        budgets: GoalBudgets {
                            tokens: params.token_budget.flatten(),
                            time_seconds: params.time_budget_seconds.flatten(),
                            turns: params.turn_budget.flatten(),
                        },
                        status: params.status,
                        replace: false,
                        origin: origin(params.origin),
                    },
                )
                .map_err(goal_error)?;
            // What creation does not carry (a non-active first status on a running thread, the
            // auto-resume opt-in) follows as an edit of the new goal.
            let status_pending = params.status.is_some_and(|s| s != created.status);
            if status_pending || params.auto_resume_at_reset.is_some() {
                update.objective = None;
                update.token_budget = BudgetChange::Keep;
                update.time_budget_seconds = BudgetChange::Keep;
                update.turn_budget = BudgetChange::Keep;
                update.status = params.status.filter(|_| status_pending);
                manager
                    .update_goal(&thread_id, update)
                    .map_err(goal_error)?
                    .unwrap_or(created)
            } else {
                created
            }
        }
        Some(_) => manager
            .update_goal(&thread_id, update)
            .map_err(goal_error)?
            .ok_or_else(|| internal("the goal vanished while it was being set"))?,
    };
    if let Some(objective) = &params.objective
        && let Err(err) = manager.fill_thread_preview(&thread_id, objective.trim())
    {
        tracing::warn!("could not record the preview of {thread_id}: {err}");
    }
    Ok(goal)
}

/// `thread/goal/set`: create, edit or change status; answers before `thread/goal/updated`; an
/// `active` goal on an idle loaded thread starts a continuation at once.
pub(crate) async fn goal_set(
    session: &mut ClientSession,
    id: &RequestId,
    params: ThreadGoalSetParams,
) -> HandlerResult {
    let server = session.server.clone();
    let thread_id = parse_thread_id(&params.thread_id)?;
    let hub = goal_thread(&server, thread_id).await?;
    // Held until the answer is queued: the notifications this change causes come after it.
    let _gate = match &hub {
        Some(hub) => Some(hub.gate.lock().await),
        None => None,
    };
    let manager = manager_of(&server, hub.as_ref());
    let objective = params.objective.clone();
    let goal = on_state(&manager, move |manager| {
        set_goal(manager, thread_id, params)
    })
    .await?;
    if let (Some(objective), Some(hub)) = (&objective, &hub) {
        hub.set_preview(objective.trim());
    }
    let wire = goal.to_wire();
    session.client.respond(id.clone(), json!({ "goal": wire }));
    match &hub {
        // A loaded thread's goal runtime announces the change itself, in order with its turns.
        Some(hub) => {
            if goal.status == GoalStatus::Active && hub.is_idle() {
                hub.handle.submit(Op::WakeIdle);
            }
        }
        None => session.client.notify(
            "thread/goal/updated",
            json!({"threadId": thread_id.to_string(), "turnId": null, "goal": wire}),
        ),
    }
    Ok(Reply::Deferred)
}

/// `thread/goal/clear`.
pub(crate) async fn goal_clear(
    session: &mut ClientSession,
    id: &RequestId,
    params: ThreadGoalClearParams,
) -> HandlerResult {
    let server = session.server.clone();
    let thread_id = parse_thread_id(&params.thread_id)?;
    let hub = goal_thread(&server, thread_id).await?;
    let _gate = match &hub {
        Some(hub) => Some(hub.gate.lock().await),
        None => None,
    };
    let origin = origin(params.origin);
    let cleared = on_state(&manager_of(&server, hub.as_ref()), move |manager| {
        manager.clear_goal(&thread_id, origin).map_err(goal_error)
    })
    .await?;
    session
        .client
        .respond(id.clone(), json!({ "cleared": cleared }));
    if cleared && hub.is_none() {
        session.client.notify(
            "thread/goal/cleared",
            json!({"threadId": thread_id.to_string()}),
        );
    }
    Ok(Reply::Deferred)
}

/// `thread/goal/log` (Quest extension; alias `thread/goal/history`): the goal audit trail.
pub(crate) async fn goal_log(
    session: &mut ClientSession,
    params: ThreadGoalLogParams,
) -> HandlerResult {
    let thread_id = parse_thread_id(&params.thread_id)?;
    let hub = goal_thread(&session.server, thread_id).await?;
    let limit = params.limit.unwrap_or(100).clamp(1, 500) as usize;
    let cursor = params.cursor;
    let page = on_state(&manager_of(&session.server, hub.as_ref()), move |manager| {
        manager
            .goal_history(&thread_id, None, limit, cursor)
            .map_err(goal_error)
    })
    .await?;
    Ok(Reply::Now(json!({
        "events": page.events,
        "nextCursor": page.next_cursor,
    })))
}
