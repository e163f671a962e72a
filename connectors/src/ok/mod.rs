//! The OK (Odnoklassniki) connector: a group's bot on OK's Graph API (`docs/platforms.md#ok`, §6).
//!
//! - Account credentials (`accounts.credentials`): `access_token`, the group's token;
//!   `webhook_token` in webhook mode: the unguessable part of the webhook URL (at least 32
//!   letters, digits, `-` or `_`), a credential like the token.
//! - Account settings (`accounts.settings`): `mode` (`webhook`, the default, or `long_poll`),
//!   `api_url` (default `https://api.ok.ru/`), `allowed_sources` (addresses or ranges webhooks
//!   may come from; `"ok"` stands for OK's published ranges; none: any address),
//!   `trusted_proxies` (ranges of the proxies in front of the hub, whose `X-Forwarded-For` is
//!   believed), `subscription_check_s` (default 300), `poll_timeout_s` (default 25),
//!   `images_by_link` (default false), `callback_answer` (default "✓"), `processing_wait_ms`
//!   (default 1000), `error_codes` (see [`mapping::ErrorCodes`]).
//!
//! Inbound: [`receive`] (the webhook inbox or the long poll, the subscription). Outbound:
//! [`send`]. Every call: [`api`]. Wire format to domain and back: [`mapping`]. Where a delivery
//! comes from: [`source`].

pub mod api;
pub mod mapping;
pub mod receive;
pub mod send;
pub mod source;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::info;
use url::Url;
use uuid::Uuid;

use crate::channel::{
    AccountContext, ChannelAccount, ChannelModule, OpenError, Webhook, WebhookError, WebhookReply, WebhookRequest,
};
use crate::ingest::UpdateError;
use crate::platform::Outbound;
use api::Api;
use mapping::ErrorCodes;
use receive::{Receiver, Subscription};
use schema::domain::Channel;
use send::OkOutbound;
use source::Cidr;

/// OK's API base URL.
pub const API_URL: &str = "https://api.ok.ru/";
/// The query parameter of the webhook URL that carries the account's token.
pub const TOKEN_PARAM: &str = "token";
/// The shortest webhook token accepted.
pub const TOKEN_MIN: usize = 32;

/// What `accounts.credentials` holds for an OK account.
#[derive(Clone, Deserialize)]
pub struct Credentials {
    pub access_token: String,
    #[serde(default)]
    pub webhook_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { access_token: ***, webhook_token: *** }")
    }
}

/// How updates arrive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// OK posts to the webhook route.
    #[default]
    Webhook,
    /// The leader asks (`graph.user.updates`): for a hub OK cannot reach.
    LongPoll,
}

/// What `accounts.settings` holds for an OK account (other keys belong to the runtime).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub mode: Mode,
    pub api_url: Option<String>,
    pub allowed_sources: Vec<String>,
    pub trusted_proxies: Vec<String>,
    pub subscription_check_s: Option<u64>,
    pub poll_timeout_s: Option<u32>,
    pub images_by_link: bool,
    pub callback_answer: Option<String>,
    pub processing_wait_ms: Option<u64>,
    pub error_codes: ErrorCodes,
}

/// A configured OK account.
#[derive(Debug, Clone)]
pub struct OkAccount {
    pub credentials: Credentials,
    pub settings: Settings,
    api_url: Url,
    allowed: Vec<Cidr>,
    trusted: Vec<Cidr>,
}

