//! User goal operations on a thread this process does not run (`quest goal …`, an app-server
//! request for a thread that is not loaded): the same transition function, precedence rules and
//! audit trail as the runtime. A loop running elsewhere sees these changes at its next boundary
//! because it re-reads the stored status before every continuation.

use quest_protocol::goal::transition::{
    GoalEvent, GoalLimits, GoalState, TransitionError, Trigger,
};
use quest_protocol::goal::{Actor, GoalOrigin};
use quest_protocol::{ResponseItem, ThreadId};
use quest_state::{GoalContext, StateError, Store};

use crate::config::Config;
use crate::goal::GoalError;

/// Goal control over a store, with the configured limits.
#[derive(Clone)]
pub(crate) struct GoalControl {
    store: Store,
    limits: GoalLimits,
    auto_continue_on_resume: bool,
}

fn map_err(err: StateError) -> GoalError {
    GoalError::from(err)
}

impl GoalControl {
    /// Goal control over `store` with `config`'s limits.
    pub(crate) fn new(store: Store, config: &Config) -> Self {
        GoalControl {
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
        }
    }

    /// The thread's goal, after pausing it if the process that ran it died.
    pub(crate) fn status(&self, thread_id: &ThreadId) -> Result<Option<GoalState>, GoalError> {
        self.store
            .reconcile_on_load(thread_id, self.auto_continue_on_resume)
            .map_err(map_err)?;
        self.store.get_goal(thread_id).map_err(map_err)
    }

    /// The configured limits.
    pub(crate) fn limits(&self) -> GoalLimits {
        self.limits
    }

    /// The thread's goal as stored, without reconciliation.
    pub(crate) fn status_raw(&self, thread_id: &ThreadId) -> Result<Option<GoalState>, GoalError> {
        self.store.get_goal(thread_id).map_err(map_err)
    }

    /// Every goal, most recently updated first.
    pub(crate) fn list(&self) -> Result<Vec<GoalState>, GoalError> {
        self.store.list_goals().map_err(map_err)
    }

    /// The audit trail of the thread (all goals, oldest first).
    pub(crate) fn log(
        &self,
        thread_id: &ThreadId,
        limit: usize,
    ) -> Result<Vec<GoalEvent>, GoalError> {
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

    /// A user change with its `origin`. An accepted `origin: "user"` change appends its
    /// model-visible records to the thread's rollout (spec §13.5), so a later resume of the
    /// thread shows them to the model.
    pub(crate) fn apply(
        &self,
        thread_id: &ThreadId,
        trigger: Trigger,
        origin: Option<GoalOrigin>,
    ) -> Result<Option<GoalState>, GoalError> {
        let ctx = GoalContext {
            origin,
            ..GoalContext::default()
        };
        let records = crate::goal::prompts::user_records(&trigger, origin);
        let outcome = self
            .store
            .apply_goal(thread_id, &trigger, Actor::User, &ctx)
            .map_err(map_err)?;
        if outcome.changed && !records.is_empty() {
            let items: Vec<ResponseItem> = records
                .into_iter()
                .map(|record| ResponseItem::text_message("user", record))
                .collect();
            self.store
                .append_rollout(thread_id, None, &items)
                .map_err(map_err)?;
        }
        Ok(outcome.goal)
    }

    pub(crate) fn require(&self, thread_id: &ThreadId) -> Result<(), GoalError> {
        match self.store.get_goal(thread_id).map_err(map_err)? {
            Some(_) => Ok(()),
            None => Err(GoalError::Refused(TransitionError::NoGoal {
                thread_id: thread_id.to_string(),
            })),
        }
    }
}
