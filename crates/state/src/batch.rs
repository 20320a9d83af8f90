//! Several writes in one transaction, so a turn costs one commit (one fsync) per model response
//! plus one at its end instead of one per row.
//!
//! The caller queues the writes whose only requirement is to be on disk before the next goal
//! change or the turn's end (turn rows, rollout items) and commits them together with that goal
//! change; a goal change is still committed before it is announced.

use quest_protocol::goal::{Actor, GoalStatus, Trigger};
use quest_protocol::{CompactedHistory, ResponseItem, ThreadId, TokenUsage, TurnId};

use crate::error::StateError;
use crate::goals::{GoalApplyOutcome, GoalContext, apply_in_tx, read_goal};
use crate::store::{Store, now_ms};
use crate::threads::{
    TurnStatus, TurnTrigger, TxThreads, append_rollout_in, begin_turn_in, encode_compaction,
    encode_items, encode_usage, finish_turn_in,
};

/// A write waiting for the next commit.
#[derive(Clone, Debug, PartialEq)]
pub enum PendingWrite {
    /// [`Store::begin_turn`].
    BeginTurn {
        /// The thread.
        thread_id: ThreadId,
        /// The turn.
        turn_id: TurnId,
        /// Why it runs.
        trigger: TurnTrigger,
        /// When it started (unix milliseconds).
        at_ms: i64,
    },
    /// [`Store::append_rollout`].
    Append {
        /// The thread.
        thread_id: ThreadId,
        /// The turn the items belong to.
        turn_id: Option<TurnId>,
        /// The items.
        items: Vec<ResponseItem>,
    },
    /// [`Store::append_compaction`]: from this row on, a load starts from the replacement
    /// history. Queued after the items it summarizes, so it lands after them.
    Compaction {
        /// The thread.
        thread_id: ThreadId,
        /// The turn that compacted.
        turn_id: Option<TurnId>,
        /// The record.
        record: Box<CompactedHistory>,
    },
    /// [`Store::finish_turn`].
    FinishTurn {
        /// The turn.
        turn_id: TurnId,
        /// How it ended.
        status: TurnStatus,
        /// Its usage.
        usage: Option<TokenUsage>,
        /// Its error.
        error: Option<String>,
        /// When it ended (unix milliseconds).
        at_ms: i64,
    },
}

/// A goal change committed with a batch.
#[derive(Clone, Copy, Debug)]
pub struct GoalWrite<'a> {
    /// The thread.
    pub thread_id: &'a ThreadId,
    /// The trigger.
    pub trigger: &'a Trigger,
    /// Who asks.
    pub actor: Actor,
    /// Attribution and the expected goal id.
    pub ctx: &'a GoalContext,
    /// Apply only if the goal has this status when the change's turn in the batch comes
    /// (after the changes before it); otherwise skip it.
    pub only_if: Option<GoalStatus>,
}

impl Store {
    /// Commits `writes` in order and then `goal`, all in one transaction: either everything is
    /// on disk when this returns, or nothing is (and the caller may retry the same batch). A
    /// refused goal trigger rolls the whole batch back.
    pub fn commit_batch(
        &self,
        writes: &[PendingWrite],
        goal: Option<GoalWrite<'_>>,
    ) -> Result<Option<GoalApplyOutcome>, StateError> {
        let goals: Vec<GoalWrite<'_>> = goal.into_iter().collect();
        Ok(self
            .commit_batch_all(writes, &goals)?
            .into_iter()
            .next()
            .flatten())
    }

    /// [`Store::commit_batch`] with several goal changes, applied in order after `writes` in
    /// the same transaction, each to the goal as the one before it left it (so a turn's charge
    /// and its classification cost one commit). Returns one entry per change: its outcome, or
    /// `None` when its `only_if` status did not match and it was skipped. A refused change
    /// rolls the whole batch back.
    pub fn commit_batch_all(
        &self,
        writes: &[PendingWrite],
        goals: &[GoalWrite<'_>],
    ) -> Result<Vec<Option<GoalApplyOutcome>>, StateError> {
        if writes.is_empty() && goals.is_empty() {
            return Ok(Vec::new());
        }
        let mut encoded = Vec::with_capacity(writes.len());
        for write in writes {
            encoded.push(match write {
                PendingWrite::Append { items, .. } => Encoded::Items(encode_items(items)?),
                PendingWrite::Compaction { record, .. } => {
                    Encoded::Items(vec![encode_compaction(record)?])
                }
                PendingWrite::FinishTurn { usage, .. } => {
                    Encoded::Usage(encode_usage(usage.as_ref())?)
                }
                PendingWrite::BeginTurn { .. } => Encoded::None,
            });
        }
        let now = now_ms();
        self.write(|tx| {
            let mut threads = TxThreads::default();
            for (write, encoded) in writes.iter().zip(&encoded) {
                match (write, encoded) {
                    (
                        PendingWrite::BeginTurn {
                            thread_id,
                            turn_id,
                            trigger,
                            at_ms,
                        },
                        _,
                    ) => {
                        begin_turn_in(tx, &mut threads, thread_id, turn_id, *trigger, *at_ms)?;
                    }
                    (
                        PendingWrite::Append {
                            thread_id, turn_id, ..
                        }
                        | PendingWrite::Compaction {
                            thread_id, turn_id, ..
                        },
                        Encoded::Items(items),
                    ) => {
                        append_rollout_in(
                            tx,
                            &mut threads,
                            thread_id,
                            turn_id.as_ref(),
                            items,
                            now,
                        )?;
                    }
                    (
                        PendingWrite::FinishTurn {
                            turn_id,
                            status,
                            error,
                            at_ms,
                            ..
                        },
                        Encoded::Usage(usage),
                    ) => {
                        finish_turn_in(
                            tx,
                            &mut threads,
                            turn_id,
                            *status,
                            usage.as_deref(),
                            error.as_deref(),
                            *at_ms,
                        )?;
                    }
                    (
                        PendingWrite::Append { .. }
                        | PendingWrite::Compaction { .. }
                        | PendingWrite::FinishTurn { .. },
                        _,
                    ) => {}
                }
            }
            threads.touch_all(tx)?;
            let mut outcomes = Vec::with_capacity(goals.len());
            for goal in goals {
                let thread = goal.thread_id.to_string();
                if let Some(status) = goal.only_if
                    && read_goal(tx, &thread)?.map(|g| g.status) != Some(status)
                {
                    outcomes.push(None);
                    continue;
                }
                outcomes.push(Some(apply_in_tx(
                    tx,
                    &thread,
                    goal.trigger,
                    goal.actor,
                    goal.ctx,
                    now,
                )?));
            }
            Ok(outcomes)
        })
    }
}

enum Encoded {
    None,
    Items(Vec<String>),
    Usage(Option<String>),
}
