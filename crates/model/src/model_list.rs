//! The provider's model list (`GET {base_url}/models`), read for one thing only: the context
//! window of a model Quest has no figure for.
//!
//! OpenAI-compatible gateways answer `{"object":"list","data":[{"id":…},…]}` and most add the
//! window to each entry under a name of their own. The names read here, first match wins:
//!
//! | field | who sends it |
//! |---|---|
//! | `context_window` | Groq; Codex's own model catalogue |
//! | `context_length` (and `top_provider.context_length`) | OpenRouter, Together, Fireworks |
//! | `max_context_length` | Mistral, LM Studio |
//! | `max_model_len` | vLLM (`--max-model-len`) |
//! | `input_token_limit` / `inputTokenLimit` | Gemini |
//! | `max_input_tokens` | LiteLLM's model info |
//! | `contextWindow` / `contextLength` | camel-case gateways |
//!
//! The list may also be a bare array (Together) or `{"models":[…]}` (entries named by `slug`, as
//! in Codex's catalogue). An entry is the model when its `id`, `slug` or `name` equals the slug
//! (Gemini's `models/<slug>` too).

use std::time::Duration;

use futures_util::StreamExt;
use http::{HeaderValue, header};
use serde_json::Value;

use crate::client::{ModelClient, transport_message};

/// Largest model list read (OpenRouter's full list is a few MB).
const MAX_LIST_BYTES: usize = 32 * 1024 * 1024;

/// Context-window field names, in the order they are tried.
const WINDOW_FIELDS: &[&str] = &[
    "context_window",
    "context_length",
    "max_context_length",
    "max_model_len",
    "input_token_limit",
    "inputTokenLimit",
    "max_input_tokens",
    "contextWindow",
    "contextLength",
];

/// Why the model list gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelListError {
    /// No answer within the timeout.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The request could not be sent or the answer not read.
    #[error("request failed: {0}")]
    Connection(String),
    /// A non-2xx status.
    #[error("HTTP {0}")]
    Status(u16),
    /// The answer is not a model list.
    #[error("{0}")]
    Invalid(String),
}

/// What the list says about one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListedWindow {
    /// Listed with this context window (tokens).
    Window(i64),
    /// Listed, but with no window field Quest knows.
    NoWindow,
    /// Not in the list.
    NotListed,
}

/// Reads `model`'s context window from a model-list body. `Err` names what is wrong with the
/// body (not JSON, no list).
pub fn context_window_from_model_list(body: &[u8], model: &str) -> Result<ListedWindow, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let head = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        format!("the answer is not JSON ({e}): {head:?}")
    })?;
    let entries = match &value {
        Value::Array(entries) => entries,
        Value::Object(map) => match map.get("data").or_else(|| map.get("models")) {
            Some(Value::Array(entries)) => entries,
            _ => return Err("the answer has no `data` list of models".to_string()),
        },
        _ => return Err("the answer is not a list of models".to_string()),
    };
    let gemini_name = format!("models/{model}");
    let Some(entry) = entries.iter().find(|entry| {
        ["id", "slug", "name"].iter().any(|key| {
            entry
                .get(key)
                .and_then(Value::as_str)
                .is_some_and(|name| name == model || name == gemini_name)
        })
    }) else {
        return Ok(ListedWindow::NotListed);
    };
    let window = WINDOW_FIELDS
        .iter()
        .find_map(|field| positive_tokens(entry.get(field)))
        .or_else(|| positive_tokens(entry.pointer("/top_provider/context_length")));
    Ok(window.map_or(ListedWindow::NoWindow, ListedWindow::Window))
}

/// A token count: a positive integer (or an integral float, or a string of digits, as some
/// gateways send). Anything else is not a window.
fn positive_tokens(value: Option<&Value>) -> Option<i64> {
    let n = match value? {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f < 1e15)
                .map(|f| f as i64)
        })?,
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        _ => return None,
    };
    (n > 0).then_some(n)
}

impl ModelClient {
    /// `GET {base_url}/models` (with the provider's query parameters, key and headers) and
    /// `model`'s entry in it, all within `timeout`.
    pub async fn listed_context_window(
        &self,
        model: &str,
        timeout: Duration,
    ) -> Result<ListedWindow, ModelListError> {
        match tokio::time::timeout(timeout, self.fetch_model_list()).await {
            Ok(Ok(body)) => {
                context_window_from_model_list(&body, model).map_err(ModelListError::Invalid)
            }
            Ok(Err(err)) => Err(err),
            Err(_) => Err(ModelListError::Timeout(timeout)),
        }
    }

    /// The model-list URL: `{base_url}/models` plus the provider's query parameters.
    pub fn model_list_url(&self) -> String {
        let mut url = self.endpoint().clone();
        let path = url.path().trim_end_matches("/responses").to_string();
        url.set_path(&format!("{path}/models"));
        url.to_string()
    }

