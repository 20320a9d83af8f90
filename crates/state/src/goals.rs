//! Thread goals: the goal row, the audit trail, leases and restart
//! reconciliation. Every change runs [`transition`] inside one `BEGIN IMMEDIATE` transaction that
//! also writes the audit event, so concurrent processes serialize and nothing is announced
//! before it is on disk.

use quest_protocol::ThreadId;
use quest_protocol::goal::{
    AccountingMode, Actor, BudgetLimitKind, GoalEvent, GoalEventKind, GoalOrigin, GoalReason,
    GoalState, GoalStatus, LastTransitionMs, Trigger, transition,
};
use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::error::{StateError, corrupt};
use crate::lease::{Lease, LeaseAcquire, own_process_start, read_lease, write_lease};
use crate::store::{Store, now_ms};

/// Who and what a goal change is attributed to, beyond the actor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoalContext {
    /// The turn the change belongs to (tool calls, accounting, system stops).
    pub turn_id: Option<String>,
    /// `origin` of an app-server set/clear.
    pub origin: Option<GoalOrigin>,
    /// Apply only if the current goal still has this id; a write aimed at a replaced (or
    /// cleared) goal silently does nothing.
    pub expected_goal_id: Option<String>,
}

/// Result of [`Store::apply_goal`].
#[derive(Clone, Debug, PartialEq)]
pub struct GoalApplyOutcome {
    /// The goal as stored after the call (`None` when the thread has no goal).
    pub goal: Option<GoalState>,
    /// The audit event written (with its row id), if the change is audited.
    pub event: Option<GoalEvent>,
    /// Whether anything was written.
    pub changed: bool,
    /// Whether the status changed (or a goal appeared, was replaced or was cleared).
    pub status_changed: bool,
}

/// One page of the audit trail (`thread/goal/history`).
#[derive(Clone, Debug, PartialEq)]
pub struct GoalEventPage {
    /// Events in the order they were written.
    pub events: Vec<GoalEvent>,
    /// Pass as `cursor` to get the next page; `None` on the last page.
    pub next_cursor: Option<i64>,
}

const GOAL_COLUMNS: &str = "thread_id, goal_id, objective, status, token_budget, tokens_used, \
    time_used_seconds, created_at_ms, updated_at_ms, time_budget_seconds, turn_budget, \
    turns_used, budget_limit_kind, usage_limit_resets_at, auto_resume_at_reset, \
    last_auto_resume_reset_at, no_progress_streak, blocker_streak, last_blocker_fingerprint, \
    last_actor, last_reason, last_transition_at_ms";

const EVENT_COLUMNS: &str = "id, thread_id, goal_id, at_ms, actor, kind, from_status, to_status, \
    reason, origin, turn_id, detail_json";

fn parse_actor(table: &'static str, text: &str) -> Result<Actor, StateError> {
    match text {
        "user" => Ok(Actor::User),
        "model" => Ok(Actor::Model),
        "system" => Ok(Actor::System),
        other => Err(corrupt(table, "actor", other, "unknown actor")),
    }
}

fn parse_status(
    table: &'static str,
    column: &'static str,
    text: &str,
) -> Result<GoalStatus, StateError> {
    GoalStatus::parse(text).ok_or_else(|| corrupt(table, column, text, "unknown goal status"))
}

fn parse_reason(table: &'static str, text: &str) -> Result<GoalReason, StateError> {
    GoalReason::parse(text).ok_or_else(|| corrupt(table, "reason", text, "unknown reason"))
}

fn parse_kind(text: &str) -> Result<BudgetLimitKind, StateError> {
    match text {
        "tokens" => Ok(BudgetLimitKind::Tokens),
        "time" => Ok(BudgetLimitKind::Time),
        "turns" => Ok(BudgetLimitKind::Turns),
        other => Err(corrupt(
            "thread_goals",
            "budget_limit_kind",
            other,
            "unknown budget kind",
        )),
    }
}

