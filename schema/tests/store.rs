//! The store against a real PostgreSQL: each test gets a fresh, migrated database.

use std::time::Duration;

use schema::domain::{Channel, MessageKind, Queue, RoutingMode};
use schema::store::{self, AgentProfile, InboundMessage, Ingested, NewAccount, OutboundMessage, Sender, StoreError};
use sqlx::PgPool;
use uuid::Uuid;

const WINDOW: Duration = Duration::from_secs(3600);

async fn account(pool: &PgPool) -> Uuid {
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
            credentials: serde_json::json!({"token": "123:abc"}),
            settings: serde_json::json!({}),
        },
    )
    .await
    .unwrap();
    account.id
}

fn text_from(account_id: Uuid, user: &str, external_message_id: &str, text: &str) -> InboundMessage {
    InboundMessage {
        account_id,
        external_message_id: external_message_id.into(),
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

async fn ingest(pool: &PgPool, msg: &InboundMessage) -> Ingested {
    let mut tx = pool.begin().await.unwrap();
    let out = store::ingest_inbound(&mut tx, msg, WINDOW).await.unwrap();
    tx.commit().await.unwrap();
    out
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_again_as_a_no_op() {
    let (_url, pool) = testenv::database().await; // applied once here
    store::migrate(&pool).await.expect("second run is a no-op");
    let applied = count(&pool, "SELECT count(*) FROM _sqlx_migrations WHERE success").await;
    assert_eq!(applied, schema::MIGRATOR.iter().count() as i64);
}

#[tokio::test]
async fn the_same_inbound_platform_message_is_stored_once() {
    let (_url, pool) = testenv::database().await;
    let account_id = account(&pool).await;
    let msg = text_from(account_id, "42", "42:1", "Where is my order 5521?");

    let Ingested::Stored { message, interaction, opened, audience } = ingest(&pool, &msg).await else {
        panic!("first delivery must be stored");
    };
    assert!(opened, "the first message opens an interaction");
    assert!(audience.is_empty(), "nobody is assigned yet");
    assert_eq!(interaction.queue.as_deref(), Some("support"));
    assert_eq!(interaction.customer.external_id, "42");
    assert_eq!(message.text.as_deref(), Some("Where is my order 5521?"));

    match ingest(&pool, &msg).await {
        Ingested::Duplicate { message_id } => assert_eq!(message_id, message.id),
        other => panic!("a repeated update must be a duplicate, got {other:?}"),
    }
    assert_eq!(count(&pool, "SELECT count(*) FROM messages").await, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM history WHERE entry = 'message'").await, 1);

    // the customer's next message joins the same open interaction
    let Ingested::Stored { interaction: again, opened, .. } =
        ingest(&pool, &text_from(account_id, "42", "42:2", "Hello?")).await
    else {
        panic!("a new message must be stored");
    };
    assert!(!opened);
    assert_eq!(again.id, interaction.id);
    assert_eq!(count(&pool, "SELECT count(*) FROM customers").await, 1);
}

#[tokio::test]
async fn concurrent_deliveries_of_one_update_store_it_once() {
    let (_url, pool) = testenv::database().await;
    let account_id = account(&pool).await;
    let msg = text_from(account_id, "7", "7:100", "hi");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (pool, msg) = (pool.clone(), msg.clone());
            tokio::spawn(async move {
                let mut tx = pool.begin().await.unwrap();
                // a losing racer may fail on the unique keys and retry, as a connector does
                match store::ingest_inbound(&mut tx, &msg, WINDOW).await {
                    Ok(out) => {
                        tx.commit().await.unwrap();
                        Some(matches!(out, Ingested::Stored { .. }))
                    }
                    Err(_) => None,
                }
            })
        })
        .collect();
    let mut stored = 0;
    for t in tasks {
        if t.await.unwrap() == Some(true) {
            stored += 1;
        }
    }
    assert_eq!(stored, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM messages").await, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM interactions").await, 1);
}

async fn assigned_interaction(pool: &PgPool) -> (Uuid, String) {
    let account_id = account(pool).await;
    let Ingested::Stored { interaction, .. } = ingest(pool, &text_from(account_id, "9", "9:1", "hello")).await else {
        panic!("stored");
    };
    let mut conn = pool.acquire().await.unwrap();
    store::upsert_agent(
        &mut conn,
        &AgentProfile {
            login: "alice".into(),
            name: "Alice".into(),
            roles: vec!["agent".into()],
            queues: vec!["support".into()],
            max_interactions: 3,
        },
    )
    .await
    .unwrap();
    sqlx::query("UPDATE interactions SET state = 'assigned', agent = 'alice' WHERE id = $1")
        .bind(interaction.id)
        .execute(&mut *conn)
        .await
        .unwrap();
    (interaction.id, "alice".into())
}

#[tokio::test]
async fn the_same_client_msg_id_returns_the_first_message_and_queues_once() {
    let (_url, pool) = testenv::database().await;
    let (interaction_id, agent) = assigned_interaction(&pool).await;
    let send = |text: &str| OutboundMessage {
        interaction_id,
        agent_login: agent.clone(),
        agent_name: "Alice".into(),
        client_msg_id: "c-1".into(),
        text: Some(text.into()),
        file_ids: vec![],
        keyboard: None,
        reply_to: None,
        ..Default::default()
    };
    let mut tx = pool.begin().await.unwrap();
    let first = store::enqueue_outbound(&mut tx, &send("Your order ships today")).await.unwrap();
    tx.commit().await.unwrap();
    assert!(first.created);
    assert_eq!(first.audience, vec!["alice".to_string()]);

    let mut tx = pool.begin().await.unwrap();
    let second = store::enqueue_outbound(&mut tx, &send("a different text, same id")).await.unwrap();
    tx.commit().await.unwrap();
    assert!(!second.created);
    assert_eq!(second.message.id, first.message.id);
    assert_eq!(second.message.text.as_deref(), Some("Your order ships today"));
    assert_eq!(count(&pool, "SELECT count(*) FROM outbox").await, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM messages WHERE direction = 'out'").await, 1);

    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(store::outbox_backlog(&mut conn, first.account_id).await.unwrap(), 1);
    let empty = OutboundMessage { text: None, client_msg_id: "c-2".into(), ..send("") };
    assert!(matches!(store::enqueue_outbound(&mut conn, &empty).await, Err(StoreError::Invalid(_))));
}

#[tokio::test]
async fn agent_event_sequence_is_gap_free_under_eight_concurrent_writers() {
    let (_url, pool) = testenv::database().await;
    let mut conn = pool.acquire().await.unwrap();
    store::ensure_agent(&mut conn, "bob", "Bob", &["agent".to_string()]).await.unwrap();
    drop(conn);
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 60;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut committed = 0;
                for i in 0..PER_WRITER {
                    let mut tx = pool.begin().await.unwrap();
                    let data = serde_json::json!({"writer": w, "i": i});
                    store::append_agent_event(&mut tx, "bob", "test.event", &data).await.unwrap();
                    if i % 7 == 3 {
                        tx.rollback().await.unwrap(); // a failed transaction gives its number back
                    } else {
                        tx.commit().await.unwrap();
                        committed += 1;
                    }
                }
                committed
            })
        })
        .collect();
    let mut committed = 0;
    for w in writers {
        committed += w.await.unwrap();
    }
    let mut conn = pool.acquire().await.unwrap();
    let events = store::agent_events_after(&mut conn, "bob", 0, 10_000).await.unwrap();
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=committed as i64).collect::<Vec<_>>(), "sequence has gaps or repeats");
    assert_eq!(store::agent_last_seq(&mut conn, "bob").await.unwrap(), committed as i64);
    let tail = store::agent_events_after(&mut conn, "bob", committed as i64 - 2, 10).await.unwrap();
    assert_eq!(tail.len(), 2, "resume_from returns exactly what came after");
    assert!(matches!(
        store::append_agent_event(&mut conn, "nobody", "x", &serde_json::json!({})).await,
        Err(StoreError::NotFound { what: "agent", .. })
    ));
}

