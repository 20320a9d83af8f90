//! The goal state machine: one pure function, [`transition`], through which every goal change
//! goes — user requests (CLI, TUI, API), model tools (`create_goal`, `update_goal`) and system
//! events (usage accounting, budgets, usage limits, turn errors, the circuit breaker, restart
//! handling).
//!
//! The function takes the current goal (or none), a [`Trigger`], the [`Actor`] asking and the
//! current time, and returns either a [`Transition`] (the new goal, whether anything changed, and
//! the audit [`GoalEvent`] to write in the same transaction) or a [`TransitionError`] carrying the
//! exact user- or model-facing message. It performs no I/O; the store applies the result.
//!
//! Rules enforced here (see the goal-runtime specification §4, §5, §7, §9–12, §17):
//! - budget precedence: `paused`/`blocked` never overwrite `budgetLimited`; `active` over any
//!   budget is stored as `budgetLimited`; a budget lowered under usage on an `active` goal trips it;
//! - authority: the model may only create (when no unfinished goal exists) and mark
//!   `complete`/`blocked`/`paused` an `active` or `budgetLimited` goal; system stops are the
//!   system's; everything else belongs to the user;
//! - `budgetLimitKind` is set only while `budgetLimited`, `usageLimitResetsAt` only while
//!   `usageLimited`;
//! - a goal is never `active` while over one of its budgets, so accounting overshoots a budget by
//!   at most the one delta that crossed it.

mod breaker;
mod triggers;
mod types;

use serde_json::{Value, json};

use super::{Actor, GoalReason, GoalStatus, MAX_THREAD_GOAL_OBJECTIVE_CHARS};

pub use breaker::*;
pub use triggers::*;
pub use types::*;

/// Validates and trims an objective (`create_goal`, `/goal`, `thread/goal/set`).
pub fn validate_objective(objective: &str) -> Result<String, TransitionError> {
    let trimmed = objective.trim();
    if trimmed.is_empty() {
        return Err(TransitionError::EmptyObjective);
    }
    if trimmed.chars().count() > MAX_THREAD_GOAL_OBJECTIVE_CHARS {
        return Err(TransitionError::ObjectiveTooLong);
    }
    Ok(trimmed.to_owned())
}

/// Validates a requested token budget against the configured maximum.
pub fn validate_token_budget(budget: i64, max: Option<i64>) -> Result<i64, TransitionError> {
    if budget <= 0 {
        return Err(TransitionError::BudgetNotPositive);
    }
    match max {
        Some(max) if budget > max => Err(TransitionError::TokenBudgetTooLarge {
            requested: budget,
            max,
        }),
        _ => Ok(budget),
    }
}

fn validate_positive(budget: i64) -> Result<i64, TransitionError> {
    if budget <= 0 {
        Err(TransitionError::BudgetNotPositive)
    } else {
        Ok(budget)
    }
}

