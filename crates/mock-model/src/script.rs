//! The script: what the server answers, request after request.
//!
//! A [`Script`] is a list of [`Step`]s served in order (one per accepted request), then a list of
//! [`Rule`]s evaluated against each later request, then a `default` step. Everything here is plain
//! serde data so that a script can be written in Rust (with the builders below), in JSON or in TOML.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ScriptError;

/// A whole script: steps first, then rules, then the default step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Script {
    /// Answers for the first requests, one step per accepted request, in order, sent verbatim
    /// (no templates).
    pub steps: Vec<Step>,
    /// Answers chosen by looking at the request once `steps` are used up; the first rule whose
    /// condition holds (and whose `max_matches` is not yet reached) answers.
    pub rules: Vec<Rule>,
    /// The answer when no step is left and no rule matches (templates are filled as in rules).
    /// When absent, a short assistant message `"mock-model: script exhausted"` is sent.
    pub default: Option<Step>,
    /// Reject (HTTP 400, as the real API does) a request whose `function_call_output` or
    /// `custom_tool_call_output` names a `call_id` with no earlier call in the same input, or
    /// whose tool call has no later output. Outputs without a `call_id` are always accepted.
    /// On by default.
    pub check_pairing: bool,
    /// Simulate the model's context: report input tokens from the size of each request's
    /// `input` and refuse requests that do not fit the window, as a real model does.
    pub context: Option<ContextModel>,
    /// The answer to `GET /v1/models` (default: an empty list).
    pub models: Option<ModelList>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            steps: Vec::new(),
            rules: Vec::new(),
            default: None,
            check_pairing: true,
            context: None,
            models: None,
        }
    }
}

/// The model list served on `GET /v1/models` (and `GET /models`). Requests for it are recorded
/// apart from model calls ([`crate::MockModel::model_list_requests`]), so they never change a
/// model-call count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelList {
    /// Entries of `{"object":"list","data":[…]}`, sent verbatim.
    pub data: Vec<Value>,
    /// Answer with this HTTP status instead (and an OpenAI-style error body).
    pub status: Option<u16>,
    /// Send this body instead of the list (with status 200 unless `status` is set).
    pub raw_body: Option<String>,
    /// Wait this long before answering.
    pub delay_ms: u64,
}

impl ModelList {
    /// A list with one model advertising `window` tokens as `context_window`.
    pub fn with_context_window(id: &str, window: u64) -> Self {
        Self {
            data: vec![serde_json::json!({
                "id": id,
                "object": "model",
                "owned_by": "mock-model",
                "context_window": window,
            })],
            ..Self::default()
        }
    }

    /// An HTTP error answer.
    pub fn status(status: u16) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }

    /// A raw (e.g. non-JSON) body with status 200.
    pub fn raw(body: &str) -> Self {
        Self {
            raw_body: Some(body.to_owned()),
            ..Self::default()
        }
    }

    /// Answers after `ms` milliseconds.
    pub fn delayed(mut self, ms: u64) -> Self {
        self.delay_ms = ms;
        self
    }
}

/// A simulated context window: the usage of every streamed answer is derived from the request,
/// so input tokens grow with the history a client sends and shrink when it compacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContextModel {
    /// Bytes of the serialized `input` array counted as one input token.
    pub bytes_per_token: u64,
    /// A request with more input tokens than this is answered with `response.failed`
    /// `context_length_exceeded` (without using up a step or a rule match).
    pub window: Option<u64>,
    /// Output tokens reported when the answering step sets no usage of its own.
    pub output_tokens: u64,
}

impl Default for ContextModel {
    fn default() -> Self {
        Self {
            bytes_per_token: 4,
            window: None,
            output_tokens: 50,
        }
    }
}

impl ContextModel {
    /// A model whose context holds `window` tokens of 4 bytes each.
    pub fn with_window(window: u64) -> Self {
        Self {
            window: Some(window),
            ..Self::default()
        }
    }

    /// Input tokens of a request body (the serialized `input` array).
    pub fn input_tokens(&self, body: &Value) -> u64 {
        let bytes = body
            .get("input")
            .map(|input| input.to_string().len())
            .unwrap_or(0) as u64;
        bytes / self.bytes_per_token.max(1)
    }

    /// The message of the `context_length_exceeded` failure.
    pub const EXCEEDED_MESSAGE: &'static str = "Your input exceeds the context window of this model. Please adjust your input and try again.";
}

