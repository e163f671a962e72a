//! The customer's socket: `GET /api/v1/webchat/ws?key=<account id>[&token=][&name=]`.
//!
//! Frames are JSON text, `type` first. Server to widget:
//! - `hello`: `token` (keep it; pass it back as `?token=` to resume), `customer` (`id`,
//!   `name`), `title`, `welcome`, `max_file_bytes`, `max_text_chars`;
//! - `message`: one message of the conversation, sent again whenever its status, text or
//!   deletion changes (`id`, `direction`, `author` `{kind, name}`, `kind`, `text`, `files`
//!   with signed `url`s, `status`, `created_at`, `deleted`);
//! - `ack`: `client_msg_id`, `message_id`: the customer's message is stored;
//! - `typing`: an agent is typing (`typing: true`, `name`, `expires_in_ms`: show it that long
//!   unless refreshed or a message arrives) or stopped (`typing: false`);
//! - `error`: `code` (`rate_limited` with `retry_after_s`, `too_long`, `file_too_large` with
//!   `limit`, `bad_request`, `unavailable`), `message` for people, the `client_msg_id` concerned.
//!
//! Widget to server: `message` (`client_msg_id`, `text`), `file` (`client_msg_id`, `name`,
//! `mime`, `size`, optional `text`) followed by one binary frame with the bytes, `read` (the
//! customer has seen the conversation: agents' sent messages become `read`), `typing` (the
//! customer is typing: `interaction.typing` to the agents, once every [`TYPING_EVERY`] at most).
//!
//! The customer's own messages change to `status: "read"` (sent again as `message`) when an
//! agent marks them read (`message.read` of the agent API).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::ws::{CloseFrame, Message as Frame, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schema::domain::{Account, Channel, Message, MessageKind};
use schema::store::{self, InboundMessage, Ingested, Sender};
use schema::topics;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::throttle::Kind;
use super::{Hub, Settings, WebchatState, sign_customer, verify_customer};
use crate::files::FileServer;
use crate::ingest::Ingest;
use crate::outbox::human_size;
use crate::runtime::Shared;

/// Messages a widget shows after a reload.
const TRANSCRIPT: i64 = 200;
const HEARTBEAT: Duration = Duration::from_secs(20);
/// A signed file link lives this long; the socket asks for a new one when less is left.
const LINK_TTL_S: u64 = 3600;
/// Read receipts are recorded once a second at most per socket.
const READ_EVERY: Duration = Duration::from_secs(1);
/// The customer's typing reaches the agents once every this long at most per socket.
pub const TYPING_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize)]
pub struct ConnectQuery {
    key: String,
    token: Option<String>,
    name: Option<String>,
}

fn refuse(status: StatusCode, code: &str, message: &str, extra: Value) -> Response {
    let mut error = json!({ "code": code, "message": message });
    if let (Some(error), Value::Object(extra)) = (error.as_object_mut(), extra) {
        error.extend(extra);
    }
    (status, axum::Json(json!({ "error": error }))).into_response()
}

