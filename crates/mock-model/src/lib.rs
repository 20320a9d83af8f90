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
//!
//! # Script files
//!
//! The binary (`quest-mock-model --script FILE`) and [`Script::from_path`] read the same shape
//! in TOML or JSON (see `crates/mock-model/scripts/` for complete examples). Unknown keys are
//! errors; error messages name the file, the line/column or the step (`steps[2]`,
//! `rules[0].then`, `default`).
//!
//! ```toml
//! check_pairing = true                      # default: reject unpaired outputs and unanswered calls (400)
//!
//! [[steps]]                                 # one step per request, in order
//! output = [
//!   { type = "reasoning", summary = ["plan"], encrypted_content = "gAAAA", deltas = true },
//!   { type = "function_call", name = "exec_command", arguments = { cmd = "echo hi" }, call_id = "call_1" },
//!   { type = "custom_tool_call", input = "*** Begin Patch\n*** End Patch\n" },   # apply_patch
//!   { type = "message", text = "hi", deltas = 2, no_added = false, no_id = false },
//!   { type = "item", item = { type = "web_search_call", id = "ws_1" } },          # verbatim
//! ]
//! usage = { input_tokens = 1200, cached_tokens = 1000, output_tokens = 7, reasoning_tokens = 0 }
//! headers = { "x-codex-turn-state" = "ts-1" }
//! # end = { kind = "completed" } (default) | { kind = "failed", code = "server_error",
//! #   error_type = "...", message = "..." } | { kind = "incomplete", reason = "max_output_tokens" }
//! #   | { kind = "error_event", message = "..." } | { kind = "eof" }
//! # delay_ms, event_delay_ms, keep_open_ms, cut_after = N (+ abort = true), stall_after = N,
//! # data_only = true, garbage_at = N, skip_created = true, response_id = "resp_x",
//! # events = [{ event = {...} }, { data = {...} }, { raw = "..." }]   (replaces output/end)
//!
//! [[steps]]
//! http_error = { status = 429, body = { error = { type = "usage_limit_reached", resets_at = 1795518360 } } }
//! # raw_body = "...", content_type = "text/plain", retry_after_date_offset_s = -60
//! headers = { "retry-after" = "1" }
//!
//! [[rules]]                                 # after the steps: first matching rule answers
//! name = "after a tool"
//! when = { last_item_type = "function_call_output" }
//! # also: last_role, input_contains, last_user_text_contains, last_output_contains,
//! # last_call_name, has_tool, min_request, max_request, header = { name = "value" },
//! # any = [ {...}, {...} ], not = {...};  max_matches = N on the rule
//! then = { output = [{ type = "message", text = "turn {n}, match {match}, saw {last_output}" }] }
//!
//! [default]                                 # when nothing else answers
//! output = [{ type = "message", text = "done" }]
//!
//! [models]                                  # GET /v1/models (default: an empty list)
//! data = [{ id = "local-llm", context_window = 20000 }]   # entries, verbatim
//! # status = 404 (an error answer), raw_body = "not json", delay_ms = N
//! ```
//!
//! Model-list requests are recorded apart from model calls
//! ([`MockModel::model_list_requests`]): they never change [`MockModel::request_count`].
//!
//! Default ids are unique per request: `resp_{n}`, `msg_{n}_{i}`, `fc_{n}_{i}`, `ctc_{n}_{i}`,
//! `rs_{n}_{i}` and call ids `call_{n}_{i}` (`n` = 1-based request number, `i` = output index).
//! Templates (`{n}`, `{match}`, `{last_call_id}`, `{last_output}`) are filled in the answers of
//! rules (unless the rule says `verbatim = true`) and in the default step; listed steps are sent
//! as written.
#![warn(missing_docs, unreachable_pub)]

mod capture;
mod error;
mod events;
mod script;
mod server;

pub use capture::{CapturedRequest, unanswered_calls, unpaired_outputs};
pub use error::{MockError, ScriptError};
pub use events::{
    GARBAGE_FRAME, custom_tool_call_item, ev_completed, ev_created, ev_custom_tool_call, ev_error,
    ev_failed, ev_function_call, ev_incomplete, ev_item_added, ev_item_done, ev_message,
    ev_output_text_delta, ev_reasoning, function_call_item, message_item, reasoning_item, sse,
};
pub use script::{
    CallSpec, Condition, ContextModel, CustomCallSpec, End, Frame, HttpError, MessageSpec,
    ModelList, Output, RawItemSpec, ReasoningSpec, Rule, Script, Step, Usage,
};
pub use server::{MockModel, MockModelBuilder};
