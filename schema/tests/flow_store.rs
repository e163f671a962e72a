//! Stored bot flows against a real PostgreSQL: versions, refusals naming the node, the greeting
//! flow opening an interaction in state `bot` (not routed), the customer's messages reaching
//! the run, and the fence: a hand-off, then an agent's take cancels the bot's unsent messages
//! and refuses every later bot send.

use std::collections::BTreeMap;
use std::time::Duration;

use schema::domain::InteractionState;
use schema::flow::Flow;
use schema::store::{self, InboundMessage, Ingested, SaveFlowError, Sender};
use sqlx::PgPool;
use uuid::Uuid;

fn greeting() -> Flow {
    serde_json::from_value(serde_json::json!({
        "start": "hello",
        "fallback_queue": "support",
        "nodes": {
            "hello": {"kind": "send", "text": "Hi! Sales or support?", "buttons": ["Sales", "Support"], "next": "ask"},
            "ask": {"kind": "wait", "var": "topic", "timeout_s": 60, "next": "human", "on_timeout": "human"},
            "human": {"kind": "handoff", "queue": "support"}
        }
    }))
    .unwrap()
}

async fn inbound(pool: &PgPool, account_id: Uuid, user: &str, text: &str) -> (Uuid, InteractionState, bool) {
    let msg = InboundMessage {
        account_id,
        external_message_id: Uuid::now_v7().to_string(),
        chat_id: user.into(),
        sender: Sender { external_id: user.into(), name: user.into(), ..Default::default() },
        text: Some(text.into()),
        ..Default::default()
    };
    let mut tx = pool.begin().await.unwrap();
    let stored = store::ingest_inbound(&mut tx, &msg, Duration::from_secs(60)).await.unwrap();
    tx.commit().await.unwrap();
    match stored {
        Ingested::Stored { interaction, opened, .. } => (interaction.id, interaction.state, opened),
        Ingested::Duplicate { .. } => panic!("duplicate"),
    }
}

