//! The connector's store functions against a real PostgreSQL: outbox claims and outcomes under
//! the fence, status events, customers' edits, avatars, account listing.

use std::time::Duration;

use chrono::Utc;
use schema::domain::{Channel, MessageStatus, OutboxAction, Queue, RoutingMode};
use schema::store::{
    self, AgentProfile, InboundMessage, Ingested, NewAccount, OutboundMessage, OutboxOutcome, Sender, StoreError,
};
use sqlx::PgPool;
use uuid::Uuid;

const WINDOW: Duration = Duration::from_secs(3600);

async fn setup(pool: &PgPool) -> (Uuid, Uuid) {
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
            name: "bot".into(),
            default_queue: "support".into(),
            credentials: serde_json::json!({"bot_token": "1:a"}),
            settings: serde_json::json!({"mode": "polling"}),
        },
    )
    .await
    .unwrap();
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
    drop(conn);
    let interaction = inbound(pool, account.id, "77:1", "hello").await;
    sqlx::query("UPDATE interactions SET state = 'assigned', agent = 'alice' WHERE id = $1")
        .bind(interaction)
        .execute(pool)
        .await
        .unwrap();
    (account.id, interaction)
}

async fn inbound(pool: &PgPool, account_id: Uuid, external: &str, text: &str) -> Uuid {
    let msg = InboundMessage {
        account_id,
        external_message_id: external.into(),
        chat_id: "77".into(),
        sender: Sender { external_id: "77".into(), name: "Olga".into(), ..Default::default() },
        kind: schema::domain::MessageKind::Text,
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
    let Ingested::Stored { interaction, .. } = store::ingest_inbound(&mut tx, &msg, WINDOW).await.unwrap() else {
        panic!("stored")
    };
    tx.commit().await.unwrap();
    interaction.id
}

async fn send(pool: &PgPool, interaction_id: Uuid, n: u32) -> Uuid {
    let mut tx = pool.begin().await.unwrap();
    let out = store::enqueue_outbound(
        &mut tx,
        &OutboundMessage {
            interaction_id,
            agent_login: "alice".into(),
            agent_name: "Alice".into(),
            client_msg_id: format!("c{n}"),
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
    out.message.id
}

async fn events(pool: &PgPool, name: &str) -> Vec<serde_json::Value> {
    sqlx::query_scalar("SELECT data FROM agent_events WHERE agent_login = 'alice' AND event = $1 ORDER BY seq")
        .bind(name)
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn claim_then_done_marks_sent_with_platform_ids_and_tells_the_agent() {
    let (_url, pool) = testenv::database().await;
    let (account, interaction) = setup(&pool).await;
    let first = send(&pool, interaction, 1).await;
    let second = send(&pool, interaction, 2).await;

    let mut conn = pool.acquire().await.unwrap();
    let pending = store::pending_outbox(&mut conn, account, 0, 100).await.unwrap();
    assert_eq!(pending.iter().map(|i| i.message.id).collect::<Vec<_>>(), vec![first, second], "in id order");
    assert_eq!(pending[0].action, OutboxAction::Send);
    assert_eq!(pending[0].chat_id, "77");
    assert_eq!(pending[0].attempts, 0);
    let after_first = store::pending_outbox(&mut conn, account, pending[0].id, 100).await.unwrap();
    assert_eq!(after_first.len(), 1);
    let behind = store::pending_outbox_behind(&mut conn, account, pending[1].id, &[pending[0].id], 100).await.unwrap();
    assert_eq!(
        behind.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![pending[1].id],
        "the rows not held, up to the cursor"
    );
    let none = store::pending_outbox_behind(&mut conn, account, pending[0].id, &[], 100).await.unwrap();
    assert_eq!(none.len(), 1, "nothing after the cursor");
    drop(conn);

    let mut tx = pool.begin().await.unwrap();
    let claimed = store::claim_outbox(&mut tx, account, 5, &[pending[0].id]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(claimed, vec![pending[0].id]);

    let mut tx = pool.begin().await.unwrap();
    let outcome = OutboxOutcome::Done { external_ids: vec!["77:500".into(), "77:501".into()] };
    let announced = store::finish_outbox(&mut tx, account, 5, pending[0].id, &outcome).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(announced.audience, vec!["alice".to_string()]);
    assert_eq!(announced.message.as_ref().unwrap().status, MessageStatus::Sent);

    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(store::message_status(&mut conn, first).await.unwrap(), MessageStatus::Sent);
    assert_eq!(store::message_external_ids(&mut conn, first).await.unwrap(), vec!["77:500", "77:501"]);
    assert_eq!(store::find_message_by_external(&mut conn, account, "77:500").await.unwrap(), Some(first));
    let left = store::pending_outbox(&mut conn, account, 0, 100).await.unwrap();
    assert_eq!(left.len(), 1, "the done row is no longer pending");
    assert_eq!(store::outbox_backlog(&mut conn, account).await.unwrap(), 1);
    let row: (i32, Option<i64>) = sqlx::query_as("SELECT attempts, fencing_token FROM outbox WHERE id = $1")
        .bind(pending[0].id)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(row, (1, Some(5)), "the attempt and the leader's token are on the row");

    let status = events(&pool, "message.status").await;
    assert_eq!(status.len(), 1);
    assert_eq!(status[0]["message"]["id"], first.to_string());
    assert_eq!(status[0]["message"]["status"], "sent");
}

#[tokio::test]
async fn a_deposed_leader_cannot_claim_or_finish() {
    let (_url, pool) = testenv::database().await;
    let (account, interaction) = setup(&pool).await;
    send(&pool, interaction, 1).await;
    let mut conn = pool.acquire().await.unwrap();
    let row = store::pending_outbox(&mut conn, account, 0, 10).await.unwrap().remove(0);
    drop(conn);

    let mut tx = pool.begin().await.unwrap();
    store::claim_outbox(&mut tx, account, 7, &[row.id]).await.unwrap();
    tx.commit().await.unwrap();
    // a newer leader took over
    let mut tx = pool.begin().await.unwrap();
    store::claim_outbox(&mut tx, account, 9, &[row.id]).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    let err = store::claim_outbox(&mut tx, account, 7, &[row.id]).await.unwrap_err();
    assert!(matches!(err, StoreError::StaleFence { token: 7, current: 9, .. }), "{err}");
    drop(tx);
    let mut tx = pool.begin().await.unwrap();
    let done = OutboxOutcome::Done { external_ids: vec!["77:1".into()] };
    let err = store::finish_outbox(&mut tx, account, 7, row.id, &done).await.unwrap_err();
    assert!(matches!(err, StoreError::StaleFence { .. }), "{err}");
    drop(tx);

    let mut conn = pool.acquire().await.unwrap();
    let again = store::pending_outbox(&mut conn, account, 0, 10).await.unwrap().remove(0);
    assert_eq!((again.attempts, again.fencing_token), (2, Some(9)), "attempted by two leaders, the last one 9");
}

#[tokio::test]
async fn a_set_claim_shares_the_fence_with_its_leader_and_a_newer_leader_waits_for_it() {
    let (_url, pool) = testenv::database().await;
    let (account, interaction) = setup(&pool).await;
    for n in 1..=6 {
        send(&pool, interaction, n).await;
    }
    let mut conn = pool.acquire().await.unwrap();
    let ids: Vec<i64> = store::pending_outbox(&mut conn, account, 0, 10).await.unwrap().iter().map(|i| i.id).collect();
    drop(conn);
    // leader 5's first write takes the fence; the first row is done
    let mut tx = pool.begin().await.unwrap();
    assert_eq!(store::claim_outbox(&mut tx, account, 5, &ids[..1]).await.unwrap(), ids[..1].to_vec());
    tx.commit().await.unwrap();

    // one transaction claims a set of rows and stays open (the requests would go after its
    // commit); the same leader's outcome batch passes the fence meanwhile, without waiting
    let mut claim = pool.begin().await.unwrap();
    let claimed = store::claim_outbox(&mut claim, account, 5, &ids[1..]).await.unwrap();
    assert_eq!(claimed, ids[1..].to_vec(), "the set, in one statement");
    let mut outcome = pool.begin().await.unwrap();
    let done = OutboxOutcome::Done { external_ids: vec!["77:1".into()] };
    tokio::time::timeout(
        Duration::from_secs(5),
        store::finish_outbox_many(&mut outcome, account, 5, &[(ids[0], done)]),
    )
    .await
    .expect("the leader's own transactions share the fence")
    .unwrap();

    // a newer leader's claim waits until both of leader 5's transactions have ended
    let newer = tokio::spawn({
        let pool = pool.clone();
        let ids = ids.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let claimed = store::claim_outbox(&mut tx, account, 9, &ids).await;
            tx.commit().await.unwrap();
            claimed
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!newer.is_finished(), "the newer leader waits for the open claim");
    outcome.commit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!newer.is_finished(), "and for the open outcome batch");
    claim.commit().await.unwrap();
    let taken = tokio::time::timeout(Duration::from_secs(5), newer).await.unwrap().unwrap().unwrap();
    assert_eq!(taken, ids[1..].to_vec(), "the newer leader claims what is still pending");

    // from now on the deposed leader can neither claim nor record
    let mut tx = pool.begin().await.unwrap();
    let err = store::claim_outbox(&mut tx, account, 5, &ids[1..]).await.unwrap_err();
    assert!(matches!(err, StoreError::StaleFence { token: 5, current: 9, .. }), "{err}");
    drop(tx);
    let mut tx = pool.begin().await.unwrap();
    let done = OutboxOutcome::Done { external_ids: vec!["77:2".into()] };
    let err = store::finish_outbox_many(&mut tx, account, 5, &[(ids[1], done)]).await.unwrap_err();
    assert!(matches!(err, StoreError::StaleFence { .. }), "{err}");
    drop(tx);
    let rows: Vec<(i32, Option<i64>, String)> =
        sqlx::query_as("SELECT attempts, fencing_token, state FROM outbox WHERE id = ANY($1) ORDER BY id")
            .bind(&ids)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows[0], (1, Some(5), "done".to_string()), "finished by leader 5 before it was deposed");
    assert!(rows[1..].iter().all(|r| *r == (2, Some(9), "pending".to_string())), "{rows:?}: in doubt, now leader 9's");
}

#[tokio::test]
async fn retry_keeps_the_row_pending_and_failure_reports_the_reason() {
    let (_url, pool) = testenv::database().await;
    let (account, interaction) = setup(&pool).await;
    let message = send(&pool, interaction, 1).await;
    let mut conn = pool.acquire().await.unwrap();
    let row = store::pending_outbox(&mut conn, account, 0, 10).await.unwrap().remove(0);
    drop(conn);

    let later = Utc::now() + chrono::Duration::seconds(30);
    let mut tx = pool.begin().await.unwrap();
    let retry = OutboxOutcome::Retry { not_before: later, error: "rate limited".into() };
    let announced = store::finish_outbox(&mut tx, account, 1, row.id, &retry).await.unwrap();
    tx.commit().await.unwrap();
    assert!(announced.audience.is_empty(), "a retry changes no status");
    let mut conn = pool.acquire().await.unwrap();
    let row = store::pending_outbox(&mut conn, account, 0, 10).await.unwrap().remove(0);
    assert!((row.not_before - later).num_milliseconds().abs() < 5);
    assert_eq!(row.last_error.as_deref(), Some("rate limited"));
    drop(conn);

    let mut tx = pool.begin().await.unwrap();
    let failed = OutboxOutcome::Failed { error: "Forbidden: bot was blocked by the user".into() };
    store::finish_outbox(&mut tx, account, 1, row.id, &failed).await.unwrap();
    tx.commit().await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(store::message_status(&mut conn, message).await.unwrap(), MessageStatus::Failed);
    let status = events(&pool, "message.status").await;
    assert_eq!(status.last().unwrap()["message"]["status"], "failed");
    assert_eq!(status.last().unwrap()["message"]["error"], "Forbidden: bot was blocked by the user");

    // finishing a finished row again says nothing new
    let mut tx = pool.begin().await.unwrap();
    let again = store::finish_outbox(&mut tx, account, 1, row.id, &failed).await.unwrap();
    tx.commit().await.unwrap();
    assert!(again.audience.is_empty());
}

#[tokio::test]
async fn a_failed_edit_keeps_the_status_and_names_the_action() {
    let (_url, pool) = testenv::database().await;
    let (account, interaction) = setup(&pool).await;
    let message = send(&pool, interaction, 1).await;
    let mut conn = pool.acquire().await.unwrap();
    let row = store::pending_outbox(&mut conn, account, 0, 10).await.unwrap().remove(0);
    drop(conn);
    let mut tx = pool.begin().await.unwrap();
    store::finish_outbox(&mut tx, account, 1, row.id, &OutboxOutcome::Done { external_ids: vec!["77:9".into()] })
        .await
        .unwrap();
    store::edit_outbound(&mut tx, message, "alice", "changed").await.unwrap();
    tx.commit().await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let edit = store::pending_outbox(&mut conn, account, 0, 10).await.unwrap().remove(0);
    assert_eq!(edit.action, OutboxAction::Edit);
    assert_eq!(edit.external_ids, vec!["77:9"]);
    assert_eq!(edit.message.text.as_deref(), Some("changed"));
    drop(conn);
    let mut tx = pool.begin().await.unwrap();
    let failed = OutboxOutcome::Failed { error: "Bad Request: message can't be edited".into() };
    store::finish_outbox(&mut tx, account, 1, edit.id, &failed).await.unwrap();
    tx.commit().await.unwrap();
    let last = events(&pool, "message.status").await.pop().unwrap();
    assert_eq!(last["message"]["status"], "sent");
    assert_eq!(last["action"], "edit");
    assert_eq!(last["error"], "Bad Request: message can't be edited");
}

#[tokio::test]
async fn a_customer_edit_keeps_the_original_and_is_idempotent() {
    let (_url, pool) = testenv::database().await;
    let (account, _) = setup(&pool).await;
    let mut tx = pool.begin().await.unwrap();
    let announced = store::record_inbound_edit(&mut tx, account, "77:1", "hello, fixed").await.unwrap().unwrap();
    tx.commit().await.unwrap();
    assert_eq!(announced.audience, vec!["alice".to_string()]);
    let message = announced.message.unwrap();
    assert_eq!(message.text.as_deref(), Some("hello, fixed"));
    assert!(message.edited_at.is_some());

    let mut tx = pool.begin().await.unwrap();
    let again = store::record_inbound_edit(&mut tx, account, "77:1", "hello, fixed").await.unwrap().unwrap();
    tx.commit().await.unwrap();
    assert!(again.audience.is_empty(), "a repeated update changes nothing");

    let mut conn = pool.acquire().await.unwrap();
    let edits = store::message_edits(&mut conn, message.id).await.unwrap();
    assert_eq!(edits, vec![(Some("hello".to_string()), Some("hello, fixed".to_string()), "customer".to_string())]);
    assert!(store::record_inbound_edit(&mut conn, account, "77:404", "x").await.unwrap().is_none());
    let edited = events(&pool, "message.edited").await;
    assert_eq!(edited.len(), 1);
    assert_eq!(edited[0]["previous_text"], "hello");
}

#[tokio::test]
async fn avatars_settings_and_enabled_accounts() {
    let (_url, pool) = testenv::database().await;
    let (account, _) = setup(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(store::customer_avatar(&mut conn, account, "77").await.unwrap(), Some(None));
    assert_eq!(store::customer_avatar(&mut conn, account, "78").await.unwrap(), None);
    assert_eq!(store::account_settings(&mut conn, account).await.unwrap()["mode"], "polling");
    let listed = store::enabled_accounts(&mut conn, &[Channel::Telegram]).await.unwrap();
    assert_eq!(listed.iter().map(|a| a.id).collect::<Vec<_>>(), vec![account]);
    assert!(store::enabled_accounts(&mut conn, &[Channel::Vk]).await.unwrap().is_empty());
    sqlx::query("UPDATE accounts SET enabled = false").execute(&mut *conn).await.unwrap();
    assert!(store::enabled_accounts(&mut conn, &[Channel::Telegram]).await.unwrap().is_empty());
    assert_eq!(store::connector_key(account), format!("connector/{account}"));
}

async fn finish_sent(pool: &PgPool, account: Uuid, parts: &[&str]) {
    let mut tx = pool.begin().await.unwrap();
    let pending = store::pending_outbox(&mut tx, account, 0, 100).await.unwrap();
    let row = pending.last().unwrap().id;
    store::claim_outbox(&mut tx, account, 1, &[row]).await.unwrap();
    let outcome = OutboxOutcome::Done { external_ids: parts.iter().map(|p| p.to_string()).collect() };
    store::finish_outbox(&mut tx, account, 1, row, &outcome).await.unwrap();
    tx.commit().await.unwrap();
}

async fn receipt(pool: &PgPool, account: Uuid, external: &str, receipt: store::Receipt) -> store::ReceiptOutcome {
    let mut tx = pool.begin().await.unwrap();
    let out = store::record_receipt(&mut tx, account, external, &receipt).await.unwrap();
    tx.commit().await.unwrap();
    out
}

#[tokio::test]
async fn receipts_only_move_a_message_forward_and_early_ones_wait_for_the_send() {
    use store::{Receipt, ReceiptOutcome};
    let (_url, pool) = testenv::database().await;
    let (account, interaction) = setup(&pool).await;
    let status = |id: Uuid| {
        let pool = pool.clone();
        async move {
            let mut conn = pool.acquire().await.unwrap();
            store::message_status(&mut conn, id).await.unwrap()
        }
    };

    // a split message: a receipt may name any of its parts
    let first = send(&pool, interaction, 1).await;
    finish_sent(&pool, account, &["tok-1a", "tok-1b"]).await;
    assert!(matches!(receipt(&pool, account, "tok-1b", Receipt::Delivered).await, ReceiptOutcome::Applied(_)));
    assert_eq!(status(first).await, MessageStatus::Delivered);
    assert!(matches!(receipt(&pool, account, "tok-1a", Receipt::Read).await, ReceiptOutcome::Applied(_)));
    assert_eq!(status(first).await, MessageStatus::Read);
    // a late delivered, a repeat, a failure after reading: nothing moves back
    assert!(matches!(receipt(&pool, account, "tok-1a", Receipt::Delivered).await, ReceiptOutcome::Unchanged));
    assert!(matches!(receipt(&pool, account, "tok-1a", Receipt::Read).await, ReceiptOutcome::Unchanged));
    assert!(matches!(receipt(&pool, account, "tok-1a", Receipt::Failed("x".into())).await, ReceiptOutcome::Unchanged));
    assert_eq!(status(first).await, MessageStatus::Read);

    // failed after sent: the platform's reason is kept
    let second = send(&pool, interaction, 2).await;
    finish_sent(&pool, account, &["tok-2"]).await;
    receipt(&pool, account, "tok-2", Receipt::Failed("keyboard validation failed".into())).await;
    let mut conn = pool.acquire().await.unwrap();
    let failed = store::load_message(&mut conn, second).await.unwrap();
    drop(conn);
    assert_eq!(failed.status, MessageStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("keyboard validation failed"));

    // a receipt faster than the send's outcome waits, then applies with it
    let third = send(&pool, interaction, 3).await;
    assert!(matches!(receipt(&pool, account, "tok-3", Receipt::Read).await, ReceiptOutcome::Early));
    assert!(matches!(receipt(&pool, account, "tok-3", Receipt::Delivered).await, ReceiptOutcome::Early));
    finish_sent(&pool, account, &["tok-3"]).await;
    assert_eq!(status(third).await, MessageStatus::Read, "an early read is not overwritten by a later delivered");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM early_receipts").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 0);

    // every change told the agent and went into the history
    let statuses: Vec<String> = events(&pool, "message.status")
        .await
        .iter()
        .map(|e| e["message"]["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["sent", "delivered", "read", "sent", "failed", "sent", "read"]);
    let history: i64 =
        sqlx::query_scalar("SELECT count(*) FROM history WHERE entry = 'event' AND event->>'kind' = 'message.status'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(history, 7, "each status change is in the customer's history");
}

/// A young deployment's statistics: the outbox analysed while empty, then 20,000 replies
/// waiting before autovacuum looked again (a backlog after an outage, a burst). Claiming a few
/// rows and recording their outcomes must read about one index entry per row; both used to
/// take the account's pending rows from the index and filter every one of them through the
/// list, for every claim and every outcome.
#[tokio::test]
async fn a_claim_and_its_outcomes_look_up_their_rows_only_whatever_the_statistics() {
    let (_url, pool) = testenv::database().await;
    let (account, interaction) = setup(&pool).await;
    send(&pool, interaction, 1).await;
    send(&pool, interaction, 2).await;
    sqlx::query("ALTER TABLE outbox SET (autovacuum_enabled = off)").execute(&pool).await.unwrap();
    sqlx::query("DELETE FROM outbox").execute(&pool).await.unwrap();
    sqlx::query("ANALYZE outbox").execute(&pool).await.unwrap();
    // each waiting row with its own reply, as agents' replies are
    sqlx::query(
        "WITH m AS (
             INSERT INTO messages (id, interaction_id, account_id, direction, author_kind, author_id, author_name,
                 kind, text, status, agent_login, created_at)
             SELECT gen_random_uuid(), interaction_id, account_id, direction, author_kind, author_id, author_name,
                 kind, text, status, agent_login, created_at
             FROM messages, generate_series(1, 10000) WHERE direction = 'out'
             RETURNING id
         )
         INSERT INTO outbox (message_id, account_id, chat_id) SELECT id, $1, '77' FROM m",
    )
    .bind(account)
    .execute(&pool)
    .await
    .unwrap();
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM outbox ORDER BY id DESC LIMIT 3").fetch_all(&pool).await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    let before = testenv::index_entries_read(&mut tx, "outbox").await;
    let mut claimed = store::claim_outbox(&mut tx, account, 5, &ids).await.unwrap();
    let claim_read = testenv::index_entries_read(&mut tx, "outbox").await - before;
    tx.commit().await.unwrap();
    claimed.sort_unstable();
    let mut expected = ids.clone();
    expected.sort_unstable();
    assert_eq!(claimed, expected);

    let outcomes: Vec<(i64, OutboxOutcome)> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| (*id, OutboxOutcome::Done { external_ids: vec![format!("77:{}", 900 + n)] }))
        .collect();
    let mut tx = pool.begin().await.unwrap();
    let before = testenv::index_entries_read(&mut tx, "outbox").await;
    store::finish_outbox_many(&mut tx, account, 5, &outcomes).await.unwrap();
    let finish_read = testenv::index_entries_read(&mut tx, "outbox").await - before;
    tx.commit().await.unwrap();
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE state = 'pending'").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 20_000 - 3);
    assert!(claim_read < 100, "the claim of 3 rows read {claim_read} index entries of the outbox (20,000 waiting)");
    assert!(
        finish_read < 100,
        "the outcomes of 3 rows read {finish_read} index entries of the outbox (20,000 waiting)"
    );
}
