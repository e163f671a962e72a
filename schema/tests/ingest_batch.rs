//! `store::ingest_batch` against a real PostgreSQL: a batch stores what the single-message path
//! would, with sequence numbers gap-free and in order, repeats absorbed (stored before or repeated
//! inside the batch), and every agent's stream entry written.

use std::time::Duration;

use schema::domain::{Channel, MessageKind, Queue, RoutingMode};
use schema::store::{self, AgentProfile, InboundMessage, Ingested, NewAccount, Sender};
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
    for login in ["alice", "sue"] {
        store::upsert_agent(
            &mut conn,
            &AgentProfile {
                login: login.into(),
                name: login.into(),
                roles: vec!["agent".into()],
                queues: vec!["support".into()],
                max_interactions: 10,
            },
        )
        .await
        .unwrap();
    }
    store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Telegram,
            name: "bot".into(),
            default_queue: "support".into(),
            credentials: serde_json::json!({}),
            settings: serde_json::json!({}),
        },
    )
    .await
    .unwrap()
    .id
}

fn text(account_id: Uuid, user: &str, ext: &str, text: &str) -> InboundMessage {
    InboundMessage {
        account_id,
        external_message_id: ext.into(),
        chat_id: user.into(),
        sender: Sender { external_id: user.into(), name: format!("User {user}"), ..Default::default() },
        kind: MessageKind::Text,
        text: Some(text.into()),
        ..Default::default()
    }
}

async fn batch(pool: &PgPool, account_id: Uuid, msgs: &[InboundMessage]) -> Vec<Ingested> {
    let mut tx = pool.begin().await.unwrap();
    let out = store::ingest_batch(&mut tx, account_id, msgs, WINDOW).await.unwrap();
    tx.commit().await.unwrap();
    out
}

