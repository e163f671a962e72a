//! A fake VK API for tests, speaking the real wire format (`docs/platforms.md#vk`, §5 and the
//! fake's list in §5.7).
//!
//! - `GET`/`POST /method/<name>` with query, form or multipart parameters, `access_token` (or
//!   `Authorization: Bearer`) and `v`; **always HTTP 200** with `{"response": ...}` or
//!   `{"error": {"error_code", "error_msg", "request_params"}}`. A wrong or missing token is
//!   error 5, a missing `v` error 8. JSON bodies are not read (as VK's API does not).
//! - `messages.send` (with `peer_id`, `user_id` or `peer_ids`) **deduplicates on `random_id` as
//!   VK does**: the same `random_id` to the same peer within the window returns the first
//!   message's id and sends nothing ([`FakeVk::deduplicated`]); only real deliveries are in
//!   [`FakeVk::sent`]. Validated: `random_id` required, some content, text ≤ 4096 (914),
//!   keyboards (10 rows × 5 and 40 buttons; inline 6 × 5 and 10; labels ≤ 40; payloads ≤ 255;
//!   the action types; else 911), attachments that were uploaded and saved (100), permission
//!   (a user who wrote or allowed messages, and did not deny them since: else 901). Each send
//!   is echoed as `message_reply`, as VK does.
//! - `messages.edit` (909 past a configured age; echoed as `message_edit`), `messages.delete`
//!   (924 for everybody past a configured age), `messages.getById`,
//!   `messages.sendMessageEventAnswer` (the `event_id` of a press, for a minute),
//!   `messages.isMessagesFromGroupAllowed`, `messages.markAsRead`, `messages.setActivity`,
//!   `users.get` (`photo_200`), `groups.getLongPollServer`, `groups.setLongPollSettings`,
//!   `groups.getCallbackConfirmationCode`, `groups.getById`.
//! - Upload servers: `photos.getMessagesUploadServer` → `POST /upload/photo/<n>` (field `photo`;
//!   JPEG, PNG or GIF, else `"photo": "[]"`) → `photos.saveMessagesPhoto`;
//!   `docs.getMessagesUploadServer` (`doc`, `audio_message`, `graffiti`) → `POST /upload/doc/..`
//!   (field `file`; no MP3 and no executables; a voice message must be OGG) → `docs.save`. The
//!   bytes are recorded ([`FakeVk::uploads`]).
//! - The Bots Long Poll at `/lp/<group>`: `act=a_check&key&ts&wait`, held up to `wait` (at most
//!   90 s), at most 100 updates an answer; injectable `failed` 1, 2, 3 ([`FakeVk::fail_poll`]) and
//!   key expiry ([`FakeVk::expire_keys`]); how often each update was handed out is counted
//!   ([`FakeVk::handed_out`]).
//! - The Callback API sender ([`FakeVk::use_callback`]): the `confirmation` request expecting
//!   the exact string, events with the right, a wrong or no `secret` expecting the body `ok`,
//!   retried otherwise with a growing `X-Retry-Counter` (honouring `Retry-After`, capped);
//!   every try recorded ([`FakeVk::callbacks`]).
//! - Faults on demand ([`FakeVk::fail_next`]: any error code, e.g. 5, 6, 9, 901), a per-token
//!   limit of calls a second (error 6), latency; `GET /media/<name>`: the files of inbound
//!   attachments, which can be made to fail.
//! - Every API request is recorded ([`FakeVk::calls`]) with its parameters and answer.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// Unix time in seconds the fake's clock starts at (2026-01-02).
pub const EPOCH: i64 = 1_767_312_000;
/// The community's first message id.
pub const FIRST_MESSAGE_ID: i64 = 812;
/// The long poll's first `ts`.
pub const FIRST_TS: u64 = 2210;
/// Updates in one long-poll answer at most.
const BATCH: usize = 100;

/// One recorded API request.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// When it arrived (before the fake's latency), since the fake started.
    pub at: Duration,
    /// Every parameter (query, form and multipart text fields), the token left out.
    pub params: BTreeMap<String, String>,
    /// The error code answered, if any.
    pub error: Option<i64>,
    /// The whole answer.
    pub answer: Value,
}

impl Call {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// A VK user of the fake.
#[derive(Debug, Clone)]
pub struct VkUser {
    pub id: i64,
    pub first_name: String,
    pub last_name: String,
    /// Their `photo_200` URL (e.g. one of [`FakeVk::add_media`]); VK's placeholder when `None`.
    pub photo_200: Option<String>,
}

impl VkUser {
    pub fn new(id: i64, first_name: &str, last_name: &str) -> Self {
        VkUser { id, first_name: first_name.into(), last_name: last_name.into(), photo_200: None }
    }

    fn json(&self, photo: bool) -> Value {
        let mut v = json!({"id": self.id, "first_name": self.first_name, "last_name": self.last_name,
            "can_access_closed": true, "is_closed": false});
        if photo {
            v["photo_200"] =
                json!(self.photo_200.clone().unwrap_or_else(|| "https://vk.com/images/camera_200.png".into()));
        }
        v
    }
}

/// A message the community sent (a real delivery: repeats absorbed by `random_id` are not).
#[derive(Debug, Clone)]
pub struct Sent {
    pub id: i64,
    pub peer_id: i64,
    pub random_id: i64,
    pub params: BTreeMap<String, String>,
    /// When the request arrived, since the fake started.
    pub at: Duration,
    /// The text now (after edits).
    pub text: String,
    pub edits: Vec<String>,
    pub deleted: bool,
}

impl Sent {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// The `keyboard` parameter, parsed.
    pub fn keyboard(&self) -> Option<Value> {
        self.param("keyboard").and_then(|k| serde_json::from_str(k).ok())
    }
}

/// A `messages.send` VK absorbed: the same `random_id` to the same peer again.
#[derive(Debug, Clone)]
pub struct Deduplicated {
    pub peer_id: i64,
    pub random_id: i64,
    /// The first message's id, which was answered again.
    pub id: i64,
    pub at: Duration,
}

/// A file posted to an upload server.
#[derive(Debug, Clone)]
pub struct Upload {
    /// `photo`, `doc`, `audio_message` or `graffiti`.
    pub kind: String,
    pub field: String,
    pub file_name: String,
    pub content_type: String,
    pub bytes: Bytes,
    /// Whether it was saved (`photos.saveMessagesPhoto` / `docs.save`) and as what
    /// (`photo-231000555_457239017`).
    pub saved_as: Option<String>,
}

/// One try of a Callback API request and what the hub answered.
#[derive(Debug, Clone)]
pub struct CallbackTry {
    pub event_id: Option<String>,
    pub kind: String,
    /// HTTP status (0: unreachable).
    pub status: u16,
    pub body: String,
    /// The `X-Retry-Counter` sent (0 on the first try).
    pub retry: u32,
    pub at: Duration,
}

/// How a callback carries its secret, for tests of the hub's check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    Right,
    Wrong,
    Missing,
}

/// `messages.sendMessageEventAnswer` as the fake received it.
#[derive(Debug, Clone)]
pub struct EventAnswer {
    pub event_id: String,
    pub user_id: i64,
    pub peer_id: i64,
    pub event_data: Option<String>,
    /// Whether the fake accepted it (a known event, within a minute).
    pub accepted: bool,
}

struct Fault {
    method: String,
    code: i64,
    message: String,
}

struct Event {
    seq: u64,
    event_id: Option<String>,
    raw: String,
    handed_out: u32,
}

