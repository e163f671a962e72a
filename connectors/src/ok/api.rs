//! The one HTTP client every OK call goes through: `GET` or `POST <api_url>graph/...` with the
//! group's `access_token` as a query parameter; every POST carries JSON with exactly
//! `Content-Type: application/json;charset=utf-8` (OK requires it). An error is OK's
//! `{"error_code", "error_msg"}` (or an `invocation-error` header), whatever the HTTP status;
//! network errors, 5xx and unreadable answers are [`CallError::Transport`]. Also the uploads to
//! the URL `fileUploadUrl` gives.
//!
//! The account's health follows the answers: an error that refuses the account itself (an
//! expired or revoked token) reports it unhealthy, the next call that works reports it healthy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde_json::Value;
use tracing::{error, info};
use url::Url;
use uuid::Uuid;

use super::mapping::{ErrorCodes, Refusal, classify};
use crate::channel::AccountHealth;
use crate::files::ByteStream;

/// The `Content-Type` of every POST, exactly as OK asks for it.
pub const JSON_UTF8: &str = "application/json;charset=utf-8";

/// OK's `error_code` and `error_msg` in a body, if it is an error.
fn error_of(bytes: &[u8]) -> Option<(i64, String)> {
    #[derive(serde::Deserialize)]
    struct Error {
        #[serde(default)]
        error_code: Option<Value>,
        #[serde(default)]
        error_msg: Option<String>,
    }
    let e: Error = serde_json::from_slice(bytes).ok()?;
    let code = e.error_code.as_ref().and_then(|c| c.as_i64().or_else(|| c.as_str()?.trim().parse().ok()))?;
    Some((code, e.error_msg.unwrap_or_default()))
}

fn parse(what: &str, bytes: &[u8]) -> Result<Value, CallError> {
    serde_json::from_slice(bytes)
        .map_err(|e| CallError::Transport(format!("unreadable answer from OK to {what} ({e}): {}", snippet(bytes))))
}

/// Why a call got no answer to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// OK's error answer.
    #[error("OK error {code}: {message}")]
    Ok { code: i64, message: String },
    /// HTTP 429: wait (the `Retry-After`, if any).
    #[error("OK answered 429 Too Many Requests")]
    TooMany(Option<Duration>),
    /// No answer to act on (network, HTTP status, unreadable body): worth trying again.
    #[error("{0}")]
    Transport(String),
}

/// OK's Graph API for one group token. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `https://api.ok.ru/` (or a fake's URL).
    base: Url,
    token: String,
    codes: ErrorCodes,
    health: AccountHealth,
    /// Whether the account is reported unhealthy now.
    refused: AtomicBool,
    account: Uuid,
}

fn transport(e: reqwest::Error) -> CallError {
    CallError::Transport(format!("network error: {}", e.without_url()))
}

fn snippet(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
}

