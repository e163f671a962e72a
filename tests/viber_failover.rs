//! Two `switchboard connector --account` processes for one Viber account, behind a small load
//! balancer (the URL registered with `set_webhook`; it passes a callback to the next process
//! when one answers 503 or is gone, as `proxy_next_upstream` does), the fake Viber API in this
//! process, real PostgreSQL and ZooKeeper. One leads; it is killed with SIGKILL in the middle of
//! 300 inbound and 300 outbound messages; the other takes over and registers the webhook again.
//! At the end every inbound message is stored exactly once and every outbound message reached
//! Viber; duplicates at the fake (Viber has no idempotency key) are counted and reported.

use std::collections::HashMap;
use std::time::Duration;

use connectors::fake::viber::{FakeViber, ViberUser};
use schema::domain::Channel;
use schema::store::{self, NewAccount};
use serde_json::json;
use uuid::Uuid;

mod support;
use support::{MAX_IN_FLIGHT, Node, count, leader_of, order_violations, spawn_outbound, start_balancer, wait_for};

const SECRET: &str = "viber-failover-secret-viber-failover-secret";
const TOKEN: &str = "4f3ac5d1e9b8a7c6-viber-failover-7f6a5b4c3d2e1f0a";
const USERS: usize = 30;
const INBOUND: usize = 300;
const OUTBOUND: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_viber_leader_mid_stream_loses_nothing_and_stores_nothing_twice() {
    let (db_url, pool) = testenv::database().await;
    let root = format!("/test-{}", Uuid::new_v4().simple());
    let fake = FakeViber::start(TOKEN).await;
    // a round trip like the real API's, so requests are in flight when the leader dies; and
    // Viber's patience with a webhook that does not answer 200
    fake.set_latency(Duration::from_millis(25));
    fake.set_redelivery(500, Duration::from_millis(20));
    support::queue_and_alice(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let account = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Viber,
            name: "failover".into(),
            default_queue: "support".into(),
            credentials: json!({"auth_token": TOKEN}),
            settings: json!({"api_url": fake.api_url(),
                "limits": {"rate": {"count": 100, "per_ms": 1000}, "rate_per_chat": {"count": 20, "per_ms": 1000}}}),
        },
    )
    .await
    .unwrap()
    .id;
    drop(conn);
    let coord = support::coordinator(&root).await;

    let (front, backends) = start_balancer(&["content-type", "x-viber-content-signature"]).await;
    let webhook_url = format!("{front}/api/v1/connectors/{account}/viber");
    sqlx::query("UPDATE accounts SET settings = settings || jsonb_build_object('webhook_url', $1::text)")
        .bind(&webhook_url)
        .execute(&pool)
        .await
        .unwrap();
    let mut nodes = vec![
        Node::start(&db_url, &root, account, "a", SECRET, &[]),
        Node::start(&db_url, &root, account, "b", SECRET, &[]),
    ];
    backends.write().unwrap().extend(nodes.iter().map(|n| n.http.clone()));
    let leader_index = leader_of(&nodes, account).await;
    wait_for("the webhook registered through the balancer", Duration::from_secs(30), async || {
        fake.webhook().is_some_and(|w| w.url == webhook_url)
    })
    .await;
    let registered_before = fake.calls_of("set_webhook").iter().filter(|c| c.ok()).count();

    // each customer writes once; their interactions are then assigned to alice
    let users: Vec<ViberUser> =
        (0..USERS).map(|i| ViberUser::new(&format!("u{i:03}viberFailover00000=="), &format!("C{i}"))).collect();
    for user in &users {
        fake.text(user, &format!("in {} #0", user.id));
    }
    wait_for("the first messages", Duration::from_secs(30), async || {
        count(&pool, "SELECT count(*) FROM messages").await == USERS as i64
    })
    .await;
    let interactions = support::assign_all_to_alice(&pool).await;

    // the streams: the rest of the inbound messages over about 7 s, the outbound ones queued
    // faster than the 100/s they may go out at, so a backlog waits when the leader dies
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
    support::wait_under_way(&pool, 100, Duration::from_secs(30)).await;
    let leader = nodes.remove(leader_index);
    let backup = nodes.remove(0);
    let killed_name = leader.name;
    let mut killed = leader;
    killed.kill();
    let killed_at = fake.elapsed();
    let sent_before = count(&pool, "SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'sent'").await;
    let stored_before = count(&pool, "SELECT count(*) FROM messages WHERE direction = 'in'").await;

    wait_for("the backup leads", Duration::from_secs(20), async || backup.leads(account).await).await;
    let took_over_at = fake.elapsed();
    inbound.await.unwrap();
    outbound.await.unwrap();
    support::wait_all_through(&pool, INBOUND, OUTBOUND, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // the new leader registered the webhook again
    let registrations = fake.calls_of("set_webhook").iter().filter(|c| c.ok()).count();
    assert!(registrations > registered_before, "the new leader calls set_webhook");

    // inbound: every callback stored exactly once
    assert_eq!(count(&pool, "SELECT count(*) FROM messages WHERE direction = 'in'").await, INBOUND as i64);
    let distinct =
        count(&pool, "SELECT count(DISTINCT external_message_id) FROM messages WHERE direction = 'in'").await;
    assert_eq!(distinct, INBOUND as i64, "every inbound message stored exactly once");
    let mut tries: HashMap<u64, Vec<u16>> = HashMap::new();
    for d in fake.deliveries().into_iter().filter(|d| d.event == "message") {
        tries.entry(d.message_token.unwrap()).or_default().push(d.status);
    }
    assert_eq!(tries.len(), INBOUND);
    assert!(tries.values().all(|s| s.last() == Some(&200)), "every callback ended with a 200");
    let retried = tries.values().filter(|s| s.len() > 1).count();
    let failed_tries: usize = tries.values().map(|s| s.len() - 1).sum();
    let dead_letters = count(&pool, "SELECT count(*) FROM dead_letters").await;
    assert_eq!(dead_letters, 0);

    // outbound: every message reached Viber; duplicates counted with their times
    let mut sends: HashMap<String, Vec<Duration>> = HashMap::new();
    for sent in fake.sent() {
        sends.entry(sent.body["text"].as_str().unwrap().to_owned()).or_default().push(sent.at);
    }
    assert_eq!(sends.len(), OUTBOUND, "every outbound message reached Viber");
    let mut duplicates: Vec<(String, Vec<Duration>)> =
        sends.iter().filter(|(_, at)| at.len() > 1).map(|(t, at)| (t.clone(), at.clone())).collect();
    duplicates.sort_by_key(|(_, at)| at[0]);
    let in_doubt = count(&pool, "SELECT count(*) FROM outbox WHERE attempts > 1").await;
    assert_eq!(count(&pool, "SELECT count(*) FROM outbox WHERE state <> 'done'").await, 0);
    // the platform id recorded for each outbound message is one Viber answered
    let tokens: Vec<String> = sqlx::query_scalar("SELECT external_message_id FROM messages WHERE direction = 'out'")
        .fetch_all(&pool)
        .await
        .unwrap();
    let known: std::collections::HashSet<String> = fake.sent().iter().map(|s| s.token.to_string()).collect();
    assert!(tokens.iter().all(|t| known.contains(t)), "every stored message token is Viber's, exact");

    // order per chat: the first delivery of each message follows the enqueue order
    let out_of_order = order_violations(sends.iter().map(|(text, at)| (text.as_str(), at[0])));

    println!("viber failover report:");
    println!(
        "  leader {killed_name} killed at {killed_at:?} (fake clock) with {sent_before} outbound sent, {stored_before} inbound stored"
    );
    println!("  backup took over after {:?}", took_over_at.saturating_sub(killed_at));
    println!("  set_webhook accepted {registrations} times (before the kill: {registered_before})");
    println!(
        "  inbound: {INBOUND} stored exactly once; {retried} callbacks needed more than one try ({failed_tries} tries not answered 200), 0 dead letters"
    );
    println!(
        "  outbound: {OUTBOUND} reached Viber; {} sent twice; {in_doubt} outbox rows attempted more than once",
        duplicates.len()
    );
    for (text, at) in &duplicates {
        println!(
            "    duplicate {text:?}: first at {:?} ({:?} before the kill), again at {:?} ({:?} after it)",
            at[0],
            killed_at.saturating_sub(at[0]),
            at[1],
            at[1].saturating_sub(killed_at)
        );
    }
    println!("  per-chat order violations among first deliveries: {out_of_order}");
    for (_, at) in &duplicates {
        // (a request the dead leader wrote just before it died may be read by the fake a moment
        // after the kill returned)
        assert!(at[0] <= killed_at + Duration::from_millis(100), "a duplicate's first send came from the dead leader");
        assert!(at[1] >= killed_at, "and its second from the new one");
    }
    assert!(
        duplicates.len() <= MAX_IN_FLIGHT,
        "duplicates are bounded by the requests in flight at the kill ({MAX_IN_FLIGHT})"
    );
    assert_eq!(out_of_order, 0, "each chat's messages went out in order");
}
