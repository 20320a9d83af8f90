//! One turn: send history → stream → run tool calls (in the model's order; read-only ones together)
//! → send outputs → repeat until a response has no tool call.

use std::sync::Arc;

use quest_model::ResponseEvent;
use quest_protocol::{CompactedHistory, CompactionTrigger, ResponseItem, TokenUsage, TurnId};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::field::Empty;

use crate::blocking;
use crate::compact::{self, CompactionSettings};
use crate::protocol::{EventMsg, TurnError, TurnTrigger, turn_error_from_model};
use crate::session::{History, Session};
use crate::tool_order;
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
    /// Model requests made (logical requests, not HTTP attempts), summary requests included.
    pub model_requests: u32,
    /// What kind of turn it was.
    pub kind: TurnKind,
    /// Compactions the turn performed.
    pub compactions: u32,
}

/// What a turn does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnKind {
    /// Sampling requests and tool calls until the model stops calling tools.
    Regular,
    /// Only a compaction of the history (asked for by the user). It is neither progress nor a
    /// no-progress turn for a goal, but its tokens are charged.
    Compact,
}

/// Hooks the goal runtime plugs into a running turn.
pub trait TurnObserver: Send + Sync {
    /// Whether [`TurnObserver::goal_tool`] may handle a call of the tool `name` (answered on
    /// the async worker, without a store call: a `false` spares the call its hand-off to the
    /// blocking pool).
    fn handles_tool(&self, name: &str) -> bool {
        let _ = name;
        true
    }
    /// Handles a goal tool call; `None` when the tool is not a goal tool.
    fn goal_tool(&self, turn_id: TurnId, call: &ToolCall) -> Option<ToolResult>;
    /// Called after a model request completed with its usage (the turn's queued writes are
    /// committed right after it, in the same trip to the blocking pool).
    fn on_usage(&self, turn_id: TurnId, usage: &TokenUsage);
    /// Called instead of [`TurnObserver::on_usage`] for the response that ends the turn (it
    /// called no tool): its charge waits for the turn's end and is committed with it. Called on
    /// the async worker: it must not block (no store call).
    fn on_final_usage(&self, turn_id: TurnId, usage: &TokenUsage);
    /// Called after tools executed; may return a steering message to add before the next request.
    fn after_tools(&self, turn_id: TurnId, results: &[ToolResult]) -> Option<String>;
    /// The goal objective and wire status a compacted history must restate, if there is a goal.
    fn goal_objective(&self) -> Option<(String, &'static str)>;
}

/// Runs one turn to its end. `history` is the thread's live history; items are appended to it
/// and to the durable rollout as they are produced, and a compaction replaces it. Records the
/// turn metrics
/// (`codex.turn.e2e_duration_ms`, `codex.turn.tool.call`) when it ends.
pub async fn run_turn(
    session: Arc<Session>,
    history: &mut History,
    turn_id: TurnId,
    trigger: TurnTrigger,
    input: Vec<ResponseItem>,
    cancel: CancellationToken,
    observer: Option<Arc<dyn TurnObserver>>,
) -> TurnReport {
    let started = std::time::Instant::now();
    let telemetry = session.telemetry.clone();
    let report = run_turn_inner(session, history, turn_id, trigger, input, cancel, observer).await;
    if let Some(t) = telemetry {
        t.record_turn_end(started.elapsed(), report.tool_results.len() as u64);
    }
    report
}

/// Time-to-first-token and time-to-first-message of one turn, each recorded once.
struct TurnClock {
    started: std::time::Instant,
    first_token: std::sync::atomic::AtomicBool,
    first_message: std::sync::atomic::AtomicBool,
}

impl TurnClock {
    fn first_token(&self, session: &Session) {
        if !self
            .first_token
            .swap(true, std::sync::atomic::Ordering::Relaxed)
            && let Some(t) = &session.telemetry
        {
            t.record_turn_ttft(self.started.elapsed());
        }
    }

