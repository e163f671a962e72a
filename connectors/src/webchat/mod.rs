//! The web chat channel: the hub itself is the platform.
//!
//! - Customers connect to `GET /api/v1/webchat/ws?key=<account id>[&token=<customer token>]`
//!   from the widget (`/webchat/widget.js`, one `<script data-key>` tag; demo page
//!   `/webchat/demo?key=`). Before the upgrade: a per-IP connection bucket (429
//!   `rate_limited`), the account (404 `unknown_key` unless an enabled web chat account), the
//!   `Origin` against `accounts.settings.allowed_origins` (403 `origin_not_allowed`). Protocol:
//!   [`socket`].
//! - A customer's identity is a random external id; the widget keeps the **customer token**
//!   (a JWT signed with the hub's HS256 secret, audience `webchat:<account>`) in
//!   `localStorage`, so a reload resumes the conversation with its history.
//! - **Inbound** goes through the runtime's [`Ingest`](crate::ingest::Ingest) like every other
//!   channel (stored in one transaction, the widget's `ack` after the commit, the dedupe key is
//!   the widget's own `client_msg_id`, so a resend after a lost ack is a no-op). Any process
//!   with the runtime takes customer sockets.
//! - **Outbound** is the runtime's outbox worker on the account's elected leader; the
//!   "platform request" is [`WebchatOutbound::send`], which rings the customer's sockets (they
//!   re-read the transcript from PostgreSQL: a wake-up is never the data). With no socket of that
//!   customer in this process the row stays queued and is retried, so a message to an offline
//!   customer is delivered when they come back. One limit: the leader rings only the sockets of
//!   its own process, so with several connector processes for one web chat account the customer
//!   sockets must reach the leader (or wait for the next reload, which reads the transcript).
//! - Files: the widget sends a `file` frame with name, type and size (checked against
//!   `max_file_bytes`, which the `hello` frame announces, before any byte is sent), then the
//!   bytes as one binary frame; the connector uploads them to the file server and ingests the
//!   message. Agents' files reach the widget as signed links (`POST /api/v1/files/{id}/link`).
//!
//! Settings (`accounts.settings`): `allowed_origins` (array of `scheme://host[:port]`; absent or
//! empty: any origin), `title`, `welcome`, `max_file_bytes` (default 10 MB), `messages_burst`
//! and `messages_per_minute` (per IP; defaults 10 and 30).

pub mod socket;
pub mod throttle;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use axum::Router;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use coord::Coordinator;
use schema::domain::Channel;
use schema::{store, topics};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use crate::channel::{AccountContext, ChannelAccount, ChannelModule, OpenError};
use crate::platform::{FileDelivery, Outbound, Part, SendError};
use crate::runtime::Shared;
use throttle::{Kind, Shape, Throttle};

/// How soon a message to a customer with no open socket here is tried again.
pub const OFFLINE_RETRY: Duration = Duration::from_secs(3);
/// A customer token lives this long; every visit gets a fresh one.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(180 * 24 * 3600);

/// What `accounts.settings` holds for a web chat account (other keys belong to the runtime).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub allowed_origins: Vec<String>,
    pub title: Option<String>,
    pub welcome: Option<String>,
    pub max_file_bytes: u64,
    pub messages_burst: u32,
    pub messages_per_minute: u32,
    /// The call pages' branding (docs/video.md, Branding); the widget takes its `primary`
    /// colour (a bad one is ignored with a warning, see [`Settings::primary`]).
    pub branding: serde_json::Value,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allowed_origins: Vec::new(),
            title: None,
            welcome: None,
            max_file_bytes: 10 * schema::domain::MB,
            messages_burst: 10,
            messages_per_minute: 30,
            branding: serde_json::Value::Null,
        }
    }
}

impl Settings {
    /// `branding.primary` when it is a colour written `#rrggbb`: the widget's launcher, header,
    /// buttons and the customer's messages (white text on it). Anything else is `Err` with the
    /// reason, for a warning: the widget keeps its own colour.
    pub fn primary(&self) -> Result<Option<&str>, String> {
        match self.branding.get("primary") {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(c))
                if c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Ok(Some(c))
            }
            Some(other) => {
                Err(format!("accounts.settings.branding.primary: {other} is not a colour written #rrggbb; ignored"))
            }
        }
    }

    pub fn from_json(settings: &serde_json::Value) -> anyhow::Result<Self> {
        serde_json::from_value(settings.clone()).context("accounts.settings of a web chat account is malformed")
    }

    /// Whether a page of `origin` may open the widget's socket.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        if self.allowed_origins.is_empty() || self.allowed_origins.iter().any(|o| o == "*") {
            return true;
        }
        let Some(origin) = origin else { return false };
        let origin = origin.trim_end_matches('/');
        self.allowed_origins.iter().any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }

    fn message_shape(&self) -> Shape {
        let per_minute = self.messages_per_minute.max(1);
        Shape { burst: self.messages_burst.max(1), every: Duration::from_secs_f64(60.0 / f64::from(per_minute)) }
    }
}

