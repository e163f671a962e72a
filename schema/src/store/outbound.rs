//! Outbound messages: an agent's `message.send` becomes a `queued` message plus an outbox row
//! for the account's leader connector, idempotent on `(agent, client_msg_id)`.

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::inbound::attach_files;
use super::{Result, StoreError};
use crate::domain::{Contact, Keyboard, Location, Message, MessageKind, Template};

/// An agent's message to the customer of an interaction: a text and/or files, or exactly one
/// of a contact, a location, a sticker (by file or by the platform's id) or a forward of an
/// earlier message of the interaction.
#[derive(Debug, Clone, Default)]
pub struct OutboundMessage {
    pub interaction_id: Uuid,
    pub agent_login: String,
    pub agent_name: String,
    pub client_msg_id: String,
    pub text: Option<String>,
    pub file_ids: Vec<Uuid>,
    pub keyboard: Option<Keyboard>,
    pub reply_to: Option<Uuid>,
    pub contact: Option<Contact>,
    pub location: Option<Location>,
    /// A sticker by the platform's id (`sticker_id`), or by file: `sticker` with one file.
    pub sticker_id: Option<String>,
    pub sticker: bool,
    pub forward_of: Option<Uuid>,
    /// An approved template (WhatsApp); `text` is its body with the parameters filled in.
    pub template: Option<Template>,
    /// Written by an external bot (`agent_login` is the bot's): the message's author is `bot`,
    /// so the fence (migration 0017) cancels it while unsent when a person takes over. The caller
    /// checks [`super::bot_access`] in the same transaction.
    pub bot: bool,
}

