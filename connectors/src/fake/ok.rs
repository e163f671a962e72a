//! A fake OK Graph API for tests, speaking the wire format of `docs/platforms.md#ok` (§6 and the
//! fake's list in §6.7). Where OK's documents leave something open, the fake does what
//! `docs/connectors.md#ok` says the connector expects, and makes it configurable.
//!
//! - Every `/graph/...` call needs `access_token` (a wrong or missing one: error 102,
//!   `PARAM_SESSION_EXPIRED`); every POST needs exactly `Content-Type:
//!   application/json;charset=utf-8` (else error 100). Errors are OK's `{"error_code",
//!   "error_msg", "error_data"}` with HTTP 200 and an `invocation-error` header.
//! - `POST /graph/me/subscribe` (`{"url"}`, or `{"types", "longPolling": true}`),
//!   `POST /graph/me/unsubscribe`, `GET /graph/me/subscriptions` (`{"subscriptions": [{"time",
//!   "url"}]}`); a subscription can be dropped on demand ([`FakeOk::drop_subscriptions`]), as OK
//!   does with a webhook that has not answered for 8 hours.
//! - `POST /graph/me/messages/<chat_id>` and `/graph/<chat_id>/messages`: validated (some content,
//!   at most 5 attachments, at most one image by URL, tokens that were uploaded and, for videos,
//!   processed, keyboards, the customer's permission: a configurable error, by default 10
//!   `PERMISSION_DENIED`); an image by URL is fetched from the URL, as OK does. The answer:
//!   `{"success": true, "message_id": "mid:..."}`. `POST /graph/me/messages` with
//!   `recipient.user_ids`: `{"success": [..], "chat_ids": [..]}`.
//! - `POST /graph/<chat_id>/answer?callbackId=`: a press's answer (a known press, within a
//!   minute).
//! - `GET /graph/me/fileUploadUrl?type=IMAGE|VIDEO|FILE|AUDIO` → `{"url", "token", "file_id"}`;
//!   the upload endpoint `POST /upload/<n>` (multipart, or raw bytes) records the file
//!   ([`FakeOk::uploads`]); an image's token comes in its answer (`{"photos": {<id>: {"token"}}}`),
//!   a video's with the URL; a video is "processing" for a configurable time
//!   ([`FakeOk::set_processing`]: a send with it before that is error 2, `SERVICE`).
//! - `GET /graph/me/chats`, `GET /graph/me/chat?chat_id=`.
//! - `GET /graph/me/updates?marker&count&timeout` for long polling (after a `longPolling`
//!   subscription), held up to `timeout`; how often each update was handed out is counted
//!   ([`FakeOk::handed_out`]).
//! - The webhook sender: each update is POSTed to the subscribed URL, again while the hub answers
//!   anything but 200 or takes longer than 5 s (both configurable), from `127.0.0.1` with a
//!   configurable `X-Forwarded-For` ([`FakeOk::set_forwarded_for`]); a list of backends can
//!   stand in for a balancer in front of several connectors ([`FakeOk::set_backends`]). Every
//!   try is recorded ([`FakeOk::deliveries`]).
//! - Faults on demand ([`FakeOk::fail_next`]: any error code; [`FakeOk::lose_answer_next`]: done,
//!   the answer lost), latency; `GET /media/<name>` serves inbound files.
//! - Every API request is recorded ([`FakeOk::calls`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// Milliseconds since the epoch the fake's clock starts at (2026-01-02).
pub const EPOCH_MS: i64 = 1_767_312_000_000;
/// The first long-poll marker.
pub const FIRST_MARKER: u64 = 1_000;
/// Updates in one long-poll answer at most.
const BATCH: usize = 100;
/// The `Content-Type` OK requires on POSTs.
pub const JSON_UTF8: &str = "application/json;charset=utf-8";

/// One recorded API request.
#[derive(Debug, Clone)]
pub struct Call {
    /// `subscribe`, `messages`, `answer`, `fileUploadUrl`, `updates`...
    pub name: String,
    pub method: String,
    pub path: String,
    /// When it arrived, since the fake started.
    pub at: Duration,
    /// The query parameters, the token left out.
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub body: Value,
    /// The error code answered, if any.
    pub error: Option<i64>,
    pub answer: Value,
}

impl Call {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }
}

/// An OK user of the fake.
#[derive(Debug, Clone)]
pub struct OkUser {
    /// `user:<digits>`.
    pub id: String,
    pub name: String,
}

impl OkUser {
    pub fn new(id: u64, name: &str) -> Self {
        OkUser { id: format!("user:{id}"), name: name.into() }
    }
}

/// A message the group sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub mid: String,
    pub chat_id: String,
    /// The request's body.
    pub body: Value,
    pub text: String,
    /// When the request arrived, since the fake started.
    pub at: Duration,
}

impl Sent {
    pub fn attachments(&self) -> Vec<Value> {
        let m = &self.body["message"];
        match (m.get("attachments"), m.get("attachment")) {
            (Some(Value::Array(list)), _) => list.clone(),
            (_, Some(one)) => vec![one.clone()],
            _ => Vec::new(),
        }
    }

    /// The `INLINE_KEYBOARD`'s rows of buttons, if any.
    pub fn keyboard(&self) -> Option<Value> {
        self.attachments()
            .into_iter()
            .find(|a| a["type"] == "INLINE_KEYBOARD")
            .map(|a| a["payload"]["keyboard"]["buttons"].clone())
    }

    pub fn reply_to(&self) -> Option<&str> {
        self.body["message"]["reply_to"].as_str()
    }
}

