//! A fake Telegram Bot API server for tests and benchmarks, speaking the real wire format
//! (`docs/platforms.md#telegram`, §1 and the fake's list in §1.7).
//!
//! - `/bot<token>/<method>`, methods case-insensitive, parameters from the query string, JSON,
//!   `application/x-www-form-urlencoded` or `multipart/form-data` (with `attach://` files);
//!   answers `{"ok":true,"result":...}` or `{"ok":false,"error_code":...,"description":...}`
//!   with the real descriptions; a wrong token gets 401 `Unauthorized`.
//! - `getUpdates` with `offset` (confirming everything below it; negative: keep the last
//!   `-offset`), `limit` and `timeout` (held open until an update arrives), 409 for a second
//!   concurrent poller (the first is terminated, as Telegram does) and while a webhook is set.
//! - `sendMessage`, `sendPhoto`, `sendDocument`, `sendVideo`, `sendAudio`, `sendVoice`,
//!   `sendSticker`, `sendAnimation`, `sendLocation`, `sendContact`, `sendChatAction`,
//!   `sendMediaGroup`, `copyMessage`, `forwardMessage`, `editMessageText`, `editMessageCaption`,
//!   `editMessageReplyMarkup`, `deleteMessage`, `deleteMessages`, `answerCallbackQuery`,
//!   `getFile` and `GET /file/bot<token>/<path>`, `getUserProfilePhotos`, `getMe`,
//!   `setWebhook`/`deleteWebhook`/`getWebhookInfo`.
//! - Validation with Telegram's errors: text 1-4096, caption 1024, `callback_data` 64 bytes,
//!   photo 10 MB / other uploads 50 MB, `getFile` over 20 MB, unknown chat, blocked user,
//!   edit/delete of unknown messages, unmodified edits, deletes after 48 hours.
//! - Faults on demand ([`FakeTelegram::fail_next`]), e.g. 429 with `parameters.retry_after`.
//! - Webhook mode: updates are POSTed to the registered URL with the secret header, again on a
//!   non-2xx; [`FakeTelegram::post_webhook`] sends one with any header for tests.
//! - Every request is recorded ([`FakeTelegram::calls`]) with its time, parameters and files.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

/// The bot's own user id.
pub const BOT_ID: u64 = 7001002003;
const MB: usize = 1024 * 1024;
/// Unix time the fake's clock starts at (2026-01-01).
const EPOCH: i64 = 1_767_225_600;

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Call {
    /// Method as Telegram names it (`sendMessage`), whatever case the client used.
    pub method: String,
    /// When it arrived, since the fake started.
    pub at: Duration,
    /// Parameters; JSON-looking form fields are parsed, files are `"attach://..."` strings.
    pub params: Map<String, Value>,
    /// Uploaded files.
    pub files: Vec<Upload>,
    /// The HTTP status answered.
    pub status: u16,
    /// For `getUpdates`: the ids of the updates it returned.
    pub update_ids: Vec<u32>,
}

impl Call {
    pub fn param(&self, name: &str) -> &Value {
        self.params.get(name).unwrap_or(&Value::Null)
    }

    /// `chat_id` as a string (it may come as a number or a string).
    pub fn chat(&self) -> String {
        match self.param("chat_id") {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    pub fn ok(&self) -> bool {
        self.status == 200
    }
}

/// A file uploaded in a multipart request.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The form field the file was named by (`photo`, `document`...).
    pub field: String,
    pub file_name: Option<String>,
    pub bytes: Bytes,
}

/// A message the bot sent, as the fake keeps it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub chat: i64,
    pub message_id: i32,
    /// Method that created it.
    pub method: String,
    pub text: Option<String>,
    pub caption: Option<String>,
    pub deleted: bool,
    pub date: i64,
}

/// A Telegram user of the fake, who can write to the bot.
#[derive(Debug, Clone)]
pub struct TgUser {
    pub id: u64,
    pub first_name: String,
    pub last_name: Option<String>,
    pub username: Option<String>,
}

impl TgUser {
    pub fn new(id: u64, first_name: &str) -> Self {
        TgUser { id, first_name: first_name.into(), last_name: None, username: None }
    }

    fn json(&self) -> Value {
        let mut v = json!({"id": self.id, "is_bot": false, "first_name": self.first_name, "language_code": "ru"});
        if let Some(last) = &self.last_name {
            v["last_name"] = json!(last);
        }
        if let Some(username) = &self.username {
            v["username"] = json!(username);
        }
        v
    }

    fn chat(&self) -> Value {
        json!({"id": self.id, "type": "private", "first_name": self.first_name})
    }
}

struct StoredFile {
    unique_id: String,
    path: String,
    bytes: Bytes,
}

struct Fault {
    method: String,
    status: u16,
    body: Value,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: Option<String>,
    pub allowed_updates: Option<Value>,
}

/// What the webhook side answered for one delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub update_id: u32,
    pub status: u16,
}

