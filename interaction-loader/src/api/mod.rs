//! The routes, one module per resource. Each handler takes the [`Principal`] first (so a request
//! without valid credentials gets 401 before anything else is looked at), checks its scope, and
//! maps every failure through [`ApiError`].
//!
//! [`Principal`]: crate::auth::Principal
//! [`ApiError`]: crate::error::ApiError

pub mod admin;
pub mod calls;
pub mod campaigns;
pub mod customers;
pub mod dead_letters;
pub mod exports;
pub mod fields;
pub mod flows;
pub mod interactions;
pub mod stats;
pub mod templates;
pub mod webhooks;

use axum::Router;
use axum::routing::{get, post, put};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/openapi.json", get(crate::openapi::serve))
        .route("/api/v1/interactions", get(interactions::list))
        .route("/api/v1/interactions/{id}", get(interactions::get_one))
        .route("/api/v1/interactions/{id}/messages", get(interactions::messages))
        .route("/api/v1/interactions/{id}/events", get(interactions::events))
        .route("/api/v1/customers", get(customers::lookup))
        .route("/api/v1/customers/{id}", get(customers::get_one))
        .route("/api/v1/exports/interactions.csv", get(exports::csv))
        .route("/api/v1/exports/interactions.xlsx", get(exports::xlsx))
        .route("/api/v1/stats/{report}", get(stats::report))
        .route("/api/v1/accounts", get(admin::list_accounts).post(admin::create_account))
        .route("/api/v1/accounts/{id}", get(admin::get_account).patch(admin::update_account))
        .route("/api/v1/agents", get(admin::list_agents))
        .route("/api/v1/agents/{login}", get(admin::get_agent).put(admin::put_agent))
        .route("/api/v1/queues", get(admin::list_queues))
        .route("/api/v1/queues/{name}", get(admin::get_queue).put(admin::put_queue))
        .route("/api/v1/api-keys", get(admin::list_keys).post(admin::create_key))
        .route("/api/v1/api-keys/{id}", axum::routing::delete(admin::revoke_key))
        .route("/api/v1/audit", get(admin::audit_log))
        .route("/api/v1/accounts/{id}/dead-letters", get(dead_letters::list))
        .route("/api/v1/dead-letters/{id}/replay", post(dead_letters::replay))
        .route("/api/v1/interaction-fields", get(fields::list))
        .route("/api/v1/interaction-fields/{key}", put(fields::put).delete(fields::delete))
        .route("/api/v1/accounts/{id}/templates", get(templates::list))
        .route("/api/v1/accounts/{id}/templates/{name}/{language}", put(templates::put).delete(templates::delete))
        .route("/api/v1/campaigns", get(campaigns::list).post(campaigns::create))
        .route("/api/v1/campaigns/{id}", get(campaigns::get_one))
        .route(
            "/api/v1/campaigns/{id}/recipients",
            get(campaigns::recipients)
                .post(campaigns::add_recipients)
                .layer(axum::extract::DefaultBodyLimit::max(campaigns::RECIPIENTS_BODY_MAX)),
        )
        .route("/api/v1/campaigns/{id}/{action}", post(campaigns::act))
        .route("/api/v1/exports/campaigns/{id}/recipients.csv", get(campaigns::export_csv))
        .route("/api/v1/exports/campaigns/{id}/recipients.xlsx", get(campaigns::export_xlsx))
        .route("/api/v1/accounts/{id}/opt-out-words", put(campaigns::put_opt_out_words))
        .route("/api/v1/flows", get(flows::list))
        .route("/api/v1/flows/{name}", get(flows::get_one).put(flows::put))
        .route("/api/v1/flows/{name}/versions/{version}", get(flows::get_version))
        .route("/api/v1/queues/{name}/greeting-flow", get(flows::get_greeting).put(flows::put_greeting))
        .route("/api/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/api/v1/webhooks/{id}", get(webhooks::get_one).patch(webhooks::update).delete(webhooks::delete))
        .route("/api/v1/webhooks/{id}/secret", put(webhooks::rotate_secret))
        .route("/api/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/api/v1/webhooks/{id}/deliveries/{delivery_id}", get(webhooks::delivery))
        .route("/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver", post(webhooks::redeliver))
        // video calls, storage (issue 17)
        .route("/api/v1/interactions/{id}/calls", get(calls::of_interaction))
        .route("/api/v1/calls", get(calls::list))
        .route("/api/v1/calls/{id}", get(calls::get_one))
        .route("/api/v1/exports/calls.csv", get(calls::csv))
        .route("/api/v1/exports/calls.xlsx", get(calls::xlsx))
        .route("/api/v1/storage", get(calls::storage))
        .route("/api/v1/queues/{name}/video", get(calls::get_queue_video).put(calls::put_queue_video))
}