    async fn fetch_model_list(&self) -> Result<Vec<u8>, ModelListError> {
        let mut headers = self.static_headers().clone();
        headers.remove(header::CONTENT_TYPE);
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let response = self
            .http()
            .get(self.model_list_url())
            .headers(headers)
            .send()
            .await
            .map_err(|e| ModelListError::Connection(transport_message(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ModelListError::Status(status.as_u16()));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ModelListError::Connection(transport_message(&e)))?;
            if body.len() + chunk.len() > MAX_LIST_BYTES {
                return Err(ModelListError::Invalid(format!(
                    "the answer is larger than {} MB",
                    MAX_LIST_BYTES / (1024 * 1024)
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(body: &str, model: &str) -> Result<ListedWindow, String> {
        context_window_from_model_list(body.as_bytes(), model)
    }

    #[test]
    fn reads_the_window_field_of_each_known_gateway() {
        let cases = [
            // OpenAI-compatible list with Groq's field.
            (
                r#"{"object":"list","data":[{"id":"m","context_window":131072}]}"#,
                131_072,
            ),
            // OpenRouter: the model's own figure wins over the top provider's.
            (
                r#"{"data":[{"id":"m","context_length":200000,"top_provider":{"context_length":100000}}]}"#,
                200_000,
            ),
            (
                r#"{"data":[{"id":"m","top_provider":{"context_length":100000}}]}"#,
                100_000,
            ),
            // Mistral.
            (
                r#"{"object":"list","data":[{"id":"m","max_context_length":32768}]}"#,
                32_768,
            ),
            // vLLM.
            (
                r#"{"object":"list","data":[{"id":"m","object":"model","owned_by":"vllm","max_model_len":8192}]}"#,
                8_192,
            ),
            // Gemini (native names: `models/<slug>`).
            (
                r#"{"models":[{"name":"models/m","inputTokenLimit":1048576}]}"#,
                1_048_576,
            ),
            (r#"{"data":[{"id":"m","input_token_limit":1000}]}"#, 1_000),
            // LiteLLM model info.
            (r#"{"data":[{"id":"m","max_input_tokens":64000}]}"#, 64_000),
            // Codex's catalogue: entries named by slug.
            (
                r#"{"models":[{"slug":"m","context_window":272000}]}"#,
                272_000,
            ),
            // Together: a bare array.
            (
                r#"[{"id":"other","context_length":1},{"id":"m","context_length":32768}]"#,
                32_768,
            ),
            // Sent as a float or a string.
            (r#"{"data":[{"id":"m","context_length":4096.0}]}"#, 4_096),
            (r#"{"data":[{"id":"m","context_length":"4096"}]}"#, 4_096),
        ];
        for (body, expected) in cases {
            assert_eq!(
                window(body, "m"),
                Ok(ListedWindow::Window(expected)),
                "{body}"
            );
        }
    }

    #[test]
    fn unlisted_models_and_missing_or_bad_windows_are_told_apart() {
        assert_eq!(
            window(r#"{"object":"list","data":[]}"#, "m"),
            Ok(ListedWindow::NotListed)
        );
        assert_eq!(
            window(r#"{"data":[{"id":"mm","context_window":5}]}"#, "m"),
            Ok(ListedWindow::NotListed)
        );
        // LiteLLM's /v1/models and plain OpenAI entries carry no window.
        assert_eq!(
            window(
                r#"{"data":[{"id":"m","object":"model","owned_by":"openai"}]}"#,
                "m"
            ),
            Ok(ListedWindow::NoWindow)
        );
        for bad in ["0", "-5", "null", "true", "\"big\"", "1.5", "{}"] {
            let body = format!(r#"{{"data":[{{"id":"m","context_window":{bad}}}]}}"#);
            assert_eq!(window(&body, "m"), Ok(ListedWindow::NoWindow), "{body}");
        }
    }

    #[test]
    fn bodies_that_are_not_model_lists_are_errors_naming_the_problem() {
        let err = window("<html>Not Found</html>", "m").unwrap_err();
        assert!(err.contains("not JSON") && err.contains("<html>"), "{err}");
        let err = window(r#"{"error":{"message":"nope"}}"#, "m").unwrap_err();
        assert!(err.contains("no `data` list"), "{err}");
        let err = window(r#"{"data":{"id":"m"}}"#, "m").unwrap_err();
        assert!(err.contains("no `data` list"), "{err}");
        let err = window("42", "m").unwrap_err();
        assert!(err.contains("not a list"), "{err}");
        // Invalid UTF-8 and empty bodies do not panic.
        assert!(context_window_from_model_list(&[0xff, 0xfe, b'{'], "m").is_err());
        assert!(context_window_from_model_list(b"", "m").is_err());
    }
}
