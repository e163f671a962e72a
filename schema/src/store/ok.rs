//! What the OK connector keeps besides messages: the long-poll marker of an account, and the
//! webhook deliveries committed before they are answered (migration `0012_ok.sql`).

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::Result;

/// The long-poll marker the account's last leader stored, if any.
pub async fn ok_long_poll_marker(conn: &mut PgConnection, account_id: Uuid) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT marker FROM ok_long_poll WHERE account_id = $1")
        .bind(account_id)
        .fetch_optional(&mut *conn)
        .await?)
}

/// Stores the long-poll marker to continue from: call it only once everything read before it
/// is committed.
pub async fn set_ok_long_poll_marker(conn: &mut PgConnection, account_id: Uuid, marker: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO ok_long_poll (account_id, marker) VALUES ($1, $2)
         ON CONFLICT (account_id) DO UPDATE SET marker = EXCLUDED.marker, updated_at = now()",
    )
    .bind(account_id)
    .bind(marker)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One webhook delivery waiting to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkInboxRow {
    pub id: i64,
    pub payload: Vec<u8>,
}

/// Keeps a webhook delivery as OK posted it; returns its id. Commit before answering OK.
pub async fn push_ok_inbox(conn: &mut PgConnection, account_id: Uuid, payload: &[u8]) -> Result<i64> {
    Ok(sqlx::query_scalar("INSERT INTO ok_inbox (account_id, payload) VALUES ($1, $2) RETURNING id")
        .bind(account_id)
        .bind(payload)
        .fetch_one(&mut *conn)
        .await?)
}

/// The account's waiting deliveries after `after` (an id), oldest first, at most `limit`.
pub async fn ok_inbox_after(
    conn: &mut PgConnection,
    account_id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<OkInboxRow>> {
    let rows = sqlx::query("SELECT id, payload FROM ok_inbox WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3")
        .bind(account_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(|r| Ok(OkInboxRow { id: r.try_get("id")?, payload: r.try_get("payload")? })).collect()
}

/// Forgets deliveries that are stored (or parked); returns how many were still there.
pub async fn remove_ok_inbox(conn: &mut PgConnection, account_id: Uuid, ids: &[i64]) -> Result<u64> {
    let done = sqlx::query("DELETE FROM ok_inbox WHERE account_id = $1 AND id = ANY($2)")
        .bind(account_id)
        .bind(ids)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

/// How many deliveries of the account wait to be stored.
pub async fn ok_inbox_len(conn: &mut PgConnection, account_id: Uuid) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM ok_inbox WHERE account_id = $1")
        .bind(account_id)
        .fetch_one(&mut *conn)
        .await?)
}
