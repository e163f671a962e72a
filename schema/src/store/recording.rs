//! Call records and recordings of video calls: who joined a room and how, the quality the SFU
//! sampled, the call's chat, the recording's life; and the reads the interaction loader serves
//! (`docs/interaction-loader.md`, Calls).

use chrono::{DateTime, Utc};
use const_format::concatcp;
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Result, StoreError};
use crate::domain::{FileRef, RecordingState, VideoRoom};

// ---------------------------------------------------------------- participants --

/// A participant's join, as the video node records it.
#[derive(Debug, Clone, Default)]
pub struct NewParticipant {
    pub id: Uuid,
    pub room_id: Uuid,
    /// `agent`, `customer` or `supervisor`.
    pub role: String,
    pub login: Option<String>,
    pub name: String,
    pub user_agent: Option<String>,
    pub browser: Option<String>,
    pub os: Option<String>,
    pub device: Option<String>,
    pub camera: Option<bool>,
    pub microphone: Option<bool>,
    /// The customer's answer to the recording notice (for a recorded call) and its text.
    pub recording_consent: Option<bool>,
    pub consent_text: Option<String>,
}

pub async fn insert_participant(conn: &mut PgConnection, p: &NewParticipant) -> Result<()> {
    sqlx::query(
        "INSERT INTO video_participants (id, room_id, role, login, name, user_agent, browser, os, device, camera,
             microphone, recording_consent, consent_text, consented_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, CASE WHEN $12 IS NOT NULL THEN now() END)",
    )
    .bind(p.id)
    .bind(p.room_id)
    .bind(&p.role)
    .bind(&p.login)
    .bind(&p.name)
    .bind(&p.user_agent)
    .bind(&p.browser)
    .bind(&p.os)
    .bind(&p.device)
    .bind(p.camera)
    .bind(p.microphone)
    .bind(p.recording_consent)
    .bind(&p.consent_text)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Media flowed for the first time; `ice_path` is `direct` or `relay`.
