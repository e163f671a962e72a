//! Black-box harness: a hub (the real chatserver and file server routers on port 0, a fresh
//! database, the real ZooKeeper), the fake Telegram Bot API, a Telegram account pointed at it,
//! the connector runtime, and real WebSocket agents.

#![allow(dead_code)] // each test file uses a different part

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use connectors::fake::telegram::FakeTelegram;
use coord::{Coordinator, ZkConfig, ZkCoordinator};
use futures::{SinkExt, StreamExt};
use ops::auth::{Claims, JwtConfig, Verifier};
use ops::config::Secret;
use schema::domain::{Channel, Queue, RoutingMode};
use schema::store::{self, AgentProfile, NewAccount};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const SECRET: &str = "test-secret-test-secret-test-secret";
pub const BOT_TOKEN: &str = "7001002003:AAFakeTokenForTests";
pub const WAIT: Duration = Duration::from_secs(15);

pub struct Hub {
    pub addr: SocketAddr,
    pub pool: PgPool,
    pub db_url: String,
    pub coord: Arc<dyn Coordinator>,
    pub zk_root: String,
    pub fake: FakeTelegram,
    pub account_id: Uuid,
    shutdown: CancellationToken,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn jwt_config() -> JwtConfig {
    JwtConfig { hs256_secret: Some(Secret::new(SECRET)), ..Default::default() }
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

pub fn token(login: &str, roles: &[&str]) -> String {
    let claims = Claims {
        sub: login.into(),
        exp: (chrono::Utc::now().timestamp() + 3600) as u64,
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

/// A hub with a Telegram account whose settings are `settings` plus the fake's `api_url`.
pub async fn spawn_hub(settings: Value) -> Hub {
    spawn_hub_with(settings, json!({})).await
}

/// Like [`spawn_hub`], with extra credentials (e.g. a webhook secret).
pub async fn spawn_hub_with(settings: Value, credentials: Value) -> Hub {
    let (db_url, pool) = testenv::database().await;
    let zk_root = format!("/test-{}", Uuid::new_v4().simple());
    let coord = zk(&zk_root).await;
    let fake = FakeTelegram::start(BOT_TOKEN).await;
    let mut conn = pool.acquire().await.unwrap();
    store::upsert_queue(
        &mut conn,
        &Queue { name: "support".into(), routing_mode: RoutingMode::Auto, offer_timeout_ms: 30_000 },
    )
    .await
    .unwrap();
    let mut all_settings = json!({ "api_url": fake.api_url() });
    all_settings.as_object_mut().unwrap().extend(settings.as_object().unwrap().clone());
    let mut all_credentials = json!({ "bot_token": BOT_TOKEN });
    all_credentials.as_object_mut().unwrap().extend(credentials.as_object().unwrap().clone());
    let account = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Telegram,
            name: "shop".into(),
            default_queue: "support".into(),
            credentials: all_credentials,
            settings: all_settings,
        },
    )
    .await
    .unwrap();
    drop(conn);

    let shutdown = CancellationToken::new();
    let chat = chatserver::Chatserver::start(
        chatserver::Config { heartbeat_s: 5, ..Default::default() },
        Verifier::from_config(&jwt_config()).unwrap(),
        pool.clone(),
        coord.clone(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let files_root = std::env::temp_dir().join(format!("connectors-test-files-{}", Uuid::new_v4().simple()));
    let files = fileserver::Fileserver::start(
        fileserver::Config { root: files_root, ..Default::default() },
        Verifier::from_config(&jwt_config()).unwrap(),
        pool.clone(),
        coord.clone(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = chat.router().merge(files.router());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, router).with_graceful_shutdown(async move { stop.cancelled().await }).await.unwrap();
    });
    Hub { addr, pool, db_url, coord, zk_root, fake, account_id: account.id, shutdown }
}

/// A connector serving the hub's account in this process; stops when dropped.
pub struct Connector {
    pub stop: CancellationToken,
    pub task: JoinHandle<()>,
    pub runtime: connectors::Runtime,
    pub addr: SocketAddr,
}

impl Drop for Connector {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Connector {
    /// Stops it and waits until it has let go of the account.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    }
}

impl Hub {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/v1/agent/ws", self.addr)
    }

    pub fn runtime(&self, config: connectors::Config) -> connectors::Runtime {
        let config = connectors::Config { fileserver_url: format!("http://{}", self.addr), ..config };
        connectors::Runtime::new(self.pool.clone(), self.coord.clone(), config, Some(Secret::new(SECRET)))
    }

    /// Starts the connector runtime for the account, with its webhook route on its own port.
    pub async fn start_connector(&self, config: connectors::Config) -> Connector {
        self.start_connector_at(config, false).await
    }

    /// Starts the connector in webhook mode: its webhook URL (on its own port) goes into the
    /// account's settings first.
    pub async fn start_webhook_connector(&self, config: connectors::Config) -> Connector {
        self.start_connector_at(config, true).await
    }

    async fn start_connector_at(&self, config: connectors::Config, webhook: bool) -> Connector {
        let runtime = self.runtime(config);
        let stop = self.shutdown.child_token();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        if webhook {
            let url = format!("http://{addr}/api/v1/connectors/{}/telegram", self.account_id);
            sqlx::query(
                "UPDATE accounts SET settings = settings || jsonb_build_object('mode', 'webhook', 'webhook_url', $1::text)",
            )
            .bind(url)
            .execute(&self.pool)
            .await
            .unwrap();
        }
        let router = runtime.router();
        let serve_stop = stop.clone();
        tokio::spawn(async move {
            let _ =
                axum::serve(listener, router).with_graceful_shutdown(async move { serve_stop.cancelled().await }).await;
        });
        let task = runtime.spawn_account(self.account_id, stop.clone());
        Connector { stop, task, runtime, addr }
    }

    /// An agent in queue `support`, connected, greeted and ready.
    pub async fn ready_agent(&self, login: &str) -> Client {
        let mut conn = self.pool.acquire().await.unwrap();
        store::upsert_agent(
            &mut conn,
            &AgentProfile {
                login: login.into(),
                name: format!("Agent {login}"),
                roles: vec!["agent".into()],
                queues: vec!["support".into()],
                max_interactions: 50,
            },
        )
        .await
        .unwrap();
        drop(conn);
        let mut client = Client::connect(&self.ws_url(), &token(login, &["agent"])).await.expect("connect");
        let hello = client.call("hello", json!({})).await;
        assert_eq!(hello["ok"], true, "{hello}");
        let ready = client.call("agent.set_status", json!({"status": "ready"})).await;
        assert_eq!(ready["ok"], true, "{ready}");
        client
    }

    /// Accepts the next offer and returns the interaction id.
    pub async fn accept_next(&self, agent: &mut Client) -> String {
        let offer = agent.event("interaction.offered").await;
        let id = offer["data"]["interaction"]["id"].as_str().expect("offer names its interaction").to_owned();
        let accepted = agent.call("interaction.accept", json!({"interaction_id": id})).await;
        assert_eq!(accepted["data"]["state"], "assigned", "{accepted}");
        id
    }

    /// GET a hub path with an agent's token.
    pub async fn download(&self, path: &str) -> (u16, Vec<u8>, String) {
        let response = reqwest::Client::new()
            .get(format!("http://{}{path}", self.addr))
            .bearer_auth(token("alice", &["agent"]))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let mime = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        (status, response.bytes().await.unwrap().to_vec(), mime)
    }

    /// Uploads a file as an agent would; returns its id.
    pub async fn upload(&self, name: &str, mime: &str, bytes: Vec<u8>) -> String {
        let response = reqwest::Client::new()
            .post(format!("http://{}/api/v1/files?name={name}&channel=telegram", self.addr))
            .bearer_auth(token("alice", &["agent"]))
            .header("content-type", mime)
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    /// The bytes, name and type of the `n`-th file of an agent's `message`, downloaded from
    /// the file server.
    pub async fn file_of(&self, message: &Value, n: usize) -> (Vec<u8>, String, String) {
        let file = &message["files"][n];
        let (status, bytes, _) = self.download(file["url"].as_str().expect("the file has a URL")).await;
        assert_eq!(status, 200, "the file is downloadable from the file server: {message}");
        (bytes, file["name"].as_str().unwrap().to_owned(), file["mime"].as_str().unwrap().to_owned())
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }
}

/// Waits until `check` holds, polling.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    events: VecDeque<Value>,
    next_id: u64,
}

impl Client {
    pub async fn connect(url: &str, token: &str) -> Result<Client, tungstenite::Error> {
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Client { ws, events: VecDeque::new(), next_id: 0 })
    }

    /// Reads one frame: an event is queued (and `Some(Null)` returned), a reply returned;
    /// `None` at `until`.
    async fn read(&mut self, until: tokio::time::Instant) -> Option<Value> {
        loop {
            match tokio::time::timeout_at(until, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).expect("server frames are JSON");
                    if v.get("seq").is_some() {
                        self.events.push_back(v);
                        return Some(Value::Null);
                    }
                    return Some(v);
                }
                Ok(Some(Ok(_))) => continue,
                Ok(_) => panic!("socket closed"),
                Err(_) => return None,
            }
        }
    }

