//! Inbound delivery: customer messages stored by a connector (its own ZooKeeper session, as a
//! separate process would have) reach agents' WebSockets on one or two chatserver nodes.
//! Prints messages/s delivered and the latency from the store commit to the agent's socket
//! (p50/p99), at a fixed offered rate and flat out. Printed, not asserted.
//!
//! Run with the local services up:
//! `eval "$(deploy/services.sh env)"; cargo bench -p chatserver --bench delivery`
//! (`BENCH_AGENTS`, `BENCH_RATE`, `BENCH_SECONDS` override the defaults.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coord::{Coordinator, ZkConfig, ZkCoordinator};
use futures::{SinkExt, StreamExt};
use ops::auth::{Claims, JwtConfig};
use schema::domain::{Channel, MessageKind, Queue, RoutingMode};
use schema::store::{self, AgentProfile, InboundMessage, Ingested, NewAccount, Sender};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SECRET: &str = "bench-secret-bench-secret-bench-secret";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

async fn zk(root: &str) -> Arc<dyn Coordinator> {
    Arc::new(
        ZkCoordinator::start(ZkConfig {
            connect: std::env::var("SWITCHBOARD_TEST_ZK").expect("eval \"$(deploy/services.sh env)\" first"),
            root: root.into(),
            session_timeout: Duration::from_secs(6),
        })
        .await
        .unwrap(),
    )
}

async fn node(pool: PgPool, root: &str, shutdown: CancellationToken) -> String {
    let jwt = JwtConfig { hs256_secret: Some(ops::config::Secret::new(SECRET)), ..Default::default() };
    let verifier = ops::auth::Verifier::from_config(&jwt).unwrap();
    let server =
        chatserver::Chatserver::start(chatserver::Config::default(), verifier, pool, zk(root).await, shutdown.clone())
            .await
            .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = server.router();
    tokio::spawn(async move {
        axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.cancelled().await }).await.unwrap();
    });
    format!("ws://{addr}/api/v1/agent/ws")
}

fn token(login: &str) -> String {
    let claims = Claims { sub: login.into(), exp: u64::MAX / 4, name: None, roles: vec!["agent".into()] };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// An agent socket that reports when each `message.new` arrived (keyed by the message text).
async fn agent(url: String, login: String, arrivals: mpsc::UnboundedSender<(String, u64)>, ready: mpsc::Sender<()>) {
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("Authorization", format!("Bearer {}", token(&login)).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::Text(json!({"id": "h", "cmd": "hello", "args": {}}).to_string().into())).await.unwrap();
    // events flow from the hello on: count the agent ready once its reply is here
    while let Some(Ok(msg)) = ws.next().await {
        if matches!(msg, Message::Text(_)) {
            break;
        }
    }
    ready.send(()).await.unwrap();
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if let (true, Some(key)) = (v["event"] == "message.new", v["data"]["message"]["text"].as_str()) {
                let _ = arrivals.send((key.to_owned(), now_micros()));
            }
        }
    }
}

struct Setup {
    pool: PgPool,
    account: Uuid,
    customers: Vec<String>,
}

/// `agents` agents, each assigned one interaction per customer it serves (5 each).
async fn setup(agents: usize) -> Setup {
    let (_url, pool) = testenv::database().await;
    let mut conn = pool.acquire().await.unwrap();
    store::upsert_queue(
        &mut conn,
        &Queue { name: "support".into(), routing_mode: RoutingMode::Manual, offer_timeout_ms: 30_000 },
    )
    .await
    .unwrap();
    let account = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Telegram,
            name: "bench".into(),
            default_queue: "support".into(),
            credentials: json!({}),
            settings: json!({}),
        },
    )
    .await
    .unwrap();
    let mut customers = Vec::new();
    for a in 0..agents {
        let login = format!("agent{a}");
        store::upsert_agent(
            &mut conn,
            &AgentProfile {
                login: login.clone(),
                name: login.clone(),
                roles: vec!["agent".into()],
                queues: vec!["support".into()],
                max_interactions: 5,
            },
        )
        .await
        .unwrap();
        for c in 0..5 {
            let customer = format!("c{a}-{c}");
            let mut tx = pool.begin().await.unwrap();
            let first = inbound(account.id, &customer, format!("{customer}:0"), "hello".into());
            let Ingested::Stored { interaction, .. } =
                store::ingest_inbound(&mut tx, &first, Duration::from_secs(3600)).await.unwrap()
            else {
                panic!("stored")
            };
            store::take(&mut tx, interaction.id, &login, true).await.unwrap();
            tx.commit().await.unwrap();
            customers.push(customer);
        }
    }
    Setup { pool, account: account.id, customers }
}

fn inbound(account_id: Uuid, customer: &str, external_message_id: String, text: String) -> InboundMessage {
    InboundMessage {
        account_id,
        external_message_id,
        chat_id: customer.into(),
        sender: Sender { external_id: customer.into(), name: customer.into(), ..Default::default() },
        kind: MessageKind::Text,
        text: Some(text),
        file_ids: vec![],
        location: None,
        contact: None,
        reply_to_external_id: None,
        forwarded: None,
        sent_at: None,
        sticker_id: None,
    }
}