struct Callback {
    url: String,
    secret: String,
    tries: u32,
    pause: Duration,
}

struct Pending {
    kind: String,
    file_name: String,
    content_type: String,
    ext: String,
    bytes: Bytes,
}

struct State_ {
    started: Instant,
    calls: Vec<Call>,
    users: HashMap<i64, VkUser>,
    /// Whether a user lets the community write (they wrote or allowed; `false` after a deny).
    allowed: HashMap<i64, bool>,
    next_id: i64,
    next_event: u64,
    sent: Vec<Sent>,
    /// (peer, random_id) -> (message id, when)
    dedupe: HashMap<(i64, i64), (i64, Duration)>,
    dedupe_window: Duration,
    deduplicated: Vec<Deduplicated>,
    /// Customers' messages by id: (peer, when).
    inbound: HashMap<i64, Duration>,
    events: Vec<Event>,
    keys: HashSet<String>,
    next_key: u64,
    poll_faults: VecDeque<u8>,
    callback: Option<Callback>,
    callbacks: Vec<CallbackTry>,
    confirmation_code: String,
    faults: VecDeque<Fault>,
    /// Methods whose next request is carried out and its answer lost (HTTP 502).
    lose_answer: VecDeque<String>,
    per_second: Option<usize>,
    recent: VecDeque<Duration>,
    latency: Duration,
    next_upload: u64,
    pending_uploads: HashMap<String, Pending>,
    uploads: Vec<Upload>,
    /// Saved attachments: `photo<owner>_<id>` -> access key (photos) or "" (docs).
    saved: HashMap<String, String>,
    media: HashMap<String, (Bytes, String)>,
    next_media: u64,
    media_failures: u32,
    /// Button presses: event id -> (user, peer, when).
    presses: HashMap<String, (i64, i64, Duration)>,
    event_answers: Vec<EventAnswer>,
    edit_max_age: Duration,
    delete_max_age: Duration,
    /// `message_reply` / `message_edit` echoes of the community's own messages.
    echoes: bool,
    long_poll_settings: BTreeMap<String, String>,
}

struct Shared {
    token: String,
    group_id: i64,
    state: Mutex<State_>,
    /// Rung when an update is queued for the long poll.
    updates: Notify,
    http: reqwest::Client,
}

/// A running fake VK API. Dropping it does not stop the server (tests end with the runtime).
#[derive(Clone)]
pub struct FakeVk {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

fn error(code: i64, message: &str, params: &BTreeMap<String, String>) -> Value {
    let request_params: Vec<Value> = params.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
    json!({"error": {"error_code": code, "error_msg": message, "request_params": request_params}})
}

type Answer = Result<Value, (i64, String)>;

fn refuse<T>(code: i64, message: impl Into<String>) -> Result<T, (i64, String)> {
    Err((code, message.into()))
}

fn int(params: &BTreeMap<String, String>, name: &str) -> Option<i64> {
    params.get(name).and_then(|v| v.trim().parse().ok())
}

impl FakeVk {
    /// Starts the fake on `127.0.0.1:0` for community `group_id` with token `token`.
    pub async fn start(token: &str, group_id: i64) -> Self {
        use axum::serve::ListenerExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake");
        let addr = listener.local_addr().expect("bound address");
        let fake = FakeVk {
            addr,
            shared: Arc::new(Shared {
                token: token.to_owned(),
                group_id,
                state: Mutex::new(State_ {
                    started: Instant::now(),
                    calls: Vec::new(),
                    users: HashMap::new(),
                    allowed: HashMap::new(),
                    next_id: FIRST_MESSAGE_ID,
                    next_event: 0x9a41_c0e7_b2d3,
                    sent: Vec::new(),
                    dedupe: HashMap::new(),
                    dedupe_window: Duration::from_secs(3600),
                    deduplicated: Vec::new(),
                    inbound: HashMap::new(),
                    events: Vec::new(),
                    keys: HashSet::new(),
                    next_key: 1,
                    poll_faults: VecDeque::new(),
                    callback: None,
                    callbacks: Vec::new(),
                    confirmation_code: "a1b2c3d4".into(),
                    faults: VecDeque::new(),
                    lose_answer: VecDeque::new(),
                    per_second: None,
                    recent: VecDeque::new(),
                    latency: Duration::ZERO,
                    next_upload: 1,
                    pending_uploads: HashMap::new(),
                    uploads: Vec::new(),
                    saved: HashMap::new(),
                    media: HashMap::new(),
                    next_media: 1,
                    media_failures: 0,
                    presses: HashMap::new(),
                    event_answers: Vec::new(),
                    edit_max_age: Duration::from_secs(24 * 3600),
                    delete_max_age: Duration::from_secs(24 * 3600),
                    echoes: true,
                    long_poll_settings: BTreeMap::new(),
                }),
                updates: Notify::new(),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .expect("a plain HTTP client builds"),
            }),
        };
        let router = Router::new()
            .route("/method/{method}", any(api))
            .route("/lp/{group}", get(long_poll))
            .route("/upload/{kind}/{id}", post(upload))
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

    pub fn group_id(&self) -> i64 {
        self.shared.group_id
    }

    /// Time since the fake started: the clock of [`Call::at`] and [`Sent::at`].
    pub fn elapsed(&self) -> Duration {
        self.state().started.elapsed()
    }

    fn now_s(&self) -> i64 {
        EPOCH + self.elapsed().as_secs() as i64
    }

    // ------------------------------------------------------------------- what happened --

    /// Every API request so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Requests of one method, in arrival order.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.state().calls.iter().filter(|c| c.method == method).cloned().collect()
    }

    /// Every message the community really sent, in order (repeats VK absorbed are not here).
    pub fn sent(&self) -> Vec<Sent> {
        self.state().sent.clone()
    }

    /// Messages really sent to `peer`, in order.
    pub fn sent_to(&self, peer: i64) -> Vec<Sent> {
        self.state().sent.iter().filter(|s| s.peer_id == peer).cloned().collect()
    }

    /// The message with this id.
    pub fn message(&self, id: i64) -> Option<Sent> {
        self.state().sent.iter().find(|s| s.id == id).cloned()
    }

    /// Sends VK absorbed because their `random_id` had been sent to the peer before.
    pub fn deduplicated(&self) -> Vec<Deduplicated> {
        self.state().deduplicated.clone()
    }

    /// Files posted to the upload servers, in order.
    pub fn uploads(&self) -> Vec<Upload> {
        self.state().uploads.clone()
    }

    /// Callback API tries so far, in order.
    pub fn callbacks(&self) -> Vec<CallbackTry> {
        self.state().callbacks.clone()
    }

    /// The tries of the callback with this `event_id`.
    pub fn callbacks_of(&self, event_id: &str) -> Vec<CallbackTry> {
        self.state().callbacks.iter().filter(|c| c.event_id.as_deref() == Some(event_id)).cloned().collect()
    }

    /// `messages.sendMessageEventAnswer` calls, in order.
    pub fn event_answers(&self) -> Vec<EventAnswer> {
        self.state().event_answers.clone()
    }

    /// How many times the long poll handed out each update, by `event_id`.
    pub fn handed_out(&self) -> HashMap<String, u32> {
        self.state().events.iter().filter_map(|e| e.event_id.clone().map(|id| (id, e.handed_out))).collect()
    }

    /// The long poll's next `ts`.
    pub fn ts(&self) -> u64 {
        let s = self.state();
        FIRST_TS + s.events.len() as u64
    }

