//! A fake of Meta's WhatsApp Business Cloud API for tests, speaking the real wire format
//! (`docs/platforms.md` §2 and the fake's list in §2.7).
//!
//! - `POST /{version}/{phone_number_id}/messages` with `Authorization: Bearer` (else HTTP 401,
//!   code 190): `messaging_product`, `to` and each type's payload validated (text ≤ 4096,
//!   buttons ≤ 3 with titles ≤ 20 and ids ≤ 256, lists ≤ 10 rows with titles ≤ 24, media by an
//!   uploaded id or a link, a template from the registry with its parameter count: 132001 /
//!   132000); answered `{"messaging_product", "contacts", "messages": [{"id": "wamid...."}]}`;
//!   `status: "read"` answers `{"success": true}`.
//! - **The 24-hour window** per recipient on a virtual clock ([`FakeCloud::set_clock`]), from the
//!   last inbound message the fake sent: a free-form message outside it is accepted and followed
//!   by a `failed` status with 131047, or refused at once with HTTP 400 / 131047
//!   ([`FakeCloud::set_window_sync`]).
//! - Limits: the number's throughput (per second, 130429) and per user (a burst, then one per
//!   6 s: 131056); faults on demand ([`FakeCloud::fail_next`]: any HTTP status and code).
//! - Media: `POST /{version}/{phone_number_id}/media` (multipart: `file`, `type`,
//!   `messaging_product`; size limits per type) → `{"id"}`; `GET /{version}/{media_id}` →
//!   metadata with a `url` that **requires the bearer token** and expires after 5 virtual
//!   minutes; `DELETE`.
//! - Webhooks: the `GET` handshake ([`FakeCloud::handshake`]); events POSTed with
//!   `X-Hub-Signature-256` over the exact bytes, non-ASCII escaped as Meta does (or mis-signed,
//!   or unsigned: [`Signature`]); several entries and changes in one POST
//!   ([`FakeCloud::post_batch`]); `sent` → `delivered` → `read` for every accepted message
//!   ([`FakeCloud::set_auto_statuses`]); redelivery on a non-200, every try recorded.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// Meta's webhook signature, computed here on its own: `sha256=` and the hex HMAC-SHA256 of the
/// body keyed with the app secret.
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(app_secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// JSON as Meta sends it: every non-ASCII character escaped (`\u00fc`, surrogate pairs above
/// the BMP), so a check over re-serialised JSON would fail.
pub fn meta_json(value: &Value) -> Vec<u8> {
    let plain = serde_json::to_string(value).expect("JSON");
    let mut out = String::with_capacity(plain.len());
    for c in plain.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out.into_bytes()
}

/// The display number of the fake's business phone.
pub const DISPLAY_NUMBER: &str = "4930123456";
/// The WhatsApp Business Account id in webhooks.
pub const WABA_ID: &str = "880012345678901";
/// Unix seconds the virtual clock's "now" is offset from (0: the real time).
const WINDOW_S: i64 = 24 * 3600;
/// How long a media URL works, in virtual time.
const MEDIA_URL_TTL_S: i64 = 300;

/// One recorded API request.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    /// Since the fake started, when it arrived.
    pub at: Duration,
    pub headers: HashMap<String, String>,
    /// The JSON body (`Null` for others; multipart uploads record their fields here).
    pub body: Value,
    pub status: u16,
    pub answer: Value,
}

/// A message the fake accepted.
#[derive(Debug, Clone)]
pub struct Sent {
    pub id: String,
    pub to: String,
    pub body: Value,
    pub at: Duration,
}

impl Sent {
    pub fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }
}

/// A file uploaded through `/media`.
#[derive(Debug, Clone)]
pub struct Upload {
    pub id: String,
    pub name: String,
    pub mime: String,
    pub bytes: Bytes,
}

/// One webhook POST and what the hub answered.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message ids or `status:<id>:<status>` it carried.
    pub items: Vec<String>,
    /// HTTP status (0: unreachable).
    pub status: u16,
    pub answer: String,
    pub at: Duration,
}

/// How a webhook POST is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    Right,
    /// Signed with another secret.
    Wrong,
    Missing,
}

