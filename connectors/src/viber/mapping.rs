//! Viber's wire format to the domain and back, with no I/O (`docs/platforms.md#viber`, §4):
//! the callback signature, callbacks to inbound messages, receipts and customers, outbound parts
//! to `send_message` bodies (keyboards included), and Viber's `status` codes to what the
//! runtime does next.

use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use schema::domain::{Contact, Keyboard, Location, MessageKind};
use schema::store::{InboundMessage, Receipt, Sender};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::platform::{FileBody, Part, SendError};

/// The header Viber signs callbacks in.
pub const SIGNATURE_HEADER: &str = "X-Viber-Content-Signature";
/// The header every API call carries the bot's token in.
pub const AUTH_HEADER: &str = "X-Viber-Auth-Token";
/// The optional callbacks the hub asks for (`message`, `subscribed`, `unsubscribed`,
/// `conversation_started` and `webhook` always come).
pub const EVENT_TYPES: &[&str] = &["delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started"];
/// `sender.name` is at most this many characters.
pub const SENDER_NAME_MAX: usize = 28;
/// `file_name` of a file message is at most this many characters.
pub const FILE_NAME_MAX: usize = 256;
/// A `url` message's `media` is at most this many characters.
pub const URL_MAX: usize = 2000;
/// `share-phone` buttons need this API level on the message.
pub const SHARE_PHONE_API: u32 = 3;
/// `tracking_data` of a message that asks for the customer's phone: Viber hands it back with the
/// customer's next message, so the contact that answers it is known to be their own.
pub const SHARE_PHONE_TRACKING: &str = "switchboard:share-phone";

type HmacSha256 = Hmac<Sha256>;

