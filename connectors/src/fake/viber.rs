//! A fake Viber REST Bot API for tests, speaking the real wire format
//! (`docs/platforms.md#viber`, §4 and the fake's list in §4.7).
//!
//! - `POST /pa/<method>` with JSON and `X-Viber-Auth-Token` (or the older `auth_token` in the
//!   body); **always HTTP 200**, success or failure in `status` / `status_message`. A wrong or
//!   missing token gets status 2, a body over 30 KB or not JSON status 3.
//! - `set_webhook` POSTs the signed `event: "webhook"` check to the URL **before answering**
//!   and answers status 1 (`invalidUrl`) unless it got a 200; `"url": ""` removes the webhook.
//! - `send_message` with per-user state (unknown: 5 `receiverNotRegistered`; not subscribed or
//!   unsubscribed: 6 `receiverNotSubscribed`), validation (text ≤ 7000 characters,
//!   `sender.name` 1-28, `tracking_data` ≤ 4000, picture text ≤ 512, `file_name` ≤ 256, the
//!   fields each type needs), Viber's rule of at most 100 messages to a user who has not
//!   answered (status 12), and keyboard rules (a `share-phone` button without
//!   `min_api_version` 3, or `Columns` outside 1-6: accepted, then a `failed` callback, as the
//!   client rejects it). The `media` URL of every picture, video and file is **fetched** before
//!   the answer, as Viber does, and the bytes recorded ([`FakeViber::fetched`]); one that does
//!   not answer 200 is accepted and then reported by a `failed` callback.
//! - `get_user_details`, `get_account_info`, `get_online`.
//! - Faults on demand ([`FakeViber::fail_next`]: any status, e.g. 12), latency.
//! - Callbacks signed like Viber's (`X-Viber-Content-Signature`, hex HMAC-SHA256 of the exact
//!   body keyed with the token), millisecond timestamps, 64-bit `message_token`s beyond a
//!   double's range; redelivered on a non-200 ([`FakeViber::set_redelivery`]); each answer's
//!   status and body recorded ([`FakeViber::deliveries`]). Builders for every kind: messages
//!   of each type (a contact as share-phone sends it, with the `tracking_data` the bot set),
//!   `subscribed`, `unsubscribed`, `conversation_started`, `delivered`, `seen`, `failed`.
//! - `GET /media/<name>`: the temporary media URLs of inbound pictures, videos and files
//!   ([`FakeViber::add_media`]), which can be made to fail ([`FakeViber::fail_media`]).
//! - Every API request is recorded ([`FakeViber::calls`]) with its headers and parsed body.

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

/// The header Viber signs callbacks in.
const SIGNATURE_HEADER: &str = "X-Viber-Content-Signature";

/// Viber's callback signature, computed here on its own (not with the connector's code): hex
/// HMAC-SHA256 of the body, keyed with the bot's token.
pub fn sign(token: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Unix time in milliseconds the fake's clock starts at (2026-01-02).
pub const EPOCH_MS: i64 = 1_767_312_000_000;
/// The first `message_token` of the bot's messages (beyond 2^53: a double cannot hold it).
pub const FIRST_OUT_TOKEN: u64 = 5_812_993_301_117_002_001;
/// The first `message_token` of callbacks.
pub const FIRST_IN_TOKEN: u64 = 5_912_004_410_023_001_001;
/// The largest request body.
const MAX_JSON: usize = 30 * 1024;
/// Messages to a user without an answer from them, at most (then status 12).
const UNANSWERED_MAX: u32 = 100;

/// One recorded API request.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// When it arrived (before the fake's latency), since the fake started.
    pub at: Duration,
    /// Header names in lowercase.
    pub headers: HashMap<String, String>,
    /// The parsed JSON body (`Null` if it was not JSON).
    pub body: Value,
    /// The `status` answered.
    pub status: i64,
    /// The whole answer.
    pub answer: Value,
}

impl Call {
    pub fn param(&self, name: &str) -> &Value {
        self.body.get(name).unwrap_or(&Value::Null)
    }

    pub fn ok(&self) -> bool {
        self.status == 0
    }

    /// The `message_token` answered, if any.
    pub fn token(&self) -> Option<u64> {
        self.answer.get("message_token").and_then(Value::as_u64)
    }
}