fn goal_from_row(row: &Row<'_>) -> Result<GoalState, StateError> {
    let status: String = row.get(3)?;
    let kind: Option<String> = row.get(12)?;
    let last_actor: Option<String> = row.get(19)?;
    let last_reason: Option<String> = row.get(20)?;
    let last_at: Option<i64> = row.get(21)?;
    let last_transition = match (last_actor, last_reason, last_at) {
        (Some(actor), Some(reason), Some(at_ms)) => Some(LastTransitionMs {
            actor: parse_actor("thread_goals", &actor)?,
            reason: parse_reason("thread_goals", &reason)?,
            at_ms,
        }),
        _ => None,
    };
    Ok(GoalState {
        thread_id: row.get(0)?,
        goal_id: row.get(1)?,
        objective: row.get(2)?,
        status: parse_status("thread_goals", "status", &status)?,
        token_budget: row.get(4)?,
        tokens_used: row.get(5)?,
        time_used_seconds: row.get(6)?,
        created_at_ms: row.get(7)?,
        updated_at_ms: row.get(8)?,
        time_budget_seconds: row.get(9)?,
        turn_budget: row.get(10)?,
        turns_used: row.get(11)?,
        budget_limit_kind: kind.as_deref().map(parse_kind).transpose()?,
        usage_limit_resets_at: row.get(13)?,
        auto_resume_at_reset: row.get(14)?,
        last_auto_resume_reset_at: row.get(15)?,
        no_progress_streak: row.get(16)?,
        blocker_streak: row.get(17)?,
        last_blocker_fingerprint: row.get(18)?,
        last_transition,
    })
}

fn event_from_row(row: &Row<'_>) -> Result<GoalEvent, StateError> {
    const T: &str = "thread_goal_events";
    let actor: String = row.get(4)?;
    let kind: String = row.get(5)?;
    let from: Option<String> = row.get(6)?;
    let to: Option<String> = row.get(7)?;
    let reason: String = row.get(8)?;
    let origin: Option<String> = row.get(9)?;
    let detail: String = row.get(11)?;
    Ok(GoalEvent {
        id: Some(row.get(0)?),
        thread_id: row.get(1)?,
        goal_id: row.get(2)?,
        at_ms: row.get(3)?,
        actor: parse_actor(T, &actor)?,
        kind: GoalEventKind::parse(&kind)
            .ok_or_else(|| corrupt(T, "kind", &kind, "unknown event kind"))?,
        from_status: from
            .as_deref()
            .map(|s| parse_status(T, "from_status", s))
            .transpose()?,
        to_status: to
            .as_deref()
            .map(|s| parse_status(T, "to_status", s))
            .transpose()?,
        reason: parse_reason(T, &reason)?,
        origin: origin
            .as_deref()
            .map(|o| GoalOrigin::parse(o).ok_or_else(|| corrupt(T, "origin", o, "unknown origin")))
            .transpose()?,
        turn_id: row.get(10)?,
        detail: serde_json::from_str(&detail).map_err(|e| corrupt(T, "detail_json", &detail, e))?,
    })
}

pub(crate) fn read_goal(
    tx: &Transaction<'_>,
    thread_id: &str,
) -> Result<Option<GoalState>, StateError> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {GOAL_COLUMNS} FROM thread_goals WHERE thread_id = ?1"
    ))?;
    let mut rows = stmt.query(params![thread_id])?;
    match rows.next()? {
        Some(row) => Ok(Some(goal_from_row(row)?)),
        None => Ok(None),
    }
}

