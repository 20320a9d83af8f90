//! When the next hidden continuation turn starts, and what it says. The decision is the pure
//! function [`decide`]; the runtime only gathers its inputs and carries it out.

use super::*;
use crate::protocol::TurnErrorKind;

/// What the runtime knows besides the goal row when a thread goes idle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScheduleFlags {
    /// This thread runs the goal loop (off for a plain `quest exec`).
    pub continuations: bool,
    /// This process holds the thread's lease.
    pub holds_lease: bool,
    /// Continuation is suspended here (a stop could not be persisted, or the lease was lost).
    pub suspended: bool,
    /// The turn that just ended was interrupted: an interrupt never relaunches the loop.
    pub interrupted: bool,
    /// A "model at capacity" failure asked for one deferred retry.
    pub overload_retry_pending: bool,
    /// Randomness for the auto-resume jitter (any value; the decision stays reproducible).
    pub jitter_seed: u64,
}

/// What happens next on an idle thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing: the goal stopped (or was never this process's to run).
    Idle,
    /// Start a continuation turn after this wait (backoff after no-progress turns).
    Continue {
        /// The wait.
        after: Duration,
    },
    /// The one deferred retry after a "model at capacity" failure.
    OverloadRetry {
        /// The wait.
        after: Duration,
    },
    /// Resume a usage-limited goal at its reset time (plus jitter), then continue.
    AutoResume {
        /// The reset time (unix seconds) this resume is for.
        reset_at: i64,
        /// The wait.
        after: Duration,
    },
}

