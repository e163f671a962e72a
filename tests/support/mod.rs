//! What the failover tests of `switchboard connector` share (`tests/*_failover.rs`): two
//! connector processes for one account on the local PostgreSQL and ZooKeeper, which of them
//! leads (from its `/metrics`), the agent's outbound stream, the per-chat order check, and a
//! load balancer in front of the nodes' webhook routes for the channels that receive by
//! webhook. Each test file drives its own platform fake and scenario with these.

// every test binary compiles this module and uses part of it
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use coord::{Coordinator, ZkConfig, ZkCoordinator};
use schema::domain::{Queue, RoutingMode};
use schema::store::{self, AgentProfile, OutboundMessage};
use sqlx::PgPool;
use uuid::Uuid;

/// Platform requests a leader may have in flight: what a kill can leave in doubt.
pub const MAX_IN_FLIGHT: usize = 8;

/// A `switchboard connector --account` process.
pub struct Node {
    pub name: &'static str,
    pub process: testenv::Switchboard,
    /// `http://host:port` of its HTTP listener.
    pub http: String,
}

impl Node {
    /// Starts a connector process for `account` named `name` (its node id), on the database
    /// `db_url` and the coordination root `root`, with a 2 s ZooKeeper session (a quick
    /// takeover) and [`MAX_IN_FLIGHT`]; `extra` adds settings.
    pub fn start(
        db_url: &str,
        root: &str,
        account: Uuid,
        name: &'static str,
        secret: &str,
        extra: &[(&str, &str)],
    ) -> Node {
        let account = account.to_string();
        let in_flight = MAX_IN_FLIGHT.to_string();
        let mut env = vec![
            ("SWITCHBOARD_DATABASE__URL", db_url),
            ("SWITCHBOARD_COORD__ROOT", root),
            ("SWITCHBOARD_COORD__SESSION_TIMEOUT_MS", "2000"),
            ("SWITCHBOARD_JWT__HS256_SECRET", secret),
            ("SWITCHBOARD_CONNECTORS__NODE_ID", name),
            ("SWITCHBOARD_CONNECTORS__MAX_IN_FLIGHT", &in_flight),
        ];
        env.extend_from_slice(extra);
        let process =
            testenv::Switchboard::start(env!("CARGO_BIN_EXE_switchboard"), &["connector", "--account", &account], &env);
        let http = format!("http://{}", process.addr);
        Node { name, process, http }
    }

    /// Whether this node leads `account`, from its `/metrics`.
    pub async fn leads(&self, account: Uuid) -> bool {
        let Ok(response) = reqwest::get(format!("{}/metrics", self.http)).await else { return false };
        let text = response.text().await.unwrap_or_default();
        text.lines().any(|l| l == format!("switchboard_connector_leader{{account=\"{account}\"}} 1"))
    }

    /// A counter of this node's `/metrics`, summed over its labels (0 when unreachable).
    pub async fn metric(&self, name: &str) -> f64 {
        let Ok(response) = reqwest::get(format!("{}/metrics", self.http)).await else { return 0.0 };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        self.process.child.kill().expect("SIGKILL the node");
        self.process.child.wait().unwrap();
    }
}

/// Waits until one of `nodes` leads `account` and returns its index, having checked that the
/// other does not.
pub async fn leader_of(nodes: &[Node], account: Uuid) -> usize {
    wait_for("a leader", Duration::from_secs(20), async || {
        for node in nodes {
            if node.leads(account).await {
                return true;
            }
        }
        false
    })
    .await;
    let mut leading = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        if node.leads(account).await {
            leading.push(i);
        }
    }
    assert_eq!(leading.len(), 1, "exactly one leader");
    leading[0]
}

pub async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

pub async fn wait_for(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Alice's replies, as the agent API queues them: `total` messages round-robin over
/// `interactions` (id, chat), the n-th one reading `out <chat> #<n>`, each in its own
/// transaction followed by the account's doorbell, with a 100 ms pause after every
/// `burst` of them (faster than the account's rate, so a backlog waits when a leader dies).
pub fn spawn_outbound(
    pool: PgPool,
    coord: Arc<dyn Coordinator>,
    account: Uuid,
    interactions: Vec<(Uuid, String)>,
    total: usize,
    burst: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for n in 0..total {
            let (interaction_id, chat) = &interactions[n % interactions.len()];
            let mut tx = pool.begin().await.unwrap();
            store::enqueue_outbound(
                &mut tx,
                &OutboundMessage {
                    interaction_id: *interaction_id,
                    agent_login: "alice".into(),
                    agent_name: "Alice".into(),
                    client_msg_id: format!("out-{n}"),
                    text: Some(format!("out {chat} #{n}")),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            coord.notify(&schema::topics::account(account));
            if n % burst == burst - 1 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    })
}

/// How many times a chat's replies (texts of [`spawn_outbound`]) were first delivered out of
/// their queueing order, from each text's first delivery time at the platform.
pub fn order_violations<'a>(first_deliveries: impl IntoIterator<Item = (&'a str, Duration)>) -> usize {
    let mut by_chat: HashMap<&str, Vec<(Duration, usize)>> = HashMap::new();
    for (text, at) in first_deliveries {
        let mut parts = text.split_whitespace().skip(1);
        let chat = parts.next().expect("out <chat> #<n>");
        let n: usize = parts.next().expect("out <chat> #<n>").trim_start_matches('#').parse().expect("#<n>");
        by_chat.entry(chat).or_default().push((at, n));
    }
    by_chat
        .values_mut()
        .map(|sent| {
            sent.sort();
            sent.windows(2).filter(|w| w[0].1 > w[1].1).count()
        })
        .sum()
}