/// A WhatsApp user of the fake.
#[derive(Debug, Clone)]
pub struct WaUser {
    pub wa_id: String,
    pub name: String,
}

impl WaUser {
    pub fn new(wa_id: &str, name: &str) -> Self {
        WaUser { wa_id: wa_id.into(), name: name.into() }
    }
}

struct Fault {
    status: u16,
    code: i64,
    message: String,
}

/// A per-user limiter: a burst, then one message every `interval`.
struct Bucket {
    /// The theoretical arrival time (GCRA).
    tat: Instant,
}

struct Inner {
    started: Instant,
    clock: chrono::Duration,
    calls: Vec<Call>,
    sent: Vec<Sent>,
    uploads: HashMap<String, Upload>,
    /// Inbound media the fake serves: id -> (bytes, mime).
    media: HashMap<String, (Bytes, String)>,
    next_id: u64,
    last_inbound: HashMap<String, chrono::DateTime<chrono::Utc>>,
    templates: Vec<(String, String, usize)>,
    faults: VecDeque<Fault>,
    window_sync: bool,
    auto_statuses: bool,
    latency: Duration,
    webhook: Option<String>,
    redelivery: (u32, Duration),
    deliveries: Vec<Delivery>,
    per_second: u32,
    second: (u64, u32),
    user_burst: u32,
    user_interval: Duration,
    buckets: HashMap<String, Bucket>,
}

struct Shared {
    token: String,
    app_secret: String,
    verify_token: String,
    phone_number_id: String,
    inner: Mutex<Inner>,
    http: reqwest::Client,
}