/// The claims of a customer token.
#[derive(Debug, Serialize, Deserialize)]
struct CustomerClaims {
    sub: String,
    aud: String,
    exp: u64,
}

fn audience(account_id: Uuid) -> String {
    format!("webchat:{account_id}")
}

/// Signs a customer token for `external_id` of `account_id`.
pub fn sign_customer(secret: &str, account_id: Uuid, external_id: &str) -> anyhow::Result<String> {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(TOKEN_LIFETIME)
        .as_secs();
    let claims = CustomerClaims { sub: external_id.to_owned(), aud: audience(account_id), exp };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("cannot sign a customer token")
}

/// The customer's external id if `token` is a valid customer token of `account_id`.
pub fn verify_customer(secret: &str, account_id: Uuid, token: &str) -> Option<String> {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&[audience(account_id)]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    let data = jsonwebtoken::decode::<CustomerClaims>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .ok()?;
    let sub = data.claims.sub;
    (sub.starts_with("wc-") && sub.len() <= 64).then_some(sub)
}

type SocketKey = (Uuid, String);
/// The doorbells of one customer's sockets, by socket id.
type Bells = Vec<(u64, Arc<Notify>)>;

/// The customer sockets of this process and the per-IP buckets. Shared by the socket handler
/// and the outbound side of every web chat account served here.
pub struct Hub {
    /// A std lock: a map lookup or update, never held across an await.
    sockets: Mutex<HashMap<SocketKey, Bells>>,
    next_id: std::sync::atomic::AtomicU64,
    /// A std lock: arithmetic only.
    throttle: Mutex<Throttle>,
    origin: Instant,
    /// Cancelled when the account's connector stops here (disabled, or the process stopping):
    /// its customer sockets close with 1001. A std lock: a map lookup.
    closing: Mutex<HashMap<Uuid, CancellationToken>>,
    /// Per account with customer sockets here: how many, and the task listening to
    /// `webchat/<account>` ([`watch_signals`]). A std lock: a map update.
    watchers: Mutex<HashMap<Uuid, (usize, tokio::task::JoinHandle<()>)>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        let connect = Shape { burst: 30, every: Duration::from_secs(2) };
        Hub {
            sockets: Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(1),
            throttle: Mutex::new(Throttle::new(connect, Settings::default().message_shape())),
            origin: Instant::now(),
            closing: Mutex::new(HashMap::new()),
            watchers: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token of `kind` for `ip`, or says how long to wait. Messages use the account's
    /// shape (`messages_burst`, `messages_per_minute`).
    pub fn throttle(&self, ip: IpAddr, kind: Kind, settings: &Settings) -> Result<(), Duration> {
        let now = self.origin.elapsed();
        let mut throttle = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        if kind == Kind::Message {
            throttle.set_message_shape(settings.message_shape());
        }
        throttle.take(now, ip, kind)
    }

    /// Registers a customer socket; the guard deregisters it when dropped.
    pub fn register(self: &Arc<Self>, account_id: Uuid, external_id: &str) -> (SocketGuard, Arc<Notify>) {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bell = Arc::new(Notify::new());
        let key = (account_id, external_id.to_owned());
        self.sockets.lock().unwrap_or_else(|e| e.into_inner()).entry(key.clone()).or_default().push((id, bell.clone()));
        (SocketGuard { hub: self.clone(), key, id }, bell)
    }

    /// Keeps a listener of `webchat/<account>` running while the guard lives (one per account
    /// in this process, shared by its sockets): agents' typing and read marks reach the
    /// customer sockets here, whichever process the agent's command ran in.
    pub fn watch(self: &Arc<Self>, account_id: Uuid, pool: PgPool, coord: Arc<dyn Coordinator>) -> WatchGuard {
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        let entry = watchers.entry(account_id).or_insert_with(|| {
            let hub = Arc::downgrade(self);
            (0, tokio::spawn(watch_signals(hub, account_id, pool, coord)))
        });
        entry.0 += 1;
        WatchGuard { hub: self.clone(), account_id }
    }

    /// The customers (external ids) of the account with a socket here.
    fn customers(&self, account_id: Uuid) -> Vec<String> {
        let sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        sockets.keys().filter(|(a, _)| *a == account_id).map(|(_, c)| c.clone()).collect()
    }

    /// Wakes every socket of the customer here; `false` when there is none.
    pub fn ring(&self, account_id: Uuid, external_id: &str) -> bool {
        let sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        match sockets.get(&(account_id, external_id.to_owned())) {
            Some(list) if !list.is_empty() => {
                for (_, bell) in list {
                    bell.notify_one();
                }
                true
            }
            _ => false,
        }
    }

    /// Cancelled when the account's connector stops in this process.
    pub fn closing(&self, account_id: Uuid) -> CancellationToken {
        self.closing.lock().unwrap_or_else(|e| e.into_inner()).entry(account_id).or_default().clone()
    }

    /// Closes the account's customer sockets here (they reconnect elsewhere, or later).
    pub fn close_account(&self, account_id: Uuid) {
        if let Some(token) = self.closing.lock().unwrap_or_else(|e| e.into_inner()).remove(&account_id) {
            token.cancel();
        }
    }

    /// Customer sockets open in this process.
    pub fn open_sockets(&self) -> usize {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner()).values().map(Vec::len).sum()
    }
}

