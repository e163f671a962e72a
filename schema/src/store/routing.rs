//! Routing transitions of an interaction: queued -> offered -> assigned -> closed, decline,
//! expiry, manual take, transfer, supervisors joining. Each transition is one conditional
//! `UPDATE` (the state it expects is in its `WHERE`), so two nodes racing for one interaction
//! cannot both win; the loser gets [`StoreError::Conflict`]. Each writes its events to the
//! interaction log, the history and the streams of everyone who sees the interaction, and
//! returns who they are so the caller can wake them after the commit.

use chrono::{DateTime, Utc};
use const_format::concatcp;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::directory::set_agent_status;
use super::rows::{INTERACTION_COLUMNS, interaction_from_row};
use super::{Result, StoreError};
use crate::domain::{Agent, AgentStatus, Interaction, InteractionState};

/// An interaction together with the agents whose streams got the transition's events.
#[derive(Debug, Clone)]
pub struct Transition {
    pub interaction: Interaction,
    pub notified: Vec<String>,
}

/// What routing needs to know about a waiting interaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub id: Uuid,
    pub queue: String,
    pub channel: String,
    pub created_at: DateTime<Utc>,
    pub last_agent: Option<String>,
    pub declined_by: Vec<String>,
}

/// What routing needs to know about an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentLoad {
    pub login: String,
    pub status: AgentStatus,
    pub queues: Vec<String>,
    pub max_interactions: i32,
    pub channel_capacity: serde_json::Map<String, serde_json::Value>,
    pub idle_since: DateTime<Utc>,
    /// Open (offered or assigned) interactions per channel.
    pub load: Vec<(String, i64)>,
    /// The agent's live video calls: open rooms whose agent they are, except scheduled calls
    /// whose time has not come. Each counts `video_weight` in the agent's capacity.
    pub video_calls: i64,
}

/// An outstanding offer.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingOffer {
    pub interaction_id: Uuid,
    pub agent: String,
    pub offered_at: DateTime<Utc>,
    pub timeout_ms: i32,
}

/// Everything the router decides on, read in one go.
#[derive(Debug, Clone, Default)]
pub struct RoutingSnapshot {
    pub now: Option<DateTime<Utc>>,
    /// Queued interactions of auto-routed queues, oldest first.
    pub waiting: Vec<Waiting>,
    pub agents: Vec<AgentLoad>,
    pub offers: Vec<PendingOffer>,
    /// What a live video call counts in its agent's capacity (`chatserver.video_weight`; set
    /// by the router, not read from the database).
    pub video_weight: i64,
}

pub async fn routing_snapshot(conn: &mut PgConnection) -> Result<RoutingSnapshot> {
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(&mut *conn).await?;
    let waiting = sqlx::query(
        "SELECT i.id, i.queue, i.channel, i.created_at, i.last_agent, i.declined_by
         FROM interactions i JOIN queues q ON q.name = i.queue
         WHERE i.state = 'queued' AND q.routing_mode = 'auto'
         ORDER BY i.created_at, i.id",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Waiting {
            id: r.try_get("id")?,
            queue: r.try_get("queue")?,
            channel: r.try_get("channel")?,
            created_at: r.try_get("created_at")?,
            last_agent: r.try_get("last_agent")?,
            declined_by: r.try_get("declined_by")?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    let agents = sqlx::query(
        "SELECT a.login, a.status, a.queues, a.max_interactions, a.channel_capacity, a.idle_since,
                COALESCE((SELECT jsonb_object_agg(channel, n) FROM (
                    SELECT channel, count(*) AS n FROM interactions
                    WHERE agent = a.login AND state IN ('offered', 'assigned') GROUP BY channel) l), '{}') AS load,
                (SELECT count(*) FROM video_rooms v WHERE v.agent_login = a.login AND v.state = 'open'
                   AND NOT EXISTS (SELECT 1 FROM scheduled_calls s WHERE s.room_id = v.id AND s.at > now())) AS video_calls
         FROM agents a WHERE a.status = 'ready' AND 'agent' = ANY(a.roles) ORDER BY a.idle_since, a.login",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        let load: serde_json::Value = r.try_get("load")?;
        let capacity: serde_json::Value = r.try_get("channel_capacity")?;
        Ok(AgentLoad {
            login: r.try_get("login")?,
            status: r.try_get::<&str, _>("status")?.parse()?,
            queues: r.try_get("queues")?,
            max_interactions: r.try_get("max_interactions")?,
            channel_capacity: capacity.as_object().cloned().unwrap_or_default(),
            idle_since: r.try_get("idle_since")?,
            load: load
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0))).collect())
                .unwrap_or_default(),
            video_calls: r.try_get("video_calls")?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    let offers = sqlx::query(
        "SELECT i.id, i.agent, i.offered_at, q.offer_timeout_ms FROM interactions i JOIN queues q ON q.name = i.queue
         WHERE i.state = 'offered' ORDER BY i.offered_at",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(PendingOffer {
            interaction_id: r.try_get("id")?,
            agent: r.try_get("agent")?,
            offered_at: r.try_get("offered_at")?,
            timeout_ms: r.try_get("offer_timeout_ms")?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    Ok(RoutingSnapshot { now: Some(now), waiting, agents, offers, video_weight: 0 })
}

async fn locked(conn: &mut PgConnection, id: Uuid) -> Result<Interaction> {
    const SQL: &str = concatcp!(
        "SELECT ",
        INTERACTION_COLUMNS,
        " FROM interactions i JOIN customers c ON c.id = i.customer_id WHERE i.id = $1 FOR NO KEY UPDATE OF i"
    );
    let row = sqlx::query(SQL)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("interaction", id))?;
    interaction_from_row(&row)
}

