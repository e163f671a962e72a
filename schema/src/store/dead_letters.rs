//! Dead letters: platform updates that can never be stored, parked with their raw payload so
//! one customer's bad message never blocks an account's inbound. An administrator lists them
//! and asks for a replay after a fix; the account's leader feeds the payload back through its
//! channel module and records the outcome.

use chrono::{DateTime, Utc};
use const_format::concatcp;
use serde::Serialize;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Result, StoreError};

/// One parked update.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub account_id: Uuid,
    /// The platform's id of the update.
    pub update_key: String,
    /// The raw payload as the platform sent it (lossy UTF-8 when listed).
    #[serde(skip)]
    pub payload: Vec<u8>,
    pub error: String,
    pub attempts: i32,
    /// `parked`, `replay` (asked for, not done yet) or `replayed`.
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn from_row(row: &sqlx::postgres::PgRow) -> Result<DeadLetter> {
    Ok(DeadLetter {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        update_key: row.try_get("update_key")?,
        payload: row.try_get("payload")?,
        error: row.try_get("error")?,
        attempts: row.try_get("attempts")?,
        state: row.try_get("state")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const COLUMNS: &str = "id, account_id, update_key, payload, error, attempts, state, created_at, updated_at";

/// Parks an update that cannot be stored. `error` is kept as given (NUL replaced).
pub async fn park_update(
    conn: &mut PgConnection,
    account_id: Uuid,
    update_key: &str,
    payload: &[u8],
    error: &str,
    attempts: i32,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO dead_letters (account_id, update_key, payload, error, attempts)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(account_id)
    .bind(super::inbound::without_nul(update_key))
    .bind(payload)
    .bind(super::inbound::without_nul(error))
    .bind(attempts)
    .fetch_one(&mut *conn)
    .await?)
}

/// The account's dead letters, newest first, `limit` at most, before id `before` when given.
pub async fn dead_letters(
    conn: &mut PgConnection,
    account_id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<DeadLetter>> {
    const SQL: &str = concatcp!(
        "SELECT ",
        COLUMNS,
        " FROM dead_letters WHERE account_id = $1 AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    );
    let rows = sqlx::query(SQL).bind(account_id).bind(before).bind(limit).fetch_all(&mut *conn).await?;
    rows.iter().map(from_row).collect()
}

pub async fn dead_letter(conn: &mut PgConnection, id: i64) -> Result<DeadLetter> {
    const SQL: &str = concatcp!("SELECT ", COLUMNS, " FROM dead_letters WHERE id = $1");
    let row = sqlx::query(SQL)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("dead letter", id))?;
    from_row(&row)
}

/// Asks the account's leader to replay a parked update. A letter already replayed is refused
/// with `Conflict`; one already waiting for its replay is left as it is.
pub async fn request_replay(conn: &mut PgConnection, id: i64) -> Result<DeadLetter> {
    let letter = dead_letter(conn, id).await?;
    if letter.state == "replayed" {
        return Err(StoreError::Conflict(format!("dead letter {id} was replayed already")));
    }
    const SQL: &str =
        concatcp!("UPDATE dead_letters SET state = 'replay', updated_at = now() WHERE id = $1 RETURNING ", COLUMNS);
    let row = sqlx::query(SQL).bind(id).fetch_one(&mut *conn).await?;
    from_row(&row)
}

/// The account's letters waiting for a replay, oldest first.
pub async fn replays_due(conn: &mut PgConnection, account_id: Uuid, limit: i64) -> Result<Vec<DeadLetter>> {
    const SQL: &str = concatcp!(
        "SELECT ",
        COLUMNS,
        " FROM dead_letters WHERE account_id = $1 AND state = 'replay' ORDER BY id LIMIT $2"
    );
    let rows = sqlx::query(SQL).bind(account_id).bind(limit).fetch_all(&mut *conn).await?;
    rows.iter().map(from_row).collect()
}

/// Records a replay's outcome: `replayed`, or back to `parked` with the new error.
pub async fn finish_replay(conn: &mut PgConnection, id: i64, error: Option<&str>) -> Result<()> {
    match error {
        None => {
            sqlx::query("UPDATE dead_letters SET state = 'replayed', updated_at = now() WHERE id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?
        }
        Some(error) => {
            sqlx::query(
                "UPDATE dead_letters SET state = 'parked', error = $2, attempts = attempts + 1, updated_at = now()
                 WHERE id = $1",
            )
            .bind(id)
            .bind(super::inbound::without_nul(error))
            .execute(&mut *conn)
            .await?
        }
    };
    Ok(())
}
