//! The Viber side of outbox work, and the one HTTP client every Viber call goes through.
//!
//! Every call is a POST of JSON to `<api_url><method>` with `X-Viber-Auth-Token`; every answer
//! is HTTP 200 with a `status` (0 = ok). `send_message` returns the `message_token`, the
//! platform id of the new message (receipts name it). Files go as the file server's signed
//! links, which Viber fetches itself. There is no edit or delete.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Notify;
use tracing::{error, warn};
use url::Url;
use uuid::Uuid;

use super::mapping::{AUTH_HEADER, Defaults, FileKind, Refusal, Token, classify, file_kind, send_body};
use crate::channel::AccountHealth;
use crate::platform::{FileDelivery, Outbound, Part, SendError};

/// The first wait after a status 12; it doubles with each one in a row to the same chat.
const RATE_LIMITED_FIRST: Duration = Duration::from_secs(2);
/// The longest wait after status 12 (Viber's per-customer rule counts an hour).
const RATE_LIMITED_AT_MOST: Duration = Duration::from_secs(600);

/// What Viber answered (HTTP 200 with a JSON body).
#[derive(Debug, Clone, Deserialize)]
pub struct Answer {
    pub status: i64,
    #[serde(default)]
    pub status_message: String,
    #[serde(default)]
    pub message_token: Option<Token>,
    /// Every field, for the calls that need more (`event_types`, `user`...).
    #[serde(skip)]
    pub body: Value,
}

/// Why a call got no answer to act on: worth trying again.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CallError(pub String);

/// Viber's REST Bot API for one bot. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Url,
    token: String,
}

impl Api {
    /// `base` is `https://chatapi.viber.com/pa/` (or a fake's URL).
    pub fn new(base: Url, token: String) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a plain HTTP client builds");
        Api { http, base, token }
    }

    /// POSTs `body` to `method` and reads the answer.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Answer, CallError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| CallError("the Viber API URL cannot take a path".into()))?
            .pop_if_empty()
            .push(method);
        let response = self
            .http
            .post(url)
            .header(AUTH_HEADER, &self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| CallError(format!("network error: {}", e.without_url())))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| CallError(format!("network error: {}", e.without_url())))?;
        if !status.is_success() {
            let said = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
            return Err(CallError(format!("Viber answered HTTP {status}: {said}")));
        }
        let mut answer: Answer = serde_json::from_slice(&bytes).map_err(|e| {
            CallError(format!(
                "unreadable answer from Viber ({e}): {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))
        })?;
        answer.body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(answer)
    }
}

/// Sends outbox work through one bot.
pub struct ViberOutbound {
    api: Api,
    defaults: Defaults,
    account_id: Uuid,
    /// Reported unhealthy when Viber refuses the bot itself (a bad token, a blocked bot).
    pub(super) health: AccountHealth,
    /// Status 12 answers in a row per chat (std mutex: a lookup, never held across an await).
    rate_limited: Mutex<HashMap<String, u32>>,
    /// Rung on status 10 (webhookNotSet): the leader registers the webhook again.
    pub(super) reregister: std::sync::Arc<Notify>,
}

impl ViberOutbound {
    pub fn new(
        api: Api,
        defaults: Defaults,
        account_id: Uuid,
        health: AccountHealth,
        reregister: std::sync::Arc<Notify>,
    ) -> Self {
        ViberOutbound { api, defaults, account_id, health, rate_limited: Mutex::new(HashMap::new()), reregister }
    }

    fn rate_limited(&self, chat: &str) -> Duration {
        let mut counts = self.rate_limited.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() > 10_000 {
            counts.clear();
        }
        let n = counts.entry(chat.to_owned()).or_default();
        *n += 1;
        RATE_LIMITED_FIRST.saturating_mul(1 << (*n - 1).min(10)).min(RATE_LIMITED_AT_MOST)
    }

    fn succeeded(&self, chat: &str) {
        let mut counts = self.rate_limited.lock().unwrap_or_else(|e| e.into_inner());
        if !counts.is_empty() {
            counts.remove(chat);
        }
    }
}

#[async_trait]
impl Outbound for ViberOutbound {
    fn file_delivery(&self) -> FileDelivery {
        FileDelivery::Link
    }

    fn takes_caption(&self, mime: &str) -> bool {
        file_kind(mime) != FileKind::File
    }

    async fn send(&self, chat: &str, part: Part) -> Result<String, SendError> {
        let body = send_body(chat, &part, &self.defaults)?;
        let answer = self.api.call("send_message", &body).await.map_err(|e| SendError::Transient(e.0))?;
        if answer.status == 0 {
            self.succeeded(chat);
            return match answer.message_token {
                Some(token) => Ok(token.0),
                None => Err(SendError::Transient("Viber answered ok without a message_token".into())),
            };
        }
        match classify(answer.status, &answer.status_message) {
            Refusal::RateLimited => {
                let wait = self.rate_limited(chat);
                warn!(account = %self.account_id, chat, ?wait, "Viber status 12 (too many requests): this chat waits");
                Err(SendError::RetryAfter(wait))
            }
            Refusal::Transient(reason) => {
                if answer.status == 10 {
                    self.reregister.notify_one();
                }
                Err(SendError::Transient(reason))
            }
            Refusal::Permanent { reason, unhealthy } => {
                if unhealthy {
                    error!(
                        account = %self.account_id,
                        status = answer.status,
                        status_message = %answer.status_message,
                        "the Viber account is refused: {reason}; nothing can be sent until it is fixed"
                    );
                    self.health.unhealthy(reason.clone());
                }
                Err(SendError::Permanent(reason))
            }
        }
    }

    async fn edit(&self, _chat: &str, _external_id: &str, _text: &str, _caption: bool) -> Result<(), SendError> {
        Err(SendError::Permanent("Viber cannot edit or delete sent messages".into()))
    }

    async fn delete(&self, _chat: &str, _external_id: &str) -> Result<(), SendError> {
        Err(SendError::Permanent("Viber cannot edit or delete sent messages".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_12_waits_longer_each_time_in_a_row_per_chat() {
        let outbound = ViberOutbound::new(
            Api::new(Url::parse("http://127.0.0.1:9/pa/").unwrap(), "t".into()),
            Defaults { sender_name: "x".into(), min_api_version: 1 },
            Uuid::nil(),
            AccountHealth::detached(Uuid::nil(), schema::domain::Channel::Viber),
            Default::default(),
        );
        assert_eq!(outbound.rate_limited("a"), Duration::from_secs(2));
        assert_eq!(outbound.rate_limited("a"), Duration::from_secs(4));
        assert_eq!(outbound.rate_limited("b"), Duration::from_secs(2), "per chat");
        for _ in 0..20 {
            outbound.rate_limited("a");
        }
        assert_eq!(outbound.rate_limited("a"), RATE_LIMITED_AT_MOST);
        outbound.succeeded("a");
        assert_eq!(outbound.rate_limited("a"), Duration::from_secs(2), "a success starts over");
    }
}
