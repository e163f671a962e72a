//! The OK side of inbound: one update, whichever way it came; the webhook inbox the leader drains;
//! the long poll; the webhook subscription.
//!
//! **Webhooks.** OK wants a 200 within 5 seconds and signs nothing. The route checks the path
//! token and the source address (`mod.rs`), then commits the delivery as it came into `ok_inbox`
//! and answers 200; the leader's inbox worker stores each delivery (its media fetched into the
//! file server first, which may take longer than OK waits) and removes it. A leader that dies
//! leaves its rows to the next; a row stored twice is absorbed by the unique key on `mid`.
//!
//! **Long polling.** `GET graph/me/updates?marker&count&timeout` read as raw JSON, so an update
//! that cannot be stored keeps its exact bytes when parked; the marker is stored in PostgreSQL
//! only after every update read before it is committed (or parked).
//!
//! **Subscription.** Each leadership term subscribes (`POST graph/me/subscribe`: the webhook URL
//! with its token, or `longPolling: true`), then checks `GET graph/me/subscriptions` every
//! `subscription_check_s` and subscribes again when OK no longer lists the URL. The account's
//! earlier webhook URLs (another token) are unsubscribed.

use std::time::Duration;

use futures::StreamExt;
use schema::store;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use url::Url;

use super::api::Api;
use super::mapping::{Draft, Media, Update, WEBHOOK_TYPES, parse_update};
use crate::files::FileServer;
use crate::ingest::{Ingest, UpdateError};
use crate::media::{Download, Fetch};

/// After this many failed tries of one update, a file that cannot be fetched no longer holds the
/// message back: it is stored with a note instead.
const FETCH_TRIES: u32 = 5;
/// Customers handled at once within one batch (one customer's updates stay in order).
const CHATS_AT_ONCE: usize = 8;
/// Inbox rows (or long-poll updates) taken at once.
const BATCH: usize = 100;
/// The inbox is read again this often even when nobody rings (a row a deposed leader
/// committed late, say).
const INBOX_TICK: Duration = Duration::from_secs(1);

/// Handles the updates of one account.
pub struct Receiver {
    api: Api,
    /// Downloads of OK's files.
    http: reqwest::Client,
    ingest: Ingest,
    files: FileServer,
    pool: PgPool,
    max_download: u64,
    /// Rung when a webhook delivery is committed to the inbox.
    inbox: Notify,
    /// The callback answer's notification (`settings.callback_answer`).
    callback_answer: Option<String>,
}

impl Receiver {
    pub fn new(
        api: Api,
        ingest: Ingest,
        files: FileServer,
        pool: PgPool,
        max_download: u64,
        callback_answer: Option<String>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(900))
            .build()
            .expect("a plain HTTP client builds");
        Receiver { api, http, ingest, files, pool, max_download, inbox: Notify::new(), callback_answer }
    }

    pub fn api(&self) -> &Api {
        &self.api
    }

    /// Keeps a verified webhook delivery (committed) for the leader's inbox worker.
    pub async fn keep(&self, raw: &[u8]) -> Result<i64, UpdateError> {
        let mut conn = self.pool.acquire().await.map_err(|e| UpdateError::Transient(e.to_string()))?;
        let id = store::push_ok_inbox(&mut conn, self.ingest.account_id(), raw).await?;
        self.inbox.notify_one();
        Ok(id)
    }

    /// One raw update, handled or its error returned (a dead letter's replay).
    pub async fn handle_raw(&self, raw: &[u8]) -> Result<(), UpdateError> {
        let (_, parsed) = parse_update(self.ingest.account_id(), raw);
        self.handle(parsed.map_err(UpdateError::Permanent)?, 0).await
    }

    /// Handles one update. `Ok` once everything it implies is committed. `tries` counts earlier
    /// failed tries of the same update.
    pub async fn handle(&self, update: Update, tries: u32) -> Result<(), UpdateError> {
        match update {
            Update::Message(draft) => self.store(*draft, tries).await,
            Update::Press { draft, callback_id, chat_id } => {
                self.store(*draft, tries).await?;
                // the button stops spinning; a press too old to answer is no reason to fail
                let body = match &self.callback_answer {
                    Some(text) => json!({"notification": text}),
                    None => json!({}),
                };
                if let Err(e) = self
                    .api
                    .post("answer", &[chat_id.as_str(), "answer"], &[("callbackId", callback_id.clone())], &body)
                    .await
                {
                    debug!(%callback_id, error = %e, "the callback answer failed");
                }
                Ok(())
            }
            Update::System { sender, kind } => {
                if let Some(sender) = sender {
                    self.ingest.customer(&sender).await?;
                    info!(account = %self.ingest.account_id(), customer = %sender.external_id, %kind, "an OK chat event: the customer is recorded");
                }
                Ok(())
            }
            Update::Ignore(why) => {
                debug!(%why, "update ignored");
                Ok(())
            }
        }
    }

    async fn store(&self, mut draft: Draft, tries: u32) -> Result<(), UpdateError> {
        if self.ingest.known(&draft.message.external_message_id).await? {
            return Ok(()); // delivered again: already stored, nothing to fetch
        }
        for media in std::mem::take(&mut draft.media) {
            match self.fetch(&media, tries).await? {
                Fetch::Stored(file) => draft.message.file_ids.push(file.id),
                Fetch::Unavailable(note) => {
                    let text = draft.message.text.take().map(|t| format!("{t}\n")).unwrap_or_default();
                    draft.message.text = Some(format!("{text}[{}: {note}]", media.name));
                }
            }
        }
        self.ingest.message(&draft.message).await?;
        Ok(())
    }

    /// OK's link -> the file server, streamed, at most `max_download` bytes.
    async fn fetch(&self, media: &Media, tries: u32) -> Result<Fetch, UpdateError> {
        let download = Download {
            platform: "OK",
            name: &media.name,
            mime: &media.mime,
            size: None,
            limit: self.max_download,
            last_try: tries + 1 >= FETCH_TRIES,
        };
        download.from_url(&self.http, &media.url, &self.files).await
    }
}

