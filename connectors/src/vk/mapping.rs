//! VK's wire format to the domain and back, with no I/O (`docs/platforms.md#vk`, §5): updates of
//! the Bots Long Poll and the Callback API to inbound messages, edits, permissions and button
//! presses; outbound parts to `messages.send` parameters (keyboards included); the `random_id`
//! of a part; VK's error codes to what the runtime does next.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use schema::domain::{Forwarded, Keyboard, Location, MessageKind};
use schema::store::{InboundMessage, Sender, without_nul};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::platform::{Part, SendError};
use crate::viber::mapping::mime_for;

/// The API version the hub speaks (`v` on every call, and the long poll's `api_version`).
pub const API_VERSION: &str = "5.199";
/// Peer ids from here on are group chats (`2000000000 + chat_id`), not one customer.
pub const CHAT_PEER_MIN: i64 = 2_000_000_000;
/// A button's label is at most this many characters.
pub const LABEL_MAX: usize = 40;
/// A button's `payload` is at most this many characters.
pub const PAYLOAD_MAX: usize = 255;
/// The events the hub asks the Bots Long Poll for.
pub const EVENTS: &[&str] =
    &["message_new", "message_reply", "message_edit", "message_allow", "message_deny", "message_event"];

/// A file VK holds for an inbound message: fetched right away into the file server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub url: String,
    /// Bytes, when VK says.
    pub size: Option<u64>,
    pub name: String,
    pub mime: String,
}

/// An inbound message as mapped, before its media is fetched and its sender named.
#[derive(Debug, Clone)]
pub struct Draft {
    /// `file_ids` empty and `sender.name` empty: filled in by the receiver.
    pub message: InboundMessage,
    /// The VK user who wrote.
    pub user_id: i64,
    /// Files to fetch, in the order of the attachments.
    pub media: Vec<Media>,
    /// The author of the (first) forwarded message, to name.
    pub forwarded_from: Option<i64>,
}

/// What one update means for the hub.
#[derive(Debug, Clone)]
pub enum Update {
    /// `message_new`: a customer message.
    Message(Box<Draft>),
    /// `message_edit` of a customer message: its new text.
    Edit { external_message_id: String, text: String },
    /// The community's own message echoed back (`message_reply`, and `message_edit` or
    /// `message_new` with `out` = 1): the hub stored it when it sent it.
    Echo { message_id: i64 },
    /// `message_allow`: the customer lets the community write to them.
    Allow { user_id: i64 },
    /// `message_deny`: they do not any more.
    Deny { user_id: i64 },
    /// `message_event`: a callback button pressed; stored as a text message with the button's
    /// data, then answered with `messages.sendMessageEventAnswer`.
    ButtonPress { draft: Box<Draft>, event_id: String, user_id: i64, peer_id: i64 },
    /// The Callback API's `confirmation` request.
    Confirmation,
    /// Nothing for the hub (typing, reads, reactions, a group chat...): why.
    Ignore(String),
}