/// A file posted to the upload endpoint.
#[derive(Debug, Clone)]
pub struct Upload {
    /// `IMAGE`, `VIDEO`, `FILE` or `AUDIO`, as `fileUploadUrl` was asked.
    pub kind: String,
    pub file_name: String,
    pub content_type: String,
    pub bytes: Bytes,
    /// The attachment token it gave.
    pub token: String,
}

/// An image OK fetched by URL for a send.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub url: String,
    pub status: u16,
    pub content_type: String,
    pub bytes: Bytes,
}

/// One try of a webhook delivery and what the hub answered.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The update's key (`mid`, `callbackId`, or its number).
    pub key: String,
    pub url: String,
    /// HTTP status (0: unreachable or slower than the timeout).
    pub status: u16,
    /// How long the hub took.
    pub took: Duration,
    /// 0 on the first try.
    pub retry: u32,
    pub at: Duration,
}

/// A callback answer as the fake received it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub callback_id: String,
    pub chat_id: String,
    pub body: Value,
    /// Whether the fake accepted it (a known press of that chat, within a minute).
    pub accepted: bool,
}

struct Fault {
    name: String,
    code: i64,
    message: String,
}

struct Event {
    marker: u64,
    key: String,
    raw: String,
    handed_out: u32,
}

struct Token {
    kind: String,
    /// When its bytes arrived (`None`: not uploaded yet).
    uploaded: Option<Duration>,
}

struct PendingUpload {
    kind: String,
    token: String,
}

struct State_ {
    started: Instant,
    calls: Vec<Call>,
    users: HashMap<String, OkUser>,
    /// chat id -> user id, and back.
    chats: BTreeMap<String, String>,
    chat_of: HashMap<String, String>,
    /// Whether a user lets the group write (they wrote or allowed).
    allowed: HashMap<String, bool>,
    not_allowed_error: (i64, String),
    next: u64,
    sent: Vec<Sent>,
    events: Vec<Event>,
    /// The highest marker a long poll passed (what OK considers read).
    acknowledged: u64,
    /// Subscribed webhook URLs, and when.
    webhooks: Vec<(String, i64)>,
    long_polling: bool,
    subscribe_calls: u32,
    deliveries: Vec<Delivery>,
    webhook_tries: u32,
    webhook_pause: Duration,
    webhook_timeout: Duration,
    forwarded_for: Option<String>,
    backends: Vec<SocketAddr>,
    faults: VecDeque<Fault>,
    lose_answer: VecDeque<String>,
    latency: Duration,
    uploads_pending: HashMap<u64, PendingUpload>,
    uploads: Vec<Upload>,
    tokens: HashMap<String, Token>,
    processing: Duration,
    fetched: Vec<Fetched>,
    media: HashMap<String, (Bytes, String)>,
    media_latency: Duration,
    media_failures: u32,
    /// Presses: callback id -> (chat, when).
    presses: HashMap<String, (String, Duration)>,
    answers: Vec<Answer>,
}

struct Shared {
    token: String,
    state: Mutex<State_>,
    /// Rung when an update is queued.
    updates: Notify,
    http: reqwest::Client,
}

/// A running fake OK API. Dropping it does not stop the server (tests end with the runtime).
#[derive(Clone)]
pub struct FakeOk {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

type Outcome = Result<Value, (i64, String)>;

fn refuse<T>(code: i64, message: impl Into<String>) -> Result<T, (i64, String)> {
    Err((code, message.into()))
}

/// The `Content-Type` without spaces, lower case.
fn normalized(content_type: &str) -> String {
    content_type.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase()
}

impl FakeOk {
    /// Starts the fake on `127.0.0.1:0` for a group with token `token`.
    pub async fn start(token: &str) -> Self {
        use axum::serve::ListenerExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake");
        let addr = listener.local_addr().expect("bound address");
        let fake = FakeOk {
            addr,
            shared: Arc::new(Shared {
                token: token.to_owned(),
                state: Mutex::new(State_ {
                    started: Instant::now(),
                    calls: Vec::new(),
                    users: HashMap::new(),
                    chats: BTreeMap::new(),
                    chat_of: HashMap::new(),
                    allowed: HashMap::new(),
                    not_allowed_error: (10, "PERMISSION_DENIED : User does not allow messages from the group".into()),
                    next: 1,
                    sent: Vec::new(),
                    events: Vec::new(),
                    acknowledged: FIRST_MARKER,
                    webhooks: Vec::new(),
                    long_polling: false,
                    subscribe_calls: 0,
                    deliveries: Vec::new(),
                    webhook_tries: 200,
                    webhook_pause: Duration::from_millis(100),
                    webhook_timeout: Duration::from_secs(5),
                    forwarded_for: None,
                    backends: Vec::new(),
                    faults: VecDeque::new(),
                    lose_answer: VecDeque::new(),
                    latency: Duration::ZERO,
                    uploads_pending: HashMap::new(),
                    uploads: Vec::new(),
                    tokens: HashMap::new(),
                    processing: Duration::ZERO,
                    fetched: Vec::new(),
                    media: HashMap::new(),
                    media_latency: Duration::ZERO,
                    media_failures: 0,
                    presses: HashMap::new(),
                    answers: Vec::new(),
                }),
                updates: Notify::new(),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .expect("a plain HTTP client builds"),
            }),
        };
        let router = Router::new()
            .route("/graph/{*path}", any(api))
            .route("/upload/{n}", post(upload))
            .route("/media/{name}", get(media))
            .with_state(fake.clone());
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        fake
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State_> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The base URL to give the connector (`accounts.settings.api_url`).
    pub fn api_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Time since the fake started: the clock of [`Call::at`] and [`Sent::at`].
    pub fn elapsed(&self) -> Duration {
        self.state().started.elapsed()
    }

    fn now_ms(&self) -> i64 {
        EPOCH_MS + self.elapsed().as_millis() as i64
    }

    // ------------------------------------------------------------------- what happened --

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Requests of one kind (`subscribe`, `messages`, `updates`...), in arrival order.
    pub fn calls_of(&self, name: &str) -> Vec<Call> {
        self.state().calls.iter().filter(|c| c.name == name).cloned().collect()
    }

    /// Every message the group sent, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.state().sent.clone()
    }