fn write_goal(tx: &Transaction<'_>, goal: &GoalState) -> Result<(), StateError> {
    let last = goal.last_transition;
    tx.prepare_cached(
        "INSERT INTO thread_goals (thread_id, goal_id, objective, status, token_budget,
             tokens_used, time_used_seconds, created_at_ms, updated_at_ms, time_budget_seconds,
             turn_budget, turns_used, budget_limit_kind, usage_limit_resets_at,
             auto_resume_at_reset, last_auto_resume_reset_at, no_progress_streak, blocker_streak,
             last_blocker_fingerprint, last_actor, last_reason, last_transition_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                 ?19, ?20, ?21, ?22)
         ON CONFLICT (thread_id) DO UPDATE SET
             first_turn_trace_context = CASE WHEN thread_goals.goal_id = excluded.goal_id
                 THEN thread_goals.first_turn_trace_context ELSE NULL END,
             goal_id = excluded.goal_id, objective = excluded.objective,
             status = excluded.status, token_budget = excluded.token_budget,
             tokens_used = excluded.tokens_used, time_used_seconds = excluded.time_used_seconds,
             created_at_ms = excluded.created_at_ms, updated_at_ms = excluded.updated_at_ms,
             time_budget_seconds = excluded.time_budget_seconds,
             turn_budget = excluded.turn_budget, turns_used = excluded.turns_used,
             budget_limit_kind = excluded.budget_limit_kind,
             usage_limit_resets_at = excluded.usage_limit_resets_at,
             auto_resume_at_reset = excluded.auto_resume_at_reset,
             last_auto_resume_reset_at = excluded.last_auto_resume_reset_at,
             no_progress_streak = excluded.no_progress_streak,
             blocker_streak = excluded.blocker_streak,
             last_blocker_fingerprint = excluded.last_blocker_fingerprint,
             last_actor = excluded.last_actor, last_reason = excluded.last_reason,
             last_transition_at_ms = excluded.last_transition_at_ms",
    )?
    .execute(params![
        goal.thread_id,
        goal.goal_id,
        goal.objective,
        goal.status.as_storage(),
        goal.token_budget,
        goal.tokens_used,
        goal.time_used_seconds,
        goal.created_at_ms,
        goal.updated_at_ms,
        goal.time_budget_seconds,
        goal.turn_budget,
        goal.turns_used,
        goal.budget_limit_kind.map(BudgetLimitKind::as_str),
        goal.usage_limit_resets_at,
        goal.auto_resume_at_reset,
        goal.last_auto_resume_reset_at,
        goal.no_progress_streak,
        goal.blocker_streak,
        goal.last_blocker_fingerprint,
        last.map(|l| l.actor.as_str()),
        last.map(|l| l.reason.as_str()),
        last.map(|l| l.at_ms),
    ])?;
    Ok(())
}

