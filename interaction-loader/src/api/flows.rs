//! Bot flows (`schema::flow`): list, read (the newest or one version), save (every save is a new
//! version; a flow that does not hold together is refused with 422 naming each bad node), and
//! the greeting flow of a queue. An account names its own with `settings.greeting_flow`
//! (`PATCH /api/v1/accounts/{id}`), which wins over its default queue's. Every change is
//! audited in its own transaction.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use ops::input::{InputError, Kind, Validate, check, check_opt};
use schema::flow::{Flow, FlowError, Node};
use schema::store::{self, SaveFlowError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ApiJson, ApiPath, ErrorBody};

/// The code of a 422: the flow does not hold together.
pub const INVALID_FLOW: &str = "invalid_flow";

/// A flow as entered: where it starts, where a failing run goes, and its nodes by id (see
/// docs/bots.md for the node kinds).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowBody {
    /// The id of the node a run starts at.
    #[schema(example = "hello")]
    pub start: String,
    /// The queue a run that fails (an HTTP node down, a limit) hands off to.
    #[schema(example = "support")]
    pub fallback_queue: String,
    /// Node id → node: `{"kind": "send" | "wait" | "branch" | "set" | "http" | "handoff" | "end", ...}`.
    #[schema(value_type = Object, example = json!({
        "hello": {"kind": "send", "text": "Hi! Is it about an order?", "buttons": ["Yes", "No"], "next": "topic"},
        "topic": {"kind": "wait", "var": "topic", "timeout_s": 600, "next": "human", "on_timeout": "human"},
        "human": {"kind": "handoff", "queue": "support"}
    }))]
    pub nodes: serde_json::Map<String, serde_json::Value>,
}