fn conflict(interaction: &Interaction, expected: &str) -> StoreError {
    StoreError::Conflict(format!(
        "interaction {} is {}{}, not {expected}",
        interaction.id,
        interaction.state,
        interaction.agent.as_deref().map(|a| format!(" (agent {a})")).unwrap_or_default()
    ))
}

/// Records the transition's event in the interaction log and fans it out to `extra` agents and
/// to everyone who sees the interaction now.
pub(super) async fn publish(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    event: &str,
    actor: Option<&str>,
    data: serde_json::Value,
    extra: &[&str],
) -> Result<Transition> {
    let interaction = super::load_interaction(conn, interaction_id).await?;
    let mut data = data;
    data["interaction"] = serde_json::to_value(&interaction).expect("interaction serializes");
    super::append_interaction_event(conn, interaction_id, event, actor, &data).await?;
    let mut notified = super::interaction_audience(conn, interaction_id).await?;
    for agent in extra {
        if !notified.iter().any(|a| a == agent) {
            notified.push((*agent).to_owned());
        }
    }
    for agent in &notified {
        super::append_agent_event(conn, agent, event, &data).await?;
    }
    Ok(Transition { interaction, notified })
}

/// Offers a queued interaction to `agent`. Conflict if it is no longer queued.
pub async fn offer(conn: &mut PgConnection, interaction_id: Uuid, agent: &str, timeout_ms: i32) -> Result<Transition> {
    let current = locked(conn, interaction_id).await?;
    if current.state != InteractionState::Queued {
        return Err(conflict(&current, "queued"));
    }
    sqlx::query("UPDATE interactions SET state = 'offered', agent = $2, offered_at = now() WHERE id = $1")
        .bind(interaction_id)
        .bind(agent)
        .execute(&mut *conn)
        .await?;
    publish(conn, interaction_id, "interaction.offered", None, serde_json::json!({ "timeout_ms": timeout_ms }), &[])
        .await
}

/// The offered agent accepts.
pub async fn accept(conn: &mut PgConnection, interaction_id: Uuid, agent: &str) -> Result<Transition> {
    let current = locked(conn, interaction_id).await?;
    if current.state != InteractionState::Offered || current.agent.as_deref() != Some(agent) {
        return Err(conflict(&current, &format!("offered to {agent}")));
    }
    assign(conn, interaction_id, agent, "interaction.assigned", serde_json::json!({})).await
}

