//! The model's goal tools: `get_goal`, `create_goal`, `update_goal` — specs, argument parsing
//! and the handlers that run them against the goal runtime.

use super::*;
use serde::Deserialize;
use serde_json::json;

/// Specs in the order Codex sends them.
pub fn goal_tool_specs() -> Vec<serde_json::Value> {
    vec![
        json!({
            "type": "function",
            "name": "get_goal",
            "description": "Returns the thread's goal (objective, status, budget and usage) or null when there is none.",
            "strict": false,
            "parameters": {"type": "object", "properties": {}, "additionalProperties": false}
        }),
        json!({
            "type": "function",
            "name": "create_goal",
            "description": "Creates a long-running goal for this thread. Only call this when the user, or system or developer instructions, explicitly ask for a goal; never turn an ordinary request into a goal on your own. Pass token_budget only when a budget was explicitly requested. Fails while the thread has an unfinished goal.",
            "strict": false,
            "parameters": {
                "type": "object",
                "properties": {
                    "objective": {"type": "string", "description": "The end state to reach, in the user's words."},
                    "token_budget": {"type": "integer", "description": "Token cap, only when the user asked for one."}
                },
                "required": ["objective"],
                "additionalProperties": false
            }
        }),
        json!({
            "type": "function",
            "name": "update_goal",
            "description": "Changes the goal's status. \"complete\": only when the objective is fully met and verified against current evidence, never because the budget is running out or you are stopping. \"blocked\": only when the same blocker has stopped progress for at least three consecutive goal turns and nothing more can be done without the user or an outside change; then set it rather than repeating that you are blocked. \"paused\": only when the user explicitly asked to pause. After a user resume, the blocked count restarts at zero. Report the returned status and stop.",
            "strict": false,
            "parameters": {
                "type": "object",
                "properties": {
                    "status": {"type": "string", "enum": ["complete", "blocked", "paused"]}
                },
                "required": ["status"],
                "additionalProperties": false
            }
        }),
    ]
}

/// `create_goal` arguments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGoalArgs {
    /// Objective.
    pub objective: String,
    /// Optional token budget.
    #[serde(default)]
    pub token_budget: Option<i64>,
}

/// `update_goal` arguments (the status is validated by the transition function).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateGoalArgs {
    /// Requested status.
    pub status: String,
}

impl GoalRuntime {
    fn tool_result(&self, call: &ToolCall, output: String, success: bool) -> ToolResult {
        ToolResult {
            call: call.clone(),
            output,
            executed: true,
            success,
            changed_files: false,
            exit_code: None,
        }
    }

    fn tool_payload(goal: Option<&GoalState>, completed_report: bool) -> String {
        let wire = goal.map(GoalState::to_wire);
        let report = wire.as_ref().is_some_and(|g| {
            completed_report
                && g.status == GoalStatus::Complete
                && (g.token_budget.is_some() || g.time_used_seconds > 0)
        });
        json!({
            "goal": wire.as_ref().map(|g| g.for_model()),
            "remainingTokens": wire.as_ref().and_then(|g| g.remaining_tokens()),
            "completionBudgetReport": if report { Some(prompts::COMPLETION_BUDGET_REPORT.trim()) } else { None },
        })
        .to_string()
    }

    pub(super) fn handle_goal_tool(&self, turn_id: TurnId, call: &ToolCall) -> ToolResult {
        match call.name.as_str() {
            "get_goal" => match self.current() {
                Ok(goal) => self.tool_result(call, Self::tool_payload(goal.as_ref(), false), true),
                Err(err) => self.tool_result(call, err.to_string(), false),
            },
            "create_goal" => {
                let args: CreateGoalArgs = match serde_json::from_str(&call.payload) {
                    Ok(args) => args,
                    Err(err) => return self.tool_result(call, err.to_string(), false),
                };
                let mut create =
                    CreateGoal::new(self.shared.session.thread_id.to_string(), args.objective);
                create.token_budget = args.token_budget;
                create.limits = self.limits();
                match self.apply(Trigger::Create(create), Actor::Model, Some(turn_id)) {
                    Ok(goal) => {
                        {
                            let mut inner = self.inner();
                            inner.goal_turn = true;
                            inner.turn_goal_id = goal.as_ref().map(|g| g.goal_id.clone());
                            inner.pending_tokens = 0;
                            inner.charge_mode = None;
                            inner.clock = Some(Instant::now());
                        }
                        // The turn that created the goal is its first goal turn.
                        self.flush(AccountingMode::ActiveOnly, 1, Some(turn_id));
                        if let Err(err) = self.acquire_lease() {
                            self.shared
                                .session
                                .emit(Some(turn_id), EventMsg::Warning(err.to_string()));
                        }
                        self.tool_result(call, Self::tool_payload(goal.as_ref(), false), true)
                    }
                    Err(err) => self.tool_result(call, err.to_string(), false),
                }
            }
            "update_goal" => {
                let args: UpdateGoalArgs = match serde_json::from_str(&call.payload) {
                    Ok(args) => args,
                    Err(err) => return self.tool_result(call, err.to_string(), false),
                };
                let status = match args.status.as_str() {
                    "complete" => GoalStatus::Complete,
                    "blocked" => GoalStatus::Blocked,
                    "paused" => GoalStatus::Paused,
                    _ => {
                        let refusal = quest_protocol::goal::transition::TransitionError::ModelStatusNotAllowed;
                        return self.tool_result(call, refusal.to_string(), false);
                    }
                };
                let mode = if status == GoalStatus::Complete {
                    AccountingMode::ActiveOrComplete
                } else {
                    AccountingMode::ActiveOrStopped
                };
                self.flush(mode, 0, Some(turn_id));
                match self.apply(Trigger::SetStatus { status }, Actor::Model, Some(turn_id)) {
                    Ok(goal) => {
                        {
                            let mut inner = self.inner();
                            if status == GoalStatus::Complete {
                                // Quest charges the completing request at turn end.
                                inner.charge_mode = Some(AccountingMode::ActiveOrComplete);
                            } else {
                                inner.goal_turn = false;
                                inner.pending_tokens = 0;
                            }
                        }
                        self.tool_result(call, Self::tool_payload(goal.as_ref(), true), true)
                    }
                    Err(err) => self.tool_result(call, err.to_string(), false),
                }
            }
            other => self.tool_result(call, format!("unsupported call: {other}"), false),
        }
    }
}
