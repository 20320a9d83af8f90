//! Context compaction, the pure part: how large the live context is, when it must shrink, what
//! the summary request sends, and the history that replaces the old one.
//!
//! Nothing here performs I/O. The turn loop measures ([`ContextTracker`]), asks
//! [`CompactionSettings::should_compact`], sends [`summary_request_input`] through the ordinary
//! Responses endpoint and installs [`rebuild_history`]'s result (persisted as one rollout record,
//! so a crash mid-compaction leaves the previous history intact).

use quest_protocol::{ContentItem, ResponseItem};

use crate::prompts::render;

const SUMMARY_PROMPT: &str = include_str!("../prompts/compact_prompt.md");
const SUMMARY_BRIDGE: &str = include_str!("../prompts/compact_summary.md");
const GOAL_OBJECTIVE: &str = include_str!("../prompts/compact_goal.md");
const TOOL_OUTPUTS: &str = include_str!("../prompts/compact_tool_outputs.md");

/// Bytes of serialized history counted as one token when no usage figure is known.
pub const BYTES_PER_TOKEN: usize = 4;
/// Share of the window the auto-compaction limit defaults to.
pub const DEFAULT_LIMIT_PERCENT: i64 = 90;

/// Context windows of known model families (tokens the client may fill), by slug prefix. The
/// first matching prefix wins. Figures follow what Codex reports for the same slugs.
const KNOWN_WINDOWS: &[(&str, i64)] = &[
    ("gpt-5", 258_400),
    ("gpt-4.1", 1_047_576),
    ("gpt-4o", 128_000),
    ("o3", 200_000),
    ("o4-mini", 200_000),
    ("gpt-oss", 131_072),
];

/// The context window of a known model slug.
pub fn default_context_window(model: &str) -> Option<i64> {
    KNOWN_WINDOWS
        .iter()
        .find(|(prefix, _)| model.starts_with(prefix))
        .map(|(_, window)| *window)
}

/// When a thread compacts. `None` fields mean unknown: without a limit only a
/// `context_length_exceeded` answer triggers a compaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionSettings {
    /// `model_context_window` (configured, else the model's default).
    pub context_window: Option<i64>,
    /// `model_auto_compact_token_limit` (configured, else 90 % of the window).
    pub auto_compact_limit: Option<i64>,
}

impl CompactionSettings {
    /// Resolves the keys for `model`: configured values win; the limit never exceeds the window.
    pub fn resolve(
        model: &str,
        configured_window: Option<i64>,
        configured_limit: Option<i64>,
    ) -> Self {
        let context_window = configured_window.or_else(|| default_context_window(model));
        let default_limit = context_window.map(|w| w.saturating_mul(DEFAULT_LIMIT_PERCENT) / 100);
        let auto_compact_limit = match (configured_limit, context_window) {
            (Some(limit), Some(window)) => Some(limit.min(window)),
            (Some(limit), None) => Some(limit),
            (None, _) => default_limit,
        };
        CompactionSettings {
            context_window,
            auto_compact_limit,
        }
    }

    /// These settings (resolved without a window) completed with the window the provider's
    /// model list gives: a configured limit stays (never above the window), else 90 % of it.
    pub fn with_provider_window(self, window: i64) -> Self {
        if self.context_window.is_some() || window <= 0 {
            return self;
        }
        CompactionSettings {
            context_window: Some(window),
            auto_compact_limit: Some(self.auto_compact_limit.map_or(
                window.saturating_mul(DEFAULT_LIMIT_PERCENT) / 100,
                |limit| limit.min(window),
            )),
        }
    }

    /// True when a live context of `tokens` has crossed the auto-compaction limit.
    pub fn should_compact(&self, tokens: i64) -> bool {
        self.auto_compact_limit.is_some_and(|limit| tokens >= limit)
    }

    /// The most the summary request may carry: the window less room for the summary itself
    /// (`None` when the window is unknown). Above the default limit, so a history compacted on
    /// time is summarized whole.
    pub fn summary_request_budget(&self) -> Option<i64> {
        self.context_window.map(|w| w.saturating_mul(95) / 100)
    }
}

/// Estimated tokens of some items: serialized bytes / [`BYTES_PER_TOKEN`].
pub fn estimate_tokens(items: &[ResponseItem]) -> i64 {
    let bytes: usize = items.iter().map(item_bytes).sum();
    (bytes / BYTES_PER_TOKEN) as i64
}