impl OutboundMessage {
    /// The message's kind, or why its content does not make one message.
    fn kind(&self) -> std::result::Result<Option<MessageKind>, String> {
        let has_text = self.text.as_deref().is_some_and(|t| !t.is_empty());
        let special = [
            (self.contact.is_some(), "contact", MessageKind::Contact),
            (self.location.is_some(), "location", MessageKind::Location),
            (self.sticker || self.sticker_id.is_some(), "sticker", MessageKind::Sticker),
            (self.forward_of.is_some(), "forward", MessageKind::Text),
        ];
        let given: Vec<_> = special.iter().filter(|(on, _, _)| *on).collect();
        match given.as_slice() {
            [] if has_text || !self.file_ids.is_empty() => Ok(None),
            [] => Err("a message needs text, a file, a contact, a location, a sticker or a forward".into()),
            [(_, "sticker", kind)] if self.sticker_id.is_none() => {
                if has_text || self.file_ids.len() != 1 {
                    Err("a sticker by file is exactly one file and no text".into())
                } else {
                    Ok(Some(*kind))
                }
            }
            [(_, what, kind)] => {
                if has_text || !self.file_ids.is_empty() {
                    Err(format!("a {what} goes alone: no text and no files with it"))
                } else if self.sticker && self.sticker_id.is_some() {
                    Err("a sticker is either a file or a sticker_id, not both".into())
                } else {
                    Ok(Some(*kind))
                }
            }
            more => Err(format!(
                "one message carries at most one of contact, location, sticker and forward (got {})",
                more.iter().map(|(_, w, _)| *w).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

/// The result of [`enqueue_outbound`].
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub message: Message,
    /// False when this `client_msg_id` was used before: `message` is the first one and nothing
    /// new was queued.
    pub created: bool,
    /// Agents whose streams got `message.new`; empty when not created.
    pub audience: Vec<String>,
    pub account_id: Uuid,
}

/// Stores the message as `queued`, adds the outbox row and the events. A second call with the
/// same `(agent, client_msg_id)` returns the first message and writes nothing.
///
/// Order: the outbox ids of an account follow the order in which their transactions commit,
/// which for one chat is the order the hub accepted the messages in (the order of their
/// `message.new` events). Writers of one interaction queue on its row, locked first (the
/// lock-order invariant); writers of one account draw their outbox ids under the account's
/// outbox lock ([`lock_account_outbox`]), taken last and held to the commit. The connector
/// reads pending rows in id order from a cursor; without this, with two agents or tabs
/// writing at once, a row that drew a smaller id could commit after a larger one was read,
/// and a later message of its chat went out first.
///
/// The caller's transaction must not take further row locks after this call (the account's
/// outbox lock is the last lock of every transaction that takes it).
pub async fn enqueue_outbound(conn: &mut PgConnection, out: &OutboundMessage) -> Result<Enqueued> {
    let special = out.kind().map_err(StoreError::Invalid)?;
    let (account_id, chat_id) = lock_interaction_account(conn, out.interaction_id).await?;
    if let Some(existing) = find_by_client_msg_id(conn, &out.agent_login, &out.client_msg_id).await? {
        let message = super::load_message(conn, existing).await?;
        return Ok(Enqueued { message, created: false, audience: Vec::new(), account_id });
    }
    let kind = match (special, out.forward_of) {
        (_, Some(original)) => forwarded_kind(conn, out.interaction_id, original).await?,
        (Some(kind), None) => kind,
        (None, None) => kind_for_files(conn, &out.file_ids).await?,
    };
    let id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO messages (id, interaction_id, account_id, direction, author_kind, author_id, author_name,
             kind, text, reply_to, keyboard, status, client_msg_id, agent_login, contact, location, sticker_id,
             forward_of, template)
         VALUES ($1, $2, $3, 'out', $16, $4, $5, $6, $7, $8, $9, 'queued', $10, $4, $11, $12, $13, $14, $15)
         ON CONFLICT (agent_login, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING",
    )
    .bind(id)
    .bind(out.interaction_id)
    .bind(account_id)
    .bind(&out.agent_login)
    .bind(&out.agent_name)
    .bind(kind.as_str())
    .bind(&out.text)
    .bind(out.reply_to)
    .bind(out.keyboard.as_ref().map(|k| serde_json::to_value(k).expect("keyboard serializes")))
    .bind(&out.client_msg_id)
    .bind(out.contact.as_ref().map(|c| serde_json::to_value(c).expect("contact serializes")))
    .bind(out.location.as_ref().map(|l| serde_json::to_value(l).expect("location serializes")))
    .bind(&out.sticker_id)
    .bind(out.forward_of)
    .bind(out.template.as_ref().map(|t| serde_json::to_value(t).expect("template serializes")))
    .bind(if out.bot { "bot" } else { "agent" })
    .execute(&mut *conn)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::Invalid("reply_to names no message, or the agent is unknown".into())
        }
        other => other.into(),
    })?;
    if inserted.rows_affected() == 0 {
        // a concurrent request with the same client_msg_id won
        let first = find_by_client_msg_id(conn, &out.agent_login, &out.client_msg_id)
            .await?
            .ok_or_else(|| StoreError::not_found("message", &out.client_msg_id))?;
        let message = super::load_message(conn, first).await?;
        return Ok(Enqueued { message, created: false, audience: Vec::new(), account_id });
    }
    attach_files(conn, id, &out.file_ids).await?;
    let message = super::load_message(conn, id).await?;
    let data = serde_json::json!({ "message": message });
    super::append_interaction_event(conn, out.interaction_id, "message.new", Some(&out.agent_login), &data).await?;
    super::history::record_message(conn, id, out.interaction_id).await?;
    let audience = super::fan_out(conn, out.interaction_id, "message.new", &data).await?;
    // last, so that the account's outbox lock is held only from here to the commit
    lock_account_outbox(conn, account_id).await?;
    sqlx::query("INSERT INTO outbox (message_id, account_id, chat_id, action) VALUES ($1, $2, $3, 'send')")
        .bind(id)
        .bind(account_id)
        .bind(&chat_id)
        .execute(&mut *conn)
        .await?;
    Ok(Enqueued { message, created: true, audience, account_id })
}

/// The message `agent` already sent with `client_msg_id`, if any.
pub async fn sent_with_client_msg_id(
    conn: &mut PgConnection,
    agent: &str,
    client_msg_id: &str,
) -> Result<Option<Message>> {
    match find_by_client_msg_id(conn, agent, client_msg_id).await? {
        Some(id) => Ok(Some(super::load_message(conn, id).await?)),
        None => Ok(None),
    }
}

async fn find_by_client_msg_id(conn: &mut PgConnection, agent: &str, client_msg_id: &str) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar("SELECT id FROM messages WHERE agent_login = $1 AND client_msg_id = $2")
        .bind(agent)
        .bind(client_msg_id)
        .fetch_optional(&mut *conn)
        .await?)
}

