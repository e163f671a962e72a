//! `GET /api/v1/interactions` (the period query), one interaction, its messages and its events.

use axum::Json;
use axum::extract::State;
use schema::domain::{Channel, InteractionState};
use schema::store::PeriodFilter;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{enum_list, optional_uuid, page_limit, parse_uuid, required_time, split_page};
use crate::AppState;
use crate::auth::{Principal, Scope};
use crate::cursor;
use crate::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use crate::model::{EventPage, InteractionDetail, InteractionPage, InteractionSummary, MessagePage};
use ops::input::{InputError, Kind, Validate, check_opt};

/// The period and the filters, shared by the period query and the exports.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PeriodParams {
    /// Start of the period, inclusive (RFC 3339).
    #[param(required = true, value_type = String, format = DateTime, example = "2024-05-01T00:00:00Z")]
    pub from: Option<String>,
    /// End of the period, exclusive (RFC 3339); after `from`.
    #[param(required = true, value_type = String, format = DateTime, example = "2024-05-02T00:00:00Z")]
    pub to: Option<String>,
    /// Channels, comma-separated (`telegram,whatsapp`).
    #[param(value_type = Option<String>, example = "telegram")]
    pub channel: Option<String>,
    /// One channel account.
    #[param(value_type = Option<Uuid>)]
    pub account_id: Option<String>,
    pub queue: Option<String>,
    /// The agent assigned now, or last.
    pub agent: Option<String>,
    /// Current states, comma-separated (`bot`, `queued`, `offered`, `assigned`, `closed`).
    #[param(value_type = Option<String>, example = "assigned,closed")]
    pub state: Option<String>,
    #[param(value_type = Option<Uuid>)]
    pub customer_id: Option<String>,
    /// Text that a message of the period (either direction) contains, case-insensitive.
    pub q: Option<String>,
}

impl Validate for PeriodParams {
    fn validate(&self) -> Result<(), InputError> {
        check_opt("queue", Kind::Key, self.queue.as_deref())?;
        check_opt("agent", Kind::Key, self.agent.as_deref())?;
        check_opt("q", Kind::Search, self.q.as_deref())
    }
}

impl Validate for ListParams {
    fn validate(&self) -> Result<(), InputError> {
        self.period().validate()
    }
}

ops::no_strings!(MessageParams, EventParams);

