//! Server-sent events: a pure, chunk-fed frame decoder ([`SseDecoder`]) and the mapping of one
//! frame's JSON `data` to a typed Responses API event ([`decode_event`]).
//!
//! Both are synchronous and allocation-light so the network loop, the property tests and the
//! benchmarks drive exactly the same code. Framing follows the SSE rules (LF, CR or CRLF line
//! ends, an optional BOM, comments, multi-line `data`), and never fails: malformed input yields
//! fewer frames, never a panic.

use quest_protocol::{ResponseItem, TokenUsage};
use serde::Deserialize;

/// Longest JSON string literal (in bytes of JSON text) an event keeps whole: a longer message
/// text, tool-call argument or any other string keeps its first and last halves around a notice
/// of how much was left out. No model writes this much in one item (1 MiB is ≈ 250k tokens,
/// beyond every model's output limit); only a broken or hostile server does, and this keeps
/// such a response from taking memory in proportion to its size.
pub const MAX_EVENT_STRING_BYTES: usize = 1 << 20;

/// Most `data` one frame may carry after long strings are shortened; what goes beyond is
/// dropped and the frame is marked [`SseFrame::oversized`].
pub const MAX_FRAME_DATA_BYTES: usize = 16 << 20;

/// Longest line kept for a field other than `data` (`event`, `id`, comments); a longer one is
/// ignored.
const MAX_OTHER_LINE: usize = 4096;

/// One dispatched SSE event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseFrame {
    /// The `event:` field, if the frame had one (Responses dispatch ignores it).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`, JSON string literals longer than the decoder's limit
    /// shortened.
    pub data: String,
    /// `data` went beyond [`MAX_FRAME_DATA_BYTES`] and holds only its start.
    pub oversized: bool,
}

/// What the unfinished line is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum LineKind {
    /// Its bytes are buffered until the line ends (or grows long).
    #[default]
    Buffered,
    /// A long `data` line: its value streams into the frame's data as it arrives.
    Data,
    /// A long line of another field: dropped.
    Skipped,
}

/// Incremental SSE decoder: feed it byte chunks split anywhere, collect complete frames.
///
/// Memory is bounded whatever the server sends: a long `data` line streams through a
/// string limiter (see [`MAX_EVENT_STRING_BYTES`]) instead of being buffered, and other long
/// lines are dropped.
#[derive(Debug)]
pub struct SseDecoder {
    /// Bytes of an unfinished line (at most [`MAX_OTHER_LINE`] while [`LineKind::Buffered`]).
    partial: Vec<u8>,
    /// What the unfinished line is.
    kind: LineKind,
    /// The previous chunk ended in `\r`; a leading `\n` of the next one belongs to it.
    skip_lf: bool,
    /// Whether the stream start (and a possible BOM) has been handled.
    started: bool,
    event: Option<String>,
    data: crate::long_strings::StringLimiter,
    has_data: bool,
    max_string: usize,
    max_data: usize,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Index of the first `\n` or `\r`.
fn find_line_end(bytes: &[u8]) -> Option<usize> {
    memchr::memchr2(b'\n', b'\r', bytes)
}

impl SseDecoder {
    /// A decoder at the start of a stream, with the default limits.
    pub fn new() -> Self {
        Self::with_limits(MAX_EVENT_STRING_BYTES, MAX_FRAME_DATA_BYTES)
    }

