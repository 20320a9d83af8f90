//! Announcing goal changes: every committed change, whoever made it (a tool, the turn loop, the
//! heartbeat, a user request), goes out the same way — event, then the `notify` program for
//! statuses that need someone, then goal telemetry.

use quest_state::GoalApplyOutcome;

use super::*;

impl GoalRuntime {
    /// Announces a committed goal change: the `GoalUpdated`/`GoalCleared` event (skipped when
    /// nothing a client sees changed), `notify` and telemetry for status changes. Keeps the wall
    /// clock in step with the status. Call only after the change is on disk.
    pub(super) fn announce(&self, outcome: &GoalApplyOutcome, turn_id: Option<TurnId>) {
        if outcome.changed {
            match &outcome.goal {
                Some(goal) => {
                    let mut inner = self.inner();
                    if goal.status == GoalStatus::Active {
                        inner.clock.get_or_insert_with(Instant::now);
                    } else {
                        inner.clock = None;
                    }
                    let wire = goal.to_wire();
                    let comparable = quest_protocol::goal::ThreadGoal {
                        updated_at: 0,
                        ..wire.clone()
                    };
                    let fresh = inner.last_announced.as_ref() != Some(&comparable);
                    inner.last_announced = Some(comparable);
                    drop(inner);
                    if fresh {
                        self.shared
                            .session
                            .emit(turn_id, EventMsg::GoalUpdated(Box::new(wire)));
                    }
                }
                None => {
                    let mut inner = self.inner();
                    inner.clock = None;
                    inner.last_announced = None;
                    drop(inner);
                    self.shared.session.emit(turn_id, EventMsg::GoalCleared);
                }
            }
        }
        if !outcome.status_changed {
            return;
        }
        let Some(event) = &outcome.event else {
            return;
        };
        if let Some(goal) = &outcome.goal {
            self.notify(goal, event);
        }
        if let Some(t) = &self.shared.session.telemetry {
            let mut change = quest_otel::GoalTransition::new(
                event.goal_id.clone(),
                event.from_status,
                event.to_status,
                event.actor,
                event.reason,
            );
            if let Some(goal) = outcome.goal.as_ref() {
                let count = |value: i64| u64::try_from(value).unwrap_or(0);
                let budget = |value: Option<i64>| value.and_then(|v| u64::try_from(v).ok());
                change.tokens_used = count(goal.tokens_used);
                change.time_used_seconds = count(goal.time_used_seconds);
                change.turns_used = count(goal.turns_used);
                change.token_budget = budget(goal.token_budget);
                change.time_budget_seconds = budget(goal.time_budget_seconds);
                change.turn_budget = budget(goal.turn_budget);
                change.budget_limit_kind = goal.budget_limit_kind;
                change.usage_limit_resets_at = goal.usage_limit_resets_at;
            }
            t.goal_transition(&change);
        }
    }

    /// Runs the `notify` program for statuses that need someone's attention (§17i): never for
    /// an ordinary continuation. `[goals] notify = "all"` also reports every other status change.
    pub(super) fn notify(
        &self,
        goal: &GoalState,
        event: &quest_protocol::goal::transition::GoalEvent,
    ) {
        let Some(argv) = &self.shared.session.config.notify else {
            return;
        };
        let attention = match goal.status {
            GoalStatus::Complete
            | GoalStatus::Blocked
            | GoalStatus::UsageLimited
            | GoalStatus::BudgetLimited => true,
            GoalStatus::Paused => event.actor == Actor::System,
            GoalStatus::Active => false,
        };
        let wanted = match self.shared.config.notify.as_str() {
            "none" => false,
            "all" => true,
            _ => attention,
        };
        if !wanted {
            return;
        }
        let objective: String = goal.objective.chars().take(200).collect();
        let payload = json!({
            "type": "goal-status-changed",
            "thread-id": goal.thread_id,
            "goal": {
                "status": goal.status.as_wire(),
                "objective": objective,
                "tokensUsed": goal.tokens_used,
                "tokenBudget": goal.token_budget,
                "timeUsedSeconds": goal.time_used_seconds,
                "reason": event.reason.as_str(),
            },
        })
        .to_string();
        let Some((program, args)) = argv.split_first() else {
            return;
        };
        let spawned = std::process::Command::new(program)
            .args(args)
            .arg(&payload)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        match spawned {
            // Reap it in the background; a slow notifier never delays the goal loop.
            Ok(mut child) => {
                std::thread::spawn(move || child.wait());
            }
            Err(err) => self.shared.session.emit(
                None,
                EventMsg::Warning(format!("notify program `{program}` failed to start: {err}")),
            ),
        }
    }
}
