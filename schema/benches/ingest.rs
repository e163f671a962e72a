//! Inbound-message inserts per second into PostgreSQL through `store::ingest_inbound` (the whole
//! transaction a connector runs per message), then through `store::ingest_batch` (what the
//! connector's batching task runs: pages of 100 messages from 100 chats, each interaction
//! assigned to one of 4 agents, so every message is also appended to an agent's stream), with
//! the CPU the PostgreSQL backend spent per message (read from `/proc/<backend pid>/stat`, so
//! PostgreSQL must run on this machine) and the WAL it wrote per message. Printed, not asserted.
//!
//! Run with the local services up: `eval "$(deploy/services.sh env)"; cargo bench -p schema --bench ingest`
//! (`INGEST_BENCH=batch` for the second part only). PostgreSQL's CPU does not depend on how this
//! benchmark was compiled: `cargo bench --workspace --bench ingest --profile dev` reuses a debug build.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use schema::domain::{Channel, MessageKind, Queue, RoutingMode};
use schema::store::{self, InboundMessage, NewAccount, Sender};
use sqlx::Connection;

const WRITERS: usize = 8;
const CUSTOMERS: usize = 500;
const RUN_FOR: Duration = Duration::from_secs(8);

#[tokio::main]
async fn main() {
    let (_url, pool) = testenv::database().await;
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
            name: "bench".into(),
            default_queue: "support".into(),
            credentials: serde_json::json!({}),
            settings: serde_json::json!({}),
        },
    )
    .await
    .unwrap();
    drop(conn);
    if std::env::var("INGEST_BENCH").as_deref() == Ok("batch") {
        batches(&pool, account.id).await;
        return;
    }

    let count = Arc::new(AtomicU64::new(0));
    let mut latencies = Vec::new();
    let start = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (pool, count) = (pool.clone(), count.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut n = 0usize;
                while start.elapsed() < RUN_FOR {
                    let customer = (w + n * WRITERS) % CUSTOMERS;
                    let msg = InboundMessage {
                        account_id: account.id,
                        external_message_id: format!("{w}:{n}"),
                        chat_id: customer.to_string(),
                        sender: Sender {
                            external_id: customer.to_string(),
                            name: format!("c{customer}"),
                            ..Default::default()
                        },
                        kind: MessageKind::Text,
                        text: Some("Where is my order?".into()),
                        file_ids: vec![],
                        location: None,
                        contact: None,
                        reply_to_external_id: None,
                        forwarded: None,
                        sent_at: None,
                        sticker_id: None,
                    };
                    let t = Instant::now();
                    let mut tx = pool.begin().await.unwrap();
                    if store::ingest_inbound(&mut tx, &msg, Duration::from_secs(3600)).await.is_ok() {
                        tx.commit().await.unwrap();
                        count.fetch_add(1, Ordering::Relaxed);
                        lat.push(t.elapsed());
                    }
                    n += 1;
                }
                lat
            })
        })
        .collect();
    for w in writers {
        latencies.extend(w.await.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "postgres ingest_inbound: {:.0} messages/s with {WRITERS} writers over {CUSTOMERS} customers \
         (transaction p50 {:.2?}, p99 {:.2?}, {} messages)",
        count.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
        p(0.5),
        p(0.99),
        latencies.len()
    );

    batches(&pool, account.id).await;
}

const BATCH: usize = 100;
const BATCH_ROUNDS: usize = 200;

/// `BATCH_ROUNDS` batches of `BATCH` messages, one per chat, through `ingest_batch` on one
/// connection (as the connector's batching task does), after a warm-up round that opens the
/// interactions and assigns them to 4 agents.
async fn batches(pool: &sqlx::PgPool, account: uuid::Uuid) {
    let mut conn = pool.acquire().await.unwrap();
    for a in 0..4 {
        store::upsert_agent(
            &mut conn,
            &store::AgentProfile {
                login: format!("agent{a}"),
                name: format!("Agent {a}"),
                roles: vec!["agent".into()],
                queues: vec!["support".into()],
                max_interactions: 1000,
            },
        )
        .await
        .unwrap();
    }
    let batch_of = |round: usize| -> Vec<InboundMessage> {
        (0..BATCH)
            .map(|chat| InboundMessage {
                account_id: account,
                external_message_id: format!("b{round}:{chat}"),
                chat_id: format!("chat{chat}"),
                sender: Sender {
                    external_id: format!("chat{chat}"),
                    name: format!("Customer {chat}"),
                    ..Default::default()
                },
                kind: MessageKind::Text,
                text: Some(format!("Где мой заказ номер {round}-{chat}?")),
                file_ids: vec![],
                location: None,
                contact: None,
                reply_to_external_id: None,
                forwarded: None,
                sent_at: None,
                sticker_id: None,
            })
            .collect()
    };
    let mut tx = conn.begin().await.unwrap();
    store::ingest_batch(&mut tx, account, &batch_of(0), Duration::from_secs(3600)).await.unwrap();
    sqlx::query(
        "UPDATE interactions SET agent = 'agent' || (abs(hashtext(id::text)) % 4), state = 'assigned'
         WHERE account_id = $1 AND state <> 'closed'",
    )
    .bind(account)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *conn).await.unwrap();
    let wal_before = wal(&mut conn).await;
    let cpu_before = backend_cpu(backend);
    let start = Instant::now();
    for round in 1..=BATCH_ROUNDS {
        let batch = batch_of(round);
        let mut tx = conn.begin().await.unwrap();
        let stored = store::ingest_batch(&mut tx, account, &batch, Duration::from_secs(3600)).await.unwrap();
        assert!(stored.iter().all(|s| matches!(s, store::Ingested::Stored { audience, .. } if audience.len() == 1)));
        tx.commit().await.unwrap();
    }
    let elapsed = start.elapsed();
    let cpu = backend_cpu(backend) - cpu_before;
    let wal_bytes = wal(&mut conn).await - wal_before;
    let messages = (BATCH * BATCH_ROUNDS) as f64;
    println!(
        "postgres ingest_batch: {:.0} messages/s in batches of {BATCH} (one writer, every message to one of 4 agents); \
         PostgreSQL backend CPU {:.3} ms per message, WAL {:.0} bytes per message ({} messages)",
        messages / elapsed.as_secs_f64(),
        cpu.as_secs_f64() * 1000.0 / messages,
        wal_bytes as f64 / messages,
        messages
    );
}

/// Where PostgreSQL's write-ahead log is, in bytes.
async fn wal(conn: &mut sqlx::PgConnection) -> u64 {
    let lsn: String =
        sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text").fetch_one(&mut *conn).await.unwrap();
    let (hi, lo) = lsn.split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32) + u64::from_str_radix(lo, 16).unwrap()
}

/// user + system CPU time of a process of this machine, from `/proc/<pid>/stat`.
fn backend_cpu(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("PostgreSQL runs on this machine");
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = 100; // USER_HZ on Linux
    Duration::from_millis(ticks * 1000 / hz)
}
