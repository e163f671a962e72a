//! The interaction loader: the REST API for integrators.
//!
//! - interactions by period (the customer wrote in it), one interaction, its messages and events,
//!   customers by phone or platform id ([`api::interactions`], [`api::customers`]);
//! - exports of the period query as CSV and Excel, streamed ([`api::exports`]);
//! - administration: channel accounts, agents, queues, API keys, the audit log ([`api::admin`]);
//! - webhooks: subscriptions, deliveries and their attempts ([`api::webhooks`]), delivered by
//!   [`webhooks::worker`] from the outbox in PostgreSQL;
//! - the OpenAPI 3.1 document of all of it, generated from this code ([`openapi`]), at
//!   `/api/v1/openapi.json`.
//!
//! Entry point: [`InteractionLoader::start`] gives the router to mount and runs the delivery
//! worker until the shutdown token is cancelled. Any number of loaders may run against one
//! database: reads are plain queries, the delivery worker claims with `SKIP LOCKED`.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod cursor;
pub mod error;
pub mod model;
pub mod openapi;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use ops::auth::Verifier;
use ops::config::{Problem, Secret};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;

/// The `[loader]` configuration section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// An API key (`sk_` and at least 32 more characters) with every scope, for creating the
    /// first keys; best given as `{ file = "/path" }`. Unset: none.
    pub bootstrap_key: Option<Secret>,
    /// The largest page a client may ask for (`limit`).
    pub max_page_size: u32,
    /// Rows fetched per query while exporting.
    pub export_batch: u32,
    pub webhooks: WebhookConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config { bootstrap_key: None, max_page_size: 500, export_batch: 1000, webhooks: WebhookConfig::default() }
    }
}

/// The `[loader.webhooks]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Run the delivery worker in this process.
    pub deliver: bool,
    /// How often the worker looks for due deliveries.
    pub poll_interval_ms: u64,
    /// Deliveries claimed at once.
    pub batch: u32,
    /// Requests in flight at once.
    pub concurrency: u32,
    /// A receiver that has not answered within this is retried.
    pub timeout_ms: u64,
    /// Delay after the first failed attempt; it doubles after each further one...
    pub backoff_initial_ms: u64,
    /// ...up to this.
    pub backoff_max_ms: u64,
    /// How long a delivery is retried before it is marked failed (at least 24 hours is
    /// what integrators are promised).
    pub retry_for_s: u64,
    /// Internal networks (CIDR, e.g. `"10.20.0.0/16"`, `"127.0.0.1/32"`) that receivers may
    /// be in. Empty: loopback, private, link-local, unique-local, CGNAT, metadata and other
    /// internal addresses are refused at subscription and at delivery (`webhooks::target`).
    pub allow_internal: Vec<String>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            deliver: true,
            poll_interval_ms: 1000,
            batch: 50,
            concurrency: 8,
            timeout_ms: 10_000,
            backoff_initial_ms: 10_000,
            backoff_max_ms: 3_600_000,
            retry_for_s: 86_400,
            allow_internal: Vec::new(),
        }
    }
}

impl WebhookConfig {
    /// The networks of `allow_internal`; the ones that do not parse are reported by
    /// [`Config::problems`].
    fn allowed_networks(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.allow_internal
            .iter()
            .map(|net| {
                net.parse::<ipnet::IpNet>()
                    .or_else(|_| net.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("{net:?} is not a network in CIDR notation (`10.20.0.0/16`) or an address"))
            })
            .collect()
    }

    /// The target policy of this configuration.
    pub fn targets(&self) -> Result<webhooks::target::Targets, String> {
        Ok(webhooks::target::Targets::new(self.allowed_networks()?).for_setting("loader.webhooks.allow_internal"))
    }

    pub fn worker(&self) -> webhooks::worker::WorkerConfig {
        webhooks::worker::WorkerConfig {
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(10)),
            batch: i64::from(self.batch.max(1)),
            concurrency: self.concurrency.max(1) as usize,
            timeout: Duration::from_millis(self.timeout_ms.max(100)),
            backoff: webhooks::Backoff {
                initial: Duration::from_millis(self.backoff_initial_ms.max(1)),
                max: Duration::from_millis(self.backoff_max_ms.max(self.backoff_initial_ms).max(1)),
                retry_for: Duration::from_secs(self.retry_for_s),
            },
        }
    }
}

impl Config {
    /// What types alone cannot check (keys under `loader.`).
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(key) = &self.bootstrap_key
            && (!key.expose().starts_with(auth::KEY_PREFIX) || key.expose().len() < auth::KEY_PREFIX.len() + 32)
        {
            problems.push(Problem::new(
                "loader.bootstrap_key",
                "must be `sk_` followed by at least 32 characters (e.g. `sk_$(openssl rand -hex 24)`)",
            ));
        }
        if self.max_page_size == 0 {
            problems.push(Problem::new("loader.max_page_size", "must be at least 1"));
        }
        if self.export_batch == 0 {
            problems.push(Problem::new("loader.export_batch", "must be at least 1"));
        }
        if let Err(e) = self.webhooks.allowed_networks() {
            problems.push(Problem::new("loader.webhooks.allow_internal", e));
        }
        if self.webhooks.retry_for_s < 60 {
            problems.push(Problem::new("loader.webhooks.retry_for_s", "must be at least 60"));
        }
        problems
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid loader configuration: {0}")]
    Config(String),
}

/// Cheap handles every request needs.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub config: Arc<Config>,
    pub auth: Authenticator,
    /// Where webhooks may be sent.
    pub targets: webhooks::target::Targets,
}

/// A started loader: mount [`InteractionLoader::router`]; the delivery worker stops with the
/// shutdown token.
pub struct InteractionLoader {
    state: AppState,
}

impl InteractionLoader {
    /// Starts the loader. `jwt` verifies sign-on tokens (the process's shared `[jwt]`
    /// verifier); `None` accepts API keys only.
    pub async fn start(
        config: Config,
        jwt: Option<Verifier>,
        pool: PgPool,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let targets = config.webhooks.targets().map_err(StartError::Config)?;
        Self::start_with_targets(config, jwt, pool, shutdown, targets).await
    }

    /// [`InteractionLoader::start`] with the webhook target policy given (tests give one whose
    /// names resolve where they need).
    pub async fn start_with_targets(
        config: Config,
        jwt: Option<Verifier>,
        pool: PgPool,
        shutdown: CancellationToken,
        targets: webhooks::target::Targets,
    ) -> Result<Self, StartError> {
        if let Some(problem) = config.problems().into_iter().next() {
            return Err(StartError::Config(problem.to_string()));
        }
        if jwt.is_none() && config.bootstrap_key.is_none() {
            tracing::info!("loader: no sign-on JWTs and no bootstrap key configured: only API keys are accepted");
        }
        let auth = Authenticator {
            jwt,
            bootstrap_hash: config.bootstrap_key.as_ref().map(|k| Arc::new(auth::hash_key(k.expose()))),
        };
        if config.webhooks.deliver {
            tokio::spawn(webhooks::worker::run(pool.clone(), config.webhooks.worker(), targets.clone(), shutdown));
        }
        Ok(InteractionLoader { state: AppState { pool, config: Arc::new(config), auth, targets } })
    }

    /// Every route under `/api/v1/` (see the OpenAPI document), and the document itself.
    pub fn router(&self) -> Router {
        api::router().with_state(self.state.clone())
    }
}
