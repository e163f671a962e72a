//! What a connector writes besides inbound messages: its outbox work (claim, then the outcome
//! of each attempt, fenced by the leader's token), status events, customers' edits, avatars.
//!
//! Every outbox write runs [`check_fence`](super::check_fence) with the leader's token in the
//! same transaction (at its end, so the fence row is locked only for the commit): a deposed
//! leader's claim or result is refused and rolled back, and the token of the
//! leader that attempted a row is kept on it (`outbox.fencing_token`), so a row claimed by one
//! leader and still pending under the next is known to be in doubt.

use chrono::{DateTime, Utc};
use const_format::concatcp;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Result, StoreError};
use crate::domain::{Account, Channel, Message, MessageStatus, OutboxAction};

/// The fencing key of one account's connector leadership (also its election key).
pub fn connector_key(account_id: Uuid) -> String {
    format!("connector/{account_id}")
}

/// One outbox row with what the connector needs to perform it.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: i64,
    pub action: OutboxAction,
    pub chat_id: String,
    /// Attempts made before this one.
    pub attempts: i32,
    pub not_before: DateTime<Utc>,
    /// Token of the leader that made the last attempt, if any.
    pub fencing_token: Option<i64>,
    pub last_error: Option<String>,
    /// The message as it is now (an edit carries the new text).
    pub message: Message,
    /// The platform ids the message got when it was sent (first part first).
    pub external_ids: Vec<String>,
    /// The platform id of the message this one replies to.
    pub reply_to_external_id: Option<String>,
    /// The platform id of the message this one forwards.
    pub forward_of_external_id: Option<String>,
    /// The sending agent's avatar, for platforms that show it.
    pub author_avatar: Option<String>,
    /// A campaign's row (the bulk lane): which campaign and recipient; `None` for live rows.
    pub bulk: Option<super::BulkItem>,
}

const OUTBOX_COLUMNS: &str = "o.id, o.action, o.chat_id, o.attempts, o.not_before, o.fencing_token, o.last_error, \
     o.message_id, m.external_message_id, m.external_parts, r.external_message_id AS reply_to_external_id, \
     f.external_message_id AS forward_of_external_id, a.avatar_url AS author_avatar";

/// The account's (`$1`) pending live rows with what sending them needs, for a condition on
/// `o.id` to follow.
const PENDING_LIVE: &str = concatcp!(
    "SELECT ",
    OUTBOX_COLUMNS,
    " FROM outbox o JOIN messages m ON m.id = o.message_id
      LEFT JOIN messages r ON r.id = m.reply_to
      LEFT JOIN messages f ON f.id = m.forward_of
      LEFT JOIN agents a ON a.login = m.agent_login
      WHERE o.account_id = $1 AND o.state = 'pending' AND o.message_id IS NOT NULL"
);