struct State_ {
    started: Instant,
    /// Seconds added to the fake's clock.
    skew: i64,
    calls: Vec<Call>,
    updates: VecDeque<Value>,
    next_update_id: u32,
    /// Every update below this id was confirmed by a later getUpdates.
    confirmed_below: u32,
    poll_generation: u64,
    pollers: usize,
    /// The last message id per chat (inbound and outbound share it, as in Telegram).
    message_ids: HashMap<i64, i32>,
    sent: HashMap<(i64, i32), Sent>,
    /// Chats that may be written to: every user who wrote, and any added.
    chats: HashSet<i64>,
    blocked: HashSet<i64>,
    files: HashMap<String, StoredFile>,
    next_file: u64,
    profile_photos: HashMap<u64, String>,
    callbacks: HashSet<String>,
    next_callback: u64,
    faults: VecDeque<Fault>,
    latency: Duration,
    webhook: Option<Webhook>,
    deliveries: Vec<Delivery>,
}

struct Shared {
    token: String,
    state: Mutex<State_>,
    updates: Notify,
    http: reqwest::Client,
}

/// A running fake Bot API. Dropping it does not stop the server (tests end with the runtime).
#[derive(Clone)]
pub struct FakeTelegram {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

type Reply = (StatusCode, Value);

fn ok(result: Value) -> Reply {
    (StatusCode::OK, json!({"ok": true, "result": result}))
}

fn error(code: u16, description: &str) -> Reply {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
        json!({"ok": false, "error_code": code, "description": description}),
    )
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

impl FakeTelegram {
    /// Starts the fake on `127.0.0.1:0` accepting bot token `token`.
    pub async fn start(token: &str) -> Self {
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            state: Mutex::new(State_ {
                started: Instant::now(),
                skew: 0,
                calls: Vec::new(),
                updates: VecDeque::new(),
                next_update_id: 880_000_001,
                confirmed_below: 0,
                poll_generation: 0,
                pollers: 0,
                message_ids: HashMap::new(),
                sent: HashMap::new(),
                chats: HashSet::new(),
                blocked: HashSet::new(),
                files: HashMap::new(),
                next_file: 1,
                profile_photos: HashMap::new(),
                callbacks: HashSet::new(),
                next_callback: 9_215_307_781_101_010,
                faults: VecDeque::new(),
                latency: Duration::ZERO,
                webhook: None,
                deliveries: Vec::new(),
            }),
            updates: Notify::new(),
            http: reqwest::Client::new(),
        });
        let router = Router::new()
            .route("/{bot}/{method}", any(api))
            .route("/file/{bot}/{*path}", get(download))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake");
        let addr = listener.local_addr().expect("bound address");
        // answers go out at once (Nagle plus delayed ACK would add 40 ms and hide the hub's latency)
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeTelegram { addr, shared }
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

    /// Time since the fake started: the clock of [`Call::at`].
    pub fn elapsed(&self) -> Duration {
        self.state().started.elapsed()
    }