/// One answer to one request: either an SSE stream built from `output` items (or from raw
/// `events`), or an HTTP error, plus timing and framing knobs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Step {
    /// Items streamed in this response, in order (each becomes `output_item.added`, deltas and
    /// `output_item.done`).
    pub output: Vec<Output>,
    /// `response.completed.usage`; `None` sends no usage at all.
    pub usage: Option<Usage>,
    /// How the stream ends (default: `response.completed`).
    pub end: End,
    /// The response id (default `resp_{n}`).
    pub response_id: Option<String>,
    /// Leave out the leading `response.created` event.
    pub skip_created: bool,
    /// Raw frames sent instead of the ones generated from `output`/`end` (full control).
    pub events: Option<Vec<Frame>>,
    /// Answer with this HTTP error instead of a stream.
    pub http_error: Option<HttpError>,
    /// Extra response headers (stream or error), e.g. `x-codex-turn-state`, `retry-after`.
    pub headers: BTreeMap<String, String>,
    /// Wait this long before sending the response head.
    pub delay_ms: u64,
    /// Wait this long before each SSE frame after the first.
    pub event_delay_ms: u64,
    /// Keep the connection open this long after the last frame.
    pub keep_open_ms: u64,
    /// Stop after this many frames: the body ends cleanly and the connection is closed
    /// (`connection: close`), or the connection is reset mid-body with `abort`.
    pub cut_after: Option<usize>,
    /// With `cut_after`: drop the connection abruptly (an incomplete chunked body) instead of
    /// ending the body cleanly.
    pub abort: bool,
    /// Send this many frames, then nothing more while keeping the socket open (until the client
    /// hangs up or the server stops).
    pub stall_after: Option<usize>,
    /// Send frames as `data:` lines only, without `event:` lines.
    pub data_only: bool,
    /// Insert an unparseable `data:` frame before the frame with this index (0-based).
    pub garbage_at: Option<usize>,
}

/// One output item of a streamed response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Output {
    /// An assistant message.
    Message(MessageSpec),
    /// A `function_call` item (`arguments` is sent as a JSON string).
    FunctionCall(CallSpec),
    /// A `custom_tool_call` item (freeform `input`, e.g. an `apply_patch` patch).
    CustomToolCall(CustomCallSpec),
    /// A `reasoning` item.
    Reasoning(ReasoningSpec),
    /// Any item, sent verbatim in `output_item.added`/`output_item.done`.
    Item(RawItemSpec),
}

/// An assistant message item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageSpec {
    /// The full text (the deltas concatenate to it).
    pub text: String,
    /// Number of `output_text.delta` events the text is split into (0 = no deltas).
    #[serde(default = "one")]
    pub deltas: usize,
    /// The item id (default `msg_{n}_{index}`).
    #[serde(default)]
    pub id: Option<String>,
    /// Send the item without any `id`.
    #[serde(default)]
    pub no_id: bool,
    /// Leave out `output_item.added`.
    #[serde(default)]
    pub no_added: bool,
}

/// A `function_call` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSpec {
    /// Tool name, e.g. `exec_command` or `update_goal`.
    pub name: String,
    /// Arguments: a JSON string is sent verbatim; any other JSON value is serialized to a
    /// string. Missing means `{}`.
    #[serde(default)]
    pub arguments: Value,
    /// The call id (default `call_{n}_{index}`).
    #[serde(default)]
    pub call_id: Option<String>,
    /// Optional `namespace` field of the item.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The item id (default `fc_{n}_{index}`).
    #[serde(default)]
    pub id: Option<String>,
    /// Send the item without any `id`.
    #[serde(default)]
    pub no_id: bool,
    /// Leave out `output_item.added`.
    #[serde(default)]
    pub no_added: bool,
}

/// A `custom_tool_call` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomCallSpec {
    /// Tool name (default `apply_patch`).
    #[serde(default = "apply_patch")]
    pub name: String,
    /// The freeform input.
    pub input: String,
    /// The call id (default `call_{n}_{index}`).
    #[serde(default)]
    pub call_id: Option<String>,
    /// The item id (default `ctc_{n}_{index}`).
    #[serde(default)]
    pub id: Option<String>,
    /// Send the item without any `id`.
    #[serde(default)]
    pub no_id: bool,
    /// Leave out `output_item.added`.
    #[serde(default)]
    pub no_added: bool,
}

/// A `reasoning` item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReasoningSpec {
    /// Summary parts (`summary_text`).
    pub summary: Vec<String>,
    /// Raw reasoning parts (`reasoning_text`); `None` sends `"content": null`.
    pub content: Option<Vec<String>>,
    /// `encrypted_content`.
    pub encrypted_content: Option<String>,
    /// Stream `reasoning_summary_part.added` / `reasoning_summary_text.delta` (and
    /// `reasoning_text.delta` for `content`) before the item is done.
    pub deltas: bool,
    /// The item id (default `rs_{n}_{index}`).
    pub id: Option<String>,
    /// Send the item without any `id`.
    pub no_id: bool,
    /// Leave out `output_item.added`.
    pub no_added: bool,
}

