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
}

string_enum!(RoutingMode { Auto = "auto", Manual = "manual" });
string_enum!(
    /// What the account's connector must do with an outbox row.
    OutboxAction { Send = "send", Edit = "edit", Delete = "delete" }
);

/// What a channel can do; the runtime and the agent API consult it, so an action the platform
/// cannot perform is refused with `unsupported_by_channel` instead of silently dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    pub edit: bool,
    pub delete: bool,
    pub reply_keyboard: bool,
    pub inline_buttons: bool,
    pub files: bool,
    /// What the platform accepts; the connector runtime enforces it before sending.
    pub limits: Limits,
}

/// A platform's limits: text longer than `max_text_chars` is split into several messages, a
/// file over its kind's maximum is refused, and sends are paced to the two rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Characters per text message.
    pub max_text_chars: usize,
    /// Characters of a caption sent with a file (longer text goes as its own message).
    pub max_caption_chars: usize,
    /// Upload size per file kind, in bytes.
    pub max_file_bytes: FileLimits,
    /// Largest inbound file the connector can fetch from the platform, in bytes.
    pub max_download_bytes: u64,
    /// Messages to the platform overall.
    pub rate: Rate,
    /// Messages to one chat.
    pub rate_per_chat: Rate,
}

/// Upload limits per kind of file, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FileLimits {
    pub image: u64,
    pub video: u64,
    pub audio: u64,
    pub document: u64,
}

impl FileLimits {
    /// The limit for a file of this MIME type, and the name of its kind for error messages.
    pub fn for_mime(&self, mime: &str) -> (u64, &'static str) {
        match mime.split('/').next().unwrap_or_default() {
            "image" => (self.image, "images"),
            "video" => (self.video, "videos"),
            "audio" => (self.audio, "audio files"),
            _ => (self.document, "documents"),
        }
    }
}

/// `count` messages per `per_ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    pub count: u32,
    pub per_ms: u32,
}

impl Rate {
    pub const fn per_second(count: u32) -> Rate {
        Rate { count, per_ms: 1000 }
    }

    /// Messages per second (fractional for slow rates such as one per six seconds).
    pub fn per_sec(self) -> f64 {
        f64::from(self.count) * 1000.0 / f64::from(self.per_ms.max(1))
    }
}

impl Channel {
    /// The capability table (see `reference/messenger-apis.md`, cheat sheet; limits from its
    /// per-platform sections).
    pub fn capabilities(self) -> Capabilities {
        let generous = Limits {
            max_text_chars: 4096,
            max_caption_chars: 1024,
            max_file_bytes: FileLimits { image: 100 * MB, video: 100 * MB, audio: 100 * MB, document: 100 * MB },
            max_download_bytes: 100 * MB,
            rate: Rate::per_second(30),
            rate_per_chat: Rate::per_second(1),
        };
        let all = Capabilities {
            edit: true,
            delete: true,
            reply_keyboard: true,
            inline_buttons: true,
            files: true,
            limits: generous,
        };
        let no_edit = Capabilities { edit: false, delete: false, ..all };
        match self {
            // §1.4, 1.5, 1.8: photos 10 MB, other uploads 50 MB, bots download up to 20 MB;
            // about 1 message/s per chat and 30/s overall.
            Channel::Telegram => Capabilities {
                limits: Limits {
                    max_file_bytes: FileLimits { image: 10 * MB, video: 50 * MB, audio: 50 * MB, document: 50 * MB },
                    max_download_bytes: 20 * MB,
                    ..generous
                },
                ..all
            },
            // §5.3, 5.6: 9000 characters (older docs 4096: the safe value), photos 50 MB, docs
            // 200 MB, 20 requests/s per community token.
            Channel::Vk => Capabilities {
                limits: Limits {
                    max_caption_chars: 4096,
                    max_file_bytes: FileLimits { image: 50 * MB, video: 200 * MB, audio: 200 * MB, document: 200 * MB },
                    rate: Rate::per_second(20),
                    ..generous
                },
                ..all
            },
            // §2.4, 2.6: images 5 MB, video/audio 16 MB, documents 100 MB; 80 messages/s per
            // number, about one message per 6 s to one user.
            Channel::Whatsapp => Capabilities {
                limits: Limits {
                    max_file_bytes: FileLimits { image: 5 * MB, video: 16 * MB, audio: 16 * MB, document: 100 * MB },
                    rate: Rate::per_second(80),
                    rate_per_chat: Rate { count: 1, per_ms: 6000 },
                    ..generous
                },
                ..no_edit
            },
            // §4.3: text 7000, picture 1 MB with 512 characters of text, video 26 MB, file 50 MB.
            Channel::Viber => Capabilities {
                limits: Limits {
                    max_text_chars: 7000,
                    max_caption_chars: 512,
                    max_file_bytes: FileLimits { image: MB, video: 26 * MB, audio: 50 * MB, document: 50 * MB },
                    ..generous
                },
                ..no_edit
            },
            // §6: no documented limits; the hub's own 100 MB.
            Channel::Ok => no_edit,
            Channel::Webchat => all,
            Channel::Video => Capabilities {
                edit: false,
                delete: false,
                reply_keyboard: false,
                inline_buttons: false,
                files: false,
                limits: generous,
            },
        }
    }
}

/// A mebibyte: the "MB" of the platforms' file limits.
pub const MB: u64 = 1 << 20;

impl Channel {
    /// The largest file the platform takes from a bot, in bytes (`reference/messenger-apis.md`):
    /// Telegram 50 MB (any upload), WhatsApp 100 MB (documents), Viber 50 MB (`file`), VK 200 MB
    /// (documents). `None`: no platform limit below the hub's own (OK documents none; web chat
    /// and video are served by the hub itself). The file server refuses larger uploads for the
    /// channel; connectors refuse larger outbound files with a status naming the limit.
    pub fn max_file_bytes(self) -> Option<u64> {
        match self {
            Channel::Telegram | Channel::Viber => Some(50 * MB),
            Channel::Whatsapp => Some(100 * MB),
            Channel::Vk => Some(200 * MB),
            Channel::Ok | Channel::Webchat | Channel::Video => None,
        }
    }
}

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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyboard: Option<Keyboard>,
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
    fn per_kind_file_limits_stay_within_the_channel_maximum() {
        for channel in Channel::ALL {
            let limits = channel.capabilities().limits;
            let kinds = limits.max_file_bytes;
            let max = channel.max_file_bytes().unwrap_or(100 * MB);
            for limit in [kinds.image, kinds.video, kinds.audio, kinds.document] {
                assert!(limit <= max, "{channel}: {limit} > {max}");
            }
            assert!(limits.rate.per_sec() >= limits.rate_per_chat.per_sec(), "{channel}");
        }
        let telegram = Channel::Telegram.capabilities().limits;
        assert_eq!(telegram.max_file_bytes.for_mime("image/jpeg"), (10 * MB, "images"));
        assert_eq!(telegram.max_file_bytes.for_mime("application/pdf"), (50 * MB, "documents"));
        assert_eq!(telegram.rate, Rate::per_second(30));
        assert_eq!(telegram.rate_per_chat, Rate::per_second(1));
        assert_eq!(Rate { count: 1, per_ms: 6000 }.per_sec(), 1.0 / 6.0);
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
