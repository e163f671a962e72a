//! The Telegram side of inbound: long polling (`getUpdates` with offset and timeout) and the
//! handling of one update, whichever way it came.
//!
//! An update is acknowledged only after everything it implies is committed: with long polling
//! the offset moves past a batch once every update in it is stored (or parked); a webhook
//! answers 200 after the store returns. Media is fetched from Telegram (`getFile`, then the file
//! download path) and uploaded to the file server *before* the message is stored, so the
//! agent's message arrives with its file.
//!
//! `getUpdates` is read as raw JSON (not through teloxide's typed call), so an update that
//! cannot be read or stored keeps its exact payload when it is parked as a dead letter, and the
//! offset moves past it: one bad update never holds back the account's other customers.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use schema::domain::FileRef;
use serde::Deserialize;
use teloxide::Bot;
use teloxide::net::Download;
use teloxide::payloads::GetUserProfilePhotosSetters;
use teloxide::prelude::Requester;
use teloxide::types::{AllowedUpdate, CallbackQueryId, FileId, Update, UpdateKind, UserId};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use url::Url;

use super::mapping::{Draft, Mapped, Media, classify, map_update};
use crate::files::{FileError, FileServer};
use crate::ingest::{Ingest, Settled, UpdateError};
use crate::platform::SendError;

/// Updates the hub asks Telegram for.
pub const ALLOWED_UPDATES: &[AllowedUpdate] =
    &[AllowedUpdate::Message, AllowedUpdate::EditedMessage, AllowedUpdate::CallbackQuery, AllowedUpdate::MyChatMember];

/// After this many failed tries of one update, a file that cannot be fetched no longer holds
/// the message back: it is stored with a note instead.
const FETCH_TRIES: u32 = 5;

/// Chats handled at once within one batch of updates (one chat's updates stay in order); their
/// messages reach the store together ([`Ingest`] batches what arrives at the same time).
const CHATS_AT_ONCE: usize = 100;

