//! Administration for integrators: channel accounts (credentials masked on the way out),
//! agents, queues, API keys, and the audit log every change writes to in its own transaction.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::directory::{AGENT_COLUMNS, agent_from_row};
use super::{Result, StoreError};
use crate::domain::{Account, Agent, Queue, RoutingMode};

// ------------------------------------------------------------------------------ audit --

/// One change to record: `actor` did `action` to `target_kind` `target_id`.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target_kind: &'a str,
    pub target_id: &'a str,
    /// What changed; never a secret.
    pub details: serde_json::Value,
}

/// Appends to the audit log; call it in the transaction of the change.
pub async fn record_audit(conn: &mut PgConnection, entry: &AuditEntry<'_>) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO audit_log (actor, action, target_kind, target_id, details) VALUES ($1, $2, $3, $4, $5)
         RETURNING id",
    )
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.target_kind)
    .bind(entry.target_id)
    .bind(&entry.details)
    .fetch_one(&mut *conn)
    .await?)
}

/// A recorded change.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    pub details: serde_json::Value,
}

/// Which audit records to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// Exact action (`account.update`) or a prefix ending in `.` (`account.`).
    pub action: Option<String>,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Audit records newest first, with `id < before` when given, at most `limit`.
pub async fn audit_page(
    conn: &mut PgConnection,
    filter: &AuditFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRecord>> {
    let mut q = QueryBuilder::<Postgres>::new(
        "SELECT id, at, actor, action, target_kind, target_id, details FROM audit_log WHERE id < ",
    );
    q.push_bind(before.unwrap_or(i64::MAX));
    if let Some(actor) = &filter.actor {
        q.push(" AND actor = ").push_bind(actor.clone());
    }
    match filter.action.as_deref() {
        Some(prefix) if prefix.ends_with('.') => {
            q.push(" AND starts_with(action, ").push_bind(prefix.to_owned()).push(")");
        }
        Some(action) => {
            q.push(" AND action = ").push_bind(action.to_owned());
        }
        None => {}
    }
    if let Some(kind) = &filter.target_kind {
        q.push(" AND target_kind = ").push_bind(kind.clone());
    }
    if let Some(id) = &filter.target_id {
        q.push(" AND target_id = ").push_bind(id.clone());
    }
    if let Some(from) = filter.from {
        q.push(" AND at >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        q.push(" AND at < ").push_bind(to);
    }
    q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
    let rows = q.build().fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|r| {
            Ok(AuditRecord {
                id: r.try_get("id")?,
                at: r.try_get("at")?,
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                target_kind: r.try_get("target_kind")?,
                target_id: r.try_get("target_id")?,
                details: r.try_get("details")?,
            })
        })
        .collect()
}

// --------------------------------------------------------------------------- accounts --

/// A channel account as administrators see it: its credentials masked by [`mask_secrets`].
#[derive(Debug, Clone, PartialEq)]
pub struct AccountView {
    pub account: Account,
    pub credentials: serde_json::Value,
    pub settings: serde_json::Value,
}

/// Every string in `value` replaced by `****` and, for strings of 12 characters or more, their
/// last 4 (enough to tell two tokens apart, never enough to use one). Numbers and booleans are
/// masked too; the shape (keys, nesting) stays.
pub fn mask_secrets(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), mask_secrets(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(mask_secrets).collect()),
        Value::String(s) if s.chars().count() >= 12 => {
            let tail: String = s.chars().skip(s.chars().count() - 4).collect();
            Value::String(format!("****{tail}"))
        }
        Value::Null => Value::Null,
        _ => Value::String("****".to_owned()),
    }
}

