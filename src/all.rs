//! Running components: `switchboard all` (every component in one process, on one HTTP listener)
//! and the one-component subcommands (`switchboard chatserver`, ...).
//!
//! Start-up: PostgreSQL (connect, migrate), the coordinator, the components, the listener; then
//! serve until SIGTERM or Ctrl-C, drain, and release the coordinator's session and the pool.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use coord::{Coordinator, LocalCoordinator, ZkConfig, ZkCoordinator};
use tokio_util::sync::CancellationToken;

use crate::app::{AppState, Component, app, metrics_app};
use crate::config::{Backend, Config};
use crate::database;

/// How long closing the pool may take at shutdown.
const POOL_CLOSE_DEADLINE: Duration = Duration::from_secs(5);
/// How long the connectors may take to stop: their in-flight platform requests answered and the
/// outcomes committed (each outbox worker waits up to 5 s for them), before the coordinator's
/// session and the pool close under them.
const CONNECTORS_STOP_DEADLINE: Duration = Duration::from_secs(15);

pub async fn run(config: Config, components: &[Component]) -> anyhow::Result<()> {
    let shutdown = ops::shutdown::on_signal().context("cannot install signal handlers")?;
    let started = tokio::select! {
        started = start(config, components, shutdown.clone()) => started?,
        _ = shutdown.cancelled() => {
            tracing::info!("stopped during start-up");
            return Ok(());
        }
    };
    serve(started, shutdown).await
}

struct Started {
    state: AppState,
    /// The ZooKeeper coordinator, to close its session at shutdown (`None`: local).
    zookeeper: Option<ZkCoordinator>,
    server: ops::http::Server,
    /// The internal `/metrics` listener, when `http.metrics_bind` is set.
    metrics_server: Option<ops::http::Server>,
    /// Lines to print after the URLs: the console, the web chat demo, what the demo seeding did.
    demo: Vec<String>,
    /// The connectors' task, which ends once every account stopped after shutdown.
    connectors: Option<tokio::task::JoinHandle<()>>,
    /// The video channel, whose tracked background work (the scheduled calls' reminders)
    /// finishes its transaction before the pool closes.
    video: Option<video::Video>,
}

async fn start(mut config: Config, components: &[Component], shutdown: CancellationToken) -> anyhow::Result<Started> {
    let metrics = ops::metrics::install();
    metrics::gauge!("switchboard_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);

    let db = database::connect(&config).await?;
    let applied = database::migrate(&db).await?;
    if applied.is_empty() {
        tracing::info!("database schema is up to date");
    }

    let (coordinator, zookeeper): (Arc<dyn Coordinator>, _) = match config.coord.backend {
        Backend::Zookeeper => {
            tracing::info!(connect = %config.coord.zookeeper, root = %config.coord.root, "connecting to ZooKeeper");
            let zk = ZkCoordinator::start(ZkConfig {
                connect: config.coord.zookeeper.clone(),
                root: config.coord.root.clone(),
                session_timeout: config.coord.session_timeout(),
            })
            .await
            .with_context(|| {
                format!(
                    "cannot start the ZooKeeper coordinator on {} (root {})",
                    config.coord.zookeeper, config.coord.root
                )
            })?;
            (Arc::new(zk.clone()), Some(zk))
        }
        Backend::Local => {
            tracing::info!("using the in-process coordinator (coord.backend = \"local\")");
            (Arc::new(LocalCoordinator::new()), None)
        }
    };

    let verifier = ops::auth::Verifier::from_config(&config.jwt).context("cannot verify bearer tokens")?;
    // bound first: the video links and the demo need the real address when the port is 0
    let listener = tokio::net::TcpListener::bind(config.http.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.bind))?;
    let http_base = format!("http://{}", listener.local_addr()?);
    if components.contains(&Component::Video) && config.chatserver.video_url.is_empty() {
        // the chatserver's video.start links to this process's video channel
        config.chatserver.video_url =
            if config.video.public_url.is_empty() { http_base.clone() } else { config.video.public_url.clone() };
        config.chatserver.video_link_ttl_s = config.video.link_ttl_s;
        config.chatserver.video_quality = config.video.default_quality.clone();
    }
    let mut routes = axum::Router::new();
    let mut connectors = None;
    let mut video_udp = None;
    let mut started_video = None;
    for component in components {
        match component {
            Component::Chatserver => {
                let chat = chatserver::Chatserver::start(
                    config.chatserver.clone(),
                    verifier.clone(),
                    db.clone(),
                    coordinator.clone(),
                    shutdown.clone(),
                )
                .await
                .context("cannot start the chatserver")?;
                routes = routes.merge(chat.router()).merge(crate::console::router());
            }
            Component::Fileserver => {
                let files = fileserver::Fileserver::start(
                    config.fileserver.clone(),
                    verifier.clone(),
                    db.clone(),
                    coordinator.clone(),
                    shutdown.clone(),
                )
                .await
                .context("cannot start the file server")?;
                routes = routes.merge(files.router());
            }
            Component::Loader => {
                let loader = interaction_loader::InteractionLoader::start(
                    config.loader.clone(),
                    Some(verifier.clone()),
                    db.clone(),
                    shutdown.clone(),
                )
                .await
                .context("cannot start the interaction loader")?;
                routes = routes.merge(loader.router()).merge(crate::admin::router(&config));
            }
            Component::Video => {
                let mut video_config = config.video.clone();
                // the recordings' uploads to the file server are signed with the hub's secret
                video_config.recording.service_secret = config.jwt.hs256_secret.clone();
                let video = video::Video::start(
                    video_config,
                    &http_base,
                    verifier.clone(),
                    db.clone(),
                    coordinator.clone(),
                    shutdown.clone(),
                )
                .await
                .context("cannot start the video channel")?;
                video_udp = Some(video.udp_addr());
                routes = routes.merge(video.router());
                started_video = Some(video);
            }
            Component::Connectors | Component::Connector(_) => {
                let runtime = crate::connector::runtime(&config, db.clone(), coordinator.clone());
                routes = routes.merge(runtime.router());
                connectors = Some((runtime, *component));
            }
        }
    }

    let state = AppState { config: Arc::new(config), db, coordinator, metrics };
    let mut readiness = crate::app::readiness(&state);
    if let Some((runtime, _)) = &connectors {
        readiness = readiness.advisory("connectors", crate::connector::readiness(runtime.clone()));
    }
    let server = ops::http::Server::from_listener(listener, app(&state, routes, readiness.clone()))?;
    let metrics_server = match state.config.http.metrics_bind {
        Some(bind) => Some(
            ops::http::Server::bind(bind, metrics_app(&state, readiness))
                .await
                .with_context(|| format!("cannot listen on http.metrics_bind {bind}"))?,
        ),
        None => None,
    };
    let addr = server.local_addr();
    let mut demo = Vec::new();
    if components.contains(&Component::Chatserver) {
        demo.push(format!("  console:   http://{addr}/console   the reference agent console"));
    }
    if components.contains(&Component::Loader) {
        demo.push(format!("  admin:     http://{addr}/admin   the admin panel (an admin token or an API key)"));
    }
    if components.contains(&Component::Connectors) {
        demo.push(format!("  web chat:  http://{addr}/webchat/demo   the widget on a demo page"));
    }
    if let Some(udp) = video_udp {
        demo.push(format!("  video:     udp://{udp}   the SFU's one UDP port (calls: the console's Video call)"));
    }
    if components.contains(&Component::Chatserver) && components.contains(&Component::Connectors) {
        demo.extend(crate::demo::seed_if_empty(&state.db, &state.config, addr).await.unwrap_or_else(|e| {
            tracing::warn!(error = %format!("{e:#}"), "demo: cannot seed the empty database");
            Vec::new()
        }));
    }
    let connectors = connectors
        .map(|(runtime, component)| crate::connector::start(runtime, component, server.local_addr(), shutdown));
    Ok(Started { state, zookeeper, server, metrics_server, demo, connectors, video: started_video })
}

