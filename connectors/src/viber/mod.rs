//! The Viber connector, on Viber's REST Bot API (`docs/platforms.md#viber`, §4).
//!
//! - Account credentials (`accounts.credentials`): `auth_token`, the bot's token.
//! - Account settings (`accounts.settings`): `api_url` (default
//!   `https://chatapi.viber.com/pa/`; tests point it at the fake), `webhook_url` (default:
//!   `connectors.public_url` + `/api/v1/connectors/<account>/viber`), `sender_name` (the name
//!   customers see when an agent has none, at most 28 characters; default the account's name),
//!   `welcome` (the text answered to `conversation_started`), `min_api_version` (default 1).
//!
//! Inbound arrives by webhook only: the leader registers it with `set_webhook` (Viber checks
//! the URL with an `event: webhook` callback before answering, which the route answers 200 as
//! this process already leads), and the runtime's route calls [`Webhook::verify`] (the
//! `X-Viber-Content-Signature` HMAC of the raw body) and then [`receive`]. Outbound: [`send`].
//! Wire format to domain and back: [`mapping`].

pub mod mapping;
pub mod receive;
pub mod send;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use url::Url;
use uuid::Uuid;

use crate::channel::{
    AccountContext, ChannelAccount, ChannelModule, OpenError, Webhook, WebhookError, WebhookReply, WebhookRequest,
};
use crate::platform::Outbound;
use mapping::{Defaults, EVENT_TYPES, SENDER_NAME_MAX, SIGNATURE_HEADER, cut, signature_matches};
use receive::Receiver;
use schema::domain::Channel;
use send::{Api, ViberOutbound};

/// Viber's API base URL.
pub const API_URL: &str = "https://chatapi.viber.com/pa/";
/// The longest pause between two `set_webhook` tries.
const REGISTER_AT_MOST: Duration = Duration::from_secs(60);
/// The longest welcome message (Viber's text limit).
const WELCOME_MAX: usize = 7000;

/// What `accounts.credentials` holds for a Viber account.
#[derive(Clone, Deserialize)]
pub struct Credentials {
    pub auth_token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { auth_token: *** }")
    }
}

/// What `accounts.settings` holds for a Viber account (other keys belong to the runtime).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub api_url: Option<String>,
    pub webhook_url: Option<String>,
    pub sender_name: Option<String>,
    pub welcome: Option<String>,
    pub min_api_version: Option<u32>,
}

/// A configured Viber account.
#[derive(Debug, Clone)]
pub struct ViberAccount {
    pub credentials: Credentials,
    pub settings: Settings,
    api_url: Url,
    /// At most 28 characters.
    sender_name: String,
}

impl ViberAccount {
    /// Reads and checks the account's credentials and settings; `account_name` is the sender
    /// name when the settings give none.
    pub fn from_json(
        credentials: &serde_json::Value,
        settings: &serde_json::Value,
        account_name: &str,
    ) -> Result<Self, OpenError> {
        let credentials: Credentials = serde_json::from_value(credentials.clone()).map_err(|e| {
            OpenError::Credentials(format!("a Viber account must hold an `auth_token` string (the bot's token): {e}"))
        })?;
        if credentials.auth_token.trim().is_empty() {
            return Err(OpenError::Credentials("auth_token is empty".into()));
        }
        // the runtime's own keys (`limits`) are not the module's business
        let mut settings = settings.clone();
        if let Some(map) = settings.as_object_mut() {
            map.remove("limits");
        }
        let settings: Settings = serde_json::from_value(settings).map_err(|e| OpenError::Settings(e.to_string()))?;
        let api_url = settings.api_url.as_deref().unwrap_or(API_URL);
        let api_url = Url::parse(api_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| OpenError::Settings(format!("api_url {api_url:?} is not an http(s) URL")))?;
        if let Some(v) = settings.min_api_version
            && !(1..=100).contains(&v)
        {
            return Err(OpenError::Settings(format!("min_api_version {v} is not a Viber API level (1, 2, 3...)")));
        }
        if let Some(welcome) = &settings.welcome
            && (welcome.trim().is_empty() || welcome.chars().count() > WELCOME_MAX)
        {
            return Err(OpenError::Settings(format!("welcome must be 1-{WELCOME_MAX} characters")));
        }
        let sender_name =
            settings.sender_name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or(account_name.trim());
        let sender_name = if sender_name.is_empty() { "Support".to_owned() } else { cut(sender_name, SENDER_NAME_MAX) };
        Ok(ViberAccount { credentials, settings, api_url, sender_name })
    }