/// A running fake Cloud API.
#[derive(Clone)]
pub struct FakeCloud {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

fn error(status: u16, code: i64, message: &str, details: &str) -> (u16, Value) {
    (
        status,
        json!({"error": {"message": format!("(#{code}) {message}"), "type": "OAuthException", "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details}, "fbtrace_id": "AxQ9pLm2"}}),
    )
}

fn chars(v: &Value) -> usize {
    v.as_str().map(|s| s.chars().count()).unwrap_or(0)
}

impl FakeCloud {
    /// Starts the fake on `127.0.0.1:0` for one business number.
    pub async fn start(token: &str, app_secret: &str, verify_token: &str, phone_number_id: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake");
        let addr = listener.local_addr().expect("bound address");
        let fake = FakeCloud {
            addr,
            shared: Arc::new(Shared {
                token: token.into(),
                app_secret: app_secret.into(),
                verify_token: verify_token.into(),
                phone_number_id: phone_number_id.into(),
                inner: Mutex::new(Inner {
                    started: Instant::now(),
                    clock: chrono::Duration::zero(),
                    calls: Vec::new(),
                    sent: Vec::new(),
                    uploads: HashMap::new(),
                    media: HashMap::new(),
                    next_id: 1,
                    last_inbound: HashMap::new(),
                    templates: Vec::new(),
                    faults: VecDeque::new(),
                    window_sync: false,
                    auto_statuses: false,
                    latency: Duration::ZERO,
                    webhook: None,
                    redelivery: (20, Duration::from_millis(50)),
                    deliveries: Vec::new(),
                    per_second: 80,
                    second: (0, 0),
                    user_burst: 45,
                    user_interval: Duration::from_secs(6),
                    buckets: HashMap::new(),
                }),
                http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("HTTP client"),
            }),
        };
        let router = Router::new()
            .route("/download/{id}", get(download))
            .route("/{version}/{id}/messages", post(messages))
            .route("/{version}/{id}/media", post(upload))
            .route("/{version}/{id}", get(media_meta).delete(media_delete))
            .with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        fake
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `accounts.settings.api_url`.
    pub fn api_url(&self) -> String {
        format!("http://{}/v21.0/", self.addr)
    }

    /// The verify token the account was configured with (what a real handshake sends).
    pub fn verify_token(&self) -> &str {
        &self.shared.verify_token
    }

    pub fn elapsed(&self) -> Duration {
        self.inner().started.elapsed()
    }

    /// The virtual clock: the real time moved by `offset` (negative: the past).
    pub fn set_clock(&self, offset: chrono::Duration) {
        self.inner().clock = offset;
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.inner().clock
    }

    /// The webhook URL events are POSTed to (configured in Meta's dashboard).
    pub fn set_webhook(&self, url: &str) {
        self.inner().webhook = Some(url.into());
    }

    /// An approved template: name, language and the number of body parameters.
    pub fn add_template(&self, name: &str, language: &str, params: usize) {
        self.inner().templates.push((name.into(), language.into(), params));
    }

    /// A free-form message outside the window: refused at once (true) or accepted and then
    /// failed by a status (false, the default).
    pub fn set_window_sync(&self, sync: bool) {
        self.inner().window_sync = sync;
    }

    /// `sent`, `delivered` and `read` statuses for every message accepted from now on.
    pub fn set_auto_statuses(&self, on: bool) {
        self.inner().auto_statuses = on;
    }

    pub fn set_latency(&self, latency: Duration) {
        self.inner().latency = latency;
    }

    /// Events are POSTed at most `tries` times, the n-th retry after n × `pause`.
    pub fn set_redelivery(&self, tries: u32, pause: Duration) {
        self.inner().redelivery = (tries.max(1), pause);
    }

    /// The number's throughput (messages a second) and the per-user burst.
    pub fn set_limits(&self, per_second: u32, user_burst: u32) {
        let mut s = self.inner();
        s.per_second = per_second;
        s.user_burst = user_burst;
    }

    /// The next `/messages` request is answered HTTP `status` with this Graph API error code.
    pub fn fail_next(&self, status: u16, code: i64, message: &str) {
        self.inner().faults.push_back(Fault { status, code, message: message.into() });
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner().calls.clone()
    }

    /// Every message accepted, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.inner().sent.clone()
    }

    pub fn sent_to(&self, wa_id: &str) -> Vec<Sent> {
        self.inner().sent.iter().filter(|s| s.to == wa_id).cloned().collect()
    }

    pub fn upload_of(&self, id: &str) -> Option<Upload> {
        self.inner().uploads.get(id).cloned()
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner().deliveries.clone()
    }

    /// The tries of the POSTs that carried `item` (a message id or `status:<id>:<status>`).
    pub fn deliveries_of(&self, item: &str) -> Vec<Delivery> {
        self.inner().deliveries.iter().filter(|d| d.items.iter().any(|i| i == item)).cloned().collect()
    }

    fn next(&self, prefix: &str) -> String {
        let mut s = self.inner();
        let n = s.next_id;
        s.next_id += 1;
        format!("{prefix}{n:012}")
    }

    /// Serves `bytes` as inbound media; its media id.
    pub fn add_media(&self, bytes: impl Into<Bytes>, mime: &str) -> String {
        let id = format!("22{}", &self.next("")[2..]);
        self.inner().media.insert(id.clone(), (bytes.into(), mime.into()));
        id
    }

    /// A file the business uploaded earlier (say, a sticker set): its media id.
    pub fn add_upload(&self, name: &str, mime: &str, bytes: impl Into<Bytes>) -> String {
        let id = format!("77{}", &self.next("")[2..]);
        let upload = Upload { id: id.clone(), name: name.into(), mime: mime.into(), bytes: bytes.into() };
        self.inner().uploads.insert(id.clone(), upload);
        id
    }

    // ------------------------------------------------------------------------ webhooks --

    /// Meta's verification request: `GET <webhook>?hub.mode=subscribe&...`; the status and body.
    pub async fn handshake(&self, verify_token: &str, challenge: &str) -> (u16, String) {
        let url = self.inner().webhook.clone().unwrap_or_default();
        let response = self
            .shared
            .http
            .get(&url)
            .query(&[("hub.mode", "subscribe"), ("hub.challenge", challenge), ("hub.verify_token", verify_token)])
            .send()
            .await;
        match response {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    /// The `value` of a change carrying `messages` from `user`.
    fn message_value(&self, user: &WaUser, messages: Vec<Value>) -> Value {
        json!({"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": self.shared.phone_number_id},
            "contacts": [{"profile": {"name": user.name}, "wa_id": user.wa_id}], "messages": messages})
    }

    /// A message item from `user` (`fields`: `{"type": "text", "text": {...}}`) at the virtual
    /// now, which opens the user's window at the fake; its `wamid`.
    pub fn message_item(&self, user: &WaUser, fields: Value) -> (String, Value) {
        let id = self.next("wamid.HBgNIN");
        let now = self.now();
        self.inner().last_inbound.insert(user.wa_id.clone(), now);
        let mut item = json!({"from": user.wa_id, "id": id, "timestamp": now.timestamp().to_string()});
        if let (Value::Object(item), Value::Object(fields)) = (&mut item, fields) {
            item.extend(fields);
        }
        (id, item)
    }

    /// A message from `user`, POSTed in the background (again on every non-200); its id.
    pub fn message(&self, user: &WaUser, fields: Value) -> String {
        let (id, item) = self.message_item(user, fields);
        let body = envelope(vec![self.message_value(user, vec![item])]);
        let fake = self.clone();
        tokio::spawn(async move { fake.deliver(body).await });
        id
    }

    /// Several changes (each a `value`) in one POST of several entries, delivered before
    /// returning.
    pub async fn post_batch(&self, values: Vec<Value>) -> Delivery {
        let body = json!({"object": "whatsapp_business_account", "entry": values.into_iter()
            .map(|v| json!({"id": WABA_ID, "changes": [{"field": "messages", "value": v}]})).collect::<Vec<_>>()});
        self.deliver(body).await
    }

    /// A `value` with messages of `user`, for [`FakeCloud::post_batch`].
    pub fn value(&self, user: &WaUser, items: Vec<Value>) -> Value {
        self.message_value(user, items)
    }

    pub fn text(&self, user: &WaUser, body: &str) -> String {
        self.message(user, json!({"type": "text", "text": {"body": body}}))
    }

    fn media_message(&self, user: &WaUser, kind: &str, bytes: impl Into<Bytes>, mime: &str, extra: Value) -> String {
        let id = self.add_media(bytes, mime);
        let mut media = json!({"mime_type": mime, "sha256": "9f2c", "id": id});
        if let (Value::Object(media), Value::Object(extra)) = (&mut media, extra) {
            media.extend(extra);
        }
        self.message(user, json!({"type": kind, kind: media}))
    }

    pub fn image(&self, user: &WaUser, bytes: impl Into<Bytes>, caption: Option<&str>) -> String {
        let extra = caption.map(|c| json!({"caption": c})).unwrap_or(json!({}));
        self.media_message(user, "image", bytes, "image/jpeg", extra)
    }

    pub fn video(&self, user: &WaUser, bytes: impl Into<Bytes>) -> String {
        self.media_message(user, "video", bytes, "video/mp4", json!({}))
    }

    /// Audio; `voice`: a voice note (OGG/Opus, `voice: true`).
    pub fn audio(&self, user: &WaUser, bytes: impl Into<Bytes>, voice: bool) -> String {
        if voice {
            self.media_message(user, "audio", bytes, "audio/ogg; codecs=opus", json!({"voice": true}))
        } else {
            self.media_message(user, "audio", bytes, "audio/mpeg", json!({}))
        }
    }

    pub fn document(&self, user: &WaUser, name: &str, bytes: impl Into<Bytes>, mime: &str) -> String {
        self.media_message(user, "document", bytes, mime, json!({"filename": name}))
    }

    pub fn sticker(&self, user: &WaUser, bytes: impl Into<Bytes>) -> String {
        self.media_message(user, "sticker", bytes, "image/webp", json!({"animated": false}))
    }

    pub fn location(&self, user: &WaUser, lat: f64, lon: f64, name: &str) -> String {
        self.message(user, json!({"type": "location", "location": {"latitude": lat, "longitude": lon, "name": name}}))
    }

    pub fn contact(&self, user: &WaUser, name: &str, phone: &str) -> String {
        self.message(
            user,
            json!({"type": "contacts", "contacts": [{"name": {"formatted_name": name}, "phones": [{"phone": phone, "type": "CELL"}]}]}),
        )
    }

    /// A press of the reply button `id` on the business's message `context`.
    pub fn button_reply(&self, user: &WaUser, context: &str, id: &str, title: &str) -> String {
        self.message(
            user,
            json!({"type": "interactive", "context": {"from": DISPLAY_NUMBER, "id": context},
            "interactive": {"type": "button_reply", "button_reply": {"id": id, "title": title}}}),
        )
    }

    pub fn list_reply(&self, user: &WaUser, context: &str, id: &str, title: &str) -> String {
        self.message(
            user,
            json!({"type": "interactive", "context": {"from": DISPLAY_NUMBER, "id": context},
            "interactive": {"type": "list_reply", "list_reply": {"id": id, "title": title, "description": ""}}}),
        )
    }

    pub fn reaction(&self, user: &WaUser, message_id: &str, emoji: &str) -> String {
        self.message(user, json!({"type": "reaction", "reaction": {"message_id": message_id, "emoji": emoji}}))
    }

    /// A status of the business's message `id` to `to`, in the background.
    pub fn status(&self, id: &str, to: &str, status: &str, error: Option<(i64, &str)>) {
        let body = self.status_body(id, to, status, error);
        let fake = self.clone();
        tokio::spawn(async move { fake.deliver(body).await });
    }

    fn status_body(&self, id: &str, to: &str, status: &str, error: Option<(i64, &str)>) -> Value {
        let mut item = json!({"id": id, "status": status, "timestamp": self.now().timestamp().to_string(), "recipient_id": to,
            "pricing": {"billable": true, "pricing_model": "PMP", "category": "service"}});
        if let Some((code, title)) = error {
            item["errors"] = json!([{"code": code, "title": title, "message": title,
                "error_data": {"details": title}, "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]);
        }
        envelope(vec![json!({"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": self.shared.phone_number_id},
            "statuses": [item]})])
    }

    /// POSTs `body` until the hub answers 200 or the tries run out; the last try.
    pub async fn deliver(&self, body: Value) -> Delivery {
        let (tries, pause) = self.inner().redelivery;
        let mut last = None;
        for attempt in 0..tries {
            let delivery = self.post(&body, Signature::Right).await;
            let ok = delivery.status == 200;
            last = Some(delivery);
            if ok {
                break;
            }
            tokio::time::sleep(pause * (attempt + 1).min(20)).await;
        }
        last.expect("at least one try")
    }

    /// POSTs `body` once, signed as `signature` says, and records the answer.
    pub async fn post(&self, body: &Value, signature: Signature) -> Delivery {
        let raw = meta_json(body);
        let (status, answer) = self.post_raw(&raw, signature).await;
        let mut items = Vec::new();
        for entry in body["entry"].as_array().into_iter().flatten() {
            for change in entry["changes"].as_array().into_iter().flatten() {
                for m in change["value"]["messages"].as_array().into_iter().flatten() {
                    items.push(m["id"].as_str().unwrap_or_default().to_owned());
                }
                for s in change["value"]["statuses"].as_array().into_iter().flatten() {
                    items.push(format!(
                        "status:{}:{}",
                        s["id"].as_str().unwrap_or_default(),
                        s["status"].as_str().unwrap_or_default()
                    ));
                }
            }
        }
        let delivery = Delivery { items, status, answer, at: self.elapsed() };
        self.inner().deliveries.push(delivery.clone());
        delivery
    }

    /// POSTs `raw` bytes as they are (not recorded).
    pub async fn post_raw(&self, raw: &[u8], signature: Signature) -> (u16, String) {
        let Some(url) = self.inner().webhook.clone() else { return (0, "no webhook is set".into()) };
        let mut request = self.shared.http.post(&url).header(header::CONTENT_TYPE, "application/json");
        match signature {
            Signature::Right => request = request.header("X-Hub-Signature-256", sign(&self.shared.app_secret, raw)),
            Signature::Wrong => request = request.header("X-Hub-Signature-256", sign("not-the-app-secret", raw)),
            Signature::Missing => {}
        }
        match request.body(raw.to_vec()).send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    // ------------------------------------------------------------------------- the API --

    fn authorized(&self, headers: &HeaderMap) -> bool {
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {}", self.shared.token))
    }

    fn record(&self, method: &str, path: &str, headers: &HeaderMap, body: Value, at: Duration, answer: (u16, &Value)) {
        let headers =
            headers.iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect();
        let (status, answer) = (answer.0, answer.1.clone());
        self.inner().calls.push(Call { method: method.into(), path: path.into(), at, headers, body, status, answer });
    }

    /// Whether the throughput limits let one more message to `to` through now.
    fn admit(&self, to: &str) -> Option<(u16, Value)> {
        let mut s = self.inner();
        let second = s.started.elapsed().as_secs();
        if s.second.0 != second {
            s.second = (second, 0);
        }
        s.second.1 += 1;
        if s.second.1 > s.per_second {
            return Some(error(400, 130429, "Rate limit hit", "Cloud API message throughput has been reached."));
        }
        let now = Instant::now();
        let (interval, burst) = (s.user_interval, s.user_burst);
        let bucket = s.buckets.entry(to.to_owned()).or_insert(Bucket { tat: now });
        let tat = bucket.tat.max(now);
        if tat.duration_since(now) > interval * burst.saturating_sub(1) {
            return Some(error(
                400,
                131056,
                "(Business Account, Consumer Account) pair rate limit hit",
                "Too many messages sent from the sender phone number to the same recipient phone number in a short period of time.",
            ));
        }
        bucket.tat = tat + interval;
        None
    }

    /// Validates and answers one `/messages` request.
    fn message_request(&self, body: &Value) -> (u16, Value, Option<Sent>) {
        if body["messaging_product"] != "whatsapp" {
            let (s, v) = error(400, 100, "Invalid parameter", "messaging_product must be whatsapp");
            return (s, v, None);
        }
        if body["status"] == "read" {
            return (200, json!({"success": true}), None);
        }
        let to = body["to"].as_str().unwrap_or_default().to_owned();
        let kind = body["type"].as_str().unwrap_or("text").to_owned();
        let invalid = |details: String| {
            let (s, v) = error(400, 100, "Invalid parameter", &details);
            (s, v, None)
        };
        if to.is_empty() {
            return invalid("to is required".into());
        }
        let payload = &body[kind.as_str()];
        match kind.as_str() {
            "text" => {
                let n = chars(&payload["body"]);
                if n == 0 || n > 4096 {
                    return invalid(format!("text.body must be 1 to 4096 characters, not {n}"));
                }
            }
            "image" | "video" | "audio" | "document" | "sticker" => {
                let known = payload["id"].as_str().map(|id| self.inner().uploads.contains_key(id));
                match (known, payload["link"].as_str()) {
                    (Some(true), _) | (None, Some(_)) => {}
                    (Some(false), _) => return invalid(format!("{kind}.id is not an uploaded media id")),
                    (None, None) => return invalid(format!("{kind} needs an id or a link")),
                }
                if chars(&payload["caption"]) > 1024 {
                    return invalid("the caption is at most 1024 characters".into());
                }
            }
            "location" => {
                if !payload["latitude"].is_number() || !payload["longitude"].is_number() {
                    return invalid("location needs latitude and longitude".into());
                }
            }
            "contacts" => {
                if payload.as_array().is_none_or(|a| a.is_empty()) {
                    return invalid("contacts must be a non-empty array".into());
                }
            }
            "interactive" => {
                if chars(&payload["body"]["text"]) == 0 || chars(&payload["body"]["text"]) > 1024 {
                    return invalid("interactive.body.text must be 1 to 1024 characters".into());
                }
                match payload["type"].as_str() {
                    Some("button") => {
                        let buttons = payload["action"]["buttons"].as_array().cloned().unwrap_or_default();
                        if buttons.is_empty() || buttons.len() > 3 {
                            return invalid("1 to 3 buttons".into());
                        }
                        if buttons.iter().any(|b| chars(&b["reply"]["title"]) > 20 || chars(&b["reply"]["id"]) > 256) {
                            return invalid("a button title is at most 20 characters, an id 256".into());
                        }
                    }
                    Some("list") => {
                        let rows: Vec<Value> = payload["action"]["sections"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .flat_map(|s| s["rows"].as_array().cloned().unwrap_or_default())
                            .collect();
                        if rows.is_empty() || rows.len() > 10 || chars(&payload["action"]["button"]) > 20 {
                            return invalid("a list has 1 to 10 rows and a button of at most 20 characters".into());
                        }
                        if rows.iter().any(|r| chars(&r["title"]) > 24 || chars(&r["id"]) > 200) {
                            return invalid("a row title is at most 24 characters, an id 200".into());
                        }
                    }
                    other => return invalid(format!("interactive type {other:?} is not supported by the fake")),
                }
            }
            "template" => {
                let name = payload["name"].as_str().unwrap_or_default();
                let language = payload["language"]["code"].as_str().unwrap_or_default();
                let given = payload["components"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| c["type"] == "body")
                    .map(|c| c["parameters"].as_array().map_or(0, Vec::len))
                    .sum::<usize>();
                let approved = self.inner().templates.iter().find(|(n, l, _)| n == name && l == language).map(|t| t.2);
                match approved {
                    None => {
                        let (s, v) = error(
                            404,
                            132001,
                            "Template name does not exist in the translation",
                            &format!("template name ({name}) does not exist in {language}"),
                        );
                        return (s, v, None);
                    }
                    Some(n) if n != given => {
                        let (s, v) = error(
                            400,
                            132000,
                            "Number of parameters does not match the expected number of params",
                            &format!(
                                "body: number of localizable_params ({given}) does not match the expected number of params ({n})"
                            ),
                        );
                        return (s, v, None);
                    }
                    Some(_) => {}
                }
            }
            other => return invalid(format!("type {other} is not supported by the fake")),
        }
        if let Some((s, v)) = self.admit(&to) {
            return (s, v, None);
        }
        let outside = kind != "template" && {
            let s = self.inner();
            let now = chrono::Utc::now() + s.clock;
            s.last_inbound.get(&to).is_none_or(|at| (now - *at).num_seconds() > WINDOW_S)
        };
        if outside && self.inner().window_sync {
            let (s, v) = error(
                400,
                131047,
                "Re-engagement message",
                "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
            );
            return (s, v, None);
        }
        let id = self.next("wamid.HBgNOUT");
        let sent = Sent { id: id.clone(), to: to.clone(), body: body.clone(), at: self.elapsed() };
        let mut answer = json!({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}], "messages": [{"id": id}]});
        if kind == "template" {
            answer["messages"][0]["message_status"] = json!("accepted");
        }
        // what follows the answer: the window's failure, or the statuses of a delivery
        let fake = self.clone();
        let auto = self.inner().auto_statuses;
        if outside {
            let body = self.status_body(&id, &to, "failed", Some((131047, "Re-engagement message")));
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                fake.deliver(body).await;
            });
        } else if auto {
            let bodies: Vec<Value> =
                ["sent", "delivered", "read"].iter().map(|s| self.status_body(&id, &to, s, None)).collect();
            tokio::spawn(async move {
                for body in bodies {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    fake.deliver(body).await;
                }
            });
        }
        (200, answer, Some(sent))
    }
}

fn envelope(values: Vec<Value>) -> Value {
    json!({"object": "whatsapp_business_account", "entry": values.into_iter()
        .map(|v| json!({"id": WABA_ID, "changes": [{"field": "messages", "value": v}]})).collect::<Vec<_>>()})
}

async fn messages(
    State(fake): State<FakeCloud>,
    Path((_version, id)): Path<(String, String)>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let at = fake.elapsed();
    let latency = fake.inner().latency;
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let path = format!("{id}/messages");
    let (status, answer, sent) = if !fake.authorized(&headers) {
        let (s, v) = error(401, 190, "Error validating access token: Session has expired", "");
        (s, v, None)
    } else if id != fake.shared.phone_number_id {
        let (s, v) = error(400, 100, "Unsupported post request", "unknown phone number id");
        (s, v, None)
    } else if let Some(fault) = { fake.inner().faults.pop_front() } {
        let (s, v) = error(fault.status, fault.code, &fault.message, &fault.message);
        (s, v, None)
    } else {
        fake.message_request(&body)
    };
    if let Some(sent) = sent {
        fake.inner().sent.push(sent);
    }
    fake.record("POST", &path, &headers, body, at, (status, &answer));
    tokio::time::sleep(latency).await;
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), axum::Json(answer)).into_response()
}

async fn upload(
    State(fake): State<FakeCloud>,
    Path((_version, id)): Path<(String, String)>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    let at = fake.elapsed();
    let mut fields = serde_json::Map::new();
    let mut file: Option<(String, String, Bytes)> = None;
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let file_name = field.file_name().unwrap_or("file").to_owned();
            let mime = field.content_type().unwrap_or("application/octet-stream").to_owned();
            let bytes = field.bytes().await.unwrap_or_default();
            fields.insert("file".into(), json!({"name": file_name, "mime": mime, "size": bytes.len()}));
            file = Some((file_name, mime, bytes));
        } else {
            fields.insert(name, json!(field.text().await.unwrap_or_default()));
        }
    }
    let (status, answer) = if !fake.authorized(&headers) {
        error(401, 190, "Error validating access token: Session has expired", "")
    } else if id != fake.shared.phone_number_id || fields.get("messaging_product") != Some(&json!("whatsapp")) {
        error(400, 100, "Invalid parameter", "messaging_product and a known phone number id are required")
    } else if let Some((name, mime, bytes)) = file {
        let mime = fields.get("type").and_then(Value::as_str).map(str::to_owned).unwrap_or(mime);
        let limit: usize = match mime.split('/').next().unwrap_or_default() {
            _ if mime == "image/webp" => 500 << 10,
            "image" => 5 << 20,
            "video" | "audio" => 16 << 20,
            _ => 100 << 20,
        };
        if bytes.len() > limit {
            error(
                400,
                131053,
                "Media upload error",
                &format!("the file is {} bytes, over {limit} for {mime}", bytes.len()),
            )
        } else {
            let media_id = format!("77{}", &fake.next("")[2..]);
            fake.inner().uploads.insert(media_id.clone(), Upload { id: media_id.clone(), name, mime, bytes });
            (200, json!({"id": media_id}))
        }
    } else {
        error(400, 100, "Invalid parameter", "file is required")
    };
    fake.record("POST", &format!("{id}/media"), &headers, Value::Object(fields), at, (status, &answer));
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), axum::Json(answer)).into_response()
}

