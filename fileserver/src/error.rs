//! The one mapping from what goes wrong to an HTTP answer: a status, a stable `code` and a
//! human `message`, as `{"error":{"code","message"}}`. Internal causes are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ops::auth::AuthError;
use schema::store::StoreError;

use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, a bad one or an expired one.
    #[error("{}", unauthorized(.0))]
    Unauthorized(#[from] AuthError),
    /// A valid token whose roles may not use the file server.
    #[error("{0}")]
    Forbidden(String),
    /// A signed link whose signature does not match.
    #[error("the link's signature is not valid")]
    BadSignature,
    /// A signed link past its expiry.
    #[error("the link expired at {0} (unix time)")]
    LinkExpired(i64),
    #[error("{0}")]
    BadRequest(&'static str, String),
    #[error("file {0} not found")]
    NotFound(String),
    /// Over the limit: `limit` bytes, for `scope` (a channel or the hub's own maximum).
    #[error("the file is larger than {limit} bytes ({}), the limit {scope}", human(*limit))]
    TooLarge { limit: u64, scope: String, body_unread: bool },
    /// The kind's disk quota would be passed.
    #[error("the quota of {kind} files is full: {used} of {quota} bytes used, this file needs {size} more")]
    QuotaExceeded { kind: schema::domain::FileKind, quota: u64, used: u64, size: u64, body_unread: bool },
    #[error("Range not satisfiable: the file has {0} bytes")]
    RangeNotSatisfiable(u64),
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    #[error("internal error")]
    Internal(String),
}

fn unauthorized(e: &AuthError) -> String {
    match e {
        AuthError::Missing => "no bearer token: send `Authorization: Bearer <jwt>`, or use a signed link".into(),
        other => other.to_string(),
    }
}

/// `52428800` → `50 MB`, `1000` → `1000 bytes`.
pub fn human(bytes: u64) -> String {
    const MB: u64 = schema::domain::MB;
    if bytes >= MB && bytes.is_multiple_of(MB) { format!("{} MB", bytes / MB) } else { format!("{bytes} bytes") }
}

impl ApiError {
    pub fn internal(what: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{what}");
        ApiError::Internal(what.to_owned())
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized(AuthError::Missing) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Unauthorized(AuthError::Expired) => (StatusCode::UNAUTHORIZED, "token_expired"),
            ApiError::Unauthorized(AuthError::Invalid(_)) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::BadSignature => (StatusCode::FORBIDDEN, "bad_signature"),
            ApiError::LinkExpired(_) => (StatusCode::FORBIDDEN, "link_expired"),
            ApiError::BadRequest(code, _) => (StatusCode::BAD_REQUEST, code),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "file_too_large"),
            ApiError::QuotaExceeded { .. } => (StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded"),
            ApiError::RangeNotSatisfiable(_) => (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable"),
            ApiError::Interrupted(_) => (StatusCode::BAD_REQUEST, "upload_interrupted"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { id, .. } => ApiError::NotFound(id),
            StoreError::Invalid(m) => ApiError::BadRequest("invalid", m),
            other => ApiError::internal("database error", other),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        ApiError::internal("storage error", e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut error = serde_json::json!({ "code": code, "message": self.to_string() });
        match &self {
            ApiError::TooLarge { limit, .. } => error["limit"] = (*limit).into(),
            ApiError::LinkExpired(exp) => error["expired_at"] = (*exp).into(),
            ApiError::QuotaExceeded { kind, quota, used, .. } => {
                error["kind"] = kind.as_str().into();
                error["quota"] = (*quota).into();
                error["used"] = (*used).into();
            }
            _ => {}
        }
        let mut response =
            (status, [(header::CONTENT_TYPE, "application/json")], serde_json::json!({ "error": error }).to_string())
                .into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RangeNotSatisfiable(size) => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            // The rest of the body is not read: the connection cannot carry another request.
            ApiError::TooLarge { body_unread: true, .. }
            | ApiError::QuotaExceeded { body_unread: true, .. }
            | ApiError::Interrupted(_) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(50 * schema::domain::MB), "50 MB");
        assert_eq!(human(1000), "1000 bytes");
    }
}
