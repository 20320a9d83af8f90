//! When the next hidden continuation turn starts, and what it says.

use super::*;
use crate::protocol::TurnErrorKind;

impl GoalRuntime {
    /// The first "model at capacity" failure of a goal defers one retry instead of blocking
    /// (§17h); a second one blocks as any other turn error.
    pub(super) fn defer_overload(&self, error: &crate::protocol::TurnError) -> bool {
        if error.kind != TurnErrorKind::ServerOverloaded {
            return false;
        }
        let Some(goal) = self.current().ok().flatten() else {
            return false;
        };
        if goal.status != GoalStatus::Active {
            return false;
        }
        let mut inner = self.inner();
        if inner.overload_retry_used_for.as_deref() == Some(goal.goal_id.as_str()) {
            return false;
        }
        inner.overload_retry_used_for = Some(goal.goal_id);
        inner.overload_retry_pending = true;
        true
    }

    fn continuation_input(&self, goal: &GoalState) -> Vec<ResponseItem> {
        let mut items = Vec::new();
        if let Some(record) = self.inner().user_record.take() {
            items.push(ResponseItem::text_message("user", record));
        }
        if std::mem::take(&mut self.inner().resume_note) {
            items.push(ResponseItem::text_message("user", prompts::resumed()));
        }
        items.push(ResponseItem::text_message(
            "user",
            prompts::continuation(&goal.to_wire()),
        ));
        items
    }

    /// After how long a hidden turn should start, if at all.
    pub(super) fn schedule_next(&self) -> Option<Duration> {
        if !self.shared.continuations {
            return None;
        }
        {
            let mut inner = self.inner();
            if inner.suspended.is_some() || std::mem::take(&mut inner.interrupted) {
                return None;
            }
        }
        let goal = self.current().ok().flatten()?;
        if goal.status == GoalStatus::Active
            && std::mem::take(&mut self.inner().overload_retry_pending)
        {
            return Some(self.shared.config.server_overloaded_retry_delay.0);
        }
        match goal.status {
            GoalStatus::Active => Some(
                self.shared
                    .config
                    .backoff_after(goal.no_progress_streak.max(0) as u32),
            ),
            GoalStatus::UsageLimited => {
                let enabled =
                    self.shared.config.auto_resume_after_usage_limit || goal.auto_resume_at_reset;
                let resets_at = goal.usage_limit_resets_at?;
                if !enabled || goal.last_auto_resume_reset_at == Some(resets_at) {
                    return None;
                }
                self.inner().auto_resume_for = Some(resets_at);
                let wait_ms = (resets_at * 1000 - now_ms()).max(0) as u64;
                let (min, max) = (
                    self.shared.config.auto_resume_jitter_min_ms,
                    self.shared.config.auto_resume_jitter_max_ms,
                );
                let spread = max.saturating_sub(min).saturating_add(1);
                let jitter_ms = min + (now_ms().unsigned_abs() % spread);
                Some(Duration::from_millis(wait_ms + jitter_ms))
            }
            GoalStatus::Paused
            | GoalStatus::Blocked
            | GoalStatus::BudgetLimited
            | GoalStatus::Complete => None,
        }
    }

    /// The hidden turn's input once the wait is over, or `None` when the goal stopped meanwhile.
    pub(super) fn confirm_next(&self) -> Option<Vec<ResponseItem>> {
        if self.inner().suspended.is_some() {
            return None;
        }
        if self.inner().auto_resume_for.take().is_some() {
            let trigger = Trigger::AutoResumeAtReset {
                enabled_by_config: self.shared.config.auto_resume_after_usage_limit,
            };
            if self.apply(trigger, Actor::System, None).is_err() {
                return None;
            }
        } else {
            // Idle wall-clock time counts while active; it may trip the time budget.
            self.flush(AccountingMode::ActiveOnly, 0, None);
        }
        let goal = self.current().ok().flatten()?;
        match goal.status {
            GoalStatus::Active => Some(self.continuation_input(&goal)),
            GoalStatus::Paused
            | GoalStatus::Blocked
            | GoalStatus::UsageLimited
            | GoalStatus::BudgetLimited
            | GoalStatus::Complete => None,
        }
    }
}
