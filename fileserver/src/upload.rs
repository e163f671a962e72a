//! `POST /api/v1/files`: a raw body or a `multipart/form-data` `file` part, streamed to the
//! store through a counter and a SHA-256, refused as soon as it is known to be over the limit.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use ops::auth::Claims;
use schema::domain::{Channel, FileKind, FileRef};
use schema::store::{self, NewFile, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::names::{DEFAULT_MIME, clean_mime, clean_name};
use crate::storage::StorageError;

/// What a multipart body may carry beyond the file itself (boundaries, part headers, small
/// fields) before its `Content-Length` alone gets it refused.
pub const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// An upload that sends nothing for this long is abandoned (and leaves nothing behind).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize)]
pub(crate) struct UploadQuery {
    name: Option<String>,
    channel: Option<String>,
    account_id: Option<String>,
    /// `chat` (default) or `recording` (the video nodes', role `service` or `admin`).
    kind: Option<String>,
}

/// The reply to a stored upload.
#[derive(Debug, Serialize)]
pub(crate) struct Uploaded {
    id: Uuid,
    name: String,
    mime: String,
    size: i64,
    sha256: String,
    url: String,
}

/// The limit that applies and what it is named after in errors.
struct Limit {
    bytes: u64,
    scope: String,
}

pub(crate) async fn upload(
    State(state): State<AppState>,
    query: Result<Query<UploadQuery>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let claims = state.authenticate(request.headers())?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest("invalid_query", e.body_text()))?;
    let (channel, account_id) = channel_and_account(&state, &query).await?;
    let kind = kind_of(&claims, query.kind.as_deref())?;
    let limit = limit_for(channel, state.config.max_upload_bytes);

    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let multipart = content_type.trim_start().to_ascii_lowercase().starts_with("multipart/form-data");
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(length) = declared {
        let allowed = if multipart { limit.bytes.saturating_add(MULTIPART_OVERHEAD) } else { limit.bytes };
        if length > allowed {
            metrics::counter!("fileserver_uploads_total", "outcome" => "too_large").increment(1);
            return Err(ApiError::TooLarge { limit: limit.bytes, scope: limit.scope, body_unread: true });
        }
        // over the kind's quota already: refused before the body is read
        if let Some(quota) = state.config.quota_of(kind) {
            let used = used_bytes(&state, kind).await?;
            if used.saturating_add(length) > quota {
                let used = count_refusal(&state, kind).await.unwrap_or(used);
                return Err(refused(kind, quota, used, length, true));
            }
        }
    }

    if multipart {
        let mut form = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::BadRequest("invalid_multipart", e.body_text()))?;
        loop {
            let field =
                form.next_field().await.map_err(|e| ApiError::BadRequest("invalid_multipart", e.body_text()))?;
            let Some(field) = field else {
                return Err(ApiError::BadRequest("missing_file", "the multipart body has no part named `file`".into()));
            };
            if field.name() != Some("file") {
                continue;
            }
            let name = query.name.as_deref().or(field.file_name()).map(str::to_owned);
            let name = require_name(name.as_deref())?;
            let mime = field.content_type().and_then(clean_mime).unwrap_or_else(|| DEFAULT_MIME.to_owned());
            let body = field.map(|chunk| chunk.map_err(io::Error::other));
            return store_file(&state, &claims, name, mime, account_id, kind, limit, body).await;
        }
    }

    let name = require_name(query.name.as_deref())?;
    let mime = if content_type.trim().is_empty() {
        DEFAULT_MIME.to_owned()
    } else {
        clean_mime(content_type).ok_or_else(|| {
            ApiError::BadRequest("invalid_mime", format!("Content-Type {content_type:?} is not a MIME type"))
        })?
    };
    let body = request.into_body().into_data_stream().map(|chunk| chunk.map_err(io::Error::other));
    store_file(&state, &claims, name, mime, account_id, kind, limit, body).await
}

/// The kind asked for: `chat` unless `recording`, which only the hub's own services (and
/// admins) may store.
fn kind_of(claims: &Claims, raw: Option<&str>) -> Result<FileKind, ApiError> {
    let kind = match raw.map(str::trim) {
        None | Some("") => return Ok(FileKind::Chat),
        Some(raw) => raw.parse::<FileKind>().map_err(|_| {
            ApiError::BadRequest("invalid_kind", format!("unknown kind {raw:?}: use chat or recording"))
        })?,
    };
    if kind == FileKind::Recording && !claims.effective_roles().iter().any(|r| r == "service" || r == "admin") {
        return Err(ApiError::Forbidden("only the hub's video nodes (role service) store recordings".into()));
    }
    Ok(kind)
}

async fn used_bytes(state: &AppState, kind: FileKind) -> Result<u64, ApiError> {
    let mut conn = state.pool.acquire().await.map_err(|e| ApiError::internal("database unavailable", e))?;
    let usage = store::file_usage(&mut conn).await?;
    Ok(usage.iter().find(|u| u.kind == kind).map_or(0, |u| u.bytes.max(0) as u64))
}

