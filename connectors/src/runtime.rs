//! The per-account runtime: leader election, the inbound loop and the outbox worker while
//! leading, the webhook route, and the supervisor that serves every enabled account.
//!
//! Two processes serving one account both campaign for `connector/<account>`; the leader (the
//! lowest live ZooKeeper sequence number, which is also its fencing token) polls and sends,
//! the other waits. When the leader dies its ephemeral node goes with its session and the
//! backup leads with a larger token; the fence then refuses whatever the old one still tries
//! to write.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use coord::Coordinator;
use ops::config::Secret;
use schema::domain::{Channel, Limits, Rate};
use schema::store;
use serde::Deserialize;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};
use url::Url;
use uuid::Uuid;

use crate::Config;
use crate::files::FileServer;
use crate::ingest::Ingest;
use crate::outbox::{self, OutboxConfig, WorkerError};
use crate::pacing::PacerConfig;
use crate::telegram::receive::Receiver;
use crate::telegram::send::TelegramOutbound;
use crate::telegram::{self, TelegramAccount};

/// The header Telegram puts the webhook secret in.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// How often the supervisor looks for accounts enabled or disabled meanwhile.
const ACCOUNTS_EVERY: Duration = Duration::from_secs(30);

/// Limits an account's settings may tighten or loosen (`accounts.settings.limits`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LimitSettings {
    pub rate: Option<Rate>,
    pub rate_per_chat: Option<Rate>,
    pub max_text_chars: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct RuntimeSettings {
    limits: LimitSettings,
}

/// The channel's limits with the account's overrides.
pub fn account_limits(channel: Channel, settings: &serde_json::Value) -> anyhow::Result<Limits> {
    let parsed: RuntimeSettings =
        serde_json::from_value(settings.clone()).context("accounts.settings.limits is malformed")?;
    let mut limits = channel.capabilities().limits;
    if let Some(rate) = parsed.limits.rate {
        limits.rate = rate;
    }
    if let Some(rate) = parsed.limits.rate_per_chat {
        limits.rate_per_chat = rate;
    }
    if let Some(max) = parsed.limits.max_text_chars {
        limits.max_text_chars = max.max(2);
    }
    Ok(limits)
}

/// One served account, as the webhook route sees it.
struct Entry {
    webhook_secret: Option<String>,
    /// Set while this process leads the account. A std lock: swapped or cloned, never held
    /// across an await.
    receiver: RwLock<Option<Arc<Receiver>>>,
}

/// Connectors of this process: shared handles, the accounts served, the webhook router.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) pool: PgPool,
    pub(crate) coord: Arc<dyn Coordinator>,
    pub(crate) config: Arc<Config>,
    pub(crate) jwt_secret: Option<Secret>,
    /// The file server's root URL: `connectors.fileserver_url`, or set once the process knows
    /// its own listener.
    pub(crate) fileserver: Arc<OnceLock<Url>>,
    pub(crate) node: String,
    accounts: Arc<RwLock<HashMap<Uuid, Arc<Entry>>>>,
    /// Web chat customer sockets of this process and their per-IP limits.
    pub(crate) webchat: Arc<crate::webchat::Hub>,
}

