//! The REST API's bodies, as the OpenAPI document describes them. They mirror the domain types
//! of `schema` field for field (same names, same JSON) and add what only integrators see; the
//! `From` impls are the one place the two meet.

use chrono::{DateTime, Utc};
use schema::domain::{
    self, AgentStatus, AuthorKind, Channel, Direction, InteractionState, MessageKind, MessageStatus, RoutingMode,
};
use schema::store;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use uuid::Uuid;

type JsonObject = serde_json::Map<String, serde_json::Value>;

/// An inline `string` schema listing a domain enum's values.
macro_rules! enum_schema {
    ($fn:ident, $ty:ty, $doc:literal) => {
        fn $fn() -> ObjectBuilder {
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::String))
                .description(Some($doc))
                .enum_values(Some(<$ty>::ALL.iter().map(|v| v.as_str())))
        }
    };
}

enum_schema!(channel_schema, Channel, "The messenger (or web chat, or video) of the account.");
enum_schema!(state_schema, InteractionState, "Where the interaction is in its life.");
enum_schema!(direction_schema, Direction, "`in`: from the customer; `out`: to the customer.");
enum_schema!(author_kind_schema, AuthorKind, "Who wrote the message.");
enum_schema!(message_kind_schema, MessageKind, "What the message carries.");
enum_schema!(
    message_status_schema,
    MessageStatus,
    "`received` for inbound messages; outbound ones go queued, sent, delivered, read, or failed."
);
enum_schema!(agent_status_schema, AgentStatus, "The agent's availability.");
enum_schema!(routing_mode_schema, RoutingMode, "`auto`: offered to agents; `manual`: agents take them.");

// ----------------------------------------------------------------------- interactions --

/// The customer of an interaction, as known on its account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CustomerRef {
    pub id: Uuid,
    pub name: String,
    /// The customer's user id on the platform of the interaction's account.
    pub external_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

impl From<domain::CustomerRef> for CustomerRef {
    fn from(c: domain::CustomerRef) -> Self {
        CustomerRef { id: c.id, name: c.name, external_id: c.external_id, phone: c.phone, avatar_url: c.avatar_url }
    }
}

/// One interaction of a period.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InteractionSummary {
    pub id: Uuid,
    #[schema(schema_with = channel_schema)]
    pub channel: Channel,
    pub account_id: Uuid,
    pub customer: CustomerRef,
    #[schema(schema_with = state_schema)]
    pub state: InteractionState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The agent it is assigned (or offered) to now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The last agent it was assigned to (also after it closed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_agent: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<String>,
    /// The customer's first message within the requested period: the sort key.
    pub first_customer_message_at: DateTime<Utc>,
    /// The customer's latest message (possibly after the period).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_customer_message_at: Option<DateTime<Utc>>,
    /// The customer's latest rating (1-5) in a post-call survey.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating: Option<i16>,
    /// Custom fields set by agents or bots.
    #[schema(value_type = Object)]
    pub fields: JsonObject,
}

impl From<store::PeriodRow> for InteractionSummary {
    fn from(row: store::PeriodRow) -> Self {
        let i = row.interaction;
        InteractionSummary {
            id: i.id,
            channel: i.channel,
            account_id: i.account_id,
            customer: i.customer.into(),
            state: i.state,
            queue: i.queue,
            agent: i.agent,
            last_agent: row.last_agent,
            created_at: i.created_at,
            closed_at: i.closed_at,
            close_reason: row.close_reason,
            first_customer_message_at: row.first_customer_message_at,
            last_customer_message_at: row.last_customer_message_at,
            rating: row.rating,
            fields: i.fields,
        }
    }
}

/// A page of the period query.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InteractionPage {
    pub items: Vec<InteractionSummary>,
    /// Pass as `cursor` (with the same `from`, `to` and filters) for the next page; absent on
    /// the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One interaction.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InteractionDetail {
    pub id: Uuid,
    #[schema(schema_with = channel_schema)]
    pub channel: Channel,
    pub account_id: Uuid,
    pub customer: CustomerRef,
    #[schema(schema_with = state_schema)]
    pub state: InteractionState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_agent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_customer_message_at: Option<DateTime<Utc>>,
    /// Messages in either direction.
    pub message_count: i64,
    /// The customer's latest rating (1-5) in a post-call survey (the call's answers:
    /// `GET /api/v1/interactions/{id}/calls`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating: Option<i16>,
    #[schema(value_type = Object)]
    pub fields: JsonObject,
}

