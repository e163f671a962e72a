//! Fencing tokens: a leader's token (its ZooKeeper election sequence number) is written with its
//! writes; a write carrying a token lower than one already seen comes from a deposed leader.

use sqlx::PgConnection;

use super::{Result, StoreError};

/// Records `token` for `key` and succeeds when it is the newest seen (or equal: the same leader
/// writing again). Fails with [`StoreError::StaleFence`] otherwise. Call it inside the
/// transaction whose writes it guards: the row lock orders it against a newer leader's writes.
pub async fn check_fence(conn: &mut PgConnection, key: &str, token: i64) -> Result<()> {
    let accepted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO fencing_tokens (key, token) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET token = EXCLUDED.token, updated_at = now()
         WHERE fencing_tokens.token <= EXCLUDED.token
         RETURNING token",
    )
    .bind(key)
    .bind(token)
    .fetch_optional(&mut *conn)
    .await?;
    if accepted.is_some() {
        return Ok(());
    }
    let current: i64 =
        sqlx::query_scalar("SELECT token FROM fencing_tokens WHERE key = $1").bind(key).fetch_one(&mut *conn).await?;
    Err(StoreError::StaleFence { key: key.to_owned(), token, current })
}
