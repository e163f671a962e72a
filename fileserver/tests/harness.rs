//! Black-box harness: the real file server router on port 0, a fresh database, real ZooKeeper,
//! a storage directory of its own; driven over HTTP by reqwest and, where the test is about
//! what happens before a body is sent, by a raw TCP client.

#![allow(dead_code)] // each test file uses a different part

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coord::{Coordinator, ZkConfig, ZkCoordinator};
use fileserver::Config;
use ops::auth::{Claims, JwtConfig, Verifier};
use ops::config::Secret;
use schema::domain::{Channel, Queue, RoutingMode};
use schema::store::{self, NewAccount};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const SECRET: &str = "test-secret-test-secret-test-secret";
pub const SIGNING_KEY: &str = "signing-key-signing-key-signing-key";
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestApp {
    pub addr: SocketAddr,
    pub pool: PgPool,
    pub root: PathBuf,
    pub config: Config,
    pub coord: Arc<dyn Coordinator>,
    /// A Telegram account.
    pub account_id: Uuid,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

pub fn token(login: &str, roles: &[&str], exp_in: i64) -> String {
    let claims = Claims {
        sub: login.into(),
        exp: (chrono::Utc::now().timestamp() + exp_in) as u64,
        name: None,
        roles: roles.iter().map(|r| r.to_string()).collect(),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A valid agent token.
pub fn agent() -> String {
    token("alice", &["agent"], 600)
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

/// Starts a file server with the test's config changes; retention is off unless the test
/// turns it on.
pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let (_url, pool) = testenv::database().await;
    let root = std::env::temp_dir().join(format!("fileserver-test-{}", Uuid::new_v4().simple()));
    let mut config = Config {
        root: root.clone(),
        signing_key: Some(Secret::new(SIGNING_KEY)),
        retention_days: 0,
        ..Config::default()
    };
    tweak(&mut config);

    let mut conn = pool.acquire().await.unwrap();
    store::upsert_queue(
        &mut conn,
        &Queue { name: "support".into(), routing_mode: RoutingMode::Auto, offer_timeout_ms: 30_000 },
    )
    .await
    .unwrap();
    let account = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Telegram,
            name: "shop".into(),
            default_queue: "support".into(),
            credentials: serde_json::json!({}),
            settings: serde_json::json!({}),
        },
    )
    .await
    .unwrap();
    drop(conn);

    let coord: Arc<dyn Coordinator> = Arc::new(
        ZkCoordinator::start(ZkConfig {
            connect: testenv::zookeeper(),
            root: format!("/test-{}", Uuid::new_v4().simple()),
            session_timeout: Duration::from_secs(4),
        })
        .await
        .expect("ZooKeeper reachable"),
    );
    let verifier =
        Verifier::from_config(&JwtConfig { hs256_secret: Some(Secret::new(SECRET)), ..Default::default() }).unwrap();
    let shutdown = CancellationToken::new();
    let server = fileserver::Fileserver::start(config.clone(), verifier, pool.clone(), coord.clone(), shutdown.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = server.router();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, router).with_graceful_shutdown(async move { stop.cancelled().await }).await.unwrap();
    });
    TestApp { addr, pool, root, config, coord, account_id: account.id, http: reqwest::Client::new(), shutdown }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub async fn from(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("read body").to_vec();
        Answer { status, headers, body }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers)).to_str().unwrap()
    }

    /// The error code of a JSON error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code: {:?}", self.json())).to_owned()
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Uploads `bytes` as a raw body; `query` is appended after `name`.
    pub async fn upload(&self, name: &str, mime: &str, bytes: Vec<u8>, query: &str) -> Answer {
        let mut url = format!("{}?name={}", self.url("/api/v1/files"), urlencode(name));
        if !query.is_empty() {
            url = format!("{url}&{query}");
        }
        let response = self
            .http
            .post(url)
            .bearer_auth(agent())
            .header("content-type", mime)
            .body(bytes)
            .send()
            .await
            .expect("POST");
        Answer::from(response).await
    }

    /// Uploads and returns the new file's id.
    pub async fn upload_ok(&self, name: &str, mime: &str, bytes: Vec<u8>) -> Uuid {
        let answer = self.upload(name, mime, bytes, "").await;
        assert_eq!(answer.status, 201, "{}", String::from_utf8_lossy(&answer.body));
        answer.json()["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Answer::from(request.send().await.expect("GET")).await
    }

    pub async fn file_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM files").fetch_one(&self.pool).await.unwrap()
    }

    /// Every regular file under the storage root (the temporary directory included).
    pub fn files_on_disk(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }

    /// Sends `head` (request line and headers, no blank line) and then `body` on a raw
    /// connection, and reads the answer until the server closes or `WAIT` passes.
    pub async fn raw(&self, head: &str, body: &[u8]) -> RawAnswer {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream
            .write_all(format!("{head}\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr).as_bytes())
            .await
            .unwrap();
        // the server may answer (and close) before it has read everything: a failed write is fine
        let _ = stream.write_all(body).await;
        let mut received = Vec::new();
        let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut received)).await;
        RawAnswer::parse(&received)
    }
}

/// An answer read off a raw connection.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawAnswer {
    fn parse(bytes: &[u8]) -> RawAnswer {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no complete answer: {text:?}"));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{head}"));
        RawAnswer { status, head: head.to_owned(), body: body.to_owned() }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Chunked transfer encoding of `chunks`, with the final empty chunk when `finish`.
pub fn chunked(chunks: &[Vec<u8>], finish: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    if finish {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    out
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Deterministic bytes that do not compress or repeat in an obvious way.
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