/// Applies `trigger`, asked by `actor` at `now_ms`, to `goal` (the thread's current goal, if
/// any).
///
/// Returns the new state and the audit event to persist with it, or the refusal with its exact
/// message. Triggers that do not apply to the current status (a usage limit on a paused goal, a
/// process exit of a goal that is no longer active, a second automatic resume for the same reset
/// time, `paused` requested on a `budgetLimited` goal) are accepted as no-ops
/// (`changed == false`), because they race with other writers and must not fail the caller.
pub fn transition(
    goal: Option<&GoalState>,
    trigger: &Trigger,
    actor: Actor,
    now_ms: i64,
) -> Result<Transition, TransitionError> {
    let not_permitted = || TransitionError::NotPermitted {
        actor,
        action: trigger.action(),
    };
    match trigger {
        Trigger::Create(create) => match actor {
            Actor::User | Actor::Model => apply_create(goal, create, actor, now_ms),
            Actor::System => Err(not_permitted()),
        },
        Trigger::Update(update) => match actor {
            Actor::User => apply_update(goal, update, now_ms),
            Actor::Model | Actor::System => Err(not_permitted()),
        },
        Trigger::SetStatus { status } => match actor {
            Actor::User
                if *status == GoalStatus::Paused
                    && goal.is_some_and(|g| g.status == GoalStatus::Complete) =>
            {
                Err(TransitionError::CompleteCannotPause)
            }
            Actor::User => {
                let update = UpdateGoal {
                    thread_id: goal.map(|g| g.thread_id.clone()).unwrap_or_default(),
                    status: Some(*status),
                    ..UpdateGoal::default()
                };
                apply_update(goal, &update, now_ms)
            }
            Actor::Model => apply_model_status(goal, *status, now_ms),
            Actor::System => Err(not_permitted()),
        },
        Trigger::Resume => match actor {
            Actor::User => {
                let update = UpdateGoal {
                    thread_id: goal.map(|g| g.thread_id.clone()).unwrap_or_default(),
                    status: Some(GoalStatus::Active),
                    ..UpdateGoal::default()
                };
                apply_update(goal, &update, now_ms)
            }
            Actor::Model | Actor::System => Err(not_permitted()),
        },
        Trigger::Interrupt => match actor {
            Actor::User => Ok(stop_if_active(
                goal,
                GoalStatus::Paused,
                actor,
                GoalReason::Interrupt,
                json!({}),
                now_ms,
            )),
            Actor::Model | Actor::System => Err(not_permitted()),
        },
        Trigger::Clear => match actor {
            Actor::User => Ok(apply_clear(goal, now_ms)),
            Actor::Model | Actor::System => Err(not_permitted()),
        },
        Trigger::AccountUsage {
            tokens,
            seconds,
            turns,
            mode,
        } => match actor {
            Actor::System => Ok(apply_accounting(
                goal, *tokens, *seconds, *turns, *mode, now_ms,
            )),
            Actor::User | Actor::Model => Err(not_permitted()),
        },
        Trigger::UsageLimit { resets_at } => match actor {
            Actor::System => Ok(apply_usage_limit(goal, *resets_at, now_ms)),
            Actor::User | Actor::Model => Err(not_permitted()),
        },
        Trigger::TurnError {
            error_class,
            message,
        } => match actor {
            Actor::System => Ok(stop_if_active(
                goal,
                GoalStatus::Blocked,
                actor,
                GoalReason::TurnError,
                json!({"errorClass": error_class, "error": excerpt(message)}),
                now_ms,
            )),
            Actor::User | Actor::Model => Err(not_permitted()),
        },
        Trigger::TurnClassified {
            outcome,
            thresholds,
        } => match actor {
            Actor::System => Ok(apply_breaker(goal, outcome, *thresholds, now_ms)),
            Actor::User | Actor::Model => Err(not_permitted()),
        },
        Trigger::AutoResumeAtReset { enabled_by_config } => match actor {
            Actor::System => Ok(apply_auto_resume(goal, *enabled_by_config, now_ms)),
            Actor::User | Actor::Model => Err(not_permitted()),
        },
        Trigger::ProcessExit { clean } => match actor {
            Actor::System => Ok(stop_if_active(
                goal,
                GoalStatus::Paused,
                actor,
                GoalReason::ProcessExit,
                json!({"exit": if *clean { "clean" } else { "unclean" }}),
                now_ms,
            )),
            Actor::User | Actor::Model => Err(not_permitted()),
        },
    }
}

/// Sets `status` and keeps `budget_limit_kind` / `usage_limit_resets_at` consistent with it.
fn set_status(goal: &mut GoalState, status: GoalStatus, resets_at: Option<i64>) {
    goal.status = status;
    match status {
        GoalStatus::BudgetLimited => {
            goal.usage_limit_resets_at = None;
            goal.budget_limit_kind = goal.exceeded_budget().or(goal.budget_limit_kind);
        }
        GoalStatus::UsageLimited => {
            goal.budget_limit_kind = None;
            goal.usage_limit_resets_at = resets_at;
        }
        GoalStatus::Active | GoalStatus::Paused | GoalStatus::Blocked | GoalStatus::Complete => {
            goal.budget_limit_kind = None;
            goal.usage_limit_resets_at = None;
        }
    }
}