    /// A decoder that shortens JSON strings longer than `max_string` bytes and keeps at most
    /// `max_data` bytes of one frame's data.
    pub fn with_limits(max_string: usize, max_data: usize) -> Self {
        SseDecoder {
            partial: Vec::new(),
            kind: LineKind::Buffered,
            skip_lf: false,
            started: false,
            event: None,
            data: crate::long_strings::StringLimiter::new(max_string, max_data),
            has_data: false,
            max_string,
            max_data,
        }
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
        if self.partial.is_empty() && self.kind == LineKind::Buffered {
            self.process(chunk, out);
            return;
        }
        // An unfinished line is pending (so no `\r` is, either): complete it from this chunk
        // without re-scanning or re-copying what is already buffered.
        match find_line_end(chunk) {
            None => self.extend_line(chunk),
            Some(pos) => {
                self.extend_line(&chunk[..pos]);
                let rest = self.after_line_end(chunk, pos);
                self.end_line(out);
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
        *self = Self::with_limits(self.max_string, self.max_data);
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
        self.extend_line(rest);
    }

    /// Adds bytes to the unfinished line; once it is long, a `data` line starts streaming and
    /// any other line is dropped.
    fn extend_line(&mut self, bytes: &[u8]) {
        match self.kind {
            LineKind::Data => self.data.push(bytes),
            LineKind::Skipped => {}
            LineKind::Buffered => {
                self.partial.extend_from_slice(bytes);
                if self.partial.len() > MAX_OTHER_LINE {
                    let line = std::mem::take(&mut self.partial);
                    match split_field(&line) {
                        (b"data", value) => {
                            self.start_data();
                            self.data.push(value);
                            self.kind = LineKind::Data;
                        }
                        _ => self.kind = LineKind::Skipped,
                    }
                    self.partial = line;
                    self.partial.clear();
                }
            }
        }
    }

    /// The unfinished line ended.
    fn end_line(&mut self, out: &mut Vec<SseFrame>) {
        match std::mem::take(&mut self.kind) {
            LineKind::Buffered => {
                let line = std::mem::take(&mut self.partial);
                self.line(&line, out);
                self.partial = line;
                self.partial.clear();
            }
            LineKind::Data | LineKind::Skipped => {}
        }
    }

    fn start_data(&mut self) {
        if self.has_data {
            self.data.push(b"\n");
        }
        self.has_data = true;
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseFrame>) {
        if line.is_empty() {
            if self.has_data {
                let (data, oversized) = self.data.take();
                let data = match String::from_utf8(data) {
                    Ok(data) => data,
                    Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
                };
                out.push(SseFrame {
                    event: self.event.take(),
                    data,
                    oversized,
                });
            }
            self.event = None;
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return;
        }
        match split_field(line) {
            (b"data", value) => {
                self.start_data();
                self.data.push(value);
            }
            (b"event", value) if value.len() <= MAX_OTHER_LINE => {
                self.event = Some(String::from_utf8_lossy(value).into_owned());
            }
            _ => {}
        }
    }
}

/// A line's field name and value (one leading space of the value removed).
fn split_field(line: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b':', line) {
        Some(colon) => {
            let value = &line[colon + 1..];
            (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
        }
        None => (line, &b""[..]),
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
    /// A known event whose fields cannot be used (e.g. `response.completed` with a usage count
    /// that is text, or `response.output_item.done` whose item lacks `call_id`).
    Malformed {
        /// The event `type`.
        event: String,
        /// The dotted field and what is wrong with it.
        detail: String,
    },
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

/// The `response` of `response.completed`, reading only what Quest uses.
#[derive(Deserialize, Default)]
#[serde(expecting = "a response object")]
struct RawCompleted {
    #[serde(default, deserialize_with = "lenient_text")]
    id: Option<String>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize, Default)]
#[serde(expecting = "a usage object")]
struct RawUsage {
    #[serde(default, deserialize_with = "token_count")]
    input_tokens: i64,
    #[serde(default)]
    input_tokens_details: Option<RawInputDetails>,
    #[serde(default, deserialize_with = "token_count")]
    output_tokens: i64,
    #[serde(default)]
    output_tokens_details: Option<RawOutputDetails>,
    #[serde(default, deserialize_with = "token_count")]
    total_tokens: i64,
}

#[derive(Deserialize, Default)]
#[serde(expecting = "an object")]
struct RawInputDetails {
    #[serde(default, deserialize_with = "token_count")]
    cached_tokens: i64,
}

#[derive(Deserialize, Default)]
#[serde(expecting = "an object")]
struct RawOutputDetails {
    #[serde(default, deserialize_with = "token_count")]
    reasoning_tokens: i64,
}

#[derive(Deserialize, Default)]
struct RawError {
    #[serde(default, deserialize_with = "lenient_text")]
    code: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "lenient_text")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    message: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawIncomplete {
    #[serde(default, deserialize_with = "lenient_text")]
    reason: Option<String>,
}

/// A token count as providers send it: an integer, an integral float (`5.0`) or `null` (0).
/// Counts beyond `i64` saturate, negative ones count as 0; text, fractions and other types are
/// errors that name the field.
fn token_count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    struct Count;
    impl<'v> serde::de::Visitor<'v> for Count {
        type Value = i64;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a token count (a whole number or null)")
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v.max(0))
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            Ok(i64::try_from(v).unwrap_or(i64::MAX))
        }

        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
            if !v.is_finite() || v.fract() != 0.0 {
                return Err(E::invalid_value(serde::de::Unexpected::Float(v), &self));
            }
            // `as` saturates at the bounds of `i64`.
            Ok((v as i64).max(0))
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<i64, E> {
            Ok(0)
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<i64, E> {
            Ok(0)
        }

        fn visit_some<S: serde::Deserializer<'v>>(self, d: S) -> Result<i64, S::Error> {
            d.deserialize_any(self)
        }
    }
    deserializer.deserialize_any(Count)
}

/// Text of an error field; a number or boolean is taken as its JSON text, anything else is
/// dropped (an error event must not become unreadable because of a field's type).
fn lenient_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(text) => Some(text),
        value @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => {
            Some(value.to_string())
        }
        _ => None,
    })
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

