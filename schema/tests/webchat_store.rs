//! The web chat's store functions against a real PostgreSQL: a customer's transcript, read
//! receipts, whether the database holds any account.

use std::time::Duration;

use schema::domain::MessageKind;
use schema::store::{self, InboundMessage, Ingested, OutboundMessage, Sender};
use sqlx::PgPool;
use uuid::Uuid;

const WINDOW: Duration = Duration::from_secs(3600);

async fn webchat_account(pool: &PgPool) -> Uuid {
    testenv::fixtures::webchat_account(pool, &[("alice", "agent")]).await
}

async fn says(pool: &PgPool, account_id: Uuid, customer: &str, id: &str, text: &str) -> Uuid {
    let msg = InboundMessage {
        account_id,
        external_message_id: format!("{customer}:{id}"),
        chat_id: customer.into(),
        sender: Sender {
            external_id: customer.into(),
            name: "Visitor".into(),
            username: None,
            phone: None,
            avatar_url: None,
        },
        kind: MessageKind::Text,
        text: Some(text.into()),
        file_ids: vec![],
        location: None,
        contact: None,
        reply_to_external_id: None,
        forwarded: None,
        sent_at: None,
        sticker_id: None,
    };
    let mut tx = pool.begin().await.unwrap();
    let stored = store::ingest_inbound(&mut tx, &msg, WINDOW).await.unwrap();
    tx.commit().await.unwrap();
    match stored {
        Ingested::Stored { interaction, .. } => interaction.id,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_transcript_is_one_customers_messages_oldest_first_and_reads_mark_sent_replies() {
    let (_url, pool) = testenv::database().await;
    let mut conn = pool.acquire().await.unwrap();
    assert!(!store::any_account(&mut conn).await.unwrap());
    drop(conn);
    let account = webchat_account(&pool).await;
    let interaction = says(&pool, account, "wc-a", "1", "first").await;
    says(&pool, account, "wc-a", "2", "second").await;
    says(&pool, account, "wc-b", "1", "someone else").await;
    sqlx::query("UPDATE interactions SET state = 'assigned', agent = 'alice' WHERE id = $1")
        .bind(interaction)
        .execute(&pool)
        .await
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    assert!(store::any_account(&mut conn).await.unwrap());
    let reply = |id: &str| OutboundMessage {
        interaction_id: interaction,
        agent_login: "alice".into(),
        agent_name: "Alice".into(),
        client_msg_id: id.into(),
        text: Some(format!("reply {id}")),
        file_ids: vec![],
        keyboard: None,
        reply_to: None,
        ..Default::default()
    };
    let sent = store::enqueue_outbound(&mut conn, &reply("r1")).await.unwrap().message.id;
    let queued = store::enqueue_outbound(&mut conn, &reply("r2")).await.unwrap().message.id;
    sqlx::query("UPDATE messages SET status = 'sent' WHERE id = $1").bind(sent).execute(&mut *conn).await.unwrap();

    let transcript = store::customer_transcript(&mut conn, account, "wc-a", 10).await.unwrap();
    let texts: Vec<_> = transcript.iter().map(|m| m.text.clone().unwrap()).collect();
    assert_eq!(texts, ["first", "second", "reply r1", "reply r2"]);
    let last_two = store::customer_transcript(&mut conn, account, "wc-a", 2).await.unwrap();
    assert_eq!(last_two.iter().map(|m| m.id).collect::<Vec<_>>(), [sent, queued], "the newest, oldest first");

    let before: i64 = sqlx::query_scalar("SELECT last_event_seq FROM agents WHERE login = 'alice'")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let audience = store::customer_read(&mut conn, account, "wc-a").await.unwrap();
    assert_eq!(audience, ["alice"]);
    assert_eq!(store::message_status(&mut conn, sent).await.unwrap().as_str(), "read");
    assert_eq!(store::message_status(&mut conn, queued).await.unwrap().as_str(), "queued", "not sent yet: not read");
    let events = store::agent_events_after(&mut conn, "alice", before, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, "message.status");
    assert_eq!(events[0].data["message"]["status"], "read");
    assert!(store::customer_read(&mut conn, account, "wc-a").await.unwrap().is_empty(), "nothing new to read");
    assert!(store::customer_read(&mut conn, account, "wc-b").await.unwrap().is_empty());
}