    /// What `groups.setLongPollSettings` last set.
    pub fn long_poll_settings(&self) -> BTreeMap<String, String> {
        self.state().long_poll_settings.clone()
    }

    pub fn allowed(&self, user: i64) -> bool {
        self.state().allowed.get(&user).copied().unwrap_or(false)
    }

    // --------------------------------------------------------------------- behaviour --

    /// The next request of `method` (any method for `"*"`) is answered with VK error `code`.
    pub fn fail_next(&self, method: &str, code: i64, message: &str) {
        self.state().faults.push_back(Fault { method: method.into(), code, message: message.into() });
    }

    /// The next request of `method` that VK carries out (answers without an error) has its
    /// answer lost on the way back (HTTP 502): the caller cannot know whether it worked.
    pub fn lose_answer_next(&self, method: &str) {
        self.state().lose_answer.push_back(method.into());
    }

    /// Whether the community may write to `user`, changed without an update (as if VK had
    /// forgotten, or the user had never written).
    pub fn set_allowed(&self, user: i64, allowed: bool) {
        self.state().allowed.insert(user, allowed);
    }

    /// At most `n` calls a second with the token, error 6 beyond (`None`: no limit).
    pub fn set_rate_limit(&self, n: Option<usize>) {
        self.state().per_second = n;
    }

    /// Every API answer waits this long first.
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    /// How long a `random_id` is remembered per peer.
    pub fn set_dedupe_window(&self, window: Duration) {
        self.state().dedupe_window = window;
    }

    /// Messages older than these cannot be edited (909) or deleted for everybody (924).
    pub fn set_max_ages(&self, edit: Duration, delete: Duration) {
        let mut s = self.state();
        s.edit_max_age = edit;
        s.delete_max_age = delete;
    }

    /// Whether the community's own sends and edits come back as `message_reply` /
    /// `message_edit` updates (as VK does; on by default).
    pub fn set_echoes(&self, on: bool) {
        self.state().echoes = on;
    }

    /// The next long-poll check answers `{"failed": n}` (1: with a new `ts`, history lost).
    pub fn fail_poll(&self, failed: u8) {
        self.state().poll_faults.push_back(failed);
        // a check held open answers it now
        self.shared.updates.notify_waiters();
    }

    /// Every long-poll key given so far stops working (`failed: 2`).
    pub fn expire_keys(&self) {
        self.state().keys.clear();
        self.shared.updates.notify_waiters();
    }

    /// Events go to `url` by the Callback API with `secret` from now on (instead of the long
    /// poll), at most `tries` times each, the n-th retry after n × `pause`.
    pub fn use_callback(&self, url: &str, secret: &str, tries: u32, pause: Duration) {
        self.state().callback = Some(Callback { url: url.into(), secret: secret.into(), tries: tries.max(1), pause });
    }

    pub fn set_confirmation_code(&self, code: &str) {
        self.state().confirmation_code = code.into();
    }

    /// Serves `bytes` at a media URL (`/media/<n>.<ext>`) and returns the URL.
    pub fn add_media(&self, bytes: impl Into<Bytes>, ext: &str) -> String {
        let mut s = self.state();
        let name = format!("{}.{ext}", s.next_media);
        s.next_media += 1;
        let mime = match ext {
            "jpg" => "image/jpeg",
            "png" => "image/png",
            "mp4" => "video/mp4",
            "ogg" => "audio/ogg",
            "pdf" => "application/pdf",
            _ => "application/octet-stream",
        };
        s.media.insert(name.clone(), (bytes.into(), mime.into()));
        format!("http://{}/media/{name}", self.addr)
    }

    /// The next `times` media GETs answer 503.
    pub fn fail_media(&self, times: u32) {
        self.state().media_failures = times;
    }

    /// Makes `user` known to `users.get` (without letting the community write to them).
    pub fn add_user(&self, user: &VkUser) {
        self.state().users.insert(user.id, user.clone());
    }

    // ------------------------------------------------------------------------- events --

    fn next_event_id(&self) -> String {
        let mut s = self.state();
        s.next_event += 0x1_0001;
        format!("{:012x}", s.next_event)
    }

    /// An update of `kind` with `object` (the envelope added: `group_id`, a new `event_id`,
    /// `v`), to the long poll or the Callback API; returns its `event_id`.
    pub fn push(&self, kind: &str, object: Value) -> String {
        let event_id = self.next_event_id();
        let update = json!({"group_id": self.shared.group_id, "type": kind, "event_id": event_id, "v": "5.199", "object": object});
        self.push_update(update);
        event_id
    }

    /// Queues an update as it is (long poll), or posts it (callback mode, with the secret).
    pub fn push_update(&self, update: Value) {
        let callback = {
            let s = self.state();
            s.callback.as_ref().map(|c| (c.url.clone(), c.secret.clone()))
        };
        match callback {
            None => self.push_raw(serde_json::to_string(&update).expect("JSON")),
            Some(_) => {
                let fake = self.clone();
                tokio::spawn(async move { fake.deliver(update).await });
            }
        }
    }

    /// Queues `raw` for the long poll exactly as given (it must be JSON, as the answer is
    /// assembled from it: an update the hub cannot read, say).
    pub fn push_raw(&self, raw: String) {
        let event_id = serde_json::from_str::<Value>(&raw)
            .ok()
            .and_then(|v| v.get("event_id").and_then(Value::as_str).map(str::to_owned));
        {
            let mut s = self.state();
            let seq = FIRST_TS + s.events.len() as u64;
            s.events.push(Event { seq, event_id, raw, handed_out: 0 });
        }
        self.shared.updates.notify_waiters();
    }

    /// POSTs an update to the Callback URL until the hub answers 200 `ok`, or the tries run
    /// out; returns the last try.
    pub async fn deliver(&self, update: Value) -> CallbackTry {
        let (tries, pause) = {
            let s = self.state();
            s.callback.as_ref().map(|c| (c.tries, c.pause)).unwrap_or((1, Duration::ZERO))
        };
        let mut last = None;
        for retry in 0..tries {
            let attempt = self.post_callback_try(&update, Secret::Right, retry).await;
            let ok = attempt.status == 200 && attempt.body == "ok";
            last = Some(attempt);
            if ok {
                break;
            }
            tokio::time::sleep(pause * (retry + 1).min(20)).await;
        }
        last.expect("at least one try")
    }

    /// POSTs `update` once to the Callback URL with its secret as `secret` says; recorded.
    pub async fn post_callback(&self, update: &Value, secret: Secret) -> CallbackTry {
        self.post_callback_try(update, secret, 0).await
    }

    async fn post_callback_try(&self, update: &Value, secret: Secret, retry: u32) -> CallbackTry {
        let (url, right) = {
            let s = self.state();
            s.callback.as_ref().map(|c| (c.url.clone(), c.secret.clone())).unwrap_or_default()
        };
        let mut body = update.clone();
        match secret {
            Secret::Right => body["secret"] = json!(right),
            Secret::Wrong => body["secret"] = json!(format!("{right}-not")),
            Secret::Missing => {
                if let Some(map) = body.as_object_mut() {
                    map.remove("secret");
                }
            }
        }
        let raw = serde_json::to_vec(&body).expect("JSON");
        let (status, text, retry_after) = self.post_raw_to(&url, &raw, retry).await;
        let attempt = CallbackTry {
            event_id: update.get("event_id").and_then(Value::as_str).map(str::to_owned),
            kind: update.get("type").and_then(Value::as_str).unwrap_or_default().to_owned(),
            status,
            body: text,
            retry,
            at: self.elapsed(),
        };
        self.state().callbacks.push(attempt.clone());
        if let Some(wait) = retry_after {
            // VK waits as asked (up to 3 h); the fake at most a second
            tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
        }
        attempt
    }

