//! Two `switchboard connector --account` processes for one VK community (Bots Long Poll), the
//! fake VK API in this process, real PostgreSQL and ZooKeeper. One leads; it is killed with
//! SIGKILL in the middle of 500 inbound and 500 outbound messages; the other takes over and
//! continues the long poll from the position stored in PostgreSQL. At the end every inbound
//! message is stored exactly once, and the fake counts every outbound message **delivered
//! exactly once**: a send the dead leader had in flight is sent again by the new one with the
//! same `random_id` (derived from the outbox row and part), and VK drops the repeat.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connectors::fake::vk::{FakeVk, VkUser};
use coord::{Coordinator, ZkConfig, ZkCoordinator};
use schema::domain::{Channel, Queue, RoutingMode};
use schema::store::{self, AgentProfile, NewAccount, OutboundMessage};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

const SECRET: &str = "vk-failover-secret-vk-failover-secret";
const TOKEN: &str = "vk1.a.vk-failover-community-token";
const GROUP: i64 = 231_000_555;
const USERS: usize = 50;
const INBOUND: usize = 500;
const OUTBOUND: usize = 500;
const MAX_IN_FLIGHT: usize = 8;

struct Node {
    name: &'static str,
    process: testenv::Switchboard,
    http: String,
}

fn start_node(db_url: &str, root: &str, account: Uuid, name: &'static str) -> Node {
    let account = account.to_string();
    let in_flight = MAX_IN_FLIGHT.to_string();
    let process = testenv::Switchboard::start(
        env!("CARGO_BIN_EXE_switchboard"),
        &["connector", "--account", &account],
        &[
            ("SWITCHBOARD_DATABASE__URL", db_url),
            ("SWITCHBOARD_COORD__ROOT", root),
            ("SWITCHBOARD_COORD__SESSION_TIMEOUT_MS", "2000"),
            ("SWITCHBOARD_JWT__HS256_SECRET", SECRET),
            ("SWITCHBOARD_CONNECTORS__NODE_ID", name),
            ("SWITCHBOARD_CONNECTORS__MAX_IN_FLIGHT", &in_flight),
        ],
    );
    let http = format!("http://{}", process.addr);
    Node { name, process, http }
}

/// Whether `node` leads the account, from its `/metrics`.
async fn leads(node: &Node, account: Uuid) -> bool {
    let Ok(response) = reqwest::get(format!("{}/metrics", node.http)).await else { return false };
    let text = response.text().await.unwrap_or_default();
    text.lines().any(|l| l == format!("switchboard_connector_leader{{account=\"{account}\"}} 1"))
}

/// A counter of `node`'s `/metrics` summed over its labels.
async fn metric(node: &Node, name: &str) -> f64 {
    let Ok(response) = reqwest::get(format!("{}/metrics", node.http)).await else { return 0.0 };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn wait_for(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_vk_leader_mid_stream_delivers_every_message_exactly_once() {
    let (db_url, pool) = testenv::database().await;
    let root = format!("/test-{}", Uuid::new_v4().simple());
    let fake = FakeVk::start(TOKEN, GROUP).await;
    // a round trip like the real API's, so requests are in flight when the leader dies
    fake.set_latency(Duration::from_millis(25));
    let mut conn = pool.acquire().await.unwrap();
    store::upsert_queue(
        &mut conn,
        &Queue { name: "support".into(), routing_mode: RoutingMode::Manual, offer_timeout_ms: 30_000 },
    )
    .await
    .unwrap();
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
    store::upsert_agent(
        &mut conn,
        &AgentProfile {
            login: "alice".into(),
            name: "Alice".into(),
            roles: vec!["agent".into()],
            queues: vec!["support".into()],
            max_interactions: 100,
        },
    )
    .await
    .unwrap();
    drop(conn);
    let coord: Arc<dyn Coordinator> = Arc::new(
        ZkCoordinator::start(ZkConfig {
            connect: testenv::zookeeper(),
            root: root.clone(),
            session_timeout: Duration::from_secs(4),
        })
        .await
        .unwrap(),
    );

    let a = start_node(&db_url, &root, account, "a");
    let b = start_node(&db_url, &root, account, "b");
    let mut nodes = vec![a, b];
    wait_for("a leader", Duration::from_secs(20), async || {
        leads(&nodes[0], account).await || leads(&nodes[1], account).await
    })
    .await;
    let leader_index = if leads(&nodes[0], account).await { 0 } else { 1 };
    assert!(!leads(&nodes[1 - leader_index], account).await, "exactly one leader");
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
    sqlx::query("UPDATE interactions SET state = 'assigned', agent = 'alice'").execute(&pool).await.unwrap();
    let interactions: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, chat_id FROM interactions ORDER BY chat_id").fetch_all(&pool).await.unwrap();

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
    let outbound = {
        let pool = pool.clone();
        let coord = coord.clone();
        let interactions = interactions.clone();
        tokio::spawn(async move {
            for n in 0..OUTBOUND {
                let (interaction_id, chat) = &interactions[n % interactions.len()];
                let mut tx = pool.begin().await.unwrap();
                store::enqueue_outbound(
                    &mut tx,
                    &OutboundMessage {
                        interaction_id: *interaction_id,
                        agent_login: "alice".into(),
                        agent_name: "Alice".into(),
                        client_msg_id: format!("out-{n}"),
                        text: Some(format!("out {chat} #{n}")),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
                tx.commit().await.unwrap();
                coord.notify(&schema::topics::account(account));
                if n % 30 == 29 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
    };

    // mid-stream: SIGKILL the leader
    wait_for("the streams under way", Duration::from_secs(60), async || {
        count(&pool, "SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'sent'").await >= 150
            && count(&pool, "SELECT count(*) FROM messages WHERE direction = 'in'").await >= 150
    })
    .await;
    let leader = nodes.remove(leader_index);
    let backup = nodes.remove(0);
    let killed_name = leader.name;
    let mut killed = leader;
    killed.process.child.kill().expect("SIGKILL the leader");
    killed.process.child.wait().unwrap();
    let killed_at = fake.elapsed();
    let sent_before = count(&pool, "SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'sent'").await;
    let stored_before = count(&pool, "SELECT count(*) FROM messages WHERE direction = 'in'").await;
    let delivered_before = fake.sent().len();

    wait_for("the backup leads", Duration::from_secs(20), async || leads(&backup, account).await).await;
    let took_over_at = fake.elapsed();
    inbound.await.unwrap();
    outbound.await.unwrap();
    wait_for("every message through", Duration::from_secs(120), async || {
        count(&pool, "SELECT count(*) FROM messages WHERE direction = 'in'").await == INBOUND as i64
            && count(&pool, "SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'sent'").await
                == OUTBOUND as i64
    })
    .await;
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
    let mut by_chat: HashMap<String, Vec<(Duration, usize)>> = HashMap::new();
    for (text, at) in &deliveries {
        let mut parts = text.split_whitespace().skip(1);
        let chat = parts.next().unwrap().to_owned();
        let n: usize = parts.next().unwrap().trim_start_matches('#').parse().unwrap();
        by_chat.entry(chat).or_default().push((at[0], n));
    }
    let mut out_of_order = 0;
    for sent in by_chat.values_mut() {
        sent.sort();
        out_of_order += sent.windows(2).filter(|w| w[0].1 > w[1].1).count();
    }
    let rate_limited = metric(&backup, "switchboard_vk_rate_limited_total").await.max(0.0) as u64;

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
