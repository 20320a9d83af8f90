//! One turn: send history → stream → run tool calls (in parallel) → send outputs → repeat until a
//! response has no tool call.

use std::sync::Arc;

use quest_model::ResponseEvent;
use quest_protocol::{ResponseItem, TokenUsage, TurnId};
use tokio_util::sync::CancellationToken;

use crate::protocol::{EventMsg, TurnError, TurnTrigger};
use crate::session::Session;
use crate::tools::{ToolCall, ToolContext, ToolResult, run_builtin_tool};

/// How a turn ended.
#[derive(Debug)]
pub enum TurnOutcome {
    /// The model answered without tool calls.
    Completed {
        /// The last assistant message.
        last_message: Option<String>,
    },
    /// The model client or storage failed.
    Failed(TurnError),
    /// The turn was interrupted.
    Aborted,
}

/// What a finished turn reports to the actor.
#[derive(Debug)]
pub struct TurnReport {
    /// The turn.
    pub turn_id: TurnId,
    /// Why it ran.
    pub trigger: TurnTrigger,
    /// How it ended.
    pub outcome: TurnOutcome,
    /// Usage summed over its requests.
    pub usage: TokenUsage,
    /// Every tool call it ran, in order.
    pub tool_results: Vec<ToolResult>,
    /// Model requests made (logical requests, not HTTP attempts).
    pub model_requests: u32,
}

/// Hooks the goal runtime plugs into a running turn.
pub trait TurnObserver: Send + Sync {
    /// Handles a goal tool call; `None` when the tool is not a goal tool.
    fn goal_tool(&self, turn_id: TurnId, call: &ToolCall) -> Option<ToolResult>;
    /// Called after a model request completed with its usage.
    fn on_usage(&self, turn_id: TurnId, usage: &TokenUsage);
    /// Called after tools executed; may return a steering message to add before the next request.
    fn after_tools(&self, turn_id: TurnId, results: &[ToolResult]) -> Option<String>;
}

/// Runs one turn to its end. `history` is the thread's full history; items are appended to it and
/// to the durable rollout as they are produced.
pub async fn run_turn(
    session: Arc<Session>,
    history: &mut Vec<ResponseItem>,
    turn_id: TurnId,
    trigger: TurnTrigger,
    input: Vec<ResponseItem>,
    cancel: CancellationToken,
    observer: Option<Arc<dyn TurnObserver>>,
) -> TurnReport {
    let mut report = TurnReport {
        turn_id,
        trigger,
        outcome: TurnOutcome::Aborted,
        usage: TokenUsage::default(),
        tool_results: Vec::new(),
        model_requests: 0,
    };
    if let Err(message) = record(&session, history, turn_id, input) {
        report.outcome = TurnOutcome::Failed(TurnError::internal(message));
        return report;
    }
    let mut last_message = None;
    loop {
        let prompt = session.prompt(history, turn_id, trigger);
        let events_session = session.clone();
        let mut on_event = move |event: ResponseEvent| match event {
            ResponseEvent::OutputTextDelta(delta) => {
                events_session.emit(Some(turn_id), EventMsg::AgentMessageDelta(delta));
            }
            ResponseEvent::Retrying {
                attempt,
                max_attempts,
                reason,
                ..
            } => events_session.emit(
                Some(turn_id),
                EventMsg::Retrying {
                    attempt,
                    max_attempts,
                    reason,
                },
            ),
            _ => {}
        };
        report.model_requests += 1;
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                report.outcome = TurnOutcome::Aborted;
                return report;
            }
            result = session.client.stream(&prompt, &mut on_event) => result,
        };
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(err) => {
                report.outcome = TurnOutcome::Failed(TurnError::from_model(&err));
                return report;
            }
        };
        report.usage.add(&outcome.usage);
        if let Some(observer) = &observer {
            observer.on_usage(turn_id, &outcome.usage);
        }
        let mut calls = Vec::new();
        for item in &outcome.items {
            if item.role() == Some("assistant")
                && let Some(text) = item.message_text()
            {
                last_message = Some(text.clone());
                session.emit(Some(turn_id), EventMsg::AgentMessage(text));
            } else if let Some(text) = item.reasoning_text()
                && !text.is_empty()
            {
                session.emit(Some(turn_id), EventMsg::Reasoning(text));
            }
            if let Some(call) = ToolCall::from_item(item) {
                calls.push(call);
            }
        }
        let received: Vec<ResponseItem> = outcome
            .items
            .into_iter()
            .filter(|item| !matches!(item, ResponseItem::Other))
            .collect();
        if let Err(message) = record(&session, history, turn_id, received) {
            report.outcome = TurnOutcome::Failed(TurnError::internal(message));
            return report;
        }
        if calls.is_empty() {
            report.outcome = TurnOutcome::Completed { last_message };
            return report;
        }
        let results = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                report.outcome = TurnOutcome::Aborted;
                return report;
            }
            results = run_calls(&session, turn_id, calls, &cancel, observer.as_ref()) => results,
        };
        let mut outputs: Vec<ResponseItem> = results.iter().map(ToolResult::output_item).collect();
        if let Some(observer) = &observer
            && let Some(steer) = observer.after_tools(turn_id, &results)
        {
            outputs.push(ResponseItem::text_message("user", steer));
        }
        report.tool_results.extend(results);
        if let Err(message) = record(&session, history, turn_id, outputs) {
            report.outcome = TurnOutcome::Failed(TurnError::internal(message));
            return report;
        }
        if cancel.is_cancelled() {
            report.outcome = TurnOutcome::Aborted;
            return report;
        }
    }
}

fn record(
    session: &Session,
    history: &mut Vec<ResponseItem>,
    turn_id: TurnId,
    items: Vec<ResponseItem>,
) -> Result<(), String> {
    if items.is_empty() {
        return Ok(());
    }
    session.persist(Some(turn_id), &items)?;
    history.extend(items);
    Ok(())
}

/// Runs the calls of one response: goal tools first, in order, then every other call in parallel.
/// Results come back in call order.
async fn run_calls(
    session: &Arc<Session>,
    turn_id: TurnId,
    calls: Vec<ToolCall>,
    cancel: &CancellationToken,
    observer: Option<&Arc<dyn TurnObserver>>,
) -> Vec<ToolResult> {
    let ctx = Arc::new(ToolContext {
        cwd: session.config.cwd.clone(),
        shell_timeout: std::time::Duration::from_millis(session.config.tools.shell_timeout_ms),
        max_output_bytes: session.config.tools.max_output_bytes,
        env: Vec::new(),
        cancel: cancel.clone(),
    });
    let mut slots: Vec<Option<ToolResult>> = Vec::with_capacity(calls.len());
    let mut handles = Vec::new();
    for (index, call) in calls.into_iter().enumerate() {
        if let Some(result) = observer.and_then(|o| o.goal_tool(turn_id, &call)) {
            slots.push(Some(result));
            continue;
        }
        slots.push(None);
        let ctx = ctx.clone();
        let session = session.clone();
        handles.push((
            index,
            call.clone(),
            tokio::spawn(async move {
                let emit = |msg: EventMsg| session.emit(Some(turn_id), msg);
                run_builtin_tool(&call, &ctx, &emit).await
            }),
        ));
    }
    for (index, call, handle) in handles {
        let result = match handle.await {
            Ok(result) => result,
            Err(err) => ToolResult {
                output: format!("tool `{}` crashed: {err}", call.name),
                call,
                executed: true,
                success: false,
                changed_files: false,
            },
        };
        slots[index] = Some(result);
    }
    slots.into_iter().flatten().collect()
}
