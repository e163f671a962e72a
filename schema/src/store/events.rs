//! Event logs: per agent (what the agent's sockets receive, replayable with `resume_from`) and
//! per interaction (the interaction's own audit trail).
//!
//! Sequence numbers are gap-free: each append bumps the owning row's counter under its row lock
//! in the caller's transaction, so concurrent writers queue on the lock and a rolled-back
//! transaction gives its number back.

use const_format::concatcp;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Result, StoreError};
use crate::domain::AgentEvent;

/// Appends one event to `agent`'s stream and returns its `seq`.
pub async fn append_agent_event(
    conn: &mut PgConnection,
    agent: &str,
    event: &str,
    data: &serde_json::Value,
) -> Result<i64> {
    let seq: Option<i64> = sqlx::query_scalar(
        "WITH bumped AS (
             UPDATE agents SET last_event_seq = last_event_seq + 1 WHERE login = $1 RETURNING last_event_seq
         )
         INSERT INTO agent_events (agent_login, seq, event, data)
         SELECT $1, last_event_seq, $2, $3 FROM bumped
         RETURNING seq",
    )
    .bind(agent)
    .bind(event)
    .bind(data)
    .fetch_optional(&mut *conn)
    .await?;
    seq.ok_or_else(|| StoreError::not_found("agent", agent))
}

/// Events of `agent` with `seq > after`, oldest first, at most `limit`.
pub async fn agent_events_after(
    conn: &mut PgConnection,
    agent: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<AgentEvent>> {
    let rows = sqlx::query(
        "SELECT seq, event, data FROM agent_events WHERE agent_login = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(agent)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| Ok(AgentEvent { seq: r.try_get("seq")?, event: r.try_get("event")?, data: r.try_get("data")? }))
        .collect()
}

/// The last `seq` handed out for `agent` (0 before the first event).
pub async fn agent_last_seq(conn: &mut PgConnection, agent: &str) -> Result<i64> {
    sqlx::query_scalar("SELECT last_event_seq FROM agents WHERE login = $1")
        .bind(agent)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("agent", agent))
}

/// Appends one event to an interaction's log and to its customer's history; returns its `seq`.
pub async fn append_interaction_event(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    kind: &str,
    actor: Option<&str>,
    data: &serde_json::Value,
) -> Result<i64> {
    let seq: Option<i64> = sqlx::query_scalar(
        "WITH bumped AS (
             UPDATE interactions SET last_event_seq = last_event_seq + 1, updated_at = now()
             WHERE id = $1 RETURNING last_event_seq
         )
         INSERT INTO interaction_events (interaction_id, seq, kind, actor, data)
         SELECT $1, last_event_seq, $2, $3, $4 FROM bumped
         RETURNING seq",
    )
    .bind(interaction_id)
    .bind(kind)
    .bind(actor)
    .bind(data)
    .fetch_optional(&mut *conn)
    .await?;
    let seq = seq.ok_or_else(|| StoreError::not_found("interaction", interaction_id))?;
    if kind != "message.new" {
        // messages reach the history through their own entry (see history::record_message)
        super::history::record_event(conn, interaction_id, kind, actor, data).await?;
    }
    Ok(seq)
}

/// [`append_interaction_event`] for many events of one kind at once: `datas[n]` to the log of
/// `interactions[n]` (each interaction's numbers gap-free in the entries' order) and, as for
/// one event, to the customers' histories; three statements' worth of work in one.
pub(crate) async fn append_interaction_events_many(
    conn: &mut PgConnection,
    interactions: &[Uuid],
    kind: &str,
    actor: Option<&str>,
    datas: &[serde_json::Value],
) -> Result<()> {
    if interactions.is_empty() {
        return Ok(());
    }
    debug_assert_ne!(kind, "message.new", "messages reach the history through their own entry");
    sqlx::query(
        "WITH input AS (
             SELECT * FROM unnest($1::uuid[], $2::jsonb[]) WITH ORDINALITY AS t(interaction_id, data, n)
         ), counts AS (
             SELECT interaction_id, count(*) AS k FROM input GROUP BY interaction_id
         ), bumped AS (
             UPDATE interactions i SET last_event_seq = i.last_event_seq + counts.k, updated_at = now()
             FROM counts WHERE i.id = counts.interaction_id
             RETURNING i.id, i.last_event_seq AS top, counts.k, i.customer_id, i.channel
         ), numbered AS (
             SELECT input.*, b.top - b.k + row_number() OVER (PARTITION BY input.interaction_id ORDER BY input.n) AS seq,
                    b.customer_id, b.channel
             FROM input JOIN bumped b ON b.id = input.interaction_id
         ), logged AS (
             INSERT INTO interaction_events (interaction_id, seq, kind, actor, data)
             SELECT interaction_id, seq, $3, $4, data FROM numbered
         )
         INSERT INTO history (customer_id, interaction_id, channel, entry, event)
         SELECT customer_id, interaction_id, channel, 'event', jsonb_build_object('kind', $3::text, 'actor', $4::text, 'data', data)
         FROM numbered ORDER BY n",
    )
    .bind(interactions)
    .bind(datas)
    .bind(kind)
    .bind(actor)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The external bots (agents with the role `bot`) serving the queue of interaction `$1` while it
/// is in state `bot` with no flow running it ([`super::bot_access`]): they own it and see its
/// events. One `SELECT` of logins, for a `UNION`.
const EXTERNAL_BOTS: &str = "SELECT a.login FROM interactions i
     JOIN agents a ON i.queue = ANY(a.queues) AND 'bot' = ANY(a.roles)
     WHERE i.id = $1 AND i.state = 'bot'
       AND NOT EXISTS (SELECT 1 FROM bot_runs r WHERE r.interaction_id = i.id AND r.active)";

