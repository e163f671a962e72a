//! The file rows of `store::files` against a real PostgreSQL.

use std::time::Duration;

use schema::domain::{Channel, MessageKind, Queue, RoutingMode};
use schema::store::{self, InboundMessage, NewAccount, NewFile, Sender, StoreError};
use sqlx::PgPool;
use uuid::Uuid;

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
            credentials: serde_json::json!({}),
            settings: serde_json::json!({}),
        },
    )
    .await
    .unwrap();
    account.id
}

fn new_file(size: i64, account_id: Option<Uuid>) -> NewFile {
    let id = Uuid::new_v4();
    NewFile {
        id,
        name: "act.pdf".into(),
        mime: "application/pdf".into(),
        size,
        sha256: "ab".repeat(32),
        storage_key: id.to_string(),
        account_id,
        uploaded_by: Some("alice".into()),
        kind: schema::domain::FileKind::Chat,
    }
}

fn message(account_id: Uuid, external_id: &str, files: &[Uuid]) -> InboundMessage {
    InboundMessage {
        account_id,
        external_message_id: external_id.into(),
        chat_id: "u1".into(),
        sender: Sender { external_id: "u1".into(), name: "Olga".into(), ..Sender::default() },
        kind: MessageKind::Document,
        text: None,
        file_ids: files.to_vec(),
        location: None,
        contact: None,
        reply_to_external_id: None,
        forwarded: None,
        sent_at: None,
        sticker_id: None,
    }
}

async fn age_files(pool: &PgPool, ids: &[Uuid], days: i32) {
    sqlx::query("UPDATE files SET created_at = now() - make_interval(days => $2) WHERE id = ANY($1)")
        .bind(ids)
        .bind(days)
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn insert_and_get() {
    let (_, pool) = testenv::database().await;
    let account_id = account(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let new = new_file(48213, Some(account_id));
    let stored = store::insert_file(&mut conn, &new).await.unwrap();
    assert_eq!((stored.id, stored.size, stored.account_id), (new.id, 48213, Some(account_id)));
    assert_eq!(store::get_file(&mut conn, new.id).await.unwrap(), stored);
    let file_ref = stored.to_ref();
    assert_eq!(file_ref.url, format!("/api/v1/files/{}", new.id));

    assert!(matches!(store::insert_file(&mut conn, &new).await, Err(StoreError::Conflict(_))));
    let orphan = new_file(1, Some(Uuid::new_v4()));
    assert!(matches!(store::insert_file(&mut conn, &orphan).await, Err(StoreError::Invalid(_))));
    assert!(matches!(store::get_file(&mut conn, Uuid::new_v4()).await, Err(StoreError::NotFound { .. })));
}

#[tokio::test]
async fn expired_files_skip_those_in_use_and_those_referenced_since() {
    let (_, pool) = testenv::database().await;
    let account_id = account(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let old = store::insert_file(&mut conn, &new_file(10, None)).await.unwrap().id;
    let busy = store::insert_file(&mut conn, &new_file(20, None)).await.unwrap().id;
    drop(conn);
    age_files(&pool, &[old, busy], 30).await;
    let cutoff = chrono::Utc::now() - chrono::TimeDelta::days(7);

    // a connector attaching `busy` to a new message, not committed yet: its foreign-key lock
    // makes the retention skip the file instead of waiting or deleting it
    let mut attaching = pool.begin().await.unwrap();
    store::ingest_inbound(&mut attaching, &message(account_id, "m1", &[busy]), Duration::from_secs(60)).await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    let expired = store::delete_expired_files(&mut tx, schema::domain::FileKind::Chat, cutoff, 100).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(expired.iter().map(|f| (f.id, f.size)).collect::<Vec<_>>(), vec![(old, 10)]);
    assert_eq!(expired[0].storage_key, old.to_string());

    // once committed, the new message keeps it
    attaching.commit().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    assert_eq!(
        store::delete_expired_files(&mut tx, schema::domain::FileKind::Chat, cutoff, 100).await.unwrap(),
        vec![]
    );
    tx.commit().await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    assert!(store::get_file(&mut conn, busy).await.is_ok());
}

#[tokio::test]
async fn an_agent_may_read_the_files_of_interactions_it_sees_and_its_own_uploads() {
    let (_, pool) = testenv::database().await;
    let account_id = account(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    for login in ["alice", "bob", "carol", "dave"] {
        let profile = store::AgentProfile {
            login: login.into(),
            name: login.into(),
            roles: vec!["agent".into()],
            queues: vec!["support".into()],
            max_interactions: 3,
        };
        store::upsert_agent(&mut conn, &profile).await.unwrap();
    }
    let mut inbound = new_file(10, Some(account_id));
    inbound.uploaded_by = Some("connector".into());
    let inbound = store::insert_file(&mut conn, &inbound).await.unwrap().id;
    let own = store::insert_file(&mut conn, &new_file(5, None)).await.unwrap().id; // alice's upload
    drop(conn);
    let mut tx = pool.begin().await.unwrap();
    let store::Ingested::Stored { interaction, .. } =
        store::ingest_inbound(&mut tx, &message(account_id, "m1", &[inbound]), Duration::from_secs(60)).await.unwrap()
    else {
        panic!("stored")
    };
    assert!(!store::agent_may_read_file(&mut tx, inbound, "bob").await.unwrap(), "queued: nobody's yet");
    assert!(store::agent_may_read_file(&mut tx, own, "alice").await.unwrap(), "an upload is its uploader's");
    assert!(!store::agent_may_read_file(&mut tx, own, "bob").await.unwrap(), "and no one else's");
    store::take(&mut tx, interaction.id, "bob", true).await.unwrap();
    store::transfer(&mut tx, interaction.id, "bob", &store::TransferTarget::Agent("carol".into()), None).await.unwrap();
    store::join(&mut tx, interaction.id, "alice", "monitor").await.unwrap();
    for (agent, expected) in [("carol", true), ("bob", true), ("alice", true), ("dave", false)] {
        assert_eq!(store::agent_may_read_file(&mut tx, inbound, agent).await.unwrap(), expected, "{agent}");
    }
    // the customer's avatar goes with the customer's interactions
    let avatar = store::insert_file(&mut tx, &new_file(3, Some(account_id))).await.unwrap().id;
    sqlx::query("UPDATE customers SET avatar_url = $2 WHERE id = $1")
        .bind(interaction.customer.id)
        .bind(format!("/api/v1/files/{avatar}"))
        .execute(&mut *tx)
        .await
        .unwrap();
    assert!(store::agent_may_read_file(&mut tx, avatar, "carol").await.unwrap());
    assert!(!store::agent_may_read_file(&mut tx, avatar, "dave").await.unwrap());
    tx.commit().await.unwrap();
}
