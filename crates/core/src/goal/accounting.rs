//! Charging a goal: tokens per model request, whole wall-clock seconds, goal turns; and the
//! classification of a finished goal turn for the circuit breaker.

use super::*;

impl GoalRuntime {
    /// Flushes pending tokens, whole active seconds and `turns` with `mode`.
    pub(super) fn flush(&self, mode: AccountingMode, turns: i64, turn_id: Option<TurnId>) {
        let (tokens, seconds) = {
            let mut inner = self.inner();
            let tokens = std::mem::take(&mut inner.pending_tokens);
            let seconds = inner.take_whole_seconds();
            (tokens, seconds)
        };
        if tokens == 0 && seconds == 0 && turns == 0 {
            return;
        }
        let trigger = Trigger::AccountUsage {
            tokens,
            seconds,
            turns,
            mode,
        };
        if let Err(err) = self.apply(trigger, Actor::System, turn_id) {
            self.shared.session.emit(
                turn_id,
                EventMsg::Warning(format!("goal accounting failed: {err}")),
            );
        }
    }

    pub(super) fn classify(
        &self,
        report: &TurnReport,
        last_message: Option<&str>,
    ) -> GoalTurnOutcome {
        let inner = self.inner();
        let progress = report.tool_results.iter().any(|r| {
            r.changed_files
                || (r.success
                    && !GOAL_TOOL_NAMES.contains(&r.call.name.as_str())
                    && !inner.previous_calls.contains(&(
                        r.call.name.clone(),
                        r.call.payload.clone(),
                        r.output.clone(),
                    )))
        });
        if progress {
            GoalTurnOutcome::Progress
        } else {
            GoalTurnOutcome::NoProgress {
                blocker: last_message.map(str::to_string),
            }
        }
    }

    /// Adds a model request's charge to the pending tokens of a goal turn.
    pub(super) fn charge_usage(&self, usage: &TokenUsage) {
        let mut inner = self.inner();
        if inner.goal_turn {
            inner.pending_tokens = inner.pending_tokens.saturating_add(usage.goal_charge());
        }
    }

    /// Flushes after executed tools; returns the budget wind-down message the first time the
    /// goal is found budget-limited.
    pub(super) fn flush_after_tools(
        &self,
        turn_id: TurnId,
        results: &[ToolResult],
    ) -> Option<String> {
        let executed = results
            .iter()
            .any(|r| r.executed && r.call.name != "update_goal");
        if !executed || !self.inner().goal_turn {
            return None;
        }
        let mode = self
            .inner()
            .charge_mode
            .unwrap_or(AccountingMode::ActiveOnly);
        self.flush(mode, 0, Some(turn_id));
        let goal = self.current().ok().flatten()?;
        if goal.status != GoalStatus::BudgetLimited {
            return None;
        }
        let mut inner = self.inner();
        if inner.steered.insert(goal.goal_id.clone()) {
            Some(prompts::budget_limit(&goal.to_wire()))
        } else {
            None
        }
    }
}