/// The precedence rules of §4 applied to a requested status.
fn resolve_requested(current: GoalStatus, requested: GoalStatus, goal: &GoalState) -> GoalStatus {
    match requested {
        GoalStatus::Paused | GoalStatus::Blocked if current == GoalStatus::BudgetLimited => {
            GoalStatus::BudgetLimited
        }
        GoalStatus::Active if goal.exceeded_budget().is_some() => GoalStatus::BudgetLimited,
        GoalStatus::Active
        | GoalStatus::Paused
        | GoalStatus::Blocked
        | GoalStatus::UsageLimited
        | GoalStatus::BudgetLimited
        | GoalStatus::Complete => requested,
    }
}

fn reset_breaker(goal: &mut GoalState) {
    goal.no_progress_streak = 0;
    goal.blocker_streak = 0;
    goal.last_blocker_fingerprint = None;
}

#[allow(clippy::too_many_arguments)]
fn event(
    goal: &GoalState,
    actor: Actor,
    kind: GoalEventKind,
    from: Option<GoalStatus>,
    to: Option<GoalStatus>,
    reason: GoalReason,
    extra: Value,
    now_ms: i64,
) -> GoalEvent {
    let mut detail = goal.counters_json();
    if let (Some(map), Value::Object(extra)) = (detail.as_object_mut(), extra) {
        map.extend(extra);
    }
    if let (Some(map), Some(kind)) = (detail.as_object_mut(), goal.budget_limit_kind) {
        map.insert("budgetLimitKind".into(), json!(kind.as_str()));
    }
    GoalEvent {
        id: None,
        thread_id: goal.thread_id.clone(),
        goal_id: goal.goal_id.clone(),
        at_ms: now_ms,
        actor,
        kind,
        from_status: from,
        to_status: to,
        reason,
        origin: None,
        turn_id: None,
        detail,
    }
}

fn finish(
    before: Option<&GoalState>,
    mut after: GoalState,
    actor: Actor,
    kind: GoalEventKind,
    reason: GoalReason,
    extra: Value,
    now_ms: i64,
) -> Transition {
    after.updated_at_ms = now_ms;
    after.last_transition = Some(LastTransitionMs {
        actor,
        reason,
        at_ms: now_ms,
    });
    let from = before.map(|g| g.status);
    let status_changed =
        from != Some(after.status) || before.is_some_and(|b| b.goal_id != after.goal_id);
    let ev = event(
        &after,
        actor,
        kind,
        from,
        Some(after.status),
        reason,
        extra,
        now_ms,
    );
    Transition {
        goal: Some(after),
        changed: true,
        status_changed,
        event: Some(ev),
    }
}

