//! Queues, channel accounts and agents.

use const_format::concatcp;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Result, StoreError};
use crate::domain::{Account, Agent, AgentStatus, Channel, Queue, RoutingMode};

/// Creates or updates a queue.
pub async fn upsert_queue(conn: &mut PgConnection, queue: &Queue) -> Result<()> {
    sqlx::query(
        "INSERT INTO queues (name, routing_mode, offer_timeout_ms) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET routing_mode = EXCLUDED.routing_mode, offer_timeout_ms = EXCLUDED.offer_timeout_ms",
    )
    .bind(&queue.name)
    .bind(queue.routing_mode.as_str())
    .bind(queue.offer_timeout_ms)
    .execute(&mut *conn)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(db) if db.is_check_violation() => StoreError::Invalid(format!(
            "queue {:?}: names are lowercase [a-z0-9_.-] up to 64 characters, offer timeouts 1 s to 1 h",
            queue.name
        )),
        other => other.into(),
    })?;
    Ok(())
}

pub async fn get_queue(conn: &mut PgConnection, name: &str) -> Result<Queue> {
    let row = sqlx::query("SELECT name, routing_mode, offer_timeout_ms FROM queues WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("queue", name))?;
    Ok(Queue {
        name: row.try_get("name")?,
        routing_mode: row.try_get::<&str, _>("routing_mode")?.parse::<RoutingMode>()?,
        offer_timeout_ms: row.try_get("offer_timeout_ms")?,
    })
}

/// A channel account to create.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub channel: Channel,
    pub name: String,
    pub default_queue: String,
    pub credentials: serde_json::Value,
    pub settings: serde_json::Value,
}

pub async fn create_account(conn: &mut PgConnection, new: &NewAccount) -> Result<Account> {
    let row = sqlx::query(
        "INSERT INTO accounts (id, channel, name, default_queue, credentials, settings)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, channel, name, enabled, default_queue, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(new.channel.as_str())
    .bind(&new.name)
    .bind(&new.default_queue)
    .bind(&new.credentials)
    .bind(&new.settings)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::Invalid(format!("queue {:?} does not exist", new.default_queue))
        }
        other => other.into(),
    })?;
    account_from_row(&row)
}

pub async fn get_account(conn: &mut PgConnection, id: Uuid) -> Result<Account> {
    let row = sqlx::query("SELECT id, channel, name, enabled, default_queue, created_at FROM accounts WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("account", id))?;
    account_from_row(&row)
}

/// The account's platform credentials (bot token...). Callers keep them out of logs.
pub async fn account_credentials(conn: &mut PgConnection, id: Uuid) -> Result<serde_json::Value> {
    sqlx::query_scalar("SELECT credentials FROM accounts WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("account", id))
}

fn account_from_row(row: &PgRow) -> Result<Account> {
    Ok(Account {
        id: row.try_get("id")?,
        channel: row.try_get::<&str, _>("channel")?.parse()?,
        name: row.try_get("name")?,
        enabled: row.try_get("enabled")?,
        default_queue: row.try_get("default_queue")?,
        created_at: row.try_get("created_at")?,
    })
}

/// An agent's profile as the directory (or the sign-on token) gives it.
#[derive(Debug, Clone)]
pub struct AgentProfile {
    pub login: String,
    pub name: String,
    pub roles: Vec<String>,
    pub queues: Vec<String>,
    pub max_interactions: i32,
}

/// Creates the agent or updates its profile; status and event counter are left alone.
pub async fn upsert_agent(conn: &mut PgConnection, profile: &AgentProfile) -> Result<Agent> {
    let row = sqlx::query(concatcp!(
        "INSERT INTO agents (login, name, roles, queues, max_interactions) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (login) DO UPDATE SET name = EXCLUDED.name, roles = EXCLUDED.roles,
             queues = EXCLUDED.queues, max_interactions = EXCLUDED.max_interactions
         RETURNING ",
        AGENT_COLUMNS
    ))
    .bind(&profile.login)
    .bind(&profile.name)
    .bind(&profile.roles)
    .bind(&profile.queues)
    .bind(profile.max_interactions)
    .fetch_one(&mut *conn)
    .await?;
    agent_from_row(&row)
}

/// Makes sure a row exists for `login` (an agent known only from its token) without touching an
/// existing profile.
pub async fn ensure_agent(conn: &mut PgConnection, login: &str, name: &str, roles: &[String]) -> Result<Agent> {
    sqlx::query("INSERT INTO agents (login, name, roles) VALUES ($1, $2, $3) ON CONFLICT (login) DO NOTHING")
        .bind(login)
        .bind(name)
        .bind(roles)
        .execute(&mut *conn)
        .await?;
    get_agent(conn, login).await
}

pub(crate) const AGENT_COLUMNS: &str = "login, name, avatar_url, roles, queues, max_interactions, channel_capacity, status, status_reason, status_changed_at";

pub async fn get_agent(conn: &mut PgConnection, login: &str) -> Result<Agent> {
    let row = sqlx::query(concatcp!("SELECT ", AGENT_COLUMNS, " FROM agents WHERE login = $1"))
        .bind(login)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("agent", login))?;
    agent_from_row(&row)
}

/// Sets the agent's status; returns the updated agent.
pub async fn set_agent_status(
    conn: &mut PgConnection,
    login: &str,
    status: AgentStatus,
    reason: Option<&str>,
) -> Result<Agent> {
    let row = sqlx::query(concatcp!(
        "UPDATE agents SET status = $2, status_reason = $3, status_changed_at = now() WHERE login = $1
         RETURNING ",
        AGENT_COLUMNS
    ))
    .bind(login)
    .bind(status.as_str())
    .bind(reason)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::not_found("agent", login))?;
    agent_from_row(&row)
}

pub(crate) fn agent_from_row(row: &PgRow) -> Result<Agent> {
    let capacity: serde_json::Value = row.try_get("channel_capacity")?;
    Ok(Agent {
        login: row.try_get("login")?,
        name: row.try_get("name")?,
        avatar_url: row.try_get("avatar_url")?,
        roles: row.try_get("roles")?,
        queues: row.try_get("queues")?,
        max_interactions: row.try_get("max_interactions")?,
        channel_capacity: match capacity {
            serde_json::Value::Object(map) => map,
            other => {
                return Err(StoreError::Corrupt(format!("agents.channel_capacity is not an object: {other}")));
            }
        },
        status: row.try_get::<&str, _>("status")?.parse()?,
        status_reason: row.try_get("status_reason")?,
        status_changed_at: row.try_get("status_changed_at")?,
    })
}
