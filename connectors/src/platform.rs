//! What the runtime needs from a channel module to deliver outbox work.

use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use schema::domain::{FileRef, Keyboard};

/// Why one platform request failed, as the runtime acts on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The platform asked to wait (Telegram 429 `retry_after`).
    #[error("rate limited by the platform: retry after {0:?}")]
    RetryAfter(Duration),
    /// Worth trying again with backoff: network errors, 5xx, unparseable answers.
    #[error("{0}")]
    Transient(String),
    /// Will never work: the platform's reason (a 4xx description).
    #[error("{0}")]
    Permanent(String),
}

/// A file to upload with a message.
#[derive(Debug, Clone)]
pub struct OutFile {
    pub meta: FileRef,
    pub bytes: Bytes,
}

/// One platform message: a text, or a file with an optional caption.
#[derive(Debug, Clone, Default)]
pub struct Part {
    /// The text, or the file's caption.
    pub text: Option<String>,
    pub file: Option<OutFile>,
    /// Buttons to attach (the last part of a message carries them).
    pub keyboard: Option<Keyboard>,
    /// The platform id of the message this one answers (the first part carries it).
    pub reply_to: Option<String>,
}

/// A channel's outbound side. Every method is one platform request, so the runtime can pace
/// each of them.
#[async_trait]
pub trait Outbound: Send + Sync + 'static {
    /// Sends one part to `chat_id`; returns the platform's id of the new message.
    async fn send(&self, chat_id: &str, part: Part) -> Result<String, SendError>;

    /// Replaces the text (or, for a file message, the caption) of a message sent before.
    async fn edit(&self, chat_id: &str, external_id: &str, text: &str, caption: bool) -> Result<(), SendError>;

    /// Deletes a message sent before.
    async fn delete(&self, chat_id: &str, external_id: &str) -> Result<(), SendError>;
}
