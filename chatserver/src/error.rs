//! The one mapping from what went wrong to what an agent client sees: a stable `code` and a
//! message for people. Internal causes are logged, never sent.

use schema::store::StoreError;

/// Error codes of the agent API (documented in `docs/agent-api.md`).
pub mod code {
    pub const BAD_REQUEST: &str = "bad_request";
    pub const UNKNOWN_COMMAND: &str = "unknown_command";
    pub const HELLO_REQUIRED: &str = "hello_required";
    pub const INTERACTION_NOT_FOUND: &str = "interaction_not_found";
    pub const MESSAGE_NOT_FOUND: &str = "message_not_found";
    pub const NOT_FOUND: &str = "not_found";
    pub const CONFLICT: &str = "conflict";
    pub const FORBIDDEN: &str = "forbidden";
    pub const UNSUPPORTED_BY_CHANNEL: &str = "unsupported_by_channel";
    /// A file over the channel's limit for its kind, refused before anything is queued.
    pub const FILE_TOO_LARGE: &str = "file_too_large";
    /// A free-form message on WhatsApp more than 24 hours after the customer's last message
    /// (only a template may go out then); refused before anything is queued.
    pub const OUTSIDE_SERVICE_WINDOW: &str = "outside_service_window";
    pub const VIDEO_UNAVAILABLE: &str = "video_unavailable";
    /// An external bot writing into a conversation it no longer owns: a person took it, it was
    /// handed off or closed (docs/bots.md, the fence).
    pub const BOT_FENCED: &str = "bot_fenced";
    /// `interaction.set_field` named a key no field definition has.
    pub const UNKNOWN_FIELD: &str = "unknown_field";
    /// `interaction.set_field` gave a value its field's definition refuses.
    pub const INVALID_FIELD_VALUE: &str = "invalid_field_value";
    pub const INTERNAL: &str = "internal";
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(code::BAD_REQUEST, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(code::FORBIDDEN, message)
    }

    pub fn interaction_not_found(id: impl std::fmt::Display) -> Self {
        Self::new(code::INTERACTION_NOT_FOUND, format!("no interaction {id} is assigned to you"))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what: "interaction", id } => ApiError::interaction_not_found(id),
            StoreError::NotFound { what: "message", id } => {
                ApiError::new(code::MESSAGE_NOT_FOUND, format!("no message {id} of yours"))
            }
            StoreError::NotFound { what, id } => ApiError::new(code::NOT_FOUND, format!("{what} {id} not found")),
            StoreError::Invalid(message) => ApiError::bad_request(message),
            StoreError::Conflict(message) => ApiError::new(code::CONFLICT, message),
            StoreError::Forbidden(message) => ApiError::forbidden(message),
            other => {
                tracing::error!(error = %other, "store failure while serving an agent");
                ApiError::new(code::INTERNAL, "internal error; it has been logged")
            }
        }
    }
}

/// A field that breaks the input rules (`ops::input`): `bad_request` naming it.
impl From<ops::input::InputError> for ApiError {
    fn from(e: ops::input::InputError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from(e).into()
    }
}
