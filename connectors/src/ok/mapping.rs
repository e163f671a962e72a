//! OK's wire format to the domain and back, with no I/O (`docs/platforms.md#ok`, §6): webhook
//! deliveries and long-poll updates to inbound messages, button presses and chat events; outbound
//! parts to the body of `POST /graph/me/messages/<chat_id>` (keyboards included); OK's errors to
//! what the runtime does next.
//!
//! Where OK's documents leave a shape open (the answer's message id, a press's fields, a
//! `CONTACT` payload, the keyboard's limits), the reading is tolerant and the writing follows the
//! documented examples; `docs/connectors.md#ok` lists what is unverified.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use schema::domain::{Contact, Keyboard, MessageKind};
use schema::store::{InboundMessage, Sender, without_nul};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The update types the hub subscribes to.
pub const WEBHOOK_TYPES: &[&str] = &["MESSAGE_CREATED", "MESSAGE_CALLBACK", "CHAT_SYSTEM"];
/// A button's text is cut to this many characters.
pub const LABEL_MAX: usize = 64;
/// A CALLBACK button's payload is at most this many characters.
pub const PAYLOAD_MAX: usize = 1024;
/// Buttons per keyboard row; wider rows wrap.
pub const ROW_WIDTH: usize = 7;
/// Rows per keyboard at most.
pub const MAX_ROWS: usize = 30;
/// Buttons per keyboard at most.
pub const MAX_BUTTONS: usize = 210;
/// Attachments per message at most (OK's documented limit).
pub const MAX_ATTACHMENTS: usize = 5;

/// A file OK holds for an inbound message: fetched right away into the file server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub url: String,
    pub name: String,
    pub mime: String,
}

/// An inbound message as mapped, before its media is fetched.
#[derive(Debug, Clone)]
pub struct Draft {
    /// `file_ids` empty: filled in by the receiver.
    pub message: InboundMessage,
    /// Files to fetch, in the order of the attachments.
    pub media: Vec<Media>,
}

/// What one update means for the hub.
#[derive(Debug, Clone)]
pub enum Update {
    /// `MESSAGE_CREATED`: a customer message.
    Message(Box<Draft>),
    /// `MESSAGE_CALLBACK`: a CALLBACK button pressed, stored as a text message with the button's
    /// payload, then answered (`POST /graph/<chat_id>/answer?callbackId=`).
    Press { draft: Box<Draft>, callback_id: String, chat_id: String },
    /// `CHAT_SYSTEM` (the chat was opened, from a deep link or the group's page): the customer
    /// is recorded, so agents can start a conversation with them.
    System { sender: Option<Sender>, kind: String },
    /// Nothing for the hub: why.
    Ignore(String),
}

impl Update {
    /// The key that keeps one customer's updates in order within a batch.
    pub fn chat_key(&self) -> Option<String> {
        match self {
            Update::Message(d) | Update::Press { draft: d, .. } => Some(d.message.chat_id.clone()),
            Update::System { sender: Some(s), .. } => Some(s.external_id.clone()),
            Update::System { .. } | Update::Ignore(_) => None,
        }
    }
}