impl Update {
    /// The key that keeps one customer's updates in order within a batch.
    pub fn chat_key(&self) -> Option<String> {
        match self {
            Update::Message(d) | Update::ButtonPress { draft: d, .. } => Some(d.user_id.to_string()),
            Update::Allow { user_id } | Update::Deny { user_id } => Some(user_id.to_string()),
            Update::Edit { .. } | Update::Echo { .. } | Update::Confirmation | Update::Ignore(_) => None,
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    object: Value,
}

/// A message object as VK sends it (`object.message` of `message_new`; the `object` itself of
/// `message_reply` and `message_edit`).
#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    id: i64,
    #[serde(default)]
    date: Option<i64>,
    from_id: i64,
    peer_id: i64,
    #[serde(default)]
    out: Option<i64>,
    #[serde(default)]
    text: String,
    #[serde(default)]
    attachments: Vec<Value>,
    #[serde(default)]
    geo: Option<WireGeo>,
    #[serde(default)]
    fwd_messages: Vec<WireForward>,
    #[serde(default)]
    reply_message: Option<WireForward>,
}

/// A forwarded message, or the one replied to.
#[derive(Deserialize)]
struct WireForward {
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    from_id: Option<i64>,
    #[serde(default)]
    date: Option<i64>,
    #[serde(default)]
    text: String,
    #[serde(default)]
    attachments: Vec<Value>,
}

#[derive(Deserialize)]
struct WireGeo {
    coordinates: WireCoordinates,
    #[serde(default)]
    place: Option<WirePlace>,
}

#[derive(Deserialize)]
struct WireCoordinates {
    latitude: f64,
    longitude: f64,
}

#[derive(Deserialize)]
struct WirePlace {
    #[serde(default)]
    title: Option<String>,
}

#[derive(Deserialize)]
struct UserObject {
    user_id: i64,
}

#[derive(Deserialize)]
struct EventObject {
    user_id: i64,
    peer_id: i64,
    event_id: String,
    #[serde(default)]
    payload: Value,
}

/// An update's key (its `event_id`, or a digest of its bytes: for logs, retries and dead
/// letters) and what it means, or why it can never be read.
pub fn parse_update(account_id: Uuid, raw: &[u8]) -> (String, Result<Update, String>) {
    let digest = || hex::encode(&Sha256::digest(raw)[..8]);
    let envelope = match serde_json::from_slice::<Envelope>(raw) {
        Ok(envelope) => envelope,
        Err(e) => return (format!("unreadable-{}", digest()), Err(format!("not a VK update: {e}"))),
    };
    let key = match envelope.event_id.as_deref().filter(|e| !e.is_empty()) {
        Some(id) => id.to_owned(),
        None => format!("{}-{}", envelope.kind, digest()),
    };
    let kind = envelope.kind.as_str();
    let parsed = match kind {
        "confirmation" => Ok(Update::Confirmation),
        "message_new" | "message_reply" | "message_edit" => {
            // `message_new` wraps the message with the client's capabilities; the others are it
            let object = match envelope.object.get("message") {
                Some(message) if kind == "message_new" => message.clone(),
                _ => envelope.object,
            };
            match serde_json::from_value::<WireMessage>(object) {
                Err(e) => Err(format!("a {kind} update this build cannot read: {e}")),
                Ok(m) if kind == "message_reply" || m.out == Some(1) => Ok(Update::Echo { message_id: m.id }),
                Ok(m) if m.peer_id >= CHAT_PEER_MIN => Ok(Update::Ignore(format!(
                    "a {kind} in group chat {} (the hub serves one-to-one conversations with the community)",
                    m.peer_id - CHAT_PEER_MIN
                ))),
                Ok(m) if m.from_id <= 0 => Ok(Update::Ignore(format!("a {kind} from community {}", -m.from_id))),
                Ok(m) if m.id <= 0 => Err(format!("a {kind} without a message id")),
                Ok(m) if kind == "message_edit" => {
                    Ok(Update::Edit { external_message_id: m.id.to_string(), text: without_nul(&m.text) })
                }
                Ok(m) => map_message(account_id, m).map(|d| Update::Message(Box::new(d))),
            }
        }
        "message_allow" | "message_deny" => match serde_json::from_value::<UserObject>(envelope.object) {
            Ok(o) if o.user_id <= 0 => Err(format!("a {kind} update without a user")),
            Ok(o) if kind == "message_allow" => Ok(Update::Allow { user_id: o.user_id }),
            Ok(o) => Ok(Update::Deny { user_id: o.user_id }),
            Err(e) => Err(format!("a {kind} update this build cannot read: {e}")),
        },
        "message_event" => match serde_json::from_value::<EventObject>(envelope.object) {
            Ok(e) if e.peer_id >= CHAT_PEER_MIN => {
                Ok(Update::Ignore(format!("a button pressed in group chat {}", e.peer_id - CHAT_PEER_MIN)))
            }
            Ok(e) if e.user_id <= 0 || e.event_id.is_empty() => {
                Err("a message_event without a user or event id".into())
            }
            Ok(e) => Ok(map_button(account_id, e)),
            Err(e) => Err(format!("a message_event update this build cannot read: {e}")),
        },
        other => Ok(Update::Ignore(format!("a {other} update"))),
    };
    (key, parsed)
}

/// The text a callback button sends back: the `data` the hub put in its payload, or the payload
/// as VK gave it (a button made elsewhere).
fn button_text(payload: &Value) -> String {
    match payload {
        Value::Object(map) => match map.get("data") {
            Some(Value::String(data)) => data.clone(),
            _ => payload.to_string(),
        },
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(inner @ Value::Object(_)) => button_text(&inner),
            _ => s.clone(),
        },
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn map_button(account_id: Uuid, e: EventObject) -> Update {
    let text = without_nul(&button_text(&e.payload));
    let draft = Draft {
        message: InboundMessage {
            account_id,
            external_message_id: format!("event:{}", e.event_id),
            chat_id: e.peer_id.to_string(),
            sender: Sender { external_id: e.user_id.to_string(), ..Sender::default() },
            kind: MessageKind::Text,
            text: Some(text),
            ..InboundMessage::default()
        },
        user_id: e.user_id,
        media: Vec::new(),
        forwarded_from: None,
    };
    Update::ButtonPress { draft: Box::new(draft), event_id: e.event_id, user_id: e.user_id, peer_id: e.peer_id }
}

fn seconds(s: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(s, 0).single()
}

/// What one attachment adds to a message.
#[derive(Debug, Default, PartialEq)]
struct Attached {
    kind: Option<MessageKind>,
    media: Option<Media>,
    sticker_id: Option<String>,
    /// A line for the agent (a link, or what the hub cannot show).
    note: Option<String>,
}

fn str_of<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn int_of(v: &Value, field: &str) -> Option<i64> {
    v.get(field).and_then(|x| x.as_i64().or_else(|| x.as_str().and_then(|s| s.parse().ok())))
}

/// The URL of the largest image among `sizes` (`[{url, width, height, type}]`): by area, then by
/// VK's size letters when widths are not given.
fn largest(sizes: &[Value]) -> Option<&str> {
    const ORDER: &str = "smxopqryzw";
    sizes
        .iter()
        .filter_map(|s| {
            let url = str_of(s, "url").or_else(|| str_of(s, "src"))?;
            let area = int_of(s, "width").unwrap_or(0) * int_of(s, "height").unwrap_or(0);
            let rank = str_of(s, "type").and_then(|t| ORDER.find(t)).map(|i| i as i64).unwrap_or(-1);
            Some(((area, rank), url))
        })
        .max_by_key(|(k, _)| *k)
        .map(|(_, url)| url)
}

/// `<owner>_<id>` of an attached object.
fn object_id(o: &Value) -> String {
    format!("{}_{}", int_of(o, "owner_id").unwrap_or(0), int_of(o, "id").unwrap_or(0))
}

fn attachment(a: &Value) -> Attached {
    let kind = str_of(a, "type").unwrap_or("unknown");
    let o = a.get(kind).cloned().unwrap_or(Value::Null);
    let unavailable =
        |what: &str| Attached { note: Some(format!("[{what} VK sent without a link]")), ..Attached::default() };
    match kind {
        "photo" => {
            let sizes = o.get("sizes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            match largest(sizes) {
                Some(url) => Attached {
                    kind: Some(MessageKind::Image),
                    media: Some(Media {
                        url: url.to_owned(),
                        size: None,
                        name: format!("photo{}.jpg", object_id(&o)),
                        mime: "image/jpeg".into(),
                    }),
                    ..Attached::default()
                },
                None => unavailable("a photo"),
            }
        }
        "doc" => {
            let Some(url) = str_of(&o, "url") else { return unavailable("a document") };
            let ext = str_of(&o, "ext").unwrap_or_default().to_ascii_lowercase();
            let mut name = str_of(&o, "title").map(str::to_owned).unwrap_or_else(|| format!("doc{}", object_id(&o)));
            if !ext.is_empty() && !name.to_ascii_lowercase().ends_with(&format!(".{ext}")) {
                name = format!("{name}.{ext}");
            }
            let mime = mime_for(&name).unwrap_or("application/octet-stream").to_owned();
            // VK's doc types: 3 gif, 4 image, 6 video
            let kind = match int_of(&o, "type") {
                Some(3 | 4) if mime.starts_with("image/") => MessageKind::Image,
                Some(6) if mime.starts_with("video/") => MessageKind::Video,
                _ => MessageKind::Document,
            };
            let size = int_of(&o, "size").and_then(|s| u64::try_from(s).ok());
            Attached {
                kind: Some(kind),
                media: Some(Media { url: url.to_owned(), size, name, mime }),
                ..Attached::default()
            }
        }
        "audio_message" => {
            let (url, ext, mime) = match (str_of(&o, "link_ogg"), str_of(&o, "link_mp3")) {
                (Some(url), _) => (url, "ogg", "audio/ogg"),
                (None, Some(url)) => (url, "mp3", "audio/mpeg"),
                (None, None) => return unavailable("a voice message"),
            };
            Attached {
                kind: Some(MessageKind::Voice),
                media: Some(Media {
                    url: url.to_owned(),
                    size: None,
                    name: format!("voice{}.{ext}", object_id(&o)),
                    mime: mime.into(),
                }),
                ..Attached::default()
            }
        }
        "sticker" => {
            let id = int_of(&o, "sticker_id").map(|id| id.to_string());
            let images = o.get("images").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            let media = largest(images).map(|url| Media {
                url: url.to_owned(),
                size: None,
                name: format!("sticker_{}.png", id.as_deref().unwrap_or("vk")),
                mime: "image/png".into(),
            });
            Attached { kind: Some(MessageKind::Sticker), media, sticker_id: id, ..Attached::default() }
        }
        "graffiti" => match str_of(&o, "url") {
            Some(url) => Attached {
                kind: Some(MessageKind::Image),
                media: Some(Media {
                    url: url.to_owned(),
                    size: None,
                    name: format!("graffiti{}.png", object_id(&o)),
                    mime: "image/png".into(),
                }),
                ..Attached::default()
            },
            None => unavailable("a graffiti"),
        },
        "video" => {
            // VK gives bots a file only for some videos (`files.mp4_*`); otherwise a link to watch it
            const QUALITIES: [&str; 6] = ["mp4_1080", "mp4_720", "mp4_480", "mp4_360", "mp4_240", "mp4_144"];
            let title = str_of(&o, "title").unwrap_or("video");
            let file = o.get("files").and_then(|f| QUALITIES.iter().find_map(|q| str_of(f, q)));
            match file {
                Some(url) => Attached {
                    kind: Some(MessageKind::Video),
                    media: Some(Media {
                        url: url.to_owned(),
                        size: None,
                        name: format!("{}.mp4", title.trim_end_matches(".mp4")),
                        mime: "video/mp4".into(),
                    }),
                    ..Attached::default()
                },
                None => Attached {
                    kind: Some(MessageKind::Video),
                    note: Some(format!(
                        "[video \"{title}\": https://vk.com/video{} (VK gives bots no file for it)]",
                        object_id(&o)
                    )),
                    ..Attached::default()
                },
            }
        }
        "link" => match str_of(&o, "url") {
            Some(url) => Attached { note: Some(url.to_owned()), ..Attached::default() },
            None => Attached::default(),
        },
        "wall" => Attached {
            note: Some(format!(
                "[a wall post: https://vk.com/wall{}_{}]",
                int_of(&o, "owner_id").or_else(|| int_of(&o, "from_id")).unwrap_or(0),
                int_of(&o, "id").unwrap_or(0)
            )),
            ..Attached::default()
        },
        "audio" => Attached {
            note: Some(format!(
                "[a VK audio track: {} – {}]",
                str_of(&o, "artist").unwrap_or("?"),
                str_of(&o, "title").unwrap_or("?")
            )),
            ..Attached::default()
        },
        other => Attached {
            note: Some(format!("[a VK {other} attachment, which this hub cannot show]")),
            ..Attached::default()
        },
    }
}

/// The message's own content and its attachments', as text lines, media and the first kind.
#[derive(Default)]
struct Content {
    kind: Option<MessageKind>,
    lines: Vec<String>,
    media: Vec<Media>,
    sticker_id: Option<String>,
}

impl Content {
    fn add(&mut self, attachments: &[Value]) {
        for a in attachments {
            let Attached { kind, media, sticker_id, note } = attachment(a);
            if self.kind.is_none() {
                self.kind = kind;
            }
            if self.sticker_id.is_none() {
                self.sticker_id = sticker_id;
            }
            self.media.extend(media);
            self.lines.extend(note);
        }
    }
}

fn map_message(account_id: Uuid, m: WireMessage) -> Result<Draft, String> {
    let mut content = Content::default();
    if !m.text.is_empty() {
        content.lines.push(m.text.clone());
    }
    content.add(&m.attachments);
    let mut location = None;
    if let Some(geo) = &m.geo {
        let (lat, lon) = (geo.coordinates.latitude, geo.coordinates.longitude);
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Err(format!("a VK location out of range: {lat}, {lon}"));
        }
        let address = geo.place.as_ref().and_then(|p| p.title.clone()).filter(|t| !t.trim().is_empty());
        location = Some(Location { lat, lon, address });
        if content.kind.is_none() {
            content.kind = Some(MessageKind::Location);
        }
    }
    let mut forwarded = None;
    let mut forwarded_from = None;
    if let Some(first) = m.fwd_messages.first() {
        forwarded = Some(Forwarded { from_name: None, date: first.date.and_then(seconds) });
        forwarded_from = first.from_id;
        for f in &m.fwd_messages {
            if !f.text.is_empty() {
                content.lines.push(if m.fwd_messages.len() == 1 && m.text.is_empty() {
                    f.text.clone()
                } else {
                    format!("[forwarded] {}", f.text)
                });
            }
            content.add(&f.attachments);
        }
    }
    let text = (!content.lines.is_empty()).then(|| content.lines.join("\n"));
    let kind = content.kind.unwrap_or(MessageKind::Text);
    let reply_to = m.reply_message.as_ref().and_then(|r| r.id).filter(|id| *id > 0).map(|id| id.to_string());
    Ok(Draft {
        message: InboundMessage {
            account_id,
            external_message_id: m.id.to_string(),
            chat_id: m.peer_id.to_string(),
            sender: Sender { external_id: m.from_id.to_string(), ..Sender::default() },
            kind,
            text,
            file_ids: Vec::new(),
            location,
            contact: None,
            reply_to_external_id: reply_to,
            forwarded,
            sticker_id: if kind == MessageKind::Sticker { content.sticker_id } else { None },
            sent_at: m.date.and_then(seconds),
        },
        user_id: m.from_id,
        media: content.media,
        forwarded_from,
    })
}

/// A user as `users.get` describes them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Profile {
    pub id: i64,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub photo_200: Option<String>,
    #[serde(default)]
    pub deactivated: Option<String>,
}

