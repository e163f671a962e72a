//! Webhook subscriptions, their deliveries and attempts. Changes are audited like admin ones.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use schema::store::{self, AuditEntry, NewSubscription, SubscriptionPatch};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use uuid::Uuid;

use super::{page_limit, parse_uuid, split_page};
use crate::AppState;
use crate::auth::{Principal, Scope};
use crate::cursor;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::model::{
    Delivery, DeliveryDetail, DeliveryPage, NewWebhook, Webhook, WebhookList, WebhookPatch, WebhookWithSecret,
};
use crate::webhooks::{EVENT_TYPES, generate_secret};
use ops::input::{InputError, Kind, Validate, check_opt};

/// How long a subscription waits for its name to resolve (it is checked again at delivery).
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The URL as stored, or 400 naming what makes it no webhook target (`webhooks::target`).
async fn check_url(state: &AppState, url: &str) -> Result<String, ApiError> {
    match state.targets.check_subscription(url, RESOLVE_TIMEOUT).await {
        Ok(parsed) => Ok(parsed.to_string()),
        // the URL is not quoted back: it may hold credentials
        Err(e) => Err(ApiError::bad_request(format!("`url` {e}"))),
    }
}

fn check_events(events: &[String]) -> Result<Vec<String>, ApiError> {
    if events.is_empty() {
        return Err(ApiError::bad_request("name at least one event type, or \"*\" for all"));
    }
    let mut out: Vec<String> = Vec::new();
    for event in events {
        if event != "*" && !EVENT_TYPES.contains(&event.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown event type {event:?}: use \"*\" or any of {}",
                EVENT_TYPES.join(", ")
            )));
        }
        if !out.contains(event) {
            out.push(event.clone());
        }
    }
    Ok(out)
}

async fn record(
    conn: &mut sqlx::PgConnection,
    principal: &Principal,
    action: &str,
    id: Uuid,
    details: serde_json::Value,
) -> Result<(), ApiError> {
    store::record_audit(
        conn,
        &AuditEntry { actor: &principal.actor, action, target_kind: "webhook", target_id: &id.to_string(), details },
    )
    .await?;
    Ok(())
}

/// Webhook subscriptions.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "Every subscription", body = WebhookList),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `webhooks:read`", body = ErrorBody),
    ),
    security(("bearer" = ["webhooks:read"]))
)]
pub async fn list(principal: Principal, State(state): State<AppState>) -> Result<Json<WebhookList>, ApiError> {
    principal.require(Scope::WebhooksRead)?;
    let mut conn = state.pool.acquire().await?;
    let subs = store::list_subscriptions(&mut conn).await?;
    Ok(Json(WebhookList { items: subs.into_iter().map(Into::into).collect() }))
}

/// Subscribes a URL to event types. Every event of those types from now on is delivered to it,
/// signed with the secret in this response (shown this once).
#[utoipa::path(
    post,
    path = "/api/v1/webhooks",
    tag = "webhooks",
    request_body = NewWebhook,
    responses(
        (status = 201, description = "Created; `secret` is shown this once", body = WebhookWithSecret),
        (status = 400, description = "Bad URL (not http(s), credentials in it, an internal address) or unknown event type", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `webhooks:write`", body = ErrorBody),
    ),
    security(("bearer" = ["webhooks:write"]))
)]
pub async fn create(
    principal: Principal,
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewWebhook>,
) -> Result<(StatusCode, Json<WebhookWithSecret>), ApiError> {
    principal.require(Scope::WebhooksWrite)?;
    let url = check_url(&state, &new.url).await?;
    let events = check_events(&new.events)?;
    let secret = generate_secret();
    let mut tx = state.pool.begin().await?;
    let sub = store::create_subscription(
        &mut tx,
        &NewSubscription {
            url,
            events,
            description: new.description,
            secret: secret.clone(),
            created_by: principal.actor.clone(),
        },
    )
    .await?;
    record(&mut tx, &principal, "webhook.create", sub.id, json!({ "url": sub.url, "events": sub.events })).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(WebhookWithSecret { secret, webhook: sub.into() })))
}

