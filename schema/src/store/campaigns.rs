//! Outbound campaigns: one message to many customers of an account, sent by the account's
//! connector leader in the outbox's bulk lane.
//!
//! A campaign is a row of `campaigns`; each recipient a row of `campaign_recipients` (its chat
//! resolved, its text rendered when added); starting the campaign writes **one outbox row per
//! (campaign, recipient)**, under a unique key, so starting twice, a second node or a restarted
//! connector never queues a recipient twice. Whether a row may go is decided when it is claimed
//! ([`claim_bulk_outbox`], by [`crate::campaign::decide`]): a paused campaign's rows stay
//! pending, a cancelled one's and an opted-out recipient's are skipped with the reason, a row in
//! the recipient's quiet hours moves to their end. Outcomes update the recipient's row
//! ([`super::finish_outbox`]); the last one finishes the campaign. A customer's message within
//! [`REPLY_WINDOW`] of a campaign message is its reply: the recipient becomes `replied` and the
//! interaction knows its campaign ([`on_inbound`]).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use const_format::concatcp;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Result, StoreError};
use crate::campaign::{self, DEFAULT_STOP_WORDS, REPLY_WINDOW, Running, Schedule, Verdict};
use crate::domain::{Author, AuthorKind, Direction, Message, MessageKind, MessageStatus, OutboxAction, Template};

/// A campaign's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    Draft,
    Running,
    Paused,
    Cancelled,
    Finished,
}

impl CampaignState {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Draft => "draft",
            CampaignState::Running => "running",
            CampaignState::Paused => "paused",
            CampaignState::Cancelled => "cancelled",
            CampaignState::Finished => "finished",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "draft" => CampaignState::Draft,
            "running" => CampaignState::Running,
            "paused" => CampaignState::Paused,
            "cancelled" => CampaignState::Cancelled,
            "finished" => CampaignState::Finished,
            other => return Err(StoreError::Corrupt(format!("campaign state {other:?}"))),
        })
    }
}

/// A campaign's template (WhatsApp): the approved template and which recipient variables fill
/// its parameters, `{{1}}` first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignTemplate {
    pub name: String,
    pub language: String,
    #[serde(default)]
    pub params: Vec<String>,
}

/// What creating a campaign takes.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub account_id: Uuid,
    pub name: String,
    pub text: String,
    pub template: Option<CampaignTemplate>,
    pub rate_per_s: Option<i32>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    /// Quiet hours in the recipient's local time, minutes after midnight.
    pub quiet: Option<(i16, i16)>,
    pub utc_offset_min: i16,
    pub created_by: String,
    /// The flow a recipient who answers continues in (it must exist).
    pub flow: Option<String>,
}

/// A campaign as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Campaign {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub state: CampaignState,
    pub text: String,
    pub template: Option<CampaignTemplate>,
    pub rate_per_s: Option<i32>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub quiet_from: Option<i16>,
    pub quiet_to: Option<i16>,
    pub utc_offset_min: i16,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The flow a recipient who answers continues in.
    pub flow: Option<String>,
}

const CAMPAIGN_COLUMNS: &str = "id, account_id, name, state, text, template, rate_per_s, starts_at, ends_at, \
     quiet_from, quiet_to, utc_offset_min, created_by, created_at, started_at, finished_at, flow";

fn campaign_from_row(row: &sqlx::postgres::PgRow) -> Result<Campaign> {
    let template: Option<serde_json::Value> = row.try_get("template")?;
    Ok(Campaign {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        name: row.try_get("name")?,
        state: CampaignState::parse(row.try_get("state")?)?,
        text: row.try_get("text")?,
        template: template
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("campaign template: {e}")))?,
        rate_per_s: row.try_get("rate_per_s")?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        quiet_from: row.try_get("quiet_from")?,
        quiet_to: row.try_get("quiet_to")?,
        utc_offset_min: row.try_get("utc_offset_min")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        flow: row.try_get("flow")?,
    })
}

/// Creates a campaign in state `draft`. Its text must render with no variables other than
/// the recipients' (checked per recipient when they are added).
pub async fn create_campaign(conn: &mut PgConnection, new: &NewCampaign) -> Result<Campaign> {
    if let (Some(start), Some(end)) = (new.starts_at, new.ends_at)
        && end <= start
    {
        return Err(StoreError::Invalid("ends_at must be after starts_at".into()));
    }
    let channel: Option<String> = sqlx::query_scalar("SELECT channel FROM accounts WHERE id = $1")
        .bind(new.account_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(channel) = channel else {
        return Err(StoreError::Invalid(format!("account_id: no account {}", new.account_id)));
    };
    if channel == "webchat" || channel == "video" {
        return Err(StoreError::Invalid(format!(
            "account_id: a {channel} account cannot run campaigns (its customers have no address outside their open \
             session)"
        )));
    }
    if new.template.is_none() && channel == "whatsapp" {
        return Err(StoreError::Invalid(
            "template: a WhatsApp campaign needs an approved template (the 24-hour window is closed for most recipients)"
                .into(),
        ));
    }
    if let Some(flow) = &new.flow {
        match super::get_flow(conn, flow, None).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => return Err(StoreError::Invalid(format!("flow: no flow {flow:?}"))),
            Err(e) => return Err(e),
        }
    }
    let id = Uuid::now_v7();
    const SQL: &str = concatcp!(
        "INSERT INTO campaigns (id, account_id, name, text, template, rate_per_s, starts_at, ends_at, quiet_from,
             quiet_to, utc_offset_min, created_by, flow)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING ",
        CAMPAIGN_COLUMNS
    );
    let row = sqlx::query(SQL)
        .bind(id)
        .bind(new.account_id)
        .bind(&new.name)
        .bind(&new.text)
        .bind(new.template.as_ref().map(|t| serde_json::to_value(t).expect("template serializes")))
        .bind(new.rate_per_s)
        .bind(new.starts_at)
        .bind(new.ends_at)
        .bind(new.quiet.map(|q| q.0))
        .bind(new.quiet.map(|q| q.1))
        .bind(new.utc_offset_min)
        .bind(&new.created_by)
        .bind(&new.flow)
        .fetch_one(&mut *conn)
        .await?;
    campaign_from_row(&row)
}