// ------------------------------------------------------------------------------ batches --

/// One update of a batch: its key, raw JSON, what it means, and its inbox row if it has one.
struct Raw {
    key: String,
    json: Vec<u8>,
    update: Result<Update, UpdateError>,
    row: Option<i64>,
}

impl Raw {
    fn new(receiver: &Receiver, json: Vec<u8>, row: Option<i64>) -> Raw {
        let (key, update) = parse_update(receiver.ingest.account_id(), &json);
        Raw { key, json, update: update.map_err(UpdateError::Permanent), row }
    }
}

/// Handles a batch: customers concurrently, each one's updates in order; an update is retried
/// until it is stored or parked. Returns the inbox rows done and whether the batch was finished
/// (`false` if `stop` ended it first: then a position must not move).
async fn handle_batch(receiver: &Receiver, updates: Vec<Raw>, stop: &CancellationToken) -> (Vec<i64>, bool) {
    let chats = crate::ingest::by_chat(updates, |raw| {
        raw.update.as_ref().ok().and_then(Update::chat_key).unwrap_or_else(|| raw.key.clone())
    });
    let results = futures::stream::iter(chats)
        .map(|queue| async move {
            let mut done = Vec::new();
            for raw in queue {
                let settled = receiver
                    .ingest
                    .until_settled(&raw.key, &raw.json, stop, |tries| {
                        let update = raw.update.clone();
                        async move {
                            match update {
                                Ok(update) => receiver.handle(update, tries).await,
                                Err(e) => Err(e),
                            }
                        }
                    })
                    .await;
                if !settled {
                    return (done, false);
                }
                done.extend(raw.row);
            }
            (done, true)
        })
        .buffer_unordered(CHATS_AT_ONCE)
        .collect::<Vec<(Vec<i64>, bool)>>()
        .await;
    let finished = results.iter().all(|(_, ok)| *ok);
    (results.into_iter().flat_map(|(rows, _)| rows).collect(), finished)
}