/// A Viber user of the fake.
#[derive(Debug, Clone)]
pub struct ViberUser {
    pub id: String,
    pub name: String,
    pub avatar: Option<String>,
    pub language: String,
    pub country: String,
    pub api_version: u32,
}

impl ViberUser {
    pub fn new(id: &str, name: &str) -> Self {
        ViberUser {
            id: id.into(),
            name: name.into(),
            avatar: None,
            language: "en".into(),
            country: "DE".into(),
            api_version: 10,
        }
    }

    pub fn json(&self) -> Value {
        let mut v = json!({"id": self.id, "name": self.name, "language": self.language, "country": self.country,
            "api_version": self.api_version});
        if let Some(avatar) = &self.avatar {
            v["avatar"] = json!(avatar);
        }
        v
    }
}

/// Whether the bot may write to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// A Viber user who never subscribed (opened the chat at most): status 6.
    Registered,
    Subscribed,
    Unsubscribed,
}

struct UserState {
    user: ViberUser,
    subscription: Subscription,
    /// Messages sent since the user last wrote.
    unanswered: u32,
    /// The `tracking_data` of the last message sent to them, handed back with their next message.
    tracking: Option<String>,
}

/// A message the bot sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub token: u64,
    pub receiver: String,
    pub body: Value,
    /// When the request arrived (before the fake's latency), since the fake started.
    pub at: Duration,
}

/// A media URL the fake fetched for an outbound message, as Viber does.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The message it was sent with (`None` when the send was refused after the fetch).
    pub token: Option<u64>,
    pub url: String,
    /// The HTTP status (0: unreachable).
    pub status: u16,
    pub bytes: Bytes,
}

/// One callback POSTed to the webhook and what the hub answered.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: String,
    pub message_token: Option<u64>,
    /// HTTP status (0: unreachable).
    pub status: u16,
    /// The answer's body (the welcome message, for `conversation_started`).
    pub answer: String,
    pub at: Duration,
}

impl Delivery {
    /// The answer's body as JSON, if it is.
    pub fn answer_json(&self) -> Option<Value> {
        serde_json::from_str(&self.answer).ok()
    }
}

/// The registered webhook.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub event_types: Vec<String>,
    pub send_name: bool,
    pub send_photo: bool,
}

/// How a callback is signed, for tests of the hub's check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// `X-Viber-Content-Signature` as Viber computes it.
    Right,
    /// The header, with a signature of another key.
    Wrong,
    /// No signature at all.
    Missing,
    /// The right signature as the query parameter `sig` instead of the header.
    Query,
}

struct Fault {
    method: String,
    status: i64,
    message: String,
}

struct State_ {
    started: Instant,
    calls: Vec<Call>,
    webhook: Option<Webhook>,
    users: HashMap<String, UserState>,
    next_out: u64,
    next_in: u64,
    sent: Vec<Sent>,
    fetched: Vec<Fetched>,
    faults: VecDeque<Fault>,
    media: HashMap<String, Bytes>,
    next_media: u64,
    /// The next this many media GETs answer 503.
    media_failures: u32,
    deliveries: Vec<Delivery>,
    latency: Duration,
    /// Callback tries and the pause before the n-th retry (n × this).
    redelivery: (u32, Duration),
    /// `delivered` and `seen` callbacks for every message sent, right after the answer.
    auto_receipts: bool,
}

struct Shared {
    token: String,
    state: Mutex<State_>,
    http: reqwest::Client,
}