/// One campaign.
pub async fn get_campaign(conn: &mut PgConnection, id: Uuid) -> Result<Campaign> {
    const SQL: &str = concatcp!("SELECT ", CAMPAIGN_COLUMNS, " FROM campaigns WHERE id = $1");
    let row = sqlx::query(SQL)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("campaign", id))?;
    campaign_from_row(&row)
}

/// The campaigns of an account (or all), newest first.
pub async fn list_campaigns(conn: &mut PgConnection, account_id: Option<Uuid>, limit: i64) -> Result<Vec<Campaign>> {
    const SQL: &str = concatcp!(
        "SELECT ",
        CAMPAIGN_COLUMNS,
        " FROM campaigns WHERE $1::uuid IS NULL OR account_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
    );
    let rows = sqlx::query(SQL).bind(account_id).bind(limit).fetch_all(&mut *conn).await?;
    rows.iter().map(campaign_from_row).collect()
}

/// A recipient as given: a customer by id or by phone, the values of the message's variables,
/// and optionally the recipient's UTC offset (for quiet hours).
#[derive(Debug, Clone, Default)]
pub struct RecipientInput {
    pub customer_id: Option<Uuid>,
    pub phone: Option<String>,
    pub variables: BTreeMap<String, String>,
    pub utc_offset_min: Option<i16>,
}

/// What adding recipients did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AddedRecipients {
    /// New recipients, queued.
    pub added: u64,
    /// Already in the campaign (the same chat): ignored.
    pub duplicates: u64,
    /// No identity of the customer on the campaign's account: recorded as skipped.
    pub unresolved: u64,
}

/// Adds recipients to a campaign that has not ended. Each one's text is rendered now (a missing
/// variable refuses the whole call, naming the recipient by its position, `first_position`
/// upwards) and its chat resolved from the customer's identity on the campaign's account; a
/// recipient whose chat is in the campaign already is a duplicate. Recipients added to a
/// running or paused campaign get their outbox rows at once.
pub async fn add_recipients(
    conn: &mut PgConnection,
    campaign_id: Uuid,
    recipients: &[RecipientInput],
    first_position: usize,
) -> Result<AddedRecipients> {
    let campaign = lock_campaign(conn, campaign_id).await?;
    if matches!(campaign.state, CampaignState::Cancelled | CampaignState::Finished) {
        return Err(StoreError::Conflict(format!("campaign {campaign_id} is {}", campaign.state.as_str())));
    }
    let mut texts = Vec::with_capacity(recipients.len());
    for (i, r) in recipients.iter().enumerate() {
        let position = first_position + i;
        if r.customer_id.is_none() && r.phone.is_none() {
            return Err(StoreError::Invalid(format!("recipient {position}: neither customer_id nor phone")));
        }
        let text = campaign::render(&campaign.text, &r.variables)
            .map_err(|e| StoreError::Invalid(format!("recipient {position}: {e}")))?;
        if let Some(t) = &campaign.template
            && let Some(missing) = t.params.iter().find(|p| !r.variables.contains_key(*p))
        {
            return Err(StoreError::Invalid(format!(
                "recipient {position}: no value for template parameter {missing}"
            )));
        }
        texts.push(text);
    }
    let customer_ids: Vec<Option<Uuid>> = recipients.iter().map(|r| r.customer_id).collect();
    let phones: Vec<Option<String>> = recipients.iter().map(|r| r.phone.clone()).collect();
    // one statement resolves every chat: by the customer's identity on the account, else by phone
    let resolved: Vec<(Option<String>, Option<Uuid>)> = sqlx::query_as(
        "SELECT ci.external_id, coalesce(ci.customer_id, (SELECT id FROM customers WHERE id = t.customer_id))
         FROM unnest($2::uuid[], $3::text[]) WITH ORDINALITY AS t(customer_id, phone, n)
         LEFT JOIN LATERAL (
             SELECT external_id, customer_id FROM customer_identities
             WHERE account_id = $1
               AND ((t.customer_id IS NOT NULL AND customer_id = t.customer_id)
                    OR (t.customer_id IS NULL AND phone = t.phone))
             ORDER BY updated_at DESC LIMIT 1
         ) ci ON true
         ORDER BY t.n",
    )
    .bind(campaign.account_id)
    .bind(&customer_ids)
    .bind(&phones)
    .fetch_all(&mut *conn)
    .await?;
    let mut chats = Vec::with_capacity(recipients.len());
    let mut states = Vec::with_capacity(recipients.len());
    let mut reasons: Vec<Option<&str>> = Vec::with_capacity(recipients.len());
    let mut customers = Vec::with_capacity(recipients.len());
    let mut unresolved = 0u64;
    for (r, (chat, customer)) in recipients.iter().zip(&resolved) {
        match chat {
            Some(chat) => {
                chats.push(chat.clone());
                states.push("queued");
                reasons.push(None);
            }
            None => {
                unresolved += 1;
                let who = r.customer_id.map(|c| c.to_string()).or_else(|| r.phone.clone()).unwrap_or_default();
                chats.push(format!("unresolved:{who}"));
                states.push("skipped");
                reasons.push(Some("the customer has no identity on the campaign's account"));
            }
        }
        // the customer as known (an unknown id is reported as given, in the chat's place)
        customers.push(*customer);
    }
    let variables: Vec<serde_json::Value> =
        recipients.iter().map(|r| serde_json::to_value(&r.variables).expect("variables serialize")).collect();
    let offsets: Vec<Option<i16>> = recipients.iter().map(|r| r.utc_offset_min).collect();
    let inserted: u64 = sqlx::query(
        "INSERT INTO campaign_recipients (campaign_id, account_id, chat_id, customer_id, phone, variables, text,
             utc_offset_min, state, reason)
         SELECT $1, $2, t.chat, t.customer, t.phone, t.vars, t.text, t.off, t.state, t.reason
         FROM unnest($3::text[], $4::uuid[], $5::text[], $6::jsonb[], $7::text[], $8::smallint[], $9::text[],
                     $10::text[]) WITH ORDINALITY AS t(chat, customer, phone, vars, text, off, state, reason, n)
         ORDER BY t.n
         ON CONFLICT (campaign_id, chat_id) DO NOTHING",
    )
    .bind(campaign_id)
    .bind(campaign.account_id)
    .bind(&chats)
    .bind(&customers)
    .bind(&phones)
    .bind(&variables)
    .bind(&texts)
    .bind(&offsets)
    .bind(&states)
    .bind(&reasons)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if matches!(campaign.state, CampaignState::Running | CampaignState::Paused) {
        enqueue_recipients(conn, &campaign).await?;
    }
    let total = recipients.len() as u64;
    Ok(AddedRecipients {
        added: inserted.saturating_sub(unresolved.min(inserted)),
        duplicates: total - inserted,
        unresolved: unresolved.min(inserted),
    })
}

