//! Video rooms: created for an interaction by its agent, joined by link (customer) or token
//! (agent, supervisor), ended once. Every transition is an interaction event (`video.room`)
//! pushed to the interaction's audience.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use const_format::concatcp;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::outbound::{Enqueued, OutboundMessage, enqueue_outbound};
use super::{Result, StoreError};
use crate::domain::{VideoMode, VideoQuality, VideoRoom};

/// A customer link token: 32 random bytes, base64url. Only its hash is stored.
pub fn new_link_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored of a link token.
pub fn link_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The customer's link to a room, under the video service's public URL.
pub fn customer_link(public_url: &str, token: &str) -> String {
    format!("{}/call/{token}", public_url.trim_end_matches('/'))
}

/// The agent's (or a supervisor's) page of a room, under the video service's public URL.
pub fn agent_join_link(public_url: &str, room: Uuid) -> String {
    format!("{}/video/agent?room={room}", public_url.trim_end_matches('/'))
}

/// The message that carries the link to the customer.
pub fn invitation_text(agent_name: &str, link: &str) -> String {
    format!("{agent_name} invites you to a video call. Open this link to join (camera and microphone optional): {link}")
}

/// A room to create with [`start_room`].
#[derive(Debug, Clone)]
pub struct NewRoom {
    pub interaction_id: Uuid,
    pub agent_login: String,
    pub agent_name: String,
    pub mode: VideoMode,
    pub quality: VideoQuality,
    pub link_token: String,
    pub link_expires_at: DateTime<Utc>,
    /// The text of the message that carries the link to the customer.
    pub invitation: String,
    /// Whether to record the call; `None`: as the interaction's queue says
    /// (`video_queue_settings`, not recorded by default).
    pub record: Option<bool>,
}

impl NewRoom {
    /// A room `agent` starts for an interaction, with a fresh link token valid for `link_ttl`
    /// and the invitation carrying it; returns it with the customer's link (under `public_url`).
    #[allow(clippy::too_many_arguments)]
    pub fn with_new_link(
        interaction_id: Uuid,
        agent_login: &str,
        agent_name: &str,
        mode: VideoMode,
        quality: VideoQuality,
        public_url: &str,
        link_ttl: std::time::Duration,
    ) -> (NewRoom, String) {
        let link_token = new_link_token();
        let link = customer_link(public_url, &link_token);
        let room = NewRoom {
            interaction_id,
            agent_login: agent_login.to_owned(),
            agent_name: agent_name.to_owned(),
            mode,
            quality,
            link_token,
            link_expires_at: Utc::now() + link_ttl,
            invitation: invitation_text(agent_name, &link),
            record: None,
        };
        (room, link)
    }
}

/// The result of [`start_room`]: the room, the invitation message and who to wake.
#[derive(Debug, Clone)]
pub struct StartedRoom {
    pub room: VideoRoom,
    pub invitation: Enqueued,
    pub audience: Vec<String>,
}

impl StartedRoom {
    /// What starting a room answers, over REST and as the agent API's `video.start`.
    pub fn reply(&self, public_url: &str, customer_link: &str) -> serde_json::Value {
        let room = &self.room;
        serde_json::json!({
            "room_id": room.id,
            "interaction_id": room.interaction_id,
            "mode": room.mode,
            "quality": room.quality,
            "customer_link": customer_link,
            "agent_join": agent_join_link(public_url, room.id),
            "expires_at": room.link_expires_at,
            "record": room.record,
        })
    }
}

