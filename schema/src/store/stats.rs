//! Statistics of a period for the admin panel and integrators (`GET /api/v1/stats/{report}`).
//!
//! Everything is read from what the hub already keeps: the routing events of the interaction log
//! (`interaction_events`), the messages, the agents' status changes (their `agent.status` events)
//! and the video rooms. Nothing is pre-aggregated, so a report is exact for any period, time zone
//! and filter; the indexes of migration 0014 keep the period scans on the routing events only.
//!
//! **Contacts.** A contact is one stay of a customer in the queue: it starts when the customer's
//! message opens an interaction (`interaction.created`) or reopens a closed one
//! (`interaction.reopened`), and lasts until the interaction's next start. For each contact:
//!
//! - *answered*: an agent was assigned during it; *wait* = its first assignment − its start;
//! - *handling time* = its first close − its first assignment (closed contacts only);
//! - *first response* = the first message an agent wrote after its start − its start;
//! - *abandoned*: no agent was ever assigned, and the contact is over (closed, or followed by
//!   another) or the customer has been silent for longer than `abandon_after` since their last
//!   message of it. A contact that is still waiting within that time is neither.
//!
//! Contacts count in the bucket (hour or day, in the requested time zone) in which they started.
//!
//! **Agents.** An agent handles an interaction from its `interaction.assigned` (or a transfer to
//! them) to the next assignment, transfer or close of that interaction; handling time is the
//! part of those spans inside the period, summed over interactions (two chats at once count
//! twice). Ready time is the part of the period the agent's stored status was `ready` (the
//! status survives a disconnect: an agent who leaves without setting `not_ready` counts as ready).
//! *Occupancy* is handling time / (ready time × the agent's `max_interactions`), capped at 1: the
//! share of the agent's capacity in use while ready. A span that began before the period and
//! ended after it with no event inside the period is only seen while the interaction is still
//! assigned (the report does not scan the whole log for it).
//!
//! **Calls.** A video room counts in the bucket it was created in; it *connected* when the
//! customer joined, and its duration runs from the customer's first join to its end.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use super::Result;

/// The width of a report's time buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }
}

/// What a report covers.
#[derive(Debug, Clone)]
pub struct StatsQuery {
    /// Start of the period, inclusive.
    pub from: DateTime<Utc>,
    /// End of the period, exclusive.
    pub to: DateTime<Utc>,
    pub bucket: Bucket,
    /// An IANA time zone name (`Europe/Moscow`), for the buckets' boundaries.
    pub tz: String,
    /// Any of these channels (all when empty).
    pub channels: Vec<String>,
    /// Any of these queues (all when empty).
    pub queues: Vec<String>,
    /// A contact nobody took is abandoned once its customer has been silent this long.
    pub abandon_after: Duration,
}

/// Contacts of one bucket, channel and queue.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeRow {
    pub bucket: DateTime<Utc>,
    pub channel: String,
    pub queue: String,
    pub contacts: i64,
    pub answered: i64,
    pub abandoned: i64,
}

/// Waiting, handling and first response times of one bucket, in seconds (`None`: no contact of
/// the bucket had that time).
#[derive(Debug, Clone, PartialEq)]
pub struct TimesRow {
    pub bucket: DateTime<Utc>,
    pub contacts: i64,
    pub answered: i64,
    pub wait_p50_s: Option<f64>,
    pub wait_p90_s: Option<f64>,
    pub handle_p50_s: Option<f64>,
    pub handle_p90_s: Option<f64>,
    pub first_response_p50_s: Option<f64>,
    pub first_response_p90_s: Option<f64>,
}

/// One agent over the period.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentStatsRow {
    pub login: String,
    pub name: String,
    pub max_interactions: i32,
    /// Assignments (accepted, taken, transferred to them) that began in the period.
    pub handled: i64,
    /// Seconds spent on assigned interactions within the period, summed over interactions.
    pub handle_s: f64,
    /// Seconds of the period the agent's status was `ready`.
    pub ready_s: f64,
}

impl AgentStatsRow {
    /// Handling time / (ready time × capacity), at most 1; `None` without ready time.
    pub fn occupancy(&self) -> Option<f64> {
        (self.ready_s > 0.0)
            .then(|| (self.handle_s / (self.ready_s * f64::from(self.max_interactions.max(1)))).min(1.0))
    }
}

