//! Inbound-message inserts per second into PostgreSQL through `store::ingest_inbound` (the whole
//! transaction a connector runs per message), printed, not asserted.
//!
//! Run with the local services up: `eval "$(deploy/services.sh env)"; cargo bench -p schema --bench ingest`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use schema::domain::{Channel, MessageKind, Queue, RoutingMode};
use schema::store::{self, InboundMessage, NewAccount, Sender};

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
}