/// An RFC 3339 time parameter.
pub(crate) fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value.trim()).map(|t| t.with_timezone(&Utc)).map_err(|e| {
        ApiError::bad_request(format!("{name}={value:?} is not an RFC 3339 time such as 2024-05-01T09:00:00Z ({e})"))
    })
}

pub(crate) fn required_time(name: &str, value: Option<&str>) -> Result<DateTime<Utc>, ApiError> {
    match value {
        Some(v) => parse_time(name, v),
        None => {
            Err(ApiError::bad_request(format!("{name} is required (an RFC 3339 time such as 2024-05-01T09:00:00Z)")))
        }
    }
}

pub(crate) fn parse_uuid(name: &str, value: &str) -> Result<Uuid, ApiError> {
    value.trim().parse().map_err(|_| ApiError::bad_request(format!("{name}={value:?} is not a UUID")))
}

pub(crate) fn optional_uuid(name: &str, value: Option<&str>) -> Result<Option<Uuid>, ApiError> {
    value.map(|v| parse_uuid(name, v)).transpose()
}

/// `limit`: default 100 (or the maximum, if lower), 1 to `max`.
pub(crate) fn page_limit(limit: Option<&str>, max: u32) -> Result<i64, ApiError> {
    match limit {
        None => Ok(i64::from(max.min(100))),
        Some(text) => match text.trim().parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(i64::from(n)),
            _ => Err(ApiError::bad_request(format!("limit={text:?} must be a whole number from 1 to {max}"))),
        },
    }
}

/// A comma-separated list whose items must each be one of `allowed`; absent means no filter,
/// an empty list or item (`channel=`, `state=,,,`) is refused (`ops::input::comma_list`).
pub(crate) fn enum_list(name: &str, value: Option<&str>, allowed: &[&str]) -> Result<Vec<String>, ApiError> {
    let Some(value) = value else { return Ok(Vec::new()) };
    ops::input::comma_list(name, value)?
        .into_iter()
        .map(|item| {
            if allowed.contains(&item) {
                Ok(item.to_owned())
            } else {
                Err(ApiError::bad_request(format!("{name}={item:?} is not one of {}", allowed.join(", "))))
            }
        })
        .collect()
}

/// Takes one more row than the page holds: if it came, there is a next page.
pub(crate) fn split_page<T>(mut rows: Vec<T>, limit: i64) -> (Vec<T>, bool) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    (rows, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_with_reasons() {
        assert_eq!(parse_time("from", "2024-05-01T09:00:00+03:00").unwrap().to_rfc3339(), "2024-05-01T06:00:00+00:00");
        let e = parse_time("from", "yesterday").unwrap_err();
        assert!(e.message.contains("from=\"yesterday\" is not an RFC 3339 time"), "{}", e.message);
        assert!(required_time("to", None).unwrap_err().message.contains("to is required"));
        assert_eq!(page_limit(None, 500).unwrap(), 100);
        assert_eq!(page_limit(None, 50).unwrap(), 50);
        assert_eq!(page_limit(Some("500"), 500).unwrap(), 500);
        assert!(page_limit(Some("0"), 500).is_err());
        assert!(page_limit(Some("501"), 500).is_err());
        assert!(page_limit(Some("ten"), 500).is_err());
        assert_eq!(
            enum_list("state", Some("queued, closed"), &["queued", "closed"]).unwrap(),
            vec!["queued", "closed"]
        );
        assert!(enum_list("state", Some("open"), &["queued"]).unwrap_err().message.contains("not one of queued"));
        assert!(enum_list("state", None, &["queued"]).unwrap().is_empty());
        for empty in ["", ",,,", "queued,", " , "] {
            let e = enum_list("state", Some(empty), &["queued"]).unwrap_err();
            assert!(e.message.starts_with("`state`"), "{empty:?}: {}", e.message);
        }
        assert_eq!(split_page(vec![1, 2, 3], 2), (vec![1, 2], true));
        assert_eq!(split_page(vec![1, 2], 2), (vec![1, 2], false));
    }
}
