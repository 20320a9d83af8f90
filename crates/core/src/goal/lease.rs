//! The goal-loop lease: which process runs a thread's goal, kept live by a heartbeat that also
//! flushes active wall-clock time (and so may trip a time budget).

use super::*;

impl GoalRuntime {
    /// Takes (or renews) the lease that says this process runs the goal loop, and starts the
    /// heartbeat that keeps it live and flushes active wall-clock time every 15 s.
    pub(super) fn acquire_lease(&self) -> Result<(), GoalError> {
        let thread_id = self.shared.session.thread_id;
        let acquired = self
            .shared
            .store
            .acquire_lease(&thread_id)
            .map_err(GoalError::from)?;
        let lease = match acquired {
            LeaseAcquire::Acquired(lease) => lease,
            LeaseAcquire::HeldBy(other) => {
                return Err(GoalError::LeaseHeld {
                    thread_id,
                    pid: other.pid,
                });
            }
        };
        let start_heartbeat = {
            let mut inner = self.inner();
            let first = inner.lease.is_none();
            inner.lease = Some(lease);
            first
        };
        if start_heartbeat {
            let weak = Arc::downgrade(&self.shared);
            tokio::spawn(async move {
                let period = Duration::from_millis(quest_state::LEASE_HEARTBEAT_INTERVAL_MS as u64);
                loop {
                    tokio::time::sleep(period).await;
                    let Some(shared) = weak.upgrade() else { break };
                    let runtime = GoalRuntime { shared };
                    if !runtime.heartbeat() {
                        break;
                    }
                }
            });
        }
        Ok(())
    }

    /// One heartbeat; false when the lease is gone and the heartbeat should stop.
    fn heartbeat(&self) -> bool {
        let (lease, seconds) = {
            let mut inner = self.inner();
            let Some(lease) = inner.lease.clone() else {
                return false;
            };
            let seconds = inner.take_whole_seconds();
            (lease, seconds)
        };
        match self.shared.store.heartbeat(&lease, seconds) {
            Ok((renewed, outcome)) => {
                self.inner().lease = Some(renewed);
                if outcome.changed
                    && let Some(goal) = &outcome.goal
                {
                    if goal.status != GoalStatus::Active {
                        self.inner().clock = None;
                    }
                    self.shared
                        .session
                        .emit(None, EventMsg::GoalUpdated(Box::new(goal.to_wire())));
                }
                true
            }
            Err(err) => {
                let message = format!("goal lease heartbeat failed: {err}");
                let mut inner = self.inner();
                if matches!(err, StateError::LeaseLost { .. }) {
                    inner.lease = None;
                    inner.suspended = Some(message.clone());
                }
                drop(inner);
                self.shared.session.emit(None, EventMsg::Warning(message));
                !matches!(err, StateError::LeaseLost { .. })
            }
        }
    }
}