impl Validate for FlowBody {
    fn validate(&self) -> Result<(), InputError> {
        check("start", Kind::Key, &self.start)?;
        check("fallback_queue", Kind::Key, &self.fallback_queue)?;
        for (id, node) in &self.nodes {
            check("nodes", Kind::Key, id)?;
            let Some(fields) = node.as_object() else { continue };
            for (field, value) in fields {
                let at = format!("nodes.{id}.{field}");
                match value {
                    serde_json::Value::String(v) => check(&at, node_field_kind(field), v)?,
                    serde_json::Value::Array(items) => {
                        for item in items {
                            match item {
                                serde_json::Value::String(v) => check(&at, Kind::Name, v)?,
                                serde_json::Value::Object(case) => {
                                    for (k, v) in case {
                                        if let Some(v) = v.as_str() {
                                            check(&format!("{at}.{k}"), Kind::Key, v)?;
                                        }
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// The input rule of a node's string field: texts people read (configuration: at most 8,192
/// characters, lines allowed), a URL, or an identifier (node ids, variables, queues, kinds).
fn node_field_kind(field: &str) -> Kind {
    match field {
        "text" | "value" => Kind::Value,
        "url" => Kind::Url,
        _ => Kind::Key,
    }
}

impl FlowBody {
    /// The flow, or every node that does not read as one (an unknown kind, a missing or
    /// unknown field), named.
    fn into_flow(self) -> Result<Flow, Vec<FlowError>> {
        let mut nodes = std::collections::BTreeMap::new();
        let mut errors = Vec::new();
        for (id, value) in self.nodes {
            match serde_json::from_value::<Node>(value) {
                Ok(node) => {
                    nodes.insert(id, node);
                }
                Err(e) => errors.push(FlowError { node: Some(id), message: e.to_string() }),
            }
        }
        if errors.is_empty() {
            Ok(Flow { start: self.start, fallback_queue: self.fallback_queue, nodes })
        } else {
            Err(errors)
        }
    }
}

fn refused(errors: &[FlowError]) -> ApiError {
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, INVALID_FLOW, format!("the flow is not valid: {}", list.join("; ")))
}

/// One version of a flow.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowVersion {
    #[schema(example = "greet")]
    pub name: String,
    #[schema(example = 3)]
    pub version: i32,
    /// The flow as saved (`start`, `fallback_queue`, `nodes`).
    #[schema(value_type = Object)]
    pub flow: serde_json::Value,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl From<store::StoredFlow> for FlowVersion {
    fn from(f: store::StoredFlow) -> Self {
        FlowVersion {
            name: f.name,
            version: f.version,
            flow: serde_json::to_value(&f.flow).expect("a flow serializes"),
            created_by: f.created_by,
            created_at: f.created_at,
        }
    }
}

/// A flow's newest version, without its nodes.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowSummary {
    pub name: String,
    pub version: i32,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FlowList {
    pub items: Vec<FlowSummary>,
}

/// The flow that greets a queue's new interactions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GreetingFlow {
    /// A flow's name (its newest version runs), or null: no greeting, interactions are queued.
    #[schema(example = "greet")]
    pub flow: Option<String>,
}

impl Validate for GreetingFlow {
    fn validate(&self) -> Result<(), InputError> {
        check_opt("flow", Kind::Key, self.flow.as_deref())
    }
}

/// Every flow's newest version.
#[utoipa::path(
    get,
    path = "/api/v1/flows",
    tag = "admin",
    responses(
        (status = 200, description = "Every flow, by name", body = FlowList),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn list(principal: Principal, State(state): State<AppState>) -> Result<Json<FlowList>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let mut conn = state.pool.acquire().await?;
    let items = store::list_flows(&mut conn)
        .await?
        .into_iter()
        .map(|f| FlowSummary { name: f.name, version: f.version, created_by: f.created_by, created_at: f.created_at })
        .collect();
    Ok(Json(FlowList { items }))
}

/// A flow's newest version.
#[utoipa::path(
    get,
    path = "/api/v1/flows/{name}",
    operation_id = "get_flow",
    tag = "admin",
    params(("name" = String, Path, description = "Flow name")),
    responses(
        (status = 200, description = "The newest version", body = FlowVersion),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
        (status = 404, description = "No such flow", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn get_one(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<FlowVersion>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let mut conn = state.pool.acquire().await?;
    Ok(Json(store::get_flow(&mut conn, &name, None).await?.into()))
}

/// One version of a flow (runs keep the version they started with).
#[utoipa::path(
    get,
    path = "/api/v1/flows/{name}/versions/{version}",
    operation_id = "get_flow_version",
    tag = "admin",
    params(
        ("name" = String, Path, description = "Flow name"),
        ("version" = i32, Path, description = "Version, from 1"),
    ),
    responses(
        (status = 200, description = "That version", body = FlowVersion),
        (status = 400, description = "A version that is not a number", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
        (status = 404, description = "No such flow or version", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn get_version(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<Json<FlowVersion>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let version: i32 = version
        .trim()
        .parse()
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| ApiError::bad_request(format!("version={version:?} must be a whole number from 1")))?;
    let mut conn = state.pool.acquire().await?;
    Ok(Json(store::get_flow(&mut conn, &name, Some(version)).await?.into()))
}

/// Saves a flow as its next version (the first is 1; audited). New interactions greeted by it
/// run the new version; runs under way keep theirs.
#[utoipa::path(
    put,
    path = "/api/v1/flows/{name}",
    operation_id = "put_flow",
    tag = "admin",
    params(("name" = String, Path, description = "Flow name: `a-z`, `0-9`, `_ . -`, at most 64")),
    request_body = FlowBody,
    responses(
        (status = 201, description = "Saved as a new version", body = FlowVersion),
        (status = 400, description = "A bad name or a body that is not a flow", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:write`", body = ErrorBody),
        (status = 422, description = "`invalid_flow`: the message names each bad node (an edge to no node, an empty text, a wait or HTTP timeout out of range, a queue that does not exist, a node nothing reaches...)", body = ErrorBody),
    ),
    security(("bearer" = ["admin:write"]))
)]
pub async fn put(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<FlowBody>,
) -> Result<(StatusCode, Json<FlowVersion>), ApiError> {
    principal.require(Scope::AdminWrite)?;
    store::check_flow_name(&name).map_err(ApiError::bad_request)?;
    let flow = body.into_flow().map_err(|errors| refused(&errors))?;
    let mut tx = state.pool.begin().await?;
    let saved = match store::save_flow(&mut tx, &name, &flow, &principal.actor).await {
        Ok(saved) => saved,
        Err(SaveFlowError::Refused(r)) => return Err(refused(&r.0)),
        Err(SaveFlowError::Store(e)) => return Err(e.into()),
    };
    store::record_audit(
        &mut tx,
        &store::AuditEntry {
            actor: &principal.actor,
            action: "flow.save",
            target_kind: "flow",
            target_id: &name,
            details: json!({ "version": saved.version }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(saved.into())))
}

/// The flow that greets a queue's new interactions.
#[utoipa::path(
    get,
    path = "/api/v1/queues/{name}/greeting-flow",
    operation_id = "get_queue_greeting_flow",
    tag = "admin",
    params(("name" = String, Path, description = "Queue name")),
    responses(
        (status = 200, description = "The queue's greeting flow, or null", body = GreetingFlow),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
        (status = 404, description = "No such queue", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn get_greeting(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<GreetingFlow>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let mut conn = state.pool.acquire().await?;
    Ok(Json(GreetingFlow { flow: store::queue_greeting_flow(&mut conn, &name).await? }))
}

/// Names the flow that greets a queue's new interactions (null: none; audited). The account's
/// `settings.greeting_flow` wins over its default queue's.
#[utoipa::path(
    put,
    path = "/api/v1/queues/{name}/greeting-flow",
    operation_id = "put_queue_greeting_flow",
    tag = "admin",
    params(("name" = String, Path, description = "Queue name")),
    request_body = GreetingFlow,
    responses(
        (status = 200, description = "The queue's greeting flow as it is now", body = GreetingFlow),
        (status = 400, description = "A bad body", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:write`", body = ErrorBody),
        (status = 404, description = "No such queue or flow", body = ErrorBody),
    ),
    security(("bearer" = ["admin:write"]))
)]
pub async fn put_greeting(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<GreetingFlow>,
) -> Result<Json<GreetingFlow>, ApiError> {
    principal.require(Scope::AdminWrite)?;
    let mut tx = state.pool.begin().await?;
    let previous = store::set_queue_greeting_flow(&mut tx, &name, body.flow.as_deref()).await?;
    store::record_audit(
        &mut tx,
        &store::AuditEntry {
            actor: &principal.actor,
            action: "queue.greeting_flow",
            target_kind: "queue",
            target_id: &name,
            details: json!({ "flow": body.flow, "previous": previous }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(body))
}
