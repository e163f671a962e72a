//! Files and screenshots sent in a video call (docs/video.md, "Screenshots and files"): a file
//! of the file server, carried by a message of the call's interaction and kept with the call.

use chrono::{DateTime, Utc};
use const_format::concatcp;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::Result;
use crate::domain::Message;

/// A file sent in a call, as the call pages and the call records show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallFile {
    pub file_id: Uuid,
    pub room_id: Uuid,
    pub interaction_id: Uuid,
    pub message_id: Uuid,
    pub name: String,
    pub mime: String,
    pub size: i64,
    /// `agent`, `customer` or `supervisor`.
    pub role: String,
    pub sender_name: String,
    pub participant_id: Option<Uuid>,
    pub screenshot: bool,
    /// The position written into the screenshot's EXIF, when there was one.
    pub gps: Option<FileGps>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FileGps {
    pub lat: f64,
    pub lon: f64,
}

/// A file just stored by the file server, to be kept as a file of the call.
#[derive(Debug, Clone)]
pub struct NewCallFile<'a> {
    pub file_id: Uuid,
    pub room_id: Uuid,
    pub interaction_id: Uuid,
    pub participant_id: Option<Uuid>,
    /// `agent`, `customer` or `supervisor`.
    pub role: &'a str,
    /// The agent's login (an agent or a supervisor); `None` for the customer.
    pub agent_login: Option<&'a str>,
    pub sender_name: &'a str,
    pub screenshot: bool,
    pub gps: Option<FileGps>,
}

/// What [`insert_call_file`] wrote.
#[derive(Debug, Clone)]
pub struct StoredCallFile {
    pub file: CallFile,
    pub message: Message,
    /// Agents whose streams got `message.new`, to wake after the commit.
    pub audience: Vec<String>,
}

/// Keeps the file as a message of the call's interaction (an agent's `out` message marked
/// `sent`, or the customer's `in` message `received`: it reached the other side through the
/// call, not through the channel, so no outbox row is written), with `message.new` in the
/// interaction's log and its agents' streams, and as a file of the call.
pub async fn insert_call_file(conn: &mut PgConnection, new: &NewCallFile<'_>) -> Result<StoredCallFile> {
    let (account_id, _chat) = super::outbound::lock_interaction_account(conn, new.interaction_id).await?;
    let kind = super::outbound::kind_for_files(conn, &[new.file_id]).await?;
    let message_id = Uuid::now_v7();
    match new.agent_login {
        Some(agent) => {
            sqlx::query(
                "INSERT INTO messages (id, interaction_id, account_id, direction, author_kind, author_id, author_name,
                     kind, status, agent_login)
                 VALUES ($1, $2, $3, 'out', 'agent', $4, $5, $6, 'sent', $4)",
            )
            .bind(message_id)
            .bind(new.interaction_id)
            .bind(account_id)
            .bind(agent)
            .bind(new.sender_name)
            .bind(kind.as_str())
            .execute(&mut *conn)
            .await?;
        }
        None => {
            sqlx::query(
                "INSERT INTO messages (id, interaction_id, account_id, direction, author_kind, author_id, author_name,
                     kind, status)
                 SELECT $1, id, account_id, 'in', 'customer', customer_id::text, $3, $4, 'received'
                 FROM interactions WHERE id = $2",
            )
            .bind(message_id)
            .bind(new.interaction_id)
            .bind(new.sender_name)
            .bind(kind.as_str())
            .execute(&mut *conn)
            .await?;
        }
    }
    super::inbound::attach_files(conn, message_id, &[new.file_id]).await?;
    sqlx::query(
        "INSERT INTO video_files (file_id, room_id, interaction_id, message_id, participant_id, role, sender_name,
             screenshot, gps_lat, gps_lon)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(new.file_id)
    .bind(new.room_id)
    .bind(new.interaction_id)
    .bind(message_id)
    .bind(new.participant_id)
    .bind(new.role)
    .bind(new.sender_name)
    .bind(new.screenshot)
    .bind(new.gps.map(|g| g.lat))
    .bind(new.gps.map(|g| g.lon))
    .execute(&mut *conn)
    .await?;
    let message = super::load_message(conn, message_id).await?;
    let data = serde_json::json!({ "message": message });
    super::append_interaction_event(conn, new.interaction_id, "message.new", new.agent_login, &data).await?;
    super::history::record_message(conn, message_id, new.interaction_id).await?;
    let audience = super::fan_out(conn, new.interaction_id, "message.new", &data).await?;
    let file = call_file(conn, new.room_id, new.file_id)
        .await?
        .ok_or_else(|| super::StoreError::not_found("call file", new.file_id))?;
    Ok(StoredCallFile { file, message, audience })
}

