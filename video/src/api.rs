//! The REST calls and the pages of the video channel, and the job that ends forgotten rooms.
//!
//! - `POST /api/v1/video/rooms` (agent JWT): start a room for an interaction;
//! - `GET /api/v1/video/rooms/{id}` (JWT): the room, who is in it and its `branding`;
//! - `POST /api/v1/video/rooms/{id}/end` (the room's agent or a supervisor);
//! - `POST /api/v1/video/rooms/{id}/link`, `POST /api/v1/video/rooms/{id}/sms`, `GET
//!   /api/v1/video/rooms/{id}/sms/{sms}` (the room's agent or a supervisor): another customer
//!   link to copy, the link sent by SMS and its delivery;
//! - `GET /api/v1/video/ws`: signalling (see `signal`);
//! - `POST /api/v1/video/link`, `POST /api/v1/video/survey` (the customer link token): what the
//!   customer page shows before joining and after the call, the survey's answers and the branding;
//! - `GET`/`POST`/`DELETE /api/v1/video/drain` (admin): this node's draining (see `nodes`);
//! - `/call/{token}`, `/video/agent`, `/video/call.js`, `/video/call.css`: the pages.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use ops::auth::Claims;
use schema::domain::{VideoMode, VideoQuality, VideoRoom, VideoRoomState};
use schema::store::{self, LinkVia, NewRoom, NewSms};
use schema::topics;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::State;
use crate::error::VideoError;

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/api/v1/video/rooms", post(create))
        .route("/api/v1/video/rooms/{id}", get(show))
        .route("/api/v1/video/rooms/{id}/end", post(end))
        .route("/api/v1/video/rooms/{id}/link", post(copy_link))
        .route("/api/v1/video/rooms/{id}/sms", post(send_sms))
        .route("/api/v1/video/rooms/{id}/sms/{sms}", get(show_sms))
        .route("/api/v1/video/ws", get(crate::signal::upgrade))
        .route("/api/v1/video/link", post(link_info))
        .route(
            "/api/v1/video/survey",
            post(answer_survey).layer(axum::extract::DefaultBodyLimit::max(SURVEY_BODY_LIMIT)),
        )
        .route("/api/v1/video/drain", get(drain_status).post(drain).delete(undrain))
        .merge(crate::schedule_api::routes())
        .route("/call/{token}", get(customer_page))
        .route("/video/agent", get(agent_page))
        .route("/video/call.js", get(call_js))
        .route("/video/call.css", get(call_css))
        .with_state(state.clone())
        .merge(crate::files::router(state))
}

pub(crate) fn claims(state: &State, headers: &HeaderMap) -> Result<Claims, VideoError> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = ops::auth::bearer(authorization, None)?;
    Ok(state.verifier.verify(token)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    interaction_id: Uuid,
    mode: Option<VideoMode>,
    quality: Option<VideoQuality>,
    /// Record the call (the customer is asked to consent); absent: the queue's setting.
    record: Option<bool>,
}

