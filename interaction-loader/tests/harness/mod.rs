//! Black-box harness: the real loader router on port 0 against a fresh database, driven over
//! HTTP. Interactions and messages are written with the same store functions the connectors and
//! the chatserver use; times are moved with SQL where a test needs a past period.

#![allow(dead_code)] // each test uses a different part

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use interaction_loader::webhooks::target::Targets;
use interaction_loader::{Config, InteractionLoader};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ops::auth::{Claims, JwtConfig};
use reqwest::StatusCode;
use schema::domain::{Channel, MessageKind, Queue, RoutingMode};
use schema::store::{self, AgentProfile, InboundMessage, Ingested, NewAccount, OutboundMessage, Sender};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const SECRET: &str = "loader-test-secret-loader-test-secret";

pub struct TestApp {
    pub addr: SocketAddr,
    pub pool: PgPool,
    pub db_url: String,
    pub http: reqwest::Client,
    /// A key with every scope.
    pub key: String,
    pub telegram: Uuid,
    pub whatsapp: Uuid,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn jwt_config() -> JwtConfig {
    JwtConfig { hs256_secret: Some(ops::config::Secret::new(SECRET)), ..Default::default() }
}

/// A loader config for tests: fast webhook retries, small export batches. (Sign-on JWTs are
/// signed with [`SECRET`].)
pub fn test_config() -> Config {
    let mut config = Config { max_page_size: 500, export_batch: 7, ..Default::default() };
    config.webhooks.poll_interval_ms = 50;
    config.webhooks.backoff_initial_ms = 100;
    config.webhooks.backoff_max_ms = 400;
    config.webhooks.timeout_ms = 2000;
    // the tests' receivers listen on loopback
    config.webhooks.allow_internal = vec!["127.0.0.1/32".into()];
    config
}

pub fn jwt(sub: &str, roles: &[&str], exp_offset_s: i64) -> String {
    let exp = (Utc::now().timestamp() + exp_offset_s) as u64;
    let claims = Claims { sub: sub.into(), exp, name: None, roles: roles.iter().map(|r| (*r).to_owned()).collect() };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

/// A fresh database with queues `support` and `vip`, a Telegram and a WhatsApp account, agents
/// `alice` and `bob`, and a loader on it.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_config()).await
}

pub async fn spawn_app_with(config: Config) -> TestApp {
    let targets = config.webhooks.targets().unwrap();
    spawn_app_with_targets(config, targets).await
}

/// [`spawn_app_with`], with the webhook target policy given (a test's own name resolution).
pub async fn spawn_app_with_targets(config: Config, targets: Targets) -> TestApp {
    let (db_url, pool) = testenv::database().await;
    let mut conn = pool.acquire().await.unwrap();
    for name in ["support", "vip"] {
        store::upsert_queue(
            &mut conn,
            &Queue { name: name.into(), routing_mode: RoutingMode::Auto, offer_timeout_ms: 30_000 },
        )
        .await
        .unwrap();
    }
    let account = |channel, name: &str| NewAccount {
        channel,
        name: name.into(),
        default_queue: "support".into(),
        credentials: json!({ "token": "123456:secret-token-value" }),
        settings: json!({}),
    };
    let telegram = store::create_account(&mut conn, &account(Channel::Telegram, "shop")).await.unwrap().id;
    let whatsapp = store::create_account(&mut conn, &account(Channel::Whatsapp, "shop-wa")).await.unwrap().id;
    for login in ["alice", "bob"] {
        store::upsert_agent(
            &mut conn,
            &AgentProfile {
                login: login.into(),
                name: login.into(),
                roles: vec!["agent".into()],
                queues: vec!["support".into()],
                max_interactions: 5,
            },
        )
        .await
        .unwrap();
    }
    let all: Vec<String> = interaction_loader::auth::Scope::ALL.iter().map(|s| s.as_str().to_owned()).collect();
    let key = make_key(&mut conn, &all).await;
    drop(conn);
    let mut app = start_node_with_targets(&db_url, pool, config, targets).await;
    app.key = key;
    app.telegram = telegram;
    app.whatsapp = whatsapp;
    app
}

/// Another loader on the same database.
pub async fn start_node(db_url: &str, pool: PgPool, config: Config) -> TestApp {
    let targets = config.webhooks.targets().unwrap();
    start_node_with_targets(db_url, pool, config, targets).await
}

/// Another loader on the same database, with the webhook target policy given.
pub async fn start_node_with_targets(db_url: &str, pool: PgPool, config: Config, targets: Targets) -> TestApp {
    let shutdown = CancellationToken::new();
    let verifier = ops::auth::Verifier::from_config(&jwt_config()).unwrap();
    let loader = InteractionLoader::start_with_targets(config, Some(verifier), pool.clone(), shutdown.clone(), targets)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = loader.router();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, router).with_graceful_shutdown(async move { stop.cancelled().await }).await.unwrap();
    });
    TestApp {
        addr,
        pool,
        db_url: db_url.to_owned(),
        http: reqwest::Client::new(),
        key: String::new(),
        telegram: Uuid::nil(),
        whatsapp: Uuid::nil(),
        shutdown,
    }
}