/// Retries a store call until it works or `stop` (`None`).
async fn retrying<T, F, Fut>(what: &str, stop: &CancellationToken, mut call: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, store::StoreError>>,
{
    let mut failures = 0;
    loop {
        match call().await {
            Ok(value) => return Some(value),
            Err(e) => {
                failures += 1;
                let wait = crate::pacing::backoff(failures).min(Duration::from_secs(10));
                warn!(error = %e, ?wait, "cannot {what} yet");
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// The webhook inbox, drained until `stop`: the oldest waiting deliveries, handled, removed.
pub async fn drain_inbox(receiver: &Receiver, stop: &CancellationToken) {
    let account = receiver.ingest.account_id();
    loop {
        let pool = &receiver.pool;
        let Some(rows) = retrying("read the webhook inbox", stop, || async move {
            let mut conn = pool.acquire().await?;
            store::ok_inbox_after(&mut conn, account, 0, BATCH as i64).await
        })
        .await
        else {
            return;
        };
        if rows.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = receiver.inbox.notified() => {}
                _ = tokio::time::sleep(INBOX_TICK) => {}
            }
            continue;
        }
        let batch: Vec<Raw> = rows.into_iter().map(|r| Raw::new(receiver, r.payload, Some(r.id))).collect();
        let (done, finished) = handle_batch(receiver, batch, stop).await;
        if !done.is_empty() {
            let done = &done;
            // removed even when stopping: what is stored must not be fetched again
            let never = CancellationToken::new();
            let removed = retrying("remove stored webhook deliveries", &never, || async move {
                let mut conn = pool.acquire().await?;
                store::remove_ok_inbox(&mut conn, account, done).await
            });
            let _ = tokio::time::timeout(Duration::from_secs(10), removed).await;
        }
        if !finished {
            return;
        }
    }
}

// ---------------------------------------------------------------------------- long poll --

/// What an updates call answered.
#[derive(Debug)]
struct Page {
    updates: Vec<Box<serde_json::value::RawValue>>,
    marker: Option<String>,
}

fn marker_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn read_page(body: &[u8]) -> Result<Page, String> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        updates: Option<Vec<Box<serde_json::value::RawValue>>>,
        #[serde(default)]
        marker: Option<Value>,
    }
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        format!("unreadable updates answer ({e}): {}", String::from_utf8_lossy(&body[..body.len().min(200)]))
    })?;
    Ok(Page { updates: answer.updates.unwrap_or_default(), marker: answer.marker.as_ref().and_then(marker_string) })
}

/// Long polling until `stop`: from the stored marker (a new account: from what OK gives),
/// ask, handle the batch, store the marker, ask again.
pub async fn poll(receiver: &Receiver, timeout_s: u32, stop: &CancellationToken) {
    let account = receiver.ingest.account_id();
    let pool = &receiver.pool;
    let Some(mut marker) = retrying("read the long-poll marker", stop, || async move {
        let mut conn = pool.acquire().await?;
        store::ok_long_poll_marker(&mut conn, account).await
    })
    .await
    else {
        return;
    };
    info!(%account, timeout_s, from = ?marker, "OK long polling started");
    let mut failures: u32 = 0;
    loop {
        let mut query = vec![("count", BATCH.to_string()), ("timeout", timeout_s.to_string())];
        if let Some(m) = &marker {
            query.push(("marker", m.clone()));
        }
        let answer = tokio::select! {
            _ = stop.cancelled() => return,
            answer = receiver.api.get_bytes("updates", &["me", "updates"], &query, Some(Duration::from_secs(u64::from(timeout_s) + 20))) => answer,
        };
        let page = match answer.map_err(|e| e.to_string()).and_then(|body| read_page(&body)) {
            Ok(page) => {
                failures = 0;
                page
            }
            Err(e) => {
                failures += 1;
                let wait = crate::pacing::backoff(failures).min(Duration::from_secs(30));
                warn!(%account, error = %e, ?wait, "OK updates failed");
                if e.to_ascii_lowercase().contains("subscri") {
                    subscribe(receiver, &Subscription::LongPoll).await;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        if !page.updates.is_empty() {
            let batch: Vec<Raw> =
                page.updates.into_iter().map(|raw| Raw::new(receiver, raw.get().as_bytes().to_vec(), None)).collect();
            let (_, finished) = handle_batch(receiver, batch, stop).await;
            if !finished {
                return;
            }
        }
        if let Some(next) = page.marker
            && marker.as_deref() != Some(next.as_str())
        {
            let next_ref = &next;
            if retrying("store the long-poll marker", stop, || async move {
                let mut conn = pool.acquire().await?;
                store::set_ok_long_poll_marker(&mut conn, account, next_ref).await
            })
            .await
            .is_none()
            {
                return;
            }
            if let Ok(n) = next.parse::<f64>() {
                metrics::gauge!("switchboard_ok_long_poll_marker", "account" => account.to_string()).set(n);
            }
            marker = Some(next);
        }
    }
}

// ------------------------------------------------------------------------- subscription --

/// How the account subscribes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// OK posts to this URL (with its token).
    Webhook(Url),
    LongPoll,
}

/// Subscribes; `true` when OK says so.
pub async fn subscribe(receiver: &Receiver, how: &Subscription) -> bool {
    let account = receiver.ingest.account_id();
    let body = match how {
        Subscription::Webhook(url) => json!({"url": url.as_str()}),
        Subscription::LongPoll => json!({"types": WEBHOOK_TYPES, "longPolling": true}),
    };
    match receiver.api.post("subscribe", &["me", "subscribe"], &[], &body).await {
        Ok(answer) if answer.get("success").and_then(Value::as_bool) == Some(true) => {
            metrics::counter!("switchboard_ok_subscriptions_total", "account" => account.to_string()).increment(1);
            true
        }
        Ok(answer) => {
            warn!(%account, %answer, "OK did not confirm the subscription");
            false
        }
        Err(e) => {
            warn!(%account, error = %e, "OK subscription failed");
            false
        }
    }
}

/// The URLs OK lists for the group's subscriptions; `None` when it cannot be asked now.
async fn subscriptions(receiver: &Receiver) -> Option<Vec<String>> {
    match receiver.api.get("subscriptions", &["me", "subscriptions"], &[], None).await {
        Ok(answer) => Some(
            answer
                .get("subscriptions")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter().filter_map(|s| s.get("url").and_then(Value::as_str).map(str::to_owned)).collect()
                })
                .unwrap_or_default(),
        ),
        Err(e) => {
            warn!(account = %receiver.ingest.account_id(), error = %e, "cannot read OK's subscriptions");
            None
        }
    }
}