async fn lock_campaign(conn: &mut PgConnection, id: Uuid) -> Result<Campaign> {
    const SQL: &str = concatcp!("SELECT ", CAMPAIGN_COLUMNS, " FROM campaigns WHERE id = $1 FOR UPDATE");
    let row = sqlx::query(SQL)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("campaign", id))?;
    campaign_from_row(&row)
}

/// Skips the queued recipients who opted out, then writes the outbox row of every queued
/// recipient that has none (the unique key makes a second call a no-op).
async fn enqueue_recipients(conn: &mut PgConnection, campaign: &Campaign) -> Result<u64> {
    sqlx::query(
        "UPDATE campaign_recipients r SET state = 'skipped', reason = 'opted out (' || o.reason || ')'
         FROM campaign_opt_outs o
         WHERE r.campaign_id = $1 AND r.state = 'queued' AND o.account_id = r.account_id AND o.chat_id = r.chat_id
           AND NOT EXISTS (SELECT 1 FROM outbox x WHERE x.campaign_id = r.campaign_id AND x.recipient_id = r.id)",
    )
    .bind(campaign.id)
    .execute(&mut *conn)
    .await?;
    let queued = sqlx::query(
        "INSERT INTO outbox (account_id, chat_id, action, campaign_id, recipient_id, not_before)
         SELECT r.account_id, r.chat_id, 'send', r.campaign_id, r.id, greatest(now(), $2)
         FROM campaign_recipients r WHERE r.campaign_id = $1 AND r.state = 'queued'
         ORDER BY r.id
         ON CONFLICT (campaign_id, recipient_id) WHERE recipient_id IS NOT NULL DO NOTHING",
    )
    .bind(campaign.id)
    .bind(campaign.starts_at)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(queued)
}

/// What a change of a campaign's state asks the caller to do after the commit.
#[derive(Debug, Clone)]
pub struct CampaignChanged {
    pub campaign: Campaign,
    /// Ring the account's doorbell (`account/<id>`): its connector has rows to read or drop.
    pub ring_account: Uuid,
}

/// An action on a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignAction {
    Start,
    Pause,
    Resume,
    Cancel,
}

impl CampaignAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignAction::Start => "start",
            CampaignAction::Pause => "pause",
            CampaignAction::Resume => "resume",
            CampaignAction::Cancel => "cancel",
        }
    }
}

/// Starts (`draft` → `running`: one outbox row per queued recipient), pauses (`running` →
/// `paused`: its rows stay pending and are not sent), resumes (`paused` → `running`) or cancels
/// (anything not ended → `cancelled`: pending rows fail, queued recipients are skipped) a
/// campaign. Repeating the action that got it into its state changes nothing; any other action
/// from a state that does not allow it is a conflict naming the state.
pub async fn change_campaign(conn: &mut PgConnection, id: Uuid, action: CampaignAction) -> Result<CampaignChanged> {
    use CampaignState as S;
    let campaign = lock_campaign(conn, id).await?;
    let target = match (action, campaign.state) {
        (CampaignAction::Start, S::Draft) => S::Running,
        (CampaignAction::Start, S::Running) | (CampaignAction::Resume, S::Running) => S::Running,
        (CampaignAction::Pause, S::Running | S::Paused) => S::Paused,
        (CampaignAction::Resume, S::Paused) => S::Running,
        (CampaignAction::Cancel, S::Draft | S::Running | S::Paused | S::Cancelled) => S::Cancelled,
        (action, state) => {
            return Err(StoreError::Conflict(format!(
                "campaign {id} is {}: it cannot {}",
                state.as_str(),
                action.as_str()
            )));
        }
    };
    sqlx::query(
        "UPDATE campaigns SET state = $2,
             started_at = CASE WHEN $2 = 'running' THEN coalesce(started_at, now()) ELSE started_at END,
             finished_at = CASE WHEN $2 = 'cancelled' THEN coalesce(finished_at, now()) ELSE finished_at END
         WHERE id = $1",
    )
    .bind(id)
    .bind(target.as_str())
    .execute(&mut *conn)
    .await?;
    match (campaign.state, target) {
        (S::Draft, S::Running) => {
            enqueue_recipients(conn, &campaign).await?;
            append_campaign_event(conn, id, "campaign.started").await?;
            finish_if_done(conn, id).await?;
        }
        (_, S::Cancelled) if campaign.state != S::Cancelled => {
            sqlx::query(
                "UPDATE outbox SET state = 'failed', last_error = 'campaign cancelled', updated_at = now()
                 WHERE campaign_id = $1 AND state = 'pending'",
            )
            .bind(id)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE campaign_recipients SET state = 'skipped', reason = 'campaign cancelled'
                 WHERE campaign_id = $1 AND state = 'queued'",
            )
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
        _ => {}
    }
    Ok(CampaignChanged { campaign: get_campaign(conn, id).await?, ring_account: campaign.account_id })
}

