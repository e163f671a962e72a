//! Administration: channel accounts, agents, queues, API keys, and the audit log. Every change
//! and its audit record commit in one transaction: no change goes unrecorded, and no record
//! describes a change that did not happen.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use schema::domain::{Channel, Queue as DomainQueue};
use schema::store::{self, AuditEntry, AuditFilter};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use super::{page_limit, parse_time, parse_uuid, split_page};
use crate::AppState;
use crate::auth::{Principal, Scope, generate_key};
use crate::cursor;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::model::{
    Account, AccountList, AccountPatch, Agent, AgentList, AgentSettings, ApiKey, ApiKeyList, AuditPage, AuditRecord,
    CreatedApiKey, NewAccount, NewApiKey, Queue, QueueList, QueueSettings,
};
use ops::input::{InputError, Kind, Validate, check_opt};

/// Roles an agent may have.
pub const ROLES: [&str; 4] = ["agent", "supervisor", "admin", "bot"];

async fn record(
    conn: &mut sqlx::PgConnection,
    principal: &Principal,
    action: &str,
    target_kind: &str,
    target_id: &str,
    details: serde_json::Value,
) -> Result<(), ApiError> {
    store::record_audit(conn, &AuditEntry { actor: &principal.actor, action, target_kind, target_id, details }).await?;
    Ok(())
}

// --------------------------------------------------------------------------- accounts --

/// Channel accounts, credentials masked.
#[utoipa::path(
    get,
    path = "/api/v1/accounts",
    tag = "admin",
    responses(
        (status = 200, description = "Every account", body = AccountList),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn list_accounts(principal: Principal, State(state): State<AppState>) -> Result<Json<AccountList>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let mut conn = state.pool.acquire().await?;
    let accounts = store::list_accounts(&mut conn).await?;
    Ok(Json(AccountList { items: accounts.into_iter().map(Into::into).collect() }))
}

