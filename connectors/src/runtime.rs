//! The per-account runtime: opens each served account through its channel module, runs the one
//! leader loop per account (the module's inbound side and the outbox worker while leading), the
//! generic webhook route, and the supervisor that serves every enabled account.
//!
//! Two processes serving one account both campaign for `connector/<account>`; the leader (the
//! lowest live ZooKeeper sequence number, which is also its fencing token) receives and sends,
//! the other stands by. When the leader dies its ephemeral node goes with its session and the
//! backup leads with a larger token; the fence then refuses whatever the old one still tries
//! to write. This file names no platform: everything channel-specific is behind
//! [`crate::channel`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use coord::{Coordinator, TermEnd};
use ops::config::Secret;
use schema::domain::{Channel, Limits};
use schema::store;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, info_span, warn};
use url::Url;
use uuid::Uuid;

use crate::Config;
use crate::bots::{self, BotConfig, BotError};
use crate::channel::{
    AccountContext, AccountHealth, ChannelAccount, ChannelModule, Problems, Webhook, WebhookError, WebhookReply,
    WebhookRequest,
};
use crate::files::FileServer;
use crate::ingest::{Ingest, UpdateError};
use crate::outbox::{self, OutboxConfig, WorkerError};
use crate::pacing::PacerConfig;

/// How often the supervisor looks for accounts enabled or disabled meanwhile.
const ACCOUNTS_EVERY: Duration = Duration::from_secs(30);
/// The longest pause before an account that failed to open is tried again.
const REOPEN_AT_MOST: Duration = Duration::from_secs(60);

/// The handles every channel module and account share in this process. Cheap to clone.
#[derive(Clone)]
pub struct Shared {
    pub(crate) pool: PgPool,
    pub(crate) coord: Arc<dyn Coordinator>,
    pub(crate) config: Arc<Config>,
    /// The hub's HS256 secret: signs the connectors' service tokens for the file server (and the
    /// web chat's customer tokens).
    pub(crate) jwt_secret: Option<Secret>,
    /// The file server's root URL: `connectors.fileserver_url`, or set once the process knows
    /// its own listener.
    pub(crate) fileserver: Arc<OnceLock<Url>>,
    pub(crate) node: String,
    /// One ingest per account (a std lock: a lookup or an insert, never held across an await).
    ingests: Arc<std::sync::Mutex<HashMap<Uuid, Ingest>>>,
}

impl Shared {
    /// The file server client of one account.
    pub(crate) fn files(&self, channel: Channel, account_id: Uuid) -> anyhow::Result<FileServer> {
        let base = self.fileserver.get().cloned().context(
            "no file server URL: set connectors.fileserver_url (or run the connector where the file server listens)",
        )?;
        Ok(FileServer::new(base, self.jwt_secret.clone(), self.public_url(), channel, account_id))
    }

    /// The account's ingest, shared by everything of this process that stores its updates (one
    /// batching task per account).
    pub(crate) fn ingest(&self, account_id: Uuid) -> Ingest {
        let mut ingests = self.ingests.lock().unwrap_or_else(|e| e.into_inner());
        ingests
            .entry(account_id)
            .or_insert_with(|| {
                Ingest::new(self.pool.clone(), self.coord.clone(), account_id, self.config.reopen_window())
            })
            .clone()
    }

    /// `connectors.public_url`, if set.
    pub(crate) fn public_url(&self) -> Option<Url> {
        Url::parse(&self.config.public_url).ok()
    }
}

/// An account served here, as the webhook route sees it.
struct Entry {
    channel: Channel,
    webhook: Option<Arc<dyn Webhook>>,
    /// Whether this process leads the account right now.
    leading: AtomicBool,
    /// Webhook deliveries being stored. Each runs in a task of its own, so a platform that
    /// hangs up before the answer (it stopped waiting) never cancels a store half way; the
    /// account closes only after they end.
    deliveries: TaskTracker,
}

