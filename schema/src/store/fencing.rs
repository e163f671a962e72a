//! Fencing tokens: a leader's token (its ZooKeeper election sequence number) is written with its
//! writes; a write carrying a token lower than one already seen comes from a deposed leader.

use sqlx::PgConnection;

use super::{Result, StoreError};

/// Records `token` for `key` and succeeds when it is the newest seen (or equal: the same leader
/// writing again). Fails with [`StoreError::StaleFence`] otherwise. Call it inside the
/// transaction whose writes it guards: the row lock orders it against a newer leader's writes.
///
/// When `token` is already the one recorded (every write of a leader after its first), the row
/// is only locked in share mode: the leader's own transactions (an outbox claim and an outcome
/// batch, the two claimers) pass the fence together and their commits share a WAL flush, while
/// a newer leader's first write, which updates the row, still waits for every one of them to
/// end, and afterwards none of the deposed leader's checks finds its token current. A first
/// write (no row yet, or an older token) updates the row as before.
pub async fn check_fence(conn: &mut PgConnection, key: &str, token: i64) -> Result<()> {
    // READ COMMITTED: a row locked by a newer leader's update is waited for and read again, so
    // a token replaced meanwhile matches nothing here and the upsert below refuses it
    let current: Option<i64> =
        sqlx::query_scalar("SELECT token FROM fencing_tokens WHERE key = $1 AND token = $2 FOR SHARE")
            .bind(key)
            .bind(token)
            .fetch_optional(&mut *conn)
            .await?;
    if current.is_some() {
        return Ok(());
    }
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