/// Creates the room, its `created` event and the invitation message (through the normal
/// outbound path, so the channel's outbox, limits and statuses apply). The agent must be the
/// interaction's assigned agent or a participating supervisor; one open room per interaction.
pub async fn start_room(conn: &mut PgConnection, new: &NewRoom) -> Result<StartedRoom> {
    match super::participation(conn, new.interaction_id, &new.agent_login).await?.as_deref() {
        Some("assigned") | Some("participate") => {}
        Some(_) => return Err(StoreError::Forbidden("you monitor this interaction; you cannot start a call".into())),
        None => return Err(StoreError::not_found("interaction", new.interaction_id)),
    }
    // the interaction row lock orders concurrent starts (lock order: interaction before agents)
    sqlx::query("SELECT 1 FROM interactions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(new.interaction_id)
        .execute(&mut *conn)
        .await?;
    let open: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM video_rooms WHERE interaction_id = $1 AND state = 'open'")
            .bind(new.interaction_id)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(open) = open {
        return Err(StoreError::Conflict(format!(
            "room {open} of this interaction is still open; end it before starting another"
        )));
    }
    let id = Uuid::now_v7();
    let row = sqlx::query(
        "INSERT INTO video_rooms (id, interaction_id, agent_login, mode, quality, link_hash, link_expires_at, record)
         VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8, (
             SELECT s.record FROM interactions i JOIN video_queue_settings s ON s.queue = i.queue WHERE i.id = $2
         ), false))
         RETURNING created_at, link_expires_at, record",
    )
    .bind(id)
    .bind(new.interaction_id)
    .bind(&new.agent_login)
    .bind(new.mode.as_str())
    .bind(new.quality.as_str())
    .bind(link_hash(&new.link_token))
    .bind(new.link_expires_at)
    .bind(new.record)
    .fetch_one(&mut *conn)
    .await?;
    let room = VideoRoom {
        id,
        interaction_id: new.interaction_id,
        agent: new.agent_login.clone(),
        mode: new.mode,
        quality: new.quality,
        state: crate::domain::VideoRoomState::Open,
        link_expires_at: row.try_get("link_expires_at")?,
        node: None,
        created_at: row.try_get("created_at")?,
        ended_at: None,
        end_reason: None,
        record: row.try_get("record")?,
    };
    let audience = record_transition(conn, &room, "created", Some(&new.agent_login), serde_json::json!({})).await?;
    let invitation = enqueue_outbound(
        conn,
        &OutboundMessage {
            interaction_id: new.interaction_id,
            agent_login: new.agent_login.clone(),
            agent_name: new.agent_name.clone(),
            client_msg_id: format!("video-room:{id}"),
            text: Some(new.invitation.clone()),
            file_ids: Vec::new(),
            keyboard: None,
            reply_to: None,
            ..Default::default()
        },
    )
    .await?;
    Ok(StartedRoom { room, invitation, audience })
}

pub(super) const ROOM_COLUMNS: &str = "id, interaction_id, agent_login, mode, quality, state, link_expires_at, node, created_at, \
     ended_at, end_reason, record";

pub(super) fn room_from_row(r: &sqlx::postgres::PgRow) -> Result<VideoRoom> {
    Ok(VideoRoom {
        id: r.try_get("id")?,
        interaction_id: r.try_get("interaction_id")?,
        agent: r.try_get("agent_login")?,
        mode: r.try_get::<String, _>("mode")?.parse()?,
        quality: r.try_get::<String, _>("quality")?.parse()?,
        state: r.try_get::<String, _>("state")?.parse()?,
        link_expires_at: r.try_get("link_expires_at")?,
        node: r.try_get("node")?,
        created_at: r.try_get("created_at")?,
        ended_at: r.try_get("ended_at")?,
        end_reason: r.try_get("end_reason")?,
        record: r.try_get("record")?,
    })
}