/// One subscription.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The subscription", body = Webhook),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `webhooks:read`", body = ErrorBody),
        (status = 404, description = "No such subscription", body = ErrorBody),
    ),
    security(("bearer" = ["webhooks:read"]))
)]
pub async fn get_one(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Webhook>, ApiError> {
    principal.require(Scope::WebhooksRead)?;
    let id = parse_uuid("id", &id)?;
    let mut conn = state.pool.acquire().await?;
    Ok(Json(store::get_subscription(&mut conn, id).await?.into()))
}

/// Changes a subscription (URL, event types, description; `enabled: false` pauses it).
#[utoipa::path(
    patch,
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id")),
    request_body = WebhookPatch,
    responses(
        (status = 200, description = "The subscription as it is now", body = Webhook),
        (status = 400, description = "Bad id, URL or event type", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `webhooks:write`", body = ErrorBody),
        (status = 404, description = "No such subscription", body = ErrorBody),
    ),
    security(("bearer" = ["webhooks:write"]))
)]
pub async fn update(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<WebhookPatch>,
) -> Result<Json<Webhook>, ApiError> {
    principal.require(Scope::WebhooksWrite)?;
    let id = parse_uuid("id", &id)?;
    let url = match patch.url.as_deref() {
        Some(url) => Some(check_url(&state, url).await?),
        None => None,
    };
    let events = patch.events.as_deref().map(check_events).transpose()?;
    let mut tx = state.pool.begin().await?;
    let before = store::get_subscription(&mut tx, id).await?;
    let after = store::update_subscription(
        &mut tx,
        id,
        &SubscriptionPatch { url, events, description: patch.description, enabled: patch.enabled, secret: None },
    )
    .await?;
    let view = |s: &store::Subscription| json!({ "url": s.url, "events": s.events, "description": s.description, "enabled": s.enabled });
    record(&mut tx, &principal, "webhook.update", id, json!({ "from": view(&before), "to": view(&after) })).await?;
    tx.commit().await?;
    Ok(Json(after.into()))
}

/// Deletes a subscription with its deliveries.
#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `webhooks:write`", body = ErrorBody),
        (status = 404, description = "No such subscription", body = ErrorBody),
    ),
    security(("bearer" = ["webhooks:write"]))
)]
pub async fn delete(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::WebhooksWrite)?;
    let id = parse_uuid("id", &id)?;
    let mut tx = state.pool.begin().await?;
    let gone = store::delete_subscription(&mut tx, id).await?;
    record(&mut tx, &principal, "webhook.delete", id, json!({ "url": gone.url, "events": gone.events })).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces the signing secret; the new one is in this response only. Deliveries sent from now