impl Profile {
    /// "First Last", or `VK user <id>` when VK gives no name.
    pub fn name(&self) -> String {
        let name = format!("{} {}", self.first_name.trim(), self.last_name.trim()).trim().to_owned();
        if name.is_empty() { format!("VK user {}", self.id) } else { name }
    }

    /// Their own photo: not VK's placeholder for someone without one (`/images/camera_200.png`),
    /// nor a deleted or banned page's.
    pub fn photo(&self) -> Option<&str> {
        let url = self.photo_200.as_deref()?.trim();
        (self.deactivated.is_none()
            && !url.is_empty()
            && !url.contains("/images/camera_")
            && !url.contains("/images/deactivated_"))
        .then_some(url)
    }
}

// ------------------------------------------------------------------------------ sending --

/// VK's `random_id` for a part: stable for one outbox row and part across attempts and leaders,
/// so VK drops a repeat. A key `<row>:<part>` (the outbox's) maps one-to-one onto 1..2^31-1 for
/// parts below 32 (26 bits of the row, 5 of the part: no two rows within 67 million of each
/// other share one); any other key gets 31 bits of its SHA-256. Never 0 (which VK takes as "no
/// key").
pub fn random_id(key: &str) -> i32 {
    const ROWS: u64 = (1 << 26) - 1;
    if let Some((row, part)) = key.split_once(':')
        && let (Ok(row), Ok(part)) = (row.parse::<u64>(), part.parse::<u64>())
        && part < 32
    {
        let row = row.wrapping_sub(1) % ROWS + 1;
        return i32::try_from(row * 32 + part).expect("at most 2^31 - 1");
    }
    let digest = Sha256::digest(key.as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) & 0x7fff_ffff;
    i32::try_from(n.max(1)).expect("31 bits")
}