impl PeriodParams {
    pub fn filter(&self) -> Result<PeriodFilter, ApiError> {
        let from = required_time("from", self.from.as_deref())?;
        let to = required_time("to", self.to.as_deref())?;
        if from >= to {
            return Err(ApiError::bad_request(format!(
                "the period is empty or reversed: from ({}) must be before to ({})",
                from.to_rfc3339(),
                to.to_rfc3339()
            )));
        }
        let channels: Vec<&str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
        let states: Vec<&str> = InteractionState::ALL.iter().map(|s| s.as_str()).collect();
        Ok(PeriodFilter {
            from,
            to,
            channels: enum_list("channel", self.channel.as_deref(), &channels)?,
            account_id: optional_uuid("account_id", self.account_id.as_deref())?,
            queue: self.queue.clone(),
            agent: self.agent.clone(),
            states: enum_list("state", self.state.as_deref(), &states)?,
            customer_id: optional_uuid("customer_id", self.customer_id.as_deref())?,
            text: self.q.clone(),
        })
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to `loader.max_page_size` (default 500); 100 when absent.
    #[param(value_type = Option<u32>, minimum = 1)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// [`PeriodParams`] and [`PageParams`] together (serde cannot refuse unknown fields through a
/// `flatten`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    from: Option<String>,
    to: Option<String>,
    channel: Option<String>,
    account_id: Option<String>,
    queue: Option<String>,
    agent: Option<String>,
    state: Option<String>,
    customer_id: Option<String>,
    q: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

impl ListParams {
    fn period(&self) -> PeriodParams {
        PeriodParams {
            from: self.from.clone(),
            to: self.to.clone(),
            channel: self.channel.clone(),
            account_id: self.account_id.clone(),
            queue: self.queue.clone(),
            agent: self.agent.clone(),
            state: self.state.clone(),
            customer_id: self.customer_id.clone(),
            q: self.q.clone(),
        }
    }
}

/// Interactions in which the customer wrote during a period.
///
/// An interaction is returned when at least one of its customer's messages was received in
/// `[from, to)`, even if it opened before `from`; one where only agents or bots wrote in the
/// period is not. Items are ordered by the customer's first message in the period, then id.
/// Paging is by cursor and stable while new messages arrive: an interaction already returned is
/// never returned again, and none present when paging started is skipped.
#[utoipa::path(
    get,
    path = "/api/v1/interactions",
    tag = "interactions",
    params(PeriodParams, PageParams),
    responses(
        (status = 200, description = "One page", body = InteractionPage),
        (status = 400, description = "A missing, malformed or reversed period, or a bad filter", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `interactions:read`", body = ErrorBody),
    ),
    security(("bearer" = ["interactions:read"]))
)]
pub async fn list(
    principal: Principal,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<InteractionPage>, ApiError> {
    principal.require(Scope::InteractionsRead)?;
    let filter = params.period().filter()?;
    let limit = page_limit(params.limit.as_deref(), state.config.max_page_size)?;
    let after = params.cursor.as_deref().map(cursor::parse_period).transpose()?;
    let mut conn = state.pool.acquire().await?;
    let rows = schema::store::interactions_in_period(&mut conn, &filter, after, limit + 1).await?;
    let (rows, more) = split_page(rows, limit);
    let next_cursor = if more { rows.last().map(|r| cursor::period(r.key())) } else { None };
    Ok(Json(InteractionPage { items: rows.into_iter().map(InteractionSummary::from).collect(), next_cursor }))
}

/// One interaction.
#[utoipa::path(
    get,
    path = "/api/v1/interactions/{id}",
    tag = "interactions",
    params(("id" = Uuid, Path, description = "Interaction id")),
    responses(
        (status = 200, description = "The interaction", body = InteractionDetail),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `interactions:read`", body = ErrorBody),
        (status = 404, description = "No such interaction", body = ErrorBody),
    ),
    security(("bearer" = ["interactions:read"]))
)]
pub async fn get_one(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<InteractionDetail>, ApiError> {
    principal.require(Scope::InteractionsRead)?;
    let id = parse_uuid("id", &id)?;
    let mut conn = state.pool.acquire().await?;
    Ok(Json(schema::store::interaction_detail(&mut conn, id).await?.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageParams {
    limit: Option<String>,
    cursor: Option<String>,
}

/// The messages of an interaction, oldest first, with file URLs.
#[utoipa::path(
    get,
    path = "/api/v1/interactions/{id}/messages",
    tag = "interactions",
    params(("id" = Uuid, Path, description = "Interaction id"), PageParams),
    responses(
        (status = 200, description = "One page of messages", body = MessagePage),
        (status = 400, description = "Bad id, limit or cursor", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `interactions:read`", body = ErrorBody),
        (status = 404, description = "No such interaction", body = ErrorBody),
    ),
    security(("bearer" = ["interactions:read"]))
)]
pub async fn messages(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<MessageParams>,
) -> Result<Json<MessagePage>, ApiError> {
    principal.require(Scope::InteractionsRead)?;
    let id = parse_uuid("id", &id)?;
    let limit = page_limit(params.limit.as_deref(), state.config.max_page_size)?;
    let after = params.cursor.as_deref().map(cursor::parse_message).transpose()?;
    let mut conn = state.pool.acquire().await?;
    let rows = schema::store::interaction_messages(&mut conn, id, after, limit + 1).await?;
    let (rows, more) = split_page(rows, limit);
    let next_cursor = if more {
        rows.last().map(|m| cursor::message(schema::store::MessageKey { created_at: m.created_at, id: m.id }))
    } else {
        None
    };
    Ok(Json(MessagePage { items: rows.into_iter().map(Into::into).collect(), next_cursor }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Only events with a larger `seq` (the `next_after` of the previous page); 0 when absent.
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<String>,
    /// Page size, 1 to `loader.max_page_size`; 100 when absent.
    #[param(value_type = Option<u32>, minimum = 1)]
    limit: Option<String>,
}

/// The event log of an interaction (the events webhooks deliver), oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/interactions/{id}/events",
    tag = "interactions",
    params(("id" = Uuid, Path, description = "Interaction id"), EventParams),
    responses(
        (status = 200, description = "One page of events", body = EventPage),
        (status = 400, description = "Bad id, after or limit", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `interactions:read`", body = ErrorBody),
        (status = 404, description = "No such interaction", body = ErrorBody),
    ),
    security(("bearer" = ["interactions:read"]))
)]
pub async fn events(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<EventParams>,
) -> Result<Json<EventPage>, ApiError> {
    principal.require(Scope::InteractionsRead)?;
    let id = parse_uuid("id", &id)?;
    let limit = page_limit(params.limit.as_deref(), state.config.max_page_size)?;
    let after = match params.after.as_deref() {
        None => 0,
        Some(text) => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::bad_request(format!("after={text:?} must be a whole number, 0 or more")))?,
    };
    let mut conn = state.pool.acquire().await?;
    let rows = schema::store::interaction_events(&mut conn, id, after, limit + 1).await?;
    let (rows, more) = split_page(rows, limit);
    let next_after = if more { rows.last().map(|e| e.seq) } else { None };
    Ok(Json(EventPage { items: rows.into_iter().map(Into::into).collect(), next_after }))
}