#[derive(Deserialize, Default)]
struct WireSender {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireRecipient {
    #[serde(default)]
    chat_id: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireMessage {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    attachments: Vec<Value>,
    /// The documents' older single form.
    #[serde(default)]
    attachment: Option<Value>,
    #[serde(default)]
    reply_to: Option<String>,
    #[serde(default)]
    link: Option<Value>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    sender: Option<WireSender>,
    #[serde(default)]
    recipient: Option<WireRecipient>,
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    payload: Option<Value>,
    #[serde(default)]
    callback: Option<Value>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

fn str_of<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

fn millis(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

/// The text a payload carries: a string as it is, anything else as JSON.
fn payload_text(payload: &Value) -> String {
    match payload {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A customer as the update names them; `None` for the group's own messages or none at all.
fn customer(sender: Option<&WireSender>) -> Result<Option<Sender>, String> {
    let Some(sender) = sender else { return Ok(None) };
    let Some(id) = sender.user_id.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if id.starts_with("group:") {
        return Ok(None);
    }
    let name = sender.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    Ok(Some(Sender {
        external_id: without_nul(id),
        name: name.map(without_nul).unwrap_or_else(|| format!("OK user {}", id.trim_start_matches("user:"))),
        ..Sender::default()
    }))
}

/// An update's key (the message's `mid`, a press's `callbackId`, or a digest of its bytes: for
/// logs, retries and dead letters) and what it means, or why it can never be read.
pub fn parse_update(account_id: Uuid, raw: &[u8]) -> (String, Result<Update, String>) {
    let digest = || hex::encode(&Sha256::digest(raw)[..8]);
    let value = match serde_json::from_slice::<Value>(raw) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => return (format!("unreadable-{}", digest()), Err("not an OK update: not a JSON object".into())),
        Err(e) => return (format!("unreadable-{}", digest()), Err(format!("not an OK update: {e}"))),
    };
    let kind = str_of(&value, "webhookType").unwrap_or_default().to_owned();
    // the key first, from the loosest reading, so an update this build cannot read is named by it
    let callback_id = str_of(&value, "callbackId")
        .or_else(|| str_of(&value, "callback_id"))
        .or_else(|| value.get("callback").and_then(|c| str_of(c, "callbackId").or_else(|| str_of(c, "callback_id"))))
        .map(str::to_owned);
    let mid = value.get("message").and_then(|m| str_of(m, "mid")).map(str::to_owned);
    let seq = value.get("message").and_then(|m| m.get("seq")).filter(|s| !s.is_null()).map(payload_text);
    let key = match (kind.as_str(), callback_id, mid, seq) {
        ("MESSAGE_CALLBACK", Some(id), _, _) => format!("callback:{id}"),
        ("MESSAGE_CREATED", _, Some(mid), _) => mid,
        ("MESSAGE_CREATED", _, None, Some(seq)) => format!("seq:{seq}"),
        ("", ..) => format!("unreadable-{}", digest()),
        (other, ..) => format!("{other}-{}", digest()),
    };
    let envelope = match serde_json::from_value::<Envelope>(value) {
        Ok(envelope) => envelope,
        Err(e) => return (key, Err(format!("not an OK update this build can read: {e}"))),
    };
    let parsed = match kind.as_str() {
        "MESSAGE_CREATED" => message_created(account_id, &envelope, key.clone()),
        "MESSAGE_CALLBACK" => match key.strip_prefix("callback:") {
            Some(id) => message_callback(account_id, &envelope, id.to_owned(), key.clone()),
            None => Err("a MESSAGE_CALLBACK without a callbackId".into()),
        },
        "CHAT_SYSTEM" => {
            let what = envelope.kind.clone().unwrap_or_else(|| "CHAT_SYSTEM".into());
            customer(envelope.sender.as_ref()).map(|sender| Update::System { sender, kind: what })
        }
        "" => Err("not an OK update: no webhookType".into()),
        other => Ok(Update::Ignore(format!("a {other} update"))),
    };
    (key, parsed)
}

fn chat_of(envelope: &Envelope) -> Result<String, String> {
    envelope
        .recipient
        .as_ref()
        .and_then(|r| r.chat_id.as_deref())
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(without_nul)
        .ok_or_else(|| "an update without recipient.chat_id".to_owned())
}

fn message_created(account_id: Uuid, envelope: &Envelope, key: String) -> Result<Update, String> {
    let Some(sender) = customer(envelope.sender.as_ref())? else {
        return Ok(Update::Ignore("a message without a customer as its sender (the group's own)".into()));
    };
    let chat_id = chat_of(envelope)?;
    let m = envelope.message.as_ref().ok_or("a MESSAGE_CREATED without a message")?;
    let mut content = Content::default();
    if let Some(text) = m.text.as_deref().filter(|t| !t.is_empty()) {
        content.lines.push(text.to_owned());
    }
    let attachments: Vec<&Value> = m.attachments.iter().chain(m.attachment.iter()).collect();
    for (n, a) in attachments.into_iter().enumerate() {
        content.add(a, n, &sender)?;
    }
    let mut reply_to = m.reply_to.clone().filter(|r| !r.trim().is_empty());
    if let Some(link) = &m.link {
        match str_of(link, "type") {
            Some("REPLY") => {
                let mid = str_of(link, "mid").or_else(|| link.get("message").and_then(|m| str_of(m, "mid")));
                reply_to = reply_to.or(mid.map(str::to_owned));
            }
            Some("FORWARD") => content
                .lines
                .push("[the customer forwarded a message: OK forwards do not reach agents on this channel]".into()),
            _ => {}
        }
    }
    let mut sender = sender;
    if let Some(phone) = &content.phone {
        sender.phone = Some(phone.clone());
    }
    let text = (!content.lines.is_empty()).then(|| content.lines.join("\n"));
    Ok(Update::Message(Box::new(Draft {
        message: InboundMessage {
            account_id,
            external_message_id: without_nul(&key),
            chat_id,
            sender,
            kind: content.kind.unwrap_or(MessageKind::Text),
            text,
            file_ids: Vec::new(),
            location: None,
            contact: content.contact,
            reply_to_external_id: reply_to,
            forwarded: None,
            sticker_id: None,
            sent_at: envelope.timestamp.and_then(millis),
        },
        media: content.media,
    })))
}

fn message_callback(account_id: Uuid, envelope: &Envelope, callback_id: String, key: String) -> Result<Update, String> {
    let Some(sender) = customer(envelope.sender.as_ref())? else {
        return Err("a MESSAGE_CALLBACK without the customer who pressed".into());
    };
    let chat_id = chat_of(envelope)?;
    let payload = envelope
        .payload
        .clone()
        .or_else(|| envelope.callback.as_ref().and_then(|c| c.get("payload").cloned()))
        .unwrap_or(Value::Null);
    let draft = Draft {
        message: InboundMessage {
            account_id,
            external_message_id: without_nul(&key),
            chat_id: chat_id.clone(),
            sender,
            kind: MessageKind::Text,
            text: Some(payload_text(&payload)),
            sent_at: envelope.timestamp.and_then(millis),
            ..InboundMessage::default()
        },
        media: Vec::new(),
    };
    Ok(Update::Press { draft: Box::new(draft), callback_id, chat_id })
}

/// The message's own content and its attachments': text lines, media, the first kind, a contact.
#[derive(Default)]
struct Content {
    kind: Option<MessageKind>,
    lines: Vec<String>,
    media: Vec<Media>,
    contact: Option<Contact>,
    /// The customer's own phone (a `CONTACT` answering a REQUEST_CONTACT button).
    phone: Option<String>,
}

impl Content {
    fn kind(&mut self, kind: MessageKind) {
        if self.kind.is_none() {
            self.kind = Some(kind);
        }
    }

    fn refused(&mut self, what: &str) {
        self.lines.push(format!("[the customer sent {what}, which this channel does not carry to agents]"));
    }

    fn add(&mut self, a: &Value, n: usize, sender: &Sender) -> Result<(), String> {
        let kind = str_of(a, "type").unwrap_or("UNKNOWN").to_ascii_uppercase();
        let payload = a.get("payload").cloned().unwrap_or(Value::Null);
        let id = str_of(&payload, "id")
            .map(str::to_owned)
            .or_else(|| payload.get("id").and_then(Value::as_i64).map(|i| i.to_string()))
            .unwrap_or_else(|| (n + 1).to_string());
        let url = str_of(&payload, "url").filter(|u| u.starts_with("http://") || u.starts_with("https://"));
        match kind.as_str() {
            "IMAGE" => match url {
                Some(url) => {
                    self.kind(MessageKind::Image);
                    self.media.push(Media {
                        url: url.to_owned(),
                        name: format!("image_{}.jpg", safe(&id)),
                        mime: "image/jpeg".into(),
                    });
                }
                None => self.lines.push("[an image OK sent without a link to fetch]".into()),
            },
            "VIDEO" => {
                self.kind(MessageKind::Video);
                match url {
                    Some(url) => self.media.push(Media {
                        url: url.to_owned(),
                        name: format!("video_{}.mp4", safe(&id)),
                        mime: "video/mp4".into(),
                    }),
                    None => self.lines.push(format!("[a video OK sent without a link to fetch (id {id})]")),
                }
            }
            "CONTACT" => {
                let (phone, name) = contact_of(&payload);
                let Some(phone) = phone else {
                    return Err("a CONTACT attachment without a phone number this build can read".into());
                };
                // OK's clients send a contact only when a REQUEST_CONTACT button asks for it: it is
                // the customer's own, unless it names someone else
                let other = str_of(&payload, "user_id")
                    .or_else(|| payload.get("tam_info").and_then(|t| str_of(t, "user_id")))
                    .is_some_and(|u| u.trim_start_matches("user:") != sender.external_id.trim_start_matches("user:"));
                if !other {
                    self.phone = Some(phone.clone());
                }
                self.kind(MessageKind::Contact);
                self.contact = Some(Contact { phone, name: name.unwrap_or_else(|| sender.name.clone()) });
            }
            "SHARE" => {
                if let Some(url) = url
                    && !self.lines.iter().any(|l| l.contains(url))
                {
                    self.lines.push(url.to_owned());
                }
            }
            "STICKER" => self.refused("a sticker"),
            "FILE" => {
                let name = str_of(&payload, "name").or_else(|| str_of(&payload, "filename"));
                self.refused(&match name {
                    Some(name) => format!("a file ({name})"),
                    None => "a file".to_owned(),
                })
            }
            "AUDIO" => self.refused("an audio or voice message"),
            "LOCATION" => self.refused("a location"),
            "INLINE_KEYBOARD" => {}
            other => {
                self.lines.push(format!("[an OK {} attachment, which this hub cannot show]", other.to_lowercase()))
            }
        }
        Ok(())
    }
}

/// Characters safe in a file name.
fn safe(id: &str) -> String {
    let s: String = id.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).take(40).collect();
    if s.is_empty() { "ok".into() } else { s }
}

/// The phone and name of a `CONTACT` payload: `phone` / `phone_number` / `phoneNumber`, `name`,
/// or a vCard (`vcf_info` / `vcfInfo`: its `TEL` and `FN`).
fn contact_of(payload: &Value) -> (Option<String>, Option<String>) {
    let mut phone = ["phone", "phone_number", "phoneNumber"].iter().find_map(|f| str_of(payload, f)).map(str::to_owned);
    let mut name = str_of(payload, "name").map(str::to_owned);
    if let Some(vcf) = str_of(payload, "vcf_info").or_else(|| str_of(payload, "vcfInfo")) {
        for line in vcf.lines() {
            let (key, value) = match line.split_once(':') {
                Some((k, v)) => (k.to_ascii_uppercase(), v.trim()),
                None => continue,
            };
            if phone.is_none() && (key == "TEL" || key.starts_with("TEL;")) && !value.is_empty() {
                phone = Some(value.to_owned());
            }
            if name.is_none() && key == "FN" && !value.is_empty() {
                name = Some(value.to_owned());
            }
        }
    }
    (phone.map(|p| without_nul(&p)), name.map(|n| without_nul(&n)))
}

// ------------------------------------------------------------------------------ sending --

/// At most `max` characters of `s`.
pub fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn is_link(data: &str) -> bool {
    let t = data.trim();
    !t.contains(char::is_whitespace)
        && url::Url::parse(t).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// The domain keyboard as OK's `INLINE_KEYBOARD` attachment; `None` for a removal (OK's buttons
/// belong to their message: there is nothing to remove). Inline buttons are CALLBACK buttons
/// whose payload is the data (a button whose data is a web link is a LINK button); reply buttons
/// are CALLBACK buttons whose payload is their text, so a press comes back as the customer's
/// answer, and a `request_phone` button is REQUEST_CONTACT. Rows wider than [`ROW_WIDTH`] wrap;
/// more than [`MAX_BUTTONS`] buttons or [`MAX_ROWS`] rows are refused.
pub fn keyboard(keyboard: &Keyboard) -> Result<Option<Value>, String> {
    let rows: Vec<Vec<Value>> = match keyboard {
        Keyboard::Remove => return Ok(None),
        Keyboard::Reply { rows } => rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|b| {
                        let text = cut(&b.text, LABEL_MAX);
                        if b.request_phone {
                            Ok(json!({"type": "REQUEST_CONTACT", "text": text}))
                        } else {
                            callback(&b.text, &b.text)
                        }
                    })
                    .collect::<Result<Vec<_>, String>>()
            })
            .collect::<Result<_, _>>()?,
        Keyboard::Inline { rows } => rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|b| {
                        if is_link(&b.data) {
                            Ok(json!({"type": "LINK", "text": cut(&b.text, LABEL_MAX), "url": b.data.trim()}))
                        } else {
                            callback(&b.text, &b.data)
                        }
                    })
                    .collect::<Result<Vec<_>, String>>()
            })
            .collect::<Result<_, _>>()?,
    };
    let rows: Vec<Vec<Value>> = rows
        .into_iter()
        .filter(|r| !r.is_empty())
        .flat_map(|r| r.chunks(ROW_WIDTH).map(<[Value]>::to_vec).collect::<Vec<_>>())
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let count: usize = rows.iter().map(Vec::len).sum();
    if rows.len() > MAX_ROWS || count > MAX_BUTTONS {
        return Err(format!(
            "OK takes at most {MAX_BUTTONS} buttons in {MAX_ROWS} rows of {ROW_WIDTH}; this keyboard has {count} in {} rows",
            rows.len()
        ));
    }
    Ok(Some(json!({"type": "INLINE_KEYBOARD", "payload": {"keyboard": {"buttons": rows}}})))
}

