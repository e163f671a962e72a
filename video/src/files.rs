//! Screenshots and files sent in a call (docs/video.md, "Screenshots and files"):
//!
//! - `POST /api/v1/video/rooms/{id}/files?name=<name>[&screenshot=true]`: the body (raw, its
//!   `Content-Type` the file's type) is streamed to the file server as a `chat` file, kept as a
//!   message of the call's interaction and announced to the call's participants (`file` on the
//!   signalling socket). A screenshot is a JPEG of at most [`SCREENSHOT_MAX_BYTES`], read whole,
//!   checked, and given the customer's last shared position in its EXIF ([`crate::exif`]).
//! - `GET /api/v1/video/rooms/{id}/files`: the call's files.
//! - `POST /api/v1/video/rooms/{id}/files/{file}/link`: a short-lived signed download link.
//!
//! Authentication: the agent's JWT (`Authorization: Bearer`: the room's agent or a supervisor),
//! or the customer's call link (`X-Call-Link: <token>`, good for its own call only).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Path, Query, Request, State as Extract};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::Utc;
use futures::StreamExt;
use schema::domain::{VideoRoom, VideoRoomState};
use schema::store::{self, CallFile, NewCallFile};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::State;
use crate::error::VideoError;
use crate::exif::{ExifError, GpsStamp};

/// The largest file sent in a call (the file server's own default limit).
pub const MAX_BYTES: u64 = 100 * 1024 * 1024;
/// The largest screenshot (read whole, to write its EXIF).
pub const SCREENSHOT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// How long after its call the customer may still fetch the call's files.
const READ_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// The header carrying the customer's call link.
pub const LINK_HEADER: &str = "x-call-link";

pub(crate) fn router(state: Arc<State>) -> Router {
    use axum::routing::{get, post};
    Router::new()
        .route("/api/v1/video/rooms/{id}/files", get(list).post(upload))
        .route("/api/v1/video/rooms/{id}/files/{file}/link", post(link))
        .with_state(state)
}

/// Who sends or reads: the room's agent, a supervisor, or the customer.
struct Sender {
    role: &'static str,
    login: Option<String>,
    name: String,
}

/// The room and who asks, or why not: no credentials 401; a link of another call 403; an agent
/// who neither started the call nor supervises 403, or 404 when the interaction is not theirs.
async fn authorize(state: &State, headers: &HeaderMap, id: &str) -> Result<(VideoRoom, Sender), VideoError> {
    let id: Uuid = id.parse().map_err(|_| VideoError::BadRequest(format!("{id:?} is not a room id")))?;
    let mut conn = state.pool.acquire().await?;
    if let Some(link) = headers.get(LINK_HEADER) {
        let link = link.to_str().map_err(|_| VideoError::BadLink)?;
        if link.len() > 128 {
            return Err(VideoError::BadLink);
        }
        let room = store::room_by_link(&mut conn, link).await?.ok_or(VideoError::BadLink)?;
        if room.id != id {
            return Err(VideoError::Forbidden("this call link is for another call".into()));
        }
        let name = store::customer_name_of(&mut conn, room.interaction_id).await?;
        return Ok((room, Sender { role: "customer", login: None, name }));
    }
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = ops::auth::bearer(authorization, None)?;
    let claims = state.verifier.verify(token)?;
    let room = store::load_room(&mut conn, id).await?;
    let role = if claims.sub == room.agent {
        "agent"
    } else if claims.has_role("supervisor") {
        "supervisor"
    } else {
        return match store::participation(&mut conn, room.interaction_id, &claims.sub).await? {
            Some(_) => Err(VideoError::Forbidden(
                "only the agent who started the call, a supervisor and the customer send and read its files".into(),
            )),
            None => Err(VideoError::RoomNotFound(room.id.to_string())),
        };
    };
    let name = claims.name.clone().unwrap_or_else(|| claims.sub.clone());
    Ok((room, Sender { role, login: Some(claims.sub), name }))
}

fn file_json(file: &CallFile) -> Value {
    serde_json::to_value(file).expect("a call file serializes")
}

#[derive(Deserialize)]
pub(crate) struct UploadQuery {
    name: Option<String>,
    #[serde(default)]
    screenshot: bool,
}