/// Decodes one frame: [`decode_event`] of its `data`, or, for an [`SseFrame::oversized`] frame,
/// [`WireEvent::Malformed`] naming the event (as far as its start tells) and the size limit.
pub fn decode_frame(frame: &SseFrame) -> WireEvent {
    if !frame.oversized {
        return decode_event(&frame.data);
    }
    WireEvent::Malformed {
        event: leading_type(&frame.data).unwrap_or("event").to_string(),
        detail: format!(
            "the event is larger than {} MiB",
            MAX_FRAME_DATA_BYTES >> 20
        ),
    }
}

/// The `type` of a JSON event whose text is cut off, when it appears near the start.
fn leading_type(data: &str) -> Option<&str> {
    let head = data.get(..data.len().min(4096)).unwrap_or(data);
    let after = head.split_once("\"type\"")?.1.trim_start();
    let value = after.strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let end = value.find('"')?;
    Some(&value[..end]).filter(|t| !t.is_empty() && t.len() <= 100)
}

/// Decodes one frame's `data` (dispatch is on the JSON `type`, never on the `event:` line).
///
/// `data` that is not a JSON object with a string `type` is [`WireEvent::Unparseable`] (skipped,
/// as Codex does). A known event whose fields do not fit is decoded as far as it can be: deltas
/// and `output_item.added` (display only) are ignored, error events keep what is readable, and
/// `response.output_item.done` / `response.completed`, which Quest cannot do without, are
/// [`WireEvent::Malformed`] with the field that is wrong.
pub fn decode_event(data: &str) -> WireEvent {
    let raw = match serde_json::from_str::<RawEvent>(data) {
        Ok(raw) => raw,
        Err(_) => return decode_irregular(data),
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
        "response.output_item.done" => match raw.item {
            Some(item) => WireEvent::OutputItemDone(item),
            None => missing_item(),
        },
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

fn missing_item() -> WireEvent {
    WireEvent::Malformed {
        event: "response.output_item.done".to_string(),
        detail: "`item` is missing".to_string(),
    }
}

/// The slow path of [`decode_event`] for `data` the typed decoding rejected: finds out which
/// event it is and which field is wrong.
fn decode_irregular(data: &str) -> WireEvent {
    let Ok(serde_json::Value::Object(mut event)) = serde_json::from_str::<serde_json::Value>(data)
    else {
        return WireEvent::Unparseable;
    };
    let Some(kind) = event.get("type").and_then(serde_json::Value::as_str) else {
        return WireEvent::Unparseable;
    };
    let kind = kind.to_string();
    let malformed = |field: &str, err: serde_path_to_error::Error<serde_json::Error>| {
        let path = err.path().to_string();
        let field = if path == "." {
            field.to_string()
        } else {
            format!("{field}.{path}")
        };
        WireEvent::Malformed {
            event: kind.clone(),
            detail: format!("`{field}`: {}", err.into_inner()),
        }
    };
    let mut take = |field: &str| event.remove(field).unwrap_or(serde_json::Value::Null);
    match kind.as_str() {
        "response.output_item.done" => {
            let item = take("item");
            if item.is_null() {
                return missing_item();
            }
            match serde_path_to_error::deserialize::<_, ResponseItem>(item) {
                Ok(item) => WireEvent::OutputItemDone(item),
                Err(err) => malformed("item", err),
            }
        }
        "response.completed" => {
            let response = match take("response") {
                serde_json::Value::Null => serde_json::Value::Object(Default::default()),
                other => other,
            };
            match serde_path_to_error::deserialize::<_, RawCompleted>(response) {
                Ok(response) => WireEvent::Completed {
                    response_id: response.id.unwrap_or_default(),
                    usage: response.usage.map(TokenUsage::from).unwrap_or_default(),
                },
                Err(err) => malformed("response", err),
            }
        }
        "response.failed" => {
            let error = take("response")
                .get_mut("error")
                .map(serde_json::Value::take)
                .and_then(|error| RawError::deserialize(error).ok())
                .unwrap_or_default();
            WireEvent::Failed {
                code: error.code,
                error_type: error.kind,
                message: error.message,
            }
        }
        "response.incomplete" => WireEvent::Incomplete {
            reason: take("response")
                .get_mut("incomplete_details")
                .map(serde_json::Value::take)
                .and_then(|details| RawIncomplete::deserialize(details).ok())
                .and_then(|details| details.reason),
        },
        "response.created" => WireEvent::Created {
            response_id: take("response")
                .get("id")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string(),
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
                    data: "a\nb".into(),
                    oversized: false,
                },
                SseFrame {
                    event: Some("x".into()),
                    data: String::new(),
                    oversized: false,
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

    fn message_done(text: &str) -> String {
        serde_json::json!({
            "type": "response.output_item.done",
            "item": {"type": "message", "role": "assistant", "id": "m",
                     "content": [{"type": "output_text", "text": text}]},
        })
        .to_string()
    }

    /// Issue 17 item 7: a 20 MB message streams through in bounded memory and arrives with its
    /// first and last 512 KiB around a notice.
    #[test]
    fn huge_message_is_shortened_while_it_streams() {
        let text: String = (0..20_000_000u32)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let body = format!(
            "event: response.output_item.done\ndata: {}\n\n",
            message_done(&text)
        );
        let mut decoder = SseDecoder::new();
        let mut frames = Vec::new();
        let mut most_buffered = 0;
        for chunk in body.as_bytes().chunks(16 * 1024) {
            decoder.feed(chunk, &mut frames);
            most_buffered = most_buffered.max(decoder.buffered_len());
        }
        assert!(most_buffered <= MAX_OTHER_LINE, "{most_buffered}");
        assert_eq!(frames.len(), 1);
        assert!(!frames[0].oversized);
        assert!(frames[0].data.len() < MAX_EVENT_STRING_BYTES + 1024);
        let WireEvent::OutputItemDone(item) = decode_frame(&frames[0]) else {
            panic!("not an item");
        };
        let shortened = item.message_text().unwrap();
        let half = MAX_EVENT_STRING_BYTES / 2;
        let omitted = text.len() - 2 * half;
        let notice =
            format!("\n\n[{omitted} bytes omitted by Quest from the middle of this text]\n\n");
        assert_eq!(
            shortened,
            format!("{}{notice}{}", &text[..half], &text[text.len() - half..])
        );
    }

    #[test]
    fn long_lines_of_other_fields_are_dropped_and_an_oversized_event_is_named() {
        let mut decoder = SseDecoder::with_limits(64, 1000);
        let mut frames = Vec::new();
        let long_event = format!("event: {}\n", "e".repeat(10_000));
        decoder.feed(long_event.as_bytes(), &mut frames);
        decoder.feed(
            format!(": {}\n", "c".repeat(10_000)).as_bytes(),
            &mut frames,
        );
        let numbers = (0..2000)
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let big = format!(
            r#"{{"type":"response.completed","response":{{"id":"r","output":[{numbers}]}}}}"#
        );
        for chunk in format!("data: {big}\n\n").as_bytes().chunks(100) {
            decoder.feed(chunk, &mut frames);
            assert!(decoder.buffered_len() <= MAX_OTHER_LINE);
        }
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].event, None);
        assert!(frames[0].oversized);
        assert_eq!(frames[0].data.len(), 1000);
        assert_eq!(
            decode_frame(&frames[0]),
            WireEvent::Malformed {
                event: "response.completed".into(),
                detail: "the event is larger than 16 MiB".into(),
            }
        );
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

    fn completed_with(usage: &str) -> WireEvent {
        decode_event(&format!(
            r#"{{"type":"response.completed","response":{{"id":"r1","usage":{usage}}}}}"#
        ))
    }

    fn usage(input: i64, cached: i64, output: i64, reasoning: i64, total: i64) -> WireEvent {
        WireEvent::Completed {
            response_id: "r1".into(),
            usage: TokenUsage {
                input_tokens: input,
                cached_input_tokens: cached,
                output_tokens: output,
                reasoning_output_tokens: reasoning,
                total_tokens: total,
            },
        }
    }

    /// Issue 17: what real providers send in `usage` is accepted (it used to make the whole
    /// `response.completed` unparseable, so the stream counted as cut and was retried).
    #[test]
    fn usage_accepts_nulls_integral_floats_and_huge_counts() {
        assert_eq!(
            completed_with(
                r#"{"input_tokens":10,"input_tokens_details":{"cached_tokens":null},"output_tokens":5.0,"output_tokens_details":null,"total_tokens":15}"#
            ),
            usage(10, 0, 5, 0, 15)
        );
        assert_eq!(
            completed_with(
                r#"{"input_tokens":null,"output_tokens":99999999999999999999999,"total_tokens":1e30,"output_tokens_details":{"reasoning_tokens":18446744073709551615}}"#
            ),
            usage(0, 0, i64::MAX, i64::MAX, i64::MAX)
        );
        assert_eq!(
            completed_with(r#"{"input_tokens":-3,"output_tokens":-1e3,"total_tokens":2.0e0}"#),
            usage(0, 0, 0, 0, 2)
        );
        assert_eq!(completed_with("null"), usage(0, 0, 0, 0, 0));
        // A completed event with odd fields Quest does not read is still a completion.
        assert_eq!(
            decode_event(
                r#"{"type":"response.completed","response":{"id":7,"error":"none","usage":{"input_tokens":1}},"item":[1]}"#
            ),
            WireEvent::Completed {
                response_id: "7".into(),
                usage: TokenUsage {
                    input_tokens: 1,
                    ..TokenUsage::default()
                },
            }
        );
    }

    #[test]
    fn malformed_events_name_the_event_and_the_field() {
        let malformed = |data: &str| match decode_event(data) {
            WireEvent::Malformed { event, detail } => format!("{event}: {detail}"),
            other => panic!("expected Malformed for {data}, got {other:?}"),
        };
        assert_eq!(
            malformed(
                r#"{"type":"response.completed","response":{"usage":{"output_tokens":"five"}}}"#
            ),
            "response.completed: `response.usage.output_tokens`: invalid type: string \"five\", expected a token count (a whole number or null)"
        );
        assert_eq!(
            malformed(
                r#"{"type":"response.completed","response":{"usage":{"input_tokens_details":{"cached_tokens":2.5}}}}"#
            ),
            "response.completed: `response.usage.input_tokens_details.cached_tokens`: invalid value: floating point `2.5`, expected a token count (a whole number or null)"
        );
        assert_eq!(
            malformed(r#"{"type":"response.completed","response":{"usage":"lots"}}"#),
            "response.completed: `response.usage`: invalid type: string \"lots\", expected a usage object"
        );
        let missing = malformed(
            r#"{"type":"response.output_item.done","item":{"type":"function_call","name":"f","arguments":"{}"}}"#,
        );
        assert!(
            missing.starts_with("response.output_item.done: `item`")
                && missing.contains("missing field `call_id`"),
            "{missing}"
        );
        assert_eq!(
            malformed(r#"{"type":"response.output_item.done"}"#),
            "response.output_item.done: `item` is missing"
        );
        assert_eq!(
            malformed(r#"{"type":"response.output_item.done","item":null,"delta":7}"#),
            "response.output_item.done: `item` is missing"
        );
    }

    #[test]
    fn irregular_but_harmless_events_are_decoded_or_ignored() {
        // Error fields of other types keep what is readable.
        assert_eq!(
            decode_event(
                r#"{"type":"response.failed","response":{"error":{"code":500,"type":null,"message":"boom","extra":{}}}}"#
            ),
            WireEvent::Failed {
                code: Some("500".into()),
                error_type: None,
                message: Some("boom".into())
            }
        );
        assert_eq!(
            decode_event(r#"{"type":"response.failed","response":"broken"}"#),
            WireEvent::Failed {
                code: None,
                error_type: None,
                message: None
            }
        );
        assert_eq!(
            decode_event(
                r#"{"type":"response.incomplete","response":{"incomplete_details":{"reason":7}}}"#
            ),
            WireEvent::Incomplete {
                reason: Some("7".into())
            }
        );
        // Display-only events with odd fields are skipped, not fatal.
        assert_eq!(
            decode_event(r#"{"type":"response.output_text.delta","delta":5}"#),
            WireEvent::Ignored
        );
        assert_eq!(
            decode_event(
                r#"{"type":"response.output_item.added","item":{"type":"function_call"}}"#
            ),
            WireEvent::Ignored
        );
        assert_eq!(
            decode_event(r#"{"type":"response.created","response":{"id":1}}"#),
            WireEvent::Created {
                response_id: String::new()
            }
        );
        assert_eq!(decode_event(r#"{"type":7}"#), WireEvent::Unparseable);
        assert_eq!(decode_event("[1,2]"), WireEvent::Unparseable);
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
