//! What integrators read: interactions by period, one interaction with its messages and events,
//! customers by phone or platform id.
//!
//! **The period query.** "The interactions in which the customer wrote between `from` and `to`":
//! an interaction is in the period when one of its inbound messages (`direction = 'in'`) was
//! stored in `[from, to)`, whenever the interaction opened and whoever else wrote. Results are
//! ordered by the interaction's *first customer message in the period*, then its id, and pages
//! continue after the last `(time, id)` seen (keyset pagination). Messages are stored with
//! `created_at = now()`, so a message arriving while a client pages has a later time than every
//! key already handed out: an interaction that starts matching meanwhile shows up on a later
//! page, and none that matched before moves or is returned twice.
//!
//! The query walks `messages_inbound_time` (inbound messages by time) from the cursor and keeps
//! the messages that are their interaction's first in the period (an anti-join on
//! `messages_inbound_interaction`), so a page costs about `limit` index probes, not a scan of
//! the period. Plans and timings: `docs/interaction-loader.md`.

use chrono::{DateTime, Utc};
use const_format::concatcp;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::Result;
use super::StoreError;
use super::rows::{INTERACTION_COLUMNS, interaction_from_row};
use crate::domain::{Interaction, Message};

/// Which interactions a period query returns.
#[derive(Debug, Clone, Default)]
pub struct PeriodFilter {
    /// Start of the period, inclusive.
    pub from: DateTime<Utc>,
    /// End of the period, exclusive.
    pub to: DateTime<Utc>,
    /// Any of these channels (all when empty).
    pub channels: Vec<String>,
    pub account_id: Option<Uuid>,
    pub queue: Option<String>,
    /// The assigned agent, or the last one for a closed or returned interaction.
    pub agent: Option<String>,
    /// Any of these current states (all when empty).
    pub states: Vec<String>,
    pub customer_id: Option<Uuid>,
    /// Case-insensitive substring of the text of a message (either direction) of the period.
    pub text: Option<String>,
}

/// Where a page of the period query starts: after this key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodKey {
    pub first_customer_message_at: DateTime<Utc>,
    pub interaction_id: Uuid,
}

/// One interaction of a period.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodRow {
    pub interaction: Interaction,
    /// The customer's first message within the period (the sort key).
    pub first_customer_message_at: DateTime<Utc>,
    /// The customer's latest message, in or after the period.
    pub last_customer_message_at: Option<DateTime<Utc>>,
    pub last_agent: Option<String>,
    pub close_reason: Option<String>,
    /// The customer's latest rating in a post-call survey.
    pub rating: Option<i16>,
}

impl PeriodRow {
    pub fn key(&self) -> PeriodKey {
        PeriodKey { first_customer_message_at: self.first_customer_message_at, interaction_id: self.interaction.id }
    }
}

/// `LIKE` pattern for "contains `text`", its wildcards escaped.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// One page of the period query: at most `limit` interactions after `after` (from the start of
/// the period when `None`), in key order.
pub async fn interactions_in_period(
    conn: &mut PgConnection,
    filter: &PeriodFilter,
    after: Option<PeriodKey>,
    limit: i64,
) -> Result<Vec<PeriodRow>> {
    let rows = period_query("", filter, after, limit)?.build().fetch_all(&mut *conn).await?;
    rows.iter().map(period_row).collect()
}

/// The plan of [`interactions_in_period`] with these arguments, as `EXPLAIN (ANALYZE, BUFFERS)`
/// prints it (it runs the query), one line per entry. For benchmarks and operators.
pub async fn explain_period_query(
    conn: &mut PgConnection,
    filter: &PeriodFilter,
    after: Option<PeriodKey>,
    limit: i64,
) -> Result<Vec<String>> {
    let rows = period_query("EXPLAIN (ANALYZE, BUFFERS) ", filter, after, limit)?.build().fetch_all(&mut *conn).await?;
    rows.iter().map(|r| Ok(r.try_get::<String, _>(0)?)).collect()
}