    fn first_message(&self, session: &Session) {
        if !self
            .first_message
            .swap(true, std::sync::atomic::Ordering::Relaxed)
            && let Some(t) = &session.telemetry
        {
            t.record_turn_ttfm(self.started.elapsed());
        }
    }
}

async fn run_turn_inner(
    session: Arc<Session>,
    history: &mut History,
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
        kind: TurnKind::Regular,
        compactions: 0,
    };
    session.approvals.begin_turn();
    history.tracker.on_items_added(&input);
    let input_len = input.len();
    if let Err(message) = record(&session, history, turn_id, input) {
        report.outcome = TurnOutcome::Failed(TurnError::internal(message));
        return report;
    }
    // What the user typed (or a goal record written for the user) is on disk before the model
    // sees it; a bare continuation prompt, restated every goal turn, waits for the first
    // response's commit.
    let carries_user_text = trigger == TurnTrigger::User || input_len > 1;
    if carries_user_text && let Err(message) = commit(&session).await {
        report.outcome = TurnOutcome::Failed(TurnError::internal(message));
        return report;
    }
    let mut last_message = None;
    let clock = Arc::new(TurnClock {
        started: std::time::Instant::now(),
        first_token: false.into(),
        first_message: false.into(),
    });
    // Sticky routing: the opaque `x-codex-turn-state` a response carried goes back on every later
    // request of the same turn.
    let mut turn_state: Option<http::HeaderValue> = None;
    // MCP servers started with the thread; the first turn waits for their start to finish (each
    // server is bounded by its startup timeout, so a broken one cannot hold the turn longer).
    let mcp = match &session.mcp {
        Some(handle) => tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                report.outcome = TurnOutcome::Aborted;
                return report;
            }
            manager = handle.manager() => manager,
        },
        None => None,
    };
    // One reactive compaction and one retry per request after `context_length_exceeded`.
    let mut reactive_used = false;
    let ctx = CompactionCtx {
        session: &session,
        turn_id,
        trigger,
        cancel: &cancel,
        observer: observer.as_ref(),
    };
    loop {
        // Before every request: compact when the live context crossed the limit.
        let Some(settings) = compaction_settings(&session, turn_id, &cancel).await else {
            report.outcome = TurnOutcome::Aborted;
            return report;
        };
        if settings.should_compact(history.tracker.tokens()) {
            match ctx
                .compact(history, CompactionTrigger::Auto, &mut report)
                .await
            {
                Ok(()) => {}
                Err(CompactionFailure::Aborted) => {
                    report.outcome = TurnOutcome::Aborted;
                    return report;
                }
                // Stopping here would be worse than trying: the window itself may still fit.
                Err(CompactionFailure::Failed(error)) if !error.is_usage_limit() => {
                    session.emit(
                        Some(turn_id),
                        EventMsg::Warning(format!(
                            "context compaction failed; continuing with the full history: {}",
                            error.message
                        )),
                    );
                }
                Err(CompactionFailure::Failed(error)) => {
                    report.outcome = TurnOutcome::Failed(error);
                    return report;
                }
            }
        }
        let mut prompt = session.prompt(history, turn_id, trigger);
        if let Some(manager) = &mcp {
            prompt.tools.extend(crate::mcp::tool_specs(manager));
        }
        if let Some(value) = &turn_state {
            prompt
                .extra_headers
                .insert("x-codex-turn-state", value.clone());
        }
        // `error.type` of the last failed HTTP attempt, for the GenAI duration metric.
        let last_error_type: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let mut on_event = stream_event_handler(
            &session,
            turn_id,
            Some(clock.clone()),
            last_error_type.clone(),
        );
        report.model_requests += 1;
        let started = std::time::Instant::now();
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                report.outcome = TurnOutcome::Aborted;
                return report;
            }
            result = session.client.stream_with_meta(&prompt, &mut on_event) => result,
        };
        // The prompt shares the history's encoded bytes: let go of them before the history
        // grows, so appending does not copy them.
        drop(prompt);
        let result = result.map(|(outcome, meta)| {
            if let Some(value) = meta
                .turn_state()
                .and_then(|v| http::HeaderValue::from_str(v).ok())
            {
                turn_state = Some(value);
            }
            outcome
        });
        let error_type = last_error_type.lock().ok().and_then(|slot| slot.clone());
        record_model_call(&session, started.elapsed(), &result, error_type);
        let outcome = match result {
            Ok(outcome) => {
                reactive_used = false;
                outcome
            }
            Err(quest_model::ModelError::ContextWindowExceeded) if !reactive_used => {
                reactive_used = true;
                match ctx
                    .compact(history, CompactionTrigger::Reactive, &mut report)
                    .await
                {
                    Ok(()) => continue,
                    Err(CompactionFailure::Aborted) => {
                        report.outcome = TurnOutcome::Aborted;
                        return report;
                    }
                    Err(CompactionFailure::Failed(mut error)) => {
                        if !error.is_usage_limit() {
                            error.message = format!(
                                "The model's context window was exceeded and compacting the history failed: {}",
                                error.message
                            );
                        }
                        report.outcome = TurnOutcome::Failed(error);
                        return report;
                    }
                }
            }
            Err(err) => {
                report.outcome = TurnOutcome::Failed(turn_error_from_model(&err));
                return report;
            }
        };
        let response_id = outcome.response_id.clone();
        report.usage.add(&outcome.usage);
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
        history.on_response(outcome.usage.input_tokens, outcome.usage.output_tokens);
        if calls.is_empty() {
            // This response ends the turn and nothing runs before the turn's end: its items and
            // its goal charge are committed with the turn end (one commit, not two).
            if let Some(observer) = &observer {
                observer.on_final_usage(turn_id, &outcome.usage);
            }
        } else {
            // One commit per response that runs tools: the queued turn row, input, tool outputs
            // and these items, with the goal's charge for the response when there is one, are
            // on disk before any tool runs (one trip to the blocking pool for both).
            if let Err(message) =
                charge_and_commit(&session, observer.as_ref(), turn_id, outcome.usage).await
            {
                report.outcome = TurnOutcome::Failed(TurnError::internal(message));
                return report;
            }
        }
        if calls.is_empty() {
            // At the end of a turn: compact now so the next turn starts small. The turn's work
            // is done, so a failure here is only a warning; the next request tries again.
            let settings = session.compaction_settings(Some(turn_id), false).await;
            if settings.should_compact(history.tracker.tokens()) {
                match ctx
                    .compact(history, CompactionTrigger::Auto, &mut report)
                    .await
                {
                    Ok(()) => {}
                    Err(CompactionFailure::Aborted) => {
                        report.outcome = TurnOutcome::Aborted;
                        return report;
                    }
                    Err(CompactionFailure::Failed(error)) => session.emit(
                        Some(turn_id),
                        EventMsg::Warning(format!("context compaction failed: {}", error.message)),
                    ),
                }
            }
            report.outcome = TurnOutcome::Completed { last_message };
            return report;
        }
        // Every call gets an output even when the turn is interrupted, or the next request
        // (with a call the API sees unanswered) would be refused.
        let aborted: Vec<ResponseItem> = calls
            .iter()
            .map(|call| call.output_item(ABORTED_OUTPUT.to_string()))
            .collect();
        let results = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                history.tracker.on_items_added(&aborted);
                if let Err(message) = record(&session, history, turn_id, aborted) {
                    session.emit(Some(turn_id), EventMsg::Warning(message));
                }
                report.outcome = TurnOutcome::Aborted;
                return report;
            }
            results = run_calls(&session, turn_id, &response_id, calls, &cancel, observer.as_ref(), mcp.as_ref()) => results,
        };
        let (mut results, images): (Vec<ToolResult>, Vec<_>) = results.into_iter().unzip();
        let mut outputs: Vec<ResponseItem> = results.iter().map(ToolResult::output_item).collect();
        if let Some(message) = crate::mcp::images_message(&images) {
            outputs.push(message);
        }
        if let Some(observer) = &observer {
            let observer = observer.clone();
            let (steer, returned) =
                blocking::run(move || (observer.after_tools(turn_id, &results), results)).await;
            results = returned;
            if let Some(steer) = steer {
                outputs.push(ResponseItem::text_message("user", steer));
            }
        }
        report.tool_results.extend(results);
        history.tracker.on_items_added(&outputs);
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

