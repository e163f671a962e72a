//! The survey answers: the post-call survey's (docs/video.md, "Post-call survey") and the
//! survey after a closed chat's (docs/interaction-loader.md, "Survey after a closed chat"),
//! both kept in `call_surveys` and told as `interaction.rated`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Result, StoreError};
use crate::channels::buttons_for;
use crate::domain::{Channel, VideoRoom};
use crate::survey::{Ask, ChatSurveySettings, ChatSurveyState, ChatSurveyStep};

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
    let stored = store_survey(conn, room.interaction_id, Some(room.id), rating, answers).await?;
    let (submitted_at, audience) =
        stored.ok_or_else(|| StoreError::Conflict("this call's survey was answered already".into()))?;
    let survey = CallSurvey {
        room_id: room.id,
        interaction_id: room.interaction_id,
        rating,
        answers: answers.to_vec(),
        submitted_at,
    };
    Ok((survey, audience))
}

/// Stores a survey's answers (a call's with its room, a chat's without) and appends
/// `interaction.rated` to the interaction's log and its agents' streams. `None` when the call's
/// survey was stored before. The one writer of `call_surveys`.
async fn store_survey(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    room_id: Option<Uuid>,
    rating: i16,
    answers: &[SurveyAnswer],
) -> Result<Option<(DateTime<Utc>, Vec<String>)>> {
    if !(1..=5).contains(&rating) {
        return Err(StoreError::Invalid(format!("the rating must be 1 to 5, not {rating}")));
    }
    sqlx::query("SELECT 1 FROM interactions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(interaction_id)
        .execute(&mut *conn)
        .await?;
    let answers_json = serde_json::to_value(answers).expect("answers serialize");
    let source = if room_id.is_some() { "video_call" } else { "chat" };
    let submitted_at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "INSERT INTO call_surveys (room_id, interaction_id, rating, answers, source) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (room_id) DO NOTHING RETURNING submitted_at",
    )
    .bind(room_id)
    .bind(interaction_id)
    .bind(rating)
    .bind(&answers_json)
    .bind(source)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(submitted_at) = submitted_at else { return Ok(None) };
    let data = rated_data(interaction_id, room_id, rating, answers, submitted_at);
    super::append_interaction_event(conn, interaction_id, "interaction.rated", None, &data).await?;
    let audience = super::fan_out(conn, interaction_id, "interaction.rated", &data).await?;
    Ok(Some((submitted_at, audience)))
}

/// The data of `interaction.rated` (docs/interaction-loader.md, "Webhooks").
pub fn rated_event(survey: &CallSurvey) -> serde_json::Value {
    rated_data(survey.interaction_id, Some(survey.room_id), survey.rating, &survey.answers, survey.submitted_at)
}

