//! Domain objects, shaped as the agent API and REST API expose them (see
//! `docs/agent-api.md`). Times are RFC 3339 UTC, ids are UUIDs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A closed set of snake_case strings stored as `text` in PostgreSQL.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue { kind: stringify!($name), value: s.to_owned() }),
                }
            }
        }
    };
}

/// A string that is not one of an enum's values.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

string_enum!(
    /// The messenger (or web chat, or video) a channel account belongs to.
    Channel { Telegram = "telegram", Whatsapp = "whatsapp", Viber = "viber", Vk = "vk", Ok = "ok", Webchat = "webchat", Video = "video" }
);
string_enum!(
    /// Where an interaction is in its life.
    InteractionState { Bot = "bot", Queued = "queued", Offered = "offered", Assigned = "assigned", Closed = "closed" }
);
string_enum!(Direction { In = "in", Out = "out" });
string_enum!(AuthorKind { Customer = "customer", Agent = "agent", Bot = "bot", System = "system" });
string_enum!(
    MessageKind { Text = "text", Image = "image", Video = "video", Audio = "audio", Voice = "voice", Sticker = "sticker", Document = "document", Location = "location", Contact = "contact" }
);
string_enum!(
    /// `received` is the status of inbound messages; outbound ones go
    /// `queued` -> `sent` -> `delivered` -> `read`, or `failed`.
    MessageStatus { Received = "received", Queued = "queued", Sent = "sent", Delivered = "delivered", Read = "read", Failed = "failed" }
);
string_enum!(AgentStatus { Ready = "ready", NotReady = "not_ready", Away = "away" });
string_enum!(
    /// `two_way`: audio and video both ways; `one_way`: the customer's audio and video reach
    /// the agent, nothing but chat goes back.
    VideoMode { TwoWay = "two_way", OneWay = "one_way" }
);
string_enum!(
    /// The cap on a call's video resolution, passed to the pages.
    VideoQuality { P480 = "480p", P720 = "720p", P1080 = "1080p", P2160 = "2160p" }
);
string_enum!(VideoRoomState { Open = "open", Ended = "ended" });
string_enum!(
    /// What a file is: what a message carries, or a call's recording. Quotas and deletion by
    /// age are per kind (`docs/fileserver.md`).
    FileKind { Chat = "chat", Recording = "recording" }
);
string_enum!(
    /// A call's recording: spooled while the call runs, processed after it, then a file of the
    /// file server (`ready`), or not (`failed`, with the reason); `deleted` by retention.
    RecordingState {
        Recording = "recording",
        Processing = "processing",
        Ready = "ready",
        Failed = "failed",
        Deleted = "deleted",
    }
);

impl VideoQuality {
    /// Width, height and the sender bitrate cap (bits/s) of the quality.
    pub fn limits(self) -> (u32, u32, u32) {
        match self {
            VideoQuality::P480 => (854, 480, 1_000_000),
            VideoQuality::P720 => (1280, 720, 2_500_000),
            VideoQuality::P1080 => (1920, 1080, 4_500_000),
            VideoQuality::P2160 => (3840, 2160, 12_000_000),
        }
    }
}

/// A video call of an interaction (see `docs/video.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoRoom {
    pub id: Uuid,
    pub interaction_id: Uuid,
    /// The agent who started it.
    pub agent: String,
    pub mode: VideoMode,
    pub quality: VideoQuality,
    pub state: VideoRoomState,
    pub link_expires_at: DateTime<Utc>,
    /// The video node hosting the media (claimed by the first join).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// Whether the call is recorded (the customer still has to consent).
    #[serde(default)]
    pub record: bool,
}

string_enum!(RoutingMode { Auto = "auto", Manual = "manual" });
string_enum!(
    /// What the account's connector must do with an outbox row.
    OutboxAction { Send = "send", Edit = "edit", Delete = "delete" }
);

pub use crate::channels::{Capabilities, Feature, FileLimits, Limits, MB, Rate};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerRef {
    pub id: Uuid,
    pub name: String,
    pub external_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    pub id: Uuid,
    pub channel: Channel,
    pub account_id: Uuid,
    pub customer: CustomerRef,
    pub state: InteractionState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub kind: AuthorKind,
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub id: Uuid,
    pub name: String,
    pub mime: String,
    pub size: i64,
    /// Path of the file on the hub's file server (`/api/v1/files/{id}`).
    pub url: String,
}

impl FileRef {
    pub fn url_for(id: Uuid) -> String {
        format!("/api/v1/files/{id}")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub phone: String,
    pub name: String,
}

/// Where a forwarded message came from, as far as the platform tells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwarded {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<DateTime<Utc>>,
}

/// Buttons attached to an outbound message: a reply keyboard (rows of texts the customer taps
/// to answer) or inline buttons (each with the data sent back when pressed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Keyboard {
    Reply { rows: Vec<Vec<ReplyButton>> },
    Inline { rows: Vec<Vec<InlineButton>> },
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyButton {
    pub text: String,
    /// Ask the customer to share their phone number (Telegram `request_contact`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub request_phone: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineButton {
    pub text: String,
    pub data: String,
}

/// A message template approved at the platform (WhatsApp), the only kind of message a
/// business may send outside the 24-hour window after the customer's last message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub name: String,
    /// The template's language code (`en`, `en_US`, `de`).
    pub language: String,
    /// The body's parameters, `{{1}}` first.
    #[serde(default)]
    pub params: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: Uuid,
    pub interaction_id: Uuid,
    pub direction: Direction,
    pub author: Author,
    pub kind: MessageKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub files: Vec<FileRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded: Option<Forwarded>,
    /// A sticker by the platform's own id (a sticker sent as a file is in `files`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticker_id: Option<String>,
    /// The earlier message of the interaction this one forwards (agent messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_of: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyboard: Option<Keyboard>,
    /// An approved template sent instead of free text (WhatsApp); `text` is its body as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Template>,
    pub status: MessageStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub login: String,
    pub name: String,
    /// Shown to customers beside the agent's name where the platform shows it (Viber, web chat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    pub roles: Vec<String>,
    pub queues: Vec<String>,
    pub max_interactions: i32,
    /// Optional per-channel caps, e.g. `{"telegram": 2}`.
    pub channel_capacity: serde_json::Map<String, serde_json::Value>,
    pub status: AgentStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub status_changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: Uuid,
    pub channel: Channel,
    pub name: String,
    pub enabled: bool,
    pub default_queue: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    pub name: String,
    pub routing_mode: RoutingMode,
    pub offer_timeout_ms: i32,
}

/// One entry of an agent's event stream, as stored and as sent on the socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEvent {
    pub seq: i64,
    pub event: String,
    pub data: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_enums_round_trip_through_text_and_json() {
        for s in AgentStatus::ALL {
            assert_eq!(s.as_str().parse::<AgentStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        let err = "busy".parse::<AgentStatus>().unwrap_err();
        assert_eq!(err.to_string(), "unknown AgentStatus \"busy\"");
    }

    #[test]
    fn keyboard_wire_shape() {
        let k: Keyboard = serde_json::from_value(serde_json::json!({
            "type": "inline", "rows": [[{"text": "Yes", "data": "y"}]]
        }))
        .unwrap();
        assert_eq!(k, Keyboard::Inline { rows: vec![vec![InlineButton { text: "Yes".into(), data: "y".into() }]] });
    }
}
