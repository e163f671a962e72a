//! Inbound messages: what a connector stores for each platform update, in one transaction.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use const_format::concatcp;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::rows::{INTERACTION_COLUMNS, interaction_from_row};
use super::{Result, StoreError};
use crate::domain::{
    Author, AuthorKind, Contact, Direction, Forwarded, Interaction, InteractionState, Location, Message, MessageKind,
    MessageStatus,
};

/// The customer as the platform describes the sender.
#[derive(Debug, Clone, Default)]
pub struct Sender {
    /// The platform's user id (stable per account).
    pub external_id: String,
    pub name: String,
    pub username: Option<String>,
    pub phone: Option<String>,
    pub avatar_url: Option<String>,
}

/// One customer message, already mapped from the platform's wire format.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    pub account_id: Uuid,
    /// Unique per account on the platform (e.g. Telegram `chat_id:message_id`): the dedupe key.
    pub external_message_id: String,
    /// Where replies go on the platform.
    pub chat_id: String,
    pub sender: Sender,
    pub kind: MessageKind,
    pub text: Option<String>,
    /// Files already stored by the file server.
    pub file_ids: Vec<Uuid>,
    pub location: Option<Location>,
    pub contact: Option<Contact>,
    /// The platform id of the message this one replies to, if any.
    pub reply_to_external_id: Option<String>,
    pub forwarded: Option<Forwarded>,
    /// A sticker's platform id (its picture, when fetched, is in `file_ids`).
    pub sticker_id: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// `s` with every U+0000 replaced by U+FFFD.