    pub fn sent_to(&self, chat_id: &str) -> Vec<Sent> {
        self.state().sent.iter().filter(|s| s.chat_id == chat_id).cloned().collect()
    }

    pub fn uploads(&self) -> Vec<Upload> {
        self.state().uploads.clone()
    }

    /// Images OK fetched by URL for sends.
    pub fn fetched(&self) -> Vec<Fetched> {
        self.state().fetched.clone()
    }

    pub fn answers(&self) -> Vec<Answer> {
        self.state().answers.clone()
    }

    /// Every webhook try so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state().deliveries.clone()
    }

    pub fn deliveries_of(&self, key: &str) -> Vec<Delivery> {
        self.state().deliveries.iter().filter(|d| d.key == key).cloned().collect()
    }

    /// The webhook URLs subscribed now.
    pub fn webhooks(&self) -> Vec<String> {
        self.state().webhooks.iter().map(|(u, _)| u.clone()).collect()
    }

    pub fn long_polling(&self) -> bool {
        self.state().long_polling
    }

    /// How many times each update was handed out by the long poll, by key.
    pub fn handed_out(&self) -> HashMap<String, u32> {
        self.state().events.iter().map(|e| (e.key.clone(), e.handed_out)).collect()
    }

    /// The marker after the last update.
    pub fn marker(&self) -> u64 {
        FIRST_MARKER + self.state().events.len() as u64
    }

    /// The chat of a user (created when they first wrote or were allowed).
    pub fn chat_of(&self, user: &OkUser) -> Option<String> {
        self.state().chat_of.get(&user.id).cloned()
    }

    // --------------------------------------------------------------------- behaviour --

    /// The next request of `name` (`messages`, `fileUploadUrl`, `answer`, any for `"*"`) is
    /// answered with OK error `code`.
    pub fn fail_next(&self, name: &str, code: i64, message: &str) {
        self.state().faults.push_back(Fault { name: name.into(), code, message: message.into() });
    }

    /// The next request of `name` that OK carries out has its answer lost (HTTP 502).
    pub fn lose_answer_next(&self, name: &str) {
        self.state().lose_answer.push_back(name.into());
    }

    /// Every API answer waits this long first.
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    /// The error a send to a customer who has not allowed the group's messages gets.
    pub fn set_not_allowed_error(&self, code: i64, message: &str) {
        self.state().not_allowed_error = (code, message.into());
    }

    /// Whether the group may write to `user`, changed without an update.
    pub fn set_allowed(&self, user: &OkUser, allowed: bool) {
        let mut s = self.state();
        s.users.insert(user.id.clone(), user.clone());
        s.allowed.insert(user.id.clone(), allowed);
    }

    /// How long an uploaded video is processed before a send may carry it.
    pub fn set_processing(&self, processing: Duration) {
        self.state().processing = processing;
    }

    /// Webhook tries per update, the n-th retry after n × `pause` (at most 1 s), and how long the
    /// fake waits for the hub's answer before it counts as none (OK: 5 s).
    pub fn set_webhook_retries(&self, tries: u32, pause: Duration, timeout: Duration) {
        let mut s = self.state();
        s.webhook_tries = tries.max(1);
        s.webhook_pause = pause;
        s.webhook_timeout = timeout;
    }

    /// The `X-Forwarded-For` every webhook carries (`None`: no header).
    pub fn set_forwarded_for(&self, value: Option<&str>) {
        self.state().forwarded_for = value.map(str::to_owned);
    }

    /// Deliver webhooks to these addresses in turn (the subscribed URL's path and query on
    /// each), passing a refusal or no answer on to the next: a balancer in front of several
    /// connectors. Empty: the subscribed URL itself.
    pub fn set_backends(&self, backends: Vec<SocketAddr>) {
        self.state().backends = backends;
    }

    /// OK forgets every subscription (as it does with a webhook silent for 8 hours).
    pub fn drop_subscriptions(&self) {
        let mut s = self.state();
        s.webhooks.clear();
        s.long_polling = false;
    }

    /// Serves `bytes` at a media URL (`/media/<n>.<ext>`) and returns the URL.
    pub fn add_media(&self, bytes: impl Into<Bytes>, ext: &str) -> String {
        let mut s = self.state();
        let name = format!("{}.{ext}", s.next);
        s.next += 1;
        let mime = match ext {
            "jpg" => "image/jpeg",
            "png" => "image/png",
            "mp4" => "video/mp4",
            _ => "application/octet-stream",
        };
        s.media.insert(name.clone(), (bytes.into(), mime.into()));
        format!("http://{}/media/{name}", self.addr)
    }

    /// The next `times` media GETs answer 503.
    pub fn fail_media(&self, times: u32) {
        self.state().media_failures = times;
    }

    /// Every media GET waits this long before its bytes.
    pub fn set_media_latency(&self, latency: Duration) {
        self.state().media_latency = latency;
    }

    // ------------------------------------------------------------------------- updates --

    fn chat(&self, user: &OkUser) -> String {
        let mut s = self.state();
        s.users.insert(user.id.clone(), user.clone());
        if let Some(chat) = s.chat_of.get(&user.id) {
            return chat.clone();
        }
        let digits: String = user.id.chars().filter(char::is_ascii_digit).collect();
        let chat = format!("chat:C{:x}", digits.parse::<u64>().unwrap_or(0).wrapping_mul(0x9e37));
        s.chats.insert(chat.clone(), user.id.clone());
        s.chat_of.insert(user.id.clone(), chat.clone());
        chat
    }

