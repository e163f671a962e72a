//! What each channel can do and how much it takes: the product's capability matrix (one
//! [`Feature`] per line, with the seed's answer per messenger) and the hub's own answer
//! ([`Capabilities::has`]), plus the limits ([`Limits`]) the runtime enforces.
//!
//! The chatserver refuses at `message.send` whatever the channel does not do
//! (`unsupported_by_channel`, naming the channel and the feature) and every file over its kind's
//! limit, before anything is queued; the connectors split long texts and pace sends to the
//! rates. `docs/channels.md` is generated from this table (and checked by a test). The seed's
//! matrix in English is `docs/design.md#the-capability-matrix`; the platforms' own limits are
//! in `docs/platforms.md`.

use serde::{Deserialize, Serialize};

use crate::domain::{Channel, Keyboard};

/// A mebibyte: the "MB" of the platforms' file limits.
pub const MB: u64 = 1 << 20;

/// `48213` -> `"47.1 KB"`, `10485760` -> `"10 MB"`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else if value.fract() < 0.05 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// What the product's matrix says of a feature on a messenger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seed {
    /// "Да": the platform does it and the product promises it.
    Yes,
    /// "Возможно": the platform allows it; the hub must do it.
    Possible,
    /// "Не поддерживает": the platform cannot; the hub refuses it clearly.
    No,
}

impl Seed {
    pub fn as_str(self) -> &'static str {
        match self {
            Seed::Yes => "yes",
            Seed::Possible => "possible",
            Seed::No => "no",
        }
    }
}

macro_rules! features {
    ($($variant:ident = $label:literal, [$($seed:ident),*];)+) => {
        /// One line of the capability matrix.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Feature {
            $($variant),+
        }

        impl Feature {
            /// Every line, in the matrix's order.
            pub const ALL: &'static [Feature] = &[$(Feature::$variant),+];

            /// How the matrix names it (also the text of `unsupported_by_channel` errors).
            pub fn label(self) -> &'static str {
                match self { $(Feature::$variant => $label),+ }
            }

            /// The seed's answer for Telegram, WhatsApp, Viber, VK and OK, in that order.
            fn seed_row(self) -> [Seed; 5] {
                match self { $(Feature::$variant => [$(Seed::$seed),*]),+ }
            }
        }
    };
}

// The seed's matrix, line by line: Telegram, WhatsApp, Viber, VK, OK.
features! {
    Chat = "text conversation", [Yes, Yes, Yes, Yes, Yes];
    CustomerPhone = "the customer's phone", [Yes, Yes, Yes, No, No];
    ReplyKeyboard = "reply keyboards", [Yes, No, Yes, Yes, No];
    InlineButtons = "inline buttons", [Yes, No, No, No, No];
    EditDeleteOwn = "editing and deleting the agent's messages", [Possible, No, No, Possible, No];
    EditDeleteOthers = "editing and deleting the customer's messages", [No, No, No, No, No];
    StartedByAgent = "conversations started by the agent", [Yes, Yes, Yes, Yes, Yes];
    ReceiptSent = "receipt: accepted by the platform", [Possible, Possible, Possible, Possible, Possible];
    ReceiptDelivered = "receipt: delivered to the customer", [No, No, Possible, No, No];
    ReceiptRead = "receipt: read by the customer", [No, No, Possible, No, No];
    CustomerAvatar = "the customer's avatar", [Possible, Possible, Possible, Yes, No];
    AgentAvatar = "the agent's name and avatar", [No, No, Yes, No, No];
    BotBuilder = "bot flows", [Possible, Possible, Possible, Possible, Possible];
    Emoji = "emoji", [Yes, Yes, Yes, Yes, Yes];
    ReceiveImages = "receiving images", [Yes, Yes, Yes, Yes, Yes];
    SendImages = "sending images", [Yes, Yes, Yes, Yes, Yes];
    ReceiveVideo = "receiving video", [Yes, Yes, Yes, Yes, Yes];
    SendVideo = "sending video", [Possible, Possible, Possible, Possible, Possible];
    ReceiveStickers = "receiving stickers", [Yes, Yes, Yes, Yes, No];
    SendStickers = "sending stickers", [Possible, Possible, Possible, Possible, No];
    ReceiveDocuments = "receiving documents", [Yes, Yes, Yes, Yes, No];
    SendDocuments = "sending documents", [Yes, Yes, Yes, Yes, No];
    ReceiveAudio = "receiving audio", [Yes, No, No, No, No];
    SendAudio = "sending audio", [Yes, No, No, No, No];
    ReceiveVoice = "receiving voice messages", [Yes, No, No, Yes, No];
    SendVoice = "sending voice messages", [Possible, No, No, Possible, No];
    ReceiveContact = "receiving contacts", [Yes, No, Yes, No, No];
    SendContact = "sending contacts", [Yes, No, Yes, No, No];
    ReceiveLocation = "receiving locations", [Yes, No, Yes, Possible, No];
    SendLocation = "sending locations", [Yes, No, Yes, Possible, No];
    ShowForwarded = "showing forwarded messages", [Yes, Possible, No, Yes, No];
    Forward = "forwarding messages", [Possible, Possible, No, Possible, No];
}

