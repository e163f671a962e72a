//! Meta's WhatsApp Business Cloud API as a [`Provider`] (`docs/platforms.md` §2).
//!
//! - Credentials: `access_token` (a system user's token, sent as `Authorization: Bearer`),
//!   `app_secret` (the Meta app's secret: webhooks are signed with it), `verify_token` (what
//!   the app's webhook configuration sends in the `GET` handshake).
//! - Settings: `phone_number_id` (the sender, required), `api_url` (default
//!   `https://graph.facebook.com/v21.0/`; tests point it at the fake).
//!
//! Webhooks: `GET ?hub.mode=subscribe&hub.verify_token=..&hub.challenge=..` answered with the
//! challenge when the token matches; every `POST` must carry `X-Hub-Signature-256:
//! sha256=<hex HMAC-SHA256 of the raw body, keyed with the app secret>`, checked over the bytes
//! received before anything is parsed. Sends: `POST /<phone_number_id>/messages`; files are
//! uploaded first (`POST /<phone_number_id>/media`, streamed) and sent by the media id. Inbound
//! media: `GET /<media_id>` for a URL, then that URL with the same bearer token.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use schema::domain::{Contact, Forwarded, Location, MessageKind};
use schema::store::{InboundMessage, Sender};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;
use uuid::Uuid;

use super::provider::{
    Content, Event, FetchError, Incoming, Item, MediaKind, MediaRef, Outgoing, Provider, Refusal, Status,
};
use crate::channel::{AccountContext, OpenError, WebhookError, WebhookReply, WebhookRequest, same_secret};
use crate::platform::{FileBody, FileDelivery, OutFile};

/// The Graph API's base URL (a version the platform notes document).
pub const API_URL: &str = "https://graph.facebook.com/v21.0/";
/// The header Meta signs webhooks in.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

type HmacSha256 = Hmac<Sha256>;

/// `X-Hub-Signature-256` of `body`: `sha256=` and the lowercase hex HMAC-SHA256 keyed with the
/// app secret.
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(app_secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `given` (`sha256=<hex>`) signs `body`; compared in constant time.
pub fn signature_matches(app_secret: &str, body: &[u8], given: &str) -> bool {
    let Some(hex) = given.trim().strip_prefix("sha256=") else { return false };
    let Ok(given) = hex::decode(hex) else { return false };
    let mut mac = HmacSha256::new_from_slice(app_secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

#[derive(Deserialize)]
struct Credentials {
    access_token: String,
    app_secret: String,
    verify_token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    phone_number_id: String,
    #[serde(default)]
    api_url: Option<String>,
    /// The WhatsApp Business Account id (informational).
    #[serde(default)]
    waba_id: Option<String>,
}

/// A Cloud API account.
pub struct Cloud {
    http: reqwest::Client,
    base: Url,
    phone_number_id: String,
    token: String,
    app_secret: String,
    verify_token: String,
    account_id: Uuid,
}

impl std::fmt::Debug for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloud")
            .field("base", &self.base.as_str())
            .field("phone_number_id", &self.phone_number_id)
            .finish()
    }
}

impl Cloud {
    /// Reads and checks the account's credentials and settings.
    pub fn open(ctx: &AccountContext) -> Result<Self, OpenError> {
        Self::from_json(&ctx.credentials, &super::provider_settings(&ctx.settings), ctx.account.id)
    }

    pub fn from_json(credentials: &Value, settings: &Value, account_id: Uuid) -> Result<Self, OpenError> {
        let c: Credentials = serde_json::from_value(credentials.clone()).map_err(|e| {
            OpenError::Credentials(format!(
                "a WhatsApp Cloud API account holds access_token, app_secret and verify_token strings: {e}"
            ))
        })?;
        for (name, value) in
            [("access_token", &c.access_token), ("app_secret", &c.app_secret), ("verify_token", &c.verify_token)]
        {
            if value.trim().is_empty() {
                return Err(OpenError::Credentials(format!("{name} is empty")));
            }
        }
        let s: Settings = serde_json::from_value(settings.clone())
            .map_err(|e| OpenError::Settings(format!("a WhatsApp Cloud API account: {e}")))?;
        if s.phone_number_id.is_empty() || !s.phone_number_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(OpenError::Settings(format!(
                "phone_number_id {:?} is not a phone number id (digits, from the app's WhatsApp settings)",
                s.phone_number_id
            )));
        }
        let _ = s.waba_id;
        let api_url = s.api_url.as_deref().unwrap_or(API_URL);
        let mut base = Url::parse(api_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| OpenError::Settings(format!("api_url {api_url:?} is not an http(s) URL")))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .expect("a plain HTTP client builds");
        Ok(Cloud {
            http,
            base,
            phone_number_id: s.phone_number_id,
            token: c.access_token,
            app_secret: c.app_secret,
            verify_token: c.verify_token,
            account_id,
        })
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("a relative path joins")
    }

    /// Streams a file into `POST /<phone_number_id>/media`; its media id.
    async fn upload(&self, file: OutFile) -> Result<String, Refusal> {
        let OutFile { meta, body } = file;
        let stream = match body {
            FileBody::Stream(stream) => stream,
            FileBody::Link(_) => return Err(Refusal::Permanent("the Cloud API module uploads files".into())),
        };
        let part =
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), meta.size.max(0) as u64)
                .file_name(meta.name.clone())
                .mime_str(&meta.mime)
                .map_err(|e| Refusal::Permanent(format!("file {:?} has a bad type {:?}: {e}", meta.name, meta.mime)))?;
        let form = reqwest::multipart::Form::new()
            .text("messaging_product", "whatsapp")
            .text("type", meta.mime.clone())
            .part("file", part);
        let response = self
            .http
            .post(self.url(&format!("{}/media", self.phone_number_id)))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .map_err(|e| {
                Refusal::Transient(format!("uploading {:?}: network error: {}", meta.name, e.without_url()))
            })?;
        let status = response.status().as_u16();
        let bytes =
            response.bytes().await.map_err(|e| Refusal::Transient(format!("network error: {}", e.without_url())))?;
        if !(200..300).contains(&status) {
            return Err(classify(status, &bytes));
        }
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .ok_or_else(|| Refusal::Transient(format!("an upload answer without an id: {}", lossy(&bytes))))
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned()
}

