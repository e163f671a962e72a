//! The statistics reports and the supervisors' live view against a real PostgreSQL: a timeline
//! is played through the store, then its times are moved to known instants, so every figure of
//! the reports can be checked exactly.

use std::time::Duration;

use chrono::{DateTime, Utc};
use schema::domain::{AgentStatus, Channel, MessageKind, Queue, RoutingMode};
use schema::store::{
    self, AgentProfile, Bucket, InboundMessage, Ingested, NewAccount, OutboundMessage, Sender, StatsQuery,
};
use sqlx::PgPool;
use uuid::Uuid;

const WINDOW: Duration = Duration::from_secs(3600);

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn text_from(account_id: Uuid, user: &str, id: &str, text: &str) -> InboundMessage {
    InboundMessage {
        account_id,
        external_message_id: id.into(),
        chat_id: user.into(),
        sender: Sender { external_id: user.into(), name: format!("User {user}"), ..Sender::default() },
        kind: MessageKind::Text,
        text: Some(text.into()),
        file_ids: vec![],
        location: None,
        contact: None,
        reply_to_external_id: None,
        forwarded: None,
        sent_at: None,
        sticker_id: None,
    }
}

async fn ingest(pool: &PgPool, msg: &InboundMessage) -> Uuid {
    let mut tx = pool.begin().await.unwrap();
    let Ingested::Stored { interaction, .. } = store::ingest_inbound(&mut tx, msg, WINDOW).await.unwrap() else {
        panic!("stored")
    };
    tx.commit().await.unwrap();
    interaction.id
}

async fn exec(pool: &PgPool, sql: &'static str, id: Uuid, t: DateTime<Utc>) {
    sqlx::query(sql).bind(id).bind(t).execute(pool).await.unwrap();
}

