//! The inbound half of the runtime: what a channel module calls for each customer update.
//!
//! Each call is stored in **one transaction**, committed, and only then are the doorbells rung:
//! the agent's (`agent/<login>`) for everyone in the interaction's audience and routing's when
//! the message opened an interaction. Concurrent calls of one account are **batched**: a task per
//! account takes every message waiting while the previous transaction ran and stores them
//! together ([`store::ingest_batch`]: about ten statements for the batch instead of seven per
//! message), then answers each caller and rings each doorbell once for the batch. If the batch
//! fails, its messages are stored one by one, so a bad message fails alone. Callers keep one
//! chat's messages in order by awaiting each before sending the next, as they always did. The channel module acknowledges the platform after the call
//! returns `Ok` (advances the long-poll offset, answers the webhook 200): a crash before the
//! commit means the platform sends the update again; after it, the unique key on
//! `(account, external_message_id)` absorbs the repeat.
//!
//! An update that can never be stored (a permanent error, or [`MAX_TRIES`] failed tries) is
//! **parked** as a dead letter with its raw payload ([`Ingest::settle`]); the channel module then
//! acknowledges it like a stored one, so one customer's bad message never blocks the account.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coord::Coordinator;
use schema::store::{self, Announced, InboundMessage, Ingested, Receipt, ReceiptOutcome, StoreError};
use schema::topics;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Stores inbound updates of one account. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    pool: PgPool,
    coord: Arc<dyn Coordinator>,
    account_id: Uuid,
    reopen_window: Duration,
    /// Failed tries per update key, for updates the platform delivers again (webhooks) or the
    /// module retries. A std mutex: an increment or a removal, never held across an await.
    tries: Arc<Mutex<HashMap<String, u32>>>,
    /// The account's batching task; it ends when the last clone of this `Ingest` is dropped.
    batcher: mpsc::Sender<Job>,
}

/// A message waiting to be stored, and where its outcome goes.
struct Job {
    msg: InboundMessage,
    reply: oneshot::Sender<Result<Ingested, StoreError>>,
}

/// Messages stored together at most.
pub const MAX_BATCH: usize = 256;
/// Messages that may wait for the batching task before callers wait to hand theirs over.
const QUEUE: usize = 4 * MAX_BATCH;

/// Transactions lost to a race (two first messages of one customer) are tried this many times.
const RACE_RETRIES: usize = 3;

/// An update that failed this many times is parked instead of tried again.
pub const MAX_TRIES: u32 = 5;

/// The longest pause of [`Ingest::until_settled`] between two tries.
const SETTLE_PAUSE_MAX: Duration = Duration::from_secs(30);

/// A batch's updates grouped by chat: each chat's updates in their order, the chats in the order
/// they first appear. A channel module handles the chats concurrently and each chat's updates
/// one after the other, so one customer's messages keep their order.
pub fn by_chat<T>(items: Vec<T>, chat_of: impl Fn(&T) -> String) -> Vec<VecDeque<T>> {
    let mut chats: Vec<(String, VecDeque<T>)> = Vec::new();
    for item in items {
        let chat = chat_of(&item);
        match chats.iter_mut().find(|(k, _)| *k == chat) {
            Some((_, queue)) => queue.push_back(item),
            None => chats.push((chat, VecDeque::from([item]))),
        }
    }
    chats.into_iter().map(|(_, queue)| queue).collect()
}

/// Failed-try counters kept at most; beyond it they start again from zero (an update then
/// gets a few more tries before it is parked, never fewer).
const TRIES_KEPT: usize = 10_000;

/// Why one platform update was not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpdateError {
    /// It will never be stored as it is: unreadable, or refused by the store.
    #[error("{0}")]
    Permanent(String),
    /// Worth another try: the database, the file server or the platform's media is unavailable.
    #[error("{0}")]
    Transient(String),
}

impl From<StoreError> for UpdateError {
    fn from(e: StoreError) -> Self {
        if e.is_permanent() { UpdateError::Permanent(e.to_string()) } else { UpdateError::Transient(e.to_string()) }
    }
}

/// What became of an update after a failed try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Parked as dead letter `id`: acknowledge it to the platform and go on.
    Parked(i64),
}

impl Ingest {
    /// The account's ingest, with its batching task. Make one per account and clone it: each
    /// `new` starts a task of its own.
    pub fn new(pool: PgPool, coord: Arc<dyn Coordinator>, account_id: Uuid, reopen_window: Duration) -> Self {
        let (batcher, jobs) = mpsc::channel(QUEUE);
        let store = Store { pool: pool.clone(), coord: coord.clone(), account_id, reopen_window };
        tokio::spawn(store.batches(jobs));
        Ingest { pool, coord, account_id, reopen_window, tries: Arc::new(Mutex::new(HashMap::new())), batcher }
    }