fn insert_event(tx: &Transaction<'_>, event: &GoalEvent) -> Result<i64, StateError> {
    let detail = serde_json::to_string(&event.detail).map_err(|source| StateError::Encode {
        what: "goal event detail",
        source,
    })?;
    tx.prepare_cached(
        "INSERT INTO thread_goal_events (thread_id, goal_id, at_ms, actor, kind, from_status,
             to_status, reason, origin, turn_id, detail_json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        event.thread_id,
        event.goal_id,
        event.at_ms,
        event.actor.as_str(),
        event.kind.as_str(),
        event.from_status.map(GoalStatus::as_storage),
        event.to_status.map(GoalStatus::as_storage),
        event.reason.as_str(),
        event.origin.map(GoalOrigin::as_str),
        event.turn_id,
        detail,
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Read → transition → write row and event, inside the caller's transaction.
pub(crate) fn apply_in_tx(
    tx: &Transaction<'_>,
    thread_id: &str,
    trigger: &Trigger,
    actor: Actor,
    ctx: &GoalContext,
    now: i64,
) -> Result<GoalApplyOutcome, StateError> {
    let current = read_goal(tx, thread_id)?;
    let unchanged = |goal: Option<GoalState>| GoalApplyOutcome {
        goal,
        event: None,
        changed: false,
        status_changed: false,
    };
    if let Some(expected) = &ctx.expected_goal_id
        && current.as_ref().map(|g| &g.goal_id) != Some(expected)
    {
        return Ok(unchanged(current));
    }
    let result =
        transition(current.as_ref(), trigger, actor, now).map_err(|e| e.for_thread(thread_id))?;
    if !result.changed {
        return Ok(unchanged(result.goal));
    }
    match &result.goal {
        Some(goal) => {
            if goal.thread_id != thread_id {
                return Err(StateError::ThreadMismatch {
                    expected: thread_id.to_owned(),
                    found: goal.thread_id.clone(),
                });
            }
            write_goal(tx, goal)?;
        }
        None => {
            tx.execute(
                "DELETE FROM thread_goals WHERE thread_id = ?1",
                params![thread_id],
            )?;
        }
    }
    let event = match result.event {
        Some(mut event) => {
            event.origin = ctx.origin;
            event.turn_id.clone_from(&ctx.turn_id);
            event.id = Some(insert_event(tx, &event)?);
            Some(event)
        }
        None => None,
    };
    Ok(GoalApplyOutcome {
        goal: result.goal,
        event,
        changed: true,
        status_changed: result.status_changed,
    })
}

impl Store {
    /// Applies a goal trigger: reads the thread's goal, runs the transition function, and writes
    /// the new row and its audit event in one immediate transaction, committed before this
    /// returns. A refused request returns [`StateError::Transition`] with the exact message and
    /// writes nothing.
    pub fn apply_goal(
        &self,
        thread_id: &ThreadId,
        trigger: &Trigger,
        actor: Actor,
        ctx: &GoalContext,
    ) -> Result<GoalApplyOutcome, StateError> {
        self.apply_goal_at(thread_id, trigger, actor, ctx, now_ms())
    }

    /// [`Store::apply_goal`] with an explicit clock (unix milliseconds).
    pub fn apply_goal_at(
        &self,
        thread_id: &ThreadId,
        trigger: &Trigger,
        actor: Actor,
        ctx: &GoalContext,
        now_ms: i64,
    ) -> Result<GoalApplyOutcome, StateError> {
        let thread = thread_id.to_string();
        self.write(|tx| apply_in_tx(tx, &thread, trigger, actor, ctx, now_ms))
    }

    /// The thread's goal, if any (always re-read from disk, so changes made by other processes
    /// are seen).
    pub fn get_goal(&self, thread_id: &ThreadId) -> Result<Option<GoalState>, StateError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {GOAL_COLUMNS} FROM thread_goals WHERE thread_id = ?1"
            ))?;
            let mut rows = stmt.query(params![thread_id.to_string()])?;
            match rows.next()? {
                Some(row) => Ok(Some(goal_from_row(row)?)),
                None => Ok(None),
            }
        })
    }

    /// Every stored goal, most recently updated first (`quest goal list`).
    pub fn list_goals(&self) -> Result<Vec<GoalState>, StateError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {GOAL_COLUMNS} FROM thread_goals ORDER BY updated_at_ms DESC, thread_id"
            ))?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(goal_from_row(row)?);
            }
            Ok(out)
        })
    }

    /// The thread's audit trail in write order, optionally for one goal id, starting after
    /// `cursor` (an event id), at most `limit` events. Events survive clear and replacement.
    pub fn goal_events(
        &self,
        thread_id: &ThreadId,
        goal_id: Option<&str>,
        limit: usize,
        cursor: Option<i64>,
    ) -> Result<GoalEventPage, StateError> {
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX - 1);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM thread_goal_events
                 WHERE thread_id = ?1 AND (?2 IS NULL OR goal_id = ?2) AND id > ?3
                 ORDER BY id LIMIT ?4"
            ))?;
            let mut rows = stmt.query(params![
                thread_id.to_string(),
                goal_id,
                cursor.unwrap_or(0),
                limit + 1
            ])?;
            let mut events = Vec::new();
            while let Some(row) = rows.next()? {
                events.push(event_from_row(row)?);
            }
            let more = i64::try_from(events.len()).unwrap_or(i64::MAX) > limit;
            if more {
                events.pop();
            }
            let next_cursor = if more {
                events.last().and_then(|e| e.id)
            } else {
                None
            };
            Ok(GoalEventPage {
                events,
                next_cursor,
            })
        })
    }

    /// Stores the W3C trace context of the goal's first turn, once per goal id; `false` if it
    /// was already set or the goal is gone or replaced.
    pub fn set_goal_first_turn_trace_context(
        &self,
        thread_id: &ThreadId,
        goal_id: &str,
        trace_context: &str,
    ) -> Result<bool, StateError> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE thread_goals SET first_turn_trace_context = ?3
                 WHERE thread_id = ?1 AND goal_id = ?2 AND first_turn_trace_context IS NULL",
                params![thread_id.to_string(), goal_id, trace_context],
            )? > 0)
        })
    }

    /// The W3C trace context of the goal's first turn, if recorded.
    pub fn goal_first_turn_trace_context(
        &self,
        thread_id: &ThreadId,
    ) -> Result<Option<String>, StateError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT first_turn_trace_context FROM thread_goals WHERE thread_id = ?1",
                )?
                .query_row(params![thread_id.to_string()], |r| {
                    r.get::<_, Option<String>>(0)
                })
                .optional()?
                .flatten())
        })
    }

    /// Takes the goal-loop lease of a thread for this process, unless another live process
    /// holds it. A dead or stale holder is replaced.
    pub fn acquire_lease(&self, thread_id: &ThreadId) -> Result<LeaseAcquire, StateError> {
        let thread = thread_id.to_string();
        let now = now_ms();
        let pid = std::process::id();
        self.write(|tx| {
            if let Some(existing) = read_lease(tx, &thread)?
                && existing.pid != pid
                && existing.is_live(now)
            {
                return Ok(LeaseAcquire::HeldBy(existing));
            }
            let lease = Lease {
                thread_id: thread.clone(),
                holder_id: uuid::Uuid::new_v4().to_string(),
                pid,
                process_start: own_process_start(),
                started_at_ms: now,
                heartbeat_at_ms: now,
            };
            write_lease(tx, &lease)?;
            Ok(LeaseAcquire::Acquired(lease))
        })
    }

    /// The thread's current lease row, live or not.
    pub fn lease(&self, thread_id: &ThreadId) -> Result<Option<Lease>, StateError> {
        let thread = thread_id.to_string();
        self.write(|tx| read_lease(tx, &thread))
    }

    /// Renews `lease` and, in the same transaction, charges `seconds` of wall-clock time to an
    /// `active` (or `budgetLimited`) goal, which may trip a time budget. `seconds` is what the
    /// runtime's goal wall clock accrued since its last flush (0 while the clock is stopped). Fails with
    /// [`StateError::LeaseLost`] when another holder took the lease over.
    pub fn heartbeat(
        &self,
        lease: &Lease,
        seconds: i64,
    ) -> Result<(Lease, GoalApplyOutcome), StateError> {
        let now = now_ms();
        self.write(|tx| {
            let current = read_lease(tx, &lease.thread_id)?;
            if current.as_ref().map(|l| &l.holder_id) != Some(&lease.holder_id) {
                return Err(StateError::LeaseLost {
                    thread_id: lease.thread_id.clone(),
                });
            }
            let renewed = Lease {
                heartbeat_at_ms: now,
                ..lease.clone()
            };
            tx.execute(
                "UPDATE goal_leases SET heartbeat_at_ms = ?2 WHERE thread_id = ?1",
                params![lease.thread_id, now],
            )?;
            let trigger = Trigger::AccountUsage {
                tokens: 0,
                seconds,
                turns: 0,
                mode: AccountingMode::ActiveOnly,
            };
            let outcome = apply_in_tx(
                tx,
                &lease.thread_id,
                &trigger,
                Actor::System,
                &GoalContext::default(),
                now,
            )?;
            Ok((renewed, outcome))
        })
    }

    /// Gives the lease up; `false` when it was no longer held by this holder.
    pub fn release_lease(&self, lease: &Lease) -> Result<bool, StateError> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM goal_leases WHERE thread_id = ?1 AND holder_id = ?2",
                params![lease.thread_id, lease.holder_id],
            )? > 0)
        })
    }

    /// Restart handling (§17e): when the thread's goal-loop lease exists but is not live (its
    /// process died or hung), an `active` goal is moved to `paused` (actor `system`, reason
    /// `process_exit`, detail `unclean`) unless `auto_continue` is set, and the dead lease row is
    /// removed. A goal that never had a lease, or whose runner released it on a clean exit, is
    /// left exactly as it is; so is one whose lease is live. Readers (`quest goal status`) call
    /// this and nothing else that writes.
    pub fn reconcile_on_load(
        &self,
        thread_id: &ThreadId,
        auto_continue: bool,
    ) -> Result<GoalApplyOutcome, StateError> {
        self.reconcile_on_load_at(thread_id, auto_continue, now_ms())
    }

    /// [`Store::reconcile_on_load`] with an explicit clock (unix milliseconds).
    pub fn reconcile_on_load_at(
        &self,
        thread_id: &ThreadId,
        auto_continue: bool,
        now_ms: i64,
    ) -> Result<GoalApplyOutcome, StateError> {
        let thread = thread_id.to_string();
        self.write(|tx| reconcile_in_tx(tx, &thread, auto_continue, false, now_ms))
    }

    /// What a process that loads the thread runs first: [`Store::reconcile_on_load`], and, when
    /// no live process holds the thread, turns its dead runner left `running` are closed as
    /// `interrupted`. Fails with [`StateError::LeaseHeld`] (changing nothing) while another live
    /// process holds the thread.
    pub fn reconcile_for_load(
        &self,
        thread_id: &ThreadId,
        auto_continue: bool,
    ) -> Result<GoalApplyOutcome, StateError> {
        let thread = thread_id.to_string();
        let now = now_ms();
        let pid = std::process::id();
        self.write(|tx| {
            if let Some(lease) = read_lease(tx, &thread)?
                && lease.pid != pid
                && lease.is_live(now)
            {
                return Err(StateError::LeaseHeld {
                    thread_id: thread.clone(),
                    pid: lease.pid,
                });
            }
            reconcile_in_tx(tx, &thread, auto_continue, true, now)
        })
    }

    /// The live lease on a thread held by another process, if any (who runs the thread now).
    pub fn live_lease(&self, thread_id: &ThreadId) -> Result<Option<Lease>, StateError> {
        let now = now_ms();
        Ok(self.lease(thread_id)?.filter(|l| l.is_live(now)))
    }
}