pub async fn participant_connected(conn: &mut PgConnection, id: Uuid, ice_path: Option<&str>) -> Result<()> {
    sqlx::query(
        "UPDATE video_participants SET connected_at = COALESCE(connected_at, now()), ice_path = COALESCE($2, ice_path)
         WHERE id = $1",
    )
    .bind(id)
    .bind(ice_path)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What the page reported after joining: devices (they may change once permission is given).
pub async fn participant_devices(conn: &mut PgConnection, id: Uuid, camera: bool, microphone: bool) -> Result<()> {
    sqlx::query("UPDATE video_participants SET camera = $2, microphone = $3 WHERE id = $1")
        .bind(id)
        .bind(camera)
        .bind(microphone)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The participant left (once: a second call keeps the first time and reason).
pub async fn participant_left(conn: &mut PgConnection, id: Uuid, reason: &str) -> Result<()> {
    sqlx::query("UPDATE video_participants SET left_at = now(), left_reason = $2 WHERE id = $1 AND left_at IS NULL")
        .bind(id)
        .bind(reason)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Closes the rows of participants still in a room that ended (their sockets are closed
/// after the end is committed).
pub async fn participants_left_at_end(conn: &mut PgConnection, room: Uuid) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE video_participants SET left_at = now(), left_reason = 'ended' WHERE room_id = $1 AND left_at IS NULL",
    )
    .bind(room)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

/// One quality sample of a participant's connection, as the SFU measured it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualitySample {
    pub participant_id: Uuid,
    pub at: DateTime<Utc>,
    /// `good`, `fair` or `poor`.
    pub level: String,
    pub loss_pct: f32,
    pub jitter_ms: f32,
    pub rtt_ms: Option<f32>,
    pub bitrate_in_kbps: f32,
    pub bitrate_out_kbps: f32,
}

pub async fn insert_quality_samples(conn: &mut PgConnection, samples: &[QualitySample]) -> Result<()> {
    if samples.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = samples.iter().map(|s| s.participant_id).collect();
    let ats: Vec<DateTime<Utc>> = samples.iter().map(|s| s.at).collect();
    let levels: Vec<&str> = samples.iter().map(|s| s.level.as_str()).collect();
    let loss: Vec<f32> = samples.iter().map(|s| s.loss_pct).collect();
    let jitter: Vec<f32> = samples.iter().map(|s| s.jitter_ms).collect();
    let rtt: Vec<Option<f32>> = samples.iter().map(|s| s.rtt_ms).collect();
    let bin: Vec<f32> = samples.iter().map(|s| s.bitrate_in_kbps).collect();
    let bout: Vec<f32> = samples.iter().map(|s| s.bitrate_out_kbps).collect();
    sqlx::query(
        "INSERT INTO video_quality_samples (participant_id, at, level, loss_pct, jitter_ms, rtt_ms, bitrate_in_kbps,
             bitrate_out_kbps)
         SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::real[], $5::real[], $6::real[], $7::real[],
             $8::real[])
         ON CONFLICT DO NOTHING",
    )
    .bind(&ids)
    .bind(&ats)
    .bind(&levels)
    .bind(&loss)
    .bind(&jitter)
    .bind(&rtt)
    .bind(&bin)
    .bind(&bout)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A chat message of a call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatLine {
    pub participant_id: Uuid,
    pub role: String,
    pub name: String,
    pub text: String,
    pub at: DateTime<Utc>,
}

pub async fn insert_video_chat(conn: &mut PgConnection, room: Uuid, lines: &[ChatLine]) -> Result<()> {
    for line in lines {
        sqlx::query(
            "INSERT INTO video_chat (room_id, participant_id, role, name, text, at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(room)
        .bind(line.participant_id)
        .bind(&line.role)
        .bind(&line.name)
        .bind(&line.text)
        .bind(line.at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- queue settings --

/// Whether the video calls of each queue with a setting are recorded.
pub async fn video_queue_settings(conn: &mut PgConnection) -> Result<Vec<(String, bool)>> {
    let rows =
        sqlx::query("SELECT queue, record FROM video_queue_settings ORDER BY queue").fetch_all(&mut *conn).await?;
    rows.iter().map(|r| Ok((r.try_get("queue")?, r.try_get("record")?))).collect()
}

/// Sets whether a queue's video calls are recorded; an unknown queue is not found.
pub async fn put_video_queue_setting(conn: &mut PgConnection, queue: &str, record: bool) -> Result<()> {
    sqlx::query(
        "INSERT INTO video_queue_settings (queue, record) VALUES ($1, $2)
         ON CONFLICT (queue) DO UPDATE SET record = EXCLUDED.record, updated_at = now()",
    )
    .bind(queue)
    .bind(record)
    .execute(&mut *conn)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::not_found("queue", queue),
        other => other.into(),
    })?;
    Ok(())
}

// ---------------------------------------------------------------- recordings --

/// A call's recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recording {
    pub id: Uuid,
    pub room_id: Uuid,
    pub interaction_id: Uuid,
    /// The part of the call's recording (1, then 2 on the node the call moved to, ...).
    pub part: i32,
    pub state: RecordingState,
    /// The video node that spooled it.
    pub node: String,
    /// The node that finishes it (processes and uploads it); none while it records.
    pub processor: Option<String>,
    /// Bumped by every claim of the part (compared and set: one node finishes it).
    pub claims: i32,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    /// The file, while it exists.
    pub file: Option<FileRef>,
    pub video_codec: Option<String>,
    pub error: Option<String>,
    pub processing_ms: Option<i64>,
    pub ready_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

const RECORDING_COLUMNS: &str = "r.id, r.room_id, r.interaction_id, r.part, r.state, r.node, r.processor, r.claims, r.started_at, r.ended_at, \
     r.duration_ms, r.video_codec, r.error, r.processing_ms, r.ready_at, r.deleted_at, \
     f.id AS file_id, f.name AS file_name, f.mime AS file_mime, f.size AS file_size";

fn recording_from_row(r: &PgRow) -> Result<Recording> {
    let file = match r.try_get::<Option<Uuid>, _>("file_id")? {
        Some(id) => Some(FileRef {
            id,
            name: r.try_get("file_name")?,
            mime: r.try_get("file_mime")?,
            size: r.try_get("file_size")?,
            url: FileRef::url_for(id),
        }),
        None => None,
    };
    Ok(Recording {
        id: r.try_get("id")?,
        room_id: r.try_get("room_id")?,
        interaction_id: r.try_get("interaction_id")?,
        part: r.try_get("part")?,
        state: r.try_get::<&str, _>("state")?.parse()?,
        node: r.try_get("node")?,
        processor: r.try_get("processor")?,
        claims: r.try_get("claims")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        duration_ms: r.try_get("duration_ms")?,
        file,
        video_codec: r.try_get("video_codec")?,
        error: r.try_get("error")?,
        processing_ms: r.try_get("processing_ms")?,
        ready_at: r.try_get("ready_at")?,
        deleted_at: r.try_get("deleted_at")?,
    })
}

async fn load_recording(conn: &mut PgConnection, id: Uuid) -> Result<Recording> {
    let row = sqlx::query(concatcp!(
        "SELECT ",
        RECORDING_COLUMNS,
        " FROM video_recordings r LEFT JOIN files f ON f.id = r.file_id WHERE r.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::not_found("recording", id))?;
    recording_from_row(&row)
}

/// The recording of a room, if it has one: its first part (a call that moved to another node
/// has more: [`recordings_of_room`]).
pub async fn recording_of_room(conn: &mut PgConnection, room: Uuid) -> Result<Option<Recording>> {
    let row = sqlx::query(concatcp!(
        "SELECT ",
        RECORDING_COLUMNS,
        " FROM video_recordings r LEFT JOIN files f ON f.id = r.file_id WHERE r.room_id = $1 ORDER BY r.part LIMIT 1"
    ))
    .bind(room)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(recording_from_row).transpose()
}

/// The customer's latest answer to the recording notice in a room (`None`: never asked).
pub async fn latest_consent(conn: &mut PgConnection, room: Uuid) -> Result<Option<bool>> {
    let answer: Option<bool> = sqlx::query_scalar(
        "SELECT recording_consent FROM video_participants
         WHERE room_id = $1 AND role = 'customer' AND recording_consent IS NOT NULL
         ORDER BY joined_at DESC LIMIT 1",
    )
    .bind(room)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(answer)
}

/// Every part of a room's recording, in order.
pub async fn recordings_of_room(conn: &mut PgConnection, room: Uuid) -> Result<Vec<Recording>> {
    let rows = sqlx::query(concatcp!(
        "SELECT ",
        RECORDING_COLUMNS,
        " FROM video_recordings r LEFT JOIN files f ON f.id = r.file_id WHERE r.room_id = $1 ORDER BY r.part"
    ))
    .bind(room)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(recording_from_row).collect()
}

/// Starts the next part of the room's recording on `node` (the first, or the rest of a call
/// that moved here); `None` when another start took that part number at the same time.
pub async fn start_recording_part(
    conn: &mut PgConnection,
    room: &VideoRoom,
    node: &str,
    started_at: DateTime<Utc>,
) -> Result<Option<Recording>> {
    let id = Uuid::now_v7();
    let created = sqlx::query(
        "INSERT INTO video_recordings (id, room_id, interaction_id, part, node, started_at)
         SELECT $1, $2, $3, coalesce(max(part), 0) + 1, $4, $5 FROM video_recordings WHERE room_id = $2
         ON CONFLICT (room_id, part) DO NOTHING",
    )
    .bind(id)
    .bind(room.id)
    .bind(room.interaction_id)
    .bind(node)
    .bind(started_at)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if !created {
        return Ok(None);
    }
    load_recording(conn, id).await.map(Some)
}

/// The call ended (or its node died and `node` takes what it spooled): the part is being
/// processed by `node`, if nobody claimed it since its claims were `seen`. Whether `node` won
/// the claim; the winner alone finishes the part.
pub async fn claim_recording(
    conn: &mut PgConnection,
    id: Uuid,
    seen: i32,
    node: &str,
    ended_at: DateTime<Utc>,
) -> Result<bool> {
    let claimed = sqlx::query(
        "UPDATE video_recordings SET state = 'processing', processor = $3, claims = claims + 1,
             ended_at = COALESCE(ended_at, $4)
         WHERE id = $1 AND claims = $2 AND state IN ('recording', 'processing')",
    )
    .bind(id)
    .bind(seen)
    .bind(node)
    .bind(ended_at)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    Ok(claimed)
}

/// The call ended: the recording is being processed (by the node that spooled it).
pub async fn recording_processing(conn: &mut PgConnection, id: Uuid, ended_at: DateTime<Utc>) -> Result<()> {
    sqlx::query(
        "UPDATE video_recordings SET state = 'processing', processor = node, claims = claims + 1, ended_at = $2
         WHERE id = $1 AND state = 'recording'",
    )
    .bind(id)
    .bind(ended_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Whether the part is still being processed under the claim numbered `claims` (locks its
/// row until the transaction ends, so its outcome is written once).
pub async fn holds_claim(conn: &mut PgConnection, id: Uuid, claims: i32) -> Result<bool> {
    let held: Option<bool> = sqlx::query_scalar(
        "SELECT claims = $2 AND state = 'processing' FROM video_recordings WHERE id = $1 FOR NO KEY UPDATE",
    )
    .bind(id)
    .bind(claims)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(held == Some(true))
}

/// What processing produced.
#[derive(Debug, Clone)]
pub struct RecordingDone {
    pub file_id: Uuid,
    pub size: i64,
    pub duration_ms: i64,
    pub video_codec: Option<String>,
    pub processing_ms: i64,
}

/// The recording's file is stored: the recording is `ready`, and `video.room` with state
/// `recording_ready` goes to the interaction's log (and so to webhooks) and its audience; returns
/// the recording and the audience to wake.
pub async fn recording_ready(
    conn: &mut PgConnection,
    id: Uuid,
    done: &RecordingDone,
) -> Result<(Recording, Vec<String>)> {
    let interaction: Uuid = sqlx::query_scalar("SELECT interaction_id FROM video_recordings WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("recording", id))?;
    sqlx::query("SELECT 1 FROM interactions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(interaction)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE video_recordings SET state = 'ready', file_id = $2, size = $3, duration_ms = $4, video_codec = $5,
             processing_ms = $6, ready_at = now(), error = NULL
         WHERE id = $1",
    )
    .bind(id)
    .bind(done.file_id)
    .bind(done.size)
    .bind(done.duration_ms)
    .bind(&done.video_codec)
    .bind(done.processing_ms)
    .execute(&mut *conn)
    .await?;
    let recording = load_recording(conn, id).await?;
    let audience = recording_event(conn, &recording, "recording_ready").await?;
    Ok((recording, audience))
}

/// The recording could not be made or stored: `failed` with the reason, and `video.room` with
/// state `recording_failed`; returns the recording and the audience to wake.
pub async fn recording_failed(conn: &mut PgConnection, id: Uuid, error: &str) -> Result<(Recording, Vec<String>)> {
    let interaction: Uuid = sqlx::query_scalar("SELECT interaction_id FROM video_recordings WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("recording", id))?;
    sqlx::query("SELECT 1 FROM interactions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(interaction)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE video_recordings SET state = 'failed', error = $2, ended_at = COALESCE(ended_at, now()) WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .execute(&mut *conn)
    .await?;
    let recording = load_recording(conn, id).await?;
    let audience = recording_event(conn, &recording, "recording_failed").await?;
    Ok((recording, audience))
}

async fn recording_event(conn: &mut PgConnection, recording: &Recording, state: &str) -> Result<Vec<String>> {
    let room = super::load_room(conn, recording.room_id).await?;
    let mut data = serde_json::json!({
        "room_id": room.id,
        "interaction_id": room.interaction_id,
        "state": state,
        "mode": room.mode,
        "quality": room.quality,
        "record": room.record,
        "recording": recording_json(recording),
    });
    if let (Some(error), Some(map)) = (&recording.error, data.as_object_mut()) {
        map.insert("reason".into(), serde_json::Value::String(error.clone()));
    }
    super::append_interaction_event(conn, room.interaction_id, "video.room", None, &data).await?;
    super::fan_out(conn, room.interaction_id, "video.room", &data).await
}

/// A recording as events and APIs show it.
pub fn recording_json(r: &Recording) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "part": r.part,
        "state": r.state,
        "started_at": r.started_at,
        "ended_at": r.ended_at,
        "duration_ms": r.duration_ms,
        "file": r.file,
        "video_codec": r.video_codec,
    })
}

/// Recordings of `node` not finished: the parts it spools (or spooled) and the parts it
/// processes (a restart finds the spools it left).
pub async fn unfinished_recordings(conn: &mut PgConnection, node: &str) -> Result<Vec<Recording>> {
    let rows = sqlx::query(concatcp!(
        "SELECT ",
        RECORDING_COLUMNS,
        " FROM video_recordings r LEFT JOIN files f ON f.id = r.file_id
         WHERE (r.state = 'recording' AND r.node = $1) OR (r.state = 'processing' AND r.processor = $1)
         ORDER BY r.started_at"
    ))
    .bind(node)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(recording_from_row).collect()
}

/// Every recording not finished, of every node (a live node takes over what a dead one left).
pub async fn all_unfinished_recordings(conn: &mut PgConnection) -> Result<Vec<Recording>> {
    let rows = sqlx::query(concatcp!(
        "SELECT ",
        RECORDING_COLUMNS,
        " FROM video_recordings r LEFT JOIN files f ON f.id = r.file_id
         WHERE r.state IN ('recording', 'processing') ORDER BY r.started_at"
    ))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(recording_from_row).collect()
}

// ---------------------------------------------------------------- call records --

/// A participant of a call, with a summary of the quality the SFU sampled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallParticipant {
    pub id: Uuid,
    pub role: String,
    pub login: Option<String>,
    pub name: String,
    pub joined_at: DateTime<Utc>,
    pub connected_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
    pub left_reason: Option<String>,
    pub user_agent: Option<String>,
    pub browser: Option<String>,
    pub os: Option<String>,
    pub device: Option<String>,
    pub camera: Option<bool>,
    pub microphone: Option<bool>,
    pub ice_path: Option<String>,
    pub recording_consent: Option<bool>,
    pub consented_at: Option<DateTime<Utc>>,
    pub quality: QualitySummary,
}

/// The quality samples of a participant, summed up.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QualitySummary {
    pub samples: i64,
    pub good: i64,
    pub fair: i64,
    pub poor: i64,
    pub loss_avg_pct: Option<f64>,
    pub loss_max_pct: Option<f64>,
    pub jitter_avg_ms: Option<f64>,
    pub rtt_avg_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
    pub bitrate_in_avg_kbps: Option<f64>,
    pub bitrate_out_avg_kbps: Option<f64>,
}

/// One call: the room, its durations, its participants, its chat's size and its recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    pub room: VideoRoom,
    /// From the first join to the end (or now, for a call in progress), ms.
    pub call_ms: Option<i64>,
    /// From the invitation (the room's creation) to the customer's first join, ms.
    pub waiting_ms: Option<i64>,
    /// While the agent and the customer were both in the call, ms.
    pub talking_ms: i64,
    pub participants: Vec<CallParticipant>,
    pub chat_messages: i64,
    /// The recording's first part (as before parts existed).
    pub recording: Option<Recording>,
    /// Every part of the recording, in order (more than one when the call moved to another
    /// node while it was recorded).
    pub recordings: Vec<Recording>,
    /// The customer's answers to the post-call survey.
    pub survey: Option<super::CallSurvey>,
    /// The latest position the customer shared in the call.
    pub location: Option<super::CallLocation>,
    /// The files and screenshots sent in the call, oldest first.
    pub files: Vec<super::CallFile>,
}

/// The milliseconds two sets of intervals overlap (each set may overlap itself: reconnects).
pub fn overlap_ms(a: &[(DateTime<Utc>, DateTime<Utc>)], b: &[(DateTime<Utc>, DateTime<Utc>)]) -> i64 {
    let merge = |set: &[(DateTime<Utc>, DateTime<Utc>)]| {
        let mut v: Vec<_> = set.iter().filter(|(s, e)| e > s).copied().collect();
        v.sort();
        let mut out: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        for (s, e) in v {
            match out.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => out.push((s, e)),
            }
        }
        out
    };
    let (a, b) = (merge(a), merge(b));
    let mut total = 0;
    for (s1, e1) in &a {
        for (s2, e2) in &b {
            let (s, e) = ((*s1).max(*s2), (*e1).min(*e2));
            if e > s {
                total += (e - s).num_milliseconds();
            }
        }
    }
    total
}

const PARTICIPANT_COLUMNS: &str = "p.id, p.room_id, p.role, p.login, p.name, p.joined_at, p.connected_at, p.left_at, \
     p.left_reason, p.user_agent, p.browser, p.os, p.device, p.camera, p.microphone, p.ice_path, p.recording_consent, \
     p.consented_at, q.samples, q.good, q.fair, q.poor, q.loss_avg, q.loss_max, q.jitter_avg, q.rtt_avg, q.rtt_max, \
     q.bin_avg, q.bout_avg";

/// Builds the records of `rooms` (in the order given) with a few queries for all of them.
async fn records_of(conn: &mut PgConnection, rooms: Vec<VideoRoom>) -> Result<Vec<CallRecord>> {
    let ids: Vec<Uuid> = rooms.iter().map(|r| r.id).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concatcp!("SELECT ", PARTICIPANT_COLUMNS, "
         FROM video_participants p
         LEFT JOIN LATERAL (
             SELECT count(*) AS samples,
                    count(*) FILTER (WHERE level = 'good') AS good,
                    count(*) FILTER (WHERE level = 'fair') AS fair,
                    count(*) FILTER (WHERE level = 'poor') AS poor,
                    avg(loss_pct)::float8 AS loss_avg, max(loss_pct)::float8 AS loss_max,
                    avg(jitter_ms)::float8 AS jitter_avg, avg(rtt_ms)::float8 AS rtt_avg, max(rtt_ms)::float8 AS rtt_max,
                    avg(bitrate_in_kbps)::float8 AS bin_avg, avg(bitrate_out_kbps)::float8 AS bout_avg
             FROM video_quality_samples s WHERE s.participant_id = p.id
         ) q ON true
         WHERE p.room_id = ANY($1)
         ORDER BY p.joined_at, p.id"))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut participants: std::collections::HashMap<Uuid, Vec<CallParticipant>> = Default::default();
    for r in &rows {
        let room: Uuid = r.try_get("room_id")?;
        participants.entry(room).or_default().push(CallParticipant {
            id: r.try_get("id")?,
            role: r.try_get("role")?,
            login: r.try_get("login")?,
            name: r.try_get("name")?,
            joined_at: r.try_get("joined_at")?,
            connected_at: r.try_get("connected_at")?,
            left_at: r.try_get("left_at")?,
            left_reason: r.try_get("left_reason")?,
            user_agent: r.try_get("user_agent")?,
            browser: r.try_get("browser")?,
            os: r.try_get("os")?,
            device: r.try_get("device")?,
            camera: r.try_get("camera")?,
            microphone: r.try_get("microphone")?,
            ice_path: r.try_get("ice_path")?,
            recording_consent: r.try_get("recording_consent")?,
            consented_at: r.try_get("consented_at")?,
            quality: QualitySummary {
                samples: r.try_get("samples")?,
                good: r.try_get("good")?,
                fair: r.try_get("fair")?,
                poor: r.try_get("poor")?,
                loss_avg_pct: r.try_get("loss_avg")?,
                loss_max_pct: r.try_get("loss_max")?,
                jitter_avg_ms: r.try_get("jitter_avg")?,
                rtt_avg_ms: r.try_get("rtt_avg")?,
                rtt_max_ms: r.try_get("rtt_max")?,
                bitrate_in_avg_kbps: r.try_get("bin_avg")?,
                bitrate_out_avg_kbps: r.try_get("bout_avg")?,
            },
        });
    }
    let chats: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT room_id, count(*) FROM video_chat WHERE room_id = ANY($1) GROUP BY room_id")
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
    let rows = sqlx::query(concatcp!(
        "SELECT ",
        RECORDING_COLUMNS,
        " FROM video_recordings r LEFT JOIN files f ON f.id = r.file_id
         WHERE r.room_id = ANY($1) ORDER BY r.room_id, r.part"
    ))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut recordings: std::collections::HashMap<Uuid, Vec<Recording>> = Default::default();
    for r in &rows {
        let rec = recording_from_row(r)?;
        recordings.entry(rec.room_id).or_default().push(rec);
    }
    let mut surveys: std::collections::HashMap<Uuid, super::CallSurvey> =
        super::surveys_of_rooms(conn, &ids).await?.into_iter().map(|s| (s.room_id, s)).collect();
    let mut locations: std::collections::HashMap<Uuid, super::CallLocation> =
        super::latest_locations(conn, &ids).await?.into_iter().map(|l| (l.room_id, l)).collect();
    let files = super::files_of_rooms(conn, &ids).await?;
    let now = Utc::now();
    Ok(rooms
        .into_iter()
        .map(|room| {
            let people = participants.remove(&room.id).unwrap_or_default();
            let end = room.ended_at.unwrap_or(now);
            let spans = |role: &str| -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
                people
                    .iter()
                    .filter(|p| p.role == role)
                    .map(|p| (p.joined_at, p.left_at.unwrap_or(end).min(end)))
                    .collect()
            };
            let first_join = people.iter().map(|p| p.joined_at).min();
            let customer_join = people.iter().filter(|p| p.role == "customer").map(|p| p.joined_at).min();
            let parts = recordings.remove(&room.id).unwrap_or_default();
            CallRecord {
                call_ms: first_join.map(|j| (end - j).num_milliseconds().max(0)),
                waiting_ms: customer_join.map(|j| (j - room.created_at).num_milliseconds().max(0)),
                talking_ms: overlap_ms(&spans("agent"), &spans("customer")),
                chat_messages: chats.iter().find(|(r, _)| *r == room.id).map_or(0, |c| c.1),
                recording: parts.first().cloned(),
                recordings: parts,
                survey: surveys.remove(&room.id),
                location: locations.remove(&room.id),
                files: files.iter().filter(|f| f.room_id == room.id).cloned().collect(),
                participants: people,
                room,
            }
        })
        .collect())
}

/// The calls of an interaction, newest first.
pub async fn calls_of_interaction(conn: &mut PgConnection, interaction: Uuid) -> Result<Vec<CallRecord>> {
    let rooms = super::rooms_of_interaction(conn, interaction).await?;
    records_of(conn, rooms).await
}

/// One call.
pub async fn call_record(conn: &mut PgConnection, room: Uuid) -> Result<CallRecord> {
    let room = super::load_room(conn, room).await?;
    Ok(records_of(conn, vec![room]).await?.pop().expect("one room, one record"))
}

/// The calls started in `[from, to)`, oldest first, after the key `(created_at, id)` of the
/// last one of the previous page; at most `limit`.
pub async fn calls_in_period(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    after: Option<(DateTime<Utc>, Uuid)>,
    agent: Option<&str>,
    limit: i64,
) -> Result<Vec<CallRecord>> {
    let rows = sqlx::query(concatcp!(
        "SELECT ",
        super::video::ROOM_COLUMNS,
        " FROM video_rooms
         WHERE created_at >= $1 AND created_at < $2
           AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4))
           AND ($5::text IS NULL OR agent_login = $5)
         ORDER BY created_at, id LIMIT $6"
    ))
    .bind(from)
    .bind(to)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(agent)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let rooms = rows.iter().map(super::video::room_from_row).collect::<Result<Vec<_>>>()?;
    records_of(conn, rooms).await
}

/// The quality samples of a call, oldest first.
pub async fn call_quality_samples(conn: &mut PgConnection, room: Uuid) -> Result<Vec<QualitySample>> {
    let rows = sqlx::query(
        "SELECT s.participant_id, s.at, s.level, s.loss_pct, s.jitter_ms, s.rtt_ms, s.bitrate_in_kbps, s.bitrate_out_kbps
         FROM video_quality_samples s JOIN video_participants p ON p.id = s.participant_id
         WHERE p.room_id = $1 ORDER BY s.at, s.participant_id",
    )
    .bind(room)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(QualitySample {
                participant_id: r.try_get("participant_id")?,
                at: r.try_get("at")?,
                level: r.try_get("level")?,
                loss_pct: r.try_get("loss_pct")?,
                jitter_ms: r.try_get("jitter_ms")?,
                rtt_ms: r.try_get("rtt_ms")?,
                bitrate_in_kbps: r.try_get("bitrate_in_kbps")?,
                bitrate_out_kbps: r.try_get("bitrate_out_kbps")?,
            })
        })
        .collect()
}

