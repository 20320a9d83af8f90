//! Server-sent events: a pure, chunk-fed frame decoder ([`SseDecoder`]) and the mapping of one
//! frame's JSON `data` to a typed Responses API event ([`decode_event`]).
//!
//! Both are synchronous and allocation-light so the network loop, the property tests and the
//! benchmarks drive exactly the same code. Framing follows the SSE rules (LF, CR or CRLF line
//! ends, an optional BOM, comments, multi-line `data`), and never fails: malformed input yields
//! fewer frames, never a panic.

use quest_protocol::{ResponseItem, TokenUsage};
use serde::Deserialize;

/// One dispatched SSE event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseFrame {
    /// The `event:` field, if the frame had one (Responses dispatch ignores it).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental SSE decoder: feed it byte chunks split anywhere, collect complete frames.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes of an unfinished line.
    partial: Vec<u8>,
    /// The previous chunk ended in `\r`; a leading `\n` of the next one belongs to it.
    skip_lf: bool,
    /// Whether the stream start (and a possible BOM) has been handled.
    started: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Index of the first `\n` or `\r`.
fn find_line_end(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n' || b == b'\r')
}

impl SseDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes `chunk` and appends every frame it completes to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseFrame>) {
        if !self.started {
            // Wait until a possible BOM is complete before deciding.
            let mut head = std::mem::take(&mut self.partial);
            head.extend_from_slice(chunk);
            if head.len() < BOM.len() && BOM.starts_with(&head) {
                self.partial = head;
                return;
            }
            self.started = true;
            let body = head.strip_prefix(BOM).unwrap_or(&head);
            self.process(body, out);
            return;
        }
        if self.partial.is_empty() {
            self.process(chunk, out);
            return;
        }
        // An unfinished line is pending (so no `\r` is, either): complete it from this chunk
        // without re-scanning or re-copying what is already buffered.
        match find_line_end(chunk) {
            None => self.partial.extend_from_slice(chunk),
            Some(pos) => {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&chunk[..pos]);
                let rest = self.after_line_end(chunk, pos);
                self.line(&line, out);
                line.clear();
                self.partial = line;
                self.process(rest, out);
            }
        }
    }

    /// The bytes after the line terminator at `pos`; notes a `\r` that may pair with a `\n` in
    /// the next chunk.
    fn after_line_end<'a>(&mut self, bytes: &'a [u8], pos: usize) -> &'a [u8] {
        let after = &bytes[pos + 1..];
        if bytes[pos] != b'\r' {
            return after;
        }
        match after.first() {
            Some(b'\n') => &after[1..],
            Some(_) => after,
            None => {
                self.skip_lf = true;
                after
            }
        }
    }

    /// Ends the stream. Per the SSE rules an event without its terminating blank line is
    /// discarded, so this only resets the decoder.
    pub fn finish(&mut self) {
        *self = Self::default();
    }

    /// Number of bytes held for an unfinished line.
    pub fn buffered_len(&self) -> usize {
        self.partial.len()
    }

    fn process(&mut self, bytes: &[u8], out: &mut Vec<SseFrame>) {
        let mut rest = bytes;
        if self.skip_lf && !rest.is_empty() {
            if let Some(r) = rest.strip_prefix(b"\n") {
                rest = r;
            }
            self.skip_lf = false;
        }
        while let Some(pos) = find_line_end(rest) {
            let line = &rest[..pos];
            rest = self.after_line_end(rest, pos);
            self.line(line, out);
        }
        self.partial.extend_from_slice(rest);
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseFrame>) {
        if line.is_empty() {
            if self.has_data {
                out.push(SseFrame {
                    event: self.event.take(),
                    data: std::mem::take(&mut self.data),
                });
            }
            self.event = None;
            self.data.clear();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }
}