pub fn without_nul(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

impl InboundMessage {
    fn strings(&self) -> impl Iterator<Item = &str> {
        let s = &self.sender;
        [
            Some(self.external_message_id.as_str()),
            Some(self.chat_id.as_str()),
            Some(s.external_id.as_str()),
            Some(s.name.as_str()),
            s.username.as_deref(),
            s.phone.as_deref(),
            s.avatar_url.as_deref(),
            self.text.as_deref(),
            self.reply_to_external_id.as_deref(),
            self.sticker_id.as_deref(),
            self.contact.as_ref().map(|c| c.name.as_str()),
            self.contact.as_ref().map(|c| c.phone.as_str()),
            self.location.as_ref().and_then(|l| l.address.as_deref()),
            self.forwarded.as_ref().and_then(|f| f.from_name.as_deref()),
        ]
        .into_iter()
        .flatten()
    }

    /// Whether any text of the message holds U+0000, which PostgreSQL cannot store.
    pub fn has_nul(&self) -> bool {
        self.strings().any(|s| s.contains('\0'))
    }

    /// The message with every U+0000 replaced by U+FFFD.
    pub fn without_nul(&self) -> InboundMessage {
        let fix = |s: &str| without_nul(s);
        let fix_opt = |s: &Option<String>| s.as_deref().map(without_nul);
        let mut m = self.clone();
        m.external_message_id = fix(&m.external_message_id);
        m.chat_id = fix(&m.chat_id);
        m.sender.external_id = fix(&m.sender.external_id);
        m.sender.name = fix(&m.sender.name);
        m.sender.username = fix_opt(&m.sender.username);
        m.sender.phone = fix_opt(&m.sender.phone);
        m.sender.avatar_url = fix_opt(&m.sender.avatar_url);
        m.text = fix_opt(&m.text);
        m.reply_to_external_id = fix_opt(&m.reply_to_external_id);
        m.sticker_id = fix_opt(&m.sticker_id);
        if let Some(c) = &mut m.contact {
            c.name = fix(&c.name);
            c.phone = fix(&c.phone);
        }
        if let Some(l) = &mut m.location {
            l.address = fix_opt(&l.address);
        }
        if let Some(f) = &mut m.forwarded {
            f.from_name = fix_opt(&f.from_name);
        }
        m
    }
}

impl Default for InboundMessage {
    fn default() -> Self {
        InboundMessage {
            account_id: Uuid::nil(),
            external_message_id: String::new(),
            chat_id: String::new(),
            sender: Sender::default(),
            kind: MessageKind::Text,
            text: None,
            file_ids: Vec::new(),
            location: None,
            contact: None,
            reply_to_external_id: None,
            forwarded: None,
            sticker_id: None,
            sent_at: None,
        }
    }
}

/// What happened to an inbound message.
#[derive(Debug, Clone)]
pub enum Ingested {
    /// Stored now. `opened` is true when this message opened (or reopened) the interaction, so
    /// routing must look at it; `audience` are the agents whose streams got the message.
    Stored { message: Box<Message>, interaction: Box<Interaction>, opened: bool, audience: Vec<String> },
    /// The platform sent this message before; nothing was written.
    Duplicate { message_id: Uuid },
}

/// Stores an inbound message: upserts the customer's identity, finds the open interaction (or
/// reopens the customer's last one closed within `reopen_window`, or opens a new one in the
/// account's default queue), inserts the message, and appends `message.new` to the interaction
/// log, the history and the streams of the agents who see the interaction.
///
/// Call it in a transaction and acknowledge the platform only after the commit. A repeat of an
/// already stored message returns [`Ingested::Duplicate`] before writing anything.
pub async fn ingest_inbound(
    conn: &mut PgConnection,
    msg: &InboundMessage,
    reopen_window: Duration,
) -> Result<Ingested> {
    // PostgreSQL text cannot hold U+0000: the customer's words arrive with U+FFFD in its place
    let cleaned;
    let msg = if msg.has_nul() {
        cleaned = msg.without_nul();
        &cleaned
    } else {
        msg
    };
    // This is the hot path of every customer message: each statement here is a round trip, so
    // the common case (a message into an open interaction) takes six.
    let account = sqlx::query(
        "SELECT a.channel, a.default_queue, a.enabled,
                (SELECT m.id FROM messages m
                 WHERE m.account_id = a.id AND m.external_message_id = $2 AND m.direction = 'in') AS existing
         FROM accounts a WHERE a.id = $1",
    )
    .bind(msg.account_id)
    .bind(&msg.external_message_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::not_found("account", msg.account_id))?;
    if let Some(id) = account.try_get::<Option<Uuid>, _>("existing")? {
        return Ok(Ingested::Duplicate { message_id: id });
    }
    if !account.try_get::<bool, _>("enabled")? {
        return Err(StoreError::Invalid(format!("account {} is disabled", msg.account_id)));
    }
    let channel: String = account.try_get("channel")?;
    let default_queue: String = account.try_get("default_queue")?;

    let customer_id = upsert_identity(conn, msg.account_id, &msg.sender).await?;
    let (mut interaction, opened) =
        open_interaction(conn, msg, customer_id, &channel, &default_queue, reopen_window).await?;
    learn_campaigns(conn, msg.account_id, &mut [(msg, &mut interaction)]).await?;

    let reply_to = match &msg.reply_to_external_id {
        Some(ext) => find_message_by_external(conn, msg.account_id, ext).await?,
        None => None,
    };
    let message_id = Uuid::now_v7();
    let author_id = customer_id.to_string();
    let created_at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "INSERT INTO messages (id, interaction_id, account_id, direction, author_kind, author_id, author_name,
             kind, text, location, contact, reply_to, forwarded, status, external_message_id, sticker_id, created_at)
         VALUES ($1, $2, $3, 'in', 'customer', $4, $5, $6, $7, $8, $9, $10, $11, 'received', $12, $13, now())
         ON CONFLICT (account_id, external_message_id) WHERE direction = 'in' DO NOTHING
         RETURNING created_at",
    )
    .bind(message_id)
    .bind(interaction.id)
    .bind(msg.account_id)
    .bind(&author_id)
    .bind(&msg.sender.name)
    .bind(msg.kind.as_str())
    .bind(&msg.text)
    .bind(msg.location.as_ref().map(to_json))
    .bind(msg.contact.as_ref().map(to_json))
    .bind(reply_to)
    .bind(msg.forwarded.as_ref().map(to_json))
    .bind(&msg.external_message_id)
    .bind(&msg.sticker_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(created_at) = created_at else {
        // a concurrent transaction stored the same update first
        let id = find_inbound(conn, msg.account_id, &msg.external_message_id).await?.unwrap_or(message_id);
        return Ok(Ingested::Duplicate { message_id: id });
    };
    let message = if msg.file_ids.is_empty() {
        Message {
            id: message_id,
            interaction_id: interaction.id,
            direction: Direction::In,
            author: Author { kind: AuthorKind::Customer, id: author_id, name: msg.sender.name.clone() },
            kind: msg.kind,
            text: msg.text.clone(),
            files: Vec::new(),
            location: msg.location.clone(),
            contact: msg.contact.clone(),
            reply_to,
            forwarded: msg.forwarded.clone(),
            sticker_id: msg.sticker_id.clone(),
            forward_of: None,
            keyboard: None,
            template: None,
            status: MessageStatus::Received,
            error: None,
            client_msg_id: None,
            created_at,
            edited_at: None,
            deleted: false,
        }
    } else {
        attach_files(conn, message_id, &msg.file_ids).await?;
        super::load_message(conn, message_id).await?
    };

    // the interaction's log, the customer's history and the interaction's clock, in one statement
    let data = serde_json::json!({ "message": message });
    sqlx::query(
        "WITH bumped AS (
             UPDATE interactions SET last_event_seq = last_event_seq + 1, updated_at = now(),
                 last_customer_message_at = now()
             WHERE id = $1 RETURNING id, last_event_seq, customer_id, channel
         ), logged AS (
             INSERT INTO interaction_events (interaction_id, seq, kind, actor, data)
             SELECT id, last_event_seq, 'message.new', 'customer', $2 FROM bumped
         )
         INSERT INTO history (customer_id, interaction_id, channel, entry, message_id)
         SELECT customer_id, id, channel, 'message', $3 FROM bumped",
    )
    .bind(interaction.id)
    .bind(&data)
    .bind(message_id)
    .execute(&mut *conn)
    .await?;
    let audience = super::fan_out(conn, interaction.id, "message.new", &data).await?;
    Ok(Ingested::Stored { message: Box::new(message), interaction: Box::new(interaction), opened, audience })
}

