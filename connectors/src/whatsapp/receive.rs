//! The channel's inbound side, the same for every provider: one verified webhook body, parsed
//! by the provider into items, each stored before the body is acknowledged.
//!
//! - A customer message: the time the customer wrote is recorded for the 24-hour window first
//!   (`store::whatsapp::record_inbound_time`, the platform's timestamp; a repeated delivery
//!   records it again, which changes nothing), so an agent who answers the moment the message
//!   appears finds the window open; then its file is fetched from the provider and **streamed**
//!   into the file server (so the agent's `message.new` already carries it), then the message is
//!   stored.
//! - A status: `delivered`, `read`, `failed` become receipts (`Ingest::receipt`); `sent` changes
//!   nothing (the hub stored `sent` when the provider accepted the message).
//! - An item that can never be stored is parked as a dead letter with a body holding it alone
//!   (`Ingest::settle`), and the others go on; a failure worth another try answers 503 so the
//!   provider delivers the body again (what was stored is then absorbed by the unique keys).

use std::sync::Arc;

use schema::domain::MessageKind;
use schema::store::{self, Receipt};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tracing::{debug, warn};

use super::provider::{Event, FetchError, Incoming, Item, MediaRef, Provider, Status};
use crate::files::FileServer;
use crate::ingest::{Ingest, UpdateError};
use crate::media::{Download, Fetch};

/// After this many failed tries of one message, a file that cannot be fetched no longer holds
/// the message back: it is stored with a note instead (below the ingest's parking threshold).
const FETCH_TRIES: u32 = 4;

/// Handles the webhooks of one account.
pub struct Receiver {
    provider: Arc<dyn Provider>,
    ingest: Ingest,
    files: FileServer,
    pool: PgPool,
    max_download: u64,
}

impl Receiver {
    pub fn new(
        provider: Arc<dyn Provider>,
        ingest: Ingest,
        files: FileServer,
        pool: PgPool,
        max_download: u64,
    ) -> Self {
        Receiver { provider, ingest, files, pool, max_download }
    }

    /// Handles one verified webhook body: `Ok` once everything in it is stored or parked (answer
    /// 200), `Err` when it should be delivered again (answer 503).
    pub async fn accept(&self, body: &[u8]) -> Result<(), UpdateError> {
        let items = match self.provider.parse(body) {
            Ok(items) => items,
            Err(why) => {
                let key = format!("unreadable-{}", hex::encode(&Sha256::digest(body)[..8]));
                self.ingest.settle(&key, body, UpdateError::Permanent(why)).await?;
                return Ok(());
            }
        };
        let mut again = None;
        for item in items {
            if let Err(e) = self.item(&item).await {
                match self.ingest.settle(&item.key, &item.raw, e).await {
                    Ok(_) => {}
                    // the others still go in now; the body comes again for this one
                    Err(e) => again = Some(e),
                }
            } else {
                self.ingest.succeeded(&item.key);
            }
        }
        again.map_or(Ok(()), Err)
    }

    /// A parked item (or body) again: the same as receiving it, errors returned, not parked.
    pub async fn replay(&self, body: &[u8]) -> Result<(), UpdateError> {
        let items = self.provider.parse(body).map_err(UpdateError::Permanent)?;
        for item in items {
            self.item(&item).await?;
        }
        Ok(())
    }

    async fn item(&self, item: &Item) -> Result<(), UpdateError> {
        let event = item.event.clone().map_err(UpdateError::Permanent)?;
        match event {
            Event::Message(incoming) => self.message(*incoming, self.ingest.tries(&item.key)).await,
            Event::Status { id, status } => {
                let receipt = match status {
                    Status::Sent => return Ok(()),
                    Status::Delivered => Receipt::Delivered,
                    Status::Read => Receipt::Read,
                    Status::Failed(reason) => Receipt::Failed(reason),
                };
                self.ingest.receipt(&id, &receipt).await?;
                Ok(())
            }
            Event::AccountError(why) => {
                warn!(account = %self.ingest.account_id(), provider = self.provider.name(), "WhatsApp reports: {why}");
                Ok(())
            }
            Event::Ignored(what) => {
                debug!(what, "a webhook item this build does not act on");
                Ok(())
            }
        }
    }

    async fn message(&self, incoming: Incoming, tries: u32) -> Result<(), UpdateError> {
        let Incoming { mut message, media, at } = incoming;
        // the window first: an agent who sees the message may answer at once, and the answer must
        // find the window open (recorded also for a repeat, whose first delivery may have stopped)
        let mut conn = self.pool.acquire().await.map_err(|e| UpdateError::Transient(e.to_string()))?;
        store::whatsapp::record_inbound_time(&mut conn, message.account_id, &message.sender.external_id, at).await?;
        drop(conn);
        if !self.ingest.known(&message.external_message_id).await? {
            if let Some(media) = media {
                match self.fetch(&media, tries).await? {
                    Fetch::Stored(file) => message.file_ids.push(file.id),
                    // a sticker keeps its id; its picture is a nicety
                    Fetch::Unavailable(note) if message.kind == MessageKind::Sticker => {
                        debug!(sticker = ?message.sticker_id, %note, "sticker picture not fetched");
                    }
                    Fetch::Unavailable(note) => {
                        let text = message.text.take().map(|t| format!("{t}\n")).unwrap_or_default();
                        message.text = Some(format!("{text}[{}: {note}]", media.name));
                    }
                }
            }
            self.ingest.message(&message).await?;
        }
        Ok(())
    }

    /// The provider's file -> the file server, streamed, at most `max_download` bytes.
    async fn fetch(&self, media: &MediaRef, tries: u32) -> Result<Fetch, UpdateError> {
        let download = Download {
            platform: "WhatsApp",
            name: &media.name,
            mime: &media.mime,
            size: media.size,
            limit: self.max_download,
            last_try: tries + 1 >= FETCH_TRIES,
        };
        if let Some(note) = download.announced_too_big() {
            return Ok(note);
        }
        match self.provider.download(media).await {
            Ok(response) => download.store(response, &self.files).await,
            Err(FetchError::Permanent(why)) => Ok(Fetch::Unavailable(why)),
            Err(FetchError::Transient(why)) => download.again(why),
        }
    }
}