impl From<store::InteractionDetail> for InteractionDetail {
    fn from(d: store::InteractionDetail) -> Self {
        let i = d.interaction;
        InteractionDetail {
            id: i.id,
            channel: i.channel,
            account_id: i.account_id,
            customer: i.customer.into(),
            state: i.state,
            queue: i.queue,
            agent: i.agent,
            last_agent: d.last_agent,
            created_at: i.created_at,
            updated_at: d.updated_at,
            closed_at: i.closed_at,
            close_reason: d.close_reason,
            last_customer_message_at: d.last_customer_message_at,
            message_count: d.message_count,
            rating: d.rating,
            fields: i.fields,
        }
    }
}

// --------------------------------------------------------------------------- messages --

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Author {
    #[schema(schema_with = author_kind_schema)]
    pub kind: AuthorKind,
    /// Customer id, agent login, bot name.
    pub id: String,
    pub name: String,
}

/// A file attached to a message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileRef {
    pub id: Uuid,
    pub name: String,
    pub mime: String,
    pub size: i64,
    /// Where the hub's file server serves it (`/api/v1/files/{id}`, relative to the hub).
    #[schema(example = "/api/v1/files/0190b8c1-7c4e-7a1e-9d7a-3f2b1c0d9e8f")]
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Contact {
    pub phone: String,
    pub name: String,
}

/// Where a forwarded message came from, as far as the platform tells.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Forwarded {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub id: Uuid,
    pub interaction_id: Uuid,
    #[schema(schema_with = direction_schema)]
    pub direction: Direction,
    pub author: Author,
    #[schema(schema_with = message_kind_schema)]
    pub kind: MessageKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub files: Vec<FileRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded: Option<Forwarded>,
    /// Buttons sent with an outbound message (`{"type": "reply" | "inline" | "remove", ...}`,
    /// as in the agent API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyboard: Option<serde_json::Value>,
    #[schema(schema_with = message_status_schema)]
    pub status: MessageStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted: bool,
}

