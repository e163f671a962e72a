//! The one mapping from what goes wrong to what a client sees: a stable `code` and a human
//! `message`, as an `error` frame on the signalling socket or `{"error":{"code","message"}}`
//! with a status over REST. Internal causes are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ops::auth::AuthError;
use schema::store::StoreError;

use crate::sfu::SfuError;

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("{0}")]
    BadFrame(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{}", unauthorized(.0))]
    Unauthorized(#[from] AuthError),
    #[error("this call link is not valid")]
    BadLink,
    #[error("this call link expired at {0}")]
    LinkExpired(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("video room {0} not found")]
    RoomNotFound(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("this call has ended")]
    RoomEnded,
    #[error("the call already has three participants")]
    RoomFull,
    #[error("this node hosts {0} calls, its limit; try again later")]
    Capacity(usize),
    #[error("the call is hosted by video node {node}: join at {url}")]
    OtherNode { node: String, url: String },
    #[error("send a join frame first")]
    NotJoined,
    #[error("{0}")]
    BadSdp(String),
    #[error("{0}")]
    BadCandidate(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadSchedule(String),
    #[error("sending call links by SMS is not set up on this hub ([video.sms])")]
    SmsOff,
    #[error("{0}")]
    Sms(#[from] crate::sms::SmsError),
    #[error("the file is larger than {0} bytes, the limit of a file sent in a call")]
    TooLarge(u64),
    #[error("{0}")]
    NotJpeg(String),
    #[error("{0}")]
    BrokenImage(String),
    #[error("{0}")]
    Interrupted(String),
    /// The file server refused the upload: its status, code and message, passed on.
    #[error("{message}")]
    Fileserver { status: u16, code: String, message: String },
    #[error("internal error")]
    Internal(String),
}

fn unauthorized(e: &AuthError) -> String {
    match e {
        AuthError::Missing => "no bearer token: send `Authorization: Bearer <jwt>`".into(),
        other => other.to_string(),
    }
}

impl VideoError {
    pub fn internal(what: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{what}");
        VideoError::Internal(what.to_owned())
    }

    /// The stable code of the error (docs/video.md lists them).
    pub fn code(&self) -> &'static str {
        match self {
            VideoError::BadFrame(_) => "bad_frame",
            VideoError::BadRequest(_) => "bad_request",
            VideoError::Unauthorized(AuthError::Expired) => "token_expired",
            VideoError::Unauthorized(AuthError::Invalid(_)) => "invalid_token",
            VideoError::Unauthorized(AuthError::Missing) | VideoError::BadLink => "unauthorized",
            VideoError::LinkExpired(_) => "link_expired",
            VideoError::Forbidden(_) => "forbidden",
            VideoError::RoomNotFound(_) => "room_not_found",
            VideoError::NotFound(_) => "not_found",
            VideoError::RoomEnded => "room_ended",
            VideoError::RoomFull => "room_full",
            VideoError::Capacity(_) => "capacity",
            VideoError::OtherNode { .. } => "room_on_other_node",
            VideoError::NotJoined => "not_joined",
            VideoError::BadSdp(_) => "bad_sdp",
            VideoError::BadCandidate(_) => "bad_candidate",
            VideoError::Conflict(_) => "conflict",
            VideoError::BadSchedule(_) => "bad_schedule",
            VideoError::SmsOff => "sms_off",
            VideoError::Sms(crate::sms::SmsError::Refused { .. }) => "sms_refused",
            VideoError::Sms(_) => "sms_unavailable",
            VideoError::TooLarge(_) => "file_too_large",
            VideoError::NotJpeg(_) => "not_jpeg",
            VideoError::BrokenImage(_) => "broken_jpeg",
            VideoError::Interrupted(_) => "upload_interrupted",
            VideoError::Fileserver { .. } => "fileserver",
            VideoError::Internal(_) => "internal",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            VideoError::BadFrame(_)
            | VideoError::BadRequest(_)
            | VideoError::BadSdp(_)
            | VideoError::BadCandidate(_) => StatusCode::BAD_REQUEST,
            VideoError::Unauthorized(_) | VideoError::BadLink => StatusCode::UNAUTHORIZED,
            VideoError::Forbidden(_) => StatusCode::FORBIDDEN,
            VideoError::RoomNotFound(_) | VideoError::NotFound(_) => StatusCode::NOT_FOUND,
            VideoError::RoomEnded | VideoError::LinkExpired(_) => StatusCode::GONE,
            VideoError::RoomFull | VideoError::Conflict(_) | VideoError::NotJoined => StatusCode::CONFLICT,
            VideoError::OtherNode { .. } => StatusCode::MISDIRECTED_REQUEST,
            VideoError::Capacity(_) | VideoError::SmsOff => StatusCode::SERVICE_UNAVAILABLE,
            VideoError::Sms(crate::sms::SmsError::Refused { .. }) | VideoError::BadSchedule(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            VideoError::Sms(_) => StatusCode::BAD_GATEWAY,
            VideoError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            VideoError::NotJpeg(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            VideoError::BrokenImage(_) | VideoError::Interrupted(_) => StatusCode::BAD_REQUEST,
            VideoError::Fileserver { status, .. } => StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
            VideoError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` frame of the signalling socket; `room_on_other_node` also names the node and
    /// the signalling URL to join at.
    pub fn frame(&self) -> serde_json::Value {
        let mut frame = serde_json::json!({"type": "error", "code": self.code(), "message": self.to_string()});
        if let VideoError::OtherNode { node, url } = self {
            frame["node"] = node.as_str().into();
            frame["url"] = url.as_str().into();
        }
        frame
    }
}

impl From<StoreError> for VideoError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what: "video room", id } => VideoError::RoomNotFound(id),
            StoreError::NotFound { what, id } => VideoError::NotFound(format!("{what} {id}")),
            StoreError::Invalid(m) => VideoError::BadRequest(m),
            StoreError::Conflict(m) => VideoError::Conflict(m),
            StoreError::Forbidden(m) => VideoError::Forbidden(m),
            other => VideoError::internal("database error", other),
        }
    }
}

impl From<crate::sms::PhoneError> for VideoError {
    fn from(e: crate::sms::PhoneError) -> Self {
        VideoError::BadRequest(e.to_string())
    }
}

impl From<crate::survey::SurveyError> for VideoError {
    fn from(e: crate::survey::SurveyError) -> Self {
        VideoError::BadRequest(e.to_string())
    }
}

impl From<sqlx::Error> for VideoError {
    fn from(e: sqlx::Error) -> Self {
        VideoError::internal("database error", e)
    }
}

impl From<SfuError> for VideoError {
    fn from(e: SfuError) -> Self {
        match e {
            SfuError::Engine(crate::sfu::engine::EngineError::BadSdp(m)) => VideoError::BadSdp(m),
            SfuError::Engine(crate::sfu::engine::EngineError::BadCandidate(m)) => VideoError::BadCandidate(m),
            SfuError::RoomFull => VideoError::RoomFull,
            other => VideoError::internal("SFU error", other),
        }
    }
}

impl IntoResponse for VideoError {
    fn into_response(self) -> Response {
        let code = match &self {
            VideoError::Fileserver { code, .. } => code.clone(),
            other => other.code().to_owned(),
        };
        let mut body = serde_json::json!({"error": {"code": code, "message": self.to_string()}});
        if let VideoError::TooLarge(limit) = &self {
            body["error"]["limit"] = (*limit).into();
        }
        let mut response =
            (self.status(), [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        if matches!(self, VideoError::Unauthorized(_)) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, VideoError::TooLarge(_)) {
            // the rest of the body is not read
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