/// An agent takes a queued interaction by hand (manual queues, or any queue the agent serves).
/// Unless `any_queue` (supervisors), the agent must serve the interaction's queue and have a free
/// slot.
pub async fn take(conn: &mut PgConnection, interaction_id: Uuid, agent: &str, any_queue: bool) -> Result<Transition> {
    let current = locked(conn, interaction_id).await?;
    // a conversation the bot has may be taken too: the bot stops (migration 0017's fence)
    if !matches!(current.state, InteractionState::Queued | InteractionState::Bot) {
        return Err(conflict(&current, "queued or with the bot"));
    }
    if !any_queue {
        let profile = super::get_agent(conn, agent).await?;
        let queue = current.queue.clone().unwrap_or_default();
        if !profile.queues.contains(&queue) {
            return Err(StoreError::Forbidden(format!("you do not serve queue {queue:?}")));
        }
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM interactions WHERE agent = $1 AND state IN ('offered', 'assigned')",
        )
        .bind(agent)
        .fetch_one(&mut *conn)
        .await?;
        if open >= i64::from(profile.max_interactions) {
            return Err(StoreError::Conflict(format!(
                "you already have {open} open interactions, your maximum is {}",
                profile.max_interactions
            )));
        }
    }
    assign(conn, interaction_id, agent, "interaction.assigned", serde_json::json!({ "taken": true })).await
}

async fn assign(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    agent: &str,
    event: &str,
    data: serde_json::Value,
) -> Result<Transition> {
    sqlx::query(
        "UPDATE interactions SET state = 'assigned', agent = $2, last_agent = $2, assigned_at = now(),
             offered_at = NULL, declined_by = '{}' WHERE id = $1",
    )
    .bind(interaction_id)
    .bind(agent)
    .execute(&mut *conn)
    .await?;
    let done = publish(conn, interaction_id, event, Some(agent), data, &[]).await?;
    catch_up(conn, interaction_id, agent).await?;
    super::hand_over_rooms(conn, interaction_id, agent).await?;
    Ok(done)
}

/// The most messages [`catch_up`] replays; an older part of the conversation is read with
/// `history.get`.
pub const CATCH_UP_MAX: i64 = 200;

/// Replays the interaction's conversation into the stream of the agent it was just assigned
/// to: one `message.new` (with `catch_up: true`) per message, oldest first, the last
/// [`CATCH_UP_MAX`] of them. The customer's messages written while the interaction waited in a
/// queue reached only its participants; with this, a client that only follows events sees the
/// whole conversation of what it accepts. An agent that saw some of them before (it held the
/// interaction before a transfer, or joined it) gets them again, with the same `id`.
async fn catch_up(conn: &mut PgConnection, interaction_id: Uuid, agent: &str) -> Result<usize> {
    let mut ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM messages WHERE interaction_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(interaction_id)
    .bind(CATCH_UP_MAX)
    .fetch_all(&mut *conn)
    .await?;
    ids.reverse();
    let messages = super::load_messages(conn, &ids).await?;
    let mut by_id: std::collections::HashMap<Uuid, crate::domain::Message> =
        messages.into_iter().map(|m| (m.id, m)).collect();
    for id in &ids {
        if let Some(message) = by_id.remove(id) {
            let data = serde_json::json!({ "message": message, "catch_up": true });
            super::append_agent_event(conn, agent, "message.new", &data).await?;
        }
    }
    Ok(ids.len())
}

/// Why an offer went back to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferEnd {
    Declined,
    Expired,
}

/// The offered agent declines, or lets the offer expire: the interaction goes back to the queue
/// and the agent is not offered it again. An agent whose offer expired is set `not_ready`.
pub async fn return_offer(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    agent: &str,
    why: OfferEnd,
) -> Result<Transition> {
    let current = locked(conn, interaction_id).await?;
    if current.state != InteractionState::Offered || current.agent.as_deref() != Some(agent) {
        return Err(conflict(&current, &format!("offered to {agent}")));
    }
    sqlx::query(
        "UPDATE interactions SET state = 'queued', agent = NULL, offered_at = NULL,
             declined_by = array_append(declined_by, $2) WHERE id = $1",
    )
    .bind(interaction_id)
    .bind(agent)
    .execute(&mut *conn)
    .await?;
    let (event, reason) = match why {
        OfferEnd::Declined => ("interaction.declined", "declined"),
        OfferEnd::Expired => ("interaction.offer_expired", "offer_expired"),
    };
    let transition = publish(
        conn,
        interaction_id,
        event,
        Some(agent),
        serde_json::json!({ "agent": agent, "reason": reason }),
        &[agent],
    )
    .await?;
    if why == OfferEnd::Expired {
        let updated = set_agent_status(conn, agent, AgentStatus::NotReady, Some("offer_expired")).await?;
        append_status_event(conn, &updated).await?;
    }
    Ok(transition)
}

