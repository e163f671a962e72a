//! Webhooks: subscriptions, and the outbox of deliveries.
//!
//! Deliveries are created by a trigger on `interaction_events` (migration 0003), in the
//! transaction that writes the event: a committed event always has its deliveries, a rolled
//! back one never does, and no code path that writes events has to remember webhooks.
//!
//! Workers on any number of nodes call [`claim_deliveries`]: it picks due rows with
//! `FOR UPDATE SKIP LOCKED`, bumps their attempt counter and pushes `next_attempt_at` past the
//! request's deadline (the lease), all in one statement. Two workers never claim the same row at
//! once; a worker that dies mid-request leaves its row due again when the lease runs out. The
//! result goes back with [`record_attempt`], fenced by the attempt number, so a late result of a
//! lease that was taken over cannot overwrite the newer attempt's outcome.

use chrono::{DateTime, Utc};
use const_format::concatcp;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::reports::{InteractionEvent, event_from_row};
use super::{Result, StoreError};

/// A subscription as listed; its secret is never read back after creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SUBSCRIPTION_COLUMNS: &str = "id, url, events, description, enabled, created_by, created_at, updated_at";

fn subscription_from_row(row: &PgRow) -> Result<Subscription> {
    Ok(Subscription {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        events: row.try_get("events")?,
        description: row.try_get("description")?,
        enabled: row.try_get("enabled")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A subscription to create. The caller validates the URL and event names and generates the
/// secret.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub secret: String,
    pub created_by: String,
}

pub async fn create_subscription(conn: &mut PgConnection, new: &NewSubscription) -> Result<Subscription> {
    let row = sqlx::query(concatcp!(
        "INSERT INTO webhook_subscriptions (id, url, events, description, secret, created_by)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
        SUBSCRIPTION_COLUMNS
    ))
    .bind(Uuid::now_v7())
    .bind(&new.url)
    .bind(&new.events)
    .bind(&new.description)
    .bind(&new.secret)
    .bind(&new.created_by)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(db) if db.is_check_violation() => StoreError::Invalid("name at least one event".into()),
        other => other.into(),
    })?;
    subscription_from_row(&row)
}

pub async fn list_subscriptions(conn: &mut PgConnection) -> Result<Vec<Subscription>> {
    let rows =
        sqlx::query(concatcp!("SELECT ", SUBSCRIPTION_COLUMNS, " FROM webhook_subscriptions ORDER BY created_at, id"))
            .fetch_all(&mut *conn)
            .await?;
    rows.iter().map(subscription_from_row).collect()
}

pub async fn get_subscription(conn: &mut PgConnection, id: Uuid) -> Result<Subscription> {
    let row = sqlx::query(concatcp!("SELECT ", SUBSCRIPTION_COLUMNS, " FROM webhook_subscriptions WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("webhook", id))?;
    subscription_from_row(&row)
}

/// Changes to a subscription; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    /// A new signing secret (rotation).
    pub secret: Option<String>,
}

pub async fn update_subscription(conn: &mut PgConnection, id: Uuid, patch: &SubscriptionPatch) -> Result<Subscription> {
    let row = sqlx::query(concatcp!(
        "UPDATE webhook_subscriptions SET url = COALESCE($2, url), events = COALESCE($3, events),
             description = COALESCE($4, description), enabled = COALESCE($5, enabled),
             secret = COALESCE($6, secret), updated_at = now()
         WHERE id = $1 RETURNING ",
        SUBSCRIPTION_COLUMNS
    ))
    .bind(id)
    .bind(&patch.url)
    .bind(&patch.events)
    .bind(&patch.description)
    .bind(patch.enabled)
    .bind(&patch.secret)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(db) if db.is_check_violation() => StoreError::Invalid("name at least one event".into()),
        other => other.into(),
    })?
    .ok_or_else(|| StoreError::not_found("webhook", id))?;
    subscription_from_row(&row)
}

