//! The no-progress circuit breaker (§17a): turn classification, blocker fingerprints and the
//! counter update that may block a goal.

use serde_json::json;

use super::super::{Actor, GoalReason, GoalStatus};
use super::*;

/// Longest blocker excerpt kept in an audit event's detail, in characters.
pub const MAX_BLOCKER_EXCERPT_CHARS: usize = 500;

/// How the runtime classified a finished goal turn (§17a).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TurnOutcome {
    /// A non-goal tool executed successfully and was not an exact repeat, or a file changed.
    Progress,
    /// Nothing useful happened; `blocker` is the final assistant text (the reported blocker).
    NoProgress {
        /// Final assistant text, if any.
        blocker: Option<String>,
    },
    /// The turn ended waiting for user input or an approval; not counted.
    Waiting,
}

/// Circuit-breaker thresholds (`[goals] max_no_progress_turns`, `max_repeated_blocker_turns`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerThresholds {
    /// Consecutive no-progress turns that block the goal (reason `no_progress`).
    pub max_no_progress_turns: i64,
    /// Consecutive turns with the same blocker that block the goal (reason `repeated_blocker`).
    pub max_repeated_blocker_turns: i64,
}

impl Default for BreakerThresholds {
    fn default() -> Self {
        BreakerThresholds {
            max_no_progress_turns: 3,
            max_repeated_blocker_turns: 3,
        }
    }
}

/// A stable fingerprint of a reported blocker, so near-identical wording counts as the same
/// blocker: lowercased, every run of digits replaced by `#`, punctuation and whitespace runs
/// collapsed to one space, trimmed, then hashed (64-bit FNV-1a, 16 hex digits). Empty or
/// punctuation-only text has the fingerprint of the empty string.
pub fn blocker_fingerprint(text: &str) -> String {
    let normalized = normalize_blocker(text);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in normalized.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn normalize_blocker(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    let mut in_digits = false;
    for ch in text.chars().flat_map(char::to_lowercase) {
        if ch.is_numeric() {
            if !in_digits {
                if pending_space && !out.is_empty() {
                    out.push(' ');
                }
                pending_space = false;
                out.push('#');
                in_digits = true;
            }
        } else if ch.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            in_digits = false;
            out.push(ch);
        } else {
            pending_space = true;
            in_digits = false;
        }
    }
    out
}

pub(super) fn excerpt(text: &str) -> String {
    text.chars().take(MAX_BLOCKER_EXCERPT_CHARS).collect()
}

pub(super) fn apply_breaker(
    goal: Option<&GoalState>,
    outcome: &TurnOutcome,
    thresholds: BreakerThresholds,
    now_ms: i64,
) -> Transition {
    let Some(current) = goal else {
        return Transition::unchanged(None);
    };
    if !matches!(
        current.status,
        GoalStatus::Active | GoalStatus::BudgetLimited
    ) {
        return Transition::unchanged(goal);
    }
    let mut next = current.clone();
    let blocker = match outcome {
        TurnOutcome::Waiting => return Transition::unchanged(goal),
        TurnOutcome::Progress => {
            reset_breaker(&mut next);
            None
        }
        TurnOutcome::NoProgress { blocker } => {
            next.no_progress_streak = next.no_progress_streak.saturating_add(1);
            let fingerprint = blocker
                .as_deref()
                .filter(|text| !normalize_blocker(text).is_empty())
                .map(blocker_fingerprint);
            match fingerprint {
                Some(fp) if next.last_blocker_fingerprint.as_deref() == Some(fp.as_str()) => {
                    next.blocker_streak = next.blocker_streak.saturating_add(1);
                }
                Some(fp) => {
                    next.blocker_streak = 1;
                    next.last_blocker_fingerprint = Some(fp);
                }
                None => {
                    next.blocker_streak = 0;
                    next.last_blocker_fingerprint = None;
                }
            }
            blocker.as_deref()
        }
    };
    if next == *current {
        return Transition::unchanged(goal);
    }
    next.updated_at_ms = now_ms;
    if next.status == GoalStatus::Active {
        let reason = if next.blocker_streak >= thresholds.max_repeated_blocker_turns {
            Some(GoalReason::RepeatedBlocker)
        } else if next.no_progress_streak >= thresholds.max_no_progress_turns {
            Some(GoalReason::NoProgress)
        } else {
            None
        };
        if let Some(reason) = reason {
            set_status(&mut next, GoalStatus::Blocked, None);
            let extra = json!({"blocker": blocker.map(excerpt)});
            return finish(
                goal,
                next,
                Actor::System,
                GoalEventKind::StatusChanged,
                reason,
                extra,
                now_ms,
            );
        }
    }
    Transition {
        goal: Some(next),
        changed: true,
        status_changed: false,
        event: None,
    }
}
