//! Throughput of the Telegram connector, end to end on this machine (real PostgreSQL and
//! ZooKeeper, the real chatserver, the fake Bot API):
//!
//! - inbound: customer messages/s from the fake's `getUpdates` to the agent's WebSocket
//!   (`message.new` received);
//! - outbound: messages/s from the outbox to the fake (`sendMessage` answered and `sent`
//!   stored) when no rate limit applies.
//!
//! From the repository root:
//! `eval "$(deploy/services.sh env)" && cargo bench -p connectors --bench telegram`
//! (`BENCH_MESSAGES=5000` for a longer run).

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use connectors::fake::telegram::TgUser;
use schema::store::{self, OutboundMessage};
use serde_json::json;

const USERS: u64 = 100;

fn messages() -> usize {
    std::env::var("BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

async fn inbound() -> f64 {
    let hub = harness::spawn_hub(json!({})).await;
    let mut alice = hub.ready_agent("alice").await;
    let _connector = hub.start_connector(connectors::Config::default()).await;
    let users: Vec<TgUser> = (0..USERS).map(|i| TgUser::new(700_000 + i, &format!("C{i}"))).collect();
    for user in &users {
        hub.fake.text(user, "hello");
    }
    harness::eventually("first messages", Duration::from_secs(60), || async {
        hub.count("SELECT count(*) FROM messages").await == USERS as i64
    })
    .await;
    // every chat is the agent's, so every later message is pushed to her socket
    sqlx::query("UPDATE interactions SET state = 'assigned', agent = 'alice'").execute(&hub.pool).await.unwrap();
    alice.settle(Duration::from_millis(500)).await;
    alice.take_events();

    let total = messages();
    let started = Instant::now();
    for n in 0..total {
        let user = &users[n % users.len()];
        hub.fake.text(user, &format!("m{n}"));
    }
    let mut received = 0;
    while received < total {
        alice.event_where("message.new", |d| d["message"]["direction"] == "in").await;
        received += 1;
    }
    let elapsed = started.elapsed();
    let rate = total as f64 / elapsed.as_secs_f64();
    println!("inbound:  {total} messages from the fake to the agent socket in {elapsed:.2?}: {rate:.0} messages/s");
    rate
}

async fn outbound(max_in_flight: usize) -> f64 {
    let hub = harness::spawn_hub(json!({"limits": {
        "rate": {"count": 1_000_000, "per_ms": 1000},
        "rate_per_chat": {"count": 1_000_000, "per_ms": 1000}}}))
    .await;
    let connector = hub.start_connector(connectors::Config::default()).await;
    let users: Vec<TgUser> = (0..USERS).map(|i| TgUser::new(800_000 + i, &format!("C{i}"))).collect();
    for user in &users {
        hub.fake.text(user, "hello");
    }
    harness::eventually("first messages", Duration::from_secs(60), || async {
        hub.count("SELECT count(*) FROM messages").await == USERS as i64
    })
    .await;
    connector.stop().await;
    // the outbox filled while no connector runs; then one starts and drains it
    let mut conn = hub.pool.acquire().await.unwrap();
    store::upsert_agent(
        &mut conn,
        &store::AgentProfile {
            login: "alice".into(),
            name: "Alice".into(),
            roles: vec!["agent".into()],
            queues: vec!["support".into()],
            max_interactions: 1000,
        },
    )
    .await
    .unwrap();
    sqlx::query("UPDATE interactions SET state = 'assigned', agent = 'alice'").execute(&mut *conn).await.unwrap();
    let interactions: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM interactions").fetch_all(&mut *conn).await.unwrap();
    drop(conn);
    let total = messages();
    for n in 0..total {
        let mut tx = hub.pool.begin().await.unwrap();
        store::enqueue_outbound(
            &mut tx,
            &OutboundMessage {
                interaction_id: interactions[n % interactions.len()],
                agent_login: "alice".into(),
                agent_name: "Alice".into(),
                client_msg_id: format!("b{n}"),
                text: Some(format!("reply {n}")),
                file_ids: vec![],
                keyboard: None,
                reply_to: None,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let started = Instant::now();
    let _connector = hub.start_connector(connectors::Config { max_in_flight, ..Default::default() }).await;
    harness::eventually("all sent", Duration::from_secs(600), || async {
        hub.count("SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'sent'").await == total as i64
    })
    .await;
    let elapsed = started.elapsed();
    let sends: Vec<Duration> = hub.fake.calls_of("sendMessage").iter().filter(|c| c.ok()).map(|c| c.at).collect();
    assert_eq!(sends.len(), total);
    let at_fake = *sends.last().unwrap() - sends[0];
    let rate = total as f64 / elapsed.as_secs_f64();
    println!(
        "outbound: {total} messages, no rate limit, {max_in_flight} in flight: all `sent` in {elapsed:.2?} \
         (connector start included): {rate:.0} messages/s; first to last request at the fake {at_fake:.2?}: {:.0}/s",
        total as f64 / at_fake.as_secs_f64()
    );
    rate
}

#[tokio::main]
async fn main() {
    // `cargo test --benches` runs benchmarks with --bench absent: only build them then
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    inbound().await;
    outbound(8).await;
    outbound(32).await;
}