    /// POSTs raw bytes to the Callback URL (not recorded): for bodies a builder would not make.
    pub async fn post_raw(&self, raw: &[u8]) -> (u16, String) {
        let url = self.state().callback.as_ref().map(|c| c.url.clone()).unwrap_or_default();
        let (status, body, _) = self.post_raw_to(&url, raw, 0).await;
        (status, body)
    }

    async fn post_raw_to(&self, url: &str, raw: &[u8], retry: u32) -> (u16, String, Option<Duration>) {
        if url.is_empty() {
            return (0, "no callback URL".into(), None);
        }
        let mut request = self.shared.http.post(url).header(header::CONTENT_TYPE, "application/json");
        if retry > 0 {
            request = request.header("X-Retry-Counter", retry.to_string());
        }
        match request.body(raw.to_vec()).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|_| matches!(status, 410 | 429 | 503))
                    .map(Duration::from_secs);
                (status, response.text().await.unwrap_or_default(), retry_after)
            }
            Err(_) => (0, String::new(), None),
        }
    }

    /// VK's confirmation request to the Callback URL (with the secret, unless `secret` is
    /// `Missing`); returns the HTTP status, the body and whether it is the confirmation string.
    pub async fn confirm(&self, secret: Secret) -> (u16, String, bool) {
        let update = json!({"type": "confirmation", "group_id": self.shared.group_id});
        let attempt = self.post_callback(&update, secret).await;
        let code = self.state().confirmation_code.clone();
        let confirmed = attempt.status == 200 && attempt.body == code;
        (attempt.status, attempt.body, confirmed)
    }

    // ------------------------------------------------------------- customer's updates --

    fn next_message_id(&self) -> i64 {
        let mut s = self.state();
        let id = s.next_id;
        s.next_id += 1;
        id
    }

    /// A `message_new` from `user`, `fields` merged into the message object (`text`,
    /// `attachments`, `geo`, `fwd_messages`, `reply_message`...); returns the message id.
    /// Writing lets the community answer them.
    pub fn message_new(&self, user: &VkUser, fields: Value) -> i64 {
        let id = self.next_message_id();
        {
            let mut s = self.state();
            s.users.insert(user.id, user.clone());
            s.allowed.insert(user.id, true);
            let at = s.started.elapsed();
            s.inbound.insert(id, at);
        }
        let mut message = json!({"date": self.now_s(), "from_id": user.id, "id": id, "out": 0, "version": 10000000 + id,
            "attachments": [], "conversation_message_id": id - 700, "fwd_messages": [], "important": false,
            "is_hidden": false, "peer_id": user.id, "random_id": 0, "text": ""});
        if let (Some(m), Value::Object(fields)) = (message.as_object_mut(), fields) {
            m.extend(fields);
        }
        self.push(
            "message_new",
            json!({"message": message, "client_info": {"button_actions": ["text", "vkpay", "open_app", "location",
                "open_link", "callback", "intent_subscribe", "intent_unsubscribe"], "keyboard": true, "inline_keyboard": true,
                "carousel": true, "lang_id": 0}}),
        );
        id
    }

    pub fn text(&self, user: &VkUser, text: &str) -> i64 {
        self.message_new(user, json!({"text": text}))
    }

    /// A photo with a small size (other bytes) and a large one serving `bytes`.
    pub fn photo(&self, user: &VkUser, bytes: impl Into<Bytes>, caption: Option<&str>) -> i64 {
        let small = self.add_media(b"small preview".to_vec(), "jpg");
        let large = self.add_media(bytes, "jpg");
        let id = 457_239_101 + self.state().next_media as i64;
        let photo = json!({"album_id": -3, "date": self.now_s(), "id": id, "owner_id": user.id, "access_key": "f00dcafe",
            "sizes": [{"height": 98, "type": "m", "width": 130, "url": small},
                      {"height": 453, "type": "x", "width": 604, "url": large}], "text": ""});
        self.message_new(
            user,
            json!({"text": caption.unwrap_or_default(), "attachments": [{"type": "photo", "photo": photo}]}),
        )
    }

    pub fn document(&self, user: &VkUser, title: &str, bytes: impl Into<Bytes>) -> i64 {
        let bytes = bytes.into();
        let ext = title.rsplit_once('.').map(|(_, e)| e.to_owned()).unwrap_or_default();
        let size = bytes.len();
        let url = self.add_media(bytes, if ext.is_empty() { "bin" } else { &ext });
        let doc = json!({"id": 680_221_133, "owner_id": user.id, "title": title, "size": size, "ext": ext,
            "date": self.now_s(), "type": 1, "url": url, "access_key": "0a1b2c"});
        self.message_new(user, json!({"attachments": [{"type": "doc", "doc": doc}]}))
    }

    pub fn voice(&self, user: &VkUser, ogg: impl Into<Bytes>) -> i64 {
        let url = self.add_media(ogg, "ogg");
        let voice = json!({"id": 456_239_200, "owner_id": user.id, "duration": 3, "waveform": [0, 5, 9, 3],
            "link_ogg": url, "link_mp3": format!("{url}.mp3"), "access_key": "ffee"});
        self.message_new(user, json!({"attachments": [{"type": "audio_message", "audio_message": voice}]}))
    }

    pub fn sticker(&self, user: &VkUser, sticker_id: i64) -> i64 {
        let small = self.add_media(format!("sticker {sticker_id} 128").into_bytes(), "png");
        let large = self.add_media(format!("sticker {sticker_id} 512").into_bytes(), "png");
        let sticker = json!({"product_id": 279, "sticker_id": sticker_id, "images": [
            {"url": small, "width": 128, "height": 128}, {"url": large, "width": 512, "height": 512}],
            "images_with_background": [{"url": small, "width": 128, "height": 128}], "animation_url": null});
        self.message_new(user, json!({"attachments": [{"type": "sticker", "sticker": sticker}]}))
    }

    /// A video with a downloadable file (`files.mp4_720`), as VK gives for some videos.
    pub fn video(&self, user: &VkUser, title: &str, mp4: impl Into<Bytes>) -> i64 {
        let url = self.add_media(mp4, "mp4");
        let video = json!({"id": 456_239_017, "owner_id": user.id, "title": title, "duration": 12, "access_key": "aa",
            "files": {"mp4_720": url}, "image": []});
        self.message_new(user, json!({"attachments": [{"type": "video", "video": video}]}))
    }

    pub fn location(&self, user: &VkUser, lat: f64, lon: f64, place: Option<&str>) -> i64 {
        let mut geo = json!({"type": "point", "coordinates": {"latitude": lat, "longitude": lon}});
        if let Some(place) = place {
            geo["place"] = json!({"title": place, "country": "Russia", "city": "Saint Petersburg"});
        }
        self.message_new(user, json!({"geo": geo}))
    }

    /// `user` forwards a message `author` wrote.
    pub fn forward(&self, user: &VkUser, author: &VkUser, text: &str) -> i64 {
        self.add_user(author);
        let date = self.now_s() - 3600;
        self.message_new(
            user,
            json!({"fwd_messages": [{"date": date, "from_id": author.id, "text": text, "attachments": [],
                "conversation_message_id": 3, "peer_id": author.id, "id": 0}]}),
        )
    }

    /// `user` answers the message `reply_to` (quoting it).
    pub fn reply(&self, user: &VkUser, text: &str, reply_to: i64) -> i64 {
        let quoted = self.message(reply_to).map(|m| m.text).unwrap_or_default();
        self.message_new(
            user,
            json!({"text": text, "reply_message": {"id": reply_to, "date": self.now_s(), "from_id": -self.shared.group_id,
                "peer_id": user.id, "text": quoted, "attachments": [], "conversation_message_id": 5}}),
        )
    }

    /// `user` edits their message `id`.
    pub fn edit(&self, user: &VkUser, id: i64, text: &str) -> String {
        self.push(
            "message_edit",
            json!({"date": self.now_s(), "from_id": user.id, "id": id, "out": 0, "peer_id": user.id, "text": text,
                "update_time": self.now_s(), "attachments": [], "conversation_message_id": id - 700, "fwd_messages": []}),
        )
    }

    /// `user` allows messages from the community.
    pub fn allow(&self, user: &VkUser) -> String {
        {
            let mut s = self.state();
            s.users.insert(user.id, user.clone());
            s.allowed.insert(user.id, true);
        }
        self.push("message_allow", json!({"user_id": user.id, "key": "site"}))
    }

    /// `user` forbids messages from the community.
    pub fn deny(&self, user: &VkUser) -> String {
        self.state().allowed.insert(user.id, false);
        self.push("message_deny", json!({"user_id": user.id}))
    }

    /// `user` presses a callback button of message `cmid` with `payload`; returns the press's
    /// `event_id` (valid for `messages.sendMessageEventAnswer` for a minute).
    pub fn press(&self, user: &VkUser, payload: Value) -> String {
        let press_id = format!("{:x}", 0x3159_dc19_0b1f_u64 + self.state().next_event);
        {
            let mut s = self.state();
            let at = s.started.elapsed();
            s.presses.insert(press_id.clone(), (user.id, user.id, at));
        }
        self.push(
            "message_event",
            json!({"user_id": user.id, "peer_id": user.id, "event_id": press_id, "payload": payload,
                "conversation_message_id": 78}),
        );
        press_id
    }

    /// `user` is typing (an update the hub ignores).
    pub fn typing(&self, user: &VkUser) -> String {
        self.push(
            "message_typing_state",
            json!({"state": "typing", "from_id": user.id, "to_id": -self.shared.group_id}),
        )
    }

    // ------------------------------------------------------------------------ the API --

    /// Answers one request that arrived at `at`.
    async fn dispatch(&self, method: &str, params: &BTreeMap<String, String>, at: Duration) -> Answer {
        {
            let mut s = self.state();
            if let Some(i) = s.faults.iter().position(|f| f.method == method || f.method == "*") {
                let fault = s.faults.remove(i).expect("found");
                return Err((fault.code, fault.message));
            }
            if let Some(limit) = s.per_second {
                while s.recent.front().is_some_and(|t| at.saturating_sub(*t) >= Duration::from_secs(1)) {
                    s.recent.pop_front();
                }
                if s.recent.len() >= limit {
                    return refuse(6, "Too many requests per second");
                }
                s.recent.push_back(at);
            }
        }
        let group = self.shared.group_id;
        match method {
            "messages.send" => self.send(params, at),
            "messages.edit" => self.edit_message(params, at),
            "messages.delete" => self.delete(params, at),
            "messages.getById" => self.get_by_id(params),
            "messages.sendMessageEventAnswer" => self.event_answer(params, at),
            "messages.isMessagesFromGroupAllowed" => {
                let user = int(params, "user_id").unwrap_or(0);
                Ok(json!({"is_allowed": i64::from(self.allowed(user))}))
            }
            "messages.markAsRead" | "messages.setActivity" => Ok(json!(1)),
            "users.get" => {
                let photo = params.get("fields").is_some_and(|f| f.split(',').any(|f| f.trim() == "photo_200"));
                let s = self.state();
                let mut out = Vec::new();
                for id in params.get("user_ids").map(String::as_str).unwrap_or_default().split(',') {
                    let Ok(id) = id.trim().parse::<i64>() else { return refuse(113, "Invalid user id") };
                    match s.users.get(&id) {
                        Some(u) => out.push(u.json(photo)),
                        None => return refuse(113, "Invalid user id"),
                    }
                }
                Ok(json!(out))
            }
            "groups.getLongPollServer" => {
                if int(params, "group_id") != Some(group) {
                    return refuse(100, "One of the parameters specified was missing or invalid: group_id is invalid");
                }
                let mut s = self.state();
                let key = format!("lpkey{:08x}{}", s.next_key.wrapping_mul(0x9e37_79b9), s.next_key);
                s.next_key += 1;
                s.keys.insert(key.clone());
                let ts = FIRST_TS + s.events.len() as u64;
                Ok(json!({"key": key, "server": format!("http://{}/lp/{group}", self.addr), "ts": ts.to_string()}))
            }
            "groups.setLongPollSettings" => {
                if int(params, "group_id") != Some(group) {
                    return refuse(100, "One of the parameters specified was missing or invalid: group_id is invalid");
                }
                self.state().long_poll_settings = params.clone();
                Ok(json!(1))
            }
            "groups.getCallbackConfirmationCode" => {
                if int(params, "group_id") != Some(group) {
                    return refuse(100, "One of the parameters specified was missing or invalid: group_id is invalid");
                }
                Ok(json!({"code": self.state().confirmation_code.clone()}))
            }
            "groups.getById" => {
                Ok(json!({"groups": [{"id": group, "name": "Acme Shop", "screen_name": format!("club{group}"),
                "is_closed": 0, "type": "group"}], "profiles": []}))
            }
            "photos.getMessagesUploadServer" => {
                let mut s = self.state();
                let n = s.next_upload;
                s.next_upload += 1;
                Ok(
                    json!({"upload_url": format!("http://{}/upload/photo/{n}", self.addr), "album_id": -64, "group_id": group}),
                )
            }
            "docs.getMessagesUploadServer" => {
                let kind = params.get("type").map(String::as_str).unwrap_or("doc");
                if !matches!(kind, "doc" | "audio_message" | "graffiti") {
                    return refuse(100, "One of the parameters specified was missing or invalid: type is invalid");
                }
                if int(params, "peer_id").is_none() {
                    return refuse(100, "One of the parameters specified was missing or invalid: peer_id is undefined");
                }
                let mut s = self.state();
                let n = s.next_upload;
                s.next_upload += 1;
                Ok(json!({"upload_url": format!("http://{}/upload/{kind}/{n}", self.addr)}))
            }
            "photos.saveMessagesPhoto" => self.save(params, "photo"),
            "docs.save" => self.save(params, "doc"),
            _ => refuse(3, "Unknown method passed"),
        }
    }

    /// The attachments of a send, checked against what was saved.
    fn attachments_known(&self, list: &str) -> bool {
        let s = self.state();
        list.split(',').map(str::trim).filter(|a| !a.is_empty()).all(|a| {
            let parts: Vec<&str> = a.splitn(3, '_').collect();
            let base = format!("{}_{}", parts[0], parts.get(1).unwrap_or(&""));
            match s.saved.get(&base) {
                Some(key) if key.is_empty() => parts.len() == 2 || parts.get(2) == Some(&""),
                Some(key) => parts.get(2) == Some(&key.as_str()),
                None => false,
            }
        })
    }

    fn send(&self, params: &BTreeMap<String, String>, at: Duration) -> Answer {
        let peers: Vec<i64> = match (int(params, "peer_id").or_else(|| int(params, "user_id")), params.get("peer_ids"))
        {
            (Some(peer), _) => vec![peer],
            (None, Some(list)) => list.split(',').filter_map(|p| p.trim().parse().ok()).collect(),
            (None, None) => {
                return refuse(100, "One of the parameters specified was missing or invalid: peer_id is undefined");
            }
        };
        let Some(random_id) = int(params, "random_id") else {
            return refuse(
                100,
                "One of the parameters specified was missing or invalid: random_id is a required parameter",
            );
        };
        let text = params.get("message").cloned().unwrap_or_default();
        let has = |name: &str| params.get(name).is_some_and(|v| !v.is_empty());
        if text.is_empty() && !has("attachment") && !has("sticker_id") && !has("forward_messages") && !has("lat") {
            return refuse(100, "One of the parameters specified was missing or invalid: message is empty or invalid");
        }
        if text.chars().count() > 4096 {
            return refuse(914, "Message is too long");
        }
        if has("lat") != has("long") {
            return refuse(100, "One of the parameters specified was missing or invalid: lat and long go together");
        }
        if has("sticker_id") && int(params, "sticker_id").is_none() {
            return refuse(100, "One of the parameters specified was missing or invalid: sticker_id is not a number");
        }
        if let Some(k) = params.get("keyboard")
            && let Some(problem) = keyboard_problem(k)
        {
            return refuse(911, format!("Keyboard format is invalid: {problem}"));
        }
        if let Some(list) = params.get("attachment")
            && !self.attachments_known(list)
        {
            return refuse(100, "One of the parameters specified was missing or invalid: attachment is invalid");
        }
        if let Some(f) = params.get("forward_messages")
            && f.split(',').any(|id| id.trim().parse::<i64>().is_err())
        {
            return refuse(100, "One of the parameters specified was missing or invalid: forward_messages is invalid");
        }
        let single = params.contains_key("peer_id") || params.contains_key("user_id");
        let mut results = Vec::new();
        let mut echoes = Vec::new();
        {
            let mut s = self.state();
            let window = s.dedupe_window;
            for peer in peers {
                if s.allowed.get(&peer) != Some(&true) {
                    if single {
                        return refuse(901, "Can't send messages for users without permission");
                    }
                    results.push(json!({"peer_id": peer, "error": {"code": 901, "description": "Can't send messages for users without permission"}}));
                    continue;
                }
                if let Some((id, when)) = s.dedupe.get(&(peer, random_id)).copied()
                    && at.saturating_sub(when) < window
                {
                    // VK drops the repeat and answers the first message's id
                    s.deduplicated.push(Deduplicated { peer_id: peer, random_id, id, at });
                    results.push(json!({"peer_id": peer, "message_id": id, "conversation_message_id": id - 700}));
                    continue;
                }
                let id = s.next_id;
                s.next_id += 1;
                s.dedupe.insert((peer, random_id), (id, at));
                s.sent.push(Sent {
                    id,
                    peer_id: peer,
                    random_id,
                    params: params.clone(),
                    at,
                    text: text.clone(),
                    edits: Vec::new(),
                    deleted: false,
                });
                if s.echoes {
                    echoes.push(json!({"date": EPOCH + at.as_secs() as i64, "from_id": -self.shared.group_id, "id": id,
                        "out": 1, "peer_id": peer, "text": text, "random_id": random_id, "attachments": [],
                        "conversation_message_id": id - 700, "fwd_messages": [], "important": false, "is_hidden": false}));
                }
                results.push(json!({"peer_id": peer, "message_id": id, "conversation_message_id": id - 700}));
            }
        }
        for echo in echoes {
            self.push("message_reply", echo);
        }
        if single { Ok(results[0]["message_id"].clone()) } else { Ok(json!(results)) }
    }

    fn edit_message(&self, params: &BTreeMap<String, String>, at: Duration) -> Answer {
        let (Some(peer), Some(id)) = (int(params, "peer_id"), int(params, "message_id")) else {
            return refuse(
                100,
                "One of the parameters specified was missing or invalid: peer_id and message_id are required",
            );
        };
        if let Some(k) = params.get("keyboard")
            && let Some(problem) = keyboard_problem(k)
        {
            return refuse(911, format!("Keyboard format is invalid: {problem}"));
        }
        let echo = {
            let mut s = self.state();
            let max_age = s.edit_max_age;
            let echoes = s.echoes;
            let Some(m) = s.sent.iter_mut().find(|m| m.id == id && m.peer_id == peer && !m.deleted) else {
                return refuse(15, "Access denied: message not found or not the community's");
            };
            if at.saturating_sub(m.at) > max_age {
                return refuse(909, "Can't edit this message, because it's too old");
            }
            let text = params.get("message").cloned().unwrap_or_default();
            m.edits.push(text.clone());
            m.text = text.clone();
            if let Some(attachment) = params.get("attachment") {
                m.params.insert("attachment".into(), attachment.clone());
            } else {
                // VK drops what is not given again
                m.params.remove("attachment");
            }
            echoes.then(|| {
                json!({"date": EPOCH, "from_id": -self.shared.group_id, "id": id, "out": 1, "peer_id": peer,
                "text": text, "update_time": EPOCH + at.as_secs() as i64, "attachments": []})
            })
        };
        if let Some(echo) = echo {
            self.push("message_edit", echo);
        }
        Ok(json!(1))
    }

    fn delete(&self, params: &BTreeMap<String, String>, at: Duration) -> Answer {
        let ids: Vec<i64> = params
            .get("message_ids")
            .map(|l| l.split(',').filter_map(|i| i.trim().parse().ok()).collect())
            .unwrap_or_default();
        if ids.is_empty() {
            return refuse(100, "One of the parameters specified was missing or invalid: message_ids is undefined");
        }
        let for_all = params.get("delete_for_all").map(String::as_str) == Some("1");
        let mut s = self.state();
        let max_age = s.delete_max_age;
        let mut out = serde_json::Map::new();
        for id in ids {
            let Some(m) = s.sent.iter_mut().find(|m| m.id == id) else {
                return refuse(15, "Access denied: message not found or not the community's");
            };
            if for_all && at.saturating_sub(m.at) > max_age {
                return refuse(924, "Can't delete this message for everybody");
            }
            m.deleted = true;
            out.insert(id.to_string(), json!(1));
        }
        Ok(Value::Object(out))
    }

    fn get_by_id(&self, params: &BTreeMap<String, String>) -> Answer {
        let s = self.state();
        let ids: Vec<i64> = params
            .get("message_ids")
            .map(|l| l.split(',').filter_map(|i| i.trim().parse().ok()).collect())
            .unwrap_or_default();
        let items: Vec<Value> = ids
            .iter()
            .filter_map(|id| s.sent.iter().find(|m| m.id == *id && !m.deleted))
            .map(|m| {
                let attachments: Vec<Value> = m
                    .param("attachment")
                    .unwrap_or_default()
                    .split(',')
                    .filter(|a| !a.is_empty())
                    .map(|a| {
                        let kind = if a.starts_with("photo") { "photo" } else { "doc" };
                        let rest = &a[kind.len()..];
                        let parts: Vec<&str> = rest.splitn(3, '_').collect();
                        let mut o = json!({"owner_id": parts[0].parse::<i64>().unwrap_or(0),
                            "id": parts.get(1).and_then(|p| p.parse::<i64>().ok()).unwrap_or(0)});
                        if let Some(key) = parts.get(2) {
                            o["access_key"] = json!(key);
                        }
                        json!({"type": kind, kind: o})
                    })
                    .collect();
                json!({"id": m.id, "peer_id": m.peer_id, "from_id": -self.shared.group_id, "out": 1, "text": m.text,
                    "date": EPOCH + m.at.as_secs() as i64, "attachments": attachments, "random_id": m.random_id})
            })
            .collect();
        Ok(json!({"count": items.len(), "items": items}))
    }

    fn event_answer(&self, params: &BTreeMap<String, String>, at: Duration) -> Answer {
        let event_id = params.get("event_id").cloned().unwrap_or_default();
        let user = int(params, "user_id").unwrap_or(0);
        let peer = int(params, "peer_id").unwrap_or(0);
        let mut s = self.state();
        let accepted = matches!(s.presses.get(&event_id), Some((u, p, when))
            if *u == user && *p == peer && at.saturating_sub(*when) < Duration::from_secs(60));
        s.event_answers.push(EventAnswer {
            event_id,
            user_id: user,
            peer_id: peer,
            event_data: params.get("event_data").cloned(),
            accepted,
        });
        if accepted {
            Ok(json!(1))
        } else {
            refuse(100, "One of the parameters specified was missing or invalid: event_id is invalid")
        }
    }

    fn save(&self, params: &BTreeMap<String, String>, what: &str) -> Answer {
        let token = if what == "photo" { params.get("photo") } else { params.get("file") };
        let token = token.cloned().unwrap_or_default();
        let mut s = self.state();
        let Some(pending) = s.pending_uploads.remove(&token) else {
            return refuse(
                100,
                if what == "photo" {
                    "One of the parameters specified was missing or invalid: photos_list is invalid"
                } else {
                    "One of the parameters specified was missing or invalid: file is invalid"
                },
            );
        };
        if what == "photo" && params.get("hash") != Some(&photo_hash(&token)) {
            return refuse(100, "One of the parameters specified was missing or invalid: hash is invalid");
        }
        let owner = -self.shared.group_id;
        let id = 457_239_000 + s.uploads.len() as i64;
        let key = format!("{:x}", 0xab12_u64 + id as u64);
        let kind = pending.kind.clone();
        let (name, answer) = if what == "photo" {
            let url = format!("http://{}/media/saved-photo-{id}.jpg", self.addr);
            s.saved.insert(format!("photo{owner}_{id}"), key.clone());
            (
                format!("photo{owner}_{id}"),
                json!([{"id": id, "owner_id": owner, "access_key": key, "album_id": -64, "date": EPOCH,
                    "sizes": [{"type": "x", "url": url, "width": 604, "height": 453}], "text": ""}]),
            )
        } else {
            let title = params.get("title").cloned().unwrap_or(pending.file_name.clone());
            s.saved.insert(format!("doc{owner}_{id}"), String::new());
            let url = format!("http://{}/media/saved-doc-{id}", self.addr);
            let object = match kind.as_str() {
                "audio_message" => {
                    json!({"id": id, "owner_id": owner, "duration": 1, "waveform": [0], "link_ogg": url, "link_mp3": url})
                }
                "graffiti" => json!({"id": id, "owner_id": owner, "url": url, "width": 512, "height": 512}),
                _ => {
                    json!({"id": id, "owner_id": owner, "title": title, "size": pending.bytes.len(), "ext": pending.ext,
                    "url": url, "date": EPOCH, "type": 8})
                }
            };
            (format!("doc{owner}_{id}"), json!({"type": kind, kind.clone(): object}))
        };
        s.uploads.push(Upload {
            kind,
            field: if what == "photo" { "photo".into() } else { "file".into() },
            file_name: pending.file_name,
            content_type: pending.content_type,
            bytes: pending.bytes,
            saved_as: Some(name),
        });
        Ok(answer)
    }

    /// A long-poll check.
    async fn check(&self, key: &str, ts: Option<u64>, wait: u64) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.min(90));
        loop {
            let notified = self.shared.updates.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.state();
                let next = FIRST_TS + s.events.len() as u64;
                if let Some(failed) = s.poll_faults.pop_front() {
                    return match failed {
                        1 => json!({"failed": 1, "ts": next.to_string()}),
                        other => json!({"failed": other}),
                    };
                }
                if !s.keys.contains(key) {
                    return json!({"failed": 2});
                }
                let Some(ts) = ts else { return json!({"failed": 1, "ts": next.to_string()}) };
                if ts < next {
                    let from = (ts.max(FIRST_TS) - FIRST_TS) as usize;
                    let to = (from + BATCH).min(s.events.len());
                    let mut raws = Vec::new();
                    for event in &mut s.events[from..to] {
                        event.handed_out += 1;
                        raws.push(event.raw.clone());
                    }
                    let last = s.events[to - 1].seq;
                    // the answer is assembled from the updates' own bytes
                    return Value::String(format!(r#"{{"ts":"{}","updates":[{}]}}"#, last + 1, raws.join(",")));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let ts = ts.unwrap_or(FIRST_TS);
                return json!({"ts": ts.to_string(), "updates": []});
            }
        }
    }
}