#[tokio::test]
async fn a_batch_stores_in_order_absorbs_repeats_and_fans_out() {
    let (_url, pool) = testenv::database().await;
    let account_id = account(&pool).await;
    // customer 1 has an open interaction assigned to alice, watched by sue
    let first = batch(&pool, account_id, &[text(account_id, "1", "1:1", "hello")]).await;
    let Ingested::Stored { interaction, .. } = &first[0] else { panic!("stored") };
    sqlx::query("UPDATE interactions SET state = 'assigned', agent = 'alice' WHERE id = $1")
        .bind(interaction.id)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO interaction_participants (interaction_id, agent_login, mode) VALUES ($1, 'sue', 'monitor')",
    )
    .bind(interaction.id)
    .execute(&pool)
    .await
    .unwrap();

    let mut with_nul = text(account_id, "2", "2:1", "bad\u{0}byte");
    with_nul.sender.phone = Some("+7000".into());
    let msgs = vec![
        text(account_id, "1", "1:1", "hello"), // stored before
        text(account_id, "1", "1:2", "second"),
        with_nul,
        text(account_id, "1", "1:3", "third"),
        text(account_id, "2", "2:1", "bad\u{0}byte"), // repeated inside the batch
        InboundMessage { reply_to_external_id: Some("1:2".into()), ..text(account_id, "1", "1:4", "re: second") },
        InboundMessage { reply_to_external_id: Some("1:1".into()), ..text(account_id, "1", "1:5", "re: hello") },
        InboundMessage { reply_to_external_id: Some("9:9".into()), ..text(account_id, "1", "1:6", "re: ?") },
    ];
    let out = batch(&pool, account_id, &msgs).await;
    assert_eq!(out.len(), 8);
    let Ingested::Duplicate { message_id } = &out[0] else { panic!("{:?}", out[0]) };
    let Ingested::Stored { message: stored_first, .. } = &first[0] else { panic!() };
    assert_eq!(*message_id, stored_first.id);
    let ids: Vec<Uuid> = out
        .iter()
        .map(|o| match o {
            Ingested::Stored { message, .. } => message.id,
            Ingested::Duplicate { message_id } => *message_id,
        })
        .collect();
    assert_eq!(ids[4], ids[2], "a repeat inside the batch is a duplicate of its first occurrence");
    let Ingested::Stored { opened, audience, message, .. } = &out[2] else { panic!("{:?}", out[2]) };
    assert!(*opened, "customer 2's first message opened an interaction");
    assert!(audience.is_empty());
    assert_eq!(message.text.as_deref(), Some("bad\u{FFFD}byte"), "U+0000 stored as U+FFFD");
    let Ingested::Stored { opened, audience, message, .. } = &out[5] else { panic!() };
    assert!(!opened);
    assert_eq!(audience, &vec!["alice".to_owned(), "sue".to_owned()]);
    assert_eq!(message.reply_to, Some(ids[1]), "a reply to a message of the same batch");
    let Ingested::Stored { message, .. } = &out[6] else { panic!() };
    assert_eq!(message.reply_to, Some(stored_first.id), "a reply to a message stored before");
    let Ingested::Stored { message, .. } = &out[7] else { panic!() };
    assert_eq!(message.reply_to, None, "a reply to a message never stored");

    // the interaction's log: gap-free, in the batch's order
    let log: Vec<(i64, String)> = sqlx::query_as(
        "SELECT seq, data->'message'->>'text' FROM interaction_events WHERE interaction_id = $1 AND kind = 'message.new'
         ORDER BY seq",
    )
    .bind(interaction.id)
    .fetch_all(&pool)
    .await
    .unwrap();
    let seqs: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM interaction_events WHERE interaction_id = $1 ORDER BY seq")
            .bind(interaction.id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "gap-free");
    let texts: Vec<&str> = log.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts, ["hello", "second", "third", "re: second", "re: hello", "re: ?"]);
    // each agent's stream: gap-free, in order
    for agent in ["alice", "sue"] {
        let stream: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, data->'message'->>'text' FROM agent_events WHERE agent_login = $1 ORDER BY seq",
        )
        .bind(agent)
        .fetch_all(&pool)
        .await
        .unwrap();
        let seqs: Vec<i64> = stream.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "{agent}: gap-free");
        let texts: Vec<&str> = stream.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, ["second", "third", "re: second", "re: hello", "re: ?"], "{agent}");
    }
    let history: i64 =
        sqlx::query_scalar("SELECT count(*) FROM history WHERE entry = 'message'").fetch_one(&pool).await.unwrap();
    assert_eq!(history, 7, "one history entry per stored message");
    let phone: Option<String> = sqlx::query_scalar(
        "SELECT c.phone FROM customers c JOIN customer_identities ci ON ci.customer_id = c.id WHERE ci.external_id = '2'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(phone.as_deref(), Some("+7000"));

    // the same batch again: all repeats, nothing written
    let again = batch(&pool, account_id, &msgs).await;
    assert!(again.iter().all(|o| matches!(o, Ingested::Duplicate { .. })));
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM messages").fetch_one(&pool).await.unwrap();
    assert_eq!(messages, 7);
}