/// The room with this id.
pub async fn load_room(conn: &mut PgConnection, id: Uuid) -> Result<VideoRoom> {
    let row = sqlx::query(concatcp!("SELECT ", ROOM_COLUMNS, " FROM video_rooms WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("video room", id))?;
    room_from_row(&row)
}

/// The room a customer link token opens (the invitation's, or one of [`add_room_link`]),
/// whatever its state (the caller decides what an ended room or an expired link means); `None`
/// for a token that was never issued.
pub async fn room_by_link(conn: &mut PgConnection, token: &str) -> Result<Option<VideoRoom>> {
    let row = sqlx::query(concatcp!(
        "SELECT ",
        ROOM_COLUMNS,
        " FROM video_rooms WHERE link_hash = $1 OR id = (SELECT room_id FROM video_links WHERE link_hash = $1)"
    ))
    .bind(link_hash(token))
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(room_from_row).transpose()
}

/// The rooms of an interaction, newest first.
pub async fn rooms_of_interaction(conn: &mut PgConnection, interaction_id: Uuid) -> Result<Vec<VideoRoom>> {
    let rows = sqlx::query(concatcp!(
        "SELECT ",
        ROOM_COLUMNS,
        " FROM video_rooms WHERE interaction_id = $1 ORDER BY created_at DESC, id DESC"
    ))
    .bind(interaction_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(room_from_row).collect()
}

/// Claims the room's media for `node` unless another node already hosts it; returns the
/// hosting node.
pub async fn claim_room_node(conn: &mut PgConnection, id: Uuid, node: &str) -> Result<String> {
    sqlx::query_scalar("UPDATE video_rooms SET node = COALESCE(node, $2) WHERE id = $1 RETURNING node")
        .bind(id)
        .bind(node)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("video room", id))
}

/// Appends a `video.room` transition (`joined`, `left`) to the interaction's log and to its
/// audience's streams; returns the audience to wake after the commit.
pub async fn record_room_transition(
    conn: &mut PgConnection,
    room: &VideoRoom,
    state: &str,
    actor: Option<&str>,
    extra: serde_json::Value,
) -> Result<Vec<String>> {
    sqlx::query("SELECT 1 FROM interactions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(room.interaction_id)
        .execute(&mut *conn)
        .await?;
    record_transition(conn, room, state, actor, extra).await
}

pub(super) async fn record_transition(
    conn: &mut PgConnection,
    room: &VideoRoom,
    state: &str,
    actor: Option<&str>,
    extra: serde_json::Value,
) -> Result<Vec<String>> {
    let mut data = serde_json::json!({
        "room_id": room.id,
        "interaction_id": room.interaction_id,
        "state": state,
        "mode": room.mode,
        "quality": room.quality,
        "record": room.record,
    });
    if let (Some(data), serde_json::Value::Object(extra)) = (data.as_object_mut(), extra) {
        data.extend(extra);
    }
    super::append_interaction_event(conn, room.interaction_id, "video.room", actor, &data).await?;
    super::fan_out(conn, room.interaction_id, "video.room", &data).await
}

/// Ends an open room with `reason` and records `ended`; `None` when it had already ended.
pub async fn end_room(
    conn: &mut PgConnection,
    id: Uuid,
    reason: &str,
    actor: Option<&str>,
) -> Result<Option<(VideoRoom, Vec<String>)>> {
    let interaction_id: Uuid = sqlx::query_scalar("SELECT interaction_id FROM video_rooms WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("video room", id))?;
    sqlx::query("SELECT 1 FROM interactions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(interaction_id)
        .execute(&mut *conn)
        .await?;
    let row = sqlx::query(concatcp!(
        "UPDATE video_rooms SET state = 'ended', ended_at = now(), end_reason = $2
         WHERE id = $1 AND state = 'open' RETURNING ",
        ROOM_COLUMNS
    ))
    .bind(id)
    .bind(reason)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let room = room_from_row(&row)?;
    let audience = record_transition(conn, &room, "ended", actor, serde_json::json!({ "reason": reason })).await?;
    Ok(Some((room, audience)))
}

/// Open rooms whose customer link expired before `now`, oldest first (the video node ends the
/// ones nobody is in).
pub async fn open_rooms_expired(conn: &mut PgConnection, now: DateTime<Utc>, limit: i64) -> Result<Vec<VideoRoom>> {
    let rows = sqlx::query(concatcp!(
        "SELECT ",
        ROOM_COLUMNS,
        " FROM video_rooms WHERE state = 'open' AND link_expires_at < $1 ORDER BY link_expires_at LIMIT $2"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(room_from_row).collect()
}

/// The open calls of an interaction follow it to `agent` (a transfer, or the assignment of an
/// interaction transferred to a queue): the room's agent becomes `agent`, who joins it with a
/// token from now on, and the previous agent may no longer (their socket is closed by the video
/// node when the `video/rooms` doorbell rings). Each room records `video.room` `transferred`
/// with `from_agent` and `to_agent`. The caller holds the interaction's row lock. Returns the
/// rooms handed over.
pub async fn hand_over_rooms(conn: &mut PgConnection, interaction_id: Uuid, agent: &str) -> Result<Vec<VideoRoom>> {
    let rows = sqlx::query(concatcp!(
        "WITH previous AS (
             SELECT id, agent_login AS from_agent FROM video_rooms
             WHERE interaction_id = $1 AND state = 'open' AND agent_login <> $2 FOR UPDATE
         )
         UPDATE video_rooms r SET agent_login = $2 FROM previous p WHERE r.id = p.id
         RETURNING p.from_agent, ",
        "r.id, r.interaction_id, r.agent_login, r.mode, r.quality, r.state, r.link_expires_at, r.node, r.created_at, \
         r.ended_at, r.end_reason, r.record"
    ))
    .bind(interaction_id)
    .bind(agent)
    .fetch_all(&mut *conn)
    .await?;
    let mut rooms = Vec::with_capacity(rows.len());
    for row in &rows {
        let room = room_from_row(row)?;
        let from: String = row.try_get("from_agent")?;
        record_transition(
            conn,
            &room,
            "transferred",
            Some(&from),
            serde_json::json!({"from_agent": from, "to_agent": agent}),
        )
        .await?;
        rooms.push(room);
    }
    Ok(rooms)
}