async fn media_meta(
    State(fake): State<FakeCloud>,
    Path((_version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let at = fake.elapsed();
    let found = {
        let s = fake.inner();
        s.media
            .get(&id)
            .map(|(b, m)| (b.len(), m.clone()))
            .or_else(|| s.uploads.get(&id).map(|u| (u.bytes.len(), u.mime.clone())))
    };
    let (status, answer) = if !fake.authorized(&headers) {
        error(401, 190, "Error validating access token: Session has expired", "")
    } else {
        match found {
            Some((size, mime)) => {
                let expires = (fake.now() + chrono::Duration::seconds(MEDIA_URL_TTL_S)).timestamp();
                (
                    200,
                    json!({"messaging_product": "whatsapp", "url": format!("http://{}/download/{id}?exp={expires}", fake.addr),
                    "mime_type": mime, "sha256": "9f2c", "file_size": size, "id": id}),
                )
            }
            None => error(404, 100, "Unsupported get request", "no such media"),
        }
    };
    fake.record("GET", &id, &headers, Value::Null, at, (status, &answer));
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), axum::Json(answer)).into_response()
}

async fn media_delete(
    State(fake): State<FakeCloud>,
    Path((_version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !fake.authorized(&headers) {
        let (s, v) = error(401, 190, "Error validating access token", "");
        return (StatusCode::from_u16(s).unwrap_or(StatusCode::UNAUTHORIZED), axum::Json(v)).into_response();
    }
    let removed = fake.inner().uploads.remove(&id).is_some();
    axum::Json(json!({"success": removed})).into_response()
}

async fn download(
    State(fake): State<FakeCloud>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !fake.authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, "the media URL needs the bearer token").into_response();
    }
    let expires = query.get("exp").and_then(|e| e.parse::<i64>().ok()).unwrap_or(0);
    if fake.now().timestamp() > expires {
        return (StatusCode::NOT_FOUND, "the media URL has expired").into_response();
    }
    let found = {
        let s = fake.inner();
        s.media.get(&id).cloned().or_else(|| s.uploads.get(&id).map(|u| (u.bytes.clone(), u.mime.clone())))
    };
    match found {
        Some((bytes, mime)) => ([(header::CONTENT_TYPE, mime)], bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