impl OkAccount {
    /// Reads and checks the account's credentials and settings (no call to OK).
    pub fn from_json(credentials: &Value, settings: &Value) -> Result<Self, OpenError> {
        let credentials: Credentials = serde_json::from_value(credentials.clone()).map_err(|e| {
            OpenError::Credentials(format!("an OK account must hold an `access_token` string (the group's token): {e}"))
        })?;
        if credentials.access_token.trim().is_empty() {
            return Err(OpenError::Credentials("access_token is empty".into()));
        }
        // the runtime's own keys (`limits`, `webhook_url`) and the video pages' `branding` are
        // not the module's business
        let mut settings = settings.clone();
        if let Some(map) = settings.as_object_mut() {
            map.remove("limits");
            map.remove("webhook_url");
            map.remove("branding");
        }
        let settings: Settings = serde_json::from_value(settings).map_err(|e| OpenError::Settings(e.to_string()))?;
        let api_url = settings.api_url.as_deref().unwrap_or(API_URL);
        let api_url = Url::parse(api_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| OpenError::Settings(format!("api_url {api_url:?} is not an http(s) URL")))?;
        if settings.mode == Mode::Webhook {
            let token = credentials.webhook_token.as_deref().unwrap_or_default();
            let valid = token.len() >= TOKEN_MIN
                && token.len() <= 256
                && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(OpenError::Credentials(format!(
                    "webhook mode needs webhook_token: at least {TOKEN_MIN} random letters, digits, '-' or '_' \
                     (e.g. `openssl rand -hex 32`); it is the secret part of the URL OK posts to"
                )));
            }
        }
        if let Some(s) = settings.subscription_check_s
            && !(5..=86_400).contains(&s)
        {
            return Err(OpenError::Settings(format!("subscription_check_s {s} must be 5 to 86400 seconds")));
        }
        if let Some(t) = settings.poll_timeout_s
            && !(1..=90).contains(&t)
        {
            return Err(OpenError::Settings(format!("poll_timeout_s {t} must be 1 to 90 seconds")));
        }
        if settings.callback_answer.as_deref().is_some_and(|a| a.chars().count() > 200) {
            return Err(OpenError::Settings("callback_answer is at most 200 characters".into()));
        }
        let allowed = source::parse_list("allowed_sources", &settings.allowed_sources).map_err(OpenError::Settings)?;
        let trusted = source::parse_list("trusted_proxies", &settings.trusted_proxies).map_err(OpenError::Settings)?;
        Ok(OkAccount { credentials, settings, api_url, allowed, trusted })
    }

    pub fn api_url(&self) -> &Url {
        &self.api_url
    }

    pub fn subscription_check(&self) -> Duration {
        Duration::from_secs(self.settings.subscription_check_s.unwrap_or(300))
    }

    pub fn poll_timeout_s(&self) -> u32 {
        self.settings.poll_timeout_s.unwrap_or(25)
    }

    /// The answer shown when a button is pressed (`None`: an empty answer).
    pub fn callback_answer(&self) -> Option<String> {
        match &self.settings.callback_answer {
            Some(a) if a.trim().is_empty() => None,
            Some(a) => Some(a.clone()),
            None => Some("✓".to_owned()),
        }
    }
}

/// The URL OK posts to: the runtime's webhook URL with the account's token in the query.
pub fn webhook_url_with_token(base: &Url, token: &str) -> Url {
    let mut url = base.clone();
    let kept: Vec<(String, String)> =
        url.query_pairs().filter(|(k, _)| k != TOKEN_PARAM).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    url.set_query(None);
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &kept {
            pairs.append_pair(k, v);
        }
        pairs.append_pair(TOKEN_PARAM, token);
    }
    url
}

/// The OK channel module.
pub struct Module;

#[async_trait]
impl ChannelModule for Module {
    fn channel(&self) -> Channel {
        Channel::Ok
    }

    async fn open(&self, ctx: AccountContext) -> Result<Arc<dyn ChannelAccount>, OpenError> {
        let config = OkAccount::from_json(&ctx.credentials, &ctx.settings)?;
        if config.settings.images_by_link && ctx.public_url.is_none() {
            return Err(OpenError::Settings(
                "images_by_link needs connectors.public_url: OK fetches the signed link from there".into(),
            ));
        }
        let api = Api::new(
            config.api_url().clone(),
            config.credentials.access_token.clone(),
            config.settings.error_codes.clone(),
            ctx.health.clone(),
            ctx.account.id,
        );
        let receiver = Arc::new(Receiver::new(
            api.clone(),
            ctx.ingest.clone(),
            ctx.files.clone(),
            ctx.pool.clone(),
            ctx.limits.max_download_bytes,
            config.callback_answer(),
        ));
        let (webhook, subscription) = match config.settings.mode {
            Mode::LongPoll => (None, Subscription::LongPoll),
            Mode::Webhook => {
                let token = config.credentials.webhook_token.clone().unwrap_or_default();
                let url = webhook_url_with_token(&ctx.webhook_url()?, &token);
                let hook = Arc::new(OkWebhook {
                    token,
                    allowed: config.allowed.clone(),
                    trusted: config.trusted.clone(),
                    receiver: receiver.clone(),
                });
                (Some(hook), Subscription::Webhook(url))
            }
        };
        let processing_wait = Duration::from_millis(config.settings.processing_wait_ms.unwrap_or(1000));
        let outbound = Arc::new(OkOutbound::new(
            api,
            ctx.files.clone(),
            ctx.account.id,
            config.settings.images_by_link,
            processing_wait,
        ));
        Ok(Arc::new(OkChannel { config, receiver, outbound, webhook, subscription, account_id: ctx.account.id }))
    }
}

