//! Two `switchboard connector --account` processes for one VK community (Bots Long Poll), the
//! fake VK API in this process, real PostgreSQL and ZooKeeper. One leads; it is killed with
//! SIGKILL in the middle of 500 inbound and 500 outbound messages; the other takes over and
//! continues the long poll from the position stored in PostgreSQL. At the end every inbound
//! message is stored exactly once, and the fake counts every outbound message **delivered
//! exactly once**: a send the dead leader had in flight is sent again by the new one with the
//! same `random_id` (derived from the outbox row and part), and VK drops the repeat.

use std::collections::HashMap;
use std::time::Duration;

use connectors::fake::vk::{FakeVk, VkUser};
use schema::domain::Channel;
use schema::store::{self, NewAccount};
use serde_json::json;
use uuid::Uuid;

mod support;
use support::{MAX_IN_FLIGHT, Node, count, leader_of, order_violations, spawn_outbound, wait_for};

const SECRET: &str = "vk-failover-secret-vk-failover-secret";
const TOKEN: &str = "vk1.a.vk-failover-community-token";
const GROUP: i64 = 231_000_555;
const USERS: usize = 50;
const INBOUND: usize = 500;
const OUTBOUND: usize = 500;
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_vk_leader_mid_stream_delivers_every_message_exactly_once() {
    let (db_url, pool) = testenv::database().await;
    let root = format!("/test-{}", Uuid::new_v4().simple());
    let fake = FakeVk::start(TOKEN, GROUP).await;
    // a round trip like the real API's, so requests are in flight when the leader dies
    fake.set_latency(Duration::from_millis(25));
    support::queue_and_alice(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let account = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Vk,
            name: "failover".into(),
            default_queue: "support".into(),
            credentials: json!({"access_token": TOKEN}),
            settings: json!({"api_url": fake.api_url(), "group_id": GROUP, "wait_s": 5,
                "limits": {"rate": {"count": 72, "per_ms": 1000}, "rate_per_chat": {"count": 20, "per_ms": 1000}}}),
        },
    )
    .await
    .unwrap()
    .id;
    drop(conn);
    let coord = support::coordinator(&root).await;

    let mut nodes = vec![
        Node::start(&db_url, &root, account, "a", SECRET, &[]),
        Node::start(&db_url, &root, account, "b", SECRET, &[]),
    ];
    let leader_index = leader_of(&nodes, account).await;
    wait_for("the long poll", Duration::from_secs(20), async || {
        fake.calls_of("groups.getLongPollServer").iter().any(|c| c.ok())
    })
    .await;

    // each customer writes once (which lets the community answer); their interactions are then
    // assigned to alice
    let users: Vec<VkUser> =
        (0..USERS).map(|i| VkUser::new(7_700_000 + i as i64, &format!("C{i}"), "Failover")).collect();
    for user in &users {
        fake.text(user, &format!("in {} #0", user.id));
    }
    wait_for("the first messages", Duration::from_secs(30), async || {
        count(&pool, "SELECT count(*) FROM messages").await == USERS as i64
    })
    .await;
    let interactions = support::assign_all_to_alice(&pool).await;

    // the streams: the rest of the inbound messages over about 7 s, the outbound ones queued
    // faster than the 72/s they may go out at, so a backlog waits when the leader dies
    let per_user = INBOUND / USERS;
    let inbound = {
        let fake = fake.clone();
        let users = users.clone();
        tokio::spawn(async move {
            for n in 1..per_user {
                for user in &users {
                    fake.text(user, &format!("in {} #{n}", user.id));
                }
                tokio::time::sleep(Duration::from_millis(800)).await;
            }
        })
    };
    let outbound = spawn_outbound(pool.clone(), coord.clone(), account, interactions.clone(), OUTBOUND, 30);

    // mid-stream: SIGKILL the leader
    support::wait_under_way(&pool, 150, Duration::from_secs(60)).await;
    let leader = nodes.remove(leader_index);
    let backup = nodes.remove(0);
    let killed_name = leader.name;
    let mut killed = leader;
    killed.kill();
    let killed_at = fake.elapsed();
    let sent_before = count(&pool, "SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'sent'").await;
    let stored_before = count(&pool, "SELECT count(*) FROM messages WHERE direction = 'in'").await;
    let delivered_before = fake.sent().len();

    wait_for("the backup leads", Duration::from_secs(20), async || backup.leads(account).await).await;
    let took_over_at = fake.elapsed();
    inbound.await.unwrap();
    outbound.await.unwrap();
    support::wait_all_through(&pool, INBOUND, OUTBOUND, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // inbound: every message stored exactly once; the long poll continued where the old leader
    // had stored its position
    assert_eq!(count(&pool, "SELECT count(*) FROM messages WHERE direction = 'in'").await, INBOUND as i64);
    let distinct =
        count(&pool, "SELECT count(DISTINCT external_message_id) FROM messages WHERE direction = 'in'").await;
    assert_eq!(distinct, INBOUND as i64, "every inbound message stored exactly once");
    assert_eq!(count(&pool, "SELECT count(*) FROM dead_letters").await, 0);
    let handed = fake.handed_out();
    let read_twice = handed.values().filter(|n| **n > 1).count();
    let never_read = handed.values().filter(|n| **n == 0).count();
    assert_eq!(never_read, 0, "every update was read");
    let servers = fake.calls_of("groups.getLongPollServer").iter().filter(|c| c.ok()).count();
    let position: Option<String> =
        sqlx::query_scalar("SELECT ts FROM vk_long_poll").fetch_optional(&pool).await.unwrap();
    assert_eq!(position, Some(fake.ts().to_string()), "the stored position is past everything");

    // outbound: every message delivered exactly once at VK
    let mut deliveries: HashMap<String, Vec<Duration>> = HashMap::new();
    for sent in fake.sent() {
        deliveries.entry(sent.text.clone()).or_default().push(sent.at);
    }
    assert_eq!(deliveries.len(), OUTBOUND, "every outbound message reached VK");
    let delivered_twice = deliveries.values().filter(|at| at.len() > 1).count();
    let absorbed = fake.deduplicated();
    let in_doubt = count(&pool, "SELECT count(*) FROM outbox WHERE attempts > 1").await;
    assert_eq!(count(&pool, "SELECT count(*) FROM outbox WHERE state <> 'done'").await, 0);
    // the id stored for each message is the one VK gave the (single) delivery
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT text, external_message_id FROM messages WHERE direction = 'out' ORDER BY created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    let by_text: HashMap<String, i64> = fake.sent().into_iter().map(|s| (s.text, s.id)).collect();
    assert!(
        stored.iter().all(|(text, id)| by_text.get(text).map(|v| v.to_string()).as_deref() == Some(id.as_str())),
        "every stored platform id is the one VK gave its delivery"
    );

    // order per chat: the deliveries follow the enqueue order
    let out_of_order = order_violations(deliveries.iter().map(|(text, at)| (text.as_str(), at[0])));
    let rate_limited = backup.metric("switchboard_vk_rate_limited_total").await.max(0.0) as u64;

    println!("vk failover report:");
    println!(
        "  leader {killed_name} killed at {killed_at:?} (fake clock) with {sent_before} outbound stored as sent \
         ({delivered_before} delivered at VK), {stored_before} inbound stored"
    );
    println!("  backup took over after {:?}", took_over_at.saturating_sub(killed_at));
    println!(
        "  inbound: {INBOUND} stored exactly once; {read_twice} updates read twice by the long poll (absorbed), \
         {servers} long-poll servers asked for, 0 dead letters"
    );
    println!(
        "  outbound: {OUTBOUND} delivered at VK, {delivered_twice} delivered twice; {} repeats absorbed by random_id; \
         {in_doubt} outbox rows attempted more than once",
        absorbed.len()
    );
    for d in &absorbed {
        let first = fake.message(d.id).map(|m| m.at).unwrap_or_default();
        println!(
            "    absorbed: message {} (random_id {}) first sent at {first:?} ({:?} before the kill), repeated at {:?} ({:?} after it)",
            d.id,
            d.random_id,
            killed_at.saturating_sub(first),
            d.at,
            d.at.saturating_sub(killed_at)
        );
    }
    println!("  per-chat order violations: {out_of_order}; rate-limit answers on the new leader: {rate_limited}");
    assert_eq!(delivered_twice, 0, "VK delivered no message twice");
    for d in &absorbed {
        let first = fake.message(d.id).map(|m| m.at).unwrap_or_default();
        assert!(
            first <= killed_at + Duration::from_millis(100),
            "an absorbed repeat's first send came from the dead leader"
        );
        assert!(d.at >= killed_at, "and its repeat from the new one");
    }
    assert!(absorbed.len() <= MAX_IN_FLIGHT, "repeats are bounded by the requests in flight at the kill");
    assert_eq!(out_of_order, 0, "each chat's messages went out in order");
}