/// Where a transfer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTarget {
    Agent(String),
    Queue(String),
}

/// Moves an assigned interaction from `from` to another agent (assigned to them at once) or back
/// into a queue.
pub async fn transfer(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    from: &str,
    to: &TransferTarget,
    note: Option<&str>,
) -> Result<Transition> {
    let current = locked(conn, interaction_id).await?;
    if current.state != InteractionState::Assigned || current.agent.as_deref() != Some(from) {
        return Err(conflict(&current, &format!("assigned to {from}")));
    }
    match to {
        TransferTarget::Agent(login) => {
            let target = super::get_agent(conn, login).await?;
            if !target.roles.iter().any(|r| r == "agent") {
                return Err(StoreError::Invalid(format!("{login} is not an agent (roles {:?})", target.roles)));
            }
            if login == from {
                return Err(StoreError::Invalid("cannot transfer an interaction to its own agent".into()));
            }
            sqlx::query(
                "UPDATE interactions SET agent = $2, last_agent = $2, assigned_at = now(), declined_by = '{}' WHERE id = $1",
            )
            .bind(interaction_id)
            .bind(login)
            .execute(&mut *conn)
            .await?;
        }
        TransferTarget::Queue(queue) => {
            super::get_queue(conn, queue).await?;
            sqlx::query(
                "UPDATE interactions SET state = 'queued', agent = NULL, queue = $2, assigned_at = NULL,
                     declined_by = '{}' WHERE id = $1",
            )
            .bind(interaction_id)
            .bind(queue)
            .execute(&mut *conn)
            .await?;
        }
    }
    free_slot(conn, from).await?;
    let (to_agent, to_queue) = match to {
        TransferTarget::Agent(a) => (Some(a.as_str()), None),
        TransferTarget::Queue(q) => (None, Some(q.as_str())),
    };
    let data = serde_json::json!({ "from_agent": from, "to_agent": to_agent, "to_queue": to_queue, "note": note });
    let done = publish(conn, interaction_id, "interaction.transferred", Some(from), data, &[from]).await?;
    if let Some(login) = to_agent {
        catch_up(conn, interaction_id, login).await?;
        super::hand_over_rooms(conn, interaction_id, login).await?;
    }
    Ok(done)
}

/// Closes an interaction. `by` is the agent closing it (who must be assigned to it).
pub async fn close(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    by: &str,
    reason: Option<&str>,
) -> Result<Transition> {
    let current = locked(conn, interaction_id).await?;
    if current.state != InteractionState::Assigned || current.agent.as_deref() != Some(by) {
        return Err(conflict(&current, &format!("assigned to {by}")));
    }
    sqlx::query(
        "UPDATE interactions SET state = 'closed', closed_at = now(), close_reason = $2, offered_at = NULL WHERE id = $1",
    )
    .bind(interaction_id)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    let transition =
        publish(conn, interaction_id, "interaction.closed", Some(by), serde_json::json!({ "reason": reason }), &[])
            .await?;
    // a call of a closed interaction ends with it (its sockets learn from the video doorbell)
    let open_rooms: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM video_rooms WHERE interaction_id = $1 AND state = 'open'")
            .bind(interaction_id)
            .fetch_all(&mut *conn)
            .await?;
    for room in open_rooms {
        super::end_room(conn, room, "interaction_closed", Some(by)).await?;
    }
    sqlx::query("DELETE FROM interaction_participants WHERE interaction_id = $1")
        .bind(interaction_id)
        .execute(&mut *conn)
        .await?;
    free_slot(conn, by).await?;
    Ok(transition)
}

