//! A fake of Infobip's WhatsApp API for tests, speaking its wire format (`docs/platforms.md`
//! §3 and the fake's list in §3.7).
//!
//! - `POST /whatsapp/1/message/{text|image|document|video|audio|sticker|location|contact}`,
//!   `.../interactive/{buttons|list}` and `/whatsapp/1/message/template`, with
//!   `Authorization: App <key>` (else 401 `UNAUTHORIZED`); fields validated like Infobip's
//!   SDK (400 `BAD_REQUEST` with `validationErrors`); the client's `messageId` echoed; answered
//!   `PENDING_ENROUTE`. Files by `mediaUrl`: **fetched** before the answer, as Infobip does
//!   ([`FakeInfobip::fetched`]); one that cannot be fetched is reported `REJECTED`.
//! - The 24-hour window per recipient on a virtual clock ([`FakeInfobip::set_clock`]): a
//!   free-form message outside it is accepted and then reported `REJECTED` with its error; a
//!   template from the registry at any time (an unknown one is reported `REJECTED` too).
//! - 429 `TOO_MANY_REQUESTS` and any other fault on demand ([`FakeInfobip::fail_next`]).
//! - `POST /whatsapp/1/senders/{sender}/message/{id}/read` → 204; inbound media at
//!   `GET /whatsapp/1/senders/{sender}/media/{id}` with the API key.
//! - Webhooks, **unsigned** as Infobip's are: inbound messages to the configured URL (with the
//!   account's secret in it), delivery reports to each message's `notifyUrl`, seen reports, each
//!   with the configured `Authorization` header if any; `DELIVERED` and seen for every accepted
//!   message on demand ([`FakeInfobip::set_auto_reports`]); redelivery on a non-200.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

const WINDOW_S: i64 = 24 * 3600;

/// One recorded API request.
#[derive(Debug, Clone)]
pub struct Call {
    /// `text`, `image`, `interactive/buttons`, `template`, `read`...
    pub endpoint: String,
    pub at: Duration,
    pub headers: HashMap<String, String>,
    pub body: Value,
    pub status: u16,
    pub answer: Value,
}

/// A message the fake accepted.
#[derive(Debug, Clone)]
pub struct Sent {
    pub message_id: String,
    pub endpoint: String,
    pub to: String,
    /// The message (for templates, the item of `messages`).
    pub body: Value,
    pub at: Duration,
}

/// An outbound file the fake fetched by its `mediaUrl`.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub url: String,
    pub status: u16,
    pub bytes: Bytes,
}

/// One webhook POST and what the hub answered.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `messageId`s of its results.
    pub ids: Vec<String>,
    pub status: u16,
    pub answer: String,
    pub at: Duration,
}

struct Fault {
    status: u16,
    id: String,
    text: String,
}

struct Inner {
    started: Instant,
    clock: chrono::Duration,
    calls: Vec<Call>,
    sent: Vec<Sent>,
    fetched: Vec<Fetched>,
    media: HashMap<String, (Bytes, String)>,
    next: u64,
    last_inbound: HashMap<String, chrono::DateTime<chrono::Utc>>,
    templates: Vec<(String, String, usize)>,
    faults: VecDeque<Fault>,
    auto_reports: bool,
    latency: Duration,
    /// Where inbound messages go (the account's URL with its token).
    webhook: Option<String>,
    /// The `Authorization` header configured for webhooks.
    authorization: Option<String>,
    redelivery: (u32, Duration),
    deliveries: Vec<Delivery>,
}

struct Shared {
    api_key: String,
    sender: String,
    inner: Mutex<Inner>,
    http: reqwest::Client,
}

