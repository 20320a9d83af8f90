//! What an MCP tool result becomes for the model.
//!
//! A `tools/call` result has content blocks (`text`, `image`, `audio`, `resource`,
//! `resource_link`), optional `structuredContent` and `isError`. The model gets one text — the
//! text blocks in order, short placeholders for media and links, embedded text resources inline,
//! the structured content as JSON when no text block already carries it, and a first line saying
//! the tool reported an error when `isError` is set — plus the images as separate inputs. Text
//! longer than the cap keeps its head and tail around a notice saying how much was left out, as
//! command output does.
//!
//! The conversion works on the protocol's JSON shape (what `rmcp` serialises), so it does not
//! depend on the SDK's Rust types and takes any server's output without failing.

use std::fmt::Write as _;

use serde_json::Value;

/// A tool call's result as received (the parts Quest uses).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct McpToolOutput {
    /// The content blocks, as the server sent them.
    pub content: Vec<Value>,
    /// `structuredContent`, when present and not null.
    pub structured_content: Option<Value>,
    /// `isError`.
    pub is_error: bool,
}

/// An image for the model (base64 data and its MIME type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelImage {
    /// MIME type, e.g. `image/png`.
    pub mime_type: String,
    /// Base64 data as the server sent it.
    pub data: String,
}

impl ModelImage {
    /// A `data:` URL for an `input_image` item.
    pub fn data_url(&self) -> String {
        format!("data:{};base64,{}", self.mime_type, self.data)
    }
}

/// What the model receives for one call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelOutput {
    /// The text (capped).
    pub text: String,
    /// Images, in content order.
    pub images: Vec<ModelImage>,
    /// Bytes left out of the text by the cap.
    pub truncated_bytes: usize,
}

