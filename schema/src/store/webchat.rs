//! What the web chat connector reads for its customers' own sockets.

use sqlx::PgConnection;
use uuid::Uuid;

use super::Result;
use crate::domain::Message;

/// The newest `limit` messages of every interaction the customer `external_id` had with the
/// account, oldest first: what a web chat widget shows after a reload.
pub async fn customer_transcript(
    conn: &mut PgConnection,
    account_id: Uuid,
    external_id: &str,
    limit: i64,
) -> Result<Vec<Message>> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT m.id FROM messages m JOIN interactions i ON i.id = m.interaction_id
         WHERE i.account_id = $1 AND i.external_id = $2
         ORDER BY m.created_at DESC, m.id DESC LIMIT $3",
    )
    .bind(account_id)
    .bind(external_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut messages = super::load_messages(conn, &ids).await?;
    messages.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    Ok(messages)
}

/// Whether the database holds any channel account (the demo seeds an empty database only).
pub async fn any_account(conn: &mut PgConnection) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM accounts)").fetch_one(&mut *conn).await?)
}

/// The customer `external_id` has seen the conversation: the agents' messages already sent to
/// them become `read`, each announced as `message.status` (actor `customer`) to the
/// interaction's log and its audience. Returns the agents whose streams got an event.
pub async fn customer_read(conn: &mut PgConnection, account_id: Uuid, external_id: &str) -> Result<Vec<String>> {
    // lock order as everywhere: messages (by id), then their interactions (by id), then the
    // audience's agents (in `fan_out`)
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT m.id, m.interaction_id FROM messages m JOIN interactions i ON i.id = m.interaction_id
         WHERE i.account_id = $1 AND i.external_id = $2
           AND m.direction = 'out' AND m.status IN ('sent', 'delivered')
         ORDER BY m.id FOR NO KEY UPDATE OF m",
    )
    .bind(account_id)
    .bind(external_id)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|(id, _)| *id).collect();
    let mut interactions: Vec<Uuid> = rows.iter().map(|(_, i)| *i).collect();
    interactions.sort();
    interactions.dedup();
    sqlx::query("UPDATE messages SET status = 'read' WHERE id = ANY($1)").bind(&ids).execute(&mut *conn).await?;
    sqlx::query("SELECT id FROM interactions WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
        .bind(&interactions)
        .execute(&mut *conn)
        .await?;
    let mut audience = Vec::new();
    for message in super::load_messages(conn, &ids).await? {
        let data = serde_json::json!({ "message": message });
        super::append_interaction_event(conn, message.interaction_id, "message.status", Some("customer"), &data)
            .await?;
        audience.extend(super::fan_out(conn, message.interaction_id, "message.status", &data).await?);
    }
    audience.sort();
    audience.dedup();
    Ok(audience)
}