/// A running fake Viber API. Dropping it does not stop the server (tests end with the runtime).
#[derive(Clone)]
pub struct FakeViber {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

fn answer(status: i64, message: &str) -> (i64, Value) {
    (status, json!({"status": status, "status_message": message}))
}

fn string<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

impl FakeViber {
    /// Starts the fake on `127.0.0.1:0` accepting auth token `token`.
    pub async fn start(token: &str) -> Self {
        use axum::serve::ListenerExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake");
        let addr = listener.local_addr().expect("bound address");
        let fake = FakeViber {
            addr,
            shared: Arc::new(Shared {
                token: token.to_owned(),
                state: Mutex::new(State_ {
                    started: Instant::now(),
                    calls: Vec::new(),
                    webhook: None,
                    users: HashMap::new(),
                    next_out: FIRST_OUT_TOKEN,
                    next_in: FIRST_IN_TOKEN,
                    sent: Vec::new(),
                    fetched: Vec::new(),
                    faults: VecDeque::new(),
                    media: HashMap::new(),
                    next_media: 1,
                    media_failures: 0,
                    deliveries: Vec::new(),
                    latency: Duration::ZERO,
                    redelivery: (20, Duration::from_millis(50)),
                    auto_receipts: false,
                }),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .expect("a plain HTTP client builds"),
            }),
        };
        let router =
            Router::new().route("/pa/{method}", post(api)).route("/media/{name}", get(media)).with_state(fake.clone());
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
        format!("http://{}/pa/", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// Time since the fake started: the clock of [`Call::at`].
    pub fn elapsed(&self) -> Duration {
        self.state().started.elapsed()
    }

    /// The fake's clock in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        EPOCH_MS + self.elapsed().as_millis() as i64
    }

    /// Every API request so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Requests of one method, in arrival order.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.state().calls.iter().filter(|c| c.method == method).cloned().collect()
    }

    /// Every message the bot sent (accepted with status 0), in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.state().sent.clone()
    }

    /// Messages sent to `user`, in order.
    pub fn sent_to(&self, user: &str) -> Vec<Sent> {
        self.state().sent.iter().filter(|s| s.receiver == user).cloned().collect()
    }

    /// Outbound media URLs fetched, in order.
    pub fn fetched(&self) -> Vec<Fetched> {
        self.state().fetched.clone()
    }