/// A Responses API stream event, decoded from one frame's `data`.
#[derive(Clone, Debug, PartialEq)]
pub enum WireEvent {
    /// `response.created`.
    Created {
        /// `response.id` (empty when absent).
        response_id: String,
    },
    /// `response.output_item.added`.
    OutputItemAdded(ResponseItem),
    /// `response.output_text.delta`.
    OutputTextDelta(String),
    /// `response.reasoning_summary_text.delta`.
    ReasoningSummaryDelta(String),
    /// `response.reasoning_text.delta` (raw reasoning).
    ReasoningTextDelta(String),
    /// `response.output_item.done`: the authoritative item.
    OutputItemDone(ResponseItem),
    /// `response.completed`; usage is all zeros when absent.
    Completed {
        /// `response.id`.
        response_id: String,
        /// Mapped `response.usage`.
        usage: TokenUsage,
    },
    /// `response.failed` with its `response.error`.
    Failed {
        /// `error.code`.
        code: Option<String>,
        /// `error.type`.
        error_type: Option<String>,
        /// `error.message`.
        message: Option<String>,
    },
    /// `response.incomplete` with `incomplete_details.reason`.
    Incomplete {
        /// Why the response stopped, e.g. `max_output_tokens`.
        reason: Option<String>,
    },
    /// A known event that carries nothing Quest uses, an unknown type, or the top-level `error`
    /// event (which Codex ignores as well).
    Ignored,
    /// `data` that is not a JSON event object; skipped.
    Unparseable,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    response: Option<RawResponse>,
    #[serde(default)]
    item: Option<ResponseItem>,
    #[serde(default)]
    delta: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawResponse {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    error: Option<RawError>,
    #[serde(default)]
    incomplete_details: Option<RawIncomplete>,
}

#[derive(Deserialize, Default)]
struct RawUsage {
    #[serde(default)]
    input_tokens: i64,
    #[serde(default)]
    input_tokens_details: Option<RawInputDetails>,
    #[serde(default)]
    output_tokens: i64,
    #[serde(default)]
    output_tokens_details: Option<RawOutputDetails>,
    #[serde(default)]
    total_tokens: i64,
}

#[derive(Deserialize, Default)]
struct RawInputDetails {
    #[serde(default)]
    cached_tokens: i64,
}

#[derive(Deserialize, Default)]
struct RawOutputDetails {
    #[serde(default)]
    reasoning_tokens: i64,
}

#[derive(Deserialize, Default)]
struct RawError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawIncomplete {
    #[serde(default)]
    reason: Option<String>,
}

impl From<RawUsage> for TokenUsage {
    fn from(raw: RawUsage) -> Self {
        TokenUsage {
            input_tokens: raw.input_tokens,
            cached_input_tokens: raw.input_tokens_details.map_or(0, |d| d.cached_tokens),
            output_tokens: raw.output_tokens,
            reasoning_output_tokens: raw.output_tokens_details.map_or(0, |d| d.reasoning_tokens),
            total_tokens: raw.total_tokens,
        }
    }
}

/// Decodes one frame's `data` (dispatch is on the JSON `type`, never on the `event:` line).
pub fn decode_event(data: &str) -> WireEvent {
    let Ok(raw) = serde_json::from_str::<RawEvent>(data) else {
        return WireEvent::Unparseable;
    };
    let response_id =
        |r: &Option<RawResponse>| r.as_ref().and_then(|r| r.id.clone()).unwrap_or_default();
    match raw.kind.as_str() {
        "response.created" => WireEvent::Created {
            response_id: response_id(&raw.response),
        },
        "response.output_item.added" => raw
            .item
            .map_or(WireEvent::Unparseable, WireEvent::OutputItemAdded),
        "response.output_item.done" => raw
            .item
            .map_or(WireEvent::Unparseable, WireEvent::OutputItemDone),
        "response.output_text.delta" => raw
            .delta
            .map_or(WireEvent::Unparseable, WireEvent::OutputTextDelta),
        "response.reasoning_summary_text.delta" => raw
            .delta
            .map_or(WireEvent::Unparseable, WireEvent::ReasoningSummaryDelta),
        "response.reasoning_text.delta" => raw
            .delta
            .map_or(WireEvent::Unparseable, WireEvent::ReasoningTextDelta),
        "response.completed" => {
            let response = raw.response.unwrap_or_default();
            WireEvent::Completed {
                response_id: response.id.unwrap_or_default(),
                usage: response.usage.map(TokenUsage::from).unwrap_or_default(),
            }
        }
        "response.failed" => {
            let error = raw.response.and_then(|r| r.error).unwrap_or_default();
            WireEvent::Failed {
                code: error.code,
                error_type: error.kind,
                message: error.message,
            }
        }
        "response.incomplete" => WireEvent::Incomplete {
            reason: raw
                .response
                .and_then(|r| r.incomplete_details)
                .and_then(|d| d.reason),
        },
        _ => WireEvent::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<SseFrame> {
        let mut decoder = SseDecoder::new();
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, &mut out);
        }
        out
    }