async fn count_refusal(state: &AppState, kind: FileKind) -> Result<u64, ApiError> {
    let mut conn = state.pool.acquire().await.map_err(|e| ApiError::internal("database unavailable", e))?;
    Ok(store::count_file_refusal(&mut conn, kind).await?.max(0) as u64)
}

/// The refusal of an upload over its kind's quota: counted (metric), logged, answered.
fn refused(kind: FileKind, quota: u64, used: u64, size: u64, body_unread: bool) -> ApiError {
    metrics::counter!("fileserver_uploads_total", "outcome" => "over_quota").increment(1);
    metrics::counter!("fileserver_quota_refusals_total", "kind" => kind.as_str()).increment(1);
    tracing::warn!(kind = kind.as_str(), quota, used, size, "upload refused: the kind's disk quota is full");
    ApiError::QuotaExceeded { kind, quota, used, size, body_unread }
}

fn require_name(raw: Option<&str>) -> Result<String, ApiError> {
    match raw {
        None => Err(ApiError::BadRequest(
            "missing_name",
            "give the file's name: ?name=<file name> (or a filename in the multipart part)".into(),
        )),
        Some(raw) => clean_name(raw)
            .ok_or_else(|| ApiError::BadRequest("invalid_name", format!("{raw:?} is not a usable file name"))),
    }
}

/// The channel whose limit applies: the one named, else the account's. Both named must agree.
async fn channel_and_account(
    state: &AppState,
    query: &UploadQuery,
) -> Result<(Option<Channel>, Option<Uuid>), ApiError> {
    let channel = match query.channel.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(raw.parse::<Channel>().map_err(|_| {
            let known: Vec<&str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
            ApiError::BadRequest("invalid_channel", format!("unknown channel {raw:?}: use one of {}", known.join(", ")))
        })?),
    };
    let account_id = match query.account_id.as_deref().map(str::trim) {
        None | Some("") => return Ok((channel, None)),
        Some(raw) => Uuid::parse_str(raw)
            .map_err(|_| ApiError::BadRequest("invalid_account_id", format!("{raw:?} is not a UUID")))?,
    };
    let mut conn = state.pool.acquire().await.map_err(|e| ApiError::internal("database unavailable", e))?;
    let account = match store::get_account(&mut conn, account_id).await {
        Ok(account) => account,
        Err(StoreError::NotFound { .. }) => {
            return Err(ApiError::BadRequest("unknown_account", format!("account {account_id} does not exist")));
        }
        Err(e) => return Err(e.into()),
    };
    match channel {
        Some(named) if named != account.channel => Err(ApiError::BadRequest(
            "channel_mismatch",
            format!("account {account_id} is a {} account, not {named}", account.channel),
        )),
        _ => Ok((Some(account.channel), Some(account_id))),
    }
}

fn limit_for(channel: Option<Channel>, hub_max: u64) -> Limit {
    match channel.and_then(|c| c.max_file_bytes().map(|max| (c, max))) {
        Some((channel, max)) if max < hub_max => Limit { bytes: max, scope: format!("for {channel}") },
        _ => Limit { bytes: hub_max, scope: "of this hub (fileserver.max_upload_bytes)".into() },
    }
}

#[allow(clippy::too_many_arguments)]
async fn store_file<S>(
    state: &AppState,
    claims: &Claims,
    name: String,
    mime: String,
    account_id: Option<Uuid>,
    kind: FileKind,
    limit: Limit,
    body: S,
) -> Result<Response, ApiError>
where
    S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
{
    let id = Uuid::new_v4();
    let key = id.to_string();
    let mut tally = Tally::new(body, limit.bytes, IDLE_TIMEOUT);
    match state.storage.put(&key, &mut tally).await {
        Ok(_) => {}
        Err(StorageError::Body(_)) if tally.over => {
            metrics::counter!("fileserver_uploads_total", "outcome" => "too_large").increment(1);
            return Err(ApiError::TooLarge { limit: limit.bytes, scope: limit.scope, body_unread: true });
        }
        Err(StorageError::Body(e)) => {
            metrics::counter!("fileserver_uploads_total", "outcome" => "interrupted").increment(1);
            tracing::info!(error = %e, "upload interrupted");
            return Err(ApiError::Interrupted(e.to_string()));
        }
        Err(e) => return Err(e.into()),
    }
    let size = tally.size;
    let sha256 = hex::encode(tally.hasher.finalize());
    if size == 0 {
        let _ = state.storage.delete(&key).await;
        return Err(ApiError::BadRequest("empty_file", "the file is empty".into()));
    }
    let new = NewFile {
        id,
        name,
        mime,
        size: size as i64,
        sha256,
        storage_key: key.clone(),
        account_id,
        uploaded_by: Some(claims.sub.clone()),
        kind,
    };
    let quota = state.config.quota_of(kind);
    let recorded = async {
        let mut conn = state.pool.acquire().await.map_err(StoreError::from)?;
        store::insert_file_within(&mut conn, &new, quota.map(|q| q as i64)).await
    }
    .await;
    let file = match recorded {
        Ok(Ok(file)) => file,
        Ok(Err(over)) => {
            if let Err(gone) = state.storage.delete(&key).await {
                tracing::warn!(key = %key, error = %gone, "cannot remove the bytes of an upload over its quota");
            }
            return Err(refused(kind, quota.unwrap_or_default(), over.used.max(0) as u64, size, false));
        }
        Err(e) => {
            if let Err(gone) = state.storage.delete(&key).await {
                tracing::warn!(key = %key, error = %gone, "cannot remove the bytes of an unrecorded upload");
            }
            return Err(e.into());
        }
    };
    metrics::counter!("fileserver_uploads_total", "outcome" => "stored").increment(1);
    metrics::counter!("fileserver_uploaded_bytes_total").increment(size);
    tracing::info!(file = %file.id, size, kind = kind.as_str(), by = %claims.sub, "file stored");
    let url = FileRef::url_for(file.id);
    let reply = Uploaded { id: file.id, name: file.name, mime: file.mime, size: file.size, sha256: file.sha256, url };
    Ok((StatusCode::CREATED, [(header::LOCATION, reply.url.clone())], Json(reply)).into_response())
}