/// Pending live outbox rows (agents' messages, edits and deletions; campaigns' rows are read by
/// [`super::pending_bulk_outbox`]) of the account with `id > after`, oldest first, at most
/// `limit`, whether or not their retry time has come (the connector orders and paces them
/// itself).
pub async fn pending_outbox(
    conn: &mut PgConnection,
    account_id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<OutboxItem>> {
    const SQL: &str = concatcp!(
        PENDING_LIVE,
        " AND o.id > $2
          ORDER BY o.id LIMIT $3"
    );
    let rows = sqlx::query(SQL).bind(account_id).bind(after).bind(limit).fetch_all(&mut *conn).await?;
    outbox_items(conn, &rows).await
}

/// Pending live outbox rows of the account with `id <= upto` other than `held`, oldest first, at
/// most `limit`: the rows a reader at cursor `upto` has not seen because their transaction
/// committed after a later row's. Only those rows are loaded (the held ones are skipped by the
/// index scan), so looking again costs little however many rows the reader holds.
pub async fn pending_outbox_behind(
    conn: &mut PgConnection,
    account_id: Uuid,
    upto: i64,
    held: &[i64],
    limit: i64,
) -> Result<Vec<OutboxItem>> {
    const SQL: &str = concatcp!(
        PENDING_LIVE,
        " AND o.id <= $2
            AND o.id <> ALL($3)
          ORDER BY o.id LIMIT $4"
    );
    let rows = sqlx::query(SQL).bind(account_id).bind(upto).bind(held).bind(limit).fetch_all(&mut *conn).await?;
    outbox_items(conn, &rows).await
}

/// The [`OutboxItem`]s of rows selected with [`OUTBOX_COLUMNS`], their messages loaded together.
async fn outbox_items(conn: &mut PgConnection, rows: &[sqlx::postgres::PgRow]) -> Result<Vec<OutboxItem>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.try_get("message_id")).collect::<Result<_, sqlx::Error>>()?;
    let messages = super::load_messages(conn, &ids).await?;
    let mut by_id: std::collections::HashMap<Uuid, Message> = messages.into_iter().map(|m| (m.id, m)).collect();
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let message_id: Uuid = row.try_get("message_id")?;
        let message = match by_id.get(&message_id) {
            Some(m) => m.clone(),
            None => return Err(StoreError::not_found("message", message_id)),
        };
        let first: Option<String> = row.try_get("external_message_id")?;
        let parts: Option<Vec<String>> = row.try_get("external_parts")?;
        let external_ids = match parts {
            Some(parts) if !parts.is_empty() => parts,
            _ => first.into_iter().collect(),
        };
        items.push(OutboxItem {
            id: row.try_get("id")?,
            action: row.try_get::<&str, _>("action")?.parse()?,
            chat_id: row.try_get("chat_id")?,
            attempts: row.try_get("attempts")?,
            not_before: row.try_get("not_before")?,
            fencing_token: row.try_get("fencing_token")?,
            last_error: row.try_get("last_error")?,
            message,
            external_ids,
            reply_to_external_id: row.try_get("reply_to_external_id")?,
            forward_of_external_id: row.try_get("forward_of_external_id")?,
            author_avatar: row.try_get("author_avatar")?,
            bulk: None,
        });
    }
    by_id.clear();
    Ok(items)
}

/// Records an attempt on each of `ids` by the leader holding `token` (attempts + 1, the token
/// kept on the row), checking the fence. Returns the ids still pending, which the caller
/// may now perform; the others were finished meanwhile.
pub async fn claim_outbox(conn: &mut PgConnection, account_id: Uuid, token: i64, ids: &[i64]) -> Result<Vec<i64>> {
    // the rows locked in id order (see OUTBOX_LOCKED), then updated by primary key: a row
    // finished or cancelled since the caller read it is not claimed
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    let claimed: Vec<i64> = sqlx::query_scalar(concatcp!(
        "WITH target AS (SELECT o.id FROM ",
        OUTBOX_LOCKED,
        " WHERE o.account_id = $2 AND o.state = 'pending')
         UPDATE outbox SET attempts = attempts + 1, fencing_token = $3, updated_at = now()
         WHERE id = ANY(ARRAY(SELECT id FROM target))
         RETURNING id"
    ))
    .bind(&ids)
    .bind(account_id)
    .bind(token)
    .fetch_all(&mut *conn)
    .await?;
    // last: the fence row stays locked until the commit, so it is locked for the shortest time
    super::check_fence(conn, &connector_key(account_id), token).await?;
    Ok(claimed)
}

/// How an attempt on an outbox row ended.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxOutcome {
    /// Done. For a send, the platform ids of the messages it became (first part first).
    Done { external_ids: Vec<String> },
    /// Not done yet: try again at `not_before`.
    Retry { not_before: DateTime<Utc>, error: String },
    /// Will never succeed: the platform's reason (or the limit that was exceeded).
    Failed { error: String },
}

/// What the caller must announce after the commit: the agents whose streams got an event.
#[derive(Debug, Clone, Default)]
pub struct Announced {
    pub audience: Vec<String>,
    /// The message as it is now, when its status changed.
    pub message: Option<Message>,
    /// The campaign of a bulk row that ended (sent or failed).
    pub campaign: Option<Uuid>,
}