fn apply_create(
    goal: Option<&GoalState>,
    create: &CreateGoal,
    actor: Actor,
    now_ms: i64,
) -> Result<Transition, TransitionError> {
    let objective = validate_objective(&create.objective)?;
    let token_budget = match create.token_budget {
        Some(b) => Some(validate_token_budget(b, create.limits.max_token_budget)?),
        None => create.limits.max_token_budget,
    };
    let model_only_fields = create.status.is_some()
        || create.time_budget_seconds.is_some()
        || create.turn_budget.is_some()
        || create.auto_resume_at_reset
        || create.mode == CreateMode::Replace;
    if actor == Actor::Model && model_only_fields {
        return Err(TransitionError::NotPermitted {
            actor,
            action: "choose a status, time or turn budgets, auto-resume, or a forced replacement when creating a goal",
        });
    }
    let time_budget_seconds = match create.time_budget_seconds {
        Some(b) => Some(validate_positive(b)?),
        None => create.limits.default_time_budget_seconds,
    };
    let turn_budget = match create.turn_budget {
        Some(b) => Some(validate_positive(b)?),
        None => create.limits.default_turn_budget,
    };
    if let Some(existing) = goal {
        let replaceable =
            existing.status == GoalStatus::Complete || create.mode == CreateMode::Replace;
        if !replaceable {
            return Err(TransitionError::UnfinishedGoalExists);
        }
    }
    let mut new_goal = GoalState {
        goal_id: create.new_goal_id.clone(),
        thread_id: create.thread_id.clone(),
        objective,
        status: GoalStatus::Active,
        token_budget,
        tokens_used: 0,
        time_budget_seconds,
        time_used_seconds: 0,
        turn_budget,
        turns_used: 0,
        budget_limit_kind: None,
        usage_limit_resets_at: None,
        auto_resume_at_reset: create.auto_resume_at_reset,
        last_auto_resume_reset_at: None,
        no_progress_streak: 0,
        blocker_streak: 0,
        last_blocker_fingerprint: None,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
        last_transition: None,
    };
    let requested = create.status.unwrap_or(GoalStatus::Active);
    let status = resolve_requested(GoalStatus::Active, requested, &new_goal);
    set_status(&mut new_goal, status, None);
    let reason = match actor {
        Actor::Model => GoalReason::ToolUpdateGoal,
        Actor::User | Actor::System => GoalReason::UserRequest,
    };
    let (kind, extra) = match goal {
        None => (
            GoalEventKind::Created,
            json!({"objective": excerpt(&new_goal.objective)}),
        ),
        Some(old) => (
            GoalEventKind::Replaced,
            json!({
                "objective": excerpt(&new_goal.objective),
                "replacedGoalId": old.goal_id,
                "replaced": old.counters_json(),
            }),
        ),
    };
    Ok(finish(goal, new_goal, actor, kind, reason, extra, now_ms))
}

fn apply_budget_change(
    current: Option<i64>,
    change: BudgetChange,
    clear_to: Option<i64>,
    validate: impl Fn(i64) -> Result<i64, TransitionError>,
) -> Result<Option<i64>, TransitionError> {
    match change {
        BudgetChange::Keep => Ok(current),
        BudgetChange::Clear => Ok(clear_to),
        BudgetChange::Set(value) => validate(value).map(Some),
    }
}

