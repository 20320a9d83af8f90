//! Charging a goal: tokens per model request, whole wall-clock seconds, goal turns; and the
//! classification of a finished goal turn for the circuit breaker.

use super::*;

/// What makes two tool calls "the same" for the breaker: tool, arguments, exit code and output
/// with timing removed (a repeated command reports a different wall time every run).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct CallFingerprint {
    name: String,
    arguments: String,
    exit_code: Option<i32>,
    output: String,
}

/// The fingerprint of one executed call.
pub(super) fn call_fingerprint(result: &ToolResult) -> CallFingerprint {
    let output = result
        .output
        .lines()
        .filter(|line| !is_timing_line(line))
        .collect::<Vec<_>>()
        .join("\n");
    CallFingerprint {
        name: result.call.name.clone(),
        arguments: result.call.payload.clone(),
        exit_code: result.exit_code,
        output,
    }
}

/// `Wall time: 0.1 seconds` (shell tools) and the like: lines that differ between identical runs.
fn is_timing_line(line: &str) -> bool {
    let line = line.trim();
    line.starts_with("Wall time:") || line.starts_with("Duration:")
}

impl GoalRuntime {
    /// Flushes pending tokens, whole active seconds and `turns` with `mode`.
    pub(super) fn flush(&self, mode: AccountingMode, turns: i64, turn_id: Option<TurnId>) {
        self.flush_with(mode, turns, turn_id, true);
    }

    /// [`Self::flush`]; with `time_alone == false`, accrued wall-clock seconds are written only
    /// together with tokens or turns (they are never lost: the clock keeps them for the next
    /// flush), which saves a commit at the end of turns whose goal has no time budget.
    pub(super) fn flush_with(
        &self,
        mode: AccountingMode,
        turns: i64,
        turn_id: Option<TurnId>,
        time_alone: bool,
    ) {
        if let Some((trigger, expected)) = self.take_charge(mode, turns, time_alone) {
            self.charge(trigger, expected, turn_id);
        }
    }

    /// Takes what [`Self::flush_with`] would write (pending tokens, whole active seconds and
    /// `turns`) as an `AccountUsage` trigger with the goal id it is aimed at; `None` when there
    /// is nothing to charge.
    fn take_charge(
        &self,
        mode: AccountingMode,
        turns: i64,
        time_alone: bool,
    ) -> Option<(Trigger, Option<String>)> {
        let (tokens, seconds, expected, turns) = {
            let mut inner = self.inner();
            let turns = turns.saturating_add(std::mem::take(&mut inner.pending_turns));
            let tokens = std::mem::take(&mut inner.pending_tokens);
            if tokens == 0 && turns == 0 && !time_alone {
                return None;
            }
            let seconds = inner.take_whole_seconds();
            (tokens, seconds, inner.turn_expected_goal(), turns)
        };
        if tokens == 0 && seconds == 0 && turns == 0 {
            return None;
        }
        let trigger = Trigger::AccountUsage {
            tokens,
            seconds,
            turns,
            mode,
        };
        Some((trigger, expected))
    }

    /// Commits a charge on its own; a failure is reported as a warning.
    fn charge(&self, trigger: Trigger, expected: Option<String>, turn_id: Option<TurnId>) {
        if let Err(err) = self.apply_expecting(trigger, Actor::System, turn_id, expected) {
            self.shared.session.emit(
                turn_id,
                EventMsg::Warning(format!("goal accounting failed: {err}")),
            );
        }
    }