/// At most `max` characters of `s`.
pub fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn is_link(data: &str) -> bool {
    let t = data.trim();
    !t.contains(char::is_whitespace)
        && url::Url::parse(t).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// The domain keyboard as VK's `keyboard` JSON: a reply keyboard as text buttons (`one_time`
/// as the account says; VK cannot ask for the phone), inline buttons as an inline keyboard of
/// callback buttons whose payload carries the data (a button whose data is a web link opens it
/// instead), a removal as an empty keyboard. Rows wider than VK's 5 buttons wrap; more buttons
/// than VK takes (40 and 10 rows; inline 10 and 6 rows) are refused.
pub fn keyboard(keyboard: &Keyboard, one_time: bool) -> Result<Value, String> {
    const WIDTH: usize = 5;
    let (inline, rows, max_rows, max_buttons) = match keyboard {
        Keyboard::Remove => return Ok(json!({"one_time": true, "buttons": []})),
        Keyboard::Reply { rows } => {
            if rows.iter().flatten().any(|b| b.request_phone) {
                return Err("VK cannot ask the customer for their phone number".into());
            }
            let rows: Vec<Vec<Value>> = rows
                .iter()
                .map(|row| {
                    row.iter().map(|b| json!({"action": {"type": "text", "label": cut(&b.text, LABEL_MAX)}})).collect()
                })
                .collect();
            (false, rows, 10, 40)
        }
        Keyboard::Inline { rows } => {
            let mut out = Vec::new();
            for row in rows {
                let mut buttons = Vec::new();
                for b in row {
                    let label = cut(&b.text, LABEL_MAX);
                    if is_link(&b.data) {
                        buttons.push(json!({"action": {"type": "open_link", "label": label, "link": b.data.trim()}}));
                        continue;
                    }
                    let payload = json!({"data": b.data}).to_string();
                    if payload.chars().count() > PAYLOAD_MAX {
                        return Err(format!(
                            "the data of button {:?} is too long for VK (a button's payload is at most {PAYLOAD_MAX} characters)",
                            b.text
                        ));
                    }
                    buttons.push(json!({"action": {"type": "callback", "label": label, "payload": payload}}));
                }
                out.push(buttons);
            }
            (true, out, 6, 10)
        }
    };
    let rows: Vec<Vec<Value>> = rows
        .into_iter()
        .filter(|r| !r.is_empty())
        .flat_map(|r| r.chunks(WIDTH).map(<[Value]>::to_vec).collect::<Vec<_>>())
        .collect();
    let count: usize = rows.iter().map(Vec::len).sum();
    if rows.len() > max_rows || count > max_buttons {
        let what = if inline { "inline keyboard" } else { "keyboard" };
        return Err(format!(
            "VK takes at most {max_buttons} buttons in {max_rows} rows of 5 in a {what}; this one has {count} in {} rows",
            rows.len()
        ));
    }
    Ok(if inline { json!({"inline": true, "buttons": rows}) } else { json!({"one_time": one_time, "buttons": rows}) })
}

/// How a file goes to VK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadKind {
    /// `photos.getMessagesUploadServer` → field `photo` → `photos.saveMessagesPhoto`: JPEG, PNG, GIF.
    Photo,
    /// `docs.getMessagesUploadServer` (`type` = `doc`) → field `file` → `docs.save`: anything
    /// else, video included (a community token cannot upload videos).
    Doc,
    /// The same with `type` = `audio_message`: a voice message (OGG/Opus).
    Voice,
    /// The same with `type` = `graffiti`: a PNG sent as a sticker.
    Graffiti,
}

impl UploadKind {
    /// `type` of `docs.getMessagesUploadServer`.
    pub fn doc_type(self) -> &'static str {
        match self {
            UploadKind::Voice => "audio_message",
            UploadKind::Graffiti => "graffiti",
            UploadKind::Photo | UploadKind::Doc => "doc",
        }
    }
}

pub fn upload_kind(mime: &str, as_sticker: bool) -> UploadKind {
    match mime {
        "image/png" if as_sticker => UploadKind::Graffiti,
        "image/jpeg" | "image/png" | "image/gif" => UploadKind::Photo,
        "audio/ogg" | "audio/opus" => UploadKind::Voice,
        _ => UploadKind::Doc,
    }
}