/// `X-Viber-Content-Signature` of `body`: lowercase hex HMAC-SHA256 keyed with the bot's token.
pub fn sign(auth_token: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(auth_token.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `given` (hex, any case) is the signature of `body`; compared in constant time.
pub fn signature_matches(auth_token: &str, body: &[u8], given: &str) -> bool {
    let Ok(given) = hex::decode(given.trim()) else { return false };
    let mut mac = HmacSha256::new_from_slice(auth_token.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// Viber's `message_token` (and `sticker_id`): a 64-bit integer beyond a double's exact range,
/// kept as its decimal digits. Read from a JSON integer or a string of digits; a JSON number
/// with a fraction or exponent (which could only have come through `f64`) is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Token(pub String);

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Token;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer token")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Token, E> {
                Ok(Token(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Token, E> {
                Ok(Token(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Token, E> {
                let digits = v.strip_prefix('-').unwrap_or(v);
                if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::custom(format!("{v:?} is not an integer token")));
                }
                Ok(Token(v.to_owned()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Token, E> {
                Err(E::custom(format!("{v} is not an integer token (a fraction, or beyond 64 bits)")))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A Viber user as callbacks describe them (`sender` of a message, `user` of the others).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub avatar: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub api_version: Option<u32>,
}

impl User {
    /// The customer as the store takes them (the avatar is the hub's copy, filled in later).
    pub fn sender(&self) -> Sender {
        Sender {
            external_id: self.id.clone(),
            name: self.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| "Viber user".into()),
            username: None,
            phone: None,
            avatar_url: None,
        }
    }
}

/// A file Viber holds for an inbound message: a temporary URL to fetch right away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub url: String,
    /// Bytes, when Viber says.
    pub size: Option<u64>,
    pub name: String,
    pub mime: String,
}

/// An inbound message as mapped, before its media is fetched.
#[derive(Debug, Clone)]
pub struct Draft {
    /// `file_ids` empty: filled once the media is in the file server.
    pub message: InboundMessage,
    pub media: Option<Media>,
    /// The customer's avatar at Viber, to copy into the file server.
    pub avatar: Option<String>,
}

/// What one callback means for the hub.
#[derive(Debug, Clone)]
pub enum Callback {
    /// `set_webhook`'s check: answer 200.
    Webhook,
    /// A customer message.
    Message(Box<Draft>),
    /// The customer subscribed to the bot: a customer agents may write to.
    Subscribed {
        user: User,
    },
    Unsubscribed {
        user_id: String,
    },
    /// The customer opened the chat; the answer may carry the welcome message.
    ConversationStarted {
        user: User,
        subscribed: bool,
    },
    /// `delivered`, `seen` or `failed` of an outbound message.
    Receipt {
        message_token: String,
        receipt: Receipt,
    },
    /// An event this build does not act on.
    Other(String),
}

#[derive(Deserialize)]
struct Envelope {
    event: String,
    #[serde(default)]
    message_token: Option<Token>,
    #[serde(default)]
    timestamp: Option<i64>,
}

#[derive(Deserialize)]
struct MessageCallback {
    message_token: Token,
    #[serde(default)]
    timestamp: Option<i64>,
    sender: User,
    message: WireMessage,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    media: Option<String>,
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    location: Option<WireLocation>,
    #[serde(default)]
    contact: Option<WireContact>,
    #[serde(default)]
    sticker_id: Option<Token>,
    #[serde(default)]
    tracking_data: Option<String>,
}

#[derive(Deserialize)]
struct WireLocation {
    lat: f64,
    lon: f64,
    #[serde(default)]
    address: Option<String>,
}

#[derive(Deserialize)]
struct WireContact {
    #[serde(default)]
    name: Option<String>,
    phone_number: String,
}

#[derive(Deserialize)]
struct UserCallback {
    user: User,
    #[serde(default)]
    subscribed: Option<bool>,
}

#[derive(Deserialize)]
struct UnsubscribedCallback {
    user_id: String,
}

#[derive(Deserialize)]
struct ReceiptCallback {
    message_token: Token,
    #[serde(default)]
    desc: Option<String>,
}

/// A callback's key (its `message_token`, prefixed by the event for everything but messages, so
/// a receipt never shares a key with a message; for logs, retries and dead letters) and what it
/// means, or why it can never be read.
pub fn parse_callback(account_id: Uuid, raw: &[u8]) -> (String, Result<Callback, String>) {
    let envelope = match serde_json::from_slice::<Envelope>(raw) {
        Ok(envelope) => envelope,
        Err(e) => {
            let digest = hex::encode(&Sha256::digest(raw)[..8]);
            return (format!("unreadable-{digest}"), Err(format!("not a Viber callback: {e}")));
        }
    };
    let token = envelope.message_token.as_ref().map(|t| t.0.clone());
    let key = match (envelope.event.as_str(), &token) {
        ("message", Some(token)) => token.clone(),
        (event, Some(token)) => format!("{event}:{token}"),
        (event, None) => format!("{event}@{}", envelope.timestamp.unwrap_or_default()),
    };
    let parsed = match envelope.event.as_str() {
        "webhook" => Ok(Callback::Webhook),
        "message" => serde_json::from_slice::<MessageCallback>(raw)
            .map_err(|e| format!("a message callback this build cannot read: {e}"))
            .and_then(|m| map_message(account_id, m))
            .map(|d| Callback::Message(Box::new(d))),
        "subscribed" => serde_json::from_slice::<UserCallback>(raw)
            .map(|c| Callback::Subscribed { user: c.user })
            .map_err(|e| format!("a subscribed callback this build cannot read: {e}")),
        "conversation_started" => serde_json::from_slice::<UserCallback>(raw)
            .map(|c| Callback::ConversationStarted { user: c.user, subscribed: c.subscribed.unwrap_or(false) })
            .map_err(|e| format!("a conversation_started callback this build cannot read: {e}")),
        "unsubscribed" => serde_json::from_slice::<UnsubscribedCallback>(raw)
            .map(|c| Callback::Unsubscribed { user_id: c.user_id })
            .map_err(|e| format!("an unsubscribed callback this build cannot read: {e}")),
        event @ ("delivered" | "seen" | "failed") => serde_json::from_slice::<ReceiptCallback>(raw)
            .map(|c| Callback::Receipt {
                message_token: c.message_token.0,
                receipt: match event {
                    "delivered" => Receipt::Delivered,
                    "seen" => Receipt::Read,
                    _ => Receipt::Failed(match c.desc.filter(|d| !d.trim().is_empty()) {
                        Some(desc) => format!("Viber could not deliver it: {desc}"),
                        None => "Viber could not deliver it".into(),
                    }),
                },
            })
            .map_err(|e| format!("a {event} callback this build cannot read: {e}")),
        other => Ok(Callback::Other(other.to_owned())),
    };
    (key, parsed)
}

fn millis(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

fn required<T>(value: Option<T>, kind: &str, field: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("a Viber {kind} message without {field}"))
}

/// The MIME type of a file name, from its extension.
pub fn mime_for(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "mp4" | "m4v" => "video/mp4",
        "mov" => "video/quicktime",
        "3gp" => "video/3gpp",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "ogg" | "oga" => "audio/ogg",
        "wav" => "audio/wav",
        "pdf" => "application/pdf",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "ppt" => "application/vnd.ms-powerpoint",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "zip" => "application/zip",
        "json" => "application/json",
        _ => return None,
    })
}

fn same_person(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    !a.trim().is_empty() && norm(a) == norm(b)
}

fn map_message(account_id: Uuid, callback: MessageCallback) -> Result<Draft, String> {
    let MessageCallback { message_token, timestamp, sender: user, message: m } = callback;
    let token = message_token.0;
    let mut sender = user.sender();
    let mut text = m.text.clone().filter(|t| !t.is_empty());
    let (mut location, mut contact, mut media, mut sticker_id) = (None, None, None, None);
    let kind = match m.kind.as_str() {
        "text" => {
            text = Some(required(m.text, "text", "text")?);
            MessageKind::Text
        }
        "picture" => {
            let name = m.file_name.clone().filter(|n| !n.trim().is_empty()).unwrap_or(format!("picture_{token}.jpg"));
            let mime = mime_for(&name).filter(|m| m.starts_with("image/")).unwrap_or("image/jpeg");
            media = Some(Media { url: required(m.media, "picture", "media")?, size: m.size, mime: mime.into(), name });
            MessageKind::Image
        }
        "video" => {
            let name = m.file_name.clone().filter(|n| !n.trim().is_empty()).unwrap_or(format!("video_{token}.mp4"));
            let mime = mime_for(&name).filter(|m| m.starts_with("video/")).unwrap_or("video/mp4");
            media = Some(Media { url: required(m.media, "video", "media")?, size: m.size, mime: mime.into(), name });
            MessageKind::Video
        }
        "file" => {
            let name = m.file_name.clone().filter(|n| !n.trim().is_empty()).unwrap_or(format!("file_{token}"));
            let mime = mime_for(&name).unwrap_or("application/octet-stream");
            media = Some(Media { url: required(m.media, "file", "media")?, size: m.size, mime: mime.into(), name });
            MessageKind::Document
        }
        "sticker" => {
            let id = required(m.sticker_id, "sticker", "sticker_id")?.0;
            // the sticker's picture, when Viber links it
            media = m.media.map(|url| Media {
                url,
                size: None,
                name: format!("sticker_{id}.png"),
                mime: "image/png".into(),
            });
            sticker_id = Some(id);
            MessageKind::Sticker
        }
        "location" => {
            let l = required(m.location, "location", "location")?;
            if !(-90.0..=90.0).contains(&l.lat) || !(-180.0..=180.0).contains(&l.lon) {
                return Err(format!("a Viber location out of range: {}, {}", l.lat, l.lon));
            }
            location = Some(Location { lat: l.lat, lon: l.lon, address: l.address.filter(|a| !a.trim().is_empty()) });
            MessageKind::Location
        }
        "contact" => {
            let c = required(m.contact, "contact", "contact")?;
            let name = c.name.unwrap_or_default();
            // a share-phone button's answer (Viber hands back the tracking_data of the message
            // that asked), or the customer's own card: their phone
            let asked = m.tracking_data.as_deref().is_some_and(|t| t.contains(SHARE_PHONE_TRACKING));
            if asked || same_person(&name, user.name.as_deref().unwrap_or_default()) {
                sender.phone = Some(c.phone_number.clone());
            }
            contact = Some(Contact { phone: c.phone_number, name });
            MessageKind::Contact
        }
        "url" => {
            text = Some(required(m.media, "url", "media")?);
            MessageKind::Text
        }
        other => {
            // a kind newer than this build (rich media a customer forwards...): the agent sees
            // that something came, with its text if it has one
            let note = format!("[a Viber {other} message, which this hub cannot show]");
            text = Some(match text {
                Some(t) => format!("{t}\n{note}"),
                None => note,
            });
            MessageKind::Text
        }
    };
    Ok(Draft {
        message: InboundMessage {
            account_id,
            external_message_id: token,
            chat_id: user.id.clone(),
            sender,
            kind,
            text,
            file_ids: Vec::new(),
            location,
            contact,
            reply_to_external_id: None,
            forwarded: None,
            sticker_id,
            sent_at: timestamp.and_then(millis),
        },
        media,
        avatar: user.avatar.filter(|a| !a.trim().is_empty()),
    })
}

/// At most `max` characters of `s`.
pub fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A file name of at most [`FILE_NAME_MAX`] characters, keeping a short extension.
pub fn file_name(name: &str) -> String {
    if name.chars().count() <= FILE_NAME_MAX {
        return name.to_owned();
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if !ext.is_empty() && ext.chars().count() <= 16 => {
            format!("{}.{ext}", cut(stem, FILE_NAME_MAX - ext.chars().count() - 1))
        }
        _ => cut(name, FILE_NAME_MAX),
    }
}

/// How Viber shows a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// JPEG, PNG, non-animated GIF, up to 1 MB, with up to 512 characters of text.
    Picture,
    /// MP4, up to 26 MB, with text.
    Video,
    /// Anything else, up to 50 MB, with its name and no text.
    File,
}

pub fn file_kind(mime: &str) -> FileKind {
    match mime {
        "image/jpeg" | "image/png" | "image/gif" => FileKind::Picture,
        "video/mp4" => FileKind::Video,
        _ => FileKind::File,
    }
}

/// Buttons per keyboard row at most (Viber's grid is 6 columns wide).
const GRID: usize = 6;

/// The `Columns` of each of `n` buttons sharing a row of the 6-column grid (`n` ≤ 6): equal
/// shares, the first ones one wider when 6 does not divide.
pub fn columns(n: usize) -> Vec<usize> {
    let n = n.clamp(1, GRID);
    (0..n).map(|i| GRID / n + usize::from(i < GRID % n)).collect()
}

/// The domain keyboard as Viber's `keyboard` object, and whether it asks for the phone. A
/// keyboard removal is no keyboard (the client hides it with the next message without one).
pub fn keyboard(keyboard: &Keyboard) -> Option<(Value, bool)> {
    let rows: Vec<Vec<(String, String, &str)>> = match keyboard {
        Keyboard::Remove => return None,
        Keyboard::Reply { rows } => rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|b| {
                        if b.request_phone {
                            (b.text.clone(), "share-phone".to_owned(), "share-phone")
                        } else {
                            (b.text.clone(), b.text.clone(), "reply")
                        }
                    })
                    .collect()
            })
            .collect(),
        // Viber has no inline buttons (the chatserver refuses them): the nearest is a reply
        // button that sends the data
        Keyboard::Inline { rows } => {
            rows.iter().map(|row| row.iter().map(|b| (b.text.clone(), b.data.clone(), "reply")).collect()).collect()
        }
    };
    let mut buttons = Vec::new();
    let mut share_phone = false;
    for row in rows.iter().filter(|r| !r.is_empty()) {
        for chunk in row.chunks(GRID) {
            for ((text, body, action), width) in chunk.iter().zip(columns(chunk.len())) {
                share_phone |= *action == "share-phone";
                buttons
                    .push(json!({"Columns": width, "Rows": 1, "ActionType": action, "ActionBody": body, "Text": text}));
            }
        }
    }
    if buttons.is_empty() {
        return None;
    }
    Some((
        json!({"Type": "keyboard", "DefaultHeight": false, "InputFieldState": "regular", "Buttons": buttons}),
        share_phone,
    ))
}

/// What every message of an account carries unless the part says otherwise.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// `settings.sender_name` (or the account's name), already at most 28 characters.
    pub sender_name: String,
    /// `settings.min_api_version` (1 unless set).
    pub min_api_version: u32,
}

fn sender(part: &Part, defaults: &Defaults) -> Value {
    let profile = part.sender.as_ref();
    let name = profile.map(|p| p.name.trim()).filter(|n| !n.is_empty()).unwrap_or(&defaults.sender_name);
    let mut sender = json!({ "name": cut(name, SENDER_NAME_MAX) });
    let avatar = profile
        .and_then(|p| p.avatar_url.as_deref())
        .filter(|a| url::Url::parse(a).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some()));
    if let Some(avatar) = avatar {
        sender["avatar"] = json!(avatar);
    }
    sender
}