/// Who sees an interaction's events: its assigned agent, every joined participant, and the
/// external bots that own it while it is in state `bot` ([`EXTERNAL_BOTS`]).
pub async fn interaction_audience(conn: &mut PgConnection, interaction_id: Uuid) -> Result<Vec<String>> {
    let agents: Vec<String> = sqlx::query_scalar(concatcp!(
        "SELECT agent FROM interactions WHERE id = $1 AND agent IS NOT NULL
             UNION
             SELECT agent_login FROM interaction_participants WHERE interaction_id = $1
             UNION ",
        EXTERNAL_BOTS,
        " ORDER BY 1"
    ))
    .bind(interaction_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(agents)
}

/// Appends `event` to the stream of every agent in the interaction's audience and returns who
/// they are (sorted), so the caller can wake them after the commit. The agents' rows are locked
/// in login order first, so concurrent fan-outs to overlapping audiences cannot deadlock; the
/// update is a second statement, because one statement that locks a row and then updates it
/// deadlocks when another writer commits that row in between (the update's snapshot still sees
/// the old version and waits for the tuple lock the next waiter holds; seen in
/// `tests/connector_failover.rs`).
pub async fn fan_out(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    event: &str,
    data: &serde_json::Value,
) -> Result<Vec<String>> {
    let audience: Vec<String> = sqlx::query_scalar(concatcp!(
        "SELECT login FROM agents WHERE login IN (
                 SELECT agent FROM interactions WHERE id = $1 AND agent IS NOT NULL
                 UNION
                 SELECT agent_login FROM interaction_participants WHERE interaction_id = $1
                 UNION ",
        EXTERNAL_BOTS,
        ") ORDER BY login FOR NO KEY UPDATE"
    ))
    .bind(interaction_id)
    .fetch_all(&mut *conn)
    .await?;
    if audience.is_empty() {
        return Ok(audience);
    }
    sqlx::query(
        "WITH bumped AS (
             UPDATE agents SET last_event_seq = last_event_seq + 1 WHERE login = ANY($1)
             RETURNING login, last_event_seq
         )
         INSERT INTO agent_events (agent_login, seq, event, data)
         SELECT login, last_event_seq, $2, $3 FROM bumped",
    )
    .bind(&audience)
    .bind(event)
    .bind(data)
    .execute(&mut *conn)
    .await?;
    Ok(audience)
}

/// Who sees each of these interactions: its assigned agent, every joined participant and its
/// external bots ([`EXTERNAL_BOTS`]), sorted.
/// Interactions nobody sees are absent.
pub(crate) async fn audiences(
    conn: &mut PgConnection,
    interactions: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Vec<String>>> {
    let pairs: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, agent FROM interactions WHERE id = ANY($1) AND agent IS NOT NULL
         UNION
         SELECT interaction_id, agent_login FROM interaction_participants WHERE interaction_id = ANY($1)
         UNION
         SELECT i.id, a.login FROM interactions i JOIN agents a ON i.queue = ANY(a.queues) AND 'bot' = ANY(a.roles)
         WHERE i.id = ANY($1) AND i.state = 'bot'
           AND NOT EXISTS (SELECT 1 FROM bot_runs r WHERE r.interaction_id = i.id AND r.active)
         ORDER BY 1, 2",
    )
    .bind(interactions)
    .fetch_all(&mut *conn)
    .await?;
    let mut out: std::collections::HashMap<Uuid, Vec<String>> = std::collections::HashMap::new();
    for (interaction, login) in pairs {
        out.entry(interaction).or_default().push(login);
    }
    Ok(out)
}

/// Appends `event` with `datas[n]` for `interactions[n]`, for every `n`, to the stream of every
/// agent in that interaction's `audience` ([`audiences`]): the agents' rows locked in login order
/// first (as [`fan_out`] does, and in a statement of its own for the same reason), then every
/// entry in one statement, each agent's sequence numbers gap-free in the entries' order.
pub(crate) async fn fan_out_many(
    conn: &mut PgConnection,
    audience: &std::collections::HashMap<Uuid, Vec<String>>,
    interactions: &[Uuid],
    event: &str,
    datas: &[serde_json::Value],
) -> Result<()> {
    let mut logins: Vec<&str> = Vec::new();
    let mut indexes: Vec<i64> = Vec::new();
    for (n, interaction) in interactions.iter().enumerate() {
        for login in audience.get(interaction).into_iter().flatten() {
            logins.push(login);
            indexes.push(n as i64 + 1);
        }
    }
    if logins.is_empty() {
        return Ok(());
    }
    let mut agents: Vec<&str> = logins.clone();
    agents.sort_unstable();
    agents.dedup();
    sqlx::query("SELECT login FROM agents WHERE login = ANY($1) ORDER BY login FOR NO KEY UPDATE")
        .bind(&agents)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "WITH input AS (
             SELECT * FROM unnest($2::text[], $3::int8[]) WITH ORDINALITY AS t(login, idx, n)
         ), counts AS (
             SELECT login, count(*) AS k FROM input GROUP BY login
         ), bumped AS (
             UPDATE agents a SET last_event_seq = a.last_event_seq + counts.k FROM counts WHERE a.login = counts.login
             RETURNING a.login, a.last_event_seq AS top, counts.k
         )
         INSERT INTO agent_events (agent_login, seq, event, data)
         SELECT i.login, b.top - b.k + row_number() OVER (PARTITION BY i.login ORDER BY i.n), $1, ($4::jsonb[])[i.idx]
         FROM input i JOIN bumped b ON b.login = i.login",
    )
    .bind(event)
    .bind(&logins)
    .bind(&indexes)
    .bind(datas)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
