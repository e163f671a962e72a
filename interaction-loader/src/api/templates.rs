//! An account's message templates (WhatsApp): the approved templates agents may send at any
//! time, outside the 24-hour window too (`message.send` with `template`). The chatserver checks
//! a send against this list (name, language, number of parameters) before anything is queued;
//! the provider (Meta, Infobip) has the same template approved under the same name and
//! language. Every change is audited in its own transaction.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use ops::input::{InputError, Kind, Validate, check, check_opt};
use schema::store::{self, whatsapp};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::parse_uuid;
use crate::AppState;
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ApiJson, ApiPath, ErrorBody};

/// An approved message template of an account.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Template {
    /// Meta's template name: `a-z`, `0-9`, `_`.
    #[schema(example = "order_update")]
    pub name: String,
    /// Its language code.
    #[schema(example = "en_US")]
    pub language: String,
    /// `marketing`, `utility` or `authentication`.
    #[schema(example = "utility")]
    pub category: String,
    /// The body as approved, `{{1}}`, `{{2}}`... for its parameters.
    #[schema(example = "Hello {{1}}, your order {{2}} has shipped.")]
    pub body: String,
    /// How many parameters `message.send` must give.
    #[schema(example = 2)]
    pub params: i32,
    pub updated_at: DateTime<Utc>,
}

impl From<whatsapp::WhatsappTemplate> for Template {
    fn from(t: whatsapp::WhatsappTemplate) -> Self {
        Template {
            name: t.name,
            language: t.language,
            category: t.category,
            body: t.body,
            params: t.params,
            updated_at: t.updated_at,
        }
    }
}

/// The account's templates.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    pub items: Vec<Template>,
}

/// A template as entered: its body (parameters numbered from `{{1}}` without gaps) and category.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
    /// 1 to 1024 characters.
    #[schema(example = "Hello {{1}}, your order {{2}} has shipped.")]
    pub body: String,
    /// `utility` when absent.
    #[schema(example = "utility")]
    pub category: Option<String>,
}

impl Validate for TemplateBody {
    fn validate(&self) -> Result<(), InputError> {
        check("body", Kind::Text, &self.body)?;
        check_opt("category", Kind::Key, self.category.as_deref())
    }
}

/// The account, which must be on a channel with templates.
async fn template_account(conn: &mut sqlx::PgConnection, id: &str) -> Result<Uuid, ApiError> {
    let id = parse_uuid("id", id)?;
    let account = store::get_account(conn, id).await?;
    if !account.channel.takes_templates() {
        return Err(ApiError::bad_request(format!("{} accounts have no message templates", account.channel)));
    }
    Ok(id)
}

/// The account's templates, by name and language.
#[utoipa::path(
    get,
    path = "/api/v1/accounts/{id}/templates",
    tag = "admin",
    params(("id" = Uuid, Path, description = "Account id (a WhatsApp account)")),
    responses(
        (status = 200, description = "Every template", body = TemplateList),
        (status = 400, description = "Not an account id, or a channel without templates", body = ErrorBody),
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
) -> Result<Json<TemplateList>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let mut conn = state.pool.acquire().await?;
    let account = template_account(&mut conn, &id).await?;
    let items = whatsapp::list_templates(&mut conn, account).await?.into_iter().map(Template::from).collect();
    Ok(Json(TemplateList { items }))
}

/// Creates or replaces a template (audited).
#[utoipa::path(
    put,
    path = "/api/v1/accounts/{id}/templates/{name}/{language}",
    tag = "admin",
    params(
        ("id" = Uuid, Path, description = "Account id (a WhatsApp account)"),
        ("name" = String, Path, description = "Template name: `a-z`, `0-9`, `_`"),
        ("language" = String, Path, description = "Language code: `en`, `en_US`, `pt_BR`..."),
    ),
    request_body = TemplateBody,
    responses(
        (status = 201, description = "Created", body = Template),
        (status = 200, description = "Replaced", body = Template),
        (status = 400, description = "Bad name, language, category or body, or a channel without templates", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:write`", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    ),
    security(("bearer" = ["admin:write"]))
)]
pub async fn put(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath((id, name, language)): ApiPath<(String, String, String)>,
    ApiJson(input): ApiJson<TemplateBody>,
) -> Result<(StatusCode, Json<Template>), ApiError> {
    principal.require(Scope::AdminWrite)?;
    let mut tx = state.pool.begin().await?;
    let account = template_account(&mut tx, &id).await?;
    let entered = whatsapp::TemplateInput { name, language, category: input.category, body: input.body };
    let (template, created) = whatsapp::put_template(&mut tx, account, &entered).await?;
    store::record_audit(
        &mut tx,
        &store::AuditEntry {
            actor: &principal.actor,
            action: if created { "template.create" } else { "template.update" },
            target_kind: "template",
            target_id: &format!("{account}/{}/{}", template.name, template.language),
            details: json!({"category": template.category, "body": template.body, "params": template.params}),
        },
    )
    .await?;
    tx.commit().await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(template.into())))
}

/// Removes a template (audited); `message.send` refuses it from then on.
#[utoipa::path(
    delete,
    path = "/api/v1/accounts/{id}/templates/{name}/{language}",
    tag = "admin",
    params(
        ("id" = Uuid, Path, description = "Account id (a WhatsApp account)"),
        ("name" = String, Path, description = "Template name"),
        ("language" = String, Path, description = "Language code"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Not an account id, or a channel without templates", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:write`", body = ErrorBody),
        (status = 404, description = "No such account or template", body = ErrorBody),
    ),
    security(("bearer" = ["admin:write"]))
)]
pub async fn delete(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath((id, name, language)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::AdminWrite)?;
    let mut tx = state.pool.begin().await?;
    let account = template_account(&mut tx, &id).await?;
    if !whatsapp::delete_template(&mut tx, account, &name, &language).await? {
        return Err(ApiError::not_found(format!("template {name} ({language}) not found")));
    }
    store::record_audit(
        &mut tx,
        &store::AuditEntry {
            actor: &principal.actor,
            action: "template.delete",
            target_kind: "template",
            target_id: &format!("{account}/{name}/{language}"),
            details: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
