//! Agent commands: decode `args`, check who may do what, call the store in one transaction,
//! wake whoever must know after the commit, and return the reply's `data`.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use schema::domain::{AgentStatus, Channel, Keyboard};
use schema::store::{self, CustomerKey, OfferEnd, OutboundMessage, TransferTarget};

use crate::AppState;
use crate::error::{ApiError, code};
use crate::wake::wake_agents;
use ops::auth::Claims;
use schema::topics;

/// What a session keeps between commands.
#[derive(Debug, Default)]
pub struct SessionState {
    /// The last event `seq` sent on this socket; `None` until `hello`.
    pub cursor: Option<i64>,
}

/// Every command the API knows (extensions beyond the fixed contract are marked in the docs).
pub const COMMANDS: &[&str] = &[
    "hello",
    "agent.set_status",
    "interaction.accept",
    "interaction.decline",
    "interaction.take",
    "interaction.list_queued",
    "interaction.transfer",
    "interaction.close",
    "interaction.start",
    "interaction.join",
    "message.send",
    "message.edit",
    "message.delete",
    "message.read",
    "interaction.typing",
    "history.get",
    "supervisor.overview",
    "video.start",
];

fn args<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    let value = if value.is_null() { json!({}) } else { value };
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("bad args: {e}")))
}

