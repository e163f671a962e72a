//! WhatsApp through Infobip as a [`Provider`] (`docs/platforms.md` §3).
//!
//! - Credentials: `api_key` (sent as `Authorization: App <key>`), `webhook_token` (at least 32
//!   characters, unguessable: Infobip cannot sign its webhooks, so the URLs it is given carry it
//!   as `?token=`, checked in constant time before anything is parsed), optionally
//!   `webhook_authorization` (an `Authorization` header value configured at Infobip, compared
//!   exactly when set).
//! - Settings: `api_url` (the account's `https://<subdomain>.api.infobip.com/`, required),
//!   `sender` (the WhatsApp number messages go from, required), `allowed_ips` (optional: the
//!   addresses or CIDR ranges Infobip posts from; anything else gets 401).
//!
//! Webhooks (inbound messages, delivery reports, seen reports) all come to the account's one
//! route. Sends: one endpoint per kind (`/whatsapp/1/message/text`, `image`, `document`,
//! `video`, `audio`, `sticker`, `location`, `contact`, `interactive/buttons`,
//! `interactive/list`, `template`), files by URL (the file server's signed link), the outbox
//! row's key as `messageId` (Infobip echoes it and the reports name it), the webhook URL as
//! `notifyUrl` for delivery reports.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use schema::domain::{Contact, Location, MessageKind};
use schema::store::{InboundMessage, Sender};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;
use uuid::Uuid;

use super::provider::{
    Content, Event, FetchError, Incoming, Item, MediaKind, MediaRef, Outgoing, Provider, Refusal, Status,
};
use crate::channel::{AccountContext, OpenError, WebhookError, WebhookRequest, same_secret};
use crate::platform::{FileBody, FileDelivery};

/// The shortest webhook token (characters): it is the webhooks' only credential.
pub const WEBHOOK_TOKEN_MIN: usize = 32;
/// The query parameter the webhook token rides in.
pub const TOKEN_PARAM: &str = "token";

#[derive(Deserialize)]
struct Credentials {
    api_key: String,
    webhook_token: String,
    #[serde(default)]
    webhook_authorization: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    api_url: String,
    sender: String,
    #[serde(default)]
    allowed_ips: Vec<String>,
}