    const MINIMAL: &str = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\"}}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hello\"}\n\n\
data: {\"type\":\"response.output_item.done\",\"item\":{\"type\":\"message\",\"role\":\"assistant\",\"id\":\"msg_1\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hello\",\"annotations\":[]}]}}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"usage\":{\"input_tokens\":1200,\"input_tokens_details\":{\"cached_tokens\":1000},\"output_tokens\":7,\"output_tokens_details\":{\"reasoning_tokens\":2},\"total_tokens\":1207}}}\n\n";

    #[test]
    fn spec_minimal_stream_decodes() {
        let frames = decode_all(&[MINIMAL.as_bytes()]);
        let events: Vec<_> = frames.iter().map(|f| decode_event(&f.data)).collect();
        assert_eq!(events.len(), 4);
        assert_eq!(
            events[0],
            WireEvent::Created {
                response_id: "resp_1".into()
            }
        );
        assert_eq!(events[1], WireEvent::OutputTextDelta("Hello".into()));
        assert_eq!(
            events[2],
            WireEvent::OutputItemDone(ResponseItem::Message {
                id: Some("msg_1".into()),
                role: "assistant".into(),
                content: vec![quest_protocol::ContentItem::OutputText {
                    text: "Hello".into()
                }],
            })
        );
        assert_eq!(
            events[3],
            WireEvent::Completed {
                response_id: "resp_1".into(),
                usage: TokenUsage {
                    input_tokens: 1200,
                    cached_input_tokens: 1000,
                    output_tokens: 7,
                    reasoning_output_tokens: 2,
                    total_tokens: 1207,
                },
            }
        );
        assert_eq!(frames[2].event, None);
        assert_eq!(frames[3].event.as_deref(), Some("response.completed"));
    }

    #[test]
    fn crlf_cr_bom_comments_and_multiline_data() {
        let input = b"\xEF\xBB\xBF: comment\r\ndata: a\r\ndata:b\r\rdata\revent: x\n\n";
        let frames = decode_all(&[input]);
        assert_eq!(
            frames,
            vec![
                SseFrame {
                    event: None,
                    data: "a\nb".into()
                },
                SseFrame {
                    event: Some("x".into()),
                    data: String::new()
                },
            ]
        );
    }

