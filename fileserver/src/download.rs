//! `GET`/`HEAD /api/v1/files/{id}` (a token or a valid signed link) and
//! `POST /api/v1/files/{id}/link` (a token).

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use schema::domain::FileRef;
use schema::store::{self, StoredFile};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::names::content_disposition;
use crate::range::{self, Ranged};
use crate::signing::LinkError;
use crate::storage::StorageError;

#[derive(Debug, Deserialize)]
pub(crate) struct DownloadQuery {
    exp: Option<String>,
    sig: Option<String>,
}

pub(crate) async fn download(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<DownloadQuery>, QueryRejection>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = Uuid::parse_str(&id).ok();
    let query = query.map(|Query(q)| q).unwrap_or(DownloadQuery { exp: None, sig: None });
    // a signed link was minted under the access rule; a token is checked against it here
    let mut reader = None;
    match (query.exp, query.sig) {
        (None, None) => {
            reader = Some(state.authenticate(&headers)?);
        }
        (Some(exp), Some(sig)) => {
            let id = id.ok_or(ApiError::BadSignature)?;
            state.signer.verify(id, &exp, &sig, Utc::now().timestamp()).map_err(|e| match e {
                LinkError::BadSignature => ApiError::BadSignature,
                LinkError::Expired { exp } => ApiError::LinkExpired(exp),
            })?;
        }
        // half a signed link
        _ => return Err(ApiError::BadSignature),
    }
    let id = id.ok_or_else(|| ApiError::NotFound("(not a UUID)".into()))?;
    let file = load(&state, id).await?;
    if let Some(claims) = &reader {
        state.may_read(claims, id).await?;
    }
    respond(&state, &file, &method, &headers).await
}

async fn load(state: &AppState, id: Uuid) -> Result<StoredFile, ApiError> {
    let mut conn = state.pool.acquire().await.map_err(|e| ApiError::internal("database unavailable", e))?;
    Ok(store::get_file(&mut conn, id).await?)
}

async fn respond(
    state: &AppState,
    file: &StoredFile,
    method: &Method,
    request: &HeaderMap,
) -> Result<Response, ApiError> {
    let size = u64::try_from(file.size).unwrap_or(0);
    let etag = format!("\"{}\"", file.sha256);
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, header_value(&etag)?);
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=0, must-revalidate"));

    let if_none_match = request.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    if if_none_match.is_some_and(|v| v.trim() == "*" || v.split(',').any(|tag| tag.trim() == etag)) {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }

    headers.insert(header::CONTENT_TYPE, header_value(&file.mime)?);
    headers.insert(header::CONTENT_DISPOSITION, header_value(&content_disposition(&file.name))?);
    // the type is the uploader's word: never let a browser second-guess it into HTML
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));

    // If-Range with another validator: the client's copy is stale, send it all.
    let if_range_ok = request.get(header::IF_RANGE).and_then(|v| v.to_str().ok()).is_none_or(|v| v.trim() == etag);
    let range_header = request.get(header::RANGE).and_then(|v| v.to_str().ok()).filter(|_| if_range_ok);
    let (status, range) = match range::resolve(range_header, size) {
        Ranged::Full => (StatusCode::OK, None),
        Ranged::Partial(r) => {
            headers.insert(header::CONTENT_RANGE, header_value(&range::content_range(&r, size))?);
            (StatusCode::PARTIAL_CONTENT, Some(r))
        }
        Ranged::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable(size)),
    };
    let length = range.as_ref().map_or(size, |r| r.end - r.start);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));

    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        let stream = state.storage.get(&file.storage_key, range).await.map_err(|e| match e {
            StorageError::NotFound(_) => ApiError::internal("a recorded file's bytes are missing", e),
            other => other.into(),
        })?;
        Body::from_stream(stream)
    };
    metrics::counter!("fileserver_downloads_total", "status" => status.as_str().to_owned()).increment(1);
    Ok((status, headers, body).into_response())
}

fn header_value(s: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(s).map_err(|e| ApiError::internal("a stored value cannot be a header", e))
}

#[derive(Debug, Deserialize)]
pub(crate) struct LinkQuery {
    ttl_s: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Link {
    url: String,
    expires_at: DateTime<Utc>,
    /// The lifetime granted (the one asked for, capped by `fileserver.link_max_ttl_s`).
    ttl_s: u64,
}

pub(crate) async fn link(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<LinkQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<Link>, ApiError> {
    let claims = state.authenticate(&headers)?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest("invalid_query", e.body_text()))?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound(id.clone()))?;
    let ttl = query.ttl_s.unwrap_or(state.config.link_ttl_s);
    if ttl == 0 {
        return Err(ApiError::BadRequest("invalid_ttl", "ttl_s must be at least 1".into()));
    }
    let ttl = ttl.min(state.config.link_max_ttl_s);
    load(&state, id).await?;
    state.may_read(&claims, id).await?;
    let now = Utc::now();
    let exp = now.timestamp() + ttl as i64;
    let expires_at = DateTime::from_timestamp(exp, 0).unwrap_or(now);
    let url = format!("{}?{}", FileRef::url_for(id), state.signer.query(id, exp));
    Ok(Json(Link { url, expires_at, ttl_s: ttl }))
}