impl Feature {
    /// The seed's answer for a messenger; `None` for the hub's own channels (web chat, video),
    /// which the seed does not list.
    pub fn seed(self, channel: Channel) -> Option<Seed> {
        let row = self.seed_row();
        match channel {
            Channel::Telegram => Some(row[0]),
            Channel::Whatsapp => Some(row[1]),
            Channel::Viber => Some(row[2]),
            Channel::Vk => Some(row[3]),
            Channel::Ok => Some(row[4]),
            Channel::Webchat | Channel::Video => None,
        }
    }
}

/// The messengers of the seed's matrix, in its column order.
pub const MESSENGERS: &[Channel] = &[Channel::Telegram, Channel::Whatsapp, Channel::Viber, Channel::Vk, Channel::Ok];

/// What a channel does in the hub, and its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    features: u64,
    /// What the platform accepts; checked at `message.send` and enforced by the connector.
    pub limits: Limits,
}

impl Capabilities {
    const fn of(features: &[Feature], limits: Limits) -> Capabilities {
        let mut bits = 0u64;
        let mut i = 0;
        while i < features.len() {
            bits |= 1 << features[i] as u64;
            i += 1;
        }
        Capabilities { features: bits, limits }
    }

    /// Whether the hub does `feature` on this channel.
    pub fn has(&self, feature: Feature) -> bool {
        self.features & (1 << feature as u64) != 0
    }

    /// Every file kind a channel can send goes through its file limits.
    pub fn sends_files(&self) -> bool {
        [Feature::SendImages, Feature::SendVideo, Feature::SendDocuments, Feature::SendAudio, Feature::SendVoice]
            .iter()
            .any(|f| self.has(*f))
    }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

