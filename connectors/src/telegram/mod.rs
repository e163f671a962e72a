//! The Telegram connector, on `teloxide`'s Bot API client.
//!
//! - Account credentials (`accounts.credentials`): `bot_token`, and `webhook_secret` for
//!   webhook mode.
//! - Account settings (`accounts.settings`): `api_url` (the Bot API base URL; tests point it at
//!   a fake), `mode` (`polling`, the default, or `webhook`), `webhook_url` (the public URL
//!   Telegram posts to, registered with `setWebhook` by the leader), `poll_timeout_s`.
//!
//! Inbound: [`receive`] (long polling, or the runtime's webhook route with the
//! `X-Telegram-Bot-Api-Secret-Token` check). Outbound: [`send`]. Wire format to domain and
//! back: [`mapping`].

pub mod mapping;
pub mod receive;
pub mod send;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use teloxide::Bot;
use teloxide::payloads::SetWebhookSetters;
use teloxide::prelude::Requester;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use url::Url;

use crate::channel::{
    AccountContext, ChannelAccount, ChannelModule, OpenError, Webhook, WebhookError, WebhookReply, WebhookRequest,
};
use crate::ingest::UpdateError;
use crate::platform::Outbound;
use receive::{ALLOWED_UPDATES, Receiver};
use schema::domain::Channel;

/// The header Telegram puts the webhook secret in.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// What `accounts.credentials` holds for a Telegram account.
#[derive(Clone, Deserialize)]
pub struct Credentials {
    pub bot_token: String,
    #[serde(default)]
    pub webhook_secret: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { bot_token: ***, webhook_secret: *** }")
    }
}

/// How updates arrive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Polling,
    Webhook,
}

/// What `accounts.settings` holds for a Telegram account (other keys belong to the runtime).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Bot API base URL; Telegram's own when absent.
    pub api_url: Option<String>,
    pub mode: Mode,
    /// Public URL Telegram posts updates to (webhook mode).
    pub webhook_url: Option<String>,
    /// Long-poll timeout in seconds (default 25).
    pub poll_timeout_s: Option<u32>,
}

/// Why an account cannot be served as configured.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("accounts.credentials of a Telegram account must hold a `bot_token` string: {0}")]
    Credentials(serde_json::Error),
    #[error("accounts.settings: {0}")]
    Settings(serde_json::Error),
    #[error("accounts.settings.api_url {0:?} is not a URL")]
    ApiUrl(String),
    #[error("webhook mode needs accounts.settings.webhook_url and accounts.credentials.webhook_secret")]
    Webhook,
    #[error("accounts.credentials.webhook_secret must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)")]
    WebhookSecret,
}

/// A configured Telegram account.
#[derive(Debug, Clone)]
pub struct TelegramAccount {
    pub credentials: Credentials,
    pub settings: Settings,
}

/// The default long-poll timeout; the client's own timeout leaves room above it.
const POLL_TIMEOUT_S: u32 = 25;

impl TelegramAccount {
    pub fn from_json(credentials: &serde_json::Value, settings: &serde_json::Value) -> Result<Self, SetupError> {
        // the runtime's own keys (`limits`) are not the module's business
        let mut settings = settings.clone();
        if let Some(map) = settings.as_object_mut() {
            map.remove("limits");
        }
        let settings = &settings;
        let credentials: Credentials = serde_json::from_value(credentials.clone()).map_err(SetupError::Credentials)?;
        let settings: Settings = serde_json::from_value(settings.clone()).map_err(SetupError::Settings)?;
        if let Some(url) = &settings.api_url {
            Url::parse(url).map_err(|_| SetupError::ApiUrl(url.clone()))?;
        }
        if settings.mode == Mode::Webhook {
            let secret = credentials.webhook_secret.as_deref().ok_or(SetupError::Webhook)?;
            settings.webhook_url.as_deref().ok_or(SetupError::Webhook)?;
            let valid = (1..=256).contains(&secret.len())
                && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                return Err(SetupError::WebhookSecret);
            }
        }
        Ok(TelegramAccount { credentials, settings })
    }

    pub fn poll_timeout_s(&self) -> u32 {
        self.settings.poll_timeout_s.unwrap_or(POLL_TIMEOUT_S).min(50)
    }

    /// The bot, pointed at the configured API URL, with a client whose timeout leaves room for
    /// the long poll.
    pub fn bot(&self) -> Bot {
        let timeout = Duration::from_secs(u64::from(self.poll_timeout_s()) + 30).max(Duration::from_secs(60));
        let client =
            teloxide::net::default_reqwest_settings().timeout(timeout).build().expect("a plain HTTP client builds");
        let bot = Bot::with_client(self.credentials.bot_token.clone(), client);
        match &self.settings.api_url {
            Some(url) => bot.set_api_url(Url::parse(url).expect("checked in from_json")),
            None => bot,
        }
    }

    /// The Bot API's base URL.
    pub fn api_url(&self) -> Url {
        match &self.settings.api_url {
            Some(url) => Url::parse(url).expect("checked in from_json"),
            None => Url::parse(teloxide::net::TELEGRAM_API_URL).expect("teloxide's URL parses"),
        }
    }

    /// The webhook secret, in webhook mode.
    pub fn webhook_secret(&self) -> Option<&str> {
        match self.settings.mode {
            Mode::Webhook => self.credentials.webhook_secret.as_deref(),
            Mode::Polling => None,
        }
    }
}