async fn upload(
    Extract(state): Extract<Arc<State>>,
    Path(id): Path<String>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Result<Response, VideoError> {
    let (room, sender) = authorize(&state, request.headers(), &id).await?;
    let Query(query) = query.map_err(|e| VideoError::BadRequest(e.body_text()))?;
    if room.state == VideoRoomState::Ended {
        return Err(VideoError::RoomEnded);
    }
    let limit = if query.screenshot { SCREENSHOT_MAX_BYTES } else { MAX_BYTES };
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        metrics::counter!("switchboard_video_files_total", "outcome" => "too_large").increment(1);
        return Err(VideoError::TooLarge(limit));
    }
    let name = match query.name.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ if query.screenshot => format!("screenshot-{}.jpg", Utc::now().format("%Y%m%d-%H%M%S")),
        _ => return Err(VideoError::BadRequest("give the file's name: ?name=<file name>".into())),
    };
    let mime = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let over = Arc::new(AtomicBool::new(false));
    let body = {
        let over = over.clone();
        let mut seen = 0u64;
        request.into_body().into_data_stream().map(move |chunk| {
            let chunk = chunk.map_err(io::Error::other)?;
            seen += chunk.len() as u64;
            if seen > limit {
                over.store(true, Ordering::Relaxed);
                return Err(io::Error::other(format!("over the limit of {limit} bytes")));
            }
            Ok(chunk)
        })
    };
    let (file_id, gps) = if query.screenshot {
        let mut jpeg = Vec::new();
        let mut body = Box::pin(body);
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => jpeg.extend_from_slice(&chunk),
                Err(_) if over.load(Ordering::Relaxed) => return Err(VideoError::TooLarge(limit)),
                Err(e) => return Err(VideoError::Interrupted(format!("the upload broke off: {e}"))),
            }
        }
        let gps = {
            let mut conn = state.pool.acquire().await?;
            store::latest_locations(&mut conn, &[room.id]).await?.into_iter().next().map(|l| GpsStamp {
                lat: l.lat,
                lon: l.lon,
                at: l.at,
            })
        };
        let stamped = crate::exif::stamp(&jpeg, gps.as_ref()).map_err(|e| match e {
            ExifError::Png | ExifError::NotJpeg => VideoError::NotJpeg(format!("a screenshot must be a JPEG: {e}")),
            ExifError::Broken(_) => VideoError::BrokenImage(e.to_string()),
            ExifError::BadPosition(..) => VideoError::internal("a stored position does not fit EXIF", e),
        })?;
        let len = stamped.len() as u64;
        let id = send_to_fileserver(&state, &name, "image/jpeg", Some(len), reqwest::Body::from(stamped), &over, limit)
            .await?;
        (id, gps)
    } else {
        let id =
            send_to_fileserver(&state, &name, &mime, declared, reqwest::Body::wrap_stream(body), &over, limit).await?;
        (id, None)
    };
    let participant_id =
        state.rooms.participants(room.id).iter().find(|p| p.role.as_str() == sender.role).map(|p| p.id);
    let new = NewCallFile {
        file_id,
        room_id: room.id,
        interaction_id: room.interaction_id,
        participant_id,
        role: sender.role,
        agent_login: sender.login.as_deref(),
        sender_name: &sender.name,
        screenshot: query.screenshot,
        gps: gps.map(|g| store::FileGps { lat: g.lat, lon: g.lon }),
    };
    let mut tx = state.pool.begin().await?;
    let stored = store::insert_call_file(&mut tx, &new).await?;
    tx.commit().await?;
    crate::api::wake(&state, &stored.audience);
    let kind = if query.screenshot { "screenshot" } else { "file" };
    metrics::counter!("switchboard_video_files_total", "outcome" => kind).increment(1);
    tracing::info!(room = %room.id, file = %file_id, role = sender.role, size = stored.file.size, screenshot = query.screenshot, gps = gps.is_some(), "file sent in the call");
    let body = file_json(&stored.file);
    state.rooms.broadcast(room.id, json!({"type": "file", "file": body}), None);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Streams the body to the file server as a `chat` file; its id. Our own limit's cut-off is a
