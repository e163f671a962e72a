//! Memory of idle agent sockets: a `switchboard chatserver` process (the real binary, release
//! build) holds N authenticated, greeted agent sockets; prints its resident memory before and
//! after, and per socket. Printed, not asserted.
//!
//! Run with the local services up and enough file descriptors:
//! `eval "$(deploy/services.sh env)"; ulimit -n 65536; cargo bench --bench idle_sockets`
//! (`BENCH_SOCKETS` overrides the default 10,000.)

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "idle-bench-secret-idle-bench-secret-idle";

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn token(login: &str) -> String {
    testenv::token(SECRET, login, &["agent"])
}

#[tokio::main]
async fn main() {
    let sockets: usize = std::env::var("BENCH_SOCKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let (db_url, _pool) = testenv::database().await;
    let root = format!("/bench-{}", uuid::Uuid::new_v4().simple());
    let server = testenv::Switchboard::start(
        env!("CARGO_BIN_EXE_switchboard"),
        &["chatserver"],
        &[
            ("SWITCHBOARD_DATABASE__URL", &db_url),
            ("SWITCHBOARD_DATABASE__MAX_CONNECTIONS", "20"),
            ("SWITCHBOARD_COORD__ROOT", &root),
            ("SWITCHBOARD_JWT__HS256_SECRET", SECRET),
        ],
    );
    let (pid, addr) = (server.pid(), server.addr.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(pid);

    let url = format!("ws://{addr}/api/v1/agent/ws");
    let started = Instant::now();
    let mut held = Vec::with_capacity(sockets);
    let mut pending = futures::stream::iter(0..sockets)
        .map(|i| {
            let url = url.clone();
            async move {
                let mut request = url.into_client_request().unwrap();
                request
                    .headers_mut()
                    .insert("Authorization", format!("Bearer {}", token(&format!("idle{i}"))).parse().unwrap());
                let (mut ws, _) = tokio_tungstenite::connect_async(request).await.expect("connect");
                ws.send(Message::Text(r#"{"id":"h","cmd":"hello"}"#.into())).await.unwrap();
                // wait for the hello reply: the socket is registered and subscribed
                while let Some(Ok(msg)) = ws.next().await {
                    if matches!(msg, Message::Text(_)) {
                        break;
                    }
                }
                ws
            }
        })
        .buffer_unordered(64);
    while let Some(ws) = pending.next().await {
        held.push(ws);
    }
    let connect_time = started.elapsed();
    // keep answering pings while idle
    let mut keepers = Vec::new();
    for mut ws in held {
        keepers.push(tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} }));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_kib(pid);
    println!(
        "idle sockets: {sockets} greeted agent sockets on one chatserver process in {connect_time:.1?}; \
         RSS {:.0} MiB before, {:.0} MiB after: {:.1} KiB per socket",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after.saturating_sub(before)) as f64 / sockets as f64
    );
    drop(server);
    for k in keepers {
        k.abort();
    }
}