/// Connectors of this process: the channel modules, the accounts served, their health.
#[derive(Clone)]
pub struct Runtime {
    shared: Shared,
    modules: Arc<Vec<Arc<dyn ChannelModule>>>,
    accounts: Arc<RwLock<HashMap<Uuid, Arc<Entry>>>>,
    /// Accounts that cannot be served, with the reason.
    problems: Problems,
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
        let shared = Shared {
            pool,
            coord,
            config: Arc::new(config),
            jwt_secret,
            fileserver,
            node,
            ingests: Arc::new(std::sync::Mutex::new(HashMap::new())),
        };
        let modules = Arc::new(crate::registry::modules(&shared));
        Runtime { shared, modules, accounts: Arc::new(RwLock::new(HashMap::new())), problems: Problems::default() }
    }

    pub fn node(&self) -> &str {
        &self.shared.node
    }

    /// The file server's URL when `connectors.fileserver_url` is empty (e.g. this process's own
    /// listener in `switchboard all`). The first URL set stays.
    pub fn set_fileserver(&self, url: Url) {
        let _ = self.shared.fileserver.set(url);
    }

    /// The channels this build has a module for.
    pub fn channels(&self) -> Vec<Channel> {
        self.modules.iter().map(|m| m.channel()).collect()
    }

    fn module(&self, channel: Channel) -> Option<Arc<dyn ChannelModule>> {
        self.modules.iter().find(|m| m.channel() == channel).cloned()
    }

    /// Accounts this process was asked to serve and cannot, with the reason (for `/readyz`).
    pub fn problems(&self) -> Vec<(Uuid, String)> {
        self.problems.list()
    }

    fn report(&self, account: Uuid, channel: Channel, problem: Option<String>) {
        self.problems.set(account, channel, problem);
    }

    /// The one webhook route, `/api/v1/connectors/{account}/{channel}` (POST, and GET for
    /// platforms with a verification handshake), and the routes of every channel module.
    pub fn router(&self) -> Router {
        let mut router =
            Router::new().route("/api/v1/connectors/{account_id}/{channel}", any(webhook)).with_state(self.clone());
        for module in self.modules.iter() {
            if let Some(routes) = module.routes() {
                router = router.merge(routes);
            }
        }
        router
    }

    /// Serves `account_id` until `stop`, in a task; an account that cannot be opened is reported
    /// and tried again with a growing pause (its settings may be fixed meanwhile).
    pub fn spawn_account(&self, account_id: Uuid, stop: CancellationToken) -> JoinHandle<()> {
        let runtime = self.clone();
        let span = info_span!("connector", account = %account_id, node = %self.shared.node);
        tokio::spawn(
            async move {
                let mut failures = 0;
                loop {
                    match runtime.serve_account(account_id, stop.clone()).await {
                        Ok(()) => return,
                        Err(e) => {
                            failures += 1;
                            let wait = crate::pacing::backoff(failures).min(REOPEN_AT_MOST);
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

    /// Serves every enabled account until `stop`, picking up accounts enabled later and stopping
    /// those disabled. Accounts of a channel this build has no module for are reported, not
    /// skipped silently.
    pub async fn serve_enabled(&self, stop: CancellationToken) {
        let mut running: HashMap<Uuid, (CancellationToken, JoinHandle<()>)> = HashMap::new();
        loop {
            let listed = async {
                let mut conn = self.shared.pool.acquire().await?;
                store::enabled_accounts(&mut conn, Channel::ALL).await
            };
            match listed.await {
                Ok(accounts) => {
                    let wanted: Vec<Uuid> =
                        accounts.iter().filter(|a| a.channel != Channel::Video).map(|a| a.id).collect();
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
                    self.problems.retain(|id| wanted.contains(id));
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

    /// Serves one account until `stop`: opens it through its module, then campaigns, leads and
    /// stands by.
    pub async fn serve_account(&self, account_id: Uuid, stop: CancellationToken) -> anyhow::Result<()> {
        let (account, credentials, settings) = {
            let mut conn = self.shared.pool.acquire().await.context("cannot reach PostgreSQL")?;
            let account = store::get_account(&mut conn, account_id).await?;
            let credentials = store::account_credentials(&mut conn, account_id).await?;
            let settings = store::account_settings(&mut conn, account_id).await?;
            (account, credentials, settings)
        };
        let channel = account.channel;
        if !account.enabled {
            anyhow::bail!("account {account_id} is disabled");
        }
        let Some(module) = self.module(channel) else {
            let why = format!(
                "a {channel} account, and this build has no {channel} connector (it has: {})",
                self.channels().iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            );
            warn!(%channel, "{why}; the account is not served");
            self.report(account_id, channel, Some(why));
            stop.cancelled().await;
            return Ok(());
        };
        let opened = match self.open(module.as_ref(), account, credentials, settings).await {
            Ok(opened) => opened,
            Err(e) => {
                self.report(account_id, channel, Some(format!("{e:#}")));
                return Err(e);
            }
        };
        self.report(account_id, channel, None);
        let (opened, limits, files) = opened;
        let entry = Arc::new(Entry {
            channel,
            webhook: opened.webhook(),
            leading: AtomicBool::new(false),
            deliveries: TaskTracker::new(),
        });
        self.accounts.write().unwrap_or_else(|e| e.into_inner()).insert(account_id, entry.clone());
        let outbox_config = OutboxConfig {
            pool: self.shared.pool.clone(),
            coord: self.shared.coord.clone(),
            account_id,
            channel,
            limits,
            platform: opened.outbound(),
            files,
            pacer: PacerConfig::strict(limits.rate, limits.rate_per_chat),
            max_in_flight: self.shared.config.max_in_flight.max(1),
        };
        let targets =
            ops::target::Targets::new(self.shared.config.bots_allowed_networks().map_err(|e| anyhow::anyhow!(e))?)
                .for_setting("connectors.bots_allow_internal");
        let bot_config = BotConfig {
            pool: self.shared.pool.clone(),
            coord: self.shared.coord.clone(),
            account_id,
            channel,
            limits: schema::flow::Limits::default(),
            http: BotConfig::client(&targets),
            targets,
        };
        info!(%channel, setup = %opened.describe(), rate = ?limits.rate, rate_per_chat = ?limits.rate_per_chat, "connector campaigning");
        let label = account_id.to_string();
        let key = store::connector_key(account_id);
        coord::lead(self.shared.coord.as_ref(), &key, &self.shared.node, &stop, |token, term| {
            let (opened, entry, outbox_config, bot_config, label) =
                (opened.clone(), entry.clone(), outbox_config.clone(), bot_config.clone(), label.clone());
            async move {
                metrics::gauge!("switchboard_connector_leader", "account" => label.clone()).set(1.0);
                entry.leading.store(true, Ordering::SeqCst);
                let ended = lead_term(opened, outbox_config, bot_config, token, term).await;
                entry.leading.store(false, Ordering::SeqCst);
                metrics::gauge!("switchboard_connector_leader", "account" => label).set(0.0);
                ended
            }
        })
        .await;
        self.accounts.write().unwrap_or_else(|e| e.into_inner()).remove(&account_id);
        entry.deliveries.close();
        entry.deliveries.wait().await;
        opened.close().await;
        info!("connector stopped");
        Ok(())
    }

    async fn open(
        &self,
        module: &dyn ChannelModule,
        account: schema::domain::Account,
        credentials: serde_json::Value,
        settings: serde_json::Value,
    ) -> anyhow::Result<(Arc<dyn ChannelAccount>, Limits, FileServer)> {
        let limits = Limits::for_account(account.channel, &settings)?;
        let files = self.shared.files(account.channel, account.id)?;
        if self.shared.jwt_secret.is_none() {
            warn!(
                "jwt.hs256_secret is not set: files cannot go through the file server (messages keep a note instead)"
            );
        }
        let (account_id, channel) = (account.id, account.channel);
        let ctx = AccountContext {
            ingest: self.shared.ingest(account.id),
            account,
            credentials,
            settings,
            limits,
            pool: self.shared.pool.clone(),
            coord: self.shared.coord.clone(),
            files: files.clone(),
            public_url: self.shared.public_url(),
            node: self.shared.node.clone(),
            health: AccountHealth { account: account_id, channel, problems: self.problems.clone() },
        };
        let opened = module.open(ctx).await?;
        Ok((opened, limits, files))
    }
}

/// One term of an account's leadership: the module's inbound side, the outbox worker and the
/// bot runner, until the term ends or the worker or the runner stops (the fence refused it:
/// another leader took over).
async fn lead_term(
    opened: Arc<dyn ChannelAccount>,
    outbox_config: OutboxConfig,
    bot_config: BotConfig,
    token: i64,
    term: CancellationToken,
) -> TermEnd {
    let work = term.child_token();
    let (pool, account) = (outbox_config.pool.clone(), outbox_config.account_id);
    let mut worker = tokio::spawn(outbox::run(outbox_config, token, work.clone()));
    let mut bots = tokio::spawn(bots::run(bot_config, token, work.clone()));
    let inbound = {
        let (opened, work) = (opened.clone(), work.clone());
        tokio::spawn(async move { opened.lead(work).await })
    };
    let replays = tokio::spawn(replay_dead_letters(opened.clone(), pool, account, work.clone()));
    let mut bots_ended = None;
    let ended = tokio::select! {
        _ = term.cancelled() => None,
        ended = &mut worker => Some(ended),
        ended = &mut bots => {
            bots_ended = Some(ended);
            None
        }
    };
    work.cancel();
    let ended = match ended {
        Some(ended) => ended,
        None => worker.await,
    };
    let bots_ended = match bots_ended {
        Some(ended) => ended,
        None => bots.await,
    };
    if let Err(e) = inbound.await {
        error!(token, error = %e, "the inbound side panicked");
    }
    if let Err(e) = replays.await {
        error!(token, error = %e, "the dead-letter replayer panicked");
    }
    match bots_ended {
        Ok(Ok(())) => {}
        Ok(Err(BotError::Deposed(why))) => return TermEnd::Fenced(why),
        Ok(Err(e)) => return TermEnd::Failed(format!("bot runner stopped: {e}")),
        Err(e) => return TermEnd::Failed(format!("bot runner panicked: {e}")),
    }
    match ended {
        Ok(Ok(())) => TermEnd::Cancelled,
        Ok(Err(WorkerError::Deposed(why))) => TermEnd::Fenced(why),
        Ok(Err(e)) => TermEnd::Failed(format!("outbox worker stopped: {e}")),
        Err(e) => TermEnd::Failed(format!("outbox worker panicked: {e}")),
    }
}

/// How often a leader looks for dead letters an administrator asked to replay.
const REPLAYS_EVERY: Duration = Duration::from_secs(5);

/// While leading: replays the dead letters an administrator asked for (`state = 'replay'`),
/// oldest first, through the channel module. Stored: `replayed`; refused for good: `parked`
/// again with the new error; a transient failure is tried again on the next round.
async fn replay_dead_letters(opened: Arc<dyn ChannelAccount>, pool: PgPool, account: Uuid, work: CancellationToken) {
    loop {
        let due = async {
            let mut conn = pool.acquire().await?;
            store::replays_due(&mut conn, account, 20).await
        }
        .await;
        match due {
            Ok(letters) => {
                for letter in letters {
                    let outcome = opened.replay(&letter.payload).await;
                    let error = match &outcome {
                        Ok(()) => None,
                        Err(UpdateError::Permanent(why)) => Some(why.clone()),
                        Err(UpdateError::Transient(why)) => {
                            warn!(dead_letter = letter.id, error = %why, "replay failed for now; trying again");
                            continue;
                        }
                    };
                    let recorded = async {
                        let mut conn = pool.acquire().await?;
                        store::finish_replay(&mut conn, letter.id, error.as_deref()).await
                    }
                    .await;
                    match (recorded, error) {
                        (Err(e), _) => warn!(dead_letter = letter.id, error = %e, "cannot record the replay's outcome"),
                        (Ok(()), None) => info!(dead_letter = letter.id, "dead letter replayed and stored"),
                        (Ok(()), Some(why)) => {
                            warn!(dead_letter = letter.id, error = %why.escape_debug(), "replayed dead letter refused again")
                        }
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot read the dead letters to replay"),
        }
        tokio::select! {
            _ = work.cancelled() => return,
            _ = tokio::time::sleep(REPLAYS_EVERY) => {}
        }
    }
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    (status, axum::Json(body)).into_response()
}

/// A platform's webhook delivery: verified from the headers and raw body before anything is
/// parsed (401, nothing stored), 503 on a process that does not lead the account (the platform
/// delivers it again), else handled by the account's module and answered after the commit.
async fn webhook(
    State(runtime): State<Runtime>,
    Path((account_id, channel)): Path<(String, String)>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let not_here = || refuse(StatusCode::NOT_FOUND, "not_found", "no connector serves this account's webhooks here");
    let Ok(account_id) = account_id.parse::<Uuid>() else { return not_here() };
    let entry = runtime.accounts.read().unwrap_or_else(|e| e.into_inner()).get(&account_id).cloned();
    let Some(entry) = entry else { return not_here() };
    if channel != entry.channel.as_str() {
        return not_here();
    }
    let Some(hook) = entry.webhook.clone() else {
        return refuse(StatusCode::NOT_FOUND, "not_found", "this account does not receive webhooks");
    };
    let request = WebhookRequest { method, headers, query, body, peer: peer.map(|Extension(ConnectInfo(addr))| addr) };
    if let Err(e) = hook.verify(&request) {
        warn!(account = %account_id, %channel, error = %e, "webhook delivery refused before parsing");
        metrics::counter!("switchboard_connector_webhook_refused_total", "channel" => entry.channel.as_str())
            .increment(1);
        return webhook_error(e);
    }
    if !entry.leading.load(Ordering::SeqCst) {
        return webhook_error(WebhookError::Unavailable("this process does not lead the account right now".into()));
    }
    // stored to the end even if the platform hangs up first (its next try is then absorbed)
    let handled = entry.deliveries.spawn(async move { hook.handle(&request).await }).await;
    let handled = handled.unwrap_or_else(|e| {
        error!(account = %account_id, %channel, error = %e, "webhook handler panicked");
        Err(WebhookError::Unavailable("the delivery could not be handled".into()))
    });
    match handled {
        Ok(WebhookReply::Ok) => StatusCode::OK.into_response(),
        Ok(WebhookReply::Json(body)) => (StatusCode::OK, axum::Json(body)).into_response(),
        Ok(WebhookReply::Text(body)) => (StatusCode::OK, body).into_response(),
        Err(e) => {
            if matches!(e, WebhookError::Unavailable(_)) {
                warn!(account = %account_id, %channel, error = %e, "webhook delivery not stored; the platform will retry");
            }
            webhook_error(e)
        }
    }
}

fn webhook_error(error: WebhookError) -> Response {
    match error {
        WebhookError::Unauthorized(why) => refuse(StatusCode::UNAUTHORIZED, "unauthorized", &why),
        WebhookError::BadRequest(why) => refuse(StatusCode::BAD_REQUEST, "bad_request", &why),
        WebhookError::Unavailable(why) => {
            let mut response = refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &why);
            response.headers_mut().insert("Retry-After", HeaderValue::from_static("1"));
            response
        }
    }
}
