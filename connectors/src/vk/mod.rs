//! The VK connector: a community bot on VK's API (`docs/platforms.md#vk`, §5).
//!
//! - Account credentials (`accounts.credentials`): `access_token`, the community's token (with
//!   the `messages`, `photos`, `docs` and, for `groups.setLongPollSettings`, `manage` rights);
//!   `callback_secret` in callback mode.
//! - Account settings (`accounts.settings`): `group_id` (the community's id, required),
//!   `mode` (`long_poll`, the default, or `callback`), `api_url` (default
//!   `https://api.vk.com/`; tests point it at the fake), `api_version` (default 5.199),
//!   `wait_s` (the long poll's hold, default 25, at most 90), `confirmation` (callback mode: the
//!   string VK's confirmation request expects; when absent it is read from VK with
//!   `groups.getCallbackConfirmationCode` each time), `one_time_keyboards` (default true).
//!   `limits.rate` may go up to the 72 messages/s some communities get.
//!
//! Inbound: [`receive`] (the Bots Long Poll, or the runtime's webhook route for the Callback API,
//! where `secret` is checked before anything is stored). Outbound: [`send`], with a `random_id`
//! VK deduplicates on. Every call: [`api`]. Wire format to domain and back: [`mapping`].

pub mod api;
pub mod mapping;
pub mod receive;
pub mod send;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use url::Url;
use uuid::Uuid;

use crate::channel::{
    AccountContext, ChannelAccount, ChannelModule, OpenError, Webhook, WebhookError, WebhookReply, WebhookRequest,
};
use crate::ingest::UpdateError;
use crate::platform::Outbound;
use api::Api;
use mapping::API_VERSION;
use receive::Receiver;
use schema::domain::Channel;
use send::VkOutbound;

/// VK's API base URL.
pub const API_URL: &str = "https://api.vk.com/";
/// The default long-poll hold, in seconds.
const WAIT_S: u32 = 25;
/// The most messages a second VK lets a community send (the seed: "3, up to 72 in some cases").
pub const RATE_MAX: f64 = 72.0;

/// What `accounts.credentials` holds for a VK account.
#[derive(Clone, Deserialize)]
pub struct Credentials {
    pub access_token: String,
    #[serde(default)]
    pub callback_secret: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { access_token: ***, callback_secret: *** }")
    }
}

/// How updates arrive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The Bots Long Poll API: the leader asks.
    #[default]
    LongPoll,
    /// The Callback API: VK posts to the webhook route.
    Callback,
}

/// What `accounts.settings` holds for a VK account (other keys belong to the runtime).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub group_id: Option<i64>,
    pub mode: Mode,
    pub api_url: Option<String>,
    pub api_version: Option<String>,
    pub wait_s: Option<u32>,
    pub confirmation: Option<String>,
    pub one_time_keyboards: Option<bool>,
}

/// A configured VK account.
#[derive(Debug, Clone)]
pub struct VkAccount {
    pub credentials: Credentials,
    pub settings: Settings,
    pub group_id: i64,
    api_url: Url,
}

impl VkAccount {
    /// Reads and checks the account's credentials and settings (no call to VK).
    pub fn from_json(credentials: &Value, settings: &Value) -> Result<Self, OpenError> {
        let credentials: Credentials = serde_json::from_value(credentials.clone()).map_err(|e| {
            OpenError::Credentials(format!(
                "a VK account must hold an `access_token` string (the community's token): {e}"
            ))
        })?;
        if credentials.access_token.trim().is_empty() {
            return Err(OpenError::Credentials("access_token is empty".into()));
        }
        // the runtime's own keys (`limits`, `webhook_url`) are not the module's business
        let mut settings = settings.clone();
        if let Some(map) = settings.as_object_mut() {
            map.remove("limits");
            map.remove("webhook_url");
        }
        let settings: Settings = serde_json::from_value(settings).map_err(|e| OpenError::Settings(e.to_string()))?;
        let group_id = settings.group_id.filter(|g| *g > 0).ok_or_else(|| {
            OpenError::Settings("group_id must be the community's id (a positive number, as in club231000555)".into())
        })?;
        let api_url = settings.api_url.as_deref().unwrap_or(API_URL);
        let api_url = Url::parse(api_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| OpenError::Settings(format!("api_url {api_url:?} is not an http(s) URL")))?;
        if let Some(wait) = settings.wait_s
            && !(1..=90).contains(&wait)
        {
            return Err(OpenError::Settings(format!("wait_s {wait} must be 1 to 90 seconds (VK's long-poll limit)")));
        }
        if settings.mode == Mode::Callback {
            let secret = credentials.callback_secret.as_deref().unwrap_or_default();
            let valid =
                (1..=50).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !valid {
                return Err(OpenError::Credentials(
                    "callback mode needs callback_secret: 1-50 letters, digits or '-' (the secret key of the community's \
                     Callback API server)"
                        .into(),
                ));
            }
        }
        Ok(VkAccount { credentials, settings, group_id, api_url })
    }

