//! What `switchboard all` serves: the shared state and the one router.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use coord::Coordinator;
use ops::health::Readiness;
use ops::metrics::PrometheusHandle;
use sqlx::PgPool;

use crate::config::{Backend, Config};

/// Cheap handles every component shares.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: PgPool,
    pub coordinator: Arc<dyn Coordinator>,
    pub metrics: PrometheusHandle,
}

/// A component this process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Chatserver,
    Fileserver,
    Loader,
    /// The connectors of every enabled messenger account.
    Connectors,
    /// The connector of one messenger account.
    Connector(uuid::Uuid),
    /// The video channel: SFU, signalling, rooms API, call pages.
    Video,
}

/// What `switchboard all` runs.
pub const EVERYTHING: &[Component] =
    &[Component::Chatserver, Component::Fileserver, Component::Loader, Component::Connectors, Component::Video];

/// The HTTP router of the process, served on `http.bind`: the ops routes and every started
/// component's routes, under the same request metrics. `/metrics` is left out when
/// `http.metrics_bind` moves it to [`metrics_app`].
pub fn app(state: &AppState, components: Router, readiness: Readiness) -> Router {
    let ops_routes = if state.config.http.metrics_bind.is_some() {
        ops::health::probes(readiness, state.metrics.clone())
    } else {
        ops::health::router(readiness, state.metrics.clone())
    };
    Router::new().merge(ops_routes).merge(components).layer(axum::middleware::from_fn(ops::metrics::track_http))
}

/// The internal listener's router (`http.metrics_bind`): `/metrics`, `/healthz`, `/readyz`.
pub fn metrics_app(state: &AppState, readiness: Readiness) -> Router {
    ops::health::router(readiness, state.metrics.clone())
}

/// `/readyz`: PostgreSQL answers `SELECT 1` within a second, the coordinator has a session.
pub fn readiness(state: &AppState) -> Readiness {
    let db = state.db.clone();
    let coordinator = state.coordinator.clone();
    let coord_check = match state.config.coord.backend {
        Backend::Zookeeper => "zookeeper",
        Backend::Local => "coordinator",
    };
    Readiness::new()
        .check_with_timeout("postgres", Duration::from_secs(1), move || {
            let db = db.clone();
            async move { schema::store::ping(&db).await.map_err(|e| e.to_string()) }
        })
        .check(coord_check, move || {
            let ready = coordinator.is_ready();
            async move { if ready { Ok(()) } else { Err("no session".to_owned()) } }
        })
}