async fn serve(started: Started, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Started { state, zookeeper, server, metrics_server, demo, connectors, video } = started;
    let addr = server.local_addr();
    let metrics_addr = metrics_server.as_ref().map_or(addr, ops::http::Server::local_addr);
    tracing::info!(%addr, %metrics_addr, "serving");
    let mut banner = format!(
        "switchboard: listening on http://{addr}
  liveness:  http://{addr}/healthz
  readiness: http://{addr}/readyz
  metrics:   http://{metrics_addr}/metrics
  agent API: ws://{addr}/api/v1/agent/ws
  REST API:  http://{addr}/api/v1/openapi.json
"
    );
    for line in &demo {
        banner.push_str(line);
        banner.push('\n');
    }
    // one write, and its failure ignored: a reader that stops reading (a closed pipe) must not
    // stop the server, as `println!` would by panicking
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    }

    let served = match metrics_server {
        None => server.run_until_stopped(shutdown).await,
        Some(internal) => {
            let (served, internal) =
                tokio::join!(server.run_until_stopped(shutdown.clone()), internal.run_until_stopped(shutdown));
            if let Err(e) = internal {
                tracing::warn!(error = %e, "the internal metrics listener failed");
            }
            served
        }
    };

    // In order: the connectors finish what they have in flight and commit its outcome while the
    // coordinator's session (their leadership and fence) and the pool still stand; then the
    // coordinator writes the doorbells those last commits rang and closes its session (a backup
    // leads at once), and the pool closes.
    if let Some(connectors) = connectors {
        match tokio::time::timeout(CONNECTORS_STOP_DEADLINE, connectors).await {
            Ok(_) => tracing::info!("connectors stopped"),
            Err(_) => tracing::warn!(
                "connectors still stopping after {CONNECTORS_STOP_DEADLINE:?}; rows in flight stay in doubt"
            ),
        }
    }
    if let Some(video) = video
        && tokio::time::timeout(CONNECTORS_STOP_DEADLINE, video.stopped()).await.is_err()
    {
        tracing::warn!("the video channel's background work still running after {CONNECTORS_STOP_DEADLINE:?}");
    }
    if let Some(zk) = zookeeper {
        zk.shutdown().await;
    }
    let AppState { db, .. } = state;
    if tokio::time::timeout(POOL_CLOSE_DEADLINE, db.close()).await.is_err() {
        tracing::warn!("database connections still busy after {POOL_CLOSE_DEADLINE:?}; exiting anyway");
    }
    served.with_context(|| format!("HTTP server on {addr} failed"))?;
    tracing::info!("stopped");
    Ok(())
}