    pub fn api_url(&self) -> &Url {
        &self.api_url
    }

    /// The sender name customers see when an agent has none (at most 28 characters).
    pub fn sender_name(&self) -> &str {
        &self.sender_name
    }

    pub fn defaults(&self) -> Defaults {
        Defaults { sender_name: self.sender_name.clone(), min_api_version: self.settings.min_api_version.unwrap_or(1) }
    }
}

/// The Viber channel module.
pub struct Module;

#[async_trait]
impl ChannelModule for Module {
    fn channel(&self) -> Channel {
        Channel::Viber
    }

    async fn open(&self, ctx: AccountContext) -> Result<Arc<dyn ChannelAccount>, OpenError> {
        let config = ViberAccount::from_json(&ctx.credentials, &ctx.settings, &ctx.account.name)?;
        let webhook_url = ctx.webhook_url()?;
        if webhook_url.scheme() != "https" {
            warn!(url = %webhook_url, "Viber only calls https webhook URLs with a public certificate");
        }
        let token = config.credentials.auth_token.clone();
        let api = Api::new(config.api_url().clone(), token.clone());
        let reregister = Arc::new(Notify::new());
        let welcome = config.settings.welcome.as_deref().map(|w| mapping::welcome(w, config.sender_name()));
        let receiver =
            Arc::new(Receiver::new(ctx.ingest.clone(), ctx.files.clone(), ctx.limits.max_download_bytes, welcome));
        Ok(Arc::new(ViberChannel {
            outbound: Arc::new(ViberOutbound::new(
                api.clone(),
                config.defaults(),
                ctx.account.id,
                ctx.health.clone(),
                reregister.clone(),
            )),
            webhook: Arc::new(ViberWebhook { token, receiver }),
            api,
            webhook_url,
            reregister,
            account_id: ctx.account.id,
        }))
    }
}

/// An opened Viber account.
struct ViberChannel {
    api: Api,
    webhook_url: Url,
    outbound: Arc<ViberOutbound>,
    webhook: Arc<ViberWebhook>,
    /// Rung when Viber says the webhook is not set (status 10).
    reregister: Arc<Notify>,
    account_id: Uuid,
}

impl ViberChannel {
    /// `set_webhook` for this account's URL; `Err` says why it did not take.
    async fn register(&self) -> Result<serde_json::Value, String> {
        let body = json!({"url": self.webhook_url.as_str(), "event_types": EVENT_TYPES, "send_name": true, "send_photo": true});
        let answer = self.api.call("set_webhook", &body).await.map_err(|e| e.0)?;
        match answer.status {
            0 => Ok(answer.body.get("event_types").cloned().unwrap_or_default()),
            1 => Err(format!(
                "Viber could not reach {} (status 1, invalidUrl: {}): it must be a public https URL with a \
                 certificate from a public CA, routed to this account's webhook route \
                 (connectors.public_url or settings.webhook_url)",
                self.webhook_url, answer.status_message
            )),
            status => Err(match mapping::classify(status, &answer.status_message) {
                mapping::Refusal::Permanent { reason, .. } | mapping::Refusal::Transient(reason) => reason,
                mapping::Refusal::RateLimited => "Viber status 12 (too many requests)".into(),
            }),
        }
    }
}

#[async_trait]
impl ChannelAccount for ViberChannel {
    fn outbound(&self) -> Arc<dyn Outbound> {
        self.outbound.clone()
    }

    fn webhook(&self) -> Option<Arc<dyn Webhook>> {
        Some(self.webhook.clone())
    }

    fn describe(&self) -> String {
        format!("webhook {}", self.webhook_url)
    }