/// Handles updates of one account.
pub struct Receiver {
    bot: Bot,
    /// `getUpdates` is called directly, for the raw JSON: the Bot API's base URL and token.
    api_url: Url,
    token: String,
    http: reqwest::Client,
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
    pub fn new(bot: Bot, api_url: Url, token: String, ingest: Ingest, files: FileServer, max_download: u64) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(90))
            .build()
            .expect("a plain HTTP client builds");
        Receiver { bot, api_url, token, http, ingest, files, max_download, avatars: Mutex::new(HashSet::new()) }
    }

    /// One update as raw JSON (a webhook body): stored, or parked when it never can be. `Err`
    /// only when it should be delivered again (nothing acknowledged).
    pub async fn accept_raw(&self, raw: &[u8]) -> Result<(), UpdateError> {
        let (key, parsed) = parse(raw);
        let result = match parsed {
            Ok(update) => self.handle(&update, self.ingest.tries(&key)).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.ingest.succeeded(&key);
                Ok(())
            }
            Err(e) => self.ingest.settle(&key, raw, e).await.map(|Settled::Parked(_)| ()),
        }
    }

    /// One raw update, stored or its error returned (a dead letter's replay).
    pub async fn handle_raw(&self, raw: &[u8]) -> Result<(), UpdateError> {
        let (_, parsed) = parse(raw);
        self.handle(&parsed?, 0).await
    }

    /// Handles one update. `Ok` once everything it implies is committed: the caller may then
    /// acknowledge it. `tries` counts earlier failed tries of the same update.
    pub async fn handle(&self, update: &Update, tries: u32) -> Result<(), UpdateError> {
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

    async fn store(&self, mut draft: Draft, tries: u32) -> Result<(), UpdateError> {
        // a repeat of a stored message is absorbed by the store's unique key; with media, look
        // first, so the file is not fetched again for nothing
        if draft.media.is_some() && self.ingest.known(&draft.message.external_message_id).await? {
            return Ok(());
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
    async fn fetch(&self, media: &Media, tries: u32) -> Result<Fetch, UpdateError> {
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
                    _ => Err(UpdateError::Transient(format!("getFile: {e}"))),
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
            return Err(UpdateError::Transient(format!("download: {e}")));
        }
        match self.files.upload(&media.name, &media.mime, bytes.into()).await {
            Ok(uploaded) => Ok(Fetch::Stored(uploaded.to_ref())),
            Err(FileError::Refused(reason)) => Ok(Fetch::Unavailable(format!("the file server refused it: {reason}"))),
            Err(e @ FileError::NoSecret) => Ok(Fetch::Unavailable(e.to_string())),
            Err(e) if give_up => Ok(Fetch::Unavailable(format!("the file server did not take it: {e}"))),
            Err(e) => Err(UpdateError::Transient(e.to_string())),
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

/// An update's key (its `update_id`, for logs and dead letters) and the update, or why it
/// cannot be read: not JSON, no `update_id`, or a kind teloxide cannot parse (Telegram sent
/// something malformed, or newer than this build).
pub fn parse(raw: &[u8]) -> (String, Result<Update, UpdateError>) {
    #[derive(Deserialize)]
    struct Id {
        update_id: serde_json::Value,
    }
    let key = match serde_json::from_slice::<Id>(raw) {
        Ok(id) => id.update_id.to_string(),
        Err(_) => format!("unreadable-{}", raw.len()),
    };
    let parsed = match serde_json::from_slice::<Update>(raw) {
        Ok(update) if matches!(update.kind, UpdateKind::Error(_)) => {
            // teloxide reads a malformed known kind as an empty `Error`; only the raw JSON is left
            let known = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(raw)
                .map(|m| m.keys().filter(|k| *k != "update_id").cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            if ALLOWED_UPDATES.iter().any(|a| known == allowed_name(a)) {
                Err(UpdateError::Permanent(format!("a {known} update this build cannot read")))
            } else {
                Ok(update)
            }
        }
        Ok(update) => Ok(update),
        Err(e) => Err(UpdateError::Permanent(format!("not a Telegram update: {e}"))),
    };
    (key, parsed)
}

fn allowed_name(update: &AllowedUpdate) -> String {
    serde_json::to_value(update).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The key that keeps one chat's updates in order.
fn chat_key(update: &Result<Update, UpdateError>, key: &str) -> String {
    match update {
        Ok(update) => update
            .chat()
            .map(|c| c.id.0)
            .or_else(|| update.from().map(|u| u.id.0 as i64))
            .map(|id| id.to_string())
            .unwrap_or_else(|| key.to_owned()),
        Err(_) => key.to_owned(),
    }
}

/// One update of a batch: its key, raw JSON and the parsed update.
struct Raw {
    key: String,
    json: Vec<u8>,
    update: Result<Update, UpdateError>,
}

/// Handles a batch: chats concurrently, each chat's updates in order; an update is retried
/// until it is stored or parked. Returns `false` if `stop` ended it first (nothing may be
/// acknowledged).
async fn handle_batch(receiver: &Receiver, updates: Vec<Raw>, stop: &CancellationToken) -> bool {
    let chats = crate::ingest::by_chat(updates, |raw| chat_key(&raw.update, &raw.key));
    let done = futures::stream::iter(chats)
        .map(|queue| async move {
            for raw in queue {
                let update = &raw.update;
                let settled = receiver
                    .ingest
                    .until_settled(&raw.key, &raw.json, stop, |tries| async move {
                        match update {
                            Ok(update) => receiver.handle(update, tries).await,
                            Err(e) => Err(e.clone()),
                        }
                    })
                    .await;
                if !settled {
                    return false;
                }
            }
            true
        })
        .buffer_unordered(CHATS_AT_ONCE)
        .collect::<Vec<bool>>()
        .await;
    done.into_iter().all(|ok| ok)
}

/// Why a `getUpdates` call failed.
#[derive(Debug)]
enum PollError {
    /// 429: wait this long.
    RetryAfter(Duration),
    /// 409: another poller, or a webhook is set.
    Conflict(String),
    Other(String),
}

impl std::fmt::Display for PollError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PollError::RetryAfter(wait) => write!(f, "rate limited: retry after {wait:?}"),
            PollError::Conflict(why) | PollError::Other(why) => f.write_str(why),
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    ok: bool,
    #[serde(default)]
    result: Vec<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    error_code: Option<u16>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

#[derive(Deserialize)]
struct Parameters {
    retry_after: Option<u64>,
}

impl Receiver {
    /// `getUpdates` from `offset`, each update as the raw JSON Telegram sent.
    async fn get_updates(&self, offset: i64, timeout_s: u32) -> Result<Vec<Raw>, PollError> {
        let mut url = self.api_url.clone();
        url.path_segments_mut()
            .map_err(|_| PollError::Other("the Bot API URL cannot take a path".into()))?
            .pop_if_empty()
            .push(&format!("bot{}", self.token))
            .push("getUpdates");
        let allowed: Vec<String> = ALLOWED_UPDATES.iter().map(allowed_name).collect();
        let body = serde_json::json!({ "offset": offset, "timeout": timeout_s, "allowed_updates": allowed });
        let response = self
            .http
            .post(url)
            .timeout(Duration::from_secs(u64::from(timeout_s) + 30))
            .json(&body)
            .send()
            .await
            .map_err(|e| PollError::Other(format!("network error: {}", e.without_url())))?;
        let status = response.status();
        let bytes =
            response.bytes().await.map_err(|e| PollError::Other(format!("network error: {}", e.without_url())))?;
        let answer: Answer = serde_json::from_slice(&bytes)
            .map_err(|e| PollError::Other(format!("unreadable getUpdates answer ({status}): {e}")))?;
        if !answer.ok {
            let description = answer.description.unwrap_or_else(|| status.to_string());
            return Err(match (answer.error_code, answer.parameters.and_then(|p| p.retry_after)) {
                (_, Some(secs)) => PollError::RetryAfter(Duration::from_secs(secs.max(1))),
                (Some(409), _) => PollError::Conflict(description),
                _ => PollError::Other(description),
            });
        }
        Ok(answer
            .result
            .into_iter()
            .map(|raw| {
                let json = raw.get().as_bytes().to_vec();
                let (key, update) = parse(&json);
                Raw { key, json, update }
            })
            .collect())
    }
}

/// Long polling until `stop`: `getUpdates` from the last acknowledged offset, handle the batch,
/// then move the offset past it (the next `getUpdates` confirms the batch to Telegram).
pub async fn poll(receiver: &Receiver, timeout_s: u32, stop: &CancellationToken) {
    // getUpdates does not work while a webhook is set
    match receiver.bot.delete_webhook().await {
        Ok(_) => {}
        Err(e) => warn!(error = %e, "deleteWebhook failed; polling anyway"),
    }
    let mut offset: i64 = 0;
    let mut failures: u32 = 0;
    info!(timeout_s, "long polling started");
    loop {
        let answer = tokio::select! {
            _ = stop.cancelled() => return,
            answer = receiver.get_updates(offset, timeout_s) => answer,
        };
        let updates = match answer {
            Ok(updates) => {
                failures = 0;
                updates
            }
            Err(e) => {
                failures += 1;
                let wait = match &e {
                    PollError::RetryAfter(wait) => *wait,
                    // another poller: during a failover, the old leader's last request
                    PollError::Conflict(_) => Duration::from_secs(1),
                    PollError::Other(_) => crate::pacing::backoff(failures).min(Duration::from_secs(30)),
                };
                warn!(error = %e, ?wait, "getUpdates failed");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        // the offset moves past the batch's largest readable update_id
        let next = updates.iter().filter_map(|u| u.key.parse::<i64>().ok()).max().map(|last| last + 1);
        let Some(next) = next else {
            if !updates.is_empty() {
                warn!(count = updates.len(), "getUpdates answered updates without a readable update_id");
            }
            continue;
        };
        if !handle_batch(receiver, updates, stop).await {
            return;
        }
        offset = next;
        metrics::gauge!("switchboard_telegram_update_offset", "account" => receiver.ingest.account_id().to_string())
            .set(offset as f64);
    }
}
