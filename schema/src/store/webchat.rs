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
