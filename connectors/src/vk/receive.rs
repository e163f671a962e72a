//! The VK side of inbound: the Bots Long Poll (the default) and the handling of one update,
//! whichever way it came (long poll, or a Callback API request).
//!
//! Long polling reads the check's answer as raw JSON, so an update that cannot be read or stored
//! keeps its exact payload when it is parked, and the poll moves on. The position (`ts`) is
//! stored in PostgreSQL **only after every update of a batch is committed** (or parked): a new
//! leader starts from there, and what the old one stored after it is absorbed by the unique keys.
//! `failed` answers are handled as VK documents them: 1 continues from the `ts` given, 2 asks
//! for a new key and keeps the `ts`, 3 asks for a new key and `ts`.
//!
//! Files are fetched from VK and streamed into the file server *before* the message is stored.
//! VK messages carry no name: a customer this process does not know is looked up in the store,
//! and a new one with `users.get` (name, `photo_200` copied into the file server).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use schema::store::{self, Sender};
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::api::{Api, CallError};
use super::mapping::{Draft, EVENTS, Media, Profile, Update, parse_update};
use crate::files::FileServer;
use crate::ingest::{Ingest, Settled, UpdateError};
use crate::media::{Download, Fetch};

/// After this many failed tries of one update, a file (or a name) that cannot be fetched no
/// longer holds the message back: it is stored with a note (or a placeholder name) instead.
const FETCH_TRIES: u32 = 5;
/// Customers handled at once within one batch of updates (one customer's updates stay in order).
const CHATS_AT_ONCE: usize = 8;
/// Names this process keeps at most before it starts over.
const NAMES_KEPT: usize = 10_000;

/// Handles the updates of one account.
pub struct Receiver {
    api: Api,
    /// Downloads of VK's files (which need no token).
    http: reqwest::Client,
    ingest: Ingest,
    files: FileServer,
    pool: PgPool,
    group_id: i64,
    max_download: u64,
    /// Customers this process has named and whose avatar it looked at (std mutex: lookups and
    /// inserts, never held across an await).
    names: Mutex<HashMap<i64, String>>,
}