/// An address or a range of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// `203.0.113.7`, `203.0.113.0/24`, `2001:db8::/32`.
    pub fn parse(s: &str) -> Option<Net> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let addr = s.trim().parse::<IpAddr>().ok()?;
                (addr, if addr.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Net { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An Infobip account.
pub struct Infobip {
    http: reqwest::Client,
    base: Url,
    sender: String,
    api_key: String,
    webhook_token: String,
    webhook_authorization: Option<String>,
    allowed: Vec<Net>,
    /// Where delivery reports go: the account's webhook URL with its token.
    notify_url: String,
    account_id: Uuid,
}

impl Infobip {
    pub fn open(ctx: &AccountContext) -> Result<Self, OpenError> {
        let webhook_url = ctx.webhook_url()?;
        Self::from_json(&ctx.credentials, &super::provider_settings(&ctx.settings), &webhook_url, ctx.account.id)
    }

    pub fn from_json(
        credentials: &Value,
        settings: &Value,
        webhook_url: &Url,
        account_id: Uuid,
    ) -> Result<Self, OpenError> {
        let c: Credentials = serde_json::from_value(credentials.clone()).map_err(|e| {
            OpenError::Credentials(format!("an Infobip WhatsApp account holds api_key and webhook_token strings: {e}"))
        })?;
        if c.api_key.trim().is_empty() {
            return Err(OpenError::Credentials("api_key is empty".into()));
        }
        if c.webhook_token.chars().count() < WEBHOOK_TOKEN_MIN
            || !c.webhook_token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(OpenError::Credentials(format!(
                "webhook_token must be at least {WEBHOOK_TOKEN_MIN} characters of A-Z a-z 0-9 - _ (random: it is the only \
                 credential of Infobip's webhooks)"
            )));
        }
        let s: Settings = serde_json::from_value(settings.clone())
            .map_err(|e| OpenError::Settings(format!("an Infobip WhatsApp account: {e}")))?;
        let mut base = Url::parse(&s.api_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| OpenError::Settings(format!("api_url {:?} is not an http(s) URL", s.api_url)))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        if s.sender.is_empty() || s.sender.len() > 24 {
            return Err(OpenError::Settings("sender must be the WhatsApp number, 1 to 24 characters".into()));
        }
        let allowed = s
            .allowed_ips
            .iter()
            .map(|n| {
                Net::parse(n)
                    .ok_or_else(|| OpenError::Settings(format!("allowed_ips: {n:?} is not an address or CIDR range")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut notify = webhook_url.clone();
        notify.query_pairs_mut().append_pair(TOKEN_PARAM, &c.webhook_token);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .expect("a plain HTTP client builds");
        Ok(Infobip {
            http,
            base,
            sender: s.sender,
            api_key: c.api_key,
            webhook_token: c.webhook_token,
            webhook_authorization: c.webhook_authorization.filter(|a| !a.is_empty()),
            allowed,
            notify_url: notify.to_string(),
            account_id,
        })
    }

    fn authorization(&self) -> String {
        format!("App {}", self.api_key)
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, Refusal> {
        let url = self.base.join(path).expect("a relative path joins");
        let response = self
            .http
            .post(url)
            .header(reqwest::header::AUTHORIZATION, self.authorization())
            .json(body)
            .send()
            .await
            .map_err(|e| Refusal::Transient(format!("network error: {}", e.without_url())))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes =
            response.bytes().await.map_err(|e| Refusal::Transient(format!("network error: {}", e.without_url())))?;
        if !(200..300).contains(&status) {
            return Err(classify(status, &bytes, retry_after));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Refusal::Transient(format!("an unreadable answer from Infobip: {e}")))
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned()
}

/// Infobip's `messageId` for an outbox row's part (`<row>:<part>`): at most 50 characters,
/// the same on every attempt.
pub fn message_id(account_id: Uuid, key: &str) -> String {
    let account = &account_id.simple().to_string()[..8];
    let key: String = key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let id = format!("sb-{account}-{key}");
    id.chars().take(50).collect()
}

/// The endpoint and body of one send (`docs/platforms.md` §3.3).
pub fn send_request(
    from: &str,
    to: &str,
    message_id: &str,
    notify_url: &str,
    content: &Content,
) -> Result<(String, Value), Refusal> {
    let (path, content) = match content {
        Content::Text { body, preview_url } => ("text", json!({"text": body, "previewUrl": preview_url})),
        Content::Media { kind, file, caption } => {
            let FileBody::Link(url) = &file.body else {
                return Err(Refusal::Permanent("Infobip takes files by URL".into()));
            };
            let mut content = json!({"mediaUrl": url.as_str()});
            if let Some(caption) = caption.as_deref().filter(|_| kind.takes_caption()) {
                content["caption"] = json!(caption.chars().take(3000).collect::<String>());
            }
            if *kind == MediaKind::Document {
                content["filename"] = json!(file.meta.name.chars().take(240).collect::<String>());
            }
            (kind.as_str(), content)
        }
        Content::StickerId(_) => {
            return Err(Refusal::Permanent("Infobip sends stickers as files (a WEBP), not by a sticker id".into()));
        }
        Content::Location(Location { lat, lon, address }) => {
            let mut content = json!({"latitude": lat, "longitude": lon});
            if let Some(address) = address {
                content["address"] = json!(address);
            }
            ("location", content)
        }
        Content::Contact(Contact { phone, name }) => {
            let first = name.split_whitespace().next().unwrap_or(name);
            (
                "contact",
                json!({"contacts": [{"name": {"firstName": first, "formattedName": name},
                "phones": [{"phone": phone, "type": "CELL"}]}]}),
            )
        }
        Content::Buttons { body, buttons } => (
            "interactive/buttons",
            json!({"body": {"text": body}, "action": {"buttons": buttons.iter()
                .map(|b| json!({"type": "REPLY", "id": b.id, "title": b.title})).collect::<Vec<_>>()}}),
        ),
        Content::List { body, button, rows } => (
            "interactive/list",
            json!({"body": {"text": body}, "action": {"title": button, "sections": [{"rows": rows.iter()
                .map(|r| json!({"id": r.id, "title": r.title})).collect::<Vec<_>>()}]}}),
        ),
        Content::Template(t) => {
            let message = json!({"from": from, "to": to, "messageId": message_id, "notifyUrl": notify_url,
                "content": {"templateName": t.name, "language": t.language,
                            "templateData": {"body": {"placeholders": t.params}}}});
            return Ok(("whatsapp/1/message/template".into(), json!({"messages": [message]})));
        }
    };
    Ok((
        format!("whatsapp/1/message/{path}"),
        json!({"from": from, "to": to, "messageId": message_id, "content": content, "notifyUrl": notify_url}),
    ))
}

/// What an Infobip error answer means for the channel (`docs/platforms.md` §3.4).
pub fn classify(status: u16, body: &[u8], retry_after: Option<Duration>) -> Refusal {
    let exception = serde_json::from_slice::<Value>(body)
        .ok()
        .map(|v| v["requestError"]["serviceException"].clone())
        .unwrap_or(Value::Null);
    let id = exception["messageId"].as_str().unwrap_or_default();
    let text = exception["text"].as_str().unwrap_or_default();
    let fields = exception["validationErrors"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(field, why)| {
                    let why: Vec<&str> = why.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                    format!("{field}: {}", why.join(", "))
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    let said = match (id.is_empty(), fields.is_empty()) {
        (true, _) => format!("HTTP {status}: {}", lossy(body)),
        (false, true) => format!("{id}: {text}"),
        (false, false) => format!("{id}: {text} ({fields})"),
    };
    match status {
        429 => Refusal::RateLimited { per_chat: false, wait: retry_after },
        401 | 403 => Refusal::Unhealthy(format!("Infobip refuses the api_key ({said}); set a valid api_key")),
        s if s >= 500 => Refusal::Transient(said),
        s if s >= 400 => Refusal::Permanent(format!("Infobip refused it: {said}")),
        _ => Refusal::Transient(said),
    }
}

#[async_trait]
impl Provider for Infobip {
    fn name(&self) -> &'static str {
        "infobip"
    }

    fn file_delivery(&self) -> FileDelivery {
        FileDelivery::Link
    }

    fn verify(&self, request: &WebhookRequest) -> Result<(), WebhookError> {
        let token = request.query_param(TOKEN_PARAM).unwrap_or_default();
        if !same_secret(token.as_bytes(), self.webhook_token.as_bytes()) {
            return Err(WebhookError::Unauthorized("missing or wrong webhook token".into()));
        }
        if let Some(expected) = &self.webhook_authorization {
            let given = request.header("authorization").unwrap_or_default();
            if !same_secret(given.as_bytes(), expected.as_bytes()) {
                return Err(WebhookError::Unauthorized("missing or wrong Authorization header".into()));
            }
        }
        if !self.allowed.is_empty() {
            let allowed = request.peer.is_some_and(|peer| self.allowed.iter().any(|n| n.contains(peer.ip())));
            if !allowed {
                return Err(WebhookError::Unauthorized(format!(
                    "{} is not among the account's allowed_ips",
                    request.peer.map(|p| p.ip().to_string()).unwrap_or_else(|| "an unknown address".into())
                )));
            }
        }
        Ok(())
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<Item>, String> {
        parse(self.account_id, body)
    }

    async fn download(&self, media: &MediaRef) -> Result<reqwest::Response, FetchError> {
        let url = Url::parse(&media.id).map_err(|_| FetchError::Permanent(format!("{:?} is not a URL", media.id)))?;
        let mut request = self.http.get(url.clone());
        // the API key goes only to the account's own Infobip host
        if url.host_str() == self.base.host_str() && url.port_or_known_default() == self.base.port_or_known_default() {
            request = request.header(reqwest::header::AUTHORIZATION, self.authorization());
        }
        let response =
            request.send().await.map_err(|e| FetchError::Transient(format!("network error: {}", e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response.bytes().await.unwrap_or_default();
        let why = format!("HTTP {status}: {}", lossy(&bytes));
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 401 {
            Err(FetchError::Transient(why))
        } else {
            Err(FetchError::Permanent(format!("Infobip no longer gives it ({why})")))
        }
    }

    async fn send(&self, to: &str, message: Outgoing) -> Result<String, Refusal> {
        let id = message_id(self.account_id, &message.key);
        let (path, body) = send_request(&self.sender, to, &id, &self.notify_url, &message.content)?;
        let answer = self.post(&path, &body).await?;
        let first = if answer.get("messages").is_some() { &answer["messages"][0] } else { &answer };
        let group = first["status"]["groupName"].as_str().unwrap_or_default();
        if matches!(group, "REJECTED" | "UNDELIVERABLE" | "EXPIRED") {
            return Err(Refusal::Permanent(format!(
                "Infobip refused it: {} ({})",
                first["status"]["description"].as_str().unwrap_or_default(),
                first["status"]["name"].as_str().unwrap_or(group)
            )));
        }
        Ok(first["messageId"].as_str().filter(|m| !m.is_empty()).map(str::to_owned).unwrap_or(id))
    }
}

// ---------------------------------------------------------------------------------- webhooks --

#[derive(Deserialize)]
struct WireInbound {
    from: String,
    #[serde(rename = "messageId")]
    message_id: String,
    #[serde(default, rename = "receivedAt")]
    received_at: Option<String>,
    message: WireMessage,
    #[serde(default)]
    contact: Option<WireSenderContact>,
    #[serde(default)]
    context: Option<WireContext>,
}

#[derive(Deserialize)]
struct WireSenderContact {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct WireContext {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default, alias = "fileName")]
    filename: Option<String>,
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    contacts: Vec<WireCard>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    payload: Option<String>,
}

#[derive(Deserialize)]
struct WireCard {
    #[serde(default)]
    name: Option<WireCardName>,
    #[serde(default)]
    phones: Vec<WireCardPhone>,
}

#[derive(Deserialize)]
struct WireCardName {
    #[serde(default, rename = "formattedName")]
    formatted_name: Option<String>,
    #[serde(default, rename = "firstName")]
    first_name: Option<String>,
    #[serde(default, rename = "lastName")]
    last_name: Option<String>,
}

#[derive(Deserialize)]
struct WireCardPhone {
    #[serde(default)]
    phone: Option<String>,
}

/// Infobip's times: `2026-01-02T09:00:00.000+0000`.
fn time(s: Option<&str>) -> Option<DateTime<Utc>> {
    let s = s?;
    DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(s))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn mime_of(kind: &str, name: Option<&str>) -> &'static str {
    let by_name = name.and_then(|n| n.rsplit_once('.')).map(|(_, e)| e.to_ascii_lowercase());
    match (kind, by_name.as_deref()) {
        ("IMAGE", Some("png")) => "image/png",
        ("IMAGE", _) => "image/jpeg",
        ("VIDEO", _) => "video/mp4",
        ("VOICE", _) => "audio/ogg",
        ("AUDIO", Some("ogg")) => "audio/ogg",
        ("AUDIO", _) => "audio/mpeg",
        ("STICKER", _) => "image/webp",
        (_, Some("pdf")) => "application/pdf",
        (_, Some("txt")) => "text/plain",
        (_, Some("jpg" | "jpeg")) => "image/jpeg",
        (_, Some("png")) => "image/png",
        _ => "application/octet-stream",
    }
}

fn map_inbound(account_id: Uuid, item: &Value) -> Result<Incoming, String> {
    let m: WireInbound =
        serde_json::from_value(item.clone()).map_err(|e| format!("an Infobip message this build cannot read: {e}"))?;
    if m.from.is_empty() || m.message_id.is_empty() {
        return Err("an Infobip message without from or messageId".into());
    }
    let at = time(m.received_at.as_deref()).unwrap_or_else(Utc::now);
    let digits = m.from.trim_start_matches('+').to_owned();
    let name = m.contact.and_then(|c| c.name).filter(|n| !n.trim().is_empty()).unwrap_or_else(|| format!("+{digits}"));
    let mut message = InboundMessage {
        account_id,
        external_message_id: m.message_id.clone(),
        chat_id: m.from.clone(),
        sender: Sender {
            external_id: m.from.clone(),
            name,
            username: None,
            phone: Some(format!("+{digits}")),
            avatar_url: None,
        },
        kind: MessageKind::Text,
        text: None,
        file_ids: Vec::new(),
        location: None,
        contact: None,
        reply_to_external_id: m.context.and_then(|c| c.id),
        forwarded: None,
        sticker_id: None,
        sent_at: Some(at),
    };
    let w = m.message;
    let mut media = None;
    let file = |kind: &str, default: &str, w: &WireMessage| -> Result<MediaRef, String> {
        let url =
            w.url.clone().filter(|u| !u.is_empty()).ok_or_else(|| format!("an Infobip {kind} message without url"))?;
        let mime = mime_of(kind, w.filename.as_deref()).to_owned();
        let fallback = || {
            let tail = url
                .rsplit('/')
                .next()
                .unwrap_or("file")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(40)
                .collect::<String>();
            format!(
                "{default}_{tail}.{}",
                match mime.as_str() {
                    "image/png" => "png",
                    "image/jpeg" => "jpg",
                    "video/mp4" => "mp4",
                    "audio/ogg" => "ogg",
                    "audio/mpeg" => "mp3",
                    "image/webp" => "webp",
                    "application/pdf" => "pdf",
                    _ => "bin",
                }
            )
        };
        let name = w.filename.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(fallback);
        Ok(MediaRef { id: url, name, mime, size: None })
    };
    match w.kind.as_str() {
        "TEXT" => message.text = Some(w.text.clone().ok_or("an Infobip TEXT message without text")?),
        kind @ ("IMAGE" | "VIDEO" | "DOCUMENT" | "AUDIO" | "VOICE" | "STICKER") => {
            let f = file(kind, &kind.to_ascii_lowercase(), &w)?;
            message.kind = match kind {
                "IMAGE" => MessageKind::Image,
                "VIDEO" => MessageKind::Video,
                "DOCUMENT" => MessageKind::Document,
                "AUDIO" => MessageKind::Audio,
                "VOICE" => MessageKind::Voice,
                _ => MessageKind::Sticker,
            };
            if kind == "STICKER" {
                message.sticker_id = Some(f.id.rsplit('/').next().unwrap_or_default().to_owned());
            }
            message.text = w.caption.clone().filter(|c| !c.is_empty());
            media = Some(f);
        }
        "LOCATION" => {
            let (Some(lat), Some(lon)) = (w.latitude, w.longitude) else {
                return Err("an Infobip LOCATION message without latitude and longitude".into());
            };
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                return Err(format!("an Infobip location out of range: {lat}, {lon}"));
            }
            let address = [w.name.clone(), w.address.clone()]
                .into_iter()
                .flatten()
                .filter(|s| !s.trim().is_empty())
                .collect::<Vec<_>>();
            message.kind = MessageKind::Location;
            message.location = Some(Location { lat, lon, address: (!address.is_empty()).then(|| address.join(", ")) });
        }
        "CONTACT" => {
            let cards: Vec<Contact> = w
                .contacts
                .iter()
                .filter_map(|c| {
                    let phone = c.phones.iter().find_map(|p| p.phone.clone())?;
                    let name = c
                        .name
                        .as_ref()
                        .and_then(|n| {
                            n.formatted_name.clone().filter(|f| !f.trim().is_empty()).or_else(|| {
                                let parts: Vec<String> =
                                    [n.first_name.clone(), n.last_name.clone()].into_iter().flatten().collect();
                                (!parts.is_empty()).then(|| parts.join(" "))
                            })
                        })
                        .unwrap_or_else(|| phone.clone());
                    Some(Contact { phone, name })
                })
                .collect();
            let first = cards.first().cloned().ok_or("an Infobip CONTACT message without a contact with a phone")?;
            message.kind = MessageKind::Contact;
            message.contact = Some(first);
            if cards.len() > 1 {
                let rest: Vec<String> = cards[1..].iter().map(|c| format!("{}: {}", c.name, c.phone)).collect();
                message.text = Some(format!("and {} more: {}", rest.len(), rest.join("; ")));
            }
        }
        "INTERACTIVE_BUTTON_REPLY" | "INTERACTIVE_LIST_REPLY" => {
            message.text = Some(w.id.clone().or(w.title.clone()).ok_or("an Infobip interactive reply without id")?);
        }
        "BUTTON" => {
            message.text = Some(w.payload.clone().filter(|p| !p.is_empty()).or(w.text.clone()).unwrap_or_default());
        }
        other => {
            message.text = Some(format!(
                "[a WhatsApp {} message (Infobip), which this hub cannot show]",
                other.to_ascii_lowercase()
            ));
        }
    }
    Ok(Incoming { message, media, at })
}

fn map_report(item: &Value) -> Result<Event, String> {
    let id =
        item["messageId"].as_str().filter(|i| !i.is_empty()).ok_or("an Infobip report without messageId")?.to_owned();
    if item.get("seenAt").is_some() {
        return Ok(Event::Status { id, status: Status::Read });
    }
    let status = &item["status"];
    let group = status["groupName"].as_str().ok_or("an Infobip delivery report without status.groupName")?;
    let status = match group {
        "DELIVERED" => Status::Delivered,
        "PENDING" => Status::Sent,
        "REJECTED" | "UNDELIVERABLE" | "EXPIRED" => {
            let error = &item["error"];
            let detail = [error["description"].as_str(), status["description"].as_str()]
                .into_iter()
                .flatten()
                .find(|d| !d.is_empty() && *d != "No Error")
                .unwrap_or(group);
            let name = error["name"].as_str().filter(|n| *n != "NO_ERROR").or(status["name"].as_str()).unwrap_or(group);
            Status::Failed(format!("WhatsApp (Infobip) could not deliver it: {detail} ({name})"))
        }
        other => return Ok(Event::Ignored(format!("delivery report {other}"))),
    };
    Ok(Event::Status { id, status })
}

/// The items of one webhook body: inbound messages, delivery reports and seen reports, each a
/// `results[]` item (`docs/platforms.md` §3.2).
pub fn parse(account_id: Uuid, body: &[u8]) -> Result<Vec<Item>, String> {
    let envelope: Value = serde_json::from_slice(body).map_err(|e| format!("not an Infobip webhook: {e}"))?;
    let results = envelope["results"].as_array().ok_or("an Infobip webhook without results")?;
    Ok(results
        .iter()
        .map(|item| {
            let raw = serde_json::to_vec(&json!({"results": [item]})).expect("JSON");
            let id = item["messageId"].as_str().unwrap_or_default();
            if item.get("message").is_some() {
                let key = if id.is_empty() {
                    format!("unreadable-{}", hex::encode(&Sha256::digest(&raw)[..8]))
                } else {
                    id.to_owned()
                };
                Item { key, raw, event: map_inbound(account_id, item).map(|i| Event::Message(Box::new(i))) }
            } else if item.get("seenAt").is_some() {
                Item { key: format!("seen:{id}"), raw, event: map_report(item) }
            } else {
                let group = item["status"]["groupName"].as_str().unwrap_or("?");
                Item { key: format!("dlr:{id}:{group}"), raw, event: map_report(item) }
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::domain::Template;

    fn inbound(message: Value) -> Incoming {
        let body = serde_json::to_vec(&json!({"results": [{"from": "4915112345678", "to": "4930123456",
            "integrationType": "WHATSAPP", "receivedAt": "2026-01-02T09:00:00.000+0000", "messageId": "ABGGFlA5Fpa3AgMH",
            "pairedMessageId": null, "callbackData": null, "message": message, "contact": {"name": "Anna"},
            "price": {"pricePerMessage": 0, "currency": "EUR"}}], "messageCount": 1, "pendingMessageCount": 0})).unwrap();
        match parse(Uuid::nil(), &body).unwrap().remove(0).event.unwrap() {
            Event::Message(i) => *i,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inbound_messages() {
        let i = inbound(json!({"type": "TEXT", "text": "Hello, where is order 7731?"}));
        assert_eq!(i.message.text.as_deref(), Some("Hello, where is order 7731?"));
        assert_eq!(
            (i.message.sender.name.as_str(), i.message.sender.phone.as_deref()),
            ("Anna", Some("+4915112345678"))
        );
        assert_eq!(i.at.to_rfc3339(), "2026-01-02T09:00:00+00:00");
        let i = inbound(
            json!({"type": "IMAGE", "url": "https://x.api.infobip.com/whatsapp/1/senders/4930123456/media/abc123", "caption": "receipt"}),
        );
        assert_eq!((i.message.kind, i.message.text.as_deref()), (MessageKind::Image, Some("receipt")));
        let media = i.media.unwrap();
        assert_eq!((media.name.as_str(), media.mime.as_str()), ("image_abc123.jpg", "image/jpeg"));
        let i = inbound(json!({"type": "DOCUMENT", "url": "https://x/media/d1", "filename": "invoice.pdf"}));
        assert_eq!((i.message.kind, i.media.unwrap().mime.as_str()), (MessageKind::Document, "application/pdf"));
        let i = inbound(json!({"type": "VOICE", "url": "https://x/media/v1"}));
        assert_eq!(i.message.kind, MessageKind::Voice);
        let i =
            inbound(json!({"type": "LOCATION", "latitude": 52.5163, "longitude": 13.3777, "name": "Pick-up point"}));
        assert_eq!(
            i.message.location,
            Some(Location { lat: 52.5163, lon: 13.3777, address: Some("Pick-up point".into()) })
        );
        let i = inbound(
            json!({"type": "CONTACT", "contacts": [{"name": {"firstName": "Jan", "formattedName": "Jan Kowalski"}, "phones": [{"phone": "+48600100200"}]}]}),
        );
        assert_eq!(i.message.contact, Some(Contact { phone: "+48600100200".into(), name: "Jan Kowalski".into() }));
        let i = inbound(json!({"type": "INTERACTIVE_BUTTON_REPLY", "id": "refund", "title": "Refund"}));
        assert_eq!(i.message.text.as_deref(), Some("refund"));
        let i = inbound(json!({"type": "ORDER"}));
        assert!(i.message.text.unwrap().contains("order message"));
        assert!(
            parse(Uuid::nil(), br#"{"results": [{"from": "49", "messageId": "x", "message": {"type": "LOCATION"}}]}"#)
                .unwrap()[0]
                .event
                .is_err()
        );
    }

    #[test]
    fn reports() {
        let body = serde_json::to_vec(&json!({"results": [
            {"bulkId": "", "messageId": "sb-1", "to": "49", "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"},
             "error": {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "description": "No Error", "permanent": false}},
            {"messageId": "sb-2", "status": {"groupName": "REJECTED", "name": "REJECTED_OUTSIDE_WINDOW", "description": "Message rejected"},
             "error": {"name": "EC_OUTSIDE_SERVICE_WINDOW", "description": "More than 24 hours since the customer's last message", "permanent": true}},
            {"messageId": "sb-3", "from": "4930123456", "to": "49", "sentAt": "2026-01-02T09:01:05.000+0000", "seenAt": "2026-01-02T09:04:40.000+0000"}]})).unwrap();
        let items = parse(Uuid::nil(), &body).unwrap();
        assert_eq!(
            items.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
            vec!["dlr:sb-1:DELIVERED", "dlr:sb-2:REJECTED", "seen:sb-3"]
        );
        assert!(matches!(&items[0].event, Ok(Event::Status { id, status: Status::Delivered }) if id == "sb-1"));
        assert!(matches!(&items[1].event, Ok(Event::Status { status: Status::Failed(why), .. })
            if why == "WhatsApp (Infobip) could not deliver it: More than 24 hours since the customer's last message (EC_OUTSIDE_SERVICE_WINDOW)"));
        assert!(matches!(&items[2].event, Ok(Event::Status { status: Status::Read, .. })));
    }

    #[test]
    fn sends_and_errors() {
        let id = message_id(Uuid::parse_str("0196a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b").unwrap(), "123456:0");
        assert_eq!(id, "sb-0196a1b2-123456-0");
        let (path, body) = send_request(
            "4930123456",
            "49151",
            &id,
            "https://hub/x?token=t",
            &Content::Text { body: "Your parcel left.".into(), preview_url: false },
        )
        .unwrap();
        assert_eq!(path, "whatsapp/1/message/text");
        assert_eq!(
            body,
            json!({"from": "4930123456", "to": "49151", "messageId": id, "notifyUrl": "https://hub/x?token=t",
            "content": {"text": "Your parcel left.", "previewUrl": false}})
        );
        let t = Template { name: "order_update".into(), language: "en".into(), params: vec!["7731".into()] };
        let (path, body) = send_request("1", "2", "m", "n", &Content::Template(t)).unwrap();
        assert_eq!(path, "whatsapp/1/message/template");
        assert_eq!(
            body["messages"][0]["content"],
            json!({"templateName": "order_update", "language": "en",
            "templateData": {"body": {"placeholders": ["7731"]}}})
        );
        assert!(send_request("1", "2", "m", "n", &Content::StickerId("5".into())).is_err());
        let bad = br#"{"requestError": {"serviceException": {"messageId": "BAD_REQUEST", "text": "Bad request",
            "validationErrors": {"content.text": ["size must be between 1 and 4096"]}}}}"#;
        assert_eq!(
            classify(400, bad, None),
            Refusal::Permanent(
                "Infobip refused it: BAD_REQUEST: Bad request (content.text: size must be between 1 and 4096)".into()
            )
        );
        assert_eq!(
            classify(429, b"{}", Some(Duration::from_secs(3))),
            Refusal::RateLimited { per_chat: false, wait: Some(Duration::from_secs(3)) }
        );
        assert!(matches!(classify(401, b"{}", None), Refusal::Unhealthy(_)));
        assert!(matches!(classify(502, b"", None), Refusal::Transient(_)));
    }

    #[test]
    fn allow_lists() {
        let net = Net::parse("203.0.113.0/24").unwrap();
        assert!(net.contains("203.0.113.77".parse().unwrap()));
        assert!(!net.contains("203.0.114.1".parse().unwrap()));
        assert!(net.contains("::ffff:203.0.113.5".parse().unwrap()), "an IPv4-mapped peer");
        assert!(Net::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
        assert!(Net::parse("2001:db8::/32").unwrap().contains("2001:db8:1::1".parse().unwrap()));
        assert!(Net::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Net::parse("10.0.0.0/33").is_none() && Net::parse("nope").is_none());
    }
}
