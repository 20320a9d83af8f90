//! `quest-mock-model`: a scripted OpenAI Responses API server for Quest's tests, the offline
//! demo and the benchmarks.
//!
//! It owns the *server side* of the model wire: a real HTTP/1.1 server on `127.0.0.1` that
//! answers `POST /v1/responses` from a [`Script`] (steps in order, then [`Rule`]s evaluated
//! against each request, then a default step), streams SSE frames exactly as the Responses API
//! does (`event: <type>\ndata: <json>\n\n`), can misbehave on purpose (HTTP errors with
//! `Retry-After`, cut or stalled streams, `response.failed`, garbage frames), and records every
//! request for assertions ([`MockModel::requests`], [`MockModel::wait_for_requests`], ...).
//!
//! It must not contain client logic (decoding, retries, classification live in `quest-model`)
//! and it must stay cheap to start: tests start hundreds of servers in parallel.
//!
//! ```no_run
//! # async fn demo() {
//! use quest_mock_model::{MockModel, Script, Step};
//! let mock = MockModel::start(Script::new([
//!     Step::function_call("exec_command", serde_json::json!({"cmd": "echo hi"})),
//!     Step::message("done"),
//! ]))
//! .await;
//! let base_url = mock.uri(); // http://127.0.0.1:PORT/v1
//! # let _ = base_url;
//! # }
//! ```
#![warn(missing_docs, unreachable_pub)]

mod capture;
mod error;
mod events;
mod script;
mod server;

pub use capture::{CapturedRequest, unpaired_outputs};
pub use error::{MockError, ScriptError};
pub use events::{
    GARBAGE_FRAME, custom_tool_call_item, ev_completed, ev_created, ev_custom_tool_call, ev_error,
    ev_failed, ev_function_call, ev_incomplete, ev_item_added, ev_item_done, ev_message,
    ev_output_text_delta, ev_reasoning, function_call_item, message_item, reasoning_item, sse,
};
pub use script::{
    CallSpec, Condition, CustomCallSpec, End, Frame, HttpError, MessageSpec, Output, RawItemSpec,
    ReasoningSpec, Rule, Script, Step, Usage,
};
pub use server::{MockModel, MockModelBuilder};