    /// Every request so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Requests of one method (case-insensitive), in arrival order.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.state().calls.iter().filter(|c| c.method.eq_ignore_ascii_case(method)).cloned().collect()
    }

    /// How many calls of `method` were answered 200, without copying them (for a caller that
    /// polls while thousands of calls come in).
    pub fn ok_count_of(&self, method: &str) -> usize {
        self.state().calls.iter().filter(|c| c.ok() && c.method.eq_ignore_ascii_case(method)).count()
    }

    /// Messages the bot has sent to `chat`, oldest first.
    pub fn sent_to(&self, chat: i64) -> Vec<Sent> {
        let mut sent: Vec<Sent> = self.state().sent.values().filter(|s| s.chat == chat).cloned().collect();
        sent.sort_by_key(|s| s.message_id);
        sent
    }

    /// Every message the bot has sent.
    pub fn sent(&self) -> Vec<Sent> {
        let mut sent: Vec<Sent> = self.state().sent.values().cloned().collect();
        sent.sort_by_key(|s| (s.chat, s.message_id));
        sent
    }

    /// The next request of `method` (any method for `"*"`) is answered with this error body.
    pub fn fail_next(&self, method: &str, status: u16, body: Value) {
        self.state().faults.push_back(Fault { method: method.to_owned(), status, body });
    }

    /// The next `method` request gets 429 with `retry_after` seconds, in Telegram's words.
    pub fn rate_limit_next(&self, method: &str, retry_after: u64) {
        self.fail_next(
            method,
            429,
            json!({"ok": false, "error_code": 429, "description": format!("Too Many Requests: retry after {retry_after}"),
                   "parameters": {"retry_after": retry_after}}),
        );
    }

    /// Every answer waits this long first.
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    /// Moves the fake's clock forward (for the 48-hour delete window).
    pub fn advance_clock(&self, by: Duration) {
        self.state().skew += by.as_secs() as i64;
    }

    /// Users who started the bot earlier (a campaign's audience): the bot may write to them
    /// first, as it may to anyone who once wrote to it.
    pub fn know(&self, chats: impl IntoIterator<Item = i64>) {
        self.state().chats.extend(chats);
    }

    /// The user has blocked the bot: sends to them get 403.
    pub fn block(&self, chat: i64) {
        self.state().blocked.insert(chat);
    }

    /// The registered webhook, if any.
    pub fn webhook(&self) -> Option<Webhook> {
        self.state().webhook.clone()
    }

    /// Webhook deliveries made so far and what they got.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state().deliveries.clone()
    }

    /// Updates not yet confirmed by a getUpdates with a larger offset.
    pub fn unconfirmed(&self) -> usize {
        self.state().updates.len()
    }

    /// Stores a file Telegram holds, for `getFile` and the download path; returns its
    /// `(file_id, file_unique_id)`.
    pub fn add_file(&self, bytes: impl Into<Bytes>, ext: &str) -> (String, String) {
        let mut s = self.state();
        add_file(&mut s, bytes.into(), ext)
    }

    /// Gives a user a profile photo (`getUserProfilePhotos`).
    pub fn set_profile_photo(&self, user: u64, bytes: impl Into<Bytes>) {
        let mut s = self.state();
        let (id, _) = add_file(&mut s, bytes.into(), "jpg");
        s.profile_photos.insert(user, id);
    }

    /// Queues an update (`kind` is its one key: `{"message": {...}}`) and returns its id; in
    /// webhook mode it is POSTed to the webhook instead.
    pub fn push_update(&self, kind: Value) -> u32 {
        let (update, webhook) = {
            let mut s = self.state();
            let id = s.next_update_id;
            s.next_update_id += 1;
            let mut update = json!({"update_id": id});
            update.as_object_mut().expect("object").extend(kind.as_object().expect("an update kind object").clone());
            match s.webhook.clone() {
                Some(w) => (update, Some(w)),
                None => {
                    s.updates.push_back(update.clone());
                    (update, None)
                }
            }
        };
        let id = update["update_id"].as_u64().unwrap_or_default() as u32;
        match webhook {
            Some(w) => {
                let fake = self.clone();
                tokio::spawn(async move { fake.deliver(&w, update).await });
            }
            None => self.shared.updates.notify_waiters(),
        }
        id
    }

    async fn deliver(&self, webhook: &Webhook, update: Value) {
        let id = update["update_id"].as_u64().unwrap_or_default() as u32;
        for attempt in 0..20 {
            let status = self.post_webhook(&update, webhook.secret.as_deref()).await;
            self.state().deliveries.push(Delivery { update_id: id, status });
            if (200..300).contains(&status) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
        }
    }

    /// POSTs `update` to the registered webhook with `secret` in the secret header (`None`: no
    /// header); returns the HTTP status (0 when unreachable).
    pub async fn post_webhook(&self, update: &Value, secret: Option<&str>) -> u16 {
        let Some(webhook) = self.webhook() else { return 0 };
        let mut request = self.shared.http.post(&webhook.url).json(update);
        if let Some(secret) = secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        match request.send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// The next message id in a chat.
    fn next_message_id(&self, chat: i64) -> i32 {
        let mut s = self.state();
        s.chats.insert(chat);
        let id = s.message_ids.entry(chat).or_insert(0);
        *id += 1;
        *id
    }

    fn now(&self) -> i64 {
        let s = self.state();
        EPOCH + s.started.elapsed().as_secs() as i64 + s.skew
    }

    /// A message from `user` in their private chat with `content` (the message's content
    /// fields: `{"text": ...}`, `{"photo": [...]}`...); returns its message id.
    pub fn message(&self, user: &TgUser, content: Value) -> i32 {
        let id = self.next_message_id(user.id as i64);
        let mut message = json!({"message_id": id, "date": self.now(), "from": user.json(), "chat": user.chat()});
        message.as_object_mut().expect("object").extend(content.as_object().expect("content object").clone());
        self.push_update(json!({ "message": message }));
        id
    }

    /// The `update_id` of the last update queued (0: none yet).
    pub fn last_update_id(&self) -> u32 {
        self.state().next_update_id.saturating_sub(1)
    }

    pub fn text(&self, user: &TgUser, text: &str) -> i32 {
        self.message(user, json!({ "text": text }))
    }

    /// A photo in two sizes; the larger holds `bytes`.
    pub fn photo(&self, user: &TgUser, bytes: impl Into<Bytes>, caption: Option<&str>) -> i32 {
        let bytes = bytes.into();
        let (small, small_unique) = self.add_file(Bytes::from_static(b"thumbnail"), "jpg");
        let size = bytes.len();
        let (large, large_unique) = self.add_file(bytes, "jpg");
        let mut content = json!({"photo": [
            {"file_id": small, "file_unique_id": small_unique, "width": 90, "height": 68, "file_size": 9},
            {"file_id": large, "file_unique_id": large_unique, "width": 1280, "height": 960, "file_size": size}]});
        if let Some(caption) = caption {
            content["caption"] = json!(caption);
        }
        self.message(user, content)
    }

    /// A file of `kind` (`document`, `video`, `audio`, `voice`, `sticker`, `animation`) with its
    /// name and type where Telegram gives them.
    pub fn file_message(&self, user: &TgUser, kind: &str, name: &str, mime: &str, bytes: impl Into<Bytes>) -> i32 {
        let bytes = bytes.into();
        let size = bytes.len();
        let ext = name.rsplit('.').next().unwrap_or("bin").to_owned();
        let (file_id, unique) = self.add_file(bytes, &ext);
        let mut file = json!({"file_id": file_id, "file_unique_id": unique, "file_size": size});
        match kind {
            "document" => {
                file["file_name"] = json!(name);
                file["mime_type"] = json!(mime);
            }
            "video" | "animation" => {
                file.as_object_mut().unwrap().extend(
                    json!({"width": 640, "height": 480, "duration": 3, "file_name": name, "mime_type": mime})
                        .as_object()
                        .unwrap()
                        .clone(),
                );
            }
            "audio" => {
                file.as_object_mut()
                    .unwrap()
                    .extend(json!({"duration": 60, "file_name": name, "mime_type": mime}).as_object().unwrap().clone());
            }
            "voice" => {
                file.as_object_mut()
                    .unwrap()
                    .extend(json!({"duration": 2, "mime_type": mime}).as_object().unwrap().clone());
            }
            "sticker" => {
                file.as_object_mut().unwrap().extend(
                    json!({"width": 512, "height": 512, "type": "regular", "is_animated": false, "is_video": false, "emoji": "😀"})
                        .as_object()
                        .unwrap()
                        .clone(),
                );
            }
            other => panic!("unknown file kind {other}"),
        }
        let mut content = json!({ kind: file });
        if kind == "animation" {
            // Telegram sends the document field too, for older clients
            content["document"] =
                json!({"file_id": file_id, "file_unique_id": unique, "file_name": name, "mime_type": mime});
        }
        self.message(user, content)
    }

    pub fn location(&self, user: &TgUser, lat: f64, lon: f64) -> i32 {
        self.message(user, json!({"location": {"latitude": lat, "longitude": lon}}))
    }

    /// A shared contact: the user's own (`own`, as the request-phone button sends it) or
    /// someone else's.
    pub fn contact(&self, user: &TgUser, phone: &str, own: bool) -> i32 {
        let mut contact = json!({"phone_number": phone, "first_name": user.first_name});
        if own {
            contact["user_id"] = json!(user.id);
        }
        self.message(user, json!({ "contact": contact }))
    }

    /// A text the user forwarded from `original_sender`.
    pub fn forwarded(&self, user: &TgUser, original_sender: &str, text: &str) -> i32 {
        let date = self.now() - 3600;
        self.message(
            user,
            json!({"text": text, "forward_origin": {"type": "hidden_user", "date": date, "sender_user_name": original_sender}}),
        )
    }

    /// The user edits their message `message_id` to `text`.
    pub fn edit(&self, user: &TgUser, message_id: i32, text: &str) {
        let now = self.now();
        self.push_update(json!({"edited_message": {"message_id": message_id, "date": now - 10, "edit_date": now,
            "from": user.json(), "chat": user.chat(), "text": text}}));
    }

    /// The user presses an inline button with `data` under the bot's message `message_id`;
    /// returns the callback query id.
    pub fn press(&self, user: &TgUser, message_id: i32, data: &str) -> String {
        let id = {
            let mut s = self.state();
            s.next_callback += 1;
            let id = s.next_callback.to_string();
            s.callbacks.insert(id.clone());
            id
        };
        let message = json!({"message_id": message_id, "date": self.now(), "chat": user.chat(),
            "from": {"id": BOT_ID, "is_bot": true, "first_name": "Acme Support", "username": "acme_help_bot"}, "text": "…"});
        self.push_update(json!({"callback_query": {"id": id, "from": user.json(), "message": message,
            "chat_instance": "-5591277001", "data": data}}));
        id
    }
}