const COLUMNS: &str = "v.file_id, v.room_id, v.interaction_id, v.message_id, f.name, f.mime, f.size, v.role,
     v.sender_name, v.participant_id, v.screenshot, v.gps_lat, v.gps_lon, v.created_at";

fn row_to_file(r: &sqlx::postgres::PgRow) -> Result<CallFile> {
    let lat: Option<f64> = r.try_get("gps_lat")?;
    let lon: Option<f64> = r.try_get("gps_lon")?;
    Ok(CallFile {
        file_id: r.try_get("file_id")?,
        room_id: r.try_get("room_id")?,
        interaction_id: r.try_get("interaction_id")?,
        message_id: r.try_get("message_id")?,
        name: r.try_get("name")?,
        mime: r.try_get("mime")?,
        size: r.try_get("size")?,
        role: r.try_get("role")?,
        sender_name: r.try_get("sender_name")?,
        participant_id: r.try_get("participant_id")?,
        screenshot: r.try_get("screenshot")?,
        gps: lat.zip(lon).map(|(lat, lon)| FileGps { lat, lon }),
        at: r.try_get("created_at")?,
    })
}

/// A file of this call; `None` when the file is not one of the call's (or is gone).
pub async fn call_file(conn: &mut PgConnection, room: Uuid, file: Uuid) -> Result<Option<CallFile>> {
    const SQL: &str = concatcp!(
        "SELECT ",
        COLUMNS,
        " FROM video_files v JOIN files f ON f.id = v.file_id WHERE v.room_id = $1 AND v.file_id = $2"
    );
    let row = sqlx::query(SQL).bind(room).bind(file).fetch_optional(&mut *conn).await?;
    row.as_ref().map(row_to_file).transpose()
}

/// The files of a call, oldest first.
pub async fn call_files(conn: &mut PgConnection, room: Uuid) -> Result<Vec<CallFile>> {
    const SQL: &str = concatcp!(
        "SELECT ",
        COLUMNS,
        " FROM video_files v JOIN files f ON f.id = v.file_id WHERE v.room_id = $1 ORDER BY v.created_at, v.file_id"
    );
    let rows = sqlx::query(SQL).bind(room).fetch_all(&mut *conn).await?;
    rows.iter().map(row_to_file).collect()
}

/// The name of the interaction's customer, as the call pages show them.
pub async fn customer_name_of(conn: &mut PgConnection, interaction: Uuid) -> Result<String> {
    let name: Option<String> = sqlx::query_scalar(
        "SELECT c.name FROM interactions i JOIN customers c ON c.id = i.customer_id WHERE i.id = $1",
    )
    .bind(interaction)
    .fetch_optional(&mut *conn)
    .await?;
    name.ok_or_else(|| super::StoreError::not_found("interaction", interaction))
}

/// The files of these calls, oldest first.
pub async fn files_of_rooms(conn: &mut PgConnection, rooms: &[Uuid]) -> Result<Vec<CallFile>> {
    const SQL: &str = concatcp!(
        "SELECT ",
        COLUMNS,
        " FROM video_files v JOIN files f ON f.id = v.file_id WHERE v.room_id = ANY($1)
         ORDER BY v.created_at, v.file_id"
    );
    let rows = sqlx::query(SQL).bind(rooms).fetch_all(&mut *conn).await?;
    rows.iter().map(row_to_file).collect()
}