/// An opened OK account.
struct OkChannel {
    config: OkAccount,
    receiver: Arc<Receiver>,
    outbound: Arc<OkOutbound>,
    webhook: Option<Arc<OkWebhook>>,
    subscription: Subscription,
    account_id: Uuid,
}

#[async_trait]
impl ChannelAccount for OkChannel {
    fn outbound(&self) -> Arc<dyn Outbound> {
        self.outbound.clone()
    }

    fn webhook(&self) -> Option<Arc<dyn Webhook>> {
        self.webhook.clone().map(|w| w as Arc<dyn Webhook>)
    }

    fn describe(&self) -> String {
        match &self.subscription {
            Subscription::LongPoll => "group by long poll".into(),
            Subscription::Webhook(url) => format!(
                "group by webhook at {}{}",
                url.path(),
                if self.config.allowed.is_empty() { "" } else { ", from the allowed sources only" }
            ),
        }
    }

    async fn replay(&self, payload: &[u8]) -> Result<(), UpdateError> {
        self.receiver.handle_raw(payload).await
    }

    /// Subscribes (the webhook URL with its token, or the long poll) and keeps the subscription;
    /// drains the webhook inbox, or long-polls.
    async fn lead(&self, term: CancellationToken) {
        info!(account = %self.account_id, mode = ?self.config.settings.mode, "OK: this process leads the group");
        // the long poll asks only once subscribed; webhooks may arrive before (and are kept)
        let subscribed = match self.config.settings.mode {
            Mode::LongPoll => tokio::select! {
                _ = term.cancelled() => return,
                done = receive::subscribe(&self.receiver, &self.subscription) => done,
            },
            Mode::Webhook => false,
        };
        let keep = receive::keep_subscribed(
            &self.receiver,
            self.subscription.clone(),
            self.config.subscription_check(),
            subscribed,
            &term,
        );
        let work = async {
            match self.config.settings.mode {
                Mode::Webhook => receive::drain_inbox(&self.receiver, &term).await,
                Mode::LongPoll => receive::poll(&self.receiver, self.config.poll_timeout_s(), &term).await,
            }
        };
        tokio::join!(keep, work);
    }
}

/// OK's webhook: the path token and the source address before anything, then the delivery
/// committed as it came, answered 200 (OK wants it within 5 s); the leader stores it after.
struct OkWebhook {
    token: String,
    allowed: Vec<Cidr>,
    trusted: Vec<Cidr>,
    receiver: Arc<Receiver>,
}

#[async_trait]
impl Webhook for OkWebhook {
    /// The path's token, compared in constant time, then the source address when the account
    /// allows only some.
    fn verify(&self, request: &WebhookRequest) -> Result<(), WebhookError> {
        let given = request.query_param(TOKEN_PARAM).unwrap_or_default();
        if !crate::channel::same_secret(given.as_bytes(), self.token.as_bytes()) {
            return Err(WebhookError::Unauthorized(if given.is_empty() {
                "an OK webhook without the account's token".into()
            } else {
                "an OK webhook with a wrong token".into()
            }));
        }
        if self.allowed.is_empty() {
            return Ok(());
        }
        let forwarded: Vec<&str> =
            request.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
        let client = source::client(request.peer.map(|p| p.ip()), &forwarded, &self.trusted)
            .map_err(|why| WebhookError::Unauthorized(format!("an OK webhook from an unknown source: {why}")))?;
        if !source::allowed(&self.allowed, client) {
            return Err(WebhookError::Unauthorized(format!(
                "an OK webhook from {client}, which is not among the account's allowed_sources{}",
                if request.peer.is_some_and(|p| !self.trusted.iter().any(|t| t.contains(p.ip())))
                    && !forwarded.is_empty()
                {
                    " (it came through a proxy the account does not trust: see trusted_proxies)"
                } else {
                    ""
                }
            )));
        }
        Ok(())
    }

