//! The seam between the runtime and a channel module.
//!
//! A messenger is one folder under `connectors/src/<channel>/` with one type implementing
//! [`ChannelModule`], listed once in [`crate::registry`]. The runtime opens each served
//! account through its module ([`ChannelModule::open`], given an [`AccountContext`]: the
//! account, its credentials and settings, its limits, and the handles it may use), and gets back
//! a [`ChannelAccount`]: what the account serves.
//!
//! - an outbound sender ([`Outbound`]), driven by the runtime's outbox worker while leading;
//! - [`ChannelAccount::lead`], run while this process leads the account: long polling, or
//!   registering the webhook with the platform;
//! - optionally a [`Webhook`]: the runtime's one route, `POST /api/v1/connectors/{account}/{channel}`
//!   (and `GET`, for platforms with a verification handshake), calls [`Webhook::verify`] on the
//!   headers and raw body before anything is parsed (401 when it fails, nothing stored), answers
//!   503 on a process that does not lead the account, and otherwise calls [`Webhook::handle`].
//!
//! Everything around it is the runtime's and the same for every channel: the leader loop, the
//! outbox with pacing and splitting, receipts, dead letters, health.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use coord::Coordinator;
use schema::domain::{Account, Channel, Limits};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use url::Url;
use uuid::Uuid;

use crate::files::FileServer;
use crate::ingest::{Ingest, UpdateError};
use crate::platform::Outbound;

/// What a module gets to open one account.
#[derive(Clone)]
pub struct AccountContext {
    pub account: Account,
    /// `accounts.credentials`: secrets; never logged.
    pub credentials: serde_json::Value,
    /// `accounts.settings`: the module's keys and the runtime's (`limits`).
    pub settings: serde_json::Value,
    /// The channel's limits with the account's overrides.
    pub limits: Limits,
    pub pool: PgPool,
    pub coord: Arc<dyn Coordinator>,
    /// The hub's file server, with this account's service identity.
    pub files: FileServer,
    /// Stores inbound updates of this account (and parks those that can never be stored).
    pub ingest: Ingest,
    /// The hub's URL as platforms reach it (`connectors.public_url`), if configured.
    pub public_url: Option<Url>,
    /// This process's name in elections.
    pub node: String,
    /// Where the module reports that the platform refuses the account itself (a revoked token).
    pub health: AccountHealth,
}

impl AccountContext {
    /// The URL platforms post this account's webhooks to: the account's own `webhook_url`
    /// setting, else `connectors.public_url` + the runtime's webhook route.
    pub fn webhook_url(&self) -> Result<Url, OpenError> {
        if let Some(url) = self.settings.get("webhook_url").and_then(|v| v.as_str()) {
            return Url::parse(url).map_err(|_| OpenError::Settings(format!("webhook_url {url:?} is not a URL")));
        }
        let base = self.public_url.as_ref().ok_or_else(|| {
            OpenError::Settings(format!(
                "{} receives webhooks: set connectors.public_url (the hub's URL as the platform reaches it) \
                 or the account's settings.webhook_url",
                self.account.channel
            ))
        })?;
        Ok(webhook_url(base, self.account.id, self.account.channel))
    }
}

/// The accounts this process cannot serve, with the reason: `/readyz` (advisory), the metric
/// `switchboard_connector_account_problem{account,channel}` and the log. Cheap to clone.
#[derive(Clone, Default)]
pub struct Problems {
    /// A std lock: an insert, a removal or a copy, never held across an await.
    inner: Arc<RwLock<BTreeMap<Uuid, String>>>,
}

impl Problems {
    /// Every account with a problem, and the problem.
    pub fn list(&self) -> Vec<(Uuid, String)> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    /// Records (`Some`) or clears (`None`) the account's problem.
    pub fn set(&self, account: Uuid, channel: Channel, problem: Option<String>) {
        let label = account.to_string();
        let mut problems = self.inner.write().unwrap_or_else(|e| e.into_inner());
        match problem {
            Some(why) => {
                metrics::gauge!("switchboard_connector_account_problem", "account" => label, "channel" => channel.as_str())
                    .set(1.0);
                problems.insert(account, why);
            }
            None => {
                if problems.remove(&account).is_some() {
                    metrics::gauge!("switchboard_connector_account_problem", "account" => label, "channel" => channel.as_str())
                        .set(0.0);
                }
            }
        }
    }

    /// Forgets accounts no longer served.
    pub fn retain(&self, keep: impl Fn(&Uuid) -> bool) {
        self.inner.write().unwrap_or_else(|e| e.into_inner()).retain(|id, _| keep(id));
    }
}

/// One account's health, as its module reports it.
#[derive(Clone)]
pub struct AccountHealth {
    pub(crate) account: Uuid,
    pub(crate) channel: Channel,
    pub(crate) problems: Problems,
}