/// Stores the outcome of an attempt on row `outbox_id`, checking the fence:
///
/// - a `send` done: the message becomes `sent` with its platform ids;
/// - a `send` failed: the message becomes `failed` with the error;
/// - an `edit`/`delete` failed: the message keeps its status and the failure is reported;
///
/// and every status change (or failure) is appended as `message.status`
/// (`{"message": <Message>}`, plus `action` and `error` for a failed edit or delete) to the
/// interaction's log and its audience's streams. A retry only records when and why.
pub async fn finish_outbox(
    conn: &mut PgConnection,
    account_id: Uuid,
    token: i64,
    outbox_id: i64,
    outcome: &OutboxOutcome,
) -> Result<Announced> {
    let announced = record_outcome(conn, account_id, outbox_id, outcome).await?;
    if let Some(campaign) = announced.campaign {
        super::finish_campaigns(conn, &[campaign]).await?;
    }
    // last: every outcome of the account's leader passes this row, which stays locked until
    // the commit; checked at the end it is held for the commit only, not the whole transaction
    super::check_fence(conn, &connector_key(account_id), token).await?;
    Ok(announced)
}

/// [`finish_outbox`] for several rows of the account in one transaction (one commit, one fence
/// check): what the outbox worker's recorder does with the outcomes that finished while the
/// previous transaction ran. Before any row is written it takes, in a fixed order, every lock
/// the rows will need (the receipt locks of the platform ids, the interactions by id, then their
/// audiences' agents by login), so two batches, or a batch and an inbound batch, never wait for
/// each other in a cycle. Returns one [`Announced`] per row, in order.
pub async fn finish_outbox_many(
    conn: &mut PgConnection,
    account_id: Uuid,
    token: i64,
    outcomes: &[(i64, OutboxOutcome)],
) -> Result<Vec<Announced>> {
    let mut ids: Vec<i64> = outcomes.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    let mut external: Vec<&str> = outcomes
        .iter()
        .filter_map(|(_, o)| match o {
            OutboxOutcome::Done { external_ids } => Some(external_ids.iter().map(String::as_str)),
            _ => None,
        })
        .flatten()
        .collect();
    external.sort_unstable();
    external.dedup();
    if !external.is_empty() {
        sqlx::query(concatcp!(
            "SELECT ",
            RECEIPT_LOCK,
            " FROM (SELECT x AS external_id FROM unnest($2::text[]) AS x ORDER BY x) ids"
        ))
        .bind(account_id.to_string())
        .bind(&external)
        .execute(&mut *conn)
        .await?;
    }
    let interactions: Vec<Uuid> = sqlx::query_scalar(concatcp!(
        "SELECT i.id FROM interactions i
         WHERE i.id IN (SELECT m.interaction_id FROM ",
        OUTBOX_BY_ID,
        " JOIN messages m ON m.id = o.message_id WHERE o.account_id = $2)
         ORDER BY i.id FOR NO KEY UPDATE"
    ))
    .bind(&ids)
    .bind(account_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut agents: Vec<String> = super::audiences(conn, &interactions).await?.into_values().flatten().collect();
    agents.sort_unstable();
    agents.dedup();
    if !agents.is_empty() {
        sqlx::query("SELECT login FROM agents WHERE login = ANY($1) ORDER BY login FOR NO KEY UPDATE")
            .bind(&agents)
            .execute(&mut *conn)
            .await?;
    }
    // campaign rows: locked in id order and recorded together (a few statements for the batch)
    let bulk: Vec<(i64, bool)> = sqlx::query_as(concatcp!(
        "SELECT o.id, o.state = 'pending' FROM ",
        OUTBOX_LOCKED,
        " WHERE o.account_id = $2 AND o.message_id IS NULL"
    ))
    .bind(&ids)
    .bind(account_id)
    .fetch_all(&mut *conn)
    .await?;
    let pending: std::collections::HashMap<i64, bool> = bulk.into_iter().collect();
    let bulk_outcomes: Vec<(i64, bool, &OutboxOutcome)> =
        outcomes.iter().filter_map(|(id, o)| pending.get(id).map(|p| (*id, *p, o))).collect();
    let campaigns = super::campaigns::record_bulk_outcomes(conn, account_id, &bulk_outcomes).await?;
    // the common case, sends that went through: locked in id order and recorded together
    let rows: Vec<(i64, Uuid, String, String)> = sqlx::query_as(concatcp!(
        "SELECT o.id, o.message_id, o.action, o.state FROM ",
        OUTBOX_LOCKED,
        " WHERE o.account_id = $2 AND o.message_id IS NOT NULL"
    ))
    .bind(&ids)
    .bind(account_id)
    .fetch_all(&mut *conn)
    .await?;
    let sendable: std::collections::HashMap<i64, Uuid> = rows
        .into_iter()
        .filter(|(_, _, action, state)| action == OutboxAction::Send.as_str() && state == "pending")
        .map(|(id, message, _, _)| (id, message))
        .collect();
    let sent: Vec<(i64, Uuid, &[String])> = outcomes
        .iter()
        .filter_map(|(id, outcome)| match (sendable.get(id), outcome) {
            (Some(message), OutboxOutcome::Done { external_ids }) => Some((*id, *message, external_ids.as_slice())),
            _ => None,
        })
        .collect();
    let mut sent = record_sends(conn, account_id, &sent).await?;
    let mut announced = Vec::with_capacity(outcomes.len());
    for (id, outcome) in outcomes {
        if pending.contains_key(id) {
            announced.push(Announced::default());
        } else if let Some(done) = sent.remove(id) {
            announced.push(done);
        } else {
            announced.push(record_outcome(conn, account_id, *id, outcome).await?);
        }
    }
    super::finish_campaigns(conn, &campaigns).await?;
    super::check_fence(conn, &connector_key(account_id), token).await?;
    Ok(announced)
}

/// [`record_outcome`] of many sends that went through (rows pending, locked by the caller):
/// a handful of statements for the lot instead of about ten per row. Each message becomes
/// `sent` with its platform ids, its `message.status` goes to its interaction's log and its
/// audience's streams, and receipts that arrived before the send was recorded are applied.
async fn record_sends(
    conn: &mut PgConnection,
    account_id: Uuid,
    sent: &[(i64, Uuid, &[String])],
) -> Result<std::collections::HashMap<i64, Announced>> {
    let mut out = std::collections::HashMap::new();
    if sent.is_empty() {
        return Ok(out);
    }
    let ids: Vec<i64> = sent.iter().map(|(id, _, _)| *id).collect();
    let message_ids: Vec<Uuid> = sent.iter().map(|(_, m, _)| *m).collect();
    let firsts: Vec<Option<&str>> = sent.iter().map(|(_, _, e)| e.first().map(String::as_str)).collect();
    let parts: Vec<serde_json::Value> = sent.iter().map(|(_, _, e)| serde_json::json!(e)).collect();
    sqlx::query("UPDATE outbox SET state = 'done', last_error = NULL, updated_at = now() WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE messages m SET status = 'sent', error = NULL, external_message_id = t.first,
             external_parts = ARRAY(SELECT jsonb_array_elements_text(t.parts))
         FROM unnest($1::uuid[], $2::text[], $3::jsonb[]) AS t(id, first, parts)
         WHERE m.id = t.id",
    )
    .bind(&message_ids)
    .bind(&firsts)
    .bind(&parts)
    .execute(&mut *conn)
    .await?;
    let external: Vec<&str> = sent.iter().flat_map(|(_, _, e)| e.iter().map(String::as_str)).collect();
    let early: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "DELETE FROM early_receipts WHERE account_id = $1 AND external_id = ANY($2)
         RETURNING external_id, status, error",
    )
    .bind(account_id)
    .bind(&external)
    .fetch_all(&mut *conn)
    .await?;
    let messages = super::load_messages(conn, &message_ids).await?;
    if messages.len() != sent.len() {
        return Err(StoreError::Invalid("an outbox row names a message that is gone".into()));
    }
    let interactions: Vec<Uuid> = messages.iter().map(|m| m.interaction_id).collect();
    let datas: Vec<serde_json::Value> = messages.iter().map(|m| serde_json::json!({ "message": m })).collect();
    super::append_interaction_events_many(conn, &interactions, "message.status", Some("connector"), &datas).await?;
    let distinct: Vec<Uuid> = {
        let mut d = interactions.clone();
        d.sort();
        d.dedup();
        d
    };
    let audience = super::audiences(conn, &distinct).await?;
    super::fan_out_many(conn, &audience, &interactions, "message.status", &datas).await?;
    for ((id, _, _), message) in sent.iter().zip(messages) {
        let audience = audience.get(&message.interaction_id).cloned().unwrap_or_default();
        out.insert(*id, Announced { audience, message: Some(message), campaign: None });
    }
    // receipts the platform sent before the send was recorded (rare): one by one, after it
    for (external_id, status, error) in early {
        let Some((id, message_id, _)) = sent.iter().find(|(_, _, e)| e.contains(&external_id)) else {
            continue;
        };
        if let Some(receipt) = Receipt::from_row(&status, error)
            && let Some(more) = apply_receipt(conn, *message_id, &receipt).await?
        {
            let announced = out.get_mut(id).expect("every sent row is announced");
            announced.audience.extend(more.audience);
            announced.audience.sort();
            announced.audience.dedup();
            announced.message = more.message;
        }
    }
    Ok(out)
}

async fn record_outcome(
    conn: &mut PgConnection,
    account_id: Uuid,
    outbox_id: i64,
    outcome: &OutboxOutcome,
) -> Result<Announced> {
    let row = sqlx::query("SELECT message_id, action, state FROM outbox WHERE id = $1 AND account_id = $2 FOR UPDATE")
        .bind(outbox_id)
        .bind(account_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("outbox row", outbox_id))?;
    let pending = row.try_get::<&str, _>("state")? == "pending";
    let Some(message_id) = row.try_get::<Option<Uuid>, _>("message_id")? else {
        // a campaign's row: its recipient is the report
        let campaign = super::campaigns::record_bulk_outcome(conn, outbox_id, pending, outcome).await?;
        return Ok(Announced { campaign, ..Announced::default() });
    };
    if !pending {
        // finished by someone else already (a retried result): nothing more to say
        return Ok(Announced::default());
    }
    let action: OutboxAction = row.try_get::<&str, _>("action")?.parse()?;
    match outcome {
        OutboxOutcome::Retry { not_before, error } => {
            sqlx::query("UPDATE outbox SET not_before = $2, last_error = $3, updated_at = now() WHERE id = $1")
                .bind(outbox_id)
                .bind(not_before)
                .bind(error)
                .execute(&mut *conn)
                .await?;
            Ok(Announced::default())
        }
        OutboxOutcome::Done { external_ids } => {
            sqlx::query("UPDATE outbox SET state = 'done', last_error = NULL, updated_at = now() WHERE id = $1")
                .bind(outbox_id)
                .execute(&mut *conn)
                .await?;
            if action != OutboxAction::Send {
                return Ok(Announced::default());
            }
            // a receipt for these ids waits until this commits (see `RECEIPT_LOCK`)
            sqlx::query(concatcp!(
                "SELECT ",
                RECEIPT_LOCK,
                " FROM (SELECT x AS external_id FROM unnest($2::text[]) AS x ORDER BY x) ids"
            ))
            .bind(account_id.to_string())
            .bind(external_ids)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE messages SET status = 'sent', error = NULL, external_message_id = $2, external_parts = $3
                 WHERE id = $1",
            )
            .bind(message_id)
            .bind(external_ids.first())
            .bind(external_ids)
            .execute(&mut *conn)
            .await?;
            let early: Vec<(String, Option<String>)> = sqlx::query_as(
                "DELETE FROM early_receipts WHERE account_id = $1 AND external_id = ANY($2) RETURNING status, error",
            )
            .bind(account_id)
            .bind(external_ids)
            .fetch_all(&mut *conn)
            .await?;
            let mut announced = announce_status(conn, message_id, None).await?;
            for (status, error) in early {
                if let Some(receipt) = Receipt::from_row(&status, error)
                    && let Some(more) = apply_receipt(conn, message_id, &receipt).await?
                {
                    announced.audience.extend(more.audience);
                    announced.message = more.message;
                }
            }
            announced.audience.sort();
            announced.audience.dedup();
            Ok(announced)
        }
        OutboxOutcome::Failed { error } => {
            sqlx::query("UPDATE outbox SET state = 'failed', last_error = $2, updated_at = now() WHERE id = $1")
                .bind(outbox_id)
                .bind(error)
                .execute(&mut *conn)
                .await?;
            if action == OutboxAction::Send {
                sqlx::query("UPDATE messages SET status = 'failed', error = $2 WHERE id = $1")
                    .bind(message_id)
                    .bind(error)
                    .execute(&mut *conn)
                    .await?;
                announce_status(conn, message_id, None).await
            } else {
                announce_status(conn, message_id, Some((action, error))).await
            }
        }
    }
}