async fn create(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    body: Result<Json<CreateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, VideoError> {
    let claims = claims(&state, &headers)?;
    let Json(body) = body.map_err(|e| VideoError::BadRequest(e.body_text()))?;
    let (mut new, customer_link) = NewRoom::with_new_link(
        body.interaction_id,
        &claims.sub,
        claims.name.as_deref().unwrap_or(&claims.sub),
        body.mode.unwrap_or(VideoMode::TwoWay),
        body.quality.unwrap_or_else(|| state.config.quality()),
        &state.public_url,
        state.config.link_ttl(),
    );
    new.record = body.record;
    let mut tx = state.pool.begin().await?;
    let started = store::start_room(&mut tx, &new).await?;
    tx.commit().await?;
    wake(&state, &started.audience);
    if started.invitation.created {
        wake(&state, &started.invitation.audience);
        state.coord.notify(&topics::account(started.invitation.account_id));
    }
    tracing::info!(room = %started.room.id, interaction = %started.room.interaction_id, agent = %claims.sub, "video room started");
    metrics::counter!("switchboard_video_rooms_started_total").increment(1);
    Ok((StatusCode::CREATED, Json(started.reply(&state.public_url, &customer_link))).into_response())
}

pub(crate) fn wake(state: &State, agents: &[String]) {
    for agent in agents {
        state.coord.notify(&topics::agent(agent));
    }
}

/// The room's agent, a supervisor, or an agent of the interaction may look at a room.
async fn may_see(state: &State, claims: &Claims, room: &VideoRoom) -> Result<(), VideoError> {
    if claims.sub == room.agent || claims.has_role("supervisor") {
        return Ok(());
    }
    let mut conn = state.pool.acquire().await?;
    match store::participation(&mut conn, room.interaction_id, &claims.sub).await? {
        Some(_) => Ok(()),
        None => Err(VideoError::RoomNotFound(room.id.to_string())),
    }
}

async fn show(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, VideoError> {
    let claims = claims(&state, &headers)?;
    let id: Uuid = id.parse().map_err(|_| VideoError::BadRequest(format!("{id:?} is not a room id")))?;
    let mut conn = state.pool.acquire().await?;
    let room = store::load_room(&mut conn, id).await?;
    may_see(&state, &claims, &room).await?;
    let (queue, account_settings) = store::room_queue_and_account_settings(&mut conn, &room).await?;
    let mut body = serde_json::to_value(&room).expect("room serializes");
    body["participants"] = serde_json::to_value(state.rooms.participants(id)).expect("participants serialize");
    body["branding"] = serde_json::to_value(branding_of(&state, &room, queue.as_deref(), &account_settings))
        .expect("branding serializes");
    Ok(Json(body))
}

async fn end(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, VideoError> {
    let claims = claims(&state, &headers)?;
    let id: Uuid = id.parse().map_err(|_| VideoError::BadRequest(format!("{id:?} is not a room id")))?;
    let room = store::load_room(&mut *state.pool.acquire().await?, id).await?;
    if claims.sub != room.agent && !claims.has_role("supervisor") {
        may_see(&state, &claims, &room).await?;
        return Err(VideoError::Forbidden("only the agent who started the call or a supervisor may end it".into()));
    }
    let ended = end_room(&state, id, "ended_by_agent", Some(&claims.sub)).await?;
    let room = ended.unwrap_or(room);
    Ok(Json(serde_json::to_value(&room).expect("room serializes")))
}

/// The room whose customer links `claims` may hand out: the room's agent or a supervisor, while
/// the room is open and its link valid.
async fn room_for_links(state: &State, claims: &Claims, id: &str) -> Result<VideoRoom, VideoError> {
    let id: Uuid = id.parse().map_err(|_| VideoError::BadRequest(format!("{id:?} is not a room id")))?;
    let room = store::load_room(&mut *state.pool.acquire().await?, id).await?;
    if claims.sub != room.agent && !claims.has_role("supervisor") {
        may_see(state, claims, &room).await?;
        return Err(VideoError::Forbidden(
            "only the agent who started the call or a supervisor may send its link".into(),
        ));
    }
    if room.state == VideoRoomState::Ended {
        return Err(VideoError::RoomEnded);
    }
    if room.link_expires_at < Utc::now() {
        return Err(VideoError::LinkExpired(room.link_expires_at.to_rfc3339()));
    }
    Ok(room)
}

/// `POST /api/v1/video/rooms/{id}/link`: another customer link to the room, for the agent to
/// copy and paste wherever the customer is (201 `{"customer_link"}`).
async fn copy_link(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), VideoError> {
    let claims = claims(&state, &headers)?;
    let room = room_for_links(&state, &claims, &id).await?;
    let token = store::add_room_link(&mut *state.pool.acquire().await?, room.id, LinkVia::Copy, &claims.sub).await?;
    tracing::info!(room = %room.id, agent = %claims.sub, "customer link issued to copy");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"customer_link": store::customer_link(&state.public_url, &token)})),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SmsBody {
    phone: String,
}

/// `POST /api/v1/video/rooms/{id}/sms` `{"phone"}`: sends the customer a link to the call by
/// SMS (a link of its own, like the copied one). 201 `{"sms_id", "room_id", "phone" (masked),
/// "state": "sent", "provider_id"}` once the provider took it; its delivery follows as
/// `video.sms` events and in `GET .../sms/{sms_id}`.
async fn send_sms(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<SmsBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), VideoError> {
    let claims = claims(&state, &headers)?;
    let room = room_for_links(&state, &claims, &id).await?;
    let Json(body) = body.map_err(|e| VideoError::BadRequest(e.body_text()))?;
    let phone = crate::sms::normalize_phone(&body.phone)?;
    let provider = state.sms.clone().ok_or(VideoError::SmsOff)?;
    let sms_id = Uuid::now_v7();
    let mut tx = state.pool.begin().await?;
    let token = store::add_room_link(&mut tx, room.id, LinkVia::Sms, &claims.sub).await?;
    let new = NewSms {
        id: sms_id,
        room: room.id,
        link: &token,
        agent: &claims.sub,
        phone: &phone,
        provider: provider.name(),
    };
    store::insert_sms(&mut tx, &new).await?;
    tx.commit().await?;
    let text = store::invitation_text(
        claims.name.as_deref().unwrap_or(&claims.sub),
        &store::customer_link(&state.public_url, &token),
    );
    let provider_id = deliver_sms(&state, provider, &room, sms_id, phone.clone(), text).await?;
    tracing::info!(room = %room.id, sms = %sms_id, agent = %claims.sub, "call link sent by SMS");
    let reply = serde_json::json!({
        "sms_id": sms_id,
        "room_id": room.id,
        "phone": crate::sms::masked(&phone),
        "state": "sent",
        "provider_id": provider_id,
    });
    Ok((StatusCode::CREATED, Json(reply)))
}

/// Hands an SMS whose row is stored (`sending`) to the provider, records the outcome, and
/// follows its delivery in the background; the provider's id once it took it.
pub(crate) async fn deliver_sms(
    state: &Arc<State>,
    provider: Arc<dyn crate::sms::SmsProvider>,
    room: &VideoRoom,
    sms_id: Uuid,
    phone: String,
    text: String,
) -> Result<String, VideoError> {
    let sent = provider.send(&phone, &text).await;
    let outcome = match &sent {
        Ok(provider_id) => ("sent", Some(provider_id.as_str()), None),
        Err(e) => ("failed", None, Some(e.to_string())),
    };
    record_sms(state, room, sms_id, &phone, outcome.0, outcome.1, outcome.2.as_deref()).await?;
    metrics::counter!("switchboard_video_sms_total", "state" => outcome.0).increment(1);
    let provider_id = match sent {
        Ok(provider_id) => provider_id,
        Err(e) => {
            tracing::warn!(room = %room.id, sms = %sms_id, provider = provider.name(), error = %e, "the call link SMS was not sent");
            return Err(e.into());
        }
    };
    tracing::info!(room = %room.id, sms = %sms_id, provider = provider.name(), "SMS handed to the provider");
    state.tasks.spawn(follow_sms(state.clone(), provider, room.clone(), sms_id, phone, provider_id.clone()));
    Ok(provider_id)
}

/// Stores an SMS's new state and tells the interaction's agents (`video.sms`).
async fn record_sms(
    state: &State,
    room: &VideoRoom,
    sms_id: Uuid,
    phone: &str,
    delivery: &str,
    provider_id: Option<&str>,
    error: Option<&str>,
) -> Result<(), VideoError> {
    let mut data = serde_json::json!({
        "sms_id": sms_id,
        "room_id": room.id,
        "interaction_id": room.interaction_id,
        "phone": crate::sms::masked(phone),
        "state": delivery,
    });
    if let Some(error) = error {
        data["error"] = error.into();
    }
    let mut tx = state.pool.begin().await?;
    let audience = store::record_sms_state(&mut tx, room, sms_id, delivery, provider_id, error, &data).await?;
    tx.commit().await?;
    if let Some(audience) = audience {
        wake(state, &audience);
    }
    Ok(())
}

/// Asks the provider about an SMS every `status_interval_ms` until it is delivered or failed,
/// for at most `status_for_s`; each change is recorded.
async fn follow_sms(
    state: Arc<State>,
    provider: Arc<dyn crate::sms::SmsProvider>,
    room: VideoRoom,
    sms_id: Uuid,
    phone: String,
    provider_id: String,
) {
    let interval = Duration::from_millis(state.config.sms.status_interval_ms);
    let until = tokio::time::Instant::now() + Duration::from_secs(state.config.sms.status_for_s);
    while tokio::time::Instant::now() < until {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let delivery = match provider.status(&phone, &provider_id).await {
            Ok(delivery) => delivery,
            Err(e) => {
                tracing::debug!(sms = %sms_id, error = %e, "no SMS status this time");
                continue;
            }
        };
        let error = match &delivery {
            crate::sms::Delivery::Sent => continue,
            crate::sms::Delivery::Delivered => None,
            crate::sms::Delivery::Failed(why) => Some(why.as_str()),
        };
        match record_sms(&state, &room, sms_id, &phone, delivery.state(), None, error).await {
            Ok(()) => {
                tracing::info!(sms = %sms_id, state = delivery.state(), "call link SMS delivery");
                metrics::counter!("switchboard_video_sms_total", "state" => delivery.state()).increment(1);
                return;
            }
            Err(e) => tracing::warn!(sms = %sms_id, error = %e, "cannot record an SMS delivery"),
        }
    }
}

/// `GET /api/v1/video/rooms/{id}/sms/{sms}`: an SMS's delivery (`sent`, `delivered`, `failed`
/// with `error`), for the room's agent or a supervisor.
async fn show_sms(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    Path((id, sms)): Path<(String, String)>,
) -> Result<Json<Value>, VideoError> {
    let claims = claims(&state, &headers)?;
    let room_id: Uuid = id.parse().map_err(|_| VideoError::BadRequest(format!("{id:?} is not a room id")))?;
    let sms_id: Uuid = sms.parse().map_err(|_| VideoError::BadRequest(format!("{sms:?} is not an SMS id")))?;
    let mut conn = state.pool.acquire().await?;
    let room = store::load_room(&mut conn, room_id).await?;
    if claims.sub != room.agent && !claims.has_role("supervisor") {
        may_see(&state, &claims, &room).await?;
        return Err(VideoError::Forbidden(
            "only the agent who started the call or a supervisor may see its SMS".into(),
        ));
    }
    let row = store::load_sms(&mut conn, sms_id).await?;
    if row.room_id != room.id {
        return Err(VideoError::NotFound(format!("sms {sms_id}")));
    }
    Ok(Json(serde_json::json!({
        "sms_id": row.id,
        "room_id": row.room_id,
        "phone": crate::sms::masked(&row.phone),
        "state": row.state,
        "provider_id": row.provider_id,
        "error": row.error,
    })))
}

/// Draining a node is for admins.
fn admin(state: &State, headers: &HeaderMap) -> Result<(), VideoError> {
    if claims(state, headers)?.has_role("admin") {
        Ok(())
    } else {
        Err(VideoError::Forbidden("draining a video node needs the admin role".into()))
    }
}

/// `{"node", "draining", "rooms_live"}` of this node.
fn drain_report(state: &State) -> Json<Value> {
    Json(
        serde_json::json!({"node": state.node, "draining": state.nodes.draining(), "rooms_live": state.rooms.room_count()}),
    )
}

async fn drain_status(Extract(state): Extract<Arc<State>>, headers: HeaderMap) -> Result<Json<Value>, VideoError> {
    admin(&state, &headers)?;
    Ok(drain_report(&state))
}

/// Starts draining: no new call is pinned to this node, its calls go on; stop the node once
/// `rooms_live` is 0 (docs/operations.md, "Upgrades").
async fn drain(Extract(state): Extract<Arc<State>>, headers: HeaderMap) -> Result<Json<Value>, VideoError> {
    admin(&state, &headers)?;
    state.nodes.set_draining(true);
    tracing::info!(node = %state.node, rooms_live = state.rooms.room_count(), "video node draining: no new calls");
    Ok(drain_report(&state))
}

/// Stops draining.
async fn undrain(Extract(state): Extract<Arc<State>>, headers: HeaderMap) -> Result<Json<Value>, VideoError> {
    admin(&state, &headers)?;
    state.nodes.set_draining(false);
    tracing::info!(node = %state.node, "video node takes new calls again");
    Ok(drain_report(&state))
}

/// Ends the room in the database (once) and closes every socket of it on this node.
pub(crate) async fn end_room(
    state: &State,
    id: Uuid,
    reason: &str,
    actor: Option<&str>,
) -> Result<Option<VideoRoom>, VideoError> {
    let mut tx = state.pool.begin().await?;
    let ended = store::end_room(&mut tx, id, reason, actor).await?;
    if ended.is_some() {
        store::participants_left_at_end(&mut tx, id).await?;
    }
    tx.commit().await?;
    state.rooms.end(id, reason);
    state.nodes.unpin(id).await;
    state.recorder.finish(id);
    if ended.is_some() {
        state.tasks.spawn(call_metrics(state.pool.clone(), id));
    }
    Ok(ended.map(|(room, audience)| {
        wake(state, &audience);
        // the agent's capacity the call held is free again
        state.coord.notify(topics::ROUTING);
        tracing::info!(room = %id, reason, "video room ended");
        metrics::counter!("switchboard_video_rooms_ended_total", "reason" => reason.to_owned()).increment(1);
        room
    }))
}

/// A call that ended, summed up in `/metrics`: its length, its talking and waiting times.
async fn call_metrics(pool: sqlx::PgPool, room: Uuid) {
    let record = match pool.acquire().await {
        Ok(mut conn) => store::call_record(&mut conn, room).await,
        Err(e) => Err(e.into()),
    };
    match record {
        Ok(c) => {
            if let Some(ms) = c.call_ms {
                metrics::histogram!("switchboard_video_call_seconds").record(ms as f64 / 1000.0);
            }
            if let Some(ms) = c.waiting_ms {
                metrics::histogram!("switchboard_video_call_waiting_seconds").record(ms as f64 / 1000.0);
            }
            metrics::histogram!("switchboard_video_call_talking_seconds").record(c.talking_ms as f64 / 1000.0);
        }
        Err(e) => tracing::debug!(room = %room, error = %e, "no call record for the metrics"),
    }
}

/// Closes the sockets of live rooms that ended elsewhere (their interaction was closed), and
/// finishes their recordings; closes the previous agent's socket of a call that was transferred.
async fn reconcile_live_rooms(state: &State) {
    let mut ids = state.rooms.live();
    for id in state.recorder.active_rooms() {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    for id in ids {
        let room = match state.pool.acquire().await {
            Ok(mut conn) => store::load_room(&mut conn, id).await,
            Err(e) => Err(e.into()),
        };
        match room {
            Ok(room) if room.state == VideoRoomState::Ended => {
                let reason = room.end_reason.as_deref().unwrap_or("ended");
                tracing::info!(room = %id, reason, "video room ended elsewhere; closing its sockets");
                state.rooms.end(id, reason);
                state.nodes.unpin(id).await;
                state.recorder.finish(id);
                state.tasks.spawn(call_metrics(state.pool.clone(), id));
            }
            Ok(room) => {
                if state.rooms.revoke_agent(id, &room.agent) {
                    tracing::info!(room = %id, agent = %room.agent, "video call transferred; the previous agent's socket closed");
                }
            }
            Err(e) => tracing::warn!(room = %id, error = %e, "cannot re-read a live video room"),
        }
    }
}

/// The recordings dead nodes left unfinished whose spool this node shares are claimed and
/// finished here (docs/video.md, "A call that moves"); returns how many this node claimed.
pub(crate) async fn take_over_recordings(state: &State) -> usize {
    match state.nodes.live().await {
        Ok(live) => state.recorder.take_over(&live).await,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the live video nodes; not taking over recordings now");
            0
        }
    }
}

/// Rooms that ended elsewhere are closed here when the `video/rooms` doorbell rings (and every
/// 30 s, in case a ring was missed); every 30 s, the recordings dead nodes left are taken over
/// when their spool is shared, and open rooms whose link expired and that nobody
/// is in on this node are ended (`expired`). A call in progress goes on past its link's expiry.
pub(crate) async fn expire_rooms(state: Arc<State>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    let mut doorbell = match state.coord.subscribe(topics::VIDEO_ROOMS).await {
        Ok(subscription) => Some(subscription),
        Err(e) => {
            tracing::warn!(error = %e, "cannot subscribe to the video rooms doorbell; rooms ended elsewhere close within 30 s");
            None
        }
    };
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            rung = async { doorbell.as_mut().expect("guarded").wake().await }, if doorbell.is_some() => {
                if rung.is_err() {
                    doorbell = None;
                }
                reconcile_live_rooms(&state).await;
                continue;
            }
            _ = tick.tick() => {}
        }
        reconcile_live_rooms(&state).await;
        take_over_recordings(&state).await;
        let expired = match state.pool.acquire().await {
            Ok(mut conn) => store::open_rooms_expired(&mut conn, Utc::now(), 100).await,
            Err(e) => Err(e.into()),
        };
        match expired {
            Ok(rooms) => {
                for room in rooms {
                    // pinned here, to nobody, or to a node that is gone
                    let mine_or_nobodys = match state.nodes.may_expire(room.id).await {
                        Ok(may) => may,
                        Err(e) => {
                            tracing::warn!(room = %room.id, error = %e, "cannot read the room's pin; not expiring it now");
                            false
                        }
                    };
                    if mine_or_nobodys
                        && !state.rooms.is_live(room.id)
                        && room.state == VideoRoomState::Open
                        && let Err(e) = end_room(&state, room.id, "expired", None).await
                    {
                        tracing::warn!(room = %room.id, error = %e, "cannot end an expired room");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot look for expired video rooms"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    link: String,
}

/// `POST /api/v1/video/link` `{"link"}`: what the customer page shows before joining: whether
/// the call is recorded and the notice to consent to (the token travels in the body, never in
/// a URL), and the survey it shows after the call (`null` when there is none to answer). A
/// link never issued is 401 `unauthorized`, as the join would answer.
async fn link_info(
    Extract(state): Extract<Arc<State>>,
    body: Result<Json<LinkBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, VideoError> {
    let Json(body) = body.map_err(|e| VideoError::BadRequest(e.body_text()))?;
    let mut conn = state.pool.acquire().await?;
    let room = room_of_link(&mut conn, &body.link).await?;
    let (queue, account_settings) = store::room_queue_and_account_settings(&mut conn, &room).await?;
    let survey = match state.config.survey.for_queue(queue.as_deref()) {
        Some(survey) if !store::survey_answered(&mut conn, room.id).await? => Some(survey),
        _ => None,
    };
    Ok(Json(serde_json::json!({
        "state": room.state,
        "record": room.record,
        "consent_text": room.record.then(|| state.config.recording.consent_text.clone()),
        "survey": survey,
        "branding": branding_of(&state, &room, queue.as_deref(), &account_settings),
    })))
}

/// The call's branding (docs/video.md, Branding); a bad value in the account's settings is left
/// out with a warning, never failing the call.
fn branding_of(
    state: &State,
    room: &VideoRoom,
    queue: Option<&str>,
    account_settings: &Value,
) -> crate::branding::Branding {
    let (account, warnings) = crate::branding::Layer::from_account_settings(account_settings);
    for warning in warnings {
        tracing::warn!(room = %room.id, interaction = %room.interaction_id, "{warning}");
    }
    let branding = state.config.branding.resolve(queue, &account);
    for warning in crate::branding::contrast_warnings("the call's branding", &branding) {
        tracing::warn!(room = %room.id, interaction = %room.interaction_id, "{warning}");
    }
    branding
}

/// The room of a customer link token; 401 `unauthorized` for a token never issued.
async fn room_of_link(conn: &mut sqlx::PgConnection, link: &str) -> Result<VideoRoom, VideoError> {
    if link.len() > 128 {
        return Err(VideoError::BadLink);
    }
    store::room_by_link(conn, link).await?.ok_or(VideoError::BadLink)
}

/// The largest body of a survey's answer: ten answers of 1,000 characters fit with room.
const SURVEY_BODY_LIMIT: usize = 64 * 1024;
/// How long after its call a survey may be answered.
const SURVEY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SurveyBody {
    link: String,
    rating: i64,
    #[serde(default)]
    answers: std::collections::BTreeMap<String, String>,
}

/// `POST /api/v1/video/survey` `{"link", "rating": 1-5, "answers": {"<question id>": "..."}}`:
/// the customer's answers to the survey after the call, authenticated by the call's link. Once
/// per call, by a customer who joined it, up to a day after it ended; stored on the call and
/// sent as `interaction.rated`. 201 with the survey as stored.
async fn answer_survey(
    Extract(state): Extract<Arc<State>>,
    body: Result<Json<SurveyBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), VideoError> {
    let Json(body) = body.map_err(|e| VideoError::BadRequest(e.body_text()))?;
    let mut conn = state.pool.acquire().await?;
    let room = room_of_link(&mut conn, &body.link).await?;
    if room.ended_at.is_some_and(|ended| Utc::now() - ended > SURVEY_WINDOW) {
        return Err(VideoError::LinkExpired("a day after the call".into()));
    }
    let survey = state
        .config
        .survey
        .for_queue(store::room_queue(&mut conn, &room).await?.as_deref())
        .ok_or_else(|| VideoError::NotFound("a survey for this call".into()))?;
    if !store::customer_joined(&mut conn, room.id).await? {
        return Err(VideoError::NotJoined);
    }
    let (rating, answers) = crate::survey::check_answer(&survey, body.rating, &body.answers)?;
    drop(conn);
    let mut tx = state.pool.begin().await?;
    let (stored, audience) = store::insert_call_survey(&mut tx, &room, rating, &answers).await?;
    tx.commit().await?;
    wake(&state, &audience);
    tracing::info!(room = %room.id, interaction = %room.interaction_id, rating, "post-call survey answered");
    metrics::counter!("switchboard_video_surveys_total", "rating" => rating.to_string()).increment(1);
    Ok((StatusCode::CREATED, Json(serde_json::to_value(&stored).expect("survey serializes"))))
}

const CUSTOMER_HTML: &str = include_str!("../pages/customer.html");
const AGENT_HTML: &str = include_str!("../pages/agent.html");
const CALL_JS: &str = include_str!("../pages/call.js");
const CALL_CSS: &str = include_str!("../pages/call.css");

/// Pages carry no secret and the token stays in the page's URL; no caching of the pages
/// keeps a link's page from lingering in shared caches, no referrer keeps it from leaking.
fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn customer_page(Path(_token): Path<String>) -> Response {
    page("text/html; charset=utf-8", CUSTOMER_HTML)
}

async fn agent_page() -> Response {
    page("text/html; charset=utf-8", AGENT_HTML)
}

/// The module a CRM on another origin imports: no secret in it, so any origin may load it.
async fn call_js() -> Response {
    let mut response = page("text/javascript; charset=utf-8", CALL_JS);
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, axum::http::HeaderValue::from_static("*"));
    response
}

async fn call_css() -> Response {
    page("text/css; charset=utf-8", CALL_CSS)
}