fn item_bytes(item: &ResponseItem) -> usize {
    serde_json::to_string(item).map_or(0, |s| s.len())
}

/// Tracks the size of the live context: the last response's input + output tokens (what the
/// provider counted) plus an estimate of what was added since (tool outputs, new messages).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContextTracker {
    /// Tokens the provider reported for the last response (input + output), or an estimate.
    last_tokens: i64,
    /// Bytes of items added to the history since then.
    added_bytes: usize,
}

impl ContextTracker {
    /// A tracker for a history nobody has measured yet (a new or resumed thread).
    pub fn estimated(history: &[ResponseItem]) -> Self {
        ContextTracker {
            last_tokens: estimate_tokens(history),
            added_bytes: 0,
        }
    }

    /// A response arrived with `input_tokens` / `output_tokens`. A provider that reports no
    /// usage leaves the estimate of `history` (which then includes the response's items).
    pub fn on_response(&mut self, input_tokens: i64, output_tokens: i64, history: &[ResponseItem]) {
        if input_tokens > 0 {
            self.last_tokens = input_tokens.saturating_add(output_tokens.max(0));
            self.added_bytes = 0;
        } else {
            *self = Self::estimated(history);
        }
    }

    /// Items were appended to the history (tool outputs, a user message).
    pub fn on_items_added(&mut self, items: &[ResponseItem]) {
        self.added_bytes = self
            .added_bytes
            .saturating_add(items.iter().map(item_bytes).sum());
    }

    /// The live context now, in tokens.
    pub fn tokens(&self) -> i64 {
        self.last_tokens
            .saturating_add((self.added_bytes / BYTES_PER_TOKEN) as i64)
    }
}

/// What a history item is, for deciding what survives a compaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Base instructions, `AGENTS.md`, environment context.
    Instructions,
    /// `<codex_internal_context source="user_goal">`: the user's goal records.
    UserGoalRecord,
    /// `<codex_internal_context source="goal">`: continuation and steering messages.
    GoalInternal,
    /// What an earlier compaction added (summary, objective block, tool-output record).
    CompactionArtifact,
    /// A message the user wrote.
    UserMessage,
    /// Model output, tool calls and their outputs.
    Conversation,
}

fn kind(item: &ResponseItem) -> Kind {
    let ResponseItem::Message { role, .. } = item else {
        return Kind::Conversation;
    };
    match role.as_str() {
        "developer" | "system" => Kind::Instructions,
        "user" => {
            let text = item.message_text().unwrap_or_default();
            let text = text.trim_start();
            if text.starts_with("<environment_context>")
                || text.starts_with("# AGENTS.md instructions for")
            {
                Kind::Instructions
            } else if text.starts_with("<codex_internal_context source=\"user_goal\">") {
                Kind::UserGoalRecord
            } else if text.starts_with("<codex_internal_context source=\"goal\">") {
                Kind::GoalInternal
            } else if text.starts_with("<codex_internal_context source=\"compaction\">")
                || text.starts_with("<codex_internal_context source=\"goal_objective\">")
            {
                Kind::CompactionArtifact
            } else {
                Kind::UserMessage
            }
        }
        _ => Kind::Conversation,
    }
}

/// Sizes that bound the rebuilt history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionBudget {
    /// Bytes kept of the latest user message (and of the latest goal message after it).
    pub user_message_bytes: usize,
    /// Bytes of recent tool calls and outputs kept, in total.
    pub tool_output_bytes: usize,
    /// Bytes kept of one tool output.
    pub per_tool_output_bytes: usize,
    /// The user's goal records kept (newest).
    pub goal_records: usize,
    /// Bytes kept of the summary.
    pub summary_bytes: usize,
}

impl Default for RetentionBudget {
    fn default() -> Self {
        RetentionBudget {
            user_message_bytes: 32 * 1024,
            tool_output_bytes: 8 * 1024,
            per_tool_output_bytes: 3 * 1024,
            goal_records: 8,
            summary_bytes: 64 * 1024,
        }
    }
}

/// The goal as the rebuilt history restates it.
#[derive(Clone, Copy, Debug)]
pub struct GoalObjective<'a> {
    /// The objective, verbatim.
    pub objective: &'a str,
    /// Wire status (`active`, `paused`, …).
    pub status: &'a str,
}