#[async_trait]
impl Provider for Cloud {
    fn name(&self) -> &'static str {
        "cloud"
    }

    fn file_delivery(&self) -> FileDelivery {
        FileDelivery::Upload
    }

    fn verify(&self, request: &WebhookRequest) -> Result<(), WebhookError> {
        if request.method == axum::http::Method::GET {
            let mode = request.query_param("hub.mode");
            let token = request.query_param("hub.verify_token").unwrap_or_default();
            return if mode.as_deref() == Some("subscribe")
                && same_secret(token.as_bytes(), self.verify_token.as_bytes())
            {
                Ok(())
            } else {
                Err(WebhookError::Unauthorized(
                    "the hub.verify_token does not match this account's verify_token".into(),
                ))
            };
        }
        match request.header(SIGNATURE_HEADER) {
            None => Err(WebhookError::Unauthorized(format!("missing {SIGNATURE_HEADER}"))),
            Some(given) if signature_matches(&self.app_secret, &request.body, given) => Ok(()),
            Some(_) => Err(WebhookError::Unauthorized(format!("wrong {SIGNATURE_HEADER}"))),
        }
    }

    fn handshake(&self, request: &WebhookRequest) -> Result<WebhookReply, WebhookError> {
        request
            .query_param("hub.challenge")
            .map(WebhookReply::Text)
            .ok_or_else(|| WebhookError::BadRequest("a verification request without hub.challenge".into()))
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<Item>, String> {
        parse(self.account_id, body)
    }

    async fn download(&self, media: &MediaRef) -> Result<reqwest::Response, FetchError> {
        let answer = self
            .http
            .get(self.url(&media.id))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| FetchError::Transient(format!("network error: {}", e.without_url())))?;
        let status = answer.status();
        let bytes =
            answer.bytes().await.map_err(|e| FetchError::Transient(format!("network error: {}", e.without_url())))?;
        if !status.is_success() {
            return Err(fetch_error(status, &bytes));
        }
        let url = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["url"].as_str().map(str::to_owned))
            .ok_or_else(|| FetchError::Transient(format!("media metadata without a url: {}", lossy(&bytes))))?;
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| FetchError::Transient(format!("network error: {}", e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.unwrap_or_default();
            return Err(fetch_error(status, &bytes));
        }
        Ok(response)
    }

    async fn send(&self, to: &str, message: Outgoing) -> Result<String, Refusal> {
        let Outgoing { reply_to, content, .. } = message;
        let content = match content {
            Content::Media { kind, file: OutFile { meta, body: FileBody::Stream(stream) }, caption } => {
                let name = meta.name.clone();
                let id = self.upload(OutFile { meta, body: FileBody::Stream(stream) }).await?;
                Wire::Media { kind, handle: MediaHandle::Id(id), caption, filename: Some(name) }
            }
            Content::Media { kind, file: OutFile { meta, body: FileBody::Link(url) }, caption } => {
                Wire::Media { kind, handle: MediaHandle::Link(url.to_string()), caption, filename: Some(meta.name) }
            }
            other => Wire::Other(other),
        };
        let body = message_body(to, reply_to.as_deref(), &content);
        let response = self
            .http
            .post(self.url(&format!("{}/messages", self.phone_number_id)))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| Refusal::Transient(format!("network error: {}", e.without_url())))?;
        let status = response.status().as_u16();
        let bytes =
            response.bytes().await.map_err(|e| Refusal::Transient(format!("network error: {}", e.without_url())))?;
        if !(200..300).contains(&status) {
            return Err(classify(status, &bytes));
        }
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["messages"][0]["id"].as_str().map(str::to_owned))
            .ok_or_else(|| Refusal::Transient(format!("an answer without messages[0].id: {}", lossy(&bytes))))
    }
}

fn fetch_error(status: reqwest::StatusCode, body: &[u8]) -> FetchError {
    let why = format!("HTTP {status}: {}", lossy(body));
    if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 401 {
        FetchError::Transient(why)
    } else {
        FetchError::Permanent(format!("WhatsApp no longer gives it ({why})"))
    }
}

/// How a file is named in a send.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaHandle {
    Id(String),
    Link(String),
}

/// A send's content once its file is uploaded.
#[derive(Debug)]
pub enum Wire {
    Media { kind: MediaKind, handle: MediaHandle, caption: Option<String>, filename: Option<String> },
    Other(Content),
}

