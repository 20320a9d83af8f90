//! Recorded requests, the call/output pairing check and rule conditions.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::script::{Condition, Step};

/// One request as the server received it.
#[derive(Debug, Clone, Serialize)]
pub struct CapturedRequest {
    /// 0-based arrival order over every request the server got.
    pub index: usize,
    /// HTTP method.
    pub method: String,
    /// Request path, e.g. `/v1/responses`.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Headers, names lower-cased; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON (`null` when it is not JSON).
    pub body: Value,
    /// Body size in bytes.
    pub body_len: usize,
    /// Arrival time, monotonic.
    #[serde(skip)]
    pub received_at: Instant,
    /// Arrival time, Unix milliseconds.
    pub received_at_unix_ms: u64,
    /// Milliseconds since the server started.
    pub elapsed_ms: f64,
    /// What answered: `steps[i]`, `rules[i]` (or the rule name), `default`, or a rejection
    /// (`not_found`, `invalid_json`, `pairing`).
    pub answered_by: String,
    /// The HTTP status answered (a stream is `200`, even when it later fails).
    pub status: u16,
    /// Call ids of tool outputs in `input` that have no earlier matching call.
    pub unpaired_outputs: Vec<String>,
    /// Input tokens the simulated context counted for this request (with `Script::context`).
    pub input_tokens: Option<u64>,
    /// Call ids of tool calls in `input` that have no later output (the real API refuses them).
    pub unanswered_calls: Vec<String>,
}