    /// The end of a completed goal turn: what is left to charge (the last response's tokens,
    /// active seconds) and, if the goal is still active after that charge, the breaker's
    /// classification of the turn, committed together with the turn's queued writes. Should
    /// that commit fail, nothing was written and each change is tried on its own.
    pub(super) fn end_completed_turn(
        &self,
        report: &TurnReport,
        last_message: Option<&str>,
        mode: AccountingMode,
        time_alone: bool,
    ) {
        let turn_id = Some(report.turn_id);
        let outcome = self.classify(report, last_message);
        let classified = Trigger::TurnClassified {
            outcome: outcome.clone(),
            thresholds: self.thresholds(),
        };
        let charge = self.take_charge(mode, 0, time_alone);
        let expected = match &charge {
            Some((_, expected)) => expected.clone(),
            None => self.inner().turn_expected_goal(),
        };
        let mut changes: Vec<(&Trigger, Option<GoalStatus>)> = Vec::with_capacity(2);
        if let Some((trigger, _)) = &charge {
            changes.push((trigger, None));
        }
        changes.push((&classified, Some(GoalStatus::Active)));
        match self.apply_system_changes(&changes, turn_id, expected) {
            Ok(outcomes) => {
                if outcomes.last().is_some_and(Option::is_some) {
                    self.record_classification(&outcome);
                }
            }
            Err(_) => {
                if let Some((trigger, expected)) = charge {
                    self.charge(trigger, expected, turn_id);
                }
                if self.is_active() {
                    self.record_classification(&outcome);
                    self.system_stop(classified, turn_id);
                }
            }
        }
    }

    fn record_classification(&self, outcome: &GoalTurnOutcome) {
        if let Some(t) = &self.shared.session.telemetry {
            t.goal_continuation_turn(match outcome {
                GoalTurnOutcome::Progress => "progress",
                GoalTurnOutcome::NoProgress { .. } => "no_progress",
                GoalTurnOutcome::Waiting => "waiting",
            });
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
                    && !inner.previous_calls.contains(&call_fingerprint(r)))
        });
        if progress {
            GoalTurnOutcome::Progress
        } else if self.shared.session.approvals.answered_this_turn() {
            // The turn waited for a person's decision: that is not the model spinning.
            GoalTurnOutcome::Waiting
        } else {
            GoalTurnOutcome::NoProgress {
                blocker: last_message.map(str::to_string),
            }
        }
    }

    /// Adds the tokens of the response that ends a goal turn to the charge the turn's end
    /// commits ([`Self::end_completed_turn`]).
    pub(super) fn defer_usage(&self, usage: &TokenUsage) {
        let mut inner = self.inner();
        if inner.goal_turn {
            inner.pending_tokens = inner.pending_tokens.saturating_add(usage.goal_charge());
        }
    }

    /// Charges a model response's tokens to the goal of a goal turn at once, so a crash later
    /// in the turn cannot erase them.
    pub(super) fn charge_usage(&self, turn_id: TurnId, usage: &TokenUsage) {
        let mode = {
            let mut inner = self.inner();
            if !inner.goal_turn {
                return;
            }
            inner.pending_tokens = inner.pending_tokens.saturating_add(usage.goal_charge());
            inner.charge_mode.unwrap_or(AccountingMode::ActiveOnly)
        };
        self.flush(mode, 0, Some(turn_id));
    }

    /// After executed tools (whose response was already charged): the budget wind-down message
    /// the first time the goal is found budget-limited.
    pub(super) fn flush_after_tools(
        &self,
        _turn_id: TurnId,
        results: &[ToolResult],
    ) -> Option<String> {
        let executed = results
            .iter()
            .any(|r| r.executed && r.call.name != "update_goal");
        if !executed || !self.inner().goal_turn {
            return None;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ToolCall;

    fn shell_result(output: &str, exit_code: i32) -> ToolResult {
        ToolResult {
            call: ToolCall {
                call_id: "call-1".to_string(),
                name: "exec_command".to_string(),
                payload: r#"{"cmd":"cargo test"}"#.to_string(),
                custom: false,
            },
            output: output.to_string(),
            executed: true,
            success: exit_code == 0,
            changed_files: false,
            exit_code: Some(exit_code),
        }
    }

    #[test]
    fn repeat_detection_ignores_wall_time() {
        let first = shell_result("Exit code: 0\nWall time: 0.1 seconds\nOutput:\nok\n", 0);
        let again = shell_result("Exit code: 0\nWall time: 2.7 seconds\nOutput:\nok\n", 0);
        assert_eq!(call_fingerprint(&first), call_fingerprint(&again));
        let other_output = shell_result("Exit code: 0\nWall time: 0.1 seconds\nOutput:\nfail\n", 0);
        assert_ne!(call_fingerprint(&first), call_fingerprint(&other_output));
        let other_code = shell_result("Exit code: 0\nWall time: 0.1 seconds\nOutput:\nok\n", 1);
        assert_ne!(call_fingerprint(&first), call_fingerprint(&other_code));
    }
}