/// Runs a turn that only compacts the history (`/compact`, `thread/compact/start`,
/// `quest exec resume <id> --compact`).
pub async fn run_compact_turn(
    session: Arc<Session>,
    history: &mut History,
    turn_id: TurnId,
    trigger: TurnTrigger,
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
        kind: TurnKind::Compact,
        compactions: 0,
    };
    let ctx = CompactionCtx {
        session: &session,
        turn_id,
        trigger,
        cancel: &cancel,
        observer: observer.as_ref(),
    };
    report.outcome = match ctx
        .compact(history, CompactionTrigger::Manual, &mut report)
        .await
    {
        Ok(()) => TurnOutcome::Completed { last_message: None },
        Err(CompactionFailure::Aborted) => TurnOutcome::Aborted,
        Err(CompactionFailure::Failed(mut error)) => {
            if !error.is_usage_limit() {
                error.message = format!("Context compaction failed: {}", error.message);
            }
            TurnOutcome::Failed(error)
        }
    };
    report
}

/// Why a compaction did not happen.
enum CompactionFailure {
    /// The turn was interrupted meanwhile.
    Aborted,
    /// The summary request failed or the result could not be recorded.
    Failed(TurnError),
}

/// What a compaction needs from the running turn.
struct CompactionCtx<'a> {
    session: &'a Arc<Session>,
    turn_id: TurnId,
    trigger: TurnTrigger,
    cancel: &'a CancellationToken,
    observer: Option<&'a Arc<dyn TurnObserver>>,
}

