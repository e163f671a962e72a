//! Prometheus metrics: one global recorder, rendered by `GET /metrics`.
//!
//! Components record with the `metrics` macros (`metrics::counter!(...)`); [`install`] puts the
//! Prometheus recorder behind them. HTTP requests are counted and timed by [`track_http`].

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Renders the recorder's metrics; what [`install`] returns.
pub use metrics_exporter_prometheus::PrometheusHandle;

/// Buckets of `http_request_duration_seconds`, from 1 ms to 10 s.
const HTTP_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Installs the Prometheus recorder as the process's global `metrics` recorder, once; later
/// calls return the same handle.
///
/// If another recorder was installed first (not through this function), metrics go there and
/// the handle returned here renders nothing; that is logged.
pub fn install() -> PrometheusHandle {
    // The recorder is process-global by the `metrics` crate's design; the handle that renders
    // it has to be as well.
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full("http_request_duration_seconds".into()), HTTP_BUCKETS)
                .expect("the bucket list is not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!("cannot install the Prometheus recorder ({e}); /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// Renders every metric in the Prometheus text format.
pub fn render(handle: &PrometheusHandle) -> String {
    handle.run_upkeep();
    handle.render()
}

/// Middleware counting (`http_requests_total`) and timing (`http_request_duration_seconds`)
/// every request by method, route pattern (not the raw path, so ids do not explode the label
/// set) and status. Apply with `axum::middleware::from_fn(ops::metrics::track_http)`.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let labels = [("method", method), ("route", route), ("status", response.status().as_u16().to_string())];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent_and_renders_what_is_recorded() {
        let first = install();
        let second = install();
        metrics::counter!("ops_test_total", "case" => "idempotent").increment(3);
        for handle in [first, second] {
            let text = render(&handle);
            assert!(text.contains("ops_test_total{case=\"idempotent\"} 3"), "{text}");
        }
    }
}