/// The Telegram channel module.
pub struct Module;

#[async_trait]
impl ChannelModule for Module {
    fn channel(&self) -> Channel {
        Channel::Telegram
    }

    async fn open(&self, ctx: AccountContext) -> Result<Arc<dyn ChannelAccount>, OpenError> {
        let config = TelegramAccount::from_json(&ctx.credentials, &ctx.settings).map_err(|e| match e {
            SetupError::Credentials(_) | SetupError::WebhookSecret => OpenError::Credentials(e.to_string()),
            other => OpenError::Settings(other.to_string()),
        })?;
        let bot = config.bot();
        let receiver = Arc::new(Receiver::new(
            bot.clone(),
            config.api_url(),
            config.credentials.bot_token.clone(),
            ctx.ingest.clone(),
            ctx.files.clone(),
            ctx.limits.max_download_bytes,
        ));
        let webhook = config.webhook_secret().map(|secret| {
            Arc::new(TelegramWebhook { secret: secret.to_owned(), receiver: receiver.clone() }) as Arc<dyn Webhook>
        });
        Ok(Arc::new(TelegramChannel {
            outbound: Arc::new(send::TelegramOutbound::new(bot.clone())),
            config,
            bot,
            receiver,
            webhook,
        }))
    }
}

/// An opened Telegram account.
struct TelegramChannel {
    config: TelegramAccount,
    bot: Bot,
    receiver: Arc<Receiver>,
    outbound: Arc<send::TelegramOutbound>,
    webhook: Option<Arc<dyn Webhook>>,
}

#[async_trait]
impl ChannelAccount for TelegramChannel {
    fn outbound(&self) -> Arc<dyn Outbound> {
        self.outbound.clone()
    }

    fn webhook(&self) -> Option<Arc<dyn Webhook>> {
        self.webhook.clone()
    }

    fn describe(&self) -> String {
        format!("mode {:?}", self.config.settings.mode)
    }

    async fn replay(&self, payload: &[u8]) -> Result<(), UpdateError> {
        self.receiver.handle_raw(payload).await
    }

    /// Long polling, or registering the webhook (updates then arrive through the webhook route
    /// while this process leads).
    async fn lead(&self, term: CancellationToken) {
        match self.config.settings.mode {
            Mode::Polling => receive::poll(&self.receiver, self.config.poll_timeout_s(), &term).await,
            Mode::Webhook => {
                let url = self.config.settings.webhook_url.as_deref().expect("checked in from_json");
                let secret = self.config.credentials.webhook_secret.clone().expect("checked in from_json");
                let url = Url::parse(url).expect("checked in from_json");
                let mut failures = 0;
                loop {
                    let request = self
                        .bot
                        .set_webhook(url.clone())
                        .secret_token(secret.clone())
                        .allowed_updates(ALLOWED_UPDATES.to_vec());
                    match request.await {
                        Ok(_) => {
                            info!(%url, "webhook registered");
                            break;
                        }
                        Err(e) => {
                            failures += 1;
                            let wait = crate::pacing::backoff(failures).min(Duration::from_secs(30));
                            warn!(error = %e, ?wait, "setWebhook failed");
                            tokio::select! {
                                _ = term.cancelled() => return,
                                _ = tokio::time::sleep(wait) => {}
                            }
                        }
                    }
                }
                term.cancelled().await;
            }
        }
    }
}

/// Telegram's webhook deliveries: the secret header, then one `Update` per request.
struct TelegramWebhook {
    secret: String,
    receiver: Arc<Receiver>,
}

#[async_trait]
impl Webhook for TelegramWebhook {
    fn verify(&self, request: &WebhookRequest) -> Result<(), WebhookError> {
        let given = request.headers.get(SECRET_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
        if crate::channel::same_secret(given, self.secret.as_bytes()) {
            Ok(())
        } else {
            Err(WebhookError::Unauthorized(format!("missing or wrong {SECRET_HEADER}")))
        }
    }

    async fn handle(&self, request: &WebhookRequest) -> Result<WebhookReply, WebhookError> {
        match self.receiver.accept_raw(&request.body).await {
            Ok(()) => Ok(WebhookReply::Ok),
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
        let ok = TelegramAccount::from_json(&json!({"bot_token": "1:A"}), &json!({})).unwrap();
        assert_eq!(ok.settings.mode, Mode::Polling);
        assert_eq!(ok.poll_timeout_s(), 25);
        assert!(format!("{:?}", ok.credentials).contains("***"));
        assert!(!format!("{:?}", ok.credentials).contains("1:A"), "the token never prints");

        let err = TelegramAccount::from_json(&json!({}), &json!({})).unwrap_err();
        assert!(err.to_string().contains("bot_token"), "{err}");
        let err = TelegramAccount::from_json(&json!({"bot_token": "1:A"}), &json!({"mode": "webhook"})).unwrap_err();
        assert!(matches!(err, SetupError::Webhook));
        let err = TelegramAccount::from_json(
            &json!({"bot_token": "1:A", "webhook_secret": "no spaces allowed"}),
            &json!({"mode": "webhook", "webhook_url": "https://hub.example/tg"}),
        )
        .unwrap_err();
        assert!(matches!(err, SetupError::WebhookSecret));
        let err =
            TelegramAccount::from_json(&json!({"bot_token": "1:A"}), &json!({"api_url": "not a url"})).unwrap_err();
        assert!(matches!(err, SetupError::ApiUrl(_)));
    }
}
