//! Goal operations from outside a running loop (`quest goal …`): the same transition function,
//! precedence rules and audit trail as the runtime. A running loop sees these changes at its
//! next boundary because it re-reads the stored status before every continuation.

use quest_protocol::ThreadId;
use quest_protocol::goal::transition::{
    BudgetChange, GoalEvent, GoalLimits, GoalState, Trigger, UpdateGoal,
};
use quest_protocol::goal::{Actor, GoalOrigin, GoalStatus};
use quest_state::{GoalContext, StateError, Store};

use crate::config::Config;
use crate::goal::GoalError;

/// Goal control over a store, with the configured limits.
pub struct GoalControl {
    store: Store,
    limits: GoalLimits,
    auto_continue_on_resume: bool,
}

fn map_err(err: StateError) -> GoalError {
    match err {
        StateError::Transition(refusal) => GoalError::Refused(refusal.to_string()),
        other => GoalError::Storage(other.to_string()),
    }
}

impl GoalControl {
    /// Opens the store of `config.home`.
    pub fn open(config: &Config) -> Result<Self, GoalError> {
        let store = Store::open_in(&config.home).map_err(map_err)?;
        Ok(GoalControl {
            store,
            limits: GoalLimits {
                max_token_budget: config.goals.max_goal_token_budget,
                default_time_budget_seconds: config
                    .goals
                    .default_time_budget
                    .map(|d| d.0.as_secs() as i64),
                default_turn_budget: config.goals.default_turn_budget,
            },
            auto_continue_on_resume: config.goals.auto_continue_on_resume,
        })
    }

    /// The thread's goal, after pausing it if the process that ran it died.
    pub fn status(&self, thread_id: &ThreadId) -> Result<Option<GoalState>, GoalError> {
        self.store
            .reconcile_on_load(thread_id, self.auto_continue_on_resume)
            .map_err(map_err)?;
        self.store.get_goal(thread_id).map_err(map_err)
    }

    /// Every goal, most recently updated first.
    pub fn list(&self) -> Result<Vec<GoalState>, GoalError> {
        self.store.list_goals().map_err(map_err)
    }

    /// The audit trail of the thread (all goals, oldest first).
    pub fn log(&self, thread_id: &ThreadId, limit: usize) -> Result<Vec<GoalEvent>, GoalError> {
        let mut events = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .goal_events(thread_id, None, limit.min(500), cursor)
                .map_err(map_err)?;
            events.extend(page.events);
            match page.next_cursor {
                Some(next) if events.len() < limit => cursor = Some(next),
                _ => break,
            }
        }
        events.truncate(limit);
        Ok(events)
    }

    fn apply(
        &self,
        thread_id: &ThreadId,
        trigger: Trigger,
    ) -> Result<Option<GoalState>, GoalError> {
        let ctx = GoalContext {
            origin: Some(GoalOrigin::User),
            ..GoalContext::default()
        };
        self.store
            .apply_goal(thread_id, &trigger, Actor::User, &ctx)
            .map(|outcome| outcome.goal)
            .map_err(map_err)
    }

    fn require(&self, thread_id: &ThreadId) -> Result<(), GoalError> {
        match self.store.get_goal(thread_id).map_err(map_err)? {
            Some(_) => Ok(()),
            None => Err(GoalError::Refused(format!(
                "cannot update goal for thread {thread_id}: no goal exists"
            ))),
        }
    }

    /// `active` → `paused` (user request).
    pub fn pause(&self, thread_id: &ThreadId) -> Result<Option<GoalState>, GoalError> {
        self.require(thread_id)?;
        self.apply(
            thread_id,
            Trigger::SetStatus {
                status: GoalStatus::Paused,
            },
        )
    }

    /// Back to `active` with fresh breaker counters; `at_reset` opts into auto-resume instead
    /// when the goal is usage-limited.
    pub fn resume(
        &self,
        thread_id: &ThreadId,
        at_reset: bool,
    ) -> Result<Option<GoalState>, GoalError> {
        self.require(thread_id)?;
        if at_reset {
            return self.apply(
                thread_id,
                Trigger::Update(UpdateGoal {
                    thread_id: thread_id.to_string(),
                    auto_resume_at_reset: Some(true),
                    limits: self.limits,
                    ..UpdateGoal::default()
                }),
            );
        }
        self.apply(thread_id, Trigger::Resume)
    }

    /// Replaces the objective, keeping id, counters and status.
    pub fn edit(
        &self,
        thread_id: &ThreadId,
        objective: &str,
    ) -> Result<Option<GoalState>, GoalError> {
        self.require(thread_id)?;
        self.apply(
            thread_id,
            Trigger::Update(UpdateGoal {
                thread_id: thread_id.to_string(),
                objective: Some(objective.to_string()),
                limits: self.limits,
                ..UpdateGoal::default()
            }),
        )
    }

    /// Changes budgets (three-state each).
    pub fn budget(
        &self,
        thread_id: &ThreadId,
        tokens: BudgetChange,
        time_seconds: BudgetChange,
        turns: BudgetChange,
    ) -> Result<Option<GoalState>, GoalError> {
        self.require(thread_id)?;
        self.apply(
            thread_id,
            Trigger::Update(UpdateGoal {
                thread_id: thread_id.to_string(),
                token_budget: tokens,
                time_budget_seconds: time_seconds,
                turn_budget: turns,
                limits: self.limits,
                ..UpdateGoal::default()
            }),
        )
    }

    /// Deletes the goal; false when there was none.
    pub fn clear(&self, thread_id: &ThreadId) -> Result<bool, GoalError> {
        if self.store.get_goal(thread_id).map_err(map_err)?.is_none() {
            return Ok(false);
        }
        self.apply(thread_id, Trigger::Clear)?;
        Ok(true)
    }
}
