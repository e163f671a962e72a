//! A customer's history across every channel: one row per message and per state change.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::Result;
use crate::domain::Message;

pub(crate) async fn record_message(conn: &mut PgConnection, message_id: Uuid, interaction_id: Uuid) -> Result<()> {
    sqlx::query(
        "INSERT INTO history (customer_id, interaction_id, channel, entry, message_id)
         SELECT customer_id, id, channel, 'message', $2 FROM interactions WHERE id = $1",
    )
    .bind(interaction_id)
    .bind(message_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(crate) async fn record_event(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    kind: &str,
    actor: Option<&str>,
    data: &serde_json::Value,
) -> Result<()> {
    let event = serde_json::json!({ "kind": kind, "actor": actor, "data": data });
    sqlx::query(
        "INSERT INTO history (customer_id, interaction_id, channel, entry, event)
         SELECT customer_id, id, channel, 'event', $2 FROM interactions WHERE id = $1",
    )
    .bind(interaction_id)
    .bind(event)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One page of history, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryPage {
    pub messages: Vec<Message>,
    pub events: Vec<HistoryEvent>,
    /// Pass as `before` to get the next (older) page; `None` at the beginning of history.
    pub next_before: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryEvent {
    pub cursor: i64,
    pub interaction_id: Uuid,
    pub channel: String,
    pub at: DateTime<Utc>,
    pub event: serde_json::Value,
}

/// Pages backwards through everything `customer_id` ever did, on every channel. `before` is the
/// `next_before` of the previous page.
pub async fn history_page(
    conn: &mut PgConnection,
    customer_id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<HistoryPage> {
    let rows = sqlx::query(
        "SELECT id, interaction_id, channel, entry, message_id, event, at FROM history
         WHERE customer_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
    )
    .bind(customer_id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit + 1)
    .fetch_all(&mut *conn)
    .await?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let mut message_ids = Vec::new();
    let mut events = Vec::new();
    for row in rows {
        let entry: &str = row.try_get("entry")?;
        if entry == "message" {
            if let Some(id) = row.try_get::<Option<Uuid>, _>("message_id")? {
                message_ids.push(id);
            }
        } else {
            events.push(HistoryEvent {
                cursor: row.try_get("id")?,
                interaction_id: row.try_get("interaction_id")?,
                channel: row.try_get("channel")?,
                at: row.try_get("at")?,
                event: row.try_get::<Option<serde_json::Value>, _>("event")?.unwrap_or_default(),
            });
        }
    }
    let messages = super::load_messages(conn, &message_ids).await?;
    let next_before = if more { rows.last().map(|r| r.try_get("id")).transpose()? } else { None };
    Ok(HistoryPage { messages, events, next_before })
}
