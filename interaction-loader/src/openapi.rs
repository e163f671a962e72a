//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes and the
//! bodies' `ToSchema` derives, served at `/api/v1/openapi.json`. `docs/openapi.json` is a
//! checked-in copy; a test fails when the two differ (regenerate it with
//! `UPDATE_OPENAPI=1 cargo test -p interaction-loader --test api openapi`).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::error::{ErrorBody, ErrorDetail};
use crate::model;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard integrator API",
        description = "Interactions by period, messages, customers, exports, administration and \
                       webhooks of the Switchboard contact-centre hub.\n\n\
                       Every operation takes `Authorization: Bearer <credential>`: an API key \
                       (`sk_...`, with scopes) or a sign-on JWT with the `admin` role. Missing or \
                       bad credentials get 401, a credential without the operation's scope 403. \
                       Errors have the body `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}`.\n\n\
                       Webhook deliveries are `POST`ed as `WebhookEvent` bodies (a campaign's \
                       events as `WebhookCampaignEvent`), signed in the \
                       `Switchboard-Signature` header (see that schema).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        api::interactions::list,
        api::interactions::get_one,
        api::interactions::messages,
        api::interactions::events,
        api::customers::lookup,
        api::customers::get_one,
        api::exports::csv,
        api::exports::xlsx,
        api::stats::report,
        api::admin::list_accounts,
        api::admin::create_account,
        api::admin::get_account,
        api::admin::update_account,
        api::admin::list_agents,
        api::admin::get_agent,
        api::admin::put_agent,
        api::admin::list_queues,
        api::admin::get_queue,
        api::admin::put_queue,
        api::admin::list_keys,
        api::admin::create_key,
        api::admin::revoke_key,
        api::admin::audit_log,
        api::dead_letters::list,
        api::dead_letters::replay,
        api::fields::list,
        api::fields::put,
        api::fields::delete,
        api::templates::list,
        api::templates::put,
        api::templates::delete,
        api::flows::list,
        api::flows::get_one,
        api::flows::get_version,
        api::flows::put,
        api::flows::get_greeting,
        api::flows::put_greeting,
        api::campaigns::list,
        api::campaigns::create,
        api::campaigns::get_one,
        api::campaigns::add_recipients,
        api::campaigns::act,
        api::campaigns::recipients,
        api::campaigns::export_csv,
        api::campaigns::export_xlsx,
        api::campaigns::put_opt_out_words,
        api::webhooks::list,
        api::webhooks::create,
        api::webhooks::get_one,
        api::webhooks::update,
        api::webhooks::delete,
        api::webhooks::rotate_secret,
        api::webhooks::deliveries,
        api::webhooks::delivery,
        api::webhooks::redeliver,
        api::calls::of_interaction,
        api::calls::list,
        api::calls::get_one,
        api::calls::csv,
        api::calls::xlsx,
        api::calls::storage,
        api::calls::get_queue_video,
        api::calls::put_queue_video,
    ),
    components(schemas(ErrorBody, ErrorDetail, model::WebhookEvent, model::WebhookCampaignEvent, crate::auth::Scope)),
    modifiers(&Bearer),
    tags(
        (name = "interactions", description = "Interactions by period, one interaction, its messages and events"),
        (name = "customers", description = "Customers by phone or platform id"),
        (name = "exports", description = "The period query as CSV or Excel"),
        (name = "stats", description = "Statistics of a period, as tables (JSON, CSV or Excel): contacts, times, agents, calls"),
        (name = "admin", description = "Channel accounts, agents, queues, API keys, the audit log, dead letters, message templates, bot flows and greeting flows"),
        (name = "campaigns", description = "Outbound campaigns: audience (JSON or CSV), schedule, start, pause, resume, cancel, per-recipient report; stop words"),
        (name = "webhooks", description = "Subscriptions, deliveries and their attempts"),
        (name = "calls", description = "Video calls: participants, durations, quality, chat, recordings"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`sk_...`) with the scopes the operation names, or a sign-on JWT \
                         (role `admin`: every scope; `supervisor`: `interactions:read`).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as served: pretty JSON with a final newline.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut text = doc.to_pretty_json().expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

/// `GET /api/v1/openapi.json` (no credentials needed).
pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}