fn period_query(
    prefix: &'static str,
    filter: &PeriodFilter,
    after: Option<PeriodKey>,
    limit: i64,
) -> Result<QueryBuilder<Postgres>> {
    if filter.from >= filter.to {
        return Err(StoreError::Invalid(format!(
            "the period is empty: from {} is not before to {}",
            filter.from, filter.to
        )));
    }
    // Page one starts after (from, nil): no interaction has the nil id.
    let after = after.unwrap_or(PeriodKey { first_customer_message_at: filter.from, interaction_id: Uuid::nil() });
    let mut q = QueryBuilder::<Postgres>::new(prefix);
    q.push(concatcp!(
        "SELECT ",
        INTERACTION_COLUMNS,
        ", m.created_at AS first_in, i.last_customer_message_at, i.last_agent, i.close_reason,
         (SELECT s.rating FROM call_surveys s WHERE s.interaction_id = i.id ORDER BY s.submitted_at DESC LIMIT 1) AS rating
         FROM messages m
         JOIN interactions i ON i.id = m.interaction_id
         JOIN customers c ON c.id = i.customer_id
         WHERE m.direction = 'in' AND m.created_at >= "
    ));
    q.push_bind(filter.from).push(" AND m.created_at < ").push_bind(filter.to);
    q.push(" AND (m.created_at, m.interaction_id) > (")
        .push_bind(after.first_customer_message_at)
        .push(", ")
        .push_bind(after.interaction_id)
        .push(")");
    // the customer's first message of the period in this interaction (ties broken by id)
    q.push(
        " AND NOT EXISTS (SELECT 1 FROM messages e WHERE e.interaction_id = m.interaction_id AND e.direction = 'in'
             AND e.created_at >= ",
    )
    .push_bind(filter.from)
    .push(" AND (e.created_at, e.id) < (m.created_at, m.id))");
    if let Some(account) = filter.account_id {
        q.push(" AND m.account_id = ").push_bind(account);
    }
    if !filter.channels.is_empty() {
        q.push(" AND i.channel = ANY(").push_bind(filter.channels.clone()).push(")");
    }
    if !filter.states.is_empty() {
        q.push(" AND i.state = ANY(").push_bind(filter.states.clone()).push(")");
    }
    if let Some(queue) = &filter.queue {
        q.push(" AND i.queue = ").push_bind(queue.clone());
    }
    if let Some(agent) = &filter.agent {
        q.push(" AND (i.agent = ").push_bind(agent.clone()).push(" OR i.last_agent = ").push_bind(agent.clone());
        q.push(")");
    }
    if let Some(customer) = filter.customer_id {
        q.push(" AND i.customer_id = ").push_bind(customer);
    }
    if let Some(text) = filter.text.as_deref().filter(|t| !t.is_empty()) {
        q.push(" AND EXISTS (SELECT 1 FROM messages t WHERE t.interaction_id = m.interaction_id AND t.created_at >= ")
            .push_bind(filter.from)
            .push(" AND t.created_at < ")
            .push_bind(filter.to)
            .push(" AND t.text ILIKE ")
            .push_bind(contains_pattern(text))
            .push(" ESCAPE '\\')");
    }
    q.push(" ORDER BY m.created_at, m.interaction_id LIMIT ").push_bind(limit);
    Ok(q)
}

fn period_row(row: &PgRow) -> Result<PeriodRow> {
    Ok(PeriodRow {
        interaction: interaction_from_row(row)?,
        first_customer_message_at: row.try_get("first_in")?,
        last_customer_message_at: row.try_get("last_customer_message_at")?,
        last_agent: row.try_get("last_agent")?,
        close_reason: row.try_get("close_reason")?,
        rating: row.try_get("rating")?,
    })
}

/// One interaction with what the integrator API shows beyond [`Interaction`].
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionDetail {
    pub interaction: Interaction,
    pub last_customer_message_at: Option<DateTime<Utc>>,
    pub last_agent: Option<String>,
    pub close_reason: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub message_count: i64,
    /// The customer's latest rating in a post-call survey.
    pub rating: Option<i16>,
}

pub async fn interaction_detail(conn: &mut PgConnection, id: Uuid) -> Result<InteractionDetail> {
    const SQL: &str = concatcp!(
        "SELECT ",
        INTERACTION_COLUMNS,
        ", i.last_customer_message_at, i.last_agent, i.close_reason, i.updated_at,
         (SELECT count(*) FROM messages m WHERE m.interaction_id = i.id) AS message_count,
         (SELECT s.rating FROM call_surveys s WHERE s.interaction_id = i.id ORDER BY s.submitted_at DESC LIMIT 1) AS rating
         FROM interactions i JOIN customers c ON c.id = i.customer_id WHERE i.id = $1"
    );
    let row = sqlx::query(SQL)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("interaction", id))?;
    Ok(InteractionDetail {
        interaction: interaction_from_row(&row)?,
        last_customer_message_at: row.try_get("last_customer_message_at")?,
        last_agent: row.try_get("last_agent")?,
        close_reason: row.try_get("close_reason")?,
        updated_at: row.try_get("updated_at")?,
        message_count: row.try_get("message_count")?,
        rating: row.try_get("rating")?,
    })
}

/// Where a page of messages starts: after this message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageKey {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// Messages of an interaction, oldest first, at most `limit` after `after`. NotFound when the
/// interaction does not exist.
pub async fn interaction_messages(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    after: Option<MessageKey>,
    limit: i64,
) -> Result<Vec<Message>> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM interactions WHERE id = $1)")
        .bind(interaction_id)
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Err(StoreError::not_found("interaction", interaction_id));
    }
    let ids: Vec<Uuid> = match after {
        None => {
            sqlx::query_scalar("SELECT id FROM messages WHERE interaction_id = $1 ORDER BY created_at, id LIMIT $2")
                .bind(interaction_id)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?
        }
        Some(key) => {
            sqlx::query_scalar(
                "SELECT id FROM messages WHERE interaction_id = $1 AND (created_at, id) > ($2, $3)
                 ORDER BY created_at, id LIMIT $4",
            )
            .bind(interaction_id)
            .bind(key.created_at)
            .bind(key.id)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?
        }
    };
    super::load_messages(conn, &ids).await
}