    async fn handle(&self, request: &WebhookRequest) -> Result<WebhookReply, WebhookError> {
        if request.method != axum::http::Method::POST {
            return Err(WebhookError::BadRequest("OK posts its webhooks".into()));
        }
        match self.receiver.keep(&request.body).await {
            Ok(_) => Ok(WebhookReply::Ok),
            Err(e) => Err(WebhookError::Unavailable(format!("not kept; deliver again: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TOKEN: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978";

    #[test]
    fn settings_are_checked_with_messages_that_say_what_to_do() {
        let ok =
            OkAccount::from_json(&json!({"access_token": "tkn1.secret", "webhook_token": TOKEN}), &json!({})).unwrap();
        assert_eq!(ok.api_url().as_str(), API_URL);
        assert_eq!(
            (ok.settings.mode, ok.poll_timeout_s(), ok.subscription_check()),
            (Mode::Webhook, 25, Duration::from_secs(300))
        );
        assert!(ok.allowed.is_empty(), "no address check unless asked");
        assert_eq!(ok.callback_answer().as_deref(), Some("✓"));
        assert!(
            !format!("{ok:?}").contains("tkn1.secret") && !format!("{ok:?}").contains(TOKEN),
            "secrets never print"
        );

        let err = OkAccount::from_json(&json!({}), &json!({})).unwrap_err();
        assert!(matches!(&err, OpenError::Credentials(m) if m.contains("access_token")), "{err}");
        let err = OkAccount::from_json(&json!({"access_token": "t"}), &json!({})).unwrap_err();
        assert!(err.to_string().contains("webhook_token"), "{err}");
        let err =
            OkAccount::from_json(&json!({"access_token": "t", "webhook_token": "short"}), &json!({})).unwrap_err();
        assert!(err.to_string().contains("at least 32"), "{err}");
        let poll =
            OkAccount::from_json(&json!({"access_token": "t"}), &json!({"mode": "long_poll", "poll_timeout_s": 5}))
                .unwrap();
        assert_eq!((poll.settings.mode, poll.poll_timeout_s()), (Mode::LongPoll, 5));
        let err = OkAccount::from_json(&json!({"access_token": "t"}), &json!({"mode": "polling"})).unwrap_err();
        assert!(err.to_string().contains("expected `webhook` or `long_poll`"), "{err}");
        let err = OkAccount::from_json(
            &json!({"access_token": "t", "webhook_token": TOKEN}),
            &json!({"allowed_sources": ["ok", "10.0.0.1/8"]}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("allowed_sources") && err.to_string().contains("host bits"), "{err}");
        let err = OkAccount::from_json(
            &json!({"access_token": "t", "webhook_token": TOKEN}),
            &json!({"allowed_source": ["ok"]}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("allowed_source"), "unknown keys are refused: {err}");
        let full = OkAccount::from_json(
            &json!({"access_token": "t", "webhook_token": TOKEN}),
            &json!({"allowed_sources": ["ok", "192.0.2.0/24"], "trusted_proxies": ["127.0.0.1"], "limits": {"rate": {"count": 10, "per_ms": 1000}}, "branding": {"company_name": "Acme"},
                "webhook_url": "https://hub.example/ok", "error_codes": {"not_allowed": [455]}, "callback_answer": ""}),
        )
        .unwrap();
        assert_eq!((full.allowed.len(), full.trusted.len()), (4, 1));
        assert_eq!(full.callback_answer(), None);
    }

    #[test]
    fn the_webhook_url_carries_the_token_in_its_query() {
        let base = Url::parse("https://hub.example/api/v1/connectors/0196a1c0-0000-7000-8000-0000000000aa/ok").unwrap();
        let url = webhook_url_with_token(&base, TOKEN);
        assert_eq!(url.query(), Some(format!("token={TOKEN}").as_str()));
        let own = Url::parse("https://hub.example/ok?x=1&token=old").unwrap();
        assert_eq!(webhook_url_with_token(&own, "new").as_str(), "https://hub.example/ok?x=1&token=new");
    }
}