/// The `hash` the photo upload server answers with a photo, which `photos.saveMessagesPhoto`
/// wants back.
fn photo_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(token.as_bytes())[..16])
}

/// What VK's clients would reject about a keyboard (then error 911).
fn keyboard_problem(raw: &str) -> Option<String> {
    let Ok(k) = serde_json::from_str::<Value>(raw) else { return Some("not JSON".into()) };
    let Some(rows) = k.get("buttons").and_then(Value::as_array) else { return Some("no buttons".into()) };
    let inline = k.get("inline").and_then(Value::as_bool).unwrap_or(false);
    let (max_rows, max_buttons) = if inline { (6, 10) } else { (10, 40) };
    if rows.len() > max_rows {
        return Some(format!("more than {max_rows} rows"));
    }
    let mut count = 0;
    for row in rows {
        let Some(row) = row.as_array() else { return Some("a row is not an array".into()) };
        if row.len() > 5 {
            return Some("more than 5 buttons in a row".into());
        }
        for button in row {
            count += 1;
            let action = button.get("action").unwrap_or(&Value::Null);
            let kind = action.get("type").and_then(Value::as_str).unwrap_or_default();
            let label = action.get("label").and_then(Value::as_str);
            match kind {
                "text" | "callback" | "open_link" => {
                    let Some(label) = label.filter(|l| !l.is_empty()) else {
                        return Some(format!("a {kind} button without a label"));
                    };
                    if label.chars().count() > 40 {
                        return Some("a label over 40 characters".into());
                    }
                }
                "location" | "vkpay" | "open_app" => {
                    if row.len() > 1 {
                        return Some(format!("a {kind} button shares its row"));
                    }
                }
                other => return Some(format!("unknown action type {other:?}")),
            }
            if kind == "open_link" && action.get("link").and_then(Value::as_str).is_none_or(|l| !l.starts_with("http"))
            {
                return Some("an open_link button without a link".into());
            }
            if let Some(payload) = action.get("payload") {
                let Some(payload) = payload.as_str() else { return Some("a payload that is not a string".into()) };
                if payload.chars().count() > 255 {
                    return Some("a payload over 255 characters".into());
                }
                if serde_json::from_str::<Value>(payload).is_err() {
                    return Some("a payload that is not JSON".into());
                }
            }
            if button.get("color").is_some() && !matches!(kind, "text" | "callback") {
                return Some(format!("a colour on a {kind} button"));
            }
        }
    }
    if count > max_buttons {
        return Some(format!("more than {max_buttons} buttons"));
    }
    None
}