#[tokio::test]
async fn a_write_with_an_older_fencing_token_is_refused() {
    let (_url, pool) = testenv::database().await;
    let mut conn = pool.acquire().await.unwrap();
    store::check_fence(&mut conn, "connector/a", 5).await.unwrap();
    store::check_fence(&mut conn, "connector/a", 5).await.expect("the same leader writes again");
    store::check_fence(&mut conn, "connector/a", 9).await.unwrap();
    match store::check_fence(&mut conn, "connector/a", 5).await {
        Err(StoreError::StaleFence { token: 5, current: 9, .. }) => {}
        other => panic!("stale token accepted: {other:?}"),
    }
    store::check_fence(&mut conn, "connector/b", 1).await.expect("keys are independent");
}

#[tokio::test]
async fn the_same_leaders_writes_pass_the_fence_together_and_a_newer_leader_waits_for_them() {
    let (_url, pool) = testenv::database().await;
    let mut first = pool.begin().await.unwrap();
    store::check_fence(&mut first, "connector/a", 5).await.unwrap();
    first.commit().await.unwrap();
    let mut one = pool.begin().await.unwrap();
    let mut two = pool.begin().await.unwrap();
    store::check_fence(&mut one, "connector/a", 5).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), store::check_fence(&mut two, "connector/a", 5))
        .await
        .expect("a second transaction of the same leader does not wait for the first")
        .unwrap();
    let newer = tokio::spawn({
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            store::check_fence(&mut tx, "connector/a", 9).await.unwrap();
            tx.commit().await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!newer.is_finished(), "a newer leader waits for the open transactions of the older one");
    one.commit().await.unwrap();
    two.rollback().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), newer).await.unwrap().unwrap();
    let mut conn = pool.acquire().await.unwrap();
    assert!(matches!(
        store::check_fence(&mut conn, "connector/a", 5).await,
        Err(StoreError::StaleFence { token: 5, current: 9, .. })
    ));
    store::check_fence(&mut conn, "connector/a", 9).await.expect("the newer leader writes again");
}