#[tokio::test]
async fn concurrent_batches_keep_every_sequence_gap_free() {
    let (_url, pool) = testenv::database().await;
    let account_id = account(&pool).await;
    // twenty customers, each with an interaction assigned to alice
    for c in 0..20 {
        let out = batch(&pool, account_id, &[text(account_id, &c.to_string(), &format!("{c}:0"), "hi")]).await;
        let Ingested::Stored { interaction, .. } = &out[0] else { panic!() };
        sqlx::query("UPDATE interactions SET state = 'assigned', agent = 'alice' WHERE id = $1")
            .bind(interaction.id)
            .execute(&pool)
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for round in 0..10 {
                    let msgs: Vec<InboundMessage> =
                        (0..20).map(|c| text(account_id, &c.to_string(), &format!("{c}:{t}:{round}"), "m")).collect();
                    // a deadlock or any other failure of a batch would be a bug
                    let mut tx = pool.begin().await.unwrap();
                    if let Err(e) = store::ingest_batch(&mut tx, account_id, &msgs, WINDOW).await {
                        panic!("a batch failed: {e}");
                    }
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM agent_events WHERE agent_login = 'alice' ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(seqs.len(), 8 * 10 * 20);
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
}

/// A young deployment's statistics: `messages` analysed while empty, then 20,000
/// messages of the account stored before autovacuum looked again. The lookup of a batch's
/// repeats (and of the messages it replies to) must read about one index entry per platform
/// id; it used to take the account's part of the index and filter all 20,000 through the list,
/// for every batch.
#[tokio::test]
async fn a_batch_looks_up_its_platform_ids_only_whatever_the_statistics() {
    let (_url, pool) = testenv::database().await;
    let account_id = account(&pool).await;
    for statement in [
        "ALTER TABLE messages SET (autovacuum_enabled = off)",
        "ALTER TABLE interactions SET (autovacuum_enabled = off)",
        "ALTER TABLE customers SET (autovacuum_enabled = off)",
        "ANALYZE messages, interactions, customers",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    let first =
        batch(&pool, account_id, &[text(account_id, "1", "1:1", "hello"), text(account_id, "2", "2:1", "hi")]).await;
    let Ingested::Stored { message, .. } = &first[0] else { panic!("{:?}", first[0]) };
    sqlx::query(
        "INSERT INTO messages (id, interaction_id, account_id, direction, author_kind, author_id, author_name, kind,
             text, status, external_message_id, created_at)
         SELECT gen_random_uuid(), interaction_id, account_id, direction, author_kind, author_id, author_name, kind,
             text, status, '1:' || (n + 100), created_at
         FROM messages, generate_series(1, 20000) AS n WHERE id = $1",
    )
    .bind(message.id)
    .execute(&pool)
    .await
    .unwrap();
    // and 20,000 other customers' chats open on the account
    sqlx::query(
        "INSERT INTO customers (id, name) SELECT gen_random_uuid(), 'other ' || n FROM generate_series(1, 20000) AS n",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO interactions (id, account_id, customer_id, external_id, channel, chat_id, state, queue)
         SELECT gen_random_uuid(), $1, id, name, 'telegram', name, 'queued', 'support'
         FROM customers WHERE name LIKE 'other %'",
    )
    .bind(account_id)
    .execute(&pool)
    .await
    .unwrap();

    // whatever plan PostgreSQL picks for a connection's prepared statements: one made for the
    // batch's values, or the generic one it may keep after five executions
    for mode in ["force_custom_plan", "force_generic_plan"] {
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("SELECT set_config('plan_cache_mode', $1, false)").bind(mode).execute(&mut *conn).await.unwrap();
        let msgs: Vec<InboundMessage> = (0..10)
            .map(|n| InboundMessage {
                reply_to_external_id: Some("1:5000".into()),
                ..text(account_id, &format!("{}", n % 3), &format!("{mode}:{n}"), "again")
            })
            .chain([text(account_id, "1", "1:1", "hello")]) // a repeat
            .collect();
        let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
        let before = testenv::index_entries_read(&mut tx, "messages").await;
        let chats_before = testenv::index_entries_read(&mut tx, "interactions").await;
        let out = store::ingest_batch(&mut tx, account_id, &msgs, WINDOW).await.unwrap();
        let read = testenv::index_entries_read(&mut tx, "messages").await - before;
        let chats_read = testenv::index_entries_read(&mut tx, "interactions").await - chats_before;
        tx.commit().await.unwrap();
        assert!(matches!(out[10], Ingested::Duplicate { .. }), "{mode}");
        let Ingested::Stored { message, .. } = &out[0] else { panic!("{mode}: {:?}", out[0]) };
        assert!(message.reply_to.is_some(), "{mode}: the reply found the stored message");
        assert!(read < 200, "{mode}: {read} index entries of messages read for a batch of 11 (20,000 messages stored)");
        assert!(chats_read < 200, "{mode}: {chats_read} index entries of interactions read (20,000 chats open)");
        sqlx::query("RESET plan_cache_mode").execute(&mut *conn).await.unwrap();
    }
}