/// One entry of an interaction's event log.
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionEvent {
    pub interaction_id: Uuid,
    pub seq: i64,
    pub kind: String,
    pub actor: Option<String>,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// Events of an interaction with `seq > after`, oldest first. NotFound when the interaction does
/// not exist.
pub async fn interaction_events(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<InteractionEvent>> {
    let rows = sqlx::query(
        "SELECT interaction_id, seq, kind, actor, data, created_at FROM interaction_events
         WHERE interaction_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(interaction_id)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() && after == 0 {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM interactions WHERE id = $1)")
            .bind(interaction_id)
            .fetch_one(&mut *conn)
            .await?;
        if !exists {
            return Err(StoreError::not_found("interaction", interaction_id));
        }
    }
    rows.iter().map(event_from_row).collect()
}

pub(crate) fn event_from_row(row: &PgRow) -> Result<InteractionEvent> {
    Ok(InteractionEvent {
        interaction_id: row.try_get("interaction_id")?,
        seq: row.try_get("seq")?,
        kind: row.try_get("kind")?,
        actor: row.try_get("actor")?,
        data: row.try_get("data")?,
        created_at: row.try_get("created_at")?,
    })
}

/// How a customer is known on one channel account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Identity {
    pub account_id: Uuid,
    pub channel: String,
    pub external_id: String,
    pub display_name: Option<String>,
    pub username: Option<String>,
    pub phone: Option<String>,
}

/// A customer with every identity it has on every account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRecord {
    pub id: Uuid,
    pub name: String,
    pub phone: Option<String>,
    pub avatar_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub identities: Vec<Identity>,
}

/// How an integrator names a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerLookup {
    Id(Uuid),
    /// Matches the customer's phone or any identity's phone, as given or reduced to `+` and
    /// digits.
    Phone(String),
    /// The platform's user id, on one account or on any.
    ExternalId {
        external_id: String,
        account_id: Option<Uuid>,
    },
}

/// The phone as given, and reduced to its digits with and without a leading `+`.
fn phone_variants(phone: &str) -> Vec<String> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    let mut variants = vec![phone.trim().to_owned()];
    if !digits.is_empty() {
        variants.push(digits.clone());
        variants.push(format!("+{digits}"));
    }
    variants.sort();
    variants.dedup();
    variants
}

const CUSTOMER_COLUMNS: &str = "c.id, c.name, c.phone, c.avatar_url, c.created_at,
     COALESCE((SELECT jsonb_agg(jsonb_build_object('account_id', ci.account_id, 'channel', a.channel,
                   'external_id', ci.external_id, 'display_name', ci.display_name, 'username', ci.username,
                   'phone', ci.phone) ORDER BY ci.created_at, ci.external_id)
               FROM customer_identities ci JOIN accounts a ON a.id = ci.account_id
               WHERE ci.customer_id = c.id), '[]') AS identities";

/// Customers matching `lookup`, oldest first, at most 100.
pub async fn find_customers(conn: &mut PgConnection, lookup: &CustomerLookup) -> Result<Vec<CustomerRecord>> {
    let rows = match lookup {
        CustomerLookup::Id(id) => {
            sqlx::query(concatcp!("SELECT ", CUSTOMER_COLUMNS, " FROM customers c WHERE c.id = $1"))
                .bind(id)
                .fetch_all(&mut *conn)
                .await?
        }
        CustomerLookup::Phone(phone) => {
            sqlx::query(concatcp!(
                "SELECT ",
                CUSTOMER_COLUMNS,
                " FROM customers c WHERE c.id IN (
                     SELECT id FROM customers WHERE phone = ANY($1)
                     UNION SELECT customer_id FROM customer_identities WHERE phone = ANY($1))
                 ORDER BY c.created_at, c.id LIMIT 100"
            ))
            .bind(phone_variants(phone))
            .fetch_all(&mut *conn)
            .await?
        }
        CustomerLookup::ExternalId { external_id, account_id } => {
            sqlx::query(concatcp!(
                "SELECT ",
                CUSTOMER_COLUMNS,
                " FROM customers c WHERE c.id IN (
                     SELECT customer_id FROM customer_identities
                     WHERE external_id = $1 AND ($2::uuid IS NULL OR account_id = $2))
                 ORDER BY c.created_at, c.id LIMIT 100"
            ))
            .bind(external_id)
            .bind(account_id)
            .fetch_all(&mut *conn)
            .await?
        }
    };
    rows.iter()
        .map(|row| {
            let identities: serde_json::Value = row.try_get("identities")?;
            Ok(CustomerRecord {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                phone: row.try_get("phone")?,
                avatar_url: row.try_get("avatar_url")?,
                created_at: row.try_get("created_at")?,
                identities: serde_json::from_value(identities)
                    .map_err(|e| StoreError::Corrupt(format!("customer identities: {e}")))?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(contains_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn phones_match_as_given_and_as_digits() {
        assert_eq!(phone_variants("+7 (999) 123-45-67"), vec!["+7 (999) 123-45-67", "+79991234567", "79991234567"]);
        assert_eq!(phone_variants("abc"), vec!["abc"]);
    }
}