/// An arbitrary item sent verbatim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawItemSpec {
    /// The item JSON.
    pub item: Value,
    /// Leave out `output_item.added`.
    #[serde(default)]
    pub no_added: bool,
}

/// Token usage reported in `response.completed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Usage {
    /// `input_tokens`.
    pub input_tokens: u64,
    /// `input_tokens_details.cached_tokens`.
    pub cached_tokens: u64,
    /// `output_tokens`.
    pub output_tokens: u64,
    /// `output_tokens_details.reasoning_tokens`.
    pub reasoning_tokens: u64,
    /// `total_tokens` (default input + output).
    pub total_tokens: Option<u64>,
}

impl Usage {
    /// Usage with input, cached input, output and reasoning token counts; the total is
    /// input + output.
    pub fn new(
        input_tokens: u64,
        cached_tokens: u64,
        output_tokens: u64,
        reasoning_tokens: u64,
    ) -> Self {
        Self {
            input_tokens,
            cached_tokens,
            output_tokens,
            reasoning_tokens,
            total_tokens: None,
        }
    }

    /// The wire JSON of this usage.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.total_tokens.unwrap_or(self.input_tokens + self.output_tokens),
        })
    }
}

impl From<&quest_protocol::TokenUsage> for Usage {
    /// The wire usage that decodes back to `usage` (negative counts become 0).
    fn from(usage: &quest_protocol::TokenUsage) -> Self {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Self {
            input_tokens: count(usage.input_tokens),
            cached_tokens: count(usage.cached_input_tokens),
            output_tokens: count(usage.output_tokens),
            reasoning_tokens: count(usage.reasoning_output_tokens),
            total_tokens: Some(count(usage.total_tokens)),
        }
    }
}

/// How a streamed response ends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum End {
    /// `response.completed` (with `usage` when set).
    #[default]
    Completed,
    /// `response.failed` with `response.error {code, type, message}` (absent fields left out).
    Failed {
        /// `error.code`.
        #[serde(default)]
        code: Option<String>,
        /// `error.type`.
        #[serde(default)]
        error_type: Option<String>,
        /// `error.message`.
        #[serde(default)]
        message: Option<String>,
    },
    /// `response.incomplete` with `incomplete_details.reason`.
    Incomplete {
        /// The reason, e.g. `max_output_tokens`.
        reason: String,
    },
    /// A top-level `error` event, then the end of the body.
    ErrorEvent {
        /// `code` of the event.
        #[serde(default)]
        code: Option<String>,
        /// `message` of the event.
        #[serde(default)]
        message: Option<String>,
    },
    /// No terminal event: the body simply ends.
    Eof,
}

/// One raw SSE frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Frame {
    /// `event: <value.type>\ndata: <value>\n\n` (data-only when the value has no string `type`).
    Event(Value),
    /// `data: <value>\n\n`.
    Data(Value),
    /// Written verbatim (include the trailing blank line yourself).
    Raw(String),
}

/// An HTTP error answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpError {
    /// The status code.
    pub status: u16,
    /// A JSON body.
    #[serde(default)]
    pub body: Option<Value>,
    /// A raw body (wins over `body`).
    #[serde(default)]
    pub raw_body: Option<String>,
    /// `content-type` (default `application/json` for a JSON body, `text/plain` otherwise).
    #[serde(default)]
    pub content_type: Option<String>,
    /// Send `retry-after` as an HTTP date this many seconds from the moment of the answer
    /// (negative = in the past).
    #[serde(default)]
    pub retry_after_date_offset_s: Option<i64>,
}

/// A rule: when `when` holds for a request, answer with `then`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A name shown in the capture (`answered_by`) and in errors.
    #[serde(default)]
    pub name: Option<String>,
    /// The condition (empty = always).
    #[serde(default)]
    pub when: Condition,
    /// The answer. Strings in it may use `{n}` (1-based request number), `{match}` (1-based
    /// count of this rule's matches), `{last_call_id}` and `{last_output}` (the last tool output
    /// text in the input), unless `verbatim` is set.
    pub then: Step,
    /// Stop matching after this many matches.
    #[serde(default)]
    pub max_matches: Option<usize>,
    /// Send `then` as written, without filling templates (for patches or code containing
    /// `{n}`-like text).
    #[serde(default)]
    pub verbatim: bool,
}