impl Receiver {
    pub fn new(api: Api, ingest: Ingest, files: FileServer, pool: PgPool, group_id: i64, max_download: u64) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(900))
            .build()
            .expect("a plain HTTP client builds");
        Receiver { api, http, ingest, files, pool, group_id, max_download, names: Mutex::new(HashMap::new()) }
    }

    pub fn api(&self) -> &Api {
        &self.api
    }

    pub fn group_id(&self) -> i64 {
        self.group_id
    }

    /// One update as raw JSON (a Callback API body): handled, or parked when it never can be.
    /// `Err` only when VK should deliver it again (nothing acknowledged).
    pub async fn accept(&self, raw: &[u8]) -> Result<(), UpdateError> {
        let (key, parsed) = parse_update(self.ingest.account_id(), raw);
        let result = match parsed {
            Ok(update) => self.handle(update, self.ingest.tries(&key)).await,
            Err(why) => Err(UpdateError::Permanent(why)),
        };
        match result {
            Ok(()) => {
                self.ingest.succeeded(&key);
                Ok(())
            }
            Err(e) => self.ingest.settle(&key, raw, e).await.map(|Settled::Parked(_)| ()),
        }
    }

    /// One raw update, handled or its error returned (a dead letter's replay).
    pub async fn handle_raw(&self, raw: &[u8]) -> Result<(), UpdateError> {
        let (_, parsed) = parse_update(self.ingest.account_id(), raw);
        self.handle(parsed.map_err(UpdateError::Permanent)?, 0).await
    }

    /// Handles one update. `Ok` once everything it implies is committed: the caller may then
    /// acknowledge it. `tries` counts earlier failed tries of the same update.
    pub async fn handle(&self, update: Update, tries: u32) -> Result<(), UpdateError> {
        match update {
            Update::Message(draft) => self.store(*draft, tries).await,
            Update::Edit { external_message_id, text } => {
                if !self.ingest.edit(&external_message_id, &text).await? {
                    debug!(%external_message_id, "edit of a message never stored; ignored");
                }
                Ok(())
            }
            Update::Echo { message_id } => {
                // the community's own message: stored when the hub sent it (or written in VK's
                // own interface, which the hub does not show)
                debug!(message_id, "the community's own message echoed; not stored again");
                Ok(())
            }
            Update::Allow { user_id } => {
                let sender = self.sender(user_id, tries).await?;
                self.ingest.customer(&sender).await?;
                self.permission(user_id, true).await?;
                info!(account = %self.ingest.account_id(), user_id, "a customer allowed messages from the community");
                Ok(())
            }
            Update::Deny { user_id } => {
                self.permission(user_id, false).await?;
                info!(account = %self.ingest.account_id(), user_id, "a customer turned off messages from the community");
                Ok(())
            }
            Update::ButtonPress { draft, event_id, user_id, peer_id } => {
                self.store(*draft, tries).await?;
                // the button stops spinning; an event too old to answer is no reason to fail
                let answer =
                    [("event_id", event_id), ("user_id", user_id.to_string()), ("peer_id", peer_id.to_string())];
                if let Err(e) = self.api.call("messages.sendMessageEventAnswer", &answer).await {
                    debug!(error = %e, "messages.sendMessageEventAnswer failed");
                }
                Ok(())
            }
            Update::Confirmation => Ok(()),
            Update::Ignore(why) => {
                debug!(%why, "update ignored");
                Ok(())
            }
        }
    }

    async fn permission(&self, user_id: i64, allowed: bool) -> Result<(), UpdateError> {
        let mut conn = self.pool.acquire().await.map_err(|e| UpdateError::Transient(e.to_string()))?;
        store::set_vk_permission(&mut conn, self.ingest.account_id(), &user_id.to_string(), allowed).await?;
        Ok(())
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
        if let (Some(forwarded), Some(author)) = (draft.message.forwarded.as_mut(), draft.forwarded_from) {
            forwarded.from_name = self.name_of(author).await;
        }
        draft.message.sender = self.sender(draft.user_id, tries).await?;
        self.ingest.message(&draft.message).await?;
        // writing to the community lets it answer: a refusal recorded before is lifted
        let mut conn = self.pool.acquire().await.map_err(|e| UpdateError::Transient(e.to_string()))?;
        if store::lift_vk_denial(&mut conn, self.ingest.account_id(), &draft.message.sender.external_id).await? {
            info!(account = %self.ingest.account_id(), user_id = draft.user_id, "a customer who had turned messages off wrote: they may be answered");
        }
        Ok(())
    }

    /// The customer as the store takes them: their name (VK's messages carry none) and, the
    /// first time this process sees a customer without one, their avatar copied into the file
    /// server. Known customers are named from the store; new ones by `users.get`.
    async fn sender(&self, user_id: i64, tries: u32) -> Result<Sender, UpdateError> {
        let external_id = user_id.to_string();
        if let Some(name) = self.names.lock().unwrap_or_else(|e| e.into_inner()).get(&user_id) {
            return Ok(Sender { external_id, name: name.clone(), ..Sender::default() });
        }
        let known = {
            let mut conn = self.pool.acquire().await.map_err(|e| UpdateError::Transient(e.to_string()))?;
            store::vk_customer(&mut conn, self.ingest.account_id(), &external_id).await?
        };
        let mut sender = Sender { external_id, ..Sender::default() };
        match known {
            Some(customer) if customer.avatar_url.is_some() => sender.name = customer.name,
            known => {
                let profile = self
                    .api
                    .call("users.get", &[("user_ids", user_id.to_string()), ("fields", "photo_200".into())])
                    .await
                    .and_then(|users| {
                        serde_json::from_value::<Vec<Profile>>(users)
                            .map_err(|e| CallError::Transport(format!("unreadable users.get answer: {e}")))
                    })
                    .map(|mut users| if users.is_empty() { None } else { Some(users.remove(0)) });
                match (profile, known) {
                    (Ok(profile), known) => {
                        let profile = profile.unwrap_or(Profile { id: user_id, ..Profile::default() });
                        sender.name = known.map(|k| k.name).unwrap_or_else(|| profile.name());
                        if let Some(photo) = profile.photo() {
                            sender.avatar_url = self.avatar(user_id, photo).await;
                        }
                    }
                    // a known customer keeps their name; the avatar waits for another process
                    (Err(e), Some(known)) => {
                        debug!(user_id, error = %e, "users.get failed; no avatar this time");
                        sender.name = known.name;
                    }
                    (Err(e), None) if tries + 1 < FETCH_TRIES => {
                        return Err(UpdateError::Transient(format!("users.get for {user_id}: {e}")));
                    }
                    (Err(e), None) => {
                        warn!(user_id, error = %e, "users.get keeps failing: the customer is stored without a name");
                        sender.name = format!("VK user {user_id}");
                        return Ok(sender);
                    }
                }
            }
        }
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if names.len() >= NAMES_KEPT {
            names.clear();
        }
        names.insert(user_id, sender.name.clone());
        Ok(sender)
    }

    /// The author of a forwarded message, by name when VK tells it.
    async fn name_of(&self, author: i64) -> Option<String> {
        if author < 0 {
            return Some(format!("VK community {}", -author));
        }
        if let Some(name) = self.names.lock().unwrap_or_else(|e| e.into_inner()).get(&author) {
            return Some(name.clone());
        }
        match self.api.call("users.get", &[("user_ids", author.to_string())]).await {
            Ok(users) => serde_json::from_value::<Vec<Profile>>(users).ok()?.first().map(Profile::name),
            Err(e) => {
                debug!(author, error = %e, "users.get for a forwarded message's author failed");
                Some(format!("VK user {author}"))
            }
        }
    }

    /// The customer's photo copied into the file server; `None` when it cannot be.
    async fn avatar(&self, user_id: i64, url: &str) -> Option<String> {
        let media =
            Media { url: url.to_owned(), size: None, name: format!("avatar_{user_id}.jpg"), mime: "image/jpeg".into() };
        match self.fetch(&media, FETCH_TRIES).await {
            Ok(Fetch::Stored(file)) => Some(file.url),
            Ok(Fetch::Unavailable(why)) => {
                debug!(user_id, %why, "no avatar");
                None
            }
            Err(e) => {
                debug!(user_id, error = %e, "no avatar");
                None
            }
        }
    }

    /// VK's link -> the file server, streamed, at most `max_download` bytes.
    async fn fetch(&self, media: &Media, tries: u32) -> Result<Fetch, UpdateError> {
        let download = Download {
            platform: "VK",
            name: &media.name,
            mime: &media.mime,
            size: media.size,
            limit: self.max_download,
            last_try: tries + 1 >= FETCH_TRIES,
        };
        download.from_url(&self.http, &media.url, &self.files).await
    }
}