/// [`super::on_inbound`] for stored messages: each interaction learns its campaign, if its
/// message answers one.
async fn learn_campaigns(
    conn: &mut PgConnection,
    account_id: Uuid,
    messages: &mut [(&InboundMessage, &mut Interaction)],
) -> Result<()> {
    let seen: Vec<super::InboundSeen<'_>> = messages
        .iter()
        .map(|(m, i)| super::InboundSeen { chat_id: &m.chat_id, text: m.text.as_deref(), interaction_id: i.id })
        .collect();
    let learnt = super::on_inbound(conn, account_id, &seen).await?;
    for l in learnt {
        for (_, interaction) in messages.iter_mut().filter(|(_, i)| i.id == l.interaction_id) {
            interaction.fields.insert("campaign_id".into(), serde_json::json!(l.campaign_id.to_string()));
            interaction.fields.insert("campaign".into(), serde_json::json!(l.name));
            if l.flow_started {
                // the connector rings the bots' doorbell for it
                interaction.state = InteractionState::Bot;
            }
        }
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("domain types serialize to JSON")
}

async fn find_inbound(conn: &mut PgConnection, account_id: Uuid, external_id: &str) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM messages WHERE account_id = $1 AND external_message_id = $2 AND direction = 'in'",
    )
    .bind(account_id)
    .bind(external_id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// A message (either direction) by its platform id.
pub async fn find_message_by_external(
    conn: &mut PgConnection,
    account_id: Uuid,
    external_id: &str,
) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM messages WHERE account_id = $1 AND external_message_id = $2 ORDER BY created_at LIMIT 1",
    )
    .bind(account_id)
    .bind(external_id)
    .fetch_optional(&mut *conn)
    .await?)
}

pub(crate) async fn attach_files(conn: &mut PgConnection, message_id: Uuid, file_ids: &[Uuid]) -> Result<()> {
    if file_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO message_files (message_id, position, file_id)
         SELECT $1, n - 1, id FROM unnest($2::uuid[]) WITH ORDINALITY AS f(id, n)",
    )
    .bind(message_id)
    .bind(file_ids)
    .execute(&mut *conn)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::Invalid(format!("unknown file among {file_ids:?}"))
        }
        other => other.into(),
    })?;
    Ok(())
}

/// Records a customer the platform told about without a message (Viber's `subscribed` and
/// `conversation_started`), creating them when new and refreshing the name, phone and avatar it
/// sent, so agents can start a conversation with them. Returns the customer id. Two statements:
/// run it in a transaction (the identity's reference to a new customer is checked at commit).
pub async fn upsert_customer(conn: &mut PgConnection, account_id: Uuid, sender: &Sender) -> Result<Uuid> {
    let fix_opt = |s: &Option<String>| s.as_deref().map(without_nul);
    let sender = Sender {
        external_id: without_nul(&sender.external_id),
        name: without_nul(&sender.name),
        username: fix_opt(&sender.username),
        phone: fix_opt(&sender.phone),
        avatar_url: fix_opt(&sender.avatar_url),
    };
    upsert_identity(conn, account_id, &sender).await
}

/// Claims the identity (creating the customer when new) and returns the customer id. Details
/// the platform sent this time (name, phone, avatar) refresh what is stored.
async fn upsert_identity(conn: &mut PgConnection, account_id: Uuid, sender: &Sender) -> Result<Uuid> {
    let candidate = Uuid::now_v7();
    let row = sqlx::query(
        "INSERT INTO customer_identities (account_id, external_id, customer_id, display_name, username, phone)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (account_id, external_id) DO UPDATE SET
             display_name = COALESCE(EXCLUDED.display_name, customer_identities.display_name),
             username = COALESCE(EXCLUDED.username, customer_identities.username),
             phone = COALESCE(EXCLUDED.phone, customer_identities.phone),
             updated_at = now()
         RETURNING customer_id",
    )
    .bind(account_id)
    .bind(&sender.external_id)
    .bind(candidate)
    .bind(&sender.name)
    .bind(&sender.username)
    .bind(&sender.phone)
    .fetch_one(&mut *conn)
    .await?;
    let customer_id: Uuid = row.try_get("customer_id")?;
    if customer_id == candidate {
        sqlx::query("INSERT INTO customers (id, name, phone, avatar_url) VALUES ($1, $2, $3, $4)")
            .bind(candidate)
            .bind(&sender.name)
            .bind(&sender.phone)
            .bind(&sender.avatar_url)
            .execute(&mut *conn)
            .await?;
    } else if sender.phone.is_some() || sender.avatar_url.is_some() {
        sqlx::query(
            "UPDATE customers SET phone = COALESCE($2, phone), avatar_url = COALESCE($3, avatar_url) WHERE id = $1",
        )
        .bind(customer_id)
        .bind(&sender.phone)
        .bind(&sender.avatar_url)
        .execute(&mut *conn)
        .await?;
    }
    Ok(customer_id)
}