fn reconcile_in_tx(
    tx: &Transaction<'_>,
    thread: &str,
    auto_continue: bool,
    close_turns: bool,
    now_ms: i64,
) -> Result<GoalApplyOutcome, StateError> {
    let lease = read_lease(tx, thread)?;
    let live = lease.as_ref().is_some_and(|l| l.is_live(now_ms));
    if close_turns && !live {
        tx.execute(
            "UPDATE turns SET status = 'interrupted', ended_at_ms = ?2
             WHERE thread_id = ?1 AND status = 'running'",
            params![thread, now_ms],
        )?;
    }
    let goal = read_goal(tx, thread)?;
    let unchanged = |goal| GoalApplyOutcome {
        goal,
        event: None,
        changed: false,
        status_changed: false,
    };
    if live || lease.is_none() {
        return Ok(unchanged(goal));
    }
    tx.execute(
        "DELETE FROM goal_leases WHERE thread_id = ?1",
        params![thread],
    )?;
    let active = goal
        .as_ref()
        .is_some_and(|g| g.status == GoalStatus::Active);
    if !active || auto_continue {
        return Ok(unchanged(goal));
    }
    apply_in_tx(
        tx,
        thread,
        &Trigger::ProcessExit { clean: false },
        Actor::System,
        &GoalContext::default(),
        now_ms,
    )
}