/// A condition on a request; every field that is set must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Condition {
    /// The `type` of the last `input` item (e.g. `function_call_output`; a message without
    /// `type` counts as `message`).
    pub last_item_type: Option<String>,
    /// The `role` of the last `input` item.
    pub last_role: Option<String>,
    /// The serialized `input` contains this text.
    pub input_contains: Option<String>,
    /// The text of the last user message contains this text.
    pub last_user_text_contains: Option<String>,
    /// The last tool output (`function_call_output` / `custom_tool_call_output`) contains this.
    pub last_output_contains: Option<String>,
    /// The last `function_call` / `custom_tool_call` in the input has this name.
    pub last_call_name: Option<String>,
    /// The request offers a tool with this name.
    pub has_tool: Option<String>,
    /// The request number (1-based) is at least this.
    pub min_request: Option<usize>,
    /// The request number (1-based) is at most this.
    pub max_request: Option<usize>,
    /// The request has this header (name, case-insensitive) with exactly this value.
    pub header: Option<BTreeMap<String, String>>,
    /// The `request_kind` field of the JSON `x-codex-turn-metadata` header (`turn`,
    /// `compaction`).
    pub request_kind: Option<String>,
    /// At least one of these holds.
    pub any: Option<Vec<Condition>>,
    /// This does not hold.
    pub not: Option<Box<Condition>>,
}

fn one() -> usize {
    1
}

fn apply_patch() -> String {
    "apply_patch".to_owned()
}

// ---------------------------------------------------------------------------------------------
// Loading and validation.

impl Script {
    /// A script with these steps (then the built-in default).
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            steps: steps.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Simulates a context window (see [`ContextModel`]).
    pub fn with_context(mut self, context: ContextModel) -> Self {
        self.context = Some(context);
        self
    }

    /// Serves this model list on `GET /v1/models`.
    pub fn with_models(mut self, models: ModelList) -> Self {
        self.models = Some(models);
        self
    }

    /// Appends a rule.
    pub fn with_rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Sets the default step.
    pub fn with_default(mut self, step: Step) -> Self {
        self.default = Some(step);
        self
    }

    /// Turns the call/output pairing check off.
    pub fn without_pairing_check(mut self) -> Self {
        self.check_pairing = false;
        self
    }

    /// Reads a script file: `.json` as JSON, `.toml` as TOML, anything else by its first
    /// non-blank character (`{` = JSON).
    pub fn from_path(path: &Path) -> Result<Self, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        let json = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => true,
            Some("toml") => false,
            _ => text.trim_start().starts_with('{'),
        };
        if json {
            Self::parse_json(&text, &origin)
        } else {
            Self::parse_toml(&text, &origin)
        }
    }

    /// Parses a JSON script; `origin` names it in errors.
    pub fn parse_json(text: &str, origin: &str) -> Result<Self, ScriptError> {
        let script: Script = serde_json::from_str(text).map_err(|source| ScriptError::Json {
            origin: origin.to_owned(),
            source,
        })?;
        script.validate(origin)?;
        Ok(script)
    }

    /// Parses a TOML script; `origin` names it in errors.
    pub fn parse_toml(text: &str, origin: &str) -> Result<Self, ScriptError> {
        let script: Script = toml::from_str(text).map_err(|source| ScriptError::Toml {
            origin: origin.to_owned(),
            source: Box::new(source),
        })?;
        script.validate(origin)?;
        Ok(script)
    }

    /// Checks the combinations serde cannot (e.g. an HTTP error step with output items).
    pub fn validate(&self, origin: &str) -> Result<(), ScriptError> {
        for (i, step) in self.steps.iter().enumerate() {
            step.validate(origin, &format!("steps[{i}]"))?;
        }
        for (i, rule) in self.rules.iter().enumerate() {
            rule.then.validate(origin, &format!("rules[{i}].then"))?;
        }
        if let Some(step) = &self.default {
            step.validate(origin, "default")?;
        }
        if let Some(context) = &self.context {
            let invalid = |message: &str| ScriptError::Invalid {
                origin: origin.to_owned(),
                location: "context".to_owned(),
                message: message.to_owned(),
            };
            if context.bytes_per_token == 0 {
                return Err(invalid("`bytes_per_token` must be at least 1"));
            }
            if context.window == Some(0) {
                return Err(invalid("`window` must be at least 1"));
            }
        }
        if let Some(status) = self.models.as_ref().and_then(|models| models.status)
            && !(100..=999).contains(&status)
        {
            return Err(ScriptError::Invalid {
                origin: origin.to_owned(),
                location: "models".to_owned(),
                message: format!("`status` {status} is not an HTTP status code"),
            });
        }
        Ok(())
    }
}