/// The `POST /<phone_number_id>/messages` body.
pub fn message_body(to: &str, reply_to: Option<&str>, content: &Wire) -> Value {
    let (kind, payload) = match content {
        Wire::Media { kind, handle, caption, filename } => {
            let mut media = match handle {
                MediaHandle::Id(id) => json!({"id": id}),
                MediaHandle::Link(link) => json!({"link": link}),
            };
            if let Some(caption) = caption.as_deref().filter(|_| kind.takes_caption()) {
                media["caption"] = json!(caption);
            }
            if let (MediaKind::Document, Some(name)) = (kind, filename) {
                media["filename"] = json!(name);
            }
            (kind.as_str(), media)
        }
        Wire::Other(Content::Text { body, preview_url }) => ("text", json!({"preview_url": preview_url, "body": body})),
        Wire::Other(Content::StickerId(id)) => ("sticker", json!({"id": id})),
        Wire::Other(Content::Location(Location { lat, lon, address })) => {
            let mut location = json!({"latitude": lat, "longitude": lon});
            if let Some(address) = address {
                location["address"] = json!(address);
            }
            ("location", location)
        }
        Wire::Other(Content::Contact(Contact { phone, name })) => {
            let first = name.split_whitespace().next().unwrap_or(name);
            (
                "contacts",
                json!([{"name": {"formatted_name": name, "first_name": first}, "phones": [{"phone": phone, "type": "CELL"}]}]),
            )
        }
        Wire::Other(Content::Buttons { body, buttons }) => (
            "interactive",
            json!({"type": "button", "body": {"text": body}, "action": {"buttons": buttons.iter()
                .map(|b| json!({"type": "reply", "reply": {"id": b.id, "title": b.title}})).collect::<Vec<_>>()}}),
        ),
        Wire::Other(Content::List { body, button, rows }) => (
            "interactive",
            json!({"type": "list", "body": {"text": body}, "action": {"button": button, "sections": [{"rows": rows.iter()
                .map(|r| json!({"id": r.id, "title": r.title})).collect::<Vec<_>>()}]}}),
        ),
        Wire::Other(Content::Template(t)) => {
            let mut template = json!({"name": t.name, "language": {"code": t.language}});
            if !t.params.is_empty() {
                template["components"] = json!([{"type": "body", "parameters": t.params.iter()
                    .map(|p| json!({"type": "text", "text": p})).collect::<Vec<_>>()}]);
            }
            ("template", template)
        }
        Wire::Other(Content::Media { .. }) => unreachable!("media is uploaded before the body is made"),
    };
    let mut body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": kind});
    body[kind] = payload;
    if let Some(id) = reply_to {
        body["context"] = json!({"message_id": id});
    }
    body
}

/// What a Graph API error answer means for the channel (`docs/platforms.md` §2.4).
pub fn classify(status: u16, body: &[u8]) -> Refusal {
    let error = serde_json::from_slice::<Value>(body).ok().map(|v| v["error"].clone()).unwrap_or(Value::Null);
    let code = error["code"].as_i64();
    let message = error["message"].as_str().unwrap_or_default().to_owned();
    let details = error["error_data"]["details"].as_str().unwrap_or_default().to_owned();
    let said = match (code, message.is_empty()) {
        (Some(code), false) => format!("{message} (code {code})"),
        (Some(code), true) => format!("code {code}"),
        (None, _) => format!("HTTP {status}: {}", lossy(body)),
    };
    let said = if details.is_empty() { said } else { format!("{said}: {details}") };
    match code {
        Some(130429 | 4 | 80007 | 131048) => Refusal::RateLimited { per_chat: false, wait: None },
        Some(131056) => Refusal::RateLimited { per_chat: true, wait: None },
        Some(131057) => Refusal::Transient(format!("the WhatsApp account is in maintenance: {said}")),
        Some(131047) => Refusal::OutsideWindow(format!(
            "outside WhatsApp's 24-hour window (more than 24 hours since the customer's last message): a template is needed ({said})"
        )),
        Some(0 | 190) => Refusal::Unhealthy(format!(
            "the Cloud API refuses the access token (expired or wrong): {said}; set a valid access_token"
        )),
        Some(10 | 200..=299 | 368) => {
            Refusal::Unhealthy(format!("the Cloud API refuses the account (permission or block): {said}"))
        }
        Some(_) if status >= 500 => Refusal::Transient(said),
        Some(_) => Refusal::Permanent(format!("WhatsApp refused it: {said}")),
        None if status == 429 => Refusal::RateLimited { per_chat: false, wait: None },
        None if status == 401 || status == 403 => {
            Refusal::Unhealthy(format!("the Cloud API refuses the account: {said}"))
        }
        None if !(400..500).contains(&status) => Refusal::Transient(said),
        None => Refusal::Permanent(format!("WhatsApp refused it: {said}")),
    }
}

// ---------------------------------------------------------------------------------- webhooks --

#[derive(Deserialize)]
struct WireMessage {
    from: String,
    id: String,
    #[serde(default)]
    timestamp: Option<Value>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<WireText>,
    #[serde(default)]
    image: Option<WireMedia>,
    #[serde(default)]
    video: Option<WireMedia>,
    #[serde(default)]
    audio: Option<WireMedia>,
    #[serde(default)]
    voice: Option<WireMedia>,
    #[serde(default)]
    document: Option<WireMedia>,
    #[serde(default)]
    sticker: Option<WireMedia>,
    #[serde(default)]
    location: Option<WireLocation>,
    #[serde(default)]
    contacts: Option<Vec<WireContact>>,
    #[serde(default)]
    interactive: Option<WireInteractive>,
    #[serde(default)]
    button: Option<WireButton>,
    #[serde(default)]
    reaction: Option<WireReaction>,
    #[serde(default)]
    context: Option<WireContext>,
    #[serde(default)]
    errors: Option<Vec<WireError>>,
}