/// The upgrade: every refusal happens here, before a socket exists.
pub async fn connect(
    State(state): State<WebchatState>,
    Query(query): Query<ConnectQuery>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let ip = peer.map(|Extension(ConnectInfo(addr))| addr.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let WebchatState { shared: runtime, hub } = state;
    // first, before any database work: a flood of connections costs nothing but this
    if let Err(wait) = hub.throttle(ip, Kind::Connect, &Settings::default()) {
        metrics::counter!("switchboard_webchat_refused_total", "reason" => "connect_rate").increment(1);
        let secs = wait.as_secs().max(1);
        let mut response = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            &format!("too many connections from your network; try again in {secs} s"),
            json!({ "retry_after_s": secs }),
        );
        if let Ok(v) = secs.to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    let Ok(account_id) = query.key.parse::<Uuid>() else {
        return refuse(StatusCode::NOT_FOUND, "unknown_key", "no web chat has this key", Value::Null);
    };
    let loaded = async {
        let mut conn = runtime.pool.acquire().await?;
        let account = store::get_account(&mut conn, account_id).await?;
        let settings = store::account_settings(&mut conn, account_id).await?;
        Ok::<_, store::StoreError>((account, settings))
    }
    .await;
    let (account, settings) = match loaded {
        Ok(found) => found,
        Err(store::StoreError::NotFound { .. }) => {
            return refuse(StatusCode::NOT_FOUND, "unknown_key", "no web chat has this key", Value::Null);
        }
        Err(e) => {
            warn!(error = %e, "web chat: cannot read the account");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "try again in a moment", Value::Null);
        }
    };
    if account.channel != Channel::Webchat || !account.enabled {
        return refuse(StatusCode::NOT_FOUND, "unknown_key", "no web chat has this key", Value::Null);
    }
    let settings = match Settings::from_json(&settings) {
        Ok(s) => s,
        Err(e) => {
            warn!(account = %account.id, error = %format!("{e:#}"), "web chat settings");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "this web chat is misconfigured",
                Value::Null,
            );
        }
    };
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    if !settings.origin_allowed(origin) {
        warn!(account = %account.id, ?origin, %ip, "web chat socket from a foreign origin refused");
        metrics::counter!("switchboard_webchat_refused_total", "reason" => "origin").increment(1);
        return refuse(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            &format!("this chat cannot be used on {}", origin.unwrap_or("a page without an origin")),
            Value::Null,
        );
    }
    let Some(secret) = runtime.jwt_secret.as_ref().map(|s| s.expose().to_owned()) else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "web chat needs jwt.hs256_secret to sign customer tokens",
            Value::Null,
        );
    };
    let external_id = query
        .token
        .as_deref()
        .and_then(|t| verify_customer(&secret, account.id, t))
        .unwrap_or_else(|| format!("wc-{}", Uuid::new_v4().simple()));
    let token = match sign_customer(&secret, account.id, &external_id) {
        Ok(t) => t,
        Err(e) => {
            warn!(error = %format!("{e:#}"), "web chat");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "try again in a moment", Value::Null);
        }
    };
    let name = query
        .name
        .map(|n| n.chars().filter(|c| !c.is_control()).take(80).collect::<String>())
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| format!("Visitor {}", &external_id[3..9.min(external_id.len())]));
    let Some(base) = runtime.fileserver.get().cloned() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the hub is starting", Value::Null);
    };
    let files = FileServer::new(base, runtime.jwt_secret.clone(), runtime.public_url(), Channel::Webchat, account.id);
    let ingest = runtime.ingest(account.id);
    let max_frame = usize::try_from(settings.max_file_bytes).unwrap_or(usize::MAX).saturating_add(64 * 1024);
    let closing = hub.closing(account_id);
    let session = Session {
        runtime,
        hub,
        account,
        settings,
        external_id,
        name,
        token,
        ip,
        files,
        ingest,
        shown: HashMap::new(),
        links: HashMap::new(),
        pending_file: None,
        last_read: None,
        last_typing: None,
        shown_typing: None,
        closing,
    };
    upgrade.max_message_size(max_frame).max_frame_size(max_frame).on_upgrade(move |socket| session.run(socket))
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Message {
        client_msg_id: String,
        text: String,
    },
    File {
        client_msg_id: String,
        name: String,
        #[serde(default)]
        mime: Option<String>,
        size: u64,
        #[serde(default)]
        text: Option<String>,
    },
    Typing {},
    Read {},
}

struct PendingFile {
    client_msg_id: String,
    name: String,
    mime: String,
    size: u64,
    text: Option<String>,
}

