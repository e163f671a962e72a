//! More customer links to a room (copied by the agent, sent by SMS) and the SMS sent with them
//! (docs/video.md, "Links by SMS and copy").

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Result, StoreError, link_hash, new_link_token};
use crate::domain::VideoRoom;

/// How an extra link reaches the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkVia {
    Copy,
    Sms,
    /// The reminder of a scheduled call, through the interaction's channel.
    Schedule,
}

impl LinkVia {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkVia::Copy => "copy",
            LinkVia::Sms => "sms",
            LinkVia::Schedule => "schedule",
        }
    }
}

/// Issues another customer link to `room`; returns its token (only the hash is stored).
pub async fn add_room_link(conn: &mut PgConnection, room: Uuid, via: LinkVia, created_by: &str) -> Result<String> {
    let token = new_link_token();
    sqlx::query("INSERT INTO video_links (link_hash, room_id, via, created_by) VALUES ($1, $2, $3, $4)")
        .bind(link_hash(&token))
        .bind(room)
        .bind(via.as_str())
        .bind(created_by)
        .execute(&mut *conn)
        .await?;
    Ok(token)
}

/// An SMS carrying a room's link, about to be handed to the provider.
#[derive(Debug, Clone)]
pub struct NewSms<'a> {
    pub id: Uuid,
    pub room: Uuid,
    /// The token of the link it carries (from [`add_room_link`]).
    pub link: &'a str,
    pub agent: &'a str,
    pub phone: &'a str,
    pub provider: &'a str,
}

/// The most SMS one call sends (they cost money; a customer who got none of five has another
/// problem).
pub const MAX_SMS_PER_CALL: i64 = 5;

/// Stores an SMS about to be sent; `Conflict` once the call sent [`MAX_SMS_PER_CALL`].
pub async fn insert_sms(conn: &mut PgConnection, sms: &NewSms<'_>) -> Result<()> {
    sqlx::query("SELECT 1 FROM video_rooms WHERE id = $1 FOR UPDATE").bind(sms.room).execute(&mut *conn).await?;
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM video_sms WHERE room_id = $1")
        .bind(sms.room)
        .fetch_one(&mut *conn)
        .await?;
    if sent >= MAX_SMS_PER_CALL {
        return Err(StoreError::Conflict(format!("a call sends at most {MAX_SMS_PER_CALL} SMS")));
    }
    sqlx::query(
        "INSERT INTO video_sms (id, room_id, link_hash, agent_login, phone, provider, state)
         VALUES ($1, $2, $3, $4, $5, $6, 'sending')",
    )
    .bind(sms.id)
    .bind(sms.room)
    .bind(link_hash(sms.link))
    .bind(sms.agent)
    .bind(sms.phone)
    .bind(sms.provider)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An SMS as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsRow {
    pub id: Uuid,
    pub room_id: Uuid,
    pub phone: String,
    pub provider_id: Option<String>,
    pub state: String,
    pub error: Option<String>,
}

pub async fn load_sms(conn: &mut PgConnection, id: Uuid) -> Result<SmsRow> {
    let row = sqlx::query("SELECT id, room_id, phone, provider_id, state, error FROM video_sms WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("sms", id))?;
    Ok(SmsRow {
        id: row.try_get("id")?,
        room_id: row.try_get("room_id")?,
        phone: row.try_get("phone")?,
        provider_id: row.try_get("provider_id")?,
        state: row.try_get("state")?,
        error: row.try_get("error")?,
    })
}

/// Moves an SMS to `state` (`sent`, `delivered`, `failed`; with the provider's id once known and
/// the error of a failure) and tells the interaction's agents: `video.sms` with `data` in the
/// interaction's log and their streams. A change to the state it has is a no-op (`None`);
/// otherwise returns the agents to wake after the commit.
pub async fn record_sms_state(
    conn: &mut PgConnection,
    room: &VideoRoom,
    id: Uuid,
    state: &str,
    provider_id: Option<&str>,
    error: Option<&str>,
    data: &serde_json::Value,
) -> Result<Option<Vec<String>>> {
    sqlx::query("SELECT 1 FROM interactions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(room.interaction_id)
        .execute(&mut *conn)
        .await?;
    let changed = sqlx::query(
        "UPDATE video_sms SET state = $2, provider_id = COALESCE($3, provider_id), error = $4, updated_at = now()
         WHERE id = $1 AND state <> $2",
    )
    .bind(id)
    .bind(state)
    .bind(provider_id)
    .bind(error)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if changed == 0 {
        return Ok(None);
    }
    super::append_interaction_event(conn, room.interaction_id, "video.sms", None, data).await?;
    Ok(Some(super::fan_out(conn, room.interaction_id, "video.sms", data).await?))
}