// --------------------------------------------------------------------------- long poll --

/// One update of a batch: its key, raw JSON and what it means.
struct Raw {
    key: String,
    json: Vec<u8>,
    update: Result<Update, UpdateError>,
}

/// Handles a batch: customers concurrently, each one's updates in order; an update is retried
/// until it is stored or parked. Returns `false` if `stop` ended it first (then the position
/// must not move).
async fn handle_batch(receiver: &Receiver, updates: Vec<Raw>, stop: &CancellationToken) -> bool {
    let chats = crate::ingest::by_chat(updates, |raw| {
        raw.update.as_ref().ok().and_then(Update::chat_key).unwrap_or_else(|| raw.key.clone())
    });
    let done = futures::stream::iter(chats)
        .map(|queue| async move {
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

/// `ts` as VK gives it: a number or a string.
fn ts_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What a long-poll check answered.
#[derive(Debug)]
enum Check {
    Updates {
        ts: String,
        updates: Vec<Box<serde_json::value::RawValue>>,
    },
    /// 1: history lost or outdated; continue from this `ts`.
    Outdated(Option<String>),
    /// 2: the key expired; get a new one, keep the `ts`.
    KeyExpired,
    /// 3: information lost; get a new key and `ts`.
    Lost,
}

fn read_check(body: &[u8]) -> Result<Check, String> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        ts: Option<Value>,
        #[serde(default)]
        updates: Option<Vec<Box<serde_json::value::RawValue>>>,
        #[serde(default)]
        failed: Option<i64>,
    }
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        format!("unreadable long-poll answer ({e}): {}", String::from_utf8_lossy(&body[..body.len().min(200)]))
    })?;
    match answer.failed {
        Some(1) => Ok(Check::Outdated(answer.ts.as_ref().and_then(ts_string))),
        Some(2) => Ok(Check::KeyExpired),
        Some(3) => Ok(Check::Lost),
        Some(other) => Err(format!("the long poll answered failed {other}")),
        None => {
            let ts = answer.ts.as_ref().and_then(ts_string).ok_or("a long-poll answer without ts")?;
            Ok(Check::Updates { ts, updates: answer.updates.unwrap_or_default() })
        }
    }
}

