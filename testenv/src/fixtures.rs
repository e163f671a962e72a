//! Data most tests start from: a web chat account with agents, and a customer's conversation
//! assigned to an agent. Written through the store, as the hub would write them.

use std::time::Duration;

use schema::domain::{Channel, MessageKind, Queue, RoutingMode};
use schema::store::{self, AgentProfile, InboundMessage, Ingested, NewAccount, Sender};
use sqlx::PgPool;
use uuid::Uuid;

/// A queue `support` (auto routing), `agents` as (login, role) in it, and a web chat account
/// whose default queue it is; returns the account's id.
pub async fn webchat_account(pool: &PgPool, agents: &[(&str, &str)]) -> Uuid {
    let mut conn = pool.acquire().await.expect("a connection");
    store::upsert_queue(
        &mut conn,
        &Queue { name: "support".into(), routing_mode: RoutingMode::Auto, offer_timeout_ms: 30_000 },
    )
    .await
    .expect("the queue");
    for (login, role) in agents {
        let profile = AgentProfile {
            login: (*login).into(),
            name: (*login).into(),
            roles: vec![(*role).into()],
            queues: vec!["support".into()],
            max_interactions: 3,
        };
        store::upsert_agent(&mut conn, &profile).await.expect("the agent");
    }
    let account = NewAccount {
        channel: Channel::Webchat,
        name: "site".into(),
        default_queue: "support".into(),
        credentials: serde_json::json!({}),
        settings: serde_json::json!({}),
    };
    store::create_account(&mut conn, &account).await.expect("the account").id
}

/// Customer `customer` (named `name`) writes `text` on `account`; the interaction it opens is
/// then assigned to `agent` (directly, not through routing). Returns the interaction's id.
pub async fn assigned_interaction(
    pool: &PgPool,
    account: Uuid,
    customer: &str,
    name: &str,
    text: &str,
    agent: &str,
) -> Uuid {
    let msg = InboundMessage {
        account_id: account,
        external_message_id: format!("{customer}:{}", Uuid::new_v4().simple()),
        chat_id: customer.into(),
        sender: Sender {
            external_id: customer.into(),
            name: name.into(),
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
    let mut tx = pool.begin().await.expect("a transaction");
    let Ingested::Stored { interaction, .. } =
        store::ingest_inbound(&mut tx, &msg, Duration::from_secs(3600)).await.expect("the message")
    else {
        panic!("the customer's message was not stored")
    };
    tx.commit().await.expect("commit");
    sqlx::query("UPDATE interactions SET state = 'assigned', agent = $2 WHERE id = $1")
        .bind(interaction.id)
        .bind(agent)
        .execute(pool)
        .await
        .expect("the assignment");
    interaction.id
}

/// A video call (by agent `alice`, created if missing) of a new interaction on `account` whose
/// recording is the stored file `file`: the recording is `ready`. Returns the room's id.
pub async fn video_room_with_recording(pool: &PgPool, account: Uuid, file: Uuid) -> Uuid {
    let mut conn = pool.acquire().await.expect("a connection");
    let profile = AgentProfile {
        login: "alice".into(),
        name: "alice".into(),
        roles: vec!["agent".into()],
        queues: vec!["support".into()],
        max_interactions: 3,
    };
    store::upsert_agent(&mut conn, &profile).await.expect("the agent");
    drop(conn);
    let customer = format!("rec-{}", Uuid::new_v4().simple());
    let interaction = assigned_interaction(pool, account, &customer, "Rita", "a call?", "alice").await;
    let (mut new, _) = store::NewRoom::with_new_link(
        interaction,
        "alice",
        "alice",
        schema::domain::VideoMode::TwoWay,
        schema::domain::VideoQuality::P720,
        "http://hub.test",
        Duration::from_secs(3600),
    );
    new.record = Some(true);
    let mut tx = pool.begin().await.expect("a transaction");
    let started = store::start_room(&mut tx, &new).await.expect("the room");
    let recording = store::start_recording_part(&mut tx, &started.room, "video-test", chrono::Utc::now())
        .await
        .expect("the recording")
        .expect("the room's first part");
    let size: i64 = sqlx::query_scalar("SELECT size FROM files WHERE id = $1")
        .bind(file)
        .fetch_one(&mut *tx)
        .await
        .expect("the file");
    let done = store::RecordingDone { file_id: file, size, duration_ms: 1000, video_codec: None, processing_ms: 1 };
    store::recording_ready(&mut tx, recording.id, &done).await.expect("ready");
    tx.commit().await.expect("commit");
    started.room.id
}