/// An API key with `scopes`, stored the way the API stores them.
pub async fn make_key(conn: &mut sqlx::PgConnection, scopes: &[String]) -> String {
    let new = interaction_loader::auth::generate_key();
    store::create_api_key(conn, "test", &new.prefix, &new.hash, scopes, "test").await.unwrap();
    new.key
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET with a bearer credential (`None`: no Authorization header).
    pub async fn get_as(&self, path: &str, credential: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.http.get(self.url(path));
        if let Some(c) = credential {
            request = request.bearer_auth(c);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.get_as(path, Some(&self.key)).await
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A customer message on `account` from platform user `user`, stored like a connector
    /// stores it; returns (interaction id, message id).
    pub async fn inbound(&self, account: Uuid, user: &str, text: &str) -> (Uuid, Uuid) {
        self.inbound_with(account, user, text, None, Vec::new()).await
    }

    pub async fn inbound_with(
        &self,
        account: Uuid,
        user: &str,
        text: &str,
        phone: Option<&str>,
        file_ids: Vec<Uuid>,
    ) -> (Uuid, Uuid) {
        let mut tx = self.pool.begin().await.unwrap();
        let msg = InboundMessage {
            account_id: account,
            external_message_id: Uuid::new_v4().to_string(),
            chat_id: user.into(),
            sender: Sender {
                external_id: user.into(),
                name: format!("Customer {user}"),
                phone: phone.map(str::to_owned),
                ..Default::default()
            },
            kind: if file_ids.is_empty() { MessageKind::Text } else { MessageKind::Document },
            text: Some(text.into()),
            file_ids,
            location: None,
            contact: None,
            reply_to_external_id: None,
            forwarded: None,
            sent_at: None,
            sticker_id: None,
        };
        let stored = store::ingest_inbound(&mut tx, &msg, Duration::from_secs(3600)).await.unwrap();
        tx.commit().await.unwrap();
        match stored {
            Ingested::Stored { message, interaction, .. } => (interaction.id, message.id),
            Ingested::Duplicate { .. } => panic!("duplicate"),
        }
    }

    /// An agent's message in an interaction; returns its id.
    pub async fn outbound(&self, interaction: Uuid, agent: &str, text: &str) -> Uuid {
        let mut tx = self.pool.begin().await.unwrap();
        let sent = store::enqueue_outbound(
            &mut tx,
            &OutboundMessage {
                interaction_id: interaction,
                agent_login: agent.into(),
                agent_name: agent.into(),
                client_msg_id: Uuid::new_v4().to_string(),
                text: Some(text.into()),
                file_ids: Vec::new(),
                keyboard: None,
                reply_to: None,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        sent.message.id
    }

    /// Moves a message (and, if it is earlier, its interaction's creation) to `at`.
    pub async fn backdate(&self, message: Uuid, at: DateTime<Utc>) {
        sqlx::query("UPDATE messages SET created_at = $2 WHERE id = $1")
            .bind(message)
            .bind(at)
            .execute(&self.pool)
            .await
            .unwrap();
        sqlx::query(
            "UPDATE interactions SET created_at = LEAST(created_at, $2)
             WHERE id = (SELECT interaction_id FROM messages WHERE id = $1)",
        )
        .bind(message)
        .bind(at)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    /// Assigns an interaction to `agent` (take from the queue).
    pub async fn assign(&self, interaction: Uuid, agent: &str) {
        let mut tx = self.pool.begin().await.unwrap();
        store::take(&mut tx, interaction, agent, true).await.unwrap();
        tx.commit().await.unwrap();
    }

    pub async fn close(&self, interaction: Uuid, agent: &str) {
        let mut tx = self.pool.begin().await.unwrap();
        store::close(&mut tx, interaction, agent, Some("resolved")).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// Every interaction id of the period query, following cursors with `limit`.
    pub async fn all_pages(&self, query: &str, limit: u32) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/interactions?{query}&limit={limit}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, body) = self.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            for item in body["items"].as_array().unwrap() {
                ids.push(item["id"].as_str().unwrap().to_owned());
            }
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return ids,
            }
        }
    }
}

/// `from` and `to` query parameters, URL-safe.
pub fn period(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    format!("from={}&to={}", fmt(from), fmt(to))
}
