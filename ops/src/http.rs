//! Serving a router: bind (port 0 in tests), expose the address, run until stopped.
//!
//! ```no_run
//! # async fn example(router: axum::Router) -> std::io::Result<()> {
//! let shutdown = ops::shutdown::on_signal()?;
//! let server = ops::http::Server::bind("127.0.0.1:0".parse().unwrap(), router).await?;
//! println!("listening on http://{}", server.local_addr());
//! server.run_until_stopped(shutdown).await
//! # }
//! ```

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::shutdown::DRAIN_DEADLINE;

/// A bound HTTP server that has not started serving yet.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    router: Router,
    drain: Duration,
}

impl Server {
    /// Binds `addr`. The error names the address.
    pub async fn bind(addr: SocketAddr, router: Router) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        Self::from_listener(listener, router)
    }

    /// Serves on a listener bound elsewhere.
    pub fn from_listener(listener: TcpListener, router: Router) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        Ok(Server { listener, addr, router, drain: DRAIN_DEADLINE })
    }

    /// The address actually bound (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How long open connections may finish after shutdown starts (default
    /// [`DRAIN_DEADLINE`]).
    pub fn drain_deadline(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// Serves until `shutdown` is cancelled, then drains; see [`serve`].
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        serve(self.listener, self.router, shutdown, self.drain).await
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled. Then it stops accepting and
/// waits for open connections to finish, for at most `drain`; after that it returns anyway,
/// with a warning, leaving whatever is still open to be dropped with the runtime.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    drain: Duration,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    // TCP_NODELAY: an agent's event frame goes out at once instead of waiting for the ACK of the
    // previous one (Nagle plus delayed ACK adds up to 40 ms to a small frame)
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
    });
    let graceful = axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    let deadline = async {
        shutdown.cancelled().await;
        tracing::info!(%addr, "stopped accepting; draining open connections for up to {drain:?}");
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        served = graceful => {
            tracing::info!(%addr, "HTTP server stopped");
            served
        }
        _ = deadline => {
            tracing::warn!(%addr, "connections still open after {drain:?}; giving up on them");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::time::Instant;

    fn router() -> Router {
        Router::new().route("/hello", get(|| async { "hello" })).route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(600)).await;
                "late"
            }),
        )
    }

    #[tokio::test]
    async fn binds_port_zero_serves_and_stops_when_cancelled() {
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), router()).await.unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        let token = CancellationToken::new();
        let running = tokio::spawn(server.run_until_stopped(token.clone()));

        let body = reqwest::get(format!("http://{addr}/hello")).await.unwrap().text().await.unwrap();
        assert_eq!(body, "hello");

        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("stops promptly with no open request")
            .unwrap()
            .unwrap();
        assert!(reqwest::get(format!("http://{addr}/hello")).await.is_err());
    }

    #[tokio::test]
    async fn gives_up_on_a_hanging_request_at_the_drain_deadline() {
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), router())
            .await
            .unwrap()
            .drain_deadline(Duration::from_millis(300));
        let addr = server.local_addr();
        let token = CancellationToken::new();
        let running = tokio::spawn(server.run_until_stopped(token.clone()));
        let hanging = tokio::spawn(reqwest::get(format!("http://{addr}/hang")));
        tokio::time::sleep(Duration::from_millis(200)).await;

        let started = Instant::now();
        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("returns at the drain deadline")
            .unwrap()
            .unwrap();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        hanging.abort();
    }

    #[tokio::test]
    async fn binding_a_taken_port_names_the_address() {
        let first = Server::bind("127.0.0.1:0".parse().unwrap(), router()).await.unwrap();
        let err = match Server::bind(first.local_addr(), router()).await {
            Ok(_) => panic!("bound a taken port"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(&format!("cannot listen on {}", first.local_addr())), "{err}");
    }
}