/// A running campaign with no pending outbox row left becomes `finished`.
pub(crate) async fn finish_if_done(conn: &mut PgConnection, id: Uuid) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE campaigns SET state = 'finished', finished_at = now()
         WHERE id = $1 AND state = 'running'
           AND NOT EXISTS (SELECT 1 FROM outbox WHERE campaign_id = $1 AND state = 'pending')",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if done > 0 {
        append_campaign_event(conn, id, "campaign.finished").await?;
    }
    Ok(done > 0)
}

/// Appends `kind` (`campaign.started`, `campaign.finished`) to the campaign's event log, with the
/// campaign and its recipients per state (`counts`, `total`) as they are in this transaction;
/// a trigger (migration 0021) queues its webhook deliveries in the same transaction. Returns
/// its `seq`.
pub(crate) async fn append_campaign_event(conn: &mut PgConnection, id: Uuid, kind: &str) -> Result<i64> {
    let report = campaign_report(conn, id).await?;
    let c = &report.campaign;
    let data = serde_json::json!({
        "campaign": {
            "id": c.id, "account_id": c.account_id, "name": c.name, "state": c.state.as_str(),
            "started_at": c.started_at, "finished_at": c.finished_at, "flow": c.flow,
        },
        "counts": report.counts,
        "total": report.total,
    });
    Ok(sqlx::query_scalar(
        "INSERT INTO campaign_events (campaign_id, seq, kind, data)
         SELECT $1, COALESCE(max(seq), 0) + 1, $2, $3 FROM campaign_events WHERE campaign_id = $1
         RETURNING seq",
    )
    .bind(id)
    .bind(kind)
    .bind(&data)
    .fetch_one(&mut *conn)
    .await?)
}

/// A campaign's progress: recipients per state, the recent rate and the time left at that rate.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignReport {
    pub campaign: Campaign,
    pub counts: BTreeMap<String, i64>,
    pub total: i64,
    /// Recipients sent per second over the last 10 seconds.
    pub rate_per_s: f64,
    /// Seconds until the queued recipients are sent at that rate (none while nothing is sent).
    pub eta_s: Option<f64>,
}

/// The report of one campaign.
pub async fn campaign_report(conn: &mut PgConnection, id: Uuid) -> Result<CampaignReport> {
    let campaign = get_campaign(conn, id).await?;
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM campaign_recipients WHERE campaign_id = $1 GROUP BY state")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    let recent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM campaign_recipients
         WHERE campaign_id = $1 AND sent_at > now() - interval '10 seconds'",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let mut counts: BTreeMap<String, i64> = ["queued", "sent", "delivered", "read", "replied", "failed", "skipped"]
        .iter()
        .map(|s| (s.to_string(), 0))
        .collect();
    for (state, n) in rows {
        counts.insert(state, n);
    }
    let total = counts.values().sum();
    let rate = recent as f64 / 10.0;
    let queued = counts["queued"] as f64;
    let eta_s = (rate > 0.0 && campaign.state == CampaignState::Running).then(|| queued / rate);
    Ok(CampaignReport { campaign, counts, total, rate_per_s: rate, eta_s })
}

/// One recipient's line of a campaign's report.
#[derive(Debug, Clone, Serialize)]
pub struct RecipientReport {
    pub id: i64,
    pub chat_id: String,
    pub customer_id: Option<Uuid>,
    pub phone: Option<String>,
    pub state: String,
    pub reason: Option<String>,
    pub external_message_id: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub replied_at: Option<DateTime<Utc>>,
    pub interaction_id: Option<Uuid>,
}

/// A page of a campaign's recipients in the order they were added, after recipient `after`.
pub async fn campaign_recipients(
    conn: &mut PgConnection,
    campaign_id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<RecipientReport>> {
    let rows = sqlx::query(
        "SELECT id, chat_id, customer_id, phone, state, reason, external_message_id, sent_at, replied_at, interaction_id
         FROM campaign_recipients WHERE campaign_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(campaign_id)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(RecipientReport {
                id: r.try_get("id")?,
                chat_id: r.try_get("chat_id")?,
                customer_id: r.try_get("customer_id")?,
                phone: r.try_get("phone")?,
                state: r.try_get("state")?,
                reason: r.try_get("reason")?,
                external_message_id: r.try_get("external_message_id")?,
                sent_at: r.try_get("sent_at")?,
                replied_at: r.try_get("replied_at")?,
                interaction_id: r.try_get("interaction_id")?,
            })
        })
        .collect()
}

/// Sets an account's stop words (`None`: the default, [`DEFAULT_STOP_WORDS`]), kept upper-case.
pub async fn set_opt_out_words(conn: &mut PgConnection, account_id: Uuid, words: Option<&[String]>) -> Result<()> {
    let words: Option<Vec<String>> = words.map(|w| w.iter().map(|w| campaign::normalize_word(w)).collect());
    let done = sqlx::query("UPDATE accounts SET opt_out_words = $2 WHERE id = $1")
        .bind(account_id)
        .bind(&words)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if done == 0 {
        return Err(StoreError::not_found("account", account_id));
    }
    Ok(())
}