/// The top-level keys of a credentials object, for the audit log.
pub fn credential_keys(value: &serde_json::Value) -> Vec<String> {
    value.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

const ACCOUNT_COLUMNS: &str = "id, channel, name, enabled, default_queue, created_at, credentials, settings";

fn account_view(row: &PgRow) -> Result<AccountView> {
    let credentials: serde_json::Value = row.try_get("credentials")?;
    Ok(AccountView {
        account: Account {
            id: row.try_get("id")?,
            channel: row.try_get::<&str, _>("channel")?.parse()?,
            name: row.try_get("name")?,
            enabled: row.try_get("enabled")?,
            default_queue: row.try_get("default_queue")?,
            created_at: row.try_get("created_at")?,
        },
        credentials: mask_secrets(&credentials),
        settings: row.try_get("settings")?,
    })
}

pub async fn list_accounts(conn: &mut PgConnection) -> Result<Vec<AccountView>> {
    let rows =
        sqlx::query(const_format::concatcp!("SELECT ", ACCOUNT_COLUMNS, " FROM accounts ORDER BY created_at, id"))
            .fetch_all(&mut *conn)
            .await?;
    rows.iter().map(account_view).collect()
}

pub async fn account_view_of(conn: &mut PgConnection, id: Uuid) -> Result<AccountView> {
    let row = sqlx::query(const_format::concatcp!("SELECT ", ACCOUNT_COLUMNS, " FROM accounts WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("account", id))?;
    account_view(&row)
}

/// Changes to an account; `None` leaves a field alone. `credentials` replaces them whole.
#[derive(Debug, Clone, Default)]
pub struct AccountPatch {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub default_queue: Option<String>,
    pub credentials: Option<serde_json::Value>,
    pub settings: Option<serde_json::Value>,
}

pub async fn update_account(conn: &mut PgConnection, id: Uuid, patch: &AccountPatch) -> Result<AccountView> {
    let row = sqlx::query(const_format::concatcp!(
        "UPDATE accounts SET name = COALESCE($2, name), enabled = COALESCE($3, enabled),
             default_queue = COALESCE($4, default_queue), credentials = COALESCE($5, credentials),
             settings = COALESCE($6, settings)
         WHERE id = $1 RETURNING ",
        ACCOUNT_COLUMNS
    ))
    .bind(id)
    .bind(&patch.name)
    .bind(patch.enabled)
    .bind(&patch.default_queue)
    .bind(&patch.credentials)
    .bind(&patch.settings)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::Invalid(format!("queue {:?} does not exist", patch.default_queue.as_deref().unwrap_or("")))
        }
        other => other.into(),
    })?
    .ok_or_else(|| StoreError::not_found("account", id))?;
    account_view(&row)
}

// ----------------------------------------------------------------------------- agents --

/// Everything an administrator sets on an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    pub login: String,
    pub name: String,
    /// Shown to customers beside the name where the platform shows it (Viber, web chat).
    pub avatar_url: Option<String>,
    pub roles: Vec<String>,
    pub queues: Vec<String>,
    pub max_interactions: i32,
    pub channel_capacity: serde_json::Map<String, serde_json::Value>,
}

pub async fn list_agents(conn: &mut PgConnection) -> Result<Vec<Agent>> {
    let rows = sqlx::query(const_format::concatcp!("SELECT ", AGENT_COLUMNS, " FROM agents ORDER BY login"))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(agent_from_row).collect()
}

/// Creates the agent or replaces its settings (status and event stream are left alone).
/// Returns the agent and whether it was created. Queues must exist.
pub async fn put_agent(conn: &mut PgConnection, settings: &AgentSettings) -> Result<(Agent, bool)> {
    let unknown: Vec<String> = sqlx::query_scalar(
        "SELECT q FROM unnest($1::text[]) AS q WHERE NOT EXISTS (SELECT 1 FROM queues WHERE name = q) ORDER BY q",
    )
    .bind(&settings.queues)
    .fetch_all(&mut *conn)
    .await?;
    if !unknown.is_empty() {
        return Err(StoreError::Invalid(format!("unknown queues: {}", unknown.join(", "))));
    }
    let row = sqlx::query(const_format::concatcp!(
        "INSERT INTO agents (login, name, roles, queues, max_interactions, channel_capacity, avatar_url)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (login) DO UPDATE SET name = EXCLUDED.name, roles = EXCLUDED.roles, queues = EXCLUDED.queues,
             max_interactions = EXCLUDED.max_interactions, channel_capacity = EXCLUDED.channel_capacity,
             avatar_url = EXCLUDED.avatar_url
         RETURNING (xmax = 0) AS created, ",
        AGENT_COLUMNS
    ))
    .bind(&settings.login)
    .bind(&settings.name)
    .bind(&settings.roles)
    .bind(&settings.queues)
    .bind(settings.max_interactions)
    .bind(serde_json::Value::Object(settings.channel_capacity.clone()))
    .bind(&settings.avatar_url)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(db) if db.is_check_violation() => {
            StoreError::Invalid("max_interactions must not be negative".into())
        }
        other => other.into(),
    })?;
    Ok((agent_from_row(&row)?, row.try_get("created")?))
}

