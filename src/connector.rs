//! The messenger connectors in this process: `switchboard connector --account <id>` (one
//! account) and `switchboard all` (every enabled account, picking up accounts enabled later).
//!
//! Two processes serving one account elect a leader through ZooKeeper; the other stands by and
//! takes over when the leader's session ends. Each process serves the ops routes and the
//! Telegram webhook route on `http.bind`.

use std::net::SocketAddr;

use ops::config::Problem;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::app::Component;
use crate::config::Config;

/// What types alone cannot check in `[connectors]`.
pub fn problems(config: &connectors::Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !config.fileserver_url.is_empty() {
        match Url::parse(&config.fileserver_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => problems.push(Problem::new(
                "connectors.fileserver_url",
                format!(
                    "{:?} is not an http(s) URL: give e.g. http://127.0.0.1:8080, or leave it empty",
                    config.fileserver_url
                ),
            )),
        }
    }
    if !config.public_url.is_empty() {
        match Url::parse(&config.public_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => problems.push(Problem::new(
                "connectors.public_url",
                format!(
                    "{:?} is not an http(s) URL: give the hub's URL as platforms reach it, e.g. https://hub.example.com",
                    config.public_url
                ),
            )),
        }
    }
    if config.max_in_flight == 0 {
        problems.push(Problem::new("connectors.max_in_flight", "must be at least 1"));
    }
    problems
}

/// Starts serving once the process listens on `addr`: the file server defaults to that
/// listener (127.0.0.1 when it binds every interface). The task ends after `shutdown` once every
/// account has stopped: its in-flight platform requests answered and their outcomes committed.
pub fn start(
    runtime: connectors::Runtime,
    component: Component,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    if let Ok(url) = Url::parse(&format!("http://{host}:{}", addr.port())) {
        runtime.set_fileserver(url);
    }
    match component {
        Component::Connector(account) => {
            tracing::info!(%account, node = runtime.node(), "serving one account");
            runtime.spawn_account(account, shutdown)
        }
        _ => {
            tracing::info!(node = runtime.node(), "serving every enabled messenger account");
            tokio::spawn(async move { runtime.serve_enabled(shutdown).await })
        }
    }
}

/// The runtime for `config`, signing its file server tokens with the hub's HS256 secret.
pub fn runtime(
    config: &Config,
    db: sqlx::PgPool,
    coordinator: std::sync::Arc<dyn coord::Coordinator>,
) -> connectors::Runtime {
    connectors::Runtime::new(db, coordinator, config.connectors.clone(), config.jwt.hs256_secret.clone())
}

/// The advisory `/readyz` check of the connectors: `ok`, or each account that cannot be served
/// and why (a channel this build has no connector for, settings its module refuses).
pub fn readiness(
    runtime: connectors::Runtime,
) -> impl Fn() -> std::future::Ready<Result<(), String>> + Send + Sync + 'static {
    move || {
        let problems = runtime.problems();
        std::future::ready(if problems.is_empty() {
            Ok(())
        } else {
            Err(problems
                .iter()
                .map(|(account, why)| format!("account {account}: {why}"))
                .collect::<Vec<_>>()
                .join("; "))
        })
    }
}
