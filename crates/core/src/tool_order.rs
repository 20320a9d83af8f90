//! The order in which the tool calls of one model response run, and the order their events are
//! seen in.
//!
//! Rules (the turn loop in `turn.rs` performs them):
//! - A call that may change something ([`Concurrency::Exclusive`]: `apply_patch`, a command not
//!   known to be read-only, goal tools, any tool this module does not know) runs alone, after
//!   every call before it has finished and before any call after it starts.
//! - Consecutive calls that only read ([`Concurrency::Shared`]) run together.
//! - Whatever overlaps, the events of call *n* are emitted before those of call *n + 1*
//!   ([`OrderedEmitter`]), and the outputs go back to the model in the calls' order.
//!
//! A new tool decides its concurrency in [`concurrency`]; everything else follows from it.

use std::ops::Range;
use std::sync::Mutex;

use quest_tools::read_only::is_read_only;
use quest_tools::shell::CommandLine;

use crate::tools::ToolCall;

/// Whether a call may run at the same time as its neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Concurrency {
    /// Only reads: may overlap with neighbouring calls that only read.
    Shared,
    /// May change something: runs alone, in the model's order.
    Exclusive,
}

/// The concurrency of one call, from its tool name and arguments. Unparseable arguments make a
/// call exclusive (it fails fast anyway).
pub fn concurrency(call: &ToolCall) -> Concurrency {
    let command = match call.name.as_str() {
        "exec_command" => serde_json::from_str::<serde_json::Value>(&call.payload)
            .ok()
            .and_then(|args| args.get("cmd")?.as_str().map(str::to_owned))
            .map(CommandLine::Shell),
        "shell" | "container.exec" => serde_json::from_str::<serde_json::Value>(&call.payload)
            .ok()
            .and_then(|args| {
                args.get("command")?
                    .as_array()?
                    .iter()
                    .map(|word| word.as_str().map(str::to_owned))
                    .collect::<Option<Vec<String>>>()
            })
            .map(CommandLine::Argv),
        _ => None,
    };
    match command {
        Some(command) if is_read_only(&command) => Concurrency::Shared,
        _ => Concurrency::Exclusive,
    }
}

/// Splits calls into the batches they run in, in order: each batch is one exclusive call or a
/// maximal run of shared calls. Every index appears in exactly one batch.
pub fn batches(calls: &[Concurrency]) -> Vec<Range<usize>> {
    let mut batches: Vec<Range<usize>> = Vec::new();
    for (index, kind) in calls.iter().enumerate() {
        match (kind, batches.last_mut()) {
            (Concurrency::Shared, Some(last))
                if last.end == index && calls[last.start] == Concurrency::Shared =>
            {
                last.end = index + 1;
            }
            _ => batches.push(index..index + 1),
        }
    }
    batches
}

/// Emits the events of several calls in call order, whatever order the calls produce them in.
///
/// The first unfinished call (the head) emits straight through; a later call's events wait in a
/// buffer until every call before it has [finished](Self::finish), then go out in the order they
/// were produced.
pub struct OrderedEmitter<T, F: Fn(T)> {
    sink: F,
    state: Mutex<Emission<T>>,
}

struct Emission<T> {
    head: usize,
    finished: Vec<bool>,
    pending: Vec<Vec<T>>,
}

impl<T, F: Fn(T)> OrderedEmitter<T, F> {
    /// An emitter for `calls` calls, sending to `sink`.
    pub fn new(calls: usize, sink: F) -> Self {
        OrderedEmitter {
            sink,
            state: Mutex::new(Emission {
                head: 0,
                finished: vec![false; calls],
                pending: (0..calls).map(|_| Vec::new()).collect(),
            }),
        }
    }