impl AccountHealth {
    /// A health report that reaches no runtime (for a module's unit tests).
    pub fn detached(account: Uuid, channel: Channel) -> Self {
        AccountHealth { account, channel, problems: Problems::default() }
    }

    /// The platform refuses the account itself (a wrong or revoked token, a blocked bot):
    /// reported until [`AccountHealth::healthy`]. Log the details where it happens.
    pub fn unhealthy(&self, reason: impl Into<String>) {
        self.problems.set(self.account, self.channel, Some(reason.into()));
    }

    /// The platform accepts the account again.
    pub fn healthy(&self) {
        self.problems.set(self.account, self.channel, None);
    }
}

/// `<base>/api/v1/connectors/<account>/<channel>`.
pub fn webhook_url(base: &Url, account: Uuid, channel: Channel) -> Url {
    let mut url = base.clone();
    let path = format!("{}/api/v1/connectors/{account}/{channel}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    url
}

/// Why an account cannot be opened as configured. The message says what to fix.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpenError {
    #[error("accounts.credentials: {0}")]
    Credentials(String),
    #[error("accounts.settings: {0}")]
    Settings(String),
}

/// One messenger: how to open its accounts, and the routes it serves for all of them.
#[async_trait]
pub trait ChannelModule: Send + Sync + 'static {
    fn channel(&self) -> Channel;

    /// Checks the account's credentials and settings and opens it. Called on every process
    /// that serves the account, leader or not; must not talk to the platform (that is
    /// [`ChannelAccount::lead`]'s job, on the leader only).
    async fn open(&self, ctx: AccountContext) -> Result<Arc<dyn ChannelAccount>, OpenError>;

    /// Routes this module serves besides the webhook route (the web chat's customer socket and
    /// widget), merged once into the process's router.
    fn routes(&self) -> Option<Router> {
        None
    }
}

/// What an opened account serves.
#[async_trait]
pub trait ChannelAccount: Send + Sync + 'static {
    /// Performs outbox work; the runtime paces and orders it.
    fn outbound(&self) -> Arc<dyn Outbound>;

    /// Runs while this process leads the account, until `term` is cancelled: long polling, or
    /// registering the webhook (updates then arrive through [`ChannelAccount::webhook`]).
    async fn lead(&self, term: CancellationToken) {
        term.cancelled().await;
    }

    /// The account's webhook handler, when updates arrive by webhook.
    fn webhook(&self) -> Option<Arc<dyn Webhook>> {
        None
    }

    /// Handles a parked update again (an administrator asked for its replay after a fix): the
    /// same as receiving it, but an error is returned rather than parked again.
    async fn replay(&self, payload: &[u8]) -> Result<(), UpdateError> {
        let _ = payload;
        Err(UpdateError::Permanent("this channel's connector cannot replay parked updates".into()))
    }

    /// A short description for logs (`mode = polling`).
    fn describe(&self) -> String {
        String::new()
    }

    /// The account stops being served in this process.
    async fn close(&self) {}
}

/// One webhook request as the platform sent it.
#[derive(Debug)]
pub struct WebhookRequest {
    pub method: Method,
    pub headers: HeaderMap,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The raw body: signatures are computed over these exact bytes.
    pub body: Bytes,
    /// The address the request came from, as this process's listener saw it.
    pub peer: Option<SocketAddr>,
}

impl WebhookRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }
}

/// What the runtime answers the platform after a webhook was handled.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookReply {
    /// `200` with an empty body.
    Ok,
    /// `200` with a JSON body (Viber's welcome message on `conversation_started`).
    Json(serde_json::Value),
    /// `200` with a plain-text body (a handshake's challenge or confirmation string).
    Text(String),
}

/// Why a webhook request was not handled; the runtime maps it to the status the platform
/// understands (and retries on, for 5xx).
#[derive(Debug, Clone, thiserror::Error)]
pub enum WebhookError {
    /// The request is not from the platform (bad or missing signature): 401, nothing stored.
    #[error("{0}")]
    Unauthorized(String),
    /// Signed, but not a request this handler understands: 400 (platforms do not retry it).
    #[error("{0}")]
    BadRequest(String),
    /// Not handled now; the platform should deliver it again: 503.
    #[error("{0}")]
    Unavailable(String),
}

/// A channel's webhook handler.
#[async_trait]
pub trait Webhook: Send + Sync + 'static {
    /// Checks that the request comes from the platform, from the headers and the raw body only
    /// (nothing parsed before). Runs on every process, leader or not.
    fn verify(&self, request: &WebhookRequest) -> Result<(), WebhookError>;

    /// Handles a verified request on the leader: stores what it carries and returns once it is
    /// committed (the platform is acknowledged by the answer).
    async fn handle(&self, request: &WebhookRequest) -> Result<WebhookReply, WebhookError>;
}

/// Compares two secrets without stopping at the first difference.
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}