    /// The largest of the four.
    pub fn max(&self) -> u64 {
        self.image.max(self.video).max(self.audio).max(self.document)
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

/// What an account's `settings.limits` may change (any subset).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitOverrides {
    pub rate: Option<Rate>,
    pub rate_per_chat: Option<Rate>,
    pub max_text_chars: Option<usize>,
    pub max_image_bytes: Option<u64>,
    pub max_video_bytes: Option<u64>,
    pub max_audio_bytes: Option<u64>,
    pub max_document_bytes: Option<u64>,
}

/// Why an account's limit overrides cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("accounts.settings.limits: {0}")]
pub struct BadLimits(pub String);

impl Limits {
    /// The channel's limits with the account's overrides (`settings.limits`, any subset). A
    /// rate of zero, a text limit under 2 characters or a malformed value is refused.
    pub fn for_account(channel: Channel, settings: &serde_json::Value) -> Result<Limits, BadLimits> {
        let mut limits = channel.capabilities().limits;
        let Some(raw) = settings.get("limits") else { return Ok(limits) };
        let o: LimitOverrides = serde_json::from_value(raw.clone()).map_err(|e| BadLimits(e.to_string()))?;
        for (name, rate) in [("rate", o.rate), ("rate_per_chat", o.rate_per_chat)] {
            if let Some(rate) = rate
                && (rate.count == 0 || rate.per_ms == 0)
            {
                return Err(BadLimits(format!("{name} must allow at least one message per period")));
            }
        }
        if let Some(rate) = o.rate {
            limits.rate = rate;
        }
        if let Some(rate) = o.rate_per_chat {
            limits.rate_per_chat = rate;
        }
        if let Some(max) = o.max_text_chars {
            if max < 2 {
                return Err(BadLimits("max_text_chars must be at least 2".into()));
            }
            limits.max_text_chars = max;
        }
        let files = &mut limits.max_file_bytes;
        for (slot, value) in [
            (&mut files.image, o.max_image_bytes),
            (&mut files.video, o.max_video_bytes),
            (&mut files.audio, o.max_audio_bytes),
            (&mut files.document, o.max_document_bytes),
        ] {
            if let Some(value) = value {
                *slot = value;
            }
        }
        Ok(limits)
    }
}

/// A limit as the seed states it, per messenger: messages per second, text characters, video,
/// photo and other files in MB (`None`: the seed gives no figure).
pub struct SeedLimits {
    pub rate: Option<&'static str>,
    pub text: Option<u32>,
    pub video_mb: Option<u32>,
    pub photo_mb: Option<u32>,
    pub file_mb: Option<u32>,
}

/// The seed's limits table.
pub fn seed_limits(channel: Channel) -> Option<SeedLimits> {
    let none = SeedLimits { rate: None, text: None, video_mb: None, photo_mb: None, file_mb: None };
    Some(match channel {
        Channel::Telegram => {
            SeedLimits { rate: Some("30"), text: Some(4000), video_mb: Some(50), photo_mb: Some(10), file_mb: Some(50) }
        }
        Channel::Viber => {
            SeedLimits { rate: None, text: Some(8000), video_mb: Some(50), photo_mb: Some(1), file_mb: Some(50) }
        }
        Channel::Vk => SeedLimits {
            rate: Some("3, up to 72 in some cases"),
            text: Some(4000),
            video_mb: Some(200),
            photo_mb: Some(50),
            file_mb: Some(200),
        },
        Channel::Whatsapp | Channel::Ok => none,
        Channel::Webchat | Channel::Video => return None,
    })
}

/// Why a channel's defaults differ from the seed's table (shown under the generated table).
pub fn limit_notes(channel: Channel) -> &'static [&'static str] {
    match channel {
        Channel::Telegram => &[
            "Text: the seed's 4000 characters, under the Bot API's 4096; captions 1024 (Bot API).",
            "Rate: 30 messages/s overall and 1/s per chat (the Bot API FAQ). Bots download files up to 20 MB.",
        ],
        Channel::Whatsapp => &[
            "The seed gives no figures: the Cloud API's 80 messages/s per number and about 1 message per 6 s to one customer; images 5 MB, video and audio 16 MB, documents 100 MB; text 4096.",
            "Free-form messages only within 24 hours of the customer's last message (refused at message.send with outside_service_window, saying when it closed); an approved template (message.send's template) at any time.",
            "Not built although the seed says possible: the customer's avatar (neither the Cloud API nor Infobip gives a profile picture) and forwarding (WhatsApp has no forward for businesses).",
        ],
        Channel::Viber => &[
            "Text: the seed says 8000 characters, the REST Bot API takes 7000: the lower binds, longer texts are split at 7000.",
            "Video: the seed says 50 MB, Viber's documented limit is 26 MB: the lower binds. Pictures 1 MB with at most 512 characters of text; files 50 MB.",
            "Rate: the seed gives none and Viber documents no per-second limit; 30/s by default (an account can change it), and Viber's own rule of at most 100 messages an hour to a customer who has not answered is reported as a failure.",
        ],
        Channel::Vk => &[
            "Rate: the seed's 3 messages/s; an account may raise it up to the 72/s some communities get (settings.limits.rate; a higher rate is refused). VK counts every API call (a file is three or four), and its error 6 (too many requests per second) or 9 (flood control) is a wait, never a failure.",
            "Text 4000 characters (the seed; VK's schema allows 9000, older documents 4096). Photos 50 MB, video and other files 200 MB (the seed); video goes as a document, as a community token cannot upload videos.",
        ],
        Channel::Ok => &[
            "The seed gives no figures and OK documents no rate limit: 5 messages/s by default and 1/s per chat, a conservative start an account can change in settings.limits; OK's flood answers are waits, never failures. Text 4000 characters, images 10 MB, video 100 MB (no figure documented either).",
            "Keyboards: OK has one kind, buttons under a message (at most 5 attachments a message, the keyboard one of them). The hub sends reply keyboards and inline buttons as such buttons, beyond the seed; a reply button's press comes back as the customer's text, and a request_phone button is OK's REQUEST_CONTACT, which gives the customer's phone (also beyond the seed).",
        ],
        Channel::Webchat | Channel::Video => &[],
    }
}