/// Deletes a subscription with its deliveries and their attempts.
pub async fn delete_subscription(conn: &mut PgConnection, id: Uuid) -> Result<Subscription> {
    let row =
        sqlx::query(concatcp!("DELETE FROM webhook_subscriptions WHERE id = $1 RETURNING ", SUBSCRIPTION_COLUMNS))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| StoreError::not_found("webhook", id))?;
    subscription_from_row(&row)
}

/// A claimed delivery: everything needed to send it.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDelivery {
    pub id: i64,
    pub subscription_id: Uuid,
    /// The number of this attempt (1 for the first); pass it back to [`record_attempt`].
    pub attempt: i32,
    /// When the retry window of this delivery started.
    pub retry_from: DateTime<Utc>,
    pub url: String,
    pub secret: String,
    /// Set for a campaign's event (`campaign.started`, `campaign.finished`): `event` is then that
    /// event, its `interaction_id` the campaign's id and `actor` none.
    pub campaign_id: Option<Uuid>,
    pub event: InteractionEvent,
}

/// Claims up to `limit` due deliveries of enabled subscriptions, oldest due first, leasing
/// each for `lease` (see the module documentation).
pub async fn claim_deliveries(
    conn: &mut PgConnection,
    limit: i64,
    lease: std::time::Duration,
) -> Result<Vec<DueDelivery>> {
    let rows = sqlx::query(
        "WITH due AS (
             SELECT d.id FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id
             WHERE d.state = 'pending' AND d.next_attempt_at <= now() AND s.enabled
             ORDER BY d.next_attempt_at, d.id LIMIT $1
             FOR UPDATE OF d SKIP LOCKED
         ), claimed AS (
             UPDATE webhook_deliveries d
             SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2::float8)
             FROM due WHERE d.id = due.id
             RETURNING d.id, d.subscription_id, d.attempts, d.retry_from, d.interaction_id, d.campaign_id, d.seq
         )
         SELECT c.id AS delivery_id, c.subscription_id, c.attempts, c.retry_from, s.url, s.secret, c.campaign_id,
                COALESCE(e.interaction_id, ce.campaign_id) AS interaction_id, c.seq,
                COALESCE(e.kind, ce.kind) AS kind, e.actor, COALESCE(e.data, ce.data) AS data,
                COALESCE(e.created_at, ce.created_at) AS created_at
         FROM claimed c
         JOIN webhook_subscriptions s ON s.id = c.subscription_id
         LEFT JOIN interaction_events e ON e.interaction_id = c.interaction_id AND e.seq = c.seq
         LEFT JOIN campaign_events ce ON ce.campaign_id = c.campaign_id AND ce.seq = c.seq
         ORDER BY c.id",
    )
    .bind(limit)
    .bind(lease.as_secs_f64())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(DueDelivery {
                id: row.try_get("delivery_id")?,
                subscription_id: row.try_get("subscription_id")?,
                attempt: row.try_get("attempts")?,
                retry_from: row.try_get("retry_from")?,
                url: row.try_get("url")?,
                secret: row.try_get("secret")?,
                campaign_id: row.try_get("campaign_id")?,
                event: event_from_row(row)?,
            })
        })
        .collect()
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<i32>,
    /// Why it failed (no answer, non-2xx...); `None` on success.
    pub error: Option<String>,
    pub duration_ms: i32,
}

/// What happens to the delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    RetryAt(DateTime<Utc>),
    GiveUp,
}

