//! The request body. A thread's history is re-sent with every request, so callers may keep it
//! serialized ([`EncodedItems`], one serialization per item for the life of the thread), and a
//! request then sends those bytes as they are: a [`RequestBody`] is a list of shared chunks,
//! written to the socket without being copied into one buffer first.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use quest_protocol::ResponseItem;
use serde_json::Value;

use crate::client::Prompt;

/// Items serialized once, in order, sent at the start of a request's `input` (see
/// [`Prompt::encoded_input`]); [`ResponseItem::Other`] is left out, as in `input`. Cheap to
/// clone: clones share the bytes.
///
/// The JSON is kept in runs of consecutive items, each item preceded by a comma. A run is
/// immutable once made; appending makes a new run for the item and merges it with the last
/// runs while the last one is at most twice its size. So every run is more than twice the size
/// of the one after it: a history of any length is a few dozen runs at most, and an item's
/// bytes are copied a logarithmic number of times over the thread's life, not once per request.
#[derive(Clone, Default)]
pub struct EncodedItems {
    runs: Vec<Bytes>,
    /// Bytes in `runs`.
    bytes: usize,
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
        let mut run = vec![b','];
        // Serializing an item into memory cannot fail (no map has non-string keys); should it
        // ever, the item is left out rather than half-written.
        if serde_json::to_writer(&mut run, item).is_err() {
            return;
        }
        self.bytes += run.len();
        while let Some(last) = self.runs.last()
            && last.len() <= 2 * run.len()
        {
            let mut merged = Vec::with_capacity(last.len() + run.len());
            merged.extend_from_slice(last);
            merged.extend_from_slice(&run);
            run = merged;
            self.runs.pop();
        }
        self.runs.push(Bytes::from(run));
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

    /// The encoded items joined by commas (no brackets), as shared chunks in order; none when
    /// there are no items.
    pub fn chunks(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.runs.iter().enumerate().map(|(i, run)| {
            if i == 0 {
                // Only the first item of the array goes without its comma.
                run.slice(1..)
            } else {
                run.clone()
            }
        })
    }

    /// How many runs the items are kept in.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }
}

impl std::fmt::Debug for EncodedItems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedItems")
            .field("items", &self.appended)
            .field("bytes", &self.bytes)
            .field("runs", &self.runs.len())
            .finish()
    }
}

/// A request body: shared chunks sent in order, with a known length (it goes out with
/// `Content-Length`, like a body in one buffer). Cheap to clone, for retries.
#[derive(Clone, Debug, Default)]
pub struct RequestBody {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl RequestBody {
    fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Bytes left to send.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is left to send.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole body in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.len);
        for chunk in &self.chunks {
            all.extend_from_slice(chunk);
        }
        all
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(this.chunks.pop_front().map(|chunk| {
            this.len -= chunk.len();
            Ok(http_body::Frame::data(chunk))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.len as u64)
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
/// left out). The encoded items are shared, not copied.
pub fn request_body(prompt: &Prompt, received: &[ResponseItem]) -> RequestBody {
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
    let (Ok(mut head), Ok(tail)) = (head, tail) else {
        return RequestBody::default();
    };
    // `{"model":…}` loses its `}` and `{"tools":…}` its `{`; `"input":[…]` goes between.
    if head.pop() != Some(b'}') || tail.first() != Some(&b'{') {
        return RequestBody::default();
    }
    let mut body = RequestBody::default();
    head.extend_from_slice(b",\"input\":[");
    body.push(Bytes::from(head));
    let mut first = true;
    for chunk in prompt.encoded_input.chunks() {
        first = false;
        body.push(chunk);
    }
    let mut rest = Vec::new();
    for item in prompt.input.iter().chain(received) {
        if matches!(item, ResponseItem::Other) {
            continue;
        }
        if !first {
            rest.push(b',');
        }
        first = false;
        if serde_json::to_writer(&mut rest, item).is_err() {
            return RequestBody::default();
        }
    }
    rest.extend_from_slice(b"],");
    rest.extend_from_slice(&tail[1..]);
    body.push(Bytes::from(rest));
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
                    let body = request_body(&prompt, received);
                    assert_eq!(body.len(), body.to_vec().len());
                    assert_eq!(
                        String::from_utf8(body.to_vec()).unwrap(),
                        String::from_utf8(reference_body(&prompt, &items[..encoded], received))
                            .unwrap(),
                        "split at {encoded}/{input}"
                    );
                }
            }
        }
    }

    fn joined(encoded: &EncodedItems) -> Vec<u8> {
        let mut all = b"[".to_vec();
        for chunk in encoded.chunks() {
            all.extend_from_slice(&chunk);
        }
        all.push(b']');
        all
    }

    #[test]
    fn encoded_items_grow_and_clones_keep_their_items() {
        let items = sample_items();
        let mut encoded = EncodedItems::from_items(&items[..3]);
        assert_eq!(encoded.len(), 3);
        let snapshot = encoded.clone();
        encoded.extend(&items[3..]);
        assert_eq!(encoded.len(), items.len());
        assert_eq!(snapshot.len(), 3);
        // The snapshot kept its bytes: the developer and user messages, `Other` left out.
        let parsed: Value = serde_json::from_slice(&joined(&snapshot)).unwrap();
        assert_eq!(parsed.as_array().unwrap().len(), 2);
        assert_eq!(parsed[1]["role"], "user");
        let all: Value = serde_json::from_slice(&joined(&encoded)).unwrap();
        assert_eq!(all.as_array().unwrap().len(), 6);
        assert!(EncodedItems::new().is_empty());
        assert_eq!(EncodedItems::new().chunks().count(), 0);
    }

    /// Runs more than double from the last to the first, however the item sizes go (growing,
    /// shrinking, alternating): a long history stays a handful of chunks, and each item is
    /// copied a logarithmic number of times while the history grows.
    #[test]
    fn a_long_history_is_a_few_runs_each_more_than_twice_the_next() {
        for sizes in [
            (1..=2000).collect::<Vec<usize>>(),
            (1..=2000).rev().collect(),
            (0..2000)
                .map(|i| if i % 2 == 0 { 5 } else { 3000 })
                .collect(),
        ] {
            let mut encoded = EncodedItems::new();
            let mut expected = Vec::new();
            for (i, size) in sizes.iter().enumerate() {
                let item = ResponseItem::text_message("user", "x".repeat(*size));
                expected.push(item.clone());
                encoded.push(&item);
                let runs: Vec<usize> = encoded.runs.iter().map(Bytes::len).collect();
                assert!(
                    runs.windows(2).all(|w| w[0] > 2 * w[1]),
                    "after item {i}: {runs:?}"
                );
            }
            assert!(encoded.runs() <= 24, "{} runs", encoded.runs());
            assert_eq!(
                joined(&encoded),
                serde_json::to_vec(&expected).unwrap(),
                "the runs join to the items' array"
            );
        }
    }
}