    pub fn api_url(&self) -> &Url {
        &self.api_url
    }

    pub fn api_version(&self) -> String {
        self.settings.api_version.clone().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| API_VERSION.to_owned())
    }

    pub fn wait_s(&self) -> u32 {
        self.settings.wait_s.unwrap_or(WAIT_S)
    }
}

/// The VK channel module.
pub struct Module;

#[async_trait]
impl ChannelModule for Module {
    fn channel(&self) -> Channel {
        Channel::Vk
    }

    async fn open(&self, ctx: AccountContext) -> Result<Arc<dyn ChannelAccount>, OpenError> {
        let config = VkAccount::from_json(&ctx.credentials, &ctx.settings)?;
        let rate = ctx.limits.rate.per_sec();
        if rate > RATE_MAX {
            return Err(OpenError::Settings(format!(
                "limits.rate is {rate} messages/s; VK lets a community send at most {RATE_MAX} (and 3 unless VK raised it)"
            )));
        }
        let api = Api::new(
            config.api_url().clone(),
            config.credentials.access_token.clone(),
            config.api_version(),
            ctx.health.clone(),
            ctx.account.id,
        );
        let receiver = Arc::new(Receiver::new(
            api.clone(),
            ctx.ingest.clone(),
            ctx.files.clone(),
            ctx.pool.clone(),
            config.group_id,
            ctx.limits.max_download_bytes,
        ));
        let webhook = match config.settings.mode {
            Mode::LongPoll => None,
            Mode::Callback => {
                let url = ctx.webhook_url().ok();
                Some((
                    Arc::new(VkWebhook {
                        secret: config.credentials.callback_secret.clone().unwrap_or_default(),
                        confirmation: config.settings.confirmation.clone(),
                        receiver: receiver.clone(),
                    }),
                    url,
                ))
            }
        };
        let outbound = Arc::new(VkOutbound::new(
            api,
            ctx.pool.clone(),
            ctx.account.id,
            config.settings.one_time_keyboards.unwrap_or(true),
        ));
        Ok(Arc::new(VkChannel {
            webhook_url: webhook.as_ref().and_then(|(_, url)| url.clone()),
            webhook: webhook.map(|(hook, _)| hook),
            config,
            receiver,
            outbound,
            account_id: ctx.account.id,
        }))
    }
}

/// An opened VK account.
struct VkChannel {
    config: VkAccount,
    receiver: Arc<Receiver>,
    outbound: Arc<VkOutbound>,
    webhook: Option<Arc<VkWebhook>>,
    /// Callback mode: the URL the community's Callback API server must post to.
    webhook_url: Option<Url>,
    account_id: Uuid,
}

#[async_trait]
impl ChannelAccount for VkChannel {
    fn outbound(&self) -> Arc<dyn Outbound> {
        self.outbound.clone()
    }

    fn webhook(&self) -> Option<Arc<dyn Webhook>> {
        self.webhook.clone().map(|w| w as Arc<dyn Webhook>)
    }

    fn describe(&self) -> String {
        match self.config.settings.mode {
            Mode::LongPoll => format!("group {} by long poll", self.config.group_id),
            Mode::Callback => format!(
                "group {} by Callback API at {}",
                self.config.group_id,
                self.webhook_url.as_ref().map(Url::as_str).unwrap_or("<connectors.public_url not set>")
            ),
        }
    }

    async fn replay(&self, payload: &[u8]) -> Result<(), UpdateError> {
        self.receiver.handle_raw(payload).await
    }

    /// Long polling; in callback mode, a check that VK takes the token (updates then arrive
    /// through the webhook route while this process leads).
    async fn lead(&self, term: CancellationToken) {
        match self.config.settings.mode {
            Mode::LongPoll => receive::poll(&self.receiver, self.config.wait_s(), &term).await,
            Mode::Callback => {
                let checked =
                    self.receiver.api().call("groups.getById", &[("group_id", self.config.group_id.to_string())]).await;
                match checked {
                    Ok(_) => info!(
                        account = %self.account_id,
                        url = ?self.webhook_url.as_ref().map(Url::as_str),
                        "VK Callback API: this process answers the community's callbacks"
                    ),
                    Err(e) => warn!(account = %self.account_id, error = %e, "groups.getById failed"),
                }
                term.cancelled().await;
            }
        }
    }
}

/// The Callback API: the `secret` in the body, then one update per request, answered `ok`.
struct VkWebhook {
    secret: String,
    confirmation: Option<String>,
    receiver: Arc<Receiver>,
}

/// The fields of a callback the route needs before anything else.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    group_id: Option<i64>,
}

/// The body without its `secret`, so that a parked update does not keep it.
fn without_secret(raw: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(mut map)) if map.contains_key("secret") => {
            map.remove("secret");
            serde_json::to_vec(&Value::Object(map)).unwrap_or_else(|_| raw.to_vec())
        }
        _ => raw.to_vec(),
    }
}