/// An account's stop words.
pub async fn opt_out_words(conn: &mut PgConnection, account_id: Uuid) -> Result<Vec<String>> {
    let words: Option<Option<Vec<String>>> = sqlx::query_scalar("SELECT opt_out_words FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_optional(&mut *conn)
        .await?;
    match words {
        None => Err(StoreError::not_found("account", account_id)),
        Some(Some(words)) => Ok(words),
        Some(None) => Ok(DEFAULT_STOP_WORDS.iter().map(|w| w.to_string()).collect()),
    }
}

/// Opts a chat of an account out of its campaigns (idempotent: the first reason stays).
pub async fn opt_out(conn: &mut PgConnection, account_id: Uuid, chat_id: &str, reason: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO campaign_opt_outs (account_id, chat_id, reason) VALUES ($1, $2, $3)
         ON CONFLICT (account_id, chat_id) DO NOTHING",
    )
    .bind(account_id)
    .bind(chat_id)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A stored customer message as [`on_inbound`] looks at it.
#[derive(Debug, Clone, Copy)]
pub struct InboundSeen<'a> {
    pub chat_id: &'a str,
    pub text: Option<&'a str>,
    pub interaction_id: Uuid,
}

/// What the ingest does for campaigns with the customer messages it stores, in its
/// transaction, in one statement: a stop word opts the chat out of the account's campaigns (the
/// message is stored and routed as any other: replies to the customer's own conversation are
/// never blocked), and a message within [`REPLY_WINDOW`] of the chat's last campaign message is
/// that recipient's reply: the recipient becomes `replied` with the interaction, and the
/// interaction learns its campaign (`campaign_id`, and the fields `campaign_id` / `campaign`
/// its agents see). A campaign with a `flow` continues there: the interaction, when it waits in
/// its queue or is with a bot (not when a person has it), goes to state `bot` with a run of the
/// flow's newest version (in place of a greeting's run), so the reply is the run's
/// `first_message`. Returns the interactions that learnt a campaign, with it, its name and
/// whether its flow started.
pub async fn on_inbound(
    conn: &mut PgConnection,
    account_id: Uuid,
    seen: &[InboundSeen<'_>],
) -> Result<Vec<CampaignLearnt>> {
    if seen.is_empty() {
        return Ok(Vec::new());
    }
    let chats: Vec<&str> = seen.iter().map(|s| s.chat_id).collect();
    let interactions: Vec<Uuid> = seen.iter().map(|s| s.interaction_id).collect();
    let row = sqlx::query(
        "WITH input AS (
             SELECT * FROM unnest($2::text[], $3::uuid[]) AS t(chat_id, interaction_id)
         ), target AS (
             SELECT DISTINCT ON (r.chat_id) r.id, r.campaign_id, input.interaction_id
             FROM input JOIN campaign_recipients r ON r.account_id = $1 AND r.chat_id = input.chat_id
             WHERE r.state IN ('sent', 'delivered', 'read') AND r.sent_at > now() - $4::interval
             ORDER BY r.chat_id, r.sent_at DESC
         ), replied AS (
             UPDATE campaign_recipients r SET state = 'replied', replied_at = now(), interaction_id = t.interaction_id
             FROM target t WHERE r.id = t.id
             RETURNING r.campaign_id, t.interaction_id
         ), linked AS (
             UPDATE interactions i SET campaign_id = r.campaign_id,
                 fields = i.fields || jsonb_build_object('campaign_id', r.campaign_id::text, 'campaign', c.name)
             FROM replied r JOIN campaigns c ON c.id = r.campaign_id
             WHERE i.id = r.interaction_id AND i.campaign_id IS NULL
             RETURNING i.id, r.campaign_id, c.name
         )
         SELECT (SELECT opt_out_words FROM accounts WHERE id = $1) AS words,
                (SELECT array_agg(id ORDER BY id) FROM linked) AS interactions,
                (SELECT array_agg(campaign_id ORDER BY id) FROM linked) AS campaigns,
                (SELECT array_agg(name ORDER BY id) FROM linked) AS names",
    )
    .bind(account_id)
    .bind(&chats)
    .bind(&interactions)
    .bind(format!("{} seconds", REPLY_WINDOW.num_seconds()))
    .fetch_one(&mut *conn)
    .await?;
    let words: Option<Vec<String>> = row.try_get("words")?;
    let words = words.unwrap_or_else(|| DEFAULT_STOP_WORDS.iter().map(|w| w.to_string()).collect());
    for s in seen {
        if let Some(word) = s.text.and_then(|t| campaign::stop_word(t, &words)) {
            opt_out(conn, account_id, s.chat_id, &format!("stop word {word}")).await?;
        }
    }
    let ids: Option<Vec<Uuid>> = row.try_get("interactions")?;
    let campaigns: Option<Vec<Uuid>> = row.try_get("campaigns")?;
    let names: Option<Vec<String>> = row.try_get("names")?;
    let mut learnt = Vec::new();
    for ((interaction_id, campaign_id), name) in
        ids.unwrap_or_default().into_iter().zip(campaigns.unwrap_or_default()).zip(names.unwrap_or_default())
    {
        let flow_started = continue_in_flow(conn, account_id, interaction_id, campaign_id).await?;
        learnt.push(CampaignLearnt { interaction_id, campaign_id, name, flow_started });
    }
    Ok(learnt)
}

/// An interaction that learnt its campaign, from [`on_inbound`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignLearnt {
    pub interaction_id: Uuid,
    pub campaign_id: Uuid,
    /// The campaign's name.
    pub name: String,
    /// The campaign's flow started: the interaction is in state `bot` now.
    pub flow_started: bool,
}

