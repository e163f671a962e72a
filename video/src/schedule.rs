//! Scheduled calls (docs/video.md, "Scheduled calls"): the sans-IO decision of which reminders
//! are due ([`plan`], fed the pending reminders and `now`), and the worker every video node runs
//! that sends them. Reminders survive a restart (they are rows) and go once however many nodes
//! run the worker: each is claimed under its row lock with `SKIP LOCKED` and marked in the same
//! transaction that writes it (the agents' event, the customer's message); a reminder by SMS is
//! marked and its SMS row written before the provider is called, so a crash can lose that SMS
//! but never send it twice.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ops::config::Problem;
use schema::store::{self, LinkVia, NewSms, OutboundMessage, PendingReminder, ScheduledCall};
use schema::topics;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::State;
use crate::error::VideoError;

/// The `[video.schedules]` configuration section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How long before the call its reminder goes, when the booking names none, in seconds.
    pub remind_before_s: u32,
    /// How often the worker looks for due reminders at most, in milliseconds (it sleeps until
    /// the next reminder is due, but never longer than this: a booking made on another node
    /// is seen within it).
    pub poll_interval_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config { remind_before_s: 900, poll_interval_ms: 10_000 }
    }
}

/// The least a reminder may precede its call: a minute.
pub const MIN_REMIND_BEFORE_S: u32 = 60;
/// The most a reminder may precede its call: a week.
pub const MAX_REMIND_BEFORE_S: u32 = 7 * 24 * 3600;
/// The furthest ahead a call may be booked: a year.
pub const MAX_AHEAD: TimeDelta = TimeDelta::days(366);

impl Config {
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if !(MIN_REMIND_BEFORE_S..=MAX_REMIND_BEFORE_S).contains(&self.remind_before_s) {
            problems.push(Problem::new("video.schedules.remind_before_s", "must be between 60 and 604800 (a week)"));
        }
        if !(50..=600_000).contains(&self.poll_interval_ms) {
            problems.push(Problem::new("video.schedules.poll_interval_ms", "must be between 50 and 600000"));
        }
        problems
    }
}

/// What to do with the pending reminders now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Reminders to send now, soonest call first.
    pub send: Vec<Uuid>,
    /// Reminders that can no longer be useful: the call's time has come, or its room ended.
    pub miss: Vec<Uuid>,
    /// When the next reminder not due yet becomes due.
    pub next: Option<DateTime<Utc>>,
}

/// When a reminder is due: `remind_before_s` before its call.
pub fn due_at(r: &PendingReminder) -> DateTime<Utc> {
    r.at - TimeDelta::seconds(i64::from(r.remind_before_s))
}

/// Decides which pending reminders go now. A reminder goes from its due time until the call's
/// time (a node that was down at the due time sends it late, when it is back, as long as it is
/// still ahead of the call); after the call's time, or once the room ended, it is missed.
pub fn plan(pending: &[PendingReminder], now: DateTime<Utc>) -> Plan {
    let mut out = Plan::default();
    let mut sending: Vec<&PendingReminder> = Vec::new();
    for r in pending {
        if !r.room_open || r.at <= now {
            out.miss.push(r.id);
        } else if due_at(r) <= now {
            sending.push(r);
        } else {
            let due = due_at(r);
            out.next = Some(out.next.map_or(due, |n| n.min(due)));
        }
    }
    sending.sort_by_key(|r| (r.at, r.id));
    out.send = sending.into_iter().map(|r| r.id).collect();
    out
}

/// The call's time as the customer reads it in a message.
pub fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The invitation of a scheduled call.
pub fn invitation_text(agent_name: &str, at: DateTime<Utc>, link: &str) -> String {
    format!(
        "{agent_name} invites you to a video call on {}. Open this link at that time to join (camera and microphone optional): {link}",
        when(at)
    )
}

/// The reminder of a scheduled call.
pub fn reminder_text(agent_name: &str, at: DateTime<Utc>, link: &str) -> String {
    format!("Reminder: your video call with {agent_name} starts at {}. Join here: {link}", when(at))
}

