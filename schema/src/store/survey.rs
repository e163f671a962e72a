//! The post-call survey's answers (docs/video.md, "Post-call survey").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Result, StoreError};
use crate::domain::VideoRoom;

/// One answered question of a survey, with the question as the customer read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurveyAnswer {
    pub id: String,
    pub question: String,
    pub answer: String,
}

/// A call's survey as the customer answered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallSurvey {
    pub room_id: Uuid,
    pub interaction_id: Uuid,
    /// 1 (worst) to 5 (best).
    pub rating: i16,
    pub answers: Vec<SurveyAnswer>,
    pub submitted_at: DateTime<Utc>,
}

/// The queue of the room's interaction (which survey its customer gets).
pub async fn room_queue(conn: &mut PgConnection, room: &VideoRoom) -> Result<Option<String>> {
    let queue: Option<Option<String>> = sqlx::query_scalar("SELECT queue FROM interactions WHERE id = $1")
        .bind(room.interaction_id)
        .fetch_optional(&mut *conn)
        .await?;
    queue.ok_or_else(|| StoreError::not_found("interaction", room.interaction_id))
}

/// The queue of the room's interaction and its account's settings (`accounts.settings`): what
/// the call's branding is resolved from.
pub async fn room_queue_and_account_settings(
    conn: &mut PgConnection,
    room: &VideoRoom,
) -> Result<(Option<String>, serde_json::Value)> {
    let row = sqlx::query(
        "SELECT i.queue, a.settings FROM interactions i JOIN accounts a ON a.id = i.account_id WHERE i.id = $1",
    )
    .bind(room.interaction_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::not_found("interaction", room.interaction_id))?;
    Ok((row.try_get("queue")?, row.try_get("settings")?))
}

/// Whether the room's customer has joined the call (only a customer who was in the call is
/// asked the survey).
pub async fn customer_joined(conn: &mut PgConnection, room: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM video_participants WHERE room_id = $1 AND role = 'customer')")
        .bind(room)
        .fetch_one(&mut *conn)
        .await?)
}

/// Whether the call's survey was answered.
pub async fn survey_answered(conn: &mut PgConnection, room: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM call_surveys WHERE room_id = $1)")
        .bind(room)
        .fetch_one(&mut *conn)
        .await?)
}

/// Stores the answers to a call's survey and appends `interaction.rated` to the interaction's
/// log (so the webhooks subscribed to it get it) and to its agents' streams. A call's survey is
/// answered once: a second answer is `Conflict`. Returns the survey and the agents to wake
/// after the commit.
pub async fn insert_call_survey(
    conn: &mut PgConnection,
    room: &VideoRoom,
    rating: i16,
    answers: &[SurveyAnswer],
) -> Result<(CallSurvey, Vec<String>)> {
    if !(1..=5).contains(&rating) {
        return Err(StoreError::Invalid(format!("the rating must be 1 to 5, not {rating}")));
    }
    sqlx::query("SELECT 1 FROM interactions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(room.interaction_id)
        .execute(&mut *conn)
        .await?;
    let answers_json = serde_json::to_value(answers).expect("answers serialize");
    let submitted_at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "INSERT INTO call_surveys (room_id, interaction_id, rating, answers) VALUES ($1, $2, $3, $4)
         ON CONFLICT (room_id) DO NOTHING RETURNING submitted_at",
    )
    .bind(room.id)
    .bind(room.interaction_id)
    .bind(rating)
    .bind(&answers_json)
    .fetch_optional(&mut *conn)
    .await?;
    let submitted_at =
        submitted_at.ok_or_else(|| StoreError::Conflict("this call's survey was answered already".into()))?;
    let survey = CallSurvey {
        room_id: room.id,
        interaction_id: room.interaction_id,
        rating,
        answers: answers.to_vec(),
        submitted_at,
    };
    let data = rated_event(&survey);
    super::append_interaction_event(conn, room.interaction_id, "interaction.rated", None, &data).await?;
    let audience = super::fan_out(conn, room.interaction_id, "interaction.rated", &data).await?;
    Ok((survey, audience))
}

/// The data of `interaction.rated` (docs/interaction-loader.md, "Webhooks").
pub fn rated_event(survey: &CallSurvey) -> serde_json::Value {
    serde_json::json!({
        "interaction_id": survey.interaction_id,
        "source": "video_call",
        "room_id": survey.room_id,
        "rating": survey.rating,
        "answers": survey.answers,
        "submitted_at": survey.submitted_at,
    })
}

/// The surveys of these calls.
pub async fn surveys_of_rooms(conn: &mut PgConnection, rooms: &[Uuid]) -> Result<Vec<CallSurvey>> {
    let rows = sqlx::query(
        "SELECT room_id, interaction_id, rating, answers, submitted_at FROM call_surveys WHERE room_id = ANY($1)",
    )
    .bind(rooms)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            let answers: serde_json::Value = r.try_get("answers")?;
            Ok(CallSurvey {
                room_id: r.try_get("room_id")?,
                interaction_id: r.try_get("interaction_id")?,
                rating: r.try_get("rating")?,
                answers: serde_json::from_value(answers)
                    .map_err(|e| StoreError::Corrupt(format!("a stored survey's answers: {e}")))?,
                submitted_at: r.try_get("submitted_at")?,
            })
        })
        .collect()
}
