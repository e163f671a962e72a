//! Scheduled video calls (migration 0020): booked by an agent for a time, their room and link
//! made at once, one reminder claimed by exactly one worker (`FOR UPDATE SKIP LOCKED` and the
//! `reminder` column re-checked under the row lock), moved and cancelled by supervisors, admins
//! or the agent who booked it. Every change is a `video.scheduled` event in the streams of the
//! interaction's agents (not in the interaction's log: a booking is not a state of the call).
//!
//! Lock order: the schedule's row first, then the interaction's (and its agents', its room's).

use chrono::{DateTime, Utc};
use const_format::concatcp;
use serde::Serialize;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::video::{NewRoom, StartedRoom, start_room};
use super::{Result, StoreError};

/// A scheduled call as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduledCall {
    pub id: Uuid,
    pub interaction_id: Uuid,
    pub room_id: Uuid,
    /// Who scheduled it.
    pub agent: String,
    pub at: DateTime<Utc>,
    pub remind_before_s: i32,
    /// `channel` or `sms`.
    pub via: String,
    /// Digits with the country code (`via` = `sms`); callers mask it before showing it.
    #[serde(skip)]
    pub phone: Option<String>,
    /// `scheduled` or `cancelled`.
    pub state: String,
    /// `pending`, `sent` or `missed`.
    pub reminder: String,
    pub reminded_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub cancelled_by: Option<String>,
}

const COLUMNS: &str = "id, interaction_id, room_id, agent_login, at, remind_before_s, via, phone, state, reminder, \
     reminded_at, created_at, updated_at, cancelled_by";

fn from_row(r: &sqlx::postgres::PgRow) -> Result<ScheduledCall> {
    Ok(ScheduledCall {
        id: r.try_get("id")?,
        interaction_id: r.try_get("interaction_id")?,
        room_id: r.try_get("room_id")?,
        agent: r.try_get("agent_login")?,
        at: r.try_get("at")?,
        remind_before_s: r.try_get("remind_before_s")?,
        via: r.try_get("via")?,
        phone: r.try_get("phone")?,
        state: r.try_get("state")?,
        reminder: r.try_get("reminder")?,
        reminded_at: r.try_get("reminded_at")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        cancelled_by: r.try_get("cancelled_by")?,
    })
}

/// A call to schedule with [`schedule_call`]: its room (whose link expires after `at`) and when.
#[derive(Debug, Clone)]
pub struct NewScheduledCall {
    pub room: NewRoom,
    pub at: DateTime<Utc>,
    pub remind_before_s: i32,
    /// `channel` or `sms` (then with `phone`).
    pub via: String,
    pub phone: Option<String>,
}

/// Opens the call's room (with the invitation through the channel, as `video.start` does; the
/// agent must be the interaction's assigned agent or a participating supervisor; one open room
/// per interaction) and stores the schedule; `video.scheduled` (`scheduled`) goes to the
/// interaction's agents. Returns the schedule, the started room and everyone to wake.
pub async fn schedule_call(
    conn: &mut PgConnection,
    new: &NewScheduledCall,
) -> Result<(ScheduledCall, StartedRoom, Vec<String>)> {
    let started = start_room(conn, &new.room).await?;
    let row = sqlx::query(concatcp!(
        "INSERT INTO scheduled_calls (id, interaction_id, room_id, agent_login, at, remind_before_s, via, phone)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
        COLUMNS
    ))
    .bind(Uuid::now_v7())
    .bind(new.room.interaction_id)
    .bind(started.room.id)
    .bind(&new.room.agent_login)
    .bind(new.at)
    .bind(new.remind_before_s)
    .bind(&new.via)
    .bind(&new.phone)
    .fetch_one(&mut *conn)
    .await?;
    let call = from_row(&row)?;
    let mut audience = scheduled_event(conn, &call, "scheduled", serde_json::json!({})).await?;
    audience.extend(started.audience.iter().cloned());
    audience.sort();
    audience.dedup();
    Ok((call, started, audience))
}