/// Records attempt `attempt` of delivery `id` and moves the delivery on. Returns false when the
/// delivery had meanwhile been claimed again (its lease ran out): the attempt is kept in the
/// log, the delivery's state is left to the newer attempt.
pub async fn record_attempt(
    conn: &mut PgConnection,
    id: i64,
    attempt: i32,
    outcome: &AttemptOutcome,
    next: NextStep,
) -> Result<bool> {
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error, duration_ms) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(attempt)
    .bind(outcome.status_code)
    .bind(&outcome.error)
    .bind(outcome.duration_ms)
    .execute(&mut *conn)
    .await?;
    let (state, next_at) = match next {
        NextStep::Delivered => ("delivered", None),
        NextStep::RetryAt(at) => ("pending", Some(at)),
        NextStep::GiveUp => ("failed", None),
    };
    let updated = sqlx::query(
        "UPDATE webhook_deliveries SET state = $3, last_status = $4, last_error = $5,
             next_attempt_at = COALESCE($6, next_attempt_at),
             delivered_at = CASE WHEN $3 = 'delivered' THEN now() END
         WHERE id = $1 AND attempts = $2 AND state = 'pending'",
    )
    .bind(id)
    .bind(attempt)
    .bind(state)
    .bind(outcome.status_code)
    .bind(&outcome.error)
    .bind(next_at)
    .execute(&mut *conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: i64,
    pub subscription_id: Uuid,
    /// The interaction whose event it is; `None` for a campaign's event.
    pub interaction_id: Option<Uuid>,
    /// The campaign whose event it is (`campaign.started`, `campaign.finished`).
    pub campaign_id: Option<Uuid>,
    pub seq: i64,
    pub event_type: String,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

const DELIVERY_COLUMNS: &str = "id, subscription_id, interaction_id, campaign_id, seq, event_type, state, attempts,
     CASE WHEN state = 'pending' THEN next_attempt_at END AS next_attempt_at, last_status, last_error,
     created_at, delivered_at";

fn delivery_from_row(row: &PgRow) -> Result<Delivery> {
    Ok(Delivery {
        id: row.try_get("id")?,
        subscription_id: row.try_get("subscription_id")?,
        interaction_id: row.try_get("interaction_id")?,
        campaign_id: row.try_get("campaign_id")?,
        seq: row.try_get("seq")?,
        event_type: row.try_get("event_type")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

/// Deliveries of a subscription, newest first, with `id < before` when given, optionally in one
/// state. NotFound for an unknown subscription.
pub async fn deliveries_page(
    conn: &mut PgConnection,
    subscription_id: Uuid,
    state: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Delivery>> {
    get_subscription(conn, subscription_id).await?;
    let rows = sqlx::query(concatcp!(
        "SELECT ",
        DELIVERY_COLUMNS,
        " FROM webhook_deliveries WHERE subscription_id = $1 AND id < $2 AND ($3::text IS NULL OR state = $3)
         ORDER BY id DESC LIMIT $4"
    ))
    .bind(subscription_id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(state)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(delivery_from_row).collect()
}

/// One attempt at a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
}

/// A delivery of `subscription_id` with every attempt, oldest first.
pub async fn delivery_with_attempts(
    conn: &mut PgConnection,
    subscription_id: Uuid,
    id: i64,
) -> Result<(Delivery, Vec<Attempt>)> {
    let row = sqlx::query(concatcp!(
        "SELECT ",
        DELIVERY_COLUMNS,
        " FROM webhook_deliveries WHERE id = $1 AND subscription_id = $2"
    ))
    .bind(id)
    .bind(subscription_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::not_found("delivery", id))?;
    let attempts = sqlx::query(
        "SELECT attempt, attempted_at, status_code, error, duration_ms FROM webhook_attempts
         WHERE delivery_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Attempt {
            attempt: r.try_get("attempt")?,
            attempted_at: r.try_get("attempted_at")?,
            status_code: r.try_get("status_code")?,
            error: r.try_get("error")?,
            duration_ms: r.try_get("duration_ms")?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    Ok((delivery_from_row(&row)?, attempts))
}

/// Puts a delivery that gave up (or was delivered) back in the queue, due now, with a fresh
/// retry window.
pub async fn redeliver(conn: &mut PgConnection, subscription_id: Uuid, id: i64) -> Result<Delivery> {
    let row = sqlx::query(concatcp!(
        "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = now(), retry_from = now(), delivered_at = NULL
         WHERE id = $1 AND subscription_id = $2 AND state <> 'pending'
         RETURNING ",
        DELIVERY_COLUMNS
    ))
    .bind(id)
    .bind(subscription_id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => delivery_from_row(&row),
        None => {
            let (delivery, _) = delivery_with_attempts(conn, subscription_id, id).await?;
            Err(StoreError::Conflict(format!("delivery {} is already pending", delivery.id)))
        }
    }
}