/// Starts the campaign's flow for the reply's interaction, if the campaign has one and no
/// person has the interaction (it waits in its queue, or a bot has it). Whether it started.
async fn continue_in_flow(
    conn: &mut PgConnection,
    account_id: Uuid,
    interaction_id: Uuid,
    campaign_id: Uuid,
) -> Result<bool> {
    let flow: Option<(String, i32)> = sqlx::query_as(
        "SELECT f.name, max(f.version) FROM campaigns c JOIN flows f ON f.name = c.flow
         WHERE c.id = $1 GROUP BY f.name",
    )
    .bind(campaign_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(flow) = flow else { return Ok(false) };
    // the interaction is locked already (the ingest found or opened it)
    let moved = sqlx::query(
        "UPDATE interactions SET state = 'bot', updated_at = now() WHERE id = $1 AND state IN ('queued', 'bot')",
    )
    .bind(interaction_id)
    .execute(&mut *conn)
    .await?;
    if moved.rows_affected() == 0 {
        return Ok(false);
    }
    super::flows::start_bot_run(conn, interaction_id, account_id, &flow, None).await?;
    Ok(true)
}

// ---------------------------------------------------------------- the connector's bulk lane --

/// A campaign row of the outbox as the connector performs it.
#[derive(Debug, Clone)]
pub struct BulkItem {
    pub campaign_id: Uuid,
    pub recipient_id: i64,
    /// The campaign's own rate cap, if any.
    pub rate_per_s: Option<i32>,
}

/// Pending campaign rows of the account that are due (their `not_before` passed, or passes
/// within a second) and whose campaign runs, oldest first, skipping the rows the worker
/// holds already (`held`). Each comes as an [`super::OutboxItem`] whose message is the
/// recipient's rendered text, authored by the campaign.
pub async fn pending_bulk_outbox(
    conn: &mut PgConnection,
    account_id: Uuid,
    held: &[i64],
    limit: i64,
) -> Result<Vec<super::OutboxItem>> {
    let rows = sqlx::query(
        "SELECT o.id, o.chat_id, o.attempts, o.not_before, o.fencing_token, o.last_error, o.campaign_id,
                o.recipient_id, r.text, r.variables, c.name, c.template, c.rate_per_s, r.external_message_id
         FROM outbox o JOIN campaigns c ON c.id = o.campaign_id JOIN campaign_recipients r ON r.id = o.recipient_id
         WHERE o.account_id = $1 AND o.state = 'pending' AND o.campaign_id IS NOT NULL AND c.state = 'running'
           AND o.not_before < now() + interval '1 second' AND o.id <> ALL($2)
         ORDER BY o.id LIMIT $3",
    )
    .bind(account_id)
    .bind(held)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(bulk_item_from_row).collect()
}

fn bulk_item_from_row(row: &sqlx::postgres::PgRow) -> Result<super::OutboxItem> {
    let campaign_id: Uuid = row.try_get("campaign_id")?;
    let template: Option<serde_json::Value> = row.try_get("template")?;
    let template: Option<CampaignTemplate> = template
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("campaign template: {e}")))?;
    let variables: serde_json::Value = row.try_get("variables")?;
    let template = template.map(|t| Template {
        params: t
            .params
            .iter()
            .map(|p| variables.get(p).and_then(|v| v.as_str()).unwrap_or_default().to_owned())
            .collect(),
        name: t.name,
        language: t.language,
    });
    let message = Message {
        id: Uuid::nil(),
        interaction_id: Uuid::nil(),
        direction: Direction::Out,
        author: Author { kind: AuthorKind::System, id: format!("campaign:{campaign_id}"), name: row.try_get("name")? },
        kind: MessageKind::Text,
        text: Some(row.try_get("text")?),
        files: Vec::new(),
        location: None,
        contact: None,
        reply_to: None,
        forwarded: None,
        sticker_id: None,
        forward_of: None,
        keyboard: None,
        template,
        status: MessageStatus::Queued,
        error: None,
        client_msg_id: None,
        created_at: row.try_get("not_before")?,
        edited_at: None,
        deleted: false,
    };
    let external: Option<String> = row.try_get("external_message_id")?;
    Ok(super::OutboxItem {
        id: row.try_get("id")?,
        action: OutboxAction::Send,
        chat_id: row.try_get("chat_id")?,
        attempts: row.try_get("attempts")?,
        not_before: row.try_get("not_before")?,
        fencing_token: row.try_get("fencing_token")?,
        last_error: row.try_get("last_error")?,
        message,
        external_ids: external.into_iter().collect(),
        reply_to_external_id: None,
        forward_of_external_id: None,
        author_avatar: None,
        bulk: Some(BulkItem {
            campaign_id,
            recipient_id: row.try_get("recipient_id")?,
            rate_per_s: row.try_get("rate_per_s")?,
        }),
    })
}

/// How the claim of a campaign row went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkClaim {
    /// Claimed: send it.
    Go,
    /// Moved to this time (start, quiet hours); the worker drops it until it is due.
    Later(DateTime<Utc>),
    /// Skipped for good with this reason (opted out, cancelled, past the end time).
    Skipped(String),
    /// Not sent now, left pending (paused, or finished meanwhile).
    Held,
}