fn callback(text: &str, data: &str) -> Result<Value, String> {
    if data.is_empty() {
        return Err(format!("button {text:?} has no data to send back"));
    }
    if data.chars().count() > PAYLOAD_MAX {
        return Err(format!(
            "the data of button {text:?} is too long for OK (a button's payload is at most {PAYLOAD_MAX} characters)"
        ));
    }
    Ok(json!({"type": "CALLBACK", "text": cut(text, LABEL_MAX), "intent": "DEFAULT", "payload": data}))
}

/// The body of `POST /graph/me/messages/<chat_id>` for one part: the text (or a file's caption),
/// the attachments (a file, the keyboard), the message answered.
pub fn message_body(chat_id: &str, text: Option<&str>, attachments: Vec<Value>, reply_to: Option<&str>) -> Value {
    let mut message = serde_json::Map::new();
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        message.insert("text".into(), json!(text));
    }
    if !attachments.is_empty() {
        message.insert("attachments".into(), Value::Array(attachments));
    }
    if let Some(reply) = reply_to.filter(|r| !r.is_empty()) {
        message.insert("reply_to".into(), json!(reply));
    }
    let recipient =
        if chat_id.starts_with("user:") { json!({"user_ids": [chat_id]}) } else { json!({"chat_id": chat_id}) };
    json!({"recipient": recipient, "message": Value::Object(message)})
}