    /// Queues an update: for the long poll, and posted to the subscribed webhook (with retries).
    pub fn push(&self, update: Value) {
        let raw = serde_json::to_string(&update).expect("JSON");
        self.push_raw(raw);
    }

    /// Queues `raw` exactly as given (it must be JSON for the long poll: an update the hub
    /// cannot read, say).
    pub fn push_raw(&self, raw: String) {
        let parsed = serde_json::from_str::<Value>(&raw).ok();
        let key = parsed
            .as_ref()
            .and_then(|v| v["callbackId"].as_str().or(v["message"]["mid"].as_str()).map(str::to_owned))
            .unwrap_or_else(|| format!("update-{}", self.state().events.len() + 1));
        let targets: Vec<String> = {
            let mut s = self.state();
            let marker = FIRST_MARKER + s.events.len() as u64;
            s.events.push(Event { marker, key: key.clone(), raw: raw.clone(), handed_out: 0 });
            s.webhooks.iter().map(|(url, _)| url.clone()).collect()
        };
        self.shared.updates.notify_waiters();
        // OK posts every event to every subscribed webhook
        for url in targets {
            let fake = self.clone();
            let (key, raw) = (key.clone(), raw.clone());
            tokio::spawn(async move { fake.deliver(&key, &url, raw.into_bytes()).await });
        }
    }

    /// POSTs one update until the hub answers 200 within the timeout, or the tries run out;
    /// returns the last try.
    pub async fn deliver(&self, key: &str, url: &str, body: Vec<u8>) -> Delivery {
        let (tries, pause) = {
            let s = self.state();
            (s.webhook_tries, s.webhook_pause)
        };
        let mut last = None;
        for retry in 0..tries {
            let attempt = self.post_webhook(key, url, body.clone(), retry).await;
            let ok = attempt.status == 200;
            last = Some(attempt);
            if ok {
                break;
            }
            tokio::time::sleep((pause * (retry + 1)).min(Duration::from_secs(1))).await;
        }
        last.expect("at least one try")
    }