impl Runtime {
    /// `jwt_secret` is the hub's HS256 secret, which signs the connector's service token for
    /// the file server. The file server's URL is `config.fileserver_url`, or, when that is empty,
    /// whatever [`Runtime::set_fileserver`] gives before accounts are served.
    pub fn new(pool: PgPool, coord: Arc<dyn Coordinator>, config: Config, jwt_secret: Option<Secret>) -> Self {
        let node = if config.node_id.is_empty() {
            format!("connector-{}", Uuid::new_v4().simple())
        } else {
            config.node_id.clone()
        };
        let fileserver = Arc::new(OnceLock::new());
        if let Ok(url) = Url::parse(&config.fileserver_url) {
            let _ = fileserver.set(url);
        }
        Runtime {
            pool,
            coord,
            config: Arc::new(config),
            jwt_secret,
            fileserver,
            node,
            accounts: Arc::new(RwLock::new(HashMap::new())),
            webchat: Arc::new(crate::webchat::Hub::new()),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The file server's URL when `connectors.fileserver_url` is empty (e.g. this process's own
    /// listener in `switchboard all`). The first URL set stays.
    pub fn set_fileserver(&self, url: Url) {
        let _ = self.fileserver.set(url);
    }

    /// `POST /api/v1/connectors/{account_id}/telegram` (Telegram's webhook deliveries) and the web
    /// chat routes ([`crate::webchat::router`]).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/v1/connectors/{account_id}/telegram", post(webhook))
            .with_state(self.clone())
            .merge(crate::webchat::router(self.clone()))
    }

    /// Serves `account_id` until `stop`, in a task.
    pub fn spawn_account(&self, account_id: Uuid, stop: CancellationToken) -> JoinHandle<()> {
        let runtime = self.clone();
        let span = info_span!("connector", account = %account_id, node = %self.node);
        tokio::spawn(
            async move {
                let mut failures = 0;
                loop {
                    match runtime.serve_account(account_id, stop.clone()).await {
                        Ok(()) => return,
                        Err(e) => {
                            failures += 1;
                            let wait = crate::pacing::backoff(failures).min(Duration::from_secs(60));
                            error!(error = %format!("{e:#}"), ?wait, "connector stopped; starting again");
                            tokio::select! {
                                _ = stop.cancelled() => return,
                                _ = tokio::time::sleep(wait) => {}
                            }
                        }
                    }
                }
            }
            .instrument(span),
        )
    }

    /// Serves every enabled account of a channel with a connector until `stop`, picking up
    /// accounts enabled later and stopping those disabled.
    pub async fn serve_enabled(&self, stop: CancellationToken) {
        let mut running: HashMap<Uuid, (CancellationToken, JoinHandle<()>)> = HashMap::new();
        loop {
            let listed = async {
                let mut conn = self.pool.acquire().await?;
                store::enabled_accounts(&mut conn, &[Channel::Telegram, Channel::Webchat]).await
            };
            match listed.await {
                Ok(accounts) => {
                    let wanted: Vec<Uuid> = accounts.iter().map(|a| a.id).collect();
                    for id in &wanted {
                        running.entry(*id).or_insert_with(|| {
                            info!(account = %id, "serving account");
                            let token = stop.child_token();
                            (token.clone(), self.spawn_account(*id, token))
                        });
                    }
                    running.retain(|id, (token, _)| {
                        let keep = wanted.contains(id);
                        if !keep {
                            info!(account = %id, "account disabled; its connector stops");
                            token.cancel();
                        }
                        keep
                    });
                }
                Err(e) => warn!(error = %e, "cannot list accounts; trying again later"),
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(ACCOUNTS_EVERY) => {}
            }
        }
        for (_, (_, task)) in running {
            let _ = task.await;
        }
    }

    /// Serves one account until `stop` (campaigning, leading, standing by).
    pub async fn serve_account(&self, account_id: Uuid, stop: CancellationToken) -> anyhow::Result<()> {
        let (account, credentials, settings) = {
            let mut conn = self.pool.acquire().await.context("cannot reach PostgreSQL")?;
            let account = store::get_account(&mut conn, account_id).await?;
            let credentials = store::account_credentials(&mut conn, account_id).await?;
            let settings = store::account_settings(&mut conn, account_id).await?;
            (account, credentials, settings)
        };
        if account.channel == Channel::Webchat && account.enabled {
            return crate::webchat::serve_account(self, account, settings, stop).await;
        }
        if account.channel != Channel::Telegram {
            anyhow::bail!(
                "account {account_id} is a {} account; this build has a connector for telegram only",
                account.channel
            );
        }
        if !account.enabled {
            anyhow::bail!("account {account_id} is disabled");
        }
        let tg = TelegramAccount::from_json(&credentials, &settings)?;
        let limits = account_limits(account.channel, &settings)?;
        let bot = tg.bot();
        let fileserver = self.fileserver.get().cloned().context(
            "no file server URL: set connectors.fileserver_url (or run the connector where the file server listens)",
        )?;
        if self.jwt_secret.is_none() {
            warn!(
                "jwt.hs256_secret is not set: files cannot go through the file server (messages keep a note instead)"
            );
        }
        let files = FileServer::new(fileserver, self.jwt_secret.clone(), account.channel, account_id);
        let ingest = Ingest::new(self.pool.clone(), self.coord.clone(), account_id, self.config.reopen_window());
        let receiver = Arc::new(Receiver::new(bot.clone(), ingest, files.clone(), limits.max_download_bytes));
        let entry =
            Arc::new(Entry { webhook_secret: tg.webhook_secret().map(str::to_owned), receiver: RwLock::new(None) });
        self.accounts.write().unwrap_or_else(|e| e.into_inner()).insert(account_id, entry.clone());
        let outbox_config = OutboxConfig {
            pool: self.pool.clone(),
            coord: self.coord.clone(),
            account_id,
            channel: account.channel,
            limits,
            platform: Arc::new(TelegramOutbound::new(bot.clone())),
            files,
            pacer: PacerConfig::strict(limits.rate, limits.rate_per_chat),
            max_in_flight: self.config.max_in_flight.max(1),
        };
        let label = account_id.to_string();
        let key = store::connector_key(account_id);
        info!(mode = ?tg.settings.mode, rate = ?limits.rate, rate_per_chat = ?limits.rate_per_chat, "connector campaigning");
        let mut campaign = self.coord.campaign(&key, &self.node).await?;
        let result = loop {
            let token = tokio::select! {
                _ = stop.cancelled() => break Ok(()),
                token = campaign.leading() => token?,
            };
            info!(token, "leading the account");
            metrics::gauge!("switchboard_connector_leader", "account" => label.clone()).set(1.0);
            *entry.receiver.write().unwrap_or_else(|e| e.into_inner()) = Some(receiver.clone());
            let lead = stop.child_token();
            let mut worker = tokio::spawn(outbox::run(outbox_config.clone(), token, lead.clone()));
            let inbound = {
                let (tg, bot, receiver, lead) = (tg.clone(), bot.clone(), receiver.clone(), lead.clone());
                tokio::spawn(async move { telegram::lead_inbound(&tg, &bot, &receiver, &lead).await })
            };
            let mut fenced = false;
            let mut worker_done = false;
            tokio::select! {
                _ = campaign.deposed(token) => info!(token, "no longer leading"),
                _ = stop.cancelled() => info!(token, "stopping"),
                ended = &mut worker => {
                    worker_done = true;
                    match ended {
                        Ok(Err(WorkerError::Deposed(why))) => {
                            warn!(token, %why, "the fence says another leader took over");
                            fenced = true;
                        }
                        Ok(Err(e)) => warn!(token, error = %e, "outbox worker stopped"),
                        Ok(Ok(())) => {}
                        Err(e) => error!(token, error = %e, "outbox worker panicked"),
                    }
                }
            }
            *entry.receiver.write().unwrap_or_else(|e| e.into_inner()) = None;
            lead.cancel();
            if !worker_done {
                let _ = worker.await;
            }
            let _ = inbound.await;
            metrics::gauge!("switchboard_connector_leader", "account" => label.clone()).set(0.0);
            if stop.is_cancelled() {
                break Ok(());
            }
            if fenced {
                // a leader whose writes are refused must not keep leading: campaign afresh
                drop(campaign);
                campaign = self.coord.campaign(&key, &self.node).await?;
            } else if campaign.current() == (coord::Leadership::Leader { token }) {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        self.accounts.write().unwrap_or_else(|e| e.into_inner()).remove(&account_id);
        info!("connector stopped");
        result
    }
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    (status, axum::Json(body)).into_response()
}

/// Compares without stopping at the first difference.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// A Telegram webhook delivery: the secret header is checked before anything is read; the
/// update is stored before the 200 (a non-2xx makes Telegram deliver it again).
async fn webhook(
    State(runtime): State<Runtime>,
    Path(account_id): Path<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let entry = runtime.accounts.read().unwrap_or_else(|e| e.into_inner()).get(&account_id).cloned();
    let Some(entry) = entry else {
        return refuse(StatusCode::NOT_FOUND, "not_found", "no connector serves this account here");
    };
    let Some(expected) = entry.webhook_secret.as_deref() else {
        return refuse(StatusCode::NOT_FOUND, "not_found", "this account does not use a webhook");
    };
    let given = headers.get(SECRET_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    if !same_secret(given, expected.as_bytes()) {
        warn!(account = %account_id, "webhook delivery with a missing or wrong secret token refused");
        return refuse(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong X-Telegram-Bot-Api-Secret-Token");
    }
    let receiver = entry.receiver.read().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(receiver) = receiver else {
        let mut response =
            refuse(StatusCode::SERVICE_UNAVAILABLE, "not_leader", "this process does not lead the account right now");
        response.headers_mut().insert("Retry-After", axum::http::HeaderValue::from_static("1"));
        return response;
    };
    let update: teloxide::types::Update = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, "bad_request", &format!("not a Telegram Update: {e}")),
    };
    match receiver.handle(&update, 0).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => {
            warn!(account = %account_id, update = update.id.0, error = %e, "webhook update not stored; Telegram will retry");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "unavailable", "not stored; deliver again")
        }
    }
}
