//! Dead letters: the platform updates a connector could never store, parked with their raw
//! payload so the account's other customers were not held back. An administrator lists them
//! and asks for a replay after a fix; the account's leading connector replays it within seconds
//! and the letter becomes `replayed` (or `parked` again, with the new error).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use schema::store;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use super::{page_limit, parse_uuid, split_page};
use crate::AppState;
use crate::auth::{Principal, Scope};
use crate::cursor;
use crate::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use crate::model::{DeadLetter, DeadLetterPage};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterParams {
    /// Page size, 1 to `loader.max_page_size`; 100 when absent.
    #[param(value_type = Option<u32>, minimum = 1)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

ops::no_strings!(DeadLetterParams);

/// The account's dead letters, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/accounts/{id}/dead-letters",
    tag = "admin",
    params(("id" = Uuid, Path, description = "Account id"), DeadLetterParams),
    responses(
        (status = 200, description = "One page", body = DeadLetterPage),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn list(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<DeadLetterParams>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let account = parse_uuid("id", &id)?;
    let limit = page_limit(params.limit.as_deref(), state.config.max_page_size)?;
    let before = params.cursor.as_deref().map(|c| cursor::parse_id("d", c)).transpose()?;
    let mut conn = state.pool.acquire().await?;
    store::get_account(&mut conn, account).await?;
    let rows = store::dead_letters(&mut conn, account, before, limit + 1).await?;
    let (rows, more) = split_page(rows, limit);
    let next_cursor = if more { rows.last().map(|r| cursor::id("d", r.id)) } else { None };
    Ok(Json(DeadLetterPage { items: rows.into_iter().map(DeadLetter::from).collect(), next_cursor }))
}

/// Asks the account's connector to replay a parked update (after the cause was fixed). The
/// leader picks it up within seconds; the letter then reads `replayed`, or `parked` with the
/// new error.
#[utoipa::path(
    post,
    path = "/api/v1/dead-letters/{id}/replay",
    tag = "admin",
    params(("id" = i64, Path, description = "Dead letter id")),
    responses(
        (status = 202, description = "Queued for a replay", body = DeadLetter),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:write`", body = ErrorBody),
        (status = 404, description = "No such dead letter", body = ErrorBody),
        (status = 409, description = "Replayed already", body = ErrorBody),
    ),
    security(("bearer" = ["admin:write"]))
)]
pub async fn replay(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<DeadLetter>), ApiError> {
    principal.require(Scope::AdminWrite)?;
    let id: i64 =
        id.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::bad_request(format!("id={id:?} is not a dead letter id (a positive whole number)"))
        })?;
    let mut tx = state.pool.begin().await?;
    let letter = store::request_replay(&mut tx, id).await?;
    let details = json!({ "account_id": letter.account_id, "update_key": letter.update_key });
    store::record_audit(
        &mut tx,
        &store::AuditEntry {
            actor: &principal.actor,
            action: "dead_letter.replay",
            target_kind: "dead_letter",
            target_id: &id.to_string(),
            details,
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(letter.into())))
}