/// Runs one command for the agent behind `claims`.
pub async fn dispatch(
    state: &AppState,
    claims: &Claims,
    session: &mut SessionState,
    cmd: &str,
    raw: Value,
) -> Result<Value, ApiError> {
    if cmd != "hello" && session.cursor.is_none() && COMMANDS.contains(&cmd) {
        return Err(ApiError::new(code::HELLO_REQUIRED, "send `hello` first"));
    }
    let me = claims.sub.as_str();
    match cmd {
        "hello" => hello(state, me, session, args(raw)?).await,
        "agent.set_status" => set_status(state, me, args(raw)?).await,
        "interaction.accept" => {
            let a: InteractionArgs = args(raw)?;
            let mut tx = state.pool.begin().await?;
            let done = store::accept(&mut tx, a.interaction_id, me).await?;
            finish(state, tx, done, false).await
        }
        "interaction.take" => {
            let a: InteractionArgs = args(raw)?;
            let mut tx = state.pool.begin().await?;
            let done = store::take(&mut tx, a.interaction_id, me, claims.has_role("supervisor")).await?;
            finish(state, tx, done, false).await
        }
        "interaction.decline" => {
            let a: InteractionArgs = args(raw)?;
            let mut tx = state.pool.begin().await?;
            let done = store::return_offer(&mut tx, a.interaction_id, me, OfferEnd::Declined).await?;
            finish(state, tx, done, true).await.map(|_| json!({}))
        }
        "interaction.transfer" => {
            let a: TransferArgs = args(raw)?;
            let target = match (a.to_agent, a.to_queue) {
                (Some(agent), None) => TransferTarget::Agent(agent),
                (None, Some(queue)) => TransferTarget::Queue(queue),
                _ => return Err(ApiError::bad_request("give exactly one of `to_agent` and `to_queue`")),
            };
            let mut tx = state.pool.begin().await?;
            let done = store::transfer(&mut tx, a.interaction_id, me, &target, a.note.as_deref()).await?;
            finish(state, tx, done, true).await
        }
        "interaction.close" => {
            let a: CloseArgs = args(raw)?;
            let mut tx = state.pool.begin().await?;
            let done = store::close(&mut tx, a.interaction_id, me, a.reason.as_deref()).await?;
            let closed = finish(state, tx, done, true).await;
            if closed.is_ok() && !state.config.video_url.is_empty() {
                // a call of the interaction ended with it: the video nodes close its sockets
                state.coord.notify(topics::VIDEO_ROOMS);
            }
            closed
        }
        "interaction.join" => {
            let a: JoinArgs = args(raw)?;
            if !claims.has_role("supervisor") {
                return Err(ApiError::forbidden("interaction.join needs the supervisor role"));
            }
            if a.mode != "monitor" && a.mode != "participate" {
                return Err(ApiError::bad_request("mode must be `monitor` or `participate`"));
            }
            let mut tx = state.pool.begin().await?;
            let done = store::join(&mut tx, a.interaction_id, me, &a.mode).await?;
            finish(state, tx, done, false).await
        }
        "interaction.list_queued" => {
            let a: ListQueuedArgs = args(raw)?;
            let mut conn = state.pool.acquire().await?;
            let supervisor = claims.has_role("supervisor");
            let served = store::get_agent(&mut conn, me).await?.queues;
            let queues = match a.queue {
                Some(q) if supervisor || served.contains(&q) => vec![q],
                Some(q) => return Err(ApiError::forbidden(format!("you do not serve queue {q:?}"))),
                // an empty list means every queue: only supervisors see them all
                None if supervisor => Vec::new(),
                None if served.is_empty() => return Ok(json!({ "interactions": [] })),
                None => served,
            };
            let list = store::queued_interactions(&mut conn, &queues, a.limit.unwrap_or(100).clamp(1, 500)).await?;
            Ok(json!({ "interactions": list }))
        }
        "interaction.start" => start(state, claims, args(raw)?).await,
        "message.send" => send(state, claims, args(raw)?).await,
        "message.edit" => {
            let a: EditArgs = args(raw)?;
            edit_or_delete(state, me, a.message_id, Some(a.text)).await
        }
        "message.delete" => {
            let a: MessageArgs = args(raw)?;
            edit_or_delete(state, me, a.message_id, None).await.map(|_| json!({}))
        }
        "message.read" => crate::receipts::read(state, claims, args(raw)?).await,
        "interaction.typing" => crate::receipts::typing(state, claims, args(raw)?).await,
        "history.get" => history(state, claims, args(raw)?).await,
        "supervisor.overview" => {
            let _: NoArgs = args(raw)?;
            if !claims.has_role("supervisor") {
                return Err(ApiError::forbidden("supervisor.overview needs the supervisor role"));
            }
            let mut conn = state.pool.acquire().await?;
            Ok(store::overview(&mut conn).await?)
        }
        "video.start" => start_video(state, claims, args(raw)?).await,
        other => Err(ApiError::new(
            code::UNKNOWN_COMMAND,
            format!("unknown command {other:?}; known: {}", COMMANDS.join(", ")),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VideoArgs {
    interaction_id: Uuid,
    mode: Option<schema::domain::VideoMode>,
    quality: Option<schema::domain::VideoQuality>,
}

/// `video.start`: the room, its invitation through the interaction's channel, the links.
async fn start_video(state: &AppState, claims: &Claims, a: VideoArgs) -> Result<Value, ApiError> {
    let config = &state.config;
    if config.video_url.is_empty() {
        return Err(ApiError::new(code::VIDEO_UNAVAILABLE, "the video channel is not enabled on this hub"));
    }
    let quality = match a.quality {
        Some(q) => q,
        None => config.video_quality.parse().unwrap_or(schema::domain::VideoQuality::P720),
    };
    let agent_name = claims.name.as_deref().unwrap_or(&claims.sub);
    let (new, customer_link) = store::NewRoom::with_new_link(
        a.interaction_id,
        &claims.sub,
        agent_name,
        a.mode.unwrap_or(schema::domain::VideoMode::TwoWay),
        quality,
        &config.video_url,
        std::time::Duration::from_secs(config.video_link_ttl_s),
    );
    let mut tx = state.pool.begin().await?;
    let started = store::start_room(&mut tx, &new).await?;
    tx.commit().await?;
    wake_agents(state.coord.as_ref(), &started.audience);
    if started.invitation.created {
        wake_agents(state.coord.as_ref(), &started.invitation.audience);
        state.coord.notify(&topics::account(started.invitation.account_id));
    }
    Ok(started.reply(&config.video_url, &customer_link))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HelloArgs {
    resume_from: Option<i64>,
}

async fn hello(state: &AppState, me: &str, session: &mut SessionState, a: HelloArgs) -> Result<Value, ApiError> {
    if session.cursor.is_some() {
        return Err(ApiError::bad_request(
            "hello was already said on this socket; to resume from another seq, reconnect",
        ));
    }
    let mut conn = state.pool.acquire().await?;
    let agent = store::get_agent(&mut conn, me).await?;
    let last_seq = store::agent_last_seq(&mut conn, me).await?;
    let cursor = match a.resume_from {
        Some(seq) if seq < 0 || seq > last_seq => {
            return Err(ApiError::bad_request(format!("resume_from {seq} is outside 0..={last_seq}")));
        }
        Some(seq) => seq,
        None => last_seq,
    };
    let interactions = store::open_interactions_of(&mut conn, me).await?;
    session.cursor = Some(cursor);
    Ok(json!({ "agent": agent, "last_seq": last_seq, "interactions": interactions }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusArgs {
    status: AgentStatus,
    reason: Option<String>,
}

async fn set_status(state: &AppState, me: &str, a: StatusArgs) -> Result<Value, ApiError> {
    let mut tx = state.pool.begin().await?;
    let agent = store::change_agent_status(&mut tx, me, a.status, a.reason.as_deref()).await?;
    tx.commit().await?;
    state.coord.notify(&topics::agent(me));
    if a.status == AgentStatus::Ready {
        state.coord.notify(topics::ROUTING);
    }
    Ok(json!({ "status": agent.status, "reason": agent.status_reason }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InteractionArgs {
    interaction_id: Uuid,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferArgs {
    interaction_id: Uuid,
    to_agent: Option<String>,
    to_queue: Option<String>,
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseArgs {
    interaction_id: Uuid,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinArgs {
    interaction_id: Uuid,
    mode: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQueuedArgs {
    queue: Option<String>,
    limit: Option<i64>,
}

/// Commits a routing transition, then wakes everyone it concerns (and routing, when a slot or an
/// interaction became free). Replies with the interaction.
async fn finish(
    state: &AppState,
    tx: sqlx::Transaction<'_, sqlx::Postgres>,
    done: store::Transition,
    wakes_routing: bool,
) -> Result<Value, ApiError> {
    tx.commit().await?;
    wake_agents(state.coord.as_ref(), &done.notified);
    if wakes_routing {
        state.coord.notify(topics::ROUTING);
    }
    Ok(serde_json::to_value(&done.interaction).expect("interaction serializes"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartArgs {
    account_id: Uuid,
    customer: CustomerArg,
    message: Option<String>,
    client_msg_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerArg {
    external_id: Option<String>,
    phone: Option<String>,
}

async fn start(state: &AppState, claims: &Claims, a: StartArgs) -> Result<Value, ApiError> {
    let me = claims.sub.as_str();
    let key = match (a.customer.external_id, a.customer.phone) {
        (Some(id), None) => CustomerKey::ExternalId(id),
        (None, Some(phone)) => CustomerKey::Phone(phone),
        _ => return Err(ApiError::bad_request("customer needs exactly one of `external_id` and `phone`")),
    };
    let mut tx = state.pool.begin().await?;
    let started = store::start_interaction(&mut tx, a.account_id, &key, me).await?;
    let mut notified = started.notified.clone();
    let mut queued_on = None;
    if let Some(text) = a.message {
        let out = OutboundMessage {
            interaction_id: started.interaction.id,
            agent_login: me.to_owned(),
            agent_name: claims.name.clone().unwrap_or_else(|| me.to_owned()),
            client_msg_id: a.client_msg_id.unwrap_or_else(|| format!("start-{}", started.interaction.id)),
            text: Some(text),
            file_ids: vec![],
            keyboard: None,
            reply_to: None,
        };
        let enqueued = store::enqueue_outbound(&mut tx, &out).await?;
        notified.extend(enqueued.audience);
        queued_on = Some(enqueued.account_id);
    }
    tx.commit().await?;
    wake_agents(state.coord.as_ref(), &notified);
    if let Some(account) = queued_on {
        state.coord.notify(&topics::account(account));
    }
    Ok(serde_json::to_value(&started.interaction).expect("interaction serializes"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendArgs {
    interaction_id: Uuid,
    client_msg_id: String,
    text: Option<String>,
    #[serde(default)]
    file_ids: Vec<Uuid>,
    keyboard: Option<Keyboard>,
    reply_to: Option<Uuid>,
}

/// Checks that `me` may write into the interaction, and returns its channel.
pub(crate) async fn may_write(
    conn: &mut sqlx::PgConnection,
    interaction_id: Uuid,
    me: &str,
) -> Result<Channel, ApiError> {
    match store::participation(conn, interaction_id, me).await?.as_deref() {
        Some("assigned") | Some("participate") => {}
        Some("monitor") => {
            return Err(ApiError::forbidden("you joined this interaction to monitor it; you cannot write"));
        }
        _ => return Err(ApiError::interaction_not_found(interaction_id)),
    }
    Ok(store::load_interaction(conn, interaction_id).await?.channel)
}

async fn send(state: &AppState, claims: &Claims, a: SendArgs) -> Result<Value, ApiError> {
    let me = claims.sub.as_str();
    if a.client_msg_id.is_empty() || a.client_msg_id.len() > 200 {
        return Err(ApiError::bad_request("client_msg_id must be 1 to 200 characters"));
    }
    let mut tx = state.pool.begin().await?;
    // a retry returns the first message, even if the interaction has moved on since
    if let Some(first) = store::sent_with_client_msg_id(&mut tx, me, &a.client_msg_id).await? {
        if first.interaction_id != a.interaction_id {
            return Err(ApiError::new(
                code::CONFLICT,
                format!("client_msg_id {:?} was already used for another interaction", a.client_msg_id),
            ));
        }
        return Ok(serde_json::to_value(&first).expect("message serializes"));
    }
    let channel = may_write(&mut tx, a.interaction_id, me).await?;
    let caps = channel.capabilities();
    let unsupported = match &a.keyboard {
        Some(Keyboard::Reply { .. }) if !caps.reply_keyboard => Some("reply keyboards"),
        Some(Keyboard::Inline { .. }) if !caps.inline_buttons => Some("inline buttons"),
        _ if !a.file_ids.is_empty() && !caps.files => Some("files"),
        _ => None,
    };
    if let Some(what) = unsupported {
        return Err(ApiError::new(code::UNSUPPORTED_BY_CHANNEL, format!("{channel} does not support {what}")));
    }
    let out = OutboundMessage {
        interaction_id: a.interaction_id,
        agent_login: me.to_owned(),
        agent_name: claims.name.clone().unwrap_or_else(|| me.to_owned()),
        client_msg_id: a.client_msg_id,
        text: a.text,
        file_ids: a.file_ids,
        keyboard: a.keyboard,
        reply_to: a.reply_to,
    };
    let enqueued = store::enqueue_outbound(&mut tx, &out).await?;
    tx.commit().await?;
    if enqueued.created {
        wake_agents(state.coord.as_ref(), &enqueued.audience);
        state.coord.notify(&topics::account(enqueued.account_id));
        metrics::counter!("switchboard_chat_messages_sent_total").increment(1);
    }
    Ok(serde_json::to_value(&enqueued.message).expect("message serializes"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditArgs {
    message_id: Uuid,
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageArgs {
    message_id: Uuid,
}

async fn edit_or_delete(state: &AppState, me: &str, message_id: Uuid, text: Option<String>) -> Result<Value, ApiError> {
    let mut tx = state.pool.begin().await?;
    let channel: Channel = store::outbound_channel(&mut tx, message_id, me)
        .await?
        .parse()
        .map_err(|e: schema::domain::UnknownValue| ApiError::from(store::StoreError::Corrupt(e.to_string())))?;
    let caps = channel.capabilities();
    let (message, audience, account) = match text {
        Some(text) if caps.edit => store::edit_outbound(&mut tx, message_id, me, &text).await?,
        None if caps.delete => store::delete_outbound(&mut tx, message_id, me).await?,
        Some(_) => return Err(ApiError::new(code::UNSUPPORTED_BY_CHANNEL, format!("{channel} cannot edit messages"))),
        None => return Err(ApiError::new(code::UNSUPPORTED_BY_CHANNEL, format!("{channel} cannot delete messages"))),
    };
    tx.commit().await?;
    wake_agents(state.coord.as_ref(), &audience);
    state.coord.notify(&topics::account(account));
    Ok(serde_json::to_value(&message).expect("message serializes"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryArgs {
    interaction_id: Option<Uuid>,
    customer_id: Option<Uuid>,
    before: Option<i64>,
    limit: Option<i64>,
}

async fn history(state: &AppState, claims: &Claims, a: HistoryArgs) -> Result<Value, ApiError> {
    let me = claims.sub.as_str();
    let mut conn = state.pool.acquire().await?;
    let customer_id = match (a.interaction_id, a.customer_id) {
        (Some(interaction_id), None) => {
            let interaction = store::load_interaction(&mut conn, interaction_id).await?;
            let sees = claims.has_role("supervisor")
                || interaction.agent.as_deref() == Some(me)
                || store::participation(&mut conn, interaction_id, me).await?.is_some();
            if !sees {
                return Err(ApiError::interaction_not_found(interaction_id));
            }
            interaction.customer.id
        }
        (None, Some(customer_id)) => {
            let serving =
                store::open_interactions_of(&mut conn, me).await?.iter().any(|i| i.customer.id == customer_id);
            if !serving && !claims.has_role("supervisor") {
                return Err(ApiError::new(code::NOT_FOUND, format!("customer {customer_id} is not one you serve")));
            }
            customer_id
        }
        _ => return Err(ApiError::bad_request("give exactly one of `interaction_id` and `customer_id`")),
    };
    let limit = a.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request("limit must be 1 to 200"));
    }
    let page = store::history_page(&mut conn, customer_id, a.before, limit).await?;
    Ok(serde_json::to_value(page).expect("history serializes"))
}