#[async_trait]
impl Webhook for VkWebhook {
    /// The `secret` VK puts in every callback's body, compared in constant time. Only the
    /// confirmation request may come without it (VK's documents show it both ways; it stores
    /// nothing).
    fn verify(&self, request: &WebhookRequest) -> Result<(), WebhookError> {
        let head: Head = serde_json::from_slice(&request.body)
            .map_err(|_| WebhookError::Unauthorized("not a VK callback: no type and secret to check".into()))?;
        match head.secret.as_deref() {
            None if head.kind == "confirmation" => Ok(()),
            None => Err(WebhookError::Unauthorized("a VK callback without its secret".into())),
            Some(given) if crate::channel::same_secret(given.as_bytes(), self.secret.as_bytes()) => Ok(()),
            Some(_) => Err(WebhookError::Unauthorized("a VK callback with a wrong secret".into())),
        }
    }

    async fn handle(&self, request: &WebhookRequest) -> Result<WebhookReply, WebhookError> {
        let head: Head = serde_json::from_slice(&request.body)
            .map_err(|e| WebhookError::BadRequest(format!("not a VK callback: {e}")))?;
        let group_id = self.receiver.group_id();
        if head.group_id.is_some_and(|g| g != group_id) {
            return Err(WebhookError::BadRequest(format!(
                "a callback for community {}, and this account is community {group_id}",
                head.group_id.unwrap_or_default()
            )));
        }
        if head.kind == "confirmation" {
            let code = match &self.confirmation {
                Some(code) => code.clone(),
                None => {
                    let answer = self
                        .receiver
                        .api()
                        .call("groups.getCallbackConfirmationCode", &[("group_id", group_id.to_string())])
                        .await
                        .map_err(|e| WebhookError::Unavailable(format!("cannot read the confirmation code: {e}")))?;
                    answer.get("code").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| {
                        WebhookError::Unavailable(format!("groups.getCallbackConfirmationCode answered {answer}"))
                    })?
                }
            };
            info!(group_id, "VK Callback API server confirmed");
            return Ok(WebhookReply::Text(code));
        }
        let raw = without_secret(&request.body);
        match self.receiver.accept(&raw).await {
            Ok(()) => Ok(WebhookReply::Text("ok".into())),
            Err(e) => Err(WebhookError::Unavailable(format!("not stored; deliver again: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_are_checked_with_messages_that_say_what_to_do() {
        let ok =
            VkAccount::from_json(&json!({"access_token": "vk1.a.secret"}), &json!({"group_id": 231000555})).unwrap();
        assert_eq!(ok.api_url().as_str(), API_URL);
        assert_eq!((ok.group_id, ok.settings.mode, ok.wait_s()), (231000555, Mode::LongPoll, 25));
        assert_eq!(ok.api_version(), "5.199");
        assert!(!format!("{ok:?}").contains("vk1.a.secret"), "the token never prints");

        let err = VkAccount::from_json(&json!({}), &json!({"group_id": 1})).unwrap_err();
        assert!(matches!(&err, OpenError::Credentials(m) if m.contains("access_token")), "{err}");
        let err = VkAccount::from_json(&json!({"access_token": "t"}), &json!({})).unwrap_err();
        assert!(err.to_string().contains("group_id"), "{err}");
        let err =
            VkAccount::from_json(&json!({"access_token": "t"}), &json!({"group_id": 1, "wait_s": 120})).unwrap_err();
        assert!(err.to_string().contains("wait_s"), "{err}");
        let err = VkAccount::from_json(&json!({"access_token": "t"}), &json!({"group_id": 1, "mode": "callback"}))
            .unwrap_err();
        assert!(err.to_string().contains("callback_secret"), "{err}");
        let cb = VkAccount::from_json(
            &json!({"access_token": "t", "callback_secret": "cb-Secret-17"}),
            &json!({"group_id": 1, "mode": "callback", "confirmation": "a1b2c3d4", "limits": {"rate": {"count": 72, "per_ms": 1000}},
                "webhook_url": "https://hub.example/vk"}),
        )
        .unwrap();
        assert_eq!(cb.settings.mode, Mode::Callback);
        let err = VkAccount::from_json(&json!({"access_token": "t"}), &json!({"group_id": 1, "mode": "webhook"}))
            .unwrap_err();
        assert!(err.to_string().contains("expected `long_poll` or `callback`"), "{err}");
    }

    #[test]
    fn a_parked_callback_keeps_no_secret() {
        let raw = br#"{"type":"message_new","secret":"cb-Secret-17","object":{"message":{"id":1}}}"#;
        let kept = without_secret(raw);
        assert!(!String::from_utf8_lossy(&kept).contains("cb-Secret-17"));
        assert_eq!(serde_json::from_slice::<Value>(&kept).unwrap()["object"]["message"]["id"], 1);
        assert_eq!(without_secret(b"{not json"), b"{not json");
    }
}
