//! The chatserver: the agent WebSocket API (`/api/v1/agent/ws`), routing and history.
//!
//! Several chatserver processes share one PostgreSQL and one ZooKeeper (active-active): an
//! agent may connect to any of them, every event is stored in the agent's stream in PostgreSQL
//! and rings the agent's doorbell, and the node holding the agent's socket reads and pushes it.
//! One node at a time routes (leader election); its writes carry its fencing token.
//!
//! Entry point: [`Chatserver::start`] gives the router to mount and runs the background work.
#![forbid(unsafe_code)]

pub mod commands;
pub mod error;
pub mod live;
pub mod presence;
mod receipts;
pub mod routing;
pub mod session;
pub mod wake;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use coord::Coordinator;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use ops::auth::{AuthError, Verifier};

/// The `[chatserver]` configuration section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's name in the cluster; a random one when empty.
    pub node_id: String,
    /// Ping interval; a socket silent for three intervals is closed.
    pub heartbeat_s: u64,
    /// A socket that cannot take a frame within this many seconds is disconnected.
    pub send_timeout_s: u64,
    /// The queue created at start if no queue exists yet.
    pub default_queue: String,
    /// The base URL of the video channel's links and pages (`video.start`); empty: video is
    /// off and `video.start` answers `video_unavailable`. `switchboard all` sets it to its own
    /// video channel.
    pub video_url: String,
    /// How long the customer link of a room started with `video.start` is valid, in seconds.
    pub video_link_ttl_s: u64,
    /// The quality cap of rooms started with `video.start` when it names none.
    pub video_quality: String,
    /// What a live video call counts in its agent's capacity (`max_interactions`), as a number
    /// of interactions; 0: calls do not count.
    pub video_weight: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: String::new(),
            heartbeat_s: 20,
            send_timeout_s: 10,
            default_queue: "support".into(),
            video_url: String::new(),
            video_link_ttl_s: 3600,
            video_quality: "720p".into(),
            video_weight: 1,
        }
    }
}

impl Config {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_s.max(1))
    }

    pub fn send_timeout(&self) -> Duration {
        Duration::from_secs(self.send_timeout_s.max(1))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot prepare the default queue: {0}")]
    Store(#[from] schema::store::StoreError),
}

/// Cheap handles every request needs.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub coord: Arc<dyn Coordinator>,
    pub verifier: Verifier,
    pub config: Arc<Config>,
    pub presence: Arc<presence::Presence>,
    /// The supervisors' live overview of this node.
    pub live: Arc<live::Live>,
    pub shutdown: CancellationToken,
    pub node: String,
}

/// A started chatserver: mount [`Chatserver::router`]; background work stops with `shutdown`.
pub struct Chatserver {
    state: AppState,
}

impl Chatserver {
    /// Starts routing and returns the API to mount. Agents' tokens are checked by `verifier`.
    pub async fn start(
        config: Config,
        verifier: Verifier,
        pool: PgPool,
        coord: Arc<dyn Coordinator>,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let node = if config.node_id.is_empty() {
            format!("chatserver-{}", uuid::Uuid::new_v4().simple())
        } else {
            config.node_id.clone()
        };
        {
            let mut conn = pool.acquire().await.map_err(schema::store::StoreError::from)?;
            let exists = schema::store::get_queue(&mut conn, &config.default_queue).await.is_ok();
            if !exists {
                schema::store::upsert_queue(
                    &mut conn,
                    &schema::domain::Queue {
                        name: config.default_queue.clone(),
                        routing_mode: schema::domain::RoutingMode::Auto,
                        offer_timeout_ms: 30_000,
                    },
                )
                .await?;
            }
        }
        let state = AppState {
            presence: presence::Presence::new(coord.clone(), node.clone()),
            live: live::Live::new(pool.clone(), coord.clone(), shutdown.clone()),
            pool,
            coord,
            verifier,
            config: Arc::new(config),
            shutdown,
            node,
        };
        tokio::spawn(routing::worker::run(
            state.pool.clone(),
            state.coord.clone(),
            state.node.clone(),
            i64::from(state.config.video_weight),
            state.shutdown.clone(),
        ));
        info!(node = %state.node, "chatserver started");
        Ok(Chatserver { state })
    }

    pub fn router(&self) -> Router {
        Router::new().route("/api/v1/agent/ws", get(agent_ws)).with_state(self.state.clone())
    }

    pub fn node(&self) -> &str {
        &self.state.node
    }
}

#[derive(Deserialize)]
struct WsQuery {
    access_token: Option<String>,
}

fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Authenticates before the upgrade: a bad token gets 401, never an open socket.
async fn agent_ws(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<WsQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let claims =
        match ops::auth::bearer(authorization, query.access_token.as_deref()).and_then(|t| state.verifier.verify(t)) {
            Ok(claims) => claims,
            Err(e) => {
                let code = match e {
                    AuthError::Missing => "unauthorized",
                    AuthError::Expired => "token_expired",
                    AuthError::Invalid(_) => "invalid_token",
                };
                return refuse(StatusCode::UNAUTHORIZED, code, e.to_string());
            }
        };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, "bad_request", format!("not a WebSocket upgrade: {e}")),
    };
    let name = claims.name.clone().unwrap_or_else(|| claims.sub.clone());
    let ensured = async {
        let mut conn = state.pool.acquire().await?;
        schema::store::ensure_agent(&mut conn, &claims.sub, &name, &claims.effective_roles()).await
    };
    if let Err(e) = ensured.await {
        warn!(agent = %ops::input::Escaped(&claims.sub), error = %e, "cannot register the agent");
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the hub cannot serve you right now".into());
    }
    // Small buffers: an idle socket should cost kilobytes (tungstenite reads into a 128 KiB buffer
    // by default); they grow as a frame needs, up to the 1 MiB frame limit.
    upgrade
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .max_message_size(1 << 20)
        .on_upgrade(move |socket| session::run(socket, state, claims))
}
