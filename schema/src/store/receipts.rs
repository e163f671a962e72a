//! Typing indicators and read marks: the agent reading the customer's messages, and the
//! ephemeral "is typing" hints of both sides.
//!
//! - An agent's read mark is stored: the customer's messages become `read`, one `message.read`
//!   entry goes to the interaction's log and to its audience's streams.
//! - The customer's typing is an `interaction.typing` event on the audience's streams (never in
//!   the interaction's log or the history); the web chat socket calls it a few seconds apart.
//! - An agent's typing is a row of `webchat_signals` (web chat only: the hub is the platform),
//!   refreshed at most every [`TYPING_COALESCE_S`] seconds whatever the client sends.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Result, StoreError};
use crate::domain::{Channel, Interaction};

/// How long a typing hint is shown unless refreshed (or ended by a message).
pub const TYPING_TTL_S: i64 = 6;
/// A typing hint of the same agent is stored again only this long after the previous one.
pub const TYPING_COALESCE_S: i64 = 2;

/// What [`agent_read`] did.
#[derive(Debug, Default)]
pub struct AgentRead {
    /// The customer messages that became `read` (none on a repeat: it is idempotent).
    pub read: Vec<Uuid>,
    /// The agents whose streams got `message.read`, to wake after the commit.
    pub audience: Vec<String>,
    /// The web chat account whose customer sockets must be rung (`topics::webchat`).
    pub webchat: Option<Uuid>,
}

/// `agent` has seen the interaction up to the message `up_to` (of this interaction, either
/// direction): the customer's messages created up to it that are still `received` become
/// `read`. Announces them as one `message.read` (actor `agent`) to the interaction's log and
/// audience; for a web chat, bumps the customer's signal so their widget shows it. The caller
/// checks that `agent` may write into the interaction.
pub async fn agent_read(conn: &mut PgConnection, interaction_id: Uuid, agent: &str, up_to: Uuid) -> Result<AgentRead> {
    let found: Option<Uuid> = sqlx::query_scalar("SELECT id FROM messages WHERE id = $1 AND interaction_id = $2")
        .bind(up_to)
        .bind(interaction_id)
        .fetch_optional(&mut *conn)
        .await?;
    if found.is_none() {
        return Err(StoreError::NotFound { what: "message", id: format!("{up_to} in interaction {interaction_id}") });
    }
    // lock order as everywhere: messages (by id), then the interaction, then the audience
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT m.id FROM messages m, (SELECT created_at, id FROM messages WHERE id = $2) u
         WHERE m.interaction_id = $1 AND m.direction = 'in' AND m.status = 'received'
           AND (m.created_at, m.id) <= (u.created_at, u.id)
         ORDER BY m.id FOR NO KEY UPDATE OF m",
    )
    .bind(interaction_id)
    .bind(up_to)
    .fetch_all(&mut *conn)
    .await?;
    if ids.is_empty() {
        return Ok(AgentRead::default());
    }
    sqlx::query("UPDATE messages SET status = 'read' WHERE id = ANY($1)").bind(&ids).execute(&mut *conn).await?;
    let row = sqlx::query("SELECT account_id, external_id, channel FROM interactions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(interaction_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("interaction", interaction_id))?;
    let account_id: Uuid = row.try_get("account_id")?;
    let external_id: String = row.try_get("external_id")?;
    let channel: Channel = row.try_get::<String, _>("channel")?.parse()?;
    let data = serde_json::json!({
        "interaction_id": interaction_id,
        "agent": agent,
        "up_to": up_to,
        "message_ids": ids,
    });
    super::append_interaction_event(conn, interaction_id, "message.read", Some(agent), &data).await?;
    let audience = super::fan_out(conn, interaction_id, "message.read", &data).await?;
    let webchat = if channel == Channel::Webchat {
        bump_signal(conn, account_id, &external_id).await?;
        Some(account_id)
    } else {
        None
    };
    Ok(AgentRead { read: ids, audience, webchat })
}