// ----------------------------------------------------------------------------- queues --

pub async fn list_queues(conn: &mut PgConnection) -> Result<Vec<Queue>> {
    let rows = sqlx::query("SELECT name, routing_mode, offer_timeout_ms FROM queues ORDER BY name")
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Queue {
                name: row.try_get("name")?,
                routing_mode: row.try_get::<&str, _>("routing_mode")?.parse::<RoutingMode>()?,
                offer_timeout_ms: row.try_get("offer_timeout_ms")?,
            })
        })
        .collect()
}

// --------------------------------------------------------------------------- API keys --

/// An API key as listed: never the key, only its first characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const KEY_COLUMNS: &str = "id, name, prefix, scopes, created_by, created_at, last_used_at, revoked_at";

fn key_from_row(row: &PgRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        scopes: row.try_get("scopes")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

/// Stores a new key by the SHA-256 of its secret.
pub async fn create_api_key(
    conn: &mut PgConnection,
    name: &str,
    prefix: &str,
    secret_hash: &[u8],
    scopes: &[String],
    created_by: &str,
) -> Result<ApiKey> {
    let row = sqlx::query(const_format::concatcp!(
        "INSERT INTO api_keys (id, name, prefix, secret_hash, scopes, created_by) VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING ",
        KEY_COLUMNS
    ))
    .bind(Uuid::now_v7())
    .bind(name)
    .bind(prefix)
    .bind(secret_hash)
    .bind(scopes)
    .bind(created_by)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(db) if db.is_check_violation() => {
            StoreError::Invalid("a key's name is 1 to 200 characters".into())
        }
        other => other.into(),
    })?;
    key_from_row(&row)
}

pub async fn list_api_keys(conn: &mut PgConnection) -> Result<Vec<ApiKey>> {
    let rows = sqlx::query(const_format::concatcp!("SELECT ", KEY_COLUMNS, " FROM api_keys ORDER BY created_at, id"))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(key_from_row).collect()
}

/// The live (not revoked) key with this secret hash.
pub async fn api_key_by_hash(conn: &mut PgConnection, secret_hash: &[u8]) -> Result<Option<ApiKey>> {
    let row = sqlx::query(const_format::concatcp!(
        "SELECT ",
        KEY_COLUMNS,
        " FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL"
    ))
    .bind(secret_hash)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(key_from_row).transpose()
}

/// Notes that a key was used, at most once a minute per key (no write on every request).
pub async fn touch_api_key(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query(
        "UPDATE api_keys SET last_used_at = now()
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Revokes a key; revoking a revoked key changes nothing. NotFound for an unknown id.
pub async fn revoke_api_key(conn: &mut PgConnection, id: Uuid) -> Result<ApiKey> {
    let row = sqlx::query(const_format::concatcp!(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 RETURNING ",
        KEY_COLUMNS
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::not_found("api key", id))?;
    key_from_row(&row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_masked_keeping_the_shape() {
        let masked = mask_secrets(&json!({
            "token": "123456:ABCDEFghijklmnop",
            "pin": "1234",
            "port": 443,
            "nested": {"keys": ["0123456789abcdef", true]},
            "none": null
        }));
        assert_eq!(
            masked,
            json!({
                "token": "****mnop",
                "pin": "****",
                "port": "****",
                "nested": {"keys": ["****cdef", "****"]},
                "none": null
            })
        );
    }
}