/// A load balancer in front of the nodes' webhook routes, as a platform would see the hub:
/// each request goes to the nodes in turn until one answers something other than 503 (a
/// backup answers 503 to a webhook), with the request's method, path, query and the headers
/// named in `forward`.
#[derive(Clone)]
struct Balancer {
    nodes: Arc<RwLock<Vec<String>>>,
    forward: &'static [&'static str],
    http: reqwest::Client,
}

async fn balance(
    State(lb): State<Balancer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let mut last = (StatusCode::BAD_GATEWAY, String::from("no node answered"));
    let path = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let nodes = lb.nodes.read().unwrap().clone();
    for node in nodes {
        let mut request = lb.http.request(method.clone(), format!("{node}{path}")).body(body.clone());
        for name in lb.forward {
            if let Some(value) = headers.get(*name) {
                request = request.header(*name, value.as_bytes());
            }
        }
        match request.send().await {
            Ok(response) => {
                let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                let text = response.text().await.unwrap_or_default();
                if status != StatusCode::SERVICE_UNAVAILABLE {
                    return (status, text).into_response();
                }
                last = (status, text);
            }
            Err(e) => last = (StatusCode::BAD_GATEWAY, e.to_string()),
        }
    }
    last.into_response()
}

/// Starts a balancer forwarding the headers `forward`; returns its URL and its list of nodes
/// (`http://host:port`) to fill in.
pub async fn start_balancer(forward: &'static [&'static str]) -> (String, Arc<RwLock<Vec<String>>>) {
    let nodes = Arc::new(RwLock::new(Vec::new()));
    let lb = Balancer {
        nodes: nodes.clone(),
        forward,
        http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
    };
    let router = axum::Router::new().fallback(balance).with_state(lb);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), nodes)
}

/// The queue `support` (manual) and the agent alice (100 at a time) in it, who answers.
pub async fn queue_and_alice(pool: &PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    store::upsert_queue(
        &mut conn,
        &Queue { name: "support".into(), routing_mode: RoutingMode::Manual, offer_timeout_ms: 30_000 },
    )
    .await
    .unwrap();
    store::upsert_agent(
        &mut conn,
        &AgentProfile {
            login: "alice".into(),
            name: "Alice".into(),
            roles: vec!["agent".into()],
            queues: vec!["support".into()],
            max_interactions: 100,
        },
    )
    .await
    .unwrap();
}

/// The test's own ZooKeeper session under `root`: it rings doorbells as the agent API would.
pub async fn coordinator(root: &str) -> Arc<dyn Coordinator> {
    Arc::new(
        ZkCoordinator::start(ZkConfig {
            connect: testenv::zookeeper(),
            root: root.to_owned(),
            session_timeout: Duration::from_secs(4),
        })
        .await
        .unwrap(),
    )
}

/// Every interaction assigned to alice; their (id, chat) in chat order.
pub async fn assign_all_to_alice(pool: &PgPool) -> Vec<(Uuid, String)> {
    sqlx::query("UPDATE interactions SET state = 'assigned', agent = 'alice'").execute(pool).await.unwrap();
    sqlx::query_as("SELECT id, chat_id FROM interactions ORDER BY chat_id").fetch_all(pool).await.unwrap()
}

/// Waits until at least `n` inbound messages are stored and `n` outbound ones sent.
pub async fn wait_under_way(pool: &PgPool, n: i64, within: Duration) {
    wait_for("the streams under way", within, async || {
        count(pool, "SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'sent'").await >= n
            && count(pool, "SELECT count(*) FROM messages WHERE direction = 'in'").await >= n
    })
    .await;
}

/// Waits until exactly `inbound` messages are stored and `outbound` sent.
pub async fn wait_all_through(pool: &PgPool, inbound: usize, outbound: usize, within: Duration) {
    wait_for("every message through", within, async || {
        count(pool, "SELECT count(*) FROM messages WHERE direction = 'in'").await == inbound as i64
            && count(pool, "SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'sent'").await
                == outbound as i64
    })
    .await;
}