    /// After a failed try of the update `key` (raw `payload`): parks it when `error` is permanent
    /// or this was its [`MAX_TRIES`]th failure, and returns `Ok(Parked)` (the caller acknowledges
    /// it and moves on); otherwise returns the error (the caller, or the platform, tries again
    /// later). A failure to park is itself an error to retry.
    pub async fn settle(&self, key: &str, payload: &[u8], error: UpdateError) -> Result<Settled, UpdateError> {
        let tries = {
            let mut tries = self.tries.lock().unwrap_or_else(|e| e.into_inner());
            if tries.len() >= TRIES_KEPT {
                tries.clear();
            }
            let n = tries.entry(key.to_owned()).or_default();
            *n += 1;
            *n
        };
        let reason = match &error {
            UpdateError::Permanent(why) => why.clone(),
            UpdateError::Transient(why) if tries >= MAX_TRIES => format!("{why} (failed {tries} times)"),
            UpdateError::Transient(_) => return Err(error),
        };
        let parked = async {
            let mut conn = self.pool.acquire().await?;
            store::park_update(&mut conn, self.account_id, key, payload, &reason, tries as i32).await
        }
        .await
        .map_err(|e| UpdateError::Transient(format!("cannot park the update ({reason}): {e}")))?;
        self.tries.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        tracing::warn!(
            account = %self.account_id,
            update = %key.escape_debug(),
            dead_letter = parked,
            reason = %reason.escape_debug(),
            "update parked as a dead letter; the account goes on"
        );
        metrics::counter!("switchboard_connector_dead_letters_total", "account" => self.account_id.to_string())
            .increment(1);
        Ok(Settled::Parked(parked))
    }

