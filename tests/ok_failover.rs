//! Two `switchboard connector --account` processes for one OK group in webhook mode, the fake
//! OK API in this process posting to the URL both subscribe (`connectors.public_url`, the route
//! and the token) through a balancer that passes a refusal or a dead process on to the next one
//! (the fake's `set_backends`), real PostgreSQL and ZooKeeper. One leads; it is killed with
//! SIGKILL in the middle of 500 inbound and 500 outbound messages; the other takes over,
//! subscribes again, drains what the dead leader had committed to its inbox, and answers OK's
//! redeliveries. The same again in long-poll mode. At the end every inbound message is stored
//! exactly once and every outbound message reached OK; OK has no idempotency key, so messages
//! delivered twice are counted and printed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use connectors::fake::ok::{FakeOk, OkUser};
use schema::domain::Channel;
use schema::store::{self, NewAccount};
use serde_json::json;
use uuid::Uuid;

mod support;
use support::{MAX_IN_FLIGHT, Node, count, leader_of, order_violations, spawn_outbound, wait_for};

const SECRET: &str = "ok-failover-secret-ok-failover-secret";
const TOKEN: &str = "tkn1.ok-failover-group-token";
const WEBHOOK_TOKEN: &str = "9b1f0c4e7a2d6583b0e9f1a7c3d5e8f20a4c6e8b1d3f5a79";
const PUBLIC_URL: &str = "http://ok-hub.invalid";
const USERS: usize = 50;
const INBOUND: usize = 500;
const OUTBOUND: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_ok_leader_mid_stream_loses_nothing_and_counts_the_duplicates() {
    failover(false).await;
}

/// The same in long-poll mode: the new leader continues from the marker the dead one stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_long_polling_ok_leader_loses_nothing_and_counts_the_duplicates() {
    failover(true).await;
}