/// Summary requests tried per compaction; each retry after `context_length_exceeded` sends half
/// as much history.
const SUMMARY_ATTEMPTS: u32 = 3;

impl CompactionCtx<'_> {
    /// Asks the model for a hand-off summary through the ordinary Responses endpoint, replaces
    /// the history with [`compact::rebuild_history`]'s result and records it durably. On any
    /// failure the history is left exactly as it was.
    async fn compact(
        &self,
        history: &mut History,
        trigger: CompactionTrigger,
        report: &mut TurnReport,
    ) -> Result<(), CompactionFailure> {
        let session = self.session;
        let started = std::time::Instant::now();
        let tokens_before = history.tracker.tokens();
        // What is being summarized is on disk first, so a process that dies while it waits for
        // the summary leaves exactly that history (compactions are rare; the extra commit is
        // not paid by ordinary requests).
        if let Err(message) = commit(session).await {
            return Err(CompactionFailure::Failed(TurnError::internal(message)));
        }
        let result = self.summarize(history, report).await;
        let (summary, usage) = match result {
            Ok(summary) => summary,
            Err(failure) => {
                if let (CompactionFailure::Failed(error), Some(t)) = (&failure, &session.telemetry)
                {
                    t.compaction(
                        trigger.as_str(),
                        tokens_before,
                        tokens_before,
                        started.elapsed(),
                        Some(error.kind.as_str()),
                    );
                }
                return Err(failure);
            }
        };
        let goal = match self.observer {
            Some(observer) => {
                let observer = observer.clone();
                blocking::run(move || observer.goal_objective()).await
            }
            None => None,
        };
        let items = compact::rebuild_history(
            history.items(),
            &summary,
            goal.as_ref()
                .map(|(objective, status)| compact::GoalObjective { objective, status }),
            &compact::RetentionBudget::default(),
        );
        let tokens_after = compact::estimate_tokens(&items);
        let record = CompactedHistory {
            summary,
            replacement_history: items,
            trigger,
            tokens_before,
            tokens_after,
        };
        // The summary response's commit: the record, behind everything queued before it, with
        // the goal's charge for the response.
        session.queue_compaction(Some(self.turn_id), &record);
        if let Err(message) = charge_and_commit(session, self.observer, self.turn_id, usage).await {
            session.unqueue_compaction();
            return Err(CompactionFailure::Failed(TurnError::internal(message)));
        }
        *history = History::new(record.replacement_history, history.window + 1);
        report.compactions += 1;
        if let Some(t) = &session.telemetry {
            t.compaction(
                trigger.as_str(),
                tokens_before,
                tokens_after,
                started.elapsed(),
                None,
            );
        }
        session.emit(
            Some(self.turn_id),
            EventMsg::ContextCompacted {
                trigger,
                tokens_before,
                tokens_after,
            },
        );
        Ok(())
    }

    /// Sends the summary request (shortening the history when the model refuses it as too
    /// long) and returns the summary text with the response's usage (charged by the caller,
    /// together with the compaction record).
    async fn summarize(
        &self,
        history: &History,
        report: &mut TurnReport,
    ) -> Result<(String, TokenUsage), CompactionFailure> {
        let session = self.session;
        let mut budget = session
            .window
            .settings_now(session.config.compaction)
            .summary_request_budget();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let input = compact::summary_request_input(history.items(), budget);
            let sent_tokens = compact::estimate_tokens(&input);
            let prompt =
                session.compaction_prompt(input, self.turn_id, self.trigger, history.window);
            let last_error_type: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
            let mut on_event =
                stream_event_handler(session, self.turn_id, None, last_error_type.clone());
            report.model_requests += 1;
            let started = std::time::Instant::now();
            let result = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(CompactionFailure::Aborted),
                result = session.client.stream(&prompt, &mut on_event) => result,
            };
            let error_type = last_error_type.lock().ok().and_then(|slot| slot.clone());
            record_model_call(session, started.elapsed(), &result, error_type);
            match result {
                Ok(outcome) => {
                    report.usage.add(&outcome.usage);
                    let Some(summary) = compact::summary_text(&outcome.items) else {
                        if let Some(observer) = self.observer {
                            on_usage(observer, self.turn_id, outcome.usage).await;
                        }
                        return Err(CompactionFailure::Failed(TurnError::internal(
                            "the model answered the compaction request without a summary",
                        )));
                    };
                    return Ok((summary, outcome.usage));
                }
                Err(quest_model::ModelError::ContextWindowExceeded)
                    if attempt < SUMMARY_ATTEMPTS =>
                {
                    budget = Some(sent_tokens / 2);
                }
                Err(err) => return Err(CompactionFailure::Failed(turn_error_from_model(&err))),
            }
        }
    }
}

