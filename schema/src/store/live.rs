//! What a supervisor's live view shows (`supervisor.overview` of the agent API): the counts of
//! [`super::overview`] and the open interactions themselves.

use sqlx::PgConnection;

use super::Result;

/// The most open interactions the live view lists (the longest-waiting first).
pub const LIVE_INTERACTIONS: i64 = 200;

/// `{"agents", "queues", "interactions"}`: agents and queues as [`super::overview`] gives them,
/// and up to [`LIVE_INTERACTIONS`] open interactions: the waiting ones first (queued or offered,
/// longest wait first), then the assigned ones (oldest assignment first). Each has `id`,
/// `channel`, `queue`, `state`, `agent` (or null), `customer` (`id`, `name`), `waiting_since`
/// (queued or offered: when it last entered its queue, by a first message, a return or a
/// transfer to the queue; else null), `assigned_at` (or null), `last_customer_message_at` (or
/// null), `participants` (supervisors who joined: `agent`, `mode`) and `call` (the id of its
/// open video room, or null). Times are RFC 3339 UTC with `Z`.
pub async fn live_overview(conn: &mut PgConnection) -> Result<serde_json::Value> {
    let mut overview = super::overview(conn).await?;
    let interactions: serde_json::Value = sqlx::query_scalar(
        "WITH open AS (
             SELECT i.id, i.channel, i.queue, i.state, i.agent, i.assigned_at, i.last_customer_message_at,
                    c.id AS customer_id, c.name AS customer_name,
                    CASE WHEN i.state IN ('queued', 'offered') THEN COALESCE(
                        (SELECT max(e.created_at) FROM interaction_events e
                         WHERE e.interaction_id = i.id
                           AND (e.kind IN ('interaction.created', 'interaction.reopened')
                                OR (e.kind = 'interaction.transferred' AND e.data->>'to_queue' IS NOT NULL))),
                        i.created_at) END AS waiting_since
             FROM interactions i JOIN customers c ON c.id = i.customer_id
             WHERE i.state IN ('queued', 'offered', 'assigned')
         ),
         listed AS (
             SELECT * FROM open
             ORDER BY waiting_since IS NULL, waiting_since, assigned_at, id
             LIMIT $1
         )
         SELECT COALESCE(jsonb_agg(jsonb_build_object(
             'id', l.id, 'channel', l.channel, 'queue', l.queue, 'state', l.state, 'agent', l.agent,
             'customer', jsonb_build_object('id', l.customer_id, 'name', l.customer_name),
             'waiting_since', to_char(l.waiting_since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
             'assigned_at', to_char(l.assigned_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
             'last_customer_message_at',
                 to_char(l.last_customer_message_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
             'participants', COALESCE((SELECT jsonb_agg(jsonb_build_object('agent', p.agent_login, 'mode', p.mode)
                                                        ORDER BY p.agent_login)
                                       FROM interaction_participants p WHERE p.interaction_id = l.id), '[]'),
             'call', (SELECT r.id FROM video_rooms r WHERE r.interaction_id = l.id AND r.state = 'open' LIMIT 1))
             ORDER BY l.waiting_since IS NULL, l.waiting_since, l.assigned_at, l.id), '[]')
         FROM listed l",
    )
    .bind(LIVE_INTERACTIONS)
    .fetch_one(&mut *conn)
    .await?;
    overview["interactions"] = interactions;
    Ok(overview)
}
