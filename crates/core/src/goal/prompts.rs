//! Goal prompt files rendered with the goal's figures.

use quest_protocol::goal::ThreadGoal;

use crate::prompts::render;

const CONTINUATION: &str = include_str!("../../prompts/goal_continuation.md");
const BUDGET_LIMIT: &str = include_str!("../../prompts/goal_budget_limit.md");
const OBJECTIVE_UPDATED: &str = include_str!("../../prompts/goal_objective_updated.md");
const RESUMED: &str = include_str!("../../prompts/goal_resumed.md");
/// The fixed `completionBudgetReport` instruction.
pub const COMPLETION_BUDGET_REPORT: &str = include_str!("../../prompts/goal_completion_report.md");

/// Escapes `&`, `<` and `>` so an objective cannot close the tag that marks it as user data.
pub fn escape_objective(objective: &str) -> String {
    objective
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Seconds as `1h 02m 03s` / `4m 05s` / `7s`.
pub fn human_duration(seconds: i64) -> String {
    let seconds = seconds.max(0);
    let (h, m, s) = (seconds / 3600, (seconds % 3600) / 60, seconds % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// The hidden message of a continuation turn.
pub fn continuation(goal: &ThreadGoal) -> String {
    let token_budget = goal
        .token_budget
        .map_or("none".to_string(), |b| b.to_string());
    let remaining = goal
        .remaining_tokens()
        .map_or("unbounded".to_string(), |r| r.to_string());
    let time_budget_line = goal.time_budget_seconds.map_or(String::new(), |b| {
        format!(
            " (budget {}, remaining {})",
            human_duration(b),
            human_duration(b - goal.time_used_seconds)
        )
    });
    let turn_budget_line = goal.turn_budget.map_or(String::new(), |b| {
        format!(" (budget {b}, remaining {})", (b - goal.turns_used).max(0))
    });
    render(
        CONTINUATION,
        &[
            ("objective", &escape_objective(&goal.objective)),
            ("tokens_used", &goal.tokens_used.to_string()),
            ("token_budget", &token_budget),
            ("tokens_remaining", &remaining),
            ("time_used", &human_duration(goal.time_used_seconds)),
            ("time_budget_line", &time_budget_line),
            ("turns_used", &goal.turns_used.to_string()),
            ("turn_budget_line", &turn_budget_line),
        ],
    )
}

/// The one wind-down message injected when a budget trips inside a turn.
pub fn budget_limit(goal: &ThreadGoal) -> String {
    let limit = goal.budget_limit_kind.map_or("goal", |k| k.as_str());
    render(
        BUDGET_LIMIT,
        &[
            ("limit", limit),
            ("objective", &escape_objective(&goal.objective)),
            ("tokens_used", &goal.tokens_used.to_string()),
            (
                "token_budget",
                &goal
                    .token_budget
                    .map_or("none".to_string(), |b| b.to_string()),
            ),
            ("time_used", &human_duration(goal.time_used_seconds)),
            ("turns_used", &goal.turns_used.to_string()),
        ],
    )
}

/// Injected when the user edits the objective during a running turn.
pub fn objective_updated(objective: &str) -> String {
    render(
        OBJECTIVE_UPDATED,
        &[("objective", &escape_objective(objective))],
    )
}

/// The one-shot note after a user resume (§17g).
pub fn resumed() -> String {
    RESUMED.to_string()
}

/// The durable user record written when the user sets a goal (`origin: "user"`).
pub fn user_set_goal(objective: &str) -> String {
    let quoted = serde_json::to_string(objective).unwrap_or_default();
    let line = if quoted.len() > 700 {
        "User set the goal: [objective omitted; exceeds the evidence limit].".to_string()
    } else {
        format!("User set the goal: {quoted}")
    };
    user_goal_record(&line)
}

/// `User set goal status: "paused".` as a durable user record.
pub fn user_set_status(status: quest_protocol::goal::GoalStatus) -> String {
    let quoted = serde_json::to_string(status.as_wire()).unwrap_or_default();
    user_goal_record(&format!("User set goal status: {quoted}."))
}

/// `User cleared the goal.` as a durable user record.
pub fn user_cleared_goal() -> String {
    user_goal_record("User cleared the goal.")
}

fn user_goal_record(line: &str) -> String {
    format!("<codex_internal_context source=\"user_goal\">\n{line}\n</codex_internal_context>")
}

/// The model-visible records a user change writes into the thread's history (spec §13.5): only
/// for `origin: "user"`, and only for an objective, a status or a clear. Budget-only changes,
/// `"automatic"` and a missing origin record nothing.
pub fn user_records(
    trigger: &quest_protocol::goal::transition::Trigger,
    origin: Option<quest_protocol::goal::GoalOrigin>,
) -> Vec<String> {
    use quest_protocol::goal::GoalStatus;
    use quest_protocol::goal::transition::Trigger;
    if origin != Some(quest_protocol::goal::GoalOrigin::User) {
        return Vec::new();
    }
    match trigger {
        Trigger::Create(create) => {
            let mut records = vec![user_set_goal(create.objective.trim())];
            if let Some(status) = create.status.filter(|s| *s != GoalStatus::Active) {
                records.push(user_set_status(status));
            }
            records
        }
        Trigger::Update(update) => {
            let mut records = Vec::new();
            if let Some(objective) = &update.objective {
                records.push(user_set_goal(objective.trim()));
            }
            if let Some(status) = update.status {
                records.push(user_set_status(status));
            }
            records
        }
        Trigger::SetStatus { status } => vec![user_set_status(*status)],
        Trigger::Resume => vec![user_set_status(GoalStatus::Active)],
        Trigger::Clear => vec![user_cleared_goal()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quest_protocol::goal::GoalStatus;

    fn goal() -> ThreadGoal {
        ThreadGoal {
            thread_id: "t".into(),
            objective: "make <b>tests</b> pass & ship".into(),
            status: GoalStatus::Active,
            token_budget: Some(1000),
            tokens_used: 250,
            time_used_seconds: 65,
            created_at: 0,
            updated_at: 0,
            time_budget_seconds: Some(3600),
            turn_budget: None,
            turns_used: 2,
            budget_limit_kind: None,
            usage_limit_resets_at: None,
            auto_resume_at_reset: false,
            last_transition: None,
        }
    }

    #[test]
    fn only_user_origin_objective_status_and_clear_changes_are_recorded() {
        use quest_protocol::goal::GoalOrigin;
        use quest_protocol::goal::transition::{BudgetChange, CreateGoal, Trigger, UpdateGoal};
        let user = Some(GoalOrigin::User);
        let create = Trigger::Create(CreateGoal::new("t", "  ship it  "));
        assert_eq!(user_records(&create, user), vec![user_set_goal("ship it")]);
        for origin in [None, Some(GoalOrigin::Automatic)] {
            assert!(user_records(&create, origin).is_empty());
            assert!(user_records(&Trigger::Clear, origin).is_empty());
        }
        let pause = Trigger::SetStatus {
            status: GoalStatus::Paused,
        };
        assert_eq!(
            user_records(&pause, user),
            vec![
                "<codex_internal_context source=\"user_goal\">\nUser set goal status: \"paused\".\n</codex_internal_context>"
                    .to_string()
            ]
        );
        assert_eq!(
            user_records(&Trigger::Clear, user),
            vec![
                "<codex_internal_context source=\"user_goal\">\nUser cleared the goal.\n</codex_internal_context>"
                    .to_string()
            ]
        );
        let budget_only = Trigger::Update(UpdateGoal {
            thread_id: "t".into(),
            objective: None,
            status: None,
            token_budget: BudgetChange::Set(10),
            time_budget_seconds: BudgetChange::Keep,
            turn_budget: BudgetChange::Keep,
            auto_resume_at_reset: None,
            limits: Default::default(),
        });
        assert!(user_records(&budget_only, user).is_empty());
        let long = "x".repeat(800);
        assert!(
            user_records(&Trigger::Create(CreateGoal::new("t", long)), user)[0]
                .contains("[objective omitted; exceeds the evidence limit]")
        );
    }

    #[test]
    fn continuation_escapes_objective_and_carries_budget() {
        let text = continuation(&goal());
        assert!(!text.contains("{{"), "{text}");
        assert!(text.contains("make &lt;b&gt;tests&lt;/b&gt; pass &amp; ship"));
        assert!(text.contains("Tokens used: 250"));
        assert!(text.contains("Token budget: 1000"));
        assert!(text.contains("Tokens remaining: 750"));
        assert!(text.contains("Time used: 1m 05s (budget 1h 00m 00s"));
        assert!(text.starts_with("<codex_internal_context source=\"goal\">"));
        let mut unbounded = goal();
        unbounded.token_budget = None;
        let text = continuation(&unbounded);
        assert!(text.contains("Token budget: none"));
        assert!(text.contains("Tokens remaining: unbounded"));
    }

    #[test]
    fn other_goal_prompts_render_fully() {
        for text in [
            budget_limit(&goal()),
            objective_updated("x"),
            resumed(),
            user_set_goal("ship it"),
        ] {
            assert!(!text.contains("{{"), "{text}");
        }
        assert!(user_set_goal("ship").contains("User set the goal: \"ship\""));
        assert!(user_set_goal(&"x".repeat(800)).contains("objective omitted"));
    }
}