/// Text deltas of one model request forwarded as [`EventMsg::AgentMessageDelta`]; later ones are
/// dropped.
pub const MAX_STREAMED_TEXT_BYTES: usize = quest_model::sse::MAX_EVENT_STRING_BYTES;

/// Forwards what one request streams: retry notices as events, request attempts and SSE events
/// to telemetry; for a turn's sampling requests (`clock` set) also text deltas as events and
/// first-token and first-message times to the clock.
fn stream_event_handler(
    session: &Arc<Session>,
    turn_id: TurnId,
    clock: Option<Arc<TurnClock>>,
    last_error_type: Arc<std::sync::Mutex<Option<String>>>,
) -> impl FnMut(ResponseEvent) + Send + use<> {
    let events_session = session.clone();
    let events_clock = clock;
    let attempt_error_type = last_error_type;
    // Text streamed so far: past the limit of one item's text the rest is not forwarded (the
    // completed item, shortened by the client, still arrives), so a front-end that gathers
    // deltas holds no more than that.
    let mut streamed = 0usize;
    move |event: ResponseEvent| match event {
        ResponseEvent::OutputTextDelta(delta) => {
            // A summary request's text is not an agent message: only sampling requests stream.
            if let Some(clock) = &events_clock {
                clock.first_token(&events_session);
                streamed = streamed.saturating_add(delta.len());
                if streamed <= MAX_STREAMED_TEXT_BYTES {
                    events_session.emit(Some(turn_id), EventMsg::AgentMessageDelta(delta));
                }
            }
        }
        ResponseEvent::ReasoningSummaryDelta(_) => {
            if let Some(clock) = &events_clock {
                clock.first_token(&events_session);
            }
        }
        ResponseEvent::OutputItemDone(item) => {
            if item.role() == Some("assistant")
                && item.message_text().is_some()
                && let Some(clock) = &events_clock
            {
                clock.first_token(&events_session);
                clock.first_message(&events_session);
            }
        }
        ResponseEvent::RequestAttempt(attempt) => {
            if let Ok(mut slot) = attempt_error_type.lock() {
                slot.clone_from(&attempt.error_type);
            }
            if let Some(t) = &events_session.telemetry {
                t.record_api_request(
                    u64::from(attempt.attempt),
                    attempt.status,
                    attempt.error.as_deref(),
                    attempt.duration,
                    &quest_otel::ApiRequestDetails {
                        error_type: attempt.error_type.clone(),
                        ..Default::default()
                    },
                );
                if let Some(delay) = attempt.retry_delay {
                    t.api_request_retry(
                        u64::from(attempt.attempt),
                        delay,
                        attempt.error_type.as_deref(),
                        attempt.error.as_deref().unwrap_or_default(),
                    );
                }
            }
        }
        ResponseEvent::SseEvent {
            kind,
            duration,
            error,
        } => {
            if let Some(t) = &events_session.telemetry {
                t.log_sse_event(&kind, duration, error.as_deref());
            }
        }
        ResponseEvent::Retrying {
            attempt,
            max_attempts,
            reason,
            delay: _,
        } => events_session.emit(
            Some(turn_id),
            EventMsg::Retrying {
                attempt,
                max_attempts,
                reason,
            },
        ),
        ResponseEvent::Created { .. }
        | ResponseEvent::OutputItemAdded(_)
        | ResponseEvent::Completed { .. } => {}
    }
}

/// The compaction settings for the decision before a request; `None` when the turn was
/// interrupted while waiting for the provider's model list.
async fn compaction_settings(
    session: &Arc<Session>,
    turn_id: TurnId,
    cancel: &CancellationToken,
) -> Option<CompactionSettings> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        settings = session.compaction_settings(Some(turn_id), true) => Some(settings),
    }
}

/// Commits the session's queued writes off the async workers.
async fn commit(session: &Arc<Session>) -> Result<(), String> {
    let session = session.clone();
    blocking::run(move || session.commit()).await
}

/// Reports a response's usage to the observer (a goal charge is a store write), then commits the
/// session's queued writes, both off the async workers in one hand-off.
async fn charge_and_commit(
    session: &Arc<Session>,
    observer: Option<&Arc<dyn TurnObserver>>,
    turn_id: TurnId,
    usage: TokenUsage,
) -> Result<(), String> {
    let session = session.clone();
    let observer = observer.cloned();
    blocking::run(move || {
        if let Some(observer) = observer {
            observer.on_usage(turn_id, &usage);
        }
        session.commit()
    })
    .await
}

