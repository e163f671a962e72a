//! Admin-defined interaction fields: the definitions agents set values against
//! (`interaction.set_field` on the agent WebSocket). The values are in the interactions'
//! `fields` and the exports' `fields` column. Every change is audited in its own transaction.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ops::input::{InputError, Kind, Validate, check};
use schema::fields::{FieldDef, FieldType};
use schema::store;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ApiJson, ApiPath, ErrorBody};

/// An interaction field the admin defined.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Field {
    /// `a-z` first, then `a-z`, `0-9`, `_`; at most 64 bytes.
    #[schema(example = "topic")]
    pub key: String,
    #[schema(example = "Тема обращения")]
    pub label: String,
    /// `text`, `number`, `choice` or `bool`.
    #[serde(rename = "type")]
    #[schema(example = "choice")]
    pub kind: String,
    /// The values of a `choice` field (empty for the other types).
    #[schema(example = json!(["Заказ", "Возврат"]))]
    pub choices: Vec<String>,
    /// A required field cannot be cleared by an agent.
    pub required: bool,
}

impl From<FieldDef> for Field {
    fn from(d: FieldDef) -> Self {
        Field { key: d.key, label: d.label, kind: d.kind.as_str().to_owned(), choices: d.choices, required: d.required }
    }
}

/// Every field definition.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldList {
    pub items: Vec<Field>,
}

/// A field definition as entered (its key is in the path).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldBody {
    /// 1 to 1000 characters.
    #[schema(example = "Тема обращения")]
    pub label: String,
    /// `text`, `number`, `choice` or `bool`.
    #[serde(rename = "type")]
    #[schema(example = "choice")]
    pub kind: String,
    /// 1 to 50 distinct values for a `choice` field; none for the others.
    #[serde(default)]
    pub choices: Vec<String>,
    /// `false` when absent.
    #[serde(default)]
    pub required: bool,
}

impl Validate for FieldBody {
    fn validate(&self) -> Result<(), InputError> {
        check("type", Kind::Key, &self.kind)
    }
}

/// The field definitions, by key.
#[utoipa::path(
    get,
    path = "/api/v1/interaction-fields",
    tag = "admin",
    responses(
        (status = 200, description = "Every definition", body = FieldList),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn list(principal: Principal, State(state): State<AppState>) -> Result<Json<FieldList>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let mut conn = state.pool.acquire().await?;
    let items = store::list_field_defs(&mut conn).await?.into_iter().map(Field::from).collect();
    Ok(Json(FieldList { items }))
}

/// Creates or replaces a field definition (audited). Values set before stay as they are.
#[utoipa::path(
    put,
    path = "/api/v1/interaction-fields/{key}",
    tag = "admin",
    params(("key" = String, Path, description = "Field key: `a-z` first, then `a-z`, `0-9`, `_`")),
    request_body = FieldBody,
    responses(
        (status = 201, description = "Created", body = Field),
        (status = 200, description = "Replaced", body = Field),
        (status = 400, description = "Bad key, label, type or choices", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:write`", body = ErrorBody),
    ),
    security(("bearer" = ["admin:write"]))
)]
pub async fn put(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
    ApiJson(body): ApiJson<FieldBody>,
) -> Result<(StatusCode, Json<Field>), ApiError> {
    principal.require(Scope::AdminWrite)?;
    let kind: FieldType = serde_json::from_value(json!(body.kind)).map_err(|_| {
        ApiError::bad_request(format!("type must be text, number, choice or bool, not {:?}", body.kind))
    })?;
    let def = FieldDef { key, label: body.label, kind, choices: body.choices, required: body.required };
    let mut tx = state.pool.begin().await?;
    let created = store::put_field_def(&mut tx, &def).await?;
    store::record_audit(
        &mut tx,
        &store::AuditEntry {
            actor: &principal.actor,
            action: if created { "interaction_field.create" } else { "interaction_field.update" },
            target_kind: "interaction_field",
            target_id: &def.key,
            details: json!({"label": def.label, "type": def.kind.as_str(), "choices": def.choices, "required": def.required}),
        },
    )
    .await?;
    tx.commit().await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(def.into())))
}

/// Removes a field definition (audited): agents cannot set it from then on; values set before
/// stay on their interactions.
#[utoipa::path(
    delete,
    path = "/api/v1/interaction-fields/{key}",
    tag = "admin",
    params(("key" = String, Path, description = "Field key")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:write`", body = ErrorBody),
        (status = 404, description = "No such field", body = ErrorBody),
    ),
    security(("bearer" = ["admin:write"]))
)]
pub async fn delete(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::AdminWrite)?;
    let mut tx = state.pool.begin().await?;
    if !store::delete_field_def(&mut tx, &key).await? {
        return Err(ApiError::not_found(format!("interaction field {key:?} not found")));
    }
    store::record_audit(
        &mut tx,
        &store::AuditEntry {
            actor: &principal.actor,
            action: "interaction_field.delete",
            target_kind: "interaction_field",
            target_id: &key,
            details: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