/// The chat of a call, oldest first.
pub async fn call_chat(conn: &mut PgConnection, room: Uuid) -> Result<Vec<ChatLine>> {
    let rows =
        sqlx::query("SELECT participant_id, role, name, text, at FROM video_chat WHERE room_id = $1 ORDER BY at, id")
            .bind(room)
            .fetch_all(&mut *conn)
            .await?;
    rows.iter()
        .map(|r| {
            Ok(ChatLine {
                participant_id: r.try_get("participant_id")?,
                role: r.try_get("role")?,
                name: r.try_get("name")?,
                text: r.try_get("text")?,
                at: r.try_get("at")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn talking_time_is_the_overlap_of_both_sides_reconnects_included() {
        let t = |s: i64| DateTime::<Utc>::from_timestamp(1_700_000_000 + s, 0).unwrap();
        // the agent is there from 0 to 100; the customer 10-40, then reconnects 38-90
        let agent = [(t(0), t(100))];
        let customer = [(t(10), t(40)), (t(38), t(90))];
        assert_eq!(overlap_ms(&agent, &customer), 80_000);
        assert_eq!(overlap_ms(&agent, &[]), 0);
        assert_eq!(overlap_ms(&[(t(0), t(5)), (t(50), t(60))], &[(t(3), t(55))]), 7_000);
    }
}