/// A text that is one web link and nothing else, sent as a `url` message.
fn lone_url(text: &str) -> Option<&str> {
    let t = text.trim();
    if t.is_empty() || t.chars().count() > URL_MAX || t.contains(char::is_whitespace) {
        return None;
    }
    let url = url::Url::parse(t).ok()?;
    (matches!(url.scheme(), "http" | "https") && url.host().is_some()).then_some(t)
}

/// The `send_message` body for one part to `receiver`.
pub fn send_body(receiver: &str, part: &Part, defaults: &Defaults) -> Result<Value, SendError> {
    let mut body = json!({ "receiver": receiver, "sender": sender(part, defaults) });
    let mut min_api = defaults.min_api_version.max(1);
    let content = if part.forward_of.is_some() {
        return Err(SendError::Permanent("Viber bots cannot forward messages".into()));
    } else if let Some(l) = &part.location {
        json!({"type": "location", "location": {"lat": l.lat, "lon": l.lon}})
    } else if let Some(c) = &part.contact {
        json!({"type": "contact", "contact": {"name": c.name, "phone_number": c.phone}})
    } else if let Some(sticker) = &part.sticker_id {
        let id: u64 = sticker
            .trim()
            .parse()
            .map_err(|_| SendError::Permanent(format!("{sticker:?} is not a Viber sticker id (a number)")))?;
        json!({"type": "sticker", "sticker_id": id})
    } else if let Some(file) = &part.file {
        let FileBody::Link(url) = &file.body else {
            return Err(SendError::Permanent("Viber takes files by link only".into()));
        };
        let caption = part.text.clone().unwrap_or_default();
        match file_kind(&file.meta.mime) {
            FileKind::Picture => json!({"type": "picture", "media": url.as_str(), "text": caption}),
            FileKind::Video => {
                let mut v = json!({"type": "video", "media": url.as_str(), "size": file.meta.size, "duration": 0});
                if !caption.is_empty() {
                    v["text"] = json!(caption);
                }
                v
            }
            FileKind::File => json!({"type": "file", "media": url.as_str(), "size": file.meta.size,
                "file_name": file_name(&file.meta.name)}),
        }
    } else {
        let text = part.text.clone().unwrap_or_default();
        match lone_url(&text) {
            Some(url) => json!({"type": "url", "media": url}),
            None => json!({"type": "text", "text": text}),
        }
    };
    if let (Value::Object(body), Value::Object(content)) = (&mut body, content) {
        body.extend(content);
    }
    if let Some((keyboard, share_phone)) = part.keyboard.as_ref().and_then(keyboard) {
        body["keyboard"] = keyboard;
        if share_phone {
            min_api = min_api.max(SHARE_PHONE_API);
            body["tracking_data"] = json!(SHARE_PHONE_TRACKING);
        }
    }
    body["min_api_version"] = json!(min_api);
    Ok(body)
}