#[tokio::test]
async fn a_returning_customer_reopens_within_the_window_and_history_pages_backwards() {
    let (_url, pool) = testenv::database().await;
    let account_id = account(&pool).await;
    let Ingested::Stored { interaction: first, .. } = ingest(&pool, &text_from(account_id, "5", "5:1", "one")).await
    else {
        panic!("stored")
    };
    sqlx::query("UPDATE interactions SET state = 'closed', closed_at = now(), last_agent = NULL WHERE id = $1")
        .bind(first.id)
        .execute(&pool)
        .await
        .unwrap();
    let Ingested::Stored { interaction: back, opened, .. } =
        ingest(&pool, &text_from(account_id, "5", "5:2", "two")).await
    else {
        panic!("stored")
    };
    assert!(opened);
    assert_eq!(back.id, first.id, "reopened within the window");

    sqlx::query("UPDATE interactions SET state = 'closed', closed_at = now() - interval '2 hours' WHERE id = $1")
        .bind(first.id)
        .execute(&pool)
        .await
        .unwrap();
    let Ingested::Stored { interaction: fresh, .. } = ingest(&pool, &text_from(account_id, "5", "5:3", "three")).await
    else {
        panic!("stored")
    };
    assert_ne!(fresh.id, first.id, "outside the window a new interaction opens");

    let mut conn = pool.acquire().await.unwrap();
    let page = store::history_page(&mut conn, fresh.customer.id, None, 2).await.unwrap();
    let texts: Vec<_> = page.messages.iter().map(|m| m.text.clone().unwrap()).collect();
    assert_eq!(texts, vec!["three".to_string()], "newest first; the other entry is the creation event");
    assert_eq!(page.events.len(), 1);
    let mut before = page.next_before;
    let mut all = texts;
    while let Some(cursor) = before {
        let page = store::history_page(&mut conn, fresh.customer.id, Some(cursor), 2).await.unwrap();
        all.extend(page.messages.iter().map(|m| m.text.clone().unwrap()));
        before = page.next_before;
    }
    assert_eq!(all, vec!["three", "two", "one"], "every message, across interactions, newest first");
}