/// Decides, from the goal as stored, the runtime's flags, the configuration and the time (unix
/// milliseconds), what an idle thread does next. Pure: no I/O, no clock, no randomness.
pub fn decide(
    goal: Option<&GoalState>,
    flags: &ScheduleFlags,
    config: &GoalsConfig,
    now_ms: i64,
) -> Decision {
    if !flags.continuations || !flags.holds_lease || flags.suspended || flags.interrupted {
        return Decision::Idle;
    }
    let Some(goal) = goal else {
        return Decision::Idle;
    };
    match goal.status {
        GoalStatus::Active if flags.overload_retry_pending => Decision::OverloadRetry {
            after: config.server_overloaded_retry_delay.0,
        },
        GoalStatus::Active => Decision::Continue {
            after: config
                .backoff_after(u32::try_from(goal.no_progress_streak.max(0)).unwrap_or(u32::MAX)),
        },
        GoalStatus::UsageLimited => {
            let enabled = config.auto_resume_after_usage_limit || goal.auto_resume_at_reset;
            let Some(reset_at) = goal.usage_limit_resets_at else {
                return Decision::Idle;
            };
            if !enabled || goal.last_auto_resume_reset_at == Some(reset_at) {
                return Decision::Idle;
            }
            let wait_ms = reset_at.saturating_mul(1000).saturating_sub(now_ms).max(0) as u64;
            let (min, max) = (
                config.auto_resume_jitter_min_ms,
                config.auto_resume_jitter_max_ms,
            );
            let spread = max.saturating_sub(min).saturating_add(1);
            let jitter_ms = min.saturating_add(flags.jitter_seed % spread);
            Decision::AutoResume {
                reset_at,
                after: Duration::from_millis(wait_ms.saturating_add(jitter_ms)),
            }
        }
        GoalStatus::Paused
        | GoalStatus::Blocked
        | GoalStatus::BudgetLimited
        | GoalStatus::Complete => Decision::Idle,
    }
}

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
        for record in std::mem::take(&mut self.inner().user_records) {
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

    /// After how long a hidden turn should start, if at all: gathers the runtime's flags, asks
    /// [`decide`], and performs the decision's bookkeeping.
    pub(super) fn schedule_next(&self) -> Option<Duration> {
        let flags = {
            let mut inner = self.inner();
            ScheduleFlags {
                continuations: self.shared.continuations,
                holds_lease: inner.lease.is_some(),
                suspended: inner.suspended.is_some(),
                interrupted: std::mem::take(&mut inner.interrupted),
                overload_retry_pending: inner.overload_retry_pending,
                jitter_seed: now_ms().unsigned_abs(),
            }
        };
        let goal = if flags.continuations && flags.holds_lease {
            self.current().ok().flatten()
        } else {
            None
        };
        match decide(goal.as_ref(), &flags, &self.shared.config, now_ms()) {
            Decision::Idle => None,
            Decision::Continue { after } => Some(after),
            Decision::OverloadRetry { after } => {
                self.inner().overload_retry_pending = false;
                Some(after)
            }
            Decision::AutoResume { reset_at, after } => {
                self.inner().auto_resume_for = Some(reset_at);
                Some(after)
            }
        }
    }

    /// The hidden turn's input once the wait is over, or `None` when the goal stopped meanwhile.
    pub(super) fn confirm_next(&self) -> Option<Vec<ResponseItem>> {
        self.inner().confirmed = None;
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
        } else if self
            .current()
            .ok()
            .flatten()
            .is_some_and(|g| g.time_budget_seconds.is_some())
        {
            // Idle wall-clock time counts while active and may trip the time budget before the
            // next turn starts. Without a time budget it simply rides along with the next commit.
            self.flush(AccountingMode::ActiveOnly, 0, None);
        }
        let goal = self.current().ok().flatten()?;
        match goal.status {
            GoalStatus::Active => {
                let input = self.continuation_input(&goal);
                self.inner().confirmed = Some(goal);
                Some(input)
            }
            GoalStatus::Paused
            | GoalStatus::Blocked
            | GoalStatus::UsageLimited
            | GoalStatus::BudgetLimited
            | GoalStatus::Complete => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn goal(status: GoalStatus) -> GoalState {
        let mut create = quest_protocol::goal::transition::CreateGoal::new("t", "objective");
        create.status = Some(status);
        quest_protocol::goal::transition::transition(None, &Trigger::Create(create), Actor::User, 0)
            .unwrap()
            .goal
            .unwrap()
    }

    fn running() -> ScheduleFlags {
        ScheduleFlags {
            continuations: true,
            holds_lease: true,
            jitter_seed: 7,
            ..ScheduleFlags::default()
        }
    }

    #[test]
    fn decide_table() {
        let config = GoalsConfig {
            auto_resume_jitter_min_ms: 1_000,
            auto_resume_jitter_max_ms: 1_010,
            ..GoalsConfig::default()
        };
        let active = goal(GoalStatus::Active);
        let streak = |n| GoalState {
            no_progress_streak: n,
            ..active.clone()
        };
        let limited = |resets_at: Option<i64>, opt_in: bool, last: Option<i64>| GoalState {
            status: GoalStatus::UsageLimited,
            usage_limit_resets_at: resets_at,
            auto_resume_at_reset: opt_in,
            last_auto_resume_reset_at: last,
            ..active.clone()
        };
        let secs = Duration::from_secs;
        let reset = NOW / 1000 + 60;
        let cases: Vec<(&str, Option<GoalState>, ScheduleFlags, Decision)> = vec![
            ("no goal", None, running(), Decision::Idle),
            (
                "progress: at once",
                Some(active.clone()),
                running(),
                Decision::Continue {
                    after: Duration::ZERO,
                },
            ),
            (
                "1 no-progress turn",
                Some(streak(1)),
                running(),
                Decision::Continue { after: secs(5) },
            ),
            (
                "2 no-progress turns",
                Some(streak(2)),
                running(),
                Decision::Continue { after: secs(15) },
            ),
            (
                "backoff caps",
                Some(streak(40)),
                running(),
                Decision::Continue { after: secs(300) },
            ),
            (
                "corrupt negative streak",
                Some(streak(-3)),
                running(),
                Decision::Continue {
                    after: Duration::ZERO,
                },
            ),
            (
                "plain exec",
                Some(active.clone()),
                ScheduleFlags {
                    continuations: false,
                    ..running()
                },
                Decision::Idle,
            ),
            (
                "no lease",
                Some(active.clone()),
                ScheduleFlags {
                    holds_lease: false,
                    ..running()
                },
                Decision::Idle,
            ),
            (
                "suspended",
                Some(active.clone()),
                ScheduleFlags {
                    suspended: true,
                    ..running()
                },
                Decision::Idle,
            ),
            (
                "after an interrupt",
                Some(active.clone()),
                ScheduleFlags {
                    interrupted: true,
                    ..running()
                },
                Decision::Idle,
            ),
            (
                "overload retry",
                Some(active.clone()),
                ScheduleFlags {
                    overload_retry_pending: true,
                    ..running()
                },
                Decision::OverloadRetry { after: secs(300) },
            ),
            (
                "overload retry of a paused goal",
                Some(goal(GoalStatus::Paused)),
                ScheduleFlags {
                    overload_retry_pending: true,
                    ..running()
                },
                Decision::Idle,
            ),
            (
                "paused",
                Some(goal(GoalStatus::Paused)),
                running(),
                Decision::Idle,
            ),
            (
                "blocked",
                Some(goal(GoalStatus::Blocked)),
                running(),
                Decision::Idle,
            ),
            (
                "budget-limited",
                Some(goal(GoalStatus::BudgetLimited)),
                running(),
                Decision::Idle,
            ),
            (
                "complete",
                Some(goal(GoalStatus::Complete)),
                running(),
                Decision::Idle,
            ),
            (
                "usage-limited, no opt-in",
                Some(limited(Some(reset), false, None)),
                running(),
                Decision::Idle,
            ),
            (
                "usage-limited, reset unknown",
                Some(limited(None, true, None)),
                running(),
                Decision::Idle,
            ),
            (
                "usage-limited, opted in",
                Some(limited(Some(reset), true, None)),
                running(),
                Decision::AutoResume {
                    reset_at: reset,
                    after: Duration::from_millis(60_000 + 1_007),
                },
            ),
            (
                "usage-limited, reset passed",
                Some(limited(Some(reset - 3600), true, None)),
                running(),
                Decision::AutoResume {
                    reset_at: reset - 3600,
                    after: Duration::from_millis(1_007),
                },
            ),
            (
                "usage-limited, this reset already used",
                Some(limited(Some(reset), true, Some(reset))),
                running(),
                Decision::Idle,
            ),
            (
                "usage-limited, hostile reset time",
                Some(limited(Some(i64::MAX), true, None)),
                running(),
                Decision::AutoResume {
                    reset_at: i64::MAX,
                    after: Duration::from_millis((i64::MAX - NOW) as u64 + 1_007),
                },
            ),
        ];
        for (name, goal, flags, expected) in cases {
            assert_eq!(
                decide(goal.as_ref(), &flags, &config, NOW),
                expected,
                "{name}"
            );
        }
        let by_config = GoalsConfig {
            auto_resume_after_usage_limit: true,
            ..config
        };
        assert!(matches!(
            decide(
                Some(&limited(Some(reset), false, None)),
                &running(),
                &by_config,
                NOW
            ),
            Decision::AutoResume { .. }
        ));
    }
}