/// Bumps a web chat customer's signal version (creating the row).
async fn bump_signal(conn: &mut PgConnection, account_id: Uuid, external_id: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO webchat_signals (account_id, external_id) VALUES ($1, $2)
         ON CONFLICT (account_id, external_id) DO UPDATE SET version = webchat_signals.version + 1",
    )
    .bind(account_id)
    .bind(external_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `agent` (shown as `name`) is typing in the interaction (`typing`), or stopped. Only a web
/// chat shows it (other channels: `Ok(None)`, nothing stored). A hint repeated within
/// [`TYPING_COALESCE_S`] seconds changes nothing, unless the agent sent a message in between
/// (which ended the previous hint). Returns the web chat account whose customer
/// sockets must be rung when something changed. The caller checks that `agent` may write.
pub async fn agent_typing(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    agent: &str,
    name: &str,
    typing: bool,
) -> Result<Option<Uuid>> {
    let row = sqlx::query("SELECT account_id, external_id, channel FROM interactions WHERE id = $1")
        .bind(interaction_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("interaction", interaction_id))?;
    let channel: Channel = row.try_get::<String, _>("channel")?.parse()?;
    if channel != Channel::Webchat {
        return Ok(None);
    }
    let account_id: Uuid = row.try_get("account_id")?;
    let external_id: String = row.try_get("external_id")?;
    let changed = if typing {
        sqlx::query(
            "INSERT INTO webchat_signals
                 (account_id, external_id, typing_agent, typing_name, typing_interaction, typing_at)
             VALUES ($1, $2, $3, $4, $6, now())
             ON CONFLICT (account_id, external_id) DO UPDATE
             SET version = webchat_signals.version + 1, typing_agent = $3, typing_name = $4,
                 typing_interaction = $6, typing_at = now()
             WHERE webchat_signals.typing_agent IS DISTINCT FROM $3
                OR webchat_signals.typing_name IS DISTINCT FROM $4
                OR webchat_signals.typing_interaction IS DISTINCT FROM $6
                OR webchat_signals.typing_at IS NULL
                OR webchat_signals.typing_at < now() - make_interval(secs => $5)
                OR EXISTS (SELECT 1 FROM messages m
                           WHERE m.interaction_id = $6 AND m.created_at >= webchat_signals.typing_at
                             AND m.direction = 'out' AND m.agent_login = $3)",
        )
        .bind(account_id)
        .bind(&external_id)
        .bind(agent)
        .bind(name)
        .bind(TYPING_COALESCE_S as f64)
        .bind(interaction_id)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    } else {
        sqlx::query(
            "UPDATE webchat_signals
             SET version = version + 1, typing_agent = NULL, typing_name = NULL, typing_interaction = NULL,
                 typing_at = NULL
             WHERE account_id = $1 AND external_id = $2 AND typing_agent = $3",
        )
        .bind(account_id)
        .bind(&external_id)
        .bind(agent)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    };
    Ok((changed > 0).then_some(account_id))
}

/// What a web chat customer's widget shows besides the transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerSignal {
    pub version: i64,
    /// The name of the agent typing, and how much longer to show it (ms), while it is fresh.
    pub typing: Option<(String, i64)>,
}

/// The signal of one web chat customer (`None`: nothing ever signalled). The typing hint is
/// over once its time is up or the typing agent sent a message after it.
pub async fn customer_signal(
    conn: &mut PgConnection,
    account_id: Uuid,
    external_id: &str,
) -> Result<Option<CustomerSignal>> {
    let row = sqlx::query(
        "SELECT s.version, s.typing_name,
                (EXTRACT(EPOCH FROM (s.typing_at + make_interval(secs => $3) - now())) * 1000)::bigint AS left_ms,
                EXISTS (SELECT 1 FROM messages m
                        WHERE m.interaction_id = s.typing_interaction AND m.created_at >= s.typing_at
                          AND m.direction = 'out' AND m.agent_login = s.typing_agent) AS answered
         FROM webchat_signals s WHERE s.account_id = $1 AND s.external_id = $2",
    )
    .bind(account_id)
    .bind(external_id)
    .bind(TYPING_TTL_S as f64)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let name: Option<String> = row.try_get("typing_name")?;
    let left: Option<i64> = row.try_get("left_ms")?;
    let answered: bool = row.try_get("answered")?;
    let typing = match (name, left) {
        (Some(name), Some(left)) if left > 0 && !answered => Some((name, left)),
        _ => None,
    };
    Ok(Some(CustomerSignal { version: row.try_get("version")?, typing }))
}

/// The signal versions of these customers of the account (those that have a row).
pub async fn signal_versions(
    conn: &mut PgConnection,
    account_id: Uuid,
    external_ids: &[String],
) -> Result<Vec<(String, i64)>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT external_id, version FROM webchat_signals WHERE account_id = $1 AND external_id = ANY($2)",
    )
    .bind(account_id)
    .bind(external_ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows)
}

/// The customer `external_id` of the account is typing: `interaction.typing` to the audience
/// of their open interaction (if any, and if anyone sees it). Returns who got it.
pub async fn customer_typing(conn: &mut PgConnection, account_id: Uuid, external_id: &str) -> Result<Vec<String>> {
    let id: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM interactions WHERE account_id = $1 AND external_id = $2 AND state <> 'closed'
         FOR NO KEY UPDATE",
    )
    .bind(account_id)
    .bind(external_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(id) = id else { return Ok(Vec::new()) };
    let interaction = super::load_interaction(conn, id).await?;
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(&mut *conn).await?;
    let data = typing_data(&interaction, now);
    super::fan_out(conn, id, "interaction.typing", &data).await
}

fn typing_data(interaction: &Interaction, now: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "interaction_id": interaction.id,
        "author": { "kind": "customer", "id": interaction.customer.id, "name": interaction.customer.name },
        "at": now,
        "expires_at": now + chrono::Duration::seconds(TYPING_TTL_S),
    })
}