/// Appends `message.status` for the message as it is now.
async fn announce_status(
    conn: &mut PgConnection,
    message_id: Uuid,
    failed_action: Option<(OutboxAction, &str)>,
) -> Result<Announced> {
    let message = super::load_message(conn, message_id).await?;
    let mut data = serde_json::json!({ "message": message });
    if let Some((action, error)) = failed_action {
        data["action"] = serde_json::json!(action);
        data["error"] = serde_json::json!(error);
    }
    super::append_interaction_event(conn, message.interaction_id, "message.status", Some("connector"), &data).await?;
    let audience = super::fan_out(conn, message.interaction_id, "message.status", &data).await?;
    Ok(Announced { audience, message: Some(message), campaign: None })
}

/// The platform ids an outbound message got when it was sent (first part first); empty
/// while it has not been sent.
pub async fn message_external_ids(conn: &mut PgConnection, message_id: Uuid) -> Result<Vec<String>> {
    let row = sqlx::query("SELECT external_message_id, external_parts FROM messages WHERE id = $1")
        .bind(message_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("message", message_id))?;
    let parts: Option<Vec<String>> = row.try_get("external_parts")?;
    let first: Option<String> = row.try_get("external_message_id")?;
    Ok(match parts {
        Some(parts) if !parts.is_empty() => parts,
        _ => first.into_iter().collect(),
    })
}

