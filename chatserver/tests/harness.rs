//! Black-box harness: the real chatserver router on port 0 against a fresh database and the real
//! ZooKeeper, driven by real WebSocket clients; plus the test connector, which writes inbound
//! messages through the same store function and doorbells a connector uses.

#![allow(dead_code)] // each test file uses a different part

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use coord::{Coordinator, ZkConfig, ZkCoordinator};
use futures::{SinkExt, StreamExt};
use ops::auth::{Claims, JwtConfig};
use schema::domain::{Channel, MessageKind, Queue, RoutingMode};
use schema::store::{self, AgentProfile, InboundMessage, Ingested, NewAccount, Sender};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const SECRET: &str = "test-secret-test-secret-test-secret";
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestApp {
    pub addr: SocketAddr,
    pub pool: PgPool,
    pub db_url: String,
    pub coord: Arc<dyn Coordinator>,
    pub zk_root: String,
    pub account_id: Uuid,
    shutdown: CancellationToken,
}

pub fn jwt_config() -> JwtConfig {
    JwtConfig { hs256_secret: Some(ops::config::Secret::new(SECRET)), ..Default::default() }
}

pub async fn zk(root: &str) -> Arc<dyn Coordinator> {
    Arc::new(
        ZkCoordinator::start(ZkConfig {
            connect: testenv::zookeeper(),
            root: root.into(),
            session_timeout: Duration::from_secs(4),
        })
        .await
        .expect("ZooKeeper reachable"),
    )
}

/// Starts a chatserver on a fresh database with queue `support` (offer timeout `offer_ms`) and
/// a Telegram account.
pub async fn spawn_app(offer_ms: i32) -> TestApp {
    let (db_url, pool) = testenv::database().await;
    let zk_root = format!("/test-{}", Uuid::new_v4().simple());
    let mut conn = pool.acquire().await.unwrap();
    store::upsert_queue(
        &mut conn,
        &Queue { name: "support".into(), routing_mode: RoutingMode::Auto, offer_timeout_ms: offer_ms },
    )
    .await
    .unwrap();
    store::upsert_queue(
        &mut conn,
        &Queue { name: "vip".into(), routing_mode: RoutingMode::Manual, offer_timeout_ms: offer_ms },
    )
    .await
    .unwrap();
    let account = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Telegram,
            name: "shop".into(),
            default_queue: "support".into(),
            credentials: json!({}),
            settings: json!({}),
        },
    )
    .await
    .unwrap();
    drop(conn);
    let mut app = start_node(&db_url, pool.clone(), &zk_root).await;
    app.account_id = account.id;
    app
}

/// Another chatserver node on the same database and ZooKeeper root.
pub async fn start_node(db_url: &str, pool: PgPool, zk_root: &str) -> TestApp {
    start_node_with(db_url, pool, zk_root, chatserver::Config::default()).await
}