const fn limits(text: usize, caption: usize, files: FileLimits, download: u64, rate: Rate, per_chat: Rate) -> Limits {
    Limits {
        max_text_chars: text,
        max_caption_chars: caption,
        max_file_bytes: files,
        max_download_bytes: download,
        rate,
        rate_per_chat: per_chat,
    }
}

use Feature::*;

const TELEGRAM: Capabilities = Capabilities::of(
    &[
        Chat,
        BotBuilder,
        CustomerPhone,
        ReplyKeyboard,
        InlineButtons,
        EditDeleteOwn,
        StartedByAgent,
        ReceiptSent,
        CustomerAvatar,
        Emoji,
        ReceiveImages,
        SendImages,
        ReceiveVideo,
        SendVideo,
        ReceiveStickers,
        SendStickers,
        ReceiveDocuments,
        SendDocuments,
        ReceiveAudio,
        SendAudio,
        ReceiveVoice,
        SendVoice,
        ReceiveContact,
        SendContact,
        ReceiveLocation,
        SendLocation,
        ShowForwarded,
        Forward,
    ],
    limits(
        4000,
        1024,
        FileLimits { image: 10 * MB, video: 50 * MB, audio: 50 * MB, document: 50 * MB },
        20 * MB,
        Rate::per_second(30),
        Rate::per_second(1),
    ),
);

const VIBER: Capabilities = Capabilities::of(
    &[
        Chat,
        BotBuilder,
        CustomerPhone,
        ReplyKeyboard,
        StartedByAgent,
        ReceiptSent,
        ReceiptDelivered,
        ReceiptRead,
        CustomerAvatar,
        AgentAvatar,
        Emoji,
        ReceiveImages,
        SendImages,
        ReceiveVideo,
        SendVideo,
        ReceiveStickers,
        SendStickers,
        ReceiveDocuments,
        SendDocuments,
        ReceiveContact,
        SendContact,
        ReceiveLocation,
        SendLocation,
    ],
    limits(
        7000,
        512,
        FileLimits { image: MB, video: 26 * MB, audio: 50 * MB, document: 50 * MB },
        50 * MB,
        Rate::per_second(30),
        Rate::per_second(1),
    ),
);

