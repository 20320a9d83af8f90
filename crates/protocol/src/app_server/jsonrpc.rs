//! JSON-RPC framing of the app-server protocol: request ids, the four message shapes, standard
//! error codes, and the checked parse of one incoming message.
//!
//! The wire omits `"jsonrpc":"2.0"` in both directions, as Codex does. Server notifications carry
//! `emittedAtMs`; client messages never need it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON is not a valid request object (or arrives before `initialize`).
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal server error.
pub const INTERNAL_ERROR: i64 = -32603;

/// A request id: a string or an integer, echoed verbatim in the response.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    /// Integer id.
    Integer(i64),
    /// String id.
    String(String),
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestId::Integer(n) => write!(f, "{n}"),
            RequestId::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// The `error` member of an error response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// JSON-RPC error code.
    pub code: i64,
    /// Human-readable message.
    pub message: String,
    /// Extra detail, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// An error with a code and message.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        ErrorObject {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// `-32602` with the message.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    /// `-32600` with the message.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(INVALID_REQUEST, message)
    }

    /// `-32603` with the message.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(INTERNAL_ERROR, message)
    }
}

/// One message received from a client, already classified.
#[derive(Clone, Debug, PartialEq)]
pub enum IncomingMessage {
    /// A request expecting a response.
    Request {
        /// Echoed in the response.
        id: RequestId,
        /// Method name.
        method: String,
        /// Parameters (`None` when absent).
        params: Option<Value>,
    },
    /// A notification (no `id`).
    Notification {
        /// Method name.
        method: String,
        /// Parameters (`None` when absent).
        params: Option<Value>,
    },
    /// A response to a server-to-client request.
    Response {
        /// The server request's id.
        id: RequestId,
        /// Result.
        result: Value,
    },
    /// An error answer to a server-to-client request.
    Error {
        /// The server request's id.
        id: RequestId,
        /// The error.
        error: ErrorObject,
    },
}

/// Why an incoming message was refused, with the id to answer when one could be read.
#[derive(Clone, Debug, PartialEq)]
pub struct IncomingError {
    /// The request id, when the message carried a usable one.
    pub id: Option<RequestId>,
    /// The error to send back.
    pub error: ErrorObject,
}

/// Parses and classifies one message (a stdio line or a WebSocket text frame).
pub fn parse_incoming(text: &str) -> Result<IncomingMessage, IncomingError> {
    let value: Value = serde_json::from_str(text).map_err(|err| IncomingError {
        id: None,
        error: ErrorObject::new(PARSE_ERROR, format!("Parse error: {err}")),
    })?;
    let Value::Object(mut map) = value else {
        return Err(IncomingError {
            id: None,
            error: ErrorObject::invalid_request(format!(
                "Invalid request: expected a JSON object, got {}",
                json_kind(&value)
            )),
        });
    };
    let id = match map.remove("id") {
        None => None,
        Some(raw) => match serde_json::from_value::<RequestId>(raw.clone()) {
            Ok(id) => Some(id),
            Err(_) => {
                return Err(IncomingError {
                    id: None,
                    error: ErrorObject::invalid_request(format!(
                        "Invalid request: `id` must be a string or an integer, got {}",
                        json_kind(&raw)
                    )),
                });
            }
        },
    };
    if let Some(method) = map.remove("method") {
        let Value::String(method) = method else {
            return Err(IncomingError {
                id,
                error: ErrorObject::invalid_request(format!(
                    "Invalid request: `method` must be a string, got {}",
                    json_kind(&method)
                )),
            });
        };
        let params = map.remove("params");
        return Ok(match id {
            Some(id) => IncomingMessage::Request { id, method, params },
            None => IncomingMessage::Notification { method, params },
        });
    }
    let Some(id) = id else {
        return Err(IncomingError {
            id: None,
            error: ErrorObject::invalid_request(
                "Invalid request: a message needs `method` (request or notification) or `id` (response)",
            ),
        });
    };
    if let Some(result) = map.remove("result") {
        return Ok(IncomingMessage::Response { id, result });
    }
    if let Some(error) = map.remove("error") {
        return match serde_json::from_value::<ErrorObject>(error) {
            Ok(error) => Ok(IncomingMessage::Error { id, error }),
            Err(err) => Err(IncomingError {
                id: Some(id),
                error: ErrorObject::invalid_request(format!("Invalid request: error: {err}")),
            }),
        };
    }
    Err(IncomingError {
        id: Some(id),
        error: ErrorObject::invalid_request(
            "Invalid request: missing `method` (request) or `result`/`error` (response)",
        ),
    })
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One message the server sends.
#[derive(Clone, Debug, PartialEq)]
pub enum OutgoingMessage {
    /// A successful response.
    Response {
        /// The request's id.
        id: RequestId,
        /// Result object.
        result: Value,
    },
    /// An error response; `id` is `None` only when the request's id could not be read.
    Error {
        /// The request's id.
        id: Option<RequestId>,
        /// The error.
        error: ErrorObject,
    },
    /// A notification.
    Notification {
        /// Method name.
        method: String,
        /// Parameters.
        params: Value,
        /// Unix milliseconds at emission.
        emitted_at_ms: i64,
    },
    /// A server-to-client request.
    Request {
        /// Id the client answers with.
        id: RequestId,
        /// Method name.
        method: String,
        /// Parameters.
        params: Value,
    },
}

impl OutgoingMessage {
    /// The message as a JSON value (what goes on the wire).
    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        match self {
            OutgoingMessage::Response { id, result } => {
                map.insert("id".into(), id_value(id));
                map.insert("result".into(), result.clone());
            }
            OutgoingMessage::Error { id, error } => {
                map.insert("id".into(), id.as_ref().map_or(Value::Null, id_value));
                map.insert(
                    "error".into(),
                    serde_json::to_value(error).unwrap_or(Value::Null),
                );
            }
            OutgoingMessage::Notification {
                method,
                params,
                emitted_at_ms,
            } => {
                map.insert("method".into(), Value::String(method.clone()));
                map.insert("params".into(), params.clone());
                map.insert("emittedAtMs".into(), Value::from(*emitted_at_ms));
            }
            OutgoingMessage::Request { id, method, params } => {
                map.insert("id".into(), id_value(id));
                map.insert("method".into(), Value::String(method.clone()));
                map.insert("params".into(), params.clone());
            }
        }
        Value::Object(map)
    }

    /// The message serialised on one line (no trailing newline).
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }
}