/// Video calls of one bucket and quality.
#[derive(Debug, Clone, PartialEq)]
pub struct CallsRow {
    pub bucket: DateTime<Utc>,
    /// The call's resolution cap (`720p`...).
    pub quality: String,
    pub calls: i64,
    /// Calls the customer joined.
    pub connected: i64,
    pub duration_p50_s: Option<f64>,
    pub duration_p90_s: Option<f64>,
    pub duration_total_s: f64,
}

/// Whether PostgreSQL knows the time zone `name`.
pub async fn valid_time_zone(conn: &mut PgConnection, name: &str) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)")
        .bind(name)
        .fetch_one(&mut *conn)
        .await?)
}

/// The start of every bucket of the period, oldest first (the first one may start before
/// `from`: it is the bucket `from` falls in).
pub async fn stats_buckets(conn: &mut PgConnection, q: &StatsQuery) -> Result<Vec<DateTime<Utc>>> {
    // hours step in absolute time (a zone's offset change keeps an hour an hour); days step in
    // local time, so a day with a clock change is 23 or 25 hours long
    let sql = match q.bucket {
        Bucket::Hour => {
            "SELECT g FROM generate_series(date_trunc('hour', $1::timestamptz, $3), $2::timestamptz - interval '1 microsecond',
                 interval '1 hour') g"
        }
        Bucket::Day => {
            "SELECT g AT TIME ZONE $3 FROM generate_series(date_trunc('day', $1::timestamptz, $3) AT TIME ZONE $3,
                 ($2::timestamptz - interval '1 microsecond') AT TIME ZONE $3, interval '1 day') g"
        }
    };
    Ok(sqlx::query_scalar(sql).bind(q.from).bind(q.to).bind(&q.tz).fetch_all(&mut *conn).await?)
}

/// The contacts of the period with their facts (`facts` CTE): $1 from, $2 to, $3 tz, $4 bucket
/// unit, $5 channels, $6 queues, $7 abandon after (seconds).
const CONTACTS: &str = "
WITH starts AS (
    SELECT e.interaction_id, e.seq, e.created_at AS started_at, i.channel,
           COALESCE(e.data->>'queue', i.queue, '') AS queue
    FROM interaction_events e JOIN interactions i ON i.id = e.interaction_id
    WHERE e.kind IN ('interaction.created', 'interaction.reopened')
      AND e.created_at >= $1 AND e.created_at < $2
      AND (cardinality($5::text[]) = 0 OR i.channel = ANY($5))
),
contacts AS (
    SELECT s.*, date_trunc($4, s.started_at, $3) AS bucket, nxt.seq AS next_seq, nxt.created_at AS next_at
    FROM starts s
    LEFT JOIN LATERAL (
        SELECT n.seq, n.created_at FROM interaction_events n
        WHERE n.interaction_id = s.interaction_id AND n.seq > s.seq
          AND n.kind IN ('interaction.created', 'interaction.reopened')
        ORDER BY n.seq LIMIT 1) nxt ON true
    WHERE cardinality($6::text[]) = 0 OR s.queue = ANY($6)
),
facts AS (
    SELECT c.*,
        (SELECT min(a.created_at) FROM interaction_events a
         WHERE a.interaction_id = c.interaction_id AND a.seq > c.seq AND (c.next_seq IS NULL OR a.seq < c.next_seq)
           AND a.kind = 'interaction.assigned') AS assigned_at,
        (SELECT min(x.created_at) FROM interaction_events x
         WHERE x.interaction_id = c.interaction_id AND x.seq > c.seq AND (c.next_seq IS NULL OR x.seq < c.next_seq)
           AND x.kind = 'interaction.closed') AS closed_at,
        (SELECT min(m.created_at) FROM messages m
         WHERE m.interaction_id = c.interaction_id AND m.direction = 'out' AND m.author_kind = 'agent'
           AND m.created_at >= c.started_at AND (c.next_at IS NULL OR m.created_at < c.next_at)) AS first_response_at,
        (SELECT max(m.created_at) FROM messages m
         WHERE m.interaction_id = c.interaction_id AND m.direction = 'in'
           AND m.created_at >= c.started_at AND (c.next_at IS NULL OR m.created_at < c.next_at)) AS last_in_at
    FROM contacts c
),
outcomes AS (
    SELECT f.*, f.assigned_at IS NULL AND (f.closed_at IS NOT NULL OR f.next_at IS NOT NULL
            OR COALESCE(f.last_in_at, f.started_at) < now() - make_interval(secs => $7)) AS abandoned
    FROM facts f
)";