/// The history that replaces `history` after a compaction, in this order: instructions
/// (base instructions, `AGENTS.md`, environment), the user's goal records, the goal objective
/// as an untrusted-data block, the summary, the latest user message, the latest goal message
/// after it, and a record of the most recent tool calls within the budget.
pub fn rebuild_history(
    history: &[ResponseItem],
    summary: &str,
    goal: Option<GoalObjective<'_>>,
    budget: &RetentionBudget,
) -> Vec<ResponseItem> {
    let mut out: Vec<ResponseItem> = history
        .iter()
        .filter(|item| kind(item) == Kind::Instructions)
        .cloned()
        .collect();
    let records: Vec<&ResponseItem> = history
        .iter()
        .filter(|item| kind(item) == Kind::UserGoalRecord)
        .collect();
    let skip = records.len().saturating_sub(budget.goal_records);
    out.extend(records.into_iter().skip(skip).cloned());
    if let Some(goal) = goal {
        out.push(ResponseItem::text_message(
            "user",
            goal_objective_block(goal.objective, goal.status),
        ));
    }
    out.push(ResponseItem::text_message(
        "user",
        summary_bridge(&truncate_middle(summary.trim(), budget.summary_bytes)),
    ));
    let last_user = history
        .iter()
        .rposition(|item| kind(item) == Kind::UserMessage);
    if let Some(index) = last_user
        && let Some(text) = history[index].message_text()
    {
        out.push(ResponseItem::text_message(
            "user",
            truncate_middle(&text, budget.user_message_bytes),
        ));
    }
    let after = last_user.map_or(0, |i| i + 1);
    if let Some(goal_message) = history[after..]
        .iter()
        .rev()
        .find(|item| kind(item) == Kind::GoalInternal)
        .and_then(ResponseItem::message_text)
    {
        out.push(ResponseItem::text_message(
            "user",
            truncate_middle(&goal_message, budget.user_message_bytes),
        ));
    }
    if let Some(calls) = recent_tool_calls(history, budget) {
        out.push(ResponseItem::text_message(
            "user",
            render(TOOL_OUTPUTS, &[("calls", &calls)]),
        ));
    }
    out
}

/// The most recent tool calls with their outputs, rendered oldest first, within the budget.
fn recent_tool_calls(history: &[ResponseItem], budget: &RetentionBudget) -> Option<String> {
    let mut entries = Vec::new();
    let mut used = 0usize;
    for item in history.iter().rev() {
        let (call_id, output) = match item {
            ResponseItem::FunctionCallOutput {
                call_id: Some(call_id),
                output,
                ..
            }
            | ResponseItem::CustomToolCallOutput {
                call_id, output, ..
            } => (call_id, output),
            _ => continue,
        };
        let call = history.iter().find_map(|candidate| match candidate {
            ResponseItem::FunctionCall {
                call_id: id,
                name,
                arguments,
                ..
            } if id == call_id => Some((name.as_str(), arguments.as_str())),
            ResponseItem::CustomToolCall {
                call_id: id,
                name,
                input,
                ..
            } if id == call_id => Some((name.as_str(), input.as_str())),
            _ => None,
        });
        let Some((name, arguments)) = call else {
            continue;
        };
        let entry = format!(
            "<tool_call name=\"{name}\">\n{}\n</tool_call>\n<tool_output>\n{}\n</tool_output>",
            truncate_middle(arguments, 512),
            truncate_middle(output, budget.per_tool_output_bytes)
        );
        if used + entry.len() > budget.tool_output_bytes {
            break;
        }
        used += entry.len();
        entries.push(entry);
    }
    if entries.is_empty() {
        return None;
    }
    entries.reverse();
    Some(entries.join("\n\n"))
}

/// The `input` of the summary request: the history (shortened to `max_tokens` when given) and
/// Quest's hand-off instruction as the last user message.
pub fn summary_request_input(
    history: &[ResponseItem],
    max_tokens: Option<i64>,
) -> Vec<ResponseItem> {
    let prompt = ResponseItem::text_message("user", SUMMARY_PROMPT);
    let mut items = history.to_vec();
    if let Some(max) = max_tokens {
        shrink_to_fit(
            &mut items,
            max.saturating_sub(estimate_tokens(std::slice::from_ref(&prompt))),
        );
    }
    items.push(prompt);
    items
}

