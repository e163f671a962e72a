//! The Telegram side of inbound: long polling (`getUpdates` with offset and timeout) and the
//! handling of one update, whichever way it came.
//!
//! An update is acknowledged only after everything it implies is committed: with long polling
//! the offset moves past a batch once every update in it is stored; a webhook answers 200
//! after the store returns. Media is fetched from Telegram (`getFile`, then the file download
//! path) and uploaded to the file server *before* the message is stored, so the agent's
//! message arrives with its file.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use schema::domain::FileRef;
use schema::store::StoreError;
use teloxide::net::Download;
use teloxide::payloads::{GetUpdatesSetters, GetUserProfilePhotosSetters};
use teloxide::prelude::Requester;
use teloxide::types::{AllowedUpdate, CallbackQueryId, FileId, Update, UserId};
use teloxide::{ApiError, Bot, RequestError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::mapping::{Draft, Mapped, Media, classify, map_update};
use crate::files::{FileError, FileServer};
use crate::ingest::Ingest;
use crate::platform::SendError;

/// Updates the hub asks Telegram for.
pub const ALLOWED_UPDATES: &[AllowedUpdate] =
    &[AllowedUpdate::Message, AllowedUpdate::EditedMessage, AllowedUpdate::CallbackQuery, AllowedUpdate::MyChatMember];

/// After this many failed tries of one update, a file that cannot be fetched no longer holds
/// the message back: it is stored with a note instead.
const FETCH_TRIES: u32 = 5;

/// Chats handled at once within one batch of updates (one chat's updates stay in order).
const CHATS_AT_ONCE: usize = 8;

/// Why an update could not be handled now; it will be tried again.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("file: {0}")]
    File(String),
}

/// Handles updates of one account.
pub struct Receiver {
    bot: Bot,
    ingest: Ingest,
    files: FileServer,
    max_download: u64,
    /// Telegram users whose avatar this process has looked at (std mutex: inserts and lookups
    /// only, never held across an await).
    avatars: Mutex<HashSet<u64>>,
}

enum Fetch {
    Stored(FileRef),
    /// Will not work: a note for the agent instead of the file.
    Unavailable(String),
}

impl Receiver {
    pub fn new(bot: Bot, ingest: Ingest, files: FileServer, max_download: u64) -> Self {
        Receiver { bot, ingest, files, max_download, avatars: Mutex::new(HashSet::new()) }
    }

    /// Handles one update. `Ok` once everything it implies is committed: the caller may then
    /// acknowledge it. `tries` counts earlier failed tries of the same update.
    pub async fn handle(&self, update: &Update, tries: u32) -> Result<(), HandleError> {
        match map_update(self.ingest.account_id(), update) {
            Mapped::Ignore(why) => {
                debug!(update = update.id.0, why, "update ignored");
                Ok(())
            }
            Mapped::Edit { external_message_id, text } => {
                if !self.ingest.edit(&external_message_id, &text).await? {
                    debug!(%external_message_id, "edit of a message never stored; ignored");
                }
                Ok(())
            }
            Mapped::Message(draft) => self.store(*draft, tries).await,
            Mapped::Callback { draft, query_id } => {
                self.store(*draft, tries).await?;
                // the button stops spinning; a query too old to answer is no reason to fail
                if let Err(e) = self.bot.answer_callback_query(CallbackQueryId(query_id)).await {
                    debug!(error = %e, "answerCallbackQuery failed");
                }
                Ok(())
            }
        }
    }

    async fn store(&self, mut draft: Draft, tries: u32) -> Result<(), HandleError> {
        if self.ingest.known(&draft.message.external_message_id).await? {
            return Ok(()); // delivered again: already stored, nothing to fetch
        }
        if let Some(media) = draft.media.take() {
            match self.fetch(&media, tries).await? {
                Fetch::Stored(file) => draft.message.file_ids.push(file.id),
                Fetch::Unavailable(note) => {
                    let text = draft.message.text.take().map(|t| format!("{t}\n")).unwrap_or_default();
                    draft.message.text = Some(format!("{text}[{}: {note}]", media.name));
                }
            }
        }
        self.avatar(&mut draft).await;
        self.ingest.message(&draft.message).await?;
        Ok(())
    }

