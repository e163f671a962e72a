//! Customer lookup by phone or platform id.

use axum::Json;
use axum::extract::State;
use schema::store::CustomerLookup;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{optional_uuid, parse_uuid};
use crate::AppState;
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use crate::model::{Customer, CustomerList};
use ops::input::{InputError, Kind, Validate, check_opt};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LookupParams {
    /// A phone number; matched as given and as its digits (with and without `+`).
    #[param(example = "+79991234567")]
    phone: Option<String>,
    /// The customer's user id on a platform.
    external_id: Option<String>,
    /// Narrows `external_id` to one channel account.
    #[param(value_type = Option<Uuid>)]
    account_id: Option<String>,
}

impl Validate for LookupParams {
    fn validate(&self) -> Result<(), InputError> {
        check_opt("phone", Kind::Phone, self.phone.as_deref())?;
        check_opt("external_id", Kind::Key, self.external_id.as_deref())
    }
}

/// Customers by phone or by platform user id (give exactly one of `phone` and `external_id`),
/// with every identity they have on every account.
#[utoipa::path(
    get,
    path = "/api/v1/customers",
    tag = "customers",
    params(LookupParams),
    responses(
        (status = 200, description = "Matching customers, oldest first (at most 100)", body = CustomerList),
        (status = 400, description = "Neither or both of phone and external_id", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `interactions:read`", body = ErrorBody),
    ),
    security(("bearer" = ["interactions:read"]))
)]
pub async fn lookup(
    principal: Principal,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<LookupParams>,
) -> Result<Json<CustomerList>, ApiError> {
    principal.require(Scope::InteractionsRead)?;
    let account_id = optional_uuid("account_id", params.account_id.as_deref())?;
    let lookup = match (params.phone, params.external_id) {
        (Some(phone), None) if account_id.is_none() => CustomerLookup::Phone(phone),
        (None, Some(external_id)) => CustomerLookup::ExternalId { external_id, account_id },
        (Some(_), None) => return Err(ApiError::bad_request("account_id narrows external_id only")),
        _ => return Err(ApiError::bad_request("give exactly one of phone and external_id")),
    };
    let mut conn = state.pool.acquire().await?;
    let found = schema::store::find_customers(&mut conn, &lookup).await?;
    Ok(Json(CustomerList { items: found.into_iter().map(Into::into).collect() }))
}

/// One customer.
#[utoipa::path(
    get,
    path = "/api/v1/customers/{id}",
    tag = "customers",
    params(("id" = Uuid, Path, description = "Customer id")),
    responses(
        (status = 200, description = "The customer", body = Customer),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `interactions:read`", body = ErrorBody),
        (status = 404, description = "No such customer", body = ErrorBody),
    ),
    security(("bearer" = ["interactions:read"]))
)]
pub async fn get_one(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Customer>, ApiError> {
    principal.require(Scope::InteractionsRead)?;
    let id = parse_uuid("id", &id)?;
    let mut conn = state.pool.acquire().await?;
    let found = schema::store::find_customers(&mut conn, &CustomerLookup::Id(id)).await?;
    found
        .into_iter()
        .next()
        .map(|c| Json(c.into()))
        .ok_or_else(|| ApiError::not_found(format!("customer {id} not found")))
}