impl Step {
    fn validate(&self, origin: &str, location: &str) -> Result<(), ScriptError> {
        let invalid = |message: String| ScriptError::Invalid {
            origin: origin.to_owned(),
            location: location.to_owned(),
            message,
        };
        if let Some(error) = &self.http_error {
            if !self.output.is_empty() || self.events.is_some() {
                return Err(invalid(
                    "`http_error` cannot be combined with `output` or `events`".into(),
                ));
            }
            if !(100..=999).contains(&error.status) {
                return Err(invalid(format!(
                    "status {} is not an HTTP status code",
                    error.status
                )));
            }
            if let Some(ct) = &error.content_type
                && axum::http::HeaderValue::from_str(ct).is_err()
            {
                return Err(invalid(format!(
                    "content_type {ct:?} is not a valid header value"
                )));
            }
        }
        if self.events.is_some() && !self.output.is_empty() {
            return Err(invalid(
                "`events` replaces the generated frames; leave `output` empty".into(),
            ));
        }
        if self.cut_after.is_some() && self.stall_after.is_some() {
            return Err(invalid(
                "`cut_after` and `stall_after` are exclusive".into(),
            ));
        }
        if self.abort && self.cut_after.is_none() {
            return Err(invalid("`abort` needs `cut_after`".into()));
        }
        for (name, value) in &self.headers {
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(invalid(format!("header name {name:?} is not valid")));
            }
            if axum::http::HeaderValue::from_str(value).is_err() {
                return Err(invalid(format!(
                    "header {name:?} has an invalid value {value:?}"
                )));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Builders.

impl Step {
    /// A streamed response made of these items, ending with `response.completed`.
    pub fn items(output: impl IntoIterator<Item = Output>) -> Self {
        Self {
            output: output.into_iter().collect(),
            ..Self::default()
        }
    }

    /// An assistant message (one delta).
    pub fn message(text: impl Into<String>) -> Self {
        Self::items([Output::message(text)])
    }

    /// One `function_call`; `arguments` is a JSON value (or an already-serialized JSON string).
    pub fn function_call(name: impl Into<String>, arguments: impl Into<Value>) -> Self {
        Self::items([Output::function_call(name, arguments)])
    }

    /// Several items in one response (parallel calls, reasoning + calls, ...).
    pub fn calls(calls: impl IntoIterator<Item = Output>) -> Self {
        Self::items(calls)
    }

    /// A `custom_tool_call` (`apply_patch` with this patch).
    pub fn apply_patch(patch: impl Into<String>) -> Self {
        Self::items([Output::apply_patch(patch)])
    }

    /// An `update_goal` call with this status (`complete`, `blocked`, `paused`).
    pub fn update_goal(status: &str) -> Self {
        Self::items([Output::update_goal(status)])
    }

    /// A `create_goal` call.
    pub fn create_goal(objective: &str, token_budget: Option<u64>) -> Self {
        Self::items([Output::create_goal(objective, token_budget)])
    }

    /// A `get_goal` call.
    pub fn get_goal() -> Self {
        Self::items([Output::get_goal()])
    }

    /// An HTTP error with a JSON body (`Value::Null` = empty body).
    pub fn http_error(status: u16, body: impl Into<Value>) -> Self {
        let body: Value = body.into();
        let (body, raw_body) = if body.is_null() {
            (None, Some(String::new()))
        } else {
            (Some(body), None)
        };
        Self {
            http_error: Some(HttpError {
                status,
                body,
                raw_body,
                content_type: None,
                retry_after_date_offset_s: None,
            }),
            ..Self::default()
        }
    }

    /// An HTTP error with a raw body and content type.
    pub fn http_error_raw(
        status: u16,
        body: impl Into<String>,
        content_type: impl Into<String>,
    ) -> Self {
        Self {
            http_error: Some(HttpError {
                status,
                body: None,
                raw_body: Some(body.into()),
                content_type: Some(content_type.into()),
                retry_after_date_offset_s: None,
            }),
            ..Self::default()
        }
    }

    /// The exact usage-limit 429 Codex recognises (`error.type = "usage_limit_reached"`).
    pub fn usage_limit(plan_type: Option<&str>, resets_at: Option<i64>) -> Self {
        let mut error = serde_json::Map::new();
        error.insert("type".into(), "usage_limit_reached".into());
        error.insert("message".into(), "The usage limit has been reached".into());
        if let Some(plan) = plan_type {
            error.insert("plan_type".into(), plan.into());
        }
        if let Some(at) = resets_at {
            error.insert("resets_at".into(), at.into());
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default();
            error.insert("resets_in_seconds".into(), (at - now).max(0).into());
        }
        Self::http_error(429, serde_json::json!({ "error": Value::Object(error) }))
    }

    /// A stream ending with `response.failed` carrying `error {code, message}`.
    pub fn failed(code: &str, message: &str) -> Self {
        Self {
            end: End::Failed {
                code: Some(code.into()),
                error_type: None,
                message: Some(message.into()),
            },
            ..Self::default()
        }
    }

    /// A stream ending with `response.incomplete` and this reason.
    pub fn incomplete(reason: &str) -> Self {
        Self {
            end: End::Incomplete {
                reason: reason.into(),
            },
            ..Self::default()
        }
    }

    /// A stream ending with a top-level `error` event, then EOF.
    pub fn error_event(message: &str) -> Self {
        Self {
            end: End::ErrorEvent {
                code: None,
                message: Some(message.into()),
            },
            ..Self::default()
        }
    }

    /// A stream of exactly these frames.
    pub fn events(frames: impl IntoIterator<Item = Frame>) -> Self {
        Self {
            events: Some(frames.into_iter().collect()),
            ..Self::default()
        }
    }

    /// A stream of these event JSON values (each framed with its `event:` line).
    pub fn event_values(values: impl IntoIterator<Item = Value>) -> Self {
        Self::events(values.into_iter().map(Frame::Event))
    }

    /// Appends an output item.
    pub fn with_output(mut self, output: Output) -> Self {
        self.output.push(output);
        self
    }

    /// Sets `response.completed.usage`.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Sets how the stream ends.
    pub fn with_end(mut self, end: End) -> Self {
        self.end = end;
        self
    }

    /// Sets the response id.
    pub fn with_response_id(mut self, id: impl Into<String>) -> Self {
        self.response_id = Some(id.into());
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .insert(name.into().to_ascii_lowercase(), value.into());
        self
    }

    /// Adds the `x-codex-primary-*` rate-limit headers (used percent, window minutes, reset
    /// time in Unix seconds).
    pub fn with_primary_rate_limit(
        self,
        used_percent: f64,
        window_minutes: u64,
        reset_at: i64,
    ) -> Self {
        self.with_rate_limit("primary", used_percent, window_minutes, reset_at)
    }

    /// Adds the `x-codex-secondary-*` rate-limit headers.
    pub fn with_secondary_rate_limit(
        self,
        used_percent: f64,
        window_minutes: u64,
        reset_at: i64,
    ) -> Self {
        self.with_rate_limit("secondary", used_percent, window_minutes, reset_at)
    }

    fn with_rate_limit(
        self,
        window: &str,
        used_percent: f64,
        window_minutes: u64,
        reset_at: i64,
    ) -> Self {
        self.with_header(
            format!("x-codex-{window}-used-percent"),
            used_percent.to_string(),
        )
        .with_header(
            format!("x-codex-{window}-window-minutes"),
            window_minutes.to_string(),
        )
        .with_header(format!("x-codex-{window}-reset-at"), reset_at.to_string())
    }

    /// Adds `retry-after: <seconds>`.
    pub fn retry_after_secs(self, seconds: u64) -> Self {
        self.with_header("retry-after", seconds.to_string())
    }

    /// Adds `retry-after: <HTTP date>`.
    pub fn retry_after_date(self, at: SystemTime) -> Self {
        self.with_header("retry-after", httpdate::fmt_http_date(at))
    }

    /// Adds `retry-after` as an HTTP date `offset_s` seconds from the moment of the answer.
    pub fn retry_after_date_in(mut self, offset_s: i64) -> Self {
        if let Some(error) = &mut self.http_error {
            error.retry_after_date_offset_s = Some(offset_s);
        }
        self
    }

    /// Adds `retry-after-ms`.
    pub fn retry_after_ms(self, ms: u64) -> Self {
        self.with_header("retry-after-ms", ms.to_string())
    }

    /// Waits before responding.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay_ms = duration_ms(delay);
        self
    }

    /// Waits between SSE frames.
    pub fn event_delay(mut self, delay: Duration) -> Self {
        self.event_delay_ms = duration_ms(delay);
        self
    }

    /// Keeps the connection open after the last frame.
    pub fn keep_open(mut self, duration: Duration) -> Self {
        self.keep_open_ms = duration_ms(duration);
        self
    }

    /// Ends the body cleanly after `n` frames.
    pub fn cut_after(mut self, n: usize) -> Self {
        self.cut_after = Some(n);
        self.stall_after = None;
        self
    }

    /// Drops the connection abruptly after `n` frames.
    pub fn abort_after(mut self, n: usize) -> Self {
        self.cut_after = Some(n);
        self.stall_after = None;
        self.abort = true;
        self
    }

    /// Stops sending after `n` frames and keeps the socket open.
    pub fn stall_after(mut self, n: usize) -> Self {
        self.stall_after = Some(n);
        self.cut_after = None;
        self.abort = false;
        self
    }

    /// Sends data-only frames (no `event:` lines).
    pub fn data_only(mut self) -> Self {
        self.data_only = true;
        self
    }

    /// Inserts an unparseable frame before frame `index`.
    pub fn garbage_at(mut self, index: usize) -> Self {
        self.garbage_at = Some(index);
        self
    }

    /// Leaves out `response.created`.
    pub fn without_created(mut self) -> Self {
        self.skip_created = true;
        self
    }

    /// Leaves out `output_item.added` for every item.
    pub fn without_added(mut self) -> Self {
        for output in &mut self.output {
            output.set_no_added(true);
        }
        self
    }

    /// Sends every item without an `id`.
    pub fn without_ids(mut self) -> Self {
        for output in &mut self.output {
            output.set_no_id(true);
        }
        self
    }

    /// Splits every message text into `n` deltas.
    pub fn with_deltas(mut self, n: usize) -> Self {
        for output in &mut self.output {
            if let Output::Message(m) = output {
                m.deltas = n;
            }
        }
        self
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Output {
    /// An assistant message (one delta).
    pub fn message(text: impl Into<String>) -> Self {
        Output::Message(MessageSpec {
            text: text.into(),
            deltas: 1,
            id: None,
            no_id: false,
            no_added: false,
        })
    }

    /// A `function_call`.
    pub fn function_call(name: impl Into<String>, arguments: impl Into<Value>) -> Self {
        Output::FunctionCall(CallSpec {
            name: name.into(),
            arguments: arguments.into(),
            call_id: None,
            namespace: None,
            id: None,
            no_id: false,
            no_added: false,
        })
    }

    /// A `custom_tool_call` named `apply_patch` with this patch.
    pub fn apply_patch(patch: impl Into<String>) -> Self {
        Self::custom_tool_call("apply_patch", patch)
    }

    /// A `custom_tool_call`.
    pub fn custom_tool_call(name: impl Into<String>, input: impl Into<String>) -> Self {
        Output::CustomToolCall(CustomCallSpec {
            name: name.into(),
            input: input.into(),
            call_id: None,
            id: None,
            no_id: false,
            no_added: false,
        })
    }

    /// A reasoning item with one summary part.
    pub fn reasoning(summary: impl Into<String>) -> Self {
        Output::Reasoning(ReasoningSpec {
            summary: vec![summary.into()],
            ..ReasoningSpec::default()
        })
    }

    /// `update_goal {"status": status}`.
    pub fn update_goal(status: &str) -> Self {
        Self::function_call("update_goal", serde_json::json!({ "status": status }))
    }

    /// `create_goal {"objective", "token_budget"?}`.
    pub fn create_goal(objective: &str, token_budget: Option<u64>) -> Self {
        let mut args = serde_json::json!({ "objective": objective });
        if let (Some(budget), Some(map)) = (token_budget, args.as_object_mut()) {
            map.insert("token_budget".into(), budget.into());
        }
        Self::function_call("create_goal", args)
    }

    /// `get_goal {}`.
    pub fn get_goal() -> Self {
        Self::function_call("get_goal", serde_json::json!({}))
    }

    /// Any item, verbatim.
    pub fn item(item: Value) -> Self {
        Output::Item(RawItemSpec {
            item,
            no_added: false,
        })
    }

    /// Sets the `call_id` (calls only; no effect on other items).
    pub fn call_id(mut self, call_id: impl Into<String>) -> Self {
        match &mut self {
            Output::FunctionCall(c) => c.call_id = Some(call_id.into()),
            Output::CustomToolCall(c) => c.call_id = Some(call_id.into()),
            Output::Message(_) | Output::Reasoning(_) | Output::Item(_) => {}
        }
        self
    }

    /// Sets the item id (no effect on raw items).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        let id = Some(id.into());
        match &mut self {
            Output::Message(m) => m.id = id,
            Output::FunctionCall(c) => c.id = id,
            Output::CustomToolCall(c) => c.id = id,
            Output::Reasoning(r) => r.id = id,
            Output::Item(_) => {}
        }
        self
    }

    /// Splits a message into `n` deltas; for reasoning, `n > 0` turns deltas on.
    pub fn deltas(mut self, n: usize) -> Self {
        match &mut self {
            Output::Message(m) => m.deltas = n,
            Output::Reasoning(r) => r.deltas = n > 0,
            Output::FunctionCall(_) | Output::CustomToolCall(_) | Output::Item(_) => {}
        }
        self
    }

    /// Sets `encrypted_content` (reasoning only).
    pub fn encrypted(mut self, content: impl Into<String>) -> Self {
        if let Output::Reasoning(r) = &mut self {
            r.encrypted_content = Some(content.into());
        }
        self
    }

    fn set_no_added(&mut self, value: bool) {
        match self {
            Output::Message(m) => m.no_added = value,
            Output::FunctionCall(c) => c.no_added = value,
            Output::CustomToolCall(c) => c.no_added = value,
            Output::Reasoning(r) => r.no_added = value,
            Output::Item(i) => i.no_added = value,
        }
    }

    fn set_no_id(&mut self, value: bool) {
        match self {
            Output::Message(m) => m.no_id = value,
            Output::FunctionCall(c) => c.no_id = value,
            Output::CustomToolCall(c) => c.no_id = value,
            Output::Reasoning(r) => r.no_id = value,
            Output::Item(_) => {}
        }
    }
}

impl Rule {
    /// A rule answering `then` whenever `when` holds.
    pub fn new(when: Condition, then: Step) -> Self {
        Self {
            name: None,
            when,
            then,
            max_matches: None,
            verbatim: false,
        }
    }

    /// A rule that always matches.
    pub fn always(then: Step) -> Self {
        Self::new(Condition::default(), then)
    }

    /// Names the rule.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sends the answer without filling templates.
    pub fn verbatim(mut self) -> Self {
        self.verbatim = true;
        self
    }

    /// Limits how often the rule matches.
    pub fn at_most(mut self, n: usize) -> Self {
        self.max_matches = Some(n);
        self
    }
}

impl Condition {
    /// The last input item has this `type`.
    pub fn last_item_type(item_type: &str) -> Self {
        Self {
            last_item_type: Some(item_type.into()),
            ..Self::default()
        }
    }

    /// The serialized input contains this text.
    pub fn input_contains(text: &str) -> Self {
        Self {
            input_contains: Some(text.into()),
            ..Self::default()
        }
    }

    /// The last user message contains this text.
    pub fn last_user_text_contains(text: &str) -> Self {
        Self {
            last_user_text_contains: Some(text.into()),
            ..Self::default()
        }
    }

    /// The last tool output contains this text.
    pub fn last_output_contains(text: &str) -> Self {
        Self {
            last_output_contains: Some(text.into()),
            ..Self::default()
        }
    }

    /// The last call in the input (`function_call` / `custom_tool_call`) has this name.
    pub fn last_call_name(name: &str) -> Self {
        Self {
            last_call_name: Some(name.into()),
            ..Self::default()
        }
    }

    /// The request offers a tool with this name.
    pub fn has_tool(name: &str) -> Self {
        Self {
            has_tool: Some(name.into()),
            ..Self::default()
        }
    }

    /// The request carries this header with exactly this value.
    pub fn header(name: &str, value: &str) -> Self {
        let headers = BTreeMap::from([(name.to_ascii_lowercase(), value.to_owned())]);
        Self {
            header: Some(headers),
            ..Self::default()
        }
    }

    /// Both this and `other` hold (fields of `other` that are set replace those of `self`;
    /// `any` lists are concatenated).
    pub fn and(self, other: Condition) -> Self {
        let any = match (self.any, other.any) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            (a, b) => a.or(b),
        };
        let not = match (self.not, other.not) {
            (Some(a), Some(b)) => Some(Box::new(Condition {
                any: Some(vec![*a, *b]),
                ..Condition::default()
            })),
            (a, b) => a.or(b),
        };
        let header = match (self.header, other.header) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            (a, b) => a.or(b),
        };
        Self {
            last_item_type: other.last_item_type.or(self.last_item_type),
            last_role: other.last_role.or(self.last_role),
            input_contains: other.input_contains.or(self.input_contains),
            last_user_text_contains: other
                .last_user_text_contains
                .or(self.last_user_text_contains),
            last_output_contains: other.last_output_contains.or(self.last_output_contains),
            last_call_name: other.last_call_name.or(self.last_call_name),
            has_tool: other.has_tool.or(self.has_tool),
            min_request: other.min_request.or(self.min_request),
            max_request: other.max_request.or(self.max_request),
            header,
            request_kind: other.request_kind.or(self.request_kind),
            any,
            not,
        }
    }

    /// The request's `x-codex-turn-metadata` names this `request_kind`.
    pub fn request_kind(kind: &str) -> Self {
        Self {
            request_kind: Some(kind.into()),
            ..Self::default()
        }
    }

    /// This does not hold.
    pub fn negate(self) -> Self {
        Self {
            not: Some(Box::new(self)),
            ..Self::default()
        }
    }

    /// The request number (1-based) is within `min..=max`.
    pub fn requests(min: usize, max: usize) -> Self {
        Self {
            min_request: Some(min),
            max_request: Some(max),
            ..Self::default()
        }
    }
}