/// The welcome message, as the HTTP answer to `conversation_started`.
pub fn welcome(text: &str, sender_name: &str) -> Value {
    json!({"sender": {"name": cut(sender_name, SENDER_NAME_MAX)}, "type": "text", "text": text})
}

/// Why Viber refused a call, as the runtime acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Status 12: too many requests (no hint of how long: the caller backs off).
    RateLimited,
    /// Worth trying again (10 webhookNotSet: the webhook is registered again first).
    Transient(String),
    /// Will never work as it is; `unhealthy`: the account itself is refused, not the message.
    Permanent { reason: String, unhealthy: bool },
}

/// What a `status` other than 0 means (§4.4 of the platform notes).
pub fn classify(status: i64, status_message: &str) -> Refusal {
    let said = status_message.trim();
    let permanent = |reason: String| Refusal::Permanent { reason, unhealthy: false };
    let unhealthy = |reason: String| Refusal::Permanent { reason, unhealthy: true };
    match status {
        1 => permanent(format!(
            "Viber refused a URL of the message (status 1, invalidUrl): links must be public https URLs \
             (connectors.public_url); Viber said {said:?}"
        )),
        2 => unhealthy(
            "Viber refused the account's auth token (status 2, invalidAuthToken): fix accounts.credentials.auth_token"
                .into(),
        ),
        3 => permanent(format!("Viber refused the request as malformed (status 3, badData): {said}")),
        4 => permanent(format!("Viber found a field missing (status 4, missingData): {said}")),
        5 => permanent("the customer is not a Viber user any more (Viber status 5, receiverNotRegistered)".into()),
        6 => permanent("the customer is not subscribed to the bot (Viber status 6, receiverNotSubscribed)".into()),
        7 => unhealthy("the bot is blocked by Viber (status 7, publicAccountBlocked)".into()),
        8 => unhealthy("Viber does not know the bot (status 8, publicAccountNotFound)".into()),
        9 => unhealthy("the bot is suspended by Viber (status 9, publicAccountSuspended)".into()),
        10 => Refusal::Transient("Viber has no webhook for the bot (status 10, webhookNotSet)".into()),
        11 => permanent(
            "the customer has no device that can receive it (Viber status 11, receiverNoSuitableDevice)".into(),
        ),
        12 => Refusal::RateLimited,
        13 => permanent("the customer's Viber is too old for this message (status 13, apiVersionNotSupported)".into()),
        14 => permanent(
            "the message does not work with the customer's Viber version (status 14, incompatibleWithVersion)".into(),
        ),
        15 => unhealthy("the bot is not authorized by Viber (status 15, publicAccountNotAuthorized)".into()),
        other => permanent(format!("Viber refused the message (status {other}: {said})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{OutFile, SenderProfile};
    use schema::domain::{FileRef, InlineButton, ReplyButton};

    const TOKEN: &str = "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9";

    fn callback(value: Value) -> (String, Result<Callback, String>) {
        parse_callback(Uuid::nil(), value.to_string().as_bytes())
    }

    fn draft(message: Value) -> Draft {
        let body = json!({"event": "message", "timestamp": 1767312000123u64, "chat_hostname": "SN-CHAT-02_",
            "message_token": 5912004410023001001u64,
            "sender": {"id": "Vb9kQ2xL0aZ1pT7c4dE3fw==", "name": "Anna Berg", "avatar": "https://media.example/a.jpg", "api_version": 10},
            "message": message, "silent": false});
        match callback(body) {
            (_, Ok(Callback::Message(d))) => *d,
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn signatures_are_hex_hmac_sha256_of_the_raw_body_keyed_with_the_token() {
        let body = br#"{"event":"webhook","timestamp":1457764197627,"message_token":241256543215}"#;
        let signature = sign(TOKEN, body);
        assert_eq!(signature.len(), 64);
        assert!(signature.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "lowercase hex");
        assert!(signature_matches(TOKEN, body, &signature));
        assert!(signature_matches(TOKEN, body, &signature.to_uppercase()), "hex of any case");
        assert!(!signature_matches(TOKEN, b"{\"event\":\"webhook\"}", &signature), "another body");
        assert!(!signature_matches("another-token", body, &signature), "another key");
        assert!(!signature_matches(TOKEN, body, ""));
        assert!(!signature_matches(TOKEN, body, "not hex"));
        assert!(!signature_matches(TOKEN, body, &signature[..62]), "a truncated signature");
        // the published example: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog")
        assert_eq!(
            sign("key", b"The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn message_tokens_are_kept_exact_beyond_a_doubles_range() {
        let raw =
            br#"{"event":"delivered","timestamp":1767312003000,"message_token":5812993301117002001,"user_id":"u"}"#;
        let (key, parsed) = parse_callback(Uuid::nil(), raw);
        assert_eq!(key, "delivered:5812993301117002001");
        match parsed.unwrap() {
            Callback::Receipt { message_token, receipt } => {
                assert_eq!(message_token, "5812993301117002001", "not 5812993301117002000 (f64)");
                assert_eq!(receipt, Receipt::Delivered);
            }
            other => panic!("{other:?}"),
        }
        let t: Token = serde_json::from_str("18446744073709551615").unwrap();
        assert_eq!(t.0, u64::MAX.to_string());
        let t: Token = serde_json::from_str("\"5912004410023001001\"").unwrap();
        assert_eq!(t.0, "5912004410023001001");
        assert!(serde_json::from_str::<Token>("5.9e18").is_err(), "a float is refused");
        assert!(serde_json::from_str::<Token>("18446744073709551616").is_err(), "beyond 64 bits");
        assert!(serde_json::from_str::<Token>("\"12a\"").is_err());
    }

    #[test]
    fn text_and_the_customer() {
        let d = draft(json!({"type": "text", "text": "Hello, where is order 7731? 👋", "tracking_data": "x"}));
        let m = &d.message;
        assert_eq!(m.external_message_id, "5912004410023001001");
        assert_eq!(m.chat_id, "Vb9kQ2xL0aZ1pT7c4dE3fw==");
        assert_eq!(m.kind, MessageKind::Text);
        assert_eq!(m.text.as_deref(), Some("Hello, where is order 7731? 👋"));
        assert_eq!(m.sender.external_id, "Vb9kQ2xL0aZ1pT7c4dE3fw==");
        assert_eq!(m.sender.name, "Anna Berg");
        assert_eq!(m.sender.phone, None);
        assert_eq!(m.sent_at.unwrap().timestamp_millis(), 1767312000123);
        assert_eq!(d.avatar.as_deref(), Some("https://media.example/a.jpg"));
        assert!(d.media.is_none());
    }

    #[test]
    fn media_kinds_keep_name_size_and_type() {
        let d = draft(json!({"type": "picture", "media": "https://dl.example/p", "text": "the receipt", "size": 1234}));
        assert_eq!(d.message.kind, MessageKind::Image);
        assert_eq!(d.message.text.as_deref(), Some("the receipt"));
        assert_eq!(
            d.media.unwrap(),
            Media {
                url: "https://dl.example/p".into(),
                size: Some(1234),
                name: "picture_5912004410023001001.jpg".into(),
                mime: "image/jpeg".into()
            }
        );
        let d = draft(json!({"type": "picture", "media": "https://dl.example/p", "file_name": "shot.png"}));
        assert_eq!(d.message.text, None);
        assert_eq!(d.media.unwrap().mime, "image/png");
        let d = draft(json!({"type": "video", "media": "https://dl.example/v", "size": 99, "duration": 12}));
        assert_eq!(d.message.kind, MessageKind::Video);
        let media = d.media.unwrap();
        assert_eq!(
            (media.name.as_str(), media.mime.as_str(), media.size),
            ("video_5912004410023001001.mp4", "video/mp4", Some(99))
        );
        let d = draft(json!({"type": "file", "media": "https://dl.example/f", "size": 48213, "file_name": "act.pdf"}));
        assert_eq!(d.message.kind, MessageKind::Document);
        let media = d.media.unwrap();
        assert_eq!((media.name.as_str(), media.mime.as_str()), ("act.pdf", "application/pdf"));
        let d = draft(json!({"type": "file", "media": "https://dl.example/f", "size": 1, "file_name": "data.xyz"}));
        assert_eq!(d.media.unwrap().mime, "application/octet-stream");
        let d = draft(json!({"type": "sticker", "sticker_id": 40133, "media": "https://dl.example/s.png"}));
        assert_eq!(d.message.kind, MessageKind::Sticker);
        assert_eq!(d.message.sticker_id.as_deref(), Some("40133"));
        assert_eq!(d.media.unwrap().name, "sticker_40133.png");
    }

    #[test]
    fn location_url_and_unknown_kinds() {
        let d = draft(json!({"type": "location", "location": {"lat": 52.5200, "lon": 13.4050}}));
        assert_eq!(d.message.kind, MessageKind::Location);
        assert_eq!(d.message.location, Some(Location { lat: 52.52, lon: 13.405, address: None }));
        let d = draft(json!({"type": "url", "media": "https://shop.example/order/7731"}));
        assert_eq!(
            (d.message.kind, d.message.text.as_deref()),
            (MessageKind::Text, Some("https://shop.example/order/7731"))
        );
        let d = draft(json!({"type": "rich_media", "text": "look"}));
        assert_eq!(d.message.text.as_deref(), Some("look\n[a Viber rich_media message, which this hub cannot show]"));
    }

    #[test]
    fn a_contact_from_share_phone_is_the_customers_phone() {
        let d = draft(json!({"type": "contact", "contact": {"name": "Anna Berg", "phone_number": "+4915112345678"},
            "tracking_data": SHARE_PHONE_TRACKING}));
        assert_eq!(d.message.kind, MessageKind::Contact);
        assert_eq!(d.message.contact, Some(Contact { phone: "+4915112345678".into(), name: "Anna Berg".into() }));
        assert_eq!(d.message.sender.phone.as_deref(), Some("+4915112345678"));
        // their own card, without the tracking data: the same name
        let d = draft(json!({"type": "contact", "contact": {"name": "anna  berg", "phone_number": "+49151"}}));
        assert_eq!(d.message.sender.phone.as_deref(), Some("+49151"));
        // someone else's card
        let d = draft(json!({"type": "contact", "contact": {"name": "Ivan Petrov", "phone_number": "+7916"}}));
        assert_eq!(d.message.sender.phone, None);
        assert_eq!(d.message.contact.unwrap().name, "Ivan Petrov");
    }

    #[test]
    fn malformed_messages_cannot_be_read_and_say_why() {
        for (message, why) in [
            (json!({"type": "text"}), "without text"),
            (json!({"type": "picture"}), "without media"),
            (json!({"type": "location", "location": {"lat": "north", "lon": 1}}), "cannot read"),
            (json!({"type": "location", "location": {"lat": 100.0, "lon": 1}}), "out of range"),
            (json!({"type": "sticker"}), "without sticker_id"),
        ] {
            let body = json!({"event": "message", "message_token": 1, "sender": {"id": "u"}, "message": message});
            let (key, parsed) = callback(body);
            assert_eq!(key, "1");
            let err = parsed.unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        let (key, parsed) = parse_callback(Uuid::nil(), b"{not json");
        assert!(key.starts_with("unreadable-"), "{key}");
        assert!(parsed.is_err());
        let (_, parsed) = callback(json!({"event": "message", "message_token": 1.5, "sender": {"id": "u"}}));
        assert!(parsed.is_err(), "a token that is not an integer");
    }

    #[test]
    fn the_other_callbacks() {
        let (key, c) = callback(json!({"event": "webhook", "timestamp": 1, "message_token": 5912004410023001000u64}));
        assert_eq!(key, "webhook:5912004410023001000");
        assert!(matches!(c.unwrap(), Callback::Webhook));
        let (_, c) = callback(json!({"event": "subscribed", "timestamp": 1, "message_token": 2,
            "user": {"id": "u1", "name": "Anna", "avatar": "https://a.example/x.jpg", "country": "DE", "language": "en", "api_version": 10}}));
        match c.unwrap() {
            Callback::Subscribed { user } => {
                assert_eq!(user.sender().name, "Anna");
                assert_eq!(user.avatar.as_deref(), Some("https://a.example/x.jpg"));
            }
            other => panic!("{other:?}"),
        }
        let (_, c) = callback(json!({"event": "unsubscribed", "timestamp": 1, "user_id": "u1", "message_token": 3}));
        assert!(matches!(c.unwrap(), Callback::Unsubscribed { user_id } if user_id == "u1"));
        let (_, c) =
            callback(json!({"event": "conversation_started", "timestamp": 1, "message_token": 4, "type": "open",
            "context": "from-site", "user": {"id": "u2", "name": "Bo"}, "subscribed": false}));
        assert!(matches!(c.unwrap(), Callback::ConversationStarted { subscribed: false, .. }));
        let (_, c) = callback(json!({"event": "seen", "message_token": 5, "user_id": "u"}));
        assert!(matches!(c.unwrap(), Callback::Receipt { receipt: Receipt::Read, .. }));
        let (_, c) = callback(
            json!({"event": "failed", "message_token": 5, "user_id": "u", "desc": "keyboard validation failed"}),
        );
        assert!(
            matches!(c.unwrap(), Callback::Receipt { receipt: Receipt::Failed(why), .. } if why == "Viber could not deliver it: keyboard validation failed")
        );
        let (key, c) = callback(json!({"event": "client_status", "timestamp": 77}));
        assert_eq!(key, "client_status@77");
        assert!(matches!(c.unwrap(), Callback::Other(e) if e == "client_status"));
    }

    #[test]
    fn rows_share_the_six_columns() {
        assert_eq!(columns(1), vec![6]);
        assert_eq!(columns(2), vec![3, 3]);
        assert_eq!(columns(3), vec![2, 2, 2]);
        assert_eq!(columns(4), vec![2, 2, 1, 1]);
        assert_eq!(columns(5), vec![2, 1, 1, 1, 1]);
        assert_eq!(columns(6), vec![1; 6]);
        for n in 1..=6 {
            assert_eq!(columns(n).iter().sum::<usize>(), 6);
        }
    }

    #[test]
    fn keyboards_become_viber_buttons() {
        let k = Keyboard::Reply {
            rows: vec![
                vec![ReplyButton { text: "📱 Share my number".into(), request_phone: true }],
                vec![
                    ReplyButton { text: "Refund".into(), request_phone: false },
                    ReplyButton { text: "Track".into(), request_phone: false },
                ],
                (0..8).map(|i| ReplyButton { text: format!("{i}"), request_phone: false }).collect(),
            ],
        };
        let (v, share) = keyboard(&k).unwrap();
        assert!(share);
        assert_eq!(v["Type"], "keyboard");
        let buttons = v["Buttons"].as_array().unwrap();
        assert_eq!(
            buttons[0],
            json!({"Columns": 6, "Rows": 1, "ActionType": "share-phone", "ActionBody": "share-phone", "Text": "📱 Share my number"})
        );
        assert_eq!(
            buttons[1],
            json!({"Columns": 3, "Rows": 1, "ActionType": "reply", "ActionBody": "Refund", "Text": "Refund"})
        );
        assert_eq!(buttons[2]["Columns"], 3);
        // 8 buttons: a row of 6, then a row of 2
        let widths: Vec<u64> = buttons[3..].iter().map(|b| b["Columns"].as_u64().unwrap()).collect();
        assert_eq!(widths, vec![1, 1, 1, 1, 1, 1, 3, 3]);
        assert!(keyboard(&Keyboard::Remove).is_none());
        let (v, share) = keyboard(&Keyboard::Inline {
            rows: vec![vec![InlineButton { text: "👍".into(), data: "csat:5".into() }]],
        })
        .unwrap();
        assert!(!share);
        assert_eq!(v["Buttons"][0]["ActionBody"], "csat:5");
    }

    fn defaults() -> Defaults {
        Defaults { sender_name: "Acme Support".into(), min_api_version: 1 }
    }

    fn file(name: &str, mime: &str, size: i64) -> OutFile {
        OutFile {
            meta: FileRef { id: Uuid::nil(), name: name.into(), mime: mime.into(), size, url: String::new() },
            body: FileBody::Link(url::Url::parse("https://hub.example/api/v1/files/x?exp=1&sig=ab").unwrap()),
        }
    }

    #[test]
    fn parts_become_send_message_bodies() {
        let agent = Some(SenderProfile {
            name: "Alexandra Konstantinopolskaya (Support)".into(),
            avatar_url: Some("https://hub.example/avatars/alex.jpg".into()),
        });
        let text = Part { text: Some("Your parcel left.".into()), sender: agent.clone(), ..Part::default() };
        let body = send_body("u1", &text, &defaults()).unwrap();
        assert_eq!(
            body,
            json!({"receiver": "u1", "min_api_version": 1, "type": "text", "text": "Your parcel left.",
                   "sender": {"name": "Alexandra Konstantinopolskay", "avatar": "https://hub.example/avatars/alex.jpg"}})
        );
        assert_eq!(body["sender"]["name"].as_str().unwrap().chars().count(), 28);
        // no agent name: the account's; a relative avatar is left out
        let anonymous = Part {
            text: Some("hi".into()),
            sender: Some(SenderProfile { name: " ".into(), avatar_url: Some("/api/v1/files/a".into()) }),
            ..Part::default()
        };
        assert_eq!(send_body("u1", &anonymous, &defaults()).unwrap()["sender"], json!({"name": "Acme Support"}));

        let url = Part { text: Some(" https://track.example/7731 ".into()), ..Part::default() };
        let body = send_body("u1", &url, &defaults()).unwrap();
        assert_eq!((body["type"].as_str(), body["media"].as_str()), (Some("url"), Some("https://track.example/7731")));
        let not_url = Part { text: Some("see https://track.example/7731".into()), ..Part::default() };
        assert_eq!(send_body("u1", &not_url, &defaults()).unwrap()["type"], "text");

        let picture =
            Part { text: Some("the receipt".into()), file: Some(file("r.jpg", "image/jpeg", 10)), ..Part::default() };
        let body = send_body("u1", &picture, &defaults()).unwrap();
        assert_eq!(body["type"], "picture");
        assert_eq!(body["media"], "https://hub.example/api/v1/files/x?exp=1&sig=ab");
        assert_eq!(body["text"], "the receipt");
        let video = Part { file: Some(file("v.mp4", "video/mp4", 5000)), ..Part::default() };
        let body = send_body("u1", &video, &defaults()).unwrap();
        assert_eq!(
            (body["type"].as_str(), body["size"].as_i64(), body["duration"].as_i64()),
            (Some("video"), Some(5000), Some(0))
        );
        let long = format!("{}.pdf", "n".repeat(300));
        let doc = Part { file: Some(file(&long, "application/pdf", 48213)), ..Part::default() };
        let body = send_body("u1", &doc, &defaults()).unwrap();
        assert_eq!(body["type"], "file");
        assert_eq!(body["size"], 48213);
        let name = body["file_name"].as_str().unwrap();
        assert_eq!(name.chars().count(), 256);
        assert!(name.ends_with(".pdf"));
        let webp = Part { file: Some(file("s.webp", "image/webp", 10)), ..Part::default() };
        assert_eq!(
            send_body("u1", &webp, &defaults()).unwrap()["type"],
            "file",
            "Viber pictures are JPEG, PNG and GIF"
        );

        let location = Part { location: Some(Location { lat: 52.52, lon: 13.405, address: None }), ..Part::default() };
        assert_eq!(send_body("u1", &location, &defaults()).unwrap()["location"], json!({"lat": 52.52, "lon": 13.405}));
        let contact =
            Part { contact: Some(Contact { phone: "+49151".into(), name: "Shop".into() }), ..Part::default() };
        assert_eq!(
            send_body("u1", &contact, &defaults()).unwrap()["contact"],
            json!({"name": "Shop", "phone_number": "+49151"})
        );
        let sticker = Part { sticker_id: Some("40133".into()), ..Part::default() };
        assert_eq!(send_body("u1", &sticker, &defaults()).unwrap()["sticker_id"], 40133);
        let bad = Part { sticker_id: Some("CAACAgI".into()), ..Part::default() };
        assert!(matches!(send_body("u1", &bad, &defaults()), Err(SendError::Permanent(_))));
        let forward = Part { forward_of: Some("1".into()), ..Part::default() };
        assert!(matches!(send_body("u1", &forward, &defaults()), Err(SendError::Permanent(_))));

        let phone = Part {
            text: Some("May I have your number?".into()),
            keyboard: Some(Keyboard::Reply {
                rows: vec![vec![ReplyButton { text: "Share".into(), request_phone: true }]],
            }),
            ..Part::default()
        };
        let body = send_body("u1", &phone, &defaults()).unwrap();
        assert_eq!(body["min_api_version"], 3, "share-phone needs API level 3");
        assert_eq!(body["tracking_data"], SHARE_PHONE_TRACKING);
        assert_eq!(body["keyboard"]["Buttons"][0]["ActionType"], "share-phone");
        let higher = Defaults { min_api_version: 7, ..defaults() };
        assert_eq!(send_body("u1", &phone, &higher).unwrap()["min_api_version"], 7);
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(12, "Too many requests"), Refusal::RateLimited);
        assert_eq!(
            classify(6, "receiverNotSubscribed"),
            Refusal::Permanent {
                reason: "the customer is not subscribed to the bot (Viber status 6, receiverNotSubscribed)".into(),
                unhealthy: false
            }
        );
        assert!(matches!(classify(2, "invalidAuthToken"), Refusal::Permanent { unhealthy: true, .. }));
        for status in [5, 11, 13, 14, 3, 4, 1, 16, 99] {
            assert!(matches!(classify(status, "x"), Refusal::Permanent { unhealthy: false, .. }), "{status}");
        }
        for status in [7, 8, 9, 15] {
            assert!(matches!(classify(status, "x"), Refusal::Permanent { unhealthy: true, .. }), "{status}");
        }
        assert!(matches!(classify(10, "webhookNotSet"), Refusal::Transient(_)));
        assert!(matches!(classify(16, "noBalance"), Refusal::Permanent { reason, .. } if reason.contains("noBalance")));
    }

    #[test]
    fn the_welcome_message() {
        assert_eq!(
            welcome("Hi! How can we help?", "A very long support team name indeed"),
            json!({"sender": {"name": "A very long support team nam"}, "type": "text", "text": "Hi! How can we help?"})
        );
    }
}
