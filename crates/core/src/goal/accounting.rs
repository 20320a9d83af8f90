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
        let (tokens, seconds, expected, turns) = {
            let mut inner = self.inner();
            let turns = turns.saturating_add(std::mem::take(&mut inner.pending_turns));
            let tokens = std::mem::take(&mut inner.pending_tokens);
            if tokens == 0 && turns == 0 && !time_alone {
                return;
            }
            let seconds = inner.take_whole_seconds();
            // A goal replaced or cleared since the turn started must not be charged for it.
            let expected = if inner.goal_turn {
                inner.turn_goal_id.clone()
            } else {
                None
            };
            (tokens, seconds, expected, turns)
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
        if let Err(err) = self.apply_expecting(trigger, Actor::System, turn_id, expected) {
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