/// Serializes the transactions that add outbox rows to one account, from the moment they draw
/// their id to their commit (a transaction-scoped advisory lock keyed by the account), so that
/// an account's outbox ids become visible in id order and a reader's cursor never passes a row
/// that commits later. Held briefly: every caller takes it as its last step.
pub(super) async fn lock_account_outbox(conn: &mut PgConnection, account_id: Uuid) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(OUTBOX_LOCK_CLASS)
        .bind(account_lock_key(account_id))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The first key of the outbox's advisory locks (the second is [`account_lock_key`]).
const OUTBOX_LOCK_CLASS: i32 = 0x0b0c;

/// An account's 32-bit key for [`lock_account_outbox`]; two accounts that share one merely
/// queue behind each other.
fn account_lock_key(account_id: Uuid) -> i32 {
    let (hi, lo) = account_id.as_u64_pair();
    let folded = hi ^ lo;
    ((folded >> 32) as u32 ^ folded as u32) as i32
}

/// The interaction's account and chat, its row locked (`FOR NO KEY UPDATE`) until the caller's
/// transaction ends.
pub(super) async fn lock_interaction_account(conn: &mut PgConnection, interaction_id: Uuid) -> Result<(Uuid, String)> {
    let row = sqlx::query("SELECT account_id, chat_id FROM interactions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(interaction_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("interaction", interaction_id))?;
    Ok((row.try_get("account_id")?, row.try_get("chat_id")?))
}

/// The kind of an earlier message of the interaction that an agent forwards; it must have
/// reached the platform (a customer's message, or an agent's that was sent).
async fn forwarded_kind(conn: &mut PgConnection, interaction_id: Uuid, original: Uuid) -> Result<MessageKind> {
    let row = sqlx::query(
        "SELECT kind, external_message_id IS NOT NULL AS on_platform, deleted FROM messages
         WHERE id = $1 AND interaction_id = $2",
    )
    .bind(original)
    .bind(interaction_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::Invalid(format!("forward_of: message {original} is not in this interaction")))?;
    if row.try_get::<bool, _>("deleted")? || !row.try_get::<bool, _>("on_platform")? {
        return Err(StoreError::Invalid(format!(
            "forward_of: message {original} is not on the platform (deleted, or not sent yet)"
        )));
    }
    Ok(row.try_get::<&str, _>("kind")?.parse()?)
}

/// The message kind follows its first file's type; text otherwise.
pub(super) async fn kind_for_files(conn: &mut PgConnection, file_ids: &[Uuid]) -> Result<MessageKind> {
    let Some(first) = file_ids.first() else {
        return Ok(MessageKind::Text);
    };
    let mime: String = sqlx::query_scalar("SELECT mime FROM files WHERE id = $1")
        .bind(first)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::Invalid(format!("unknown file {first}")))?;
    Ok(match mime.split('/').next().unwrap_or_default() {
        "image" => MessageKind::Image,
        "video" => MessageKind::Video,
        "audio" => MessageKind::Audio,
        _ => MessageKind::Document,
    })
}

/// How many outbox rows of the account wait to be sent (the backlog gauge).
pub async fn outbox_backlog(conn: &mut PgConnection, account_id: Uuid) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM outbox WHERE account_id = $1 AND state = 'pending'")
        .bind(account_id)
        .fetch_one(&mut *conn)
        .await?)
}