/// [`start_node`] with `config` (its heartbeat and send timeout shortened for tests).
pub async fn start_node_with(db_url: &str, pool: PgPool, zk_root: &str, config: chatserver::Config) -> TestApp {
    let coord = zk(zk_root).await;
    let shutdown = CancellationToken::new();
    let config = chatserver::Config { heartbeat_s: 5, send_timeout_s: 1, ..config };
    let verifier = ops::auth::Verifier::from_config(&jwt_config()).unwrap();
    let server =
        chatserver::Chatserver::start(config, verifier, pool.clone(), coord.clone(), shutdown.clone()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = server.router();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, router).with_graceful_shutdown(async move { stop.cancelled().await }).await.unwrap();
    });
    TestApp {
        addr,
        pool,
        db_url: db_url.to_owned(),
        coord,
        zk_root: zk_root.to_owned(),
        account_id: Uuid::nil(),
        shutdown,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn token(login: &str, roles: &[&str], exp_in: i64) -> String {
    let claims = Claims {
        sub: login.into(),
        exp: (chrono::Utc::now().timestamp() + exp_in) as u64,
        name: Some(format!("Agent {login}")),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

impl TestApp {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/v1/agent/ws", self.addr)
    }

    /// Creates (or updates) an agent profile: queues and capacity.
    pub async fn agent(&self, login: &str, queues: &[&str], max: i32, roles: &[&str]) {
        let mut conn = self.pool.acquire().await.unwrap();
        store::upsert_agent(
            &mut conn,
            &AgentProfile {
                login: login.into(),
                name: format!("Agent {login}"),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                queues: queues.iter().map(|q| q.to_string()).collect(),
                max_interactions: max,
            },
        )
        .await
        .unwrap();
    }

    /// Connects as `login` and says hello.
    pub async fn connect(&self, login: &str, roles: &[&str]) -> Client {
        let mut client = Client::connect(&self.ws_url(), &token(login, roles, 3600)).await.expect("connect");
        let hello = client.call("hello", json!({})).await;
        assert_eq!(hello["ok"], true, "{hello}");
        client
    }

    /// The test connector: what a connector does for one customer message.
    pub async fn inbound(&self, user: &str, external_message_id: &str, text: &str) -> Ingested {
        let msg = InboundMessage {
            account_id: self.account_id,
            external_message_id: external_message_id.into(),
            chat_id: user.into(),
            sender: Sender { external_id: user.into(), name: format!("Customer {user}"), ..Default::default() },
            kind: MessageKind::Text,
            text: Some(text.into()),
            file_ids: vec![],
            location: None,
            contact: None,
            reply_to_external_id: None,
            forwarded: None,
            sent_at: None,
            sticker_id: None,
        };
        let mut tx = self.pool.begin().await.unwrap();
        let out = store::ingest_inbound(&mut tx, &msg, Duration::from_secs(3600)).await.unwrap();
        tx.commit().await.unwrap();
        if let Ingested::Stored { opened, audience, .. } = &out {
            for agent in audience {
                self.coord.notify(&schema::topics::agent(agent));
            }
            if *opened {
                self.coord.notify(schema::topics::ROUTING);
            }
        }
        out
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    events: VecDeque<Value>,
    next_id: u64,
    /// every event seq received, in order
    pub seqs: Vec<i64>,
}

impl Client {
    pub async fn connect(url: &str, token: &str) -> Result<Client, tungstenite::Error> {
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Client { ws, events: VecDeque::new(), next_id: 0, seqs: Vec::new() })
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// Reads one JSON frame (skipping pings), stashing events; `None` when the socket closed.
    async fn frame(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await.expect("a frame within the wait")?;
            match msg.ok()? {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).expect("server frames are JSON");
                    if let Some(seq) = v.get("seq").and_then(Value::as_i64) {
                        self.seqs.push(seq);
                        self.events.push_back(v);
                        continue;
                    }
                    return Some(v);
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The next reply frame (for raw requests).
    pub async fn reply(&mut self) -> Value {
        self.frame().await.expect("socket open")
    }

    pub async fn call(&mut self, cmd: &str, args: Value) -> Value {
        self.next_id += 1;
        let id = format!("r-{}", self.next_id);
        let frame = json!({ "id": id, "cmd": cmd, "args": args });
        self.ws.send(Message::Text(frame.to_string().into())).await.unwrap();
        loop {
            let reply = self.frame().await.expect("socket closed before the reply");
            if reply["re"] == id {
                return reply;
            }
        }
    }

    /// Waits for the next event named `name`, keeping the others queued.
    pub async fn event(&mut self, name: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
                return self.events.remove(i).unwrap();
            }
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!remaining.is_zero(), "no {name} event within {WAIT:?}; queued: {:?}", self.events);
            match tokio::time::timeout(remaining, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if let Some(seq) = v.get("seq").and_then(Value::as_i64) {
                        self.seqs.push(seq);
                        self.events.push_back(v);
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(_) => panic!("socket closed while waiting for {name}"),
                Err(_) => panic!("no {name} event within {WAIT:?}; queued: {:?}", self.events),
            }
        }
    }

    /// Whether an event named `name` arrives within `within`.
    pub async fn no_event(&mut self, name: &str, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.events.iter().any(|e| e["event"] == name) {
                return false;
            }
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if let Some(seq) = v.get("seq").and_then(Value::as_i64) {
                        self.seqs.push(seq);
                        self.events.push_back(v);
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(_) | Err(_) => return true,
            }
        }
    }

    /// Reads (slowly, like a client that fell behind) until the server closes the socket;
    /// returns how many frames came and the close code.
    pub async fn read_until_closed(&mut self) -> (usize, Option<u16>) {
        let mut frames = 0;
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(_)))) => frames += 1,
                Ok(Some(Ok(Message::Close(frame)))) => return (frames, frame.map(|f| u16::from(f.code))),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) => return (frames, None),
                Err(_) => panic!("the server neither sent nor closed within {WAIT:?} ({frames} frames so far)"),
            }
        }
    }

    pub fn drain_events(&mut self) -> Vec<Value> {
        self.events.drain(..).collect()
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