/// `messages.send`'s parameters for one part to `peer` (besides the token and `v`);
/// `attachment` is the uploaded file (`photo<owner>_<id>_<key>`, `doc<owner>_<id>`).
pub fn send_params(
    peer: &str,
    part: &Part,
    attachment: Option<String>,
    one_time: bool,
) -> Result<Vec<(&'static str, String)>, SendError> {
    if part.contact.is_some() {
        return Err(SendError::Permanent("VK cannot send contacts".into()));
    }
    let mut params = vec![("peer_id", peer.to_owned()), ("random_id", random_id(&part.idempotency_key).to_string())];
    let mut text = part.text.clone().filter(|t| !t.is_empty());
    if let Some(location) = &part.location {
        params.push(("lat", location.lat.to_string()));
        params.push(("long", location.lon.to_string()));
        if text.is_none() {
            text = location.address.clone().filter(|a| !a.trim().is_empty());
        }
    }
    if let Some(text) = text {
        params.push(("message", text));
    }
    if let Some(attachment) = attachment {
        params.push(("attachment", attachment));
    }
    if let Some(sticker) = &part.sticker_id {
        let id: u64 = sticker.trim().parse().map_err(|_| {
            SendError::Permanent(format!("{sticker:?} is not a VK sticker id (VK's sticker ids are numbers)"))
        })?;
        params.push(("sticker_id", id.to_string()));
    }
    if let Some(forward) = &part.forward_of {
        params.push(("forward_messages", forward.clone()));
    }
    if let Some(reply) = &part.reply_to {
        params.push(("reply_to", reply.clone()));
    }
    if let Some(k) = &part.keyboard {
        params.push(("keyboard", keyboard(k, one_time).map_err(SendError::Permanent)?.to_string()));
    }
    Ok(params)
}

/// The `attachment` strings of a message as `messages.getById` describes it (to keep them when
/// its text is edited).
pub fn attachment_strings(message: &Value) -> Vec<String> {
    let attachments = message.get("attachments").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    attachments
        .iter()
        .filter_map(|a| {
            let kind = str_of(a, "type")?;
            let o = a.get(kind)?;
            let key = str_of(o, "access_key").map(|k| format!("_{k}")).unwrap_or_default();
            let kind = if kind == "audio_message" || kind == "graffiti" { "doc" } else { kind };
            Some(format!("{kind}{}{key}", object_id(o)))
        })
        .collect()
}

/// What the runtime does with a VK error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 6 (requests per second), 9 (flood control), 29 (the method's quota): wait and send again;
    /// the first wait.
    RateLimited(Duration),
    /// Worth another try with backoff (1 unknown error, 10 internal error).
    Transient(String),
    /// The account itself is refused (5 token, 14 captcha, 912 bot features off): nothing can go
    /// out until it is fixed, so the rows wait and the account is reported.
    Unhealthy(String),
    /// This message can never go out as it is: the reason for the agent.
    Permanent(String),
}

