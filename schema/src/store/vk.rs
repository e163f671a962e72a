//! What the VK connector keeps besides messages: the Bots Long Poll position of an account, and
//! each customer's permission for the community to write to them (migration `0010_vk.sql`).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::Result;

/// The long-poll `ts` the account's last leader stored, if any.
pub async fn vk_long_poll_ts(conn: &mut PgConnection, account_id: Uuid) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT ts FROM vk_long_poll WHERE account_id = $1")
        .bind(account_id)
        .fetch_optional(&mut *conn)
        .await?)
}

/// Stores the long-poll `ts` to continue from: call it only once everything read before it is
/// committed.
pub async fn set_vk_long_poll_ts(conn: &mut PgConnection, account_id: Uuid, ts: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO vk_long_poll (account_id, ts) VALUES ($1, $2)
         ON CONFLICT (account_id) DO UPDATE SET ts = EXCLUDED.ts, updated_at = now()",
    )
    .bind(account_id)
    .bind(ts)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What a customer told VK about messages from the community.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VkPermission {
    pub allowed: bool,
    pub changed_at: DateTime<Utc>,
}

/// Records `message_allow` (`true`) or `message_deny` (`false`) of the VK user `external_id`.
pub async fn set_vk_permission(
    conn: &mut PgConnection,
    account_id: Uuid,
    external_id: &str,
    allowed: bool,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO vk_message_permissions (account_id, external_id, allowed) VALUES ($1, $2, $3)
         ON CONFLICT (account_id, external_id) DO UPDATE SET allowed = EXCLUDED.allowed, changed_at = now()",
    )
    .bind(account_id)
    .bind(external_id)
    .bind(allowed)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The customer wrote to the community, which lets it answer: a recorded refusal is lifted.
/// Returns whether there was one. Writes nothing in the usual case (no refusal recorded).
pub async fn lift_vk_denial(conn: &mut PgConnection, account_id: Uuid, external_id: &str) -> Result<bool> {
    let lifted = sqlx::query(
        "UPDATE vk_message_permissions SET allowed = true, changed_at = now()
         WHERE account_id = $1 AND external_id = $2 AND NOT allowed",
    )
    .bind(account_id)
    .bind(external_id)
    .execute(&mut *conn)
    .await?;
    Ok(lifted.rows_affected() > 0)
}

/// The last permission VK reported for `external_id`, if any.
pub async fn vk_permission(
    conn: &mut PgConnection,
    account_id: Uuid,
    external_id: &str,
) -> Result<Option<VkPermission>> {
    let row = sqlx::query(
        "SELECT allowed, changed_at FROM vk_message_permissions WHERE account_id = $1 AND external_id = $2",
    )
    .bind(account_id)
    .bind(external_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| Ok(VkPermission { allowed: r.try_get("allowed")?, changed_at: r.try_get("changed_at")? })).transpose()
}

/// A VK customer as the hub knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VkCustomer {
    /// The name VK gave when they were first seen.
    pub name: String,
    /// The hub's copy of their avatar.
    pub avatar_url: Option<String>,
}

/// The customer known as `external_id` on the account, if any: VK messages carry no name, so
/// the connector asks VK (`users.get`) only for customers it does not know.
pub async fn vk_customer(conn: &mut PgConnection, account_id: Uuid, external_id: &str) -> Result<Option<VkCustomer>> {
    let row = sqlx::query(
        "SELECT COALESCE(ci.display_name, c.name) AS name, c.avatar_url
         FROM customer_identities ci JOIN customers c ON c.id = ci.customer_id
         WHERE ci.account_id = $1 AND ci.external_id = $2",
    )
    .bind(account_id)
    .bind(external_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| Ok(VkCustomer { name: r.try_get("name")?, avatar_url: r.try_get("avatar_url")? })).transpose()
}