/// The same webhook route, whatever the query (an earlier token).
fn same_route(a: &str, b: &Url) -> bool {
    Url::parse(a).is_ok_and(|a| {
        a.scheme() == b.scheme()
            && a.host() == b.host()
            && a.port_or_known_default() == b.port_or_known_default()
            && a.path() == b.path()
    })
}

/// Subscribes at once (unless `subscribed` already), then keeps the subscription until `stop`:
/// every `every`, when OK no longer lists the webhook URL, subscribes again. The account's webhook URLs with another
/// token are unsubscribed.
pub async fn keep_subscribed(
    receiver: &Receiver,
    how: Subscription,
    every: Duration,
    subscribed: bool,
    stop: &CancellationToken,
) {
    let account = receiver.ingest.account_id();
    let mut subscribed = subscribed;
    let mut failures = 0u32;
    loop {
        if !subscribed {
            subscribed = subscribe(receiver, &how).await;
            if subscribed {
                failures = 0;
                match &how {
                    Subscription::Webhook(url) => info!(%account, route = %url.path(), "OK webhook subscribed"),
                    Subscription::LongPoll => info!(%account, "OK long polling subscribed"),
                }
            }
        }
        if subscribed && let Subscription::Webhook(url) = &how {
            match subscriptions(receiver).await {
                Some(urls) if urls.iter().any(|u| u == url.as_str()) => {
                    for old in urls.iter().filter(|u| *u != url.as_str() && same_route(u, url)) {
                        info!(%account, "unsubscribing this account's earlier OK webhook URL");
                        if let Err(e) =
                            receiver.api.post("unsubscribe", &["me", "unsubscribe"], &[], &json!({"url": old})).await
                        {
                            warn!(%account, error = %e, "OK unsubscribe failed");
                        }
                    }
                }
                Some(_) => {
                    warn!(%account, "OK no longer lists the webhook: subscribing again");
                    metrics::counter!("switchboard_ok_resubscribed_total", "account" => account.to_string())
                        .increment(1);
                    subscribed = subscribe(receiver, &how).await;
                }
                None => {}
            }
        }
        let wait = if subscribed {
            every
        } else {
            failures += 1;
            crate::pacing::backoff(failures).min(Duration::from_secs(60))
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_pages() {
        let page =
            read_page(br#"{"updates":[{"webhookType":"MESSAGE_CREATED"},{"x":1}],"marker":"1767312000500"}"#).unwrap();
        assert_eq!(page.updates.len(), 2);
        assert_eq!(page.updates[1].get(), r#"{"x":1}"#, "each update keeps its exact bytes");
        assert_eq!(page.marker.as_deref(), Some("1767312000500"));
        let page = read_page(br#"{"updates":[],"marker":42}"#).unwrap();
        assert_eq!(page.marker.as_deref(), Some("42"));
        assert!(read_page(br#"{}"#).unwrap().updates.is_empty());
        assert!(read_page(b"<html>").is_err());
    }

    #[test]
    fn the_account_s_earlier_urls_are_the_same_route() {
        let url = Url::parse("https://hub.example/api/v1/connectors/a/ok?token=new").unwrap();
        assert!(same_route("https://hub.example/api/v1/connectors/a/ok?token=old", &url));
        assert!(!same_route("https://hub.example/api/v1/connectors/b/ok?token=old", &url));
        assert!(!same_route("https://other.example/api/v1/connectors/a/ok?token=old", &url));
        assert!(!same_route("not a url", &url));
    }
}
