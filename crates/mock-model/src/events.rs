//! SSE event builders (`ev_*`) and the turning of a [`Step`] into framed bytes.

use serde_json::{Map, Value, json};

use crate::script::{
    CallSpec, CustomCallSpec, End, Frame, MessageSpec, Output, RawItemSpec, ReasoningSpec, Step,
    Usage,
};

/// `response.created` with just the id.
pub fn ev_created(response_id: &str) -> Value {
    json!({"type": "response.created", "response": {"id": response_id}})
}

/// `response.output_item.added` for `item`.
pub fn ev_item_added(output_index: usize, item: Value) -> Value {
    json!({"type": "response.output_item.added", "output_index": output_index, "item": item})
}

/// `response.output_item.done` for `item`.
pub fn ev_item_done(output_index: usize, item: Value) -> Value {
    json!({"type": "response.output_item.done", "output_index": output_index, "item": item})
}

/// `response.output_text.delta`.
pub fn ev_output_text_delta(item_id: Option<&str>, output_index: usize, delta: &str) -> Value {
    let mut event = json!({
        "type": "response.output_text.delta",
        "output_index": output_index,
        "content_index": 0,
        "delta": delta,
    });
    insert_opt(&mut event, "item_id", item_id);
    event
}

/// An assistant message item (`id` may be absent).
pub fn message_item(id: Option<&str>, text: &str) -> Value {
    let mut item = json!({
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    });
    insert_opt(&mut item, "id", id);
    item
}