const VK: Capabilities = Capabilities::of(
    &[
        Chat,
        BotBuilder,
        ReplyKeyboard,
        // beyond the seed: VK's inline keyboards with callback buttons (messages.send `keyboard`
        // with `inline`; a press is a `message_event`)
        InlineButtons,
        EditDeleteOwn,
        StartedByAgent,
        ReceiptSent,
        CustomerAvatar,
        Emoji,
        ReceiveImages,
        SendImages,
        ReceiveVideo,
        SendVideo,
        ReceiveStickers,
        SendStickers,
        ReceiveDocuments,
        SendDocuments,
        ReceiveVoice,
        SendVoice,
        ReceiveLocation,
        SendLocation,
        ShowForwarded,
        Forward,
    ],
    limits(
        4000,
        4000,
        FileLimits { image: 50 * MB, video: 200 * MB, audio: 200 * MB, document: 200 * MB },
        200 * MB,
        Rate::per_second(3),
        Rate::per_second(1),
    ),
);

/// WhatsApp (Meta's Cloud API, or a provider such as Infobip). Beyond the seed, where the
/// Cloud API and Infobip carry it: delivered and read receipts, audio and voice, contacts,
/// locations, and interactive reply buttons and lists (the inline-buttons line: buttons on the
/// message, whose id comes back). Not built: the customer's avatar (neither API gives it) and
/// forwarding (WhatsApp has no forward for businesses).
const WHATSAPP: Capabilities = Capabilities::of(
    &[
        Chat,
        BotBuilder,
        CustomerPhone,
        InlineButtons,
        StartedByAgent,
        ReceiptSent,
        ReceiptDelivered,
        ReceiptRead,
        Emoji,
        ReceiveImages,
        SendImages,
        ReceiveVideo,
        SendVideo,
        ReceiveStickers,
        SendStickers,
        ReceiveDocuments,
        SendDocuments,
        ReceiveAudio,
        SendAudio,
        ReceiveVoice,
        SendVoice,
        ReceiveContact,
        SendContact,
        ReceiveLocation,
        SendLocation,
        ShowForwarded,
    ],
    limits(
        4096,
        1024,
        FileLimits { image: 5 * MB, video: 16 * MB, audio: 16 * MB, document: 100 * MB },
        100 * MB,
        Rate::per_second(80),
        Rate { count: 1, per_ms: 6000 },
    ),
);

const OK: Capabilities = Capabilities::of(
    &[
        Chat,
        BotBuilder,
        // beyond the seed: OK's one kind of keyboard, the buttons under a message
        // (`INLINE_KEYBOARD`): CALLBACK buttons carry inline buttons (a press is a
        // `MESSAGE_CALLBACK`) and reply buttons (a press comes back as the customer's text),
        // LINK buttons open a web link, and a REQUEST_CONTACT button asks for the customer's
        // phone, which comes back as a `CONTACT` attachment
        CustomerPhone,
        ReplyKeyboard,
        InlineButtons,
        StartedByAgent,
        ReceiptSent,
        Emoji,
        ReceiveImages,
        SendImages,
        ReceiveVideo,
        SendVideo,
    ],
    limits(
        4000,
        4000,
        FileLimits { image: 10 * MB, video: 100 * MB, audio: 100 * MB, document: 100 * MB },
        100 * MB,
        Rate::per_second(5),
        Rate::per_second(1),
    ),
);

/// The web chat: the hub is the platform, and the widget shows everything a browser can.
const WEBCHAT: Capabilities = Capabilities::of(
    &[
        Chat,
        BotBuilder,
        ReplyKeyboard,
        InlineButtons,
        EditDeleteOwn,
        ReceiptSent,
        ReceiptDelivered,
        ReceiptRead,
        AgentAvatar,
        Emoji,
        ReceiveImages,
        SendImages,
        ReceiveVideo,
        SendVideo,
        ReceiveDocuments,
        SendDocuments,
        ReceiveAudio,
        SendAudio,
        ReceiveVoice,
        SendVoice,
    ],
    limits(
        4096,
        4096,
        FileLimits { image: 100 * MB, video: 100 * MB, audio: 100 * MB, document: 100 * MB },
        100 * MB,
        Rate::per_second(30),
        Rate::per_second(10),
    ),
);