    /// Callbacks POSTed so far and what they got, in order (every try of each).
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state().deliveries.clone()
    }

    /// The tries of the callback with this `message_token`.
    pub fn deliveries_of(&self, token: u64) -> Vec<Delivery> {
        self.state().deliveries.iter().filter(|d| d.message_token == Some(token)).cloned().collect()
    }

    pub fn webhook(&self) -> Option<Webhook> {
        self.state().webhook.clone()
    }

    /// The next request of `method` (any method for `"*"`) is answered with this status.
    pub fn fail_next(&self, method: &str, status: i64, message: &str) {
        self.state().faults.push_back(Fault { method: method.into(), status, message: message.into() });
    }

    /// Every API answer waits this long first.
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    /// A callback is POSTed at most `tries` times, the n-th retry after n × `pause`.
    pub fn set_redelivery(&self, tries: u32, pause: Duration) {
        self.state().redelivery = (tries.max(1), pause);
    }

    /// Every message sent from now on gets its `delivered` and then its `seen` callback right
    /// after the answer, as a customer reading at once would (they usually arrive before the
    /// hub has stored the send's outcome).
    pub fn set_auto_receipts(&self, on: bool) {
        self.state().auto_receipts = on;
    }

    /// Makes `user` known to Viber (not subscribed: they may open the chat, but the bot cannot
    /// write to them until they subscribe or write).
    pub fn add_user(&self, user: &ViberUser) {
        let mut s = self.state();
        s.users.entry(user.id.clone()).or_insert_with(|| UserState {
            user: user.clone(),
            subscription: Subscription::Registered,
            unanswered: 0,
            tracking: None,
        });
    }

    /// Sets whether the bot may write to `user` (known to the fake), without a callback.
    pub fn set_subscription(&self, user: &str, subscription: Subscription) {
        if let Some(u) = self.state().users.get_mut(user) {
            u.subscription = subscription;
        }
    }

    pub fn subscription(&self, user: &str) -> Option<Subscription> {
        self.state().users.get(user).map(|u| u.subscription)
    }

    /// Serves `bytes` at a temporary media URL (`/media/<n>.<ext>`) and returns the URL.
    pub fn add_media(&self, bytes: impl Into<Bytes>, ext: &str) -> String {
        let mut s = self.state();
        let name = format!("{}.{ext}", s.next_media);
        s.next_media += 1;
        s.media.insert(name.clone(), bytes.into());
        format!("http://{}/media/{name}", self.addr)
    }

    /// The next `times` media GETs answer 503.
    pub fn fail_media(&self, times: u32) {
        self.state().media_failures = times;
    }

    // ------------------------------------------------------------------------ callbacks --

    /// A callback of `event` with `fields`, the common fields added (a new `message_token`,
    /// the timestamp in milliseconds); returns its token. It is POSTed in the background, again
    /// on every non-200.
    pub fn event(&self, event: &str, fields: Value) -> u64 {
        let (token, body) = self.build(event, fields);
        let fake = self.clone();
        tokio::spawn(async move { fake.deliver(body).await });
        token
    }

    /// Like [`FakeViber::event`], delivered before returning: the last try.
    pub async fn event_now(&self, event: &str, fields: Value) -> Delivery {
        let (_, body) = self.build(event, fields);
        self.deliver(body).await
    }

    fn build(&self, event: &str, fields: Value) -> (u64, Value) {
        let token = {
            let mut s = self.state();
            let token = s.next_in;
            s.next_in += 1;
            token
        };
        let mut body =
            json!({"event": event, "timestamp": self.now_ms(), "chat_hostname": "SN-CHAT-02_", "message_token": token});
        if let (Value::Object(body), Value::Object(fields)) = (&mut body, fields) {
            body.extend(fields);
        }
        (token, body)
    }

    /// POSTs `body` until the hub answers 200, or the tries run out; returns the last try.
    pub async fn deliver(&self, body: Value) -> Delivery {
        let (tries, pause) = self.state().redelivery;
        let mut last = None;
        for attempt in 0..tries {
            let delivery = self.post_callback(&body, Signature::Right).await;
            let ok = delivery.status == 200;
            last = Some(delivery);
            if ok {
                break;
            }
            tokio::time::sleep(pause * (attempt + 1).min(20)).await;
        }
        last.expect("at least one try")
    }

    /// POSTs `body` once to the registered webhook, signed as `signature` says, and records
    /// what the hub answered.
    pub async fn post_callback(&self, body: &Value, signature: Signature) -> Delivery {
        let url = self.webhook().map(|w| w.url).unwrap_or_default();
        self.post_to(&url, body, signature).await
    }

    async fn post_to(&self, url: &str, body: &Value, signature: Signature) -> Delivery {
        let raw = serde_json::to_vec(body).expect("JSON");
        let (status, answer) = self.post_raw_to(url, &raw, signature).await;
        let delivery = Delivery {
            event: string(body, "event").unwrap_or_default().to_owned(),
            message_token: body.get("message_token").and_then(Value::as_u64),
            status,
            answer,
            at: self.elapsed(),
        };
        self.state().deliveries.push(delivery.clone());
        delivery
    }

    /// POSTs `raw` bytes to the registered webhook as they are (not recorded): for bodies a
    /// builder would not make.
    pub async fn post_raw(&self, raw: &[u8], signature: Signature) -> (u16, String) {
        let url = self.webhook().map(|w| w.url).unwrap_or_default();
        self.post_raw_to(&url, raw, signature).await
    }

    async fn post_raw_to(&self, url: &str, raw: &[u8], signature: Signature) -> (u16, String) {
        if url.is_empty() {
            return (0, "no webhook is set".into());
        }
        let mut url = url.to_owned();
        let mut request = self.shared.http.post(&url).header(header::CONTENT_TYPE, "application/json");
        match signature {
            Signature::Right => request = request.header(SIGNATURE_HEADER, sign(&self.shared.token, raw)),
            Signature::Wrong => request = request.header(SIGNATURE_HEADER, sign("not-the-token", raw)),
            Signature::Missing => {}
            Signature::Query => {
                url.push_str(if url.contains('?') { "&sig=" } else { "?sig=" });
                url.push_str(&sign(&self.shared.token, raw));
                request = self.shared.http.post(&url).header(header::CONTENT_TYPE, "application/json");
            }
        }
        match request.body(raw.to_vec()).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    }

    /// A message from `user` (`message` is the `message` object: `{"type": "text", ...}`);
    /// returns its token. Writing subscribes a user and restarts their unanswered count; the
    /// `tracking_data` of the bot's last message to them comes back with it.
    pub fn message(&self, user: &ViberUser, message: Value) -> u64 {
        let mut message = message;
        {
            let mut s = self.state();
            let state = s.users.entry(user.id.clone()).or_insert_with(|| UserState {
                user: user.clone(),
                subscription: Subscription::Subscribed,
                unanswered: 0,
                tracking: None,
            });
            state.user = user.clone();
            state.subscription = Subscription::Subscribed;
            state.unanswered = 0;
            if let Some(tracking) = &state.tracking
                && message.get("tracking_data").is_none()
            {
                message["tracking_data"] = json!(tracking);
            }
        }
        self.event("message", json!({"sender": user.json(), "message": message, "silent": false}))
    }

    pub fn text(&self, user: &ViberUser, text: &str) -> u64 {
        self.message(user, json!({"type": "text", "text": text}))
    }

    /// A picture served at a temporary media URL, with its caption.
    pub fn picture(&self, user: &ViberUser, bytes: impl Into<Bytes>, caption: Option<&str>) -> u64 {
        let bytes = bytes.into();
        let size = bytes.len();
        let url = self.add_media(bytes, "jpg");
        let mut m =
            json!({"type": "picture", "media": url, "thumbnail": url, "size": size, "file_name": "IMG_0412.jpg"});
        if let Some(caption) = caption {
            m["text"] = json!(caption);
        }
        self.message(user, m)
    }

    pub fn video(&self, user: &ViberUser, bytes: impl Into<Bytes>) -> u64 {
        let bytes = bytes.into();
        let size = bytes.len();
        let url = self.add_media(bytes, "mp4");
        self.message(user, json!({"type": "video", "media": url, "size": size, "duration": 7}))
    }

    pub fn file(&self, user: &ViberUser, name: &str, bytes: impl Into<Bytes>) -> u64 {
        let bytes = bytes.into();
        let size = bytes.len();
        let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("bin").to_owned();
        let url = self.add_media(bytes, &ext);
        self.message(user, json!({"type": "file", "media": url, "size": size, "file_name": name}))
    }

    /// A sticker by its id, with its picture at a media URL.
    pub fn sticker(&self, user: &ViberUser, sticker_id: u64) -> u64 {
        let url = self.add_media(format!("PNG sticker {sticker_id}").into_bytes(), "png");
        self.message(user, json!({"type": "sticker", "sticker_id": sticker_id, "media": url}))
    }

    pub fn location(&self, user: &ViberUser, lat: f64, lon: f64) -> u64 {
        self.message(user, json!({"type": "location", "location": {"lat": lat, "lon": lon}}))
    }

    /// A contact card from the address book.
    pub fn contact(&self, user: &ViberUser, name: &str, phone: &str) -> u64 {
        self.message(user, json!({"type": "contact", "contact": {"name": name, "phone_number": phone}}))
    }

    /// The answer to a `share-phone` button: the user's own contact (their name and number,
    /// with the `tracking_data` of the message that asked).
    pub fn share_phone(&self, user: &ViberUser, phone: &str) -> u64 {
        let mut contact = json!({"name": user.name, "phone_number": phone});
        if let Some(avatar) = &user.avatar {
            contact["avatar"] = json!(avatar);
        }
        self.message(user, json!({"type": "contact", "contact": contact}))
    }

    pub fn url(&self, user: &ViberUser, url: &str) -> u64 {
        self.message(user, json!({"type": "url", "media": url}))
    }

    pub fn subscribed(&self, user: &ViberUser) -> u64 {
        {
            let mut s = self.state();
            let state = s.users.entry(user.id.clone()).or_insert_with(|| UserState {
                user: user.clone(),
                subscription: Subscription::Subscribed,
                unanswered: 0,
                tracking: None,
            });
            state.subscription = Subscription::Subscribed;
        }
        self.event("subscribed", json!({"user": user.json()}))
    }

    pub fn unsubscribed(&self, user: &ViberUser) -> u64 {
        self.set_subscription(&user.id, Subscription::Unsubscribed);
        self.event("unsubscribed", json!({"user_id": user.id}))
    }

    /// The user opens the chat; delivered before returning, so the answer (the welcome message)
    /// is in the returned delivery.
    pub async fn conversation_started(&self, user: &ViberUser) -> Delivery {
        self.add_user(user);
        let subscribed = self.subscription(&user.id) == Some(Subscription::Subscribed);
        self.event_now(
            "conversation_started",
            json!({"type": "open", "context": "from-site", "user": user.json(), "subscribed": subscribed}),
        )
        .await
    }

    fn receipt(&self, event: &str, token: u64, user: &str, desc: Option<&str>) {
        let mut body = json!({"event": event, "timestamp": self.now_ms(), "chat_hostname": "SN-CHAT-02_",
            "message_token": token, "user_id": user});
        if let Some(desc) = desc {
            body["desc"] = json!(desc);
        }
        let fake = self.clone();
        tokio::spawn(async move { fake.deliver(body).await });
    }

    /// The message `token` reached `user`'s device.
    pub fn delivered(&self, token: u64, user: &str) {
        self.receipt("delivered", token, user, None);
    }

    pub fn seen(&self, token: u64, user: &str) {
        self.receipt("seen", token, user, None);
    }

    pub fn failed(&self, token: u64, user: &str, desc: &str) {
        self.receipt("failed", token, user, Some(desc));
    }

    // ------------------------------------------------------------------------- the API --

    /// Answers one request that arrived at `at`.
    async fn dispatch(&self, method: &str, headers: &HeaderMap, raw: &[u8], at: Duration) -> (i64, Value) {
        if raw.len() > MAX_JSON {
            return answer(3, "badData: the request is over 30 KB");
        }
        let Ok(body) = serde_json::from_slice::<Value>(raw) else {
            return answer(3, "badData: the body is not JSON");
        };
        let given = headers
            .get("x-viber-auth-token")
            .and_then(|v| v.to_str().ok())
            .or_else(|| string(&body, "auth_token"))
            .unwrap_or_default();
        if given != self.shared.token {
            return answer(2, "invalidAuthToken");
        }
        let fault = {
            let mut s = self.state();
            let i = s.faults.iter().position(|f| f.method == method || f.method == "*");
            i.and_then(|i| s.faults.remove(i))
        };
        if let Some(fault) = fault {
            let mut out = answer(fault.status, &fault.message);
            if fault.status == 12 {
                out.1["message_token"] = json!(0);
                out.1["chat_hostname"] = json!("SN-CHAT-01_");
            }
            return out;
        }
        match method {
            "set_webhook" => self.set_webhook(&body).await,
            "send_message" => self.send_message(&body, at).await,
            "get_user_details" => {
                let id = string(&body, "id").unwrap_or_default();
                match self.state().users.get(id) {
                    Some(u) => {
                        let mut user = u.user.json();
                        user["primary_device_os"] = json!("Android 14");
                        user["viber_version"] = json!("24.1.0");
                        user["device_type"] = json!("SM-S918B");
                        let (_, mut out) = answer(0, "ok");
                        out["user"] = user;
                        (0, out)
                    }
                    None => answer(5, "receiverNotRegistered"),
                }
            }
            "get_online" => {
                let ids: Vec<String> = body
                    .get("ids")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                let s = self.state();
                let users: Vec<Value> = ids
                    .iter()
                    .map(|id| {
                        let known = s.users.contains_key(id);
                        json!({"id": id, "online_status": if known { 0 } else { 3 },
                            "online_status_message": if known { "online" } else { "unavailable" }})
                    })
                    .collect();
                let (_, mut out) = answer(0, "ok");
                out["users"] = json!(users);
                (0, out)
            }
            "get_account_info" => {
                let s = self.state();
                let (_, mut out) = answer(0, "ok");
                let extra = json!({"id": "pa:5390087001", "name": "Acme Support", "uri": "acmesupport",
                    "icon": format!("http://{}/media/icon.jpg", self.addr), "category": "Companies", "subcategory": "Retail",
                    "country": "DE", "webhook": s.webhook.as_ref().map(|w| w.url.clone()).unwrap_or_default(),
                    "event_types": s.webhook.as_ref().map(|w| w.event_types.clone()).unwrap_or_default(),
                    "subscribers_count": s.users.values().filter(|u| u.subscription == Subscription::Subscribed).count(),
                    "members": [{"id": "01234567890A=", "name": "Owner", "role": "admin"}]});
                if let (Value::Object(out), Value::Object(extra)) = (&mut out, extra) {
                    out.extend(extra);
                }
                (0, out)
            }
            _ => answer(3, "badData: unknown method"),
        }
    }

    async fn set_webhook(&self, body: &Value) -> (i64, Value) {
        let url = string(body, "url").unwrap_or_default().to_owned();
        if url.is_empty() {
            self.state().webhook = None;
            return answer(0, "ok");
        }
        let token = {
            let mut s = self.state();
            let token = s.next_in;
            s.next_in += 1;
            token
        };
        // Viber checks the URL before it answers
        let check = json!({"event": "webhook", "timestamp": self.now_ms(), "chat_hostname": "SN-CHAT-02_", "message_token": token});
        let delivery = self.post_to(&url, &check, Signature::Right).await;
        if delivery.status != 200 {
            return answer(1, &format!("Result[HttpRequest[POST {url}] Response[{}]] is not 200 OK", delivery.status));
        }
        let mut event_types: Vec<String> = body
            .get("event_types")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_else(|| {
                ["delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started"]
                    .map(str::to_owned)
                    .to_vec()
            });
        for always in ["subscribed", "unsubscribed", "conversation_started", "message"] {
            if !event_types.iter().any(|e| e == always) {
                event_types.push(always.to_owned());
            }
        }
        let webhook = Webhook {
            url,
            event_types: event_types.clone(),
            send_name: body.get("send_name").and_then(Value::as_bool).unwrap_or(false),
            send_photo: body.get("send_photo").and_then(Value::as_bool).unwrap_or(false),
        };
        self.state().webhook = Some(webhook);
        let (_, mut out) = answer(0, "ok");
        out["event_types"] = json!(event_types);
        (0, out)
    }

    /// Checks a `send_message` body against Viber's rules.
    fn validate(&self, body: &Value) -> Result<(String, String), (i64, Value)> {
        let receiver =
            string(body, "receiver").filter(|r| !r.is_empty()).ok_or_else(|| answer(4, "missingData: receiver"))?;
        let kind = string(body, "type").ok_or_else(|| answer(4, "missingData: type"))?;
        let name = body.get("sender").and_then(|s| s.get("name")).and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            return Err(answer(4, "missingData: sender.name"));
        }
        if chars(name) > 28 {
            return Err(answer(3, "badData: sender.name is over 28 characters"));
        }
        if string(body, "tracking_data").is_some_and(|t| chars(t) > 4000) {
            return Err(answer(3, "badData: tracking_data is over 4000 characters"));
        }
        let has = |field: &str| body.get(field).is_some_and(|v| !v.is_null());
        match kind {
            "text" => {
                let text = string(body, "text").unwrap_or_default();
                if text.is_empty() {
                    return Err(answer(4, "missingData: text"));
                }
                if chars(text) > 7000 {
                    return Err(answer(3, "badData: text is over 7000 characters"));
                }
            }
            "picture" => {
                if !has("media") {
                    return Err(answer(4, "missingData: media"));
                }
                if string(body, "text").is_some_and(|t| chars(t) > 512) {
                    return Err(answer(3, "badData: picture text is over 512 characters"));
                }
            }
            "video" => {
                if !has("media") || !has("size") {
                    return Err(answer(4, "missingData: media, size"));
                }
            }
            "file" => {
                if !has("media") || !has("size") || !has("file_name") {
                    return Err(answer(4, "missingData: media, size, file_name"));
                }
                if string(body, "file_name").is_some_and(|n| chars(n) > 256) {
                    return Err(answer(3, "badData: file_name is over 256 characters"));
                }
            }
            "location" => {
                let l = body.get("location");
                let ok = l.and_then(|l| l.get("lat")).is_some_and(Value::is_number)
                    && l.and_then(|l| l.get("lon")).is_some_and(Value::is_number);
                if !ok {
                    return Err(answer(3, "badData: location"));
                }
            }
            "contact" => {
                let c = body.get("contact");
                if c.and_then(|c| c.get("name")).and_then(Value::as_str).is_none()
                    || c.and_then(|c| c.get("phone_number")).and_then(Value::as_str).is_none()
                {
                    return Err(answer(4, "missingData: contact"));
                }
            }
            "sticker" => {
                if !body.get("sticker_id").is_some_and(Value::is_u64) {
                    return Err(answer(3, "badData: sticker_id"));
                }
            }
            "url" => {
                if !string(body, "media").is_some_and(|m| !m.is_empty() && chars(m) <= 2000) {
                    return Err(answer(3, "badData: media"));
                }
            }
            "rich_media" => {}
            _ => return Err(answer(3, "badData: type")),
        }
        let s = self.state();
        match s.users.get(receiver) {
            None => return Err(answer(5, "receiverNotRegistered")),
            Some(u) if u.subscription != Subscription::Subscribed => return Err(answer(6, "receiverNotSubscribed")),
            Some(u) if u.unanswered >= UNANSWERED_MAX => {
                let (status, mut out) = answer(12, "Too many requests");
                out["message_token"] = json!(0);
                return Err((status, out));
            }
            Some(_) => {}
        }
        Ok((receiver.to_owned(), kind.to_owned()))
    }

    /// What the client would reject about a keyboard (then a `failed` callback).
    fn keyboard_problem(body: &Value) -> Option<&'static str> {
        let buttons = body.get("keyboard")?.get("Buttons")?.as_array()?;
        let api = body.get("min_api_version").and_then(Value::as_u64).unwrap_or(1);
        for button in buttons {
            let columns = button.get("Columns").and_then(Value::as_u64).unwrap_or(6);
            let rows = button.get("Rows").and_then(Value::as_u64).unwrap_or(1);
            if !(1..=6).contains(&columns) || !(1..=2).contains(&rows) {
                return Some("keyboard validation failed");
            }
            if button.get("ActionType").and_then(Value::as_str) == Some("share-phone") && api < 3 {
                return Some("keyboard validation failed");
            }
        }
        None
    }

    async fn send_message(&self, body: &Value, at: Duration) -> (i64, Value) {
        let (receiver, kind) = match self.validate(body) {
            Ok(ok) => ok,
            Err(refused) => return refused,
        };
        // Viber fetches the media before it accepts the message
        let mut fetch_failed = false;
        let mut fetched = None;
        if matches!(kind.as_str(), "picture" | "video" | "file") {
            let url = string(body, "media").unwrap_or_default().to_owned();
            let (status, bytes) = match self.shared.http.get(&url).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    (status, r.bytes().await.unwrap_or_default())
                }
                Err(_) => (0, Bytes::new()),
            };
            fetch_failed = status != 200;
            fetched = Some(Fetched { token: None, url, status, bytes });
        }
        let token = {
            let mut s = self.state();
            let token = s.next_out;
            s.next_out += 1;
            s.sent.push(Sent { token, receiver: receiver.clone(), body: body.clone(), at });
            if let Some(mut f) = fetched {
                f.token = Some(token);
                s.fetched.push(f);
            }
            if let Some(u) = s.users.get_mut(&receiver) {
                u.unanswered += 1;
                u.tracking = string(body, "tracking_data").map(str::to_owned);
            }
            token
        };
        let problem = if fetch_failed { Some("media could not be downloaded") } else { Self::keyboard_problem(body) };
        if let Some(desc) = problem {
            self.failed(token, &receiver, desc);
        } else if self.state().auto_receipts {
            let fake = self.clone();
            tokio::spawn(async move {
                for event in ["delivered", "seen"] {
                    let body = json!({"event": event, "timestamp": fake.now_ms(), "chat_hostname": "SN-CHAT-02_",
                        "message_token": token, "user_id": receiver});
                    fake.deliver(body).await;
                }
            });
        }
        (
            0,
            json!({"status": 0, "status_message": "ok", "message_token": token, "chat_hostname": "SN-CHAT-04_", "billing_status": 1}),
        )
    }
}

async fn api(State(fake): State<FakeViber>, Path(method): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let at = fake.elapsed();
    let latency = fake.state().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (status, answer) = fake.dispatch(&method, &headers, &body, at).await;
    let recorded: HashMap<String, String> = headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_ascii_lowercase(), v.to_owned())))
        .collect();
    let parsed = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    fake.state().calls.push(Call { method, at, headers: recorded, body: parsed, status, answer: answer.clone() });
    (StatusCode::OK, axum::Json(answer)).into_response()
}

async fn media(State(fake): State<FakeViber>, Path(name): Path<String>) -> Response {
    let bytes = {
        let mut s = fake.state();
        if s.media_failures > 0 {
            s.media_failures -= 1;
            return (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
        }
        s.media.get(&name).cloned()
    };
    match bytes {
        Some(bytes) => {
            let mime = match name.rsplit_once('.').map(|(_, e)| e) {
                Some("jpg") => "image/jpeg",
                Some("png") => "image/png",
                Some("mp4") => "video/mp4",
                _ => "application/octet-stream",
            };
            ([(header::CONTENT_TYPE, mime)], bytes).into_response()
        }
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}
