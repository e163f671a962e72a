//! The file server: the bytes of every file a message carries, in and out.
//!
//! - `POST /api/v1/files`: streamed upload, raw body or `multipart/form-data`, refused before
//!   anything is stored when it is over the channel's limit ([`schema::domain::Channel::max_file_bytes`])
//!   or the hub's own (`max_upload_bytes`); SHA-256 computed on the way to disk.
//! - `GET`/`HEAD /api/v1/files/{id}`: streamed download with `Range`, `ETag`, the stored type
//!   and a `Content-Disposition` that keeps non-ASCII names.
//! - `POST /api/v1/files/{id}/link`: a short-lived signed URL that needs no token.
//! - the retention job ([`retention`]) on one node at a time.
//!
//! The contract is `docs/fileserver.md`. Entry point: [`Fileserver::start`] gives the router to
//! mount and runs the background work.
#![forbid(unsafe_code)]

pub mod error;
pub mod names;
pub mod range;
pub mod retention;
pub mod signing;
pub mod storage;

mod download;
mod upload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};
use coord::Coordinator;
use ops::auth::{AuthError, Claims, Verifier};
use ops::config::{Problem, Secret};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::signing::LinkSigner;
use crate::storage::{DirStorage, Storage, StorageError};

/// The `[fileserver]` configuration section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory the files are kept in; created at start.
    pub root: PathBuf,
    /// The largest file accepted from anyone, in bytes; a channel's own limit may be lower.
    pub max_upload_bytes: u64,
    /// Key of the signed download links (HMAC-SHA256), at least 32 bytes. Every file server
    /// of a deployment needs the same one. Not set: a random key per process, so a link works
    /// only on the node that made it.
    pub signing_key: Option<Secret>,
    /// Lifetime of a signed link when the request names none, in seconds.
    pub link_ttl_s: u64,
    /// The longest lifetime a signed link may be given, in seconds.
    pub link_max_ttl_s: u64,
    /// Files older than this many days are deleted, unless a message newer than that still
    /// references them. 0 keeps files forever.
    pub retention_days: u32,
    /// How often the retention job runs, in seconds.
    pub retention_interval_s: u64,
    /// This node's name in the cluster; a random one when empty.
    pub node_id: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from(".local/files"),
            max_upload_bytes: 100 * schema::domain::MB,
            signing_key: None,
            link_ttl_s: 300,
            link_max_ttl_s: 3600,
            retention_days: 90,
            retention_interval_s: 3600,
            node_id: String::new(),
        }
    }
}

/// The longest retention accepted, in days.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// Shortest signing key accepted, in bytes.
pub const MIN_SIGNING_KEY: usize = 32;

impl Config {
    /// What types alone cannot check; keys are named `fileserver.<key>`.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.root.as_os_str().is_empty() {
            problems.push(Problem::new("fileserver.root", "is empty: give the directory to keep files in"));
        }
        if self.max_upload_bytes == 0 {
            problems.push(Problem::new("fileserver.max_upload_bytes", "must be at least 1"));
        }
        if let Some(key) = &self.signing_key
            && key.expose().len() < MIN_SIGNING_KEY
        {
            problems.push(Problem::new(
                "fileserver.signing_key",
                format!("is shorter than {MIN_SIGNING_KEY} bytes: use e.g. `openssl rand -hex 32`"),
            ));
        }
        if self.link_max_ttl_s == 0 {
            problems.push(Problem::new("fileserver.link_max_ttl_s", "must be at least 1"));
        }
        if self.link_ttl_s == 0 || self.link_ttl_s > self.link_max_ttl_s {
            problems.push(Problem::new(
                "fileserver.link_ttl_s",
                format!("{} must be between 1 and link_max_ttl_s ({})", self.link_ttl_s, self.link_max_ttl_s),
            ));
        }
        if self.retention_days > MAX_RETENTION_DAYS {
            problems.push(Problem::new(
                "fileserver.retention_days",
                format!(
                    "{} is over {MAX_RETENTION_DAYS} (100 years); use 0 to keep files forever",
                    self.retention_days
                ),
            ));
        }
        if self.retention_interval_s == 0 {
            problems.push(Problem::new("fileserver.retention_interval_s", "must be at least 1"));
        }
        problems
    }

    pub fn retention(&self) -> Option<Duration> {
        (self.retention_days > 0).then(|| Duration::from_secs(u64::from(self.retention_days) * 86_400))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config(Vec<Problem>),
    #[error("cannot open the file store: {0}")]
    Storage(#[from] StorageError),
}

/// The roles that may use the file server: people, bots, and `service` for the hub's own
/// processes (connectors).
pub const ROLES: &[&str] = &["agent", "supervisor", "admin", "bot", "service"];

/// Cheap handles every request needs.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub storage: Arc<dyn Storage>,
    pub verifier: Verifier,
    pub signer: LinkSigner,
    pub config: Arc<Config>,
}

impl AppState {
    /// The caller's verified claims, from `Authorization: Bearer <jwt>`.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Claims, ApiError> {
        let authorization = match headers.get(header::AUTHORIZATION) {
            None => return Err(AuthError::Missing.into()),
            Some(value) => value
                .to_str()
                .map_err(|_| AuthError::Invalid("the Authorization header is not `Bearer <jwt>`".into()))?,
        };
        let token = ops::auth::bearer(Some(authorization), None)?;
        let claims = self.verifier.verify(token)?;
        if !claims.effective_roles().iter().any(|r| ROLES.contains(&r.as_str())) {
            return Err(ApiError::Forbidden(format!("the file server needs one of the roles {}", ROLES.join(", "))));
        }
        Ok(claims)
    }
}

/// A started file server: mount [`Fileserver::router`]; background work stops with `shutdown`.
pub struct Fileserver {
    state: AppState,
    node: String,
}

impl Fileserver {
    /// Opens the store, starts the retention job (one node at a time, through `coord`) and
    /// returns the API to mount. Tokens are checked by `verifier`.
    pub async fn start(
        config: Config,
        verifier: Verifier,
        pool: PgPool,
        coord: Arc<dyn Coordinator>,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(StartError::Config(problems));
        }
        let storage: Arc<dyn Storage> = Arc::new(DirStorage::open(&config.root).await?);
        let signer = match &config.signing_key {
            Some(key) => LinkSigner::new(key.expose().as_bytes()),
            None => {
                tracing::warn!(
                    "fileserver.signing_key is not set: signed links use a random key and work only on this node \
                     until it restarts"
                );
                LinkSigner::random()
            }
        };
        let node = if config.node_id.is_empty() {
            format!("fileserver-{}", uuid::Uuid::new_v4().simple())
        } else {
            config.node_id.clone()
        };
        let state = AppState { pool, storage, verifier, signer, config: Arc::new(config) };
        tokio::spawn(retention::run(state.clone(), coord, node.clone(), shutdown));
        tracing::info!(node = %node, root = %state.config.root.display(), "file server started");
        Ok(Fileserver { state, node })
    }

    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }
}

/// The routes, on any state (tests build one with their own storage).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/files", post(upload::upload))
        .route("/api/v1/files/{id}", get(download::download))
        .route("/api/v1/files/{id}/link", post(download::link))
        // the upload enforces its own limits while streaming
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}
