//! Scheduled calls in the store against a real PostgreSQL: a claimed reminder is skipped by
//! every other claimer until its transaction ends, and gone once marked; a closed interaction's
//! call shows its room ended to the reminder planner; moving makes the reminder due again and
//! moves the link's expiry and is told to the interaction's agent and the one who booked it;
//! cancelling ends the room once.

use chrono::{DateTime, TimeDelta, Utc};
use schema::domain::{VideoMode, VideoQuality};
use schema::store::{self, NewRoom, NewScheduledCall, StoreError};
use sqlx::PgPool;
use uuid::Uuid;

async fn assigned_interaction(pool: &PgPool, customer: &str) -> Uuid {
    let account: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM accounts LIMIT 1").fetch_optional(pool).await.unwrap();
    let account = match account {
        Some(account) => account,
        None => testenv::fixtures::webchat_account(pool, &[("alice", "agent"), ("bob", "agent")]).await,
    };
    testenv::fixtures::assigned_interaction(pool, account, customer, "Visitor", "call me later?", "alice").await
}

fn booking(interaction_id: Uuid, at: DateTime<Utc>) -> NewScheduledCall {
    let (mut room, _) = NewRoom::with_new_link(
        interaction_id,
        "alice",
        "Alice",
        VideoMode::TwoWay,
        VideoQuality::P720,
        "https://hub.example",
        std::time::Duration::from_secs(3600),
    );
    room.link_expires_at = at + TimeDelta::hours(1);
    NewScheduledCall { room, at, remind_before_s: 900, via: "channel".into(), phone: None }
}

#[tokio::test]
async fn a_claimed_reminder_is_skipped_by_other_claimers_and_gone_once_sent() {
    let (_url, pool) = testenv::database().await;
    let interaction = assigned_interaction(&pool, "wc-1").await;
    let at = Utc::now() + TimeDelta::hours(2);
    let mut tx = pool.begin().await.unwrap();
    let (call, started, audience) = store::schedule_call(&mut tx, &booking(interaction, at)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(audience, ["alice"]);
    assert!(started.invitation.created);
    assert_eq!((call.state.as_str(), call.reminder.as_str()), ("scheduled", "pending"));

    let pending = store::pending_reminders(&mut pool.acquire().await.unwrap(), 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert!(pending[0].room_open);

    let mut first = pool.begin().await.unwrap();
    let claimed = store::claim_reminder(&mut first, call.id).await.unwrap();
    assert_eq!(claimed.as_ref().map(|c| c.id), Some(call.id));
    // while the first holds it, a second claimer skips it instead of waiting
    let mut second = pool.begin().await.unwrap();
    assert!(store::claim_reminder(&mut second, call.id).await.unwrap().is_none());
    second.rollback().await.unwrap();
    store::finish_reminder(&mut first, call.id, "sent").await.unwrap();
    first.commit().await.unwrap();
    // once sent, nobody claims it again and it is no longer pending
    let mut third = pool.begin().await.unwrap();
    assert!(store::claim_reminder(&mut third, call.id).await.unwrap().is_none());
    third.rollback().await.unwrap();
    assert!(store::pending_reminders(&mut pool.acquire().await.unwrap(), 10).await.unwrap().is_empty());
    let stored = store::load_scheduled_call(&mut pool.acquire().await.unwrap(), call.id).await.unwrap();
    assert_eq!(stored.reminder, "sent");
    assert!(stored.reminded_at.is_some());

    // the chat (and its call) goes to bob: both hear of the booking from now on
    let mut tx = pool.begin().await.unwrap();
    store::transfer(&mut tx, interaction, "alice", &store::TransferTarget::Agent("bob".into()), None).await.unwrap();
    tx.commit().await.unwrap();
    // moving it makes the reminder due again and moves the link's expiry
    let later = Utc::now() + TimeDelta::hours(5);
    let mut tx = pool.begin().await.unwrap();
    let (moved, audience) =
        store::move_scheduled_call(&mut tx, call.id, later, Some(600), later + TimeDelta::hours(1), "sue")
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(audience, ["alice", "bob"], "the interaction's agent and the one who booked it");
    assert_eq!((moved.reminder.as_str(), moved.remind_before_s, moved.reminded_at), ("pending", 600, None));
    let room = store::load_room(&mut pool.acquire().await.unwrap(), moved.room_id).await.unwrap();
    assert!((room.link_expires_at - (later + TimeDelta::hours(1))).num_milliseconds().abs() < 1);

    // cancelled once: the room ends; a second cancel and a move are conflicts
    let mut tx = pool.begin().await.unwrap();
    let (cancelled, _) = store::cancel_scheduled_call(&mut tx, call.id, "sue").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!((cancelled.state.as_str(), cancelled.cancelled_by.as_deref()), ("cancelled", Some("sue")));
    let room = store::load_room(&mut pool.acquire().await.unwrap(), cancelled.room_id).await.unwrap();
    assert_eq!(room.end_reason.as_deref(), Some("cancelled"));
    let mut tx = pool.begin().await.unwrap();
    assert!(matches!(store::cancel_scheduled_call(&mut tx, call.id, "sue").await, Err(StoreError::Conflict(_))));
    tx.rollback().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let again = store::move_scheduled_call(&mut tx, call.id, later, None, later, "sue").await;
    assert!(matches!(again, Err(StoreError::Conflict(_))));
    tx.rollback().await.unwrap();
    assert!(store::pending_reminders(&mut pool.acquire().await.unwrap(), 10).await.unwrap().is_empty());
    let unknown = store::load_scheduled_call(&mut pool.acquire().await.unwrap(), Uuid::now_v7()).await;
    assert!(matches!(unknown, Err(StoreError::NotFound { .. })));
}

#[tokio::test]
async fn a_closed_interactions_call_shows_its_room_ended_to_the_planner() {
    let (_url, pool) = testenv::database().await;
    let interaction = assigned_interaction(&pool, "wc-2").await;
    let mut tx = pool.begin().await.unwrap();
    let (call, _, _) =
        store::schedule_call(&mut tx, &booking(interaction, Utc::now() + TimeDelta::hours(2))).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    store::close(&mut tx, interaction, "alice", Some("resolved")).await.unwrap();
    tx.commit().await.unwrap();
    let pending = store::pending_reminders(&mut pool.acquire().await.unwrap(), 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, call.id);
    assert!(!pending[0].room_open, "closing the interaction ended the call's room");
    let filter = store::ScheduleFilter { interaction_id: Some(interaction), ..Default::default() };
    let listed = store::list_scheduled_calls(&mut pool.acquire().await.unwrap(), &filter, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    let none = store::ScheduleFilter { agent: Some("bob".into()), ..Default::default() };
    assert!(store::list_scheduled_calls(&mut pool.acquire().await.unwrap(), &none, 10).await.unwrap().is_empty());
}
