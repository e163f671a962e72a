//! The hub's file server, as a connector uses it: inbound media is uploaded to it before the
//! message is stored (so the agent's message already has its file); outbound files are streamed
//! from it to platforms that take uploads, or handed to platforms that fetch by URL as a
//! short-lived signed link. No file is ever held whole in memory on the way out.
//!
//! Contract (`docs/fileserver.md`): `POST /api/v1/files?name=&channel=&account_id=` with the raw
//! bytes and their `Content-Type` answers `201 {"id","name","mime","size","sha256","url"}`;
//! `GET /api/v1/files/{id}` streams the bytes; `POST /api/v1/files/{id}/link?ttl_s=` answers
//! `{"url"}`, a path with a signature that needs no token. All take `Authorization: Bearer
//! <jwt>`; a connector signs a short-lived service token (role `service`) with the hub's HS256
//! secret.

use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use futures::{Stream, TryStreamExt};
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
    /// Where platforms reach the hub (`connectors.public_url`): signed links are made under it.
    public: Option<Url>,
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
    /// Signed links for platforms are made under `public` (else under `base`).
    pub fn new(base: Url, secret: Option<Secret>, public: Option<Url>, channel: Channel, account_id: Uuid) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build()
            .expect("a plain HTTP client builds");
        FileServer {
            inner: std::sync::Arc::new(Inner {
                base,
                public,
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
        self.post_file(name, mime, bytes.into()).await
    }

    /// Stores a file from a stream of bytes (a platform's download, passed through as it
    /// arrives: never the whole file in memory). A stream that fails makes the upload fail
    /// (`Unavailable`), and the file server keeps nothing of it.
    pub async fn upload_stream(&self, name: &str, mime: &str, bytes: ByteStream) -> Result<Uploaded, FileError> {
        self.post_file(name, mime, reqwest::Body::wrap_stream(bytes)).await
    }

    async fn post_file(&self, name: &str, mime: &str, body: reqwest::Body) -> Result<Uploaded, FileError> {
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
            .body(body)
            .send()
            .await
            .map_err(|e| FileError::Unavailable(e.to_string()))?;
        let response = check(response).await?;
        response.json::<Uploaded>().await.map_err(|e| FileError::Unavailable(format!("bad upload answer: {e}")))
    }

    /// The bytes of file `id`, as they arrive (never the whole file in memory).
    pub async fn stream(&self, id: Uuid) -> Result<ByteStream, FileError> {
        let response = self
            .inner
            .http
            .get(self.url(&format!("/api/v1/files/{id}")))
            .bearer_auth(self.token()?)
            .send()
            .await
            .map_err(|e| FileError::Unavailable(e.to_string()))?;
        let response = check(response).await?;
        Ok(Box::pin(response.bytes_stream().map_err(std::io::Error::other)))
    }

    /// A signed link to file `id` that works without a token for `ttl`, under the hub's public
    /// URL, for platforms that fetch files themselves.
    pub async fn link(&self, id: Uuid, ttl: Duration) -> Result<Url, FileError> {
        let mut url = self.url(&format!("/api/v1/files/{id}/link"));
        url.query_pairs_mut().append_pair("ttl_s", &ttl.as_secs().max(1).to_string());
        let response = self
            .inner
            .http
            .post(url)
            .bearer_auth(self.token()?)
            .send()
            .await
            .map_err(|e| FileError::Unavailable(e.to_string()))?;
        let response = check(response).await?;
        #[derive(Deserialize)]
        struct Link {
            url: String,
        }
        let link: Link = response.json().await.map_err(|e| FileError::Unavailable(format!("bad link answer: {e}")))?;
        let root = self.inner.public.as_ref().unwrap_or(&self.inner.base);
        join(root, &link.url)
            .ok_or_else(|| FileError::Refused(format!("the file server's link {:?} is not a path", link.url)))
    }
}

/// The bytes of a file as they arrive.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + Sync>>;

/// `root` + an absolute path with its query (`/api/v1/files/x?exp=..&sig=..`), keeping a path
/// prefix of `root` (a hub behind a proxy at `https://example.com/hub`).
fn join(root: &Url, path_and_query: &str) -> Option<Url> {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    if !path.starts_with('/') {
        return None;
    }
    let mut url = root.clone();
    url.set_path(&format!("{}{path}", root.path().trim_end_matches('/')));
    url.set_query((!query.is_empty()).then_some(query));
    Some(url)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_keep_the_public_url_s_prefix_and_the_signature() {
        let root = Url::parse("https://hub.example/support/").unwrap();
        let url = join(&root, "/api/v1/files/abc?exp=1&sig=xyz").unwrap();
        assert_eq!(url.as_str(), "https://hub.example/support/api/v1/files/abc?exp=1&sig=xyz");
        let bare = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(join(&bare, "/api/v1/files/abc").unwrap().as_str(), "http://127.0.0.1:8080/api/v1/files/abc");
        assert!(join(&bare, "https://elsewhere.example/x").is_none());
    }
}
