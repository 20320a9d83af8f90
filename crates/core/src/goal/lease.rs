//! The goal-loop lease: which process runs a thread's goal, kept live by a heartbeat that also
//! flushes active wall-clock time (and so may trip a time budget).

use super::*;

impl GoalRuntime {
    /// Takes (or renews) the lease that says this process runs the thread and its goal loop,
    /// and starts the heartbeat that keeps it live, flushes active wall-clock time, and notices
    /// goal changes made by other processes (`[goals] heartbeat_interval`, 15 s by default).
    pub(crate) fn acquire_lease(&self) -> Result<(), GoalError> {
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
            if inner.suspended == Some(SuspendCause::LeaseLost) {
                inner.suspended = None;
            }
            first
        };
        if start_heartbeat {
            self.start_heartbeat();
        }
        Ok(())
    }

    /// Beats on a thread of its own, not as an async task: a runtime that is held up (a
    /// `quest exec --json` whose reader stopped reading blocks exec's only runtime thread on
    /// its next write) must not let the lease of a live process go stale, or the goal would be
    /// taken for a crashed one's. A stopped or dead process still stops beating. The thread
    /// ends with the goal runtime (or the lease).
    fn start_heartbeat(&self) {
        let weak = Arc::downgrade(&self.shared);
        let period = self.shared.config.heartbeat_interval.0;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("quest-goal-lease".into())
            .spawn(move || {
                // Disconnected when the runtime is dropped: stop at once instead of sleeping on.
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(period)
                {
                    let Some(shared) = weak.upgrade() else { break };
                    if !(GoalRuntime { shared }).heartbeat() {
                        break;
                    }
                }
            });
        match spawned {
            Ok(_) => {
                *self
                    .shared
                    .heartbeat_stop
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(stop)
            }
            Err(err) => self.shared.session.emit(
                None,
                EventMsg::Warning(format!(
                    "cannot start the goal lease heartbeat: {err}; another process may take the goal over in {} s",
                    quest_state::LEASE_STALE_AFTER_MS / 1000
                )),
            ),
        }
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
                self.announce(&outcome, None);
                self.observe_external(outcome.goal.as_ref());
                true
            }
            Err(err) => {
                let message = format!("goal lease heartbeat failed: {err}");
                let mut inner = self.inner();
                if matches!(err, StateError::LeaseLost { .. }) {
                    inner.lease = None;
                    inner.suspended = Some(SuspendCause::LeaseLost);
                }
                drop(inner);
                self.shared.session.emit(None, EventMsg::Warning(message));
                !matches!(err, StateError::LeaseLost { .. })
            }
        }
    }

    /// A goal change made by another process (`quest goal resume|pause|budget`, an API client on
    /// another server) shows up here: announce it and let an idle thread act on it — start
    /// working on a goal resumed from the shell, or schedule its usage-limit auto-resume.
    fn observe_external(&self, goal: Option<&GoalState>) {
        let wire = goal.map(|g| quest_protocol::goal::ThreadGoal {
            updated_at: 0,
            ..g.to_wire()
        });
        let mut inner = self.inner();
        if inner.last_announced == wire {
            return;
        }
        inner.last_announced = wire;
        match goal {
            Some(goal) => {
                if goal.status == GoalStatus::Active {
                    inner.clock.get_or_insert_with(Instant::now);
                    if inner.suspended == Some(SuspendCause::StopFailed) {
                        inner.suspended = None;
                    }
                } else {
                    inner.clock = None;
                }
                drop(inner);
                self.shared
                    .session
                    .emit(None, EventMsg::GoalUpdated(Box::new(goal.to_wire())));
            }
            None => {
                inner.clock = None;
                drop(inner);
                self.shared.session.emit(None, EventMsg::GoalCleared);
            }
        }
        self.wake();
    }

    /// Asks the thread's actor to re-evaluate its idle policy.
    pub(super) fn wake(&self) {
        let sender = match self.shared.wake.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if let Some(sender) = sender.and_then(|weak| weak.upgrade()) {
            let _ = sender.send(crate::protocol::Op::WakeIdle);
        }
    }

    /// Gives up the lease (clean exit): another process may run the thread from now on.
    pub(super) fn release_lease(&self) {
        let thread_id = self.shared.session.thread_id;
        let lease = self.inner().lease.take();
        if let Some(lease) = lease
            && let Err(err) = self.shared.store.release_lease(&lease)
        {
            self.shared.session.emit(
                None,
                EventMsg::Warning(format!(
                    "could not release the goal lease of {thread_id}: {err}"
                )),
            );
        }
    }

    /// Whether this process holds the thread's lease (and so may charge, continue or pause).
    pub(super) fn holds_lease(&self) -> bool {
        self.inner().lease.is_some()
    }
}
