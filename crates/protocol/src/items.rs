//! Conversation items in the OpenAI Responses API shape. The same type is used for request
//! `input`, for items the model streams back (`response.output_item.done`) and for the durable
//! rollout, so a resumed thread re-sends exactly what was exchanged.

use serde::{Deserialize, Serialize};

/// One item of a thread's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseItem {
    /// A `developer`, `user` or `assistant` message.
    Message {
        /// Server or client item id (`msg_…`); echoed verbatim when present.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// `developer`, `system`, `user` or `assistant`.
        role: String,
        /// Text parts.
        content: Vec<ContentItem>,
    },
    /// A reasoning item; kept so encrypted reasoning can be replayed.
    Reasoning {
        /// Server id (`rs_…`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Summary parts.
        #[serde(default)]
        summary: Vec<ReasoningSummary>,
        /// Raw reasoning content when the server sends it.
        #[serde(default)]
        content: Option<serde_json::Value>,
        /// Opaque encrypted reasoning.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encrypted_content: Option<String>,
    },
    /// A call of a JSON-schema function tool. `arguments` is a JSON **string**.
    FunctionCall {
        /// Server id (`fc_…`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Tool name.
        name: String,
        /// Arguments as the model produced them (may be malformed JSON).
        arguments: String,
        /// Pairs the call with its output.
        call_id: String,
    },
    /// The result Quest sends back for a [`ResponseItem::FunctionCall`].
    FunctionCallOutput {
        /// Client id (`fco_…`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The call this answers; absent for context items such as `goal_objective`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
        /// Name, only on context items (`goal_objective`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Namespace, only on context items (`agent`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        /// Plain-text output.
        output: String,
    },
    /// A call of a free-form (grammar) tool such as `apply_patch`.
    CustomToolCall {
        /// Server id (`ctc_…`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Pairs the call with its output.
        call_id: String,
        /// Tool name.
        name: String,
        /// Raw tool input.
        input: String,
    },
    /// The result of a [`ResponseItem::CustomToolCall`].
    CustomToolCallOutput {
        /// Client id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The call this answers.
        call_id: String,
        /// Plain-text output.
        output: String,
    },
    /// Any item type Quest does not model; ignored on input, never sent back.
    #[serde(other)]
    Other,
}

/// One content part of a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentItem {
    /// Text sent by Quest (developer and user messages).
    InputText {
        /// The text.
        text: String,
    },
    /// An image sent by Quest (an MCP tool's image), as a URL or `data:` URL.
    InputImage {
        /// `data:<mime>;base64,<data>` or an https URL.
        image_url: String,
    },
    /// Text produced by the model (assistant messages).
    OutputText {
        /// The text.
        text: String,
    },
    /// A refusal by the model.
    Refusal {
        /// The refusal text.
        refusal: String,
    },
    /// A content type Quest does not model.
    #[serde(other)]
    Other,
}

/// One reasoning summary part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReasoningSummary {
    /// Summary text.
    SummaryText {
        /// The text.
        text: String,
    },
}

impl ResponseItem {
    /// A message with one text part (`input_text` for developer/user, `output_text` for assistant).
    pub fn text_message(role: &str, text: impl Into<String>) -> Self {
        let text = text.into();
        let part = if role == "assistant" {
            ContentItem::OutputText { text }
        } else {
            ContentItem::InputText { text }
        };
        ResponseItem::Message {
            id: None,
            role: role.to_string(),
            content: vec![part],
        }
    }

    /// The concatenated text of a message item, `None` for other items.
    pub fn message_text(&self) -> Option<String> {
        match self {
            ResponseItem::Message { content, .. } => Some(
                content
                    .iter()
                    .filter_map(|part| match part {
                        ContentItem::InputText { text } | ContentItem::OutputText { text } => {
                            Some(text.as_str())
                        }
                        ContentItem::Refusal { refusal } => Some(refusal.as_str()),
                        ContentItem::InputImage { .. } | ContentItem::Other => None,
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The role of a message item.
    pub fn role(&self) -> Option<&str> {
        match self {
            ResponseItem::Message { role, .. } => Some(role),
            _ => None,
        }
    }

    /// Summary text of a reasoning item, parts joined by blank lines.
    pub fn reasoning_text(&self) -> Option<String> {
        match self {
            ResponseItem::Reasoning { summary, .. } => Some(
                summary
                    .iter()
                    .map(|ReasoningSummary::SummaryText { text }| text.as_str())
                    .collect::<Vec<_>>()
                    .join("\n\n"),
            ),
            _ => None,
        }
    }

    /// True for items the model uses to ask Quest to run a tool.
    pub fn is_tool_call(&self) -> bool {
        matches!(
            self,
            ResponseItem::FunctionCall { .. } | ResponseItem::CustomToolCall { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn function_call_round_trips_in_wire_shape() {
        let wire = json!({"type":"function_call","id":"fc_1","name":"exec_command",
            "arguments":"{\"cmd\": \"echo hi\"}","call_id":"call_abc"});
        let item: ResponseItem = serde_json::from_value(wire.clone()).unwrap();
        assert!(item.is_tool_call());
        assert_eq!(serde_json::to_value(&item).unwrap(), wire);
    }

    #[test]
    fn goal_objective_output_has_no_call_id() {
        let wire = json!({"type":"function_call_output","id":"fco_1","name":"goal_objective",
            "namespace":"agent","output":"ship it"});
        let item: ResponseItem = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(serde_json::to_value(&item).unwrap(), wire);
    }

    #[test]
    fn assistant_message_text_and_unknown_parts() {
        let wire = json!({"type":"message","role":"assistant","id":"msg_1",
            "content":[{"type":"output_text","text":"Hel","annotations":[]},
                       {"type":"image_thing","x":1},{"type":"output_text","text":"lo"}]});
        let item: ResponseItem = serde_json::from_value(wire).unwrap();
        assert_eq!(item.message_text().as_deref(), Some("Hello"));
        assert_eq!(item.role(), Some("assistant"));
    }

    #[test]
    fn input_image_parts_round_trip() {
        let wire = json!({"type":"message","role":"user","content":[
            {"type":"input_text","text":"Image from mcp__e__img:"},
            {"type":"input_image","image_url":"data:image/png;base64,iVBOR"}]});
        let item: ResponseItem = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(serde_json::to_value(&item).unwrap(), wire);
        assert_eq!(
            item.message_text().as_deref(),
            Some("Image from mcp__e__img:")
        );
    }

    #[test]
    fn unknown_item_types_parse_as_other() {
        let item: ResponseItem =
            serde_json::from_value(json!({"type":"web_search_call","id":"ws_1"})).unwrap();
        assert_eq!(item, ResponseItem::Other);
    }

    #[test]
    fn reasoning_summary_text_is_joined() {
        let item: ResponseItem = serde_json::from_value(json!({"type":"reasoning","id":"rs_1",
            "summary":[{"type":"summary_text","text":"a"},{"type":"summary_text","text":"b"}],
            "content":null,"encrypted_content":"gAAA"}))
        .unwrap();
        assert_eq!(item.reasoning_text().as_deref(), Some("a\n\nb"));
    }
}