/// Claims campaign rows of the account for the leader holding `token`, deciding each one by
/// [`campaign::decide`] at `now`: the rows that may go are claimed (attempts + 1, the token
/// kept), the others moved, skipped or left. Checks the fence last.
pub async fn claim_bulk_outbox(
    conn: &mut PgConnection,
    account_id: Uuid,
    token: i64,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<Vec<(i64, BulkClaim)>> {
    // the rows locked in id order by primary key (see OUTBOX_LOCKED: `o.id = ANY($2)` here
    // walked every campaign row of the outbox with a young table's statistics)
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    let rows = sqlx::query(concatcp!(
        "SELECT o.id, o.state, o.campaign_id, o.recipient_id, c.state AS campaign_state, c.starts_at, c.ends_at,
                c.quiet_from, c.quiet_to, coalesce(r.utc_offset_min, c.utc_offset_min) AS offset_min,
                oo.reason AS opted_out
         FROM ",
        super::connector::OUTBOX_LOCKED,
        " JOIN campaigns c ON c.id = o.campaign_id JOIN campaign_recipients r ON r.id = o.recipient_id
         LEFT JOIN campaign_opt_outs oo ON oo.account_id = o.account_id AND oo.chat_id = o.chat_id
         WHERE o.account_id = $2
         ORDER BY o.id"
    ))
    .bind(&ids)
    .bind(account_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut claims = Vec::with_capacity(rows.len());
    let mut go = Vec::new();
    let mut skipped: Vec<(i64, i64, String)> = Vec::new();
    let mut later: Vec<(i64, DateTime<Utc>)> = Vec::new();
    let mut campaigns: Vec<Uuid> = Vec::new();
    for row in &rows {
        let id: i64 = row.try_get("id")?;
        if row.try_get::<&str, _>("state")? != "pending" {
            claims.push((id, BulkClaim::Held));
            continue;
        }
        let running = match row.try_get::<&str, _>("campaign_state")? {
            "running" => Running::Running,
            "cancelled" => Running::Cancelled,
            _ => Running::Held,
        };
        let quiet: (Option<i16>, Option<i16>) = (row.try_get("quiet_from")?, row.try_get("quiet_to")?);
        let schedule = Schedule {
            starts_at: row.try_get("starts_at")?,
            ends_at: row.try_get("ends_at")?,
            quiet: match quiet {
                (Some(from), Some(to)) => Some((from.max(0) as u16, to.max(0) as u16)),
                _ => None,
            },
        };
        let offset: i16 = row.try_get("offset_min")?;
        let opted: Option<String> = row.try_get("opted_out")?;
        let claim = match campaign::decide(now, running, &schedule, i32::from(offset), opted.as_deref()) {
            Verdict::Go => {
                go.push(id);
                BulkClaim::Go
            }
            Verdict::Later(at) => {
                later.push((id, at));
                BulkClaim::Later(at)
            }
            Verdict::Skip(reason) => {
                skipped.push((id, row.try_get("recipient_id")?, reason.clone()));
                let campaign: Uuid = row.try_get("campaign_id")?;
                if !campaigns.contains(&campaign) {
                    campaigns.push(campaign);
                }
                BulkClaim::Skipped(reason)
            }
            Verdict::Hold => BulkClaim::Held,
        };
        claims.push((id, claim));
    }
    if !go.is_empty() {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, fencing_token = $2, updated_at = now() WHERE id = ANY($1)",
        )
        .bind(&go)
        .bind(token)
        .execute(&mut *conn)
        .await?;
    }
    for (id, at) in &later {
        sqlx::query("UPDATE outbox SET not_before = $2, updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
    }
    for (id, recipient, reason) in &skipped {
        sqlx::query("UPDATE outbox SET state = 'failed', last_error = $2, updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(reason)
            .execute(&mut *conn)
            .await?;
        sqlx::query("UPDATE campaign_recipients SET state = 'skipped', reason = $2 WHERE id = $1 AND state = 'queued'")
            .bind(recipient)
            .bind(reason)
            .execute(&mut *conn)
            .await?;
    }
    for campaign in campaigns {
        finish_if_done(conn, campaign).await?;
    }
    super::check_fence(conn, &super::connector_key(account_id), token).await?;
    Ok(claims)
}

/// Records the outcome of a campaign row (already locked by the caller, `state` pending or
/// not): a send updates the recipient (`sent` with the platform's id, or `failed` with its
/// reason) even when the campaign was cancelled while it was in flight, since that is what
/// happened. Returns the campaign to check for its end.
pub(crate) async fn record_bulk_outcome(
    conn: &mut PgConnection,
    outbox_id: i64,
    pending: bool,
    outcome: &super::OutboxOutcome,
) -> Result<Option<Uuid>> {
    use super::OutboxOutcome as O;
    let row = sqlx::query("SELECT campaign_id, recipient_id, account_id FROM outbox WHERE id = $1")
        .bind(outbox_id)
        .fetch_one(&mut *conn)
        .await?;
    let campaign: Uuid = row.try_get("campaign_id")?;
    let recipient: i64 = row.try_get("recipient_id")?;
    let account_id: Uuid = row.try_get("account_id")?;
    match outcome {
        O::Retry { not_before, error } => {
            if pending {
                sqlx::query("UPDATE outbox SET not_before = $2, last_error = $3, updated_at = now() WHERE id = $1")
                    .bind(outbox_id)
                    .bind(not_before)
                    .bind(error)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(None)
        }
        O::Done { external_ids } => {
            sqlx::query("UPDATE outbox SET state = 'done', last_error = NULL, updated_at = now() WHERE id = $1")
                .bind(outbox_id)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "UPDATE campaign_recipients SET state = 'sent', reason = NULL, sent_at = now(), external_message_id = $2
                 WHERE id = $1 AND state IN ('queued', 'skipped')",
            )
            .bind(recipient)
            .bind(external_ids.first())
            .execute(&mut *conn)
            .await?;
            // a receipt for these ids waits until this commits (see `RECEIPT_LOCK`)
            sqlx::query(concatcp!(
                "SELECT ",
                super::connector::RECEIPT_LOCK,
                " FROM (SELECT x AS external_id FROM unnest($2::text[]) AS x ORDER BY x) ids"
            ))
            .bind(account_id.to_string())
            .bind(external_ids)
            .execute(&mut *conn)
            .await?;
            apply_early_receipts(conn, account_id, &[external_ids.first().cloned()]).await?;
            Ok(Some(campaign))
        }
        O::Failed { .. } if !pending => Ok(None),
        O::Failed { error } => {
            sqlx::query("UPDATE outbox SET state = 'failed', last_error = $2, updated_at = now() WHERE id = $1")
                .bind(outbox_id)
                .bind(error)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "UPDATE campaign_recipients SET state = 'failed', reason = $2 WHERE id = $1 AND state = 'queued'",
            )
            .bind(recipient)
            .bind(error)
            .execute(&mut *conn)
            .await?;
            Ok(Some(campaign))
        }
    }
}

/// [`record_bulk_outcome`] for many campaign rows (locked by the caller; each with whether it
/// is still pending) in a few statements. Returns the campaigns of the rows that ended.
pub(crate) async fn record_bulk_outcomes(
    conn: &mut PgConnection,
    account_id: Uuid,
    rows: &[(i64, bool, &super::OutboxOutcome)],
) -> Result<Vec<Uuid>> {
    use super::OutboxOutcome as O;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let (mut done, mut done_ext) = (Vec::new(), Vec::<Option<String>>::new());
    let (mut failed, mut failed_err) = (Vec::new(), Vec::new());
    let (mut retry, mut retry_at, mut retry_err) = (Vec::new(), Vec::new(), Vec::new());
    for (id, pending, outcome) in rows {
        match outcome {
            O::Done { external_ids } => {
                done.push(*id);
                done_ext.push(external_ids.first().cloned());
            }
            O::Failed { error } if *pending => {
                failed.push(*id);
                failed_err.push(error.clone());
            }
            O::Retry { not_before, error } if *pending => {
                retry.push(*id);
                retry_at.push(*not_before);
                retry_err.push(error.clone());
            }
            _ => {}
        }
    }
    let mut campaigns: Vec<Uuid> = Vec::new();
    if !done.is_empty() {
        campaigns.extend(
            sqlx::query_scalar::<_, Uuid>(
                "WITH t AS (SELECT * FROM unnest($1::bigint[], $2::text[]) AS t(id, ext)),
                 o AS (UPDATE outbox o SET state = 'done', last_error = NULL, updated_at = now() FROM t
                       WHERE o.id = t.id RETURNING o.id, o.recipient_id, o.campaign_id, t.ext),
                 r AS (UPDATE campaign_recipients r SET state = 'sent', reason = NULL, sent_at = now(),
                           external_message_id = o.ext
                       FROM o WHERE r.id = o.recipient_id AND r.state IN ('queued', 'skipped'))
                 SELECT DISTINCT campaign_id FROM o",
            )
            .bind(&done)
            .bind(&done_ext)
            .fetch_all(&mut *conn)
            .await?,
        );
        apply_early_receipts(conn, account_id, &done_ext).await?;
    }
    if !failed.is_empty() {
        campaigns.extend(
            sqlx::query_scalar::<_, Uuid>(
                "WITH t AS (SELECT * FROM unnest($1::bigint[], $2::text[]) AS t(id, error)),
                 o AS (UPDATE outbox o SET state = 'failed', last_error = t.error, updated_at = now() FROM t
                       WHERE o.id = t.id RETURNING o.recipient_id, o.campaign_id, t.error),
                 r AS (UPDATE campaign_recipients r SET state = 'failed', reason = o.error
                       FROM o WHERE r.id = o.recipient_id AND r.state = 'queued')
                 SELECT DISTINCT campaign_id FROM o",
            )
            .bind(&failed)
            .bind(&failed_err)
            .fetch_all(&mut *conn)
            .await?,
        );
    }
    if !retry.is_empty() {
        sqlx::query(
            "UPDATE outbox o SET not_before = t.at, last_error = t.error, updated_at = now()
             FROM unnest($1::bigint[], $2::timestamptz[], $3::text[]) AS t(id, at, error) WHERE o.id = t.id",
        )
        .bind(&retry)
        .bind(&retry_at)
        .bind(&retry_err)
        .execute(&mut *conn)
        .await?;
    }
    campaigns.sort_unstable();
    campaigns.dedup();
    Ok(campaigns)
}

/// Receipts that overtook the outcome of the campaign sends that got these platform ids
/// (the caller holds their receipt locks): applied now.
async fn apply_early_receipts(conn: &mut PgConnection, account_id: Uuid, external: &[Option<String>]) -> Result<()> {
    let ids: Vec<&str> = external.iter().flatten().map(String::as_str).collect();
    if ids.is_empty() {
        return Ok(());
    }
    let early: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "DELETE FROM early_receipts WHERE account_id = $1 AND external_id = ANY($2) RETURNING external_id, status, error",
    )
    .bind(account_id)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    for (external_id, status, error) in early {
        if let Some(receipt) = super::Receipt::from_row(&status, error) {
            campaign_receipt(conn, account_id, &external_id, &receipt).await?;
        }
    }
    Ok(())
}

/// A platform receipt for a campaign message: the recipient moves forward (`sent` →
/// `delivered` → `read`; `failed` with the platform's reason only from `sent`), never back
/// (a `replied` recipient stays so). `None` when no campaign message has this platform id.
pub(crate) async fn campaign_receipt(
    conn: &mut PgConnection,
    account_id: Uuid,
    external_id: &str,
    receipt: &super::Receipt,
) -> Result<Option<super::ReceiptOutcome>> {
    let (state, from, reason): (&str, &[&str], Option<&str>) = match receipt {
        super::Receipt::Delivered => ("delivered", &["sent"], None),
        super::Receipt::Read => ("read", &["sent", "delivered"], None),
        super::Receipt::Failed(error) => ("failed", &["sent"], Some(error.as_str())),
    };
    let row: (i64, i64) = sqlx::query_as(
        "WITH r AS (
             SELECT id, state FROM campaign_recipients WHERE account_id = $1 AND external_message_id = $2 FOR UPDATE
         ), u AS (
             UPDATE campaign_recipients c SET state = $3, reason = coalesce($5, c.reason)
             FROM r WHERE c.id = r.id AND r.state = ANY($4)
             RETURNING c.id
         )
         SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM u)",
    )
    .bind(account_id)
    .bind(external_id)
    .bind(state)
    .bind(from)
    .bind(reason)
    .fetch_one(&mut *conn)
    .await?;
    Ok(match row {
        (0, _) => None,
        (_, 0) => Some(super::ReceiptOutcome::Unchanged),
        _ => Some(super::ReceiptOutcome::Applied(Box::default())),
    })
}

/// Ends every campaign of `campaigns` that has no pending row left.
pub(crate) async fn finish_campaigns(conn: &mut PgConnection, campaigns: &[Uuid]) -> Result<()> {
    let mut seen: HashMap<Uuid, ()> = HashMap::new();
    for c in campaigns {
        if seen.insert(*c, ()).is_none() {
            finish_if_done(conn, *c).await?;
        }
    }
    Ok(())
}