/// A running fake Infobip.
#[derive(Clone)]
pub struct FakeInfobip {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

fn exception(status: u16, id: &str, text: &str, validation: Option<Value>) -> (u16, Value) {
    let mut e = json!({"messageId": id, "text": text});
    if let Some(v) = validation {
        e["validationErrors"] = v;
    }
    (status, json!({"requestError": {"serviceException": e}}))
}

fn bad(field: &str, why: &str) -> (u16, Value) {
    exception(400, "BAD_REQUEST", "Bad request", Some(json!({ field: [why] })))
}

fn chars(v: &Value) -> usize {
    v.as_str().map(|s| s.chars().count()).unwrap_or(0)
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

impl FakeInfobip {
    /// Starts the fake on `127.0.0.1:0` for the API key `api_key` and the WhatsApp number `sender`.
    pub async fn start(api_key: &str, sender: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake");
        let addr = listener.local_addr().expect("bound address");
        let fake = FakeInfobip {
            addr,
            shared: Arc::new(Shared {
                api_key: api_key.into(),
                sender: sender.into(),
                inner: Mutex::new(Inner {
                    started: Instant::now(),
                    clock: chrono::Duration::zero(),
                    calls: Vec::new(),
                    sent: Vec::new(),
                    fetched: Vec::new(),
                    media: HashMap::new(),
                    next: 1,
                    last_inbound: HashMap::new(),
                    templates: Vec::new(),
                    faults: VecDeque::new(),
                    auto_reports: false,
                    latency: Duration::ZERO,
                    webhook: None,
                    authorization: None,
                    redelivery: (20, Duration::from_millis(50)),
                    deliveries: Vec::new(),
                }),
                http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("HTTP client"),
            }),
        };
        let router = Router::new()
            .route("/whatsapp/1/message/{kind}", post(message))
            .route("/whatsapp/1/message/interactive/{kind}", post(interactive))
            .route("/whatsapp/1/senders/{sender}/message/{id}/read", post(read))
            .route("/whatsapp/1/senders/{sender}/media/{id}", get(media))
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
        format!("http://{}/", self.addr)
    }

    pub fn sender(&self) -> &str {
        &self.shared.sender
    }

    pub fn elapsed(&self) -> Duration {
        self.inner().started.elapsed()
    }

    pub fn set_clock(&self, offset: chrono::Duration) {
        self.inner().clock = offset;
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.inner().clock
    }

    /// Where inbound messages and seen reports go, and the `Authorization` header configured
    /// for them at Infobip.
    pub fn set_webhook(&self, url: &str, authorization: Option<&str>) {
        let mut s = self.inner();
        s.webhook = Some(url.into());
        s.authorization = authorization.map(str::to_owned);
    }

    pub fn add_template(&self, name: &str, language: &str, params: usize) {
        self.inner().templates.push((name.into(), language.into(), params));
    }

    /// A `DELIVERED` report and a seen report for every message accepted from now on.
    pub fn set_auto_reports(&self, on: bool) {
        self.inner().auto_reports = on;
    }

    pub fn set_latency(&self, latency: Duration) {
        self.inner().latency = latency;
    }

    pub fn set_redelivery(&self, tries: u32, pause: Duration) {
        self.inner().redelivery = (tries.max(1), pause);
    }

    /// The next send is answered HTTP `status` with this `serviceException` (`TOO_MANY_REQUESTS`,
    /// `UNAUTHORIZED`...).
    pub fn fail_next(&self, status: u16, id: &str, text: &str) {
        self.inner().faults.push_back(Fault { status, id: id.into(), text: text.into() });
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner().calls.clone()
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.inner().sent.clone()
    }

    pub fn sent_to(&self, to: &str) -> Vec<Sent> {
        self.inner().sent.iter().filter(|s| s.to == to).cloned().collect()
    }

    pub fn fetched(&self) -> Vec<Fetched> {
        self.inner().fetched.clone()
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner().deliveries.clone()
    }

    pub fn deliveries_of(&self, id: &str) -> Vec<Delivery> {
        self.inner().deliveries.iter().filter(|d| d.ids.iter().any(|i| i == id)).cloned().collect()
    }

    fn next(&self) -> u64 {
        let mut s = self.inner();
        let n = s.next;
        s.next += 1;
        n
    }

    /// Serves `bytes` as an inbound file; its URL (which needs the API key).
    pub fn add_media(&self, bytes: impl Into<Bytes>, mime: &str) -> String {
        let id = format!("m{:08}", self.next());
        self.inner().media.insert(id.clone(), (bytes.into(), mime.into()));
        format!("http://{}/whatsapp/1/senders/{}/media/{id}", self.addr, self.shared.sender)
    }

    // ------------------------------------------------------------------------ webhooks --

    /// An inbound message item from `from` (`message`: `{"type": "TEXT", "text": ...}`) at the
    /// virtual now, which opens their window at the fake; its `messageId`.
    pub fn inbound_item(&self, from: &str, name: &str, message: Value) -> (String, Value) {
        let id = format!("ABGGFlA5Fpa3Ag{:06}", self.next());
        let now = self.now();
        self.inner().last_inbound.insert(from.into(), now);
        let item = json!({"from": from, "to": self.shared.sender, "integrationType": "WHATSAPP", "receivedAt": time(now),
            "messageId": id, "pairedMessageId": null, "callbackData": null, "message": message, "contact": {"name": name},
            "price": {"pricePerMessage": 0, "currency": "EUR"}});
        (id, item)
    }

    /// An inbound message, POSTed in the background (again on every non-200); its `messageId`.
    pub fn inbound(&self, from: &str, name: &str, message: Value) -> String {
        let (id, item) = self.inbound_item(from, name, message);
        let url = self.inner().webhook.clone().unwrap_or_default();
        let fake = self.clone();
        tokio::spawn(async move {
            fake.deliver(&url, json!({"results": [item], "messageCount": 1, "pendingMessageCount": 0})).await
        });
        id
    }

    pub fn text(&self, from: &str, name: &str, text: &str) -> String {
        self.inbound(from, name, json!({"type": "TEXT", "text": text}))
    }

    /// A file message of `kind` (`IMAGE`, `VIDEO`, `AUDIO`, `VOICE`, `DOCUMENT`, `STICKER`) served
    /// as `mime`, with `extra` fields (`{"caption": .., "filename": ..}`).
    pub fn file(&self, from: &str, name: &str, kind: &str, (bytes, mime): (Bytes, &str), extra: Value) -> String {
        let url = self.add_media(bytes, mime);
        let mut message = json!({"type": kind, "url": url});
        if let (Value::Object(message), Value::Object(extra)) = (&mut message, extra) {
            message.extend(extra);
        }
        self.inbound(from, name, message)
    }

    /// A delivery report of `message_id` to the URL given as its `notifyUrl`.
    pub fn report(&self, message_id: &str, group: &str, error: Option<(&str, &str)>) {
        let (url, to) = {
            let s = self.inner();
            let sent = s.sent.iter().rev().find(|m| m.message_id == message_id);
            (
                sent.and_then(|m| m.body["notifyUrl"].as_str().map(str::to_owned))
                    .or(s.webhook.clone())
                    .unwrap_or_default(),
                sent.map(|m| m.to.clone()).unwrap_or_default(),
            )
        };
        let body = self.report_body(message_id, &to, group, error);
        let fake = self.clone();
        tokio::spawn(async move { fake.deliver(&url, body).await });
    }

    fn report_body(&self, message_id: &str, to: &str, group: &str, error: Option<(&str, &str)>) -> Value {
        let (group_id, name) = match group {
            "DELIVERED" => (3, "DELIVERED_TO_HANDSET"),
            "PENDING" => (1, "PENDING_ENROUTE"),
            "UNDELIVERABLE" => (2, "UNDELIVERABLE_NOT_DELIVERED"),
            "EXPIRED" => (4, "EXPIRED_EXPIRED"),
            _ => (5, "REJECTED_DESTINATION"),
        };
        let error = match error {
            Some((name, description)) => json!({"groupId": 1, "groupName": "HANDSET_ERRORS", "id": 7001, "name": name,
                "description": description, "permanent": true}),
            None => {
                json!({"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "description": "No Error", "permanent": false})
            }
        };
        let now = time(self.now());
        json!({"results": [{"bulkId": "", "messageId": message_id, "to": to, "channel": "WHATSAPP", "sentAt": now, "doneAt": now,
            "messageCount": 1, "status": {"groupId": group_id, "groupName": group, "id": 5, "name": name, "description": name},
            "error": error}]})
    }

    /// A seen report of `message_id`, to the configured URL.
    pub fn seen(&self, message_id: &str) {
        let url = self.inner().webhook.clone().unwrap_or_default();
        let body = self.seen_body(message_id);
        let fake = self.clone();
        tokio::spawn(async move { fake.deliver(&url, body).await });
    }

    fn seen_body(&self, message_id: &str) -> Value {
        let now = time(self.now());
        json!({"results": [{"messageId": message_id, "from": self.shared.sender, "to": "", "sentAt": now, "seenAt": now}]})
    }

    /// POSTs `body` to `url` until the hub answers 200 or the tries run out; the last try.
    pub async fn deliver(&self, url: &str, body: Value) -> Delivery {
        let (tries, pause) = self.inner().redelivery;
        let mut last = None;
        for attempt in 0..tries {
            let delivery = self.post(url, &body, true).await;
            let ok = delivery.status == 200;
            last = Some(delivery);
            if ok {
                break;
            }
            tokio::time::sleep(pause * (attempt + 1).min(20)).await;
        }
        last.expect("at least one try")
    }

    /// POSTs `body` once to `url` (with the configured `Authorization` when `authorized`) and
    /// records the answer.
    pub async fn post(&self, url: &str, body: &Value, authorized: bool) -> Delivery {
        let raw = serde_json::to_vec(body).expect("JSON");
        let (status, answer) = self.post_raw(url, &raw, authorized).await;
        let ids = body["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["messageId"].as_str().map(str::to_owned))
            .collect();
        let delivery = Delivery { ids, status, answer, at: self.elapsed() };
        self.inner().deliveries.push(delivery.clone());
        delivery
    }

    /// POSTs `raw` bytes to `url` as they are (not recorded).
    pub async fn post_raw(&self, url: &str, raw: &[u8], authorized: bool) -> (u16, String) {
        if url.is_empty() {
            return (0, "no webhook is set".into());
        }
        let mut request = self.shared.http.post(url).header(header::CONTENT_TYPE, "application/json");
        if authorized && let Some(auth) = self.inner().authorization.clone() {
            request = request.header(header::AUTHORIZATION, auth);
        }
        match request.body(raw.to_vec()).send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    /// The configured webhook URL (inbound messages and seen reports).
    pub fn webhook(&self) -> Option<String> {
        self.inner().webhook.clone()
    }

    // ------------------------------------------------------------------------- the API --

    fn authorized(&self, headers: &HeaderMap) -> bool {
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
            == Some(&format!("App {}", self.shared.api_key))
    }

    /// Validates one message of `endpoint`; the field and reason of the first problem.
    fn validate(&self, endpoint: &str, m: &Value) -> Result<(), (String, String)> {
        let need = |ok: bool, field: &str, why: &str| if ok { Ok(()) } else { Err((field.to_owned(), why.to_owned())) };
        need((1..=24).contains(&chars(&m["from"])), "from", "size must be between 1 and 24")?;
        need((1..=24).contains(&chars(&m["to"])), "to", "size must be between 1 and 24")?;
        need(chars(&m["messageId"]) <= 50, "messageId", "size must be between 0 and 50")?;
        need(m["from"] == self.shared.sender.as_str(), "from", "is not a sender of this account")?;
        let c = &m["content"];
        match endpoint {
            "text" => need((1..=4096).contains(&chars(&c["text"])), "content.text", "size must be between 1 and 4096"),
            "image" | "document" | "video" | "audio" | "sticker" => {
                need(chars(&c["mediaUrl"]) > 0, "content.mediaUrl", "must not be blank")?;
                need(chars(&c["caption"]) <= 3000, "content.caption", "size must be between 0 and 3000")?;
                need(chars(&c["filename"]) <= 240, "content.filename", "size must be between 0 and 240")
            }
            "location" => {
                need(c["latitude"].is_number() && c["longitude"].is_number(), "content.latitude", "must not be null")
            }
            "contact" => {
                need(c["contacts"].as_array().is_some_and(|a| !a.is_empty()), "content.contacts", "must not be empty")
            }
            "interactive/buttons" => {
                need(
                    (1..=1024).contains(&chars(&c["body"]["text"])),
                    "content.body.text",
                    "size must be between 1 and 1024",
                )?;
                let buttons = c["action"]["buttons"].as_array().cloned().unwrap_or_default();
                need((1..=3).contains(&buttons.len()), "content.action.buttons", "size must be between 1 and 3")?;
                need(
                    buttons.iter().all(|b| {
                        b["type"] == "REPLY"
                            && (1..=20).contains(&chars(&b["title"]))
                            && (1..=256).contains(&chars(&b["id"]))
                    }),
                    "content.action.buttons[].title",
                    "size must be between 1 and 20",
                )
            }
            "interactive/list" => {
                need(
                    (1..=1024).contains(&chars(&c["body"]["text"])),
                    "content.body.text",
                    "size must be between 1 and 1024",
                )?;
                let rows: Vec<Value> = c["action"]["sections"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|s| s["rows"].as_array().cloned().unwrap_or_default())
                    .collect();
                need(
                    (1..=10).contains(&rows.len()),
                    "content.action.sections[].rows",
                    "size must be between 1 and 10",
                )?;
                need(
                    rows.iter().all(|r| (1..=24).contains(&chars(&r["title"])) && (1..=200).contains(&chars(&r["id"]))),
                    "content.action.sections[].rows[].title",
                    "size must be between 1 and 24",
                )
            }
            "template" => {
                need(chars(&c["templateName"]) > 0, "content.templateName", "must not be blank")?;
                need(chars(&c["language"]) > 0, "content.language", "must not be blank")
            }
            other => Err(("endpoint".into(), format!("{other} is not an endpoint of the fake"))),
        }
    }

    /// Performs one accepted message: the file fetched, the window, the reports that follow.
    async fn accept(&self, endpoint: &str, m: &Value) -> Value {
        let message_id = m["messageId"]
            .as_str()
            .filter(|i| !i.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("ib-{:010}", self.next()));
        let to = m["to"].as_str().unwrap_or_default().to_owned();
        let mut rejected: Option<(&str, String)> = None;
        if let Some(url) = m["content"]["mediaUrl"].as_str() {
            let (status, bytes) = match self.shared.http.get(url).send().await {
                Ok(r) => (r.status().as_u16(), r.bytes().await.unwrap_or_default()),
                Err(_) => (0, Bytes::new()),
            };
            self.inner().fetched.push(Fetched { url: url.into(), status, bytes });
            if status != 200 {
                rejected = Some(("EC_MEDIA_DOWNLOAD_FAILED", format!("The media URL answered HTTP {status}")));
            }
        }
        if endpoint == "template" {
            let c = &m["content"];
            let given = c["templateData"]["body"]["placeholders"].as_array().map_or(0, Vec::len);
            let known = self
                .inner()
                .templates
                .iter()
                .find(|(n, l, _)| c["templateName"] == n.as_str() && c["language"] == l.as_str())
                .map(|t| t.2);
            match known {
                None => {
                    rejected = Some(("EC_TEMPLATE_NOT_FOUND", "The template does not exist in this language".into()))
                }
                Some(n) if n != given => {
                    rejected =
                        Some(("EC_TEMPLATE_PARAMETERS", format!("The template takes {n} placeholders, {given} given")))
                }
                Some(_) => {}
            }
        } else {
            let s = self.inner();
            let now = chrono::Utc::now() + s.clock;
            if s.last_inbound.get(&to).is_none_or(|at| (now - *at).num_seconds() > WINDOW_S) {
                rejected = Some((
                    "EC_OUTSIDE_SERVICE_WINDOW",
                    "More than 24 hours have passed since the customer last replied; only a template can be sent"
                        .into(),
                ));
            }
        }
        let sent = Sent {
            message_id: message_id.clone(),
            endpoint: endpoint.into(),
            to: to.clone(),
            body: m.clone(),
            at: self.elapsed(),
        };
        self.inner().sent.push(sent);
        let notify =
            m["notifyUrl"].as_str().map(str::to_owned).or_else(|| self.inner().webhook.clone()).unwrap_or_default();
        let fake = self.clone();
        let auto = self.inner().auto_reports;
        let seen_url = self.inner().webhook.clone().unwrap_or_default();
        match rejected {
            Some((name, description)) => {
                let body = self.report_body(&message_id, &to, "REJECTED", Some((name, &description)));
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    fake.deliver(&notify, body).await;
                });
            }
            None if auto => {
                let delivered = self.report_body(&message_id, &to, "DELIVERED", None);
                let seen = self.seen_body(&message_id);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    fake.deliver(&notify, delivered).await;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    fake.deliver(&seen_url, seen).await;
                });
            }
            None => {}
        }
        json!({"to": to, "messageCount": 1, "messageId": message_id,
            "status": {"groupId": 1, "groupName": "PENDING", "id": 7, "name": "PENDING_ENROUTE", "description": "Message sent to next instance"}})
    }

    async fn api(&self, endpoint: &str, headers: &HeaderMap, raw: &[u8]) -> Response {
        let at = self.elapsed();
        let latency = self.inner().latency;
        let body: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
        let (status, answer) = if !self.authorized(headers) {
            exception(401, "UNAUTHORIZED", "Invalid login details", None)
        } else if let Some(f) = { self.inner().faults.pop_front() } {
            exception(f.status, &f.id, &f.text, None)
        } else if endpoint == "template" {
            let messages = body["messages"].as_array().cloned().unwrap_or_default();
            match messages.iter().find_map(|m| self.validate("template", m).err()) {
                Some((field, why)) => bad(&format!("messages[].{field}"), &why),
                None if messages.is_empty() => bad("messages", "must not be empty"),
                None => {
                    let mut answers = Vec::new();
                    for m in &messages {
                        answers.push(self.accept("template", m).await);
                    }
                    (200, json!({"messages": answers, "bulkId": format!("bulk-{}", self.next())}))
                }
            }
        } else {
            match self.validate(endpoint, &body) {
                Err((field, why)) => bad(&field, &why),
                Ok(()) => (200, self.accept(endpoint, &body).await),
            }
        };
        let headers_map =
            headers.iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect();
        self.inner().calls.push(Call {
            endpoint: endpoint.into(),
            at,
            headers: headers_map,
            body,
            status,
            answer: answer.clone(),
        });
        tokio::time::sleep(latency).await;
        (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), axum::Json(answer)).into_response()
    }
}

async fn message(
    State(fake): State<FakeInfobip>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    fake.api(&kind, &headers, &raw).await
}

async fn interactive(
    State(fake): State<FakeInfobip>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    fake.api(&format!("interactive/{kind}"), &headers, &raw).await
}

async fn read(
    State(fake): State<FakeInfobip>,
    Path((_sender, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !fake.authorized(&headers) {
        let (s, v) = exception(401, "UNAUTHORIZED", "Invalid login details", None);
        return (StatusCode::from_u16(s).unwrap_or(StatusCode::UNAUTHORIZED), axum::Json(v)).into_response();
    }
    let at = fake.elapsed();
    fake.inner().calls.push(Call {
        endpoint: "read".into(),
        at,
        headers: HashMap::new(),
        body: json!({"messageId": id}),
        status: 204,
        answer: Value::Null,
    });
    StatusCode::NO_CONTENT.into_response()
}

async fn media(
    State(fake): State<FakeInfobip>,
    Path((_sender, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !fake.authorized(&headers) {
        let (s, v) = exception(401, "UNAUTHORIZED", "Invalid login details", None);
        return (StatusCode::from_u16(s).unwrap_or(StatusCode::UNAUTHORIZED), axum::Json(v)).into_response();
    }
    match fake.inner().media.get(&id).cloned() {
        Some((bytes, mime)) => ([(header::CONTENT_TYPE, mime)], bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
