//! Bot flows: stored and versioned ([`save_flow`]: every save is a new version), the greeting
//! flow of a new interaction (the account's `settings.greeting_flow`, else its default queue's
//! `greeting_flow`: the interaction opens in state `bot` with a run of the flow's newest
//! version), and what the connector leader's runner needs to run them: the runs that are due,
//! each locked with its unread customer messages ([`lock_bot_run`]), the bot's messages through
//! the outbox ([`bot_send`], refused unless the interaction is still in state `bot`), the
//! hand-off to a queue and the end.
//!
//! The fence between the bot and people is in the database (migration 0017): an interaction
//! that leaves state `bot` stops its run, and one an agent comes to own (assigned, taken,
//! transferred to someone) has the bot's unsent messages cancelled, in the transaction that
//! made the change.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Result, StoreError};
use crate::domain::{InteractionState, Keyboard, Message};
use crate::flow::{self, Flow, FlowError, Node, Run};

/// One stored version of a flow.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFlow {
    pub name: String,
    pub version: i32,
    pub flow: Flow,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A flow's newest version, for lists.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSummary {
    pub name: String,
    pub version: i32,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// Why a flow cannot be saved: its errors, each naming its node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the flow is not valid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct FlowRefused(pub Vec<FlowError>);

/// A flow's name: like a queue's (`a-z`, `0-9`, `_`, `.`, `-`, at most 64, starting with a
/// letter or digit).
pub fn check_flow_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!("flow name {name:?} must be 1 to 64 of a-z, 0-9, _ . - starting with a letter or digit"))
    }
}

/// Every problem of `flow` for this hub: [`flow::validate`]'s, and each queue it hands off to
/// that does not exist (naming the node; the fallback queue naming none).
pub async fn check_flow(conn: &mut PgConnection, flow: &Flow) -> Result<Vec<FlowError>> {
    let mut errors = flow::validate(flow).err().unwrap_or_default();
    let known: Vec<String> = sqlx::query_scalar("SELECT name FROM queues").fetch_all(&mut *conn).await?;
    let exists = |q: &str| known.iter().any(|k| k == q);
    if !flow.fallback_queue.trim().is_empty() && !exists(&flow.fallback_queue) {
        errors.push(FlowError {
            node: None,
            message: format!("fallback_queue names no queue ({:?})", flow.fallback_queue),
        });
    }
    for (id, node) in &flow.nodes {
        if let Node::Handoff { queue } = node
            && !queue.trim().is_empty()
            && !exists(queue)
        {
            errors.push(FlowError { node: Some(id.clone()), message: format!("queue names no queue ({queue:?})") });
        }
    }
    Ok(errors)
}

/// Saves `flow` as the next version of `name` (the first is 1). Refused with [`FlowRefused`]
/// when [`check_flow`] finds anything; the caller audits and commits.
pub async fn save_flow(
    conn: &mut PgConnection,
    name: &str,
    flow: &Flow,
    actor: &str,
) -> std::result::Result<StoredFlow, SaveFlowError> {
    check_flow_name(name).map_err(|e| SaveFlowError::Store(StoreError::Invalid(e)))?;
    let errors = check_flow(conn, flow).await?;
    if !errors.is_empty() {
        return Err(SaveFlowError::Refused(FlowRefused(errors)));
    }
    // two saves of one flow queue here, so each draws the next version
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('flow:' || $1))")
        .bind(name)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::from)?;
    let definition = serde_json::to_value(flow).expect("a flow serializes");
    let row = sqlx::query(
        "INSERT INTO flows (name, version, definition, created_by)
         SELECT $1, COALESCE(max(version), 0) + 1, $2, $3 FROM flows WHERE name = $1
         RETURNING version, created_at",
    )
    .bind(name)
    .bind(&definition)
    .bind(actor)
    .fetch_one(&mut *conn)
    .await
    .map_err(StoreError::from)?;
    Ok(StoredFlow {
        name: name.to_owned(),
        version: row.try_get("version").map_err(StoreError::from)?,
        flow: flow.clone(),
        created_by: actor.to_owned(),
        created_at: row.try_get("created_at").map_err(StoreError::from)?,
    })
}

