//! The WhatsApp channel: one channel module, a provider per account
//! (`accounts.settings.provider`): Meta's WhatsApp Business Cloud API ([`cloud`],
//! `docs/platforms.md` §2) or Infobip ([`infobip`], §3).
//!
//! The channel's behaviour is written once, above the providers: [`receive`] (media into the
//! file server, the ingest, the time the customer wrote for the 24-hour window, receipts, dead
//! letters) and [`send`] (parts to WhatsApp messages, rate limits waited for, 131047 as the
//! window's failure, a refused account reported unhealthy). A provider implements
//! [`provider::Provider`]: webhook authenticity, webhook bodies to events, media download, one
//! send. A third provider is one more file here and one more line in [`open_provider`]
//! (`docs/connectors.md#whatsapp` says exactly what it implements).
//!
//! The window itself is enforced by the chatserver at `message.send` (from what [`receive`]
//! records); templates are `Part::template`, sent by the provider alone.

pub mod cloud;
pub mod infobip;
pub mod provider;
pub mod receive;
pub mod send;

use std::sync::Arc;

use async_trait::async_trait;
use schema::domain::Channel;
use tokio_util::sync::CancellationToken;
use tracing::info;
use url::Url;
use uuid::Uuid;

use crate::channel::{
    AccountContext, ChannelAccount, ChannelModule, OpenError, Webhook, WebhookError, WebhookReply, WebhookRequest,
};
use crate::ingest::UpdateError;
use crate::platform::Outbound;
use provider::Provider;
use receive::Receiver;
use send::WhatsAppOutbound;

/// The settings every provider shares (the rest are the provider's own); `branding` is the
/// video pages' (docs/video.md, Branding).
const COMMON_SETTINGS: &[&str] = &["provider", "limits", "webhook_url", "branding"];

/// The account's settings without the keys every provider shares: what the provider reads.
pub fn provider_settings(settings: &serde_json::Value) -> serde_json::Value {
    let mut settings = settings.clone();
    if let Some(map) = settings.as_object_mut() {
        map.retain(|k, _| !COMMON_SETTINGS.contains(&k.as_str()));
    }
    if settings.is_null() { serde_json::json!({}) } else { settings }
}

/// The account's provider, from `settings.provider` (`cloud` when absent), checked and opened
/// without calling it.
pub fn open_provider(ctx: &AccountContext) -> Result<Arc<dyn Provider>, OpenError> {
    let name = match ctx.settings.get("provider") {
        None => "cloud",
        Some(serde_json::Value::String(name)) => name.as_str(),
        Some(other) => {
            return Err(OpenError::Settings(format!("provider must be \"cloud\" or \"infobip\", not {other}")));
        }
    };
    Ok(match name {
        "cloud" => Arc::new(cloud::Cloud::open(ctx)?),
        "infobip" => Arc::new(infobip::Infobip::open(ctx)?),
        other => {
            return Err(OpenError::Settings(format!(
                "provider {other:?} is not a WhatsApp provider of this build (\"cloud\": Meta's Cloud API, \"infobip\")"
            )));
        }
    })
}

/// The WhatsApp channel module.
pub struct Module;

#[async_trait]
impl ChannelModule for Module {
    fn channel(&self) -> Channel {
        Channel::Whatsapp
    }

    async fn open(&self, ctx: AccountContext) -> Result<Arc<dyn ChannelAccount>, OpenError> {
        let provider = open_provider(&ctx)?;
        let webhook_url = ctx.webhook_url()?;
        let receiver = Arc::new(Receiver::new(
            provider.clone(),
            ctx.ingest.clone(),
            ctx.files.clone(),
            ctx.pool.clone(),
            ctx.limits.max_download_bytes,
        ));
        Ok(Arc::new(WhatsAppChannel {
            outbound: Arc::new(WhatsAppOutbound::new(provider.clone(), ctx.health.clone(), ctx.account.id)),
            webhook: Arc::new(WhatsAppWebhook { provider: provider.clone(), receiver }),
            provider,
            webhook_url,
            account_id: ctx.account.id,
        }))
    }
}

/// An opened WhatsApp account.
struct WhatsAppChannel {
    provider: Arc<dyn Provider>,
    outbound: Arc<WhatsAppOutbound>,
    webhook: Arc<WhatsAppWebhook>,
    webhook_url: Url,
    account_id: Uuid,
}

#[async_trait]
impl ChannelAccount for WhatsAppChannel {
    fn outbound(&self) -> Arc<dyn Outbound> {
        self.outbound.clone()
    }

    fn webhook(&self) -> Option<Arc<dyn Webhook>> {
        Some(self.webhook.clone())
    }

    fn describe(&self) -> String {
        format!("provider {}, webhook {}", self.provider.name(), self.webhook_url.path())
    }

    /// Both providers' webhooks are set up at the provider (Meta's app dashboard, Infobip's
    /// portal), not through their API: the leader only receives.
    async fn lead(&self, term: CancellationToken) {
        info!(
            account = %self.account_id,
            provider = self.provider.name(),
            path = self.webhook_url.path(),
            "leading: WhatsApp webhooks are handled here"
        );
        term.cancelled().await;
    }

    async fn replay(&self, payload: &[u8]) -> Result<(), UpdateError> {
        self.webhook.receiver.replay(payload).await
    }
}

/// The webhook route: the provider's check, then its handshake (GET) or the body (POST).
struct WhatsAppWebhook {
    provider: Arc<dyn Provider>,
    receiver: Arc<Receiver>,
}

#[async_trait]
impl Webhook for WhatsAppWebhook {
    fn verify(&self, request: &WebhookRequest) -> Result<(), WebhookError> {
        self.provider.verify(request)
    }

    async fn handle(&self, request: &WebhookRequest) -> Result<WebhookReply, WebhookError> {
        if request.method == axum::http::Method::GET {
            return self.provider.handshake(request);
        }
        self.receiver
            .accept(&request.body)
            .await
            .map(|()| WebhookReply::Ok)
            .map_err(|e| WebhookError::Unavailable(format!("not stored; deliver again: {e}")))
    }
}