/// A message's stored status, for tests and tools.
pub async fn message_status(conn: &mut PgConnection, message_id: Uuid) -> Result<MessageStatus> {
    let status: String = sqlx::query_scalar("SELECT status FROM messages WHERE id = $1")
        .bind(message_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("message", message_id))?;
    Ok(status.parse()?)
}

/// A customer edited a message the platform delivered before: keeps the old text in
/// `message_edits`, stores the new one and appends `message.edited`
/// (`{"message", "previous_text"}`) for everyone who sees the interaction.
///
/// Returns `None` when the original is unknown (never stored) and does nothing when the text is
/// already the new one (a repeated update), so it is safe to call again.
pub async fn record_inbound_edit(
    conn: &mut PgConnection,
    account_id: Uuid,
    external_message_id: &str,
    new_text: &str,
) -> Result<Option<Announced>> {
    let row = sqlx::query(
        "SELECT id, text FROM messages
         WHERE account_id = $1 AND external_message_id = $2 AND direction = 'in' FOR NO KEY UPDATE",
    )
    .bind(account_id)
    .bind(external_message_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let message_id: Uuid = row.try_get("id")?;
    let old_text: Option<String> = row.try_get("text")?;
    if old_text.as_deref() == Some(new_text) {
        return Ok(Some(Announced::default()));
    }
    sqlx::query(
        "INSERT INTO message_edits (message_id, old_text, new_text, edited_by) VALUES ($1, $2, $3, 'customer')",
    )
    .bind(message_id)
    .bind(&old_text)
    .bind(new_text)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE messages SET text = $2, edited_at = now() WHERE id = $1")
        .bind(message_id)
        .bind(new_text)
        .execute(&mut *conn)
        .await?;
    let message = super::load_message(conn, message_id).await?;
    let data = serde_json::json!({ "message": message, "previous_text": old_text });
    super::append_interaction_event(conn, message.interaction_id, "message.edited", Some("customer"), &data).await?;
    let audience = super::fan_out(conn, message.interaction_id, "message.edited", &data).await?;
    Ok(Some(Announced { audience, message: Some(message), campaign: None }))
}

/// Every version of a message's text, oldest first: `(old_text, new_text, edited_by)`.
pub async fn message_edits(
    conn: &mut PgConnection,
    message_id: Uuid,
) -> Result<Vec<(Option<String>, Option<String>, String)>> {
    let rows = sqlx::query("SELECT old_text, new_text, edited_by FROM message_edits WHERE message_id = $1 ORDER BY id")
        .bind(message_id)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(|r| Ok((r.try_get("old_text")?, r.try_get("new_text")?, r.try_get("edited_by")?))).collect()
}

/// Whether the customer known on the account as `external_id` exists, and their avatar URL.
/// `None`: no such customer yet.
pub async fn customer_avatar(
    conn: &mut PgConnection,
    account_id: Uuid,
    external_id: &str,
) -> Result<Option<Option<String>>> {
    let row = sqlx::query(
        "SELECT c.avatar_url FROM customer_identities ci JOIN customers c ON c.id = ci.customer_id
         WHERE ci.account_id = $1 AND ci.external_id = $2",
    )
    .bind(account_id)
    .bind(external_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| r.try_get("avatar_url")).transpose().map_err(Into::into)
}

/// The account's settings (`accounts.settings`: API URL, mode, limits...). Not secret.
pub async fn account_settings(conn: &mut PgConnection, id: Uuid) -> Result<serde_json::Value> {
    sqlx::query_scalar("SELECT settings FROM accounts WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("account", id))
}

/// Enabled accounts of the channels that have connectors, oldest first.
pub async fn enabled_accounts(conn: &mut PgConnection, channels: &[Channel]) -> Result<Vec<Account>> {
    let channels: Vec<&str> = channels.iter().map(|c| c.as_str()).collect();
    let ids: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM accounts WHERE enabled AND channel = ANY($1) ORDER BY created_at, id")
            .bind(&channels)
            .fetch_all(&mut *conn)
            .await?;
    let mut accounts = Vec::with_capacity(ids.len());
    for id in ids {
        accounts.push(super::get_account(conn, id).await?);
    }
    Ok(accounts)
}

// ----------------------------------------------------------------------------- receipts --

/// What a platform reports about an outbound message after it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// Delivered to the customer's device.
    Delivered,
    /// Read (seen) by the customer.
    Read,
    /// The platform could not deliver it after accepting it, with its reason.
    Failed(String),
}

impl Receipt {
    fn status(&self) -> MessageStatus {
        match self {
            Receipt::Delivered => MessageStatus::Delivered,
            Receipt::Read => MessageStatus::Read,
            Receipt::Failed(_) => MessageStatus::Failed,
        }
    }

    pub(crate) fn from_row(status: &str, error: Option<String>) -> Option<Receipt> {
        match status {
            "delivered" => Some(Receipt::Delivered),
            "read" => Some(Receipt::Read),
            "failed" => Some(Receipt::Failed(error.unwrap_or_default())),
            _ => None,
        }
    }
}

/// Where an outbound message's status stands; a receipt only ever moves it forward.
fn rank(status: MessageStatus) -> u8 {
    match status {
        MessageStatus::Received | MessageStatus::Queued => 0,
        MessageStatus::Sent => 1,
        MessageStatus::Delivered => 2,
        MessageStatus::Read => 3,
        MessageStatus::Failed => 4,
    }
}

/// A transaction-scoped advisory lock per `(account, platform message id)`, taken by
/// [`record_receipt`] and by a send's outcome before either looks at the other's rows. Without
/// it, a receipt that comes while the outcome is being committed (Viber's `delivered` often
/// does) finds no message yet, while the outcome's transaction finds no early receipt yet:
/// under READ COMMITTED neither sees the other, and the receipt stays in `early_receipts`
/// forever. With it, whichever comes second waits for the first to commit and then sees it.
/// Hash collisions only make two unrelated receipts wait for each other.
/// (`$1` is the account id as text, `ids.external_id` each platform id.)
/// Outbox rows by id, each row locked, in the order of the sorted array `$1`: `FROM` this,
/// as `o`, then filter `o` by account, state or kind in the outer query. Each row is found by
/// its primary key alone, so no statistics can turn the lookup into a walk: written as
/// `account_id = .. AND id = ANY(..) AND state = 'pending'` (or `message_id IS NULL`), the
/// planner, with a young outbox's statistics (analysed while nearly empty, before a backlog or
/// a campaign filled it), walked the account's pending rows (or every campaign row) through
/// the list instead: 6-12 ms per claim or outcome at 20,000 rows waiting. `FOR UPDATE`
/// returns each row as the last commit left it and holds it until ours, so the filters
/// outside see what is true now.
pub(crate) const OUTBOX_LOCKED: &str = "unnest($1::int8[]) AS k(id)
     CROSS JOIN LATERAL (SELECT * FROM outbox WHERE id = k.id LIMIT 1 FOR UPDATE) o";

/// [`OUTBOX_LOCKED`] without the locks, to read.
const OUTBOX_BY_ID: &str = "unnest($1::int8[]) AS k(id)
     CROSS JOIN LATERAL (SELECT * FROM outbox WHERE id = k.id LIMIT 1) o";

pub(crate) const RECEIPT_LOCK: &str = "pg_advisory_xact_lock(hashtextextended($1 || ':' || ids.external_id, 7))";

/// What [`record_receipt`] did.
#[derive(Debug, Clone)]
pub enum ReceiptOutcome {
    /// The message's status changed: announce to the audience after the commit.
    Applied(Box<Announced>),
    /// Nothing changed: the message is already at or past this status (a late `delivered`
    /// after `read`, a repeat), or a failure after delivery.
    Unchanged,
    /// No outbound message has this platform id yet: the receipt waits for the send's outcome.
    Early,
}

/// Records a platform receipt for the outbound message of `account_id` that has `external_id`
/// as one of its parts. Monotonic: `sent` < `delivered` < `read`, and `failed` only from `sent`
/// (a late `delivered` never overwrites `read`). Each change is a `message.status` event for the
/// interaction's log and audience, and an entry in the customer's history. A receipt for an id
/// the hub has not stored yet waits in `early_receipts` until the send's outcome is stored.
/// Run it in a transaction: its lock against a concurrent outcome lasts until the commit.
pub async fn record_receipt(
    conn: &mut PgConnection,
    account_id: Uuid,
    external_id: &str,
    receipt: &Receipt,
) -> Result<ReceiptOutcome> {
    sqlx::query(concatcp!("SELECT ", RECEIPT_LOCK, " FROM (SELECT $2::text AS external_id) ids"))
        .bind(account_id.to_string())
        .bind(external_id)
        .execute(&mut *conn)
        .await?;
    let message_id: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM messages WHERE direction = 'out' AND external_parts @> ARRAY[$2]::text[] AND account_id = $1
         ORDER BY created_at LIMIT 1",
    )
    .bind(account_id)
    .bind(external_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(message_id) = message_id else {
        if let Some(outcome) = super::campaigns::campaign_receipt(conn, account_id, external_id, receipt).await? {
            return Ok(outcome);
        }
        let (status, error) = match receipt {
            Receipt::Failed(error) => ("failed", Some(error.as_str())),
            other => (other.status().as_str(), None),
        };
        sqlx::query(
            "INSERT INTO early_receipts (account_id, external_id, status, error) VALUES ($1, $2, $3, $4)
             ON CONFLICT (account_id, external_id) DO UPDATE SET status = EXCLUDED.status, error = EXCLUDED.error
             WHERE early_receipts.status <> 'read'",
        )
        .bind(account_id)
        .bind(external_id)
        .bind(status)
        .bind(error)
        .execute(&mut *conn)
        .await?;
        // a receipt for a message the hub never sent (a welcome message, a send of another
        // system on the same bot) would wait forever: receipts a day old are forgotten
        sqlx::query("DELETE FROM early_receipts WHERE account_id = $1 AND created_at < now() - interval '1 day'")
            .bind(account_id)
            .execute(&mut *conn)
            .await?;
        return Ok(ReceiptOutcome::Early);
    };
    Ok(match apply_receipt(conn, message_id, receipt).await? {
        Some(announced) => ReceiptOutcome::Applied(Box::new(announced)),
        None => ReceiptOutcome::Unchanged,
    })
}

/// Moves the message's status forward to the receipt's, if that is forward.
async fn apply_receipt(conn: &mut PgConnection, message_id: Uuid, receipt: &Receipt) -> Result<Option<Announced>> {
    let current: String = sqlx::query_scalar("SELECT status FROM messages WHERE id = $1 FOR NO KEY UPDATE")
        .bind(message_id)
        .fetch_one(&mut *conn)
        .await?;
    let current: MessageStatus = current.parse()?;
    let next = receipt.status();
    let forward = match receipt {
        Receipt::Failed(_) => current == MessageStatus::Sent,
        _ => current != MessageStatus::Failed && rank(next) > rank(current),
    };
    if !forward {
        return Ok(None);
    }
    let error = match receipt {
        Receipt::Failed(error) => Some(error.as_str()),
        _ => None,
    };
    sqlx::query("UPDATE messages SET status = $2, error = COALESCE($3, error) WHERE id = $1")
        .bind(message_id)
        .bind(next.as_str())
        .bind(error)
        .execute(&mut *conn)
        .await?;
    // (the event reaches the customer's history with it: append_interaction_event records it)
    Ok(Some(announce_status(conn, message_id, None).await?))
}