/// Shortens a history to at most `max_tokens` (estimated): long tool outputs first, then the
/// oldest conversation items (instructions always stay), keeping every call paired with its
/// output.
pub fn shrink_to_fit(items: &mut Vec<ResponseItem>, max_tokens: i64) {
    if estimate_tokens(items) <= max_tokens {
        return;
    }
    const OUTPUT_CAP: usize = 16 * 1024;
    for item in items.iter_mut() {
        if let ResponseItem::FunctionCallOutput { output, .. }
        | ResponseItem::CustomToolCallOutput { output, .. } = item
            && output.len() > OUTPUT_CAP
        {
            *output = truncate_middle(output, OUTPUT_CAP);
        }
    }
    let mut total = estimate_tokens(items);
    let mut index = 0;
    while total > max_tokens && index < items.len() {
        if kind(&items[index]) == Kind::Instructions {
            index += 1;
            continue;
        }
        total -= estimate_tokens(std::slice::from_ref(&items[index]));
        items.remove(index);
    }
    repair_pairing(items);
}

/// Removes tool outputs whose call is gone and calls whose output is gone (context outputs
/// without a `call_id` stay).
pub fn repair_pairing(items: &mut Vec<ResponseItem>) {
    use std::collections::HashSet;
    let calls: HashSet<String> = items
        .iter()
        .filter_map(|item| match item {
            ResponseItem::FunctionCall { call_id, .. }
            | ResponseItem::CustomToolCall { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .collect();
    let outputs: HashSet<String> = items
        .iter()
        .filter_map(|item| match item {
            ResponseItem::FunctionCallOutput {
                call_id: Some(call_id),
                ..
            }
            | ResponseItem::CustomToolCallOutput { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .collect();
    items.retain(|item| match item {
        ResponseItem::FunctionCall { call_id, .. }
        | ResponseItem::CustomToolCall { call_id, .. } => outputs.contains(call_id),
        ResponseItem::FunctionCallOutput {
            call_id: Some(call_id),
            ..
        }
        | ResponseItem::CustomToolCallOutput { call_id, .. } => calls.contains(call_id),
        _ => true,
    });
}

/// The summary in a summary response: its last assistant message with text.
pub fn summary_text(items: &[ResponseItem]) -> Option<String> {
    items
        .iter()
        .rev()
        .filter(|item| item.role() == Some("assistant"))
        .filter_map(ResponseItem::message_text)
        .map(|text| text.trim().to_string())
        .find(|text| !text.is_empty())
}

/// The bridge message that carries the summary into the new history.
pub fn summary_bridge(summary: &str) -> String {
    render(SUMMARY_BRIDGE, &[("summary", summary)])
}

/// The goal objective as an untrusted-data block.
pub fn goal_objective_block(objective: &str, status: &str) -> String {
    render(
        GOAL_OBJECTIVE,
        &[
            (
                "objective",
                &crate::goal::prompts::escape_objective(objective),
            ),
            ("status", status),
        ],
    )
}

/// The hand-off instruction sent as the last input item of a summary request.
pub fn summary_prompt() -> &'static str {
    SUMMARY_PROMPT
}

/// `text` cut to at most `max` bytes (on character boundaries), keeping its head and tail and
/// saying how much was left out.
pub fn truncate_middle(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let marker_room = 48;
    let keep = max.saturating_sub(marker_room);
    let mut head = keep / 2;
    while head > 0 && !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - (keep - head);
    while tail < text.len() && !text.is_char_boundary(tail) {
        tail += 1;
    }
    let omitted = tail - head;
    format!(
        "{}\n[… {omitted} bytes omitted …]\n{}",
        &text[..head],
        &text[tail..]
    )
}

/// True when a message is text Quest added for the model rather than something the user typed.
pub fn is_internal_message(item: &ResponseItem) -> bool {
    matches!(
        kind(item),
        Kind::Instructions | Kind::UserGoalRecord | Kind::GoalInternal | Kind::CompactionArtifact
    )
}

/// Only text parts: what the history would look like to a reader (for tests and diagnostics).
pub fn text_of(item: &ResponseItem) -> String {
    match item {
        ResponseItem::Message { content, .. } => content
            .iter()
            .filter_map(|part| match part {
                ContentItem::InputText { text } | ContentItem::OutputText { text } => {
                    Some(text.as_str())
                }
                _ => None,
            })
            .collect(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompts;

    fn call(id: &str, cmd: &str) -> ResponseItem {
        ResponseItem::FunctionCall {
            id: Some(format!("fc_{id}")),
            name: "exec_command".into(),
            arguments: format!("{{\"cmd\":\"{cmd}\"}}"),
            call_id: id.into(),
        }
    }

    fn output(id: &str, text: &str) -> ResponseItem {
        ResponseItem::FunctionCallOutput {
            id: None,
            call_id: Some(id.into()),
            name: None,
            namespace: None,
            output: text.into(),
        }
    }

    fn prefix() -> Vec<ResponseItem> {
        vec![
            ResponseItem::text_message("developer", "BASE INSTRUCTIONS"),
            ResponseItem::text_message(
                "user",
                "# AGENTS.md instructions for /w\n\n<INSTRUCTIONS>\nuse tabs\n</INSTRUCTIONS>",
            ),
            ResponseItem::text_message(
                "user",
                prompts::environment_context(
                    std::path::Path::new("/w"),
                    "2026-01-01",
                    &prompts::SandboxContext {
                        mode: "read-only".into(),
                        enforcement: "landlock-abi-7+seccomp".into(),
                        approval_policy: "never".into(),
                        network_access: false,
                        writable_roots: Vec::new(),
                    },
                ),
            ),
        ]
    }

    fn long_history() -> Vec<ResponseItem> {
        let mut h = prefix();
        h.push(ResponseItem::text_message("user", "first request"));
        h.push(ResponseItem::text_message(
            "user",
            crate::goal::prompts::user_set_goal("ship <it>"),
        ));
        for i in 0..40 {
            h.push(call(&format!("c{i}"), &format!("step {i}")));
            h.push(output(
                &format!("c{i}"),
                &format!("output of step {i} {}", "z".repeat(500)),
            ));
            h.push(ResponseItem::text_message("assistant", format!("did {i}")));
        }
        h.push(ResponseItem::text_message("user", "latest request"));
        h.push(ResponseItem::text_message(
            "user",
            "<codex_internal_context source=\"goal\">\ncontinue\n</codex_internal_context>",
        ));
        h.push(call("last", "cargo test"));
        h.push(output("last", "test result: ok"));
        h
    }

    #[test]
    fn known_models_have_windows_and_the_limit_is_ninety_percent() {
        let s = CompactionSettings::resolve("gpt-5.5", None, None);
        assert_eq!(s.context_window, Some(258_400));
        assert_eq!(s.auto_compact_limit, Some(232_560));
        let s = CompactionSettings::resolve("gpt-4o-mini", None, None);
        assert_eq!(s.context_window, Some(128_000));
        // Unknown slug: nothing proactive, reactive compaction only.
        let s = CompactionSettings::resolve("my-local-model", None, None);
        assert_eq!(s, CompactionSettings::default());
        assert!(!s.should_compact(i64::MAX));
        // Configured window, default limit; configured limit wins but never exceeds the window.
        let s = CompactionSettings::resolve("my-local-model", Some(10_000), None);
        assert_eq!(s.auto_compact_limit, Some(9_000));
        let s = CompactionSettings::resolve("gpt-5.5", Some(10_000), Some(4_000));
        assert_eq!(
            (s.context_window, s.auto_compact_limit),
            (Some(10_000), Some(4_000))
        );
        let s = CompactionSettings::resolve("gpt-5.5", Some(10_000), Some(50_000));
        assert_eq!(s.auto_compact_limit, Some(10_000));
        let s = CompactionSettings::resolve("x", None, Some(700));
        assert_eq!(s.auto_compact_limit, Some(700));
        assert!(s.should_compact(700));
        assert!(!s.should_compact(699));
    }

    #[test]
    fn a_window_from_the_provider_completes_unknown_settings_only() {
        let unknown = CompactionSettings::resolve("my-local-model", None, None);
        let s = unknown.with_provider_window(20_000);
        assert_eq!(
            (s.context_window, s.auto_compact_limit),
            (Some(20_000), Some(18_000))
        );
        assert_eq!(s.summary_request_budget(), Some(19_000));
        // A configured limit stays, capped at the window.
        let limited = CompactionSettings::resolve("my-local-model", None, Some(5_000));
        assert_eq!(
            limited.with_provider_window(20_000).auto_compact_limit,
            Some(5_000)
        );
        let too_high = CompactionSettings::resolve("my-local-model", None, Some(50_000));
        assert_eq!(
            too_high.with_provider_window(20_000).auto_compact_limit,
            Some(20_000)
        );
        // Known or configured windows are not overridden; nonsense is ignored.
        let known = CompactionSettings::resolve("gpt-5.5", None, None);
        assert_eq!(known.with_provider_window(20_000), known);
        assert_eq!(unknown.with_provider_window(0), unknown);
    }

    #[test]
    fn tracker_uses_reported_usage_then_estimates_what_was_added() {
        let history = long_history();
        let mut t = ContextTracker::estimated(&history);
        assert_eq!(t.tokens(), estimate_tokens(&history));
        t.on_response(1_000, 200, &history);
        assert_eq!(t.tokens(), 1_200);
        let added = [output("x", &"a".repeat(4_000))];
        t.on_items_added(&added);
        assert_eq!(t.tokens(), 1_200 + estimate_tokens(&added));
        // A new response replaces the estimate with the provider's figure.
        t.on_response(1_500, 10, &history);
        assert_eq!(t.tokens(), 1_510);
        // No usage reported: fall back to estimating the whole history.
        t.on_response(0, 0, &history);
        assert_eq!(t.tokens(), estimate_tokens(&history));
    }

    #[test]
    fn rebuilt_history_keeps_what_must_survive_in_order() {
        let history = long_history();
        let rebuilt = rebuild_history(
            &history,
            "SUMMARY TEXT",
            Some(GoalObjective {
                objective: "ship <it> & more",
                status: "active",
            }),
            &RetentionBudget::default(),
        );
        let texts: Vec<String> = rebuilt.iter().map(text_of).collect();
        assert_eq!(texts[0], "BASE INSTRUCTIONS");
        assert!(texts[1].starts_with("# AGENTS.md"));
        assert!(texts[2].starts_with("<environment_context>"));
        assert!(
            texts[3].contains("User set the goal: \"ship <it>\""),
            "{}",
            texts[3]
        );
        assert!(
            texts[4].contains("<goal_objective>\nship &lt;it&gt; &amp; more\n</goal_objective>")
        );
        assert!(texts[4].contains("status: active"));
        assert!(texts[5].contains("<summary>\nSUMMARY TEXT\n</summary>"));
        assert_eq!(texts[6], "latest request");
        assert!(texts[7].contains("continue"));
        let calls = &texts[8];
        assert!(
            calls.contains("cargo test") && calls.contains("test result: ok"),
            "{calls}"
        );
        // Only recent calls within the budget, oldest first.
        assert!(!calls.contains("step 0\""), "{calls}");
        assert!(calls.find("step 39").unwrap() < calls.find("cargo test").unwrap());
        assert!(calls.len() <= RetentionBudget::default().tool_output_bytes + 1024);
        assert_eq!(rebuilt.len(), 9);
        // The rebuilt history is a fraction of the old one and has no raw tool items.
        assert!(estimate_tokens(&rebuilt) * 3 < estimate_tokens(&history));
        assert!(
            rebuilt
                .iter()
                .all(|i| matches!(i, ResponseItem::Message { .. }))
        );
        assert!(texts.iter().all(|t| !t.contains("{{")));
        assert!(texts.iter().all(|t| !t.contains("first request")));
    }

    #[test]
    fn compacting_twice_replaces_the_old_summary_instead_of_stacking() {
        let budget = RetentionBudget::default();
        let goal = Some(GoalObjective {
            objective: "ship",
            status: "active",
        });
        let once = rebuild_history(&long_history(), "FIRST", goal, &budget);
        let mut grown = once;
        grown.push(call("n", "more"));
        grown.push(output("n", "done"));
        let twice = rebuild_history(&grown, "SECOND", goal, &budget);
        let all: String = twice.iter().map(text_of).collect();
        assert!(all.contains("SECOND") && !all.contains("FIRST"), "{all}");
        assert_eq!(all.matches("<goal_objective>").count(), 1);
        assert_eq!(all.matches("User set the goal").count(), 1);
        assert_eq!(all.matches("BASE INSTRUCTIONS").count(), 1);
        assert!(all.contains("latest request"));
    }

    #[test]
    fn without_goal_or_user_message_only_summary_and_instructions_remain() {
        let mut history = prefix();
        history.push(ResponseItem::text_message("assistant", "hello"));
        let rebuilt = rebuild_history(&history, "S", None, &RetentionBudget::default());
        assert_eq!(rebuilt.len(), 4);
        assert!(text_of(&rebuilt[3]).contains("<summary>\nS\n</summary>"));
    }

    #[test]
    fn huge_user_message_and_summary_are_cut_in_the_middle() {
        let mut history = prefix();
        let big = format!("HEAD{}TAIL", "é".repeat(100_000));
        history.push(ResponseItem::text_message("user", big));
        let rebuilt = rebuild_history(
            &history,
            &"s".repeat(200_000),
            None,
            &RetentionBudget::default(),
        );
        let user = text_of(rebuilt.last().unwrap());
        assert!(user.starts_with("HEAD") && user.ends_with("TAIL"));
        assert!(user.len() <= 32 * 1024 && user.contains("bytes omitted"));
        assert!(text_of(&rebuilt[3]).len() < 70 * 1024);
    }

    #[test]
    fn summary_request_ends_with_the_prompt_and_fits_the_budget() {
        let history = long_history();
        let input = summary_request_input(&history, None);
        assert_eq!(input.len(), history.len() + 1);
        assert_eq!(text_of(input.last().unwrap()), summary_prompt());
        assert!(!summary_prompt().contains("{{"));

        let budget = estimate_tokens(&history) / 3;
        let input = summary_request_input(&history, Some(budget));
        assert!(
            estimate_tokens(&input) <= budget + 10,
            "{}",
            estimate_tokens(&input)
        );
        // Instructions and the newest items stay; the oldest conversation goes.
        assert_eq!(text_of(&input[0]), "BASE INSTRUCTIONS");
        assert!(input.iter().any(|i| text_of(i) == "latest request"));
        assert!(!input.iter().any(|i| text_of(i) == "first request"));
        let mut paired = input.clone();
        repair_pairing(&mut paired);
        assert_eq!(paired, input, "every call keeps its output");
    }

    #[test]
    fn repair_pairing_drops_orphans_but_keeps_context_outputs() {
        let objective = ResponseItem::FunctionCallOutput {
            id: None,
            call_id: None,
            name: Some("goal_objective".into()),
            namespace: Some("agent".into()),
            output: "x".into(),
        };
        let mut items = vec![
            objective.clone(),
            output("gone", "orphan output"),
            call("a", "x"),
            output("a", "ok"),
            call("b", "no output"),
        ];
        repair_pairing(&mut items);
        assert_eq!(items, vec![objective, call("a", "x"), output("a", "ok")]);
    }

    #[test]
    fn summary_is_the_last_assistant_text() {
        let items = vec![
            ResponseItem::text_message("assistant", "draft"),
            ResponseItem::Reasoning {
                id: None,
                summary: vec![],
                content: None,
                encrypted_content: None,
            },
            ResponseItem::text_message("assistant", "  final note \n"),
            ResponseItem::text_message("assistant", "   "),
        ];
        assert_eq!(summary_text(&items).as_deref(), Some("final note"));
        assert_eq!(summary_text(&[]), None);
    }

    #[test]
    fn truncate_middle_respects_char_boundaries_and_limits() {
        assert_eq!(truncate_middle("short", 10), "short");
        for max in [0, 1, 49, 50, 64, 100] {
            let text = "ü".repeat(100);
            let cut = truncate_middle(&text, max);
            assert!(cut.contains("omitted"));
            assert!(cut.len() <= max.max(48) + 48, "{max}: {}", cut.len());
        }
    }

    #[test]
    fn internal_messages_are_recognised() {
        for item in prefix() {
            assert!(is_internal_message(&item));
        }
        assert!(is_internal_message(&ResponseItem::text_message(
            "user",
            summary_bridge("x")
        )));
        assert!(is_internal_message(&ResponseItem::text_message(
            "user",
            goal_objective_block("x", "active")
        )));
        assert!(!is_internal_message(&ResponseItem::text_message(
            "user",
            "fix the bug"
        )));
    }
}
