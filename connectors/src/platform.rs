//! What the runtime needs from a channel module to deliver outbox work.

use std::time::Duration;

use async_trait::async_trait;
use schema::domain::{Contact, FileRef, Keyboard, Location, Template};
use url::Url;

use crate::files::ByteStream;

/// Why one platform request failed, as the runtime acts on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The platform asked to wait (Telegram 429 `retry_after`, Viber status 12).
    #[error("rate limited by the platform: retry after {0:?}")]
    RetryAfter(Duration),
    /// Worth trying again with backoff: network errors, 5xx, unparseable answers.
    #[error("{0}")]
    Transient(String),
    /// Will never work: the platform's reason (a 4xx description).
    #[error("{0}")]
    Permanent(String),
}

/// How a channel takes outbound files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileDelivery {
    /// The bytes are uploaded with the request (Telegram): the runtime streams them from the
    /// file server.
    Upload,
    /// The platform fetches the file by URL (Viber, OK, the web chat's widget): the runtime
    /// hands over a short-lived signed link.
    Link,
}

/// How long a signed link handed to a platform works.
pub const LINK_TTL: Duration = Duration::from_secs(3600);

/// The bytes of an outbound file, as the channel takes them.
pub enum FileBody {
    /// Streamed from the file server as the request goes out.
    Stream(ByteStream),
    /// A signed link the platform fetches, valid for [`LINK_TTL`].
    Link(Url),
}

impl std::fmt::Debug for FileBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileBody::Stream(_) => f.write_str("Stream(..)"),
            FileBody::Link(url) => write!(f, "Link({})", url.path()),
        }
    }
}

/// A file sent with a message.
#[derive(Debug)]
pub struct OutFile {
    pub meta: FileRef,
    pub body: FileBody,
}

/// Who the customer sees as the sender, where the platform shows it per message (Viber).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderProfile {
    pub name: String,
    pub avatar_url: Option<String>,
}

/// One platform message: a text, a file with an optional caption, a location, a contact, a
/// sticker, or a forward of an earlier message.
#[derive(Debug, Default)]
pub struct Part {
    /// The text, or the file's caption.
    pub text: Option<String>,
    pub file: Option<OutFile>,
    /// The file is a sticker (Telegram's `sendSticker`).
    pub as_sticker: bool,
    pub location: Option<Location>,
    pub contact: Option<Contact>,
    /// A sticker by the platform's own id.
    pub sticker_id: Option<String>,
    /// Forward (or copy) the message with this platform id, of the same chat.
    pub forward_of: Option<String>,
    /// An approved template (WhatsApp), sent alone; `text` is its body as the agent saw it.
    pub template: Option<Template>,
    /// Buttons to attach (the last part of a message carries them).
    pub keyboard: Option<Keyboard>,
    /// The platform id of the message this one answers (the first part carries it).
    pub reply_to: Option<String>,
    /// The agent's name and avatar (every part carries them).
    pub sender: Option<SenderProfile>,
    /// Stable for this part of this outbox row across attempts and leaders
    /// (`<outbox row>:<part>`): platforms that deduplicate sends (VK's `random_id`) derive
    /// their key from it, so a retry after a failover is absorbed by the platform.
    pub idempotency_key: String,
}

/// A channel's outbound side. Every method is one platform request, so the runtime can pace
/// each of them.
#[async_trait]
pub trait Outbound: Send + Sync + 'static {
    /// How this channel takes files.
    fn file_delivery(&self) -> FileDelivery {
        FileDelivery::Upload
    }

    /// Whether a file of this MIME type can carry the message's text as its caption (Viber's
    /// `file` messages have none: the text then goes as a message of its own, before the file).
    fn takes_caption(&self, _mime: &str) -> bool {
        true
    }

    /// Sends one part to `chat_id`; returns the platform's id of the new message.
    async fn send(&self, chat_id: &str, part: Part) -> Result<String, SendError>;

    /// Replaces the text (or, for a file message, the caption) of a message sent before.
    async fn edit(&self, chat_id: &str, external_id: &str, text: &str, caption: bool) -> Result<(), SendError>;

    /// Deletes a message sent before.
    async fn delete(&self, chat_id: &str, external_id: &str) -> Result<(), SendError>;
}
