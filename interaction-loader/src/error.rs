//! The one mapping from what went wrong to what an integrator sees: an HTTP status and a body
//! `{"error": {"code": "...", "message": "..."}}` with a stable `code`. Internal causes are
//! logged, never sent. Also the extractors that turn axum's own rejections (bad query string,
//! bad JSON, bad path) into the same body, and hold every input to the rules of `ops::input`
//! (every string of the query, the body and the path to the loosest rule, then each field of
//! the decoded type to the rule of its kind): this is the one place input is checked.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ops::input::{self, InputError, Kind, Validate};
use schema::store::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

/// Error codes of the REST API (documented in the OpenAPI document).
pub mod code {
    pub const BAD_REQUEST: &str = "bad_request";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const INVALID_CREDENTIALS: &str = "invalid_credentials";
    pub const TOKEN_EXPIRED: &str = "token_expired";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NOT_FOUND: &str = "not_found";
    pub const CONFLICT: &str = "conflict";
    pub const INTERNAL: &str = "internal";
    pub const UNAVAILABLE: &str = "unavailable";
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `bad_request`, `unauthorized`, `invalid_credentials`,
    /// `token_expired`, `forbidden`, `not_found`, `conflict`, `internal`, `unavailable`;
    /// `invalid_flow` (422) for a bot flow that does not hold together.
    #[schema(example = "bad_request")]
    pub code: String,
    /// For people; may change.
    #[schema(example = "from must be before to")]
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code::BAD_REQUEST, message)
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code::NOT_FOUND, message)
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL, "internal error; it has been logged")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message } };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, id } => ApiError::not_found(format!("{what} {id} not found")),
            StoreError::Invalid(message) => ApiError::bad_request(message),
            StoreError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, code::CONFLICT, message),
            StoreError::Database(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                ApiError::new(StatusCode::CONFLICT, code::CONFLICT, "it conflicts with something that already exists")
            }
            StoreError::Database(sqlx::Error::PoolTimedOut) => {
                tracing::warn!("no database connection free in time");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code::UNAVAILABLE, "the database is busy; retry later")
            }
            other => {
                tracing::error!(error = %other, "store failure while serving an integrator");
                ApiError::internal()
            }
        }
    }
}

/// A field that breaks the input rules: 400 `bad_request` naming it.
impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from(e).into()
    }
}

/// `Query<T>` whose rejection is a [`ApiError`] naming what is wrong; every parameter is held
/// to the input rules.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Validate> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or_default();
        input::check_pairs(url::form_urlencoded::parse(raw.as_bytes()))?;
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => {
                value.validate()?;
                Ok(ApiQuery(value))
            }
            Err(e) => Err(query_error(e)),
        }
    }
}

fn query_error(e: QueryRejection) -> ApiError {
    let detail = e.body_text();
    let detail = detail.strip_prefix("Failed to deserialize query string: ").unwrap_or(&detail);
    ApiError::bad_request(format!("bad query parameters: {detail}"))
}

/// `Json<T>` whose rejection is a [`ApiError`]; every string of the body (keys included) is
/// held to the input rules, then each field of `T` to the rule of its kind.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Validate> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(value)) => value,
            Err(e) => return Err(json_error(e)),
        };
        input::check_json("", &value)?;
        let decoded: T = serde_json::from_value(value).map_err(|e| {
            ApiError::bad_request(format!(
                "bad JSON body: Failed to deserialize the JSON body into the target type: {e}"
            ))
        })?;
        decoded.validate()?;
        Ok(ApiJson(decoded))
    }
}

fn json_error(e: JsonRejection) -> ApiError {
    match e {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::bad_request("send the body as JSON with `Content-Type: application/json`")
        }
        other => ApiError::bad_request(format!("bad JSON body: {}", other.body_text())),
    }
}

/// `Path<T>` whose rejection is a [`ApiError`] (a malformed id is a 400, not a 404). Every
/// path parameter is an id, a login or a queue name: each is held to [`Kind::Key`].
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))?;
        for (name, value) in &raw {
            input::check(name, Kind::Key, value)?;
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(e) => Err(path_error(e)),
        }
    }
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::bad_request(format!("bad path: {}", e.body_text()))
}
