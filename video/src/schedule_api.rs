//! The REST calls of scheduled calls (docs/video.md, "Scheduled calls"):
//!
//! - `POST /api/v1/video/schedules` (the interaction's agent): book a call for a time; its room
//!   and the customer's link are made at once;
//! - `GET /api/v1/video/schedules` (supervisors and admins: all; an agent: the ones they booked);
//! - `GET`, `PATCH` (move), `DELETE` (cancel) `/api/v1/video/schedules/{id}` (supervisors,
//!   admins, the agent who booked it).

use std::sync::Arc;

use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::{Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use ops::auth::Claims;
use schema::domain::{VideoMode, VideoQuality};
use schema::store::{self, LinkVia, NewRoom, NewScheduledCall, NewSms, OutboundMessage, ScheduleFilter, ScheduledCall};
use schema::topics;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::State;
use crate::api::{claims, wake};
use crate::error::VideoError;
use crate::schedule::{self, MAX_AHEAD, MAX_REMIND_BEFORE_S, MIN_REMIND_BEFORE_S};

pub(crate) fn routes() -> Router<Arc<State>> {
    Router::new()
        .route("/api/v1/video/schedules", axum::routing::post(create).get(list))
        .route("/api/v1/video/schedules/{id}", axum::routing::get(show).patch(move_call).delete(cancel))
}

/// Supervisors and admins manage every schedule.
fn manager(claims: &Claims) -> bool {
    claims.has_role("supervisor") || claims.has_role("admin")
}

/// A schedule as the API shows it (the phone masked).
fn schedule_body(state: &State, call: &ScheduledCall) -> Value {
    let mut body = serde_json::to_value(call).expect("schedule serializes");
    body["phone"] = call.phone.as_deref().map(crate::sms::masked).into();
    body["agent_join"] = store::agent_join_link(&state.public_url, call.room_id).into();
    body
}

/// The call's time and the reminder's lead, checked against `now`: 422 `bad_schedule`.
fn check_time(at: DateTime<Utc>, remind_before_s: Option<i64>, now: DateTime<Utc>) -> Result<Option<i32>, VideoError> {
    if at <= now + TimeDelta::seconds(i64::from(MIN_REMIND_BEFORE_S)) {
        return Err(VideoError::BadSchedule(format!("at: {} is not at least a minute from now", at.to_rfc3339())));
    }
    if at > now + MAX_AHEAD {
        return Err(VideoError::BadSchedule(format!("at: {} is more than a year ahead", at.to_rfc3339())));
    }
    remind_before_s
        .map(|s| match i32::try_from(s) {
            Ok(s) if (MIN_REMIND_BEFORE_S as i64..=MAX_REMIND_BEFORE_S as i64).contains(&i64::from(s)) => Ok(s),
            _ => Err(VideoError::BadSchedule(format!(
                "remind_before_s: {s} is not between {MIN_REMIND_BEFORE_S} and {MAX_REMIND_BEFORE_S}"
            ))),
        })
        .transpose()
}

fn parse_id(id: &str) -> Result<Uuid, VideoError> {
    id.parse().map_err(|_| VideoError::BadRequest(format!("{id:?} is not a schedule id")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    interaction_id: Uuid,
    at: DateTime<Utc>,
    remind_before_s: Option<i64>,
    /// `channel` (default) or `sms` (with `phone`).
    via: Option<String>,
    phone: Option<String>,
    mode: Option<VideoMode>,
    quality: Option<VideoQuality>,
    record: Option<bool>,
}

/// `POST /api/v1/video/schedules`: books a call. The room is opened now and its invitation
/// (naming the time) goes through the interaction's channel, and by SMS too with `via: "sms"`;
/// the link stays good until `link_ttl_s` after the call's time. 201 with the schedule,
/// `customer_link` and, with SMS, `sms` (`{"sms_id", "state"}`).
async fn create(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    body: Result<Json<CreateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), VideoError> {
    let claims = claims(&state, &headers)?;
    let Json(body) = body.map_err(|e| VideoError::BadRequest(e.body_text()))?;
    let remind_before_s =
        check_time(body.at, body.remind_before_s, Utc::now())?.unwrap_or(state.config.schedules.remind_before_s as i32);
    let via = body.via.as_deref().unwrap_or("channel");
    let (phone, provider) = match (via, body.phone.as_deref()) {
        ("channel", None) => (None, None),
        ("channel", Some(_)) => {
            return Err(VideoError::BadSchedule("phone: only with via \"sms\"".into()));
        }
        ("sms", Some(phone)) => {
            let phone = crate::sms::normalize_phone(phone)?;
            (Some(phone), Some(state.sms.clone().ok_or(VideoError::SmsOff)?))
        }
        ("sms", None) => return Err(VideoError::BadSchedule("phone: required with via \"sms\"".into())),
        (other, _) => {
            return Err(VideoError::BadSchedule(format!("via: {other:?} is not \"channel\" or \"sms\"")));
        }
    };
    let agent_name = claims.name.clone().unwrap_or_else(|| claims.sub.clone());
    let (mut room, customer_link) = NewRoom::with_new_link(
        body.interaction_id,
        &claims.sub,
        &agent_name,
        body.mode.unwrap_or(VideoMode::TwoWay),
        body.quality.unwrap_or_else(|| state.config.quality()),
        &state.public_url,
        state.config.link_ttl(),
    );
    room.link_expires_at = body.at + state.config.link_ttl();
    room.invitation = schedule::invitation_text(&agent_name, body.at, &customer_link);
    room.record = body.record;
    let new = NewScheduledCall { room, at: body.at, remind_before_s, via: via.to_owned(), phone: phone.clone() };
    let mut tx = state.pool.begin().await?;
    let (call, started, audience) = store::schedule_call(&mut tx, &new).await?;
    tx.commit().await?;
    wake(&state, &audience);
    if started.invitation.created {
        wake(&state, &started.invitation.audience);
        state.coord.notify(&topics::account(started.invitation.account_id));
    }
    tracing::info!(schedule = %call.id, room = %call.room_id, interaction = %call.interaction_id, at = %call.at, agent = %claims.sub, "video call scheduled");
    metrics::counter!("switchboard_video_schedules_total", "via" => call.via.clone()).increment(1);
    let mut reply = body_with_link(&state, &call, &customer_link);
    if let (Some(phone), Some(provider)) = (phone, provider) {
        let sms_id = Uuid::now_v7();
        let mut tx = state.pool.begin().await?;
        let token = store::add_room_link(&mut tx, call.room_id, LinkVia::Sms, &claims.sub).await?;
        let sms = NewSms {
            id: sms_id,
            room: call.room_id,
            link: &token,
            agent: &claims.sub,
            phone: &phone,
            provider: provider.name(),
        };
        store::insert_sms(&mut tx, &sms).await?;
        tx.commit().await?;
        let text = schedule::invitation_text(&agent_name, call.at, &store::customer_link(&state.public_url, &token));
        let sent = crate::api::deliver_sms(&state, provider, &started.room, sms_id, phone, text).await;
        reply["sms"] = serde_json::json!({"sms_id": sms_id, "state": if sent.is_ok() { "sent" } else { "failed" }});
    }
    Ok((StatusCode::CREATED, Json(reply)))
}

fn body_with_link(state: &State, call: &ScheduledCall, customer_link: &str) -> Value {
    let mut body = schedule_body(state, call);
    body["customer_link"] = customer_link.into();
    body
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    agent: Option<String>,
    interaction_id: Option<Uuid>,
    state: Option<String>,
    from: Option<DateTime<Utc>>,
    limit: Option<i64>,
}

/// `GET /api/v1/video/schedules?agent=&interaction_id=&state=&from=&limit=`: by call time.
/// Supervisors and admins see all; an agent only the calls they booked (naming another agent
/// is 403).
async fn list(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, VideoError> {
    let claims = claims(&state, &headers)?;
    let Query(query) = query.map_err(|e| VideoError::BadRequest(e.body_text()))?;
    if let Some(agent) = query.agent.as_deref() {
        ops::input::check("agent", ops::input::Kind::Key, agent).map_err(|e| VideoError::BadRequest(e.to_string()))?;
    }
    let agent = match (manager(&claims), query.agent) {
        (true, agent) => agent,
        (false, Some(agent)) if agent != claims.sub => {
            return Err(VideoError::Forbidden("only supervisors and admins see other agents' schedules".into()));
        }
        (false, _) => Some(claims.sub.clone()),
    };
    if let Some(s) = query.state.as_deref()
        && s != "scheduled"
        && s != "cancelled"
    {
        return Err(VideoError::BadRequest(format!("state: {s:?} is not \"scheduled\" or \"cancelled\"")));
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(VideoError::BadRequest("limit: between 1 and 500".into()));
    }
    let filter = ScheduleFilter { agent, interaction_id: query.interaction_id, state: query.state, from: query.from };
    let calls = store::list_scheduled_calls(&mut *state.pool.acquire().await?, &filter, limit).await?;
    Ok(Json(serde_json::json!({"schedules": calls.iter().map(|c| schedule_body(&state, c)).collect::<Vec<_>>()})))
}

/// The schedule `claims` may manage: a supervisor's, an admin's or the booking agent's (403
/// otherwise); 404 `not_found` for an unknown id.
async fn managed(state: &State, claims: &Claims, id: &str) -> Result<ScheduledCall, VideoError> {
    let id = parse_id(id)?;
    let call = store::load_scheduled_call(&mut *state.pool.acquire().await?, id).await?;
    if !manager(claims) && call.agent != claims.sub {
        return Err(VideoError::Forbidden(
            "only supervisors, admins and the agent who booked it manage a scheduled call".into(),
        ));
    }
    Ok(call)
}

async fn show(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, VideoError> {
    let claims = claims(&state, &headers)?;
    let call = managed(&state, &claims, &id).await?;
    Ok(Json(schedule_body(&state, &call)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    at: DateTime<Utc>,
    remind_before_s: Option<i64>,
}

/// `PATCH /api/v1/video/schedules/{id}` `{"at", "remind_before_s"?}`: moves the call. The link
/// stays the same (good until `link_ttl_s` after the new time), the reminder is due again, and
/// the customer is told the new time through the channel. 409 `conflict` once cancelled.
async fn move_call(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<MoveBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, VideoError> {
    let claims = claims(&state, &headers)?;
    let call = managed(&state, &claims, &id).await?;
    let Json(body) = body.map_err(|e| VideoError::BadRequest(e.body_text()))?;
    let remind_before_s = check_time(body.at, body.remind_before_s, Utc::now())?;
    let mut tx = state.pool.begin().await?;
    let (moved, mut audience) = store::move_scheduled_call(
        &mut tx,
        call.id,
        body.at,
        remind_before_s,
        body.at + state.config.link_ttl(),
        &claims.sub,
    )
    .await?;
    let agent_name = store::agent_name(&mut tx, &moved.agent).await?;
    let told =
        tell_customer(&mut tx, &moved, &agent_name, "moved", schedule::moved_text(&agent_name, moved.at)).await?;
    tx.commit().await?;
    audience.extend(told.audience);
    wake(&state, &audience);
    if told.created {
        state.coord.notify(&topics::account(told.account_id));
    }
    tracing::info!(schedule = %moved.id, from = %call.at, to = %moved.at, by = %claims.sub, "scheduled video call moved");
    Ok(Json(schedule_body(&state, &moved)))
}

/// A message to the customer in the booking agent's name, through the interaction's channel.
async fn tell_customer(
    tx: &mut sqlx::PgConnection,
    call: &ScheduledCall,
    agent_name: &str,
    what: &str,
    text: String,
) -> Result<store::Enqueued, VideoError> {
    Ok(store::enqueue_outbound(
        tx,
        &OutboundMessage {
            interaction_id: call.interaction_id,
            agent_login: call.agent.clone(),
            agent_name: agent_name.to_owned(),
            client_msg_id: format!("video-schedule:{}:{what}:{}", call.id, Uuid::now_v7()),
            text: Some(text),
            ..Default::default()
        },
    )
    .await?)
}

/// `DELETE /api/v1/video/schedules/{id}`: cancels the call: its room ends (`cancelled`), no
/// reminder goes, and the customer is told through the channel. 200 with the schedule; 409
/// `conflict` when already cancelled.
async fn cancel(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, VideoError> {
    let claims = claims(&state, &headers)?;
    let call = managed(&state, &claims, &id).await?;
    let mut tx = state.pool.begin().await?;
    let (cancelled, mut audience) = store::cancel_scheduled_call(&mut tx, call.id, &claims.sub).await?;
    let agent_name = store::agent_name(&mut tx, &cancelled.agent).await?;
    // the interaction may have been closed meanwhile: then there is nobody to tell
    let text = schedule::cancelled_text(&agent_name, cancelled.at);
    let told = match tell_customer(&mut tx, &cancelled, &agent_name, "cancelled", text).await {
        Ok(told) => Some(told),
        Err(VideoError::Conflict(_) | VideoError::BadRequest(_) | VideoError::Forbidden(_)) => None,
        Err(e) => return Err(e),
    };
    tx.commit().await?;
    state.rooms.end(cancelled.room_id, "cancelled");
    state.nodes.unpin(cancelled.room_id).await;
    state.recorder.finish(cancelled.room_id);
    if let Some(told) = told {
        audience.extend(told.audience);
        if told.created {
            state.coord.notify(&topics::account(told.account_id));
        }
    }
    wake(&state, &audience);
    state.coord.notify(topics::VIDEO_ROOMS);
    tracing::info!(schedule = %cancelled.id, by = %claims.sub, "scheduled video call cancelled");
    Ok(Json(schedule_body(&state, &cancelled)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_checked_against_now() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z").unwrap().with_timezone(&Utc);
        assert!(check_time(now + TimeDelta::seconds(30), None, now).is_err());
        assert!(check_time(now + TimeDelta::days(400), None, now).is_err());
        assert_eq!(check_time(now + TimeDelta::hours(1), Some(600), now).unwrap(), Some(600));
        assert!(check_time(now + TimeDelta::hours(1), Some(10), now).is_err());
        assert!(check_time(now + TimeDelta::hours(1), Some(i64::MAX), now).is_err());
        assert_eq!(check_time(now + TimeDelta::hours(1), None, now).unwrap(), None);
    }
}