fn add_file(s: &mut State_, bytes: Bytes, ext: &str) -> (String, String) {
    let n = s.next_file;
    s.next_file += 1;
    let id = format!("BQACAgIAAx0-{n:06}");
    let unique = format!("AgAD{n:04}");
    let path = format!("documents/file_{n}.{ext}");
    s.files.insert(id.clone(), StoredFile { unique_id: unique.clone(), path, bytes });
    (id, unique)
}

async fn download(State(shared): State<Arc<Shared>>, Path((bot, path)): Path<(String, String)>) -> Response {
    if bot.strip_prefix("bot") != Some(shared.token.as_str()) {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    let bytes = {
        let s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        s.files.values().find(|f| f.path == path).map(|f| f.bytes.clone())
    };
    match bytes {
        Some(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], Body::from(bytes)).into_response(),
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

/// Parameters and files of a request, whatever its encoding.
async fn parse(request: Request, query: HashMap<String, String>) -> Result<(Map<String, Value>, Vec<Upload>), String> {
    let mut params: Map<String, Value> = query.into_iter().map(|(k, v)| (k, text_value(v))).collect();
    let mut files = Vec::new();
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| e.to_string())?;
        while let Some(field) = multipart.next_field().await.map_err(|e| e.to_string())? {
            let name = field.name().unwrap_or_default().to_owned();
            let file_name = field.file_name().map(str::to_owned);
            let bytes = field.bytes().await.map_err(|e| e.to_string())?;
            if file_name.is_some() {
                files.push(Upload { field: name, file_name, bytes });
            } else {
                params.insert(name, text_value(String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
        // `attach://x` values name file parts; record the file under the parameter's name
        for (key, value) in params.iter() {
            if let Some(part) = value.as_str().and_then(|v| v.strip_prefix("attach://"))
                && let Some(file) = files.iter_mut().find(|f| f.field == part)
            {
                file.field = key.clone();
            }
        }
        return Ok((params, files));
    }
    let body = axum::body::to_bytes(request.into_body(), 64 * MB).await.map_err(|e| e.to_string())?;
    if body.is_empty() {
        return Ok((params, files));
    }
    if content_type.starts_with("application/json") {
        let value: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        if let Value::Object(map) = value {
            params.extend(map);
        }
    } else {
        for (k, v) in url::form_urlencoded::parse(&body) {
            params.insert(k.into_owned(), text_value(v.into_owned()));
        }
    }
    Ok((params, files))
}

/// A form value: JSON if it looks like JSON (reply markup, numbers), else the string.
fn text_value(v: String) -> Value {
    let t = v.trim_start();
    if t.starts_with('{') || t.starts_with('[') || t.parse::<i64>().is_ok() || t == "true" || t == "false" {
        serde_json::from_str(&v).unwrap_or(Value::String(v))
    } else {
        Value::String(v)
    }
}

fn canonical(method: &str) -> String {
    const METHODS: &[&str] = &[
        "getMe",
        "getUpdates",
        "setWebhook",
        "deleteWebhook",
        "getWebhookInfo",
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendVideo",
        "sendAudio",
        "sendVoice",
        "sendSticker",
        "sendAnimation",
        "sendLocation",
        "sendContact",
        "sendChatAction",
        "sendMediaGroup",
        "copyMessage",
        "forwardMessage",
        "editMessageText",
        "editMessageCaption",
        "editMessageReplyMarkup",
        "deleteMessage",
        "deleteMessages",
        "answerCallbackQuery",
        "getFile",
        "getUserProfilePhotos",
    ];
    METHODS.iter().find(|m| m.eq_ignore_ascii_case(method)).map(|m| m.to_string()).unwrap_or_else(|| method.to_owned())
}

async fn api(
    State(shared): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let method = canonical(&method);
    let arrived = shared.state.lock().unwrap_or_else(|e| e.into_inner()).started.elapsed();
    let (params, files) = match parse(request, query).await {
        Ok(parsed) => parsed,
        Err(e) => {
            let (status, body) = error(400, &format!("Bad Request: {e}"));
            return (status, axum::Json(body)).into_response();
        }
    };
    let latency = shared.state.lock().unwrap_or_else(|e| e.into_inner()).latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (status, body) = if bot.strip_prefix("bot") != Some(shared.token.as_str()) {
        error(401, "Unauthorized")
    } else if let Some(fault) = take_fault(&shared, &method) {
        (StatusCode::from_u16(fault.status).unwrap_or(StatusCode::BAD_REQUEST), fault.body)
    } else if method == "getUpdates" {
        get_updates(&shared, &params).await
    } else {
        let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        handle(&mut s, &method, &params, &files)
    };
    let update_ids = match (method.as_str(), body["result"].as_array()) {
        ("getUpdates", Some(updates)) => {
            updates.iter().filter_map(|u| u["update_id"].as_u64()).map(|id| id as u32).collect()
        }
        _ => Vec::new(),
    };
    shared.state.lock().unwrap_or_else(|e| e.into_inner()).calls.push(Call {
        method,
        at: arrived,
        params,
        files,
        status: status.as_u16(),
        update_ids,
    });
    (status, axum::Json(body)).into_response()
}

fn take_fault(shared: &Shared, method: &str) -> Option<Fault> {
    let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    let i = s.faults.iter().position(|f| f.method == "*" || f.method.eq_ignore_ascii_case(method))?;
    s.faults.remove(i)
}

fn int(params: &Map<String, Value>, name: &str) -> Option<i64> {
    match params.get(name)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn string(params: &Map<String, Value>, name: &str) -> Option<String> {
    match params.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

async fn get_updates(shared: &Shared, params: &Map<String, Value>) -> Reply {
    let offset = int(params, "offset").unwrap_or(0);
    let limit = int(params, "limit").unwrap_or(100).clamp(1, 100) as usize;
    let timeout = Duration::from_secs(int(params, "timeout").unwrap_or(0).clamp(0, 50) as u64);
    let generation = {
        let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.webhook.is_some() {
            return error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
            );
        }
        if offset > 0 {
            let below = offset as u32;
            s.updates.retain(|u| u["update_id"].as_u64().unwrap_or_default() as u32 >= below);
            s.confirmed_below = s.confirmed_below.max(below);
        } else if offset < 0 {
            let keep = offset.unsigned_abs() as usize;
            while s.updates.len() > keep {
                s.updates.pop_front();
            }
        }
        s.poll_generation += 1;
        s.pollers += 1;
        // a newer poller terminates the older one, as Telegram does
        shared.updates.notify_waiters();
        s.poll_generation
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let reply = loop {
        let notified = shared.updates.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            if s.poll_generation != generation {
                break error(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                );
            }
            if !s.updates.is_empty() {
                let batch: Vec<Value> = s.updates.iter().take(limit).cloned().collect();
                break ok(Value::Array(batch));
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            break ok(json!([]));
        }
    };
    shared.state.lock().unwrap_or_else(|e| e.into_inner()).pollers -= 1;
    reply
}

fn bot_user() -> Value {
    json!({"id": BOT_ID, "is_bot": true, "first_name": "Acme Support", "username": "acme_help_bot"})
}

fn chat_json(chat: i64) -> Value {
    if chat < 0 {
        json!({"id": chat, "type": "group", "title": format!("group {chat}")})
    } else {
        json!({"id": chat, "type": "private", "first_name": format!("user {chat}")})
    }
}

/// Checks the target chat: known (the user wrote first), not blocked.
fn check_chat(s: &State_, params: &Map<String, Value>) -> Result<i64, Reply> {
    let chat = int(params, "chat_id").ok_or_else(|| error(400, "Bad Request: chat not found"))?;
    if !s.chats.contains(&chat) {
        return Err(error(400, "Bad Request: chat not found"));
    }
    if s.blocked.contains(&chat) {
        return Err(error(403, "Forbidden: bot was blocked by the user"));
    }
    Ok(chat)
}

fn check_markup(params: &Map<String, Value>) -> Result<(), Reply> {
    if let Some(rows) = params.get("reply_markup").and_then(|m| m.get("inline_keyboard")).and_then(Value::as_array) {
        for button in rows.iter().filter_map(Value::as_array).flatten() {
            if let Some(data) = button.get("callback_data").and_then(Value::as_str)
                && (data.is_empty() || data.len() > 64)
            {
                return Err(error(400, "Bad Request: BUTTON_DATA_INVALID"));
            }
        }
    }
    Ok(())
}

fn new_message(s: &mut State_, chat: i64, method: &str, text: Option<String>, caption: Option<String>) -> (i32, i64) {
    let id = {
        let next = s.message_ids.entry(chat).or_insert(0);
        *next += 1;
        *next
    };
    let date = EPOCH + s.started.elapsed().as_secs() as i64 + s.skew;
    s.sent
        .insert((chat, id), Sent { chat, message_id: id, method: method.into(), text, caption, deleted: false, date });
    (id, date)
}

fn handle(s: &mut State_, method: &str, params: &Map<String, Value>, files: &[Upload]) -> Reply {
    match handle_inner(s, method, params, files) {
        Ok(reply) | Err(reply) => reply,
    }
}

fn handle_inner(s: &mut State_, method: &str, params: &Map<String, Value>, files: &[Upload]) -> Result<Reply, Reply> {
    Ok(match method {
        "getMe" => ok(bot_user()),
        "setWebhook" => {
            let url = string(params, "url").unwrap_or_default();
            if url.is_empty() {
                s.webhook = None;
                return Ok(ok(json!(true)));
            }
            let secret = string(params, "secret_token");
            if let Some(secret) = &secret {
                let valid = (1..=256).contains(&secret.len())
                    && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !valid {
                    return Err(error(400, "Bad Request: secret token contains unallowed characters"));
                }
            }
            s.webhook = Some(Webhook { url, secret, allowed_updates: params.get("allowed_updates").cloned() });
            (StatusCode::OK, json!({"ok": true, "result": true, "description": "Webhook was set"}))
        }
        "deleteWebhook" => {
            s.webhook = None;
            if params.get("drop_pending_updates") == Some(&json!(true)) {
                s.updates.clear();
            }
            (StatusCode::OK, json!({"ok": true, "result": true, "description": "Webhook was deleted"}))
        }
        "getWebhookInfo" => {
            let url = s.webhook.as_ref().map(|w| w.url.clone()).unwrap_or_default();
            ok(json!({"url": url, "has_custom_certificate": false, "pending_update_count": s.updates.len()}))
        }
        "sendMessage" => {
            let chat = check_chat(s, params)?;
            check_markup(params)?;
            let text = string(params, "text").unwrap_or_default();
            if text.trim().is_empty() {
                return Err(error(400, "Bad Request: message text is empty"));
            }
            if utf16_len(&text) > 4096 {
                return Err(error(400, "Bad Request: message is too long"));
            }
            let (id, date) = new_message(s, chat, method, Some(text.clone()), None);
            let mut message =
                json!({"message_id": id, "date": date, "from": bot_user(), "chat": chat_json(chat), "text": text});
            if let Some(markup) = params.get("reply_markup").filter(|m| m.get("inline_keyboard").is_some()) {
                message["reply_markup"] = markup.clone();
            }
            ok(message)
        }
        "sendPhoto" | "sendDocument" | "sendVideo" | "sendAudio" | "sendVoice" | "sendSticker" | "sendAnimation" => {
            let chat = check_chat(s, params)?;
            check_markup(params)?;
            let field = match method {
                "sendPhoto" => "photo",
                "sendDocument" => "document",
                "sendVideo" => "video",
                "sendAudio" => "audio",
                "sendVoice" => "voice",
                "sendSticker" => "sticker",
                _ => "animation",
            };
            let caption = string(params, "caption");
            if caption.as_deref().is_some_and(|c| utf16_len(c) > 1024) {
                return Err(error(400, "Bad Request: message caption is too long"));
            }
            let upload = files.iter().find(|f| f.field == field);
            let (bytes, name) = match upload {
                Some(f) => (f.bytes.clone(), f.file_name.clone()),
                None => match string(params, field) {
                    Some(id) if s.files.contains_key(&id) => (s.files[&id].bytes.clone(), None),
                    _ => return Err(error(400, "Bad Request: wrong file identifier/HTTP URL specified")),
                },
            };
            let max = if field == "photo" { 10 * MB } else { 50 * MB };
            if bytes.len() > max {
                return Err(error(413, "Request Entity Too Large"));
            }
            let size = bytes.len();
            let ext =
                name.as_deref().and_then(|n| n.rsplit_once('.')).map(|(_, e)| e.to_owned()).unwrap_or("bin".into());
            let (file_id, unique) = add_file(s, bytes, &ext);
            let (id, date) = new_message(s, chat, method, None, caption.clone());
            let file = json!({"file_id": file_id, "file_unique_id": unique, "file_size": size});
            let media = match field {
                "photo" => {
                    json!([{"file_id": file_id, "file_unique_id": unique, "width": 1280, "height": 960, "file_size": size}])
                }
                "video" | "animation" => merge(file, json!({"width": 640, "height": 480, "duration": 3})),
                "audio" => merge(file, json!({"duration": 60})),
                "voice" => merge(file, json!({"duration": 2})),
                "sticker" => merge(
                    file,
                    json!({"width": 512, "height": 512, "type": "regular", "is_animated": false, "is_video": false}),
                ),
                _ => merge(file, json!({"file_name": name.clone().unwrap_or_else(|| "file".into())})),
            };
            let mut message =
                json!({"message_id": id, "date": date, "from": bot_user(), "chat": chat_json(chat), field: media});
            if let Some(caption) = caption {
                message["caption"] = json!(caption);
            }
            ok(message)
        }
        "sendLocation" => {
            let chat = check_chat(s, params)?;
            let (id, date) = new_message(s, chat, method, None, None);
            let lat = params.get("latitude").cloned().unwrap_or(json!(0.0));
            let lon = params.get("longitude").cloned().unwrap_or(json!(0.0));
            ok(json!({"message_id": id, "date": date, "from": bot_user(), "chat": chat_json(chat),
                "location": {"latitude": lat, "longitude": lon}}))
        }
        "sendContact" => {
            let chat = check_chat(s, params)?;
            let (id, date) = new_message(s, chat, method, None, None);
            ok(json!({"message_id": id, "date": date, "from": bot_user(), "chat": chat_json(chat),
                "contact": {"phone_number": string(params, "phone_number").unwrap_or_default(),
                            "first_name": string(params, "first_name").unwrap_or_default()}}))
        }
        "sendChatAction" => {
            check_chat(s, params)?;
            ok(json!(true))
        }
        "sendMediaGroup" => {
            let chat = check_chat(s, params)?;
            let media = params.get("media").and_then(Value::as_array).cloned().unwrap_or_default();
            if !(2..=10).contains(&media.len()) {
                return Err(error(400, "Bad Request: wrong number of messages in the media group"));
            }
            let mut messages = Vec::new();
            for item in media {
                let (id, date) = new_message(
                    s,
                    chat,
                    method,
                    None,
                    string(&item.as_object().cloned().unwrap_or_default(), "caption"),
                );
                messages.push(json!({"message_id": id, "date": date, "from": bot_user(), "chat": chat_json(chat),
                    "document": {"file_id": "x", "file_unique_id": "x"}}));
            }
            ok(Value::Array(messages))
        }
        "copyMessage" => {
            let chat = check_chat(s, params)?;
            let (id, _) = new_message(s, chat, method, None, None);
            ok(json!({"message_id": id}))
        }
        "forwardMessage" => {
            let chat = check_chat(s, params)?;
            let (Some(from), Some(original)) = (int(params, "from_chat_id"), int(params, "message_id")) else {
                return Err(error(400, "Bad Request: message to forward not found"));
            };
            if original <= 0 {
                return Err(error(400, "Bad Request: message to forward not found"));
            }
            let (id, date) = new_message(s, chat, method, None, None);
            ok(json!({"message_id": id, "date": date, "from": bot_user(), "chat": chat_json(chat),
                "forward_origin": {"type": "chat", "date": date, "sender_chat": chat_json(from)},
                "text": format!("forwarded {from}:{original}")}))
        }
        "editMessageText" | "editMessageCaption" | "editMessageReplyMarkup" => {
            let chat = int(params, "chat_id").unwrap_or_default();
            let id = int(params, "message_id").unwrap_or_default() as i32;
            let Some(sent) = s.sent.get_mut(&(chat, id)).filter(|m| !m.deleted) else {
                return Err(error(400, "Bad Request: message to edit not found"));
            };
            match method {
                "editMessageText" => {
                    let text = string(params, "text").unwrap_or_default();
                    if text.trim().is_empty() {
                        return Err(error(400, "Bad Request: message text is empty"));
                    }
                    if utf16_len(&text) > 4096 {
                        return Err(error(400, "Bad Request: MESSAGE_TOO_LONG"));
                    }
                    if sent.text.as_deref() == Some(text.as_str()) && params.get("reply_markup").is_none() {
                        return Err(error(
                            400,
                            "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
                        ));
                    }
                    sent.text = Some(text);
                }
                "editMessageCaption" => {
                    let caption = string(params, "caption");
                    if sent.caption == caption {
                        return Err(error(
                            400,
                            "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
                        ));
                    }
                    sent.caption = caption;
                }
                _ => {}
            }
            let sent = sent.clone();
            let mut message = json!({"message_id": id, "date": sent.date, "edit_date": sent.date, "from": bot_user(), "chat": chat_json(chat)});
            match (&sent.text, &sent.caption) {
                (Some(text), _) => message["text"] = json!(text),
                (None, caption) => {
                    message["document"] = json!({"file_id": "x", "file_unique_id": "x"});
                    if let Some(c) = caption {
                        message["caption"] = json!(c);
                    }
                }
            }
            ok(message)
        }
        "deleteMessage" | "deleteMessages" => {
            let chat = int(params, "chat_id").unwrap_or_default();
            let ids: Vec<i32> = if method == "deleteMessage" {
                vec![int(params, "message_id").unwrap_or_default() as i32]
            } else {
                params
                    .get("message_ids")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_i64).map(|i| i as i32).collect())
                    .unwrap_or_default()
            };
            let now = EPOCH + s.started.elapsed().as_secs() as i64 + s.skew;
            for id in ids {
                match s.sent.get_mut(&(chat, id)) {
                    Some(m) if !m.deleted => {
                        if now - m.date > 48 * 3600 {
                            return Err(error(400, "Bad Request: message can't be deleted"));
                        }
                        m.deleted = true;
                    }
                    _ if method == "deleteMessage" => {
                        return Err(error(400, "Bad Request: message to delete not found"));
                    }
                    _ => {}
                }
            }
            ok(json!(true))
        }
        "answerCallbackQuery" => {
            let id = string(params, "callback_query_id").unwrap_or_default();
            if !s.callbacks.remove(&id) {
                return Err(error(
                    400,
                    "Bad Request: query is too old and response timeout expired or query id is invalid",
                ));
            }
            ok(json!(true))
        }
        "getFile" => {
            let id = string(params, "file_id").unwrap_or_default();
            let Some(file) = s.files.get(&id) else {
                return Err(error(400, "Bad Request: wrong file identifier/HTTP URL specified"));
            };
            if file.bytes.len() > 20 * MB {
                return Err(error(400, "Bad Request: file is too big"));
            }
            ok(
                json!({"file_id": id, "file_unique_id": file.unique_id, "file_size": file.bytes.len(), "file_path": file.path}),
            )
        }
        "getUserProfilePhotos" => {
            let user = int(params, "user_id").unwrap_or_default() as u64;
            match s.profile_photos.get(&user).and_then(|id| s.files.get(id).map(|f| (id.clone(), f))) {
                Some((id, f)) => ok(json!({"total_count": 1, "photos": [[
                    {"file_id": id, "file_unique_id": f.unique_id, "width": 640, "height": 640, "file_size": f.bytes.len()}]]})),
                None => ok(json!({"total_count": 0, "photos": []})),
            }
        }
        _ => return Err(error(404, "Not Found")),
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}