/// A supervisor (or another agent) joins an interaction, seeing its events from now on.
pub async fn join(conn: &mut PgConnection, interaction_id: Uuid, agent: &str, mode: &str) -> Result<Transition> {
    let current = locked(conn, interaction_id).await?;
    if current.state == InteractionState::Closed {
        return Err(conflict(&current, "open"));
    }
    sqlx::query(
        "INSERT INTO interaction_participants (interaction_id, agent_login, mode) VALUES ($1, $2, $3)
         ON CONFLICT (interaction_id, agent_login) DO UPDATE SET mode = EXCLUDED.mode",
    )
    .bind(interaction_id)
    .bind(agent)
    .bind(mode)
    .execute(&mut *conn)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(db) if db.is_check_violation() => {
            StoreError::Invalid(format!("mode must be monitor or participate, not {mode:?}"))
        }
        other => other.into(),
    })?;
    publish(
        conn,
        interaction_id,
        "interaction.joined",
        Some(agent),
        serde_json::json!({ "agent": agent, "mode": mode }),
        &[],
    )
    .await
}

/// How `agent` takes part in an interaction: `assigned`, `participate`, `monitor`, or `None`.
pub async fn participation(conn: &mut PgConnection, interaction_id: Uuid, agent: &str) -> Result<Option<String>> {
    let role: Option<String> = sqlx::query_scalar(
        "SELECT 'assigned' FROM interactions WHERE id = $1 AND agent = $2 AND state = 'assigned'
         UNION ALL
         SELECT mode FROM interaction_participants WHERE interaction_id = $1 AND agent_login = $2
         LIMIT 1",
    )
    .bind(interaction_id)
    .bind(agent)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(role)
}

/// After an agent's slot frees up, it counts as idle from now (longest-idle routing).
async fn free_slot(conn: &mut PgConnection, agent: &str) -> Result<()> {
    sqlx::query("UPDATE agents SET idle_since = now() WHERE login = $1").bind(agent).execute(&mut *conn).await?;
    Ok(())
}

/// Sets an agent's status (becoming `ready` starts its idle time) and appends `agent.status` to
/// its own stream.
pub async fn change_agent_status(
    conn: &mut PgConnection,
    agent: &str,
    status: AgentStatus,
    reason: Option<&str>,
) -> Result<Agent> {
    let updated = set_agent_status(conn, agent, status, reason).await?;
    if status == AgentStatus::Ready {
        free_slot(conn, agent).await?;
    }
    append_status_event(conn, &updated).await?;
    Ok(updated)
}

async fn append_status_event(conn: &mut PgConnection, agent: &Agent) -> Result<()> {
    let data = serde_json::json!({ "agent": agent.login, "status": agent.status, "reason": agent.status_reason });
    super::append_agent_event(conn, &agent.login, "agent.status", &data).await?;
    Ok(())
}

/// Interactions an agent has open (offered to or assigned to it, or joined), newest first.
pub async fn open_interactions_of(conn: &mut PgConnection, agent: &str) -> Result<Vec<Interaction>> {
    const SQL: &str = concatcp!(
        "SELECT ",
        INTERACTION_COLUMNS,
        " FROM interactions i JOIN customers c ON c.id = i.customer_id
         WHERE i.state <> 'closed' AND (i.agent = $1 OR EXISTS (
             SELECT 1 FROM interaction_participants p WHERE p.interaction_id = i.id AND p.agent_login = $1))
         ORDER BY i.created_at DESC"
    );
    let rows = sqlx::query(SQL).bind(agent).fetch_all(&mut *conn).await?;
    rows.iter().map(interaction_from_row).collect()
}

/// Queued interactions of the given queues (all queues when empty), oldest first.
pub async fn queued_interactions(conn: &mut PgConnection, queues: &[String], limit: i64) -> Result<Vec<Interaction>> {
    const SQL: &str = concatcp!(
        "SELECT ",
        INTERACTION_COLUMNS,
        " FROM interactions i JOIN customers c ON c.id = i.customer_id
         WHERE i.state = 'queued' AND (cardinality($1::text[]) = 0 OR i.queue = ANY($1))
         ORDER BY i.created_at, i.id LIMIT $2"
    );
    let rows = sqlx::query(SQL).bind(queues).bind(limit).fetch_all(&mut *conn).await?;
    rows.iter().map(interaction_from_row).collect()
}