/// One channel account, credentials masked.
#[utoipa::path(
    get,
    path = "/api/v1/accounts/{id}",
    tag = "admin",
    params(("id" = Uuid, Path, description = "Account id")),
    responses(
        (status = 200, description = "The account", body = Account),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn get_account(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Account>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let id = parse_uuid("id", &id)?;
    let mut conn = state.pool.acquire().await?;
    Ok(Json(store::account_view_of(&mut conn, id).await?.into()))
}

/// Creates a channel account with its credentials (returned masked).
#[utoipa::path(
    post,
    path = "/api/v1/accounts",
    tag = "admin",
    request_body = NewAccount,
    responses(
        (status = 201, description = "Created", body = Account),
        (status = 400, description = "Bad body, or an unknown queue", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:write`", body = ErrorBody),
    ),
    security(("bearer" = ["admin:write"]))
)]
pub async fn create_account(
    principal: Principal,
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewAccount>,
) -> Result<(StatusCode, Json<Account>), ApiError> {
    principal.require(Scope::AdminWrite)?;
    if new.name.trim().is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    let settings = serde_json::Value::Object(new.settings);
    check_account_settings(&settings)?;
    let mut tx = state.pool.begin().await?;
    check_bot_settings(&mut tx, settings.as_object().expect("built from a map")).await?;
    let credentials = serde_json::Value::Object(new.credentials);
    let created = store::create_account(
        &mut tx,
        &store::NewAccount {
            channel: new.channel,
            name: new.name.trim().to_owned(),
            default_queue: new.default_queue.clone(),
            credentials: credentials.clone(),
            settings,
        },
    )
    .await?;
    let details = json!({
        "channel": new.channel, "name": created.name, "default_queue": created.default_queue,
        "credential_keys": store::credential_keys(&credentials),
    });
    record(&mut tx, &principal, "account.create", "account", &created.id.to_string(), details).await?;
    let view = store::account_view_of(&mut tx, created.id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

/// The bot settings of an account (docs/bots.md): `external_bot` a boolean, `reentry` null or
/// `{"flow", "node"}` naming a flow that exists and a node of its newest version.
async fn check_bot_settings(
    conn: &mut sqlx::PgConnection,
    settings: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), ApiError> {
    if settings.get("external_bot").is_some_and(|v| !v.is_boolean() && !v.is_null()) {
        return Err(ApiError::bad_request("settings.external_bot must be true, false or null"));
    }
    store::check_reentry(conn, settings.get("reentry")).await?;
    Ok(())
}

/// The account settings the hub reads itself, checked before they are saved: `chat_survey`
/// (the survey after a closed chat) must parse and follow the survey's rules.
fn check_account_settings(settings: &serde_json::Value) -> Result<(), ApiError> {
    schema::survey::ChatSurveySettings::from_account(settings).map(drop).map_err(ApiError::bad_request)
}

/// Changes a channel account: rename, enable or disable, default queue, replace credentials or
/// settings.
#[utoipa::path(
    patch,
    path = "/api/v1/accounts/{id}",
    tag = "admin",
    params(("id" = Uuid, Path, description = "Account id")),
    request_body = AccountPatch,
    responses(
        (status = 200, description = "The account as it is now", body = Account),
        (status = 400, description = "Bad id or body, or an unknown queue", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:write`", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    ),
    security(("bearer" = ["admin:write"]))
)]
pub async fn update_account(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<AccountPatch>,
) -> Result<Json<Account>, ApiError> {
    principal.require(Scope::AdminWrite)?;
    let id = parse_uuid("id", &id)?;
    if patch.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    let settings = patch.settings.map(serde_json::Value::Object);
    if let Some(settings) = &settings {
        check_account_settings(settings)?;
    }
    let mut tx = state.pool.begin().await?;
    if let Some(settings) = settings.as_ref().and_then(|s| s.as_object()) {
        check_bot_settings(&mut tx, settings).await?;
    }
    let before = store::account_view_of(&mut tx, id).await?;
    let credentials = patch.credentials.map(serde_json::Value::Object);
    let after = store::update_account(
        &mut tx,
        id,
        &store::AccountPatch {
            name: patch.name.map(|n| n.trim().to_owned()),
            enabled: patch.enabled,
            default_queue: patch.default_queue,
            credentials: credentials.clone(),
            settings,
        },
    )
    .await?;
    let mut changes = serde_json::Map::new();
    let (b, a) = (&before.account, &after.account);
    if b.name != a.name {
        changes.insert("name".into(), json!({ "from": b.name, "to": a.name }));
    }
    if b.enabled != a.enabled {
        changes.insert("enabled".into(), json!({ "from": b.enabled, "to": a.enabled }));
    }
    if b.default_queue != a.default_queue {
        changes.insert("default_queue".into(), json!({ "from": b.default_queue, "to": a.default_queue }));
    }
    if let Some(credentials) = &credentials {
        changes.insert("credentials_replaced".into(), json!(store::credential_keys(credentials)));
    }
    if before.settings != after.settings {
        changes.insert("settings".into(), json!({ "from": before.settings, "to": after.settings }));
    }
    let action = match (b.enabled, a.enabled) {
        (true, false) => "account.disable",
        (false, true) => "account.enable",
        _ => "account.update",
    };
    record(&mut tx, &principal, action, "account", &id.to_string(), serde_json::Value::Object(changes)).await?;
    tx.commit().await?;
    Ok(Json(after.into()))
}

// ----------------------------------------------------------------------------- agents --

/// Agents with their capacity, queues and roles.
#[utoipa::path(
    get,
    path = "/api/v1/agents",
    tag = "admin",
    responses(
        (status = 200, description = "Every agent", body = AgentList),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn list_agents(principal: Principal, State(state): State<AppState>) -> Result<Json<AgentList>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let mut conn = state.pool.acquire().await?;
    let agents = store::list_agents(&mut conn).await?;
    Ok(Json(AgentList { items: agents.into_iter().map(Into::into).collect() }))
}

/// One agent.
#[utoipa::path(
    get,
    path = "/api/v1/agents/{login}",
    tag = "admin",
    params(("login" = String, Path, description = "Agent login")),
    responses(
        (status = 200, description = "The agent", body = Agent),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn get_agent(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(login): ApiPath<String>,
) -> Result<Json<Agent>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let mut conn = state.pool.acquire().await?;
    Ok(Json(store::get_agent(&mut conn, &login).await?.into()))
}

fn check_agent(login: &str, settings: &AgentSettings) -> Result<(), ApiError> {
    if login.trim().is_empty() || login.len() > 200 {
        return Err(ApiError::bad_request("a login is 1 to 200 characters"));
    }
    if settings.name.trim().is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    if let Some(avatar) = &settings.avatar_url {
        let web = url::Url::parse(avatar).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !web || avatar.len() > 2048 {
            return Err(ApiError::bad_request("avatar_url must be an http(s) URL of at most 2048 characters"));
        }
    }
    if let Some(role) = settings.roles.iter().find(|r| !ROLES.contains(&r.as_str())) {
        return Err(ApiError::bad_request(format!("role {role:?} is not one of {}", ROLES.join(", "))));
    }
    if !(0..=100).contains(&settings.max_interactions) {
        return Err(ApiError::bad_request("max_interactions must be from 0 to 100"));
    }
    for (channel, cap) in &settings.channel_capacity {
        if channel.parse::<Channel>().is_err() {
            return Err(ApiError::bad_request(format!("channel_capacity names an unknown channel {channel:?}")));
        }
        match cap.as_i64() {
            Some(n) if (0..=i64::from(settings.max_interactions)).contains(&n) => {}
            _ => {
                return Err(ApiError::bad_request(format!(
                    "channel_capacity.{channel} must be a whole number from 0 to max_interactions"
                )));
            }
        }
    }
    Ok(())
}

/// Creates an agent, or replaces its capacity, queues, roles and name. Its status is left alone.
#[utoipa::path(
    put,
    path = "/api/v1/agents/{login}",
    tag = "admin",
    params(("login" = String, Path, description = "Agent login")),
    request_body = AgentSettings,
    responses(
        (status = 200, description = "The agent as it is now", body = Agent),
        (status = 400, description = "Bad body, unknown role, channel or queue", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:write`", body = ErrorBody),
    ),
    security(("bearer" = ["admin:write"]))
)]
pub async fn put_agent(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(login): ApiPath<String>,
    ApiJson(mut settings): ApiJson<AgentSettings>,
) -> Result<Json<Agent>, ApiError> {
    principal.require(Scope::AdminWrite)?;
    if settings.roles.is_empty() {
        settings.roles = vec!["agent".to_owned()];
    }
    check_agent(&login, &settings)?;
    let mut tx = state.pool.begin().await?;
    let before = match store::get_agent(&mut tx, &login).await {
        Ok(agent) => Some(agent),
        Err(store::StoreError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let (agent, created) = store::put_agent(
        &mut tx,
        &store::AgentSettings {
            login: login.clone(),
            name: settings.name.trim().to_owned(),
            avatar_url: settings.avatar_url,
            roles: settings.roles,
            queues: settings.queues,
            max_interactions: settings.max_interactions,
            channel_capacity: settings.channel_capacity,
        },
    )
    .await?;
    let settings_of = |a: &schema::domain::Agent| {
        json!({ "name": a.name, "avatar_url": a.avatar_url, "roles": a.roles, "queues": a.queues,
                "max_interactions": a.max_interactions, "channel_capacity": a.channel_capacity })
    };
    let details = match &before {
        Some(b) => json!({ "from": settings_of(b), "to": settings_of(&agent) }),
        None => json!({ "to": settings_of(&agent) }),
    };
    let action = if created { "agent.create" } else { "agent.update" };
    record(&mut tx, &principal, action, "agent", &login, details).await?;
    tx.commit().await?;
    Ok(Json(agent.into()))
}

// ----------------------------------------------------------------------------- queues --

/// Queues with their routing mode and offer timeout.
#[utoipa::path(
    get,
    path = "/api/v1/queues",
    tag = "admin",
    responses(
        (status = 200, description = "Every queue", body = QueueList),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn list_queues(principal: Principal, State(state): State<AppState>) -> Result<Json<QueueList>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let mut conn = state.pool.acquire().await?;
    let queues = store::list_queues(&mut conn).await?;
    Ok(Json(QueueList { items: queues.into_iter().map(Into::into).collect() }))
}

/// One queue.
#[utoipa::path(
    get,
    path = "/api/v1/queues/{name}",
    tag = "admin",
    params(("name" = String, Path, description = "Queue name")),
    responses(
        (status = 200, description = "The queue", body = Queue),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
        (status = 404, description = "No such queue", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn get_queue(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Queue>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let mut conn = state.pool.acquire().await?;
    Ok(Json(store::get_queue(&mut conn, &name).await?.into()))
}

/// Creates a queue, or changes its routing mode and offer timeout.
#[utoipa::path(
    put,
    path = "/api/v1/queues/{name}",
    tag = "admin",
    params(("name" = String, Path, description = "Queue name: lowercase `[a-z0-9_.-]`, up to 64 characters")),
    request_body = QueueSettings,
    responses(
        (status = 200, description = "The queue as it is now", body = Queue),
        (status = 400, description = "Bad name or body", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:write`", body = ErrorBody),
    ),
    security(("bearer" = ["admin:write"]))
)]
pub async fn put_queue(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(settings): ApiJson<QueueSettings>,
) -> Result<Json<Queue>, ApiError> {
    principal.require(Scope::AdminWrite)?;
    let mut tx = state.pool.begin().await?;
    let before = match store::get_queue(&mut tx, &name).await {
        Ok(q) => Some(q),
        Err(store::StoreError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let queue = DomainQueue {
        name: name.clone(),
        routing_mode: settings.routing_mode,
        offer_timeout_ms: settings.offer_timeout_ms,
    };
    store::upsert_queue(&mut tx, &queue).await?;
    let to = json!({ "routing_mode": queue.routing_mode, "offer_timeout_ms": queue.offer_timeout_ms });
    let (action, details) = match &before {
        Some(b) => (
            "queue.update",
            json!({ "from": { "routing_mode": b.routing_mode, "offer_timeout_ms": b.offer_timeout_ms }, "to": to }),
        ),
        None => ("queue.create", json!({ "to": to })),
    };
    record(&mut tx, &principal, action, "queue", &name, details).await?;
    tx.commit().await?;
    Ok(Json(queue.into()))
}

// --------------------------------------------------------------------------- API keys --

/// API keys (never the keys themselves).
#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    tag = "admin",
    responses(
        (status = 200, description = "Every key, revoked ones included", body = ApiKeyList),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn list_keys(principal: Principal, State(state): State<AppState>) -> Result<Json<ApiKeyList>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let mut conn = state.pool.acquire().await?;
    let keys = store::list_api_keys(&mut conn).await?;
    Ok(Json(ApiKeyList { items: keys.into_iter().map(Into::into).collect() }))
}

/// Creates an API key with scopes. The key is in this response only.
#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    tag = "admin",
    request_body = NewApiKey,
    responses(
        (status = 201, description = "Created; `key` is shown this once", body = CreatedApiKey),
        (status = 400, description = "Bad name or unknown scope", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:write`", body = ErrorBody),
    ),
    security(("bearer" = ["admin:write"]))
)]
pub async fn create_key(
    principal: Principal,
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewApiKey>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    principal.require(Scope::AdminWrite)?;
    if new.scopes.is_empty() {
        return Err(ApiError::bad_request("name at least one scope"));
    }
    let mut scopes = Vec::new();
    for scope in &new.scopes {
        let parsed = Scope::parse(scope).ok_or_else(|| {
            let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::bad_request(format!("unknown scope {scope:?}: use {}", known.join(", ")))
        })?;
        if !scopes.contains(&parsed.as_str().to_owned()) {
            scopes.push(parsed.as_str().to_owned());
        }
    }
    let generated = generate_key();
    let mut tx = state.pool.begin().await?;
    let key =
        store::create_api_key(&mut tx, new.name.trim(), &generated.prefix, &generated.hash, &scopes, &principal.actor)
            .await?;
    let details = json!({ "name": key.name, "prefix": key.prefix, "scopes": key.scopes });
    record(&mut tx, &principal, "api_key.create", "api_key", &key.id.to_string(), details).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(CreatedApiKey { key: generated.key, api_key: key.into() })))
}

/// Revokes an API key: it stops working at once.
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{id}",
    tag = "admin",
    params(("id" = Uuid, Path, description = "API key id")),
    responses(
        (status = 200, description = "The revoked key", body = ApiKey),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:write`", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
    ),
    security(("bearer" = ["admin:write"]))
)]
pub async fn revoke_key(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ApiKey>, ApiError> {
    principal.require(Scope::AdminWrite)?;
    let id = parse_uuid("id", &id)?;
    let mut tx = state.pool.begin().await?;
    let key = store::revoke_api_key(&mut tx, id).await?;
    record(&mut tx, &principal, "api_key.revoke", "api_key", &id.to_string(), json!({ "name": key.name })).await?;
    tx.commit().await?;
    Ok(Json(key.into()))
}

// ------------------------------------------------------------------------------ audit --

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// `key:<id>`, `jwt:<subject>` or `bootstrap`.
    actor: Option<String>,
    /// An action (`account.update`) or a prefix ending in `.` (`account.`).
    action: Option<String>,
    /// `account`, `agent`, `queue`, `api_key`, `webhook`.
    target_kind: Option<String>,
    target_id: Option<String>,
    /// Changes at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// Changes before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// Page size, 1 to `loader.max_page_size`; 100 when absent.
    #[param(value_type = Option<u32>, minimum = 1)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl Validate for AuditParams {
    fn validate(&self) -> Result<(), InputError> {
        check_opt("actor", Kind::Key, self.actor.as_deref())?;
        check_opt("action", Kind::Key, self.action.as_deref())?;
        check_opt("target_kind", Kind::Key, self.target_kind.as_deref())?;
        check_opt("target_id", Kind::Key, self.target_id.as_deref())
    }
}

/// The audit log, newest first: who changed what, and when.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "admin",
    params(AuditParams),
    responses(
        (status = 200, description = "One page", body = AuditPage),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn audit_log(
    principal: Principal,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let limit = page_limit(params.limit.as_deref(), state.config.max_page_size)?;
    let before = params.cursor.as_deref().map(|c| cursor::parse_id("a", c)).transpose()?;
    let filter = AuditFilter {
        actor: params.actor,
        action: params.action,
        target_kind: params.target_kind,
        target_id: params.target_id,
        from: params.from.as_deref().map(|t| parse_time("from", t)).transpose()?,
        to: params.to.as_deref().map(|t| parse_time("to", t)).transpose()?,
    };
    let mut conn = state.pool.acquire().await?;
    let rows = store::audit_page(&mut conn, &filter, before, limit + 1).await?;
    let (rows, more) = split_page(rows, limit);
    let next_cursor = if more { rows.last().map(|r| cursor::id("a", r.id)) } else { None };
    Ok(Json(AuditPage { items: rows.into_iter().map(AuditRecord::from).collect(), next_cursor }))
}