async fn failover(long_poll: bool) {
    let (db_url, pool) = testenv::database().await;
    let root = format!("/test-{}", Uuid::new_v4().simple());
    let fake = FakeOk::start(TOKEN).await;
    // a round trip like the real API's, so requests are in flight when the leader dies
    fake.set_latency(Duration::from_millis(25));
    support::queue_and_alice(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let account = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Ok,
            name: "failover".into(),
            default_queue: "support".into(),
            credentials: json!({"access_token": TOKEN, "webhook_token": WEBHOOK_TOKEN}),
            // OK's default 5/s would take 100 s for 500 messages: the account raises it
            settings: json!({"api_url": fake.api_url(), "mode": if long_poll { "long_poll" } else { "webhook" }, "poll_timeout_s": 5,
                "limits": {"rate": {"count": 72, "per_ms": 1000}, "rate_per_chat": {"count": 20, "per_ms": 1000}}}),
        },
    )
    .await
    .unwrap()
    .id;
    drop(conn);
    let coord = support::coordinator(&root).await;

    let mut nodes = vec![
        Node::start(&db_url, &root, account, "a", SECRET, &[("SWITCHBOARD_CONNECTORS__PUBLIC_URL", PUBLIC_URL)]),
        Node::start(&db_url, &root, account, "b", SECRET, &[("SWITCHBOARD_CONNECTORS__PUBLIC_URL", PUBLIC_URL)]),
    ];
    let backends: Vec<SocketAddr> = nodes.iter().map(|n| n.process.addr.parse().unwrap()).collect();
    fake.set_backends(backends);
    let leader_index = leader_of(&nodes, account).await;
    if long_poll {
        wait_for("the long poll", Duration::from_secs(20), async || fake.long_polling()).await;
        // (the first updates call follows the subscription at once)
        tokio::time::sleep(Duration::from_millis(300)).await;
    } else {
        let url = format!("{PUBLIC_URL}/api/v1/connectors/{account}/ok?token={WEBHOOK_TOKEN}");
        wait_for("the webhook subscribed", Duration::from_secs(20), async || fake.webhooks().contains(&url)).await;
    }

    // each customer writes once (which lets the group answer); their interactions are then
    // assigned to alice
    let users: Vec<OkUser> =
        (0..USERS).map(|i| OkUser::new(577_000_000_000 + i as u64, &format!("C{i} Failover"))).collect();
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
    let inbox_at_kill = count(&pool, "SELECT count(*) FROM ok_inbox").await;
    let sent_before = count(&pool, "SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'sent'").await;
    let stored_before = count(&pool, "SELECT count(*) FROM messages WHERE direction = 'in'").await;
    let delivered_before = fake.sent().len();

    wait_for("the backup leads", Duration::from_secs(20), async || backup.leads(account).await).await;
    let took_over_at = fake.elapsed();
    inbound.await.unwrap();
    outbound.await.unwrap();
    support::wait_all_through(&pool, INBOUND, OUTBOUND, Duration::from_secs(120)).await;
    wait_for("every webhook answered 200", Duration::from_secs(30), async || {
        if long_poll {
            return true;
        }
        let deliveries = fake.deliveries();
        let mut last: HashMap<String, u16> = HashMap::new();
        for d in &deliveries {
            last.insert(d.key.clone(), d.status);
        }
        last.len() == INBOUND && last.values().all(|s| *s == 200)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // inbound: every message stored exactly once; nothing left in the inbox
    assert_eq!(count(&pool, "SELECT count(*) FROM messages WHERE direction = 'in'").await, INBOUND as i64);
    let distinct =
        count(&pool, "SELECT count(DISTINCT external_message_id) FROM messages WHERE direction = 'in'").await;
    assert_eq!(distinct, INBOUND as i64, "every inbound message stored exactly once");
    assert_eq!(count(&pool, "SELECT count(*) FROM dead_letters").await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM ok_inbox").await, 0, "the inbox drained");
    let deliveries = fake.deliveries();
    let retried: usize = {
        let mut tries: HashMap<&str, u32> = HashMap::new();
        for d in &deliveries {
            *tries.entry(d.key.as_str()).or_default() += 1;
        }
        tries.values().filter(|n| **n > 1).count()
    };
    let delivered_twice_in = {
        let mut ok: HashMap<&str, u32> = HashMap::new();
        for d in deliveries.iter().filter(|d| d.status == 200) {
            *ok.entry(d.key.as_str()).or_default() += 1;
        }
        ok.values().filter(|n| **n > 1).count()
    };
    let slowest = deliveries.iter().filter(|d| d.status == 200).map(|d| d.took).max().unwrap_or_default();
    let subscribes = fake.calls_of("subscribe").iter().filter(|c| c.ok()).count();
    let handed = fake.handed_out();
    let read_twice = handed.values().filter(|n| **n > 1).count();
    if long_poll {
        assert!(deliveries.is_empty(), "no webhook in long-poll mode");
        assert_eq!(handed.values().filter(|n| **n == 0).count(), 0, "every update was read");
        let marker: Option<String> =
            sqlx::query_scalar("SELECT marker FROM ok_long_poll").fetch_optional(&pool).await.unwrap();
        assert_eq!(marker, Some(fake.marker().to_string()), "the stored marker is past everything");
    }

    // outbound: every message reached OK; OK has no idempotency key, so a send the dead leader
    // had in flight may reach the customer twice
    let mut deliveries_out: HashMap<String, Vec<Duration>> = HashMap::new();
    for sent in fake.sent() {
        deliveries_out.entry(sent.text.clone()).or_default().push(sent.at);
    }
    assert_eq!(deliveries_out.len(), OUTBOUND, "every outbound message reached OK");
    let twice: Vec<(&String, &Vec<Duration>)> = deliveries_out.iter().filter(|(_, at)| at.len() > 1).collect();
    let in_doubt = count(&pool, "SELECT count(*) FROM outbox WHERE attempts > 1").await;
    assert_eq!(count(&pool, "SELECT count(*) FROM outbox WHERE state <> 'done'").await, 0);

    // order per chat: the first deliveries follow the enqueue order
    let out_of_order = order_violations(deliveries_out.iter().map(|(text, at)| (text.as_str(), at[0])));

    println!("ok failover report ({}):", if long_poll { "long poll" } else { "webhooks" });
    println!(
        "  leader {killed_name} killed at {killed_at:?} (fake clock) with {sent_before} outbound stored as sent \
         ({delivered_before} delivered at OK), {stored_before} inbound stored{}",
        if long_poll {
            String::new()
        } else {
            format!(", {inbox_at_kill} webhook deliveries committed to its inbox and not stored yet")
        }
    );
    println!(
        "  backup took over after {:?}; {subscribes} subscriptions made in all",
        took_over_at.saturating_sub(killed_at)
    );
    if long_poll {
        println!(
            "  inbound: {INBOUND} stored exactly once; {read_twice} updates read twice by the long poll (absorbed), \
             0 dead letters"
        );
    } else {
        println!(
            "  inbound: {INBOUND} stored exactly once; {retried} webhooks tried more than once (the dead leader, or \
             the backup's 503 before it led), {delivered_twice_in} answered 200 twice (absorbed by the unique key); \
             slowest 200: {slowest:?}; 0 dead letters"
        );
    }
    println!(
        "  outbound: {OUTBOUND} reached OK, {} delivered twice (no idempotency key on OK); {in_doubt} outbox rows \
         attempted more than once",
        twice.len()
    );
    for (text, at) in &twice {
        println!(
            "    twice: {text:?} first at {:?} ({:?} before the kill), again at {:?} ({:?} after it)",
            at[0],
            killed_at.saturating_sub(at[0]),
            at[1],
            at[1].saturating_sub(killed_at)
        );
    }
    println!("  per-chat order violations: {out_of_order}");
    assert!(slowest < Duration::from_secs(5), "every 200 within OK's 5 s");
    assert!(twice.len() <= MAX_IN_FLIGHT, "duplicates are bounded by the requests in flight at the kill");
    for (_, at) in &twice {
        assert!(at[0] <= killed_at + Duration::from_millis(100), "a duplicate's first send came from the dead leader");
        assert!(at[1] >= killed_at, "and its repeat from the new one");
    }
    assert_eq!(out_of_order, 0, "each chat's messages went out in order");
}