    /// Registers the webhook (again after every takeover, and whenever Viber says it is not
    /// set), retrying with backoff until it takes or the term ends; updates then arrive through
    /// the webhook route.
    async fn lead(&self, term: CancellationToken) {
        loop {
            let mut failures: u32 = 0;
            loop {
                match self.register().await {
                    Ok(event_types) => {
                        info!(account = %self.account_id, url = %self.webhook_url, %event_types, "Viber webhook registered");
                        self.outbound.health.healthy();
                        break;
                    }
                    Err(why) => {
                        failures += 1;
                        let wait = crate::pacing::backoff(failures).min(REGISTER_AT_MOST);
                        if failures >= 3 {
                            error!(account = %self.account_id, ?wait, "set_webhook failed again: {why}");
                        } else {
                            warn!(account = %self.account_id, ?wait, "set_webhook failed: {why}");
                        }
                        tokio::select! {
                            _ = term.cancelled() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
            tokio::select! {
                _ = term.cancelled() => return,
                _ = self.reregister.notified() => {
                    warn!(account = %self.account_id, "Viber says the webhook is not set: registering it again");
                }
            }
        }
    }
}

/// Viber's callbacks: the signature over the raw body, then one callback per request.
struct ViberWebhook {
    token: String,
    receiver: Arc<Receiver>,
}

#[async_trait]
impl Webhook for ViberWebhook {
    fn verify(&self, request: &WebhookRequest) -> Result<(), WebhookError> {
        // the header, or `?sig=` as the official Node middleware also accepts
        let given = request.header(SIGNATURE_HEADER).map(str::to_owned).or_else(|| request.query_param("sig"));
        match given {
            None => Err(WebhookError::Unauthorized(format!("missing {SIGNATURE_HEADER}"))),
            Some(signature) if signature_matches(&self.token, &request.body, &signature) => Ok(()),
            Some(_) => Err(WebhookError::Unauthorized(format!("wrong {SIGNATURE_HEADER}"))),
        }
    }

    async fn handle(&self, request: &WebhookRequest) -> Result<WebhookReply, WebhookError> {
        self.receiver
            .accept(&request.body)
            .await
            .map_err(|e| WebhookError::Unavailable(format!("not stored; deliver again: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_are_checked_with_messages_that_say_what_to_do() {
        let ok = ViberAccount::from_json(&json!({"auth_token": "445da6az1s345z78"}), &json!({}), "Acme Shop").unwrap();
        assert_eq!(ok.api_url().as_str(), API_URL);
        assert_eq!(ok.sender_name(), "Acme Shop");
        assert_eq!(ok.defaults().min_api_version, 1);
        assert!(!format!("{ok:?}").contains("445da6az1s345z78"), "the token never prints");

        let long = ViberAccount::from_json(
            &json!({"auth_token": "t"}),
            &json!({"sender_name": "Acme Customer Support Team Europe", "min_api_version": 3, "limits": {"rate": {"count": 5, "per_ms": 1000}}}),
            "x",
        )
        .unwrap();
        assert_eq!(long.sender_name(), "Acme Customer Support Team E", "cut at 28");
        assert_eq!(long.defaults().min_api_version, 3);

        let err = ViberAccount::from_json(&json!({}), &json!({}), "x").unwrap_err();
        assert!(matches!(&err, OpenError::Credentials(m) if m.contains("auth_token")), "{err}");
        let err = ViberAccount::from_json(&json!({"auth_token": " "}), &json!({}), "x").unwrap_err();
        assert!(matches!(err, OpenError::Credentials(_)));
        let err =
            ViberAccount::from_json(&json!({"auth_token": "t"}), &json!({"api_url": "not a url"}), "x").unwrap_err();
        assert!(err.to_string().contains("api_url"), "{err}");
        let err =
            ViberAccount::from_json(&json!({"auth_token": "t"}), &json!({"min_api_version": 0}), "x").unwrap_err();
        assert!(err.to_string().contains("min_api_version"), "{err}");
        let err = ViberAccount::from_json(&json!({"auth_token": "t"}), &json!({"welcome": ""}), "x").unwrap_err();
        assert!(err.to_string().contains("welcome"), "{err}");
    }
}