/// Reports a response's usage to the observer (a goal charge is a store write) off the async
/// workers.
async fn on_usage(observer: &Arc<dyn TurnObserver>, turn_id: TurnId, usage: TokenUsage) {
    let observer = observer.clone();
    blocking::run(move || observer.on_usage(turn_id, &usage)).await;
}

/// Output recorded for a tool call whose turn was interrupted (or whose process died) before it
/// finished, as Codex records it.
pub const ABORTED_OUTPUT: &str = "aborted";

/// Outputs for the tool calls in `history` that have none (left by a process that died while
/// running them), in call order, each [`ABORTED_OUTPUT`].
pub fn dangling_call_outputs(history: &[ResponseItem]) -> Vec<ResponseItem> {
    let mut open: Vec<crate::tools::ToolCall> = Vec::new();
    for item in history {
        match item {
            ResponseItem::FunctionCallOutput {
                call_id: Some(id), ..
            }
            | ResponseItem::CustomToolCallOutput { call_id: id, .. } => {
                open.retain(|call| call.call_id != *id);
            }
            _ => {
                if let Some(call) = ToolCall::from_item(item) {
                    open.push(call);
                }
            }
        }
    }
    open.iter()
        .map(|call| call.output_item(ABORTED_OUTPUT.to_string()))
        .collect()
}

