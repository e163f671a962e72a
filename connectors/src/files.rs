//! The hub's file server, as a connector uses it: inbound media is uploaded to it before the
//! message is stored (so the agent's message already has its file), outbound files are
//! downloaded from it and uploaded to the platform.
//!
//! Contract (`docs/fileserver.md`): `POST /api/v1/files?name=&channel=&account_id=` with the raw
//! bytes and their `Content-Type` answers `201 {"id","name","mime","size","sha256","url"}`;
//! `GET /api/v1/files/{id}` streams the bytes. Both take `Authorization: Bearer <jwt>`; a
//! connector signs a short-lived service token (role `service`) with the hub's HS256 secret.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use ops::auth::Claims;
use ops::config::Secret;
use schema::domain::{Channel, FileRef};
use serde::Deserialize;
use url::Url;
use uuid::Uuid;

/// How long a service token lives; a new one is signed when less than a third is left.
const TOKEN_LIFETIME: Duration = Duration::from_secs(600);

/// Why a file could not be moved.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Worth trying again later (network, 5xx, 429).
    #[error("file server unavailable: {0}")]
    Unavailable(String),
    /// Will not work as asked (4xx): the file server's reason.
    #[error("file server refused: {0}")]
    Refused(String),
    #[error("no jwt.hs256_secret is configured, so this connector cannot sign its file server token")]
    NoSecret,
}

impl FileError {
    pub fn is_transient(&self) -> bool {
        matches!(self, FileError::Unavailable(_))
    }
}

/// What the file server answers to an upload.
#[derive(Debug, Clone, Deserialize)]
pub struct Uploaded {
    pub id: Uuid,
    pub name: String,
    pub mime: String,
    pub size: i64,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

impl Uploaded {
    pub fn to_ref(&self) -> FileRef {
        FileRef {
            id: self.id,
            name: self.name.clone(),
            mime: self.mime.clone(),
            size: self.size,
            url: FileRef::url_for(self.id),
        }
    }
}

/// A client of the file server for one account. Cheap to clone.
#[derive(Clone)]
pub struct FileServer {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    base: Url,
    http: reqwest::Client,
    secret: Option<Secret>,
    subject: String,
    channel: Channel,
    account_id: Uuid,
    /// The current token and when it expires (seconds since the epoch). A std mutex: held for
    /// a clone or a signature, never across an await.
    token: Mutex<Option<(String, u64)>>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

impl FileServer {
    /// `base` is the file server's root URL (`http://127.0.0.1:8080`); tokens are signed with
    /// `secret` (the hub's `jwt.hs256_secret`).
    pub fn new(base: Url, secret: Option<Secret>, channel: Channel, account_id: Uuid) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build()
            .expect("a plain HTTP client builds");
        FileServer {
            inner: std::sync::Arc::new(Inner {
                base,
                http,
                secret,
                subject: format!("connector:{account_id}"),
                channel,
                account_id,
                token: Mutex::new(None),
            }),
        }
    }

    pub fn base(&self) -> &Url {
        &self.inner.base
    }

    /// A bearer token with role `service`, signed with the hub's secret.
    pub fn token(&self) -> Result<String, FileError> {
        let secret = self.inner.secret.as_ref().ok_or(FileError::NoSecret)?;
        let now = unix_now();
        let mut current = self.inner.token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, exp)) = current.as_ref()
            && *exp > now + TOKEN_LIFETIME.as_secs() / 3
        {
            return Ok(token.clone());
        }
        let exp = now + TOKEN_LIFETIME.as_secs();
        let claims = Claims {
            sub: self.inner.subject.clone(),
            exp,
            name: Some(format!("{} connector", self.inner.channel)),
            roles: vec!["service".to_owned()],
        };
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.expose().as_bytes()),
        )
        .map_err(|e| FileError::Refused(format!("cannot sign a service token: {e}")))?;
        *current = Some((token.clone(), exp));
        Ok(token)
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.inner.base.clone();
        let base_path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base_path}{path}"));
        url
    }

    /// Stores `bytes` as a file named `name` of type `mime`.
    pub async fn upload(&self, name: &str, mime: &str, bytes: Bytes) -> Result<Uploaded, FileError> {
        let mut url = self.url("/api/v1/files");
        url.query_pairs_mut()
            .append_pair("name", name)
            .append_pair("channel", self.inner.channel.as_str())
            .append_pair("account_id", &self.inner.account_id.to_string());
        let response = self
            .inner
            .http
            .post(url)
            .bearer_auth(self.token()?)
            .header(reqwest::header::CONTENT_TYPE, mime)
            .body(bytes)
            .send()
            .await
            .map_err(|e| FileError::Unavailable(e.to_string()))?;
        let response = check(response).await?;
        response.json::<Uploaded>().await.map_err(|e| FileError::Unavailable(format!("bad upload answer: {e}")))
    }

    /// The bytes of file `id`.
    pub async fn download(&self, id: Uuid) -> Result<Bytes, FileError> {
        let response = self
            .inner
            .http
            .get(self.url(&format!("/api/v1/files/{id}")))
            .bearer_auth(self.token()?)
            .send()
            .await
            .map_err(|e| FileError::Unavailable(e.to_string()))?;
        let response = check(response).await?;
        response.bytes().await.map_err(|e| FileError::Unavailable(e.to_string()))
    }
}

async fn check(response: reqwest::Response) -> Result<reqwest::Response, FileError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let reason = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or(body);
    let message = format!("{status}: {reason}");
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Err(FileError::Unavailable(message))
    } else {
        Err(FileError::Refused(message))
    }
}