/// What a moved call tells the customer.
pub fn moved_text(agent_name: &str, at: DateTime<Utc>) -> String {
    format!("Your video call with {agent_name} has moved to {}. The link you got still works.", when(at))
}

/// What a cancelled call tells the customer.
pub fn cancelled_text(agent_name: &str, at: DateTime<Utc>) -> String {
    format!("Your video call with {agent_name} on {} is cancelled.", when(at))
}

/// The reminder worker of this node, until shutdown: reads the pending reminders, asks [`plan`],
/// sends what is due, sleeps until the next is due (at most `poll_interval_ms`).
pub(crate) async fn run(state: Arc<State>) {
    let poll = Duration::from_millis(state.config.schedules.poll_interval_ms);
    loop {
        let wait = match run_once(&state, Utc::now()).await {
            Ok(next) => next
                .and_then(|next| (next - Utc::now()).to_std().ok())
                .map_or(poll, |until| until.min(poll))
                .max(Duration::from_millis(10)),
            Err(e) => {
                tracing::warn!(error = %e, "scheduled call reminders: cannot run now");
                poll
            }
        };
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One turn of the worker at `now`: sends or misses what [`plan`] says; returns when the next
/// reminder is due. Public to the crate's tests through [`crate::Video::run_reminders`].
pub(crate) async fn run_once(state: &Arc<State>, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, VideoError> {
    let pending = store::pending_reminders(&mut *state.pool.acquire().await?, 500).await?;
    let plan = plan(&pending, now);
    for id in &plan.miss {
        let mut tx = state.pool.begin().await?;
        if store::claim_reminder(&mut tx, *id).await?.is_some() {
            store::finish_reminder(&mut tx, *id, "missed").await?;
            tracing::info!(schedule = %id, "scheduled call reminder missed: the call's time came or its room ended");
            metrics::counter!("switchboard_video_schedule_reminders_total", "outcome" => "missed").increment(1);
        }
        tx.commit().await?;
    }
    for id in &plan.send {
        if let Err(e) = remind(state, *id).await {
            tracing::warn!(schedule = %id, error = %e, "cannot send a scheduled call's reminder");
        }
    }
    Ok(plan.next)
}

/// Sends one reminder if this worker wins its row: the agents' `video.scheduled` (`reminder`),
/// and the customer's message through the channel, or an SMS.
async fn remind(state: &Arc<State>, id: Uuid) -> Result<(), VideoError> {
    let mut tx = state.pool.begin().await?;
    let Some(call) = store::claim_reminder(&mut tx, id).await? else {
        return Ok(());
    };
    let agent_name = store::agent_name(&mut tx, &call.agent).await?;
    let extra = serde_json::json!({"agent_join": store::agent_join_link(&state.public_url, call.room_id)});
    let mut audience = store::scheduled_event(&mut tx, &call, "reminder", extra).await?;
    let mut account = None;
    let mut sms = None;
    match (call.via.as_str(), call.phone.as_deref(), state.sms.clone()) {
        ("sms", Some(phone), Some(provider)) => {
            let token = store::add_room_link(&mut tx, call.room_id, LinkVia::Sms, &call.agent).await?;
            let sms_id = Uuid::now_v7();
            let new = NewSms {
                id: sms_id,
                room: call.room_id,
                link: &token,
                agent: &call.agent,
                phone,
                provider: provider.name(),
            };
            store::insert_sms(&mut tx, &new).await?;
            let text = reminder_text(&agent_name, call.at, &store::customer_link(&state.public_url, &token));
            sms = Some((provider, sms_id, phone.to_owned(), text));
        }
        _ => {
            if call.via == "sms" {
                tracing::warn!(schedule = %id, "SMS is off ([video.sms]); the reminder goes through the channel");
            }
            let token = store::add_room_link(&mut tx, call.room_id, LinkVia::Schedule, &call.agent).await?;
            let enqueued = store::enqueue_outbound(
                &mut tx,
                &OutboundMessage {
                    interaction_id: call.interaction_id,
                    agent_login: call.agent.clone(),
                    agent_name: agent_name.clone(),
                    client_msg_id: format!("video-schedule:{}:reminder:{}", call.id, call.at.timestamp()),
                    text: Some(reminder_text(&agent_name, call.at, &store::customer_link(&state.public_url, &token))),
                    ..Default::default()
                },
            )
            .await?;
            if enqueued.created {
                audience.extend(enqueued.audience);
                account = Some(enqueued.account_id);
            }
        }
    }
    store::finish_reminder(&mut tx, id, "sent").await?;
    tx.commit().await?;
    crate::api::wake(state, &audience);
    if let Some(account) = account {
        state.coord.notify(&topics::account(account));
    }
    metrics::counter!("switchboard_video_schedule_reminders_total", "outcome" => "sent").increment(1);
    tracing::info!(schedule = %id, interaction = %call.interaction_id, via = %call.via, "scheduled call reminder sent");
    if let Some((provider, sms_id, phone, text)) = sms
        && let Err(e) =
            crate::api::deliver_sms(state, provider, &call_room(state, &call).await?, sms_id, phone, text).await
    {
        tracing::warn!(schedule = %id, sms = %sms_id, error = %e, "the reminder SMS was not sent");
    }
    Ok(())
}

async fn call_room(state: &State, call: &ScheduledCall) -> Result<schema::domain::VideoRoom, VideoError> {
    Ok(store::load_room(&mut *state.pool.acquire().await?, call.room_id).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn pending(n: u128, at: &str, before: i32, room_open: bool) -> PendingReminder {
        PendingReminder { id: Uuid::from_u128(n), at: t(at), remind_before_s: before, room_open }
    }

    #[test]
    fn a_reminder_is_due_from_its_time_until_the_call() {
        let r = [pending(1, "2026-12-07T15:00:00Z", 900, true)];
        let early = plan(&r, t("2026-12-07T14:44:59Z"));
        assert_eq!(early, Plan { send: vec![], miss: vec![], next: Some(t("2026-12-07T14:45:00Z")) });
        let due = plan(&r, t("2026-12-07T14:45:00Z"));
        assert_eq!(due, Plan { send: vec![Uuid::from_u128(1)], miss: vec![], next: None });
        // a node down at the due time sends it late, while the call is still ahead
        assert_eq!(plan(&r, t("2026-12-07T14:59:59Z")).send, vec![Uuid::from_u128(1)]);
        // at the call's time a reminder is no use
        let late = plan(&r, t("2026-12-07T15:00:00Z"));
        assert_eq!(late, Plan { send: vec![], miss: vec![Uuid::from_u128(1)], next: None });
    }

    #[test]
    fn an_ended_room_misses_its_reminder_and_the_next_due_is_the_soonest() {
        let now = t("2026-12-07T12:00:00Z");
        let r = [
            pending(1, "2026-12-07T18:00:00Z", 3600, true),
            pending(2, "2026-12-07T13:00:00Z", 900, true),
            pending(3, "2026-12-07T12:10:00Z", 900, false),
            pending(4, "2026-12-07T12:20:00Z", 1800, true),
            pending(5, "2026-12-07T12:05:00Z", 600, true),
        ];
        let p = plan(&r, now);
        assert_eq!(p.send, vec![Uuid::from_u128(5), Uuid::from_u128(4)], "soonest call first");
        assert_eq!(p.miss, vec![Uuid::from_u128(3)]);
        assert_eq!(p.next, Some(t("2026-12-07T12:45:00Z")));
    }

    #[test]
    fn config_bounds() {
        assert!(Config::default().problems().is_empty());
        let bad = Config { remind_before_s: MAX_REMIND_BEFORE_S + 1, poll_interval_ms: 10 };
        assert_eq!(bad.problems().len(), 2);
    }

    #[test]
    fn texts_name_the_time_in_utc() {
        let at = t("2026-12-07T15:30:00Z");
        assert!(reminder_text("Alice", at, "https://h/call/x").contains("2026-12-07 15:30 UTC"));
        assert!(invitation_text("Alice", at, "https://h/call/x").ends_with("https://h/call/x"));
    }
}