pub fn classify(code: i64, message: &str) -> Refusal {
    let said = |what: &str| format!("{what} (VK error {code}: {message})");
    match code {
        6 => Refusal::RateLimited(Duration::from_secs(1)),
        9 => Refusal::RateLimited(Duration::from_secs(3)),
        29 => Refusal::RateLimited(Duration::from_secs(60)),
        1 | 10 => Refusal::Transient(said("VK could not handle it now")),
        5 => Refusal::Unhealthy(said(
            "VK refuses the community's access_token: put a valid community token in the account's credentials",
        )),
        14 => Refusal::Unhealthy(said("VK asks for a captcha: someone must use the community's token by hand")),
        912 => Refusal::Unhealthy(said("the community's bot features are turned off: enable them in its settings")),
        900 => Refusal::Permanent(said("the customer has blacklisted the community")),
        901 => Refusal::Permanent(said("the customer has not allowed messages from this community")),
        902 => Refusal::Permanent(said("the customer's privacy settings do not let the community write to them")),
        909 => Refusal::Permanent(said("the message is too old to edit on VK")),
        910 | 914 => Refusal::Permanent(said("the message is too long for VK")),
        911 => Refusal::Permanent(said("VK refused the keyboard")),
        913 => Refusal::Permanent(said("too many forwarded messages")),
        917 | 945 => Refusal::Permanent(said("the community has no access to this conversation")),
        921 => Refusal::Permanent(said("VK cannot forward these messages")),
        924 => Refusal::Permanent(said("VK cannot delete this message for everybody")),
        _ => Refusal::Permanent(said("VK refused it")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::domain::{InlineButton, ReplyButton};

    fn parse(v: Value) -> (String, Result<Update, String>) {
        parse_update(Uuid::nil(), &serde_json::to_vec(&v).unwrap())
    }

    fn new_message(message: Value) -> Draft {
        let mut m = json!({"id": 812, "date": 1767312000, "from_id": 7700123, "peer_id": 7700123, "out": 0, "text": "",
            "conversation_message_id": 77, "fwd_messages": [], "important": false, "random_id": 0, "attachments": [],
            "is_hidden": false});
        m.as_object_mut().unwrap().extend(message.as_object().unwrap().clone());
        let (key, parsed) = parse(json!({"type": "message_new", "group_id": 231000555, "event_id": "9a41c0e7b2d3",
            "v": "5.199", "object": {"message": m, "client_info": {"button_actions": ["text", "callback"], "keyboard": true,
            "inline_keyboard": true, "carousel": true, "lang_id": 3}}}));
        assert_eq!(key, "9a41c0e7b2d3");
        match parsed.unwrap() {
            Update::Message(d) => *d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_text_message() {
        let d = new_message(json!({"text": "Hello, where is order 7731? 👋"}));
        let m = &d.message;
        assert_eq!((m.external_message_id.as_str(), m.chat_id.as_str()), ("812", "7700123"));
        assert_eq!(m.sender.external_id, "7700123");
        assert_eq!(m.text.as_deref(), Some("Hello, where is order 7731? 👋"));
        assert_eq!(m.kind, MessageKind::Text);
        assert_eq!(m.sent_at.unwrap().timestamp(), 1767312000);
        assert_eq!(d.user_id, 7700123);
        assert!(d.media.is_empty());
    }

    #[test]
    fn photos_take_the_largest_size_and_documents_keep_their_name() {
        let d = new_message(json!({"attachments": [{"type": "photo", "photo": {"id": 457239101, "owner_id": 7700123,
            "access_key": "f00dcafe", "sizes": [
                {"type": "m", "url": "https://sun9-7.userapi.com/m.jpg", "width": 130, "height": 98},
                {"type": "x", "url": "https://sun9-7.userapi.com/x.jpg", "width": 604, "height": 453},
                {"type": "s", "url": "https://sun9-7.userapi.com/s.jpg", "width": 75, "height": 57}]}}],
            "text": "the receipt"}));
        assert_eq!(d.message.kind, MessageKind::Image);
        assert_eq!(d.message.text.as_deref(), Some("the receipt"));
        assert_eq!(
            d.media,
            vec![Media {
                url: "https://sun9-7.userapi.com/x.jpg".into(),
                size: None,
                name: "photo7700123_457239101.jpg".into(),
                mime: "image/jpeg".into()
            }]
        );
        // sizes without widths: VK's letters
        let d = new_message(json!({"attachments": [{"type": "photo", "photo": {"id": 1, "owner_id": 2, "sizes": [
            {"type": "z", "url": "https://x/z.jpg", "width": 0, "height": 0},
            {"type": "w", "url": "https://x/w.jpg", "width": 0, "height": 0},
            {"type": "m", "url": "https://x/m.jpg", "width": 0, "height": 0}]}}]}));
        assert_eq!(d.media[0].url, "https://x/w.jpg");

        let d = new_message(json!({"attachments": [{"type": "doc", "doc": {"id": 680221133, "owner_id": 7700123,
            "title": "invoice.pdf", "size": 48213, "ext": "pdf", "url": "https://vk.com/doc7700123_680221133?hash=a", "type": 1}}]}));
        assert_eq!(d.message.kind, MessageKind::Document);
        assert_eq!(d.message.text, None);
        let media = &d.media[0];
        assert_eq!(
            (media.name.as_str(), media.mime.as_str(), media.size),
            ("invoice.pdf", "application/pdf", Some(48213))
        );
        let d = new_message(json!({"attachments": [{"type": "doc", "doc": {"id": 1, "owner_id": 2, "title": "scan",
            "ext": "png", "size": 10, "url": "https://vk.com/doc2_1", "type": 4}}]}));
        assert_eq!(d.message.kind, MessageKind::Image);
        assert_eq!((d.media[0].name.as_str(), d.media[0].mime.as_str()), ("scan.png", "image/png"));
    }

    #[test]
    fn voice_stickers_video_and_what_the_hub_cannot_show() {
        let d = new_message(
            json!({"attachments": [{"type": "audio_message", "audio_message": {"id": 5, "owner_id": 7700123,
            "duration": 3, "waveform": [0, 1], "link_ogg": "https://psv4.userapi.com/a.ogg", "link_mp3": "https://psv4.userapi.com/a.mp3"}}]}),
        );
        assert_eq!(d.message.kind, MessageKind::Voice);
        assert_eq!(
            (d.media[0].url.as_str(), d.media[0].mime.as_str()),
            ("https://psv4.userapi.com/a.ogg", "audio/ogg")
        );

        let d =
            new_message(json!({"attachments": [{"type": "sticker", "sticker": {"product_id": 1, "sticker_id": 9014,
            "images": [{"url": "https://vk.com/sticker/1-9014-128", "width": 128, "height": 128},
                       {"url": "https://vk.com/sticker/1-9014-512", "width": 512, "height": 512}]}}]}));
        assert_eq!(d.message.kind, MessageKind::Sticker);
        assert_eq!(d.message.sticker_id.as_deref(), Some("9014"));
        assert_eq!(d.media[0].url, "https://vk.com/sticker/1-9014-512");

        let d = new_message(json!({"attachments": [{"type": "video", "video": {"id": 456239017, "owner_id": 7700123,
            "title": "unboxing", "duration": 12, "files": {"mp4_240": "https://x/240.mp4", "mp4_720": "https://x/720.mp4"}}}]}));
        assert_eq!(d.message.kind, MessageKind::Video);
        assert_eq!((d.media[0].url.as_str(), d.media[0].name.as_str()), ("https://x/720.mp4", "unboxing.mp4"));
        let d = new_message(
            json!({"attachments": [{"type": "video", "video": {"id": 17, "owner_id": -5, "title": "ad"}}]}),
        );
        assert_eq!(d.message.kind, MessageKind::Video);
        assert!(d.media.is_empty());
        assert_eq!(
            d.message.text.as_deref(),
            Some("[video \"ad\": https://vk.com/video-5_17 (VK gives bots no file for it)]")
        );

        let d = new_message(json!({"text": "look", "attachments": [{"type": "poll", "poll": {"id": 1}},
            {"type": "link", "link": {"url": "https://shop.example/7731", "title": "Order"}}]}));
        assert_eq!(d.message.kind, MessageKind::Text);
        assert_eq!(
            d.message.text.as_deref(),
            Some("look\n[a VK poll attachment, which this hub cannot show]\nhttps://shop.example/7731")
        );
    }

    #[test]
    fn location_forwards_and_replies() {
        let d =
            new_message(json!({"geo": {"type": "point", "coordinates": {"latitude": 59.9386, "longitude": 30.3141},
            "place": {"title": "Saint Petersburg, Nevsky 28"}}}));
        assert_eq!(d.message.kind, MessageKind::Location);
        assert_eq!(
            d.message.location,
            Some(Location { lat: 59.9386, lon: 30.3141, address: Some("Saint Petersburg, Nevsky 28".into()) })
        );

        let d = new_message(json!({"fwd_messages": [{"date": 1767300000, "from_id": 5550001, "text": "where is it?",
            "attachments": [{"type": "photo", "photo": {"id": 3, "owner_id": 5550001, "sizes": [{"type": "x", "url": "https://x/f.jpg", "width": 1, "height": 1}]}}]}]}));
        assert_eq!(d.message.text.as_deref(), Some("where is it?"));
        assert_eq!(d.message.kind, MessageKind::Image, "the forwarded photo");
        assert_eq!(d.message.forwarded.as_ref().unwrap().date.unwrap().timestamp(), 1767300000);
        assert_eq!(d.forwarded_from, Some(5550001));
        let d = new_message(json!({"text": "see these", "fwd_messages": [
            {"date": 1, "from_id": 5550001, "text": "one"}, {"date": 2, "from_id": 5550002, "text": "two"}]}));
        assert_eq!(d.message.text.as_deref(), Some("see these\n[forwarded] one\n[forwarded] two"));

        let d = new_message(
            json!({"text": "this one", "reply_message": {"id": 813, "from_id": -231000555, "date": 1, "text": "Refund or resend?"}}),
        );
        assert_eq!(d.message.reply_to_external_id.as_deref(), Some("813"));
        assert!(d.message.forwarded.is_none());
    }

    #[test]
    fn edits_echoes_permissions_button_presses_and_the_rest() {
        let (_, u) = parse(json!({"type": "message_edit", "event_id": "e1", "object": {"id": 812, "from_id": 7700123,
            "peer_id": 7700123, "out": 0, "text": "corrected\u{0}"}}));
        assert!(
            matches!(u.unwrap(), Update::Edit { external_message_id, text } if external_message_id == "812" && text == "corrected\u{FFFD}")
        );
        let (_, u) = parse(
            json!({"type": "message_edit", "object": {"id": 813, "from_id": -231000555, "peer_id": 7700123, "out": 1, "text": "x"}}),
        );
        assert!(matches!(u.unwrap(), Update::Echo { message_id: 813 }));
        let (key, u) =
            parse(json!({"type": "message_reply", "object": {"id": 813, "from_id": -231000555, "peer_id": 7700123,
            "out": 1, "text": "Refund or resend?", "random_id": 1402233117}}));
        assert!(key.starts_with("message_reply-"), "{key}");
        assert!(matches!(u.unwrap(), Update::Echo { message_id: 813 }));
        let (_, u) = parse(json!({"type": "message_allow", "object": {"user_id": 7700123, "key": "shop"}}));
        assert!(matches!(u.unwrap(), Update::Allow { user_id: 7700123 }));
        let (_, u) = parse(json!({"type": "message_deny", "object": {"user_id": 7700123}}));
        assert!(matches!(u.unwrap(), Update::Deny { user_id: 7700123 }));

        let (_, u) = parse(json!({"type": "message_event", "object": {"user_id": 7700123, "peer_id": 7700123,
            "event_id": "3159dc190b1f", "payload": {"data": "refund"}, "conversation_message_id": 78}}));
        match u.unwrap() {
            Update::ButtonPress { draft, event_id, user_id, peer_id } => {
                assert_eq!((event_id.as_str(), user_id, peer_id), ("3159dc190b1f", 7700123, 7700123));
                assert_eq!(draft.message.external_message_id, "event:3159dc190b1f");
                assert_eq!(draft.message.text.as_deref(), Some("refund"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(button_text(&json!("{\"data\":\"csat:5\"}")), "csat:5");
        assert_eq!(button_text(&json!({"command": "start"})), "{\"command\":\"start\"}");

        let (_, u) = parse(json!({"type": "confirmation", "group_id": 231000555}));
        assert!(matches!(u.unwrap(), Update::Confirmation));
        let (_, u) =
            parse(json!({"type": "message_typing_state", "object": {"state": "typing", "from_id": 1, "to_id": -2}}));
        assert!(matches!(u.unwrap(), Update::Ignore(_)));
        let (_, u) = parse(json!({"type": "message_new", "object": {"message": {"id": 0, "from_id": 7700123,
            "peer_id": 2000000004, "conversation_message_id": 5, "text": "hi all"}}}));
        assert!(matches!(u.unwrap(), Update::Ignore(why) if why.contains("group chat 4")));
    }

    #[test]
    fn unreadable_updates_say_why() {
        let (key, u) = parse_update(Uuid::nil(), b"{not json");
        assert!(key.starts_with("unreadable-"));
        assert!(u.is_err());
        for (object, why) in [
            (json!({"message": {"id": 1, "peer_id": 1, "text": "no sender"}}), "cannot read"),
            (
                json!({"message": {"id": 1, "from_id": 1, "peer_id": 1, "geo": {"coordinates": {"latitude": "north", "longitude": 1}}}}),
                "cannot read",
            ),
            (
                json!({"message": {"id": 1, "from_id": 1, "peer_id": 1, "geo": {"coordinates": {"latitude": 91.0, "longitude": 1}}}}),
                "out of range",
            ),
            (json!({"message": {"from_id": 1, "peer_id": 1, "text": "no id"}}), "without a message id"),
        ] {
            let (key, u) = parse(json!({"type": "message_new", "event_id": "bad1", "object": object}));
            assert_eq!(key, "bad1");
            let err = u.unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn random_ids_are_stable_distinct_and_never_zero() {
        assert_eq!(random_id("1:0"), 32);
        assert_eq!(random_id("1:1"), 33);
        assert_eq!(random_id("2:0"), 64);
        assert_eq!(random_id("7731:2"), random_id("7731:2"), "stable");
        let mut seen = std::collections::HashSet::new();
        for row in 1..5000u64 {
            for part in 0..4 {
                assert!(seen.insert(random_id(&format!("{row}:{part}"))), "{row}:{part}");
            }
        }
        assert_eq!(random_id(&format!("{}:31", (1u64 << 26) - 1)), i32::MAX);
        assert_eq!(random_id(&format!("{}:0", 1u64 << 26)), 32, "wraps after 2^26 - 1 rows");
        assert!(random_id("0:0") > 0);
        let hashed = random_id("not an outbox key");
        assert!(hashed > 0 && hashed == random_id("not an outbox key"));
        assert_ne!(random_id("5:40"), random_id("5:8"), "parts from 32 on are hashed, not folded");
    }

    #[test]
    fn keyboards_become_vk_keyboards() {
        let reply = Keyboard::Reply {
            rows: vec![
                vec![
                    ReplyButton { text: "Refund".into(), request_phone: false },
                    ReplyButton { text: "Resend".into(), request_phone: false },
                ],
                (0..7).map(|i| ReplyButton { text: format!("{i}"), request_phone: false }).collect(),
            ],
        };
        let k = keyboard(&reply, true).unwrap();
        assert_eq!(k["one_time"], true);
        assert!(k.get("inline").is_none());
        assert_eq!(k["buttons"][0][0], json!({"action": {"type": "text", "label": "Refund"}}));
        let widths: Vec<usize> = k["buttons"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().len()).collect();
        assert_eq!(widths, vec![2, 5, 2], "a row of 7 wraps at VK's 5");
        assert_eq!(keyboard(&reply, false).unwrap()["one_time"], false);

        let inline = Keyboard::Inline {
            rows: vec![vec![
                InlineButton { text: "Refund".into(), data: "refund".into() },
                InlineButton { text: "Track it".into(), data: "https://track.example.com/7731".into() },
            ]],
        };
        let k = keyboard(&inline, true).unwrap();
        assert_eq!(k["inline"], true);
        assert_eq!(
            k["buttons"][0][0],
            json!({"action": {"type": "callback", "label": "Refund", "payload": "{\"data\":\"refund\"}"}})
        );
        assert_eq!(
            k["buttons"][0][1],
            json!({"action": {"type": "open_link", "label": "Track it", "link": "https://track.example.com/7731"}})
        );
        assert_eq!(keyboard(&Keyboard::Remove, true).unwrap(), json!({"one_time": true, "buttons": []}));

        let phone = Keyboard::Reply { rows: vec![vec![ReplyButton { text: "Share".into(), request_phone: true }]] };
        assert!(keyboard(&phone, true).unwrap_err().contains("phone"));
        let many = Keyboard::Inline {
            rows: (0..3)
                .map(|r| (0..4).map(|i| InlineButton { text: format!("{r}{i}"), data: "x".into() }).collect())
                .collect(),
        };
        assert!(keyboard(&many, true).unwrap_err().contains("at most 10"));
        let long = Keyboard::Inline { rows: vec![vec![InlineButton { text: "x".into(), data: "d".repeat(300) }]] };
        assert!(keyboard(&long, true).unwrap_err().contains("255"));
        let label = Keyboard::Reply { rows: vec![vec![ReplyButton { text: "l".repeat(60), request_phone: false }]] };
        assert_eq!(keyboard(&label, true).unwrap()["buttons"][0][0]["action"]["label"].as_str().unwrap().len(), 40);
    }

    #[test]
    fn parts_become_send_parameters() {
        let params = |part: &Part, attachment: Option<&str>| -> Vec<(String, String)> {
            send_params("7700123", part, attachment.map(str::to_owned), true)
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect()
        };
        let text = Part { text: Some("Your parcel left.".into()), idempotency_key: "41:0".into(), ..Part::default() };
        assert_eq!(
            params(&text, None),
            vec![
                ("peer_id".into(), "7700123".into()),
                ("random_id".into(), random_id("41:0").to_string()),
                ("message".into(), "Your parcel left.".into())
            ]
        );
        let photo = Part { text: Some("receipt".into()), idempotency_key: "42:0".into(), ..Part::default() };
        let p = params(&photo, Some("photo-231000555_457239017_ab12"));
        assert!(p.contains(&("attachment".into(), "photo-231000555_457239017_ab12".into())));
        let location = Part {
            location: Some(Location { lat: 59.9386, lon: 30.3141, address: Some("Nevsky 28".into()) }),
            ..Part::default()
        };
        let p = params(&location, None);
        assert!(p.contains(&("lat".into(), "59.9386".into())) && p.contains(&("long".into(), "30.3141".into())));
        assert!(p.contains(&("message".into(), "Nevsky 28".into())));
        let sticker = Part { sticker_id: Some("9014".into()), ..Part::default() };
        assert!(params(&sticker, None).contains(&("sticker_id".into(), "9014".into())));
        let bad = Part { sticker_id: Some("CAACAgI".into()), ..Part::default() };
        assert!(matches!(send_params("1", &bad, None, true), Err(SendError::Permanent(_))));
        let forward = Part { forward_of: Some("812".into()), reply_to: Some("811".into()), ..Part::default() };
        let p = params(&forward, None);
        assert!(
            p.contains(&("forward_messages".into(), "812".into())) && p.contains(&("reply_to".into(), "811".into()))
        );
        let contact =
            Part { contact: Some(schema::domain::Contact { phone: "+7".into(), name: "x".into() }), ..Part::default() };
        assert!(matches!(send_params("1", &contact, None, true), Err(SendError::Permanent(_))));
        let keyboard = Part {
            text: Some("?".into()),
            keyboard: Some(Keyboard::Reply {
                rows: vec![vec![ReplyButton { text: "A".into(), request_phone: false }]],
            }),
            ..Part::default()
        };
        let p = params(&keyboard, None);
        let k = p.iter().find(|(k, _)| k == "keyboard").unwrap();
        assert_eq!(serde_json::from_str::<Value>(&k.1).unwrap()["buttons"][0][0]["action"]["label"], "A");
    }

    #[test]
    fn uploads_by_type_and_attachments_back() {
        assert_eq!(upload_kind("image/jpeg", false), UploadKind::Photo);
        assert_eq!(upload_kind("image/webp", false), UploadKind::Doc);
        assert_eq!(upload_kind("image/png", true), UploadKind::Graffiti);
        assert_eq!(upload_kind("audio/ogg", false), UploadKind::Voice);
        assert_eq!(upload_kind("video/mp4", false), UploadKind::Doc);
        assert_eq!(UploadKind::Voice.doc_type(), "audio_message");
        let m = json!({"id": 813, "attachments": [
            {"type": "photo", "photo": {"id": 457239017, "owner_id": -231000555, "access_key": "ab12"}},
            {"type": "doc", "doc": {"id": 6, "owner_id": -231000555}}]});
        assert_eq!(attachment_strings(&m), vec!["photo-231000555_457239017_ab12", "doc-231000555_6"]);
    }

    #[test]
    fn errors_are_classified() {
        assert_eq!(classify(6, "Too many requests per second"), Refusal::RateLimited(Duration::from_secs(1)));
        assert!(matches!(classify(9, "Flood control"), Refusal::RateLimited(_)));
        assert!(matches!(classify(29, "Rate limit reached"), Refusal::RateLimited(_)));
        assert!(matches!(classify(10, "Internal server error"), Refusal::Transient(_)));
        assert!(
            matches!(classify(5, "User authorization failed"), Refusal::Unhealthy(r) if r.contains("access_token"))
        );
        assert!(matches!(classify(14, "Captcha needed"), Refusal::Unhealthy(_)));
        assert_eq!(
            classify(901, "Can't send messages for users without permission"),
            Refusal::Permanent(
                "the customer has not allowed messages from this community (VK error 901: Can't send messages for users without permission)"
                    .into()
            )
        );
        assert!(matches!(classify(902, "x"), Refusal::Permanent(r) if r.contains("privacy")));
        assert!(matches!(
            classify(100, "One of the parameters specified was missing or invalid"),
            Refusal::Permanent(_)
        ));
    }

    #[test]
    fn profiles_name_and_photo() {
        let p: Profile = serde_json::from_value(json!({"id": 7700123, "first_name": "Anna", "last_name": "Berg",
            "photo_200": "https://sun9-1.userapi.com/anna.jpg", "can_access_closed": true, "is_closed": false}))
        .unwrap();
        assert_eq!((p.name(), p.photo()), ("Anna Berg".into(), Some("https://sun9-1.userapi.com/anna.jpg")));
        let p: Profile = serde_json::from_value(json!({"id": 5, "first_name": "", "last_name": "",
            "photo_200": "https://vk.com/images/camera_200.png"}))
        .unwrap();
        assert_eq!((p.name(), p.photo()), ("VK user 5".into(), None));
    }
}