/// Two contacts: A (10:00, taken after 60 s, first answer after 90 s, closed at 10:10) and B
/// (11:00, never taken, silent since: abandoned). Alice is ready from 09:30.
async fn timeline(pool: &PgPool) -> (Uuid, Uuid) {
    let mut conn = pool.acquire().await.unwrap();
    store::upsert_queue(
        &mut conn,
        &Queue { name: "support".into(), routing_mode: RoutingMode::Auto, offer_timeout_ms: 30_000 },
    )
    .await
    .unwrap();
    let account = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Telegram,
            name: "shop bot".into(),
            default_queue: "support".into(),
            credentials: serde_json::json!({}),
            settings: serde_json::json!({}),
        },
    )
    .await
    .unwrap();
    store::upsert_agent(
        &mut conn,
        &AgentProfile {
            login: "alice".into(),
            name: "Alice".into(),
            roles: vec!["agent".into()],
            queues: vec!["support".into()],
            max_interactions: 2,
        },
    )
    .await
    .unwrap();
    store::change_agent_status(&mut conn, "alice", AgentStatus::Ready, None).await.unwrap();
    drop(conn);

    let a = ingest(pool, &text_from(account.id, "1", "1:1", "where is my order?")).await;
    let mut tx = pool.begin().await.unwrap();
    store::offer(&mut tx, a, "alice", 30_000).await.unwrap();
    store::accept(&mut tx, a, "alice").await.unwrap();
    store::enqueue_outbound(
        &mut tx,
        &OutboundMessage {
            interaction_id: a,
            agent_login: "alice".into(),
            agent_name: "Alice".into(),
            client_msg_id: "c-1".into(),
            text: Some("on its way".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    store::close(&mut tx, a, "alice", Some("resolved")).await.unwrap();
    tx.commit().await.unwrap();
    let b = ingest(pool, &text_from(account.id, "2", "2:1", "hello?")).await;

    // the timeline, at known times
    let t = |s: &str| at(&format!("2026-03-01T{s}Z"));
    sqlx::query("UPDATE agent_events SET created_at = $1 WHERE event = 'agent.status'")
        .bind(t("09:30:00"))
        .execute(pool)
        .await
        .unwrap();
    exec(
        pool,
        "UPDATE interaction_events SET created_at = $2 WHERE interaction_id = $1 AND kind = 'interaction.created'",
        a,
        t("10:00:00"),
    )
    .await;
    exec(
        pool,
        "UPDATE interaction_events SET created_at = $2 WHERE interaction_id = $1 AND kind = 'interaction.offered'",
        a,
        t("10:00:30"),
    )
    .await;
    exec(
        pool,
        "UPDATE interaction_events SET created_at = $2 WHERE interaction_id = $1 AND kind = 'interaction.assigned'",
        a,
        t("10:01:00"),
    )
    .await;
    exec(
        pool,
        "UPDATE interaction_events SET created_at = $2 WHERE interaction_id = $1 AND kind = 'interaction.closed'",
        a,
        t("10:10:00"),
    )
    .await;
    exec(pool, "UPDATE messages SET created_at = $2 WHERE interaction_id = $1 AND direction = 'in'", a, t("10:00:00"))
        .await;
    exec(pool, "UPDATE messages SET created_at = $2 WHERE interaction_id = $1 AND direction = 'out'", a, t("10:01:30"))
        .await;
    exec(pool, "UPDATE interaction_events SET created_at = $2 WHERE interaction_id = $1", b, t("11:00:00")).await;
    exec(pool, "UPDATE messages SET created_at = $2 WHERE interaction_id = $1", b, t("11:00:00")).await;
    (a, b)
}

fn query(from: &str, to: &str, bucket: Bucket, tz: &str) -> StatsQuery {
    StatsQuery {
        from: at(from),
        to: at(to),
        bucket,
        tz: tz.into(),
        channels: vec![],
        queues: vec![],
        abandon_after: Duration::from_secs(600),
    }
}

#[tokio::test]
async fn the_reports_count_contacts_times_and_agents_exactly() {
    let (_url, pool) = testenv::database().await;
    timeline(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let q = query("2026-03-01T09:00:00Z", "2026-03-01T13:00:00Z", Bucket::Hour, "UTC");

    let buckets = store::stats_buckets(&mut conn, &q).await.unwrap();
    assert_eq!(buckets, ["09:00", "10:00", "11:00", "12:00"].map(|h| at(&format!("2026-03-01T{h}:00Z"))));

    let volume = store::stats_volume(&mut conn, &q).await.unwrap();
    let got: Vec<_> = volume
        .iter()
        .map(|r| (r.bucket, r.channel.as_str(), r.queue.as_str(), r.contacts, r.answered, r.abandoned))
        .collect();
    assert_eq!(
        got,
        [
            (at("2026-03-01T10:00:00Z"), "telegram", "support", 1, 1, 0),
            (at("2026-03-01T11:00:00Z"), "telegram", "support", 1, 0, 1),
        ]
    );

    let times = store::stats_times(&mut conn, &q).await.unwrap();
    assert_eq!(times.len(), 2);
    assert_eq!((times[0].wait_p50_s, times[0].wait_p90_s), (Some(60.0), Some(60.0)));
    assert_eq!(times[0].handle_p50_s, Some(540.0));
    assert_eq!(times[0].first_response_p50_s, Some(90.0));
    assert_eq!((times[1].contacts, times[1].answered, times[1].wait_p50_s), (1, 0, None));

    let agents = store::stats_agents(&mut conn, &q).await.unwrap();
    assert_eq!(agents.len(), 1);
    let alice = &agents[0];
    assert_eq!((alice.login.as_str(), alice.handled, alice.handle_s, alice.ready_s), ("alice", 1, 540.0, 12_600.0));
    assert_eq!(alice.occupancy(), Some(540.0 / (12_600.0 * 2.0)));

    // filters: no VK contacts; the support queue has both
    let vk = StatsQuery { channels: vec!["vk".into()], ..q.clone() };
    assert!(store::stats_volume(&mut conn, &vk).await.unwrap().is_empty());
    let support = StatsQuery { queues: vec!["support".into()], ..q.clone() };
    assert_eq!(store::stats_volume(&mut conn, &support).await.unwrap().len(), 2);

    // a contact still within the abandon time is not abandoned yet
    let patient = StatsQuery { abandon_after: Duration::from_secs(100 * 365 * 86_400), ..q.clone() };
    let volume = store::stats_volume(&mut conn, &patient).await.unwrap();
    assert_eq!(volume[1].abandoned, 0);

    // no calls were made
    assert!(store::stats_calls(&mut conn, &q).await.unwrap().is_empty());
}

#[tokio::test]
async fn day_buckets_follow_the_time_zone() {
    let (_url, pool) = testenv::database().await;
    timeline(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    assert!(store::valid_time_zone(&mut conn, "Europe/Moscow").await.unwrap());
    assert!(!store::valid_time_zone(&mut conn, "Mars/Olympus").await.unwrap());
    let q = query("2026-03-01T00:00:00Z", "2026-03-03T00:00:00Z", Bucket::Day, "Europe/Moscow");
    let buckets = store::stats_buckets(&mut conn, &q).await.unwrap();
    assert_eq!(
        buckets,
        [at("2026-02-28T21:00:00Z"), at("2026-03-01T21:00:00Z"), at("2026-03-02T21:00:00Z")],
        "Moscow's midnights"
    );
    let volume = store::stats_volume(&mut conn, &q).await.unwrap();
    assert_eq!(volume.len(), 1, "both contacts on Moscow's 1 March: {volume:?}");
    assert_eq!((volume[0].bucket, volume[0].contacts), (at("2026-02-28T21:00:00Z"), 2));
}

#[tokio::test]
async fn the_live_view_lists_waiting_interactions_with_their_wait() {
    let (_url, pool) = testenv::database().await;
    let (_a, b) = timeline(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let live = store::live_overview(&mut conn).await.unwrap();
    let list = live["interactions"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{live}");
    assert_eq!(list[0]["id"], b.to_string());
    assert_eq!(list[0]["state"], "queued");
    assert_eq!(list[0]["customer"]["name"], "User 2");
    assert_eq!(list[0]["waiting_since"], "2026-03-01T11:00:00.000000Z");
    assert_eq!(list[0]["call"], serde_json::Value::Null);
    assert_eq!(live["agents"][0]["login"], "alice");
    assert_eq!(live["queues"][0]["queued"], 1);
}