    pub async fn call(&mut self, cmd: &str, args: Value) -> Value {
        self.next_id += 1;
        let id = format!("r-{}", self.next_id);
        let frame = json!({ "id": id, "cmd": cmd, "args": args });
        self.ws.send(Message::Text(frame.to_string().into())).await.unwrap();
        let until = tokio::time::Instant::now() + WAIT;
        loop {
            let reply = self.read(until).await.unwrap_or_else(|| panic!("no reply to {cmd} within {WAIT:?}"));
            if reply["re"] == id {
                return reply;
            }
        }
    }

    /// The next event named `name` (others stay queued).
    pub async fn event(&mut self, name: &str) -> Value {
        self.event_where(name, |_| true).await
    }

    /// The next event named `name` whose data passes `check`.
    pub async fn event_where(&mut self, name: &str, check: impl Fn(&Value) -> bool) -> Value {
        let until = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(i) = self.events.iter().position(|e| e["event"] == name && check(&e["data"])) {
                return self.events.remove(i).unwrap();
            }
            if tokio::time::Instant::now() >= until {
                panic!("no {name} event within {WAIT:?}; queued: {:?}", self.events);
            }
            let _ = self.read(until).await;
        }
    }

    /// The message of the next `message.new` of a customer's message of `kind`.
    pub async fn customer_message(&mut self, kind: &str) -> Value {
        let event = self
            .event_where("message.new", |d| d["message"]["kind"] == kind && d["message"]["direction"] == "in")
            .await;
        event["data"]["message"].clone()
    }

    /// Sends `args` (plus the interaction and `client_msg_id`) as `message.send` and returns
    /// the message once its status is final (`sent` or `failed`).
    pub async fn send_message(&mut self, interaction: &str, client_msg_id: &str, args: Value) -> Value {
        let mut args = args;
        args["interaction_id"] = json!(interaction);
        args["client_msg_id"] = json!(client_msg_id);
        let sent = self.call("message.send", args).await;
        assert_eq!(sent["ok"], true, "{sent}");
        let id = sent["data"]["id"].as_str().unwrap().to_owned();
        let status = self
            .event_where("message.status", |d| {
                d["message"]["id"] == id.as_str() && matches!(d["message"]["status"].as_str(), Some("sent" | "failed"))
            })
            .await;
        status["data"]["message"].clone()
    }

    /// Reads whatever arrives within `within`.
    pub async fn settle(&mut self, within: Duration) {
        let until = tokio::time::Instant::now() + within;
        while self.read(until).await.is_some() {}
    }

    pub fn events(&self) -> &VecDeque<Value> {
        &self.events
    }

    pub fn take_events(&mut self) -> Vec<Value> {
        self.events.drain(..).collect()
    }
}