    /// Telegram's file -> the file server.
    async fn fetch(&self, media: &Media, tries: u32) -> Result<Fetch, HandleError> {
        let limit = self.max_download;
        let too_big = |size: u64| {
            Fetch::Unavailable(format!(
                "{} is over the {} Telegram lets bots download",
                crate::outbox::human_size(size),
                crate::outbox::human_size(limit)
            ))
        };
        if let Some(size) = media.size
            && size > limit
        {
            return Ok(too_big(size));
        }
        let give_up = tries + 1 >= FETCH_TRIES;
        let file = match self.bot.get_file(FileId(media.file_id.clone())).await {
            Ok(file) => file,
            Err(e) => {
                return match classify(&e) {
                    SendError::Permanent(reason) => Ok(Fetch::Unavailable(format!("Telegram refused it: {reason}"))),
                    _ if give_up => Ok(Fetch::Unavailable(format!("could not be fetched from Telegram: {e}"))),
                    _ => Err(HandleError::File(format!("getFile: {e}"))),
                };
            }
        };
        if file.size != u32::MAX && u64::from(file.size) > limit {
            return Ok(too_big(u64::from(file.size)));
        }
        let mut bytes: Vec<u8> = Vec::new();
        if let Err(e) = self.bot.download_file(&file.path, &mut bytes).await {
            if give_up {
                return Ok(Fetch::Unavailable(format!("could not be downloaded from Telegram: {e}")));
            }
            return Err(HandleError::File(format!("download: {e}")));
        }
        match self.files.upload(&media.name, &media.mime, bytes.into()).await {
            Ok(uploaded) => Ok(Fetch::Stored(uploaded.to_ref())),
            Err(FileError::Refused(reason)) => Ok(Fetch::Unavailable(format!("the file server refused it: {reason}"))),
            Err(e @ FileError::NoSecret) => Ok(Fetch::Unavailable(e.to_string())),
            Err(e) if give_up => Ok(Fetch::Unavailable(format!("the file server did not take it: {e}"))),
            Err(e) => Err(HandleError::File(e.to_string())),
        }
    }

    /// The customer's profile photo, the first time this process sees a customer without one.
    async fn avatar(&self, draft: &mut Draft) {
        let user = draft.user_id;
        if self.avatars.lock().unwrap_or_else(|e| e.into_inner()).contains(&user) {
            return;
        }
        let known = self.ingest.customer_avatar(&draft.message.sender.external_id).await;
        if let Ok(Some(Some(_))) = known {
            self.avatars.lock().unwrap_or_else(|e| e.into_inner()).insert(user);
            return;
        }
        match self.fetch_avatar(user).await {
            Ok(Some(file)) => draft.message.sender.avatar_url = Some(file.url),
            Ok(None) => {}
            Err(e) => {
                debug!(user, error = %e, "no avatar this time");
                return; // try again with the next message
            }
        }
        self.avatars.lock().unwrap_or_else(|e| e.into_inner()).insert(user);
    }

    async fn fetch_avatar(&self, user: u64) -> Result<Option<FileRef>, String> {
        let photos = self.bot.get_user_profile_photos(UserId(user)).limit(1).await.map_err(|e| e.to_string())?;
        let Some(sizes) = photos.photos.first() else { return Ok(None) };
        let Some(largest) = sizes.iter().max_by_key(|s| u64::from(s.width) * u64::from(s.height)) else {
            return Ok(None);
        };
        let media = Media {
            file_id: largest.file.id.0.clone(),
            size: (largest.file.size != u32::MAX).then_some(u64::from(largest.file.size)),
            name: format!("avatar_{user}.jpg"),
            mime: "image/jpeg".into(),
        };
        match self.fetch(&media, FETCH_TRIES).await.map_err(|e| e.to_string())? {
            Fetch::Stored(file) => Ok(Some(file)),
            Fetch::Unavailable(note) => Err(note),
        }
    }
}