fn apply_update(
    goal: Option<&GoalState>,
    update: &UpdateGoal,
    now_ms: i64,
) -> Result<Transition, TransitionError> {
    let Some(current) = goal else {
        // `thread/goal/set` with an objective on a thread without a goal creates one.
        return match &update.objective {
            Some(objective) => {
                let budget = |change: BudgetChange| match change {
                    BudgetChange::Set(v) => Some(v),
                    BudgetChange::Keep | BudgetChange::Clear => None,
                };
                let create = CreateGoal {
                    thread_id: update.thread_id.clone(),
                    new_goal_id: uuid::Uuid::new_v4().to_string(),
                    objective: objective.clone(),
                    status: update.status,
                    token_budget: budget(update.token_budget),
                    time_budget_seconds: budget(update.time_budget_seconds),
                    turn_budget: budget(update.turn_budget),
                    auto_resume_at_reset: update.auto_resume_at_reset.unwrap_or(false),
                    mode: CreateMode::IfNoneOrComplete,
                    limits: update.limits,
                };
                apply_create(None, &create, Actor::User, now_ms)
            }
            None => Err(TransitionError::NoGoal {
                thread_id: update.thread_id.clone(),
            }),
        };
    };
    let mut next = current.clone();
    if let Some(objective) = &update.objective {
        next.objective = validate_objective(objective)?;
    }
    let max = update.limits.max_token_budget;
    next.token_budget = apply_budget_change(next.token_budget, update.token_budget, max, |b| {
        validate_token_budget(b, max)
    })?;
    next.time_budget_seconds = apply_budget_change(
        next.time_budget_seconds,
        update.time_budget_seconds,
        None,
        validate_positive,
    )?;
    next.turn_budget = apply_budget_change(
        next.turn_budget,
        update.turn_budget,
        None,
        validate_positive,
    )?;
    if let Some(flag) = update.auto_resume_at_reset {
        next.auto_resume_at_reset = flag;
    }

    let requested = update.status.unwrap_or(current.status);
    let resuming = requested == GoalStatus::Active && current.status != GoalStatus::Active;
    if resuming {
        reset_breaker(&mut next);
    }
    let status = resolve_requested(current.status, requested, &next);
    let resets_at = if status == GoalStatus::UsageLimited {
        current.usage_limit_resets_at
    } else {
        None
    };
    set_status(&mut next, status, resets_at);

    if next == *current {
        return Ok(Transition::unchanged(goal));
    }
    let objective_changed = next.objective != current.objective;
    let budgets_changed = next.token_budget != current.token_budget
        || next.time_budget_seconds != current.time_budget_seconds
        || next.turn_budget != current.turn_budget;
    let kind = if objective_changed || next.auto_resume_at_reset != current.auto_resume_at_reset {
        GoalEventKind::Edited
    } else if budgets_changed {
        GoalEventKind::BudgetChanged
    } else {
        GoalEventKind::StatusChanged
    };
    let reason = match (next.status, next.budget_limit_kind) {
        (GoalStatus::BudgetLimited, Some(kind)) if current.status != GoalStatus::BudgetLimited => {
            kind.reason()
        }
        _ => GoalReason::UserRequest,
    };
    let mut extra = serde_json::Map::new();
    if objective_changed {
        extra.insert("objectiveChanged".into(), json!(true));
    }
    if budgets_changed {
        extra.insert(
            "previousBudgets".into(),
            json!({
                "tokenBudget": current.token_budget,
                "timeBudgetSeconds": current.time_budget_seconds,
                "turnBudget": current.turn_budget,
            }),
        );
    }
    if let Some(requested) = update.status
        && requested != next.status
    {
        extra.insert("requestedStatus".into(), json!(requested));
    }
    Ok(finish(
        goal,
        next,
        Actor::User,
        kind,
        reason,
        Value::Object(extra),
        now_ms,
    ))
}

fn apply_model_status(
    goal: Option<&GoalState>,
    status: GoalStatus,
    now_ms: i64,
) -> Result<Transition, TransitionError> {
    match status {
        GoalStatus::Complete | GoalStatus::Blocked | GoalStatus::Paused => {}
        GoalStatus::Active | GoalStatus::UsageLimited | GoalStatus::BudgetLimited => {
            return Err(TransitionError::ModelStatusNotAllowed);
        }
    }
    let Some(current) = goal else {
        return Err(TransitionError::ModelNoGoal);
    };
    // The model acts only on a goal it is pursuing; stops made by the user or the system stay.
    let applies = match current.status {
        GoalStatus::Active => true,
        GoalStatus::BudgetLimited => status == GoalStatus::Complete,
        GoalStatus::Paused
        | GoalStatus::Blocked
        | GoalStatus::UsageLimited
        | GoalStatus::Complete => false,
    };
    if !applies {
        return Ok(Transition::unchanged(goal));
    }
    let mut next = current.clone();
    set_status(&mut next, status, None);
    Ok(finish(
        goal,
        next,
        Actor::Model,
        GoalEventKind::StatusChanged,
        GoalReason::ToolUpdateGoal,
        json!({}),
        now_ms,
    ))
}

fn stop_if_active(
    goal: Option<&GoalState>,
    to: GoalStatus,
    actor: Actor,
    reason: GoalReason,
    extra: Value,
    now_ms: i64,
) -> Transition {
    match goal {
        Some(current) if current.status == GoalStatus::Active => {
            let mut next = current.clone();
            set_status(&mut next, to, None);
            finish(
                goal,
                next,
                actor,
                GoalEventKind::StatusChanged,
                reason,
                extra,
                now_ms,
            )
        }
        Some(_) | None => Transition::unchanged(goal),
    }
}