    /// Handles the update `key` (raw `payload`) until it is stored or parked: `handle` gets the
    /// update's failed tries so far; while neither storing nor parking works (the database is
    /// unreachable), it is tried again after a growing pause. `false` when `stop` came first
    /// (the caller must not acknowledge the update).
    pub async fn until_settled<F, Fut>(
        &self,
        key: &str,
        payload: &[u8],
        stop: &CancellationToken,
        mut handle: F,
    ) -> bool
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<(), UpdateError>>,
    {
        let mut waits = 0;
        loop {
            let error = match handle(self.tries(key)).await {
                Ok(()) => {
                    self.succeeded(key);
                    return true;
                }
                Err(e) => e,
            };
            match self.settle(key, payload, error).await {
                Ok(Settled::Parked(_)) => return true,
                Err(e) => {
                    waits += 1;
                    let wait = crate::pacing::backoff(waits).min(SETTLE_PAUSE_MAX);
                    tracing::warn!(update = %key.escape_debug(), error = %e, ?wait, "cannot store an update yet; trying again");
                    tokio::select! {
                        _ = stop.cancelled() => return false,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// How many times the update `key` failed here so far.
    pub fn tries(&self, key: &str) -> u32 {
        self.tries.lock().unwrap_or_else(|e| e.into_inner()).get(key).copied().unwrap_or(0)
    }

    /// The update `key` was stored after failed tries: forget them.
    pub fn succeeded(&self, key: &str) {
        let mut tries = self.tries.lock().unwrap_or_else(|e| e.into_inner());
        if !tries.is_empty() {
            tries.remove(key);
        }
    }

    /// A platform receipt for an outbound message (see [`store::record_receipt`]); the agents
    /// are told after the commit.
    pub async fn receipt(&self, external_id: &str, receipt: &Receipt) -> Result<ReceiptOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let outcome = store::record_receipt(&mut tx, self.account_id, external_id, receipt).await?;
        tx.commit().await?;
        if let ReceiptOutcome::Applied(announced) = &outcome {
            self.ring(&announced.audience);
        }
        metrics::counter!("switchboard_connector_receipts_total", "account" => self.account_id.to_string())
            .increment(1);
        Ok(outcome)
    }

    pub fn account_id(&self) -> Uuid {
        self.account_id
    }

    /// Stores one customer message (with the account's other messages waiting at the same time,
    /// see the module's doc), then rings the doorbells. `Ok` once it is committed.
    pub async fn message(&self, msg: &InboundMessage) -> Result<Ingested, StoreError> {
        let (reply, answer) = oneshot::channel();
        if self.batcher.send(Job { msg: msg.clone(), reply }).await.is_err() {
            // the task is gone (the runtime is stopping): store it here
            let store = Store {
                pool: self.pool.clone(),
                coord: self.coord.clone(),
                account_id: self.account_id,
                reopen_window: self.reopen_window,
            };
            let out = store.alone(msg).await;
            if let Ok(ingested) = &out {
                store.announce(std::slice::from_ref(ingested));
            }
            return out;
        }
        match answer.await {
            Ok(out) => out,
            Err(_) => Err(StoreError::Database(sqlx::Error::PoolClosed)),
        }
    }

    /// Whether a customer message with this platform id is stored already (so its media need
    /// not be fetched again).
    pub async fn known(&self, external_message_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(store::find_message_by_external(&mut conn, self.account_id, external_message_id).await?.is_some())
    }

    /// The customer edited a message: keep the original, store the new text, tell the agents.
    /// `false` when the original was never stored.
    pub async fn edit(&self, external_message_id: &str, new_text: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let announced = store::record_inbound_edit(&mut tx, self.account_id, external_message_id, new_text).await?;
        tx.commit().await?;
        match announced {
            Some(Announced { audience, .. }) => {
                self.ring(&audience);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Records a customer the platform told about without a message (see
    /// [`store::upsert_customer`]): nobody is told, nothing is opened.
    pub async fn customer(&self, sender: &store::Sender) -> Result<(), StoreError> {
        // two statements (identity, then customer) that commit together
        let mut tx = self.pool.begin().await?;
        store::upsert_customer(&mut tx, self.account_id, sender).await?;
        tx.commit().await?;
        Ok(())
    }

    /// `None`: the customer is new; `Some(avatar)`: known, with the avatar URL if any.
    pub async fn customer_avatar(&self, external_id: &str) -> Result<Option<Option<String>>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        store::customer_avatar(&mut conn, self.account_id, external_id).await
    }

    fn ring(&self, audience: &[String]) {
        for agent in audience {
            self.coord.notify(&topics::agent(agent));
        }
    }
}

/// The batching task's handles.
struct Store {
    pool: PgPool,
    coord: Arc<dyn Coordinator>,
    account_id: Uuid,
    reopen_window: Duration,
}

impl Store {
    /// Takes every job waiting (up to [`MAX_BATCH`]) after the first, stores them together,
    /// answers each caller, rings the doorbells once; until every `Ingest` clone is dropped.
    async fn batches(self, mut jobs: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        // the first job waited for, then every one already waiting (0: the senders are gone)
        while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let (messages, replies): (Vec<InboundMessage>, Vec<_>) = batch.drain(..).map(|j| (j.msg, j.reply)).unzip();
            let outcomes: Vec<Result<Ingested, StoreError>> = match self.together(&messages).await {
                Ok(stored) => stored.into_iter().map(Ok).collect(),
                Err(e) => {
                    if messages.len() > 1 {
                        tracing::debug!(account = %self.account_id, error = %e, size = messages.len(), "a batch failed; storing its messages one by one");
                    }
                    let mut each = Vec::with_capacity(messages.len());
                    for msg in &messages {
                        each.push(self.alone(msg).await);
                    }
                    each
                }
            };
            let stored: Vec<Ingested> = outcomes.iter().filter_map(|o| o.as_ref().ok().cloned()).collect();
            self.announce(&stored);
            metrics::histogram!("switchboard_connector_inbound_batch_size").record(messages.len() as f64);
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
    }

    /// The batch in one transaction (one message: the single-message path, which is shorter).
    async fn together(&self, messages: &[InboundMessage]) -> Result<Vec<Ingested>, StoreError> {
        if messages.len() == 1 {
            return Ok(vec![self.alone(&messages[0]).await?]);
        }
        let mut tx = self.pool.begin().await?;
        let out = store::ingest_batch(&mut tx, self.account_id, messages, self.reopen_window).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// One message in its own transaction, tried again when it lost a race for a customer's
    /// first interaction.
    async fn alone(&self, msg: &InboundMessage) -> Result<Ingested, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let mut tx = self.pool.begin().await?;
                let out = store::ingest_inbound(&mut tx, msg, self.reopen_window).await?;
                tx.commit().await?;
                Ok::<_, StoreError>(out)
            }
            .await;
            match result {
                Err(StoreError::Database(sqlx::Error::Database(db)))
                    if db.is_unique_violation() && attempt < RACE_RETRIES =>
                {
                    tracing::debug!(account = %self.account_id, "lost an interaction race; trying again");
                }
                other => return other,
            }
        }
    }

    /// After the commit: each agent's doorbell once, routing's if anything opened, the bots' and
    /// the outbox's (a survey's next question) when they got work, the counters.
    fn announce(&self, stored: &[Ingested]) {
        let mut agents: Vec<&String> = Vec::new();
        let mut opened = false;
        let mut bot = false;
        let mut survey = false;
        let (mut new, mut repeats) = (0u64, 0u64);
        for ingested in stored {
            match ingested {
                Ingested::Stored { opened: o, audience, interaction, .. } => {
                    agents.extend(audience);
                    opened |= *o;
                    bot |= interaction.state == schema::domain::InteractionState::Bot;
                    // only a survey's answer is stored into a closed chat: its next question
                    // may be in the outbox
                    survey |= interaction.state == schema::domain::InteractionState::Closed;
                    new += 1;
                }
                Ingested::Duplicate { .. } => repeats += 1,
            }
        }
        agents.sort_unstable();
        agents.dedup();
        for agent in agents {
            self.coord.notify(&topics::agent(agent));
        }
        if opened {
            self.coord.notify(topics::ROUTING);
        }
        if bot {
            // the bot's conversations got a message: the account's runner reads it
            self.coord.notify(&topics::bots(self.account_id));
        }
        if survey {
            self.coord.notify(&topics::account(self.account_id));
        }
        let account = self.account_id.to_string();
        if new > 0 {
            metrics::counter!("switchboard_connector_inbound_total", "account" => account.clone()).increment(new);
        }
        if repeats > 0 {
            metrics::counter!("switchboard_connector_inbound_duplicates_total", "account" => account)
                .increment(repeats);
        }
    }
}