/// `interaction.rated`'s data: `source` is `video_call` (with the call's `room_id`) or `chat`
/// (`room_id` null).
fn rated_data(
    interaction_id: Uuid,
    room_id: Option<Uuid>,
    rating: i16,
    answers: &[SurveyAnswer],
    submitted_at: DateTime<Utc>,
) -> serde_json::Value {
    serde_json::json!({
        "interaction_id": interaction_id,
        "source": if room_id.is_some() { "video_call" } else { "chat" },
        "room_id": room_id,
        "rating": rating,
        "answers": answers,
        "submitted_at": submitted_at,
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

/// The name the chat survey's messages go out under (their author, a bot).
pub const CHAT_SURVEY_AUTHOR: &str = "survey";

/// After an agent closed a chat: when its account's `chat_survey` setting (per queue) asks for
/// it, sends the survey's rating question into the chat and keeps the survey waiting for the
/// answer. Returns the account whose connector must be rung after the commit (its outbox got
/// the question), `None` when no survey was asked (off, a video interaction, or settings that
/// do not parse, which are logged). Call it in the closing transaction.
pub async fn start_chat_survey(conn: &mut PgConnection, interaction_id: Uuid) -> Result<Option<Uuid>> {
    let row = sqlx::query(
        "SELECT i.account_id, i.customer_id, i.chat_id, i.queue, i.channel, i.state, a.settings
         FROM interactions i JOIN accounts a ON a.id = i.account_id WHERE i.id = $1 FOR NO KEY UPDATE OF i",
    )
    .bind(interaction_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::not_found("interaction", interaction_id))?;
    let channel: String = row.try_get("channel")?;
    let Ok(channel) = channel.parse::<Channel>() else { return Ok(None) };
    let state: String = row.try_get("state")?;
    if channel == Channel::Video || state != "closed" {
        return Ok(None);
    }
    let account_id: Uuid = row.try_get("account_id")?;
    let settings: serde_json::Value = row.try_get("settings")?;
    let settings = match ChatSurveySettings::from_account(&settings) {
        Ok(settings) => settings,
        Err(why) => {
            tracing::warn!(account = %account_id, %why, "the account's chat survey settings are wrong: no survey");
            return Ok(None);
        }
    };
    let queue: Option<String> = row.try_get("queue")?;
    let Some(survey) = settings.for_queue(queue.as_deref()) else { return Ok(None) };
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(&mut *conn).await?;
    let (state, ask) = ChatSurveyState::start(survey, settings.window_minutes, now);
    let chat_id: String = row.try_get("chat_id")?;
    sqlx::query(
        "INSERT INTO chat_surveys (interaction_id, account_id, customer_id, state) VALUES ($1, $2, $3, $4)
         ON CONFLICT (interaction_id) DO UPDATE SET state = EXCLUDED.state, created_at = now()",
    )
    .bind(interaction_id)
    .bind(account_id)
    .bind(row.try_get::<Uuid, _>("customer_id")?)
    .bind(serde_json::to_value(&state).expect("a survey state serializes"))
    .execute(&mut *conn)
    .await?;
    ask_question(conn, interaction_id, account_id, &chat_id, channel, &ask).await?;
    Ok(Some(account_id))
}

async fn ask_question(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    account_id: Uuid,
    chat_id: &str,
    channel: Channel,
    ask: &Ask,
) -> Result<()> {
    let (text, keyboard) = buttons_for(channel, &ask.text, &ask.buttons);
    super::flows::send_automated(
        conn,
        interaction_id,
        account_id,
        chat_id,
        CHAT_SURVEY_AUTHOR,
        &text,
        keyboard.as_ref(),
    )
    .await?;
    Ok(())
}

/// A customer with no open interaction wrote: when a chat survey of theirs waits for an answer
/// (`schema::survey::ChatSurveyState::on_message` decides), the message is its answer. Returns
/// the closed interaction the answer belongs to (the message is stored there and neither
/// reopens it nor goes to routing; the next question, if any, is in the outbox), or `None`:
/// no survey waits, or the message is not an answer or came after the window, and the survey
/// ended (stored with its rating if one was given) so the message is handled as any other.
pub async fn chat_survey_answer(
    conn: &mut PgConnection,
    account_id: Uuid,
    customer_id: Uuid,
    text: Option<&str>,
) -> Result<Option<Uuid>> {
    let row = sqlx::query(
        "SELECT s.interaction_id, s.state, i.chat_id, i.channel, now() AS now
         FROM chat_surveys s JOIN interactions i ON i.id = s.interaction_id
         WHERE s.account_id = $1 AND s.customer_id = $2 AND i.state = 'closed'
         ORDER BY s.created_at DESC LIMIT 1 FOR NO KEY UPDATE OF i",
    )
    .bind(account_id)
    .bind(customer_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let interaction_id: Uuid = row.try_get("interaction_id")?;
    let state: ChatSurveyState = serde_json::from_value(row.try_get("state")?)
        .map_err(|e| StoreError::Corrupt(format!("a chat survey's state: {e}")))?;
    let now: DateTime<Utc> = row.try_get("now")?;
    match state.on_message(now, text) {
        ChatSurveyStep::Next { state, ask } => {
            sqlx::query("UPDATE chat_surveys SET state = $2 WHERE interaction_id = $1")
                .bind(interaction_id)
                .bind(serde_json::to_value(&state).expect("a survey state serializes"))
                .execute(&mut *conn)
                .await?;
            let channel: String = row.try_get("channel")?;
            let channel = channel.parse::<Channel>().map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let chat_id: String = row.try_get("chat_id")?;
            ask_question(conn, interaction_id, account_id, &chat_id, channel, &ask).await?;
            Ok(Some(interaction_id))
        }
        ChatSurveyStep::Done { rating, answers } => {
            end_chat_survey(conn, interaction_id).await?;
            store_survey(conn, interaction_id, None, rating, &answers).await?;
            Ok(Some(interaction_id))
        }
        ChatSurveyStep::Ended { rating, answers, .. } => {
            end_chat_survey(conn, interaction_id).await?;
            if let Some(rating) = rating {
                store_survey(conn, interaction_id, None, rating, &answers).await?;
            }
            Ok(None)
        }
    }
}

async fn end_chat_survey(conn: &mut PgConnection, interaction_id: Uuid) -> Result<()> {
    sqlx::query("DELETE FROM chat_surveys WHERE interaction_id = $1").bind(interaction_id).execute(&mut *conn).await?;
    Ok(())
}
