//! Agent commands: decode `args`, check who may do what, call the store in one transaction,
//! wake whoever must know after the commit, and return the reply's `data`.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use schema::channels::human_size;
use schema::domain::{AgentStatus, Channel, Contact, Feature, Keyboard, Limits, Location, Template};
use schema::store::{self, CustomerKey, OfferEnd, OutboundMessage, TransferTarget};

use crate::AppState;
use crate::error::{ApiError, code};
use crate::wake::wake_agents;
use ops::auth::Claims;
use ops::input::{self, InputError, Kind, Validate, check, check_opt};
use schema::topics;

/// What a session keeps between commands.
#[derive(Debug, Default)]
pub struct SessionState {
    /// The last event `seq` sent on this socket; `None` until `hello`.
    pub cursor: Option<i64>,
    /// Set by `supervisor.overview` with `live`: start (`true`) or stop (`false`) pushing the
    /// overview's updates on this socket. The session takes it after the reply.
    pub live: Option<bool>,
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
    "bot.handoff",
    "interaction.set_field",
];

/// Decodes a command's `args`, held to the input rules (`ops::input`): every string in them to
/// the loosest rule first, then each field to the rule of its kind.
pub(crate) fn args<T: DeserializeOwned + Validate>(value: Value) -> Result<T, ApiError> {
    let value = if value.is_null() { json!({}) } else { value };
    input::check_json("args", &value)?;
    let decoded: T = serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("bad args: {e}")))?;
    decoded.validate().map_err(|e| InputError { field: format!("args.{}", e.field), ..e })?;
    Ok(decoded)
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
        "hello" => hello(state, claims, session, args(raw)?).await,
        "agent.set_status" => set_status(state, me, args(raw)?).await,
        "interaction.accept" => {
            let a: InteractionArgs = args(raw)?;
            let mut tx = state.pool.begin().await?;
            let done = store::accept(&mut tx, a.interaction_id, me).await?;
            let accepted = finish(state, tx, done, false).await?;
            ring_if_call_followed(state, a.interaction_id).await;
            Ok(accepted)
        }
        "interaction.take" => {
            let a: InteractionArgs = args(raw)?;
            let mut tx = state.pool.begin().await?;
            let done = store::take(&mut tx, a.interaction_id, me, claims.has_role("supervisor")).await?;
            let taken = finish(state, tx, done, false).await?;
            ring_if_call_followed(state, a.interaction_id).await;
            Ok(taken)
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
            let transferred = finish(state, tx, done, true).await;
            if transferred.is_ok() && !state.config.video_url.is_empty() {
                // an open call followed the interaction: the video nodes close the previous
                // agent's socket of it
                state.coord.notify(topics::VIDEO_ROOMS);
            }
            transferred
        }
        "interaction.close" => {
            let a: CloseArgs = args(raw)?;
            let mut tx = state.pool.begin().await?;
            let done = store::close(&mut tx, a.interaction_id, me, a.reason.as_deref()).await?;
            // the survey after a closed chat, when its account asks for one
            let surveyed = store::start_chat_survey(&mut tx, a.interaction_id).await?;
            let closed = finish(state, tx, done, true).await;
            if let (Ok(_), Some(account)) = (&closed, surveyed) {
                state.coord.notify(&topics::account(account));
            }
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
            edit_or_delete(state, claims, a.message_id, Some(a.text)).await
        }
        "message.delete" => {
            let a: MessageArgs = args(raw)?;
            edit_or_delete(state, claims, a.message_id, None).await.map(|_| json!({}))
        }
        "message.read" => crate::receipts::read(state, claims, args(raw)?).await,
        "interaction.typing" => crate::receipts::typing(state, claims, args(raw)?).await,
        "history.get" => history(state, claims, args(raw)?).await,
        "supervisor.overview" => {
            let a: OverviewArgs = args(raw)?;
            if !claims.has_role("supervisor") {
                return Err(ApiError::forbidden("supervisor.overview needs the supervisor role"));
            }
            let data =
                crate::live::snapshot(&state.pool, state.coord.as_ref(), &mut crate::live::PresenceCache::default())
                    .await?;
            if a.live.is_some() {
                session.live = a.live;
            }
            Ok(data)
        }
        "video.start" => start_video(state, claims, args(raw)?).await,
        "bot.handoff" => bot_handoff(state, claims, args(raw)?).await,
        "interaction.set_field" => {
            let a: SetFieldArgs = args(raw)?;
            if !schema::fields::good_key(&a.key) {
                return Err(ApiError::bad_request("`args.key`: a-z first, then a-z, 0-9 or _, at most 64 bytes"));
            }
            let mut tx = state.pool.begin().await?;
            let interaction =
                match store::set_interaction_field(&mut tx, a.interaction_id, me, &a.key, &a.value).await? {
                    store::FieldSet::Done(interaction) => interaction,
                    store::FieldSet::UnknownField => {
                        return Err(ApiError::new(
                            code::UNKNOWN_FIELD,
                            format!("no interaction field is defined as {:?}", a.key),
                        ));
                    }
                    store::FieldSet::Invalid(e) => return Err(ApiError::new(code::INVALID_FIELD_VALUE, e.to_string())),
                };
            tx.commit().await?;
            Ok(serde_json::to_value(&*interaction).expect("an interaction serializes"))
        }
        other => Err(ApiError::new(
            code::UNKNOWN_COMMAND,
            format!("unknown command {other:?}; known: {}", COMMANDS.join(", ")),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverviewArgs {
    /// `true`: push the overview as `update` frames whenever it changes; `false`: stop.
    live: Option<bool>,
}

ops::no_strings!(OverviewArgs, VideoArgs, HelloArgs, InteractionArgs, MessageArgs, HistoryArgs);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VideoArgs {
    interaction_id: Uuid,
    mode: Option<schema::domain::VideoMode>,
    quality: Option<schema::domain::VideoQuality>,
    /// Record the call (the customer is asked to consent); absent: the queue's setting.
    record: Option<bool>,
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
    let (mut new, customer_link) = store::NewRoom::with_new_link(
        a.interaction_id,
        &claims.sub,
        agent_name,
        a.mode.unwrap_or(schema::domain::VideoMode::TwoWay),
        quality,
        &config.video_url,
        std::time::Duration::from_secs(config.video_link_ttl_s),
    );
    new.record = a.record;
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

async fn hello(state: &AppState, claims: &Claims, session: &mut SessionState, a: HelloArgs) -> Result<Value, ApiError> {
    let me = claims.sub.as_str();
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
    let mut interactions = store::open_interactions_of(&mut conn, me).await?;
    if claims.has_role("bot") {
        // an external bot's: the conversations in state `bot` of its queues that no flow runs
        interactions.extend(store::bot_interactions_of(&mut conn, me).await?);
    }
    session.cursor = Some(cursor);
    Ok(json!({ "agent": agent, "last_seq": last_seq, "interactions": interactions }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusArgs {
    status: AgentStatus,
    reason: Option<String>,
}

impl Validate for StatusArgs {
    fn validate(&self) -> Result<(), InputError> {
        check_opt("reason", Kind::Note, self.reason.as_deref())
    }
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

impl Validate for TransferArgs {
    fn validate(&self) -> Result<(), InputError> {
        check_opt("to_agent", Kind::Key, self.to_agent.as_deref())?;
        check_opt("to_queue", Kind::Key, self.to_queue.as_deref())?;
        check_opt("note", Kind::Note, self.note.as_deref())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseArgs {
    interaction_id: Uuid,
    reason: Option<String>,
}

impl Validate for CloseArgs {
    fn validate(&self) -> Result<(), InputError> {
        check_opt("reason", Kind::Note, self.reason.as_deref())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetFieldArgs {
    interaction_id: Uuid,
    key: String,
    /// The value (its type per the field's definition); `null` clears the field.
    value: Value,
}

impl Validate for SetFieldArgs {
    fn validate(&self) -> Result<(), InputError> {
        check("key", Kind::Key, &self.key)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinArgs {
    interaction_id: Uuid,
    mode: String,
}

impl Validate for JoinArgs {
    fn validate(&self) -> Result<(), InputError> {
        check("mode", Kind::Key, &self.mode)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQueuedArgs {
    queue: Option<String>,
    limit: Option<i64>,
}

impl Validate for ListQueuedArgs {
    fn validate(&self) -> Result<(), InputError> {
        check_opt("queue", Kind::Key, self.queue.as_deref())
    }
}

/// Commits a routing transition, then wakes everyone it concerns (and routing, when a slot or an
/// interaction became free). Replies with the interaction.
/// An interaction assigned after a transfer to a queue takes its open call to its new agent
/// (`store::hand_over_rooms`): ring `video/rooms` so the video node closes the previous agent's
/// socket at once. Best effort: the video node re-checks its live rooms every 30 s anyway.
async fn ring_if_call_followed(state: &AppState, interaction_id: Uuid) {
    if state.config.video_url.is_empty() {
        return;
    }
    let open = match state.pool.acquire().await {
        Ok(mut conn) => store::rooms_of_interaction(&mut conn, interaction_id)
            .await
            .map(|rooms| rooms.iter().any(|r| r.state == schema::domain::VideoRoomState::Open)),
        Err(e) => Err(e.into()),
    };
    match open {
        Ok(true) => state.coord.notify(topics::VIDEO_ROOMS),
        Ok(false) => {}
        Err(e) => {
            tracing::debug!(interaction = %interaction_id, error = %e, "cannot look for the interaction's open call")
        }
    }
}

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

impl Validate for StartArgs {
    fn validate(&self) -> Result<(), InputError> {
        check_opt("customer.external_id", Kind::Key, self.customer.external_id.as_deref())?;
        check_opt("customer.phone", Kind::Phone, self.customer.phone.as_deref())?;
        check_opt("message", Kind::Text, self.message.as_deref())?;
        check_opt("client_msg_id", Kind::Key, self.client_msg_id.as_deref())
    }
}

async fn start(state: &AppState, claims: &Claims, a: StartArgs) -> Result<Value, ApiError> {
    let me = claims.sub.as_str();
    let key = match (a.customer.external_id, a.customer.phone) {
        (Some(id), None) => CustomerKey::ExternalId(id),
        (None, Some(phone)) => CustomerKey::Phone(phone),
        _ => return Err(ApiError::bad_request("customer needs exactly one of `external_id` and `phone`")),
    };
    let mut tx = state.pool.begin().await?;
    let channel = match store::get_account(&mut tx, a.account_id).await {
        Ok(account) => account.channel,
        Err(store::StoreError::NotFound { .. }) => {
            return Err(ApiError::new(code::NOT_FOUND, format!("account {} not found", a.account_id)));
        }
        Err(e) => return Err(e.into()),
    };
    refuse_unsupported(channel, &[Feature::StartedByAgent])?;
    let started = store::start_interaction(&mut tx, a.account_id, &key, me).await?;
    if a.message.is_some() {
        let i = &started.interaction;
        check_service_window(&mut tx, channel, i.account_id, &i.customer.external_id).await?;
    }
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
            ..Default::default()
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
    contact: Option<ContactArg>,
    location: Option<LocationArg>,
    sticker: Option<StickerArg>,
    forward: Option<ForwardArg>,
    template: Option<TemplateArg>,
}

/// An approved template of the account (WhatsApp), by name and language, with its parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateArg {
    name: String,
    language: String,
    #[serde(default)]
    params: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactArg {
    phone: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LocationArg {
    lat: f64,
    lon: f64,
    address: Option<String>,
}

/// A sticker: a file of the file server, or the platform's own sticker id.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StickerArg {
    file_id: Option<Uuid>,
    sticker_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardArg {
    message_id: Uuid,
}

/// The matrix line a file of this type needs to be sent.
fn file_feature(mime: &str) -> Feature {
    match mime.split('/').next().unwrap_or_default() {
        "image" => Feature::SendImages,
        "video" => Feature::SendVideo,
        "audio" if matches!(mime, "audio/ogg" | "audio/opus") => Feature::SendVoice,
        "audio" => Feature::SendAudio,
        _ => Feature::SendDocuments,
    }
}

/// `message.send`'s content as the store takes it, checked against what the channel can do
/// and its limits (with the account's overrides), so nothing is queued that the connector would
/// have to refuse.
async fn checked_outbound(
    conn: &mut sqlx::PgConnection,
    channel: Channel,
    interaction_id: Uuid,
    a: &SendArgs,
) -> Result<(Vec<Feature>, OutboundContent), ApiError> {
    let mut needs = Vec::new();
    let mut content = OutboundContent::default();
    if a.text.as_deref().is_some_and(|t| !t.is_empty()) {
        needs.push(Feature::Chat);
    }
    match &a.keyboard {
        Some(Keyboard::Reply { rows }) => {
            needs.push(Feature::ReplyKeyboard);
            if rows.iter().flatten().any(|b| b.request_phone) {
                needs.push(Feature::CustomerPhone);
            }
        }
        Some(Keyboard::Inline { .. }) => needs.push(Feature::InlineButtons),
        Some(Keyboard::Remove) | None => {}
    }
    if let Some(c) = &a.contact {
        if c.phone.trim().is_empty() || c.phone.chars().count() > 64 {
            return Err(ApiError::bad_request("contact.phone must be 1 to 64 characters"));
        }
        if c.name.trim().is_empty() || c.name.chars().count() > 256 {
            return Err(ApiError::bad_request("contact.name must be 1 to 256 characters"));
        }
        needs.push(Feature::SendContact);
        content.contact = Some(Contact { phone: c.phone.clone(), name: c.name.clone() });
    }
    if let Some(l) = &a.location {
        if !(-90.0..=90.0).contains(&l.lat) || !(-180.0..=180.0).contains(&l.lon) {
            return Err(ApiError::bad_request("location needs lat from -90 to 90 and lon from -180 to 180"));
        }
        if l.address.as_deref().is_some_and(|s| s.chars().count() > 1000) {
            return Err(ApiError::bad_request("location.address is at most 1000 characters"));
        }
        needs.push(Feature::SendLocation);
        content.location = Some(Location { lat: l.lat, lon: l.lon, address: l.address.clone() });
    }
    let mut file_ids = a.file_ids.clone();
    if let Some(sticker) = &a.sticker {
        needs.push(Feature::SendStickers);
        match (sticker.file_id, &sticker.sticker_id) {
            (Some(file), None) => {
                content.sticker = true;
                file_ids.push(file);
            }
            (None, Some(id)) if !id.is_empty() && id.chars().count() <= 256 => content.sticker_id = Some(id.clone()),
            _ => {
                return Err(ApiError::bad_request(
                    "sticker needs exactly one of `file_id` and `sticker_id` (1 to 256 characters)",
                ));
            }
        }
    }
    if let Some(f) = &a.forward {
        needs.push(Feature::Forward);
        content.forward_of = Some(f.message_id);
    }
    if !file_ids.is_empty() {
        let account_id = store::load_interaction(conn, interaction_id).await?.account_id;
        let settings = store::account_settings(conn, account_id).await?;
        let limits = Limits::for_account(channel, &settings)
            .map_err(|e| ApiError::from(store::StoreError::Corrupt(e.to_string())))?;
        for id in &file_ids {
            let file = match store::get_file(conn, *id).await {
                Ok(file) => file,
                Err(store::StoreError::NotFound { .. }) => {
                    return Err(ApiError::bad_request(format!("file {id} does not exist")));
                }
                Err(e) => return Err(e.into()),
            };
            if !content.sticker || a.file_ids.contains(id) {
                needs.push(file_feature(&file.mime));
            }
            let (max, kind) = limits.max_file_bytes.for_mime(&file.mime);
            if u64::try_from(file.size).unwrap_or(u64::MAX) > max {
                return Err(ApiError::new(
                    code::FILE_TOO_LARGE,
                    format!(
                        "file {:?} is {}, over the limit of {} for {kind} on {channel}",
                        file.name,
                        human_size(u64::try_from(file.size).unwrap_or(u64::MAX)),
                        human_size(max)
                    ),
                ));
            }
        }
    }
    content.file_ids = file_ids;
    Ok((needs, content))
}

/// What `message.send` carries besides text, keyboard and reply.
#[derive(Default)]
struct OutboundContent {
    file_ids: Vec<Uuid>,
    contact: Option<Contact>,
    location: Option<Location>,
    sticker: bool,
    sticker_id: Option<String>,
    forward_of: Option<Uuid>,
}

/// The first thing the channel cannot do, as an `unsupported_by_channel` error.
pub(crate) fn refuse_unsupported(channel: Channel, needs: &[Feature]) -> Result<(), ApiError> {
    let caps = channel.capabilities();
    match needs.iter().find(|f| !caps.has(**f)) {
        Some(feature) => {
            Err(ApiError::new(code::UNSUPPORTED_BY_CHANNEL, format!("{channel} does not support {}", feature.label())))
        }
        None => Ok(()),
    }
}

impl Validate for SendArgs {
    fn validate(&self) -> Result<(), InputError> {
        check("client_msg_id", Kind::Key, &self.client_msg_id)?;
        check_opt("text", Kind::Text, self.text.as_deref())?;
        if let Some(keyboard) = &self.keyboard {
            check_keyboard("keyboard", keyboard)?;
        }
        if let Some(contact) = &self.contact {
            check("contact.phone", Kind::Phone, &contact.phone)?;
            check("contact.name", Kind::Name, &contact.name)?;
        }
        if let Some(location) = &self.location {
            check_opt("location.address", Kind::Note, location.address.as_deref())?;
        }
        if let Some(sticker) = &self.sticker {
            check_opt("sticker.sticker_id", Kind::Key, sticker.sticker_id.as_deref())?;
        }
        if let Some(template) = &self.template {
            check("template.name", Kind::Key, &template.name)?;
            check("template.language", Kind::Key, &template.language)?;
            input::check_each("template.params", Kind::Note, &template.params)?;
        }
        Ok(())
    }
}

/// A keyboard has rows, each row has buttons, and every button a label ([`Kind::Name`]);
/// an inline button's `data` comes back in the customer's callback ([`Kind::Key`]).
fn check_keyboard(field: &str, keyboard: &Keyboard) -> Result<(), InputError> {
    fn rows<B>(
        field: &str,
        rows: &[Vec<B>],
        button: impl Fn(&str, &B) -> Result<(), InputError>,
    ) -> Result<(), InputError> {
        input::non_empty(&format!("{field}.rows"), rows)?;
        for (r, row) in rows.iter().enumerate() {
            input::non_empty(&format!("{field}.rows[{r}]"), row)?;
            for (b, item) in row.iter().enumerate() {
                button(&format!("{field}.rows[{r}][{b}]"), item)?;
            }
        }
        Ok(())
    }
    match keyboard {
        Keyboard::Reply { rows: r } => rows(field, r, |f, b| check(&format!("{f}.text"), Kind::Name, &b.text)),
        Keyboard::Inline { rows: r } => rows(field, r, |f, b| {
            check(&format!("{f}.text"), Kind::Name, &b.text)?;
            check(&format!("{f}.data"), Kind::Key, &b.data)
        }),
        Keyboard::Remove => Ok(()),
    }
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

/// Checks that the external bot `me` owns the interaction now ([`store::bot_access`], which
/// locks it), and returns its channel. Once a person has it (taken, handed off, closed) the
/// refusal is `bot_fenced`.
async fn bot_may_write(conn: &mut sqlx::PgConnection, interaction_id: Uuid, me: &str) -> Result<Channel, ApiError> {
    match store::bot_access(conn, interaction_id, me).await? {
        store::BotAccess::Owned => Ok(store::load_interaction(conn, interaction_id).await?.channel),
        store::BotAccess::Fenced(why) => {
            Err(ApiError::new(code::BOT_FENCED, format!("{why}; the bot may no longer write")))
        }
        store::BotAccess::NotYours => Err(ApiError::new(
            code::INTERACTION_NOT_FOUND,
            format!("no interaction {interaction_id} of the queues you serve as a bot"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BotHandoffArgs {
    interaction_id: Uuid,
    queue: String,
    /// Shown to the agent as the interaction's fields (what the bot collected).
    #[serde(default)]
    fields: std::collections::BTreeMap<String, String>,
}

/// At most this many fields in a hand-off.
const MAX_HANDOFF_FIELDS: usize = 50;

impl Validate for BotHandoffArgs {
    fn validate(&self) -> Result<(), InputError> {
        check("queue", Kind::Key, &self.queue)?;
        if self.fields.len() > MAX_HANDOFF_FIELDS {
            return Err(InputError::new("fields", format!("has more than {MAX_HANDOFF_FIELDS} entries")));
        }
        for (name, value) in &self.fields {
            check("fields", Kind::Key, name)?;
            check(&format!("fields.{name}"), Kind::Note, value)?;
        }
        Ok(())
    }
}

/// `bot.handoff` (role `bot`): the external bot hands the conversation it owns to a queue, what
/// it collected as the interaction's fields; routing offers it to an agent of that queue.
async fn bot_handoff(state: &AppState, claims: &Claims, a: BotHandoffArgs) -> Result<Value, ApiError> {
    if !claims.has_role("bot") {
        return Err(ApiError::forbidden("bot.handoff needs the bot role"));
    }
    let mut tx = state.pool.begin().await?;
    bot_may_write(&mut tx, a.interaction_id, &claims.sub).await?;
    match store::get_queue(&mut tx, &a.queue).await {
        Ok(_) => {}
        Err(store::StoreError::NotFound { .. }) => {
            return Err(ApiError::new(code::NOT_FOUND, format!("queue {:?} not found", a.queue)));
        }
        Err(e) => return Err(e.into()),
    }
    let interaction = store::bot_handoff(&mut tx, a.interaction_id, &a.queue, &a.fields, None).await?;
    tx.commit().await?;
    state.coord.notify(topics::ROUTING);
    Ok(serde_json::to_value(&interaction).expect("interaction serializes"))
}

async fn send(state: &AppState, claims: &Claims, a: SendArgs) -> Result<Value, ApiError> {
    let me = claims.sub.as_str();
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
    // an external bot writes into the conversations it owns, and only while it owns them: the
    // interaction stays locked from this check to the commit
    let bot = claims.has_role("bot");
    let channel = if bot {
        bot_may_write(&mut tx, a.interaction_id, me).await?
    } else {
        may_write(&mut tx, a.interaction_id, me).await?
    };
    let (needs, content) = checked_outbound(&mut tx, channel, a.interaction_id, &a).await?;
    refuse_unsupported(channel, &needs)?;
    let (text, template) = match &a.template {
        Some(t) => checked_template(&mut tx, channel, a.interaction_id, t, &needs, &content).await?,
        None => {
            let interaction = store::load_interaction(&mut tx, a.interaction_id).await?;
            check_service_window(&mut tx, channel, interaction.account_id, &interaction.customer.external_id).await?;
            (a.text, None)
        }
    };
    let out = OutboundMessage {
        interaction_id: a.interaction_id,
        agent_login: me.to_owned(),
        agent_name: claims.name.clone().unwrap_or_else(|| me.to_owned()),
        client_msg_id: a.client_msg_id,
        text,
        file_ids: content.file_ids,
        keyboard: a.keyboard,
        reply_to: a.reply_to,
        contact: content.contact,
        location: content.location,
        sticker_id: content.sticker_id,
        sticker: content.sticker,
        forward_of: content.forward_of,
        template,
        bot,
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

/// A template `message.send`: only on channels with templates, alone (no text, files, buttons
/// or other content), an approved template of the account with as many parameters as its body
/// takes. Returns the body as the customer will read it (the message's text) and the template.
async fn checked_template(
    conn: &mut sqlx::PgConnection,
    channel: Channel,
    interaction_id: Uuid,
    t: &TemplateArg,
    needs: &[Feature],
    content: &OutboundContent,
) -> Result<(Option<String>, Option<Template>), ApiError> {
    if !channel.takes_templates() {
        return Err(ApiError::new(
            code::UNSUPPORTED_BY_CHANNEL,
            format!("{channel} does not support message templates"),
        ));
    }
    if !needs.is_empty() || !content.file_ids.is_empty() {
        return Err(ApiError::bad_request(
            "a template goes alone: no text, files, keyboard, contact, location, sticker or forward with it",
        ));
    }
    if t.params.iter().any(|p| p.trim().is_empty() || p.chars().count() > 1000 || p.contains(['\n', '\t'])) {
        return Err(ApiError::bad_request(
            "template params are 1 to 1000 characters each, on one line (WhatsApp refuses line breaks and tabs in them)",
        ));
    }
    let account_id = store::load_interaction(conn, interaction_id).await?.account_id;
    let Some(approved) = store::whatsapp::get_template(conn, account_id, &t.name, &t.language).await? else {
        return Err(ApiError::bad_request(format!(
            "this account has no template {:?} in language {:?} (the admin API lists its templates)",
            t.name, t.language
        )));
    };
    if t.params.len() != approved.params as usize {
        return Err(ApiError::bad_request(format!(
            "template {:?} ({}) takes {} parameter(s), {} given",
            t.name,
            t.language,
            approved.params,
            t.params.len()
        )));
    }
    let text = store::whatsapp::render_template(&approved.body, &t.params);
    Ok((Some(text), Some(Template { name: t.name.clone(), language: t.language.clone(), params: t.params.clone() })))
}

/// On a channel with a service window (WhatsApp: 24 hours after the customer's last message), a
/// free-form message outside it is refused with `outside_service_window`, saying when it closed.
async fn check_service_window(
    conn: &mut sqlx::PgConnection,
    channel: Channel,
    account_id: Uuid,
    external_id: &str,
) -> Result<(), ApiError> {
    let Some(window) = channel.service_window() else { return Ok(()) };
    let hours = window.as_secs() / 3600;
    let last = store::whatsapp::last_inbound_at(conn, account_id, external_id).await?;
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    match last {
        Some(at) if at + window > chrono::Utc::now() => Ok(()),
        Some(at) => Err(ApiError::new(
            code::OUTSIDE_SERVICE_WINDOW,
            format!(
                "{channel} takes free-form messages only within {hours} hours of the customer's last message; \
                 the customer last wrote at {}, so the window closed at {}: send an approved template instead",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                (at + window).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        )),
        None => Err(ApiError::new(
            code::OUTSIDE_SERVICE_WINDOW,
            format!(
                "{channel} takes free-form messages only within {hours} hours of the customer's last message, \
                 and this customer has not written to this account: send an approved template instead"
            ),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditArgs {
    message_id: Uuid,
    text: String,
}

impl Validate for EditArgs {
    fn validate(&self) -> Result<(), InputError> {
        check("text", Kind::Text, &self.text)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageArgs {
    message_id: Uuid,
}

async fn edit_or_delete(
    state: &AppState,
    claims: &Claims,
    message_id: Uuid,
    text: Option<String>,
) -> Result<Value, ApiError> {
    let me = claims.sub.as_str();
    let mut tx = state.pool.begin().await?;
    if claims.has_role("bot") {
        // an external bot changes its messages only while it owns the conversation
        let interaction_id = match store::load_message(&mut tx, message_id).await {
            Ok(message) => message.interaction_id,
            Err(store::StoreError::NotFound { .. }) => {
                return Err(ApiError::new(code::MESSAGE_NOT_FOUND, format!("no message {message_id} of yours")));
            }
            Err(e) => return Err(e.into()),
        };
        bot_may_write(&mut tx, interaction_id, me).await?;
    }
    let channel: Channel = store::outbound_channel(&mut tx, message_id, me)
        .await?
        .parse()
        .map_err(|e: schema::domain::UnknownValue| ApiError::from(store::StoreError::Corrupt(e.to_string())))?;
    refuse_unsupported(channel, &[Feature::EditDeleteOwn])?;
    let (message, audience, account) = match text {
        Some(text) => {
            let max = channel.capabilities().limits.max_text_chars;
            if text.chars().count() > max {
                return Err(ApiError::bad_request(format!(
                    "the new text is {} characters; an edit on {channel} must fit one message of at most {max}",
                    text.chars().count()
                )));
            }
            store::edit_outbound(&mut tx, message_id, me, &text).await?
        }
        None => store::delete_outbound(&mut tx, message_id, me).await?,
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
