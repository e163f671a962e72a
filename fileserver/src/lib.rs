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
use schema::domain::FileKind;
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
    /// Quotas and retention per kind of file (`[fileserver.kinds.chat]`,
    /// `[fileserver.kinds.recording]`).
    pub kinds: Kinds,
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
            kinds: Kinds::default(),
            node_id: String::new(),
        }
    }
}

/// The settings of each kind of file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Kinds {
    /// What messages carry.
    pub chat: KindConfig,
    /// Video call recordings.
    pub recording: KindConfig,
}

/// One kind's disk quota and retention.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KindConfig {
    /// The most bytes the files of this kind may take together; an upload that would pass it is
    /// refused (507 `quota_exceeded`). 0: no quota.
    pub quota_bytes: u64,
    /// Files of this kind older than this many days are deleted (0: kept forever); not set:
    /// `fileserver.retention_days`.
    pub retention_days: Option<u32>,
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
        for (name, kind) in [("chat", &self.kinds.chat), ("recording", &self.kinds.recording)] {
            if kind.retention_days.is_some_and(|d| d > MAX_RETENTION_DAYS) {
                problems.push(Problem::new(
                    format!("fileserver.kinds.{name}.retention_days"),
                    format!("is over {MAX_RETENTION_DAYS} (100 years); use 0 to keep files forever"),
                ));
            }
            if kind.quota_bytes > i64::MAX as u64 {
                problems.push(Problem::new(format!("fileserver.kinds.{name}.quota_bytes"), "is too large"));
            }
        }
        if self.retention_interval_s == 0 {
            problems.push(Problem::new("fileserver.retention_interval_s", "must be at least 1"));
        }
        problems
    }

    pub fn retention(&self) -> Option<Duration> {
        self.retention_of(FileKind::Chat)
    }

    fn kind(&self, kind: FileKind) -> &KindConfig {
        match kind {
            FileKind::Chat => &self.kinds.chat,
            FileKind::Recording => &self.kinds.recording,
        }
    }

    /// How long files of `kind` are kept; `None`: forever.
    pub fn retention_days_of(&self, kind: FileKind) -> Option<u32> {
        let days = self.kind(kind).retention_days.unwrap_or(self.retention_days);
        (days > 0).then_some(days)
    }

    pub fn retention_of(&self, kind: FileKind) -> Option<Duration> {
        self.retention_days_of(kind).map(|d| Duration::from_secs(u64::from(d) * 86_400))
    }

    /// The disk quota of `kind` in bytes; `None`: none.
    pub fn quota_of(&self, kind: FileKind) -> Option<u64> {
        let q = self.kind(kind).quota_bytes;
        (q > 0).then_some(q)
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

/// The roles that read any file. The others (agents, bots) read a file only when it belongs to
/// an interaction they may see, or they uploaded it (`schema::store::agent_may_read_file`).
/// Supervisors are here because the agent API shows them every interaction's history.
pub const READ_ANY: &[&str] = &["supervisor", "admin", "service"];

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

    /// Whether the caller may read file `id` (and mint a link to it): [`READ_ANY`] roles always,
    /// others when the file follows an interaction they may see.
    pub(crate) async fn may_read(&self, claims: &Claims, id: uuid::Uuid) -> Result<(), ApiError> {
        if claims.effective_roles().iter().any(|r| READ_ANY.contains(&r.as_str())) {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await.map_err(|e| ApiError::internal("database unavailable", e))?;
        if schema::store::agent_may_read_file(&mut conn, id, &claims.sub).await? {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "file {id} belongs to no interaction you may see (assigned to you now or before, or joined)"
            )))
        }
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
        publish_kind_settings(&state).await;
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

/// Writes this file server's quota and retention of each kind where the admin API reads them.
async fn publish_kind_settings(state: &AppState) {
    let written = async {
        let mut conn = state.pool.acquire().await?;
        for kind in FileKind::ALL {
            let quota = state.config.quota_of(*kind).map(|q| q as i64);
            let days = state.config.retention_days_of(*kind).map(|d| d as i32);
            schema::store::set_file_kind_settings(&mut conn, *kind, quota, days).await?;
        }
        Ok::<_, schema::store::StoreError>(())
    };
    if let Err(e) = written.await {
        tracing::warn!(error = %e, "cannot record the file kinds' quotas and retention for the admin API");
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