fn id_value(id: &RequestId) -> Value {
    match id {
        RequestId::Integer(n) => Value::from(*n),
        RequestId::String(s) => Value::String(s.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classifies_the_four_shapes() {
        assert_eq!(
            parse_incoming(r#"{"id":1,"method":"a","params":{"x":1}}"#).unwrap(),
            IncomingMessage::Request {
                id: RequestId::Integer(1),
                method: "a".into(),
                params: Some(json!({"x":1}))
            }
        );
        assert_eq!(
            parse_incoming(r#"{"method":"initialized"}"#).unwrap(),
            IncomingMessage::Notification {
                method: "initialized".into(),
                params: None
            }
        );
        assert_eq!(
            parse_incoming(r#"{"id":"s","result":{}}"#).unwrap(),
            IncomingMessage::Response {
                id: RequestId::String("s".into()),
                result: json!({})
            }
        );
        assert!(matches!(
            parse_incoming(r#"{"id":"s","error":{"code":1,"message":"m"}}"#).unwrap(),
            IncomingMessage::Error { .. }
        ));
    }

    #[test]
    fn refusals_carry_the_right_code_and_id() {
        let err = parse_incoming("not json").unwrap_err();
        assert_eq!((err.id, err.error.code), (None, PARSE_ERROR));
        let err = parse_incoming("[1,2]").unwrap_err();
        assert_eq!(err.error.code, INVALID_REQUEST);
        assert!(
            err.error.message.contains("an array"),
            "{}",
            err.error.message
        );
        let err = parse_incoming(r#"{"id":7,"method":5}"#).unwrap_err();
        assert_eq!(err.id, Some(RequestId::Integer(7)));
        assert!(err.error.message.contains("`method`"));
        let err = parse_incoming(r#"{"id":1.5,"method":"a"}"#).unwrap_err();
        assert!(err.error.message.contains("`id`"));
        let err = parse_incoming(r#"{"id":3}"#).unwrap_err();
        assert_eq!(err.id, Some(RequestId::Integer(3)));
    }

    #[test]
    fn outgoing_shapes() {
        let n = OutgoingMessage::Notification {
            method: "m".into(),
            params: json!({}),
            emitted_at_ms: 5,
        };
        assert_eq!(
            n.to_value(),
            json!({"method":"m","params":{},"emittedAtMs":5})
        );
        let e = OutgoingMessage::Error {
            id: None,
            error: ErrorObject::new(PARSE_ERROR, "x"),
        };
        assert_eq!(
            e.to_value(),
            json!({"id":null,"error":{"code":-32700,"message":"x"}})
        );
    }
}
