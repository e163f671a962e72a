//! The one HTTP client every VK call goes through: `POST <api_url>method/<name>` with form
//! parameters, the community's `access_token` and the API version `v`; every answer is HTTP 200
//! with `{"response": ...}` or `{"error": {"error_code", "error_msg"}}`. Also the long-poll
//! check (`{server}?act=a_check&key&ts&wait`) and the multipart uploads to VK's upload servers.
//!
//! The account's health follows the answers: an error that refuses the account itself (5: the
//! token; 14: a captcha; 912: bot features off) reports it unhealthy, the next call that works
//! reports it healthy again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use tracing::{error, info};
use url::Url;
use uuid::Uuid;

use super::mapping::{Refusal, classify};
use crate::channel::AccountHealth;
use crate::files::ByteStream;

/// Why a call got no `response`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// VK's `{"error": ...}`.
    #[error("VK error {code}: {message}")]
    Vk { code: i64, message: String },
    /// No answer to act on (network, HTTP status, unreadable body): worth trying again.
    #[error("{0}")]
    Transport(String),
}

/// VK's API for one community token. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `https://api.vk.com/` (or a fake's URL); methods are under `method/`.
    base: Url,
    token: String,
    version: String,
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
    pub fn new(base: Url, token: String, version: String, health: AccountHealth, account: Uuid) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a plain HTTP client builds");
        Api { inner: Arc::new(Inner { http, base, token, version, health, refused: AtomicBool::new(false), account }) }
    }

    pub fn version(&self) -> &str {
        &self.inner.version
    }

    fn method_url(&self, method: &str) -> Result<Url, CallError> {
        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .map_err(|_| CallError::Transport("the VK API URL cannot take a path".into()))?
            .pop_if_empty()
            .push("method")
            .push(method);
        Ok(url)
    }

    /// Calls `method` with `params` (the token and `v` added) and returns its `response`.
    pub async fn call(&self, method: &str, params: &[(&str, String)]) -> Result<Value, CallError> {
        let mut form: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        form.push(("access_token", &self.inner.token));
        form.push(("v", &self.inner.version));
        let response = self.inner.http.post(self.method_url(method)?).form(&form).send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            return Err(CallError::Transport(format!("VK answered HTTP {status}: {}", snippet(&bytes))));
        }
        let mut answer: Value = serde_json::from_slice(&bytes).map_err(|e| {
            CallError::Transport(format!("unreadable answer from VK to {method} ({e}): {}", snippet(&bytes)))
        })?;
        if let Some(error) = answer.get("error") {
            let code = error.get("error_code").and_then(Value::as_i64).unwrap_or(0);
            let message = error.get("error_msg").and_then(Value::as_str).unwrap_or_default().to_owned();
            self.observe_error(method, code, &message);
            return Err(CallError::Vk { code, message });
        }
        match answer.get_mut("response") {
            Some(response) => {
                self.observe_success();
                Ok(response.take())
            }
            None => Err(CallError::Transport(format!("VK answered {method} with neither response nor error"))),
        }
    }

    fn observe_error(&self, method: &str, code: i64, message: &str) {
        let account = self.inner.account;
        match classify(code, message) {
            Refusal::Unhealthy(reason) => {
                if !self.inner.refused.swap(true, Ordering::SeqCst) {
                    error!(%account, method, code, "the VK account is refused: {reason}; messages wait until it is fixed");
                }
                self.inner.health.unhealthy(reason);
            }
            Refusal::RateLimited(_) => {
                metrics::counter!("switchboard_vk_rate_limited_total", "account" => account.to_string(), "code" => code.to_string())
                    .increment(1);
            }
            Refusal::Transient(_) | Refusal::Permanent(_) => {}
        }
    }

    fn observe_success(&self) {
        if self.inner.refused.load(Ordering::Relaxed) && self.inner.refused.swap(false, Ordering::SeqCst) {
            info!(account = %self.inner.account, "VK accepts the account again");
            self.inner.health.healthy();
        }
    }

    /// One long-poll check: `GET {server}?act=a_check&key&ts&wait`, held by VK up to `wait`
    /// seconds; the raw body.
    pub async fn long_poll(&self, server: &str, key: &str, ts: &str, wait: u32) -> Result<Vec<u8>, CallError> {
        let server = if server.contains("://") { server.to_owned() } else { format!("https://{server}") };
        let mut url = Url::parse(&server)
            .map_err(|e| CallError::Transport(format!("the long-poll server {server:?} is not a URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("act", "a_check")
            .append_pair("key", key)
            .append_pair("ts", ts)
            .append_pair("wait", &wait.to_string());
        let response = self
            .inner
            .http
            .get(url)
            .timeout(Duration::from_secs(u64::from(wait) + 20))
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            return Err(CallError::Transport(format!(
                "the long-poll server answered HTTP {status}: {}",
                snippet(&bytes)
            )));
        }
        Ok(bytes.to_vec())
    }

    /// POSTs a file to an upload server as the multipart field `field`, streamed, and returns
    /// the server's JSON answer.
    pub async fn upload(
        &self,
        url: &str,
        field: &'static str,
        name: &str,
        mime: &str,
        size: u64,
        body: ByteStream,
    ) -> Result<Value, CallError> {
        let plausible = mime.split_once('/').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
            && !mime.contains(char::is_whitespace);
        let mime = if plausible { mime } else { "application/octet-stream" };
        let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(body), size)
            .file_name(name.to_owned())
            .mime_str(mime)
            .map_err(|e| CallError::Transport(format!("cannot describe the file {name:?} as {mime}: {e}")))?;
        let form = reqwest::multipart::Form::new().part(field, part);
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
        if !status.is_success() {
            return Err(CallError::Transport(format!(
                "VK's upload server answered HTTP {status}: {}",
                snippet(&bytes)
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            CallError::Transport(format!("unreadable answer from VK's upload server ({e}): {}", snippet(&bytes)))
        })
    }
}