/// The new message's id in a send's answer: `message_id`, `mid` or `message.mid` (which field OK
/// fills is not documented).
pub fn sent_id(answer: &Value) -> Option<String> {
    str_of(answer, "message_id")
        .or_else(|| str_of(answer, "mid"))
        .or_else(|| answer.get("message").and_then(|m| str_of(m, "mid")))
        .map(str::to_owned)
}

/// The attachment token of an upload's answer: an image's in `photos.<id>.token`, or a `token`
/// at the top.
pub fn upload_token(answer: &Value) -> Option<String> {
    if let Some(photos) = answer.get("photos").and_then(Value::as_object) {
        return photos.values().find_map(|p| str_of(p, "token")).map(str::to_owned);
    }
    str_of(answer, "token").map(str::to_owned)
}

// ------------------------------------------------------------------------------- errors --

/// What the runtime does with an OK error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// OK asks to slow down: wait this long first, then send again.
    RateLimited(Duration),
    /// Worth another try with backoff.
    Transient(String),
    /// The account itself is refused (an expired or revoked token): nothing can go out until it is
    /// fixed, so the rows wait and the account is reported.
    Unhealthy(String),
    /// This message can never go out as it is: the reason for the agent.
    Permanent(String),
}

/// The error codes an account may reclassify (`settings.error_codes`), on top of the defaults
/// of [`classify`]: OK documents neither its codes nor its rate-limit signal.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorCodes {
    pub retry: BTreeSet<i64>,
    pub rate_limit: BTreeSet<i64>,
    pub unhealthy: BTreeSet<i64>,
    pub not_allowed: BTreeSet<i64>,
    pub fail: BTreeSet<i64>,
}