/// The key that keeps one chat's updates in order.
fn chat_key(update: &Update) -> i64 {
    update.chat().map(|c| c.id.0).or_else(|| update.from().map(|u| u.id.0 as i64)).unwrap_or(i64::from(update.id.0))
}

/// Handles a batch: chats concurrently, each chat's updates in order, each update retried
/// until it is stored. Returns `false` if `stop` ended it first (nothing may be acknowledged).
pub async fn handle_batch(receiver: &Receiver, updates: Vec<Update>, stop: &CancellationToken) -> bool {
    let mut chats: Vec<(i64, VecDeque<Update>)> = Vec::new();
    for update in updates {
        let key = chat_key(&update);
        match chats.iter_mut().find(|(k, _)| *k == key) {
            Some((_, queue)) => queue.push_back(update),
            None => chats.push((key, VecDeque::from([update]))),
        }
    }
    let done = futures::stream::iter(chats)
        .map(|(_, queue)| async move {
            for update in queue {
                let mut tries = 0;
                loop {
                    match receiver.handle(&update, tries).await {
                        Ok(()) => break,
                        Err(e) => {
                            tries += 1;
                            let wait = crate::pacing::backoff(tries).min(Duration::from_secs(30));
                            warn!(update = update.id.0, error = %e, ?wait, "cannot store an update yet; trying again");
                            tokio::select! {
                                _ = stop.cancelled() => return false,
                                _ = tokio::time::sleep(wait) => {}
                            }
                        }
                    }
                }
            }
            true
        })
        .buffer_unordered(CHATS_AT_ONCE)
        .collect::<Vec<bool>>()
        .await;
    done.into_iter().all(|ok| ok)
}

/// Long polling until `stop`: `getUpdates` from the last acknowledged offset, handle the batch,
/// then move the offset past it (the next `getUpdates` confirms the batch to Telegram).
pub async fn poll(bot: &Bot, receiver: &Receiver, timeout_s: u32, stop: &CancellationToken) {
    // getUpdates does not work while a webhook is set
    match bot.delete_webhook().await {
        Ok(_) => {}
        Err(e) => warn!(error = %e, "deleteWebhook failed; polling anyway"),
    }
    let mut offset: i32 = 0;
    let mut failures: u32 = 0;
    info!(timeout_s, "long polling started");
    loop {
        let request = bot.get_updates().offset(offset).timeout(timeout_s).allowed_updates(ALLOWED_UPDATES.to_vec());
        let answer = tokio::select! {
            _ = stop.cancelled() => return,
            answer = request => answer,
        };
        let updates = match answer {
            Ok(updates) => {
                failures = 0;
                updates
            }
            Err(e) => {
                failures += 1;
                let wait = match &e {
                    RequestError::RetryAfter(s) => s.duration(),
                    RequestError::Api(ApiError::TerminatedByOtherGetUpdates) => {
                        // another poller: during a failover, the old leader's last request
                        Duration::from_secs(1)
                    }
                    _ => crate::pacing::backoff(failures).min(Duration::from_secs(30)),
                };
                warn!(error = %e, ?wait, "getUpdates failed");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        let Some(last) = updates.last() else { continue };
        let next = i32::try_from(last.id.0).unwrap_or(i32::MAX).saturating_add(1);
        if !handle_batch(receiver, updates, stop).await {
            return;
        }
        offset = next;
        metrics::gauge!("switchboard_telegram_update_offset", "account" => receiver.ingest.account_id().to_string())
            .set(f64::from(offset));
    }
}