#[derive(Deserialize)]
struct WireText {
    body: String,
}

#[derive(Deserialize)]
struct WireMedia {
    id: String,
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    voice: Option<bool>,
    #[serde(default)]
    file_size: Option<u64>,
}

#[derive(Deserialize)]
struct WireLocation {
    latitude: f64,
    longitude: f64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    address: Option<String>,
}

#[derive(Deserialize)]
struct WireContact {
    #[serde(default)]
    name: Option<WireName>,
    #[serde(default)]
    phones: Vec<WirePhone>,
}

#[derive(Deserialize)]
struct WireName {
    #[serde(default)]
    formatted_name: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
}

#[derive(Deserialize)]
struct WirePhone {
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    wa_id: Option<String>,
}

#[derive(Deserialize)]
struct WireInteractive {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    button_reply: Option<WireReply>,
    #[serde(default)]
    list_reply: Option<WireReply>,
}

#[derive(Deserialize)]
struct WireReply {
    id: String,
}

#[derive(Deserialize)]
struct WireButton {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    payload: Option<String>,
}

#[derive(Deserialize)]
struct WireReaction {
    message_id: String,
    #[serde(default)]
    emoji: Option<String>,
}

#[derive(Deserialize)]
struct WireContext {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    forwarded: Option<bool>,
    #[serde(default)]
    frequently_forwarded: Option<bool>,
}

#[derive(Deserialize, Clone)]
struct WireError {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error_data: Option<WireErrorData>,
}

#[derive(Deserialize, Clone)]
struct WireErrorData {
    #[serde(default)]
    details: Option<String>,
}

#[derive(Deserialize)]
struct WireStatus {
    id: String,
    status: String,
    #[serde(default)]
    errors: Vec<WireError>,
}

/// Unix seconds, as a string (as Meta sends them) or a number.
fn seconds(value: Option<&Value>) -> Option<DateTime<Utc>> {
    let secs = match value? {
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    Utc.timestamp_opt(secs, 0).single()
}

/// A file extension for a MIME type.
fn extension(mime: &str) -> &'static str {
    match mime.split(';').next().unwrap_or_default().trim() {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "video/mp4" => "mp4",
        "video/3gpp" => "3gp",
        "audio/ogg" => "ogg",
        "audio/mpeg" => "mp3",
        "audio/mp4" => "m4a",
        "audio/aac" => "aac",
        "audio/amr" => "amr",
        "application/pdf" => "pdf",
        _ => "bin",
    }
}

fn describe_error(e: &WireError) -> String {
    let code = e.code.map(|c| format!(" ({c})")).unwrap_or_default();
    let title = e.title.clone().or_else(|| e.message.clone()).unwrap_or_else(|| "no reason given".into());
    let details = e.error_data.as_ref().and_then(|d| d.details.clone()).filter(|d| !d.is_empty());
    match details {
        Some(details) => format!("{title}{code}: {details}"),
        None => format!("{title}{code}"),
    }
}

/// The reason a `failed` status gives the agent.
fn failure(errors: &[WireError]) -> String {
    match errors.first() {
        Some(e) if e.code == Some(131047) => format!(
            "outside WhatsApp's 24-hour window (more than 24 hours since the customer's last message): a template is needed ({})",
            describe_error(e)
        ),
        Some(e) => format!("WhatsApp could not deliver it: {}", describe_error(e)),
        None => "WhatsApp could not deliver it".into(),
    }
}