/// Appends `video.scheduled` with `state` (`scheduled`, `moved`, `cancelled`, `reminder`) and
/// `extra` to the streams of the interaction's agents (and the one who booked it); returns them.
/// Locks the interaction row first (then the agents').
pub async fn scheduled_event(
    conn: &mut PgConnection,
    call: &ScheduledCall,
    state: &str,
    extra: serde_json::Value,
) -> Result<Vec<String>> {
    sqlx::query("SELECT 1 FROM interactions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(call.interaction_id)
        .execute(&mut *conn)
        .await?;
    let mut data = serde_json::json!({
        "schedule_id": call.id,
        "interaction_id": call.interaction_id,
        "room_id": call.room_id,
        "state": state,
        "at": call.at,
        "remind_before_s": call.remind_before_s,
        "via": call.via,
        "agent": call.agent,
    });
    if let (Some(data), serde_json::Value::Object(extra)) = (data.as_object_mut(), extra) {
        data.extend(extra);
    }
    // the interaction's audience and the agent who booked it (who may have handed the chat
    // on): their rows locked in login order first, then the events, as `fan_out` does
    let audience: Vec<String> = sqlx::query_scalar(
        "SELECT login FROM agents WHERE login IN (
             SELECT agent FROM interactions WHERE id = $1 AND agent IS NOT NULL
             UNION
             SELECT agent_login FROM interaction_participants WHERE interaction_id = $1
             UNION
             SELECT $2::text
         ) ORDER BY login FOR NO KEY UPDATE",
    )
    .bind(call.interaction_id)
    .bind(&call.agent)
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query(
        "WITH bumped AS (
             UPDATE agents SET last_event_seq = last_event_seq + 1 WHERE login = ANY($1)
             RETURNING login, last_event_seq
         )
         INSERT INTO agent_events (agent_login, seq, event, data)
         SELECT login, last_event_seq, 'video.scheduled', $2 FROM bumped",
    )
    .bind(&audience)
    .bind(&data)
    .execute(&mut *conn)
    .await?;
    Ok(audience)
}

/// The schedule with this id.
pub async fn load_scheduled_call(conn: &mut PgConnection, id: Uuid) -> Result<ScheduledCall> {
    let row = sqlx::query(concatcp!("SELECT ", COLUMNS, " FROM scheduled_calls WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("scheduled call", id))?;
    from_row(&row)
}

/// Which schedules [`list_scheduled_calls`] returns.
#[derive(Debug, Clone, Default)]
pub struct ScheduleFilter {
    /// Only those booked by this agent.
    pub agent: Option<String>,
    pub interaction_id: Option<Uuid>,
    /// `scheduled` or `cancelled`.
    pub state: Option<String>,
    /// Calls at or after this time.
    pub from: Option<DateTime<Utc>>,
}

/// Schedules by call time, then id; at most `limit`.
pub async fn list_scheduled_calls(
    conn: &mut PgConnection,
    filter: &ScheduleFilter,
    limit: i64,
) -> Result<Vec<ScheduledCall>> {
    let rows = sqlx::query(concatcp!(
        "SELECT ",
        COLUMNS,
        " FROM scheduled_calls
         WHERE ($1::text IS NULL OR agent_login = $1) AND ($2::uuid IS NULL OR interaction_id = $2)
           AND ($3::text IS NULL OR state = $3) AND ($4::timestamptz IS NULL OR at >= $4)
         ORDER BY at, id LIMIT $5"
    ))
    .bind(&filter.agent)
    .bind(filter.interaction_id)
    .bind(&filter.state)
    .bind(filter.from)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// A reminder not sent yet, as the due-decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReminder {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub remind_before_s: i32,
    /// Whether the call's room is still open (the interaction's close ends it).
    pub room_open: bool,
}

/// The pending reminders of scheduled calls, the soonest reminder first; at most `limit`.
pub async fn pending_reminders(conn: &mut PgConnection, limit: i64) -> Result<Vec<PendingReminder>> {
    let rows = sqlx::query(
        "SELECT s.id, s.at, s.remind_before_s, r.state = 'open' AS room_open
         FROM scheduled_calls s JOIN video_rooms r ON r.id = s.room_id
         WHERE s.state = 'scheduled' AND s.reminder = 'pending'
         ORDER BY s.at - make_interval(secs => s.remind_before_s), s.id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PendingReminder {
                id: r.try_get("id")?,
                at: r.try_get("at")?,
                remind_before_s: r.try_get("remind_before_s")?,
                room_open: r.try_get("room_open")?,
            })
        })
        .collect()
}