/// Counts and hashes what passes; the chunk that crosses the limit is not passed on but turned
/// into an error, so the store aborts and keeps nothing. So is a body that stalls for
/// [`IDLE_TIMEOUT`].
struct Tally<S> {
    inner: S,
    hasher: Sha256,
    size: u64,
    limit: u64,
    over: bool,
    idle_timeout: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl<S> Tally<S> {
    fn new(inner: S, limit: u64, idle_timeout: Duration) -> Self {
        let idle = Box::pin(tokio::time::sleep(idle_timeout));
        Tally { inner, hasher: Sha256::new(), size: 0, limit, over: false, idle_timeout, idle }
    }
}

impl<S> Stream for Tally<S>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.over {
            return Poll::Ready(None);
        }
        let next = match self.inner.poll_next_unpin(cx) {
            Poll::Ready(next) => next,
            Poll::Pending => {
                futures::ready!(self.idle.as_mut().poll(cx));
                return Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no data for {:?}", self.idle_timeout),
                ))));
            }
        };
        Poll::Ready(match next {
            Some(Ok(chunk)) => {
                let deadline = tokio::time::Instant::now() + self.idle_timeout;
                self.idle.as_mut().reset(deadline);
                self.size += chunk.len() as u64;
                if self.size > self.limit {
                    self.over = true;
                    Some(Err(io::Error::other(format!("over the limit of {} bytes", self.limit))))
                } else {
                    self.hasher.update(&chunk);
                    Some(Ok(chunk))
                }
            }
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lower_of_the_channel_and_hub_limits_applies() {
        let mb = schema::domain::MB;
        let l = limit_for(Some(Channel::Telegram), 100 * mb);
        assert_eq!((l.bytes, l.scope.as_str()), (50 * mb, "for telegram"));
        assert_eq!(limit_for(Some(Channel::Vk), 100 * mb).bytes, 100 * mb);
        assert_eq!(limit_for(Some(Channel::Webchat), 100 * mb).bytes, 100 * mb);
        assert_eq!(limit_for(None, 7).bytes, 7);
        assert_eq!(limit_for(Some(Channel::Telegram), mb).bytes, mb);
    }

    #[tokio::test]
    async fn the_tally_hashes_counts_and_cuts_off() {
        let chunks = || futures::stream::iter([Ok(Bytes::from_static(b"abc")), Ok(Bytes::from_static(b"def"))]);
        let mut tally = Tally::new(chunks(), 6, IDLE_TIMEOUT);
        while let Some(chunk) = tally.next().await {
            chunk.unwrap();
        }
        assert_eq!(tally.size, 6);
        assert_eq!(hex::encode(tally.hasher.finalize()), hex::encode(Sha256::digest(b"abcdef")));

        let mut tally = Tally::new(chunks(), 5, IDLE_TIMEOUT);
        assert!(tally.next().await.unwrap().is_ok());
        assert!(tally.next().await.unwrap().is_err());
        assert!(tally.over);
        assert!(tally.next().await.is_none());
    }

    #[tokio::test]
    async fn a_stalled_body_times_out() {
        let stalled = futures::stream::iter([Ok(Bytes::from_static(b"abc"))]).chain(futures::stream::pending());
        let mut tally = Tally::new(Box::pin(stalled), 100, Duration::from_millis(50));
        assert!(tally.next().await.unwrap().is_ok());
        let err = tally.next().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