/// A video interaction carries the call's invitation link and chat text only.
const VIDEO: Capabilities = Capabilities::of(
    &[Chat, StartedByAgent, Emoji],
    limits(
        4096,
        1024,
        FileLimits { image: 100 * MB, video: 100 * MB, audio: 100 * MB, document: 100 * MB },
        100 * MB,
        Rate::per_second(30),
        Rate::per_second(1),
    ),
);

/// WhatsApp's customer-service window: 24 hours after the customer's last message.
pub const WHATSAPP_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl Channel {
    /// How long after the customer's last message the business may send free-form messages;
    /// `None`: no such window. Outside it only templates go out.
    pub fn service_window(self) -> Option<std::time::Duration> {
        match self {
            Channel::Whatsapp => Some(WHATSAPP_WINDOW),
            _ => None,
        }
    }

    /// Whether agents can send the platform's approved message templates (`message.send`'s
    /// `template`).
    pub fn takes_templates(self) -> bool {
        matches!(self, Channel::Whatsapp)
    }

    /// What the hub does on this channel, and its default limits.
    pub fn capabilities(self) -> Capabilities {
        match self {
            Channel::Telegram => TELEGRAM,
            Channel::Viber => VIBER,
            Channel::Vk => VK,
            Channel::Whatsapp => WHATSAPP,
            Channel::Ok => OK,
            Channel::Webchat => WEBCHAT,
            Channel::Video => VIDEO,
        }
    }

    /// The largest file the platform takes from the hub, in bytes (the largest of its per-kind
    /// limits). The file server refuses larger uploads for the channel.
    pub fn max_file_bytes(self) -> Option<u64> {
        match self {
            Channel::Webchat | Channel::Video => None,
            other => Some(other.capabilities().limits.max_file_bytes.max()),
        }
    }
}