struct Session {
    runtime: Shared,
    hub: Arc<Hub>,
    account: Account,
    settings: Settings,
    external_id: String,
    name: String,
    token: String,
    ip: IpAddr,
    files: FileServer,
    ingest: Ingest,
    /// What each message looked like when last sent, so only changes go out again.
    shown: HashMap<Uuid, String>,
    /// Signed links handed out, with their expiry (unix seconds).
    links: HashMap<Uuid, (String, u64)>,
    pending_file: Option<PendingFile>,
    /// When the customer last said they read the conversation (one update a second at most).
    last_read: Option<tokio::time::Instant>,
    /// When the customer's typing last went to the agents.
    last_typing: Option<tokio::time::Instant>,
    /// The agent typing as last shown (name, signal version); `None`: nobody shown.
    shown_typing: Option<(String, i64)>,
    /// Cancelled when the account's connector stops in this process (taken before the upgrade,
    /// so a stop after it is never missed).
    closing: tokio_util::sync::CancellationToken,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

fn valid_client_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 100 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Session {
    async fn run(mut self, mut socket: WebSocket) {
        let hub = self.hub.clone();
        let (_guard, bell) = hub.register(self.account.id, &self.external_id);
        let _watch = hub.watch(self.account.id, self.runtime.pool.clone(), self.runtime.coord.clone());
        metrics::gauge!("switchboard_webchat_sockets").set(hub.open_sockets() as f64);
        info!(account = %self.account.id, customer = %self.external_id, ip = %self.ip, "web chat customer connected");
        // messages queued while the customer was away: the leader tries them again now
        self.runtime.coord.notify(&topics::account(self.account.id));
        let limits = Channel::Webchat.capabilities().limits;
        let primary = self.settings.primary().unwrap_or_else(|warning| {
            warn!(account = %self.account.id, "{warning}");
            None
        });
        let hello = json!({
            "type": "hello",
            "token": self.token,
            "customer": { "id": self.external_id, "name": self.name },
            "title": self.settings.title.clone().unwrap_or_else(|| self.account.name.clone()),
            "welcome": self.settings.welcome,
            "max_file_bytes": self.settings.max_file_bytes,
            "max_file_size": human_size(self.settings.max_file_bytes),
            "max_text_chars": limits.max_text_chars,
            "primary": primary,
        });
        if send(&mut socket, &hello).await.is_err() {
            return;
        }
        if self.sync(&mut socket).await.is_err() {
            return;
        }
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        let closing = self.closing.clone();
        loop {
            tokio::select! {
                _ = closing.cancelled() => {
                    let frame = CloseFrame { code: 1001, reason: "the chat is moving; reconnect".into() };
                    let _ = socket.send(Frame::Close(Some(frame))).await;
                    break;
                }
                frame = socket.recv() => {
                    let Some(Ok(frame)) = frame else { break };
                    let outcome = match frame {
                        Frame::Text(text) => self.on_text(&mut socket, text).await,
                        Frame::Binary(bytes) => self.on_bytes(&mut socket, bytes).await,
                        Frame::Close(_) => break,
                        _ => Ok(()),
                    };
                    if outcome.is_err() {
                        break;
                    }
                }
                _ = bell.notified() => {
                    if self.sync(&mut socket).await.is_err() {
                        break;
                    }
                }
                _ = heartbeat.tick() => {
                    if socket.send(Frame::Ping(Default::default())).await.is_err() {
                        break;
                    }
                }
            }
        }
        drop(_guard);
        metrics::gauge!("switchboard_webchat_sockets").set(hub.open_sockets() as f64);
        debug!(account = %self.account.id, customer = %self.external_id, "web chat customer left");
    }

    async fn on_text(&mut self, socket: &mut WebSocket, text: Utf8Bytes) -> Result<(), axum::Error> {
        let frame: ClientFrame = match serde_json::from_str(text.as_str()) {
            Ok(frame) => frame,
            Err(e) => {
                return error(socket, "bad_request", &format!("not a web chat frame: {e}"), None, json!({})).await;
            }
        };
        match frame {
            ClientFrame::Message { client_msg_id, text } => {
                if !valid_client_id(&client_msg_id) {
                    return error(socket, "bad_request", "client_msg_id: 1-100 of A-Z a-z 0-9 - _", None, json!({}))
                        .await;
                }
                if let Err(e) = self.throttled(socket, &client_msg_id).await {
                    return e;
                }
                let max = Channel::Webchat.capabilities().limits.max_text_chars;
                if text.trim().is_empty() {
                    return error(socket, "bad_request", "the message is empty", Some(&client_msg_id), json!({})).await;
                }
                if text.chars().count() > max {
                    return error(
                        socket,
                        "too_long",
                        &format!("a message may have at most {max} characters"),
                        Some(&client_msg_id),
                        json!({ "limit": max }),
                    )
                    .await;
                }
                self.store(socket, &client_msg_id, MessageKind::Text, Some(text), Vec::new()).await
            }
            ClientFrame::File { client_msg_id, name, mime, size, text } => {
                if !valid_client_id(&client_msg_id) {
                    return error(socket, "bad_request", "client_msg_id: 1-100 of A-Z a-z 0-9 - _", None, json!({}))
                        .await;
                }
                let limit = self.settings.max_file_bytes;
                if size > limit {
                    return error(
                        socket,
                        "file_too_large",
                        &format!("{name} is {}; files may be up to {}", human_size(size), human_size(limit)),
                        Some(&client_msg_id),
                        json!({ "limit": limit }),
                    )
                    .await;
                }
                if let Err(e) = self.throttled(socket, &client_msg_id).await {
                    return e;
                }
                let mime = mime.filter(|m| m.contains('/')).unwrap_or_else(|| "application/octet-stream".to_owned());
                self.pending_file = Some(PendingFile { client_msg_id, name, mime, size, text });
                Ok(())
            }
            ClientFrame::Read {} => {
                self.read().await;
                Ok(())
            }
            ClientFrame::Typing {} => {
                self.typing().await;
                Ok(())
            }
        }
    }

    /// `Err(result)`: the customer is over the per-IP limit and was told so.
    async fn throttled(&self, socket: &mut WebSocket, client_msg_id: &str) -> Result<(), Result<(), axum::Error>> {
        match self.hub.throttle(self.ip, Kind::Message, &self.settings) {
            Ok(()) => Ok(()),
            Err(wait) => {
                metrics::counter!("switchboard_webchat_refused_total", "reason" => "message_rate").increment(1);
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                debug!(ip = %self.ip, "web chat message over the per-IP limit");
                Err(error(
                    socket,
                    "rate_limited",
                    &format!("You are sending messages too fast. Please wait {secs} s and try again."),
                    Some(client_msg_id),
                    json!({ "retry_after_s": secs }),
                )
                .await)
            }
        }
    }

    async fn on_bytes(&mut self, socket: &mut WebSocket, bytes: axum::body::Bytes) -> Result<(), axum::Error> {
        let Some(file) = self.pending_file.take() else {
            return error(socket, "bad_request", "send a `file` frame before the bytes", None, json!({})).await;
        };
        if bytes.len() as u64 != file.size {
            return error(
                socket,
                "bad_request",
                &format!("announced {} bytes, got {}", file.size, bytes.len()),
                Some(&file.client_msg_id),
                json!({}),
            )
            .await;
        }
        let uploaded = match self.files.upload(&file.name, &file.mime, bytes).await {
            Ok(uploaded) => uploaded,
            Err(e) => {
                warn!(account = %self.account.id, error = %e, "web chat upload failed");
                return error(
                    socket,
                    "unavailable",
                    "the file could not be stored; try again",
                    Some(&file.client_msg_id),
                    json!({}),
                )
                .await;
            }
        };
        let kind = match file.mime.split('/').next() {
            Some("image") => MessageKind::Image,
            Some("video") => MessageKind::Video,
            Some("audio") => MessageKind::Audio,
            _ => MessageKind::Document,
        };
        let text = file.text.filter(|t| !t.trim().is_empty());
        self.store(socket, &file.client_msg_id, kind, text, vec![uploaded.id]).await
    }

    async fn store(
        &mut self,
        socket: &mut WebSocket,
        client_msg_id: &str,
        kind: MessageKind,
        text: Option<String>,
        file_ids: Vec<Uuid>,
    ) -> Result<(), axum::Error> {
        let inbound = InboundMessage {
            account_id: self.account.id,
            external_message_id: format!("{}:{client_msg_id}", self.external_id),
            chat_id: self.external_id.clone(),
            sender: Sender {
                external_id: self.external_id.clone(),
                name: self.name.clone(),
                username: None,
                phone: None,
                avatar_url: None,
            },
            kind,
            text,
            file_ids,
            location: None,
            contact: None,
            reply_to_external_id: None,
            forwarded: None,
            sent_at: None,
            sticker_id: None,
        };
        match self.ingest.message(&inbound).await {
            Ok(stored) => {
                let message_id = match stored {
                    Ingested::Stored { message, .. } => message.id,
                    Ingested::Duplicate { message_id } => message_id,
                };
                send(socket, &json!({ "type": "ack", "client_msg_id": client_msg_id, "message_id": message_id }))
                    .await?;
                self.sync(socket).await
            }
            Err(e) => {
                warn!(account = %self.account.id, error = %e, "web chat message not stored");
                error(socket, "unavailable", "not sent; try again", Some(client_msg_id), json!({})).await
            }
        }
    }

    /// The customer has seen the conversation: agents' sent messages become `read`.
    async fn read(&mut self) {
        let now = tokio::time::Instant::now();
        if self.last_read.is_some_and(|at| now < at + READ_EVERY) {
            return;
        }
        self.last_read = Some(now);
        let marked = async {
            let mut tx = self.runtime.pool.begin().await?;
            let audience = store::customer_read(&mut tx, self.account.id, &self.external_id).await?;
            tx.commit().await?;
            Ok::<_, store::StoreError>(audience)
        }
        .await;
        match marked {
            Ok(audience) => {
                for agent in &audience {
                    self.runtime.coord.notify(&topics::agent(agent));
                }
            }
            Err(e) => warn!(account = %self.account.id, error = %e, "web chat: cannot record a read"),
        }
    }

    /// The customer is typing: the agents who see the interaction get `interaction.typing`.
    async fn typing(&mut self) {
        let now = tokio::time::Instant::now();
        if self.last_typing.is_some_and(|at| now < at + TYPING_EVERY) {
            return;
        }
        self.last_typing = Some(now);
        let sent = async {
            let mut tx = self.runtime.pool.begin().await?;
            let audience = store::customer_typing(&mut tx, self.account.id, &self.external_id).await?;
            tx.commit().await?;
            Ok::<_, store::StoreError>(audience)
        }
        .await;
        match sent {
            Ok(audience) => {
                for agent in &audience {
                    self.runtime.coord.notify(&topics::agent(agent));
                }
            }
            Err(e) => warn!(account = %self.account.id, error = %e, "web chat: cannot pass on typing"),
        }
    }

    /// Shows or clears the agent's typing when it changed since last shown.
    async fn sync_typing(&mut self, socket: &mut WebSocket) -> Result<(), axum::Error> {
        let signal = async {
            let mut conn = self.runtime.pool.acquire().await?;
            store::customer_signal(&mut conn, self.account.id, &self.external_id).await
        }
        .await;
        let signal = match signal {
            Ok(Some(signal)) => signal,
            Ok(None) => return Ok(()),
            Err(e) => {
                warn!(account = %self.account.id, error = %e, "web chat: cannot read the typing state");
                return Ok(());
            }
        };
        match signal.typing {
            Some((name, left_ms)) => {
                if self.shown_typing.as_ref().is_some_and(|(_, v)| *v == signal.version) {
                    return Ok(());
                }
                send(socket, &json!({ "type": "typing", "typing": true, "name": name, "expires_in_ms": left_ms }))
                    .await?;
                self.shown_typing = Some((name, signal.version));
            }
            None => {
                if self.shown_typing.take().is_some() {
                    send(socket, &json!({ "type": "typing", "typing": false })).await?;
                }
            }
        }
        Ok(())
    }

    /// Sends every message of the transcript that is new or changed since last sent, then the
    /// agent's typing if it changed.
    async fn sync(&mut self, socket: &mut WebSocket) -> Result<(), axum::Error> {
        let transcript = async {
            let mut conn = self.runtime.pool.acquire().await?;
            store::customer_transcript(&mut conn, self.account.id, &self.external_id, TRANSCRIPT).await
        }
        .await;
        let messages = match transcript {
            Ok(messages) => messages,
            Err(e) => {
                warn!(account = %self.account.id, error = %e, "web chat: cannot read the transcript");
                return Ok(());
            }
        };
        for message in messages {
            let look = format!("{:?}|{:?}|{:?}|{}", message.status, message.text, message.edited_at, message.deleted);
            if self.shown.get(&message.id) == Some(&look) {
                continue;
            }
            let frame = self.frame(&message).await;
            send(socket, &frame).await?;
            self.shown.insert(message.id, look);
        }
        self.sync_typing(socket).await
    }

    async fn frame(&mut self, m: &Message) -> Value {
        let mut files = Vec::new();
        for f in &m.files {
            let url = self.link(f.id).await;
            files.push(json!({ "id": f.id, "name": f.name, "mime": f.mime, "size": f.size, "url": url }));
        }
        json!({
            "type": "message",
            "message": {
                "id": m.id,
                "direction": m.direction,
                "author": { "kind": m.author.kind, "name": m.author.name },
                "kind": m.kind,
                "text": if m.deleted { None } else { m.text.clone() },
                "files": if m.deleted { Vec::new() } else { files },
                "status": m.status,
                "created_at": m.created_at,
                "edited": m.edited_at.is_some(),
                "deleted": m.deleted,
                // buttons of an agent's or a bot's message; a press is sent as the customer's text
                "keyboard": if m.deleted { None } else { m.keyboard.clone() },
            }
        })
    }

    /// A signed download link of a file of the transcript (a path on the hub), or `None`.
    async fn link(&mut self, id: Uuid) -> Option<String> {
        if let Some((url, exp)) = self.links.get(&id)
            && *exp > unix_now() + LINK_TTL_S / 3
        {
            return Some(url.clone());
        }
        let mut url = self.files.base().clone();
        url.set_path(&format!("{}/api/v1/files/{id}/link", url.path().trim_end_matches('/')));
        url.set_query(Some(&format!("ttl_s={LINK_TTL_S}")));
        let token = self.files.token().ok()?;
        let answer = reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?
            .json::<Value>()
            .await
            .ok()?;
        let link = answer["url"].as_str()?.to_owned();
        self.links.insert(id, (link.clone(), unix_now() + LINK_TTL_S));
        Some(link)
    }
}

async fn send(socket: &mut WebSocket, frame: &Value) -> Result<(), axum::Error> {
    socket.send(Frame::Text(frame.to_string().into())).await
}

async fn error(
    socket: &mut WebSocket,
    code: &str,
    message: &str,
    client_msg_id: Option<&str>,
    extra: Value,
) -> Result<(), axum::Error> {
    let mut frame = json!({ "type": "error", "code": code, "message": message, "client_msg_id": client_msg_id });
    if let (Some(frame), Value::Object(extra)) = (frame.as_object_mut(), extra) {
        frame.extend(extra);
    }
    send(socket, &frame).await
}
