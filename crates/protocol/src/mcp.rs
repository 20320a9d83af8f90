//! The app-server v2 `mcpToolCall` thread item: one call of a tool on an MCP server, in the shape
//! of `ThreadItem` variant `McpToolCallThreadItem` (camelCase, status `inProgress` / `completed` /
//! `failed`). The `exec --json` form of the same call is
//! [`crate::exec_events::ThreadItemDetails::McpToolCall`].

use serde::{Deserialize, Serialize};

use crate::exec_events::McpToolCallItemResult;

/// `mcpToolCall`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "mcpToolCall", rename_all = "camelCase")]
pub struct McpToolCallThreadItem {
    /// Item id.
    pub id: String,
    /// Server name.
    pub server: String,
    /// The tool's name on the server.
    pub tool: String,
    /// Lifecycle status.
    pub status: McpToolCallThreadItemStatus,
    /// Arguments as sent.
    pub arguments: serde_json::Value,
    /// What the server returned, when it did.
    pub result: Option<McpToolCallThreadItemResult>,
    /// Why the call got no result.
    pub error: Option<McpToolCallThreadItemError>,
    /// How long the call took, once finished.
    pub duration_ms: Option<i64>,
}

/// `McpToolCallStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum McpToolCallThreadItemStatus {
    /// Dispatched.
    InProgress,
    /// A result without `isError`.
    Completed,
    /// A result with `isError`, or no result.
    Failed,
}

/// `McpToolCallResult`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpToolCallThreadItemResult {
    /// MCP content blocks as the server sent them.
    pub content: Vec<serde_json::Value>,
    /// `structuredContent`.
    pub structured_content: Option<serde_json::Value>,
}

/// `McpToolCallError`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpToolCallThreadItemError {
    /// What went wrong.
    pub message: String,
}

impl McpToolCallThreadItem {
    /// The item when the call starts (`item/started`).
    pub fn started(
        id: impl Into<String>,
        server: impl Into<String>,
        tool: impl Into<String>,
        arguments: serde_json::Value,
    ) -> Self {
        McpToolCallThreadItem {
            id: id.into(),
            server: server.into(),
            tool: tool.into(),
            status: McpToolCallThreadItemStatus::InProgress,
            arguments,
            result: None,
            error: None,
            duration_ms: None,
        }
    }

    /// The item when the call ends (`item/completed`), from the fields of
    /// [`crate::ops::EventMsg::McpToolCallEnd`].
    pub fn finished(
        mut self,
        result: Option<&McpToolCallItemResult>,
        is_error: bool,
        error: Option<&str>,
        duration_ms: u64,
    ) -> Self {
        self.status = if is_error || error.is_some() || result.is_none() {
            McpToolCallThreadItemStatus::Failed
        } else {
            McpToolCallThreadItemStatus::Completed
        };
        self.result = result.map(|r| McpToolCallThreadItemResult {
            content: r.content.clone(),
            structured_content: r.structured_content.clone(),
        });
        self.error = error.map(|message| McpToolCallThreadItemError {
            message: message.to_string(),
        });
        self.duration_ms = Some(i64::try_from(duration_ms).unwrap_or(i64::MAX));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn serialises_in_the_app_server_shape() {
        let item =
            McpToolCallThreadItem::started("i1", "everything", "echo", json!({"message": "hi"}))
                .finished(
                    Some(&McpToolCallItemResult {
                        content: vec![json!({"type": "text", "text": "Echo: hi"})],
                        structured_content: None,
                    }),
                    false,
                    None,
                    12,
                );
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            json!({"type": "mcpToolCall", "id": "i1", "server": "everything", "tool": "echo",
                   "status": "completed", "arguments": {"message": "hi"},
                   "result": {"content": [{"type": "text", "text": "Echo: hi"}], "structuredContent": null},
                   "error": null, "durationMs": 12})
        );
        let failed = McpToolCallThreadItem::started("i2", "s", "t", Value::Null).finished(
            None,
            false,
            Some("MCP server `s` is down"),
            3,
        );
        assert_eq!(failed.status, McpToolCallThreadItemStatus::Failed);
        let back: McpToolCallThreadItem =
            serde_json::from_value(serde_json::to_value(&failed).unwrap()).unwrap();
        assert_eq!(back, failed);
    }

    /// Checks the item against Codex's published schema (`McpToolCallThreadItem` in the copy
    /// vendored for the app-server's tests): required keys, property names, the status enum.
    #[test]
    fn matches_the_published_schema() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../app-server/tests/schema/codex_app_server_protocol.v2.schemas.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            panic!("{} is missing", path.display());
        };
        let schema: Value = serde_json::from_str(&text).unwrap();
        let defs = &schema["definitions"];
        let variant = defs["ThreadItem"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["properties"]["type"]["enum"][0] == "mcpToolCall")
            .unwrap();
        let item = serde_json::to_value(
            McpToolCallThreadItem::started("i", "s", "t", json!({})).finished(
                None,
                false,
                Some("x"),
                1,
            ),
        )
        .unwrap();
        let object = item.as_object().unwrap();
        for required in variant["required"].as_array().unwrap() {
            assert!(
                object.contains_key(required.as_str().unwrap()),
                "missing {required}"
            );
        }
        let properties = variant["properties"].as_object().unwrap();
        for key in object.keys() {
            assert!(properties.contains_key(key), "{key} is not in the schema");
        }
        let statuses = defs["McpToolCallStatus"]["enum"].as_array().unwrap();
        for status in [
            McpToolCallThreadItemStatus::InProgress,
            McpToolCallThreadItemStatus::Completed,
            McpToolCallThreadItemStatus::Failed,
        ] {
            assert!(statuses.contains(&serde_json::to_value(status).unwrap()));
        }
        for required in defs["McpToolCallResult"]["required"].as_array().unwrap() {
            assert_eq!(required, "content");
        }
    }
}