/// The long-poll server of the community.
struct Server {
    server: String,
    key: String,
    ts: String,
}

async fn get_server(receiver: &Receiver) -> Result<Server, CallError> {
    let answer = receiver.api.call("groups.getLongPollServer", &[("group_id", receiver.group_id.to_string())]).await?;
    let field = |name: &str| answer.get(name).and_then(ts_string);
    match (field("server"), field("key"), field("ts")) {
        (Some(server), Some(key), Some(ts)) => Ok(Server { server, key, ts }),
        _ => Err(CallError::Transport(format!("groups.getLongPollServer answered {answer}"))),
    }
}

/// Stores the position, retrying until it is stored or `stop` (then the next leader reads some
/// updates again, which the unique keys absorb).
async fn persist(receiver: &Receiver, ts: &str, stop: &CancellationToken) {
    let account = receiver.ingest.account_id();
    let mut failures = 0;
    loop {
        let stored = async {
            let mut conn = receiver.pool.acquire().await?;
            store::set_vk_long_poll_ts(&mut conn, account, ts).await
        }
        .await;
        match stored {
            Ok(()) => {
                if let Ok(n) = ts.parse::<f64>() {
                    metrics::gauge!("switchboard_vk_long_poll_ts", "account" => account.to_string()).set(n);
                }
                return;
            }
            Err(e) => {
                failures += 1;
                let wait = crate::pacing::backoff(failures).min(Duration::from_secs(10));
                warn!(%account, error = %e, ?wait, "cannot store the long-poll position yet");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// The position the last leader stored, retrying until the store answers or `stop`.
async fn stored_ts(receiver: &Receiver, stop: &CancellationToken) -> Option<Option<String>> {
    let mut failures = 0;
    loop {
        let read = async {
            let mut conn = receiver.pool.acquire().await?;
            store::vk_long_poll_ts(&mut conn, receiver.ingest.account_id()).await
        }
        .await;
        match read {
            Ok(ts) => return Some(ts),
            Err(e) => {
                failures += 1;
                let wait = crate::pacing::backoff(failures).min(Duration::from_secs(10));
                warn!(error = %e, ?wait, "cannot read the long-poll position yet");
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Asks VK to send the events the hub reads to the Bots Long Poll (needs a token with the
/// community's `manage` right; without it, the community's settings must say so).
async fn enable_events(receiver: &Receiver) {
    let mut params = vec![
        ("group_id", receiver.group_id.to_string()),
        ("enabled", "1".to_owned()),
        ("api_version", receiver.api.version().to_owned()),
    ];
    params.extend(EVENTS.iter().map(|e| (*e, "1".to_owned())));
    if let Err(e) = receiver.api.call("groups.setLongPollSettings", &params).await {
        warn!(
            error = %e,
            "groups.setLongPollSettings failed: make sure the community's Bots Long Poll is on, with API version {} and the events {}",
            receiver.api.version(),
            EVENTS.join(", ")
        );
    }
}

/// Long polling until `stop`: from the stored position (or, for a new account, from now),
/// check, handle the batch, store the position, check again.
pub async fn poll(receiver: &Receiver, wait_s: u32, stop: &CancellationToken) {
    let account = receiver.ingest.account_id();
    enable_events(receiver).await;
    let Some(mut ts) = stored_ts(receiver, stop).await else { return };
    info!(%account, wait_s, from = ?ts, "long polling started");
    let mut server: Option<(String, String)> = None;
    let mut failures: u32 = 0;
    loop {
        let (url, key) = match &server {
            Some(s) => s.clone(),
            None => {
                let got = tokio::select! {
                    _ = stop.cancelled() => return,
                    got = get_server(receiver) => got,
                };
                match got {
                    Ok(s) => {
                        failures = 0;
                        if ts.is_none() {
                            // a new account (or information lost): from now on
                            persist(receiver, &s.ts, stop).await;
                            ts = Some(s.ts.clone());
                        }
                        server = Some((s.server.clone(), s.key.clone()));
                        (s.server, s.key)
                    }
                    Err(e) => {
                        failures += 1;
                        let wait = crate::pacing::backoff(failures).min(Duration::from_secs(60));
                        warn!(%account, error = %e, ?wait, "groups.getLongPollServer failed");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(wait) => continue,
                        }
                    }
                }
            }
        };
        let current = ts.clone().expect("set with the server");
        let answer = tokio::select! {
            _ = stop.cancelled() => return,
            answer = receiver.api.long_poll(&url, &key, &current, wait_s) => answer,
        };
        let check = answer.map_err(|e| e.to_string()).and_then(|body| read_check(&body));
        let check = match check {
            Ok(check) => {
                failures = 0;
                check
            }
            Err(e) => {
                failures += 1;
                let wait = crate::pacing::backoff(failures).min(Duration::from_secs(30));
                warn!(%account, error = %e, ?wait, "long-poll check failed");
                if failures >= 3 {
                    server = None; // maybe the server moved: ask again
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        match check {
            Check::Updates { ts: next, updates } => {
                if !updates.is_empty() {
                    let batch = updates
                        .into_iter()
                        .map(|raw| {
                            let json = raw.get().as_bytes().to_vec();
                            let (key, update) = parse_update(account, &json);
                            Raw { key, json, update: update.map_err(UpdateError::Permanent) }
                        })
                        .collect();
                    if !handle_batch(receiver, batch, stop).await {
                        return;
                    }
                }
                if next != current {
                    persist(receiver, &next, stop).await;
                }
                ts = Some(next);
            }
            Check::Outdated(next) => {
                warn!(%account, from = %current, to = ?next, "the long poll lost events before this position (failed 1); continuing from the one VK gives");
                match next {
                    Some(next) => {
                        persist(receiver, &next, stop).await;
                        ts = Some(next);
                    }
                    None => server = None,
                }
            }
            Check::KeyExpired => {
                debug!(%account, "the long-poll key expired (failed 2): a new key, the same position");
                server = None;
            }
            Check::Lost => {
                warn!(%account, at = %current, "the long poll lost its information (failed 3): a new key and position");
                server = None;
                ts = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_poll_answers() {
        match read_check(br#"{"ts":"2215","updates":[{"type":"message_new","object":{}},{"type":"x"}]}"#).unwrap() {
            Check::Updates { ts, updates } => {
                assert_eq!(ts, "2215");
                assert_eq!(updates.len(), 2);
                assert_eq!(updates[1].get(), r#"{"type":"x"}"#, "each update keeps its exact bytes");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(read_check(br#"{"ts":2216,"updates":[]}"#).unwrap(), Check::Updates { ts, .. } if ts == "2216")
        );
        assert!(
            matches!(read_check(br#"{"failed":1,"ts":"3000"}"#).unwrap(), Check::Outdated(Some(ts)) if ts == "3000")
        );
        assert!(matches!(read_check(br#"{"failed":2}"#).unwrap(), Check::KeyExpired));
        assert!(matches!(read_check(br#"{"failed":3}"#).unwrap(), Check::Lost));
        assert!(read_check(br#"{"failed":4}"#).is_err());
        assert!(read_check(b"<html>").is_err());
    }
}