/// OK's `error_code` and `error_msg` as the runtime acts on them. The defaults are OK's
/// REST-API codes (secondary: OK does not document which the Bot API answers): 1, 2 and 9999
/// retry; 8 (flood) waits 5 s and 11 (a limit reached) 60 s; 101-104 (the key or session
/// refused) and any message that says the token is invalid or expired make the account
/// unhealthy; 10 (permission denied) fails the message as "not allowed"; others fail it with
/// `error_msg`.
pub fn classify(code: i64, message: &str, codes: &ErrorCodes) -> Refusal {
    let said = |what: &str| format!("{what} (OK error {code}: {message})");
    let lower = message.to_ascii_lowercase();
    let token_refused = (lower.contains("token") || lower.contains("session"))
        && (lower.contains("expired") || lower.contains("invalid") || lower.contains("revoked"));
    let not_allowed = || {
        Refusal::Permanent(said(
            "OK does not let the group write to this customer: they have not allowed messages from the group",
        ))
    };
    let unhealthy = || {
        Refusal::Unhealthy(said(
            "OK refuses the group's access_token (expired or revoked): put a new token from the group's settings in the account's credentials",
        ))
    };
    if codes.unhealthy.contains(&code) {
        return unhealthy();
    }
    if codes.rate_limit.contains(&code) {
        return Refusal::RateLimited(Duration::from_secs(5));
    }
    if codes.retry.contains(&code) {
        return Refusal::Transient(said("OK could not handle it now"));
    }
    if codes.not_allowed.contains(&code) {
        return not_allowed();
    }
    if codes.fail.contains(&code) {
        return Refusal::Permanent(said("OK refused it"));
    }
    match code {
        _ if token_refused => unhealthy(),
        101..=104 => unhealthy(),
        8 => Refusal::RateLimited(Duration::from_secs(5)),
        11 => Refusal::RateLimited(Duration::from_secs(60)),
        1 | 2 | 9999 => Refusal::Transient(said("OK could not handle it now")),
        10 => not_allowed(),
        _ => Refusal::Permanent(said("OK refused it")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::domain::{InlineButton, ReplyButton};

    fn parse(v: Value) -> (String, Result<Update, String>) {
        parse_update(Uuid::nil(), &serde_json::to_vec(&v).unwrap())
    }

    fn created(message: Value) -> Draft {
        let v = json!({"webhookType": "MESSAGE_CREATED",
            "sender": {"user_id": "user:590011223344", "name": "Anna"},
            "recipient": {"chat_id": "chat:C4a1b2c3d4e500"},
            "message": message, "timestamp": 1767312000123i64});
        match parse(v).1.unwrap() {
            Update::Message(d) => *d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_text_message_keyed_by_its_mid() {
        let v = json!({"webhookType": "MESSAGE_CREATED", "sender": {"user_id": "user:590011223344", "name": "Anna"},
            "recipient": {"chat_id": "chat:C4a1b2c3d4e500"},
            "message": {"text": "Hello, where is order 7731? 👋", "seq": 101233445566778899i64, "mid": "mid:C4a1b2c3d4e500.1a2b3c"},
            "timestamp": 1767312000123i64});
        let (key, update) = parse(v);
        assert_eq!(key, "mid:C4a1b2c3d4e500.1a2b3c");
        let Update::Message(d) = update.unwrap() else { panic!() };
        let m = &d.message;
        assert_eq!(m.external_message_id, key);
        assert_eq!(
            (m.chat_id.as_str(), m.sender.external_id.as_str(), m.sender.name.as_str()),
            ("chat:C4a1b2c3d4e500", "user:590011223344", "Anna")
        );
        assert_eq!(m.text.as_deref(), Some("Hello, where is order 7731? 👋"));
        assert_eq!(m.kind, MessageKind::Text);
        assert_eq!(m.sent_at.unwrap().timestamp_millis(), 1767312000123);
        assert_eq!(d.chat_key_for_test(), "chat:C4a1b2c3d4e500");
    }

    impl Draft {
        fn chat_key_for_test(&self) -> String {
            Update::Message(Box::new(self.clone())).chat_key().unwrap()
        }
    }

    #[test]
    fn images_and_videos_are_fetched_and_what_the_channel_does_not_carry_is_said() {
        let d = created(json!({"mid": "mid:1", "text": "the receipt", "attachments": [
            {"type": "IMAGE", "payload": {"url": "https://i.mycdn.me/i?r=abc", "id": 8841}},
            {"type": "VIDEO", "payload": {"url": "https://vd.mycdn.me/v?id=77", "id": "77"}}]}));
        assert_eq!(d.message.kind, MessageKind::Image, "the first attachment's kind");
        assert_eq!(d.media.len(), 2);
        assert_eq!(
            d.media[0],
            Media {
                url: "https://i.mycdn.me/i?r=abc".into(),
                name: "image_8841.jpg".into(),
                mime: "image/jpeg".into()
            }
        );
        assert_eq!((d.media[1].name.as_str(), d.media[1].mime.as_str()), ("video_77.mp4", "video/mp4"));
        assert_eq!(d.message.text.as_deref(), Some("the receipt"));

        let d = created(json!({"mid": "mid:2", "attachment": {"type": "VIDEO", "payload": {"id": 90}}}));
        assert_eq!(d.message.kind, MessageKind::Video);
        assert!(d.media.is_empty());
        assert!(d.message.text.unwrap().contains("without a link"));

        let d = created(
            json!({"mid": "mid:3", "attachments": [{"type": "STICKER", "payload": {"url": "https://s/1.png"}},
            {"type": "FILE", "payload": {"url": "https://f/1", "name": "contract.pdf"}}, {"type": "AUDIO", "payload": {}},
            {"type": "LOCATION", "payload": {"latitude": 59.9, "longitude": 30.3}}, {"type": "POLL", "payload": {}},
            {"type": "SHARE", "payload": {"url": "https://track.example.com/7731"}}]}),
        );
        assert_eq!(d.message.kind, MessageKind::Text);
        assert!(d.media.is_empty(), "nothing the seed refuses is fetched");
        let text = d.message.text.unwrap();
        for what in [
            "a sticker",
            "a file (contract.pdf)",
            "an audio or voice message",
            "a location",
            "an OK poll attachment",
            "https://track.example.com/7731",
        ] {
            assert!(text.contains(what), "{what}: {text}");
        }
        let d = created(json!({"mid": "mid:4", "text": "x", "link": {"type": "FORWARD", "message": {"text": "fw"}}}));
        assert!(d.message.text.unwrap().contains("forwarded a message"));
    }

    #[test]
    fn a_contact_answering_request_contact_is_the_customer_s_phone() {
        let d = created(
            json!({"mid": "mid:5", "attachments": [{"type": "CONTACT", "payload": {"name": "Anna Berg", "phone": "+79001234567"}}]}),
        );
        assert_eq!(d.message.kind, MessageKind::Contact);
        assert_eq!(d.message.contact, Some(Contact { phone: "+79001234567".into(), name: "Anna Berg".into() }));
        assert_eq!(d.message.sender.phone.as_deref(), Some("+79001234567"));

        let d = created(json!({"mid": "mid:6", "attachments": [{"type": "CONTACT", "payload": {
            "vcf_info": "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Anna Berg\r\nTEL;TYPE=cell:+79001234567\r\nEND:VCARD"}}]}));
        assert_eq!(d.message.contact, Some(Contact { phone: "+79001234567".into(), name: "Anna Berg".into() }));
        assert_eq!(d.message.sender.phone.as_deref(), Some("+79001234567"));

        let d = created(
            json!({"mid": "mid:7", "attachments": [{"type": "CONTACT", "payload": {"name": "Ivan", "phone": "+7111", "user_id": "user:1"}}]}),
        );
        assert_eq!(d.message.sender.phone, None, "someone else's card is not the customer's phone");
        let (_, e) = parse(
            json!({"webhookType": "MESSAGE_CREATED", "sender": {"user_id": "user:5"}, "recipient": {"chat_id": "chat:1"},
            "message": {"mid": "mid:8", "attachments": [{"type": "CONTACT", "payload": {"name": "?"}}]}}),
        );
        assert!(e.unwrap_err().contains("phone"));
    }

    #[test]
    fn a_button_press_and_chat_events() {
        let (key, update) = parse(
            json!({"webhookType": "MESSAGE_CALLBACK", "sender": {"user_id": "user:590011223344", "name": "Anna"},
            "recipient": {"chat_id": "chat:C4a1b2c3d4e500"}, "callbackId": "cb.777", "payload": "csat:5",
            "message": {"mid": "mid:C4.9"}, "timestamp": 1767312000999i64}),
        );
        assert_eq!(key, "callback:cb.777");
        let Update::Press { draft, callback_id, chat_id } = update.unwrap() else { panic!() };
        assert_eq!((callback_id.as_str(), chat_id.as_str()), ("cb.777", "chat:C4a1b2c3d4e500"));
        assert_eq!(draft.message.text.as_deref(), Some("csat:5"));
        assert_eq!(draft.message.external_message_id, "callback:cb.777");
        // the fields nested under `callback`
        let (key, update) = parse(json!({"webhookType": "MESSAGE_CALLBACK", "sender": {"user_id": "user:1"},
            "recipient": {"chat_id": "chat:2"}, "callback": {"callbackId": "cb.8", "payload": {"a": 1}}}));
        assert_eq!(key, "callback:cb.8");
        let Update::Press { draft, .. } = update.unwrap() else { panic!() };
        assert_eq!(draft.message.text.as_deref(), Some("{\"a\":1}"));
        assert_eq!(draft.message.sender.name, "OK user 1");
        assert!(parse(json!({"webhookType": "MESSAGE_CALLBACK", "sender": {"user_id": "user:1"}, "recipient": {"chat_id": "chat:2"}})).1.is_err());

        let (_, update) = parse(
            json!({"webhookType": "CHAT_SYSTEM", "type": "CHAT_STARTED", "sender": {"user_id": "user:9", "name": "Bo"},
            "recipient": {"chat_id": "chat:9"}}),
        );
        let Update::System { sender, kind } = update.unwrap() else { panic!() };
        assert_eq!((sender.unwrap().name.as_str(), kind.as_str()), ("Bo", "CHAT_STARTED"));
        assert!(matches!(parse(json!({"webhookType": "MESSAGE_SEEN"})).1.unwrap(), Update::Ignore(_)));
        let group = created_raw(
            json!({"webhookType": "MESSAGE_CREATED", "sender": {"user_id": "group:55"}, "recipient": {"chat_id": "chat:1"}, "message": {"mid": "mid:9", "text": "ours"}}),
        );
        assert!(matches!(group, Update::Ignore(_)));
    }

    fn created_raw(v: Value) -> Update {
        parse(v).1.unwrap()
    }

    #[test]
    fn unreadable_updates_and_nul_bytes() {
        let (key, e) = parse_update(Uuid::nil(), b"{not json");
        assert!(key.starts_with("unreadable-") && e.is_err());
        assert!(parse(json!({"sender": {}})).1.unwrap_err().contains("webhookType"));
        let (_, e) =
            parse(json!({"webhookType": "MESSAGE_CREATED", "sender": {"user_id": "user:1"}, "message": {"mid": "m"}}));
        assert!(e.unwrap_err().contains("chat_id"));
        let (_, e) = parse(
            json!({"webhookType": "MESSAGE_CREATED", "sender": {"user_id": "user:1"}, "recipient": {"chat_id": "c"},
            "message": {"mid": "m", "attachments": "not a list"}}),
        );
        assert!(e.is_err());
        let d = created(json!({"mid": "mid:nul", "text": "bad\u{0}byte"}));
        assert!(d.message.has_nul(), "the store replaces it");
    }

    #[test]
    fn keyboards_as_ok_buttons() {
        let k = keyboard(&Keyboard::Inline {
            rows: vec![vec![
                InlineButton { text: "👍".into(), data: "csat:5".into() },
                InlineButton { text: "Track it".into(), data: "https://track.example.com/7731".into() },
            ]],
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            k,
            json!({"type": "INLINE_KEYBOARD", "payload": {"keyboard": {"buttons": [[
            {"type": "CALLBACK", "text": "👍", "intent": "DEFAULT", "payload": "csat:5"},
            {"type": "LINK", "text": "Track it", "url": "https://track.example.com/7731"}]]}}})
        );
        let k = keyboard(&Keyboard::Reply {
            rows: vec![
                vec![ReplyButton { text: "📱 Share my number".into(), request_phone: true }],
                vec![ReplyButton { text: "Refund".into(), request_phone: false }],
            ],
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            k["payload"]["keyboard"]["buttons"],
            json!([[{"type": "REQUEST_CONTACT", "text": "📱 Share my number"}],
            [{"type": "CALLBACK", "text": "Refund", "intent": "DEFAULT", "payload": "Refund"}]])
        );
        assert_eq!(keyboard(&Keyboard::Remove).unwrap(), None);
        let wide = Keyboard::Inline {
            rows: vec![(0..9).map(|i| InlineButton { text: format!("{i}"), data: format!("{i}") }).collect()],
        };
        let k = keyboard(&wide).unwrap().unwrap();
        assert_eq!(k["payload"]["keyboard"]["buttons"].as_array().unwrap().len(), 2, "rows wrap at 7");
        let many = Keyboard::Inline {
            rows: (0..31).map(|i| vec![InlineButton { text: format!("{i}"), data: "x".into() }]).collect(),
        };
        assert!(keyboard(&many).unwrap_err().contains("at most"));
        let long = Keyboard::Inline { rows: vec![vec![InlineButton { text: "x".into(), data: "d".repeat(1025) }]] };
        assert!(keyboard(&long).unwrap_err().contains("payload"));
        let label = Keyboard::Inline { rows: vec![vec![InlineButton { text: "l".repeat(100), data: "d".into() }]] };
        assert_eq!(
            keyboard(&label).unwrap().unwrap()["payload"]["keyboard"]["buttons"][0][0]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            LABEL_MAX
        );
    }

    #[test]
    fn bodies_and_answers() {
        let b = message_body(
            "chat:C4",
            Some("Your receipt"),
            vec![json!({"type": "IMAGE", "payload": {"token": "t1"}})],
            Some("mid:C4.1"),
        );
        assert_eq!(
            b,
            json!({"recipient": {"chat_id": "chat:C4"}, "message": {"text": "Your receipt",
            "attachments": [{"type": "IMAGE", "payload": {"token": "t1"}}], "reply_to": "mid:C4.1"}})
        );
        let b = message_body("user:5900", Some("Hello"), vec![], None);
        assert_eq!(b, json!({"recipient": {"user_ids": ["user:5900"]}, "message": {"text": "Hello"}}));
        assert_eq!(sent_id(&json!({"success": true, "message_id": "mid:C4.2"})).as_deref(), Some("mid:C4.2"));
        assert_eq!(sent_id(&json!({"success": true, "message": {"mid": "mid:C4.3"}})).as_deref(), Some("mid:C4.3"));
        assert_eq!(sent_id(&json!({"success": true})), None);
        assert_eq!(upload_token(&json!({"photos": {"884100": {"token": "img-tok"}}})).as_deref(), Some("img-tok"));
        assert_eq!(upload_token(&json!({"token": "vid-tok"})).as_deref(), Some("vid-tok"));
        assert_eq!(upload_token(&json!({})), None);
    }

    #[test]
    fn errors_map_to_what_the_runtime_does() {
        let none = ErrorCodes::default();
        assert_eq!(classify(8, "FLOOD_BLOCKED", &none), Refusal::RateLimited(Duration::from_secs(5)));
        assert!(matches!(classify(2, "SERVICE : temporarily unavailable", &none), Refusal::Transient(_)));
        assert!(
            matches!(classify(102, "PARAM_SESSION_EXPIRED : Session expired", &none), Refusal::Unhealthy(r) if r.contains("access_token"))
        );
        assert!(matches!(classify(300, "access_token is invalid", &none), Refusal::Unhealthy(_)), "by the message");
        assert!(
            matches!(classify(10, "PERMISSION_DENIED", &none), Refusal::Permanent(r) if r.contains("not allowed messages"))
        );
        assert!(
            matches!(classify(100, "PARAM : text is too long", &none), Refusal::Permanent(r) if r.contains("text is too long"))
        );
        let custom: ErrorCodes =
            serde_json::from_value(json!({"not_allowed": [455], "rate_limit": [100], "unhealthy": [7]})).unwrap();
        assert!(matches!(classify(455, "x", &custom), Refusal::Permanent(r) if r.contains("not allowed")));
        assert_eq!(classify(100, "x", &custom), Refusal::RateLimited(Duration::from_secs(5)));
        assert!(matches!(classify(7, "x", &custom), Refusal::Unhealthy(_)));
        assert!(serde_json::from_value::<ErrorCodes>(json!({"retries": [1]})).is_err(), "unknown keys refused");
    }
}
