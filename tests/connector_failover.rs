//! Two `switchboard connector --account` processes for one Telegram account (the fake Bot API
//! in this process), real PostgreSQL and ZooKeeper. One leads; it is killed with SIGKILL in
//! the middle of 500 inbound and 500 outbound messages; the other takes over. At the end every
//! inbound message is stored exactly once and every outbound message was sent; duplicates at
//! the fake (sent by the dead leader, then again by the new one) are counted and reported with
//! the window they came from.

use std::collections::HashMap;
use std::time::Duration;

use connectors::fake::telegram::{FakeTelegram, TgUser};
use schema::domain::{Channel, Queue, RoutingMode};
use schema::store::{self, NewAccount};
use serde_json::json;
use uuid::Uuid;

mod support;
use support::{MAX_IN_FLIGHT, Node, count, leader_of, order_violations, spawn_outbound, wait_for};

const SECRET: &str = "connector-failover-secret-connector-failover";
const TOKEN: &str = "7001002003:AAFailoverTest";
const USERS: u64 = 50;
const INBOUND: usize = 500;
const OUTBOUND: usize = 500;

/// How the leader goes away mid-stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGKILL: requests in flight are in doubt, and sent again by the next leader.
    Kill,
    /// SIGTERM: the leader finishes what it has in flight and commits the outcomes before its
    /// ZooKeeper session and pool close, so nothing is in doubt and nothing is sent twice.
    Term,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_mid_stream_loses_nothing_and_stores_nothing_twice() {
    failover(Stop::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_the_leader_mid_stream_leaves_nothing_in_doubt_and_sends_nothing_twice() {
    failover(Stop::Term).await;
}

async fn failover(stop: Stop) {
    let (db_url, pool) = testenv::database().await;
    let root = format!("/test-{}", Uuid::new_v4().simple());
    let fake = FakeTelegram::start(TOKEN).await;
    // a round trip like the real Bot API's, so requests are in flight when the leader dies
    fake.set_latency(Duration::from_millis(25));
    support::queue_and_alice(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let account = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Telegram,
            name: "failover".into(),
            default_queue: "support".into(),
            credentials: json!({"bot_token": TOKEN}),
            settings: json!({"api_url": fake.api_url(), "poll_timeout_s": 5,
                "limits": {"rate": {"count": 100, "per_ms": 1000}, "rate_per_chat": {"count": 20, "per_ms": 1000}}}),
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

    // each customer writes once; their interactions are then assigned to alice
    let users: Vec<TgUser> = (0..USERS).map(|i| TgUser::new(600_000 + i, &format!("C{i}"))).collect();
    for user in &users {
        fake.text(user, &format!("in {} #0", user.id));
    }
    wait_for("the first messages", Duration::from_secs(30), async || {
        count(&pool, "SELECT count(*) FROM messages").await == USERS as i64
    })
    .await;
    let interactions = support::assign_all_to_alice(&pool).await;

    // the streams: the rest of the inbound messages over about 4 s, the outbound ones queued
    // faster than the 100/s they may go out at, so a backlog waits when the leader dies
    let per_user = INBOUND / USERS as usize;
    let inbound = {
        let fake = fake.clone();
        let users = users.clone();
        tokio::spawn(async move {
            for n in 1..per_user {
                for user in &users {
                    fake.text(user, &format!("in {} #{n}", user.id));
                }
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        })
    };
    let outbound = spawn_outbound(pool.clone(), coord.clone(), account, interactions.clone(), OUTBOUND, 50);

    // mid-stream: SIGKILL the leader
    support::wait_under_way(&pool, 150, Duration::from_secs(30)).await;
    let leader = nodes.remove(leader_index);
    let backup = nodes.remove(0);
    let killed_name = leader.name;
    let mut killed = leader;
    match stop {
        Stop::Kill => killed.process.child.kill().expect("SIGKILL the leader"),
        Stop::Term => {
            let pid = killed.process.pid().to_string();
            let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
            assert!(sent.success(), "SIGTERM the leader");
        }
    }
    let killed_at = fake.elapsed();
    let exited = killed.process.child.wait().unwrap();
    if stop == Stop::Term {
        assert!(exited.success(), "a SIGTERM'd connector exits cleanly: {exited:?}");
    }
    let sent_before = count(&pool, "SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'sent'").await;
    let stored_before = count(&pool, "SELECT count(*) FROM messages WHERE direction = 'in'").await;

    wait_for("the backup leads", Duration::from_secs(20), async || backup.leads(account).await).await;
    let took_over_at = fake.elapsed();
    inbound.await.unwrap();
    outbound.await.unwrap();
    support::wait_all_through(&pool, INBOUND, OUTBOUND, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // inbound: every update stored exactly once
    let distinct =
        count(&pool, "SELECT count(DISTINCT external_message_id) FROM messages WHERE direction = 'in'").await;
    assert_eq!(distinct, INBOUND as i64, "every inbound message stored exactly once");
    let mut returned: HashMap<u32, usize> = HashMap::new();
    for call in fake.calls_of("getUpdates") {
        for id in call.update_ids {
            *returned.entry(id).or_default() += 1;
        }
    }
    let redelivered = returned.values().filter(|n| **n > 1).count();

    // outbound: every message sent; duplicates counted with their times
    let mut sends: HashMap<String, Vec<Duration>> = HashMap::new();
    for call in fake.calls_of("sendMessage").into_iter().filter(|c| c.ok()) {
        sends.entry(call.param("text").as_str().unwrap().to_owned()).or_default().push(call.at);
    }
    assert_eq!(sends.len(), OUTBOUND, "every outbound message reached Telegram");
    let mut duplicates: Vec<(String, Vec<Duration>)> =
        sends.iter().filter(|(_, at)| at.len() > 1).map(|(t, at)| (t.clone(), at.clone())).collect();
    duplicates.sort_by_key(|(_, at)| at[0]);
    let in_doubt = count(&pool, "SELECT count(*) FROM outbox WHERE attempts > 1").await;
    assert_eq!(count(&pool, "SELECT count(*) FROM outbox WHERE state <> 'done'").await, 0);

    // order per chat: the first delivery of each message follows the enqueue order
    let out_of_order = order_violations(sends.iter().map(|(text, at)| (text.as_str(), at[0])));

    println!("failover report ({stop:?}):");
    println!(
        "  leader {killed_name} killed at {killed_at:?} (fake clock) with {sent_before} outbound sent, {stored_before} inbound stored"
    );
    println!("  backup took over after {:?}", took_over_at.saturating_sub(killed_at));
    println!(
        "  inbound: {INBOUND} stored exactly once; {redelivered} updates were delivered to both leaders (absorbed by the unique key)"
    );
    println!(
        "  outbound: {OUTBOUND} sent; {} sent twice; {in_doubt} outbox rows attempted more than once",
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
        assert!(at[0] <= killed_at, "a duplicate's first send came from the dead leader");
        assert!(at[1] >= killed_at, "and its second from the new one");
    }
    assert!(
        duplicates.len() <= MAX_IN_FLIGHT,
        "duplicates are bounded by the requests in flight at the kill ({MAX_IN_FLIGHT})"
    );
    if stop == Stop::Term {
        assert!(duplicates.is_empty(), "a stopping leader sends nothing twice: {duplicates:?}");
        assert_eq!(in_doubt, 0, "a stopping leader leaves no row in doubt");
    }
    assert_eq!(out_of_order, 0, "each chat's messages went out in order");
}

/// `switchboard all` serves every enabled Telegram account (and no disabled one), with the
/// file server it mounts itself: a customer's photo is fetched and stored there.
#[tokio::test]
async fn all_serves_every_enabled_account_with_its_own_file_server() {
    let (db_url, pool) = testenv::database().await;
    let root = format!("/test-{}", Uuid::new_v4().simple());
    let mut conn = pool.acquire().await.unwrap();
    store::upsert_queue(
        &mut conn,
        &Queue { name: "support".into(), routing_mode: RoutingMode::Manual, offer_timeout_ms: 30_000 },
    )
    .await
    .unwrap();
    let mut fakes = Vec::new();
    for (i, enabled) in [true, true, false].into_iter().enumerate() {
        let token = format!("700100200{i}:AAAllTest");
        let fake = FakeTelegram::start(&token).await;
        let id = store::create_account(
            &mut conn,
            &NewAccount {
                channel: Channel::Telegram,
                name: format!("bot {i}"),
                default_queue: "support".into(),
                credentials: json!({"bot_token": token}),
                settings: json!({"api_url": fake.api_url(), "poll_timeout_s": 2}),
            },
        )
        .await
        .unwrap()
        .id;
        if !enabled {
            sqlx::query("UPDATE accounts SET enabled = false WHERE id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        fakes.push((id, enabled, fake));
    }
    drop(conn);
    let files = std::env::temp_dir().join(format!("switchboard-all-files-{}", Uuid::new_v4().simple()));
    let files = files.to_string_lossy().into_owned();
    let node = testenv::Switchboard::start(
        env!("CARGO_BIN_EXE_switchboard"),
        &["all"],
        &[
            ("SWITCHBOARD_DATABASE__URL", &db_url),
            ("SWITCHBOARD_COORD__ROOT", &root),
            ("SWITCHBOARD_JWT__HS256_SECRET", SECRET),
            ("SWITCHBOARD_FILESERVER__ROOT", &files),
        ],
    );

    for (i, (_, _, fake)) in fakes.iter().enumerate() {
        let user = TgUser::new(900 + i as u64, "Olga");
        fake.photo(&user, format!("photo of bot {i}").into_bytes(), Some("чек"));
    }
    wait_for("both enabled accounts' photos stored with their files", Duration::from_secs(30), async || {
        count(&pool, "SELECT count(*) FROM messages m JOIN message_files f ON f.message_id = m.id").await == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (id, enabled, fake) in &fakes {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE account_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(stored, i64::from(*enabled), "account {id}");
        assert_eq!(!fake.calls_of("getUpdates").is_empty(), *enabled, "only enabled accounts are polled");
    }
    let size: i64 =
        sqlx::query_scalar("SELECT size FROM files ORDER BY created_at LIMIT 1").fetch_one(&pool).await.unwrap();
    assert_eq!(size, "photo of bot 0".len() as i64, "the file server of `all` holds the photo");
    drop(node);
    let _ = std::fs::remove_dir_all(files);
}