/// `docs/channels.md`: the capability matrix with the seed's answer and this build's in every
/// cell, then the limits. `built` are the channels this build has a connector for.
pub fn channels_markdown(built: &[Channel]) -> String {
    use std::fmt::Write;
    let columns: Vec<Channel> = MESSENGERS.iter().copied().chain([Channel::Webchat]).collect();
    let mut out = String::new();
    out.push_str(
        "# Channels: what each one does\n\n\
         <!-- Generated from schema/src/channels.rs by `cargo test -p connectors --test channels_doc`\n\
         (set SWITCHBOARD_WRITE_DOCS=1 to rewrite it); the test fails when this page and the code differ. -->\n\n\
         The product's capability matrix, line by line: the seed's answer for each messenger\n\
         (yes, possible: the platform allows it and the hub must do it, no: the platform cannot),\n\
         then what this build does. Whatever a channel does not do is refused at `message.send` with\n\
         `unsupported_by_channel`, naming the channel and the feature, before anything is queued.\n\n\
         - **✓** the hub does it;\n\
         - **✗ refused** the platform cannot, and the hub says so;\n\
         - **✓ beyond the seed** the seed says no, the platform's current API allows it and the hub does it;\n\
         - **not built** the seed promises it and the hub does not do it yet;\n\
         - *(no connector)* this build has no connector for the channel yet: the cell is what its table says.\n\n",
    );
    let _ = write!(out, "| feature |");
    for c in &columns {
        let _ = write!(out, " {c} |");
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(columns.len()));
    out.push('\n');
    let _ = write!(out, "| connector in this build |");
    for c in &columns {
        let _ = write!(out, " {} |", if built.contains(c) { "yes" } else { "**no**" });
    }
    out.push('\n');
    for feature in Feature::ALL {
        let _ = write!(out, "| {} |", feature.label());
        for channel in &columns {
            let has = channel.capabilities().has(*feature);
            let cell = match (feature.seed(*channel), has) {
                (Some(Seed::No), true) => "no · ✓ beyond the seed".to_owned(),
                (Some(Seed::No), false) => "no · ✗ refused".to_owned(),
                (Some(seed), true) => format!("{} · ✓", seed.as_str()),
                (Some(seed), false) => format!("{} · not built", seed.as_str()),
                (None, true) => "✓".to_owned(),
                (None, false) => "✗ refused".to_owned(),
            };
            let cell = if built.contains(channel) { cell } else { format!("{cell} *(no connector)*") };
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    out.push_str(
        "\n## Limits\n\n\
         The defaults each connector enforces, and the seed's figures. Texts over the limit go out as\n\
         several messages, split between words; a file over its kind's limit is refused at\n\
         `message.send` with `file_too_large`; sends are paced to the two rates (a message over the\n\
         rate waits in the outbox, never dropped). An account overrides any of them in\n\
         `settings.limits`: `rate` and `rate_per_chat` (`{\"count\": 72, \"per_ms\": 1000}`),\n\
         `max_text_chars`, `max_image_bytes`, `max_video_bytes`, `max_audio_bytes`,\n\
         `max_document_bytes`.\n\n\
         | channel | messages/s | per chat | text | caption | image | video | audio | document | seed: rate · text · video · photo · files |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for channel in &columns {
        let l = channel.capabilities().limits;
        let f = l.max_file_bytes;
        let rate = |r: Rate| {
            let per = r.per_sec();
            if per.fract() == 0.0 { format!("{per:.0}") } else { format!("{per:.2}") }
        };
        let seed = match seed_limits(*channel) {
            Some(s) => {
                let n = |v: Option<u32>, unit: &str| v.map(|v| format!("{v}{unit}")).unwrap_or_else(|| "-".into());
                format!(
                    "{} · {} · {} · {} · {}",
                    s.rate.unwrap_or("-"),
                    n(s.text, ""),
                    n(s.video_mb, " MB"),
                    n(s.photo_mb, " MB"),
                    n(s.file_mb, " MB")
                )
            }
            None => "(not in the seed)".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {channel} | {} | {} | {} | {} | {} | {} | {} | {} | {seed} |",
            rate(l.rate),
            rate(l.rate_per_chat),
            l.max_text_chars,
            l.max_caption_chars,
            human_size(f.image),
            human_size(f.video),
            human_size(f.audio),
            human_size(f.document),
        );
    }
    out.push_str("\nWhere the defaults differ from the seed, and why:\n\n");
    for channel in &columns {
        for note in limit_notes(*channel) {
            let _ = writeln!(out, "- **{channel}**: {note}");
        }
    }
    out
}

/// The buttons of a send as the channel can show them: a reply keyboard (a press comes back
/// as the customer's text), else inline buttons whose data is the text, else numbered lines
/// under the text.
pub fn buttons_for(channel: Channel, text: &str, buttons: &[String]) -> (String, Option<Keyboard>) {
    if buttons.is_empty() {
        return (text.to_owned(), None);
    }
    let caps = channel.capabilities();
    if caps.has(Feature::ReplyKeyboard) {
        let rows = buttons
            .iter()
            .map(|b| vec![crate::domain::ReplyButton { text: b.clone(), request_phone: false }])
            .collect();
        (text.to_owned(), Some(Keyboard::Reply { rows }))
    } else if caps.has(Feature::InlineButtons) {
        let rows =
            buttons.iter().map(|b| vec![crate::domain::InlineButton { text: b.clone(), data: b.clone() }]).collect();
        (text.to_owned(), Some(Keyboard::Inline { rows }))
    } else {
        let lines: Vec<String> = buttons.iter().map(|b| format!("• {b}")).collect();
        (format!("{text}\n\n{}", lines.join("\n")), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_no_is_refused_unless_marked_beyond_the_seed() {
        // the hub may do more than the seed promises only where the platform really allows it
        let beyond: &[(Channel, Feature)] = &[
            (Channel::Vk, Feature::InlineButtons),
            (Channel::Ok, Feature::InlineButtons),
            (Channel::Ok, Feature::ReplyKeyboard),
            (Channel::Ok, Feature::CustomerPhone),
            // WhatsApp: the Cloud API (and Infobip) carry these today; see the WHATSAPP row
            (Channel::Whatsapp, Feature::InlineButtons),
            (Channel::Whatsapp, Feature::ReceiptDelivered),
            (Channel::Whatsapp, Feature::ReceiptRead),
            (Channel::Whatsapp, Feature::ReceiveAudio),
            (Channel::Whatsapp, Feature::SendAudio),
            (Channel::Whatsapp, Feature::ReceiveVoice),
            (Channel::Whatsapp, Feature::SendVoice),
            (Channel::Whatsapp, Feature::ReceiveContact),
            (Channel::Whatsapp, Feature::SendContact),
            (Channel::Whatsapp, Feature::ReceiveLocation),
            (Channel::Whatsapp, Feature::SendLocation),
        ];
        for channel in MESSENGERS {
            let caps = channel.capabilities();
            for feature in Feature::ALL {
                if feature.seed(*channel) == Some(Seed::No) && caps.has(*feature) {
                    assert!(beyond.contains(&(*channel, *feature)), "{channel}: {feature:?} is 'no' in the seed");
                }
            }
        }
        assert!(!Channel::Telegram.capabilities().has(Feature::ReceiptRead));
        let vk = Channel::Vk.capabilities();
        assert!(!vk.has(Feature::ReceiptDelivered) && !vk.has(Feature::ReceiptRead), "VK tells bots of neither");
        assert!(Channel::Viber.capabilities().has(Feature::ReceiptRead));
        let whatsapp = Channel::Whatsapp.capabilities();
        assert!(!whatsapp.has(Feature::ReplyKeyboard), "WhatsApp has no keyboard that replaces the input");
        assert!(!whatsapp.has(Feature::EditDeleteOwn) && !whatsapp.has(Feature::AgentAvatar));
        assert_eq!(Channel::Whatsapp.service_window(), Some(WHATSAPP_WINDOW));
        assert!(Channel::Whatsapp.takes_templates() && !Channel::Telegram.takes_templates());
    }

    #[test]
    fn per_kind_file_limits_and_rates_are_consistent() {
        for channel in Channel::ALL {
            let limits = channel.capabilities().limits;
            assert!(limits.rate.per_sec() >= limits.rate_per_chat.per_sec(), "{channel}");
            assert!(limits.max_caption_chars <= limits.max_text_chars, "{channel}");
        }
        let telegram = Channel::Telegram.capabilities().limits;
        assert_eq!(telegram.max_file_bytes.for_mime("image/jpeg"), (10 * MB, "images"));
        assert_eq!(telegram.max_file_bytes.for_mime("application/pdf"), (50 * MB, "documents"));
        assert_eq!(telegram.rate, Rate::per_second(30));
        assert_eq!(Channel::Telegram.max_file_bytes(), Some(50 * MB));
        assert_eq!(
            Channel::Viber.capabilities().limits.max_text_chars,
            7000,
            "Viber's 7000 binds, not the seed's 8000"
        );
        assert_eq!(Rate { count: 1, per_ms: 6000 }.per_sec(), 1.0 / 6.0);
    }

    #[test]
    fn account_overrides_are_checked() {
        let settings = serde_json::json!({"limits": {"rate": {"count": 72, "per_ms": 1000}, "max_image_bytes": 1024}});
        let limits = Limits::for_account(Channel::Vk, &settings).unwrap();
        assert_eq!(limits.rate, Rate::per_second(72));
        assert_eq!(limits.max_file_bytes.image, 1024);
        assert_eq!(limits.max_text_chars, 4000);
        let zero = serde_json::json!({"limits": {"rate": {"count": 0, "per_ms": 1000}}});
        assert!(Limits::for_account(Channel::Vk, &zero).unwrap_err().to_string().contains("rate"));
        let unknown = serde_json::json!({"limits": {"speed": 3}});
        assert!(Limits::for_account(Channel::Vk, &unknown).unwrap_err().to_string().contains("speed"));
        assert_eq!(
            Limits::for_account(Channel::Vk, &serde_json::json!({})).unwrap(),
            Channel::Vk.capabilities().limits
        );
    }
}