impl McpToolOutput {
    /// Reads a `CallToolResult` in its JSON form. Missing or malformed fields read as empty.
    pub fn from_json(value: &Value) -> Self {
        McpToolOutput {
            content: value
                .get("content")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            structured_content: value
                .get("structuredContent")
                .filter(|v| !v.is_null())
                .cloned(),
            is_error: value
                .get("isError")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }

    /// A failure that never reached the tool (server down, timeout), shown as an error result.
    pub fn error_text(message: impl Into<String>) -> Self {
        McpToolOutput {
            content: vec![serde_json::json!({"type": "text", "text": message.into()})],
            structured_content: None,
            is_error: true,
        }
    }

    /// The concatenated text blocks (for logs and front-ends).
    pub fn plain_text(&self) -> String {
        self.content
            .iter()
            .filter(|b| block_type(b) == "text")
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// What the model receives, with the text capped at `max_bytes`.
    pub fn to_model(&self, max_bytes: usize) -> ModelOutput {
        let mut parts: Vec<String> = Vec::new();
        let mut images = Vec::new();
        let mut texts: Vec<&str> = Vec::new();
        for block in &self.content {
            let str_field = |key: &str| block.get(key).and_then(Value::as_str).unwrap_or("");
            match block_type(block) {
                "text" => {
                    let text = str_field("text");
                    texts.push(text);
                    parts.push(text.to_string());
                }
                "image" => {
                    let mime_type = str_field("mimeType").to_string();
                    parts.push(format!("[image {}: {mime_type}]", images.len() + 1));
                    images.push(ModelImage {
                        mime_type,
                        data: str_field("data").to_string(),
                    });
                }
                "audio" => parts.push(format!(
                    "[audio: {}, {} bytes of base64 not shown]",
                    str_field("mimeType"),
                    str_field("data").len()
                )),
                "resource" => {
                    let resource = block.get("resource").cloned().unwrap_or(Value::Null);
                    parts.push(resource_text(&resource));
                }
                "resource_link" => {
                    let mut line = format!("[resource link: {}", str_field("uri"));
                    if let Some(name) = block.get("name").and_then(Value::as_str) {
                        let _ = write!(line, " ({name})");
                    }
                    if let Some(description) = block.get("description").and_then(Value::as_str) {
                        let _ = write!(line, " — {description}");
                    }
                    line.push(']');
                    parts.push(line);
                }
                _ => parts.push(block.to_string()),
            }
        }
        if let Some(structured) = &self.structured_content {
            let already_there = texts.iter().any(|t| {
                serde_json::from_str::<Value>(t).is_ok_and(|parsed| &parsed == structured)
            });
            if !already_there {
                let json = structured.to_string();
                if parts.is_empty() {
                    parts.push(json);
                } else {
                    parts.push(format!("Structured content: {json}"));
                }
            }
        }
        let mut text = parts.join("\n");
        if self.is_error {
            text = format!("The tool reported an error:\n{text}");
        }
        let (text, truncated_bytes) = cap_middle(&text, max_bytes);
        ModelOutput {
            text,
            images,
            truncated_bytes,
        }
    }
}

fn block_type(block: &Value) -> &str {
    block.get("type").and_then(Value::as_str).unwrap_or("")
}

/// An embedded resource (`{uri, mimeType, text | blob}`) as text.
pub fn resource_text(resource: &Value) -> String {
    let field = |key: &str| resource.get(key).and_then(Value::as_str);
    let uri = field("uri").unwrap_or("");
    match (field("text"), field("blob")) {
        (Some(text), _) => format!("[resource {uri}]\n{text}"),
        (None, Some(blob)) => format!(
            "[resource {uri}: {}, {} bytes of base64 not shown]",
            field("mimeType").unwrap_or("application/octet-stream"),
            blob.len()
        ),
        (None, None) => format!("[resource {uri}]"),
    }
}

/// Keeps the head and tail of `text` within `max_bytes` (on character boundaries) with a notice
/// in between; returns the text and how many bytes were left out.
pub fn cap_middle(text: &str, max_bytes: usize) -> (String, usize) {
    if text.len() <= max_bytes {
        return (text.to_string(), 0);
    }
    let half = max_bytes / 2;
    let mut head_end = half.min(text.len());
    while !text.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = text.len().saturating_sub(max_bytes - half).max(head_end);
    while !text.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    let omitted = tail_start - head_end;
    let capped = format!(
        "Output truncated: {omitted} bytes omitted from the middle\n{}\n[... {omitted} bytes omitted ...]\n{}",
        &text[..head_end],
        &text[tail_start..]
    );
    (capped, omitted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_blocks_in_order() {
        let out = McpToolOutput::from_json(&json!({
            "content": [{"type": "text", "text": "Echo: hi"}, {"type": "text", "text": "second"}]
        }));
        assert!(!out.is_error);
        assert_eq!(out.to_model(1000).text, "Echo: hi\nsecond");
        assert_eq!(out.plain_text(), "Echo: hi\nsecond");
    }

    #[test]
    fn is_error_is_said_first() {
        let out = McpToolOutput::from_json(&json!({
            "content": [{"type": "text", "text": "bad input"}], "isError": true
        }));
        assert!(out.is_error);
        assert_eq!(
            out.to_model(1000).text,
            "The tool reported an error:\nbad input"
        );
    }

    #[test]
    fn images_become_inputs_with_a_placeholder() {
        let out = McpToolOutput::from_json(&json!({
            "content": [
                {"type": "text", "text": "here"},
                {"type": "image", "data": "iVBOR", "mimeType": "image/png"}
            ]
        }));
        let model = out.to_model(1000);
        assert_eq!(model.text, "here\n[image 1: image/png]");
        assert_eq!(model.images[0].data_url(), "data:image/png;base64,iVBOR");
    }

    #[test]
    fn structured_content_is_added_unless_a_text_block_carries_it() {
        let duplicated = McpToolOutput::from_json(&json!({
            "content": [{"type": "text", "text": "{\"sum\":3}"}],
            "structuredContent": {"sum": 3}
        }));
        assert_eq!(duplicated.to_model(1000).text, "{\"sum\":3}");
        let extra = McpToolOutput::from_json(&json!({
            "content": [{"type": "text", "text": "done"}],
            "structuredContent": {"sum": 3}
        }));
        assert_eq!(
            extra.to_model(1000).text,
            "done\nStructured content: {\"sum\":3}"
        );
        let only =
            McpToolOutput::from_json(&json!({"content": [], "structuredContent": {"a": [1]}}));
        assert_eq!(only.to_model(1000).text, "{\"a\":[1]}");
    }

    #[test]
    fn resources_links_audio_and_unknown_blocks_are_described() {
        let out = McpToolOutput::from_json(&json!({"content": [
            {"type": "resource", "resource": {"uri": "demo://1", "text": "body"}},
            {"type": "resource", "resource": {"uri": "demo://2", "blob": "AAAA", "mimeType": "application/zip"}},
            {"type": "resource_link", "uri": "demo://3", "name": "three", "description": "the third"},
            {"type": "audio", "data": "AAAAAAAA", "mimeType": "audio/wav"},
            {"type": "hologram", "x": 1}
        ]}));
        assert_eq!(
            out.to_model(1000).text,
            "[resource demo://1]\nbody\n[resource demo://2: application/zip, 4 bytes of base64 not shown]\n\
             [resource link: demo://3 (three) — the third]\n[audio: audio/wav, 8 bytes of base64 not shown]\n\
             {\"type\":\"hologram\",\"x\":1}"
        );
    }

    #[test]
    fn malformed_results_read_as_empty() {
        for value in [
            json!(null),
            json!(3),
            json!({"content": "x", "isError": "yes"}),
        ] {
            let out = McpToolOutput::from_json(&value);
            assert_eq!(out, McpToolOutput::default());
            assert_eq!(out.to_model(10).text, "");
        }
    }

    #[test]
    fn long_text_keeps_head_and_tail_with_a_notice() {
        let text = format!("{}{}", "a".repeat(600), "é".repeat(300));
        let out = McpToolOutput::from_json(&json!({"content": [{"type": "text", "text": text}]}));
        let model = out.to_model(100);
        assert!(model.truncated_bytes > 0);
        assert!(
            model.text.starts_with("Output truncated: "),
            "{}",
            model.text
        );
        assert!(model.text.contains(&format!(
            "[... {} bytes omitted ...]",
            model.truncated_bytes
        )));
        assert!(model.text.contains(&"a".repeat(50)));
        assert!(model.text.ends_with(&"é".repeat(25)));
        assert_eq!(
            50 + 50 + model.truncated_bytes,
            text.len(),
            "head + tail + omitted = original"
        );
    }

    #[test]
    fn cap_middle_never_splits_a_character() {
        for max in 0..20 {
            let (capped, omitted) = cap_middle("ééééééééééé", max);
            assert!(omitted > 0 || capped == "ééééééééééé");
        }
    }
}
