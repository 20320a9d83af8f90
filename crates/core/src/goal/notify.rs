//! Attention notifications: the `notify` program for statuses that need someone.

use super::*;

impl GoalRuntime {
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