/// A message from `value` (a webhook's `value`) into the hub's terms; `name` is the customer's
/// profile name from `contacts`.
fn map_message(account_id: Uuid, item: &Value, name: Option<&str>) -> Result<Incoming, String> {
    let m: WireMessage =
        serde_json::from_value(item.clone()).map_err(|e| format!("a WhatsApp message this build cannot read: {e}"))?;
    if m.from.is_empty() || m.id.is_empty() {
        return Err("a WhatsApp message without from or id".into());
    }
    let at = seconds(m.timestamp.as_ref()).unwrap_or_else(Utc::now);
    let sender = Sender {
        external_id: m.from.clone(),
        name: name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("+{}", m.from)),
        username: None,
        phone: Some(format!("+{}", m.from)),
        avatar_url: None,
    };
    let mut message = InboundMessage {
        account_id,
        external_message_id: m.id.clone(),
        chat_id: m.from.clone(),
        sender,
        kind: MessageKind::Text,
        text: None,
        file_ids: Vec::new(),
        location: None,
        contact: None,
        reply_to_external_id: m.context.as_ref().and_then(|c| c.id.clone()),
        forwarded: m
            .context
            .as_ref()
            .filter(|c| c.forwarded == Some(true) || c.frequently_forwarded == Some(true))
            .map(|_| Forwarded { from_name: None, date: None }),
        sticker_id: None,
        sent_at: Some(at),
    };
    let required =
        |media: Option<WireMedia>, what: &str| media.ok_or_else(|| format!("a WhatsApp {what} message without {what}"));
    let media_ref = |media: &WireMedia, kind: &str, default_mime: &str| {
        let mime = media.mime_type.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| default_mime.into());
        let mime = mime.split(';').next().unwrap_or_default().trim().to_owned();
        let name = media
            .filename
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| format!("{kind}_{}.{}", media.id, extension(&mime)));
        MediaRef { id: media.id.clone(), name, mime, size: media.file_size }
    };
    let mut media = None;
    match m.kind.as_str() {
        "text" => message.text = Some(m.text.ok_or("a WhatsApp text message without text")?.body),
        "image" => {
            let w = required(m.image, "image")?;
            message.kind = MessageKind::Image;
            message.text = w.caption.clone().filter(|c| !c.is_empty());
            media = Some(media_ref(&w, "image", "image/jpeg"));
        }
        "video" => {
            let w = required(m.video, "video")?;
            message.kind = MessageKind::Video;
            message.text = w.caption.clone().filter(|c| !c.is_empty());
            media = Some(media_ref(&w, "video", "video/mp4"));
        }
        "audio" | "voice" => {
            let w = if m.kind == "voice" { required(m.voice, "voice")? } else { required(m.audio, "audio")? };
            let voice = m.kind == "voice" || w.voice == Some(true);
            message.kind = if voice { MessageKind::Voice } else { MessageKind::Audio };
            media = Some(media_ref(&w, if voice { "voice" } else { "audio" }, "audio/ogg"));
        }
        "document" => {
            let w = required(m.document, "document")?;
            message.kind = MessageKind::Document;
            message.text = w.caption.clone().filter(|c| !c.is_empty());
            media = Some(media_ref(&w, "document", "application/octet-stream"));
        }
        "sticker" => {
            let w = required(m.sticker, "sticker")?;
            message.kind = MessageKind::Sticker;
            message.sticker_id = Some(w.id.clone());
            media = Some(media_ref(&w, "sticker", "image/webp"));
        }
        "location" => {
            let l = m.location.ok_or("a WhatsApp location message without location")?;
            if !(-90.0..=90.0).contains(&l.latitude) || !(-180.0..=180.0).contains(&l.longitude) {
                return Err(format!("a WhatsApp location out of range: {}, {}", l.latitude, l.longitude));
            }
            let address =
                [l.name, l.address].into_iter().flatten().filter(|s| !s.trim().is_empty()).collect::<Vec<_>>();
            message.kind = MessageKind::Location;
            message.location = Some(Location {
                lat: l.latitude,
                lon: l.longitude,
                address: (!address.is_empty()).then(|| address.join(", ")),
            });
        }
        "contacts" => {
            let cards: Vec<Contact> = m
                .contacts
                .unwrap_or_default()
                .into_iter()
                .filter_map(|c| {
                    let phone = c.phones.iter().find_map(|p| p.phone.clone().or_else(|| p.wa_id.clone()))?;
                    let name = c
                        .name
                        .and_then(|n| {
                            n.formatted_name.filter(|f| !f.trim().is_empty()).or_else(|| {
                                let parts: Vec<String> = [n.first_name, n.last_name].into_iter().flatten().collect();
                                (!parts.is_empty()).then(|| parts.join(" "))
                            })
                        })
                        .unwrap_or_else(|| phone.clone());
                    Some(Contact { phone, name })
                })
                .collect();
            let first = cards.first().cloned().ok_or("a WhatsApp contacts message without a contact with a phone")?;
            message.kind = MessageKind::Contact;
            message.contact = Some(first);
            if cards.len() > 1 {
                let rest: Vec<String> = cards[1..].iter().map(|c| format!("{}: {}", c.name, c.phone)).collect();
                message.text = Some(format!("and {} more: {}", rest.len(), rest.join("; ")));
            }
        }
        "interactive" => {
            let i = m.interactive.ok_or("a WhatsApp interactive message without interactive")?;
            let reply = match i.kind.as_str() {
                "button_reply" => i.button_reply,
                "list_reply" => i.list_reply,
                _ => None,
            };
            // a press is the button's data, as on every channel (the title is what the customer saw)
            message.text = Some(match reply {
                Some(r) => r.id,
                None => format!("[a WhatsApp {} reply, which this hub cannot show]", i.kind),
            });
        }
        "button" => {
            let b = m.button.ok_or("a WhatsApp button message without button")?;
            message.text = Some(b.payload.filter(|p| !p.is_empty()).or(b.text).unwrap_or_default());
        }
        "reaction" => {
            let r = m.reaction.ok_or("a WhatsApp reaction without reaction")?;
            message.reply_to_external_id = Some(r.message_id);
            message.text = Some(match r.emoji.filter(|e| !e.is_empty()) {
                Some(emoji) => format!("reacted {emoji}"),
                None => "removed their reaction".into(),
            });
        }
        other => {
            let why = m.errors.as_deref().and_then(|e| e.first()).map(|e| format!(": {}", describe_error(e)));
            message.text =
                Some(format!("[a WhatsApp {other} message, which this hub cannot show{}]", why.unwrap_or_default()));
        }
    }
    Ok(Incoming { message, media, at })
}