/// Live counts for supervisors: agents with their status and load, queues with their waiting.
pub async fn overview(conn: &mut PgConnection) -> Result<serde_json::Value> {
    let agents: serde_json::Value = sqlx::query_scalar(
        "SELECT COALESCE(jsonb_agg(jsonb_build_object(
             'login', a.login, 'name', a.name, 'roles', a.roles, 'status', a.status, 'reason', a.status_reason,
             'queues', a.queues, 'max_interactions', a.max_interactions,
             'open', (SELECT count(*) FROM interactions i WHERE i.agent = a.login AND i.state IN ('offered', 'assigned')))
             ORDER BY a.login), '[]') FROM agents a",
    )
    .fetch_one(&mut *conn)
    .await?;
    let queues: serde_json::Value = sqlx::query_scalar(
        "SELECT COALESCE(jsonb_agg(jsonb_build_object(
             'name', q.name, 'routing_mode', q.routing_mode, 'offer_timeout_ms', q.offer_timeout_ms,
             'queued', (SELECT count(*) FROM interactions i WHERE i.queue = q.name AND i.state = 'queued'),
             'offered', (SELECT count(*) FROM interactions i WHERE i.queue = q.name AND i.state = 'offered'),
             'assigned', (SELECT count(*) FROM interactions i WHERE i.queue = q.name AND i.state = 'assigned'),
             'oldest_queued_at', (SELECT to_char(min(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
                                  FROM interactions i WHERE i.queue = q.name AND i.state = 'queued'))
             ORDER BY q.name), '[]') FROM queues q",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(serde_json::json!({ "agents": agents, "queues": queues }))
}

/// How an agent names the customer of a new outbound conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerKey {
    ExternalId(String),
    Phone(String),
}

/// Opens an interaction an agent starts with a known customer of `account_id` (found by platform
/// id or phone), assigned to that agent. Conflict if the customer already has an open one.
pub async fn start_interaction(
    conn: &mut PgConnection,
    account_id: Uuid,
    customer: &CustomerKey,
    agent: &str,
) -> Result<Transition> {
    let row = match customer {
        CustomerKey::ExternalId(id) => {
            sqlx::query(
                "SELECT ci.external_id, ci.customer_id FROM customer_identities ci
                 WHERE ci.account_id = $1 AND ci.external_id = $2",
            )
            .bind(account_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        }
        CustomerKey::Phone(phone) => {
            sqlx::query(
                "SELECT ci.external_id, ci.customer_id FROM customer_identities ci JOIN customers c ON c.id = ci.customer_id
                 WHERE ci.account_id = $1 AND (ci.phone = $2 OR c.phone = $2) ORDER BY ci.updated_at DESC LIMIT 1",
            )
            .bind(account_id)
            .bind(phone)
            .fetch_optional(&mut *conn)
            .await?
        }
    };
    let row = row.ok_or_else(|| {
        StoreError::not_found(
            "customer",
            match customer {
                CustomerKey::ExternalId(id) => format!("{id} on account {account_id}"),
                CustomerKey::Phone(p) => format!("with phone {p} on account {account_id}"),
            },
        )
    })?;
    let external_id: String = row.try_get("external_id")?;
    let customer_id: Uuid = row.try_get("customer_id")?;
    let account = super::get_account(conn, account_id).await?;
    let id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO interactions (id, account_id, customer_id, external_id, channel, chat_id, state, queue, agent,
             last_agent, assigned_at)
         VALUES ($1, $2, $3, $4, $5, $4, 'assigned', $6, $7, $7, now())
         ON CONFLICT (account_id, customer_id) WHERE state <> 'closed' DO NOTHING",
    )
    .bind(id)
    .bind(account_id)
    .bind(customer_id)
    .bind(&external_id)
    .bind(account.channel.as_str())
    .bind(&account.default_queue)
    .bind(agent)
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!(
            "customer {customer_id} already has an open interaction on account {account_id}"
        )));
    }
    publish(conn, id, "interaction.assigned", Some(agent), serde_json::json!({ "started_by": agent }), &[]).await
}
