//! The request body. A thread's history is re-sent with every request, so callers may keep it
//! serialized ([`EncodedItems`], one serialization per item for the life of the thread) and a
//! request then copies bytes instead of serializing the whole history again.

use std::sync::Arc;

use quest_protocol::ResponseItem;
use serde_json::Value;

use crate::client::Prompt;

/// Items serialized once, in order, sent at the start of a request's `input` (see
/// [`Prompt::encoded_input`]); [`ResponseItem::Other`] is left out, as in `input`. Cheap to
/// clone: clones share the bytes until one of them is appended to.
#[derive(Clone, Default)]
pub struct EncodedItems {
    /// The items' JSON joined by commas, without the brackets.
    json: Arc<Vec<u8>>,
    /// Items appended, left-out ones included.
    appended: usize,
}

impl EncodedItems {
    /// Nothing encoded yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `items`, encoded.
    pub fn from_items(items: &[ResponseItem]) -> Self {
        let mut encoded = Self::new();
        encoded.extend(items);
        encoded
    }

    /// Appends `item`'s JSON (exactly what serializing it in `input` would write).
    pub fn push(&mut self, item: &ResponseItem) {
        self.appended += 1;
        if matches!(item, ResponseItem::Other) {
            return;
        }
        let json = Arc::make_mut(&mut self.json);
        let start = json.len();
        if start > 0 {
            json.push(b',');
        }
        // Serializing an item into memory cannot fail (no map has non-string keys); should it
        // ever, the item is left out rather than half-written.
        if serde_json::to_writer(&mut *json, item).is_err() {
            json.truncate(start);
        }
    }

    /// Appends every item of `items`, in order.
    pub fn extend<'a>(&mut self, items: impl IntoIterator<Item = &'a ResponseItem>) {
        for item in items {
            self.push(item);
        }
    }

    /// How many items were appended (left-out ones included).
    pub fn len(&self) -> usize {
        self.appended
    }

    /// True when nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.appended == 0
    }

    /// The encoded items joined by commas (no brackets); empty when there are none.
    pub fn as_bytes(&self) -> &[u8] {
        &self.json
    }
}

impl std::fmt::Debug for EncodedItems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedItems")
            .field("items", &self.appended)
            .field("bytes", &self.json.len())
            .finish()
    }
}

/// The fields before `input`.
#[derive(serde::Serialize)]
struct Head<'a> {
    model: &'a str,
}

/// The fields after `input`, in wire order.
#[derive(serde::Serialize)]
struct Tail<'a> {
    tools: &'a [Value],
    tool_choice: &'static str,
    parallel_tool_calls: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<&'a Value>,
    store: bool,
    stream: bool,
    include: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_cache_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_metadata: Option<&'a Value>,
}