fn apply_clear(goal: Option<&GoalState>, now_ms: i64) -> Transition {
    let Some(current) = goal else {
        return Transition::unchanged(None);
    };
    let ev = event(
        current,
        Actor::User,
        GoalEventKind::Cleared,
        Some(current.status),
        None,
        GoalReason::UserRequest,
        json!({}),
        now_ms,
    );
    Transition {
        goal: None,
        changed: true,
        status_changed: true,
        event: Some(ev),
    }
}

fn apply_accounting(
    goal: Option<&GoalState>,
    tokens: i64,
    seconds: i64,
    turns: i64,
    mode: AccountingMode,
    now_ms: i64,
) -> Transition {
    let Some(current) = goal else {
        return Transition::unchanged(None);
    };
    let (tokens, seconds, turns) = (tokens.max(0), seconds.max(0), turns.max(0));
    if !mode.matches(current.status) || (tokens == 0 && seconds == 0 && turns == 0) {
        return Transition::unchanged(goal);
    }
    let mut next = current.clone();
    next.tokens_used = next.tokens_used.saturating_add(tokens);
    next.time_used_seconds = next.time_used_seconds.saturating_add(seconds);
    next.turns_used = next.turns_used.saturating_add(turns);
    next.updated_at_ms = now_ms;
    if next.status == GoalStatus::Active
        && let Some(kind) = next.exceeded_budget()
    {
        set_status(&mut next, GoalStatus::BudgetLimited, None);
        next.budget_limit_kind = Some(kind);
        return finish(
            goal,
            next,
            Actor::System,
            GoalEventKind::StatusChanged,
            kind.reason(),
            json!({"delta": {"tokens": tokens, "seconds": seconds, "turns": turns}}),
            now_ms,
        );
    }
    Transition {
        goal: Some(next),
        changed: true,
        status_changed: false,
        event: None,
    }
}

fn apply_usage_limit(goal: Option<&GoalState>, resets_at: Option<i64>, now_ms: i64) -> Transition {
    match goal {
        Some(current)
            if matches!(
                current.status,
                GoalStatus::Active | GoalStatus::BudgetLimited
            ) =>
        {
            let mut next = current.clone();
            set_status(&mut next, GoalStatus::UsageLimited, resets_at);
            finish(
                goal,
                next,
                Actor::System,
                GoalEventKind::StatusChanged,
                GoalReason::UsageLimit,
                json!({"resetsAt": resets_at}),
                now_ms,
            )
        }
        Some(_) | None => Transition::unchanged(goal),
    }
}

fn apply_auto_resume(goal: Option<&GoalState>, enabled_by_config: bool, now_ms: i64) -> Transition {
    let Some(current) = goal else {
        return Transition::unchanged(None);
    };
    let due = match (current.status, current.usage_limit_resets_at) {
        (GoalStatus::UsageLimited, Some(resets_at)) => {
            (enabled_by_config || current.auto_resume_at_reset)
                && current.last_auto_resume_reset_at != Some(resets_at)
                && now_ms >= resets_at.saturating_mul(1000)
        }
        _ => false,
    };
    if !due {
        return Transition::unchanged(goal);
    }
    let resets_at = current.usage_limit_resets_at;
    let mut next = current.clone();
    next.last_auto_resume_reset_at = resets_at;
    let status = resolve_requested(current.status, GoalStatus::Active, &next);
    set_status(&mut next, status, None);
    finish(
        goal,
        next,
        Actor::System,
        GoalEventKind::StatusChanged,
        GoalReason::UsageLimitReset,
        json!({"resetsAt": resets_at}),
        now_ms,
    )
}

#[cfg(test)]
mod tests;
