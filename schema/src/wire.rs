//! Frames of the agent WebSocket API (`/api/v1/agent/ws`); the contract is
//! `docs/agent-api.md`. Requests carry `id`, `cmd`, `args`; every request gets exactly one reply
//! matched by `re`; events carry a per-agent gap-free `seq`.

use serde::{Deserialize, Serialize};

/// A client's request. `args` is decoded per command by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub cmd: String,
    #[serde(default)]
    pub args: serde_json::Value,
}

/// A stable error code plus a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// The server's answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's `id`; `null` when the frame was not a request with an id.
    pub re: Option<String>,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Reply {
    pub fn ok(re: impl Into<String>, data: serde_json::Value) -> Self {
        Reply { re: Some(re.into()), ok: true, data: Some(data), error: None }
    }

    pub fn err(re: Option<String>, code: &str, message: impl Into<String>) -> Self {
        Reply { re, ok: false, data: None, error: Some(ErrorBody { code: code.to_owned(), message: message.into() }) }
    }
}

/// A server-pushed event. `seq` increases by one per agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: i64,
    pub event: String,
    pub data: serde_json::Value,
}

/// A live update (extension): the newest state of something the client asked to watch
/// (`supervisor.overview` with `live: true`). Not part of the event stream: no `seq`, never
/// stored or replayed; a newer update supersedes an older one the client has not read yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub update: String,
    pub data: serde_json::Value,
}