type Commits = Arc<std::sync::Mutex<HashMap<String, u64>>>;

/// Writes `rate` messages/s (0 = flat out) for `seconds` with `writers` concurrent writers, as
/// a connector does, recording when each commit returned; returns how many were committed.
async fn stream(
    s: &Setup,
    coord: Arc<dyn Coordinator>,
    rate: u64,
    seconds: u64,
    writers: usize,
    commits: Commits,
) -> u64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (pool, coord, customers, account) = (s.pool.clone(), coord.clone(), s.customers.clone(), s.account);
        let commits = commits.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let per_writer = rate as f64 / writers as f64;
            while start.elapsed() < Duration::from_secs(seconds) {
                if rate > 0 {
                    let due = start + Duration::from_secs_f64(n as f64 / per_writer);
                    tokio::time::sleep_until(due.into()).await;
                }
                let customer = &customers[(w + n as usize * writers) % customers.len()];
                let key = format!("{w}:{n}");
                let msg = inbound(account, customer, key.clone(), key.clone());
                let mut tx = pool.begin().await.unwrap();
                let out = store::ingest_inbound(&mut tx, &msg, Duration::from_secs(3600)).await.unwrap();
                tx.commit().await.unwrap();
                commits.lock().unwrap().insert(key, now_micros());
                if let Ingested::Stored { audience, .. } = out {
                    for a in audience {
                        coord.notify(&schema::topics::agent(&a));
                    }
                }
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

async fn run(label: &str, nodes: usize, agents: usize, rate: u64, seconds: u64) {
    let s = setup(agents).await;
    let root = format!("/bench-{}", Uuid::new_v4().simple());
    let shutdown = CancellationToken::new();
    let mut urls = Vec::new();
    for _ in 0..nodes {
        urls.push(node(s.pool.clone(), &root, shutdown.clone()).await);
    }
    let (arrival_tx, mut arrivals) = mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = mpsc::channel(agents);
    for a in 0..agents {
        tokio::spawn(agent(urls[a % nodes].clone(), format!("agent{a}"), arrival_tx.clone(), ready_tx.clone()));
    }
    for _ in 0..agents {
        ready_rx.recv().await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    while arrivals.try_recv().is_ok() {}
    let connector = zk(&root).await;
    let writers = if rate == 0 { 8 } else { 4 };
    let commits: Commits = Arc::default();
    let started = Instant::now();
    let sent = stream(&s, connector, rate, seconds, writers, commits.clone()).await;
    let mut arrived = Vec::with_capacity(sent as usize);
    let mut last_arrival = started;
    let deadline = Instant::now() + Duration::from_secs(10);
    while (arrived.len() as u64) < sent && Instant::now() < deadline {
        if let Ok(Some(a)) = tokio::time::timeout(Duration::from_millis(200), arrivals.recv()).await {
            arrived.push(a);
            last_arrival = Instant::now();
        }
    }
    let elapsed = last_arrival.duration_since(started).as_secs_f64();
    if (arrived.len() as u64) < sent {
        // say what is missing, to tell a lost wake-up from a lost event
        let got: std::collections::HashSet<&String> = arrived.iter().map(|(k, _)| k).collect();
        let missing: Vec<String> = commits.lock().unwrap().keys().filter(|k| !got.contains(k)).cloned().collect();
        for key in &missing {
            let row: Option<(String, i64, i64)> = sqlx::query_as(
                "SELECT e.agent_login, e.seq, a.last_event_seq FROM agent_events e JOIN agents a ON a.login = e.agent_login
                 WHERE e.event = 'message.new' AND e.data->'message'->>'text' = $1",
            )
            .bind(key)
            .fetch_optional(&s.pool)
            .await
            .unwrap();
            println!("  missing {key}: agent event (agent, seq, agent's last seq) = {row:?}");
        }
        let late = tokio::time::timeout(Duration::from_secs(15), async {
            while let Some((key, _)) = arrivals.recv().await {
                if missing.contains(&key) {
                    return key;
                }
            }
            String::new()
        })
        .await;
        println!("  15 s later: {late:?}");
    }
    let commits = commits.lock().unwrap();
    let mut latencies: Vec<u64> =
        arrived.iter().filter_map(|(key, at)| commits.get(key).map(|c| at.saturating_sub(*c))).collect();
    latencies.sort_unstable();
    // a message woken by a safety net instead of its ring shows as seconds late
    let late = latencies.iter().filter(|l| **l > 1_000_000).count();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "{label}: {nodes} node(s), {agents} agents, offered {}: stored {sent}, delivered {} ({:.0} msg/s); commit->socket p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {late} over 1 s",
        if rate == 0 { "flat out".to_string() } else { format!("{rate} msg/s") },
        latencies.len(),
        latencies.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        pct(1.0),
    );
    shutdown.cancel();
}

#[tokio::main]
async fn main() {
    let agents = env("BENCH_AGENTS", 200) as usize;
    let rate = env("BENCH_RATE", 1000);
    let seconds = env("BENCH_SECONDS", 10);
    run("fixed rate", 1, agents, rate, seconds).await;
    run("fixed rate", 2, agents, rate, seconds).await;
    run("throughput", 1, agents, 0, seconds).await;
    run("throughput", 2, agents, 0, seconds).await;
}
