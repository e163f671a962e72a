//! Inbound messages: what a connector stores for each platform update, in one transaction.

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
    pub sent_at: Option<DateTime<Utc>>,
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
    let (interaction, opened) =
        open_interaction(conn, msg, customer_id, &channel, &default_queue, reopen_window).await?;

    let reply_to = match &msg.reply_to_external_id {
        Some(ext) => find_message_by_external(conn, msg.account_id, ext).await?,
        None => None,
    };
    let message_id = Uuid::now_v7();
    let author_id = customer_id.to_string();
    let created_at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "INSERT INTO messages (id, interaction_id, account_id, direction, author_kind, author_id, author_name,
             kind, text, location, contact, reply_to, forwarded, status, external_message_id, created_at)
         VALUES ($1, $2, $3, 'in', 'customer', $4, $5, $6, $7, $8, $9, $10, $11, 'received', $12, now())
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
            keyboard: None,
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
        let window_ms = i64::try_from(reopen_window.as_millis()).unwrap_or(i64::MAX);
        let reopened: Option<Uuid> = sqlx::query_scalar(
            "UPDATE interactions SET state = 'queued', agent = NULL, closed_at = NULL, close_reason = NULL,
                 queue = COALESCE(queue, $3), updated_at = now()
             WHERE id = (SELECT id FROM interactions
                         WHERE account_id = $1 AND customer_id = $2 AND state = 'closed'
                           AND closed_at > now() - make_interval(secs => $4::float8 / 1000)
                         ORDER BY closed_at DESC LIMIT 1 FOR NO KEY UPDATE)
             RETURNING id",
        )
        .bind(msg.account_id)
        .bind(customer_id)
        .bind(default_queue)
        .bind(window_ms as f64)
        .fetch_optional(&mut *conn)
        .await?;
        // (a concurrent first message that opened a new interaction meanwhile makes this a unique
        // violation; the transaction fails and the connector's retry finds that interaction)
        if let Some(id) = reopened {
            let data = serde_json::json!({ "interaction_id": id, "reason": "customer_returned" });
            super::append_interaction_event(conn, id, "interaction.reopened", Some("customer"), &data).await?;
            return Ok((super::load_interaction(conn, id).await?, true));
        }
        let id = Uuid::now_v7();
        let created = sqlx::query(
            "INSERT INTO interactions (id, account_id, customer_id, external_id, channel, chat_id, state, queue)
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7)
             ON CONFLICT (account_id, customer_id) WHERE state <> 'closed' DO NOTHING",
        )
        .bind(id)
        .bind(msg.account_id)
        .bind(customer_id)
        .bind(&msg.sender.external_id)
        .bind(channel)
        .bind(&msg.chat_id)
        .bind(default_queue)
        .execute(&mut *conn)
        .await?;
        if created.rows_affected() == 1 {
            let data =
                serde_json::json!({ "interaction_id": id, "state": InteractionState::Queued, "queue": default_queue });
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