    /// One POST of `body` to `url` (through the backends, if set); recorded.
    pub async fn post_webhook(&self, key: &str, url: &str, body: Vec<u8>, retry: u32) -> Delivery {
        let (timeout, forwarded, backends) = {
            let s = self.state();
            (s.webhook_timeout, s.forwarded_for.clone(), s.backends.clone())
        };
        let targets: Vec<String> = match url::Url::parse(url) {
            Ok(parsed) if !backends.is_empty() => backends
                .iter()
                .map(|b| {
                    let mut u = parsed.clone();
                    let _ = u.set_ip_host(b.ip());
                    let _ = u.set_port(Some(b.port()));
                    let _ = u.set_scheme("http");
                    u.to_string()
                })
                .collect(),
            _ => vec![url.to_owned()],
        };
        let started = Instant::now();
        let mut status = 0;
        let mut used = url.to_owned();
        for target in targets {
            let mut request = self
                .shared
                .http
                .post(&target)
                .timeout(timeout)
                .header(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
            if let Some(f) = &forwarded {
                request = request.header("X-Forwarded-For", f.as_str());
            }
            status = match request.body(body.clone()).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let _ = response.bytes().await;
                    status
                }
                Err(_) => 0,
            };
            used = target;
            if status == 200 {
                break;
            }
        }
        let attempt =
            Delivery { key: key.to_owned(), url: used, status, took: started.elapsed(), retry, at: self.elapsed() };
        self.state().deliveries.push(attempt.clone());
        attempt
    }

    fn next_mid(&self, chat: &str) -> (String, u64) {
        let mut s = self.state();
        let n = s.next;
        s.next += 1;
        (format!("mid:{}.{:x}", chat.trim_start_matches("chat:"), 0x15ce_a67d_0000_u64 + n), 98_211_023_614_189_000 + n)
    }

    /// A `MESSAGE_CREATED` from `user`, `fields` merged into the message object (`text`,
    /// `attachments`, `reply_to`...); returns its `mid`. Writing lets the group answer them.
    pub fn message(&self, user: &OkUser, fields: Value) -> String {
        let chat = self.chat(user);
        self.state().allowed.insert(user.id.clone(), true);
        let (mid, seq) = self.next_mid(&chat);
        let mut message = json!({"seq": seq, "mid": mid});
        if let (Some(m), Value::Object(fields)) = (message.as_object_mut(), fields) {
            m.extend(fields);
        }
        self.push(json!({"webhookType": "MESSAGE_CREATED", "sender": {"user_id": user.id, "name": user.name},
            "recipient": {"chat_id": chat}, "message": message, "timestamp": self.now_ms()}));
        mid
    }

    pub fn text(&self, user: &OkUser, text: &str) -> String {
        self.message(user, json!({"text": text}))
    }

    /// An image (served by the fake), with a caption.
    pub fn image(&self, user: &OkUser, bytes: impl Into<Bytes>, caption: Option<&str>) -> String {
        let url = self.add_media(bytes, "jpg");
        let id = 884_100 + self.state().next;
        let mut fields = json!({"attachments": [{"type": "IMAGE", "payload": {"url": url, "id": id}}]});
        if let Some(c) = caption {
            fields["text"] = json!(c);
        }
        self.message(user, fields)
    }

    pub fn video(&self, user: &OkUser, bytes: impl Into<Bytes>) -> String {
        let url = self.add_media(bytes, "mp4");
        let id = 7_700_000 + self.state().next;
        self.message(user, json!({"attachments": [{"type": "VIDEO", "payload": {"url": url, "id": id}}]}))
    }

    /// An attachment of a kind the seed refuses on OK (`STICKER`, `FILE`, `AUDIO`, `LOCATION`).
    pub fn attachment(&self, user: &OkUser, kind: &str, payload: Value) -> String {
        self.message(user, json!({"attachments": [{"type": kind, "payload": payload}]}))
    }

    /// The answer to a REQUEST_CONTACT button: the customer's own contact.
    pub fn share_phone(&self, user: &OkUser, phone: &str) -> String {
        self.message(
            user,
            json!({"attachments": [{"type": "CONTACT", "payload": {"name": user.name, "phone": phone}}]}),
        )
    }

    /// `user` presses a CALLBACK button with `payload` under the group's message `mid`; returns
    /// the press's `callbackId` (answerable for a minute).
    pub fn press(&self, user: &OkUser, payload: &str, mid: Option<&str>) -> String {
        let chat = self.chat(user);
        let callback_id = {
            let mut s = self.state();
            let n = s.next;
            s.next += 1;
            let id = format!("cb.{:x}", 0x3159_dc19_u64 + n);
            let at = s.started.elapsed();
            s.presses.insert(id.clone(), (chat.clone(), at));
            id
        };
        let mut update = json!({"webhookType": "MESSAGE_CALLBACK", "sender": {"user_id": user.id, "name": user.name},
            "recipient": {"chat_id": chat}, "callbackId": callback_id, "payload": payload, "timestamp": self.now_ms()});
        if let Some(mid) = mid {
            update["message"] = json!({"mid": mid});
        }
        self.push(update);
        callback_id
    }

    /// `user` opens the chat with the group (a `CHAT_SYSTEM` update); it lets the group write.
    pub fn chat_started(&self, user: &OkUser) {
        let chat = self.chat(user);
        self.state().allowed.insert(user.id.clone(), true);
        self.push(json!({"webhookType": "CHAT_SYSTEM", "type": "CHAT_STARTED", "sender": {"user_id": user.id, "name": user.name},
            "recipient": {"chat_id": chat}, "timestamp": self.now_ms()}));
    }

    // ------------------------------------------------------------------------ the API --

    fn record(&self, call: Call) {
        self.state().calls.push(call);
    }

    async fn dispatch(
        &self,
        name: &str,
        method: &Method,
        rest: &[&str],
        query: &BTreeMap<String, String>,
        body: &Value,
        at: Duration,
    ) -> Outcome {
        {
            let mut s = self.state();
            if let Some(i) = s.faults.iter().position(|f| f.name == name || f.name == "*") {
                let fault = s.faults.remove(i).expect("found");
                return Err((fault.code, fault.message));
            }
        }
        match (method.as_str(), name) {
            ("POST", "subscribe") => {
                let mut s = self.state();
                s.subscribe_calls += 1;
                if body.get("longPolling").and_then(Value::as_bool) == Some(true) {
                    s.long_polling = true;
                    return Ok(json!({"success": true}));
                }
                let Some(url) = body.get("url").and_then(Value::as_str).filter(|u| u.starts_with("http")) else {
                    return refuse(100, "PARAM : url is required (http or https)");
                };
                let time = EPOCH_MS + at.as_millis() as i64;
                if !s.webhooks.iter().any(|(u, _)| u == url) {
                    s.webhooks.push((url.to_owned(), time));
                }
                Ok(json!({"success": true}))
            }
            ("POST", "unsubscribe") => {
                let url = body.get("url").and_then(Value::as_str).unwrap_or_default().to_owned();
                let mut s = self.state();
                let before = s.webhooks.len();
                s.webhooks.retain(|(u, _)| *u != url);
                Ok(json!({"success": s.webhooks.len() < before}))
            }
            ("GET", "subscriptions") => {
                let s = self.state();
                let list: Vec<Value> = s.webhooks.iter().map(|(u, t)| json!({"time": t, "url": u})).collect();
                Ok(json!({"subscriptions": list}))
            }
            ("POST", "messages") => self.send(rest, body, at).await,
            ("POST", "answer") => {
                let chat = rest.first().copied().unwrap_or_default().to_owned();
                let callback_id = query.get("callbackId").cloned().unwrap_or_default();
                let mut s = self.state();
                let accepted = matches!(s.presses.get(&callback_id), Some((c, when))
                    if *c == chat && at.saturating_sub(*when) < Duration::from_secs(60));
                let has_content = body.get("message").is_some()
                    || body.get("notification").is_some()
                    || body.as_object().is_some_and(|o| o.is_empty());
                s.answers.push(Answer {
                    callback_id,
                    chat_id: chat,
                    body: body.clone(),
                    accepted: accepted && has_content,
                });
                if accepted && has_content {
                    Ok(json!({"success": true}))
                } else {
                    refuse(100, "PARAM : callbackId is invalid or expired")
                }
            }
            ("GET", "fileUploadUrl") => {
                let kind = query.get("type").map(String::as_str).unwrap_or("FILE").to_ascii_uppercase();
                if !matches!(kind.as_str(), "IMAGE" | "VIDEO" | "FILE" | "AUDIO") {
                    return refuse(100, "PARAM : type must be FILE, IMAGE, VIDEO or AUDIO");
                }
                let mut s = self.state();
                let n = s.next;
                s.next += 1;
                let token = format!("{}-tok-{n:06}", kind.to_ascii_lowercase());
                s.uploads_pending.insert(n, PendingUpload { kind: kind.clone(), token: token.clone() });
                let url = format!("http://{}/upload/{n}?type={kind}", self.addr);
                if kind == "IMAGE" {
                    Ok(json!({"url": url, "file_id": n.to_string()}))
                } else {
                    s.tokens.insert(token.clone(), Token { kind: kind.clone(), uploaded: None });
                    Ok(json!({"url": url, "token": token, "file_id": n.to_string()}))
                }
            }
            ("GET", "chats") => {
                let s = self.state();
                let chats: Vec<Value> =
                    s.chats.iter().map(|(c, u)| json!({"chat_id": c, "type": "CHAT", "participant": u})).collect();
                Ok(json!({"chats": chats}))
            }
            ("GET", "chat") => {
                let chat = query.get("chat_id").cloned().unwrap_or_default();
                let s = self.state();
                match s.chats.get(&chat) {
                    Some(user) => Ok(
                        json!({"chat_id": chat, "type": "CHAT", "status": "ACTIVE", "participants": {user.clone(): 0}}),
                    ),
                    None => refuse(300, "NOT_FOUND : chat not found"),
                }
            }
            ("GET", "updates") => {
                if !self.state().long_polling {
                    return refuse(100, "PARAM : no long polling subscription: subscribe with longPolling first");
                }
                let marker = query.get("marker").and_then(|m| m.parse::<u64>().ok());
                let count = query.get("count").and_then(|c| c.parse::<usize>().ok()).unwrap_or(BATCH).clamp(1, BATCH);
                let timeout = query.get("timeout").and_then(|t| t.parse::<u64>().ok()).unwrap_or(30).min(90);
                Ok(self.updates(marker, count, timeout).await)
            }
            _ => refuse(3, format!("METHOD : unknown method {method} {name}")),
        }
    }

    async fn updates(&self, marker: Option<u64>, count: usize, timeout: u64) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        loop {
            let notified = self.shared.updates.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.state();
                let from = marker.unwrap_or(s.acknowledged).max(FIRST_MARKER);
                s.acknowledged = s.acknowledged.max(from);
                let next = FIRST_MARKER + s.events.len() as u64;
                if from < next {
                    let start = (from - FIRST_MARKER) as usize;
                    let end = (start + count).min(s.events.len());
                    let mut raws = Vec::new();
                    for event in &mut s.events[start..end] {
                        event.handed_out += 1;
                        raws.push(event.raw.clone());
                    }
                    let last = s.events[end - 1].marker;
                    // the answer is assembled from the updates' own bytes
                    return Value::String(format!(r#"{{"updates":[{}],"marker":{}}}"#, raws.join(","), last + 1));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return json!({"updates": [], "marker": marker.unwrap_or(FIRST_MARKER)});
            }
        }
    }

    async fn send(&self, rest: &[&str], body: &Value, at: Duration) -> Outcome {
        let recipient = body.get("recipient").cloned().unwrap_or(Value::Null);
        let message = body.get("message").cloned().unwrap_or(Value::Null);
        let text = message.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
        let attachments: Vec<Value> = match (message.get("attachments"), message.get("attachment")) {
            (Some(Value::Array(list)), _) => list.clone(),
            (Some(_), _) => return refuse(100, "PARAM : attachments must be a list"),
            (None, Some(one)) => vec![one.clone()],
            (None, None) => Vec::new(),
        };
        if text.is_empty() && attachments.iter().all(|a| a["type"] == "INLINE_KEYBOARD") {
            return refuse(100, "PARAM : message is empty");
        }
        if text.chars().count() > 4096 {
            return refuse(100, "PARAM : text is too long");
        }
        if attachments.len() > 5 {
            return refuse(100, "PARAM : at most 5 attachments per message");
        }
        let mut by_url = Vec::new();
        for a in &attachments {
            let kind = a["type"].as_str().unwrap_or_default();
            let payload = &a["payload"];
            match kind {
                "IMAGE" | "VIDEO" | "FILE" | "AUDIO" => {
                    if let Some(url) = payload["url"].as_str() {
                        if kind != "IMAGE" {
                            return refuse(100, format!("PARAM : a {kind} goes by token, not by url"));
                        }
                        by_url.push(url.to_owned());
                        continue;
                    }
                    let Some(token) = payload["token"].as_str() else {
                        return refuse(100, format!("PARAM : a {kind} attachment needs a token or url"));
                    };
                    let s = self.state();
                    match s.tokens.get(token) {
                        Some(t) if t.kind == kind || (kind == "FILE" && t.kind != "IMAGE") => match t.uploaded {
                            None => return refuse(100, format!("PARAM : nothing was uploaded for token {token}")),
                            Some(when) if at.saturating_sub(when) < s.processing => {
                                return refuse(2, "SERVICE : the attachment is not ready yet");
                            }
                            Some(_) => {}
                        },
                        _ => return refuse(100, format!("PARAM : unknown {kind} token {token}")),
                    }
                }
                "INLINE_KEYBOARD" => {
                    if let Some(problem) = keyboard_problem(&payload["keyboard"]) {
                        return refuse(100, format!("PARAM : invalid keyboard: {problem}"));
                    }
                }
                other => return refuse(100, format!("PARAM : unknown attachment type {other:?}")),
            }
        }
        if by_url.len() > 1 {
            return refuse(100, "PARAM : only one image by url per request");
        }
        // to users directly
        if let Some(users) = recipient.get("user_ids").and_then(Value::as_array) {
            if !rest.is_empty() {
                return refuse(100, "PARAM : user_ids go to /graph/me/messages");
            }
            for url in &by_url {
                self.fetch(url).await?;
            }
            let mut success = Vec::new();
            let mut chat_ids = Vec::new();
            for user in users {
                let id = user.as_str().unwrap_or_default();
                let id = if id.starts_with("user:") { id.to_owned() } else { format!("user:{id}") };
                let allowed = self.state().allowed.get(&id).copied().unwrap_or(false);
                if !allowed {
                    success.push(json!(false));
                    chat_ids.push(Value::Null);
                    continue;
                }
                let chat = {
                    let user =
                        self.state().users.get(&id).cloned().unwrap_or(OkUser { id: id.clone(), name: String::new() });
                    self.chat(&user)
                };
                let (mid, _) = self.next_mid(&chat);
                self.state().sent.push(Sent { mid, chat_id: chat.clone(), body: body.clone(), text: text.clone(), at });
                success.push(json!(true));
                chat_ids.push(json!(chat));
            }
            return Ok(json!({"success": success, "chat_ids": chat_ids}));
        }
        let chat = match rest {
            [chat] => chat.to_string(),
            _ => return refuse(100, "PARAM : the chat id goes in the path"),
        };
        if recipient.get("chat_id").and_then(Value::as_str).is_some_and(|c| c != chat) {
            return refuse(100, "PARAM : recipient.chat_id differs from the path");
        }
        let allowed = {
            let s = self.state();
            match s.chats.get(&chat) {
                None => return refuse(300, "NOT_FOUND : chat not found"),
                Some(user) => s.allowed.get(user).copied().unwrap_or(false),
            }
        };
        if !allowed {
            let (code, message) = self.state().not_allowed_error.clone();
            return Err((code, message));
        }
        for url in &by_url {
            self.fetch(url).await?;
        }
        let (mid, _) = self.next_mid(&chat);
        self.state().sent.push(Sent { mid: mid.clone(), chat_id: chat, body: body.clone(), text, at });
        Ok(json!({"success": true, "message_id": mid}))
    }

    /// OK fetches an image it is given by URL; a link that does not work fails the send.
    async fn fetch(&self, url: &str) -> Result<(), (i64, String)> {
        let response = self.shared.http.get(url).send().await;
        let (status, content_type, bytes) = match response {
            Ok(r) => {
                let status = r.status().as_u16();
                let ct =
                    r.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                (status, ct, r.bytes().await.unwrap_or_default())
            }
            Err(_) => (0, String::new(), Bytes::new()),
        };
        self.state().fetched.push(Fetched { url: url.to_owned(), status, content_type: content_type.clone(), bytes });
        if status != 200 || !content_type.starts_with("image/") {
            return refuse(
                100,
                format!("PARAM : the image at {url} could not be fetched (HTTP {status}, {content_type:?})"),
            );
        }
        Ok(())
    }
}