    #[test]
    fn unfinished_event_is_not_dispatched() {
        let mut decoder = SseDecoder::new();
        let mut out = Vec::new();
        decoder.feed(b"data: {\"type\":\"response.completed\"}\n", &mut out);
        assert!(out.is_empty());
        decoder.finish();
        decoder.feed(b"\n", &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn completed_without_usage_is_zero_and_failed_carries_error() {
        assert_eq!(
            decode_event(r#"{"type":"response.completed","response":{"id":"r1"}}"#),
            WireEvent::Completed {
                response_id: "r1".into(),
                usage: TokenUsage::default()
            }
        );
        assert_eq!(
            decode_event(
                r#"{"type":"response.failed","response":{"error":{"code":"server_error","message":"boom"}}}"#
            ),
            WireEvent::Failed {
                code: Some("server_error".into()),
                error_type: None,
                message: Some("boom".into())
            }
        );
        assert_eq!(
            decode_event(
                r#"{"type":"response.incomplete","response":{"incomplete_details":{"reason":"max_output_tokens"}}}"#
            ),
            WireEvent::Incomplete {
                reason: Some("max_output_tokens".into())
            }
        );
        assert_eq!(decode_event("{not json"), WireEvent::Unparseable);
        assert_eq!(
            decode_event(r#"{"type":"error","message":"x"}"#),
            WireEvent::Ignored
        );
        assert_eq!(
            decode_event(r#"{"type":"response.in_progress"}"#),
            WireEvent::Ignored
        );
    }

    fn event_json() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9 éü€\\n\"]{0,40}".prop_map(|d| serde_json::json!({
                "type": "response.output_text.delta", "delta": d
            })
            .to_string()),
            "[a-z_0-9]{1,12}".prop_map(|id| serde_json::json!({
                "type": "response.created", "response": {"id": id}
            })
            .to_string()),
            (0i64..100_000, 0i64..1000).prop_map(|(i, o)| serde_json::json!({
                "type": "response.completed",
                "response": {"id": "r", "usage": {"input_tokens": i, "output_tokens": o, "total_tokens": i + o}}
            })
            .to_string()),
            "[a-z ]{0,20}".prop_map(|a| serde_json::json!({
                "type": "response.output_item.done",
                "item": {"type": "function_call", "name": "f", "call_id": "c", "arguments": a}
            })
            .to_string()),
        ]
    }

    fn render(events: &[(String, bool, u8)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (json, with_event_line, eol) in events {
            let eol: &[u8] = match eol % 3 {
                0 => b"\n",
                1 => b"\r\n",
                _ => b"\r",
            };
            if *with_event_line {
                out.extend_from_slice(b"event: ignored.name");
                out.extend_from_slice(eol);
            }
            out.extend_from_slice(b": keep-alive");
            out.extend_from_slice(eol);
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(json.as_bytes());
            out.extend_from_slice(eol);
            out.extend_from_slice(eol);
        }
        out
    }

    fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in points {
            chunks.push(bytes[start..p].to_vec());
            start = p;
        }
        chunks.push(bytes[start..].to_vec());
        chunks
    }

    proptest! {
        #[test]
        fn well_formed_streams_decode_identically_however_split(
            events in prop::collection::vec((event_json(), any::<bool>(), any::<u8>()), 0..12),
            cuts in prop::collection::vec(any::<usize>(), 0..40),
            bom in any::<bool>(),
        ) {
            let mut bytes = if bom { BOM.to_vec() } else { Vec::new() };
            bytes.extend(render(&events));
            let whole = decode_all(&[&bytes]);
            let chunks = split(&bytes, &cuts);
            let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let pieces = decode_all(&refs);
            prop_assert_eq!(&whole, &pieces);
            prop_assert_eq!(whole.len(), events.len());
            for (frame, (json, _, _)) in whole.iter().zip(&events) {
                prop_assert_eq!(&frame.data, json);
                prop_assert_ne!(decode_event(&frame.data), WireEvent::Unparseable);
            }
        }

        #[test]
        fn garbage_never_panics(
            garbage in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..20),
            frames in prop::collection::vec("(data|event|id|:)?[: ]?[^\\n]{0,30}\\n{0,2}", 0..20),
        ) {
            let mut decoder = SseDecoder::new();
            let mut out = Vec::new();
            for (g, f) in garbage.iter().zip(frames.iter().chain(std::iter::repeat(&String::new()))) {
                decoder.feed(g, &mut out);
                decoder.feed(f.as_bytes(), &mut out);
            }
            for frame in &out {
                let _ = decode_event(&frame.data);
            }
        }

        #[test]
        fn decode_event_never_panics_on_arbitrary_json_like_text(data in "\\{\"type\":\"response\\.[a-z_.]{0,30}\"(,\"[a-z]{1,8}\":[^}]{0,30})?\\}") {
            let _ = decode_event(&data);
        }
    }
}