/// An agent's own outbound message, locked after its interaction (lock order; and an edit or
/// delete queued now follows the chat's earlier outbox rows), with the interaction's channel.
async fn own_outbound(conn: &mut PgConnection, message_id: Uuid, agent: &str) -> Result<(Message, String)> {
    let interaction_id: Uuid = sqlx::query_scalar(
        "SELECT interaction_id FROM messages WHERE id = $1 AND direction = 'out' AND agent_login = $2",
    )
    .bind(message_id)
    .bind(agent)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::not_found("message", message_id))?;
    lock_interaction_account(conn, interaction_id).await?;
    let row = sqlx::query(
        "SELECT i.channel, m.deleted FROM messages m JOIN interactions i ON i.id = m.interaction_id
         WHERE m.id = $1 AND m.direction = 'out' AND m.agent_login = $2 FOR NO KEY UPDATE OF m",
    )
    .bind(message_id)
    .bind(agent)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::not_found("message", message_id))?;
    if row.try_get::<bool, _>("deleted")? {
        return Err(StoreError::Conflict(format!("message {message_id} is deleted")));
    }
    Ok((super::load_message(conn, message_id).await?, row.try_get("channel")?))
}

/// The channel of the interaction an agent's own outbound message belongs to; `NotFound` when
/// the message is not the agent's.
pub async fn outbound_channel(conn: &mut PgConnection, message_id: Uuid, agent: &str) -> Result<String> {
    Ok(own_outbound(conn, message_id, agent).await?.1)
}

/// Edits an agent's own outbound message: keeps the old text in `message_edits`, queues the edit
/// for the connector and sends `message.edited` to everyone who sees the interaction.
pub async fn edit_outbound(
    conn: &mut PgConnection,
    message_id: Uuid,
    agent: &str,
    text: &str,
) -> Result<(Message, Vec<String>, Uuid)> {
    if text.is_empty() {
        return Err(StoreError::Invalid("the new text is empty".into()));
    }
    let (before, _) = own_outbound(conn, message_id, agent).await?;
    sqlx::query("INSERT INTO message_edits (message_id, old_text, new_text, edited_by) VALUES ($1, $2, $3, $4)")
        .bind(message_id)
        .bind(&before.text)
        .bind(text)
        .bind(agent)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE messages SET text = $2, edited_at = now() WHERE id = $1")
        .bind(message_id)
        .bind(text)
        .execute(&mut *conn)
        .await?;
    let message = super::load_message(conn, message_id).await?;
    let data = serde_json::json!({ "message": message, "previous_text": before.text });
    super::append_interaction_event(conn, message.interaction_id, "message.edited", Some(agent), &data).await?;
    let audience = super::fan_out(conn, message.interaction_id, "message.edited", &data).await?;
    let account_id = queue_action(conn, message_id, "edit").await?;
    Ok((message, audience, account_id))
}

/// Deletes an agent's own outbound message (it stays in the history, marked deleted) and
/// queues the deletion for the connector.
pub async fn delete_outbound(
    conn: &mut PgConnection,
    message_id: Uuid,
    agent: &str,
) -> Result<(Message, Vec<String>, Uuid)> {
    own_outbound(conn, message_id, agent).await?;
    sqlx::query("UPDATE messages SET deleted = true WHERE id = $1").bind(message_id).execute(&mut *conn).await?;
    let message = super::load_message(conn, message_id).await?;
    let data = serde_json::json!({ "message_id": message_id, "interaction_id": message.interaction_id });
    super::append_interaction_event(conn, message.interaction_id, "message.deleted", Some(agent), &data).await?;
    let audience = super::fan_out(conn, message.interaction_id, "message.deleted", &data).await?;
    let account_id = queue_action(conn, message_id, "delete").await?;
    Ok((message, audience, account_id))
}

/// Queues an edit or a deletion for the connector; the caller's last step (see
/// [`lock_account_outbox`]).
async fn queue_action(conn: &mut PgConnection, message_id: Uuid, action: &str) -> Result<Uuid> {
    let account_id: Uuid = sqlx::query_scalar("SELECT account_id FROM messages WHERE id = $1")
        .bind(message_id)
        .fetch_one(&mut *conn)
        .await?;
    lock_account_outbox(conn, account_id).await?;
    Ok(sqlx::query_scalar(
        "INSERT INTO outbox (message_id, account_id, chat_id, action)
         SELECT m.id, m.account_id, i.chat_id, $2 FROM messages m JOIN interactions i ON i.id = m.interaction_id
         WHERE m.id = $1 RETURNING account_id",
    )
    .bind(message_id)
    .bind(action)
    .fetch_one(&mut *conn)
    .await?)
}