/// What OK would reject about a keyboard (secondary: the limits of OK's Bot API keyboards are
/// not documented; these are those of its sibling TamTam's).
fn keyboard_problem(k: &Value) -> Option<String> {
    let Some(rows) = k.get("buttons").and_then(Value::as_array) else { return Some("no buttons".into()) };
    if rows.is_empty() {
        return Some("no rows".into());
    }
    if rows.len() > 30 {
        return Some("more than 30 rows".into());
    }
    let mut count = 0;
    for row in rows {
        let Some(row) = row.as_array() else { return Some("a row is not a list".into()) };
        if row.is_empty() || row.len() > 7 {
            return Some("a row needs 1 to 7 buttons".into());
        }
        for b in row {
            count += 1;
            let text = b["text"].as_str().unwrap_or_default();
            if text.is_empty() || text.chars().count() > 128 {
                return Some("a button's text must be 1 to 128 characters".into());
            }
            match b["type"].as_str().unwrap_or_default() {
                "CALLBACK" => {
                    let payload = b["payload"].as_str().unwrap_or_default();
                    if payload.is_empty() || payload.chars().count() > 1024 {
                        return Some("a CALLBACK button's payload must be 1 to 1024 characters".into());
                    }
                    if let Some(intent) = b.get("intent").and_then(Value::as_str)
                        && !matches!(intent, "DEFAULT" | "POSITIVE" | "NEGATIVE")
                    {
                        return Some(format!("unknown intent {intent:?}"));
                    }
                }
                "LINK" => {
                    if !b["url"].as_str().is_some_and(|u| u.starts_with("http://") || u.starts_with("https://")) {
                        return Some("a LINK button without an http(s) url".into());
                    }
                }
                "REQUEST_CONTACT" | "REQUEST_GEO_LOCATION" => {}
                other => return Some(format!("unknown button type {other:?}")),
            }
        }
    }
    if count > 210 {
        return Some("more than 210 buttons".into());
    }
    None
}