/// Every parameter of a request (query, form or multipart text fields).
async fn read_params(query: Option<String>, request: Request) -> BTreeMap<String, String> {
    let mut params: BTreeMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if content_type.starts_with("multipart/form-data") {
        if let Ok(mut multipart) = Multipart::from_request(request, &()).await {
            while let Ok(Some(field)) = multipart.next_field().await {
                let name = field.name().unwrap_or_default().to_owned();
                if let Ok(text) = field.text().await {
                    params.insert(name, text);
                }
            }
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let body = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap_or_default();
        params.extend(url::form_urlencoded::parse(&body).into_owned());
    }
    params
}

async fn api(
    State(fake): State<FakeVk>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let at = fake.elapsed();
    let latency = fake.state().latency;
    let mut params = read_params(query, request).await;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let token = params.remove("access_token").or(bearer).unwrap_or_default();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let answer = if token != fake.shared.token {
        Err((5, "User authorization failed: invalid access_token (4).".to_owned()))
    } else if params.get("v").is_none_or(|v| v.is_empty()) {
        Err((8, "Invalid request: v (version) is required".to_owned()))
    } else {
        fake.dispatch(&method, &params, at).await
    };
    let (code, body) = match answer {
        Ok(response) => (None, json!({"response": response})),
        Err((code, message)) => (Some(code), error(code, &message, &params)),
    };
    let lost = {
        let mut s = fake.state();
        let lost = code.is_none()
            && s.lose_answer.iter().position(|m| *m == method).map(|i| s.lose_answer.remove(i)).is_some();
        s.calls.push(Call { method, at, params, error: code, answer: body.clone() });
        lost
    };
    if lost {
        return (StatusCode::BAD_GATEWAY, "502 Bad Gateway").into_response();
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn long_poll(State(fake): State<FakeVk>, Path(group): Path<i64>, RawQuery(query): RawQuery) -> Response {
    let params: BTreeMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    if group != fake.shared.group_id || params.get("act").map(String::as_str) != Some("a_check") {
        return (StatusCode::NOT_FOUND, "").into_response();
    }
    let key = params.get("key").cloned().unwrap_or_default();
    let ts = params.get("ts").and_then(|t| t.parse::<u64>().ok());
    let wait = params.get("wait").and_then(|w| w.parse::<u64>().ok()).unwrap_or(25);
    let answer = fake.check(&key, ts, wait).await;
    match answer {
        // the batch, assembled from the updates' own bytes
        Value::String(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        other => (StatusCode::OK, axum::Json(other)).into_response(),
    }
}

async fn upload(
    State(fake): State<FakeVk>,
    Path((kind, _id)): Path<(String, String)>,
    mut multipart: Multipart,
) -> Response {
    let field_name = if kind == "photo" { "photo" } else { "file" };
    let mut file = None;
    while let Ok(Some(field)) = multipart.next_field().await {
        if field.name() != Some(field_name) {
            continue;
        }
        let file_name = field.file_name().unwrap_or_default().to_owned();
        let content_type = field.content_type().unwrap_or_default().to_owned();
        match field.bytes().await {
            Ok(bytes) => file = Some((file_name, content_type, bytes)),
            Err(_) => return (StatusCode::BAD_REQUEST, "cut short").into_response(),
        }
    }
    let Some((file_name, content_type, bytes)) = file else {
        let answer = if kind == "photo" {
            json!({"server": 1, "photo": "[]", "hash": ""})
        } else {
            json!({"error": "no_file", "error_descr": format!("no file in the field {field_name}")})
        };
        return axum::Json(answer).into_response();
    };
    let ext = file_name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    let refused = match kind.as_str() {
        "photo" if !matches!(content_type.as_str(), "image/jpeg" | "image/png" | "image/gif") || bytes.is_empty() => {
            Some(json!({"server": 1, "photo": "[]", "hash": ""}))
        }
        "doc" if matches!(ext.as_str(), "mp3" | "exe" | "apk" | "bat" | "cmd" | "com" | "msi") => Some(
            json!({"error": "invalid_file_type", "error_descr": format!("documents of type .{ext} are not allowed")}),
        ),
        "audio_message" if !matches!(content_type.as_str(), "audio/ogg" | "audio/opus") => {
            Some(json!({"error": "invalid_file_type", "error_descr": "a voice message must be OGG/Opus"}))
        }
        "graffiti" if content_type != "image/png" => {
            Some(json!({"error": "invalid_file_type", "error_descr": "a graffiti must be a PNG"}))
        }
        _ => None,
    };
    if let Some(answer) = refused {
        fake.state().uploads.push(Upload {
            kind,
            field: field_name.into(),
            file_name,
            content_type,
            bytes,
            saved_as: None,
        });
        return axum::Json(answer).into_response();
    }
    let token = {
        let mut s = fake.state();
        let n = s.next_upload;
        s.next_upload += 1;
        let token = format!("{kind}{n:06}x{}", bytes.len());
        s.pending_uploads.insert(token.clone(), Pending { kind: kind.clone(), file_name, content_type, ext, bytes });
        token
    };
    let answer = if kind == "photo" {
        json!({"server": 852731, "photo": token, "hash": photo_hash(&token)})
    } else {
        json!({"file": token})
    };
    axum::Json(answer).into_response()
}

async fn media(State(fake): State<FakeVk>, Path(name): Path<String>) -> Response {
    let found = {
        let mut s = fake.state();
        if s.media_failures > 0 {
            s.media_failures -= 1;
            return (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
        }
        s.media.get(&name).cloned()
    };
    match found {
        Some((bytes, mime)) => ([(header::CONTENT_TYPE, mime)], bytes).into_response(),
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyboards_are_checked_like_vk_s_clients() {
        assert_eq!(keyboard_problem(r#"{"one_time":true,"buttons":[[{"action":{"type":"text","label":"A"}}]]}"#), None);
        assert_eq!(keyboard_problem(r#"{"one_time":true,"buttons":[]}"#), None);
        let six = r#"{"buttons":[[{"action":{"type":"text","label":"1"}},{"action":{"type":"text","label":"2"}},{"action":{"type":"text","label":"3"}},{"action":{"type":"text","label":"4"}},{"action":{"type":"text","label":"5"}},{"action":{"type":"text","label":"6"}}]]}"#;
        assert!(keyboard_problem(six).unwrap().contains("5 buttons"));
        let inline_rows: Vec<String> =
            (0..7).map(|i| format!(r#"[{{"action":{{"type":"callback","label":"{i}","payload":"{{}}"}}}}]"#)).collect();
        assert!(
            keyboard_problem(&format!(r#"{{"inline":true,"buttons":[{}]}}"#, inline_rows.join(",")))
                .unwrap()
                .contains("rows")
        );
        assert!(
            keyboard_problem(r#"{"buttons":[[{"action":{"type":"open_link","label":"x"}}]]}"#)
                .unwrap()
                .contains("link")
        );
        assert!(keyboard_problem(r#"{"buttons":[[{"action":{"type":"teleport","label":"x"}}]]}"#).is_some());
        assert!(
            keyboard_problem(
                r#"{"buttons":[[{"action":{"type":"location"}},{"action":{"type":"text","label":"x"}}]]}"#
            )
            .is_some()
        );
    }
}