/// Finds the customer's open interaction on this account, locking it; or reopens the last one
/// closed within `reopen_window` (keeping `last_agent`, whom routing prefers); or opens one.
async fn open_interaction(
    conn: &mut PgConnection,
    msg: &InboundMessage,
    customer_id: Uuid,
    channel: &str,
    default_queue: &str,
    reopen_window: Duration,
) -> Result<(Interaction, bool)> {
    const OPEN: &str = concatcp!(
        "SELECT ",
        INTERACTION_COLUMNS,
        " FROM interactions i JOIN customers c ON c.id = i.customer_id
         WHERE i.account_id = $1 AND i.customer_id = $2 AND i.state <> 'closed' FOR NO KEY UPDATE OF i"
    );
    loop {
        let open = sqlx::query(OPEN).bind(msg.account_id).bind(customer_id).fetch_optional(&mut *conn).await?;
        if let Some(row) = open {
            return Ok((interaction_from_row(&row)?, false));
        }
        // the answer to the survey after the customer's last chat stays in that chat, closed
        let text = if msg.kind == MessageKind::Text { msg.text.as_deref() } else { None };
        if let Some(id) = super::chat_survey_answer(conn, msg.account_id, customer_id, text).await? {
            return Ok((super::load_interaction(conn, id).await?, false));
        }
        let window_ms = i64::try_from(reopen_window.as_millis()).unwrap_or(i64::MAX);
        // the account's re-entry: a conversation an agent closed goes back to a chosen node of a
        // flow (state `bot`) instead of its queue; one the bot ended goes to its queue as before
        let reentry = super::flows::reentry_for(conn, msg.account_id).await?;
        let reopened: Option<(Uuid, String)> = sqlx::query_as(
            "UPDATE interactions SET agent = NULL, closed_at = NULL, close_reason = NULL,
                 state = CASE WHEN $5 AND close_reason IS DISTINCT FROM 'bot_ended' THEN 'bot' ELSE 'queued' END,
                 queue = COALESCE(queue, $3), updated_at = now()
             WHERE id = (SELECT id FROM interactions
                         WHERE account_id = $1 AND customer_id = $2 AND state = 'closed'
                           AND closed_at > now() - make_interval(secs => $4::float8 / 1000)
                         ORDER BY closed_at DESC LIMIT 1 FOR NO KEY UPDATE)
             RETURNING id, state",
        )
        .bind(msg.account_id)
        .bind(customer_id)
        .bind(default_queue)
        .bind(window_ms as f64)
        .bind(reentry.is_some())
        .fetch_optional(&mut *conn)
        .await?;
        // (a concurrent first message that opened a new interaction meanwhile makes this a unique
        // violation; the transaction fails and the connector's retry finds that interaction)
        if let Some((id, state)) = reopened {
            let mut data = serde_json::json!({ "interaction_id": id, "reason": "customer_returned" });
            if let Some((flow, version, node)) = reentry.as_ref().filter(|_| state == "bot") {
                super::flows::start_bot_run(conn, id, msg.account_id, &(flow.clone(), *version), Some(node)).await?;
                data["state"] = serde_json::json!("bot");
                data["reentry"] = serde_json::json!({ "flow": flow, "version": version, "node": node });
            }
            super::append_interaction_event(conn, id, "interaction.reopened", Some("customer"), &data).await?;
            return Ok((super::load_interaction(conn, id).await?, true));
        }
        let id = Uuid::now_v7();
        // a greeting flow of the account or its default queue: the bot has the conversation first
        let greeting = super::flows::greeting_for(conn, msg.account_id, default_queue).await?;
        // else the account's external bots, on the agent WebSocket, may have it first
        let external = greeting.is_none() && super::flows::opens_for_external_bot(conn, msg.account_id).await?;
        let state = if greeting.is_some() || external { InteractionState::Bot } else { InteractionState::Queued };
        let created = sqlx::query(
            "INSERT INTO interactions (id, account_id, customer_id, external_id, channel, chat_id, state, queue)
             VALUES ($1, $2, $3, $4, $5, $6, $8, $7)
             ON CONFLICT (account_id, customer_id) WHERE state <> 'closed' DO NOTHING",
        )
        .bind(id)
        .bind(msg.account_id)
        .bind(customer_id)
        .bind(&msg.sender.external_id)
        .bind(channel)
        .bind(&msg.chat_id)
        .bind(default_queue)
        .bind(state.as_str())
        .execute(&mut *conn)
        .await?;
        if created.rows_affected() == 1 {
            if let Some(flow) = &greeting {
                super::flows::start_bot_run(conn, id, msg.account_id, flow, None).await?;
            }
            let data = serde_json::json!({ "interaction_id": id, "state": state, "queue": default_queue });
            super::append_interaction_event(conn, id, "interaction.created", Some("customer"), &data).await?;
            return Ok((super::load_interaction(conn, id).await?, true));
        }
        // lost a race to a concurrent first message of the same customer: take theirs
    }
}

/// Open interactions of one customer on one account, for tests and tools.
pub async fn open_interaction_of(
    conn: &mut PgConnection,
    account_id: Uuid,
    external_id: &str,
) -> Result<Option<Interaction>> {
    const SQL: &str = concatcp!(
        "SELECT ",
        INTERACTION_COLUMNS,
        " FROM interactions i JOIN customers c ON c.id = i.customer_id
         WHERE i.account_id = $1 AND i.external_id = $2 AND i.state <> 'closed'"
    );
    let row = sqlx::query(SQL).bind(account_id).bind(external_id).fetch_optional(&mut *conn).await?;
    row.as_ref().map(interaction_from_row).transpose()
}

