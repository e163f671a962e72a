//! `GET /healthz`, `GET /readyz` and `GET /metrics`, the routes every HTTP component serves.
//!
//! - `/healthz`: `200 ok` while the process runs (liveness).
//! - `/readyz`: runs every registered [`Readiness`] check concurrently, each under a timeout;
//!   `200` when all pass, else `503`. The body always names each check:
//!   `{"ready":false,"checks":{"postgres":"ok","zookeeper":"no session"}}`. An *advisory* check
//!   ([`Readiness::advisory`]) is reported the same way but does not make the process unready:
//!   a problem a load balancer cannot help with (an account configured wrongly) must not take
//!   the whole node out of service.
//! - `/metrics`: the Prometheus text format (see [`crate::metrics`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

/// How long a check may take before it counts as failed, unless registered with its own.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

#[derive(Clone)]
struct Check {
    name: String,
    timeout: Duration,
    run: CheckFn,
    /// Reported, but not part of readiness.
    advisory: bool,
}

/// The readiness checks of a process. Cheap to clone.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<Check>,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub ready: bool,
    /// Check name → `"ok"` or why it failed.
    pub checks: BTreeMap<String, String>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check: an async closure returning `Err(reason)` when not ready. It fails after
    /// [`DEFAULT_CHECK_TIMEOUT`].
    pub fn check<F, Fut>(self, name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.check_with_timeout(name, DEFAULT_CHECK_TIMEOUT, check)
    }

    /// Adds a check that fails after `timeout`.
    pub fn check_with_timeout<F, Fut>(mut self, name: impl Into<String>, timeout: Duration, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push(Check {
            name: name.into(),
            timeout,
            run: Arc::new(move || Box::pin(check())),
            advisory: false,
        });
        self
    }

    /// Adds a check that is reported in the body but does not make the process unready.
    pub fn advisory<F, Fut>(mut self, name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push(Check {
            name: name.into(),
            timeout: DEFAULT_CHECK_TIMEOUT,
            run: Arc::new(move || Box::pin(check())),
            advisory: true,
        });
        self
    }

    /// Runs every check concurrently.
    pub async fn report(&self) -> Report {
        let results = futures::future::join_all(self.checks.iter().map(|c| async move {
            let outcome = match tokio::time::timeout(c.timeout, (c.run)()).await {
                Ok(Ok(())) => "ok".to_owned(),
                Ok(Err(reason)) => reason,
                Err(_) => format!("timed out after {:?}", c.timeout),
            };
            (c.name.clone(), outcome, c.advisory)
        }))
        .await;
        let ready = results.iter().all(|(_, outcome, advisory)| *advisory || outcome == "ok");
        for (name, outcome, _) in results.iter().filter(|(_, o, _)| o != "ok") {
            tracing::debug!(check = %name, reason = %outcome, "not ready");
        }
        Report { ready, checks: results.into_iter().map(|(name, outcome, _)| (name, outcome)).collect() }
    }
}

#[derive(Clone)]
struct HealthState {
    readiness: Readiness,
    metrics: PrometheusHandle,
}

/// The three routes, ready to be merged into a component's router.
pub fn router(readiness: Readiness, metrics: PrometheusHandle) -> Router {
    probes(readiness.clone(), metrics.clone()).merge(metrics_only(readiness, metrics))
}

/// `/healthz` and `/readyz` only: the public listener's routes when `/metrics` is served on
/// an internal one.
pub fn probes(readiness: Readiness, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(HealthState { readiness, metrics })
}

/// `/metrics` only.
pub fn metrics_only(readiness: Readiness, metrics: PrometheusHandle) -> Router {
    Router::new().route("/metrics", get(metrics_text)).with_state(HealthState { readiness, metrics })
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<HealthState>) -> Response {
    let report = state.readiness.report().await;
    let status = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(report)).into_response()
}

async fn metrics_text(State(state): State<HealthState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::metrics::render(&state.metrics))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(router: &Router, path: &str) -> (StatusCode, String) {
        let response = router.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn router_with(readiness: Readiness) -> Router {
        router(readiness, crate::metrics::install())
    }

    #[tokio::test]
    async fn healthz_is_ok() {
        let (status, body) = get(&router_with(Readiness::new()), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ok");
    }

    #[tokio::test]
    async fn readyz_is_ok_when_every_check_passes() {
        let readiness = Readiness::new().check("postgres", || async { Ok(()) }).check("zookeeper", || async { Ok(()) });
        let (status, body) = get(&router_with(readiness), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, r#"{"ready":true,"checks":{"postgres":"ok","zookeeper":"ok"}}"#);
    }

    #[tokio::test]
    async fn readyz_names_failing_checks() {
        let readiness = Readiness::new()
            .check("postgres", || async { Ok(()) })
            .check("zookeeper", || async { Err("no session".to_owned()) });
        let (status, body) = get(&router_with(readiness), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, r#"{"ready":false,"checks":{"postgres":"ok","zookeeper":"no session"}}"#);
    }

    #[tokio::test]
    async fn a_slow_check_fails_at_its_timeout() {
        let readiness = Readiness::new().check_with_timeout("slow", Duration::from_millis(50), || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        });
        let report = readiness.report().await;
        assert!(!report.ready);
        assert_eq!(report.checks["slow"], "timed out after 50ms");
    }

    #[tokio::test]
    async fn an_advisory_check_is_reported_but_keeps_the_process_ready() {
        let readiness = Readiness::new()
            .check("postgres", || async { Ok(()) })
            .advisory("connectors", || async { Err("account x: no vk connector".to_owned()) });
        let (status, body) = get(&router_with(readiness), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, r#"{"ready":true,"checks":{"connectors":"account x: no vk connector","postgres":"ok"}}"#);
    }

    #[tokio::test]
    async fn no_checks_means_ready() {
        assert!(Readiness::new().report().await.ready);
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        metrics::counter!("ops_health_test_total").increment(1);
        let response =
            router_with(Readiness::new()).oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("ops_health_test_total 1"), "{text}");
    }
}