impl Api {
    pub fn new(base: Url, token: String, codes: ErrorCodes, health: AccountHealth, account: Uuid) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a plain HTTP client builds");
        Api { inner: Arc::new(Inner { http, base, token, codes, health, refused: AtomicBool::new(false), account }) }
    }

    pub fn codes(&self) -> &ErrorCodes {
        &self.inner.codes
    }

    /// `<base>graph/<segments...>?access_token=..&<query>`.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Url, CallError> {
        let mut url = self.inner.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| CallError::Transport("the OK API URL cannot take a path".into()))?;
            path.pop_if_empty().push("graph");
            for s in segments {
                path.push(s);
            }
        }
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("access_token", &self.inner.token);
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// `GET graph/<segments>` with `query`; the answer's JSON.
    pub async fn get(
        &self,
        what: &str,
        segments: &[&str],
        query: &[(&str, String)],
        timeout: Option<Duration>,
    ) -> Result<Value, CallError> {
        let bytes = self.get_bytes(what, segments, query, timeout).await?;
        parse(what, &bytes)
    }

    /// `GET graph/<segments>` with `query`; the answer's exact bytes, once it is known to be no
    /// error (the long poll keeps each update's bytes).
    pub async fn get_bytes(
        &self,
        what: &str,
        segments: &[&str],
        query: &[(&str, String)],
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, CallError> {
        let mut request = self.inner.http.get(self.url(segments, query)?);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        self.answer(what, request.send().await.map_err(transport)?).await
    }

    /// `POST graph/<segments>` with `query` and the JSON `body`; the answer's JSON.
    pub async fn post(
        &self,
        what: &str,
        segments: &[&str],
        query: &[(&str, String)],
        body: &Value,
    ) -> Result<Value, CallError> {
        let request = self
            .inner
            .http
            .post(self.url(segments, query)?)
            .header(CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8))
            .body(serde_json::to_vec(body).expect("JSON"));
        let bytes = self.answer(what, request.send().await.map_err(transport)?).await?;
        parse(what, &bytes)
    }

    /// The body of an answer that is no error (OK's error fields, or its header, or a status).
    async fn answer(&self, what: &str, response: reqwest::Response) -> Result<Vec<u8>, CallError> {
        let status = response.status();
        let header_code = response
            .headers()
            .get("invocation-error")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok());
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await.map_err(transport)?;
        let error = error_of(&bytes);
        if let Some((code, message)) = error.or(header_code.map(|c| (c, String::new()))) {
            self.observe_error(what, code, &message);
            return Err(CallError::Ok { code, message });
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(CallError::TooMany(retry_after));
        }
        if !status.is_success() {
            return Err(CallError::Transport(format!("OK answered {what} with HTTP {status}: {}", snippet(&bytes))));
        }
        if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err() {
            return Err(CallError::Transport(format!("unreadable answer from OK to {what}: {}", snippet(&bytes))));
        }
        self.observe_success();
        Ok(bytes.to_vec())
    }

    fn observe_error(&self, what: &str, code: i64, message: &str) {
        let account = self.inner.account;
        match classify(code, message, &self.inner.codes) {
            Refusal::Unhealthy(reason) => {
                if !self.inner.refused.swap(true, Ordering::SeqCst) {
                    error!(%account, call = what, code, "the OK account is refused: {reason}; messages wait until it is fixed");
                }
                self.inner.health.unhealthy(reason);
            }
            Refusal::RateLimited(_) => {
                metrics::counter!("switchboard_ok_rate_limited_total", "account" => account.to_string(), "code" => code.to_string())
                    .increment(1);
            }
            Refusal::Transient(_) | Refusal::Permanent(_) => {}
        }
    }

    fn observe_success(&self) {
        if self.inner.refused.load(Ordering::Relaxed) && self.inner.refused.swap(false, Ordering::SeqCst) {
            info!(account = %self.inner.account, "OK accepts the account again");
            self.inner.health.healthy();
        }
    }

    /// POSTs a file to an upload URL (from `fileUploadUrl`) as the multipart field `data`,
    /// streamed, and returns OK's JSON answer (`{}` when it answers nothing).
    pub async fn upload(
        &self,
        url: &str,
        name: &str,
        mime: &str,
        size: u64,
        body: ByteStream,
    ) -> Result<Value, CallError> {
        let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(body), size)
            .file_name(name.to_owned())
            .mime_str(mime)
            .map_err(|e| CallError::Transport(format!("cannot describe the file {name:?} as {mime}: {e}")))?;
        let form = reqwest::multipart::Form::new().part("data", part);
        let response = self
            .inner
            .http
            .post(url)
            .multipart(form)
            .timeout(Duration::from_secs(900))
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if let Some((code, message)) = error_of(&bytes) {
            return Err(CallError::Ok { code, message });
        }
        if !status.is_success() {
            return Err(CallError::Transport(format!(
                "OK's upload server answered HTTP {status}: {}",
                snippet(&bytes)
            )));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            CallError::Transport(format!("unreadable answer from OK's upload server ({e}): {}", snippet(&bytes)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_the_token_and_keep_ids_whole() {
        let health = AccountHealth::detached(Uuid::nil(), schema::domain::Channel::Ok);
        let api = Api::new(
            Url::parse("https://api.ok.ru/").unwrap(),
            "tkn1:a+b".into(),
            ErrorCodes::default(),
            health,
            Uuid::nil(),
        );
        let url = api.url(&["me", "messages", "chat:C4a1b2"], &[]).unwrap();
        assert_eq!(url.as_str(), "https://api.ok.ru/graph/me/messages/chat:C4a1b2?access_token=tkn1%3Aa%2Bb");
        let url = api.url(&["chat:C4", "answer"], &[("callbackId", "cb 1".into())]).unwrap();
        assert_eq!(url.as_str(), "https://api.ok.ru/graph/chat:C4/answer?access_token=tkn1%3Aa%2Bb&callbackId=cb+1");
        let prefixed = Api::new(
            Url::parse("http://127.0.0.1:9/ok").unwrap(),
            "t".into(),
            ErrorCodes::default(),
            AccountHealth::detached(Uuid::nil(), schema::domain::Channel::Ok),
            Uuid::nil(),
        );
        assert_eq!(prefixed.url(&["me", "subscribe"], &[]).unwrap().path(), "/ok/graph/me/subscribe");
    }
}