fn map_status(item: &Value) -> Result<Event, String> {
    let s: WireStatus =
        serde_json::from_value(item.clone()).map_err(|e| format!("a WhatsApp status this build cannot read: {e}"))?;
    let status = match s.status.as_str() {
        "sent" => Status::Sent,
        "delivered" => Status::Delivered,
        "read" => Status::Read,
        "failed" => Status::Failed(failure(&s.errors)),
        other => return Ok(Event::Ignored(format!("status {other}"))),
    };
    Ok(Event::Status { id: s.id, status })
}

/// A webhook body holding one item of `value` alone (what is parked and replayed).
fn alone(entry_id: &Value, value: &Value, key: &str, item: &Value, contacts: Option<&Value>) -> Vec<u8> {
    let mut single = json!({"messaging_product": value["messaging_product"], "metadata": value["metadata"]});
    if let Some(contacts) = contacts {
        single["contacts"] = contacts.clone();
    }
    single[key] = json!([item]);
    serde_json::to_vec(&json!({"object": "whatsapp_business_account",
        "entry": [{"id": entry_id, "changes": [{"field": "messages", "value": single}]}]}))
    .expect("JSON")
}

/// The items of one webhook body (`docs/platforms.md` §2.2): every message, status and error of
/// every entry and change, in order.
pub fn parse(account_id: Uuid, body: &[u8]) -> Result<Vec<Item>, String> {
    let envelope: Value = serde_json::from_slice(body).map_err(|e| format!("not a WhatsApp webhook: {e}"))?;
    let entries = envelope["entry"].as_array().ok_or("a WhatsApp webhook without entry")?;
    let mut items = Vec::new();
    for entry in entries {
        let changes = entry["changes"].as_array().ok_or("a WhatsApp webhook entry without changes")?;
        for change in changes {
            let field = change["field"].as_str().unwrap_or_default();
            let value = &change["value"];
            if field != "messages" {
                items.push(Item {
                    key: format!("{field}@{}", entry["id"]),
                    raw: Vec::new(),
                    event: Ok(Event::Ignored(format!("webhook field {field}"))),
                });
                continue;
            }
            let names: HashMap<&str, &str> = value["contacts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| Some((c["wa_id"].as_str()?, c["profile"]["name"].as_str()?)))
                .collect();
            for m in value["messages"].as_array().into_iter().flatten() {
                let from = m["from"].as_str().unwrap_or_default();
                let contacts = value["contacts"]
                    .as_array()
                    .map(|all| Value::Array(all.iter().filter(|c| c["wa_id"] == from).cloned().collect()));
                let raw = alone(&entry["id"], value, "messages", m, contacts.as_ref());
                let key = match m["id"].as_str() {
                    Some(id) if !id.is_empty() => id.to_owned(),
                    _ => format!("unreadable-{}", hex::encode(&Sha256::digest(&raw)[..8])),
                };
                let event = map_message(account_id, m, names.get(from).copied()).map(|i| Event::Message(Box::new(i)));
                items.push(Item { key, raw, event });
            }
            for s in value["statuses"].as_array().into_iter().flatten() {
                let raw = alone(&entry["id"], value, "statuses", s, None);
                let key = format!("status:{}:{}", s["id"].as_str().unwrap_or("?"), s["status"].as_str().unwrap_or("?"));
                items.push(Item { key, raw, event: map_status(s) });
            }
            for e in value["errors"].as_array().into_iter().flatten() {
                let described = serde_json::from_value::<WireError>(e.clone())
                    .map(|e| describe_error(&e))
                    .unwrap_or_else(|_| e.to_string());
                items.push(Item { key: "errors".into(), raw: Vec::new(), event: Ok(Event::AccountError(described)) });
            }
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::domain::Template;

    fn envelope(value: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "880012345678901",
            "changes": [{"field": "messages", "value": value}]}]}))
        .unwrap()
    }

    fn one(message: Value) -> Incoming {
        let mut m = json!({"from": "4915112345678", "id": "wamid.A1", "timestamp": "1767312000"});
        m.as_object_mut().unwrap().extend(message.as_object().unwrap().clone());
        let body = envelope(json!({"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "4930123456", "phone_number_id": "119900223344556"},
            "contacts": [{"profile": {"name": "Anna"}, "wa_id": "4915112345678"}], "messages": [m]}));
        let mut items = parse(Uuid::nil(), &body).unwrap();
        assert_eq!(items.len(), 1);
        match items.remove(0).event.unwrap() {
            Event::Message(i) => *i,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn signatures_are_over_the_exact_bytes() {
        let body = br#"{"entry":[{"changes":[{"value":{"text":"Gr\u00fc\u00dfe"}}]}]}"#;
        let signature = sign("app-secret", body);
        assert!(signature.starts_with("sha256=") && signature.len() == 7 + 64);
        assert!(signature_matches("app-secret", body, &signature));
        assert!(signature_matches("app-secret", body, &signature.to_uppercase().replace("SHA256=", "sha256=")));
        assert!(!signature_matches("other-secret", body, &signature));
        assert!(
            !signature_matches("app-secret", body, signature.trim_start_matches("sha256=")),
            "the prefix is part of it"
        );
        let reserialised = serde_json::to_vec(&serde_json::from_slice::<Value>(body).unwrap()).unwrap();
        assert!(!signature_matches("app-secret", &reserialised, &signature), "re-serialised JSON differs");
    }

    #[test]
    fn text_media_and_the_customer() {
        let i = one(json!({"type": "text", "text": {"body": "Hello, where is order 7731?"}}));
        assert_eq!(i.message.text.as_deref(), Some("Hello, where is order 7731?"));
        assert_eq!(i.message.sender.name, "Anna");
        assert_eq!(i.message.sender.phone.as_deref(), Some("+4915112345678"), "wa_id is the phone");
        assert_eq!((i.message.chat_id.as_str(), i.message.external_message_id.as_str()), ("4915112345678", "wamid.A1"));
        assert_eq!(i.at.timestamp(), 1_767_312_000);
        let i = one(
            json!({"type": "image", "image": {"caption": "receipt", "mime_type": "image/jpeg", "sha256": "9f", "id": "2210987654321"}}),
        );
        assert_eq!((i.message.kind, i.message.text.as_deref()), (MessageKind::Image, Some("receipt")));
        assert_eq!(
            i.media.unwrap(),
            MediaRef {
                id: "2210987654321".into(),
                name: "image_2210987654321.jpg".into(),
                mime: "image/jpeg".into(),
                size: None
            }
        );
        let i = one(
            json!({"type": "document", "document": {"filename": "invoice.pdf", "mime_type": "application/pdf", "id": "22"}}),
        );
        assert_eq!((i.message.kind, i.media.unwrap().name.as_str()), (MessageKind::Document, "invoice.pdf"));
        let i =
            one(json!({"type": "audio", "audio": {"mime_type": "audio/ogg; codecs=opus", "id": "23", "voice": true}}));
        assert_eq!(i.message.kind, MessageKind::Voice);
        assert_eq!(i.media.unwrap().mime, "audio/ogg");
        let i = one(json!({"type": "audio", "audio": {"mime_type": "audio/mpeg", "id": "24"}}));
        assert_eq!((i.message.kind, i.media.unwrap().name.as_str()), (MessageKind::Audio, "audio_24.mp3"));
        let i = one(json!({"type": "video", "video": {"mime_type": "video/mp4", "id": "25"}}));
        assert_eq!(i.message.kind, MessageKind::Video);
        let i = one(json!({"type": "sticker", "sticker": {"mime_type": "image/webp", "id": "26", "animated": false}}));
        assert_eq!((i.message.kind, i.message.sticker_id.as_deref()), (MessageKind::Sticker, Some("26")));
    }

    #[test]
    fn locations_contacts_replies_and_reactions() {
        let i = one(
            json!({"type": "location", "location": {"latitude": 52.5163, "longitude": 13.3777, "name": "Pick-up point", "address": "Pariser Platz 1"}}),
        );
        assert_eq!(
            i.message.location,
            Some(Location { lat: 52.5163, lon: 13.3777, address: Some("Pick-up point, Pariser Platz 1".into()) })
        );
        let i = one(json!({"type": "contacts", "contacts": [
            {"name": {"formatted_name": "Jan Kowalski", "first_name": "Jan"}, "phones": [{"phone": "+48 600 100 200", "wa_id": "48600100200", "type": "CELL"}]},
            {"name": {"first_name": "Eva", "last_name": "Nowak"}, "phones": [{"wa_id": "48600100300"}]}]}));
        assert_eq!(i.message.contact, Some(Contact { phone: "+48 600 100 200".into(), name: "Jan Kowalski".into() }));
        assert_eq!(i.message.text.as_deref(), Some("and 1 more: Eva Nowak: 48600100300"));
        assert_eq!(i.message.sender.phone.as_deref(), Some("+4915112345678"), "a card is not the customer's phone");
        let i = one(json!({"type": "interactive", "context": {"from": "4930123456", "id": "wamid.OUT7"},
            "interactive": {"type": "button_reply", "button_reply": {"id": "refund", "title": "Refund"}}}));
        assert_eq!(
            (i.message.text.as_deref(), i.message.reply_to_external_id.as_deref()),
            (Some("refund"), Some("wamid.OUT7"))
        );
        let i = one(
            json!({"type": "interactive", "interactive": {"type": "list_reply", "list_reply": {"id": "r3", "title": "Three", "description": "x"}}}),
        );
        assert_eq!(i.message.text.as_deref(), Some("r3"));
        let i = one(json!({"type": "button", "button": {"text": "Stop promotions", "payload": "stop"}}));
        assert_eq!(i.message.text.as_deref(), Some("stop"));
        let i = one(json!({"type": "reaction", "reaction": {"message_id": "wamid.OUT8", "emoji": "👍"}}));
        assert_eq!(
            (i.message.text.as_deref(), i.message.reply_to_external_id.as_deref()),
            (Some("reacted 👍"), Some("wamid.OUT8"))
        );
        let i = one(json!({"type": "text", "text": {"body": "fwd"}, "context": {"forwarded": true}}));
        assert!(i.message.forwarded.is_some());
        let i = one(json!({"type": "unsupported", "errors": [{"code": 131051, "title": "Message type unknown"}]}));
        assert_eq!(
            i.message.text.as_deref(),
            Some("[a WhatsApp unsupported message, which this hub cannot show: Message type unknown (131051)]")
        );
    }

    #[test]
    fn statuses_batches_and_unreadable_items() {
        let body = envelope(json!({"messaging_product": "whatsapp", "metadata": {"phone_number_id": "1"},
            "messages": [{"from": "49", "id": "wamid.OK", "type": "text", "text": {"body": "fine"}},
                         {"from": "49", "id": "wamid.BAD", "type": "location", "location": {"latitude": "north", "longitude": 1}}],
            "statuses": [{"id": "wamid.OUT7", "status": "delivered", "timestamp": "1767312130", "recipient_id": "49"},
                         {"id": "wamid.OUT8", "status": "failed", "errors": [{"code": 131047, "title": "Re-engagement message",
                            "error_data": {"details": "more than 24 hours"}}]},
                         {"id": "wamid.OUT9", "status": "failed", "errors": [{"code": 131026, "title": "Message undeliverable"}]}]}));
        let items = parse(Uuid::nil(), &body).unwrap();
        assert_eq!(
            items.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
            vec![
                "wamid.OK",
                "wamid.BAD",
                "status:wamid.OUT7:delivered",
                "status:wamid.OUT8:failed",
                "status:wamid.OUT9:failed"
            ]
        );
        assert!(items[1].event.as_ref().unwrap_err().contains("cannot read"));
        let parked: Value = serde_json::from_slice(&items[1].raw).unwrap();
        let alone = &parked["entry"][0]["changes"][0]["value"];
        assert_eq!(alone["messages"].as_array().unwrap().len(), 1, "the bad item alone is what is parked");
        assert_eq!(alone["messages"][0]["id"], "wamid.BAD");
        assert_eq!(parse(Uuid::nil(), &items[1].raw).unwrap()[0].key, "wamid.BAD", "and it parses again");
        assert!(matches!(&items[2].event, Ok(Event::Status { id, status: Status::Delivered }) if id == "wamid.OUT7"));
        match &items[3].event {
            Ok(Event::Status { status: Status::Failed(why), .. }) => {
                assert!(why.starts_with("outside WhatsApp's 24-hour window"), "{why}");
                assert!(why.contains("131047"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&items[4].event, Ok(Event::Status { status: Status::Failed(why), .. })
            if why == "WhatsApp could not deliver it: Message undeliverable (131026)"));
        assert!(parse(Uuid::nil(), b"{not json").is_err());
        assert!(parse(Uuid::nil(), br#"{"object": "page"}"#).is_err());
    }

    #[test]
    fn send_bodies() {
        let text = Wire::Other(Content::Text { body: "Your parcel left.".into(), preview_url: false });
        assert_eq!(
            message_body("4915112345678", Some("wamid.IN1"), &text),
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "4915112345678", "type": "text",
                   "text": {"preview_url": false, "body": "Your parcel left."}, "context": {"message_id": "wamid.IN1"}})
        );
        let doc = Wire::Media {
            kind: MediaKind::Document,
            handle: MediaHandle::Id("55".into()),
            caption: Some("inv".into()),
            filename: Some("invoice.pdf".into()),
        };
        assert_eq!(
            message_body("49", None, &doc)["document"],
            json!({"id": "55", "caption": "inv", "filename": "invoice.pdf"})
        );
        let audio = Wire::Media {
            kind: MediaKind::Audio,
            handle: MediaHandle::Id("56".into()),
            caption: Some("x".into()),
            filename: None,
        };
        assert_eq!(message_body("49", None, &audio)["audio"], json!({"id": "56"}), "audio has no caption");
        let t = Template {
            name: "order_update".into(),
            language: "en_US".into(),
            params: vec!["7731".into(), "Friday".into()],
        };
        let body = message_body("49", None, &Wire::Other(Content::Template(t)));
        assert_eq!(
            body["template"],
            json!({"name": "order_update", "language": {"code": "en_US"}, "components": [{"type": "body",
            "parameters": [{"type": "text", "text": "7731"}, {"type": "text", "text": "Friday"}]}]})
        );
        let loc = Wire::Other(Content::Location(Location { lat: 52.5, lon: 13.4, address: None }));
        assert_eq!(message_body("49", None, &loc)["location"], json!({"latitude": 52.5, "longitude": 13.4}));
        let card = Wire::Other(Content::Contact(Contact { phone: "+49 30 1234".into(), name: "Courier desk".into() }));
        assert_eq!(
            message_body("49", None, &card)["contacts"][0]["name"],
            json!({"formatted_name": "Courier desk", "first_name": "Courier"})
        );
    }

    #[test]
    fn errors_are_classified() {
        let e = |code: i64| {
            serde_json::to_vec(&json!({"error": {"message": "(#x) y", "type": "OAuthException", "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": "d"}, "fbtrace_id": "A"}}))
            .unwrap()
        };
        assert_eq!(classify(400, &e(130429)), Refusal::RateLimited { per_chat: false, wait: None });
        assert_eq!(classify(429, &e(131056)), Refusal::RateLimited { per_chat: true, wait: None });
        assert_eq!(classify(429, b""), Refusal::RateLimited { per_chat: false, wait: None });
        assert!(matches!(classify(400, &e(131047)), Refusal::OutsideWindow(m) if m.contains("24-hour")));
        assert!(matches!(classify(400, &e(131026)), Refusal::Permanent(m) if m.contains("131026")));
        assert!(matches!(classify(401, &e(190)), Refusal::Unhealthy(m) if m.contains("access_token")));
        assert!(matches!(classify(403, &e(200)), Refusal::Unhealthy(_)));
        assert!(matches!(classify(401, b"nope"), Refusal::Unhealthy(_)));
        assert!(matches!(classify(503, b"down"), Refusal::Transient(_)));
        assert!(matches!(classify(400, &e(132001)), Refusal::Permanent(_)));
    }
}