#[tokio::test]
async fn flows_are_versioned_and_refusals_name_the_node() {
    let (_, pool) = testenv::database().await;
    testenv::fixtures::webchat_account(&pool, &[]).await;
    let mut tx = pool.begin().await.unwrap();
    let first = store::save_flow(&mut tx, "greet", &greeting(), "admin").await.unwrap();
    let mut changed = greeting();
    changed.nodes.insert(
        "hello".into(),
        serde_json::from_value(serde_json::json!({"kind": "send", "text": "Hello!", "next": "ask"})).unwrap(),
    );
    let second = store::save_flow(&mut tx, "greet", &changed, "admin").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!((first.version, second.version), (1, 2));
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(store::get_flow(&mut conn, "greet", None).await.unwrap().flow, changed);
    assert_eq!(store::get_flow(&mut conn, "greet", Some(1)).await.unwrap().flow, greeting());
    assert!(matches!(store::get_flow(&mut conn, "greet", Some(3)).await, Err(store::StoreError::NotFound { .. })));
    let list = store::list_flows(&mut conn).await.unwrap();
    assert_eq!(list.iter().map(|f| (f.name.as_str(), f.version)).collect::<Vec<_>>(), vec![("greet", 2)]);

    // a hand-off to a queue that does not exist is refused naming the node
    let mut bad = greeting();
    bad.nodes.insert(
        "human".into(),
        serde_json::from_value(serde_json::json!({"kind": "handoff", "queue": "nowhere"})).unwrap(),
    );
    match store::save_flow(&mut conn, "greet", &bad, "admin").await {
        Err(SaveFlowError::Refused(r)) => {
            assert_eq!(r.0.len(), 1, "{r}");
            assert_eq!(r.0[0].node.as_deref(), Some("human"));
            assert_eq!(r.0[0].message, "queue names no queue (\"nowhere\")");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store::save_flow(&mut conn, "Greet!", &greeting(), "admin").await,
        Err(SaveFlowError::Store(store::StoreError::Invalid(_)))
    ));
    assert_eq!(store::get_flow(&mut conn, "greet", None).await.unwrap().version, 2, "nothing saved");
    assert!(matches!(
        store::set_queue_greeting_flow(&mut conn, "support", Some("missing")).await,
        Err(store::StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_greeting_flow_opens_in_bot_state_and_the_fence_silences_the_bot() {
    let (_, pool) = testenv::database().await;
    let account = testenv::fixtures::webchat_account(&pool, &[("alice", "agent")]).await;
    let mut conn = pool.acquire().await.unwrap();
    store::save_flow(&mut conn, "greet", &greeting(), "admin").await.unwrap();

    // without a greeting flow: queued, as before
    let (plain, state, _) = inbound(&pool, account, "u0", "hi").await;
    assert_eq!(state, InteractionState::Queued);
    assert!(store::bot_run_of(&mut conn, plain).await.unwrap().is_none());

    assert_eq!(store::set_queue_greeting_flow(&mut conn, "support", Some("greet")).await.unwrap(), None);
    let (id, state, opened) = inbound(&pool, account, "u1", "hello").await;
    assert_eq!((state, opened), (InteractionState::Bot, true));
    let snapshot = store::routing_snapshot(&mut conn).await.unwrap();
    assert!(snapshot.waiting.iter().all(|w| w.id != id), "routing does not offer the bot's conversation");
    assert_eq!(store::due_bot_runs(&mut conn, account, 10).await.unwrap(), vec![id], "not begun: due");

    // the run sees the customer's messages while it is the bot's
    inbound(&pool, account, "u1", "Sales").await;
    let mut tx = pool.begin().await.unwrap();
    let turn = store::lock_bot_run(&mut tx, id).await.unwrap().expect("the bot's");
    assert_eq!(turn.inputs.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(), vec!["hello", "Sales"]);
    assert_eq!(turn.flow, greeting());
    assert!(turn.run.is_none());
    let sent = store::bot_send(&mut tx, id, "greet", "Hi! Sales or support?", None).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(sent.author.kind, schema::domain::AuthorKind::Bot);
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE message_id = $1 AND state = 'pending'")
        .bind(sent.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(pending, 1, "the bot's message goes through the outbox");

    // hand-off: queued with the answers as fields; the queued bot message still goes out
    let mut tx = pool.begin().await.unwrap();
    let fields = BTreeMap::from([("topic".to_string(), "Sales".to_string())]);
    let handed = store::bot_handoff(&mut tx, id, "support", &fields, None).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(handed.state, InteractionState::Queued);
    assert_eq!(handed.fields["topic"], "Sales");
    let run = store::bot_run_of(&mut conn, id).await.unwrap().unwrap();
    assert!(!run.active);
    assert_eq!(run.outcome.as_deref(), Some("handed off to support"));
    assert!(store::due_bot_runs(&mut conn, account, 10).await.unwrap().is_empty());
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE message_id = $1 AND state = 'pending'")
        .bind(sent.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(pending, 1);

    // a late bot send is refused in the store; nothing is queued
    let mut tx = pool.begin().await.unwrap();
    let late = store::bot_send(&mut tx, id, "greet", "Still there?", None).await;
    assert!(matches!(late, Err(store::StoreError::Conflict(ref m)) if m.contains("no longer owns")), "{late:?}");
    drop(tx);

    // the agent takes it: the bot's unsent message is cancelled
    let mut tx = pool.begin().await.unwrap();
    store::take(&mut tx, id, "alice", false).await.unwrap();
    tx.commit().await.unwrap();
    let (state, error): (String, Option<String>) = sqlx::query_as(
        "SELECT o.state, m.error FROM outbox o JOIN messages m ON m.id = o.message_id WHERE o.message_id = $1",
    )
    .bind(sent.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(state, "failed");
    assert_eq!(error.as_deref(), Some("cancelled: an agent owns the conversation"));
    let pending = store::pending_outbox(&mut conn, account, 0, 100).await.unwrap();
    assert!(pending.iter().all(|p| p.message.id != sent.id), "the connector never reads it");
}

#[tokio::test]
async fn an_agent_taking_the_bots_conversation_stops_the_run_and_cancels_its_sends() {
    let (_, pool) = testenv::database().await;
    let account = testenv::fixtures::webchat_account(&pool, &[("alice", "agent")]).await;
    let mut conn = pool.acquire().await.unwrap();
    store::save_flow(&mut conn, "greet", &greeting(), "admin").await.unwrap();
    sqlx::query("UPDATE accounts SET settings = settings || '{\"greeting_flow\": \"greet\"}' WHERE id = $1")
        .bind(account)
        .execute(&pool)
        .await
        .unwrap();
    let (id, state, _) = inbound(&pool, account, "u2", "hello").await;
    assert_eq!(state, InteractionState::Bot, "the account's setting names the greeting flow");
    let mut tx = pool.begin().await.unwrap();
    let sent = store::bot_send(&mut tx, id, "greet", "Hi!", None).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    store::take(&mut tx, id, "alice", false).await.unwrap();
    tx.commit().await.unwrap();
    let run = store::bot_run_of(&mut conn, id).await.unwrap().unwrap();
    assert!(!run.active);
    assert_eq!(run.outcome.as_deref(), Some("left state bot: assigned"));
    let state: String = sqlx::query_scalar("SELECT state FROM outbox WHERE message_id = $1")
        .bind(sent.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "failed");
    let mut tx = pool.begin().await.unwrap();
    assert!(store::lock_bot_run(&mut tx, id).await.unwrap().is_none(), "the runner finds nothing to run");
    assert!(matches!(store::bot_send(&mut tx, id, "greet", "late", None).await, Err(store::StoreError::Conflict(_))));
    assert!(matches!(
        store::bot_handoff(&mut tx, id, "support", &BTreeMap::new(), None).await,
        Err(store::StoreError::Conflict(_))
    ));
    assert!(matches!(store::bot_end(&mut tx, id).await, Err(store::StoreError::Conflict(_))));
    // the customer's messages no longer reach the run
    drop(tx);
    inbound(&pool, account, "u2", "anyone?").await;
    let inputs: i64 = sqlx::query_scalar("SELECT count(*) FROM bot_inputs WHERE interaction_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(inputs, 0);
}