/// The JSON body of a request: the prompt (its encoded items, then `input`) plus items already
/// received in this call. The bytes are those of serializing one object with the fields
/// `model`, `input`, `tools`, `tool_choice`, `parallel_tool_calls`, `reasoning`, `store`,
/// `stream`, `include`, `prompt_cache_key`, `client_metadata` in that order (absent options
/// left out).
pub fn request_body(prompt: &Prompt, received: &[ResponseItem]) -> Vec<u8> {
    let head = serde_json::to_vec(&Head {
        model: &prompt.model,
    });
    let tail = serde_json::to_vec(&Tail {
        tools: &prompt.tools,
        tool_choice: "auto",
        parallel_tool_calls: prompt.parallel_tool_calls,
        reasoning: prompt.reasoning.as_ref(),
        store: false,
        stream: true,
        include: ["reasoning.encrypted_content"],
        prompt_cache_key: prompt.prompt_cache_key.as_deref(),
        client_metadata: prompt.client_metadata.as_ref(),
    });
    let (Ok(head), Ok(tail)) = (head, tail) else {
        return Vec::new();
    };
    // `{"model":…}` loses its `}` and `{"tools":…}` its `{`; `"input":[…]` goes between.
    let (Some(head), Some(tail)) = (head.strip_suffix(b"}"), tail.strip_prefix(b"{")) else {
        return Vec::new();
    };
    let encoded = prompt.encoded_input.as_bytes();
    // Rounded up to a power of two: a history's bodies grow a little with every request, and a
    // body of a size the allocator has just seen freed reuses memory that is already mapped
    // instead of mapping (and faulting in) fresh pages every time.
    let capacity = (head.len() + encoded.len() + tail.len() + 4096).next_power_of_two();
    let mut body = Vec::with_capacity(capacity);
    body.extend_from_slice(head);
    body.extend_from_slice(b",\"input\":[");
    body.extend_from_slice(encoded);
    let mut first = encoded.is_empty();
    for item in prompt.input.iter().chain(received) {
        if matches!(item, ResponseItem::Other) {
            continue;
        }
        if !first {
            body.push(b',');
        }
        first = false;
        if serde_json::to_writer(&mut body, item).is_err() {
            return Vec::new();
        }
    }
    body.extend_from_slice(b"],");
    body.extend_from_slice(tail);
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use quest_protocol::{ContentItem, ReasoningSummary};
    use serde_json::json;

    /// The body as one derived struct serializes it: what [`request_body`] must reproduce
    /// byte for byte.
    fn reference_body(
        prompt: &Prompt,
        history: &[ResponseItem],
        received: &[ResponseItem],
    ) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct RequestBody<'a> {
            model: &'a str,
            input: Vec<&'a ResponseItem>,
            tools: &'a [Value],
            tool_choice: &'static str,
            parallel_tool_calls: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            reasoning: Option<&'a Value>,
            store: bool,
            stream: bool,
            include: [&'static str; 1],
            #[serde(skip_serializing_if = "Option::is_none")]
            prompt_cache_key: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            client_metadata: Option<&'a Value>,
        }
        serde_json::to_vec(&RequestBody {
            model: &prompt.model,
            input: history
                .iter()
                .chain(&prompt.input)
                .chain(received)
                .filter(|item| **item != ResponseItem::Other)
                .collect(),
            tools: &prompt.tools,
            tool_choice: "auto",
            parallel_tool_calls: prompt.parallel_tool_calls,
            reasoning: prompt.reasoning.as_ref(),
            store: false,
            stream: true,
            include: ["reasoning.encrypted_content"],
            prompt_cache_key: prompt.prompt_cache_key.as_deref(),
            client_metadata: prompt.client_metadata.as_ref(),
        })
        .unwrap()
    }

    fn sample_items() -> Vec<ResponseItem> {
        vec![
            ResponseItem::text_message("developer", "base \"instructions\"\n\u{1F600} <tag>"),
            ResponseItem::Other,
            ResponseItem::text_message("user", "hi"),
            ResponseItem::Reasoning {
                id: Some("rs_1".into()),
                summary: vec![ReasoningSummary::SummaryText {
                    text: "thinking".into(),
                }],
                content: Some(json!([{"type": "reasoning_text", "text": "raw"}])),
                encrypted_content: Some("opaque==".into()),
            },
            ResponseItem::FunctionCall {
                id: None,
                name: "shell".into(),
                arguments: r#"{"command":["echo","1"]}"#.into(),
                call_id: "call_1".into(),
            },
            ResponseItem::FunctionCallOutput {
                id: None,
                call_id: Some("call_1".into()),
                name: None,
                namespace: None,
                output: "1\n".into(),
            },
            ResponseItem::Message {
                id: Some("msg_1".into()),
                role: "assistant".into(),
                content: vec![
                    ContentItem::OutputText {
                        text: "done".into(),
                    },
                    ContentItem::Other,
                ],
            },
            ResponseItem::Other,
        ]
    }

    #[test]
    fn body_is_byte_identical_to_one_serialized_struct() {
        let items = sample_items();
        let full = Prompt {
            model: "gpt-5.5".into(),
            tools: vec![
                json!({"type": "function", "name": "shell", "parameters": {"b": 1, "a": [true, null]}}),
            ],
            parallel_tool_calls: true,
            reasoning: Some(json!({"effort": "medium", "summary": "auto"})),
            prompt_cache_key: Some("thread".into()),
            client_metadata: Some(
                json!({"thread_id": "thread", "x-codex-turn-metadata": "{\"a\":1}"}),
            ),
            ..Prompt::default()
        };
        let bare = Prompt::default();
        for base in [&full, &bare] {
            // Every split of the items between the encoded prefix, `input` and `received`.
            for encoded in 0..=items.len() {
                for input in encoded..=items.len() {
                    let mut prompt = base.clone();
                    prompt.encoded_input = EncodedItems::from_items(&items[..encoded]);
                    prompt.input = items[encoded..input].to_vec();
                    let received = &items[input..];
                    assert_eq!(
                        String::from_utf8(request_body(&prompt, received)).unwrap(),
                        String::from_utf8(reference_body(&prompt, &items[..encoded], received))
                            .unwrap(),
                        "split at {encoded}/{input}"
                    );
                }
            }
        }
    }

    #[test]
    fn encoded_items_grow_and_share_bytes_until_appended_to() {
        let items = sample_items();
        let mut encoded = EncodedItems::from_items(&items[..3]);
        assert_eq!(encoded.len(), 3);
        let snapshot = encoded.clone();
        encoded.extend(&items[3..]);
        assert_eq!(encoded.len(), items.len());
        assert_eq!(snapshot.len(), 3);
        // The snapshot kept its bytes: the developer and user messages, `Other` left out.
        let parsed: Value =
            serde_json::from_slice(&[b"[", snapshot.as_bytes(), b"]"].concat()).unwrap();
        assert_eq!(parsed.as_array().unwrap().len(), 2);
        assert_eq!(parsed[1]["role"], "user");
        let all: Value =
            serde_json::from_slice(&[b"[", encoded.as_bytes(), b"]"].concat()).unwrap();
        assert_eq!(all.as_array().unwrap().len(), 6);
        assert!(EncodedItems::new().is_empty());
        assert_eq!(EncodedItems::new().as_bytes(), b"");
    }
}