/// `sql` (built from [`CONTACTS`] and constant text only) with the query's parameters bound.
fn bind_contacts<'q>(
    sql: String,
    q: &'q StatsQuery,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(q.from)
        .bind(q.to)
        .bind(&q.tz)
        .bind(q.bucket.as_str())
        .bind(&q.channels)
        .bind(&q.queues)
        .bind(q.abandon_after.as_secs_f64())
}

/// Contacts per bucket, channel and queue (buckets without contacts are left out).
pub async fn stats_volume(conn: &mut PgConnection, q: &StatsQuery) -> Result<Vec<VolumeRow>> {
    let sql = format!(
        "{CONTACTS}
         SELECT bucket, channel, queue, count(*) AS contacts, count(assigned_at) AS answered,
                count(*) FILTER (WHERE abandoned) AS abandoned
         FROM outcomes GROUP BY bucket, channel, queue ORDER BY bucket, channel, queue"
    );
    let rows = bind_contacts(sql, q).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|r| {
            Ok(VolumeRow {
                bucket: r.try_get("bucket")?,
                channel: r.try_get("channel")?,
                queue: r.try_get("queue")?,
                contacts: r.try_get("contacts")?,
                answered: r.try_get("answered")?,
                abandoned: r.try_get("abandoned")?,
            })
        })
        .collect()
}

/// Waiting, handling and first response times (median and 90th percentile) per bucket.
pub async fn stats_times(conn: &mut PgConnection, q: &StatsQuery) -> Result<Vec<TimesRow>> {
    let p = |n: &str, expr: &str| {
        format!(
            "percentile_cont({n}) WITHIN GROUP (ORDER BY extract(epoch FROM {expr}))::float8",
            n = if n == "50" { "0.5" } else { "0.9" }
        )
    };
    let sql = format!(
        "{CONTACTS}
         SELECT bucket, count(*) AS contacts, count(assigned_at) AS answered,
                {w50} AS wait_p50, {w90} AS wait_p90, {h50} AS handle_p50, {h90} AS handle_p90,
                {f50} AS first_p50, {f90} AS first_p90
         FROM outcomes GROUP BY bucket ORDER BY bucket",
        w50 = p("50", "assigned_at - started_at"),
        w90 = p("90", "assigned_at - started_at"),
        h50 = p("50", "closed_at - assigned_at"),
        h90 = p("90", "closed_at - assigned_at"),
        f50 = p("50", "first_response_at - started_at"),
        f90 = p("90", "first_response_at - started_at"),
    );
    let rows = bind_contacts(sql, q).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|r| {
            Ok(TimesRow {
                bucket: r.try_get("bucket")?,
                contacts: r.try_get("contacts")?,
                answered: r.try_get("answered")?,
                wait_p50_s: r.try_get("wait_p50")?,
                wait_p90_s: r.try_get("wait_p90")?,
                handle_p50_s: r.try_get("handle_p50")?,
                handle_p90_s: r.try_get("handle_p90")?,
                first_response_p50_s: r.try_get("first_p50")?,
                first_response_p90_s: r.try_get("first_p90")?,
            })
        })
        .collect()
}