fn record(
    session: &Session,
    history: &mut History,
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

/// Images an MCP call returned, with the name of the tool that returned them.
type CallImages = (String, Vec<quest_mcp::ModelImage>);

/// Runs the calls of one response in the model's order: a call that may change something runs
/// alone, consecutive read-only calls run together (see [`tool_order`]; an MCP tool is read-only
/// only when its server marks it so). Events and results come back in call order, each with the
/// images an MCP tool returned.
async fn run_calls(
    session: &Arc<Session>,
    turn_id: TurnId,
    response_id: &str,
    calls: Vec<ToolCall>,
    cancel: &CancellationToken,
    observer: Option<&Arc<dyn TurnObserver>>,
    mcp: Option<&Arc<quest_mcp::McpConnectionManager>>,
) -> Vec<(ToolResult, CallImages)> {
    let ctx = ToolContext {
        cwd: session.config.cwd.clone(),
        shell_timeout: std::time::Duration::from_millis(session.config.tools.shell_timeout_ms),
        max_shell_timeout: std::time::Duration::from_millis(
            session.config.tools.max_shell_timeout_ms,
        ),
        max_output_bytes: session.config.tools.max_output_bytes,
        base_env: session.command_env(),
        env: Vec::new(),
        sandbox: session.sandbox(),
        approval_policy: session.config.approval_policy,
        approvals: session.approvals.clone(),
        cancel: cancel.clone(),
    };
    let mcp_calls: Vec<Option<crate::mcp::McpCall>> = calls
        .iter()
        .map(|call| mcp.and_then(|m| crate::mcp::classify(m, &call.name)))
        .collect();
    let kinds: Vec<_> = calls
        .iter()
        .zip(&mcp_calls)
        .map(|(call, mcp_call)| match mcp_call {
            Some(crate::mcp::McpCall::Tool(tool)) if tool.read_only => {
                tool_order::Concurrency::Shared
            }
            Some(crate::mcp::McpCall::Tool(_)) => tool_order::Concurrency::Exclusive,
            Some(_) => tool_order::Concurrency::Shared,
            None => tool_order::concurrency(call),
        })
        .collect();
    let emitter = {
        let session = session.clone();
        Arc::new(tool_order::OrderedEmitter::new(calls.len(), move |msg| {
            session.emit(Some(turn_id), msg)
        }))
    };
    let mut results = Vec::with_capacity(calls.len());
    for batch in tool_order::batches(&kinds) {
        let mut running = Vec::with_capacity(batch.len());
        for index in batch {
            let call = calls[index].clone();
            let mcp_call = mcp_calls[index].clone();
            let span = tool_span(&call, response_id, mcp_call.is_some());
            let started = std::time::Instant::now();
            let goal_result = match observer {
                Some(observer) if observer.handles_tool(&call.name) => {
                    let (observer, span, tool_call) =
                        (observer.clone(), span.clone(), call.clone());
                    blocking::run(move || span.in_scope(|| observer.goal_tool(turn_id, &tool_call)))
                        .await
                }
                _ => None,
            };
            if let Some(result) = goal_result {
                log_decision(session, &call, None);
                running.push((index, span, started, Err(result)));
                continue;
            }
            let mut ctx = ctx.clone();
            ctx.env = quest_otel::span_trace_env(&span)
                .into_iter()
                .map(|(name, value)| (name.to_string(), value))
                .collect();
            let emitter = emitter.clone();
            let mcp = mcp.cloned();
            let session = session.clone();
            let task = tokio::spawn(
                async move {
                    // One `codex.tool_decision` per decision: the policy's when the call goes
                    // ahead without asking, the person's (or the automatic decline) when asked.
                    let decided = std::sync::atomic::AtomicBool::new(false);
                    let emit = |msg: EventMsg| {
                        match &msg {
                            EventMsg::ExecApprovalRequest(_)
                            | EventMsg::PatchApprovalRequest(_)
                            | EventMsg::McpApprovalRequest(_) => {}
                            EventMsg::ApprovalResolved(resolved) => {
                                decided.store(true, std::sync::atomic::Ordering::Relaxed);
                                log_decision(&session, &call, Some(resolved));
                            }
                            _ => {
                                if !decided.swap(true, std::sync::atomic::Ordering::Relaxed) {
                                    log_decision(&session, &call, None);
                                }
                            }
                        }
                        emitter.emit(index, msg);
                    };
                    let outcome = match (mcp, mcp_call) {
                        (Some(manager), Some(crate::mcp::McpCall::Tool(tool))) => {
                            let (result, info) =
                                crate::mcp::run_tool(&manager, &tool, &call, &ctx, &emit).await;
                            (result, Some(info))
                        }
                        (Some(manager), Some(crate::mcp::McpCall::Resource(name))) => {
                            let (result, info) =
                                crate::mcp::run_resource_tool(&manager, name, &call, &ctx).await;
                            (result, Some(info))
                        }
                        (Some(manager), Some(crate::mcp::McpCall::Unavailable { server })) => {
                            let (result, info) =
                                crate::mcp::run_unavailable(&manager, &server, &call).await;
                            (result, Some(info))
                        }
                        _ => (run_builtin_tool(&call, &ctx, &emit).await, None),
                    };
                    if !decided.load(std::sync::atomic::Ordering::Relaxed) {
                        log_decision(&session, &call, None);
                    }
                    outcome
                }
                .instrument(span.clone()),
            );
            running.push((index, span, started, Ok(task)));
        }
        for (index, span, started, run) in running {
            let (result, info) = match run {
                Err(goal_result) => (goal_result, None),
                Ok(task) => task.await.unwrap_or_else(|err| {
                    (
                        ToolResult {
                            output: format!("tool `{}` crashed: {err}", calls[index].name),
                            call: calls[index].clone(),
                            executed: true,
                            success: false,
                            changed_files: false,
                            exit_code: None,
                        },
                        None,
                    )
                }),
            };
            let server = info.as_ref().map(|i| i.server.as_str());
            finish_tool(session, &span, &result, started.elapsed(), server);
            emitter.finish(index);
            let images = info.map(|i| i.images).unwrap_or_default();
            let name = result.call.name.clone();
            results.push((result, (name, images)));
        }
    }
    results
}

/// `codex.tool_decision` for a call: `approved` by the configuration when nobody was asked,
/// otherwise the answer (`user`, or `config` for an automatic decline).
fn log_decision(
    session: &Session,
    call: &ToolCall,
    resolved: Option<&quest_protocol::sandbox::ApprovalResolved>,
) {
    let Some(telemetry) = &session.telemetry else {
        return;
    };
    let (decision, source) = match resolved {
        None => ("approved", quest_otel::ToolDecisionSource::Config),
        Some(resolved) => (
            match resolved.decision {
                quest_protocol::sandbox::ReviewDecision::Approved => "approved",
                quest_protocol::sandbox::ReviewDecision::ApprovedForSession => {
                    "approved_for_session"
                }
                quest_protocol::sandbox::ReviewDecision::Denied => "denied",
                quest_protocol::sandbox::ReviewDecision::Abort => "abort",
            },
            if resolved.automatic {
                quest_otel::ToolDecisionSource::Config
            } else {
                quest_otel::ToolDecisionSource::User
            },
        ),
    };
    telemetry.tool_decision(&call.name, &call.call_id, decision, source);
}

/// Records a model call (all its HTTP attempts) as session events and GenAI metrics. Each
/// attempt is its own `chat {model}` span and `codex.api_request` record (see quest-model).
fn record_model_call(
    session: &Session,
    elapsed: std::time::Duration,
    result: &Result<quest_model::ResponseOutcome, quest_model::ModelError>,
    last_error_type: Option<String>,
) {
    let Some(t) = &session.telemetry else {
        return;
    };
    let (address, port) = session.server.clone();
    let mut call = quest_otel::GenAiCall {
        operation: "chat".to_string(),
        provider: session.provider_name().to_string(),
        request_model: session.config.model.clone(),
        response_model: None,
        server_address: address,
        server_port: port,
        input_tokens: 0,
        output_tokens: 0,
        duration: elapsed,
        error_type: None,
    };
    match result {
        Ok(outcome) => {
            let usage = &outcome.usage;
            call.input_tokens = usage.input_tokens.max(0) as u64;
            call.output_tokens = usage.output_tokens.max(0) as u64;
            t.sse_event_completed(
                usage.input_tokens,
                usage.output_tokens,
                Some(usage.cached_input_tokens),
                Some(usage.reasoning_output_tokens),
                0,
            );
        }
        Err(err) => {
            call.error_type = Some(last_error_type.unwrap_or_else(|| err.error_type().to_string()));
        }
    }
    t.record_gen_ai_call(&call);
}

/// The `execute_tool {tool}` span of one tool call.
/// `gen_ai.tool.type` is `extension` for MCP tools, `function` for the rest.
fn tool_span(call: &ToolCall, response_id: &str, mcp: bool) -> tracing::Span {
    tracing::info_span!(
        target: "quest::tool",
        "execute_tool",
        otel.name = %format!("execute_tool {}", call.name),
        otel.kind = "internal",
        otel.status_code = Empty,
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = %call.name,
        gen_ai.tool.call.id = %call.call_id,
        gen_ai.tool.type = if mcp { "extension" } else { "function" },
        quest.tool.requested_by = %response_id,
        error.type = Empty,
        quest.tool.exit_code = Empty,
        quest.tool.success = Empty,
    )
}

fn finish_tool(
    session: &Session,
    span: &tracing::Span,
    result: &ToolResult,
    elapsed: std::time::Duration,
    mcp_server: Option<&str>,
) {
    if let Some(code) = result.exit_code {
        span.record("quest.tool.exit_code", code);
    }
    span.record("quest.tool.success", result.success);
    if !result.success {
        span.record("otel.status_code", "ERROR");
        span.record(
            "error.type",
            if result.exit_code.is_some() {
                "exit_status"
            } else {
                "_OTHER"
            },
        );
    }
    if let Some(t) = &session.telemetry {
        let is_goal_tool = crate::tools::GOAL_TOOL_NAMES.contains(&result.call.name.as_str());
        let (arguments, output) = if is_goal_tool && !session.log_user_prompt {
            (
                redact_objective(&result.call.payload),
                redact_objective(&result.output),
            )
        } else {
            (result.call.payload.clone(), result.output.clone())
        };
        t.tool_result(
            &result.call.name,
            &result.call.call_id,
            &arguments,
            elapsed,
            result.success,
            &output,
            mcp_server,
        );
    }
}

/// Goal objectives are user prompt text: blank them in goal tool arguments and results unless
/// prompt logging is on.
fn redact_objective(text: &str) -> String {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(text) else {
        return text.to_string();
    };
    for pointer in ["/objective", "/goal/objective"] {
        if let Some(slot) = value.pointer_mut(pointer) {
            *slot = serde_json::Value::String("[REDACTED]".to_string());
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str) -> ResponseItem {
        ResponseItem::FunctionCall {
            id: None,
            name: "exec_command".into(),
            arguments: "{}".into(),
            call_id: id.into(),
        }
    }

    fn output(id: &str) -> ResponseItem {
        ResponseItem::FunctionCallOutput {
            id: None,
            call_id: Some(id.into()),
            name: None,
            namespace: None,
            output: "ok".into(),
        }
    }

    #[test]
    fn dangling_calls_get_aborted_outputs_in_call_order() {
        let patch = ResponseItem::CustomToolCall {
            id: None,
            call_id: "p".into(),
            name: "apply_patch".into(),
            input: String::new(),
        };
        let history = vec![
            ResponseItem::text_message("user", "go"),
            call("a"),
            output("a"),
            call("b"),
            patch,
            call("c"),
            output("c"),
        ];
        assert_eq!(
            dangling_call_outputs(&history),
            vec![
                ResponseItem::FunctionCallOutput {
                    id: None,
                    call_id: Some("b".into()),
                    name: None,
                    namespace: None,
                    output: ABORTED_OUTPUT.into(),
                },
                ResponseItem::CustomToolCallOutput {
                    id: None,
                    call_id: "p".into(),
                    output: ABORTED_OUTPUT.into(),
                },
            ]
        );
        assert!(dangling_call_outputs(&history[..3]).is_empty());
    }
}
