//! The Viber side of inbound: one signed callback per webhook request, handled on the leader.
//!
//! A callback is answered 200 only after everything it implies is committed (or it is parked as
//! a dead letter); a failure worth another try is answered 503 and Viber delivers it again.
//! Media URLs in messages are temporary, so the file is fetched from Viber and streamed into the
//! file server *before* the message is stored: the agent's `message.new` already carries it. A
//! file that keeps failing (or that can never be fetched) is replaced by a note in the text.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use schema::domain::MessageKind;
use serde_json::Value;
use tracing::{debug, info};

use super::mapping::{Callback, Draft, Media, User, parse_callback};
use crate::channel::WebhookReply;
use crate::files::FileServer;
use crate::ingest::{Ingest, Settled, UpdateError};
use crate::media::{Download, Fetch};

/// After this many failed tries of one message, a file that cannot be fetched no longer holds
/// the message back: it is stored with a note instead (below the ingest's parking threshold).
const FETCH_TRIES: u32 = 5;

/// Handles the callbacks of one account.
pub struct Receiver {
    http: reqwest::Client,
    ingest: Ingest,
    files: FileServer,
    max_download: u64,
    /// The answer to `conversation_started`, when the account has a welcome message.
    welcome: Option<Value>,
    /// Customers whose avatar this process has looked at (std mutex: inserts and lookups only,
    /// never held across an await).
    avatars: Mutex<HashSet<String>>,
}

impl Receiver {
    pub fn new(ingest: Ingest, files: FileServer, max_download: u64, welcome: Option<Value>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .expect("a plain HTTP client builds");
        Receiver { http, ingest, files, max_download, welcome, avatars: Mutex::new(HashSet::new()) }
    }

    /// One verified callback as Viber sent it: handled, or parked when it never can be. `Err`
    /// only when Viber should deliver it again (nothing was acknowledged).
    pub async fn accept(&self, raw: &[u8]) -> Result<WebhookReply, UpdateError> {
        let (key, parsed) = parse_callback(self.ingest.account_id(), raw);
        let tries = self.ingest.tries(&key);
        let result = match parsed {
            Ok(callback) => self.handle(callback, tries).await,
            Err(why) => Err(UpdateError::Permanent(why)),
        };
        match result {
            Ok(reply) => {
                self.ingest.succeeded(&key);
                Ok(reply)
            }
            Err(e) => self.ingest.settle(&key, raw, e).await.map(|Settled::Parked(_)| WebhookReply::Ok),
        }
    }

    async fn handle(&self, callback: Callback, tries: u32) -> Result<WebhookReply, UpdateError> {
        match callback {
            Callback::Webhook => Ok(WebhookReply::Ok),
            Callback::Message(draft) => {
                self.store(*draft, tries).await?;
                Ok(WebhookReply::Ok)
            }
            Callback::Subscribed { user } => {
                self.customer(&user).await?;
                Ok(WebhookReply::Ok)
            }
            Callback::ConversationStarted { user, subscribed } => {
                debug!(user = %user.id, subscribed, "conversation started");
                self.customer(&user).await?;
                Ok(match &self.welcome {
                    Some(welcome) => WebhookReply::Json(welcome.clone()),
                    None => WebhookReply::Ok,
                })
            }
            Callback::Unsubscribed { user_id } => {
                // nothing to store: messages to them now fail with status 6, which says so
                info!(account = %self.ingest.account_id(), user = %user_id, "a customer unsubscribed from the bot");
                Ok(WebhookReply::Ok)
            }
            Callback::Receipt { message_token, receipt } => {
                let outcome = self.ingest.receipt(&message_token, &receipt).await?;
                debug!(%message_token, ?receipt, ?outcome, "receipt");
                Ok(WebhookReply::Ok)
            }
            Callback::Other(event) => {
                debug!(%event, "a callback this build does not act on");
                Ok(WebhookReply::Ok)
            }
        }
    }

    /// A customer Viber told about without a message.
    async fn customer(&self, user: &User) -> Result<(), UpdateError> {
        let mut sender = user.sender();
        sender.avatar_url = self.avatar(&user.id, user.avatar.as_deref()).await;
        self.ingest.customer(&sender).await?;
        Ok(())
    }

    async fn store(&self, mut draft: Draft, tries: u32) -> Result<(), UpdateError> {
        // a repeat is absorbed by the store's unique key; with media, look first so the file is
        // not fetched again for nothing
        if draft.media.is_some() && self.ingest.known(&draft.message.external_message_id).await? {
            return Ok(());
        }
        if let Some(media) = draft.media.take() {
            match self.fetch(&media, tries).await? {
                Fetch::Stored(file) => draft.message.file_ids.push(file.id),
                // a sticker keeps its id; its picture is a nicety
                Fetch::Unavailable(note) if draft.message.kind == MessageKind::Sticker => {
                    debug!(sticker = ?draft.message.sticker_id, %note, "sticker picture not fetched");
                }
                Fetch::Unavailable(note) => {
                    let text = draft.message.text.take().map(|t| format!("{t}\n")).unwrap_or_default();
                    draft.message.text = Some(format!("{text}[{}: {note}]", media.name));
                }
            }
        }
        draft.message.sender.avatar_url = self.avatar(&draft.message.sender.external_id, draft.avatar.as_deref()).await;
        self.ingest.message(&draft.message).await?;
        Ok(())
    }

    /// Viber's link -> the file server, streamed, at most `max_download` bytes.
    async fn fetch(&self, media: &Media, tries: u32) -> Result<Fetch, UpdateError> {
        let download = Download {
            platform: "Viber",
            name: &media.name,
            mime: &media.mime,
            size: media.size,
            limit: self.max_download,
            last_try: tries + 1 >= FETCH_TRIES,
        };
        download.from_url(&self.http, &media.url, &self.files).await
    }
    /// The customer's avatar copied into the file server, the first time this process sees a
    /// customer who has none stored yet; one try per customer and process.
    async fn avatar(&self, user: &str, url: Option<&str>) -> Option<String> {
        let url = url?;
        if self.avatars.lock().unwrap_or_else(|e| e.into_inner()).contains(user) {
            return None;
        }
        match self.ingest.customer_avatar(user).await {
            Ok(Some(Some(_))) => {
                self.avatars.lock().unwrap_or_else(|e| e.into_inner()).insert(user.to_owned());
                return None;
            }
            Ok(_) => {}
            Err(_) => return None, // the message's own store will say what is wrong
        }
        let media = Media { url: url.to_owned(), size: None, name: "avatar.jpg".into(), mime: "image/jpeg".into() };
        let fetched = self.fetch(&media, FETCH_TRIES).await;
        self.avatars.lock().unwrap_or_else(|e| e.into_inner()).insert(user.to_owned());
        match fetched {
            Ok(Fetch::Stored(file)) => Some(file.url),
            Ok(Fetch::Unavailable(why)) => {
                debug!(user, %why, "no avatar");
                None
            }
            Err(e) => {
                debug!(user, error = %e, "no avatar");
                None
            }
        }
    }
}