/// on are signed with it.
#[utoipa::path(
    put,
    path = "/api/v1/webhooks/{id}/secret",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The new secret, shown this once", body = WebhookWithSecret),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `webhooks:write`", body = ErrorBody),
        (status = 404, description = "No such subscription", body = ErrorBody),
    ),
    security(("bearer" = ["webhooks:write"]))
)]
pub async fn rotate_secret(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WebhookWithSecret>, ApiError> {
    principal.require(Scope::WebhooksWrite)?;
    let id = parse_uuid("id", &id)?;
    let secret = generate_secret();
    let mut tx = state.pool.begin().await?;
    let sub = store::update_subscription(
        &mut tx,
        id,
        &SubscriptionPatch { secret: Some(secret.clone()), ..Default::default() },
    )
    .await?;
    record(&mut tx, &principal, "webhook.rotate_secret", id, json!({})).await?;
    tx.commit().await?;
    Ok(Json(WebhookWithSecret { secret, webhook: sub.into() }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// `pending`, `delivered` or `failed`.
    state: Option<String>,
    /// Page size, 1 to `loader.max_page_size`; 100 when absent.
    #[param(value_type = Option<u32>, minimum = 1)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl Validate for DeliveryParams {
    fn validate(&self) -> Result<(), InputError> {
        check_opt("state", Kind::Key, self.state.as_deref())
    }
}

/// Deliveries of a subscription, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id"), DeliveryParams),
    responses(
        (status = 200, description = "One page", body = DeliveryPage),
        (status = 400, description = "Bad id, state, limit or cursor", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `webhooks:read`", body = ErrorBody),
        (status = 404, description = "No such subscription", body = ErrorBody),
    ),
    security(("bearer" = ["webhooks:read"]))
)]
pub async fn deliveries(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<DeliveryParams>,
) -> Result<Json<DeliveryPage>, ApiError> {
    principal.require(Scope::WebhooksRead)?;
    let id = parse_uuid("id", &id)?;
    let limit = page_limit(params.limit.as_deref(), state.config.max_page_size)?;
    let before = params.cursor.as_deref().map(|c| cursor::parse_id("d", c)).transpose()?;
    if let Some(s) = params.state.as_deref()
        && !["pending", "delivered", "failed"].contains(&s)
    {
        return Err(ApiError::bad_request(format!("state={s:?} is not one of pending, delivered, failed")));
    }
    let mut conn = state.pool.acquire().await?;
    let rows = store::deliveries_page(&mut conn, id, params.state.as_deref(), before, limit + 1).await?;
    let (rows, more) = split_page(rows, limit);
    let next_cursor = if more { rows.last().map(|d| cursor::id("d", d.id)) } else { None };
    Ok(Json(DeliveryPage { items: rows.into_iter().map(Delivery::from).collect(), next_cursor }))
}

/// One delivery with every attempt: when, the receiver's status, the error, how long it took.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}",
    tag = "webhooks",
    params(
        ("id" = Uuid, Path, description = "Subscription id"),
        ("delivery_id" = i64, Path, description = "Delivery id"),
    ),
    responses(
        (status = 200, description = "The delivery and its attempts, oldest first", body = DeliveryDetail),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `webhooks:read`", body = ErrorBody),
        (status = 404, description = "No such delivery of this subscription", body = ErrorBody),
    ),
    security(("bearer" = ["webhooks:read"]))
)]
pub async fn delivery(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath((id, delivery_id)): ApiPath<(String, String)>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    principal.require(Scope::WebhooksRead)?;
    let (id, delivery_id) = ids(&id, &delivery_id)?;
    let mut conn = state.pool.acquire().await?;
    Ok(Json(store::delivery_with_attempts(&mut conn, id, delivery_id).await?.into()))
}

fn ids(id: &str, delivery_id: &str) -> Result<(Uuid, i64), ApiError> {
    let id = parse_uuid("id", id)?;
    let delivery_id = delivery_id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("delivery_id {delivery_id:?} is not a whole number")))?;
    Ok((id, delivery_id))
}

/// Sends a delivery again (one that failed after its retry window, or one to repeat), with a
/// fresh retry window. 409 if it is still pending.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver",
    tag = "webhooks",
    params(
        ("id" = Uuid, Path, description = "Subscription id"),
        ("delivery_id" = i64, Path, description = "Delivery id"),
    ),
    responses(
        (status = 202, description = "Queued again", body = Delivery),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `webhooks:write`", body = ErrorBody),
        (status = 404, description = "No such delivery of this subscription", body = ErrorBody),
        (status = 409, description = "It is still pending", body = ErrorBody),
    ),
    security(("bearer" = ["webhooks:write"]))
)]
pub async fn redeliver(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath((id, delivery_id)): ApiPath<(String, String)>,
) -> Result<(StatusCode, Json<Delivery>), ApiError> {
    principal.require(Scope::WebhooksWrite)?;
    let (id, delivery_id) = ids(&id, &delivery_id)?;
    let mut tx = state.pool.begin().await?;
    let delivery = store::redeliver(&mut tx, id, delivery_id).await?;
    record(&mut tx, &principal, "webhook.redeliver", id, json!({ "delivery_id": delivery_id })).await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(delivery.into())))
}