/// Stores a batch of inbound messages of one account in as few statements as the guarantees
/// allow (about ten for the whole batch when the customers' interactions are open, against
/// seven per message with [`ingest_inbound`]): the repeats found with one lookup, the
/// identities upserted together, the open interactions locked together (in id order), the
/// messages inserted with one multi-row statement, their interaction events, history entries
/// and the agents' stream entries with one statement each, sequence numbers gap-free and in the
/// batch's order. Returns one [`Ingested`] per message, in order; a message repeated inside the
/// batch is a [`Ingested::Duplicate`] of its first occurrence.
///
/// Every message must belong to `account_id`. Run it in a transaction; on any error the caller
/// rolls back and stores the messages one by one, so one bad message fails alone.
pub async fn ingest_batch(
    conn: &mut PgConnection,
    account_id: Uuid,
    batch: &[InboundMessage],
    reopen_window: Duration,
) -> Result<Vec<Ingested>> {
    if let Some(other) = batch.iter().find(|m| m.account_id != account_id) {
        return Err(StoreError::Invalid(format!(
            "a batch of account {account_id} holds a message of {}",
            other.account_id
        )));
    }
    let cleaned: Vec<InboundMessage> =
        batch.iter().map(|m| if m.has_nul() { m.without_nul() } else { m.clone() }).collect();
    let batch = cleaned.as_slice();

    // Every statement below joins the batch's arrays to tables that grow by the batch (messages,
    // identities, interactions), and each finds its rows by key, one probe per key, so the
    // plan does not depend on the statistics: a connection may keep PostgreSQL's generic plan
    // (after five executions) as well as plan each batch. It once forced a plan per batch
    // (`plan_cache_mode = force_custom_plan`), when the repeats' lookup was written
    // `external_message_id = ANY($2)` and the generic plan, made from a young table's
    // statistics, walked every message of the account for each batch; with the probes, that
    // planning was about a tenth of PostgreSQL's CPU per message for nothing.
    // `a_batch_looks_up_its_platform_ids_only_whatever_the_statistics` runs a batch under both
    // plan modes.

    // 1. the account, and which of these platform ids are stored already: one probe of the
    // unique index per id. Written as `external_message_id = ANY($2)`, the planner, with the
    // statistics of a young table (analysed while nearly empty, or not yet), took the account's
    // part of the index and filtered every message of the account through the list: 12 ms per
    // batch at 20,000 messages, growing with the table, half of the hub's polling cycle at
    // 1,000 messages/s. A `LIMIT` keeps the lateral subquery a probe whatever the statistics.
    let external_ids: Vec<&str> = batch.iter().map(|m| m.external_message_id.as_str()).collect();
    let row = sqlx::query(
        "WITH known AS (
             SELECT k.external_message_id, m.id
             FROM unnest($2::text[]) AS k(external_message_id)
             CROSS JOIN LATERAL (
                 SELECT id FROM messages
                 WHERE account_id = $1 AND direction = 'in' AND external_message_id = k.external_message_id
                 LIMIT 1
             ) m
         )
         SELECT a.channel, a.default_queue, a.enabled,
                (SELECT array_agg(id ORDER BY external_message_id) FROM known) AS known_ids,
                (SELECT array_agg(external_message_id ORDER BY external_message_id) FROM known) AS known_sorted
         FROM accounts a WHERE a.id = $1",
    )
    .bind(account_id)
    .bind(&external_ids)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::not_found("account", account_id))?;
    let channel: String = row.try_get("channel")?;
    let default_queue: String = row.try_get("default_queue")?;
    let known_sorted: Option<Vec<String>> = row.try_get("known_sorted")?;
    let known_ids: Option<Vec<Uuid>> = row.try_get("known_ids")?;
    let known: HashMap<String, Uuid> =
        known_sorted.unwrap_or_default().into_iter().zip(known_ids.unwrap_or_default()).collect();
    let mut outcome: Vec<Option<Ingested>> = vec![None; batch.len()];
    let mut fresh: Vec<usize> = Vec::new();
    let mut in_batch: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for (i, m) in batch.iter().enumerate() {
        if let Some(id) = known.get(&m.external_message_id) {
            outcome[i] = Some(Ingested::Duplicate { message_id: *id });
        } else if in_batch.insert(m.external_message_id.as_str()) {
            fresh.push(i);
        }
        // else: a repeat inside the batch, a duplicate of its first occurrence (set at the end)
    }
    if fresh.is_empty() {
        return Ok(outcome.into_iter().map(|o| o.expect("every message decided")).collect());
    }
    if !row.try_get::<bool, _>("enabled")? {
        return Err(StoreError::Invalid(format!("account {account_id} is disabled")));
    }

    // 2. the customers: one upsert of every sender (the last details of each win)
    let mut senders: Vec<&Sender> = Vec::new();
    for &i in &fresh {
        let s = &batch[i].sender;
        match senders.iter_mut().find(|x| x.external_id == s.external_id) {
            Some(slot) => *slot = s,
            None => senders.push(s),
        }
    }
    let customers = upsert_identities(conn, account_id, &senders).await?;

    // 3. the customers' open interactions, locked in id order; open or reopen the others
    let customer_ids: Vec<Uuid> = senders.iter().map(|s| customers[&s.external_id]).collect();
    const OPEN: &str = concatcp!(
        "SELECT ",
        INTERACTION_COLUMNS,
        " FROM interactions i JOIN customers c ON c.id = i.customer_id
         WHERE i.account_id = $1 AND i.customer_id = ANY($2) AND i.state <> 'closed'
         ORDER BY i.id FOR NO KEY UPDATE OF i"
    );
    let rows = sqlx::query(OPEN).bind(account_id).bind(&customer_ids).fetch_all(&mut *conn).await?;
    let mut open: HashMap<Uuid, (Interaction, bool)> = HashMap::new();
    for row in &rows {
        let interaction = interaction_from_row(row)?;
        open.insert(interaction.customer.id, (interaction, false));
    }
    for s in &senders {
        let customer_id = customers[&s.external_id];
        if open.contains_key(&customer_id) {
            continue;
        }
        let first = fresh.iter().map(|&i| &batch[i]).find(|m| m.sender.external_id == s.external_id);
        let first = first.expect("every sender has a message");
        let (interaction, opened) =
            open_interaction(conn, first, customer_id, &channel, &default_queue, reopen_window).await?;
        open.insert(customer_id, (interaction, opened));
    }
    // campaigns: stop words and replies to a campaign message
    {
        let mut seen: Vec<(&InboundMessage, Interaction)> = Vec::with_capacity(fresh.len());
        for &i in &fresh {
            let m = &batch[i];
            seen.push((m, open[&customers[&m.sender.external_id]].0.clone()));
        }
        let mut refs: Vec<(&InboundMessage, &mut Interaction)> = seen.iter_mut().map(|(m, i)| (*m, i)).collect();
        learn_campaigns(conn, account_id, &mut refs).await?;
        for (_, interaction) in seen {
            if let Some((stored, _)) = open.get_mut(&interaction.customer.id) {
                stored.fields = interaction.fields;
            }
        }
    }

    // 4. replies, then the messages in one statement
    let reply_ext: Vec<&str> = fresh.iter().filter_map(|&i| batch[i].reply_to_external_id.as_deref()).collect();
    let replies: HashMap<String, Uuid> = if reply_ext.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as::<_, (String, Uuid)>(
            // a probe per id, as for the repeats above
            "SELECT k.e, m.id FROM (SELECT DISTINCT e FROM unnest($2::text[]) AS e) AS k(e)
             CROSS JOIN LATERAL (
                 SELECT id FROM messages WHERE account_id = $1 AND external_message_id = k.e
                 ORDER BY created_at LIMIT 1
             ) m",
        )
        .bind(account_id)
        .bind(&reply_ext)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect()
    };
    let mut ids = Vec::with_capacity(fresh.len());
    let mut interaction_ids = Vec::with_capacity(fresh.len());
    let mut author_ids = Vec::with_capacity(fresh.len());
    let mut author_names = Vec::with_capacity(fresh.len());
    let mut kinds = Vec::with_capacity(fresh.len());
    let mut texts: Vec<Option<String>> = Vec::with_capacity(fresh.len());
    let mut locations: Vec<Option<serde_json::Value>> = Vec::with_capacity(fresh.len());
    let mut contacts: Vec<Option<serde_json::Value>> = Vec::with_capacity(fresh.len());
    let mut reply_tos: Vec<Option<Uuid>> = Vec::with_capacity(fresh.len());
    let mut forwardeds: Vec<Option<serde_json::Value>> = Vec::with_capacity(fresh.len());
    let mut exts = Vec::with_capacity(fresh.len());
    let mut stickers: Vec<Option<String>> = Vec::with_capacity(fresh.len());
    for &i in &fresh {
        let m = &batch[i];
        let customer_id = customers[&m.sender.external_id];
        ids.push(Uuid::now_v7());
        interaction_ids.push(open[&customer_id].0.id);
        author_ids.push(customer_id.to_string());
        author_names.push(m.sender.name.clone());
        kinds.push(m.kind.as_str());
        texts.push(m.text.clone());
        locations.push(m.location.as_ref().map(to_json));
        contacts.push(m.contact.as_ref().map(to_json));
        // a reply to a stored message, or to an earlier message of this batch
        reply_tos.push(m.reply_to_external_id.as_ref().and_then(|e| {
            replies.get(e).copied().or_else(|| {
                let earlier = exts.iter().position(|x| x == e)?;
                Some(ids[earlier])
            })
        }));
        forwardeds.push(m.forwarded.as_ref().map(to_json));
        exts.push(m.external_message_id.clone());
        stickers.push(m.sticker_id.clone());
    }
    let inserted: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
        "INSERT INTO messages (id, interaction_id, account_id, direction, author_kind, author_id, author_name,
             kind, text, location, contact, reply_to, forwarded, status, external_message_id, sticker_id, created_at)
         SELECT t.id, t.interaction_id, $1, 'in', 'customer', t.author_id, t.author_name, t.kind, t.text, t.location,
                t.contact, t.reply_to, t.forwarded, 'received', t.ext, t.sticker, now()
         FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[],
                     $9::jsonb[], $10::uuid[], $11::jsonb[], $12::text[], $13::text[])
              WITH ORDINALITY AS t(id, interaction_id, author_id, author_name, kind, text, location, contact,
                                   reply_to, forwarded, ext, sticker, n)
         ORDER BY t.n
         RETURNING id, created_at",
    )
    .bind(account_id)
    .bind(&ids)
    .bind(&interaction_ids)
    .bind(&author_ids)
    .bind(&author_names)
    .bind(&kinds)
    .bind(&texts)
    .bind(&locations)
    .bind(&contacts)
    .bind(&reply_tos)
    .bind(&forwardeds)
    .bind(&exts)
    .bind(&stickers)
    .fetch_all(&mut *conn)
    .await?;
    // No `ON CONFLICT` here: the platform ids were looked up above, so a conflict means a
    // concurrent writer stored one of them since. Its unique violation fails the batch and the
    // caller's one-by-one path sorts out which (each is then a duplicate or stored, as usual);
    // a speculative insertion would cost every message an extra index probe and WAL record.
    let created: HashMap<Uuid, DateTime<Utc>> = inserted.into_iter().collect();

    // files: attached together, and the messages that have them read back whole
    let with_files: Vec<(Uuid, &Vec<Uuid>)> = fresh
        .iter()
        .zip(&ids)
        .filter(|(i, _)| !batch[**i].file_ids.is_empty())
        .map(|(i, id)| (*id, &batch[*i].file_ids))
        .collect();
    for (id, files) in &with_files {
        attach_files(conn, *id, files).await?;
    }
    let mut loaded: HashMap<Uuid, Message> = if with_files.is_empty() {
        HashMap::new()
    } else {
        let ids: Vec<Uuid> = with_files.iter().map(|(id, _)| *id).collect();
        super::load_messages(conn, &ids).await?.into_iter().map(|m| (m.id, m)).collect()
    };
    let mut messages = Vec::with_capacity(fresh.len());
    for (k, &i) in fresh.iter().enumerate() {
        let m = &batch[i];
        let id = ids[k];
        let message = loaded.remove(&id).unwrap_or_else(|| Message {
            id,
            interaction_id: interaction_ids[k],
            direction: Direction::In,
            author: Author { kind: AuthorKind::Customer, id: author_ids[k].clone(), name: m.sender.name.clone() },
            kind: m.kind,
            text: m.text.clone(),
            files: Vec::new(),
            location: m.location.clone(),
            contact: m.contact.clone(),
            reply_to: reply_tos[k],
            forwarded: m.forwarded.clone(),
            sticker_id: m.sticker_id.clone(),
            forward_of: None,
            keyboard: None,
            template: None,
            status: MessageStatus::Received,
            error: None,
            client_msg_id: None,
            created_at: created[&id],
            edited_at: None,
            deleted: false,
        });
        messages.push(message);
    }

    // 5. the interactions' logs, the customers' histories and the interactions' clocks
    let datas: Vec<serde_json::Value> = messages.iter().map(|m| serde_json::json!({ "message": m })).collect();
    sqlx::query(
        "WITH input AS (
             SELECT * FROM unnest($1::uuid[], $2::jsonb[], $3::uuid[]) WITH ORDINALITY AS t(interaction_id, data, message_id, n)
         ), counts AS (
             SELECT interaction_id, count(*) AS k FROM input GROUP BY interaction_id
         ), bumped AS (
             UPDATE interactions i SET last_event_seq = i.last_event_seq + counts.k, updated_at = now(),
                 last_customer_message_at = now()
             FROM counts WHERE i.id = counts.interaction_id
             RETURNING i.id, i.last_event_seq AS top, counts.k, i.customer_id, i.channel
         ), numbered AS (
             SELECT input.*, b.top - b.k + row_number() OVER (PARTITION BY input.interaction_id ORDER BY input.n) AS seq,
                    b.customer_id, b.channel
             FROM input JOIN bumped b ON b.id = input.interaction_id
         ), logged AS (
             INSERT INTO interaction_events (interaction_id, seq, kind, actor, data)
             SELECT interaction_id, seq, 'message.new', 'customer', data FROM numbered
         )
         INSERT INTO history (customer_id, interaction_id, channel, entry, message_id)
         SELECT customer_id, interaction_id, channel, 'message', message_id FROM numbered ORDER BY n",
    )
    .bind(&interaction_ids)
    .bind(&datas)
    .bind(&ids)
    .execute(&mut *conn)
    .await?;

    // 6. the agents' streams: who sees each interaction, their rows locked in login order, then
    // every entry in one statement
    let distinct: Vec<Uuid> = {
        let mut d = interaction_ids.clone();
        d.sort();
        d.dedup();
        d
    };
    let audience = super::audiences(conn, &distinct).await?;
    super::fan_out_many(conn, &audience, &interaction_ids, "message.new", &datas).await?;

    for (k, &i) in fresh.iter().enumerate() {
        let customer_id = customers[&batch[i].sender.external_id];
        let (interaction, opened) = &open[&customer_id];
        // only the first message of a customer counts as the one that opened the interaction
        let opened = *opened && fresh[..k].iter().all(|&j| batch[j].sender.external_id != batch[i].sender.external_id);
        outcome[i] = Some(Ingested::Stored {
            message: Box::new(messages[k].clone()),
            interaction: Box::new(interaction.clone()),
            opened,
            audience: audience.get(&interaction.id).cloned().unwrap_or_default(),
        });
    }
    // repeats inside the batch
    let first_ids: HashMap<&str, Uuid> =
        fresh.iter().zip(&ids).map(|(&i, id)| (batch[i].external_message_id.as_str(), *id)).collect();
    for (i, m) in batch.iter().enumerate() {
        if outcome[i].is_none() {
            outcome[i] = Some(Ingested::Duplicate { message_id: first_ids[m.external_message_id.as_str()] });
        }
    }
    Ok(outcome.into_iter().map(|o| o.expect("every message decided")).collect())
}