/// What [`save_flow`] may answer.
#[derive(Debug, thiserror::Error)]
pub enum SaveFlowError {
    #[error(transparent)]
    Refused(FlowRefused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn stored_from_row(row: &sqlx::postgres::PgRow) -> Result<StoredFlow> {
    let definition: serde_json::Value = row.try_get("definition")?;
    let name: String = row.try_get("name")?;
    let flow = serde_json::from_value(definition)
        .map_err(|e| StoreError::Corrupt(format!("flow {name}: the stored definition does not read: {e}")))?;
    Ok(StoredFlow {
        name,
        version: row.try_get("version")?,
        flow,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

/// One version of a flow (`None`: the newest).
pub async fn get_flow(conn: &mut PgConnection, name: &str, version: Option<i32>) -> Result<StoredFlow> {
    let row = sqlx::query(
        "SELECT name, version, definition, created_by, created_at FROM flows
         WHERE name = $1 AND ($2::int IS NULL OR version = $2) ORDER BY version DESC LIMIT 1",
    )
    .bind(name)
    .bind(version)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => stored_from_row(&row),
        None => Err(match version {
            Some(v) => StoreError::not_found("flow version", format!("{name}/{v}")),
            None => StoreError::not_found("flow", name),
        }),
    }
}

/// Every flow's newest version, by name.
pub async fn list_flows(conn: &mut PgConnection) -> Result<Vec<FlowSummary>> {
    let rows = sqlx::query(
        "SELECT DISTINCT ON (name) name, version, created_by, created_at FROM flows ORDER BY name, version DESC",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(FlowSummary {
                name: r.try_get("name")?,
                version: r.try_get("version")?,
                created_by: r.try_get("created_by")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// Names the flow that greets the queue's new interactions (`None`: no greeting). The flow must
/// exist. Returns the previous name.
pub async fn set_queue_greeting_flow(
    conn: &mut PgConnection,
    queue: &str,
    flow: Option<&str>,
) -> Result<Option<String>> {
    if let Some(name) = flow {
        get_flow(conn, name, None).await?;
    }
    let previous: Option<Option<String>> = sqlx::query_scalar(
        "WITH old AS (SELECT greeting_flow FROM queues WHERE name = $1 FOR UPDATE)
         UPDATE queues q SET greeting_flow = $2 FROM old WHERE q.name = $1 RETURNING old.greeting_flow",
    )
    .bind(queue)
    .bind(flow)
    .fetch_optional(&mut *conn)
    .await?;
    previous.ok_or_else(|| StoreError::not_found("queue", queue))
}

/// The flow that greets a queue's new interactions.
pub async fn queue_greeting_flow(conn: &mut PgConnection, queue: &str) -> Result<Option<String>> {
    let found: Option<Option<String>> = sqlx::query_scalar("SELECT greeting_flow FROM queues WHERE name = $1")
        .bind(queue)
        .fetch_optional(&mut *conn)
        .await?;
    found.ok_or_else(|| StoreError::not_found("queue", queue))
}

/// The greeting flow of a new interaction of `account_id` opened in `queue`: the account's
/// `settings.greeting_flow`, else the queue's; its newest version. `None` when neither names a
/// flow that exists.
pub(crate) async fn greeting_for(
    conn: &mut PgConnection,
    account_id: Uuid,
    queue: &str,
) -> Result<Option<(String, i32)>> {
    let found: Option<(String, i32)> = sqlx::query_as(
        "SELECT f.name, max(f.version) FROM flows f
         WHERE f.name = COALESCE((SELECT settings->>'greeting_flow' FROM accounts WHERE id = $1),
                                 (SELECT greeting_flow FROM queues WHERE name = $2))
         GROUP BY f.name",
    )
    .bind(account_id)
    .bind(queue)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found)
}

/// Whether the account's new interactions that no greeting flow answers open in state `bot` for
/// its external bots (`settings.external_bot`: the bots serving the interaction's queue on the
/// agent WebSocket).
pub(crate) async fn opens_for_external_bot(conn: &mut PgConnection, account_id: Uuid) -> Result<bool> {
    let on: Option<bool> = sqlx::query_scalar(
        "SELECT COALESCE(settings->'external_bot' = 'true'::jsonb, false) FROM accounts WHERE id = $1",
    )
    .bind(account_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(on.unwrap_or(false))
}

/// Where a conversation an agent closed re-enters when the customer writes again within the
/// reopen window: the account's `settings.reentry` (`{"flow", "node"}`), the flow's newest
/// version, when that version has the node. `None`: it goes to its queue as before.
pub(crate) async fn reentry_for(conn: &mut PgConnection, account_id: Uuid) -> Result<Option<(String, i32, String)>> {
    let found: Option<(String, i32, String)> = sqlx::query_as(
        "SELECT f.name, f.version, s.node FROM accounts a
         CROSS JOIN LATERAL (SELECT a.settings->'reentry'->>'flow' AS flow, a.settings->'reentry'->>'node' AS node) s
         JOIN flows f ON f.name = s.flow
         WHERE a.id = $1 AND f.definition->'nodes' ? s.node
           AND f.version = (SELECT max(version) FROM flows WHERE name = s.flow)",
    )
    .bind(account_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found)
}

/// Checks an account's `settings.reentry` before it is saved: absent or null, or
/// `{"flow": <a flow that exists>, "node": <a node of its newest version>}`. The error says
/// what is wrong.
pub async fn check_reentry(conn: &mut PgConnection, reentry: Option<&serde_json::Value>) -> Result<()> {
    let Some(value) = reentry.filter(|v| !v.is_null()) else { return Ok(()) };
    let shape =
        || StoreError::Invalid("settings.reentry must be {\"flow\": <flow name>, \"node\": <node id>} or null".into());
    let object = value.as_object().ok_or_else(shape)?;
    if object.keys().any(|k| k != "flow" && k != "node") {
        return Err(shape());
    }
    let flow = object.get("flow").and_then(|v| v.as_str()).ok_or_else(shape)?;
    let node = object.get("node").and_then(|v| v.as_str()).ok_or_else(shape)?;
    let stored = match get_flow(conn, flow, None).await {
        Ok(stored) => stored,
        Err(StoreError::NotFound { .. }) => {
            return Err(StoreError::Invalid(format!("settings.reentry.flow names no flow ({flow:?})")));
        }
        Err(e) => return Err(e),
    };
    if !stored.flow.nodes.contains_key(node) {
        return Err(StoreError::Invalid(format!(
            "settings.reentry.node: flow {flow:?} (version {}) has no node {node:?}",
            stored.version
        )));
    }
    Ok(())
}

/// Starts a run of `flow` (name, version) for an interaction in state `bot`: at the flow's
/// start, or at `start_node` (re-entry). An interaction that had a run before (a greeting flow,
/// an earlier re-entry) gets a fresh one in its place.
pub(crate) async fn start_bot_run(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    account_id: Uuid,
    flow: &(String, i32),
    start_node: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO bot_runs (interaction_id, account_id, flow_name, flow_version, wake_at, start_node)
         VALUES ($1, $2, $3, $4, now(), $5)
         ON CONFLICT (interaction_id) DO UPDATE SET flow_name = EXCLUDED.flow_name,
             flow_version = EXCLUDED.flow_version, run = NULL, wake_at = now(), active = true, outcome = NULL,
             start_node = EXCLUDED.start_node, created_at = now(), updated_at = now()",
    )
    .bind(interaction_id)
    .bind(account_id)
    .bind(&flow.0)
    .bind(flow.1)
    .bind(start_node)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Whether an external bot may write into an interaction, decided under the interaction's row
/// lock (taken here, first, in the caller's transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotAccess {
    /// In state `bot`, no flow runs it, and the bot serves its queue.
    Owned,
    /// The bot serves its queue, but a person or a flow has it now (why, for the error).
    Fenced(String),
    /// Neither an interaction of the bot's queues nor one it wrote into (or the login is no bot).
    NotYours,
}

/// Locks the interaction and answers whether the external bot `bot` owns it ([`BotAccess`]).
pub async fn bot_access(conn: &mut PgConnection, interaction_id: Uuid, bot: &str) -> Result<BotAccess> {
    let row = sqlx::query(
        "SELECT i.state, i.agent,
                EXISTS (SELECT 1 FROM bot_runs r WHERE r.interaction_id = i.id AND r.active) AS flow_runs,
                EXISTS (SELECT 1 FROM agents a WHERE a.login = $2 AND 'bot' = ANY(a.roles)
                        AND i.queue = ANY(a.queues)) AS serves_queue,
                EXISTS (SELECT 1 FROM messages m WHERE m.interaction_id = i.id AND m.author_kind = 'bot'
                        AND m.agent_login = $2) AS wrote
         FROM interactions i WHERE i.id = $1 FOR NO KEY UPDATE OF i",
    )
    .bind(interaction_id)
    .bind(bot)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::not_found("interaction", interaction_id))?;
    let serves_queue: bool = row.try_get("serves_queue")?;
    if !serves_queue && !row.try_get::<bool, _>("wrote")? {
        return Ok(BotAccess::NotYours);
    }
    let state: String = row.try_get("state")?;
    let agent: Option<String> = row.try_get("agent")?;
    Ok(match (state.as_str(), row.try_get::<bool, _>("flow_runs")?) {
        // (a conversation the bot wrote into, since handed to a queue it does not serve, is fenced)
        ("bot", false) if serves_queue => BotAccess::Owned,
        ("bot", false) => BotAccess::NotYours,
        ("bot", true) => {
            BotAccess::Fenced(format!("interaction {interaction_id} is with a bot flow, not with an external bot"))
        }
        (state, _) => BotAccess::Fenced(match agent {
            Some(agent) => format!("interaction {interaction_id} is {state} (agent {agent}): a person has it now"),
            None => format!("interaction {interaction_id} is {state}: it was handed off"),
        }),
    })
}

/// The open interactions an external bot owns now (state `bot`, no flow running, of a queue it
/// serves), oldest first.
pub async fn bot_interactions_of(conn: &mut PgConnection, bot: &str) -> Result<Vec<crate::domain::Interaction>> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT i.id FROM interactions i JOIN agents a ON a.login = $1 AND 'bot' = ANY(a.roles)
         WHERE i.state = 'bot' AND i.queue = ANY(a.queues)
           AND NOT EXISTS (SELECT 1 FROM bot_runs r WHERE r.interaction_id = i.id AND r.active)
         ORDER BY i.created_at, i.id LIMIT 500",
    )
    .bind(bot)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(super::load_interaction(conn, id).await?);
    }
    Ok(out)
}

/// The interactions of the account whose runs have something to do now: not begun, a timer
/// due, or a customer's message unread. At most `limit`, oldest timer first.
pub async fn due_bot_runs(conn: &mut PgConnection, account_id: Uuid, limit: i64) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT r.interaction_id FROM bot_runs r
         WHERE r.account_id = $1 AND r.active
           AND (r.run IS NULL OR r.wake_at <= now()
                OR EXISTS (SELECT 1 FROM bot_inputs b WHERE b.interaction_id = r.interaction_id))
         ORDER BY r.wake_at NULLS LAST, r.interaction_id LIMIT $2",
    )
    .bind(account_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// When the account's next run timer is due, if any.
pub async fn next_bot_wake(conn: &mut PgConnection, account_id: Uuid) -> Result<Option<DateTime<Utc>>> {
    Ok(sqlx::query_scalar("SELECT min(wake_at) FROM bot_runs WHERE account_id = $1 AND active")
        .bind(account_id)
        .fetch_one(&mut *conn)
        .await?)
}

/// A run, locked for one turn of the runner.
#[derive(Debug, Clone)]
pub struct BotTurn {
    pub interaction_id: Uuid,
    pub account_id: Uuid,
    pub channel: String,
    pub flow_name: String,
    pub flow: Flow,
    /// `None`: not begun yet.
    pub run: Option<Run>,
    pub wake_at: Option<DateTime<Utc>>,
    /// The customer's unread messages, oldest first: (input id, text).
    pub inputs: Vec<(i64, String)>,
    /// Where a run not begun yet starts (re-entry); `None`: the flow's start.
    pub start_node: Option<String>,
}

/// Locks the interaction (first, the lock order) and its run for one turn; `None` when the run
/// is over or the interaction is no longer the bot's.
pub async fn lock_bot_run(conn: &mut PgConnection, interaction_id: Uuid) -> Result<Option<BotTurn>> {
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM interactions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(interaction_id)
        .fetch_optional(&mut *conn)
        .await?;
    if state.as_deref() != Some(InteractionState::Bot.as_str()) {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT r.account_id, i.channel, r.flow_name, r.run, r.wake_at, r.start_node, f.definition
         FROM bot_runs r JOIN interactions i ON i.id = r.interaction_id
         JOIN flows f ON f.name = r.flow_name AND f.version = r.flow_version
         WHERE r.interaction_id = $1 AND r.active FOR NO KEY UPDATE OF r",
    )
    .bind(interaction_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let flow_name: String = row.try_get("flow_name")?;
    let flow = serde_json::from_value(row.try_get("definition")?)
        .map_err(|e| StoreError::Corrupt(format!("flow {flow_name}: {e}")))?;
    let run: Option<serde_json::Value> = row.try_get("run")?;
    let run = run
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("the run of interaction {interaction_id}: {e}")))?;
    let inputs: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, text FROM bot_inputs WHERE interaction_id = $1 ORDER BY id")
            .bind(interaction_id)
            .fetch_all(&mut *conn)
            .await?;
    Ok(Some(BotTurn {
        interaction_id,
        account_id: row.try_get("account_id")?,
        channel: row.try_get("channel")?,
        flow_name,
        flow,
        run,
        wake_at: row.try_get("wake_at")?,
        inputs,
        start_node: row.try_get("start_node")?,
    }))
}

/// Stores where the run is after a turn: the run, its next wake-up, the inputs it read
/// (deleted), and whether it is over (with why).
pub async fn save_bot_run(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    run: &Run,
    wake_at: Option<DateTime<Utc>>,
    read_up_to: Option<i64>,
    outcome: Option<&str>,
) -> Result<()> {
    let value = serde_json::to_value(run).expect("a run serializes");
    sqlx::query(
        "UPDATE bot_runs SET run = $2, wake_at = $3, active = active AND NOT $4, outcome = COALESCE($5, outcome),
             updated_at = now()
         WHERE interaction_id = $1",
    )
    .bind(interaction_id)
    .bind(&value)
    .bind(wake_at)
    .bind(run.is_over())
    .bind(outcome)
    .execute(&mut *conn)
    .await?;
    if let Some(last) = read_up_to {
        sqlx::query("DELETE FROM bot_inputs WHERE interaction_id = $1 AND id <= $2")
            .bind(interaction_id)
            .bind(last)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The bot's message to the customer: stored as `queued` (author `bot`), in the history and the
/// interaction's log, and queued in the account's outbox like an agent's. Refused (`Conflict`)
/// unless the interaction is in state `bot`: once a person owns the conversation the bot is
/// silent. Takes the account's outbox lock as its last step (see `enqueue_outbound`).
pub async fn bot_send(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    bot_name: &str,
    text: &str,
    keyboard: Option<&Keyboard>,
) -> Result<Message> {
    if text.is_empty() {
        return Err(StoreError::Invalid("a bot's message needs text".into()));
    }
    let row = sqlx::query("SELECT account_id, chat_id, state FROM interactions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(interaction_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("interaction", interaction_id))?;
    let state: String = row.try_get("state")?;
    if state != InteractionState::Bot.as_str() {
        return Err(StoreError::Conflict(format!(
            "interaction {interaction_id} is {state}: the bot no longer owns the conversation"
        )));
    }
    let (account_id, chat_id): (Uuid, String) = (row.try_get("account_id")?, row.try_get("chat_id")?);
    send_automated(conn, interaction_id, account_id, &chat_id, bot_name, text, keyboard).await
}

/// Sends an automated message (a bot's, the chat survey's) into an interaction whose row the
/// caller has locked: the message as the bot `name` wrote it, `message.new` in the log, the
/// history entry and the outbox row (the account's connector sends it once rung).
pub(super) async fn send_automated(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    account_id: Uuid,
    chat_id: &str,
    bot_name: &str,
    text: &str,
    keyboard: Option<&Keyboard>,
) -> Result<Message> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO messages (id, interaction_id, account_id, direction, author_kind, author_id, author_name,
             kind, text, keyboard, status)
         VALUES ($1, $2, $3, 'out', 'bot', $4, $4, 'text', $5, $6, 'queued')",
    )
    .bind(id)
    .bind(interaction_id)
    .bind(account_id)
    .bind(bot_name)
    .bind(text)
    .bind(keyboard.map(|k| serde_json::to_value(k).expect("keyboard serializes")))
    .execute(&mut *conn)
    .await?;
    let message = super::load_message(conn, id).await?;
    let data = serde_json::json!({ "message": message });
    super::append_interaction_event(conn, interaction_id, "message.new", Some("bot"), &data).await?;
    super::history::record_message(conn, id, interaction_id).await?;
    super::outbound::lock_account_outbox(conn, account_id).await?;
    sqlx::query("INSERT INTO outbox (message_id, account_id, chat_id, action) VALUES ($1, $2, $3, 'send')")
        .bind(id)
        .bind(account_id)
        .bind(chat_id)
        .execute(&mut *conn)
        .await?;
    Ok(message)
}

/// The bot hands the conversation to `queue` (the account's default queue when that queue is
/// gone): state `queued`, the variables merged into the interaction's fields, and
/// `interaction.handoff` in its log and history (with `reason` when the bot failed or a limit
/// stopped it). Returns the interaction as it is now; the caller rings routing after the commit. `Conflict` when the interaction is
/// no longer the bot's.
pub async fn bot_handoff(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    queue: &str,
    fields: &BTreeMap<String, String>,
    reason: Option<&str>,
) -> Result<crate::domain::Interaction> {
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM interactions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(interaction_id)
        .fetch_optional(&mut *conn)
        .await?;
    match state.as_deref() {
        None => return Err(StoreError::not_found("interaction", interaction_id)),
        Some(s) if s != InteractionState::Bot.as_str() => {
            return Err(StoreError::Conflict(format!("interaction {interaction_id} is {s}, not bot")));
        }
        Some(_) => {}
    }
    let fields_json = serde_json::to_value(fields).expect("fields serialize");
    let queue: String = sqlx::query_scalar(
        "UPDATE interactions i SET state = 'queued', fields = i.fields || $3::jsonb, updated_at = now(),
             queue = COALESCE((SELECT name FROM queues WHERE name = $2),
                              (SELECT default_queue FROM accounts a WHERE a.id = i.account_id))
         WHERE i.id = $1 RETURNING queue",
    )
    .bind(interaction_id)
    .bind(queue)
    .bind(&fields_json)
    .fetch_one(&mut *conn)
    .await?;
    let outcome = match reason {
        Some(r) => format!("handed off to {queue}: {r}"),
        None => format!("handed off to {queue}"),
    };
    sqlx::query("UPDATE bot_runs SET outcome = $2 WHERE interaction_id = $1")
        .bind(interaction_id)
        .bind(&outcome)
        .execute(&mut *conn)
        .await?;
    // in the interaction's log and history (and so to webhooks); agents learn of it from the
    // offer routing makes, which carries the fields
    let data = serde_json::json!({ "queue": queue, "fields": fields, "reason": reason });
    super::append_interaction_event(conn, interaction_id, "interaction.handoff", Some("bot"), &data).await?;
    super::load_interaction(conn, interaction_id).await
}

/// The bot is done: the interaction closes (`close_reason` `bot_ended`); the customer's next
/// message opens the conversation again. `Conflict` when it is no longer the bot's.
pub async fn bot_end(conn: &mut PgConnection, interaction_id: Uuid) -> Result<super::Transition> {
    let closed = sqlx::query(
        "UPDATE interactions SET state = 'closed', closed_at = now(), close_reason = 'bot_ended', updated_at = now()
         WHERE id = $1 AND state = 'bot'",
    )
    .bind(interaction_id)
    .execute(&mut *conn)
    .await?;
    if closed.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("interaction {interaction_id} is not the bot's")));
    }
    sqlx::query("UPDATE bot_runs SET outcome = 'ended' WHERE interaction_id = $1")
        .bind(interaction_id)
        .execute(&mut *conn)
        .await?;
    super::routing::publish(
        conn,
        interaction_id,
        "interaction.closed",
        Some("bot"),
        serde_json::json!({ "reason": "bot_ended" }),
        &[],
    )
    .await
}

/// A run as an administrator or a test sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct BotRunInfo {
    pub flow_name: String,
    pub flow_version: i32,
    pub run: Option<Run>,
    pub wake_at: Option<DateTime<Utc>>,
    pub active: bool,
    pub outcome: Option<String>,
}

/// The bot run of an interaction, if it started in state `bot`.
pub async fn bot_run_of(conn: &mut PgConnection, interaction_id: Uuid) -> Result<Option<BotRunInfo>> {
    let row = sqlx::query(
        "SELECT flow_name, flow_version, run, wake_at, active, outcome FROM bot_runs WHERE interaction_id = $1",
    )
    .bind(interaction_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let run: Option<serde_json::Value> = row.try_get("run")?;
    Ok(Some(BotRunInfo {
        flow_name: row.try_get("flow_name")?,
        flow_version: row.try_get("flow_version")?,
        run: run.map(serde_json::from_value).transpose().map_err(|e| StoreError::Corrupt(e.to_string()))?,
        wake_at: row.try_get("wake_at")?,
        active: row.try_get("active")?,
        outcome: row.try_get("outcome")?,
    }))
}