/// Every agent (role `agent`, or who handled something in the period) with handling and ready
/// time, by login. The channel and queue filters apply to the interactions handled.
pub async fn stats_agents(conn: &mut PgConnection, q: &StatsQuery) -> Result<Vec<AgentStatsRow>> {
    const SQL: &str = "
WITH cand AS (
    SELECT e.interaction_id FROM interaction_events e
    WHERE e.kind IN ('interaction.assigned', 'interaction.transferred', 'interaction.closed')
      AND e.created_at >= $1 AND e.created_at < $2
    UNION
    SELECT i.id FROM interactions i WHERE i.state = 'assigned' AND i.agent IS NOT NULL
),
spans AS (
    SELECT e.created_at AS at,
           CASE e.kind WHEN 'interaction.assigned' THEN e.actor
                       WHEN 'interaction.transferred' THEN e.data->>'to_agent' END AS agent,
           lead(e.created_at) OVER (PARTITION BY e.interaction_id ORDER BY e.seq) AS until
    FROM cand
    JOIN interactions i ON i.id = cand.interaction_id
    JOIN interaction_events e ON e.interaction_id = cand.interaction_id
    WHERE e.kind IN ('interaction.assigned', 'interaction.transferred', 'interaction.closed')
      AND e.created_at < $2
      AND (cardinality($3::text[]) = 0 OR i.channel = ANY($3))
      AND (cardinality($4::text[]) = 0 OR i.queue = ANY($4))
),
busy AS (
    SELECT agent, count(*) FILTER (WHERE at >= $1) AS handled,
           COALESCE(sum(extract(epoch FROM least(COALESCE(until, now()), $2) - greatest(at, $1)))
               FILTER (WHERE least(COALESCE(until, now()), $2) > greatest(at, $1)), 0)::float8 AS handle_s
    FROM spans WHERE agent IS NOT NULL GROUP BY agent
),
states AS (
    SELECT a.login, $1::timestamptz AS at,
           COALESCE((SELECT e.data->>'status' FROM agent_events e
                     WHERE e.agent_login = a.login AND e.event = 'agent.status' AND e.created_at < $1
                     ORDER BY e.created_at DESC, e.seq DESC LIMIT 1), 'not_ready') AS status
    FROM agents a
    UNION ALL
    SELECT e.agent_login, e.created_at, e.data->>'status' FROM agent_events e
    WHERE e.event = 'agent.status' AND e.created_at >= $1 AND e.created_at < $2
),
ready AS (
    SELECT login, COALESCE(sum(greatest(extract(epoch FROM least(COALESCE(next_at, $2), now()) - at), 0))
                      FILTER (WHERE status = 'ready'), 0)::float8 AS ready_s
    FROM (SELECT login, at, status, lead(at) OVER (PARTITION BY login ORDER BY at) AS next_at FROM states) s
    GROUP BY login
)
SELECT a.login, a.name, a.max_interactions, COALESCE(b.handled, 0) AS handled,
       COALESCE(b.handle_s, 0)::float8 AS handle_s, COALESCE(r.ready_s, 0)::float8 AS ready_s
FROM agents a
LEFT JOIN busy b ON b.agent = a.login
LEFT JOIN ready r ON r.login = a.login
WHERE 'agent' = ANY(a.roles) OR b.agent IS NOT NULL
ORDER BY a.login";
    let rows = sqlx::query(SQL).bind(q.from).bind(q.to).bind(&q.channels).bind(&q.queues).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|r| {
            Ok(AgentStatsRow {
                login: r.try_get("login")?,
                name: r.try_get("name")?,
                max_interactions: r.try_get("max_interactions")?,
                handled: r.try_get("handled")?,
                handle_s: r.try_get("handle_s")?,
                ready_s: r.try_get("ready_s")?,
            })
        })
        .collect()
}

/// Video calls per bucket and quality, with their durations.
pub async fn stats_calls(conn: &mut PgConnection, q: &StatsQuery) -> Result<Vec<CallsRow>> {
    const SQL: &str = "
WITH rooms AS (
    SELECT r.quality, r.ended_at, date_trunc($4, r.created_at, $3) AS bucket,
           (SELECT min(e.created_at) FROM interaction_events e
            WHERE e.interaction_id = r.interaction_id AND e.kind = 'video.room'
              AND e.data->>'room_id' = r.id::text AND e.data->>'state' = 'joined'
              AND e.data->>'role' = 'customer') AS connected_at
    FROM video_rooms r JOIN interactions i ON i.id = r.interaction_id
    WHERE r.created_at >= $1 AND r.created_at < $2
      AND (cardinality($5::text[]) = 0 OR i.channel = ANY($5))
      AND (cardinality($6::text[]) = 0 OR i.queue = ANY($6))
)
SELECT bucket, quality, count(*) AS calls, count(connected_at) AS connected,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ended_at - connected_at))::float8 AS p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM ended_at - connected_at))::float8 AS p90,
       COALESCE(sum(extract(epoch FROM ended_at - connected_at)), 0)::float8 AS total
FROM rooms GROUP BY bucket, quality ORDER BY bucket, quality";
    let rows = sqlx::query(SQL)
        .bind(q.from)
        .bind(q.to)
        .bind(&q.tz)
        .bind(q.bucket.as_str())
        .bind(&q.channels)
        .bind(&q.queues)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(CallsRow {
                bucket: r.try_get("bucket")?,
                quality: r.try_get("quality")?,
                calls: r.try_get("calls")?,
                connected: r.try_get("connected")?,
                duration_p50_s: r.try_get("p50")?,
                duration_p90_s: r.try_get("p90")?,
                duration_total_s: r.try_get("total")?,
            })
        })
        .collect()
}