/// Claims the identities of several senders of one account in one statement (creating the
/// customers that are new in a second); returns each sender's customer id.
async fn upsert_identities(
    conn: &mut PgConnection,
    account_id: Uuid,
    senders: &[&Sender],
) -> Result<HashMap<String, Uuid>> {
    let candidates: Vec<Uuid> = senders.iter().map(|_| Uuid::now_v7()).collect();
    // Known identities are only read, and written when a detail changed (most messages come
    // from a customer whose name did not change since the last one: no row version, no WAL);
    // new ones are inserted, with `ON CONFLICT` for a concurrent writer's same new customer.
    let rows: Vec<(String, Uuid)> = sqlx::query_as(
        "WITH input AS (
             SELECT * FROM unnest($2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[]) AS t(e, c, n, u, p)
         ), known AS (
             SELECT ci.external_id, ci.customer_id,
                    (i.n IS NOT NULL AND i.n IS DISTINCT FROM ci.display_name)
                    OR (i.u IS NOT NULL AND i.u IS DISTINCT FROM ci.username)
                    OR (i.p IS NOT NULL AND i.p IS DISTINCT FROM ci.phone) AS changed
             FROM customer_identities ci JOIN input i ON ci.account_id = $1 AND ci.external_id = i.e
         ), changed AS (
             UPDATE customer_identities ci SET
                 display_name = COALESCE(i.n, ci.display_name),
                 username = COALESCE(i.u, ci.username),
                 phone = COALESCE(i.p, ci.phone),
                 updated_at = now()
             FROM input i JOIN known k ON k.external_id = i.e AND k.changed
             WHERE ci.account_id = $1 AND ci.external_id = i.e
         ), added AS (
             INSERT INTO customer_identities (account_id, external_id, customer_id, display_name, username, phone)
             SELECT $1, i.e, i.c, i.n, i.u, i.p FROM input i WHERE i.e NOT IN (SELECT external_id FROM known)
             ON CONFLICT (account_id, external_id) DO UPDATE SET
                 display_name = COALESCE(EXCLUDED.display_name, customer_identities.display_name),
                 username = COALESCE(EXCLUDED.username, customer_identities.username),
                 phone = COALESCE(EXCLUDED.phone, customer_identities.phone),
                 updated_at = now()
             RETURNING external_id, customer_id
         )
         SELECT external_id, customer_id FROM known
         UNION ALL
         SELECT external_id, customer_id FROM added",
    )
    .bind(account_id)
    .bind(senders.iter().map(|s| s.external_id.as_str()).collect::<Vec<_>>())
    .bind(&candidates)
    .bind(senders.iter().map(|s| s.name.as_str()).collect::<Vec<_>>())
    .bind(senders.iter().map(|s| s.username.as_deref()).collect::<Vec<_>>())
    .bind(senders.iter().map(|s| s.phone.as_deref()).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    let customers: HashMap<String, Uuid> = rows.into_iter().collect();
    let (mut new_ids, mut new_names, mut new_phones, mut new_avatars) = (vec![], vec![], vec![], vec![]);
    let (mut old_ids, mut old_phones, mut old_avatars) = (vec![], vec![], vec![]);
    for (s, candidate) in senders.iter().zip(&candidates) {
        let customer = customers[&s.external_id];
        if customer == *candidate {
            new_ids.push(customer);
            new_names.push(s.name.as_str());
            new_phones.push(s.phone.as_deref());
            new_avatars.push(s.avatar_url.as_deref());
        } else if s.phone.is_some() || s.avatar_url.is_some() {
            old_ids.push(customer);
            old_phones.push(s.phone.as_deref());
            old_avatars.push(s.avatar_url.as_deref());
        }
    }
    if !new_ids.is_empty() {
        sqlx::query(
            "INSERT INTO customers (id, name, phone, avatar_url)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])",
        )
        .bind(&new_ids)
        .bind(&new_names)
        .bind(&new_phones)
        .bind(&new_avatars)
        .execute(&mut *conn)
        .await?;
    }
    if !old_ids.is_empty() {
        sqlx::query(
            "UPDATE customers c SET phone = COALESCE(t.p, c.phone), avatar_url = COALESCE(t.a, c.avatar_url)
             FROM unnest($1::uuid[], $2::text[], $3::text[]) AS t(id, p, a) WHERE c.id = t.id",
        )
        .bind(&old_ids)
        .bind(&old_phones)
        .bind(&old_avatars)
        .execute(&mut *conn)
        .await?;
    }
    Ok(customers)
}