/// 413; the file server's refusals (its own limit, a quota, a bad name) are passed on.
async fn send_to_fileserver(
    state: &State,
    name: &str,
    mime: &str,
    length: Option<u64>,
    body: reqwest::Body,
    over: &AtomicBool,
    limit: u64,
) -> Result<Uuid, VideoError> {
    let recorder = &state.recorder;
    let mut url = reqwest::Url::parse(&format!("{}/api/v1/files", recorder.fileserver()))
        .map_err(|e| VideoError::internal("bad file server URL", e))?;
    url.query_pairs_mut().append_pair("name", name).append_pair("channel", "video");
    let token = recorder.service_token().map_err(|e| VideoError::internal("cannot sign the upload's token", e))?;
    let mut request = recorder.http().post(url).bearer_auth(token).header(reqwest::header::CONTENT_TYPE, mime);
    if let Some(length) = length {
        request = request.header(reqwest::header::CONTENT_LENGTH, length);
    }
    let response = match request.body(body).send().await {
        Ok(response) => response,
        Err(_) if over.load(Ordering::Relaxed) => {
            metrics::counter!("switchboard_video_files_total", "outcome" => "too_large").increment(1);
            return Err(VideoError::TooLarge(limit));
        }
        Err(e) => {
            metrics::counter!("switchboard_video_files_total", "outcome" => "interrupted").increment(1);
            return Err(VideoError::Interrupted(format!("the upload broke off: {e}")));
        }
    };
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or_default();
    if over.load(Ordering::Relaxed) {
        return Err(VideoError::TooLarge(limit));
    }
    if status.is_success() {
        return answer["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| VideoError::internal("the file server answered without an id", answer));
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return Err(VideoError::TooLarge(answer["error"]["limit"].as_u64().unwrap_or(limit).min(limit)));
    }
    let code = answer["error"]["code"].as_str().unwrap_or("fileserver").to_owned();
    let message = answer["error"]["message"].as_str().unwrap_or("the file server refused the file").to_owned();
    if status.is_client_error() || status == StatusCode::INSUFFICIENT_STORAGE {
        let status = if code == "upload_interrupted" { 400 } else { status.as_u16() };
        Err(VideoError::Fileserver { status, code, message })
    } else {
        Err(VideoError::Fileserver { status: 502, code: "fileserver".into(), message: format!("{status}: {message}") })
    }
}

/// The customer may read the call's files up to a day after it ended; agents always.
fn may_read(room: &VideoRoom, sender: &Sender) -> Result<(), VideoError> {
    if sender.role == "customer"
        && let Some(ended) = room.ended_at
        && Utc::now() - ended > READ_WINDOW
    {
        return Err(VideoError::LinkExpired((ended + READ_WINDOW).to_rfc3339()));
    }
    Ok(())
}

async fn list(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, VideoError> {
    let (room, sender) = authorize(&state, &headers, &id).await?;
    may_read(&room, &sender)?;
    let files = store::call_files(&mut *state.pool.acquire().await?, room.id).await?;
    Ok(Json(json!({"files": files.iter().map(file_json).collect::<Vec<_>>()})))
}

/// A signed link to one of the call's files, minted by the file server (`{url, expires_at,
/// ttl_s}`); 404 for a file that is not one of this call's.
async fn link(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    Path((id, file)): Path<(String, String)>,
) -> Result<Json<Value>, VideoError> {
    let (room, sender) = authorize(&state, &headers, &id).await?;
    may_read(&room, &sender)?;
    let file: Uuid = file.parse().map_err(|_| VideoError::NotFound(format!("file {file}")))?;
    let Some(file) = store::call_file(&mut *state.pool.acquire().await?, room.id, file).await? else {
        return Err(VideoError::NotFound(format!("file {file} of this call")));
    };
    let recorder = &state.recorder;
    let token = recorder.service_token().map_err(|e| VideoError::internal("cannot sign a token", e))?;
    let response = recorder
        .http()
        .post(format!("{}/api/v1/files/{}/link", recorder.fileserver(), file.file_id))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| VideoError::internal("the file server cannot be reached", e))?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        return Err(VideoError::internal("the file server refused a link", format!("{status}: {answer}")));
    }
    Ok(Json(json!({"url": answer["url"], "expires_at": answer["expires_at"], "file": file_json(&file)})))
}