/// Deregisters a customer socket on every exit of its session.
pub struct SocketGuard {
    hub: Arc<Hub>,
    key: SocketKey,
    id: u64,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let mut sockets = self.hub.sockets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = sockets.get_mut(&self.key) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                sockets.remove(&self.key);
            }
        }
    }
}

/// Stops the account's listener when the last socket that asked for it goes.
pub struct WatchGuard {
    hub: Arc<Hub>,
    account_id: Uuid,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let mut watchers = self.hub.watchers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = watchers.get_mut(&self.account_id) {
            entry.0 -= 1;
            if entry.0 == 0
                && let Some((_, task)) = watchers.remove(&self.account_id)
            {
                task.abort();
            }
        }
    }
}

/// Listens to `webchat/<account>`; on every wake-up reads the signal versions of the account's
/// customers with sockets here (one query) and rings the sockets of those whose version moved.
/// They re-read their transcript and signal themselves: the wake-up carries no data.
async fn watch_signals(hub: Weak<Hub>, account_id: Uuid, pool: PgPool, coord: Arc<dyn Coordinator>) {
    let topic = topics::webchat(account_id);
    let mut seen: HashMap<String, i64> = HashMap::new();
    let mut subscription = loop {
        match coord.subscribe(&topic).await {
            Ok(s) => break s,
            Err(e) => {
                warn!(account = %account_id, error = %e, "web chat: cannot listen for typing and read marks; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    // ends when the coordinator shuts down, or the hub is gone
    while subscription.wake().await.is_ok() {
        let Some(hub) = hub.upgrade() else { return };
        let customers = hub.customers(account_id);
        seen.retain(|c, _| customers.contains(c));
        if customers.is_empty() {
            continue;
        }
        let versions = async {
            let mut conn = pool.acquire().await?;
            store::signal_versions(&mut conn, account_id, &customers).await
        }
        .await;
        match versions {
            Ok(versions) => {
                for (customer, version) in versions {
                    if seen.insert(customer.clone(), version) != Some(version) {
                        hub.ring(account_id, &customer);
                    }
                }
            }
            Err(e) => warn!(account = %account_id, error = %e, "web chat: cannot read the customers' signals"),
        }
    }
}

/// The outbound "platform" of a web chat account: the customer's open sockets.
pub struct WebchatOutbound {
    hub: Arc<Hub>,
    account_id: Uuid,
}

impl WebchatOutbound {
    pub fn new(hub: Arc<Hub>, account_id: Uuid) -> Self {
        WebchatOutbound { hub, account_id }
    }
}

#[async_trait]
impl Outbound for WebchatOutbound {
    /// The widget shows agents' files through signed links it asks for itself; the runtime
    /// hands over a link rather than download bytes nobody reads.
    fn file_delivery(&self) -> FileDelivery {
        FileDelivery::Link
    }

    async fn send(&self, chat_id: &str, _part: Part) -> Result<String, SendError> {
        if self.hub.ring(self.account_id, chat_id) {
            Ok(format!("wc-{}", Uuid::now_v7().simple()))
        } else {
            Err(SendError::RetryAfter(OFFLINE_RETRY))
        }
    }

    async fn edit(&self, chat_id: &str, _external_id: &str, _text: &str, _caption: bool) -> Result<(), SendError> {
        self.hub.ring(self.account_id, chat_id);
        Ok(())
    }

    async fn delete(&self, chat_id: &str, _external_id: &str) -> Result<(), SendError> {
        self.hub.ring(self.account_id, chat_id);
        Ok(())
    }
}

/// The web chat channel module: the customer sockets of this process (shared by every web
/// chat account served here) and the routes of the widget.
pub struct Module {
    state: WebchatState,
}

/// What the web chat's routes work with.
#[derive(Clone)]
pub struct WebchatState {
    pub(crate) shared: Shared,
    pub(crate) hub: Arc<Hub>,
}

impl Module {
    pub fn new(shared: Shared) -> Self {
        Module { state: WebchatState { shared, hub: Arc::new(Hub::new()) } }
    }
}

#[async_trait]
impl ChannelModule for Module {
    fn channel(&self) -> Channel {
        Channel::Webchat
    }

    async fn open(&self, ctx: AccountContext) -> Result<Arc<dyn ChannelAccount>, OpenError> {
        Settings::from_json(&ctx.settings).map_err(|e| OpenError::Settings(format!("{e:#}")))?;
        let hub = self.state.hub.clone();
        Ok(Arc::new(WebchatChannel {
            outbound: Arc::new(WebchatOutbound::new(hub.clone(), ctx.account.id)),
            hub,
            account_id: ctx.account.id,
        }))
    }

    /// The customer socket, the widget and its demo page.
    fn routes(&self) -> Option<Router> {
        Some(
            Router::new()
                .route("/api/v1/webchat/ws", get(socket::connect))
                .route("/webchat/widget.js", get(widget_js))
                .route("/webchat/demo", get(demo_page))
                .with_state(self.state.clone()),
        )
    }
}

/// An opened web chat account. Customer sockets are served by any process, leader or not;
/// the leader's outbox worker rings the sockets of its own process.
struct WebchatChannel {
    hub: Arc<Hub>,
    outbound: Arc<WebchatOutbound>,
    account_id: Uuid,
}

#[async_trait]
impl ChannelAccount for WebchatChannel {
    fn outbound(&self) -> Arc<dyn Outbound> {
        self.outbound.clone()
    }

    /// The account stops here (disabled, or the process stopping): its customer sockets close
    /// (they reconnect elsewhere, or later).
    async fn close(&self) {
        info!(sockets = self.hub.open_sockets(), "web chat connector stopped; closing its customer sockets here");
        self.hub.close_account(self.account_id);
    }
}

const WIDGET_JS: &str = include_str!("widget.js");
const DEMO_HTML: &str = include_str!("demo.html");

async fn widget_js() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        WIDGET_JS,
    )
        .into_response()
}

#[derive(Deserialize)]
struct DemoQuery {
    key: Option<Uuid>,
}

/// A page that embeds the widget of `?key=` (the first web chat account when absent).
async fn demo_page(
    axum::extract::State(state): axum::extract::State<WebchatState>,
    axum::extract::Query(query): axum::extract::Query<DemoQuery>,
) -> Response {
    let key = match query.key {
        Some(key) => Some(key),
        None => {
            async {
                let mut conn = state.shared.pool.acquire().await.ok()?;
                let accounts = store::enabled_accounts(&mut conn, &[Channel::Webchat]).await.ok()?;
                accounts.first().map(|a| a.id)
            }
            .await
        }
    };
    let key = key.map(|k| k.to_string()).unwrap_or_default();
    Html(DEMO_HTML.replace("{{KEY}}", &key)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn origins_are_matched_exactly() {
        let s = Settings { allowed_origins: vec!["https://shop.example".into()], ..Settings::default() };
        assert!(s.origin_allowed(Some("https://shop.example")));
        assert!(s.origin_allowed(Some("https://SHOP.example/")));
        assert!(!s.origin_allowed(Some("https://evil.example")));
        assert!(!s.origin_allowed(Some("http://shop.example")));
        assert!(!s.origin_allowed(None));
        assert!(Settings::default().origin_allowed(None), "no list: any origin");
    }

    #[test]
    fn customer_tokens_belong_to_one_account() {
        let secret = "0123456789abcdef0123456789abcdef";
        let a = Uuid::now_v7();
        let token = sign_customer(secret, a, "wc-1").unwrap();
        assert_eq!(verify_customer(secret, a, &token).as_deref(), Some("wc-1"));
        assert_eq!(verify_customer(secret, Uuid::now_v7(), &token), None, "another account's token");
        assert_eq!(verify_customer("another secret, also 32 bytes long", a, &token), None);
        assert_eq!(verify_customer(secret, a, "garbage"), None);
    }

    #[test]
    fn the_widgets_colour_is_the_brandings_primary_when_it_is_one() {
        let primary = |v| Settings::from_json(&json!({"branding": v})).unwrap().primary().map(|p| p.map(str::to_owned));
        assert_eq!(primary(json!({"primary": "#8A1c1c"})), Ok(Some("#8A1c1c".into())));
        assert_eq!(primary(json!({"company_name": "Shop"})), Ok(None));
        assert_eq!(Settings::from_json(&json!({})).unwrap().primary(), Ok(None));
        for bad in [
            json!({"primary": "red"}),
            json!({"primary": "#8a1c1"}),
            json!({"primary": 7}),
            json!({"primary": "#8a1c1g"}),
        ] {
            let err = primary(bad.clone()).unwrap_err();
            assert!(err.starts_with("accounts.settings.branding.primary: "), "{bad}: {err}");
        }
    }
}
