//! The admin panel at `/admin`: static HTML, CSS and ES modules compiled into the binary, like
//! the agent console. It talks to the hub only through the public REST API
//! (`docs/openapi.json`: accounts, agents, queues, API keys, webhooks, audit, dead letters,
//! templates, statistics) and `/readyz`, with the administrator's credential (a JWT with the
//! `admin` role or an API key). `docs/admin.md` shows it.
//!
//! The one thing the API cannot tell is how this deployment is set up: `/admin/settings.json`
//! gives the panel the URL platforms post webhooks to, the retention and the quotas in force
//! (configuration only, never a secret), so it can show an account's webhook URL and the
//! retention page.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use schema::domain::Channel;
use serde_json::json;

use crate::config::Config;

/// The panel's files: name, MIME type, contents.
const FILES: &[(&str, &str, &str)] = &[
    ("admin.css", "text/css; charset=utf-8", include_str!("admin/admin.css")),
    ("app.js", JS, include_str!("admin/app.js")),
    ("api.js", JS, include_str!("admin/api.js")),
    ("i18n.js", JS, include_str!("admin/i18n.js")),
    ("ui.js", JS, include_str!("admin/ui.js")),
    ("chart.js", JS, include_str!("admin/chart.js")),
    ("channels.js", JS, include_str!("admin/channels.js")),
    ("accounts.js", JS, include_str!("admin/accounts.js")),
    ("people.js", JS, include_str!("admin/people.js")),
    ("integrations.js", JS, include_str!("admin/integrations.js")),
    ("stats.js", JS, include_str!("admin/stats.js")),
];

const JS: &str = "text/javascript; charset=utf-8";
const INDEX: &str = include_str!("admin/index.html");

/// The routes of the panel, for `config`'s deployment.
pub fn router(config: &Config) -> Router {
    let settings = settings(config).to_string();
    Router::new()
        .route("/admin", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/admin/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route(
            "/admin/settings.json",
            get(move || {
                let settings = settings.clone();
                async move { ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-cache")], settings) }
            }),
        )
        .route("/admin/{file}", get(file))
        .layer(axum::middleware::from_fn(security_headers))
}

async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, mime, body)) => asset(mime, body).into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

fn asset(mime: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "no-cache")], body)
}

/// The panel runs only its own scripts and talks only to this origin; it is never framed.
async fn security_headers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data: blob: https: http:; style-src 'self'; \
             script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    response
}

/// What the panel needs to know of the deployment: no secret, only settings.
pub fn settings(config: &Config) -> serde_json::Value {
    let public_url = config.connectors.public_url.trim_end_matches('/').to_owned();
    let limits: serde_json::Map<String, serde_json::Value> = Channel::ALL
        .iter()
        .filter(|c| **c != Channel::Video)
        .map(|c| (c.as_str().to_owned(), serde_json::to_value(c.capabilities().limits).unwrap_or_default()))
        .collect();
    json!({
        "public_url": public_url,
        "webhook_base": if public_url.is_empty() { String::new() } else { format!("{public_url}/api/v1/connectors/") },
        "default_queue": config.chatserver.default_queue,
        "reopen_window_s": config.connectors.reopen_window_s,
        "files": {
            "retention_days": config.fileserver.retention_days,
            "retention_interval_s": config.fileserver.retention_interval_s,
            "max_upload_bytes": config.fileserver.max_upload_bytes,
            "link_ttl_s": config.fileserver.link_ttl_s,
        },
        "webhooks": {
            "retry_for_s": config.loader.webhooks.retry_for_s,
            "backoff_initial_ms": config.loader.webhooks.backoff_initial_ms,
            "backoff_max_ms": config.loader.webhooks.backoff_max_ms,
        },
        "video": { "link_ttl_s": config.video.link_ttl_s, "max_rooms": config.video.max_rooms },
        "max_page_size": config.loader.max_page_size,
        "limits": limits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_loads_is_served() {
        let mut referenced = Vec::new();
        for (_, _, body) in FILES.iter().chain([&("index.html", "", INDEX)]) {
            for part in body.split(['"', '\'']).filter(|p| p.starts_with("./") || p.starts_with("/admin/")) {
                let name = part.trim_start_matches("./").trim_start_matches("/admin/");
                if name.ends_with(".js") || name.ends_with(".css") {
                    referenced.push(name.to_owned());
                }
            }
        }
        assert!(referenced.len() >= FILES.len(), "{referenced:?}");
        for name in referenced {
            assert!(FILES.iter().any(|(n, _, _)| *n == name), "{name} is referenced but not served");
        }
    }

    #[test]
    fn the_settings_hold_no_secret() {
        let mut config = Config::default();
        config.connectors.public_url = "https://hub.example.com/".into();
        let s = settings(&config);
        assert_eq!(s["webhook_base"], "https://hub.example.com/api/v1/connectors/");
        assert!(s["limits"]["telegram"]["max_text_chars"].as_u64().unwrap() > 0);
        let text = s.to_string();
        for secret in ["secret", "password", "key"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}