impl From<domain::Message> for Message {
    fn from(m: domain::Message) -> Self {
        Message {
            id: m.id,
            interaction_id: m.interaction_id,
            direction: m.direction,
            author: Author { kind: m.author.kind, id: m.author.id, name: m.author.name },
            kind: m.kind,
            text: m.text,
            files: m
                .files
                .into_iter()
                .map(|f| FileRef {
                    url: domain::FileRef::url_for(f.id),
                    id: f.id,
                    name: f.name,
                    mime: f.mime,
                    size: f.size,
                })
                .collect(),
            location: m.location.map(|l| Location { lat: l.lat, lon: l.lon, address: l.address }),
            contact: m.contact.map(|c| Contact { phone: c.phone, name: c.name }),
            reply_to: m.reply_to,
            forwarded: m.forwarded.map(|f| Forwarded { from_name: f.from_name, date: f.date }),
            keyboard: m.keyboard.map(|k| serde_json::to_value(k).expect("keyboards serialize")),
            status: m.status,
            error: m.error,
            client_msg_id: m.client_msg_id,
            created_at: m.created_at,
            edited_at: m.edited_at,
            deleted: m.deleted,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    pub items: Vec<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One entry of an interaction's event log (the same events webhooks carry).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InteractionEvent {
    pub interaction_id: Uuid,
    /// Gap-free position in the interaction's log, from 1.
    pub seq: i64,
    #[schema(example = "interaction.assigned")]
    pub kind: String,
    /// Who caused it: an agent login, `customer`, or absent for the system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl From<store::InteractionEvent> for InteractionEvent {
    fn from(e: store::InteractionEvent) -> Self {
        InteractionEvent {
            interaction_id: e.interaction_id,
            seq: e.seq,
            kind: e.kind,
            actor: e.actor,
            data: e.data,
            created_at: e.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<InteractionEvent>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<i64>,
}

// -------------------------------------------------------------------------- customers --

/// How a customer is known on one channel account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Identity {
    pub account_id: Uuid,
    #[schema(example = "telegram")]
    pub channel: String,
    pub external_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Customer {
    pub id: Uuid,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub identities: Vec<Identity>,
}

impl From<store::CustomerRecord> for Customer {
    fn from(c: store::CustomerRecord) -> Self {
        Customer {
            id: c.id,
            name: c.name,
            phone: c.phone,
            avatar_url: c.avatar_url,
            created_at: c.created_at,
            identities: c
                .identities
                .into_iter()
                .map(|i| Identity {
                    account_id: i.account_id,
                    channel: i.channel,
                    external_id: i.external_id,
                    display_name: i.display_name,
                    username: i.username,
                    phone: i.phone,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CustomerList {
    pub items: Vec<Customer>,
}

// ------------------------------------------------------------------------------ stats --

/// One column of a statistics table.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatsColumn {
    /// The column's name (the CSV header).
    #[schema(example = "contacts")]
    pub name: String,
    /// `time` (RFC 3339 UTC), `text`, `count`, `seconds` or `ratio` (0 to 1).
    #[schema(example = "count")]
    pub kind: String,
    /// What it holds, for people.
    pub title: String,
}

/// A statistics report: one table, the same rows as its CSV and Excel forms.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatsTable {
    /// `volume`, `times`, `agents` or `calls`.
    pub report: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// `hour` or `day`.
    pub bucket: String,
    /// The time zone of the buckets' boundaries.
    pub tz: String,
    /// The start of every bucket of the period, oldest first (rows exist only for buckets with
    /// data).
    pub buckets: Vec<DateTime<Utc>>,
    pub columns: Vec<StatsColumn>,
    /// One array per row, a cell per column: a string, a number or null (no value, e.g. a
    /// median of nothing).
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Vec<serde_json::Value>>,
}

// ------------------------------------------------------------------------------ admin --

/// A channel account. `credentials` are masked: every value is `****`, followed by its last four
/// characters when it is at least 12 long.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub id: Uuid,
    #[schema(schema_with = channel_schema)]
    pub channel: Channel,
    pub name: String,
    pub enabled: bool,
    pub default_queue: String,
    pub created_at: DateTime<Utc>,
    #[schema(value_type = Object, example = json!({"bot_token": "****Xk3Q"}))]
    pub credentials: JsonObject,
    #[schema(value_type = Object)]
    pub settings: JsonObject,
}

impl From<store::AccountView> for Account {
    fn from(v: store::AccountView) -> Self {
        Account {
            id: v.account.id,
            channel: v.account.channel,
            name: v.account.name,
            enabled: v.account.enabled,
            default_queue: v.account.default_queue,
            created_at: v.account.created_at,
            credentials: v.credentials.as_object().cloned().unwrap_or_default(),
            settings: v.settings.as_object().cloned().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountList {
    pub items: Vec<Account>,
}

/// A channel account to create.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    #[schema(schema_with = channel_schema)]
    pub channel: Channel,
    pub name: String,
    pub default_queue: String,
    /// The platform credentials (bot token, app secret...): stored as given, never returned.
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"bot_token": "123456:ABC-DEF"}))]
    pub credentials: JsonObject,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: JsonObject,
}

/// Changes to an account; absent fields stay as they are. `credentials` replace the stored ones
/// whole.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountPatch {
    pub name: Option<String>,
    /// `false` stops the account's connector from taking and sending messages.
    pub enabled: Option<bool>,
    pub default_queue: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<JsonObject>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<JsonObject>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Agent {
    pub login: String,
    pub name: String,
    /// Shown to customers beside the agent's name where the platform shows it (Viber, web chat).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    /// `agent`, `supervisor`, `admin`.
    pub roles: Vec<String>,
    /// The queues the agent serves.
    pub queues: Vec<String>,
    /// Concurrent interactions at most, over all channels.
    pub max_interactions: i32,
    /// Optional caps per channel, e.g. `{"telegram": 2}`.
    #[schema(value_type = Object)]
    pub channel_capacity: JsonObject,
    #[schema(schema_with = agent_status_schema)]
    pub status: AgentStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub status_changed_at: DateTime<Utc>,
}

impl From<domain::Agent> for Agent {
    fn from(a: domain::Agent) -> Self {
        Agent {
            login: a.login,
            name: a.name,
            avatar_url: a.avatar_url,
            roles: a.roles,
            queues: a.queues,
            max_interactions: a.max_interactions,
            channel_capacity: a.channel_capacity,
            status: a.status,
            status_reason: a.status_reason,
            status_changed_at: a.status_changed_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentList {
    pub items: Vec<Agent>,
}

/// An agent's settings (`PUT` creates the agent or replaces them; its status is left alone).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    pub name: String,
    /// An `https` (or `http`) URL of a square picture, shown to customers beside the agent's name
    /// where the platform shows it (Viber: at most 100 KB).
    #[serde(default)]
    pub avatar_url: Option<String>,
    /// Any of `agent`, `supervisor`, `admin`; `["agent"]` when absent.
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub queues: Vec<String>,
    #[schema(minimum = 0, maximum = 100)]
    pub max_interactions: i32,
    /// Caps per channel (`{"telegram": 2}`), each at most `max_interactions`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub channel_capacity: JsonObject,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Queue {
    pub name: String,
    #[schema(schema_with = routing_mode_schema)]
    pub routing_mode: RoutingMode,
    /// How long an agent has to accept an offer.
    pub offer_timeout_ms: i32,
}

impl From<domain::Queue> for Queue {
    fn from(q: domain::Queue) -> Self {
        Queue { name: q.name, routing_mode: q.routing_mode, offer_timeout_ms: q.offer_timeout_ms }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueList {
    pub items: Vec<Queue>,
}

/// A queue's settings (`PUT` creates the queue or replaces them).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    #[schema(schema_with = routing_mode_schema)]
    pub routing_mode: RoutingMode,
    #[schema(minimum = 1000, maximum = 3600000)]
    pub offer_timeout_ms: i32,
}

/// An API key as listed: its first characters, never the key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    /// The key's first characters (`sk_` and six more), to tell keys apart.
    #[schema(example = "sk_Zr4Qe1")]
    pub prefix: String,
    #[schema(example = json!(["interactions:read"]))]
    pub scopes: Vec<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<store::ApiKey> for ApiKey {
    fn from(k: store::ApiKey) -> Self {
        ApiKey {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes,
            created_by: k.created_by,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    pub name: String,
    /// Any of `interactions:read`, `admin:read`, `admin:write`, `webhooks:read`,
    /// `webhooks:write`.
    #[schema(example = json!(["interactions:read"]))]
    pub scopes: Vec<String>,
}

/// A created key. `key` is shown this once: only its hash is stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiKey {
    #[schema(example = "sk_Zr4Qe1...")]
    pub key: String,
    pub api_key: ApiKey,
}

/// One change made through the API.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `key:<api key id>`, `jwt:<subject>` or `bootstrap`.
    pub actor: String,
    #[schema(example = "account.update")]
    pub action: String,
    #[schema(example = "account")]
    pub target_kind: String,
    pub target_id: String,
    /// What changed (never a secret: credentials appear by key name only).
    pub details: serde_json::Value,
}

impl From<store::AuditRecord> for AuditRecord {
    fn from(r: store::AuditRecord) -> Self {
        AuditRecord {
            id: r.id,
            at: r.at,
            actor: r.actor,
            action: r.action,
            target_kind: r.target_kind,
            target_id: r.target_id,
            details: r.details,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

// ----------------------------------------------------------------------- dead letters --

/// A platform update a connector could never store, parked so the account went on.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    pub id: i64,
    pub account_id: Uuid,
    /// The platform's id of the update (Telegram `update_id`, Viber message token, ...).
    pub update_key: String,
    /// The raw payload as the platform sent it, as text (bytes that are not UTF-8 shown as U+FFFD;
    /// at most 64 KiB here, the whole payload is kept).
    pub payload: String,
    /// The payload's size in bytes.
    pub payload_bytes: usize,
    /// Why it could not be stored.
    pub error: String,
    /// Failed tries before it was parked (and replays since).
    pub attempts: i32,
    /// `parked`, `replay` (asked for, not done yet) or `replayed`.
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a dead letter's payload shows at most.
const PAYLOAD_SHOWN: usize = 64 * 1024;

impl From<schema::store::DeadLetter> for DeadLetter {
    fn from(d: schema::store::DeadLetter) -> Self {
        let shown = &d.payload[..d.payload.len().min(PAYLOAD_SHOWN)];
        DeadLetter {
            id: d.id,
            account_id: d.account_id,
            update_key: d.update_key,
            payload: String::from_utf8_lossy(shown).into_owned(),
            payload_bytes: d.payload.len(),
            error: d.error,
            attempts: d.attempts,
            state: d.state,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterPage {
    pub items: Vec<DeadLetter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

// --------------------------------------------------------------------------- webhooks --

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    #[schema(example = json!(["interaction.closed", "message.new"]))]
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<store::Subscription> for Webhook {
    fn from(s: store::Subscription) -> Self {
        Webhook {
            id: s.id,
            url: crate::webhooks::target::without_credentials(&s.url),
            events: s.events,
            description: s.description,
            enabled: s.enabled,
            created_by: s.created_by,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<Webhook>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `http` or `https` URL that receives `POST`s.
    pub url: String,
    /// Event types (see the `WebhookEvent` schema), or `["*"]` for all.
    pub events: Vec<String>,
    #[serde(default)]
    pub description: String,
}

/// A created (or re-keyed) subscription. `secret` is shown this once; it signs every delivery.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookWithSecret {
    #[schema(example = "whsec_3q2+7w...")]
    pub secret: String,
    pub webhook: Webhook,
}

/// Changes to a subscription; absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    /// A disabled subscription gets no new deliveries and its pending ones wait.
    pub enabled: Option<bool>,
}

/// One event for one subscription: pending (retrying with backoff), delivered, or failed
/// (retried for the whole retry window without a 2xx).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: Uuid,
    /// The event's id, as in the `Switchboard-Event-Id` header.
    pub event_id: String,
    pub event_type: String,
    /// The interaction whose event it is; absent for a campaign's event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interaction_id: Option<Uuid>,
    /// The campaign whose event it is (`campaign.started`, `campaign.finished`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<Uuid>,
    #[schema(example = "pending")]
    pub state: String,
    /// Attempts made so far.
    pub attempts: i32,
    /// When the next attempt is due (pending deliveries only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<store::Delivery> for Delivery {
    fn from(d: store::Delivery) -> Self {
        Delivery {
            id: d.id,
            webhook_id: d.subscription_id,
            event_id: crate::webhooks::event_id(d.interaction_id.or(d.campaign_id).unwrap_or_default(), d.seq),
            event_type: d.event_type,
            interaction_id: d.interaction_id,
            campaign_id: d.campaign_id,
            state: d.state,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    /// The receiver's HTTP status, if it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryDetail {
    pub delivery: Delivery,
    pub attempts: Vec<Attempt>,
}

impl From<(store::Delivery, Vec<store::Attempt>)> for DeliveryDetail {
    fn from((delivery, attempts): (store::Delivery, Vec<store::Attempt>)) -> Self {
        DeliveryDetail {
            delivery: delivery.into(),
            attempts: attempts
                .into_iter()
                .map(|a| Attempt {
                    attempt: a.attempt,
                    attempted_at: a.attempted_at,
                    status_code: a.status_code,
                    error: a.error,
                    duration_ms: a.duration_ms,
                })
                .collect(),
        }
    }
}

/// The body of every webhook `POST`. Headers: `Switchboard-Event-Id` (the `id` here; the same
/// on every retry, so receivers can drop repeats), `Switchboard-Event-Type`, and
/// `Switchboard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the
/// subscription's secret>`. Answer 2xx within the timeout; anything else is retried with
/// exponential backoff for at least 24 hours.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookEvent {
    /// `<interaction id>:<seq>`: unique per event.
    #[schema(example = "0190b8c1-7c4e-7a1e-9d7a-3f2b1c0d9e8f:3")]
    pub id: String,
    /// `interaction.created`, `interaction.reopened`, `interaction.offered`,
    /// `interaction.declined`, `interaction.offer_expired`, `interaction.assigned`,
    /// `interaction.transferred`, `interaction.joined`, `interaction.closed`,
    /// `interaction.rated` (the customer answered the post-call survey), `interaction.handoff`
    /// (a bot flow handed the conversation to a queue), `message.new`, `message.edited`,
    /// `message.deleted`, `video.room`, `video.sms`. A campaign's events have their own body,
    /// `WebhookCampaignEvent`.
    #[schema(example = "interaction.closed")]
    #[serde(rename = "type")]
    pub event_type: String,
    pub interaction_id: Uuid,
    /// Position in the interaction's event log.
    pub seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    pub created_at: DateTime<Utc>,
    /// As in the interaction's event log (`GET /api/v1/interactions/{id}/events`).
    pub data: serde_json::Value,
}

/// The body of a campaign's webhook delivery: `campaign.started` (the campaign went from draft to
/// running; its recipients queued) or `campaign.finished` (its last message was sent or settled),
/// signed like every delivery.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookCampaignEvent {
    /// `<campaign id>:<seq>`: unique per event.
    #[schema(example = "0190b8c1-7c4e-7a1e-9d7a-3f2b1c0d9e8f:2")]
    pub id: String,
    /// `campaign.started` or `campaign.finished`.
    #[schema(example = "campaign.finished")]
    #[serde(rename = "type")]
    pub event_type: String,
    pub campaign_id: Uuid,
    /// Position in the campaign's event log.
    pub seq: i64,
    pub created_at: DateTime<Utc>,
    /// `campaign` (`id`, `account_id`, `name`, `state`, `started_at`, `finished_at`, `flow`),
    /// `counts` (recipients per state: `queued`, `sent`, `delivered`, `read`, `replied`,
    /// `failed`, `skipped`) and `total`, as they were when the event was written.
    pub data: serde_json::Value,
}

/// An Excel workbook (`.xlsx`), as bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct XlsxFile(pub Vec<u8>);

// ------------------------------------------------------------------------ input rules --
// The kind of each string field of the request bodies (`ops::input`); `ApiJson` checks them.

use ops::input::{InputError, Kind, Validate, check, check_each, check_opt, non_empty};

/// An account's credentials and settings are free-form: every key and string in them is a
/// [`Kind::Value`].
fn check_config(field: &str, value: &JsonObject) -> Result<(), InputError> {
    ops::input::check_json_as(field, Kind::Value, &serde_json::Value::Object(value.clone()))
}

impl Validate for NewAccount {
    fn validate(&self) -> Result<(), InputError> {
        check("name", Kind::Name, &self.name)?;
        check("default_queue", Kind::Key, &self.default_queue)?;
        check_config("credentials", &self.credentials)?;
        check_config("settings", &self.settings)
    }
}

impl Validate for AccountPatch {
    fn validate(&self) -> Result<(), InputError> {
        check_opt("name", Kind::Name, self.name.as_deref())?;
        check_opt("default_queue", Kind::Key, self.default_queue.as_deref())?;
        if let Some(credentials) = &self.credentials {
            check_config("credentials", credentials)?;
        }
        if let Some(settings) = &self.settings {
            check_config("settings", settings)?;
        }
        Ok(())
    }
}

impl Validate for AgentSettings {
    fn validate(&self) -> Result<(), InputError> {
        check("name", Kind::Name, &self.name)?;
        check_each("roles", Kind::Key, &self.roles)?;
        check_each("queues", Kind::Key, &self.queues)?;
        check_each("channel_capacity", Kind::Key, &self.channel_capacity.keys().collect::<Vec<_>>())
    }
}

ops::no_strings!(QueueSettings);

impl Validate for NewApiKey {
    fn validate(&self) -> Result<(), InputError> {
        check("name", Kind::Name, &self.name)?;
        non_empty("scopes", &self.scopes)?;
        check_each("scopes", Kind::Key, &self.scopes)
    }
}

impl Validate for NewWebhook {
    fn validate(&self) -> Result<(), InputError> {
        check("url", Kind::Url, &self.url)?;
        non_empty("events", &self.events)?;
        check_each("events", Kind::Key, &self.events)?;
        check("description", Kind::Note, &self.description)
    }
}

impl Validate for WebhookPatch {
    fn validate(&self) -> Result<(), InputError> {
        check_opt("url", Kind::Url, self.url.as_deref())?;
        if let Some(events) = &self.events {
            non_empty("events", events)?;
            check_each("events", Kind::Key, events)?;
        }
        check_opt("description", Kind::Note, self.description.as_deref())
    }
}
