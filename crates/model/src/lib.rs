//! Quest's OpenAI Responses API client.
//!
//! This crate owns everything between a [`Prompt`] and the items a model returns: provider
//! configuration (`[model_providers.<id>]`), the request (`POST {base_url}/responses`, headers,
//! body), SSE decoding into typed events, the two retry layers with backoff and server hints,
//! and the error taxonomy ([`ModelError`]) with the messages users see.
//!
//! It must not know about threads, goals, tools or rendering: callers pass the full history
//! and headers in, and decide what an error means for their turn. It never retries a usage
//! limit, and every visible retry is reported through [`ResponseEvent::Retrying`].
#![warn(missing_docs, unreachable_pub)]

mod body;
mod client;
mod error;
mod long_strings;
mod model_list;
mod provider;
pub mod retry;
pub mod sse;
mod trace;

pub use body::{EncodedItems, RequestBody, request_body};
pub use client::{
    ClientOptions, ModelClient, Prompt, RequestAttempt, ResponseEvent, ResponseMeta,
    ResponseOutcome, user_agent,
};
pub use error::{ModelError, usage_limit_message};
pub use model_list::{ListedWindow, ModelListError, context_window_from_model_list};
pub use provider::{
    DEFAULT_REQUEST_MAX_RETRIES, DEFAULT_STREAM_IDLE_TIMEOUT_MS, DEFAULT_STREAM_MAX_RETRIES,
    MAX_RETRIES_CAP, ModelProviderInfo, OPENAI_BASE_URL, WireApi, built_in_model_providers,
};
pub use trace::{inject_current_context, inject_span_context};