    /// Emits (or holds back) an event of call `index`.
    pub fn emit(&self, index: usize, event: T) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if index == state.head {
            // Under the lock, so a flush of the previous call cannot overtake it.
            (self.sink)(event);
        } else if let Some(pending) = state.pending.get_mut(index) {
            pending.push(event);
        }
    }

    /// Call `index` will emit nothing more: release the calls after it that are now first.
    pub fn finish(&self, index: usize) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(done) = state.finished.get_mut(index) {
            *done = true;
        }
        while state.finished.get(state.head).copied().unwrap_or(false) {
            state.head += 1;
            let head = state.head;
            if let Some(pending) = state.pending.get_mut(head) {
                for event in std::mem::take(pending) {
                    (self.sink)(event);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use super::*;
    use Concurrency::{Exclusive as X, Shared as S};

    fn call(name: &str, payload: serde_json::Value) -> ToolCall {
        ToolCall {
            call_id: "c".into(),
            name: name.into(),
            payload: payload.to_string(),
            custom: false,
        }
    }

    #[test]
    fn concurrency_of_calls() {
        use serde_json::json;
        let cases = [
            (call("exec_command", json!({"cmd": "rg -n foo src"})), S),
            (call("exec_command", json!({"cmd": "git status"})), S),
            (call("exec_command", json!({"cmd": "cargo test"})), X),
            (call("exec_command", json!({"cmd": "echo hi > f"})), X),
            (call("exec_command", json!({"nope": 1})), X),
            (call("shell", json!({"command": ["cat", "a.txt"]})), S),
            (
                call("shell", json!({"command": ["bash", "-lc", "ls | wc -l"]})),
                S,
            ),
            (call("shell", json!({"command": ["touch", "a"]})), X),
            (call("apply_patch", json!({"input": "*** Begin Patch"})), X),
            (call("update_goal", json!({"status": "complete"})), X),
            (call("get_goal", json!({})), X),
            (call("some_mcp_tool", json!({})), X),
        ];
        for (call, expected) in cases {
            assert_eq!(concurrency(&call), expected, "{call:?}");
        }
        let mut garbage = call("exec_command", json!({}));
        garbage.payload = "{\"cmd\": ".into();
        assert_eq!(concurrency(&garbage), X);
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // one batch of one range is a case
    fn batches_keep_order_and_overlap_only_shared_runs() {
        let cases: &[(&[Concurrency], &[Range<usize>])] = &[
            (&[], &[]),
            (&[X], &[0..1]),
            (&[S], &[0..1]),
            (&[X, X, X], &[0..1, 1..2, 2..3]),
            (&[S, S, S], &[0..3]),
            (&[S, S, X, S], &[0..2, 2..3, 3..4]),
            (&[X, S, S, X, X, S, S, S], &[0..1, 1..3, 3..4, 4..5, 5..8]),
        ];
        for (kinds, expected) in cases {
            assert_eq!(batches(kinds), *expected, "{kinds:?}");
        }
    }

    /// Feeds the emitter a schedule of (call, event) emissions and finishes; returns what the
    /// sink saw.
    fn run(calls: usize, steps: &[(&str, usize)]) -> Vec<String> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink_seen = seen.clone();
        let emitter = OrderedEmitter::new(calls, move |e: String| {
            sink_seen.lock().unwrap().push(e);
        });
        for (step, index) in steps {
            match *step {
                "finish" => emitter.finish(*index),
                event => emitter.emit(*index, format!("{index}:{event}")),
            }
        }
        seen.lock().unwrap().clone()
    }

    #[test]
    fn events_come_out_in_call_order() {
        // Call 1 starts and ends while call 0 is still running.
        let seen = run(
            3,
            &[
                ("begin", 0),
                ("begin", 1),
                ("end", 1),
                ("finish", 1),
                ("begin", 2),
                ("end", 0),
                ("finish", 0),
                ("end", 2),
                ("finish", 2),
            ],
        );
        assert_eq!(
            seen,
            ["0:begin", "0:end", "1:begin", "1:end", "2:begin", "2:end"]
        );
    }

    #[test]
    fn the_head_emits_live_and_a_late_finish_releases_everything() {
        let seen = run(2, &[("begin", 0), ("begin", 1)]);
        assert_eq!(seen, ["0:begin"], "call 1 waits for call 0");
        let seen = run(
            3,
            &[
                ("a", 2),
                ("finish", 2),
                ("a", 1),
                ("finish", 1),
                ("a", 0),
                ("finish", 0),
            ],
        );
        assert_eq!(seen, ["0:a", "1:a", "2:a"]);
        // An index out of range is ignored, not a panic.
        let seen = run(1, &[("a", 5), ("finish", 5), ("b", 0), ("finish", 0)]);
        assert_eq!(seen, ["0:b"]);
    }
}