/// `/graph/<path>` as (call name, the path segments after it).
fn route(path: &str) -> (String, Vec<String>) {
    let segments: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    match segments.as_slice() {
        [me, name, rest @ ..] if me == "me" => (name.clone(), rest.to_vec()),
        // `/graph/<chat_id>/messages`, `/graph/<chat_id>/answer`
        [chat, name] => (name.clone(), vec![chat.clone()]),
        _ => (path.to_owned(), Vec::new()),
    }
}

async fn api(
    State(fake): State<FakeOk>,
    Path(path): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = fake.elapsed();
    let latency = fake.state().latency;
    let mut query: BTreeMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let token = query.remove("access_token").unwrap_or_default();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (name, rest) = route(&path);
    let parsed: Value =
        if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap_or(Value::Null) };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let outcome = if token != fake.shared.token {
        Err((102, "PARAM_SESSION_EXPIRED : Session expired".to_owned()))
    } else if method == Method::POST && content_type.as_deref().map(normalized).as_deref() != Some(JSON_UTF8) {
        Err((100, format!("PARAM : Content-Type must be {JSON_UTF8}, not {content_type:?}")))
    } else if method == Method::POST && !body.is_empty() && parsed.is_null() {
        Err((100, "PARAM : the body is not JSON".to_owned()))
    } else {
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        fake.dispatch(&name, &method, &rest, &query, &parsed, at).await
    };
    let (code, answer) = match &outcome {
        Ok(Value::String(raw)) => (None, serde_json::from_str(raw).unwrap_or(Value::Null)),
        Ok(v) => (None, v.clone()),
        Err((code, message)) => (Some(*code), json!({"error_code": code, "error_msg": message, "error_data": null})),
    };
    let lost = {
        let mut s = fake.state();
        code.is_none() && s.lose_answer.iter().position(|m| *m == name).map(|i| s.lose_answer.remove(i)).is_some()
    };
    fake.record(Call {
        name,
        method: method.to_string(),
        path,
        at,
        query,
        content_type,
        body: parsed,
        error: code,
        answer: answer.clone(),
    });
    if lost {
        return (StatusCode::BAD_GATEWAY, "502 Bad Gateway").into_response();
    }
    match (code, outcome) {
        (Some(code), _) => {
            let mut response = (StatusCode::OK, axum::Json(answer)).into_response();
            response.headers_mut().insert("invocation-error", HeaderValue::from(code));
            response
        }
        // the long poll's answer, assembled from the updates' own bytes
        (None, Ok(Value::String(raw))) => {
            ([(header::CONTENT_TYPE, "application/json;charset=utf-8")], raw).into_response()
        }
        (None, _) => (StatusCode::OK, axum::Json(answer)).into_response(),
    }
}