/// Locks the schedule for its reminder: `None` when another worker holds it (`SKIP LOCKED`), or
/// it was cancelled or its reminder is no longer pending. Hold the transaction until the
/// reminder's rows are written and [`finish_reminder`] ran.
pub async fn claim_reminder(conn: &mut PgConnection, id: Uuid) -> Result<Option<ScheduledCall>> {
    let row = sqlx::query(concatcp!(
        "SELECT ",
        COLUMNS,
        " FROM scheduled_calls WHERE id = $1 AND state = 'scheduled' AND reminder = 'pending'
         FOR UPDATE SKIP LOCKED"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Marks a claimed reminder `sent` or `missed`.
pub async fn finish_reminder(conn: &mut PgConnection, id: Uuid, outcome: &str) -> Result<()> {
    sqlx::query(
        "UPDATE scheduled_calls SET reminder = $2, reminded_at = CASE WHEN $2 = 'sent' THEN now() END, updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(outcome)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The agent's display name (for the messages sent in their name).
pub async fn agent_name(conn: &mut PgConnection, login: &str) -> Result<String> {
    let name: Option<String> =
        sqlx::query_scalar("SELECT name FROM agents WHERE login = $1").bind(login).fetch_optional(&mut *conn).await?;
    Ok(name.unwrap_or_else(|| login.to_owned()))
}

/// Locks a schedule that is still `scheduled` (else `conflict`; unknown: not found).
async fn lock_scheduled(conn: &mut PgConnection, id: Uuid) -> Result<ScheduledCall> {
    let row = sqlx::query(concatcp!("SELECT ", COLUMNS, " FROM scheduled_calls WHERE id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("scheduled call", id))?;
    let call = from_row(&row)?;
    if call.state != "scheduled" {
        return Err(StoreError::Conflict(format!("scheduled call {id} was cancelled")));
    }
    Ok(call)
}

/// Moves a scheduled call to `at` (the reminder is due again, the room's link good until
/// `link_expires_at`); `video.scheduled` (`moved`, with `previous_at`). Refused (`conflict`)
/// when it was cancelled or its room ended.
pub async fn move_scheduled_call(
    conn: &mut PgConnection,
    id: Uuid,
    at: DateTime<Utc>,
    remind_before_s: Option<i32>,
    link_expires_at: DateTime<Utc>,
    actor: &str,
) -> Result<(ScheduledCall, Vec<String>)> {
    let before = lock_scheduled(conn, id).await?;
    sqlx::query("SELECT 1 FROM interactions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(before.interaction_id)
        .execute(&mut *conn)
        .await?;
    let moved = sqlx::query("UPDATE video_rooms SET link_expires_at = $2 WHERE id = $1 AND state = 'open'")
        .bind(before.room_id)
        .bind(link_expires_at)
        .execute(&mut *conn)
        .await?;
    if moved.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("the room of scheduled call {id} has ended")));
    }
    let row = sqlx::query(concatcp!(
        "UPDATE scheduled_calls SET at = $2, remind_before_s = COALESCE($3, remind_before_s), reminder = 'pending',
             reminded_at = NULL, updated_at = now()
         WHERE id = $1 RETURNING ",
        COLUMNS
    ))
    .bind(id)
    .bind(at)
    .bind(remind_before_s)
    .fetch_one(&mut *conn)
    .await?;
    let call = from_row(&row)?;
    let audience =
        scheduled_event(conn, &call, "moved", serde_json::json!({"previous_at": before.at, "by": actor})).await?;
    Ok((call, audience))
}

/// Cancels a scheduled call: its room ends (`cancelled`, with its `video.room` event) and
/// `video.scheduled` (`cancelled`) goes out. Refused (`conflict`) when already cancelled.
pub async fn cancel_scheduled_call(
    conn: &mut PgConnection,
    id: Uuid,
    actor: &str,
) -> Result<(ScheduledCall, Vec<String>)> {
    lock_scheduled(conn, id).await?;
    let row = sqlx::query(concatcp!(
        "UPDATE scheduled_calls SET state = 'cancelled', cancelled_by = $2, updated_at = now()
         WHERE id = $1 RETURNING ",
        COLUMNS
    ))
    .bind(id)
    .bind(actor)
    .fetch_one(&mut *conn)
    .await?;
    let call = from_row(&row)?;
    let mut audience = match super::end_room(conn, call.room_id, "cancelled", Some(actor)).await? {
        Some((_, audience)) => {
            super::participants_left_at_end(conn, call.room_id).await?;
            audience
        }
        None => Vec::new(),
    };
    audience.extend(scheduled_event(conn, &call, "cancelled", serde_json::json!({"by": actor})).await?);
    audience.sort();
    audience.dedup();
    Ok((call, audience))
}