impl CapturedRequest {
    /// A header value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The `input` items (empty when absent).
    pub fn input(&self) -> &[Value] {
        self.body
            .get("input")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The last `input` item.
    pub fn last_input_item(&self) -> Option<&Value> {
        self.input().last()
    }

    /// The tool output item (`function_call_output` or `custom_tool_call_output`) for `call_id`.
    pub fn function_call_output(&self, call_id: &str) -> Option<&Value> {
        self.input().iter().find(|item| {
            is_output(item) && item.get("call_id").and_then(Value::as_str) == Some(call_id)
        })
    }

    /// Names of the tools offered in `tools`.
    pub fn tool_names(&self) -> Vec<String> {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t.get("name").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `input` items decoded as Quest's [`quest_protocol::ResponseItem`]s (fails on the
    /// first item that does not decode).
    pub fn typed_input(&self) -> Result<Vec<quest_protocol::ResponseItem>, serde_json::Error> {
        self.input()
            .iter()
            .map(|item| serde_json::from_value(item.clone()))
            .collect()
    }

    /// Input items of this `type` (a message without `type` counts as `message`).
    pub fn items_of_type(&self, item_type: &str) -> Vec<&Value> {
        self.input()
            .iter()
            .filter(|item| item_type_of(item) == item_type)
            .collect()
    }
}

/// The `type` of an input item (`message` when only a `role` is present).
pub(crate) fn item_type_of(item: &Value) -> &str {
    match item.get("type").and_then(Value::as_str) {
        Some(t) => t,
        None if item.get("role").is_some() => "message",
        None => "",
    }
}

fn is_output(item: &Value) -> bool {
    item_type_of(item).ends_with("_output")
}

/// Call ids of tool calls (`function_call`, `custom_tool_call`) in `input` without a later output
/// carrying the same `call_id`, in call order. The Responses API answers 400 to such a request.
pub fn unanswered_calls(body: &Value) -> Vec<String> {
    let Some(input) = body.get("input").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut open: Vec<&str> = Vec::new();
    for item in input {
        let Some(call_id) = item.get("call_id").and_then(Value::as_str) else {
            continue;
        };
        if is_output(item) {
            open.retain(|id| *id != call_id);
        } else if item_type_of(item).ends_with("_call") {
            open.push(call_id);
        }
    }
    open.into_iter().map(str::to_owned).collect()
}

/// Call ids of tool outputs in `input` without an earlier call carrying the same `call_id`.
/// Outputs without a `call_id` (e.g. the goal objective item) are accepted.
pub fn unpaired_outputs(body: &Value) -> Vec<String> {
    let Some(input) = body.get("input").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut calls = HashSet::new();
    let mut unpaired = Vec::new();
    for item in input {
        let Some(call_id) = item.get("call_id").and_then(Value::as_str) else {
            continue;
        };
        if is_output(item) {
            if !calls.contains(call_id) {
                unpaired.push(call_id.to_owned());
            }
        } else {
            calls.insert(call_id);
        }
    }
    unpaired
}

/// Text of a message item (string content or the `text` of its parts).
fn message_text(item: &Value) -> String {
    match item.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// Text of a tool output (string `output`, or the text parts of an array output).
fn output_text(item: &Value) -> String {
    match item.get("output") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// What a request looks like to rules and templates.
pub(crate) struct RequestView<'a> {
    pub(crate) number: usize,
    pub(crate) body: &'a Value,
    pub(crate) headers: &'a BTreeMap<String, String>,
}

impl RequestView<'_> {
    fn input(&self) -> &[Value] {
        self.body
            .get("input")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    fn last_call(&self) -> Option<&Value> {
        self.input()
            .iter()
            .rev()
            .find(|item| item.get("call_id").is_some() && !is_output(item))
    }

    fn last_output(&self) -> Option<&Value> {
        self.input().iter().rev().find(|item| is_output(item))
    }

    /// `request_kind` of the JSON `x-codex-turn-metadata` header.
    fn request_kind(&self) -> Option<String> {
        let metadata = self.headers.get("x-codex-turn-metadata")?;
        let value: Value = serde_json::from_str(metadata).ok()?;
        value.get("request_kind")?.as_str().map(str::to_owned)
    }

    /// Whether `condition` holds for this request.
    pub(crate) fn matches(&self, condition: &Condition) -> bool {
        let Condition {
            last_item_type,
            last_role,
            input_contains,
            last_user_text_contains,
            last_output_contains,
            last_call_name,
            has_tool,
            min_request,
            max_request,
            header,
            request_kind,
            any,
            not,
        } = condition;
        let last = self.input().last();
        let text_of_last_user = || {
            self.input()
                .iter()
                .rev()
                .find(|i| i.get("role").and_then(Value::as_str) == Some("user"))
                .map(message_text)
                .unwrap_or_default()
        };
        let input_has = |text: &str| {
            self.input()
                .iter()
                .any(|i| message_text(i).contains(text) || output_text(i).contains(text))
                || self
                    .body
                    .get("input")
                    .map(Value::to_string)
                    .unwrap_or_default()
                    .contains(text)
        };
        let offers = |name: &str| {
            self.body
                .get("tools")
                .and_then(Value::as_array)
                .is_some_and(|tools| {
                    tools
                        .iter()
                        .any(|t| t.get("name").and_then(Value::as_str) == Some(name))
                })
        };
        last_item_type
            .as_deref()
            .is_none_or(|w| last.map(item_type_of) == Some(w))
            && last_role
                .as_deref()
                .is_none_or(|w| last.and_then(|i| i.get("role")).and_then(Value::as_str) == Some(w))
            && input_contains.as_deref().is_none_or(input_has)
            && last_user_text_contains
                .as_deref()
                .is_none_or(|t| text_of_last_user().contains(t))
            && last_output_contains.as_deref().is_none_or(|t| {
                self.last_output()
                    .map(output_text)
                    .unwrap_or_default()
                    .contains(t)
            })
            && last_call_name.as_deref().is_none_or(|w| {
                self.last_call()
                    .and_then(|c| c.get("name"))
                    .and_then(Value::as_str)
                    == Some(w)
            })
            && has_tool.as_deref().is_none_or(offers)
            && min_request.is_none_or(|min| self.number >= min)
            && max_request.is_none_or(|max| self.number <= max)
            && header.as_ref().is_none_or(|headers| {
                headers.iter().all(|(name, value)| {
                    self.headers.get(&name.to_ascii_lowercase()) == Some(value)
                })
            })
            && request_kind
                .as_deref()
                .is_none_or(|kind| self.request_kind().as_deref() == Some(kind))
            && any
                .as_ref()
                .is_none_or(|any| any.iter().any(|c| self.matches(c)))
            && not.as_ref().is_none_or(|not| !self.matches(not))
    }

    /// `step` with the template placeholders in its strings replaced.
    pub(crate) fn render(&self, step: &Step, match_number: usize) -> Step {
        let Ok(mut value) = serde_json::to_value(step) else {
            return step.clone();
        };
        if !has_placeholder(&value) {
            return step.clone();
        }
        let last_call_id = self
            .last_call()
            .and_then(|c| c.get("call_id"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let last_output = self.last_output().map(output_text).unwrap_or_default();
        let pairs = [
            ("{n}", self.number.to_string()),
            ("{match}", match_number.to_string()),
            ("{last_call_id}", last_call_id),
            ("{last_output}", last_output),
        ];
        replace_strings(&mut value, &pairs);
        serde_json::from_value(value).unwrap_or_else(|_| step.clone())
    }
}

fn has_placeholder(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('{') && s.contains('}'),
        Value::Array(items) => items.iter().any(has_placeholder),
        Value::Object(map) => map.values().any(has_placeholder),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn replace_strings(value: &mut Value, pairs: &[(&str, String)]) {
    match value {
        Value::String(s) => {
            for (token, replacement) in pairs {
                if s.contains(token) {
                    *s = s.replace(token, replacement);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| replace_strings(v, pairs)),
        Value::Object(map) => map.values_mut().for_each(|v| replace_strings(v, pairs)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn outputs_need_an_earlier_call_unless_they_have_no_call_id() {
        let body = json!({"input": [
            {"type": "function_call_output", "name": "goal_objective", "output": "x"},
            {"type": "function_call", "call_id": "a", "name": "t", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "a", "output": "ok"},
            {"type": "custom_tool_call_output", "call_id": "b", "output": "ok"},
            {"type": "custom_tool_call", "call_id": "b", "name": "apply_patch", "input": ""},
        ]});
        assert_eq!(unpaired_outputs(&body), vec!["b".to_owned()]);
        // `b`'s output came before the call, so the call itself is unanswered.
        assert_eq!(unanswered_calls(&body), vec!["b".to_owned()]);
        let interrupted = json!({"input": [
            {"type": "function_call", "call_id": "c1", "name": "t", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "t", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c2", "output": "ok"},
            {"type": "message", "role": "user", "content": []},
        ]});
        assert_eq!(unanswered_calls(&interrupted), vec!["c1".to_owned()]);
    }

    #[test]
    fn conditions_combine() {
        let headers = BTreeMap::new();
        let body = json!({"input": [
            {"role": "user", "content": [{"type": "input_text", "text": "please build"}]},
            {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "exit 0"},
        ], "tools": [{"type": "function", "name": "update_goal"}]});
        let view = RequestView {
            number: 3,
            body: &body,
            headers: &headers,
        };
        assert!(view.matches(&Condition::last_item_type("function_call_output")));
        assert!(!view.matches(&Condition::last_item_type("message")));
        assert!(view.matches(&Condition::last_user_text_contains("build")));
        assert!(view.matches(&Condition::last_output_contains("exit 0")));
        assert!(view.matches(&Condition {
            last_call_name: Some("exec_command".into()),
            ..Condition::default()
        }));
        assert!(view.matches(&Condition {
            has_tool: Some("update_goal".into()),
            ..Condition::default()
        }));
        assert!(!view.matches(&Condition::requests(4, 10)));
        let not = Condition {
            not: Some(Box::new(Condition::input_contains("build"))),
            ..Condition::default()
        };
        assert!(!view.matches(&not));
        let any = Condition {
            any: Some(vec![
                Condition::input_contains("nope"),
                Condition::input_contains("please"),
            ]),
            ..Condition::default()
        };
        assert!(view.matches(&any));
    }

    #[test]
    fn condition_builders_combine_with_and_and_negate() {
        let mut headers = BTreeMap::new();
        headers.insert("x-codex-turn-state".to_owned(), "ts-1".to_owned());
        let body = json!({"input": [
            {"type": "function_call", "call_id": "c1", "name": "update_goal", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        ]});
        let view = RequestView {
            number: 2,
            body: &body,
            headers: &headers,
        };
        let after_goal = Condition::last_call_name("update_goal")
            .and(Condition::last_item_type("function_call_output"));
        assert!(view.matches(&after_goal));
        assert!(!view.matches(&after_goal.clone().negate()));
        assert!(!view.matches(&after_goal.and(Condition::has_tool("exec_command"))));
        assert!(view.matches(&Condition::header("X-Codex-Turn-State", "ts-1")));
        assert!(!view.matches(&Condition::header("x-codex-turn-state", "other")));
        let both_nots = Condition::input_contains("zzz")
            .negate()
            .and(Condition::input_contains("ok").negate());
        assert!(!view.matches(&both_nots));
    }

    #[test]
    fn templates_fill_request_number_and_last_call() {
        let headers = BTreeMap::new();
        let body = json!({"input": [
            {"type": "function_call", "call_id": "c9", "name": "t", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c9", "output": "said \"hi\""},
        ]});
        let view = RequestView {
            number: 7,
            body: &body,
            headers: &headers,
        };
        let step = Step::function_call(
            "exec_command",
            json!({"cmd": "echo {n} {match} {last_output}"}),
        )
        .with_output(crate::Output::message("after {last_call_id}"));
        let rendered = view.render(&step, 2);
        let expected = Step::function_call("exec_command", json!({"cmd": "echo 7 2 said \"hi\""}))
            .with_output(crate::Output::message("after c9"));
        assert_eq!(rendered, expected);
    }
}