async fn upload(State(fake): State<FakeOk>, Path(n): Path<u64>, request: Request) -> Response {
    let Some(pending) = fake.state().uploads_pending.remove(&n) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error_code": 300, "error_msg": "NOT_FOUND : unknown upload"})),
        )
            .into_response();
    };
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let (file_name, file_type, bytes) = if content_type.starts_with("multipart/form-data") {
        let mut found = None;
        if let Ok(mut multipart) = Multipart::from_request(request, &()).await {
            while let Ok(Some(field)) = multipart.next_field().await {
                if field.file_name().is_none() {
                    continue;
                }
                let name = field.file_name().unwrap_or_default().to_owned();
                let ct = field.content_type().unwrap_or_default().to_owned();
                match field.bytes().await {
                    Ok(bytes) => found = Some((name, ct, bytes)),
                    Err(_) => return (StatusCode::BAD_REQUEST, "cut short").into_response(),
                }
                break;
            }
        }
        match found {
            Some(f) => f,
            None => {
                return axum::Json(json!({"error_code": 100, "error_msg": "PARAM : no file in the upload"}))
                    .into_response();
            }
        }
    } else {
        let bytes = axum::body::to_bytes(request.into_body(), 256 << 20).await.unwrap_or_default();
        (String::new(), content_type.clone(), bytes)
    };
    if bytes.is_empty() {
        return axum::Json(json!({"error_code": 100, "error_msg": "PARAM : the file is empty"})).into_response();
    }
    let wanted = match pending.kind.as_str() {
        "IMAGE" => Some("image/"),
        "VIDEO" => Some("video/"),
        "AUDIO" => Some("audio/"),
        _ => None,
    };
    if let Some(prefix) = wanted
        && !file_type.starts_with(prefix)
    {
        return axum::Json(json!({"error_code": 100, "error_msg": format!("PARAM : a {} upload needs a {prefix}* Content-Type, not {file_type:?}", pending.kind)}))
            .into_response();
    }
    let at = fake.elapsed();
    let answer = {
        let mut s = fake.state();
        let token = if pending.kind == "IMAGE" { format!("img-tok-{n:06}") } else { pending.token.clone() };
        s.tokens.insert(token.clone(), Token { kind: pending.kind.clone(), uploaded: Some(at) });
        s.uploads.push(Upload {
            kind: pending.kind.clone(),
            file_name,
            content_type: file_type,
            bytes,
            token: token.clone(),
        });
        if pending.kind == "IMAGE" {
            json!({"photos": {(884_000 + n).to_string(): {"token": token}}})
        } else {
            json!({})
        }
    };
    axum::Json(answer).into_response()
}

async fn media(State(fake): State<FakeOk>, Path(name): Path<String>) -> Response {
    let (found, latency) = {
        let mut s = fake.state();
        if s.media_failures > 0 {
            s.media_failures -= 1;
            return (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
        }
        (s.media.get(&name).cloned(), s.media_latency)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match found {
        Some((bytes, mime)) => ([(header::CONTENT_TYPE, mime)], bytes).into_response(),
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_keyboards() {
        assert_eq!(route("me/messages/chat:C4"), ("messages".into(), vec!["chat:C4".into()]));
        assert_eq!(route("me/messages"), ("messages".into(), vec![]));
        assert_eq!(route("chat:C4/messages"), ("messages".into(), vec!["chat:C4".into()]));
        assert_eq!(route("chat:C4/answer"), ("answer".into(), vec!["chat:C4".into()]));
        assert_eq!(route("me/fileUploadUrl"), ("fileUploadUrl".into(), vec![]));
        assert_eq!(normalized("application/json; charset=UTF-8"), JSON_UTF8);
        assert_eq!(keyboard_problem(&json!({"buttons": [[{"type": "CALLBACK", "text": "A", "payload": "a"}]]})), None);
        assert!(keyboard_problem(&json!({"buttons": [[{"type": "LINK", "text": "A", "url": "ftp://x"}]]})).is_some());
        assert!(keyboard_problem(&json!({"buttons": [[{"type": "CALLBACK", "text": "A"}]]})).is_some());
        assert!(keyboard_problem(&json!({"buttons": [[{"type": "TELEPORT", "text": "A"}]]})).is_some());
        let wide: Vec<Value> = (0..8).map(|i| json!({"type": "REQUEST_CONTACT", "text": format!("{i}")})).collect();
        assert!(keyboard_problem(&json!({"buttons": [wide]})).is_some());
    }
}