/// A `function_call` item; `arguments` is the JSON string.
pub fn function_call_item(id: Option<&str>, call_id: &str, name: &str, arguments: &str) -> Value {
    let mut item =
        json!({"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments});
    insert_opt(&mut item, "id", id);
    item
}

/// A `custom_tool_call` item.
pub fn custom_tool_call_item(id: Option<&str>, call_id: &str, name: &str, input: &str) -> Value {
    let mut item =
        json!({"type": "custom_tool_call", "call_id": call_id, "name": name, "input": input});
    insert_opt(&mut item, "id", id);
    item
}

/// A `reasoning` item.
pub fn reasoning_item(
    id: Option<&str>,
    summary: &[String],
    content: Option<&[String]>,
    encrypted_content: Option<&str>,
) -> Value {
    let summary: Vec<Value> = summary
        .iter()
        .map(|t| json!({"type": "summary_text", "text": t}))
        .collect();
    let content = match content {
        Some(parts) => Value::Array(
            parts
                .iter()
                .map(|t| json!({"type": "reasoning_text", "text": t}))
                .collect(),
        ),
        None => Value::Null,
    };
    let mut item = json!({"type": "reasoning", "summary": summary, "content": content});
    insert_opt(&mut item, "id", id);
    insert_opt(&mut item, "encrypted_content", encrypted_content);
    item
}

/// `output_item.done` carrying an assistant message.
pub fn ev_message(id: &str, text: &str) -> Value {
    ev_item_done(0, message_item(Some(id), text))
}

/// `output_item.done` carrying a `function_call`.
pub fn ev_function_call(call_id: &str, name: &str, arguments: &str) -> Value {
    ev_item_done(
        0,
        function_call_item(Some(&format!("fc_{call_id}")), call_id, name, arguments),
    )
}

/// `output_item.done` carrying a `custom_tool_call`.
pub fn ev_custom_tool_call(call_id: &str, name: &str, input: &str) -> Value {
    ev_item_done(
        0,
        custom_tool_call_item(Some(&format!("ctc_{call_id}")), call_id, name, input),
    )
}

/// `output_item.done` carrying a reasoning item with one summary part.
pub fn ev_reasoning(id: &str, summary: &str, encrypted_content: Option<&str>) -> Value {
    ev_item_done(
        0,
        reasoning_item(Some(id), &[summary.to_owned()], None, encrypted_content),
    )
}

/// `response.completed`, with usage when given.
pub fn ev_completed(response_id: &str, usage: Option<&Usage>) -> Value {
    let mut response = json!({"id": response_id});
    if let (Some(usage), Some(map)) = (usage, response.as_object_mut()) {
        map.insert("usage".into(), usage.to_json());
    }
    json!({"type": "response.completed", "response": response})
}

/// `response.failed` with `error {code, type, message}` (absent fields left out).
pub fn ev_failed(
    response_id: &str,
    code: Option<&str>,
    error_type: Option<&str>,
    message: Option<&str>,
) -> Value {
    let mut error = Value::Object(Map::new());
    insert_opt(&mut error, "code", code);
    insert_opt(&mut error, "type", error_type);
    insert_opt(&mut error, "message", message);
    json!({"type": "response.failed", "response": {"id": response_id, "error": error}})
}

/// `response.incomplete` with `incomplete_details.reason`.
pub fn ev_incomplete(response_id: &str, reason: &str) -> Value {
    json!({"type": "response.incomplete", "response": {"id": response_id, "incomplete_details": {"reason": reason}}})
}

/// A top-level `error` event.
pub fn ev_error(code: Option<&str>, message: Option<&str>) -> Value {
    let mut event = json!({"type": "error"});
    insert_opt(&mut event, "code", code);
    insert_opt(&mut event, "message", message);
    event
}

/// Frames events as an SSE body (`event: <type>\ndata: <json>\n\n` each).
pub fn sse(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| frame_text(&Frame::Event(e.clone()), false))
        .collect()
}

/// The frame that must be skipped by a client: its data is not JSON.
pub const GARBAGE_FRAME: &str = "data: {this is not json\n\n";

fn insert_opt(target: &mut Value, key: &str, value: Option<&str>) {
    if let (Some(value), Some(map)) = (value, target.as_object_mut()) {
        map.insert(key.to_owned(), Value::String(value.to_owned()));
    }
}

/// Serializes one frame.
pub(crate) fn frame_text(frame: &Frame, data_only: bool) -> String {
    match frame {
        Frame::Event(value) => match value.get("type").and_then(Value::as_str) {
            Some(kind) if !data_only => format!("event: {kind}\ndata: {value}\n\n"),
            _ => format!("data: {value}\n\n"),
        },
        Frame::Data(value) => format!("data: {value}\n\n"),
        Frame::Raw(text) => text.clone(),
    }
}

/// Splits `text` into at most `n` non-empty pieces of nearly equal length (by characters).
fn split_text(text: &str, n: usize) -> Vec<&str> {
    if n == 0 {
        return Vec::new();
    }
    let boundaries: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let chars = boundaries.len() - 1;
    if chars == 0 {
        return vec![text];
    }
    let n = n.min(chars);
    (0..n)
        .map(|k| &text[boundaries[k * chars / n]..boundaries[(k + 1) * chars / n]])
        .collect()
}

/// The call arguments as the JSON string sent on the wire.
fn arguments_string(arguments: &Value) -> String {
    match arguments {
        Value::String(s) => s.clone(),
        Value::Null => "{}".to_owned(),
        other => other.to_string(),
    }
}

/// All event frames of a streamed step (without the garbage frame), for request number `n`.
pub(crate) fn step_events(step: &Step, n: usize) -> Vec<Frame> {
    if let Some(events) = &step.events {
        return events.clone();
    }
    let response_id = step
        .response_id
        .clone()
        .unwrap_or_else(|| format!("resp_{n}"));
    let mut events = Vec::new();
    if !step.skip_created {
        events.push(ev_created(&response_id));
    }
    for (index, output) in step.output.iter().enumerate() {
        push_output(&mut events, output, n, index);
    }
    match &step.end {
        End::Completed => events.push(ev_completed(&response_id, step.usage.as_ref())),
        End::Failed {
            code,
            error_type,
            message,
        } => events.push(ev_failed(
            &response_id,
            code.as_deref(),
            error_type.as_deref(),
            message.as_deref(),
        )),
        End::Incomplete { reason } => events.push(ev_incomplete(&response_id, reason)),
        End::ErrorEvent { code, message } => {
            events.push(ev_error(code.as_deref(), message.as_deref()))
        }
        End::Eof => {}
    }
    events.into_iter().map(Frame::Event).collect()
}

fn item_id(
    id: &Option<String>,
    no_id: bool,
    prefix: &str,
    n: usize,
    index: usize,
) -> Option<String> {
    if no_id {
        None
    } else {
        Some(
            id.clone()
                .unwrap_or_else(|| format!("{prefix}_{n}_{index}")),
        )
    }
}

fn push_output(events: &mut Vec<Value>, output: &Output, n: usize, index: usize) {
    match output {
        Output::Message(MessageSpec {
            text,
            deltas,
            id,
            no_id,
            no_added,
        }) => {
            let id = item_id(id, *no_id, "msg", n, index);
            if !no_added {
                let mut item = json!({"type": "message", "role": "assistant", "content": []});
                insert_opt(&mut item, "id", id.as_deref());
                events.push(ev_item_added(index, item));
            }
            for piece in split_text(text, *deltas) {
                events.push(ev_output_text_delta(id.as_deref(), index, piece));
            }
            events.push(ev_item_done(index, message_item(id.as_deref(), text)));
        }
        Output::FunctionCall(CallSpec {
            name,
            arguments,
            call_id,
            namespace,
            id,
            no_id,
            no_added,
        }) => {
            let id = item_id(id, *no_id, "fc", n, index);
            let call_id = call_id
                .clone()
                .unwrap_or_else(|| format!("call_{n}_{index}"));
            let mut done =
                function_call_item(id.as_deref(), &call_id, name, &arguments_string(arguments));
            insert_opt(&mut done, "namespace", namespace.as_deref());
            if !no_added {
                let mut added = done.clone();
                if let Some(map) = added.as_object_mut() {
                    map.insert("arguments".into(), Value::String(String::new()));
                }
                events.push(ev_item_added(index, added));
            }
            events.push(ev_item_done(index, done));
        }
        Output::CustomToolCall(CustomCallSpec {
            name,
            input,
            call_id,
            id,
            no_id,
            no_added,
        }) => {
            let id = item_id(id, *no_id, "ctc", n, index);
            let call_id = call_id
                .clone()
                .unwrap_or_else(|| format!("call_{n}_{index}"));
            if !no_added {
                events.push(ev_item_added(
                    index,
                    custom_tool_call_item(id.as_deref(), &call_id, name, ""),
                ));
            }
            events.push(ev_item_done(
                index,
                custom_tool_call_item(id.as_deref(), &call_id, name, input),
            ));
        }
        Output::Reasoning(ReasoningSpec {
            summary,
            content,
            encrypted_content,
            deltas,
            id,
            no_id,
            no_added,
        }) => {
            let id = item_id(id, *no_id, "rs", n, index);
            if !no_added {
                events.push(ev_item_added(
                    index,
                    reasoning_item(id.as_deref(), &[], None, None),
                ));
            }
            if *deltas {
                for (k, part) in summary.iter().enumerate() {
                    let mut added = json!({
                        "type": "response.reasoning_summary_part.added",
                        "output_index": index,
                        "summary_index": k,
                        "part": {"type": "summary_text", "text": ""},
                    });
                    insert_opt(&mut added, "item_id", id.as_deref());
                    events.push(added);
                    let mut delta = json!({
                        "type": "response.reasoning_summary_text.delta",
                        "output_index": index,
                        "summary_index": k,
                        "delta": part,
                    });
                    insert_opt(&mut delta, "item_id", id.as_deref());
                    events.push(delta);
                }
                for (k, part) in content.iter().flatten().enumerate() {
                    let mut delta = json!({
                        "type": "response.reasoning_text.delta",
                        "output_index": index,
                        "content_index": k,
                        "delta": part,
                    });
                    insert_opt(&mut delta, "item_id", id.as_deref());
                    events.push(delta);
                }
            }
            events.push(ev_item_done(
                index,
                reasoning_item(
                    id.as_deref(),
                    summary,
                    content.as_deref(),
                    encrypted_content.as_deref(),
                ),
            ));
        }
        Output::Item(RawItemSpec { item, no_added }) => {
            if !no_added {
                events.push(ev_item_added(index, item.clone()));
            }
            events.push(ev_item_done(index, item.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_text_covers_the_text_in_at_most_n_pieces() {
        assert_eq!(split_text("hello", 2), vec!["he", "llo"]);
        assert_eq!(split_text("héllo wörld", 3).concat(), "héllo wörld");
        assert_eq!(split_text("ab", 5), vec!["a", "b"]);
        assert!(split_text("abc", 0).is_empty());
        assert_eq!(split_text("", 3), vec![""]);
    }

    #[test]
    fn arguments_are_sent_as_a_json_string() {
        assert_eq!(arguments_string(&json!({"a": 1})), r#"{"a":1}"#);
        assert_eq!(
            arguments_string(&json!("{\"raw\": true}")),
            "{\"raw\": true}"
        );
        assert_eq!(arguments_string(&Value::Null), "{}");
    }

    #[test]
    fn data_only_frames_have_no_event_line() {
        let frame = Frame::Event(ev_created("r"));
        assert!(frame_text(&frame, false).starts_with("event: response.created\ndata: {"));
        assert!(frame_text(&frame, true).starts_with("data: {"));
    }
}
