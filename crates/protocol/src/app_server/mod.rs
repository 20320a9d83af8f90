//! The app-server v2 protocol (JSON-RPC over stdio, WebSocket or an in-process channel): framing
//! in [`jsonrpc`], the messages Quest implements in [`v2`]. Types only; the server lives in the
//! `quest-app-server` crate.

pub mod approvals;
pub mod jsonrpc;
pub mod v2;
