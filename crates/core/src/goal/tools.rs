//! The model's goal tools: `get_goal`, `create_goal`, `update_goal` — specs and argument parsing.

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
